-- pw_deliverability upgrade 0.1 -> 0.2 (ALTER EXTENSION pw_deliverability UPDATE).
-- Only what changed from the frozen sql-versions/pw_deliverability--0.1.sql
-- to the frozen sql-versions/pw_deliverability--0.2.sql: changed functions
-- whole (CREATE OR REPLACE), the objects new in 0.2, ALTERs of the others.
-- Frozen with 0.2: later changes go into the upgrade scripts of later
-- versions.  The TAP test test/t/080_upgrade.pl checks that an install
-- updated from 0.1 has the catalog of a fresh 0.2 install.

\echo Use "ALTER EXTENSION pw_deliverability UPDATE TO '0.2'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Fixed search_path on the functions that lacked pg_temp or any setting
-- ---------------------------------------------------------------------------
ALTER FUNCTION pw.suppressions_normalize() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pw.profiles_check() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pw.mx_backlog_stats() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pw.mx_label_counts() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pw.create_selection_indexes(text) SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION pw.create_tagging_index() RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    c record;
    idx text;
    r record;
BEGIN
    SELECT * INTO c FROM pw.carriers_check();
    idx := (SELECT relname FROM pg_catalog.pg_class WHERE oid = c.relation) || '_pw_untagged_domain';
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (pw.email_domain(%s)) WHERE %s IS NULL',
                   idx, c.relation, c.email_column, c.mx_column);
    -- Statistics of the domain expression, on the table and on each of its
    -- partitions: without them the planner takes a domain to have hundreds
    -- of carriers, and labels a batch of domains by hashing every untagged
    -- carrier instead of probing the index once per domain.
    FOR r IN SELECT n.nspname, k.relname, k.oid::regclass AS rel
               FROM pg_catalog.pg_class k
               JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace
              WHERE k.relkind IN ('r', 'p')
                AND (k.oid = c.relation
                     OR k.oid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree(c.relation) t))
    LOOP
        EXECUTE format('CREATE STATISTICS IF NOT EXISTS %I.%I ON (pw.email_domain(%s)) FROM %s',
                       r.nspname, left(r.relname, 47) || '_pw_email_domain', c.email_column, r.rel);
    END LOOP;
    EXECUTE format('ANALYZE %s', c.relation);
    RETURN idx;
END
$$;

CREATE OR REPLACE FUNCTION pw.selection_index_ddl(profile text DEFAULT 'default',
                                       concurrent boolean DEFAULT false)
RETURNS SETOF text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    p    pw.profiles;
    cc   record;
    rel  text;
    pool text;
    def  text;
    conc text := CASE WHEN concurrent THEN 'CONCURRENTLY ' ELSE '' END;
BEGIN
    SELECT * INTO p FROM pw.profiles WHERE name = profile;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'send profile "%" does not exist', profile
            USING ERRCODE = 'undefined_object', HINT = 'Profiles are the rows of pw.profiles.';
    END IF;
    SELECT * INTO cc FROM pw.carriers_check(p.sent_column);
    SELECT format('%I.%I', n.nspname, c.relname) INTO rel
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = cc.relation;
    SELECT string_agg(quote_literal(r), ', ' ORDER BY r) INTO pool
      FROM unnest(pw.profile_pool(profile)) AS r;

    def := format('%s (%s) INCLUDE (%s, %s) WHERE %s IS NULL AND %s IN (%s)',
                  rel, cc.id_column, cc.email_column, cc.mx_column,
                  cc.sent_column_checked, cc.result_column, pool);
    RETURN NEXT format('CREATE INDEX %sIF NOT EXISTS %I ON %s', conc,
                       left('pw_sel_' || left(md5(def), 8) || '_' || p.name, 63), def);
    def := format('%s (%s) INCLUDE (%s) WHERE %s IS NOT NULL',
                  rel, cc.sent_column_checked, cc.mx_column, cc.sent_column_checked);
    RETURN NEXT format('CREATE INDEX %sIF NOT EXISTS %I ON %s', conc,
                       left('pw_sent_' || left(md5(def), 8) || '_' || p.sent_column, 63), def);
END
$$;

-- Waking the background tagger is for its owner's roles only.
REVOKE EXECUTE ON FUNCTION pw.wake_tagger() FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- mail.log ingestion: the tail that recognises a file
-- ---------------------------------------------------------------------------
ALTER TABLE pw.maillog_files ADD COLUMN tail bytea;

-- ===========================================================================
-- New in 0.2: mail logs per profile, the reputation brake, reporting and
-- pg_cron schedules
-- ===========================================================================

-- The mail logs the extension ingests, each mapped to the send profile whose
-- traffic it records (the MTA of the campaign, the burner MTA of the
-- verification stream).  pw.schedule_jobs() ingests each on its schedule.
CREATE TABLE pw.maillogs (
    path     text PRIMARY KEY
             CONSTRAINT maillogs_path_nonempty CHECK (path <> ''),
    profile  text REFERENCES pw.profiles (name) ON UPDATE CASCADE ON DELETE SET NULL,
    schedule text NOT NULL DEFAULT '*/5 * * * *'
             CONSTRAINT maillogs_schedule_format CHECK (schedule ~ '^\S+(\s+\S+){4}$|^@\w+$|^\d+ seconds$'),
    note     text
);

