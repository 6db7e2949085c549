-- Mail logs: reading, access checks, ingestion and writeback
SET TimeZone = 'UTC';
\getenv srcdir PWD
\set fixtures :srcdir '/test/fixtures/maillog'

-- reading is refused until a superuser names a directory
SELECT count(*) FROM pw.read_maillog('/etc/passwd');
SET pw_deliverability.maillog_directory = :'fixtures';

-- outside the directory: absolute, "..", and a path that does not exist
SELECT count(*) FROM pw.read_maillog('/etc/passwd');
SELECT count(*) FROM pw.read_maillog('../../README.md');
SELECT count(*) FROM pw.read_maillog('../../../README.md');
SELECT count(*) FROM pw.read_maillog('nosuch.log');
SELECT count(*) FROM pw.read_maillog('/nonexistent/secret.log');
SELECT count(*) FROM pw.read_maillog('../nosuch.log');
SELECT count(*) FROM pw.read_maillog('traditional.log', -1);

-- traditional syslog timestamps (year inferred, never more than a day ahead)
SELECT line_offset, to_char(logged_at, 'MM-DD HH24:MI:SS.US') AS ts,
       logged_at <= now() + interval '1 day' AS not_future,
       host, program, pid, queue_id, recipient, orig_recipient, relay, delay, dsn, status,
       left(reason, 40) AS reason
  FROM pw.read_maillog('traditional.log') ORDER BY line_offset;
-- every line counted: returned, ignored, unparsed; the partial last line not consumed
SELECT start_offset, end_offset, lines, events, other, unparsed, overlong
  FROM pw.maillog_last_read();
SELECT (pg_stat_file(:'fixtures' || '/traditional.log')).size - end_offset AS unconsumed_bytes
  FROM pw.maillog_last_read();
-- line_offset points at the start of its line; resuming there gives the same rows
SELECT count(*) FROM pw.read_maillog('traditional.log', 4933);
SELECT start_offset, end_offset, lines FROM pw.maillog_last_read();
SELECT line_offset, recipient FROM pw.read_maillog('traditional.log',
       (SELECT line_offset FROM pw.read_maillog('traditional.log') WHERE recipient = 'grace@gone.test'))
 ORDER BY line_offset LIMIT 2;

-- RFC 3339 timestamps with offsets
SELECT line_offset, logged_at, queue_id, recipient, dsn, status, reason
  FROM pw.read_maillog('rfc3339.log') ORDER BY line_offset;
SELECT lines, events, other, unparsed FROM pw.maillog_last_read();

-- a log as a table: a view over the function
CREATE VIEW maillog AS SELECT * FROM pw.read_maillog('rfc3339.log');
SELECT status, count(*) AS lines, count(recipient) AS recipients
  FROM maillog GROUP BY status ORDER BY status;
DROP VIEW maillog;

-- ---------------------------------------------------------------------------
-- ingestion and writeback
-- ---------------------------------------------------------------------------
CREATE TABLE public.fmcsa_carriers (
    id bigint PRIMARY KEY, email text, email_verify_result text,
    mx_provider text, listmonk_sent_at timestamptz);
INSERT INTO fmcsa_carriers (id, email, email_verify_result, mx_provider) VALUES
    (1, 'alice@ok.test',        'catch_all_domain', 'google'),
    (2, 'BOB@ok.test',          'mx_unreachable',   'google'),
    (3, 'nobody@bad.test',      'smtp_valid',       'mx:bad.test'),
    (4, 'nobody@BAD.test',      'catch_all_domain', 'mx:bad.test'),
    (5, 'old@ok.test',          'catch_all_domain', 'google'),
    (6, 'carol@blocked.test',   'send_confirmed',   'proofpoint'),
    (7, 'dave@slow.test',       'catch_all_domain', NULL),
    (8, 'erin@gone.test',       'catch_all_domain', 'mx:gone.test'),
    (9, 'grace@gone.test',      'catch_all_domain', 'mx:gone.test'),
    (10, 'liam@ok.test',        'catch_all_domain', 'google'),
    (11, 'mia@bad.test',        'catch_all_domain', 'mx:bad.test'),
    (12, 'noah@slow.test',      'catch_all_domain', NULL),
    (13, 'olivia@ok.test',      'smtp_rejected_550', 'google'),
    (14, 'new@ok.test',         'catch_all_domain', 'google'),
    (15, 'heidi@ok.test',       'catch_all_domain', 'google'),
    (16, 'optout@ok.test',      'catch_all_domain', 'google');
SELECT pw.create_writeback_index();
SELECT indexdef FROM pg_indexes WHERE indexname = 'fmcsa_carriers_pw_email_norm_idx';

-- an opt-out, before any log is read
SELECT pw.suppress('OptOut@ok.test', 'unsubscribed'), pw.suppress('optout@ok.test', 'again');
SELECT pw.suppress('not-an-address', 'x');

SELECT * FROM pw.ingest_maillog('traditional.log');
SELECT * FROM pw.ingest_maillog('rfc3339.log');
-- a second call reads nothing new and changes nothing
CREATE TEMP TABLE snap AS
SELECT (SELECT md5(string_agg(concat_ws('|', id, email_verify_result), ',' ORDER BY id)) FROM fmcsa_carriers) AS carriers,
       (SELECT md5(string_agg(d::text, ',' ORDER BY email)) FROM pw.deliveries d) AS deliveries,
       (SELECT md5(string_agg(s::text, ',' ORDER BY email)) FROM pw.suppressions s) AS suppressions,
       (SELECT md5(string_agg(m::text, ',' ORDER BY day, mx_provider)) FROM pw.maillog_daily m) AS daily,
       (SELECT md5(string_agg(p::text, ',' ORDER BY queue_id, email)) FROM pw.maillog_pending p) AS pending;
