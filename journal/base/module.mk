# journal/base: the bottom layer.  Logging and the small helpers every
# other layer shares; depends on libc only.
$(B)/libbase.a: $(call objs,journal/base/tlog.c journal/base/tbase.c)
LIBS_libbase := -lm
