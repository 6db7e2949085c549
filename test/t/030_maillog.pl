# Mail logs: path refusals, over-long and partial lines, rotation between
# two calls, grants, and a backend killed in the middle of an ingest.
use strict;
use warnings;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use PwTest;

my $base = PostgreSQL::Test::Utils::tempdir();
my $logs = "$base/logs";
my $outside = "$base/outside";
make_path($logs, $outside);

my $node = pw_node('maillog',
	conf => "pw_deliverability.maillog_directory = '$logs'\nrestart_after_crash = on\n");
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');
$node->safe_psql('postgres', q{
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                 mx_provider text, listmonk_sent_at timestamptz);
    SELECT pw.create_writeback_index();
});

# Appends text to a file.
sub append
{
	my ($path, $text) = @_;
	open(my $fh, '>>', $path) or die "$path: $!";
	print $fh $text;
	close($fh);
}

# One delivery-status line.
sub line
{
	my ($qid, $to, $status, $dsn) = @_;
	$dsn //= $status eq 'sent' ? '2.0.0' : $status eq 'bounced' ? '5.1.1' : '4.4.1';
	return "2024-03-01T10:00:00+00:00 mx1 postfix/smtp[42]: $qid: to=<$to>, relay=mx.example[192.0.2.1]:25, "
	  . "delay=0.1, delays=0/0/0/0.1, dsn=$dsn, status=$status (reply)\n";
}

# --- path refusals -------------------------------------------------------
append("$outside/secret.log", line('AAAAA11111', 'secret@x.test', 'sent'));
append("$logs/real.log", line('AAAAA22222', 'real@x.test', 'sent'));
symlink("$outside/secret.log", "$logs/escape.log") or die;
symlink("$logs/real.log", "$logs/inside.log") or die;
symlink($outside, "$logs/subdir") or die;

