#!/bin/bash
# Load test of claiming: 8 concurrent claimers call
# pw.select_sendable_carriers(..., claim => true) for DURATION seconds against
# generated carriers, on a throwaway cluster; then checks that no carrier was
# claimed twice, that no operator went over its daily cap, and that no
# deadlock or other error happened, and prints throughput and latency.
# A benchmark script, not a test (not part of make test).
#
#   make temp-install && bench/claim_load.sh [DURATION]     (as root it re-runs as postgres)
#
#   DURATION            seconds of claiming (default 600)
#   PW_LOAD_CLIENTS     concurrent claimers (default 8)
#   PW_LOAD_CARRIERS    carriers to generate (default 1600000)
#   PW_LOAD_DAY_SECONDS length of a simulated day (default 45): every that
#                       many seconds the claims of "today" are moved to a
#                       past day of their own, so the daily caps open again
#   PW_LOAD_KEEP=1      leave the cluster directory behind
#
# Every claim is logged (carrier id, claimer, time) in the same transaction
# as the claim; every call (claimer, rows, latency inside the server) too.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
. "$SRC/test/lib/cluster.sh"
pw_run_as_postgres "$@"
pw_use_private_install

DURATION="${1:-600}"
CLIENTS="${PW_LOAD_CLIENTS:-8}"
CARRIERS="${PW_LOAD_CARRIERS:-1600000}"
DAY="${PW_LOAD_DAY_SECONDS:-45}"

ROLLER=
pw_on_exit 'if [ -n "$ROLLER" ]; then kill "$ROLLER" 2>/dev/null; fi'
pw_cluster_start claim_load "${PW_LOAD_KEEP:-0}" <<'EOF'
shared_buffers = 512MB
timezone = 'UTC'
log_lock_waits = on
log_line_prefix = '%m [%p] %a '
EOF
export PGTZ=UTC
echo "== throwaway cluster in $WORK (port $PORT)"
psql_q -c 'CREATE EXTENSION pw_deliverability'
psql_q -f "$SRC/test/generate_carriers.sql"

echo "== generating $CARRIERS carriers (10% already sent)"
start=$(date +%s.%N)
psql_q -c "SELECT pw_generate_carriers($CARRIERS, seed => 42, sent_fraction => 0.1)" >/dev/null
printf 'generated in %.1f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"

# The load profile: catch-all included, nothing held out (warmup day 101),
# 50 per operator and 10 untagged per run; daily caps: big 2000,
# consumer 1000, every other operator 10, the same on every day.
psql_q <<'SQL'
INSERT INTO pw.profiles (name, warmup_start, include_catch_all, skip_big_mx,
                         per_op_run_cap, null_run_cap, default_daily_cap, note)
VALUES ('load', current_date - 100, true, false, 50, 10, 10, 'bench/claim_load.sh');
INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap) VALUES
    ('load', 'big', 1, 2000), ('load', 'consumer', 1, 1000), ('load', 'default', 1, 10);

CREATE TABLE bench_state (day integer NOT NULL);
INSERT INTO bench_state VALUES (0);
-- no unique key on purpose: a carrier claimed twice must show, not fail
CREATE UNLOGGED TABLE claim_log (carrier_id bigint NOT NULL, claimer integer NOT NULL,
                                 claimed_at timestamptz NOT NULL, mx text, bucket text);
CREATE UNLOGGED TABLE call_log (claimer integer NOT NULL, started_at timestamptz NOT NULL,
                                ms float8 NOT NULL, quota integer NOT NULL, claimed integer NOT NULL);

-- One call of a claimer: claims up to "quota" carriers and logs them, in
-- the caller's transaction.
CREATE FUNCTION bench_claim(claimer integer, quota integer) RETURNS integer
LANGUAGE plpgsql AS
$$
DECLARE
    t0 timestamptz := clock_timestamp();
    n  integer;
BEGIN
    INSERT INTO claim_log
    SELECT s.carrier_id, claimer, clock_timestamp(), s.mx_provider, s.bucket
      FROM pw.select_sendable_carriers(quota, 'load', NULL, true) s;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO call_log
    VALUES (claimer, t0, extract(epoch FROM clock_timestamp() - t0) * 1000, quota, n);
    RETURN n;
END
$$;
SQL
psql_q -At -c "SELECT * FROM pw.create_selection_indexes('load')" >/dev/null
psql_q -c 'VACUUM ANALYZE fmcsa_carriers'
psql_q -At <<'SQL'
SELECT 'pool (unsent, sendable under profile load): ' ||
       count(*) FILTER (WHERE email_verify_result = ANY (pw.profile_pool('load'))) ||
       ' of ' || count(*) || ' carriers; operators in the pool: ' ||
       count(DISTINCT mx_provider) FILTER (WHERE email_verify_result = ANY (pw.profile_pool('load')))
  FROM fmcsa_carriers WHERE listmonk_sent_at IS NULL;
SQL
BASELINE=$(psql_q -At -c "SELECT count(*) FROM fmcsa_carriers WHERE listmonk_sent_at IS NOT NULL")

cat >"$WORK/claim.sql" <<'PGB'
\set quota random(50, 500)
SELECT bench_claim(:client_id, :quota);
PGB

