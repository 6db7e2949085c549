# The jobs of the daily loop side by side (issue 12 item 3): the background
# tagger, pw.mx_tag() in small batches, ingests of a growing log,
# confirmations and two claimers on the same generated carriers for
# PW_SOAK_SECONDS (default 50) through test/soak.pl: no deadlock, no failed
# step, nothing logged at ERROR, every job gets work done.  Then the
# carriers write lock seen in pg_locks: a confirmation waits for an open
# tagging run's, a claim does not.  Then DROP
# EXTENSION while the tagger is tagging, three times: it waits for the
# tagger's batch instead of deadlocking with it (CASCADE: the tagging
# index and statistics use pw.email_domain()).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PwTest;
use PwDns;

my $seconds = $ENV{PW_SOAK_SECONDS} // 50;
my $logs = PostgreSQL::Test::Utils::tempdir();
my $node = pw_node('soak', conf => "pw_deliverability.database = 'postgres'\n"
	  . "pw_deliverability.worker_enabled = off\n"
	  . "pw_deliverability.worker_batch = 200\n"
	  . "pw_deliverability.worker_naptime = 1\n"
	  . "pw_deliverability.dns_max_qps = 150\n"
	  . "pw_deliverability.dns_timeout_ms = 1000\n"
	  . "pw_deliverability.dns_servers = '127.0.0.1:9'\n"
	  . "pw_deliverability.maillog_directory = '$logs'\n"
	  . "deadlock_timeout = '100ms'\n"
	  . "log_lock_waits = on\n"
	  . "timezone = 'UTC'\n");
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');
pw_load_generator($node);
$node->safe_psql('postgres', q{SELECT pw_generate_carriers(100000, seed => 7);
    SELECT pw.create_writeback_index(); SELECT pw.create_tagging_index()});

# the sample domains' MX answers (dead ones: NXDOMAIN)
my %bulk = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	q{SELECT domain || '|' || mx_host FROM pw_sample_domains WHERE mx_host IS NOT NULL});
my $dns = PwDns->start(records => {}, bulk => \%bulk);
$node->safe_psql('postgres', "ALTER SYSTEM SET pw_deliverability.dns_servers = '" . $dns->servers . "';"
	  . ' ALTER SYSTEM SET pw_deliverability.worker_enabled = on; SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pw.mx_domains}),
	'the tagger tags');

# --- the soak -------------------------------------------------------------------
local $ENV{PGHOST} = $node->host;
local $ENV{PGPORT} = $node->port;
local $ENV{PGDATABASE} = 'postgres';
my $t0 = time;
my $start = $node->safe_psql('postgres', 'SELECT now()');
my $report = `perl @{[pw_srcdir()]}/test/soak.pl $seconds $logs @{[$node->logfile]}`;
my $rc = $? >> 8;
note(sprintf("soak of %d s took %.0f s:\n%s", $seconds, time - $t0, $report));
my %job;
for (split /\n/, $report)
{
	next unless /^job (\S+) (.*)/;
	$job{$1} = { split / /, $2 };
}
is_deeply([ sort keys %job ], [qw(claim1 claim2 confirm feeder ingest mx_tag)], 'every job reported');
my ($deadlocks, $serial, $errors) = $report =~ /^serverlog deadlocks (\d+) serialization (\d+) errors (\d+)/m;
is($deadlocks, 0, 'no deadlock');
is($serial, 0, 'no serialization failure');
is($errors, 0, 'nothing logged at ERROR');
is(join(',', map { "$_:$job{$_}{errors}" } sort keys %job),
	join(',', map { "$_:0" } sort keys %job), 'no step of any job failed');
is($rc, 0, 'soak.pl exits 0');
ok($job{ingest}{lines} > 100000 && $job{ingest}{carriers_bounced} > 0,
	"ingests applied the log and wrote bounces back ($job{ingest}{lines} lines, $job{ingest}{carriers_bounced} carriers)");
