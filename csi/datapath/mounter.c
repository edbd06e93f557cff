/*
 * mounter.c: filesystems on the node (see mounter.h for the contract).
 *
 * Divisions: running external tools (mnt_run), the mount table
 * (libmount), probing (libblkid) and formatting, mount/bind/umount,
 * growing and stats.
 */
#include "csi/datapath/mounter.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>

#include <blkid/blkid.h>
#include <libmount/libmount.h>

#include "tbase.h"
#include "tlog.h"

extern char **environ;

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ mnt_run -- */

/* Keep the last non-empty line of text (tools print the reason last). */
static void last_line(const char *buf, char *err, size_t errlen)
{
    if (!err || errlen == 0) return;
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                     buf[n - 1] == ' '))
        n--;
    size_t s = n;
    while (s > 0 && buf[s - 1] != '\n') s--;
    size_t len = n - s;
    if (len >= errlen) len = errlen - 1;
    memcpy(err, buf + s, len);
    err[len] = 0;
}

int mnt_run(const char *const *argv, int timeout_ms, char *out,
            size_t outlen, char *err, size_t errlen)
{
    int rc = 0, opipe[2] = {-1, -1}, epipe[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_init = 0, attr_init = 0;
    pid_t pid = -1;
    char ebuf[4096];
    size_t elen = 0, olen = 0;

    if (!argv || !argv[0]) return -EINVAL;
    if (timeout_ms <= 0) timeout_ms = 60000;
    ebuf[0] = 0;
    if (out && outlen) out[0] = 0;
    if (err && errlen) err[0] = 0;
    /* Close-on-exec, so a tool spawned concurrently by another thread
     * never holds our pipe open (its EOF would never come). */
    if (pipe2(epipe, O_CLOEXEC) < 0 || (out && pipe2(opipe, O_CLOEXEC) < 0)) {
        rc = -errno;
        goto out;
    }
    if ((rc = -posix_spawn_file_actions_init(&fa)) < 0) goto out;
    fa_init = 1;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out)
        posix_spawn_file_actions_adddup2(&fa, opipe[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, epipe[1], 2);
    if ((rc = -posix_spawnattr_init(&attr)) < 0) goto out;
    attr_init = 1;
    /* The caller may block or ignore signals (gRPC threads); the tool
     * gets the defaults. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv,
                      environ);
    if (rc != 0) {
        rc = -rc;
        pid = -1;
        seterr(err, errlen, "cannot run %s: %s", argv[0], strerror(-rc));
        goto out;
    }
    close(epipe[1]);
    epipe[1] = -1;
    if (out) {
        close(opipe[1]);
        opipe[1] = -1;
    }

    int64_t deadline = tb_mono_ms() + timeout_ms;
    int timed_out = 0;
    while (epipe[0] >= 0 || opipe[0] >= 0) {
        struct pollfd p[2];
        int n = 0;
        if (epipe[0] >= 0) p[n++] = (struct pollfd){.fd = epipe[0], .events = POLLIN};
        if (opipe[0] >= 0) p[n++] = (struct pollfd){.fd = opipe[0], .events = POLLIN};
        int64_t left = deadline - tb_mono_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        int r = poll(p, (nfds_t)n, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = -errno;
            break;
        }
        for (int i = 0; i < n; i++) {
            if (!p[i].revents) continue;
            char tmp[4096];
            ssize_t k = read(p[i].fd, tmp, sizeof tmp);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) {
                if (p[i].fd == epipe[0]) epipe[0] = -1;
                else opipe[0] = -1;
                close(p[i].fd);
                continue;
            }
            if (p[i].fd == epipe[0]) {
                /* Keep the tail: slide when full. */
                if (elen + (size_t)k >= sizeof ebuf) {
                    size_t drop = elen + (size_t)k - (sizeof ebuf - 1);
                    if (drop > elen) drop = elen;
                    memmove(ebuf, ebuf + drop, elen - drop);
                    elen -= drop;
                }
                size_t cp = (size_t)k;
                if (cp > sizeof ebuf - 1 - elen) cp = sizeof ebuf - 1 - elen;
                memcpy(ebuf + elen, tmp + ((size_t)k - cp), cp);
                elen += cp;
                ebuf[elen] = 0;
            } else if (out && outlen) {
                size_t cp = (size_t)k;
                if (cp > outlen - 1 - olen) cp = outlen - 1 - olen;
                memcpy(out + olen, tmp, cp);
                olen += cp;
                out[olen] = 0;
            }
        }
    }
    int status = 0, reaped = 0;
    /* The pipes can reach EOF long before the tool exits (it closed or
     * redirected its stdout and stderr): the deadline holds for the exit
     * too, or a hung tool would block this thread for ever. */
    while (!timed_out && rc == 0) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            reaped = 1;
            break;
        }
        if (w < 0 && errno != EINTR) {
            rc = -errno;
            reaped = 1; /* not ours to wait for (or kill) any more */
            break;
        }
        if (tb_mono_ms() >= deadline) {
            timed_out = 1;
            break;
        }
        struct timespec d = {0, 5 * 1000000};
        nanosleep(&d, NULL); /* polling the exit with a deadline */
    }
    if (!reaped) {
        if (timed_out || rc < 0) kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) {
                if (rc == 0) rc = -errno;
                break;
            }
        }
    }
    pid = -1;
    if (timed_out) {
        rc = -ETIMEDOUT;
        seterr(err, errlen, "%s timed out after %d ms", argv[0], timeout_ms);
    } else if (rc == 0) {
        if (WIFEXITED(status))
            rc = WEXITSTATUS(status);
        else
            rc = 128 + WTERMSIG(status);
        last_line(ebuf, err, errlen);
    }
