/*
 * tandemctl.c: the operator's failover CLI.  It talks to nothing but the
 * admin API of a tandem-replicator (proto/tandem_admin.proto), over a
 * unix socket or mutual-TLS TCP through the rpc layer (librpc): it opens
 * no store and reads no region map (it links neither), since the
 * replicator is the one process per region that decides roles, and its
 * answers carry everything the commands print, the volume metadata of
 * failover manifests included.
 *
 * Layout: option parsing and endpoints; a generic protobuf -> JSON printer
 * (status --json follows additive changes of the proto for free); one
 * function per command; PersistentVolume/PVC manifest writing for
 * `failover --emit-manifests`.
 *
 * `journal discard` is the one command that gives up data (acknowledged
 * writes in a damaged journal tail): it shows what goes first and needs
 * the volume id typed on a terminal, or --yes; never a silent
 * truncation.
 *
 * Conventions every command keeps (the team's CLI contract):
 *  - idempotent: asking for the state that already holds exits 0 and says
 *    "nothing to do";
 *  - a refusal or failure is ONE line on stderr ("tandemctl: CMD VOL: why
 *    (CODE)") and a non-zero exit: 1 failure, 2 usage error, 3 (failover)
 *    some volumes failed and others were promoted.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rpc.h"
#include "tandem_admin.pb-c.h"
#include "tbase.h"
#include "tsig.h"

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
};

/* ------------------------------------------------------------ messages -- */

static void errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errf(const char *fmt, ...)
{
    /* One line, one write(2): refusals stay readable when interleaved. */
    char buf[1536];
    va_list ap;
    int n = snprintf(buf, sizeof buf, PROG ": ");
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    va_end(ap);
    /* Never let a server message break the one-line rule. */
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    size_t len = strlen(buf);
    buf[len++] = '\n';
    ssize_t w = write(2, buf, len);
    (void)w;
}

static const char *human_bytes(char *buf, size_t sz, double v)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, sz, "%.0f%s", v, u[i]);
    else
        snprintf(buf, sz, "%.1f%s", v, u[i]);
    return buf;
}

static const char *human_age(char *buf, size_t sz, double s)
{
    if (s < 0 || isnan(s))
        snprintf(buf, sz, "unknown");
    else if (s < 10)
        snprintf(buf, sz, "%.2fs", s);
    else if (s < 120)
        snprintf(buf, sz, "%.0fs", s);
    else if (s < 7200)
        snprintf(buf, sz, "%.0fm", s / 60);
    else
        snprintf(buf, sz, "%.1fh", s / 3600);
    return buf;
}

/* ---------------------------------------------------------------- rpc -- */

/* Not a gRPC code: the client could not even be made (msg says why). */
#define CALL_NO_CLIENT (-1)

static int ep_connect(struct ctl *c, struct endpoint *ep, char *msg,
                      size_t msgsz)
{
    if (ep->cli) return 0;
    const struct rpc_tls *tls = NULL;
    /* The admin socket's file mode is its access control (the replicator
     * makes it 0600).  gRPC would report a refused connect() as a vague
     * UNAVAILABLE (or, waiting for the channel, a DEADLINE_EXCEEDED): say
     * what it is at once. */
    if (!strncmp(ep->addr, "unix://", 7)) {
        const char *path = ep->addr + 7;
        struct stat st;
        if (access(path, W_OK) < 0 && errno == EACCES) {
            char how[64] = "";
            if (stat(path, &st) == 0)
                snprintf(how, sizeof how, " (mode %04o, owner uid %u, "
                         "group %u)", (unsigned)(st.st_mode & 0777),
                         (unsigned)st.st_uid, (unsigned)st.st_gid);
            snprintf(msg, msgsz,
                     "permission denied on %s%s: run as root or as the "
                     "replicator's user (or have the replicator started "
                     "with --admin-socket-mode 0660 and join the socket's "
                     "group)", ep->addr, how);
            return -EACCES;
        }
    }
    if (strncmp(ep->addr, "unix:", 5) != 0 && !c->insecure) {
        if (!c->tls.ca_file || !c->tls.cert_file || !c->tls.key_file) {
            snprintf(msg, msgsz,
                     "%s is a TCP address: give --tls-ca, --tls-cert and "
                     "--tls-key (mutual TLS), or --insecure",
                     ep->addr);
            return -EINVAL;
        }
        tls = &c->tls;
    }
    int rc = rpc_client_create(ep->addr, tls, &ep->cli);
    if (rc < 0) {
        snprintf(msg, msgsz, "cannot use admin endpoint %s: %s", ep->addr,
                 strerror(-rc));
        return rc;
    }
    return 0;
}

/* One admin call.  Returns an RPC_* code (or RPC_UNAVAILABLE when no
 * client could be made); the server's one-line message lands in msg. */
static int admin_call(struct ctl *c, struct endpoint *ep, const char *method,
                      const void *req, const ProtobufCMessageDescriptor *rd,
                      void *respp, int default_timeout_s, char *msg,
                      size_t msgsz)
{
    char path[128];
    int tmo = (c->timeout_s > 0 ? c->timeout_s : default_timeout_s) * 1000;
    msg[0] = 0;
    if (ep_connect(c, ep, msg, msgsz) < 0) return CALL_NO_CLIENT;
    snprintf(path, sizeof path, ADMIN_SVC "%s", method);
    /* No wait_for_ready: a lost region must fail fast, not hang. */
    return rpc_client_call(ep->cli, path, (const ProtobufCMessage *)req, rd,
                           (ProtobufCMessage **)respp, tmo, 0, msg, msgsz);
}

/* "cannot reach ..." for transport failures, the server's reason else. */
static void report_rpc_error(const char *what, const struct endpoint *ep,
                             int code, const char *msg)
{
    if (code == CALL_NO_CLIENT)
        errf("%s: %s", what, msg);
    else if (code == RPC_UNAVAILABLE || code == RPC_DEADLINE_EXCEEDED ||
             code == RPC_UNAUTHENTICATED)
        errf("%s: cannot reach the replicator at %s: %s (%s)", what, ep->addr,
             *msg ? msg : "no answer", rpc_code_name(code));
    else
        errf("%s: %s (%s)", what, *msg ? msg : "refused", rpc_code_name(code));
}

/* ------------------------------------------------------- JSON printer -- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void json_msg(FILE *f, const ProtobufCMessage *m, int ind);

static void json_scalar(FILE *f, const ProtobufCFieldDescriptor *fd,
                        const void *p, int ind)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        fprintf(f, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        fprintf(f, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        fprintf(f, "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fprintf(f, "%" PRIu64, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d = fd->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)p
                                                     : *(const double *)p;
        if (isfinite(d))
            fprintf(f, "%.10g", d);
        else
            fprintf(f, "null");
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        fprintf(f, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
            fd->descriptor, *(const int *)p);
        if (ev)
            json_str(f, ev->name);
        else
            fprintf(f, "%d", *(const int *)p);
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        json_str(f, *(char *const *)p ? *(char *const *)p : "");
        break;
    case PROTOBUF_C_TYPE_BYTES:
        fprintf(f, "null");
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        if (*(ProtobufCMessage *const *)p)
            json_msg(f, *(ProtobufCMessage *const *)p, ind);
        else
            fprintf(f, "null");
        break;
    }
}

static size_t type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    default:
        return 4;
    }
}

/* A message entry type of a proto3 map: exactly fields key (1), value (2). */
static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    return d->n_fields == 2 && !strcmp(d->fields[0].name, "key") &&
           !strcmp(d->fields[1].name, "value") &&
           d->fields[0].type == PROTOBUF_C_TYPE_STRING &&
           d->fields[1].type == PROTOBUF_C_TYPE_STRING;
}

