/*
 * rep-tool: test and bench helper for replication (owner: replicator
 * helper).  Works on the stores of a region map through jr.h, and talks to
 * a replicator's admin and link services.
 *
 *   rep-tool create CONF REGION VOL SIZE [--peer B] [--object-size N]
 *                   [--cap BYTES] [--meta K=V]...
 *   rep-tool write CONF REGION VOL --log FILE [--count N] [--seconds S]
 *                   [--seed S] [--max-len L] [--rate OPS/s] [--compressible]
 *                   [--ack-log FILE]
 *       Randomized writes and discards; the log records each op's intent
 *       ("I idx kind off len seed") before it and its journal seq
 *       ("S idx seq") after it, so a kill -9 at any point is resolved on
 *       the next run ("S" if the op turned out durable, "X" if not).
 *       --ack-log: one line "SEQ UNIX_NS" per op once it is acknowledged
 *       (the wall clock when jr_write/jr_discard returned).
 *   rep-tool verify CONF REGION VOL --log FILE [--seq N]
 *       The image equals the replay of the logged ops with seq <= N
 *       (default: the volume's applied position): prefix consistency.
 *   rep-tool cmp CONF REGION_A REGION_B VOL      images equal byte for byte
 *   rep-tool stat CONF REGION VOL                key=value of jr_volume_stat
 *   rep-tool wait-sync CONF PRIMARY SECONDARY VOL [--timeout S]
 *       until the secondary applied the primary's head (head stable)
 *   rep-tool admin unix:///SOCK status [VOL...] | promote VOL [--force] |
 *                   demote VOL | failover [--all|VOL...] | resync VOL [--full]
 *   rep-tool hello ADDR REGION PEER [--ca F --cert F --key F] [--insecure]
 *       exit 0 if the link answers Hello, else prints the code
 *   rep-tool fill CONF REGION VOL BYTES [--compressible]  sequential writes
 *   rep-tool damage CONF REGION VOL SEQ [--header]
 *       Flip one byte of journal entry SEQ through the store (its payload,
 *       or with --header its header), and set the volume's applied
 *       position below SEQ if it is not (as if its writer died before
 *       applying it), so the next writable open's replay meets the damage
 *       (FORMAT.md R-37).  Prints seq=, object=, offset= of the entry.
 *   rep-tool group-join CONF REGION GROUP VOL...   jr_group_join
 *   rep-tool serve CONF REGION VOL
 *       A writer process (as an exporter is): opens VOL writable, reads
 *       lines "K" from stdin and writes record K (4 KiB holding K) at
 *       block K/3, answering "A K" once it is acknowledged.
 *   rep-tool wait-hold CONF REGION GROUP [--timeout S]
 *       until the group's consistency point is in its hold phase (exit 0),
 *       polling every 100 us; exit 1 on timeout
 *   rep-tool group-check CONF REGION N VOL0 VOL1 VOL2
 *       records 1..N (record K in VOL<K%3> at block K/3): "prefix K=<k>"
 *       when the records found are exactly 1..k (exit 0), else
 *       "violation ..." (exit 1)
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jr.h"
#include "jr_int.h"
#include "regions.h"
#include "rpc.h"
#include "tandem_admin.pb-c.h"
#include "tandem_repl.pb-c.h"
#include "tlog.h"

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rep-tool: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct rg_config *cfg;

static st_store *open_region(const char *conf, const char *region)
{
    char err[512];
    st_store *st;
    if (!cfg && rg_load(conf, &cfg, err, sizeof(err)) < 0) die("%s", err);
    const struct rg_region *r = rg_find(cfg, region);
    if (!r) die("region %s not in %s", region, conf);
    int rc = rg_open_store(r, &st);
    if (rc < 0) die("open store %s: %s", region, jr_strerror(rc));
    return st;
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc - 1; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return NULL;
}

static int flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], name)) return 1;
    return 0;
}

static uint64_t num(const char *s)
{
    char *e;
    uint64_t v = strtoull(s, &e, 0);
    if (*e == 'K' || *e == 'k') v <<= 10;
    else if (*e == 'M' || *e == 'm') v <<= 20;
    else if (*e == 'G' || *e == 'g') v <<= 30;
    return v;
}

/* Deterministic bytes of an op from its seed. */
static void fill(uint8_t *p, size_t n, uint64_t seed, int compressible)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    if (compressible) {
        /* A 64-byte random pattern, then text-like repetition. */
        uint8_t pat[64];
        for (int i = 0; i < 64; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            pat[i] = (uint8_t)('a' + (x % 26));
        }
        for (size_t i = 0; i < n; i++) p[i] = pat[(i / 7) % 64];
        return;
    }
    for (size_t i = 0; i < n; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(p + i, &x, k);
    }
}

/* ------------------------------------------------------------- create */

