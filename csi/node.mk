# csi node data path (owner: node-datapath helper): FUSE exporter, loop
# devices, mkfs/mount.  libnode is what the CSI node service links.
$(B)/libnode.a: $(call objs,csi/blockdev.c csi/mounter.c)

PROGS += $(B)/tandem-volfuse
$(B)/tandem-volfuse: $(call objs,csi/volfuse.c) $(B)/libjr.a \
    $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a
	$(LINK)

# test-blockdev runs the exporter: build it first (the test finds it next
# to itself in $(B)/tests/../ or through TANDEM_VOLFUSE).
$(B)/tests/test-blockdev: $(B)/libnode.a $(B)/libjr.a $(B)/libregions.a \
    $(B)/libstore.a $(B)/libbase.a | $(B)/tandem-volfuse
UNIT_TESTS += $(B)/tests/test-blockdev
