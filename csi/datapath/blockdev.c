/*
 * blockdev.c: attach a journaled volume as a loop device over the FUSE
 * image served by tandem-volfuse (see blockdev.h for the contract and the
 * run_dir layout).
 *
 * Divisions: small file helpers, exporter processes (spawn, readiness,
 * liveness, waiting for exit through a pidfd), loop devices (configure,
 * clear, wait until really free), then the public functions.
 */
#include "csi/datapath/blockdev.h"

#include <dirent.h>
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
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include "csi/datapath/mounter.h"
#include "tbase.h"
#include "tlog.h"

extern char **environ;

#define EXPORTER_NAME "tandem-volfuse"
#define DEFAULT_READY_MS 30000
#define EXIT_WAIT_MS 30000   /* exporter flushes and closes the volume */
#define LOOP_FREE_WAIT_MS 10000
#define FAIL_WAIT_MS 1000    /* an exporter that never got ready */
#define LOOP_BLOCK_SIZE 4096

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

/* Sleep a little while polling a condition that has no event to wait on
 * (sysfs state of a loop device).  Always paired with a deadline. */
static void poll_pause(void)
{
    struct timespec d = {0, 5 * 1000 * 1000};
    nanosleep(&d, NULL);
}

/* ------------------------------------------------------- file helpers -- */

/* Hand-written on purpose: the run-dir files (attach, pid, dev) and the
 * exporter's readiness line are tandem's own one-line formats. */

/* Copy src into out (size outlen), truncating; always NUL-terminated. */
static void scpy(char *out, size_t outlen, const char *src)
{
    if (!outlen) return;
    size_t n = strlen(src);
    if (n >= outlen) n = outlen - 1;
    memcpy(out, src, n);
    out[n] = 0;
}

static int path_join(char *out, size_t outlen, const char *dir,
                     const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* Read a small file into buf (NUL-terminated, trailing newlines cut). */
static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n;
    do n = read(fd, buf, len - 1);
    while (n < 0 && errno == EINTR);
    int e = errno;
    close(fd);
    if (n < 0) return -e;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
    return 0;
}

/* Write a small file atomically (tmp + rename), so a reader after a crash
 * sees the old or the new content, never half. */
static int write_small(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int rc;
    if ((rc = path_join(path, sizeof path, dir, name)) < 0) return rc;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    size_t len = strlen(text);
    rc = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
    if (rc < 0) unlink(tmp);
    return rc;
}

static void remove_in(const char *dir, const char *name)
{
    char p[PATH_MAX];
    if (path_join(p, sizeof p, dir, name) == 0) unlink(p);
}

/* The attach record: what bd_reattach_all needs to attach again. */
struct attach_rec {
    char vol_id[256];
    char region[128];
    char config[PATH_MAX];
    int read_only;
    int overlay;
};

static int rec_load(const char *run_dir, struct attach_rec *r)
{
    char path[PATH_MAX], buf[PATH_MAX + 512];
    int rc;
    memset(r, 0, sizeof *r);
    if ((rc = path_join(path, sizeof path, run_dir, "attach")) < 0) return rc;
    if ((rc = read_small(path, buf, sizeof buf)) < 0) return rc;
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(l, "vol=", 4)) scpy(r->vol_id, sizeof r->vol_id, l + 4);
        else if (!strncmp(l, "region=", 7)) scpy(r->region, sizeof r->region, l + 7);
        else if (!strncmp(l, "config=", 7)) scpy(r->config, sizeof r->config, l + 7);
        else if (!strncmp(l, "ro=", 3)) r->read_only = atoi(l + 3) != 0;
        else if (!strncmp(l, "overlay=", 8)) r->overlay = atoi(l + 8) != 0;
    }
    return r->vol_id[0] ? 0 : -EINVAL;
}

static int rec_save(const char *run_dir, const struct bd_attach_opts *o)
{
    char buf[PATH_MAX + 512];
    int n = snprintf(buf, sizeof buf,
                     "vol=%s\nregion=%s\nconfig=%s\nro=%d\noverlay=%d\n",
                     o->vol_id, o->region, o->config_path,
                     o->read_only && !o->overlay ? 1 : 0, o->overlay ? 1 : 0);
    if (n < 0 || (size_t)n >= sizeof buf) return -ENAMETOOLONG;
    return write_small(run_dir, "attach", buf);
}

/* ------------------------------------------------------------ exporter -- */

