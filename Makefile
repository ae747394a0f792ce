# srlm — one GNU make file. Tools are tools/<name>.c -> bin/<name>; everything in common/ goes into
# build/libcommon.a; unit tests are tests/unit/test-*.c -> build/tests/bin/test-*.
#
#   make            build the tools (installs missing Debian packages first when run as root)
#   make check      build and run the whole test suite (tests/run.sh)
#   make asan       the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make study      the main job (see README)
#   make bench      benchmarks; results go to docs/performance.md

TOOLS  = $(patsubst tools/%.c,%,$(wildcard tools/*.c))
COMMON = $(patsubst common/%.c,%,$(filter-out common/nn_ref.c,$(wildcard common/*.c)))
UNIT   = $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test-*.c))

VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo 0.0.0)
CC       ?= cc
# -O2 without fast-math: golden values and PyTorch comparisons depend on IEEE semantics.
CFLAGS   ?= -O2 -g -march=x86-64-v2
CFLAGS   += -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter -MMD -MP -pthread -fopenmp
CPPFLAGS += -D_GNU_SOURCE -Icommon -DVERSION=\"$(VERSION)\"
BLIS_LIBS    ?= -lblis
MSGPACK_LIBS ?= $(shell pkg-config --libs msgpack-c 2>/dev/null || pkg-config --libs msgpack 2>/dev/null || echo -lmsgpackc)
LDLIBS   += -fopenmp $(MSGPACK_LIBS) $(BLIS_LIBS) -lxxhash -lpcre2-8 -lutf8proc -ljansson -lm -lpthread
-include config.mk

BIN = $(TOOLS:%=bin/%)
LIB = build/libcommon.a
OBJ = $(COMMON:%=build/common/%.o)
TST = $(UNIT:%=build/tests/bin/%)

all: deps $(BIN)

# Checks the build dependencies; as root on Debian it installs what is missing (scripts/deps.sh).
deps:
	@.ci/deps.sh build

bin/%: build/tools/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)
build/tests/bin/%: build/tests/unit/%.o build/common/nn_ref.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
build/common/nn_ref.o: $(wildcard common/nn_ref.c)
	@mkdir -p $(@D)
	$(if $<,$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<,echo 'static int nn_ref_unused;' | $(CC) -x c -c -o $@ -)
build/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
$(LIB): $(OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

tests: all $(TST)

check: tests
	@.ci/deps.sh test
	tests/run.sh

asan:
	$(MAKE) clean
	$(MAKE) CFLAGS='-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined' \
	        LDFLAGS='-fsanitize=address,undefined' check

study: all
	@.ci/deps.sh study
	pipelines/study.sh

bench: all
	bench/run.sh

clean:
	rm -rf bin build

-include $(shell find build -name '*.d' 2>/dev/null)
.PHONY: all deps tests check asan study bench clean
.DELETE_ON_ERROR:
.SECONDARY:
