# The Debian package: make deb's build (test/lib/build_deb.sh), its control
# data and files, and CREATE EXTENSION / ALTER EXTENSION UPDATE on a cluster
# of a private copy of the PostgreSQL installation that has no
# pw_deliverability file but those extracted from the package (dpkg-deb -x;
# the package is never installed into the system).
use strict;
use warnings;
use File::Basename qw(basename);
use File::Find;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;

my $src = pw_srcdir();

# A wrong PG_CONFIG stops make at once, saying what to install or give.
for my $goal ('all', 'install', 'deb')
{
	my ($out, $err);
	my $ok = IPC::Run::run([ 'make', '-C', $src, $goal, 'PG_CONFIG=/nonexistent/pg_config' ],
		'>', \$out, '2>', \$err);
	ok(!$ok, "make $goal with a wrong PG_CONFIG fails");
	like($err, qr{cannot find PGXS: '/nonexistent/pg_config --pgxs' failed\. Install postgresql-server-dev-15.*PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config}s,
		"make $goal: the message names the packages and PG_CONFIG");
	unlike($out . $err, qr/\.ci\/deps has run|apt-get/, "make $goal: no package installation");
}

# The build needs dpkg-dev, debhelper and postgresql-server-dev-all.
my $missing;
for my $tool (qw(dpkg-buildpackage dpkg-checkbuilddeps dpkg-deb pg_buildext))
{
	$missing //= "$tool not found (dpkg-dev, debhelper, postgresql-server-dev-all)"
	  unless system("command -v $tool >/dev/null 2>&1") == 0;
}
$missing //= 'build dependencies of debian/control missing (dpkg-checkbuilddeps)'
  unless system("cd '$src' && dpkg-checkbuilddeps >/dev/null 2>&1") == 0;
if ($missing)
{
  SKIP: { skip $missing, 1; }
	done_testing();
	exit 0;
}

my $base = PostgreSQL::Test::Utils::tempdir();
my $pgver = '15';
my $libdir = "usr/lib/postgresql/$pgver/lib";
my $extdir = "usr/share/postgresql/$pgver/extension";

# --- the build ----------------------------------------------------------------
my ($stdout, $stderr);
my $built = IPC::Run::run([ "$src/test/lib/build_deb.sh", "$base/deb" ],
	'>', \$stdout, '2>', \$stderr);
ok($built, 'build_deb.sh builds the package') or diag($stderr);
my @debs = glob("$base/deb/postgresql-$pgver-pw-deliverability_*.deb");
is(scalar(@debs), 1, 'one postgresql-15-pw-deliverability package');
my $deb = $debs[0] // BAIL_OUT('no package to test');
my $version = `dpkg-parsechangelog -l '$src/debian/changelog' -S Version`;
chomp $version;
like(basename($deb), qr/^postgresql-15-pw-deliverability_\Q$version\E_[a-z0-9]+\.deb$/,
	"named after debian/changelog's version $version");

# a native source package too (a native version has no Debian revision)
my $srctree = "$base/source/pw-deliverability-$version";
make_path($srctree);
system("'$src/test/lib/tree_tar.sh' | tar -C '$srctree' -xf -") == 0
  or BAIL_OUT('copying the tree failed');
ok(IPC::Run::run([ 'dpkg-source', '-b', $srctree ], '>', \$stdout, '2>', \$stderr,
		init => sub { chdir "$base/source" or die $!; }),
	'dpkg-source -b builds the source package') or diag($stderr);
ok(-f "$base/source/pw-deliverability_$version.tar.xz", 'a native source package');

# --- control data -------------------------------------------------------------
sub deb_field
{
	my ($field) = @_;
	my $value = `dpkg-deb -f '$deb' $field`;
	chomp $value;
	return $value;
}
is(deb_field('Package'), 'postgresql-15-pw-deliverability', 'Package');
my $depends = deb_field('Depends');
like($depends, qr/(^|, )postgresql-15( |,|$)/, 'depends on postgresql-15');
like($depends, qr/(^|, )publicsuffix(,|$)/, 'depends on publicsuffix');
like($depends, qr/libc-ares2/, 'shlibs: c-ares');
like($depends, qr/libpsl5/, 'shlibs: libpsl');
like($depends, qr/libidn2-0/, 'shlibs: libidn2');
like(deb_field('Recommends'), qr/postgresql-15-cron/, 'recommends pg_cron');