static int cmd_create(int argc, char **argv)
{
    if (argc < 6) die("create CONF REGION VOL SIZE [...]");
    st_store *st = open_region(argv[2], argv[3]);
    struct jr_kv kv[40];
    size_t n = 0;
    const char *peer = opt(argc, argv, "--peer");
    if (peer) {
        kv[n++] = (struct jr_kv){"csi.replication", "async"};
        kv[n++] = (struct jr_kv){"csi.peer_region", peer};
        kv[n++] = (struct jr_kv){"csi.pvc_name", "data-0"};
        kv[n++] = (struct jr_kv){"csi.pvc_namespace", "default"};
    }
    for (int i = 6; i < argc - 1 && n < 36; i++)
        if (!strcmp(argv[i], "--meta")) {
            char *eq = strchr(argv[i + 1], '=');
            if (!eq) die("--meta K=V");
            *eq = 0;
            kv[n++] = (struct jr_kv){argv[i + 1], eq + 1};
        }
    struct jr_create_opts o = {
        .size = num(argv[5]),
        .object_size = opt(argc, argv, "--object-size")
                           ? (uint32_t)num(opt(argc, argv, "--object-size"))
                           : 0,
        .role = JR_ROLE_PRIMARY,
        .region = argv[3],
        .meta = kv,
        .n_meta = n,
        .journal_cap = opt(argc, argv, "--cap") ? num(opt(argc, argv, "--cap"))
                                                : 0,
    };
    int rc = jr_volume_create(st, argv[4], &o);
    if (rc < 0 && rc != -EEXIST) die("create %s: %s", argv[4], jr_strerror(rc));
    st_close(st);
    return 0;
}

/* -------------------------------------------------------------- log */

struct op {
    uint64_t idx, off, len, seed, seq; /* seq 0: not durable / unknown */
    char kind;                          /* 'w' or 'z' */
    int resolved;
};

struct oplog {
    struct op *a;
    size_t n, cap;
};

static struct op *log_find(struct oplog *l, uint64_t idx)
{
    /* Ops are logged with increasing idx: binary search. */
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (l->a[m].idx < idx) lo = m + 1;
        else hi = m;
    }
    return lo < l->n && l->a[lo].idx == idx ? &l->a[lo] : NULL;
}

static void log_load(const char *path, struct oplog *l)
{
    FILE *f = fopen(path, "r");
    memset(l, 0, sizeof(*l));
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (!strchr(line, '\n')) break; /* torn last line (kill -9) */
        if (line[0] == 'I') {
            struct op o = {0};
            if (sscanf(line, "I %" SCNu64 " %c %" SCNu64 " %" SCNu64 " %" SCNu64,
                       &o.idx, &o.kind, &o.off, &o.len, &o.seed) != 5)
                continue;
            if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 1024;
                l->a = realloc(l->a, l->cap * sizeof(*l->a));
                if (!l->a) die("oom");
            }
            l->a[l->n++] = o;
        } else if (line[0] == 'S' || line[0] == 'X') {
            uint64_t idx, seq = 0;
            if (sscanf(line + 2, "%" SCNu64 " %" SCNu64, &idx, &seq) < 1)
                continue;
            struct op *o = log_find(l, idx);
            if (o) {
                o->seq = line[0] == 'S' ? seq : 0;
                o->resolved = 1;
            }
        }
    }
    fclose(f);
}

static int log_fd = -1;

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
    char b[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof(b), fmt, ap);
    va_end(ap);
    if (write(log_fd, b, (size_t)n) != n) die("log write: %s", strerror(errno));
}

/* -------------------------------------------------------------- write */

