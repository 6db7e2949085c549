-- pw_deliverability 0.2 -> 0.3: only what changed; the objects' final shape
-- is in src/sql/.
\echo Use "ALTER EXTENSION pw_deliverability UPDATE TO '0.3'" to load this file. \quit

-- a mail log's state is found by its file's identity too (issue 12 item 4)
CREATE INDEX maillog_files_identity ON pw.maillog_files (dev, inode);

-- pw.maillog_profile() (security definer) is no longer executable by PUBLIC;
-- the ingest calls it without an EXECUTE check (issue 12 item 7)
REVOKE ALL ON FUNCTION pw.maillog_profile(text, text) FROM PUBLIC;

-- profiles no selection could use: an infinite warmup_start, a brake window
-- beyond a year (issue 12 item 7)
ALTER TABLE pw.profiles
    ADD CONSTRAINT profiles_warmup_start_finite CHECK (isfinite(warmup_start)),
    ADD CONSTRAINT profiles_brake_window_days_max CHECK (brake_window_days <= 366);

-- The reputation brake is judged once: pw.brake_status() gains braked_only
-- (only the braked operators, summing only those a day of the window puts
-- near a threshold), which the selection and pw.braked_operators use.
DROP VIEW pw.braked_operators;
DROP FUNCTION pw.brake_status(text);
CREATE FUNCTION pw.brake_status(profile text DEFAULT 'default', braked_only boolean DEFAULT false)
RETURNS TABLE (operator text, op_class text, sent bigint, deferred bigint, bounced bigint,
               sample bigint, bounce_rate numeric, deferral_rate numeric,
               action text, reason text, since date)
LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH p AS (
        SELECT p.name, p.brake_enabled, p.brake_window_days, p.brake_min_sample,
               p.brake_bounce_rate, p.brake_deferral_rate, p.brake_slow_factor,
               (p.brake_bounce_rate - 0.0001)::float8 AS bounce_floor,
               (p.brake_deferral_rate - 0.0001)::float8 AS deferral_floor
          FROM pw.profiles p WHERE p.name = brake_status.profile
    ), near AS (
        SELECT s.mx_provider
          FROM pw.maillog_daily s, p
         WHERE s.day > current_date - p.brake_window_days AND s.day <= current_date
           AND s.profile IN (p.name, '') AND p.brake_enabled
           AND (s.bounced::float8 > p.bounce_floor * (s.sent + s.bounced)::float8
                OR s.deferred::float8 > p.deferral_floor * (s.sent + s.deferred + s.bounced)::float8)
    ), o AS (
        SELECT d.mx_provider AS operator, sum(d.sent)::bigint AS sent,
               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced,
               min(d.day) FILTER (WHERE d.bounced > 0) AS first_bounce,
               min(d.day) FILTER (WHERE d.deferred > 0) AS first_deferral
          FROM pw.maillog_daily d, p
         WHERE d.day > current_date - p.brake_window_days AND d.day <= current_date
           AND d.profile IN (p.name, '')
           AND d.mx_provider <> '(not a carrier)'
           AND (NOT brake_status.braked_only OR d.mx_provider IN (SELECT n.mx_provider FROM near n))
         GROUP BY d.mx_provider
    ), r AS (
        SELECT o.*, o.sent + o.deferred + o.bounced AS sample,
               round(o.bounced::numeric / nullif(o.sent + o.bounced, 0), 4) AS bounce_rate,
               round(o.deferred::numeric / nullif(o.sent + o.deferred + o.bounced, 0), 4) AS deferral_rate
          FROM o
    ), j AS (
        SELECT r.*,
               CASE WHEN NOT p.brake_enabled OR r.sample < p.brake_min_sample THEN NULL
                    WHEN r.bounce_rate > p.brake_bounce_rate THEN 'paused'
                    WHEN r.deferral_rate > p.brake_deferral_rate THEN 'slowed' END AS action
          FROM r CROSS JOIN p
    )
    SELECT j.operator,
           CASE WHEN j.operator = '(untagged)' THEN NULL ELSE coalesce(op.op_class, 'default') END,
           j.sent, j.deferred, j.bounced, j.sample, j.bounce_rate, j.deferral_rate, j.action,
           CASE j.action
                WHEN 'paused'
                THEN format('bounce rate %s > %s over %s outcomes in %s day(s)',
                            j.bounce_rate, p.brake_bounce_rate, j.sample, p.brake_window_days)
                WHEN 'slowed'
                THEN format('deferral rate %s > %s over %s outcomes in %s day(s): allowance x %s',
                            j.deferral_rate, p.brake_deferral_rate, j.sample, p.brake_window_days,
                            p.brake_slow_factor) END,
           CASE j.action WHEN 'paused' THEN j.first_bounce
                         WHEN 'slowed' THEN j.first_deferral END
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


