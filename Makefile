# pw_deliverability — PGXS build
#
#   make                 build the library and the install script
#   make install         install into the PostgreSQL found by $(PG_CONFIG)
#   make installcheck    the regress suite against the installed, running
#                        server (docs/testing.md says what it needs)
#   make test            regress + TAP suites on throwaway clusters, against a
#                        private copy of the PostgreSQL installation
#                        (tmp_install/), so nothing system-wide is touched
#   make demo            the main job end to end on a throwaway cluster
#   make deb             the Debian package postgresql-15-pw-deliverability
#                        (debian/, pg_buildext), built in a copy of the tree
#                        outside the checkout, into build/deb/
#
# make, make install and make installcheck only build and install: they
# never install packages or change owners.  make test and make demo also
# set a fresh Debian 12 machine up when run as root (.ci/deps installs the
# packages), then run as the postgres user in a copy of the tree
# (test/lib/postgres_copy.sh), so the checkout keeps its owner.

EXTENSION = pw_deliverability
EXTVERSION = 0.3
MODULE_big = pw_deliverability
PW_SRC_DIRS = src src/common src/mx src/select src/maillog src/verdict
OBJS = $(patsubst %.c,%.o,$(sort $(foreach d,$(PW_SRC_DIRS),$(wildcard $(d)/*.c))))
# PGXS tracks no header dependencies: every object depends on every header.
PW_HEADERS = $(foreach d,$(PW_SRC_DIRS),$(wildcard $(d)/*.h))

# The install script is assembled from one fragment per concern.
INSTALL_SQL = $(EXTENSION)--$(EXTVERSION).sql
DATA_built = $(INSTALL_SQL)
# Frozen scripts of earlier versions and the upgrade scripts (sql-versions/).
DATA = $(sort $(wildcard sql-versions/*.sql))
SQL_FRAGMENTS = $(sort $(wildcard src/sql/*.sql))

REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf

PKG_CONFIG ?= pkg-config
PG_CPPFLAGS = -I$(srcdir)/src $(shell $(PKG_CONFIG) --cflags libcares libpsl libidn2 libhs)
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = $(shell $(PKG_CONFIG) --libs libcares libpsl libidn2 libhs)

EXTRA_CLEAN = test/unit/build tmp_sanitize tmp_valgrind tmp_install tmp_check test/tmp_check results regression.diffs regression.out log

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

ifeq ($(shell id -u),0)
PW_AS_ROOT = 1
# as root, installcheck runs as postgres in a copy of the tree (below)
NO_INSTALLCHECK = 1
endif

ifeq ($(PGXS),)
PW_NO_PGXS = cannot find PGXS: '$(PG_CONFIG) --pgxs' failed. Install \
  postgresql-server-dev-15, libc-ares-dev, libpsl-dev, libidn2-dev, libhyperscan-dev and pkg-config (as root, \
  'bash .ci/deps' does), or name the pg_config of your PostgreSQL 15: \
  make PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
ifeq ($(filter-out test demo,$(or $(MAKECMDGOALS),all)),)
ifdef PW_DEPS_DONE
$(error $(PW_NO_PGXS) (.ci/deps has run))
endif
# make test / make demo on a fresh machine: install the Debian packages (as
# root), then start again, once.
.PHONY: test demo
test demo:
	bash .ci/deps
	$(MAKE) -C $(CURDIR) $@ PW_DEPS_DONE=1
else
$(error $(PW_NO_PGXS))
endif
else
include $(PGXS)

$(OBJS): $(PW_HEADERS)

$(INSTALL_SQL): $(SQL_FRAGMENTS)
	cat $^ > $@

# ---------------------------------------------------------------------------
# make check: a private installation tree and throwaway clusters
# ---------------------------------------------------------------------------
PG_BINDIR := $(shell $(PG_CONFIG) --bindir)
PG_PKGLIBDIR := $(shell $(PG_CONFIG) --pkglibdir)
PG_SHAREDIR := $(shell $(PG_CONFIG) --sharedir)
TMP_INSTALL = $(CURDIR)/tmp_install
TMP_BINDIR = $(TMP_INSTALL)$(PG_BINDIR)
PROVE_TESTS ?= test/t/*.pl

.PHONY: test unit-check temp-install regress-check tap-check demo

ifdef PW_AS_ROOT
# PostgreSQL refuses to run as root: run as postgres in a copy of the tree
# (the checkout keeps its owner).  installcheck installs no packages.
test demo:
	bash .ci/deps
	test/lib/postgres_copy.sh $(MAKE) $@ PROVE_TESTS='$(PROVE_TESTS)'

installcheck:
	test/lib/postgres_copy.sh $(MAKE) $@
else
test: unit-check temp-install regress-check tap-check
	@echo "pw_deliverability: all tests passed"

demo: temp-install
	PATH="$(TMP_BINDIR):$$PATH" PW_TMP_INSTALL=1 test/demo.sh
endif

# Copy the server's bin/lib/share trees (PostgreSQL locates its share and
# lib directories relative to the postgres binary) and install into the copy.
temp-install: all
	rm -rf $(TMP_INSTALL)
	mkdir -p $(TMP_INSTALL)$(dir $(PG_PKGLIBDIR)) $(TMP_INSTALL)$(dir $(PG_SHAREDIR))
	cp -a $(dir $(PG_PKGLIBDIR)). $(TMP_INSTALL)$(dir $(PG_PKGLIBDIR))
	cp -a $(PG_SHAREDIR) $(TMP_INSTALL)$(dir $(PG_SHAREDIR))
	$(MAKE) install DESTDIR=$(TMP_INSTALL) >/dev/null

# PostgreSQL-free unit tests (test/unit/test_NAME.c against its sources)
UNIT_TESTS = allowance
UNIT_SRC_allowance = src/select/allowance.c
UNIT_BUILD = $(CURDIR)/test/unit/build
$(UNIT_BUILD)/test_allowance: $(UNIT_SRC_allowance)

$(UNIT_BUILD)/test_%: test/unit/test_%.c $(PW_HEADERS)
	@mkdir -p $(UNIT_BUILD)
	$(CC) -std=c99 -O1 -g -Wall -Wextra -Werror -I$(srcdir)/src -o $@ $< $(UNIT_SRC_$*) -lm

unit-check: $(UNIT_TESTS:%=$(UNIT_BUILD)/test_%)
	@set -e; for t in $(UNIT_TESTS); do $(UNIT_BUILD)/test_$$t; done

regress-check:
	$(pg_regress_installcheck) --bindir=$(TMP_BINDIR) --temp-instance=./tmp_check $(REGRESS_OPTS) $(REGRESS)

tap-check:
	rm -rf $(CURDIR)/test/tmp_check
	mkdir -p $(CURDIR)/test/tmp_check
	cd test && TESTDIR='$(CURDIR)/test' PATH="$(TMP_BINDIR):$$PATH" \
	  PG_REGRESS='$(pgxsdir)/src/test/regress/pg_regress' \
	  PW_SRCDIR='$(CURDIR)' \
	  $(PROVE) -I $(pgxsdir)/src/test/perl -I $(CURDIR)/test/lib $(PROVE_FLAGS) \
	  $(patsubst test/%,%,$(PROVE_TESTS))

endif

# ---------------------------------------------------------------------------
# Hardening (not part of make test; see docs/testing.md "Hardening")
#
#   make fuzz            libFuzzer harnesses (clang + libclang-rt-14-dev) on
#                        the PostgreSQL-free sources, FUZZ_SECONDS each
#   make sanitize        the extension built with ASan/UBSan (gcc), then the
#                        regress + TAP suites with the ASan runtime preloaded
#                        into every server process
#   test/valgrind.sh     the regress SQL against a server under memcheck
# ---------------------------------------------------------------------------
FUZZ_SECONDS ?= 10
FUZZ_CC ?= clang
FUZZ_OPTS ?=
FUZZ_HARNESSES = maillog domain classify
FUZZ_BUILD = $(CURDIR)/test/fuzz/build
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -I$(CURDIR)/src
FUZZ_SRC_maillog = src/maillog/maillog_parse.c
FUZZ_SRC_domain = src/mx/classify_core.c
FUZZ_SRC_classify = src/mx/classify_core.c
FUZZ_LIBS_maillog =
FUZZ_LIBS_domain = $(shell $(PKG_CONFIG) --libs libpsl libidn2)
FUZZ_LIBS_classify = $(shell $(PKG_CONFIG) --libs libpsl libidn2)

.PHONY: fuzz fuzz-build sanitize

fuzz-build: $(FUZZ_HARNESSES:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/fuzz_%: test/fuzz/fuzz_%.c src/maillog/maillog_parse.c src/maillog/maillog_parse.h src/mx/classify_core.c src/mx/classify_core.h
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC_$*) $(FUZZ_LIBS_$*)

# Each harness runs FUZZ_SECONDS from the committed seeds; new inputs go to
# test/fuzz/build/corpus-NAME, crash reproducers to test/fuzz/build/NAME-*.
fuzz: fuzz-build
	@set -e; for h in $(FUZZ_HARNESSES); do \
	  mkdir -p $(FUZZ_BUILD)/corpus-$$h; \
	  echo "== fuzz_$$h: $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(FUZZ_BUILD)/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -timeout=5 \
	    -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/$$h- $(FUZZ_OPTS) \
	    $(FUZZ_BUILD)/corpus-$$h $(CURDIR)/test/fuzz/corpus/$$h; \
	done

sanitize:
	PROVE_TESTS='$(PROVE_TESTS)' test/sanitize.sh

# ---------------------------------------------------------------------------
# make deb: dpkg-buildpackage -us -uc -b in a copy of the tree (the checkout
# is not written but for DEB_DIR); docs/operations.md "Debian package"
# ---------------------------------------------------------------------------
DEB_DIR ?= $(CURDIR)/build/deb

.PHONY: deb
deb:
	test/lib/build_deb.sh $(DEB_DIR)