out:
    if (epipe[0] >= 0) close(epipe[0]);
    if (epipe[1] >= 0) close(epipe[1]);
    if (opipe[0] >= 0) close(opipe[0]);
    if (opipe[1] >= 0) close(opipe[1]);
    if (fa_init) posix_spawn_file_actions_destroy(&fa);
    if (attr_init) posix_spawnattr_destroy(&attr);
    return rc;
}

/* Run a tool that must succeed: 0, -EIO (exit != 0) or the start error. */
static int run_tool(const char *const *argv, int timeout_ms, char *out,
                    size_t outlen, char *err, size_t errlen)
{
    char e[512];
    int rc = mnt_run(argv, timeout_ms, out, outlen, e, sizeof e);
    if (rc == 0) return 0;
    if (rc > 0) {
        seterr(err, errlen, "%s: exit %d: %s", argv[0], rc, e);
        tlog_warn("mnt.tool_failed", "tool=%s status=%d", argv[0], rc);
        return -EIO;
    }
    seterr(err, errlen, "%s", e);
    return rc;
}

/* -------------------------------------------------------- mount table -- */

/* Canonical absolute path for comparing with mount points.  A path on a
 * dead FUSE mount cannot be resolved (ENOTCONN): resolve its parent and
 * append the last component instead. */
static int canon_path(const char *path, char *out, size_t outlen)
{
    char buf[PATH_MAX];
    if (realpath(path, buf)) {
        if (strlen(buf) >= outlen) return -ENAMETOOLONG;
        strcpy(out, buf);
        return 0;
    }
    int e = errno;
    if (e == ENOENT) return -ENOENT;
    char tmp[PATH_MAX];
    if (strlen(path) >= sizeof tmp) return -ENAMETOOLONG;
    strcpy(tmp, path);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
    char *slash = strrchr(tmp, '/');
    if (!slash) return -e;
    *slash = 0;
    const char *parent = tmp[0] ? tmp : "/";
    if (!realpath(parent, buf)) return -errno;
    if (strlen(buf) + 1 + strlen(slash + 1) + 1 > outlen) return -ENAMETOOLONG;
    /* Lengths were checked above. */
    size_t bl = strcmp(buf, "/") == 0 ? 0 : strlen(buf);
    memcpy(out, buf, bl);
    out[bl] = '/';
    strcpy(out + bl + 1, slash + 1);
    return 0;
}

struct mi_entry {
    char fstype[64];
    char source[PATH_MAX];
};

