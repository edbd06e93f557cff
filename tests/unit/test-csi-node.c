/*
 * test-csi-node.c: the CSI node data path through a real tandem-csi over
 * its socket, with real FUSE exporters, loop devices, mkfs and mounts:
 * stage + publish an ext4 volume, write files, unpublish, unstage (nothing
 * left behind), stage again and read them back read-only; raw block mode;
 * online expansion of a staged volume; a replica staged read-only; a
 * plugin crash and restart with volumes staged; the same round trip on a
 * Ceph (rados) region.
 *
 * Needs root, /dev/fuse and loop devices (SKIPPED otherwise).  Rados:
 * SKIPPED with $TANDEM_CEPH_SKIP, or "TANDEM_CEPH_CONF not set".
 */
#include <sys/ioctl.h>
#include <sys/statvfs.h>

#include "test-csi-client.h"

#include "csi/datapath/mounter.h"

static void need_node(void)
{
    if (geteuid() != 0) TT_SKIP("needs root (loop devices, mount)");
    if (access("/dev/fuse", R_OK | W_OK) != 0)
        TT_SKIP("/dev/fuse not usable: %s", strerror(errno));
    if (access("/dev/loop-control", R_OK | W_OK) != 0)
        TT_SKIP("/dev/loop-control not usable: %s", strerror(errno));
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    ASSERT_EQ(fsync(fd), 0);
    ASSERT_EQ(close(fd), 0);
}

static void read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) TT_FAIL("open %s: %s", path, strerror(errno));
    ssize_t n = read(fd, buf, len - 1);
    ASSERT(n >= 0);
    buf[n] = 0;
    close(fd);
}

/* Nothing of the volume is left on the node: no mount under the scratch
 * dir, no run dir (exporter, loop device), no stage record. */
