#!/bin/bash
# Mail-log reading and ingestion throughput, on a throwaway cluster.
#
#   make temp-install && bench/maillog_bench.sh      (as the postgres user;
#                                                     as root it re-runs itself so)
#
# Prints lines/s and MB/s of
#   - wc -l on a generated mail.log (the read ceiling),
#   - the C parser alone (bench/maillog_parse_only.c, no PostgreSQL),
#   - SELECT count(*) FROM pw.read_maillog(...),
#   - file_fdw + regexp_match in SQL (the baseline it replaces),
# and the throughput of pw.ingest_maillog() writing back into generated
# carriers.  Not part of `make test`.
#
#   PW_BENCH_LINES     lines of the generated log (default 1000000)
#   PW_BENCH_CARRIERS  carriers for the ingest run (default 1600000)
#   PW_BENCH_RUNS      timed runs of each read, best one kept (default 3)
#   PW_BENCH_SKIP_READ set to 1 to time only the ingest
#   PW_BENCH_KEEP=1    leave the cluster directory behind
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
. "$SRC/test/lib/cluster.sh"
pw_run_as_postgres "$@"
pw_use_private_install

LINES="${PW_BENCH_LINES:-1000000}"
CARRIERS="${PW_BENCH_CARRIERS:-1600000}"
RUNS="${PW_BENCH_RUNS:-3}"
SKIP_READ="${PW_BENCH_SKIP_READ:-0}"

now() { date +%s.%N; }
# rate COUNT SECONDS -> "N/s"
rate() { echo "$1 $2" | awk '{ printf "%.0f", $1 / $2 }'; }
mb() { echo "$1 $2" | awk '{ printf "%.1f", $1 / 1048576 / $2 }'; }
report() {	# name seconds lines bytes
	printf '%-34s %8.3f s  %12s lines/s  %8s MB/s\n' "$1" "$2" "$(rate "$3" "$2")" "$(mb "$4" "$2")"
}
# best wall time of RUNS runs of a SQL statement
best_sql() {
	local best=""
	for _ in $(seq "$RUNS"); do
		local t0 t1 d
		t0=$(now)
		psql_q -c "$1" >/dev/null
		t1=$(now)
		d=$(echo "$t1 $t0" | awk '{ printf "%.6f", $1 - $2 }')
		if [ -z "$best" ] || awk "BEGIN { exit !($d < $best) }"; then best=$d; fi
	done
	echo "$best"
}

pw_cluster_start maillog_bench "${PW_BENCH_KEEP:-0}" <<'EOF'
pw_deliverability.maillog_directory = '@WORK@'
shared_buffers = 1GB
max_wal_size = 4GB
EOF
chmod 0755 "$WORK"
psql_q -c 'CREATE EXTENSION pw_deliverability' -c 'CREATE EXTENSION file_fdw'

echo "== generating a $LINES-line mail.log"
perl "$SRC/test/gen_maillog.pl" "$LINES" 1 > "$WORK/mail.log"
BYTES=$(stat -c %s "$WORK/mail.log")
NLINES=$(wc -l < "$WORK/mail.log")
EVENTS=$(grep -c 'status=' "$WORK/mail.log")
printf '%d lines, %.1f MB, %d delivery-status lines\n' "$NLINES" "$(echo "$BYTES" | awk '{print $1/1048576}')" "$EVENTS"

if [ "$SKIP_READ" != 1 ]; then
echo
echo "== reading (best of $RUNS)"
best=""
for _ in $(seq "$RUNS"); do
	t0=$(now); wc -l "$WORK/mail.log" >/dev/null; t1=$(now)
	d=$(echo "$t1 $t0" | awk '{ printf "%.6f", $1 - $2 }')
	if [ -z "$best" ] || awk "BEGIN { exit !($d < $best) }"; then best=$d; fi
done
report "wc -l" "$best" "$NLINES" "$BYTES"

psql_q -c "SELECT count(*) FROM pw.read_maillog('mail.log')" >/dev/null	# warm the cache
t_read=$(best_sql "SELECT count(*) FROM pw.read_maillog('mail.log')")
report "pw.read_maillog count(*)" "$t_read" "$NLINES" "$BYTES"
# the parser alone, outside PostgreSQL (best of 10 runs over the file in memory)
gcc -O2 -I"$SRC/src" -o "$WORK/parse_only" "$SRC/bench/maillog_parse_only.c" "$SRC/src/maillog/maillog_parse.c"
read -r t_parse _ _ < <("$WORK/parse_only" "$WORK/mail.log" 10)
report "parser alone (C, no PostgreSQL)" "$t_parse" "$NLINES" "$BYTES"

