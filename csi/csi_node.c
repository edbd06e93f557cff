/*
 * csi_node.c: the Node service.  The data path itself is csi/datapath/blockdev.h
 * (journaled volume -> FUSE image -> loop device) and csi/datapath/mounter.h
 * (mkfs, mount, bind); this file holds the CSI rules around them.
 *
 * State on the node, under --state-dir (default /run/tandem):
 *   vols/<vol_id>/    the blockdev run dir of a staged volume
 *   staged/<vol_id>   the stage record: staging path, block or mount,
 *                     fs type, read-only, mount flags, access mode, and
 *                     one "pub=" line per published target (rewritten
 *                     atomically under the volume's in-flight lock)
 * Records live on disk so that a restarted plugin still knows what it
 * staged and published (the exporters survive it, see blockdev.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "csi/datapath/blockdev.h"
#include "csi_int.h"
#include "csi/datapath/mounter.h"
#include "tbase.h"
#include "tlog.h"

#define MAX_PUB 16

struct stage_rec {
    char staging[CSI_MAX_PATH];
    int block;                 /* 1: raw block, 0: mount */
    char fs[16];
    int ro;
    int mode;                  /* access mode at stage time */
    char region[RG_MAX_NAME + 1];
    char flags[512];           /* mount flags joined by ',' */
    size_t npub;
    struct {
        int ro;
        char target[CSI_MAX_PATH];
    } pub[MAX_PUB];
};

/* ------------------------------------------------------------- records */

static void run_dir(const csi_service *s, const char *id, char *buf,
                    size_t len)
{
    snprintf(buf, len, "%s/vols/%s", s->state_dir, id);
}

static void rec_path(const csi_service *s, const char *id, char *buf,
                     size_t len)
{
    snprintf(buf, len, "%s/staged/%s", s->state_dir, id);
}

/* Hand-written: the stage record is tandem's own key=value file (written
 * by rec_write below).
 * 0 and *r filled, -ENOENT if no record, -EINVAL if it is corrupt. */
static int rec_read(const csi_service *s, const char *id, struct stage_rec *r)
{
    char path[CSI_MAX_PATH], line[CSI_MAX_PATH + 64];
    rec_path(s, id, path, sizeof(path));
    memset(r, 0, sizeof(*r));
    FILE *f = fopen(path, "re");
    if (!f) return -errno;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        char *v = strchr(line, '=');
        if (!v) continue;
        *v++ = 0;
        if (!strcmp(line, "staging"))
            snprintf(r->staging, sizeof(r->staging), "%s", v);
        else if (!strcmp(line, "type"))
            r->block = !strcmp(v, "block");
        else if (!strcmp(line, "fs"))
            snprintf(r->fs, sizeof(r->fs), "%s", v);
        else if (!strcmp(line, "ro"))
            r->ro = atoi(v);
        else if (!strcmp(line, "mode"))
            r->mode = atoi(v);
        else if (!strcmp(line, "region"))
            snprintf(r->region, sizeof(r->region), "%s", v);
        else if (!strcmp(line, "flags"))
            snprintf(r->flags, sizeof(r->flags), "%s", v);
        else if (!strcmp(line, "pub") && r->npub < MAX_PUB && strlen(v) > 2) {
            r->pub[r->npub].ro = v[0] == '1';
            snprintf(r->pub[r->npub].target, sizeof(r->pub[0].target), "%s",
                     v + 2);
            r->npub++;
        }
    }
    fclose(f);
    return r->staging[0] ? 0 : -EINVAL;
}

static int rec_write(const csi_service *s, const char *id,
                     const struct stage_rec *r)
{
    char path[CSI_MAX_PATH], tmp[CSI_MAX_PATH + 8], dir[CSI_MAX_PATH];
    int rc;
    snprintf(dir, sizeof(dir), "%s/staged", s->state_dir);
    if ((rc = tb_mkdir_p(dir, 0700)) < 0) return rc;
    rec_path(s, id, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (!f) return -errno;
    fprintf(f, "staging=%s\ntype=%s\nfs=%s\nro=%d\nmode=%d\nregion=%s\n"
               "flags=%s\n", r->staging, r->block ? "block" : "mount", r->fs,
            r->ro, r->mode, r->region, r->flags);
    for (size_t i = 0; i < r->npub; i++)
        fprintf(f, "pub=%d %s\n", r->pub[i].ro, r->pub[i].target);
    if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
        rc = -errno;
        fclose(f);
        unlink(tmp);
        return rc;
    }
    fclose(f);
    if (rename(tmp, path) < 0) {
        rc = -errno;
        unlink(tmp);
        return rc;
    }
    return 0;
}

static void rec_remove(const csi_service *s, const char *id)
{
    char path[CSI_MAX_PATH];
    rec_path(s, id, path, sizeof(path));
    unlink(path);
}

/* ------------------------------------------------------------- helpers */

static void join_flags(const Csi__V1__VolumeCapability *c, char *buf,
                       size_t len)
{
    size_t off = 0;
    buf[0] = 0;
    if (c->access_type_case != CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT ||
        !c->mount)
        return;
    for (size_t i = 0; i < c->mount->n_mount_flags && off < len; i++)
        off += snprintf(buf + off, len - off, "%s%s", i ? "," : "",
                        c->mount->mount_flags[i]);
}

