# bench/csi.mk: CSI controller figures for `make bench` (owner: csi
# helper): CreateVolume/DeleteVolume rate and p50/p99 over 1,000 volumes
# per backend, through a real tandem-csi, against the same run's RPC floor.
BENCHES += $(B)/bench/csi-bench
$(B)/bench/csi-bench: $(call objs,bench/csi-bench.c) $(B)/librpc.a \
    $(B)/libgen.a $(B)/libbase.a | $(B)/tandem-csi
	@mkdir -p $(@D)
	$(LINK)
