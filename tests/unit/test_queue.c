/*  test_queue.c — unit tests of work-queues (channels/chan_queue.c): claim
    order, leases and their expiry, attempts, NACK with and without delay,
    dead-lettering, holders, admission limits, and restoring a queue from the
    records a real hal_store kept. */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "aaax.h"
#include "chan_env.h"
#include "chan_id.h"
#include "chan_mpk.h"
#include "chan_queue.h"
#include "hal_store.h"
#include "testutil.h"

//  Helpers ---------------------------------------------------------------

/*  Envelope pairs for seq on chan with a string payload. */
static void
make_pairs (chan_buf_t *b, const char *chan, uint64_t seq, const char *data)
{
    char id[CHAN_ID_LEN];
    chan_id_format (1700000000000ULL + seq, seq, id);
    chan_buf_t d;
    chan_buf_init (&d);
    msgpack_packer pk;
    chan_buf_packer (&d, &pk);
    chan_pack_cstr (&pk, data);
    chan_buf_reset (b);
    chan_env_pairs (b, id, CHAN_ID_LEN, 1700000000.0 + (double) seq, "writer",
                    6, chan, strlen (chan), NULL, 0, NULL, 0, d.data, d.len);
    chan_buf_fini (&d);
}

static int
append (chan_queue_t *q, uint64_t seq)
{
    chan_buf_t b;
    chan_buf_init (&b);
    char payload[32];
    snprintf (payload, sizeof payload, "payload-%llu",
              (unsigned long long) seq);
    make_pairs (&b, chan_queue_name (q), seq, payload);
    int rc = chan_queue_append (q, seq, b.data, b.len);
    chan_buf_fini (&b);
    return rc;
}

static chan_queue_cfg_t
cfg (bool durable, uint32_t max_attempts, uint32_t max_len, uint64_t max_bytes)
{
    chan_queue_cfg_t c = { durable, max_attempts, max_len, max_bytes, 30000 };
    return c;
}

/*  Claims up to max and writes their seqs to seqs (and attempts). */
static size_t
claim (chan_queue_t *q, chan_holder_t *h, size_t max, uint32_t lease_ms,
       int64_t now, uint64_t *seqs, uint32_t *attempts)
{
    chan_qmsg_t *out[256];
    if (max > 256)
        max = 256;
    size_t n = chan_queue_claim (q, h, max, lease_ms, now, out);
    for (size_t i = 0; i < n; i++) {
        if (seqs)
            seqs[i] = chan_qmsg_seq (out[i]);
        if (attempts)
            attempts[i] = chan_qmsg_attempt (out[i]);
    }
    return n;
}

/*  Reads the `chan` and `data` string values of an envelope block. */
static void
pairs_fields (const uint8_t *p, size_t len, char *chan, char *data)
{
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, p, len);
    chan[0] = data[0] = 0;
    for (int i = 0; i < CHAN_ENV_PAIRS; i++) {
        chan_mpk_obj_t k, v;
        if (chan_mpk_next (&r, &k) != 0)
            return;
        const uint8_t *vs = r.p;
        if (chan_mpk_next (&r, &v) != 0)
            return;
        r.p = vs;
        chan_mpk_skip (&r, AAAX_MAX_DEPTH);
        char *dst = NULL;
        if (k.len == 4 && !memcmp (k.ptr, "chan", 4))
            dst = chan;
        else if (k.len == 4 && !memcmp (k.ptr, "data", 4))
            dst = data;
        if (dst && v.type == CHAN_MPK_STR && v.len < 64) {
            memcpy (dst, v.ptr, v.len);
            dst[v.len] = 0;
        }
    }
}

/*  Empties a queue (so that destroying it frees no message still in one of
    its heaps), then destroys it. */
static void
drain_destroy (chan_queue_t **q_p)
{
    chan_queue_t *q = *q_p;
    if (!q)
        return;
    chan_queue_tick (q, INT64_MAX / 4, INT64_MAX / 4);
    chan_holder_t tmp;
    chan_holder_init (&tmp);
    chan_qmsg_t *out[256];
    size_t n;
    while ((n = chan_queue_claim (q, &tmp, 256, 1000, 0, out)) > 0) {
        uint64_t seqs[256];
        for (size_t i = 0; i < n; i++)
            seqs[i] = chan_qmsg_seq (out[i]);
        for (size_t i = 0; i < n; i++)
            chan_queue_ack (q, &tmp, seqs[i]);
    }
    CHECK_EQ_INT (chan_queue_depth (q), 0);
    chan_queue_destroy (q_p);
    CHECK (*q_p == NULL);
}

static char s_tmpdir[256];

//  Tests -----------------------------------------------------------------

