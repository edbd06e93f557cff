/*
 * rep_vol.c: the volume table.  One struct rep_vol per volume seen, made
 * on first sight and freed by rep_destroy only (so a pointer stays valid
 * for the process); its figures are guarded by v->mu.  Also the state
 * setters and the wait senders use between rounds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rep_int.h"

/* --------------------------------------------------------- volume table */

struct rep_vol *rep__vol_get(rep_ctx *r, const char *id)
{
    pthread_mutex_lock(&r->vol_mu);
    struct rep_vol *v;
    for (v = r->vols; v; v = v->next)
        if (!strcmp(v->id, id)) goto out;
    v = calloc(1, sizeof(*v));
    if (!v) goto out;
    rep__scpy(v->id, sizeof(v->id), id);
    pthread_mutex_init(&v->op_lock, NULL);
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    snprintf(v->link_state, sizeof(v->link_state), "none");
    v->next = r->vols;
    r->vols = v;
out:
    pthread_mutex_unlock(&r->vol_mu);
    return v;
}

int rep__list_ids(rep_ctx *r, char ***ids, size_t *n)
{
    size_t cap = 16, k = 0;
    char **a = malloc(cap * sizeof(*a));
    if (!a) return -ENOMEM;
    pthread_mutex_lock(&r->vol_mu);
    for (struct rep_vol *v = r->vols; v; v = v->next) {
        if (k == cap) {
            char **b = realloc(a, 2 * cap * sizeof(*a));
            if (!b) break;
            a = b;
            cap *= 2;
        }
        a[k] = strdup(v->id);
        if (a[k]) k++;
    }
    pthread_mutex_unlock(&r->vol_mu);
    *ids = a;
    *n = k;
    return 0;
}

void rep__free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
}

void rep__vol_state(struct rep_vol *v, const char *link, const char *state,
                      const char *err)
{
    pthread_mutex_lock(&v->mu);
    if (link) rep__scpy(v->link_state, sizeof(v->link_state), link);
    if (state) rep__scpy(v->state, sizeof(v->state), state);
    if (err) rep__scpy(v->last_error, sizeof(v->last_error), err);
    pthread_mutex_unlock(&v->mu);
}

void rep__kick(rep_ctx *r, struct rep_vol *v)
{
    (void)r;
    pthread_mutex_lock(&v->mu);
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
}

/* Sleep up to ms unless stopping or kicked.  Returns 1 if stopping. */
int rep__vol_wait(rep_ctx *r, struct rep_vol *v, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + (int64_t)ms * 1000000;
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_mutex_lock(&v->mu);
    if (!v->stop && !__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE))
        pthread_cond_timedwait(&v->cv, &v->mu, &ts);
    int s = v->stop || __atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&v->mu);
    return s;
}

