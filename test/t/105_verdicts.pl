# Verdicts end to end: a log mixing address faults, blocks, reputation
# deferrals and greylisting; a burner blocklisted by one operator; the
# verification retried after verify_retry_after; reclassification after a
# rule edit, and of an outcome recorded before version 0.3.
use strict;
use warnings;
use File::Path qw(make_path);
use POSIX qw(strftime);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;

my $logs = PostgreSQL::Test::Utils::tempdir() . '/logs';
make_path($logs);
my $node = pw_node('verdicts', conf => "pw_deliverability.maillog_directory = '$logs'\n");
my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION pw_deliverability');

# 60 carriers at Microsoft, 20 self-hosted at bad.example, 10 at Yahoo's
# MX, 10 greylisting ones: all catch_all_domain, selected by the
# verification profile 60 days into its warmup
$node->safe_psql($db, q{
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                 mx_provider text, listmonk_sent_at timestamptz,
                                 verify_sent_at timestamptz);
    INSERT INTO fmcsa_carriers (id, email, email_verify_result, mx_provider)
    SELECT i, format('c%s@%s', i, CASE WHEN i <= 60 THEN 'ms' || i || '.example'
                                       WHEN i <= 80 THEN 'bad.example'
                                       WHEN i <= 90 THEN 'yh' || i || '.example'
                                       ELSE 'grey.example' END),
           'catch_all_domain',
           CASE WHEN i <= 60 THEN 'microsoft' WHEN i <= 80 THEN 'mx:bad.example'
                WHEN i <= 90 THEN 'mx:yahoodns.net' ELSE 'mx:grey.example' END
      FROM generate_series(1, 100) AS i;
    SELECT pw.create_writeback_index();
    UPDATE pw.profiles SET warmup_start = current_date - 60 WHERE name = 'verify';
});
$node->safe_psql($db, "INSERT INTO pw.maillogs (path, profile) VALUES ('burner.log', 'verify')");
is($node->safe_psql($db,
		q{SELECT count(*) FROM pw.select_sendable_carriers(1000, 'verify', claim => true)}),
	'70', 'the verification stream claims its run (30 at Microsoft: the run cap)');
# the other 30 at Microsoft went out in an earlier run
$node->safe_psql($db, q{UPDATE fmcsa_carriers SET verify_sent_at = now() - interval '1 hour'
                         WHERE verify_sent_at IS NULL});