static void
test_append_claim (void)
{
    chan_queue_cfg_t c = cfg (true, 5, 0, 0);
    chan_queue_t *q = chan_queue_new ("jobs", &c, NULL);
    CHECK (q != NULL);
    CHECK_EQ_STR (chan_queue_name (q), "jobs");
    CHECK (!chan_queue_durable (q)); // no store: never durable
    CHECK_EQ_INT (chan_queue_lease_ms (q), 30000);
    CHECK (chan_queue_dlq (q) == NULL);
    CHECK_EQ_INT (chan_queue_next_due (q), INT64_MAX);
    chan_holder_t h;
    chan_holder_init (&h);
    uint64_t seqs[256];
    uint32_t att[256];
    CHECK_EQ_INT (claim (q, &h, 5, 1000, 0, seqs, att), 0);

    uint64_t total = 0;
    for (uint64_t s = 1; s <= 10; s++) {
        CHECK_EQ_INT (append (q, s * 10), 0);
        chan_buf_t b;
        chan_buf_init (&b);
        char payload[32];
        snprintf (payload, sizeof payload, "payload-%llu",
                  (unsigned long long) (s * 10));
        make_pairs (&b, "jobs", s * 10, payload);
        total += b.len;
        chan_buf_fini (&b);
    }
    CHECK_EQ_INT (chan_queue_depth (q), 10);
    CHECK_EQ_INT (chan_queue_ready (q), 10);
    CHECK_EQ_INT (chan_queue_bytes (q), total);

    CHECK_EQ_INT (claim (q, &h, 0, 1000, 0, seqs, att), 0);
    CHECK_EQ_INT (claim (q, &h, 3, 1000, 0, seqs, att), 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT (seqs[i], (i + 1) * 10);
        CHECK_EQ_INT (att[i], 1);
    }
    CHECK_EQ_INT (chan_queue_ready (q), 7);
    CHECK_EQ_INT (chan_queue_leased (q), 3);
    CHECK_EQ_INT (chan_queue_depth (q), 10);
    CHECK_EQ_INT (h.count, 3);
    CHECK_EQ_INT (claim (q, &h, 100, 1000, 0, seqs, att), 7);
    for (int i = 0; i < 7; i++)
        CHECK_EQ_INT (seqs[i], (i + 4) * 10);
    CHECK_EQ_INT (claim (q, &h, 100, 1000, 0, seqs, att), 0);
    CHECK_EQ_INT (chan_queue_leased (q), 10);
    CHECK_EQ_INT (chan_queue_next_due (q), 1000);

    //  the message as claimed: its pairs are the appended block
    chan_qmsg_t *out[1];
    chan_holder_t h2;
    chan_holder_init (&h2);
    CHECK_EQ_INT (append (q, 500), 0);
    CHECK_EQ_INT (chan_queue_claim (q, &h2, 1, 10, 0, out), 1);
    size_t plen;
    const uint8_t *p = chan_qmsg_pairs (out[0], &plen);
    char ch[64], data[64];
    pairs_fields (p, plen, ch, data);
    CHECK_EQ_STR (ch, "jobs");
    CHECK_EQ_STR (data, "payload-500");

    //  acks
    for (int i = 0; i < 10; i++)
        CHECK (chan_queue_ack (q, &h, (uint64_t) (i + 1) * 10));
    CHECK_EQ_INT (h.count, 0);
    CHECK_EQ_INT (chan_queue_depth (q), 1);
    CHECK (chan_queue_ack (q, &h2, 500));
    CHECK_EQ_INT (chan_queue_depth (q), 0);
    CHECK_EQ_INT (chan_queue_bytes (q), 0);
    CHECK_EQ_INT (chan_queue_leased (q), 0);
    CHECK_EQ_INT (chan_queue_next_due (q), INT64_MAX);
    drain_destroy (&q);
    chan_queue_destroy (&q); // NULL is fine
    chan_queue_destroy (NULL);
}

static void
test_lease_expiry (void)
{
    chan_queue_cfg_t c = cfg (false, 0, 0, 0);
    chan_queue_t *q = chan_queue_new ("q", &c, NULL);
    chan_holder_t h;
    chan_holder_init (&h);
    for (uint64_t s = 1; s <= 5; s++)
        append (q, s);
    uint64_t seqs[8];
    uint32_t att[8];
    CHECK_EQ_INT (claim (q, &h, 3, 100, 0, seqs, att), 3);
    CHECK_EQ_INT (claim (q, &h, 2, 100, 50, seqs, att), 2);
    CHECK_EQ_INT (chan_queue_next_due (q), 100);
    CHECK_EQ_INT (chan_queue_tick (q, 99, 0), 0);
    CHECK_EQ_INT (chan_queue_leased (q), 5);
    CHECK_EQ_INT (chan_queue_tick (q, 100, 0), 3);
    CHECK_EQ_INT (chan_queue_leased (q), 2);
    CHECK_EQ_INT (chan_queue_ready (q), 3);
    CHECK_EQ_INT (h.count, 2);
    CHECK_EQ_INT (chan_queue_next_due (q), 150);
    //  an expired lease can no longer be acked by its old holder
    CHECK (!chan_queue_ack (q, &h, 1));
    CHECK (!chan_queue_nack (q, &h, 2, 0, 100, 0));
    CHECK_EQ_INT (chan_queue_tick (q, 149, 0), 0);
    CHECK_EQ_INT (chan_queue_tick (q, 1000, 0), 2);
    CHECK_EQ_INT (h.count, 0);
    //  attempts count every delivery
    for (uint32_t round = 2; round <= 6; round++) {
        CHECK_EQ_INT (claim (q, &h, 10, 10, 2000 * round, seqs, att), 5);
        for (int i = 0; i < 5; i++) {
            CHECK_EQ_INT (seqs[i], i + 1); // back in seq order
            CHECK_EQ_INT (att[i], round);
        }
        CHECK_EQ_INT (chan_queue_tick (q, 2000 * round + 10, 0), 5);
    }
    CHECK_EQ_INT (chan_queue_depth (q), 5); // max_attempts 0: never dlq
    drain_destroy (&q);
}

