/*  cli_bench.c — `aaax bench pub|queue|rpc` (cli_bench.h). Every worker is
    a thread with its own chan_client (one client belongs to one thread);
    they share only atomics and, under a mutex, the first error. The main
    thread watches the deadline and SIGINT and draws the progress bar. */

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <zmq.h>

#include "aaax.h"
#include "chan_client.h"
#include "cli_bench.h"

#define S_CALL_MS 10000 /* longest wait for one answer */
#define S_IDLE_NS \
    2000000000LL /* after the senders: give up after 2 s silence */
#define S_CLAIM_WAIT_MS 100
#define S_SYSTEM_BASE 100 /* bytes of --system kept in worker ids */

/*  ---- histogram ------------------------------------------------------- */

static size_t
s_hidx (uint64_t v)
{
    if (v < 128)
        return (size_t) v;
    int e = 63 - __builtin_clzll (v); /* >= 7 */
    uint64_t sub = (v >> (e - 7)) - 128;
    return 128 + (size_t) (e - 7) * 128 + (size_t) sub;
}

static uint64_t
s_hval (size_t idx)
{
    if (idx < 128)
        return idx;
    int e = (int) ((idx - 128) / 128) + 7;
    uint64_t sub = (idx - 128) % 128;
    uint64_t lo = (128 + sub) << (e - 7);
    return lo + ((UINT64_C (1) << (e - 7)) >> 1);
}

void
cli_bench_hist_add (cli_bench_hist_t *h, uint64_t ns)
{
    h->b[s_hidx (ns)]++;
    h->n++;
    if (ns > h->max)
        h->max = ns;
}

void
cli_bench_hist_merge (cli_bench_hist_t *into, const cli_bench_hist_t *h)
{
    for (size_t i = 0; i < CLI_BENCH_HBUCKETS; i++)
        into->b[i] += h->b[i];
    into->n += h->n;
    if (h->max > into->max)
        into->max = h->max;
}

