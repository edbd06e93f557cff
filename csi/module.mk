# csi: the CSI plugin.  libcsi holds the Identity, Controller and Node
# services so tests can link them; tandem-csi is the process around them.
$(B)/libcsi.a: $(call objs,csi/csi_util.c csi/csi_params.c csi/csi_ctrl.c \
    csi/csi_snap.c \
    csi/csi_node.c csi/csi_k8s.c)
# OpenSSL's libcrypto: SHA-256 of volume names (csi_params.c); libcurl and
# json-c: the Kubernetes API (csi_k8s.c).
LIBS_libcsi := -lcurl -ljson-c -lcrypto

CSI_LIBS := $(B)/libcsi.a $(B)/libnode.a $(B)/librpc.a $(B)/libjr.a \
            $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a $(B)/libgen.a

# The CSI-Addons services (csi_addons.h), from the published protos
# (libaddonsgen, proto/module.mk).
$(B)/libcsiaddons.a: $(call objs,csi/csi_addons.c csi/csi_addons_vg.c)
$(call objs,csi/csi_addons.c csi/csi_addons_vg.c csi/csi_main.c): $(ADDONS_GEN_H)
CSI_ADDONS_LIBS := $(B)/libcsiaddons.a $(B)/libaddonsgen.a

PROGS += $(B)/tandem-csi
$(B)/tandem-csi: $(call objs,csi/csi_main.c) $(CSI_LIBS) $(CSI_ADDONS_LIBS)
	$(LINK)
