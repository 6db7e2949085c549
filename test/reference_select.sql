-- The plain-SQL reference of pw.select_sendable_carriers() (dry run), for
-- tests and the benchmark:
--
--   rank the candidates within each bucket by id, keep rank <= the bucket's
--   allowance, take the first "quota" by id.
--
-- It reads the same configuration (profile, ramp, operators, suppressions,
-- blocked domains, carriers contract) with window functions instead of a
-- streaming scan.

CREATE OR REPLACE FUNCTION pw_reference_select(quota integer, profile text DEFAULT 'default',
                                               warmup_day integer DEFAULT NULL)
RETURNS TABLE (carrier_id bigint, email text, mx_provider text, bucket text)
LANGUAGE plpgsql AS
$f$
DECLARE
    p    pw.profiles;
    cc   record;
    day  integer;
    hold boolean;
    pool text;
BEGIN
    SELECT * INTO STRICT p FROM pw.profiles pr WHERE pr.name = profile;
    SELECT * INTO STRICT cc FROM pw.carriers_check(p.sent_column);
    day := coalesce(warmup_day, current_date - p.warmup_start + 1);
    hold := p.skip_big_mx AND day <= p.exclude_until_day;
    SELECT string_agg(quote_literal(r), ', ') INTO pool FROM unnest(pw.profile_pool(profile)) AS r;
    RETURN QUERY EXECUTE format($q$
        WITH cand AS (
            SELECT c.%1$s::bigint AS id, c.%2$s::text AS email, c.%3$s::text AS mx,
                   coalesce(c.%3$s::text, '__null__') AS bucket
              FROM %4$s c
             WHERE c.%5$s IS NULL AND c.%6$s IN (%7$s) AND c.%2$s IS NOT NULL
               AND c.%3$s IS DISTINCT FROM 'none'
               AND NOT EXISTS (SELECT 1 FROM pw.suppressions s
                                WHERE s.email = pw.normalize_email(c.%2$s))
               AND NOT EXISTS (SELECT 1 FROM pw.blocked_domains b
                                WHERE b.domain = pw.email_domain(c.%2$s))
        ), sent_today AS (
            SELECT c.%3$s::text AS mx, count(*) AS n
              FROM %4$s c
             WHERE c.%5$s >= current_date AND c.%5$s < current_date + 1
               AND c.%3$s IS NOT NULL
             GROUP BY 1
        ), allow AS (
            SELECT b.bucket,
                   CASE WHEN b.mx IS NULL THEN $3
                        WHEN $2 AND pw.operator_class(b.mx) IN ('big', 'consumer') THEN 0
                        ELSE least($4, greatest(0, pw.daily_cap($5, b.mx, $1) - coalesce(t.n, 0)))
                   END AS allowance
              FROM (SELECT DISTINCT cand.mx, cand.bucket FROM cand) b
              LEFT JOIN sent_today t ON t.mx = b.mx
        ), ranked AS (
            SELECT cand.*, row_number() OVER (PARTITION BY cand.bucket ORDER BY cand.id) AS rn
              FROM cand
        )
        SELECT r.id, r.email, r.mx, r.bucket
          FROM ranked r JOIN allow a ON a.bucket = r.bucket
         WHERE r.rn <= a.allowance
         ORDER BY r.id
         LIMIT $6
    $q$, cc.id_column, cc.email_column, cc.mx_column, cc.relation::text,
         cc.sent_column_checked, cc.result_column, pool)
    USING day, hold, p.null_run_cap, p.per_op_run_cap, p.name, quota;
END
$f$;
