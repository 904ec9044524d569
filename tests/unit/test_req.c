/*  test_req.c — unit tests of the request decoder (channels/chan_req.c):
    every command, required fields, duplicate keys, wrong types, unknown keys,
    bounds, string arrays, peek_req and the exactness of the data span. */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "aaax.h"
#include "chan_id.h"
#include "chan_mpk.h"
#include "chan_req.h"
#include "testutil.h"

/*  A string literal and its length (without the NUL). */
#define L(s) s, sizeof (s) - 1

//  A tiny body builder over msgpack-c ----------------------------------

typedef struct {
    chan_buf_t b;
    msgpack_packer pk;
} body_t;

static void
body_begin (body_t *bd, uint32_t pairs)
{
    chan_buf_init (&bd->b);
    chan_buf_packer (&bd->b, &bd->pk);
    msgpack_pack_map (&bd->pk, pairs);
}

static void
body_end (body_t *bd)
{
    chan_buf_fini (&bd->b);
}

static void
k (body_t *bd, const char *key)
{
    chan_pack_cstr (&bd->pk, key);
}

static void
kv_u (body_t *bd, const char *key, uint64_t v)
{
    k (bd, key);
    msgpack_pack_uint64 (&bd->pk, v);
}

static void
kv_i (body_t *bd, const char *key, int64_t v)
{
    k (bd, key);
    msgpack_pack_int64 (&bd->pk, v);
}

static void
kv_s (body_t *bd, const char *key, const char *v)
{
    k (bd, key);
    chan_pack_cstr (&bd->pk, v);
}

static void
kv_sn (body_t *bd, const char *key, const char *v, size_t len)
{
    k (bd, key);
    chan_pack_str (&bd->pk, v, len);
}

static void
kv_nil (body_t *bd, const char *key)
{
    k (bd, key);
    msgpack_pack_nil (&bd->pk);
}

static void
kv_b (body_t *bd, const char *key, bool v)
{
    k (bd, key);
    if (v)
        msgpack_pack_true (&bd->pk);
    else
        msgpack_pack_false (&bd->pk);
}

/*  key: [s0, s1, ...] (NULL-terminated list) */
static void
kv_strs (body_t *bd, const char *key, ...)
{
    const char *v[64];
    size_t n = 0;
    va_list ap;
    va_start (ap, key);
    const char *s;
    while ((s = va_arg (ap, const char *)) && n < 64)
        v[n++] = s;
    va_end (ap);
    k (bd, key);
    msgpack_pack_array (&bd->pk, n);
    for (size_t i = 0; i < n; i++)
        chan_pack_cstr (&bd->pk, v[i]);
}

static char s_why[256];
static chan_req_t s_req;

static int
decode (const char *cmd, body_t *bd)
{
    s_why[0] = 0;
    return chan_req_decode (&s_req, cmd, strlen (cmd), bd->b.data, bd->b.len,
                            s_why, sizeof s_why);
}

/*  Decodes and expects failure with why containing needle. */
#define CHECK_FAIL(cmd, bd, needle)                                           \
    do {                                                                      \
        CHECK_EQ_INT (decode ((cmd), (bd)), AAAX_EINVAL);                     \
        if (!strstr (s_why, (needle))) {                                      \
            fprintf (stderr, "  why \"%s\" lacks \"%s\"\n", s_why, (needle)); \
            CHECK (strstr (s_why, (needle)) != NULL);                         \
        }                                                                     \
    } while (0)

#define CHECK_OK(cmd, bd)                                          \
    do {                                                           \
        int rc_ = decode ((cmd), (bd));                            \
        if (rc_ != 0)                                              \
            fprintf (stderr, "  unexpected failure: %s\n", s_why); \
        CHECK_EQ_INT (rc_, 0);                                     \
    } while (0)

static bool
span_is (chan_span_t sp, const char *s)
{
    return sp.ptr && sp.len == strlen (s) && memcmp (sp.ptr, s, sp.len) == 0;
}

static char *
repeat (char c, size_t n)
{
    char *s = (char *) malloc (n + 1);
    if (!s)
        abort ();
    memset (s, c, n);
    s[n] = 0;
    return s;
}

//  Commands ---------------------------------------------------------------

static void
test_command_words (void)
{
    const char *names[] = { "HELLO", "WRITE", "SUB",  "UNSUB", "CLAIM", "ACK",
                            "NACK",  "SEND",  "PING", "BYE",   "STAT",  "CTL" };
    chan_cmd_t cmds[] = { CHAN_CMD_HELLO, CHAN_CMD_WRITE, CHAN_CMD_SUB,
                          CHAN_CMD_UNSUB, CHAN_CMD_CLAIM, CHAN_CMD_ACK,
                          CHAN_CMD_NACK,  CHAN_CMD_SEND,  CHAN_CMD_PING,
                          CHAN_CMD_BYE,   CHAN_CMD_STAT,  CHAN_CMD_CTL };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        CHECK_EQ_INT (chan_req_command (names[i], strlen (names[i])), cmds[i]);
        CHECK_EQ_STR (chan_req_command_name (cmds[i]), names[i]);
    }
    CHECK_EQ_INT (CHAN_CMD_COUNT, 13);
    CHECK_EQ_INT (chan_req_command ("hello", 5), CHAN_CMD_UNKNOWN);
    CHECK_EQ_INT (chan_req_command ("HELL", 4), CHAN_CMD_UNKNOWN);
    CHECK_EQ_INT (chan_req_command ("HELLOX", 6), CHAN_CMD_UNKNOWN);
    CHECK_EQ_INT (chan_req_command ("HELLO\0", 6), CHAN_CMD_UNKNOWN);
    CHECK_EQ_INT (chan_req_command ("", 0), CHAN_CMD_UNKNOWN);
    CHECK_EQ_INT (chan_req_command ("?", 1), CHAN_CMD_UNKNOWN);
    CHECK_EQ_STR (chan_req_command_name (CHAN_CMD_UNKNOWN), "?");
    CHECK_EQ_STR (chan_req_command_name (CHAN_CMD_COUNT), "?");
}

