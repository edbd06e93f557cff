/*
 * mounter.h: filesystems on the node: probe, format, mount, bind, unmount,
 * grow, stats.
 *
 * The mount table is read with libmount (mnt_table_parse_mtab), and
 * filesystem signatures with libblkid (a low-level probe, as `blkid -p`).
 * External tools (mkfs.ext4, mkfs.xfs, e2fsck, resize2fs, xfs_growfs)
 * run through posix_spawn with an argv (never a shell), a deadline (killed
 * when it passes: -ETIMEDOUT) and their stderr captured into err.  Mounts
 * use mount(2)/umount2(2) directly.
 *
 * Errors: 0 or a negative errno; an optional err buffer (may be NULL)
 * gets a one-line reason (a tool's last stderr line, or the syscall).
 * Notable codes:
 *   -EMEDIUMTYPE  mnt_format_if_blank: the device holds another
 *                 filesystem or a partition table (never overwritten)
 *   -EBUSY        mnt_mount/mnt_bind: target already has another mount
 *   -EINVAL       unknown fstype, bad mount flag
 *   -EIO          a tool failed (exit status != 0; err says why)
 *   -ETIMEDOUT    a tool ran past its deadline (it was killed)
 *
 * Threads: reentrant; callers serialise work on the same path.
 */
#ifndef TANDEM_CSI_MOUNTER_H
#define TANDEM_CSI_MOUNTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* 1 if path is a mount point (some entry of the mount table has it as
 * its mount point, compared after resolving symlinks; a dead FUSE mount
 * counts), 0 if not (also when path does not exist), or a negative
 * errno. */
int mnt_is_mounted(const char *path);

/* 1 if block device rdev (a stat's st_rdev) is the source of some mount
 * in the mount table, 0 if not, or a negative errno. */
int mnt_dev_is_mounted(dev_t rdev);

/* Source device of the topmost mount at path (e.g. "/dev/loop3") and its
 * fstype (may be NULL).  -ENOENT if path is not a mount point. */
int mnt_find_source(const char *path, char *src, size_t srclen,
                    char *fstype, size_t fslen);

/* Probe dev for a filesystem or partition-table signature (libblkid,
 * superblocks and partition tables, no cache).  0: fstype holds the type
 * found ("ext4", "xfs", "dos", ...; "ambivalent" for several signatures)
 * or "" when the device is blank.  Reads the device in the calling
 * thread, without a deadline (as mount(2) does). */
int mnt_probe(const char *dev, char *fstype, size_t fslen, char *err,
              size_t errlen);

/* Format dev with fstype ("ext4" or "xfs") only if it is blank.
 * mkfs_options: extra mkfs arguments separated by spaces (NULL or "":
 * none), passed as argv words, never through a shell.
 * 0: formatted now (*formatted = 1) or it already holds fstype
 * (*formatted = 0, nothing written); -EMEDIUMTYPE: it holds something
 * else (err names it).  formatted may be NULL. */
int mnt_format_if_blank(const char *dev, const char *fstype,
                        const char *mkfs_options, int *formatted, char *err,
                        size_t errlen);

/* Mount dev at target (a directory, created if missing) as fstype,
 * read-only if ro.  flags: CSI mount_flags (e.g. "noatime",
 * "nodiratime,sync", "data=ordered"): known names become MS_* flags, the
 * rest is passed as filesystem options.  NULL/0: none.
 * Idempotent: target already mounted from dev gives 0; mounted from
 * something else: -EBUSY.  A read-only mount that the kernel refuses
 * with EROFS (a read-only device whose ext4/xfs journal needs recovery)
 * is retried without recovery ("noload" / "norecovery"), which may hide
 * what only the journal holds: attach such devices with bd_attach's
 * overlay option instead. */
int mnt_mount(const char *dev, const char *target, const char *fstype,
              int ro, const char *const *flags, size_t nflags, char *err,
              size_t errlen);

/* Bind-mount src (a directory or a block device) at target, read-only if
 * ro (a bind followed by a MS_BIND|MS_REMOUNT|MS_RDONLY remount).  target
 * is created if missing: a directory when src is a directory, else an
 * empty regular file.  flags as mnt_mount (MS_* ones only).
 * Idempotent as mnt_mount (the same source counts as already done). */
int mnt_bind(const char *src, const char *target, int ro,
             const char *const *flags, size_t nflags, char *err,
             size_t errlen);

/* Unmount everything mounted at path (stacked mounts too).  Idempotent:
 * not mounted or missing gives 0.  A mount whose FUSE server died
 * (ENOTCONN) is unmounted too.  Does not remove path. */
int mnt_umount(const char *path, char *err, size_t errlen);

/* Grow the filesystem on dev, mounted at mountpoint, to fill the device:
 * ext4 → resize2fs dev; xfs → xfs_growfs mountpoint.  fstype NULL or "":
 * probed.  mountpoint NULL: dev is not mounted (ext4 only: e2fsck -f -p,
 * then resize2fs; xfs: -EINVAL).
 * Note: online ext4 growth needs CAP_SYS_RESOURCE (EXT4_IOC_RESIZE_FS);
 * without it resize2fs fails ("Permission denied"): -EIO. */
int mnt_grow_fs(const char *dev, const char *mountpoint, const char *fstype,
                char *err, size_t errlen);

struct mnt_stats {
    int is_block;          /* 1: path is a block device (only bytes_total) */
    uint64_t bytes_total;  /* statvfs f_blocks*f_frsize, or BLKGETSIZE64 */
    uint64_t bytes_used;   /* (f_blocks - f_bfree) * f_frsize */
    uint64_t bytes_avail;  /* f_bavail * f_frsize */
    uint64_t inodes_total; /* f_files */
    uint64_t inodes_used;  /* f_files - f_ffree */
    uint64_t inodes_free;  /* f_ffree */
};
/* Stats of a mounted filesystem (any path in it) or a block device node.
 * -ENOENT if path does not exist. */
int mnt_stats(const char *path, struct mnt_stats *out);

/* Run argv[0] (searched in $PATH when it has no '/') with argv, stdin
 * /dev/null, stdout discarded unless out is given (then captured, NUL-
 * terminated, truncated to outlen), stderr captured into err (its last
 * non-empty line).  Returns the exit status (>= 0), -ETIMEDOUT after
 * killing it at timeout_ms (0: 60000), or a negative errno if it could
 * not start (-ENOENT: no such program). */
int mnt_run(const char *const *argv, int timeout_ms, char *out,
            size_t outlen, char *err, size_t errlen);

#endif /* TANDEM_CSI_MOUNTER_H */