static void
test_nack (void)
{
    chan_queue_cfg_t c = cfg (false, 0, 0, 0);
    chan_queue_t *q = chan_queue_new ("q", &c, NULL);
    chan_holder_t h, other;
    chan_holder_init (&h);
    chan_holder_init (&other);
    for (uint64_t s = 1; s <= 4; s++)
        append (q, s);
    uint64_t seqs[8];
    uint32_t att[8];
    CHECK_EQ_INT (claim (q, &h, 4, 1000, 0, seqs, att), 4);

    //  not the holder, not leased, unknown: nothing
    CHECK (!chan_queue_nack (q, &other, 1, 0, 10, 0));
    CHECK (!chan_queue_ack (q, &other, 1));
    CHECK (!chan_queue_nack (q, &h, 99, 0, 10, 0));
    CHECK (!chan_queue_ack (q, &h, 99));
    CHECK (!chan_queue_ack (q, &h, 0));
    CHECK_EQ_INT (chan_queue_leased (q), 4);

    //  without delay: ready at once
    CHECK (chan_queue_nack (q, &h, 2, 0, 10, 0));
    CHECK (!chan_queue_nack (q, &h, 2, 0, 10, 0)); // no longer held
    CHECK (!chan_queue_ack (q, &h, 2));
    CHECK_EQ_INT (chan_queue_ready (q), 1);
    CHECK_EQ_INT (chan_queue_leased (q), 3);
    CHECK_EQ_INT (h.count, 3);
    //  with delay: waits until due
    CHECK (chan_queue_nack (q, &h, 3, 500, 10, 0));
    CHECK_EQ_INT (chan_queue_delayed (q), 1);
    CHECK_EQ_INT (chan_queue_ready (q), 1);
    CHECK_EQ_INT (chan_queue_depth (q), 4);
    CHECK_EQ_INT (chan_queue_next_due (q), 510);
    //  claim now: only 2 (attempt 2)
    CHECK_EQ_INT (claim (q, &h, 10, 1000, 20, seqs, att), 1);
    CHECK_EQ_INT (seqs[0], 2);
    CHECK_EQ_INT (att[0], 2);
    CHECK_EQ_INT (chan_queue_tick (q, 509, 0), 0);
    CHECK_EQ_INT (chan_queue_delayed (q), 1);
    CHECK_EQ_INT (chan_queue_tick (q, 510, 0), 1);
    CHECK_EQ_INT (chan_queue_delayed (q), 0);
    CHECK_EQ_INT (claim (q, &h, 10, 1000, 520, seqs, att), 1);
    CHECK_EQ_INT (seqs[0], 3);
    CHECK_EQ_INT (att[0], 2);
    //  the holder's acks still work on what it holds
    CHECK (chan_queue_ack (q, &h, 1));
    CHECK (chan_queue_ack (q, &h, 2));
    CHECK (chan_queue_ack (q, &h, 3));
    CHECK (chan_queue_ack (q, &h, 4));
    CHECK_EQ_INT (chan_queue_depth (q), 0);
    CHECK_EQ_INT (h.count, 0);
    //  an ACK of a ready (unleased) message is ignored
    append (q, 5);
    CHECK (!chan_queue_ack (q, &h, 5));
    CHECK (!chan_queue_nack (q, &h, 5, 0, 0, 0));
    CHECK_EQ_INT (chan_queue_depth (q), 1);
    drain_destroy (&q);
}

static void
test_requeue_order (void)
{
    chan_queue_cfg_t c = cfg (false, 0, 0, 0);
    chan_queue_t *q = chan_queue_new ("q", &c, NULL);
    chan_holder_t h;
    chan_holder_init (&h);
    for (uint64_t s = 1; s <= 5; s++)
        append (q, s);
    uint64_t seqs[16];
    CHECK_EQ_INT (claim (q, &h, 3, 1000, 0, seqs, NULL), 3); // 1 2 3
    chan_queue_nack (q, &h, 3, 0, 0, 0);
    chan_queue_nack (q, &h, 1, 0, 0, 0);
    append (q, 6);
    //  ready: 1, 3 (came back), 4, 5, 6 (fresh): served by seq
    CHECK_EQ_INT (claim (q, &h, 16, 1000, 0, seqs, NULL), 5);
    uint64_t want[] = { 1, 3, 4, 5, 6 };
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT (seqs[i], want[i]);
    //  all back in a scrambled order, delays ending in another order
    chan_queue_nack (q, &h, 5, 0, 0, 0);
    chan_queue_nack (q, &h, 2, 300, 0, 0);
    chan_queue_nack (q, &h, 6, 100, 0, 0);
    chan_queue_nack (q, &h, 1, 200, 0, 0);
    chan_queue_nack (q, &h, 4, 0, 0, 0);
    chan_queue_nack (q, &h, 3, 0, 0, 0);
    CHECK_EQ_INT (chan_queue_tick (q, 1000, 0), 3);
    CHECK_EQ_INT (claim (q, &h, 16, 1000, 1000, seqs, NULL), 6);
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT (seqs[i], i + 1);
    //  interleaving a fresh append between returned ones
    chan_queue_nack (q, &h, 6, 0, 0, 0);
    chan_queue_nack (q, &h, 2, 0, 0, 0);
    append (q, 7);
    append (q, 8);
    chan_queue_nack (q, &h, 4, 0, 0, 0);
    CHECK_EQ_INT (claim (q, &h, 2, 1000, 0, seqs, NULL), 2);
    CHECK_EQ_INT (seqs[0], 2);
    CHECK_EQ_INT (seqs[1], 4);
    CHECK_EQ_INT (claim (q, &h, 16, 1000, 0, seqs, NULL), 3);
    CHECK_EQ_INT (seqs[0], 6);
    CHECK_EQ_INT (seqs[1], 7);
    CHECK_EQ_INT (seqs[2], 8);
    drain_destroy (&q);
}

