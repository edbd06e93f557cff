/*
 * jr_copywin.c: the stores of a region copy (FORMAT.md §4).  On the
 * secondary, the copy window: its markers (three "meta.rep.copy.*"
 * keys of the header) and the undo blocks that keep the last write-order
 * consistent state recoverable until the copy is consistent again.  On
 * the primary, the copy list: the regions of an unfinished copy
 * and the position it resumes at.  The replicator decides when (jr.h says the
 * protocol); this file owns how they are stored.
 *
 * Ordering, so that a crash anywhere leaves a window whose undo data is
 * complete, or garbage only: a window's base is written before its id
 * (the marker that opens it), a block is saved before the bytes it holds
 * are overwritten, and closing removes the id before the blocks (a later
 * begin removes leftovers).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jr_int.h"

/* Marker keys (jr_meta_* keys, "meta." + these in the header): under the
 * replicator's "rep." prefix, which it never ships to a peer nor shows
 * as the volume's metadata. */
#define CW_ID "rep.copy.id"
#define CW_BASE "rep.copy.base"
#define CW_UNTIL "rep.copy.until"

#define CW_BLOCK JR_COPYWIN_BLOCK
#define CL_MAX (256u << 20) /* largest copy list accepted */

static void block_oid(char *buf, size_t n, const char *vol, uint64_t blk)
{
    snprintf(buf, n, "rep.undo/%s/%016" PRIx64, vol, blk);
}

static void blocks_prefix(char *buf, size_t n, const char *vol)
{
    snprintf(buf, n, "rep.undo/%s/", vol);
}

static void list_oid(char *buf, size_t n, const char *vol)
{
    snprintf(buf, n, "rep.copylist/%s", vol);
}

/* A u64 marker: 0 and *v, -ENOENT if absent, JR_ECORRUPT if not a
 * number. */
static int marker_u64(st_store *st, const char *vol, const char *key,
                      uint64_t *v)
{
    char *s = NULL;
    int rc = jr_meta_get(st, vol, key, &s);
    if (rc == 0 && jr__parse_u64(s, v) < 0) {
        tlog_error("journal.copywin_corrupt", "vol=%s key=%s", vol, key);
        rc = JR_ECORRUPT;
    }
    free(s);
    return rc;
}

static int marker_set_u64(st_store *st, const char *vol, const char *key,
                          uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return jr_meta_set(st, vol, key, buf);
}

int jr_copywin_get(st_store *st, const char *vol_id, struct jr_copywin *w)
{
    char *id = NULL;
    memset(w, 0, sizeof(*w));
    int rc = jr_meta_get(st, vol_id, CW_ID, &id);
    if (rc < 0) return rc;
    if (strlen(id) > JR_COPY_ID_MAX) {
        tlog_error("journal.copywin_corrupt", "vol=%s key=%s", vol_id,
                   CW_ID);
        free(id);
        return JR_ECORRUPT;
    }
    memcpy(w->copy_id, id, strlen(id) + 1);
    free(id);
    /* The base is written before the id: an open window has one. */
    if ((rc = marker_u64(st, vol_id, CW_BASE, &w->base)) < 0)
        return rc == -ENOENT ? JR_ECORRUPT : rc;
    rc = marker_u64(st, vol_id, CW_UNTIL, &w->until);
    if (rc == -ENOENT) rc = 0;
    return rc;
}

int jr_copywin_begin(st_store *st, const char *vol_id, const char *copy_id,
                     uint64_t base, int *restarted)
{
    struct jr_copywin w;
    if (!copy_id || !*copy_id || strlen(copy_id) > JR_COPY_ID_MAX)
        return -EINVAL;
    int rc = jr_copywin_get(st, vol_id, &w);
    if (rc < 0 && rc != -ENOENT) return rc;
    int again = rc == 0;
    if (restarted) *restarted = again;
    if (again) {
        /* A copy that restarts keeps the first base and the blocks saved
         * already: they hold the last consistent bytes. */
        rc = jr_meta_rm(st, vol_id, CW_UNTIL);
    } else {
        /* Leftovers of a window closed by a crash half way. */
        rc = jr_copywin_drop(st, vol_id);
        if (rc == 0) rc = marker_set_u64(st, vol_id, CW_BASE, base);
    }
    if (rc == 0) rc = jr_meta_set(st, vol_id, CW_ID, copy_id);
    return rc;
}

