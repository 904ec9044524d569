/*  peer_nats.c — see peer_nats.h. A client written for the benchmark from
    the protocol's documentation: blocking sockets, one buffer each way. */

#include "peer_nats.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_RBUF (256 * 1024)
#define S_WBUF_FLUSH (64 * 1024)
#define S_MAX_SUBS 8
#define S_SETUP_MS 10000

/*  ---- the server -------------------------------------------------------- */

int
peer_nats_start (peer_server_t *s, bool jetstream)
{
    if (peer_server_prepare (s, "nats-server") != 0)
        return -1;
    char port[16], sd[PATH_MAX + 8];
    snprintf (port, sizeof port, "%d", s->port);
    snprintf (sd, sizeof sd, "%s/js", s->dir);
    /*  Without JetStream, the argument list ends before -js. */
    char *argv[] = { "nats-server", "-p",        port,
                     "-a",          "127.0.0.1", jetstream ? "-js" : NULL,
                     "-sd",         sd,          NULL };
    if (peer_server_spawn (s, argv, 10000) != 0) {
        peer_server_stop (s);
        return -1;
    }
    /*  Its version, from INFO. */
    int fd = peer_tcp_connect (s->port);
    if (fd >= 0) {
        char buf[2048];
        ssize_t n = recv (fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            char *v = strstr (buf, "\"version\":\"");
            if (v) {
                v += 11;
                size_t k = strcspn (v, "\"");
                snprintf (s->version, sizeof s->version, "%.*s", (int) k, v);
            }
        }
        close (fd);
    }
    return 0;
}

/*  ---- the client -------------------------------------------------------- */

static int
s_err (peer_nats_t *c, const char *what)
{
    snprintf (c->err, sizeof c->err, "%s", what);
    return -1;
}

int
peer_nats_flush (peer_nats_t *c)
{
    size_t off = 0;
    while (off < c->wlen) {
        ssize_t n = send (c->fd, c->wbuf + off, c->wlen - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf (c->err, sizeof c->err, "send: %s", strerror (errno));
            return -1;
        }
        off += (size_t) n;
    }
    c->wlen = 0;
    return 0;
}

static int
s_put (peer_nats_t *c, const void *data, size_t len)
{
    if (c->wlen + len > c->wcap) {
        size_t cap = c->wcap ? c->wcap : S_WBUF_FLUSH * 2;
        while (cap < c->wlen + len)
            cap *= 2;
        char *w = realloc (c->wbuf, cap);
        if (!w)
            return s_err (c, "out of memory");
        c->wbuf = w;
        c->wcap = cap;
    }
    memcpy (c->wbuf + c->wlen, data, len);
    c->wlen += len;
    return 0;
}

