/*
 * jr_group.c: consistency groups (FORMAT.md §6): membership, the
 * coordinator of a consistency point (jr_group_cut), the writer's side of
 * it (jr__cp_serve, a thread of each open writable member: jr_io.c), and
 * the peer's side (finding the newest cut every replica can land on,
 * landing on it).
 *
 * Everything crosses processes through the group object "cg/<group>"
 * the writers of one region share the store, and a store read is
 * the only channel a volfuse exporter on another node has.  The
 * coordinator and the held writers poll it every millisecond, and only
 * while a point is in progress; between points a writer polls every
 * TANDEM_JR_CP_POLL_MS (5 ms), which bounds how late a member marks, and
 * so the pause of the members that marked first.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jr_int.h"
#include "tbase.h"

#define GROUP_DIR_OID "cgs"
#define CP_HOLD_MAX_MS 1000  /* a writer's own bound on a hold */
#define CP_FAST_POLL_US 1000 /* held writers and the coordinator */
#define CP_SLOW_POLL_MS 25   /* a writer while no point is due */

static int valid_group(const char *g)
{
    size_t n = g ? strlen(g) : 0;
    if (n < 1 || n > JR_MAX_GROUP_ID) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = g[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static void group_oid(char *b, size_t n, const char *g)
{
    snprintf(b, n, "cg/%s", g);
}

int jr__group_payload_ok(const uint8_t *pl, size_t plen)
{
    /* "m <group> <cut> <mask> <idle>" or "c <group> <cut>",
     * printable ASCII. */
    if (plen < 5 || (pl[0] != 'm' && pl[0] != 'c') || pl[1] != ' ') return 0;
    for (size_t i = 0; i < plen; i++)
        if (pl[i] < 0x20 || pl[i] > 0x7e) return 0;
    return 1;
}

int jr__cp_poll_ms(void)
{
    const char *e = getenv("TANDEM_JR_CP_POLL_MS");
    int v = e ? atoi(e) : 0;
    return v > 0 ? v : 5;
}

/* ---- membership ---- */

int jr_group_of(st_store *st, const char *vol_id, char *group, size_t n,
                uint32_t *index)
{
    char *val = NULL;
    int r = jr_meta_get(st, vol_id, "group", &val);
    if (r < 0) return r;
    char g[JR_MAX_GROUP_ID + 2];
    unsigned idx;
    if (sscanf(val, "%65s %u", g, &idx) != 2 || !valid_group(g) ||
        idx >= JR_GROUP_MAX_MEMBERS) {
        free(val);
        return -ENOENT; /* not a membership this code wrote */
    }
    free(val);
    if (group) snprintf(group, n, "%s", g);
    if (index) *index = idx;
    return 0;
}

struct used {
    uint64_t mask;
    const char *vol;
    int found;
    uint32_t idx;
};

static int used_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct used *u = arg;
    (void)len;
    unsigned i = (unsigned)atoi(val);
    if (i < JR_GROUP_MAX_MEMBERS) u->mask |= 1ull << i;
    if (u->vol && strcmp(key + 2, u->vol) == 0) {
        u->found = 1;
        u->idx = i;
    }
    return 0;
}

int jr_group_join(st_store *st, const char *group, const char *vol_id,
                  uint32_t *index)
{
    if (!st || !valid_group(group) || !jr__valid_id(vol_id)) return -EINVAL;
    char cur[JR_MAX_GROUP_ID + 1];
    uint32_t ci;
    struct jr_info info;
    int r = jr_volume_stat(st, vol_id, &info);
    if (r < 0) return r;
    char oid[JR_MAX_GROUP_ID + 8], key[JR_MAX_ID + 4], v[32];
    group_oid(oid, sizeof oid, group);
    if (jr_group_of(st, vol_id, cur, sizeof cur, &ci) == 0) {
        if (strcmp(cur, group) != 0) return -EBUSY;
        /* The header says so (joined here, or a replica that carries its
         * primary's membership and is now joining in this region, as a
         * failover does): make sure the group object agrees, under the
         * same index. */
        char ik[32];
        snprintf(ik, sizeof ik, "i.%u", ci);
        r = st_omap_cas(st, oid, ik, NULL, 0, vol_id, strlen(vol_id));
        if (r == -ECANCELED) {
            char *holder = NULL;
            r = st_omap_get(st, oid, ik, &holder, NULL);
            int mine = r == 0 && !strcmp(holder, vol_id);
            free(holder);
            if (r < 0) return r;
            if (!mine) return -EBUSY; /* another volume took the index */
        } else if (r < 0) {
            return r;
        }
        snprintf(key, sizeof key, "m.%s", vol_id);
        snprintf(v, sizeof v, "%u", ci);
        if ((r = st_omap_set(st, oid, key, v, strlen(v))) < 0) return r;
        if ((r = st_omap_set(st, GROUP_DIR_OID, group, "", 0)) < 0) return r;
        if (index) *index = ci;
        return 0;
    }
    for (int tries = 0; tries < 20; tries++) {
        struct used u = {0, vol_id, 0, 0};
        r = st_omap_iter(st, oid, "m.", NULL, 0, used_cb, &u);
        if (r < 0 && r != -ENOENT) return r;
        uint32_t i = 0;
        if (u.found) {
            i = u.idx;
        } else {
            while (i < JR_GROUP_MAX_MEMBERS && (u.mask >> i & 1)) i++;
            if (i == JR_GROUP_MAX_MEMBERS) return -ENOSPC;
            /* The index is claimed by its own key: two joins racing for
             * one index, the second fails its compare and tries again. */
            char ik[32];
            snprintf(ik, sizeof ik, "i.%u", i);
            snprintf(v, sizeof v, "%u", i);
            r = st_omap_cas(st, oid, ik, NULL, 0, vol_id, strlen(vol_id));
            if (r == -ECANCELED) continue;
            if (r < 0) return r;
            snprintf(key, sizeof key, "m.%s", vol_id);
            if ((r = st_omap_set(st, oid, key, v, strlen(v))) < 0) return r;
        }
        if ((r = st_omap_set(st, GROUP_DIR_OID, group, "", 0)) < 0) return r;
        char mv[JR_MAX_GROUP_ID + 16];
        snprintf(mv, sizeof mv, "%s %u", group, i);
        if ((r = jr_meta_set(st, vol_id, "group", mv)) < 0) return r;
        if (index) *index = i;
        tlog_info("group.joined", "group=%s vol=%s index=%u", group, vol_id, i);
        return 0;
    }
    return -EAGAIN;
}

int jr_group_leave(st_store *st, const char *group, const char *vol_id)
{
    if (!st || !valid_group(group) || !jr__valid_id(vol_id)) return -EINVAL;
    char cur[JR_MAX_GROUP_ID + 1];
    uint32_t ci;
    int r = jr_group_of(st, vol_id, cur, sizeof cur, &ci);
    if (r == 0 && strcmp(cur, group) == 0) {
        r = jr_meta_rm(st, vol_id, "group");
        if (r < 0 && r != -ENOENT) return r;
    }
    char oid[JR_MAX_GROUP_ID + 8], key[JR_MAX_ID + 4];
    group_oid(oid, sizeof oid, group);
    struct used u = {0, vol_id, 0, 0};
    r = st_omap_iter(st, oid, "m.", NULL, 0, used_cb, &u);
    if (r == -ENOENT) return 0;
    if (r < 0) return r;
    if (!u.found) return 0;
    snprintf(key, sizeof key, "m.%s", vol_id);
    if ((r = st_omap_rm(st, oid, key)) < 0) return r;
    snprintf(key, sizeof key, "i.%u", u.idx);
    if ((r = st_omap_rm(st, oid, key)) < 0) return r;
    tlog_info("group.left", "group=%s vol=%s", group, vol_id);
    return 0;
}

struct mem_it {
    int (*cb)(const char *vol_id, uint32_t index, void *arg);
    void *arg;
};

static int mem_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct mem_it *m = arg;
    (void)len;
    return m->cb(val, (uint32_t)atoi(key + 2), m->arg);
}