static void
test_every_command (void)
{
    body_t bd;
    char id1[CHAN_ID_LEN + 1] = { 0 }, id2[CHAN_ID_LEN + 1] = { 0 };
    chan_id_format (1700000000000ULL, 41, id1);
    chan_id_format (1700000000001ULL, 42, id2);

    body_begin (&bd, 6);
    kv_u (&bd, "req", 1);
    kv_s (&bd, "system", "worker-1");
    kv_u (&bd, "version", 1);
    kv_s (&bd, "token", "abcdef");
    kv_strs (&bd, "channels", "jobs", "events", NULL);
    kv_b (&bd, "privileged", true);
    CHECK_OK ("HELLO", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_HELLO);
    CHECK (s_req.has_req);
    CHECK_EQ_INT (s_req.req, 1);
    CHECK (span_is (s_req.system, "worker-1"));
    CHECK_EQ_INT (s_req.version, 1);
    CHECK (span_is (s_req.token, "abcdef"));
    CHECK_EQ_INT (s_req.nchannels, 2);
    CHECK (s_req.privileged);
    CHECK_EQ_INT (s_req.fields, CHAN_F_REQ | CHAN_F_SYSTEM | CHAN_F_VERSION
                                    | CHAN_F_TOKEN | CHAN_F_CHANNELS
                                    | CHAN_F_PRIVILEGED);
    CHECK_EQ_INT (s_req.max, 1); // default
    body_end (&bd);

    body_begin (&bd, 6);
    kv_u (&bd, "req", 2);
    kv_s (&bd, "chan", "jobs");
    k (&bd, "data");
    msgpack_pack_map (&bd.pk, 1);
    kv_u (&bd, "n", 5);
    kv_s (&bd, "to", "someone");
    kv_s (&bd, "corr", id1);
    kv_s (&bd, "key", "k-1");
    CHECK_OK ("WRITE", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_WRITE);
    CHECK (span_is (s_req.chan, "jobs"));
    CHECK (span_is (s_req.to, "someone"));
    CHECK (span_is (s_req.corr, id1));
    CHECK (span_is (s_req.key, "k-1"));
    CHECK_EQ_INT (s_req.data.len, 4);
    CHECK (s_req.data.ptr && memcmp (s_req.data.ptr, "\x81\xa1n\x05", 4) == 0);
    body_end (&bd);

    body_begin (&bd, 5);
    kv_u (&bd, "req", 3);
    kv_s (&bd, "to", "peer");
    kv_u (&bd, "data", 7);
    kv_s (&bd, "corr", "c");
    kv_s (&bd, "key", "k");
    CHECK_OK ("SEND", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_SEND);
    CHECK (span_is (s_req.to, "peer"));
    CHECK_EQ_INT (s_req.data.len, 1);
    body_end (&bd);

    body_begin (&bd, 3);
    kv_u (&bd, "req", 4);
    kv_s (&bd, "chan", "events");
    kv_s (&bd, "since", id1);
    CHECK_OK ("SUB", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_SUB);
    CHECK_EQ_INT (s_req.since_seq, 41);
    body_end (&bd);

    body_begin (&bd, 2);
    kv_u (&bd, "req", 5);
    kv_s (&bd, "chan", "events");
    CHECK_OK ("UNSUB", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_UNSUB);
    body_end (&bd);

    body_begin (&bd, 5);
    kv_u (&bd, "req", 6);
    kv_s (&bd, "chan", "jobs");
    kv_u (&bd, "max", 10);
    kv_u (&bd, "wait_ms", 1000);
    kv_u (&bd, "lease_ms", 5000);
    CHECK_OK ("CLAIM", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_CLAIM);
    CHECK_EQ_INT (s_req.max, 10);
    CHECK_EQ_INT (s_req.wait_ms, 1000);
    CHECK_EQ_INT (s_req.lease_ms, 5000);
    body_end (&bd);

    body_begin (&bd, 3);
    kv_u (&bd, "req", 7);
    kv_s (&bd, "chan", "jobs");
    kv_strs (&bd, "ids", id1, id2, NULL);
    CHECK_OK ("ACK", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_ACK);
    CHECK_EQ_INT (s_req.nids, 2);
    body_end (&bd);

    body_begin (&bd, 4);
    kv_u (&bd, "req", 8);
    kv_s (&bd, "chan", "jobs");
    kv_strs (&bd, "ids", id1, NULL);
    kv_u (&bd, "delay_ms", 250);
    CHECK_OK ("NACK", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_NACK);
    CHECK_EQ_INT (s_req.delay_ms, 250);
    body_end (&bd);

    body_begin (&bd, 1);
    kv_u (&bd, "req", 9);
    CHECK_OK ("PING", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_PING);
    CHECK_EQ_INT (s_req.fields, CHAN_F_REQ);
    body_end (&bd);

    body_begin (&bd, 2);
    kv_u (&bd, "req", 10);
    kv_b (&bd, "keep_leases", true);
    CHECK_OK ("BYE", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_BYE);
    CHECK (s_req.keep_leases);
    body_end (&bd);

    body_begin (&bd, 1);
    kv_u (&bd, "req", 11);
    CHECK_OK ("STAT", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_STAT);
    body_end (&bd);

    body_begin (&bd, 3);
    kv_u (&bd, "req", 12);
    kv_s (&bd, "op", "pause");
    kv_s (&bd, "system", "worker-1");
    CHECK_OK ("CTL", &bd);
    CHECK_EQ_INT (s_req.cmd, CHAN_CMD_CTL);
    CHECK (span_is (s_req.op, "pause"));
    body_end (&bd);

    //  req 0 and the largest req are fine
    body_begin (&bd, 1);
    kv_u (&bd, "req", 0);
    CHECK_OK ("PING", &bd);
    CHECK (s_req.has_req);
    CHECK_EQ_INT (s_req.req, 0);
    body_end (&bd);
    body_begin (&bd, 1);
    kv_u (&bd, "req", UINT64_MAX);
    CHECK_OK ("PING", &bd);
    CHECK (s_req.req == UINT64_MAX);
    body_end (&bd);
}

