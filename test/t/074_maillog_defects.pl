# Files planted in the mail-log directory and values the state tables cannot
# hold (issue 12): a FIFO is refused at once, never blocking the backend; an
# address beyond RFC 5321's limits is skipped and counted; a hard link is
# refused and a file already ingested under another name is not read twice;
# a rotated file that is a symbolic link does not block the live log.
use strict;
use warnings;
use Fcntl qw(O_WRONLY O_NONBLOCK);
use POSIX qw(mkfifo);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;

my ($node, $logs, $base) = pw_maillog_node('maillogdefects', 99);

# One delivery-status line for an address (rN@x.test when given a number).
my $qn = 0;
sub line
{
	my ($to, $status) = @_;
	$to = "r$to\@x.test" if $to =~ /^\d+$/;
	my $dsn = $status eq 'sent' ? '2.0.0' : $status eq 'bounced' ? '5.1.1' : '4.4.1';
	return sprintf("2024-03-01T10:00:00+00:00 mx1 postfix/smtp[42]: %010X: to=<%s>, relay=mx.example[192.0.2.1]:25, "
		  . "delay=0.1, delays=0/0/0/0.1, dsn=%s, status=%s (reply)\n", ++$qn, $to, $dsn, $status);
}

# Runs a query that must come back within 20 s (IPC::Run timeout) whatever
# the server does; returns (stdout, stderr, timed out).  A backend left
# blocked on a FIFO is released by opening the FIFO for writing.
sub bounded
{
	my ($sql, $fifo) = @_;
	my ($out, $err, $timed_out) = ('', '', 0);
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		timeout => 20, timed_out => \$timed_out);
	if ($timed_out && defined $fifo)
	{
		my $w;
		close($w) if sysopen($w, $fifo, O_WRONLY | O_NONBLOCK);
	}
	return ($out, $err, $timed_out);
}

my ($out, $err, $timed_out);

# --- a FIFO (issue 12 item 1) ----------------------------------------------------
my $fifo = "$logs/fifo";
mkfifo($fifo, 0666) or die "mkfifo: $!";
($out, $err, $timed_out) = bounded("SET statement_timeout = '3s'; SELECT count(*) FROM pw.read_maillog('fifo')", $fifo);
ok(!$timed_out, 'read_maillog of a FIFO returns (does not block)');
like($err, qr/mail log ".*fifo" is not a regular file/, 'read_maillog of a FIFO: a clear error');
($out, $err, $timed_out) = bounded("SET statement_timeout = '3s'; SELECT files FROM pw.ingest_maillog('fifo')", $fifo);
ok(!$timed_out, 'ingest_maillog of a FIFO returns');
like($err, qr/mail log ".*fifo" is not a regular file/, 'ingest_maillog of a FIFO: a clear error');
# a FIFO as the rotated file: the ingest of the live log must not block on it
append_to_file("$logs/f.log", line(1, 'sent'));
is($node->safe_psql('postgres', q{SELECT files FROM pw.ingest_maillog('f.log')}), '1', 'f.log ingested');
rename("$logs/f.log", "$base/f.log.old") or die;
mkfifo("$logs/f.log.1", 0666) or die "mkfifo: $!";
append_to_file("$logs/f.log", line(2, 'sent'));
($out, $err, $timed_out) = bounded("SET statement_timeout = '3s'; SELECT files, events FROM pw.ingest_maillog('f.log')",
	"$logs/f.log.1");
ok(!$timed_out, 'a FIFO as the rotated file does not block the ingest');
is($out, '1|1', 'a FIFO as the rotated file: the live log is read');
like($err, qr/rotated or truncated/, 'a FIFO as the rotated file: the lost lines are warned about');
unlink($fifo, "$logs/f.log.1");
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server still answers');

# --- an address beyond RFC 5321's limits (issue 12 item 2) ------------------------
my $long = ('a' x 2990) . '@x.test';
append_to_file("$logs/long.log", line($long, 'sent') . line($long, 'deferred') . line($long, 'bounced')
	  . line(('b' x 247) . '@x.test', 'sent') . line(3, 'bounced'));
($out, $err) = ($node->psql('postgres', q{SELECT files, lines, events, unparsed, sent, bounced, carriers_bounced
    FROM pw.ingest_maillog('long.log')}))[1, 2];
is($out, '1|5|2|3|1|1|1', 'over-long addresses: skipped and counted as unparsed, the lines after them applied');
is($err, '', 'over-long addresses: no error');
is($node->safe_psql('postgres', q{SELECT email_verify_result FROM fmcsa_carriers WHERE id = 3}), 'hard_bounced',
	'the bounce after the over-long address is written back');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pw.deliveries WHERE length(email) > 254}), '0',
	'no over-long address stored');