int jr_group_members(st_store *st, const char *group,
                     int (*cb)(const char *vol_id, uint32_t index, void *arg),
                     void *arg)
{
    if (!st || !valid_group(group) || !cb) return -EINVAL;
    char oid[JR_MAX_GROUP_ID + 8];
    group_oid(oid, sizeof oid, group);
    struct mem_it m = {cb, arg};
    /* "i.<index>" keys: index order needs numeric sorting, which the
     * callers (status, the coordinator) do not need; key order it is. */
    int r = st_omap_iter(st, oid, "i.", NULL, 0, mem_cb, &m);
    return r == -ENOENT ? 0 : r;
}

struct list_it {
    int (*cb)(const char *group, void *arg);
    void *arg;
};

static int list_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct list_it *l = arg;
    (void)val;
    (void)len;
    return l->cb(key, l->arg);
}

int jr_group_list(st_store *st, int (*cb)(const char *group, void *arg),
                  void *arg)
{
    if (!st || !cb) return -EINVAL;
    struct list_it l = {cb, arg};
    int r = st_omap_iter(st, GROUP_DIR_OID, "", NULL, 0, list_cb, &l);
    return r == -ENOENT ? 0 : r;
}

int jr_group_create(st_store *st, const char *group)
{
    if (!st || !valid_group(group)) return -EINVAL;
    return st_omap_set(st, GROUP_DIR_OID, group, "", 0);
}

