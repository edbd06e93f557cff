/*
 * jr_io.c: an open volume, the data path.
 *
 * Writers (any number of threads) turn each request into journal entries,
 * compress and checksum the payload outside any lock, then take a sequence
 * number and join the commit queue.  One of the waiting writers becomes
 * the leader, appends every queued entry in one store operation (group
 * commit, guarded by the journal object's fencing token, FORMAT.md R-6),
 * and wakes the others: a write returns once its entry is durable.
 *
 * A background applier thread applies durable entries to the image in
 * large batches (coalesced per data object, one store operation per object,
 * issued concurrently) and records the applied position lazily: replay on
 * open makes that safe.  Entries stay in the queue until applied, and
 * reads lay them over what they read from the image, so a read sees every
 * acknowledged write.  The same thread renews the writer lease
 * (jr__wlease_check).
 *
 * Fencing (FORMAT.md R-36; the lease itself is jr_lease.c): every store
 * update of the writer is guarded so that it stops once another writer
 * took the lease over: journal appends by the journal object's token,
 * header updates by the header's "fence" key, image writes by the same
 * key through st_wop_fence_guard (sqlite checks it in the write's
 * transaction; on rados the new writer blocklists the old one's client
 * before it writes anything).  The applier stops for good when the lease
 * was lost and applies nothing while a renewal is failing: its durable
 * entries stay in the journal, and the next writer replays them before
 * its own writes.
 *
 * One unit (about 1,000 lines): the queue, the group commit, the applier,
 * the overlay reads and open/close all work on struct jr_volume under its
 * one mutex, and their hand-offs (durable, applied, persisted) are the
 * invariants this file keeps; split, that struct and its locking rules
 * would become a shared header every part could break.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "jr_int.h"
#include "tbase.h"

#define JOBJ_TARGET (4u << 20)     /* start a new journal object past this */
#define MAX_GROUP (4u << 20)       /* bytes per group commit */
#define MAX_Q_BYTES (64u << 20)    /* unapplied data before writers wait */
#define MAX_Q_N 16384              /* unapplied entries before writers wait */
#define MAX_APPLY_BYTES (32u << 20) /* per applier batch */
#define MAX_APPLY_N 16384
#define PERSIST_MS 1000
/* The applier lets durable entries linger this long (or until a quarter of
 * the queue limits is used) before applying them: one batch then covers
 * many writes (one store operation per data object touched, overwrites
 * merged), instead of one image write per journal write.  Reads are served
 * from the overlay meanwhile. */
#define APPLY_LINGER_MS 20
/* Trim after this many journal objects were closed rather than after each
 * one: a trim costs a header load, a guarded header update, a persisted
 * applied position and the removals, on the applier's thread, and with
 * 1 MiB writes a 4 MiB object closes every 4 writes.  Volumes with a small
 * journal cap still trim on every roll, so the cap is not overshot. */
#define TRIM_EVERY_ROLLS 4
#define TRIM_BATCH_MIN_CAP (64ull << 20)

struct pent {
    struct pent *next;
    uint64_t seq;
    uint8_t kind;
    uint16_t flags;
    uint32_t member;    /* group entries: the member index */
    uint64_t off, len;
    uint8_t *enc;       /* header + payload as stored (NULL: read-only) */
    size_t enc_len;
    const uint8_t *raw; /* write: the data (into enc or rawbuf) */
    uint8_t *rawbuf;    /* owned copy when the payload is compressed */
    int refs;           /* the queue's reference + readers' */
};

struct jr_volume {
    st_store *st;
    char id[JR_MAX_ID + 1];
    char hoid[JR_OID_MAX];
    int writable;
    uint32_t objsz;
    char region[JR_MAX_REGION + 1];
    int64_t created;
    int role;

    pthread_mutex_t mu;
    pthread_cond_t commit_cv; /* a group commit finished */
    pthread_cond_t apply_cv;  /* work for the applier */
    pthread_cond_t space_cv;  /* entries were applied */
    uint64_t size;            /* after every queued entry */
    uint64_t epoch;
    uint64_t next_seq;
    uint64_t durable_seq;
    uint64_t applied_seq, applied_size;
    uint64_t persisted_seq;
    struct pent *q_head, *q_tail; /* not yet applied, in seq order */
    struct pent *commit_next;     /* first entry no leader took yet */
    size_t q_n;
    uint64_t q_bytes;
    int committing;
    int err;  /* sticky: the volume failed (writes refused) */
    int stop;
    int need_trim;
    unsigned rolls_untrimmed; /* journal objects closed since need_trim */
    uint64_t cap;             /* the journal cap (header "cap") */
    int64_t head_ts;

    /* the current journal object: touched by the leader only */
    uint64_t jno, jfirst, jlast, jbytes;

    struct jr__wlease lease;  /* the writer lease (jr_lease.c); its
                                 renewal fields: the applier's */
    /* Applier only: */
    char applied_raw[64];     /* the header's "applied" as we last saw it */
    struct jr__bad damage;    /* read-only open: where the journal is
                                 damaged (seq 0: not) */
    pthread_t applier;
    int applier_started;
    struct jr_stats stats; /* under mu */
    /* Read filter: how many queued entries touch each 1 MiB region (hashed
     * into OV_BUCKETS counters), and how many touch too much to count
     * (resizes, huge discards), so a read of a region nothing pending
     * touches skips the scan of the queue.  Under mu. */
    uint32_t ov_count[4096];
    uint32_t ov_wide;
    /* Test hook (TANDEM_JR_APPLY_DELAY_MS): the applier sleeps this long
     * before each batch, so tests can keep entries in the overlay. */
    int apply_delay_ms;
    uint64_t pending_since; /* mono ns: applied == durable until then */
    int space_waiters;      /* writers waiting for the applier */
    /* Snapshots (FORMAT.md §5).  The applier's copy-on-write state (which
     * objects are preserved for the newest snapshot: applier only), and
     * the thread serving snapreq.* requests of other processes,
     * stopped by jr_close through snap_stop/snap_cv (under mu). */
    struct jr__cow cow;
    pthread_t snapreq;
    int snapreq_started;
    int snap_stop;
    pthread_cond_t snap_cv;
    /* Consistency groups (FORMAT.md §6): the write gate a consistency
     * point closes (writers not yet sequenced wait on gate_cv: nothing
     * they write can fall before the mark), and the thread serving the
     * group's points (jr_group.c), stopped with snap_stop. */
    int gate;
    pthread_cond_t gate_cv;
    char group[JR_MAX_GROUP_ID + 1];
    uint32_t member;
    int cp_poll_ms;
    int64_t gate_t0;          /* mono ns the gate closed (under mu) */
    int64_t holds[256];       /* recent hold durations, a ring (mu) */
    pthread_t cp;
    int cp_started;
};