# --- the burner's log -------------------------------------------------------
my $t0 = time() - 600;
my $n = 0;
sub stamp { return strftime('%Y-%m-%dT%H:%M:%S+00:00', gmtime($t0 + $_[0])); }
sub line
{
	my ($at, $qid, $to, $dsn, $status, $reason) = @_;
	return stamp($at) . " burner postfix/smtp[42]: $qid: to=<$to>, relay=mx.example[192.0.2.1]:25, "
	  . "delay=0.1, delays=0/0/0/0.1, dsn=$dsn, status=$status ($reason)\n";
}
my $log = '';
# Microsoft: the burner's IP is on its block list, every recipient refused
for my $i (1 .. 60)
{
	$log .= line(1, sprintf('A%09d', $i), "c$i\@ms$i.example", '5.7.1', 'bounced',
		'host ms.mail.protection.outlook.com[104.47.1.1] said: 550 5.7.1 Unfortunately, messages from '
		  . '[198.51.100.7] weren\'t sent. Please contact your Internet service provider since part of '
		  . 'their network is on our block list (S3150). (in reply to MAIL FROM command)');
}
# bad.example: five unknown users, five disabled by an admin, ten delivered
for my $i (61 .. 80)
{
	my ($dsn, $status, $reason) =
	    $i <= 65 ? ('5.1.1', 'bounced', "host mx.bad.example[192.0.2.2] said: 550 5.1.1 <c$i\@bad.example>: "
		  . 'Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)')
	  : $i <= 70 ? ('5.2.1', 'bounced', 'host mx.bad.example[192.0.2.2] said: 550 5.2.1 mailbox suspended by '
		  . 'the bad.example administrator (in reply to RCPT TO command)')
	  : ('2.0.0', 'sent', '250 2.0.0 Ok: queued as 1A2B3C');
	$log .= line(2, sprintf('B%09d', $i), "c$i\@bad.example", $dsn, $status, $reason);
}
# Yahoo: reputation deferrals until the messages expire
for my $i (81 .. 90)
{
	my $qid = sprintf('C%09d', $i);
	$log .= line(3, $qid, "c$i\@yh$i.example", '4.7.0', 'deferred',
		'host mta5.am0.yahoodns.net[67.195.204.74] said: 421 4.7.0 [TSS04] Messages from 198.51.100.7 '
		  . 'temporarily deferred due to unexpected volume or user complaints (in reply to MAIL FROM command)');
	$log .= stamp(4) . " burner postfix/qmgr[41]: $qid: from=<v\@burner.example>, status=expired, returned to sender\n";
}
# greylisting, then delivered
for my $i (91 .. 100)
{
	my $qid = sprintf('D%09d', $i);
	$log .= line(5, $qid, "c$i\@grey.example", '4.2.0', 'deferred',
		"host mx.grey.example[192.0.2.3] said: 450 4.2.0 <c$i\@grey.example>: Recipient address rejected: "
		  . 'Greylisted, see http://postgrey.schweikert.ch/help/grey.example.html (in reply to RCPT TO command)');
	$log .= line(6, $qid, "c$i\@grey.example", '2.0.0', 'sent', '250 2.0.0 Ok: queued as 9Z8Y7X');
}
open(my $fh, '>', "$logs/burner.log") or die;
print $fh $log;
close($fh);

is($node->safe_psql($db, q{SELECT string_agg(category || ':' || n, ' ' ORDER BY category)
                             FROM (SELECT category, count(*) AS n FROM pw.read_maillog('burner.log')
                                    WHERE category IS NOT NULL GROUP BY 1) c}),
	'bad_mailbox:5 blocklisted:60 greylisted:10 inactive_mailbox:5 reputation:10',
	'pw.read_maillog() carries each bounce and deferral\'s category');
is($node->safe_psql($db, q{SELECT bounced, hard_bounced, blocked, carriers_bounced, suppressed, expired
                             FROM pw.ingest_maillog('burner.log')}),
	'80|10|60|10|10|10', 'ingest: 60 blocks and 10 expiries apart from the 10 hard bounces');

# --- the end state ------------------------------------------------------------
is($node->safe_psql($db, q{SELECT string_agg(r || ':' || n, ' ' ORDER BY r)
                             FROM (SELECT mx_provider || '/' || email_verify_result AS r, count(*) AS n
                                     FROM fmcsa_carriers GROUP BY 1) c}),
	'microsoft/catch_all_domain:60 mx:bad.example/catch_all_domain:10 mx:bad.example/hard_bounced:10 '
	  . 'mx:grey.example/catch_all_domain:10 mx:yahoodns.net/catch_all_domain:10',
	'only the address faults are hard_bounced: no carrier of the blocking operator, none expired after reputation deferrals');
is($node->safe_psql($db, q{SELECT count(*), count(*) FILTER (WHERE reason LIKE 'hard bounce bad_mailbox 5.1.1: %'),
                                  count(*) FILTER (WHERE reason LIKE 'hard bounce inactive_mailbox 5.2.1: %')
                             FROM pw.suppressions}),
	'10|5|5', 'only the address faults are suppressed, with their category');
is($node->safe_psql($db, q{SELECT string_agg(last_category || ':' || n, ' ' ORDER BY last_category)
                             FROM (SELECT last_category, count(*) AS n FROM pw.deliveries GROUP BY 1) d}),
	'bad_mailbox:5 blocklisted:60 greylisted:10 inactive_mailbox:5 message_expired:10',
	'every address keeps the category of its last outcome');