static void json_msg(FILE *f, const ProtobufCMessage *m, int ind)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    fprintf(f, "{");
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        const char *base = (const char *)m;
        fprintf(f, "%s\n%*s", i ? "," : "", ind + 2, "");
        json_str(f, fd->name);
        fprintf(f, ": ");
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + fd->quantifier_offset);
            const char *arr = *(char *const *)(base + fd->offset);
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE &&
                is_map_entry(fd->descriptor)) {
                const ProtobufCMessageDescriptor *ed = fd->descriptor;
                fprintf(f, "{");
                for (size_t j = 0; j < n; j++) {
                    const char *e = ((char *const *)arr)[j];
                    fprintf(f, "%s", j ? ", " : "");
                    json_str(f, *(char *const *)(e + ed->fields[0].offset));
                    fprintf(f, ": ");
                    json_str(f, *(char *const *)(e + ed->fields[1].offset));
                }
                fprintf(f, "}");
                continue;
            }
            size_t es = type_size(fd->type);
            fprintf(f, "[");
            for (size_t j = 0; j < n; j++) {
                if (j) fprintf(f, ",");
                fprintf(f, "\n%*s", ind + 4, "");
                json_scalar(f, fd, arr + j * es, ind + 4);
            }
            if (n) fprintf(f, "\n%*s", ind + 2, "");
            fprintf(f, "]");
        } else {
            json_scalar(f, fd, base + fd->offset, ind + 2);
        }
    }
    fprintf(f, "\n%*s}", ind, "");
}

/* ------------------------------------------------------------- status -- */

static void print_table(const Tandem__Admin__V1__StatusResponse *r)
{
    char b1[32], b2[32], b3[32], b4[32];
    printf("region %s (peer %s, peer link %s): %zu volume%s\n", r->region,
           *r->peer_region ? r->peer_region : "-",
           *r->peer_link_state ? r->peer_link_state : "-", r->n_volumes,
           r->n_volumes == 1 ? "" : "s");
    if (!r->n_volumes) return;
    int w = 12;
    for (size_t i = 0; i < r->n_volumes; i++)
        if ((int)strlen(r->volumes[i]->volume_id) > w)
            w = (int)strlen(r->volumes[i]->volume_id);
    printf("%-*s %-9s %5s %9s %9s %9s %8s %9s %8s %9s %11s %6s %-12s %s\n", w,
           "VOLUME", "ROLE", "EPOCH", "HEAD", "APPLIED", "ACKED", "LAG",
           "LAG-BYTES", "RPO", "LAST-SYNC", "THROUGHPUT", "COMPR", "LINK",
           "STATE");
    int64_t now = r->now_unix_ms ? r->now_unix_ms : tb_wall_ms();
    for (size_t i = 0; i < r->n_volumes; i++) {
        const Tandem__Admin__V1__VolumeStatus *v = r->volumes[i];
        int primary = !strcmp(v->role, "primary");
        char lag[24], lagb[32], rpo[32], acked[24], tput[40], compr[16];
        if (primary) {
            snprintf(lag, sizeof lag, "%" PRIu64, v->lag_entries);
            human_bytes(lagb, sizeof lagb, (double)v->lag_bytes);
            human_age(rpo, sizeof rpo, v->lag_seconds);
            snprintf(acked, sizeof acked, "%" PRIu64, v->acked);
        } else {
            /* A secondary's RPO is the age of what it last applied. */
            snprintf(lag, sizeof lag, "-");
            snprintf(lagb, sizeof lagb, "-");
            snprintf(acked, sizeof acked, "-");
            if (v->applied_age_seconds >= 0)
                human_age(rpo, sizeof rpo, v->applied_age_seconds);
            else
                snprintf(rpo, sizeof rpo, "-");
        }
        if (v->last_sync_unix_ms > 0)
            snprintf(b1, sizeof b1, "%s ago",
                     human_age(b2, sizeof b2,
                               (now - v->last_sync_unix_ms) / 1000.0));
        else
            snprintf(b1, sizeof b1, "never");
        snprintf(tput, sizeof tput, "%s/s",
                 human_bytes(b3, sizeof b3, v->throughput_bytes_per_s));
        if (v->compression_ratio > 0)
            snprintf(compr, sizeof compr, "%.2f", v->compression_ratio);
        else
            snprintf(compr, sizeof compr, "-");
        snprintf(b4, sizeof b4, "%s%s%s", v->state,
                 v->split_brain && !strstr(v->state, "split") ? ",split-brain"
                                                              : "",
                 v->dirty_tracking ? ",dirty" : "");
        printf("%-*s %-9s %5" PRIu64 " %9" PRIu64 " %9" PRIu64
               " %9s %8s %9s %8s %9s %11s %6s %-12s %s\n",
               w, v->volume_id, v->role, v->epoch, v->head, v->applied, acked,
               lag, lagb, rpo, b1, tput, compr, v->link_state, b4);
        if (*v->last_error)
            printf("  %s: last error: %s\n", v->volume_id, v->last_error);
    }
}

static int cmd_status(struct ctl *c, char **vols, int n)
{
    struct endpoint *eps[2] = {&c->admin, c->peer.addr ? &c->peer : NULL};
    Tandem__Admin__V1__StatusResponse *resp[2] = {NULL, NULL};
    int ret = EX_OK;
    Tandem__Admin__V1__StatusRequest req =
        TANDEM__ADMIN__V1__STATUS_REQUEST__INIT;
    req.volume_ids = vols;
    req.n_volume_ids = n;
    char errs[2][1200];
    errs[0][0] = errs[1][0] = 0;
    for (int i = 0; i < 2; i++) {
        if (!eps[i]) continue;
        char msg[1024];
        int rc = admin_call(c, eps[i], "Status", &req,
                            &tandem__admin__v1__status_response__descriptor,
                            &resp[i], 10, msg, sizeof msg);
        if (rc != RPC_OK) {
            char what[256];
            snprintf(what, sizeof what, "status (%s)", eps[i]->addr);
            report_rpc_error(what, eps[i], rc, msg);
            snprintf(errs[i], sizeof errs[i], "%s: %s",
                     rc == CALL_NO_CLIENT ? "ERROR" : rpc_code_name(rc), msg);
            ret = EX_FAIL;
        }
    }
    if (c->json) {
        printf("{\n  \"regions\": [");
        int first = 1;
        for (int i = 0; i < 2; i++) {
            if (!resp[i]) continue;
            printf("%s\n    ", first ? "" : ",");
            json_msg(stdout, &resp[i]->base, 4);
            first = 0;
        }
        printf("\n  ],\n  \"errors\": [");
        first = 1;
        for (int i = 0; i < 2; i++) {
            if (!errs[i][0]) continue;
            printf("%s\n    {\"admin\": ", first ? "" : ",");
            json_str(stdout, eps[i]->addr);
            printf(", \"error\": ");
            json_str(stdout, errs[i]);
            printf("}");
            first = 0;
        }
        printf("\n  ]\n}\n");
    } else {
        for (int i = 0; i < 2; i++) {
            if (!resp[i]) continue;
            if (i && resp[0]) printf("\n");
            print_table(resp[i]);
        }
    }
    for (int i = 0; i < 2; i++)
        if (resp[i]) protobuf_c_message_free_unpacked(&resp[i]->base, NULL);
    return ret;
}

/* ---------------------------------------------------- promote / demote -- */

static int cmd_promote(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__PromoteRequest req =
        TANDEM__ADMIN__V1__PROMOTE_REQUEST__INIT;
    Tandem__Admin__V1__PromoteResponse *r = NULL;
    char msg[1024], what[256];
    req.volume_id = (char *)vol;
    req.force = c->force;
    int rc = admin_call(c, &c->admin, "Promote", &req,
                        &tandem__admin__v1__promote_response__descriptor, &r,
                        30, msg, sizeof msg);
    snprintf(what, sizeof what, "promote %s", vol);
    if (rc != RPC_OK) {
        report_rpc_error(what, &c->admin, rc, msg);
        return EX_FAIL;
    }
    const Tandem__Admin__V1__VolumeStatus *v = r->volume;
    const char *region = v ? v->region : "?";
    uint64_t epoch = v ? v->epoch : 0;
    if (!r->changed)
        printf("%s is already primary in region %s (epoch %" PRIu64
               "): nothing to do\n",
               vol, region, epoch);
    else
        printf("%s promoted to primary in region %s%s: epoch %" PRIu64
               ", applied %" PRIu64 "\n",
               vol, region, c->force ? " (forced)" : "", epoch,
               v ? v->applied : 0);
    if (c->verbose && *r->message) printf("  %s\n", r->message);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EX_OK;
}

