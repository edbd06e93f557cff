/*
 * blockdev.h: a journaled volume exposed as a local block device.
 *
 * bd_attach starts one exporter process per volume (tandem-volfuse, see
 * csi/datapath/volfuse.c).  The exporter opens the volume through the journal
 * engine (jr_open) and serves a FUSE filesystem holding one file, `image`,
 * whose bytes are the volume's bytes; a loop device is then attached to
 * that file.  Every write that reaches the loop device is therefore a
 * jr_write, acknowledged only once journaled durably.
 *
 * The exporter runs in its own session (setsid) and is not our child
 * (it daemonises), so it outlives the node plugin process: a plugin
 * restart keeps staged volumes working.  (It is reparented to PID 1 of
 * the PID namespace, which must reap it when it exits; and a container
 * restart kills everything in the container, exporters included: the
 * acknowledged writes are in the journal, the staged mounts then need a
 * new stage; bd_reattach_all repairs the unmounted ones.)  All the
 * state needed to find, resize or detach a volume later is kept in the
 * volume's run directory (run_dir, e.g. /run/tandem/vols/<vol_id>):
 *
 *   run_dir/mnt/        FUSE mount point of the exporter (mnt/image)
 *   run_dir/pid         exporter pid (written by the exporter)
 *   run_dir/dev         loop device path, e.g. /dev/loop3 (written last
 *                       by bd_attach: its presence means "attached")
 *   run_dir/attach      volume id, region and mode (for bd_reattach_all)
 *   run_dir/log         the exporter's structured log (tlog)
 *   (overlay attachments also keep an unlinked scratch file in run_dir)
 *
 * Errors: 0 or a negative errno.  Notable codes:
 *   -ENOENT   bd_find/bd_resize: nothing attached at run_dir
 *   -ESTALE   bd_find: state exists but the exporter died or the loop
 *             device no longer points at its image (detach, then attach)
 *   -EBUSY    bd_detach: the loop device is still mounted or held open
 *   -ETIMEDOUT the exporter did not become ready within the deadline
 *   -EEXIST   bd_attach: run_dir holds a different volume
 *   -EINVAL   bad options (e.g. bd_resize to a smaller size)
 *   other negative errnos from the exporter's jr_open (its log in
 *   run_dir/log says why; -EROFS: a secondary asked for read-write).
 * An optional err buffer (may be NULL) receives a one-line reason.
 *
 * Threads: the functions are reentrant, but callers must serialise calls
 * for the same run_dir (the CSI node service serialises per volume).
 * Requirements: root, /dev/fuse, /dev/loop-control.
 */
#ifndef TANDEM_CSI_BLOCKDEV_H
#define TANDEM_CSI_BLOCKDEV_H

#include <stddef.h>
#include <stdint.h>

struct bd_attach_opts {
    const char *config_path;   /* region map (journal/regions.h) */
    const char *region;        /* region whose store holds the volume */
    const char *vol_id;        /* journal volume id */
    const char *run_dir;       /* per-volume state dir; created (mode 0700,
                                  parents too) if missing */
    int read_only;             /* 1: read-only open and read-only loop */
    const char *exporter_path; /* tandem-volfuse; NULL: next to
                                  /proc/self/exe, then $PATH */
    const char *owner;         /* lease owner name for jr_open (NULL:
                                  "<hostname>/volfuse/<pid>") */
    int force;                 /* 1: take the writer lease even if another
                                  holder's lease has not expired (use after
                                  that holder crashed).  bd_attach sets it
                                  by itself when run_dir records an
                                  exporter of this volume that is dead. */
    int timeout_ms;            /* readiness deadline (0: 30000) */
    int overlay;               /* 1: read-only on the store (no lease; a
                                  secondary is fine), but the device
                                  accepts writes, kept in a private scratch
                                  overlay and dropped at detach.  Use it to
                                  mount a replica's filesystem read-only:
                                  ext4/xfs must replay their journal first,
                                  which a read-only device refuses (ext4:
                                  EROFS "write access unavailable").
                                  Overrides read_only; for raw block
                                  volumes use read_only instead. */
};

/* Attach: start the exporter, wait until its mount works, attach a loop
 * device (direct I/O when the kernel accepts it; read-only if asked) and
 * record it in run_dir.  On success dev holds the device path
 * ("/dev/loopN").  Idempotent: if run_dir already holds a healthy
 * attachment of the same volume, dev is that device and 0 is returned
 * (even if read_only/overlay differ: the first attach decides; -EROFS if
 * it is read-only or overlay and read-write was asked).  If run_dir holds a dead
 * attachment (exporter crashed), it is cleaned up first (like bd_detach)
 * and a fresh one made, which may be a different loop device.  On failure
 * nothing is left behind. */
int bd_attach(const struct bd_attach_opts *o, char *dev, size_t devlen,
              char *err, size_t errlen);

/* Detach: clear the loop device (waiting until the kernel really freed
 * it), unmount the FUSE mount, wait for the exporter to exit (it flushes
 * and closes the volume; SIGKILL after a deadline), remove the state
 * files and run_dir itself.  Idempotent: nothing attached gives 0.
 * -EBUSY (and nothing changed) if the loop device is still mounted
 * somewhere: unmount the staging path first. */
int bd_detach(const char *run_dir, char *err, size_t errlen);

/* Find the device attached at run_dir (e.g. after a node plugin restart).
 * 0: dev set and healthy; -ENOENT: not attached; -ESTALE: dev set (if
 * recorded) but the exporter is dead or the loop device is not on the
 * image any more. */
int bd_find(const char *run_dir, char *dev, size_t devlen);

/* Grow the volume to new_size bytes (online): the exporter resizes it
 * through the journal (jr_resize), then the loop device's capacity is
 * refreshed (LOOP_SET_CAPACITY).  The filesystem on it is grown
 * separately (mnt_grow_fs).  new_size equal to the current size: 0;
 * smaller: -EINVAL; read-only attachment: -EROFS. */
int bd_resize(const char *run_dir, uint64_t new_size, char *err,
              size_t errlen);

/* Current size of the attached volume in bytes (the image file's size). */
int bd_size(const char *run_dir, uint64_t *size);

/* Node plugin start-up: visit every run dir directly under runs_root
 * (e.g. /run/tandem/vols).  Healthy attachments are left alone; dead
 * ones (exporter gone, e.g. node reboot or crash) are detached and
 * attached again with the options recorded in run_dir/attach and the
 * given config_path/exporter_path.  cb (may be NULL) is told each
 * volume's outcome: rc 0 healthy or re-attached (dev set), else the error.
 * A dead attachment whose loop device is still mounted cannot be repaired
 * in place (the filesystem on it lost its device): rc -EBUSY, and the
 * caller must unmount and stage again.  Returns 0, or the first error
 * when some volume failed. */
typedef void (*bd_reattach_cb)(const char *run_dir, const char *vol_id,
                               const char *dev, int rc, void *arg);
int bd_reattach_all(const char *runs_root, const char *config_path,
                    const char *exporter_path, bd_reattach_cb cb, void *arg);

#endif /* TANDEM_CSI_BLOCKDEV_H */