is($node->safe_psql($db, q{SELECT action, left(reason, 10), blocked, hard_bounced
                             FROM pw.brake_status('verify') WHERE operator = 'microsoft'}),
	'paused|block rate|60|0', 'the blocking operator is paused for the verification stream');
is($node->safe_psql($db, q{SELECT coalesce(action, 'none') FROM pw.brake_status('verify')
                            WHERE operator = 'mx:grey.example'}),
	'none', 'greylisting slows nothing');
is($node->safe_psql($db, q{SELECT sum(blocked), sum(hard_bounced) FROM pw.operator_outcomes}),
	'60|10', 'pw.operator_outcomes shows blocks apart from hard bounces');
is($node->safe_psql($db, q{SELECT string_agg(category || ':' || bounced || '/' || deferred, ' ' ORDER BY category)
                             FROM pw.maillog_categories WHERE profile = 'verify'}),
	'bad_mailbox:5/0 blocklisted:60/0 greylisted:0/10 inactive_mailbox:5/0 message_expired:10/0 reputation:0/10',
	'outcomes per day, operator and category');
like($node->safe_psql($db, q{SELECT note FROM pw.report('verify') WHERE section = 'outcomes' AND item = 'microsoft'}),
	qr/^paused: block rate .*; blocked 60 \(block rate 1\.0000\)/, 'the report shows the blocks apart');

# nothing delivered but the greylisted and the ten at bad.example: confirmed
# are exactly those
is($node->safe_psql($db, q{SELECT pw.confirm_deliveries('0 seconds')}), '20',
	'only real deliveries are confirmed');

# --- the retry ----------------------------------------------------------------
is($node->safe_psql($db, q{SELECT string_agg(last_outcome || ':' || n, ' ' ORDER BY last_outcome)
                             FROM (SELECT last_outcome, count(*) AS n FROM pw.verify_attempts GROUP BY 1) v}),
	'delivered:20 failed:70 hard_bounced:10', 'every verification counted with its outcome');
is($node->safe_psql($db, 'SELECT pw.requeue_verifications()'), '0', 'nothing is retried before verify_retry_after');
# a week and a day later (the outcomes moved back in time)
$node->safe_psql($db, q{
    UPDATE pw.verify_attempts SET last_outcome_at = last_outcome_at - interval '8 days';
    UPDATE pw.maillog_daily SET day = day - 8;
    UPDATE pw.maillog_categories SET day = day - 8;
});
is($node->safe_psql($db, 'SELECT pw.requeue_verifications()'), '70',
	'the blocked and expired verifications are requeued after verify_retry_after');
is($node->safe_psql($db, q{SELECT string_agg(mx_provider || ':' || n, ' ' ORDER BY mx_provider)
                             FROM (SELECT mx_provider, count(*) AS n FROM fmcsa_carriers
                                    WHERE verify_sent_at IS NULL GROUP BY 1) c}),
	'microsoft:60 mx:yahoodns.net:10', '... the carriers of the blocking operator and the expired ones');
is($node->safe_psql($db, q{SELECT count(*) FROM pw.select_sendable_carriers(1000, 'verify')
                            WHERE mx_provider = 'microsoft'}),
	'30', 'the blocking operator\'s carriers are selectable for verification again (its run cap)');
is($node->safe_psql($db, 'SELECT pw.requeue_verifications()'), '0', 'a requeue happens once per outcome');
is($node->safe_psql($db, q{SELECT attempts || '/' || max_attempts || ':' || (retry_at IS NOT NULL)
                             FROM pw.verification_retries WHERE email = 'c1@ms1.example'}),
	'1/3:true', 'attempts and the next retry visible per address');
$node->safe_psql($db, q{UPDATE pw.verify_attempts SET attempts = 3, requeued_at = NULL
                         WHERE email = 'c2@ms2.example';
                         UPDATE fmcsa_carriers SET verify_sent_at = now() WHERE id = 2});
is($node->safe_psql($db, 'SELECT pw.requeue_verifications()'), '0', 'no retry beyond verify_max_attempts');

