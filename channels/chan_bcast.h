/*  chan_bcast.h — a broadcast channel: its subscribers and the ring of the
    last `retain` messages, kept as ready-to-send MSG bodies for SUB since.
    Subscriptions are owned by the caller (one chan_sub_t per session and
    channel) and removed in O(1). */

#ifndef CHAN_BCAST_H_INCLUDED
#define CHAN_BCAST_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _chan_bcast_t chan_bcast_t;

typedef struct {
    void *owner;        /* the subscriber (a session) */
    chan_bcast_t *chan; /* NULL when not subscribed */
    size_t slot;
    bool batch; /* SUB batch: a WRITE batch comes as one MSGS */
} chan_sub_t;

/*  Creates a channel (name copied). NULL on no memory. */
chan_bcast_t *chan_bcast_new (const char *name, uint32_t retain, bool public_);

/*  Frees the channel and its retained messages; subscriptions must be gone.
    Accepts NULL. */
void chan_bcast_destroy (chan_bcast_t **self_p);

const char *chan_bcast_name (const chan_bcast_t *self);
bool chan_bcast_public (const chan_bcast_t *self);
size_t chan_bcast_nsubs (const chan_bcast_t *self);
chan_sub_t *chan_bcast_sub (const chan_bcast_t *self, size_t i);
size_t chan_bcast_retained (const chan_bcast_t *self);
/*  The configured ring size (0: nothing is kept). */
uint32_t chan_bcast_retain (const chan_bcast_t *self);
uint64_t chan_bcast_published (const chan_bcast_t *self);

/*  Adds sub (not subscribed anywhere) with owner set. 0 or AAAX_ENOMEM. */
int chan_bcast_subscribe (chan_bcast_t *self, chan_sub_t *sub);

/*  Removes sub from its channel if it is in one. Moves the last subscriber
    into sub's slot: iterate subscribers from the end when removing. */
void chan_bcast_unsubscribe (chan_sub_t *sub);

/*  Counts a publication and, when the channel retains, keeps a copy of the
    MSG body under seq (the oldest goes when the ring is full). */
void chan_bcast_published_msg (chan_bcast_t *self, uint64_t seq,
                               const void *body, size_t len);

/*  Calls fn for each retained body with seq > after, oldest first; returns
    how many. */
typedef void (chan_bcast_replay_fn) (void *arg, const void *body, size_t len);
size_t chan_bcast_replay (const chan_bcast_t *self, uint64_t after,
                          chan_bcast_replay_fn *fn, void *arg);

#endif
