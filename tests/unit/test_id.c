/*  test_id.c — unit tests of message ids (channels/chan_id.c): known
    vectors, format / parse round trips, ordering as (ms, seq), a clock that
    goes backwards, and malformed ids. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "chan_id.h"
#include "testutil.h"

static uint64_t s_rng = 0x853c49e6748fea9bULL;

static uint64_t
rnd (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

#define MS_MAX ((1ULL << 48) - 1)

static void
fmt (uint64_t ms, uint64_t seq, char out[CHAN_ID_LEN + 1])
{
    memset (out, '#', CHAN_ID_LEN + 1);
    chan_id_format (ms, seq, out);
    CHECK_EQ_INT (out[CHAN_ID_LEN], '#'); // exactly 26 bytes written
    out[CHAN_ID_LEN] = 0;
}

static void
test_vectors (void)
{
    //  computed independently (Python: 128-bit int, base32 Crockford)
    char id[CHAN_ID_LEN + 1];
    fmt (0, 1, id);
    CHECK_EQ_STR (id, "00000000000000000000000001");
    fmt (1, 1, id);
    CHECK_EQ_STR (id, "00000000010000000000000001");
    fmt (MS_MAX, UINT64_MAX, id);
    CHECK_EQ_STR (id, "7ZZZZZZZZZ000FZZZZZZZZZZZZ");
    fmt (1700000000000ULL, 12345, id);
    CHECK_EQ_STR (id, "01HF7YAT000000000000000C1S");
    //  ms beyond 48 bits is cut to 48 bits
    fmt (MS_MAX + 1 + 5, 1, id);
    char id2[CHAN_ID_LEN + 1];
    fmt (5, 1, id2);
    CHECK_EQ_STR (id, id2);
}

static void
test_round_trip (void)
{
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t ms, seq;
        switch (i % 5) {
        case 0:
            ms = 0;
            seq = 1 + rnd () % 1000;
            break;
        case 1:
            ms = MS_MAX;
            seq = UINT64_MAX - rnd () % 1000;
            break;
        case 2:
            ms = rnd () & MS_MAX;
            seq = 1;
            break;
        default:
            ms = rnd () & MS_MAX;
            seq = rnd () | 1;
            break;
        }
        char id[CHAN_ID_LEN + 1];
        chan_id_format (ms, seq, id);
        id[CHAN_ID_LEN] = 0;
        uint64_t s = 0, m = 0;
        if (!chan_id_parse (id, CHAN_ID_LEN, &s, &m) || s != seq || m != ms)
            bad++;
        //  only the alphabet, first character 0..7
        for (int j = 0; j < CHAN_ID_LEN; j++)
            if (!strchr ("0123456789ABCDEFGHJKMNPQRSTVWXYZ", id[j]))
                bad++;
        if (id[0] > '7')
            bad++;
        //  lower case parses to the same
        for (int j = 0; j < CHAN_ID_LEN; j++)
            if (id[j] >= 'A' && id[j] <= 'Z')
                id[j] = (char) (id[j] - 'A' + 'a');
        uint64_t s2 = 0;
        if (!chan_id_parse (id, CHAN_ID_LEN, &s2, NULL) || s2 != seq)
            bad++;
    }
    CHECK_EQ_INT (bad, 0);
}

static int
tuple_cmp (uint64_t m1, uint64_t s1, uint64_t m2, uint64_t s2)
{
    if (m1 != m2)
        return m1 < m2 ? -1 : 1;
    if (s1 != s2)
        return s1 < s2 ? -1 : 1;
    return 0;
}

static int
sign (int x)
{
    return (x > 0) - (x < 0);
}

static void
test_ordering (void)
{
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t m1 = rnd () & MS_MAX, m2 = rnd () & MS_MAX;
        uint64_t s1 = rnd () | 1, s2 = rnd () | 1;
        if (i % 3 == 0)
            m2 = m1; // same millisecond: seq decides
        if (i % 7 == 0)
            s2 = s1 + (rnd () % 3); // close seqs (may overflow to 0..)
        if (s2 == 0)
            s2 = 1;
        if (i % 11 == 0) {
            m1 = m1 >> (rnd () % 48); // different magnitudes
            s1 >>= rnd () % 64;
            if (!s1)
                s1 = 1;
        }
        char a[CHAN_ID_LEN], b[CHAN_ID_LEN];
        chan_id_format (m1, s1, a);
        chan_id_format (m2, s2, b);
        if (sign (memcmp (a, b, CHAN_ID_LEN)) != tuple_cmp (m1, s1, m2, s2))
            bad++;
    }
    CHECK_EQ_INT (bad, 0);
}

static void
test_generator (void)
{
    chan_id_gen_t gen;
    memset (&gen, 0, sizeof gen);
    char prev[CHAN_ID_LEN], cur[CHAN_ID_LEN];
    //  next_seq 0 starts at 1
    uint64_t seq = chan_id_next (&gen, 1000, prev);
    CHECK_EQ_INT (seq, 1);
    CHECK_EQ_INT (gen.next_seq, 2);
    CHECK_EQ_INT (gen.last_ms, 1000);
    uint64_t s, m;
    CHECK (chan_id_parse (prev, CHAN_ID_LEN, &s, &m));
    CHECK_EQ_INT (s, 1);
    CHECK_EQ_INT (m, 1000);

    //  a clock that jumps back and forth: ids still strictly increase, the
    //  millisecond part never goes back, the sequence counts by one
    int64_t clock[] = { 1000, 1000, 999,  5,         2000, 1500, -7,
                        0,    2000, 2001, INT64_MIN, 1999, 3000 };
    uint64_t want_ms[] = { 1000, 1000, 1000, 1000, 2000, 2000, 2000,
                           2000, 2000, 2001, 2001, 2001, 3000 };
    for (size_t i = 0; i < sizeof clock / sizeof clock[0]; i++) {
        uint64_t got = chan_id_next (&gen, clock[i], cur);
        CHECK_EQ_INT (got, i + 2);
        CHECK (memcmp (prev, cur, CHAN_ID_LEN) < 0);
        CHECK (chan_id_parse (cur, CHAN_ID_LEN, &s, &m));
        CHECK_EQ_INT (s, i + 2);
        CHECK_EQ_INT (m, want_ms[i]);
        CHECK_EQ_INT (gen.last_ms, want_ms[i]);
        memcpy (prev, cur, CHAN_ID_LEN);
    }

    //  a generator resumed from persisted state continues after it
    chan_id_gen_t resumed = { 5000, 1000000 };
    CHECK_EQ_INT (chan_id_next (&resumed, 10, cur), 1000000);
    CHECK (chan_id_parse (cur, CHAN_ID_LEN, &s, &m));
    CHECK_EQ_INT (m, 5000);

    //  many ids in the same millisecond sort by sequence
    chan_id_gen_t g2 = { 0, 1 };
    chan_id_next (&g2, 42, prev);
    int bad = 0;
    for (int i = 0; i < 10000; i++) {
        chan_id_next (&g2, 42 - (i % 3), cur);
        if (memcmp (prev, cur, CHAN_ID_LEN) >= 0)
            bad++;
        memcpy (prev, cur, CHAN_ID_LEN);
    }
    CHECK_EQ_INT (bad, 0);
}

static void
test_invalid (void)
{
    char good[CHAN_ID_LEN + 2];
    chan_id_format (1700000000000ULL, 777, good);
    good[CHAN_ID_LEN] = '0';
    good[CHAN_ID_LEN + 1] = 0;
    uint64_t s = 12345, m = 54321;
    CHECK (chan_id_parse (good, CHAN_ID_LEN, &s, &m));
    CHECK_EQ_INT (s, 777);
    s = 12345;
    m = 54321;
    //  wrong lengths
    CHECK (!chan_id_parse (good, 0, &s, &m));
    CHECK (!chan_id_parse (good, 1, &s, &m));
    CHECK (!chan_id_parse (good, CHAN_ID_LEN - 1, &s, &m));
    CHECK (!chan_id_parse (good, CHAN_ID_LEN + 1, &s, &m));
    CHECK (!chan_id_parse ("", 0, &s, &m));
    //  out-parameters untouched on failure
    CHECK_EQ_INT (s, 12345);
    CHECK_EQ_INT (m, 54321);
    //  a bad character at each position
    const char bads[] = { 'I',         'L', 'O', 'U', 'i', 'l',  'o',
                          'u',         '!', ' ', '-', '_', '\0', (char) 0x80,
                          (char) 0xff, '/', ':', '@', '[', '`',  '{' };
    int bad = 0;
    for (int pos = 0; pos < CHAN_ID_LEN; pos++)
        for (size_t j = 0; j < sizeof bads; j++) {
            char id[CHAN_ID_LEN];
            memcpy (id, good, CHAN_ID_LEN);
            id[pos] = bads[j];
            if (chan_id_parse (id, CHAN_ID_LEN, &s, &m))
                bad++;
        }
    CHECK_EQ_INT (bad, 0);
    //  first character above 7 (would need more than 128 bits)
    for (const char *c = "89ABCDEFGHJKMNPQRSTVWXYZ"; *c; c++) {
        char id[CHAN_ID_LEN];
        memcpy (id, good, CHAN_ID_LEN);
        id[0] = *c;
        CHECK (!chan_id_parse (id, CHAN_ID_LEN, &s, &m));
    }
    for (const char *c = "01234567"; *c; c++) {
        char id[CHAN_ID_LEN];
        memcpy (id, good, CHAN_ID_LEN);
        id[0] = *c;
        CHECK (chan_id_parse (id, CHAN_ID_LEN, &s, &m));
    }
    //  sequence 0
    CHECK (!chan_id_parse ("00000000000000000000000000", CHAN_ID_LEN, &s, &m));
    CHECK (!chan_id_parse ("7ZZZZZZZZZ0000000000000000", CHAN_ID_LEN, &s, &m));
    //  the 16 reserved bits between ms and seq must be zero
    CHECK (chan_id_parse ("7ZZZZZZZZZ000FZZZZZZZZZZZZ", CHAN_ID_LEN, &s, &m));
    CHECK (!chan_id_parse ("7ZZZZZZZZZ001FZZZZZZZZZZZZ", CHAN_ID_LEN, &s, &m));
    CHECK (!chan_id_parse ("7ZZZZZZZZZ00G0000000000001", CHAN_ID_LEN, &s, &m));
    CHECK (
        !chan_id_parse ("0000000000100000000000001", CHAN_ID_LEN - 1, &s, &m));
    CHECK (
        !chan_id_parse ("00000000000Z0000000000001", CHAN_ID_LEN - 1, &s, &m));
    CHECK (!chan_id_parse ("00000000000Z00000000000001", CHAN_ID_LEN, &s, &m));
    CHECK (!chan_id_parse ("00000000000010000000000001", CHAN_ID_LEN, &s,
                           &m)); // bit 65 set
    CHECK (chan_id_parse ("00000000000000G00000000001", CHAN_ID_LEN, &s, &m));
}

int
main (void)
{
    test_vectors ();
    test_round_trip ();
    test_ordering ();
    test_generator ();
    test_invalid ();
    TEST_DONE ();
}