static int has_ro_flag(const Csi__V1__VolumeCapability *c)
{
    if (c->access_type_case != CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT ||
        !c->mount)
        return 0;
    for (size_t i = 0; i < c->mount->n_mount_flags; i++)
        if (!strcmp(c->mount->mount_flags[i], "ro")) return 1;
    return 0;
}

/* Does volume id exist in some configured region?  1 yes, 0 no (every
 * store answered), -errno when unknown. */
static int volume_exists(csi_service *s, const char *id)
{
    size_t idx;
    struct jr_info in;
    if (!csi_volume_id_valid(id)) return 0;
    int rc = csi__find(s, id, 0, &idx, &in);
    if (rc == 0) return 1;
    return rc == -ENOENT ? 0 : rc;
}

static int not_staged_answer(csi_service *s, rpc_ctx *ctx, const char *id)
{
    int ex = volume_exists(s, id);
    if (ex == 0)
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %.128s not found",
                             id);
    return 0;
}

/* Meta key of volume id in region index idx ("" when unknown). */
static const char *meta_or(csi_service *s, size_t idx, const char *id,
                           const char *key, char *buf, size_t len)
{
    return csi__meta_copy(csi__store(s, idx), id, key, buf, len);
}

/* Mark a block device read-only or read-write (BLKROSET).  A bind mount
 * cannot make a device node read-only (writes to device nodes ignore the
 * mount's flags), so a read-only raw block publication of a read-write
 * staged volume flips the device itself. */
