/*  test_map.c — unit tests of the u64 -> pointer open-addressing map
    (channels/chan_map.c): put / get / del against a reference, 10^5 random
    operations, and colliding clusters (including ones that wrap around the
    end of the table) to check backward-shift deletion. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "chan_map.h"
#include "testutil.h"

static uint64_t s_rng = 0x2545F4914F6CDD1DULL;

static uint64_t
rnd (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

/*  The same hash as chan_map.c (splitmix64 finaliser), to make keys that
    collide on purpose. */
static size_t
hash (uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t) x;
}

static int
cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

/*  The structure's invariants: n counts the occupied slots, keys are
    unique, and every slot between a key's home and its slot is occupied
    (what lookups and backward-shift deletion rely on). Returns the number
    of violations. */
static int
invariants (const chan_map_t *m)
{
    if (!m->mask)
        return m->n != 0;
    int bad = 0;
    size_t occupied = 0;
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->keys[i]) {
            if (m->vals[i])
                bad++; // a hole keeps no value
            continue;
        }
        occupied++;
        size_t home = hash (m->keys[i]) & m->mask;
        for (size_t j = home; j != i; j = (j + 1) & m->mask)
            if (!m->keys[j]) {
                bad++;
                break;
            }
    }
    if (occupied != m->n)
        bad++;
    //  no key twice
    uint64_t *sorted = (uint64_t *) malloc ((m->mask + 1) * sizeof *sorted);
    if (!sorted)
        abort ();
    memcpy (sorted, m->keys, (m->mask + 1) * sizeof *sorted);
    qsort (sorted, m->mask + 1, sizeof *sorted, cmp_u64);
    for (size_t i = 1; i <= m->mask; i++)
        if (sorted[i] && sorted[i] == sorted[i - 1])
            bad++;
    free (sorted);
    return bad;
}

static void *
val_of (uint64_t key, unsigned gen)
{
    return (void *) (uintptr_t) ((key * 2654435761u) ^ (gen << 4) ^ 0x1000);
}

static void
test_basic (void)
{
    chan_map_t m;
    chan_map_init (&m);
    CHECK (chan_map_get (&m, 1) == NULL);
    CHECK (chan_map_del (&m, 1) == NULL);
    CHECK (chan_map_get (&m, 0) == NULL);
    CHECK_EQ_INT (chan_map_put (&m, 0, &m), AAAX_EINVAL);
    CHECK_EQ_INT (m.n, 0);

    int a, b, c;
    CHECK_EQ_INT (chan_map_put (&m, 1, &a), 0);
    CHECK_EQ_INT (chan_map_put (&m, UINT64_MAX, &b), 0);
    CHECK_EQ_INT (chan_map_put (&m, 42, &c), 0);
    CHECK_EQ_INT (m.n, 3);
    CHECK (chan_map_get (&m, 1) == &a);
    CHECK (chan_map_get (&m, UINT64_MAX) == &b);
    CHECK (chan_map_get (&m, 42) == &c);
    CHECK (chan_map_get (&m, 43) == NULL);
    CHECK (chan_map_get (&m, 0) == NULL);
    CHECK (chan_map_del (&m, 0) == NULL);
    //  replace keeps the count
    CHECK_EQ_INT (chan_map_put (&m, 42, &a), 0);
    CHECK_EQ_INT (m.n, 3);
    CHECK (chan_map_get (&m, 42) == &a);
    CHECK (chan_map_del (&m, 42) == &a);
    CHECK (chan_map_del (&m, 42) == NULL);
    CHECK_EQ_INT (m.n, 2);
    CHECK_EQ_INT (invariants (&m), 0);
    //  growth keeps everything; the load stays at most 1/2
    for (uint64_t k = 100; k < 5100; k++)
        CHECK_EQ_INT (chan_map_put (&m, k, val_of (k, 0)), 0);
    CHECK_EQ_INT (m.n, 5002);
    CHECK (m.n * 2 <= m.mask + 1);
    CHECK (((m.mask + 1) & m.mask) == 0);
    int misses = 0;
    for (uint64_t k = 100; k < 5100; k++)
        misses += chan_map_get (&m, k) != val_of (k, 0);
    CHECK_EQ_INT (misses, 0);
    CHECK_EQ_INT (invariants (&m), 0);
    chan_map_fini (&m);
    CHECK_EQ_INT (m.n, 0);
    CHECK (m.keys == NULL);
    chan_map_fini (&m);
}

/*  Keys whose home slot in a table of cap slots is one of homes[]. */
static size_t
find_keys (size_t cap, const size_t *homes, size_t nhomes, uint64_t *out,
           size_t want, uint64_t start)
{
    size_t n = 0;
    for (uint64_t k = start; n < want; k++) {
        size_t h = hash (k) & (cap - 1);
        for (size_t i = 0; i < nhomes; i++)
            if (h == homes[i]) {
                out[n++] = k;
                break;
            }
    }
    return n;
}

/*  Random put / del / get on a small universe of colliding keys, staying
    below 32 entries so that the table keeps its 64 slots; checked in full
    after every operation. */
