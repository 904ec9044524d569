/*  test_cli_kernel.c — unit tests of cli/cli_kernel.c: the request helper
    against a fake kernel (a ROUTER actor over inproc) that answers with
    stale, forged and real answers, refuses, stays silent or undocks; and
    the pure helpers (classifying pushes, lists, bins as hex, audit records
    and capability files as the CLI prints and reads them). */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>
#include <msgpack.h>

#include "aaax.h"
#include "chan_client.h"
#include "chan_mpk.h"
#include "cli_json.h"
#include "cli_kernel.h"
#include "testutil.h"

#define FAKE_EP "inproc://fake-kernel"

/*  ---- a fake kernel ---------------------------------------------------- */

typedef struct {
    int pings;
    int acks;
    char acked[8][32]; /* the ids acknowledged, in order */
} fake_stats_t;

static void
s_send (zsock_t *router, zframe_t *rid, const char *cmd, chan_buf_t *body)
{
    zmsg_t *m = zmsg_new ();
    zmsg_append (m, &(zframe_t *){ zframe_dup (rid) });
    zmsg_addstr (m, cmd);
    zmsg_addmem (m, body->data, body->len);
    zmsg_send (&m, router);
}

/*  A reply {req, then n more pairs packed by the caller into pk}. */
static void
s_begin (chan_buf_t *b, msgpack_packer *pk, uint64_t req, uint32_t more)
{
    chan_buf_init (b);
    chan_buf_packer (b, pk);
    msgpack_pack_map (pk, 1 + more);
    chan_pack_cstr (pk, "req");
    msgpack_pack_uint64 (pk, req);
}

/*  MSG {sub: "@me", msg: {id, from, corr, data: {n: n}}}. */
static void
s_push (zsock_t *router, zframe_t *rid, const char *id, const char *from,
        const char *corr, int n)
{
    chan_buf_t b;
    msgpack_packer pk;
    chan_buf_init (&b);
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 2);
    chan_pack_cstr (&pk, "sub");
    chan_pack_cstr (&pk, "@me");
    chan_pack_cstr (&pk, "msg");
    msgpack_pack_map (&pk, 5);
    chan_pack_cstr (&pk, "id");
    chan_pack_cstr (&pk, id);
    chan_pack_cstr (&pk, "from");
    chan_pack_cstr (&pk, from);
    chan_pack_cstr (&pk, "chan");
    chan_pack_cstr (&pk, "@me");
    chan_pack_cstr (&pk, "corr");
    chan_pack_cstr (&pk, corr);
    chan_pack_cstr (&pk, "data");
    msgpack_pack_map (&pk, 1);
    chan_pack_cstr (&pk, "n");
    msgpack_pack_int (&pk, n);
    s_send (router, rid, "MSG", &b);
    chan_buf_fini (&b);
}

