/*
 * test-blockdev.c: the node data path end to end on a sqlite region:
 * tandem-volfuse + loop device (csi/datapath/blockdev.c) and mkfs/mount/bind/grow
 * (csi/datapath/mounter.c) over volumes created with jr_volume_create.
 *
 * Needs root, /dev/fuse and /dev/loop-control (skips with the reason
 * otherwise) and the exporter: $TANDEM_VOLFUSE, else tandem-volfuse in the
 * directory above this program (the build dir).  Each test runs its
 * scenario in a child and then cleans up whatever the scenario left (run
 * dirs detached, mounts unmounted, scratch dir removed), so a failing
 * assertion leaves no loop device, mount or process behind.  Under ASan
 * the exporters write their reports into the scratch dir (ASAN_OPTIONS
 * log_path), and a report there fails the test.
 */
#include "tt.h"

/* Scratch paths are short; truncation would fail the test anyway. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <linux/fs.h>

#include "csi/datapath/blockdev.h"
#include "csi/datapath/mounter.h"
#include "jr.h"
#include "regions.h"
#include "tlog.h"

#define MiB (1024ull * 1024)

static char g_dir[PATH_MAX];     /* scratch dir of the current test */
static char g_cfg[PATH_MAX];     /* region config file */
static char g_exe[PATH_MAX];     /* tandem-volfuse */

/* ------------------------------------------------------------- setup -- */

static void need_env(void)
{
    if (geteuid() != 0) TT_SKIP("needs root (loop devices, mount)");
    if (access("/dev/fuse", R_OK | W_OK) != 0)
        TT_SKIP("/dev/fuse not usable: %s", strerror(errno));
    int fd = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (fd < 0) TT_SKIP("/dev/loop-control not usable: %s", strerror(errno));
    close(fd);
    const char *env = getenv("TANDEM_VOLFUSE");
    if (env && *env) {
        snprintf(g_exe, sizeof g_exe, "%s", env);
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        ASSERT(n > 0);
        self[n] = 0;
        *strrchr(self, '/') = 0; /* .../tests */
        char *up = strrchr(self, '/');
        ASSERT(up);
        *up = 0;
        snprintf(g_exe, sizeof g_exe, "%s/tandem-volfuse", self);
    }
    if (access(g_exe, X_OK) != 0)
        TT_FAIL("exporter %s missing (build it, or set TANDEM_VOLFUSE)", g_exe);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs(text, f);
    ASSERT_EQ(fclose(f), 0);
}

static int g_rados; /* region "a" on rados (TANDEM_CEPH_*) instead of sqlite */

/* Scratch dir + region "a" (sqlite, or rados when g_rados). */
static void setup_scratch(void)
{
    const char *tmp = getenv("TANDEM_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/test-blockdev.%ld", tmp ? tmp : "/tmp",
             (long)getpid());
    ASSERT_EQ(mkdir(g_dir, 0700), 0);
    snprintf(g_cfg, sizeof g_cfg, "%s/regions.conf", g_dir);
    char text[4 * PATH_MAX];
    if (g_rados) {
        const char *kr = getenv("TANDEM_CEPH_KEYRING");
        const char *cl = getenv("TANDEM_CEPH_CLIENT");
        const char *pool = getenv("TANDEM_CEPH_POOL_A");
        /* A namespace per run keeps concurrent runs apart. */
        snprintf(text, sizeof text,
                 "[tandem]\ndefault_region = a\n\n[region a]\n"
                 "backend = rados\nceph_conf = %s\nclient_id = %s\n"
                 "%s%s%spool = %s\nrados_namespace = test-blockdev-%ld\n",
                 getenv("TANDEM_CEPH_CONF"), cl && *cl ? cl : "admin",
                 kr && *kr ? "keyring = " : "", kr && *kr ? kr : "",
                 kr && *kr ? "\n" : "", pool && *pool ? pool : "tandem-a",
                 (long)getpid());
    } else {
        snprintf(text, sizeof text,
                 "[tandem]\ndefault_region = a\n\n[region a]\n"
                 "backend = sqlite\ndb_path = %s/a.db\n",
                 g_dir);
    }
    write_file(g_cfg, text);
    /* Exporters (children of children) inherit this: their sanitizer
     * reports land next to the test's files. */
    char asan[PATH_MAX + 64];
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%slog_path=%s/asan", old ? old : "",
             old && *old ? ":" : "", g_dir);
    setenv("ASAN_OPTIONS", asan, 1);
}

static st_store *open_store(void)
{
    struct rg_config *c = NULL;
    char err[256];
    st_store *st = NULL;
    ASSERT_OK(rg_load(g_cfg, &c, err, sizeof err));
    const struct rg_region *r = rg_find(c, "a");
    ASSERT(r);
    ASSERT_OK(rg_open_store(r, &st));
    rg_free(c);
    return st;
}

static void create_volume(const char *id, uint64_t size)
{
    st_store *st = open_store();
    struct jr_create_opts o = {.size = size, .region = "a"};
    int rc = jr_volume_create(st, id, &o);
    if (rc < 0) TT_FAIL("jr_volume_create %s: %s", id, jr_strerror(rc));
    st_close(st);
}

static void run_dir_of(const char *vol, char *out, size_t len)
{
    snprintf(out, len, "%s/run/%s", g_dir, vol);
}

static int attach_opts(const char *vol, int ro, int force, char *dev,
                       size_t devlen)
{
    char run[PATH_MAX], err[512] = "";
    run_dir_of(vol, run, sizeof run);
    struct bd_attach_opts o = {
        .config_path = g_cfg,
        .region = "a",
        .vol_id = vol,
        .run_dir = run,
        .read_only = ro,
        .exporter_path = g_exe,
        .force = force,
    };
    int rc = bd_attach(&o, dev, devlen, err, sizeof err);
    if (rc < 0) fprintf(stderr, "  bd_attach %s: %d %s\n", vol, rc, err);
    return rc;
}

static void attach(const char *vol, int ro, char *dev, size_t devlen)
{
    ASSERT_OK(attach_opts(vol, ro, 0, dev, devlen));
    ASSERT(strncmp(dev, "/dev/loop", 9) == 0);
}

static pid_t exporter_pid(const char *vol)
{
    char run[PATH_MAX], p[PATH_MAX], buf[32] = "";
    run_dir_of(vol, run, sizeof run);
    snprintf(p, sizeof p, "%s/pid", run);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    return (pid_t)atol(buf);
}

