/*
 * rep_core.c: the replicator's context, its volume table, the scanner that
 * starts one sender thread per shippable volume, the sender loop (tail,
 * compress, throttle, ship, record the ack, trim), the dirty-region
 * catch-up copy, and the receiver-side helpers of a region copy (undo
 * blocks, position reset) shared with rep_link.c and rep_admin.c.
 *
 * One thread per shipping volume keeps a slow or broken volume from
 * stalling the others: each sender has its own backoff and its own calls
 * in flight; they share only the gRPC channel and the bandwidth bucket.
 * A sender ships a batch and waits for the answer (the receiver's
 * applied position is authoritative); with a backlog, up to
 * REP_PIPE_SLOTS senders at once read the next batch ahead and keep it in
 * flight too (struct flight; the receiver applies strictly in order).  jr.h has no
 * change notification, so an idle sender polls the header: 1 ms doubling
 * to 50 ms, 200 ms after 10 s without writes.
 *
 * Region copies (journal cap, or a replica that must be made from
 * scratch) follow jr.h's catch-up protocol; the receiver keeps undo
 * blocks from the copy's first chunk until it applied the primary's head
 * as of the copy's end (the copy window), and batches in that window
 * carry the byte ranges they touch so their old bytes are saved too.
 */
#include <errno.h>
#include <inttypes.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rep_int.h"
#include "tlog.h"

/* ------------------------------------------------------------- helpers */

int64_t rep__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rep__now_ms(void) { return rep__now_ns() / 1000000; }

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int rep__lz4(const void *src, size_t len, void **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len == 0 || len > (size_t)LZ4_MAX_INPUT_SIZE) return 0;
    int bound = LZ4_compressBound((int)len);
    char *dst = malloc((size_t)bound);
    if (!dst) return -ENOMEM;
    int n = LZ4_compress_default(src, dst, (int)len, bound);
    /* Only when it saves at least 1/8 (as the journal does, R-23). */
    if (n <= 0 || (size_t)n > len - len / 8) {
        free(dst);
        return 0;
    }
    *out = dst;
    *out_len = (size_t)n;
    return 1;
}

int rep__unlz4(const void *src, size_t len, size_t raw_len, void **out)
{
    *out = NULL;
    /* Distrust the sender's length before allocating. */
    if (raw_len == 0 || raw_len > REP_MAX_RAW || len > (size_t)INT32_MAX)
        return -EINVAL;
    /* An LZ4 block expands at most ~255:1: a longer claim cannot decode,
     * so refuse it before allocating up to REP_MAX_RAW for a few bytes. */
    if (raw_len / 255 > len + 64) return -EBADMSG;
    char *dst = malloc(raw_len);
    if (!dst) return -ENOMEM;
    int n = LZ4_decompress_safe(src, dst, (int)len, (int)raw_len);
    if (n < 0 || (size_t)n != raw_len) {
        free(dst);
        return -EBADMSG;
    }
    *out = dst;
    return 0;
}

/* ---------------------------------------------------------------- meta */

char *rep__meta(rep_ctx *r, const char *id, const char *key)
{
    char *v = NULL;
    if (jr_meta_get(r->st, id, key, &v) < 0) return NULL;
    return v;
}

uint64_t rep__meta_u64(rep_ctx *r, const char *id, const char *key)
{
    char *v = rep__meta(r, id, key);
    uint64_t x = v ? strtoull(v, NULL, 10) : 0;
    free(v);
    return x;
}

int rep__meta_set_u64(rep_ctx *r, const char *id, const char *key,
                      uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return jr_meta_set(r->st, id, key, buf);
}

/* jr.h has no meta delete: the header omap key is "meta.<key>"
 * (FORMAT.md section 2), so remove it through the store. */
int rep__meta_rm(rep_ctx *r, const char *id, const char *key)
{
    char oid[JR_MAX_ID + 8], k[256];
    snprintf(oid, sizeof(oid), "vol/%s", id);
    snprintf(k, sizeof(k), "meta.%s", key);
    int rc = st_omap_rm(r->st, oid, k);
    return rc == -ENOENT ? 0 : rc;
}

/* The few keys a scan needs, collected in one pass. */
struct vmeta {
    char replication[32];
    char replication_alt[32];
    char peer[RG_MAX_NAME + 1];
    char peer_alt[RG_MAX_NAME + 1];
    char from[RG_MAX_NAME + 1];
    int split, draining;
};

static int vmeta_cb(const char *key, const char *val, void *arg)
{
    struct vmeta *m = arg;
    if (!strcmp(key, REP_META_REPLICATION))
        rep__scpy(m->replication, sizeof(m->replication), val);
    else if (!strcmp(key, REP_META_REPLICATION_ALT))
        rep__scpy(m->replication_alt, sizeof(m->replication_alt), val);
    else if (!strcmp(key, REP_META_PEER_REGION))
        rep__scpy(m->peer, sizeof(m->peer), val);
    else if (!strcmp(key, REP_META_PEER_REGION_ALT))
        rep__scpy(m->peer_alt, sizeof(m->peer_alt), val);
    else if (!strcmp(key, REP_META_PEER))
        rep__scpy(m->from, sizeof(m->from), val);
    else if (!strcmp(key, REP_META_SPLIT))
        m->split = 1;
    else if (!strcmp(key, REP_META_DRAINING))
        m->draining = 1;
    return 0;
}

static void vmeta_load(rep_ctx *r, const char *id, struct vmeta *m)
{
    memset(m, 0, sizeof(*m));
    jr_meta_iter(r->st, id, vmeta_cb, m);
}

static void vmeta_peer(rep_ctx *r, const struct vmeta *m, char *out,
                       size_t size)
{
    const char *rep = m->replication[0] ? m->replication : m->replication_alt;
    const char *peer = m->peer[0] ? m->peer : m->peer_alt;
    out[0] = 0;
    if (strcmp(rep, "async")) return;
    /* The replica carries the primary's metadata unchanged: its peer is the
     * region it came from. */
    if (!strcmp(peer, r->region)) peer = m->from;
    snprintf(out, size, "%s", peer);
}

void rep__vol_peer(rep_ctx *r, const char *id, char *out, size_t size)
{
    struct vmeta m;
    vmeta_load(r, id, &m);
    vmeta_peer(r, &m, out, size);
}

int rep__eligible(rep_ctx *r, const char *id, const struct jr_info *info)
{
    struct vmeta m;
    char peer[RG_MAX_NAME + 1];
    vmeta_load(r, id, &m);
    vmeta_peer(r, &m, peer, sizeof(peer));
    if (strcmp(peer, r->peer_region) || m.split) return 0;
    if (info->role == JR_ROLE_PRIMARY) return 1;
    return m.draining;
}

/* --------------------------------------------------------- volume table */

struct rep_vol *rep__vol_get(rep_ctx *r, const char *id)
{
    pthread_mutex_lock(&r->vol_mu);
    struct rep_vol *v;
    for (v = r->vols; v; v = v->next)
        if (!strcmp(v->id, id)) goto out;
    v = calloc(1, sizeof(*v));
    if (!v) goto out;
    rep__scpy(v->id, sizeof(v->id), id);
    pthread_mutex_init(&v->op_lock, NULL);
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    snprintf(v->link_state, sizeof(v->link_state), "none");
    v->next = r->vols;
    r->vols = v;
out:
    pthread_mutex_unlock(&r->vol_mu);
    return v;
}

int rep__list_ids(rep_ctx *r, char ***ids, size_t *n)
{
    size_t cap = 16, k = 0;
    char **a = malloc(cap * sizeof(*a));
    if (!a) return -ENOMEM;
    pthread_mutex_lock(&r->vol_mu);
    for (struct rep_vol *v = r->vols; v; v = v->next) {
        if (k == cap) {
            char **b = realloc(a, 2 * cap * sizeof(*a));
            if (!b) break;
            a = b;
            cap *= 2;
        }
        a[k] = strdup(v->id);
        if (a[k]) k++;
    }
    pthread_mutex_unlock(&r->vol_mu);
    *ids = a;
    *n = k;
    return 0;
}

void rep__free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

static void vol_state(struct rep_vol *v, const char *link, const char *state,
                      const char *err)
{
    pthread_mutex_lock(&v->mu);
    if (link) rep__scpy(v->link_state, sizeof(v->link_state), link);
    if (state) rep__scpy(v->state, sizeof(v->state), state);
    if (err) rep__scpy(v->last_error, sizeof(v->last_error), err);
    pthread_mutex_unlock(&v->mu);
}

void rep__kick(rep_ctx *r, struct rep_vol *v)
{
    (void)r;
    pthread_mutex_lock(&v->mu);
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
}

/* Sleep up to ms unless stopping or kicked.  Returns 1 if stopping. */
static int vol_wait(rep_ctx *r, struct rep_vol *v, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + (int64_t)ms * 1000000;
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_mutex_lock(&v->mu);
    if (!v->stop && !__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE))
        pthread_cond_timedwait(&v->cv, &v->mu, &ts);
    int s = v->stop || __atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&v->mu);
    return s;
}

/* ------------------------------------------------------- token bucket */

/* Take n bytes from the link budget, sleeping as needed.  The bucket holds
 * at most one second of budget, so an idle link bursts at most that. */
static void bucket_take(rep_ctx *r, size_t n)
{
    struct rep_bucket *b = &r->bucket;
    if (!b->rate) return;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        int64_t now = mono_ns();
        b->tokens += (double)(now - b->last_ns) * (double)b->rate / 1e9;
        b->last_ns = now;
        if (b->tokens > (double)b->rate) b->tokens = (double)b->rate;
        if (b->tokens >= 0) {
            /* Go into debt for large batches: later callers wait. */
            b->tokens -= (double)n;
            pthread_mutex_unlock(&b->mu);
            return;
        }
        double wait_s = -b->tokens / (double)b->rate;
        pthread_mutex_unlock(&b->mu);
        if (wait_s > 0.2) wait_s = 0.2;
        if (__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) return;
        usleep((useconds_t)(wait_s * 1e6) + 1);
    }
}