static void
s_fake_kernel (zsock_t *pipe, void *args)
{
    fake_stats_t *st = (fake_stats_t *) args;
    zsock_t *router = zsock_new_router (FAKE_EP);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    zsock_signal (pipe, 0);
    zframe_t *later_rid = NULL; /* the delayed answer's destination */
    int64_t later_at = 0;
    char later_corr[32] = "";
    while (true) {
        int wait = later_rid ? 10 : -1;
        void *which = zpoller_wait (poller, wait);
        if (which == pipe) {
            char *cmd = zstr_recv (pipe);
            bool term = !cmd || streq (cmd, "$TERM");
            zstr_free (&cmd);
            if (term)
                break;
            continue;
        }
        if (later_rid && zclock_mono () >= later_at) {
            s_push (router, later_rid, "M3", "kernel.gate", later_corr, 3);
            zframe_destroy (&later_rid);
        }
        if (which != router)
            continue;
        zmsg_t *m = zmsg_recv (router);
        zframe_t *rid = zmsg_pop (m);
        char *cmd = zmsg_popstr (m);
        zframe_t *body = zmsg_pop (m);
        msgpack_unpacked u;
        msgpack_unpacked_init (&u);
        size_t off = 0;
        msgpack_unpack_next (&u, (const char *) zframe_data (body),
                             zframe_size (body), &off);
        uint64_t req = 0;
        chan_obj_get_uint (&u.data, "req", &req);
        chan_buf_t b;
        msgpack_packer pk;
        if (streq (cmd, "HELLO")) {
            s_begin (&b, &pk, req, 1);
            chan_pack_cstr (&pk, "heartbeat_ms");
            msgpack_pack_uint32 (&pk, 100);
            s_send (router, rid, "OK", &b);
        } else if (streq (cmd, "PING")) {
            st->pings++;
            s_begin (&b, &pk, req, 0);
            s_send (router, rid, "PONG", &b);
        } else if (streq (cmd, "ACK")) {
            const msgpack_object *ids = chan_obj_get (&u.data, "ids");
            if (ids && ids->type == MSGPACK_OBJECT_ARRAY
                && ids->via.array.size == 1 && st->acks < 8) {
                const msgpack_object *id = &ids->via.array.ptr[0];
                snprintf (st->acked[st->acks], 32, "%.*s",
                          (int) id->via.str.size, id->via.str.ptr);
            }
            st->acks++;
            s_begin (&b, &pk, req, 1);
            chan_pack_cstr (&pk, "acked");
            msgpack_pack_uint32 (&pk, 1);
            s_send (router, rid, "OK", &b);
        } else if (streq (cmd, "WRITE")) {
            const char *chan;
            size_t len;
            chan_obj_get_str (&u.data, "chan", &chan, &len);
            if (len == 9 && memcmp (chan, "q.refused", 9) == 0) {
                s_begin (&b, &pk, req, 2);
                chan_pack_cstr (&pk, "code");
                msgpack_pack_uint32 (&pk, 403);
                chan_pack_cstr (&pk, "reason");
                chan_pack_cstr (&pk, "no write grant");
                s_send (router, rid, "ERROR", &b);
            } else {
                s_begin (&b, &pk, req, 1);
                chan_pack_cstr (&pk, "id");
                chan_pack_cstr (&pk, "REQ1");
                s_send (router, rid, "OK", &b);
                if (len == 8 && memcmp (chan, "q.answer", 8) == 0) {
                    /*  A stale answer of an earlier run, a forged one,
                        then (after a few heartbeats) the real one. */
                    s_push (router, rid, "M1", "kernel.gate", "OLD", 1);
                    s_push (router, rid, "M2", "mallory", "REQ1", 2);
                    later_rid = zframe_dup (rid);
                    later_at = zclock_mono () + 250;
                    snprintf (later_corr, sizeof later_corr, "REQ1");
                } else if (len == 8 && memcmp (chan, "q.undock", 8) == 0) {
                    chan_buf_fini (&b);
                    s_begin (&b, &pk, 0, 2);
                    chan_pack_cstr (&pk, "code");
                    msgpack_pack_uint32 (&pk, 401);
                    chan_pack_cstr (&pk, "reason");
                    chan_pack_cstr (&pk, "killed");
                    s_send (router, rid, "ERROR", &b);
                }
                /*  q.silent: no answer at all. */
            }
        } else {
            s_begin (&b, &pk, req, 0);
            s_send (router, rid, "OK", &b);
        }
        chan_buf_fini (&b);
        msgpack_unpacked_destroy (&u);
        zframe_destroy (&body);
        zstr_free (&cmd);
        zframe_destroy (&rid);
        zmsg_destroy (&m);
    }
    zframe_destroy (&later_rid);
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

static chan_client_t *
s_docked (void)
{
    chan_client_t *c = chan_client_new (FAKE_EP, 2000);
    CHECK (c != NULL);
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    CHECK_EQ_INT (chan_client_hello (c, "me", NULL, false, NULL, 0, &r), 0);
    chan_reply_fini (&r);
    return c;
}

static void
test_request (void)
{
    fake_stats_t st;
    memset (&st, 0, sizeof st);
    zactor_t *fake = zactor_new (s_fake_kernel, &st);
    chan_client_t *c = s_docked ();
    cli_kernel_t k;
    cli_kernel_init (&k, c, "me");
    CHECK_EQ_STR (k.mailbox, "@me");
    const uint8_t req[] = { 0x80 }; /* {} */
    cli_kernel_reply_t reply;

    /*  The real answer, past a stale and a forged one. */
    CHECK_EQ_INT (
        cli_kernel_request (&k, "q.answer", req, sizeof req, 3000, &reply), 0);
    CHECK_EQ_STR (reply.id, "REQ1");
    uint64_t n = 0;
    CHECK (reply.data && chan_obj_get_uint (reply.data, "n", &n));
    CHECK_EQ_INT (n, 3);
    CHECK_EQ_INT (k.skipped, 1);
    cli_kernel_reply_fini (&reply);
    cli_kernel_reply_fini (&reply); /* twice is fine */
    /*  The ACKs are in: M1 (stale) and M3 (the answer), not M2 (forged). */
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    CHECK_EQ_INT (chan_client_call (c, "PING", NULL, &r), 0);
    chan_reply_fini (&r);
    CHECK_EQ_INT (st.acks, 2);
    CHECK_EQ_STR (st.acked[0], "M1");
    CHECK_EQ_STR (st.acked[1], "M3");
    /*  It kept the session alive while waiting (heartbeat 100 ms). */
    CHECK (st.pings >= 2);

    /*  Refused WRITE. */
    CHECK_EQ_INT (
        cli_kernel_request (&k, "q.refused", req, sizeof req, 1000, &reply),
        AAAX_EPERM);
    CHECK_EQ_INT (k.code, 403);
    CHECK (strstr (k.err, "ERROR 403: no write grant") != NULL);
    CHECK (reply.data == NULL);

    /*  No answer. */
    CHECK_EQ_INT (
        cli_kernel_request (&k, "q.silent", req, sizeof req, 300, &reply),
        AAAX_ETIMEDOUT);
    CHECK (!k.stopped);
    CHECK (strstr (k.err, "no answer from q.silent within 300 ms") != NULL);

    /*  Stopped by the flag. */
    volatile sig_atomic_t flag = 1;
    k.stop = &flag;
    CHECK_EQ_INT (
        cli_kernel_request (&k, "q.silent", req, sizeof req, 5000, &reply),
        AAAX_ETIMEDOUT);
    CHECK (k.stopped);
    k.stop = NULL;

    /*  Undocked while waiting. */
    CHECK_EQ_INT (
        cli_kernel_request (&k, "q.undock", req, sizeof req, 3000, &reply),
        AAAX_EAUTH);
    CHECK (strstr (k.err, "ERROR 401: killed") != NULL);

    chan_client_destroy (&c);
    zactor_destroy (&fake);
}

/*  ---- pure helpers ---------------------------------------------------- */

/*  Parses JSON into u (which must be destroyed). */
static const msgpack_object *
s_obj (const char *json, chan_buf_t *buf, msgpack_unpacked *u)
{
    chan_buf_init (buf);
    msgpack_unpacked_init (u);
    char err[200];
    if (cli_json_to_msgpack (json, buf, err, sizeof err) != 0)
        return NULL;
    size_t off = 0;
    if (msgpack_unpack_next (u, (const char *) buf->data, buf->len, &off)
        != MSGPACK_UNPACK_SUCCESS)
        return NULL;
    return &u->data;
}

static int
s_classify (const char *json, const char *corr)
{
    chan_buf_t buf;
    msgpack_unpacked u;
    const msgpack_object *o = s_obj (json, &buf, &u);
    int kind = o ? (int) cli_kernel_classify (o, "@me", corr) : -1;
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&buf);
    return kind;
}