/* Find the topmost mount (the last one in the table) whose mount point is
 * mp, a canonical path (canon_path: a dead FUSE mount cannot be resolved,
 * so libmount's own canonicalisation is not used).  The table is the one
 * libmount reads (/proc/self/mountinfo), parsed afresh on every call.
 * 1 found, 0 not, negative errno. */
static int mi_lookup(const char *mp, struct mi_entry *res)
{
    struct libmnt_table *tb = mnt_new_table();
    if (!tb) return -ENOMEM;
    int rc = mnt_table_parse_mtab(tb, NULL);
    if (rc < 0) {
        tlog_warn("mnt.table_failed", "err=%d", rc);
        mnt_unref_table(tb);
        return rc < -1 ? rc : -EIO;
    }
    struct libmnt_fs *fs = mnt_table_find_target(tb, mp, MNT_ITER_BACKWARD);
    if (fs && res) {
        const char *src = mnt_fs_get_source(fs);
        const char *type = mnt_fs_get_fstype(fs);
        snprintf(res->source, sizeof res->source, "%s", src ? src : "");
        snprintf(res->fstype, sizeof res->fstype, "%s", type ? type : "");
    }
    mnt_unref_table(tb);
    return fs != NULL;
}

int mnt_is_mounted(const char *path)
{
    char cp[PATH_MAX];
    if (!path || !*path) return -EINVAL;
    int rc = canon_path(path, cp, sizeof cp);
    if (rc == -ENOENT) return 0;
    if (rc < 0) return rc;
    return mi_lookup(cp, NULL);
}

int mnt_dev_is_mounted(dev_t rdev)
{
    struct libmnt_table *tb = mnt_new_table();
    if (!tb) return -ENOMEM;
    int rc = mnt_table_parse_mtab(tb, NULL);
    if (rc == 0)
        rc = mnt_table_find_devno(tb, rdev, MNT_ITER_FORWARD) != NULL;
    else
        rc = rc < -1 ? rc : -EIO;
    mnt_unref_table(tb);
    return rc;
}

int mnt_find_source(const char *path, char *src, size_t srclen,
                    char *fstype, size_t fslen)
{
    char cp[PATH_MAX];
    struct mi_entry e;
    int rc = canon_path(path, cp, sizeof cp);
    if (rc < 0) return rc;
    rc = mi_lookup(cp, &e);
    if (rc < 0) return rc;
    if (rc == 0) return -ENOENT;
    if (src && srclen) snprintf(src, srclen, "%s", e.source);
    if (fstype && fslen) snprintf(fstype, fslen, "%s", e.fstype);
    return 0;
}

/* ------------------------------------------------- probing/formatting -- */

int mnt_probe(const char *dev, char *fstype, size_t fslen, char *err,
              size_t errlen)
{
    struct stat st;
    int rc;
    if (!dev || !fstype || fslen == 0) return -EINVAL;
    fstype[0] = 0;
    if (stat(dev, &st) < 0) {
        rc = -errno;
        seterr(err, errlen, "stat %s: %s", dev, strerror(-rc));
        return rc;
    }
    /* A low-level probe of the device itself (what `blkid -p` does: no
     * cache, superblocks and partition tables).  Like mount(2), it reads
     * the device in this process: bd_find has checked its exporter. */
    errno = 0;
    blkid_probe pr = blkid_new_probe_from_filename(dev);
    if (!pr) {
        rc = errno ? -errno : -EIO;
        seterr(err, errlen, "probing %s: %s", dev, strerror(-rc));
        return rc;
    }
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE |
                                              BLKID_SUBLKS_USAGE);
    blkid_probe_enable_partitions(pr, 1);
    /* 0 found one signature, 1 none, -2 several (ambivalent), -1 error. */
    errno = 0;
    rc = blkid_do_safeprobe(pr);
    if (rc == 0) {
        const char *type = NULL, *pttype = NULL, *usage = NULL;
        blkid_probe_lookup_value(pr, "TYPE", &type, NULL);
        blkid_probe_lookup_value(pr, "PTTYPE", &pttype, NULL);
        blkid_probe_lookup_value(pr, "USAGE", &usage, NULL);
        if (type && *type) snprintf(fstype, fslen, "%s", type);
        else if (pttype && *pttype) snprintf(fstype, fslen, "%s", pttype);
        else snprintf(fstype, fslen, "%s", usage && *usage ? usage : "unknown");
    } else if (rc == -2) {
        /* Several signatures: not blank, whatever it is. */
        snprintf(fstype, fslen, "ambivalent");
        rc = 0;
    } else if (rc == 1) {
        rc = 0; /* blank */
    } else {
        rc = errno ? -errno : -EIO;
        seterr(err, errlen, "probing %s: %s", dev, strerror(-rc));
    }
    blkid_free_probe(pr);
    return rc;
}