static void
test_dead_letter (void)
{
    chan_queue_cfg_t c = cfg (false, 2, 0, 0);
    chan_queue_cfg_t dc = cfg (false, 0, 1, 0); // a full dlq still takes
    chan_queue_t *q = chan_queue_new ("q", &c, NULL);
    chan_queue_t *dlq = chan_queue_new ("q.dlq", &dc, NULL);
    chan_queue_set_dlq (q, dlq);
    CHECK (chan_queue_dlq (q) == dlq);
    chan_holder_t h;
    chan_holder_init (&h);
    for (uint64_t s = 1; s <= 4; s++)
        append (q, s);
    uint64_t seqs[8];
    uint32_t att[8];

    //  seq 1: NACK twice -> dlq on the second
    CHECK_EQ_INT (claim (q, &h, 1, 100, 0, seqs, att), 1);
    CHECK_EQ_INT (seqs[0], 1);
    CHECK (chan_queue_nack (q, &h, 1, 0, 0, 0));
    CHECK_EQ_INT (chan_queue_depth (q), 4);
    CHECK_EQ_INT (claim (q, &h, 1, 100, 0, seqs, att), 1);
    CHECK_EQ_INT (att[0], 2);
    CHECK (chan_queue_nack (q, &h, 1, 5000, 0, 0)); // delay is moot
    CHECK_EQ_INT (chan_queue_depth (q), 3);
    CHECK_EQ_INT (chan_queue_delayed (q), 0);
    CHECK_EQ_INT (chan_queue_depth (dlq), 1);
    CHECK_EQ_INT (chan_queue_ready (dlq), 1);
    CHECK_EQ_INT (h.count, 0);

    //  seq 2: lease expiry twice -> dlq (a full dlq is not a limit)
    CHECK_EQ_INT (claim (q, &h, 1, 100, 0, seqs, att), 1);
    CHECK_EQ_INT (seqs[0], 2);
    CHECK_EQ_INT (chan_queue_tick (q, 100, 0), 1);
    CHECK_EQ_INT (claim (q, &h, 1, 100, 100, seqs, att), 1);
    CHECK_EQ_INT (seqs[0], 2);
    CHECK_EQ_INT (att[0], 2);
    CHECK_EQ_INT (chan_queue_tick (q, 200, 0), 0); // gone to the dlq
    CHECK_EQ_INT (chan_queue_depth (q), 2);
    CHECK_EQ_INT (chan_queue_depth (dlq), 2);
    CHECK_EQ_INT (chan_queue_admit (dlq, 1), AAAX_ELIMIT);

    //  seq 3: holder release twice -> dlq; fn reports q, not the dlq
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_INT (claim (q, &h, 1, 100, 0, seqs, att), 1);
        CHECK_EQ_INT (seqs[0], 3);
        chan_holder_release (&h, 0, 0, NULL, NULL);
    }
    CHECK_EQ_INT (chan_queue_depth (q), 1);
    CHECK_EQ_INT (chan_queue_depth (dlq), 3);

    //  the dead letters: same seq, chan rewritten, data unchanged, attempt
    //  starting again, served by seq
    chan_holder_t dh;
    chan_holder_init (&dh);
    chan_qmsg_t *out[8];
    CHECK_EQ_INT (chan_queue_claim (dlq, &dh, 8, 100, 0, out), 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT (chan_qmsg_seq (out[i]), i + 1);
        CHECK_EQ_INT (chan_qmsg_attempt (out[i]), 1);
        size_t len;
        const uint8_t *p = chan_qmsg_pairs (out[i], &len);
        char ch[64], data[64], want[64];
        pairs_fields (p, len, ch, data);
        CHECK_EQ_STR (ch, "q.dlq");
        snprintf (want, sizeof want, "payload-%d", i + 1);
        CHECK_EQ_STR (data, want);
        //  and the rest of the envelope is the original one
        chan_buf_t orig, re;
        chan_buf_init (&orig);
        chan_buf_init (&re);
        make_pairs (&orig, "q", (uint64_t) i + 1, want);
        chan_env_rechan (&re, orig.data, orig.len, "q.dlq", 5);
        CHECK_EQ_INT (re.len, len);
        CHECK (memcmp (re.data, p, len) == 0);
        chan_buf_fini (&orig);
        chan_buf_fini (&re);
    }
    //  the dlq never dead-letters (no dlq of its own)
    chan_holder_release (&dh, 0, 0, NULL, NULL);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT (chan_queue_claim (dlq, &dh, 8, 100, 0, out), 3);
        chan_holder_release (&dh, 0, 0, NULL, NULL);
    }
    CHECK_EQ_INT (chan_queue_depth (dlq), 3);

    //  no dlq set: a queue with max_attempts keeps its messages
    chan_queue_t *lone = chan_queue_new ("lone", &c, NULL);
    append (lone, 1);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT (claim (lone, &h, 1, 100, 0, seqs, att), 1);
        CHECK_EQ_INT (att[0], i + 1);
        CHECK (chan_queue_nack (lone, &h, 1, 0, 0, 0));
    }
    CHECK_EQ_INT (chan_queue_depth (lone), 1);
    drain_destroy (&lone);
    drain_destroy (&q);
    drain_destroy (&dlq);
}