/* ------------------------------------------ receiver: positions and undo */

/* BUG: jr.h has no call to reset a replica's position after a region copy
 * (asked of the journal owner as jr_replica_reset).  Until it exists this
 * does it with the header keys FORMAT.md section 2 specifies: remove the
 * replica's journal objects, then in one atomic header update drop their
 * jidx keys and the dirty map and set base = applied = seq, tail = seq+1
 * head is then base).  Only for a SECONDARY (no writer lease).
 * applied is written as jr_volume.c does ("<seq> <size>"). */
struct jlist {
    char **k;
    size_t n, cap;
};

static int jlist_add(struct jlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t c = l->cap ? 2 * l->cap : 16;
        char **k = realloc(l->k, c * sizeof(*k));
        if (!k) return -ENOMEM;
        l->k = k;
        l->cap = c;
    }
    if (!(l->k[l->n] = strdup(s))) return -ENOMEM;
    l->n++;
    return 0;
}

static void jlist_free(struct jlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->k[i]);
    free(l->k);
    memset(l, 0, sizeof(*l));
}

static int jlist_oid_cb(const char *oid, void *arg)
{
    return jlist_add(arg, oid);
}

int rep__position_set(rep_ctx *r, const char *id, uint64_t seq)
{
    struct jr_info info;
    int rc = jr_volume_stat(r->st, id, &info);
    if (rc < 0) return rc;
    if (info.role != JR_ROLE_SECONDARY) return JR_EROLE;
    rc = jr_replica_rebase(r->st, id, seq, info.size);
    if (rc == 0) tlog_info("rep.position_set", "vol=%s seq=%" PRIu64, id, seq);
    return rc;
}

/* Undo blocks: before a region copy overwrites image bytes on the
 * secondary, the old bytes of each aligned block are saved once per copy
 * window in "rep.undo/<vol>/<block index, 16 hex>".  Rolling back writes
 * them back and resets the position to the base of the copy, the last
 * write-order-consistent state. */
#define UNDO_BLOCK (256u << 10)

static void undo_oid(char *buf, size_t n, const char *id, uint64_t blk)
{
    snprintf(buf, n, "rep.undo/%s/%016" PRIx64, id, blk);
}

int rep__undo_save(rep_ctx *r, const char *id, const char *copy_id,
                   uint64_t off, uint64_t len)
{
    (void)copy_id;
    struct jr_info info;
    int rc = jr_volume_stat(r->st, id, &info);
    if (rc < 0) return rc;
    if (len == 0) return 0;
    uint8_t *buf = malloc(UNDO_BLOCK);
    if (!buf) return -ENOMEM;
    for (uint64_t b = off / UNDO_BLOCK; b <= (off + len - 1) / UNDO_BLOCK;
         b++) {
        char oid[JR_MAX_ID + 64];
        uint64_t start = b * UNDO_BLOCK, sz = UNDO_BLOCK, osz;
        if (start >= info.size) break;
        if (start + sz > info.size) sz = info.size - start;
        undo_oid(oid, sizeof(oid), id, b);
        /* Saved already in this window: keep the oldest bytes. */
        if (st_stat(r->st, oid, &osz, NULL) == 0) continue;
        if ((rc = jr_image_read(r->st, id, start, buf, sz)) < 0) break;
        if ((rc = st_write_full(r->st, oid, buf, sz)) < 0) break;
    }
    free(buf);
    return rc < 0 ? rc : 0;
}

static int undo_list(rep_ctx *r, const char *id, struct jlist *l)
{
    char pfx[JR_MAX_ID + 16];
    snprintf(pfx, sizeof(pfx), "rep.undo/%s/", id);
    return st_list(r->st, pfx, jlist_oid_cb, l);
}

/* Close the copy window: the marker goes first, then the undo blocks, so
 * a crash in between leaves only garbage (removed by the next copy's
 * begin), never a window whose undo data is incomplete. */
int rep__undo_drop(rep_ctx *r, const char *id)
{
    int rc = rep__meta_rm(r, id, REP_META_COPY_ID);
    if (rc < 0) return rc;
    rep__meta_rm(r, id, REP_META_COPY_UNTIL);
    rep__meta_rm(r, id, REP_META_COPY_BASE);
    struct jlist l = {0};
    rc = undo_list(r, id, &l);
    for (size_t i = 0; rc >= 0 && i < l.n; i++) {
        int e = st_remove(r->st, l.k[i]);
        if (e < 0 && e != -ENOENT) rc = e;
    }
    jlist_free(&l);
    return rc;
}

int rep__undo_rollback(rep_ctx *r, const char *id)
{
    char *cid = rep__meta(r, id, REP_META_COPY_ID);
    if (!cid) return 0;
    free(cid);
    uint64_t base = rep__meta_u64(r, id, REP_META_COPY_BASE);
    struct jlist l = {0};
    uint8_t *buf = malloc(UNDO_BLOCK);
    int rc = buf ? undo_list(r, id, &l) : -ENOMEM;
    size_t restored = 0;
    for (size_t i = 0; rc >= 0 && i < l.n; i++) {
        const char *p = strrchr(l.k[i], '/');
        uint64_t blk = p ? strtoull(p + 1, NULL, 16) : 0;
        ssize_t n = st_read(r->st, l.k[i], 0, buf, UNDO_BLOCK);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n > 0 &&
            (rc = jr_image_write(r->st, id, blk * UNDO_BLOCK, buf,
                                 (size_t)n)) < 0)
            break;
        restored++;
    }
    free(buf);
    jlist_free(&l);
    if (rc >= 0) rc = rep__position_set(r, id, base);
    if (rc >= 0) rc = rep__undo_drop(r, id);
    if (rc < 0)
        tlog_error("rep.rollback_failed", "vol=%s err=%d (%s)", id, rc,
                   jr_strerror(rc));
    else
        tlog_warn("rep.rollback", "vol=%s base=%" PRIu64 " blocks=%zu "
                  "msg=\"unfinished region copy rolled back\"", id, base,
                  restored);
    return rc < 0 ? rc : 1;
}

void rep__mark_split(rep_ctx *r, struct rep_vol *v, const char *why)
{
    struct jr_info info;
    jr_meta_set(r->st, v->id, REP_META_SPLIT, why);
    /* Fence our own copy: a node can no longer stage it read-write, and
     * the journal refuses the old writer.  Same epoch: we were the
     * one fenced, we do not make a new decision. */
    if (jr_volume_stat(r->st, v->id, &info) == 0 &&
        info.role == JR_ROLE_PRIMARY)
        jr_role_set(r->st, v->id, JR_ROLE_SECONDARY, info.epoch);
    vol_state(v, "split-brain", "split-brain", why);
    tlog_error("rep.split_brain", "vol=%s why=\"%s\"", v->id, why);
}

/* The layout protobuf-c gives every map<string,string> entry. */
struct kv_entry {
    ProtobufCMessage base;
    char *key;
    char *value;
};

struct meta_coll {
    const ProtobufCMessageDescriptor *desc;
    const char *skip;
    void **a;
    size_t n, cap;
};

static int meta_coll_cb(const char *key, const char *val, void *arg)
{
    struct meta_coll *m = arg;
    if (m->skip && !strncmp(key, m->skip, strlen(m->skip))) return 0;
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
    e->value = strdup(val);
    m->a[m->n++] = e; /* owned by the array even if a strdup failed */
    return (e->key && e->value) ? 0 : -ENOMEM;
}

void rep__meta_entries_free(void **a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        protobuf_c_message_free_unpacked(a[i], NULL);
    free(a);
}

int rep__meta_entries(rep_ctx *r, const char *id,
                      const ProtobufCMessageDescriptor *desc,
                      const char *skip_prefix, void ***out, size_t *n)
{
    struct meta_coll m = {.desc = desc, .skip = skip_prefix};
    *out = NULL;
    *n = 0;
    /* The cast in meta_coll_cb is only right for a string map entry. */
    if (desc->sizeof_message != sizeof(struct kv_entry) ||
        desc->n_fields != 2)
        return -EINVAL;
    int rc = jr_meta_iter(r->st, id, meta_coll_cb, &m);
    if (rc < 0) {
        rep__meta_entries_free(m.a, m.n);
        return rc;
    }
    *out = m.a;
    *n = m.n;
    return 0;
}

/* ------------------------------------------------------------- sender */

struct spec_build {
    Tandem__Repl__V1__VolumeSpec spec;
    void **ents;
    size_t n;
};

static void spec_free(struct spec_build *b)
{
    rep__meta_entries_free(b->ents, b->n);
    memset(b, 0, sizeof(*b));
}

static int spec_make(rep_ctx *r, const char *id, const struct jr_info *info,
                     uint64_t start_seq, struct spec_build *b)
{
    memset(b, 0, sizeof(*b));
    tandem__repl__v1__volume_spec__init(&b->spec);
    /* Our own "rep." bookkeeping stays in this region. */
    int rc = rep__meta_entries(r, id, &tandem__repl__v1__volume_spec__meta_entry__descriptor,
                               REP_META_PREFIX, &b->ents, &b->n);
    if (rc < 0) goto fail;
    b->spec.size = info->size;
    b->spec.object_size = info->object_size;
    b->spec.n_meta = b->n;
    b->spec.meta = (Tandem__Repl__V1__VolumeSpec__MetaEntry **)b->ents;
    b->spec.start_seq = start_seq;
    return 0;
fail:
    spec_free(b);
    return rc;
}

/* Read-ahead: while batch k is in flight (the peer applying it), a helper
 * thread reads and compresses batch k+1, so journal reads overlap the
 * remote apply.  Only reads are overlapped: batches are still shipped one
 * at a time, in order, each after the previous answer. */
