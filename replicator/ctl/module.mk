# replicator/ctl: the operator's CLI (tandemctl, a client of the
# replicator's admin API only: no store, no region map, so neither sqlite3
# nor librados) and a small CSI client (tandem-csi-call:
# what external-provisioner and kubelet would call, so the demo and the
# e2e tests need neither Node.js nor Kubernetes).
PROGS += $(B)/tandemctl $(B)/tandem-csi-call
$(B)/tandemctl: $(call objs,replicator/ctl/tandemctl.c \
    replicator/ctl/ctl_rpc.c replicator/ctl/ctl_print.c \
    replicator/ctl/ctl_status.c replicator/ctl/ctl_role.c \
    replicator/ctl/ctl_journal.c replicator/ctl/ctl_failover.c \
    replicator/ctl/ctl_manifest.c) \
    $(B)/librpc.a $(B)/libgen.a $(B)/libbase.a
	$(LINK)
$(B)/tandem-csi-call: $(call objs,replicator/ctl/tandemctl-csi-call.c) \
    $(B)/librpc.a $(B)/libgen.a $(B)/libbase.a
	$(LINK)