static int cmd_write(int argc, char **argv)
{
    if (argc < 5) die("write CONF REGION VOL --log FILE ...");
    const char *logp = opt(argc, argv, "--log");
    if (!logp) die("--log FILE required");
    uint64_t count = opt(argc, argv, "--count") ? num(opt(argc, argv, "--count")) : 0;
    double secs = opt(argc, argv, "--seconds") ? atof(opt(argc, argv, "--seconds")) : 0;
    uint64_t seed = opt(argc, argv, "--seed") ? num(opt(argc, argv, "--seed")) : (uint64_t)getpid();
    uint64_t maxlen = opt(argc, argv, "--max-len") ? num(opt(argc, argv, "--max-len")) : 65536;
    double rate = opt(argc, argv, "--rate") ? atof(opt(argc, argv, "--rate")) : 0;
    int compressible = flag(argc, argv, "--compressible");
    const char *ackp = opt(argc, argv, "--ack-log");
    int ack_fd = -1;
    if (ackp && (ack_fd = open(ackp, O_WRONLY | O_APPEND | O_CREAT |
                               O_CLOEXEC, 0644)) < 0)
        die("%s: %s", ackp, strerror(errno));
    if (!count && !secs) count = 200;
    st_store *st = open_region(argv[2], argv[3]);
    jr_volume *v;
    char owner[64];
    snprintf(owner, sizeof(owner), "rep-tool/%d", (int)getpid());
    int rc = jr_open(st, argv[4], JR_OPEN_WRITE | JR_OPEN_FORCE, owner, &v);
    if (rc < 0) die("open %s: %s", argv[4], jr_strerror(rc));
    struct jr_info info;
    jr_get_info(v, &info);
    /* Resolve ops a killed predecessor left pending. */
    struct oplog l;
    log_load(logp, &l);
    log_fd = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0) die("%s: %s", logp, strerror(errno));
    uint64_t last_seq = 0, next_idx = 1;
    for (size_t i = 0; i < l.n; i++) {
        if (l.a[i].seq > last_seq) last_seq = l.a[i].seq;
        next_idx = l.a[i].idx + 1;
    }
    for (size_t i = 0; i < l.n; i++) {
        if (l.a[i].resolved) continue;
        /* Only the last op of a run can be pending (ops are sequential). */
        if (info.head >= last_seq + 1) {
            log_line("S %" PRIu64 " %" PRIu64 "\n", l.a[i].idx, last_seq + 1);
            last_seq++;
        } else {
            log_line("X %" PRIu64 "\n", l.a[i].idx);
        }
    }
    free(l.a);
    uint64_t x = seed ? seed : 1;
    uint8_t *buf = malloc(maxlen);
    if (!buf) die("oom");
    double t0 = now_s();
    uint64_t done = 0, bytes = 0;
    uint64_t blocks = info.size / 4096;
    while ((count && done < count) || (secs && now_s() - t0 < secs)) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint64_t lenb = 1 + x % (maxlen / 4096 ? maxlen / 4096 : 1);
        uint64_t len = lenb * 4096;
        if (len > info.size) len = info.size;
        uint64_t off = (x >> 20) % (blocks - len / 4096 + 1) * 4096;
        char kind = (x >> 50) % 10 == 0 ? 'z' : compressible ? 'c' : 'w';
        uint64_t opseed = x ^ (next_idx << 32);
        log_line("I %" PRIu64 " %c %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
                 next_idx, kind, off, len, opseed);
        if (kind != 'z') {
            fill(buf, len, opseed, kind == 'c');
            rc = jr_write(v, off, buf, len);
        } else {
            rc = jr_discard(v, off, len);
        }
        if (rc < 0) die("op %" PRIu64 ": %s", next_idx, jr_strerror(rc));
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        jr_get_info(v, &info);
        if (ack_fd >= 0) {
            char a[64];
            int an = snprintf(a, sizeof(a), "%" PRIu64 " %lld\n", info.head,
                              (long long)at.tv_sec * 1000000000LL +
                                  at.tv_nsec);
            if (write(ack_fd, a, (size_t)an) != an)
                die("%s: %s", ackp, strerror(errno));
        }
        log_line("S %" PRIu64 " %" PRIu64 "\n", next_idx, info.head);
        next_idx++;
        done++;
        bytes += len;
        if (rate > 0) {
            double due = t0 + done / rate;
            double d = due - now_s();
            if (d > 0) usleep((useconds_t)(d * 1e6));
        }
    }
    double el = now_s() - t0;
    if (ack_fd >= 0) close(ack_fd);
    jr_close(v);
    st_close(st);
    printf("ops=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f head=%" PRIu64 "\n",
           done, bytes, el, info.head);
    free(buf);
    return 0;
}

/* Read the image as a reader sees it: a read-only open lays the journal
 * entries not yet applied (head > applied, e.g. after a crash between
 * journal and image) over the image, so this is the state as of head. */
