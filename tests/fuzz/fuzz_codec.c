/*  fuzz_codec.c — libFuzzer target for the command endpoint's decoders: the
    frame pair [COMMAND, BODY] (first input byte = command length, then the
    command, then the body, each copied into a buffer of its exact size so
    that ASan sees any read past a frame), chan_req_decode, the string-array
    iterator, peek_req, and the bounded msgpack reader (valid, skip, next).
    Invariants checked (abort on violation):
    - a decoded request's spans lie inside the body; its string arrays
      iterate to exactly nchannels / nids strings that end at the span's end;
    - a decoded body is valid msgpack within AAAX_MAX_DEPTH, and peek_req
      finds the same req whenever decoding read one;
    - validity is monotonic in max_depth; skip consumes nothing on failure
      and exactly one value on success;
    - a WRITE / SEND batch iterates to exactly nbatch values inside its
      span, each valid within the data nesting limit;
    - an envelope built from a decoded WRITE / SEND (chan_env_pairs +
      chan_env_map, and after chan_env_rechan) is one valid msgpack value. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "chan_env.h"
#include "chan_id.h"
#include "chan_mpk.h"
#include "chan_req.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                 \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf (stderr, "fuzz_codec: %s:%d: invariant failed: %s\n", \
                     __FILE__, __LINE__, #cond);                          \
            abort ();                                                     \
        }                                                                 \
    } while (0)

static void
s_check_span (chan_span_t sp, const uint8_t *body, size_t bodylen)
{
    if (!sp.ptr)
        return;
    FUZZ_ASSERT ((const uint8_t *) sp.ptr >= body);
    FUZZ_ASSERT ((const uint8_t *) sp.ptr + sp.len <= body + bodylen);
}

/*  Iterates a validated string array: exactly n strings, inside the span,
    ending at its end. */
static void
s_check_strs (chan_span_t arr, uint32_t n, const uint8_t *body, size_t bodylen,
              bool ids)
{
    s_check_span (arr, body, bodylen);
    size_t pos = 0;
    chan_span_t s;
    uint32_t count = 0;
    while (chan_req_next_str (arr, &pos, &s)) {
        FUZZ_ASSERT (s.ptr >= arr.ptr);
        FUZZ_ASSERT (s.ptr + s.len <= arr.ptr + arr.len);
        FUZZ_ASSERT (s.len <= AAAX_MAX_NAME + 1);
        FUZZ_ASSERT (pos <= arr.len);
        if (ids) {
            uint64_t seq, ms;
            if (chan_id_parse (s.ptr, s.len, &seq, &ms)) {
                char back[CHAN_ID_LEN];
                chan_id_format (ms, seq, back);
                FUZZ_ASSERT (seq != 0);
                //  parsing accepts lower case; formatting makes upper case
                for (size_t i = 0; i < CHAN_ID_LEN; i++) {
                    char c = s.ptr[i];
                    if (c >= 'a' && c <= 'z')
                        c = (char) (c - 'a' + 'A');
                    FUZZ_ASSERT (c == back[i]);
                }
            }
        }
        count++;
        FUZZ_ASSERT (count <= n);
    }
    FUZZ_ASSERT (count == n);
    FUZZ_ASSERT (pos == arr.len);
}