//  Required and missing -------------------------------------------------

typedef struct {
    const char *cmd;
    const char *fields[3];
} s_required_t;

static void
pack_field (body_t *bd, const char *f)
{
    if (!strcmp (f, "version"))
        kv_u (bd, f, 1);
    else if (!strcmp (f, "data"))
        kv_u (bd, f, 1);
    else if (!strcmp (f, "ids"))
        kv_strs (bd, f, "x", NULL);
    else
        kv_s (bd, f, "x");
}

static void
test_required (void)
{
    s_required_t rq[] = {
        { "HELLO", { "system", "version", NULL } },
        { "WRITE", { "chan", "data", NULL } },
        { "SUB", { "chan", NULL } },
        { "UNSUB", { "chan", NULL } },
        { "CLAIM", { "chan", NULL } },
        { "ACK", { "chan", "ids", NULL } },
        { "NACK", { "chan", "ids", NULL } },
        { "SEND", { "to", "data", NULL } },
        { "CTL", { "op", NULL } },
        { "PING", { NULL } },
        { "BYE", { NULL } },
        { "STAT", { NULL } },
    };
    for (size_t i = 0; i < sizeof rq / sizeof rq[0]; i++) {
        size_t n = 0;
        while (n < 3 && rq[i].fields[n])
            n++;
        //  all present: fine
        body_t bd;
        body_begin (&bd, (uint32_t) n + 1);
        kv_u (&bd, "req", 77);
        for (size_t j = 0; j < n; j++)
            pack_field (&bd, rq[i].fields[j]);
        CHECK_OK (rq[i].cmd, &bd);
        body_end (&bd);
        //  each one missing: "CMD needs "field"", req echoed
        for (size_t miss = 0; miss < n; miss++) {
            body_begin (&bd, (uint32_t) n);
            kv_u (&bd, "req", 77);
            for (size_t j = 0; j < n; j++)
                if (j != miss)
                    pack_field (&bd, rq[i].fields[j]);
            char needle[64];
            snprintf (needle, sizeof needle, "%s needs \"%s\"", rq[i].cmd,
                      rq[i].fields[miss]);
            CHECK_FAIL (rq[i].cmd, &bd, needle);
            CHECK (s_req.has_req);
            CHECK_EQ_INT (s_req.req, 77);
            body_end (&bd);
        }
        //  req missing
        body_begin (&bd, (uint32_t) n);
        for (size_t j = 0; j < n; j++)
            pack_field (&bd, rq[i].fields[j]);
        CHECK_FAIL (rq[i].cmd, &bd, "missing \"req\"");
        CHECK (!s_req.has_req);
        body_end (&bd);
    }
    //  nil for a required string-or-nil field is as absent
    body_t bd;
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_nil (&bd, "to");
    kv_u (&bd, "data", 1);
    CHECK_FAIL ("SEND", &bd, "SEND needs \"to\"");
    body_end (&bd);
}

//  Shape, duplicates and types ------------------------------------------