typedef struct {
    chan_queue_t *q[4];
    int calls[4];
} s_report_t;

static void
s_on_ready (void *arg, chan_queue_t *queue)
{
    s_report_t *r = (s_report_t *) arg;
    for (int i = 0; i < 4; i++)
        if (r->q[i] == queue)
            r->calls[i]++;
}

static void
test_holder_release (void)
{
    chan_queue_cfg_t c = cfg (false, 0, 0, 0);
    chan_queue_cfg_t c1 = cfg (false, 1, 0, 0);
    chan_queue_t *a = chan_queue_new ("a", &c, NULL);
    chan_queue_t *b = chan_queue_new ("b", &c, NULL);
    chan_queue_t *d = chan_queue_new ("d", &c1, NULL);
    chan_queue_t *ddlq = chan_queue_new ("d.dlq", &c, NULL);
    chan_queue_set_dlq (d, ddlq);
    for (uint64_t s = 1; s <= 3; s++) {
        append (a, s);
        append (b, 10 + s);
        append (d, 20 + s);
    }
    chan_holder_t h, keep;
    chan_holder_init (&h);
    chan_holder_init (&keep);
    uint64_t seqs[8];
    uint32_t att[8];
    CHECK_EQ_INT (claim (a, &h, 2, 1000, 0, seqs, att), 2);
    CHECK_EQ_INT (claim (b, &h, 1, 1000, 0, seqs, att), 1);
    CHECK_EQ_INT (claim (d, &h, 1, 1000, 0, seqs, att), 1);
    CHECK_EQ_INT (claim (a, &keep, 1, 1000, 0, seqs, att), 1);
    CHECK_EQ_INT (h.count, 4);

    s_report_t rep;
    memset (&rep, 0, sizeof rep);
    rep.q[0] = a;
    rep.q[1] = b;
    rep.q[2] = d;
    rep.q[3] = ddlq;
    chan_holder_release (&h, 0, 0, s_on_ready, &rep);
    CHECK_EQ_INT (h.count, 0);
    CHECK (h.head == NULL);
    CHECK_EQ_INT (rep.calls[0], 2);
    CHECK_EQ_INT (rep.calls[1], 1);
    CHECK_EQ_INT (rep.calls[2], 1); // dead-lettered: its queue is reported
    CHECK_EQ_INT (rep.calls[3], 0);
    CHECK_EQ_INT (chan_queue_leased (a), 1); // the other holder's stays
    CHECK_EQ_INT (chan_queue_ready (a), 2);
    CHECK_EQ_INT (chan_queue_leased (b), 0);
    CHECK_EQ_INT (chan_queue_ready (b), 3);
    CHECK_EQ_INT (chan_queue_depth (d), 2);
    CHECK_EQ_INT (chan_queue_depth (ddlq), 1);
    CHECK_EQ_INT (keep.count, 1);
    CHECK_EQ_INT (chan_queue_next_due (b), INT64_MAX);
    //  the released ones come back with their attempt counted
    CHECK_EQ_INT (claim (a, &h, 8, 1000, 0, seqs, att), 2);
    CHECK_EQ_INT (seqs[0], 1);
    CHECK_EQ_INT (att[0], 2);
    CHECK_EQ_INT (seqs[1], 2);
    CHECK_EQ_INT (att[1], 2);
    //  releasing an empty holder does nothing
    memset (&rep.calls, 0, sizeof rep.calls);
    chan_holder_t none;
    chan_holder_init (&none);
    chan_holder_release (&none, 0, 0, s_on_ready, &rep);
    CHECK_EQ_INT (rep.calls[0] + rep.calls[1] + rep.calls[2], 0);
    drain_destroy (&a);
    drain_destroy (&b);
    drain_destroy (&d);
    drain_destroy (&ddlq);
}