static int cmd_demote(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__DemoteRequest req =
        TANDEM__ADMIN__V1__DEMOTE_REQUEST__INIT;
    Tandem__Admin__V1__DemoteResponse *r = NULL;
    char msg[1024], what[256];
    int wait_s = c->timeout_s > 0 ? c->timeout_s : 30;
    req.volume_id = (char *)vol;
    req.timeout_ms = (uint32_t)wait_s * 1000;
    /* The call itself gets a little longer than the drain it waits for. */
    int saved = c->timeout_s;
    c->timeout_s = wait_s + 10;
    int rc = admin_call(c, &c->admin, "Demote", &req,
                        &tandem__admin__v1__demote_response__descriptor, &r, 40,
                        msg, sizeof msg);
    c->timeout_s = saved;
    snprintf(what, sizeof what, "demote %s", vol);
    if (rc != RPC_OK) {
        report_rpc_error(what, &c->admin, rc, msg);
        return EX_FAIL;
    }
    const Tandem__Admin__V1__VolumeStatus *v = r->volume;
    if (!r->changed)
        printf("%s is already secondary in region %s (epoch %" PRIu64
               "): nothing to do\n",
               vol, v ? v->region : "?", v ? v->epoch : 0);
    else
        printf("%s demoted to secondary in region %s: epoch %" PRIu64
               ", head %" PRIu64 ", acknowledged by the peer %" PRIu64 "\n",
               vol, v ? v->region : "?", v ? v->epoch : 0, v ? v->head : 0,
               v ? v->acked : 0);
    if (c->verbose && *r->message) printf("  %s\n", r->message);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EX_OK;
}

/* -------------------------------------------------------------- resync -- */

static int cmd_resync(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__ResyncRequest req =
        TANDEM__ADMIN__V1__RESYNC_REQUEST__INIT;
    Tandem__Admin__V1__ResyncResponse *r = NULL;
    char msg[1024], what[256], b[32];
    req.volume_id = (char *)vol;
    req.full = c->full;
    int rc = admin_call(c, &c->admin, "Resync", &req,
                        &tandem__admin__v1__resync_response__descriptor, &r,
                        600, msg, sizeof msg);
    snprintf(what, sizeof what, "resync %s", vol);
    if (rc != RPC_OK) {
        report_rpc_error(what, &c->admin, rc, msg);
        return EX_FAIL;
    }
    const Tandem__Admin__V1__VolumeStatus *v = r->volume;
    if (!r->changed) {
        printf("%s is already a secondary in sync in region %s: nothing to "
               "do\n",
               vol, v ? v->region : "?");
    } else {
        printf("%s resynced in region %s: %s copy, %" PRIu64
               " region%s, %s since common position %" PRIu64
               "; now secondary of region %s (epoch %" PRIu64 ")\n",
               vol, v ? v->region : "?",
               r->full_copy ? (c->full ? "full (requested)"
                                       : "full (fallback: no common journal "
                                         "position)")
                            : "delta",
               r->regions, r->regions == 1 ? "" : "s",
               human_bytes(b, sizeof b, (double)r->bytes_copied), r->common_seq,
               v && *v->peer_region ? v->peer_region : "?", v ? v->epoch : 0);
    }
    if (c->verbose && *r->message) printf("  %s\n", r->message);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EX_OK;
}

/* ------------------------------------------------------------- journal -- */

static int journal_check_call(struct ctl *c, const char *what, const char *vol,
                              Tandem__Admin__V1__CheckJournalResponse **r)
{
    Tandem__Admin__V1__CheckJournalRequest req =
        TANDEM__ADMIN__V1__CHECK_JOURNAL_REQUEST__INIT;
    char msg[1024];
    req.volume_id = (char *)vol;
    /* One read of each journal object after applied: allow for many. */
    int rc = admin_call(c, &c->admin, "CheckJournal", &req,
                        &tandem__admin__v1__check_journal_response__descriptor,
                        r, 120, msg, sizeof msg);
    if (rc != RPC_OK) {
        report_rpc_error(what, &c->admin, rc, msg);
        return EX_FAIL;
    }
    return EX_OK;
}

/* What a discard at the damage gives up, and who may still have it. */
static void print_damage(const char *vol,
                         const Tandem__Admin__V1__CheckJournalResponse *r)
{
    const Tandem__Admin__V1__VolumeStatus *v = r->volume;
    const Tandem__Admin__V1__JournalDamage *d = r->damage;
    char b[32];
    int primary = v && !strcmp(v->role, "primary");
    printf("%s in region %s (%s, epoch %" PRIu64 "): journal DAMAGED at seq "
           "%" PRIu64 "\n",
           vol, v ? v->region : "?", v && *v->role ? v->role : "?",
           v ? v->epoch : 0, d->seq);
    printf("  first damaged entry:  seq %" PRIu64 ", journal object %" PRIu64
           " offset %" PRIu64 ": %s\n",
           d->seq, d->object, d->offset, *d->why ? d->why : "fails its checks");
    printf("  applied / head:       %" PRIu64 " / %" PRIu64 "\n", r->applied,
           r->head);
    if (r->discard_entries)
        printf("  a discard gives up:   entries %" PRIu64 "..%" PRIu64
               " (%" PRIu64 " acknowledged write%s%s%s%s)\n",
               d->seq, r->head, r->discard_entries,
               r->discard_entries == 1 ? "" : "s",
               r->discard_bytes_estimate ? ", about " : "",
               r->discard_bytes_estimate
                   ? human_bytes(b, sizeof b, (double)r->discard_bytes_estimate)
                   : "",
               r->discard_bytes_estimate ? " of journal" : "");
    else
        printf("  a discard gives up:   the entries from seq %" PRIu64
               " on (the journal ends before its recorded head %" PRIu64
               ")\n",
               d->seq, r->head);
    if (d->seq > 1)
        printf("  kept:                 every write up to seq %" PRIu64 "\n",
               d->seq - 1);
    else
        printf("  kept:                 no journal entry (the image as it "
               "was before)\n");
    if (*r->peer_region && primary)
        printf("  peer region %s acknowledged seq %" PRIu64 "%s\n",
               r->peer_region, r->peer_acked,
               r->peer_acked >= d->seq
                   ? ": it HAS these writes; fail over to it instead of "
                     "discarding (RUNBOOK section 2)"
                   : ": it has none of them");
    else if (*r->peer_region)
        printf("  a replica of region %s's primary: the primary ships the "
               "entries from seq %" PRIu64 " again after a discard\n",
               r->peer_region, d->seq);
}

