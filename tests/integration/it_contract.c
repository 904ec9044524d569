/*  it_contract.c — the contract's MUSTs checked from C against a real aaaxd:
    endpoints and files, framing and errors (with their order), sessions and
    liveness, grants, broadcast (retain, since, tap), work-queues (leases,
    attempts, NACK, dead letters, long-poll, idempotency, max_len), mailboxes,
    heartbeat, pause, graceful shutdown.
    usage: it_contract AAAXD */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <czmq.h>

#include "../unit/testutil.h"
#include "aaax.h"
#include "hal_clock.h"
#include "itlib.h"

static const char *s_config =
    "return {\n"
    "  heartbeat_ms = 250,\n"
    "  max_frame = 4096,\n"
    "  channels = {\n"
    "    { name = \"q\", kind = \"work-queue\", max_attempts = 2, "
    "max_len = 50 },\n"
    "    { name = \"mem\", kind = \"work-queue\", durable = false },\n"
    "    { name = \"news\", kind = \"broadcast\", visibility = \"public\", "
    "retain = 3 },\n"
    "    { name = \"secret\", kind = \"broadcast\" },\n"
    "    { name = \"limited\", kind = \"broadcast\" },\n"
    "  },\n"
    "  policy = {\n"
    "    { subject = \"*\", action = \"chan.*\", target = \"q*\", effect = "
    "\"allow\" },\n"
    "    { subject = \"*\", action = \"chan.*\", target = \"mem\", effect = "
    "\"allow\" },\n"
    "    { subject = \"*\", action = \"chan.*\", target = \"news\", effect = "
    "\"allow\" },\n"
    "    { subject = \"*\", action = \"chan.*\", target = \"secret\", effect = "
    "\"allow\" },\n"
    "    { subject = \"intruder\", action = \"chan.*\", target = \"secret\", "
    "effect = \"deny\" },\n"
    "    { subject = \"*\", action = \"chan.write\", target = \"limited\", "
    "effect = \"allow\", rate = \"5/s\" },\n"
    "    { subject = \"*\", action = \"chan.write\", target = \"@guarded\", "
    "effect = \"deny\" },\n"
    "  },\n"
    "}\n";

static const char *s_aaaxd;

/*  ---- raw wire helpers ---- */

typedef struct {
    char cmd[16];
    int code;
    bool req_nil;
    uint64_t req;
} s_raw_t;

static bool
s_raw (void *sock, const void *f1, size_t l1, const void *f2, size_t l2,
       int nframes, s_raw_t *out)
{
    if (nframes == 1)
        zmq_send (sock, f1, l1, 0);
    else if (nframes == 2) {
        zmq_send (sock, f1, l1, ZMQ_SNDMORE);
        zmq_send (sock, f2, l2, 0);
    } else {
        zmq_send (sock, f1, l1, ZMQ_SNDMORE);
        zmq_send (sock, f2, l2, ZMQ_SNDMORE);
        zmq_send (sock, "x", 1, 0);
    }
    zmq_pollitem_t it = { sock, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&it, 1, 3000) <= 0)
        return false;
    zmq_msg_t m;
    zmq_msg_init (&m);
    zmq_msg_recv (&m, sock, 0);
    size_t n = zmq_msg_size (&m) < 15 ? zmq_msg_size (&m) : 15;
    memcpy (out->cmd, zmq_msg_data (&m), n);
    out->cmd[n] = 0;
    zmq_msg_recv (&m, sock, 0);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    out->code = 0;
    out->req_nil = true;
    if (msgpack_unpack_next (&u, zmq_msg_data (&m), zmq_msg_size (&m), &off)
        == MSGPACK_UNPACK_SUCCESS) {
        uint64_t c;
        if (chan_obj_get_uint (&u.data, "code", &c))
            out->code = (int) c;
        const msgpack_object *r = chan_obj_get (&u.data, "req");
        if (r && r->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            out->req_nil = false;
            out->req = r->via.u64;
        }
    }
    msgpack_unpacked_destroy (&u);
    zmq_msg_close (&m);
    return true;
}

/*  Packs {req: 7, k1: v1 ...} quickly for raw sends. */
static size_t
s_body (chan_buf_t *b, const char *chan, bool with_req)
{
    chan_buf_reset (b);
    msgpack_packer pk;
    chan_buf_packer (b, &pk);
    msgpack_pack_map (&pk, (with_req ? 1 : 0) + (chan ? 2 : 0));
    if (with_req) {
        chan_pack_cstr (&pk, "req");
        msgpack_pack_uint64 (&pk, 7);
    }
    if (chan) {
        chan_pack_cstr (&pk, "chan");
        chan_pack_cstr (&pk, chan);
        chan_pack_cstr (&pk, "data");
        msgpack_pack_uint64 (&pk, 1);
    }
    return b->len;
}

