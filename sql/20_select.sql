-- Selection: pw.select_sendable_carriers() and pw.selection_composition()

-- A small carriers table of this test's own: 7 results x 11 operators, each
-- combination several times.
CREATE TABLE public.sel_carriers (
    id                  bigint PRIMARY KEY,
    email               text,
    email_verify_result text,
    mx_provider         text,
    listmonk_sent_at    timestamptz,
    verify_sent_at      timestamptz
);
INSERT INTO public.sel_carriers (id, email, email_verify_result, mx_provider)
SELECT i, 'c' || i || '@d' || (i % 5) || '.com',
       (ARRAY['smtp_valid', 'send_confirmed', 'catch_all_domain', 'smtp_valid',
              'mx_unreachable', 'hard_bounced', 'smtp_valid'])[1 + i % 7],
       (ARRAY['google', 'mx:yahoodns.net', 'godaddy', 'mx:host1.net', NULL, 'mx:host2.net',
              'microsoft', 'none', 'mx:icloud.com', 'zoho', 'godaddy'])[1 + i % 11]
  FROM generate_series(1, 400) AS i;
UPDATE pw.carriers_config SET relation = 'public.sel_carriers';

-- Profile t: warmup day 17 today, small caps so that they bind.
INSERT INTO pw.profiles (name, warmup_start, per_op_run_cap, null_run_cap, default_daily_cap)
VALUES ('t', current_date - 16, 5, 3, 7);
INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap) VALUES
    ('t', 'default', 1, 2), ('t', 'default', 15, 4), ('t', 'default', 31, 6),
    ('t', 'big', 31, 1), ('t', 'big', 38, 2), ('t', 'big', 45, 9),
    ('t', 'consumer', 31, 1), ('t', 'consumer', 45, 2);

-- Day 17 (today for t): no big or consumer operator, the untagged bucket
-- within null_run_cap, every operator within min(per_op_run_cap, daily cap)
SELECT pw.warmup_day('t');
SELECT * FROM pw.select_sendable_carriers(100, 't');
SELECT bucket, count(*) FROM pw.select_sendable_carriers(100, 't', 17) GROUP BY 1 ORDER BY 1;
SELECT * FROM pw.selection_composition(100, 't', 17);

-- the seeds' assertions, on the selection of day 17
WITH s AS (SELECT * FROM pw.select_sendable_carriers(100, 't', 17))
SELECT (SELECT count(*) FROM s WHERE pw.operator_class(mx_provider) IN ('big', 'consumer')) AS big_or_consumer,
       (SELECT count(*) FROM s WHERE mx_provider IS NULL) <= 3 AS null_within_cap,
       (SELECT bool_and(n <= least(5, pw.daily_cap('t', b, 17)))
          FROM (SELECT bucket AS b, count(*) AS n FROM s WHERE bucket <> '__null__' GROUP BY 1) x)
           AS operators_within_allowance,
       (SELECT bool_and(c.email_verify_result IN ('smtp_valid', 'send_confirmed'))
          FROM s JOIN public.sel_carriers c ON c.id = s.carrier_id) AS only_sendable,
       (SELECT bool_and(c.listmonk_sent_at IS NULL)
          FROM s JOIN public.sel_carriers c ON c.id = s.carrier_id) AS only_unsent,
       (SELECT count(*) FROM s WHERE mx_provider = 'none') AS none_operator;

-- the quota stops the scan; candidates come in ascending id
SELECT array_agg(carrier_id) FROM pw.select_sendable_carriers(4, 't', 17);
SELECT count(*) FROM pw.select_sendable_carriers(0, 't', 17);
-- the planner settings of the batch queries do not leak
SELECT current_setting('enable_sort') AS enable_sort,
       current_setting('max_parallel_workers_per_gather') AS workers;

-- Day 31: big and consumer re-enter at their first ramp step; the ramp
-- steps of every class, as the composition reports them
SELECT bucket, count(*) FROM pw.select_sendable_carriers(100, 't', 31) GROUP BY 1 ORDER BY 1;
SELECT d, bucket, operator_class, allowance
  FROM unnest(ARRAY[1, 14, 15, 30, 31, 38, 45]) AS d,
       LATERAL pw.selection_composition(100, 't', d)
 WHERE bucket IN ('google', 'mx:yahoodns.net', 'godaddy', '__null__')
 ORDER BY bucket, d;
-- allowances agree with pw.daily_cap() on every day
SELECT bool_and(c.allowance = CASE WHEN c.bucket = '__null__' THEN 3
                                   WHEN d <= 30 AND c.operator_class IN ('big', 'consumer') THEN 0
                                   ELSE least(5, pw.daily_cap('t', c.bucket, d)) END)
  FROM generate_series(1, 60) AS d, LATERAL pw.selection_composition(10, 't', d) c;
-- skip_big_mx off: big and consumer follow their ramp (0 before day 31)
UPDATE pw.profiles SET skip_big_mx = false, exclude_until_day = 40 WHERE name = 't';
SELECT bucket, allowance FROM pw.selection_composition(100, 't', 17)
 WHERE bucket IN ('google', 'mx:yahoodns.net') ORDER BY 1;
SELECT bucket, allowance FROM pw.selection_composition(100, 't', 38)
 WHERE bucket IN ('google', 'mx:yahoodns.net') ORDER BY 1;
UPDATE pw.profiles SET skip_big_mx = true WHERE name = 't';
SELECT bucket, allowance FROM pw.selection_composition(100, 't', 38)
 WHERE bucket IN ('google', 'mx:yahoodns.net') ORDER BY 1;
UPDATE pw.profiles SET exclude_until_day = 30 WHERE name = 't';

-- a per-operator override wins from its day on
INSERT INTO pw.operator_ramp VALUES ('t', 'godaddy', 10, 1), ('t', 'mx:yahoodns.net', 38, 5);
SELECT d, bucket, allowance FROM unnest(ARRAY[9, 17, 38]) AS d,
       LATERAL pw.selection_composition(100, 't', d)
 WHERE bucket IN ('godaddy', 'mx:yahoodns.net') ORDER BY bucket, d;
DELETE FROM pw.operator_ramp WHERE profile = 't';

-- What was sent today reduces the allowance (yesterday's sends do not)
UPDATE public.sel_carriers SET listmonk_sent_at = now()
 WHERE id IN (SELECT id FROM public.sel_carriers WHERE mx_provider = 'godaddy'
               AND email_verify_result = 'catch_all_domain' ORDER BY id LIMIT 3);
UPDATE public.sel_carriers SET listmonk_sent_at = (current_date - 1) + time '12:00'
 WHERE id IN (SELECT id FROM public.sel_carriers WHERE mx_provider = 'zoho'
               AND email_verify_result = 'catch_all_domain' ORDER BY id LIMIT 3);
SELECT bucket, available, allowance, selected FROM pw.selection_composition(100, 't', 17)
 WHERE bucket IN ('godaddy', 'zoho') ORDER BY 1;
UPDATE public.sel_carriers SET listmonk_sent_at = now()
 WHERE id IN (SELECT id FROM public.sel_carriers WHERE mx_provider = 'godaddy'
               AND email_verify_result = 'catch_all_domain' ORDER BY id LIMIT 9);
SELECT bucket, available, allowance, selected FROM pw.selection_composition(100, 't', 17)
 WHERE bucket = 'godaddy';
UPDATE public.sel_carriers SET listmonk_sent_at = NULL;

-- Suppressed addresses (any case, any padding) and blocked domains are out
-- (blocked domains are literal: a subdomain is not blocked)
SELECT carrier_id, email FROM pw.select_sendable_carriers(5, 't', 17);
INSERT INTO pw.suppressions (email, reason) VALUES (' C14@D4.COM', 'opt-out');
UPDATE public.sel_carriers SET email = 'Someone@Yahoo.COM ' WHERE id = 3;
UPDATE public.sel_carriers SET email = 'x@Sub.Yahoo.com' WHERE id = 10;
UPDATE public.sel_carriers SET email = 'y@icloud.com.' WHERE id = 13;
SELECT carrier_id, email FROM pw.select_sendable_carriers(5, 't', 17);
SELECT bucket, available FROM pw.selection_composition(100, 't', 17)
 WHERE bucket IN ('godaddy', 'mx:host1.net') ORDER BY 1;
DELETE FROM pw.suppressions;
UPDATE public.sel_carriers SET email = 'c' || id || '@d' || (id % 5) || '.com' WHERE id IN (3, 10, 13);

-- include_catch_all adds catch_all_domain, never a dead result
UPDATE pw.profiles SET include_catch_all = true WHERE name = 't';
SELECT c.email_verify_result, count(*)
  FROM pw.select_sendable_carriers(100, 't', 45) s JOIN public.sel_carriers c ON c.id = s.carrier_id
 GROUP BY 1 ORDER BY 1;
UPDATE pw.profiles SET include_catch_all = false WHERE name = 't';
SELECT c.email_verify_result, count(*)
  FROM pw.select_sendable_carriers(100, 't', 45) s JOIN public.sel_carriers c ON c.id = s.carrier_id
 GROUP BY 1 ORDER BY 1;

-- Claiming marks the rows sent in the same call; they count at once
BEGIN;
SELECT array_agg(carrier_id) AS claimed FROM pw.select_sendable_carriers(6, 't', 17, claim => true);
SELECT count(*) AS marked, bool_and(listmonk_sent_at = now()) AS at_now,
       bool_and(verify_sent_at IS NULL) AS verify_untouched
  FROM public.sel_carriers WHERE listmonk_sent_at IS NOT NULL;
SELECT array_agg(carrier_id) AS next FROM pw.select_sendable_carriers(6, 't', 17);
SELECT bucket, allowance FROM pw.selection_composition(100, 't', 17)
 WHERE bucket IN ('godaddy', 'mx:host1.net', 'zoho', '__null__') ORDER BY 1;
-- claiming until every daily allowance is used up: afterwards only the
-- untagged bucket (a per-run cap) still yields
SELECT count(*) FROM pw.select_sendable_carriers(1000, 't', 17, claim => true);
SELECT bucket, count(*) FROM pw.select_sendable_carriers(1000, 't', 17, claim => true) GROUP BY 1;
SELECT mx_provider, count(*) FROM public.sel_carriers
 WHERE listmonk_sent_at IS NOT NULL AND mx_provider IS NOT NULL GROUP BY 1 ORDER BY 1;
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM pw.select_sendable_carriers(5, 't', 17, claim => true);
ROLLBACK;

-- The verification profile: catch_all_domain + mx_unreachable, its own
-- sent column, its own warmup and ramp
SELECT name, purpose, sent_column, sendable_results, include_catch_all, pw.profile_pool(name)
  FROM pw.profiles WHERE name IN ('default', 'verify') ORDER BY 1;
SELECT c.email_verify_result, count(*)
  FROM pw.select_sendable_carriers(100, 'verify', 17) s JOIN public.sel_carriers c ON c.id = s.carrier_id
 GROUP BY 1 ORDER BY 1;
SELECT bucket, allowance FROM pw.selection_composition(100, 'verify', 45)
 WHERE bucket IN ('google', 'mx:yahoodns.net', 'godaddy', '__null__') ORDER BY 1;
BEGIN;
SELECT count(*) FROM pw.select_sendable_carriers(10, 'verify', 17, claim => true);
SELECT count(*) FILTER (WHERE verify_sent_at IS NOT NULL) AS verify_marked,
       count(*) FILTER (WHERE listmonk_sent_at IS NOT NULL) AS campaign_marked
  FROM public.sel_carriers;
ROLLBACK;
-- dead results: only a verification profile, only verifiable ones, never
-- sharing a sent column with a campaign profile
INSERT INTO pw.profiles (name, sendable_results) VALUES ('bad', '{smtp_valid,mx_unreachable}');
INSERT INTO pw.profiles (name, purpose, sent_column, sendable_results)
VALUES ('bad', 'verification', 'verify_sent_at', '{mx_unreachable,hard_bounced}');
INSERT INTO pw.profiles (name, purpose, sendable_results)
VALUES ('bad', 'verification', '{mx_unreachable}');
\set VERBOSITY terse
INSERT INTO pw.profiles (name, purpose, sent_column, sendable_results)
VALUES ('bad', 'burner', 'x_sent_at', '{smtp_valid}');
\set VERBOSITY default
UPDATE pw.profiles SET sent_column = 'verify_sent_at' WHERE name = 't';

-- Errors
SELECT * FROM pw.select_sendable_carriers(10, 'nosuch');
SELECT * FROM pw.selection_composition(10, 'nosuch');
SELECT * FROM pw.select_sendable_carriers(-1, 't');
SELECT * FROM pw.select_sendable_carriers(NULL, 't');
SELECT * FROM pw.select_sendable_carriers(10, NULL);
SELECT * FROM pw.select_sendable_carriers(10, 't', 0);
SELECT * FROM pw.select_sendable_carriers(10, 't', claim => NULL);
UPDATE pw.profiles SET warmup_start = current_date + 3 WHERE name = 't';
SELECT * FROM pw.select_sendable_carriers(10, 't');
UPDATE pw.profiles SET warmup_start = current_date - 16 WHERE name = 't';
ALTER TABLE public.sel_carriers RENAME COLUMN verify_sent_at TO verified_at;
SELECT * FROM pw.select_sendable_carriers(10, 'verify');
ALTER TABLE public.sel_carriers RENAME COLUMN verified_at TO verify_sent_at;
ALTER TABLE public.sel_carriers RENAME COLUMN email TO mail;
SELECT * FROM pw.select_sendable_carriers(10, 't');
ALTER TABLE public.sel_carriers RENAME COLUMN mail TO email;
ALTER TABLE public.sel_carriers ALTER COLUMN listmonk_sent_at TYPE text;
SELECT * FROM pw.select_sendable_carriers(10, 't');
ALTER TABLE public.sel_carriers ALTER COLUMN listmonk_sent_at TYPE timestamptz USING NULL;

-- The partial indexes of a profile
SELECT * FROM pw.selection_index_ddl('t');
SELECT * FROM pw.selection_index_ddl('verify', true);
SELECT count(*) FROM pw.create_selection_indexes('t');
SELECT count(*) FROM pw.create_selection_indexes('t');
SELECT indexrelid::regclass::text LIKE 'pw_sel_%_t' AS partial, indisvalid
  FROM pg_index WHERE indrelid = 'public.sel_carriers'::regclass AND indpred IS NOT NULL
 ORDER BY 1;
SELECT count(*) FROM pw.select_sendable_carriers(100, 't', 17);

DROP TABLE public.sel_carriers;
-- back to the shipped default, whose table a later test creates: unchecked,
-- as the contract is checked when set (43_settings)
SET session_replication_role = replica;
UPDATE pw.carriers_config SET relation = DEFAULT;
RESET session_replication_role;
DELETE FROM pw.profiles WHERE name = 't';

-- Equality with the plain-SQL reference (rank within each bucket, keep rank
-- <= allowance, first quota by id) on generated carriers, for several
-- quotas, days and profiles.  In a transaction: nothing is left behind.
BEGIN;
\set ECHO none
\i test/reference_select.sql
\i test/generate_carriers.sql
\set ECHO all
SELECT pw_generate_carriers(20000, seed => 11) > 0 AS generated;
INSERT INTO pw.profiles (name, warmup_start, include_catch_all, null_run_cap, per_op_run_cap)
VALUES ('g', current_date - 20, true, 25, 12);
INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap)
SELECT 'g', op_class, from_day, daily_cap / 4 FROM pw.warmup_ramp WHERE profile = 'default';
INSERT INTO pw.suppressions (email, reason)
SELECT email, 'test' FROM public.fmcsa_carriers WHERE id % 97 = 0;
UPDATE public.fmcsa_carriers SET listmonk_sent_at = now() - interval '1 minute' WHERE id % 89 = 0;
SELECT p, q, d,
       (SELECT count(*) FROM pw.select_sendable_carriers(q, p, d)) > 0 AS nonempty,
       (SELECT count(*) FROM pw.select_sendable_carriers(q, p, d)) = q AS at_quota,
       NOT EXISTS (SELECT * FROM pw.select_sendable_carriers(q, p, d)
                   EXCEPT ALL SELECT * FROM pw_reference_select(q, p, d))
       AND NOT EXISTS (SELECT * FROM pw_reference_select(q, p, d)
                       EXCEPT ALL SELECT * FROM pw.select_sendable_carriers(q, p, d)) AS same
  FROM (VALUES ('g', 50, 17), ('g', 400, 17), ('g', 100000, 17), ('g', 400, 31),
               ('g', 1000, 45), ('g', 100000, 60), ('default', 300, 17), ('default', 300, 45),
               ('verify', 500, 17), ('verify', 100000, 52)) AS v(p, q, d)
 ORDER BY p, d, q;