static int cmd_journal_check(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__CheckJournalResponse *r = NULL;
    char what[256];
    snprintf(what, sizeof what, "journal check %s", vol);
    if (journal_check_call(c, what, vol, &r) != EX_OK) return EX_FAIL;
    int ret = r->damaged && r->damage ? EX_FAIL : EX_OK;
    if (c->json) {
        json_msg(stdout, &r->base, 0);
        printf("\n");
    } else if (ret == EX_OK) {
        printf("%s in region %s: journal intact (applied %" PRIu64
               ", head %" PRIu64 ")\n",
               vol, r->volume ? r->volume->region : "?", r->applied, r->head);
    } else {
        print_damage(vol, r);
        printf("The volume opens only read-only (as of seq %" PRIu64
               ") until the damaged tail is discarded; see RUNBOOK 'A "
               "damaged journal tail', then:\n  tandemctl journal discard "
               "%s --bad-seq %" PRIu64 "\n",
               r->damage->seq - 1, vol, r->damage->seq);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return ret;
}

/* The operator types the volume id on the terminal.  1 confirmed. */
static int confirm_on_tty(const char *vol, uint64_t from, uint64_t to)
{
    char line[512];
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    fprintf(stderr,
            "Discarding entries %" PRIu64 "..%" PRIu64 " of %s loses those "
            "writes.\nType the volume id (%s) to discard them, anything "
            "else cancels: ",
            from, to, vol, vol);
    fflush(stderr);
    /* Ctrl-C at the question ends tandemctl with nothing done. */
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    char *got = fgets(line, sizeof line, stdin);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    if (!got) return 0;
    line[strcspn(line, "\r\n")] = 0;
    return !strcmp(line, vol);
}

static int cmd_journal_discard(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__CheckJournalResponse *r = NULL;
    Tandem__Admin__V1__DiscardJournalTailResponse *d = NULL;
    char what[256], msg[1024];
    snprintf(what, sizeof what, "journal discard %s", vol);
    if (!c->bad_seq_set) {
        errf("%s: --bad-seq N is required: the first damaged entry, as "
             "'tandemctl journal check %s' names it",
             what, vol);
        return EX_USAGE;
    }
    if (journal_check_call(c, what, vol, &r) != EX_OK) return EX_FAIL;
    int ret = EX_FAIL;
    if (!r->damaged || !r->damage) {
        printf("%s in region %s: journal intact (head %" PRIu64
               "): nothing to discard\n",
               vol, r->volume ? r->volume->region : "?", r->head);
        ret = EX_OK;
        goto out;
    }
    uint64_t seq = r->damage->seq;
    if (seq != c->bad_seq) {
        errf("%s: the damage is now at seq %" PRIu64 ", not %" PRIu64
             ": check again (nothing was discarded) (FAILED_PRECONDITION)",
             what, seq, c->bad_seq);
        goto out;
    }
    print_damage(vol, r);
    int primary = r->volume && !strcmp(r->volume->role, "primary");
    if (primary && *r->peer_region && r->peer_acked >= seq) {
        errf("%s: peer region %s acknowledged seq %" PRIu64 ", at or past %"
             PRIu64 ": it holds these writes; fail over to it instead "
             "(nothing was discarded) (FAILED_PRECONDITION)",
             what, r->peer_region, r->peer_acked, seq);
        goto out;
    }
    uint64_t last = r->head >= seq ? r->head : seq;
    if (!c->yes) {
        if (!isatty(STDIN_FILENO)) {
            errf("%s: not confirmed: stdin is not a terminal, so nobody can "
                 "type the volume id; add --yes to discard entries %" PRIu64
                 "..%" PRIu64 " (nothing was discarded)",
                 what, seq, last);
            goto out;
        }
        fflush(stdout);
        if (!confirm_on_tty(vol, seq, last)) {
            errf("%s: not confirmed (nothing was discarded)", what);
            goto out;
        }
    }
    Tandem__Admin__V1__DiscardJournalTailRequest req =
        TANDEM__ADMIN__V1__DISCARD_JOURNAL_TAIL_REQUEST__INIT;
    req.volume_id = (char *)vol;
    req.bad_seq = seq;
    /* A dead writer's lease is watched up to 30 s before the discard
     * takes it (jr.h, R-36). */
    int rc = admin_call(c, &c->admin, "DiscardJournalTail", &req,
                        &tandem__admin__v1__discard_journal_tail_response__descriptor,
                        &d, 120, msg, sizeof msg);
    if (rc != RPC_OK) {
        report_rpc_error(what, &c->admin, rc, msg);
        goto out;
    }
    const Tandem__Admin__V1__VolumeStatus *v = d->volume;
    printf("%s: journal discarded in region %s from seq %" PRIu64 ": %" PRIu64
           " entr%s given up; head is now %" PRIu64
           " and the volume opens read-write again\n",
           vol, v ? v->region : "?", d->discarded_from, d->discarded_entries,
           d->discarded_entries == 1 ? "y" : "ies", d->head);
    printf("  check the filesystem before using it (fsck): the image may "
           "still hold some of the discarded writes\n");
    if (d->peer_copy_scheduled)
        printf("  peer region %s: a full copy of the image to it is "
               "scheduled (the replicator does it; 'tandemctl status' shows "
               "catching-up until it is done)\n",
               *r->peer_region ? r->peer_region : "?");
    else if (d->peer_needs_resync || (primary && *r->peer_region))
        printf("  peer region %s needs a full copy: the image may hold "
               "discarded writes it never received; run 'tandemctl resync "
               "%s --full' against region %s's replicator\n",
               r->peer_region, vol, r->peer_region);
    else if (*r->peer_region)
        printf("  the primary (region %s) ships the entries from seq %" PRIu64
               " again\n",
               r->peer_region, seq);
    if (c->verbose && *d->message) printf("  %s\n", d->message);
    ret = EX_OK;
out:
    if (d) protobuf_c_message_free_unpacked(&d->base, NULL);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return ret;
}

/* ----------------------------------------------------------- manifests -- */

static const char *meta_get(const Tandem__Admin__V1__VolumeStatus *v,
                            const char *const *keys)
{
    for (; *keys; keys++)
        for (size_t i = 0; i < v->n_metadata; i++)
            if (!strcmp(v->metadata[i]->key, *keys) && *v->metadata[i]->value)
                return v->metadata[i]->value;
    return NULL;
}

/* The metadata keys the CSI controller records (csi/csi.h: "csi.pvc_name"
 * etc.; StorageClass parameters as "csi.param.<key>").  Other spellings
 * are accepted too, so volumes made by other tools still get manifests. */
static const char *const K_PVC_NAME[] = {
    "csi.pvc_name", "csi.param.csi.storage.k8s.io/pvc/name",
    "csi.storage.k8s.io/pvc/name", NULL};
static const char *const K_PVC_NS[] = {
    "csi.pvc_namespace", "csi.param.csi.storage.k8s.io/pvc/namespace",
    "csi.storage.k8s.io/pvc/namespace", NULL};
static const char *const K_PV_NAME[] = {"csi.pv_name",
                                        "csi.param.csi.storage.k8s.io/pv/name",
                                        "csi.storage.k8s.io/pv/name", NULL};
static const char *const K_FSTYPE[] = {"csi.fs_type", "csi.param.fsType",
                                       "csi.param.csi.storage.k8s.io/fstype",
                                       "csi.storage.k8s.io/fstype", NULL};
static const char *const K_SC[] = {"csi.storage_class", NULL};
static const char *const K_ACCESS[] = {"csi.access_mode", NULL};
static const char *const K_VOLMODE[] = {"csi.access_type", NULL};

/* YAML double-quoted scalar. */
static void yq(FILE *f, const char *s)
{
    json_str(f, s ? s : "");
}

static const char *k8s_access_mode(const char *csi)
{
    if (!csi) return "ReadWriteOnce";
    if (strstr(csi, "MULTI_NODE_MULTI") || strstr(csi, "ReadWriteMany"))
        return "ReadWriteMany";
    if (strstr(csi, "READER_ONLY") || strstr(csi, "ReadOnlyMany"))
        return "ReadOnlyMany";
    if (strstr(csi, "SINGLE_NODE_SINGLE") || strstr(csi, "ReadWriteOncePod"))
        return "ReadWriteOncePod";
    return "ReadWriteOnce";
}

/* Write DIR/<volume>.yaml: a PersistentVolume bound (claimRef) to the PVC
 * the volume was made for, and that PVC (volumeName set, so the surviving
 * cluster binds exactly this PV).  Returns 0 or a negative errno. */
static int write_manifest(const char *dir, const char *region,
                          const Tandem__Admin__V1__VolumeStatus *v,
                          const char *sc_override, char *path, size_t pathsz)
{
    const char *pvc = meta_get(v, K_PVC_NAME);
    const char *ns = meta_get(v, K_PVC_NS);
    const char *pv = meta_get(v, K_PV_NAME);
    const char *fs = meta_get(v, K_FSTYPE);
    const char *sc = sc_override ? sc_override : meta_get(v, K_SC);
    const char *am = k8s_access_mode(meta_get(v, K_ACCESS));
    const char *vm = meta_get(v, K_VOLMODE);
    int block = vm && (!strcasecmp(vm, "block"));
    if (!ns && pvc) ns = "default";
    if (!pv) pv = v->volume_id;

    char tmp[4200];
    snprintf(path, pathsz, "%s/%s.yaml", dir, v->volume_id);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -errno;
    fprintf(f,
            "# tandem failover: %s promoted in region %s (epoch %" PRIu64
            ", applied %" PRIu64 ").\n# Apply in the surviving cluster: "
            "kubectl apply -f %s\n",
            v->volume_id, region, v->epoch, v->applied, path);
    fprintf(f, "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: ");
    yq(f, pv);
    fprintf(
        f,
        "\n  annotations:\n    pv.kubernetes.io/provisioned-by: " DRIVER_NAME
        "\n    tandem.csi.dev/failover-epoch: \"%" PRIu64
        "\"\n  labels:\n    tandem.csi.dev/region: ",
        v->epoch);
    yq(f, region);
    fprintf(f, "\nspec:\n  capacity:\n    storage: \"%" PRIu64 "\"\n",
            v->size_bytes);
    fprintf(f, "  accessModes:\n    - %s\n", am);
    fprintf(f, "  volumeMode: %s\n", block ? "Block" : "Filesystem");
    /* Retain: the data outlives a deleted claim in a disaster. */
    fprintf(f, "  persistentVolumeReclaimPolicy: Retain\n");
    if (sc) {
        fprintf(f, "  storageClassName: ");
        yq(f, sc);
        fprintf(f, "\n");
    }
    if (pvc) {
        fprintf(f, "  claimRef:\n    apiVersion: v1\n    kind: "
                   "PersistentVolumeClaim\n    namespace: ");
        yq(f, ns);
        fprintf(f, "\n    name: ");
        yq(f, pvc);
        fprintf(f, "\n");
    }
    fprintf(f, "  csi:\n    driver: " DRIVER_NAME "\n    volumeHandle: ");
    yq(f, v->volume_id);
    fprintf(f, "\n");
    if (!block) fprintf(f, "    fsType: %s\n", fs ? fs : "ext4");
    /* volumeAttributes: what CreateVolume returns as volume_context
     * (csi/csi_ctrl.c), for the region the volume lives in now. */
    static const char *const k_mkfs[] = {"csi.param.mkfsOptions", NULL};
    const char *mkfs = meta_get(v, k_mkfs);
    fprintf(f, "    volumeAttributes:\n      region: ");
    yq(f, region);
    fprintf(f, "\n");
    if (!block) {
        fprintf(f, "      fsType: ");
        yq(f, fs ? fs : "ext4");
        fprintf(f, "\n");
        if (mkfs) {
            fprintf(f, "      mkfsOptions: ");
            yq(f, mkfs);
            fprintf(f, "\n");
        }
    }
    fprintf(f,
            "  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n"
            "        - matchExpressions:\n            - key: " TOPO_REGION_KEY
            "\n              operator: In\n"
            "              values:\n                - ");
    yq(f, region);
    fprintf(f, "\n");
    if (pvc) {
        fprintf(f, "---\napiVersion: v1\nkind: PersistentVolumeClaim\n"
                   "metadata:\n  name: ");
        yq(f, pvc);
        fprintf(f, "\n  namespace: ");
        yq(f, ns);
        fprintf(f, "\nspec:\n  accessModes:\n    - %s\n  volumeMode: %s\n", am,
                block ? "Block" : "Filesystem");
        fprintf(f, "  storageClassName: ");
        /* "" keeps the default StorageClass from provisioning a new one. */
        yq(f, sc ? sc : "");
        fprintf(f, "\n  volumeName: ");
        yq(f, pv);
        fprintf(f,
                "\n  resources:\n    requests:\n      storage: \"%" PRIu64
                "\"\n",
                v->size_bytes);
    }
    int rc = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) rc = -errno;
    if (fclose(f) != 0 && !rc) rc = -errno;
    if (!rc && rename(tmp, path) != 0) rc = -errno;
    if (rc) unlink(tmp);
    return rc;
}

