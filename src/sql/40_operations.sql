-- ---------------------------------------------------------------------------
-- Operations: mail logs per profile, the reputation brake, reporting and
-- pg_cron schedules.  Written as ALTERs and new objects so that this
-- fragment can double as upgrade content.
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

-- Outcomes are kept per profile of the log they came from ('' for a log not
-- mapped to a profile in pw.maillogs).
ALTER TABLE pw.maillog_daily ADD COLUMN profile text NOT NULL DEFAULT '';
ALTER TABLE pw.maillog_daily DROP CONSTRAINT maillog_daily_pkey;
ALTER TABLE pw.maillog_daily ADD PRIMARY KEY (day, mx_provider, profile);

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
           CASE WHEN r.operator = '(untagged)' THEN NULL ELSE pw.operator_class(r.operator) END,
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
      FROM r, p
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
