/*  chan_map.c — uint64 → pointer open-addressing map. */

#include <stdlib.h>

#include "aaax.h"
#include "chan_map.h"

static inline size_t
s_hash (uint64_t x)
{
    /*  splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t) x;
}

void
chan_map_init (chan_map_t *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->n = 0;
    m->mask = 0;
}

void
chan_map_fini (chan_map_t *m)
{
    free (m->keys);
    free (m->vals);
    chan_map_init (m);
}

static int
s_grow (chan_map_t *m)
{
    size_t cap = m->mask ? (m->mask + 1) * 2 : 64;
    uint64_t *keys = (uint64_t *) calloc (cap, sizeof *keys);
    void **vals = (void **) calloc (cap, sizeof *vals);
    if (!keys || !vals) {
        free (keys);
        free (vals);
        return AAAX_ENOMEM;
    }
    size_t mask = cap - 1;
    if (m->mask) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (!m->keys[i])
                continue;
            size_t j = s_hash (m->keys[i]) & mask;
            while (keys[j])
                j = (j + 1) & mask;
            keys[j] = m->keys[i];
            vals[j] = m->vals[i];
        }
    }
    free (m->keys);
    free (m->vals);
    m->keys = keys;
    m->vals = vals;
    m->mask = mask;
    return 0;
}

int
chan_map_put (chan_map_t *m, uint64_t key, void *val)
{
    if (key == 0)
        return AAAX_EINVAL;
    /*  Keep the load factor under 1/2. */
    if (!m->mask || (m->n + 1) * 2 > m->mask + 1) {
        int rc = s_grow (m);
        if (rc)
            return rc;
    }
    size_t i = s_hash (key) & m->mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & m->mask;
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->n++;
    }
    m->vals[i] = val;
    return 0;
}

void *
chan_map_get (const chan_map_t *m, uint64_t key)
{
    if (!m->mask || key == 0)
        return NULL;
    size_t i = s_hash (key) & m->mask;
    while (m->keys[i]) {
        if (m->keys[i] == key)
            return m->vals[i];
        i = (i + 1) & m->mask;
    }
    return NULL;
}

void *
chan_map_del (chan_map_t *m, uint64_t key)
{
    if (!m->mask || key == 0)
        return NULL;
    size_t i = s_hash (key) & m->mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & m->mask;
    if (!m->keys[i])
        return NULL;
    void *val = m->vals[i];
    m->n--;
    /*  Backward-shift: move later entries of the run into the hole when
        their home slot does not lie cyclically in (hole, j]. */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (!m->keys[j])
            break;
        size_t home = s_hash (m->keys[j]) & m->mask;
        int in_range =
            hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (in_range)
            continue;
        m->keys[hole] = m->keys[j];
        m->vals[hole] = m->vals[j];
        hole = j;
    }
    m->keys[hole] = 0;
    m->vals[hole] = NULL;
    return val;
}
