# libcfnet — build, test, install.
#
#   make              build lib/libcfnet.so.X.Y.Z (+ symlinks) and lib/libcfnet.a
#   make check        install missing dependencies, build and run every test suite
#   make check SANITIZE=1   the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo         build and run the main example
#   make install PREFIX=/usr/local DESTDIR=   /   make uninstall
#   make install-python PREFIX=/usr/local DESTDIR=   /   make uninstall-python
#   (make also builds the command bin/cfnet, which alone needs libtiff and libpng)
#   make BLAS=blas    link the reference CBLAS instead of OpenBLAS
#   make WERROR=1     treat warnings as errors (CI does)
#   make help         every target in brief; docs/contributing.md has the details

# The version lives once, in the public header.
HEADER  := include/cfnet/cfnet.h
MAJOR   := $(shell sed -n 's/^\#define CFNET_VERSION_MAJOR \([0-9]*\).*/\1/p' $(HEADER))
MINOR   := $(shell sed -n 's/^\#define CFNET_VERSION_MINOR \([0-9]*\).*/\1/p' $(HEADER))
PATCH   := $(shell sed -n 's/^\#define CFNET_VERSION_PATCH \([0-9]*\).*/\1/p' $(HEADER))
VERSION := $(MAJOR).$(MINOR).$(PATCH)

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
PCDIR   ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

CC      ?= cc
BLAS    ?= openblas
ifeq ($(BLAS),openblas)
BLAS_PC := openblas
BLAS_DEF := -DCF_BLAS_OPENBLAS
else ifeq ($(BLAS),blas)
BLAS_PC := blas-netlib
BLAS_DEF :=
else
$(error BLAS must be openblas or blas)
endif

PKGS        := fftw3f $(BLAS_PC) jansson libprotobuf-c
DEP_CFLAGS   = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libfftw3f_threads (part of libfftw3-dev, no .pc file): fftwf_make_planner_thread_safe.
DEP_LIBS     = -lfftw3f_threads $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
# No library function may have a stack frame over 16 KiB (hosts call libcfnet on threads with
# small stacks, see tests/test_stack.c): gcc checks with -Wstack-usage (which also flags
# unbounded alloca/VLAs), clang with -Wframe-larger-than. With WERROR=1 (CI) a larger frame
# fails the build. The command's own files (src/tool) keep to the same limit, checked the same
# way (and by tests/test_cli.sh, whatever WERROR), and so does examples/common/biomarker.c,
# which is linked into it (cfnet synth).
IS_CLANG := $(shell $(CC) --version 2>/dev/null | grep -qi clang && echo 1)
ifeq ($(IS_CLANG),1)
STACK_WARN := -Wframe-larger-than=16384
else
STACK_WARN := -Wstack-usage=16384
endif
ifeq ($(WERROR),1)
WARN    += -Werror
endif
OPT     ?= -O2
CFLAGS  ?=
BASE_CFLAGS := -std=c11 $(OPT) -g -fPIC -fvisibility=hidden $(WARN) -D_POSIX_C_SOURCE=200809L \
               $(BLAS_DEF) -Iinclude -Isrc

ifeq ($(SANITIZE),1)
BUILD   := build/san-$(notdir $(firstword $(CC)))
LIBOUT  := $(BUILD)/lib
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SANITIZE),thread)
BUILD   := build/tsan-$(notdir $(firstword $(CC)))
LIBOUT  := $(BUILD)/lib
SAN     := -fsanitize=thread -fno-omit-frame-pointer
else ifeq ($(COVERAGE),1)
BUILD   := build/coverage
LIBOUT  := $(BUILD)/lib
SAN     := --coverage -O0 -fprofile-update=atomic
else
BUILD   := build/default
LIBOUT  := lib
BINOUT  := bin
SAN     :=
endif
BINOUT  ?= $(BUILD)/bin

# Shared objects must not leave symbols undefined (sanitizer runtimes are resolved at run time,
# so the check is skipped for sanitizer builds).
NO_UNDEF := $(if $(SAN),,-Wl,--no-undefined)