#define OV_BUCKETS 4096
#define OV_SHIFT 20

static void ov_account(jr_volume *v, const struct pent *p, int delta)
{
    /* Barriers and snapshots change no image byte. */
    if (p->kind != JR_K_WRITE && p->kind != JR_K_ZERO &&
        p->kind != JR_K_RESIZE)
        return;
    if (p->kind == JR_K_RESIZE || p->len == 0 ||
        ((p->off + p->len - 1) >> OV_SHIFT) - (p->off >> OV_SHIFT) >=
            OV_BUCKETS / 4) {
        v->ov_wide += (uint32_t)delta;
        return;
    }
    for (uint64_t b = p->off >> OV_SHIFT; b <= (p->off + p->len - 1) >> OV_SHIFT;
         b++)
        v->ov_count[b % OV_BUCKETS] += (uint32_t)delta;
}

/* With mu held: may a queued entry touch [off, end)? */
static int ov_maybe(const jr_volume *v, uint64_t off, uint64_t end)
{
    if (v->ov_wide) return 1;
    uint64_t b0 = off >> OV_SHIFT, b1 = (end - 1) >> OV_SHIFT;
    if (b1 - b0 >= OV_BUCKETS) return 1;
    for (uint64_t b = b0; b <= b1; b++)
        if (v->ov_count[b % OV_BUCKETS]) return 1;
    return 0;
}

/* Scheduling (lease renewal, the applier's waits) runs on the monotonic
 * clock: a wall clock stepped back would otherwise hold renewals (and
 * timed waits) back by the size of the step, and the lease expire. */
static uint64_t mono_ns(void) { return (uint64_t)tb_mono_ns(); }

static void pent_put(struct pent *p)
{
    if (--p->refs > 0) return;
    free(p->enc);
    free(p->rawbuf);
    free(p);
}

/* ---- the journal (leader) ---- */

static int journal_roll(jr_volume *v, uint64_t first)
{
    char key[64], val[96];
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    st_wop_omap_cmp(op, "fence", v->lease.fence_val,
                    strlen(v->lease.fence_val));
    st_wop_omap_cmp(op, "role", "primary", 7);
    snprintf(key, sizeof key, "jidx.%016" PRIx64, v->jno);
    int n = snprintf(val, sizeof val, "%" PRIu64 " %" PRIu64 " %" PRIu64,
                     v->jfirst, v->jlast, v->jbytes);
    st_wop_omap_set(op, key, val, (size_t)n);
    snprintf(key, sizeof key, "jidx.%016" PRIx64, v->jno + 1);
    st_wop_omap_cmp(op, key, NULL, 0);
    n = snprintf(val, sizeof val, "%" PRIu64, first);
    st_wop_omap_set(op, key, val, (size_t)n);
    int r = st_wop_operate(v->st, v->hoid, op);
    st_wop_destroy(op);
    if (r < 0) return jr__fence_reason(&v->lease, r);
    v->jno++;
    v->jfirst = first;
    v->jbytes = 0;
    return 0;
}

static int journal_append(jr_volume *v, const uint8_t *buf, size_t len,
                          uint64_t first, uint64_t last, int64_t ts)
{
    int fresh = 0, r;
    if (v->jbytes > 0 && v->jbytes + len > JOBJ_TARGET) {
        r = journal_roll(v, first);
        if (r < 0) return r;
        fresh = 1;
        pthread_mutex_lock(&v->mu);
        if (++v->rolls_untrimmed >= TRIM_EVERY_ROLLS ||
            v->cap < TRIM_BATCH_MIN_CAP) {
            v->need_trim = 1;
            v->rolls_untrimmed = 0;
        }
        pthread_mutex_unlock(&v->mu);
    }
    char oid[JR_OID_MAX], hv[64];
    jr__oid_journal(oid, sizeof oid, v->id, v->jno);
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    if (fresh) {
        st_wop_create_excl(op);
        st_wop_omap_set(op, "w", v->lease.token, strlen(v->lease.token));
    } else {
        st_wop_omap_cmp(op, "w", v->lease.token,
                        strlen(v->lease.token)); /* */
    }
    st_wop_append(op, buf, len);
    int n = snprintf(hv, sizeof hv, "%" PRIu64 " %" PRId64, last, ts);
    st_wop_omap_set(op, "head", hv, (size_t)n);
    r = st_wop_operate(v->st, oid, op);
    st_wop_destroy(op);
    if (r < 0) return jr__fence_reason(&v->lease, r);
    v->jbytes += len;
    v->jlast = last;
    return 0;
}

/* With v->mu held: append every queued entry not yet taken (up to
 * MAX_GROUP bytes) in one store operation. */
static void lead(jr_volume *v)
{
    v->committing = 1;
    struct pent *first = v->commit_next, *p = first, *last = NULL;
    size_t total = 0, n = 0;
    while (p && (total == 0 || total + p->enc_len <= MAX_GROUP)) {
        total += p->enc_len;
        last = p;
        p = p->next;
        n++;
    }
    v->commit_next = p;
    pthread_mutex_unlock(&v->mu);

    /* The entries stay queued (and allocated) until applied, which needs
     * them durable first, so they can be read here without the lock; only
     * last->next may change meanwhile (new entries), so count instead. */
    int r = 0;
    uint8_t *buf = NULL;
    const uint8_t *src = first->enc;
    if (n > 1) {
        buf = malloc(total);
        if (!buf) r = -ENOMEM;
        size_t pos = 0;
        struct pent *q = first;
        for (size_t i = 0; buf && i < n; i++) {
            memcpy(buf + pos, q->enc, q->enc_len);
            pos += q->enc_len;
            if (i + 1 < n) q = q->next;
        }
        src = buf;
    }
    int64_t ts = (int64_t)jr__get64(last->enc + 48);
    uint64_t t0 = mono_ns();
    if (r == 0) r = journal_append(v, src, total, first->seq, last->seq, ts);
    free(buf);

    pthread_mutex_lock(&v->mu);
    v->stats.commit_ns += mono_ns() - t0;
    if (r == 0) {
        v->stats.commits++;
        v->stats.journal_bytes += total;
        if (v->applied_seq == v->durable_seq) v->pending_since = mono_ns();
        v->durable_seq = last->seq;
        v->head_ts = ts;
        pthread_cond_signal(&v->apply_cv);
    } else if (!v->err) {
        v->err = r;
        tlog_error("journal.append_failed",
                   "vol=%s object=%016" PRIx64 " first=%" PRIu64 " last=%" PRIu64
                   " err=\"%s\"",
                   v->id, v->jno, first->seq, last->seq, jr_strerror(r));
        pthread_cond_broadcast(&v->space_cv);
    }
    v->committing = 0;
    pthread_cond_broadcast(&v->commit_cv);
}

