-- Reporting: pw.report() on a small deterministic dataset
SET TimeZone = 'UTC';
BEGIN;
-- this test's own state: no cached domains, no outcomes of earlier tests
DELETE FROM pw.mx_domains;
DELETE FROM pw.maillog_daily;

-- 60 carriers: 6 results x 5 operators (google, godaddy, untagged, none, yahoo)
CREATE TABLE public.rpt_carriers (
    id                  bigint PRIMARY KEY,
    email               text,
    email_verify_result text,
    mx_provider         text,
    listmonk_sent_at    timestamptz,
    verify_sent_at      timestamptz
);
INSERT INTO public.rpt_carriers (id, email, email_verify_result, mx_provider)
SELECT i, 'r' || i || '@f' || (i % 4) || '.net',
       (ARRAY['smtp_valid', 'send_confirmed', 'catch_all_domain', 'mx_unreachable',
              'hard_bounced', 'smtp_valid'])[1 + i % 6],
       (ARRAY['google', 'godaddy', NULL, 'none', 'mx:yahoodns.net'])[1 + i % 5]
  FROM generate_series(1, 60) AS i;
UPDATE pw.carriers_config SET relation = 'public.rpt_carriers';

-- profile r on warmup day 40: big and consumer ramped in
INSERT INTO pw.profiles (name, warmup_start, per_op_run_cap, null_run_cap, default_daily_cap)
VALUES ('r', current_date - 39, 10, 10, 100);
INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap) VALUES
    ('r', 'default', 1, 30), ('r', 'big', 31, 8), ('r', 'consumer', 31, 4);

-- today r sent 6 smtp_valid carriers (3 google, 3 godaddy), yesterday 2 more
UPDATE public.rpt_carriers SET listmonk_sent_at = now()
 WHERE id IN (5, 6, 30, 36, 60, 66) OR id IN (1, 31);
UPDATE public.rpt_carriers SET listmonk_sent_at = now() - interval '1 day'
 WHERE id IN (11, 12);
-- the verification stream sent 8 of the catch-all and mx_unreachable
-- carriers: 3 have bounced since, 2 were confirmed, 3 await an outcome
UPDATE public.rpt_carriers SET verify_sent_at = now() - interval '2 days'
 WHERE id IN (2, 3, 8, 9, 14, 15, 20, 21);
UPDATE public.rpt_carriers SET email_verify_result = 'hard_bounced' WHERE id IN (2, 3, 9);
UPDATE public.rpt_carriers SET email_verify_result = 'send_confirmed' WHERE id IN (8, 14);

-- outcomes: google bounced 8 of 100 (paused), godaddy fine
INSERT INTO pw.maillog_daily (day, mx_provider, profile, sent, deferred, bounced) VALUES
    (current_date, 'google', '', 92, 0, 8),
    (current_date - 1, 'godaddy', '', 60, 5, 0);
-- hard bounces and reputation deferrals (see 40_brake)
UPDATE pw.maillog_daily SET hard_bounced = bounced, throttled = deferred;

SELECT id, email_verify_result, mx_provider, listmonk_sent_at IS NOT NULL AS sent,
       verify_sent_at IS NOT NULL AS verify_sent
  FROM public.rpt_carriers WHERE id <= 21 OR listmonk_sent_at IS NOT NULL ORDER BY id;

SELECT * FROM pw.report('r');

-- cross-checks against plain queries
SELECT (SELECT sum(count) FROM pw.report('r') WHERE section = 'pool')
         = (SELECT count(*) FROM public.rpt_carriers
             WHERE email_verify_result IN ('smtp_valid', 'send_confirmed')
               AND listmonk_sent_at IS NULL) AS pool_unsent_matches,
       (SELECT sum(total) FROM pw.report('r') WHERE section = 'pool')
         = (SELECT count(*) FROM public.rpt_carriers
             WHERE email_verify_result IN ('smtp_valid', 'send_confirmed')) AS pool_total_matches,
       (SELECT sum(count) FROM pw.report('r') WHERE section = 'today')
         = (SELECT count(*) FROM public.rpt_carriers
             WHERE listmonk_sent_at >= current_date) AS today_matches,
       (SELECT count FROM pw.report('r') WHERE section = 'backlog' AND item = 'untagged_carriers')
         = (SELECT count(*) FROM public.rpt_carriers WHERE mx_provider IS NULL) AS backlog_matches;

-- the verification section follows the verify profile's sent column: a
-- carriers table without it says so instead of failing
ALTER TABLE public.rpt_carriers DROP COLUMN verify_sent_at;
SELECT section, item, note FROM pw.report('r') WHERE section = 'verification';
-- the top operators of a section, then one line for the others (the braked first)
SELECT section, item, count, bounce_rate, note FROM pw.report('r', top => 1)
 WHERE section IN ('today', 'outcomes');
SAVEPOINT top0;
SELECT * FROM pw.report('r', top => 0);
ROLLBACK TO top0;
SELECT * FROM pw.report('nosuch');
ROLLBACK;