struct prefetch {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, stop;
    int pending;            /* a read of `from` is queued or running */
    int ready;              /* its result is below */
    uint64_t from;
    int rc;
    struct jr_batch b;
    void *cbuf;             /* LZ4 of b.data (NULL: not worth it) */
    size_t clen;
};

struct pf_arg {
    rep_ctx *r;
    const char *id;
    struct prefetch *pf;
};

static void *prefetch_main(void *arg)
{
    struct pf_arg *a = arg;
    struct prefetch *pf = a->pf;
    pthread_mutex_lock(&pf->mu);
    while (!pf->stop) {
        if (!pf->pending || pf->ready) {
            pthread_cond_wait(&pf->cv, &pf->mu);
            continue;
        }
        uint64_t from = pf->from;
        pthread_mutex_unlock(&pf->mu);
        struct jr_batch b = {0};
        void *cbuf = NULL;
        size_t clen = 0;
        int rc = jr_tail_read(a->r->st, a->id, from, a->r->o.batch_bytes, &b);
        if (rc == 0 && b.n_entries && !a->r->o.no_compress &&
            rep__lz4(b.data, b.len, &cbuf, &clen) != 1)
            cbuf = NULL;
        pthread_mutex_lock(&pf->mu);
        pf->rc = rc;
        pf->b = b;
        pf->cbuf = cbuf;
        pf->clen = clen;
        pf->ready = 1;
        pthread_cond_broadcast(&pf->cv);
    }
    pthread_mutex_unlock(&pf->mu);
    free(a);
    return NULL;
}

static void prefetch_drop_locked(struct prefetch *pf)
{
    if (pf->ready) {
        jr_batch_free(&pf->b);
        free(pf->cbuf);
        memset(&pf->b, 0, sizeof(pf->b));
        pf->cbuf = NULL;
        pf->ready = 0;
        pf->pending = 0;
    }
}

static void prefetch_post(struct prefetch *pf, uint64_t from)
{
    if (!pf->started) return;
    pthread_mutex_lock(&pf->mu);
    /* Wait out a read still running for another position, then drop it. */
    while (pf->pending && !pf->ready) pthread_cond_wait(&pf->cv, &pf->mu);
    prefetch_drop_locked(pf);
    pf->from = from;
    pf->pending = 1;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
}

/* Take the read-ahead result for `from` if there is one (waiting for it
 * if it is being read).  Returns 1 with *b / *cbuf filled (owned by the
 * caller), 0 if the caller must read itself. */
static int prefetch_take(struct prefetch *pf, uint64_t from,
                         struct jr_batch *b, void **cbuf, size_t *clen)
{
    int got = 0;
    if (!pf->started) return 0;
    pthread_mutex_lock(&pf->mu);
    while (pf->pending && !pf->ready) pthread_cond_wait(&pf->cv, &pf->mu);
    if (pf->ready && pf->from == from && pf->rc == 0 && pf->b.n_entries &&
        pf->b.first_seq == from) {
        *b = pf->b;
        *cbuf = pf->cbuf;
        *clen = pf->clen;
        memset(&pf->b, 0, sizeof(pf->b));
        pf->cbuf = NULL;
        pf->ready = 0;
        pf->pending = 0;
        got = 1;
    } else {
        prefetch_drop_locked(pf);
    }
    pthread_mutex_unlock(&pf->mu);
    return got;
}

static void prefetch_start(struct prefetch *pf, rep_ctx *r, const char *id)
{
    memset(pf, 0, sizeof(*pf));
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->cv, NULL);
    struct pf_arg *a = malloc(sizeof(*a));
    if (!a) return;
    a->r = r;
    a->id = id;
    a->pf = pf;
    if (pthread_create(&pf->th, NULL, prefetch_main, a) == 0)
        pf->started = 1;
    else
        free(a);
}

static void prefetch_stop(struct prefetch *pf)
{
    if (pf->started) {
        pthread_mutex_lock(&pf->mu);
        pf->stop = 1;
        pthread_cond_broadcast(&pf->cv);
        pthread_mutex_unlock(&pf->mu);
        pthread_join(pf->th, NULL);
        pthread_mutex_lock(&pf->mu);
        pf->pending = pf->ready; /* a finished read is dropped below */
        prefetch_drop_locked(pf);
        pthread_mutex_unlock(&pf->mu);
    }
    pthread_mutex_destroy(&pf->mu);
    pthread_cond_destroy(&pf->cv);
}

/* A ShipBatch call running on a thread of its own, so that the next
 * batch travels while the peer applies this one (two in flight at most;
 * the peer applies strictly in order and refuses a batch that does not
 * follow its applied position).  The flight owns the batch bytes the
 * request points at. */
struct flight {
    rep_ctx *r;
    struct jr_batch b;
    void *cbuf;
    size_t clen;
    Tandem__Repl__V1__ShipBatchRequest req;
    pthread_t th;
    int code;
    Tandem__Repl__V1__ShipBatchResponse *resp;
    char msg[256];
};

static void *flight_main(void *arg)
{
    struct flight *f = arg;
    ProtobufCMessage *out = NULL;
    f->code = rpc_client_call(f->r->peer, "/tandem.repl.v1.Link/ShipBatch",
                              &f->req.base,
                              &tandem__repl__v1__ship_batch_response__descriptor,
                              &out, REP_SHIP_TIMEOUT_MS, 0, f->msg,
                              sizeof(f->msg));
    f->resp = (Tandem__Repl__V1__ShipBatchResponse *)out;
    return NULL;
}

/* Point a ShipBatch request at batch b (shipped as cbuf, its LZ4 form
 * of cl bytes, when there is one). */
static void req_set_batch(Tandem__Repl__V1__ShipBatchRequest *req,
                          const struct jr_batch *b, void *cbuf, size_t cl)
{
    req->first_seq = b->first_seq;
    req->last_seq = b->last_seq;
    req->n_entries = b->n_entries;
    req->raw_len = b->len;
    req->oldest_ts_ns = b->oldest_ts_ns;
    req->entries.data = cbuf ? cbuf : b->data;
    req->entries.len = cbuf ? cl : b->len;
    req->compression = cbuf ? TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4
                            : TANDEM__REPL__V1__COMPRESSION__COMPRESSION_NONE;
}

/* Wait for the call and free everything (its outcome is not needed: a
 * batch the peer applied is simply acknowledged again later). */
static void flight_drop(struct flight *f)
{
    if (!f) return;
    pthread_join(f->th, NULL);
    if (f->resp) protobuf_c_message_free_unpacked(&f->resp->base, NULL);
    jr_batch_free(&f->b);
    free(f->cbuf);
    free(f);
}

/* Per-sender state while the thread runs. */
struct sender {
    rep_ctx *r;
    struct rep_vol *v;
    uint64_t next;          /* next seq to ship (0: ask the peer) */
    uint64_t epoch;
    int backoff_ms;
    int64_t last_trim_ms;
    uint64_t copy_until;    /* peer is in a copy window until this seq */
    uint64_t promoted_at;   /* REP_META_PROMOTED_AT at this epoch */
    int copy_again;         /* the peer holds an unfinished copy */
    struct prefetch pf;
    struct flight *ahead;   /* the next batch, already on its way */
    int pipe_slot;          /* holds one of REP_PIPE_SLOTS */
};

static void sender_trim(struct sender *s, uint64_t acked, uint64_t head);

/* Take (want) or give back a pipelining slot; returns whether held. */
static int pipe_slot(struct sender *s, int want)
{
    rep_ctx *r = s->r;
    if (want && !s->pipe_slot) {
        int cur = __atomic_load_n(&r->pipe_used, __ATOMIC_RELAXED);
        while (cur < REP_PIPE_SLOTS &&
               !__atomic_compare_exchange_n(&r->pipe_used, &cur, cur + 1, 0,
                                            __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED))
            ;
        if (cur < REP_PIPE_SLOTS) s->pipe_slot = 1;
    } else if (!want && s->pipe_slot) {
        __atomic_fetch_sub(&r->pipe_used, 1, __ATOMIC_ACQ_REL);
        s->pipe_slot = 0;
    }
    return s->pipe_slot;
}

static void sender_backoff(struct sender *s, const char *why)
{
    /* The journal cap is enforced by trimming (FORMAT.md R-8): keep doing
     * it while the peer is away, or the journal grows without bound. */
    sender_trim(s, 0, 1);
    /* Capped exponential with jitter: 100 ms doubling to 2 s, each wait
     * drawn from [b/2, b]. */
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 100;
    if (s->backoff_ms > 2000) s->backoff_ms = 2000;
    int ms = s->backoff_ms / 2 + (int)(random() % (s->backoff_ms / 2 + 1));
    vol_state(s->v, "backoff", NULL, why);
    vol_wait(s->r, s->v, ms);
}

static void note_ack(struct sender *s, uint64_t applied, size_t wire,
                     uint64_t raw)
{
    struct rep_vol *v = s->v;
    int64_t now = rep__now_ms();
    pthread_mutex_lock(&v->mu);
    if (applied > v->acked) v->acked = applied;
    v->last_sync_ms = now;
    v->wire_bytes += wire;
    v->raw_bytes += raw;
    if (wire) v->batches++;
    v->rate_bytes += raw;
    if (!v->rate_t0_ms) v->rate_t0_ms = now;
    if (now - v->rate_t0_ms >= 1000) {
        double inst = (double)v->rate_bytes * 1000.0 /
                      (double)(now - v->rate_t0_ms);
        v->rate = v->rate ? 0.5 * v->rate + 0.5 * inst : inst;
        v->rate_t0_ms = now;
        v->rate_bytes = 0;
    }
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    if (applied) jr_peer_ack_set(s->r->st, v->id, s->r->peer_region, applied);
}