/* Queue entries p[0..n) (built by the caller) and wait until durable;
 * *seq_out (may be NULL): the last one's seq. */
static int submit_seq2(jr_volume *v, struct pent **p, size_t n,
                       uint64_t *seq_out, int nowait);

static int submit_seq(jr_volume *v, struct pent **p, size_t n,
                      uint64_t *seq_out)
{
    return submit_seq2(v, p, n, seq_out, 0);
}

/* Wait until seq is durable (leading a commit when none runs). */
static int wait_durable(jr_volume *v, uint64_t mine)
{
    pthread_mutex_lock(&v->mu);
    while (v->durable_seq < mine && !v->err) {
        if (!v->committing && v->commit_next) lead(v);
        else pthread_cond_wait(&v->commit_cv, &v->mu);
    }
    int r = v->durable_seq >= mine ? 0 : v->err;
    pthread_mutex_unlock(&v->mu);
    return r;
}

/* nowait: sequence the entries and return (durable later, with the next
 * commit; wait_durable waits for it). */
static int submit_seq2(jr_volume *v, struct pent **p, size_t n,
                       uint64_t *seq_out, int nowait)
{
    pthread_mutex_lock(&v->mu);
    for (;;) {
        while (!v->err && (v->q_bytes > MAX_Q_BYTES || v->q_n > MAX_Q_N)) {
            v->space_waiters++;
            pthread_cond_signal(&v->apply_cv);
            pthread_cond_wait(&v->space_cv, &v->mu);
            v->space_waiters--;
        }
        /* A consistency point holds: wait (its own entries pass). */
        if (!v->gate || v->err || p[0]->kind == JR_K_GROUP) break;
        pthread_cond_wait(&v->gate_cv, &v->mu);
    }
    int r = v->err;
    for (size_t i = 0; r == 0 && i < n; i++) {
        if ((p[i]->kind == JR_K_WRITE || p[i]->kind == JR_K_ZERO) &&
            (p[i]->off > v->size || p[i]->len > v->size - p[i]->off))
            r = -EINVAL; /* the size changed under the caller */
    }
    if (r < 0) {
        pthread_mutex_unlock(&v->mu);
        for (size_t i = 0; i < n; i++) pent_put(p[i]);
        return r;
    }
    int64_t ts = tb_wall_ns(); /* shown to people, never compared */
    for (size_t i = 0; i < n; i++) {
        struct pent *e = p[i];
        struct jr_entry h = {
            .kind = e->kind, .flags = e->flags, .seq = v->next_seq++,
            .epoch = v->epoch, .off = e->off, .len = e->len,
            .plen = (uint32_t)(e->enc_len - JR_HDR_SIZE), .ts_ns = ts,
            .member = e->member,
            .pcrc = jr__get32(e->enc + 56)};
        e->seq = h.seq;
        jr__hdr_encode(&h, e->enc);
        if (e->kind == JR_K_RESIZE) v->size = e->off;
        if (v->q_tail) v->q_tail->next = e;
        else v->q_head = e;
        v->q_tail = e;
        if (!v->commit_next) v->commit_next = e;
        ov_account(v, e, 1);
        v->q_n++;
        v->q_bytes += e->kind == JR_K_WRITE ? e->len : 0;
        v->stats.entries++;
        v->stats.payload_bytes += e->kind == JR_K_WRITE ? e->len : 0;
    }
    uint64_t mine = p[n - 1]->seq;
    if (seq_out) *seq_out = mine;
    if (nowait) {
        pthread_mutex_unlock(&v->mu);
        return 0;
    }
    while (v->durable_seq < mine && !v->err) {
        if (!v->committing && v->commit_next) lead(v);
        else pthread_cond_wait(&v->commit_cv, &v->mu);
    }
    r = v->durable_seq >= mine ? 0 : v->err;
    pthread_mutex_unlock(&v->mu);
    return r;
}

static int submit(jr_volume *v, struct pent **p, size_t n)
{
    return submit_seq(v, p, n, NULL);
}

/* Build an entry (payload compressed and checksummed; the header is
 * finished by submit once the entry has its seq). */
static struct pent *pent_new(uint8_t kind, uint64_t off, uint64_t len,
                             const uint8_t *data)
{
    struct pent *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->kind = kind;
    e->off = off;
    e->len = len;
    e->refs = 1;
    size_t plen = 0;
    if (kind == JR_K_WRITE) {
        e->enc = malloc(JR_HDR_SIZE + len);
        if (!e->enc) goto fail;
        size_t c = jr__compress(data, len, e->enc + JR_HDR_SIZE);
        if (c) {
            e->flags = JR_F_LZ4;
            plen = c;
            e->rawbuf = malloc(len);
            if (!e->rawbuf) goto fail;
            memcpy(e->rawbuf, data, len);
            e->raw = e->rawbuf;
        } else {
            plen = len;
            memcpy(e->enc + JR_HDR_SIZE, data, len);
            e->raw = e->enc + JR_HDR_SIZE;
        }
    } else if (kind == JR_K_SNAP || kind == JR_K_SNAP_DEL ||
               kind == JR_K_GROUP) {
        /* the payload is the id (and label), never compressed;
         * the entry's length field stays 0. */
        e->enc = malloc(JR_HDR_SIZE + len);
        if (!e->enc) goto fail;
        memcpy(e->enc + JR_HDR_SIZE, data, len);
        plen = len;
        e->len = 0;
        e->raw = e->enc + JR_HDR_SIZE;
    } else {
        e->enc = malloc(JR_HDR_SIZE);
        if (!e->enc) goto fail;
    }
    e->enc_len = JR_HDR_SIZE + plen;
    jr__put32(e->enc + 56, jr_crc32c(0, e->enc + JR_HDR_SIZE, plen));
    return e;
fail:
    free(e->enc);
    free(e->rawbuf);
    free(e);
    return NULL;
}

/* ---- applier ---- */

/* Record applied: guarded by our fence, and never backwards. */
static int persist_applied(jr_volume *v, uint64_t seq, uint64_t size)
{
    char raw[64];
    int r = jr__applied_set(v->st, v->id, &v->lease.guard,
                            v->applied_raw[0] ? v->applied_raw : NULL, seq,
                            size, 0, raw, sizeof raw);
    if (r == 0) snprintf(v->applied_raw, sizeof v->applied_raw, "%s", raw);
    return jr__fence_reason(&v->lease, r);
}

