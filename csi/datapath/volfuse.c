/*
 * volfuse.c: tandem-volfuse, the per-volume exporter of the node data
 * path.  It opens one volume through the journal engine and serves a FUSE
 * filesystem holding a single regular file, `image`, whose bytes are the
 * volume's; csi/datapath/blockdev.c puts a loop device on that file.
 *
 *   tandem-volfuse --config FILE --region R --volume ID --mountpoint DIR
 *                  [--read-only | --overlay] [--foreground] [--force]
 *                  [--owner NAME] [--run-dir DIR] [--ready-fd N]
 *                  [--threads N]
 *
 * Mapping of FUSE operations (low-level API, multithreaded):
 *   read → jr_read, write → jr_write (replied only once journaled
 *   durably), fallocate PUNCH_HOLE/ZERO_RANGE → jr_discard, fsync/flush →
 *   jr_flush, setattr(size) → jr_resize (grow only: that is how
 *   bd_resize grows a volume online: truncate(DIR/image, bigger)).
 * The file is opened with FOPEN_DIRECT_IO (no page cache can hide or
 * reorder writes) and FOPEN_PARALLEL_DIRECT_WRITES (so the kernel does not
 * serialise writes on the inode lock: the loop device keeps many in
 * flight and the journal group-commits them).
 *
 * --overlay: the volume is opened read-only (no lease; a secondary is
 * fine) but the image accepts writes, which land in a private scratch
 * file (unlinked, in RUN_DIR) and are forgotten at exit.  A crash-
 * consistent replica's filesystem can so replay its own journal and be
 * mounted read-only; the volume itself is never written.
 *
 * Life cycle: without --foreground it forks into its own session (the
 * node plugin may exit or restart; the exporter stays).  It writes its pid
 * to RUN_DIR/pid, logs (tlog) to RUN_DIR/log, and reports readiness on
 * --ready-fd ("ok PID\n", or "err ERRNO MESSAGE\n") only after a stat of
 * DIR/image through the mount succeeded.  SIGTERM/SIGINT: stop serving,
 * flush and jr_close, and unmount DIR unless the image is still in use (a
 * loop device on it: the dead mount then stays until bd_detach clears the
 * loop device and unmounts).  An unmount of DIR (bd_detach) ends it the
 * same way.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jr.h"
#include "regions.h"
#include "store.h"
#include "tbase.h"
#include "tlog.h"

#define IMAGE_INO 2
#define IMAGE_NAME "image"
#define MAX_WRITE (1u << 20)

/* Kernel ABI bits libfuse 3.14 has no field for (linux/fuse.h). */
#define VF_FOPEN_DIRECT_IO (1u << 0)
#define VF_FOPEN_PARALLEL_DIRECT_WRITES (1u << 6)
struct vf_open_out {
    uint64_t fh;
    uint32_t open_flags;
    uint32_t padding;
};

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

/* Private copy-on-write overlay (--overlay): 4 KiB blocks written since
 * start live in an unlinked sparse file; a bitmap, allocated per 1 GiB
 * chunk on first use, says which. */
#define OV_BLOCK 4096u
#define OV_CHUNK_BLOCKS (1u << 18) /* 1 GiB of blocks per bitmap chunk */
struct vf_overlay {
    int fd;                 /* scratch file, -1 if no overlay */
    pthread_rwlock_t lock;  /* writers exclusive, readers shared */
    uint64_t **chunks;      /* bitmap chunks (NULL: nothing written there) */
    size_t nchunks;
};

struct vf_ctx {
    const char *vol_id;
    int read_only;          /* the FUSE image refuses writes */
    int overlay;            /* writes go to ov, never to the volume */
    struct vf_overlay ov;
    jr_volume *vol;
    _Atomic uint64_t size;      /* current volume size in bytes */
    pthread_mutex_t resize_mu;  /* serialises setattr(size) */
    time_t start;
    _Atomic uint64_t n_write_err, n_read_err;
    _Atomic uint64_t n_writes, n_reads, write_bytes;
    _Atomic int inflight, max_inflight; /* concurrent read/write requests */
};

/* Track how many requests the kernel keeps in flight (the queue depth
 * the journal sees; logged at exit for tuning). */
static void io_begin(struct vf_ctx *c)
{
    int n = atomic_fetch_add(&c->inflight, 1) + 1;
    int m = atomic_load(&c->max_inflight);
    while (n > m && !atomic_compare_exchange_weak(&c->max_inflight, &m, n)) {
    }
}

