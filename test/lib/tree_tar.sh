#!/bin/bash
# Writes a tar archive of this source tree to stdout, without .git, build
# outputs, private installations, test results and Debian build artefacts:
# the copy that test/lib/postgres_copy.sh runs in and that make deb packages.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)

exec tar -C "$src" --exclude=./.git --exclude=./tmp_install --exclude=./tmp_check \
	--exclude=./test/tmp_check --exclude=./results --exclude=./log \
	--exclude=./regression.diffs --exclude=./regression.out \
	--exclude=./tmp_sanitize --exclude=./tmp_valgrind --exclude=./test/fuzz/build \
	--exclude=./test/unit/build --exclude=./bench/out --exclude=./build \
	--exclude=./debian/.debhelper --exclude=./debian/files \
	--exclude='./debian/*.substvars' --exclude=./debian/debhelper-build-stamp \
	--exclude='./debian/postgresql-*-pw-deliverability' \
	--exclude='*.o' --exclude='*.so' --exclude='*.bc' \
	--exclude='./pw_deliverability--*.sql' -cf - .
