#!/bin/bash
# MX tagging benchmark: 200,000 domains in a zone served by NSD on loopback.
#
#   sudo bench/mx_tag_bench.sh [N_DOMAINS]
#
# Prints the server's ceiling (dnsperf on the same MX names), adnshost
# --asynch on the same names (a peer; needs 127.0.0.1:53 free, as adnshost's
# port is fixed at 53), and pw.mx_tag() end to end (DNS, classification, the
# domain cache and the carriers' UPDATE) in a throwaway cluster, with the
# ratios.  Run as root: NSD starts as root and drops to user nsd (so it keeps
# a 2 MB receive buffer); PostgreSQL runs as postgres.  Everything listens
# on 127.0.0.1 only and is stopped at exit.  Not part of `make test`.
set -euo pipefail

N=${1:-200000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root (NSD needs it for its receive buffer)" >&2; exit 1; }
for t in nsd dnsperf adnshost runuser; do
	command -v $t >/dev/null || { echo "missing $t (Debian: nsd dnsperf adns-tools)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/pw_mxbench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
PGDIR=$WORK/pg
PGDATA=$PGDIR/data
PGBIN=$ROOT/tmp_install/usr/lib/postgresql/15/bin
cleanup()
{
	set +e
	[ -f "$PGDATA/postmaster.pid" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for f in "$WORK"/nsd*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
	sleep 0.5
	rm -rf "$WORK"
}
trap cleanup EXIT

free_port()
{
	python3 -c 'import socket
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); p=s.getsockname()[1]
t=socket.socket(); t.bind(("127.0.0.1", p)); print(p)'
}

# --- the zone: N domains, MX hosts of real operators and a long tail -------
ZONE=bench.example
echo "== zone: $N domains under $ZONE"
awk -v n="$N" -v z="$ZONE" 'BEGIN {
	print "$ORIGIN " z "."; print "$TTL 3600"
	print "@ IN SOA ns1 hostmaster 1 3600 600 86400 3600"; print "@ IN NS ns1"; print "ns1 IN A 127.0.0.1"
	split("aspmx.l.google.com,contoso-com.mail.protection.outlook.com,mta7.am0.yahoodns.net,mx1.emailsrvr.com,mx01.mail.icloud.com,mx1.secureserver.net", p, ",")
	for (i = 1; i <= n; i++) {
		if (i % 10 < 6) h = p[1 + i % 6] "."; else h = "mx.host" (i % 5000) ".net."
		print "d" i " IN MX 10 " h
		if (i % 3 == 0) print "d" i " IN MX 20 backup.host" (i % 5000) ".net."
	}
}' > "$WORK/zone"
awk -v n="$N" -v z="$ZONE" 'BEGIN { for (i = 1; i <= n; i++) print "d" i "." z " MX" }' > "$WORK/queries"
awk -v n="$N" -v z="$ZONE" 'BEGIN { for (i = 1; i <= n; i++) print "d" i "." z }' > "$WORK/names"
chown -R nsd: "$WORK/zone" 2>/dev/null || true

start_nsd()
{
	local port=$1 tag=$2
	mkdir -p "$WORK/state_$tag" && chown nsd: "$WORK/state_$tag"
	cat > "$WORK/nsd_$tag.conf" <<CONF
server:
	ip-address: 127.0.0.1@$port
	do-ip6: no
	username: nsd
	chroot: ""
	zonesdir: "$WORK"
	database: ""
	zonelistfile: "$WORK/state_$tag/zonelist"
	xfrdfile: "$WORK/state_$tag/xfrd.state"
	xfrdir: "$WORK/state_$tag"
	pidfile: "$WORK/nsd_$tag.pid"
	logfile: "$WORK/nsd_$tag.log"
	server-count: 1
	verbosity: 0
	hide-version: yes
remote-control:
	control-enable: no
zone:
	name: $ZONE
	zonefile: "$WORK/zone"
CONF
	nsd -c "$WORK/nsd_$tag.conf"
	for _ in $(seq 1 120); do
		ok=$(echo "d1.$ZONE MX" | dnsperf -s 127.0.0.1 -p "$port" -n 1 -t 1 2>/dev/null | awk '/Queries completed/ {print $3}')
		[ "${ok:-0}" -ge 1 ] && return 0
		sleep 0.5
	done
	echo "NSD did not come up on port $port" >&2; cat "$WORK/nsd_$tag.log" >&2; exit 1
}

PORT=$(free_port)
echo "== NSD on 127.0.0.1:$PORT"
start_nsd "$PORT" main

# --- the ceiling: dnsperf over the same names ------------------------------
if [ -n "${PW_ONLY:-}" ]; then
	echo "== PW_ONLY set: dnsperf and adnshost skipped"
	DNSPERF_QPS=1
else
echo "== dnsperf (one pass over $N MX queries, 500 outstanding)"
dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries" -n 1 -q 500 -T 1 -c 1 > "$WORK/dnsperf.out" 2>&1
grep -E "Queries (sent|completed|lost)|Queries per second|Response codes" "$WORK/dnsperf.out" | sed 's/^/   /'
DNSPERF_QPS=$(awk '/Queries per second/ {print $4}' "$WORK/dnsperf.out")

# --- the peer: adnshost --asynch (port 53 only) -----------------------------
ADNS_RATE=""
ADNS_BEST=""
if [ -n "${PW_ONLY:-}" ]; then :
elif ss -lun | awk '{print $4}' | grep -qE '^127\.0\.0\.1:53$|^0\.0\.0\.0:53$|^\*:53$'; then
	echo "== adnshost: 127.0.0.1:53 is taken, skipped"
else
	start_nsd 53 adns
	# adnshost has no cap on queries in flight: fed everything at once, the
	# answers overflow its socket buffer and it waits for 2 s retransmits.
	# Measured both as one invocation over all names and, as its best case,
	# sequential invocations of 200 names each.
	echo "== adnshost --asynch -tmx- over $N names (NSD on 127.0.0.1:53)"
	t0=$(date +%s.%N)
	adnshost --config 'nameserver 127.0.0.1' --asynch -tmx- -f < "$WORK/names" > "$WORK/adns.out" 2> "$WORK/adns.err" || true
	t1=$(date +%s.%N)
	answered=$(grep -c '^[0-9]* [0-9]* ok ' "$WORK/adns.out" || true)
	ADNS_RATE=$(python3 -c "print('%.0f' % ($N / ($t1 - $t0)))")
	echo "   one invocation:       $N names in $(python3 -c "print('%.2f' % ($t1 - $t0))") s (ok: $answered): $ADNS_RATE names/s"
	mkdir -p "$WORK/chunks" && split -l 200 "$WORK/names" "$WORK/chunks/n_"
	t0=$(date +%s.%N)
	for f in "$WORK"/chunks/n_*; do
		adnshost --config 'nameserver 127.0.0.1' --asynch -tmx- -f < "$f" || true
	done > "$WORK/adns2.out" 2>/dev/null
	t1=$(date +%s.%N)
	answered=$(grep -c '^[0-9]* [0-9]* ok ' "$WORK/adns2.out" || true)
	ADNS_BEST=$(python3 -c "print('%.0f' % ($N / ($t1 - $t0)))")
	echo "   200 names at a time:  $N names in $(python3 -c "print('%.2f' % ($t1 - $t0))") s (ok: $answered): $ADNS_BEST names/s"
	kill "$(cat "$WORK/nsd_adns.pid")" 2>/dev/null || true
fi

fi

# --- pw.mx_tag() end to end -------------------------------------------------
if [ ! -x "$PGBIN/postgres" ] || [ ! -f "$ROOT/tmp_install/usr/lib/postgresql/15/lib/pw_deliverability.so" ]; then
	echo "== building the private installation (make temp-install)"
	make -C "$ROOT" temp-install >/dev/null
fi
PGPORT=$(free_port)
mkdir -p "$PGDATA" && chown -R postgres: "$PGDIR"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -A trust >/dev/null
cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGDIR'
shared_preload_libraries = 'pw_deliverability'
shared_buffers = 256MB
max_wal_size = 4GB
synchronous_commit = off
pw_deliverability.worker_enabled = off
pw_deliverability.dns_servers = '127.0.0.1:$PORT'
pw_deliverability.dns_concurrency = ${PW_CONCURRENCY:-400}
pw_deliverability.dns_timeout_ms = 500
pw_deliverability.tag_batch_size = ${PW_BATCH:-20000}
CONF
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDIR/pg.log" -w start >/dev/null
PSQL=(runuser -u postgres -- "$PGBIN/psql" -h "$PGDIR" -p "$PGPORT" -d postgres -X -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" <<SQL
CREATE EXTENSION pw_deliverability;
CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text, mx_provider text);
INSERT INTO fmcsa_carriers
SELECT i, 'dot' || i || '@d' || (1 + (i::bigint * 7919) % $N) || '.$ZONE', 'catch_all_domain', NULL
  FROM generate_series(1, $N * 3 / 2) i;
SELECT pw.create_tagging_index();
VACUUM ANALYZE fmcsa_carriers;
SQL
echo "== pw.mx_tag($N) end to end ($((N * 3 / 2)) carriers on $N domains, concurrency ${PW_CONCURRENCY:-400}, batches of ${PW_BATCH:-20000})"
t0=$(date +%s.%N)
ROW=$("${PSQL[@]}" -At -c "${PW_PRE_SQL:-} SET client_min_messages = ${PW_LOG_LEVEL:-notice}; SELECT looked_up, tagged, \"none\", failed, carriers_updated, round(seconds::numeric, 2) FROM pw.mx_tag($N)")
t1=$(date +%s.%N)
IFS='|' read -r LOOKED TAGGED NONE FAILED CARRIERS SECS <<< "$ROW"
WALL=$(python3 -c "print('%.2f' % ($t1 - $t0))")
echo "   looked_up=$LOOKED tagged=$TAGGED none=$NONE failed=$FAILED carriers_updated=$CARRIERS in ${SECS} s (psql wall ${WALL} s)"
"${PSQL[@]}" -At -c "SELECT '   labels: ' || string_agg(label || '=' || n, ' ' ORDER BY n DESC) FROM (SELECT label, count(*) n FROM pw.mx_domains GROUP BY 1 ORDER BY 2 DESC LIMIT 6) s"
"${PSQL[@]}" -At -c "SELECT '   untagged carriers left: ' || count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL"
PW_RATE=$(python3 -c "print('%.0f' % ($LOOKED / $WALL))")

echo
echo "== summary"
printf '   dnsperf ceiling          %10s queries/s\n' "$DNSPERF_QPS"
printf '   adnshost --asynch        %10s names/s (one invocation), %s names/s (200 at a time)\n' "${ADNS_RATE:-n/a}" "${ADNS_BEST:-n/a}"
printf '   pw.mx_tag() end to end   %10s domains/s\n' "$PW_RATE"
python3 - "$PW_RATE" "$DNSPERF_QPS" "${ADNS_RATE:-0}" "${ADNS_BEST:-0}" <<'PY'
import sys
pw, ceil, adns, best = (float(a) for a in sys.argv[1:5])
print("   pw.mx_tag / dnsperf      %9.1f %%   (target >= 40 %%)" % (100 * pw / ceil))
if adns > 0:
    print("   pw.mx_tag / adnshost     %9.2f x   (one invocation; target >= 3 x)" % (pw / adns))
    print("   pw.mx_tag / adnshost     %9.2f x   (200 at a time)" % (pw / best))
PY
