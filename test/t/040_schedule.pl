# pw.schedule_jobs() / pw.unschedule_jobs() with pg_cron preloaded: the
# jobs are registered idempotently, follow pw.maillogs, and each of them
# (MX tagging, mail-log ingest, confirmation) runs and takes effect.
use strict;
use warnings;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PwTest;
use PwDns;

my $base = PostgreSQL::Test::Utils::tempdir();
my $logs = "$base/logs";
make_path($logs);

my $dns = PwDns->start();
my $node = pw_node('schedule', preload => 'pw_deliverability,pg_cron',
	conf => "cron.database_name = 'postgres'\n"
	  . "cron.use_background_workers = on\n"
	  . "max_worker_processes = 16\n"
	  . "pw_deliverability.worker_enabled = off\n"
	  . "pw_deliverability.maillog_directory = '$logs'\n"
	  . "pw_deliverability.dns_servers = '" . $dns->servers . "'\n");
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');

# without pg_cron in the database: a clear error
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT * FROM pw.schedule_jobs()');
isnt($rc, 0, 'schedule_jobs fails without pg_cron');
like($err, qr/pg_cron is not installed in database "postgres"/, 'and says why');
($rc, $out, $err) = $node->psql('postgres', 'SELECT pw.unschedule_jobs()');
like($err, qr/pg_cron is not installed/, 'unschedule_jobs too');

$node->safe_psql('postgres', q{
    CREATE EXTENSION pg_cron;
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                 mx_provider text, listmonk_sent_at timestamptz);
    -- untagged: for the tagging job
    INSERT INTO fmcsa_carriers VALUES (1, 'a@google.example', 'smtp_valid', NULL),
        (2, 'b@yahoo.example', 'smtp_valid', NULL), (3, 'c@nx.example', 'smtp_valid', NULL);
    -- bounces in the log: for the ingest job
    INSERT INTO fmcsa_carriers VALUES (4, 'gone@bounce.test', 'catch_all_domain', 'godaddy');
    -- delivered 3 days ago, never bounced: for the confirmation job
    INSERT INTO fmcsa_carriers VALUES (5, 'fine@ok.test', 'catch_all_domain', 'godaddy');
    INSERT INTO pw.deliveries (email, first_sent_at, last_sent_at, sent_count, in_carriers, mx_provider)
    VALUES ('fine@ok.test', now() - interval '3 days', now() - interval '3 days', 1, true, 'godaddy');
});

# the log of the campaign MTA: one bounce
open(my $fh, '>', "$logs/pw.log") or die $!;
print $fh "2024-03-01T10:00:00+00:00 mx1 postfix/smtp[42]: ABCDE12345: to=<gone\@bounce.test>, "
  . "relay=mx.bounce.test[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=5.1.1, "
  . "status=bounced (host said: 550 5.1.1 no such user)\n";
close($fh);
open($fh, '>', "$logs/burner.log") or die $!;
close($fh);

# --- registration: stable names, idempotent, following pw.maillogs -------
$node->safe_psql('postgres', q{
    INSERT INTO pw.maillogs (path, profile) VALUES ('pw.log', 'default'), ('burner.log', 'verify');
});
my $jobs = $node->safe_psql('postgres',
	q{SELECT string_agg(job_name || ' ' || schedule || ' ' || command, E'\n' ORDER BY job_name)
	    FROM pw.schedule_jobs()});
is($jobs, join("\n",
		"pw_confirm_deliveries 0 * * * * SELECT * FROM pw.confirm_deliveries()",
		"pw_ingest:burner.log */5 * * * * SELECT * FROM pw.ingest_maillog('burner.log')",
		"pw_ingest:pw.log */5 * * * * SELECT * FROM pw.ingest_maillog('pw.log')",
		"pw_mx_tag 45 5 * * * CALL pw.mx_tag_batches(20000)",
		"pw_requeue_verifications 0 * * * * SELECT pw.requeue_verifications()"),
	'schedule_jobs registers tagging, one ingest per log, confirmation, verification retries');
my $cron_jobs = q{SELECT string_agg(jobid || ' ' || jobname || ' ' || schedule, ',' ORDER BY jobname) FROM cron.job};
my $first = $node->safe_psql('postgres', $cron_jobs);
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '5', 'five jobs in cron.job');
$node->safe_psql('postgres', 'SELECT * FROM pw.schedule_jobs()');
is($node->safe_psql('postgres', $cron_jobs), $first, 're-running changes nothing: same job ids, no duplicates');