static void io_end(struct vf_ctx *c) { atomic_fetch_sub(&c->inflight, 1); }

static int ov_init(struct vf_overlay *ov, const char *dir, uint64_t size)
{
    ov->fd = open(dir ? dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (ov->fd < 0) return -errno;
    pthread_rwlock_init(&ov->lock, NULL);
    ov->nchunks = (size_t)((size / OV_BLOCK + OV_CHUNK_BLOCKS - 1) /
                           OV_CHUNK_BLOCKS);
    ov->chunks = calloc(ov->nchunks ? ov->nchunks : 1, sizeof *ov->chunks);
    if (!ov->chunks) {
        close(ov->fd);
        ov->fd = -1;
        return -ENOMEM;
    }
    return 0;
}

static void ov_free(struct vf_overlay *ov)
{
    if (ov->fd < 0) return;
    for (size_t i = 0; i < ov->nchunks; i++) free(ov->chunks[i]);
    free(ov->chunks);
    close(ov->fd);
    pthread_rwlock_destroy(&ov->lock);
    ov->fd = -1;
}

static int ov_test(const struct vf_overlay *ov, uint64_t blk)
{
    const uint64_t *ch = ov->chunks[blk / OV_CHUNK_BLOCKS];
    uint64_t i = blk % OV_CHUNK_BLOCKS;
    return ch && (ch[i / 64] >> (i % 64)) & 1;
}

static int ov_set(struct vf_overlay *ov, uint64_t blk)
{
    uint64_t **ch = &ov->chunks[blk / OV_CHUNK_BLOCKS];
    if (!*ch && !(*ch = calloc(OV_CHUNK_BLOCKS / 64, sizeof **ch)))
        return -ENOMEM;
    uint64_t i = blk % OV_CHUNK_BLOCKS;
    (*ch)[i / 64] |= 1ull << (i % 64);
    return 0;
}

static int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
    char *b = buf;
    while (len > 0) {
        ssize_t n = pread(fd, b, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) { /* sparse tail of the scratch file */
            memset(b, 0, len);
            return 0;
        }
        b += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *b = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, b, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        b += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read through the overlay: the volume, then the overlaid blocks. */
static int ov_read(struct vf_ctx *c, uint64_t off, char *buf, size_t len)
{
    struct vf_overlay *ov = &c->ov;
    pthread_rwlock_rdlock(&ov->lock);
    int rc = jr_read(c->vol, off, buf, len);
    for (uint64_t b = off / OV_BLOCK; rc == 0 && b * OV_BLOCK < off + len; b++) {
        if (!ov_test(ov, b)) continue;
        uint64_t s = b * OV_BLOCK > off ? b * OV_BLOCK : off;
        uint64_t e = (b + 1) * OV_BLOCK < off + len ? (b + 1) * OV_BLOCK
                                                    : off + len;
        rc = full_pread(ov->fd, buf + (s - off), (size_t)(e - s), s);
    }
    pthread_rwlock_unlock(&ov->lock);
    return rc;
}

/* Write into the overlay (data NULL: zeros).  A block written partly for
 * the first time is first filled from the volume. */
static int ov_write(struct vf_ctx *c, uint64_t off, const char *data,
                    size_t len)
{
    struct vf_overlay *ov = &c->ov;
    char blk[OV_BLOCK];
    int rc = 0;
    pthread_rwlock_wrlock(&ov->lock);
    /* Zeroing whole blocks: one hole in the scratch file. */
    uint64_t as = (off + OV_BLOCK - 1) / OV_BLOCK * OV_BLOCK;
    uint64_t ae = (off + len) / OV_BLOCK * OV_BLOCK;
    if (!data && ae > as &&
        fallocate(ov->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)as, (off_t)(ae - as)) < 0)
        rc = -errno;
    for (uint64_t b = off / OV_BLOCK; rc == 0 && b * OV_BLOCK < off + len; b++) {
        uint64_t bs = b * OV_BLOCK;
        uint64_t s = bs > off ? bs : off;
        uint64_t e = bs + OV_BLOCK < off + len ? bs + OV_BLOCK : off + len;
        uint64_t vsz = atomic_load(&c->size);
        if (!data && s == bs && e == bs + OV_BLOCK) {
            rc = ov_set(ov, b); /* punched above */
            continue;
        }
        if ((s != bs || e != bs + OV_BLOCK) && !ov_test(ov, b)) {
            size_t have = bs + OV_BLOCK <= vsz ? OV_BLOCK : (size_t)(vsz - bs);
            memset(blk, 0, sizeof blk);
            if ((rc = jr_read(c->vol, bs, blk, have)) < 0) break;
            if ((rc = full_pwrite(ov->fd, blk, have, bs)) < 0) break;
        }
        if (data) {
            rc = full_pwrite(ov->fd, data + (s - off), (size_t)(e - s), s);
        } else {
            memset(blk, 0, sizeof blk);
            rc = full_pwrite(ov->fd, blk, (size_t)(e - s), s);
        }
        if (rc == 0) rc = ov_set(ov, b);
    }
    pthread_rwlock_unlock(&ov->lock);
    return rc;
}

static void fill_attr(struct vf_ctx *c, fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = 0;
    st->st_gid = 0;
    st->st_atime = st->st_mtime = st->st_ctime = c->start;
    if (ino == FUSE_ROOT_ID) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
    } else {
        uint64_t sz = atomic_load(&c->size);
        st->st_mode = S_IFREG | (c->read_only ? 0400 : 0600);
        st->st_nlink = 1;
        st->st_size = (off_t)sz;
        st->st_blksize = 4096;
        st->st_blocks = (blkcnt_t)((sz + 511) / 512);
    }
}

