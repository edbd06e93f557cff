/*
 * fuzz-rep-region.h: the throwaway region both replicator fuzzers drive
 * (fuzz-rep-apply, fuzz-rep-handlers): region b on sqlite, paired with a,
 * plaintext (--insecure: the caller is taken for a), never started, so the
 * peer's address is never dialled.  Scratch files go to $TMPDIR, else
 * tmpfs (no fsync cost), else /tmp; dir receives the directory (the
 * caller removes it at exit).  Aborts on any failure: a fuzzer that cannot
 * set up must not run.
 */
#ifndef TANDEM_FUZZ_REP_REGION_H
#define TANDEM_FUZZ_REP_REGION_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "replicator/rep.h"
#include "tlog.h"

static rep_ctx *fuzz_rep_region(char *dir, size_t dir_size, const char *tag)
{
    char conf[128], err[256];
    rep_ctx *r = NULL;
    tlog_init("fuzz", (enum tlog_level)(TLOG_ERROR + 1));
    const char *t = getenv("TMPDIR");
    if (!t || t[0] != '/')
        t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, dir_size, "%.40s/%s-XXXXXX", t, tag);
    if (!mkdtemp(dir)) abort();
    snprintf(conf, sizeof(conf), "%s/conf.ini", dir);
    FILE *f = fopen(conf, "w");
    if (!f) abort();
    fprintf(f, "[region a]\nbackend = sqlite\ndb_path = %s/a.db\n"
            "replicator = 127.0.0.1:9\n[region b]\nbackend = sqlite\n"
            "db_path = %s/b.db\nreplicator = 127.0.0.1:9\n", dir, dir);
    fclose(f);
    struct rep_opts o = {.config_path = conf, .region = "b",
                         .peer_region = "a", .insecure = 1};
    if (rep_create(&o, &r, err, sizeof(err)) < 0) {
        fprintf(stderr, "rep_create: %s\n", err);
        abort();
    }
    return r;
}

#endif
