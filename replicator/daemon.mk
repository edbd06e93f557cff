# replicator daemon: fragment of the top-level Makefile (owner: replicator
# helper).  The engine is librep.a so tests and benches link it.
REP_SRCS := replicator/rep_core.c replicator/rep_link.c replicator/rep_admin.c \
            replicator/rep_metrics.c
$(B)/librep.a: $(call objs,$(REP_SRCS))

PROGS += $(B)/tandem-replicator
$(B)/tandem-replicator: $(call objs,replicator/rep_main.c) $(B)/librep.a \
    $(B)/libregions.a $(B)/libjr.a $(B)/libstore.a $(B)/librpc.a \
    $(B)/libgen.a $(B)/libbase.a
	$(LINK)

# Test helper for the replication e2e tests and the bench (volumes through
# jr.h, workload with a seq log, prefix-consistency check, admin calls).
# Built with the programs so `make test` has it.
PROGS += $(B)/tests/rep-tool
$(B)/tests/rep-tool: $(call objs,tests/tools/rep-tool.c) $(B)/librep.a \
    $(B)/libregions.a $(B)/libjr.a $(B)/libstore.a $(B)/librpc.a \
    $(B)/libgen.a $(B)/libbase.a
	@mkdir -p $(@D)
	$(LINK)

E2E_TESTS += tests/e2e/t0300-replication.sh tests/e2e/t0301-replication-ceph.sh \
             tests/e2e/t0310-replication-faults.sh
# The same randomized fault test, for repeated runs: make test-faults.
FAULT_TESTS += tests/e2e/t0310-replication-faults.sh

# In-process engine tests (two regions, Link refusals); run under ASan too.
$(B)/tests/test-rep: $(B)/librep.a $(B)/libregions.a $(B)/libjr.a \
    $(B)/libstore.a $(B)/librpc.a $(B)/libgen.a $(B)/libbase.a
UNIT_TESTS += $(B)/tests/test-rep
