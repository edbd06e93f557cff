# bench/rep.mk: replication figures for `make bench` (owner: replicator
# helper): throughput vs journaled writes, lag p50/p99, catch-up after an
# outage, wire bytes per written byte, failover of 1 and 100 volumes.
BENCHES += $(B)/bench/rep-bench
$(B)/bench/rep-bench: $(call objs,bench/rep-bench.c) $(B)/librep.a \
    $(B)/libregions.a $(B)/libjr.a $(B)/libstore.a $(B)/librpc.a \
    $(B)/libgen.a $(B)/libbase.a
	@mkdir -p $(@D)
	$(LINK)
