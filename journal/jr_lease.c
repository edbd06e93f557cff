/*
 * jr_lease.c: the writer lease and fencing (FORMAT.md R-36): one writer
 * at a time per volume, and a writer that lost the lease can change
 * nothing any more.
 *
 * The lease is the header's "lease" key, "<token> 9999999999 <gen> <beat>
 * <fence id> <owner>"; the header's "fence" key, "<gen> <token>", guards
 * every store update of its holder (journal appends through the journal
 * object's token, header updates by st_wop_omap_cmp, image writes by
 * st_wop_fence_guard).  A holder renews the lease (beat + 1) every
 * jr__lease_renew_ms(); an observer calls it expired only when it saw
 * the value unchanged for a whole TTL on its own monotonic clock, and a
 * new holder fences the old one at the store (rados: blocklist) and moves
 * the fence, in one atomic header update, before it writes anything.
 *
 * Divisions: the lease value as any process sees it (TTL, parse, expiry,
 * fencing its holder); a holder's side (struct jr__wlease: take, renew,
 * the applier's check, release, why a guarded update failed); and
 * breaking a lease in the way of a delete.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "jr_int.h"
#include "tbase.h"

/* ---- the lease value, from any process ---- */

#define LEASE_TTL_MS 30000 /* no renewal seen this long: expired */

int64_t jr__lease_ttl_ms(void)
{
    const char *e = getenv("TANDEM_JR_LEASE_TTL_MS"); /* test hook */
    long long v = e ? atoll(e) : 0;
    return v >= 100 ? (int64_t)v : LEASE_TTL_MS;
}

int64_t jr__lease_renew_ms(void)
{
    /* Fifteen renewals per TTL: an observer tells a live holder from a
     * dead one within ~2 s, and a few lost renewals expire nothing. */
    return jr__lease_ttl_ms() / 15;
}

int jr__lease_parse(const char *val, struct jr__lease *l)
{
    memset(l, 0, sizeof *l);
    const char *f[6];
    size_t fl[6];
    int nf = 0;
    for (const char *p = val; *p && nf < 6;) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *e = nf == 5 ? p + strlen(p) : strchr(p, ' ');
        if (!e) e = p + strlen(p);
        f[nf] = p;
        fl[nf++] = (size_t)(e - p);
        p = e;
    }
    if (nf < 3 || fl[0] == 0 || fl[0] >= sizeof l->token) return JR_ECORRUPT;
    memcpy(l->token, f[0], fl[0]);
    if (nf == 3) {
        /* Before R-36: "<token> <expires unix s> <owner>" (the owner has
         * no spaces), and no fence id. */
        l->legacy = 1;
        snprintf(l->fid, sizeof l->fid, "-");
        snprintf(l->owner, sizeof l->owner, "%.*s", (int)fl[nf - 1],
                 f[nf - 1]);
        return 0;
    }
    if (nf != 6 || jr__parse_u64(f[2], &l->gen) < 0 ||
        jr__parse_u64(f[3], &l->beat) < 0 || fl[4] >= sizeof l->fid)
        return JR_ECORRUPT;
    memcpy(l->fid, f[4], fl[4]);
    snprintf(l->owner, sizeof l->owner, "%.*s", (int)fl[5], f[5]);
    return 0;
}

int jr__lease_expired(st_store *st, const char *vol, const char *seen)
{
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, vol);
    int64_t ttl = jr__lease_ttl_ms(), poll = jr__lease_renew_ms() / 4;
    if (poll > 250) poll = 250;
    if (poll < 10) poll = 10;
    /* The holder renews every TTL/15: a change shows within that.  Only a
     * value unchanged for a whole TTL, by this process's own monotonic
     * clock, is expired; no clock of another machine is consulted. */
    int64_t t0 = tb_mono_ms();
    for (;;) {
        char *v = NULL;
        size_t len = 0;
        int r = st_omap_get(st, hoid, "lease", &v, &len);
        if (r == -ENOENT) return -EAGAIN; /* released (or volume gone) */
        if (r < 0) return r;
        int same = strcmp(v, seen) == 0;
        free(v);
        if (!same) return JR_ELOCKED;
        if (tb_mono_ms() - t0 >= ttl) break;
        usleep((useconds_t)poll * 1000);
    }
    char q[160];
    tlog_warn("volume.lease_expired", "vol=%s holder=%s unchanged_ms=%" PRId64,
              vol, tlog_q(q, sizeof q, seen), ttl);
    return 0;
}

