#!/bin/bash
# Benchmark of pw.select_sendable_carriers() against the plain-SQL reference
# (test/reference_select.sql: window functions over the whole candidate pool)
# on generated carriers, on a throwaway cluster.  Prints figures; not a test.
#
#   make temp-install && bench/select_bench.sh      (as root it re-runs as postgres)
#
#   PW_BENCH_CARRIERS  carriers to generate (default 1600000)
#   PW_BENCH_QUOTA     quota of a run (default 2400)
#   PW_BENCH_RUNS      timed runs of the C function per case (default 31)
#   PW_BENCH_REF_RUNS  timed runs of the reference per case (default 5)
#   PW_BENCH_KEEP=1    leave the cluster directory behind
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
. "$SRC/test/lib/cluster.sh"
pw_run_as_postgres "$@"
pw_use_private_install

CARRIERS="${PW_BENCH_CARRIERS:-1600000}"
QUOTA="${PW_BENCH_QUOTA:-2400}"
RUNS="${PW_BENCH_RUNS:-31}"
REF_RUNS="${PW_BENCH_REF_RUNS:-5}"

pw_cluster_start select_bench "${PW_BENCH_KEEP:-0}" <<'EOF'
shared_buffers = 512MB
EOF
echo "== throwaway cluster in $WORK (port $PORT)"
psql_q -c 'CREATE EXTENSION pw_deliverability'
psql_q -f "$SRC/test/generate_carriers.sql"
psql_q -f "$SRC/test/reference_select.sql"

echo "== generating $CARRIERS carriers"
start=$(date +%s.%N)
psql_q -c "SELECT pw_generate_carriers($CARRIERS, seed => 42)" >/dev/null
printf 'generated in %.1f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"

# default: smtp_valid + send_confirmed (the recovery-mode pool, small);
# catchall: the same plus catch_all_domain (CAMPAIGN_INCLUDE_CATCH_ALL=1,
# most of the unsent pool)
psql_q <<'EOF'
INSERT INTO pw.profiles (name, warmup_start, include_catch_all, note)
VALUES ('catchall', current_date, true, 'default + catch_all_domain');
INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap)
SELECT 'catchall', op_class, from_day, daily_cap FROM pw.warmup_ramp WHERE profile = 'default';
EOF

echo "== selection indexes"
for p in default catchall; do
	psql_q -At -c "SELECT * FROM pw.create_selection_indexes('$p')"
done
psql_q -c 'VACUUM ANALYZE fmcsa_carriers'

psql_q -At <<'EOF'
SELECT 'candidates (unsent, in pool): default ' ||
       count(*) FILTER (WHERE email_verify_result IN ('smtp_valid', 'send_confirmed')) ||
       ', catchall ' ||
       count(*) FILTER (WHERE email_verify_result IN ('smtp_valid', 'send_confirmed', 'catch_all_domain')) ||
       '; sent today ' || (SELECT count(*) FROM fmcsa_carriers WHERE listmonk_sent_at >= current_date)
  FROM fmcsa_carriers WHERE listmonk_sent_at IS NULL;
EOF

psql_q -f "$SRC/bench/median.sql"

echo
echo "== median latency of a run of $QUOTA (C: $RUNS runs, reference: $REF_RUNS runs)"
printf '%-9s %4s %9s %12s %14s %8s %6s\n' profile day selected 'C ms' 'reference ms' ratio same
for p in default catchall; do
	for d in 17 45; do
		line=$(psql_q -At -F ' ' <<EOF
SELECT (SELECT count(*) FROM pw.select_sendable_carriers($QUOTA, '$p', $d)),
       pw_bench_median('SELECT count(*) FROM pw.select_sendable_carriers($QUOTA, ''$p'', $d)', $RUNS),
       pw_bench_median('SELECT count(*) FROM pw_reference_select($QUOTA, ''$p'', $d)', $REF_RUNS),
       NOT EXISTS (SELECT * FROM pw.select_sendable_carriers($QUOTA, '$p', $d)
                   EXCEPT ALL SELECT * FROM pw_reference_select($QUOTA, '$p', $d))
       AND NOT EXISTS (SELECT * FROM pw_reference_select($QUOTA, '$p', $d)
                       EXCEPT ALL SELECT * FROM pw.select_sendable_carriers($QUOTA, '$p', $d));
EOF
)
		read -r sel cms rms same <<<"$line"
		printf '%-9s %4s %9s %12s %14s %7.1fx %6s\n' "$p" "$d" "$sel" "$cms" "$rms" \
			"$(echo "$rms / $cms" | bc -l)" "$same"
	done
