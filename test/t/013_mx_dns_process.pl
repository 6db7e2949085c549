# The separate resolver process of a tagging run
# (pw_deliverability.dns_process): the same outcomes as resolving in the
# backend, visible in pg_stat_activity while it works and gone after the
# run; when it is terminated mid-run the run fails and writes nothing; a
# cancelled run takes it down; with no worker slot free the backend
# resolves itself; carriers in a partitioned table are labelled too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use IPC::Run;
use PwTest;
use PwDns;

my %bulk;
for my $prefix (qw(b c k x p))
{
	$bulk{"$prefix$_.example"} = $_ % 4 ? "mx$_.host" . ($_ % 7) . '.net' : 'aspmx.l.google.com'
	  for 1 .. 400;
}
my $dns = PwDns->start(bulk => \%bulk);
my $servers = $dns->servers;
my $conf = "pw_deliverability.worker_enabled = off\n"
  . "pw_deliverability.dns_servers = '$servers'\n"
  . "pw_deliverability.dns_timeout_ms = 300\n"
  . "pw_deliverability.dns_tries = 1\n";
my $node = pw_node('dnsproc', conf => $conf);

# one database resolving in a separate process, one in the backend
my @default = sort keys %{ PwDns::default_records() };
my $carriers = join(",\n", map { "('$default[$_]')" } 0 .. $#default);
for my $db (qw(proc inline))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, qq{
        CREATE EXTENSION pw_deliverability;
        CREATE TABLE fmcsa_carriers (id bigserial PRIMARY KEY, email text,
                                     email_verify_result text, mx_provider text);
        INSERT INTO fmcsa_carriers (email) SELECT 'a' || i || '\@b' || i || '.example'
          FROM generate_series(1, 400) i;
        INSERT INTO fmcsa_carriers (email) SELECT 'z\@b' || i || '.example'
          FROM generate_series(1, 400, 3) i;
        INSERT INTO fmcsa_carriers (email) SELECT 'x\@' || d FROM (VALUES $carriers) v(d);
        INSERT INTO fmcsa_carriers (email) VALUES ('bad\@bad_name.example'), ('no-at-sign');
        SELECT pw.create_tagging_index();
    });
}
my %counts;
for my $db (qw(proc inline))
{
	my $setting = $db eq 'proc' ? 'on' : 'off';
	$counts{$db} = $node->safe_psql($db, qq{
        SET pw_deliverability.dns_process = $setting;
        SET pw_deliverability.tag_batch_size = 40;
        SELECT looked_up, tagged, "none", invalid, failed, carriers_updated FROM pw.mx_tag(1000)});
}
is($counts{proc}, $counts{inline}, "same counts with and without the process ($counts{proc})");
like($counts{proc}, qr/^\d+\|4\d\d\|/, 'the bulk domains were tagged');
my $state = q{SELECT md5(string_agg(concat_ws('|', domain, outcome, label, mx_hosts::text, attempts, last_error),
                                    ',' ORDER BY domain)) FROM pw.mx_domains};
my $labels = q{SELECT md5(string_agg(id || '=' || coalesce(mx_provider, 'NULL'), ',' ORDER BY id)) FROM fmcsa_carriers};
is($node->safe_psql('proc', $state), $node->safe_psql('inline', $state), 'the same pw.mx_domains');
is($node->safe_psql('proc', $labels), $node->safe_psql('inline', $labels), 'the same carrier labels');
is($node->safe_psql('proc', q{SELECT count(*) FROM fmcsa_carriers WHERE email LIKE '%@b%' AND mx_provider IS NULL}),
	'0', 'every bulk carrier labelled');
is($dns->count('b7.example', 'MX'), 2, 'a domain looked up once per database');

# A run whose second batch waits on a server that never answers: the
# process shows in pg_stat_activity while the run goes on, and is gone after.
# Runs with prefix k, c or x; returns the IPC::Run harness and its output.
sub start_stalled_run
{
	my ($prefix, $extra) = @_;
	$node->safe_psql('proc', qq{
        INSERT INTO fmcsa_carriers (email) SELECT 'n' || i || '\@$prefix' || i || '.example'
          FROM generate_series(1, 60) i;
        UPDATE pw.mx_domains SET next_check_at = now() - interval '1 s'
         WHERE domain = 'silent.example'});
	my %io = (out => '', err => '');
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-q', '-At', '-d', $node->connstr('proc'), '-c',
			"SET pw_deliverability.dns_timeout_ms = 4000; SET pw_deliverability.tag_batch_size = 40; $extra"
			  . ' SELECT looked_up, failed FROM pw.mx_tag(1000)'
		],
		'>', \$io{out}, '2>', \$io{err});
	return ($h, \%io);
}

sub resolver_pid
{
	my $pid = '';
	for (1 .. 300)
	{
		$pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity
            WHERE backend_type = 'pw_deliverability resolver' AND wait_event IS NOT NULL});
		last if $pid ne '';
		usleep(20_000);
	}
	return $pid;
}

sub resolver_gone
{
	return $node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pw_deliverability resolver'});
}

