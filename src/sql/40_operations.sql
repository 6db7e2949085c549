-- ---------------------------------------------------------------------------
-- Operations: mail logs per profile, the reputation brake, reporting and
-- pg_cron schedules.
-- ---------------------------------------------------------------------------

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
-- canonical path ('' if none).  Ingestion calls it (through fmgr, with no
-- EXECUTE check): security definer, so that a role granted ingestion needs
-- no privilege on pw.maillogs, and revoked from PUBLIC.
CREATE FUNCTION pw.maillog_profile(path text, canonical_path text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN coalesce((SELECT m.profile FROM pw.maillogs m
                  WHERE m.path IN (maillog_profile.path, maillog_profile.canonical_path)
                  ORDER BY m.path = maillog_profile.path DESC LIMIT 1), '');

-- ---------------------------------------------------------------------------
-- Reputation brake (its settings are columns of pw.profiles)
-- ---------------------------------------------------------------------------

-- Every operator's outcomes in a profile's brake window (the last
-- brake_window_days days, today included), from the logs mapped to the
-- profile and the logs mapped to none, with what the brake does: 'paused'
-- when the hard-bounce rate (bounces that were the address's fault) is over
-- brake_bounce_rate or the block rate (the sender refused: blocklists,
-- reputation, policy, content, authentication) is over brake_block_rate,
-- 'slowed' when the throttle rate (deferrals for the sender's reputation or
-- a rate limit, bounces for a rate limit; not greylisting) is over
-- brake_deferral_rate, NULL otherwise; nothing is judged below
-- brake_min_sample outcomes or with the brake disabled.  bounced counts
-- every bounce, blocked the blocks; both rates over sent + bounced.
-- "since" is the first day of the window with an outcome of the kind that
-- triggered the brake: the brake lifts once the window has moved past the
-- days that triggered it and the rates are back under the thresholds.
-- With braked_only, only the braked operators come back (the selection
-- applies them), and only the operators that may be braked are summed: the
-- rate of a sum of days lies between the rates of its days, so an operator
-- whose (rounded) rate over the window is over a threshold has a day whose
-- rate is over the threshold minus 0.00005; days are prefiltered against
-- the threshold minus 0.0001 (in float8, far within that margin).
CREATE FUNCTION pw.brake_status(profile text DEFAULT 'default', braked_only boolean DEFAULT false)
RETURNS TABLE (operator text, op_class text, sent bigint, deferred bigint, bounced bigint,
               sample bigint, bounce_rate numeric, deferral_rate numeric,
               action text, reason text, since date, hard_bounced bigint, blocked bigint,
               throttled bigint, block_rate numeric, throttle_rate numeric)
LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH p AS (
        SELECT p.name, p.brake_enabled, p.brake_window_days, p.brake_min_sample,
               p.brake_bounce_rate, p.brake_deferral_rate, p.brake_slow_factor,
               p.brake_block_rate,
               (p.brake_bounce_rate - 0.0001)::float8 AS bounce_floor,
               (p.brake_block_rate - 0.0001)::float8 AS block_floor,
               (p.brake_deferral_rate - 0.0001)::float8 AS throttle_floor
          FROM pw.profiles p WHERE p.name = brake_status.profile
    ), near AS (
        SELECT s.mx_provider
          FROM pw.maillog_daily s, p
         WHERE s.day > current_date - p.brake_window_days AND s.day <= current_date
           AND s.profile IN (p.name, '') AND p.brake_enabled
           AND (s.hard_bounced::float8 > p.bounce_floor * (s.sent + s.bounced)::float8
                OR s.blocked::float8 > p.block_floor * (s.sent + s.bounced)::float8
                OR s.throttled::float8 > p.throttle_floor * (s.sent + s.deferred + s.bounced)::float8)
    ), o AS (
        SELECT d.mx_provider AS operator, sum(d.sent)::bigint AS sent,
               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced,
               sum(d.hard_bounced)::bigint AS hard_bounced, sum(d.blocked)::bigint AS blocked,
               sum(d.throttled)::bigint AS throttled,
               min(d.day) FILTER (WHERE d.hard_bounced > 0) AS first_bounce,
               min(d.day) FILTER (WHERE d.blocked > 0) AS first_block,
               min(d.day) FILTER (WHERE d.throttled > 0) AS first_throttle
          FROM pw.maillog_daily d, p
         WHERE d.day > current_date - p.brake_window_days AND d.day <= current_date
           AND d.profile IN (p.name, '')
           AND d.mx_provider <> '(not a carrier)'
           AND (NOT brake_status.braked_only OR d.mx_provider IN (SELECT n.mx_provider FROM near n))
         GROUP BY d.mx_provider
    ), r AS (
        SELECT o.*, o.sent + o.deferred + o.bounced AS sample,
               round(o.hard_bounced::numeric / nullif(o.sent + o.bounced, 0), 4) AS bounce_rate,
               round(o.blocked::numeric / nullif(o.sent + o.bounced, 0), 4) AS block_rate,
               round(o.deferred::numeric / nullif(o.sent + o.deferred + o.bounced, 0), 4) AS deferral_rate,
               round(o.throttled::numeric / nullif(o.sent + o.deferred + o.bounced, 0), 4) AS throttle_rate
          FROM o
    ), j AS (
        SELECT r.*,
               CASE WHEN NOT p.brake_enabled OR r.sample < p.brake_min_sample THEN NULL
                    WHEN r.bounce_rate > p.brake_bounce_rate THEN 'paused'
                    WHEN r.block_rate > p.brake_block_rate THEN 'paused'
                    WHEN r.throttle_rate > p.brake_deferral_rate THEN 'slowed' END AS action,
               CASE WHEN r.bounce_rate > p.brake_bounce_rate THEN 'bounce'
                    WHEN r.block_rate > p.brake_block_rate THEN 'block'
                    ELSE 'throttle' END AS why
          FROM r CROSS JOIN p
    )
    SELECT j.operator,
           CASE WHEN j.operator = '(untagged)' THEN NULL ELSE coalesce(op.op_class, 'default') END,
           j.sent, j.deferred, j.bounced, j.sample, j.bounce_rate, j.deferral_rate, j.action,
           CASE WHEN j.action IS NULL THEN NULL
                WHEN j.why = 'bounce'
                THEN format('bounce rate %s > %s over %s outcomes in %s day(s)',
                            j.bounce_rate, p.brake_bounce_rate, j.sample, p.brake_window_days)
                WHEN j.why = 'block'
                THEN format('block rate %s > %s over %s outcomes in %s day(s): the sender is refused',
                            j.block_rate, p.brake_block_rate, j.sample, p.brake_window_days)
                ELSE format('throttle rate %s > %s over %s outcomes in %s day(s): allowance x %s',
                            j.throttle_rate, p.brake_deferral_rate, j.sample, p.brake_window_days,
                            p.brake_slow_factor) END,
           CASE WHEN j.action IS NULL THEN NULL
                WHEN j.why = 'bounce' THEN j.first_bounce
                WHEN j.why = 'block' THEN j.first_block
                ELSE j.first_throttle END,
           j.hard_bounced, j.blocked, j.throttled, j.block_rate, j.throttle_rate
      FROM j CROSS JOIN p
      LEFT JOIN pw.operators op ON op.label = j.operator
     WHERE NOT brake_status.braked_only OR j.action IS NOT NULL
     ORDER BY j.operator;
END;

-- The operators braked now, for every profile.
CREATE VIEW pw.braked_operators AS
SELECT p.name AS profile, b.operator, b.op_class, b.sample, b.bounce_rate, b.deferral_rate,
       b.action, b.reason, b.since
  FROM pw.profiles p
 CROSS JOIN LATERAL pw.brake_status(p.name, braked_only => true) b;

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

-- The daily loop at a glance, for one campaign profile and every
-- verification profile, one row per figure:
--   pool          per result of the profile's pool and operator class: unsent
--                 candidates (count) of all carriers with that result (total)
--   backlog       the MX-tagging backlog (pw.mx_backlog), one row per figure
--   today         per operator: sent today by the profile (count) against its
--                 daily cap on today's warmup day (total), brake in note; the
--                 braked operators first, then the busiest, top in all, and
--                 one '(others)' line for the rest (how many in note)
--   outcomes      per operator, over the profile's brake window: outcomes
--                 (count), bounce and deferral rates, brake in note; top
--                 operators likewise, and one line for the others
--   verification  per verification profile (note): carriers it sent to that
--                 became hard_bounced or send_confirmed, those still awaiting
--                 an outcome, and per result of its pool those still unsent
-- Operator classes: the class of the operator, '(untagged)' for carriers
-- without mx_provider, '(no mx)' for mx_provider 'none'.
CREATE FUNCTION pw.report(profile text DEFAULT 'default', top integer DEFAULT 10)
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
    IF top IS NULL OR top < 1 THEN
        RAISE EXCEPTION 'top must be 1 or more, not %', coalesce(top::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'top is how many operators the today and outcomes sections show.';
    END IF;
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

    -- today's sends per operator against the day's caps: the braked ones,
    -- then the busiest, top in all, and one line for the others
    RETURN QUERY EXECUTE format(
        'WITH t AS (SELECT c.%2$s::text AS mx, count(*) AS n FROM %1$s c'
        '            WHERE c.%3$s >= current_date AND c.%3$s < current_date + 1 GROUP BY 1),'
        ' r AS (SELECT t.mx, t.n, b.action,'
        '              row_number() OVER (ORDER BY b.action IS NOT NULL DESC, t.n DESC, t.mx NULLS FIRST) AS rk'
        '         FROM t LEFT JOIN pw.brake_status($1, braked_only => true) b'
        '           ON b.operator = coalesce(t.mx, ''(untagged)''))'
        ' SELECT x.s, x.i, x.c, x.n, x.t, x.b, x.d, x.note FROM ('
        '   SELECT ''today''::text AS s, coalesce(r.mx, ''__null__'') AS i,'
        '          CASE WHEN r.mx IS NULL THEN ''(untagged)'' ELSE pw.operator_class(r.mx) END AS c,'
        '          r.n, CASE WHEN r.mx IS NOT NULL THEN pw.daily_cap($1, r.mx, $2)::bigint END AS t,'
        '          NULL::numeric AS b, NULL::numeric AS d, r.action AS note, r.rk'
        '     FROM r WHERE r.rk <= $3'
        '   UNION ALL'
        '   SELECT ''today'', ''(others)'', NULL, sum(r.n)::bigint, NULL, NULL, NULL,'
        '          format(''%%s operator(s)'', count(*))'
        '          || CASE WHEN count(r.action) > 0 THEN format('', %%s braked'', count(r.action)) ELSE '''' END,'
        '          $3 + 1'
        '     FROM r WHERE r.rk > $3 HAVING count(*) > 0) x'
        ' ORDER BY x.rk',
        cc.relation, cc.mx_column, cc.sent_column_checked)
        USING p.name, vday, top;

    -- outcomes per operator over the brake window: the braked ones, then
    -- the largest samples, top in all, and one line for the others
    RETURN QUERY
        WITH r AS (
            SELECT s.*, row_number() OVER (ORDER BY s.action IS NOT NULL DESC, s.sample DESC,
                                                    s.operator) AS rk
              FROM pw.brake_status(p.name) s)
        SELECT x.s, x.i, x.c, x.n, NULL::bigint, x.b, x.d, x.note FROM (
            SELECT 'outcomes'::text AS s, r.operator AS i, r.op_class AS c, r.sample AS n,
                   r.bounce_rate AS b, r.deferral_rate AS d,
                   coalesce(r.action || ': ' || r.reason, 'ok')
                   || CASE WHEN r.blocked > 0 OR r.throttled > 0
                           THEN format('; blocked %s (block rate %s), throttled %s (throttle rate %s)',
                                       r.blocked, r.block_rate, r.throttled, r.throttle_rate)
                           ELSE '' END AS note,
                   r.rk
              FROM r WHERE r.rk <= top
            UNION ALL
            SELECT 'outcomes', '(others)', NULL, sum(r.sample)::bigint,
                   round(sum(r.hard_bounced)::numeric / nullif(sum(r.sent + r.bounced), 0), 4),
                   round(sum(r.deferred)::numeric / nullif(sum(r.sample), 0), 4),
                   format('%s operator(s)', count(*))
                   || CASE WHEN count(r.action) > 0 THEN format(', %s braked', count(r.action)) ELSE '' END,
                   top + 1
              FROM r WHERE r.rk > top HAVING count(*) > 0) x
         ORDER BY x.rk;

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
                         'with another scheduler (see docs/operations.md).';
    END IF;
END
$$;

-- Registers the daily loop with pg_cron under stable job names, as the
-- calling role: the MX tagging ("pw_mx_tag", daily before the builder), the
-- ingest of every log of pw.maillogs ("pw_ingest:<path>", on the log's
-- schedule unless ingest_schedule overrides it) and the confirmation of
-- deliveries ("pw_confirm_deliveries", hourly) and the retry of
-- verifications without a verdict ("pw_requeue_verifications", on the same
-- schedule).  Idempotent: pg_cron updates
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
               format('CALL pw.mx_tag_batches(%s)', tag_max_domains) AS cmd
        UNION ALL
        SELECT 2, 'pw_ingest:' || m.path, coalesce(ingest_schedule, m.schedule),
               format('SELECT * FROM pw.ingest_maillog(%L)', m.path)
          FROM pw.maillogs m
        UNION ALL
        SELECT 3, 'pw_confirm_deliveries', confirm_schedule,
               'SELECT * FROM pw.confirm_deliveries()'
        UNION ALL
        SELECT 4, 'pw_requeue_verifications', confirm_schedule,
               'SELECT pw.requeue_verifications()'
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
        '   AND (c.jobname IN (''pw_mx_tag'', ''pw_confirm_deliveries'', ''pw_requeue_verifications'')'
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
REVOKE ALL ON FUNCTION pw.maillog_profile(text, text) FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pw.maillogs', '');
