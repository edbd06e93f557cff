/*
 * jr.h: volume images and their change journal, on the object store.
 *
 * This is the contract the CSI node plugin (writer), the replicator
 * (reader on the primary, applier on the secondary) and tandemctl
 * (roles, positions) build on.  The on-store format is specified in
 * journal/FORMAT.md; requirement ids (R-x.y) are cited in the code.
 *
 * A volume (id: 1..JR_MAX_ID bytes of [A-Za-z0-9._-], region-independent:
 * the same id names a volume and its replica in another region) is:
 *  - a header object holding, in its omap: size, object size, role,
 *    epoch, region, creation time, positions, per-peer acknowledged
 *    positions, and free-form metadata (CSI: PVC name/namespace,
 *    StorageClass parameters) under "meta." keys;
 *  - data objects striping the image (sparse: a missing object reads as
 *    zeros);
 *  - journal objects holding entries with gap-free sequence numbers
 *    starting at 1.  Positions: head (last durable entry), applied (last
 *    entry applied to the image), acked[peer] (last entry a peer applied).
 *
 * Writes (jr_write/jr_discard/jr_resize) are journaled first and are
 * durable when they return (group commit: concurrent writers share one
 * store append).  Reads see every acknowledged write.  jr_open replays the
 * entries after applied, so a crash between journal and image loses no
 * acknowledged write.
 *
 * Errors: 0 or a negative errno, or one of the JR_E* codes below (all
 * negative, in a reserved range); jr_strerror() names both.
 *
 * Threads: a jr_volume may be used by many threads at once.  Functions
 * taking (st, vol_id) work on the store directly and may be called from
 * any process (e.g. the replicator while the node plugin has the volume
 * open for writing).  Only one process opens a volume writable at a time
 * (a lease in the header; JR_ELOCKED otherwise).
 *
 * Writer lease and fencing (FORMAT.md R-36).  The holder renews the lease
 * every 2 s (its applier thread).  Another process judges it expired only
 * after watching it unchanged for 30 s on its own monotonic clock (no two
 * machines' clocks are ever compared), and then, or at once with
 * JR_OPEN_FORCE, takes it over: it bumps the lease generation and fences
 * the old holder at the store before it writes anything (rados: the old
 * holder's client is blocklisted, as Ceph's exclusive lock does; sqlite:
 * every journal, header and image update of a writer is guarded by its
 * generation in the same transaction).  The old holder's writes then fail
 * (JR_ELOCKED: never acknowledged), its applier stops without applying
 * anything more, and its durable entries, acknowledged before the
 * takeover, are replayed by the new holder before its own writes.  A
 * holder whose renewals fail stops applying at once and gives the volume
 * up (JR_ELOCKED) after 15 s without a good renewal.
 *
 * Objects: header "vol/<id>", data "vol/<id>/d/<16 hex>", journal
 * "vol/<id>/j/<16 hex>" (FORMAT.md §1), so a store can hold many volumes
 * and other users' objects (anything not under "vol/").
 *
 * Costs: a write is one store operation on the journal object shared with
 * the writes committing with it (group commit); the image is written in
 * the background by an applier thread, one operation per data object per
 * batch.  Reads cost one store read per data object touched.  An open
 * volume holds at most 64 MiB / 16384 entries not yet applied; writers
 * wait beyond that.  Lease renewals cost one header update every 2 s per
 * writable volume.
 */
#ifndef TANDEM_JR_H
#define TANDEM_JR_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define JR_MAX_ID 128
#define JR_MAX_REGION 63
#define JR_DEFAULT_OBJECT_SIZE (4u << 20)

/* Module error codes (negative, below every errno). */
#define JR_ECORRUPT (-30500)  /* entry fails a FORMAT.md check; not applied */
#define JR_EGAP (-30501)      /* sequence gap: an entry is missing */
#define JR_ESTALE (-30502)    /* epoch older than the volume's (fenced) */
#define JR_EROLE (-30503)     /* not allowed in this role (e.g. write to a
                                 secondary, apply to a primary) */
#define JR_ELOCKED (-30504)   /* open for writing by another process */
#define JR_ETRIMMED (-30505)  /* entries asked for were trimmed (the volume
                                 fell back to dirty-region tracking) */
#define JR_EVERSION (-30506)  /* unknown format version */
#define JR_EDIVERGED (-30507) /* jr_apply: an entry the replica already has
                                 differs from the one offered (the replica
                                 wrote on its own: resync it) */
const char *jr_strerror(int err);

enum jr_role { JR_ROLE_PRIMARY = 1, JR_ROLE_SECONDARY = 2 };
const char *jr_role_name(int role); /* "primary" / "secondary" */

struct jr_kv {
    const char *key;
    const char *value;
};

struct jr_create_opts {
    uint64_t size;          /* bytes, > 0 */
    uint32_t object_size;   /* power of two, 64 KiB..64 MiB (0: 4 MiB) */
    int role;               /* JR_ROLE_* (0: primary) */
    uint64_t epoch;         /* 0: 1 */
    const char *region;     /* region this copy lives in */
    const struct jr_kv *meta; /* metadata, copied under "meta." keys */
    size_t n_meta;
    uint64_t journal_cap;   /* bytes of journal kept for peers before
                               falling back to dirty regions (0: 1 GiB) */
    uint64_t start_seq;     /* secondary created by replication: the
                               position it starts at (0: empty journal) */
};
/* Create a volume.  -EEXIST if vol_id exists (nothing changed), JR_EVERSION
 * never; -EINVAL on bad options. */
