/*  test_cli_json.c — unit tests of the CLI's JSON <-> msgpack bridge
    (cli/cli_json.c): each mapping of docs/CLI.md both ways, the depth
    limit at its edge, errors that leave the output untouched, and the
    shortest round-trip rendering of reals. */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "aaax.h"
#include "chan_mpk.h"
#include "cli_json.h"
#include "testutil.h"

/*  JSON text -> msgpack -> JSON text (compact); NULL when refused. */
static char *
round_trip (const char *json)
{
    chan_buf_t b;
    chan_buf_init (&b);
    char err[256];
    if (cli_json_to_msgpack (json, &b, err, sizeof err) != 0) {
        chan_buf_fini (&b);
        return NULL;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    char *text = NULL;
    if (msgpack_unpack_next (&u, (const char *) b.data, b.len, &off)
            == MSGPACK_UNPACK_SUCCESS
        && off == b.len)
        text = cli_msgpack_to_json (&u.data, CLI_JSON_COMPACT, err, sizeof err);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&b);
    return text;
}

/*  Renders raw msgpack bytes as compact JSON. */
static char *
render (const void *mp, size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    char *text = NULL;
    char err[256];
    if (msgpack_unpack_next (&u, (const char *) mp, len, &off)
        == MSGPACK_UNPACK_SUCCESS)
        text = cli_msgpack_to_json (&u.data, CLI_JSON_COMPACT, err, sizeof err);
    msgpack_unpacked_destroy (&u);
    return text;
}

static void
check_round_trip (const char *json, const char *want)
{
    char *got = round_trip (json);
    CHECK_EQ_STR (got, want);
    free (got);
}

static void
check_render (const void *mp, size_t len, const char *want)
{
    char *got = render (mp, len);
    CHECK_EQ_STR (got, want);
    free (got);
}

static void
check_refused (const char *json, const char *why)
{
    chan_buf_t b;
    chan_buf_init (&b);
    chan_buf_append (&b, "x", 1);
    char err[256] = "";
    int rc = cli_json_to_msgpack (json, &b, err, sizeof err);
    CHECK (rc == AAAX_EINVAL);
    CHECK (b.len == 1); /* untouched */
    CHECK (strstr (err, why) != NULL);
    if (!strstr (err, why))
        fprintf (stderr, "  error was: %s\n", err);
    chan_buf_fini (&b);
}

static void
test_json_to_msgpack_bytes (void)
{
    chan_buf_t b;
    chan_buf_init (&b);
    CHECK (cli_json_to_msgpack ("{\"a\": [1, -1, 1.5, true, false, null, "
                                "\"s\"]}",
                                &b, NULL, 0)
           == 0);
    const uint8_t want[] = { 0x81, 0xa1, 'a',  0x97, 0x01, 0xff, 0xcb,
                             0x3f, 0xf8, 0,    0,    0,    0,    0,
                             0,    0xc3, 0xc2, 0xc0, 0xa1, 's' };
    CHECK (b.len == sizeof want && memcmp (b.data, want, sizeof want) == 0);
    chan_buf_fini (&b);

    /*  An integer stays an integer (smallest encoding); a real is
        always float64, even 1.0. */
    chan_buf_init (&b);
    CHECK (cli_json_to_msgpack ("[9223372036854775807, 1.0]", &b, NULL, 0)
           == 0);
    const uint8_t want2[] = { 0x92, 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff,
                              0xff, 0xff, 0xff, 0xcb, 0x3f, 0xf0, 0,
                              0,    0,    0,    0,    0 };
    CHECK (b.len == sizeof want2 && memcmp (b.data, want2, sizeof want2) == 0);
    chan_buf_fini (&b);

    /*  NUL inside a string. */
    chan_buf_init (&b);
    CHECK (cli_json_to_msgpack ("\"a\\u0000b\"", &b, NULL, 0) == 0);
    CHECK (b.len == 4
           && memcmp (b.data,
                      "\xa3"
                      "a\0b",
                      4)
                  == 0);
    chan_buf_fini (&b);
}

static void
test_round_trips (void)
{
    check_round_trip ("{\"a\":{\"b\":[1,2,{\"c\":null}]}}",
                      "{\"a\":{\"b\":[1,2,{\"c\":null}]}}");
    check_round_trip ("\"h\\u00e9llo \\u2603 \\ud83d\\ude00\"",
                      "\"h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\"");
    check_round_trip ("[9223372036854775807,-9223372036854775808]",
                      "[9223372036854775807,-9223372036854775808]");
    check_round_trip ("[0.1, 2.5, 1e300, -0.0, 1.0]",
                      "[0.1,2.5,1e300,-0.0,1.0]");
    check_round_trip ("42", "42");
    check_round_trip ("\"text\"", "\"text\"");
    check_round_trip ("null", "null");
    check_round_trip ("{}", "{}");
    check_round_trip ("[]", "[]");
    check_round_trip ("{\"z\":1,\"a\":2}", "{\"z\":1,\"a\":2}"); /* order */
}

