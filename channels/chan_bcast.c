/*  chan_bcast.c — broadcast subscribers and retention ring. */

#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "chan_bcast.h"

typedef struct {
    uint64_t seq;
    size_t len;
    void *body;
} s_kept_t;

struct _chan_bcast_t {
    char *name;
    bool public_;
    chan_sub_t **subs;
    size_t nsubs, capsubs;
    s_kept_t *ring;
    uint32_t retain;
    size_t first, count; /* ring window */
    uint64_t published;
};

chan_bcast_t *
chan_bcast_new (const char *name, uint32_t retain, bool public_)
{
    chan_bcast_t *self = (chan_bcast_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->name = strdup (name);
    self->ring =
        retain ? (s_kept_t *) calloc (retain, sizeof (s_kept_t)) : NULL;
    if (!self->name || (retain && !self->ring)) {
        free (self->name);
        free (self->ring);
        free (self);
        return NULL;
    }
    self->retain = retain;
    self->public_ = public_;
    return self;
}

void
chan_bcast_destroy (chan_bcast_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    chan_bcast_t *self = *self_p;
    for (size_t i = 0; i < self->nsubs; i++)
        self->subs[i]->chan = NULL;
    for (size_t i = 0; i < self->count; i++)
        free (self->ring[(self->first + i) % self->retain].body);
    free (self->ring);
    free (self->subs);
    free (self->name);
    free (self);
    *self_p = NULL;
}

const char *
chan_bcast_name (const chan_bcast_t *self)
{
    return self->name;
}

bool
chan_bcast_public (const chan_bcast_t *self)
{
    return self->public_;
}

size_t
chan_bcast_nsubs (const chan_bcast_t *self)
{
    return self->nsubs;
}

chan_sub_t *
chan_bcast_sub (const chan_bcast_t *self, size_t i)
{
    return i < self->nsubs ? self->subs[i] : NULL;
}

size_t
chan_bcast_retained (const chan_bcast_t *self)
{
    return self->count;
}

uint64_t
chan_bcast_published (const chan_bcast_t *self)
{
    return self->published;
}

int
chan_bcast_subscribe (chan_bcast_t *self, chan_sub_t *sub)
{
    if (self->nsubs == self->capsubs) {
        size_t cap = self->capsubs ? self->capsubs * 2 : 8;
        chan_sub_t **subs =
            (chan_sub_t **) realloc (self->subs, cap * sizeof *subs);
        if (!subs)
            return AAAX_ENOMEM;
        self->subs = subs;
        self->capsubs = cap;
    }
    sub->chan = self;
    sub->slot = self->nsubs;
    self->subs[self->nsubs++] = sub;
    return 0;
}

void
chan_bcast_unsubscribe (chan_sub_t *sub)
{
    chan_bcast_t *self = sub->chan;
    if (!self)
        return;
    size_t i = sub->slot;
    if (i < self->nsubs && self->subs[i] == sub) {
        chan_sub_t *last = self->subs[--self->nsubs];
        self->subs[i] = last;
        last->slot = i;
    }
    sub->chan = NULL;
}

uint32_t
chan_bcast_retain (const chan_bcast_t *self)
{
    return self->retain;
}

void
chan_bcast_published_msg (chan_bcast_t *self, uint64_t seq, const void *body,
                          size_t len)
{
    self->published++;
    if (!self->retain)
        return;
    void *copy = malloc (len ? len : 1);
    if (!copy)
        return; /* retention is best effort; delivery already happened */
    memcpy (copy, body, len);
    if (self->count == self->retain) {
        free (self->ring[self->first].body);
        self->first = (self->first + 1) % self->retain;
        self->count--;
    }
    s_kept_t *k = &self->ring[(self->first + self->count) % self->retain];
    k->seq = seq;
    k->len = len;
    k->body = copy;
    self->count++;
}

size_t
chan_bcast_replay (const chan_bcast_t *self, uint64_t after,
                   chan_bcast_replay_fn *fn, void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < self->count; i++) {
        const s_kept_t *k = &self->ring[(self->first + i) % self->retain];
        if (k->seq > after) {
            fn (arg, k->body, k->len);
            n++;
        }
    }
    return n;
}
