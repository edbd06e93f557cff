/* store_rados.c: the RADOS backend (work in progress). */
#include <errno.h>

#include "store_int.h"

static int ra_open(const struct st_config *cfg, st_store **out)
{
    (void)cfg;
    (void)out;
    return -ENOTSUP;
}

const struct st_ops st__rados_ops = {
    .name = "rados",
    .open = ra_open,
};
