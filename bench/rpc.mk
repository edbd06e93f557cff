# bench/rpc.mk: RPC layer figures for `make bench` (owner: rpc helper).
BENCHES += $(B)/bench/rpc-bench
$(B)/bench/rpc-bench: $(call objs,bench/rpc-bench.c) $(B)/librpc.a \
    $(B)/libgen.a $(B)/libbase.a
	@mkdir -p $(@D)
	$(LINK)