# --- reclassification ------------------------------------------------------------
is($node->safe_psql($db, 'SELECT count(*) FROM pw.reclassify_outcomes()'), '0',
	'the rules unchanged: nothing to reclassify');
# the operator says its "suspended by the administrator" is a temporary hold
$node->safe_psql($db, q{INSERT INTO pw.bounce_rules (name, reply_pattern, category, note)
                         VALUES ('local.bad_hold', 'suspended by the bad\.example administrator', 'policy',
                                 'bad.example holds mailboxes for review')});
is($node->safe_psql($db, q{SELECT string_agg(concat_ws(':', email, old_category, new_category, action, carriers), ' '
                                         ORDER BY email) FROM pw.reclassify_outcomes()}),
	join(' ', map { "c$_\@bad.example:inactive_mailbox:policy:released:1" } 66 .. 70),
	'a dry run names what would be released');
is($node->safe_psql($db, q{SELECT count(*) FROM fmcsa_carriers WHERE email_verify_result = 'hard_bounced'}),
	'10', '... and changes nothing');
is($node->safe_psql($db, 'SELECT count(*) FROM pw.reclassify_outcomes(dry_run => false)'), '5',
	'reclassified');
is($node->safe_psql($db, q{SELECT string_agg(id || ':' || email_verify_result, ' ' ORDER BY id)
                             FROM fmcsa_carriers WHERE id BETWEEN 61 AND 70}),
	join(' ', (map { "$_:hard_bounced" } 61 .. 65), (map { "$_:catch_all_domain" } 66 .. 70)),
	'exactly the released carriers get their prior result back');
is($node->safe_psql($db, q{SELECT count(*) FROM pw.suppressions}), '5', 'their suppressions are removed');
is($node->safe_psql($db, q{SELECT count(*) FROM pw.reclassify_outcomes()}), '0', 'a second run finds nothing');
# and back: the rule removed, the failures are the address's fault again
$node->safe_psql($db, q{DELETE FROM pw.bounce_rules WHERE name = 'local.bad_hold'});
is($node->safe_psql($db, q{SELECT string_agg(DISTINCT action || ':' || new_category, ',')
                             FROM pw.reclassify_outcomes(dry_run => false)}),
	'hard_bounced:inactive_mailbox', 'a failure the rules now call the address\'s fault hard-bounces');
is($node->safe_psql($db, q{SELECT count(*) FROM fmcsa_carriers WHERE email_verify_result = 'hard_bounced'}),
	'10', '... its carriers marked again');

# an outcome ingested under 0.2: every bounce was a hard bounce, no prior
# result recorded
$node->safe_psql($db, q{
    INSERT INTO fmcsa_carriers (id, email, email_verify_result, mx_provider)
    VALUES (200, 'old@blocked.example', 'hard_bounced', 'mx:blocked.example');
    INSERT INTO pw.deliveries (email, bounced_at, bounce_count, bounce_dsn, bounce_reason, in_carriers)
    VALUES ('old@blocked.example', now() - interval '30 days', 1, '5.7.1',
            'host mx.blocked.example[192.0.2.9] said: 554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org (in reply to RCPT TO command)',
            true);
    INSERT INTO pw.suppressions (email, reason, source)
    VALUES ('old@blocked.example', 'hard bounce 5.7.1: host mx.blocked.example ...', 'mail.log');
});
is($node->safe_psql($db, q{SELECT concat_ws('|', old_category, new_category, action, detail)
                             FROM pw.reclassify_outcomes(dry_run => false) WHERE email = 'old@blocked.example'}),
	'(before 0.3)|blocklisted|released|1 carrier(s) cannot be restored: marked hard_bounced before version 0.3 '
	  . 'recorded the prior result; set their result by hand',
	'a 0.2-era hard bounce that was a block is released, and says what it cannot restore');
is($node->safe_psql($db, q{SELECT count(*) FROM pw.suppressions WHERE email = 'old@blocked.example'}), '0',
	'... its suppression removed');

$node->stop;
done_testing();
