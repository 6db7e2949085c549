# Shell helpers of test/demo.sh and the bench/ scripts: a throwaway
# PostgreSQL cluster on the private installation (tmp_install/), stopped and
# its directory removed on every way out (exit, error, INT, TERM, HUP).
#
#   SRC="$(cd "$(dirname "$0")/.." && pwd)"
#   . "$SRC/test/lib/cluster.sh"
#   pw_run_as_postgres "$@"     as root: run the script again as postgres,
#                               environment kept (the tree keeps its owner)
#   pw_use_private_install      the private binaries first on PATH, or exit
#   pw_on_exit 'command'        run first when cleaning up (a helper to stop)
#   pw_cluster_start NAME KEEP <<'EOF'
#   setting = value             settings beyond the usual ones, on stdin;
#   EOF                         @WORK@ stands for the cluster's directory
#       initdb + start in a new /tmp/pw_NAME.XXXXXX; sets WORK, PGDATA, PORT
#       (PW_PORT if set, else a random one) and PGHOST, PGPORT, PGDATABASE,
#       PGUSER; with KEEP = 1 the directory is left behind
#   psql_q ...                  psql, quiet, stopping at the first error
#   pw_start_net ARGS...        test/demo_net.pl WORK ARGS... in the background
#                               (stopped on every way out); returns once it
#                               listens, with its net.env sourced
#
# Sourced: it sets no shell options of its own (the scripts use set -euo
# pipefail).

PW_EXIT_HOOKS=()
PW_KEEP=0
WORK=
PGDATA=

# Re-runs the calling script as postgres when run as root, in the same
# process (setpriv, not runuser: signals reach the script and its cleanup).
# The scripts only read the tree, which keeps its owner: postgres must be
# able to read it (else run a copy: test/lib/postgres_copy.sh).
pw_run_as_postgres() {
	if [ "$(id -u)" = 0 ]; then
		local as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups
			env HOME="$(getent passwd postgres | cut -d: -f6)")
		if ! "${as_postgres[@]}" test -r "$SRC/test/lib/cluster.sh"; then
			echo "the postgres user cannot read $SRC; run a copy:" \
				"test/lib/postgres_copy.sh sh -c 'make temp-install && $0'" >&2
			exit 1
		fi
		exec "${as_postgres[@]}" "$0" "$@"
	fi
}

# Puts the private installation's binaries first on PATH.
pw_use_private_install() {
	local bindir
	bindir="$(pg_config --bindir)"
	# (the private pg_config, when it comes first on PATH, names itself)
	case "$bindir" in "$SRC/tmp_install"/*) ;; *) bindir="$SRC/tmp_install$bindir" ;; esac
	if [ ! -x "$bindir/postgres" ]; then
		echo "no private installation in $SRC/tmp_install: run 'make temp-install' first" >&2
		exit 1
	fi
	export PATH="$bindir:$PATH"
}

# Adds a command to run (first, in order) when cleaning up.
pw_on_exit() {
	PW_EXIT_HOOKS+=("$1")
}

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# Stops what was started, removes the directory, keeps the exit status.
pw_cleanup() {
	local rc=$?
	local hook
	trap - EXIT INT TERM HUP
	for hook in "${PW_EXIT_HOOKS[@]}"; do
		eval "$hook" || true
	done
	if [ -n "$PGDATA" ]; then
		pg_ctl -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
	fi
	if [ -n "$WORK" ]; then
		if [ "$PW_KEEP" = 1 ]; then
			echo "left behind: $WORK"
		else
			rm -rf "$WORK" 2>/dev/null || true
			[ ! -e "$WORK" ] || echo "could not remove all of $WORK" >&2
		fi
	fi
	exit "$rc"
}
trap pw_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Starts the loopback network of test/demo_net.pl and sources its net.env.
PW_NETPID=
pw_start_net() {
	pw_on_exit 'if [ -n "$PW_NETPID" ]; then kill -TERM "$PW_NETPID" 2>/dev/null; wait "$PW_NETPID" 2>/dev/null; fi'
	perl "$SRC/test/demo_net.pl" "$WORK" "$@" &
	PW_NETPID=$!
	for _ in $(seq 1 300); do
		[ -e "$WORK/net.env" ] && break
		kill -0 "$PW_NETPID" 2>/dev/null || { echo "the loopback network did not start" >&2; exit 1; }
		sleep 0.2
	done
	[ -e "$WORK/net.env" ] || { echo "the loopback network did not start in 60 s" >&2; exit 1; }
	# shellcheck disable=SC1091
	. "$WORK/net.env"
}

# Creates and starts a throwaway cluster; extra settings come on stdin.
pw_cluster_start() {
	local name=$1
	PW_KEEP=${2:-0}
	WORK="$(mktemp -d "/tmp/pw_$name.XXXXXX")"
	PGDATA="$WORK/data"
	PORT="${PW_PORT:-$((20000 + RANDOM % 20000))}"
	export PGHOST="$WORK" PGPORT="$PORT" PGDATABASE=postgres PGUSER=postgres
	initdb -D "$PGDATA" -A trust -U postgres >/dev/null
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$WORK'"
		echo "port = $PORT"
		echo "shared_preload_libraries = 'pw_deliverability'"
		sed "s|@WORK@|$WORK|g"
	} >>"$PGDATA/postgresql.conf"
	pg_ctl -D "$PGDATA" -l "$WORK/postgres.log" -w start >/dev/null
}
