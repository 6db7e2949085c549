-- Reputation brake: pw.brake_status(), pw.braked_operators, and its effect on
-- pw.select_sendable_carriers() and pw.selection_composition()
SET TimeZone = 'UTC';

-- 200 carriers, all smtp_valid, five buckets of 40
CREATE TABLE public.brk_carriers (
    id                  bigint PRIMARY KEY,
    email               text,
    email_verify_result text,
    mx_provider         text,
    listmonk_sent_at    timestamptz,
    verify_sent_at      timestamptz
);
INSERT INTO public.brk_carriers (id, email, email_verify_result, mx_provider)
SELECT i, 'b' || i || '@e' || (i % 5) || '.org', 'smtp_valid',
       (ARRAY['google', 'mx:host1.net', 'godaddy', NULL, 'zoho'])[1 + i % 5]
  FROM generate_series(1, 200) AS i;
UPDATE pw.carriers_config SET relation = 'public.brk_carriers';
-- outcomes of earlier tests (fixture logs) are not this test's
DELETE FROM pw.maillog_daily;

-- profile b: past the warmup, caps of 10 per run so that halving shows
INSERT INTO pw.profiles (name, warmup_start, per_op_run_cap, null_run_cap, default_daily_cap)
VALUES ('b', current_date - 59, 10, 10, 100);
INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap) VALUES
    ('b', 'default', 1, 100), ('b', 'big', 1, 100);
SELECT name, brake_enabled, brake_window_days, brake_min_sample, brake_bounce_rate,
       brake_deferral_rate, brake_slow_factor
  FROM pw.profiles WHERE name IN ('b', 'default', 'verify') ORDER BY name;

-- no outcomes: nothing braked, every bucket gets its full allowance
SELECT * FROM pw.brake_status('b');
SELECT bucket, allowance, selected, brake FROM pw.selection_composition(1000, 'b');

-- outcomes in the 3-day window (today, yesterday, the day before)
INSERT INTO pw.maillog_daily (day, mx_provider, profile, sent, deferred, bounced) VALUES
    -- google: 10 bounces in 100 outcomes over two days -> paused
    (current_date,     'google',         '',  40,  0,  6),
    (current_date - 2, 'google',         'b', 50,  0,  4),
    -- mx:host1.net: 30 deferrals in 100 -> slowed
    (current_date - 1, 'mx:host1.net',   '',  70, 30,  0),
    -- godaddy: 5 bounces in 15, under the minimum sample of 50 -> not judged
    (current_date,     'godaddy',        'b', 10,  0,  5),
    -- godaddy in the verification stream's log: not profile b's outcomes
    (current_date,     'godaddy',        'verify', 100, 0, 100),
    -- untagged carriers: 25 deferrals in 100 -> the untagged bucket is slowed
    (current_date,     '(untagged)',     '',  75, 25,  0),
    -- zoho: bounces 3 days ago, just outside the window
    (current_date - 3, 'zoho',           '',  80,  0, 20),
    -- zoho at exactly the threshold today (0.05 is not over 0.05)
    (current_date,     'zoho',           '',  95,  0,  5),
    -- addresses that are not carriers never brake anything
    (current_date,     '(not a carrier)', '',  0,  0, 500);
-- these bounces were the addresses' fault and these deferrals were about
-- the sender's reputation (the ingest counts them so: see 44_verdict)
UPDATE pw.maillog_daily SET hard_bounced = bounced, throttled = deferred;
SELECT operator, op_class, sent, deferred, bounced, sample, bounce_rate, deferral_rate,
       action, reason, current_date - since AS since_days_ago
  FROM pw.brake_status('b');
SELECT profile, operator, op_class, sample, bounce_rate, deferral_rate, action, reason,
       current_date - since AS since_days_ago
  FROM pw.braked_operators WHERE profile = 'b' ORDER BY operator;
-- pw.operator_outcomes still sums every log: godaddy = b's log + the burner's
SELECT mx_provider, sent, deferred, bounced, bounce_rate, deferral_rate
  FROM pw.operator_outcomes WHERE day = current_date AND mx_provider = 'godaddy';

-- the selection applies it: google paused, mx:host1.net and the untagged
-- bucket halved (10 -> 5), godaddy and zoho untouched
SELECT * FROM pw.selection_composition(1000, 'b');
SELECT bucket, count(*) FROM pw.select_sendable_carriers(1000, 'b') GROUP BY 1 ORDER BY 1;