/*  The bounded reader on its own over any bytes. */
static void
s_reader (const uint8_t *buf, size_t len)
{
    static const int depths[] = { -1, 0, 1, 2, 3, 8, 31, 32, 33, 64, 1000 };
    bool prev = false;
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        bool v = chan_mpk_valid (buf, len, depths[i]);
        FUZZ_ASSERT (!prev || v); // monotonic in max_depth
        prev = v;
        chan_mpk_reader_t r;
        chan_mpk_reader_init (&r, buf, len);
        int rc = chan_mpk_skip (&r, depths[i]);
        if (rc != 0)
            FUZZ_ASSERT (r.p == buf);
        else {
            FUZZ_ASSERT (r.p > buf && r.p <= buf + len);
            //  what was skipped is exactly one valid value
            FUZZ_ASSERT (chan_mpk_valid (buf, (size_t) (r.p - buf), depths[i]));
            FUZZ_ASSERT (v == (chan_mpk_remaining (&r) == 0));
        }
    }
    //  a token walk: every item stays inside the buffer
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, buf, len);
    chan_mpk_obj_t o;
    int steps = 0;
    while (steps++ < 100000) {
        const uint8_t *before = r.p;
        if (chan_mpk_next (&r, &o) != 0) {
            FUZZ_ASSERT (r.p == before);
            break;
        }
        FUZZ_ASSERT (r.p > before && r.p <= buf + len);
        if (o.type == CHAN_MPK_STR || o.type == CHAN_MPK_BIN
            || o.type == CHAN_MPK_EXT)
            FUZZ_ASSERT ((const uint8_t *) o.ptr + o.len <= r.p);
        if (o.type == CHAN_MPK_ARRAY)
            FUZZ_ASSERT (o.v.n <= chan_mpk_remaining (&r));
        if (o.type == CHAN_MPK_MAP)
            FUZZ_ASSERT ((uint64_t) o.v.n * 2 <= chan_mpk_remaining (&r));
        if (o.type == CHAN_MPK_INT)
            FUZZ_ASSERT (o.v.i < 0);
    }
}

