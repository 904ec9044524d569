/*  test_mpk.c — unit tests of the bounded msgpack reader and the packer's
    growable buffer (channels/chan_mpk.c): every type and width, truncation at
    every byte, invalid bytes, container counts, the depth limit, and random
    values cross-checked against msgpack-c. */

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "aaax.h"
#include "chan_mpk.h"
#include "testutil.h"

//  Helpers ---------------------------------------------------------------

/*  Reads exactly one item from data[0..len) and checks that it consumed
    everything; returns the item. */
static chan_mpk_obj_t
read_one (const void *data, size_t len)
{
    chan_mpk_reader_t r;
    chan_mpk_obj_t o;
    memset (&o, 0xee, sizeof o);
    chan_mpk_reader_init (&r, data, len);
    int rc = chan_mpk_next (&r, &o);
    CHECK_EQ_INT (rc, 0);
    CHECK_EQ_INT (chan_mpk_remaining (&r), 0);
    return o;
}

static size_t
be_put (uint8_t *out, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = (uint8_t) (v >> (8 * (n - 1 - i)));
    return (size_t) n;
}

//  Scalars ---------------------------------------------------------------

static void
test_ints (void)
{
    //  positive fixint
    for (int c = 0; c <= 0x7f; c++) {
        uint8_t b = (uint8_t) c;
        chan_mpk_obj_t o = read_one (&b, 1);
        CHECK_EQ_INT (o.type, CHAN_MPK_UINT);
        CHECK_EQ_INT (o.v.u, c);
    }
    //  negative fixint
    for (int c = 0xe0; c <= 0xff; c++) {
        uint8_t b = (uint8_t) c;
        chan_mpk_obj_t o = read_one (&b, 1);
        CHECK_EQ_INT (o.type, CHAN_MPK_INT);
        CHECK_EQ_INT (o.v.i, (int8_t) c);
    }
    //  uint8..64 at their extremes
    struct {
        uint8_t tag;
        int n;
        uint64_t v;
    } u[] = {
        { 0xcc, 1, 0 },          { 0xcc, 1, 0xff },
        { 0xcd, 2, 0 },          { 0xcd, 2, 0xffff },
        { 0xce, 4, 0x12345678 }, { 0xce, 4, 0xffffffffu },
        { 0xcf, 8, 0 },          { 0xcf, 8, 0x8000000000000000ULL },
        { 0xcf, 8, UINT64_MAX },
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        uint8_t buf[9];
        buf[0] = u[i].tag;
        size_t len = 1 + be_put (buf + 1, u[i].v, u[i].n);
        chan_mpk_obj_t o = read_one (buf, len);
        CHECK_EQ_INT (o.type, CHAN_MPK_UINT);
        CHECK (o.v.u == u[i].v);
    }
    //  int8..64: negative values are INT, non-negative ones are UINT
    struct {
        uint8_t tag;
        int n;
        int64_t v;
    } s[] = {
        { 0xd0, 1, -128 },      { 0xd0, 1, -1 },
        { 0xd0, 1, 0 },         { 0xd0, 1, 127 },
        { 0xd1, 2, -32768 },    { 0xd1, 2, -129 },
        { 0xd1, 2, 32767 },     { 0xd1, 2, 0 },
        { 0xd2, 4, INT32_MIN }, { 0xd2, 4, -1 },
        { 0xd2, 4, INT32_MAX }, { 0xd3, 8, INT64_MIN },
        { 0xd3, 8, -1 },        { 0xd3, 8, INT64_MAX },
        { 0xd3, 8, 0 },         { 0xd3, 8, -4294967296LL },
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        uint8_t buf[9];
        buf[0] = s[i].tag;
        size_t len = 1 + be_put (buf + 1, (uint64_t) s[i].v, s[i].n);
        chan_mpk_obj_t o = read_one (buf, len);
        if (s[i].v < 0) {
            CHECK_EQ_INT (o.type, CHAN_MPK_INT);
            CHECK (o.v.i == s[i].v);
        } else {
            CHECK_EQ_INT (o.type, CHAN_MPK_UINT);
            CHECK (o.v.u == (uint64_t) s[i].v);
        }
    }
}

