# bench/jr.mk: journal engine figures for `make bench` (owner: journal
# helper): raw store vs journaled writes, same run, ratios
# ratio.journal_vs_raw.<case>.<backend> in $TANDEM_BENCH_OUT.
BENCHES += $(B)/bench/bench-journal
$(B)/bench/bench-journal: $(call objs,bench/bench-journal.c) $(B)/libjr.a \
    $(B)/libstore.a $(B)/libbase.a
	@mkdir -p $(@D)
	$(LINK)