uint64_t
cli_bench_hist_pct (const cli_bench_hist_t *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t want = (uint64_t) (q * (double) h->n + 0.999999);
    if (want < 1)
        want = 1;
    if (want > h->n)
        want = h->n;
    uint64_t seen = 0;
    for (size_t i = 0; i < CLI_BENCH_HBUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = s_hval (i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/*  ---- shared state ---------------------------------------------------- */

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef struct {
    const cli_bench_opts_t *o;
    atomic_int ready; /* receivers docked (and subscribed) */
    atomic_bool go;   /* senders may start */
    atomic_bool stop; /* deadline, interrupt or a failure */
    atomic_int senders_left;
    atomic_uint_fast64_t sent;     /* WRITEs / SENDs answered OK */
    atomic_uint_fast64_t received; /* messages counted by receivers */
    atomic_uint_fast64_t claimed;  /* queue: claimed (ours) */
    atomic_uint_fast64_t foreign;  /* queue: not written by this run */
    atomic_uint_fast64_t dropped;  /* pub: DROPPED pushes */
    atomic_uint_fast64_t written;  /* pub: WRITEs sent (answered or not) */
    struct _s_worker_t *subs;      /* pub: the subscribers */
    size_t nsubs;
    atomic_int_fast64_t t_send_end; /* when the last sender finished */
    int64_t t0;                     /* when sending started */
    pthread_mutex_t lock;
    char err[512]; /* the first failure */
    bool failed;
} s_shared_t;

static void s_fail (s_shared_t *sh, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_fail (s_shared_t *sh, const char *fmt, ...)
{
    pthread_mutex_lock (&sh->lock);
    if (!sh->failed) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (sh->err, sizeof sh->err, fmt, ap);
        va_end (ap);
        sh->failed = true;
    }
    pthread_mutex_unlock (&sh->lock);
    atomic_store (&sh->stop, true);
}

typedef struct _s_worker_t {
    s_shared_t *sh;
    int index; /* 1-based within its role */
    const char *role;
    char system[AAAX_MAX_NAME + 1];
    char mailbox[AAAX_MAX_NAME + 2];
    chan_client_t *cc;
    pthread_t thread;
    bool started;
    uint64_t quota;            /* senders: messages to send */
    uint64_t ok;               /* senders: answered OK */
    uint64_t got;              /* receivers: counted */
    atomic_uint_fast64_t seen; /* subscribers: got, for the publishers */
    int64_t t_first;           /* first received */
    int64_t t_last;            /* last received / last OK */
    int64_t last_send;         /* for PINGs */
    cli_bench_hist_t *hist;
} s_worker_t;

/*  The ERROR of a reply as text. */
static const char *
s_reason (const chan_reply_t *r, char *buf, size_t size)
{
    char reason[400];
    snprintf (buf, size, "ERROR %d: %s", chan_reply_code (r),
              chan_reply_reason (r, reason, sizeof reason));
    return buf;
}

/*  Connects and docks w (channels: NULL or one). false after s_fail. */
static bool
s_open (s_worker_t *w, const char *channel)
{
    const cli_bench_opts_t *o = w->sh->o;
    int call_ms = o->timeout_ms < S_CALL_MS ? (int) o->timeout_ms : S_CALL_MS;
    w->cc = chan_client_new_curve (o->endpoint, call_ms, o->server_key,
                                   o->curve_public, o->curve_secret);
    if (!w->cc) {
        s_fail (w->sh, "cannot connect to '%s'", o->endpoint);
        return false;
    }
    snprintf (w->mailbox, sizeof w->mailbox, "@%s", w->system);
    const char *chans[1] = { channel };
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    int rc = chan_client_hello (w->cc, w->system, o->token, o->token != NULL,
                                channel ? chans : NULL, channel ? 1 : 0, &r);
    if (rc) {
        char buf[512];
        if (strcmp (r.cmd, "ERROR") == 0)
            s_fail (w->sh, "%s could not dock: %s", w->system,
                    s_reason (&r, buf, sizeof buf));
        else
            s_fail (w->sh, "%s could not dock at %s: %s", w->system,
                    o->endpoint, aaax_strerror (rc));
        chan_reply_fini (&r);
        return false;
    }
    /*  Without the grant every WRITE / SUB / CLAIM would be 403: say so
        now. */
    if (channel) {
        const char *need =
            o->mode == CLI_BENCH_QUEUE
                ? (strcmp (w->role, "consumer") == 0 ? "claim" : "write")
            : strcmp (w->role, "sub") == 0 ? "read"
                                           : "write";
        char grant[AAAX_MAX_NAME + 16];
        snprintf (grant, sizeof grant, "%s:%s", need, channel);
        const msgpack_object *g = chan_obj_get (&r.body, "grants");
        bool found = false;
        for (uint32_t i = 0;
             g && g->type == MSGPACK_OBJECT_ARRAY && i < g->via.array.size;
             i++) {
            const msgpack_object *s = &g->via.array.ptr[i];
            if (s->type == MSGPACK_OBJECT_STR
                && s->via.str.size == strlen (grant)
                && memcmp (s->via.str.ptr, grant, s->via.str.size) == 0)
                found = true;
        }
        if (!found) {
            s_fail (w->sh,
                    "%s was not granted %s (does the channel exist, is it "
                    "a %s, and does the policy allow it?)",
                    w->system, grant,
                    o->mode == CLI_BENCH_QUEUE ? "work-queue"
                                               : "broadcast channel");
            chan_reply_fini (&r);
            return false;
        }
    }
    chan_reply_fini (&r);
    w->last_send = s_now_ns ();
    return true;
}

static void
s_close (s_worker_t *w)
{
    if (!w->cc)
        return;
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    if (chan_client_call (w->cc, "BYE", NULL, &r) == 0)
        chan_reply_fini (&r);
    chan_client_destroy (&w->cc);
}

/*  A PING when nothing was sent for half a heartbeat (receivers must). */
static void
s_keepalive (s_worker_t *w, int64_t now)
{
    uint32_t hb = chan_client_heartbeat_ms (w->cc);
    int64_t tick = (int64_t) (hb ? hb : 1000) * 1000000LL / 2;
    if (now - w->last_send >= tick) {
        chan_client_send (w->cc, "PING", NULL, NULL);
        w->last_send = now;
    }
}

static bool
s_is (const chan_reply_t *r, const char *cmd)
{
    return strcmp (r->cmd, cmd) == 0;
}

/*  The payload: 8 bytes of send time (monotonic ns), 8 of sequence, the
    rest a fixed pattern. */
static void
s_stamp (uint8_t *pay, uint64_t seq)
{
    int64_t t = s_now_ns ();
    memcpy (pay, &t, 8);
    memcpy (pay + 8, &seq, 8);
}

/*  The send time and sequence of an envelope's data; false when it is not
    one of ours (wrong type or size). */
static bool
s_payload (const msgpack_object *env, size_t size, int64_t *t, uint64_t *seq)
{
    const msgpack_object *d = chan_obj_get (env, "data");
    if (!d || d->type != MSGPACK_OBJECT_BIN || d->via.bin.size != size)
        return false;
    memcpy (t, d->via.bin.ptr, 8);
    memcpy (seq, d->via.bin.ptr + 8, 8);
    return true;
}

/*  True when the envelope's from starts with prefix. */
static bool
s_from (const msgpack_object *env, const char *prefix)
{
    const char *p;
    size_t len;
    size_t plen = strlen (prefix);
    return chan_obj_get_str (env, "from", &p, &len) && len >= plen
           && memcmp (p, prefix, plen) == 0;
}

static bool
s_sub_is (const chan_reply_t *r, const char *name)
{
    const char *p;
    size_t len;
    return chan_obj_get_str (&r->body, "sub", &p, &len) && len == strlen (name)
           && memcmp (p, name, len) == 0;
}

/*  ---- senders: publishers (pub) and producers (queue) ------------------ */

/*  pub: whether the publishers may write one more. They stay at most
    S_AHEAD messages ahead of the slowest subscriber, so that no
    subscriber's queue in the kernel reaches its sndhwm (default 4096),
    which would drop it: the rate measured is one every subscriber keeps
    up with. */
#define S_AHEAD 2048

static bool
s_ahead_ok (s_shared_t *sh)
{
    if (sh->nsubs == 0)
        return true;
    uint64_t min = UINT64_MAX;
    for (size_t i = 0; i < sh->nsubs; i++) {
        uint64_t g = atomic_load (&sh->subs[i].seen);
        if (g < min)
            min = g;
    }
    return atomic_load (&sh->written) < min + S_AHEAD;
}

/*  True when a message waits for chan_client_recv. */
static bool
s_readable (s_worker_t *w)
{
    if (chan_client_kept (w->cc))
        return true;
    zmq_pollitem_t item = { chan_client_socket (w->cc), 0, ZMQ_POLLIN, 0 };
    return zmq_poll (&item, 1, 0) > 0;
}

static void *
s_sender (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    s_shared_t *sh = w->sh;
    const cli_bench_opts_t *o = sh->o;
    uint8_t *pay = (uint8_t *) malloc (o->size);
    if (!pay) {
        s_fail (sh, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < o->size; i++)
        pay[i] = (uint8_t) ('a' + i % 26);
    if (!s_open (w, o->channel))
        goto done;
    while (!atomic_load (&sh->go) && !atomic_load (&sh->stop))
        usleep (200);
    uint64_t sent = 0, out = 0;
    while (!atomic_load (&sh->stop) && (sent < w->quota || out > 0)) {
        bool paced = o->mode == CLI_BENCH_PUB && !s_ahead_ok (sh);
        if (sent < w->quota && out < CLI_BENCH_WINDOW && !paced) {
            /*  One message, or with --batch up to that many in one WRITE
                {batch: [...]} (as many as the window and quota allow). */
            uint64_t k = 1;
            if (o->wbatch > 1) {
                k = o->wbatch;
                if (k > w->quota - sent)
                    k = w->quota - sent;
                if (k > CLI_BENCH_WINDOW - out)
                    k = CLI_BENCH_WINDOW - out;
            }
            chan_body_t b;
            chan_body_init (&b);
            chan_body_str (&b, "chan", o->channel);
            msgpack_packer *pk =
                chan_body_key (&b, o->wbatch > 1 ? "batch" : "data");
            if (o->wbatch > 1)
                msgpack_pack_array (pk, (uint32_t) k);
            for (uint64_t j = 0; j < k; j++) {
                s_stamp (pay, ((uint64_t) w->index << 40) | (sent + j));
                msgpack_pack_bin (pk, o->size);
                msgpack_pack_bin_body (pk, pay, o->size);
            }
            int rc = chan_client_send (w->cc, "WRITE", &b, NULL);
            chan_body_fini (&b);
            if (rc) {
                s_fail (sh, "%s: sending failed: %s", w->system,
                        aaax_strerror (rc));
                break;
            }
            sent += k;
            out += k;
            if (o->mode == CLI_BENCH_PUB)
                atomic_fetch_add (&sh->written, k);
            /*  Take the answers that are already there. */
            if (out < CLI_BENCH_WINDOW && sent < w->quota && !s_readable (w))
                continue;
        }
        if (out == 0) {
            /*  Paced: wait for the subscribers. */
            usleep (20);
            continue;
        }
        chan_reply_t r;
        int rc = chan_client_recv (w->cc, &r, 100);
        if (rc == AAAX_ETIMEDOUT)
            continue;
        if (rc) {
            s_fail (sh, "%s: %s", w->system, aaax_strerror (rc));
            break;
        }
        if (s_is (&r, "OK")) {
            /*  A batch's OK has ids, one per message. */
            const msgpack_object *ids = chan_obj_get (&r.body, "ids");
            uint64_t k = ids && ids->type == MSGPACK_OBJECT_ARRAY
                             ? ids->via.array.size
                             : 1;
            out = k < out ? out - k : 0;
            w->ok += k;
            w->t_last = s_now_ns ();
            atomic_fetch_add (&sh->sent, k);
        } else if (s_is (&r, "ERROR")) {
            char buf[512];
            s_fail (sh, "%s: the kernel refused a WRITE to %s: %s", w->system,
                    o->channel, s_reason (&r, buf, sizeof buf));
            chan_reply_fini (&r);
            break;
        }
        chan_reply_fini (&r);
    }
done:
    free (pay);
    int64_t now = s_now_ns ();
    int64_t prev = atomic_load (&sh->t_send_end);
    while (now > prev
           && !atomic_compare_exchange_weak (&sh->t_send_end, &prev, now))
        ;
    atomic_fetch_sub (&sh->senders_left, 1);
    return NULL;
}

/*  Whether a receiver is done: the senders finished and it has what they
    sent, or nothing came for S_IDLE_NS since. */
static bool
s_recv_done (s_worker_t *w, uint64_t have, int64_t now, int64_t last_rx)
{
    s_shared_t *sh = w->sh;
    if (atomic_load (&sh->stop))
        return true;
    if (atomic_load (&sh->senders_left) > 0)
        return false;
    if (have >= atomic_load (&sh->sent))
        return true;
    int64_t since = last_rx > atomic_load (&sh->t_send_end)
                        ? last_rx
                        : atomic_load (&sh->t_send_end);
    return now - since > S_IDLE_NS;
}

/*  ---- subscribers (pub) ------------------------------------------------ */

static void *
s_subscriber (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    s_shared_t *sh = w->sh;
    const cli_bench_opts_t *o = sh->o;
    char prefix[AAAX_MAX_NAME + 8];
    snprintf (prefix, sizeof prefix, "%.*s-pub", S_SYSTEM_BASE, o->system);
    if (!s_open (w, o->channel))
        goto out;
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", o->channel);
    if (o->wbatch > 1)
        chan_body_bool (&b, "batch", true);
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    int rc = chan_client_call (w->cc, "SUB", &b, &r);
    chan_body_fini (&b);
    if (rc || !s_is (&r, "OK")) {
        char buf[512];
        s_fail (sh, "%s: SUB %s failed: %s", w->system, o->channel,
                rc ? aaax_strerror (rc) : s_reason (&r, buf, sizeof buf));
        chan_reply_fini (&r);
        goto out;
    }
    chan_reply_fini (&r);
    atomic_fetch_add (&sh->ready, 1);
    int64_t last_rx = s_now_ns ();
    for (;;) {
        int64_t now = s_now_ns ();
        if (s_recv_done (w, w->got, now, last_rx))
            break;
        s_keepalive (w, now);
        rc = chan_client_recv (w->cc, &r, 50);
        if (rc == AAAX_ETIMEDOUT)
            continue;
        if (rc) {
            s_fail (sh, "%s: %s", w->system, aaax_strerror (rc));
            break;
        }
        bool one = s_is (&r, "MSG"), many = s_is (&r, "MSGS");
        if ((one || many) && s_sub_is (&r, o->channel)) {
            /*  MSG {msg: env}, or a batch: MSGS {msgs: [env...]}. */
            const msgpack_object *arr =
                many ? chan_obj_get (&r.body, "msgs") : NULL;
            uint32_t n = one ? 1
                         : arr && arr->type == MSGPACK_OBJECT_ARRAY
                             ? arr->via.array.size
                             : 0;
            now = s_now_ns ();
            for (uint32_t k = 0; k < n; k++) {
                const msgpack_object *env = one ? chan_obj_get (&r.body, "msg")
                                                : &arr->via.array.ptr[k];
                int64_t t;
                uint64_t seq;
                if (env && env->type == MSGPACK_OBJECT_MAP
                    && s_from (env, prefix)
                    && s_payload (env, o->size, &t, &seq)) {
                    cli_bench_hist_add (w->hist, (uint64_t) (now - t));
                    if (!w->got)
                        w->t_first = now;
                    w->t_last = last_rx = now;
                    w->got++;
                    atomic_fetch_add (&sh->received, 1);
                }
            }
            atomic_store (&w->seen, w->got);
        } else if (s_is (&r, "DROPPED")) {
            atomic_fetch_add (&sh->dropped, 1);
            s_fail (sh,
                    "%s was dropped by the kernel: it did not keep up (its "
                    "queue reached the kernel's sndhwm); try fewer "
                    "publishers or a smaller --count",
                    w->system);
        } else if (s_is (&r, "ERROR")) {
            char buf[512];
            s_fail (sh, "%s: %s", w->system, s_reason (&r, buf, sizeof buf));
        }
        chan_reply_fini (&r);
    }
out:
    return NULL;
}

/*  ---- consumers (queue) ------------------------------------------------ */

static void *
s_consumer (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    s_shared_t *sh = w->sh;
    const cli_bench_opts_t *o = sh->o;
    char prefix[AAAX_MAX_NAME + 8];
    snprintf (prefix, sizeof prefix, "%.*s-producer", S_SYSTEM_BASE, o->system);
    const char **ids = NULL;
    size_t *lens = NULL;
    if (!s_open (w, o->channel))
        goto out;
    atomic_fetch_add (&sh->ready, 1);
    /*  Leases outlast the run: a message not ours (left in the queue
        before) is claimed once, left alone, and released at BYE. */
    uint64_t lease = (uint64_t) o->timeout_ms + 60000;
    int64_t last_rx = s_now_ns ();
    ids = (const char **) calloc (o->batch, sizeof *ids);
    lens = (size_t *) calloc (o->batch, sizeof *lens);
    if (!ids || !lens) {
        s_fail (sh, "out of memory");
        goto out;
    }
    while (!atomic_load (&sh->go) && !atomic_load (&sh->stop))
        usleep (200);
    for (;;) {
        int64_t now = s_now_ns ();
        if (s_recv_done (w, atomic_load (&sh->received), now, last_rx))
            break;
        chan_body_t b;
        chan_body_init (&b);
        chan_body_str (&b, "chan", o->channel);
        chan_body_uint (&b, "max", o->batch);
        chan_body_uint (&b, "wait_ms", S_CLAIM_WAIT_MS);
        chan_body_uint (&b, "lease_ms", lease);
        chan_reply_t r;
        memset (&r, 0, sizeof r);
        int rc = chan_client_call (w->cc, "CLAIM", &b, &r);
        chan_body_fini (&b);
        w->last_send = now;
        if (rc || !s_is (&r, "OK")) {
            char buf[512];
            s_fail (sh, "%s: CLAIM %s failed: %s", w->system, o->channel,
                    rc ? aaax_strerror (rc) : s_reason (&r, buf, sizeof buf));
            chan_reply_fini (&r);
            break;
        }
        int64_t t_claim = s_now_ns ();
        const msgpack_object *msgs = chan_obj_get (&r.body, "msgs");
        size_t n = 0;
        for (uint32_t i = 0; msgs && msgs->type == MSGPACK_OBJECT_ARRAY
                             && i < msgs->via.array.size && n < o->batch;
             i++) {
            const msgpack_object *env = &msgs->via.array.ptr[i];
            int64_t t;
            uint64_t seq;
            if (!s_from (env, prefix) || !s_payload (env, o->size, &t, &seq)
                || !chan_obj_get_str (env, "id", &ids[n], &lens[n])) {
                atomic_fetch_add (&sh->foreign, 1);
                continue;
            }
            cli_bench_hist_add (w->hist, (uint64_t) (t_claim - t));
            n++;
        }
        if (n == 0) {
            chan_reply_fini (&r);
            continue;
        }
        atomic_fetch_add (&sh->claimed, n);
        chan_body_init (&b);
        chan_body_str (&b, "chan", o->channel);
        msgpack_packer *pk = chan_body_key (&b, "ids");
        msgpack_pack_array (pk, (uint32_t) n);
        for (size_t i = 0; i < n; i++) {
            msgpack_pack_str (pk, lens[i]);
            msgpack_pack_str_body (pk, ids[i], lens[i]);
        }
        chan_reply_t a;
        memset (&a, 0, sizeof a);
        rc = chan_client_call (w->cc, "ACK", &b, &a);
        chan_body_fini (&b);
        chan_reply_fini (&r);
        uint64_t acked = 0;
        if (rc || !s_is (&a, "OK")
            || !chan_obj_get_uint (&a.body, "acked", &acked)) {
            char buf[512];
            s_fail (sh, "%s: ACK failed: %s", w->system,
                    rc ? aaax_strerror (rc) : s_reason (&a, buf, sizeof buf));
            chan_reply_fini (&a);
            break;
        }
        chan_reply_fini (&a);
        now = s_now_ns ();
        if (!w->got)
            w->t_first = now;
        w->t_last = last_rx = now;
        w->got += acked;
        atomic_fetch_add (&sh->received, acked);
    }
out:
    free (ids);
    free (lens);
    return NULL;
}

/*  ---- rpc -------------------------------------------------------------- */

static void *
s_responder (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    s_shared_t *sh = w->sh;
    if (!s_open (w, NULL))
        return NULL;
    atomic_fetch_add (&sh->ready, 1);
    while (!atomic_load (&sh->stop) && atomic_load (&sh->senders_left) > 0) {
        s_keepalive (w, s_now_ns ());
        chan_reply_t r;
        int rc = chan_client_recv (w->cc, &r, 50);
        if (rc == AAAX_ETIMEDOUT)
            continue;
        if (rc) {
            s_fail (sh, "%s: %s", w->system, aaax_strerror (rc));
            break;
        }
        if (s_is (&r, "ERROR")) {
            char buf[512];
            s_fail (sh, "%s: %s", w->system, s_reason (&r, buf, sizeof buf));
        } else if (s_is (&r, "MSG") && s_sub_is (&r, w->mailbox)) {
            const msgpack_object *env = chan_obj_get (&r.body, "msg");
            const char *id, *from;
            size_t idlen, fromlen;
            const msgpack_object *data =
                env ? chan_obj_get (env, "data") : NULL;
            if (data && chan_obj_get_str (env, "id", &id, &idlen)
                && chan_obj_get_str (env, "from", &from, &fromlen)
                && fromlen <= AAAX_MAX_NAME && idlen < 64) {
                char to[AAAX_MAX_NAME + 1], corr[64];
                memcpy (to, from, fromlen);
                to[fromlen] = 0;
                memcpy (corr, id, idlen);
                corr[idlen] = 0;
                chan_body_t b;
                chan_body_init (&b);
                chan_body_str (&b, "to", to);
                chan_body_str (&b, "corr", corr);
                msgpack_pack_object (chan_body_key (&b, "data"), *data);
                if (sh->o->transient)
                    chan_body_bool (&b, "transient", true);
                chan_client_send (w->cc, "SEND", &b, NULL);
                chan_body_fini (&b);
                w->last_send = s_now_ns ();
                w->got++;
                chan_reply_fini (&r);
                if (sh->o->transient)
                    continue; /* never stored: nothing to ACK */
                chan_body_init (&b);
                chan_body_str (&b, "chan", w->mailbox);
                const char *one[1] = { corr };
                chan_body_strv (&b, "ids", one, 1);
                chan_client_send (w->cc, "ACK", &b, NULL);
                chan_body_fini (&b);
                continue;
            }
        }
        chan_reply_fini (&r);
    }
    return NULL;
}

static void *
s_requester (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    s_shared_t *sh = w->sh;
    const cli_bench_opts_t *o = sh->o;
    s_worker_t *resp = w + 1; /* laid out next to each other */
    uint8_t *pay = (uint8_t *) malloc (o->size);
    if (!pay) {
        s_fail (sh, "out of memory");
        goto done;
    }
    memset (pay, 'r', o->size);
    if (!s_open (w, NULL))
        goto done;
    while (!atomic_load (&sh->go) && !atomic_load (&sh->stop))
        usleep (200);
    uint64_t warm = o->count / 10 < 1000 ? o->count / 10 : 1000;
    /*  One request in flight: the next goes when the reply came. The OK
        of a SEND (after its commit to disk) may come later: up to
        CLI_BENCH_WINDOW of them are awaited meanwhile. */
    uint64_t nsent = 0;
    int64_t drain_until = 0;
    for (uint64_t i = 0; i <= warm + o->count && !atomic_load (&sh->stop);
         i++) {
        bool last = i == warm + o->count;
        if (last)
            drain_until = s_now_ns () + S_CALL_MS * 1000000LL;
        while (last && w->ok < nsent && !atomic_load (&sh->stop)
               && s_now_ns () < drain_until) {
            chan_reply_t r;
            int rc = chan_client_recv (w->cc, &r, 50);
            if (rc == AAAX_ETIMEDOUT)
                continue;
            if (rc) {
                s_fail (sh, "%s: %s", w->system, aaax_strerror (rc));
                break;
            }
            if (s_is (&r, "ERROR")) {
                char buf[512];
                s_fail (sh, "%s: %s", w->system,
                        s_reason (&r, buf, sizeof buf));
            } else if (s_is (&r, "OK") && chan_obj_get (&r.body, "id")) {
                w->ok++;
                atomic_fetch_add (&sh->sent, 1);
            }
            chan_reply_fini (&r);
        }
        if (last)
            break;
        chan_body_t b;
        chan_body_init (&b);
        chan_body_str (&b, "to", resp->system);
        int64_t t0 = s_now_ns ();
        memcpy (pay, &t0, 8);
        memcpy (pay + 8, &i, 8);
        msgpack_packer *pk = chan_body_key (&b, "data");
        msgpack_pack_bin (pk, o->size);
        msgpack_pack_bin_body (pk, pay, o->size);
        if (o->transient)
            chan_body_bool (&b, "transient", true);
        int rc = chan_client_send (w->cc, "SEND", &b, NULL);
        chan_body_fini (&b);
        if (rc) {
            s_fail (sh, "%s: sending failed: %s", w->system,
                    aaax_strerror (rc));
            break;
        }
        w->last_send = t0;
        nsent++;
        bool have_reply = false;
        while (!(have_reply && nsent - w->ok < CLI_BENCH_WINDOW)
               && !atomic_load (&sh->stop)) {
            chan_reply_t r;
            rc = chan_client_recv (w->cc, &r, 50);
            int64_t now = s_now_ns ();
            if (rc == AAAX_ETIMEDOUT) {
                s_keepalive (w, now);
                continue;
            }
            if (rc) {
                s_fail (sh, "%s: %s", w->system, aaax_strerror (rc));
                break;
            }
            if (s_is (&r, "ERROR")) {
                char buf[512];
                s_fail (sh, "%s: %s", w->system,
                        s_reason (&r, buf, sizeof buf));
            } else if (s_is (&r, "OK") && chan_obj_get (&r.body, "id")) {
                /*  A SEND's (an ACK's OK has acked instead). */
                w->ok++;
                atomic_fetch_add (&sh->sent, 1);
            } else if (s_is (&r, "MSG") && s_sub_is (&r, w->mailbox)) {
                const msgpack_object *env = chan_obj_get (&r.body, "msg");
                int64_t t;
                uint64_t seq;
                const char *id;
                size_t idlen;
                if (env && !o->transient
                    && chan_obj_get_str (env, "id", &id, &idlen)
                    && idlen < 64) {
                    char idbuf[64];
                    memcpy (idbuf, id, idlen);
                    idbuf[idlen] = 0;
                    chan_body_init (&b);
                    chan_body_str (&b, "chan", w->mailbox);
                    const char *one[1] = { idbuf };
                    chan_body_strv (&b, "ids", one, 1);
                    chan_client_send (w->cc, "ACK", &b, NULL);
                    chan_body_fini (&b);
                }
                if (env && s_payload (env, o->size, &t, &seq) && seq == i
                    && t == t0) {
                    have_reply = true;
                    if (i >= warm) {
                        cli_bench_hist_add (w->hist, (uint64_t) (now - t0));
                        if (!w->got)
                            w->t_first = t0;
                        w->t_last = now;
                        w->got++;
                    }
                    atomic_fetch_add (&sh->received, 1);
                }
            }
            chan_reply_fini (&r);
        }
    }
    /*  Let the last ACKs be answered before BYE. */
    for (int k = 0; k < 20; k++) {
        chan_reply_t r;
        if (chan_client_recv (w->cc, &r, 5) != 0)
            break;
        chan_reply_fini (&r);
    }
done:
    free (pay);
    atomic_fetch_sub (&sh->senders_left, 1);
    return NULL;
}

/*  ---- output ----------------------------------------------------------- */

static const char *s_mode_names[] = { "pub", "queue", "rpc" };

static double
s_secs (int64_t ns)
{
    return ns > 0 ? (double) ns / 1e9 : 0.0;
}

static double
s_rate (uint64_t n, int64_t ns)
{
    return ns > 0 ? (double) n * 1e9 / (double) ns : 0.0;
}

static void
s_progress (s_shared_t *sh, uint64_t done, uint64_t total, bool final)
{
    const cli_bench_opts_t *o = sh->o;
    int width = 30;
    double f = total ? (double) done / (double) total : 1.0;
    if (f > 1)
        f = 1;
    int fill = (int) (f * width);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    int64_t el = s_now_ns () - sh->t0;
    fprintf (stderr, "\r%-5s [%s] %3d%% %" PRIu64 "/%" PRIu64 "  %.0f msgs/s  ",
             s_mode_names[o->mode], bar, (int) (f * 100), done, total,
             s_rate (done, el));
    if (final)
        fputs ("\r\033[K", stderr);
    fflush (stderr);
}

static json_t *
s_lat_json (const cli_bench_hist_t *h)
{
    if (!h->n)
        return json_null ();
    return json_pack ("{s:I,s:f,s:f,s:f,s:f}", "samples", (json_int_t) h->n,
                      "p50", cli_bench_hist_pct (h, 0.50) / 1e3, "p99",
                      cli_bench_hist_pct (h, 0.99) / 1e3, "p99_9",
                      cli_bench_hist_pct (h, 0.999) / 1e3, "max",
                      (double) h->max / 1e3);
}

static void
s_lat_print (const char *what, const cli_bench_hist_t *h)
{
    if (!h->n) {
        printf ("  %-22s none\n", what);
        return;
    }
    printf ("  %-22s p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us  "
            "(%" PRIu64 " samples)\n",
            what, cli_bench_hist_pct (h, 0.50) / 1e3,
            cli_bench_hist_pct (h, 0.99) / 1e3,
            cli_bench_hist_pct (h, 0.999) / 1e3, (double) h->max / 1e3, h->n);
}

static json_t *
s_rate_json (uint64_t n, int64_t ns, uint64_t size)
{
    double r = s_rate (n, ns);
    return json_pack ("{s:I,s:f,s:f,s:f}", "msgs", (json_int_t) n, "seconds",
                      s_secs (ns), "msgs_per_s", r, "mb_per_s",
                      r * (double) size / 1e6);
}

static void
s_rate_print (const char *what, uint64_t n, int64_t ns, uint64_t size)
{
    double r = s_rate (n, ns);
    printf ("  %-22s %10" PRIu64 " msgs in %.3f s  %12.0f msgs/s  %9.2f MB/s\n",
            what, n, s_secs (ns), r, r * (double) size / 1e6);
}

/*  ---- the run ---------------------------------------------------------- */

int
cli_bench_run (const cli_bench_opts_t *o)
{
    s_shared_t sh;
    memset (&sh, 0, sizeof sh);
    sh.o = o;
    pthread_mutex_init (&sh.lock, NULL);
    size_t nsend = o->mode == CLI_BENCH_RPC ? 1 : (size_t) o->publishers;
    size_t nrecv = o->mode == CLI_BENCH_RPC ? 1 : (size_t) o->subscribers;
    size_t nw = nsend + nrecv;
    s_worker_t *ws = (s_worker_t *) calloc (nw, sizeof *ws);
    cli_bench_hist_t *hists = (cli_bench_hist_t *) calloc (nw, sizeof *hists);
    cli_bench_hist_t *all = (cli_bench_hist_t *) calloc (1, sizeof *all);
    if (!ws || !hists || !all) {
        fprintf (stderr, "aaax bench: out of memory\n");
        free (ws);
        free (hists);
        free (all);
        return CLI_BENCH_FAILED;
    }
    const char *sroles[] = { "pub", "producer", "rpc" };
    const char *rroles[] = { "sub", "consumer", "responder" };
    for (size_t i = 0; i < nw; i++) {
        s_worker_t *w = &ws[i];
        bool sender = i < nsend;
        w->sh = &sh;
        w->index = (int) (sender ? i + 1 : i - nsend + 1);
        w->role = sender ? sroles[o->mode] : rroles[o->mode];
        w->hist = &hists[i];
        snprintf (w->system, sizeof w->system, "%.*s-%s%d", S_SYSTEM_BASE,
                  o->system, w->role, w->index);
        if (sender) {
            uint64_t q = o->count / nsend;
            w->quota = q + (i < o->count % nsend ? 1 : 0);
        }
    }
    atomic_store (&sh.senders_left, (int) nsend);
    if (o->mode == CLI_BENCH_PUB) {
        sh.subs = ws + nsend;
        sh.nsubs = nrecv;
    }
    void *(*sfn[]) (void *) = { s_sender, s_sender, s_requester };
    void *(*rfn[]) (void *) = { s_subscriber, s_consumer, s_responder };
    int64_t start = s_now_ns ();
    int64_t deadline = start + o->timeout_ms * 1000000LL;
    bool timed_out = false, interrupted = false;
    /*  Receivers first: they must be subscribed before anything is sent. */
    for (size_t i = nsend; i < nw; i++)
        ws[i].started =
            pthread_create (&ws[i].thread, NULL, rfn[o->mode], &ws[i]) == 0;
    while (atomic_load (&sh.ready) < (int) nrecv && !atomic_load (&sh.stop)) {
        if (s_now_ns () > deadline) {
            timed_out = true;
            s_fail (&sh, "the receivers were not ready within --timeout");
        }
        if (o->interrupted && *o->interrupted) {
            interrupted = true;
            s_fail (&sh, "interrupted");
        }
        usleep (1000);
    }
    for (size_t i = 0; i < nsend; i++)
        ws[i].started =
            pthread_create (&ws[i].thread, NULL, sfn[o->mode], &ws[i]) == 0;
    sh.t0 = s_now_ns ();
    atomic_store (&sh.t_send_end, sh.t0);
    atomic_store (&sh.go, true);
    uint64_t total =
        o->mode == CLI_BENCH_PUB ? (nrecv ? o->count * nrecv : o->count)
        : o->mode == CLI_BENCH_QUEUE
            ? o->count
            : o->count + (o->count / 10 < 1000 ? o->count / 10 : 1000);
    int64_t next_bar = 0;
    for (;;) {
        bool running = false;
        for (size_t i = 0; i < nw; i++)
            if (ws[i].started && pthread_tryjoin_np (ws[i].thread, NULL) != 0)
                running = true;
            else
                ws[i].started = false;
        if (!running)
            break;
        int64_t now = s_now_ns ();
        if (now > deadline && !atomic_load (&sh.stop)) {
            timed_out = true;
            s_fail (&sh, "timed out after %" PRId64 " ms (--timeout)",
                    o->timeout_ms);
        }
        if (o->interrupted && *o->interrupted && !atomic_load (&sh.stop)) {
            interrupted = true;
            s_fail (&sh, "interrupted");
        }
        if (o->progress && now >= next_bar) {
            uint64_t done = o->mode == CLI_BENCH_PUB && !nrecv
                                ? atomic_load (&sh.sent)
                                : atomic_load (&sh.received);
            s_progress (&sh, done, total, false);
            next_bar = now + 100000000LL;
        }
        usleep (2000);
    }
    if (o->progress)
        s_progress (&sh, 0, 0, true);
    (void) timed_out;
    (void) interrupted;
    /*  BYE from every worker, after all are done (a responder must not
        leave while the requester still waits). */
    for (size_t i = 0; i < nw; i++)
        s_close (&ws[i]);

    /*  The summary. */
    uint64_t sent = atomic_load (&sh.sent);
    int64_t t_send = 0, t_recv = 0;
    for (size_t i = 0; i < nsend; i++)
        if (ws[i].t_last - sh.t0 > t_send)
            t_send = ws[i].t_last - sh.t0;
    for (size_t i = 0; i < nw; i++) {
        cli_bench_hist_merge (all, &hists[i]);
        if (i >= nsend && ws[i].t_last - sh.t0 > t_recv)
            t_recv = ws[i].t_last - sh.t0;
    }
    uint64_t lost = 0, received = atomic_load (&sh.received);
    if (o->mode == CLI_BENCH_PUB) {
        for (size_t i = nsend; i < nw; i++)
            lost += ws[i].got < sent ? sent - ws[i].got : 0;
    } else if (o->mode == CLI_BENCH_QUEUE)
        lost = received < sent ? sent - received : 0;
    else
        lost = received < sent ? sent - received : 0;
    bool failed = sh.failed || lost > 0;
    json_t *j = json_object ();
    json_object_set_new (j, "mode", json_string (s_mode_names[o->mode]));
    if (o->mode != CLI_BENCH_RPC)
        json_object_set_new (j, "channel", json_string (o->channel));
    json_object_set_new (j, "size", json_integer ((json_int_t) o->size));
    json_object_set_new (j, "count", json_integer ((json_int_t) o->count));
    json_object_set_new (j, "sent", json_integer ((json_int_t) sent));
    json_object_set_new (j, "received", json_integer ((json_int_t) received));
    json_object_set_new (j, "lost", json_integer ((json_int_t) lost));
    json_object_set_new (j, "ok", json_boolean (!failed));
    json_object_set_new (j, "error",
                         sh.failed ? json_string (sh.err) : json_null ());
    if (!o->json) {
        printf ("aaax bench %s: %s, %" PRIu64 " B payload",
                s_mode_names[o->mode], o->endpoint, o->size);
        if (o->mode != CLI_BENCH_RPC)
            printf (", channel %s", o->channel);
        printf ("\n");
    }
    if (o->mode == CLI_BENCH_PUB) {
        json_object_set_new (j, "publishers",
                             json_integer ((json_int_t) o->publishers));
        json_object_set_new (j, "subscribers",
                             json_integer ((json_int_t) o->subscribers));
        json_object_set_new (j, "publish", s_rate_json (sent, t_send, o->size));
        json_object_set_new (j, "write_batch",
                             json_integer ((json_int_t) o->wbatch));
        json_t *subs = json_array ();
        if (!o->json) {
            printf (
                "  %" PRIu64 " publishers, %" PRIu64
                " subscribers, %d messages in flight per publisher, %" PRIu64
                " per WRITE%s\n",
                o->publishers, o->subscribers, CLI_BENCH_WINDOW, o->wbatch,
                o->wbatch > 1 ? " (batch; subscribers get MSGS)" : "");
            s_rate_print ("publish (OKs)", sent, t_send, o->size);
        }
        for (size_t i = nsend; i < nw; i++) {
            int64_t el = ws[i].t_last - sh.t0;
            double r = s_rate (ws[i].got, el);
            json_array_append_new (
                subs,
                json_pack ("{s:s,s:I,s:f,s:f,s:f}", "system", ws[i].system,
                           "received", (json_int_t) ws[i].got, "seconds",
                           s_secs (el), "msgs_per_s", r, "mb_per_s",
                           r * (double) o->size / 1e6));
            if (!o->json) {
                char what[32];
                snprintf (what, sizeof what, "subscriber %d", ws[i].index);
                s_rate_print (what, ws[i].got, el, o->size);
            }
        }
        json_object_set_new (j, "per_subscriber", subs);
        json_object_set_new (
            j, "dropped",
            json_integer ((json_int_t) atomic_load (&sh.dropped)));
        json_object_set_new (j, "latency_us", s_lat_json (all));
        if (!o->json)
            s_lat_print ("latency write->receive", all);
    } else if (o->mode == CLI_BENCH_QUEUE) {
        json_object_set_new (j, "producers",
                             json_integer ((json_int_t) o->publishers));
        json_object_set_new (j, "consumers",
                             json_integer ((json_int_t) o->subscribers));
        json_object_set_new (j, "batch", json_integer ((json_int_t) o->batch));
        json_object_set_new (j, "write_batch",
                             json_integer ((json_int_t) o->wbatch));
        json_object_set_new (
            j, "claimed",
            json_integer ((json_int_t) atomic_load (&sh.claimed)));
        json_object_set_new (
            j, "foreign",
            json_integer ((json_int_t) atomic_load (&sh.foreign)));
        json_object_set_new (j, "enqueue", s_rate_json (sent, t_send, o->size));
        json_object_set_new (j, "end_to_end",
                             s_rate_json (received, t_recv, o->size));
        json_object_set_new (j, "latency_us", s_lat_json (all));
        if (!o->json) {
            printf (
                "  %" PRIu64 " producers (%d messages in flight each, %" PRIu64
                " per WRITE), %" PRIu64 " consumers (CLAIM max %" PRIu64 ")\n",
                o->publishers, CLI_BENCH_WINDOW, o->wbatch, o->subscribers,
                o->batch);
            s_rate_print ("enqueue (OKs)", sent, t_send, o->size);
            s_rate_print ("end to end (ACKed)", received, t_recv, o->size);
            s_lat_print ("latency write->claim", all);
            if (atomic_load (&sh.foreign))
                printf ("  %" PRIu64 " messages in %s were not this run's: "
                        "left alone (released at the end)\n",
                        (uint64_t) atomic_load (&sh.foreign), o->channel);
        }
    } else {
        uint64_t warm = o->count / 10 < 1000 ? o->count / 10 : 1000;
        int64_t el = ws[0].t_last - ws[0].t_first;
        json_object_set_new (j, "warmup", json_integer ((json_int_t) warm));
        json_object_set_new (j, "transient", json_boolean (o->transient));
        json_object_set_new (j, "round_trips",
                             json_integer ((json_int_t) ws[0].got));
        json_object_set_new (j, "rate", s_rate_json (ws[0].got, el, o->size));
        json_object_set_new (j, "latency_us", s_lat_json (all));
        if (!o->json) {
            printf ("  1 requester, 1 responder, 1 in flight, %" PRIu64
                    " warm-up round trips not counted, %s SENDs\n",
                    warm,
                    o->transient ? "transient (never stored)"
                                 : "durable mailbox");
            s_rate_print ("round trips", ws[0].got, el, o->size);
            s_lat_print ("round trip SEND->reply", all);
        }
    }
    int ret = CLI_BENCH_OK;
    if (o->json) {
        char *text = json_dumps (j, JSON_COMPACT | JSON_REAL_PRECISION (6));
        if (text)
            printf ("%s\n", text);
        free (text);
    }
    json_decref (j);
    if (fflush (stdout) != 0 || ferror (stdout))
        ret = CLI_BENCH_FAILED;
    if (sh.failed) {
        fprintf (stderr, "aaax bench: %s\n", sh.err);
        ret = CLI_BENCH_FAILED;
    }
    if (lost > 0) {
        if (o->mode == CLI_BENCH_PUB)
            fprintf (stderr,
                     "aaax bench: %" PRIu64 " of %" PRIu64
                     " deliveries were not received (%" PRIu64
                     " messages sent to %" PRIu64 " subscribers)\n",
                     lost, sent * nrecv, sent, (uint64_t) nrecv);
        else
            fprintf (stderr,
                     "aaax bench: %" PRIu64 " of %" PRIu64
                     " messages sent were not received\n",
                     lost, sent);
        ret = CLI_BENCH_FAILED;
    }
    pthread_mutex_destroy (&sh.lock);
    free (ws);
    free (hists);
    free (all);
    return ret;
}