# src/tool is the command (bin/cfnet) and src/mpi the optional MPI component (libcfnet_mpi):
# neither is part of the library.
SRCS    := $(sort $(filter-out src/tool/% src/mpi/%,$(wildcard src/*/*.c)))
OBJS    := $(SRCS:src/%.c=$(BUILD)/obj/%.o)

# The ONNX messages: protoc-c generates C from the onnx.proto Debian ships (libonnx-dev) into
# the build directory; the generated file is compiled without the project's warning flags.
ONNX_PROTO ?= $(firstword $(shell dpkg -L libonnx-dev 2>/dev/null | grep '/onnx\.proto$$') \
                            /usr/include/onnx/onnx.proto)
GEN     := $(BUILD)/gen
GEN_SRC := $(GEN)/onnx.pb-c.c
GEN_OBJ := $(BUILD)/obj/gen/onnx.pb-c.o
OBJS    += $(GEN_OBJ)
DEPS    := $(OBJS:.o=.d)

SONAME  := libcfnet.so.$(MAJOR)
SOLIB   := $(LIBOUT)/libcfnet.so.$(VERSION)
ALIB    := $(LIBOUT)/libcfnet.a

# The command: src/tool/*.c plus the biomarker generator of the examples (cfnet synth), linked
# with the static library, libtiff and libpng. The library itself never links the image libraries.
TOOL_PKGS   := libtiff-4 libpng
TOOL_CFLAGS  = $(shell pkg-config --cflags $(TOOL_PKGS) 2>/dev/null)
TOOL_LIBS    = $(shell pkg-config --libs $(TOOL_PKGS) 2>/dev/null)
TOOL_SRCS   := $(sort $(wildcard src/tool/*.c))
TOOL_OBJS   := $(TOOL_SRCS:src/tool/%.c=$(BUILD)/tool/%.o) $(BUILD)/tool/biomarker.o
TOOL        := $(BINOUT)/cfnet
# The image readers alone (and what they use: util.c, and mpi.c's single-process build for
# the rank util.c names under mpirun), for the image fuzz target.
TOOL_IMAGE_OBJS := $(BUILD)/tool/imageio.o $(BUILD)/tool/util.o $(BUILD)/tool/mpi_single.o

# Examples: every examples/*.c is a program; examples/common/*.c is linked into each.
EX_COMMON := $(sort $(wildcard examples/common/*.c))
EX_SRCS   := $(sort $(wildcard examples/*.c))
EX_BINS   := $(EX_SRCS:examples/%.c=$(BUILD)/examples/%)
EX_OBJS   := $(EX_COMMON:examples/common/%.c=$(BUILD)/excommon/%.o)
# Benchmarks: every bench/*.c is a program (run by bench/run.sh).
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
# Script tests: every executable tests/test_*.sh runs in `make check` after the C suites.
SCRIPT_TESTS := $(sort $(wildcard tests/test_*.sh))

# Fuzz targets: fuzz/fuzz_*.c; replay drivers (any compiler) run the committed corpus in check.
FUZZ_SRCS   := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_REPLAY := $(FUZZ_SRCS:fuzz/fuzz_%.c=$(BUILD)/fuzz/replay_%)
FUZZ_OBJ    := $(BUILD)/fuzz/replay.o
FUZZ_SECONDS ?= 60

# The MPI component: lib/libcfnet_mpi.a from src/mpi with mpicc (driving $(CC)), and the MPI test
# and benchmark programs in tests/mpi; built by `make mpi`, and by `make check` when mpicc exists.
MPICC     ?= mpicc
HAVE_MPI  := $(shell command -v $(MPICC) >/dev/null 2>&1 && echo 1)
MPI_HDR   := include/cfnet/cfnet_mpi.h
MPI_LIB   := $(LIBOUT)/libcfnet_mpi.a
MPI_SRCS  := $(sort $(wildcard src/mpi/*.c))
MPI_OBJS  := $(MPI_SRCS:src/%.c=$(BUILD)/obj/%.o)
MPI_PROGS := $(patsubst tests/mpi/%.c,$(BUILD)/mpi/%,$(sort $(wildcard tests/mpi/*.c)))
MPI_CHECK := $(if $(HAVE_MPI),$(MPI_LIB) $(MPI_PROGS))
# The command is built with mpicc when it exists, so that `mpirun -np N cfnet predict` shards
# its inputs (src/tool/mpi.c; MPI starts only under a launcher).
TOOL_CC   := $(if $(HAVE_MPI),OMPI_CC="$(CC)" $(MPICC),$(CC))
TOOL_MPI  := $(if $(HAVE_MPI),-DCFNET_TOOL_MPI)

# Every compiler run also writes what its source includes (-MMD) into a .d file next to its
# output, read back at the end of this file, so that a changed header rebuilds exactly what
# includes it; -MP adds an empty rule for each header, so that removing a header does not stop
# the next build.
DEPFLAGS := -MMD -MP

# Everything built depends on the flags it was built with ($(BUILD)/flags holds them): after a
# plain build, `make BLAS=blas`, `make WERROR=1`, `make CFLAGS=...` or another compiler rebuild
# instead of keeping what was built before. (The file is rewritten when the flags differ, also
# by `make -n`.)
FLAGS_STAMP := $(BUILD)/flags
FLAGS_NOW    = $(CC) $(MPICC) $(BASE_CFLAGS) $(STACK_WARN) $(SAN) $(CFLAGS) $(LDFLAGS) $(DEPFLAGS) \
               $(DEP_CFLAGS) $(DEP_LIBS) $(TOOL_CFLAGS) $(TOOL_LIBS)
# `make help` alone builds nothing and writes nothing: `make SANITIZE=1 help`, asked by
# tests/test_make_deps.sh in a plain check, rewrote the sanitizer build's stamp with its own
# flags (no WERROR=1), and a sanitizer build running beside that check, or the next one, was
# rebuilt whole.
ONLY_HELP := $(if $(MAKECMDGOALS),$(if $(filter-out help,$(MAKECMDGOALS)),,1))
ifeq ($(ONLY_HELP),)
ifneq ($(file <$(FLAGS_STAMP)),$(strip $(FLAGS_NOW)))
$(shell mkdir -p $(BUILD))
$(file >$(FLAGS_STAMP),$(strip $(FLAGS_NOW)))
endif
endif

TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
TEST_UTIL := $(BUILD)/tests/testutil.o
TEST_CFLAGS = $(shell pkg-config --cflags cmocka 2>/dev/null)
TEST_LIBS   = $(shell pkg-config --libs cmocka 2>/dev/null)

.PHONY: all deps check test-bins examples bench-bins bench docs demo install uninstall clean \
        mpi bench-mpi symbols-check check-valgrind check-threads abi-check abi-baseline coverage fuzz \
        help suite-times

all: $(SOLIB) $(ALIB) $(TOOL)

# The targets in brief (docs/contributing.md has the options and how to run one test). The
# folders are this build's (SANITIZE=1 builds into build/san-<compiler>/ with its own lib/ and
# bin/), as tests/test_make_deps.sh checks.
help:
	@echo 'make, make all        $(LIBOUT)/libcfnet.so, $(LIBOUT)/libcfnet.a and $(BINOUT)/cfnet (not the programs below)'
	@echo 'make test-bins        the C test suites    ($(BUILD)/tests/)'
	@echo 'make examples         the example programs ($(BUILD)/examples/)'
	@echo 'make bench-bins       the benchmarks       ($(BUILD)/bench/)'
	@echo 'make check            build all of the above, then run every suite: the C suites, then tests/test_*.sh'
	@echo '                      ($(CHECK_JOBS) at a time: CHECK_JOBS=N; output in suite order; scripts/run-suites)'
	@echo 'make check-valgrind   the C suites under valgrind (CHECK_JOBS at a time too)'
	@echo 'make suite-times      tests/suite-times.txt from the last check, SANITIZE=1 check, check-valgrind'
	@echo 'make check-threads    the thread tests (with SANITIZE=thread CC=clang)'
	@echo 'make symbols-check    only cfnet_* symbols are exported'
	@echo 'make abi-check        the ABI against abi/ (make abi-baseline after a deliberate change)'
	@echo 'make coverage         line and branch coverage of src/ (build/coverage/)'
	@echo 'make fuzz             libFuzzer runs of fuzz/ (clang; FUZZ_SECONDS=$(FUZZ_SECONDS) each)'
	@echo 'make mpi              $(LIBOUT)/libcfnet_mpi.a and the MPI test programs ($(BUILD)/mpi/); make bench-mpi'
	@echo 'make bench            the benchmarks against PyTorch (about 15 minutes)'
	@echo 'make demo             train the paper'"'"'s five models (DEMO_ARGS=...)'
	@echo 'make docs             the HTML API reference (doxygen) in docs/api/html/'
	@echo 'make install / uninstall, install-python / uninstall-python   (PREFIX=$(PREFIX) DESTDIR=)'
	@echo 'make deps             install missing build dependencies'
	@echo 'make clean            remove build/, lib/ and bin/ (every build)'
	@echo 'Options: WERROR=1 SANITIZE=1|thread CC=clang BLAS=blas OPT=-O0 CFLAGS=... LDFLAGS=...'
	@echo 'One C suite:      make $(BUILD)/tests/test_pool && $(BUILD)/tests/test_pool'
	@echo "One case of it:   CFNET_TEST_FILTER='pool_equivariant*' $(BUILD)/tests/test_pool"
	@echo 'One script test:  tests/test_cli.sh (from the repository root; it tests build/default/ and bin/)'
	@echo 'make help             this list'

# Installs missing build dependencies (no-op when present); see scripts/install-deps.
deps:
	@scripts/install-deps

$(BUILD)/obj/%.o: src/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(STACK_WARN) $(SAN) $(DEP_CFLAGS) $(OBJ_INC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

# (A pattern rule, so that one protoc-c run makes both files: two explicit targets would be two
# rules, and a parallel build would run protoc-c twice at once, each overwriting the other's
# output while it is being compiled.)
$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: $(ONNX_PROTO) | deps
	@mkdir -p $(GEN)
	cp $(ONNX_PROTO) $(GEN)/onnx.proto
	protoc-c --c_out=$(GEN) --proto_path=$(GEN) $(GEN)/onnx.proto

$(GEN_OBJ): $(GEN_SRC)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(OPT) -g -fPIC -fvisibility=hidden $(SAN) $(DEP_CFLAGS) $(CFLAGS) -I$(GEN) \
	    -c $< -o $@

$(BUILD)/obj/io/onnx.o: $(GEN)/onnx.pb-c.h
$(BUILD)/obj/io/onnx.o: OBJ_INC := -I$(GEN)

$(BUILD)/obj/mpi/%.o: src/mpi/%.c $(MPI_HDR) $(HEADER) | deps
	@mkdir -p $(dir $@)
	OMPI_CC="$(CC)" $(MPICC) $(BASE_CFLAGS) $(SAN) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(MPI_LIB): $(MPI_OBJS)
	@mkdir -p $(LIBOUT)
	rm -f $@
	ar rcs $@ $(MPI_OBJS)

$(BUILD)/mpi/%: tests/mpi/%.c $(MPI_LIB) $(ALIB) $(MPI_HDR) $(HEADER)
	@mkdir -p $(dir $@)
	OMPI_CC="$(CC)" $(MPICC) $(BASE_CFLAGS) $(SAN) $(DEP_CFLAGS) $(CFLAGS) $(DEPFLAGS) $< $(MPI_LIB) \
	    $(ALIB) $(DEP_LIBS) -o $@

mpi: all
	@test -n "$(HAVE_MPI)" || { echo "make mpi: needs mpicc (libopenmpi-dev)"; exit 1; }
	$(MAKE) $(MPI_LIB) $(MPI_PROGS)

# Training throughput of 1 rank x 2 threads against 2 ranks x 1 thread (docs/distributed.md).
bench-mpi: mpi
	tests/mpi/bench.sh $(BUILD)/mpi

$(SOLIB): $(OBJS) src/cfnet.map
	@mkdir -p $(LIBOUT)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/cfnet.map $(NO_UNDEF) \
	    $(SAN) $(LDFLAGS) -o $@ $(OBJS) $(DEP_LIBS)
	ln -sf libcfnet.so.$(VERSION) $(LIBOUT)/$(SONAME)
	ln -sf $(SONAME) $(LIBOUT)/libcfnet.so

$(ALIB): $(OBJS)
	@mkdir -p $(LIBOUT)
	rm -f $@
	ar rcs $@ $(OBJS)

$(BUILD)/tool/%.o: src/tool/%.c | deps
	@mkdir -p $(dir $@)
	$(TOOL_CC) $(TOOL_MPI) $(BASE_CFLAGS) $(STACK_WARN) $(SAN) $(DEP_CFLAGS) $(TOOL_CFLAGS) $(CFLAGS) -Iexamples/common $(DEPFLAGS) \
	    -c $< -o $@

# (linked into the command: the same 16 KiB frame limit as its own files)
$(BUILD)/tool/biomarker.o: examples/common/biomarker.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(STACK_WARN) $(SAN) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

# (with mpicc it also links libcfnet_mpi: `mpirun -np N cfnet train`)
TOOL_MPI_LIB := $(if $(HAVE_MPI),$(MPI_LIB))
$(TOOL): $(TOOL_OBJS) $(TOOL_MPI_LIB) $(ALIB)
	@mkdir -p $(dir $@)
	$(TOOL_CC) $(SAN) $(LDFLAGS) -o $@ $(TOOL_OBJS) $(TOOL_MPI_LIB) $(ALIB) $(TOOL_LIBS) $(DEP_LIBS)

$(TEST_UTIL): tests/testutil.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DEP_CFLAGS) $(TEST_CFLAGS) $(CFLAGS) -Isrc $(DEPFLAGS) \
	    -DTU_DEFAULT_OUTDIR='"$(abspath $(BUILD))/test-output"' -c $< -o $@

# Tests link the static library so they can also reach internal helpers.
$(BUILD)/tests/%: tests/%.c $(TEST_UTIL) $(ALIB) | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DEP_CFLAGS) $(TEST_CFLAGS) $(CFLAGS) -Isrc $(DEPFLAGS) $< $(TEST_UTIL) \
	    $(ALIB) $(TEST_LIBS) $(DEP_LIBS) -o $@

# Unit tests of the command's parts (tests/test_tool_*.c) link its objects (all but main) and
# the image libraries.
# (mpi.o is replaced by its single-process build, so that the tests link no MPI.)
TOOL_PART_OBJS := $(filter-out $(BUILD)/tool/main.o $(BUILD)/tool/mpi.o,$(TOOL_OBJS)) \
                  $(BUILD)/tool/mpi_single.o
$(BUILD)/tool/mpi_single.o: src/tool/mpi.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(STACK_WARN) $(SAN) $(DEP_CFLAGS) $(TOOL_CFLAGS) $(CFLAGS) $(DEPFLAGS) -c $< -o $@
$(BUILD)/tests/test_tool_%: tests/test_tool_%.c $(TEST_UTIL) $(TOOL_PART_OBJS) $(ALIB) | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DEP_CFLAGS) $(TEST_CFLAGS) $(TOOL_CFLAGS) $(CFLAGS) -Isrc/tool $(DEPFLAGS) $< \
	    $(TEST_UTIL) $(TOOL_PART_OBJS) $(ALIB) $(TEST_LIBS) $(TOOL_LIBS) $(DEP_LIBS) -o $@

$(OBJS) $(MPI_OBJS) $(MPI_PROGS) $(SOLIB) $(TOOL_OBJS) $(BUILD)/tool/mpi_single.o $(TOOL) \
    $(TEST_UTIL) $(TEST_BINS) $(EX_OBJS) $(EX_BINS) $(BENCH_BINS) $(FUZZ_OBJ) $(FUZZ_REPLAY): $(FLAGS_STAMP)

test-bins: $(TEST_BINS)

# examples/common/*.c, compiled once for the examples and the benchmarks.
$(BUILD)/excommon/%.o: examples/common/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DEP_CFLAGS) $(CFLAGS) -Iexamples/common $(DEPFLAGS) -c $< -o $@

$(BUILD)/examples/%: examples/%.c $(EX_OBJS) $(ALIB) | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DEP_CFLAGS) $(CFLAGS) -Iexamples/common $(DEPFLAGS) $< $(EX_OBJS) \
	    $(ALIB) $(DEP_LIBS) -o $@

examples: $(EX_BINS)

$(BUILD)/bench/%: bench/%.c $(EX_OBJS) $(ALIB) | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DEP_CFLAGS) $(CFLAGS) -Isrc -Iexamples/common $(DEPFLAGS) $< $(EX_OBJS) \
	    $(ALIB) $(DEP_LIBS) -o $@

bench-bins: $(BENCH_BINS)

$(FUZZ_OBJ): fuzz/replay.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/fuzz/replay_%: fuzz/fuzz_%.c $(FUZZ_OBJ) $(ALIB) | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DEP_CFLAGS) $(CFLAGS) $(DEPFLAGS) $< $(FUZZ_OBJ) $(ALIB) $(DEP_LIBS) -o $@

# The image readers' target also links the command's image code and the image libraries.
$(BUILD)/fuzz/replay_image: fuzz/fuzz_image.c $(FUZZ_OBJ) $(TOOL_IMAGE_OBJS) $(ALIB) | deps
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) $(DEP_CFLAGS) $(TOOL_CFLAGS) $(CFLAGS) -Isrc/tool $(DEPFLAGS) $< $(FUZZ_OBJ) \
	    $(TOOL_IMAGE_OBJS) $(ALIB) $(TOOL_LIBS) $(DEP_LIBS) -o $@

# libFuzzer builds with clang (library compiled in, instrumented); each target runs for
# FUZZ_SECONDS on a copy of its corpus (new inputs are not written back into the tree). A
# target's corpus is fuzz/corpus_<name> when that directory exists (fuzz_image:
# fuzz/corpus_image), else the shared model corpus fuzz/corpus; its dictionary (-dict=)
# fuzz/dict_<name>.txt when that file exists, else, for the targets of the model corpus, the
# model format's words fuzz/dict_model.txt (tests/test_fuzz_dict.sh).
fuzz: $(GEN_SRC) | deps
	@command -v clang >/dev/null || { echo "make fuzz: needs clang and libclang-rt-14-dev"; exit 1; }
	@mkdir -p build/fuzz
	@for f in $(FUZZ_SRCS); do \
	    name=$$(basename $$f .c); \
	    short=$${name#fuzz_}; extra=""; corpus=fuzz/corpus; dict=fuzz/dict_model.txt; \
	    if [ "$$short" = image ]; then \
	        extra="-Isrc/tool $(TOOL_CFLAGS) src/tool/imageio.c src/tool/util.c src/tool/mpi.c $(TOOL_LIBS)"; fi; \
	    if [ -d fuzz/corpus_$$short ]; then corpus=fuzz/corpus_$$short; dict=""; fi; \
	    if [ -f fuzz/dict_$$short.txt ]; then dict=fuzz/dict_$$short.txt; fi; \
	    clang -std=c11 -O1 -g -Iinclude -Isrc -D_POSIX_C_SOURCE=200809L -fsanitize=fuzzer,address,undefined \
	        -fno-sanitize-recover=all $(DEP_CFLAGS) -I$(GEN) $$f $(SRCS) $(GEN_SRC) $$extra $(DEP_LIBS) -o build/fuzz/$$name || exit 1; \
	    rm -rf build/fuzz/corpus-$$name; cp -r $$corpus build/fuzz/corpus-$$name; \
	    echo "== fuzzing $$name for $(FUZZ_SECONDS) s"; \
	    build/fuzz/$$name -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=65536 \
	        -print_final_stats=1 $${dict:+-dict=$$dict} build/fuzz/corpus-$$name || exit 1; \
	done

# Every exported symbol must be cfnet_* (and versioned, see src/cfnet.map).
symbols-check: $(SOLIB)
	@bad=$$(nm -D --defined-only $(SOLIB) | awk '$$2 ~ /^[TDBRVW]$$/ {print $$3}' | grep -v '^cfnet_' | grep -v '^CFNET_' || true); \
	if [ -n "$$bad" ]; then echo "symbols-check: non-cfnet_ exports: $$bad"; exit 1; fi; \
	echo "symbols-check: all $$(nm -D --defined-only $(SOLIB) | grep -c ' T cfnet_') exported functions are cfnet_*"

# Variables handed to script tests.
export CFNET_BUILD := $(BUILD)
export CFNET_LIBDIR := $(abspath $(LIBOUT))
export CFNET_SANITIZE := $(SANITIZE)
export CFNET_TOOL := $(abspath $(TOOL))

# Every skip said through tests/skip_lib.sh or TU_SKIP_MISSING is listed again at the end. With
# CFNET_TEST_STRICT=1 (CI's plain check) a check skipped because something is not installed fails.
# check and check-valgrind run CHECK_JOBS suites at a time (default: the number of processors;
# CHECK_JOBS=1: one after another, output as it comes), each with its own CFNET_TEST_OUTDIR
# ($(BUILD)/test-output/<suite>), their output in suite order (scripts/run-suites).
# They start longest first by the last run's times, and on a first run (a fresh clone: CI) by
# the committed ones of tests/suite-times.txt (set check, sanitize for instrumented builds,
# valgrind); `make suite-times` refreshes that file from the last runs of the three.
CHECK_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
SUITE_TIMES := tests/suite-times.txt
check: all test-bins examples bench-bins symbols-check $(FUZZ_REPLAY) $(MPI_CHECK)
	@scripts/run-suites -j '$(CHECK_JOBS)' --outdir $(BUILD)/test-output --skiplog $(BUILD)/test-output/skipped.txt \
	    --default-times $(SUITE_TIMES) --times-set $(if $(SAN),sanitize,check) $(TEST_BINS) $(SCRIPT_TESTS)

# Every C suite under valgrind memcheck; any error and any leak kind (definite, indirect,
# possible, still reachable) fails. tests/valgrind.supp suppresses only FFTW's process-lifetime
# planner state, each entry explained there.
VALGRIND_FLAGS := -q --error-exitcode=99 --leak-check=full --show-leak-kinds=all \
                  --errors-for-leak-kinds=all --suppressions=tests/valgrind.supp
# The fuzz targets' replay drivers run their committed corpora too (uninitialised values that a
# fuzzing run sees only by chance are always errors here); their harnesses keep one context for
# the process, so only definite and indirect leaks count for them.
VALGRIND_REPLAY_FLAGS := -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
                         --errors-for-leak-kinds=definite,indirect --suppressions=tests/valgrind.supp
check-valgrind: all test-bins $(FUZZ_REPLAY)
	@command -v valgrind >/dev/null || { echo "check-valgrind: needs valgrind"; exit 1; }
	@scripts/run-suites -j '$(CHECK_JOBS)' --outdir $(BUILD)/test-output --summary valgrind \
	    --default-times $(SUITE_TIMES) \
	    --header 'echo "== valgrind $$1"' \
	    --run 'CFNET_TEST_UNDER_VALGRIND=1 valgrind $(VALGRIND_FLAGS) "$$1" >/dev/null' $(TEST_BINS) \
	    --header 'echo "== valgrind $$1 $$(c=fuzz/corpus_$${1##*/replay_}; [ -d $$c ] || c=fuzz/corpus; echo $$c)"' \
	    --run 'c=fuzz/corpus_$${1##*/replay_}; [ -d $$c ] || c=fuzz/corpus; valgrind $(VALGRIND_REPLAY_FLAGS) "$$1" $$c >/dev/null' \
	    $(FUZZ_REPLAY)

# tests/suite-times.txt from the last runs' times: each set's suites that its run timed take
# that time, the others (a run of some suites, or none: no times file) keep their committed
# line; the suites of today only, longest first.
SUITE_TIMES_FROM := check:build/default/test-output/suite-times.txt \
                    sanitize:build/san-$(notdir $(firstword $(CC)))/test-output/suite-times.txt \
                    valgrind:build/default/test-output/suite-times-valgrind.txt
suite-times:
	@{ grep '^#' $(SUITE_TIMES); for f in $(SUITE_TIMES_FROM); do k=$${f%%:*} t=$${f#*:}; \
	    [ -s "$$t" ] || t=/dev/null; \
	    awk -v set=$$k -v times="$$t" -v now="$(patsubst $(BUILD)/%,%,$(TEST_BINS) $(FUZZ_REPLAY)) $(SCRIPT_TESTS)" \
	        'BEGIN { n = split(now, a, " "); for (i = 1; i <= n; i++) today[a[i]] = 1 } \
	        FILENAME == times { sub(/^build\/[^\/]*\//, "", $$2); \
	            if (($$2 in today) && !($$2 in timed)) { timed[$$2] = 1; print set, $$1, $$2 }; next } \
	        $$1 == set && ($$3 in today) && !($$3 in timed) && !($$3 in kept) { kept[$$3] = 1; print }' \
	        "$$t" $(SUITE_TIMES) | sort -k2,2nr -k3,3; done; } >$(SUITE_TIMES).part && \
	    mv $(SUITE_TIMES).part $(SUITE_TIMES) && echo "suite-times: $(SUITE_TIMES) written"

# The thread tests under ThreadSanitizer (use with SANITIZE=thread).
check-threads: $(BUILD)/tests/test_threads $(BUILD)/tests/test_thread_pool
	CFNET_TEST_OUTDIR=$(BUILD)/test-output $(BUILD)/tests/test_threads
	CFNET_TEST_OUTDIR=$(BUILD)/test-output $(BUILD)/tests/test_thread_pool

# ABI: compare the built library with the committed baseline: new symbols are fine, any change
# to an existing function or type fails. Every export must carry a CFNET_ version node.
ABI_BASELINE := abi/libcfnet.so.$(MAJOR).abi
abi-check: $(SOLIB)
	@command -v abidiff >/dev/null || { echo "abi-check: needs abigail-tools"; exit 1; }
	abidw --no-corpus-path --headers-dir include/cfnet $(SOLIB) > $(BUILD)/current.abi
	@abidiff --no-added-syms --headers-dir1 include/cfnet --headers-dir2 include/cfnet \
	    $(ABI_BASELINE) $(BUILD)/current.abi > $(BUILD)/abidiff.txt; \
	rc=$$?; if [ $$rc -ne 0 ]; then cat $(BUILD)/abidiff.txt; \
	    echo "abi-check: the ABI of existing symbols changed (abidiff $$rc); additions are fine,"; \
	    echo "abi-check: changes are not (after a deliberate change: make abi-baseline)"; exit 1; fi
	@unversioned=$$(objdump -T $(SOLIB) | awk '$$4 ~ /^\.text|^\.data|^\.bss|^\.rodata/ && $$6 !~ /^CFNET_/ && $$7 ~ /^cfnet_/ {print $$7}'); \
	if [ -n "$$unversioned" ]; then echo "abi-check: unversioned exports: $$unversioned"; exit 1; fi; \
	echo "abi-check: ABI compatible with $(ABI_BASELINE); all exports carry a CFNET_ version node"

abi-baseline: $(SOLIB)
	@mkdir -p abi
	abidw --no-corpus-path --headers-dir include/cfnet $(SOLIB) > $(ABI_BASELINE)

# Line and branch coverage of src/ from the test suites (gcovr).
coverage:
	$(MAKE) COVERAGE=1 check
	gcovr -r . --filter src/ --object-directory build/coverage/obj --gcov-ignore-parse-errors --print-summary -o build/coverage/summary.txt; tail -3 build/coverage/summary.txt

# The main job: trains the paper's five models on generated biomarker images.
DEMO_ARGS ?=
demo: all $(BUILD)/examples/demo
	$(BUILD)/examples/demo $(DEMO_ARGS)

bench: all bench-bins
	bench/run.sh

docs:
	@command -v doxygen >/dev/null || { echo "make docs: needs doxygen (apt-get install doxygen)"; exit 1; }
	doxygen docs/Doxyfile
	@echo "API reference in docs/api/html/index.html"

# Installed files. The .pc files and the CMake package list the libraries libcfnet needs as
# link flags only (Libs.private, not Requires.private), so a consumer's compile line gets no
# dependency include paths; cfnet-static.pc names the archive itself, so linking statically
# never picks up the shared library. The CMake package locates everything relative to itself.
CMAKEDIR   ?= $(LIBDIR)/cmake/cfnet
INST_DEP_LIBS = $(strip -lfftw3f_threads $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread)
PREFIX_REL  = $(shell realpath -m --relative-to=$(CMAKEDIR) $(PREFIX))
LIBDIR_REL  = $(shell realpath -m --relative-to=$(PREFIX) $(LIBDIR))
INCDIR_REL  = $(shell realpath -m --relative-to=$(PREFIX) $(INCDIR))
# In the .pc files a directory under PREFIX is written as ${prefix}/..., so that
# `pkg-config --define-prefix` (pkgconf) finds a moved or DESTDIR-staged tree from the .pc file's
# own location; a directory set elsewhere stays absolute. A PREFIX written with a trailing slash
# (PREFIX=/usr/ LIBDIR=/usr/lib) still has LIBDIR under it.
pc_pfx = $(patsubst %/,%,$(PREFIX))
pc_dir = $(if $(filter $(pc_pfx)/%,$(1)),$${prefix}/$(patsubst /%,%,$(patsubst $(pc_pfx)/%,%,$(1))),$(1))
SUBST = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCDIR@|$(INCDIR)|g' \
    -e 's|@PC_LIBDIR@|$(call pc_dir,$(LIBDIR))|g' -e 's|@PC_INCDIR@|$(call pc_dir,$(INCDIR))|g' \
    -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' -e 's|@DEP_LIBS@|$(INST_DEP_LIBS)|g' \
    -e 's|@SONAME@|$(SONAME)|g' -e 's|@SOFILE@|libcfnet.so.$(VERSION)|g' \
    -e 's|@PREFIX_REL@|$(PREFIX_REL)|g' -e 's|@LIBDIR_REL@|$(LIBDIR_REL)|g' \
    -e 's|@INCDIR_REL@|$(INCDIR_REL)|g' \
    -e 's|@DEP_LINK@|$(subst $(space),;,$(filter -l%,$(INST_DEP_LIBS)))|g' \
    -e 's|@DEP_LINKDIRS@|$(subst $(space),;,$(patsubst -L%,%,$(filter -L%,$(INST_DEP_LIBS))))|g' \
    -e 's|@SIZEOF_VOID_P@|$(shell echo __SIZEOF_POINTER__ | $(CC) -E -P - | tail -1)|g'
empty :=
space := $(empty) $(empty)
LDCONFIG ?=

# Earlier releases of the same SONAME left in LIBDIR (libcfnet.so.0.1.0 under 0.2.0): real files
# named libcfnet.so.MAJOR.N.N (digits only) that the SONAME link no longer points at. Nothing
# loads them, uninstall would never remove them, and ldconfig would point the SONAME link at
# the newest of them again (after a downgrade, the newer file). Symlinks and any other name stay.
REMOVE_STALE_SOLIBS = d='$(DESTDIR)$(LIBDIR)'; cur=$$(readlink "$$d/$(SONAME)"); \
    for f in "$$d"/libcfnet.so.$(MAJOR).*.*; do \
        n=$${f\#\#*/}; v=$${n\#libcfnet.so.$(MAJOR).}; \
        case "$$v" in *[!0-9.]* | .* | *. | *..* | *.*.*) continue ;; *.*) ;; *) continue ;; esac; \
        if [ -f "$$f" ] && [ ! -L "$$f" ] && [ "$$n" != "$$cur" ]; then \
            rm -f "$$f" && echo "make install: removed $$f (another release; $(SONAME) now points at $$cur)"; \
        fi; \
    done