/* /proc/PID/cmdline and /proc/PID/stat are read by hand: two fields, which
 * no library (libprocps) is worth a dependency for.
 *
 * 1 if pid's command line has "--run-dir RUN" (a pid file can outlive
 * its process, and the pid be reused by another volume's exporter), or is
 * empty (exiting). */
static int cmdline_has_run_dir(pid_t pid, const char *run)
{
    char p[64], buf[8192];
    snprintf(p, sizeof p, "/proc/%ld/cmdline", (long)pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    /* Empty: the process is exiting (its memory is gone already); it is
     * still ours to wait for. */
    if (n == 0) return 1;
    if (n < 0) return 0;
    buf[n] = 0;
    for (ssize_t i = 0; i < n;) {
        const char *arg = buf + i;
        size_t len = strlen(arg);
        if (!strcmp(arg, "--run-dir") && i + (ssize_t)len + 1 < n)
            return strcmp(arg + len + 1, run) == 0;
        i += (ssize_t)len + 1;
    }
    return 0;
}

/* 1 if pid is a live tandem-volfuse process (not a zombie, not a reused
 * pid of something else) serving run dir run (NULL: any). */
static int exporter_alive_for(pid_t pid, const char *run)
{
    char p[64], comm[64], stat[512];
    if (pid <= 0) return 0;
    if (run && !cmdline_has_run_dir(pid, run)) return 0;
    snprintf(p, sizeof p, "/proc/%ld/comm", (long)pid);
    if (read_small(p, comm, sizeof comm) < 0) return 0;
    if (strcmp(comm, EXPORTER_NAME) != 0) return 0;
    snprintf(p, sizeof p, "/proc/%ld/stat", (long)pid);
    if (read_small(p, stat, sizeof stat) < 0) return 0;
    const char *rp = strrchr(stat, ')');
    if (!rp || rp[1] != ' ') return 0;
    return rp[2] != 'Z' && rp[2] != 'X';
}


static pid_t read_pid(const char *run_dir)
{
    char path[PATH_MAX], buf[32];
    if (path_join(path, sizeof path, run_dir, "pid") < 0) return -1;
    if (read_small(path, buf, sizeof buf) < 0) return -1;
    long v = strtol(buf, NULL, 10);
    return v > 0 && v < INT_MAX ? (pid_t)v : -1;
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static int pidfd_signal_(int pfd, int sig)
{
#ifdef SYS_pidfd_send_signal
    return (int)syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/* Wait until the process behind pidfd pfd exits (it is not our child: a
 * pidfd becomes readable when it terminates), up to ms.  0 gone,
 * -ETIMEDOUT still there. */
static int wait_pidfd(int pfd, int ms)
{
    int64_t deadline = tb_mono_ms() + ms;
    for (;;) {
        int64_t left = deadline - tb_mono_ms();
        if (left < 0) left = 0;
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r > 0) return 0;
        if (r < 0 && errno != EINTR) return -errno;
        if (r == 0) return -ETIMEDOUT;
    }
}

/* Stop the exporter of run dir run: wait for it to leave on its own (it
 * does once its mount is gone), then SIGTERM, then SIGKILL.  Signals go
 * through a pidfd, so a pid reused meanwhile is never hit. */
static void stop_exporter(pid_t pid, const char *run, int grace_ms)
{
    if (!exporter_alive_for(pid, run)) return;
    int pfd = pidfd_open_(pid);
    if (pfd < 0) {
        /* No pidfd (old kernel): poll liveness, signal by pid. */
        int64_t deadline = tb_mono_ms() + grace_ms;
        while (exporter_alive_for(pid, run) && tb_mono_ms() < deadline)
            poll_pause();
        if (exporter_alive_for(pid, run)) kill(pid, SIGKILL);
        return;
    }
    /* The pid may have been reused between the check and pidfd_open. */
    if (!exporter_alive_for(pid, run)) goto out;
    if (wait_pidfd(pfd, grace_ms) == 0) goto out;
    tlog_warn("bd.exporter_term", "pid=%ld", (long)pid);
    pidfd_signal_(pfd, SIGTERM);
    if (wait_pidfd(pfd, 5000) == 0) goto out;
    tlog_warn("bd.exporter_kill", "pid=%ld", (long)pid);
    pidfd_signal_(pfd, SIGKILL);
    wait_pidfd(pfd, 5000);
out:
    close(pfd);
}

static int find_exporter(const char *given, char *out, size_t outlen)
{
    if (given && *given) {
        scpy(out, outlen, given);
        return 0;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *sl = strrchr(self, '/');
        if (sl) {
            *sl = 0;
            if (snprintf(out, outlen, "%s/%s", self, EXPORTER_NAME) <
                    (int)outlen &&
                access(out, X_OK) == 0)
                return 0;
        }
    }
    scpy(out, outlen, EXPORTER_NAME); /* $PATH */
    return 0;
}

/* Last non-empty line of the exporter's log, for error messages. */
static void log_tail(const char *run_dir, char *out, size_t outlen)
{
    char path[PATH_MAX];
    out[0] = 0;
    if (path_join(path, sizeof path, run_dir, "log") < 0) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[2048];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t start = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof buf - 1, start);
    close(fd);
    if (n <= 0) return;
    buf[n] = 0;
    while (n > 0 && buf[n - 1] == '\n') buf[--n] = 0;
    char *l = strrchr(buf, '\n');
    scpy(out, outlen, l ? l + 1 : buf);
}

/* Spawn the exporter and wait for its readiness line.  On success *pid is
 * the (daemonised) exporter's pid. */
static int spawn_exporter(const struct bd_attach_opts *o, const char *run,
                          const char *mnt, int force, pid_t *pid, char *err,
                          size_t errlen)
{
    char exe[PATH_MAX], logp[PATH_MAX];
    int rc, pfd[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_init = 0, attr_init = 0;
    pid_t child = -1;

    *pid = -1;
    find_exporter(o->exporter_path, exe, sizeof exe);
    if ((rc = path_join(logp, sizeof logp, run, "log")) < 0) return rc;
    if (pipe2(pfd, O_CLOEXEC) < 0) return -errno;
    /* The child gets the write end as fd 3; dup2 onto the same number
     * would keep close-on-exec, so keep it away from 3. */
    if (pfd[1] == 3) {
        int d = fcntl(pfd[1], F_DUPFD_CLOEXEC, 10);
        if (d < 0) {
            rc = -errno;
            goto out;
        }
        close(pfd[1]);
        pfd[1] = d;
    }
    if ((rc = -posix_spawn_file_actions_init(&fa)) < 0) goto out;
    fa_init = 1;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, logp,
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 3);
    if ((rc = -posix_spawnattr_init(&attr)) < 0) goto out;
    attr_init = 1;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);

    const char *argv[24];
    int n = 0;
    argv[n++] = exe;
    argv[n++] = "--config";
    argv[n++] = o->config_path;
    argv[n++] = "--region";
    argv[n++] = o->region;
    argv[n++] = "--volume";
    argv[n++] = o->vol_id;
    argv[n++] = "--mountpoint";
    argv[n++] = mnt;
    argv[n++] = "--run-dir";
    argv[n++] = run;
    argv[n++] = "--ready-fd";
    argv[n++] = "3";
    if (o->overlay) argv[n++] = "--overlay";
    else if (o->read_only) argv[n++] = "--read-only";
    if (force) argv[n++] = "--force";
    if (o->owner && *o->owner) {
        argv[n++] = "--owner";
        argv[n++] = o->owner;
    }
    argv[n] = NULL;
    rc = posix_spawnp(&child, exe, &fa, &attr, (char *const *)argv, environ);
    if (rc != 0) {
        rc = -rc;
        seterr(err, errlen, "cannot run %s: %s", exe, strerror(-rc));
        goto out;
    }
    close(pfd[1]);
    pfd[1] = -1;

    /* Readiness: one line, then EOF.  EOF without a line: it died. */
    int timeout = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_READY_MS;
    int64_t deadline = tb_mono_ms() + timeout;
    char line[512];
    size_t len = 0;
    line[0] = 0;
    for (;;) {
        int64_t left = deadline - tb_mono_ms();
        if (left <= 0) {
            rc = -ETIMEDOUT;
            break;
        }
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = -errno;
            break;
        }
        if (r == 0) continue;
        ssize_t k = read(pfd[0], line + len, sizeof line - 1 - len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            rc = len ? 0 : -EIO;
            break;
        }
        len += (size_t)k;
        line[len] = 0;
        if (strchr(line, '\n') || len == sizeof line - 1) {
            rc = 0;
            break;
        }
    }
    /* The spawned process forks the real exporter into the background
     * and exits at once (readiness comes from that child, so it has
     * forked by now).  Reap it; one stuck before forking is killed. */
    {
        int st;
        pid_t w;
        do w = waitpid(child, &st, WNOHANG);
        while (w < 0 && errno == EINTR);
        if (w == 0) {
            int64_t until = tb_mono_ms() + 1000;
            while ((w = waitpid(child, &st, WNOHANG)) == 0 && tb_mono_ms() < until)
                poll_pause();
            if (w == 0) {
                kill(child, SIGKILL);
                while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
                }
            }
        }
    }
    line[strcspn(line, "\n")] = 0;
    if (rc == 0 && !strncmp(line, "ok ", 3)) {
        *pid = (pid_t)strtol(line + 3, NULL, 10);
        rc = 0;
    } else if (rc == 0 && !strncmp(line, "err ", 4)) {
        char *end = NULL;
        long e = strtol(line + 4, &end, 10);
        rc = e > 0 && e < 4096 ? -(int)e : -EIO;
        seterr(err, errlen, "exporter: %s", end && *end ? end + 1 : line);
    } else {
        if (rc == 0) rc = -EIO;
        char tail[512];
        log_tail(run, tail, sizeof tail);
        seterr(err, errlen, "exporter %s: %s (log: %s)",
               rc == -ETIMEDOUT ? "not ready in time" : "died", line,
               tail[0] ? tail : "-");
    }