static void
test_clusters (void)
{
    static const size_t homes_wrap[] = { 61, 62, 63, 0, 1 };
    static const size_t homes_mid[] = { 20, 21 };
    enum { U = 48 };
    uint64_t keys[U];
    size_t n = find_keys (64, homes_wrap, 5, keys, 36, 1);
    n += find_keys (64, homes_mid, 2, keys + n, U - n, 1000000);
    CHECK_EQ_INT (n, U);

    for (int round = 0; round < 50; round++) {
        chan_map_t m;
        chan_map_init (&m);
        void *ref[U] = { 0 };
        size_t count = 0;
        int bad = 0;
        for (int op = 0; op < 2000; op++) {
            size_t i = rnd () % U;
            uint64_t key = keys[i];
            int what = (int) (rnd () % 3);
            if (what == 0 && (count < 31 || ref[i])) {
                void *v = val_of (key, (unsigned) op);
                CHECK_EQ_INT (chan_map_put (&m, key, v), 0);
                if (!ref[i])
                    count++;
                ref[i] = v;
            } else if (what == 1) {
                void *got = chan_map_del (&m, key);
                if (got != ref[i])
                    bad++;
                if (ref[i])
                    count--;
                ref[i] = NULL;
            } else if (chan_map_get (&m, key) != ref[i])
                bad++;
            //  the table did not grow: clusters really collide
            if (m.mask && m.mask != 63)
                bad++;
            if (m.n != count)
                bad++;
            for (size_t j = 0; j < U; j++)
                if (chan_map_get (&m, keys[j]) != ref[j])
                    bad++;
            bad += invariants (&m);
        }
        CHECK_EQ_INT (bad, 0);
        chan_map_fini (&m);
    }

    //  A deterministic wrap-around case: fill homes 62, 63, 0 runs, delete
    //  the first entry of the run, everything is still found.
    chan_map_t m;
    chan_map_init (&m);
    uint64_t w[12];
    static const size_t h62[] = { 62 }, h63[] = { 63 }, h0[] = { 0 };
    find_keys (64, h62, 1, w, 4, 1);
    find_keys (64, h63, 1, w + 4, 4, 1);
    find_keys (64, h0, 1, w + 8, 4, 1);
    for (int i = 0; i < 12; i++)
        CHECK_EQ_INT (chan_map_put (&m, w[i], val_of (w[i], 1)), 0);
    CHECK_EQ_INT (m.mask, 63);
    for (int del = 0; del < 12; del++) {
        CHECK (chan_map_del (&m, w[del]) == val_of (w[del], 1));
        CHECK_EQ_INT (invariants (&m), 0);
        for (int j = del + 1; j < 12; j++)
            CHECK (chan_map_get (&m, w[j]) == val_of (w[j], 1));
    }
    CHECK_EQ_INT (m.n, 0);
    for (size_t i = 0; i <= m.mask; i++)
        CHECK (m.keys[i] == 0);
    chan_map_fini (&m);
}

/*  10^5 random operations over a universe of 6000 keys (some sequential,
    some random, some colliding), checked against a reference array. */
static void
test_random (void)
{
    enum { U = 6000, OPS = 100000 };
    static uint64_t keys[U];
    static void *ref[U];
    for (size_t i = 0; i < 2000; i++)
        keys[i] = i + 1; // like seqs
    for (size_t i = 2000; i < 4000; i++)
        keys[i] = rnd () | 1;
    static const size_t homes[] = { 0, 1, 2, 1023 };
    find_keys (1024, homes, 4, keys + 4000, 2000, 5000000);
    chan_map_t m;
    chan_map_init (&m);
    size_t count = 0;
    int bad = 0;
    for (int op = 0; op < OPS; op++) {
        //  phases: grow, churn, shrink
        int phase = op < 30000 ? 0 : op < 70000 ? 1 : 2;
        size_t i = rnd () % U;
        int what = (int) (rnd () % 10);
        int put = phase == 0 ? what < 7 : phase == 1 ? what < 4 : what < 1;
        if (put) {
            void *v = val_of (keys[i], (unsigned) op);
            if (chan_map_put (&m, keys[i], v) != 0)
                bad++;
            if (!ref[i])
                count++;
            ref[i] = v;
        } else if (what < 8) {
            if (chan_map_del (&m, keys[i]) != ref[i])
                bad++;
            if (ref[i])
                count--;
            ref[i] = NULL;
        } else if (chan_map_get (&m, keys[i]) != ref[i])
            bad++;
        if (m.n != count)
            bad++;
        if (op % 5000 == 0) {
            for (size_t j = 0; j < U; j++)
                if (chan_map_get (&m, keys[j]) != ref[j])
                    bad++;
            bad += invariants (&m);
        }
    }
    CHECK_EQ_INT (bad, 0);
    CHECK_EQ_INT (invariants (&m), 0);
    //  delete everything: the table is empty again
    for (size_t j = 0; j < U; j++)
        CHECK (chan_map_del (&m, keys[j]) == ref[j]);
    CHECK_EQ_INT (m.n, 0);
    CHECK_EQ_INT (invariants (&m), 0);
    chan_map_fini (&m);
}

int
main (void)
{
    test_basic ();
    test_clusters ();
    test_random ();
    TEST_DONE ();
}