#define MAX_MKFS_ARGS 32

int mnt_format_if_blank(const char *dev, const char *fstype,
                        const char *mkfs_options, int *formatted, char *err,
                        size_t errlen)
{
    char found[64], opts[1024];
    const char *argv[MAX_MKFS_ARGS + 8];
    int n = 0, rc;

    if (formatted) *formatted = 0;
    if (!dev || !fstype) return -EINVAL;
    if (strcmp(fstype, "ext4") != 0 && strcmp(fstype, "xfs") != 0) {
        seterr(err, errlen, "unsupported fstype %s (ext4, xfs)", fstype);
        return -EINVAL;
    }
    rc = mnt_probe(dev, found, sizeof found, err, errlen);
    if (rc < 0) return rc;
    if (strcmp(found, fstype) == 0) return 0;
    if (found[0]) {
        seterr(err, errlen, "%s holds %s, not %s: refusing to format", dev,
               found, fstype);
        tlog_warn("mnt.format_refused", "dev=%s found=%s want=%s", dev, found,
                  fstype);
        return -EMEDIUMTYPE;
    }
    if (strcmp(fstype, "ext4") == 0) {
        argv[n++] = "mkfs.ext4";
        argv[n++] = "-q";
    } else {
        /* No -f: mkfs.xfs itself refuses an existing signature too. */
        argv[n++] = "mkfs.xfs";
        argv[n++] = "-q";
    }
    /* mkfsOptions is documented as space-separated argv words (no shell,
     * no quoting), so a plain split is the whole grammar. */
    if (mkfs_options && *mkfs_options) {
        if (strlen(mkfs_options) >= sizeof opts) return -EINVAL;
        strcpy(opts, mkfs_options);
        char *save = NULL;
        for (char *w = strtok_r(opts, " \t", &save); w;
             w = strtok_r(NULL, " \t", &save)) {
            if (n >= MAX_MKFS_ARGS) {
                seterr(err, errlen, "too many mkfs options");
                return -EINVAL;
            }
            argv[n++] = w;
        }
    }
    argv[n++] = dev;
    argv[n] = NULL;
    int64_t t0 = tb_mono_ms();
    rc = run_tool(argv, 300000, NULL, 0, err, errlen);
    if (rc < 0) return rc;
    if (formatted) *formatted = 1;
    tlog_info("mnt.formatted", "dev=%s fstype=%s ms=%lld", dev, fstype,
              (long long)(tb_mono_ms() - t0));
    return 0;
}

/* ------------------------------------------------------- mount/umount -- */

struct flag_map {
    const char *name;
    unsigned long set, clear;
};

static const struct flag_map flag_table[] = {
    {"defaults", 0, 0},
    {"ro", MS_RDONLY, 0},
    {"rw", 0, MS_RDONLY},
    {"noatime", MS_NOATIME, 0},
    {"atime", 0, MS_NOATIME},
    {"nodiratime", MS_NODIRATIME, 0},
    {"diratime", 0, MS_NODIRATIME},
    {"relatime", MS_RELATIME, 0},
    {"norelatime", 0, MS_RELATIME},
    {"strictatime", MS_STRICTATIME, 0},
    {"lazytime", MS_LAZYTIME, 0},
    {"nosuid", MS_NOSUID, 0},
    {"suid", 0, MS_NOSUID},
    {"nodev", MS_NODEV, 0},
    {"dev", 0, MS_NODEV},
    {"noexec", MS_NOEXEC, 0},
    {"exec", 0, MS_NOEXEC},
    {"sync", MS_SYNCHRONOUS, 0},
    {"async", 0, MS_SYNCHRONOUS},
    {"dirsync", MS_DIRSYNC, 0},
};

