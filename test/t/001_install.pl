# Installing into a cluster, with and without preloading, and the generator
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;

# An existing cluster without preloading: CREATE EXTENSION still works.
my $plain = pw_node('plain', preload => '');
my ($pret, $pout, $perr) = $plain->psql('postgres', 'CREATE EXTENSION pw_deliverability');
is($pret, 0, 'CREATE EXTENSION without preloading');
like($perr, qr/WARNING:  pw_deliverability is not in shared_preload_libraries\n.*DETAIL:  .*background tagger/s,
	'... warns what will not work');
is($plain->safe_psql('postgres', "SELECT count(*) FROM pw.profiles WHERE name = 'default'"),
	'1', 'default profile exists without preloading');
is($plain->safe_psql('postgres', "SELECT status FROM pw.health() WHERE \"check\" = 'library preloaded'"),
	'failing', 'pw.health() says the library is not preloaded');
like($plain->safe_psql('postgres', "SELECT detail FROM pw.health() WHERE \"check\" = 'background tagger'"),
	qr/not preloaded/, '... and that no tagger runs');
$plain->safe_psql('postgres', 'DROP EXTENSION pw_deliverability');
is($plain->safe_psql('postgres',
		"SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pw'"),
	'0', 'DROP EXTENSION leaves no relation in pw');
$plain->stop;

my $node = pw_node('main');
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');
pw_load_generator($node);

# Deterministic for a seed
$node->safe_psql('postgres', 'SELECT pw_generate_carriers(20000, seed => 7)');
my $digest = "SELECT md5(string_agg(concat_ws('|', id, email, email_verify_result, mx_provider,
    listmonk_sent_at IS NULL), ',' ORDER BY id)) FROM fmcsa_carriers";
my $first = $node->safe_psql('postgres', $digest);
$node->safe_psql('postgres', 'TRUNCATE fmcsa_carriers, pw_sample_domains');
$node->safe_psql('postgres', 'SELECT pw_generate_carriers(20000, seed => 7)');
is($node->safe_psql('postgres', $digest), $first, 'same seed gives the same carriers');
$node->safe_psql('postgres', 'TRUNCATE fmcsa_carriers, pw_sample_domains');
$node->safe_psql('postgres', 'SELECT pw_generate_carriers(20000, seed => 8)');
isnt($node->safe_psql('postgres', $digest), $first, 'another seed gives other carriers');

# Modelled on the seeds' live numbers
my $row = $node->safe_psql('postgres', q{
    SELECT round(100.0 * count(*) FILTER (WHERE email_verify_result = 'catch_all_domain') / count(*)),
           round(100.0 * count(*) FILTER (WHERE email_verify_result = 'mx_unreachable') / count(*)),
           round(100.0 * count(*) FILTER (WHERE mx_provider IS NULL) / count(*)),
           round(100.0 * count(*) FILTER (WHERE mx_provider = 'mx:yahoodns.net') / count(*)),
           round(100.0 * count(*) FILTER (WHERE listmonk_sent_at IS NOT NULL) / count(*)),
           count(DISTINCT mx_provider) FILTER (WHERE mx_provider LIKE 'mx:host%'),
           count(*) FILTER (WHERE email_verify_result = 'smtp_valid') * 100 < count(*)
    FROM fmcsa_carriers});
my ($ca, $unr, $null, $yahoo, $sent, $tail, $valid_small) = split /\|/, $row;
ok(abs($ca - 69) <= 2, "catch_all ~69% ($ca%)");
ok(abs($unr - 28) <= 2, "mx_unreachable ~28% ($unr%)");
ok(abs($null - 21) <= 3, "untagged ~21% ($null%)");
ok(abs($yahoo - 18) <= 3, "mx:yahoodns.net ~18% ($yahoo%)");
ok(abs($sent - 50) <= 2, "about half sent ($sent%)");
ok($tail > 500, "a long tail of self-hosted operators ($tail)");
is($valid_small, 't', 'smtp_valid under 1%');
is($node->safe_psql('postgres', q{SELECT count(*) FROM fmcsa_carriers c
    WHERE c.mx_provider IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pw_sample_domains d
      WHERE d.domain = pw.email_domain(c.email) AND d.true_label = c.mx_provider)}),
	'0', 'tagged carriers carry their domain\'s true operator');

# The contract is satisfied by the generated table
like($node->safe_psql('postgres', "SELECT * FROM pw.carriers_check('verify_sent_at')"),
	qr/^fmcsa_carriers\|/, 'generated table satisfies the carriers contract');

