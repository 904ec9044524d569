/*  chan_map.h — an open-addressing hash map from uint64 (message seq) to a
    pointer, for ACK and NACK by id in O(1). Key 0 is reserved (seqs start
    at 1). Linear probing with backward-shift deletion: no tombstones. */

#ifndef CHAN_MAP_H_INCLUDED
#define CHAN_MAP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *keys;
    void **vals;
    size_t n;    /* entries */
    size_t mask; /* capacity - 1, capacity a power of two; 0 when empty */
} chan_map_t;

void chan_map_init (chan_map_t *m);
void chan_map_fini (chan_map_t *m);

/*  Inserts or replaces; returns 0 or AAAX_ENOMEM (or AAAX_EINVAL for key 0). */
int chan_map_put (chan_map_t *m, uint64_t key, void *val);

/*  The value for key, or NULL. */
void *chan_map_get (const chan_map_t *m, uint64_t key);

/*  Removes key; returns its value or NULL. */
void *chan_map_del (chan_map_t *m, uint64_t key);

#endif
