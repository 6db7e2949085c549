#!/bin/bash
# Bounce classification: its speed, the engines it could use, and its cost
# inside an ingest, on a throwaway cluster.
#
#   make temp-install && bench/verdict_bench.sh      (as the postgres user;
#                                                     as root it re-runs itself so)
#
# Prints replies/s of
#   - pw.classify_bounce() over realistic replies (the 86 provider replies
#     of test/fixtures/verdict/replies.tsv, repeated with other IPs and ids)
#     and over distinct ones (random text of the same lengths: nothing
#     matches, every rule is tried), beside the cost of the same query
#     calling length() (the SQL ceiling of a per-row function);
#   - PostgreSQL's own regex engine applying the same rules in SQL (the
#     baseline), on a sample;
#   - bench/verdict_engines.c outside PostgreSQL: PCRE2 with JIT rule by
#     rule, and Hyperscan with every pattern in one scan (the candidates);
# and pw.ingest_maillog() on the 1M-line generated log with the shipped
# rules against the same verdicts from rules on the status alone (no reply
# text scanned): the cost of classifying in the ingest.
#
#   PW_BENCH_REPLIES   replies classified (default 1000000)
#   PW_BENCH_SAMPLE    replies of the SQL-regex baseline (default 20000)
#   PW_BENCH_LINES     lines of the ingested log (default 1000000)
#   PW_BENCH_CARRIERS  carriers of the ingest (default 400000)
#   PW_BENCH_RUNS      ingest runs of each kind, best kept (default 3)
#   PW_BENCH_SKIP_INGEST=1  only the classification
#   PW_BENCH_KEEP=1    leave the cluster directory behind
set -euo pipefail

# the peers outside PostgreSQL are built from bench/verdict_engines.c
if [ ! -e /usr/include/pcre2.h ] || [ ! -e /usr/include/hs/hs.h ]; then
	echo "bench/verdict_bench.sh needs libpcre2-dev and libhyperscan-dev (as root: apt-get install libpcre2-dev libhyperscan-dev)" >&2
	exit 1
fi

SRC="$(cd "$(dirname "$0")/.." && pwd)"
. "$SRC/test/lib/cluster.sh"
pw_run_as_postgres "$@"
pw_use_private_install

REPLIES="${PW_BENCH_REPLIES:-1000000}"
SAMPLE="${PW_BENCH_SAMPLE:-20000}"
LINES="${PW_BENCH_LINES:-1000000}"
CARRIERS="${PW_BENCH_CARRIERS:-400000}"
RUNS="${PW_BENCH_RUNS:-3}"

now() { date +%s.%N; }
elapsed() { echo "$(now) $1" | awk '{ printf "%.6f", $1 - $2 }'; }
# timed SQL -> T (seconds)
timed() { local t0; t0=$(now); psql_q -At -c "$1" >/dev/null; T=$(elapsed "$t0"); }
rate() { echo "$1 $2" | awk '{ printf "%.0f", $1 / $2 }'; }
line() { printf '%-44s %12s replies/s\n' "$1" "$2"; }

pw_cluster_start verdict_bench "${PW_BENCH_KEEP:-0}" <<'CONF'
pw_deliverability.maillog_directory = '@WORK@'
shared_buffers = 1GB
max_wal_size = 4GB
CONF
chmod 0755 "$WORK"
# one process a query: the figures are per core
export PGOPTIONS='-c max_parallel_workers_per_gather=0'
psql_q -c 'CREATE EXTENSION pw_deliverability'

echo "== replies"
grep -v '^#' "$SRC/test/fixtures/verdict/replies.tsv" > "$WORK/fixture.tsv"
psql_q <<SQL
CREATE TABLE fx (dsn text, reply text, expected text);
COPY fx FROM '$WORK/fixture.tsv' WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\b');
SELECT setseed(0.42);
-- the provider replies again and again, with other IPs and ids
CREATE TABLE realistic AS
SELECT f.dsn,
       regexp_replace(regexp_replace(f.reply, '\d+\.\d+\.\d+\.\d+',
                      (10 + i % 200) || '.' || (i % 251) || '.' || (i % 241) || '.' || (i % 239), 'g'),
                      ' (\(in reply to|$)', ' id=' || substr(md5(i::text), 1, 12) || ' \1') AS reply
  FROM generate_series(1, $REPLIES) AS i
  JOIN (SELECT row_number() OVER () - 1 AS k, * FROM fx) f ON f.k = i % (SELECT count(*) FROM fx);