int jr__lease_fence_old(st_store *st, const char *vol, const char *old)
{
    struct jr__lease l;
    char q[160];
    if (jr__lease_parse(old, &l) < 0 || l.legacy) {
        /* No identity to fence (a lease from before R-36, or unreadable):
         * its holder's journal appends and header updates are still
         * refused (the journal token and the fence key changed); on
         * rados its image writes are not. */
        tlog_warn("volume.takeover_unfenced", "vol=%s old=%s", vol,
                  tlog_q(q, sizeof q, old));
        return 0;
    }
    if (strcmp(l.fid, "-") == 0) return 0; /* guards fence it (sqlite) */
    char own[256];
    if (st_fence_id(st, own, sizeof own) == 0 && strcmp(own, l.fid) == 0)
        return JR_ELOCKED; /* held through this very handle: unfenceable */
    int r = st_fence(st, l.fid, 0);
    if (r == 0)
        tlog_warn("volume.writer_fenced", "vol=%s gen=%" PRIu64
                  " owner=%s client=%s", vol, l.gen,
                  tlog_q(q, sizeof q, l.owner), l.fid);
    else
        tlog_error("volume.fence_failed", "vol=%s client=%s err=\"%s\"", vol,
                   l.fid, st_strerror(r));
    return r;
}

/* ---- a holder's side ---- */

void jr__wlease_init(struct jr__wlease *w, st_store *st, const char *vol,
                     const char *hoid, const char *owner)
{
    memset(w, 0, sizeof *w);
    w->st = st;
    w->vol = vol;
    w->hoid = hoid;
    snprintf(w->owner, sizeof w->owner, "%s", owner && *owner ? owner : "-");
    for (char *c = w->owner; *c; c++)
        if (*c == ' ') *c = '_';
    pthread_mutex_init(&w->mu, NULL);
}

void jr__wlease_destroy(struct jr__wlease *w)
{
    pthread_mutex_destroy(&w->mu);
}

/* A holder may apply while its last good renewal started less than this
 * long ago: observers need a whole TTL without a change to call the lease
 * expired, so the holder has stopped well before (the fence is what makes
 * it safe; this keeps a slow holder from even trying). */
static int64_t lease_self_ms(void) { return jr__lease_ttl_ms() / 2; }

/* The second field stands where readers from before R-36 expect the
 * expiry (unix seconds): a value no clock reaches, so they always see the
 * lease live and never take it without forcing (a rolling upgrade). */
static void lease_format(struct jr__wlease *w, uint64_t beat, char *buf,
                         size_t n)
{
    snprintf(buf, n, "%s %s %" PRIu64 " %" PRIu64 " %s %s", w->token,
             JR_LEASE_COMPAT, w->gen, beat, w->fid, w->owner);
}

/* Why did a guarded operation of this writer fail?  Demoted (role),
 * or the lease is gone (the fence key moved, or the store fenced our
 * client: -ESHUTDOWN).  Other errors are passed on. */
int jr__fence_reason(const struct jr__wlease *w, int r)
{
    if (r != -ECANCELED && r != -EEXIST && r != -ESHUTDOWN) return r;
    if (r == -ESHUTDOWN) return JR_ELOCKED;
    char *role = NULL;
    size_t len;
    int rr = st_omap_get(w->st, w->hoid, "role", &role, &len);
    int res = (rr == 0 && strcmp(role, "primary") != 0) ? JR_EROLE : JR_ELOCKED;
    free(role);
    return res;
}

/* Renew: beat + 1, guarded by our fence and the value we wrote last. */
static int lease_renew(struct jr__wlease *w)
{
    char nv[512];
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    int64_t t0 = tb_mono_ms();
    pthread_mutex_lock(&w->mu);
    lease_format(w, w->beat + 1, nv, sizeof nv);
    st_wop_omap_cmp(op, "fence", w->fence_val, strlen(w->fence_val));
    st_wop_omap_cmp(op, "lease", w->val, strlen(w->val));
    st_wop_omap_set(op, "lease", nv, strlen(nv));
    int r = st_wop_operate(w->st, w->hoid, op);
    if (r == 0) {
        snprintf(w->val, sizeof w->val, "%s", nv);
        w->beat++;
    }
    pthread_mutex_unlock(&w->mu);
    st_wop_destroy(op);
    if (r == 0) {
        w->ok_ms = t0;
        return 0;
    }
    if (r == -ECANCELED || r == -ESHUTDOWN) {
        tlog_error("volume.lease_lost", "vol=%s gen=%" PRIu64 " err=\"%s\"",
                   w->vol, w->gen, st_strerror(r));
        return JR_ELOCKED;
    }
    return r;
}

