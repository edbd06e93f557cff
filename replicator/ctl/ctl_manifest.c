/*
 * ctl_manifest.c: the snapshot manifests of `tandemctl failover
 * --emit-manifests` (ctl_failover.c writes the PersistentVolume and PVC
 * of each promoted volume; this file its snapshots).
 *
 * Snapshots are journal entries and replicate with the volume (jr.h), so
 * after a failover the surviving region holds them; its cluster does not
 * know them.  For every snapshot of a promoted volume this writes the
 * pre-provisioned pair that binds it there (Kubernetes' static snapshot
 * provisioning): a VolumeSnapshotContent (driver, source.snapshotHandle =
 * the CSI snapshot id "<volume id>@<snap id>", deletionPolicy Retain, a
 * volumeSnapshotRef) and the VolumeSnapshot that names it
 * (source.volumeSnapshotContentName).  Namespace and names come from the
 * snapshot's label, which the CSI controller built from the
 * VolumeSnapshot (csi/csi.h, "Snapshot label"): the same names as in the
 * lost cluster, so backups and restores refer to them unchanged.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl_int.h"

/* Kubernetes object names are at most 253 bytes (DNS subdomain). */
#define K8S_NAME_MAX 253

struct snap_names {
    char ns[K8S_NAME_MAX + 1];
    char name[K8S_NAME_MAX + 1];
    char content[K8S_NAME_MAX + 1];
    int clone_source; /* a clone's temporary snapshot: no VolumeSnapshot */
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Percent-decode [s, s + n) into out (size bytes).  -EINVAL on a bad
 * escape, a NUL or control byte, or a value that does not fit. */
static int pct_decode(const char *s, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= n) return -EINVAL; /* "%" or "%X" at the end */
            if ((h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0)
                return -EINVAL;
            c = h * 16 + l;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) return -EINVAL;
        if (o + 1 >= size) return -EINVAL;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

/* Parse a snapshot label (csi/csi.h): space-separated key=value tokens
 * namespace=, name=, content=, values percent-encoded; unknown keys are
 * ignored, as the format asks.  A label starting with the token
 * "tandem-clone-source" marks a clone's temporary snapshot.  -EINVAL on a
 * value that does not decode. */
static int label_parse(const char *label, struct snap_names *n)
{
    memset(n, 0, sizeof(*n));
    const char *p = label;
    int first = 1;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (first && len == strlen("tandem-clone-source") &&
            !strncmp(p, "tandem-clone-source", len))
            n->clone_source = 1;
        first = 0;
        if (eq) {
            size_t kl = (size_t)(eq - p), vl = len - kl - 1;
            char *dst = NULL;
            if (kl == 9 && !strncmp(p, "namespace", 9)) dst = n->ns;
            else if (kl == 4 && !strncmp(p, "name", 4)) dst = n->name;
            else if (kl == 7 && !strncmp(p, "content", 7)) dst = n->content;
            if (dst && pct_decode(eq + 1, vl, dst, K8S_NAME_MAX + 1) < 0)
                return -EINVAL;
        }
        p += len;
    }
    return 0;
}

/* s as a Kubernetes name fragment: lower case, [a-z0-9-], appended to
 * out (size bytes) as far as it fits. */
static void k8s_frag(char *out, size_t size, const char *s)
{
    size_t o = strlen(out);
    for (; *s && o + 1 < size; s++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            c = '-';
        out[o++] = c;
    }
    out[o] = 0;
}

static const char *vol_meta(const Tandem__Admin__V1__VolumeStatus *v,
                            const char *key)
{
    for (size_t i = 0; v && i < v->n_metadata; i++)
        if (!strcmp(v->metadata[i]->key, key)) return v->metadata[i]->value;
    return NULL;
}

