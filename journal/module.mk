# journal: fragment of the top-level Makefile (see its header).
# The object store (store helper) and the journal engine (journal helper)
# each keep their own sub-fragment so they never edit the same file.
$(B)/libbase.a: $(call objs,journal/tlog.c)
-include journal/store.mk
-include journal/jr.mk
-include journal/regions.mk