/*  ---- small client helpers ---- */

static int
s_simple (chan_client_t *c, const char *cmd, const char *chan,
          chan_reply_t *out)
{
    chan_body_t b;
    chan_body_init (&b);
    if (chan)
        chan_body_str (&b, "chan", chan);
    int code = it_call (c, cmd, &b, out);
    chan_body_fini (&b);
    return code;
}

static int
s_claim (chan_client_t *c, const char *chan, uint32_t max, uint32_t wait_ms,
         uint32_t lease_ms, chan_reply_t *out)
{
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", chan);
    chan_body_uint (&b, "max", max);
    if (wait_ms)
        chan_body_uint (&b, "wait_ms", wait_ms);
    if (lease_ms)
        chan_body_uint (&b, "lease_ms", lease_ms);
    int code = it_call (c, "CLAIM", &b, out);
    chan_body_fini (&b);
    return code;
}

static uint32_t
s_nmsgs (const chan_reply_t *r)
{
    const msgpack_object *m = chan_obj_get (&r->body, "msgs");
    return m && m->type == MSGPACK_OBJECT_ARRAY ? m->via.array.size : 0;
}

static const msgpack_object *
s_msg (const chan_reply_t *r, uint32_t i)
{
    return &chan_obj_get (&r->body, "msgs")->via.array.ptr[i];
}

static int
s_ids (chan_client_t *c, const char *cmd, const char *chan, const char *id,
       uint64_t *count)
{
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", chan);
    const char *ids[] = { id };
    chan_body_strv (&b, "ids", ids, 1);
    chan_reply_t r;
    int code = it_call (c, cmd, &b, &r);
    chan_body_fini (&b);
    if (code == 0) {
        *count = 0;
        if (!chan_obj_get_uint (&r.body, "acked", count))
            chan_obj_get_uint (&r.body, "requeued", count);
    }
    if (code >= 0)
        chan_reply_fini (&r);
    return code;
}

static void
s_id_of (const msgpack_object *env, char *id)
{
    const char *p;
    size_t len;
    id[0] = 0;
    if (chan_obj_get_str (env, "id", &p, &len) && len < 27) {
        memcpy (id, p, len);
        id[len] = 0;
    }
}

static bool
s_has_grant (const chan_reply_t *r, const char *grant)
{
    const msgpack_object *g = chan_obj_get (&r->body, "grants");
    for (uint32_t i = 0; g && i < g->via.array.size; i++) {
        const msgpack_object *s = &g->via.array.ptr[i];
        if (s->type == MSGPACK_OBJECT_STR && s->via.str.size == strlen (grant)
            && memcmp (s->via.str.ptr, grant, s->via.str.size) == 0)
            return true;
    }
    return false;
}

/*  Waits for the next pushed MSG on c from channel sub; true and *out. */
static bool
s_next_msg (chan_client_t *c, const char *sub, int timeout_ms,
            chan_reply_t *out)
{
    int64_t deadline = hal_clock_mono_ms () + timeout_ms;
    while (hal_clock_mono_ms () < deadline) {
        chan_reply_t r;
        if (chan_client_recv (c, &r, 50) != 0)
            continue;
        const char *s;
        size_t len;
        if (strcmp (r.cmd, "MSG") == 0
            && chan_obj_get_str (&r.body, "sub", &s, &len)
            && len == strlen (sub) && memcmp (s, sub, len) == 0) {
            *out = r;
            return true;
        }
        chan_reply_fini (&r);
    }
    return false;
}

/*  Sleeps ms while keeping the given sessions alive (the kernel undocks a
    session silent for 3 heartbeat periods: 750 ms here). */
static void
s_nap (int ms, chan_client_t *a, chan_client_t *b, chan_client_t *c)
{
    int64_t end = hal_clock_mono_ms () + ms;
    while (hal_clock_mono_ms () < end) {
        usleep (100000);
        chan_client_t *all[] = { a, b, c };
        for (int i = 0; i < 3; i++)
            if (all[i])
                s_simple (all[i], "PING", NULL, NULL);
    }
}

/*  ---- the checks ---- */

static void
s_files (it_kernel_t *k)
{
    struct stat st;
    CHECK (stat (k->data, &st) == 0 && (st.st_mode & 0777) == 0700);
    char path[600];
    snprintf (path, sizeof path, "%s/session.token", k->data);
    CHECK (stat (path, &st) == 0 && (st.st_mode & 0777) == 0600);
    char token[65];
    CHECK (chan_client_read_token (k->data, token) == 0);
    CHECK_EQ_INT (strspn (token, "0123456789abcdef"), 64);
}

