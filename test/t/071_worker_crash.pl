# The background tagger aborted with SIGABRT and then SIGSEGV in the middle
# of committing a batch (held there by a deferred trigger that sleeps at
# commit): the postmaster reinitialises the cluster, the worker comes back,
# the interrupted batches leave nothing behind, and in the end every domain
# is tagged once, with only the interrupted batches looked up again.
# (SIGKILL mid-batch is test/t/011_mx_worker.pl.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PwTest;
use PwFaultDns;

my $ndom = 1000;
my $batch = 200;
my %bulk = map { ("w$_.test" => ($_ % 4 ? "mx$_.host" . ($_ % 7) . '.net' : 'mx1.emailsrvr.com')) } 1 .. $ndom;
my $dns = PwFaultDns->start(bulk => \%bulk);
my $node = pw_node('workercrash', conf => "restart_after_crash = on\n"
	  . "pw_deliverability.database = 'postgres'\n"
	  . "pw_deliverability.dns_servers = '" . $dns->servers . "'\n"
	  . "pw_deliverability.worker_naptime = 3600\n"
	  . "pw_deliverability.worker_batch = $batch\n"
	  . "pw_deliverability.dns_max_qps = 400\n"
	  . "pw_deliverability.dns_timeout_ms = 300\n");

# Polls a query until it returns the wanted value (the server may be
# restarting meanwhile).
sub wait_for
{
	my ($sql, $want, $secs) = @_;
	my $deadline = time + ($secs // 60);
	my $got;
	while (time < $deadline)
	{
		my $rc = $node->psql('postgres', $sql, stdout => \$got, stderr => \my $err);
		return 1 if $rc == 0 && defined $got && $got eq $want;
		usleep(100_000);
	}
	diag("last value of [$sql]: " . ($got // 'none'));
	return 0;
}

$node->safe_psql('postgres', qq{
    CREATE EXTENSION pw_deliverability;
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text, mx_provider text);
    INSERT INTO fmcsa_carriers SELECT i, 'c' || i || '\@w' || (1 + i % $ndom) || '.test', 'smtp_valid'
      FROM generate_series(1, 2 * $ndom) i;
    SELECT pw.create_tagging_index();
    -- while armed, the first write of a transaction to pw.mx_domains makes its
    -- COMMIT sleep (a deferred trigger runs inside the commit)
    CREATE TABLE public.arm (armed bool);
    INSERT INTO public.arm VALUES (false);
    CREATE FUNCTION public.slow_commit() RETURNS trigger LANGUAGE plpgsql AS \$\$
    BEGIN
        IF (SELECT armed FROM public.arm) AND current_setting('test.slept', true) IS DISTINCT FROM 'on' THEN
            PERFORM set_config('test.slept', 'on', true);
            PERFORM pg_sleep(30);
        END IF;
        RETURN NULL;
    END \$\$;
    CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON pw.mx_domains
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.slow_commit();
});

my $committing = q{SELECT count(*) FROM pg_stat_activity
    WHERE backend_type = 'pw_deliverability mx tagger' AND wait_event = 'PgSleep'};
my $cached = q{SELECT count(*) FROM pw.mx_domains};
my @lost_batches;

# Waits for the tagger to sleep inside its commit, then kills it with a signal.
sub crash_mid_commit
{
	my ($sig) = @_;
	$node->psql('postgres', 'SELECT pw.wake_tagger()');
	ok(wait_for($committing, '1', 60), "SIG$sig: the tagger is committing a batch");
	my $before = $node->safe_psql('postgres', $cached);
	my $pid = $node->safe_psql('postgres', 'SELECT pw.tagger_pid()');
	my $logpos = -s $node->logfile;
	kill $sig, $pid;
	ok($node->wait_for_log(qr/terminated by signal/, $logpos), "SIG$sig: the postmaster saw the worker die");
	ok($node->wait_for_log(qr/all server processes terminated; reinitializing/, $logpos),
		"SIG$sig: and reinitialised the cluster");
	ok(wait_for(q{SELECT coalesce(pw.tagger_pid(), 0) NOT IN (0, } . $pid . ')', 't', 60),
		"SIG$sig: the worker is restarted");
	return $before;
}

# let a batch or two commit, then hold the next commit
$node->safe_psql('postgres', 'SELECT pw.wake_tagger()');
ok(wait_for("SELECT count(*) >= $batch FROM pw.mx_domains", 't', 30), 'the worker is draining the backlog');
$node->safe_psql('postgres', 'UPDATE public.arm SET armed = true');
my $c1 = crash_mid_commit('ABRT');
ok($c1 >= $batch && $c1 < $ndom, "$c1 domains were committed before the crash");
# still armed: the restarted worker redoes the batch and is held in its commit again
my $c2 = crash_mid_commit('SEGV');
is($c2, $c1, 'the batch interrupted by SIGABRT left nothing behind');
is($node->safe_psql('postgres', $cached), $c1, 'nor did the one interrupted by SIGSEGV');
$node->safe_psql('postgres', 'UPDATE public.arm SET armed = false');
$node->psql('postgres', 'SELECT pw.wake_tagger()');
ok(wait_for(q{SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL}, '0', 90), 'the backlog drains completely');

is($node->safe_psql('postgres', "SELECT count(*), count(DISTINCT domain), count(*) FILTER (WHERE outcome = 'mx' AND attempts = 0) FROM pw.mx_domains"),
	"$ndom|$ndom|$ndom", 'every domain is in the cache once, resolved');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM fmcsa_carriers c WHERE mx_provider IS DISTINCT FROM
    CASE WHEN (1 + id % $ndom) % 4 = 0 THEN 'rackspace' ELSE 'mx:host' || ((1 + id % $ndom) % 7) || '.net' END}),
	'0', 'every carrier has its domain\'s label');
my %n;
$n{ $_->[1] }++ for grep { $_->[2] eq 'MX' } $dns->queries;
my $again = grep { $_ > 1 } values %n;
is(scalar(keys %n), $ndom, 'every domain was looked up');
ok($again <= 2 * $batch, "only the two interrupted batches were looked up again ($again domains)");
ok(!grep({ $_ > 3 } values %n), 'no domain was looked up more than three times');
like(slurp_file($node->logfile), qr/terminated by signal 6.*terminated by signal 11/s, 'the log shows both signals');

$node->stop;
$dns->stop;
done_testing();
