/*  chan_queue.h — a work-queue channel: each message goes to one claimer at a
    time under a lease; an unacknowledged message comes back (attempt + 1)
    when its lease runs out, on NACK (optionally after a delay) or when its
    holder undocks; after max_attempts deliveries it moves, data unchanged,
    to the dead-letter queue. Messages are held in memory and, for a durable
    queue, recorded in the store (hal_store batches) as they change.

    Ready messages are served in id order: fresh ones from a FIFO, returned
    ones from a heap keyed by seq, whichever is older first. Leased and
    delayed ones wait in a heap keyed by their deadline. */

#ifndef CHAN_QUEUE_H_INCLUDED
#define CHAN_QUEUE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hal_store.h"

typedef struct _chan_queue_t chan_queue_t;
typedef struct _chan_qmsg_t chan_qmsg_t;

/*  Who holds leases: one per known system (embedded in its record). */
typedef struct {
    chan_qmsg_t *head; /* leased messages, any queue */
    size_t count;
} chan_holder_t;

typedef struct {
    bool durable;
    uint32_t max_attempts; /* 0: never dead-letter */
    uint32_t max_len;      /* 0: no limit */
    uint64_t max_bytes;    /* 0: no limit */
    uint32_t lease_ms;     /* default lease */
} chan_queue_cfg_t;

void chan_holder_init (chan_holder_t *holder);

/*  Creates a queue named name (copied). store may be NULL for a queue that
    is never durable. NULL on no memory. */
chan_queue_t *chan_queue_new (const char *name, const chan_queue_cfg_t *cfg,
                              hal_store_t *store);

/*  Frees the queue and its messages (leases of holders into it must be gone:
    destroy queues only at shutdown, after holders). Accepts NULL. */
void chan_queue_destroy (chan_queue_t **self_p);

/*  Where dead letters go (borrowed; NULL: never dead-letter). */
void chan_queue_set_dlq (chan_queue_t *self, chan_queue_t *dlq);

chan_queue_t *chan_queue_dlq (const chan_queue_t *self);
const char *chan_queue_name (const chan_queue_t *self);
bool chan_queue_durable (const chan_queue_t *self);
uint32_t chan_queue_lease_ms (const chan_queue_t *self);
size_t chan_queue_depth (const chan_queue_t *self); /* all held */
size_t chan_queue_ready (const chan_queue_t *self); /* claimable now */
size_t chan_queue_leased (const chan_queue_t *self);
size_t chan_queue_delayed (const chan_queue_t *self);
uint64_t chan_queue_bytes (const chan_queue_t *self);

/*  0 when a message of size bytes fits under max_len and max_bytes,
    AAAX_ELIMIT otherwise. */
int chan_queue_admit (const chan_queue_t *self, size_t bytes);
/*  The same for n messages of bytes in all (a WRITE batch). */
int chan_queue_admit_n (const chan_queue_t *self, size_t n, size_t bytes);

/*  Adds a new ready message (pairs: its envelope block, copied) and records
    it when durable. Returns 0 or AAAX_ENOMEM. */
int chan_queue_append (chan_queue_t *self, uint64_t seq, const void *pairs,
                       size_t len);

/*  Adds a message read from the store at boot (val: the stored record);
    wall_ms and now (monotonic) place a stored delay. 0, AAAX_EINVAL for a
    record this version cannot read, or AAAX_ENOMEM. */
int chan_queue_restore (chan_queue_t *self, uint64_t seq, const void *val,
                        size_t vlen, int64_t now, int64_t wall_ms);

/*  Leases up to max ready messages to holder for lease_ms; writes them to
    out (borrowed until they are acknowledged or come back) and returns how
    many. Each one's attempt counts this delivery. */
size_t chan_queue_claim (chan_queue_t *self, chan_holder_t *holder, size_t max,
                         uint32_t lease_ms, int64_t now, chan_qmsg_t **out);

/*  Acknowledges seq if holder holds its lease: the message is gone (and
    deleted from the store). Returns true if it was. */
bool chan_queue_ack (chan_queue_t *self, const chan_holder_t *holder,
                     uint64_t seq);

/*  Gives seq back if holder holds its lease: ready again after delay_ms (or
    dead-lettered when out of attempts). Returns true if it was. */
bool chan_queue_nack (chan_queue_t *self, const chan_holder_t *holder,
                      uint64_t seq, uint32_t delay_ms, int64_t now,
                      int64_t wall_ms);

/*  Earliest lease or delay deadline (monotonic ms), INT64_MAX if none. */
int64_t chan_queue_next_due (const chan_queue_t *self);

/*  Handles every deadline at or before now: expired leases come back (or
    are dead-lettered), delays end. Returns how many became ready. */
size_t chan_queue_tick (chan_queue_t *self, int64_t now, int64_t wall_ms);

/*  Gives back every lease holder has, in any queue (dead-lettering those
    out of attempts). Each queue a message went back to is reported through
    fn (may repeat a queue); a dead letter's queue is reported, not its dlq. */
typedef void (chan_queue_ready_fn) (void *arg, chan_queue_t *queue);
void chan_holder_release (chan_holder_t *holder, int64_t now, int64_t wall_ms,
                          chan_queue_ready_fn *fn, void *arg);

/*  Message accessors. */
uint64_t chan_qmsg_seq (const chan_qmsg_t *m);
uint32_t chan_qmsg_attempt (const chan_qmsg_t *m);
const uint8_t *chan_qmsg_pairs (const chan_qmsg_t *m, size_t *len);

/*  The store key of (queue name, seq): name NUL seq(8, big-endian). Returns
    its length; out must hold AAAX_MAX_NAME + 10 bytes. */
size_t chan_queue_key (const char *name, uint64_t seq, uint8_t *out);

/*  Splits a store key into name (NUL-terminated in place of the separator,
    so the key is copied into name_out of AAAX_MAX_NAME + 1 bytes) and seq.
    false if it is not such a key. */
bool chan_queue_parse_key (const void *key, size_t klen, char *name_out,
                           uint64_t *seq);

#endif