static void vf_init(void *ud, struct fuse_conn_info *conn)
{
    /* Big requests: the loop device sends up to max_sectors per request;
     * each FUSE round trip costs a context switch or two. */
    conn->max_write = MAX_WRITE;
    /* Async direct I/O requests are "background" requests in the kernel;
     * the default of 12 would cap the queue depth the loop device can
     * keep in flight. */
    conn->max_background = 128;
    conn->congestion_threshold = 96;
    if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
    /* No writeback cache: writes must reach the journal before they are
     * acknowledged. */
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    tlog_info("volfuse.init", "proto=%u.%u max_write=%u capable=0x%x",
              conn->proto_major, conn->proto_minor, conn->max_write,
              conn->capable);
}

static void vf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    if (parent != FUSE_ROOT_ID || strcmp(name, IMAGE_NAME) != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = IMAGE_INO;
    e.generation = 1;
    e.attr_timeout = 1.0;
    e.entry_timeout = 3600.0;
    fill_attr(c, IMAGE_INO, &e.attr);
    fuse_reply_entry(req, &e);
}

static void vf_getattr(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    struct stat st;
    if (ino != FUSE_ROOT_ID && ino != IMAGE_INO) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fill_attr(c, ino, &st);
    fuse_reply_attr(req, &st, 1.0);
}

/* The one rule for turning an error into an errno, for the kernel (FUSE
 * replies) and for --ready-fd alike.  A negative errno (-1 .. -4095, the
 * kernel's MAX_ERRNO range) goes on as is.  The journal's own codes
 * (JR_E*, a reserved range far below it, from -30500) have no errno:
 * JR_EROLE (the volume is a secondary) becomes EROFS, JR_ELOCKED
 * (another writer holds the lease) EBUSY, and any other EIO; the log
 * line written before each reply keeps the original code. */
#define VF_MAX_ERRNO 4095
static int kerr(int rc)
{
    if (rc < 0 && rc >= -VF_MAX_ERRNO) return -rc;
    if (rc == JR_EROLE) return EROFS;
    if (rc == JR_ELOCKED) return EBUSY;
    return EIO;
}

static void vf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                       int to_set, struct fuse_file_info *fi)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    struct stat st;
    if (ino != IMAGE_INO) {
        fuse_reply_err(req, EPERM);
        return;
    }
    /* Mode, owner and times are fixed; only the size can change, and
     * only upwards (shrinking would drop data under a filesystem). */
    if (to_set & FUSE_SET_ATTR_SIZE) {
        uint64_t want = (uint64_t)attr->st_size;
        pthread_mutex_lock(&c->resize_mu);
        uint64_t cur = atomic_load(&c->size);
        int rc = 0;
        if ((c->read_only || c->overlay) && want != cur)
            rc = -EROFS;
        else if (want < cur)
            rc = -EINVAL;
        else if (want > cur) {
            rc = jr_resize(c->vol, want);
            if (rc == 0) atomic_store(&c->size, want);
        }
        pthread_mutex_unlock(&c->resize_mu);
        if (rc < 0) {
            tlog_warn("volfuse.resize_failed",
                      "vol=%s from=%llu to=%llu err=%d msg=\"%s\"", c->vol_id,
                      (unsigned long long)cur, (unsigned long long)want, rc,
                      jr_strerror(rc));
            fuse_reply_err(req, kerr(rc));
            return;
        }
        if (want != cur)
            tlog_info("volfuse.resized", "vol=%s from=%llu to=%llu",
                      c->vol_id, (unsigned long long)cur,
                      (unsigned long long)want);
    }
    fill_attr(c, ino, &st);
    fuse_reply_attr(req, &st, 1.0);
}