/* With mu held: the volume failed for good (the lease is lost, a store
 * write failed): writers and waiters learn it at once. */
static void fail_locked(jr_volume *v, int r)
{
    if (!v->err) v->err = r;
    pthread_cond_broadcast(&v->space_cv);
    pthread_cond_broadcast(&v->gate_cv);
    pthread_cond_broadcast(&v->commit_cv);
}

static void *applier_main(void *arg)
{
    jr_volume *v = arg;
    struct jr__op *ops = NULL;
    size_t ops_cap = 0;
    int64_t last_persist = tb_mono_ms();
    pthread_mutex_lock(&v->mu);
    for (;;) {
        for (;;) {
            int64_t now = tb_mono_ms();
            int64_t renew_in = v->lease.try_ms + jr__lease_renew_ms() - now;
            if (v->stop || v->need_trim || renew_in <= 0) break;
            int64_t wait_ms = renew_in < 1000 ? renew_in : 1000;
            if (v->applied_seq < v->durable_seq && !v->lease.renew_failing) {
                int64_t age =
                    (int64_t)(mono_ns() - v->pending_since) / 1000000;
                if (age >= APPLY_LINGER_MS || v->space_waiters ||
                    v->q_bytes >= MAX_Q_BYTES / 4 || v->q_n >= MAX_Q_N / 4)
                    break;
                if (APPLY_LINGER_MS - age < wait_ms)
                    wait_ms = APPLY_LINGER_MS - age;
            }
            int64_t since = now - last_persist;
            if (v->persisted_seq != v->applied_seq) {
                if (since >= PERSIST_MS) break;
                if (PERSIST_MS - since < wait_ms) wait_ms = PERSIST_MS - since;
            }
            struct timespec dl = tb_deadline(CLOCK_MONOTONIC, wait_ms);
            pthread_cond_timedwait(&v->apply_cv, &v->mu, &dl);
        }
        /* The lease first: nothing is applied under a lost or unconfirmed
         * lease (the entries stay durable in the journal). */
        int lr = jr__wlease_check(&v->lease, &v->mu);
        if (lr < 0) {
            fail_locked(v, lr);
            break;
        }
        if (lr == 0 && v->applied_seq < v->durable_seq) {
            /* Take durable entries (they stay queued for readers). */
            size_t n = 0;
            uint64_t bytes = 0;
            struct pent *p = v->q_head;
            while (p && p->seq <= v->durable_seq && n < MAX_APPLY_N &&
                   (n == 0 || bytes < MAX_APPLY_BYTES)) {
                if (n == ops_cap) {
                    size_t nc = ops_cap ? ops_cap * 2 : 256;
                    struct jr__op *no = realloc(ops, nc * sizeof *no);
                    if (!no) break;
                    ops = no;
                    ops_cap = nc;
                }
                int sk = p->kind == JR_K_SNAP || p->kind == JR_K_SNAP_DEL;
                ops[n++] = (struct jr__op){
                    p->kind, p->seq, p->off,
                    sk ? p->enc_len - JR_HDR_SIZE : p->len, p->raw,
                    (int64_t)jr__get64(p->enc + 48)};
                bytes += p->kind == JR_K_WRITE ? p->len : 0;
                p = p->next;
            }
            uint64_t size = v->applied_size;
            pthread_mutex_unlock(&v->mu);
            /* Test hook: a writer stalled here (paused, partitioned) holds
             * durable entries it has not applied; if another writer takes
             * the volume meanwhile, the guard below refuses them. */
            if (v->apply_delay_ms) usleep((useconds_t)v->apply_delay_ms * 1000);
            uint64_t t0 = mono_ns();
            /* Copy-on-write for snapshots with the cached set of
             * preserved objects; snapshot entries split the batch. */
            int r = n ? jr__image_apply_cow(v->st, v->id, v->objsz, ops, n,
                                            &size, &v->lease.guard, &v->cow)
                      : -ENOMEM;
            if (r < 0) r = jr__fence_reason(&v->lease, r);
            pthread_mutex_lock(&v->mu);
            v->stats.apply_ns += mono_ns() - t0;
            if (r < 0) {
                tlog_error("journal.apply_failed", "vol=%s seq=%" PRIu64
                           " err=\"%s\"", v->id, v->applied_seq + 1,
                           jr_strerror(r));
                /* The entries stay in the journal and in the overlay;
                 * replay on the next open applies them. */
                fail_locked(v, r);
                break;
            }
            for (size_t i = 0; i < n; i++) {
                struct pent *e = v->q_head;
                v->q_head = e->next;
                if (!v->q_head) v->q_tail = NULL;
                v->q_n--;
                v->q_bytes -= e->kind == JR_K_WRITE ? e->len : 0;
                ov_account(v, e, -1);
                pent_put(e);
            }
            v->applied_seq = ops[n - 1].seq;
            /* What is left became durable while this batch ran. */
            if (v->applied_seq < v->durable_seq) v->pending_since = t0;
            v->stats.apply_batches++;
            v->stats.applied_entries += n;
            v->applied_size = size;
            pthread_cond_broadcast(&v->space_cv);
        }
        int64_t now = tb_mono_ms();
        int64_t ms = now - last_persist;
        int drained = v->applied_seq >= v->durable_seq;
        if (v->persisted_seq != v->applied_seq &&
            (ms >= PERSIST_MS || v->need_trim || (v->stop && drained))) {
            uint64_t seq = v->applied_seq, size = v->applied_size;
            int trim = v->need_trim;
            v->need_trim = 0;
            pthread_mutex_unlock(&v->mu);
            uint64_t t0 = mono_ns();
            int r = persist_applied(v, seq, size);
            if (r == 0 && trim) jr__trim(v->st, v->id);
            pthread_mutex_lock(&v->mu);
            v->stats.trim_ns += mono_ns() - t0;
            if (r == 0) v->persisted_seq = seq;
            last_persist = now;
            if (r == JR_ELOCKED || r == JR_EROLE) {
                tlog_error("journal.persist_applied_fenced",
                           "vol=%s seq=%" PRIu64 " err=\"%s\"", v->id, seq,
                           jr_strerror(r));
                fail_locked(v, r);
                break;
            }
            if (r < 0) {
                tlog_warn("journal.persist_applied_failed",
                          "vol=%s seq=%" PRIu64 " err=\"%s\"", v->id, seq,
                          jr_strerror(r));
                /* Closing: retrying here would spin (the wait above
                 * returns at once once stop is set) and keep jr_close
                 * from returning while the store fails.  The entries are
                 * durable in the journal: replay on open applies them. */
                if (v->stop) break;
            }
        } else if (v->need_trim && v->persisted_seq == v->applied_seq) {
            v->need_trim = 0;
            pthread_mutex_unlock(&v->mu);
            uint64_t t0 = mono_ns();
            jr__trim(v->st, v->id);
            pthread_mutex_lock(&v->mu);
            v->stats.trim_ns += mono_ns() - t0;
        }
        if (v->stop && v->applied_seq >= v->durable_seq &&
            v->persisted_seq == v->applied_seq)
            break;
        if (v->stop && (v->err || lr)) break; /* nothing more will apply */
    }
    pthread_mutex_unlock(&v->mu);
    free(ops);
    return NULL;
}

