# journal engine (journal helper): libjr, its unit tests and fuzzer.
JR_SRCS := journal/jr_format.c journal/jr_image.c journal/jr_volume.c \
           journal/jr_tail.c journal/jr_io.c
$(B)/libjr.a: $(call objs,$(JR_SRCS))

$(B)/tests/test-journal-format: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a
$(B)/tests/test-journal: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a
UNIT_TESTS += $(B)/tests/test-journal-format $(B)/tests/test-journal

FUZZERS += fuzz-entry
$(B)/fuzz/fuzz-entry: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a

# Tombstone values (R-35), read back from the store.
FUZZERS += fuzz-tomb
$(B)/fuzz/fuzz-tomb: $(B)/libjr.a $(B)/libstore.a $(B)/libbase.a