out:
    if (pfd[0] >= 0) close(pfd[0]);
    if (pfd[1] >= 0) close(pfd[1]);
    if (fa_init) posix_spawn_file_actions_destroy(&fa);
    if (attr_init) posix_spawnattr_destroy(&attr);
    return rc;
}

/* ---------------------------------------------------------- loop devs -- */

static int loop_number(const char *dev)
{
    if (strncmp(dev, "/dev/loop", 9) != 0) return -EINVAL;
    char *end = NULL;
    long n = strtol(dev + 9, &end, 10);
    if (end == dev + 9 || *end || n < 0 || n > (1 << 20)) return -EINVAL;
    return (int)n;
}

/* The loop device's backing file as the kernel reports it ("" if none). */
static int loop_backing(int n, char *out, size_t outlen)
{
    char p[96];
    snprintf(p, sizeof p, "/sys/block/loop%d/loop/backing_file", n);
    int rc = read_small(p, out, outlen);
    if (rc == -ENOENT) {
        out[0] = 0;
        return 0;
    }
    return rc;
}

/* Open /dev/loopN, creating the node if devtmpfs did not (containers). */
static int open_loop(int n, int flags)
{
    char p[64];
    snprintf(p, sizeof p, "/dev/loop%d", n);
    int fd = open(p, flags | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (mknod(p, S_IFBLK | 0660, makedev(7, (unsigned)n)) < 0 &&
            errno != EEXIST)
            return -errno;
        fd = open(p, flags | O_CLOEXEC);
    }
    return fd < 0 ? -errno : fd;
}