static void
test_other_scalars (void)
{
    uint8_t nil = 0xc0, t = 0xc3, f = 0xc2;
    chan_mpk_obj_t o = read_one (&nil, 1);
    CHECK_EQ_INT (o.type, CHAN_MPK_NIL);
    o = read_one (&t, 1);
    CHECK_EQ_INT (o.type, CHAN_MPK_BOOL);
    CHECK (o.v.b == true);
    o = read_one (&f, 1);
    CHECK_EQ_INT (o.type, CHAN_MPK_BOOL);
    CHECK (o.v.b == false);

    //  float32
    float fv[] = { 1.5f, -0.0f, FLT_MAX, -FLT_MIN, 3.14159f };
    for (size_t i = 0; i < sizeof fv / sizeof fv[0]; i++) {
        uint8_t buf[5] = { 0xca };
        uint32_t bits;
        memcpy (&bits, &fv[i], 4);
        be_put (buf + 1, bits, 4);
        o = read_one (buf, 5);
        CHECK_EQ_INT (o.type, CHAN_MPK_FLOAT);
        CHECK (o.v.f == (double) fv[i]);
        CHECK (!!signbit (o.v.f) == !!signbit (fv[i]));
    }
    //  float64
    double dv[] = { 0.0, 1.0 / 3.0, -1e300, DBL_MIN, 1234567.875 };
    for (size_t i = 0; i < sizeof dv / sizeof dv[0]; i++) {
        uint8_t buf[9] = { 0xcb };
        uint64_t bits;
        memcpy (&bits, &dv[i], 8);
        be_put (buf + 1, bits, 8);
        o = read_one (buf, 9);
        CHECK_EQ_INT (o.type, CHAN_MPK_FLOAT);
        CHECK (o.v.f == dv[i]);
    }
    //  float32 and float64 NaN / infinity pass through
    {
        uint8_t buf[9] = { 0xcb };
        double inf = INFINITY;
        uint64_t bits;
        memcpy (&bits, &inf, 8);
        be_put (buf + 1, bits, 8);
        o = read_one (buf, 9);
        CHECK (isinf (o.v.f));
        uint8_t nanf[5] = { 0xca, 0x7f, 0xc0, 0x00, 0x00 };
        o = read_one (nanf, 5);
        CHECK (isnan (o.v.f));
    }
}

//  Strings, bins, exts ---------------------------------------------------

static void
check_blob (const uint8_t *buf, size_t len, chan_mpk_type_t type, size_t hdr,
            size_t plen, int8_t ext_type)
{
    chan_mpk_obj_t o = read_one (buf, len);
    CHECK_EQ_INT (o.type, type);
    CHECK_EQ_INT (o.len, plen);
    CHECK (o.ptr == (const char *) buf + hdr);
    if (type == CHAN_MPK_EXT)
        CHECK_EQ_INT (o.ext_type, ext_type);
}

static void
test_blobs (void)
{
    size_t big = 70000;
    uint8_t *buf = (uint8_t *) malloc (big + 16);
    CHECK (buf != NULL);
    if (!buf)
        return;
    for (size_t i = 0; i < big + 16; i++)
        buf[i] = (uint8_t) ('a' + i % 26);

    //  fixstr 0 and 31
    buf[0] = 0xa0;
    check_blob (buf, 1, CHAN_MPK_STR, 1, 0, 0);
    buf[0] = 0xbf;
    check_blob (buf, 32, CHAN_MPK_STR, 1, 31, 0);
    //  str8 / str16 / str32, bin8 / bin16 / bin32
    struct {
        uint8_t tag;
        int n;
        size_t len;
        chan_mpk_type_t type;
    } v[] = {
        { 0xd9, 1, 0, CHAN_MPK_STR },     { 0xd9, 1, 200, CHAN_MPK_STR },
        { 0xda, 2, 1000, CHAN_MPK_STR },  { 0xda, 2, 65535, CHAN_MPK_STR },
        { 0xdb, 4, 70000, CHAN_MPK_STR }, { 0xdb, 4, 0, CHAN_MPK_STR },
        { 0xc4, 1, 0, CHAN_MPK_BIN },     { 0xc4, 1, 255, CHAN_MPK_BIN },
        { 0xc5, 2, 300, CHAN_MPK_BIN },   { 0xc6, 4, 70000, CHAN_MPK_BIN },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        buf[0] = v[i].tag;
        be_put (buf + 1, v[i].len, v[i].n);
        for (size_t j = 0; j < v[i].len; j++)
            buf[1 + v[i].n + j] = (uint8_t) j;
        check_blob (buf, 1 + (size_t) v[i].n + v[i].len, v[i].type,
                    1 + (size_t) v[i].n, v[i].len, 0);
    }
    //  fixext 1, 2, 4, 8, 16 with positive and negative ext types
    for (int k = 0; k < 5; k++) {
        buf[0] = (uint8_t) (0xd4 + k);
        buf[1] = k % 2 ? 0xff : 0x05; // -1 or 5
        check_blob (buf, 2 + ((size_t) 1 << k), CHAN_MPK_EXT, 2,
                    (size_t) 1 << k, k % 2 ? -1 : 5);
    }
    //  ext8 / ext16 / ext32
    struct {
        uint8_t tag;
        int n;
        size_t len;
    } e[] = { { 0xc7, 1, 0 },
              { 0xc7, 1, 3 },
              { 0xc7, 1, 255 },
              { 0xc8, 2, 256 },
              { 0xc9, 4, 70000 } };
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        buf[0] = e[i].tag;
        be_put (buf + 1, e[i].len, e[i].n);
        buf[1 + e[i].n] = 0x80; // ext type -128
        check_blob (buf, 2 + (size_t) e[i].n + e[i].len, CHAN_MPK_EXT,
                    2 + (size_t) e[i].n, e[i].len, -128);
    }
    free (buf);
}

//  Containers ------------------------------------------------------------