static int image_read_all(st_store *st, const char *vol, uint8_t *buf,
                          uint64_t size, uint64_t *as_of)
{
    jr_volume *v;
    int rc = jr_open(st, vol, 0, NULL, &v);
    if (rc < 0) return rc;
    struct jr_info i;
    jr_get_info(v, &i);
    if (as_of) *as_of = i.head;
    for (uint64_t off = 0; off < size && rc >= 0; off += 4u << 20) {
        size_t n = size - off < (4u << 20) ? size - off : (4u << 20);
        rc = jr_read(v, off, buf + off, n);
    }
    jr_close(v);
    return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------- verify */

static int cmd_verify(int argc, char **argv)
{
    if (argc < 5) die("verify CONF REGION VOL --log FILE [--seq N]");
    const char *logp = opt(argc, argv, "--log");
    if (!logp) die("--log FILE required");
    st_store *st = open_region(argv[2], argv[3]);
    struct jr_info info;
    int rc = jr_volume_stat(st, argv[4], &info);
    if (rc < 0) die("stat %s: %s", argv[4], jr_strerror(rc));
    uint8_t *got = malloc(info.size);
    uint64_t as_of = 0;
    if (!got) die("oom");
    struct jr_copywin w;
    const char *view = "image";
    rc = jr_copywin_get(st, argv[4], &w);
    if (rc < 0 && rc != -ENOENT) die("copy window: %s", jr_strerror(rc));
    if (rc == 0) {
        /* A region copy is in its window here: the replica's consistent
         * state is what a promote would roll back to (jr.h
         * jr_copywin_read), as of the window's base. */
        view = "rollback";
        as_of = w.base;
        for (uint64_t off = 0; off < info.size; off += 4u << 20) {
            size_t n = info.size - off < (4u << 20) ? info.size - off : (4u << 20);
            if ((rc = jr_copywin_read(st, argv[4], off, got + off, n)) < 0)
                die("read: %s", jr_strerror(rc));
        }
    } else if ((rc = image_read_all(st, argv[4], got, info.size, &as_of)) < 0) {
        die("read: %s", jr_strerror(rc));
    }
    uint64_t seq = opt(argc, argv, "--seq") ? num(opt(argc, argv, "--seq"))
                                            : as_of;
    struct oplog l;
    log_load(logp, &l);
    /* A pending last op (writer killed, not restarted) has seq last+1 if it
     * was durable. */
    uint64_t last = 0;
    for (size_t i = 0; i < l.n; i++)
        if (l.a[i].seq > last) last = l.a[i].seq;
    for (size_t i = 0; i < l.n; i++)
        if (!l.a[i].resolved && i == l.n - 1) l.a[i].seq = last + 1;
    uint8_t *exp = calloc(1, info.size);
    if (!exp) die("oom");
    uint64_t nops = 0;
    for (size_t i = 0; i < l.n; i++) {
        struct op *o = &l.a[i];
        if (!o->seq || o->seq > seq) continue;
        if (o->off + o->len > info.size) die("op beyond size");
        /* Ops apply in seq order; the log is in seq order already. */
        if (o->kind == 'z') memset(exp + o->off, 0, o->len);
        else fill(exp + o->off, o->len, o->seed, o->kind == 'c');
        nops++;
    }
    for (uint64_t i = 0; i < info.size; i++)
        if (exp[i] != got[i]) {
            printf("MISMATCH vol=%s region=%s seq=%" PRIu64 " at byte %" PRIu64
                   " expected %02x got %02x (ops<=seq: %" PRIu64 ", view %s)\n",
                   argv[4], argv[3], seq, i, exp[i], got[i], nops, view);
            return 1;
        }
    printf("prefix-ok vol=%s region=%s seq=%" PRIu64 " ops=%" PRIu64
           " view=%s\n", argv[4], argv[3], seq, nops, view);
    free(exp);
    free(got);
    free(l.a);
    st_close(st);
    return 0;
}

/* ---------------------------------------------------------- cmp, stat */

static int cmd_cmp(int argc, char **argv)
{
    if (argc < 6) die("cmp CONF REGION_A REGION_B VOL");
    st_store *a = open_region(argv[2], argv[3]);
    st_store *b = open_region(argv[2], argv[4]);
    struct jr_info ia, ib;
    if (jr_volume_stat(a, argv[5], &ia) < 0 || jr_volume_stat(b, argv[5], &ib) < 0)
        die("stat failed");
    if (ia.size != ib.size) {
        printf("DIFFER size %" PRIu64 " vs %" PRIu64 "\n", ia.size, ib.size);
        return 1;
    }
    uint8_t *x = malloc(ia.size), *y = malloc(ia.size);
    uint64_t ha = 0, hb = 0;
    if (!x || !y) die("oom");
    if (image_read_all(a, argv[5], x, ia.size, &ha) < 0 ||
        image_read_all(b, argv[5], y, ib.size, &hb) < 0)
        die("read failed");
    for (uint64_t i = 0; i < ia.size; i++)
        if (x[i] != y[i]) {
            printf("DIFFER at byte %" PRIu64 " (%s as of %" PRIu64 ", %s as of %"
                   PRIu64 ")\n", i, argv[3], ha, argv[4], hb);
            return 1;
        }
    printf("same vol=%s bytes=%" PRIu64 " %s.applied=%" PRIu64 " %s.applied=%"
           PRIu64 "\n", argv[5], ia.size, argv[3], ia.applied, argv[4],
           ib.applied);
    return 0;
}

static int cmd_stat(int argc, char **argv)
{
    if (argc < 5) die("stat CONF REGION VOL");
    st_store *st = open_region(argv[2], argv[3]);
    struct jr_info i;
    if (opt(argc, argv, "--meta")) {
        char *val = NULL;
        if (jr_meta_get(st, argv[4], opt(argc, argv, "--meta"), &val) < 0)
            return 3;
        printf("%s\n", val);
        free(val);
        return 0;
    }
    int rc = jr_volume_stat(st, argv[4], &i);
    if (rc < 0) {
        printf("exists=0 err=%s\n", jr_strerror(rc));
        return rc == -ENOENT ? 3 : 1;
    }
    uint64_t ack = 0;
    const char *peer = opt(argc, argv, "--peer");
    if (peer) jr_peer_ack_get(st, argv[4], peer, &ack);
    char *split = NULL;
    jr_meta_get(st, argv[4], "rep.split_brain", &split);
    printf("exists=1 role=%s epoch=%" PRIu64 " head=%" PRIu64 " applied=%"
           PRIu64 " tail=%" PRIu64 " dirty=%d size=%" PRIu64 " acked=%" PRIu64
           " journal_bytes=%" PRIu64 " split=%d\n", jr_role_name(i.role),
           i.epoch, i.head, i.applied, i.tail, i.dirty_tracking, i.size, ack,
           i.journal_bytes, split != NULL);
    free(split);
    st_close(st);
    return 0;
}

static int cmd_wait_sync(int argc, char **argv)
{
    if (argc < 6) die("wait-sync CONF PRIMARY SECONDARY VOL [--timeout S]");
    double tmo = opt(argc, argv, "--timeout") ? atof(opt(argc, argv, "--timeout")) : 60;
    st_store *a = open_region(argv[2], argv[3]);
    st_store *b = open_region(argv[2], argv[4]);
    double t0 = now_s();
    struct jr_info ia = {0}, ib = {0};
    while (now_s() - t0 < tmo) {
        int ra = jr_volume_stat(a, argv[5], &ia);
        int rb = jr_volume_stat(b, argv[5], &ib);
        /* Synced also means out of any copy window (consistent as is). */
        struct jr_copywin w;
        int window = rb == 0 && jr_copywin_get(b, argv[5], &w) == 0;
        if (ra == 0 && rb == 0 && ib.applied == ia.head && !ia.dirty_tracking &&
            !window) {
            /* The primary's head must be where it was: no write racing. */
            struct jr_info again;
            if (jr_volume_stat(a, argv[5], &again) == 0 && again.head == ia.head) {
                printf("synced vol=%s head=%" PRIu64 " seconds=%.3f\n", argv[5],
                       ia.head, now_s() - t0);
                return 0;
            }
        }
        usleep(20000);
    }
    printf("TIMEOUT vol=%s %s.head=%" PRIu64 " %s.applied=%" PRIu64 "\n",
           argv[5], argv[3], ia.head, argv[4], ib.applied);
    return 1;
}

/* ------------------------------------------------------------- admin */

static void print_vs(const Tandem__Admin__V1__VolumeStatus *s)
{
    if (!s) return;
    printf("volume=%s region=%s role=%s epoch=%" PRIu64 " head=%" PRIu64
           " applied=%" PRIu64 " acked=%" PRIu64 " lag_entries=%" PRIu64
           " lag_bytes=%" PRIu64 " lag_s=%.3f link=%s state=%s split=%d"
           " ratio=%.2f rate=%.0f applied_age_s=%.3f copy=%d err=\"%s\"\n",
           s->volume_id, s->region, s->role, s->epoch, s->head, s->applied,
           s->acked, s->lag_entries, s->lag_bytes, s->lag_seconds,
           s->link_state, s->state, s->split_brain, s->compression_ratio,
           s->throughput_bytes_per_s, s->applied_age_seconds, s->copy_active,
           s->last_error);
}

static int cmd_admin(int argc, char **argv)
{
    if (argc < 4) die("admin unix:///SOCK CMD ...");
    rpc_client *c;
    int rc = rpc_client_create(argv[2], NULL, &c);
    if (rc < 0) die("client: %s", strerror(-rc));
    const char *cmd = argv[3];
    ProtobufCMessage *out = NULL;
    char msg[1024] = "";
    int code;
    int tmo = 60000;
    if (!strcmp(cmd, "status")) {
        Tandem__Admin__V1__StatusRequest q = TANDEM__ADMIN__V1__STATUS_REQUEST__INIT;
        q.volume_ids = argv + 4;
        q.n_volume_ids = (size_t)(argc - 4);
        code = rpc_client_call(c, "/tandem.admin.v1.Admin/Status", &q.base,
                               &tandem__admin__v1__status_response__descriptor,
                               &out, tmo, 1, msg, sizeof(msg));
        if (code == RPC_OK) {
            Tandem__Admin__V1__StatusResponse *s = (void *)out;
            printf("region=%s peer=%s peer_link=%s volumes=%zu\n", s->region,
                   s->peer_region, s->peer_link_state, s->n_volumes);
            for (size_t i = 0; i < s->n_volumes; i++) print_vs(s->volumes[i]);
        }
    } else if (!strcmp(cmd, "promote") && argc >= 5) {
        Tandem__Admin__V1__PromoteRequest q = TANDEM__ADMIN__V1__PROMOTE_REQUEST__INIT;
        q.volume_id = argv[4];
        q.force = flag(argc, argv, "--force");
        code = rpc_client_call(c, "/tandem.admin.v1.Admin/Promote", &q.base,
                               &tandem__admin__v1__promote_response__descriptor,
                               &out, tmo, 1, msg, sizeof(msg));
        if (code == RPC_OK) {
            Tandem__Admin__V1__PromoteResponse *s = (void *)out;
            printf("changed=%d msg=\"%s\"\n", s->changed, s->message);
            print_vs(s->volume);
        }
    } else if (!strcmp(cmd, "demote") && argc >= 5) {
        Tandem__Admin__V1__DemoteRequest q = TANDEM__ADMIN__V1__DEMOTE_REQUEST__INIT;
        q.volume_id = argv[4];
        q.timeout_ms = 30000;
        code = rpc_client_call(c, "/tandem.admin.v1.Admin/Demote", &q.base,
                               &tandem__admin__v1__demote_response__descriptor,
                               &out, tmo, 1, msg, sizeof(msg));
        if (code == RPC_OK) {
            Tandem__Admin__V1__DemoteResponse *s = (void *)out;
            printf("changed=%d msg=\"%s\"\n", s->changed, s->message);
            print_vs(s->volume);
        }
    } else if (!strcmp(cmd, "failover")) {
        Tandem__Admin__V1__FailoverRequest q = TANDEM__ADMIN__V1__FAILOVER_REQUEST__INIT;
        q.all = flag(argc, argv, "--all");
        char *ids[argc];
        size_t n = 0;
        for (int i = 4; i < argc; i++)
            if (argv[i][0] != '-') ids[n++] = argv[i];
        q.volume_ids = ids;
        q.n_volume_ids = n;
        double t0 = now_s();
        code = rpc_client_call(c, "/tandem.admin.v1.Admin/Failover", &q.base,
                               &tandem__admin__v1__failover_response__descriptor,
                               &out, tmo, 1, msg, sizeof(msg));
        double el = now_s() - t0;
        if (code == RPC_OK) {
            Tandem__Admin__V1__FailoverResponse *s = (void *)out;
            size_t ok = 0;
            for (size_t i = 0; i < s->n_results; i++) {
                Tandem__Admin__V1__FailoverResult *f = s->results[i];
                ok += f->ok;
                printf("volume=%s ok=%d changed=%d applied=%" PRIu64
                       " age_s=%.3f epoch=%" PRIu64 " msg=\"%s\"\n",
                       f->volume_id, f->ok, f->changed, f->applied,
                       f->applied_age_seconds, f->epoch, f->message);
            }
            printf("failover region=%s volumes=%zu ok=%zu seconds=%.4f\n",
                   s->region, s->n_results, ok, el);
            if (ok != s->n_results) code = RPC_FAILED_PRECONDITION;
        }
    } else if (!strcmp(cmd, "resync") && argc >= 5) {
        Tandem__Admin__V1__ResyncRequest q = TANDEM__ADMIN__V1__RESYNC_REQUEST__INIT;
        q.volume_id = argv[4];
        q.full = flag(argc, argv, "--full");
        code = rpc_client_call(c, "/tandem.admin.v1.Admin/Resync", &q.base,
                               &tandem__admin__v1__resync_response__descriptor,
                               &out, tmo, 1, msg, sizeof(msg));
        if (code == RPC_OK) {
            Tandem__Admin__V1__ResyncResponse *s = (void *)out;
            printf("changed=%d full=%d common=%" PRIu64 " regions=%" PRIu64
                   " bytes=%" PRIu64 " msg=\"%s\"\n", s->changed, s->full_copy,
                   s->common_seq, s->regions, s->bytes_copied, s->message);
            print_vs(s->volume);
        }
    } else {
        die("admin: unknown command %s", cmd);
    }
    if (out) protobuf_c_message_free_unpacked(out, NULL);
    rpc_client_destroy(c);
    if (code != RPC_OK) {
        printf("error code=%s msg=\"%s\"\n", rpc_code_name(code), msg);
        return 1;
    }
    return 0;
}

static int cmd_hello(int argc, char **argv)
{
    if (argc < 5) die("hello ADDR REGION PEER [--ca F --cert F --key F]");
    struct rpc_tls tls = {opt(argc, argv, "--ca"), opt(argc, argv, "--cert"),
                          opt(argc, argv, "--key"), NULL};
    rpc_client *c;
    int rc = rpc_client_create(argv[2], flag(argc, argv, "--insecure") ? NULL
                                                                        : &tls, &c);
    if (rc < 0) {
        printf("client-error %s\n", strerror(-rc));
        return 2;
    }
    Tandem__Repl__V1__HelloRequest q = TANDEM__REPL__V1__HELLO_REQUEST__INIT;
    q.region = argv[3];
    q.peer_region = argv[4];
    ProtobufCMessage *out = NULL;
    char msg[512] = "";
    int code = rpc_client_call(c, "/tandem.repl.v1.Link/Hello", &q.base,
                               &tandem__repl__v1__hello_response__descriptor,
                               &out, 5000, 0, msg, sizeof(msg));
    if (out) protobuf_c_message_free_unpacked(out, NULL);
    rpc_client_destroy(c);
    printf("code=%s msg=\"%s\"\n", rpc_code_name(code), msg);
    return code == RPC_OK ? 0 : 1;
}

static int cmd_fill(int argc, char **argv)
{
    if (argc < 6) die("fill CONF REGION VOL BYTES");
    st_store *st = open_region(argv[2], argv[3]);
    jr_volume *v;
    int rc = jr_open(st, argv[4], JR_OPEN_WRITE | JR_OPEN_FORCE, "rep-tool", &v);
    if (rc < 0) die("open: %s", jr_strerror(rc));
    struct jr_info info;
    jr_get_info(v, &info);
    uint64_t total = num(argv[5]), bs = 1u << 20, done = 0;
    uint8_t *buf = malloc(bs);
    double t0 = now_s();
    while (done < total) {
        uint64_t off = done % info.size;
        uint64_t n = bs;
        if (off + n > info.size) n = info.size - off;
        fill(buf, n, done + 7, flag(argc, argv, "--compressible"));
        if ((rc = jr_write(v, off, buf, n)) < 0) die("write: %s", jr_strerror(rc));
        done += n;
    }
    double el = now_s() - t0;
    jr_close(v);
    printf("bytes=%" PRIu64 " seconds=%.3f\n", done, el);
    free(buf);
    st_close(st);
    return 0;
}

/* ------------------------------------------------------------- damage */

static int cmd_damage(int argc, char **argv)
{
    if (argc < 6) die("damage CONF REGION VOL SEQ [--header]");
    st_store *st = open_region(argv[2], argv[3]);
    const char *vol = argv[4];
    uint64_t seq = num(argv[5]);
    struct jr__hdr h;
    int rc = jr__hdr_load(st, vol, &h);
    if (rc < 0) die("%s: %s", vol, jr_strerror(rc));
    /* The journal object holding seq: the last one starting at or
     * before it. */
    const struct jr__jobj *jo = NULL;
    for (size_t i = 0; i < h.nj; i++)
        if (h.j[i].first <= seq) jo = &h.j[i];
    if (!jo) die("%s: no journal object holds seq %" PRIu64, vol, seq);
    char oid[JR_OID_MAX], hoid[JR_OID_MAX];
    jr__oid_journal(oid, sizeof(oid), vol, jo->n);
    jr__oid_header(hoid, sizeof(hoid), vol);
    /* Walk the entries (FORMAT.md §3: 64-byte header, payload_len at 40). */
    uint64_t off = 0, cur = jo->first;
    uint8_t eh[64];
    for (;;) {
        ssize_t n = st_read(st, oid, off, eh, sizeof(eh));
        if (n != (ssize_t)sizeof(eh))
            die("%s: seq %" PRIu64 " not in journal object %" PRIu64, vol,
                seq, jo->n);
        uint32_t plen = (uint32_t)eh[40] | (uint32_t)eh[41] << 8 |
                        (uint32_t)eh[42] << 16 | (uint32_t)eh[43] << 24;
        if (cur == seq) {
            uint64_t at = off + 20; /* the seq field: R-12 fails */
            if (plen && !flag(argc, argv, "--header")) at = off + 64 + plen / 2;
            uint8_t c;
            if (st_read(st, oid, at, &c, 1) != 1) die("read %s", oid);
            c ^= 0x10;
            if ((rc = st_write(st, oid, at, &c, 1)) < 0)
                die("write %s: %s", oid, jr_strerror(rc));
            break;
        }
        off += 64 + plen;
        cur++;
    }
    if (h.applied >= seq) {
        char v[64];
        int l = snprintf(v, sizeof(v), "%" PRIu64 " %" PRIu64, seq - 1,
                         h.applied_size ? h.applied_size : h.size);
        if ((rc = st_omap_set(st, hoid, "applied", v, (size_t)l)) < 0)
            die("set applied: %s", jr_strerror(rc));
    }
    printf("seq=%" PRIu64 " object=%" PRIu64 " offset=%" PRIu64
           " applied=%" PRIu64 "\n", seq, jo->n, off,
           h.applied >= seq ? seq - 1 : h.applied);
    jr__hdr_free(&h);
    st_close(st);
    return 0;
}

/* ------------------------------------------------------ groups (t0311) */
#define GREC 4096

static int cmd_group_join(int argc, char **argv)
{
    if (argc < 6) die("group-join CONF REGION GROUP VOL...");
    st_store *st = open_region(argv[2], argv[3]);
    for (int i = 5; i < argc; i++) {
        uint32_t idx;
        int rc = jr_group_join(st, argv[4], argv[i], &idx);
        if (rc < 0) die("group-join %s: %s", argv[i], jr_strerror(rc));
        printf("%s index=%u\n", argv[i], idx);
    }
    st_close(st);
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    if (argc < 5) die("serve CONF REGION VOL");
    st_store *st = open_region(argv[2], argv[3]);
    jr_volume *v;
    char owner[64];
    snprintf(owner, sizeof owner, "serve/%d", (int)getpid());
    int rc = jr_open(st, argv[4], JR_OPEN_WRITE, owner, &v);
    if (rc < 0) die("open %s: %s", argv[4], jr_strerror(rc));
    printf("ready\n");
    fflush(stdout);
    char line[64];
    uint8_t b[GREC];
    while (fgets(line, sizeof line, stdin)) {
        uint64_t k = strtoull(line, NULL, 10);
        for (size_t i = 0; i < GREC; i += 8) memcpy(b + i, &k, 8);
        rc = jr_write(v, (k / 3) * GREC, b, GREC);
        if (rc < 0) die("write %" PRIu64 ": %s", k, jr_strerror(rc));
        printf("A %" PRIu64 "\n", k);
        fflush(stdout);
    }
    jr_close(v);
    st_close(st);
    return 0;
}

static int cmd_wait_hold(int argc, char **argv)
{
    if (argc < 5) die("wait-hold CONF REGION GROUP [--timeout S]");
    st_store *st = open_region(argv[2], argv[3]);
    double tmo = opt(argc, argv, "--timeout") ? atof(opt(argc, argv, "--timeout")) : 10;
    char oid[128];
    snprintf(oid, sizeof oid, "cg/%s", argv[4]);
    double t0 = now_s();
    while (now_s() - t0 < tmo) {
        char *val = NULL;
        if (st_omap_get(st, oid, "cp", &val, NULL) == 0) {
            int hold = strstr(val, " hold ") != NULL;
            free(val);
            if (hold) return 0; /* the caller kills at once */
        }
        usleep(100);
    }
    return 1;
}

static int cmd_group_check(int argc, char **argv)
{
    if (argc < 8) die("group-check CONF REGION N VOL0 VOL1 VOL2");
    st_store *st = open_region(argv[2], argv[3]);
    uint64_t n = num(argv[4]);
    uint8_t *found = calloc(n + 2, 1);
    if (!found) die("no memory");
    uint8_t b[GREC];
    for (uint64_t k = 1; k <= n; k++) {
        int rc = jr_image_read(st, argv[5 + k % 3], (k / 3) * GREC, b, GREC);
        if (rc == -EINVAL) break; /* past the image */
        if (rc < 0) die("read %s: %s", argv[5 + k % 3], jr_strerror(rc));
        uint64_t got;
        memcpy(&got, b, 8);
        found[k] = got == k;
    }
    uint64_t k = 0;
    while (k < n && found[k + 1]) k++;
    uint64_t extra = 0, first = 0;
    for (uint64_t j = k + 2; j <= n; j++)
        if (found[j]) {
            extra++;
            if (!first) first = j;
        }
    st_close(st);
    free(found);
    if (extra) {
        printf("violation: record %" PRIu64 " missing but %" PRIu64
               " later ones survived (first %" PRIu64 ")\n", k + 1, extra,
               first);
        return 1;
    }
    printf("prefix K=%" PRIu64 "\n", k);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) die("usage: see the header of tests/tools/rep-tool.c");
    tlog_init("rep-tool", TLOG_WARN);
    const char *c = argv[1];
    if (!strcmp(c, "create")) return cmd_create(argc, argv);
    if (!strcmp(c, "write")) return cmd_write(argc, argv);
    if (!strcmp(c, "verify")) return cmd_verify(argc, argv);
    if (!strcmp(c, "cmp")) return cmd_cmp(argc, argv);
    if (!strcmp(c, "stat")) return cmd_stat(argc, argv);
    if (!strcmp(c, "wait-sync")) return cmd_wait_sync(argc, argv);
    if (!strcmp(c, "admin")) return cmd_admin(argc, argv);
    if (!strcmp(c, "hello")) return cmd_hello(argc, argv);
    if (!strcmp(c, "fill")) return cmd_fill(argc, argv);
    if (!strcmp(c, "damage")) return cmd_damage(argc, argv);
    if (!strcmp(c, "group-join")) return cmd_group_join(argc, argv);
    if (!strcmp(c, "serve")) return cmd_serve(argc, argv);
    if (!strcmp(c, "wait-hold")) return cmd_wait_hold(argc, argv);
    if (!strcmp(c, "group-check")) return cmd_group_check(argc, argv);
    die("unknown command %s", c);
}