static void
test_classify (void)
{
    CHECK_EQ_INT (
        s_classify ("{\"sub\": \"@me\", \"msg\": {\"from\": \"kernel.gate\", "
                    "\"corr\": \"R\", \"data\": 1}}",
                    "R"),
        CLI_KERNEL_ANSWER);
    CHECK_EQ_INT (
        s_classify ("{\"sub\": \"@me\", \"msg\": {\"from\": \"kernel.gate\", "
                    "\"corr\": \"OLD\"}}",
                    "R"),
        CLI_KERNEL_STALE);
    CHECK_EQ_INT (s_classify ("{\"sub\": \"@me\", \"msg\": {\"from\": "
                              "\"kernel.x\", \"corr\": null}}",
                              "R"),
                  CLI_KERNEL_STALE);
    CHECK_EQ_INT (s_classify ("{\"sub\": \"@me\", \"msg\": {\"from\": "
                              "\"kernel.x\", \"corr\": \"R\"}}",
                              NULL),
                  CLI_KERNEL_STALE);
    /*  Not from the kernel: left alone, even with the right corr. */
    CHECK_EQ_INT (s_classify ("{\"sub\": \"@me\", \"msg\": {\"from\": "
                              "\"mallory\", \"corr\": \"R\"}}",
                              "R"),
                  CLI_KERNEL_OTHER);
    CHECK_EQ_INT (s_classify ("{\"sub\": \"@me\", \"msg\": {\"from\": "
                              "\"kernel.\", \"corr\": \"R\"}}",
                              "R"),
                  CLI_KERNEL_OTHER);
    CHECK_EQ_INT (
        s_classify ("{\"sub\": \"@me\", \"msg\": {\"corr\": \"R\"}}", "R"),
        CLI_KERNEL_OTHER);
    /*  Not our mailbox. */
    CHECK_EQ_INT (s_classify ("{\"sub\": \"events\", \"msg\": {\"from\": "
                              "\"kernel.gate\", \"corr\": \"R\"}}",
                              "R"),
                  CLI_KERNEL_OTHER);
    CHECK_EQ_INT (s_classify ("{\"sub\": \"@me\", \"msg\": 5}", "R"),
                  CLI_KERNEL_OTHER);
    CHECK_EQ_INT (s_classify ("[1, 2]", "R"), CLI_KERNEL_OTHER);
    CHECK_EQ_INT (cli_kernel_classify (NULL, "@me", "R"), CLI_KERNEL_OTHER);
}