static void
s_envelope (const chan_req_t *req)
{
    //  id and ts as the switchboard would make them
    chan_id_gen_t gen = { 0, req->req | 1 };
    char id[CHAN_ID_LEN];
    chan_id_next (&gen, (int64_t) (req->req & 0xffffffffffffULL), id);
    const char *from = req->system.ptr ? req->system.ptr : "fuzz";
    size_t fromlen = req->system.ptr ? req->system.len : 4;
    const char *chan = req->chan.ptr ? req->chan.ptr : "@peer";
    size_t chanlen = req->chan.ptr ? req->chan.len : 5;

    chan_buf_t pairs, env, re;
    chan_buf_init (&pairs);
    chan_buf_init (&env);
    chan_buf_init (&re);
    chan_env_pairs (&pairs, id, CHAN_ID_LEN, 1700000000.5, from, fromlen, chan,
                    chanlen, req->to.ptr, req->to.len, req->corr.ptr,
                    req->corr.len, req->data.ptr, req->data.len);
    FUZZ_ASSERT (!pairs.oom);
    for (uint32_t attempt = 0; attempt < 2; attempt++) {
        chan_buf_reset (&env);
        chan_env_map (&env, pairs.data, pairs.len,
                      attempt ? (uint32_t) req->req : 0);
        FUZZ_ASSERT (!env.oom);
        FUZZ_ASSERT (chan_mpk_valid (env.data, env.len, AAAX_MAX_DEPTH));
    }
    //  the dead-letter rewrite of the same block
    int rc = chan_env_rechan (&re, pairs.data, pairs.len, "jobs.dlq", 8);
    FUZZ_ASSERT (rc == 0);
    chan_buf_reset (&env);
    chan_env_map (&env, re.data, re.len, 3);
    FUZZ_ASSERT (chan_mpk_valid (env.data, env.len, AAAX_MAX_DEPTH));
    //  data is the tail of both blocks, byte for byte
    FUZZ_ASSERT (pairs.len >= req->data.len && re.len >= req->data.len);
    FUZZ_ASSERT (memcmp (pairs.data + pairs.len - req->data.len, req->data.ptr,
                         req->data.len)
                 == 0);
    FUZZ_ASSERT (
        memcmp (re.data + re.len - req->data.len, req->data.ptr, req->data.len)
        == 0);
    chan_buf_fini (&pairs);
    chan_buf_fini (&env);
    chan_buf_fini (&re);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cmdlen = data[0];
    if (cmdlen > size - 1)
        cmdlen = size - 1;
    size_t bodylen = size - 1 - cmdlen;
    //  each frame in its own exact-size buffer
    uint8_t *cmd = (uint8_t *) malloc (cmdlen ? cmdlen : 1);
    uint8_t *body = (uint8_t *) malloc (bodylen ? bodylen : 1);
    if (!cmd || !body)
        abort ();
    memcpy (cmd, data + 1, cmdlen);
    memcpy (body, data + 1 + cmdlen, bodylen);

    chan_req_t req;
    char why[160];
    why[0] = 0;
    int rc =
        chan_req_decode (&req, cmd, cmdlen, body, bodylen, why, sizeof why);
    FUZZ_ASSERT (rc == 0 || rc == AAAX_EINVAL);
    FUZZ_ASSERT (memchr (why, 0, sizeof why) != NULL);
    if (rc != 0)
        FUZZ_ASSERT (why[0] != 0);

    uint64_t peeked = 0;
    bool found = chan_req_peek_req (body, bodylen, &peeked);
    if (req.has_req) {
        FUZZ_ASSERT (found);
        FUZZ_ASSERT (peeked == req.req);
    }

    if (rc == 0) {
        FUZZ_ASSERT (req.cmd > CHAN_CMD_UNKNOWN && req.cmd < CHAN_CMD_COUNT);
        FUZZ_ASSERT (req.has_req);
        FUZZ_ASSERT (chan_req_command (cmd, cmdlen) == req.cmd);
        FUZZ_ASSERT (chan_mpk_valid (body, bodylen, AAAX_MAX_DEPTH));
        FUZZ_ASSERT (req.max >= 1 && req.max <= AAAX_MAX_CLAIM);
        FUZZ_ASSERT (req.wait_ms <= CHAN_REQ_MAX_WAIT_MS);
        FUZZ_ASSERT (req.delay_ms <= CHAN_REQ_MAX_DELAY_MS);
        FUZZ_ASSERT (req.lease_ms <= CHAN_REQ_MAX_LEASE_MS);
        if (req.fields & CHAN_F_VERSION)
            FUZZ_ASSERT (req.version == AAAX_PROTOCOL_VERSION);
        const chan_span_t *spans[] = { &req.system, &req.token, &req.chan,
                                       &req.to,     &req.corr,  &req.key,
                                       &req.since,  &req.op,    &req.data };
        for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++)
            s_check_span (*spans[i], body, bodylen);
        if (req.key.ptr)
            FUZZ_ASSERT (!memchr (req.key.ptr, 0, req.key.len));
        if (req.since.ptr && req.since.len) {
            uint64_t seq;
            FUZZ_ASSERT (
                chan_id_parse (req.since.ptr, req.since.len, &seq, NULL));
            FUZZ_ASSERT (seq == req.since_seq);
        }
        if (req.channels.ptr)
            s_check_strs (req.channels, req.nchannels, body, bodylen, false);
        else
            FUZZ_ASSERT (req.nchannels == 0);
        if (req.ids.ptr)
            s_check_strs (req.ids, req.nids, body, bodylen, true);
        else
            FUZZ_ASSERT (req.nids == 0);
        if (req.data.ptr) {
            FUZZ_ASSERT (chan_mpk_valid (req.data.ptr, req.data.len,
                                         AAAX_MAX_DEPTH - 1));
            s_envelope (&req);
        }
        /*  A batch: nbatch values, each valid within the data limit,
            inside the span and ending at its end; never with data or a
            key; only on WRITE / SEND. */
        if (req.batch.ptr) {
            s_check_span (req.batch, body, bodylen);
            FUZZ_ASSERT (req.nbatch >= 1 && req.nbatch <= AAAX_MAX_BATCH);
            FUZZ_ASSERT (req.cmd == CHAN_CMD_WRITE || req.cmd == CHAN_CMD_SEND);
            FUZZ_ASSERT (!req.data.ptr && !req.key.ptr);
            size_t pos = 0;
            uint32_t count = 0;
            chan_span_t v;
            while (chan_req_next_value (req.batch, &pos, &v)) {
                FUZZ_ASSERT (v.ptr >= req.batch.ptr);
                FUZZ_ASSERT (v.ptr + v.len <= req.batch.ptr + req.batch.len);
                FUZZ_ASSERT (chan_mpk_valid (v.ptr, v.len, AAAX_MAX_DEPTH - 1));
                count++;
            }
            FUZZ_ASSERT (count == req.nbatch && pos == req.batch.len);
        } else
            FUZZ_ASSERT (req.nbatch == 0);
    }

    s_reader (body, bodylen);
    free (cmd);
    free (body);
    return 0;
}
