/*  peer_redis.c — see peer_redis.h. */

#include "peer_redis.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis.h>

#define S_MAX_SUBS 8
#define S_MAX_PRODUCERS 8
#define S_SETUP_MS 10000
#define S_ID_MAX 48

/*  ---- the server -------------------------------------------------------- */

int
peer_redis_start (peer_server_t *s, const char *appendfsync)
{
    if (peer_server_prepare (s, "redis-server") != 0)
        return -1;
    char port[16];
    snprintf (port, sizeof port, "%d", s->port);
    char *argv[] = { "redis-server",
                     "--port",
                     port,
                     "--bind",
                     "127.0.0.1",
                     "--dir",
                     s->dir,
                     "--save",
                     "",
                     "--appendonly",
                     "yes",
                     "--appendfsync",
                     (char *) appendfsync,
                     "--daemonize",
                     "no",
                     NULL };
    if (peer_server_spawn (s, argv, 10000) != 0) {
        peer_server_stop (s);
        return -1;
    }
    redisContext *c = redisConnect ("127.0.0.1", s->port);
    if (c && !c->err) {
        redisReply *rep = redisCommand (c, "INFO server");
        if (rep && rep->type == REDIS_REPLY_STRING) {
            const char *v = strstr (rep->str, "redis_version:");
            if (v) {
                v += 14;
                size_t k = strcspn (v, "\r\n");
                snprintf (s->version, sizeof s->version, "%.*s", (int) k, v);
            }
        }
        freeReplyObject (rep);
    }
    redisFree (c);
    return 0;
}

/*  The next reply: 1 (in *out), 0 when none came within timeout_ms, -1 when
    the connection failed (c->errstr). Unlike a hiredis timeout, a 0 leaves
    the context usable. */
static int
s_reply (redisContext *c, redisReply **out, int timeout_ms)
{
    *out = NULL;
    int64_t deadline = peer_now_ns () + (int64_t) timeout_ms * 1000000;
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply (c->reader, &rep) != REDIS_OK)
            return -1;
        if (rep) {
            *out = rep;
            return 1;
        }
        int64_t left = (deadline - peer_now_ns ()) / 1000000;
        if (left < 0)
            return 0;
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        if (poll (&pfd, 1, (int) left) > 0 && redisBufferRead (c) != REDIS_OK)
            return -1;
    }
}

/*  ---- PUBLISH / SUBSCRIBE ----------------------------------------------- */

typedef struct {
    const peer_server_t *s;
    const peer_params_t *p;
    unsigned idx;
    pthread_t th;
    atomic_uint_fast64_t got;
    atomic_int state; /* 0 starting, 1 subscribed, 2 done, -1 failed */
    atomic_bool *stop;
    int64_t t_last;
    char err[200];
} s_sub_t;

static void *
s_sub_main (void *arg)
{
    s_sub_t *u = arg;
    redisContext *c = redisConnect ("127.0.0.1", u->s->port);
    redisReply *rep = NULL;
    if (!c || c->err || !(rep = redisCommand (c, "SUBSCRIBE bench.b"))
        || rep->type != REDIS_REPLY_ARRAY) {
        snprintf (u->err, sizeof u->err, "subscribe: %s",
                  c ? c->errstr : "no context");
        freeReplyObject (rep);
        redisFree (c);
        atomic_store (&u->state, -1);
        return NULL;
    }
    freeReplyObject (rep);
    atomic_store (&u->state, 1);
    uint64_t got = 0;
    while (got < u->p->count) {
        int rc = s_reply (c, &rep, 100);
        if (rc < 0) {
            snprintf (u->err, sizeof u->err,
                      "%.100s (redis disconnects a subscriber over its "
                      "pubsub output buffer limit)",
                      c->errstr);
            break;
        }
        if (rc == 0) {
            if (atomic_load (u->stop))
                break;
            continue;
        }
        bool good = rep->type == REDIS_REPLY_ARRAY && rep->elements == 3
                    && rep->element[2]->type == REDIS_REPLY_STRING
                    && rep->element[2]->len == u->p->size
                    && peer_seq_get (rep->element[2]->str) == got;
        freeReplyObject (rep);
        if (!good) {
            snprintf (u->err, sizeof u->err,
                      "message %" PRIu64 ": not the one expected", got);
            break;
        }
        got++;
        if ((got & 255) == 0 || got == u->p->count)
            atomic_store_explicit (&u->got, got, memory_order_release);
    }
    u->t_last = peer_now_ns ();
    atomic_store (&u->got, got);
    atomic_store (&u->state, got == u->p->count ? 2 : -1);
    redisFree (c);
    return NULL;
}

