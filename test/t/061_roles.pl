# pw.grant_role(): each part of the daily loop granted to a login role of
# its own, which then runs its part (and only it) as that role.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;

my ($node, $logs) = pw_maillog_node('roles', 0);
$node->safe_psql('postgres', q{
    DROP TABLE fmcsa_carriers;
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                 mx_provider text, listmonk_sent_at timestamptz, verify_sent_at timestamptz);
    INSERT INTO fmcsa_carriers (id, email, email_verify_result, mx_provider)
    SELECT i, 'r' || i || '@d' || (i % 20) || '.test',
           CASE WHEN i % 2 = 0 THEN 'smtp_valid' ELSE 'catch_all_domain' END,
           'mx:host' || (i % 20) || '.net'
      FROM generate_series(1, 400) i;
    SELECT pw.create_writeback_index();
    UPDATE pw.profiles SET warmup_start = current_date - 60;
    INSERT INTO pw.maillogs (path, profile) VALUES ('verify.log', 'verify');
});

my %parts = (campaign => 'pw_campaign', verify_sender => 'pw_verifier', ingest => 'pw_ingester',
	monitor => 'pw_monitor');
for my $what (sort keys %parts)
{
	$node->safe_psql('postgres', "CREATE ROLE $parts{$what} LOGIN");
	my $stmts = $node->safe_psql('postgres', "SELECT * FROM pw.grant_role('$parts{$what}', '$what')");
	like($stmts, qr/^GRANT USAGE ON SCHEMA pw TO $parts{$what}$/m, "$what: granted ($parts{$what})");
}

# Runs SQL as a role: (exit code, stdout, stderr).
sub as_role
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "SET ROLE $role;\n$sql", on_error_stop => 1);
	return ($ret, $out, $err);
}

# Runs SQL as a role and checks it works; returns stdout.
sub works_as
{
	my ($role, $sql, $name) = @_;
	my ($ret, $out, $err) = as_role($role, $sql);
	is($ret, 0, $name) or diag($err);
	return $out;
}

# Checks that SQL fails as a role with "permission denied".
sub denied_as
{
	my ($role, $sql, $name) = @_;
	my ($ret, $out, $err) = as_role($role, $sql);
	ok($ret != 0 && $err =~ /permission denied/, $name) or diag("ret $ret: $err");
}

# the campaign builder: a dry run, a claim, a release
works_as('pw_campaign', q{SELECT count(*) FROM pw.selection_composition(100, 'default')},
	'campaign: the dry run');
is(works_as('pw_campaign', q{SELECT count(*) FROM pw.select_sendable_carriers(50, 'default', claim => true)}),
	'50', 'campaign: claims its run');
is(works_as('pw_campaign', q{SELECT pw.release_run(run_id) FROM pw.last_runs WHERE kind = 'claim' AND profile = 'default'}),
	'50', 'campaign: releases a claim it never mailed');
works_as('pw_campaign', q{SELECT count(*) FROM pw.select_sendable_carriers(50, 'default', claim => true)},
	'campaign: claims again');
denied_as('pw_campaign', q{SELECT count(*) FROM pw.select_sendable_carriers(10, 'verify', claim => true)},
	'campaign: cannot claim for the verification profile');
denied_as('pw_campaign', q{SELECT * FROM pw.ingest_maillog('verify.log')}, 'campaign: cannot ingest');

# the verification sender: claims the burner's batch
my $batch = works_as('pw_verifier',
	q{SELECT email FROM pw.select_sendable_carriers(20, 'verify', claim => true) ORDER BY 1},
	'verify_sender: claims the verification batch');
my @batch = split /\n/, $batch;
is(scalar @batch, 20, 'verify_sender: 20 carriers claimed');
denied_as('pw_verifier', q{UPDATE fmcsa_carriers SET listmonk_sent_at = now()},
	'verify_sender: cannot mark campaign sends');

# the ingest: the burner's log, a bounce and deliveries, then the hourly jobs
open(my $fh, '>', "$logs/verify.log") or die $!;
my $n = 0;
for my $to (@batch)
{
	my ($status, $dsn, $reply) = $n++ == 0
	  ? ('bounced', '5.1.1', '550 5.1.1 <' . $to . '>: Recipient address rejected: User unknown')
	  : ('sent', '2.0.0', '250 2.0.0 Ok: queued as ABC');
	printf $fh "2026-01-05T10:00:00+00:00 mx1 postfix/smtp[42]: Q%09d: to=<%s>, relay=mx.example[192.0.2.1]:25, "
	  . "delay=0.1, delays=0/0/0/0.1, dsn=%s, status=%s (host mx.example[192.0.2.1] said: %s (in reply to RCPT TO command))\n",
	  $n, $to, $dsn, $status, $reply;
}
close $fh;
is(works_as('pw_ingester', q{SELECT sent || ' ' || hard_bounced FROM pw.ingest_maillog('verify.log')}),
	'19 1', 'ingest: ingests the log');
is(works_as('pw_ingester', q{SELECT pw.confirm_deliveries('0 seconds')}), '19', 'ingest: confirms deliveries');
works_as('pw_ingester', q{SELECT pw.requeue_verifications()}, 'ingest: requeues verifications');
denied_as('pw_ingester', q{SELECT count(*) FROM pw.select_sendable_carriers(10, 'default', claim => true)},
	'ingest: cannot claim');

# the monitor: every view of the loop, the report and health
for my $view (qw(pw.mx_backlog pw.mx_labels pw.mx_failing pw.mx_tag_progress pw.braked_operators
	pw.operator_outcomes pw.maillog_status pw.verification_retries pw.run_history pw.last_runs pw.deliveries
	pw.ingest_progress))
{
	works_as('pw_monitor', "SELECT count(*) FROM $view", "monitor: reads $view");
}
like(works_as('pw_monitor', q{SELECT string_agg(DISTINCT section, ',' ORDER BY section) FROM pw.report('default')}),
	qr/^backlog,pool,today\b/, 'monitor: pw.report()');
like(works_as('pw_monitor', q{SELECT string_agg(DISTINCT section, ',' ORDER BY section) FROM pw.report('verify')}),
	qr/pool.*verification/, 'monitor: pw.report(\'verify\')');
like(works_as('pw_monitor', q{SELECT string_agg("check" || '=' || status, ' ') FROM pw.health()}),
	qr/carriers contract=ok/, 'monitor: pw.health()');
denied_as('pw_monitor', q{SELECT count(*) FROM pw.select_sendable_carriers(10, 'default', claim => true)},
	'monitor: cannot claim');
denied_as('pw_monitor', q{SELECT * FROM pw.token_key}, 'monitor: cannot read the token key');
denied_as('pw_monitor', q{SELECT * FROM pw.grant_role('pw_monitor', 'ingest')}, 'monitor: cannot grant');

# errors
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT * FROM pw.grant_role('no_such_role', 'monitor')});
like($err, qr/role "no_such_role" does not exist/, 'an unknown role is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT * FROM pw.grant_role('pw_monitor', 'admin')});
like($err, qr/unknown part of the loop "admin".*HINT:  One of campaign, verify_sender, ingest, monitor/s,
	'an unknown part is refused with the list');

$node->stop;
done_testing();
