/*
 * ctl_int.h: what tandemctl's files share, and nothing outside tandemctl
 * uses: the command line's state (struct ctl), the admin client
 * (ctl_rpc.c), the output helpers (ctl_print.c) and one entry point per
 * command.  Not a contract: tandemctl's contract is its --help text and
 * deploy/RUNBOOK.md.
 *
 * The files:
 *
 *   tandemctl.c     main: options, help texts, checks, which command runs
 *   ctl_rpc.c       admin endpoints (unix socket or mutual-TLS TCP), one
 *                   admin call, the one-line report of a failed call
 *   ctl_print.c     the one-line stderr message, human units, and the
 *                   generic protobuf -> JSON printer of --json
 *   ctl_status.c    status: the table of both regions, or --json
 *   ctl_role.c      promote, demote, resync: one volume's role
 *   ctl_journal.c   journal check / journal discard (a damaged tail)
 *   ctl_failover.c  failover (chunked, parallel calls) and the
 *                   PersistentVolume/PVC manifests of --emit-manifests
 *   ctl_manifest.c  the VolumeSnapshotContent/VolumeSnapshot manifests
 *                   of --emit-manifests (a promoted volume's snapshots)
 *
 * Every command function returns an exit code (EX_*) and keeps the CLI
 * contract stated at the top of tandemctl.c.
 */
#ifndef TANDEM_CTL_INT_H
#define TANDEM_CTL_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rpc.h"
#include "tandem_admin.pb-c.h"

#define PROG "tandemctl"
#define ADMIN_SVC "/tandem.admin.v1.Admin/"
#define DRIVER_NAME "tandem.csi.dev"
#define TOPO_REGION_KEY "topology.tandem.csi.dev/region"

/* Exit codes. */
enum { EX_OK = 0, EX_FAIL = 1, EX_USAGE = 2, EX_PARTIAL = 3 };

struct endpoint {
    const char *addr; /* "unix:///path" or "host:port" */
    rpc_client *cli;  /* NULL until first use */
};

struct ctl {
    struct endpoint admin; /* --admin (TANDEM_ADMIN) */
    struct endpoint peer;  /* --peer-admin (TANDEM_PEER_ADMIN) */
    struct rpc_tls tls;
    int insecure;  /* plaintext TCP (tests only) */
    int timeout_s; /* per call; 0: command default */
    int json;
    int force, all, full, graceful;
    const char *to_region;
    const char *manifests_dir;
    const char *storage_class; /* --storage-class override for PVs */
    const char *config;        /* --config: accepted, unused (older
                                  scripts passed the region map) */
    int verbose;               /* print the server's messages too */
    uint64_t bad_seq;          /* journal discard --bad-seq */
    int bad_seq_set;
    int yes;                   /* journal discard --yes: no question */
    const char *group;         /* --group: the members of a consistency
                                  group, wherever a VOLUME is taken */
};

/* ------------------------------------------------------- ctl_print.c -- */

/* "tandemctl: ..." as ONE line on stderr, in one write(2): newlines in
 * the text (a server's message) become spaces. */
void ctl_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* v bytes as "512B", "1.5MiB", ...; written to buf, which is returned. */
const char *ctl_human_bytes(char *buf, size_t sz, double v);
/* s seconds as "0.25s", "42s", "7m", "2.5h" ("unknown" when negative or
 * NaN); written to buf, which is returned. */
const char *ctl_human_age(char *buf, size_t sz, double s);
/* An RPO in seconds: milliseconds under a minute ("0.042s", "3.750s"),
 * never rounded to 0; "unknown" below 0; as ctl_human_age above. */
const char *ctl_human_rpo(char *buf, size_t sz, double s);
/* s as a JSON string (NULL as ""). */
void ctl_json_str(FILE *f, const char *s);
/* Message m as JSON, every field by its proto name (maps as objects,
 * bytes as null), nested lines indented by ind + 2. */
void ctl_json_msg(FILE *f, const ProtobufCMessage *m, int ind);

/* --------------------------------------------------------- ctl_rpc.c -- */

/* Not a gRPC code: the client could not even be made (msg says why). */
#define CALL_NO_CLIENT (-1)

/* Make ep's client if it has none (before threads share it).  Returns 0,
 * or a negative errno with the reason, one line, in msg. */
int ctl_ep_connect(struct ctl *c, struct endpoint *ep, char *msg,
                   size_t msgsz);
/* One admin call of method (e.g. "Status") with the --timeout, or
 * default_timeout_s.  Returns an RPC_* code, or CALL_NO_CLIENT; the
 * server's one-line message lands in msg.  *respp (an unpacked rd) is the
 * caller's to free with protobuf_c_message_free_unpacked. */
int ctl_admin_call(struct ctl *c, struct endpoint *ep, const char *method,
                   const void *req, const ProtobufCMessageDescriptor *rd,
                   void *respp, int default_timeout_s, char *msg,
                   size_t msgsz);
/* The one stderr line for a failed call: "WHAT: cannot reach ..." for
 * transport failures, the server's reason else. */
void ctl_report_rpc_error(const char *what, const struct endpoint *ep,
                          int code, const char *msg);

/* ---------------------------------------------------------- commands -- */

int ctl_cmd_status(struct ctl *c, char **vols, int n);     /* ctl_status.c */
/* The volumes of consistency group `group` in the --admin region (their
 * metadata "group" = "<group> <index>", from Status): *ids malloc'd (free
 * each and the array).  EX_OK, or EX_FAIL with the one line printed (an
 * unknown group is a failure: nothing to act on). */
int ctl_group_members(struct ctl *c, const char *group, char ***ids, int *n);
int ctl_cmd_promote(struct ctl *c, const char *vol);       /* ctl_role.c */
int ctl_cmd_demote(struct ctl *c, const char *vol);        /* ctl_role.c */
int ctl_cmd_resync(struct ctl *c, const char *vol);        /* ctl_role.c */
int ctl_cmd_journal_check(struct ctl *c, const char *vol); /* ctl_journal.c */
int ctl_cmd_journal_discard(struct ctl *c, const char *vol);
int ctl_cmd_failover(struct ctl *c, char **vols, int n);   /* ctl_failover.c */

/* ----------------------------------------------------- ctl_manifest.c -- */

/* For failover result x (promoted in region): write DIR/<volume>.
 * snapshots.yaml with a VolumeSnapshotContent + VolumeSnapshot per
 * snapshot (a clone's temporary snapshot excepted), or remove an older
 * such file when there is none; print one line naming the file.  Returns
 * the number of snapshots written, or a negative errno after a stderr
 * line (-EINVAL: a label that does not parse; the others were written). */
int ctl_snap_manifests(const char *dir, const char *region,
                       const Tandem__Admin__V1__FailoverResult *x);

#endif
