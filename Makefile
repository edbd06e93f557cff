# tandem: one top-level Makefile.  Each source folder contributes one
# fragment, <folder>/module.mk, included below in layer order (bottom
# first); a fragment appends to the variables below and declares its
# module library with the external libraries that library needs.
#
#   make              build every program (-Wall -Wextra -Werror)
#   make test         install missing packages, build, run the whole suite,
#                     including an ASan+UBSan build of the unit tests
#   make test-unit    unit tests only (fast)
#   make test-faults  the randomized fault tests alone, N=count times
#   make asan         the unit tests under ASan+UBSan
#   make tsan         the threaded unit tests under ThreadSanitizer
#   make fuzz         libFuzzer targets, short runs
#   make bench        benchmarks, printed as ratios against a same-run baseline
#                     (medians of interleaved samples with min/max; under
#                     15 minutes); QUICK=1: the fast pass (fewer samples,
#                     shorter runs)
#   make demo         two regions, a replicated volume, a failover (needs root)
#   make deps         install missing Debian packages (apt-get)
#
# Build outputs go to $(B) (default build/); the sanitizer builds use
# build/asan and build/tsan.  Generated protobuf-c code lives in $(B)/gen,
# never in git.

B        ?= build
export B
CC       ?= cc
OPT      ?= -O2
SANITIZE ?=

CPPFLAGS += -D_GNU_SOURCE -I. -Ijournal/base -Ijournal/store -Ijournal \
            -Iproto -I$(B)/gen
CFLAGS   += -std=gnu11 -g $(OPT) -Wall -Wextra -Werror -Wstrict-prototypes \
            -Wno-unused-parameter -Wno-missing-field-initializers \
            -fno-strict-aliasing -pthread
LDFLAGS  += -pthread
LDLIBS   +=

ifeq ($(FUZZ),1)
CC      := clang
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -Wno-unknown-warning-option
LDFLAGS += -fsanitize=address,undefined
endif

ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# ThreadSanitizer (make tsan): gcc's libtsan; everything of ours, the
# generated protobuf-c code included, is instrumented, the system libraries
# (gRPC core, librados, sqlite) are not (tests/tsan.supp).
ifeq ($(SANITIZE),thread)
CFLAGS  += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif

# Object files of sources: $(call objs,a.c b.c)
objs = $(patsubst %.c,$(B)/obj/%.o,$(1))
# The external libraries of the module libraries in a list: a fragment
# sets LIBS_libNAME next to $(B)/libNAME.a, so a program links exactly the
# system libraries of the modules it uses (check with ldd).
extlibs = $(sort $(foreach a,$(filter %.a,$(1)),$(LIBS_$(basename $(notdir $(a))))))
# Link a program or test: objects first, then the module libraries the
# target depends on (grouped, so their order does not matter), then their
# external libraries.
MODLIBS = -Wl,--start-group $(filter %.a,$^) -Wl,--end-group \
          $(call extlibs,$^) $(LDLIBS)
