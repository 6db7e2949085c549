-- pw_deliverability 0.2 -> 0.3: only what changed; the objects' final shape
-- is in src/sql/.
\echo Use "ALTER EXTENSION pw_deliverability UPDATE TO '0.3'" to load this file. \quit

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
        SELECT p.*, (p.brake_bounce_rate - 0.0001)::float8 AS bounce_floor,
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