/*  Packed msgpack as compact JSON (caller frees). */
static char *
s_json_of (const void *data, size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    char *text = NULL;
    char err[200];
    if (msgpack_unpack_next (&u, (const char *) data, len, &off)
            == MSGPACK_UNPACK_SUCCESS
        && off == len)
        text = cli_msgpack_to_json (&u.data, CLI_JSON_COMPACT, err, sizeof err);
    msgpack_unpacked_destroy (&u);
    return text;
}

static char *
s_list (const char *csv)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    char *text = NULL;
    if (cli_kernel_pack_list (&pk, csv) == 0)
        text = s_json_of (b.data, b.len);
    else
        CHECK_EQ_INT (b.len, 0);
    chan_buf_fini (&b);
    return text;
}

static void
test_pack_list (void)
{
    char *t = s_list ("read,write");
    CHECK_EQ_STR (t, "[\"read\",\"write\"]");
    free (t);
    t = s_list ("invoke");
    CHECK_EQ_STR (t, "[\"invoke\"]");
    free (t);
    const char *bad[] = { "", ",", ",a", "a,", "a,,b" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK (s_list (bad[i]) == NULL);
    CHECK (s_list (NULL) == NULL);
}

static void
test_hexify (void)
{
    chan_buf_t in, out;
    chan_buf_init (&in);
    chan_buf_init (&out);
    msgpack_packer pk;
    chan_buf_packer (&in, &pk);
    msgpack_pack_map (&pk, 3);
    chan_pack_cstr (&pk, "a");
    msgpack_pack_bin (&pk, 2);
    msgpack_pack_bin_body (&pk, "\x01\xff", 2);
    chan_pack_cstr (&pk, "b");
    msgpack_pack_array (&pk, 2);
    msgpack_pack_bin (&pk, 0);
    msgpack_pack_int (&pk, -7);
    msgpack_pack_bin (&pk, 1); /* a bin key */
    msgpack_pack_bin_body (&pk, "\x10", 1);
    msgpack_pack_true (&pk);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    CHECK (msgpack_unpack_next (&u, (const char *) in.data, in.len, &off)
           == MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT (cli_kernel_hexify (&u.data, &out), 0);
    char *t = s_json_of (out.data, out.len);
    CHECK_EQ_STR (t, "{\"a\":\"01ff\",\"b\":[\"\",-7],\"10\":true}");
    free (t);
    msgpack_unpacked_destroy (&u);

    /*  Too deep: refused, out unchanged. */
    chan_buf_reset (&in);
    chan_buf_packer (&in, &pk);
    for (int i = 0; i < CLI_KERNEL_MAX_DEPTH + 1; i++)
        msgpack_pack_array (&pk, 1);
    msgpack_pack_nil (&pk);
    msgpack_unpacked_init (&u);
    off = 0;
    size_t before = out.len;
    if (msgpack_unpack_next (&u, (const char *) in.data, in.len, &off)
        == MSGPACK_UNPACK_SUCCESS)
        CHECK_EQ_INT (cli_kernel_hexify (&u.data, &out), AAAX_EINVAL);
    CHECK_EQ_INT (out.len, before);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&in);
    chan_buf_fini (&out);
}

static void
test_audit_json (void)
{
    uint8_t hash[32];
    memset (hash, 0xab, sizeof hash);
    char hexhash[65];
    for (int i = 0; i < 32; i++)
        memcpy (hexhash + 2 * i, "ab", 2);
    hexhash[64] = 0;
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 6);
    chan_pack_cstr (&pk, "seq");
    msgpack_pack_uint64 (&pk, 5);
    chan_pack_cstr (&pk, "ts");
    msgpack_pack_double (&pk, 1.5);
    chan_pack_cstr (&pk, "kind");
    chan_pack_cstr (&pk, "gate");
    chan_pack_cstr (&pk, "subject");
    chan_pack_cstr (&pk, "agent-1");
    chan_pack_cstr (&pk, "verdict");
    chan_pack_cstr (&pk, "allow");
    chan_pack_cstr (&pk, "args");
    msgpack_pack_map (&pk, 1);
    chan_pack_cstr (&pk, "blob");
    msgpack_pack_bin (&pk, 2);
    msgpack_pack_bin_body (&pk, "\x00\xff", 2);
    char err[200];
    char *t = cli_kernel_audit_json (5, hash, b.data, b.len, err, sizeof err);
    char want[512];
    snprintf (want, sizeof want,
              "{\"seq\":5,\"hash\":\"%s\",\"ts\":1.5,\"kind\":\"gate\","
              "\"subject\":\"agent-1\",\"verdict\":\"allow\","
              "\"args\":{\"blob\":\"00ff\"}}",
              hexhash);
    CHECK_EQ_STR (t, want);
    free (t);

    /*  A checkpoint: head and sig as hex. */
    chan_buf_reset (&b);
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 5);
    chan_pack_cstr (&pk, "seq");
    msgpack_pack_uint64 (&pk, 9);
    chan_pack_cstr (&pk, "ts");
    msgpack_pack_double (&pk, 2.0);
    chan_pack_cstr (&pk, "kind");
    chan_pack_cstr (&pk, "checkpoint");
    chan_pack_cstr (&pk, "head");
    msgpack_pack_bin (&pk, 32);
    msgpack_pack_bin_body (&pk, hash, 32);
    chan_pack_cstr (&pk, "sig");
    uint8_t sig[64];
    memset (sig, 0x01, sizeof sig);
    msgpack_pack_bin (&pk, 64);
    msgpack_pack_bin_body (&pk, sig, 64);
    t = cli_kernel_audit_json (9, hash, b.data, b.len, err, sizeof err);
    CHECK (t && strstr (t, "\"kind\":\"checkpoint\""));
    snprintf (want, sizeof want, "\"head\":\"%s\"", hexhash);
    CHECK (t && strstr (t, want));
    CHECK (t && strstr (t, "\"sig\":\"0101010101"));
    CHECK (t && strncmp (t, "{\"seq\":9,", 9) == 0);
    free (t);

    /*  A body that is not a map. */
    t = cli_kernel_audit_json (3, hash, "\xc1", 1, err, sizeof err);
    CHECK (t && strstr (t, "\"error\":\"the body is not a msgpack map\""));
    CHECK (t && strstr (t, "\"body\":\"c1\""));
    free (t);
    chan_buf_fini (&b);
}

