/*
 * ctl_journal.c: `tandemctl journal check` and `journal discard`: where
 * a damaged journal tail starts (FORMAT.md R-37) and, on the operator's
 * confirmation, giving it up.
 *
 * `journal discard` is the one command that gives up data (acknowledged
 * writes in a damaged journal tail): it shows what goes first and needs
 * the volume id typed on a terminal, or --yes; never a silent
 * truncation.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl_int.h"

/* ------------------------------------------------------------- journal -- */

static int journal_check_call(struct ctl *c, const char *what, const char *vol,
                              Tandem__Admin__V1__CheckJournalResponse **r)
{
    Tandem__Admin__V1__CheckJournalRequest req =
        TANDEM__ADMIN__V1__CHECK_JOURNAL_REQUEST__INIT;
    char msg[1024];
    req.volume_id = (char *)vol;
    /* One read of each journal object after applied: allow for many. */
    int rc =
        ctl_admin_call(c, &c->admin, "CheckJournal", &req,
                       &tandem__admin__v1__check_journal_response__descriptor,
                       r, 120, msg, sizeof msg);
    if (rc != RPC_OK) {
        ctl_report_rpc_error(what, &c->admin, rc, msg);
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
                   ? ctl_human_bytes(b, sizeof b,
                                     (double)r->discard_bytes_estimate)
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

int ctl_cmd_journal_check(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__CheckJournalResponse *r = NULL;
    char what[256];
    snprintf(what, sizeof what, "journal check %s", vol);
    if (journal_check_call(c, what, vol, &r) != EX_OK) return EX_FAIL;
    int ret = r->damaged && r->damage ? EX_FAIL : EX_OK;
    if (c->json) {
        ctl_json_msg(stdout, &r->base, 0);
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

int ctl_cmd_journal_discard(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__CheckJournalResponse *r = NULL;
    Tandem__Admin__V1__DiscardJournalTailResponse *d = NULL;
    char what[256], msg[1024];
    snprintf(what, sizeof what, "journal discard %s", vol);
    if (!c->bad_seq_set) {
        ctl_errf("%s: --bad-seq N is required: the first damaged entry, as "
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
        ctl_errf("%s: the damage is now at seq %" PRIu64 ", not %" PRIu64
                 ": check again (nothing was discarded) (FAILED_PRECONDITION)",
                 what, seq, c->bad_seq);
        goto out;
    }
    print_damage(vol, r);
    int primary = r->volume && !strcmp(r->volume->role, "primary");
    if (primary && *r->peer_region && r->peer_acked >= seq) {
        ctl_errf("%s: peer region %s acknowledged seq %" PRIu64 ", at or past %"
                 PRIu64 ": it holds these writes; fail over to it instead "
                 "(nothing was discarded) (FAILED_PRECONDITION)",
                 what, r->peer_region, r->peer_acked, seq);
        goto out;
    }
    uint64_t last = r->head >= seq ? r->head : seq;
    if (!c->yes) {
        if (!isatty(STDIN_FILENO)) {
            ctl_errf(
                "%s: not confirmed: stdin is not a terminal, so nobody can "
                "type the volume id; add --yes to discard entries %" PRIu64
                "..%" PRIu64 " (nothing was discarded)",
                what, seq, last);
            goto out;
        }
        fflush(stdout);
        if (!confirm_on_tty(vol, seq, last)) {
            ctl_errf("%s: not confirmed (nothing was discarded)", what);
            goto out;
        }
    }
    Tandem__Admin__V1__DiscardJournalTailRequest req =
        TANDEM__ADMIN__V1__DISCARD_JOURNAL_TAIL_REQUEST__INIT;
    req.volume_id = (char *)vol;
    req.bad_seq = seq;
    /* A dead writer's lease is watched up to 30 s before the discard
     * takes it (jr.h, R-36). */
    int rc = ctl_admin_call(
        c, &c->admin, "DiscardJournalTail", &req,
        &tandem__admin__v1__discard_journal_tail_response__descriptor, &d, 120,
        msg, sizeof msg);
    if (rc != RPC_OK) {
        ctl_report_rpc_error(what, &c->admin, rc, msg);
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