/*  Reads one PUBLISH reply: it must count every subscriber. */
static int
s_publish_reply (redisContext *c, const peer_params_t *p, peer_result_t *r)
{
    void *v = NULL;
    if (redisGetReply (c, &v) != REDIS_OK)
        return peer_fail (r, "publisher: %s", c->errstr);
    redisReply *rep = v;
    bool good =
        rep->type == REDIS_REPLY_INTEGER && rep->integer == (long long) p->subs;
    long long n = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject (rep);
    if (!good)
        return peer_fail (r, "PUBLISH reached %lld subscribers, not %u", n,
                          p->subs);
    return 0;
}

int
peer_redis_pubsub (const peer_server_t *s, const peer_params_t *p,
                   peer_result_t *r)
{
    char wl[48];
    snprintf (wl, sizeof wl, "pubsub 1->%u", p->subs);
    peer_result_init (r, "redis", wl, p);
    if (p->subs < 1 || p->subs > S_MAX_SUBS || p->size < 8 || !p->batch)
        return peer_fail (r, "bad parameters");
    atomic_bool stop = false;
    s_sub_t subs[S_MAX_SUBS];
    memset (subs, 0, sizeof subs);
    unsigned started = 0;
    for (unsigned i = 0; i < p->subs; i++) {
        subs[i].s = s, subs[i].p = p, subs[i].idx = i, subs[i].stop = &stop;
        if (pthread_create (&subs[i].th, NULL, s_sub_main, &subs[i]) != 0)
            break;
        started++;
    }
    char *payload = malloc (p->size);
    redisContext *c = redisConnect ("127.0.0.1", s->port);
    int64_t deadline = peer_now_ns () + (int64_t) S_SETUP_MS * 1000000;
    for (unsigned i = 0; i < started; i++)
        while (atomic_load (&subs[i].state) == 0 && peer_now_ns () < deadline)
            peer_sleep_us (1000);
    for (unsigned i = 0; i < started; i++)
        if (atomic_load (&subs[i].state) != 1)
            peer_fail (r, "subscriber %u: %s", i,
                       subs[i].err[0] ? subs[i].err : "not ready in time");
    if (started < p->subs || !payload || !c || c->err)
        peer_fail (r, "cannot start publisher or subscribers");
    if (r->ok) {
        memset (payload, 'x', p->size);
        double cpu0 = peer_proc_cpu_us (s->pid);
        int64_t t0 = peer_now_ns ();
        deadline = t0 + (int64_t) p->limit_s * 1000000000;
        uint64_t i, out = 0;
        for (i = 0; i < p->count && r->ok; i++) {
            if (p->lead && (i & 1023) == 0) {
                for (;;) {
                    uint64_t slow = UINT64_MAX;
                    for (unsigned k = 0; k < p->subs; k++) {
                        uint64_t g = atomic_load_explicit (
                            &subs[k].got, memory_order_acquire);
                        if (atomic_load (&subs[k].state) < 0)
                            peer_fail (r, "subscriber %u: %s", k, subs[k].err);
                        slow = g < slow ? g : slow;
                    }
                    if (!r->ok || i <= slow + p->lead)
                        break;
                    while (out > 0 && r->ok) {
                        s_publish_reply (c, p, r);
                        out--;
                    }
                    if (peer_now_ns () > deadline)
                        peer_fail (r, "timed out after %d s", p->limit_s);
                    sched_yield ();
                }
                if (!r->ok)
                    break;
            }
            peer_seq_put (payload, i);
            redisAppendCommand (c, "PUBLISH bench.b %b", payload,
                                (size_t) p->size);
            if (++out > p->batch) {
                s_publish_reply (c, p, r);
                out--;
            }
        }
        while (out > 0 && r->ok) {
            s_publish_reply (c, p, r);
            out--;
        }
        r->count = i;
        for (unsigned k = 0; k < p->subs; k++)
            while (atomic_load (&subs[k].state) == 1
                   && peer_now_ns () < deadline)
                peer_sleep_us (200);
        int64_t t1 = t0;
        for (unsigned k = 0; k < p->subs; k++) {
            int st = atomic_load (&subs[k].state);
            r->received += atomic_load (&subs[k].got);
            if (st == 2 && subs[k].t_last > t1)
                t1 = subs[k].t_last;
            else if (st != 2)
                peer_fail (
                    r, "subscriber %u got %" PRIu64 " of %" PRIu64 "%s%s", k,
                    (uint64_t) atomic_load (&subs[k].got), p->count,
                    subs[k].err[0] ? ": " : " (time limit)", subs[k].err);
        }
        double cpu1 = peer_proc_cpu_us (s->pid);
        r->secs = (double) (t1 - t0) / 1e9;
        r->msgs_s = r->secs > 0 ? (double) r->count / r->secs : 0;
        r->cpu_us_msg = r->count ? (cpu1 - cpu0) / (double) r->count : 0;
    }
    atomic_store (&stop, true);
    for (unsigned k = 0; k < started; k++)
        pthread_join (subs[k].th, NULL);
    redisFree (c);
    free (payload);
    return r->ok ? 0 : -1;
}