/* ---- snapshot requests of other processes (R-66) ---- */

static void *snapreq_main(void *arg)
{
    jr_volume *v = arg;
    int ms = jr__snapreq_poll_ms();
    pthread_mutex_lock(&v->mu);
    while (!v->snap_stop && !v->err) {
        struct timespec dl = tb_deadline(CLOCK_MONOTONIC, ms);
        pthread_cond_timedwait(&v->snap_cv, &v->mu, &dl);
        if (v->snap_stop || v->err) break;
        pthread_mutex_unlock(&v->mu);
        int r = jr__snapreq_serve(v, v->st, v->id, &v->lease.guard);
        if (r < 0)
            tlog_warn("snapshot.request_failed", "vol=%s err=\"%s\"", v->id,
                      jr_strerror(r));
        pthread_mutex_lock(&v->mu);
    }
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

/* ---- consistency points (jr_group.c serves them) ---- */

static void *cp_main(void *arg)
{
    jr_volume *v = arg;
    jr__cp_serve(v, v->st, v->id, v->group, v->member, v->cp_poll_ms);
    return NULL;
}

int jr__cp_stopping(jr_volume *v)
{
    pthread_mutex_lock(&v->mu);
    int r = v->snap_stop || v->err;
    pthread_mutex_unlock(&v->mu);
    return r;
}

int jr__cp_mark(jr_volume *v, uint32_t member, const uint8_t *pl, size_t plen,
                uint64_t *seq)
{
    struct pent *p = pent_new(JR_K_GROUP, 0, plen, pl);
    if (!p) return -ENOMEM;
    p->member = member;
    pthread_mutex_lock(&v->mu);
    v->gate = 1; /* before the mark takes its seq: nothing passes it */
    v->gate_t0 = tb_mono_ns();
    pthread_mutex_unlock(&v->mu);
    /* Sequenced, not yet durable: what orders the writes is the seq (no
     * write can take one before it while the gate is closed); the caller
     * publishes its mark and then waits for durability (jr__cp_durable),
     * overlapping the commit with the other members' marking. */
    int r = submit_seq2(v, &p, 1, seq, 1);
    if (r < 0) jr__cp_open(v);
    return r;
}

int jr__cp_durable(jr_volume *v, uint64_t seq)
{
    return wait_durable(v, seq);
}

void jr__cp_open(jr_volume *v)
{
    pthread_mutex_lock(&v->mu);
    if (v->gate) {
        int64_t d = tb_mono_ns() - v->gate_t0;
        v->holds[v->stats.cp_holds % 256] = d;
        v->stats.cp_holds++;
        v->stats.cp_hold_ns += (uint64_t)d;
        if ((uint64_t)d > v->stats.cp_hold_max_ns)
            v->stats.cp_hold_max_ns = (uint64_t)d;
    }
    v->gate = 0;
    pthread_cond_broadcast(&v->gate_cv);
    pthread_mutex_unlock(&v->mu);
}

int jr__cp_entry(jr_volume *v, uint32_t member, const uint8_t *pl, size_t plen)
{
    struct pent *p = pent_new(JR_K_GROUP, 0, plen, pl);
    if (!p) return -ENOMEM;
    p->member = member;
    return submit(v, &p, 1);
}

/* ---- open / close ---- */

struct loadarg {
    jr_volume *v;
    uint64_t size;
    uint64_t n; /* entries laid over */
};

static int overlay_cb(const struct jr_entry *e, const uint8_t *raw, size_t rl,
                      void *arg)
{
    struct loadarg *a = arg;
    jr_volume *v = a->v;
    int r = jr__check_range(e, &a->size);
    if (r < 0) return r;
    struct pent *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->seq = e->seq;
    p->kind = e->kind;
    p->off = e->off;
    p->len = e->len;
    p->refs = 1;
    if (e->kind == JR_K_WRITE) {
        p->rawbuf = malloc(e->len);
        if (!p->rawbuf || (r = jr__entry_data(e, p->rawbuf)) < 0) {
            free(p->rawbuf);
            free(p);
            return r < 0 ? r : -ENOMEM;
        }
        p->raw = p->rawbuf;
    }
    if (v->q_tail) v->q_tail->next = p;
    else v->q_head = p;
    v->q_tail = p;
    v->q_n++;
    ov_account(v, p, 1);
    a->n++;
    return 0;
}

static void vol_free(jr_volume *v)
{
    struct pent *p = v->q_head;
    while (p) {
        struct pent *n = p->next;
        pent_put(p);
        p = n;
    }
    pthread_mutex_destroy(&v->mu);
    jr__wlease_destroy(&v->lease);
    jr__cow_reset(&v->cow);
    pthread_cond_destroy(&v->snap_cv);
    pthread_cond_destroy(&v->gate_cv);
    pthread_cond_destroy(&v->commit_cv);
    pthread_cond_destroy(&v->apply_cv);
    pthread_cond_destroy(&v->space_cv);
    free(v);
}


/* Take the lease and bring the image up to the journal's head.  *bad is
 * filled when the journal is damaged (JR_ECORRUPT; the entries before the
 * damage were applied). */
static int open_writable(jr_volume *v, struct jr__hdr *h, int force,
                         struct jr__bad *bad)
{
    int r = jr__wlease_take(&v->lease, h, force);
    if (r < 0) return r; /* nothing taken */
    jr__hdr_free(h);
    if ((r = jr__hdr_load(v->st, v->id, h)) < 0) goto fail;
    if (h->role != JR_ROLE_PRIMARY) {
        r = JR_EROLE;
        goto fail;
    }
    if (h->nj == 0) { /* first journal object */
        char val[32];
        st_wop *op = st_wop_create();
        if (!op) {
            r = -ENOMEM;
            goto fail;
        }
        st_wop_omap_cmp(op, "fence", v->lease.fence_val,
                        strlen(v->lease.fence_val));
        int n = snprintf(val, sizeof val, "%" PRIu64, h->base + 1);
        st_wop_omap_set(op, "jidx.0000000000000000", val, (size_t)n);
        r = st_wop_operate(v->st, v->hoid, op);
        st_wop_destroy(op);
        if (r < 0) r = jr__fence_reason(&v->lease, r);
        if (r < 0) goto fail;
        jr__hdr_free(h);
        if ((r = jr__hdr_load(v->st, v->id, h)) < 0) goto fail;
        if (h->nj == 0) {
            r = JR_ECORRUPT;
            goto fail;
        }
    }
    /* Fence whoever appended before us; creates the object.  Only
     * while the fence is still ours: a writer that took the volume after
     * us keeps its token. */
    const struct jr__jobj *last = &h->j[h->nj - 1];
    char oid[JR_OID_MAX];
    jr__oid_journal(oid, sizeof oid, v->id, last->n);
    st_wop *op = st_wop_create();
    if (!op) {
        r = -ENOMEM;
        goto fail;
    }
    jr__guard_add(op, v->id, oid, &v->lease.guard);
    st_wop_omap_set(op, "w", v->lease.token, strlen(v->lease.token));
    r = st_wop_operate(v->st, oid, op);
    st_wop_destroy(op);
    if (r < 0) r = jr__fence_reason(&v->lease, r);
    if (r < 0) goto fail;
    uint64_t head;
    r = jr__head(v->st, v->id, h, &head, &v->head_ts);
    if (r < 0) goto fail;
    /* Entries after applied were acknowledged (by us, or by a writer we
     * took over from): they go to the image before any new write. */
    r = jr__replay_g(v->st, v->id, h, head, &v->lease.guard, bad, NULL);
    if (r < 0) r = jr__fence_reason(&v->lease, r);
    if (r < 0) goto fail;
    uint64_t sz = 0;
    r = st_stat(v->st, oid, &sz, NULL);
    if (r < 0) goto fail;
    v->jno = last->n;
    v->jfirst = last->first;
    v->jlast = head;
    v->jbytes = sz;
    v->size = h->size;
    v->next_seq = head + 1;
    v->durable_seq = v->applied_seq = v->persisted_seq = head;
    v->applied_size = h->size;
    snprintf(v->applied_raw, sizeof v->applied_raw, "%s",
             h->applied_raw ? h->applied_raw : "");
    v->cap = h->cap;
    return 0;
fail:
    jr__wlease_release(&v->lease);
    return r;
}

static jr_volume *vol_new(st_store *st, const char *vol_id, const char *owner)
{
    jr_volume *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->st = st;
    snprintf(v->id, sizeof v->id, "%s", vol_id);
    jr__oid_header(v->hoid, sizeof v->hoid, vol_id);
    jr__wlease_init(&v->lease, st, v->id, v->hoid, owner);
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->commit_cv, NULL);
    tb_cond_init_mono(&v->apply_cv); /* the applier's timed waits */
    tb_cond_init_mono(&v->snap_cv);  /* the request poller's */
    pthread_cond_init(&v->gate_cv, NULL);
    pthread_cond_init(&v->space_cv, NULL);
    return v;
}