static void
test_containers (void)
{
    //  fixarray / fixmap headers; the elements follow unread
    uint8_t a[] = { 0x93, 1, 2, 3 };
    chan_mpk_reader_t r;
    chan_mpk_obj_t o;
    chan_mpk_reader_init (&r, a, sizeof a);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), 0);
    CHECK_EQ_INT (o.type, CHAN_MPK_ARRAY);
    CHECK_EQ_INT (o.v.n, 3);
    CHECK_EQ_INT (chan_mpk_remaining (&r), 3);
    for (int i = 1; i <= 3; i++) {
        CHECK_EQ_INT (chan_mpk_next (&r, &o), 0);
        CHECK_EQ_INT (o.v.u, i);
    }
    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL); // nothing left

    uint8_t m[] = { 0x81, 0xa1, 'k', 0xc0 };
    chan_mpk_reader_init (&r, m, sizeof m);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), 0);
    CHECK_EQ_INT (o.type, CHAN_MPK_MAP);
    CHECK_EQ_INT (o.v.n, 1);

    uint8_t e0[] = { 0x90 }, m0[] = { 0x80 };
    o = read_one (e0, 1);
    CHECK_EQ_INT (o.type, CHAN_MPK_ARRAY);
    CHECK_EQ_INT (o.v.n, 0);
    o = read_one (m0, 1);
    CHECK_EQ_INT (o.type, CHAN_MPK_MAP);
    CHECK_EQ_INT (o.v.n, 0);

    //  array16 / array32 / map16 / map32 with their elements
    uint32_t counts[] = { 0, 15, 16, 300, 65535, 65536, 70000 };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        uint32_t n = counts[i];
        for (int map = 0; map < 2; map++) {
            for (int wide = 0; wide < 2; wide++) {
                if (!wide && n > 65535)
                    continue;
                size_t items = map ? 2 * (size_t) n : n;
                uint8_t *buf = (uint8_t *) malloc (5 + items);
                if (!buf)
                    continue;
                buf[0] = map ? (wide ? 0xdf : 0xde) : (wide ? 0xdd : 0xdc);
                size_t hl = 1 + be_put (buf + 1, n, wide ? 4 : 2);
                memset (buf + hl, 0x01, items);
                chan_mpk_reader_init (&r, buf, hl + items);
                CHECK_EQ_INT (chan_mpk_next (&r, &o), 0);
                CHECK_EQ_INT (o.type, map ? CHAN_MPK_MAP : CHAN_MPK_ARRAY);
                CHECK_EQ_INT (o.v.n, n);
                CHECK_EQ_INT (chan_mpk_remaining (&r), items);
                CHECK (chan_mpk_valid (buf, hl + items, 2));
                //  one element fewer than announced: the header itself is
                //  refused (count larger than the bytes left)
                if (items > 0) {
                    chan_mpk_reader_init (&r, buf, hl + items - 1);
                    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
                    CHECK (r.p == buf);
                    CHECK (!chan_mpk_valid (buf, hl + items - 1, 2));
                }
                free (buf);
            }
        }
    }
}

static void
test_counts_vs_remaining (void)
{
    chan_mpk_reader_t r;
    chan_mpk_obj_t o;
    //  array32 announcing 2^32-1 elements in a 9-byte buffer
    uint8_t a32[] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4 };
    chan_mpk_reader_init (&r, a32, sizeof a32);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
    CHECK (r.p == a32);
    //  map32 with 2^31 pairs: pairs * 2 must not overflow into "fits"
    uint8_t m32[] = { 0xdf, 0x80, 0x00, 0x00, 0x00, 1, 1 };
    chan_mpk_reader_init (&r, m32, sizeof m32);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
    //  map16 with 3 pairs and 5 bytes left: 6 needed
    uint8_t m16[] = { 0xde, 0x00, 0x03, 1, 1, 1, 1, 1 };
    chan_mpk_reader_init (&r, m16, sizeof m16);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
    //  map with exactly 2 * n bytes left: the header is accepted
    uint8_t m2[] = { 0x82, 1, 1, 1, 1 };
    chan_mpk_reader_init (&r, m2, sizeof m2);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), 0);
    //  str32 length beyond the buffer
    uint8_t s32[] = { 0xdb, 0xff, 0xff, 0xff, 0xff, 'a' };
    chan_mpk_reader_init (&r, s32, sizeof s32);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
    CHECK (r.p == s32);
    //  ext32 length beyond the buffer
    uint8_t e32[] = { 0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01, 'a' };
    chan_mpk_reader_init (&r, e32, sizeof e32);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
    //  bin32 length 2^32-1
    uint8_t b32[] = { 0xc6, 0xff, 0xff, 0xff, 0xff };
    chan_mpk_reader_init (&r, b32, sizeof b32);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
}

//  Invalid input and truncation -----------------------------------------