# a log no longer configured loses its job; a changed schedule is updated in place
$node->safe_psql('postgres', q{DELETE FROM pw.maillogs WHERE path = 'burner.log'});
$node->safe_psql('postgres', q{SELECT * FROM pw.schedule_jobs(tag_schedule => '30 4 * * *')});
is($node->safe_psql('postgres',
		q{SELECT string_agg(jobname || ' ' || schedule, ',' ORDER BY jobname) FROM cron.job}),
	'pw_confirm_deliveries 0 * * * *,pw_ingest:pw.log */5 * * * *,pw_mx_tag 30 4 * * *,'
	  . 'pw_requeue_verifications 0 * * * *',
	'the removed log lost its job, the tagging schedule was updated');
my $tag_id = qr/(\d+) pw_mx_tag/;
my ($id_before) = $first =~ $tag_id;
my ($id_after) = $node->safe_psql('postgres', $cron_jobs) =~ $tag_id;
is($id_after, $id_before, 'the updated job kept its id');

is($node->safe_psql('postgres', 'SELECT pw.unschedule_jobs()'), '4', 'unschedule_jobs removes four jobs');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '0', 'none left');
is($node->safe_psql('postgres', 'SELECT pw.unschedule_jobs()'), '0', 'unschedule_jobs again: nothing to do');

# --- every job runs and takes effect: one wait for the next minute --------
$node->safe_psql('postgres', q{
    UPDATE pw.maillogs SET schedule = '* * * * *';
    SELECT * FROM pw.schedule_jobs(tag_schedule => '* * * * *', confirm_schedule => '* * * * *');
});
my $state_sql = q{SELECT string_agg(id || ':' || coalesce(mx_provider, '-') || ':' || email_verify_result, ' ' ORDER BY id)
                    FROM fmcsa_carriers};
my $want = '1:google:smtp_valid 2:mx:yahoodns.net:smtp_valid 3:none:smtp_valid '
  . '4:godaddy:hard_bounced 5:godaddy:send_confirmed';
my $deadline = time + 75;
my $state = '';
while (time < $deadline)
{
	$state = $node->safe_psql('postgres', $state_sql);
	last if $state eq $want;
	usleep(500_000);
}
is($state, $want, 'tagging, ingest and confirmation jobs all took effect');
is($node->safe_psql('postgres', q{SELECT profile || ':' || bounced FROM pw.maillog_daily}),
	'default:1', 'the ingested outcome is attributed to the log\'s profile');
ok($node->safe_psql('postgres', q{SELECT "offset" > 0 FROM pw.maillog_files WHERE path LIKE '%/pw.log'}),
	'the ingest advanced the log offset');

# every job has a succeeded run (wait for the run records to be final)
my $runs_sql = q{SELECT string_agg(j.jobname || ':' || coalesce((SELECT string_agg(DISTINCT d.status, '/')
                     FROM cron.job_run_details d WHERE d.jobid = j.jobid), 'none'), ',' ORDER BY j.jobname)
                   FROM cron.job j};
my $runs_want = 'pw_confirm_deliveries:succeeded,pw_ingest:pw.log:succeeded,pw_mx_tag:succeeded,'
  . 'pw_requeue_verifications:succeeded';
my $runs = '';
$deadline = time + 20;
while (time < $deadline)
{
	$runs = $node->safe_psql('postgres', $runs_sql);
	last if $runs eq $runs_want;
	usleep(200_000);
}
is($runs, $runs_want, 'pg_cron recorded a succeeded run of each job');
# and pw.runs has the counts of each, called by pg_cron
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT kind, ',' ORDER BY kind) FROM pw.runs
    WHERE caller LIKE 'pg_cron (%)' AND error IS NULL}), 'confirm,ingest,mx_tag',
	'pw.runs records the scheduled tagging, ingest and confirmation, called by pg_cron');
is($node->safe_psql('postgres', q{SELECT sum((counts ->> 'bounced')::int) FROM pw.runs WHERE kind = 'ingest'}),
	'1', '... with their counts');

is($node->safe_psql('postgres', 'SELECT pw.unschedule_jobs()'), '4', 'unscheduled');
$node->stop;
$dns->stop;
done_testing();