/* One ShipBatch call.  Returns the RPC code; *resp on RPC_OK. */
static int ship_call(struct sender *s, Tandem__Repl__V1__ShipBatchRequest *req,
                     Tandem__Repl__V1__ShipBatchResponse **resp, int tmo,
                     char *msg, size_t msz)
{
    ProtobufCMessage *out = NULL;
    int code = rpc_client_call(s->r->peer, "/tandem.repl.v1.Link/ShipBatch",
                               &req->base,
                               &tandem__repl__v1__ship_batch_response__descriptor,
                               &out, tmo, 0, msg, msz);
    *resp = (Tandem__Repl__V1__ShipBatchResponse *)out;
    return code;
}

/* Handle a refusal that fences this volume.  Returns 1 if the sender
 * must exit. */
static int sender_refused(struct sender *s,
                          const Tandem__Repl__V1__ShipBatchResponse *resp)
{
    char why[320];
    if (resp->epoch <= s->epoch &&
        resp->result == TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH) {
        /* The peer refused entries as stale but holds no newer epoch:
         * not a fencing decision about us (never step down or fence for
         * it); report and retry. */
        snprintf(why, sizeof(why), "peer %s refused entries as stale at "
                 "epoch %" PRIu64 " (ours %" PRIu64 "): %s", s->r->peer_region,
                 resp->epoch, s->epoch, resp->message);
        vol_state(s->v, NULL, "error", why);
        tlog_error("rep.refused_stale", "vol=%s why=\"%s\"", s->v->id, why);
        vol_wait(s->r, s->v, 2000);
        return 0;
    }
    if (resp->result == TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH ||
        (resp->result == TANDEM__REPL__V1__RESULT__RESULT_SPLIT_BRAIN &&
         resp->epoch > s->epoch)) {
        /* A newer promotion happened on the peer: we are the stale side.
         * If our journal ends at or before the point where the peer took
         * over, nothing diverged: step down to be its secondary.  Else
         * two histories exist: fence and wait for a resync. */
        Tandem__Repl__V1__GetVolumeResponse *pv = NULL;
        struct jr_info li;
        char m2[256];
        if (rep__peer_getvol(s->r, s->v->id, &pv, m2, sizeof(m2)) == RPC_OK &&
            pv->exists && !strcmp(pv->role, "primary") &&
            pv->epoch > s->epoch &&
            jr_volume_stat(s->r->st, s->v->id, &li) == 0 &&
            li.head <= pv->promoted_at_seq &&
            jr_role_set(s->r->st, s->v->id, JR_ROLE_SECONDARY, li.epoch) == 0) {
            tlog_warn("rep.stepped_down", "vol=%s head=%" PRIu64 " peer=%s "
                      "peer_epoch=%" PRIu64 " peer_promoted_at=%" PRIu64
                      " msg=\"peer was promoted; nothing diverged\"",
                      s->v->id, li.head, s->r->peer_region, pv->epoch,
                      pv->promoted_at_seq);
            vol_state(s->v, "stopped", "replica", "");
            protobuf_c_message_free_unpacked(&pv->base, NULL);
            return 1;
        }
        if (pv) protobuf_c_message_free_unpacked(&pv->base, NULL);
        snprintf(why, sizeof(why), "peer %s holds epoch %" PRIu64
                 " (role %s) above ours %" PRIu64 ": %s", s->r->peer_region,
                 resp->epoch, resp->role, s->epoch, resp->message);
        rep__mark_split(s->r, s->v, why);
        return 1;
    }
    /* The peer's copy is primary at an epoch not above ours: it must be
     * resynced (or demoted) there.  Never overwrite it; keep asking. */
    snprintf(why, sizeof(why), "peer %s refused (its epoch %" PRIu64
             ", ours %" PRIu64 "): %s", s->r->peer_region, resp->epoch,
             s->epoch, resp->message);
    pthread_mutex_lock(&s->v->mu);
    int first = !s->v->peer_split;
    s->v->peer_split = 1;
    pthread_mutex_unlock(&s->v->mu);
    vol_state(s->v, "split-brain", "split-brain", why);
    if (first) tlog_error("rep.split_brain", "vol=%s why=\"%s\"", s->v->id, why);
    vol_wait(s->r, s->v, 2000);
    return 0;
}

/* Ask the peer where it is; create the secondary there when our journal
 * still starts at seq 1.  Sets s->next.  Returns 0, 1 (exit sender),
 * 2 (needs a full copy: no replica and our journal is incomplete) or
 * -1 (retry after backoff). */
