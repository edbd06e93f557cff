# csi: the CSI plugin (owner: csi helper).  libcsi holds the service logic
# so tests can link it; tandem-csi is the process around it.
CSI_LIB_SRCS := csi/csi_util.c csi/csi_params.c csi/csi_ctrl.c \
                csi/csi_node.c csi/csi_k8s.c
$(B)/libcsi.a: $(call objs,$(CSI_LIB_SRCS))

CSI_LIBS := $(B)/libcsi.a $(B)/libnode.a $(B)/librpc.a $(B)/libjr.a \
            $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a $(B)/libgen.a

PROGS += $(B)/tandem-csi
$(B)/tandem-csi: $(call objs,csi/csi_main.c) $(CSI_LIBS)
	$(LINK)

# Unit tests of the pure parts (parameters, topology, ids, paths).
$(B)/tests/test-csi: $(CSI_LIBS)
UNIT_TESTS += $(B)/tests/test-csi

E2E_TESTS += tests/e2e/t0200-csi-proto-compat.sh \
              tests/e2e/t0210-csi-node-client.sh \
              tests/e2e/t0220-deploy-manifests.sh \
              tests/e2e/t0230-csi-k8s-topology.sh

# Conformance over the real socket: runs tandem-csi (and, for staging,
# tandem-volfuse) from the build dir.
$(B)/tests/test-csi-conformance: tests/unit/test-csi-client.h $(CSI_LIBS) \
    | $(B)/tandem-csi $(B)/tandem-volfuse
UNIT_TESTS += $(B)/tests/test-csi-conformance

# Node data path through the real plugin (root, FUSE, loop; rados too).
$(B)/tests/test-csi-node: tests/unit/test-csi-client.h $(CSI_LIBS) \
    | $(B)/tandem-csi $(B)/tandem-volfuse
UNIT_TESTS += $(B)/tests/test-csi-node