done

echo
echo "== worst cases (C only, median of 5 runs): the whole candidate pool is read"
echo "   quota 1000000: every allowance of the day is taken"
for p in default catchall; do
	for d in 17 45; do
		psql_q -At -F ' ' -c "SELECT '   $p day $d: selected ' || (SELECT count(*) FROM pw.select_sendable_carriers(1000000, '$p', $d)),
		       pw_bench_median('SELECT count(*) FROM pw.select_sendable_carriers(1000000, ''$p'', $d)', 5) || ' ms'"
	done
done
echo "   capped: the catchall pool with every operator at daily cap 0 and no untagged"
echo "   bucket, so nothing qualifies (every candidate is looked at and skipped)"
psql_q -At -F ' ' <<'EOF'
INSERT INTO pw.profiles (name, warmup_start, include_catch_all, null_run_cap)
VALUES ('capped', current_date, true, 0);
INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap) VALUES ('capped', 'default', 1, 0);
SELECT '   capped day 17: selected ' || (SELECT count(*) FROM pw.select_sendable_carriers(2400, 'capped', 17)),
       pw_bench_median('SELECT count(*) FROM pw.select_sendable_carriers(2400, ''capped'', 17)', 5) || ' ms';
EOF

echo
echo "== with the reputation brake: bench/outcomes.sql (three days of outcomes for"
echo "   every operator, 2% over the bounce threshold, 3% over the deferral one)"
psql_q -f "$SRC/bench/outcomes.sql" >/dev/null
psql_q -At -c "SELECT '   braked (default): ' || count(*) FILTER (WHERE action = 'paused') || ' paused, '
       || count(*) FILTER (WHERE action = 'slowed') || ' slowed of ' || count(*) || ' operators'
  FROM pw.brake_status('default')"
printf '   %-9s %4s %9s %12s\n' profile day selected 'C ms'
for p in default catchall; do
	for d in 17 45; do
		psql_q -At -F ' ' -c "SELECT (SELECT count(*) FROM pw.select_sendable_carriers($QUOTA, '$p', $d)),
		       pw_bench_median('SELECT count(*) FROM pw.select_sendable_carriers($QUOTA, ''$p'', $d)', $RUNS)" |
			while read -r sel cms; do printf '   %-9s %4s %9s %12s\n' "$p" "$d" "$sel" "$cms"; done
	done
done
for q in "pw.brake_status('default')" "pw.braked_operators"; do
	printf '   %-40s %8s ms\n' "SELECT * FROM $q" \
		"$(psql_q -At -c "SELECT pw_bench_median('SELECT count(*) FROM $(echo "$q" | sed "s/'/''/g")', $RUNS)")"
done
psql_q -c 'DELETE FROM pw.maillog_daily' >/dev/null

echo
echo "== plan of the C function's candidate scan (catchall, day 17, first batch)"
(psql_q <<EOF
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET client_min_messages = log;
SET auto_explain.log_level = notice;
SELECT count(*) FROM pw.select_sendable_carriers($QUOTA, 'catchall', 17);
EOF
) 2>&1 | awk '/Query Text: SELECT c\..*::int8, /{p=1} /^NOTICE/{if (p) exit} p' | cut -c1-160
