# journal/store.mk: the object store (libstore) and its unit test; owner:
# store helper.  Included by journal/module.mk.
$(B)/libstore.a: $(call objs,journal/store.c journal/store_sqlite.c journal/store_rados.c)

$(B)/tests/test-store: $(B)/libstore.a $(B)/libbase.a
UNIT_TESTS += $(B)/tests/test-store