/* ------------------------------------------------------------ failover -- */

/* With two admin endpoints, failover goes to the one serving to_region. */
static struct endpoint *pick_region(struct ctl *c, const char *region)
{
    if (!c->peer.addr) return &c->admin;
    struct endpoint *eps[2] = {&c->admin, &c->peer};
    for (int i = 0; i < 2; i++) {
        Tandem__Admin__V1__StatusRequest req =
            TANDEM__ADMIN__V1__STATUS_REQUEST__INIT;
        Tandem__Admin__V1__StatusResponse *r = NULL;
        char msg[1024];
        int saved = c->timeout_s;
        c->timeout_s = 5;
        int rc = admin_call(c, eps[i], "Status", &req,
                            &tandem__admin__v1__status_response__descriptor, &r,
                            5, msg, sizeof msg);
        c->timeout_s = saved;
        if (rc == RPC_OK) {
            int match = !strcmp(r->region, region);
            protobuf_c_message_free_unpacked(&r->base, NULL);
            if (match) return eps[i];
        }
    }
    return &c->admin;
}

/* Failover of many named volumes is split into FAILOVER_CHUNKS calls
 * made at once, so the replicator's worker threads promote them in
 * parallel (each volume's promotion is independent).  --all stays one
 * call: the replicator decides which volumes are replicas. */
#define FAILOVER_CHUNKS 4
#define FAILOVER_PARALLEL_MIN 8

struct fo_job {
    struct ctl *c;
    struct endpoint *ep;
    Tandem__Admin__V1__FailoverRequest req;
    Tandem__Admin__V1__FailoverResponse *resp;
    int rc;
    char msg[1024];
};

static void *fo_job_run(void *arg)
{
    struct fo_job *j = arg;
    j->rc = admin_call(j->c, j->ep, "Failover", &j->req,
                       &tandem__admin__v1__failover_response__descriptor,
                       &j->resp, 300, j->msg, sizeof j->msg);
    return NULL;
}

/* One Failover answer for vols (or --all), made of parallel calls when
 * there are many names.  A chunk whose call failed contributes FAILED
 * results carrying the reason.  *out is malloc'd like an unpacked
 * message (free with protobuf_c_message_free_unpacked). */
