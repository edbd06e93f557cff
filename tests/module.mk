# tests: every unit test, fuzz target, tool and end-to-end script, with the
# module libraries each links (their external libraries follow from those).
#
# Unit tests: $(B)/tests/<name> from tests/unit/<name>.c (rule in Makefile).
UNIT_TESTS += $(B)/tests/test-rpc $(B)/tests/test-store \
    $(B)/tests/test-journal-format $(B)/tests/test-journal \
    $(B)/tests/test-snap $(B)/tests/test-group \
    $(B)/tests/test-regions $(B)/tests/test-csi $(B)/tests/test-csi-addons \
    $(B)/tests/test-csi-conformance $(B)/tests/test-csi-node \
    $(B)/tests/test-blockdev $(B)/tests/test-rep $(B)/tests/test-tandemctl

# The threaded ones also run under ThreadSanitizer (make tsan, build/tsan).
# TSan cannot follow a fork of a multi-threaded process ("starting new
# threads after multi-threaded fork is not supported"): tt.h skips the
# tests that do, in that build only (they run in the plain and ASan
# builds).
TSAN_TESTS += $(B)/tests/test-rep $(B)/tests/test-journal $(B)/tests/test-rpc \
    $(B)/tests/test-snap $(B)/tests/test-group \
    $(B)/tests/test-store $(B)/tests/test-csi-addons
# Under TSan, tests/tsan-grpc.c and tests/tsan-rados.c declare the
# happens-before edges of gRPC's completion queue (start of an operation
# -> its event) and of librados's asynchronous operations (submit -> its
# callback), which those uninstrumented libraries hide from TSan; only our
# own objects' references to these functions are wrapped.
ifeq ($(SANITIZE),thread)
tt_comma := ,
TSAN_WRAP_FNS := grpc_call_start_batch grpc_server_request_call \
    grpc_server_shutdown_and_notify grpc_completion_queue_next \
    grpc_completion_queue_pluck grpc_ssl_credentials_create_ex \
    rados_aio_create_completion2 rados_aio_write_op_operate
LDFLAGS += $(foreach f,$(TSAN_WRAP_FNS),-Wl$(tt_comma)--wrap=$(f))
$(B)/libtsanshim.a: $(call objs,tests/tsan-grpc.c tests/tsan-rados.c)
$(TSAN_TESTS): $(B)/libtsanshim.a
endif

$(B)/tests/test-rpc: $(B)/librpc.a $(B)/libgen.a $(B)/libbase.a
$(B)/tests/test-store: $(B)/libstore.a $(B)/libbase.a
$(B)/tests/test-journal-format: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a
$(B)/tests/test-journal: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a
$(B)/tests/test-snap: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a
$(B)/tests/test-group: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a
$(B)/tests/test-regions: $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a
$(B)/tests/test-csi: $(CSI_LIBS)
# The CSI-Addons services in process, behind their real socket, with a
# scripted admin API.
$(B)/tests/test-csi-addons: $(CSI_ADDONS_LIBS) $(CSI_LIBS) $(ADDONS_GEN_H)
# Conformance and the node data path run the real programs from $(B).
$(B)/tests/test-csi-conformance: tests/unit/test-csi-client.h $(CSI_LIBS) \
    | $(B)/tandem-csi $(B)/tandem-volfuse
$(B)/tests/test-csi-node: tests/unit/test-csi-client.h $(CSI_LIBS) \
    | $(B)/tandem-csi $(B)/tandem-volfuse
$(B)/tests/test-blockdev: $(B)/libnode.a $(B)/libjr.a $(B)/libregions.a \
    $(B)/libstore.a $(B)/libbase.a | $(B)/tandem-volfuse
$(B)/tests/test-rep: $(REP_LIBS)
# The CLI contract against a scripted admin API (no daemon needed).
$(B)/tests/test-tandemctl: $(B)/librepmap.a $(B)/librpc.a $(B)/libgen.a \
    $(B)/libbase.a | $(B)/tandemctl

# Tools the e2e scripts drive.  rep-tool: volumes through jr.h, a workload
# with a seq log, the prefix-consistency check, admin calls; built with the
# programs so `make test` has it.  The echo server is the peer of the
# Node.js interop script (t0100).
PROGS += $(B)/tests/rep-tool
$(B)/tests/rep-tool: $(call objs,tests/tools/rep-tool.c) $(REP_LIBS)
	@mkdir -p $(@D)
	$(LINK)