ok($job{confirm}{confirmed} > 0, "confirmations confirmed ($job{confirm}{confirmed})");
ok($job{claim1}{claimed} > 0 && $job{claim2}{claimed} > 0,
	"both claimers claimed ($job{claim1}{claimed}, $job{claim2}{claimed})");
ok($job{mx_tag}{steps} >= 10 && $job{mx_tag}{looked_up} > 0,
	"pw.mx_tag() ran ($job{mx_tag}{steps} times) and looked up ($job{mx_tag}{looked_up})");
my ($c0, $c1) = $report =~ /cached domains (\d+) -> (\d+)/;
ok($c1 - $c0 > $job{mx_tag}{looked_up}, 'the background tagger tagged too');
is($node->safe_psql('postgres', "SELECT count(*) FROM fmcsa_carriers WHERE listmonk_sent_at >= '$start'"),
	$job{claim1}{claimed} + $job{claim2}{claimed}, 'every claim was marked sent today');

# --- the carriers write lock, step by step ------------------------------------
# A tagging run in an open transaction holds it: a confirmation waits for
# it before its first carrier row (pg_locks shows the advisory lock of the
# carriers relation, objsubid 0x7078, not granted), a claim does not wait.
my $a = $node->background_psql('postgres', on_error_stop => 1);
my $b = $node->background_psql('postgres', on_error_stop => 1);
# (each says whom it waits for: a NOTICE, not wanted on stderr here)
$_->query_safe('SET client_min_messages = warning') for ($a, $b);
$a->query_safe(q{BEGIN; SELECT carriers_updated FROM pw.mx_tag(0)});
my $b_pid = $b->query_safe('SELECT pg_backend_pid()');
$b->query_until(qr/started/, q{\echo started
    SELECT pw.confirm_deliveries('0 seconds');
    \echo finished
});
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM pg_locks
    WHERE pid = $b_pid AND NOT granted AND locktype = 'advisory'
      AND classid = 'fmcsa_carriers'::regclass::oid AND objid = 0 AND objsubid = 28792}),
	'a confirmation waits for the carriers write lock of an open tagging run');
my ($claim_rc) = $node->psql('postgres', q{SELECT count(*) FROM pw.select_sendable_carriers(5, 'soak', claim => true)},
	timeout => 30);
is($claim_rc, 0, 'a claim meanwhile does not wait for it');
$a->query_safe('COMMIT');
$b->query_until(qr/finished/, '');
pass('the confirmation goes on once the tagging run commits');
$a->quit;
$b->quit;

# --- DROP EXTENSION while the tagger tags ---------------------------------------
$node->safe_psql('postgres', 'ALTER SYSTEM SET pw_deliverability.dns_max_qps = 100; SELECT pg_reload_conf()');
for my $round (1 .. 3)
{
	ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
        WHERE backend_type = 'pw_deliverability mx tagger' AND state = 'active' AND query LIKE '%tagging up to%'}),
		"round $round: the tagger is tagging");
	usleep(int(rand(300_000)));
	my $pos = -s $node->logfile;
	my ($ok, $out, $err) = $node->psql('postgres', 'DROP EXTENSION pw_deliverability CASCADE',
		timeout => 60, on_error_stop => 1);
	is($ok, 0, "round $round: DROP EXTENSION succeeds") or diag($err);
	my $log = slurp_file($node->logfile, $pos);
	unlike($log, qr/deadlock detected/, "round $round: no deadlock");
	$node->safe_psql('postgres', 'CREATE EXTENSION IF NOT EXISTS pw_deliverability');
	# untag some carriers again, so that the next round has work
	$node->safe_psql('postgres', q{UPDATE fmcsa_carriers SET mx_provider = NULL WHERE id % 5 = 0});
	$node->safe_psql('postgres', 'SELECT pw.wake_tagger()');
}
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pw.mx_domains}),
	'after the last drop the tagger tags the new installation');

$node->stop;
$dns->stop;
done_testing();