/* With *held locked: renew the lease when due.  Returns 0 when the lease is
 * confirmed recent enough to apply under it, 1 when applying must wait
 * (a renewal is failing: retried every renew interval), or JR_ELOCKED
 * when it is lost (taken over, or not renewed for too long). */
int jr__wlease_check(struct jr__wlease *w, pthread_mutex_t *held)
{
    int64_t now = tb_mono_ms(), every = jr__lease_renew_ms();
    if (now - w->try_ms >= every) {
        w->try_ms = now;
        pthread_mutex_unlock(held);
        int r = lease_renew(w);
        pthread_mutex_lock(held);
        if (r == JR_ELOCKED) return r;
        if (r < 0 && !w->renew_failing)
            tlog_warn("volume.lease_renew_failed",
                      "vol=%s err=\"%s\" msg=\"applying paused\"", w->vol,
                      jr_strerror(r));
        else if (r == 0 && w->renew_failing)
            tlog_info("volume.lease_renewed", "vol=%s msg=\"applying resumed\"",
                      w->vol);
        w->renew_failing = r < 0;
    }
    if (tb_mono_ms() - w->ok_ms >= lease_self_ms()) {
        tlog_error("volume.lease_lost",
                   "vol=%s gen=%" PRIu64 " msg=\"not renewed for %" PRId64
                   " ms: another writer may take it\"", w->vol, w->gen,
                   tb_mono_ms() - w->ok_ms);
        return JR_ELOCKED;
    }
    return w->renew_failing ? 1 : 0;
}

static void new_token(struct jr__wlease *w)
{
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        uint64_t x = (uint64_t)tb_wall_ns() ^ ((uint64_t)getpid() << 32);
        memcpy(rnd, &x, 8);
        x = (uint64_t)tb_mono_ns() ^ (uint64_t)(uintptr_t)w;
        memcpy(rnd + 8, &x, 8);
    }
    for (int i = 0; i < 16; i++) sprintf(w->token + 2 * i, "%02x", rnd[i]);
}

/* Take the writer lease, reloading *h as needed.  A lease held by
 * someone else is taken over only with force, or once this process saw
 * it unchanged for a whole TTL on its own monotonic clock; the new holder
 * bumps the generation in the same atomic header update, then fences the
 * old holder at the store before anything else is written. */
