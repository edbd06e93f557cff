/*
 * jr_int.h: what the journal engine's files share and nothing else may
 * use (tests and the fuzzer excepted): the entry codec of FORMAT.md §3,
 * CRC32C, object naming, and little-endian helpers; the header state, the
 * writer lease, replay and the image.
 *
 * The files: jr_format.c (entries, CRC32C, names), jr_image.c (header
 * load, journal objects, the image), jr_lease.c (the writer lease, R-36),
 * jr_volume.c (volume calls on the store), jr_tomb.c (tombstones, R-35),
 * jr_tail.c (tail reading, replay, jr_apply), jr_damage.c (a damaged
 * tail, R-37), jr_io.c (an open volume: the data path), jr_copywin.c
 * (region copies, §4), jr_snap.c (snapshots, §5: keys, copy-on-write,
 * their entries' effects, reads, holds, requests), jr_group.c
 * (consistency groups, §6: membership, points, the peer's cut).
 */
#ifndef TANDEM_JR_INT_H
#define TANDEM_JR_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jr.h"
#include "tlog.h"

#define JR_MAGIC 0x314A4454u        /* "TDJ1" little-endian (FORMAT.md §3) */
#define JR_VERSION 1
#define JR_HDR_SIZE 64
#define JR_MAX_ENTRY_DATA (4u << 20) /* largest write entry */
#define JR_MAX_OFFSET (1ull << 60)   /* */
#define JR_WRITE_CHUNK (1u << 20)    /* jr_write splits larger writes */
#define JR_F_LZ4 1u

enum jr_kind {
    JR_K_WRITE = 1,
    JR_K_ZERO = 2,
    JR_K_RESIZE = 3,
    JR_K_FLUSH = 4,
    JR_K_SNAP = 5,     /* take a snapshot (FORMAT.md §5, R-60) */
    JR_K_SNAP_DEL = 6, /* delete one */
    JR_K_GROUP = 7,    /* consistency group mark or commit (FORMAT.md §6) */
};
#define JR_K_LAST JR_K_GROUP
/* the largest group entry payload. */
#define JR_GROUP_PAYLOAD_MAX 2048
/* the largest snapshot entry payload: "<id> <label>". */
#define JR_SNAP_PAYLOAD_MAX (JR_MAX_SNAP_ID + 1 + JR_MAX_SNAP_LABEL)

/* A decoded entry.  payload points into the decoded buffer. */
struct jr_entry {
    uint8_t version;
    uint8_t kind;
    uint16_t flags;
    uint64_t seq;
    uint64_t epoch;
    uint64_t off;
    uint64_t len;
    uint32_t plen;
    uint32_t member;
    int64_t ts_ns;
    uint32_t pcrc;
    uint32_t hcrc;
    const uint8_t *payload;
};

uint32_t jr_crc32c(uint32_t crc, const void *buf, size_t len);
/* Table-only implementation (tests compare it with the hardware one). */
uint32_t jr__crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* Fill hdr (64 bytes) from e; e->pcrc must already be the payload CRC.
 * Sets e->hcrc. */
void jr__hdr_encode(struct jr_entry *e, uint8_t *hdr);
/* Decode and verify one entry at buf (len bytes available): R-10..R-19.
 * On success *used = 64 + payload_len.  On failure why (if non-NULL)
 * names the check.  Returns 0, JR_ECORRUPT or JR_EVERSION. */
int jr__entry_decode(const uint8_t *buf, size_t len, struct jr_entry *e,
                     size_t *used, const char **why);
/* The uncompressed bytes of a write entry into out (e->len bytes): R-20. */
int jr__entry_data(const struct jr_entry *e, uint8_t *out);
/* Compress src for a write entry: returns the compressed length
 * written to dst (capacity len - len/8), or 0 when it does not pay. */
size_t jr__compress(const uint8_t *src, size_t len, uint8_t *dst);

/* Volume ids. */
int jr__valid_id(const char *id);
/* Peer region names (in "ack.<peer>" keys and tombstones): 1..
 * JR_MAX_REGION bytes, no space. */