# The day roller: every DAY seconds, today's claims move to a past day of
# their own (1000 + n days back), so that the caps of "today" are free again.
roll_days() {
	while sleep "$DAY"; do
		psql -X -q -At -c "BEGIN;
			UPDATE fmcsa_carriers SET listmonk_sent_at = listmonk_sent_at
			       - make_interval(days => 1000 + (SELECT day FROM bench_state))
			 WHERE listmonk_sent_at >= current_date;
			UPDATE bench_state SET day = day + 1;
			COMMIT;" >>"$WORK/roller.log" 2>&1 || echo "roller failed" >>"$WORK/roller.log"
	done
}
roll_days &
ROLLER=$!

echo "== $CLIENTS claimers for $DURATION s (quota 50-500 a call; a simulated day every $DAY s)"
pgbench -n -c "$CLIENTS" -j 2 -T "$DURATION" -f "$WORK/claim.sql" --failures-detailed \
	>"$WORK/pgbench.out" 2>&1 || true
kill "$ROLLER" 2>/dev/null || true
wait "$ROLLER" 2>/dev/null || true
ROLLER=
grep -E 'number of (transactions|failed)|latency average|tps|aborted|error' "$WORK/pgbench.out" | sed 's/^/pgbench: /'

echo
echo "== checks"
fail=0
check() {	# name, query returning the number of violations, detail query
	local n
	n=$(psql_q -At -c "$2")
	if [ "$n" = 0 ]; then echo "ok    $1"; else echo "FAIL  $1: $n"; fail=1; fi
}
check "no carrier claimed twice" \
	"SELECT count(*) - count(DISTINCT carrier_id) FROM claim_log"
check "every claim is logged (sent rows - baseline = logged claims)" \
	"SELECT (SELECT count(*) FROM fmcsa_carriers WHERE listmonk_sent_at IS NOT NULL) - $BASELINE
	        - (SELECT count(*) FROM claim_log)"
check "every logged claim is marked sent" \
	"SELECT count(*) FROM claim_log l JOIN fmcsa_carriers c ON c.id = l.carrier_id
	  WHERE c.listmonk_sent_at IS NULL"
check "no operator over its daily cap (operator x simulated day)" \
	"SELECT count(*) FROM (
	   SELECT c.mx_provider, c.listmonk_sent_at::date AS d, count(*) AS n
	     FROM claim_log l JOIN fmcsa_carriers c ON c.id = l.carrier_id
	    WHERE c.mx_provider IS NOT NULL
	    GROUP BY 1, 2) x
	  WHERE n > pw.daily_cap('load', x.mx_provider, 101)"
deadlocks=$(grep -c 'deadlock detected' "$WORK/postgres.log" || true)
errors=$(grep -c ' ERROR: ' "$WORK/postgres.log" || true)
if [ "$deadlocks" = 0 ]; then echo "ok    no deadlock in the server log"; else echo "FAIL  deadlocks: $deadlocks"; fail=1; fi
if [ "$errors" = 0 ]; then echo "ok    no ERROR in the server log"; else echo "FAIL  errors in the server log: $errors"; grep ' ERROR: ' "$WORK/postgres.log" | sort | uniq -c | head; fail=1; fi
if grep -q 'roller failed' "$WORK/roller.log" 2>/dev/null; then echo "FAIL  the day roller failed"; fail=1; fi

printf 'errors per claimer (pgbench):'
for ((c = 0; c < CLIENTS; c++)); do
	printf ' %d=%d' "$c" "$(grep -c "^client $c " "$WORK/pgbench.out" || true)"
done
echo

echo
echo "== figures"
psql_q -At -F ' ' <<SQL
SELECT 'simulated days: ' || (SELECT day FROM bench_state) + 1;
SELECT 'operator x day pairs that reached their cap exactly: ' || count(*) FILTER (WHERE n = cap)
       || ' of ' || count(*) || ' (' || count(DISTINCT mx_provider) FILTER (WHERE n = cap) || ' operators)'
  FROM (SELECT c.mx_provider, c.listmonk_sent_at::date, count(*) AS n,
               pw.daily_cap('load', c.mx_provider, 101) AS cap
          FROM claim_log l JOIN fmcsa_carriers c ON c.id = l.carrier_id
         WHERE c.mx_provider IS NOT NULL GROUP BY 1, 2) x;
SELECT format('claims: %s in %s calls (%s calls returned nothing); %s claims/s, %s calls/s',
              sum(claimed), count(*), count(*) FILTER (WHERE claimed = 0),
              round(sum(claimed) / $DURATION::numeric, 1), round(count(*) / $DURATION::numeric, 1))
  FROM call_log;
SELECT format('claims per claimer: %s',
              string_agg(format('%s=%s', claimer, n), ' ' ORDER BY claimer))
  FROM (SELECT claimer, sum(claimed) AS n FROM call_log GROUP BY 1) x;
SELECT format('call latency in the server (ms): p50 %s  p90 %s  p99 %s  max %s',
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(max(ms)::numeric, 1))
  FROM call_log;
SELECT format('wall time per call (%s claimers share one claim lock per sent column): %s ms',
              $CLIENTS, round($DURATION * 1000.0 / count(*), 1))
  FROM call_log;
SELECT format('claims by bucket: %s', string_agg(format('%s=%s', b, n), ' ' ORDER BY n DESC))
  FROM (SELECT CASE WHEN l.mx IS NULL THEN 'untagged'
                    ELSE coalesce(o.op_class, 'default') END AS b, count(*) AS n
          FROM claim_log l LEFT JOIN pw.operators o ON o.label = l.mx GROUP BY 1) x;
SELECT 'pool left unsent: ' || count(*) FROM fmcsa_carriers
 WHERE listmonk_sent_at IS NULL AND email_verify_result = ANY (pw.profile_pool('load'));
SQL
exit $fail
