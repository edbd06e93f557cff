# Node data path benchmark (owner: node-datapath helper): fio through a
# staged ext4 volume (tandem-volfuse + loop + ext4), on sqlite and, when
# TANDEM_CEPH_CONF is set, rados.  Figures: fio.randwrite4k_iops.<backend>
# and fio.seqwrite1m_mibps.<backend> in $TANDEM_BENCH_OUT.
$(B)/bench/node-stage-tool: $(call objs,bench/node-stage-tool.c) \
    $(B)/libnode.a $(B)/libjr.a $(B)/libregions.a $(B)/libstore.a \
    $(B)/libbase.a
	@mkdir -p $(@D)
	$(LINK)

BENCHES += bench/bench-fio.sh
# `make bench` runs the script; this builds what it drives first.
bench/bench-fio.sh: $(B)/bench/node-stage-tool $(B)/tandem-volfuse
