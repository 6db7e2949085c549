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
if [ "$(id -u)" = 0 ]; then
	chown -R postgres: "$SRC"
	exec runuser -u postgres -- env PW_BENCH_CARRIERS="${PW_BENCH_CARRIERS:-}" \
		PW_BENCH_QUOTA="${PW_BENCH_QUOTA:-}" PW_BENCH_RUNS="${PW_BENCH_RUNS:-}" \
		PW_BENCH_REF_RUNS="${PW_BENCH_REF_RUNS:-}" PW_BENCH_KEEP="${PW_BENCH_KEEP:-}" "$0" "$@"
fi

BINDIR="$SRC/tmp_install$(pg_config --bindir)"
if [ ! -x "$BINDIR/postgres" ]; then
	echo "no private installation in $SRC/tmp_install: run 'make temp-install' first" >&2
	exit 1
fi
export PATH="$BINDIR:$PATH"

CARRIERS="${PW_BENCH_CARRIERS:-1600000}"
QUOTA="${PW_BENCH_QUOTA:-2400}"
RUNS="${PW_BENCH_RUNS:-31}"
REF_RUNS="${PW_BENCH_REF_RUNS:-5}"
WORK="$(mktemp -d /tmp/pw_select_bench.XXXXXX)"
PGDATA="$WORK/data"
PORT=$((20000 + RANDOM % 20000))
export PGHOST="$WORK" PGPORT="$PORT" PGDATABASE=postgres PGUSER=postgres

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
	pg_ctl -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
	if [ "${PW_BENCH_KEEP:-0}" = 1 ]; then echo "cluster left in $WORK"; else rm -rf "$WORK"; fi
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

# Median wall time (ms, inside the server) of a query run n times.
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
