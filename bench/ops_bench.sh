#!/bin/bash
# Benchmark of the operations layer on generated carriers, on a throwaway
# cluster: pw.report(), pw.brake_status()/pw.braked_operators over a window
# of outcomes for every operator, and the cost of the brake in a selection
# (brake_enabled on vs off).  Prints figures; not a test.
#
#   make temp-install && bench/ops_bench.sh      (as root it re-runs as postgres)
#
#   PW_BENCH_CARRIERS  carriers to generate (default 1600000)
#   PW_BENCH_RUNS      timed runs per query (default 11)
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(id -u)" = 0 ]; then
	chown -R postgres: "$SRC"
	exec runuser -u postgres -- env PW_BENCH_CARRIERS="${PW_BENCH_CARRIERS:-}" \
		PW_BENCH_RUNS="${PW_BENCH_RUNS:-}" "$0" "$@"
fi

BINDIR="$SRC/tmp_install$(pg_config --bindir)"
if [ ! -x "$BINDIR/postgres" ]; then
	echo "no private installation in $SRC/tmp_install: run 'make temp-install' first" >&2
	exit 1
fi
export PATH="$BINDIR:$PATH"

CARRIERS="${PW_BENCH_CARRIERS:-1600000}"
RUNS="${PW_BENCH_RUNS:-11}"
WORK="$(mktemp -d /tmp/pw_ops_bench.XXXXXX)"
PGDATA="$WORK/data"
PORT=$((20000 + RANDOM % 20000))
export PGHOST="$WORK" PGPORT="$PORT" PGDATABASE=postgres PGUSER=postgres

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
	pg_ctl -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "== throwaway cluster in $WORK (port $PORT)"
initdb -D "$PGDATA" -A trust -U postgres >/dev/null
cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
shared_preload_libraries = 'pw_deliverability'
shared_buffers = 512MB
EOF
pg_ctl -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
psql_q -c 'CREATE EXTENSION pw_deliverability'
psql_q -f "$SRC/test/generate_carriers.sql"

echo "== generating $CARRIERS carriers"
psql_q -c "SELECT pw_generate_carriers($CARRIERS, seed => 42)" >/dev/null
psql_q -At -c "SELECT * FROM pw.create_selection_indexes('default')" >/dev/null
psql_q -c 'VACUUM ANALYZE fmcsa_carriers'

# three days of outcomes for every operator: 2% of them over the bounce
# threshold, 3% over the deferral threshold
psql_q -At <<'EOF'
INSERT INTO pw.maillog_daily (day, mx_provider, profile, sent, deferred, bounced)
SELECT current_date - d, l.mx, '', 100,
       CASE WHEN l.n % 33 = 1 THEN 40 ELSE 2 END,
       CASE WHEN l.n % 50 = 0 THEN 20 ELSE 1 END
  FROM (SELECT mx_provider AS mx, row_number() OVER (ORDER BY mx_provider) AS n
          FROM (SELECT DISTINCT mx_provider FROM fmcsa_carriers WHERE mx_provider IS NOT NULL) x) l,
       generate_series(0, 2) AS d;
SELECT 'operators with outcomes: ' || count(DISTINCT mx_provider) || ', rows ' || count(*)
  FROM pw.maillog_daily;
SELECT 'braked (default): ' || count(*) FILTER (WHERE action = 'paused') || ' paused, '
       || count(*) FILTER (WHERE action = 'slowed') || ' slowed'
  FROM pw.braked_operators WHERE profile = 'default';
EOF

psql_q <<'EOF'
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
EOF

echo
echo "== median ms over $RUNS runs"
bench() {
	printf '%-62s %10s\n' "$1" "$(psql_q -At -c "SELECT pw_bench_median(\$q\$$2\$q\$, $RUNS)")"
}
bench "pw.report('default') ($CARRIERS carriers)" "SELECT count(*) FROM pw.report('default')"
bench "  of which SELECT * FROM pw.mx_backlog" "SELECT count(*) FROM pw.mx_backlog"
bench "pw.brake_status('default')" "SELECT count(*) FROM pw.brake_status('default')"
bench "SELECT * FROM pw.braked_operators (all profiles)" "SELECT count(*) FROM pw.braked_operators"
for day in 17 45; do
	bench "select_sendable_carriers(2400, day $day), brake on" \
		"SELECT count(*) FROM pw.select_sendable_carriers(2400, 'default', $day)"
	psql_q -c "UPDATE pw.profiles SET brake_enabled = false WHERE name = 'default'"
	bench "select_sendable_carriers(2400, day $day), brake off" \
		"SELECT count(*) FROM pw.select_sendable_carriers(2400, 'default', $day)"
	psql_q -c "UPDATE pw.profiles SET brake_enabled = true WHERE name = 'default'"
done