static int failover_rpc(struct ctl *c, struct endpoint *ep, char **vols, int n,
                        Tandem__Admin__V1__FailoverResponse **out, char *msg,
                        size_t msgsz)
{
    int k = (!c->all && n >= FAILOVER_PARALLEL_MIN) ? FAILOVER_CHUNKS : 1;
    struct fo_job jobs[FAILOVER_CHUNKS];
    pthread_t tids[FAILOVER_CHUNKS];
    int started[FAILOVER_CHUNKS] = {0};
    /* Make the shared client before the threads use it. */
    if (ep_connect(c, ep, msg, msgsz) < 0) return CALL_NO_CLIENT;
    for (int i = 0, from = 0; i < k; i++) {
        int cnt = n / k + (i < n % k);
        struct fo_job *j = &jobs[i];
        memset(j, 0, sizeof *j);
        j->c = c;
        j->ep = ep;
        tandem__admin__v1__failover_request__init(&j->req);
        j->req.volume_ids = vols + from;
        j->req.n_volume_ids = k == 1 ? (size_t)n : (size_t)cnt;
        j->req.all = c->all;
        j->req.to_region = (char *)c->to_region;
        j->req.graceful = c->graceful;
        from += cnt;
        if (k > 1 && pthread_create(&tids[i], NULL, fo_job_run, j) == 0)
            started[i] = 1;
        else
            fo_job_run(j);
    }
    for (int i = 0; i < k; i++)
        if (started[i]) pthread_join(tids[i], NULL);
    if (k == 1) {
        snprintf(msg, msgsz, "%s", jobs[0].msg);
        *out = jobs[0].resp;
        return jobs[0].rc;
    }
    /* Merge in request order; a failed chunk becomes FAILED rows. */
    Tandem__Admin__V1__FailoverResponse *m = calloc(1, sizeof *m);
    int all_failed = 1, rc = RPC_OK;
    if (!m) abort();
    tandem__admin__v1__failover_response__init(m);
    m->results = calloc((size_t)n, sizeof *m->results);
    if (!m->results) abort();
    for (int i = 0; i < k; i++) {
        struct fo_job *j = &jobs[i];
        if (j->rc == RPC_OK) {
            all_failed = 0;
            if (m->region == protobuf_c_empty_string || !m->region)
                m->region = strdup(j->resp->region);
            for (size_t x = 0;
                 x < j->resp->n_results && m->n_results < (size_t)n; x++)
                m->results[m->n_results++] = j->resp->results[x];
            j->resp->n_results = 0; /* moved into m */
            protobuf_c_message_free_unpacked(&j->resp->base, NULL);
            continue;
        }
        rc = j->rc;
        snprintf(msg, msgsz, "%s", j->msg);
        for (size_t x = 0; x < j->req.n_volume_ids; x++) {
            Tandem__Admin__V1__FailoverResult *f = calloc(1, sizeof *f);
            if (!f) abort();
            tandem__admin__v1__failover_result__init(f);
            f->volume_id = strdup(j->req.volume_ids[x]);
            f->message = strdup(*j->msg ? j->msg : rpc_code_name(j->rc));
            f->applied_age_seconds = -1;
            m->results[m->n_results++] = f;
        }
    }
    if (!m->region || m->region == protobuf_c_empty_string)
        m->region = strdup(c->to_region);
    if (all_failed) {
        protobuf_c_message_free_unpacked(&m->base, NULL);
        return rc;
    }
    *out = m;
    return RPC_OK;
}

