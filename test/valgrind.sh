#!/bin/bash
# Runs the regress SQL (sql/*.sql, compared with expected/) against a
# PostgreSQL server running under valgrind's memcheck, with the extension
# preloaded, and reports memcheck errors whose stack passes through the
# extension.
#
# The Debian postgres binary is not built with USE_VALGRIND, so memcheck
# cannot see palloc chunks (it sees whole blocks) and reports harmless noise
# of its own (uninitialised padding written to files and sockets): errors
# without a pw_deliverability frame are counted and kept in the logs, but do
# not fail the run.  test/valgrind.supp silences the known noise.
#
# Works in a copy of the tree, tmp_valgrind/ (as root it runs as postgres).
# Logs: tmp_valgrind/valgrind-logs/<pid>.log, one per server process.
# Usage: test/valgrind.sh [regress test names...]   (default: all)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)

if [ "${PW_VALGRIND_COPIED:-}" != 1 ]; then
	work=$src/tmp_valgrind
	rm -rf "$work"
	mkdir -p "$work"
	tar -C "$src" --exclude=./tmp_valgrind --exclude=./tmp_sanitize \
		--exclude=./tmp_install --exclude=./tmp_check --exclude=./test/tmp_check \
		--exclude=./test/fuzz/build --exclude=./.git -cf - . | tar -C "$work" -xf -
	if [ "$(id -u)" -eq 0 ]; then
		chown -R postgres: "$work"
		exec runuser -u postgres -- env PW_VALGRIND_COPIED=1 "$work/test/valgrind.sh" "$@"
	fi
	exec env PW_VALGRIND_COPIED=1 "$work/test/valgrind.sh" "$@"
fi

cd "$src"						# the copy
make clean >/dev/null
make temp-install >/dev/null
bindir=$(pg_config --bindir)
bin=$src/tmp_install$bindir
data=$src/tmp_valgrind_data
logs=$src/valgrind-logs
sock=$(mktemp -d /tmp/pw_vg.XXXXXX)
rm -rf "$data" "$logs"
mkdir -p "$logs"

if [ $# -gt 0 ]; then
	tests=("$@")
else
	tests=()
	for f in sql/*.sql; do tests+=("$(basename "$f" .sql)"); done
fi

"$bin/initdb" -D "$data" --no-sync -A trust >/dev/null
cat test/regress.conf >>"$data/postgresql.conf"
cat >>"$data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$sock'
port = 5432
fsync = off
# valgrind makes everything 20-50 times slower
statement_timeout = 0
CONF

# The postmaster forks its children without exec: memcheck follows forks by
# itself; --trace-children covers anything the server execs.
valgrind --tool=memcheck --trace-children=yes --track-origins=yes \
	--leak-check=no --num-callers=40 --error-limit=no \
	--suppressions="$src/test/valgrind.supp" \
	--log-file="$logs/%p.log" \
	"$bin/postgres" -D "$data" >"$logs/postmaster.out" 2>&1 &
pm=$!

cleanup()
{
	"$bin/pg_ctl" -D "$data" stop -m fast -t 300 >/dev/null 2>&1 || kill "$pm" 2>/dev/null || true
	wait "$pm" 2>/dev/null || true
	rm -rf "$sock"
}
trap cleanup EXIT

for i in $(seq 1 600); do
	if "$bin/pg_isready" -h "$sock" -p 5432 -q; then
		break
	fi
	sleep 1
done

status=0
"$(pg_config --pgxs | sed 's|/src/makefiles/pgxs.mk||')/src/test/regress/pg_regress" \
	--inputdir=./ --bindir="$bin" --host="$sock" --port=5432 \
	--dbname=contrib_regression "${tests[@]}" || status=$?

cleanup
trap - EXIT

# Count errors: all, and those with a frame in the extension (its library
# or one of its source files).
ourfiles=$(cd src && find . -name '*.c' -printf '%f\n' | sed 's/[.]c$/[.]c/' | paste -sd'|')
total=0
ours=0
for f in "$logs"/*.log; do
	n=$(grep -c 'ERROR SUMMARY: [1-9]' "$f" || true)
	[ "$n" -gt 0 ] || continue
	e=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -1)
	total=$((total + e))
	# an error block is the text between blank "==pid== " lines
	o=$(awk -v re="pw_deliverability[.]so|[(](${ourfiles}):[0-9]+[)]" '
			 /^==[0-9]+== $/ { if (blk ~ re) n++; blk = ""; next }
			 { blk = blk "\n" $0 }
			 END { if (blk ~ re) n++; print n + 0 }' "$f")
	if [ "$o" -gt 0 ]; then
		echo "== $f: $o error(s) through pw_deliverability" >&2
		cat "$f" >&2
		ours=$((ours + o))
	fi
done
echo "valgrind: $(ls "$logs"/*.log | wc -l) processes, $total memcheck error(s) in all, $ours through pw_deliverability"
if [ "$ours" -gt 0 ]; then
	status=1
fi
if [ "$status" -eq 0 ]; then
	echo "pw_deliverability: regress SQL clean under valgrind memcheck"
fi
exit "$status"