static void assert_clean(struct csi_proc *p, const char *id, const char *sp,
                         const char *tp)
{
    char path[600];
    ASSERT_EQ(mnt_is_mounted(sp), 0);
    ASSERT_EQ(mnt_is_mounted(tp), 0);
    ASSERT(access(tp, F_OK) != 0); /* the plugin removed its target */
    snprintf(path, sizeof(path), "%s/vols/%s", p->state, id);
    ASSERT(access(path, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/staged/%s", p->state, id);
    ASSERT(access(path, F_OK) != 0);
}

static uint64_t journal_head(struct csi_proc *p, const char *region,
                             const char *id)
{
    struct jr_info in;
    ASSERT_EQ(tc_stat_in(p, region, id, &in), 0);
    return in.head;
}

/* The ext4 round trip on region `region` (param region pins it). */
static void mount_roundtrip(struct csi_proc *p, const char *region)
{
    char msg[1024], id[200], sp[400], tp[400], tp2[400], f[500], buf[256];
    struct tc_params pr = {0};
    tc_param(&pr, "region", region);
    snprintf(sp, sizeof(sp), "%s/staging", p->dir);
    snprintf(tp, sizeof(tp), "%s/pod1-target", p->dir);
    snprintf(tp2, sizeof(tp2), "%s/pod2-target", p->dir);
    ASSERT_CODE(tc_create(p, "pvc-fs", 64 << 20, 0, &pr, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    uint64_t head0 = journal_head(p, region, id);

    ASSERT_CODE(tc_stage(p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(mnt_is_mounted(sp), 1);
    /* Idempotent; another capability at the same path: ALREADY_EXISTS. */
    ASSERT_CODE(tc_stage(p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_stage(p, id, sp, 1, TC_SNW, msg, sizeof(msg)),
                RPC_ALREADY_EXISTS, msg);

    ASSERT_CODE(tc_publish(p, id, sp, tp, 0, TC_SNW, 0, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_CODE(tc_publish(p, id, sp, tp, 0, TC_SNW, 0, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_CODE(tc_publish(p, id, sp, tp, 0, TC_SNW, 1, msg, sizeof(msg)),
                RPC_ALREADY_EXISTS, msg);
    /* SINGLE_NODE_WRITER: one target only. */
    ASSERT_CODE(tc_publish(p, id, sp, tp2, 0, TC_SNW, 0, msg, sizeof(msg)),
                RPC_FAILED_PRECONDITION, msg);
    snprintf(f, sizeof(f), "%s/hello.txt", tp);
    write_file(f, "written through the journal\n");
    snprintf(f, sizeof(f), "%s/dir", tp);
    ASSERT_EQ(mkdir(f, 0755), 0);
    snprintf(f, sizeof(f), "%s/dir/second", tp);
    write_file(f, "second file\n");
    int dfd = open(tp, O_RDONLY);
    ASSERT(dfd >= 0);
    ASSERT_EQ(syncfs(dfd), 0);
    close(dfd);
    /* Every write went through the journal. */
    ASSERT_GT(journal_head(p, region, id), head0);

    /* Stats: bytes and inodes of the mounted filesystem. */
    Csi__V1__NodeGetVolumeStatsResponse *gr;
    ASSERT_CODE(tc_stats(p, id, tp, &gr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(gr->n_usage, 2);
    int bytes = 0, inodes = 0;
    for (size_t i = 0; i < gr->n_usage; i++) {
        Csi__V1__VolumeUsage *u = gr->usage[i];
        ASSERT_GT(u->total, 0);
        ASSERT_GT(u->used, 0);
        ASSERT_LE(u->used, u->total);
        bytes |= u->unit == CSI__V1__VOLUME_USAGE__UNIT__BYTES;
        inodes |= u->unit == CSI__V1__VOLUME_USAGE__UNIT__INODES;
        if (u->unit == CSI__V1__VOLUME_USAGE__UNIT__BYTES)
            ASSERT_LE(u->total, 64 << 20);
    }
    ASSERT(bytes && inodes);
    ASSERT(gr->volume_condition && !gr->volume_condition->abnormal);
    tc_free(gr);

    /* DeleteVolume while staged: in use. */
    ASSERT_CODE(tc_delete(p, id), RPC_FAILED_PRECONDITION, "");

    /* Undo everything, twice (idempotent). */
    ASSERT_CODE(tc_unpublish(p, id, tp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unpublish(p, id, tp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    assert_clean(p, id, sp, tp);

    /* Stage again (no reformat) and read back, read-only. */
    ASSERT_CODE(tc_stage(p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_publish(p, id, sp, tp, 0, TC_SNW, 1, msg, sizeof(msg)),
                RPC_OK, msg);
    snprintf(f, sizeof(f), "%s/hello.txt", tp);
    read_file(f, buf, sizeof(buf));
    ASSERT_STREQ(buf, "written through the journal\n");
    snprintf(f, sizeof(f), "%s/dir/second", tp);
    read_file(f, buf, sizeof(buf));
    ASSERT_STREQ(buf, "second file\n");
    snprintf(f, sizeof(f), "%s/new", tp);
    ASSERT(open(f, O_WRONLY | O_CREAT, 0644) < 0 && errno == EROFS);
    ASSERT_CODE(tc_unpublish(p, id, tp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    assert_clean(p, id, sp, tp);
    ASSERT_CODE(tc_delete(p, id), RPC_OK, "");
}

TEST(mount_ext4_roundtrip)
{
    need_node();
    struct csi_proc p;
    csi_proc_start(&p, NULL);
    mount_roundtrip(&p, "a");
    csi_proc_stop(&p);
}

TEST(mount_roundtrip_rados)
{
    need_node();
    const char *skip = getenv("TANDEM_CEPH_SKIP");
    const char *conf = getenv("TANDEM_CEPH_CONF");
    if (skip && skip[0]) TT_SKIP("%s", skip);
    if (!conf || !conf[0]) TT_SKIP("TANDEM_CEPH_CONF not set");
    const char *keyring = getenv("TANDEM_CEPH_KEYRING");
    const char *client = getenv("TANDEM_CEPH_CLIENT");
    const char *pool = getenv("TANDEM_CEPH_POOL_A");
    char extra[2048], ns[64];
    /* A fresh RADOS namespace: nothing of earlier runs is seen. */
    snprintf(ns, sizeof(ns), "csi-node-%d-%ld", (int)getpid(), (long)time(NULL));
    snprintf(extra, sizeof(extra),
             "[region r]\nbackend = rados\nceph_conf = %s\nclient_id = %s\n"
             "%s%s%spool = %s\nrados_namespace = %s\n",
             conf, client && client[0] ? client : "admin",
             keyring && keyring[0] ? "keyring = " : "",
             keyring && keyring[0] ? keyring : "",
             keyring && keyring[0] ? "\n" : "",
             pool && pool[0] ? pool : "tandem-a", ns);
    struct csi_proc p;
    csi_proc_start(&p, extra);
    mount_roundtrip(&p, "r");
    csi_proc_stop(&p);
}

TEST(block_mode)
{
    need_node();
    struct csi_proc p;
    char msg[1024], id[200], sp[400], tp[400];
    csi_proc_start(&p, NULL);
    snprintf(sp, sizeof(sp), "%s/staging-blk", p.dir);
    snprintf(tp, sizeof(tp), "%s/pod-dev", p.dir);
    ASSERT_CODE(tc_create(&p, "pvc-blk", 16 << 20, 1, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_stage(&p, id, sp, 1, TC_SNW, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 1, TC_SNW, 0, msg, sizeof(msg)),
                RPC_OK, msg);
    struct stat stt;
    ASSERT_EQ(stat(tp, &stt), 0);
    ASSERT(S_ISBLK(stt.st_mode));
    /* A pattern at a few offsets, through the device. */
    static char pat[65536], back[65536];
    for (size_t i = 0; i < sizeof(pat); i++) pat[i] = (char)(i * 7 + 3);
    int fd = open(tp, O_RDWR);
    ASSERT(fd >= 0);
    ASSERT_EQ(pwrite(fd, pat, sizeof(pat), 0), (ssize_t)sizeof(pat));
    ASSERT_EQ(pwrite(fd, pat, sizeof(pat), (12 << 20) + 4096),
              (ssize_t)sizeof(pat));
    ASSERT_EQ(fsync(fd), 0);
    close(fd);
    Csi__V1__NodeGetVolumeStatsResponse *gr;
    ASSERT_CODE(tc_stats(&p, id, tp, &gr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(gr->n_usage, 1);
    ASSERT_EQ(gr->usage[0]->unit, CSI__V1__VOLUME_USAGE__UNIT__BYTES);
    ASSERT_EQ(gr->usage[0]->total, 16 << 20);
    tc_free(gr);
    /* The volume is here: a bad path is INVALID_ARGUMENT, another
     * absolute one NOT_FOUND (stats and expand alike). */
    ASSERT_CODE(tc_stats(&p, id, "pod-dev", &gr, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_stats(&p, id, "/tmp/../pod-dev", &gr, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_stats(&p, id, "/nonexistent/pod-dev", &gr, msg,
                         sizeof(msg)), RPC_NOT_FOUND, msg);
    Csi__V1__NodeExpandVolumeRequest eq =
        CSI__V1__NODE_EXPAND_VOLUME_REQUEST__INIT;
    eq.volume_id = id;
    eq.volume_path = "pod-dev";
    ASSERT_CODE(tc_try(&p, "/csi.v1.Node/NodeExpandVolume", &eq.base, msg,
                       sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    eq.volume_path = "/nonexistent/pod-dev";
    ASSERT_CODE(tc_try(&p, "/csi.v1.Node/NodeExpandVolume", &eq.base, msg,
                       sizeof(msg)), RPC_NOT_FOUND, msg);
    /* A mount capability for a block volume: the spec's "exceeds
     * capabilities", INVALID_ARGUMENT. */
    struct tc_cap ecap;
    eq.volume_path = (char *)tp;
    eq.volume_capability = tc_cap(&ecap, 0, TC_SNW, NULL);
    ASSERT_CODE(tc_try(&p, "/csi.v1.Node/NodeExpandVolume", &eq.base, msg,
                       sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_unpublish(&p, id, tp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(&p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    assert_clean(&p, id, sp, tp);
    /* Again, read-only, and read it back. */
    ASSERT_CODE(tc_stage(&p, id, sp, 1, TC_SNW, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 1, TC_SNW, 1, msg, sizeof(msg)),
                RPC_OK, msg);
    fd = open(tp, O_RDONLY);
    ASSERT(fd >= 0);
    ASSERT_EQ(pread(fd, back, sizeof(back), 0), (ssize_t)sizeof(back));
    ASSERT(memcmp(pat, back, sizeof(pat)) == 0);
    ASSERT_EQ(pread(fd, back, sizeof(back), (12 << 20) + 4096),
              (ssize_t)sizeof(back));
    ASSERT(memcmp(pat, back, sizeof(pat)) == 0);
    close(fd);
    /* Read-only publish: writes to the device fail. */
    fd = open(tp, O_WRONLY);
    ASSERT(fd < 0 || pwrite(fd, pat, 4096, 0) < 0);
    if (fd >= 0) close(fd);
    ASSERT_CODE(tc_unpublish(&p, id, tp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(&p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    assert_clean(&p, id, sp, tp);
    csi_proc_stop(&p);
}

static int have_cap_sys_resource(void)
{
    char line[256];
    unsigned long long eff = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "CapEff: %llx", &eff) == 1) break;
    fclose(f);
    return (eff >> 24) & 1; /* CAP_SYS_RESOURCE */
}

/* Online expansion of a staged, published fs volume from size0 to size1:
 * ControllerExpandVolume (the node holds the writer lease, so the node
 * must do it), then NodeExpandVolume grows device and filesystem. */
static void expand_case(const char *fs, int64_t size0, int64_t size1)
{
    struct csi_proc p;
    char msg[1024], id[200], sp[400], tp[400];
    csi_proc_start(&p, NULL);
    snprintf(sp, sizeof(sp), "%s/staging", p.dir);
    snprintf(tp, sizeof(tp), "%s/target", p.dir);
    struct tc_params pr = {0};
    tc_param(&pr, "fsType", fs);
    ASSERT_CODE(tc_create(&p, "pvc-grow", size0, 0, &pr, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_stage(&p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 0, TC_SNW, 0, msg, sizeof(msg)),
                RPC_OK, msg);
    struct statvfs before, after;
    ASSERT_EQ(statvfs(tp, &before), 0);

    Csi__V1__ControllerExpandVolumeResponse *crr;
    ASSERT_CODE(tc_expand(&p, id, size1, 0, -1, &crr, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT(crr->node_expansion_required);
    ASSERT_EQ(crr->capacity_bytes, size1);
    tc_free(crr);

    Csi__V1__NodeExpandVolumeRequest nq =
        CSI__V1__NODE_EXPAND_VOLUME_REQUEST__INIT;
    Csi__V1__NodeExpandVolumeResponse *nr;
    nq.volume_id = id;
    nq.volume_path = tp;
    nq.staging_target_path = sp;
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    cr.required_bytes = size1;
    nq.capacity_range = &cr;
    ASSERT_CODE(tc_call(&p, "/csi.v1.Node/NodeExpandVolume", &nq.base,
                        &csi__v1__node_expand_volume_response__descriptor,
                        &nr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(nr->capacity_bytes, size1);
    tc_free(nr);
    ASSERT_EQ(statvfs(tp, &after), 0);
    uint64_t b0 = (uint64_t)before.f_blocks * before.f_frsize;
    uint64_t b1 = (uint64_t)after.f_blocks * after.f_frsize;
    if (!(b1 > b0 + (uint64_t)(size1 - size0) * 3 / 4))
        TT_FAIL("filesystem did not grow: %" PRIu64 " -> %" PRIu64, b0, b1);
    /* The header says so too. */
    struct jr_info in;
    ASSERT_EQ(tc_stat_in(&p, "a", id, &in), 0);
    ASSERT_UEQ(in.size, size1);
    ASSERT_CODE(tc_unpublish(&p, id, tp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(&p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    assert_clean(&p, id, sp, tp);
    csi_proc_stop(&p);
}

TEST(expand_staged_xfs)
{
    need_node();
    /* mkfs.xfs wants at least 300 MiB; the image is sparse. */
    expand_case("xfs", 320 << 20, 512 << 20);
}

TEST(expand_staged_ext4)
{
    need_node();
    /* ext4 online resize needs CAP_SYS_RESOURCE (a privileged pod has
     * it; some sandboxes drop it). */
    if (!have_cap_sys_resource())
        TT_SKIP("no CAP_SYS_RESOURCE: ext4 online resize is refused here");
    expand_case("ext4", 64 << 20, 128 << 20);
}

/* A replica can be staged and published read-only (here as a raw block
 * device), never read-write. */
TEST(replica_read_only)
{
    need_node();
    struct csi_proc p;
    char msg[1024], sp[400], tp[400];
    csi_proc_start(&p, NULL);
    snprintf(sp, sizeof(sp), "%s/staging", p.dir);
    snprintf(tp, sizeof(tp), "%s/dev", p.dir);
    tc_make_replica(&p, "a", "pvc-replica", 8 << 20);
    ASSERT_CODE(tc_stage(&p, "pvc-replica", sp, 1, TC_SNW, msg, sizeof(msg)),
                RPC_FAILED_PRECONDITION, msg);
    ASSERT_CODE(tc_stage(&p, "pvc-replica", sp, 1, TC_SNRO, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_CODE(tc_publish(&p, "pvc-replica", sp, tp, 1, TC_SNRO, 0, msg,
                        sizeof(msg)), RPC_OK, msg);
    int fd = open(tp, O_RDONLY);
    ASSERT(fd >= 0);
    char b[4096];
    ASSERT_EQ(pread(fd, b, sizeof(b), 0), (ssize_t)sizeof(b));
    close(fd);
    fd = open(tp, O_WRONLY);
    ASSERT(fd < 0 || pwrite(fd, b, sizeof(b), 0) < 0);
    if (fd >= 0) close(fd);
    ASSERT_CODE(tc_unpublish(&p, "pvc-replica", tp, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_CODE(tc_unstage(&p, "pvc-replica", sp, msg, sizeof(msg)), RPC_OK,
                msg);
    assert_clean(&p, "pvc-replica", sp, tp);
    csi_proc_stop(&p);
}

/* The plugin crashes with a volume staged and published: the mount keeps
 * working (the exporter is its own process), and the restarted plugin
 * still unpublishes and unstages it from its records. */
TEST(plugin_restart_keeps_volumes)
{
    need_node();
    struct csi_proc p;
    char msg[1024], id[200], sp[400], tp[400], f[500], buf[64];
    csi_proc_start(&p, NULL);
    snprintf(sp, sizeof(sp), "%s/staging", p.dir);
    snprintf(tp, sizeof(tp), "%s/target", p.dir);
    ASSERT_CODE(tc_create(&p, "pvc-rst", 32 << 20, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_stage(&p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 0, TC_SNW, 0, msg, sizeof(msg)),
                RPC_OK, msg);
    csi_proc_crash_restart(&p);
    snprintf(f, sizeof(f), "%s/after-crash", tp);
    write_file(f, "still here\n");
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 0, TC_SNW, 0, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_CODE(tc_unpublish(&p, id, tp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(&p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    assert_clean(&p, id, sp, tp);
    ASSERT_CODE(tc_stage(&p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 0, TC_SNW, 1, msg, sizeof(msg)),
                RPC_OK, msg);
    read_file(f, buf, sizeof(buf));
    ASSERT_STREQ(buf, "still here\n");
    ASSERT_CODE(tc_unpublish(&p, id, tp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(&p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    csi_proc_stop(&p);
}

/* ControllerExpandVolume while another holder has the volume open (a node
 * elsewhere) is recorded; the next NodeStageVolume applies it. */
TEST(pending_expansion_applied_at_stage)
{
    need_node();
    struct csi_proc p;
    char msg[1024], id[200], sp[400], tp[400];
    csi_proc_start(&p, NULL);
    snprintf(sp, sizeof(sp), "%s/staging", p.dir);
    snprintf(tp, sizeof(tp), "%s/target", p.dir);
    struct tc_params pr = {0};
    tc_param(&pr, "fsType", "xfs");
    ASSERT_CODE(tc_create(&p, "pvc-later", 320 << 20, 0, &pr, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    /* Format it once (stage, unstage). */
    ASSERT_CODE(tc_stage(&p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_CODE(tc_unstage(&p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    jr_volume *v = NULL;
    ASSERT_EQ(jr_open(st, id, JR_OPEN_WRITE, "elsewhere", &v), 0);
    Csi__V1__ControllerExpandVolumeResponse *crr;
    ASSERT_CODE(tc_expand(&p, id, 512 << 20, 0, -1, &crr, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT(crr->node_expansion_required);
    tc_free(crr);
    ASSERT_EQ(jr_close(v), 0);
    ASSERT_CODE(tc_stage(&p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK,
                msg);
    struct statvfs sv;
    ASSERT_EQ(statvfs(sp, &sv), 0);
    ASSERT_GT((uint64_t)sv.f_blocks * sv.f_frsize, 400ull << 20);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(st, id, &in), 0);
    ASSERT_UEQ(in.size, 512 << 20);
    st_close(st);
    rg_free(cfg);
    ASSERT_CODE(tc_unstage(&p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    assert_clean(&p, id, sp, tp);
    csi_proc_stop(&p);
}

/* Is pid stopped (state T in /proc/pid/stat)? */
static int proc_stopped(pid_t pid)
{
    char p[64], b[512] = "";
    snprintf(p, sizeof(p), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(p, "re");
    if (!f) return 0;
    size_t n = fread(b, 1, sizeof(b) - 1, f);
    b[n] = 0;
    fclose(f);
    const char *rp = strrchr(b, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
}

/* The exporter of a staged volume dies: NodeGetVolumeStats reports the
 * volume abnormal, and NodeStageVolume again repairs it (new exporter and
 * loop device, fresh mount) with the acknowledged writes intact. */
TEST(exporter_death_repaired_by_stage)
{
    need_node();
    struct csi_proc p;
    char msg[1024], id[200], sp[400], tp[400], f[500], buf[64], path[600];
    csi_proc_start(&p, NULL);
    snprintf(sp, sizeof(sp), "%s/staging", p.dir);
    snprintf(tp, sizeof(tp), "%s/target", p.dir);
    ASSERT_CODE(tc_create(&p, "pvc-dead", 32 << 20, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_stage(&p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 0, TC_SNW, 0, msg, sizeof(msg)),
                RPC_OK, msg);
    snprintf(f, sizeof(f), "%s/kept", tp);
    write_file(f, "acknowledged\n");
    int dfd = open(tp, O_RDONLY);
    ASSERT(dfd >= 0);
    ASSERT_EQ(syncfs(dfd), 0);
    close(dfd);
    ASSERT_CODE(tc_unpublish(&p, id, tp, msg, sizeof(msg)), RPC_OK, msg);

    snprintf(path, sizeof(path), "%s/vols/%s/pid", p.state, id);
    read_file(path, buf, sizeof(buf));
    pid_t ex = (pid_t)atoi(buf);
    ASSERT_GT(ex, 1);
    /* A stopped exporter: abnormal, and the answer does not hang on the
     * volume (a bounded probe); normal again once continued. */
    Csi__V1__NodeGetVolumeStatsResponse *hr = NULL;
    ASSERT_CODE(tc_stats(&p, id, sp, &hr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT(hr->volume_condition && !hr->volume_condition->abnormal);
    tc_free(hr);
    ASSERT_EQ(kill(ex, SIGSTOP), 0);
    /* The signal is asynchronous: wait until the exporter is stopped, so
     * this checks the "stopped" answer (one that is still running reads
     * as hung after the probe's bound instead). */
    for (int i = 0; i < 500 && !proc_stopped(ex); i++) usleep(10000);
    ASSERT(proc_stopped(ex));
    struct timespec h0, h1;
    clock_gettime(CLOCK_MONOTONIC, &h0);
    int hc = tc_stats(&p, id, sp, &hr, msg, sizeof(msg));
    clock_gettime(CLOCK_MONOTONIC, &h1);
    ASSERT_EQ(kill(ex, SIGCONT), 0);
    ASSERT_CODE(hc, RPC_OK, msg);
    ASSERT(hr->volume_condition->abnormal);
    ASSERT(strstr(hr->volume_condition->message, "stopped"));
    ASSERT_LT(h1.tv_sec - h0.tv_sec, 5);
    tc_free(hr);
    ASSERT_CODE(tc_stats(&p, id, sp, &hr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT(!hr->volume_condition->abnormal);
    ASSERT_GT(hr->n_usage, 0);
    tc_free(hr);
    ASSERT_EQ(kill(ex, SIGKILL), 0);
    for (int i = 0; i < 500 && kill(ex, 0) == 0; i++) usleep(10000);

    Csi__V1__NodeGetVolumeStatsResponse *gr = NULL;
    ASSERT_CODE(tc_stats(&p, id, sp, &gr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT(gr->volume_condition && gr->volume_condition->abnormal);
    tc_free(gr);

    ASSERT_CODE(tc_stage(&p, id, sp, 0, TC_SNW, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_EQ(mnt_is_mounted(sp), 1);
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 0, TC_SNW, 1, msg, sizeof(msg)),
                RPC_OK, msg);
    read_file(f, buf, sizeof(buf));
    ASSERT_STREQ(buf, "acknowledged\n");
    ASSERT_CODE(tc_unpublish(&p, id, tp, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(&p, id, sp, msg, sizeof(msg)), RPC_OK, msg);
    assert_clean(&p, id, sp, tp);
    csi_proc_stop(&p);
}

TT_MAIN()