/*  ---- Streams: XADD, XREADGROUP + XACK ---------------------------------- */

typedef struct {
    const peer_server_t *s;
    const peer_params_t *p;
    unsigned idx;
    pthread_t th;
    atomic_bool *go, *abort;
    atomic_uint_fast64_t *received, *acked; /* totals over all consumers */
    _Atomic uint64_t *seen;                 /* one bit per sequence */
    atomic_int_fast64_t *t_end;             /* when the last XACK returned */
    int64_t deadline;
    uint64_t done;
    bool failed;
    char err[200];
} s_qworker_t;

static void *
s_producer_main (void *arg)
{
    s_qworker_t *u = arg;
    const peer_params_t *p = u->p;
    redisContext *c = redisConnect ("127.0.0.1", u->s->port);
    char *payload = malloc (p->size);
    if (!c || c->err || !payload) {
        snprintf (u->err, sizeof u->err, "producer: cannot connect");
        u->failed = true;
        atomic_store (u->abort, true);
        redisFree (c);
        free (payload);
        return NULL;
    }
    memset (payload, 'x', p->size);
    while (!atomic_load (u->go) && !atomic_load (u->abort))
        sched_yield ();
    uint64_t out = 0;
    /*  Producer k writes sequences k, k + P, k + 2P ... */
    for (uint64_t seq = u->idx; !u->failed; seq += p->producers) {
        bool more = seq < p->count && !atomic_load (u->abort);
        if (more) {
            peer_seq_put (payload, seq);
            redisAppendCommand (c, "XADD bench.q * d %b", payload,
                                (size_t) p->size);
            out++;
        }
        while (out > 0 && (out > p->batch || !more)) {
            void *v = NULL;
            if (redisGetReply (c, &v) != REDIS_OK) {
                snprintf (u->err, sizeof u->err, "XADD: %s", c->errstr);
                u->failed = true;
                break;
            }
            redisReply *rep = v;
            if (rep->type != REDIS_REPLY_STRING) {
                snprintf (u->err, sizeof u->err, "XADD refused: %s",
                          rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
                u->failed = true;
            } else
                u->done++;
            freeReplyObject (rep);
            out--;
        }
        if (!more)
            break;
        if ((seq & 1023) < p->producers && peer_now_ns () > u->deadline) {
            snprintf (u->err, sizeof u->err, "timed out");
            u->failed = true;
        }
    }
    if (u->failed)
        atomic_store (u->abort, true);
    redisFree (c);
    free (payload);
    return NULL;
}

/*  Takes the entries of an XREADGROUP reply: checks and marks each payload,
    keeps the ids for the next XACK. */
static int
s_take (s_qworker_t *u, redisReply *rep, char (*ids)[S_ID_MAX], size_t *nids)
{
    if (rep->type == REDIS_REPLY_NIL)
        return 0;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 1
        || rep->element[0]->elements != 2)
        return -1;
    redisReply *entries = rep->element[0]->element[1];
    for (size_t i = 0; i < entries->elements; i++) {
        redisReply *e = entries->element[i];
        if (e->elements != 2 || e->element[1]->elements != 2
            || e->element[0]->len >= S_ID_MAX)
            return -1;
        redisReply *d = e->element[1]->element[1];
        if (d->type != REDIS_REPLY_STRING || d->len != u->p->size)
            return -1;
        uint64_t seq = peer_seq_get (d->str);
        if (seq >= u->p->count)
            return -1;
        uint64_t bit = (uint64_t) 1 << (seq & 63);
        if (atomic_fetch_or (&u->seen[seq >> 6], bit) & bit) {
            snprintf (u->err, sizeof u->err, "sequence %" PRIu64 " twice", seq);
            return -1;
        }
        memcpy (ids[*nids], e->element[0]->str, e->element[0]->len);
        ids[*nids][e->element[0]->len] = 0;
        (*nids)++;
    }
    atomic_fetch_add (u->received, entries->elements);
    return 0;
}