static int sender_probe(struct sender *s, const struct jr_info *info)
{
    rep_ctx *r = s->r;
    Tandem__Repl__V1__ShipBatchRequest req =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    Tandem__Repl__V1__ShipBatchResponse *resp = NULL;
    struct spec_build sb;
    int with_spec = info->tail <= 1 && !info->dirty_tracking;
    char msg[256];
    if (spec_make(r, s->v->id, info, 1, &sb) < 0) return -1;
    req.volume_id = s->v->id;
    req.from_region = r->region;
    req.epoch = info->epoch;
    req.promoted_at_seq = s->promoted_at;
    if (with_spec) req.spec = &sb.spec;
    req.primary_head = info->head;
    req.head_ts_ns = info->head_ts_ns;
    /* Register the peer before anything can create a replica there: a
     * primary with a peer leaves a tombstone when deleted, so no
     * replica is orphaned, not even one that never got an entry
     * (monotonic: a no-op once the peer has acknowledged). */
    int rr = jr_peer_ack_set(r->st, s->v->id, r->peer_region, 0);
    if (rr < 0) {
        spec_free(&sb);
        vol_state(s->v, NULL, NULL, "cannot register the peer");
        return -1;
    }
    int code = ship_call(s, &req, &resp, REP_PROBE_TIMEOUT_MS, msg,
                         sizeof(msg));
    spec_free(&sb);
    if (code != RPC_OK) {
        char e[320];
        snprintf(e, sizeof(e), "probe: %s: %s", rpc_code_name(code), msg);
        vol_state(s->v, "down", NULL, e);
        return -1;
    }
    int ret;
    switch (resp->result) {
    case TANDEM__REPL__V1__RESULT__RESULT_OK:
        s->next = resp->applied + 1;
        s->copy_until = resp->copy_until;
        s->copy_again = resp->copy_unfinished;
        note_ack(s, resp->applied, 0, 0);
        if (resp->created)
            tlog_info("rep.replica_created", "vol=%s peer=%s", s->v->id,
                      r->peer_region);
        pthread_mutex_lock(&s->v->mu);
        s->v->peer_split = 0;
        s->v->last_error[0] = 0;
        pthread_mutex_unlock(&s->v->mu);
        ret = 0;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_NO_VOLUME:
        ret = 2;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH:
    case TANDEM__REPL__V1__RESULT__RESULT_SPLIT_BRAIN:
        ret = sender_refused(s, resp) ? 1 : -2;
        break;
    default:
        vol_state(s->v, "down", NULL, resp->message);
        ret = -1;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return ret;
}

struct regs {
    Tandem__Repl__V1__Region *a;
    size_t n, cap;
};

static int regs_add(struct regs *g, uint64_t off, uint64_t len)
{
    /* Merge with the previous range when adjacent (callers add in
     * offset order). */
    if (g->n && off >= g->a[g->n - 1].offset &&
        g->a[g->n - 1].offset + g->a[g->n - 1].length >= off) {
        uint64_t end = off + len, pend = g->a[g->n - 1].offset +
                                          g->a[g->n - 1].length;
        if (end > pend) g->a[g->n - 1].length = end - g->a[g->n - 1].offset;
        return 0;
    }
    if (g->n == g->cap) {
        size_t c = g->cap ? 2 * g->cap : 64;
        void *p = realloc(g->a, c * sizeof(*g->a));
        if (!p) return -ENOMEM;
        g->a = p;
        g->cap = c;
    }
    Tandem__Repl__V1__Region *x = &g->a[g->n++];
    tandem__repl__v1__region__init(x);
    x->offset = off;
    x->length = len;
    return 0;
}

static int regs_cb(uint64_t off, uint64_t len, void *arg)
{
    return regs_add(arg, off, len);
}

static int cmp_reg(const void *a, const void *b)
{
    const Tandem__Repl__V1__Region *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Sort and merge overlapping ranges. */
static int regs_normalize(struct regs *g)
{
    if (g->n < 2) return 0;
    qsort(g->a, g->n, sizeof(*g->a), cmp_reg);
    struct regs m = {0};
    int rc = 0;
    for (size_t i = 0; i < g->n && !rc; i++)
        rc = regs_add(&m, g->a[i].offset, g->a[i].length);
    free(g->a);
    *g = m;
    return rc;
}

/* The region list of an unfinished copy is kept durably on the sender
 * ("rep.copylist/<vol>": the resume position, then pairs of offset and
 * length, little-endian u64), because the dirty map is cleared when the
 * copy starts: a failed copy must not forget its regions, nor the
 * position whose entries it relies on being shipped afterwards. */
static int copylist_load(rep_ctx *r, const char *id, struct regs *g,
                         uint64_t *resume)
{
    char oid[JR_MAX_ID + 16];
    uint64_t size;
    *resume = 0;
    snprintf(oid, sizeof(oid), "rep.copylist/%s", id);
    if (st_stat(r->st, oid, &size, NULL) < 0) return 0;
    if (size < 8 || (size - 8) % 16 || size > (256u << 20)) return -EBADMSG;
    uint8_t *buf = malloc(size);
    if (!buf) return -ENOMEM;
    ssize_t n = st_read(r->st, oid, 0, buf, size);
    int rc = n == (ssize_t)size ? 0 : -EIO;
    if (!rc) memcpy(resume, buf, 8);
    for (uint64_t i = 8; !rc && i < size; i += 16) {
        uint64_t o, l;
        memcpy(&o, buf + i, 8);
        memcpy(&l, buf + i + 8, 8);
        rc = regs_add(g, o, l);
    }
    free(buf);
    return rc;
}

static int copylist_save(rep_ctx *r, const char *id, const struct regs *g,
                         uint64_t resume)
{
    char oid[JR_MAX_ID + 16];
    snprintf(oid, sizeof(oid), "rep.copylist/%s", id);
    uint8_t *buf = malloc(8 + g->n * 16);
    if (!buf) return -ENOMEM;
    memcpy(buf, &resume, 8);
    for (size_t i = 0; i < g->n; i++) {
        memcpy(buf + 8 + i * 16, &g->a[i].offset, 8);
        memcpy(buf + 8 + i * 16 + 8, &g->a[i].length, 8);
    }
    int rc = st_write_full(r->st, oid, buf, 8 + g->n * 16);
    free(buf);
    return rc;
}

void rep__copylist_drop(rep_ctx *r, const char *id)
{
    char oid[JR_MAX_ID + 16];
    snprintf(oid, sizeof(oid), "rep.copylist/%s", id);
    st_remove(r->st, oid);
}

static int copy_call(struct sender *s, Tandem__Repl__V1__CopyRegionsRequest *req,
                     Tandem__Repl__V1__CopyRegionsResponse **resp, char *msg,
                     size_t msz)
{
    ProtobufCMessage *out = NULL;
    int code = rpc_client_call(
        s->r->peer, "/tandem.repl.v1.Link/CopyRegions", &req->base,
        &tandem__repl__v1__copy_regions_response__descriptor, &out,
        REP_SHIP_TIMEOUT_MS, 0, msg, msz);
    *resp = (Tandem__Repl__V1__CopyRegionsResponse *)out;
    if (code == RPC_OK &&
        (*resp)->result != TANDEM__REPL__V1__RESULT__RESULT_OK) {
        snprintf(msg, msz, "%s", (*resp)->message);
        return -(int)(*resp)->result;
    }
    return code;
}

static int is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* Bring the peer current by copying image regions: the dirty map (journal
 * cap) or, for a replica that does not exist or whose journal position we
 * no longer hold, the whole image.  Returns 0 (shipping resumes), 1 (exit
 * sender), -1 (retry later). */
static int sender_copy(struct sender *s, int full)
{
    rep_ctx *r = s->r;
    struct rep_vol *v = s->v;
    struct jr_info info;
    struct regs g = {0};
    struct spec_build sb = {0};
    Tandem__Repl__V1__CopyRegionsResponse *resp = NULL;
    uint8_t *buf = NULL;
    char msg[256], copy_id[40], e[400];
    int ret = -1, rc;
    uint64_t bytes = 0, nreg = 0;
    int64_t t0 = rep__now_ms();

    vol_state(v, "catching-up", "catching-up", NULL);
    pthread_mutex_lock(&v->mu);
    v->copy_active = 1;
    pthread_mutex_unlock(&v->mu);
    /* The catch-up protocol of jr.h: T = tail (every entry >= T is still
     * in the journal, every dropped entry the peer lacks is in the dirty
     * map), take the map at generation G, resume the journal at T only if
     * the map is still at G and nothing >= T was trimmed; then copy, then
     * ship from T (those entries overwrite, in order, whatever newer bytes
     * the copy read). */
    /* Open the session on the peer first: while it is unreachable nothing
     * changes here (the dirty map stays as it is). */
    if ((rc = jr_volume_stat(r->st, v->id, &info)) < 0) goto out;
    uint64_t begin_size = info.size;
    snprintf(copy_id, sizeof(copy_id), "%016" PRIx64 "%08lx",
             (uint64_t)rep__now_ns(), (unsigned long)random());
    /* A replica created by this copy starts empty at seq 0, so that until
     * the copy finishes its consistent state (the rollback target) is the
     * empty volume, not a position it does not hold yet. */
    if ((rc = spec_make(r, v->id, &info, 1, &sb)) < 0) goto out;
    Tandem__Repl__V1__CopyRegionsRequest req =
        TANDEM__REPL__V1__COPY_REGIONS_REQUEST__INIT;
    req.volume_id = v->id;
    req.from_region = r->region;
    req.epoch = info.epoch;
    req.copy_id = copy_id;
    req.begin = 1;
    req.spec = &sb.spec;
    rc = copy_call(s, &req, &resp, msg, sizeof(msg));
    if (rc != RPC_OK) goto callfail;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    resp = NULL;
    req.begin = 0;
    req.spec = NULL;

    uint64_t resume = 0;
    for (int tries = 0;; tries++) {
        uint64_t gen = 0, saved_resume = 0;
        g.n = 0;
        if ((rc = jr_volume_stat(r->st, v->id, &info)) < 0) goto out;
        if ((rc = copylist_load(r, v->id, &g, &saved_resume)) < 0) goto out;
        if (saved_resume && !info.dirty_tracking &&
            info.tail <= saved_resume) {
            /* A copy that failed before: its regions, plus the entries
             * from its resume position, which the journal still holds,
             * bring the peer current.  No full copy needed. */
            resume = saved_resume;
            full = 0;
            break;
        }
        if (full && !g.n) {
            for (uint64_t o = 0; o < info.size; o += REP_COPY_CHUNK) {
                uint64_t l = info.size - o < REP_COPY_CHUNK ? info.size - o
                                                             : REP_COPY_CHUNK;
                if ((rc = regs_add(&g, o, l)) < 0) goto out;
            }
        }
        /* The dirty map covers every entry dropped since the peer's ack
         * so with it the saved regions stay sufficient even when
         * the journal passed the cap again. */
        if ((rc = jr_dirty_iter_gen(r->st, v->id, &gen, regs_cb, &g)) < 0)
            goto out;
        if ((rc = regs_normalize(&g)) < 0) goto out;
        /* T = tail (jr.h): entries in [tail, applied] are in the image
         * but not in the dirty map (they were never trimmed), so resuming
         * at applied + 1 would skip them for regions the map lacks. */
        resume = info.tail;
        /* Durable before the dirty map is cleared (see copylist_load). */
        if ((rc = copylist_save(r, v->id, &g, resume)) < 0) goto out;
        if (info.size != begin_size) {
            /* Resized since the session began: start over later. */
            rc = -EAGAIN;
            goto out;
        }
        if (!info.dirty_tracking) break;
        rc = jr_dirty_clear_gen(r->st, v->id, resume, gen);
        if (rc == 0) break;
        /* A trim ran since the stat: the map has grown, take it again. */
        if ((rc != -EAGAIN && rc != JR_ETRIMMED) || tries > 20) goto out;
    }
    /* Pin the journal from resume on for a peer that never acked (R-8
     * keeps entries for registered peers only). */
    uint64_t ack = 0;
    jr_peer_ack_get(r->st, v->id, r->peer_region, &ack);
    if (!ack && resume > 1)
        jr_peer_ack_set(r->st, v->id, r->peer_region, resume - 1);

    buf = malloc(REP_COPY_CALL);
    Tandem__Repl__V1__Region rg[REP_COPY_CALL / 4096];
    Tandem__Repl__V1__Region *rp[REP_COPY_CALL / 4096];
    void *cbufs[REP_COPY_CALL / 4096];
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    size_t gi = 0;
    uint64_t goff = g.n ? g.a[0].offset : 0;
    /* Under --max-bandwidth, calls of about half a second of budget, so
     * the throttle stays smooth (the bucket lets one call into debt). */
    size_t call_max = REP_COPY_CALL;
    if (r->bucket.rate && r->bucket.rate / 2 < call_max)
        call_max = r->bucket.rate / 2 > 65536 ? r->bucket.rate / 2 : 65536;
    while (gi < g.n) {
        size_t used = 0, k = 0;
        while (gi < g.n && k < sizeof(rg) / sizeof(rg[0]) &&
               used < call_max) {
            uint64_t end = g.a[gi].offset + g.a[gi].length;
            if (end > info.size) end = info.size;
            if (goff >= end) {
                if (++gi < g.n) goff = g.a[gi].offset;
                continue;
            }
            uint64_t l = end - goff;
            if (l > REP_COPY_CHUNK) l = REP_COPY_CHUNK;
            if (l > call_max - used) l = call_max - used;
            uint8_t *p = buf + used;
            if ((rc = jr_image_read(r->st, v->id, goff, p, l)) < 0) goto out;
            Tandem__Repl__V1__Region *x = &rg[k];
            tandem__repl__v1__region__init(x);
            cbufs[k] = NULL;
            x->offset = goff;
            x->length = l;
            if (is_zero(p, l)) {
                x->zero = 1;
            } else {
                size_t cl;
                int c = rep__lz4(p, l, &cbufs[k], &cl);
                if (c == 1) {
                    x->data.data = cbufs[k];
                    x->data.len = cl;
                    x->compression =
                        TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4;
                } else {
                    x->data.data = p;
                    x->data.len = l;
                }
            }
            rp[k] = x;
            used += l;
            goff += l;
            k++;
            nreg++;
        }
        if (!k) break;
        size_t wire = 0;
        for (size_t i = 0; i < k; i++) wire += rg[i].data.len;
        bucket_take(r, wire);
        req.n_regions = k;
        req.regions = rp;
        rc = copy_call(s, &req, &resp, msg, sizeof(msg));
        for (size_t i = 0; i < k; i++) free(cbufs[i]);
        if (rc != RPC_OK) goto callfail;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        resp = NULL;
        bytes += used;
        pthread_mutex_lock(&v->mu);
        v->wire_bytes += wire;
        v->raw_bytes += used;
        pthread_mutex_unlock(&v->mu);
        if (__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) goto out;
    }
    if ((rc = jr_volume_stat(r->st, v->id, &info)) < 0) goto out;
    req.n_regions = 0;
    req.regions = NULL;
    req.finish = 1;
    req.resume_seq = resume;
    req.consistent_at = info.head;
    rc = copy_call(s, &req, &resp, msg, sizeof(msg));
    if (rc != RPC_OK) goto callfail;
    rep__copylist_drop(r, v->id);
    s->next = resume;
    s->copy_until = info.head;
    note_ack(s, resume - 1, 0, 0);
    tlog_info("rep.copy_done", "vol=%s full=%d regions=%" PRIu64
              " bytes=%" PRIu64 " resume=%" PRIu64 " consistent_at=%" PRIu64
              " ms=%" PRId64, v->id, full, nreg, bytes, resume, info.head,
              rep__now_ms() - t0);
    ret = 0;
    goto out;
callfail:
    if (resp && (resp->result == TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH ||
                 resp->result == TANDEM__REPL__V1__RESULT__RESULT_SPLIT_BRAIN)) {
        Tandem__Repl__V1__ShipBatchResponse sr =
            TANDEM__REPL__V1__SHIP_BATCH_RESPONSE__INIT;
        sr.result = resp->result;
        sr.epoch = resp->epoch;
        sr.role = "primary";
        sr.message = resp->message;
        s->epoch = info.epoch;
        ret = sender_refused(s, &sr) ? 1 : -1;
    }
    snprintf(e, sizeof(e), "copy: %s: %s",
             rc > 0 ? rpc_code_name(rc) : "refused", msg);
    vol_state(v, "down", NULL, e);
    tlog_warn("rep.copy_failed", "vol=%s msg=\"%s\"", v->id, e);
out:
    if (rc < 0 && ret == -1 && !resp)
        tlog_warn("rep.copy_failed", "vol=%s err=%d (%s)", v->id, rc,
                  jr_strerror(rc));
    if (resp) protobuf_c_message_free_unpacked(&resp->base, NULL);
    pthread_mutex_lock(&v->mu);
    v->copy_active = 0;
    pthread_mutex_unlock(&v->mu);
    free(buf);
    free(g.a);
    spec_free(&sb);
    return ret;
}

static void sender_trim(struct sender *s, uint64_t acked, uint64_t head)
{
    int64_t now = rep__now_ms();
    if (acked < head && now - s->last_trim_ms < 1000) return;
    s->last_trim_ms = now;
    int rc = jr_trim(s->r->st, s->v->id);
    if (rc < 0)
        tlog_warn("rep.trim_failed", "vol=%s err=%d (%s)", s->v->id, rc,
                  jr_strerror(rc));
}

/* Ship one batch from s->next.  Returns 1 shipped, 0 nothing to ship,
 * 2 exit, <0 retry after backoff (JR_ETRIMMED: copy needed). */
static int sender_step(struct sender *s, const struct jr_info *info)
{
    rep_ctx *r = s->r;
    struct rep_vol *v = s->v;
    struct jr_batch b = {0};
    Tandem__Repl__V1__ShipBatchResponse *resp = NULL;
    Tandem__Repl__V1__ShipBatchRequest req =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    struct regs touched = {0};
    Tandem__Repl__V1__Region **tp = NULL;
    void *cbuf = NULL;
    char msg[256], e[400];
    int ret;

    size_t cl = 0;
    int rc = 0, code;
    struct flight *cur = NULL;
    if (s->ahead && !s->copy_until && s->ahead->b.first_seq == s->next &&
        s->ahead->req.epoch == info->epoch) {
        /* Sent during the previous step: only its answer is awaited. */
        cur = s->ahead;
        s->ahead = NULL;
        b = cur->b;
        cbuf = cur->cbuf;
        cl = cur->clen;
        req = cur->req;
        memset(&cur->b, 0, sizeof(cur->b));
        cur->cbuf = NULL;
        pthread_mutex_lock(&v->mu);
        v->oldest_unacked_ns = b.oldest_ts_ns;
        pthread_mutex_unlock(&v->mu);
        goto send;
    }
    flight_drop(s->ahead);
    s->ahead = NULL;
    if (!prefetch_take(&s->pf, s->next, &b, &cbuf, &cl)) {
        rc = jr_tail_read(r->st, v->id, s->next, r->o.batch_bytes, &b);
        if (rc == 0 && b.n_entries && !r->o.no_compress &&
            rep__lz4(b.data, b.len, &cbuf, &cl) != 1)
            cbuf = NULL;
    }
    if (rc < 0) {
        if (rc != JR_ETRIMMED) {
            snprintf(e, sizeof(e), "journal read from %" PRIu64 ": %s",
                     s->next, jr_strerror(rc));
            vol_state(v, NULL, "error", e);
            tlog_error("rep.tail_failed", "vol=%s from=%" PRIu64
                       " err=%d (%s)", v->id, s->next, rc, jr_strerror(rc));
        }
        return rc;
    }
    if (b.n_entries == 0) {
        jr_batch_free(&b);
        pthread_mutex_lock(&v->mu);
        v->oldest_unacked_ns = 0;
        pthread_mutex_unlock(&v->mu);
        return 0;
    }
    pthread_mutex_lock(&v->mu);
    v->oldest_unacked_ns = b.oldest_ts_ns;
    pthread_mutex_unlock(&v->mu);
    if (b.first_seq != s->next) {
        /* The journal answered from elsewhere: never ship a gap. */
        snprintf(e, sizeof(e), "journal returned seq %" PRIu64 " for %" PRIu64,
                 b.first_seq, s->next);
        vol_state(v, NULL, "error", e);
        jr_batch_free(&b);
        free(cbuf);
        return -EIO;
    }
    req.volume_id = v->id;
    req.from_region = r->region;
    req.epoch = info->epoch;
    req.promoted_at_seq = s->promoted_at;
    req.primary_head = info->head;
    req.head_ts_ns = info->head_ts_ns;
    req_set_batch(&req, &b, cbuf, cl);
    /* In the peer's copy window it needs the ranges to save (undo). */
    if (s->copy_until && b.first_seq <= s->copy_until) {
        /* From the batch itself, not the journal: its entries may be
         * trimmed between the read and now. */
        if (jr_batch_regions(b.data, b.len, regs_cb, &touched) == 0 &&
            regs_normalize(&touched) == 0 &&
            (tp = calloc(touched.n + 1, sizeof(*tp)))) {
            for (size_t i = 0; i < touched.n; i++) tp[i] = &touched.a[i];
            req.n_touched = touched.n;
            req.touched = tp;
        } else {
            /* Without the ranges the peer could not keep its undo: ship
             * nothing rather than break the rollback guarantee. */
            ret = -EIO;
            vol_state(v, NULL, NULL, "cannot list journal regions");
            goto out;
        }
    } else {
        s->copy_until = 0;
    }
    bucket_take(r, req.entries.len);
    /* Read the next batch while the peer applies this one (with a slot:
     * a backlog, and not in backoff). */
    if (pipe_slot(s, b.last_seq < info->head && !s->backoff_ms) &&
        b.last_seq < info->head)
        prefetch_post(&s->pf, b.last_seq + 1);
send:
    if (!cur && !s->copy_until && s->pipe_slot && b.last_seq < info->head &&
        (cur = calloc(1, sizeof(*cur)))) {
        /* This batch goes on a thread, so that the next one can follow
         * it before its answer is back. */
        cur->r = r;
        cur->req = req;
        if (pthread_create(&cur->th, NULL, flight_main, cur) != 0) {
            free(cur);
            cur = NULL;
        }
    }
    if (cur && s->pipe_slot && b.last_seq < info->head) {
        /* The next batch, on its way while the peer applies this one
         * (in the copy window batches carry undo ranges: one at a time). */
        struct flight *n = calloc(1, sizeof(*n));
        if (n && prefetch_take(&s->pf, b.last_seq + 1, &n->b, &n->cbuf,
                               &n->clen)) {
            n->r = r;
            n->req = req;
            req_set_batch(&n->req, &n->b, n->cbuf, n->clen);
            n->req.n_touched = 0;
            n->req.touched = NULL;
            n->req.follows_in_flight = 1;
            bucket_take(r, n->req.entries.len);
            if (n->b.last_seq < info->head)
                prefetch_post(&s->pf, n->b.last_seq + 1);
            if (pthread_create(&n->th, NULL, flight_main, n) == 0) {
                s->ahead = n;
                n = NULL;
            }
        }
        if (n) {
            jr_batch_free(&n->b);
            free(n->cbuf);
            free(n);
        }
    }
    if (cur) {
        pthread_join(cur->th, NULL);
        code = cur->code;
        resp = cur->resp;
        cur->resp = NULL;
        snprintf(msg, sizeof(msg), "%s", cur->msg);
        free(cur);
    } else {
        code = ship_call(s, &req, &resp, REP_SHIP_TIMEOUT_MS, msg,
                         sizeof(msg));
    }
    if (code != RPC_OK) {
        snprintf(e, sizeof(e), "ship: %s: %s", rpc_code_name(code), msg);
        vol_state(v, "down", NULL, e);
        s->next = 0; /* ask the peer where to resume */
        ret = -ENOTCONN;
        goto out;
    }
    switch (resp->result) {
    case TANDEM__REPL__V1__RESULT__RESULT_OK:
        /* Ratio against the payload written (entries may already carry
         * LZ4 payloads, R-23): wire bytes per written byte. */
        note_ack(s, resp->applied, req.entries.len,
                 b.raw_bytes ? b.raw_bytes : b.len);
        s->next = resp->applied + 1;
        if (resp->applied < b.last_seq) s->next = 0;
        vol_state(v, "up", "replicating", "");
        sender_trim(s, resp->applied, info->head);
        s->backoff_ms = 0;
        ret = 1;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_GAP:
        tlog_warn("rep.gap", "vol=%s sent=%" PRIu64 " peer_applied=%" PRIu64,
                  v->id, b.first_seq, resp->applied);
        /* With two batches in flight this answer may predate the OK of
         * the batch before it (already counted): never rewind past what
         * the peer acknowledged (the journal may be trimmed there); ask
         * the peer where it is instead. */
        s->next = resp->applied + 1 < s->next ? 0 : resp->applied + 1;
        ret = 1;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH:
    case TANDEM__REPL__V1__RESULT__RESULT_SPLIT_BRAIN:
        ret = sender_refused(s, resp) ? 2 : -EAGAIN;
        s->next = 0;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_NO_VOLUME:
        s->next = 0;
        ret = -EAGAIN;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_BUSY:
        if (resp->copy_until) {
            s->copy_until = resp->copy_until;
            ret = 1; /* again, now with the touched ranges */
        } else if (resp->copy_unfinished) {
            s->copy_again = 1;
            ret = 1;
        } else {
            ret = -EAGAIN;
        }
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_CORRUPT:
        snprintf(e, sizeof(e), "peer refused batch %" PRIu64 "..%" PRIu64
                 " as corrupt: %s", b.first_seq, b.last_seq, resp->message);
        vol_state(v, NULL, "error", e);
        tlog_error("rep.corrupt", "vol=%s msg=\"%s\"", v->id, e);
        ret = -EBADMSG;
        break;
    default:
        snprintf(e, sizeof(e), "peer: %s", resp->message);
        vol_state(v, "down", NULL, e);
        s->next = 0;
        ret = -EAGAIN;
    }
out:
    if (resp) protobuf_c_message_free_unpacked(&resp->base, NULL);
    free(cbuf);
    free(tp);
    free(touched.a);
    jr_batch_free(&b);
    return ret;
}

/* The dirty map only ever names what dropped entries touched, and every
 * dropped entry lies below the tail.  A trim (journal cap) can drop
 * entries the peer already applied but has not acknowledged yet (the ack
 * is recorded after the answer): then the map names nothing the peer
 * lacks, this sender keeps shipping without meeting JR_ETRIMMED, and
 * nothing would clear the map; once the writes stop the volume would stay
 * in dirty tracking for good (wait-sync, status and trims all see it).
 * So when the peer's applied position (s->next - 1) is at or past
 * tail - 1, clear the map without a copy, under jr.h's guards: if a trim
 * ran since the stat (tail moved or the map grew) the clear is refused
 * and the next round looks again. */
static int count_cb(uint64_t off, uint64_t len, void *arg)
{
    (void)off;
    (void)len;
    (*(uint64_t *)arg)++;
    return 0;
}

static void sender_dirty_drop(struct sender *s, const struct jr_info *info)
{
    uint64_t gen = 0, nreg = 0;
    int rc = jr_dirty_iter_gen(s->r->st, s->v->id, &gen, count_cb, &nreg);
    if (rc == 0)
        rc = jr_dirty_clear_gen(s->r->st, s->v->id, info->tail, gen);
    if (rc == 0)
        tlog_info("rep.dirty_dropped", "vol=%s tail=%" PRIu64
                  " peer_applied=%" PRIu64 " regions=%" PRIu64
                  " msg=\"the peer has every trimmed entry\"", s->v->id,
                  info->tail, s->next - 1, nreg);
    else if (rc != -EAGAIN && rc != JR_ETRIMMED)
        tlog_warn("rep.dirty_drop_failed", "vol=%s err=%d (%s)", s->v->id,
                  rc, jr_strerror(rc));
}

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    rep_ctx *r = s->r;
    struct rep_vol *v = s->v;
    int idle_ms = 1;
    int64_t idle_since = 0, elig_ms = 0;
    prefetch_start(&s->pf, r, v->id);
    tlog_info("rep.sender_start", "vol=%s peer=%s", v->id, r->peer_region);
    while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&v->mu);
        int stop = v->stop;
        pthread_mutex_unlock(&v->mu);
        if (stop) break;
        struct jr_info info;
        int rc = jr_volume_stat(r->st, v->id, &info);
        if (rc == -ENOENT) break;
        if (rc < 0) {
            sender_backoff(s, "volume stat failed");
            continue;
        }
        /* The metadata check costs a store round trip or two: once a
         * second, or at once when the role or epoch moved. */
        int64_t now = rep__now_ms();
        if (s->epoch != info.epoch || info.role != JR_ROLE_PRIMARY ||
            now - elig_ms >= 1000) {
            if (!rep__eligible(r, v->id, &info)) break;
            elig_ms = now;
        }
        if (s->epoch != info.epoch) {
            s->epoch = info.epoch;
            s->next = 0;
            s->promoted_at = rep__meta_u64(r, v->id, REP_META_PROMOTED_AT);
        }
        if (s->next == 0) {
            /* Whatever is still on its way is stale now. */
            flight_drop(s->ahead);
            s->ahead = NULL;
            rc = sender_probe(s, &info);
            if (rc == 1) break;
            if (rc == -2) continue; /* peer primary: sender_refused waited */
            if (rc < 0) {
                sender_backoff(s, NULL);
                continue;
            }
            if (rc == 2) {
                rc = sender_copy(s, 1);
                if (rc == 1) break;
                if (rc < 0) sender_backoff(s, NULL);
                continue;
            }
            s->backoff_ms = 0;
        }
        if (s->copy_again) {
            s->copy_again = 0;
            rc = sender_copy(s, 0);
            if (rc == 1) break;
            if (rc < 0) {
                s->copy_again = 1;
                sender_backoff(s, NULL);
            }
            continue;
        }
        if (info.dirty_tracking && s->next >= info.tail)
            sender_dirty_drop(s, &info);
        /* Nothing past what the peer has: no journal read needed. */
        rc = info.head >= s->next ? sender_step(s, &info) : 0;
        if (rc == 2) break;
        if (rc == 1) {
            idle_ms = 1;
            idle_since = 0;
            continue;
        }
        if (rc == JR_ETRIMMED) {
            rc = sender_copy(s, !info.dirty_tracking);
            if (rc == 1) break;
            if (rc < 0) sender_backoff(s, NULL);
            continue;
        }
        if (rc < 0) {
            sender_backoff(s, NULL);
            continue;
        }
        /* Nothing new.  jr.h has no change notification: poll, quickly
         * after activity, slowing to 50 ms when idle (lag stays well under
         * the 0.5 s goal), and to 200 ms after 10 s without writes, so
         * many idle volumes cost the store little. */
        vol_state(v, "up", info.role == JR_ROLE_PRIMARY ? "replicating"
                                                        : "draining", NULL);
        pthread_mutex_lock(&v->mu);
        v->oldest_unacked_ns = 0;
        pthread_mutex_unlock(&v->mu);
        if (!idle_since) idle_since = now;
        if (vol_wait(r, v, idle_ms)) break;
        if (idle_ms < 50) idle_ms *= 2;
        else if (now - idle_since > 10000) idle_ms = 200;
    }
    vol_state(v, NULL, NULL, NULL);
    pthread_mutex_lock(&v->mu);
    v->thr_running = 0;
    if (!strcmp(v->link_state, "up") || !strcmp(v->link_state, "backoff") ||
        !strcmp(v->link_state, "down"))
        snprintf(v->link_state, sizeof(v->link_state), "stopped");
    pthread_mutex_unlock(&v->mu);
    flight_drop(s->ahead);
    s->ahead = NULL;
    pipe_slot(s, 0);
    prefetch_stop(&s->pf);
    tlog_info("rep.sender_stop", "vol=%s", v->id);
    free(s);
    return NULL;
}