int jr__wlease_take(struct jr__wlease *w, struct jr__hdr *h, int force)
{
    char q[160];
    int r = st_fence_id(w->st, w->fid, sizeof w->fid);
    if (r < 0) return r;
    for (int tries = 0; tries < 10; tries++) {
        const char *cur = h->lease;
        if (cur) {
            struct jr__lease l;
            if (jr__lease_parse(cur, &l) == 0 && strcmp(l.fid, "-") &&
                strcmp(l.fid, w->fid) == 0) {
                /* Held through this very store handle: its client cannot
                 * be fenced without fencing ourselves (rados). */
                tlog_warn("volume.locked", "vol=%s holder=%s msg=\"held "
                          "through this store handle\"", w->vol,
                          tlog_q(q, sizeof q, cur));
                return JR_ELOCKED;
            }
            if (!force) {
                r = jr__lease_expired(w->st, w->vol, cur);
                if (r == JR_ELOCKED)
                    tlog_warn("volume.locked", "vol=%s holder=%s", w->vol,
                              tlog_q(q, sizeof q, cur));
                if (r == -EAGAIN) { /* released meanwhile: look again */
                    jr__hdr_free(h);
                    if ((r = jr__hdr_load(w->st, w->vol, h)) < 0) return r;
                    continue;
                }
                if (r < 0) return r;
            }
        }
        if (h->fence_gen == UINT64_MAX) return JR_ECORRUPT;
        /* Fence the holder first, while its lease is still in place: if
         * that fails nothing changed, and the next attempt fences again
         * (a lease removed first would leave no one to fence).  Should
         * the update below then lose a race, the holder we fenced was
         * expired (or forced out) anyway. */
        if (cur && (r = jr__lease_fence_old(w->st, w->vol, cur)) < 0) return r;
        new_token(w);
        w->gen = h->fence ? h->fence_gen + 1 : 1;
        w->beat = 0;
        snprintf(w->fence_val, sizeof w->fence_val, "%" PRIu64 " %s", w->gen,
                 w->token);
        lease_format(w, 0, w->val, sizeof w->val);
        st_wop *op = st_wop_create();
        if (!op) return -ENOMEM;
        st_wop_omap_cmp(op, "lease", cur, cur ? strlen(cur) : 0);
        st_wop_omap_cmp(op, "fence", h->fence, h->fence ? strlen(h->fence) : 0);
        st_wop_omap_set(op, "fence", w->fence_val, strlen(w->fence_val));
        st_wop_omap_set(op, "lease", w->val, strlen(w->val));
        int64_t t0 = tb_mono_ms();
        r = st_wop_operate(w->st, w->hoid, op);
        st_wop_destroy(op);
        if (r == -ECANCELED) return JR_ELOCKED; /* someone else just took it */
        if (r < 0) return r;
        w->guard = (struct jr__guard){"fence", w->fence_val};
        w->ok_ms = w->try_ms = t0;
        if (cur)
            tlog_warn("volume.lease_taken_over", "vol=%s gen=%" PRIu64
                      " force=%d old=%s", w->vol, w->gen, !!force,
                      tlog_q(q, sizeof q, cur));
        return 0;
    }
    return -EAGAIN;
}

/* Give the lease up: only ours (the fence is still ours). */
void jr__wlease_release(struct jr__wlease *w)
{
    st_wop *op = st_wop_create();
    if (!op) return;
    st_wop_omap_cmp(op, "fence", w->fence_val, strlen(w->fence_val));
    st_wop_omap_rm(op, "lease");
    st_wop_operate(w->st, w->hoid, op); /* lost already: nothing to do */
    st_wop_destroy(op);
}

/* ---- a lease in the way of a delete ---- */

/* A writer lease in the way of a delete: JR_ELOCKED while its
 * holder is seen renewing it; once it stayed unchanged for a whole TTL
 * (this process's monotonic clock), it is taken away (the fence moves, so
 * a stalled holder's guarded updates fail) and its holder fenced at the
 * store, so nothing it still had in flight lands among the objects of a
 * volume created later under the same id.  0: no lease (any more). */
int jr__lease_break(st_store *st, const char *vol_id)
{
    for (int tries = 0; tries < 5; tries++) {
        struct jr__hdr h;
        int r = jr__hdr_load(st, vol_id, &h);
        if (r == JR_ECORRUPT || r == JR_EVERSION) return 0; /* as before */
        if (r < 0) return r;
        if (!h.lease) {
            jr__hdr_free(&h);
            return 0;
        }
        r = jr__lease_expired(st, vol_id, h.lease);
        if (r == -EAGAIN) {
            jr__hdr_free(&h);
            continue;
        }
        /* Fenced first, so that a failure leaves the lease in place for
         * the next attempt to fence again (as jr_open). */
        if (r == 0) r = jr__lease_fence_old(st, vol_id, h.lease);
        if (r == 0) {
            char fv[64];
            char oid[JR_OID_MAX];
            jr__oid_header(oid, sizeof oid, vol_id);
            snprintf(fv, sizeof fv, "%" PRIu64 " deleting",
                     h.fence ? h.fence_gen + 1 : 1);
            st_wop *op = st_wop_create();
            if (!op) r = -ENOMEM;
            if (op) {
                st_wop_omap_cmp(op, "lease", h.lease, strlen(h.lease));
                st_wop_omap_cmp(op, "fence", h.fence,
                                h.fence ? strlen(h.fence) : 0);
                st_wop_omap_set(op, "fence", fv, strlen(fv));
                st_wop_omap_rm(op, "lease");
                r = st_wop_operate(st, oid, op);
                st_wop_destroy(op);
            }
            if (r == -ECANCELED) r = JR_ELOCKED; /* someone took it */
        }
        jr__hdr_free(&h);
        return r;
    }
    return JR_ELOCKED;
}
