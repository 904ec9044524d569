/*  test_heap.c — unit tests of the intrusive min-heap (channels/chan_heap.c):
    basic operations, then 10^5 random push / remove / pop operations checked
    against a reference and chan_heap_check after each one. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "chan_heap.h"
#include "testutil.h"

static uint64_t s_rng = 88172645463325252ULL;

static uint64_t
rnd (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

static int
cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

static void
test_basic (void)
{
    chan_heap_t h;
    chan_heap_init (&h);
    CHECK (chan_heap_top (&h) == NULL);
    CHECK (chan_heap_pop (&h) == NULL);
    CHECK_EQ_INT (chan_heap_check (&h), 0);

    chan_heap_node_t a, b, c, d;
    chan_heap_node_init (&a);
    chan_heap_node_init (&b);
    chan_heap_node_init (&c);
    chan_heap_node_init (&d);
    CHECK (!chan_heap_contains (&a));
    CHECK_EQ_INT (chan_heap_push (&h, &a, 5), 0);
    CHECK_EQ_INT (chan_heap_push (&h, &b, 3), 0);
    CHECK_EQ_INT (chan_heap_push (&h, &c, 5), 0); // equal keys
    CHECK_EQ_INT (chan_heap_push (&h, &d, INT64_MIN), 0);
    CHECK (chan_heap_contains (&a));
    CHECK_EQ_INT (h.n, 4);
    CHECK (chan_heap_top (&h) == &d);
    CHECK_EQ_INT (chan_heap_check (&h), 0);

    //  removing a node not in the heap changes nothing
    chan_heap_node_t stranger;
    chan_heap_node_init (&stranger);
    chan_heap_remove (&h, &stranger);
    CHECK_EQ_INT (h.n, 4);
    //  nor does a node that claims a slot it does not hold
    stranger.slot = 1;
    chan_heap_remove (&h, &stranger);
    CHECK_EQ_INT (h.n, 4);
    stranger.slot = 99;
    chan_heap_remove (&h, &stranger);
    CHECK_EQ_INT (h.n, 4);
    CHECK_EQ_INT (chan_heap_check (&h), 0);

    chan_heap_remove (&h, &b);
    CHECK (!chan_heap_contains (&b));
    chan_heap_remove (&h, &b); // twice: no-op
    CHECK_EQ_INT (h.n, 3);
    CHECK (chan_heap_pop (&h) == &d);
    CHECK (!chan_heap_contains (&d));
    chan_heap_node_t *x = chan_heap_pop (&h);
    chan_heap_node_t *y = chan_heap_pop (&h);
    CHECK ((x == &a && y == &c) || (x == &c && y == &a));
    CHECK (chan_heap_pop (&h) == NULL);

    //  a removed node can be pushed again, with another key
    CHECK_EQ_INT (chan_heap_push (&h, &b, INT64_MAX), 0);
    CHECK_EQ_INT (chan_heap_push (&h, &a, -1), 0);
    CHECK (chan_heap_top (&h) == &a);
    CHECK_EQ_INT (b.key, INT64_MAX);
    //  fini leaves the nodes marked out of any heap
    chan_heap_fini (&h);
    CHECK (!chan_heap_contains (&a));
    CHECK (!chan_heap_contains (&b));
    CHECK (h.items == NULL);
    CHECK_EQ_INT (h.n, 0);
    chan_heap_fini (&h); // twice is harmless
}

static void
test_sort (void)
{
    //  heap sort of 10000 keys (many duplicates) against qsort
    enum { N = 10000 };
    static chan_heap_node_t nodes[N];
    static int64_t keys[N];
    chan_heap_t h;
    chan_heap_init (&h);
    for (int i = 0; i < N; i++) {
        chan_heap_node_init (&nodes[i]);
        keys[i] = (int64_t) (rnd () % 5000) - 2500;
        CHECK_EQ_INT (chan_heap_push (&h, &nodes[i], keys[i]), 0);
    }
    CHECK_EQ_INT (chan_heap_check (&h), 0);
    qsort (keys, N, sizeof keys[0], cmp_i64);
    int ok = 1;
    for (int i = 0; i < N; i++) {
        chan_heap_node_t *n = chan_heap_pop (&h);
        if (!n || n->key != keys[i])
            ok = 0;
    }
    CHECK (ok);
    CHECK_EQ_INT (h.n, 0);
    chan_heap_fini (&h);
}

/*  10^5 random operations on a pool of nodes; the reference is the set of
    nodes in the heap (by their own in_ref flag) and their keys. */