int jr_open(st_store *st, const char *vol_id, int flags, const char *owner,
            jr_volume **out)
{
    if (!st || !out || !jr__valid_id(vol_id)) return -EINVAL;
    *out = NULL;
    jr_volume *v = vol_new(st, vol_id, owner);
    if (!v) return -ENOMEM;
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) {
        vol_free(v);
        return r;
    }
    v->objsz = h.objsz;
    v->epoch = h.epoch;
    v->role = h.role;
    v->created = h.created;
    snprintf(v->region, sizeof v->region, "%s", h.region);
    if (flags & JR_OPEN_WRITE) {
        if (h.role != JR_ROLE_PRIMARY) {
            r = JR_EROLE;
            goto fail;
        }
        v->writable = 1;
        const char *d = getenv("TANDEM_JR_APPLY_DELAY_MS");
        if (d) v->apply_delay_ms = atoi(d);
        r = open_writable(v, &h, flags & JR_OPEN_FORCE, &v->damage);
        if (r < 0) goto fail; /* damaged: the prefix applied, nothing opened */
        v->epoch = h.epoch;
        /* Read before the threads start: the request poller may commit
         * at once (a request left before this open). */
        uint64_t head0 = v->durable_seq, size0 = v->size;
        r = pthread_create(&v->applier, NULL, applier_main, v);
        if (r) {
            r = -r;
            jr__wlease_release(&v->lease);
            goto fail;
        }
        v->applier_started = 1;
        if (pthread_create(&v->snapreq, NULL, snapreq_main, v) == 0)
            v->snapreq_started = 1;
        else /* requests then wait for the next writer; writes go on */
            tlog_warn("snapshot.poller_failed", "vol=%s", v->id);
        if (jr_group_of(st, vol_id, v->group, sizeof v->group, &v->member) ==
            0) {
            /* no write of ours may fall inside a point that did not
             * count us; then serve the points that do. */
            jr__cp_open_wait(st, v->group, v->member);
            v->cp_poll_ms = jr__cp_poll_ms();
            if (pthread_create(&v->cp, NULL, cp_main, v) == 0)
                v->cp_started = 1;
            else /* points then time out on us: abandoned, not wrong */
                tlog_warn("group.server_failed", "vol=%s", v->id);
        }
        tlog_info("volume.opened", "vol=%s mode=rw head=%" PRIu64
                  " size=%" PRIu64 " epoch=%" PRIu64, v->id, head0, size0,
                  v->epoch);
    } else {
        /* Read-only: lay the entries not yet applied (as of now) over the
         * image.  Later writes by another process are not seen. */
        uint64_t head;
        r = jr__head(st, vol_id, &h, &head, &v->head_ts);
        if (r < 0) goto fail;
        struct loadarg a = {v, h.applied_size, 0};
        if (head > h.applied)
            r = jr__journal_iter_bad(st, vol_id, &h, h.applied + 1, head,
                                     overlay_cb, &a, &v->damage);
        if (r == JR_ECORRUPT && v->damage.seq) {
            r = 0; /* readable up to the damage, which is reported */
        } else if (r == 0 && head > h.applied && a.n != head - h.applied) {
            jr__bad_missing(st, vol_id, &h, h.applied + 1 + a.n, &v->damage);
        }
        if (r < 0) goto fail;
        if (v->damage.seq) {
            char q[96];
            tlog_error("journal.damaged",
                       "vol=%s seq=%" PRIu64 " object=%016" PRIx64
                       " offset=%" PRIu64 " why=%s mode=ro msg=\"readable up "
                       "to seq %" PRIu64 "\"", vol_id, v->damage.seq,
                       v->damage.jno, v->damage.off,
                       tlog_q(q, sizeof q, v->damage.why),
                       h.applied + a.n);
            head = h.applied + a.n;
        }
        v->size = head > h.applied ? a.size : h.size;
        v->next_seq = head + 1;
        v->durable_seq = head;
        v->applied_seq = v->persisted_seq = h.applied;
    }
    jr__hdr_free(&h);
    *out = v;
    return 0;