int jr_volume_create(st_store *st, const char *vol_id,
                     const struct jr_create_opts *o);
/* Remove every object of the volume.  -ENOENT if it does not exist;
 * JR_ELOCKED if open for writing elsewhere.  A writer lease found in the
 * header is watched first: up to ~2 s to see a live holder renew
 * it (JR_ELOCKED), up to 30 s to call it expired, whose holder is then
 * fenced before anything is removed.  A primary with peers (it
 * keeps journal for a replica: an acknowledged position per peer) leaves
 * a tombstone first, so the replicas can be deleted too. */
int jr_volume_delete(st_store *st, const char *vol_id);

/* Tombstones of deleted primaries, for the replicator: it asks
 * each peer to delete its replica, then removes the tombstone.  A volume
 * created again under the same id is not replicated while its tombstone
 * is pending (the old replica goes first). */
#define JR_TOMB_MAX_PEERS 4
struct jr_tomb {
    char vol_id[JR_MAX_ID + 1];
    uint64_t epoch;               /* the deleted primary's epoch */
    int64_t deleted_at;           /* unix seconds */
    int n_peers;
    char peers[JR_TOMB_MAX_PEERS][JR_MAX_REGION + 1];
};
/* Visit every tombstone (cb != 0 stops and is returned).  Unreadable
 * ones are skipped with a log line (never a reason to delete anything). */
int jr_tomb_list(st_store *st, int (*cb)(const struct jr_tomb *t, void *arg),
                 void *arg);
/* 0 and *t filled, or -ENOENT. */
int jr_tomb_get(st_store *st, const char *vol_id, struct jr_tomb *t);
/* 0, or -ENOENT if there is none. */
int jr_tomb_remove(st_store *st, const char *vol_id);
/* Visit every volume id in the store's directory, in id order (cb
 * != 0 stops and is returned).  Cost: the number of volumes, not of
 * objects.  An id whose create or delete was interrupted by a crash may
 * be listed without a volume (jr_volume_stat: -ENOENT; jr_volume_delete
 * then removes it from the directory). */
int jr_volume_list(st_store *st, int (*cb)(const char *vol_id, void *arg),
                   void *arg);

struct jr_info {
    char vol_id[JR_MAX_ID + 1];
    uint64_t size;
    uint32_t object_size;
    int role;
    uint64_t epoch;
    char region[JR_MAX_REGION + 1];
    int64_t created_s;        /* unix seconds */
    uint64_t head;            /* last durable journal entry (0: none) */
    uint64_t applied;         /* last entry applied to the image (as
                                 recorded: lags an open writer by up to
                                 ~1 s; never ahead of the image) */
    uint64_t tail;            /* oldest entry still kept (head+1: none) */
    uint64_t journal_bytes;   /* bytes of journal objects kept */
    int dirty_tracking;       /* 1: cap reached, regions tracked instead */
    int64_t head_ts_ns;       /* timestamp of the head entry (0: none) */
    /* A damaged journal, as the last writable open's replay found
     * it (jr_get_info: also what a read-only open met): the first entry
     * that failed verification (0: none known), its journal object number
     * and byte offset.  jr_journal_check looks again. */
    uint64_t damaged_seq;
    uint64_t damaged_object;
    uint64_t damaged_offset;
};
/* Read the header from the store (no open needed).  -ENOENT if absent. */
int jr_volume_stat(st_store *st, const char *vol_id, struct jr_info *out);

/* Metadata ("meta." omap keys).  *val is malloc'd; -ENOENT if absent. */
int jr_meta_get(st_store *st, const char *vol_id, const char *key,
                char **val);
int jr_meta_set(st_store *st, const char *vol_id, const char *key,
                const char *val);
int jr_meta_iter(st_store *st, const char *vol_id,
                 int (*cb)(const char *key, const char *val, void *arg),
                 void *arg);
/* Remove one key: 0 whether or not it was there; -ENOENT if the volume
 * does not exist. */
int jr_meta_rm(st_store *st, const char *vol_id, const char *key);

/* Roles and epochs (fencing).  Sets role and epoch atomically (a
 * compare-and-set on the header): JR_ESTALE if epoch < the current epoch,
 * so a stale actor can never demote or promote over a newer decision.
 * Setting the same role and epoch again is a no-op (idempotent). */
int jr_role_set(st_store *st, const char *vol_id, int role, uint64_t epoch);

/* Per-peer acknowledged positions (peer = region name, no spaces).
 * Monotonic: a smaller seq than the recorded one is ignored (returns 0).
 * Setting an ack registers the peer: while no peer is registered the
 * journal is kept (up to the cap, then dirty regions) for the first one. */
int jr_peer_ack_get(st_store *st, const char *vol_id, const char *peer,
                    uint64_t *seq);
int jr_peer_ack_set(st_store *st, const char *vol_id, const char *peer,
                    uint64_t seq);