static int cmd_failover(struct ctl *c, char **vols, int n)
{
    if (!c->to_region) {
        errf("failover: --to REGION is required (the surviving region)");
        return EX_USAGE;
    }
    if (!c->all && n == 0) {
        errf("failover: name the volumes to promote, or --all");
        return EX_USAGE;
    }
    if (c->all && n > 0) {
        errf("failover: give --all or volume names, not both");
        return EX_USAGE;
    }
    if (c->manifests_dir && mkdir(c->manifests_dir, 0755) != 0 &&
        errno != EEXIST) {
        errf("failover: cannot create %s: %s", c->manifests_dir,
             strerror(errno));
        return EX_FAIL;
    }
    struct endpoint *ep = pick_region(c, c->to_region);
    Tandem__Admin__V1__FailoverResponse *r = NULL;
    char msg[1024], what[128];
    int rc = failover_rpc(c, ep, vols, n, &r, msg, sizeof msg);
    snprintf(what, sizeof what, "failover --to %s", c->to_region);
    if (rc != RPC_OK) {
        report_rpc_error(what, ep, rc, msg);
        return EX_FAIL;
    }
    size_t ok = 0, changed = 0, failed = 0;
    for (size_t i = 0; i < r->n_results; i++) {
        ok += r->results[i]->ok;
        changed += r->results[i]->ok && r->results[i]->changed;
        failed += !r->results[i]->ok;
    }
    printf("failover to region %s%s: %zu volume%s, %zu promoted now, %zu "
           "already primary, %zu failed\n",
           r->region, c->graceful ? " (graceful)" : " (forced)", r->n_results,
           r->n_results == 1 ? "" : "s", changed, ok - changed, failed);
    int w = 12;
    for (size_t i = 0; i < r->n_results; i++)
        if ((int)strlen(r->results[i]->volume_id) > w)
            w = (int)strlen(r->results[i]->volume_id);
    if (r->n_results)
        printf("%-*s %-15s %5s %10s %12s  %s\n", w, "VOLUME", "RESULT", "EPOCH",
               "APPLIED", "APPLIED-AGE", "NOTE");
    int ret = EX_OK;
    for (size_t i = 0; i < r->n_results; i++) {
        const Tandem__Admin__V1__FailoverResult *x = r->results[i];
        char age[32], note[6000];
        human_age(age, sizeof age, x->applied_age_seconds);
        /* The columns say what happened; the server's sentence only adds
         * to a failure (or with --verbose). */
        snprintf(note, sizeof note, "%s",
                 !x->ok || c->verbose ? x->message : "");
        /* A promoted volume's answer carries its metadata (the replicator
         * fails the row when it cannot read it); a volume without any
         * (made by other tools) gets a manifest that binds the handle
         * only. */
        if (x->ok && c->manifests_dir && x->volume) {
            char path[4096];
            int wrc = write_manifest(c->manifests_dir, r->region, x->volume,
                                     c->storage_class, path, sizeof path);
            if (wrc < 0) {
                errf("failover %s: cannot write manifest in %s: %s",
                     x->volume_id, c->manifests_dir, strerror(-wrc));
                ret = EX_FAIL;
            } else {
                snprintf(note + strlen(note), sizeof note - strlen(note),
                         "%smanifest %s%s", *note ? "; " : "", path,
                         x->volume->n_metadata ? ""
                                               : " (no metadata: no claim)");
            }
        } else if (x->ok && c->manifests_dir) {
            errf("failover %s: no volume status in the answer: manifest "
                 "not written",
                 x->volume_id);
            ret = EX_FAIL;
        }
        printf("%-*s %-15s %5" PRIu64 " %10" PRIu64 " %12s  %s\n", w,
               x->volume_id,
               !x->ok       ? "FAILED"
               : x->changed ? "promoted"
                            : "already-primary",
               x->epoch, x->applied, x->ok ? age : "-", note);
        if (!x->ok)
            errf("failover %s: %s", x->volume_id,
                 *x->message ? x->message : "not promoted");
    }
    if (failed) ret = ok ? EX_PARTIAL : EX_FAIL;
    if (!r->n_results && n > 0) {
        errf("failover: the replicator answered for none of the named "
             "volumes");
        ret = EX_FAIL;
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return ret;
}

/* ---------------------------------------------------------------- main -- */

// clang-format off
static const char *const HELP_MAIN =
    "usage: tandemctl [global options] COMMAND [args]\n"
"\n"
"The failover CLI of tandem: talks to a tandem-replicator's admin API.\n"
"\n"
"commands:\n"
"  status [VOLUME...] [--json]     replication state, lag and RPO per volume\n"
"  promote VOLUME [--force]        make this region's copy primary\n"
"  demote VOLUME                   make this region's primary secondary\n"
"  failover --to REGION [--all | VOLUME...] [--emit-manifests DIR]\n"
"                                  region lost: promote every replica there\n"
"  resync VOLUME [--full]          make a returned former primary secondary\n"
"  journal check VOLUME [--json]   verify the journal a writable open replays\n"
"  journal discard VOLUME --bad-seq N [--yes]\n"
"                                  give up a damaged journal tail (data loss:\n"
"                                  asks first)\n"
"\n"
"global options:\n"
"  --admin ADDR        admin API of the replicator to act on: unix:///path\n"
"                      or HOST:PORT (mutual TLS); default $TANDEM_ADMIN;\n"
"                      a socket admits who may write it (mode 0600: the\n"
"                      replicator's user, or root)\n"
"  --peer-admin ADDR   the other region's admin API (status of both regions;\n"
"                      failover picks the one serving --to); $TANDEM_PEER_ADMIN;\n"
"                      a second --admin means the same\n"
"  --tls-ca FILE --tls-cert FILE --tls-key FILE\n"
"                      mutual TLS for TCP addresses ($TANDEM_TLS_CA, ..._CERT,\n"
"                      ..._KEY): an operator's certificate, whose URI SAN is\n"
"                      the admin identity spiffe://TRUST-DOMAIN/tandem/admin\n"
"                      (a replicator's certificate is refused);\n"
"                      --tls-server-name NAME overrides the name checked;\n"
"                      --insecure allows plaintext TCP (tests only; the\n"
"                      replicator's admin port is always mutual TLS)\n"
"  --timeout SEC       per-call deadline (and demote's drain wait)\n"
"  --verbose           also print the replicator's own message per volume\n"
"\n"
"Run 'tandemctl COMMAND --help' for details.  Exit status: 0 done (or\n"
"nothing to do), 1 failed or refused (one line on stderr), 2 usage error,\n"
"3 failover promoted some volumes but not all; journal check: 1 also when\n"
"the journal is damaged (stderr empty then).\n";

static const char *const HELP_JOURNAL_CHECK =
    "usage: tandemctl journal check VOLUME [--json]\n"
"\n"
"Verifies, without changing anything, the journal entries a writable open\n"
"of this region's copy would replay (applied+1 .. head; FORMAT.md R-37).\n"
"A damaged one (a flipped byte fails its CRC; a journal that ends before\n"
"its head) is never applied nor skipped: the volume stages read-only only,\n"
"as of the entry before it, until its tail is discarded.  Prints the first\n"
"damaged entry (seq, journal object, offset, the failed check), the\n"
"entries a discard would give up, and whether the peer has them.\n"
"--json prints the admin API's answer.\n"
"Exit 0 journal intact, 1 damaged (report on stdout, stderr empty) or the\n"
"check failed (one line on stderr), 2 usage error.\n";

static const char *const HELP_JOURNAL_DISCARD =
    "usage: tandemctl journal discard VOLUME --bad-seq N [--yes]\n"
"\n"
"Gives up a damaged journal tail: every entry from N on, N being the first\n"
"damaged entry as 'journal check' names it NOW (any other N is refused:\n"
"the damage moved, check again).  Those entries were acknowledged writes:\n"
"they are lost.  First the damage and what goes are shown; then the volume\n"
"id must be typed on the terminal, or --yes given (scripts).  Without a\n"
"terminal on stdin and without --yes it refuses.  Refused too when the\n"
"primary's peer acknowledged N or later (the peer has those writes: fail\n"
"over to it instead, RUNBOOK section 2), and while the volume is staged\n"
"read-write elsewhere.  Afterwards head = N - 1, the volume opens\n"
"read-write, new writes continue at N; check its filesystem (fsck): the\n"
"image may hold some discarded writes.  On a replicated primary the\n"
"replicator copies the whole image to the peer (it may lack what the\n"
"image still holds); on a secondary the primary ships the entries again.\n"
"A journal found intact: nothing to do, exit 0.\n";

static const char *help_for(const char *cmd)
{
    if (!strcmp(cmd, "status"))
        return "usage: tandemctl status [VOLUME...] [--json] [--peer-admin ADDR]\n"
"\n"
"Prints per volume: role, epoch, journal positions (HEAD written, APPLIED to\n"
"this image, ACKED by the peer), LAG in entries and bytes not yet\n"
"acknowledged, RPO (primary: age of the oldest unacknowledged entry, the data\n"
"a region loss would lose now; secondary: age of the newest applied entry),\n"
"LAST-SYNC (last exchange with the peer), THROUGHPUT, COMPR (raw/wire bytes),\n"
"LINK (up, down, backoff, idle, catching-up, split-brain, ...) and STATE.\n"
"With --peer-admin, both regions are shown.  --json prints the admin API's\n"
"answers as JSON ({\"regions\": [...], \"errors\": [...]}).\n"
"Exit 1 if a replicator could not be asked (the other is still shown).\n";
    if (!strcmp(cmd, "promote"))
        return "usage: tandemctl promote VOLUME [--force]\n"
"\n"
"Makes the copy in the --admin replicator's region primary; the epoch goes\n"
"up by one.  Without --force it is graceful and refused unless the peer's\n"
"copy was demoted and this copy applied everything the peer wrote.  --force\n"
"promotes regardless (the peer region is lost); when the old primary comes\n"
"back it sees the higher epoch, stops shipping and waits for 'resync'.\n"
"Promoting a primary again does nothing and exits 0.\n";
    if (!strcmp(cmd, "demote"))
        return "usage: tandemctl demote VOLUME [--timeout SEC]\n"
"\n"
"Makes the primary copy in the --admin replicator's region secondary: new\n"
"writes and read-write staging are refused at once, the rest of the journal\n"
"is shipped and the peer's acknowledgement awaited (--timeout, default 30 s).\n"
"Then 'promote VOLUME' on the peer is a graceful switchover.  Demoting a\n"
"secondary again does nothing and exits 0.\n";
    if (!strcmp(cmd, "failover"))
        return "usage: tandemctl failover --to REGION (--all | VOLUME...)\n"
"                          [--emit-manifests DIR [--storage-class NAME]]\n"
"                          [--graceful] [--config FILE]\n"
"\n"
"The one command to run when a region is lost: promotes (forced, unless\n"
"--graceful) every replica in REGION (--all) or the named ones, in\n"
"parallel, and prints per volume the RESULT (promoted, already-primary,\n"
"FAILED), the new EPOCH, the last APPLIED journal position and its age\n"
"(APPLIED-AGE: how old the newest data on the replica is; writes after it\n"
"in the lost region are lost).  --admin (or --peer-admin) must reach the\n"
"replicator of REGION.\n"
"--emit-manifests DIR writes DIR/<volume>.yaml per promoted volume: a\n"
"PersistentVolume (same volumeHandle, driver " DRIVER_NAME
               ", nodeAffinity\n" TOPO_REGION_KEY
               "=REGION, capacity, fsType) bound by\n"
"claimRef to the original PVC, and that PVC, from the metadata that\n"
"travelled with the volume: kubectl apply -f DIR in the surviving cluster.\n"
"(--config FILE is accepted for older scripts and ignored: the metadata\n"
"comes with the replicator's answer.)\n"
"Exit 0 if every volume is primary now, 3 if some failed, 1 if none.\n";
    if (!strcmp(cmd, "resync"))
        return "usage: tandemctl resync VOLUME [--full]\n"
"\n"
"Run against the region that came back (--admin): turns its copy (a former\n"
"primary, or a split-brain copy) into a secondary of the peer's primary.\n"
"Only regions written on either side after the last common journal\n"
"position are copied ('delta'); a full copy happens only as a fallback, or\n"
"with --full, and the output says which.  Writes made only in the returned\n"
"region after the failover are discarded: save them first if they matter.\n"
"A copy that already is an in-sync secondary: nothing to do, exit 0.\n";
    if (!strcmp(cmd, "journal"))
        return "usage: tandemctl journal check VOLUME [--json]\n"
"       tandemctl journal discard VOLUME --bad-seq N [--yes]\n"
"\n"
"A damaged journal (see RUNBOOK 'A damaged journal tail'): 'check' shows\n"
"where, 'discard' gives the damaged tail up on confirmation.  Run\n"
"'tandemctl journal check --help' or 'tandemctl journal discard --help'.\n";
    if (!strcmp(cmd, "journal check")) return HELP_JOURNAL_CHECK;
    if (!strcmp(cmd, "journal discard")) return HELP_JOURNAL_DISCARD;
    return NULL;
}

// clang-format on

int main(int argc, char **argv)
{
    struct ctl c;
    memset(&c, 0, sizeof c);
    c.admin.addr = getenv("TANDEM_ADMIN");
    c.peer.addr = getenv("TANDEM_PEER_ADMIN");
    c.tls.ca_file = getenv("TANDEM_TLS_CA");
    c.tls.cert_file = getenv("TANDEM_TLS_CERT");
    c.tls.key_file = getenv("TANDEM_TLS_KEY");
    if (c.peer.addr && !*c.peer.addr) c.peer.addr = NULL;
    int help = 0, n_admin = 0;

    enum {
        O_ADMIN = 256,
        O_PEER,
        O_CA,
        O_CERT,
        O_KEY,
        O_SNI,
        O_INSEC,
        O_TMO,
        O_JSON,
        O_FORCE,
        O_ALL,
        O_TO,
        O_EMIT,
        O_FULL,
        O_GRACE,
        O_SC,
        O_CONFIG,
        O_VERBOSE,
        O_BADSEQ,
        O_YES
    };
    static const struct option lo[] = {{"admin", 1, 0, O_ADMIN},
                                       {"peer-admin", 1, 0, O_PEER},
                                       {"tls-ca", 1, 0, O_CA},
                                       {"tls-cert", 1, 0, O_CERT},
                                       {"tls-key", 1, 0, O_KEY},
                                       {"tls-server-name", 1, 0, O_SNI},
                                       {"insecure", 0, 0, O_INSEC},
                                       {"timeout", 1, 0, O_TMO},
                                       {"json", 0, 0, O_JSON},
                                       {"force", 0, 0, O_FORCE},
                                       {"all", 0, 0, O_ALL},
                                       {"to", 1, 0, O_TO},
                                       {"emit-manifests", 1, 0, O_EMIT},
                                       {"full", 0, 0, O_FULL},
                                       {"graceful", 0, 0, O_GRACE},
                                       {"storage-class", 1, 0, O_SC},
                                       {"config", 1, 0, O_CONFIG},
                                       {"verbose", 0, 0, O_VERBOSE},
                                       {"bad-seq", 1, 0, O_BADSEQ},
                                       {"yes", 0, 0, O_YES},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (o) {
        case O_ADMIN:
            /* A second --admin names the other region (= --peer-admin). */
            if (n_admin++ == 0)
                c.admin.addr = optarg;
            else if (n_admin == 2)
                c.peer.addr = optarg;
            else {
                errf("at most two --admin (one per region)");
                return EX_USAGE;
            }
            break;
        case O_PEER:
            c.peer.addr = optarg;
            break;
        case O_CA:
            c.tls.ca_file = optarg;
            break;
        case O_CERT:
            c.tls.cert_file = optarg;
            break;
        case O_KEY:
            c.tls.key_file = optarg;
            break;
        case O_SNI:
            c.tls.server_name = optarg;
            break;
        case O_INSEC:
            c.insecure = 1;
            break;
        case O_TMO: {
            char *end;
            long t = strtol(optarg, &end, 10);
            if (*end || t <= 0 || t > 86400) {
                errf("bad --timeout '%s': seconds, 1..86400", optarg);
                return EX_USAGE;
            }
            c.timeout_s = (int)t;
            break;
        }
        case O_JSON:
            c.json = 1;
            break;
        case O_FORCE:
            c.force = 1;
            break;
        case O_ALL:
            c.all = 1;
            break;
        case O_TO:
            c.to_region = optarg;
            break;
        case O_EMIT:
            c.manifests_dir = optarg;
            break;
        case O_FULL:
            c.full = 1;
            break;
        case O_GRACE:
            c.graceful = 1;
            break;
        case O_SC:
            c.storage_class = optarg;
            break;
        case O_CONFIG:
            /* Accepted (failover only) for older scripts; unused. */
            c.config = optarg;
            break;
        case O_VERBOSE:
            c.verbose = 1;
            break;
        case O_BADSEQ: {
            char *end;
            errno = 0;
            unsigned long long q = strtoull(optarg, &end, 10);
            if (errno || *end || !*optarg || *optarg == '-' || q == 0) {
                errf("bad --bad-seq '%s': a journal seq, 1 or more", optarg);
                return EX_USAGE;
            }
            c.bad_seq = q;
            c.bad_seq_set = 1;
            break;
        }
        case O_YES:
            c.yes = 1;
            break;
        case 'h':
            help = 1;
            break;
        case ':':
            errf("option %s needs a value (see tandemctl --help)",
                 argv[optind - 1]);
            return EX_USAGE;
        default:
            errf("unknown option %s (see tandemctl --help)", argv[optind - 1]);
            return EX_USAGE;
        }
    }
    const char *cmd = optind < argc ? argv[optind] : NULL;
    char **args = argv + optind + 1;
    int nargs = cmd ? argc - optind - 1 : 0;
    if (help || !cmd || !strcmp(cmd, "help")) {
        const char *h = NULL;
        char sub[64];
        if (cmd && !strcmp(cmd, "help") && nargs > 0) {
            cmd = args[0];
            args++;
            nargs--;
        }
        /* "journal check" / "journal discard" have their own. */
        if (cmd && !strcmp(cmd, "journal") && nargs > 0 &&
            snprintf(sub, sizeof sub, "journal %s", args[0]) < (int)sizeof sub)
            h = help_for(sub);
        if (cmd && !h) h = help_for(cmd);
        fputs(h ? h : HELP_MAIN, cmd || help ? stdout : stderr);
        return cmd || help ? EX_OK : EX_USAGE;
    }
    if (!help_for(cmd)) {
        errf("unknown command '%s' (see tandemctl --help)", cmd);
        return EX_USAGE;
    }
    /* Options that only make sense for some commands are refused
     * elsewhere, so a typo never silently does something else. */
    if (c.force && strcmp(cmd, "promote")) {
        errf("%s: --force only applies to promote (failover always forces "
             "unless --graceful)",
             cmd);
        return EX_USAGE;
    }
    if ((c.all || c.to_region || c.manifests_dir || c.graceful ||
         c.storage_class || c.config) &&
        strcmp(cmd, "failover")) {
        errf("%s: --all, --to, --emit-manifests, --graceful, --config and "
             "--storage-class only apply to failover",
             cmd);
        return EX_USAGE;
    }
    if (c.full && strcmp(cmd, "resync")) {
        errf("%s: --full only applies to resync", cmd);
        return EX_USAGE;
    }
    /* journal: a subcommand and one volume. */
    const char *sub = NULL;
    if (!strcmp(cmd, "journal")) {
        sub = nargs > 0 ? args[0] : "";
        if (strcmp(sub, "check") && strcmp(sub, "discard")) {
            errf("journal: expects 'check VOLUME' or 'discard VOLUME "
                 "--bad-seq N' (see tandemctl journal --help)");
            return EX_USAGE;
        }
        if (nargs != 2) {
            errf("journal %s: expects exactly one VOLUME (see tandemctl "
                 "journal %s --help)",
                 sub, sub);
            return EX_USAGE;
        }
    }
    int is_discard = sub && !strcmp(sub, "discard");
    if ((c.bad_seq_set || c.yes) && !is_discard) {
        errf("%s: --bad-seq and --yes only apply to journal discard", cmd);
        return EX_USAGE;
    }
    if (c.json && strcmp(cmd, "status") && !(sub && !strcmp(sub, "check"))) {
        errf("%s: --json only applies to status and journal check", cmd);
        return EX_USAGE;
    }
    int one_vol = !strcmp(cmd, "promote") || !strcmp(cmd, "demote") ||
                  !strcmp(cmd, "resync");
    if (one_vol && nargs != 1) {
        errf("%s: expects exactly one VOLUME (see tandemctl %s --help)", cmd,
             cmd);
        return EX_USAGE;
    }

    if (!c.admin.addr || !*c.admin.addr) {
        errf("%s: no admin endpoint: give --admin unix:///path or HOST:PORT "
             "(or set TANDEM_ADMIN)",
             cmd);
        return EX_USAGE;
    }

    tb_signals_block();
    int ret;
    if (!strcmp(cmd, "status"))
        ret = cmd_status(&c, args, nargs);
    else if (!strcmp(cmd, "promote"))
        ret = cmd_promote(&c, args[0]);
    else if (!strcmp(cmd, "demote"))
        ret = cmd_demote(&c, args[0]);
    else if (!strcmp(cmd, "resync"))
        ret = cmd_resync(&c, args[0]);
    else if (sub && !is_discard)
        ret = cmd_journal_check(&c, args[1]);
    else if (sub)
        ret = cmd_journal_discard(&c, args[1]);
    else
        ret = cmd_failover(&c, args, nargs);
    fflush(stdout);
    rpc_client_destroy(c.admin.cli);
    rpc_client_destroy(c.peer.cli);
    return ret;
}