int jr__valid_peer(const char *peer);
/* Object names. */
/* The volume directory: one omap key per volume id. */
#define JR_DIR_OID "vols"
/* Present once the directory is complete (not a valid volume id). */
#define JR_DIR_MARKER "=directory"
/* Tombstones of deleted replicated primaries: key = volume id. */
#define JR_TOMBS_OID "tombs"
/* Parse one tombstone value (bytes from the store, not trusted): 0 and *t
 * filled, or JR_ECORRUPT (logged).  jr_tomb.c. */
int jr__tomb_parse(const char *id, const char *val, size_t len,
                   struct jr_tomb *t);
/* Write the tombstone of a primary about to be deleted, naming the peers
 * that acknowledged it; 0 also when it has none (nothing recorded). */
int jr__tomb_write(st_store *st, const char *vol_id, uint64_t epoch);
void jr__oid_header(char *buf, size_t n, const char *vol);
void jr__oid_data(char *buf, size_t n, const char *vol, uint64_t objno);
void jr__oid_journal(char *buf, size_t n, const char *vol, uint64_t jno);
/* the longest: vol/<id>/s/<snap id>/<16 hex> (R-62) */
#define JR_OID_MAX (JR_MAX_ID + JR_MAX_SNAP_ID + 40)

/* Object names collected by st_list (jr__names_list): the caller frees
 * them with jr__names_free (which leaves l empty for reuse). */
struct jr__names {
    char **v;
    size_t n, cap;
};
int jr__names_list(st_store *st, const char *prefix, struct jr__names *l);
void jr__names_free(struct jr__names *l);

/* ---- header state (FORMAT.md §2) ---- */

struct jr__jobj {
    uint64_t n;     /* journal object number */
    uint64_t first; /* first seq */
    uint64_t last;  /* closed: last seq */
    uint64_t bytes; /* closed: size */
    int closed;
};

struct jr__chunk {
    uint64_t c;    /* chunk number */
    uint8_t *bits; /* JR_DIRTY_CHUNK_BYTES */
};
#define JR_DIRTY_CHUNK_BITS 32768u
#define JR_DIRTY_CHUNK_BYTES (JR_DIRTY_CHUNK_BITS / 8)
#define JR_DIRTY_GRAIN (1u << 20)

struct jr__hdr {
    uint64_t size;
    uint32_t objsz;
    int role;
    uint64_t epoch;
    char region[JR_MAX_REGION + 1];
    int64_t created;
    uint64_t cap;
    uint64_t base;
    uint64_t applied;      /* persisted applied position */
    uint64_t applied_size; /* the size as of applied */
    uint64_t tail;
    int dirty;
    uint64_t dirty_gen;
    uint64_t grain;
    char *lease;    /* raw values for compare-and-set guards (NULL: absent) */
    char *tail_raw;
    char *gen_raw;
    char *fence;       /* "<gen> <token>" of the last writer */
    uint64_t fence_gen;
    char *applied_raw; /* guards "applied" against moving back */
    char *damage;      /* "<seq> <object> <offset> <why>" */
    int n_acks;
    uint64_t min_ack;
    uint64_t max_ack;
    struct jr__jobj *j; /* sorted by n */
    size_t nj;
    struct jr__chunk *ch; /* dirty chunks, sorted by c */
    size_t nch;
};
int jr__hdr_load(st_store *st, const char *vol, struct jr__hdr *h);
void jr__hdr_free(struct jr__hdr *h);
/* The last durable seq and its timestamp. */
int jr__head(st_store *st, const char *vol, const struct jr__hdr *h,
             uint64_t *head, int64_t *ts);
/* Decimal u64 ending at NUL or ' ': every value 0..2^64-1 parses back
 * (at least one digit, no sign, no overflow); -EINVAL otherwise. */
int jr__parse_u64(const char *s, uint64_t *v);

/* ---- writer lease and fencing (FORMAT.md R-36) ----
 * The lease value: "<token> 9999999999 <gen> <beat> <fence id> <owner>"
 * (the second field: what readers from before R-36 take for the expiry).  A holder
 * renews it (beat + 1) every jr__lease_renew_ms(); an observer judges it
 * expired only when it saw the value unchanged for jr__lease_ttl_ms() on
 * its own monotonic clock (never by comparing clocks of two machines).
 * Test hook: TANDEM_JR_LEASE_TTL_MS shortens the TTL (renewals follow). */
