/*
 * tandemctl.c: the operator's failover CLI.  It talks to nothing but the
 * admin API of a tandem-replicator (proto/tandem_admin.proto), over a
 * unix socket or mutual-TLS TCP through the rpc layer (librpc): it opens
 * no store and reads no region map (it links neither), since the
 * replicator is the one process per region that decides roles, and its
 * answers carry everything the commands print, the volume metadata of
 * failover manifests included.
 *
 * Layout: this file is main (options, help texts, the checks of which
 * option goes with which command, dispatch); the admin client, output
 * helpers and one file per group of commands are listed in ctl_int.h.
 *
 * Conventions every command keeps (the team's CLI contract):
 *  - idempotent: asking for the state that already holds exits 0 and says
 *    "nothing to do";
 *  - a refusal or failure is ONE line on stderr ("tandemctl: CMD VOL: why
 *    (CODE)") and a non-zero exit: 1 failure, 2 usage error, 3 (failover)
 *    some volumes failed and others were promoted.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_int.h"
#include "tbase.h"
#include "tsig.h"

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
"  --group GROUP       instead of VOLUME: every member of the consistency\n"
"                      group (status, promote, demote, resync, failover;\n"
"                      failover lands them all on the group's newest\n"
"                      complete cut first)\n"
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
"A volume with snapshots also gets DIR/<volume>.snapshots.yaml: per\n"
"snapshot a VolumeSnapshotContent (snapshotHandle <volume>@<snap>,\n"
"deletionPolicy Retain) and the VolumeSnapshot bound to it, named as in\n"
"the lost cluster (from the snapshot's label).\n"
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
        O_YES,
        O_GROUP
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
                                       {"group", 1, 0, O_GROUP},
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
                ctl_errf("at most two --admin (one per region)");
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
                ctl_errf("bad --timeout '%s': seconds, 1..86400", optarg);
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
                ctl_errf("bad --bad-seq '%s': a journal seq, 1 or more",
                         optarg);
                return EX_USAGE;
            }
            c.bad_seq = q;
            c.bad_seq_set = 1;
            break;
        }
        case O_YES:
            c.yes = 1;
            break;
        case O_GROUP:
            c.group = optarg;
            break;
        case 'h':
            help = 1;
            break;
        case ':':
            ctl_errf("option %s needs a value (see tandemctl --help)",
                     argv[optind - 1]);
            return EX_USAGE;
        default:
            ctl_errf("unknown option %s (see tandemctl --help)",
                     argv[optind - 1]);
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
        ctl_errf("unknown command '%s' (see tandemctl --help)", cmd);
        return EX_USAGE;
    }
    /* Options that only make sense for some commands are refused
     * elsewhere, so a typo never silently does something else. */
    if (c.force && strcmp(cmd, "promote")) {
        ctl_errf("%s: --force only applies to promote (failover always forces "
                 "unless --graceful)",
                 cmd);
        return EX_USAGE;
    }
    if ((c.all || c.to_region || c.manifests_dir || c.graceful ||
         c.storage_class || c.config) &&
        strcmp(cmd, "failover")) {
        ctl_errf("%s: --all, --to, --emit-manifests, --graceful, --config and "
                 "--storage-class only apply to failover",
                 cmd);
        return EX_USAGE;
    }
    if (c.full && strcmp(cmd, "resync")) {
        ctl_errf("%s: --full only applies to resync", cmd);
        return EX_USAGE;
    }
    /* journal: a subcommand and one volume. */
    const char *sub = NULL;
    if (!strcmp(cmd, "journal")) {
        sub = nargs > 0 ? args[0] : "";
        if (strcmp(sub, "check") && strcmp(sub, "discard")) {
            ctl_errf("journal: expects 'check VOLUME' or 'discard VOLUME "
                     "--bad-seq N' (see tandemctl journal --help)");
            return EX_USAGE;
        }
        if (nargs != 2) {
            ctl_errf("journal %s: expects exactly one VOLUME (see tandemctl "
                     "journal %s --help)",
                     sub, sub);
            return EX_USAGE;
        }
    }
    int is_discard = sub && !strcmp(sub, "discard");
    if ((c.bad_seq_set || c.yes) && !is_discard) {
        ctl_errf("%s: --bad-seq and --yes only apply to journal discard", cmd);
        return EX_USAGE;
    }
    if (c.json && strcmp(cmd, "status") && !(sub && !strcmp(sub, "check"))) {
        ctl_errf("%s: --json only applies to status and journal check", cmd);
        return EX_USAGE;
    }
    int one_vol = !strcmp(cmd, "promote") || !strcmp(cmd, "demote") ||
                  !strcmp(cmd, "resync");
    if (c.group && (sub || nargs || c.all)) {
        ctl_errf("%s: --group names the volumes: give no VOLUME (nor --all)%s",
                 cmd, sub ? "; journal commands take one volume" : "");
        return EX_USAGE;
    }
    if (one_vol && nargs != 1 && !c.group) {
        ctl_errf("%s: expects exactly one VOLUME (see tandemctl %s --help)",
                 cmd, cmd);
        return EX_USAGE;
    }

    if (!c.admin.addr || !*c.admin.addr) {
        ctl_errf(
            "%s: no admin endpoint: give --admin unix:///path or HOST:PORT "
            "(or set TANDEM_ADMIN)",
            cmd);
        return EX_USAGE;
    }

    tb_signals_block();
    int ret;
    char **gids = NULL;
    int ng = 0;
    if (c.group) {
        /* The group's members, as if named: one call each for the
         * one-volume commands (the worst exit code wins), one list for
         * status and failover (the replicator lands the group on one
         * cut before it promotes any member). */
        ret = ctl_group_members(&c, c.group, &gids, &ng);
        if (ret != EX_OK) goto done;
        if (one_vol) {
            for (int i = 0; i < ng; i++) {
                int r1 = !strcmp(cmd, "promote")  ? ctl_cmd_promote(&c, gids[i])
                         : !strcmp(cmd, "demote") ? ctl_cmd_demote(&c, gids[i])
                                                  : ctl_cmd_resync(&c, gids[i]);
                if (r1 > ret) ret = r1;
            }
            goto done;
        }
        args = gids;
        nargs = ng;
    }
    if (!strcmp(cmd, "status"))
        ret = ctl_cmd_status(&c, args, nargs);
    else if (!strcmp(cmd, "promote"))
        ret = ctl_cmd_promote(&c, args[0]);
    else if (!strcmp(cmd, "demote"))
        ret = ctl_cmd_demote(&c, args[0]);
    else if (!strcmp(cmd, "resync"))
        ret = ctl_cmd_resync(&c, args[0]);
    else if (sub && !is_discard)
        ret = ctl_cmd_journal_check(&c, args[1]);
    else if (sub)
        ret = ctl_cmd_journal_discard(&c, args[1]);
    else
        ret = ctl_cmd_failover(&c, args, nargs);
done:
    for (int i = 0; i < ng; i++) free(gids[i]);
    free(gids);
    fflush(stdout);
    rpc_client_destroy(c.admin.cli);
    rpc_client_destroy(c.peer.cli);
    return ret;
}