static void
test_random (void)
{
    enum { POOL = 700, OPS = 100000 };
    static chan_heap_node_t nodes[POOL];
    static int in_ref[POOL];
    static int64_t ref_key[POOL];
    chan_heap_t h;
    chan_heap_init (&h);
    for (int i = 0; i < POOL; i++)
        chan_heap_node_init (&nodes[i]);
    size_t count = 0;
    int bad_check = 0, bad_top = 0, bad_pop = 0, bad_n = 0, bad_slot = 0;
    for (int op = 0; op < OPS; op++) {
        uint64_t r = rnd ();
        int i = (int) (rnd () % POOL);
        int what = (int) (r % 10);
        if (what < 5) { // push (if not in)
            if (!in_ref[i]) {
                int64_t key;
                switch (rnd () % 8) {
                case 0: key = INT64_MIN; break;
                case 1: key = INT64_MAX; break;
                case 2: key = (int64_t) (rnd () % 16); break; // duplicates
                default: key = (int64_t) rnd (); break;
                }
                CHECK_EQ_INT (chan_heap_push (&h, &nodes[i], key), 0);
                in_ref[i] = 1;
                ref_key[i] = key;
                count++;
            }
        } else if (what < 8) { // remove (in or not)
            chan_heap_remove (&h, &nodes[i]);
            if (in_ref[i]) {
                in_ref[i] = 0;
                count--;
            }
        } else { // pop
            chan_heap_node_t *n = chan_heap_pop (&h);
            //  the minimum of the reference
            int64_t min = INT64_MAX;
            int any = 0;
            for (int j = 0; j < POOL; j++)
                if (in_ref[j] && (!any || ref_key[j] < min)) {
                    min = ref_key[j];
                    any = 1;
                }
            if (!any)
                bad_pop += n != NULL;
            else if (!n)
                bad_pop++;
            else {
                int j = (int) (n - nodes);
                if (j < 0 || j >= POOL || !in_ref[j] || n->key != min)
                    bad_pop++;
                else {
                    in_ref[j] = 0;
                    count--;
                }
            }
        }
        if (chan_heap_check (&h) != 0)
            bad_check++;
        if (h.n != count)
            bad_n++;
        chan_heap_node_t *top = chan_heap_top (&h);
        if (count && (!top || top->slot != 0))
            bad_top++;
        if (op % 1000 == 0)
            for (int j = 0; j < POOL; j++)
                if (chan_heap_contains (&nodes[j]) != in_ref[j]
                    || (in_ref[j] && nodes[j].key != ref_key[j]))
                    bad_slot++;
    }
    CHECK_EQ_INT (bad_check, 0);
    CHECK_EQ_INT (bad_top, 0);
    CHECK_EQ_INT (bad_pop, 0);
    CHECK_EQ_INT (bad_n, 0);
    CHECK_EQ_INT (bad_slot, 0);
    //  draining yields non-decreasing keys
    int64_t last = INT64_MIN;
    int sorted = 1;
    chan_heap_node_t *n;
    while ((n = chan_heap_pop (&h))) {
        if (n->key < last)
            sorted = 0;
        last = n->key;
        CHECK_EQ_INT (chan_heap_check (&h), 0);
    }
    CHECK (sorted);
    chan_heap_fini (&h);
}

/*  chan_heap_check notices a broken heap. */
static void
test_check_detects (void)
{
    chan_heap_t h;
    chan_heap_init (&h);
    chan_heap_node_t a, b;
    chan_heap_node_init (&a);
    chan_heap_node_init (&b);
    chan_heap_push (&h, &a, 1);
    chan_heap_push (&h, &b, 2);
    CHECK_EQ_INT (chan_heap_check (&h), 0);
    b.key = 0; // violates the heap property
    CHECK (chan_heap_check (&h) != 0);
    b.key = 2;
    b.slot = 0; // wrong slot
    CHECK (chan_heap_check (&h) != 0);
    b.slot = 1;
    chan_heap_fini (&h);
}

int
main (void)
{
    test_basic ();
    test_sort ();
    test_random ();
    test_check_detects ();
    TEST_DONE ();
}
