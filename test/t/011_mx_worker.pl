# The background MX tagger: idles without the extension, is woken from SQL,
# drains a backlog within the rate limit, survives kill -9 mid-batch and ends
# with every domain tagged once; reloads on SIGHUP; on SIGTERM it rolls back
# its batch.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PwTest;
use PwDns;

my $ndom = 2000;
my %bulk = map { ("w$_.example" => ($_ % 4 ? "mx$_.host" . ($_ % 7) . '.net' : 'mx1.emailsrvr.com')) } 1 .. $ndom + 300;
my $dns = PwDns->start(records => {}, bulk => \%bulk);
my $node = pw_node('worker', conf => "restart_after_crash = on\n"
	  . "pw_deliverability.database = 'postgres'\n"
	  . "pw_deliverability.dns_servers = '" . $dns->servers . "'\n"
	  . "pw_deliverability.worker_naptime = 3600\n"
	  . "pw_deliverability.worker_batch = 100\n"
	  . "pw_deliverability.dns_max_qps = 400\n"
	  . "pw_deliverability.dns_timeout_ms = 1000\n");

# Polls a query until it returns the wanted value (at most $secs seconds).
sub wait_for
{
	my ($sql, $want, $secs) = @_;
	my $deadline = time + ($secs // 60);
	my $got;
	while (time < $deadline)
	{
		# tolerate the server being down while it restarts after a crash
		my $rc = $node->psql('postgres', $sql, stdout => \$got, stderr => \my $err);
		return 1 if $rc == 0 && defined $got && $got eq $want;
		usleep(100_000);
	}
	diag("last value of [$sql]: " . ($got // 'none'));
	return 0;
}

my $activity = q{SELECT count(*) FROM pg_stat_activity
    WHERE backend_type = 'pw_deliverability mx tagger' AND datname = 'postgres'};
ok(wait_for($activity, '1'), 'the tagger shows in pg_stat_activity');
ok(wait_for(q{SELECT query LIKE '%not installed%' FROM pg_stat_activity WHERE backend_type = 'pw_deliverability mx tagger'}, 't'),
	'it idles while the extension is not installed');
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');
my $pid1 = $node->safe_psql('postgres', 'SELECT pw.tagger_pid()');
like($pid1, qr/^\d+$/, 'pw.tagger_pid() knows the worker');
is($node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pw_deliverability mx tagger'}),
	$pid1, 'and it is the process in pg_stat_activity');

# no carriers table yet: the batch fails, is logged, and the worker lives on
my $logpos = -s $node->logfile;
$node->safe_psql('postgres', 'SELECT pw.wake_tagger()');
ok($node->wait_for_log(qr/carriers relation "public.fmcsa_carriers" does not exist/, $logpos),
	'a failing batch is logged');
ok(wait_for(q{SELECT query LIKE '%last batch failed%' FROM pg_stat_activity WHERE backend_type = 'pw_deliverability mx tagger'}, 't'),
	'and shown in pg_stat_activity');
is($node->safe_psql('postgres', 'SELECT pw.tagger_pid()'), $pid1, 'without restarting the worker');

$node->safe_psql('postgres', qq{
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text, mx_provider text);
    INSERT INTO fmcsa_carriers SELECT i, 'c' || i || '\@w' || (1 + i % $ndom) || '.example', 'smtp_valid'
      FROM generate_series(1, 3000) i;
    SELECT pw.create_tagging_index();
});
my $t0 = time;
is($node->safe_psql('postgres', 'SELECT pw.wake_tagger()'), 't', 'wake_tagger reaches the worker');

# kill -9 in the middle of the backlog
ok(wait_for(q{SELECT count(*) BETWEEN 300 AND 1500 FROM pw.mx_domains}, 't', 30), 'the worker is draining the backlog');
my $done_before = $node->safe_psql('postgres', 'SELECT count(*) FROM pw.mx_domains');
my $pid = $node->safe_psql('postgres', 'SELECT pw.tagger_pid()');
kill 'KILL', $pid;
my $killed_at = time;
note("killed the tagger ($pid) with $done_before domains committed");

# the postmaster reinitialises and the worker comes back
ok(wait_for(q{SELECT coalesce(pw.tagger_pid(), 0) <> 0}, 't', 60), 'the worker is restarted after the crash');
isnt($node->safe_psql('postgres', 'SELECT pw.tagger_pid()'), $pid, 'as a new process');
$node->safe_psql('postgres', 'SELECT pw.wake_tagger()');
ok(wait_for(q{SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL}, '0', 60), 'the backlog drains completely');
my $elapsed = time - $t0;

is($node->safe_psql('postgres', "SELECT count(*), count(DISTINCT domain), count(*) FILTER (WHERE outcome = 'mx' AND attempts = 0) FROM pw.mx_domains"),
	"$ndom|$ndom|$ndom", 'every domain is in the cache once, resolved');
is($node->safe_psql('postgres', q{SELECT count(*) FROM fmcsa_carriers c WHERE mx_provider IS DISTINCT FROM
    CASE WHEN (1 + id % 2000) % 4 = 0 THEN 'rackspace' ELSE 'mx:host' || ((1 + id % 2000) % 7) || '.net' END}),
	'0', 'every carrier has its domain\'s label');
my %n;
$n{ $_->[0] }++ for grep { $_->[1] eq 'MX' } $dns->queries;
my $twice = grep { $_ > 1 } values %n;
is(scalar(keys %n), $ndom, 'every domain was looked up');
ok($twice <= 200, "only the interrupted batch was looked up again ($twice domains twice)");
ok(!grep({ $_ > 2 } values %n), 'no domain was looked up more than twice');
# 2000 lookups at 400 queries/s cannot take much less than 5 s
ok($elapsed >= 4.5, sprintf('the rate limit holds (%.1f s for %d domains)', $elapsed, $ndom));

# SIGHUP: disabling through the configuration stops tagging; enabling resumes
$node->safe_psql('postgres', q{ALTER SYSTEM SET pw_deliverability.worker_enabled = off; SELECT pg_reload_conf()});
sleep 1;
$node->safe_psql('postgres', qq{INSERT INTO fmcsa_carriers SELECT i, 'n' || i || '\@w' || (i - 3000 + $ndom) || '.example'
    FROM generate_series(3001, 3100) i});
$node->safe_psql('postgres', 'SELECT pw.wake_tagger()');
sleep 2;
is($node->safe_psql('postgres', 'SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL'), '100',
	'worker_enabled = off (reloaded) keeps it idle');
$node->safe_psql('postgres', q{ALTER SYSTEM SET pw_deliverability.worker_enabled = on;
    ALTER SYSTEM SET pw_deliverability.dns_max_qps = 20; SELECT pg_reload_conf()});
sleep 1;
$node->safe_psql('postgres', 'SELECT pw.wake_tagger()');

# SIGTERM in the middle of a (now slow) batch: nothing of it is committed
ok(wait_for(q{SELECT state = 'active' AND query LIKE '%tagging up to%' FROM pg_stat_activity
    WHERE backend_type = 'pw_deliverability mx tagger'}, 't', 20), 'reloaded settings: tagging resumes, slowly');
usleep(500_000);
my $cached = $node->safe_psql('postgres', 'SELECT count(*) FROM pw.mx_domains');
$pid = $node->safe_psql('postgres', 'SELECT pw.tagger_pid()');
my $asked = scalar(grep { $_->[0] =~ /^w(\d+)\.example$/ && $1 > $ndom } $dns->queries);
ok($asked > 0 && $asked < 100, "the batch is half done ($asked of 100 asked)");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_for(qq{SELECT count(*) FROM pg_stat_activity WHERE pid = $pid}, '0', 10), 'SIGTERM ends the worker promptly');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pw.mx_domains'), $cached, 'the interrupted batch left nothing behind');
is($node->safe_psql('postgres', 'SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL'), '100', 'and tagged no carrier');

# it is restarted (bgw_restart_time) and finishes the job
$node->safe_psql('postgres', q{ALTER SYSTEM SET pw_deliverability.dns_max_qps = 0; SELECT pg_reload_conf()});
ok(wait_for(q{SELECT coalesce(pw.tagger_pid(), 0) NOT IN (0, } . $pid . ')', 't', 30), 'restarted after SIGTERM');
$node->safe_psql('postgres', 'SELECT pw.wake_tagger()');
ok(wait_for(q{SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL}, '0', 30), 'and tags the new carriers');

$node->stop;
$dns->stop;
done_testing();