static int dev_set_ro(const char *dev, int ro)
{
    int fd = open(dev, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = ioctl(fd, BLKROSET, &ro) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* ------------------------------------------------------ NodeStageVolume */

int csi__node_stage(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                    ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__NodeStageVolumeRequest *q = (const void *)req;
    const Csi__V1__VolumeCapability *c = q->volume_capability;
    char rd[CSI_MAX_PATH], dev[128], err[512], flags[512], buf[256];
    struct stage_rec r, old;
    int code = RPC_OK, rc, attached_here = 0, mounted_here = 0, had_old = 0;

    if ((code = csi__need(ctx, "volume_id", q->volume_id)) ||
        (code = csi__need_path(ctx, "staging_target_path",
                               q->staging_target_path)) ||
        (code = csi__check_cap(ctx, c, RPC_FAILED_PRECONDITION)) ||
        (code = csi__lock_volume(s, ctx, q->volume_id)))
        return code;

    int ro = csi__cap_readonly(c) || has_ro_flag(c);
    int block = c->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
    join_flags(c, flags, sizeof(flags));
    run_dir(s, q->volume_id, rd, sizeof(rd));

    if (rec_read(s, q->volume_id, &old) == 0) {
        had_old = 1;
        if (strcmp(old.staging, q->staging_target_path)) {
            code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                                 "volume %s is already staged at %s",
                                 q->volume_id, old.staging);
            goto out;
        }
        const char *fs = block || !c->mount ? "" : c->mount->fs_type;
        if (old.block != block || old.ro != ro || strcmp(old.flags, flags) ||
            (fs && fs[0] && strcmp(fs, old.fs))) {
            code = rpc_ctx_error(ctx, RPC_ALREADY_EXISTS,
                                 "volume %s is staged at %s with another "
                                 "capability", q->volume_id, old.staging);
            goto out;
        }
        if (bd_find(rd, dev, sizeof(dev)) == 0 &&
            (block || mnt_is_mounted(q->staging_target_path) == 1))
            goto reply; /* already done: idempotent */
        /* Else repair below (exporter died, mount lost). */
    }

    size_t idx;
    struct jr_info in;
    if ((code = csi__find_volume(s, ctx, q->volume_id, 0, &idx, &in)))
        goto out;
    const char *region = s->cfg->regions[idx].name;
    if (meta_or(s, idx, q->volume_id, "csi.clone_pending", buf,
                sizeof(buf))[0]) {
        /* Its data is still being copied in: nobody may see it half
         * made (the provisioner's CreateVolume retry finishes it). */
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is a "
                             "clone whose copy is not complete (from %s)",
                             q->volume_id, buf);
        goto out;
    }
    if (in.role != JR_ROLE_PRIMARY && !ro) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                             "volume %s is a replica (secondary) in region "
                             "%s: it can only be staged read-only",
                             q->volume_id, region);
        goto out;
    }

    memset(&r, 0, sizeof(r));
    snprintf(r.staging, sizeof(r.staging), "%s", q->staging_target_path);
    r.block = block;
    r.ro = ro;
    r.mode = c->access_mode->mode;
    snprintf(r.region, sizeof(r.region), "%s", region);
    snprintf(r.flags, sizeof(r.flags), "%s", flags);
    if (had_old) { /* repairing: keep what is published */
        r.npub = old.npub;
        memcpy(r.pub, old.pub, sizeof(r.pub));
    }

    attached_here = bd_find(rd, dev, sizeof(dev)) != 0;
    if (had_old && attached_here && !block &&
        mnt_is_mounted(q->staging_target_path) == 1) {
        /* The staging mount outlived its device (exporter died): it can
         * only be replaced once no pod uses it. */
        for (size_t i = 0; i < old.npub; i++)
            if (mnt_is_mounted(old.pub[i].target) == 1) {
                attached_here = 0;
                code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                                     "volume %s lost its device while "
                                     "published at %s: unpublish it first",
                                     q->volume_id, old.pub[i].target);
                goto out;
            }
        mnt_umount(q->staging_target_path, NULL, 0);
        r.npub = 0;
    }
    struct bd_attach_opts ao = {
        .config_path = s->config_path, .region = region,
        .vol_id = q->volume_id, .run_dir = rd, .read_only = ro,
        .exporter_path = s->exporter[0] ? s->exporter : NULL,
        .owner = s->node_id};
    rc = bd_attach(&ao, dev, sizeof(dev), err, sizeof(err));
    if (rc < 0) {
        attached_here = 0; /* bd_attach leaves nothing behind on failure */
        code = rpc_ctx_error(ctx, rc == -EROFS ? RPC_FAILED_PRECONDITION
                                               : RPC_INTERNAL,
                             "attaching volume %s: %s", q->volume_id,
                             err[0] ? err : strerror(-rc));
        goto out;
    }

    /* A resize asked while the volume was staged elsewhere (or never
     * reached the node) is applied now. */
    int grown = 0;
    if (!ro) {
        meta_or(s, idx, q->volume_id, "csi.requested_bytes", buf, sizeof(buf));
        uint64_t want = strtoull(buf, NULL, 10), cur = 0;
        if (want && bd_size(rd, &cur) == 0 && want > cur) {
            rc = bd_resize(rd, want, err, sizeof(err));
            if (rc < 0)
                tlog_warn("csi.node.pending_resize_failed", "vol=%s want=%"
                          PRIu64 " err=%d", q->volume_id, want, rc);
            else
                grown = 1;
        }
    }

    if (!block) {
        const char *fs = c->mount && c->mount->fs_type && c->mount->fs_type[0]
                             ? c->mount->fs_type : NULL;
        const char *ctxfs = csi__map_get(q->n_volume_context,
                                         (void *const *)q->volume_context,
                                         "fsType");
        char metafs[16], mkfs[256];
        if (!fs && ctxfs && (!strcmp(ctxfs, "ext4") || !strcmp(ctxfs, "xfs")))
            fs = ctxfs;
        if (!fs) {
            meta_or(s, idx, q->volume_id, "csi.fs_type", metafs,
                    sizeof(metafs));
            fs = metafs[0] ? metafs : "ext4";
        }
        const char *mk = csi__map_get(q->n_volume_context,
                                      (void *const *)q->volume_context,
                                      "mkfsOptions");
        if (!mk) mk = meta_or(s, idx, q->volume_id, "csi.param.mkfsOptions",
                              mkfs, sizeof(mkfs));
        if (ro) {
            char found[32];
            rc = mnt_probe(dev, found, sizeof(found), err, sizeof(err));
            if (rc == 0 && !found[0]) {
                code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                                     "volume %s holds no filesystem and is "
                                     "staged read-only", q->volume_id);
                goto out;
            }
            if (rc == 0 && strcmp(found, fs)) {
                code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                                     "volume %s holds %s, not %s",
                                     q->volume_id, found, fs);
                goto out;
            }
        } else {
            int formatted = 0;
            rc = mnt_format_if_blank(dev, fs, mk, &formatted, err,
                                     sizeof(err));
            if (rc == -EMEDIUMTYPE) {
                code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                                     "volume %s: %s", q->volume_id, err);
                goto out;
            }
            if (rc < 0) {
                code = rpc_ctx_error(ctx, RPC_INTERNAL, "mkfs.%s on volume "
                                     "%s: %s", fs, q->volume_id, err);
                goto out;
            }
            if (formatted)
                tlog_info("csi.node.formatted", "vol=%s fs=%s dev=%s",
                          q->volume_id, fs, dev);
        }
        snprintf(r.fs, sizeof(r.fs), "%s", fs);
        const char *const *mf = c->mount ? (const char *const *)c->mount->mount_flags : NULL;
        size_t nmf = c->mount ? c->mount->n_mount_flags : 0;
        mounted_here = mnt_is_mounted(q->staging_target_path) != 1;
        rc = mnt_mount(dev, q->staging_target_path, fs, ro, mf, nmf, err,
                       sizeof(err));
        if (rc < 0) {
            mounted_here = 0;
            code = rpc_ctx_error(ctx, rc == -EBUSY ? RPC_ALREADY_EXISTS
                                 : rc == -EINVAL ? RPC_INVALID_ARGUMENT
                                                 : RPC_INTERNAL,
                                 "mounting volume %s at %s: %s", q->volume_id,
                                 q->staging_target_path, err);
            goto out;
        }
        if (grown) {
            rc = mnt_grow_fs(dev, q->staging_target_path, fs, err,
                             sizeof(err));
            if (rc < 0)
                tlog_warn("csi.node.grow_fs_failed", "vol=%s err=%d",
                          q->volume_id, rc);
        }
    }
    if ((rc = rec_write(s, q->volume_id, &r)) < 0) {
        code = rpc_ctx_error(ctx, RPC_INTERNAL, "recording stage of %s: %s",
                             q->volume_id, strerror(-rc));
        goto out;
    }
    tlog_info("csi.node.staged", "vol=%s region=%s dev=%s type=%s ro=%d "
              "role=%s", q->volume_id, region, dev, block ? "block" : "mount",
              ro, jr_role_name(in.role));
