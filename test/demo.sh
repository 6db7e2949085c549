#!/bin/bash
# The main job end to end on the embedded default: a throwaway cluster, sample
# carriers, and the report.  Run through `make demo`, which builds a private
# installation (tmp_install/) and puts its binaries first on PATH.
#
#   PW_DEMO_CARRIERS   carriers to generate (default 200000)
#   PW_DEMO_KEEP=1     leave the cluster directory behind for inspection
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
CARRIERS="${PW_DEMO_CARRIERS:-200000}"
WORK="$(mktemp -d /tmp/pw_demo.XXXXXX)"
PGDATA="$WORK/data"
PORT="${PW_DEMO_PORT:-$((20000 + RANDOM % 20000))}"
export PGHOST="$WORK" PGPORT="$PORT" PGDATABASE=postgres

step() { printf '\n== %s\n' "$*"; }
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
	pg_ctl -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
	if [ "${PW_DEMO_KEEP:-0}" = 1 ]; then
		echo "cluster left in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

step "throwaway cluster in $WORK (port $PORT)"
initdb -D "$PGDATA" -A trust -U postgres >/dev/null
cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
shared_preload_libraries = 'pw_deliverability'
EOF
pg_ctl -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
psql_q -U postgres -c 'CREATE EXTENSION pw_deliverability'

step "generating $CARRIERS sample carriers"
psql_q -U postgres -f "$SRC/test/generate_carriers.sql"
start=$(date +%s%N)
psql_q -U postgres -c "SELECT pw_generate_carriers($CARRIERS, seed => 42)" >/dev/null
echo "generated in $(( ($(date +%s%N) - start) / 1000000 )) ms"

step "carriers by verification result"
psql_q -U postgres -c "
SELECT email_verify_result AS result, count(*) AS carriers,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct,
       count(*) FILTER (WHERE listmonk_sent_at IS NULL) AS unsent
  FROM fmcsa_carriers GROUP BY 1 ORDER BY 2 DESC"

step "unsent carriers by operator class (all results)"
psql_q -U postgres -c "
SELECT coalesce(pw.operator_class(mx_provider), 'untagged') AS class,
       count(*) AS unsent,
       count(*) FILTER (WHERE email_verify_result = ANY (p.sendable_results)) AS sendable_now,
       count(*) FILTER (WHERE email_verify_result = 'catch_all_domain') AS catch_all,
       count(*) FILTER (WHERE email_verify_result = 'mx_unreachable') AS mx_unreachable
  FROM fmcsa_carriers, pw.profiles p
 WHERE listmonk_sent_at IS NULL AND p.name = 'default'
 GROUP BY 1 ORDER BY 2 DESC"

step "largest operators in the unsent pool"
psql_q -U postgres -c "
SELECT coalesce(mx_provider, '(untagged)') AS operator,
       coalesce(pw.operator_class(mx_provider), '-') AS class, count(*) AS unsent
  FROM fmcsa_carriers WHERE listmonk_sent_at IS NULL
 GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 12"

step "done"
