/*  chan_idem.h — idempotency keys: a WRITE or SEND that carries `key`
    remembers (channel, writer, key) → the id it got, for ttl seconds (at
    least ten minutes); a repeat within that time gets the same id and adds
    nothing. Keys of durable channels are recorded in the store beside the
    message, so a producer retrying across a kernel restart is still
    recognised. */

#ifndef CHAN_IDEM_H_INCLUDED
#define CHAN_IDEM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chan_id.h"
#include "hal_store.h"

typedef struct _chan_idem_t chan_idem_t;

/*  store may be NULL (nothing recorded). NULL on no memory. */
chan_idem_t *chan_idem_new (hal_store_t *store, uint32_t ttl_s);
void chan_idem_destroy (chan_idem_t **self_p);

/*  Looks up (chan, writer, key); true and the id in id_out (CHAN_ID_LEN
    characters, no NUL) when remembered and not expired at wall_ms. key must
    not contain NUL. */
bool chan_idem_get (chan_idem_t *self, const char *chan, const char *writer,
                    const char *key, size_t keylen, int64_t wall_ms,
                    char *id_out);

/*  Remembers (chan, writer, key) → id from wall_ms; recorded in the store
    when durable. 0 or AAAX_ENOMEM. */
int chan_idem_put (chan_idem_t *self, const char *chan, const char *writer,
                   const char *key, size_t keylen, const char *id, bool durable,
                   int64_t wall_ms);

/*  Adds a stored record at boot; expired ones are deleted instead.
    0, AAAX_EINVAL for an unreadable record, or AAAX_ENOMEM. */
int chan_idem_restore (chan_idem_t *self, const void *key, size_t klen,
                       const void *val, size_t vlen, int64_t wall_ms);

/*  Forgets everything expired at wall_ms (deleting stored records). */
void chan_idem_expire (chan_idem_t *self, int64_t wall_ms);

size_t chan_idem_size (const chan_idem_t *self);

#endif