static size_t
s_utoa (char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

int
peer_nats_pub (peer_nats_t *c, const char *subject, const char *reply,
               const void *data, size_t len)
{
    char hdr[512];
    size_t sl = strlen (subject), rl = reply ? strlen (reply) : 0;
    if (sl + rl + 40 > sizeof hdr)
        return s_err (c, "subject too long");
    size_t h = 0;
    memcpy (hdr, "PUB ", 4), h = 4;
    memcpy (hdr + h, subject, sl), h += sl;
    hdr[h++] = ' ';
    if (reply) {
        memcpy (hdr + h, reply, rl), h += rl;
        hdr[h++] = ' ';
    }
    h += s_utoa (hdr + h, len);
    hdr[h++] = '\r', hdr[h++] = '\n';
    if (s_put (c, hdr, h) || s_put (c, data, len) || s_put (c, "\r\n", 2))
        return -1;
    return c->wlen >= S_WBUF_FLUSH ? peer_nats_flush (c) : 0;
}

int
peer_nats_sub (peer_nats_t *c, const char *subject, unsigned sid)
{
    char line[512];
    int n = snprintf (line, sizeof line, "SUB %s %u\r\n", subject, sid);
    if (n <= 0 || (size_t) n >= sizeof line)
        return s_err (c, "subject too long");
    return s_put (c, line, (size_t) n);
}

/*  Reads more, so that at least need bytes from rpos fit in the buffer.
    1: read something, 0: timeout, -1: error or EOF. */
static int
s_fill (peer_nats_t *c, size_t need, int timeout_ms)
{
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    if (c->rpos + need > c->rcap || c->rlen == c->rcap) {
        memmove (c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (need > c->rcap) {
        size_t cap = c->rcap * 2 > need ? c->rcap * 2 : need;
        char *r = realloc (c->rbuf, cap);
        if (!r)
            return s_err (c, "out of memory");
        c->rbuf = r;
        c->rcap = cap;
    }
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    int pr = poll (&pfd, 1, timeout_ms);
    if (pr == 0)
        return 0;
    if (pr < 0)
        return errno == EINTR ? 0 : s_err (c, "poll failed");
    ssize_t n = recv (c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (n == 0)
        return s_err (c, "connection closed by the server (a slow "
                         "consumer is disconnected: see its log)");
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return 0;
        snprintf (c->err, sizeof c->err, "recv: %s", strerror (errno));
        return -1;
    }
    c->rlen += (size_t) n;
    return 1;
}

/*  Splits [p, end) at spaces into at most max tokens; returns the count. */
static int
s_split (const char *p, const char *end, const char **tok, size_t *tlen,
         int max)
{
    int n = 0;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end)
            break;
        if (n == max)
            return -1;
        tok[n] = p;
        while (p < end && *p != ' ' && *p != '\t')
            p++;
        tlen[n] = (size_t) (p - tok[n]);
        n++;
    }
    return n;
}

static bool
s_num (const char *t, size_t len, size_t *out)
{
    size_t v = 0;
    if (len == 0 || len > 12)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (t[i] < '0' || t[i] > '9')
            return false;
        v = v * 10 + (size_t) (t[i] - '0');
    }
    *out = v;
    return true;
}

/*  1: a message in m; 2: a PONG (when stop_on_pong); 0: timeout; -1. */
static int
s_next (peer_nats_t *c, peer_nats_msg_t *m, int timeout_ms, bool stop_on_pong)
{
    int64_t deadline = peer_now_ns () + (int64_t) timeout_ms * 1000000;
    size_t need = 0;
    for (;;) {
        const char *line = c->rbuf + c->rpos;
        size_t avail = c->rlen - c->rpos;
        const char *eol = need ? NULL : memmem (line, avail, "\r\n", 2);
        if (!eol) {
            if (!need)
                need = avail + 1;
            int64_t left = (deadline - peer_now_ns ()) / 1000000;
            int rc = s_fill (c, need, left > 0 ? (int) left : 0);
            if (rc < 0)
                return -1;
            if (rc == 0 && left <= 0)
                return 0;
            need = 0;
            continue;
        }
        size_t ll = (size_t) (eol - line);
        const char *tok[6];
        size_t tl[6];
        bool hmsg = ll > 5 && memcmp (line, "HMSG ", 5) == 0;
        if (hmsg || (ll > 4 && memcmp (line, "MSG ", 4) == 0)) {
            int nt = s_split (line + (hmsg ? 5 : 4), eol, tok, tl, 6);
            int want = hmsg ? 4 : 3; /* without a reply subject */
            size_t hlen = 0, tlen = 0;
            if ((nt != want && nt != want + 1)
                || !s_num (tok[nt - 1], tl[nt - 1], &tlen)
                || (hmsg && !s_num (tok[nt - 2], tl[nt - 2], &hlen))
                || hlen > tlen)
                return s_err (c, "malformed MSG line");
            size_t total = ll + 2 + tlen + 2;
            if (avail < total) {
                need = total;
                continue;
            }
            m->subject = tok[0];
            m->subject_len = tl[0];
            m->reply = nt == want + 1 ? tok[2] : NULL;
            m->reply_len = nt == want + 1 ? tl[2] : 0;
            m->hdr = hmsg ? eol + 2 : NULL;
            m->hdr_len = hlen;
            m->data = eol + 2 + hlen;
            m->len = tlen - hlen;
            c->rpos += total;
            return 1;
        }
        c->rpos += ll + 2;
        if (ll == 4 && memcmp (line, "PING", 4) == 0) {
            if (s_put (c, "PONG\r\n", 6) || peer_nats_flush (c))
                return -1;
        } else if (ll == 4 && memcmp (line, "PONG", 4) == 0) {
            c->pongs++;
            if (stop_on_pong)
                return 2;
        } else if (ll >= 4 && memcmp (line, "-ERR", 4) == 0) {
            snprintf (c->err, sizeof c->err, "server: %.*s",
                      (int) (ll < 120 ? ll : 120), line);
            return -1;
        } else if (!(ll >= 3 && memcmp (line, "+OK", 3) == 0)
                   && !(ll >= 4 && memcmp (line, "INFO", 4) == 0)) {
            snprintf (c->err, sizeof c->err, "unexpected: %.*s",
                      (int) (ll < 80 ? ll : 80), line);
            return -1;
        }
    }
}