/* Attach a free loop device to image; *n is its number. */
static int loop_attach(const char *image, const char *vol_id, int ro, int *n,
                       int *dio, char *err, size_t errlen)
{
    int rc = 0, ctl = -1, ffd = -1, lfd = -1;
    ffd = open(image, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (ffd < 0) {
        rc = -errno;
        seterr(err, errlen, "open %s: %s", image, strerror(-rc));
        return rc;
    }
    ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        rc = -errno;
        seterr(err, errlen, "open /dev/loop-control: %s", strerror(-rc));
        goto out;
    }
    /* GET_FREE then CONFIGURE races with other users of loop devices:
     * EBUSY means someone took it first; ask again. */
    for (int attempt = 0; attempt < 64; attempt++) {
        int num = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (num < 0) {
            rc = -errno;
            seterr(err, errlen, "LOOP_CTL_GET_FREE: %s", strerror(-rc));
            goto out;
        }
        lfd = open_loop(num, ro ? O_RDONLY : O_RDWR);
        if (lfd < 0) {
            rc = lfd;
            lfd = -1;
            seterr(err, errlen, "open /dev/loop%d: %s", num, strerror(-rc));
            goto out;
        }
        struct loop_config lc;
        memset(&lc, 0, sizeof lc);
        lc.fd = (uint32_t)ffd;
        lc.block_size = LOOP_BLOCK_SIZE;
        lc.info.lo_flags = (ro ? LO_FLAGS_READ_ONLY : 0) | LO_FLAGS_DIRECT_IO;
        snprintf((char *)lc.info.lo_file_name, sizeof lc.info.lo_file_name,
                 "tandem:%s", vol_id);
        int r = ioctl(lfd, LOOP_CONFIGURE, &lc);
        if (r < 0 && errno == EINVAL) {
            /* Older kernels refuse direct I/O over some files: go
             * buffered (the FUSE file is direct_io anyway). */
            lc.info.lo_flags &= ~(uint32_t)LO_FLAGS_DIRECT_IO;
            r = ioctl(lfd, LOOP_CONFIGURE, &lc);
        }
        if (r == 0) {
            struct loop_info64 li;
            *dio = ioctl(lfd, LOOP_GET_STATUS64, &li) == 0 &&
                   (li.lo_flags & LO_FLAGS_DIRECT_IO);
            if (!*dio) {
                /* Try switching it on after the fact. */
                if (ioctl(lfd, LOOP_SET_DIRECT_IO, 1UL) == 0) *dio = 1;
            }
            *n = num;
            rc = 0;
            goto out;
        }
        rc = -errno;
        close(lfd);
        lfd = -1;
        if (rc != -EBUSY) {
            seterr(err, errlen, "LOOP_CONFIGURE /dev/loop%d: %s", num,
                   strerror(-rc));
            goto out;
        }
    }
    seterr(err, errlen, "no free loop device (kept racing)");
    rc = -EBUSY;
out:
    if (lfd >= 0) close(lfd);
    if (ctl >= 0) close(ctl);
    if (ffd >= 0) close(ffd);
    return rc;
}

