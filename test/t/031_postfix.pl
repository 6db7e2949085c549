# A real Postfix on loopback writes the log: sent, bounced (550 5.1.1 and
# 5.7.1), deferred then expired, and a virtual alias (orig_to).  The parser
# meets lines Postfix itself wrote, and ingestion writes the results back.
use strict;
use warnings;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use PwTest;
use PwPostfix;

plan skip_all => "no private Postfix possible here: $@" unless PwPostfix::available();

my $base = PostgreSQL::Test::Utils::tempdir();
my $logs = "$base/logs";
make_path($logs);
my $maillog = "$logs/mail.log";

my ($receiver, $relay_port) = PwPostfix::start_receiver();
my $postfix = eval { PwPostfix->new(base => $base, maillog => $maillog, relay_port => $relay_port) };
END { $postfix->stop if $postfix; kill 'TERM', $receiver if $receiver; }
die "could not start Postfix: $@" unless $postfix;
pass("private Postfix listening on 127.0.0.1:$postfix->{smtpd_port}, relaying to 127.0.0.1:$relay_port");

my $node = pw_node('postfix', conf => "pw_deliverability.maillog_directory = '$logs'\n");
$node->safe_psql('postgres', q{
    CREATE EXTENSION pw_deliverability;
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                 mx_provider text, listmonk_sent_at timestamptz);
    INSERT INTO fmcsa_carriers (id, email, email_verify_result, mx_provider) VALUES
        (1, 'Alice@ok.test',   'catch_all_domain', 'mx:ok.test'),
        (2, 'bob@ok.test',     'mx_unreachable',   'mx:ok.test'),
        (3, 'old@ok.test',     'catch_all_domain', 'mx:ok.test'),
        (4, 'bad1@bad.test',   'smtp_valid',       'mx:bad.test'),
        (5, 'policy@bad.test', 'send_confirmed',   'mx:bad.test'),
        (6, 'soft1@soft.test', 'catch_all_domain', NULL),
        (7, 'carol@ok.test',   'catch_all_domain', 'mx:ok.test'),
        (8, 'never@ok.test',   'catch_all_domain', 'mx:ok.test');
    SELECT pw.create_writeback_index();
});

$postfix->send_mail('verify@burner.test', 'alice@ok.test', 'bob@ok.test', 'bad1@bad.test');
$postfix->send_mail('verify@burner.test', 'Old@ok.test', 'policy@bad.test');
$postfix->send_mail('verify@burner.test', 'soft1@soft.test', 'carol@ok.test');

# Reads the log file (Postfix writes it; we only look).
sub log_text
{
	return -e $maillog ? slurp_file($maillog) : '';
}

my $deadline = time() + 60;
usleep(200_000) while time() < $deadline
  && (log_text() !~ /status=expired/ || (() = log_text() =~ /status=bounced/g) < 2);
my $text = log_text();
like($text, qr/to=<bad1\@bad\.test>.*dsn=5\.1\.1, status=bounced/, 'Postfix logged the 5.1.1 bounce');
like($text, qr/to=<policy\@bad\.test>.*dsn=5\.7\.1, status=bounced/, 'Postfix logged the 5.7.1 bounce');
like($text, qr/to=<soft1\@soft\.test>.*status=deferred/, 'Postfix logged the deferral');
like($text, qr/: from=<verify\@burner\.test>, status=expired, returned to sender/, 'Postfix logged the expiry');

# What the parser makes of Postfix's own lines
is($node->safe_psql('postgres', q{
    SELECT string_agg(DISTINCT concat_ws(' ', coalesce(orig_recipient, recipient, '-'), dsn, status)
                      COLLATE "C", ', ')
      FROM pw.read_maillog('mail.log')
     WHERE coalesce(recipient, '') <> 'verify@burner.test'}),
	'- expired, Old@ok.test 2.0.0 sent, alice@ok.test 2.0.0 sent, bad1@bad.test 5.1.1 bounced, '
	  . 'bob@ok.test 2.0.0 sent, carol@ok.test 2.0.0 sent, policy@bad.test 5.7.1 bounced, '
	  . 'soft1@soft.test 4.2.0 deferred',
	'every delivery-status line Postfix wrote is read')
  or diag($text);
is($node->safe_psql('postgres', q{
    SELECT count(*) FROM pw.read_maillog('mail.log')
     WHERE program = 'postfix/smtp' AND pid > 0 AND queue_id ~ '^[0-9A-F]{6,}$'
       AND relay ~ '^127\.0\.0\.1\[127\.0\.0\.1\]:\d+$' AND delay >= 0
       AND logged_at BETWEEN now() - interval '5 minutes' AND now() + interval '1 minute'}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM pw.read_maillog('mail.log') WHERE program = 'postfix/smtp'}),
	'host, program, pid, queue id, relay, delay and time parsed');
like($node->safe_psql('postgres', q{SELECT count(*) FROM pw.read_maillog('mail.log');
    SELECT lines > events AND events >= 11, unparsed FROM pw.maillog_last_read()}), qr/^\d+\nt\|0$/,
	'no Postfix line is unparsable')
  or diag($node->safe_psql('postgres', 'SELECT * FROM pw.maillog_last_read()'));

my $counts = $node->safe_psql('postgres',
	'SELECT sent, deferred > 0, bounced, expired, carriers_bounced, suppressed, unknown_addresses
       FROM pw.ingest_maillog(\'mail.log\')');
is($counts, '7|t|3|1|1|1|1',
	'ingest: sent (4 + 3 bounce notices), deferred, bounced (incl. expired), the one address fault written back, sender not a carrier');
is($node->safe_psql('postgres', 'SELECT pw.confirm_deliveries(older_than => \'0 seconds\')'), '4',
	'deliveries confirmed');
is($node->safe_psql('postgres',
		"SELECT string_agg(id || ':' || email_verify_result, ' ' ORDER BY id) FROM fmcsa_carriers"),
	'1:send_confirmed 2:send_confirmed 3:send_confirmed 4:hard_bounced 5:send_confirmed '
	  . '6:catch_all_domain 7:send_confirmed 8:catch_all_domain',
	'an unknown user is hard_bounced (even over send_confirmed); a policy block (5.7.1) and an expiry after greylisting change no result; delivered are send_confirmed');
is($node->safe_psql('postgres', 'SELECT string_agg(email, \' \' ORDER BY email) FROM pw.suppressions'),
	'bad1@bad.test', 'only the address fault is suppressed');
is($node->safe_psql('postgres', q{SELECT string_agg(email || ':' || coalesce(bounce_category, '') || ':'
                                        || coalesce(last_category, ''), ' ' ORDER BY email)
                                    FROM pw.deliveries WHERE bounce_count > 0 OR failed_count > 0}),
	'bad1@bad.test:bad_mailbox:bad_mailbox policy@bad.test::policy soft1@soft.test::message_expired',
	'each outcome recorded with its category');
is($node->safe_psql('postgres', 'SELECT events FROM pw.ingest_maillog(\'mail.log\')'), '0',
	'ingesting again reads nothing new');

$postfix->stop;
$node->stop;
done_testing();