int jr_copywin_finish(st_store *st, const char *vol_id, uint64_t until)
{
    struct jr_copywin w;
    int rc = jr_copywin_get(st, vol_id, &w);
    if (rc < 0) return rc;
    return marker_set_u64(st, vol_id, CW_UNTIL, until);
}

int jr_copywin_save(st_store *st, const char *vol_id, uint64_t off,
                    uint64_t len)
{
    struct jr_info info;
    int rc = jr_volume_stat(st, vol_id, &info);
    if (rc < 0) return rc;
    if (len == 0) return 0;
    uint8_t *buf = malloc(CW_BLOCK);
    if (!buf) return -ENOMEM;
    for (uint64_t b = off / CW_BLOCK; b <= (off + len - 1) / CW_BLOCK; b++) {
        char oid[JR_OID_MAX];
        uint64_t start = b * CW_BLOCK, sz = CW_BLOCK, osz;
        if (start >= info.size) break;
        if (start + sz > info.size) sz = info.size - start;
        block_oid(oid, sizeof(oid), vol_id, b);
        /* Saved already in this window: keep the oldest bytes.  Only a
         * block known to be absent is saved: a failed check must never
         * overwrite the saved bytes with what the copy already wrote. */
        rc = st_stat(st, oid, &osz, NULL);
        if (rc == 0) continue;
        if (rc != -ENOENT) break;
        rc = 0;
        if ((rc = jr_image_read(st, vol_id, start, buf, sz)) < 0) break;
        if ((rc = st_write_full(st, oid, buf, sz)) < 0) break;
    }
    free(buf);
    return rc < 0 ? rc : 0;
}

static int blocks_list(st_store *st, const char *vol, struct jr__names *l)
{
    char pfx[JR_OID_MAX];
    blocks_prefix(pfx, sizeof(pfx), vol);
    return jr__names_list(st, pfx, l);
}

/* The block number of a saved block's name (JR_ECORRUPT if it has none). */
static int block_num(const char *oid, uint64_t *blk)
{
    const char *p = strrchr(oid, '/');
    char *end;
    if (!p || strlen(p + 1) != 16) return JR_ECORRUPT;
    *blk = strtoull(p + 1, &end, 16);
    return *end ? JR_ECORRUPT : 0;
}

int jr_copywin_drop(st_store *st, const char *vol_id)
{
    /* The marker first: from then on the blocks are garbage. */
    int rc = jr_meta_rm(st, vol_id, CW_ID);
    if (rc == -ENOENT) rc = 0; /* the volume is gone: its blocks go too */
    if (rc < 0) return rc;
    jr_meta_rm(st, vol_id, CW_UNTIL);
    jr_meta_rm(st, vol_id, CW_BASE);
    struct jr__names l = {0};
    rc = blocks_list(st, vol_id, &l);
    for (size_t i = 0; rc >= 0 && i < l.n; i++) {
        int e = st_remove(st, l.v[i]);
        if (e < 0 && e != -ENOENT) rc = e;
    }
    jr__names_free(&l);
    return rc < 0 ? rc : 0;
}

int jr_copywin_rollback(st_store *st, const char *vol_id, uint64_t *base,
                        size_t *blocks)
{
    struct jr_copywin w;
    struct jr_info info;
    struct jr__names l = {0};
    size_t restored = 0;
    uint8_t *buf = NULL;
    int rc = jr_copywin_get(st, vol_id, &w);
    if (base) *base = 0;
    if (blocks) *blocks = 0;
    if (rc == -ENOENT) return 0;
    if (rc < 0) return rc;
    if ((rc = jr_volume_stat(st, vol_id, &info)) < 0) return rc;
    if (info.role != JR_ROLE_SECONDARY) return JR_EROLE;
    if (!(buf = malloc(CW_BLOCK))) return -ENOMEM;
    rc = blocks_list(st, vol_id, &l);
    for (size_t i = 0; rc >= 0 && i < l.n; i++) {
        uint64_t blk;
        if ((rc = block_num(l.v[i], &blk)) < 0) break;
        ssize_t n = st_read(st, l.v[i], 0, buf, CW_BLOCK);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n > 0 &&
            (rc = jr_image_write(st, vol_id, blk * CW_BLOCK, buf,
                                 (size_t)n)) < 0)
            break;
        restored++;
    }
    free(buf);
    jr__names_free(&l);
    /* The image holds the base's bytes again: it stands for that
     * position, then the window goes. */
    if (rc >= 0) rc = jr_replica_rebase(st, vol_id, w.base, info.size);
    if (rc >= 0) rc = jr_copywin_drop(st, vol_id);
    if (rc < 0) return rc;
    if (base) *base = w.base;
    if (blocks) *blocks = restored;
    return 1;
}

