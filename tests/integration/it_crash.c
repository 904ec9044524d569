/*  it_crash.c — the crash test. Round after round on one data directory:
    producers stream pipelined durable WRITEs to a work-queue and SENDs to a
    mailbox, a consumer CLAIMs and ACKs, and at a random moment aaaxd gets
    SIGKILL. After a restart the test drains the queue and the mailbox and
    checks, for every message:
      - a WRITE/SEND that got its OK is there, unless its ACK got an OK or
        was in flight at the kill;
      - a message whose ACK got its OK never comes back;
      - nothing comes back twice.
    usage: it_crash AAAXD [ROUNDS] */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "../unit/testutil.h"
#include "aaax.h"
#include "hal_clock.h"
#include "itlib.h"

#define MAXV 2000000
#define WINDOW 256

enum { V_NONE = 0, V_SENT, V_WRITE_OK, V_CLAIMED, V_ACK_SENT, V_ACK_OK };

typedef struct {
    uint8_t *state;   /* per value: V_* */
    uint8_t *seen;    /* drained after a restart */
    uint64_t next;    /* next value to write */
    uint64_t *reqval; /* producer req -> value */
    size_t reqcap;
} s_track_t;

static const char *s_config =
    "return {\n"
    "  heartbeat_ms = 1000,\n"
    "  channels = {\n"
    "    { name = \"crash.q\", kind = \"work-queue\", durable = true,\n"
    "      max_attempts = 1000, max_len = 10000000 },\n"
    "  },\n"
    "  policy = {\n"
    "    { subject = \"*\", action = \"chan.*\", target = \"crash.q\", effect "
    "= "
    "\"allow\" },\n"
    "  },\n"
    "}\n";

/*  Requests are numbered from 1 per client and HELLO took 1: the n-th
    write after it has req n + 2. */
#define REQ_BASE 2

static void
s_send_write (chan_client_t *c, s_track_t *t, bool mailbox)
{
    uint64_t v = t->next++;
    chan_body_t b;
    chan_body_init (&b);
    if (mailbox)
        chan_body_str (&b, "to", "crash-sink");
    else
        chan_body_str (&b, "chan", "crash.q");
    chan_body_uint (&b, "data", v);
    uint64_t req;
    if (chan_client_send (c, mailbox ? "SEND" : "WRITE", &b, &req) == 0) {
        t->state[v] = V_SENT;
        if (req - REQ_BASE < t->reqcap)
            t->reqval[req - REQ_BASE] = v;
    }
    chan_body_fini (&b);
}

/*  One round: stream until the kill, then restart and verify. Returns the
    number of acknowledged writes checked. */