# --- the files ----------------------------------------------------------------
my $root = "$base/root";
system('dpkg-deb', '-x', $deb, $root) == 0 or BAIL_OUT('dpkg-deb -x failed');

# every SQL script: the assembled install script and sql-versions/
my @scripts = ('pw_deliverability--0.3.sql',
	map { basename($_) } glob("$src/sql-versions/*.sql"));
ok(-f "$root/$libdir/pw_deliverability.so", 'carries the library');
ok(-f "$root/$extdir/pw_deliverability.control", 'carries the control file');
is(slurp_file("$root/$extdir/pw_deliverability.control"),
	slurp_file("$src/pw_deliverability.control"), 'control file as in the tree');
for my $script (@scripts)
{
	ok(-f "$root/$extdir/$script", "carries $script");
}
is(slurp_file("$root/$extdir/pw_deliverability--0.3.sql"),
	join('', map { slurp_file($_) } sort glob("$src/src/sql/*.sql")),
	'the install script is src/sql/*.sql assembled');
my @shipped = sort map { basename($_) } glob("$root/$extdir/pw_deliverability*");
is_deeply(\@shipped, [ sort('pw_deliverability.control', @scripts) ],
	'no other extension file');
ok(-f "$root/usr/share/doc/postgresql-15-pw-deliverability/copyright", 'carries copyright');

# --- a cluster of a private installation with the package's files -----------
# A copy of the server's installation (PostgreSQL finds its share and lib
# directories relative to the postgres binary) without any pw_deliverability
# file, e.g. of a system-wide make install, then the package's tree over it.
my $inst = "$base/inst";
for my $dir ("usr/lib/postgresql/$pgver", "usr/share/postgresql/$pgver")
{
	make_path("$inst/$dir");
	system('cp', '-a', "/$dir/.", "$inst/$dir/") == 0 or BAIL_OUT("copying /$dir failed");
}
my @stale;
find(sub { push @stale, $File::Find::name if /^pw_deliverability/ },
	"$inst/$libdir", "$inst/$extdir");
system('rm', '-rf', @stale) == 0 or BAIL_OUT('removing pw_deliverability files failed')
  if @stale;
system('cp', '-a', "$root/.", "$inst/") == 0 or BAIL_OUT('overlaying the package failed');

my $node = PostgreSQL::Test::Cluster->new('deb',
	install_path => "$inst/usr/lib/postgresql/$pgver");
$node->init;
# the tagger idles (worker_enabled = off): no DNS traffic
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pw_deliverability'\n"
	  . "pw_deliverability.database = 'postgres'\n"
	  . "pw_deliverability.worker_enabled = off\n");
$node->start;
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
    WHERE backend_type = 'pw_deliverability mx tagger'}),
	'the preloaded packaged library starts its tagger');
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');
is($node->safe_psql('postgres',
		q{SELECT extversion FROM pg_extension WHERE extname = 'pw_deliverability'}),
	'0.3', 'CREATE EXTENSION installs 0.3');
is($node->safe_psql('postgres',
		q{SELECT pw.email_domain('Dispatch@Example.COM'), count(*) FROM pw.profiles WHERE name = 'default'}),
	'example.com|1', 'its functions and tables work');
is($node->safe_psql('postgres',
		q{SELECT string_agg(version, ',' ORDER BY version) FROM pg_available_extension_versions
		  WHERE name = 'pw_deliverability'}),
	'0.1,0.2,0.3', 'every shipped version is available');

# the upgrade scripts: 0.1 updated to 0.3 through the packaged scripts
$node->safe_psql('postgres', 'CREATE DATABASE up');
$node->safe_psql('up', q{CREATE EXTENSION pw_deliverability VERSION '0.1'});
$node->safe_psql('up', 'ALTER EXTENSION pw_deliverability UPDATE');
is($node->safe_psql('up',
		q{SELECT extversion FROM pg_extension WHERE extname = 'pw_deliverability'}),
	'0.3', 'ALTER EXTENSION UPDATE from 0.1 reaches 0.3');
$node->stop;

done_testing();