static void vf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    if (ino != IMAGE_INO) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if (c->read_only && (fi->flags & O_ACCMODE) != O_RDONLY) {
        fuse_reply_err(req, EROFS);
        return;
    }
    /* fuse_reply_open cannot set FOPEN_PARALLEL_DIRECT_WRITES in libfuse
     * 3.14, so send the fuse_open_out ourselves. */
    struct vf_open_out out = {
        .fh = 0,
        .open_flags = VF_FOPEN_DIRECT_IO | VF_FOPEN_PARALLEL_DIRECT_WRITES,
    };
    fuse_reply_buf(req, (const char *)&out, sizeof out);
}

static void vf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    uint64_t sz = atomic_load(&c->size);
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((uint64_t)off >= sz) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if ((uint64_t)off + size > sz) size = (size_t)(sz - (uint64_t)off);
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    io_begin(c);
    int rc = c->overlay ? ov_read(c, (uint64_t)off, buf, size)
                        : jr_read(c->vol, (uint64_t)off, buf, size);
    io_end(c);
    atomic_fetch_add(&c->n_reads, 1);
    if (rc < 0) {
        atomic_fetch_add(&c->n_read_err, 1);
        tlog_error("volfuse.read_failed", "vol=%s off=%lld len=%zu err=%d msg=\"%s\"",
                   c->vol_id, (long long)off, size, rc, jr_strerror(rc));
        fuse_reply_err(req, kerr(rc));
    } else {
        fuse_reply_buf(req, buf, size);
    }
    free(buf);
}

static void vf_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
                     size_t size, off_t off, struct fuse_file_info *fi)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    uint64_t sz = atomic_load(&c->size);
    if (c->read_only) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    /* The image never grows by writing: past the end is out of space, a
     * write straddling the end is short. */
    if ((uint64_t)off >= sz && size > 0) {
        fuse_reply_err(req, ENOSPC);
        return;
    }
    if ((uint64_t)off + size > sz) size = (size_t)(sz - (uint64_t)off);
    io_begin(c);
    int rc = c->overlay ? ov_write(c, (uint64_t)off, buf, size)
                        : jr_write(c->vol, (uint64_t)off, buf, size);
    io_end(c);
    atomic_fetch_add(&c->n_writes, 1);
    atomic_fetch_add(&c->write_bytes, size);
    if (rc < 0) {
        atomic_fetch_add(&c->n_write_err, 1);
        tlog_error("volfuse.write_failed", "vol=%s off=%lld len=%zu err=%d msg=\"%s\"",
                   c->vol_id, (long long)off, size, rc, jr_strerror(rc));
        fuse_reply_err(req, kerr(rc));
        return;
    }
    /* jr_write returned: the write is journaled durably. */
    fuse_reply_write(req, size);
}

static void vf_flush_common(fuse_req_t req)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    if (c->read_only || c->overlay) { /* nothing of ours to make durable */
        fuse_reply_err(req, 0);
        return;
    }
    int rc = jr_flush(c->vol);
    if (rc < 0) {
        tlog_error("volfuse.flush_failed", "vol=%s err=%d msg=\"%s\"",
                   c->vol_id, rc, jr_strerror(rc));
        fuse_reply_err(req, kerr(rc));
        return;
    }
    fuse_reply_err(req, 0);
}

static void vf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    vf_flush_common(req);
}

static void vf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
                     struct fuse_file_info *fi)
{
    vf_flush_common(req);
}

static void vf_release(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0);
}