static void
test_admit (void)
{
    chan_buf_t pb;
    chan_buf_init (&pb);
    make_pairs (&pb, "q", 1, "payload-1");
    size_t one = pb.len;
    chan_buf_fini (&pb);

    chan_queue_cfg_t c = cfg (false, 0, 3, 0);
    chan_queue_t *q = chan_queue_new ("q", &c, NULL);
    for (uint64_t s = 1; s <= 3; s++) {
        CHECK_EQ_INT (chan_queue_admit (q, one), 0);
        append (q, s);
    }
    CHECK_EQ_INT (chan_queue_admit (q, 1), AAAX_ELIMIT);
    CHECK_EQ_INT (chan_queue_admit (q, 0), AAAX_ELIMIT);
    //  leased messages still count
    chan_holder_t h;
    chan_holder_init (&h);
    uint64_t seqs[4];
    claim (q, &h, 3, 100, 0, seqs, NULL);
    CHECK_EQ_INT (chan_queue_admit (q, 1), AAAX_ELIMIT);
    CHECK (chan_queue_ack (q, &h, 2));
    CHECK_EQ_INT (chan_queue_admit (q, one), 0);
    //  n at once (a WRITE batch): 2 in a queue of at most 3
    CHECK_EQ_INT (chan_queue_admit_n (q, 1, one), 0);
    CHECK_EQ_INT (chan_queue_admit_n (q, 2, 2 * one), AAAX_ELIMIT);
    CHECK_EQ_INT (chan_queue_admit_n (q, 4, 4 * one), AAAX_ELIMIT);
    drain_destroy (&q);

    //  max_bytes: bytes + new must stay within
    chan_queue_cfg_t cb = cfg (false, 0, 0, 2 * one + 5);
    q = chan_queue_new ("q", &cb, NULL);
    CHECK_EQ_INT (chan_queue_admit (q, 2 * one + 5), 0);
    CHECK_EQ_INT (chan_queue_admit (q, 2 * one + 6), AAAX_ELIMIT);
    append (q, 1);
    append (q, 2);
    CHECK_EQ_INT (chan_queue_bytes (q), 2 * one);
    CHECK_EQ_INT (chan_queue_admit (q, 5), 0);
    CHECK_EQ_INT (chan_queue_admit (q, 6), AAAX_ELIMIT);
    CHECK_EQ_INT (chan_queue_admit (q, one), AAAX_ELIMIT);
    claim (q, &h, 1, 100, 0, seqs, NULL);
    CHECK (chan_queue_ack (q, &h, 1));
    CHECK_EQ_INT (chan_queue_bytes (q), one);
    CHECK_EQ_INT (chan_queue_admit (q, one), 0);
    drain_destroy (&q);

    //  no limits
    chan_queue_cfg_t cn = cfg (false, 0, 0, 0);
    q = chan_queue_new ("q", &cn, NULL);
    CHECK_EQ_INT (chan_queue_admit (q, SIZE_MAX / 2), 0);
    drain_destroy (&q);
}

static void
test_keys (void)
{
    uint8_t key[AAAX_MAX_NAME + 10];
    char name[AAAX_MAX_NAME + 1];
    uint64_t seq;
    size_t klen = chan_queue_key ("jobs", 0x0102030405060708ULL, key);
    CHECK_EQ_INT (klen, 4 + 9);
    CHECK (memcmp (key, "jobs\0\x01\x02\x03\x04\x05\x06\x07\x08", 13) == 0);
    CHECK (chan_queue_parse_key (key, klen, name, &seq));
    CHECK_EQ_STR (name, "jobs");
    CHECK (seq == 0x0102030405060708ULL);
    //  keys sort by (name, seq): big-endian seq
    uint8_t k1[AAAX_MAX_NAME + 10], k2[AAAX_MAX_NAME + 10];
    chan_queue_key ("q", 255, k1);
    chan_queue_key ("q", 256, k2);
    CHECK (memcmp (k1, k2, 10) < 0);
    //  the longest name
    char longname[AAAX_MAX_NAME + 1];
    memset (longname, 'x', AAAX_MAX_NAME);
    longname[AAAX_MAX_NAME] = 0;
    klen = chan_queue_key (longname, UINT64_MAX, key);
    CHECK_EQ_INT (klen, AAAX_MAX_NAME + 9);
    CHECK (chan_queue_parse_key (key, klen, name, &seq));
    CHECK_EQ_STR (name, longname);
    CHECK (seq == UINT64_MAX);
    //  not such keys
    CHECK (!chan_queue_parse_key (key, 9, name, &seq)); // no name
    CHECK (!chan_queue_parse_key ("\0abcdefgh", 9, name, &seq));
    CHECK (!chan_queue_parse_key ("ab", 2, name, &seq));
    uint8_t nosep[13];
    memcpy (nosep, "jobsX\x01\x02\x03\x04\x05\x06\x07\x08", 13);
    CHECK (!chan_queue_parse_key (nosep, 13, name, &seq));
    uint8_t nul[14];
    memcpy (nul, "jo\0bs\0\x01\x02\x03\x04\x05\x06\x07\x08", 14);
    CHECK (!chan_queue_parse_key (nul, 14, name, &seq)); // NUL in the name
    uint8_t toolong[AAAX_MAX_NAME + 11];
    memset (toolong, 'y', sizeof toolong);
    toolong[AAAX_MAX_NAME + 1] = 0;
    CHECK (!chan_queue_parse_key (toolong, AAAX_MAX_NAME + 10, name, &seq));
}

//  Restore from a real store ------------------------------------------------

typedef struct {
    chan_queue_t *byname[2];
    int restored, failed, foreign;
    int64_t now, wall;
} s_restore_t;

static int
s_restore_cb (void *arg, const void *key, size_t klen, const void *val,
              size_t vlen)
{
    s_restore_t *r = (s_restore_t *) arg;
    char name[AAAX_MAX_NAME + 1];
    uint64_t seq;
    if (!chan_queue_parse_key (key, klen, name, &seq)) {
        r->failed++;
        return 0;
    }
    for (int i = 0; i < 2; i++)
        if (r->byname[i] && !strcmp (chan_queue_name (r->byname[i]), name)) {
            if (chan_queue_restore (r->byname[i], seq, val, vlen, r->now,
                                    r->wall)
                == 0)
                r->restored++;
            else
                r->failed++;
            return 0;
        }
    r->foreign++;
    return 0;
}