int
peer_nats_next (peer_nats_t *c, peer_nats_msg_t *m, int timeout_ms)
{
    return s_next (c, m, timeout_ms, false);
}

int
peer_nats_ping (peer_nats_t *c, int timeout_ms)
{
    if (s_put (c, "PING\r\n", 6) || peer_nats_flush (c))
        return -1;
    peer_nats_msg_t m;
    int rc = s_next (c, &m, timeout_ms, true);
    if (rc == 2)
        return 0;
    if (rc == 1)
        return s_err (c, "a MSG before the PONG");
    if (rc == 0)
        return s_err (c, "no PONG in time");
    return -1;
}

int
peer_nats_connect (peer_nats_t *c, int port, const char *name)
{
    memset (c, 0, sizeof *c);
    c->rcap = S_RBUF;
    c->rbuf = malloc (c->rcap);
    c->fd = peer_tcp_connect (port);
    if (c->fd < 0 || !c->rbuf)
        return s_err (c, "cannot connect");
    int sz = 4 << 20;
    setsockopt (c->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    char line[512];
    int n = snprintf (line, sizeof line,
                      "CONNECT {\"verbose\":false,\"pedantic\":false,"
                      "\"tls_required\":false,\"name\":\"%s\",\"lang\":\"c\","
                      "\"version\":\"0.1\",\"protocol\":1,\"headers\":true,"
                      "\"no_responders\":true}\r\n",
                      name);
    if (s_put (c, line, (size_t) n))
        return -1;
    return peer_nats_ping (c, 5000);
}

void
peer_nats_close (peer_nats_t *c)
{
    if (c->fd >= 0)
        close (c->fd);
    c->fd = -1;
    free (c->rbuf);
    free (c->wbuf);
    c->rbuf = c->wbuf = NULL;
}

/*  ---- core pub/sub ------------------------------------------------------ */

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
    peer_nats_t c;
    char name[32];
    snprintf (name, sizeof name, "bench-sub-%u", u->idx);
    if (peer_nats_connect (&c, u->s->port, name)
        || peer_nats_sub (&c, "bench.b", 1)
        || peer_nats_ping (&c, S_SETUP_MS)) {
        snprintf (u->err, sizeof u->err, "subscribe: %s", c.err);
        atomic_store (&u->state, -1);
        peer_nats_close (&c);
        return NULL;
    }
    atomic_store (&u->state, 1);
    uint64_t got = 0;
    while (got < u->p->count) {
        peer_nats_msg_t m;
        int rc = peer_nats_next (&c, &m, 100);
        if (rc < 0) {
            snprintf (u->err, sizeof u->err, "%s", c.err);
            break;
        }
        if (rc == 0) {
            if (atomic_load (u->stop))
                break;
            continue;
        }
        if (m.len != u->p->size || peer_seq_get (m.data) != got) {
            snprintf (u->err, sizeof u->err,
                      "message %" PRIu64 ": seq %" PRIu64 ", %zu bytes", got,
                      m.len >= 8 ? peer_seq_get (m.data) : 0, m.len);
            break;
        }
        got++;
        if ((got & 255) == 0 || got == u->p->count)
            atomic_store_explicit (&u->got, got, memory_order_release);
    }
    u->t_last = peer_now_ns ();
    atomic_store (&u->got, got);
    atomic_store (&u->state, got == u->p->count ? 2 : -1);
    peer_nats_close (&c);
    return NULL;
}

