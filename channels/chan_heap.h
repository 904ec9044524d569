/*  chan_heap.h — an intrusive binary min-heap keyed by int64: lease and delay
    deadlines, and the seq order of requeued messages. The node lives inside
    the owner's struct and remembers its slot, so removal is O(log n). */

#ifndef CHAN_HEAP_H_INCLUDED
#define CHAN_HEAP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define CHAN_HEAP_NONE ((size_t) -1)

typedef struct {
    int64_t key;
    size_t slot; /* CHAN_HEAP_NONE when not in a heap */
} chan_heap_node_t;

typedef struct {
    chan_heap_node_t **items;
    size_t n;
    size_t cap;
} chan_heap_t;

void chan_heap_init (chan_heap_t *h);
void chan_heap_fini (chan_heap_t *h);
static inline void
chan_heap_node_init (chan_heap_node_t *node)
{
    node->key = 0;
    node->slot = CHAN_HEAP_NONE;
}
static inline int
chan_heap_contains (const chan_heap_node_t *node)
{
    return node->slot != CHAN_HEAP_NONE;
}

/*  Inserts node with key; returns 0 or AAAX_ENOMEM. node must not be in a
    heap. */
int chan_heap_push (chan_heap_t *h, chan_heap_node_t *node, int64_t key);

/*  The smallest node, or NULL when empty. */
chan_heap_node_t *chan_heap_top (const chan_heap_t *h);

/*  Removes and returns the smallest node, or NULL. */
chan_heap_node_t *chan_heap_pop (chan_heap_t *h);

/*  Removes node if it is in h. */
void chan_heap_remove (chan_heap_t *h, chan_heap_node_t *node);

/*  Self check of the heap property (tests). */
int chan_heap_check (const chan_heap_t *h);

#endif