LINK = $(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(MODLIBS)

# Module libraries: a fragment declares `$(B)/libNAME.a: $(call objs,...)`
# and targets depend on the libraries they need, so one module's work in
# progress never breaks another module's build.
#   libbase    logging and small shared helpers    journal/base/
#   libstore   object store: sqlite + rados         journal/store/
#   libjr      volume image and change journal     journal/
#   libregions the region map                      journal/
#   libgen     protobuf-c code of proto/*.proto and the well-known types
#   librpc     the gRPC C core layer               proto/
#   libnode    the node data path                  csi/datapath/
#   libcsi     the CSI services                    csi/
#   librep     the replicator engine               replicator/
PROTOS     := $(wildcard proto/*.proto)
PROGS      :=   # programs built by `make`
UNIT_TESTS :=   # test programs, each runs by itself and exits 0 on success
E2E_TESTS  :=   # shell scripts (TAP), run by tests/run-e2e.sh
FAULT_TESTS :=  # randomized fault tests, also run alone by `make test-faults`
TSAN_TESTS :=   # unit tests also built and run under ThreadSanitizer
FUZZERS    :=   # libFuzzer targets: <name> built from tests/fuzz/<name>.c
BENCHES    :=   # bench programs/scripts, run by `make bench`

all: programs

include journal/base/module.mk
include journal/store/module.mk
include journal/module.mk
include proto/module.mk
include csi/datapath/module.mk
include csi/module.mk
include replicator/module.mk
include replicator/ctl/module.mk
include tests/module.mk
include bench/module.mk

GEN_C    := $(patsubst %.proto,$(B)/gen/%.pb-c.c,$(notdir $(PROTOS))) \
            $(B)/gen/google/protobuf/wrappers.pb-c.c \
            $(B)/gen/google/protobuf/timestamp.pb-c.c
GEN_H    := $(GEN_C:.c=.h) $(B)/gen/google/protobuf/descriptor.pb-c.h

programs: $(PROGS)

# Keep generated sources and headers (they are intermediate to make).
.SECONDARY:

$(B)/libgen.a: $(patsubst $(B)/gen/%.c,$(B)/obj/gen/%.o,$(GEN_C))

$(B)/lib%.a:
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# protoc-c: tandem's protos and the well-known types csi.proto imports
# (Debian ships the .proto files but not their protobuf-c code).
$(B)/gen/%.pb-c.c $(B)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(@D)
	protoc-c -Iproto -I/usr/include --c_out=$(B)/gen $<
$(B)/gen/google/protobuf/%.pb-c.c $(B)/gen/google/protobuf/%.pb-c.h: /usr/include/google/protobuf/%.proto
	@mkdir -p $(@D)
	protoc-c -I/usr/include --c_out=$(B)/gen google/protobuf/$*.proto

# Generated code is compiled without -Werror: it is not ours to fix.
$(B)/obj/gen/%.o: $(B)/gen/%.c $(GEN_H)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -std=gnu11 -g $(OPT) -w -pthread \
	  $(filter -fsanitize% -fno-%,$(CFLAGS)) -c -o $@ $<

$(B)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# Unit tests: $(B)/tests/<name> from tests/unit/<name>.c; a fragment adds
# the libraries: `$(B)/tests/test-store: $(B)/libstore.a $(B)/libbase.a`.
$(B)/tests/%: tests/unit/%.c tests/unit/tt.h $(GEN_H)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $(LDFLAGS) -o $@ $< $(MODLIBS)

# libFuzzer targets: $(B)/fuzz/<name> from tests/fuzz/<name>.c (FUZZ=1);
# libraries added by fragments as for unit tests.
$(B)/fuzz/%: tests/fuzz/%.c $(GEN_H)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(MODLIBS)

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------- tests --
deps:
	@scripts/install-deps.sh

test-unit: $(UNIT_TESTS)
	@tests/run-unit.sh $(UNIT_TESTS)

# LeakSanitizer runs in every test child (tt.h checks before _exit);
# tests/lsan.supp names exactly what third-party code is allowed to keep.
asan:
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MAKE) B=build/asan SANITIZE=1 OPT=-O1 test-unit

# ThreadSanitizer build of the threaded unit tests ($(TSAN_TESTS): the
# replicator, the journal, the rpc layer, the store) in build/tsan.  A race report
# fails the test (exitcode 66).  tests/tsan.supp names only races inside
# the uninstrumented system libraries (gRPC core, librados), never tandem
# code.  gcc's TSan cannot map its shadow memory under a randomized layout
# with many mmap bits (newer kernels: "unexpected memory mapping"), so the
# programs run under `setarch -R` (no ASLR) when that works here.
TSAN_WRAP ?= $(shell setarch $$(uname -m) -R true 2>/dev/null && echo setarch $$(uname -m) -R)
tsan:
	$(MAKE) B=build/tsan SANITIZE=thread OPT=-O1 tsan-programs
	TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=0 exitcode=66 second_deadlock_stack=1 history_size=4" \
	TT_WRAP="$(TSAN_WRAP)" TT_TIMEOUT=$${TT_TIMEOUT:-600} \
	tests/run-unit.sh $(patsubst $(B)/%,build/tsan/%,$(TSAN_TESTS))

tsan-programs: $(TSAN_TESTS)

# The whole suite: tests/run-all.sh starts a throwaway Ceph (or uses the
# one TANDEM_CEPH_CONF names), then runs every layer below against it.
test: deps
	$(MAKE) programs $(UNIT_TESTS)
	tests/run-all.sh

test-e2e: programs
	@tests/run-e2e.sh $(E2E_TESTS)

# The randomized fault tests alone, N times (make test-faults N=20): each
# run draws a new fault schedule.
N ?= 1
test-faults: programs
	@for i in $$(seq $(N)); do tests/run-e2e.sh $(FAULT_TESTS) || exit 1; done

fuzzers:
	$(MAKE) B=build/fuzz FUZZ=1 OPT=-O1 $(addprefix build/fuzz/fuzz/,$(FUZZERS))

fuzz-short: fuzzers
	@tests/run-fuzz.sh short $(addprefix build/fuzz/fuzz/,$(FUZZERS))

fuzz: fuzzers
	@tests/run-fuzz.sh long $(addprefix build/fuzz/fuzz/,$(FUZZERS))

print-%:
	@echo $($*)

bench: deps programs $(BENCHES)
	@TANDEM_BENCH_QUICK=$(if $(QUICK),$(QUICK),$${TANDEM_BENCH_QUICK:-0}) \
	    bench/run-all.sh $(BENCHES)

demo: deps programs
	scripts/demo.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

.PHONY: all programs deps test test-unit test-e2e test-faults asan tsan tsan-programs fuzz fuzz-short fuzzers bench demo \
        format clean