static int count_cb(const char *v, uint32_t i, void *arg)
{
    (void)v;
    (void)i;
    (*(int *)arg)++;
    return 0;
}

int jr_group_delete(st_store *st, const char *group)
{
    if (!st || !valid_group(group)) return -EINVAL;
    int n = 0;
    int r = jr_group_members(st, group, count_cb, &n);
    if (r < 0) return r;
    if (n) return -ENOTEMPTY;
    char oid[JR_MAX_GROUP_ID + 8];
    group_oid(oid, sizeof oid, group);
    r = st_remove(st, oid);
    if (r < 0 && r != -ENOENT) return r;
    r = st_omap_rm(st, GROUP_DIR_OID, group);
    return r == -ENOENT ? 0 : r;
}

/* ---- the point's state: "cp" = "<cut> <state> <mask hex> <idle>" ---- */

enum { CP_NONE, CP_PREP, CP_HOLD, CP_RELEASE, CP_ABANDON };

struct cp {
    uint64_t cut;
    int state;
    uint64_t mask;
    char idle[JR_GROUP_PAYLOAD_MAX / 2];
};

static int cp_read(st_store *st, const char *oid, struct cp *c)
{
    memset(c, 0, sizeof *c);
    char *val = NULL;
    size_t len = 0;
    int r = st_omap_get(st, oid, "cp", &val, &len);
    if (r == -ENOENT) return 0;
    if (r < 0) return r;
    char state[16] = "";
    char idle[sizeof c->idle] = "-";
    unsigned long long cut = 0, mask = 0;
    if (sscanf(val, "%llu %15s %llx %1000s", &cut, state, &mask, idle) >= 3) {
        c->cut = cut;
        c->mask = mask;
        c->state = strcmp(state, "prep") == 0      ? CP_PREP
                   : strcmp(state, "hold") == 0    ? CP_HOLD
                   : strcmp(state, "release") == 0 ? CP_RELEASE
                   : strcmp(state, "abandon") == 0 ? CP_ABANDON
                                                   : CP_NONE;
        snprintf(c->idle, sizeof c->idle, "%s", idle);
    }
    free(val);
    return 0;
}

static int cp_write(st_store *st, const char *oid, uint64_t cut,
                    const char *state, uint64_t mask, const char *idle)
{
    char b[sizeof(((struct cp *)0)->idle) + 64];
    int n = snprintf(b, sizeof b, "%" PRIu64 " %s %016" PRIx64 " %s", cut,
                     state, mask, idle && *idle ? idle : "-");
    return st_omap_set(st, oid, "cp", b, (size_t)n);
}

/* ---- coordinator ---- */

struct cmem {
    char vol[JR_MAX_ID + 1];
    uint32_t idx;
};
struct cmems {
    struct cmem m[JR_GROUP_MAX_MEMBERS];
    size_t n;
};

static int cmem_cb(const char *v, uint32_t i, void *arg)
{
    struct cmems *c = arg;
    if (c->n < JR_GROUP_MAX_MEMBERS && i < JR_GROUP_MAX_MEMBERS) {
        snprintf(c->m[c->n].vol, sizeof c->m[c->n].vol, "%s", v);
        c->m[c->n++].idx = i;
    }
    return 0;
}

struct held {
    uint64_t cut;
    uint64_t mask;
};

static int held_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct held *h = arg;
    (void)len;
    unsigned i = (unsigned)atoi(key + 2);
    unsigned long long c = strtoull(val, NULL, 10);
    if (i < JR_GROUP_MAX_MEMBERS && c == h->cut) h->mask |= 1ull << i;
    return 0;
}