struct jr__lease {
    char token[33];
    uint64_t gen;
    uint64_t beat;
    char fid[256]; /* st_fence_id of the holder; "-": none */
    char owner[128];
    int legacy;    /* "<token> <expires> <owner>" from before R-36: no id */
};
#define JR_LEASE_COMPAT "9999999999"
int64_t jr__lease_ttl_ms(void);
int64_t jr__lease_renew_ms(void);
/* 0, or JR_ECORRUPT if val is neither form. */
int jr__lease_parse(const char *val, struct jr__lease *l);
/* Watch vol's lease, last seen as `seen`, for up to the TTL: JR_ELOCKED
 * when it changes (renewed or taken: the holder is alive), 0 when it
 * stayed the same the whole time (expired), -EAGAIN when it was released
 * meanwhile (look again), or a store error. */
int jr__lease_expired(st_store *st, const char *vol, const char *seen);
/* Before the lease `old` is taken over: fence its holder at the
 * store (st_fence of its published id, rados: blocklist), so nothing it
 * still sends lands after what the new holder writes.  A lease without an id (sqlite, whose writers guard
 * every update with the fence key instead; or legacy) needs nothing. */
int jr__lease_fence_old(st_store *st, const char *vol, const char *old);

/* A guard on the volume header for store updates: header key == val
 * (header updates: st_wop_omap_cmp; other objects: st_wop_fence_guard). */
struct jr__guard {
    const char *key;
    const char *val;
};
void jr__guard_add(st_wop *op, const char *vol, const char *oid,
                   const struct jr__guard *g);
/* Record applied = "<seq> <size>" (and "size" too when set_size) as a
 * compare-and-set on the value last seen (seen: raw, NULL if absent), so
 * it never moves back: when another update got there first it is
 * re-read, and the update is dropped if that one is at or past seq.  g
 * (may be NULL) guards the update.  Returns 0 (now holds, raw copied to
 * out when non-NULL, cap bytes), -ECANCELED when g failed, or a store
 * error. */
int jr__applied_set(st_store *st, const char *vol, const struct jr__guard *g,
                    const char *seen, uint64_t seq, uint64_t size,
                    int set_size, char *out, size_t cap);

/* ---- a writer's hold on the lease: jr_lease.c ----
 * An open writable volume holds one (jr_io.c) while it is open, and
 * jr_journal_discard for the length of the call.  Every store update of
 * the holder is guarded by fence_val (guard: header updates compare the
 * "fence" key, other objects use st_wop_fence_guard), so the holder can
 * change nothing once another writer took the lease over. */
struct jr__wlease {
    st_store *st;
    const char *vol;          /* the volume id (not copied: outlives w) */
    const char *hoid;         /* its header object (not copied either) */
    pthread_mutex_t mu;       /* lease value vs. header guards */
    char token[33];           /* ours; also the journal objects' "w" */
    char owner[128];          /* who holds it (no spaces), published */
    char fid[256];            /* st_fence_id: published with the lease */
    uint64_t gen;             /* our lease generation */
    uint64_t beat;            /* renewals so far */
    char val[512];            /* the lease value as last written */
    char fence_val[64];       /* "<gen> <token>": guards every update
                                 ("" until taken) */
    struct jr__guard guard;   /* {"fence", fence_val} */
    /* The renewing thread only (jr__wlease_check): */
    int64_t ok_ms;            /* mono ms at the start of the last good
                                 renewal (or the take) */
    int64_t try_ms;           /* mono ms of the last renewal attempt */
    int renew_failing;        /* the last renewal failed (not lost) */
};
/* Zero w and name what it is for; owner NULL or "": "-".  Takes nothing. */
void jr__wlease_init(struct jr__wlease *w, st_store *st, const char *vol,
                     const char *hoid, const char *owner);