static void
test_c1 (void)
{
    chan_mpk_reader_t r;
    chan_mpk_obj_t o;
    uint8_t c1 = 0xc1;
    chan_mpk_reader_init (&r, &c1, 1);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
    CHECK (r.p == &c1);
    CHECK_EQ_INT (chan_mpk_skip (&r, 8), AAAX_EINVAL);
    CHECK (r.p == &c1);
    CHECK (!chan_mpk_valid (&c1, 1, 8));
    //  nested inside containers: skip fails and consumes nothing
    uint8_t in_array[] = { 0x92, 0x01, 0xc1 };
    chan_mpk_reader_init (&r, in_array, sizeof in_array);
    CHECK_EQ_INT (chan_mpk_skip (&r, 8), AAAX_EINVAL);
    CHECK (r.p == in_array);
    uint8_t in_map_key[] = { 0x81, 0xc1, 0x01 };
    CHECK (!chan_mpk_valid (in_map_key, sizeof in_map_key, 8));
    uint8_t deep[] = { 0x91, 0x91, 0x81, 0xa1, 'x', 0xc1 };
    CHECK (!chan_mpk_valid (deep, sizeof deep, 8));
    //  empty input
    chan_mpk_reader_init (&r, NULL, 0);
    CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
    CHECK_EQ_INT (chan_mpk_skip (&r, 8), AAAX_EINVAL);
    CHECK (!chan_mpk_valid ("", 0, 8));
}

/*  Every prefix of a valid encoding (shorter than it) fails without
    consuming, for next (when the cut hits the item itself), skip and
    valid. */
static void
check_truncations (const uint8_t *enc, size_t len, bool scalar)
{
    CHECK (chan_mpk_valid (enc, len, AAAX_MAX_DEPTH));
    for (size_t cut = 0; cut < len; cut++) {
        chan_mpk_reader_t r;
        chan_mpk_obj_t o;
        if (scalar) {
            chan_mpk_reader_init (&r, enc, cut);
            CHECK_EQ_INT (chan_mpk_next (&r, &o), AAAX_EINVAL);
            CHECK (r.p == enc);
        }
        chan_mpk_reader_init (&r, enc, cut);
        CHECK_EQ_INT (chan_mpk_skip (&r, AAAX_MAX_DEPTH), AAAX_EINVAL);
        CHECK (r.p == enc);
        CHECK_EQ_INT (chan_mpk_remaining (&r), cut);
        CHECK (!chan_mpk_valid (enc, cut, AAAX_MAX_DEPTH));
    }
}

static void
test_truncation (void)
{
    chan_buf_t b;
    msgpack_packer pk;
    chan_buf_init (&b);
    chan_buf_packer (&b, &pk);

    //  Each scalar encoding on its own.
    uint8_t ext8[] = { 0xc7, 0x02, 0x05, 'a', 'b' };
    uint8_t fixext4[] = { 0xd6, 0x01, 1, 2, 3, 4 };
    uint8_t fixext16[18] = { 0xd8, 0x7f };
    uint8_t ext16[] = { 0xc8, 0x00, 0x01, 0x09, 'z' };
    uint8_t ext32[] = { 0xc9, 0x00, 0x00, 0x00, 0x02, 0x09, 'z', 'y' };
    uint8_t bin16[] = { 0xc5, 0x00, 0x02, 'x', 'y' };
    uint8_t bin32[] = { 0xc6, 0x00, 0x00, 0x00, 0x01, 'x' };
    uint8_t str16[] = { 0xda, 0x00, 0x03, 'a', 'b', 'c' };
    uint8_t str32[] = { 0xdb, 0x00, 0x00, 0x00, 0x01, 'a' };
    uint8_t i16[] = { 0xd1, 0xff, 0x00 };
    uint8_t i32[] = { 0xd2, 0x80, 0, 0, 0 };
    uint8_t i64[] = { 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0 };
    uint8_t u16[] = { 0xcd, 0x01, 0x00 };
    uint8_t u32[] = { 0xce, 0x01, 0, 0, 0 };
    uint8_t u64[] = { 0xcf, 0x01, 0, 0, 0, 0, 0, 0, 0 };
    uint8_t f32[] = { 0xca, 0x3f, 0xc0, 0, 0 };
    uint8_t f64[] = { 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0 };
    uint8_t str8[] = { 0xd9, 0x02, 'h', 'i' };
    uint8_t bin8[] = { 0xc4, 0x01, 0x00 };
    uint8_t u8[] = { 0xcc, 0xff };
    uint8_t i8[] = { 0xd0, 0x80 };
    uint8_t fixstr[] = { 0xa3, 'a', 'b', 'c' };
    uint8_t a16[] = { 0xdc, 0x00, 0x00 };
    uint8_t a32[] = { 0xdd, 0x00, 0x00, 0x00, 0x00 };
    uint8_t m16[] = { 0xde, 0x00, 0x00 };
    uint8_t m32[] = { 0xdf, 0x00, 0x00, 0x00, 0x00 };
    struct {
        const uint8_t *p;
        size_t n;
    } sc[] = {
        { ext8, sizeof ext8 },
        { fixext4, sizeof fixext4 },
        { fixext16, sizeof fixext16 },
        { ext16, sizeof ext16 },
        { ext32, sizeof ext32 },
        { bin16, sizeof bin16 },
        { bin32, sizeof bin32 },
        { str16, sizeof str16 },
        { str32, sizeof str32 },
        { i16, sizeof i16 },
        { i32, sizeof i32 },
        { i64, sizeof i64 },
        { u16, sizeof u16 },
        { u32, sizeof u32 },
        { u64, sizeof u64 },
        { f32, sizeof f32 },
        { f64, sizeof f64 },
        { str8, sizeof str8 },
        { bin8, sizeof bin8 },
        { u8, sizeof u8 },
        { i8, sizeof i8 },
        { fixstr, sizeof fixstr },
        { a16, sizeof a16 },
        { a32, sizeof a32 },
        { m16, sizeof m16 },
        { m32, sizeof m32 },
    };
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++)
        check_truncations (sc[i].p, sc[i].n, true);

    //  A composite value holding every type: any cut fails skip / valid.
    msgpack_pack_map (&pk, 3);
    chan_pack_cstr (&pk, "a");
    msgpack_pack_array (&pk, 20);
    msgpack_pack_nil (&pk);
    msgpack_pack_true (&pk);
    msgpack_pack_false (&pk);
    msgpack_pack_uint8 (&pk, 200);
    msgpack_pack_uint16 (&pk, 60000);
    msgpack_pack_uint32 (&pk, 4000000000u);
    msgpack_pack_uint64 (&pk, UINT64_MAX);
    msgpack_pack_int8 (&pk, -100);
    msgpack_pack_int16 (&pk, -30000);
    msgpack_pack_int32 (&pk, -2000000000);
    msgpack_pack_int64 (&pk, INT64_MIN);
    msgpack_pack_float (&pk, 2.5f);
    msgpack_pack_double (&pk, -2.5);
    chan_pack_cstr (&pk, "a string longer than thirty-one bytes, so str8");
    msgpack_pack_bin (&pk, 3);
    msgpack_pack_bin_body (&pk, "\x00\x01\x02", 3);
    msgpack_pack_ext (&pk, 4, 7);
    msgpack_pack_ext_body (&pk, "abcd", 4);
    msgpack_pack_ext (&pk, 5, -3);
    msgpack_pack_ext_body (&pk, "abcde", 5);
    msgpack_pack_array (&pk, 0);
    msgpack_pack_map (&pk, 0);
    msgpack_pack_array (&pk, 16);
    for (int i = 0; i < 16; i++)
        msgpack_pack_int (&pk, i);
    chan_pack_cstr (&pk, "b");
    msgpack_pack_map (&pk, 1);
    chan_pack_cstr (&pk, "c");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_array (&pk, 1);
    msgpack_pack_nil (&pk);
    chan_pack_cstr (&pk, "d");
    msgpack_pack_map (&pk, 16);
    for (int i = 0; i < 16; i++) {
        msgpack_pack_int (&pk, i);
        msgpack_pack_int (&pk, -i - 1);
    }
    CHECK (!b.oom);
    check_truncations (b.data, b.len, false);
    chan_buf_fini (&b);
}