-- The profile pw.maillogs maps a log to, by the path as given or its
-- canonical path ('' if none).  Ingestion calls it: security definer, so
-- that a role granted ingestion needs no privilege on pw.maillogs.
CREATE FUNCTION pw.maillog_profile(path text, canonical_path text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN coalesce((SELECT m.profile FROM pw.maillogs m
                  WHERE m.path IN (maillog_profile.path, maillog_profile.canonical_path)
                  ORDER BY m.path = maillog_profile.path DESC LIMIT 1), '');

-- Outcomes are kept per profile of the log they came from ('' for a log not
-- mapped to a profile in pw.maillogs).
ALTER TABLE pw.maillog_daily ADD COLUMN profile text NOT NULL DEFAULT '';
ALTER TABLE pw.maillog_daily DROP CONSTRAINT maillog_daily_pkey;
ALTER TABLE pw.maillog_daily ADD PRIMARY KEY (day, mx_provider, profile);

-- Per-operator outcomes with rates, over all logs as before.
DROP VIEW pw.operator_outcomes;
CREATE VIEW pw.operator_outcomes AS
SELECT day, mx_provider, sent, deferred, bounced,
       round(bounced::numeric / nullif(sent + bounced, 0), 4) AS bounce_rate,
       round(deferred::numeric / nullif(sent + bounced + deferred, 0), 4) AS deferral_rate
  FROM (SELECT d.day, d.mx_provider, sum(d.sent)::bigint AS sent,
               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced
          FROM pw.maillog_daily d GROUP BY d.day, d.mx_provider) m;

-- ---------------------------------------------------------------------------
-- Reputation brake
-- ---------------------------------------------------------------------------

ALTER TABLE pw.profiles
    ADD COLUMN brake_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN brake_window_days integer NOT NULL DEFAULT 3
        CONSTRAINT profiles_brake_window_days_positive CHECK (brake_window_days >= 1),
    ADD COLUMN brake_min_sample integer NOT NULL DEFAULT 50
        CONSTRAINT profiles_brake_min_sample_positive CHECK (brake_min_sample >= 1),
    ADD COLUMN brake_bounce_rate numeric NOT NULL DEFAULT 0.05
        CONSTRAINT profiles_brake_bounce_rate_range CHECK (brake_bounce_rate >= 0 AND brake_bounce_rate <= 1),
    ADD COLUMN brake_deferral_rate numeric NOT NULL DEFAULT 0.20
        CONSTRAINT profiles_brake_deferral_rate_range CHECK (brake_deferral_rate >= 0 AND brake_deferral_rate <= 1),
    ADD COLUMN brake_slow_factor numeric NOT NULL DEFAULT 0.5
        CONSTRAINT profiles_brake_slow_factor_range CHECK (brake_slow_factor >= 0 AND brake_slow_factor <= 1);

-- The verification stream exists to find the addresses that bounce: its
-- bounce rate is the measurement, not a reputation signal.  It still slows
-- down on deferrals, and never pauses on bounces.
UPDATE pw.profiles SET brake_bounce_rate = 1 WHERE name = 'verify';

-- Every operator's outcomes in a profile's brake window (the last
-- brake_window_days days, today included), from the logs mapped to the
-- profile and the logs mapped to none, with what the brake does: 'paused'
-- when the bounce rate is over brake_bounce_rate, 'slowed' when the
-- deferral rate is over brake_deferral_rate, NULL otherwise; nothing is
-- judged below brake_min_sample outcomes or with the brake disabled.
-- "since" is the first day of the window with an outcome of the kind that
-- triggered the brake: the brake lifts once the window has moved past the
-- days that triggered it and the rates are back under the thresholds.
CREATE FUNCTION pw.brake_status(profile text DEFAULT 'default')
RETURNS TABLE (operator text, op_class text, sent bigint, deferred bigint, bounced bigint,
               sample bigint, bounce_rate numeric, deferral_rate numeric,
               action text, reason text, since date)
LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH p AS (
        SELECT * FROM pw.profiles p WHERE p.name = brake_status.profile
    ), o AS (
        SELECT d.mx_provider AS operator, sum(d.sent)::bigint AS sent,
               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced,
               min(d.day) FILTER (WHERE d.bounced > 0) AS first_bounce,
               min(d.day) FILTER (WHERE d.deferred > 0) AS first_deferral
          FROM pw.maillog_daily d, p
         WHERE d.day > current_date - p.brake_window_days AND d.day <= current_date
           AND d.profile IN (p.name, '')
           AND d.mx_provider <> '(not a carrier)'
         GROUP BY d.mx_provider
    ), r AS (
        SELECT o.*, o.sent + o.deferred + o.bounced AS sample,
               round(o.bounced::numeric / nullif(o.sent + o.bounced, 0), 4) AS bounce_rate,
               round(o.deferred::numeric / nullif(o.sent + o.deferred + o.bounced, 0), 4) AS deferral_rate
          FROM o
    )
    SELECT r.operator,
           CASE WHEN r.operator = '(untagged)' THEN NULL ELSE coalesce(op.op_class, 'default') END,
           r.sent, r.deferred, r.bounced, r.sample, r.bounce_rate, r.deferral_rate,
           CASE WHEN NOT p.brake_enabled OR r.sample < p.brake_min_sample THEN NULL
                WHEN r.bounce_rate > p.brake_bounce_rate THEN 'paused'
                WHEN r.deferral_rate > p.brake_deferral_rate THEN 'slowed' END,
           CASE WHEN NOT p.brake_enabled THEN NULL
                WHEN r.sample < p.brake_min_sample THEN NULL
                WHEN r.bounce_rate > p.brake_bounce_rate
                THEN format('bounce rate %s > %s over %s outcomes in %s day(s)',
                            r.bounce_rate, p.brake_bounce_rate, r.sample, p.brake_window_days)
                WHEN r.deferral_rate > p.brake_deferral_rate
                THEN format('deferral rate %s > %s over %s outcomes in %s day(s): allowance x %s',
                            r.deferral_rate, p.brake_deferral_rate, r.sample, p.brake_window_days,
                            p.brake_slow_factor) END,
           CASE WHEN NOT p.brake_enabled OR r.sample < p.brake_min_sample THEN NULL
                WHEN r.bounce_rate > p.brake_bounce_rate THEN r.first_bounce
                WHEN r.deferral_rate > p.brake_deferral_rate THEN r.first_deferral END
      FROM r CROSS JOIN p
      LEFT JOIN pw.operators op ON op.label = r.operator
     ORDER BY r.operator;
END;

-- The operators braked now, for every profile.
CREATE VIEW pw.braked_operators AS
SELECT p.name AS profile, b.operator, b.op_class, b.sample, b.bounce_rate, b.deferral_rate,
       b.action, b.reason, b.since
  FROM pw.profiles p
 CROSS JOIN LATERAL pw.brake_status(p.name) b
 WHERE b.action IS NOT NULL;

-- The dry run of a selection now also shows the brake on each bucket.
DROP FUNCTION pw.selection_composition(integer, text, integer);
CREATE FUNCTION pw.selection_composition(quota integer, profile text DEFAULT 'default',
                                         warmup_day integer DEFAULT NULL)
RETURNS TABLE (bucket text, operator_class text, available bigint, allowance bigint,
               selected bigint, brake text, brake_reason text)
LANGUAGE c STABLE ROWS 100
AS 'MODULE_PATHNAME', 'pw_selection_composition';

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

-- The daily loop at a glance, for one campaign profile and every
-- verification profile, one row per figure:
--   pool          per result of the profile's pool and operator class: unsent
--                 candidates (count) of all carriers with that result (total)
--   backlog       the MX-tagging backlog (pw.mx_backlog), one row per figure
--   today         per operator: sent today by the profile (count) against its
--                 daily cap on today's warmup day (total), brake in note
--   outcomes      per operator, over the profile's brake window: outcomes
--                 (count), bounce and deferral rates, brake in note
--   verification  per verification profile (note): carriers it sent to that
--                 became hard_bounced or send_confirmed, those still awaiting
--                 an outcome, and per result of its pool those still unsent
-- Operator classes: the class of the operator, '(untagged)' for carriers
-- without mx_provider, '(no mx)' for mx_provider 'none'.
CREATE FUNCTION pw.report(profile text DEFAULT 'default')
RETURNS TABLE (section text, item text, op_class text, count bigint, total bigint,
               bounce_rate numeric, deferral_rate numeric, note text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    p      pw.profiles;
    v      pw.profiles;
    cc     record;
    vc     record;
    pool   text[];
    vday   integer;
    b      record;
BEGIN
    SELECT * INTO p FROM pw.profiles WHERE name = report.profile;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'send profile "%" does not exist', report.profile
            USING ERRCODE = 'undefined_object', HINT = 'Profiles are the rows of pw.profiles.';
    END IF;
    SELECT * INTO cc FROM pw.carriers_check(p.sent_column);
    pool := pw.profile_pool(p.name);
    vday := (current_date - p.warmup_start) + 1;

    -- the pool: per result and operator class, unsent of all
    RETURN QUERY EXECUTE format(
        'SELECT ''pool''::text, g.r, g.cls, sum(g.unsent)::bigint, sum(g.n)::bigint,'
        '       NULL::numeric, NULL::numeric, NULL::text'
        '  FROM (SELECT x.r, CASE WHEN x.mx IS NULL THEN ''(untagged)'' WHEN x.mx = ''none'' THEN ''(no mx)'''
        '                         ELSE coalesce(o.op_class, ''default'') END AS cls, x.n, x.unsent'
        '          FROM (SELECT c.%2$s::text AS r, c.%3$s::text AS mx, count(*) AS n,'
        '                       count(*) FILTER (WHERE c.%4$s IS NULL) AS unsent'
        '                  FROM %1$s c WHERE c.%2$s = ANY ($1) GROUP BY 1, 2) x'
        '          LEFT JOIN pw.operators o ON o.label = x.mx) g'
        ' GROUP BY 2, 3 ORDER BY 2, 3',
        cc.relation, cc.result_column, cc.mx_column, cc.sent_column_checked)
        USING pool;

    -- the tagging backlog
    RETURN QUERY
        SELECT 'backlog'::text, k.item, NULL::text, k.n, NULL::bigint, NULL::numeric,
               NULL::numeric, NULL::text
          FROM pw.mx_backlog m,
               LATERAL (VALUES (1, 'untagged_carriers', m.untagged_carriers),
                               (2, 'untagged_domains', m.untagged_domains),
                               (3, 'unresolved_domains', m.unresolved_domains),
                               (4, 'failing_domains', m.failing_domains),
                               (5, 'due_domains', m.due_domains)) AS k(o, item, n)
         ORDER BY k.o;

    -- today's sends per operator against the day's caps
    RETURN QUERY EXECUTE format(
        'SELECT ''today''::text, coalesce(t.mx, ''__null__''),'
        '       CASE WHEN t.mx IS NULL THEN ''(untagged)'' ELSE pw.operator_class(t.mx) END,'
        '       t.n, CASE WHEN t.mx IS NOT NULL THEN pw.daily_cap($1, t.mx, $2)::bigint END,'
        '       NULL::numeric, NULL::numeric, b.action'
        '  FROM (SELECT c.%2$s::text AS mx, count(*) AS n FROM %1$s c'
        '         WHERE c.%3$s >= current_date AND c.%3$s < current_date + 1 GROUP BY 1) t'
        '  LEFT JOIN pw.brake_status($1) b ON b.operator = coalesce(t.mx, ''(untagged)'')'
        ' ORDER BY 2',
        cc.relation, cc.mx_column, cc.sent_column_checked)
        USING p.name, vday;

    -- outcomes per operator over the brake window
    RETURN QUERY
        SELECT 'outcomes'::text, s.operator, s.op_class, s.sample, NULL::bigint,
               s.bounce_rate, s.deferral_rate, coalesce(s.action || ': ' || s.reason, 'ok')
          FROM pw.brake_status(p.name) s
         ORDER BY s.operator;

    -- verification progress of each verification profile
    FOR v IN SELECT * FROM pw.profiles WHERE purpose = 'verification' ORDER BY name LOOP
        BEGIN
            SELECT * INTO vc FROM pw.carriers_check(v.sent_column);
        EXCEPTION WHEN OTHERS THEN
            RETURN QUERY SELECT 'verification'::text, 'unavailable'::text, NULL::text,
                                NULL::bigint, NULL::bigint, NULL::numeric, NULL::numeric,
                                format('profile %s: %s', v.name, SQLERRM);
            CONTINUE;
        END;
        RETURN QUERY EXECUTE format(
            'SELECT ''verification''::text, k.item, NULL::text, k.n, NULL::bigint,'
            '       NULL::numeric, NULL::numeric, ''profile '' || $2'
            '  FROM (SELECT count(*) FILTER (WHERE c.%3$s IS NOT NULL AND c.%2$s = ''hard_bounced'') AS hb,'
            '               count(*) FILTER (WHERE c.%3$s IS NOT NULL AND c.%2$s = ''send_confirmed'') AS sc,'
            '               count(*) FILTER (WHERE c.%3$s IS NOT NULL AND c.%2$s = ANY ($1)) AS aw'
            '          FROM %1$s c WHERE c.%3$s IS NOT NULL) s,'
            '       LATERAL (VALUES (1, ''hard_bounced'', s.hb), (2, ''send_confirmed'', s.sc),'
            '                       (3, ''awaiting_outcome'', s.aw)) AS k(o, item, n)'
            ' ORDER BY k.o',
            vc.relation, vc.result_column, vc.sent_column_checked)
            USING pw.profile_pool(v.name), v.name;
        RETURN QUERY EXECUTE format(
            'SELECT ''verification''::text, ''remaining:'' || r.r, NULL::text,'
            '       coalesce(n.n, 0), NULL::bigint, NULL::numeric, NULL::numeric, ''profile '' || $2'
            '  FROM unnest($1) AS r(r)'
            '  LEFT JOIN (SELECT c.%2$s::text AS r, count(*) AS n FROM %1$s c'
            '              WHERE c.%2$s = ANY ($1) AND c.%3$s IS NULL GROUP BY 1) n ON n.r = r.r'
            ' ORDER BY r.r',
            vc.relation, vc.result_column, vc.sent_column_checked)
            USING pw.profile_pool(v.name), v.name;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Schedules (pg_cron)
-- ---------------------------------------------------------------------------

-- Fails unless pg_cron is installed in this database.
CREATE FUNCTION pw.require_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Preload pg_cron (shared_preload_libraries), set cron.database_name to this '
                         'database, and run CREATE EXTENSION pg_cron here; or schedule the jobs '
                         'with another scheduler (see pw.schedule_jobs() in the README).';
    END IF;
END
$$;

-- Registers the daily loop with pg_cron under stable job names, as the
-- calling role: the MX tagging ("pw_mx_tag", daily before the builder), the
-- ingest of every log of pw.maillogs ("pw_ingest:<path>", on the log's
-- schedule unless ingest_schedule overrides it) and the confirmation of
-- deliveries ("pw_confirm_deliveries", hourly).  Idempotent: pg_cron updates
-- a job of the same name, and the ingest jobs of logs no longer in
-- pw.maillogs are removed.  Returns the jobs registered.
CREATE FUNCTION pw.schedule_jobs(tag_schedule text DEFAULT '45 5 * * *',
                                 confirm_schedule text DEFAULT '0 * * * *',
                                 ingest_schedule text DEFAULT NULL,
                                 tag_max_domains integer DEFAULT 20000)
RETURNS TABLE (job_name text, schedule text, command text, jobid bigint)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    j   record;
    id  bigint;
BEGIN
    PERFORM pw.require_pg_cron();
    IF tag_schedule IS NULL OR confirm_schedule IS NULL OR tag_max_domains IS NULL THEN
        RAISE EXCEPTION 'tag_schedule, confirm_schedule and tag_max_domains must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tag_max_domains < 1 THEN
        RAISE EXCEPTION 'tag_max_domains must be 1 or more, not %', tag_max_domains
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- ingest jobs of logs that are no longer configured
    FOR j IN EXECUTE
        'SELECT c.jobname FROM cron.job c'
        ' WHERE c.username = current_user AND c.jobname LIKE ''pw\_ingest:%'''
        '   AND NOT EXISTS (SELECT 1 FROM pw.maillogs m WHERE ''pw_ingest:'' || m.path = c.jobname)'
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING j.jobname;
    END LOOP;

    FOR j IN
        SELECT 1 AS o, 'pw_mx_tag' AS name, tag_schedule AS sched,
               format('SELECT * FROM pw.mx_tag(%s)', tag_max_domains) AS cmd
        UNION ALL
        SELECT 2, 'pw_ingest:' || m.path, coalesce(ingest_schedule, m.schedule),
               format('SELECT * FROM pw.ingest_maillog(%L)', m.path)
          FROM pw.maillogs m
        UNION ALL
        SELECT 3, 'pw_confirm_deliveries', confirm_schedule,
               'SELECT * FROM pw.confirm_deliveries()'
        ORDER BY 1, 2
    LOOP
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO id USING j.name, j.sched, j.cmd;
        job_name := j.name;
        schedule := j.sched;
        command := j.cmd;
        jobid := id;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Removes every job pw.schedule_jobs() registered for the calling role;
-- returns how many.
CREATE FUNCTION pw.unschedule_jobs()
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    j record;
    n integer := 0;
BEGIN
    PERFORM pw.require_pg_cron();
    FOR j IN EXECUTE
        'SELECT c.jobname FROM cron.job c'
        ' WHERE c.username = current_user'
        '   AND (c.jobname IN (''pw_mx_tag'', ''pw_confirm_deliveries'')'
        '        OR c.jobname LIKE ''pw\_ingest:%'')'
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING j.jobname;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION pw.schedule_jobs(text, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.unschedule_jobs() FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pw.maillogs', '');

-- ===========================================================================
-- New in 0.2: shipped defaults are not dumped
-- ===========================================================================

-- CREATE EXTENSION seeds the configuration tables with shipped defaults
-- (profiles, ramps, operators, suffix rules, ...).  pg_dump must dump only
-- what the user changed: a restore runs CREATE EXTENSION first, which seeds
-- the defaults again.  Every seeded row carries seeded = true; inserting or
-- updating a row makes it the user's (seeded = false), and only those rows
-- are dumped.  On restore, a dumped row whose key matches a seeded row
-- replaces that row (pw.config_row_insert), so user edits of a shipped
-- default (say the default profile's warmup_start) survive dump/restore.

-- Any update makes the row the user's, except the replacement of a seeded
-- row by pw.config_row_insert(), which keeps the inserted row's flag.
CREATE FUNCTION pw.config_row_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    IF pg_catalog.current_setting('pw_seeded.replacing', true) IS DISTINCT FROM 'on' THEN
        NEW.seeded := false;
    END IF;
    RETURN NEW;
END
$$;

-- A row whose primary key matches a seeded row replaces the seeded row in
-- place (foreign keys to it stay valid); any other row is inserted.
CREATE FUNCTION pw.config_row_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    keys text;
    cols text;
    n    bigint;
BEGIN
    SELECT string_agg(format('t.%I IS NOT DISTINCT FROM ($1).%I', a.attname, a.attname), ' AND ')
      INTO keys
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = TG_RELID AND i.indisprimary;
    SELECT string_agg(format('%I = ($1).%I', a.attname, a.attname), ', ' ORDER BY a.attnum)
      INTO cols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped;
    PERFORM pg_catalog.set_config('pw_seeded.replacing', 'on', true);
    EXECUTE format('UPDATE %I.%I t SET %s WHERE t.seeded AND %s',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME, cols, keys)
      USING NEW;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM pg_catalog.set_config('pw_seeded.replacing', 'off', true);
    IF n > 0 THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

-- The shipped defaults of 0.1, as this script left them (the verify
-- profile's brake_bounce_rate).  A row equal to its shipped default in every
-- column stays seeded; any other row (added or edited under 0.1) is the
-- user's and is dumped.  A shipped profile's warmup_start is the day 0.1 was
-- installed: it is taken from the profile as it is.
CREATE TEMP TABLE seed_verify_results (LIKE pw.verify_results INCLUDING DEFAULTS);
CREATE TEMP TABLE seed_operator_classes (LIKE pw.operator_classes INCLUDING DEFAULTS);
CREATE TEMP TABLE seed_operators (LIKE pw.operators INCLUDING DEFAULTS);
CREATE TEMP TABLE seed_mx_suffix_rules (LIKE pw.mx_suffix_rules INCLUDING DEFAULTS);
CREATE TEMP TABLE seed_blocked_domains (LIKE pw.blocked_domains INCLUDING DEFAULTS);
CREATE TEMP TABLE seed_carriers_config (LIKE pw.carriers_config INCLUDING DEFAULTS);
CREATE TEMP TABLE seed_profiles (LIKE pw.profiles INCLUDING DEFAULTS);
CREATE TEMP TABLE seed_warmup_ramp (LIKE pw.warmup_ramp INCLUDING DEFAULTS);
INSERT INTO pg_temp.seed_verify_results (result, dead, description) VALUES
    ('smtp_valid',        false, 'an MX explicitly accepted this mailbox at RCPT TO'),
    ('send_confirmed',    false, 'a real verification send was delivered and never bounced'),
    ('catch_all_domain',  false, 'the domain accepts every recipient at SMTP time; may bounce later'),
    ('mx_unreachable',    true,  'an MX exists but never answered the probe; hard-bounces on a real send'),
    ('no_mx_records',     true,  'the domain has no mail exchanger'),
    ('invalid_syntax',    true,  'the address is not syntactically valid'),
    ('smtp_rejected_550', true,  'the MX rejected this mailbox with 550'),
    ('hard_bounced',      true,  'a real send hard-bounced; suppressed forever');
UPDATE pg_temp.seed_verify_results SET verifiable = true WHERE result = 'mx_unreachable';
INSERT INTO pg_temp.seed_operator_classes (name, description) VALUES
    ('big',      'large filtering operators: held out during warmup, then ramped in'),
    ('consumer', 'consumer mailbox operators behind custom domains: treated like big'),
    ('default',  'everything else: the long tail of small and self-hosted systems');
INSERT INTO pg_temp.seed_operators (label, op_class, note) VALUES
    ('google',      'big', 'Google Workspace / Gmail'),
    ('microsoft',   'big', 'Microsoft 365 / Exchange Online / Outlook.com'),
    ('proofpoint',  'big', 'Proofpoint (on-demand and Essentials)'),
    ('mimecast',    'big', 'Mimecast'),
    ('barracuda',   'big', 'Barracuda Email Security Service'),
    ('cisco',       'big', 'Cisco Secure Email (hosted IronPort)'),
    ('broadcom',    'big', 'Broadcom/Symantec Email Security.cloud (MessageLabs)'),
    ('mx:yahoodns.net',             'consumer', 'Yahoo Small Business / AOL custom domains'),
    ('mx:icloud.com',               'consumer', 'Apple iCloud+ custom domains'),
    ('mx:comcast.net',              'consumer', 'Comcast consumer mail'),
    ('mx:charter.net',              'consumer', 'Spectrum/Charter consumer mail'),
    ('mx:centurylink.net',          'consumer', 'CenturyLink consumer mail'),
    ('mx:windstream.net',           'consumer', 'Windstream consumer mail'),
    ('mx:tds.net',                  'consumer', 'TDS Telecom consumer mail'),
    ('mx:earthlink-vadesecure.net', 'consumer', 'EarthLink (filtered by Vade Secure)');
INSERT INTO pg_temp.seed_mx_suffix_rules (suffix, label, note) VALUES
    -- Google: aspmx.l.google.com, alt1.aspmx.l.google.com, smtp.google.com,
    -- aspmx2.googlemail.com
    ('google.com',                   'google',     'Workspace MX (aspmx.l.google.com, smtp.google.com)'),
    ('googlemail.com',               'google',     'legacy Workspace MX (aspmx2.googlemail.com)'),
    -- Microsoft: <tenant>.mail.protection.outlook.com (Exchange Online),
    -- *.olc.protection.outlook.com (Outlook.com/Hotmail), GCC High, and the
    -- DNSSEC-enabled <tenant>.<x>.mx.microsoft
    ('mail.protection.outlook.com',  'microsoft',  'Exchange Online Protection'),
    ('olc.protection.outlook.com',   'microsoft',  'Outlook.com / Hotmail'),
    ('mail.eo.outlook.com',          'microsoft',  'legacy Exchange Online'),
    ('hotmail.com',                  'microsoft',  'legacy Hotmail MX'),
    ('protection.office365.us',      'microsoft',  'Microsoft 365 GCC High'),
    ('mx.microsoft',                 'microsoft',  'Exchange Online with inbound DNSSEC'),
    -- Proofpoint: mx0a-<id>.pphosted.com, Essentials mx1-us1.ppe-hosted.com
    ('pphosted.com',                 'proofpoint', 'Proofpoint on Demand'),
    ('ppe-hosted.com',               'proofpoint', 'Proofpoint Essentials'),
    -- Mimecast: us-smtp-inbound-1.mimecast.com, eu-smtp-inbound-1.mimecast.com
    ('mimecast.com',                 'mimecast',   'Mimecast inbound'),
    ('mimecast.co.za',               'mimecast',   'Mimecast South Africa'),
    ('mimecast-offshore.com',        'mimecast',   'Mimecast offshore grid'),
    -- Cisco Secure Email Cloud: mx1.<customer>.iphmx.com
    ('iphmx.com',                    'cisco',      'hosted IronPort'),
    -- Barracuda ESS: d123456a.ess.barracudanetworks.com
    ('barracudanetworks.com',        'barracuda',  'Barracuda Email Security Service'),
    -- Broadcom/Symantec Email Security.cloud: cluster1.us.messagelabs.com
    ('messagelabs.com',              'broadcom',   'Symantec Email Security.cloud'),
    -- GoDaddy: mx1.secureserver.net, smtp.secureserver.net
    ('secureserver.net',             'godaddy',    'GoDaddy Workspace email'),
    -- Zoho: mx.zoho.com, mx2.zoho.eu, mx.zoho.in, mx.zoho.com.au
    ('zoho.com',                     'zoho',       'Zoho Mail US'),
    ('zoho.eu',                      'zoho',       'Zoho Mail EU'),
    ('zoho.in',                      'zoho',       'Zoho Mail India'),
    ('zoho.com.au',                  'zoho',       'Zoho Mail Australia'),
    ('zohomail.com',                 'zoho',       'Zoho Mail'),
    -- Rackspace: mx1.emailsrvr.com, mx2.emailsrvr.com
    ('emailsrvr.com',                'rackspace',  'Rackspace Email');
INSERT INTO pg_temp.seed_blocked_domains (domain, category) VALUES
    ('yahoo.com', 'yahoo_aol'), ('ymail.com', 'yahoo_aol'), ('rocketmail.com', 'yahoo_aol'),
    ('yahoo.co.uk', 'yahoo_aol'), ('yahoo.ca', 'yahoo_aol'), ('aol.com', 'yahoo_aol'),
    ('aim.com', 'yahoo_aol'), ('verizon.net', 'yahoo_aol'), ('att.net', 'yahoo_aol'),
    ('sbcglobal.net', 'yahoo_aol'), ('bellsouth.net', 'yahoo_aol'), ('pacbell.net', 'yahoo_aol'),
    ('swbell.net', 'yahoo_aol'), ('flash.net', 'yahoo_aol'), ('prodigy.net', 'yahoo_aol'),
    ('ameritech.net', 'yahoo_aol'), ('nvbell.net', 'yahoo_aol'), ('snet.net', 'yahoo_aol'),
    ('frontier.com', 'yahoo_aol'), ('frontiernet.net', 'yahoo_aol'),
    ('icloud.com', 'apple'), ('me.com', 'apple'), ('mac.com', 'apple'),
    ('centurylink.net', 'dead_isp'), ('centurytel.net', 'dead_isp'), ('embarqmail.com', 'dead_isp'),
    ('q.com', 'dead_isp'), ('qwest.net', 'dead_isp'), ('windstream.net', 'dead_isp'),
    ('tds.net', 'dead_isp'), ('earthlink.net', 'dead_isp'), ('mindspring.com', 'dead_isp'),
    ('juno.com', 'dead_isp'), ('netzero.net', 'dead_isp'), ('netzero.com', 'dead_isp'),
    ('charter.net', 'dead_isp'), ('comcast.net', 'dead_isp'), ('cox.net', 'dead_isp'),
    ('roadrunner.com', 'dead_isp'), ('rr.com', 'dead_isp'), ('excite.com', 'dead_isp'),
    ('peoplepc.com', 'dead_isp'), ('wildblue.net', 'dead_isp'), ('hughes.net', 'dead_isp');
INSERT INTO pg_temp.seed_carriers_config DEFAULT VALUES;
INSERT INTO pg_temp.seed_profiles (name, warmup_start, note) VALUES
    ('default', current_date,
     'PW trucking campaigns: smtp_valid + send_confirmed, big/consumer held out until day 30');
INSERT INTO pg_temp.seed_warmup_ramp (profile, op_class, from_day, daily_cap) VALUES
    ('default', 'default',   1,  40),
    ('default', 'default',   8,  60),
    ('default', 'default',  15,  80),
    ('default', 'default',  31, 120),
    ('default', 'big',      31,  10),
    ('default', 'big',      38,  25),
    ('default', 'big',      45,  50),
    ('default', 'big',      52, 100),
    ('default', 'big',      60, 200),
    ('default', 'consumer', 31,   5),
    ('default', 'consumer', 38,  15),
    ('default', 'consumer', 45,  30),
    ('default', 'consumer', 52,  60),
    ('default', 'consumer', 60, 120);
INSERT INTO pg_temp.seed_profiles (name, purpose, warmup_start, sent_column, sendable_results,
                         per_op_run_cap, null_run_cap, brake_bounce_rate, note) VALUES
    ('verify', 'verification', current_date, 'verify_sent_at',
     '{catch_all_domain,mx_unreachable}', 30, 20, 1,
     'burner-domain verification sends: catch_all_domain + mx_unreachable');
UPDATE pg_temp.seed_profiles s SET warmup_start = p.warmup_start
  FROM pw.profiles p WHERE p.name = s.name;
INSERT INTO pg_temp.seed_warmup_ramp (profile, op_class, from_day, daily_cap) VALUES
    ('verify', 'default',   1,  20),
    ('verify', 'default',   8,  40),
    ('verify', 'default',  15,  60),
    ('verify', 'default',  31, 100),
    ('verify', 'big',      31,   5),
    ('verify', 'big',      38,  10),
    ('verify', 'big',      45,  25),
    ('verify', 'big',      52,  50),
    ('verify', 'consumer', 31,   5),
    ('verify', 'consumer', 38,  10),
    ('verify', 'consumer', 45,  20),
    ('verify', 'consumer', 52,  40);

CREATE FUNCTION pw.config_mark_seeded(tbl regclass, seeds regclass, dump_all boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    EXECUTE format('ALTER TABLE %s ADD COLUMN seeded boolean NOT NULL DEFAULT false', tbl);
    EXECUTE format('UPDATE %s t SET seeded = true WHERE EXISTS'
                   ' (SELECT 1 FROM %s s WHERE to_jsonb(s) = to_jsonb(t) - ''seeded'')', tbl, seeds);
    EXECUTE format('CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION pw.config_row_update()', tbl);
    EXECUTE format('CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert()', tbl);
    PERFORM pg_catalog.pg_extension_config_dump(tbl, CASE WHEN dump_all THEN '' ELSE 'WHERE NOT seeded' END);
END
$$;

SELECT pw.config_mark_seeded('pw.verify_results', 'pg_temp.seed_verify_results');
SELECT pw.config_mark_seeded('pw.operator_classes', 'pg_temp.seed_operator_classes');
SELECT pw.config_mark_seeded('pw.operators', 'pg_temp.seed_operators');
SELECT pw.config_mark_seeded('pw.mx_suffix_rules', 'pg_temp.seed_mx_suffix_rules');
SELECT pw.config_mark_seeded('pw.blocked_domains', 'pg_temp.seed_blocked_domains');
SELECT pw.config_mark_seeded('pw.carriers_config', 'pg_temp.seed_carriers_config');
SELECT pw.config_mark_seeded('pw.profiles', 'pg_temp.seed_profiles', dump_all => true);
SELECT pw.config_mark_seeded('pw.warmup_ramp', 'pg_temp.seed_warmup_ramp');
DROP FUNCTION pw.config_mark_seeded(regclass, regclass, boolean);
DROP TABLE pg_temp.seed_verify_results;
DROP TABLE pg_temp.seed_operator_classes;
DROP TABLE pg_temp.seed_operators;
DROP TABLE pg_temp.seed_mx_suffix_rules;
DROP TABLE pg_temp.seed_blocked_domains;
DROP TABLE pg_temp.seed_carriers_config;
DROP TABLE pg_temp.seed_profiles;
DROP TABLE pg_temp.seed_warmup_ramp;

-- ---------------------------------------------------------------------------
-- pw.normalize_email() and pw.email_domain() in C: the same results as the
-- SQL expressions they replace, so indexes over them stay valid.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION pw.normalize_email(email text) RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_normalize_email';

CREATE OR REPLACE FUNCTION pw.email_domain(email text) RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_email_domain';

-- ---------------------------------------------------------------------------
-- Mail-log ingestion speed: the suppression trigger fires only when there is
-- something to normalise; pw.deliveries leaves room for HOT updates.
-- ---------------------------------------------------------------------------
DROP TRIGGER suppressions_normalize ON pw.suppressions;
CREATE TRIGGER suppressions_normalize
    BEFORE INSERT OR UPDATE OF email ON pw.suppressions
    FOR EACH ROW WHEN (NEW.email IS DISTINCT FROM pw.normalize_email(NEW.email))
    EXECUTE FUNCTION pw.suppressions_normalize();
ALTER TABLE pw.deliveries SET (fillfactor = 50);
