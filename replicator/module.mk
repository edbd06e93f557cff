# replicator: the daemon that ships journals to the peer region.  The
# engine is librep.a so tests and benches link it.
$(B)/librep.a: $(call objs,replicator/rep_core.c replicator/rep_vol.c \
    replicator/rep_meta.c replicator/rep_lz4.c replicator/rep_send.c \
    replicator/rep_copy.c replicator/rep_link.c replicator/rep_link_vol.c \
    replicator/rep_peer.c replicator/rep_admin.c \
    replicator/rep_admin_resync.c replicator/rep_admin_journal.c \
    replicator/rep_metrics.c replicator/rep_announce.c replicator/rep_group.c)
# protobuf-c map<string,string> entries (rep_pbmap.h), alone so that a
# test of tandemctl links it without the engine.
$(B)/librepmap.a: $(call objs,replicator/rep_pbmap.c)

REP_LIBS := $(B)/librep.a $(B)/librepmap.a $(B)/libregions.a \
            $(B)/libjr.a $(B)/libstore.a $(B)/librpc.a $(B)/libgen.a \
            $(B)/libbase.a

PROGS += $(B)/tandem-replicator
$(B)/tandem-replicator: $(call objs,replicator/rep_main.c) $(REP_LIBS)
	$(LINK)