reply:
    *resp = csi__reply_new(&csi__v1__node_stage_volume_response__descriptor);
out:
    if (code != RPC_OK) {
        if (mounted_here) mnt_umount(q->staging_target_path, NULL, 0);
        if (attached_here) bd_detach(rd, NULL, 0);
    }
    csi__unlock(s, q->volume_id);
    return code;
}

/* ---------------------------------------------------- NodeUnstageVolume */

int csi__node_unstage(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                      ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__NodeUnstageVolumeRequest *q = (const void *)req;
    char rd[CSI_MAX_PATH], dev[128], err[512];
    struct stage_rec r;
    int code = RPC_OK, rc;

    if ((code = csi__need(ctx, "volume_id", q->volume_id)) ||
        (code = csi__need_path(ctx, "staging_target_path",
                               q->staging_target_path)) ||
        (code = csi__lock_volume(s, ctx, q->volume_id)))
        return code;
    run_dir(s, q->volume_id, rd, sizeof(rd));
    int have = rec_read(s, q->volume_id, &r) == 0;
    if (have && strcmp(r.staging, q->staging_target_path)) {
        /* Staged somewhere else: nothing staged at this path. */
        goto reply;
    }
    if (have) {
        for (size_t i = 0; i < r.npub; i++)
            if (mnt_is_mounted(r.pub[i].target) == 1) {
                code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                                     "volume %s is still published at %s",
                                     q->volume_id, r.pub[i].target);
                goto out;
            }
    }
    int attached = bd_find(rd, dev, sizeof(dev));
    if (!have && attached == -ENOENT &&
        mnt_is_mounted(q->staging_target_path) != 1) {
        code = not_staged_answer(s, ctx, q->volume_id);
        if (code == RPC_OK) goto reply;
        goto out;
    }
    if (!have || !r.block) {
        rc = mnt_umount(q->staging_target_path, err, sizeof(err));
        if (rc < 0) {
            code = rpc_ctx_error(ctx, RPC_INTERNAL, "unmounting %s: %s",
                                 q->staging_target_path, err);
            goto out;
        }
    }
    rc = bd_detach(rd, err, sizeof(err));
    if (rc == -EBUSY) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                             "volume %s: device still in use: %s",
                             q->volume_id, err);
        goto out;
    }
    if (rc < 0) {
        code = rpc_ctx_error(ctx, RPC_INTERNAL, "detaching volume %s: %s",
                             q->volume_id, err);
        goto out;
    }
    rec_remove(s, q->volume_id);
    tlog_info("csi.node.unstaged", "vol=%s", q->volume_id);
reply:
    *resp = csi__reply_new(&csi__v1__node_unstage_volume_response__descriptor);
out:
    csi__unlock(s, q->volume_id);
    return code;
}

/* ---------------------------------------------------- NodePublishVolume */

