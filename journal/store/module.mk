# journal/store: the object store interface (store.h) and its two backends.
# The only place that links sqlite3 and librados.
$(B)/libstore.a: $(call objs,journal/store/store.c \
    journal/store/store_sqlite.c journal/store/store_rados.c)
LIBS_libstore := -lsqlite3 -lrados
