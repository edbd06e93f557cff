# bench/store.mk: raw object store figures for `make bench` (owner: store
# helper).  bench-store starts a throwaway Ceph (tests/ceph/ceph-up.sh)
# for the rados half unless TANDEM_CEPH_CONF names a cluster.
BENCHES += $(B)/bench/bench-store
$(B)/bench/bench-store: $(call objs,bench/bench-store.c) $(B)/libstore.a \
    $(B)/libbase.a
	@mkdir -p $(@D)
	$(LINK)
