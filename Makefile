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
CFLAGS   += -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter -MMD -MP -pthread -fopenmp-simd
CPPFLAGS += -D_GNU_SOURCE -Icommon -DVERSION=\"$(VERSION)\"
BLIS_LIBS    ?= -lblis
MSGPACK_LIBS ?= $(shell pkg-config --libs msgpack-c 2>/dev/null || pkg-config --libs msgpack 2>/dev/null || echo -lmsgpackc)
# Open MPI (issue 12): linked into every tool; initialised only under a launcher (dist.h).
MPI_CFLAGS ?= $(shell pkg-config --cflags ompi-c 2>/dev/null || echo -I/usr/lib/x86_64-linux-gnu/openmpi/include)
MPI_LIBS   ?= $(shell pkg-config --libs ompi-c 2>/dev/null || echo -lmpi)
LDLIBS   += $(MPI_LIBS) $(MSGPACK_LIBS) $(BLIS_LIBS) -lxxhash -lpcre2-8 -lutf8proc -ljansson -lz -lm -lpthread
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
build/common/dist.o: FILE_CFLAGS = $(MPI_CFLAGS)
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
FUZZ_COMMON   = util rec json tokenizer safetensors runstate model reward pool
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

# ---------------------------------------------------------------------------------------------
# Installation (docs/install.md): make install [PREFIX=/usr/local] [DESTDIR=staging root]
#   $(BINDIR)/srlm                  the front command (scripts/srlm): srlm TOOL|PIPELINE ARGS...
#   $(BINDIR)/srlm-<tool>           each tool under a name that collides with nothing on PATH
#   $(SRLMDIR)/bin/<tool>           the tools under their own names, as in a checkout's bin/
#   $(SRLMDIR)/pipelines/<name>.sh  the pipelines (they find the tools in ../bin, or on the PATH
#                                   that srlm sets), and $(SRLMDIR)/examples -> the examples
#   $(DATADIR)/srlm/examples/       examples/ (the study's task models and tokenizer)
#   $(MANDIR)/man1/                 srlm.1 and srlm-<tool>.1, from --help by help2man (make man)
#   $(COMPLETIONSDIR)/              bash completion: srlm, and srlm-<tool> -> srlm (make completion)
#   $(DOCDIR)/                      README.md and docs/*.md
# $(SRLMDIR)/MANIFEST lists the files installed outside $(SRLMDIR), for make uninstall.
PREFIX         ?= /usr/local
BINDIR         ?= $(PREFIX)/bin
LIBEXECDIR     ?= $(PREFIX)/libexec
DATADIR        ?= $(PREFIX)/share
MANDIR         ?= $(DATADIR)/man
DOCDIR         ?= $(DATADIR)/doc/srlm
COMPLETIONSDIR ?= $(DATADIR)/bash-completion/completions
SRLMDIR         = $(LIBEXECDIR)/srlm
INSTALL        ?= install
MANPAGES        = build/man/srlm.1 $(TOOLS:%=build/man/srlm-%.1)
OUTSIDE         = $(BINDIR)/srlm $(TOOLS:%=$(BINDIR)/srlm-%) $(MANDIR)/man1/srlm.1 \
                  $(TOOLS:%=$(MANDIR)/man1/srlm-%.1) $(COMPLETIONSDIR)/srlm $(TOOLS:%=$(COMPLETIONSDIR)/srlm-%)

man: $(MANPAGES)
build/man/srlm-%.1: bin/% scripts/mkman.sh
	@mkdir -p $(@D)
	scripts/mkman.sh $< srlm-$* $@
build/man/srlm.1: scripts/srlm scripts/mkman.sh bin/to-json
	@mkdir -p $(@D)
	scripts/mkman.sh scripts/srlm srlm $@

completion: build/completion/srlm
build/completion/srlm: $(BIN) $(wildcard pipelines/*.sh) scripts/mkcompletion.sh
	@mkdir -p $(@D)
	scripts/mkcompletion.sh $@

install: all man completion
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SRLMDIR)/bin $(DESTDIR)$(SRLMDIR)/pipelines \
	    $(DESTDIR)$(DATADIR)/srlm/examples $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR)/docs \
	    $(DESTDIR)$(COMPLETIONSDIR)
	$(INSTALL) -m 755 $(BIN) $(DESTDIR)$(SRLMDIR)/bin/
	$(INSTALL) -m 755 $(wildcard pipelines/*.sh) $(DESTDIR)$(SRLMDIR)/pipelines/
	cd examples && find . -type f | while read -r f; do \
	    $(INSTALL) -D -m $$(test -x "$$f" && echo 755 || echo 644) "$$f" "$(DESTDIR)$(DATADIR)/srlm/examples/$$f" || exit 1; done
	ln -sfn $(DATADIR)/srlm/examples $(DESTDIR)$(SRLMDIR)/examples
	sed 's|@SRLM_LIBEXEC@|$(SRLMDIR)|' scripts/srlm >$(DESTDIR)$(BINDIR)/srlm.tmp
	chmod 755 $(DESTDIR)$(BINDIR)/srlm.tmp && mv $(DESTDIR)$(BINDIR)/srlm.tmp $(DESTDIR)$(BINDIR)/srlm
	for t in $(TOOLS); do \
	    printf '#!/bin/sh\n# srlm-%s: the srlm tool %s (srlm %s does the same)\nexec "%s" "$$@"\n' \
	        $$t $$t $$t "$(SRLMDIR)/bin/$$t" >$(DESTDIR)$(BINDIR)/srlm-$$t && chmod 755 $(DESTDIR)$(BINDIR)/srlm-$$t || exit 1; done
	$(INSTALL) -m 644 $(MANPAGES) $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 644 build/completion/srlm $(DESTDIR)$(COMPLETIONSDIR)/srlm
	for t in $(TOOLS); do ln -sfn srlm $(DESTDIR)$(COMPLETIONSDIR)/srlm-$$t || exit 1; done
	$(INSTALL) -m 644 README.md $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 644 $(wildcard docs/*.md) $(DESTDIR)$(DOCDIR)/docs/
	printf '%s\n' $(OUTSIDE) >$(DESTDIR)$(SRLMDIR)/MANIFEST

# Removes what install wrote: the files MANIFEST lists (tools since removed from the source
# included), those of the current tools, and srlm's own directories.
uninstall:
	if [ -f $(DESTDIR)$(SRLMDIR)/MANIFEST ]; then \
	    while read -r f; do rm -f "$(DESTDIR)$$f"; done <$(DESTDIR)$(SRLMDIR)/MANIFEST; fi
	rm -f $(OUTSIDE:%=$(DESTDIR)%)
	rm -rf $(DESTDIR)$(SRLMDIR) $(DESTDIR)$(DATADIR)/srlm $(DESTDIR)$(DOCDIR)

.PHONY: man completion install uninstall
