-- Run history: pw.runs, pw.run_carriers, pw.release_run()

CREATE TABLE public.run_carriers_t (
    id                  bigint PRIMARY KEY,
    email               text,
    email_verify_result text,
    mx_provider         text,
    listmonk_sent_at    timestamptz,
    verify_sent_at      timestamptz
);
INSERT INTO public.run_carriers_t (id, email, email_verify_result, mx_provider)
SELECT i, 'r' || i || '@d' || (i % 7) || '.com', 'smtp_valid', 'mx:host' || (i % 7) || '.net'
  FROM generate_series(1, 60) AS i;
SELECT relation AS saved_relation FROM pw.carriers_config \gset
UPDATE pw.carriers_config SET relation = 'public.run_carriers_t';
INSERT INTO pw.profiles (name, warmup_start, per_op_run_cap, null_run_cap, default_daily_cap)
VALUES ('r', current_date - 60, 100, 100, 100);
DELETE FROM pw.runs;
SELECT setval('pw.runs_run_id_seq', 100) AS run_ids_from;

-- a selection without a claim is no run; a claim is, with the carriers it marked
SELECT count(*) FROM pw.select_sendable_carriers(10, 'r');
SELECT count(*) FROM pw.runs;
SELECT count(*) FROM pw.select_sendable_carriers(10, 'r', claim => true);
SELECT kind, profile, finished >= started AS timed, pid = pg_backend_pid() AS mine,
       caller LIKE current_user || ' (pg_regress%)' AS caller_named,
       counts - 'marked_at' AS counts,
       (counts ->> 'marked_at')::timestamptz = (SELECT max(listmonk_sent_at) FROM public.run_carriers_t)
         AS marked_at_the_mark,
       released
  FROM pw.runs;
SELECT count(*) AS run_carriers,
       count(*) FILTER (WHERE c.listmonk_sent_at IS NOT NULL) AS marked
  FROM pw.run_carriers rc JOIN public.run_carriers_t c ON c.id = rc.carrier_id;

-- the client never read them: release the run, the carriers are selectable again
SELECT pw.release_run(run_id) FROM pw.runs WHERE kind = 'claim';
SELECT count(*) FILTER (WHERE listmonk_sent_at IS NOT NULL) AS still_marked FROM public.run_carriers_t;
SELECT released IS NOT NULL AS released, counts -> 'released' AS n FROM pw.runs;
\set VERBOSITY terse
SELECT pw.release_run(run_id) FROM pw.runs WHERE kind = 'claim';
\set VERBOSITY default

-- a carrier whose delivery was logged since the claim is kept
SELECT count(*) FROM pw.select_sendable_carriers(5, 'r', claim => true);
INSERT INTO pw.deliveries (email, first_sent_at, last_sent_at, sent_count)
SELECT lower(c.email), now(), now(), 1
  FROM pw.run_carriers rc JOIN public.run_carriers_t c ON c.id = rc.carrier_id
 WHERE rc.run_id = (SELECT max(run_id) FROM pw.runs) ORDER BY c.id LIMIT 2;
SELECT pw.release_run(max(run_id)) FROM pw.runs;
SELECT count(*) FILTER (WHERE listmonk_sent_at IS NOT NULL) AS still_marked FROM public.run_carriers_t;

-- errors
SELECT pw.release_run(-1);
SELECT pw.confirm_deliveries('1 hour');
SELECT pw.release_run(run_id) FROM pw.runs WHERE kind = 'confirm';
SELECT kind, counts FROM pw.runs WHERE kind = 'confirm';

-- a failed call leaves no run
SELECT count(*) AS runs_before FROM pw.runs;
SELECT * FROM pw.select_sendable_carriers(5, 'nonexistent', claim => true);
SELECT count(*) AS runs_after FROM pw.runs;

-- the views
SELECT kind, profile, seconds >= 0 AS timed FROM pw.run_history ORDER BY run_id;
SELECT kind, profile, age >= '0 s' AS aged FROM pw.last_runs;

-- only the owner writes the history; everyone reads it
CREATE ROLE pw_runs_reader;
GRANT USAGE ON SCHEMA pw TO pw_runs_reader;
SET ROLE pw_runs_reader;
SELECT count(*) > 0 AS readable FROM pw.runs;
DELETE FROM pw.runs;
SELECT pw.release_run(1);
RESET ROLE;
REVOKE USAGE ON SCHEMA pw FROM pw_runs_reader;
DROP ROLE pw_runs_reader;

-- retention
SET pw_deliverability.run_retention = 1;
UPDATE pw.runs SET started = started - interval '2 days';
SELECT count(*) FROM pw.select_sendable_carriers(1, 'r', claim => true);
SELECT count(*) AS runs_left, count(*) FILTER (WHERE started > now() - interval '1 hour') AS new FROM pw.runs;
SELECT count(*) AS carriers_left FROM pw.run_carriers;
RESET pw_deliverability.run_retention;

DELETE FROM pw.deliveries;
DELETE FROM pw.runs;
DELETE FROM pw.profiles WHERE name = 'r';
SET session_replication_role = replica;
UPDATE pw.carriers_config SET relation = :'saved_relation';
RESET session_replication_role;
DROP TABLE public.run_carriers_t;
