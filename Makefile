# tandem: one top-level Makefile.  Each part contributes a fragment,
# <part>/module.mk, which appends to the variables below; nothing in a
# fragment may assume another fragment's internals.
#
#   make              build every program (-Wall -Wextra -Werror)
#   make test         install missing packages, build, run the whole suite,
#                     including an ASan+UBSan build of the unit tests
#   make test-unit    unit tests only (fast)
#   make test-faults  the randomized fault tests alone, N=count times
#   make asan         the unit tests under ASan+UBSan
#   make fuzz         libFuzzer targets, short runs
#   make bench        benchmarks, printed as ratios against a same-run baseline
#   make demo         two regions, a replicated volume, a failover (needs root)
#   make deps         install missing Debian packages (apt-get)
#
# Build outputs go to $(B) (default build/); the sanitizer build uses
# build/asan.  Generated protobuf-c code lives in $(B)/gen, never in git.

B        ?= build
export B
CC       ?= cc
OPT      ?= -O2
SANITIZE ?=

CPPFLAGS += -D_GNU_SOURCE -I. -Ijournal -Iproto -I$(B)/gen
CFLAGS   += -std=gnu11 -g $(OPT) -Wall -Wextra -Werror -Wstrict-prototypes \
            -Wno-unused-parameter -Wno-missing-field-initializers \
            -fno-strict-aliasing -pthread
LDFLAGS  += -pthread
LDLIBS   += -lgrpc -lgpr -lprotobuf-c -lrados -llz4 -lsqlite3 -lfuse3 \
            -lcrypto -lssl -lm

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

# Object files of sources: $(call objs,a.c b.c)
objs = $(patsubst %.c,$(B)/obj/%.o,$(1))
# Link a program or test: objects first, then the module libraries the
# target depends on (grouped, so their order does not matter).
LINK = $(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) \
       -Wl,--start-group $(filter %.a,$^) -Wl,--end-group $(LDLIBS)

# Module libraries: a fragment declares `$(B)/libNAME.a: $(call objs,...)`
# and targets depend on the libraries they need, so one module's work in
# progress never breaks another module's build.
#   libgen   protobuf-c code of proto/*.proto and the well-known types
#   libbase  logging and small shared helpers (journal/tlog.c, ...)
#   libstore object store: interface + sqlite + rados backends
#   libjr    volume image and change journal
#   librpc   the gRPC C core layer
PROTOS     := $(wildcard proto/*.proto)
PROGS      :=   # programs built by `make`
UNIT_TESTS :=   # test programs, each runs by itself and exits 0 on success
E2E_TESTS  :=   # shell scripts (TAP), run by tests/run-e2e.sh
FAULT_TESTS :=  # randomized fault tests, also run alone by `make test-faults`
FUZZERS    :=   # libFuzzer targets: <name> built from tests/fuzz/<name>.c
BENCHES    :=   # bench programs/scripts, run by `make bench`

all: programs

include proto/module.mk
include journal/module.mk
include csi/module.mk
include replicator/module.mk
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
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $(LDFLAGS) -o $@ $< \
	  -Wl,--start-group $(filter %.a,$^) -Wl,--end-group $(LDLIBS)

# libFuzzer targets: $(B)/fuzz/<name> from tests/fuzz/<name>.c (FUZZ=1);
# libraries added by fragments as for unit tests.
$(B)/fuzz/%: tests/fuzz/%.c $(GEN_H)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< \
	  -Wl,--start-group $(filter %.a,$^) -Wl,--end-group $(LDLIBS)

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
	@bench/run-all.sh $(BENCHES)

demo: deps programs
	scripts/demo.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

.PHONY: all programs deps test test-unit test-e2e test-faults asan fuzz fuzz-short fuzzers bench demo \
        format clean