void jr__wlease_destroy(struct jr__wlease *w);
/* Take the writer lease, reloading *h as needed.  A lease held by someone
 * else is taken over only with force, or once this process saw it
 * unchanged for a whole TTL; its holder is fenced at the store first.
 * 0, JR_ELOCKED (held, or held through this very store handle),
 * JR_ECORRUPT, or a store error; nothing is held on failure. */
int jr__wlease_take(struct jr__wlease *w, struct jr__hdr *h, int force);
/* Give the lease up if it is still ours (a no-op otherwise). */
void jr__wlease_release(struct jr__wlease *w);
/* With *held locked (unlocked during the store call): renew the lease
 * when due.  0: confirmed recent enough to apply under it; 1: applying
 * must wait (a renewal is failing); JR_ELOCKED: lost. */
int jr__wlease_check(struct jr__wlease *w, pthread_mutex_t *held);
/* Why did a guarded update of this holder fail (r)?  JR_EROLE (demoted)
 * or JR_ELOCKED (the lease is gone) for a failed guard or a fenced
 * client; any other r is returned as is. */
int jr__fence_reason(const struct jr__wlease *w, int r);
/* Take away a lease in the way of a delete once it stayed unchanged for
 * a TTL (its holder fenced): 0 (no lease any more), JR_ELOCKED while its
 * holder renews it, or a store error. */
int jr__lease_break(st_store *st, const char *vol);

/* ---- a group of asynchronous store operations, waited for together ----
 * jr__aio_submit issues one (st_aio_operate; the op is consumed either
 * way) and counts it; jr__aio_wait waits for every counted one and
 * returns the first failure (`ignore`, e.g. -ENOENT for removals, is not
 * one) or 0.  One thread submits and waits; callbacks may run on any
 * thread, including the submitter's (rados guard ops). */
struct jr__aio {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    int err;
    int ignore;
};
void jr__aio_init(struct jr__aio *g, int ignore);
/* 0 when submitted; a negative errno when st_aio_operate refused it (not
 * counted: the caller decides what to do instead). */
int jr__aio_submit(struct jr__aio *g, st_store *st, const char *oid,
                   st_wop *op);
int jr__aio_wait(struct jr__aio *g);

/* ---- journal objects ---- */
/* Where verification of the journal failed: the expected seq (the
 * entry there could not be trusted, so not its own seq field), journal
 * object number and byte offset, the failed check, and the timestamp of
 * the last good entry before it in that object (0: none). */
struct jr__bad {
    uint64_t seq;
    uint64_t jno;
    uint64_t off;
    int64_t prev_ts;
    char why[64];
};
int jr__jobj_load(st_store *st, const char *vol, uint64_t jno, uint8_t **buf,
                  size_t *len);
/* Called for each entry; raw/rawlen is the entry's encoded bytes.  A
 * non-zero return stops the iteration and is returned. */
typedef int (*jr__entry_cb)(const struct jr_entry *e, const uint8_t *raw,
                            size_t rawlen, void *arg);
/* Decode a journal object's bytes (R-10..R-19, R-21: the entries must be
 * first, first+1, ...); reports corruption with volume/object/offset. */
int jr__jobj_parse(const char *vol, uint64_t jno, const uint8_t *buf,
                   size_t len, uint64_t first, jr__entry_cb cb, void *arg);
/* Entries with from <= seq <= to from the kept journal, in order. */
int jr__journal_iter(st_store *st, const char *vol, const struct jr__hdr *h,
                     uint64_t from, uint64_t to, jr__entry_cb cb, void *arg);
/* The same, and on JR_ECORRUPT (a check failed, or cb returned it for an
 * entry) *bad says where (bad->seq 0: not an entry's fault). */
int jr__journal_iter_bad(st_store *st, const char *vol,
                         const struct jr__hdr *h, uint64_t from, uint64_t to,
                         jr__entry_cb cb, void *arg, struct jr__bad *bad);

/* ---- applying entries to the image ---- */
struct jr__op {
    uint8_t kind;
    uint64_t seq;  /* 0: not from the journal (a region copy): after every
                      snapshot */
    uint64_t off; /* resize: new size */
    uint64_t len; /* snapshot kinds: payload bytes at data */
    const uint8_t *data; /* write: len bytes; snapshot kinds: the payload
                            (borrowed) */
    int64_t ts_ns; /* snapshot kinds: the entry's timestamp */
};
/* Apply ops in order (coalesced per data object, R-30..R-33); *size is the
 * image size before the first op and is updated through resizes. */