static void
test_shape (void)
{
    char why[128];
    chan_req_t req;
    //  not a map / empty / truncated / trailing bytes
    const struct {
        const char *bytes;
        size_t len;
        const char *needle;
    } bad[] = {
        { L (""), "one msgpack map" },
        { L ("\x91\x01"), "one msgpack map" },
        { L ("\x01"), "one msgpack map" },
        { L ("\xc1"), "one msgpack map" },
        { L ("\x81\xa3req"), "\"req\" is not valid msgpack" },
        { L ("\x81\xa3req\x01\x00"), "trailing bytes" },
        { L ("\x82\xa3req\x01\xa1x"), "not valid msgpack or nests too deep" },
        { L ("\x81\x01\x01"), "keys must be strings" },
        { L ("\x81\xa3req\xc1"), "\"req\" is not valid msgpack" },
        { L ("\x81\xa3req\xcd\x01"), "\"req\" is not valid msgpack" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = 0;
        int rc = chan_req_decode (&req, "PING", 4, bad[i].bytes, bad[i].len,
                                  why, sizeof why);
        CHECK_EQ_INT (rc, AAAX_EINVAL);
        if (!strstr (why, bad[i].needle))
            fprintf (stderr, "  case %zu: why \"%s\"\n", i, why);
        CHECK (strstr (why, bad[i].needle) != NULL);
    }
    //  an empty map is a body, but PING still needs req
    CHECK_EQ_INT (
        chan_req_decode (&req, "PING", 4, L ("\x80"), why, sizeof why),
        AAAX_EINVAL);
    CHECK (strstr (why, "missing \"req\"") != NULL);
    //  map16 and map32 bodies are accepted
    CHECK_EQ_INT (chan_req_decode (&req, "PING", 4,
                                   L ("\xde\x00\x01\xa3req\x05"), why,
                                   sizeof why),
                  0);
    CHECK_EQ_INT (req.req, 5);
    CHECK_EQ_INT (chan_req_decode (&req, "PING", 4,
                                   L ("\xdf\x00\x00\x00\x01\xa3req\x05"), why,
                                   sizeof why),
                  0);
    //  a str8-encoded key is still a key
    CHECK_EQ_INT (chan_req_decode (&req, "PING", 4, "\x81\xd9\x03req\x06", 7,
                                   why, sizeof why),
                  0);
    CHECK_EQ_INT (req.req, 6);
    //  unknown command: body decoded first (req echoed), word sanitised
    CHECK_EQ_INT (chan_req_decode (&req, "FROB\x01", 5, "\x81\xa3req\x09", 6,
                                   why, sizeof why),
                  AAAX_EINVAL);
    CHECK (strstr (why, "unknown command \"FROB?\"") != NULL);
    CHECK (req.has_req);
    CHECK_EQ_INT (req.req, 9);
    CHECK_EQ_INT (req.cmd, CHAN_CMD_UNKNOWN);
    const char *longword = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    CHECK_EQ_INT (chan_req_decode (&req, longword, 26, "\x81\xa3req\x09", 6,
                                   why, sizeof why),
                  AAAX_EINVAL);
    CHECK (strstr (why, "\"ABCDEFGHIJKLMNOPQRST...\"") != NULL);
    //  a tiny why buffer truncates safely
    char tiny[8];
    memset (tiny, 'x', sizeof tiny);
    CHECK_EQ_INT (
        chan_req_decode (&req, "PING", 4, L ("\x80"), tiny, sizeof tiny),
        AAAX_EINVAL);
    CHECK (memchr (tiny, 0, sizeof tiny) != NULL);
}

static void
test_duplicates (void)
{
    const char *keys[] = { "req", "system",     "chan", "data", "ids",
                           "max", "privileged", "to",   "since" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        body_t bd;
        bool isreq = !strcmp (keys[i], "req");
        body_begin (&bd, isreq ? 2 : 3);
        kv_u (&bd, "req", 1);
        for (int t = 0; t < (isreq ? 1 : 2); t++) {
            if (!strcmp (keys[i], "ids"))
                kv_strs (&bd, "ids", "a", NULL);
            else if (!strcmp (keys[i], "max") || !strcmp (keys[i], "data"))
                kv_u (&bd, keys[i], 3);
            else if (!strcmp (keys[i], "privileged"))
                kv_b (&bd, keys[i], false);
            else if (!strcmp (keys[i], "since"))
                kv_s (&bd, keys[i], "");
            else
                kv_s (&bd, keys[i], "x");
        }
        char needle[64];
        snprintf (needle, sizeof needle, "duplicate key \"%s\"", keys[i]);
        CHECK_FAIL ("PING", &bd, needle);
        body_end (&bd);
    }
    //  A known key given twice is an error even when the first was nil
    //  (PROTOCOL.md section 2).
    body_t bd;
    body_begin (&bd, 4);
    kv_u (&bd, "req", 1);
    kv_u (&bd, "data", 1);
    kv_nil (&bd, "to");
    kv_s (&bd, "to", "x");
    CHECK_FAIL ("SEND", &bd, "duplicate key \"to\"");
    body_end (&bd);
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_nil (&bd, "key");
    kv_nil (&bd, "key");
    CHECK_FAIL ("PING", &bd, "duplicate key \"key\"");
    body_end (&bd);
    //  Unknown keys may repeat: they are ignored.
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_u (&bd, "zzz", 1);
    kv_u (&bd, "zzz", 2);
    CHECK_OK ("PING", &bd);
    body_end (&bd);
}

static void
test_types (void)
{
    body_t bd;
    //  req must be an unsigned integer
    body_begin (&bd, 1);
    kv_s (&bd, "req", "1");
    CHECK_FAIL ("PING", &bd, "\"req\" must be an unsigned integer, not str");
    CHECK (!s_req.has_req);
    body_end (&bd);
    body_begin (&bd, 1);
    kv_i (&bd, "req", -1);
    CHECK_FAIL ("PING", &bd, "not negative int");
    body_end (&bd);
    body_begin (&bd, 1);
    k (&bd, "req");
    msgpack_pack_double (&bd.pk, 1.0);
    CHECK_FAIL ("PING", &bd, "not float");
    body_end (&bd);
    //  a negative int8 0 is a uint: int8 encodings of non-negative values
    body_begin (&bd, 1);
    k (&bd, "req");
    chan_buf_append (&bd.b, "\xd0\x05", 2);
    CHECK_OK ("PING", &bd);
    CHECK_EQ_INT (s_req.req, 5);
    body_end (&bd);

    struct {
        const char *cmd;
        const char *key;
        int how; // 0 int, 1 str, 2 array of int, 3 map, 4 bool, 5 nil
        const char *needle;
    } tc[] = {
        { "HELLO", "system", 0, "\"system\" must be a string" },
        { "HELLO", "system", 5, "HELLO needs \"system\"" }, // nil: absent
        { "HELLO", "version", 1, "\"version\" must be an unsigned integer" },
        { "HELLO", "token", 4, "\"token\" must be a string" },
        { "HELLO", "channels", 1, "\"channels\" must be an array of strings" },
        { "HELLO", "channels", 2, "\"channels\" must be an array of strings" },
        { "HELLO", "privileged", 0, "\"privileged\" must be a boolean" },
        { "HELLO", "privileged", 1, "\"privileged\" must be a boolean" },
        { "WRITE", "chan", 3, "\"chan\" must be a string" },
        { "WRITE", "to", 0, "\"to\" must be a string" },
        { "WRITE", "corr", 4, "\"corr\" must be a string" },
        { "WRITE", "key", 2, "\"key\" must be a string" },
        { "SUB", "since", 0, "\"since\" must be a string" },
        { "CLAIM", "max", 1, "\"max\" must be an unsigned integer" },
        { "CLAIM", "wait_ms", 4, "\"wait_ms\" must be an unsigned integer" },
        { "CLAIM", "lease_ms", 4, "\"lease_ms\" must be an unsigned integer" },
        { "ACK", "ids", 3, "\"ids\" must be an array of strings" },
        { "ACK", "ids", 2, "\"ids\" must be an array of strings" },
        { "NACK", "delay_ms", 1, "\"delay_ms\" must be an unsigned integer" },
        { "BYE", "keep_leases", 1, "\"keep_leases\" must be a boolean" },
        { "CTL", "op", 0, "\"op\" must be a string" },
    };
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++) {
        body_begin (&bd, 2);
        kv_u (&bd, "req", 3);
        k (&bd, tc[i].key);
        switch (tc[i].how) {
        case 0: msgpack_pack_int (&bd.pk, 42); break;
        case 1: chan_pack_cstr (&bd.pk, "s"); break;
        case 2:
            msgpack_pack_array (&bd.pk, 2);
            chan_pack_cstr (&bd.pk, "ok");
            msgpack_pack_int (&bd.pk, 1);
            break;
        case 3:
            msgpack_pack_map (&bd.pk, 1);
            kv_u (&bd, "a", 1);
            break;
        case 4: msgpack_pack_true (&bd.pk); break;
        default: msgpack_pack_nil (&bd.pk); break;
        }
        CHECK_FAIL (tc[i].cmd, &bd, tc[i].needle);
        CHECK (s_req.has_req);
        CHECK_EQ_INT (s_req.req, 3);
        body_end (&bd);
    }
    //  nil booleans are false; nil optional strings are absent
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_nil (&bd, "keep_leases");
    kv_nil (&bd, "corr");
    CHECK_OK ("BYE", &bd);
    CHECK (!s_req.keep_leases);
    CHECK (s_req.corr.ptr == NULL);
    CHECK (!(s_req.fields & CHAN_F_CORR));
    body_end (&bd);
    //  nil is as absent for every optional field
    body_begin (&bd, 8);
    kv_u (&bd, "req", 1);
    kv_s (&bd, "chan", "c");
    kv_nil (&bd, "max");
    kv_nil (&bd, "wait_ms");
    kv_nil (&bd, "lease_ms");
    kv_nil (&bd, "token");
    kv_nil (&bd, "channels");
    kv_nil (&bd, "op");
    CHECK_OK ("CLAIM", &bd);
    CHECK_EQ_INT (s_req.max, 1);
    CHECK (!(s_req.fields
             & (CHAN_F_MAX | CHAN_F_WAIT_MS | CHAN_F_LEASE_MS | CHAN_F_TOKEN
                | CHAN_F_CHANNELS | CHAN_F_OP)));
    body_end (&bd);
    //  data may be nil, or any type at all
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_s (&bd, "chan", "c");
    kv_nil (&bd, "data");
    CHECK_OK ("WRITE", &bd);
    CHECK_EQ_INT (s_req.data.len, 1);
    CHECK (s_req.data.ptr && (uint8_t) s_req.data.ptr[0] == 0xc0);
    body_end (&bd);
}