static void *
s_consumer_main (void *arg)
{
    s_qworker_t *u = arg;
    const peer_params_t *p = u->p;
    redisContext *c = redisConnect ("127.0.0.1", u->s->port);
    size_t cap = p->batch + 3;
    char (*ids)[S_ID_MAX] = calloc (p->batch, S_ID_MAX);
    const char **argv = calloc (cap, sizeof *argv);
    size_t *argl = calloc (cap, sizeof *argl);
    char consumer[32], count[24];
    snprintf (consumer, sizeof consumer, "c%u", u->idx);
    snprintf (count, sizeof count, "%u", p->batch);
    if (!c || c->err || !ids || !argv || !argl) {
        snprintf (u->err, sizeof u->err, "consumer: cannot connect");
        u->failed = true;
    }
    while (!u->failed && !atomic_load (u->go) && !atomic_load (u->abort))
        sched_yield ();
    size_t nids = 0;
    while (!u->failed && !atomic_load (u->abort)) {
        bool read = atomic_load (u->received) < p->count;
        if (!read && nids == 0)
            break;
        if (nids) {
            argv[0] = "XACK", argv[1] = "bench.q", argv[2] = "g";
            for (size_t i = 0; i < nids; i++)
                argv[3 + i] = ids[i];
            for (size_t i = 0; i < nids + 3; i++)
                argl[i] = strlen (argv[i]);
            redisAppendCommandArgv (c, (int) nids + 3, argv, argl);
        }
        if (read)
            redisAppendCommand (c,
                                "XREADGROUP GROUP g %s COUNT %s BLOCK 100 "
                                "STREAMS bench.q >",
                                consumer, count);
        void *v = NULL;
        if (nids) {
            if (redisGetReply (c, &v) != REDIS_OK) {
                snprintf (u->err, sizeof u->err, "XACK: %s", c->errstr);
                u->failed = true;
                break;
            }
            redisReply *rep = v;
            bool good = rep->type == REDIS_REPLY_INTEGER
                        && rep->integer == (long long) nids;
            freeReplyObject (rep);
            if (!good) {
                snprintf (u->err, sizeof u->err, "XACK acked fewer");
                u->failed = true;
                break;
            }
            u->done += nids;
            if (atomic_fetch_add (u->acked, nids) + nids == p->count)
                atomic_store (u->t_end, peer_now_ns ());
            nids = 0;
        }
        if (read) {
            if (redisGetReply (c, &v) != REDIS_OK) {
                snprintf (u->err, sizeof u->err, "XREADGROUP: %s", c->errstr);
                u->failed = true;
                break;
            }
            int rc = s_take (u, v, ids, &nids);
            freeReplyObject (v);
            if (rc) {
                if (!u->err[0])
                    snprintf (u->err, sizeof u->err,
                              "XREADGROUP: unexpected reply");
                u->failed = true;
            }
        }
        if (peer_now_ns () > u->deadline) {
            snprintf (u->err, sizeof u->err, "timed out");
            u->failed = true;
        }
    }
    if (u->failed)
        atomic_store (u->abort, true);
    redisFree (c);
    free (ids);
    free (argv);
    free (argl);
    return NULL;
}