int csi__node_publish(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                      ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__NodePublishVolumeRequest *q = (const void *)req;
    const Csi__V1__VolumeCapability *c = q->volume_capability;
    char rd[CSI_MAX_PATH], dev[128], err[512];
    struct stage_rec r;
    int code = RPC_OK, rc;

    if ((code = csi__need(ctx, "volume_id", q->volume_id)) ||
        (code = csi__need_path(ctx, "target_path", q->target_path)) ||
        (code = csi__check_cap(ctx, c, RPC_FAILED_PRECONDITION)))
        return code;
    /* The spec's code for a missing staging path (STAGE_UNSTAGE_VOLUME
     * announced) is FAILED_PRECONDITION, not INVALID_ARGUMENT. */
    if (!q->staging_target_path || !q->staging_target_path[0])
        return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                             "staging_target_path missing: NodeStageVolume "
                             "first (STAGE_UNSTAGE_VOLUME)");
    if ((code = csi__need_path(ctx, "staging_target_path",
                               q->staging_target_path)) ||
        (code = csi__lock_volume(s, ctx, q->volume_id)))
        return code;
    run_dir(s, q->volume_id, rd, sizeof(rd));
    if (rec_read(s, q->volume_id, &r) < 0) {
        code = not_staged_answer(s, ctx, q->volume_id);
        if (code == RPC_OK)
            code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is "
                                 "not staged on this node", q->volume_id);
        goto out;
    }
    if (strcmp(r.staging, q->staging_target_path)) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is "
                             "staged at %s, not at %s", q->volume_id,
                             r.staging, q->staging_target_path);
        goto out;
    }
    int block = c->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
    if (block != r.block) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s was "
                             "staged as %s", q->volume_id,
                             r.block ? "block" : "mount");
        goto out;
    }
    int ro = q->readonly || csi__cap_readonly(c) || has_ro_flag(c);
    if (!ro && r.ro) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is "
                             "staged read-only (a replica, or a read-only "
                             "access mode): publish it read-only",
                             q->volume_id);
        goto out;
    }
    size_t found = r.npub;
    for (size_t i = 0; i < r.npub; i++)
        if (!strcmp(r.pub[i].target, q->target_path)) found = i;
    if (found < r.npub) {
        if (r.pub[found].ro != ro) {
            code = rpc_ctx_error(ctx, RPC_ALREADY_EXISTS, "volume %s is "
                                 "published at %s with readonly=%d",
                                 q->volume_id, q->target_path,
                                 r.pub[found].ro);
            goto out;
        }
        if (mnt_is_mounted(q->target_path) == 1) goto reply;
    } else if (r.npub > 0 &&
               c->access_mode->mode !=
                   CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_MULTI_WRITER) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is "
                             "already published at %s and its access mode "
                             "allows one target", q->volume_id,
                             r.pub[0].target);
        goto out;
    } else if (r.npub == MAX_PUB) {
        code = rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "volume %s is "
                             "published %d times already", q->volume_id,
                             MAX_PUB);
        goto out;
    }
    const char *src = r.staging;
    if (block) {
        rc = bd_find(rd, dev, sizeof(dev));
        if (rc < 0) {
            code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s: "
                                 "staged device is gone (%s): stage again",
                                 q->volume_id, strerror(-rc));
            goto out;
        }
        src = dev;
        /* Raw block: read-only is a property of the device, shared by
         * every publication, so read-only and read-write ones of a
         * read-write staged volume cannot coexist. */
        if (!r.ro && found == r.npub) {
            for (size_t i = 0; i < r.npub; i++)
                if (r.pub[i].ro != ro) {
                    code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                                         "raw block volume %s is published "
                                         "%s at %s: cannot also publish it "
                                         "%s", q->volume_id,
                                         r.pub[i].ro ? "read-only"
                                                     : "read-write",
                                         r.pub[i].target,
                                         ro ? "read-only" : "read-write");
                    goto out;
                }
            if (ro && (rc = dev_set_ro(dev, 1)) < 0) {
                code = rpc_ctx_error(ctx, RPC_INTERNAL, "making %s read-only:"
                                     " %s", dev, strerror(-rc));
                goto out;
            }
        }
    }
    const char *const *mf = !block && c->mount
                                ? (const char *const *)c->mount->mount_flags
                                : NULL;
    size_t nmf = !block && c->mount ? c->mount->n_mount_flags : 0;
    rc = mnt_bind(src, q->target_path, ro, mf, nmf, err, sizeof(err));
    if (rc < 0) {
        code = rpc_ctx_error(ctx, rc == -EBUSY ? RPC_ALREADY_EXISTS
                                               : RPC_INTERNAL,
                             "bind-mounting volume %s at %s: %s",
                             q->volume_id, q->target_path, err);
        goto out;
    }
    if (found == r.npub) {
        r.pub[r.npub].ro = ro;
        snprintf(r.pub[r.npub].target, sizeof(r.pub[0].target), "%s",
                 q->target_path);
        r.npub++;
        if ((rc = rec_write(s, q->volume_id, &r)) < 0) {
            mnt_umount(q->target_path, NULL, 0);
            code = rpc_ctx_error(ctx, RPC_INTERNAL, "recording publish: %s",
                                 strerror(-rc));
            goto out;
        }
    }
    tlog_info("csi.node.published", "vol=%s ro=%d type=%s", q->volume_id, ro,
              block ? "block" : "mount");
reply:
    *resp = csi__reply_new(&csi__v1__node_publish_volume_response__descriptor);
out:
    csi__unlock(s, q->volume_id);
    return code;
}

/* -------------------------------------------------- NodeUnpublishVolume */

int csi__node_unpublish(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__NodeUnpublishVolumeRequest *q = (const void *)req;
    char err[512];
    struct stage_rec r;
    int code = RPC_OK, rc;
    if ((code = csi__need(ctx, "volume_id", q->volume_id)) ||
        (code = csi__need_path(ctx, "target_path", q->target_path)) ||
        (code = csi__lock_volume(s, ctx, q->volume_id)))
        return code;
    int have = rec_read(s, q->volume_id, &r) == 0;
    size_t found = have ? r.npub : 0;
    for (size_t i = 0; have && i < r.npub; i++)
        if (!strcmp(r.pub[i].target, q->target_path)) found = i;
    int published = have && found < r.npub;
    int mounted = mnt_is_mounted(q->target_path) == 1;
    if (!published && !mounted) {
        /* Nothing to undo; unknown volumes are NOT_FOUND. */
        if (!have) {
            code = not_staged_answer(s, ctx, q->volume_id);
            if (code) goto out;
        }
        goto cleanup_path;
    }
    rc = mnt_umount(q->target_path, err, sizeof(err));
    if (rc < 0) {
        code = rpc_ctx_error(ctx, RPC_INTERNAL, "unmounting %s: %s",
                             q->target_path, err);
        goto out;
    }
    if (published) {
        r.pub[found] = r.pub[--r.npub];
        if (r.block && !r.ro && r.npub == 0) {
            char rd[CSI_MAX_PATH], dev[128];
            run_dir(s, q->volume_id, rd, sizeof(rd));
            if (bd_find(rd, dev, sizeof(dev)) == 0) dev_set_ro(dev, 0);
        }
        if ((rc = rec_write(s, q->volume_id, &r)) < 0) {
            code = rpc_ctx_error(ctx, RPC_INTERNAL, "recording unpublish: %s",
                                 strerror(-rc));
            goto out;
        }
    }
    tlog_info("csi.node.unpublished", "vol=%s", q->volume_id);
cleanup_path:
    /* The plugin made the target (directory or file): remove it. */
    if (rmdir(q->target_path) < 0 && errno == ENOTDIR)
        unlink(q->target_path);
    *resp =
        csi__reply_new(&csi__v1__node_unpublish_volume_response__descriptor);
out:
    csi__unlock(s, q->volume_id);
    return code;
}