//  Unknown keys ------------------------------------------------------------

static void
pack_nested (body_t *bd, int level)
{
    for (int i = 0; i < level - 1; i++)
        msgpack_pack_array (&bd->pk, 1);
    msgpack_pack_int (&bd->pk, 1);
}

static void
test_unknown_keys (void)
{
    body_t bd;
    body_begin (&bd, 5);
    k (&bd, "zeta");
    msgpack_pack_map (&bd.pk, 2);
    kv_strs (&bd, "a", "b", "c", NULL);
    k (&bd, "n");
    msgpack_pack_bin (&bd.pk, 3);
    msgpack_pack_bin_body (&bd.pk, "xyz", 3);
    kv_u (&bd, "req", 4);
    kv_s (&bd, "REQ", "case matters");
    kv_s (&bd, "", "empty key");
    k (&bd, "ext");
    msgpack_pack_ext (&bd.pk, 2, 9);
    msgpack_pack_ext_body (&bd.pk, "hi", 2);
    CHECK_OK ("PING", &bd);
    CHECK_EQ_INT (s_req.req, 4);
    CHECK_EQ_INT (s_req.fields, CHAN_F_REQ);
    body_end (&bd);

    //  an unknown key's value must still be valid msgpack
    body_begin (&bd, 2);
    kv_u (&bd, "req", 4);
    k (&bd, "junk");
    msgpack_pack_array (&bd.pk, 2);
    msgpack_pack_int (&bd.pk, 1);
    chan_buf_append (&bd.b, "\xc1", 1);
    CHECK_FAIL ("PING", &bd, "not valid msgpack or nests too deep");
    body_end (&bd);

    //  and nest at most 31 levels (the body map is the 32nd)
    body_begin (&bd, 2);
    kv_u (&bd, "req", 4);
    k (&bd, "deep");
    pack_nested (&bd, AAAX_MAX_DEPTH - 1);
    CHECK_OK ("PING", &bd);
    body_end (&bd);
    body_begin (&bd, 2);
    kv_u (&bd, "req", 4);
    k (&bd, "deep");
    pack_nested (&bd, AAAX_MAX_DEPTH);
    CHECK_FAIL ("PING", &bd, "nests too deep");
    body_end (&bd);
    //  data: at most AAAX_MAX_DATA_DEPTH non-empty containers, so that the
    //  replies that carry it stay within 32 levels
    body_begin (&bd, 3);
    kv_u (&bd, "req", 4);
    kv_s (&bd, "chan", "c");
    k (&bd, "data");
    pack_nested (&bd, AAAX_MAX_DATA_DEPTH + 1);
    CHECK_OK ("WRITE", &bd);
    body_end (&bd);
    body_begin (&bd, 3);
    kv_u (&bd, "req", 4);
    kv_s (&bd, "chan", "c");
    k (&bd, "data");
    pack_nested (&bd, AAAX_MAX_DATA_DEPTH + 2);
    CHECK_FAIL ("WRITE", &bd,
                "\"data\" is not valid msgpack or nests too deep");
    body_end (&bd);
}

//  Bounds ------------------------------------------------------------------

static int
decode_one_uint (const char *cmd, const char *key, uint64_t v)
{
    body_t bd;
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_s (&bd, "chan", "c");
    kv_u (&bd, key, v);
    int rc = decode (cmd, &bd);
    body_end (&bd);
    return rc;
}

static int
decode_one_str (const char *cmd, const char *key, const char *v, size_t len)
{
    body_t bd;
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_s (&bd, strcmp (key, "chan") ? "chan" : "to", "c");
    kv_sn (&bd, key, v, len);
    int rc = decode (cmd, &bd);
    body_end (&bd);
    return rc;
}