int
peer_redis_streams (const peer_server_t *s, const peer_params_t *p,
                    const char *label, peer_result_t *r)
{
    char wl[48];
    snprintf (wl, sizeof wl, "streams %s %uP/%uC", label, p->producers,
              p->subs);
    peer_result_init (r, "redis", wl, p);
    if (p->subs < 1 || p->subs > S_MAX_SUBS || p->producers < 1
        || p->producers > S_MAX_PRODUCERS || p->size < 8 || !p->batch)
        return peer_fail (r, "bad parameters");
    redisContext *c = redisConnect ("127.0.0.1", s->port);
    redisReply *rep = NULL;
    if (!c || c->err
        || !(rep = redisCommand (c, "XGROUP CREATE bench.q g $ MKSTREAM"))
        || rep->type == REDIS_REPLY_ERROR) {
        freeReplyObject (rep);
        redisFree (c);
        return peer_fail (r, "XGROUP CREATE failed");
    }
    freeReplyObject (rep);
    _Atomic uint64_t *seen = calloc (p->count / 64 + 1, sizeof *seen);
    atomic_bool go = false, abort_ = false;
    atomic_uint_fast64_t received = 0, acked = 0;
    atomic_int_fast64_t t_end = 0;
    s_qworker_t w[S_MAX_PRODUCERS + S_MAX_SUBS];
    memset (w, 0, sizeof w);
    unsigned nw = p->producers + p->subs, started = 0;
    int64_t deadline = peer_now_ns () + (int64_t) p->limit_s * 1000000000
                       + (int64_t) S_SETUP_MS * 1000000;
    for (unsigned i = 0; i < nw && seen; i++) {
        bool prod = i < p->producers;
        w[i] = (s_qworker_t){ .s = s,
                              .p = p,
                              .idx = prod ? i : i - p->producers,
                              .go = &go,
                              .abort = &abort_,
                              .received = &received,
                              .acked = &acked,
                              .seen = seen,
                              .t_end = &t_end,
                              .deadline = deadline };
        if (pthread_create (&w[i].th, NULL,
                            prod ? s_producer_main : s_consumer_main, &w[i])
            != 0)
            break;
        started++;
    }
    if (started < nw)
        atomic_store (&abort_, true);
    peer_sleep_us (100000); /* connected (or failed) by then */
    double cpu0 = peer_proc_cpu_us (s->pid);
    int64_t t0 = peer_now_ns ();
    atomic_store (&go, true);
    for (unsigned i = 0; i < started; i++)
        pthread_join (w[i].th, NULL);
    double cpu1 = peer_proc_cpu_us (s->pid);
    if (started < nw || !seen)
        peer_fail (r, "cannot start producers and consumers");
    for (unsigned i = 0; i < started; i++)
        if (w[i].failed)
            peer_fail (r, "%s %u: %s",
                       i < p->producers ? "producer" : "consumer", w[i].idx,
                       w[i].err);
    r->count = p->count;
    r->received = atomic_load (&acked);
    if (r->ok && r->received != p->count)
        peer_fail (r, "acked %" PRIu64 " of %" PRIu64, r->received, p->count);
    if (r->ok) {
        rep = redisCommand (c, "XPENDING bench.q g");
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1
            || rep->element[0]->integer != 0)
            peer_fail (r, "entries still pending at the end");
        freeReplyObject (rep);
    }
    if (r->ok) {
        int64_t t1 = atomic_load (&t_end);
        r->secs = (double) (t1 - t0) / 1e9;
        r->msgs_s = (double) p->count / r->secs;
        r->cpu_us_msg = (cpu1 - cpu0) / (double) p->count;
    }
    redisFree (c);
    free (seen);
    return r->ok ? 0 : -1;
}