/*  Waits until every subscriber is subscribed (state != 0). */
static int
s_wait_ready (s_sub_t *subs, unsigned n, peer_result_t *r)
{
    int64_t deadline = peer_now_ns () + (int64_t) S_SETUP_MS * 1000000;
    for (unsigned i = 0; i < n; i++) {
        while (atomic_load (&subs[i].state) == 0 && peer_now_ns () < deadline)
            peer_sleep_us (1000);
        int st = atomic_load (&subs[i].state);
        if (st == 0)
            return peer_fail (r, "subscriber %u not ready in time", i);
        if (st < 0)
            return peer_fail (r, "subscriber %u: %s", i, subs[i].err);
    }
    return 0;
}

int
peer_nats_pubsub (const peer_server_t *s, const peer_params_t *p,
                  peer_result_t *r)
{
    char wl[48];
    snprintf (wl, sizeof wl, "pubsub 1->%u", p->subs);
    peer_result_init (r, "nats", wl, p);
    if (p->subs < 1 || p->subs > S_MAX_SUBS || p->size < 8)
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
    peer_nats_t c;
    int rc = peer_nats_connect (&c, s->port, "bench-pub");
    if (started < p->subs || !payload)
        peer_fail (r, "cannot start subscribers");
    else if (rc)
        peer_fail (r, "publisher: %s", c.err);
    else if (s_wait_ready (subs, p->subs, r) == 0) {
        memset (payload, 'x', p->size);
        double cpu0 = peer_proc_cpu_us (s->pid);
        int64_t t0 = peer_now_ns ();
        int64_t deadline = t0 + (int64_t) p->limit_s * 1000000000;
        uint64_t i;
        for (i = 0; i < p->count && r->ok; i++) {
            if (p->lead && (i & 1023) == 0) {
                /*  Stay at most p->lead ahead of the slowest subscriber. */
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
                    if (peer_nats_flush (&c)) {
                        peer_fail (r, "publisher: %s", c.err);
                        break;
                    }
                    if (peer_now_ns () > deadline) {
                        peer_fail (r, "timed out after %d s", p->limit_s);
                        break;
                    }
                    sched_yield ();
                }
                if (!r->ok)
                    break;
            }
            peer_seq_put (payload, i);
            if (peer_nats_pub (&c, "bench.b", NULL, payload, p->size)) {
                peer_fail (r, "publisher: %s", c.err);
                break;
            }
        }
        if (r->ok && peer_nats_flush (&c))
            peer_fail (r, "publisher: %s", c.err);
        r->count = i;
        /*  Every subscriber gets everything, or the time limit passes. */
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
    peer_nats_close (&c);
    free (payload);
    return r->ok ? 0 : -1;
}

/*  ---- request/reply ----------------------------------------------------- */

typedef struct {
    const peer_server_t *s;
    atomic_int state;
    atomic_bool stop;
    uint64_t served;
    char err[200];
} s_resp_t;

static void *
s_resp_main (void *arg)
{
    s_resp_t *u = arg;
    peer_nats_t c;
    if (peer_nats_connect (&c, u->s->port, "bench-responder")
        || peer_nats_sub (&c, "bench.rpc", 1)
        || peer_nats_ping (&c, S_SETUP_MS)) {
        snprintf (u->err, sizeof u->err, "responder: %s", c.err);
        atomic_store (&u->state, -1);
        peer_nats_close (&c);
        return NULL;
    }
    atomic_store (&u->state, 1);
    char reply[256];
    while (!atomic_load (&u->stop)) {
        peer_nats_msg_t m;
        int rc = peer_nats_next (&c, &m, 100);
        if (rc < 0) {
            snprintf (u->err, sizeof u->err, "responder: %s", c.err);
            atomic_store (&u->state, -1);
            break;
        }
        if (rc == 0 || !m.reply || m.reply_len >= sizeof reply)
            continue;
        memcpy (reply, m.reply, m.reply_len);
        reply[m.reply_len] = 0;
        if (peer_nats_pub (&c, reply, NULL, m.data, m.len)
            || peer_nats_flush (&c)) {
            snprintf (u->err, sizeof u->err, "responder: %s", c.err);
            atomic_store (&u->state, -1);
            break;
        }
        u->served++;
    }
    peer_nats_close (&c);
    return NULL;
}