fail:
    jr__hdr_free(&h);
    vol_free(v);
    return r;
}

int jr_close(jr_volume *v)
{
    if (!v) return 0;
    int r = 0;
    if (v->writable) {
        /* The request poller first: it may be taking a snapshot, which
         * needs the applier below still running. */
        pthread_mutex_lock(&v->mu);
        v->snap_stop = 1;
        pthread_cond_broadcast(&v->snap_cv);
        pthread_mutex_unlock(&v->mu);
        if (v->snapreq_started) pthread_join(v->snapreq, NULL);
        if (v->cp_started) pthread_join(v->cp, NULL);
        pthread_mutex_lock(&v->mu);
        /* Let writers still in the queue finish their commit first. */
        while (v->commit_next && !v->err) {
            if (!v->committing) lead(v);
            else pthread_cond_wait(&v->commit_cv, &v->mu);
        }
        while (v->committing) pthread_cond_wait(&v->commit_cv, &v->mu);
        if (v->rolls_untrimmed) { /* trims held back by TRIM_EVERY_ROLLS */
            v->need_trim = 1;
            v->rolls_untrimmed = 0;
        }
        v->stop = 1;
        pthread_cond_signal(&v->apply_cv);
        pthread_mutex_unlock(&v->mu);
        if (v->applier_started) pthread_join(v->applier, NULL);
        r = v->err;
        /* Guarded by our fence: a no-op when the lease went to another
         * writer, a release when it only lapsed here (renewals failed). */
        jr__wlease_release(&v->lease);
        tlog_info("volume.closed", "vol=%s head=%" PRIu64 " applied=%" PRIu64,
                  v->id, v->durable_seq, v->applied_seq);
    }
    vol_free(v);
    return r;
}

/* ---- data path ---- */

int jr_write(jr_volume *v, uint64_t off, const void *buf, size_t len)
{
    if (!v || (!buf && len)) return -EINVAL;
    if (!v->writable) return -EROFS;
    if (len == 0) return 0;
    pthread_mutex_lock(&v->mu);
    uint64_t size = v->size;
    pthread_mutex_unlock(&v->mu);
    if (off > size || len > size - off) return -EINVAL;
    size_t n = (len + JR_WRITE_CHUNK - 1) / JR_WRITE_CHUNK;
    struct pent *one, **p = n == 1 ? &one : calloc(n, sizeof *p);
    if (!p) return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        size_t o = i * JR_WRITE_CHUNK;
        size_t m = len - o < JR_WRITE_CHUNK ? len - o : JR_WRITE_CHUNK;
        p[i] = pent_new(JR_K_WRITE, off + o, m, (const uint8_t *)buf + o);
        if (!p[i]) {
            for (size_t k = 0; k < i; k++) pent_put(p[k]);
            r = -ENOMEM;
            goto out;
        }
    }
    r = submit(v, p, n);
out:
    if (p != &one) free(p);
    return r;
}

int jr_discard(jr_volume *v, uint64_t off, uint64_t len)
{
    if (!v) return -EINVAL;
    if (!v->writable) return -EROFS;
    if (len == 0) return 0;
    struct pent *p = pent_new(JR_K_ZERO, off, len, NULL);
    if (!p) return -ENOMEM;
    return submit(v, &p, 1);
}

int jr_flush(jr_volume *v)
{
    if (!v) return -EINVAL;
    if (!v->writable) return 0;
    struct pent *p = pent_new(JR_K_FLUSH, 0, 0, NULL);
    if (!p) return -ENOMEM;
    return submit(v, &p, 1);
}

int jr_resize(jr_volume *v, uint64_t new_size)
{
    if (!v || new_size == 0 || new_size > JR_MAX_OFFSET) return -EINVAL;
    if (!v->writable) return -EROFS;
    struct pent *p = pent_new(JR_K_RESIZE, new_size, 0, NULL);
    if (!p) return -ENOMEM;
    int r = submit(v, &p, 1);
    if (r < 0) return r;
    /* Durable in the journal already; the header follows so that
     * jr_volume_stat shows it (replay would set it too). */
    char b[32];
    int n = snprintf(b, sizeof b, "%" PRIu64, new_size);
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    /* Guarded by the fence like every other header update of the writer:
     * a writer that lost its lease meanwhile must not overwrite the size
     * a newer holder recorded (which replay would not correct once that
     * holder's applied position is past its own resize). */
    st_wop_omap_cmp(op, "fence", v->lease.fence_val,
                    strlen(v->lease.fence_val));
    st_wop_omap_set(op, "size", b, (size_t)n);
    r = st_wop_operate(v->st, v->hoid, op);
    st_wop_destroy(op);
    if (r < 0) r = jr__fence_reason(&v->lease, r);
    if (r == 0)
        tlog_info("volume.resized", "vol=%s size=%" PRIu64, v->id, new_size);
    return r;
}

/* ---- snapshots (FORMAT.md §5) ---- */

/* Journal a snapshot entry and wait until the applier applied it: its
 * header key is then written and copy-on-write began. */
static int snap_entry(jr_volume *v, uint8_t kind, const uint8_t *pl,
                      size_t plen)
{
    struct pent *p = pent_new(kind, 0, plen, pl);
    if (!p) return -ENOMEM;
    uint64_t seq = 0;
    int r = submit_seq(v, &p, 1, &seq);
    if (r < 0) return r;
    pthread_mutex_lock(&v->mu);
    while (v->applied_seq < seq && !v->err) {
        v->space_waiters++; /* no lingering: someone waits */
        pthread_cond_signal(&v->apply_cv);
        pthread_cond_wait(&v->space_cv, &v->mu);
        v->space_waiters--;
    }
    r = v->applied_seq >= seq ? 0 : v->err;
    pthread_mutex_unlock(&v->mu);
    return r;
}