static void
restore_into (hal_store_t *st, chan_queue_t *q, chan_queue_t *dlq, int64_t now,
              int64_t wall, s_restore_t *r)
{
    memset (r, 0, sizeof *r);
    r->byname[0] = q;
    r->byname[1] = dlq;
    r->now = now;
    r->wall = wall;
    CHECK_EQ_INT (hal_store_scan (st, HAL_DB_QUEUE, s_restore_cb, r), 0);
}

static void
test_restore (void)
{
    snprintf (s_tmpdir, sizeof s_tmpdir, "/tmp/aaax-test-queue-XXXXXX");
    CHECK (mkdtemp (s_tmpdir) != NULL);
    char dir[300], err[256];
    snprintf (dir, sizeof dir, "%s/store", s_tmpdir);
    hal_store_t *st = hal_store_open (dir, 64u << 20, err, sizeof err);
    CHECK (st != NULL);
    if (!st)
        return;

    chan_queue_cfg_t c = cfg (true, 3, 0, 0);
    chan_queue_cfg_t dc = cfg (true, 0, 0, 0);
    chan_queue_t *q = chan_queue_new ("jobs", &c, st);
    chan_queue_t *dlq = chan_queue_new ("jobs.dlq", &dc, st);
    chan_queue_t *other = chan_queue_new ("other", &dc, st);
    CHECK (chan_queue_durable (q));
    chan_queue_set_dlq (q, dlq);
    //  seq 5 carries a payload over 1 KiB (the record is malloc'd)
    char big[3000];
    memset (big, 'B', sizeof big - 1);
    big[sizeof big - 1] = 0;
    chan_buf_t orig[8];
    for (uint64_t s = 1; s <= 6; s++) {
        chan_buf_init (&orig[s]);
        char payload[32];
        snprintf (payload, sizeof payload, "payload-%llu",
                  (unsigned long long) s);
        make_pairs (&orig[s], "jobs", s, s == 5 ? big : payload);
        CHECK_EQ_INT (chan_queue_append (q, s, orig[s].data, orig[s].len), 0);
    }
    append (other, 100);
    CHECK (hal_store_pending (st));

    chan_holder_t h;
    chan_holder_init (&h);
    uint64_t seqs[8];
    uint32_t att[8];
    CHECK_EQ_INT (claim (q, &h, 3, 5000, 1000, seqs, att), 3); // 1 2 3
    CHECK (chan_queue_ack (q, &h, 1));
    CHECK (chan_queue_nack (q, &h, 2, 0, 1000, 50000));
    CHECK (chan_queue_nack (q, &h, 3, 10000, 1000, 50000)); // until 60000
    //  seq 2 to the dlq: two more deliveries without an ACK
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT (claim (q, &h, 1, 5000, 1000, seqs, att), 1);
        CHECK_EQ_INT (seqs[0], 2);
        CHECK (chan_queue_nack (q, &h, 2, 0, 1000, 50000));
    }
    CHECK_EQ_INT (chan_queue_depth (dlq), 1);
    //  seq 4 leased at the "crash": its claim is not recorded
    CHECK_EQ_INT (claim (q, &h, 1, 5000, 1000, seqs, att), 1);
    CHECK_EQ_INT (seqs[0], 4);
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    CHECK (!hal_store_pending (st));

    //  Restore, at a wall time before seq 3's delay ends.
    chan_queue_t *q2 = chan_queue_new ("jobs", &c, st);
    chan_queue_t *dlq2 = chan_queue_new ("jobs.dlq", &dc, st);
    chan_queue_set_dlq (q2, dlq2);
    s_restore_t r;
    restore_into (st, q2, dlq2, 0, 55000, &r);
    CHECK_EQ_INT (r.restored, 5); // jobs 3 4 5 6, jobs.dlq 2
    CHECK_EQ_INT (r.failed, 0);
    CHECK_EQ_INT (r.foreign, 1);     // other
    CHECK (!hal_store_pending (st)); // restoring writes nothing
    CHECK_EQ_INT (chan_queue_depth (q2), 4);
    CHECK_EQ_INT (chan_queue_ready (q2), 3);
    CHECK_EQ_INT (chan_queue_delayed (q2), 1);
    CHECK_EQ_INT (chan_queue_leased (q2), 0);
    CHECK_EQ_INT (chan_queue_next_due (q2), 5000);
    CHECK_EQ_INT (chan_queue_bytes (q2),
                  orig[3].len + orig[4].len + orig[5].len + orig[6].len);
    CHECK_EQ_INT (chan_queue_depth (dlq2), 1);
    //  compare with the originals
    chan_holder_t h2;
    chan_holder_init (&h2);
    chan_qmsg_t *out[8];
    CHECK_EQ_INT (chan_queue_claim (q2, &h2, 8, 100000, 0, out), 3);
    for (int i = 0; i < 3; i++) {
        uint64_t s = chan_qmsg_seq (out[i]);
        CHECK_EQ_INT (s, 4 + i);
        CHECK_EQ_INT (chan_qmsg_attempt (out[i]), 1);
        size_t len;
        const uint8_t *p = chan_qmsg_pairs (out[i], &len);
        CHECK_EQ_INT (len, orig[s].len);
        CHECK (memcmp (p, orig[s].data, len) == 0);
    }
    CHECK_EQ_INT (chan_queue_tick (q2, 4999, 0), 0);
    CHECK_EQ_INT (chan_queue_tick (q2, 5000, 0), 1);
    CHECK_EQ_INT (chan_queue_claim (q2, &h2, 8, 1000, 5000, out), 1);
    CHECK_EQ_INT (chan_qmsg_seq (out[0]), 3);
    CHECK_EQ_INT (chan_qmsg_attempt (out[0]), 2); // one recorded + this one
    chan_holder_t dh;
    chan_holder_init (&dh);
    CHECK_EQ_INT (chan_queue_claim (dlq2, &dh, 8, 1000, 0, out), 1);
    CHECK_EQ_INT (chan_qmsg_seq (out[0]), 2);
    CHECK_EQ_INT (chan_qmsg_attempt (out[0]), 1);
    {
        size_t len;
        const uint8_t *p = chan_qmsg_pairs (out[0], &len);
        char ch[64], data[64];
        pairs_fields (p, len, ch, data);
        CHECK_EQ_STR (ch, "jobs.dlq");
        CHECK_EQ_STR (data, "payload-2");
    }
    chan_holder_release (&h2, 0, 0, NULL, NULL);
    chan_holder_release (&dh, 0, 0, NULL, NULL);
    //  those releases (and the drains below) write records: drop them by
    //  closing the store without a commit
    drain_destroy (&q2);
    drain_destroy (&dlq2);
    drain_destroy (&q);
    drain_destroy (&dlq);
    drain_destroy (&other);

    //  Restore again at a wall time after seq 3's delay: ready at once and,
    //  having come back once, it is served before the fresh ones by seq.
    hal_store_destroy (&st);
    st = hal_store_open (dir, 64u << 20, err, sizeof err);
    CHECK (st != NULL);
    if (!st)
        return;
    chan_queue_t *q3 = chan_queue_new ("jobs", &c, st);
    restore_into (st, q3, NULL, 0, 70000, &r);
    CHECK_EQ_INT (r.restored, 4);
    CHECK_EQ_INT (r.foreign, 2);
    CHECK_EQ_INT (chan_queue_ready (q3), 4);
    CHECK_EQ_INT (chan_queue_delayed (q3), 0);
    CHECK_EQ_INT (claim (q3, &h2, 8, 1000, 0, seqs, att), 4);
    uint64_t want[] = { 3, 4, 5, 6 };
    uint32_t wantatt[] = { 2, 1, 1, 1 };
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT (seqs[i], want[i]);
        CHECK_EQ_INT (att[i], wantatt[i]);
    }
    //  ACKs delete the records
    for (int i = 0; i < 4; i++)
        CHECK (chan_queue_ack (q3, &h2, want[i]));
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    chan_queue_t *q4 = chan_queue_new ("jobs", &c, st);
    restore_into (st, q4, NULL, 0, 70000, &r);
    CHECK_EQ_INT (r.restored, 0);
    CHECK_EQ_INT (chan_queue_depth (q4), 0);

    //  records this version cannot read
    uint8_t bad[20] = { 2 };
    CHECK_EQ_INT (chan_queue_restore (q4, 9, bad, sizeof bad, 0, 0),
                  AAAX_EINVAL);
    CHECK_EQ_INT (chan_queue_restore (q4, 9, bad, 15, 0, 0), AAAX_EINVAL);
    bad[0] = 1;
    CHECK_EQ_INT (chan_queue_restore (q4, 9, bad, 15, 0, 0), AAAX_EINVAL);
    CHECK_EQ_INT (chan_queue_depth (q4), 0);

    drain_destroy (&q3);
    drain_destroy (&q4);
    for (int s = 1; s <= 6; s++)
        chan_buf_fini (&orig[s]);
    hal_store_destroy (&st);
    tu_rmrf (dir);
    rmdir (s_tmpdir);
}