# snap-tool: t0240's numbered-block writer, CreateSnapshot timing and the
# snapshot content check (tests/tools/snap-tool.c).
PROGS += $(B)/tests/snap-tool
$(B)/tests/snap-tool: $(call objs,tests/tools/snap-tool.c) $(B)/librpc.a \
    $(B)/libjr.a $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a \
    $(B)/libgen.a
	@mkdir -p $(@D)
	$(LINK)
$(B)/tests/rpc-echo-server: $(call objs,tests/rpc/echo-server.c) \
    $(B)/librpc.a $(B)/libgen.a $(B)/libbase.a
	@mkdir -p $(@D)
	$(LINK)
test-e2e: $(B)/tests/rpc-echo-server

E2E_TESTS += tests/e2e/t0100-rpc-node-interop.sh \
    tests/e2e/t0200-csi-proto-compat.sh tests/e2e/t0210-csi-node-client.sh \
    tests/e2e/t0220-deploy-manifests.sh tests/e2e/t0221-deploy-kustomize.sh \
    tests/e2e/t0230-csi-k8s-topology.sh \
    tests/e2e/t0300-replication.sh tests/e2e/t0301-replication-ceph.sh \
    tests/e2e/t0310-replication-faults.sh tests/e2e/t0311-group-faults.sh \
    tests/e2e/t0320-link-trust.sh \
    tests/e2e/t0330-journal-damage.sh tests/e2e/t0331-journal-damage-ceph.sh \
    tests/e2e/t0340-snapshot-failover.sh \
    tests/e2e/t0341-snapshot-failover-ceph.sh \
    tests/e2e/t0360-csi-addons.sh \
    tests/e2e/t0400-demo.sh \
    tests/e2e/t0410-failover-scenarios.sh tests/e2e/t0420-deploy-replicator.sh
# The randomized fault test, also alone and repeated: make test-faults.
FAULT_TESTS += tests/e2e/t0310-replication-faults.sh
FAULT_TESTS += tests/e2e/t0311-group-faults.sh

# libFuzzer targets for every decoder of bytes from outside the process:
# $(B)/fuzz/<name> from tests/fuzz/<name>.c (FUZZ=1), seeded from
# tests/fuzz/corpus/<name>/.
#   fuzz-entry      journal entries             fuzz-tomb  tombstone values
#   fuzz-rep-link   ShipBatch / CopyRegions decoding
#   fuzz-rep-apply  the whole ShipBatch handler on a sqlite region
#   fuzz-rep-handlers  DeleteReplica / ReadRegions / JournalRegions /
#                   GetVolume through the gRPC server on a sqlite region
#   fuzz-metrics-http  the /metrics HTTP request reader
#   fuzz-csi-k8s    the Kubernetes API server's answer (topology labels)
#   fuzz-csi-params CSI parameter / id / path checks
#   fuzz-regions    the region map          fuzz-bd-state  node state files
FUZZERS += fuzz-entry fuzz-tomb fuzz-rep-link fuzz-rep-apply fuzz-csi-k8s \
    fuzz-csi-params fuzz-regions fuzz-bd-state fuzz-rep-handlers \
    fuzz-metrics-http
$(B)/fuzz/fuzz-entry: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a
$(B)/fuzz/fuzz-tomb: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a
$(B)/fuzz/fuzz-rep-link: $(REP_LIBS)
$(B)/fuzz/fuzz-rep-apply: $(REP_LIBS)
$(B)/fuzz/fuzz-rep-handlers: $(REP_LIBS)
$(B)/fuzz/fuzz-metrics-http: $(REP_LIBS)
$(B)/fuzz/fuzz-csi-k8s: $(CSI_LIBS)
$(B)/fuzz/fuzz-csi-params: $(CSI_LIBS)
$(B)/fuzz/fuzz-regions: $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a
# blockdev.c is compiled into the target (its parsers are static): link
# mounter.c (libfuzzmnt.a) but not libnode.a, whose blockdev.o would clash.
$(B)/libfuzzmnt.a: $(call objs,csi/datapath/mounter.c)
LIBS_libfuzzmnt := $(LIBS_libnode)
$(B)/fuzz/fuzz-bd-state: csi/datapath/blockdev.c $(B)/libfuzzmnt.a \
    $(B)/libjr.a $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a