int jr_copywin_read(st_store *st, const char *vol_id, uint64_t off,
                    void *buf, size_t len)
{
    int rc = jr_image_read(st, vol_id, off, buf, len);
    if (rc < 0 || len == 0) return rc;
    uint8_t *out = buf;
    uint8_t *blk = malloc(CW_BLOCK);
    if (!blk) return -ENOMEM;
    for (uint64_t b = off / CW_BLOCK; b <= (off + len - 1) / CW_BLOCK; b++) {
        char oid[JR_OID_MAX];
        block_oid(oid, sizeof(oid), vol_id, b);
        ssize_t n = st_read(st, oid, 0, blk, CW_BLOCK);
        if (n == -ENOENT) continue;
        if (n < 0) {
            rc = (int)n;
            break;
        }
        /* The saved bytes that fall into [off, off + len). */
        uint64_t s = b * CW_BLOCK, e = s + (uint64_t)n;
        uint64_t from = s > off ? s : off;
        uint64_t to = e < off + len ? e : off + len;
        if (from < to)
            memcpy(out + (from - off), blk + (from - s), (size_t)(to - from));
    }
    free(blk);
    return rc;
}

/* ---- the copy list (primary side) ---- */

int jr_copylist_load(st_store *st, const char *vol_id, uint64_t *resume,
                     int (*cb)(uint64_t off, uint64_t len, void *arg),
                     void *arg)
{
    char oid[JR_OID_MAX];
    uint64_t size;
    *resume = 0;
    if (!jr__valid_id(vol_id)) return -EINVAL;
    list_oid(oid, sizeof(oid), vol_id);
    int rc = st_stat(st, oid, &size, NULL);
    if (rc == -ENOENT) return 0;
    if (rc < 0) return rc;
    if (size < 8 || (size - 8) % 16 || size > CL_MAX) {
        tlog_error("journal.copylist_corrupt", "vol=%s object=%s bytes=%"
                   PRIu64, vol_id, oid, size);
        return JR_ECORRUPT;
    }
    uint8_t *buf = malloc(size);
    if (!buf) return -ENOMEM;
    ssize_t n = st_read(st, oid, 0, buf, size);
    rc = n == (ssize_t)size ? 0 : n < 0 ? (int)n : -EIO;
    uint64_t first = 0;
    if (!rc) first = jr__get64(buf);
    for (uint64_t i = 8; !rc && i < size; i += 16)
        rc = cb(jr__get64(buf + i), jr__get64(buf + i + 8), arg);
    free(buf);
    if (!rc) *resume = first;
    return rc;
}

int jr_copylist_save(st_store *st, const char *vol_id, uint64_t resume,
                     const struct jr_range *r, size_t n)
{
    char oid[JR_OID_MAX];
    if (!jr__valid_id(vol_id) || n > (CL_MAX - 8) / 16) return -EINVAL;
    list_oid(oid, sizeof(oid), vol_id);
    uint8_t *buf = malloc(8 + n * 16);
    if (!buf) return -ENOMEM;
    jr__put64(buf, resume);
    for (size_t i = 0; i < n; i++) {
        jr__put64(buf + 8 + i * 16, r[i].off);
        jr__put64(buf + 8 + i * 16 + 8, r[i].len);
    }
    int rc = st_write_full(st, oid, buf, 8 + n * 16);
    free(buf);
    return rc;
}

int jr_copylist_drop(st_store *st, const char *vol_id)
{
    char oid[JR_OID_MAX];
    if (!jr__valid_id(vol_id)) return -EINVAL;
    list_oid(oid, sizeof(oid), vol_id);
    int rc = st_remove(st, oid);
    return rc == -ENOENT ? 0 : rc;
}