int jr_group_cut(st_store *st, const char *group, int hold_ms,
                 struct jr_cut_result *out)
{
    if (!st || !valid_group(group) || !out) return -EINVAL;
    memset(out, 0, sizeof *out);
    char oid[JR_MAX_GROUP_ID + 8];
    group_oid(oid, sizeof oid, group);
    struct cmems ms;
    memset(&ms, 0, sizeof ms);
    int r = jr_group_members(st, group, cmem_cb, &ms);
    if (r < 0) return r;
    struct cp c;
    if ((r = cp_read(st, oid, &c)) < 0) return r;
    uint64_t cut = c.cut + 1;
    out->cut = cut;
    /* "prep" first, so a writer that takes its lease after we read
     * it below finds a point in progress and waits it out. */
    if ((r = cp_write(st, oid, cut, "prep", 0, "-")) < 0) return r;
    uint64_t mask = 0;
    char idle[sizeof c.idle] = "";
    size_t il = 0;
    for (size_t i = 0; i < ms.n; i++) {
        char hoid[JR_OID_MAX], *lv = NULL;
        jr__oid_header(hoid, sizeof hoid, ms.m[i].vol);
        r = st_omap_get(st, hoid, "lease", &lv, NULL);
        free(lv);
        if (r == 0) {
            mask |= 1ull << ms.m[i].idx;
            continue;
        }
        if (r != -ENOENT) goto abandon;
        /* No writer: its head is its cut, and no write can join it
         * before this point ends. */
        struct jr_info info;
        if ((r = jr_volume_stat(st, ms.m[i].vol, &info)) < 0) goto abandon;
        int n = snprintf(idle + il, sizeof idle - il, "%s%u:%" PRIu64,
                         il ? "," : "", ms.m[i].idx, info.head);
        if (n < 0 || (size_t)n >= sizeof idle - il) {
            r = -E2BIG;
            goto abandon;
        }
        il += (size_t)n;
        out->idle++;
    }
    out->participants = (uint32_t)__builtin_popcountll(mask);
    if (!mask) { /* nobody writes: nothing to mark, nothing can change */
        out->complete = 1;
        return cp_write(st, oid, cut, "release", 0, idle);
    }
    int64_t t0 = tb_mono_ns();
    if ((r = cp_write(st, oid, cut, "hold", mask, idle)) < 0) goto abandon;
    for (;;) {
        struct held h = {cut, 0};
        r = st_omap_iter(st, oid, "h.", NULL, 0, held_cb, &h);
        if (r < 0) goto abandon;
        if ((h.mask & mask) == mask) break;
        if (tb_mono_ns() - t0 > (int64_t)hold_ms * 1000000) {
            r = 0;
            goto abandon;
        }
        usleep(CP_FAST_POLL_US);
    }
    r = cp_write(st, oid, cut, "release", mask, idle);
    out->pause_ns = tb_mono_ns() - t0;
    if (r < 0) goto abandon;
    out->complete = 1;
    return 0;
abandon:
    {
        int r2 = cp_write(st, oid, cut, "abandon", mask, idle);
        out->pause_ns = 0;
        tlog_warn("group.cut_abandoned", "group=%s cut=%" PRIu64 " err=\"%s\"",
                  group, cut, r < 0 ? jr_strerror(r) : "hold timed out");
        return r < 0 ? r : r2;
    }
}

/* ---- writer ---- */

void jr__cp_open_wait(st_store *st, const char *group, uint32_t member)
{
    char oid[JR_MAX_GROUP_ID + 8];
    group_oid(oid, sizeof oid, group);
    int64_t t0 = tb_mono_ms();
    for (;;) {
        struct cp c;
        if (cp_read(st, oid, &c) < 0) return;
        if (c.state != CP_PREP &&
            !(c.state == CP_HOLD && !(c.mask >> member & 1)))
            return;
        /* Bounded like every hold: a coordinator that died mid-point
         * must not keep the volume from opening.  But then the point
         * must not complete after our writes began: abandon it, as a
         * compare-and-set on what we read (a participant that read every
         * mark before this still commits: its marks precede our writes,
         * which is all the property needs; one that reads after it sees
         * the abandon, R-72). */
        if (tb_mono_ms() - t0 > CP_HOLD_MAX_MS) {
            char *raw = NULL;
            size_t rl = 0;
            if (st_omap_get(st, oid, "cp", &raw, &rl) < 0) return;
            char nv[sizeof c.idle + 64];
            int n = snprintf(nv, sizeof nv, "%" PRIu64 " abandon %016" PRIx64
                             " %s", c.cut, c.mask, c.idle[0] ? c.idle : "-");
            int r = st_omap_cas(st, oid, "cp", raw, rl, nv, (size_t)n);
            free(raw);
            if (r == 0) {
                tlog_warn("group.open_abandoned", "group=%s cut=%" PRIu64,
                          group, c.cut);
                return;
            }
            if (r != -ECANCELED) return; /* a store error: best effort */
            continue; /* it moved: look again */
        }
        usleep(CP_FAST_POLL_US);
    }
}