static int proc_is_exporter(pid_t pid)
{
    char p[64], comm[64] = "";
    snprintf(p, sizeof p, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    char line[512] = "";
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
    if (!strstr(line, "(tandem-volfuse)")) return 0;
    (void)comm;
    const char *rp = strrchr(line, ')');
    return rp && rp[2] != 'Z';
}

/* 1 if loop device dev is still backed by the image of run dir run.
 * (Other programs on the machine may take the freed device at once, so
 * "has a backing file" alone proves nothing.) */
static int loop_on_image(const char *dev, const char *run)
{
    char p[128], back[PATH_MAX] = "", img[PATH_MAX], rr[PATH_MAX];
    snprintf(p, sizeof p, "/sys/block/%s/loop/backing_file", dev + 5);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    if (!fgets(back, sizeof back, f)) back[0] = 0;
    fclose(f);
    back[strcspn(back, "\n")] = 0;
    if (!realpath(run, rr)) snprintf(rr, sizeof rr, "%s", run);
    snprintf(img, sizeof img, "%s/mnt/image", rr);
    return strncmp(back, img, strlen(img)) == 0;
}

/* Detach and check nothing is left: loop device, FUSE mount, process,
 * run dir. */
static void detach_clean(const char *vol, const char *dev)
{
    char run[PATH_MAX], mnt[PATH_MAX], err[512] = "";
    run_dir_of(vol, run, sizeof run);
    snprintf(mnt, sizeof mnt, "%s/mnt", run);
    pid_t pid = exporter_pid(vol);
    ASSERT_GT(pid, 0);
    int rc = bd_detach(run, err, sizeof err);
    if (rc < 0) TT_FAIL("bd_detach: %d %s", rc, err);
    ASSERT(!loop_on_image(dev, run));
    ASSERT_EQ(mnt_is_mounted(mnt), 0);
    ASSERT(!proc_is_exporter(pid));
    ASSERT(access(run, F_OK) != 0);
    /* Idempotent. */
    ASSERT_OK(bd_detach(run, err, sizeof err));
    char d2[64];
    ASSERT_EQ(bd_find(run, d2, sizeof d2), -ENOENT);
}

/* ------------------------------------------------- data helpers -- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill_pattern(void *buf, size_t len, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    uint64_t *p = buf;
    for (size_t i = 0; i < len / 8; i++) p[i] = rng_next(&s);
}

#define NFILES 12
static size_t file_size(int i) { return (size_t)(1000 + i * 37000); }

static void write_files(const char *dir, uint64_t seed)
{
    for (int i = 0; i < NFILES; i++) {
        char p[PATH_MAX];
        size_t n = file_size(i);
        char *buf = malloc(n + 8);
        ASSERT(buf);
        fill_pattern(buf, n + 8, seed + (uint64_t)i);
        snprintf(p, sizeof p, "%s/f%02d", dir, i);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ASSERT(fd >= 0);
        ASSERT_EQ(write(fd, buf, n), (ssize_t)n);
        ASSERT_EQ(fsync(fd), 0);
        ASSERT_EQ(close(fd), 0);
        free(buf);
    }
    /* Make the new directory entries durable too. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    ASSERT(dfd >= 0);
    ASSERT_EQ(fsync(dfd), 0);
    close(dfd);
}

static void check_files(const char *dir, uint64_t seed)
{
    for (int i = 0; i < NFILES; i++) {
        char p[PATH_MAX];
        size_t n = file_size(i);
        char *want = malloc(n + 8), *got = malloc(n + 1);
        ASSERT(want && got);
        fill_pattern(want, n + 8, seed + (uint64_t)i);
        snprintf(p, sizeof p, "%s/f%02d", dir, i);
        int fd = open(p, O_RDONLY);
        if (fd < 0) TT_FAIL("open %s: %s", p, strerror(errno));
        ASSERT_EQ(read(fd, got, n + 1), (ssize_t)n);
        close(fd);
        ASSERT_MEMEQ(got, want, n);
        free(want);
        free(got);
    }
}

static void mount_fs(const char *dev, const char *target, const char *fstype,
                     int ro)
{
    char err[512] = "";
    const char *flags[] = {"noatime"};
    int rc = mnt_mount(dev, target, fstype, ro, flags, 1, err, sizeof err);
    if (rc < 0) TT_FAIL("mnt_mount %s: %d %s", dev, rc, err);
}

static void umount_fs(const char *target)
{
    char err[512] = "";
    int rc = mnt_umount(target, err, sizeof err);
    if (rc < 0) TT_FAIL("mnt_umount %s: %d %s", target, rc, err);
    ASSERT_EQ(mnt_is_mounted(target), 0);
}

static void format(const char *dev, const char *fstype, int expect_formatted)
{
    char err[512] = "";
    int formatted = -1;
    int rc = mnt_format_if_blank(dev, fstype, NULL, &formatted, err,
                                 sizeof err);
    if (rc < 0) TT_FAIL("format %s %s: %d %s", dev, fstype, rc, err);
    ASSERT_EQ(formatted, expect_formatted);
}

/* --------------------------------------------------- scenario runner -- */

/* Undo whatever a (possibly failed) scenario left in the scratch dir. */
static void cleanup_scratch(void)
{
    char p[PATH_MAX + 16], err[256];
    /* Mounts first (staging/publish dirs), deepest first. */
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    char mps[64][PATH_MAX];
    int n = 0;
    while (f && fgets(line, sizeof line, f) && n < 64) {
        char mp[PATH_MAX];
        if (sscanf(line, "%*u %*u %*s %*s %4095s", mp) == 1 &&
            strncmp(mp, g_dir, strlen(g_dir)) == 0 &&
            !strstr(mp, "/mnt"))
            snprintf(mps[n++], PATH_MAX, "%s", mp);
    }
    if (f) fclose(f);
    for (int i = n - 1; i >= 0; i--) umount2(mps[i], MNT_DETACH);
    snprintf(p, sizeof p, "%s/run", g_dir);
    DIR *d = opendir(p);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char run[PATH_MAX + 300];
        snprintf(run, sizeof run, "%s/%s", p, e->d_name);
        if (bd_detach(run, err, sizeof err) < 0)
            fprintf(stderr, "  cleanup: bd_detach %s: %s\n", run, err);
    }
    if (d) closedir(d);
    const char *argv[] = {"rm", "-rf", g_dir, NULL};
    mnt_run(argv, 60000, NULL, 0, NULL, 0);
}

/* Sanitizer reports of exporters (ASAN_OPTIONS log_path). */
static int asan_reports(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "asan", 4) != 0) continue;
        char p[PATH_MAX + 300], buf[4096];
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        fprintf(stderr, "  exporter sanitizer report %s:\n", p);
        while (fgets(buf, sizeof buf, f)) fputs(buf, stderr);
        fclose(f);
        n++;
    }
    if (d) closedir(d);
    return n;
}

static void run_scenario(void (*fn)(void))
{
    need_env();
    setup_scratch();
    tlog_init("test-blockdev", TLOG_WARN);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int reports = asan_reports();
    cleanup_scratch();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        TT_FAIL("scenario failed (status 0x%x)", status);
    ASSERT_EQ(reports, 0);
}

/* ------------------------------------------------------------ tests -- */