/* Remove journal objects wholly below min(applied, every peer's ack). */
int jr_trim(st_store *st, const char *vol_id);
/* Replication turned off on a live primary (csi-addons
 * DisableVolumeReplication): record a tombstone naming every peer
 * with an ack, so each peer region's replicator deletes its replica as it
 * does for a deleted primary, then forget those acks (the journal is no
 * longer kept for them).  A sender still running may set an ack again:
 * call it once the volume's replication metadata says "none" (the
 * replicator then stops shipping it), and again if an ack reappears.
 * 0 (also when there was no peer), -ENOENT, JR_EROLE (not a primary: a
 * replica's peer is not this region's to release), or the store's error. */
int jr_peers_release(st_store *st, const char *vol_id);

/* ---- open volume (the data path) ---- */
typedef struct jr_volume jr_volume;

enum {
    JR_OPEN_WRITE = 1,   /* writable (takes the writer lease); a secondary
                            cannot be opened writable: JR_EROLE */
    JR_OPEN_FORCE = 2,   /* take the lease even if another holder's lease
                            has not expired (after a crash of that holder);
                            the holder is fenced either way */
};
/* Open; with JR_OPEN_WRITE replays entries after applied first.  owner
 * names the lease holder (e.g. "node-1/pid"), may be NULL when read-only.
 * Errors: -ENOENT, JR_EROLE (writable open of a secondary), JR_ELOCKED
 * (lease held: a holder seen renewing it within ~2 s, or one using this
 * same store handle, which cannot be fenced; without JR_OPEN_FORCE a
 * lease that stays unchanged is watched for up to 30 s before it counts
 * as expired; taking it over fences the old holder: its next write, read
 * and close fail with JR_ELOCKED, and nothing it had not applied reaches
 * the image), a store error from fencing (rados: blocklisting needs the
 * mon capability, `profile rbd`), JR_ECORRUPT (replay met a damaged entry,
 * the entries before it were applied and recorded, the damage is
 * logged and recorded for jr_volume_stat (damaged_*); the volume stays
 * readable read-only and opens writable again after jr_journal_discard).
 * Read-only: reads see the image plus the journal entries not yet applied
 * as of the open (a snapshot: later writes by another process are not
 * seen; reopen to refresh), up to a damaged entry (jr_get_info reports
 * it).  st must outlive the volume. */
int jr_open(st_store *st, const char *vol_id, int flags, const char *owner,
            jr_volume **out);
/* Wait for writes in progress, apply everything durable, record applied,
 * release the lease, free.  Returns the volume's sticky error (see
 * jr_volume_error), 0 normally.  NULL: no-op.  No other call on v may
 * run concurrently or after. */
int jr_close(jr_volume *v);
/* Reads and writes must lie within the current size (-EINVAL otherwise);
 * len 0 is a no-op.  jr_write/jr_discard/jr_flush/jr_resize return once
 * the entry is durable in the journal (the buffer is copied, the caller may
 * reuse it at once); -EROFS on a read-only volume.  Writes larger than
 * 1 MiB become several consecutive entries (a crash may keep a prefix of
 * them: block devices do not promise atomic large writes either).  After a
 * failed journal append the volume refuses further writes (sticky error);
 * reads go on working, except after the lease was lost (JR_ELOCKED: the
 * volume is another writer's). */
int jr_read(jr_volume *v, uint64_t off, void *buf, size_t len);
int jr_write(jr_volume *v, uint64_t off, const void *buf, size_t len);
int jr_discard(jr_volume *v, uint64_t off, uint64_t len);
/* A flush barrier: every write acknowledged before is durable (they
 * already are) and a barrier entry marks the point in the journal. */
int jr_flush(jr_volume *v);
int jr_resize(jr_volume *v, uint64_t new_size);
int jr_get_info(jr_volume *v, struct jr_info *out);

/* ---- replicator: reading the primary's journal ---- */
struct jr_batch {
    uint64_t first_seq;  /* seq of the first entry (0 if empty) */
    uint64_t last_seq;   /* seq of the last entry */
    uint32_t n_entries;
    uint8_t *data;       /* the entries, encoded exactly as in FORMAT.md:
                            this is also the wire format (malloc'd) */
    size_t len;
    uint64_t raw_bytes;  /* uncompressed payload bytes they carry */
    int64_t oldest_ts_ns;/* timestamp of the first entry */
};
/* Read entries with seq >= from_seq (0 means 1), up to about max_bytes
 * (at least one entry if any).  n_entries==0: nothing new.  JR_ETRIMMED:
 * from_seq is below the oldest kept entry.  JR_ECORRUPT: logged with
 * volume, object and offset; nothing past it is returned (the entries
 * before it are returned first, the next call then fails at it).  Free
 * the batch with jr_batch_free (also after an error: it is zeroed). */
int jr_tail_read(st_store *st, const char *vol_id, uint64_t from_seq,
                 size_t max_bytes, struct jr_batch *out);
void jr_batch_free(struct jr_batch *b);
/* Verify a batch received from a peer without applying it: every entry
 * decodes (FORMAT.md R-10..R-20) and seqs are consecutive.
 * Returns 0, JR_ECORRUPT, JR_EVERSION or JR_EGAP; the out-pointers may be
 * NULL (first/last are 0 for an empty batch). */
int jr_batch_verify(const void *data, size_t len, uint64_t *first,
                    uint64_t *last, uint32_t *n_entries);