int
peer_nats_rtt (const peer_server_t *s, const peer_params_t *p, peer_result_t *r)
{
    peer_result_init (r, "nats", "req/reply", p);
    if (p->size < 8 || p->samples == 0)
        return peer_fail (r, "bad parameters");
    s_resp_t resp;
    memset (&resp, 0, sizeof resp);
    resp.s = s;
    pthread_t th;
    if (pthread_create (&th, NULL, s_resp_main, &resp) != 0)
        return peer_fail (r, "cannot start the responder");
    uint32_t warm = p->samples / 10, total = warm + p->samples;
    int64_t *lat = calloc (p->samples, sizeof *lat);
    char *payload = malloc (p->size);
    char inbox[64];
    snprintf (inbox, sizeof inbox, "_INBOX.bench%d.%lx", (int) getpid (),
              (unsigned long) peer_now_ns ());
    peer_nats_t c;
    if (peer_nats_connect (&c, s->port, "bench-requester")
        || peer_nats_sub (&c, inbox, 1) || peer_nats_ping (&c, S_SETUP_MS))
        peer_fail (r, "requester: %s", c.err);
    int64_t deadline = peer_now_ns () + (int64_t) S_SETUP_MS * 1000000;
    while (r->ok && atomic_load (&resp.state) == 0 && peer_now_ns () < deadline)
        peer_sleep_us (1000);
    if (r->ok && atomic_load (&resp.state) != 1)
        peer_fail (r, "%s", resp.err[0] ? resp.err : "responder not ready");
    if (!lat || !payload)
        peer_fail (r, "out of memory");
    double cpu0 = 0;
    int64_t t0 = 0;
    deadline = peer_now_ns () + (int64_t) p->limit_s * 1000000000;
    uint32_t i;
    if (r->ok)
        memset (payload, 'x', p->size);
    for (i = 0; i < total && r->ok; i++) {
        if (i == warm) {
            cpu0 = peer_proc_cpu_us (s->pid);
            t0 = peer_now_ns ();
        }
        peer_seq_put (payload, i);
        int64_t ts = peer_now_ns ();
        if (peer_nats_pub (&c, "bench.rpc", inbox, payload, p->size)
            || peer_nats_flush (&c)) {
            peer_fail (r, "requester: %s", c.err);
            break;
        }
        peer_nats_msg_t m;
        int rc = peer_nats_next (&c, &m, 5000);
        int64_t te = peer_now_ns ();
        if (rc <= 0) {
            peer_fail (r, "round trip %u: %s", i,
                       rc == 0 ? "no reply in 5 s" : c.err);
            break;
        }
        if (m.hdr) {
            peer_fail (r, "round trip %u: status %.*s", i,
                       (int) (m.hdr_len < 40 ? m.hdr_len : 40), m.hdr);
            break;
        }
        if (m.len != p->size || peer_seq_get (m.data) != i) {
            peer_fail (r, "round trip %u: wrong reply", i);
            break;
        }
        if (i >= warm)
            lat[i - warm] = te - ts;
        if (te > deadline) {
            peer_fail (r, "timed out after %d s (%u round trips)", p->limit_s,
                       i + 1);
            break;
        }
    }
    if (r->ok) {
        int64_t t1 = peer_now_ns ();
        double cpu1 = peer_proc_cpu_us (s->pid);
        r->count = r->received = p->samples;
        r->secs = (double) (t1 - t0) / 1e9;
        r->msgs_s = (double) p->samples / r->secs;
        r->cpu_us_msg = (cpu1 - cpu0) / (double) p->samples;
        peer_latency (lat, p->samples, r);
    }
    atomic_store (&resp.stop, true);
    pthread_join (th, NULL);
    peer_nats_close (&c);
    free (lat);
    free (payload);
    return r->ok ? 0 : -1;
}