/* ---------------------------------------------------- NodeGetVolumeStats */

/* Is path the staging path or a published target of the record? */
static int rec_has_path(const struct stage_rec *r, const char *path)
{
    if (!strcmp(r->staging, path)) return 1;
    for (size_t i = 0; i < r->npub; i++)
        if (!strcmp(r->pub[i].target, path)) return 1;
    return 0;
}

/* Does the exporter of run dir rd answer?  0 yes; 1 no, with msg saying
 * why.  Bounded: a child opens and reads the FUSE image (requests only
 * the exporter can answer; the file is direct-I/O, so no cache answers
 * for it) and this waits at most EXPORTER_PROBE_MS for it.  A stopped or
 * hung exporter leaves the child blocked in the kernel's FUSE wait,
 * which SIGKILL ends.  A child, not a thread: a thread stuck there could
 * never be taken back. */
#define EXPORTER_PROBE_MS 2000

/* A probe child that did not answer is killed, but it may not die yet:
 * once the exporter has taken its FUSE read, the kernel waits for the
 * answer uninterruptibly, SIGKILL or not (fuse's request_wait_answer), so
 * it dies only when the exporter answers or is gone.  Waiting for it here
 * would hang the RPC exactly when the probe was meant to bound it: a
 * detached thread reaps it instead (one per hung probe, gone with it). */
static void *probe_reaper(void *arg)
{
    pid_t c = (pid_t)(intptr_t)arg;
    while (waitpid(c, NULL, 0) < 0 && errno == EINTR) {}
    return NULL;
}

static void probe_abandon(pid_t c)
{
    kill(c, SIGKILL);
    for (int i = 0; i < 20; i++) { /* usually dead at once */
        pid_t w = waitpid(c, NULL, WNOHANG);
        if (w == c || (w < 0 && errno != EINTR)) return;
        usleep(5000);
    }
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, probe_reaper, (void *)(intptr_t)c) != 0)
        tlog_warn("csi.probe_unreaped", "pid=%ld", (long)c); /* a zombie */
    pthread_attr_destroy(&a);
}

static int exporter_probe(const char *rd, char *msg, size_t len)
{
    char path[CSI_MAX_PATH + 16], buf[512];
    long pid = 0;
    snprintf(path, sizeof(path), "%s/pid", rd);
    FILE *f = fopen(path, "re");
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1) pid = 0;
        fclose(f);
    }
    if (pid <= 0) {
        snprintf(msg, len, "the volume's exporter left no pid in %.200s: "
                 "unstage and stage it again", rd);
        return 1;
    }
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    f = fopen(path, "re");
    char state = 0;
    if (f) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        const char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ') state = rp[2];
    }
    if (!state || state == 'Z' || state == 'X') {
        snprintf(msg, len, "the volume's exporter (pid %ld) is dead: "
                 "unstage and stage it again", pid);
        return 1;
    }
    if (state == 'T' || state == 't') {
        snprintf(msg, len, "the volume's exporter (pid %ld) is stopped "
                 "(SIGSTOP or a debugger): I/O to the volume hangs until "
                 "it is continued (kill -CONT %ld)", pid, pid);
        return 1;
    }
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) return 0; /* cannot tell: say nothing */
    snprintf(path, sizeof(path), "%s/mnt/image", rd);
    pid_t c = fork();
    if (c == 0) {
        /* Only async-signal-safe calls in the child of a threaded
         * process. */
        char b[512];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        char ok = fd >= 0 && pread(fd, b, sizeof(b), 0) >= 0;
        if (write(pfd[1], &ok, 1) < 0) _exit(1);
        _exit(0);
    }
    close(pfd[1]);
    if (c < 0) {
        close(pfd[0]);
        return 0;
    }
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    char ok = 0;
    int pr = poll(&p, 1, EXPORTER_PROBE_MS);
    int answered = pr == 1 && read(pfd[0], &ok, 1) == 1;
    close(pfd[0]);
    if (answered)
        while (waitpid(c, NULL, 0) < 0 && errno == EINTR) {}
    else
        probe_abandon(c);
    if (!answered) {
        snprintf(msg, len, "the volume's exporter (pid %ld) did not answer "
                 "a read within %d ms: it is hung; I/O to the volume "
                 "stalls", pid, EXPORTER_PROBE_MS);
        return 1;
    }
    if (!ok) {
        snprintf(msg, len, "the volume's exporter (pid %ld) fails reads of "
                 "its image: see %.200s/log", pid, rd);
        return 1;
    }
    return 0;
}