static void
test_refusals (void)
{
    check_refused ("{bad", "invalid JSON at line 1");
    check_refused ("", "invalid JSON");
    check_refused ("1 2", "invalid JSON");
    check_refused ("{\"a\": 1, \"a\": 2}", "duplicate");
    check_refused ("123456789012345678901234567890", "too big");

    /*  32 levels are taken, 33 are not. */
    char deep[80];
    memset (deep, '[', 32);
    memset (deep + 32, ']', 32);
    deep[64] = 0;
    char *text = round_trip (deep);
    CHECK (text != NULL);
    free (text);
    memset (deep, '[', 33);
    memset (deep + 33, ']', 33);
    deep[66] = 0;
    check_refused (deep, "deeper than 32");
    /*  Objects count as well. */
    char obj[400] = "";
    for (int i = 0; i < 33; i++)
        strcat (obj, "{\"k\":");
    strcat (obj, "1");
    for (int i = 0; i < 33; i++)
        strcat (obj, "}");
    check_refused (obj, "deeper than 32");
}

static void
test_msgpack_only_types (void)
{
    /*  bin -> {"$bin": base64} */
    check_render ("\xc4\x03\x00\x01\xff", 5, "{\"$bin\":\"AAH/\"}");
    check_render ("\xc4\x00", 2, "{\"$bin\":\"\"}");
    /*  ext -> {"$ext": type, "data": base64} */
    check_render ("\xd4\x05\x41", 3, "{\"$ext\":5,\"data\":\"QQ==\"}");
    check_render ("\xd6\xff\x00\x00\x00\x01", 6,
                  "{\"$ext\":-1,\"data\":\"AAAAAQ==\"}");
    /*  uint64 beyond INT64_MAX -> a real */
    check_render ("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9,
                  "1.8446744073709552e19");
    /*  float32 -> the double it is */
    check_render ("\xca\x3f\x00\x00\x00", 5, "0.5");
    /*  non-finite reals */
    check_render ("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9,
                  "{\"$float\":\"NaN\"}");
    check_render ("\xcb\xff\xf0\x00\x00\x00\x00\x00\x00", 9,
                  "{\"$float\":\"-Infinity\"}");
    /*  non-string keys: their JSON text */
    check_render (
        "\x84\x01\xa1x\xc0\xa1y\x92\x01\x02\xa1z\xc3\xa1t", 16,
        "{\"1\":\"x\",\"null\":\"y\",\"[1,2]\":\"z\",\"true\":\"t\"}");
    /*  a repeated key: the later value */
    check_render ("\x82\xa1k\x01\xa1k\x02", 7, "{\"k\":2}");
    /*  invalid UTF-8: U+FFFD per bad byte; overlong and surrogates too */
    check_render ("\xa4"
                  "a\xff"
                  "b\xc3",
                  5,
                  "\"a\xef\xbf\xbd"
                  "b\xef\xbf\xbd\"");
    check_render ("\xa2\xc0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    check_render ("\xa3\xed\xa0\x80", 4,
                  "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    /*  NUL in a string */
    check_render ("\xa3"
                  "a\0b",
                  4, "\"a\\u0000b\"");
}

static void
test_shortest_reals (void)
{
    /*  Each real with the fewest digits that read back; one precision per
        text (the largest needed). */
    check_render ("\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a", 9, "0.1");
    double third = 1.0 / 3.0;
    uint64_t bits;
    memcpy (&bits, &third, 8);
    uint8_t mp[9] = { 0xcb };
    for (int i = 0; i < 8; i++)
        mp[1 + i] = (uint8_t) (bits >> (56 - 8 * i));
    char *t = render (mp, sizeof mp);
    CHECK (t && strtod (t, NULL) == third);
    free (t);
}

static void
test_pretty_and_depth_of_objects (void)
{
    msgpack_object leaf, arr[34];
    leaf.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    leaf.via.u64 = 7;
    /*  A hand-made chain of 33 arrays: deeper than msgpack-c unpacks, so
        the renderer's own bound must refuse it. */
    arr[0].type = MSGPACK_OBJECT_ARRAY;
    arr[0].via.array.size = 1;
    arr[0].via.array.ptr = &leaf;
    for (int i = 1; i < 34; i++) {
        arr[i].type = MSGPACK_OBJECT_ARRAY;
        arr[i].via.array.size = 1;
        arr[i].via.array.ptr = &arr[i - 1];
    }
    char err[128] = "";
    char *t = cli_msgpack_to_json (&arr[31], CLI_JSON_COMPACT, err, sizeof err);
    CHECK (t != NULL); /* 32 levels */
    free (t);
    t = cli_msgpack_to_json (&arr[32], CLI_JSON_COMPACT, err, sizeof err);
    CHECK (t == NULL);
    CHECK (strstr (err, "deeper than 32") != NULL);

    t = cli_msgpack_to_json (&arr[1], CLI_JSON_PRETTY, NULL, 0);
    CHECK_EQ_STR (t, "[\n  [\n    7\n  ]\n]");
    free (t);
}

int
main (void)
{
    test_json_to_msgpack_bytes ();
    test_round_trips ();
    test_refusals ();
    test_msgpack_only_types ();
    test_shortest_reals ();
    test_pretty_and_depth_of_objects ();
    TEST_DONE ();
}