/*  ---- JetStream work-queue stream --------------------------------------- */

/*  A request on c: answer copied into out (NUL-terminated). c must be
    subscribed to inbox. */
static int
s_request (peer_nats_t *c, const char *subject, const char *inbox,
           const char *body, char *out, size_t cap)
{
    if (peer_nats_pub (c, subject, inbox, body, strlen (body))
        || peer_nats_flush (c))
        return -1;
    peer_nats_msg_t m;
    int rc = peer_nats_next (c, &m, 5000);
    if (rc <= 0) {
        if (rc == 0)
            s_err (c, "no answer in 5 s");
        return -1;
    }
    if (m.hdr) {
        snprintf (c->err, sizeof c->err, "status %.*s",
                  (int) (m.hdr_len < 60 ? m.hdr_len : 60), m.hdr);
        return -1;
    }
    snprintf (out, cap, "%.*s", (int) m.len, m.data);
    if (strstr (out, "\"error\"")) {
        snprintf (c->err, sizeof c->err, "%.150s", out);
        return -1;
    }
    return 0;
}

typedef struct {
    const peer_server_t *s;
    const peer_params_t *p;
    unsigned idx;
    pthread_t th;
    atomic_bool *go, *abort;
    atomic_uint_fast64_t *acked;
    _Atomic uint64_t *seen;
    int64_t deadline;
    bool failed;
    char err[200];
} s_jsw_t;

static void
s_jsw_fail (s_jsw_t *u, const char *what, const char *detail)
{
    if (!u->failed)
        snprintf (u->err, sizeof u->err, "%s: %s", what, detail);
    u->failed = true;
    atomic_store (u->abort, true);
}

static void *
s_jsprod_main (void *arg)
{
    s_jsw_t *u = arg;
    const peer_params_t *p = u->p;
    peer_nats_t c;
    char inbox[64], name[32];
    snprintf (inbox, sizeof inbox, "_INBOX.jsp%u.%d", u->idx, (int) getpid ());
    snprintf (name, sizeof name, "bench-jsprod-%u", u->idx);
    char *payload = calloc (1, p->size);
    if (peer_nats_connect (&c, u->s->port, name) || peer_nats_sub (&c, inbox, 1)
        || peer_nats_ping (&c, S_SETUP_MS) || !payload) {
        s_jsw_fail (u, "producer", c.err);
        goto done;
    }
    memset (payload, 'x', p->size);
    while (!atomic_load (u->go) && !atomic_load (u->abort))
        sched_yield ();
    uint64_t out = 0;
    for (uint64_t seq = u->idx; !u->failed; seq += p->producers) {
        bool more = seq < p->count && !atomic_load (u->abort);
        if (more) {
            peer_seq_put (payload, seq);
            if (peer_nats_pub (&c, "bench.jq", inbox, payload, p->size)) {
                s_jsw_fail (u, "producer", c.err);
                break;
            }
            out++;
        }
        if (out > 0 && (out >= p->batch || !more) && peer_nats_flush (&c)) {
            s_jsw_fail (u, "producer", c.err);
            break;
        }
        while (out > 0 && (out >= p->batch || !more)) {
            peer_nats_msg_t m;
            int rc = peer_nats_next (&c, &m, 5000);
            if (rc <= 0) {
                s_jsw_fail (u, "producer", rc ? c.err : "no ack in 5 s");
                break;
            }
            if (m.hdr || !memmem (m.data, m.len, "\"seq\"", 5)
                || memmem (m.data, m.len, "\"error\"", 7)) {
                s_jsw_fail (u, "producer", "publish not acknowledged");
                break;
            }
            out--;
        }
        if (!more)
            break;
        if (peer_now_ns () > u->deadline)
            s_jsw_fail (u, "producer", "timed out");
    }
done:
    peer_nats_close (&c);
    free (payload);
    return NULL;
}

