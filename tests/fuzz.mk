# libFuzzer targets for the decoders of bytes from outside the process
# (fuzz helper); fuzz-entry (journal entries) is declared in journal/jr.mk.
# Each is built as $(B)/fuzz/<name> from tests/fuzz/<name>.c with FUZZ=1
# and seeded from tests/fuzz/corpus/<name>/.

# Replication link receiver: ShipBatch / CopyRegions decoding.
FUZZERS += fuzz-rep-link
$(B)/fuzz/fuzz-rep-link: $(B)/librep.a $(B)/libregions.a $(B)/libjr.a \
    $(B)/libstore.a $(B)/librpc.a $(B)/libgen.a $(B)/libbase.a

# CSI: the Kubernetes API server's answer (node topology labels), and the
# parameter / id / path checks on request strings.
FUZZERS += fuzz-csi-k8s fuzz-csi-params
FUZZ_CSI_LIBS := $(B)/libcsi.a $(B)/libnode.a $(B)/librpc.a $(B)/libjr.a \
                 $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a $(B)/libgen.a
$(B)/fuzz/fuzz-csi-k8s: $(FUZZ_CSI_LIBS)
$(B)/fuzz/fuzz-csi-params: $(FUZZ_CSI_LIBS)

# Region map (config text, journal/regions.c).
FUZZERS += fuzz-regions
$(B)/fuzz/fuzz-regions: $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a

# Node data path: run_dir state files (attach record, pid, device).
# blockdev.c is compiled into the target (its parsers are static): link
# mounter.c (libfuzzmnt.a) but not libnode.a, whose blockdev.o would
# clash.
FUZZERS += fuzz-bd-state
$(B)/libfuzzmnt.a: $(call objs,csi/mounter.c)
$(B)/fuzz/fuzz-bd-state: csi/blockdev.c $(B)/libfuzzmnt.a \
    $(B)/libjr.a $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a

# The whole ShipBatch handler on a sqlite region (slower, deeper).
FUZZERS += fuzz-rep-apply
$(B)/fuzz/fuzz-rep-apply: $(B)/librep.a $(B)/libregions.a $(B)/libjr.a \
    $(B)/libstore.a $(B)/librpc.a $(B)/libgen.a $(B)/libbase.a