static Csi__V1__VolumeUsage *usage_new(int unit, uint64_t total,
                                       uint64_t used, uint64_t avail)
{
    Csi__V1__VolumeUsage *u = csi__xcalloc(1, sizeof(*u));
    csi__v1__volume_usage__init(u);
    u->unit = unit;
    u->total = (int64_t)total;
    u->used = (int64_t)used;
    u->available = (int64_t)avail;
    return u;
}

int csi__node_stats(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                    ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__NodeGetVolumeStatsRequest *q = (const void *)req;
    char rd[CSI_MAX_PATH], dev[128];
    struct stage_rec r;
    struct mnt_stats ms;
    int code;
    if ((code = csi__need(ctx, "volume_id", q->volume_id)) ||
        (code = csi__need(ctx, "volume_path", q->volume_path)))
        return code;
    /* The volume first, then its path: a volume that is not here is
     * NOT_FOUND whatever the path looks like (the spec's answer for
     * "volume does not exist"; csi-sanity asks with a relative path). */
    if (!csi_volume_id_valid(q->volume_id) ||
        rec_read(s, q->volume_id, &r) < 0)
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %.128s is not staged "
                             "on this node", q->volume_id);
    if ((code = csi__need_path(ctx, "volume_path", q->volume_path)))
        return code;
    if (!rec_has_path(&r, q->volume_path))
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %.128s is not staged "
                             "or published at %.256s", q->volume_id,
                             q->volume_path);
    run_dir(s, q->volume_id, rd, sizeof(rd));
    int bd = bd_find(rd, dev, sizeof(dev));
    const char *path = q->volume_path;
    char why[512] = "";
    /* The exporter first, bounded: statistics of a filesystem whose
     * device hangs could hang too. */
    int sick = bd == 0 && exporter_probe(rd, why, sizeof(why));
    if (r.block && !strcmp(path, r.staging)) path = dev;
    memset(&ms, 0, sizeof(ms));
    int rc = bd == -ENOENT ? -ENOENT : sick ? 0 : mnt_stats(path, &ms);
    if (rc == -ENOENT)
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %s: %s does not "
                             "exist", q->volume_id, q->volume_path);
    if (rc < 0)
        return rpc_ctx_error(ctx, RPC_INTERNAL, "stats of %s: %s", path,
                             strerror(-rc));
    Csi__V1__NodeGetVolumeStatsResponse *o = csi__xcalloc(1, sizeof(*o));
    csi__v1__node_get_volume_stats_response__init(o);
    o->usage = csi__xcalloc(2, sizeof(*o->usage));
    if (sick) {
        /* No usage from a volume that does not answer. */
    } else if (ms.is_block || r.block) {
        o->usage[o->n_usage++] = usage_new(
            CSI__V1__VOLUME_USAGE__UNIT__BYTES, ms.bytes_total, 0, 0);
    } else {
        o->usage[o->n_usage++] =
            usage_new(CSI__V1__VOLUME_USAGE__UNIT__BYTES, ms.bytes_total,
                      ms.bytes_used, ms.bytes_avail);
        o->usage[o->n_usage++] =
            usage_new(CSI__V1__VOLUME_USAGE__UNIT__INODES, ms.inodes_total,
                      ms.inodes_used, ms.inodes_free);
    }
    o->volume_condition = csi__xcalloc(1, sizeof(*o->volume_condition));
    csi__v1__volume_condition__init(o->volume_condition);
    if (sick) {
        o->volume_condition->abnormal = 1;
        o->volume_condition->message = csi__xstrdup(why);
    } else if (bd == -ESTALE) {
        o->volume_condition->abnormal = 1;
        o->volume_condition->message = csi__xstrdup(
            "the volume's exporter died: unstage and stage it again");
    } else if (!r.block && mnt_is_mounted(q->volume_path) != 1) {
        o->volume_condition->abnormal = 1;
        o->volume_condition->message = csi__xstrdup("not mounted");
    } else {
        o->volume_condition->message = csi__xstrdup("healthy");
    }
    *resp = &o->base;
    return RPC_OK;
}

/* ------------------------------------------------------ NodeExpandVolume */