-- the selection loads the braked operators with a query of its own: it
-- must agree with pw.brake_status() (action and reason) in every state below
CREATE TEMP VIEW brk_same AS
SELECT count(s.action) AS braked,
       count(*) FILTER (WHERE (s.action, s.reason) IS DISTINCT FROM (c.brake, c.brake_reason))
       AS mismatches
  FROM pw.brake_status('b') s
  FULL JOIN pw.selection_composition(1000, 'b') c
    ON c.bucket = CASE s.operator WHEN '(untagged)' THEN '__null__' ELSE s.operator END;
SELECT * FROM brk_same;
-- thresholds at the rounded rates: google's 0.1000 is not over 0.1 but is
-- over 0.09995; mx:host1.net's deferral rate 0.3000 likewise
UPDATE pw.profiles SET brake_bounce_rate = 0.1, brake_deferral_rate = 0.3 WHERE name = 'b';
SELECT * FROM brk_same;
UPDATE pw.profiles SET brake_bounce_rate = 0.09995, brake_deferral_rate = 0.29995 WHERE name = 'b';
SELECT * FROM brk_same;
UPDATE pw.profiles SET brake_bounce_rate = 0, brake_deferral_rate = 0 WHERE name = 'b';
SELECT * FROM brk_same;
UPDATE pw.profiles SET brake_bounce_rate = 0.05, brake_deferral_rate = 0.20 WHERE name = 'b';

-- slowing halves the day's cap too: 48 sent today to mx:host1.net under a
-- daily cap of 100 -> 50 - 48 = 2 left
UPDATE public.brk_carriers SET listmonk_sent_at = now()
 WHERE id IN (SELECT id FROM public.brk_carriers WHERE mx_provider = 'mx:host1.net' ORDER BY id LIMIT 30);
INSERT INTO public.brk_carriers (id, email, email_verify_result, mx_provider, listmonk_sent_at)
SELECT 1000 + i, 'x' || i || '@e1.org', 'smtp_valid', 'mx:host1.net', now()
  FROM generate_series(1, 18) AS i;
SELECT bucket, available, allowance, selected, brake
  FROM pw.selection_composition(1000, 'b') WHERE bucket = 'mx:host1.net';
DELETE FROM public.brk_carriers WHERE id > 1000;
UPDATE public.brk_carriers SET listmonk_sent_at = NULL;

-- a claim respects the brake as well
BEGIN;
SELECT bucket, count(*) FROM pw.select_sendable_carriers(1000, 'b', claim => true) GROUP BY 1 ORDER BY 1;
SELECT mx_provider, count(*) FROM public.brk_carriers WHERE listmonk_sent_at IS NOT NULL GROUP BY 1 ORDER BY 1;
ROLLBACK;

-- a wider window reaches zoho's bounces of 3 days ago: paused since then
UPDATE pw.profiles SET brake_window_days = 4 WHERE name = 'b';
SELECT operator, sample, bounce_rate, action, current_date - since AS since_days_ago
  FROM pw.braked_operators WHERE profile = 'b' ORDER BY operator;
SELECT * FROM brk_same;
UPDATE pw.profiles SET brake_window_days = 3 WHERE name = 'b';

-- a smaller minimum sample judges godaddy (5 bounces in 15)
UPDATE pw.profiles SET brake_min_sample = 15 WHERE name = 'b';
SELECT operator, sample, action FROM pw.braked_operators WHERE profile = 'b' ORDER BY operator;
SELECT * FROM brk_same;
UPDATE pw.profiles SET brake_min_sample = 50 WHERE name = 'b';

-- the window expires: the same outcomes two days older lift google's pause
-- (only its today's row stays in the window: 6 bounces in 46, under the
-- minimum sample) and mx:host1.net's slowdown
UPDATE pw.maillog_daily SET day = day - 2 WHERE mx_provider IN ('google', 'mx:host1.net');
SELECT operator, sample, bounce_rate, deferral_rate, action FROM pw.brake_status('b')
 WHERE operator IN ('google', 'mx:host1.net');
SELECT bucket, allowance, brake FROM pw.selection_composition(1000, 'b')
 WHERE bucket IN ('google', 'mx:host1.net');