#define CAP_JSON                                                            \
    "{\"id\": \"C1\", \"subject\": \"w1\", \"resource\": \"chan:jobs\", "   \
    "\"rights\": [\"read\"], \"expires\": 1900000000, \"issuer\": \"ab\", " \
    "\"sig\": \"cd\"}"

/*  cli_kernel_cap_load of text, as compact JSON (NULL when refused; err
    then holds why). */
static char *
s_cap (const void *text, size_t len, char *err, size_t errlen)
{
    chan_buf_t out;
    chan_buf_init (&out);
    char *json = NULL;
    if (cli_kernel_cap_load (text, len, &out, err, errlen) == 0)
        json = s_json_of (out.data, out.len);
    else
        CHECK_EQ_INT (out.len, 0);
    chan_buf_fini (&out);
    return json;
}

static void
test_cap_load (void)
{
    const char *want = "{\"id\":\"C1\",\"subject\":\"w1\",\"resource\":"
                       "\"chan:jobs\",\"rights\":[\"read\"],\"expires\":"
                       "1900000000,\"issuer\":\"ab\",\"sig\":\"cd\"}";
    char err[300];
    /*  The capability itself, with whitespace and a BOM around it. */
    const char *plain = "\xef\xbb\xbf\n  " CAP_JSON "\n";
    char *t = s_cap (plain, strlen (plain), err, sizeof err);
    CHECK_EQ_STR (t, want);
    free (t);
    /*  A grant answer carrying it. */
    const char *answer =
        "{\"ok\": true, \"granted\": true, \"reason\": \"rule 3\", "
        "\"cap\": " CAP_JSON "}";
    t = s_cap (answer, strlen (answer), err, sizeof err);
    CHECK_EQ_STR (t, want);
    free (t);
    /*  Raw msgpack of both. */
    chan_buf_t mp;
    chan_buf_init (&mp);
    CHECK_EQ_INT (cli_json_to_msgpack (CAP_JSON, &mp, err, sizeof err), 0);
    t = s_cap (mp.data, mp.len, err, sizeof err);
    CHECK_EQ_STR (t, want);
    free (t);
    chan_buf_reset (&mp);
    CHECK_EQ_INT (cli_json_to_msgpack (answer, &mp, err, sizeof err), 0);
    t = s_cap (mp.data, mp.len, err, sizeof err);
    CHECK_EQ_STR (t, want);
    free (t);
    chan_buf_fini (&mp);
    /*  Refusals. */
    const char *refused =
        "{\"ok\": true, \"granted\": false, \"reason\": \"no rule\"}";
    CHECK (s_cap (refused, strlen (refused), err, sizeof err) == NULL);
    CHECK (strstr (err, "refused (no rule)") != NULL);
    CHECK (s_cap ("{\"a\": 1}", 8, err, sizeof err) == NULL);
    CHECK (strstr (err, "no capability") != NULL);
    CHECK (s_cap ("", 0, err, sizeof err) == NULL);
    CHECK (s_cap (" \n", 2, err, sizeof err) == NULL);
    CHECK (s_cap ("{\"a\": ", 6, err, sizeof err) == NULL);
    CHECK (s_cap ("[1, 2]", 6, err, sizeof err) == NULL);
    CHECK (s_cap ("\x92\x01\x02", 3, err, sizeof err) == NULL); /* [1, 2] */
    CHECK (s_cap ("\x81\xa1", 2, err, sizeof err) == NULL);     /* truncated */
    CHECK (s_cap ("\x80\x80", 2, err, sizeof err) == NULL);     /* two values */
}

