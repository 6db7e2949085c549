#!/bin/bash
# Builds the extension with AddressSanitizer + UndefinedBehaviorSanitizer
# (gcc, the compiler PGXS uses) in a copy of the tree, tmp_sanitize/, and
# runs the regress and TAP suites there against a private installation.
#
# The postgres binary is not instrumented, so the ASan runtime must be the
# first library of every server process: it is put in LD_PRELOAD, which
# pg_regress, pg_ctl and PostgreSQL::Test::Cluster pass on to the
# postmaster and from there to every backend and background worker
# (with test/asan_preinit.c, which works around a start-up hang).  Leak
# detection is off: PostgreSQL frees memory contexts wholesale and leaves
# the rest to process exit on purpose.  Sanitizer reports are written to
# tmp_sanitize/sanitizer-logs/; the run fails if any exists.
#
# Usage: test/sanitize.sh [PROVE_TESTS="test/t/0xx.pl ..."]
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
work=$src/tmp_sanitize
prove_tests=${PROVE_TESTS:-test/t/*.pl}

if [ "$(id -u)" -eq 0 ]; then
	# PostgreSQL refuses to run as root
	rm -rf "$work"
	mkdir -p "$work"
	tar -C "$src" --exclude=./tmp_sanitize --exclude=./tmp_install \
		--exclude=./tmp_check --exclude=./test/tmp_check \
		--exclude=./test/fuzz/build --exclude=./.git -cf - . | tar -C "$work" -xf -
	chown -R postgres: "$work"
	exec runuser -u postgres -- env PROVE_TESTS="$prove_tests" \
		PW_SANITIZE_COPIED=1 "$work/test/sanitize.sh"
fi

if [ "${PW_SANITIZE_COPIED:-}" != 1 ]; then
	rm -rf "$work"
	mkdir -p "$work"
	tar -C "$src" --exclude=./tmp_sanitize --exclude=./tmp_install \
		--exclude=./tmp_check --exclude=./test/tmp_check \
		--exclude=./test/fuzz/build --exclude=./.git -cf - . | tar -C "$work" -xf -
	exec env PROVE_TESTS="$prove_tests" PW_SANITIZE_COPIED=1 "$work/test/sanitize.sh"
fi

cd "$src"						# the copy
logs=$src/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"

san='-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer'
make clean >/dev/null
# PGXS adds COPT to both CFLAGS and LDFLAGS
make COPT="$san" temp-install

asan_lib=$(readlink -f "$(gcc -print-file-name=libasan.so)")
# see test/asan_preinit.c for why the second library is needed
gcc -shared -fPIC -O2 -o "$src/tmp_install/asan_preinit.so" "$src/test/asan_preinit.c"
export LD_PRELOAD="$asan_lib $src/tmp_install/asan_preinit.so"
# handle_segv=0: TAP 071 crashes the tagger with a SIGSEGV on purpose and
# expects the server to see signal 11; ASan would turn it into its own
# report and an abort (6).  Bad accesses are still caught by the
# instrumentation, before any fault.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$logs/asan:detect_stack_use_after_return=0:handle_segv=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"

status=0
make regress-check || status=$?
make tap-check PROVE_TESTS="$prove_tests" || status=$?

unset LD_PRELOAD
if compgen -G "$logs/*" >/dev/null; then
	echo "sanitizer reports:" >&2
	for f in "$logs"/*; do
		echo "== $f" >&2
		cat "$f" >&2
	done
	status=1
fi
if [ "$status" -eq 0 ]; then
	echo "pw_deliverability: regress + TAP clean under ASan/UBSan"
fi
exit "$status"