-- disabled: nothing braked
UPDATE pw.profiles SET brake_enabled = false WHERE name = 'b';
SELECT count(*) FROM pw.braked_operators WHERE profile = 'b';
SELECT bucket, allowance, brake FROM pw.selection_composition(1000, 'b');
SELECT * FROM brk_same;
UPDATE pw.profiles SET brake_enabled = true WHERE name = 'b';

-- the verification stream never pauses on bounces (they are what it
-- measures) but slows down on deferrals
SELECT operator, sample, bounce_rate, action FROM pw.brake_status('verify') WHERE operator = 'godaddy';
INSERT INTO pw.maillog_daily (day, mx_provider, profile, sent, deferred, bounced)
VALUES (current_date, 'godaddy', 'verify', 0, 100, 0)
ON CONFLICT (day, mx_provider, profile) DO UPDATE SET deferred = EXCLUDED.deferred,
    throttled = EXCLUDED.deferred;
SELECT operator, sample, deferral_rate, action FROM pw.brake_status('verify') WHERE operator = 'godaddy';

-- bad settings are refused
\set VERBOSITY terse
UPDATE pw.profiles SET brake_bounce_rate = 1.5 WHERE name = 'b';
UPDATE pw.profiles SET brake_window_days = 0 WHERE name = 'b';
\set VERBOSITY default

-- blocks: the sender refused (a listed burner) pauses the operator at the
-- block rate, whatever the hard-bounce rate; greylisting deferrals
-- (deferred but not throttled) slow nothing, reputation deferrals do
DELETE FROM pw.maillog_daily;
INSERT INTO pw.maillog_daily (day, mx_provider, profile, sent, deferred, bounced, hard_bounced, blocked, throttled) VALUES
    (current_date, 'google',       'b', 60,  0, 40, 0, 40,  0),
    (current_date, 'mx:host1.net', 'b', 60, 40,  0, 0,  0,  0),
    (current_date, 'zoho',         'b', 60, 40,  0, 0,  0, 40),
    (current_date, 'godaddy',      'verify', 60, 0, 40, 0, 40, 0);
SELECT operator, sample, bounce_rate, block_rate, deferral_rate, throttle_rate, action, reason
  FROM pw.brake_status('b');
-- the verification stream too stops mailing an operator that blocks its burner
SELECT operator, block_rate, action FROM pw.brake_status('verify') WHERE operator = 'godaddy';
SELECT bucket, allowance, brake FROM pw.selection_composition(1000, 'b') ORDER BY bucket;
UPDATE pw.profiles SET brake_block_rate = 0.5 WHERE name = 'b';
SELECT operator, action FROM pw.brake_status('b') WHERE operator = 'google';
\set VERBOSITY terse
UPDATE pw.profiles SET brake_block_rate = -0.1 WHERE name = 'b';
\set VERBOSITY default

-- ingestion attributes outcomes to the profile pw.maillogs maps the log to
\getenv srcdir PWD
\set fixtures :srcdir '/test/fixtures/maillog'
SET pw_deliverability.maillog_directory = :'fixtures';
DELETE FROM pw.maillog_daily;
DELETE FROM pw.maillog_files;
INSERT INTO pw.maillogs (path, profile) VALUES ('rfc3339.log', 'verify');
SELECT lines > 0 AS read FROM pw.ingest_maillog('rfc3339.log');
SELECT DISTINCT profile FROM pw.maillog_daily;
SELECT lines > 0 AS read FROM pw.ingest_maillog('traditional.log');
SELECT profile, sum(sent + deferred + bounced) > 0 AS outcomes FROM pw.maillog_daily GROUP BY 1 ORDER BY 1;
DELETE FROM pw.maillogs;
DELETE FROM pw.maillog_daily;
DELETE FROM pw.maillog_files;
DELETE FROM pw.deliveries;
DELETE FROM pw.maillog_pending;
DELETE FROM pw.suppressions;
RESET pw_deliverability.maillog_directory;

DELETE FROM pw.warmup_ramp WHERE profile = 'b';
DELETE FROM pw.profiles WHERE name = 'b';
DROP VIEW brk_same;
DROP TABLE public.brk_carriers;
-- back to the shipped default (unchecked: its table does not exist now)
SET session_replication_role = replica;
UPDATE pw.carriers_config SET relation = 'public.fmcsa_carriers';
RESET session_replication_role;