/* One snapshot's VolumeSnapshotContent and VolumeSnapshot. */
static void write_pair(FILE *f, const char *region, const char *vol,
                       const Tandem__Admin__V1__Snapshot *s,
                       const struct snap_names *n, int block)
{
    char handle[600];
    snprintf(handle, sizeof handle, "%s@%s", vol, s->snap_id);
    fprintf(f, "---\n# snapshot %s of %s at journal position %" PRIu64
               ", %" PRIu64 " bytes\n",
            s->snap_id, vol, s->seq, s->size_bytes);
    fprintf(f, "apiVersion: snapshot.storage.k8s.io/v1\n"
               "kind: VolumeSnapshotContent\nmetadata:\n  name: ");
    ctl_json_str(f, n->content);
    fprintf(f, "\n  labels:\n    tandem.csi.dev/region: ");
    ctl_json_str(f, region);
    fprintf(f, "\nspec:\n  driver: " DRIVER_NAME "\n"
               /* Retain: deleting the objects never deletes the data
                * (what survived a disaster is not given up by a
                * mistaken kubectl delete). */
               "  deletionPolicy: Retain\n  source:\n    snapshotHandle: ");
    ctl_json_str(f, handle);
    fprintf(f, "\n  sourceVolumeMode: %s\n", block ? "Block" : "Filesystem");
    fprintf(f, "  volumeSnapshotRef:\n    namespace: ");
    ctl_json_str(f, n->ns);
    fprintf(f, "\n    name: ");
    ctl_json_str(f, n->name);
    fprintf(f, "\n---\napiVersion: snapshot.storage.k8s.io/v1\n"
               "kind: VolumeSnapshot\nmetadata:\n  name: ");
    ctl_json_str(f, n->name);
    fprintf(f, "\n  namespace: ");
    ctl_json_str(f, n->ns);
    fprintf(f, "\nspec:\n  source:\n    volumeSnapshotContentName: ");
    ctl_json_str(f, n->content);
    fprintf(f, "\n");
}

int ctl_snap_manifests(const char *dir, const char *region,
                       const Tandem__Admin__V1__FailoverResult *x)
{
    char path[4096], tmp[4200];
    int rc = 0, written = 0;
    snprintf(path, sizeof path, "%s/%s.snapshots.yaml", dir, x->volume_id);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = NULL;
    const char *vm = vol_meta(x->volume, "csi.access_type");
    int block = vm && !strcasecmp(vm, "block");
    for (size_t i = 0; i < x->n_snapshots; i++) {
        const Tandem__Admin__V1__Snapshot *s = x->snapshots[i];
        struct snap_names n;
        if (label_parse(s->label, &n) < 0) {
            ctl_errf("failover %s: snapshot %s: its label does not parse "
                     "(%s): no manifest for it", x->volume_id, s->snap_id,
                     s->label);
            rc = -EINVAL;
            continue;
        }
        if (n.clone_source) continue; /* not a VolumeSnapshot */
        /* A snapshot taken without csi-snapshotter's metadata (or by
         * other tools): names made from its ids, in "default". */
        if (!n.ns[0]) snprintf(n.ns, sizeof n.ns, "default");
        if (!n.name[0]) {
            snprintf(n.name, sizeof n.name, "tandem-");
            k8s_frag(n.name, sizeof n.name, s->snap_id);
        }
        if (!n.content[0]) {
            snprintf(n.content, sizeof n.content, "snapcontent-tandem-");
            k8s_frag(n.content, sizeof n.content, x->volume_id);
            k8s_frag(n.content, sizeof n.content, "-");
            k8s_frag(n.content, sizeof n.content, s->snap_id);
        }
        if (!f) {
            if (!(f = fopen(tmp, "w"))) {
                rc = -errno;
                goto out;
            }
            fprintf(f, "# tandem failover: the snapshots of %s, promoted in "
                       "region %s (epoch %" PRIu64 ").\n# Apply in the "
                       "surviving cluster: kubectl apply -f %s\n",
                    x->volume_id, region, x->epoch, path);
        }
        write_pair(f, region, x->volume_id, s, &n, block);
        written++;
    }
    if (f) {
        int wrc = 0;
        if (fflush(f) != 0 || fsync(fileno(f)) != 0) wrc = -errno;
        if (fclose(f) != 0 && !wrc) wrc = -errno;
        f = NULL;
        if (!wrc && rename(tmp, path) != 0) wrc = -errno;
        if (wrc) {
            unlink(tmp);
            rc = wrc;
            goto out;
        }
    } else if (unlink(path) != 0 && errno != ENOENT) {
        /* A file from an earlier failover would bind snapshots that are
         * gone. */
        rc = -errno;
        goto out;
    }
    if (written)
        printf("  %s: %d snapshot%s: %s\n", x->volume_id, written,
               written == 1 ? "" : "s", path);
out:
    if (rc < 0 && rc != -EINVAL)
        ctl_errf("failover %s: cannot write snapshot manifests in %s: %s",
                 x->volume_id, dir, strerror(-rc));
    return rc < 0 ? rc : written;
}
