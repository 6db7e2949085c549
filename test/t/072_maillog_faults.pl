# Mail-log faults against pw.ingest_maillog(): the log truncated, rotated
# twice between calls, deleted, replaced by a directory, unreadable, and a
# full disk simulated on the state tables.  Each fault ends in a clear
# error or the documented warning; the stored offset never moves past a
# line that was not applied, and after the fault is cleared every line is
# applied exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;

my ($node, $logs, $base) = pw_maillog_node('maillogfaults', 99);

# Appends text to a file.
sub append
{
	my ($path, $text) = @_;
	open(my $fh, '>>', $path) or die "$path: $!";
	print $fh $text;
	close($fh);
}

# One delivery-status line for carrier rN.
my $qn = 0;
sub line
{
	my ($n, $status) = @_;
	my $dsn = $status eq 'sent' ? '2.0.0' : $status eq 'bounced' ? '5.1.1' : '4.4.1';
	return sprintf("2024-03-01T10:00:00+00:00 mx1 postfix/smtp[42]: %010X: to=<r%d\@x.test>, relay=mx.example[192.0.2.1]:25, "
		  . "delay=0.1, delays=0/0/0/0.1, dsn=%s, status=%s (reply)\n", ++$qn, $n, $dsn, $status);
}

# Runs an ingest; returns (stdout, stderr).
sub ingest
{
	my ($file, $cols) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', 'SELECT ' . ($cols // 'files, events') . " FROM pw.ingest_maillog('$file')");
	return ($out, $err);
}

# The stored state of a file (dev|inode|offset|lines).
sub state
{
	my ($file) = @_;
	return $node->safe_psql('postgres', qq{SELECT concat_ws('|', dev, inode, "offset", lines) FROM pw.maillog_files WHERE path = '$logs/$file'});
}

# Carriers seen in pw.deliveries: "N=sent/deferred/bounced" for each, in order.
sub deliveries
{
	return $node->safe_psql('postgres', q{SELECT string_agg(substr(email, 2, strpos(email, '@') - 2) || '=' || sent_count
        || '/' || deferred_count || '/' || bounce_count, ' ' ORDER BY substr(email, 2, strpos(email, '@') - 2)::int) FROM pw.deliveries});
}

my ($out, $err, $st);

# --- deleted ------------------------------------------------------------------
append("$logs/mail.log", line(1, 'sent') . line(2, 'sent'));
is((ingest('mail.log'))[0], '1|2', 'first ingest');
$st = state('mail.log');
append("$logs/mail.log", line(3, 'bounced'));
unlink("$logs/mail.log");
($out, $err) = ingest('mail.log');
like($err, qr/mail log "mail.log" does not exist/, 'deleted: a clear error');
is(state('mail.log'), $st, 'deleted: offset unchanged');
append("$logs/mail.log", line(4, 'sent'));
($out, $err) = ingest('mail.log');
is($out, '1|1', 'recreated: the new file is read from its start');
like($err, qr/rotated or truncated.*not ingested/s, 'recreated: the lost lines of the deleted file are warned about');

# --- replaced by a directory ---------------------------------------------------
$st = state('mail.log');
unlink("$logs/mail.log");
mkdir("$logs/mail.log") or die;
($out, $err) = ingest('mail.log');
like($err, qr/mail log ".*mail.log" is not a regular file/, 'a directory: a clear error');
is(state('mail.log'), $st, 'a directory: offset unchanged');
rmdir("$logs/mail.log") or die;

# --- unreadable ------------------------------------------------------------------
SKIP:
{
	skip 'running as root: permissions are not enforced', 5 if $> == 0;
	append("$logs/mail.log", line(5, 'sent') . line(6, 'bounced'));
	chmod(0000, "$logs/mail.log") or die;
	($out, $err) = ingest('mail.log');
	like($err, qr/could not open mail log ".*mail.log": Permission denied/, 'unreadable: a clear error');
	is(state('mail.log'), $st, 'unreadable: offset unchanged');
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pw.deliveries WHERE email IN ('r5@x.test', 'r6@x.test')}), '0',
		'unreadable: nothing applied');
	chmod(0640, "$logs/mail.log") or die;
	($out, $err) = ingest('mail.log');
	is($out, '1|2', 'readable again: read from its start');
	# the rotated file unreadable: the whole ingest fails, nothing is applied
	$st = state('mail.log');
	append("$logs/mail.log", line(7, 'sent'));
	rename("$logs/mail.log", "$logs/mail.log.1") or die;
	append("$logs/mail.log", line(8, 'sent'));
	chmod(0000, "$logs/mail.log.1") or die;
	($out, $err) = ingest('mail.log');
	like($err, qr/could not open mail log ".*mail.log.1": Permission denied/, 'unreadable rotated file: a clear error');
	is(state('mail.log') . ' ' . deliveries(), "$st " . '1=1/0/0 2=1/0/0 4=1/0/0 5=1/0/0 6=0/0/1',
		'unreadable rotated file: offset unchanged, nothing of either file applied');
	chmod(0640, "$logs/mail.log.1") or die;
	is((ingest('mail.log'))[0], '2|2', 'readable again: the rotated file finished, the new one read');
	unlink("$logs/mail.log.1");
}