TEST(mounter_tools)
{
    char out[256], err[256];
    const char *ok[] = {"sh", "-c", "echo out; echo first >&2; echo reason >&2; exit 3", NULL};
    ASSERT_EQ(mnt_run(ok, 5000, out, sizeof out, err, sizeof err), 3);
    ASSERT_STREQ(out, "out\n");
    ASSERT_STREQ(err, "reason");
    const char *slow[] = {"sleep", "10", NULL};
    ASSERT_EQ(mnt_run(slow, 200, NULL, 0, err, sizeof err), -ETIMEDOUT);
    /* A tool that closes its stdout and stderr and then hangs: the
     * deadline holds for its exit too (it used to block in waitpid). */
    const char *mute[] = {"sh", "-c", "exec >&- 2>&-; sleep 10", NULL};
    alarm(8);
    ASSERT_EQ(mnt_run(mute, 300, out, sizeof out, err, sizeof err), -ETIMEDOUT);
    alarm(0);
    const char *none[] = {"/nonexistent/tool", NULL};
    ASSERT_EQ(mnt_run(none, 1000, NULL, 0, err, sizeof err), -ENOENT);
    ASSERT_EQ(mnt_is_mounted("/proc"), 1);
    ASSERT_EQ(mnt_is_mounted("/proc/"), 1);
    ASSERT_EQ(mnt_is_mounted("/nonexistent/x"), 0);
    ASSERT_EQ(mnt_is_mounted("/proc/self"), 0);
    char src[64], fs[32];
    ASSERT_OK(mnt_find_source("/proc", src, sizeof src, fs, sizeof fs));
    ASSERT_STREQ(fs, "proc");
    struct mnt_stats s;
    ASSERT_OK(mnt_stats("/", &s));
    ASSERT_GT(s.bytes_total, 0);
    ASSERT_EQ(mnt_stats("/nonexistent/x", &s), -ENOENT);
    /* Bad mount flags never reach mount(2). */
    const char *bad[] = {"bind"};
    ASSERT_EQ(mnt_mount("/dev/null", "/nonexistent/t", "ext4", 0, bad, 1, err,
                        sizeof err), -EINVAL);
    const char *bad2[] = {"noatime,with space"};
    ASSERT_EQ(mnt_mount("/dev/null", "/nonexistent/t", "ext4", 0, bad2, 1, err,
                        sizeof err), -EINVAL);
    ASSERT_EQ(mnt_format_if_blank("/dev/null", "btrfs", NULL, NULL, err,
                                  sizeof err), -EINVAL);
}

/* The mount table through libmount: a mount point whose name the kernel
 * escapes in mountinfo (a space, a backslash), stacked mounts, devices. */