-- same order, and the composition adds up
SELECT array_agg(carrier_id) = (SELECT array_agg(carrier_id) FROM pw_reference_select(400, 'g', 17))
  FROM pw.select_sendable_carriers(400, 'g', 17);
SELECT sum(selected) = 400, bool_and(selected <= allowance), bool_and(selected <= available)
  FROM pw.selection_composition(400, 'g', 17);
-- a long suppression list (checked in SQL, a short one in memory)
INSERT INTO pw.suppressions (email, reason)
SELECT email, 'test' FROM public.fmcsa_carriers WHERE id % 3 = 0 ON CONFLICT DO NOTHING;
SELECT count(*) > 5000 AS long_list FROM pw.suppressions;
SELECT p, q, d,
       (SELECT count(*) FROM pw.select_sendable_carriers(q, p, d)) = q AS at_quota,
       NOT EXISTS (SELECT * FROM pw.select_sendable_carriers(q, p, d)
                   EXCEPT ALL SELECT * FROM pw_reference_select(q, p, d))
       AND NOT EXISTS (SELECT * FROM pw_reference_select(q, p, d)
                       EXCEPT ALL SELECT * FROM pw.select_sendable_carriers(q, p, d)) AS same
  FROM (VALUES ('g', 400, 17), ('g', 100000, 45), ('verify', 300, 31)) AS v(p, q, d)
 ORDER BY p, d, q;
-- with the partial indexes
SELECT count(*) FROM pw.create_selection_indexes('g');
SELECT NOT EXISTS (SELECT * FROM pw.select_sendable_carriers(2400, 'g', 45)
                   EXCEPT ALL SELECT * FROM pw_reference_select(2400, 'g', 45)) AS same_indexed;
ROLLBACK;