static void
s_wire (it_kernel_t *k)
{
    void *ctx = zsys_init ();
    void *d = zmq_socket (ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (d, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect (d, k->endpoint);
    chan_buf_t b;
    chan_buf_init (&b);
    s_raw_t r;
    /*  Wrong frame counts: 400, req nil. */
    CHECK (s_raw (d, "PING", 4, NULL, 0, 1, &r));
    CHECK_EQ_INT (r.code, 400);
    CHECK (r.req_nil);
    s_body (&b, NULL, true);
    CHECK (s_raw (d, "PING", 4, b.data, b.len, 3, &r));
    CHECK_EQ_INT (r.code, 400);
    /*  PING undocked is answered, echoing req. */
    CHECK (s_raw (d, "PING", 4, b.data, b.len, 2, &r));
    CHECK_EQ_STR (r.cmd, "PONG");
    CHECK (!r.req_nil && r.req == 7);
    /*  Body not a map: 400 req nil. */
    CHECK (s_raw (d, "PING", 4, "\x93\x01\x02\x03", 4, 2, &r));
    CHECK_EQ_INT (r.code, 400);
    CHECK (r.req_nil);
    /*  Unknown command: 400 echoing req. */
    CHECK (s_raw (d, "FROB", 4, b.data, b.len, 2, &r));
    CHECK_EQ_INT (r.code, 400);
    CHECK (!r.req_nil && r.req == 7);
    /*  Order 413 before 400: an oversized frame that is also garbage. */
    char *big = (char *) calloc (1, 5000);
    memset (big, 0xc1, 5000);
    CHECK (s_raw (d, "WRITE", 5, big, 5000, 2, &r));
    CHECK_EQ_INT (r.code, 413);
    /*  400 before 401: undocked and malformed. */
    CHECK (s_raw (d, "WRITE", 5, "\xc1", 1, 2, &r));
    CHECK_EQ_INT (r.code, 400);
    /*  401 before 404: undocked, unknown channel. */
    s_body (&b, "no-such-channel", true);
    CHECK (s_raw (d, "WRITE", 5, b.data, b.len, 2, &r));
    CHECK_EQ_INT (r.code, 401);
    /*  Deep nesting in data: 400, the kernel survives. */
    memset (big, 0x91, 4000);
    chan_buf_reset (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 2);
    chan_pack_cstr (&pk, "req");
    msgpack_pack_uint64 (&pk, 7);
    chan_pack_cstr (&pk, "data");
    chan_buf_append (&b, big, 1000);
    msgpack_pack_nil (&pk);
    CHECK (s_raw (d, "PING", 4, b.data, b.len, 2, &r));
    CHECK_EQ_INT (r.code, 400);
    free (big);
    chan_buf_fini (&b);
    zmq_close (d);
}

static void
s_sessions (it_kernel_t *k)
{
    chan_client_t *c = chan_client_new (k->endpoint, 3000);
    chan_reply_t r;
    /*  Version must be 1. */
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "system", "v2");
    chan_body_uint (&b, "version", 2);
    CHECK_EQ_INT (it_call (c, "HELLO", &b, NULL), 400);
    chan_body_fini (&b);
    /*  Privileged without or with a wrong token: 401. */
    CHECK_EQ_INT (chan_client_hello (c, "p1", NULL, true, NULL, 0, &r),
                  AAAX_EAUTH);
    chan_reply_fini (&r);
    CHECK_EQ_INT (chan_client_hello (c, "p1",
                                     "00000000000000000000000000000000"
                                     "00000000000000000000000000000000",
                                     true, NULL, 0, &r),
                  AAAX_EAUTH);
    chan_reply_fini (&r);
    /*  The right token: privileged grants. */
    char token[65];
    chan_client_read_token (k->data, token);
    CHECK_EQ_INT (chan_client_hello (c, "p1", token, true, NULL, 0, &r), 0);
    CHECK (s_has_grant (&r, "write:kernel.lifecycle"));
    CHECK (s_has_grant (&r, "read:@p1"));
    chan_reply_fini (&r);
    /*  409: the same id on another live connection. */
    chan_client_t *c2 = chan_client_new (k->endpoint, 3000);
    CHECK_EQ_INT (chan_client_hello (c2, "p1", NULL, false, NULL, 0, &r),
                  AAAX_EEXIST);
    chan_reply_fini (&r);
    /*  kernel.* ids are reserved. */
    CHECK_EQ_INT (
        chan_client_hello (c2, "kernel.fake", NULL, false, NULL, 0, &r),
        AAAX_EPERM);
    chan_reply_fini (&r);
    /*  BYE ends the session: the next command is 401. */
    CHECK_EQ_INT (s_simple (c, "BYE", NULL, NULL), 0);
    CHECK_EQ_INT (s_simple (c, "SUB", "news", NULL), 401);
    /*  Now the id is free. */
    CHECK_EQ_INT (chan_client_hello (c2, "p1", NULL, false, NULL, 0, &r), 0);
    CHECK (!s_has_grant (&r, "write:kernel.lifecycle"));
    chan_reply_fini (&r);
    chan_client_destroy (&c);
    chan_client_destroy (&c2);

    /*  A silent session is undocked after 3 heartbeat periods (250 ms here)
        and its lease released at once. */
    const char *chans[] = { "mem", NULL };
    chan_client_t *w = it_dock (k, "silent", chans);
    chan_client_t *o = it_dock (k, "other", chans);
    CHECK (w && o);
    CHECK_EQ_INT (it_write_uint (o, "mem", 42, NULL), 0);
    CHECK_EQ_INT (s_claim (w, "mem", 1, 0, 60000, &r), 0);
    CHECK_EQ_INT (s_nmsgs (&r), 1);
    chan_reply_fini (&r);
    /*  "other" keeps talking; "silent" says nothing for 1 s. */
    for (int i = 0; i < 10; i++) {
        usleep (100000);
        CHECK_EQ_INT (s_simple (o, "PING", NULL, NULL), 0);
    }
    CHECK_EQ_INT (s_claim (o, "mem", 1, 0, 0, &r), 0);
    CHECK_EQ_INT (s_nmsgs (&r), 1);
    if (s_nmsgs (&r) == 1) {
        uint64_t attempt = 0;
        chan_obj_get_uint (s_msg (&r, 0), "attempt", &attempt);
        CHECK_EQ_INT (attempt, 2);
    }
    chan_reply_fini (&r);
    CHECK_EQ_INT (s_simple (w, "PING", NULL, NULL), 0); /* PING still works */
    CHECK_EQ_INT (s_claim (w, "mem", 1, 0, 0, NULL), 401);
    chan_client_destroy (&w);
    chan_client_destroy (&o);
}

static void
s_grants_and_order (it_kernel_t *k)
{
    const char *chans[] = { "q", "secret", "no-such", "limited", NULL };
    chan_client_t *a = it_dock (k, "granted", chans);
    chan_client_t *x = it_dock (k, "intruder", chans);
    chan_client_t *n = it_dock (k, "nolist", NULL);
    CHECK (a && x && n);
    chan_reply_t r;
    /*  Listed and allowed. */
    CHECK_EQ_INT (it_write_uint (a, "q", 1, NULL), 0);
    /*  Deny overrides allow. */
    CHECK_EQ_INT (it_write_uint (x, "secret", 1, NULL), 403);
    /*  Not listed at HELLO: 403; unknown channel: 404 (404 before 403). */
    CHECK_EQ_INT (it_write_uint (n, "q", 1, NULL), 403);
    CHECK_EQ_INT (it_write_uint (n, "no-such", 1, NULL), 404);
    /*  SUB on a work-queue: no read right can exist: 403. */
    CHECK_EQ_INT (s_simple (a, "SUB", "q", NULL), 403);
    /*  Rate 5/s: a burst of 5, then 429 (403 comes before 429). */
    int ok = 0, limited = 0;
    for (int i = 0; i < 8; i++) {
        int code = it_write_uint (a, "limited", (uint64_t) i, NULL);
        ok += code == 0;
        limited += code == 429;
    }
    CHECK_EQ_INT (ok, 5);
    CHECK_EQ_INT (limited, 3);
    CHECK_EQ_INT (it_write_uint (n, "limited", 1, NULL), 403);
    /*  And again after the period. */
    s_nap (1050, a, x, n);
    CHECK_EQ_INT (it_write_uint (a, "limited", 9, NULL), 0);
    /*  max_len 50: the 51st message is 429 (one is in already). */
    int full = 0;
    for (int i = 0; i < 55; i++)
        full += it_write_uint (a, "q", 100 + (uint64_t) i, NULL) == 429;
    CHECK_EQ_INT (full, 6);
    /*  Drain q (and ack) for later checks. */
    for (;;) {
        CHECK_EQ_INT (s_claim (a, "q", 1000, 0, 0, &r), 0);
        uint32_t m = s_nmsgs (&r);
        for (uint32_t i = 0; i < m; i++) {
            char id[27];
            uint64_t cnt;
            s_id_of (s_msg (&r, i), id);
            CHECK_EQ_INT (s_ids (a, "ACK", "q", id, &cnt), 0);
            CHECK_EQ_INT (cnt, 1);
        }
        chan_reply_fini (&r);
        if (m == 0)
            break;
    }
    /*  423 before 404: pause "granted" (privileged CTL) and use an unknown
        channel. */
    chan_client_t *p = it_dock_privileged (k, "operator");
    CHECK (p != NULL);
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "op", "pause");
    chan_body_str (&b, "system", "granted");
    CHECK_EQ_INT (it_call (p, "CTL", &b, NULL), 0);
    chan_body_fini (&b);
    CHECK_EQ_INT (it_write_uint (a, "no-such", 1, NULL), 423);
    CHECK_EQ_INT (it_write_uint (a, "q", 1, NULL), 423);
    CHECK_EQ_INT (s_claim (a, "q", 1, 0, 0, NULL), 423);
    CHECK_EQ_INT (s_simple (a, "PING", NULL, NULL), 0);
    chan_body_init (&b);
    chan_body_str (&b, "op", "resume");
    chan_body_str (&b, "system", "granted");
    CHECK_EQ_INT (it_call (p, "CTL", &b, NULL), 0);
    chan_body_fini (&b);
    CHECK_EQ_INT (it_write_uint (a, "secret", 1, NULL), 0);
    /*  STAT is for privileged sessions. */
    CHECK_EQ_INT (s_simple (a, "STAT", NULL, NULL), 403);
    CHECK_EQ_INT (s_simple (p, "STAT", NULL, NULL), 0);
    chan_client_destroy (&a);
    chan_client_destroy (&x);
    chan_client_destroy (&n);
    chan_client_destroy (&p);
}