/* Hand-written rather than libmount's option map: an explicit allow-list,
 * so bind/remount/move/propagation words never reach mount(2).
 * Split CSI mount flags (each may hold several comma-separated words)
 * into MS_* bits and a filesystem data string.  allow_data 0: only MS_*
 * words are accepted (bind mounts). */
static int parse_flags(const char *const *flags, size_t nflags,
                       unsigned long *msf, char *data, size_t datalen,
                       int allow_data, char *err, size_t errlen)
{
    size_t dl = 0;
    *msf = 0;
    if (data && datalen) data[0] = 0;
    for (size_t i = 0; i < nflags; i++) {
        if (!flags[i]) continue;
        char buf[512];
        if (strlen(flags[i]) >= sizeof buf) {
            seterr(err, errlen, "mount flag too long");
            return -EINVAL;
        }
        strcpy(buf, flags[i]);
        char *save = NULL;
        for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
            while (*w == ' ') w++;
            size_t wl = strlen(w);
            while (wl && w[wl - 1] == ' ') w[--wl] = 0;
            if (!wl) continue;
            for (const char *c = w; *c; c++)
                if (!isprint((unsigned char)*c) || *c == ' ') {
                    seterr(err, errlen, "bad mount flag \"%s\"", w);
                    return -EINVAL;
                }
            if (!strcmp(w, "bind") || !strcmp(w, "rbind") ||
                !strcmp(w, "remount") || !strcmp(w, "move")) {
                seterr(err, errlen, "mount flag %s not allowed", w);
                return -EINVAL;
            }
            const struct flag_map *m = NULL;
            for (size_t k = 0; k < sizeof flag_table / sizeof flag_table[0]; k++)
                if (!strcmp(flag_table[k].name, w)) m = &flag_table[k];
            if (m) {
                *msf = (*msf | m->set) & ~m->clear;
                continue;
            }
            if (!allow_data) {
                seterr(err, errlen, "mount flag %s not allowed here", w);
                return -EINVAL;
            }
            if (dl + wl + 2 > datalen) {
                seterr(err, errlen, "mount options too long");
                return -EINVAL;
            }
            if (dl) data[dl++] = ',';
            memcpy(data + dl, w, wl);
            dl += wl;
            data[dl] = 0;
        }
    }
    return 0;
}

/* 1 if the mount source names the same block device as dev. */
static int same_blockdev(const char *source, const char *dev)
{
    struct stat a, b;
    if (stat(source, &a) < 0 || stat(dev, &b) < 0) return 0;
    return S_ISBLK(a.st_mode) && S_ISBLK(b.st_mode) && a.st_rdev == b.st_rdev;
}

