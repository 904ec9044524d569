/*  chan_heap.c — intrusive binary min-heap. */

#include <stdlib.h>

#include "aaax.h"
#include "chan_heap.h"

void
chan_heap_init (chan_heap_t *h)
{
    h->items = NULL;
    h->n = 0;
    h->cap = 0;
}

void
chan_heap_fini (chan_heap_t *h)
{
    for (size_t i = 0; i < h->n; i++)
        h->items[i]->slot = CHAN_HEAP_NONE;
    free (h->items);
    chan_heap_init (h);
}

static void
s_set (chan_heap_t *h, size_t i, chan_heap_node_t *node)
{
    h->items[i] = node;
    node->slot = i;
}

static void
s_up (chan_heap_t *h, size_t i)
{
    chan_heap_node_t *node = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->key <= node->key)
            break;
        s_set (h, i, h->items[parent]);
        i = parent;
    }
    s_set (h, i, node);
}

static void
s_down (chan_heap_t *h, size_t i)
{
    chan_heap_node_t *node = h->items[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t mk = node->key;
        if (l < h->n && h->items[l]->key < mk) {
            m = l;
            mk = h->items[l]->key;
        }
        if (r < h->n && h->items[r]->key < mk)
            m = r;
        if (m == i)
            break;
        s_set (h, i, h->items[m]);
        i = m;
    }
    s_set (h, i, node);
}

int
chan_heap_push (chan_heap_t *h, chan_heap_node_t *node, int64_t key)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        chan_heap_node_t **items =
            (chan_heap_node_t **) realloc (h->items, cap * sizeof *items);
        if (!items)
            return AAAX_ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    node->key = key;
    s_set (h, h->n++, node);
    s_up (h, h->n - 1);
    return 0;
}

chan_heap_node_t *
chan_heap_top (const chan_heap_t *h)
{
    return h->n ? h->items[0] : NULL;
}

void
chan_heap_remove (chan_heap_t *h, chan_heap_node_t *node)
{
    size_t i = node->slot;
    if (i == CHAN_HEAP_NONE || i >= h->n || h->items[i] != node)
        return;
    node->slot = CHAN_HEAP_NONE;
    h->n--;
    if (i == h->n)
        return;
    chan_heap_node_t *last = h->items[h->n];
    s_set (h, i, last);
    if (i > 0 && h->items[(i - 1) / 2]->key > last->key)
        s_up (h, i);
    else
        s_down (h, i);
}

chan_heap_node_t *
chan_heap_pop (chan_heap_t *h)
{
    chan_heap_node_t *top = chan_heap_top (h);
    if (top)
        chan_heap_remove (h, top);
    return top;
}

int
chan_heap_check (const chan_heap_t *h)
{
    for (size_t i = 0; i < h->n; i++) {
        if (h->items[i]->slot != i)
            return -1;
        if (i > 0 && h->items[(i - 1) / 2]->key > h->items[i]->key)
            return -1;
    }
    return 0;
}
