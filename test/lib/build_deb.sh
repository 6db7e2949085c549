#!/bin/bash
# Builds the Debian package (debian/, pg_buildext) with dpkg-buildpackage in
# a copy of this source tree outside the checkout, and moves the binary
# packages into OUTDIR (make deb: build/deb/).
#
#   test/lib/build_deb.sh OUTDIR
#
# The copy is test/lib/tree_tar.sh's (no build outputs); it lives in a new
# directory below ${TMPDIR:-/tmp}, removed on success and kept, with its path
# printed, on failure.  debian/control says Rules-Requires-Root: no, so no
# step needs root or fakeroot.  Nothing in the source tree is written.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
for tool in dpkg-buildpackage dpkg-checkbuilddeps pg_buildext; do
	if ! command -v "$tool" >/dev/null; then
		echo "$0: $tool not found: install dpkg-dev, debhelper and postgresql-server-dev-all (as root, 'bash .ci/deps' does)" >&2
		exit 1
	fi
done
(cd "$src" && dpkg-checkbuilddeps) || {
	echo "$0: install the build dependencies above (as root, 'bash .ci/deps' does)" >&2
	exit 1
}
mkdir -p "$1"
out=$(cd "$1" && pwd)

version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/pw_deb.XXXXXX")
tree="$work/pw-deliverability-${version%-*}"
mkdir "$tree"
"$src/test/lib/tree_tar.sh" | tar -C "$tree" -xf -

echo "$0: dpkg-buildpackage in $tree"
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b); then
	echo "$0: dpkg-buildpackage failed; its copy of the tree is kept: $work" >&2
	exit 1
fi
rm -f "$out"/*.deb
mv "$work"/*.deb "$out"/
rm -rf "$work"
ls -1 "$out"/*.deb