int mnt_mount(const char *dev, const char *target, const char *fstype,
              int ro, const char *const *flags, size_t nflags, char *err,
              size_t errlen)
{
    char data[1024], src[PATH_MAX];
    unsigned long msf = 0;
    int rc;

    if (!dev || !target || !fstype || !*fstype) return -EINVAL;
    if (strcmp(fstype, "ext4") && strcmp(fstype, "xfs") &&
        strcmp(fstype, "ext3") && strcmp(fstype, "ext2")) {
        seterr(err, errlen, "unsupported fstype %s", fstype);
        return -EINVAL;
    }
    rc = parse_flags(flags, nflags, &msf, data, sizeof data, 1, err, errlen);
    if (rc < 0) return rc;
    if (ro) msf |= MS_RDONLY;
    rc = mnt_find_source(target, src, sizeof src, NULL, 0);
    if (rc == 0) {
        if (same_blockdev(src, dev)) return 0;
        seterr(err, errlen, "%s already has a mount of %s", target, src);
        return -EBUSY;
    }
    if (rc != -ENOENT) return rc;
    if ((rc = tb_mkdir_p(target, 0750)) < 0) {
        seterr(err, errlen, "mkdir %s: %s", target, strerror(-rc));
        return rc;
    }
    rc = mount(dev, target, fstype, msf, data[0] ? data : NULL) < 0 ? -errno : 0;
    if (rc == -EROFS && (msf & MS_RDONLY)) {
        /* A read-only device whose filesystem wants journal recovery
         * (a crash-consistent replica): mount it without replaying.  The
         * view may miss what only the journal holds; bd_attach's overlay
         * mode avoids that. */
        const char *skip = !strcmp(fstype, "xfs") ? "norecovery" : "noload";
        char d2[sizeof data + 16];
        snprintf(d2, sizeof d2, "%s%s%s", data, data[0] ? "," : "", skip);
        tlog_warn("mnt.mount_norecovery", "dev=%s target=%s opt=%s", dev,
                  target, skip);
        rc = mount(dev, target, fstype, msf, d2) < 0 ? -errno : 0;
    }
    if (rc < 0) {
        seterr(err, errlen, "mount %s on %s (%s, %s): %s", dev, target,
               fstype, data[0] ? data : "-", strerror(-rc));
        tlog_warn("mnt.mount_failed", "dev=%s target=%s fstype=%s err=%d",
                  dev, target, fstype, rc);
        return rc;
    }
    tlog_info("mnt.mounted", "dev=%s target=%s fstype=%s ro=%d", dev, target,
              fstype, ro ? 1 : 0);
    return 0;
}

int mnt_bind(const char *src, const char *target, int ro,
             const char *const *flags, size_t nflags, char *err,
             size_t errlen)
{
    struct stat ss, ts;
    unsigned long msf = 0;
    int rc;

    if (!src || !target) return -EINVAL;
    rc = parse_flags(flags, nflags, &msf, NULL, 0, 0, err, errlen);
    if (rc < 0) return rc;
    if (stat(src, &ss) < 0) {
        rc = -errno;
        seterr(err, errlen, "stat %s: %s", src, strerror(-rc));
        return rc;
    }
    rc = mnt_is_mounted(target);
    if (rc < 0) return rc;
    if (rc == 1) {
        /* A bind mount shows the source's own inode at the target. */
        if (stat(target, &ts) == 0 && ts.st_dev == ss.st_dev &&
            ts.st_ino == ss.st_ino)
            return 0;
        seterr(err, errlen, "%s already has another mount", target);
        return -EBUSY;
    }
    if (S_ISDIR(ss.st_mode)) {
        if ((rc = tb_mkdir_p(target, 0750)) < 0) {
            seterr(err, errlen, "mkdir %s: %s", target, strerror(-rc));
            return rc;
        }
    } else {
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", target);
        char *sl = strrchr(parent, '/');
        if (sl && sl != parent) {
            *sl = 0;
            if ((rc = tb_mkdir_p(parent, 0750)) < 0) return rc;
        }
        int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            rc = -errno;
            seterr(err, errlen, "create %s: %s", target, strerror(-rc));
            return rc;
        }
        close(fd);
    }
    if (mount(src, target, NULL, MS_BIND, NULL) < 0) {
        rc = -errno;
        seterr(err, errlen, "bind %s on %s: %s", src, target, strerror(-rc));
        return rc;
    }
    /* Per-mount flags of a bind mount (ro, nosuid, ...) only take effect
     * through a remount of the bind. */
    if (ro) msf |= MS_RDONLY;
    if (msf) {
        if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | msf, NULL) < 0) {
            rc = -errno;
            seterr(err, errlen, "remount %s (flags 0x%lx): %s", target, msf,
                   strerror(-rc));
            umount2(target, MNT_DETACH);
            return rc;
        }
    }
    tlog_info("mnt.bound", "src=%s target=%s ro=%d", src, target, ro ? 1 : 0);
    return 0;
}