TEST(mounter_table)
{
    char dir[] = "/tmp/test-mnt-XXXXXX", mp[PATH_MAX], src[64], fs[32];
    char err[256];
    struct stat st;
    if (geteuid() != 0) TT_SKIP("needs root (mount)");
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(mp, sizeof mp, "%s/a b\\c", dir);
    ASSERT_EQ(mkdir(mp, 0700), 0);
    ASSERT_EQ(mnt_is_mounted(mp), 0);
    ASSERT_EQ(mnt_find_source(mp, src, sizeof src, fs, sizeof fs), -ENOENT);
    ASSERT_EQ(mount("tnd-one", mp, "tmpfs", 0, "size=1m"), 0);
    ASSERT_EQ(mount("tnd-two", mp, "tmpfs", 0, "size=1m"), 0);
    ASSERT_EQ(mnt_is_mounted(mp), 1);
    /* The topmost of the two stacked mounts. */
    ASSERT_OK(mnt_find_source(mp, src, sizeof src, fs, sizeof fs));
    ASSERT_STREQ(src, "tnd-two");
    ASSERT_STREQ(fs, "tmpfs");
    /* Its device (anonymous for tmpfs) is found in the table; a loop
     * device number nobody mounted is not. */
    ASSERT_EQ(stat(mp, &st), 0);
    ASSERT_EQ(mnt_dev_is_mounted(st.st_dev), 1);
    ASSERT_EQ(mnt_dev_is_mounted(makedev(7, 1000123)), 0);
    ASSERT_OK(mnt_umount(mp, err, sizeof err));
    ASSERT_EQ(mnt_is_mounted(mp), 0);
    ASSERT_EQ(mnt_dev_is_mounted(st.st_dev), 0);
    ASSERT_EQ(rmdir(mp), 0);

    /* Probing a file (libblkid): blank, then ext4. */
    char img[PATH_MAX];
    snprintf(img, sizeof img, "%s/img", dir);
    int fd = open(img, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT(fd >= 0);
    ASSERT_EQ(ftruncate(fd, 8 << 20), 0);
    close(fd);
    ASSERT_OK(mnt_probe(img, fs, sizeof fs, err, sizeof err));
    ASSERT_STREQ(fs, "");
    const char *mkfs[] = {"mkfs.ext4", "-q", "-F", img, NULL};
    ASSERT_EQ(mnt_run(mkfs, 60000, NULL, 0, err, sizeof err), 0);
    ASSERT_OK(mnt_probe(img, fs, sizeof fs, err, sizeof err));
    ASSERT_STREQ(fs, "ext4");
    ASSERT_EQ(mnt_probe("/nonexistent/dev", fs, sizeof fs, err, sizeof err),
              -ENOENT);
    ASSERT(strstr(err, "/nonexistent/dev"));
    unlink(img);
    ASSERT_EQ(rmdir(dir), 0);
}

/* tandem-volfuse refuses a bad --ready-fd or --threads in one line
 * naming the flag, exit 2 (atoi used to turn "x" into fd 0). */
TEST(volfuse_flags)
{
    char err[256];
    need_env();
    const char *bad[][2] = {
        {"--ready-fd", "x"}, {"--ready-fd", "0"}, {"--ready-fd", "-1"},
        {"--ready-fd", "3x"}, {"--ready-fd", "99999999999"},
        {"--ready-fd", "987"}, {"--threads", "0"}, {"--threads", "many"},
        {"--threads", "2000"}, {"--threads", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *argv[] = {g_exe, "--config", "/nonexistent", "--region",
                              "a", "--volume", "v", "--mountpoint",
                              "/nonexistent", bad[i][0], bad[i][1], NULL};
        int rc = mnt_run(argv, 10000, NULL, 0, err, sizeof err);
        if (rc != 2 || !strstr(err, bad[i][0]) || strchr(err, '\n'))
            TT_FAIL("%s %s: exit %d, stderr \"%s\"", bad[i][0], bad[i][1],
                    rc, err);
    }
}

static void sc_ext4_roundtrip(void)
{
    char dev[64], dev2[64], stage[PATH_MAX], pub[PATH_MAX], run[PATH_MAX];
    char err[512];
    create_volume("v-ext4", 256 * MiB);
    run_dir_of("v-ext4", run, sizeof run);
    snprintf(stage, sizeof stage, "%s/stage", g_dir);
    snprintf(pub, sizeof pub, "%s/pods/p1/volume", g_dir);

    attach("v-ext4", 0, dev, sizeof dev);
    /* Idempotent attach: same device. */
    attach("v-ext4", 0, dev2, sizeof dev2);
    ASSERT_STREQ(dev, dev2);
    ASSERT_OK(bd_find(run, dev2, sizeof dev2));
    ASSERT_STREQ(dev, dev2);
    struct mnt_stats s;
    ASSERT_OK(mnt_stats(dev, &s));
    ASSERT_EQ(s.is_block, 1);
    ASSERT_UEQ(s.bytes_total, 256 * MiB);
    uint64_t sz = 0;
    ASSERT_OK(bd_size(run, &sz));
    ASSERT_UEQ(sz, 256 * MiB);

    format(dev, "ext4", 1);
    format(dev, "ext4", 0); /* already ext4: nothing written */
    mount_fs(dev, stage, "ext4", 0);
    mount_fs(dev, stage, "ext4", 0); /* idempotent */
    ASSERT_EQ(mnt_is_mounted(stage), 1);
    write_files(stage, 1);
    ASSERT_OK(mnt_stats(stage, &s));
    ASSERT_EQ(s.is_block, 0);
    ASSERT_GT(s.bytes_total, 200 * MiB);
    ASSERT_GT(s.bytes_used, 0);
    ASSERT_GT(s.inodes_total, 0);
    ASSERT_GT(s.inodes_used, 10);
    ASSERT_UEQ(s.inodes_used + s.inodes_free, s.inodes_total);
    /* Detach refuses while the device is mounted. */
    ASSERT_EQ(bd_detach(run, err, sizeof err), -EBUSY);
    ASSERT_OK(bd_find(run, dev2, sizeof dev2));
    umount_fs(stage);
    umount_fs(stage); /* idempotent */
    detach_clean("v-ext4", dev);

    /* Again: the files come back from the journal. */
    attach("v-ext4", 0, dev, sizeof dev);
    format(dev, "ext4", 0);
    mount_fs(dev, stage, "ext4", 0);
    check_files(stage, 1);
    /* Publish: a read-only bind. */
    ASSERT_OK(mnt_bind(stage, pub, 1, NULL, 0, err, sizeof err));
    ASSERT_OK(mnt_bind(stage, pub, 1, NULL, 0, err, sizeof err));
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/f00", pub);
    int fd = open(p, O_WRONLY);
    ASSERT_EQ(fd, -1);
    ASSERT_EQ(errno, EROFS);
    check_files(pub, 1);
    umount_fs(pub);
    /* A read-write bind writes through to the staged fs. */
    ASSERT_OK(mnt_bind(stage, pub, 0, NULL, 0, err, sizeof err));
    snprintf(p, sizeof p, "%s/new", pub);
    write_file(p, "hello");
    snprintf(p, sizeof p, "%s/new", stage);
    ASSERT_EQ(access(p, F_OK), 0);
    umount_fs(pub);
    umount_fs(stage);
    /* A clean fs after all that. */
    const char *fsck[] = {"e2fsck", "-fn", dev, NULL};
    ASSERT_EQ(mnt_run(fsck, 60000, NULL, 0, err, sizeof err), 0);
    detach_clean("v-ext4", dev);
}
TEST(ext4_roundtrip) { run_scenario(sc_ext4_roundtrip); }

static void sc_xfs(void)
{
    char dev[64], stage[PATH_MAX];
    /* mkfs.xfs wants at least 300 MiB. */
    create_volume("v-xfs", 320 * MiB);
    snprintf(stage, sizeof stage, "%s/stage", g_dir);
    attach("v-xfs", 0, dev, sizeof dev);
    format(dev, "xfs", 1);
    mount_fs(dev, stage, "xfs", 0);
    write_files(stage, 7);
    umount_fs(stage);
    detach_clean("v-xfs", dev);
    attach("v-xfs", 0, dev, sizeof dev);
    format(dev, "xfs", 0);
    mount_fs(dev, stage, "xfs", 1);
    check_files(stage, 7);
    umount_fs(stage);
    detach_clean("v-xfs", dev);
}
TEST(xfs_roundtrip) { run_scenario(sc_xfs); }

static void sc_refuse_format(void)
{
    char dev[64], err[512], fs[64];
    create_volume("v-fmt", 64 * MiB);
    attach("v-fmt", 0, dev, sizeof dev);
    ASSERT_OK(mnt_probe(dev, fs, sizeof fs, err, sizeof err));
    ASSERT_STREQ(fs, "");
    format(dev, "ext4", 1);
    ASSERT_OK(mnt_probe(dev, fs, sizeof fs, err, sizeof err));
    ASSERT_STREQ(fs, "ext4");
    int formatted = -1;
    ASSERT_EQ(mnt_format_if_blank(dev, "xfs", NULL, &formatted, err, sizeof err),
              -EMEDIUMTYPE);
    ASSERT_EQ(formatted, 0);
    ASSERT(strstr(err, "ext4"));
    ASSERT_OK(mnt_probe(dev, fs, sizeof fs, err, sizeof err));
    ASSERT_STREQ(fs, "ext4");
    detach_clean("v-fmt", dev);

    /* A partition table is a signature too. */
    create_volume("v-pt", 64 * MiB);
    attach("v-pt", 0, dev, sizeof dev);
    unsigned char mbr[512];
    memset(mbr, 0, sizeof mbr);
    mbr[446 + 4] = 0x83;                     /* Linux partition */
    mbr[446 + 8] = 0x00; mbr[446 + 9] = 0x08; /* start LBA 2048 */
    mbr[446 + 12] = 0x00; mbr[446 + 13] = 0x80; /* 32768 sectors */
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    int fd = open(dev, O_WRONLY);
    ASSERT(fd >= 0);
    ASSERT_EQ(pwrite(fd, mbr, sizeof mbr, 0), 512);
    ASSERT_EQ(fsync(fd), 0);
    close(fd);
    ASSERT_OK(mnt_probe(dev, fs, sizeof fs, err, sizeof err));
    ASSERT_STREQ(fs, "dos");
    ASSERT_EQ(mnt_format_if_blank(dev, "ext4", NULL, &formatted, err, sizeof err),
              -EMEDIUMTYPE);
    detach_clean("v-pt", dev);
}
TEST(format_only_blank) { run_scenario(sc_refuse_format); }

#define RAW_CHUNK (1u << 20)
static const uint64_t raw_offs[] = {0, 5 * MiB, 63 * MiB, 127 * MiB};

static void sc_raw_block(void)
{
    char dev[64];
    create_volume("v-raw", 128 * MiB);
    attach("v-raw", 0, dev, sizeof dev);
    void *buf, *got;
    ASSERT_EQ(posix_memalign(&buf, 4096, RAW_CHUNK), 0);
    ASSERT_EQ(posix_memalign(&got, 4096, RAW_CHUNK), 0);
    int fd = open(dev, O_RDWR | O_DIRECT);
    ASSERT(fd >= 0);
    for (size_t i = 0; i < sizeof raw_offs / sizeof raw_offs[0]; i++) {
        fill_pattern(buf, RAW_CHUNK, 100 + i);
        ASSERT_EQ(pwrite(fd, buf, RAW_CHUNK, (off_t)raw_offs[i]), (ssize_t)RAW_CHUNK);
    }
    /* Small unaligned-in-the-volume 4 KiB writes too. */
    fill_pattern(buf, 4096, 999);
    ASSERT_EQ(pwrite(fd, buf, 4096, (off_t)(7 * MiB + 4096 * 3)), 4096);
    ASSERT_EQ(fsync(fd), 0);
    /* Writing past the end fails. */
    ASSERT(pwrite(fd, buf, 4096, (off_t)(128 * MiB)) < 0);
    close(fd);
    detach_clean("v-raw", dev);

    attach("v-raw", 0, dev, sizeof dev);
    fd = open(dev, O_RDONLY | O_DIRECT);
    ASSERT(fd >= 0);
    for (size_t i = 0; i < sizeof raw_offs / sizeof raw_offs[0]; i++) {
        fill_pattern(buf, RAW_CHUNK, 100 + i);
        ASSERT_EQ(pread(fd, got, RAW_CHUNK, (off_t)raw_offs[i]), (ssize_t)RAW_CHUNK);
        ASSERT_MEMEQ(got, buf, RAW_CHUNK);
    }
    fill_pattern(buf, 4096, 999);
    ASSERT_EQ(pread(fd, got, 4096, (off_t)(7 * MiB + 4096 * 3)), 4096);
    ASSERT_MEMEQ(got, buf, 4096);
    /* Never written: zeros. */
    ASSERT_EQ(pread(fd, got, 4096, (off_t)(90 * MiB)), 4096);
    memset(buf, 0, 4096);
    ASSERT_MEMEQ(got, buf, 4096);
    close(fd);

    /* Discard (punch hole) reads back as zeros. */
    fd = open(dev, O_RDWR | O_DIRECT);
    ASSERT(fd >= 0);
    uint64_t range[2] = {5 * MiB, RAW_CHUNK};
    ASSERT_EQ(ioctl(fd, BLKDISCARD, range), 0);
    ASSERT_EQ(pread(fd, got, RAW_CHUNK, (off_t)(5 * MiB)), (ssize_t)RAW_CHUNK);
    void *zero = calloc(1, RAW_CHUNK);
    ASSERT_MEMEQ(got, zero, RAW_CHUNK);
    close(fd);
    detach_clean("v-raw", dev);

    /* Straight through the engine: the same bytes. */
    st_store *st = open_store();
    jr_volume *v = NULL;
    ASSERT_OK(jr_open(st, "v-raw", 0, NULL, &v));
    for (size_t i = 0; i < sizeof raw_offs / sizeof raw_offs[0]; i++) {
        if (raw_offs[i] == 5 * MiB) {
            memset(buf, 0, RAW_CHUNK);
        } else {
            fill_pattern(buf, RAW_CHUNK, 100 + i);
        }
        ASSERT_OK(jr_read(v, raw_offs[i], got, RAW_CHUNK));
        ASSERT_MEMEQ(got, buf, RAW_CHUNK);
    }
    ASSERT_OK(jr_close(v));
    st_close(st);
    free(zero);
    free(buf);
    free(got);
}
TEST(raw_block) { run_scenario(sc_raw_block); }

/* A stand-in exporter (named tandem-volfuse, like the real one) that
 * daemonises like it and then runs body with $d = its run dir. */
static void fake_exporter(char *path, size_t len, const char *body)
{
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/fake", g_dir);
    ASSERT_EQ(mkdir(dir, 0700), 0);
    snprintf(path, len, "%s/tandem-volfuse", dir);
    char text[2048];
    snprintf(text, sizeof text,
             "#!/bin/bash\n"
             "prev=; for a; do [ \"$prev\" = --run-dir ] && d=$a; prev=$a; done\n"
             "( echo $BASHPID > \"$d/pid\"; %s ) </dev/null >/dev/null 2>&1 &\n"
             "exit 0\n",
             body);
    write_file(path, text);
    ASSERT_EQ(chmod(path, 0755), 0);
}

static int attach_with(const char *vol, const char *exe, int timeout_ms,
                       char *err, size_t errlen)
{
    char run[PATH_MAX], dev[64];
    run_dir_of(vol, run, sizeof run);
    struct bd_attach_opts o = {.config_path = g_cfg, .region = "a",
                               .vol_id = vol, .run_dir = run,
                               .exporter_path = exe, .timeout_ms = timeout_ms};
    return bd_attach(&o, dev, sizeof dev, err, errlen);
}

static void sc_attach_failures(void)
{
    char exe[PATH_MAX], run[PATH_MAX], err[512] = "";
    create_volume("v-fail", 64 * MiB);
    run_dir_of("v-fail", run, sizeof run);

    /* No exporter at all. */
    ASSERT_EQ(attach_with("v-fail", "/nonexistent/tandem-volfuse", 2000, err,
                          sizeof err), -ENOENT);
    ASSERT(access(run, F_OK) != 0);

    /* An exporter that reports an error. */
    fake_exporter(exe, sizeof exe, "echo 'err 5 boom' >&3");
    ASSERT_EQ(attach_with("v-fail", exe, 5000, err, sizeof err), -EIO);
    ASSERT(strstr(err, "boom"));
    ASSERT(access(run, F_OK) != 0);
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/fake", g_dir);
    const char *rm[] = {"rm", "-rf", dir, NULL};
    ASSERT_EQ(mnt_run(rm, 5000, NULL, 0, NULL, 0), 0);

    /* An exporter that never becomes ready: the deadline, and it is
     * stopped (it would hold the volume's lease). */
    fake_exporter(exe, sizeof exe, "while :; do sleep 0.05; done");
    ASSERT_EQ(attach_with("v-fail", exe, 500, err, sizeof err), -ETIMEDOUT);
    ASSERT(strstr(err, "not ready"));
    ASSERT(access(run, F_OK) != 0);
    /* Its pid file went with the run dir; no tandem-volfuse of ours is
     * left (the fake's command line names our run dir). */
    char out[65536];
    const char *ps[] = {"ps", "-eo", "args", NULL};
    ASSERT_EQ(mnt_run(ps, 5000, out, sizeof out, NULL, 0), 0);
    ASSERT(!strstr(out, run));

    /* And the real one still works afterwards. */
    char dev[64];
    attach("v-fail", 0, dev, sizeof dev);
    detach_clean("v-fail", dev);
}
TEST(attach_failures) { run_scenario(sc_attach_failures); }

static void need_ceph(void)
{
    const char *skip = getenv("TANDEM_CEPH_SKIP");
    if (skip && *skip) TT_SKIP("%s", skip);
    const char *conf = getenv("TANDEM_CEPH_CONF");
    if (!conf || !*conf) TT_SKIP("TANDEM_CEPH_CONF not set");
    g_rados = 1;
}

static void sc_rados_ext4(void)
{
    char dev[64], stage[PATH_MAX];
    create_volume("v-rext4", 128 * MiB);
    snprintf(stage, sizeof stage, "%s/stage", g_dir);
    attach("v-rext4", 0, dev, sizeof dev);
    format(dev, "ext4", 1);
    mount_fs(dev, stage, "ext4", 0);
    write_files(stage, 31);
    umount_fs(stage);
    detach_clean("v-rext4", dev);
    attach("v-rext4", 0, dev, sizeof dev);
    mount_fs(dev, stage, "ext4", 0);
    check_files(stage, 31);
    umount_fs(stage);
    detach_clean("v-rext4", dev);
    st_store *st = open_store();
    ASSERT_OK(jr_volume_delete(st, "v-rext4"));
    ASSERT_OK(jr_volume_delete(st, "v-raw"));
    st_close(st);
}

/* The same data path on the Ceph backend: raw block, then ext4. */
static void sc_rados(void)
{
    sc_raw_block();
    sc_rados_ext4();
}
TEST(rados_raw_block_and_ext4)
{
    need_ceph();
    run_scenario(sc_rados);
}

static void sc_read_only(void)
{
    char dev[64], dev2[64], run[PATH_MAX];
    create_volume("v-ro", 64 * MiB);
    run_dir_of("v-ro", run, sizeof run);
    attach("v-ro", 0, dev, sizeof dev);
    char buf[4096];
    fill_pattern(buf, sizeof buf, 5);
    int fd = open(dev, O_WRONLY);
    ASSERT(fd >= 0);
    ASSERT_EQ(pwrite(fd, buf, sizeof buf, 8192), 4096);
    ASSERT_EQ(fsync(fd), 0);
    close(fd);
    detach_clean("v-ro", dev);

    attach("v-ro", 1, dev, sizeof dev);
    /* Read-write on a read-only attachment is refused. */
    ASSERT_EQ(attach_opts("v-ro", 0, 0, dev2, sizeof dev2), -EROFS);
    attach("v-ro", 1, dev2, sizeof dev2);
    ASSERT_STREQ(dev, dev2);
    fd = open(dev, O_RDONLY);
    ASSERT(fd >= 0);
    int ro = 0;
    ASSERT_EQ(ioctl(fd, BLKROGET, &ro), 0);
    ASSERT_EQ(ro, 1);
    char got[4096];
    ASSERT_EQ(pread(fd, got, sizeof got, 8192), 4096);
    ASSERT_MEMEQ(got, buf, sizeof buf);
    close(fd);
    /* Opening for writing may succeed (kernel dependent); writing not. */
    fd = open(dev, O_WRONLY);
    if (fd >= 0) {
        ASSERT(pwrite(fd, buf, sizeof buf, 8192) < 0);
        close(fd);
    } else {
        ASSERT_EQ(errno, EROFS);
    }
    /* Nor can the FUSE image be written behind the loop device's back. */
    char img[PATH_MAX + 16];
    snprintf(img, sizeof img, "%s/mnt/image", run);
    ASSERT_EQ(open(img, O_WRONLY), -1);
    char err[256];
    ASSERT_EQ(bd_resize(run, 128 * MiB, err, sizeof err), -EROFS);
    detach_clean("v-ro", dev);

    /* A secondary (replica) can only be attached read-only. */
    st_store *st = open_store();
    struct jr_create_opts o = {.size = 64 * MiB, .region = "a",
                               .role = JR_ROLE_SECONDARY};
    ASSERT_OK(jr_volume_create(st, "v-sec", &o));
    st_close(st);
    ASSERT(attach_opts("v-sec", 0, 0, dev, sizeof dev) < 0);
    run_dir_of("v-sec", run, sizeof run);
    ASSERT(access(run, F_OK) != 0); /* nothing left behind */
    attach("v-sec", 1, dev, sizeof dev);
    detach_clean("v-sec", dev);
}
TEST(read_only) { run_scenario(sc_read_only); }

/* Online ext4 growth needs CAP_SYS_RESOURCE (some CI containers drop it). */
static int have_cap_sys_resource(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long eff = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %llx", &eff) == 1) break;
    if (f) fclose(f);
    return (eff >> 24) & 1; /* CAP_SYS_RESOURCE */
}

/* Grow vol (mounted at stage, or offline when online is 0) from its size
 * to new_size and check the fs and its files. */
static void grow_and_check(const char *vol, const char *dev,
                           const char *stage, const char *fstype,
                           uint64_t new_size, int online, uint64_t seed)
{
    char run[PATH_MAX], err[512];
    run_dir_of(vol, run, sizeof run);
    struct mnt_stats before, after, ds;
    ASSERT_OK(mnt_stats(stage, &before));
    if (!online) umount_fs(stage);
    int rc = bd_resize(run, new_size, err, sizeof err);
    if (rc < 0) TT_FAIL("bd_resize: %d %s", rc, err);
    ASSERT_OK(bd_resize(run, new_size, err, sizeof err)); /* idempotent */
    ASSERT_EQ(bd_resize(run, new_size / 2, err, sizeof err), -EINVAL);
    ASSERT_OK(mnt_stats(dev, &ds));
    ASSERT_UEQ(ds.bytes_total, new_size);
    uint64_t sz = 0;
    ASSERT_OK(bd_size(run, &sz));
    ASSERT_UEQ(sz, new_size);
    rc = mnt_grow_fs(dev, online ? stage : NULL, fstype, err, sizeof err);
    if (rc < 0) TT_FAIL("mnt_grow_fs: %d %s", rc, err);
    if (!online) mount_fs(dev, stage, fstype, 0);
    ASSERT_OK(mnt_stats(stage, &after));
    ASSERT_GT(after.bytes_total, before.bytes_total + (new_size - sz / 2) / 2);
    check_files(stage, seed);
    /* Use the new space. */
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/big", stage);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    ASSERT(fd >= 0);
    ASSERT_EQ(fallocate(fd, 0, 0, (off_t)(before.bytes_total / 2 + 64 * MiB)), 0);
    close(fd);
}

static void sc_grow(void)
{
    char dev[64], stage[PATH_MAX];
    int online = have_cap_sys_resource();
    if (!online)
        printf("  note: no CAP_SYS_RESOURCE: ext4 grown offline, xfs online\n");
    snprintf(stage, sizeof stage, "%s/stage", g_dir);
    create_volume("v-grow", 128 * MiB);
    attach("v-grow", 0, dev, sizeof dev);
    format(dev, "ext4", 1);
    mount_fs(dev, stage, "ext4", 0);
    write_files(stage, 3);
    grow_and_check("v-grow", dev, stage, "ext4", 384 * MiB, online, 3);
    umount_fs(stage);
    detach_clean("v-grow", dev);

    /* The engine knows the new size, and it sticks across attaches. */
    st_store *st = open_store();
    struct jr_info info;
    ASSERT_OK(jr_volume_stat(st, "v-grow", &info));
    ASSERT_UEQ(info.size, 384 * MiB);
    st_close(st);
    attach("v-grow", 0, dev, sizeof dev);
    mount_fs(dev, stage, "ext4", 0);
    check_files(stage, 3);
    umount_fs(stage);
    const char *fsck[] = {"e2fsck", "-fn", dev, NULL};
    char err[512];
    ASSERT_EQ(mnt_run(fsck, 60000, NULL, 0, err, sizeof err), 0);
    detach_clean("v-grow", dev);

    /* xfs grows only online (xfs_growfs needs no CAP_SYS_RESOURCE). */
    create_volume("v-grow-xfs", 320 * MiB);
    attach("v-grow-xfs", 0, dev, sizeof dev);
    format(dev, "xfs", 1);
    mount_fs(dev, stage, "xfs", 0);
    write_files(stage, 4);
    grow_and_check("v-grow-xfs", dev, stage, "xfs", 640 * MiB, 1, 4);
    umount_fs(stage);
    detach_clean("v-grow-xfs", dev);
}
TEST(grow_online) { run_scenario(sc_grow); }

static void sc_exporter_crash(void)
{
    char dev[64], dev2[64], stage[PATH_MAX], run[PATH_MAX], err[512];
    create_volume("v-crash", 128 * MiB);
    run_dir_of("v-crash", run, sizeof run);
    snprintf(stage, sizeof stage, "%s/stage", g_dir);
    attach("v-crash", 0, dev, sizeof dev);
    format(dev, "ext4", 1);
    mount_fs(dev, stage, "ext4", 0);
    write_files(stage, 11);
    sync();
    pid_t pid = exporter_pid("v-crash");
    ASSERT_GT(pid, 0);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    /* Wait for the death (it is not our child). */
    for (int i = 0; i < 2000 && proc_is_exporter(pid); i++) usleep(5000);
    ASSERT(!proc_is_exporter(pid));
    ASSERT_EQ(bd_find(run, dev2, sizeof dev2), -ESTALE);
    ASSERT_STREQ(dev2, dev);
    /* The staged fs lost its device: unstage it (errors are expected
     * from the dead device, the unmount itself must work). */
    umount_fs(stage);
    /* Attach again: the stale state is cleaned up and the writer lease
     * the dead exporter held is taken over. */
    attach("v-crash", 0, dev, sizeof dev);
    ASSERT_OK(bd_find(run, dev2, sizeof dev2));
    mount_fs(dev, stage, "ext4", 0);
    check_files(stage, 11);
    umount_fs(stage);
    const char *fsck[] = {"e2fsck", "-fn", dev, NULL};
    int rc = mnt_run(fsck, 60000, NULL, 0, err, sizeof err);
    if (rc != 0) TT_FAIL("e2fsck: %d %s", rc, err);
    detach_clean("v-crash", dev);

    /* The other way: detach of the dead attachment, then a fresh attach
     * that must force the lease. */
    attach("v-crash", 0, dev, sizeof dev);
    pid = exporter_pid("v-crash");
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 2000 && proc_is_exporter(pid); i++) usleep(5000);
    ASSERT_OK(bd_detach(run, err, sizeof err));
    ASSERT(!loop_on_image(dev, run));
    ASSERT_OK(attach_opts("v-crash", 0, 1, dev, sizeof dev));
    mount_fs(dev, stage, "ext4", 0);
    check_files(stage, 11);
    umount_fs(stage);
    detach_clean("v-crash", dev);

    /* SIGTERM (node shutdown, an operator): the exporter exits cleanly
     * although its loop device still holds the image, and bd_detach
     * still finds and clears that device. */
    attach("v-crash", 0, dev, sizeof dev);
    pid = exporter_pid("v-crash");
    ASSERT_EQ(kill(pid, SIGTERM), 0);
    for (int i = 0; i < 2000 && proc_is_exporter(pid); i++) usleep(5000);
    ASSERT(!proc_is_exporter(pid));
    ASSERT_EQ(bd_find(run, dev2, sizeof dev2), -ESTALE);
    ASSERT_OK(bd_detach(run, err, sizeof err));
    ASSERT(!loop_on_image(dev, run));
    char back[128], line[PATH_MAX] = "";
    snprintf(back, sizeof back, "/sys/block/%s/loop/backing_file", dev + 5);
    FILE *bf = fopen(back, "r");
    if (bf) {
        if (!fgets(line, sizeof line, bf)) line[0] = 0;
        fclose(bf);
    }
    ASSERT(strncmp(line, "/image", 6) != 0);
    char mnt[PATH_MAX + 8];
    snprintf(mnt, sizeof mnt, "%s/mnt", run);
    ASSERT_EQ(mnt_is_mounted(mnt), 0);
    /* The clean exit released the lease: no force needed. */
    attach("v-crash", 0, dev, sizeof dev);
    detach_clean("v-crash", dev);
}
TEST(exporter_crash_keeps_acked_writes) { run_scenario(sc_exporter_crash); }

static void sc_overlay(void)
{
    char dev[64], stage[PATH_MAX], run[PATH_MAX], err[512];
    create_volume("v-ov", 128 * MiB);
    run_dir_of("v-ov", run, sizeof run);
    snprintf(stage, sizeof stage, "%s/stage", g_dir);
    /* A filesystem whose journal needs recovery: what a replica of a
     * live primary looks like. */
    attach("v-ov", 0, dev, sizeof dev);
    format(dev, "ext4", 1);
    mount_fs(dev, stage, "ext4", 0);
    write_files(stage, 41);
    pid_t pid = exporter_pid("v-ov");
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 2000 && proc_is_exporter(pid); i++) usleep(5000);
    umount_fs(stage);
    ASSERT_OK(bd_detach(run, err, sizeof err));
    st_store *st = open_store();
    struct jr_info before, after;
    ASSERT_OK(jr_volume_stat(st, "v-ov", &before));

    /* Overlay: the kernel replays the journal into the scratch overlay,
     * the read-only mount sees every fsync'ed file. */
    char dev2[64];
    run_dir_of("v-ov", run, sizeof run);
    struct bd_attach_opts o = {.config_path = g_cfg, .region = "a",
                               .vol_id = "v-ov", .run_dir = run,
                               .exporter_path = g_exe, .overlay = 1};
    int rc = bd_attach(&o, dev, sizeof dev, err, sizeof err);
    if (rc < 0) TT_FAIL("bd_attach overlay: %d %s", rc, err);
    ASSERT_OK(bd_attach(&o, dev2, sizeof dev2, err, sizeof err));
    ASSERT_STREQ(dev, dev2);
    ASSERT_EQ(attach_opts("v-ov", 0, 0, dev2, sizeof dev2), -EROFS);
    ASSERT_EQ(bd_resize(run, 256 * MiB, err, sizeof err), -EROFS);
    mount_fs(dev, stage, "ext4", 1);
    check_files(stage, 41);
    umount_fs(stage);
    /* Raw writes land in the overlay: visible until detach... */
    char buf[8192], got[8192];
    fill_pattern(buf, sizeof buf, 77);
    int fd = open(dev, O_RDWR | O_DIRECT);
    ASSERT(fd >= 0);
    void *al;
    ASSERT_EQ(posix_memalign(&al, 4096, sizeof buf), 0);
    memcpy(al, buf, sizeof buf);
    ASSERT_EQ(pwrite(fd, al, sizeof buf, 100 * MiB), (ssize_t)sizeof buf);
    memset(al, 0, sizeof buf);
    ASSERT_EQ(pread(fd, al, sizeof buf, 100 * MiB), (ssize_t)sizeof buf);
    ASSERT_MEMEQ(al, buf, sizeof buf);
    close(fd);
    free(al);
    detach_clean("v-ov", dev);
    /* ...and never reach the volume: no journal entry, old bytes. */
    ASSERT_OK(jr_volume_stat(st, "v-ov", &after));
    ASSERT_UEQ(after.head, before.head);
    jr_volume *v = NULL;
    ASSERT_OK(jr_open(st, "v-ov", 0, NULL, &v));
    ASSERT_OK(jr_read(v, 100 * MiB, got, sizeof got));
    ASSERT(memcmp(got, buf, sizeof buf) != 0);
    ASSERT_OK(jr_close(v));

    /* Plain read-only: the kernel refuses to replay; mnt_mount falls back
     * to mounting without recovery (the fs is there, maybe older). */
    attach("v-ov", 1, dev, sizeof dev);
    mount_fs(dev, stage, "ext4", 1);
    ASSERT_EQ(mnt_is_mounted(stage), 1);
    umount_fs(stage);
    detach_clean("v-ov", dev);

    /* A secondary can be attached with an overlay too (no lease). */
    struct jr_create_opts so = {.size = 64 * MiB, .region = "a",
                                .role = JR_ROLE_SECONDARY};
    ASSERT_OK(jr_volume_create(st, "v-ov-sec", &so));
    st_close(st);
    run_dir_of("v-ov-sec", run, sizeof run);
    o.vol_id = "v-ov-sec";
    o.run_dir = run;
    ASSERT_OK(bd_attach(&o, dev, sizeof dev, err, sizeof err));
    detach_clean("v-ov-sec", dev);
}
TEST(overlay_replays_readonly) { run_scenario(sc_overlay); }