int csi__node_expand(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                     ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__NodeExpandVolumeRequest *q = (const void *)req;
    char rd[CSI_MAX_PATH], dev[128], err[512], buf[64];
    struct stage_rec r;
    int code = RPC_OK, rc;
    if ((code = csi__need(ctx, "volume_id", q->volume_id)) ||
        (code = csi__need(ctx, "volume_path", q->volume_path)))
        return code;
    if (q->capacity_range && (q->capacity_range->required_bytes < 0 ||
                              q->capacity_range->limit_bytes < 0))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "capacity_range: negative bytes");
    if ((q->volume_capability &&
         (code = csi__check_cap(ctx, q->volume_capability,
                                RPC_INVALID_ARGUMENT))) ||
        (code = csi__lock_volume(s, ctx, q->volume_id)))
        return code;
    run_dir(s, q->volume_id, rd, sizeof(rd));
    /* The volume first, then its path (as NodeGetVolumeStats). */
    if (rec_read(s, q->volume_id, &r) < 0) {
        code = rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %s is not staged on "
                             "this node", q->volume_id);
        goto out;
    }
    if ((code = csi__need_path(ctx, "volume_path", q->volume_path)))
        goto out;
    if (q->volume_capability &&
        (q->volume_capability->access_type_case ==
         CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK) != r.block) {
        /* The spec's "exceeds capabilities": not what it was staged as. */
        code = rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "volume %s is staged "
                             "as a %s volume, the capability says %s",
                             q->volume_id, r.block ? "block" : "mount",
                             r.block ? "mount" : "block");
        goto out;
    }
    if (!rec_has_path(&r, q->volume_path) || bd_find(rd, dev, sizeof(dev)) < 0) {
        code = rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %s is not staged or "
                             "published at %s on this node", q->volume_id,
                             q->volume_path);
        goto out;
    }
    if (r.ro) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is "
                             "staged read-only", q->volume_id);
        goto out;
    }
    size_t idx;
    struct jr_info in;
    if ((code = csi__find_volume(s, ctx, q->volume_id, 0, &idx, &in)))
        goto out;
    uint64_t obj = in.object_size ? in.object_size : JR_DEFAULT_OBJECT_SIZE;
    uint64_t want = in.size, cur = 0;
    meta_or(s, idx, q->volume_id, "csi.requested_bytes", buf, sizeof(buf));
    uint64_t asked = strtoull(buf, NULL, 10);
    if (asked > want) want = asked;
    if (q->capacity_range && q->capacity_range->required_bytes > 0) {
        uint64_t rq = ((uint64_t)q->capacity_range->required_bytes + obj - 1) /
                      obj * obj;
        if (rq > want) want = rq;
    }
    if (q->capacity_range && q->capacity_range->limit_bytes > 0 &&
        want > (uint64_t)q->capacity_range->limit_bytes) {
        code = rpc_ctx_error(ctx, RPC_OUT_OF_RANGE, "%" PRIu64 " bytes exceed "
                             "limit_bytes %" PRId64, want,
                             q->capacity_range->limit_bytes);
        goto out;
    }
    if (want > CSI_MAX_SIZE) {
        code = rpc_ctx_error(ctx, RPC_OUT_OF_RANGE, "%" PRIu64 " bytes exceed "
                             "the maximum volume size", want);
        goto out;
    }
    if ((rc = bd_size(rd, &cur)) < 0) {
        code = rpc_ctx_error(ctx, RPC_INTERNAL, "size of volume %s: %s",
                             q->volume_id, strerror(-rc));
        goto out;
    }
    if (want > cur) {
        rc = bd_resize(rd, want, err, sizeof(err));
        if (rc < 0) {
            code = rpc_ctx_error(ctx, rc == -EROFS ? RPC_FAILED_PRECONDITION
                                                   : RPC_INTERNAL,
                                 "resizing volume %s: %s", q->volume_id, err);
            goto out;
        }
        cur = want;
    }
    if (!r.block) {
        rc = mnt_grow_fs(dev, r.staging, r.fs, err, sizeof(err));
        if (rc < 0) {
            code = rpc_ctx_error(ctx, RPC_INTERNAL, "growing the filesystem of"
                                 " volume %s: %s", q->volume_id, err);
            goto out;
        }
    }
    tlog_info("csi.node.expanded", "vol=%s size=%" PRIu64, q->volume_id, cur);
    Csi__V1__NodeExpandVolumeResponse *o = csi__xcalloc(1, sizeof(*o));
    csi__v1__node_expand_volume_response__init(o);
    o->capacity_bytes = (int64_t)cur;
    *resp = &o->base;
out:
    csi__unlock(s, q->volume_id);
    return code;
}

/* ------------------------------------------------- capabilities and info */

int csi__node_caps(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                   ProtobufCMessage **resp)
{
    static const int caps[] = {
        CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__STAGE_UNSTAGE_VOLUME,
        CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__GET_VOLUME_STATS,
        CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__EXPAND_VOLUME,
        CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__VOLUME_CONDITION,
        CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__SINGLE_NODE_MULTI_WRITER,
    };
    size_t n = sizeof(caps) / sizeof(caps[0]);
    Csi__V1__NodeGetCapabilitiesResponse *o = csi__xcalloc(1, sizeof(*o));
    csi__v1__node_get_capabilities_response__init(o);
    o->capabilities = csi__xcalloc(n, sizeof(*o->capabilities));
    for (size_t i = 0; i < n; i++) {
        Csi__V1__NodeServiceCapability *c = csi__xcalloc(1, sizeof(*c));
        csi__v1__node_service_capability__init(c);
        c->type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC;
        c->rpc = csi__xcalloc(1, sizeof(*c->rpc));
        csi__v1__node_service_capability__rpc__init(c->rpc);
        c->rpc->type = caps[i];
        o->capabilities[o->n_capabilities++] = c;
    }
    *resp = &o->base;
    return RPC_OK;
}

int csi__node_info(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                   ProtobufCMessage **resp)
{
    csi_service *s = svc;
    Csi__V1__NodeGetInfoResponse *o = csi__xcalloc(1, sizeof(*o));
    csi__v1__node_get_info_response__init(o);
    o->node_id = csi__xstrdup(s->node_id);
    o->max_volumes_per_node = s->max_volumes;
    o->accessible_topology = csi__topology_new(s, s->region, s->zone);
    *resp = &o->base;
    return RPC_OK;
}