static void
test_bounds (void)
{
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "max", 0), AAAX_EINVAL);
    CHECK (strstr (s_why, "\"max\" must be 1..10000") != NULL);
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "max", 1), 0);
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "max", AAAX_MAX_CLAIM), 0);
    CHECK_EQ_INT (s_req.max, AAAX_MAX_CLAIM);
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "max", AAAX_MAX_CLAIM + 1),
                  AAAX_EINVAL);
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "max", UINT64_MAX), AAAX_EINVAL);

    CHECK_EQ_INT (decode_one_uint ("CLAIM", "wait_ms", 0), 0);
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "wait_ms", 600000), 0);
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "wait_ms", 600001), AAAX_EINVAL);
    CHECK (strstr (s_why, "\"wait_ms\" must be at most 600000") != NULL);

    CHECK_EQ_INT (decode_one_uint ("CLAIM", "lease_ms", 0), AAAX_EINVAL);
    CHECK (strstr (s_why, "\"lease_ms\" must be 1..86400000") != NULL);
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "lease_ms", 1), 0);
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "lease_ms", 86400000), 0);
    CHECK_EQ_INT (decode_one_uint ("CLAIM", "lease_ms", 86400001), AAAX_EINVAL);

    body_t bd;
    body_begin (&bd, 4);
    kv_u (&bd, "req", 1);
    kv_s (&bd, "chan", "c");
    kv_strs (&bd, "ids", "x", NULL);
    kv_u (&bd, "delay_ms", 86400000);
    CHECK_OK ("NACK", &bd);
    body_end (&bd);
    body_begin (&bd, 4);
    kv_u (&bd, "req", 1);
    kv_s (&bd, "chan", "c");
    kv_strs (&bd, "ids", "x", NULL);
    kv_u (&bd, "delay_ms", 86400001);
    CHECK_FAIL ("NACK", &bd, "\"delay_ms\" must be at most 86400000");
    body_end (&bd);

    //  version must be 1
    for (uint64_t v = 0; v < 4; v++) {
        body_begin (&bd, 3);
        kv_u (&bd, "req", 1);
        kv_s (&bd, "system", "s");
        kv_u (&bd, "version", v);
        if (v == 1)
            CHECK_OK ("HELLO", &bd);
        else
            CHECK_FAIL ("HELLO", &bd, "unsupported protocol version");
        body_end (&bd);
    }

    //  since: "" or an id
    char id[CHAN_ID_LEN + 1] = { 0 };
    chan_id_format (123456, 789, id);
    CHECK_EQ_INT (decode_one_str ("SUB", "since", "", 0), 0);
    CHECK (s_req.since.ptr != NULL);
    CHECK_EQ_INT (s_req.since_seq, 0);
    CHECK_EQ_INT (decode_one_str ("SUB", "since", id, CHAN_ID_LEN), 0);
    CHECK_EQ_INT (s_req.since_seq, 789);
    CHECK_EQ_INT (decode_one_str ("SUB", "since", "abc", 3), AAAX_EINVAL);
    CHECK (strstr (s_why, "\"since\" must be a message id") != NULL);
    CHECK_EQ_INT (decode_one_str ("SUB", "since", id, CHAN_ID_LEN - 1),
                  AAAX_EINVAL);
    char id27[CHAN_ID_LEN + 2];
    memcpy (id27, id, CHAN_ID_LEN);
    id27[CHAN_ID_LEN] = '0';
    CHECK_EQ_INT (decode_one_str ("SUB", "since", id27, CHAN_ID_LEN + 1),
                  AAAX_EINVAL);
    CHECK_EQ_INT (
        decode_one_str ("SUB", "since", "00000000000000000000000000", 26),
        AAAX_EINVAL); // seq 0
    char *s65 = repeat ('0', 65);
    CHECK_EQ_INT (decode_one_str ("SUB", "since", s65, 65), AAAX_EINVAL);
    CHECK (strstr (s_why, "\"since\" is too long") != NULL);
    free (s65);

    //  key: no NUL, at most 256 bytes
    CHECK_EQ_INT (decode_one_str ("PING", "key", "a\0b", 3), AAAX_EINVAL);
    CHECK (strstr (s_why, "\"key\" must be 1..256 bytes without NUL") != NULL);
    CHECK_EQ_INT (decode_one_str ("PING", "key", "\0", 1), AAAX_EINVAL);
    //  key is 1..256 bytes (PROTOCOL.md, WRITE and SEND): an empty key is a
    //  value out of range, not a key
    CHECK_EQ_INT (decode_one_str ("PING", "key", "", 0), AAAX_EINVAL);
    CHECK_EQ_INT (decode_one_str ("PING", "key", "k", 1), 0);

    struct {
        const char *key;
        size_t max;
    } lim[] = { { "system", AAAX_MAX_NAME },
                { "token", 256 },
                { "chan", AAAX_MAX_NAME + 1 },
                { "to", AAAX_MAX_NAME },
                { "corr", AAAX_MAX_KEY },
                { "key", AAAX_MAX_KEY },
                { "op", 32 } };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        char *s = repeat ('k', lim[i].max + 1);
        CHECK_EQ_INT (decode_one_str ("PING", lim[i].key, s, lim[i].max), 0);
        CHECK_EQ_INT (decode_one_str ("PING", lim[i].key, s, lim[i].max + 1),
                      AAAX_EINVAL);
        char needle[64];
        snprintf (needle, sizeof needle, "\"%s\" is too long", lim[i].key);
        CHECK (strstr (s_why, needle) != NULL);
        free (s);
    }
}

//  String arrays --------------------------------------------------------

static void
pack_strs (body_t *bd, const char *key, size_t n, size_t each)
{
    k (bd, key);
    msgpack_pack_array (&bd->pk, n);
    char buf[300];
    for (size_t i = 0; i < n; i++) {
        size_t len = each ? each : (i % 40);
        for (size_t j = 0; j < len; j++)
            buf[j] = (char) ('a' + (i + j) % 26);
        chan_pack_str (&bd->pk, buf, len);
    }
}