static uint64_t
s_round (it_kernel_t *k, s_track_t *q, s_track_t *m, int round)
{
    const char *chans[] = { "crash.q", NULL };
    chan_client_t *prod = it_dock (k, "crash-producer", chans);
    chan_client_t *mprod = it_dock (k, "crash-mailer", NULL);
    chan_client_t *cons = it_dock (k, "crash-consumer", chans);
    CHECK (prod && mprod && cons);
    if (!prod || !mprod || !cons)
        return 0;
    memset (q->reqval, 0, q->reqcap * sizeof (uint64_t));
    memset (m->reqval, 0, m->reqcap * sizeof (uint64_t));
    size_t pout = 0, mout = 0;
    uint64_t qv0 = q->next, mv0 = m->next;
    /*  Odd rounds consume while producing; even rounds only produce, so a
        backlog of acknowledged writes is on disk when the kill comes. */
    bool claiming = round % 2 == 0;
    uint64_t write_oks = 0, mail_oks = 0, ack_oks = 0;
    uint64_t ackreq = 0;
    uint64_t batch[500];
    size_t nbatch = 0;
    int64_t kill_at = hal_clock_mono_ms () + 150 + (random () % 900);
    zmq_pollitem_t items[3] = {
        { chan_client_socket (prod), 0, ZMQ_POLLIN, 0 },
        { chan_client_socket (mprod), 0, ZMQ_POLLIN, 0 },
        { chan_client_socket (cons), 0, ZMQ_POLLIN, 0 },
    };
    while (hal_clock_mono_ms () < kill_at) {
        while (pout < WINDOW && q->next < MAXV
               && q->next - qv0 < q->reqcap - 1) {
            s_send_write (prod, q, false);
            pout++;
        }
        while (mout < WINDOW / 4 && m->next < MAXV
               && m->next - mv0 < m->reqcap - 1) {
            s_send_write (mprod, m, true);
            mout++;
        }
        if (!claiming && round % 2 == 1) {
            chan_body_t b;
            chan_body_init (&b);
            chan_body_str (&b, "chan", "crash.q");
            chan_body_uint (&b, "max", 500);
            chan_body_uint (&b, "wait_ms", 50);
            chan_client_send (cons, "CLAIM", &b, NULL);
            chan_body_fini (&b);
            claiming = true;
        }
        if (zmq_poll (items, 3, 10) <= 0)
            continue;
        chan_reply_t r;
        while ((items[0].revents & ZMQ_POLLIN)
               && chan_client_recv (prod, &r, 0) == 0) {
            uint64_t req;
            if (chan_reply_code (&r) == 0
                && chan_obj_get_uint (&r.body, "req", &req)) {
                uint64_t v = q->reqval[req - REQ_BASE];
                if (q->state[v] == V_SENT)
                    q->state[v] = V_WRITE_OK;
                write_oks++;
                pout--;
            } else if (chan_reply_code (&r)) {
                char why[200];
                fprintf (stderr, "WRITE error %d: %s\n", chan_reply_code (&r),
                         chan_reply_reason (&r, why, sizeof why));
                CHECK (false);
                pout--;
            }
            chan_reply_fini (&r);
        }
        while ((items[1].revents & ZMQ_POLLIN)
               && chan_client_recv (mprod, &r, 0) == 0) {
            uint64_t req;
            if (chan_reply_code (&r) == 0
                && chan_obj_get_uint (&r.body, "req", &req)) {
                uint64_t v = m->reqval[req - REQ_BASE];
                if (m->state[v] == V_SENT)
                    m->state[v] = V_WRITE_OK;
                mail_oks++;
                mout--;
            } else {
                CHECK (chan_reply_code (&r) == 0);
                mout--;
            }
            chan_reply_fini (&r);
        }
        while ((items[2].revents & ZMQ_POLLIN)
               && chan_client_recv (cons, &r, 0) == 0) {
            uint64_t req = 0;
            chan_obj_get_uint (&r.body, "req", &req);
            const msgpack_object *msgs = chan_obj_get (&r.body, "msgs");
            if (msgs && msgs->type == MSGPACK_OBJECT_ARRAY) {
                claiming = false;
                if (msgs->via.array.size) {
                    chan_body_t b;
                    chan_body_init (&b);
                    chan_body_str (&b, "chan", "crash.q");
                    msgpack_packer *pk = chan_body_key (&b, "ids");
                    msgpack_pack_array (pk, msgs->via.array.size);
                    nbatch = 0;
                    for (uint32_t i = 0; i < msgs->via.array.size; i++) {
                        const msgpack_object *e = &msgs->via.array.ptr[i];
                        const char *id;
                        size_t idlen;
                        uint64_t v;
                        chan_obj_get_str (e, "id", &id, &idlen);
                        chan_obj_get_uint (e, "data", &v);
                        chan_pack_str (pk, id, idlen);
                        if (v < MAXV) {
                            /*  Claimed means its write was accepted. */
                            q->state[v] = V_ACK_SENT;
                            batch[nbatch++] = v;
                        }
                    }
                    chan_client_send (cons, "ACK", &b, &ackreq);
                    chan_body_fini (&b);
                    claiming = true; /* wait for the ACK before claiming */
                }
            } else if (req == ackreq && ackreq) {
                uint64_t acked = 0;
                chan_obj_get_uint (&r.body, "acked", &acked);
                CHECK_EQ_INT (acked, nbatch);
                for (size_t i = 0; i < nbatch; i++)
                    q->state[batch[i]] = V_ACK_OK;
                ack_oks += nbatch;
                nbatch = 0;
                ackreq = 0;
                claiming = false;
            }
            chan_reply_fini (&r);
        }
    }
    it_kernel_kill9 (k);
    chan_client_destroy (&prod);
    chan_client_destroy (&mprod);
    chan_client_destroy (&cons);

    /*  Restart and drain. */
    CHECK (it_kernel_start (k, NULL) == 0);
    memset (q->seen, 0, MAXV);
    memset (m->seen, 0, MAXV);
    chan_client_t *drain = it_dock (k, "crash-drain", chans);
    CHECK (drain != NULL);
    uint64_t dup = 0, resurrected = 0, drained = 0;
    for (;;) {
        chan_body_t b;
        chan_body_init (&b);
        chan_body_str (&b, "chan", "crash.q");
        chan_body_uint (&b, "max", 5000);
        chan_reply_t r;
        int code = it_call (drain, "CLAIM", &b, &r);
        chan_body_fini (&b);
        CHECK_EQ_INT (code, 0);
        if (code != 0)
            break;
        const msgpack_object *msgs = chan_obj_get (&r.body, "msgs");
        uint32_t n = msgs ? msgs->via.array.size : 0;
        if (n == 0) {
            chan_reply_fini (&r);
            break;
        }
        chan_body_init (&b);
        chan_body_str (&b, "chan", "crash.q");
        msgpack_packer *pk = chan_body_key (&b, "ids");
        msgpack_pack_array (pk, n);
        for (uint32_t i = 0; i < n; i++) {
            const msgpack_object *e = &msgs->via.array.ptr[i];
            const char *id;
            size_t idlen;
            uint64_t v = MAXV;
            chan_obj_get_str (e, "id", &id, &idlen);
            chan_obj_get_uint (e, "data", &v);
            chan_pack_str (pk, id, idlen);
            if (v >= MAXV)
                continue;
            if (q->seen[v])
                dup++;
            q->seen[v] = 1;
            if (q->state[v] == V_ACK_OK)
                resurrected++;
            drained++;
        }
        chan_reply_fini (&r);
        code = it_call (drain, "ACK", &b, NULL);
        chan_body_fini (&b);
        CHECK_EQ_INT (code, 0);
    }
    chan_client_destroy (&drain);
    uint64_t checked = 0, lost = 0;
    for (uint64_t v = 0; v < q->next; v++) {
        if (q->state[v] == V_WRITE_OK) {
            checked++;
            if (!q->seen[v])
                lost++;
        }
        /*  Everything drained is acknowledged now; nothing is pending. */
        q->state[v] = V_NONE;
    }
    /*  The mailbox: dock as the sink and take every pushed message. */
    chan_client_t *sink = it_dock (k, "crash-sink", NULL);
    CHECK (sink != NULL);
    uint64_t mdup = 0, mlost = 0, mchecked = 0;
    if (sink) {
        chan_reply_t r;
        while (chan_client_recv (sink, &r, 300) == 0) {
            const msgpack_object *env = chan_obj_get (&r.body, "msg");
            uint64_t v = MAXV;
            const char *id;
            size_t idlen;
            if (env && chan_obj_get_uint (env, "data", &v) && v < MAXV) {
                if (m->seen[v])
                    mdup++;
                m->seen[v] = 1;
                if (chan_obj_get_str (env, "id", &id, &idlen)) {
                    chan_body_t b;
                    chan_body_init (&b);
                    chan_body_str (&b, "chan", "@crash-sink");
                    msgpack_packer *pk = chan_body_key (&b, "ids");
                    msgpack_pack_array (pk, 1);
                    chan_pack_str (pk, id, idlen);
                    chan_client_send (sink, "ACK", &b, NULL);
                    chan_body_fini (&b);
                }
            }
            chan_reply_fini (&r);
        }
        /*  Make sure the ACKs are in before the next round's kill. */
        chan_reply_t pong;
        if (chan_client_call (sink, "PING", NULL, &pong) == 0)
            chan_reply_fini (&pong);
        chan_client_call (sink, "BYE", NULL, &pong) == 0
            ? chan_reply_fini (&pong)
            : (void) 0;
        chan_client_destroy (&sink);
    }
    for (uint64_t v = 0; v < m->next; v++) {
        if (m->state[v] == V_WRITE_OK) {
            mchecked++;
            if (!m->seen[v])
                mlost++;
        }
        m->state[v] = V_NONE;
    }
    printf ("round %d: before the kill %llu WRITE, %llu SEND and %llu ACK "
            "replies\n",
            round, (unsigned long long) write_oks,
            (unsigned long long) mail_oks, (unsigned long long) ack_oks);
    printf ("round %d: queue %llu acknowledged writes checked, %llu drained, "
            "%llu lost, %llu duplicated, %llu came back after ACK; mailbox "
            "%llu checked, %llu lost, %llu duplicated\n",
            round, (unsigned long long) checked, (unsigned long long) drained,
            (unsigned long long) lost, (unsigned long long) dup,
            (unsigned long long) resurrected, (unsigned long long) mchecked,
            (unsigned long long) mlost, (unsigned long long) mdup);
    CHECK_EQ_INT (lost, 0);
    CHECK_EQ_INT (dup, 0);
    CHECK_EQ_INT (resurrected, 0);
    CHECK_EQ_INT (mlost, 0);
    CHECK_EQ_INT (mdup, 0);
    return checked + mchecked;
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        fprintf (stderr, "usage: it_crash AAAXD [ROUNDS]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi (argv[2]) : 6;
    srandom ((unsigned) getpid ());
    it_kernel_t k;
    it_kernel_init (&k, argv[1], s_config);
    if (it_kernel_start (&k, NULL) != 0) {
        it_kernel_cleanup (&k);
        return 1;
    }
    /*  The mailbox owner must be known before anyone can SEND to it. */
    chan_client_t *sink = it_dock (&k, "crash-sink", NULL);
    CHECK (sink != NULL);
    chan_reply_t r;
    if (sink && chan_client_call (sink, "BYE", NULL, &r) == 0)
        chan_reply_fini (&r);
    chan_client_destroy (&sink);

    s_track_t q = { 0 }, m = { 0 };
    q.state = (uint8_t *) calloc (MAXV, 1);
    q.seen = (uint8_t *) calloc (MAXV, 1);
    m.state = (uint8_t *) calloc (MAXV, 1);
    m.seen = (uint8_t *) calloc (MAXV, 1);
    q.reqcap = m.reqcap = MAXV;
    q.reqval = (uint64_t *) calloc (MAXV, sizeof (uint64_t));
    m.reqval = (uint64_t *) calloc (MAXV, sizeof (uint64_t));
    uint64_t total = 0;
    for (int i = 1; i <= rounds && tu_failures == 0; i++)
        total += s_round (&k, &q, &m, i);
    printf ("%llu acknowledged writes checked over %d kill -9 rounds\n",
            (unsigned long long) total, rounds);
    CHECK (total > 0);
    int rc = it_kernel_stop (&k, SIGTERM);
    CHECK_EQ_INT (rc, 0);
    CHECK (!it_kernel_log_has_sanitizer_report (&k));
    it_kernel_cleanup (&k);
    free (q.state);
    free (q.seen);
    free (m.state);
    free (m.seen);
    free (q.reqval);
    free (m.reqval);
    TEST_DONE ();
}