static void reattach_cb(const char *run_dir, const char *vol_id,
                        const char *dev, int rc, void *arg)
{
    int *n = arg;
    if (rc == 0) (*n)++;
}

static void last_rc_cb(const char *run_dir, const char *vol_id,
                       const char *dev, int rc, void *arg)
{
    *(int *)arg = rc;
}

static void sc_plugin_restart(void)
{
    char dev[64], dev2[64], stage[PATH_MAX], run[PATH_MAX], err[512];
    create_volume("v-restart", 128 * MiB);
    run_dir_of("v-restart", run, sizeof run);
    snprintf(stage, sizeof stage, "%s/stage", g_dir);
    /* The "plugin" stages in a process that then exits. */
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        char d[64];
        attach("v-restart", 0, d, sizeof d);
        format(d, "ext4", 1);
        mount_fs(d, stage, "ext4", 0);
        write_files(stage, 21);
        _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(p, &status, 0), p);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The restarted plugin knows nothing but run_dir. */
    ASSERT_OK(bd_find(run, dev, sizeof dev));
    ASSERT_EQ(mnt_is_mounted(stage), 1);
    ASSERT_OK(mnt_find_source(stage, dev2, sizeof dev2, NULL, 0));
    ASSERT_STREQ(dev, dev2);
    check_files(stage, 21);
    write_files(stage, 22);
    int healthy = 0;
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/run", g_dir);
    ASSERT_OK(bd_reattach_all(root, g_cfg, g_exe, reattach_cb, &healthy));
    ASSERT_EQ(healthy, 1);
    ASSERT_OK(bd_find(run, dev2, sizeof dev2));
    ASSERT_STREQ(dev, dev2);
    /* Exporter dead under a mounted fs: cannot be repaired in place
     * (the caller must unstage first). */
    pid_t xp = exporter_pid("v-restart");
    ASSERT_EQ(kill(xp, SIGKILL), 0);
    for (int i = 0; i < 2000 && proc_is_exporter(xp); i++) usleep(5000);
    int last_rc = 0;
    ASSERT_EQ(bd_reattach_all(root, g_cfg, g_exe, last_rc_cb, &last_rc),
              -EBUSY);
    ASSERT_EQ(last_rc, -EBUSY);
    umount_fs(stage);
    /* Now unstaged, the dead attachment is repaired: bd_reattach_all
     * brings it back (a new exporter, taking over the lease). */
    ASSERT_EQ(bd_find(run, dev2, sizeof dev2), -ESTALE);
    healthy = 0;
    ASSERT_OK(bd_reattach_all(root, g_cfg, g_exe, reattach_cb, &healthy));
    ASSERT_EQ(healthy, 1);
    ASSERT_OK(bd_find(run, dev, sizeof dev));
    mount_fs(dev, stage, "ext4", 0);
    check_files(stage, 22);
    umount_fs(stage);
    detach_clean("v-restart", dev);

    /* A plugin that died between LOOP_CONFIGURE and recording the device:
     * the unrecorded loop device is found and cleared all the same. */
    attach("v-restart", 0, dev, sizeof dev);
    pid_t pid = exporter_pid("v-restart");
    char devrec[PATH_MAX + 8];
    snprintf(devrec, sizeof devrec, "%s/dev", run);
    ASSERT_EQ(unlink(devrec), 0);
    ASSERT_EQ(bd_find(run, dev2, sizeof dev2), -ESTALE);
    ASSERT_OK(bd_detach(run, err, sizeof err));
    ASSERT(!loop_on_image(dev, run));
    ASSERT(!proc_is_exporter(pid));
}
TEST(plugin_restart) { run_scenario(sc_plugin_restart); }