/* One read of the whole group object: "cp" and the "h.*" of a cut. */
struct pollst {
    uint64_t cut;
    uint64_t held;
    struct cp cp;
};

static int poll_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct pollst *p = arg;
    (void)len;
    if (!strncmp(key, "h.", 2)) {
        unsigned i = (unsigned)atoi(key + 2);
        if (i < JR_GROUP_MAX_MEMBERS && strtoull(val, NULL, 10) == p->cut)
            p->held |= 1ull << i;
    } else if (!strcmp(key, "cp")) {
        char state[16] = "";
        unsigned long long cut = 0, mask = 0;
        if (sscanf(val, "%llu %15s %llx", &cut, state, &mask) == 3) {
            p->cp.cut = cut;
            p->cp.mask = mask;
            p->cp.state = !strcmp(state, "hold")      ? CP_HOLD
                          : !strcmp(state, "release") ? CP_RELEASE
                          : !strcmp(state, "abandon") ? CP_ABANDON
                          : !strcmp(state, "prep")    ? CP_PREP
                                                      : CP_NONE;
        }
    }
    return 0;
}

void jr__cp_serve(jr_volume *v, st_store *st, const char *vol,
                  const char *group, uint32_t member, int ms)
{
    char oid[JR_MAX_GROUP_ID + 8];
    group_oid(oid, sizeof oid, group);
    uint64_t done = 0;
    {
        struct cp c;
        if (cp_read(st, oid, &c) == 0 && c.state != CP_HOLD) done = c.cut;
    }
    /* Points come at the coordinator's interval: poll at the fast period
     * (ms) only from a little before the next one is due, as this writer
     * measured the interval on its own clock, and every CP_SLOW_POLL_MS
     * otherwise; a point that comes early is seen at most that late.
     * Every poll is a store read: at 5 ms, three writers cost a shared
     * store 600 reads a second, which it takes from the writes. */
    int64_t last_hold = 0, period = 0;
    while (!jr__cp_stopping(v)) {
        int64_t now = tb_mono_ms();
        int wait = ms;
        if (last_hold && period > 4 * CP_SLOW_POLL_MS &&
            now - last_hold < period - 2 * CP_SLOW_POLL_MS)
            wait = CP_SLOW_POLL_MS;
        /* In 1 ms steps: jr_close must not wait a whole period. */
        for (int t = 0; t < wait && !jr__cp_stopping(v); t++) usleep(1000);
        struct cp c;
        if (cp_read(st, oid, &c) < 0) continue;
        if (c.cut <= done || c.state != CP_HOLD || !(c.mask >> member & 1))
            continue;
        now = tb_mono_ms();
        if (last_hold && done && c.cut == done + 1) {
            int64_t d = now - last_hold;
            period = period ? (3 * period + d) / 4 : d;
        }
        last_hold = now;
        done = c.cut;
        uint8_t pl[JR_GROUP_PAYLOAD_MAX];
        int n = snprintf((char *)pl, sizeof pl, "m %s %" PRIu64 " %016" PRIx64
                         " %s", group, c.cut, c.mask, c.idle[0] ? c.idle : "-");
        if (n < 0 || (size_t)n >= sizeof pl) continue;
        uint64_t seq = 0;
        int64_t tr0 = tb_mono_ns();
        int r = jr__cp_mark(v, member, pl, (size_t)n, &seq);
        int64_t tr1 = tb_mono_ns(), tr2 = 0;
        if (r < 0) {
            tlog_warn("group.mark_failed", "vol=%s group=%s cut=%" PRIu64
                      " err=\"%s\"", vol, group, c.cut, jr_strerror(r));
            continue;
        }
        int64_t t0 = tb_mono_ms();
        char key[32], val[64];
        snprintf(key, sizeof key, "h.%u", member);
        int vn = snprintf(val, sizeof val, "%" PRIu64 " %" PRIu64, c.cut, seq);
        int released = 0;
        if (st_omap_set(st, oid, key, val, (size_t)vn) == 0 &&
            jr__cp_durable(v, seq) == 0) {
            tr2 = tb_mono_ns();
            for (;;) {
                /* Released once every participant's mark is in: seen
                 * here directly (one read of the group object), not
                 * through the coordinator, whose release would add a
                 * store write and a poll to every hold. */
                struct pollst d = {c.cut, 0, {0}};
                if (st_omap_iter(st, oid, "", NULL, 0, poll_cb, &d) == 0) {
                    if ((d.held & c.mask) == c.mask &&
                        (d.cp.cut != c.cut || d.cp.state != CP_ABANDON)) {
                        released = 1;
                        break;
                    }
                    if (d.cp.cut != c.cut ||
                        (d.cp.state != CP_HOLD && d.cp.state != CP_RELEASE))
                        break;
                }
                /* Our own bound: the coordinator may have died. */
                if (tb_mono_ms() - t0 > CP_HOLD_MAX_MS ||
                    jr__cp_stopping(v))
                    break;
                usleep(CP_FAST_POLL_US);
            }
        }
        jr__cp_open(v);
        /* Where a hold's time goes (TANDEM_LOG_LEVEL=debug). */
        tlog_debug("group.hold", "vol=%s cut=%" PRIu64 " mark_ms=%.1f "
                   "durable_ms=%.1f wait_ms=%.1f released=%d", vol, c.cut,
                   (tr1 - tr0) / 1e6, (tr2 - tr1) / 1e6,
                   (tb_mono_ns() - tr2) / 1e6, released);
        if (!released) {
            tlog_warn("group.hold_dropped", "vol=%s group=%s cut=%" PRIu64,
                      vol, group, c.cut);
            continue;
        }
        /* The commit: this member held from its mark until the release,
         * which came after every participant's mark.  Journaled
         * after the gate opened: writes are not held for it. */
        n = snprintf((char *)pl, sizeof pl, "c %s %" PRIu64, group, c.cut);
        r = jr__cp_entry(v, member, pl, (size_t)n);
        if (r < 0)
            tlog_warn("group.commit_failed", "vol=%s group=%s cut=%" PRIu64
                      " err=\"%s\"", vol, group, c.cut, jr_strerror(r));
    }
}