# Settings checked when set (issue 18): a mail-log directory that does not
# exist and a host name in dns_servers do not stop the server; both are
# logged, and the host name is not taken.
my $missing = $node->basedir . '/no-such-maillog-dir';
$node->append_conf('postgresql.conf', qq{
pw_deliverability.maillog_directory = '$missing'
pw_deliverability.dns_servers = 'dns.local:53'
});
my $log_offset = -s $node->logfile;
$node->restart;
ok($node->log_contains(qr/LOG:  pw_deliverability\.maillog_directory "\Q$missing\E" does not exist/,
		$log_offset), 'a missing maillog_directory is a LOG line at start');
ok($node->log_contains(qr/"dns\.local" is not a numeric IPv4 or IPv6 address/, $log_offset),
	'a host name in dns_servers is logged at start');
is($node->safe_psql('postgres', 'SHOW pw_deliverability.dns_servers'), '',
	'... and not taken');
is($node->safe_psql('postgres', 'SHOW pw_deliverability.maillog_directory'), $missing,
	'the missing directory is taken (it may be created later)');
my ($ret, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET pw_deliverability.dns_servers = 'dns.local:53'});
ok($ret != 0 && $err =~ /host names cannot be used/, 'ALTER SYSTEM refuses a host name in dns_servers');
($ret, $out, $err) = $node->psql('postgres',
	qq{ALTER SYSTEM SET pw_deliverability.maillog_directory = '$missing/sub'});
ok($ret == 0 && $err =~ /WARNING:  pw_deliverability\.maillog_directory .* does not exist/,
	'ALTER SYSTEM of a missing directory warns');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET ALL');
$node->restart;

# pw.health() on a preloaded cluster with the generated carriers: the
# indexes are missing until created
my $health = sub {
	my %h;
	for my $l (split /\n/, $node->safe_psql('postgres', 'SELECT "check", status, detail, hint FROM pw.health()'))
	{
		my ($c, $st, $d, $hi) = split /\|/, $l, 4;
		$h{$c} = { status => $st, detail => $d, hint => $hi };
	}
	return \%h;
};
my $h = $health->();
is($h->{'library preloaded'}{status}, 'ok', 'health: library preloaded');
is($h->{'carriers contract'}{status}, 'ok', 'health: the contract holds');
is($h->{'profile default'}{status}, 'warning', 'health: the default profile lacks its selection indexes');
like($h->{'profile default'}{hint}, qr/^CREATE INDEX CONCURRENTLY IF NOT EXISTS pw_sel_/,
	'... and the hint is the statement to create them');
is($h->{'tagging index'}{status}, 'warning', 'health: no tagging index');
is($h->{'writeback index'}{hint}, 'SELECT pw.create_writeback_index();', 'health: the writeback index hint');
is($h->{'mail-log directory'}{status} . ': ' . $h->{'mail-log directory'}{detail},
	"failing: pw_deliverability.maillog_directory '$missing' does not exist", 'health: the mail-log directory is missing');
is($h->{'schedules'}{status}, 'warning', 'health: pg_cron not installed');
$node->safe_psql('postgres', q{SELECT pw.create_tagging_index(), pw.create_writeback_index();
	SELECT pw.create_selection_indexes('default'); SELECT pw.create_selection_indexes('verify')});
$h = $health->();
is(join(',', map { $h->{$_}{status} } 'profile default', 'profile verify', 'tagging index', 'writeback index'),
	'ok,ok,ok,ok', 'health: the indexes once created');

# DROP EXTENSION removes the extension's indexes and statistics on the
# carriers table (the tagging index depends on pw.email_domain())
my $objects = $node->safe_psql('postgres', 'SELECT count(*) FROM pw.carrier_objects()');
cmp_ok($objects, '>=', 6, "the extension's objects on the carriers table ($objects)");
my ($dret, $dout, $derr) = $node->psql('postgres', 'DROP EXTENSION pw_deliverability');
is($dret, 0, 'DROP EXTENSION works with its indexes on the carriers table') or diag($derr);
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname LIKE 'pw\_sel\_%'
	OR relname LIKE 'pw\_sent\_%' OR relname LIKE '%\_pw\_%'}), '0', '... and leaves none of them');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_statistic_ext WHERE stxname LIKE '%pw_email_domain'}),
	'0', '... nor its statistics');
is($node->safe_psql('postgres', 'SELECT count(*) FROM fmcsa_carriers'), '20000', 'the carriers stay');
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');

$node->stop;
done_testing();