my ($h, $io) = start_stalled_run('c', '');
my $pid = resolver_pid();
like($pid, qr/^\d+$/, "a resolver process works for the run (pid $pid)");
like($node->safe_psql('postgres', "SELECT backend_type || ': ' || coalesce(query, '') FROM pg_stat_activity WHERE pid = $pid"),
	qr/^pw_deliverability resolver: resolving a batch$/, 'its activity is shown');
$h->finish;
chomp $io->{out};
is($io->{out}, '61|1', 'the run ends: 60 new domains and the silent one looked up');
ok(resolver_gone(), 'the resolver process is gone after the run');

# terminated mid-run: the run fails and nothing of it is written
my $before = $node->safe_psql('proc', $state);
($h, $io) = start_stalled_run('k', '');
$pid = resolver_pid();
like($pid, qr/^\d+$/, 'a resolver process for the second run');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$h->finish;
like($io->{err}, qr/resolver process exited during a tagging run/, 'the run fails when its resolver is terminated');
like($io->{err}, qr/HINT:.*dns_process = off/, 'with a hint');
is($node->safe_psql('proc', $state), $before, 'no domain of the failed run is written');
is($node->safe_psql('proc', q{SELECT count(*) FROM fmcsa_carriers WHERE email LIKE '%@k%' AND mx_provider IS NOT NULL}),
	'0', 'no carrier of the failed run is labelled');
ok(resolver_gone(), 'nothing left running');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server did not restart');

# cancelled mid-run: the resolver process goes with the run
($h, $io) = start_stalled_run('x', q{SET statement_timeout = '1500ms';});
$h->finish;
like($io->{err}, qr/canceling statement due to statement timeout/, 'a run waiting on its resolver can be cancelled');
ok(resolver_gone(), 'the resolver process ends with the cancelled run');

# the run after the failures finishes the job
is($node->safe_psql('proc', q{SET pw_deliverability.tag_batch_size = 40;
    SELECT looked_up FROM pw.mx_tag(1000)}), '121', 'a later run tags what the failed ones left (120 domains and the due silent one)');

# carriers in a partitioned table: labelled by domain instead of row version
$node->safe_psql('postgres', 'CREATE DATABASE part');
$node->safe_psql('part', q{
    CREATE EXTENSION pw_deliverability;
    CREATE TABLE fmcsa_carriers (id bigint, email text, email_verify_result text, mx_provider text)
        PARTITION BY RANGE (id);
    CREATE TABLE carriers_low PARTITION OF fmcsa_carriers FOR VALUES FROM (0) TO (150);
    CREATE TABLE carriers_high PARTITION OF fmcsa_carriers FOR VALUES FROM (150) TO (1000);
    INSERT INTO fmcsa_carriers (id, email) SELECT i, 'p' || i || '@p' || (i % 250 + 1) || '.example'
      FROM generate_series(1, 300) i;
    SELECT pw.create_tagging_index();
});
is($node->safe_psql('part', q{SET pw_deliverability.tag_batch_size = 40;
    SELECT looked_up, tagged, carriers_updated FROM pw.mx_tag(1000)}), '250|250|300',
	'partitioned carriers: every domain tagged, every carrier labelled');
is($node->safe_psql('part', q{SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS DISTINCT FROM
    CASE WHEN (id % 250 + 1) % 4 = 0 THEN 'google' ELSE 'mx:host' || ((id % 250 + 1) % 7) || '.net' END}),
	'0', 'with the right labels');
is($node->safe_psql('part', q{SELECT string_agg(s.stxrelid::regclass || ':' || s.stxname, ',' ORDER BY s.stxname)
    FROM pg_statistic_ext s JOIN pg_statistic_ext_data d ON d.stxoid = s.oid}),
	'carriers_high:carriers_high_pw_email_domain,carriers_low:carriers_low_pw_email_domain,'
	  . 'fmcsa_carriers:fmcsa_carriers_pw_email_domain',
	'partitioned carriers: domain statistics on the table and each partition, collected');
$node->stop;

# no background worker slot: the backend resolves by itself
my $lean = pw_node('lean', conf => $conf . "max_worker_processes = 0\n");
$lean->safe_psql('postgres', q{
    CREATE EXTENSION pw_deliverability;
    CREATE TABLE fmcsa_carriers (id bigserial PRIMARY KEY, email text,
                                 email_verify_result text, mx_provider text);
    INSERT INTO fmcsa_carriers (email) SELECT 'a' || i || '@b' || i || '.example' FROM generate_series(1, 120) i;
});
my ($ret, $out, $err) = $lean->psql('postgres', q{SET client_min_messages = debug1;
    SET pw_deliverability.tag_batch_size = 40; SELECT looked_up, tagged FROM pw.mx_tag(1000)});
is($out, '120|120', 'no worker slot: all domains tagged');
like($err, qr/no background worker slot for a resolver process, resolving in this backend/,
	'and the fallback is reported at DEBUG1');
$lean->stop;
$dns->stop;
done_testing();