/* ---- peer side ---- */

#define MAX_MARKS 4096
struct gmark {
    uint64_t cut;
    uint64_t seq;
    int64_t ts;
    uint64_t mask;
    char *idle; /* malloc'd */
};
struct mscan {
    uint32_t idx;
    struct gmark *m;
    size_t nm;
    uint64_t *commits;
    size_t nc;
    uint64_t head;
    uint64_t applied;    /* the image's position */
    uint64_t gcut, gpos; /* the cut last applied */
};

static int scan_cb(const struct jr_entry *e, const uint8_t *raw, size_t rl,
                   void *arg)
{
    struct mscan *s = arg;
    (void)raw;
    (void)rl;
    if (e->kind != JR_K_GROUP) return 0;
    char b[JR_GROUP_PAYLOAD_MAX + 1];
    memcpy(b, e->payload, e->plen);
    b[e->plen] = 0;
    char g[JR_MAX_GROUP_ID + 2], idle[JR_GROUP_PAYLOAD_MAX];
    unsigned long long cut, mask;
    if (b[0] == 'c' && sscanf(b, "c %65s %llu", g, &cut) == 2) {
        if (s->nc < MAX_MARKS) {
            uint64_t *n = realloc(s->commits, (s->nc + 1) * sizeof *n);
            if (!n) return -ENOMEM;
            s->commits = n;
            s->commits[s->nc++] = cut;
        }
    } else if (b[0] == 'm' &&
               sscanf(b, "m %65s %llu %llx %2047s", g, &cut, &mask, idle) ==
                   4) {
        if (s->nm < MAX_MARKS) {
            struct gmark *n = realloc(s->m, (s->nm + 1) * sizeof *n);
            if (!n) return -ENOMEM;
            s->m = n;
            s->m[s->nm] = (struct gmark){cut, e->seq, e->ts_ns, mask, strdup(idle)};
            if (!s->m[s->nm].idle) return -ENOMEM;
            s->nm++;
        }
    }
    return 0;
}

static const struct gmark *find_mark(const struct mscan *s, uint64_t cut)
{
    for (size_t i = 0; i < s->nm; i++)
        if (s->m[i].cut == cut) return &s->m[i];
    return NULL;
}