psql_q -c "CREATE SERVER logs FOREIGN DATA WRAPPER file_fdw" \
	-c "CREATE FOREIGN TABLE maillog_lines (line text) SERVER logs
	    OPTIONS (filename '$WORK/mail.log', format 'text', delimiter E'\x01', null E'\x02')"
# The SQL baselines: every field read_maillog returns (status lines only,
# prefiltered with LIKE), and the cheapest useful one (recipient, dsn, status).
REGEX_FULL='^(\S+ +\S+ \S+) (\S+) ([^[ ]+)\[(\d+)\]: (\w+): to=<([^>]*)>, (?:orig_to=<([^>]*)>, )?relay=([^,]*), delay=([^,]*), delays=[^,]*, dsn=([^,]*), status=(\w+) (.*)$'
REGEX_MIN='to=<([^>]*)>.* dsn=([^,]*), status=(\w+)'
# timed_count SQL -> sets T (seconds) and N (the count it printed); one run
timed_count() {
	local t0 t1
	t0=$(now)
	N=$(psql_q -At -c "$1")
	t1=$(now)
	T=$(echo "$t1 $t0" | awk '{ printf "%.6f", $1 - $2 }')
}
timed_count "SELECT count(*) FROM (SELECT regexp_match(line, '$REGEX_FULL') AS m FROM maillog_lines WHERE line LIKE '%status=%') x WHERE m IS NOT NULL"
t_full=$T; n_full=$N
report "file_fdw + regexp_match, 12 fields" "$t_full" "$NLINES" "$BYTES"
timed_count "SELECT count(*) FROM (SELECT regexp_match(line, '$REGEX_MIN') AS m FROM maillog_lines) x WHERE m IS NOT NULL"
t_min=$T; n_min=$N
report "file_fdw + regexp_match, 3 fields" "$t_min" "$NLINES" "$BYTES"
echo "rows: read_maillog $(psql_q -At -c "SELECT count(*) FROM pw.read_maillog('mail.log')"), 12-field regexp $n_full," \
	"3-field regexp $n_min (the regexps skip the qmgr expiry lines)"
printf 'read_maillog is %.0fx the 12-field and %.0fx the 3-field SQL-regex baseline\n' \
	"$(echo "$t_full $t_read" | awk '{print $1/$2}')" "$(echo "$t_min $t_read" | awk '{print $1/$2}')"
fi

echo
echo "== ingest with writeback into $CARRIERS carriers"
psql_q -f "$SRC/test/generate_carriers.sql"
t0=$(now)
psql_q -c "SELECT pw_generate_carriers($CARRIERS, seed => 42)" >/dev/null
psql_q -c "SELECT pw.create_writeback_index()" -c "VACUUM ANALYZE fmcsa_carriers" >/dev/null
printf 'carriers generated and indexed in %.1f s\n' "$(echo "$(now) $t0" | awk '{print $1 - $2}')"
psql_q -c "COPY (SELECT email FROM fmcsa_carriers WHERE email LIKE '%_@_%' ORDER BY id) TO '$WORK/addresses.txt'"
PW_ADDRESSES="$WORK/addresses.txt" perl "$SRC/test/gen_maillog.pl" "$LINES" 2 > "$WORK/ingest.log"
IBYTES=$(stat -c %s "$WORK/ingest.log")
INLINES=$(wc -l < "$WORK/ingest.log")
psql_q -c "CHECKPOINT"
t0=$(now)
psql_q -c "SELECT * FROM pw.ingest_maillog('ingest.log')"
t1=$(now)
report "pw.ingest_maillog (first load)" "$(echo "$t1 $t0" | awk '{print $1 - $2}')" "$INLINES" "$IBYTES"
psql_q -c "SELECT count(*) AS deliveries, count(*) FILTER (WHERE in_carriers) AS carriers
             FROM pw.deliveries"

# A second log over the same addresses: deliveries are updated, not inserted.
PW_ADDRESSES="$WORK/addresses.txt" perl "$SRC/test/gen_maillog.pl" "$LINES" 2 > "$WORK/again.log"
psql_q -c "CHECKPOINT"
t0=$(now)
psql_q -c "SELECT lines, events, carriers_bounced FROM pw.ingest_maillog('again.log')" >/dev/null
t1=$(now)
report "pw.ingest_maillog (known addresses)" "$(echo "$t1 $t0" | awk '{print $1 - $2}')" "$INLINES" "$IBYTES"

t0=$(now)
n=$(psql_q -At -c "SELECT pw.confirm_deliveries(older_than => '0 seconds')")
t1=$(now)
printf '%-34s %8.3f s  %s carriers confirmed\n' "pw.confirm_deliveries" "$(echo "$t1 $t0" | awk '{print $1 - $2}')" "$n"