/* ---- replicator: applying on the secondary ----
 * Decode and verify every entry (CRC, lengths, kind, version) before
 * applying any; skip entries <= applied (already applied: idempotent);
 * JR_EGAP if the first new entry is not applied+1; JR_EROLE if the volume
 * is primary; JR_ESTALE if an entry past `history_seq` has an epoch below
 * the volume's (R-22; entries up to history_seq are history written before
 * the primary's last promotion and may carry older epochs: the replicator
 * passes the primary's promoted-at position, a fresh replica of a
 * promoted volume receives them).  Applies in order and records applied (and head) durably; *applied_out
 * is the new applied position.  The new entries are first appended to the
 * secondary's own journal (so a crash half way through is replayed by the
 * next jr_apply, and the replica can be promoted with its journal), then
 * applied to the image coalesced; a large batch is pipelined in chunks
 * (a thread of the call's own appends chunk k+1 to the journal while
 * chunk k, journaled, is written to the image), and applied is recorded
 * once per call.  Entries the replica already has must be
 * identical to its own (checked against its journal while kept):
 * JR_EDIVERGED otherwise, nothing applied.  Concurrent jr_apply calls on one volume
 * are safe (serialised by a guard on the journal) but pointless.  Resize
 * entries also set the replica's size. */
int jr_apply(st_store *st, const char *vol_id, const void *data, size_t len,
             uint64_t *applied_out);
/* The same with history_seq: entries at or below it are exempt from the
 * epoch check (jr_apply is jr_apply_history with 0). */
int jr_apply_history(st_store *st, const char *vol_id, const void *data,
                     size_t len, uint64_t history_seq, uint64_t *applied_out);

/* ---- dirty regions (journal cap fallback and resync) ---- */
/* Visit the dirty regions (byte ranges, merged, in offset order). */
int jr_dirty_iter(st_store *st, const char *vol_id,
                  int (*cb)(uint64_t off, uint64_t len, void *arg),
                  void *arg);
/* The journal is resumed at seq: entries from seq on are kept again and
 * the dirty map is cleared (the caller copied the regions).  JR_ETRIMMED
 * if entries >= resume_seq are no longer all kept.
 * BUG: a trim between the caller's jr_dirty_iter and this call may add
 * regions that this call then clears; use the _gen variants below. */
int jr_dirty_clear(st_store *st, const char *vol_id, uint64_t resume_seq);
/* As jr_dirty_iter, and *gen receives the dirty map's generation. */
int jr_dirty_iter_gen(st_store *st, const char *vol_id, uint64_t *gen,
                      int (*cb)(uint64_t off, uint64_t len, void *arg),
                      void *arg);
/* As jr_dirty_clear, only if the map is still at generation gen (nothing
 * was added since the jr_dirty_iter_gen that returned it): -EAGAIN
 * otherwise.  The catch-up protocol for a peer after the cap was reached
 * (jr_tail_read said JR_ETRIMMED):
 *   1. jr_volume_stat -> T = tail (entries >= T are all still kept);
 *   2. jr_dirty_iter_gen -> regions R (what trimmed entries touched) and
 *      generation G;
 *   3. copy R from the primary image (jr_image_read) to the secondary
 *      (jr_image_write);
 *   4. jr_dirty_clear_gen(T, G): -EAGAIN or JR_ETRIMMED (a trim ran in
 *      the meantime): back to 1 (the map still has everything);
 *   5. jr_replica_rebase(secondary, T - 1, primary size);
 *   6. ship entries from T on with jr_tail_read / jr_apply: they rewrite,
 *      in order, whatever newer bytes step 3 copied.
 * The secondary is not crash-consistent from 3 until 6 reached the
 * primary's head as of 3 (DESIGN.md: the copy is not write-ordered).
 * A trim can also drop entries a peer has applied but not acknowledged
 * yet (the ack is recorded after the peer's answer): a peer whose applied
 * position is >= T - 1 lacks nothing the map names, and the map is
 * cleared without a copy (steps 2 and 4 only). */
int jr_dirty_clear_gen(st_store *st, const char *vol_id, uint64_t resume_seq,
                       uint64_t gen);
/* Visit the byte ranges touched by entries in [from_seq, to_seq] that are
 * still in the journal (resync: what diverged since a common position). */
int jr_journal_regions(st_store *st, const char *vol_id, uint64_t from_seq,
                       uint64_t to_seq,
                       int (*cb)(uint64_t off, uint64_t len, void *arg),
                       void *arg);
/* The same for the entries of a batch (jr_tail_read's bytes, verified
 * again here): a resize touches everything from its new size on, since
 * the size before it is not in the batch.  JR_ECORRUPT on bytes that are
 * not whole, valid entries; cb != 0 stops and is returned. */
int jr_batch_regions(const void *data, size_t len,
                     int (*cb)(uint64_t off, uint64_t len, void *arg),
                     void *arg);
/* Direct image access for region copies (bypasses the journal; the caller
 * knows the volume is not being written, or re-applies entries after). */
int jr_image_read(st_store *st, const char *vol_id, uint64_t off, void *buf,
                  size_t len);
int jr_image_write(st_store *st, const char *vol_id, uint64_t off,
                   const void *buf, size_t len);