int jr__image_apply(st_store *st, const char *vol, uint32_t objsz,
                    const struct jr__op *ops, size_t n, uint64_t *size);
/* The same with every store update guarded by g (a writer's fence, R-36):
 * -ECANCELED once g fails (sqlite; on rados the blocklist stops a fenced
 * writer instead). */
int jr__image_apply_g(st_store *st, const char *vol, uint32_t objsz,
                      const struct jr__op *ops, size_t n, uint64_t *size,
                      const struct jr__guard *g);

/* ---- snapshots (FORMAT.md §5): jr_snap.c ----
 * Copy-on-write state of one image updater.  A writer keeps one for the
 * life of its open volume (the set of objects already preserved for the
 * newest snapshot is then cached: no store operation per write after an
 * object's first); a stateless caller passes NULL to jr__image_apply_cow
 * and one lives for that call (it loads the snapshot list and stats). */
struct jr__snapent {
    char id[JR_MAX_SNAP_ID + 1];
    uint64_t seq;
};
struct jr__cow {
    int loaded;               /* snaps[] read from the header */
    struct jr__snapent *snaps; /* live snapshots, by seq */
    size_t ns;
    /* Objects known to hold a preserved copy for snaps[cache_for]: */
    char cache_id[JR_MAX_SNAP_ID + 1]; /* "" : cache empty */
    uint64_t *set;            /* open addressing, objno + 1, 0 = free */
    size_t set_cap, set_n;
    uint64_t copies;          /* objects copied up (tests, benches) */
};
void jr__cow_reset(struct jr__cow *c);  /* forget everything (free) */
/* Before ops change data object objno (an effect at position at; 0 means
 * after everything): preserve it for the newest snapshot before `at`
 * unless it is preserved already.  creates: the change may create
 * a missing object (a write), so a missing one is preserved as a hole;
 * otherwise a missing object is left alone (nothing changes it).  g
 * guards the copy (a writer's fence). */
int jr__cow_preserve(st_store *st, const char *vol, uint32_t objsz,
                     struct jr__cow *c, uint64_t at, uint64_t objno,
                     int creates, const struct jr__guard *g);
/* The same for n objects at once (copies made concurrently, all before
 * it returns); creates[i] as above. */
int jr__cow_preserve_many(st_store *st, const char *vol, uint32_t objsz,
                          struct jr__cow *c, uint64_t at,
                          const uint64_t *objnos, const int *creates, size_t n,
                          const struct jr__guard *g);
/* Apply a snapshot entry (kind 5 or 6) at its position, the image being
 * at `size` with every entry before it applied. */
int jr__snap_apply(st_store *st, const char *vol, uint32_t objsz,
                   struct jr__cow *c, const struct jr__op *op, uint64_t size,
                   const struct jr__guard *g);
/* Validate snapshot ids / labels. */
int jr__valid_snap_id(const char *id, size_t len);
int jr__valid_snap_label(const char *s, size_t len);
/* Build a snapshot entry payload: "<id>" or "<id> <label>"; returns its
 * length (<= JR_SNAP_PAYLOAD_MAX) or -EINVAL. */
int jr__snap_payload(const char *id, const char *label, uint8_t *out);
/* The same apply with an explicit copy-on-write state (NULL: stateless). */
int jr__image_apply_cow(st_store *st, const char *vol, uint32_t objsz,
                        const struct jr__op *ops, size_t n, uint64_t *size,
                        const struct jr__guard *g, struct jr__cow *cow);
/* The writer's side (jr_io.c): journal a snapshot delete on an open
 * writable volume and wait until it is applied (0 also when the snapshot
 * does not exist). */
int jr__vol_snap_delete(jr_volume *v, const char *snap_id);
/* Serve the snapreq.* requests in the header through v; called by
 * the writer's request poller every jr__snapreq_poll_ms(). */
int jr__snapreq_serve(jr_volume *v, st_store *st, const char *vol,
                      const struct jr__guard *g);