# --- truncated ---------------------------------------------------------------------
append("$logs/mail.log", line(9, 'sent'));
is((ingest('mail.log'))[0], '1|1', 'before truncation');
$st = state('mail.log');
truncate("$logs/mail.log", 0) or die;
is((ingest('mail.log'))[0], '1|0', 'truncated to nothing: no event, no error');
is((split /\|/, state('mail.log'))[2], '0', 'offset back to 0 with the file');
# truncated and written again past the old offset before the next call
append("$logs/mail.log", line(10, 'sent') . line(11, 'sent'));
is((ingest('mail.log'))[0], '1|2', 'regrown');
$st = state('mail.log');
truncate("$logs/mail.log", 0) or die;
append("$logs/mail.log", line(12, 'bounced') . line(13, 'sent') . line(14, 'sent'));
($out, $err) = ingest('mail.log');
is($out, '1|3', 'truncated and regrown past the offset: read from its start, no line skipped');
like($err, qr/rotated or truncated/, 'and the truncation is warned about');
is(deliveries() =~ s/.* (?=9=)//r, '9=1/0/0 10=1/0/0 11=1/0/0 12=0/0/1 13=1/0/0 14=1/0/0', 'each line applied once');

# --- rotated twice between calls ----------------------------------------------------
append("$logs/mail.log", line(15, 'sent'));
is((ingest('mail.log'))[0], '1|1', 'before two rotations');
append("$logs/mail.log", line(16, 'bounced'));
rename("$logs/mail.log", "$logs/mail.log.1") or die;
append("$logs/mail.log", line(17, 'sent'));
rename("$logs/mail.log.1", "$logs/mail.log.2") or die;
rename("$logs/mail.log", "$logs/mail.log.1") or die;
append("$logs/mail.log", line(18, 'sent') . line(19, 'bounced'));
# documented: only path.1 is followed; the lines in between are lost, and said so
($out, $err) = ingest('mail.log', 'files, events, bounced');
is($out, '1|2|1', 'rotated twice: the new file is read from its start');
like($err, qr/old file is not ".*mail.log.1".*after offset \d+ were not ingested, nor any file rotated out between the two calls/s,
	'the lost lines of both rotated files are warned about');
is(deliveries() =~ s/.* (?=15=)//r, '15=1/0/0 18=1/0/0 19=0/0/1', 'no line applied twice');
is(state('mail.log') =~ s/^\d+\|\d+\|(\d+)\|.*/$1/r, -s "$logs/mail.log", 'the offset is the end of the new file');
is((ingest('mail.log'))[0], '1|0', 'nothing more');
unlink("$logs/mail.log.1", "$logs/mail.log.2");

# --- disk full on the state tables ---------------------------------------------------
my $before = deliveries();
my $carriers = q{SELECT string_agg(id::text, ',' ORDER BY id) FROM fmcsa_carriers WHERE email_verify_result = 'hard_bounced'};
my $bounced = $node->safe_psql('postgres', $carriers);
$st = state('mail.log');
append("$logs/mail.log", line(20, 'sent') . line(21, 'bounced') . line(22, 'deferred'));
for my $t ([ 'maillog_files', 'UPDATE' ], [ 'deliveries', 'INSERT' ], [ 'suppressions', 'INSERT' ])
{
	my ($table, $op) = @$t;
	$node->safe_psql('postgres', qq{
        CREATE FUNCTION public.disk_full() RETURNS trigger LANGUAGE plpgsql AS
          \$\$BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'; END\$\$;
        CREATE TRIGGER disk_full BEFORE $op ON pw.$table FOR EACH ROW EXECUTE FUNCTION public.disk_full();
    });
	my ($ret, $o, $e) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT events FROM pw.ingest_maillog('mail.log')");
	like($e, qr/53100: could not extend file: No space left on device/, "disk full on pw.$table ($op): the statement fails with 53100");
	is(state('mail.log') . ' ' . deliveries() . ' ' . $node->safe_psql('postgres', $carriers),
		"$st $before $bounced", "disk full on pw.$table: offset not advanced, writeback not applied");
	$node->safe_psql('postgres', "DROP TRIGGER disk_full ON pw.$table; DROP FUNCTION public.disk_full()");
}
is((ingest('mail.log', 'events, bounced, carriers_bounced'))[0], '3|1|1', 'space again: the lines are applied');
is(deliveries() =~ s/.* (?=20=)//r, '20=1/0/0 21=0/0/1 22=0/1/0', 'exactly once');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pw.suppressions WHERE email = 'r21@x.test'}), '1', 'and the bounce suppressed');

$node->stop;
done_testing();
