# `pg_ctl stop -m fast` while pw.mx_tag() waits on a slow DNS server and
# while pw.ingest_maillog() reads a big log: the server shuts down promptly
# and cleanly (no backend crash, no crash recovery at the next start), the
# interrupted transaction leaves nothing behind, and the next run does the
# whole job.
use strict;
use warnings;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PwTest;
use PwFaultDns;

my $base = PostgreSQL::Test::Utils::tempdir();
my $logs = "$base/logs";
make_path($logs);
my $ndom = 2000;
my %bulk = map { ("s$_.test" => ($_ % 3 ? "mx$_.host" . ($_ % 5) . '.net' : 'aspmx.l.google.com')) } 1 .. $ndom;
# a slow server: each answer takes 5 ms, one at a time
my $dns = PwFaultDns->start(bulk => \%bulk, delay_ms => 5);
my $node = pw_node('shutdown', conf => "pw_deliverability.worker_enabled = off\n"
	  . "pw_deliverability.dns_servers = '" . $dns->servers . "'\n"
	  . "pw_deliverability.tag_batch_size = 200\n"
	  . "pw_deliverability.dns_concurrency = 20\n"
	  . "pw_deliverability.maillog_directory = '$logs'\n");
$node->safe_psql('postgres', qq{
    CREATE EXTENSION pw_deliverability;
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                 mx_provider text, listmonk_sent_at timestamptz);
    INSERT INTO fmcsa_carriers SELECT i, 'c' || i || '\@s' || i || '.test', 'smtp_valid'
      FROM generate_series(1, $ndom) i;
    SELECT pw.create_tagging_index();
});

# Runs a statement in the background; returns the harness and its outputs.
sub background
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-q', '-A', '-t', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err);
	return ($h, \$out, \$err);
}

# Stops the node with -m fast; checks it was prompt and clean, restarts it.
sub fast_stop_and_restart
{
	my ($what, $h, $err) = @_;
	my $logpos = -s $node->logfile;
	my $t0 = time;
	$node->stop('fast');
	my $took = time - $t0;
	ok($took < 15, sprintf('%s: pg_ctl stop -m fast took %.1f s', $what, $took));
	$h->finish;
	like($$err, qr/terminating connection due to administrator command|server closed the connection/,
		"$what: the statement was terminated");
	my $log = slurp_file($node->logfile, $logpos);
	unlike($log, qr/terminated by signal|server process .* was terminated/, "$what: no backend crashed");
	like($log, qr/database system is shut down/, "$what: the server shut down");
	$logpos = -s $node->logfile;
	$node->start;
	my $start_log = slurp_file($node->logfile, $logpos);
	unlike($start_log, qr/not properly shut down|automatic recovery/, "$what: no crash recovery at the next start");
}

# --- pw.mx_tag() waiting on a slow DNS server ---------------------------------
my ($h, $out, $err) = background('SELECT looked_up FROM pw.mx_tag()');
my $seen = 0;
for (1 .. 400)
{
	$seen = scalar($dns->queries);
	last if $seen >= 500;
	usleep(25_000);
}
ok($seen >= 500, "mx_tag is under way ($seen queries answered, two batches written in its transaction)");
fast_stop_and_restart('mx_tag', $h, $err);
is($node->safe_psql('postgres', 'SELECT (SELECT count(*) FROM pw.mx_domains) || \'/\' || (SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NOT NULL)'),
	'0/0', 'mx_tag: no domain cached and no carrier tagged after the restart');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'}), '0',
	'mx_tag: no tagging lock left');
$dns->{delay_ms} = 0;
$dns->restart;
is($node->safe_psql('postgres', 'SELECT looked_up, failed FROM pw.mx_tag()'), "$ndom|0", 'mx_tag: the next run tags every domain');
is($node->safe_psql('postgres', q{SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS DISTINCT FROM
    CASE WHEN id % 3 = 0 THEN 'google' ELSE 'mx:host' || (id % 5) || '.net' END}), '0',
	'mx_tag: with the right labels');

# --- pw.ingest_maillog() reading a big log ------------------------------------------
my $big = "$logs/big.log";
system_or_bail("perl " . pw_srcdir() . "/test/gen_maillog.pl 200000 11 rfc3339 > $big");
my $nlines = 0;
open(my $fh, '<', $big) or die;
$nlines++ while <$fh>;
close $fh;
$node->safe_psql('postgres', q{INSERT INTO fmcsa_carriers (id, email, email_verify_result)
    SELECT 100000 + u, 'u' || u || '@d' || (u % 50) || '.test', 'catch_all_domain' FROM generate_series(0, 1999999, 20) u;
    SELECT pw.create_writeback_index()});
my $digest = q{SELECT md5(string_agg(concat_ws('|', id, email_verify_result), ',' ORDER BY id)) FROM fmcsa_carriers};
my $carriers_before = $node->safe_psql('postgres', $digest);
# the ingest must not finish before the stop: its last statement (the new
# offset) waits; the stop comes as soon as the ingest shows as active, while
# it reads the log
$node->safe_psql('postgres', q{
    CREATE FUNCTION public.hold() RETURNS trigger LANGUAGE plpgsql AS
      $$BEGIN PERFORM pg_sleep(60); RETURN NEW; END$$;
    CREATE TRIGGER hold BEFORE UPDATE ON pw.maillog_files FOR EACH ROW EXECUTE FUNCTION public.hold();
});
($h, $out, $err) = background("SELECT lines FROM pw.ingest_maillog('big.log')");
my $active = '';
for (1 .. 200)
{
	$active = $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query ~ 'ingest_maillog' AND pid <> pg_backend_pid()");
	last if $active eq '1';
	usleep(20_000);
}
is($active, '1', 'ingest is under way');
fast_stop_and_restart('ingest', $h, $err);
$node->safe_psql('postgres', 'DROP TRIGGER hold ON pw.maillog_files');
is(join('/', map { $node->safe_psql('postgres', "SELECT count(*) FROM pw.$_") }
		  qw(maillog_files deliveries suppressions maillog_pending maillog_daily)),
	'0/0/0/0/0', 'ingest: no offset, delivery, suppression, pending or daily row after the restart');
is($node->safe_psql('postgres', $digest), $carriers_before, 'ingest: no carrier written back');
is($node->safe_psql('postgres', "SELECT lines, end_offset FROM pw.ingest_maillog('big.log')"),
	"$nlines|" . (-s $big), 'ingest: the next call reads the whole file');
isnt($node->safe_psql('postgres', $digest), $carriers_before, 'ingest: and writes the bounces back');

$node->stop;
$dns->stop;
done_testing();