my ($ret, $out, $err);
($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM pw.read_maillog('escape.log')");
like($err, qr/outside pw_deliverability.maillog_directory/, 'symlink leading out refused');
($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM pw.read_maillog('subdir/secret.log')");
like($err, qr/outside pw_deliverability.maillog_directory/, 'directory symlink leading out refused');
($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM pw.read_maillog('$logs/../outside/secret.log')");
like($err, qr/outside pw_deliverability.maillog_directory/, '.. leading out refused');
($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM pw.read_maillog('$outside/secret.log')");
like($err, qr/outside pw_deliverability.maillog_directory/, 'absolute path outside refused');
($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM pw.read_maillog('$logs')");
like($err, qr/outside|not a regular file/, 'the directory itself is refused');
is($node->safe_psql('postgres', "SELECT count(*) FROM pw.read_maillog('inside.log')"), '1',
	'symlink staying inside is read');
is($node->safe_psql('postgres', "SELECT recipient FROM pw.read_maillog('$logs/real.log')"),
	'real@x.test', 'absolute path inside is read');

# --- over-long and partial lines --------------------------------------------
append("$logs/long.log", line('BBBBB00001', 'before@x.test', 'sent'));
append("$logs/long.log", "2024-03-01T10:00:00+00:00 mx1 postfix/smtp[42]: BBBBB00002: to=<" . ('x' x 70000) . "\@x.test>, status=sent (ok)\n");
append("$logs/long.log", line('BBBBB00003', 'after@x.test', 'sent'));
append("$logs/long.log", ('y' x 200000) . "\n");
append("$logs/long.log", line('BBBBB00004', 'last@x.test', 'sent'));
is($node->safe_psql('postgres',
		"SELECT string_agg(recipient, ',' ORDER BY line_offset) FROM pw.read_maillog('long.log')"),
	'before@x.test,after@x.test,last@x.test', 'over-long lines skipped, neighbours read');
is($node->safe_psql('postgres', "SELECT count(*) FROM pw.read_maillog('long.log');"
		  . " SELECT lines, overlong, end_offset = " . (-s "$logs/long.log") . " FROM pw.maillog_last_read()"),
	"3\n5|2|t", 'over-long lines counted');

# a line still being written is left for the next call
my $partial = line('CCCCC00001', 'partial@x.test', 'bounced');
append("$logs/part.log", line('CCCCC00000', 'whole@x.test', 'sent'));
append("$logs/part.log", substr($partial, 0, 60));
is($node->safe_psql('postgres', "SELECT lines, events FROM pw.ingest_maillog('part.log')"),
	'1|1', 'partial last line not consumed');
append("$logs/part.log", substr($partial, 60));
is($node->safe_psql('postgres', "SELECT lines, events, bounced FROM pw.ingest_maillog('part.log')"),
	'1|1|1', 'completed line read once, from its start');
is($node->safe_psql('postgres', "SELECT count(*) FROM pw.suppressions WHERE email = 'partial\@x.test'"),
	'1', 'the completed bounce is applied');

# --- rotation between two calls ---------------------------------------------
$node->safe_psql('postgres', q{INSERT INTO fmcsa_carriers (id, email, email_verify_result)
    SELECT i, 'r' || i || '@x.test', 'catch_all_domain' FROM generate_series(1, 9) i});
append("$logs/mail.log", line('DDDDD00001', 'r1@x.test', 'sent') . line('DDDDD00002', 'r2@x.test', 'deferred'));
is($node->safe_psql('postgres', "SELECT files, events FROM pw.ingest_maillog('mail.log')"), '1|2',
	'first call reads the file');
# written after the call, then the file is rotated and a new one started
append("$logs/mail.log", line('DDDDD00003', 'r3@x.test', 'bounced'));
rename("$logs/mail.log", "$logs/mail.log.1") or die;
append("$logs/mail.log", line('DDDDD00004', 'r4@x.test', 'sent') . line('DDDDD00005', 'r5@x.test', 'bounced'));
is($node->safe_psql('postgres', "SELECT files, lines, events, sent, bounced FROM pw.ingest_maillog('mail.log')"),
	'2|3|3|1|2', 'rotated file finished, then the new one read from its start');
is($node->safe_psql('postgres', q{SELECT string_agg(email || '=' || sent_count || '/' || deferred_count || '/' || bounce_count, ',' ORDER BY email)
    FROM pw.deliveries WHERE email ~ '^r\d@'}),
	'r1@x.test=1/0/0,r2@x.test=0/1/0,r3@x.test=0/0/1,r4@x.test=1/0/0,r5@x.test=0/0/1',
	'no line lost or read twice across rotation');
is($node->safe_psql('postgres', "SELECT string_agg(id::text, ',' ORDER BY id) FROM fmcsa_carriers WHERE email_verify_result = 'hard_bounced'"),
	'3,5', 'bounces from both files written back');
is($node->safe_psql('postgres', "SELECT events FROM pw.ingest_maillog('mail.log')"), '0',
	'nothing new after rotation');

# rotated away with no path.1 (e.g. compressed already): a warning, then the new file
append("$logs/mail.log", line('DDDDD00006', 'r6@x.test', 'sent'));
unlink("$logs/mail.log.1");
rename("$logs/mail.log", "$logs/mail.log.2") or die;
append("$logs/mail.log", line('DDDDD00007', 'r7@x.test', 'sent'));
($ret, $out, $err) = $node->psql('postgres', "SELECT files, events FROM pw.ingest_maillog('mail.log')");
is($out, '1|1', 'new file read when the rotated one is gone');
like($err, qr/rotated or truncated.*not ingested/s, 'lost lines are warned about');

# copy-and-truncate: same inode, smaller than the offset
truncate("$logs/mail.log", 0) or die;
append("$logs/mail.log", line('DDDDD00008', 'z@x.test', 'sent'));
($ret, $out, $err) = $node->psql('postgres', "SELECT files, events FROM pw.ingest_maillog('mail.log')");
is($out, '1|1', 'truncated file read from its start');

# --- grants ------------------------------------------------------------------
$node->safe_psql('postgres', q{
    CREATE ROLE ingester LOGIN;
    CREATE ROLE stranger LOGIN;
    GRANT USAGE ON SCHEMA pw TO ingester, stranger;
    GRANT EXECUTE ON FUNCTION pw.read_maillog(text, bigint), pw.maillog_last_read(),
        pw.ingest_maillog(text), pw.confirm_deliveries(interval) TO ingester;
    GRANT SELECT, INSERT, UPDATE, DELETE ON pw.maillog_files, pw.maillog_pending, pw.deliveries,
        pw.maillog_daily, pw.maillog_categories, pw.suppressions, pw.hard_bounces,
        pw.verify_attempts TO ingester;
    GRANT SELECT ON pw.carriers_config, pw.profiles TO ingester;
    GRANT SELECT, UPDATE ON fmcsa_carriers TO ingester;
});
append("$logs/grant.log", line('EEEEE00001', 'r9@x.test', 'bounced'));
($ret, $out, $err) = $node->psql('postgres', "SELECT events FROM pw.ingest_maillog('grant.log')",
	extra_params => [ '-U', 'stranger' ]);
like($err, qr/permission denied for function ingest_maillog/, 'ingest refused without a grant');
($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM pw.read_maillog('grant.log')",
	extra_params => [ '-U', 'stranger' ]);
like($err, qr/permission denied for function read_maillog/, 'read refused without a grant');
($ret, $out, $err) = $node->psql('postgres', "SELECT events, carriers_bounced FROM pw.ingest_maillog('grant.log')",
	extra_params => [ '-U', 'ingester' ]);
is($out, '1|1', 'a granted role ingests and writes back');
# pw.maillog_profile() (security definer) is not for PUBLIC, yet the ingest
# still maps a granted role's log to its profile
($ret, $out, $err) = $node->psql('postgres', "SELECT pw.maillog_profile('grant.log', 'grant.log')",
	extra_params => [ '-U', 'stranger' ]);
like($err, qr/permission denied for function maillog_profile/, 'pw.maillog_profile() refused without a grant');
$node->safe_psql('postgres', q{INSERT INTO pw.maillogs (path, profile) VALUES ('profile.log', 'default')});
append("$logs/profile.log", line('EEEEE00002', 'r8@x.test', 'sent'));
($ret, $out, $err) = $node->psql('postgres', "SELECT events FROM pw.ingest_maillog('profile.log')",
	extra_params => [ '-U', 'ingester' ]);
is($out, '1', 'a granted role ingests a log mapped to a profile') or diag($err);
is($node->safe_psql('postgres', q{SELECT sum(sent) FROM pw.maillog_daily WHERE profile = 'default'}), '1',
	'and its outcome is the profile\'s');
($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM pw.read_maillog('escape.log')",
	extra_params => [ '-U', 'ingester' ]);
like($err, qr/outside pw_deliverability.maillog_directory/, 'a granted role is still confined');
($ret, $out, $err) = $node->psql('postgres', "SET pw_deliverability.maillog_directory = '/'",
	extra_params => [ '-U', 'ingester' ]);
like($err, qr/permission denied to set parameter/, 'only a superuser sets the directory');

# --- carriers with new row versions between the scan and the writeback ----
# The hard bounces are written back by the row versions the carriers scan
# found.  Between the two the ingest inserts into pw.deliveries: a trigger
# there updates the carriers of one address, whose bounce must still land.
$node->safe_psql('postgres', 'CREATE DATABASE moved');
$node->safe_psql('moved', q{
    CREATE EXTENSION pw_deliverability;
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                 mx_provider text, listmonk_sent_at timestamptz);
    INSERT INTO fmcsa_carriers VALUES (1, 'Moved@X.test', 'catch_all_domain', NULL, NULL),
        (2, 'stays@x.test', 'catch_all_domain', NULL, NULL),
        (3, ' moved@x.test', 'smtp_valid', NULL, NULL),
        (4, 'other@x.test', 'catch_all_domain', NULL, NULL);
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE public.fmcsa_carriers SET listmonk_sent_at = now()
         WHERE lower(btrim(email)) = NEW.email AND NEW.email = 'moved@x.test';
        RETURN NULL;
    END $$;
    CREATE TRIGGER touch AFTER INSERT ON pw.deliveries FOR EACH ROW EXECUTE FUNCTION touch();
});
append("$logs/moved.log", line('DDDDD00001', 'moved@x.test', 'bounced')
	  . line('DDDDD00002', 'stays@x.test', 'bounced') . line('DDDDD00003', 'other@x.test', 'sent'));
is($node->safe_psql('moved', "SELECT carriers_bounced FROM pw.ingest_maillog('moved.log')"), '3',
	'carriers updated since the scan: still written back');
is($node->safe_psql('moved', q{SELECT string_agg(id || ':' || email_verify_result || ':'
                                   || (listmonk_sent_at IS NOT NULL), ',' ORDER BY id) FROM fmcsa_carriers}),
	'1:hard_bounced:true,2:hard_bounced:false,3:hard_bounced:true,4:catch_all_domain:false',
	'every carrier of a bounced address is hard_bounced, the update of the others kept');

# --- ingests of two files: they read in parallel, apply one at a time -----
append("$logs/conc_a.log", line('FFFFF00001', 'conc-a@x.test', 'sent'));
append("$logs/conc_b.log", line('FFFFF00002', 'conc-b@x.test', 'bounced'));
{
	my ($in, $out, $err) = ('', '', '');
	my $a = IPC::Run::start([ 'psql', '-X', '-At', '-d', $node->connstr('moved') ],
		'<', \$in, '>', \$out, '2>', \$err);
	$in .= "BEGIN;\nSELECT events FROM pw.ingest_maillog('conc_a.log');\n";
	$a->pump until $out =~ /^1$/m;
	# a holds its ingest's lock until it commits: b's apply waits for it
	my $b = IPC::Run::start([ 'psql', '-X', '-At', '-d', $node->connstr('moved'), '-c',
			"SELECT events, carriers_bounced FROM pw.ingest_maillog('conc_b.log')" ],
		'>', \my $bout, '2>', \my $berr);
	ok($node->poll_query_until('moved', q{SELECT count(*) = 1 FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND query ~ 'conc_b'}),
		'a second ingest waits while the first is applied and not committed');
	$in .= "COMMIT;\n\\q\n";
	$a->finish;
	$b->finish;
	is($bout, "1|0\n", 'then goes on (its address is no carrier here)');
	is($node->safe_psql('moved', q{SELECT string_agg(email || ':' || sent_count || '/' || bounce_count, ',' ORDER BY email)
        FROM pw.deliveries WHERE email LIKE 'conc-%'}),
		'conc-a@x.test:1/0,conc-b@x.test:0/1', 'both ingests applied');
}

# --- a backend killed mid-ingest, then a re-ingest ---------------------------
my $big = "$logs/big.log";
system_or_bail("perl " . pw_srcdir() . "/test/gen_maillog.pl 400000 7 rfc3339 > $big");
# Creates a database with the extension and 667k generated carriers.
sub carriers_db
{
	my ($db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
        CREATE EXTENSION pw_deliverability;
        CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                     mx_provider text, listmonk_sent_at timestamptz);
        INSERT INTO fmcsa_carriers SELECT u, 'u' || u || '@d' || (u % 50) || '.test',
            'catch_all_domain', 'mx:d' || (u % 7) || '.test', NULL
          FROM generate_series(0, 1999999, 3) u;
        SELECT pw.create_writeback_index();
    });
}
carriers_db($_) for qw(ref victim);
my $digest = q{SELECT md5(concat_ws('#',
    (SELECT string_agg(concat_ws('|', id, email_verify_result), ',' ORDER BY id) FROM fmcsa_carriers
      WHERE email_verify_result <> 'catch_all_domain'),
    (SELECT string_agg(d::text, ',' ORDER BY email) FROM pw.deliveries d),
    (SELECT string_agg(s::text, ',' ORDER BY email) FROM pw.suppressions s),
    (SELECT string_agg(m::text, ',' ORDER BY day, mx_provider) FROM pw.maillog_daily m),
    (SELECT string_agg(p::text, ',' ORDER BY queue_id, email) FROM pw.maillog_pending p),
    (SELECT string_agg(concat_ws('|', "offset", lines, events), ',') FROM pw.maillog_files)))};
my $ref_counts = $node->safe_psql('ref', "SELECT lines, events, bounced, carriers_bounced FROM pw.ingest_maillog('big.log')");
note("reference ingest: $ref_counts");
my $ref = $node->safe_psql('ref', $digest);

# Starts an ingest in the background, kills its backend once it is running,
# and checks that nothing of it was applied.
sub kill_mid_ingest
{
	my ($how) = @_;
	my ($stdout, $stderr) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-d', $node->connstr('victim'), '-c', "SELECT events FROM pw.ingest_maillog('big.log')" ],
		'>', \$stdout, '2>', \$stderr);
	my $pid = '';
	for (1 .. 200)
	{
		$pid = $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE datname = 'victim' AND state = 'active' AND query ~ 'ingest_maillog'");
		last if $pid ne '';
		usleep(20_000);
	}
	ok($pid ne '', "$how: ingest running in backend $pid");
	usleep(300_000);
	if ($how eq 'terminate')
	{
		$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	}
	else
	{
		kill 'KILL', $pid;
	}
	$h->finish;
	like($stderr, qr/terminat|server closed the connection|connection to server was lost/i,
		"$how: the ingest did not finish");
	$node->poll_query_until('victim', 'SELECT true') or die;
	is($node->safe_psql('victim', 'SELECT count(*) FROM pw.maillog_files') . '/'
		  . $node->safe_psql('victim', 'SELECT count(*) FROM pw.deliveries'),
		'0/0', "$how: nothing of the killed ingest was applied");
}
kill_mid_ingest('terminate');
kill_mid_ingest('SIGKILL');
is($node->safe_psql('victim', "SELECT lines, events, bounced, carriers_bounced FROM pw.ingest_maillog('big.log')"),
	$ref_counts, 're-ingest after the kills reads the whole file');
is($node->safe_psql('victim', $digest), $ref, 'same end state as an uninterrupted ingest');
is($node->safe_psql('victim', "SELECT events FROM pw.ingest_maillog('big.log')"), '0',
	'and ingesting again changes nothing');
is($node->safe_psql('victim', $digest), $ref, 'end state unchanged');

# --- one call, or the same lines over several calls: one end state -------
# The expiries a call reads settle the deferrals of that call in memory and
# those of earlier calls in pw.maillog_pending: both ways must agree.  The
# log is ingested whole, split in two (every line but the expiries, then the
# expiries: each deferral then meets its expiry in a later call), and in ten
# pieces cut anywhere.
make_path("$logs/split", "$logs/chunks");
my @lines = do { open(my $fh, '<', $big) or die "$big: $!"; <$fh> };
my @expiries = grep { /status=expired/ } @lines;
ok(@expiries > 1000, scalar(@expiries) . ' expiry lines in the log');
# the digest with the directories of the logs left out of the source columns
my $digest_of = sub {
	my ($db, $suppressed_only) = @_;
	my $sql = $digest;
	# the expiry lines are stamped an hour after their message: a piece can
	# hold an address's expiry before the next piece shows an earlier bounce,
	# and the suppression keeps the reason of the bounce it was made for
	$sql =~ s/string_agg\(s::text/string_agg(s.email/ if $suppressed_only;
	$sql =~ s/(\w+)::text/replace(replace(replace(${1}::text, '$logs\/split\/', ''), '$logs\/chunks\/', ''), '$logs\/', '')/g;
	return $node->safe_psql($db, $sql);
};
my $whole = $digest_of->('ref');
carriers_db($_) for qw(split chunks);
append("$logs/split/big.log", join('', grep { !/status=expired/ } @lines));
my $first = $node->safe_psql('split', "SELECT expired FROM pw.ingest_maillog('split/big.log')");
is($first, '0', 'split: the first call reads no expiry');
ok($node->safe_psql('split', 'SELECT count(*) FROM pw.maillog_pending') > 1000,
	'split: the deferrals wait in pw.maillog_pending');
append("$logs/split/big.log", join('', @expiries));
is($node->safe_psql('split', "SELECT expired FROM pw.ingest_maillog('split/big.log')"),
	scalar(@expiries), 'split: the second call reads the expiries');
is($digest_of->('split'), $whole, 'split: same end state as one call');
my $per = int(@lines / 10) + 1;
for (my $i = 0; $i < @lines; $i += $per)
{
	my $end = $i + $per - 1;
	$end = $#lines if $end > $#lines;
	append("$logs/chunks/big.log", join('', @lines[ $i .. $end ]));
	$node->safe_psql('chunks', "SELECT pw.ingest_maillog('chunks/big.log')");
}
is($digest_of->('chunks', 1), $digest_of->('ref', 1),
	'ten pieces: same end state as one call (suppressed addresses compared, not their reasons)');

# --- progress: an ingest waiting for another one's deliveries lock shows in
# pw.ingest_progress, past its reading phase, with what it read
my $nlines = 200_000;
append("$logs/progress.log", join('', map { line(sprintf('P%09d', $_), "p$_\@x.test", 'sent') } 1 .. $nlines));
my $holder = $node->background_psql('postgres', on_error_stop => 1);
$holder->query_safe('BEGIN; LOCK TABLE pw.deliveries IN SHARE ROW EXCLUSIVE MODE');
my $ingester = $node->background_psql('postgres', on_error_stop => 1);
my $ingester_pid = $ingester->query_safe('SELECT pg_backend_pid()');
$ingester->query_until(qr/started/, q{\echo started
    SELECT events FROM pw.ingest_maillog('progress.log');
    \echo finished
});
ok($node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM pw.ingest_progress
    WHERE pid = $ingester_pid AND phase = 'applying' AND events = $nlines AND addresses = $nlines
      AND steps_done = 1 AND file LIKE '%/progress.log' AND datname = 'postgres'}),
	'pw.ingest_progress shows the waiting ingest: file, phase, events and addresses read');
$holder->query_safe('COMMIT');
$ingester->query_until(qr/finished/, '');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pw.ingest_progress'), '0',
	'... and nothing once it is done');
$holder->quit;
$ingester->quit;

$node->stop;
done_testing();