/*  chan_queue_destroy must free a queue that still holds messages in its
    heaps (leased, delayed, returned) — "destroy queues only at shutdown":
    at shutdown they are not drained. Run last: under ASan a use after free
    in here aborts the program. */
static void
test_destroy_nonempty (void)
{
    chan_queue_cfg_t c = cfg (false, 0, 0, 0);
    chan_queue_t *q = chan_queue_new ("q", &c, NULL);
    chan_holder_t h;
    chan_holder_init (&h);
    for (uint64_t s = 1; s <= 6; s++)
        append (q, s);
    uint64_t seqs[8];
    CHECK_EQ_INT (claim (q, &h, 4, 1000, 0, seqs, NULL), 4);
    CHECK (chan_queue_nack (q, &h, 1, 0, 0, 0));   // returned: back heap
    CHECK (chan_queue_nack (q, &h, 2, 500, 0, 0)); // delayed: timed heap
    //  3 and 4 leased (timed heap), 5 and 6 fresh
    chan_queue_destroy (&q);
    CHECK (q == NULL);
    CHECK_EQ_INT (h.count, 0); // the holder no longer lists them
    CHECK (h.head == NULL);
}

int
main (void)
{
    test_append_claim ();
    test_lease_expiry ();
    test_nack ();
    test_requeue_order ();
    test_dead_letter ();
    test_holder_release ();
    test_admit ();
    test_keys ();
    test_restore ();
    test_destroy_nonempty ();
    TEST_DONE ();
}