-- The daily caps are one rule: pw.daily_caps() (all of a profile's caps on a
-- warmup day), which the selection loads and pw.daily_cap() reads.
-- The daily caps of a profile on a warmup day, one rule for the selection
-- and pw.daily_cap(): a row per operator class (operator NULL) with the
-- class's ramp row of the greatest from_day <= the day, else the profile's
-- default_daily_cap for the default class and 0 for any other; and a row per
-- operator with an override in pw.operator_ramp (which wins over its class).
CREATE FUNCTION pw.daily_caps(profile text, warmup_day integer)
RETURNS TABLE (op_class text, operator text, daily_cap integer)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT c.name, NULL::text,
           coalesce((SELECT r.daily_cap FROM pw.warmup_ramp r
                      WHERE r.profile = daily_caps.profile AND r.op_class = c.name
                        AND r.from_day <= daily_caps.warmup_day
                      ORDER BY r.from_day DESC LIMIT 1),
                    CASE WHEN c.name = 'default'
                         THEN (SELECT p.default_daily_cap FROM pw.profiles p
                                WHERE p.name = daily_caps.profile)
                         ELSE 0 END)
      FROM (SELECT k.name FROM pw.operator_classes k UNION SELECT 'default') c
    UNION ALL
    SELECT NULL::text, o.operator, o.daily_cap
      FROM (SELECT DISTINCT ON (r.operator) r.operator, r.daily_cap
              FROM pw.operator_ramp r
             WHERE r.profile = daily_caps.profile AND r.from_day <= daily_caps.warmup_day
             ORDER BY r.operator, r.from_day DESC) o;
END;

-- The daily cap of one operator (label) under a profile on a warmup day;
-- NULL for a profile that does not exist.
CREATE OR REPLACE FUNCTION pw.daily_cap(profile text, label text, warmup_day integer)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT coalesce(
        (SELECT c.daily_cap FROM pw.daily_caps(daily_cap.profile, daily_cap.warmup_day) c
          WHERE c.operator = daily_cap.label),
        (SELECT c.daily_cap FROM pw.daily_caps(daily_cap.profile, daily_cap.warmup_day) c
          WHERE c.operator IS NULL AND c.op_class = pw.operator_class(daily_cap.label)))
     WHERE EXISTS (SELECT 1 FROM pw.profiles p WHERE p.name = daily_cap.profile);
END;

-- pw.suppress(): an address longer than RFC 5321 allows is a clear error, not
-- an index row size error (issue 12 item 7)
-- Adds an address to the suppression list (an opt-out, from any sending
-- domain).  True when it was not suppressed yet.
CREATE OR REPLACE FUNCTION pw.suppress(email text, reason text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    added integer;
BEGIN
    IF position('@' IN email) = 0 THEN
        RAISE EXCEPTION 'cannot suppress "%": not an email address', email
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- PW_EMAIL_MAX_LEN (src/common/pw_common.h): RFC 5321's limit
    IF octet_length(pw.normalize_email(email)) > 254 THEN
        RAISE EXCEPTION 'cannot suppress an address of % bytes: longer than RFC 5321 allows',
                        octet_length(pw.normalize_email(email))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'An email address has at most 254 bytes.';
    END IF;
    INSERT INTO pw.suppressions (email, reason, source)
    VALUES (pw.normalize_email(email), reason, 'pw.suppress')
    ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added > 0;
END
$$;

-- the hint of pw.require_pg_cron() points at docs/operations.md
-- Fails unless pg_cron is installed in this database.
CREATE OR REPLACE FUNCTION pw.require_pg_cron() RETURNS void
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

-- the progress of running tagging runs
-- The tagging runs under way in the cluster, one row each (pw.mx_tag()
-- callers and the background tagger); empty unless the library is preloaded.
CREATE FUNCTION pw.mx_tag_progress_rows()
RETURNS TABLE (pid integer, datid oid, background boolean, started timestamptz,
               phase text, max_domains integer, domains_fetched bigint,
               domains_looked_up bigint, domains_tagged bigint, domains_none bigint,
               domains_failed bigint, domains_written bigint, carriers_labelled bigint,
               batches bigint)
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_mx_tag_progress_rows';

REVOKE EXECUTE ON FUNCTION pw.mx_tag_progress_rows() FROM PUBLIC;

CREATE VIEW pw.mx_tag_progress AS
SELECT p.pid, p.datid, d.datname, p.background, p.started, p.phase, p.max_domains,
       p.domains_fetched, p.domains_looked_up, p.domains_tagged, p.domains_none,
       p.domains_failed, p.domains_written, p.carriers_labelled, p.batches
  FROM pw.mx_tag_progress_rows() p
  LEFT JOIN pg_catalog.pg_database d ON d.oid = p.datid;