SELECT * FROM pw.ingest_maillog('traditional.log');
SELECT * FROM pw.ingest_maillog('rfc3339.log');
SELECT (SELECT md5(string_agg(concat_ws('|', id, email_verify_result), ',' ORDER BY id)) FROM fmcsa_carriers) = carriers AS carriers_same,
       (SELECT md5(string_agg(d::text, ',' ORDER BY email)) FROM pw.deliveries d) = deliveries AS deliveries_same,
       (SELECT md5(string_agg(s::text, ',' ORDER BY email)) FROM pw.suppressions s) = suppressions AS suppressions_same,
       (SELECT md5(string_agg(m::text, ',' ORDER BY day, mx_provider)) FROM pw.maillog_daily m) = daily AS daily_same,
       (SELECT md5(string_agg(p::text, ',' ORDER BY queue_id, email)) FROM pw.maillog_pending p) IS NOT DISTINCT FROM pending AS pending_same
  FROM snap;
SELECT path ~ '/test/fixtures/maillog/' AS in_dir, "offset", lines, events, unparsed, overlong
  FROM pw.maillog_files ORDER BY path;

-- bounces (5.1.1, 5.7.1, expired after deferral) are hard_bounced, even over send_confirmed
SELECT id, email, email_verify_result FROM fmcsa_carriers ORDER BY id;
SELECT email, left(reason, 60) AS reason, source ~ 'fixtures/maillog/' AS from_log
  FROM pw.suppressions ORDER BY email;
-- every address seen, carrier or not
SELECT email, sent_count, deferred_count, bounce_count, bounce_dsn, in_carriers, mx_provider,
       first_sent_at IS NOT NULL AS sent, bounced_at IS NOT NULL AS bounced
  FROM pw.deliveries ORDER BY email;
-- what was not the address's fault is a failure, not a hard bounce; each
-- outcome keeps its category
SELECT email, bounce_category, failed_count, blocked_count, failed_dsn, last_category,
       failed_at IS NOT NULL AS failed
  FROM pw.deliveries WHERE bounce_count > 0 OR failed_count > 0 OR last_category IS NOT NULL
 ORDER BY email;
-- the carriers marked hard_bounced, with the result each had before
SELECT carrier_id, email, prior_result, category, dsn, bounced_at IS NOT NULL AS bounced,
       released_at IS NULL AS not_released
  FROM pw.hard_bounces ORDER BY carrier_id::int;
SELECT day, mx_provider, profile, category, bounced, deferred
  FROM pw.maillog_categories WHERE day >= '2024-01-01' AND day < '2025-01-01'
 ORDER BY day, mx_provider, category;
-- the rows of pw.read_maillog() carry the category of each bounce and deferral
SELECT recipient, status, dsn, category
  FROM pw.read_maillog('rfc3339.log') WHERE status IN ('bounced', 'deferred', 'expired')
 ORDER BY line_offset;
SELECT queue_id, email FROM pw.maillog_pending ORDER BY 1, 2;
SELECT * FROM pw.operator_outcomes WHERE day >= '2024-01-01' AND day < '2025-01-01' ORDER BY day, mx_provider;
SELECT mx_provider, sum(sent) AS sent, sum(deferred) AS deferred, sum(bounced) AS bounced
  FROM pw.operator_outcomes GROUP BY 1 ORDER BY 1;

-- confirmation: delivered, never bounced, not suppressed (the traditional
-- fixture has no year, so its lines may lie up to a day ahead of now)
SELECT pw.confirm_deliveries(older_than => '1 year');
SELECT pw.confirm_deliveries(older_than => '-2 days');
SELECT id, email, email_verify_result FROM fmcsa_carriers ORDER BY id;
SELECT pw.confirm_deliveries(older_than => '-2 days');
SELECT email FROM pw.deliveries WHERE confirmed_at IS NOT NULL ORDER BY 1;

-- the functions are not for PUBLIC
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'pw' AND p.proname IN ('read_maillog', 'maillog_last_read', 'ingest_maillog',
       'confirm_deliveries', 'create_writeback_index', 'suppress')
 ORDER BY 1;
CREATE ROLE pw_maillog_reader;
CREATE ROLE pw_nobody;
GRANT EXECUTE ON FUNCTION pw.read_maillog(text, bigint) TO pw_maillog_reader;
GRANT USAGE ON SCHEMA pw TO pw_maillog_reader, pw_nobody;
SET ROLE pw_nobody;
SELECT count(*) FROM pw.read_maillog('traditional.log');
SET pw_deliverability.maillog_directory = '/';
RESET ROLE;
SET ROLE pw_maillog_reader;
SELECT count(*) FROM pw.read_maillog('traditional.log');
SELECT count(*) FROM pw.read_maillog('/etc/passwd');
RESET ROLE;
DROP TABLE fmcsa_carriers;
DROP OWNED BY pw_maillog_reader, pw_nobody;
DROP ROLE pw_maillog_reader;
DROP ROLE pw_nobody;