static void
s_workqueue (it_kernel_t *k)
{
    const char *chans[] = { "q", "q.dlq", NULL };
    chan_client_t *a = it_dock (k, "wa", chans);
    chan_client_t *b = it_dock (k, "wb", chans);
    CHECK (a && b);
    chan_reply_t r;
    char id[27], id2[27];
    CHECK_EQ_INT (it_write_uint (a, "q", 7, id), 0);
    /*  One claimer at a time. */
    CHECK_EQ_INT (s_claim (a, "q", 10, 0, 0, &r), 0);
    CHECK_EQ_INT (s_nmsgs (&r), 1);
    uint64_t v = 0, attempt = 0;
    if (s_nmsgs (&r)) {
        chan_obj_get_uint (s_msg (&r, 0), "data", &v);
        chan_obj_get_uint (s_msg (&r, 0), "attempt", &attempt);
        s_id_of (s_msg (&r, 0), id2);
        CHECK_EQ_STR (id, id2);
        const char *from;
        size_t flen;
        CHECK (chan_obj_get_str (s_msg (&r, 0), "from", &from, &flen)
               && flen == 2 && memcmp (from, "wa", 2) == 0);
    }
    chan_reply_fini (&r);
    CHECK_EQ_INT (v, 7);
    CHECK_EQ_INT (attempt, 1);
    CHECK_EQ_INT (s_claim (b, "q", 10, 0, 0, &r), 0);
    CHECK_EQ_INT (s_nmsgs (&r), 0);
    chan_reply_fini (&r);
    /*  ACK / NACK from a non-holder change nothing. */
    uint64_t cnt = 9;
    CHECK_EQ_INT (s_ids (b, "ACK", "q", id, &cnt), 0);
    CHECK_EQ_INT (cnt, 0);
    CHECK_EQ_INT (s_ids (b, "NACK", "q", id, &cnt), 0);
    CHECK_EQ_INT (cnt, 0);
    /*  NACK by the holder: back with attempt 2. */
    CHECK_EQ_INT (s_ids (a, "NACK", "q", id, &cnt), 0);
    CHECK_EQ_INT (cnt, 1);
    CHECK_EQ_INT (s_claim (b, "q", 10, 0, 100, &r), 0);
    CHECK_EQ_INT (s_nmsgs (&r), 1);
    if (s_nmsgs (&r))
        chan_obj_get_uint (s_msg (&r, 0), "attempt", &attempt);
    chan_reply_fini (&r);
    CHECK_EQ_INT (attempt, 2);
    /*  The 100 ms lease expires; max_attempts = 2: into q.dlq, data
        unchanged, chan rewritten. */
    usleep (300000);
    CHECK_EQ_INT (s_claim (a, "q", 10, 0, 0, &r), 0);
    CHECK_EQ_INT (s_nmsgs (&r), 0);
    chan_reply_fini (&r);
    CHECK_EQ_INT (s_claim (a, "q.dlq", 10, 0, 0, &r), 0);
    CHECK_EQ_INT (s_nmsgs (&r), 1);
    if (s_nmsgs (&r)) {
        const char *ch;
        size_t clen;
        chan_obj_get_uint (s_msg (&r, 0), "data", &v);
        CHECK_EQ_INT (v, 7);
        CHECK (chan_obj_get_str (s_msg (&r, 0), "chan", &ch, &clen) && clen == 5
               && memcmp (ch, "q.dlq", 5) == 0);
        s_id_of (s_msg (&r, 0), id2);
        CHECK_EQ_INT (s_ids (a, "ACK", "q.dlq", id2, &cnt), 0);
        CHECK_EQ_INT (cnt, 1);
    }
    chan_reply_fini (&r);
    /*  NACK with delay_ms: not claimable until the delay passes. */
    CHECK_EQ_INT (it_write_uint (a, "q", 8, id), 0);
    CHECK_EQ_INT (s_claim (a, "q", 1, 0, 0, &r), 0);
    chan_reply_fini (&r);
    chan_body_t body;
    chan_body_init (&body);
    chan_body_str (&body, "chan", "q");
    const char *ids[] = { id };
    chan_body_strv (&body, "ids", ids, 1);
    chan_body_uint (&body, "delay_ms", 300);
    CHECK_EQ_INT (it_call (a, "NACK", &body, NULL), 0);
    chan_body_fini (&body);
    CHECK_EQ_INT (s_claim (a, "q", 1, 0, 0, &r), 0);
    CHECK_EQ_INT (s_nmsgs (&r), 0);
    chan_reply_fini (&r);
    /*  Long-poll: answered as soon as the delay ends (~300 ms), not at the
        2 s wait. */
    int64_t t0 = hal_clock_mono_ms ();
    CHECK_EQ_INT (s_claim (a, "q", 1, 2000, 0, &r), 0);
    int64_t dt = hal_clock_mono_ms () - t0;
    CHECK_EQ_INT (s_nmsgs (&r), 1);
    CHECK (dt < 1500);
    if (s_nmsgs (&r)) {
        s_id_of (s_msg (&r, 0), id2);
        CHECK_EQ_INT (s_ids (a, "ACK", "q", id2, &cnt), 0);
        CHECK_EQ_INT (cnt, 1);
    }
    chan_reply_fini (&r);
    /*  Long-poll with nothing coming: [] after wait_ms. */
    t0 = hal_clock_mono_ms ();
    CHECK_EQ_INT (s_claim (a, "q", 1, 200, 0, &r), 0);
    dt = hal_clock_mono_ms () - t0;
    CHECK_EQ_INT (s_nmsgs (&r), 0);
    CHECK (dt >= 190 && dt < 1500);
    chan_reply_fini (&r);
    /*  Idempotency key: same id for a repeat. */
    char k1[27] = "", k2[27] = "";
    for (int i = 0; i < 2; i++) {
        chan_body_init (&body);
        chan_body_str (&body, "chan", "q");
        chan_body_uint (&body, "data", 5);
        chan_body_str (&body, "key", "order-1");
        CHECK_EQ_INT (it_call (a, "WRITE", &body, &r), 0);
        const char *p;
        size_t len;
        if (chan_obj_get_str (&r.body, "id", &p, &len) && len == 26)
            memcpy (i ? k2 : k1, p, 26);
        chan_reply_fini (&r);
        chan_body_fini (&body);
    }
    CHECK (k1[0] && strcmp (k1, k2) == 0);
    CHECK_EQ_INT (s_claim (a, "q", 10, 0, 0, &r), 0);
    CHECK_EQ_INT (s_nmsgs (&r), 1);
    if (s_nmsgs (&r)) {
        s_id_of (s_msg (&r, 0), id2);
        s_ids (a, "ACK", "q", id2, &cnt);
    }
    chan_reply_fini (&r);
    chan_client_destroy (&a);
    chan_client_destroy (&b);
}

