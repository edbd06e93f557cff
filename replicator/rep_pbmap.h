/*
 * rep_pbmap.h: protobuf-c map<string,string> fields, built one way.
 * protobuf-c represents such a field as an array of pointers to entry
 * messages laid out as {base, key, value}; the replicator fills several
 * (VolumeSpec.meta, GetVolumeResponse.meta, VolumeStatus.metadata) and
 * the tests fake some, all through this (librepmap: protobuf-c only, so a
 * test of tandemctl links it without the replicator's store).
 *
 * Ownership: the array and every entry (and its strings) are malloc'd, as
 * protobuf_c_message_free_unpacked frees a message's map field; hand them
 * to a message (its n_X, X) or free them with rep__pbmap_free.
 */
#ifndef TANDEM_REP_PBMAP_H
#define TANDEM_REP_PBMAP_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

struct rep_pbmap {
    const ProtobufCMessageDescriptor *desc; /* the entry message */
    void **a;                               /* n entries */
    size_t n, cap;
};

/* Start an empty map of entries of type desc: 0, or -EINVAL if desc is
 * not a string-to-string map entry. */
int rep__pbmap_init(struct rep_pbmap *m, const ProtobufCMessageDescriptor *desc);
/* Append key = value (both copied).  0 or -ENOMEM (m stays valid). */
int rep__pbmap_add(struct rep_pbmap *m, const char *key, const char *value);
/* Free n entries and the array. */
void rep__pbmap_free(void **a, size_t n);

#endif /* TANDEM_REP_PBMAP_H */