//  Depth ------------------------------------------------------------------

/*  A value whose nesting level is exactly level: level - 1 containers
    around a scalar (alternating arrays and maps when mixed). */
static size_t
nested (uint8_t *out, int level, bool mixed)
{
    size_t n = 0;
    for (int i = 0; i < level - 1; i++) {
        if (mixed && i % 2) {
            out[n++] = 0x81; // {"k": ...}
            out[n++] = 0xa1;
            out[n++] = 'k';
        } else
            out[n++] = 0x91; // [...]
    }
    out[n++] = 0x2a;
    return n;
}

static void
test_depth (void)
{
    uint8_t buf[512];
    for (int mixed = 0; mixed < 2; mixed++) {
        for (int level = 1; level <= 64; level++) {
            size_t n = nested (buf, level, mixed);
            chan_mpk_reader_t r;
            //  depth N passes and consumes everything
            chan_mpk_reader_init (&r, buf, n);
            CHECK_EQ_INT (chan_mpk_skip (&r, level), 0);
            CHECK_EQ_INT (chan_mpk_remaining (&r), 0);
            CHECK (chan_mpk_valid (buf, n, level));
            CHECK (chan_mpk_valid (buf, n, level + 1));
            //  N - 1 fails and consumes nothing
            chan_mpk_reader_init (&r, buf, n);
            CHECK_EQ_INT (chan_mpk_skip (&r, level - 1), AAAX_EINVAL);
            CHECK (r.p == buf);
            CHECK (!chan_mpk_valid (buf, n, level - 1));
        }
    }
    //  The project limit: 32 levels pass, 33 do not.
    size_t n = nested (buf, AAAX_MAX_DEPTH, false);
    CHECK (chan_mpk_valid (buf, n, AAAX_MAX_DEPTH));
    n = nested (buf, AAAX_MAX_DEPTH + 1, false);
    CHECK (!chan_mpk_valid (buf, n, AAAX_MAX_DEPTH));
    //  Empty containers are leaves: [] is level 1, [[]] level 2.
    uint8_t e1[] = { 0x90 }, e2[] = { 0x91, 0x90 }, m2[] = { 0x81, 0x80, 0x80 };
    CHECK (chan_mpk_valid (e1, 1, 1));
    CHECK (!chan_mpk_valid (e2, 2, 1));
    CHECK (chan_mpk_valid (e2, 2, 2));
    CHECK (!chan_mpk_valid (m2, 3, 1));
    CHECK (chan_mpk_valid (m2, 3, 2));
    //  max_depth < 1 refuses everything, even a scalar
    uint8_t one = 0x01;
    CHECK (!chan_mpk_valid (&one, 1, 0));
    CHECK (!chan_mpk_valid (&one, 1, -5));
    CHECK (chan_mpk_valid (&one, 1, 1));
    //  Siblings do not add depth: [[1],[1],[1]] is level 3.
    uint8_t sib[] = { 0x93, 0x91, 1, 0x91, 1, 0x91, 1 };
    CHECK (chan_mpk_valid (sib, sizeof sib, 3));
    CHECK (!chan_mpk_valid (sib, sizeof sib, 2));
    //  A key that nests counts like a value: {[[1]]: 1} is level 4.
    uint8_t key[] = { 0x81, 0x91, 0x91, 0x01, 0x01 };
    CHECK (chan_mpk_valid (key, sizeof key, 4));
    CHECK (!chan_mpk_valid (key, sizeof key, 3));
    //  Skip stops after one value: what follows stays.
    uint8_t two[] = { 0x92, 1, 2, 0xc3 };
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, two, sizeof two);
    CHECK_EQ_INT (chan_mpk_skip (&r, 4), 0);
    CHECK_EQ_INT (chan_mpk_remaining (&r), 1);
    CHECK (!chan_mpk_valid (two, sizeof two, 4)); // trailing byte
    //  A wide and long value: 100000 elements at level 2.
    size_t wide = 100000;
    uint8_t *w = (uint8_t *) malloc (5 + wide);
    if (w) {
        w[0] = 0xdd;
        be_put (w + 1, wide, 4);
        memset (w + 5, 0x90, wide);
        CHECK (chan_mpk_valid (w, 5 + wide, 2));
        CHECK (!chan_mpk_valid (w, 5 + wide, 1));
        free (w);
    }
}