struct par_arg {
    char vol[32];
    char dev[64];
    int rc;
};

static void *par_attach(void *p)
{
    struct par_arg *a = p;
    a->rc = attach_opts(a->vol, 0, 0, a->dev, sizeof a->dev);
    return NULL;
}

/* Several volumes attached at once (the node service serialises per
 * volume only): distinct devices, each on its own image. */
static void sc_parallel(void)
{
    enum { N = 6 };
    struct par_arg a[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        snprintf(a[i].vol, sizeof a[i].vol, "v-par%d", i);
        create_volume(a[i].vol, 32 * MiB);
    }
    for (int i = 0; i < N; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, par_attach, &a[i]), 0);
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++) {
        ASSERT_OK(a[i].rc);
        char run[PATH_MAX];
        run_dir_of(a[i].vol, run, sizeof run);
        ASSERT(loop_on_image(a[i].dev, run));
        for (int j = 0; j < i; j++) ASSERT(strcmp(a[i].dev, a[j].dev) != 0);
        /* Each device writes to its own volume. */
        char buf[4096];
        memset(buf, 'a' + i, sizeof buf);
        int fd = open(a[i].dev, O_WRONLY);
        ASSERT(fd >= 0);
        ASSERT_EQ(pwrite(fd, buf, sizeof buf, 0), 4096);
        ASSERT_EQ(fsync(fd), 0);
        close(fd);
    }
    for (int i = 0; i < N; i++) detach_clean(a[i].vol, a[i].dev);
    st_store *st = open_store();
    for (int i = 0; i < N; i++) {
        jr_volume *v = NULL;
        char got[4096], want[4096];
        memset(want, 'a' + i, sizeof want);
        ASSERT_OK(jr_open(st, a[i].vol, 0, NULL, &v));
        ASSERT_OK(jr_read(v, 0, got, sizeof got));
        ASSERT_MEMEQ(got, want, sizeof want);
        ASSERT_OK(jr_close(v));
    }
    st_close(st);
}
TEST(parallel_attach) { run_scenario(sc_parallel); }

TT_MAIN()