/* Set a secondary's size directly (region copy); JR_EROLE on a primary. */
int jr_image_resize(st_store *st, const char *vol_id, uint64_t new_size);
/* After a region copy (or a rollback to a copy's base): the secondary's
 * image now stands for the primary's position seq (with the given size),
 * so jr_apply continues at seq + 1.  Drops the secondary's own journal
 * and any dirty map; JR_EROLE on a primary (checked atomically with
 * the change).  The caller keeps writers away meanwhile. */
int jr_replica_rebase(st_store *st, const char *vol_id, uint64_t seq,
                      uint64_t size);

/* ---- replicator: the stores of a region copy (FORMAT.md §4) ----
 * The copy window (secondary side).  A region copy is not write-ordered:
 * from its first region until the secondary applied the primary's head
 * as of the copy's end, its image is no state the primary ever had.  The
 * window keeps the last consistent one recoverable: before a region or an
 * entry overwrites image bytes, jr_copywin_save keeps their old bytes
 * (whole blocks of JR_COPYWIN_BLOCK, once per window), and
 * jr_copywin_rollback writes them back and rebases the replica at the
 * window's base.  The caller keeps writers away meanwhile (the replicator
 * holds its volume lock).  A window outlives the volume's deletion until
 * jr_copywin_drop. */
#define JR_COPY_ID_MAX 64
#define JR_COPYWIN_BLOCK (256u << 10)
struct jr_copywin {
    char copy_id[JR_COPY_ID_MAX + 1]; /* the copy session that opened it */
    uint64_t base;    /* applied before the copy: the rollback target */
    uint64_t until;   /* consistent again once applied >= until (0: the
                         copy has not finished) */
};
/* 0 and *w filled; -ENOENT when no window is open (*w zeroed). */
int jr_copywin_get(st_store *st, const char *vol_id, struct jr_copywin *w);
/* Open a window for copy_id at position base or, if one is open (a copy
 * that starts again), keep its base and saved blocks, forget its `until`
 * and name it copy_id.  *restarted (may be NULL) says which. */
int jr_copywin_begin(st_store *st, const char *vol_id, const char *copy_id,
                     uint64_t base, int *restarted);
/* The copy is done: the window may close once applied >= until.
 * -ENOENT if no window is open. */
int jr_copywin_finish(st_store *st, const char *vol_id, uint64_t until);
/* Keep the current bytes of [off, off + len) (clipped to the image) in
 * the window unless kept already. */
int jr_copywin_save(st_store *st, const char *vol_id, uint64_t off,
                    uint64_t len);
/* Close the window and free its blocks (0 also if none was open or the
 * volume is gone). */
int jr_copywin_drop(st_store *st, const char *vol_id);
/* Roll an open window back: write the kept bytes back, rebase the replica
 * at the base (jr_replica_rebase at its current size), close the window.
 * 1 rolled back (*base, *blocks: where to, how many blocks; may be NULL),
 * 0 no window, JR_EROLE on a primary, or an error (the window stays). */
int jr_copywin_rollback(st_store *st, const char *vol_id, uint64_t *base,
                        size_t *blocks);
/* Read image bytes as a rollback would leave them (the kept blocks over
 * the image): what a checker compares with the base position. */
int jr_copywin_read(st_store *st, const char *vol_id, uint64_t off,
                    void *buf, size_t len);

/* The copy list (primary side): the regions of an unfinished copy and
 * the position shipping resumes at after it, kept because the dirty map
 * is cleared when a copy starts (jr_dirty_clear_gen): a copy that fails
 * must not forget them. */
struct jr_range {
    uint64_t off, len;
};
/* Call cb for each saved region, in saved order (cb != 0 stops and is
 * returned); *resume is 0 when no list is kept.  JR_ECORRUPT on a list
 * that does not parse. */
int jr_copylist_load(st_store *st, const char *vol_id, uint64_t *resume,
                     int (*cb)(uint64_t off, uint64_t len, void *arg),
                     void *arg);
/* Replace the list (resume >= 1). */
int jr_copylist_save(st_store *st, const char *vol_id, uint64_t resume,
                     const struct jr_range *r, size_t n);
/* Forget it (0 also if there is none). */
int jr_copylist_drop(st_store *st, const char *vol_id);