static void
test_age_and_utc (void)
{
    char buf[32];
    cli_kernel_age (0, buf, sizeof buf);
    CHECK_EQ_STR (buf, "0s");
    cli_kernel_age (59.9, buf, sizeof buf);
    CHECK_EQ_STR (buf, "59s");
    cli_kernel_age (187, buf, sizeof buf);
    CHECK_EQ_STR (buf, "3m07s");
    cli_kernel_age (7500, buf, sizeof buf);
    CHECK_EQ_STR (buf, "2h05m");
    cli_kernel_age (3 * 86400 + 4 * 3600 + 5, buf, sizeof buf);
    CHECK_EQ_STR (buf, "3d04h");
    cli_kernel_age (-1, buf, sizeof buf);
    CHECK_EQ_STR (buf, "-");
    cli_kernel_utc (0, buf, sizeof buf);
    CHECK_EQ_STR (buf, "1970-01-01T00:00:00Z");
    cli_kernel_utc (1735689600, buf, sizeof buf);
    CHECK_EQ_STR (buf, "2025-01-01T00:00:00Z");
}

int
main (void)
{
    zsys_init ();
    test_classify ();
    test_pack_list ();
    test_hexify ();
    test_audit_json ();
    test_cap_load ();
    test_age_and_utc ();
    test_request ();
    TEST_DONE ();
}