static void vf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
                         off_t off, off_t len, struct fuse_file_info *fi)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    uint64_t sz = atomic_load(&c->size);
    if (c->read_only) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (off < 0 || len <= 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
                FALLOC_FL_ZERO_RANGE;
    if (mode & ~known) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
        /* Plain allocation: every byte of the image already "exists"
         * (sparse objects read as zeros); growing goes through setattr. */
        fuse_reply_err(req, (uint64_t)off + (uint64_t)len <= sz ? 0 : EFBIG);
        return;
    }
    if ((uint64_t)off >= sz) {
        fuse_reply_err(req, 0);
        return;
    }
    uint64_t l = (uint64_t)len;
    if ((uint64_t)off + l > sz) l = sz - (uint64_t)off;
    /* jr_discard leaves the range reading as zeros, which serves both
     * PUNCH_HOLE (discard) and ZERO_RANGE (write zeroes). */
    int rc = c->overlay ? ov_write(c, (uint64_t)off, NULL, (size_t)l)
                        : jr_discard(c->vol, (uint64_t)off, l);
    if (rc < 0) {
        tlog_error("volfuse.discard_failed", "vol=%s off=%lld len=%llu err=%d msg=\"%s\"",
                   c->vol_id, (long long)off, (unsigned long long)l, rc,
                   jr_strerror(rc));
        fuse_reply_err(req, kerr(rc));
        return;
    }
    fuse_reply_err(req, 0);
}

static void vf_opendir(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
    if (ino != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    fuse_reply_open(req, fi);
}

static void vf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
                       off_t off, struct fuse_file_info *fi)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    char buf[512];
    size_t pos = 0;
    struct stat st;
    const char *names[] = {".", "..", IMAGE_NAME};
    fuse_ino_t inos[] = {FUSE_ROOT_ID, FUSE_ROOT_ID, IMAGE_INO};
    if (ino != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    for (off_t i = off; i < 3; i++) {
        fill_attr(c, inos[i], &st);
        size_t need = fuse_add_direntry(req, NULL, 0, names[i], NULL, 0);
        if (pos + need > size || pos + need > sizeof buf) break;
        fuse_add_direntry(req, buf + pos, sizeof buf - pos, names[i], &st,
                          i + 1);
        pos += need;
    }
    fuse_reply_buf(req, buf, pos);
}

static void vf_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct vf_ctx *c = fuse_req_userdata(req);
    struct statvfs sv;
    memset(&sv, 0, sizeof sv);
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_blocks = atomic_load(&c->size) / 4096;
    sv.f_files = 2;
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops vf_ops = {
    .init = vf_init,
    .lookup = vf_lookup,
    .getattr = vf_getattr,
    .setattr = vf_setattr,
    .open = vf_open,
    .read = vf_read,
    .write = vf_write,
    .flush = vf_flush,
    .fsync = vf_fsync,
    .release = vf_release,
    .fallocate = vf_fallocate,
    .opendir = vf_opendir,
    .readdir = vf_readdir,
    .statfs = vf_statfs,
};

/* ------------------------------------------------------------ process -- */

/* Mount a FUSE filesystem at mnt on a fresh /dev/fuse descriptor (*fd). */
static int vf_mount(const char *mnt, const char *vol_id, int ro, int *fd)
{
    char opts[128], src[JR_MAX_ID + 16];
    int f = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (f < 0) return -errno;
    snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0", f);
    snprintf(src, sizeof src, "tandem:%s", vol_id);
    unsigned long fl = MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0);
    if (mount(src, mnt, "fuse.tandem", fl, opts) < 0) {
        int e = errno;
        close(f);
        return -e;
    }
    *fd = f;
    return 0;
}

struct ready_arg {
    int fd;
    char image[PATH_MAX];
    uint64_t size;
    struct fuse_session *se;
    _Atomic int loop_done;  /* set when the session loop returned */
};