/* ---- snapshots (FORMAT.md §5) ----
 * A snapshot is a point in the volume's write order: a journal entry
 * (kind 5, "snapshot") at position seq.  It holds the effect of every
 * entry before it and of none after it: crash-consistent at one journal
 * position, whatever the writer is doing.  Taking one costs one journal
 * entry and one header key, never a copy of data: before an entry past
 * the newest snapshot first changes a data object, the object as it was
 * is preserved for that snapshot (copy-on-write, one object per object
 * changed; the writer's applier does it in the background, not the
 * acknowledged write path).  Deleting a snapshot is a journal entry too
 * (kind 6): its preserved objects move to the snapshot before it where
 * that one still needs them.  Both entries replicate with the journal:
 * jr_apply on a replica takes and deletes the same snapshots at the same
 * positions, so after a failover the replica lists them and reads them.
 *
 * Snapshot ids: 1..JR_MAX_SNAP_ID bytes of [A-Za-z0-9_-] (no '.': the
 * id is part of header keys), unique within a volume.
 *
 * Who appends the entry: the writer holding the lease.  jr_snapshot does
 * it on an open volume.  jr_snap_create/jr_snap_delete work from any
 * process: when no live writer holds the lease they open the volume
 * writable for the call; when one does, they leave a request in the
 * header (snapreq.<snap_id>) that the writer's applier takes up within
 * its poll interval (JR_SNAPREQ_POLL_MS), and wait for it.
 *
 * (Implementation notes, where the contract above was silent:)
 * - A snapshot becomes visible (get/list/read) once its entry is applied
 *   to the image, not merely durable: jr_snapshot returns then, so a
 *   snapshot it returned is readable at once and complete.
 * - The requests are served by a thread of the writer (one per writable
 *   volume) that reads snapreq.* every JR_SNAPREQ_POLL_MS (test hook:
 *   TANDEM_JR_SNAPREQ_POLL_MS): one header read per interval per writable
 *   volume.  A lease whose holder died is still "a live holder" until a
 *   new writer takes it over: a request then times out
 *   (-ETIMEDOUT) and is served by the next writer.
 * - Holds are per region: they are not replicated.
 * - Deleting the volume (jr_volume_delete) deletes its snapshots.
 * - A replica brought current by a region copy (dirty regions, R-8) lacks
 *   the snapshots whose entries were trimmed before they were shipped.
 */
#define JR_MAX_SNAP_ID 64
#define JR_MAX_SNAP_LABEL 512
#define JR_SNAPREQ_POLL_MS 200
struct jr_snap {
    char snap_id[JR_MAX_SNAP_ID + 1];
    /* Free text the caller attached at creation (the CSI layer: the
     * VolumeSnapshot's namespace and name), carried in the journal entry
     * so replicas have it too: printable ASCII, at most JR_MAX_SNAP_LABEL
     * bytes ("" when none). */
    char label[JR_MAX_SNAP_LABEL + 1];
    uint64_t seq;     /* the journal position it stands for */
    uint64_t size;    /* image size at seq */
    int64_t ts_ns;    /* the writer's clock when it was taken (the
                         entry's timestamp), ns since the unix epoch */
};
/* On a volume opened writable: journal a snapshot after every write
 * acknowledged so far and return once it is durable; writes started
 * after it returns are not in it.  label: NULL or "" for none.
 * Idempotent: an existing snap_id is returned as it is (0, its label
 * unchanged).  -EROFS read-only; -EINVAL bad id or label; the volume's
 * sticky error. */
int jr_snapshot(jr_volume *v, const char *snap_id, const char *label,
                struct jr_snap *out);
/* The same on a volume by id, from any process (see above).  Waits up to
 * timeout_ms for a writer that holds the lease to take it.  Errors:
 * -ENOENT (no volume), JR_EROLE (a secondary: replicas take snapshots
 * only from their journal), -EINVAL, -ETIMEDOUT (the writer did not take
 * it in time: the request stays and a repeat returns the snapshot once
 * taken), JR_ECORRUPT (a damaged journal, R-37), store errors. */
int jr_snap_create(st_store *st, const char *vol_id, const char *snap_id,
                   const char *label, int timeout_ms, struct jr_snap *out);
/* Delete a snapshot (journaled as above): 0 also when it does not exist;
 * -EBUSY while it has holds (jr_snap_hold); JR_EROLE on a secondary;
 * -ENOENT no volume; -ETIMEDOUT as jr_snap_create.  Returns once the
 * deletion is applied (through a request: once the snapshot is gone for
 * readers).  Cost: one store listing of the snapshot's preserved objects,
 * and a move or removal of each. */
int jr_snap_delete(st_store *st, const char *vol_id, const char *snap_id,
                   int timeout_ms);
/* 0 and *out, or -ENOENT (no such volume or snapshot; a snapshot whose
 * deletion is journaled is gone). */
int jr_snap_get(st_store *st, const char *vol_id, const char *snap_id,
                struct jr_snap *out);
/* Visit the volume's snapshots in seq order (cb != 0 stops and is
 * returned).  -ENOENT no volume. */
int jr_snap_list(st_store *st, const char *vol_id,
                 int (*cb)(const struct jr_snap *s, void *arg), void *arg);
/* Read a snapshot's image bytes: [off, off + len) within its size
 * (-EINVAL otherwise).  Safe while the volume is written (FORMAT.md R-64);
 * while a writer replays after a crash (jr_open) or jr_apply replays, the
 * bytes the snapshot shares with the image may go through older states
 * as the image's own do.  -ENOENT also when the snapshot was deleted
 * while it was read.  Cost: one store read per data object, plus one per
 * data object and snapshot from this one to the newest. */
int jr_snap_read(st_store *st, const char *vol_id, const char *snap_id,
                 uint64_t off, void *buf, size_t len);
/* Holds: a user of a snapshot (a clone being copied from it) keeps it
 * from being deleted.  holder: 1..JR_MAX_ID bytes of [A-Za-z0-9._-].
 * Idempotent; -ENOENT when the snapshot does not exist (hold) / 0 always
 * (release).  jr_snap_holds visits the holders. */
int jr_snap_hold(st_store *st, const char *vol_id, const char *snap_id,
                 const char *holder);
int jr_snap_release(st_store *st, const char *vol_id, const char *snap_id,
                    const char *holder);
