/* rep_pbmap.c: protobuf-c map<string,string> entries (rep_pbmap.h). */
#include "rep_pbmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The layout protobuf-c gives every map<string,string> entry. */
struct kv_entry {
    ProtobufCMessage base;
    char *key;
    char *value;
};

int rep__pbmap_init(struct rep_pbmap *m, const ProtobufCMessageDescriptor *desc)
{
    memset(m, 0, sizeof(*m));
    /* The cast in rep__pbmap_add is only right for a string map entry. */
    if (desc->sizeof_message != sizeof(struct kv_entry) ||
        desc->n_fields != 2 ||
        desc->fields[0].type != PROTOBUF_C_TYPE_STRING ||
        desc->fields[1].type != PROTOBUF_C_TYPE_STRING ||
        desc->fields[0].offset != offsetof(struct kv_entry, key) ||
        desc->fields[1].offset != offsetof(struct kv_entry, value))
        return -EINVAL;
    m->desc = desc;
    return 0;
}

int rep__pbmap_add(struct rep_pbmap *m, const char *key, const char *value)
{
    if (m->n == m->cap) {
        size_t c = m->cap ? 2 * m->cap : 16;
        void *p = realloc(m->a, c * sizeof(*m->a));
        if (!p) return -ENOMEM;
        m->a = p;
        m->cap = c;
    }
    struct kv_entry *e = malloc(sizeof(*e));
    if (!e) return -ENOMEM;
    protobuf_c_message_init(m->desc, e);
    e->key = strdup(key);
    e->value = strdup(value);
    m->a[m->n++] = e; /* owned by the array even if a strdup failed */
    return (e->key && e->value) ? 0 : -ENOMEM;
}

void rep__pbmap_free(void **a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        protobuf_c_message_free_unpacked(a[i], NULL);
    free(a);
}