/* Clear loop device n if (and only if) it is backed by image; wait until
 * the kernel really let go of it.  recorded: n is the device our record
 * names, so a backing path of exactly "/image" is ours too (the path the
 * kernel shows once the FUSE mount under it was detached lazily, e.g. by
 * an exporter killed with SIGTERM by an older build or by hand). */
static int loop_detach(int n, const char *image, int recorded, char *err,
                       size_t errlen)
{
    char back[PATH_MAX];
    int rc = loop_backing(n, back, sizeof back);
    if (rc < 0) return rc;
    if (!back[0]) return 0;                    /* already free */
    /* Compare as a prefix: the kernel appends " (deleted)" when the
     * file went away. */
    int ours = strncmp(back, image, strlen(image)) == 0;
    if (!ours && recorded && strncmp(back, "/image", 6) == 0 &&
        (back[6] == 0 || back[6] == ' ')) {
        ours = 1;
        image = back; /* wait below for this path to go away */
    }
    if (!ours) return 0;
    char want[PATH_MAX];
    scpy(want, sizeof want, image);
    image = want;
    int fd = open_loop(n, O_RDONLY);
    if (fd < 0) return fd;
    struct stat st;
    /* An unreadable mount table is not "not mounted": never clear a loop
     * device a filesystem may still sit on. */
    int m = fstat(fd, &st) == 0 ? mnt_dev_is_mounted(st.st_rdev) : 0;
    if (m != 0) {
        close(fd);
        if (m < 0) {
            seterr(err, errlen, "/dev/loop%d: mount table unreadable: %s", n,
                   strerror(-m));
            return m;
        }
        seterr(err, errlen, "/dev/loop%d is still mounted", n);
        return -EBUSY;
    }
    rc = 0;
    if (ioctl(fd, LOOP_CLR_FD, 0) < 0 && errno != ENXIO) {
        rc = -errno;
    }
    close(fd);
    if (rc < 0) {
        seterr(err, errlen, "LOOP_CLR_FD /dev/loop%d: %s", n, strerror(-rc));
        return rc;
    }
    /* When someone else still has the device open the kernel only marks
     * it autoclear; wait for the backing file to be really gone. */
    int64_t deadline = tb_mono_ms() + LOOP_FREE_WAIT_MS;
    for (;;) {
        if ((rc = loop_backing(n, back, sizeof back)) < 0) return rc;
        /* Free, or already taken by someone else: either way not ours. */
        if (!back[0] || strncmp(back, image, strlen(image)) != 0) return 0;
        if (tb_mono_ms() >= deadline) {
            seterr(err, errlen, "/dev/loop%d still busy after clear", n);
            return -EBUSY;
        }
        poll_pause();
    }
}

/* --------------------------------------------------------------- public -- */

struct paths {
    char run[PATH_MAX];   /* canonical run_dir */
    char mnt[PATH_MAX];
    char image[PATH_MAX];
};

