# csi: fragment of the top-level Makefile. Sub-fragments per owner.
-include csi/csi.mk
-include csi/node.mk
