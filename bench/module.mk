# bench: `make bench` figures, each a ratio against a baseline measured in
# the same run (bench/run-all.sh prints the summary).
#   bench-store    raw object store (starts a throwaway Ceph for rados
#                  unless TANDEM_CEPH_CONF names a cluster)
#   bench-journal  raw store vs journaled writes: ratio.journal_vs_raw.*
#   bench-snap     snapshots: create time, big vs small, writes after one
#   bench-group    consistency groups: pause, grouped vs single, group RPO
#   rpc-bench      the RPC layer's floor
#   csi-bench      CreateVolume/DeleteVolume through a real tandem-csi
#   rep-bench      replication vs journaled writes, lag, catch-up, failover
#   bench-fio.sh   fio through a staged ext4 volume (volfuse + loop)
BENCHES += $(B)/bench/bench-store $(B)/bench/bench-journal \
    $(B)/bench/bench-snap $(B)/bench/bench-group \
    $(B)/bench/rpc-bench $(B)/bench/csi-bench $(B)/bench/rep-bench \
    bench/bench-fio.sh
$(B)/bench/bench-store: $(call objs,bench/bench-store.c) $(B)/libstore.a \
    $(B)/libbase.a
$(B)/bench/bench-journal: $(call objs,bench/bench-journal.c) $(B)/libjr.a \
    $(B)/libstore.a $(B)/libbase.a
$(B)/bench/bench-snap: $(call objs,bench/bench-snap.c) $(B)/libjr.a \
    $(B)/libstore.a $(B)/libbase.a
$(B)/bench/bench-group: $(call objs,bench/bench-group.c) $(B)/libjr.a \
    $(B)/libstore.a $(B)/libbase.a
$(B)/bench/rpc-bench: $(call objs,bench/rpc-bench.c) $(B)/librpc.a \
    $(B)/libgen.a $(B)/libbase.a
$(B)/bench/csi-bench: $(call objs,bench/csi-bench.c) $(B)/librpc.a \
    $(B)/libjr.a $(B)/libregions.a $(B)/libstore.a $(B)/libgen.a \
    $(B)/libbase.a | $(B)/tandem-csi
$(B)/bench/rep-bench: $(call objs,bench/rep-bench.c) $(REP_LIBS)
$(B)/bench/node-stage-tool: $(call objs,bench/node-stage-tool.c) \
    $(B)/libnode.a $(B)/libjr.a $(B)/libregions.a $(B)/libstore.a \
    $(B)/libbase.a
$(B)/bench/%:
	@mkdir -p $(@D)
	$(LINK)
# `make bench` runs the script; this builds what it drives first.
bench/bench-fio.sh: $(B)/bench/node-stage-tool $(B)/tandem-volfuse \
    $(B)/bench/bench-journal