//  Random values cross-checked with msgpack-c --------------------------

static uint64_t s_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

static void
gen (msgpack_packer *pk, int depth)
{
    int kind = (int) (rnd () % (depth > 6 ? 9 : 11));
    switch (kind) {
    case 0: msgpack_pack_nil (pk); break;
    case 1:
        if (rnd () & 1)
            msgpack_pack_true (pk);
        else
            msgpack_pack_false (pk);
        break;
    case 2: msgpack_pack_uint64 (pk, rnd () >> (rnd () % 64)); break;
    case 3:
        msgpack_pack_int64 (pk, -(int64_t) (rnd () >> (1 + rnd () % 63)) - 1);
        break;
    case 4: msgpack_pack_double (pk, (double) (int64_t) rnd () / 7.0); break;
    case 5: msgpack_pack_float (pk, (float) (rnd () % 100000) / 3.0f); break;
    case 6: {
        size_t len = rnd () % 3 == 0 ? rnd () % 300 : rnd () % 20;
        char s[300];
        for (size_t i = 0; i < len; i++)
            s[i] = (char) ('a' + rnd () % 26);
        chan_pack_str (pk, s, len);
        break;
    }
    case 7: {
        size_t len = rnd () % 40;
        char s[40];
        for (size_t i = 0; i < len; i++)
            s[i] = (char) rnd ();
        msgpack_pack_bin (pk, len);
        msgpack_pack_bin_body (pk, s, len);
        break;
    }
    case 8: {
        static const size_t lens[] = { 1, 2, 4, 8, 16, 0, 3, 17, 300 };
        size_t len = lens[rnd () % 9];
        char s[300];
        memset (s, 'e', len);
        msgpack_pack_ext (pk, len, (int8_t) rnd ());
        msgpack_pack_ext_body (pk, s, len);
        break;
    }
    case 9: {
        size_t n = rnd () % 4 == 0 ? rnd () % 40 : rnd () % 5;
        msgpack_pack_array (pk, n);
        for (size_t i = 0; i < n; i++)
            gen (pk, depth + 1);
        break;
    }
    default: {
        size_t n = rnd () % 4 == 0 ? rnd () % 20 : rnd () % 4;
        msgpack_pack_map (pk, n);
        for (size_t i = 0; i < n; i++) {
            gen (pk, depth + 1);
            gen (pk, depth + 1);
        }
        break;
    }
    }
}

