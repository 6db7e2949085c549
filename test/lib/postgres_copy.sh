#!/bin/bash
# Runs a command as the postgres user in a copy of this source tree (for
# root: PostgreSQL refuses to run as root, and the checkout keeps its owner).
#
#   test/lib/postgres_copy.sh COMMAND [ARG...]
#
# The tree (without build outputs, private installations, test results and
# .git) is copied into a new directory ${TMPDIR:-/tmp}/pw_deliverability.XXXXXX
# that the postgres user creates and owns; COMMAND runs there as postgres
# (setpriv: same process group, so a Ctrl-C reaches it), the environment
# kept but HOME.  The directory is removed when COMMAND succeeds and kept,
# with its path printed, when it fails (logs, regression.diffs).  Nothing in
# the source tree is written or changes owner.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
	echo "$0: run as root (it runs COMMAND as postgres)" >&2
	exit 2
fi
if [ $# -eq 0 ]; then
	echo "usage: $0 COMMAND [ARG...]" >&2
	exit 2
fi
if ! id postgres >/dev/null 2>&1; then
	echo "$0: no postgres user (install postgresql-15, e.g. with bash .ci/deps)" >&2
	exit 1
fi

as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups
	env HOME="$(getent passwd postgres | cut -d: -f6)")
dir=$("${as_postgres[@]}" mktemp -d "${TMPDIR:-/tmp}/pw_deliverability.XXXXXX")
# the private Postfix of the TAP tests and the demo runs as other users,
# which must reach their directories below the copy
"${as_postgres[@]}" chmod 0755 "$dir"

# read as root, written as postgres: the copy is postgres's, the tree untouched
"$src/test/lib/tree_tar.sh" | "${as_postgres[@]}" tar -C "$dir" -xf -

echo "$0: running '$*' as postgres in $dir"
rc=0
(cd "$dir" && exec "${as_postgres[@]}" "$@") || rc=$?
if [ "$rc" -eq 0 ]; then
	rm -rf "$dir"
else
	echo "$0: '$*' failed (exit $rc); its copy of the tree is kept: $dir" >&2
fi
exit "$rc"