static void sender_ensure(rep_ctx *r, struct rep_vol *v)
{
    pthread_mutex_lock(&v->mu);
    if (v->thr_running) {
        pthread_mutex_unlock(&v->mu);
        return;
    }
    int join = v->thr_joinable;
    v->thr_joinable = 0;
    pthread_mutex_unlock(&v->mu);
    if (join) pthread_join(v->thr, NULL);
    /* Created again under the id of a deleted primary whose replica is
     * still to be deleted: the old replica goes first.  Checked
     * here, when a sender would start, not on every eligibility check. */
    struct jr_tomb t;
    if (jr_tomb_get(r->st, v->id, &t) == 0) return;
    struct sender *s = calloc(1, sizeof(*s));
    if (!s) return;
    s->r = r;
    s->v = v;
    pthread_mutex_lock(&v->mu);
    v->stop = 0;
    v->thr_running = 1;
    if (pthread_create(&v->thr, NULL, sender_main, s) != 0) {
        v->thr_running = 0;
        free(s);
    } else {
        v->thr_joinable = 1;
    }
    pthread_mutex_unlock(&v->mu);
}

/* ------------------------------------------------------------- scanner */

static int scan_cb(const char *id, void *arg)
{
    rep_ctx *r = arg;
    struct jr_info info;
    struct rep_vol *v = rep__vol_get(r, id);
    if (!v) return 0;
    if (jr_volume_stat(r->st, id, &info) < 0) return 0;
    if (rep__eligible(r, id, &info)) sender_ensure(r, v);
    return 0;
}