static void ready_send(int fd, const char *msg)
{
    if (fd < 0) return;
    size_t n = strlen(msg);
    while (n > 0) {
        ssize_t k = write(fd, msg, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        msg += k;
        n -= (size_t)k;
    }
}

/* Readiness: the mount works once a stat through it is answered by our
 * own loop threads with the right size. */
static void *ready_thread(void *p)
{
    struct ready_arg *a = p;
    char msg[256];
    int64_t deadline = tb_mono_ms() + 30000;
    for (;;) {
        struct stat st;
        if (stat(a->image, &st) == 0 && S_ISREG(st.st_mode) &&
            (uint64_t)st.st_size == a->size) {
            snprintf(msg, sizeof msg, "ok %ld\n", (long)getpid());
            ready_send(a->fd, msg);
            tlog_info("volfuse.ready", "image=%s size=%llu", a->image,
                      (unsigned long long)a->size);
            break;
        }
        if (tb_mono_ms() > deadline || atomic_load(&a->loop_done)) {
            snprintf(msg, sizeof msg, "err %d mount did not answer\n",
                     ETIMEDOUT);
            ready_send(a->fd, msg);
            tlog_error("volfuse.not_ready", "image=%s", a->image);
            fuse_session_exit(a->se);
            break;
        }
        struct timespec d = {0, 5 * 1000 * 1000};
        nanosleep(&d, NULL); /* polling the mount with a deadline */
    }
    if (a->fd >= 0) close(a->fd);
    a->fd = -1;
    return NULL;
}

static int write_pidfile(const char *run_dir)
{
    char path[PATH_MAX], tmp[PATH_MAX], buf[32];
    if (!run_dir) return 0;
    snprintf(path, sizeof path, "%s/pid", run_dir);
    snprintf(tmp, sizeof tmp, "%s/pid.tmp", run_dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    int rc = write(fd, buf, (size_t)n) == n ? 0 : -EIO;
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
    return rc;
}

/* A whole decimal number in [min, max] for --flag, or exit 2 with one
 * line naming the flag (atoi would turn "x" into 0, i.e. stdin). */
static int int_arg(const char *flag, const char *v, long min, long max)
{
    char *end;
    errno = 0;
    long n = v[0] >= '0' && v[0] <= '9' ? strtol(v, &end, 10) : -1;
    if (n < 0 || errno || *end || n < min || n > max) {
        fprintf(stderr, "tandem-volfuse: --%s %s: not a number from %ld to "
                "%ld\n", flag, v, min, max);
        exit(2);
    }
    return (int)n;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: tandem-volfuse --config FILE --region R --volume ID "
            "--mountpoint DIR\n"
            "       [--read-only] [--foreground] [--force] [--owner NAME]\n"
            "       [--run-dir DIR] [--ready-fd N] [--threads N]\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL, *region = NULL, *vol_id = NULL, *mnt = NULL;
    const char *run_dir = NULL, *owner_opt = NULL;
    int read_only = 0, overlay = 0, foreground = 0, force = 0, ready_fd = -1;
    int threads = 32;
    static const struct option lopts[] = {
        {"config", required_argument, 0, 'c'},
        {"region", required_argument, 0, 'r'},
        {"volume", required_argument, 0, 'v'},
        {"mountpoint", required_argument, 0, 'm'},
        {"read-only", no_argument, 0, 'R'},
        {"overlay", no_argument, 0, 'O'},
        {"foreground", no_argument, 0, 'f'},
        {"force", no_argument, 0, 'F'},
        {"owner", required_argument, 0, 'o'},
        {"run-dir", required_argument, 0, 'd'},
        {"ready-fd", required_argument, 0, 'p'},
        {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        switch (ch) {
        case 'c': config = optarg; break;
        case 'r': region = optarg; break;
        case 'v': vol_id = optarg; break;
        case 'm': mnt = optarg; break;
        case 'R': read_only = 1; break;
        case 'O': overlay = 1; break;
        case 'f': foreground = 1; break;
        case 'F': force = 1; break;
        case 'o': owner_opt = optarg; break;
        case 'd': run_dir = optarg; break;
        /* 0-2 are replaced by /dev/null and the log below. */
        case 'p': ready_fd = int_arg("ready-fd", optarg, 3, INT_MAX); break;
        case 't': threads = int_arg("threads", optarg, 1, 1024); break;
        case 'h': usage(); return 0;
        default: usage(); return 2;
        }
    }
    if (!config || !region || !vol_id || !mnt || optind != argc ||
        (read_only && overlay)) {
        usage();
        return 2;
    }
    if (ready_fd >= 0 && fcntl(ready_fd, F_SETFD, FD_CLOEXEC) < 0) {
        fprintf(stderr, "tandem-volfuse: --ready-fd %d: not an open "
                "descriptor\n", ready_fd);
        return 2;
    }

    /* Logs go to RUN_DIR/log when a run dir is given. */
    if (run_dir) {
        char lp[PATH_MAX];
        snprintf(lp, sizeof lp, "%s/log", run_dir);
        int lfd = open(lp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (lfd >= 0) {
            dup2(lfd, 2);
            close(lfd);
        }
    }
    int nfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nfd >= 0) {
        dup2(nfd, 0);
        dup2(nfd, 1);
        close(nfd);
    }
    tlog_init("volfuse", TLOG_INFO);

    /* Detach before any thread exists (store and FUSE threads come
     * later): the node plugin may exit and we must stay. */
    if (!foreground) {
        pid_t p = fork();
        if (p < 0) {
            tlog_error("volfuse.fork_failed", "err=%d", errno);
            return 1;
        }
        if (p > 0) _exit(0);
        setsid();
    }
    /* We serve a block device: our own allocations must not wait for
     * writeback that only we can complete. */
    if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
        tlog_info("volfuse.io_flusher_unavailable", "err=%d", errno);

    char msg[512] = "", errbuf[256], owner[256], image[PATH_MAX];
    struct rg_config *cfg = NULL;
    st_store *st = NULL;
    struct fuse_session *se = NULL;
    struct fuse_loop_config *lcfg = NULL;
    struct vf_ctx ctx;
    int rc = 0, mounted = 0, sig_installed = 0, exit_code = 1, fuse_fd = -1;
    pthread_t rt;
    int rt_started = 0;
    struct ready_arg ra = {.fd = ready_fd};

    memset(&ctx, 0, sizeof ctx);
    pthread_mutex_init(&ctx.resize_mu, NULL);
    ctx.vol_id = vol_id;
    ctx.read_only = read_only;
    ctx.overlay = overlay;
    ctx.ov.fd = -1;
    ctx.start = time(NULL);

    if ((rc = write_pidfile(run_dir)) < 0) {
        snprintf(msg, sizeof msg, "err %d cannot write pid file\n", kerr(rc));
        goto fail;
    }
    tlog_info("volfuse.start", "vol=%s region=%s mnt=%s ro=%d overlay=%d pid=%ld",
              vol_id, region, mnt, read_only, overlay, (long)getpid());
    errbuf[0] = 0;
    if ((rc = rg_load(config, &cfg, errbuf, sizeof errbuf)) < 0) {
        snprintf(msg, sizeof msg, "err %d config: %s\n", kerr(rc), errbuf);
        goto fail;
    }
    const struct rg_region *rg = rg_find(cfg, region);
    if (!rg) {
        rc = -ENOENT;
        snprintf(msg, sizeof msg, "err %d unknown region %s\n", ENOENT, region);
        goto fail;
    }
    if ((rc = rg_open_store(rg, &st)) < 0) {
        snprintf(msg, sizeof msg, "err %d cannot open store of region %s: %s\n",
                 kerr(rc), region, st_strerror(rc));
        goto fail;
    }
    if (owner_opt) {
        snprintf(owner, sizeof owner, "%s", owner_opt);
    } else {
        char host[128] = "node";
        gethostname(host, sizeof host - 1);
        snprintf(owner, sizeof owner, "%s/volfuse/%ld", host, (long)getpid());
    }
    int flags = (read_only || overlay ? 0 : JR_OPEN_WRITE) |
                (force ? JR_OPEN_FORCE : 0);
    if ((rc = jr_open(st, vol_id, flags, owner, &ctx.vol)) < 0) {
        snprintf(msg, sizeof msg, "err %d jr_open %s: %s\n", kerr(rc),
                 vol_id, jr_strerror(rc));
        goto fail;
    }
    struct jr_info info;
    if ((rc = jr_get_info(ctx.vol, &info)) < 0) {
        snprintf(msg, sizeof msg, "err %d jr_get_info: %s\n",
                 kerr(rc), jr_strerror(rc));
        goto fail;
    }
    atomic_store(&ctx.size, info.size);
    if (overlay && (rc = ov_init(&ctx.ov, run_dir, info.size)) < 0) {
        snprintf(msg, sizeof msg, "err %d overlay scratch file: %s\n",
                 kerr(rc), strerror(-rc));
        goto fail;
    }
    tlog_info("volfuse.opened", "vol=%s size=%llu role=%s head=%llu",
              vol_id, (unsigned long long)info.size, jr_role_name(info.role),
              (unsigned long long)info.head);

    char *fargv[] = {argv[0], NULL};
    struct fuse_args fargs = FUSE_ARGS_INIT(1, fargv);
    se = fuse_session_new(&fargs, &vf_ops, sizeof vf_ops, &ctx);
    fuse_opt_free_args(&fargs);
    if (!se) {
        rc = -EIO;
        snprintf(msg, sizeof msg, "err %d fuse_session_new failed\n", EIO);
        goto fail;
    }
    if (fuse_set_signal_handlers(se) != 0) {
        rc = -EIO;
        snprintf(msg, sizeof msg, "err %d signal handlers\n", EIO);
        goto fail;
    }
    sig_installed = 1;
    /* We mount ourselves and hand libfuse the descriptor ("/dev/fd/N"),
     * so that we also unmount ourselves: libfuse would detach lazily
     * (see the exit path). */
    if ((rc = vf_mount(mnt, vol_id, read_only, &fuse_fd)) < 0) {
        snprintf(msg, sizeof msg, "err %d cannot mount FUSE at %s: %s\n",
                 kerr(rc), mnt, strerror(-rc));
        goto fail;
    }
    mounted = 1;
    char fdpath[32];
    snprintf(fdpath, sizeof fdpath, "/dev/fd/%d", fuse_fd);
    if (fuse_session_mount(se, fdpath) != 0) {
        rc = -EIO;
        snprintf(msg, sizeof msg, "err %d fuse_session_mount %s\n", EIO, fdpath);
        goto fail;
    }
    fuse_fd = -1; /* the session owns it now */

    snprintf(image, sizeof image, "%s/%s", mnt, IMAGE_NAME);
    snprintf(ra.image, sizeof ra.image, "%s", image);
    ra.size = info.size;
    ra.se = se;
    if (pthread_create(&rt, NULL, ready_thread, &ra) != 0) {
        rc = -EAGAIN;
        snprintf(msg, sizeof msg, "err %d thread\n", EAGAIN);
        goto fail;
    }
    rt_started = 1;
    ready_fd = -1; /* owned by the thread now */

    lcfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(lcfg, (unsigned)threads);
    fuse_loop_cfg_set_idle_threads(lcfg, (unsigned)(threads / 2 ? threads / 2 : 1));
    rc = fuse_session_loop_mt(se, lcfg);
    atomic_store(&ra.loop_done, 1);
    tlog_info("volfuse.loop_end",
              "vol=%s rc=%d writes=%llu write_bytes=%llu reads=%llu "
              "max_inflight=%d write_errors=%llu read_errors=%llu",
              vol_id, rc, (unsigned long long)atomic_load(&ctx.n_writes),
              (unsigned long long)atomic_load(&ctx.write_bytes),
              (unsigned long long)atomic_load(&ctx.n_reads),
              atomic_load(&ctx.max_inflight),
              (unsigned long long)atomic_load(&ctx.n_write_err),
              (unsigned long long)atomic_load(&ctx.n_read_err));
    exit_code = 0;
    msg[0] = 0;

fail:
    if (msg[0] && exit_code != 0) {
        tlog_error("volfuse.failed", "vol=%s err=%d msg=\"%.*s\"", vol_id, rc,
                   (int)strcspn(msg, "\n"), msg);
        ready_send(ready_fd, msg);
    }
    if (ready_fd >= 0) close(ready_fd);
    if (rt_started) pthread_join(rt, NULL);
    if (lcfg) fuse_loop_cfg_destroy(lcfg);
    if (se) {
        if (sig_installed) fuse_remove_signal_handlers(se);
        /* Already on the way out: a second SIGTERM must not cut the
         * flush and lease release below short. */
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        /* Not libfuse's unmount: it detaches lazily, and a loop device
         * still on the image would then show a backing path relative to
         * the detached mount ("/image") that bd_detach cannot recognise.
         * If the image is busy the dead mount stays; bd_detach (or the
         * next bd_attach) clears the loop device, then unmounts. */
        if (mounted && umount2(mnt, UMOUNT_NOFOLLOW) < 0 && errno != EINVAL)
            tlog_warn("volfuse.left_mounted", "mnt=%s err=%d", mnt, errno);
        mounted = 0;
        fuse_session_destroy(se);
    }
    if (fuse_fd >= 0) close(fuse_fd);
    if (mounted) umount2(mnt, UMOUNT_NOFOLLOW | MNT_DETACH);
    if (ctx.vol) {
        int crc = jr_close(ctx.vol);
        if (crc < 0) {
            tlog_error("volfuse.close_failed", "vol=%s err=%d msg=\"%s\"",
                       vol_id, crc, jr_strerror(crc));
            exit_code = 1;
        } else {
            tlog_info("volfuse.closed", "vol=%s", vol_id);
        }
    }
    ov_free(&ctx.ov);
    st_close(st);
    rg_free(cfg);
    if (run_dir && exit_code == 0) {
        char pp[PATH_MAX];
        snprintf(pp, sizeof pp, "%s/pid", run_dir);
        unlink(pp);
    }
    pthread_mutex_destroy(&ctx.resize_mu);
    tlog_info("volfuse.exit", "vol=%s code=%d", vol_id, exit_code);
    return exit_code;
}
