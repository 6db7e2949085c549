-- Three days of outcomes (pw.maillog_daily) for every operator of the
-- generated carriers: 2% of them over the bounce threshold, 3% over the
-- deferral threshold.  Used by the benchmarks of the reputation brake.
INSERT INTO pw.maillog_daily (day, mx_provider, profile, sent, deferred, bounced)
SELECT current_date - d, l.mx, '', 100,
       CASE WHEN l.n % 33 = 1 THEN 40 ELSE 2 END,
       CASE WHEN l.n % 50 = 0 THEN 20 ELSE 1 END
  FROM (SELECT mx_provider AS mx, row_number() OVER (ORDER BY mx_provider) AS n
          FROM (SELECT DISTINCT mx_provider FROM fmcsa_carriers WHERE mx_provider IS NOT NULL) x) l,
       generate_series(0, 2) AS d;
-- statistics now, not when autovacuum gets to it: the brake's plans depend on them
ANALYZE pw.maillog_daily;