int jr_snap_holds(st_store *st, const char *vol_id, const char *snap_id,
                  int (*cb)(const char *holder, void *arg), void *arg);

/* Counters of an open volume since jr_open (for tests and benchmarks). */
struct jr_stats {
    uint64_t entries;        /* journal entries written */
    uint64_t commits;        /* store appends (group commits) */
    uint64_t journal_bytes;  /* bytes appended to the journal */
    uint64_t payload_bytes;  /* uncompressed write bytes journaled */
    uint64_t apply_batches;  /* applier rounds (each coalesced) */
    uint64_t applied_entries;
    uint64_t commit_ns;      /* time in journal appends (the leaders) */
    uint64_t apply_ns;       /* time in image writes (the applier) */
    uint64_t trim_ns;        /* time persisting applied and trimming */
    /* Consistency points (§ groups): how often and how long this
     * writer's gate was closed (from its mark taking a seq until the
     * gate opened: what a write arriving then waits at most). */
    uint64_t cp_holds;
    uint64_t cp_hold_ns;     /* sum */
    uint64_t cp_hold_max_ns;
};
int jr_get_stats(jr_volume *v, struct jr_stats *out);
/* The most recent hold durations (ns) of an open grouped writer, newest
 * last: up to n copied, the number copied returned. */
size_t jr_cp_holds(jr_volume *v, int64_t *out, size_t n);

/* The sticky error of an open volume: 0, or why writes now fail (e.g.
 * JR_ELOCKED after the lease was taken over, JR_EROLE after a demotion,
 * a store error of a journal append). */
int jr_volume_error(jr_volume *v);

/* ---- a damaged journal (FORMAT.md R-37) ----
 * An entry that fails verification (a flipped byte: CRC, lengths, kind;
 * or a journal that ends before its recorded head) is never applied and
 * never skipped: jr_open's replay applies the entries before it, records
 * applied, logs journal.damaged (volume, seq, object, offset, check) and
 * records it in the header; the writable open then fails with
 * JR_ECORRUPT while read-only opens read the volume up to the damage.
 * Leaving that state loses data, so it is never automatic: an operator
 * confirms the damaged seq to jr_journal_discard. */
struct jr_damage {
    uint64_t seq;    /* first entry that fails (0: the journal is sound) */
    uint64_t object; /* journal object number (vol/<id>/j/<16 hex>) */
    uint64_t offset; /* byte offset of that entry in the object */
    uint64_t applied;/* the volume's applied position */
    uint64_t head;   /* the journal's recorded head */
    char why[64];    /* the failed check, e.g. "payload crc mismatch (R-19)" */
};
/* Verify the entries replay needs, (applied, head], without changing
 * anything.  0 with out->seq = 0 when they all verify; JR_ECORRUPT with
 * *out naming the first damaged one (which may lie at or below applied
 * when it shares a journal object with entries replay needs: entries past
 * a damaged one cannot be located); -ENOENT; store errors.  Cost: one
 * read of each journal object holding entries after applied. */
int jr_journal_check(st_store *st, const char *vol_id, struct jr_damage *out);
/* Discard the damaged tail: every journal entry from bad_seq on, where
 * bad_seq must be exactly the first damaged entry as jr_journal_check
 * finds it now (the operator's confirmation; nothing else is ever
 * dropped).  First the valid entries before it are applied.  Afterwards
 * head = applied = bad_seq - 1, the damage record is gone and the volume
 * opens writable again; new writes continue at bad_seq.
 * Data: the discarded entries were acknowledged writes and are lost from
 * the journal; the image may still hold the effects of some of them (a
 * writer records applied lazily, about once a second, and a damaged
 * entry at or below applied was applied before): treat the volume as
 * after an unclean shutdown (fsck) and resync its peers.
 * A primary: takes the writer lease as jr_open does without
 * JR_OPEN_FORCE (JR_ELOCKED if a live holder renews it); a secondary:
 * guarded by its role (jr_apply then receives the entries again from the
 * primary).
 * Errors: -EINVAL (bad_seq 0), -ENOENT, JR_ESTALE (bad_seq is not the
 * first damaged entry now, or the journal is sound: nothing changed),
 * JR_EDIVERGED (a primary whose peer acknowledged bad_seq or later: that
 * peer holds entries this copy would now write differently; fail over to
 * it or resync instead), JR_ELOCKED, JR_EROLE (the role changed
 * meanwhile), store errors (a discard interrupted by one can be run
 * again with the same seq). */
int jr_journal_discard(st_store *st, const char *vol_id, uint64_t bad_seq);


/* ---- consistency groups (FORMAT.md §6, DESIGN.md "Consistency groups") ----
 * Volumes of one region join a group; the group's members, whatever
 * process writes each, are cut together at consistency points: a
 * coordinator (the region's replicator, jr_group_cut) asks every member
 * with a live writer to close its write gate and journal a mark entry
 * (kind 7), waits until all did, and releases them; each then journals a
 * commit entry.  A cut stands for, per member, the position of its mark
 * (members without a writer: their head, carried in the marks).  For
 * any two writes A and B to members, if B was issued after A was
 * acknowledged and B lies inside a committed cut, so does A (DESIGN.md
 * gives the argument).  The peer region applies a member's entries only
 * up to the newest cut committed by every member it needs
 * (jr_group_find_cut, jr_apply_limit, jr_replica_cut), so a failover lands
 * every member on one cut.
 *
 * Group ids: 1..JR_MAX_GROUP_ID bytes of [A-Za-z0-9_-].  A group holds at
 * most JR_GROUP_MAX_MEMBERS volumes; each has an index (0..63) that marks
 * carry in the entry header's member field.  Membership is recorded in
 * the group object and in the member's header ("meta.group" = "<group>
 * <index>", metadata: it travels with the volume to its replica).
 * Threads: every call may run in any process and thread. */