int jr_snapshot(jr_volume *v, const char *snap_id, const char *label,
                struct jr_snap *out)
{
    uint8_t pl[JR_SNAP_PAYLOAD_MAX];
    if (!v) return -EINVAL;
    int n = jr__snap_payload(snap_id, label, pl);
    if (n < 0) return n;
    if (!v->writable) return -EROFS;
    int r = jr_volume_error(v);
    if (r < 0) return r;
    if (jr_snap_get(v->st, v->id, snap_id, out) == 0) return 0;
    r = snap_entry(v, JR_K_SNAP, pl, (size_t)n);
    if (r < 0) return r;
    /* Two callers with one id: the first entry stands (its record). */
    return jr_snap_get(v->st, v->id, snap_id, out);
}

int jr__vol_snap_delete(jr_volume *v, const char *snap_id)
{
    if (!v || !snap_id || !jr__valid_snap_id(snap_id, strlen(snap_id)))
        return -EINVAL;
    if (!v->writable) return -EROFS;
    int r = jr_snap_get(v->st, v->id, snap_id, NULL);
    if (r == -ENOENT) return 0;
    if (r < 0) return r;
    return snap_entry(v, JR_K_SNAP_DEL, (const uint8_t *)snap_id,
                      strlen(snap_id));
}

static int overlaps(const struct pent *p, uint64_t off, uint64_t end)
{
    if (p->kind == JR_K_WRITE || p->kind == JR_K_ZERO)
        return p->off < end && p->off + p->len > off;
    if (p->kind == JR_K_RESIZE) return p->off < end;
    return 0;
}

int jr_read(jr_volume *v, uint64_t off, void *buf, size_t len)
{
    if (!v || (!buf && len)) return -EINVAL;
    if (len == 0) return 0;
    uint64_t end = off + len;
    struct pent *small[16], **hits = small;
    size_t nh = 0, cap = 16;
    pthread_mutex_lock(&v->mu);
    if (v->err == JR_ELOCKED) {
        /* The volume is another writer's now: the image moves on under
         * our overlay (and a fenced rados client reads nothing anyway). */
        pthread_mutex_unlock(&v->mu);
        return JR_ELOCKED;
    }
    if (off > v->size || len > v->size - off) {
        pthread_mutex_unlock(&v->mu);
        return -EINVAL;
    }
    struct pent *scan = ov_maybe(v, off, end) ? v->q_head : NULL;
    for (struct pent *p = scan; p; p = p->next) {
        /* Past durable on a failed volume: writes that failed (their
         * callers got the error), never to be seen.  The queue is in seq
         * order, so nothing later is durable either. */
        if (v->err && p->seq > v->durable_seq) break;
        if (!overlaps(p, off, end)) continue;
        if (nh == cap) {
            struct pent **nhp = malloc(cap * 2 * sizeof *nhp);
            if (!nhp) {
                for (size_t i = 0; i < nh; i++) pent_put(hits[i]);
                if (hits != small) free(hits);
                pthread_mutex_unlock(&v->mu);
                return -ENOMEM;
            }
            memcpy(nhp, hits, nh * sizeof *nhp);
            if (hits != small) free(hits);
            hits = nhp;
            cap *= 2;
        }
        p->refs++;
        hits[nh++] = p;
    }
    pthread_mutex_unlock(&v->mu);
    /* Entries taken above may be applied while the image is read: laying
     * them over again, in order, gives the same bytes. */
    int r = jr__image_read(v->st, v->id, v->objsz, off, buf, len);
    uint8_t *b = buf;
    for (size_t i = 0; r == 0 && i < nh; i++) {
        struct pent *p = hits[i];
        if (p->kind == JR_K_RESIZE) {
            uint64_t z = p->off > off ? p->off : off;
            memset(b + (z - off), 0, end - z);
            continue;
        }
        uint64_t s = p->off > off ? p->off : off;
        uint64_t e = p->off + p->len < end ? p->off + p->len : end;
        if (p->kind == JR_K_WRITE)
            memcpy(b + (s - off), p->raw + (s - p->off), e - s);
        else
            memset(b + (s - off), 0, e - s);
    }
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < nh; i++) pent_put(hits[i]);
    pthread_mutex_unlock(&v->mu);
    if (hits != small) free(hits);
    return r;
}

int jr_get_info(jr_volume *v, struct jr_info *out)
{
    if (!v || !out) return -EINVAL;
    memset(out, 0, sizeof *out);
    snprintf(out->vol_id, sizeof out->vol_id, "%s", v->id);
    snprintf(out->region, sizeof out->region, "%s", v->region);
    out->object_size = v->objsz;
    out->role = v->role;
    out->created_s = v->created;
    pthread_mutex_lock(&v->mu);
    out->size = v->size;
    out->epoch = v->epoch;
    out->head = v->durable_seq;
    out->applied = v->applied_seq;
    out->head_ts_ns = v->head_ts;
    int err = v->err;
    pthread_mutex_unlock(&v->mu);
    struct jr_info si;
    if (jr_volume_stat(v->st, v->id, &si) == 0) {
        out->tail = si.tail;
        out->journal_bytes = si.journal_bytes;
        out->dirty_tracking = si.dirty_tracking;
        out->role = si.role;
        out->damaged_seq = si.damaged_seq;
        out->damaged_object = si.damaged_object;
        out->damaged_offset = si.damaged_offset;
    }
    if (!out->damaged_seq && v->damage.seq) { /* seen by this open */
        out->damaged_seq = v->damage.seq;
        out->damaged_object = v->damage.jno;
        out->damaged_offset = v->damage.off;
    }
    (void)err; /* jr_volume_error() reports it */
    return 0;
}

int jr_volume_error(jr_volume *v)
{
    if (!v) return -EINVAL;
    pthread_mutex_lock(&v->mu);
    int r = v->err;
    pthread_mutex_unlock(&v->mu);
    return r;
}

size_t jr_cp_holds(jr_volume *v, int64_t *out, size_t n)
{
    if (!v || !out) return 0;
    pthread_mutex_lock(&v->mu);
    uint64_t have = v->stats.cp_holds < 256 ? v->stats.cp_holds : 256;
    if (n > have) n = (size_t)have;
    for (size_t i = 0; i < n; i++)
        out[i] = v->holds[(v->stats.cp_holds - n + i) % 256];
    pthread_mutex_unlock(&v->mu);
    return n;
}

int jr_get_stats(jr_volume *v, struct jr_stats *out)
{
    if (!v || !out) return -EINVAL;
    pthread_mutex_lock(&v->mu);
    *out = v->stats;
    pthread_mutex_unlock(&v->mu);
    return 0;
}
