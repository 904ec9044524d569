/*  chan_mbox.h — a system's mailbox (@ID): messages kept (and, through the
    store, durable) until the owner acknowledges them, pushed to the owner's
    live session in id order with at most `window` unacknowledged at once;
    whatever is unacknowledged when the owner undocks is pushed again, with
    attempt + 1, at its next dock. Embedded in the owner's record. */

#ifndef CHAN_MBOX_H_INCLUDED
#define CHAN_MBOX_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chan_map.h"
#include "hal_store.h"

typedef struct _chan_mmsg_t chan_mmsg_t;

typedef struct {
    chan_mmsg_t *head, *tail; /* in seq order */
    chan_mmsg_t *cursor;      /* first message not pushed this session */
    chan_map_t by_seq;
    size_t count, inflight;
    uint64_t bytes;
} chan_mbox_t;

void chan_mbox_init (chan_mbox_t *self);
void chan_mbox_fini (chan_mbox_t *self);

/*  Adds a message (pairs copied) and records it under owner's key when store
    is not NULL. 0 or AAAX_ENOMEM. */
int chan_mbox_append (chan_mbox_t *self, hal_store_t *store, const char *owner,
                      uint64_t seq, const void *pairs, size_t len);

/*  Adds a stored message at boot (val: the stored record). 0, AAAX_EINVAL
    for an unreadable record, AAAX_ENOMEM. */
int chan_mbox_restore (chan_mbox_t *self, uint64_t seq, const void *val,
                       size_t vlen);

/*  The next message to push while fewer than window are unacknowledged:
    marks it in flight and counts the delivery in its attempt. NULL when
    there is none or the window is full. Borrowed until acknowledged. */
chan_mmsg_t *chan_mbox_next (chan_mbox_t *self, size_t window);

/*  Acknowledges seq if it was pushed: gone, and deleted from the store.
    Returns true if it was. */
bool chan_mbox_ack (chan_mbox_t *self, hal_store_t *store, const char *owner,
                    uint64_t seq);

/*  The owner undocked: everything in flight is due again at the next dock;
    their attempts are recorded when store is not NULL. */
void chan_mbox_undock (chan_mbox_t *self, hal_store_t *store,
                       const char *owner);

uint64_t chan_mmsg_seq (const chan_mmsg_t *m);
uint32_t chan_mmsg_attempt (const chan_mmsg_t *m);
const uint8_t *chan_mmsg_pairs (const chan_mmsg_t *m, size_t *len);

#endif
