# srlm — one GNU make file. Tools are tools/<name>.c -> bin/<name>; everything in common/ goes into
# build/libcommon.a; unit tests are tests/unit/test-*.c -> build/tests/bin/test-*.
#
#   make            build the tools (installs missing Debian packages first when run as root)
#   make check      build and run the whole test suite (tests/run.sh)
#   make asan       the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make study      the main job (see README)
#   make bench      benchmarks; results go to docs/performance.md
#   make fuzz       the libFuzzer harnesses (tests/fuzz/), a long run of each (tests/fuzz/run.sh)

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
LDLIBS   += -fopenmp $(MSGPACK_LIBS) $(BLIS_LIBS) -lxxhash -lpcre2-8 -lutf8proc -ljansson -lz -lm -lpthread
-include config.mk

BIN = $(TOOLS:%=bin/%)
LIB = build/libcommon.a
OBJ = $(COMMON:%=build/common/%.o)
TST = $(UNIT:%=build/tests/bin/%)

all: deps $(BIN)

# Checks the build dependencies; as root on Debian it installs what is missing (.ci/deps.sh).
# Every object waits for it (the order-only `| deps` below): with -j, `all: deps $(BIN)` alone let
# the compiler start before the -dev packages were installed. Order-only, so it never makes an
# object out of date.
deps:
	@.ci/deps.sh build

bin/%: build/tools/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)
build/tests/bin/%: build/tests/unit/%.o build/common/nn_ref.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
build/common/nn_ref.o: $(wildcard common/nn_ref.c) | deps
	@mkdir -p $(@D)
	$(if $<,$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<,echo 'static int nn_ref_unused;' | $(CC) -x c -c -o $@ -)
build/%.o: %.c | deps
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(FILE_CFLAGS) -c -o $@ $<

# Per-file flags (FILE_CFLAGS, kept apart from CFLAGS so that `make CFLAGS=...` keeps them).
# optim.c: -fno-math-errno, so that sqrtf in the AdamW loop is the sqrtps instruction instead of a
# libm call that may set errno, which keeps the loop from vectorising. The results do not change
# (sqrtps is correctly rounded like sqrtf) and nothing reads errno after the optimizer step.
# No fast-math here or anywhere: the update must stay the torch formula to the bit.
build/common/optim.o: FILE_CFLAGS = -fno-math-errno
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

# Fuzz harnesses (tests/fuzz/fuzz-*.c -> build/fuzz/bin/fuzz-*): clang with libFuzzer, ASan and
# UBSan, linked against a separately built, instrumented copy of the common/ objects they need.
# tests/fuzz/trap.h explains FUZZ_WRAP (die() -> exit() must not end the fuzzing process).
# Debian's clang-14 package installs only clang-14; the clang package adds the plain name.
ifeq ($(origin FUZZ_CC),undefined)
FUZZ_CC      := $(or $(shell command -v clang 2>/dev/null),$(shell command -v clang-14 2>/dev/null),clang)
endif
FUZZ_HARNESS  = $(patsubst tests/fuzz/fuzz-%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
FUZZ_COMMON   = util rec json tokenizer safetensors runstate model reward
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -O1 -g -std=c11 -Wall -Wno-unused-parameter -Wno-unknown-pragmas -MMD -MP $(FUZZ_SAN)
FUZZ_WRAP     = $(foreach f,exit open close fopen fdopen open_memstream fclose mmap munmap \
                  pcre2_compile_8 pcre2_code_free_8 pcre2_jit_stack_create_8 pcre2_jit_stack_free_8,-Wl,--wrap=$(f))
FUZZ_LIBS     = $(MSGPACK_LIBS) -lxxhash -lpcre2-8 -lutf8proc -ljansson -lz -lm -lpthread
FUZZ_BIN      = $(FUZZ_HARNESS:%=build/fuzz/bin/fuzz-%)

build/fuzz/common/%.o: common/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/libcommon.a: $(FUZZ_COMMON:%=build/fuzz/common/%.o)
	@rm -f $@
	$(AR) rcs $@ $^
build/fuzz/tests/%.o: tests/fuzz/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -Itests/fuzz $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/bin/fuzz-%: build/fuzz/tests/fuzz-%.o build/fuzz/tests/trap.o build/fuzz/libcommon.a
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer $(FUZZ_WRAP) -o $@ $^ $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BIN)

# A long run of every harness (FUZZ_SECONDS each, default 300); crashes go to build/fuzz/crashes.
fuzz: fuzz-build
	tests/fuzz/run.sh --long $${FUZZ_SECONDS:-300}

study: all
	@.ci/deps.sh study
	pipelines/study.sh

bench: all
	bench/run.sh

clean:
	rm -rf bin build

-include $(shell find build -name '*.d' 2>/dev/null)
.PHONY: all deps tests check asan fuzz fuzz-build study bench clean
.DELETE_ON_ERROR:
.SECONDARY:
