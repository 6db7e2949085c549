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
#   PW_BENCH_KEEP=1    leave the cluster directory behind
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
. "$SRC/test/lib/cluster.sh"
pw_run_as_postgres "$@"
pw_use_private_install

CARRIERS="${PW_BENCH_CARRIERS:-1600000}"
RUNS="${PW_BENCH_RUNS:-11}"

pw_cluster_start ops_bench "${PW_BENCH_KEEP:-0}" <<'EOF'
shared_buffers = 512MB
EOF
echo "== throwaway cluster in $WORK (port $PORT)"
psql_q -c 'CREATE EXTENSION pw_deliverability'
psql_q -f "$SRC/test/generate_carriers.sql"

echo "== generating $CARRIERS carriers"
psql_q -c "SELECT pw_generate_carriers($CARRIERS, seed => 42)" >/dev/null
psql_q -At -c "SELECT * FROM pw.create_selection_indexes('default')" >/dev/null
psql_q -c 'VACUUM ANALYZE fmcsa_carriers'

psql_q -f "$SRC/bench/outcomes.sql" >/dev/null
psql_q -At <<'EOF'
SELECT 'operators with outcomes: ' || count(DISTINCT mx_provider) || ', rows ' || count(*)
  FROM pw.maillog_daily;
SELECT 'braked (default): ' || count(*) FILTER (WHERE action = 'paused') || ' paused, '
       || count(*) FILTER (WHERE action = 'slowed') || ' slowed'
  FROM pw.braked_operators WHERE profile = 'default';
EOF

psql_q -f "$SRC/bench/median.sql"

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
