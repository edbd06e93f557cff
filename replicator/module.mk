# replicator: fragment of the top-level Makefile. Sub-fragments per owner.
-include replicator/daemon.mk
-include replicator/ctl.mk
