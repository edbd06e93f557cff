/*
 * fuzz-bd-state.c: libFuzzer target for what csi/datapath/blockdev.c reads back from
 * a volume's run_dir (see blockdev.h): the attach record that
 * bd_reattach_all replays after a plugin restart (rec_load), the exporter
 * pid file (read_pid) and the recorded loop device (loop_number, and
 * bd_find over all three).  These files survive crashes and upgrades, so
 * they may be torn, stale or from another build: any content must give an
 * error or a bounded, NUL-terminated record; never a crash.
 *
 * The parsers are static in blockdev.c: the file is compiled into this
 * target (and libnode.a's copy is then not linked), so blockdev.c itself
 * stays as its owner wrote it.  bd_find only reads (files, /proc, /sys).
 *
 * Input: "attach\0pid\0dev" (missing parts: the file is absent).
 */
#include "csi/datapath/blockdev.c"

static char run_dir[64];

static void cleanup(void)
{
    static const char *names[] = {"attach", "pid", "dev"};
    for (size_t i = 0; i < 3; i++) remove_in(run_dir, names[i]);
    rmdir(run_dir);
}

static void init(void)
{
    tlog_init("fuzz", (enum tlog_level)(TLOG_ERROR + 1));
    /* Scratch files: $TMPDIR, else tmpfs (no fsync cost), else /tmp. */
    const char *t = getenv("TMPDIR");
    if (!t || t[0] != '/')
        t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(run_dir, sizeof(run_dir), "%.40s/fuzz-bd-XXXXXX", t);
    if (!mkdtemp(run_dir)) abort();
    atexit(cleanup);
}

static void put(const char *name, const uint8_t *d, size_t n, int present)
{
    char path[PATH_MAX];
    if (path_join(path, sizeof(path), run_dir, name) < 0) abort();
    if (!present) {
        unlink(path);
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, d, n) != (ssize_t)n) abort();
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!run_dir[0]) init();
    if (size > 3 * PATH_MAX) return 0;
    /* Split at the first two NULs. */
    const uint8_t *part[3] = {data, NULL, NULL};
    size_t len[3] = {size, 0, 0};
    for (int i = 0; i < 2 && part[i]; i++) {
        const uint8_t *z = memchr(part[i], 0, len[i]);
        if (!z) break;
        part[i + 1] = z + 1;
        len[i + 1] = len[i] - (size_t)(z + 1 - part[i]);
        len[i] = (size_t)(z - part[i]);
    }
    put("attach", part[0], len[0], 1);
    put("pid", part[1], len[1], part[1] != NULL);
    put("dev", part[2], len[2], part[2] != NULL);

    struct attach_rec r;
    memset(&r, 0x5a, sizeof(r));
    if (rec_load(run_dir, &r) == 0) {
        if (!r.vol_id[0] || strnlen(r.vol_id, sizeof(r.vol_id)) >=
                                sizeof(r.vol_id) ||
            strnlen(r.region, sizeof(r.region)) >= sizeof(r.region) ||
            strnlen(r.config, sizeof(r.config)) >= sizeof(r.config))
            abort();
        if ((r.read_only != 0 && r.read_only != 1) ||
            (r.overlay != 0 && r.overlay != 1))
            abort();
    }
    pid_t pid = read_pid(run_dir);
    if (pid != -1 && pid <= 0) abort();
    char dev[64];
    memset(dev, 0x5a, sizeof(dev));
    int rc = bd_find(run_dir, dev, sizeof(dev));
    if (rc == 0 || rc == -ESTALE) {
        if (strnlen(dev, sizeof(dev)) >= sizeof(dev)) abort();
    }
    if (rc == 0 && loop_number(dev) < 0) abort();
    /* The device string alone, as recorded. */
    if (part[2]) {
        char s[64];
        size_t n = len[2] < sizeof(s) - 1 ? len[2] : sizeof(s) - 1;
        memcpy(s, part[2], n);
        s[n] = 0;
        int k = loop_number(s);
        if (k != -EINVAL && (k < 0 || k > (1 << 20))) abort();
    }
    return 0;
}