#define JR_MAX_GROUP_ID 64
#define JR_GROUP_MAX_MEMBERS 64
#define JR_GROUP_LEFT UINT64_MAX /* jr_group_find_cut: not in the cut */
/* Join (idempotent: the existing index is returned).  -EBUSY: the volume
 * is in another group; -ENOSPC: the group is full; -ENOENT no volume.
 * A writer already open on the volume takes part from its next open. */
int jr_group_join(st_store *st, const char *group, const char *vol_id,
                  uint32_t *index);
/* Leave (0 also when not a member). */
int jr_group_leave(st_store *st, const char *group, const char *vol_id);
/* The volume's group: 0 and group/index, or -ENOENT (not grouped). */
int jr_group_of(st_store *st, const char *vol_id, char *group, size_t n,
                uint32_t *index);
/* Members in index order (cb != 0 stops and is returned). */
int jr_group_members(st_store *st, const char *group,
                     int (*cb)(const char *vol_id, uint32_t index, void *arg),
                     void *arg);
/* Every group id in the store (cb != 0 stops). */
int jr_group_list(st_store *st, int (*cb)(const char *group, void *arg),
                  void *arg);
/* Create an empty group (idempotent): it is listed from then on. */
int jr_group_create(st_store *st, const char *group);
/* Remove an empty group: 0, -ENOTEMPTY, or 0 when absent. */
int jr_group_delete(st_store *st, const char *group);

/* One consistency point (the coordinator; one per group and region at a
 * time).  hold_ms bounds how long members stay held: a member that has
 * not marked by then (its writer died, stalled or is closing) makes the
 * point abandoned, members are released without a commit and the next
 * point tries again.  Returns 0 with *out filled (complete or not), or a
 * store error. */
struct jr_cut_result {
    uint64_t cut;          /* the point's number */
    int complete;          /* every participant marked: released */
    uint32_t participants; /* members with a live writer */
    uint32_t idle;         /* members without (their head is their cut) */
    int64_t pause_ns;      /* from asking the first member to hold until
                              the release was published (the longest any
                              member can have been held, less its poll) */
};
int jr_group_cut(st_store *st, const char *group, int hold_ms,
                 struct jr_cut_result *out);

/* The peer side, on secondaries. */
/* jr_apply_history that journals every entry but applies the image only
 * up to limit (a group's newest complete cut); *head_out is the journal
 * head (what the replica holds durably: the primary may trim up to it). */
int jr_apply_limit(st_store *st, const char *vol_id, const void *data,
                   size_t len, uint64_t history_seq, uint64_t limit,
                   uint64_t *head_out);
/* Apply the replica's own journal up to seq (at most its head). */
int jr_replica_apply_to(st_store *st, const char *vol_id, uint64_t seq);
/* Failover: apply up to seq, then drop every entry after it (the replica
 * stands for position seq: jr_replica_rebase).  JR_EGAP if the journal
 * does not reach seq; JR_EROLE on a primary. */
int jr_replica_cut(st_store *st, const char *vol_id, uint64_t seq);
/* The newest cut every member's replica can land on: members (vol ids)
 * with their indices; *cut (0: none known) and pos[i] the position of
 * member i at it; *cut_ts (may be NULL) the timestamp of its marks (the
 * primary's clock; 0 when the cut is the one already applied).  A point
 * naming a member not among vols never counts.  A cut counts when a mark of it is found, every
 * participant it names has journaled its commit, and every idle member
 * it names has journaled up to the head it names.  A member of vols the
 * cut does not name (it left the group) does not block it and gets pos
 * JR_GROUP_LEFT: it is gated no more.  Reads the replicas' journals from
 * their applied position and their "gcut" key (the cut last applied,
 * */
int jr_group_find_cut(st_store *st, size_t n, const char *const *vols,
                      const uint32_t *idx, uint64_t *cut, uint64_t *pos,
                      int64_t *cut_ts);
/* The group and member index of the first mark in a batch: 1 (group,
 * member filled), 0 none, JR_ECORRUPT.  A replica learns its membership
 * from the marks too (one that joined after its replica was made). */
int jr_batch_group_mark(const void *data, size_t len, char *group, size_t gn,
                        uint32_t *member);
/* How many group commit entries (kind 7, "c ...") a batch carries (the
 * receiver looks for a new cut only when one arrived); JR_ECORRUPT on
 * bytes that are not whole, valid entries. */
int jr_batch_group_commits(const void *data, size_t len);
/* Record on each member that cut `cut` was applied at pos[i] ("gcut"). */
int jr_group_cut_applied(st_store *st, size_t n, const char *const *vols,
                         uint64_t cut, const uint64_t *pos);

#endif /* TANDEM_JR_H */
