# csi/datapath: the node data path.  tandem-volfuse exports a journaled
# volume as a FUSE file; libnode puts a loop device on it (blockdev.h) and
# runs mkfs/mount (mounter.h).
$(B)/libnode.a: $(call objs,csi/datapath/blockdev.c csi/datapath/mounter.c)
# libmount reads the mount table, libblkid probes filesystem signatures
# (mounter.c).
LIBS_libnode := -lmount -lblkid

PROGS += $(B)/tandem-volfuse
$(B)/tandem-volfuse: $(call objs,csi/datapath/volfuse.c) $(B)/libjr.a \
    $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a
	$(LINK) -lfuse3