/*  CTL grant's fields: cap, chan, rights (an array), expires. */
static void
test_ctl_grant (void)
{
    body_t bd;
    body_begin (&bd, 7);
    kv_u (&bd, "req", 3);
    kv_s (&bd, "op", "grant");
    kv_s (&bd, "system", "bob");
    kv_s (&bd, "cap", "C1");
    kv_s (&bd, "chan", "orders");
    kv_strs (&bd, "rights", "read", "write", NULL);
    kv_u (&bd, "expires", 1700000000);
    CHECK_OK ("CTL", &bd);
    CHECK (s_req.fields & CHAN_F_CAP);
    CHECK_EQ_INT (s_req.cap.len, 2);
    CHECK (memcmp (s_req.cap.ptr, "C1", 2) == 0);
    CHECK_EQ_INT (s_req.nrights, 2);
    CHECK_EQ_INT (s_req.expires, 1700000000);
    size_t pos = 0;
    chan_span_t sp;
    CHECK (chan_req_next_str (s_req.rights, &pos, &sp));
    CHECK (sp.len == 4 && memcmp (sp.ptr, "read", 4) == 0);
    CHECK (chan_req_next_str (s_req.rights, &pos, &sp));
    CHECK (sp.len == 5 && memcmp (sp.ptr, "write", 5) == 0);
    CHECK (!chan_req_next_str (s_req.rights, &pos, &sp));
    body_end (&bd);

    //  rights must be strings, expires an unsigned integer
    body_begin (&bd, 3);
    kv_u (&bd, "req", 3);
    kv_s (&bd, "op", "grant");
    kv_s (&bd, "rights", "read");
    CHECK_FAIL ("CTL", &bd, "\"rights\" must be an array of strings");
    body_end (&bd);
    body_begin (&bd, 3);
    kv_u (&bd, "req", 3);
    kv_s (&bd, "op", "grant");
    kv_i (&bd, "expires", -1);
    CHECK_FAIL ("CTL", &bd,
                "\"expires\" must be an unsigned integer, not negative int");
    body_end (&bd);
}

static void
test_arrays (void)
{
    body_t bd;
    //  iteration returns each string, exactly, then false
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_strs (&bd, "channels", "jobs", "", "events", "x.y-z_1", NULL);
    kv_s (&bd, "zzz", "after");
    CHECK_OK ("PING", &bd);
    CHECK_EQ_INT (s_req.nchannels, 4);
    const char *expect[] = { "jobs", "", "events", "x.y-z_1" };
    size_t pos = 0;
    chan_span_t s;
    for (int i = 0; i < 4; i++) {
        CHECK (chan_req_next_str (s_req.channels, &pos, &s));
        CHECK_EQ_INT (s.len, strlen (expect[i]));
        CHECK (memcmp (s.ptr, expect[i], s.len) == 0);
    }
    CHECK (!chan_req_next_str (s_req.channels, &pos, &s));
    CHECK_EQ_INT (pos, s_req.channels.len);
    CHECK (!chan_req_next_str (s_req.channels, &pos, &s)); // stays at end
    body_end (&bd);

    //  an empty array: nothing to iterate
    body_begin (&bd, 4);
    kv_u (&bd, "req", 1);
    kv_s (&bd, "chan", "c");
    k (&bd, "ids");
    msgpack_pack_array (&bd.pk, 0);
    kv_nil (&bd, "other");
    CHECK_OK ("ACK", &bd);
    CHECK_EQ_INT (s_req.nids, 0);
    CHECK (s_req.fields & CHAN_F_IDS);
    pos = 0;
    CHECK (!chan_req_next_str (s_req.ids, &pos, &s));
    body_end (&bd);

    //  limits: 1024 channels, 10000 ids, entries of 129 bytes
    body_begin (&bd, 2);
    kv_u (&bd, "req", 1);
    pack_strs (&bd, "channels", AAAX_MAX_HELLO_CHANNELS, 0);
    CHECK_OK ("PING", &bd);
    size_t count = 0;
    pos = 0;
    while (chan_req_next_str (s_req.channels, &pos, &s)) {
        CHECK_EQ_INT (s.len, count % 40);
        count++;
    }
    CHECK_EQ_INT (count, AAAX_MAX_HELLO_CHANNELS);
    body_end (&bd);
    body_begin (&bd, 2);
    kv_u (&bd, "req", 1);
    pack_strs (&bd, "channels", AAAX_MAX_HELLO_CHANNELS + 1, 0);
    CHECK_FAIL ("PING", &bd, "\"channels\" has too many entries");
    body_end (&bd);
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_s (&bd, "chan", "c");
    pack_strs (&bd, "ids", AAAX_MAX_IDS, CHAN_ID_LEN);
    CHECK_OK ("ACK", &bd);
    CHECK_EQ_INT (s_req.nids, AAAX_MAX_IDS);
    count = 0;
    pos = 0;
    while (chan_req_next_str (s_req.ids, &pos, &s)) {
        CHECK_EQ_INT (s.len, CHAN_ID_LEN);
        count++;
    }
    CHECK_EQ_INT (count, AAAX_MAX_IDS);
    body_end (&bd);
    body_begin (&bd, 3);
    kv_u (&bd, "req", 1);
    kv_s (&bd, "chan", "c");
    pack_strs (&bd, "ids", AAAX_MAX_IDS + 1, 1);
    CHECK_FAIL ("ACK", &bd, "\"ids\" has too many entries");
    body_end (&bd);
    body_begin (&bd, 2);
    kv_u (&bd, "req", 1);
    pack_strs (&bd, "ids", 2, AAAX_MAX_NAME + 1);
    CHECK_OK ("PING", &bd);
    body_end (&bd);
    body_begin (&bd, 2);
    kv_u (&bd, "req", 1);
    pack_strs (&bd, "ids", 2, AAAX_MAX_NAME + 2);
    CHECK_FAIL ("PING", &bd, "an entry of \"ids\" is too long");
    body_end (&bd);
    //  an array announcing more strings than there are
    CHECK_EQ_INT (chan_req_decode (&s_req, "PING", 4,
                                   "\x82\xa3req\x01\xa3ids\x93\xa1x", 13, s_why,
                                   sizeof s_why),
                  AAAX_EINVAL);
    //  next_str on a hand-made span with a non-string stops
    chan_span_t bad = { "\xa1x\x01", 3 };
    pos = 0;
    CHECK (chan_req_next_str (bad, &pos, &s));
    CHECK (!chan_req_next_str (bad, &pos, &s));
    CHECK_EQ_INT (pos, 2);
}