-- every reply different: random words, the lengths of the real ones
CREATE TABLE distinct_replies AS
SELECT '5.0.0'::text AS dsn,
       'host mx' || i || '.example[192.0.2.1] said: 550 '
       || (SELECT string_agg(substr(md5(i::text || w::text), 1, 3 + w % 7), ' ')
             FROM generate_series(1, 18) AS w)
       || ' (in reply to RCPT TO command)' AS reply
  FROM generate_series(1, $REPLIES) AS i;
ANALYZE realistic; ANALYZE distinct_replies;
SQL
psql_q -At -c "SELECT count(*), round(avg(length(reply))) FROM realistic" | awk -F'|' '{ printf "realistic: %d replies, %d bytes on average\n", $1, $2 }'
psql_q -At -c "SELECT count(*), round(avg(length(reply))) FROM distinct_replies" | awk -F'|' '{ printf "distinct:  %d replies, %d bytes on average\n", $1, $2 }'
psql_q -At -c "SELECT count(*) FROM pw.bounce_rules" | awk '{ printf "rules:     %d\n", $1 }'

echo
echo "== in PostgreSQL"
psql_q -At -c "SELECT count(pw.classify_bounce(dsn, reply)) FROM realistic LIMIT 1000" >/dev/null	# compile the rules
for t in realistic distinct_replies; do
	timed "SELECT count(length(dsn) + length(reply)) FROM $t"
	t_sql=$T
	line "SQL ceiling, length() ($t)" "$(rate "$REPLIES" "$T")"
	timed "SELECT count(pw.classify_bounce(dsn, reply)) FROM $t"
	line "pw.classify_bounce() ($t)" "$(rate "$REPLIES" "$T")"
	# the classification alone: the time of the query less that of the same
	# scan calling length() (what the ingest pays per line, with no SQL call)
	line "  classification alone ($t)" "$(echo "$REPLIES $T $t_sql" | awk '{ printf "%.0f", $1 / ($2 - $3) }')"
done
# the baseline: the same rules in SQL, with PostgreSQL's regex engine (\y is
# its word boundary)
psql_q <<SQL >/dev/null
CREATE TABLE rules_sql AS
SELECT row_number() OVER (ORDER BY seeded, position, name) AS ord,
       '^(?:' || status_pattern || ')$' AS s, '^(?:' || code_pattern || ')$' AS c,
       replace(reply_pattern, '\b', '\y') AS r, stage, category
  FROM pw.bounce_rules;
CREATE TABLE sample_parts AS
SELECT p.dsn, p.reply, (pw.bounce_reply_parts(p.reply)).* FROM (SELECT * FROM realistic LIMIT $SAMPLE) p;
SQL
BASELINE="SELECT count(coalesce((SELECT r.category FROM rules_sql r
            WHERE (r.s IS NULL OR coalesce(p.dsn, p.reply_status) ~* r.s)
              AND (r.c IS NULL OR p.code ~* r.c) AND (r.r IS NULL OR p.remote_reply ~* r.r)
              AND (r.stage = 'any' OR r.stage = p.stage)
            ORDER BY r.ord LIMIT 1), 'other')) FROM sample_parts p"
timed "$BASELINE"
line "PostgreSQL regex in SQL ($SAMPLE realistic)" "$(rate "$SAMPLE" "$T")"
psql_q -At -c "SELECT count(*) FILTER (WHERE a = b), count(*) FROM (
    SELECT coalesce((SELECT r.category FROM rules_sql r
                      WHERE (r.s IS NULL OR coalesce(p.dsn, p.reply_status) ~* r.s)
                        AND (r.c IS NULL OR p.code ~* r.c) AND (r.r IS NULL OR p.remote_reply ~* r.r)
                        AND (r.stage = 'any' OR r.stage = p.stage)
                      ORDER BY r.ord LIMIT 1), 'other') AS a,
           pw.classify_bounce(p.dsn, p.reply) AS b
      FROM sample_parts p) w" | awk -F'|' '{ printf "the SQL baseline and pw.classify_bounce() agree on %d of %d\n", $1, $2 }'