is($node->safe_psql('postgres', q{SELECT concat_ws('|', lines, events, unparsed) FROM pw.maillog_files WHERE path LIKE '%/long.log'}),
	'5|2|3', 'the state counts the skipped lines');
is($node->safe_psql('postgres', q{SELECT files || '|' || events FROM pw.ingest_maillog('long.log')}), '1|0',
	'a second call reads nothing new');

# --- hard links and renamed logs (issue 12 item 4) --------------------------------
append_to_file("$logs/orig.log", line(10, 'sent') . line(11, 'sent'));
is($node->safe_psql('postgres', q{SELECT events FROM pw.ingest_maillog('orig.log')}), '2', 'orig.log ingested');
link("$logs/orig.log", "$logs/hard.log") or die "link: $!";
($out, $err) = ($node->psql('postgres', q{SELECT events FROM pw.ingest_maillog('hard.log')}))[1, 2];
like($err, qr/mail log ".*hard.log" has 2 hard links/, 'a hard link is refused');
($out, $err) = ($node->psql('postgres', q{SELECT events FROM pw.ingest_maillog('orig.log')}))[1, 2];
like($err, qr/has 2 hard links/, 'so is the file it links to');
($out, $err) = ($node->psql('postgres', q{SELECT count(*) FROM pw.read_maillog('hard.log')}))[1, 2];
like($err, qr/has 2 hard links/, 'read_maillog refuses it too');
# a hard link to a file outside the directory
append_to_file("$base/outside.log", line(12, 'sent'));
link("$base/outside.log", "$logs/in.log") or die "link: $!";
($out, $err) = ($node->psql('postgres', q{SELECT count(*) FROM pw.read_maillog('in.log')}))[1, 2];
like($err, qr/has 2 hard links/, 'a hard link to a file outside the directory is not read');
unlink("$logs/in.log");
# the link removed: the same file under its second name is not read again
unlink("$logs/orig.log");
append_to_file("$logs/hard.log", line(13, 'sent'));
($out, $err) = ($node->psql('postgres', q{SELECT events FROM pw.ingest_maillog('hard.log')}))[1, 2];
like($err, qr/mail log ".*hard.log" is the file already ingested as ".*orig.log"/,
	'the file ingested under another name is refused');
is($node->safe_psql('postgres', q{SELECT sum(sent_count) FROM pw.deliveries WHERE email IN ('r10@x.test', 'r11@x.test')}),
	'2', 'no line applied twice');
# renamed back, it continues where it stopped
rename("$logs/hard.log", "$logs/orig.log") or die;
is($node->safe_psql('postgres', q{SELECT events FROM pw.ingest_maillog('orig.log')}), '1',
	'under its first name only the new line is read');
# a new file reusing a stale state's inode is not taken for it
unlink("$logs/orig.log");
append_to_file("$logs/other.log", line(14, 'sent'));
$node->safe_psql('postgres', q{SELECT count(*) FROM pw.read_maillog('other.log');
    UPDATE pw.maillog_files SET (dev, inode) = (SELECT dev, inode FROM pw.maillog_last_read())
     WHERE path LIKE '%/orig.log'});
is($node->safe_psql('postgres', q{SELECT events FROM pw.ingest_maillog('other.log')}), '1',
	'a file with a stale identity but other bytes is read');

# --- the rotated file a symbolic link out of the directory (issue 12 item 7) -------
append_to_file("$logs/sym.log", line(20, 'sent'));
is($node->safe_psql('postgres', q{SELECT events FROM pw.ingest_maillog('sym.log')}), '1', 'sym.log ingested');
append_to_file("$logs/sym.log", line(21, 'sent'));
rename("$logs/sym.log", "$base/sym.old") or die;
symlink("$base/sym.old", "$logs/sym.log.1") or die "symlink: $!";
append_to_file("$logs/sym.log", line(22, 'bounced'));
($out, $err) = ($node->psql('postgres', q{SELECT files, events FROM pw.ingest_maillog('sym.log')}))[1, 2];
is($out, '1|1', 'a rotated file that is a symbolic link is not followed: the live log is read');
like($err, qr/rotated or truncated and the old file is not ".*sym.log.1"/, 'and the lines left in the old file are warned about');
unlike($err, qr/symbolic links/, 'no error about symbolic links');

done_testing();