static void *
s_jscons_main (void *arg)
{
    s_jsw_t *u = arg;
    const peer_params_t *p = u->p;
    peer_nats_t c;
    char inbox[64], name[32], pull[96], reply[256];
    snprintf (inbox, sizeof inbox, "_INBOX.jsc%u.%d", u->idx, (int) getpid ());
    snprintf (name, sizeof name, "bench-jscons-%u", u->idx);
    snprintf (pull, sizeof pull, "{\"batch\":%u,\"expires\":100000000}",
              p->batch);
    if (peer_nats_connect (&c, u->s->port, name) || peer_nats_sub (&c, inbox, 1)
        || peer_nats_ping (&c, S_SETUP_MS)) {
        s_jsw_fail (u, "consumer", c.err);
        goto done;
    }
    while (!atomic_load (u->go) && !atomic_load (u->abort))
        sched_yield ();
    while (!u->failed && !atomic_load (u->abort)
           && atomic_load (u->acked) < p->count) {
        if (peer_nats_pub (&c, "$JS.API.CONSUMER.MSG.NEXT.BQ.C", inbox, pull,
                           strlen (pull))
            || peer_nats_flush (&c)) {
            s_jsw_fail (u, "consumer", c.err);
            break;
        }
        for (uint32_t got = 0; got < p->batch;) {
            peer_nats_msg_t m;
            int rc = peer_nats_next (&c, &m, 5000);
            if (rc <= 0) {
                s_jsw_fail (u, "consumer", rc ? c.err : "pull: nothing in 5 s");
                break;
            }
            if (m.hdr) { /* 404 no messages, 408 expired: pull again */
                if (m.hdr_len < 12
                    || (memcmp (m.hdr + 9, "404", 3)
                        && memcmp (m.hdr + 9, "408", 3)))
                    s_jsw_fail (u, "consumer", "pull status not 404/408");
                break;
            }
            if (m.len != p->size || !m.reply || m.reply_len >= sizeof reply) {
                s_jsw_fail (u, "consumer", "unexpected message");
                break;
            }
            uint64_t seq = peer_seq_get (m.data);
            uint64_t bit = (uint64_t) 1 << (seq & 63);
            if (seq >= p->count
                || (atomic_fetch_or (&u->seen[seq >> 6], bit) & bit)) {
                s_jsw_fail (u, "consumer", "sequence out of range or twice");
                break;
            }
            memcpy (reply, m.reply, m.reply_len);
            reply[m.reply_len] = 0;
            if (peer_nats_pub (&c, reply, NULL, "+ACK", 4)) {
                s_jsw_fail (u, "consumer", c.err);
                break;
            }
            got++;
            atomic_fetch_add (u->acked, 1);
        }
        if (peer_nats_flush (&c))
            s_jsw_fail (u, "consumer", c.err);
        if (peer_now_ns () > u->deadline)
            s_jsw_fail (u, "consumer", "timed out");
    }
done:
    peer_nats_close (&c);
    return NULL;
}

/*  The stream's message count from STREAM.INFO, or -1. */
static long long
s_stream_msgs (peer_nats_t *c, const char *inbox)
{
    char out[4096];
    if (s_request (c, "$JS.API.STREAM.INFO.BQ", inbox, "", out, sizeof out))
        return -1;
    const char *m = strstr (out, "\"messages\":");
    return m ? atoll (m + 11) : -1;
}

int
peer_nats_jsqueue (const peer_server_t *s, const peer_params_t *p,
                   peer_result_t *r)
{
    char wl[48];
    snprintf (wl, sizeof wl, "jetstream wq %uP/%uC (no fsync)", p->producers,
              p->subs);
    peer_result_init (r, "nats", wl, p);
    if (p->subs < 1 || p->subs > S_MAX_SUBS || p->producers < 1
        || p->producers > S_MAX_SUBS || p->size < 8 || !p->batch)
        return peer_fail (r, "bad parameters");
    peer_nats_t c;
    char inbox[64], out[4096], body[512];
    snprintf (inbox, sizeof inbox, "_INBOX.jsadm.%d", (int) getpid ());
    snprintf (body, sizeof body,
              "{\"stream_name\":\"BQ\",\"config\":{\"durable_name\":\"C\","
              "\"ack_policy\":\"explicit\",\"max_ack_pending\":%u,"
              "\"max_waiting\":64,\"ack_wait\":30000000000}}",
              p->batch * p->subs * 2);
    if (peer_nats_connect (&c, s->port, "bench-jsadmin")
        || peer_nats_sub (&c, inbox, 1) || peer_nats_ping (&c, S_SETUP_MS)
        || s_request (&c, "$JS.API.STREAM.CREATE.BQ", inbox,
                      "{\"name\":\"BQ\",\"subjects\":[\"bench.jq\"],"
                      "\"retention\":\"workqueue\",\"storage\":\"file\","
                      "\"num_replicas\":1}",
                      out, sizeof out)
        || s_request (&c, "$JS.API.CONSUMER.DURABLE.CREATE.BQ.C", inbox, body,
                      out, sizeof out)) {
        peer_fail (r, "setup: %s", c.err);
        peer_nats_close (&c);
        return -1;
    }
    _Atomic uint64_t *seen = calloc (p->count / 64 + 1, sizeof *seen);
    atomic_bool go = false, abort_ = false;
    atomic_uint_fast64_t acked = 0;
    s_jsw_t w[2 * S_MAX_SUBS];
    memset (w, 0, sizeof w);
    unsigned nw = p->producers + p->subs, started = 0;
    int64_t deadline = peer_now_ns () + (int64_t) p->limit_s * 1000000000
                       + (int64_t) S_SETUP_MS * 1000000;
    for (unsigned i = 0; i < nw && seen; i++) {
        bool prod = i < p->producers;
        w[i] = (s_jsw_t){ .s = s,
                          .p = p,
                          .idx = prod ? i : i - p->producers,
                          .go = &go,
                          .abort = &abort_,
                          .acked = &acked,
                          .seen = seen,
                          .deadline = deadline };
        if (pthread_create (&w[i].th, NULL,
                            prod ? s_jsprod_main : s_jscons_main, &w[i])
            != 0)
            break;
        started++;
    }
    if (started < nw)
        atomic_store (&abort_, true);
    peer_sleep_us (100000);
    double cpu0 = peer_proc_cpu_us (s->pid);
    int64_t t0 = peer_now_ns ();
    atomic_store (&go, true);
    /*  The end: every message acked and the stream empty (a work-queue
        stream deletes a message once it is acked). */
    int64_t t1 = 0;
    while (!atomic_load (&abort_) && peer_now_ns () < deadline) {
        if (atomic_load (&acked) >= p->count) {
            long long left = s_stream_msgs (&c, inbox);
            if (left == 0) {
                t1 = peer_now_ns ();
                break;
            }
            if (left < 0) {
                peer_fail (r, "STREAM.INFO: %s", c.err);
                break;
            }
        }
        peer_sleep_us (1000);
    }
    double cpu1 = peer_proc_cpu_us (s->pid);
    if (!t1)
        atomic_store (&abort_, true);
    for (unsigned i = 0; i < started; i++)
        pthread_join (w[i].th, NULL);
    for (unsigned i = 0; i < started; i++)
        if (w[i].failed)
            peer_fail (r, "%s", w[i].err);
    r->count = p->count;
    r->received = atomic_load (&acked);
    if (started < nw || !seen)
        peer_fail (r, "cannot start producers and consumers");
    if (r->ok && !t1)
        peer_fail (r,
                   "acked %" PRIu64 " of %" PRIu64 " or stream not empty "
                   "within the limit",
                   r->received, p->count);
    if (r->ok) {
        r->secs = (double) (t1 - t0) / 1e9;
        r->msgs_s = (double) p->count / r->secs;
        r->cpu_us_msg = (cpu1 - cpu0) / (double) p->count;
    }
    peer_nats_close (&c);
    free (seen);
    return r->ok ? 0 : -1;
}
