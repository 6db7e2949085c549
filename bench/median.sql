-- pw_bench_median(q, n): the median wall time (ms, inside the server) of n
-- runs of the query q, after one run to warm up.  Used by the benchmarks.
CREATE FUNCTION pw_bench_median(q text, n integer) RETURNS numeric
LANGUAGE plpgsql AS
$$
DECLARE
    t  timestamptz;
    ms numeric[] := '{}';
BEGIN
    EXECUTE q;      -- warm up
    FOR i IN 1 .. n LOOP
        t := clock_timestamp();
        EXECUTE q;
        ms := ms || (extract(epoch FROM clock_timestamp() - t) * 1000)::numeric;
    END LOOP;
    RETURN (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY m)::numeric, 2)
              FROM unnest(ms) AS m);
END
$$;