//  peek_req ------------------------------------------------------------------

static void
test_peek (void)
{
    uint64_t out = 0;
    body_t bd;
    body_begin (&bd, 4);
    kv_s (&bd, "chan", "c");
    k (&bd, "data");
    msgpack_pack_map (&bd.pk, 1);
    kv_u (&bd, "req", 99); // nested: not this one
    kv_strs (&bd, "ids", "a", "b", NULL);
    kv_u (&bd, "req", 17);
    CHECK (chan_req_peek_req (bd.b.data, bd.b.len, &out));
    CHECK_EQ_INT (out, 17);
    body_end (&bd);

    body_begin (&bd, 2);
    kv_s (&bd, "chan", "c");
    k (&bd, "data");
    msgpack_pack_map (&bd.pk, 1);
    kv_u (&bd, "req", 99);
    out = 5;
    CHECK (!chan_req_peek_req (bd.b.data, bd.b.len, &out));
    CHECK_EQ_INT (out, 5); // untouched
    body_end (&bd);

    //  req after invalid msgpack, req not a uint, not a map, empty
    CHECK (!chan_req_peek_req (L ("\x82\xa1x\xc1\xa3req\x01"), &out));
    CHECK (!chan_req_peek_req (L ("\x81\xa3req\xff"), &out));
    CHECK (!chan_req_peek_req (L ("\x81\xa3req\xa1x"), &out));
    CHECK (!chan_req_peek_req (L ("\x91\x01"), &out));
    CHECK (!chan_req_peek_req (L (""), &out));
    CHECK (!chan_req_peek_req (L ("\x80"), &out));
    CHECK (!chan_req_peek_req (L ("\x81\x01\x01"), &out));
    //  a body that is truncated after req is still peeked (for a 413)
    CHECK (chan_req_peek_req (L ("\x83\xa3req\x07\xa4"), &out));
    CHECK_EQ_INT (out, 7);
    body_begin (&bd, 3);
    kv_u (&bd, "req", 300);
    kv_s (&bd, "data", "something long enough to be cut off here");
    kv_u (&bd, "zz", 1);
    CHECK (chan_req_peek_req (bd.b.data, bd.b.len - 10, &out));
    CHECK_EQ_INT (out, 300);
    body_end (&bd);
    //  a req beyond the nesting limit of the keys before it is not found
    body_begin (&bd, 2);
    k (&bd, "deep");
    pack_nested (&bd, AAAX_MAX_DEPTH);
    kv_u (&bd, "req", 4);
    CHECK (!chan_req_peek_req (bd.b.data, bd.b.len, &out));
    body_end (&bd);
}

//  The data span ------------------------------------------------------------

static void
test_data_span (void)
{
    for (int variant = 0; variant < 10; variant++) {
        //  the value, packed on its own
        chan_buf_t v;
        chan_buf_init (&v);
        msgpack_packer vp;
        chan_buf_packer (&v, &vp);
        switch (variant) {
        case 0: msgpack_pack_nil (&vp); break;
        case 1: msgpack_pack_int64 (&vp, -123456789012LL); break;
        case 2: msgpack_pack_double (&vp, 3.25); break;
        case 3: chan_pack_cstr (&vp, "hello, world"); break;
        case 4:
            msgpack_pack_bin (&vp, 5);
            msgpack_pack_bin_body (&vp, "\x00\x01\x02\x03\x04", 5);
            break;
        case 5:
            msgpack_pack_ext (&vp, 16, -1);
            msgpack_pack_ext_body (&vp, "0123456789abcdef", 16);
            break;
        case 6: {
            msgpack_pack_map (&vp, 3);
            chan_pack_cstr (&vp, "task");
            chan_pack_cstr (&vp, "resize");
            chan_pack_cstr (&vp, "files");
            msgpack_pack_array (&vp, 2);
            chan_pack_cstr (&vp, "a.png");
            chan_pack_cstr (&vp, "b.png");
            msgpack_pack_int (&vp, 1);
            msgpack_pack_map (&vp, 0);
            break;
        }
        case 7: {
            msgpack_pack_array (&vp, 1000);
            for (int i = 0; i < 1000; i++)
                msgpack_pack_int (&vp, i * 1000);
            break;
        }
        case 8: {
            char big[70000];
            memset (big, 'q', sizeof big);
            chan_pack_str (&vp, big, sizeof big);
            break;
        }
        default: msgpack_pack_true (&vp); break;
        }
        //  the same value inside a body, between other keys
        body_t bd;
        body_begin (&bd, 4);
        kv_u (&bd, "req", 1);
        k (&bd, "data");
        chan_buf_append (&bd.b, v.data, v.len);
        kv_s (&bd, "chan", "c");
        kv_s (&bd, "corr", "after");
        CHECK_OK ("WRITE", &bd);
        CHECK_EQ_INT (s_req.data.len, v.len);
        CHECK (s_req.data.ptr >= (const char *) bd.b.data
               && s_req.data.ptr + s_req.data.len
                      <= (const char *) bd.b.data + bd.b.len);
        CHECK (memcmp (s_req.data.ptr, v.data, v.len) == 0);
        CHECK (chan_mpk_valid (s_req.data.ptr, s_req.data.len, AAAX_MAX_DEPTH));
        CHECK (span_is (s_req.corr, "after"));
        body_end (&bd);
        chan_buf_fini (&v);
    }
}

int
main (void)
{
    test_command_words ();
    test_every_command ();
    test_required ();
    test_shape ();
    test_duplicates ();
    test_types ();
    test_unknown_keys ();
    test_bounds ();
    test_arrays ();
    test_ctl_grant ();
    test_peek ();
    test_data_span ();
    TEST_DONE ();
}