echo
echo "== outside PostgreSQL (bench/verdict_engines.c, same rules, same replies)"
gcc -O2 -o "$WORK/verdict_engines" "$SRC/bench/verdict_engines.c" -lpcre2-8 -lhs
psql_q -c "COPY (SELECT status_pattern, code_pattern, reply_pattern, stage, category
                   FROM pw.bounce_rules ORDER BY seeded, position, name) TO '$WORK/rules.tsv'"
for t in realistic distinct_replies; do
	psql_q -c "COPY (SELECT coalesce(r.dsn, (p).reply_status), (p).code, (p).stage, (p).remote_reply
	                   FROM (SELECT dsn, pw.bounce_reply_parts(reply) AS p FROM $t) r) TO '$WORK/$t.tsv'"
	echo "-- $t"
	"$WORK/verdict_engines" "$WORK/rules.tsv" "$WORK/$t.tsv"
done
psql_q -At -c "SELECT count(*) FILTER (WHERE pw.classify_bounce(dsn, reply) = expected), count(*) FROM fx" |
	awk -F'|' '{ printf "fixture replies classified as expected by the extension: %d of %d\n", $1, $2 }'

[ "${PW_BENCH_SKIP_INGEST:-0}" = 1 ] && exit 0
echo
echo "== ingest of a $LINES-line log into $CARRIERS carriers: shipped rules against status-only rules"
psql_q -c 'CREATE DATABASE tmpl'
psql_q -d tmpl -c 'CREATE EXTENSION pw_deliverability' -f "$SRC/test/generate_carriers.sql" >/dev/null
psql_q -d tmpl -c "SELECT pw_generate_carriers($CARRIERS, seed => 42)" \
	-c 'SELECT pw.create_writeback_index()' -c 'VACUUM ANALYZE fmcsa_carriers' >/dev/null
psql_q -d tmpl -c "COPY (SELECT email FROM fmcsa_carriers WHERE email LIKE '%_@_%' ORDER BY id) TO '$WORK/addresses.txt'"
PW_ADDRESSES="$WORK/addresses.txt" perl "$SRC/test/gen_maillog.pl" "$LINES" 2 > "$WORK/ingest.log"
# the generated log's bounces and deferrals are "550 5.1.1 ... User unknown"
# (RCPT TO), "550 5.7.1 ... content restrictions" (end of DATA) and "connect
# to ...: Connection timed out" (4.4.1): rules on the status alone give them
# the same categories without reading the replies
STATUS_ONLY="DELETE FROM pw.bounce_rules;
  INSERT INTO pw.bounce_rules (name, status_pattern, category) VALUES
    ('s.511', '5\.1\.1', 'bad_mailbox'), ('s.571', '5\.7\.1', 'policy'), ('s.4', '4\..*', 'routing')"
best_full=""; best_status=""
for run in $(seq "$RUNS"); do
	for kind in status full; do
		psql_q -c "DROP DATABASE IF EXISTS run" -c "CREATE DATABASE run TEMPLATE tmpl" >/dev/null
		[ "$kind" = status ] && psql_q -d run -c "$STATUS_ONLY" >/dev/null
		psql_q -c CHECKPOINT
		t0=$(now)
		res=$(psql_q -d run -At -c "SELECT hard_bounced || ' hard, ' || blocked || ' blocked, '
		                               || carriers_bounced || ' carriers' FROM pw.ingest_maillog('ingest.log')")
		d=$(elapsed "$t0")
		printf '  run %d %-7s %8.3f s  %s\n' "$run" "$kind" "$d" "$res"
		if [ "$kind" = full ]; then
			if [ -z "$best_full" ] || awk "BEGIN { exit !($d < $best_full) }"; then best_full=$d; fi
		else
			if [ -z "$best_status" ] || awk "BEGIN { exit !($d < $best_status) }"; then best_status=$d; fi
		fi
	done
done
NL=$(wc -l < "$WORK/ingest.log")
printf '%-44s %8.3f s  %10s lines/s\n' "ingest, status-only rules (best)" "$best_status" "$(rate "$NL" "$best_status")"
printf '%-44s %8.3f s  %10s lines/s\n' "ingest, shipped rules (best)" "$best_full" "$(rate "$NL" "$best_full")"
printf 'classification costs the ingest %+.1f%%\n' "$(echo "$best_full $best_status" | awk '{ print ($1 / $2 - 1) * 100 }')"
