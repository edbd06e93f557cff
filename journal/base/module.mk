# journal/base: the bottom layer.  Logging and the small helpers every
# other layer shares (tlog.h logging, tbase.h clocks and helpers, tsig.h
# termination signals); depends on libc only.
$(B)/libbase.a: $(call objs,journal/base/tlog.c journal/base/tbase.c \
    journal/base/tsig.c)
LIBS_libbase := -lm