/*  Walks the reader and the msgpack-c object side by side. */
static int
same (chan_mpk_reader_t *r, const msgpack_object *mo, int *maxdepth, int depth)
{
    if (depth > *maxdepth)
        *maxdepth = depth;
    chan_mpk_obj_t o;
    if (chan_mpk_next (r, &o) != 0)
        return 0;
    switch (mo->type) {
    case MSGPACK_OBJECT_NIL: return o.type == CHAN_MPK_NIL;
    case MSGPACK_OBJECT_BOOLEAN:
        return o.type == CHAN_MPK_BOOL && o.v.b == mo->via.boolean;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return o.type == CHAN_MPK_UINT && o.v.u == mo->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return o.type == CHAN_MPK_INT && o.v.i == mo->via.i64;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return o.type == CHAN_MPK_FLOAT && o.v.f == mo->via.f64;
    case MSGPACK_OBJECT_STR:
        return o.type == CHAN_MPK_STR && o.len == mo->via.str.size
               && (o.len == 0 || memcmp (o.ptr, mo->via.str.ptr, o.len) == 0);
    case MSGPACK_OBJECT_BIN:
        return o.type == CHAN_MPK_BIN && o.len == mo->via.bin.size
               && (o.len == 0 || memcmp (o.ptr, mo->via.bin.ptr, o.len) == 0);
    case MSGPACK_OBJECT_EXT:
        return o.type == CHAN_MPK_EXT && o.len == mo->via.ext.size
               && o.ext_type == mo->via.ext.type
               && (o.len == 0 || memcmp (o.ptr, mo->via.ext.ptr, o.len) == 0);
    case MSGPACK_OBJECT_ARRAY:
        if (o.type != CHAN_MPK_ARRAY || o.v.n != mo->via.array.size)
            return 0;
        for (uint32_t i = 0; i < o.v.n; i++)
            if (!same (r, &mo->via.array.ptr[i], maxdepth, depth + 1))
                return 0;
        return 1;
    case MSGPACK_OBJECT_MAP:
        if (o.type != CHAN_MPK_MAP || o.v.n != mo->via.map.size)
            return 0;
        for (uint32_t i = 0; i < o.v.n; i++)
            if (!same (r, &mo->via.map.ptr[i].key, maxdepth, depth + 1)
                || !same (r, &mo->via.map.ptr[i].val, maxdepth, depth + 1))
                return 0;
        return 1;
    }
    return 0;
}

static void
test_random_values (void)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    for (int iter = 0; iter < 3000; iter++) {
        chan_buf_reset (&b);
        gen (&pk, 1);
        CHECK (!b.oom);
        msgpack_object mo;
        size_t off = 0;
        int urc =
            msgpack_unpack ((const char *) b.data, b.len, &off, &zone, &mo);
        CHECK_EQ_INT (urc, MSGPACK_UNPACK_SUCCESS);
        CHECK_EQ_INT (off, b.len);
        chan_mpk_reader_t r;
        chan_mpk_reader_init (&r, b.data, b.len);
        int depth = 0;
        CHECK (same (&r, &mo, &depth, 1));
        CHECK_EQ_INT (chan_mpk_remaining (&r), 0);
        CHECK (chan_mpk_valid (b.data, b.len, depth));
        CHECK (!chan_mpk_valid (b.data, b.len, depth - 1));
        msgpack_zone_clear (&zone);
    }
    msgpack_zone_destroy (&zone);
    chan_buf_fini (&b);
}

/*  Random bytes: whatever chan_mpk_valid accepts, msgpack-c decodes to the
    end; whatever msgpack-c decodes completely (shallow), chan_mpk_valid
    accepts. */
static void
test_random_bytes (void)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    int accepted = 0;
    for (int iter = 0; iter < 200000; iter++) {
        uint8_t buf[24];
        size_t len = 1 + rnd () % sizeof buf;
        for (size_t i = 0; i < len; i++) {
            uint64_t x = rnd ();
            //  bias towards small counts so that containers can complete
            buf[i] = (x & 3) == 0 ? (uint8_t) (0x90 + (x >> 8) % 3)
                                  : (uint8_t) (x >> 16);
            //  no 32-bit container counts: msgpack-c would allocate for
            //  them before finding the input short
            if (buf[i] == 0xdd || buf[i] == 0xdf)
                buf[i] = 0x92;
        }
        bool ok = chan_mpk_valid (buf, len, AAAX_MAX_DEPTH);
        msgpack_object mo;
        size_t off = 0;
        int urc = msgpack_unpack ((const char *) buf, len, &off, &zone, &mo);
        bool mok = urc == MSGPACK_UNPACK_SUCCESS && off == len;
        if (ok != mok) {
            fprintf (stderr, "disagreement (chan %d, msgpack-c %d) on:", ok,
                     mok);
            for (size_t i = 0; i < len; i++)
                fprintf (stderr, " %02x", buf[i]);
            fprintf (stderr, "\n");
        }
        CHECK (ok == mok);
        accepted += ok;
        msgpack_zone_clear (&zone);
    }
    CHECK (accepted > 1000);
    msgpack_zone_destroy (&zone);
}

//  Map header and chan_buf ----------------------------------------------

