# journal: the volume image and change journal (jr.h) on top of the store,
# and the region map (regions.h).
$(B)/libjr.a: $(call objs,journal/jr_format.c journal/jr_image.c \
    journal/jr_lease.c journal/jr_volume.c journal/jr_tomb.c \
    journal/jr_tail.c journal/jr_damage.c journal/jr_io.c \
    journal/jr_copywin.c journal/jr_snap.c journal/jr_group.c)
LIBS_libjr := -llz4
$(B)/libregions.a: $(call objs,journal/regions.c)