static int make_paths(const char *run_dir, struct paths *p)
{
    if (!run_dir || run_dir[0] != '/') return -EINVAL;
    if (!realpath(run_dir, p->run)) {
        if (errno != ENOENT) return -errno;
        if (strlen(run_dir) >= sizeof p->run) return -ENAMETOOLONG;
        strcpy(p->run, run_dir);
    }
    if (path_join(p->mnt, sizeof p->mnt, p->run, "mnt") < 0) return -ENAMETOOLONG;
    if (path_join(p->image, sizeof p->image, p->mnt, "image") < 0)
        return -ENAMETOOLONG;
    return 0;
}

int bd_find(const char *run_dir, char *dev, size_t devlen)
{
    struct paths p;
    char buf[64], back[PATH_MAX], path[PATH_MAX];
    int rc = make_paths(run_dir, &p);
    if (rc < 0) return rc;
    if (dev && devlen) dev[0] = 0;
    if ((rc = path_join(path, sizeof path, p.run, "dev")) < 0) return rc;
    if (read_small(path, buf, sizeof buf) < 0) {
        /* No device recorded: an exporter alone is a half-done attach. */
        pid_t pid = read_pid(p.run);
        return exporter_alive_for(pid, p.run) || mnt_is_mounted(p.mnt) == 1
                   ? -ESTALE
                   : -ENOENT;
    }
    if (dev && devlen) scpy(dev, devlen, buf);
    int n = loop_number(buf);
    if (n < 0) return -ESTALE;
    if (!exporter_alive_for(read_pid(p.run), p.run)) return -ESTALE;
    if (loop_backing(n, back, sizeof back) < 0 || strcmp(back, p.image) != 0)
        return -ESTALE;
    return 0;
}

/* Undo whatever part of an attachment exists.  keep_record: leave the
 * attach record (re-attach reads it).  Removes run_dir when everything
 * is gone and keep_record is 0.  grace_ms: how long the exporter may take
 * to flush and exit by itself before it is signalled. */