int mnt_umount(const char *path, char *err, size_t errlen)
{
    char cp[PATH_MAX];
    int rc = canon_path(path, cp, sizeof cp);
    if (rc == -ENOENT) return 0;
    if (rc < 0) return rc;
    for (int i = 0; i < 32; i++) {
        struct mi_entry e;
        rc = mi_lookup(cp, &e);
        if (rc < 0) return rc;
        if (rc == 0) return 0;
        if (umount2(cp, UMOUNT_NOFOLLOW) < 0) {
            rc = -errno;
            if (rc == -EINVAL) return 0; /* raced: not a mount point any more */
            if (rc == -ENOTCONN || rc == -EIO) {
                /* A dead FUSE server: detach lazily, nothing to flush. */
                if (umount2(cp, MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
                rc = -errno;
            }
            seterr(err, errlen, "umount %s: %s", cp, strerror(-rc));
            tlog_warn("mnt.umount_failed", "path=%s err=%d", cp, rc);
            return rc;
        }
        tlog_info("mnt.unmounted", "path=%s src=%s", cp, e.source);
    }
    seterr(err, errlen, "umount %s: too many stacked mounts", cp);
    return -EBUSY;
}

/* ----------------------------------------------------------- grow/stats -- */

int mnt_grow_fs(const char *dev, const char *mountpoint, const char *fstype,
                char *err, size_t errlen)
{
    char found[64];
    int rc;
    if (!dev) return -EINVAL;
    if (!fstype || !*fstype) {
        rc = mnt_probe(dev, found, sizeof found, err, errlen);
        if (rc < 0) return rc;
        fstype = found;
    }
    if (!strcmp(fstype, "ext4") || !strcmp(fstype, "ext3") ||
        !strcmp(fstype, "ext2")) {
        if (!mountpoint) {
            /* Offline: resize2fs insists on a freshly checked fs. */
            const char *fsck[] = {"e2fsck", "-f", "-p", dev, NULL};
            char e[512];
            rc = mnt_run(fsck, 300000, NULL, 0, e, sizeof e);
            /* 0: clean, 1: errors corrected; anything else is trouble. */
            if (rc != 0 && rc != 1) {
                seterr(err, errlen, "e2fsck -f -p %s: exit %d: %s", dev, rc, e);
                return rc < 0 ? rc : -EIO;
            }
        }
        const char *argv[] = {"resize2fs", dev, NULL};
        rc = run_tool(argv, 300000, NULL, 0, err, errlen);
    } else if (!strcmp(fstype, "xfs")) {
        if (!mountpoint) {
            seterr(err, errlen, "xfs grows only while mounted");
            return -EINVAL;
        }
        const char *argv[] = {"xfs_growfs", mountpoint, NULL};
        rc = run_tool(argv, 300000, NULL, 0, err, errlen);
    } else {
        seterr(err, errlen, "cannot grow fstype \"%s\"", fstype);
        return -EINVAL;
    }
    if (rc == 0)
        tlog_info("mnt.grown", "dev=%s mountpoint=%s fstype=%s", dev,
                  mountpoint ? mountpoint : "-", fstype);
    return rc;
}

int mnt_stats(const char *path, struct mnt_stats *out)
{
    struct stat st;
    if (!path || !out) return -EINVAL;
    memset(out, 0, sizeof *out);
    if (stat(path, &st) < 0) return -errno;
    if (S_ISBLK(st.st_mode)) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return -errno;
        uint64_t sz = 0;
        int rc = ioctl(fd, BLKGETSIZE64, &sz) < 0 ? -errno : 0;
        close(fd);
        if (rc < 0) return rc;
        out->is_block = 1;
        out->bytes_total = sz;
        return 0;
    }
    struct statvfs sv;
    if (statvfs(path, &sv) < 0) return -errno;
    uint64_t fr = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
    out->bytes_total = (uint64_t)sv.f_blocks * fr;
    out->bytes_used = (uint64_t)(sv.f_blocks - sv.f_bfree) * fr;
    out->bytes_avail = (uint64_t)sv.f_bavail * fr;
    out->inodes_total = sv.f_files;
    out->inodes_free = sv.f_ffree;
    out->inodes_used = sv.f_files >= sv.f_ffree ? sv.f_files - sv.f_ffree : 0;
    return 0;
}