int jr__snapreq_poll_ms(void);
void jr__oid_snapobj(char *buf, size_t n, const char *vol, const char *snap,
                     uint64_t objno);

/* Read image bytes (no journal): missing objects read as zeros. */
int jr__image_read(st_store *st, const char *vol, uint32_t objsz,
                   uint64_t off, void *buf, size_t len);

/* A list of ops owning their data, filled from decoded entries. */
struct jr__opbuf {
    struct jr__op *ops;
    size_t n, cap;
    uint64_t bytes;
};
int jr__opbuf_add(struct jr__opbuf *b, const struct jr_entry *e);
void jr__opbuf_reset(struct jr__opbuf *b);
/* Check R-34 for e given the size at its position; update *size. */
int jr__check_range(const struct jr_entry *e, uint64_t *size);

/* Replay (applied, head] onto the image and record applied; updates h. */
int jr__replay(st_store *st, const char *vol, struct jr__hdr *h,
               uint64_t head, uint64_t *size_out);
/* The same, guarded by g (may be NULL).  A damaged entry: the
 * valid entries before it are applied and recorded, *bad says where, the
 * header's "damage" key is set, and JR_ECORRUPT is returned. */
int jr__replay_g(st_store *st, const char *vol, struct jr__hdr *h,
                 uint64_t head, const struct jr__guard *g,
                 struct jr__bad *bad, uint64_t *size_out);
/* The journal ends before head (its last object is short or missing):
 * *bad = the first missing entry, at the end of the last object. */
void jr__bad_missing(st_store *st, const char *vol, const struct jr__hdr *h,
                     uint64_t seq, struct jr__bad *bad);
/* Verify (applied, head] as replay would (R-10..R-21, R-34, R-20): 0
 * (bad->seq = 0), or JR_ECORRUPT with *bad filled.  jr_damage.c. */
int jr__journal_verify(st_store *st, const char *vol, const struct jr__hdr *h,
                       uint64_t head, struct jr__bad *bad);
/* Trim (FORMAT.md R-8).  Used by jr_trim and by the writer. */
int jr__trim(st_store *st, const char *vol);

static inline void jr__put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void jr__put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void jr__put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint16_t jr__get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t jr__get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t jr__get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tandem's on-store format is little-endian; add byte swapping here"
#endif

/* ---- consistency groups (jr_group.c, FORMAT.md §6) ----
 * The writer's side of a consistency point, served by a thread of each
 * open writable grouped volume (jr_io.c starts it): jr__cp_serve polls
 * the group object and calls back into jr_io.c through these. */
/* Close the write gate (writes not yet sequenced wait) and sequence a
 * group entry (kind 7, member index) after every write sequenced so far;
 * *seq its position.  It is not durable yet: jr__cp_durable waits for
 * that.  The gate stays closed on success until jr__cp_open. */
int jr__cp_mark(jr_volume *v, uint32_t member, const uint8_t *pl, size_t plen,
                uint64_t *seq);
int jr__cp_durable(jr_volume *v, uint64_t seq);
/* Open the gate again. */
void jr__cp_open(jr_volume *v);
/* Journal a group entry without touching the gate (the commit). */
int jr__cp_entry(jr_volume *v, uint32_t member, const uint8_t *pl,
                 size_t plen);
/* 1 once the volume is closing or failed (the server stops). */
int jr__cp_stopping(jr_volume *v);
/* The server loop (jr_group.c): returns when jr__cp_stopping. */
void jr__cp_serve(jr_volume *v, st_store *st, const char *vol,
                  const char *group, uint32_t member, int poll_ms);
/* The server's poll period between points: TANDEM_JR_CP_POLL_MS (5). */
int jr__cp_poll_ms(void);
/* jr_open of a grouped volume: wait (bounded) while a consistency point
 * that did not count this volume as a participant is in progress, so
 * that none of its writes falls inside that point (FORMAT.md R-72). */
void jr__cp_open_wait(st_store *st, const char *group, uint32_t member);
/* Validate a group entry's payload. */
int jr__group_payload_ok(const uint8_t *pl, size_t plen);

#endif /* TANDEM_JR_INT_H */