static void
s_broadcast (it_kernel_t *k)
{
    const char *chans[] = { "news", NULL };
    chan_client_t *pub = it_dock (k, "pub", chans);
    chan_client_t *s1 = it_dock (k, "s1", chans);
    chan_client_t *s2 = it_dock (k, "s2", chans);
    CHECK (pub && s1 && s2);
    void *tap = zmq_socket (zsys_init (), ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt (tap, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (tap, ZMQ_SUBSCRIBE, "news", 4);
    zmq_connect (tap, k->tap);
    usleep (200000);
    CHECK_EQ_INT (s_simple (s1, "SUB", "news", NULL), 0);
    CHECK_EQ_INT (s_simple (s2, "SUB", "news", NULL), 0);
    char ids[5][27];
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT (it_write_uint (pub, "news", 100 + (uint64_t) i, ids[i]),
                      0);
    for (int i = 0; i < 5; i++) {
        chan_reply_t m1, m2;
        CHECK (s_next_msg (s1, "news", 2000, &m1));
        CHECK (s_next_msg (s2, "news", 2000, &m2));
        uint64_t v1 = 0, v2 = 0;
        chan_obj_get_uint (chan_obj_get (&m1.body, "msg"), "data", &v1);
        chan_obj_get_uint (chan_obj_get (&m2.body, "msg"), "data", &v2);
        CHECK_EQ_INT (v1, 100 + i);
        CHECK_EQ_INT (v2, 100 + i);
        chan_reply_fini (&m1);
        chan_reply_fini (&m2);
    }
    /*  The tap mirrors the public channel: [CHANNEL, ENVELOPE]. */
    zmq_pollitem_t it = { tap, 0, ZMQ_POLLIN, 0 };
    int got = 0;
    while (got < 5 && zmq_poll (&it, 1, 2000) > 0) {
        char topic[32] = "";
        int n = zmq_recv (tap, topic, sizeof topic - 1, 0);
        zmq_msg_t env;
        zmq_msg_init (&env);
        zmq_msg_recv (&env, tap, 0);
        if (n == 4 && memcmp (topic, "news", 4) == 0
            && chan_mpk_valid (zmq_msg_data (&env), zmq_msg_size (&env), 32))
            got++;
        zmq_msg_close (&env);
    }
    CHECK_EQ_INT (got, 5);
    zmq_close (tap);
    /*  retain = 3: SUB since the first id replays ids 3..5 (the last 3);
        since the 4th replays the 5th only. */
    chan_client_t *late = it_dock (k, "late", chans);
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", "news");
    chan_body_str (&b, "since", ids[3]);
    CHECK_EQ_INT (it_call (late, "SUB", &b, NULL), 0);
    chan_body_fini (&b);
    chan_reply_t m;
    CHECK (s_next_msg (late, "news", 2000, &m));
    uint64_t v = 0;
    chan_obj_get_uint (chan_obj_get (&m.body, "msg"), "data", &v);
    CHECK_EQ_INT (v, 104);
    chan_reply_fini (&m);
    CHECK (!s_next_msg (late, "news", 200, &m));
    chan_client_destroy (&late);
    late = it_dock (k, "late2", chans);
    chan_body_init (&b);
    chan_body_str (&b, "chan", "news");
    chan_body_str (&b, "since", "");
    CHECK_EQ_INT (it_call (late, "SUB", &b, NULL), 0);
    chan_body_fini (&b);
    for (int i = 2; i < 5; i++) {
        CHECK (s_next_msg (late, "news", 2000, &m));
        chan_obj_get_uint (chan_obj_get (&m.body, "msg"), "data", &v);
        CHECK_EQ_INT (v, 100 + i);
        chan_reply_fini (&m);
    }
    chan_client_destroy (&late);
    /*  The heartbeat: section 7 fields, state running. */
    CHECK_EQ_INT (s_simple (s1, "SUB", "heartbeat", NULL), 0);
    CHECK (s_next_msg (s1, "heartbeat", 2000, &m));
    const msgpack_object *d =
        chan_obj_get (chan_obj_get (&m.body, "msg"), "data");
    const char *keys[] = { "kernel_id", "timestamp", "uptime_s",
                           "state",     "systems",   "capabilities_active",
                           "channels" };
    for (size_t i = 0; i < 7; i++)
        CHECK (chan_obj_get (d, keys[i]) != NULL);
    const char *st;
    size_t stlen;
    CHECK (chan_obj_get_str (d, "state", &st, &stlen) && stlen == 7
           && memcmp (st, "running", 7) == 0);
    chan_reply_fini (&m);
    chan_client_destroy (&pub);
    chan_client_destroy (&s1);
    chan_client_destroy (&s2);
}

static void
s_mailbox (it_kernel_t *k)
{
    chan_client_t *bob = it_dock (k, "bob", NULL);
    chan_client_t *guarded = it_dock (k, "guarded", NULL);
    chan_client_t *alice = it_dock (k, "alice", NULL);
    CHECK (bob && guarded && alice);
    chan_reply_t r;
    chan_body_t b;
    /*  Unknown recipient: 404. Policy deny on @guarded: 403. */
    chan_body_init (&b);
    chan_body_str (&b, "to", "nobody-ever");
    chan_body_uint (&b, "data", 1);
    CHECK_EQ_INT (it_call (alice, "SEND", &b, NULL), 404);
    chan_body_fini (&b);
    chan_body_init (&b);
    chan_body_str (&b, "to", "guarded");
    chan_body_uint (&b, "data", 1);
    CHECK_EQ_INT (it_call (alice, "SEND", &b, NULL), 403);
    chan_body_fini (&b);
    /*  Pushed to the live recipient. */
    chan_body_init (&b);
    chan_body_str (&b, "to", "bob");
    chan_body_str (&b, "data", "hi bob");
    chan_body_str (&b, "corr", "c-1");
    CHECK_EQ_INT (it_call (alice, "SEND", &b, NULL), 0);
    chan_body_fini (&b);
    chan_reply_t m;
    CHECK (s_next_msg (bob, "@bob", 2000, &m));
    const msgpack_object *env = chan_obj_get (&m.body, "msg");
    uint64_t attempt = 0;
    chan_obj_get_uint (env, "attempt", &attempt);
    CHECK_EQ_INT (attempt, 1);
    const char *p;
    size_t len;
    CHECK (chan_obj_get_str (env, "from", &p, &len) && len == 5
           && memcmp (p, "alice", 5) == 0);
    CHECK (chan_obj_get_str (env, "corr", &p, &len) && len == 3);
    char id[27];
    s_id_of (env, id);
    chan_reply_fini (&m);
    /*  Not acknowledged: bob leaves and comes back, the message again with
        attempt 2. Someone else cannot ACK it. */
    uint64_t cnt;
    CHECK_EQ_INT (s_ids (alice, "ACK", "@bob", id, &cnt), 403);
    CHECK_EQ_INT (s_simple (bob, "BYE", NULL, NULL), 0);
    chan_client_destroy (&bob);
    bob = it_dock (k, "bob", NULL);
    CHECK (bob && s_next_msg (bob, "@bob", 2000, &m));
    env = chan_obj_get (&m.body, "msg");
    chan_obj_get_uint (env, "attempt", &attempt);
    CHECK_EQ_INT (attempt, 2);
    chan_reply_fini (&m);
    CHECK_EQ_INT (s_ids (bob, "ACK", "@bob", id, &cnt), 0);
    CHECK_EQ_INT (cnt, 1);
    CHECK_EQ_INT (s_simple (bob, "BYE", NULL, NULL), 0);
    chan_client_destroy (&bob);
    bob = it_dock (k, "bob", NULL);
    CHECK (bob && !s_next_msg (bob, "@bob", 300, &m));
    (void) r;
    chan_client_destroy (&bob);
    chan_client_destroy (&guarded);
    chan_client_destroy (&alice);
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        fprintf (stderr, "usage: it_contract AAAXD\n");
        return 2;
    }
    s_aaaxd = argv[1];
    it_kernel_t k;
    it_kernel_init (&k, s_aaaxd, s_config);
    if (it_kernel_start (&k, NULL) != 0) {
        it_kernel_cleanup (&k);
        return 1;
    }
    char token1[65];
    chan_client_read_token (k.data, token1);
    s_files (&k);
    s_wire (&k);
    s_sessions (&k);
    s_grants_and_order (&k);
    s_workqueue (&k);
    s_broadcast (&k);
    s_mailbox (&k);
    /*  Graceful stop: exit 0, the ipc socket removed; a new boot writes a
        new token and still knows the durable state. */
    CHECK_EQ_INT (it_kernel_stop (&k, SIGTERM), 0);
    char sock[500];
    snprintf (sock, sizeof sock, "%s/aaax.sock", k.data);
    CHECK (access (sock, F_OK) != 0);
    CHECK (it_kernel_start (&k, NULL) == 0);
    char token2[65];
    chan_client_read_token (k.data, token2);
    CHECK (strcmp (token1, token2) != 0);
    /*  A second kernel on the same data directory is refused. */
    it_kernel_t k2 = k;
    snprintf (k2.endpoint, sizeof k2.endpoint, "tcp://127.0.0.1:%d",
              it_free_port ());
    snprintf (k2.tap, sizeof k2.tap, "tcp://127.0.0.1:%d", it_free_port ());
    CHECK (it_kernel_start (&k2, NULL) != 0);
    CHECK_EQ_INT (it_kernel_stop (&k, SIGTERM), 0);
    CHECK (!it_kernel_log_has_sanitizer_report (&k));
    it_kernel_cleanup (&k);
    TEST_DONE ();
}
