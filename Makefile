# odin-dispatch build.  `make` builds every binary into build/, `make test`
# installs missing Debian packages, builds, runs unit + integration tests and
# then the same suite again under ASan/UBSan (build-asan/).
#
# Layout convention (so modules can be added without touching this file):
#   common/*.c proto/*.c          -> $(B)/libodin_common.a
#   router/*.c minus main.c       -> $(B)/libodin_router.a, main -> odin-router
#   shard/*.c  minus main.c       -> $(B)/libodin_shard.a,  main -> odin-shard
#   tools/lib/*.c                 -> $(B)/libodin_tools.a (load/event generator code
#                                    shared by tools and their tests, not by daemons)
#   tools/<name>/*.c              -> $(B)/odin-<name>
#   tests/unit/test_*.c           -> $(B)/tests/test_*   (cmocka, no I/O)
#   tests/it/test_*.c             -> $(B)/it/test_*      (cmocka, real servers)
#   tests/support/*.c             -> $(B)/libodin_testsupport.a (linked into tests)

.DEFAULT_GOAL := all
B        ?= build
CC       ?= cc
PKGS     := hiredis libevent libevent_pthreads rdkafka msgpack jansson libcrypto zlib
OPT      ?= -O2 -g
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter
SAN      ?=
CFLAGS   += -std=gnu11 $(OPT) $(WARN) $(SAN) -MMD -MP -I. -D_GNU_SOURCE \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# wslay and http-parser ship no .pc file in Debian 12.
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lwslay -lhttp_parser -lm -lpthread
LDFLAGS  += $(SAN)
TESTLIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

COMMON_SRC := $(wildcard common/*.c proto/*.c)
ROUTER_SRC := $(filter-out router/main.c,$(wildcard router/*.c))
SHARD_SRC  := $(filter-out shard/main.c,$(wildcard shard/*.c))
TOOLLIB_SRC:= $(wildcard tools/lib/*.c)
TOOLS      := $(filter-out lib,$(notdir $(patsubst %/,%,$(dir $(wildcard tools/*/main.c)))))
SUPPORT_SRC:= $(wildcard tests/support/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
IT_SRC     := $(wildcard tests/it/test_*.c)

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

LIBCOMMON := $(B)/libodin_common.a
LIBROUTER := $(B)/libodin_router.a
LIBSHARD  := $(B)/libodin_shard.a
LIBTSUP   := $(B)/libodin_testsupport.a
LIBTOOLS  := $(B)/libodin_tools.a
ALLLIBS   := $(LIBTSUP) $(LIBROUTER) $(LIBSHARD) $(LIBTOOLS) $(LIBCOMMON)

BINS  := $(B)/odin-router $(B)/odin-shard $(patsubst %,$(B)/odin-%,$(TOOLS))
UNITS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
ITS   := $(patsubst tests/it/%.c,$(B)/it/%,$(IT_SRC))

# build_info: `git describe` at build time (a Docker build without .git passes
# VERSION=...); only common/procmetrics.o is rebuilt when it changes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
$(B)/version.stamp: FORCE
	@mkdir -p $(B); echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
$(B)/obj/common/procmetrics.o: $(B)/version.stamp
$(B)/obj/common/procmetrics.o: CFLAGS += -DODIN_VERSION='"$(VERSION)"'

.PHONY: all deps test unit it check asan fuzz run clean FORCE
.SECONDARY:
all: $(BINS) $(UNITS) $(ITS)

# V=1 shows full command lines
Q := $(if $(V),,@)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(LIBCOMMON): $(call obj,$(COMMON_SRC))
	@rm -f $@; ar rcs $@ $^
$(LIBROUTER): $(call obj,$(ROUTER_SRC)) | $(LIBCOMMON)
	@rm -f $@; ar rcs $@ $^
$(LIBSHARD): $(call obj,$(SHARD_SRC)) | $(LIBCOMMON)
	@rm -f $@; ar rcs $@ $^

$(LIBTSUP): $(call obj,$(SUPPORT_SRC)) | $(LIBCOMMON)
	@rm -f $@; ar rcs $@ $^
$(LIBTOOLS): $(call obj,$(TOOLLIB_SRC)) | $(LIBCOMMON)
	@rm -f $@; ar rcs $@ $^

$(B)/odin-router: $(call obj,router/main.c) $(LIBROUTER) $(LIBCOMMON)
	@$(if $(V),,echo "  LD    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/odin-shard: $(call obj,shard/main.c) $(LIBSHARD) $(LIBCOMMON)
	@$(if $(V),,echo "  LD    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

define TOOL_RULE
$(B)/odin-$(1): $(call obj,$(wildcard tools/$(1)/*.c)) $(LIBTOOLS) $(LIBCOMMON)
	@$$(if $$(V),,echo "  LD    $$@")
	$$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach t,$(TOOLS),$(eval $(call TOOL_RULE,$(t))))

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(ALLLIBS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(ALLLIBS) $(LDLIBS) $(TESTLIBS)
$(B)/it/%: $(B)/obj/tests/it/%.o $(ALLLIBS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD    $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(ALLLIBS) $(LDLIBS) $(TESTLIBS)

# --- entry points ----------------------------------------------------------
deps:
	@tools/deps.sh

unit: all
	@tools/run-tests.sh unit $(B)

it: all
	@tools/run-tests.sh it $(B)

# What CI runs (via README): deps, build, unit + integration, then the same
# under ASan/UBSan, then the benchmark smoke runs.
test:
	@tools/deps.sh
	@$(MAKE) --no-print-directory all
	@tools/run-tests.sh all $(B)
	@$(MAKE) --no-print-directory asan

asan:
	@$(MAKE) --no-print-directory B=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    tools/run-tests.sh all build-asan

check: test

fuzz:
	@tools/deps.sh
	@$(MAKE) --no-print-directory -C tests/fuzz run

run:
	@tools/deps.sh
	@$(MAKE) --no-print-directory all
	@tools/run-stack.sh

clean:
	rm -rf build build-asan tests/fuzz/build

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