static int has_commit(const struct mscan *s, uint64_t cut)
{
    for (size_t i = 0; i < s->nc; i++)
        if (s->commits[i] == cut) return 1;
    return 0;
}

/* Position of idle member idx in an idle list "i:head,..." (0: absent). */
static int idle_head(const char *list, uint32_t idx, uint64_t *head)
{
    const char *p = list;
    while (p && *p && *p != '-') {
        unsigned i;
        unsigned long long h;
        if (sscanf(p, "%u:%llu", &i, &h) != 2) return 0;
        if (i == idx) {
            *head = h;
            return 1;
        }
        p = strchr(p, ',');
        if (p) p++;
    }
    return 0;
}

int jr_group_find_cut(st_store *st, size_t n, const char *const *vols,
                      const uint32_t *idx, uint64_t *cut, uint64_t *pos,
                      int64_t *cut_ts)
{
    if (cut_ts) *cut_ts = 0;
    if (!st || !n || n > JR_GROUP_MAX_MEMBERS || !vols || !idx || !cut || !pos)
        return -EINVAL;
    struct mscan *s = calloc(n, sizeof *s);
    if (!s) return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        struct jr__hdr h;
        s[i].idx = idx[i];
        if ((r = jr__hdr_load(st, vols[i], &h)) < 0) goto out;
        r = jr__head(st, vols[i], &h, &s[i].head, NULL);
        s[i].applied = h.applied;
        char hoid[JR_OID_MAX], *gv = NULL;
        jr__oid_header(hoid, sizeof hoid, vols[i]);
        if (r == 0 && st_omap_get(st, hoid, "gcut", &gv, NULL) == 0) {
            unsigned long long a, b;
            if (sscanf(gv, "%llu %llu", &a, &b) == 2) {
                s[i].gcut = a;
                s[i].gpos = b;
            }
        }
        free(gv);
        /* Marks at or below applied belong to cuts at or below the one
         * applied (gcut): only what lies past it can make a newer cut. */
        uint64_t from = h.applied + 1 > h.tail ? h.applied + 1 : h.tail;
        if (r == 0 && s[i].head >= from)
            r = jr__journal_iter(st, vols[i], &h, from, s[i].head, scan_cb,
                                 &s[i]);
        jr__hdr_free(&h);
        if (r == JR_ETRIMMED) r = 0;
        if (r < 0) goto out;
    }
    /* The base: the cut last applied everywhere. */
    uint64_t base = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (s[i].gcut < base) base = s[i].gcut;
    uint64_t best = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < s[i].nm; k++) {
            const struct gmark *m = &s[i].m[k];
            if (m->cut <= base || m->cut <= best) continue;
            /* Every member the point names must be among ours. */
            uint64_t have = 0, named = m->mask;
            for (size_t j = 0; j < n; j++) have |= 1ull << s[j].idx;
            for (const char *p = m->idle; p && *p && *p != '-';) {
                unsigned ii = (unsigned)atoi(p);
                if (ii < JR_GROUP_MAX_MEMBERS) named |= 1ull << ii;
                p = strchr(p, ',');
                if (p) p++;
            }
            int ok = (named & ~have) == 0;
            for (size_t j = 0; ok && j < n; j++) {
                uint64_t ih;
                if (m->mask >> s[j].idx & 1) {
                    ok = find_mark(&s[j], m->cut) && has_commit(&s[j], m->cut);
                } else if (idle_head(m->idle, s[j].idx, &ih)) {
                    ok = s[j].head >= ih;
                } /* else: not a member when the point was taken (it
                   * left): it neither blocks the cut nor is cut */
            }
            if (ok) best = m->cut;
        }
    }
    if (!best) {
        /* Nothing newer: every member stays where its image is (the cut
         * applied last; a member that joined or left since: its applied
         * position, which no cut of the group goes past). */
        uint64_t last = 0;
        for (size_t i = 0; i < n; i++)
            if (s[i].gcut > last) last = s[i].gcut;
        *cut = last;
        for (size_t i = 0; i < n; i++)
            pos[i] = last && s[i].gcut == last ? s[i].gpos : s[i].applied;
        goto out;
    }
    *cut = best;
    for (size_t j = 0; j < n; j++) {
        const struct gmark *m = find_mark(&s[j], best);
        uint64_t ih = 0;
        int named = 0;
        if (m) {
            pos[j] = m->seq;
            if (cut_ts && m->ts > *cut_ts) *cut_ts = m->ts;
        } else {
            /* idle in this point: the head the marks name */
            for (size_t i = 0; i < n && !named; i++) {
                const struct gmark *o = find_mark(&s[i], best);
                if (o) named = idle_head(o->idle, s[j].idx, &ih);
            }
            pos[j] = named ? ih : JR_GROUP_LEFT;
        }
    }