static void *scan_main(void *arg)
{
    rep_ctx *r = arg;
    int64_t last_hello = 0, last_tombs = 0;
    while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        jr_volume_list(r->st, scan_cb, r);
        /* Deleted primaries' replicas: only while the link is up (a call
         * to a silent peer could hold the scanner for its deadline). */
        if (r->peer_up && rep__now_ms() - last_tombs >= 1000) {
            rep__tombs_process(r);
            last_tombs = rep__now_ms();
        }
        if (rep__now_ms() - last_hello > 5000) {
            char msg[256];
            int up = rep__peer_hello(r, msg, sizeof(msg)) == 0;
            if (up != r->peer_up)
                tlog_info("rep.peer_link", "peer=%s addr=%s state=%s msg=\"%s\"",
                          r->peer_region, r->peer_addr, up ? "up" : "down",
                          up ? "" : msg);
            r->peer_up = up;
            last_hello = rep__now_ms();
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + (int64_t)r->o.scan_ms * 1000000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_mutex_lock(&r->stop_mu);
        if (!r->stopping) pthread_cond_timedwait(&r->stop_cv, &r->stop_mu, &ts);
        pthread_mutex_unlock(&r->stop_mu);
    }
    return NULL;
}

/* ------------------------------------------------------------- context */

