# Claiming carriers from concurrent sessions: never the same carrier twice,
# never more than an operator's daily cap together, rows locked by others
# skipped.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use PwTest;

my $node = pw_node('claim');
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');
pw_load_generator($node);
$node->safe_psql('postgres', q{
    SELECT pw_generate_carriers(20000, seed => 5);
    -- nothing sent today: earlier sends move three days back
    UPDATE fmcsa_carriers SET listmonk_sent_at = listmonk_sent_at - interval '3 days';
    INSERT INTO pw.profiles (name, include_catch_all, per_op_run_cap, null_run_cap)
    VALUES ('c', true, 10, 15);
    INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap)
    SELECT 'c', op_class, from_day, daily_cap FROM pw.warmup_ramp WHERE profile = 'default';
    CREATE TABLE claims (carrier_id bigint PRIMARY KEY, who text NOT NULL);
    SELECT pw.create_selection_indexes('c');
});

# Every operator's sends of today within its daily cap on day 40.
my $over_cap = q{
    SELECT count(*) FROM (
        SELECT mx_provider, count(*) AS n FROM fmcsa_carriers
         WHERE listmonk_sent_at >= current_date AND mx_provider IS NOT NULL
         GROUP BY 1) t
     WHERE n > pw.daily_cap('c', mx_provider, 40)};
my $day_total = q{SELECT count(*) FROM fmcsa_carriers WHERE listmonk_sent_at >= current_date};

# 1. A claimer in an open transaction holds the claim lock: a second
# claimer waits, then sees the first one's claims and takes none of them.
my $a = $node->background_psql('postgres', on_error_stop => 1);
my $b = $node->background_psql('postgres', on_error_stop => 1);
my $a_pid = $a->query_safe('SELECT pg_backend_pid()');
$a->query_safe(q{BEGIN;
    INSERT INTO claims SELECT carrier_id, 'a' FROM pw.select_sendable_carriers(300, 'c', 40, true)});
my $b_pid = $b->query_safe('SELECT pg_backend_pid()');
$b->query_until(qr/started/, q{\echo started
    INSERT INTO claims SELECT carrier_id, 'b' FROM pw.select_sendable_carriers(300, 'c', 40, true);
    \echo finished
});
ok($node->poll_query_until('postgres',
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $b_pid"),
	'second claimer waits for the first one\'s transaction');
$a->query_safe('COMMIT');
$b->query_until(qr/finished/, '');
like($b->{stderr}, qr/NOTICE:  waiting for the claim lock of this sent column, held by PID $a_pid\b/,
	'the waiting claimer said for whom it waited');
$b->{stderr} = '';
is($node->safe_psql('postgres', "SELECT count(*) FROM claims WHERE who = 'a'"), '300',
	'first claimer got its quota');
my $b_count = $node->safe_psql('postgres', "SELECT count(*) FROM claims WHERE who = 'b'");
ok($b_count > 0 && $b_count <= 300, "second claimer got the rest of the allowances ($b_count)");
is($node->safe_psql('postgres', $day_total),
	$node->safe_psql('postgres', 'SELECT count(*) FROM claims'),
	'every claimed carrier is marked sent today, no other');
is($node->safe_psql('postgres', $over_cap), '0', 'no operator over its daily cap after two claims');
# mx:yahoodns.net: cap 15 on day 40, 10 a run: the first run takes 10, the
# second only the 5 left of the day
is($node->safe_psql('postgres', q{
    SELECT string_agg(who || ':' || n, ' ' ORDER BY who) FROM (
        SELECT c.who, count(*) AS n FROM claims c JOIN fmcsa_carriers f ON f.id = c.carrier_id
         WHERE f.mx_provider = 'mx:yahoodns.net' GROUP BY 1) t}),
	'a:10 b:5', 'the second claimer sees the first one\'s claims against the daily cap');

# 2. Rows locked by another transaction are skipped, not waited for.
$node->safe_psql('postgres', 'UPDATE fmcsa_carriers SET listmonk_sent_at = NULL
    WHERE id IN (SELECT carrier_id FROM claims); TRUNCATE claims');
my $first5 = $node->safe_psql('postgres',
	q{SELECT string_agg(carrier_id::text, ',') FROM pw.select_sendable_carriers(5, 'c', 40)});
$a->query_safe("BEGIN; SELECT id FROM fmcsa_carriers WHERE id IN ($first5) FOR UPDATE");
$b->query_safe(q{INSERT INTO claims SELECT carrier_id, 'b' FROM pw.select_sendable_carriers(5, 'c', 40, true)});
is($node->safe_psql('postgres', "SELECT count(*) FROM claims WHERE carrier_id IN ($first5)"), '0',
	'carriers locked elsewhere are skipped');
is($node->safe_psql('postgres', 'SELECT count(*) FROM claims'), '5', 'the quota is filled from the next ones');
$a->query_safe('ROLLBACK');
$a->quit;
$b->quit;

# 3. Two sessions claiming in a loop at the same time.
$node->safe_psql('postgres', 'UPDATE fmcsa_carriers SET listmonk_sent_at = NULL
    WHERE id IN (SELECT carrier_id FROM claims); TRUNCATE claims');
my $runs = 12;
my @h;
for my $who (qw(x y))
{
	my $script = "$PostgreSQL::Test::Utils::tmp_check/claims_$who.sql";
	open my $fh, '>', $script or die "$script: $!";
	print $fh "INSERT INTO claims SELECT carrier_id, '$who' FROM pw.select_sendable_carriers(150, 'c', 40, true);\n"
	  for 1 .. $runs;
	close $fh;
	my ($out, $err) = ('', '');
	push @h, [ IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
				'-d', $node->connstr('postgres'), '-f', $script ],
			'>', \$out, '2>', \$err), \$err ];
}
for my $run (@h)
{
	$run->[0]->finish;
	is($run->[0]->result(0), 0, 'concurrent claimer ran all its claims') or diag ${ $run->[1] };
}
my ($total, $distinct, $who_count) = split /\|/, $node->safe_psql('postgres',
	'SELECT count(*), count(DISTINCT carrier_id), count(DISTINCT who) FROM claims');
ok($total > 0, "concurrent claims took carriers ($total)");
is($distinct, $total, 'no carrier claimed twice');
is($who_count, '2', 'both sessions claimed carriers');
is($node->safe_psql('postgres', $day_total), $total, 'claimed carriers are exactly those sent today');
is($node->safe_psql('postgres', $over_cap), '0', 'no operator over its daily cap after concurrent claims');
ok($node->safe_psql('postgres', q{SELECT count(*) FROM claims c JOIN fmcsa_carriers f ON f.id = c.carrier_id
     WHERE f.mx_provider IS NULL}) <= 15 * 2 * $runs, 'untagged within its per-run cap');
is($node->safe_psql('postgres', q{SELECT count(*) FROM claims c JOIN fmcsa_carriers f ON f.id = c.carrier_id
     WHERE f.verify_sent_at IS NOT NULL OR f.email_verify_result NOT IN ('smtp_valid', 'send_confirmed', 'catch_all_domain')}),
	'0', 'only the campaign pool, only the campaign sent column');

$node->stop;
done_testing();
