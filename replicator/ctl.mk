# replicator/ctl.mk: tandemctl (the failover CLI), the demo's CSI client and
# their end-to-end tests (owner: ctl helper).  Included by module.mk.
PROGS += $(B)/tandemctl $(B)/tandem-csi-call

$(B)/tandemctl: $(call objs,replicator/tandemctl.c) \
		$(B)/librpc.a $(B)/libgen.a $(B)/libregions.a $(B)/libjr.a \
		$(B)/libstore.a $(B)/libbase.a
	$(LINK)

# A small CSI client (what external-provisioner and kubelet would call), so
# the demo and the e2e tests need neither Node.js nor Kubernetes.
$(B)/tandem-csi-call: $(call objs,replicator/tandemctl-csi-call.c) \
		$(B)/librpc.a $(B)/libgen.a $(B)/libbase.a
	$(LINK)

E2E_TESTS += tests/e2e/t0400-demo.sh tests/e2e/t0410-failover-scenarios.sh \
             tests/e2e/t0420-deploy-replicator.sh

# The CLI contract against a scripted admin API (no daemon needed).
$(B)/tests/test-tandemctl: $(B)/librpc.a $(B)/libgen.a $(B)/libregions.a \
		$(B)/libjr.a $(B)/libstore.a $(B)/libbase.a | $(B)/tandemctl
UNIT_TESTS += $(B)/tests/test-tandemctl