static int detach_paths(const struct paths *p, int keep_record, int grace_ms,
                        char *err, size_t errlen)
{
    char buf[64], path[PATH_MAX];
    int rc;
    struct stat st;
    if (stat(p->run, &st) < 0) return errno == ENOENT ? 0 : -errno;

    /* 1. the loop device: the recorded one, and any other on our image
     * (an attach that died between LOOP_CONFIGURE and recording it) */
    if (path_join(path, sizeof path, p->run, "dev") == 0 &&
        read_small(path, buf, sizeof buf) == 0) {
        int n = loop_number(buf);
        if (n >= 0 && (rc = loop_detach(n, p->image, 1, err, errlen)) < 0)
            return rc;
    }
    DIR *d = opendir("/sys/block");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int n;
        char back[PATH_MAX];
        if (sscanf(e->d_name, "loop%d", &n) != 1) continue;
        if (loop_backing(n, back, sizeof back) < 0 ||
            strncmp(back, p->image, strlen(p->image)) != 0)
            continue;
        if ((rc = loop_detach(n, p->image, 0, err, errlen)) < 0) {
            closedir(d);
            return rc;
        }
    }
    if (d) closedir(d);
    remove_in(p->run, "dev");
    /* 2. the FUSE mount: its exporter then sees the unmount and exits */
    pid_t pid = read_pid(p->run);
    if ((rc = mnt_umount(p->mnt, err, errlen)) < 0) {
        if (rc != -EBUSY) return rc;
        /* Still held by someone with the image open: detach it lazily
         * (their I/O fails once the exporter is gone). */
        tlog_warn("bd.fuse_busy", "mnt=%s", p->mnt);
        if (umount2(p->mnt, MNT_DETACH) < 0 && errno != EINVAL) {
            seterr(err, errlen, "umount %s: %s", p->mnt, strerror(errno));
            return -errno;
        }
    }
    /* 3. the exporter */
    if (pid > 0) stop_exporter(pid, p->run, grace_ms);
    if (exporter_alive_for(pid, p->run)) {
        seterr(err, errlen, "exporter %ld does not exit", (long)pid);
        return -EBUSY;
    }
    /* 4. state */
    remove_in(p->run, "pid");
    remove_in(p->run, "dev.tmp");
    remove_in(p->run, "pid.tmp");
    rmdir(p->mnt);
    if (!keep_record) {
        remove_in(p->run, "attach");
        remove_in(p->run, "attach.tmp");
        remove_in(p->run, "log");
        if (rmdir(p->run) < 0 && errno != ENOENT) {
            rc = -errno;
            seterr(err, errlen, "rmdir %s: %s", p->run, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

int bd_detach(const char *run_dir, char *err, size_t errlen)
{
    struct paths p;
    int rc = make_paths(run_dir, &p);
    if (rc < 0) return rc;
    rc = detach_paths(&p, 0, EXIT_WAIT_MS, err, errlen);
    if (rc == 0)
        tlog_info("bd.detached", "run_dir=%s", p.run);
    else
        tlog_warn("bd.detach_failed", "run_dir=%s err=%d", p.run, rc);
    return rc;
}

int bd_attach(const struct bd_attach_opts *o, char *dev, size_t devlen,
              char *err, size_t errlen)
{
    struct paths p;
    struct attach_rec rec;
    char found[64];
    int rc, force;

    if (err && errlen) err[0] = 0;
    if (!o || !o->config_path || !o->region || !o->vol_id || !o->run_dir ||
        !dev || devlen == 0)
        return -EINVAL;
    if ((rc = make_paths(o->run_dir, &p)) < 0) return rc;
    if ((rc = tb_mkdir_p(p.run, 0700)) < 0) {
        seterr(err, errlen, "mkdir %s: %s", p.run, strerror(-rc));
        return rc;
    }
    if ((rc = make_paths(o->run_dir, &p)) < 0) return rc; /* now canonical */
    force = o->force;

    if (rec_load(p.run, &rec) == 0) {
        if (strcmp(rec.vol_id, o->vol_id) != 0) {
            seterr(err, errlen, "%s holds volume %s", p.run, rec.vol_id);
            return -EEXIST;
        }
        rc = bd_find(p.run, found, sizeof found);
        if (rc == 0) {
            if ((rec.read_only || rec.overlay) && !o->read_only &&
                !o->overlay) {
                seterr(err, errlen, "attached read-only");
                return -EROFS;
            }
            scpy(dev, devlen, found);
            return 0;
        }
        /* A dead or half-made attachment of this volume: our own exporter
         * died holding the writer lease, so take it over. */
        tlog_warn("bd.stale", "run_dir=%s vol=%s err=%d", p.run, o->vol_id, rc);
        if ((rc = detach_paths(&p, 1, EXIT_WAIT_MS, err, errlen)) < 0)
            return rc;
        force = 1;
    } else if (mnt_is_mounted(p.mnt) == 1 || read_pid(p.run) > 0) {
        /* Leftovers without a record (crash during a first attach). */
        if ((rc = detach_paths(&p, 1, EXIT_WAIT_MS, err, errlen)) < 0)
            return rc;
    }

    if ((rc = rec_save(p.run, o)) < 0) {
        seterr(err, errlen, "write attach record: %s", strerror(-rc));
        return rc;
    }
    if (mkdir(p.mnt, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        seterr(err, errlen, "mkdir %s: %s", p.mnt, strerror(-rc));
        goto fail;
    }
    int64_t t0 = tb_mono_ms();
    pid_t pid;
    if ((rc = spawn_exporter(o, p.run, p.mnt, force, &pid, err, errlen)) < 0)
        goto fail;
    int n = -1, dio = 0;
    if ((rc = loop_attach(p.image, o->vol_id, o->read_only && !o->overlay,
                          &n, &dio, err, errlen)) < 0)
        goto fail;
    snprintf(found, sizeof found, "/dev/loop%d\n", n);
    if ((rc = write_small(p.run, "dev", found)) < 0) {
        char tmp[256];
        loop_detach(n, p.image, 0, tmp, sizeof tmp);
        seterr(err, errlen, "write dev record: %s", strerror(-rc));
        goto fail;
    }
    snprintf(dev, devlen, "/dev/loop%d", n);
    tlog_info("bd.attached",
              "vol=%s dev=%s pid=%ld ro=%d overlay=%d dio=%d force=%d ms=%lld",
              o->vol_id, dev, (long)pid, o->read_only ? 1 : 0,
              o->overlay ? 1 : 0, dio, force, (long long)(tb_mono_ms() - t0));
    return 0;

fail:
    tlog_warn("bd.attach_failed", "vol=%s err=%d", o->vol_id, rc);
    {
        char tmp[256];
        /* An exporter that failed to get ready has nothing to flush:
         * a short grace, then SIGTERM (it unmounts and closes). */
        detach_paths(&p, 0, FAIL_WAIT_MS, tmp, sizeof tmp);
    }
    return rc;
}

int bd_size(const char *run_dir, uint64_t *size)
{
    struct paths p;
    struct stat st;
    int rc = make_paths(run_dir, &p);
    if (rc < 0) return rc;
    if ((rc = bd_find(p.run, NULL, 0)) < 0) return rc;
    if (stat(p.image, &st) < 0) return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int bd_resize(const char *run_dir, uint64_t new_size, char *err,
              size_t errlen)
{
    struct paths p;
    struct attach_rec rec;
    char dev[64];
    struct stat st;
    int rc = make_paths(run_dir, &p);
    if (rc < 0) return rc;
    if ((rc = bd_find(p.run, dev, sizeof dev)) < 0) {
        seterr(err, errlen, "%s: not attached", p.run);
        return rc;
    }
    if (rec_load(p.run, &rec) == 0 && (rec.read_only || rec.overlay)) {
        seterr(err, errlen, "attached read-only");
        return -EROFS;
    }
    if (stat(p.image, &st) < 0) return -errno;
    if (new_size < (uint64_t)st.st_size) {
        seterr(err, errlen, "shrinking %llu to %llu is not supported",
               (unsigned long long)st.st_size, (unsigned long long)new_size);
        return -EINVAL;
    }
    if (new_size > (uint64_t)st.st_size) {
        /* The exporter turns a size change of its image into jr_resize. */
        if (truncate(p.image, (off_t)new_size) < 0) {
            rc = -errno;
            seterr(err, errlen, "resize %s: %s", p.image, strerror(-rc));
            return rc;
        }
    }
    /* Always refresh the loop capacity: a previous call may have resized
     * the volume and died before this step. */
    int fd = open(dev, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    rc = ioctl(fd, LOOP_SET_CAPACITY, 0) < 0 ? -errno : 0;
    uint64_t bytes = 0;
    if (rc == 0 && ioctl(fd, BLKGETSIZE64, &bytes) < 0) rc = -errno;
    close(fd);
    if (rc < 0) {
        seterr(err, errlen, "LOOP_SET_CAPACITY %s: %s", dev, strerror(-rc));
        return rc;
    }
    if (bytes != new_size) {
        seterr(err, errlen, "%s has %llu bytes after resize to %llu", dev,
               (unsigned long long)bytes, (unsigned long long)new_size);
        return -EIO;
    }
    tlog_info("bd.resized", "run_dir=%s dev=%s size=%llu", p.run, dev,
              (unsigned long long)new_size);
    return 0;
}

int bd_reattach_all(const char *runs_root, const char *config_path,
                    const char *exporter_path, bd_reattach_cb cb, void *arg)
{
    DIR *d = opendir(runs_root);
    if (!d) return errno == ENOENT ? 0 : -errno;
    int first_err = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char run[PATH_MAX], dev[64] = "", err[256];
        struct attach_rec rec;
        if (path_join(run, sizeof run, runs_root, e->d_name) < 0) continue;
        if (rec_load(run, &rec) < 0) continue;
        int rc = bd_find(run, dev, sizeof dev);
        if (rc == -ESTALE || rc == -ENOENT) {
            /* A filesystem still mounted on the dead device cannot get
             * the device back: the caller must unmount and stage again. */
            int n = dev[0] ? loop_number(dev) : -1;
            struct stat st;
            int m = n >= 0 && stat(dev, &st) == 0
                        ? mnt_dev_is_mounted(st.st_rdev) : 0;
            if (m != 0) {
                rc = m < 0 ? m : -EBUSY; /* unknown is not "not mounted" */
            } else {
                struct bd_attach_opts o = {
                    .config_path = config_path ? config_path : rec.config,
                    .region = rec.region,
                    .vol_id = rec.vol_id,
                    .run_dir = run,
                    .read_only = rec.read_only,
                    .overlay = rec.overlay,
                    .exporter_path = exporter_path,
                    .force = 1,
                };
                rc = bd_attach(&o, dev, sizeof dev, err, sizeof err);
                tlog_info("bd.reattached", "run_dir=%s vol=%s rc=%d", run,
                          rec.vol_id, rc);
            }
        }
        if (cb) cb(run, rec.vol_id, dev, rc, arg);
        if (rc < 0 && first_err == 0) first_err = rc;
    }
    closedir(d);
    return first_err;
}