static char *dupz(const char *s) { return s ? strdup(s) : NULL; }

int rep_create(const struct rep_opts *o, rep_ctx **out, char *err,
               size_t errlen)
{
    rep_ctx *r = calloc(1, sizeof(*r));
    int rc = -ENOMEM;
    *out = NULL;
    if (!r) goto fail;
    r->o = *o;
    r->o.config_path = dupz(o->config_path);
    r->o.listen_addr = dupz(o->listen_addr);
    r->o.admin_addr = dupz(o->admin_addr);
    r->o.admin_tcp = dupz(o->admin_tcp);
    r->o.tls_ca = dupz(o->tls_ca);
    r->o.tls_cert = dupz(o->tls_cert);
    r->o.tls_key = dupz(o->tls_key);
    r->o.tls_server_name = dupz(o->tls_server_name);
    r->o.metrics_addr = dupz(o->metrics_addr);
    r->o.region = r->region;
    r->o.peer_region = r->peer_region;
    r->o.peer_addr = r->peer_addr;
    /* 8 MiB: per-batch costs (a store commit each for the journal, the
     * image and the header on the peer, one round trip) are then small
     * next to the bytes, and memory stays bounded (REP_PIPE_SLOTS); a
     * caught-up sender ships what there is, so this only matters for a
     * backlog. */
    if (!r->o.batch_bytes) r->o.batch_bytes = 8u << 20;
    if (r->o.batch_bytes > 32u << 20) r->o.batch_bytes = 32u << 20;
    if (!r->o.scan_ms) r->o.scan_ms = 500;
    r->metrics_fd = -1;
    pthread_mutex_init(&r->vol_mu, NULL);
    pthread_mutex_init(&r->stop_mu, NULL);
    pthread_cond_init(&r->stop_cv, NULL);
    pthread_mutex_init(&r->bucket.mu, NULL);
    r->bucket.rate = o->max_bandwidth;
    r->bucket.last_ns = mono_ns();

    if (!o->config_path || !o->region || !o->peer_region) {
        snprintf(err, errlen, "--config, --region and --peer-region are "
                 "required");
        rc = -EINVAL;
        goto fail;
    }
    if (!o->insecure && !(o->tls_ca && o->tls_cert && o->tls_key)) {
        snprintf(err, errlen, "--tls-ca, --tls-cert and --tls-key are "
                 "required (or --insecure for a plaintext link)");
        rc = -EINVAL;
        goto fail;
    }
    rep__scpy(r->region, sizeof(r->region), o->region);
    rep__scpy(r->peer_region, sizeof(r->peer_region), o->peer_region);
    if (!strcmp(r->region, r->peer_region)) {
        snprintf(err, errlen, "--peer-region must differ from --region");
        rc = -EINVAL;
        goto fail;
    }
    if ((rc = rg_load(o->config_path, &r->cfg, err, errlen)) < 0) goto fail;
    const struct rg_region *me = rg_find(r->cfg, r->region);
    const struct rg_region *peer = rg_find(r->cfg, r->peer_region);
    if (!me || !peer) {
        snprintf(err, errlen, "%s: region %s is not configured",
                 o->config_path, me ? r->peer_region : r->region);
        rc = -EINVAL;
        goto fail;
    }
    if (o->peer_addr && *o->peer_addr)
        rep__scpy(r->peer_addr, sizeof(r->peer_addr), o->peer_addr);
    else
        rep__scpy(r->peer_addr, sizeof(r->peer_addr), peer->replicator);
    if (!r->peer_addr[0]) {
        snprintf(err, errlen, "no --peer and no replicator= for region %s in "
                 "%s", r->peer_region, o->config_path);
        rc = -EINVAL;
        goto fail;
    }
    if (!r->o.listen_addr) {
        if (!me->replicator[0]) {
            snprintf(err, errlen, "no --listen and no replicator= for region "
                     "%s in %s", r->region, o->config_path);
            rc = -EINVAL;
            goto fail;
        }
        r->o.listen_addr = strdup(me->replicator);
    }
    if ((rc = rg_open_store(me, &r->st)) < 0) {
        snprintf(err, errlen, "open store of region %s: %s", r->region,
                 jr_strerror(rc));
        goto fail;
    }
    struct rpc_tls tls = {r->o.tls_ca, r->o.tls_cert, r->o.tls_key,
                          r->o.tls_server_name};
    if ((rc = rpc_client_create(r->peer_addr, o->insecure ? NULL : &tls,
                                &r->peer)) < 0) {
        snprintf(err, errlen, "peer client %s: %s", r->peer_addr,
                 strerror(-rc));
        goto fail;
    }
    *out = r;
    return 0;
fail:
    rep_destroy(r);
    return rc;
}

int rep_start(rep_ctx *r, char *err, size_t errlen)
{
    struct rpc_tls tls = {r->o.tls_ca, r->o.tls_cert, r->o.tls_key, NULL};
    const struct rpc_tls *t = r->o.insecure ? NULL : &tls;
    struct rpc_server_opts lo = {rep__link_methods, rep__n_link_methods, r,
                                 8, REP_MAX_MSG};
    int rc = rpc_server_create(&lo, &r->link_srv);
    if (rc < 0) goto fail_msg;
    rc = rpc_server_listen(r->link_srv, r->o.listen_addr, t);
    if (rc < 0) {
        snprintf(err, errlen, "listen %s: %s", r->o.listen_addr,
                 strerror(-rc));
        return rc;
    }
    r->link_port = rc;
    if ((rc = rpc_server_start(r->link_srv)) < 0) goto fail_msg;
    if (r->o.admin_addr || r->o.admin_tcp) {
        struct rpc_server_opts ao = {rep__admin_methods, rep__n_admin_methods,
                                     r, 4, REP_MAX_MSG};
        if ((rc = rpc_server_create(&ao, &r->admin_srv)) < 0) goto fail_msg;
        if (r->o.admin_addr &&
            (rc = rpc_server_listen(r->admin_srv, r->o.admin_addr, NULL)) < 0) {
            snprintf(err, errlen, "admin listen %s: %s", r->o.admin_addr,
                     strerror(-rc));
            return rc;
        }
        if (r->o.admin_tcp &&
            (rc = rpc_server_listen(r->admin_srv, r->o.admin_tcp, t)) < 0) {
            snprintf(err, errlen, "admin listen %s: %s", r->o.admin_tcp,
                     strerror(-rc));
            return rc;
        }
        if ((rc = rpc_server_start(r->admin_srv)) < 0) goto fail_msg;
    }
    if (r->o.metrics_addr && (rc = rep__metrics_start(r, r->o.metrics_addr)) < 0) {
        snprintf(err, errlen, "metrics listen %s: %s", r->o.metrics_addr,
                 strerror(-rc));
        return rc;
    }
    if ((rc = -pthread_create(&r->scan_thr, NULL, scan_main, r)) < 0)
        goto fail_msg;
    r->scan_started = 1;
    tlog_info("rep.started", "region=%s peer=%s peer_addr=%s listen=%s "
              "link_port=%d admin=%s tls=%s", r->region, r->peer_region,
              r->peer_addr, r->o.listen_addr, r->link_port,
              r->o.admin_addr ? r->o.admin_addr : "-",
              r->o.insecure ? "off" : "mtls");
    return 0;
fail_msg:
    snprintf(err, errlen, "start: %s", strerror(-rc));
    return rc;
}

int rep_link_port(const rep_ctx *r) { return r->link_port; }
int rep_metrics_port(const rep_ctx *r) { return r->metrics_port; }

void rep_destroy(rep_ctx *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->stop_mu);
    __atomic_store_n(&r->stopping, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&r->stop_cv);
    pthread_mutex_unlock(&r->stop_mu);
    if (r->scan_started) pthread_join(r->scan_thr, NULL);
    for (struct rep_vol *v = r->vols; v; v = v->next) {
        pthread_mutex_lock(&v->mu);
        v->stop = 1;
        pthread_cond_broadcast(&v->cv);
        pthread_mutex_unlock(&v->mu);
    }
    for (struct rep_vol *v = r->vols; v; v = v->next)
        if (v->thr_joinable) pthread_join(v->thr, NULL);
    rep__metrics_stop(r);
    rpc_server_destroy(r->admin_srv, 2000);
    rpc_server_destroy(r->link_srv, 2000);
    rpc_client_destroy(r->peer);
    struct rep_vol *v = r->vols;
    while (v) {
        struct rep_vol *n = v->next;
        if (v->insync_ms && r->st)
            rep__meta_set_u64(r, v->id, REP_META_INSYNC_MS,
                              (uint64_t)v->insync_ms);
        pthread_mutex_destroy(&v->op_lock);
        pthread_mutex_destroy(&v->mu);
        pthread_cond_destroy(&v->cv);
        free(v);
        v = n;
    }
    st_close(r->st);
    rg_free(r->cfg);
    free((char *)r->o.config_path);
    free((char *)r->o.listen_addr);
    free((char *)r->o.admin_addr);
    free((char *)r->o.admin_tcp);
    free((char *)r->o.tls_ca);
    free((char *)r->o.tls_cert);
    free((char *)r->o.tls_key);
    free((char *)r->o.tls_server_name);
    free((char *)r->o.metrics_addr);
    pthread_mutex_destroy(&r->vol_mu);
    pthread_mutex_destroy(&r->stop_mu);
    pthread_cond_destroy(&r->stop_cv);
    pthread_mutex_destroy(&r->bucket.mu);
    free(r);
}