static void
test_map_header (void)
{
    struct {
        uint32_t n;
        size_t len;
    } v[] = { { 0, 1 },     { 1, 1 },          { 15, 1 },
              { 16, 3 },    { 255, 3 },        { 65535, 3 },
              { 65536, 5 }, { 0x12345678, 5 }, { UINT32_MAX, 5 } };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t out[5];
        size_t len = chan_mpk_map_header (v[i].n, out);
        CHECK_EQ_INT (len, v[i].len);
        //  the same bytes as msgpack-c's smallest map header
        chan_buf_t b;
        chan_buf_init (&b);
        msgpack_packer pk;
        chan_buf_packer (&b, &pk);
        msgpack_pack_map (&pk, v[i].n);
        CHECK_EQ_INT (b.len, len);
        CHECK (memcmp (b.data, out, len) == 0);
        chan_buf_fini (&b);
        //  and decodes back when the pairs are present (small n only)
        if (v[i].n <= 65536) {
            size_t body = 2 * (size_t) v[i].n;
            uint8_t *full = (uint8_t *) malloc (len + body);
            if (full) {
                memcpy (full, out, len);
                memset (full + len, 0x00, body);
                chan_mpk_reader_t r;
                chan_mpk_obj_t o;
                chan_mpk_reader_init (&r, full, len + body);
                CHECK_EQ_INT (chan_mpk_next (&r, &o), 0);
                CHECK_EQ_INT (o.type, CHAN_MPK_MAP);
                CHECK_EQ_INT (o.v.n, v[i].n);
                CHECK (chan_mpk_valid (full, len + body, 2));
                free (full);
            }
        }
    }
}

static void
test_buf (void)
{
    chan_buf_t b;
    chan_buf_init (&b);
    CHECK (b.data == NULL);
    CHECK_EQ_INT (b.len, 0);
    CHECK_EQ_INT (b.cap, 0);
    CHECK (!b.oom);
    chan_buf_append (&b, "x", 0); // nothing, no allocation
    CHECK_EQ_INT (b.len, 0);

    //  Growth: many appends of varying sizes keep every byte.
    uint8_t chunk[5000];
    size_t total = 0;
    uint8_t expect_at[64];
    size_t probe[64];
    int nprobe = 0;
    for (int i = 0; i < 200; i++) {
        size_t n = (size_t) (i * 37) % sizeof chunk + 1;
        for (size_t j = 0; j < n; j++)
            chunk[j] = (uint8_t) (i + j);
        size_t before = b.cap;
        chan_buf_append (&b, chunk, n);
        CHECK (!b.oom);
        CHECK (b.cap >= b.len);
        if (b.cap != before)
            CHECK (b.cap >= 2 * before || before == 0);
        if (nprobe < 64 && i % 3 == 0) {
            probe[nprobe] = total + n / 2;
            expect_at[nprobe] = (uint8_t) (i + n / 2);
            nprobe++;
        }
        total += n;
        CHECK_EQ_INT (b.len, total);
    }
    for (int i = 0; i < nprobe; i++)
        CHECK_EQ_INT (b.data[probe[i]], expect_at[i]);
    //  cap is a power of two multiple of the first 256
    CHECK (b.cap % 256 == 0);
    CHECK ((b.cap & (b.cap - 1)) == 0);

    //  reserve: no change when there is room
    size_t cap = b.cap;
    CHECK_EQ_INT (chan_buf_reserve (&b, b.cap - b.len), 0);
    CHECK_EQ_INT (b.cap, cap);
    CHECK_EQ_INT (chan_buf_reserve (&b, b.cap - b.len + 1), 0);
    CHECK (b.cap > cap);

    //  reset keeps the memory
    cap = b.cap;
    chan_buf_reset (&b);
    CHECK_EQ_INT (b.len, 0);
    CHECK_EQ_INT (b.cap, cap);

    //  an impossible reservation fails, sets oom, keeps the content
    chan_buf_append (&b, "abc", 3);
    CHECK_EQ_INT (chan_buf_reserve (&b, SIZE_MAX - 8), AAAX_ENOMEM);
    CHECK (b.oom);
    CHECK_EQ_INT (b.len, 3);
    CHECK (memcmp (b.data, "abc", 3) == 0);
    CHECK_EQ_INT (chan_buf_write_cb (&b, "d", 1), -1); // oom is sticky
    chan_buf_reset (&b);
    CHECK (!b.oom);
    CHECK_EQ_INT (chan_buf_write_cb (&b, "d", 1), 0);
    CHECK_EQ_INT (b.len, 1);

    //  packer helpers
    chan_buf_reset (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    chan_pack_cstr (&pk, "hey");
    chan_pack_str (&pk, "a\0b", 3);
    chan_pack_str_or_nil (&pk, NULL, 5);
    chan_pack_str_or_nil (&pk, "zz", 2);
    const uint8_t expect[] = { 0xa3, 'h', 'e',  'y',  0xa3, 'a',
                               0,    'b', 0xc0, 0xa2, 'z',  'z' };
    CHECK_EQ_INT (b.len, sizeof expect);
    CHECK (memcmp (b.data, expect, sizeof expect) == 0);

    chan_buf_fini (&b);
    CHECK (b.data == NULL);
    CHECK_EQ_INT (b.cap, 0);
    chan_buf_fini (&b); // twice is harmless
}

int
main (void)
{
    test_ints ();
    test_other_scalars ();
    test_blobs ();
    test_containers ();
    test_counts_vs_remaining ();
    test_c1 ();
    test_truncation ();
    test_depth ();
    test_random_values ();
    test_random_bytes ();
    test_map_header ();
    test_buf ();
    TEST_DONE ();
}