out:
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < s[i].nm; k++) free(s[i].m[k].idle);
        free(s[i].m);
        free(s[i].commits);
    }
    free(s);
    return r;
}

int jr_batch_group_mark(const void *data, size_t len, char *group, size_t gn,
                        uint32_t *member)
{
    const uint8_t *p = data;
    size_t pos = 0;
    while (pos < len) {
        struct jr_entry e;
        size_t used;
        /* Headers only (cheap: called on every batch of an ungrouped
         * replica); a group entry is decoded and verified in full. */
        if (len - pos < JR_HDR_SIZE) return JR_ECORRUPT;
        size_t el = JR_HDR_SIZE + (size_t)jr__get32(p + pos + 40);
        if (el > len - pos) return JR_ECORRUPT;
        if (p[pos + 5] != JR_K_GROUP) {
            pos += el;
            continue;
        }
        int r = jr__entry_decode(p + pos, len - pos, &e, &used, NULL);
        if (r < 0) return r;
        if (e.kind == JR_K_GROUP && e.payload[0] == 'm') {
            char b[JR_GROUP_PAYLOAD_MAX + 1], g[JR_MAX_GROUP_ID + 2];
            memcpy(b, e.payload, e.plen);
            b[e.plen] = 0;
            if (sscanf(b, "m %65s", g) == 1 && valid_group(g)) {
                snprintf(group, gn, "%s", g);
                *member = e.member;
                return 1;
            }
        }
        pos += used;
    }
    return 0;
}

int jr_batch_group_commits(const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t pos = 0;
    int n = 0;
    while (pos < len) {
        struct jr_entry e;
        size_t used;
        int r = jr__entry_decode(p + pos, len - pos, &e, &used, NULL);
        if (r < 0) return r;
        if (e.kind == JR_K_GROUP && e.payload[0] == 'c') n++;
        pos += used;
    }
    return n;
}

int jr_group_cut_applied(st_store *st, size_t n, const char *const *vols,
                         uint64_t cut, const uint64_t *pos)
{
    for (size_t i = 0; i < n; i++) {
        char hoid[JR_OID_MAX], b[64];
        if (pos[i] == JR_GROUP_LEFT) continue;
        jr__oid_header(hoid, sizeof hoid, vols[i]);
        int k = snprintf(b, sizeof b, "%" PRIu64 " %" PRIu64, cut, pos[i]);
        int r = st_omap_set(st, hoid, "gcut", b, (size_t)k);
        if (r < 0) return r;
    }
    return 0;
}

int jr_replica_apply_to(st_store *st, const char *vol_id, uint64_t seq)
{
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    uint64_t head = 0;
    if (h.role != JR_ROLE_SECONDARY) {
        r = JR_EROLE;
        goto out;
    }
    if ((r = jr__head(st, vol_id, &h, &head, NULL)) < 0) goto out;
    if (seq > head) seq = head;
    if (seq > h.applied) r = jr__replay(st, vol_id, &h, seq, NULL);
out:
    jr__hdr_free(&h);
    return r;
}

int jr_replica_cut(st_store *st, const char *vol_id, uint64_t seq)
{
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    uint64_t head = 0;
    if (h.role != JR_ROLE_SECONDARY) {
        r = JR_EROLE;
        goto out;
    }
    if ((r = jr__head(st, vol_id, &h, &head, NULL)) < 0) goto out;
    if (head < seq) {
        r = JR_EGAP;
        goto out;
    }
    if (h.applied > seq) { /* applied past the cut: cannot come back */
        r = JR_EDIVERGED;
        goto out;
    }
    if (seq > h.applied && (r = jr__replay(st, vol_id, &h, seq, NULL)) < 0)
        goto out;
    if (head > seq) {
        jr__hdr_free(&h);
        if ((r = jr__hdr_load(st, vol_id, &h)) < 0) return r;
        r = jr_replica_rebase(st, vol_id, seq, h.applied_size ? h.applied_size
                                                              : h.size);
        if (r == 0)
            tlog_info("group.replica_cut", "vol=%s seq=%" PRIu64
                      " dropped=%" PRIu64, vol_id, seq, head - seq);
    }
out:
    jr__hdr_free(&h);
    return r;
}