# Directories install created, for uninstall (scripts/install-dirs).
DIRS_MANIFEST = $(CMAKEDIR)/installed-directories

# The recipes split paths at spaces (an install would write elsewhere, an uninstall remove other
# files): refuse such a PREFIX, DESTDIR or directory before either starts.
NO_SPACES = $(if $(findstring $(space),$(DESTDIR)$(PREFIX)$(LIBDIR)$(INCDIR)$(PCDIR)$(CMAKEDIR)$(BINDIR)$(MANDIR)),$(error \
    $@: PREFIX and DESTDIR and the directories cannot hold a space: PREFIX='$(PREFIX)' \
    DESTDIR='$(DESTDIR)'; nothing was done))

install: $(SOLIB) $(ALIB) $(TOOL)
	$(NO_SPACES)
	scripts/install-dirs create $(DIRS_MANIFEST) "$(DESTDIR)" $(LIBDIR) $(INCDIR)/cfnet $(PCDIR) \
	    $(CMAKEDIR) $(BINDIR) $(MANDIR)/man1
	install -m 755 $(TOOL) $(DESTDIR)$(BINDIR)/cfnet
	install -m 644 docs/cfnet.1 $(DESTDIR)$(MANDIR)/man1/cfnet.1
	install -m 644 $(HEADER) $(DESTDIR)$(INCDIR)/cfnet/cfnet.h
	install -m 755 $(SOLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libcfnet.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libcfnet.so
	@$(REMOVE_STALE_SOLIBS)
	install -m 644 $(ALIB) $(DESTDIR)$(LIBDIR)/
	$(SUBST) pkgconfig/cfnet.pc.in > $(DESTDIR)$(PCDIR)/cfnet.pc
	$(SUBST) pkgconfig/cfnet-static.pc.in > $(DESTDIR)$(PCDIR)/cfnet-static.pc
	$(SUBST) cmake/cfnetConfig.cmake.in > $(DESTDIR)$(CMAKEDIR)/cfnetConfig.cmake
	$(SUBST) cmake/cfnetConfigVersion.cmake.in > $(DESTDIR)$(CMAKEDIR)/cfnetConfigVersion.cmake
	@if [ -z "$(DESTDIR)" ]; then \
	    LDCONFIG=$(LDCONFIG) scripts/ldconfig-note $(LIBDIR) $(PCDIR) $(CMAKEDIR); fi

# Removes the installed files, then the directories install created if they are empty.
uninstall:
	$(NO_SPACES)
	rm -f $(DESTDIR)$(INCDIR)/cfnet/cfnet.h $(DESTDIR)$(LIBDIR)/libcfnet.so.$(VERSION) \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libcfnet.so \
	    $(DESTDIR)$(LIBDIR)/libcfnet.a $(DESTDIR)$(PCDIR)/cfnet.pc \
	    $(DESTDIR)$(PCDIR)/cfnet-static.pc $(DESTDIR)$(CMAKEDIR)/cfnetConfig.cmake \
	    $(DESTDIR)$(CMAKEDIR)/cfnetConfigVersion.cmake \
	    $(DESTDIR)$(BINDIR)/cfnet $(DESTDIR)$(MANDIR)/man1/cfnet.1
	@scripts/install-dirs remove $(DIRS_MANIFEST) "$(DESTDIR)"

# The Python package (python/pyproject.toml) into PYSITE: Debian's dist-packages when that is
# on the interpreter's path for PREFIX (/usr/local), else PREFIX/lib/pythonX.Y/site-packages.
# Built from a copy of python/ and the header in the build directory (the version comes from
# the header), with the interpreter's own setuptools and no network.
PYTHON ?= /usr/bin/python3
PYSITE ?= $(shell $(PYTHON) -c 'import sys; p = "$(PREFIX)/lib/python%d.%d/" % sys.version_info[:2]; print(p + ("dist-packages" if p + "dist-packages" in sys.path else "site-packages"))')
PY_MANIFEST = $(PYSITE)/cfnet-$(VERSION).installed-directories
# As NO_SPACES for install: the recipes split PYSITE (from PREFIX) and DESTDIR at spaces.
PY_NO_SPACES = $(if $(findstring $(space),$(DESTDIR)$(PREFIX)$(PYSITE)),$(error \
    $@: PREFIX and DESTDIR and the directories cannot hold a space: PREFIX='$(PREFIX)' \
    DESTDIR='$(DESTDIR)' PYSITE='$(PYSITE)'; nothing was done))

.PHONY: install-python uninstall-python
install-python:
	$(PY_NO_SPACES)
	rm -rf $(BUILD)/python-src
	mkdir -p $(BUILD)/python-src/include/cfnet
	cp -r python $(BUILD)/python-src/python
	rm -rf $(BUILD)/python-src/python/tests $(BUILD)/python-src/python/build
	cp $(HEADER) $(BUILD)/python-src/include/cfnet/
	scripts/install-dirs create $(PY_MANIFEST) "$(DESTDIR)" $(PYSITE)
	$(PYTHON) -m pip install --quiet --no-build-isolation --no-index --no-deps --upgrade \
	    --no-warn-script-location --root-user-action=ignore --target $(DESTDIR)$(PYSITE) \
	    $(BUILD)/python-src/python
	@if [ -z "$(DESTDIR)" ] && ! $(PYTHON) -c 'import sys; sys.exit("$(PYSITE)" not in sys.path)'; then \
	    echo "make install-python: $(PYSITE) is not on $(PYTHON)'s path: set PYTHONPATH=$(PYSITE)"; fi

uninstall-python:
	$(PY_NO_SPACES)
	@rec=$(DESTDIR)$(PYSITE)/cfnet-$(VERSION).dist-info/RECORD; \
	if [ -f "$$rec" ]; then \
	    cut -d, -f1 "$$rec" | while IFS= read -r f; do rm -f "$(DESTDIR)$(PYSITE)/$$f"; done; \
	fi; \
	rm -rf $(DESTDIR)$(PYSITE)/cfnet/__pycache__ $(DESTDIR)$(PYSITE)/cfnet-$(VERSION).dist-info; \
	rmdir $(DESTDIR)$(PYSITE)/cfnet 2>/dev/null || true
	@scripts/install-dirs remove $(PY_MANIFEST) "$(DESTDIR)" uninstall-python

clean:
	rm -rf build lib bin

# What each object and program includes, as the compiler found it (-MMD; -MP keeps a removed
# header from stopping the next build).
-include $(DEPS) $(TOOL_OBJS:.o=.d) $(BUILD)/tool/mpi_single.d $(MPI_OBJS:.o=.d) \
    $(MPI_PROGS:=.d) $(TEST_UTIL:.o=.d) $(TEST_BINS:=.d) $(EX_OBJS:.o=.d) $(EX_BINS:=.d) \
    $(BENCH_BINS:=.d) $(FUZZ_OBJ:.o=.d) $(FUZZ_REPLAY:=.d)
