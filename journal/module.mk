# journal: fragment of the top-level Makefile (see its header).
$(B)/libbase.a: $(call objs,journal/tlog.c)
