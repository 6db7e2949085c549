#!/bin/bash
# Soak of the daily loop: every job side by side on generated carriers for
# MINUTES, on a throwaway cluster: the background tagger (against a loopback
# DNS server serving the sample domains), pw.mx_tag() in small batches,
# ingests of a growing mail log, confirmations and claimers
# (test/soak.pl runs all but the tagger).  Prints each job's steps, errors
# and work, the tagger's progress, and the errors the server logged
# (deadlocks and serialization failures counted apart); exits 1 if any.
# A benchmark script, not a test (TAP 076 runs a shorter soak).
#
#   make temp-install && bench/soak.sh [MINUTES]     (as root it re-runs as postgres)
#
#   MINUTES             minutes of soak (default 5)
#   PW_SOAK_CARRIERS    carriers to generate (default 1600000)
#   PW_SOAK_CLAIMERS    concurrent claimers (default 2)
#   PW_SOAK_QPS         the tagger's and pw.mx_tag()'s dns_max_qps (default 300)
#   PW_SOAK_LOG_LINES   lines of the generated mail log (default 400000 a minute)
#   PW_SOAK_KEEP=1      leave the cluster directory behind
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
. "$SRC/test/lib/cluster.sh"
pw_run_as_postgres "$@"
pw_use_private_install

MINUTES="${1:-5}"
CARRIERS="${PW_SOAK_CARRIERS:-1600000}"
QPS="${PW_SOAK_QPS:-300}"
export PW_SOAK_LOG_LINES="${PW_SOAK_LOG_LINES:-$((400000 * MINUTES))}"

pw_cluster_start soak "${PW_SOAK_KEEP:-0}" <<'EOF2'
shared_buffers = 512MB
timezone = 'UTC'
log_lock_waits = on
deadlock_timeout = '200ms'
log_line_prefix = '%m [%p] %a '
pw_deliverability.database = 'postgres'
pw_deliverability.worker_enabled = off
pw_deliverability.worker_naptime = 1
pw_deliverability.worker_batch = 1000
pw_deliverability.dns_servers = '127.0.0.1:9'
pw_deliverability.maillog_directory = '@WORK@/maillog'
EOF2
mkdir "$WORK/maillog"
export PGTZ=UTC
echo "== throwaway cluster in $WORK (port $PORT)"
psql_q -c 'CREATE EXTENSION pw_deliverability'
psql_q -f "$SRC/test/generate_carriers.sql"

echo "== generating $CARRIERS carriers and the indexes"
start=$(date +%s.%N)
psql_q -c "SELECT pw_generate_carriers($CARRIERS, seed => 42)" >/dev/null
psql_q -c 'SELECT pw.create_tagging_index(), pw.create_writeback_index()' >/dev/null
printf 'done in %.1f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"

echo "== loopback DNS server for the sample domains"
psql_q -c "\\copy (SELECT domain, true_label, mx_host FROM pw_sample_domains) TO '$WORK/domains.tsv'"
pw_start_net "$WORK/domains.tsv" dns
echo "DNS $DNS_SERVERS ($(wc -l <"$WORK/domains.tsv") domains)"
psql_q -c "ALTER SYSTEM SET pw_deliverability.dns_servers = '$DNS_SERVERS'" \
	-c "ALTER SYSTEM SET pw_deliverability.dns_max_qps = $QPS" \
	-c 'ALTER SYSTEM SET pw_deliverability.worker_enabled = on' -c 'SELECT pg_reload_conf()' >/dev/null
psql_q -c 'SELECT * FROM pw.mx_backlog'

echo "== soak: every job for $MINUTES minutes"
start=$(date +%s.%N)
rc=0
perl "$SRC/test/soak.pl" $((MINUTES * 60)) "$WORK/maillog" "$WORK/postgres.log" || rc=$?
printf 'soak took %.0f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"
psql_q -c 'SELECT * FROM pw.mx_backlog'
exit "$rc"
