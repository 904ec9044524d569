/*  chan_env.h — the envelope (contract section 3). A stored or queued message
    keeps its envelope as a block of packed key/value pairs — id, ts, from,
    chan, to, corr, data — so that a delivery is a map header, that block,
    and for work-queues and mailboxes the `attempt` pair: no re-encoding. */

#ifndef CHAN_ENV_H_INCLUDED
#define CHAN_ENV_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "chan_mpk.h"

#define CHAN_ENV_PAIRS 7

/*  Appends the seven pairs to b. from, chan: required; to, corr: NULL for
    nil; data: a packed msgpack value (already validated). */
void chan_env_pairs (chan_buf_t *b, const char *id, size_t idlen, double ts,
                     const char *from, size_t fromlen, const char *chan,
                     size_t chanlen, const char *to, size_t tolen,
                     const char *corr, size_t corrlen, const void *data,
                     size_t datalen);

/*  Appends a whole envelope map: the pairs block plus, when attempt > 0,
    the `attempt` pair. */
void chan_env_map (chan_buf_t *b, const void *pairs, size_t len,
                   uint32_t attempt);

/*  Appends the pairs block again with `chan` replaced (dead-lettering).
    Returns 0 or AAAX_EINVAL when pairs is not a block this module made. */
int chan_env_rechan (chan_buf_t *b, const void *pairs, size_t len,
                     const char *chan, size_t chanlen);

#endif
