/*  aaax_bench.c — runs the same traffic through a real aaaxd and through raw
    libzmq sockets (or LMDB directly) in one process run, and prints each
    figure beside its baseline. Never a timed assertion: the exit status says
    only whether everything that was sent was delivered and acknowledged.
    See bench/README.md.

    Built once into a library (bench/CMakeLists.txt): aaax_bench_main.c
    runs all of it through aaax_bench_main; aaax_vs calls the aaax and raw
    libzmq workloads one run at a time through the functions of
    bench_aaax.h, defined at the end of this file. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <czmq.h>
#include <lmdb.h>
#include <msgpack.h>

#include "aaax.h"
#include "act_gate_core.h"
#include "bench_aaax.h"
#include "peer_common.h"
#include "chan_client.h"
#include "chan_env.h"
#include "chan_mpk.h"
#include "cli_kernel.h"
#include "hal_audit.h"
#include "hal_clock.h"
#include "hal_curve.h"
#include "hal_keys.h"
#include "policy.h"

#define S_CHAN_B "bench.b"
#define S_CHAN_Q "bench.q"
#define S_MAX_SUBS 4
#define S_MAX_WORKERS 8
#define S_MAX_RESULTS 32
#define S_PING_US 500000   /* receivers PING this often (heartbeat 1 s) */
#define S_SETUP_MS 15000   /* docking and subscribing, per workload */
#define S_QUEUE_REC_HDR 16 /* chan_queue.c: header before the envelope */
#define S_CLAIM_MAX 500
#define S_CLAIM_WAIT_MS 100
#define S_CLAIMS_OUT 2   /* CLAIMs each consumer keeps outstanding */
#define S_RAW_HWM 100000 /* raw sockets' HWM: the kernel's sndhwm here */
#define S_BCAST_LEAD                                       \
    50000 /* publisher's lead over its slowest subscriber: \
             half the kernel's sndhwm, so a subscriber     \
             starved of CPU slows the publisher down       \
             instead of being DROPPED */

/*  Set by SIGINT / SIGTERM: every loop gives up, then the kernel is stopped
    and the temp dir removed as usual. The one global: signals need it. */
static volatile sig_atomic_t s_interrupted = 0;

static void
s_on_signal (int sig)
{
    (void) sig;
    s_interrupted = 1;
}

/*  ---- options, results, the run ---------------------------------------- */

typedef struct {
    const char *aaaxd;
    bool quick;
    bool keep;
    uint64_t count;   /* broadcast and work-queue messages */
    uint32_t size;    /* payload bytes */
    uint32_t samples; /* mailbox round trips measured */
    uint32_t warmup;  /* mailbox round trips before measuring */
    uint32_t producers, consumers;
    uint32_t bwindow;       /* outstanding WRITEs, broadcast publisher */
    uint32_t wbatch;        /* broadcast: messages per WRITE batch (SUB
                               batch); 0 or 1: one WRITE per message */
    bool transient;         /* mailbox round trip: transient SENDs */
    bool noreply;           /* broadcast: WRITE {noreply} (no OK; paced by
                               the subscribers' credit alone) */
    uint32_t qwindow;       /* outstanding WRITEs, each work-queue producer */
    uint32_t rtt_block;     /* round trips per turn, aaax and raw alternating;
                               0: all aaax, then all raw */
    int limit_s;            /* hard limit on each measured phase */
    unsigned only;          /* S_W_* bits of the workloads to run */
    uint64_t decisions;     /* in-process gate decisions per policy */
    uint64_t audit_records; /* gate decisions appended to the journal */
    uint32_t gate_samples;  /* gate round trips measured */
    uint64_t app_msgs;      /* messages to the app (and to the C consumer) */
    size_t apps;            /* generated apps loaded (idle memory, load) */
    const char *apps_dir;   /* bench/apps */
    size_t sessions;        /* remote sessions docked at once */
    uint32_t probe_s;       /* PING probe beside them, seconds */
    uint64_t remote_count;  /* messages per remote throughput run */
    bool no_pin;            /* remote round trips: leave CPUs alone */
} s_opts_t;

enum {
    S_W_BCAST = 1,
    S_W_QUEUE = 2,
    S_W_RTT = 4,
    S_W_GATE = 8,      /* in-process: decisions, decisions + audit */
    S_W_GATE_RTT = 16, /* the gate over tcp */
    S_W_APP_MSGS = 32, /* the app host: each starts its own kernel */
    S_W_APP_MEM = 64,
    S_W_APP_LOAD = 128,
    S_W_APPS = S_W_APP_MSGS | S_W_APP_MEM | S_W_APP_LOAD,
    S_W_REMOTE = 256, /* CURVE against plain tcp: two kernels of its own */
    S_W_ALL = 511,
    S_W_KERNEL = S_W_BCAST | S_W_QUEUE | S_W_RTT | S_W_GATE_RTT
};

typedef struct {
    char name[32];  /* machine-readable name */
    char label[40]; /* table label */
    double aaax;
    double base;
    char base_note[40]; /* what base is */
    double ratio;
    char target[48];
    int target_met; /* -1: no target, 0: not met, 1: met */
    bool ok;        /* everything delivered and acknowledged */
} s_result_t;

/*  How the remote workloads' clients reach a kernel: DEALERs of their own
    in ctx, with CURVE when curve is set (the kernel's public key in
    server, the client's pair in pub and sec, Z85). The other workloads
    have none and dock through chan_client (the zsys context, plain). */
typedef struct {
    void *ctx;
    bool curve;
    char server[HAL_CURVE_Z85_LEN + 1];
    char pub[HAL_CURVE_Z85_LEN + 1];
    char sec[HAL_CURVE_Z85_LEN + 1];
} s_conn_t;

typedef struct {
    s_opts_t o;
    char exe_dir[PATH_MAX];
    char aaaxd[PATH_MAX];
    char tmp[PATH_MAX];
    char data[PATH_MAX + 16];
    char cfg[PATH_MAX + 16];
    char log[PATH_MAX + 16];
    char cmd_ep[64];
    char ipc_ep[PATH_MAX + 32];
    pid_t pid;
    bool app_cfg; /* the kernel of an app workload: s_write_app_config */
    const char *curve_mode; /* aaaxd --curve MODE, or NULL */
    const s_conn_t *conn;   /* the remote workloads: see s_conn_t */
    char apps_dir[PATH_MAX];
    void *rawctx; /* the raw sockets' own context */
    /*  Where the raw "servers" (the zmq_proxy thread, the echo thread) and
        their libzmq I/O threads run: srv_cpus when srv_pin (aaax_vs,
        bench_aaax_server_cpus), else wherever the scheduler puts them. */
    bool srv_pin;
    cpu_set_t srv_cpus;
    bool failed; /* something was lost, refused or timed out */
    s_result_t res[S_MAX_RESULTS];
    size_t nres;
} s_bench_t;

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
s_sleep_ms (int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    nanosleep (&ts, NULL);
}

static s_result_t *
s_result_add (s_bench_t *b, const char *name, const char *label)
{
    if (b->nres >= S_MAX_RESULTS)
        return NULL;
    s_result_t *r = &b->res[b->nres++];
    memset (r, 0, sizeof *r);
    snprintf (r->name, sizeof r->name, "%s", name);
    snprintf (r->label, sizeof r->label, "%s", label);
    snprintf (r->target, sizeof r->target, "-");
    r->target_met = -1;
    return r;
}

/*  One machine-readable line per workload. */
static void
s_summary (const s_bench_t *b, const s_result_t *r, const char *unit,
           uint64_t count, uint64_t lost, const char *extra)
{
    printf ("SUMMARY {\"workload\":\"%s\",\"unit\":\"%s\",\"aaax\":%.1f,"
            "\"baseline\":\"%s\",\"base\":%.1f,\"ratio\":%.4f,"
            "\"count\":%" PRIu64 ",\"size\":%u,\"lost\":%" PRIu64
            ",\"ok\":%s,\"target_met\":%s%s%s}\n",
            r->name, unit, r->aaax, r->base_note, r->base, r->ratio, count,
            b->o.size, lost, r->ok ? "true" : "false",
            r->target_met < 0 ? "null"
            : r->target_met   ? "true"
                              : "false",
            extra && *extra ? "," : "", extra ? extra : "");
    fflush (stdout);
}

/*  ---- payloads ---------------------------------------------------------- */

/*  A payload is `size` bytes whose first 8 are a sequence number (host
    order); on the aaax side it travels as a msgpack bin (the `data`). */
static void
s_payload_set (uint8_t *pay, uint64_t seq)
{
    memcpy (pay, &seq, 8);
}

static uint64_t
s_payload_seq (const void *p, size_t len)
{
    uint64_t seq = UINT64_MAX;
    if (len >= 8)
        memcpy (&seq, p, 8);
    return seq;
}

static uint8_t *
s_payload_new (uint32_t size)
{
    uint8_t *p = (uint8_t *) malloc (size);
    if (p)
        for (uint32_t i = 0; i < size; i++)
            p[i] = (uint8_t) ('a' + i % 26);
    return p;
}

/*  ---- msgpack reading (zero copy, with the project's bounded reader) ---- */

static bool
s_keyis (const chan_mpk_obj_t *k, const char *key)
{
    size_t n = strlen (key);
    return k->type == CHAN_MPK_STR && k->len == n
           && memcmp (k->ptr, key, n) == 0;
}

/*  Reads the map header at r and leaves r at the value of key. */
static bool
s_mpk_find (chan_mpk_reader_t *r, const char *key)
{
    chan_mpk_obj_t o, k;
    if (chan_mpk_next (r, &o) != 0 || o.type != CHAN_MPK_MAP)
        return false;
    for (uint32_t i = 0; i < o.v.n; i++) {
        if (chan_mpk_next (r, &k) != 0 || k.type != CHAN_MPK_STR)
            return false;
        if (s_keyis (&k, key))
            return true;
        if (chan_mpk_skip (r, AAAX_MAX_DEPTH) != 0)
            return false;
    }
    return false;
}

static bool
s_body_uint (const void *body, size_t len, const char *key, uint64_t *out)
{
    chan_mpk_reader_t r;
    chan_mpk_obj_t o;
    chan_mpk_reader_init (&r, body, len);
    if (!s_mpk_find (&r, key) || chan_mpk_next (&r, &o) != 0
        || o.type != CHAN_MPK_UINT)
        return false;
    *out = o.v.u;
    return true;
}

static bool
s_body_str (const void *body, size_t len, const char *key, const char **ptr,
            uint32_t *slen)
{
    chan_mpk_reader_t r;
    chan_mpk_obj_t o;
    chan_mpk_reader_init (&r, body, len);
    if (!s_mpk_find (&r, key) || chan_mpk_next (&r, &o) != 0
        || o.type != CHAN_MPK_STR)
        return false;
    *ptr = o.ptr;
    *slen = o.len;
    return true;
}

/*  The length of the array under key (OK {ids} of a WRITE batch). */
static bool
s_body_array_len (const void *body, size_t len, const char *key, uint32_t *n)
{
    chan_mpk_reader_t r;
    chan_mpk_obj_t o;
    chan_mpk_reader_init (&r, body, len);
    if (!s_mpk_find (&r, key) || chan_mpk_next (&r, &o) != 0
        || o.type != CHAN_MPK_ARRAY)
        return false;
    *n = o.v.n;
    return true;
}

/*  The parts of an envelope the bench looks at (borrowed from the frame). */
typedef struct {
    const char *id;
    uint32_t idlen;
    const char *from;
    uint32_t fromlen;
    const char *corr; /* NULL when nil */
    uint32_t corrlen;
    const char *data; /* bin payload; NULL when data is not a bin */
    uint32_t datalen;
    uint64_t attempt;
} s_env_t;

static int
s_env_read (chan_mpk_reader_t *r, s_env_t *e)
{
    memset (e, 0, sizeof *e);
    chan_mpk_obj_t o, k, v;
    if (chan_mpk_next (r, &o) != 0 || o.type != CHAN_MPK_MAP)
        return -1;
    for (uint32_t i = 0; i < o.v.n; i++) {
        if (chan_mpk_next (r, &k) != 0 || k.type != CHAN_MPK_STR)
            return -1;
        chan_mpk_reader_t at = *r;
        if (chan_mpk_next (r, &v) != 0)
            return -1;
        if (v.type == CHAN_MPK_ARRAY || v.type == CHAN_MPK_MAP) {
            *r = at;
            if (chan_mpk_skip (r, AAAX_MAX_DEPTH) != 0)
                return -1;
            continue;
        }
        if (s_keyis (&k, "id") && v.type == CHAN_MPK_STR) {
            e->id = v.ptr;
            e->idlen = v.len;
        } else if (s_keyis (&k, "from") && v.type == CHAN_MPK_STR) {
            e->from = v.ptr;
            e->fromlen = v.len;
        } else if (s_keyis (&k, "corr") && v.type == CHAN_MPK_STR) {
            e->corr = v.ptr;
            e->corrlen = v.len;
        } else if (s_keyis (&k, "data") && v.type == CHAN_MPK_BIN) {
            e->data = v.ptr;
            e->datalen = v.len;
        } else if (s_keyis (&k, "attempt") && v.type == CHAN_MPK_UINT)
            e->attempt = v.v.u;
    }
    return 0;
}

/*  ---- a lean protocol client -------------------------------------------
    chan_client docks (HELLO) and makes the odd synchronous call; the hot
    paths pack bodies into one reused buffer and read frames zero-copy. */

typedef enum {
    IN_OK,
    IN_ERROR,
    IN_PONG,
    IN_MSG,
    IN_MSGS,
    IN_DROPPED,
    IN_OTHER
} s_kind_t;

typedef struct {
    chan_client_t *cc;
    void *sock;        /* borrowed from cc */
    uint64_t next_req; /* ours: far above chan_client's own numbering */
    chan_buf_t buf;
    msgpack_packer pk;
    zmq_msg_t cmd, body;
    int64_t last_send_us;
    bool open;
} s_cli_t;

static void s_cli_bye_own (s_cli_t *c);

static void
s_cli_close (s_cli_t *c, bool bye)
{
    if (!c->open)
        return;
    if (bye && c->cc) {
        chan_reply_t r;
        memset (&r, 0, sizeof r);
        if (chan_client_call (c->cc, "BYE", NULL, &r) == 0)
            chan_reply_fini (&r);
    } else if (bye)
        s_cli_bye_own (c);
    zmq_msg_close (&c->cmd);
    zmq_msg_close (&c->body);
    chan_buf_fini (&c->buf);
    if (c->cc)
        chan_client_destroy (&c->cc);
    else
        zmq_close (c->sock);
    c->open = false;
}

/*  Connects to ep and docks as system (privileged when token is given).
    0, or -1 with a message on stderr. */
static int
s_cli_open (s_cli_t *c, const char *ep, const char *system, const char **chans,
            size_t nchans, const char *token)
{
    memset (c, 0, sizeof *c);
    c->cc = chan_client_new (ep, 10000);
    if (!c->cc) {
        fprintf (stderr, "bench: cannot connect to %s\n", ep);
        return -1;
    }
    c->sock = chan_client_socket (c->cc);
    c->next_req = (uint64_t) 1 << 32;
    chan_buf_init (&c->buf);
    chan_buf_packer (&c->buf, &c->pk);
    zmq_msg_init (&c->cmd);
    zmq_msg_init (&c->body);
    c->open = true;
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    int rc = chan_client_hello (c->cc, system, token, token != NULL, chans,
                                nchans, &r);
    if (rc != 0) {
        char why[256] = "";
        if (r.raw)
            chan_reply_reason (&r, why, sizeof why);
        fprintf (stderr, "bench: HELLO as %s failed: %s %s\n", system,
                 aaax_strerror (rc), why);
        chan_reply_fini (&r);
        s_cli_close (c, false);
        return -1;
    }
    chan_reply_fini (&r);
    c->last_send_us = hal_clock_mono_us ();
    return 0;
}

/*  Starts a body of npairs pairs besides req; the req is c->next_req++. */
static msgpack_packer *
s_cli_begin (s_cli_t *c, uint32_t npairs, uint64_t *req)
{
    chan_buf_reset (&c->buf);
    msgpack_pack_map (&c->pk, npairs + 1);
    chan_pack_str (&c->pk, "req", 3);
    uint64_t r = c->next_req++;
    msgpack_pack_uint64 (&c->pk, r);
    if (req)
        *req = r;
    return &c->pk;
}

static int
s_cli_send (s_cli_t *c, const char *cmd)
{
    if (c->buf.oom)
        return -1;
    if (zmq_send (c->sock, cmd, strlen (cmd), ZMQ_SNDMORE) < 0
        || zmq_send (c->sock, c->buf.data, c->buf.len, 0) < 0)
        return -1;
    c->last_send_us = hal_clock_mono_us ();
    return 0;
}

static int
s_cli_ping (s_cli_t *c)
{
    s_cli_begin (c, 0, NULL);
    return s_cli_send (c, "PING");
}

/*  Sends PING when nothing was sent for S_PING_US (receivers stay docked). */
static int
s_cli_keepalive (s_cli_t *c, int64_t now_us)
{
    return now_us - c->last_send_us > S_PING_US ? s_cli_ping (c) : 0;
}

static void
s_cli_write (s_cli_t *c, const char *chan, const uint8_t *pay, uint32_t size,
             uint64_t *req)
{
    msgpack_packer *pk = s_cli_begin (c, 2, req);
    chan_pack_cstr (pk, "chan");
    chan_pack_cstr (pk, chan);
    chan_pack_cstr (pk, "data");
    msgpack_pack_bin (pk, size);
    msgpack_pack_bin_body (pk, pay, size);
}

/*  Reads the next message, waiting up to timeout_ms (0: not at all).
    1 with *kind set (the body in c->body until the next call), 0 when
    nothing came, -1 when the socket failed. */
static int
s_cli_recv (s_cli_t *c, int timeout_ms, s_kind_t *kind)
{
    if (zmq_msg_recv (&c->cmd, c->sock, ZMQ_DONTWAIT) < 0) {
        if (errno != EAGAIN)
            return errno == EINTR ? 0 : -1;
        if (timeout_ms <= 0)
            return 0;
        zmq_pollitem_t it = { c->sock, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll (&it, 1, timeout_ms);
        if (rc <= 0)
            return rc < 0 && errno != EINTR ? -1 : 0;
        if (zmq_msg_recv (&c->cmd, c->sock, ZMQ_DONTWAIT) < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
    }
    if (zmq_msg_more (&c->cmd)) {
        if (zmq_msg_recv (&c->body, c->sock, 0) < 0)
            return -1;
        while (zmq_msg_more (&c->body)) { /* not the protocol: drop extra */
            zmq_msg_t extra;
            zmq_msg_init (&extra);
            int rc = zmq_msg_recv (&extra, c->sock, 0);
            bool more = rc >= 0 && zmq_msg_more (&extra);
            zmq_msg_close (&extra);
            if (!more)
                break;
        }
    } else {
        zmq_msg_close (&c->body);
        zmq_msg_init (&c->body);
    }
    const char *w = (const char *) zmq_msg_data (&c->cmd);
    size_t n = zmq_msg_size (&c->cmd);
    if (n == 3 && memcmp (w, "MSG", 3) == 0)
        *kind = IN_MSG;
    else if (n == 2 && memcmp (w, "OK", 2) == 0)
        *kind = IN_OK;
    else if (n == 5 && memcmp (w, "ERROR", 5) == 0)
        *kind = IN_ERROR;
    else if (n == 4 && memcmp (w, "PONG", 4) == 0)
        *kind = IN_PONG;
    else if (n == 4 && memcmp (w, "MSGS", 4) == 0)
        *kind = IN_MSGS;
    else if (n == 7 && memcmp (w, "DROPPED", 7) == 0)
        *kind = IN_DROPPED;
    else
        *kind = IN_OTHER;
    return 1;
}

static const void *
s_cli_body (s_cli_t *c, size_t *len)
{
    *len = zmq_msg_size (&c->body);
    return zmq_msg_data (&c->body);
}

/*  Describes the ERROR just received (code and reason) into buf. */
static const char *
s_cli_error (s_cli_t *c, char *buf, size_t size)
{
    size_t len;
    const void *body = s_cli_body (c, &len);
    uint64_t code = 0;
    const char *reason = "";
    uint32_t rlen = 0;
    s_body_uint (body, len, "code", &code);
    s_body_str (body, len, "reason", &reason, &rlen);
    snprintf (buf, size, "ERROR %" PRIu64 " %.*s", code, (int) rlen, reason);
    return buf;
}

/*  Envelope of a MSG push ({sub, msg}). */
static int
s_cli_msg_env (s_cli_t *c, s_env_t *e)
{
    size_t len;
    const void *body = s_cli_body (c, &len);
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, body, len);
    if (!s_mpk_find (&r, "msg"))
        return -1;
    return s_env_read (&r, e);
}

/*  ---- clients on sockets of their own (the remote workloads) ----
    A DEALER made here rather than by chan_client, so that CURVE can be
    set on it before it connects; the protocol is spoken with the lean
    client's calls above. */

/*  A DEALER in ctx with the client's settings (LINGER 200, HWMs as the
    kernel's sndhwm), CURVE when server is not NULL. NULL on failure. */
static void *
s_dealer_new (void *ctx, const char *server, const char *pub, const char *sec)
{
    void *s = zmq_socket (ctx, ZMQ_DEALER);
    if (!s)
        return NULL;
    int linger = 200, hwm = S_RAW_HWM;
    zmq_setsockopt (s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (server
        && (zmq_setsockopt (s, ZMQ_CURVE_SERVERKEY, server, strlen (server) + 1)
                != 0
            || zmq_setsockopt (s, ZMQ_CURVE_PUBLICKEY, pub, strlen (pub) + 1)
                   != 0
            || zmq_setsockopt (s, ZMQ_CURVE_SECRETKEY, sec, strlen (sec) + 1)
                   != 0)) {
        zmq_close (s);
        return NULL;
    }
    return s;
}

/*  Waits up to timeout_ms for the reply (OK, ERROR or PONG) to req;
    anything else that arrives meanwhile is skipped. 1 with *kind set,
    0 on timeout, -1 when the socket failed. */
static int
s_cli_wait (s_cli_t *c, uint64_t req, int timeout_ms, s_kind_t *kind)
{
    int64_t until = hal_clock_mono_ms () + timeout_ms;
    while (!s_interrupted) {
        int64_t left = until - hal_clock_mono_ms ();
        if (left < 0)
            return 0;
        int got = s_cli_recv (c, left > 100 ? 100 : (int) left + 1, kind);
        if (got < 0)
            return -1;
        if (got == 0
            || (*kind != IN_OK && *kind != IN_ERROR && *kind != IN_PONG))
            continue;
        size_t len;
        const void *body = s_cli_body (c, &len);
        uint64_t r = 0;
        if (s_body_uint (body, len, "req", &r) && r == req)
            return 1;
    }
    return 0;
}

/*  Connects a DEALER of its own (CURVE when conn->curve) to ep and docks
    as system. 0, or -1 with a message on stderr. */
static int
s_cli_open_own (s_cli_t *c, const s_conn_t *conn, const char *ep,
                const char *system, const char **chans, size_t nchans)
{
    memset (c, 0, sizeof *c);
    c->sock = s_dealer_new (conn->ctx, conn->curve ? conn->server : NULL,
                            conn->pub, conn->sec);
    if (!c->sock || zmq_connect (c->sock, ep) != 0) {
        fprintf (stderr, "bench: cannot connect to %s%s: %s\n", ep,
                 conn->curve ? " (CURVE)" : "", zmq_strerror (errno));
        if (c->sock)
            zmq_close (c->sock);
        return -1;
    }
    c->next_req = (uint64_t) 1 << 32;
    chan_buf_init (&c->buf);
    chan_buf_packer (&c->buf, &c->pk);
    zmq_msg_init (&c->cmd);
    zmq_msg_init (&c->body);
    c->open = true;
    uint64_t req;
    msgpack_packer *pk = s_cli_begin (c, chans ? 3 : 2, &req);
    chan_pack_cstr (pk, "system");
    chan_pack_cstr (pk, system);
    chan_pack_cstr (pk, "version");
    msgpack_pack_uint32 (pk, AAAX_PROTOCOL_VERSION);
    if (chans) {
        chan_pack_cstr (pk, "channels");
        msgpack_pack_array (pk, (uint32_t) nchans);
        for (size_t i = 0; i < nchans; i++)
            chan_pack_cstr (pk, chans[i]);
    }
    s_kind_t kind;
    int got =
        s_cli_send (c, "HELLO") == 0 ? s_cli_wait (c, req, 10000, &kind) : -1;
    if (got != 1 || kind != IN_OK) {
        char why[300] = "no answer within 10 s";
        if (got == 1)
            s_cli_error (c, why, sizeof why);
        else if (got < 0)
            snprintf (why, sizeof why, "%s", zmq_strerror (errno));
        fprintf (stderr, "bench: HELLO as %s over %s%s failed: %s\n", system,
                 ep, conn->curve ? " (CURVE)" : "", why);
        s_cli_close (c, false);
        return -1;
    }
    c->last_send_us = hal_clock_mono_us ();
    return 0;
}

static void
s_cli_bye_own (s_cli_t *c)
{
    uint64_t req;
    s_kind_t kind;
    s_cli_begin (c, 0, &req);
    if (s_cli_send (c, "BYE") == 0)
        s_cli_wait (c, req, 2000, &kind);
}

/*  Docks as the workloads do: through chan_client, or on a socket of its
    own when the bench has a s_conn_t (the remote workloads). */
static int
s_cli_dock (const s_bench_t *b, s_cli_t *c, const char *system,
            const char **chans, size_t nchans)
{
    if (b->conn)
        return s_cli_open_own (c, b->conn, b->cmd_ep, system, chans, nchans);
    return s_cli_open (c, b->cmd_ep, system, chans, nchans, NULL);
}

/*  SUB chan and its OK. 0, or -1 with a message on stderr. */
static int
s_cli_sub (s_cli_t *c, const char *system, const char *chan, bool batch)
{
    char why[300] = "";
    bool ok;
    if (c->cc) {
        chan_body_t body;
        chan_body_init (&body);
        chan_body_str (&body, "chan", chan);
        if (batch)
            chan_body_bool (&body, "batch", true);
        chan_reply_t r;
        memset (&r, 0, sizeof r);
        int rc = chan_client_call (c->cc, "SUB", &body, &r);
        chan_body_fini (&body);
        ok = rc == 0 && strcmp (r.cmd, "OK") == 0;
        char reason[200] = "";
        if (!ok)
            snprintf (why, sizeof why, "%s %s", rc ? aaax_strerror (rc) : r.cmd,
                      r.raw ? chan_reply_reason (&r, reason, sizeof reason)
                            : "");
        chan_reply_fini (&r);
    } else {
        uint64_t req;
        s_kind_t kind;
        msgpack_packer *pk = s_cli_begin (c, batch ? 2 : 1, &req);
        chan_pack_cstr (pk, "chan");
        chan_pack_cstr (pk, chan);
        if (batch) {
            chan_pack_cstr (pk, "batch");
            msgpack_pack_true (pk);
        }
        int got =
            s_cli_send (c, "SUB") == 0 ? s_cli_wait (c, req, 10000, &kind) : -1;
        ok = got == 1 && kind == IN_OK;
        if (!ok && got == 1)
            s_cli_error (c, why, sizeof why);
        else if (!ok)
            snprintf (why, sizeof why, "no answer");
    }
    if (!ok)
        fprintf (stderr, "bench: %s: SUB %s failed: %s\n", system, chan, why);
    return ok ? 0 : -1;
}

/*  Shared state of one measured run: the threads' rendezvous and limits. */
typedef struct {
    s_bench_t *b;
    uint64_t n;
    atomic_int ready; /* threads docked (or failed) */
    atomic_int go;    /* 1: start; -1: give up */
    _Atomic int64_t deadline_us;
} s_shared_t;

static void
s_shared_init (s_shared_t *sh, s_bench_t *b, uint64_t n)
{
    sh->b = b;
    sh->n = n;
    atomic_init (&sh->ready, 0);
    atomic_init (&sh->go, 0);
    atomic_init (&sh->deadline_us, hal_clock_mono_us ()
                                       + (int64_t) S_SETUP_MS * 1000
                                       + (int64_t) b->o.limit_s * 1000000);
}

static bool
s_shared_over (s_shared_t *sh, int64_t now_us)
{
    return s_interrupted || atomic_load (&sh->go) < 0
           || now_us > atomic_load (&sh->deadline_us);
}

/*  Waits until want threads are ready; false after S_SETUP_MS. */
static bool
s_shared_wait_ready (s_shared_t *sh, int want)
{
    int64_t until = hal_clock_mono_ms () + S_SETUP_MS;
    while (atomic_load (&sh->ready) < want) {
        if (hal_clock_mono_ms () > until || s_interrupted)
            return false;
        s_sleep_ms (1);
    }
    return true;
}

/*  Waits for the go signal; false when told to give up. */
static bool
s_shared_wait_go (s_shared_t *sh)
{
    while (atomic_load (&sh->go) == 0) {
        if (s_interrupted)
            return false;
        usleep (50);
    }
    return atomic_load (&sh->go) > 0;
}

/*  ---- workload 1: broadcast -------------------------------------------- */

typedef struct {
    s_shared_t *sh;
    int idx;
    int run;        /* 1->run subscribers: names differ per run */
    const char *ep; /* raw: the XPUB endpoint */
    bool fail;
    bool dropped;
    uint64_t got, gaps, disorder;
    int64_t t_last_us;             /* when the last message arrived */
    atomic_uint_fast64_t progress; /* next sequence number expected */
} s_bsub_t;

/*  True when the publisher may send message seq: it is less than
    S_BCAST_LEAD ahead of every subscriber that is still receiving. */
static bool
s_bsub_credit (s_bsub_t *subs, int nsubs, uint64_t seq)
{
    for (int i = 0; i < nsubs; i++) {
        if (subs[i].fail || subs[i].dropped)
            continue;
        if (seq
            >= atomic_load_explicit (&subs[i].progress, memory_order_relaxed)
                   + S_BCAST_LEAD)
            return false;
    }
    return true;
}

static void
s_bsub_count (s_bsub_t *s, uint64_t seq, uint64_t *expect)
{
    if (seq == UINT64_MAX) {
        s->disorder++;
        return;
    }
    if (seq > *expect)
        s->gaps += seq - *expect;
    else if (seq < *expect)
        s->disorder++;
    if (seq >= *expect)
        *expect = seq + 1;
    s->got++;
}

static void *
s_bsub_aaax (void *arg)
{
    s_bsub_t *s = (s_bsub_t *) arg;
    s_shared_t *sh = s->sh;
    char system[48];
    snprintf (system, sizeof system, "bench.sub%d.%d", s->run, s->idx);
    const char *chans[] = { S_CHAN_B };
    s_cli_t c;
    if (s_cli_dock (sh->b, &c, system, chans, 1) != 0) {
        s->fail = true;
        atomic_fetch_add (&sh->ready, 1);
        return NULL;
    }
    if (s_cli_sub (&c, system, S_CHAN_B, sh->b->o.wbatch > 1) != 0)
        s->fail = true;
    atomic_fetch_add (&sh->ready, 1);

    uint64_t expect = 0;
    while (!s->fail && !s->dropped && expect < sh->n) {
        int64_t now = hal_clock_mono_us ();
        if (s_shared_over (sh, now))
            break;
        if (s_cli_keepalive (&c, now) != 0) {
            s->fail = true;
            break;
        }
        s_kind_t kind;
        int got = s_cli_recv (&c, 100, &kind);
        if (got < 0) {
            s->fail = true;
            break;
        }
        if (got == 0)
            continue;
        if (kind == IN_MSG) {
            s_env_t e;
            uint64_t seq = UINT64_MAX;
            if (s_cli_msg_env (&c, &e) == 0 && e.data)
                seq = s_payload_seq (e.data, e.datalen);
            s_bsub_count (s, seq, &expect);
            atomic_store_explicit (&s->progress, expect, memory_order_relaxed);
            if (expect >= sh->n)
                s->t_last_us = hal_clock_mono_us ();
        } else if (kind == IN_MSGS) {
            /*  A WRITE batch: every envelope checked as a MSG's would be. */
            size_t len;
            const void *body = s_cli_body (&c, &len);
            chan_mpk_reader_t r;
            chan_mpk_obj_t arr;
            chan_mpk_reader_init (&r, body, len);
            if (!s_mpk_find (&r, "msgs") || chan_mpk_next (&r, &arr) != 0
                || arr.type != CHAN_MPK_ARRAY) {
                s->disorder++;
                continue;
            }
            for (uint32_t k = 0; k < arr.v.n; k++) {
                s_env_t e;
                uint64_t seq = UINT64_MAX;
                if (s_env_read (&r, &e) != 0) {
                    s->disorder++;
                    break;
                }
                if (e.data)
                    seq = s_payload_seq (e.data, e.datalen);
                s_bsub_count (s, seq, &expect);
            }
            atomic_store_explicit (&s->progress, expect, memory_order_relaxed);
            if (expect >= sh->n)
                s->t_last_us = hal_clock_mono_us ();
        } else if (kind == IN_DROPPED) {
            fprintf (stderr,
                     "bench: %s was DROPPED by the kernel after %" PRIu64
                     " messages\n",
                     system, s->got);
            s->dropped = true;
        } else if (kind == IN_ERROR) {
            char why[300];
            fprintf (stderr, "bench: %s: %s\n", system,
                     s_cli_error (&c, why, sizeof why));
        }
    }
    s_cli_close (&c, true);
    return NULL;
}

static void *
s_bsub_raw (void *arg)
{
    s_bsub_t *s = (s_bsub_t *) arg;
    s_shared_t *sh = s->sh;
    void *sub = zmq_socket (sh->b->rawctx, ZMQ_SUB);
    int zero = 0, tmo = 100, hwm = S_RAW_HWM;
    bool synced = false;
    if (!sub) {
        s->fail = true;
        atomic_fetch_add (&sh->ready, 1);
        return NULL;
    }
    zmq_setsockopt (sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (sub, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect (sub, s->ep) != 0) {
        s->fail = true;
        atomic_fetch_add (&sh->ready, 1);
        zmq_close (sub);
        return NULL;
    }
    zmq_msg_t topic, pay;
    zmq_msg_init (&topic);
    zmq_msg_init (&pay);
    uint64_t expect = 0;
    while (expect < sh->n) {
        if (s_shared_over (sh, hal_clock_mono_us ()))
            break;
        if (zmq_msg_recv (&topic, sub, 0) < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            s->fail = true;
            break;
        }
        if (!zmq_msg_more (&topic) || zmq_msg_recv (&pay, sub, 0) < 0) {
            s->disorder++;
            continue;
        }
        if (zmq_msg_size (&topic) == 4
            && memcmp (zmq_msg_data (&topic), "sync", 4) == 0) {
            if (!synced) {
                synced = true;
                atomic_fetch_add (&sh->ready, 1);
            }
            continue;
        }
        s_bsub_count (s,
                      s_payload_seq (zmq_msg_data (&pay), zmq_msg_size (&pay)),
                      &expect);
        atomic_store_explicit (&s->progress, expect, memory_order_relaxed);
        if (expect >= sh->n)
            s->t_last_us = hal_clock_mono_us ();
    }
    if (!synced)
        atomic_fetch_add (&sh->ready, 1);
    zmq_msg_close (&topic);
    zmq_msg_close (&pay);
    zmq_close (sub);
    return NULL;
}

/*  Collects the subscribers' figures: the rate from t0 to the last
    delivery, and what was lost. */
static double
s_bsub_collect (s_bsub_t *subs, int nsubs, uint64_t n, int64_t t0_us,
                uint64_t *lost, bool *fail)
{
    int64_t t_end = 0;
    for (int i = 0; i < nsubs; i++) {
        s_bsub_t *s = &subs[i];
        *lost += s->got < n ? n - s->got : 0;
        *lost += s->gaps;
        if (s->fail || s->dropped || s->disorder || s->got != n
            || !s->t_last_us)
            *fail = true;
        if (s->t_last_us > t_end)
            t_end = s->t_last_us;
    }
    if (*fail || t_end <= t0_us)
        return 0;
    return (double) n * 1e6 / (double) (t_end - t0_us);
}

static double
s_bcast_aaax (s_bench_t *b, int nsubs, uint64_t *lost, bool *fail)
{
    /*  subs[] holds S_MAX_SUBS. Checked here, where GCC sees it: without
        it, s_bsub_credit's loop inlined below looks unbounded to
        -Wstringop-overflow. */
    if (nsubs < 1 || nsubs > S_MAX_SUBS) {
        *lost = 0;
        *fail = true;
        return 0;
    }
    uint64_t n = b->o.count;
    s_shared_t sh;
    s_shared_init (&sh, b, n);
    s_bsub_t subs[S_MAX_SUBS];
    pthread_t th[S_MAX_SUBS];
    int started = 0;
    double rate = 0;
    uint8_t *pay = s_payload_new (b->o.size);
    s_cli_t pub;
    memset (&pub, 0, sizeof pub);
    *lost = 0;
    *fail = false;

    for (int i = 0; i < nsubs; i++) {
        memset (&subs[i], 0, sizeof subs[i]);
        subs[i].sh = &sh;
        subs[i].idx = i;
        subs[i].run = nsubs;
        atomic_init (&subs[i].progress, 0);
        if (pthread_create (&th[i], NULL, s_bsub_aaax, &subs[i]) != 0)
            break;
        started++;
    }
    char system[32];
    snprintf (system, sizeof system, "bench.pub%d", nsubs);
    const char *chans[] = { S_CHAN_B };
    if (!pay || started < nsubs || s_cli_dock (b, &pub, system, chans, 1) != 0
        || !s_shared_wait_ready (&sh, nsubs)) {
        fprintf (stderr, "bench: broadcast 1->%d: setup failed\n", nsubs);
        *fail = true;
        goto done;
    }
    for (int i = 0; i < nsubs; i++)
        if (subs[i].fail)
            *fail = true;
    if (*fail)
        goto done;

    int64_t t0 = hal_clock_mono_us ();
    atomic_store (&sh.deadline_us, t0 + (int64_t) b->o.limit_s * 1000000);
    atomic_store (&sh.go, 1);
    uint64_t sent = 0, oks = 0, errs = 0;
    uint32_t wbatch = b->o.wbatch > 1 ? b->o.wbatch : 1;
    while (oks + errs < n) {
        bool credit = true;
        while (wbatch == 1 && sent < n && sent - oks - errs < b->o.bwindow
               && (credit = s_bsub_credit (subs, nsubs, sent))) {
            s_payload_set (pay, sent);
            msgpack_packer *pk = s_cli_begin (&pub, b->o.noreply ? 3 : 2, NULL);
            chan_pack_cstr (pk, "chan");
            chan_pack_cstr (pk, S_CHAN_B);
            chan_pack_cstr (pk, "data");
            msgpack_pack_bin (pk, b->o.size);
            msgpack_pack_bin_body (pk, pay, b->o.size);
            if (b->o.noreply) {
                chan_pack_cstr (pk, "noreply");
                msgpack_pack_true (pk);
            }
            if (s_cli_send (&pub, "WRITE") != 0)
                break;
            sent++;
            if (b->o.noreply)
                oks++; /* no OK comes; a refusal would (ERROR) */
        }
        /*  Batches: as many messages as the window and the credit allow,
            up to wbatch, in one WRITE {chan, batch: [...]}. */
        while (wbatch > 1 && sent < n && sent - oks - errs < b->o.bwindow) {
            uint32_t k = 0;
            while (k < wbatch && sent + k < n
                   && sent + k - oks - errs < b->o.bwindow
                   && (credit = s_bsub_credit (subs, nsubs, sent + k)))
                k++;
            if (!k)
                break;
            msgpack_packer *pk = s_cli_begin (&pub, b->o.noreply ? 3 : 2, NULL);
            if (b->o.noreply) {
                chan_pack_cstr (pk, "noreply");
                msgpack_pack_true (pk);
            }
            chan_pack_cstr (pk, "chan");
            chan_pack_cstr (pk, S_CHAN_B);
            chan_pack_cstr (pk, "batch");
            msgpack_pack_array (pk, k);
            for (uint32_t j = 0; j < k; j++) {
                s_payload_set (pay, sent + j);
                msgpack_pack_bin (pk, b->o.size);
                msgpack_pack_bin_body (pk, pay, b->o.size);
            }
            if (s_cli_send (&pub, "WRITE") != 0)
                break;
            sent += k;
            if (b->o.noreply)
                oks += k;
            if (!credit)
                break;
        }
        if (s_shared_over (&sh, hal_clock_mono_us ()))
            break;
        s_kind_t kind;
        int got = s_cli_recv (&pub, credit ? 100 : 1, &kind);
        if (got < 0)
            break;
        if (got == 0)
            continue;
        if (kind == IN_OK) {
            size_t blen;
            const void *body = s_cli_body (&pub, &blen);
            uint32_t nids;
            oks += wbatch > 1 && s_body_array_len (body, blen, "ids", &nids)
                       ? nids
                       : 1;
        } else if (kind == IN_ERROR) {
            char why[300];
            if (errs++ < 5)
                fprintf (stderr, "bench: WRITE %s: %s\n", S_CHAN_B,
                         s_cli_error (&pub, why, sizeof why));
        }
    }
    if (oks != n || errs) {
        fprintf (stderr,
                 "bench: broadcast 1->%d: %" PRIu64 " of %" PRIu64
                 " WRITEs acknowledged (%" PRIu64 " errors)\n",
                 nsubs, oks, n, errs);
        *fail = true;
        atomic_store (&sh.go, -1);
    }
    for (int i = 0; i < started; i++)
        pthread_join (th[i], NULL);
    started = 0;
    rate = s_bsub_collect (subs, nsubs, n, t0, lost, fail);

done:
    if (*fail)
        atomic_store (&sh.go, -1);
    for (int i = 0; i < started; i++)
        pthread_join (th[i], NULL);
    s_cli_close (&pub, true);
    free (pay);
    return *fail ? 0 : rate;
}

/*  The raw "server" side: the zmq_proxy thread of the broadcast, the echo
    thread of the round trip. Unpinned (aaax_bench), it shares the raw
    context with the clients. Pinned (b->srv_pin), it gets a context of its
    own whose libzmq threads (I/O, reaper) run on b->srv_cpus, so that the
    clients' sockets, in b->rawctx, keep their own I/O thread where the
    clients are. NULL on failure; s_srvctx_end when done. */
static void *
s_srvctx_new (s_bench_t *b)
{
    if (!b->srv_pin)
        return b->rawctx;
    void *ctx = zmq_ctx_new ();
    if (!ctx)
        return NULL;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET (cpu, &b->srv_cpus)
            && zmq_ctx_set (ctx, ZMQ_THREAD_AFFINITY_CPU_ADD, cpu) != 0) {
            zmq_ctx_term (ctx);
            return NULL;
        }
    return ctx;
}

/*  After the server thread has been joined and every socket in ctx closed. */
static void
s_srvctx_end (s_bench_t *b, void *ctx)
{
    if (ctx && ctx != b->rawctx)
        zmq_ctx_term (ctx);
}

/*  The server thread's first step: onto the server CPUs (cpus NULL: left
    alone), before its first socket, so that the libzmq threads of its
    context, started by that socket, inherit the mask too. */
static void
s_srv_pin_self (const cpu_set_t *cpus)
{
    if (cpus)
        pthread_setaffinity_np (pthread_self (), sizeof *cpus, cpus);
}

typedef struct {
    void *ctx;             /* s_srvctx_new */
    const cpu_set_t *cpus; /* the thread's CPUs, or NULL */
    char front[128];       /* XSUB: publishers connect here */
    char back[128];        /* XPUB: subscribers connect here */
    sem_t ready;
    int rc;
} s_proxy_t;

static void *
s_proxy_thread (void *arg)
{
    s_proxy_t *p = (s_proxy_t *) arg;
    pthread_setname_np (pthread_self (), "raw-proxy");
    s_srv_pin_self (p->cpus);
    void *xsub = zmq_socket (p->ctx, ZMQ_XSUB);
    void *xpub = zmq_socket (p->ctx, ZMQ_XPUB);
    void *ctl = zmq_socket (p->ctx, ZMQ_PAIR);
    int zero = 0, one = 1, hwm = S_RAW_HWM;
    size_t len;
    p->rc = -1;
    if (!xsub || !xpub || !ctl)
        goto done;
    zmq_setsockopt (xsub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (xsub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (xpub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (xpub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    /*  Block rather than drop at the HWM: the raw path is flow-controlled
        end to end, as the aaax publisher is by its window. */
    zmq_setsockopt (xpub, ZMQ_XPUB_NODROP, &one, sizeof one);
    zmq_setsockopt (xsub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (xpub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (ctl, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind (xsub, "tcp://127.0.0.1:*") != 0
        || zmq_bind (xpub, "tcp://127.0.0.1:*") != 0
        || zmq_bind (ctl, "inproc://bench-proxy") != 0)
        goto done;
    len = sizeof p->front;
    zmq_getsockopt (xsub, ZMQ_LAST_ENDPOINT, p->front, &len);
    len = sizeof p->back;
    zmq_getsockopt (xpub, ZMQ_LAST_ENDPOINT, p->back, &len);
    p->rc = 0;
    sem_post (&p->ready);
    zmq_proxy_steerable (xsub, xpub, NULL, ctl);
done:
    if (p->rc != 0)
        sem_post (&p->ready);
    if (xsub)
        zmq_close (xsub);
    if (xpub)
        zmq_close (xpub);
    if (ctl)
        zmq_close (ctl);
    return NULL;
}

static double
s_bcast_raw (s_bench_t *b, int nsubs, uint64_t *lost, bool *fail)
{
    /*  subs[] holds S_MAX_SUBS. Checked here, where GCC sees it: without
        it, s_bsub_credit's loop inlined below looks unbounded to
        -Wstringop-overflow. */
    if (nsubs < 1 || nsubs > S_MAX_SUBS) {
        *lost = 0;
        *fail = true;
        return 0;
    }
    uint64_t n = b->o.count;
    s_shared_t sh;
    s_shared_init (&sh, b, n);
    s_proxy_t proxy;
    memset (&proxy, 0, sizeof proxy);
    proxy.ctx = s_srvctx_new (b);
    proxy.cpus = b->srv_pin ? &b->srv_cpus : NULL;
    sem_init (&proxy.ready, 0, 0);
    pthread_t pth, th[S_MAX_SUBS];
    s_bsub_t subs[S_MAX_SUBS];
    int started = 0;
    double rate = 0;
    void *pub = NULL;
    uint8_t *pay = s_payload_new (b->o.size);
    int zero = 0, one = 1, hwm = S_RAW_HWM;
    *lost = 0;
    *fail = false;
    if (!pay || !proxy.ctx
        || pthread_create (&pth, NULL, s_proxy_thread, &proxy) != 0) {
        free (pay);
        sem_destroy (&proxy.ready);
        s_srvctx_end (b, proxy.ctx);
        *fail = true;
        return 0;
    }
    sem_wait (&proxy.ready);
    if (proxy.rc != 0) {
        *fail = true;
        goto done;
    }
    pub = zmq_socket (b->rawctx, ZMQ_PUB);
    if (!pub) {
        *fail = true;
        goto done;
    }
    zmq_setsockopt (pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (pub, ZMQ_XPUB_NODROP, &one, sizeof one);
    zmq_setsockopt (pub, ZMQ_LINGER, &zero, sizeof zero);
    /*  NODROP blocks at the HWM: never forever (subscribers may give up). */
    int sndtmo = 1000;
    zmq_setsockopt (pub, ZMQ_SNDTIMEO, &sndtmo, sizeof sndtmo);
    if (zmq_connect (pub, proxy.front) != 0) {
        *fail = true;
        goto done;
    }
    for (int i = 0; i < nsubs; i++) {
        memset (&subs[i], 0, sizeof subs[i]);
        subs[i].sh = &sh;
        subs[i].idx = i;
        subs[i].ep = proxy.back;
        atomic_init (&subs[i].progress, 0);
        if (pthread_create (&th[i], NULL, s_bsub_raw, &subs[i]) != 0)
            break;
        started++;
    }
    /*  Subscriptions travel up to the PUB asynchronously: send "sync" until
        every subscriber has seen one (the slow-joiner dance). */
    int64_t until = hal_clock_mono_ms () + S_SETUP_MS;
    while (started == nsubs && atomic_load (&sh.ready) < nsubs
           && hal_clock_mono_ms () < until && !s_interrupted) {
        zmq_send (pub, "sync", 4, ZMQ_SNDMORE);
        zmq_send (pub, "", 0, 0);
        s_sleep_ms (2);
    }
    for (int i = 0; i < started; i++)
        if (subs[i].fail)
            *fail = true;
    if (started < nsubs || atomic_load (&sh.ready) < nsubs || *fail) {
        fprintf (stderr, "bench: raw broadcast 1->%d: setup failed\n", nsubs);
        *fail = true;
        goto done;
    }
    int64_t t0 = hal_clock_mono_us ();
    atomic_store (&sh.deadline_us, t0 + (int64_t) b->o.limit_s * 1000000);
    atomic_store (&sh.go, 1);
    for (uint64_t i = 0; i < n && !*fail; i++) {
        while (!s_bsub_credit (subs, nsubs, i) && !*fail) {
            if (s_shared_over (&sh, hal_clock_mono_us ()))
                *fail = true;
            usleep (100);
        }
        s_payload_set (pay, i);
        /*  Only a message's first frame waits at the HWM: a timeout there
            means the subscribers are behind, and nothing was sent yet. */
        while (!*fail
               && zmq_send (pub, S_CHAN_B, strlen (S_CHAN_B), ZMQ_SNDMORE) < 0)
            if (errno != EAGAIN || s_shared_over (&sh, hal_clock_mono_us ()))
                *fail = true;
        if (!*fail && zmq_send (pub, pay, b->o.size, 0) < 0)
            *fail = true;
    }
    if (*fail)
        atomic_store (&sh.go, -1);
    for (int i = 0; i < started; i++)
        pthread_join (th[i], NULL);
    started = 0;
    rate = s_bsub_collect (subs, nsubs, n, t0, lost, fail);

done:
    if (*fail)
        atomic_store (&sh.go, -1);
    for (int i = 0; i < started; i++)
        pthread_join (th[i], NULL);
    if (pub)
        zmq_close (pub);
    /*  inproc: in the proxy's context. */
    void *ctl = zmq_socket (proxy.ctx, ZMQ_PAIR);
    if (ctl) {
        int linger = 1000;
        zmq_setsockopt (ctl, ZMQ_LINGER, &linger, sizeof linger);
        if (proxy.rc == 0 && zmq_connect (ctl, "inproc://bench-proxy") == 0)
            zmq_send (ctl, "TERMINATE", 9, 0);
        zmq_close (ctl);
    }
    pthread_join (pth, NULL);
    sem_destroy (&proxy.ready);
    s_srvctx_end (b, proxy.ctx);
    free (pay);
    return *fail ? 0 : rate;
}

static void
s_workload_bcast (s_bench_t *b, int nsubs)
{
    uint64_t lost_a = 0, lost_r = 0;
    bool fail_a = false, fail_r = false;
    printf ("\n== broadcast 1->%d: %" PRIu64 " messages of %u B, window %u "
            "WRITEs, lead <= %d over the slowest subscriber ==\n",
            nsubs, b->o.count, b->o.size, b->o.bwindow, S_BCAST_LEAD);
    fflush (stdout);
    double ra = s_bcast_aaax (b, nsubs, &lost_a, &fail_a);
    printf ("  aaax: %s%12.0f msgs/s (%.0f deliveries/s)%s\n",
            fail_a ? "FAILED " : "", ra, ra * nsubs,
            lost_a ? "  MISSING MESSAGES" : "");
    if (lost_a)
        printf ("  aaax: %" PRIu64 " deliveries missing (lost, or not "
                "within the time limit)\n",
                lost_a);
    fflush (stdout);
    double rr = s_bcast_raw (b, nsubs, &lost_r, &fail_r);
    printf ("  raw:  %s%12.0f msgs/s (%.0f deliveries/s)  PUB -> zmq_proxy "
            "(XSUB/XPUB) -> %d SUB%s\n",
            fail_r ? "FAILED " : "", rr, rr * nsubs, nsubs,
            lost_r ? "  MISSING MESSAGES" : "");
    double ratio = rr > 0 ? ra / rr : 0;
    printf ("  ratio aaax/raw: %.3f\n", ratio);

    char name[32], label[40];
    snprintf (name, sizeof name, "broadcast_1x%d", nsubs);
    snprintf (label, sizeof label, "broadcast 1->%d (msgs/s)", nsubs);
    s_result_t *r = s_result_add (b, name, label);
    if (r) {
        r->aaax = ra;
        r->base = rr;
        snprintf (r->base_note, sizeof r->base_note, "raw zmq");
        r->ratio = ratio;
        r->ok = !fail_a && !fail_r;
        char extra[96];
        snprintf (extra, sizeof extra,
                  "\"subscribers\":%d,\"raw_lost\":%" PRIu64, nsubs, lost_r);
        s_summary (b, r, "msgs/s", b->o.count, lost_a, extra);
    }
    if (fail_a || fail_r)
        b->failed = true;
}

/*  ---- STAT --------------------------------------------------------------- */

typedef struct {
    uint64_t ops, commits, max_batch, commit_us;
    uint64_t q_depth;
    bool have_depth;
} s_stat_t;

static uint64_t
s_obj_uint (const msgpack_object *map, const char *key)
{
    uint64_t v = 0;
    chan_obj_get_uint (map, key, &v);
    return v;
}

/*  A privileged STAT over the ipc endpoint. 0 or -1. */
static int
s_stat (s_bench_t *b, s_stat_t *st)
{
    char token[65];
    memset (st, 0, sizeof *st);
    if (chan_client_read_token (b->data, token) != 0) {
        fprintf (stderr, "bench: cannot read %s/session.token\n", b->data);
        return -1;
    }
    s_cli_t c;
    if (s_cli_open (&c, b->ipc_ep, "bench.admin", NULL, 0, token) != 0)
        return -1;
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    int rc = chan_client_call (c.cc, "STAT", NULL, &r);
    if (rc != 0 || strcmp (r.cmd, "OK") != 0) {
        fprintf (stderr, "bench: STAT failed: %s\n",
                 rc ? aaax_strerror (rc) : r.cmd);
        chan_reply_fini (&r);
        s_cli_close (&c, true);
        return -1;
    }
    const msgpack_object *store = chan_obj_get (&r.body, "store");
    st->ops = s_obj_uint (store, "ops");
    st->commits = s_obj_uint (store, "commits");
    st->max_batch = s_obj_uint (store, "max_batch");
    st->commit_us = s_obj_uint (store, "commit_us");
    const msgpack_object *chans = chan_obj_get (&r.body, "channels");
    const msgpack_object *q = chan_obj_get (chans, S_CHAN_Q);
    st->have_depth = chan_obj_get_uint (q, "depth", &st->q_depth);
    chan_reply_fini (&r);
    s_cli_close (&c, true);
    return 0;
}

/*  ---- workload 2: durable work-queue ------------------------------------ */

typedef struct {
    s_shared_t *sh;
    int idx;
    uint32_t nthreads; /* producers: seq = idx + k * nthreads */
    uint64_t *seen;    /* consumers: one bit per seq, shared */
    atomic_uint_fast64_t *acked_total;
    atomic_uint_fast64_t *claimed_total;
    _Atomic int64_t *t_done_us;
    /* results */
    bool fail;
    uint64_t oks, errs; /* producers */
    uint64_t claimed, dups, foreign, ack_ids, acked, redelivered, claims;
} s_qw_t;

static void *
s_producer (void *arg)
{
    s_qw_t *w = (s_qw_t *) arg;
    s_shared_t *sh = w->sh;
    s_bench_t *b = sh->b;
    char system[32];
    snprintf (system, sizeof system, "bench.prod%d", w->idx);
    const char *chans[] = { S_CHAN_Q };
    s_cli_t c;
    uint8_t *pay = s_payload_new (b->o.size);
    if (!pay || s_cli_open (&c, b->cmd_ep, system, chans, 1, NULL) != 0) {
        free (pay);
        w->fail = true;
        atomic_fetch_add (&sh->ready, 1);
        return NULL;
    }
    atomic_fetch_add (&sh->ready, 1);
    uint64_t total = 0;
    for (uint64_t s = (uint64_t) w->idx; s < sh->n; s += w->nthreads)
        total++;
    if (!s_shared_wait_go (sh))
        goto done;
    uint64_t sent = 0;
    while (w->oks + w->errs < total) {
        while (sent < total && sent - w->oks - w->errs < b->o.qwindow) {
            s_payload_set (pay, (uint64_t) w->idx + sent * w->nthreads);
            s_cli_write (&c, S_CHAN_Q, pay, b->o.size, NULL);
            if (s_cli_send (&c, "WRITE") != 0)
                break;
            sent++;
        }
        if (s_shared_over (sh, hal_clock_mono_us ()))
            break;
        s_kind_t kind;
        int got = s_cli_recv (&c, 100, &kind);
        if (got < 0)
            break;
        if (got == 0)
            continue;
        if (kind == IN_OK)
            w->oks++;
        else if (kind == IN_ERROR) {
            char why[300];
            if (w->errs++ < 5)
                fprintf (stderr, "bench: %s: WRITE %s: %s\n", system, S_CHAN_Q,
                         s_cli_error (&c, why, sizeof why));
        }
    }
    if (w->oks != total) {
        fprintf (stderr,
                 "bench: %s: %" PRIu64 " of %" PRIu64 " WRITEs acknowledged\n",
                 system, w->oks, total);
        w->fail = true;
    }
done:
    s_cli_close (&c, true);
    free (pay);
    return NULL;
}

/*  Handles a CLAIM reply: marks every payload seen and ACKs all ids in
    one pipelined ACK. */
static int
s_consume_claim (s_qw_t *w, s_cli_t *c, chan_mpk_reader_t *r,
                 uint32_t *acks_out)
{
    s_shared_t *sh = w->sh;
    chan_mpk_obj_t arr;
    if (chan_mpk_next (r, &arr) != 0 || arr.type != CHAN_MPK_ARRAY)
        return -1;
    w->claims++;
    if (arr.v.n == 0)
        return 0;
    uint64_t fresh = 0;
    /*  The ACK is built while the reply is read: both are ours. */
    msgpack_packer *pk = s_cli_begin (c, 2, NULL);
    chan_pack_cstr (pk, "chan");
    chan_pack_cstr (pk, S_CHAN_Q);
    chan_pack_cstr (pk, "ids");
    msgpack_pack_array (pk, arr.v.n);
    for (uint32_t i = 0; i < arr.v.n; i++) {
        s_env_t e;
        if (s_env_read (r, &e) != 0 || !e.id || !e.data)
            return -1;
        chan_pack_str (pk, e.id, e.idlen);
        uint64_t seq = s_payload_seq (e.data, e.datalen);
        if (e.attempt > 1)
            w->redelivered++;
        if (seq >= sh->n) {
            w->foreign++;
            continue;
        }
        uint64_t bit = (uint64_t) 1 << (seq & 63);
        uint64_t old =
            __atomic_fetch_or (&w->seen[seq >> 6], bit, __ATOMIC_RELAXED);
        if (old & bit)
            w->dups++;
        else
            fresh++;
    }
    w->claimed += arr.v.n;
    /*  Only first sightings count: a duplicate must not end the run early. */
    atomic_fetch_add (w->claimed_total, fresh);
    if (s_cli_send (c, "ACK") != 0)
        return -1;
    w->ack_ids += arr.v.n;
    (*acks_out)++;
    return 0;
}

static void *
s_consumer (void *arg)
{
    s_qw_t *w = (s_qw_t *) arg;
    s_shared_t *sh = w->sh;
    s_bench_t *b = sh->b;
    char system[32];
    snprintf (system, sizeof system, "bench.cons%d", w->idx);
    const char *chans[] = { S_CHAN_Q };
    s_cli_t c;
    if (s_cli_open (&c, b->cmd_ep, system, chans, 1, NULL) != 0) {
        w->fail = true;
        atomic_fetch_add (&sh->ready, 1);
        return NULL;
    }
    atomic_fetch_add (&sh->ready, 1);
    if (!s_shared_wait_go (sh))
        goto done;
    uint32_t claims_out = 0, acks_out = 0;
    for (;;) {
        int64_t now = hal_clock_mono_us ();
        bool all_claimed = atomic_load (w->claimed_total) >= sh->n;
        if (all_claimed && claims_out == 0 && acks_out == 0)
            break;
        if (s_shared_over (sh, now))
            break;
        while (!all_claimed && claims_out < S_CLAIMS_OUT) {
            msgpack_packer *pk = s_cli_begin (&c, 3, NULL);
            chan_pack_cstr (pk, "chan");
            chan_pack_cstr (pk, S_CHAN_Q);
            chan_pack_cstr (pk, "max");
            msgpack_pack_uint32 (pk, S_CLAIM_MAX);
            chan_pack_cstr (pk, "wait_ms");
            msgpack_pack_uint32 (pk, S_CLAIM_WAIT_MS);
            if (s_cli_send (&c, "CLAIM") != 0) {
                w->fail = true;
                goto done;
            }
            claims_out++;
        }
        s_kind_t kind;
        int got = s_cli_recv (&c, 100, &kind);
        if (got < 0) {
            w->fail = true;
            break;
        }
        if (got == 0)
            continue;
        if (kind == IN_ERROR) {
            char why[300];
            fprintf (stderr, "bench: %s: %s\n", system,
                     s_cli_error (&c, why, sizeof why));
            w->fail = true;
            break;
        }
        if (kind != IN_OK)
            continue;
        /*  A CLAIM reply has msgs, an ACK reply has acked. */
        size_t len;
        const void *body = s_cli_body (&c, &len);
        chan_mpk_reader_t r;
        chan_mpk_reader_init (&r, body, len);
        chan_mpk_obj_t m, k, v;
        if (chan_mpk_next (&r, &m) != 0 || m.type != CHAN_MPK_MAP) {
            w->fail = true;
            break;
        }
        bool handled = false;
        for (uint32_t i = 0; i < m.v.n && !handled && !w->fail; i++) {
            if (chan_mpk_next (&r, &k) != 0) {
                w->fail = true;
                break;
            }
            if (s_keyis (&k, "msgs")) {
                claims_out--;
                if (s_consume_claim (w, &c, &r, &acks_out) != 0) {
                    fprintf (stderr, "bench: %s: bad CLAIM reply\n", system);
                    w->fail = true;
                }
                handled = true;
            } else if (s_keyis (&k, "acked")) {
                if (chan_mpk_next (&r, &v) != 0 || v.type != CHAN_MPK_UINT) {
                    w->fail = true;
                    break;
                }
                acks_out--;
                w->acked += v.v.u;
                uint64_t before = atomic_fetch_add (w->acked_total, v.v.u);
                if (before < sh->n && before + v.v.u >= sh->n)
                    atomic_store (w->t_done_us, hal_clock_mono_us ());
                handled = true;
            } else if (chan_mpk_skip (&r, AAAX_MAX_DEPTH) != 0)
                w->fail = true;
        }
        if (w->fail)
            break;
    }
done:
    s_cli_close (&c, true);
    return NULL;
}

/*  Bytes the kernel stores per queued message of a payload of size bytes:
    the record header and the envelope pairs (chan_queue.c, chan_env.c). */
static size_t
s_stored_len (uint32_t size)
{
    chan_buf_t data, pairs;
    msgpack_packer pk;
    chan_buf_init (&data);
    chan_buf_init (&pairs);
    chan_buf_packer (&data, &pk);
    uint8_t *pay = s_payload_new (size);
    msgpack_pack_bin (&pk, size);
    msgpack_pack_bin_body (&pk, pay ? pay : (const uint8_t *) "",
                           pay ? size : 0);
    const char *id = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
    chan_env_pairs (&pairs, id, strlen (id), 1.7e9, "bench.prod0", 11, S_CHAN_Q,
                    strlen (S_CHAN_Q), NULL, 0, NULL, 0, data.data, data.len);
    size_t n = S_QUEUE_REC_HDR + pairs.len;
    free (pay);
    chan_buf_fini (&data);
    chan_buf_fini (&pairs);
    return n;
}

/*  The LMDB floor: synced transactions of batch puts then batch deletes,
    keys as the kernel's (name NUL seq8), values of vlen bytes. Returns
    msgs/s, 0 on failure. */
static double
s_lmdb_floor (s_bench_t *b, uint64_t n, uint32_t batch, size_t vlen,
              uint64_t *done_out)
{
    char dir[PATH_MAX + 32];
    snprintf (dir, sizeof dir, "%s/lmdb-floor", b->tmp);
    *done_out = 0;
    if (mkdir (dir, 0700) != 0 && errno != EEXIST)
        return 0;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    double rate = 0;
    uint8_t *val = (uint8_t *) calloc (1, vlen ? vlen : 1);
    int rc = mdb_env_create (&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs (env, 8);
    if (rc == 0)
        rc = mdb_env_set_mapsize (env, (size_t) 1 << 30);
    if (rc == 0)
        rc = mdb_env_open (env, dir, MDB_NOTLS, 0600);
    if (rc == 0)
        rc = mdb_txn_begin (env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_dbi_open (txn, "queue", MDB_CREATE, &dbi);
        if (rc == 0)
            rc = mdb_txn_commit (txn);
        else
            mdb_txn_abort (txn);
    }
    if (rc != 0 || !val) {
        fprintf (stderr, "bench: LMDB floor: %s\n",
                 rc ? mdb_strerror (rc) : "out of memory");
        goto done;
    }
    uint8_t key[16 + 9];
    size_t nlen = strlen (S_CHAN_Q);
    memcpy (key, S_CHAN_Q, nlen);
    key[nlen] = 0;
    size_t klen = nlen + 9;
    uint64_t seq = 1, done = 0;
    int64_t t0 = hal_clock_mono_us ();
    int64_t until = t0 + (int64_t) b->o.limit_s * 1000000;
    while (done < n && !s_interrupted && hal_clock_mono_us () < until) {
        uint64_t m = n - done < batch ? n - done : batch;
        for (int pass = 0; pass < 2 && rc == 0; pass++) {
            rc = mdb_txn_begin (env, NULL, 0, &txn);
            for (uint64_t j = 0; j < m && rc == 0; j++) {
                uint64_t s = seq + j;
                for (int i = 0; i < 8; i++)
                    key[nlen + 1 + i] = (uint8_t) (s >> (56 - 8 * i));
                if (vlen >= 16) /* values differ a little, as real ones */
                    memcpy (val + 8, &s, 8);
                MDB_val k = { klen, key }, v = { vlen, val };
                rc = pass == 0 ? mdb_put (txn, dbi, &k, &v, 0)
                               : mdb_del (txn, dbi, &k, NULL);
            }
            if (rc == 0)
                rc = mdb_txn_commit (txn);
            else if (txn)
                mdb_txn_abort (txn);
            txn = NULL;
        }
        if (rc != 0) {
            fprintf (stderr, "bench: LMDB floor: %s\n", mdb_strerror (rc));
            goto done;
        }
        seq += m;
        done += m;
    }
    int64_t dt = hal_clock_mono_us () - t0;
    *done_out = done;
    rate = dt > 0 ? (double) done * 1e6 / (double) dt : 0;

done:
    if (env)
        mdb_env_close (env);
    free (val);
    return rate;
}

static void
s_workload_queue (s_bench_t *b)
{
    uint64_t n = b->o.count;
    uint32_t np = b->o.producers, nc = b->o.consumers;
    printf ("\n== durable work-queue: %" PRIu64 " messages of %u B, %u "
            "producers (window %u), %u consumers (CLAIM max %d wait_ms %d, "
            "%d outstanding, ACK all) ==\n",
            n, b->o.size, np, b->o.qwindow, nc, S_CLAIM_MAX, S_CLAIM_WAIT_MS,
            S_CLAIMS_OUT);
    fflush (stdout);
    s_stat_t st0, st1;
    bool fail = false;
    uint64_t lost = 0;
    double rate = 0;
    if (s_stat (b, &st0) != 0)
        fail = true;

    s_shared_t sh;
    s_shared_init (&sh, b, n);
    uint64_t *seen = (uint64_t *) calloc ((n + 63) / 64, sizeof (uint64_t));
    atomic_uint_fast64_t acked_total, claimed_total;
    _Atomic int64_t t_done;
    atomic_init (&acked_total, 0);
    atomic_init (&claimed_total, 0);
    atomic_init (&t_done, 0);
    s_qw_t w[2 * S_MAX_WORKERS];
    pthread_t th[2 * S_MAX_WORKERS];
    uint32_t started = 0, nw = np + nc;
    for (uint32_t i = 0; i < nw && seen && !fail; i++) {
        memset (&w[i], 0, sizeof w[i]);
        w[i].sh = &sh;
        w[i].idx = (int) (i < np ? i : i - np);
        w[i].nthreads = np;
        w[i].seen = seen;
        w[i].acked_total = &acked_total;
        w[i].claimed_total = &claimed_total;
        w[i].t_done_us = &t_done;
        if (pthread_create (&th[i], NULL, i < np ? s_producer : s_consumer,
                            &w[i])
            != 0)
            break;
        started++;
    }
    if (started < nw || !s_shared_wait_ready (&sh, (int) nw))
        fail = true;
    for (uint32_t i = 0; i < started; i++)
        if (w[i].fail)
            fail = true;
    if (fail) {
        fprintf (stderr, "bench: work-queue: setup failed\n");
        atomic_store (&sh.go, -1);
    }
    int64_t t0 = hal_clock_mono_us ();
    atomic_store (&sh.deadline_us, t0 + (int64_t) b->o.limit_s * 1000000);
    if (!fail)
        atomic_store (&sh.go, 1);
    for (uint32_t i = 0; i < started; i++)
        pthread_join (th[i], NULL);

    uint64_t oks = 0, errs = 0, claimed = 0, dups = 0, foreign = 0;
    uint64_t ack_ids = 0, acked = 0, redelivered = 0, claims = 0;
    for (uint32_t i = 0; i < started; i++) {
        fail |= w[i].fail;
        oks += w[i].oks;
        errs += w[i].errs;
        claimed += w[i].claimed;
        dups += w[i].dups;
        foreign += w[i].foreign;
        ack_ids += w[i].ack_ids;
        acked += w[i].acked;
        redelivered += w[i].redelivered;
        claims += w[i].claims;
    }
    uint64_t missing = 0;
    for (uint64_t s = 0; seen && s < n; s++)
        if (!(seen[s >> 6] & ((uint64_t) 1 << (s & 63))))
            missing++;
    lost = missing;
    if (!fail
        && (oks != n || errs || dups || foreign || missing || acked != n
            || ack_ids != n || !atomic_load (&t_done)))
        fail = true;
    if (!fail)
        rate = (double) n * 1e6 / (double) (atomic_load (&t_done) - t0);
    printf ("  aaax: %s%12.0f msgs/s end to end (write -> claim -> ack)\n",
            fail ? "FAILED " : "", rate);
    printf ("        writes ok %" PRIu64 "/%" PRIu64 ", errors %" PRIu64
            ", claimed %" PRIu64 " in %" PRIu64 " CLAIMs, acked %" PRIu64
            ", missing %" PRIu64 ", duplicates %" PRIu64
            ", redelivered %" PRIu64 "\n",
            oks, n, errs, claimed, claims, acked, missing, dups, redelivered);
    free (seen);

    double batch = 0, floor_rate = 0;
    uint64_t floor_done = 0;
    if (s_stat (b, &st1) == 0 && st0.commits <= st1.commits) {
        uint64_t dops = st1.ops - st0.ops, dcom = st1.commits - st0.commits;
        batch = dcom ? (double) dops / (double) dcom : 0;
        printf ("        kernel store: %" PRIu64 " ops in %" PRIu64
                " commits = %.1f ops/commit (max batch %" PRIu64
                "), %.2f ms per commit\n",
                dops, dcom, batch, st1.max_batch,
                dcom ? (double) (st1.commit_us - st0.commit_us) / 1000.0
                           / (double) dcom
                     : 0.0);
        if (st1.have_depth && st1.q_depth != 0) {
            printf ("        %s still holds %" PRIu64 " messages\n", S_CHAN_Q,
                    st1.q_depth);
            fail = true;
        }
    } else
        fail = true;
    uint32_t bsz = batch >= 1 ? (uint32_t) llround (batch) : 1;
    size_t vlen = s_stored_len (b->o.size);
    if (batch >= 1) /* without the kernel's batch size there is no floor */
        floor_rate = s_lmdb_floor (b, n, bsz, vlen, &floor_done);
    printf ("  LMDB floor: %12.0f msgs/s  (synced txn of %u puts, synced txn "
            "of %u deletes; key %zu B, value %zu B; %" PRIu64 " messages)\n",
            floor_rate, bsz, bsz, strlen (S_CHAN_Q) + 9, vlen, floor_done);
    double ratio = floor_rate > 0 ? rate / floor_rate : 0;
    printf ("  ratio aaax/floor: %.3f   target: aaax >= 100000 msgs/s: %s\n",
            ratio, rate >= 100000 ? "met" : "NOT met");

    s_result_t *r =
        s_result_add (b, "workqueue_e2e", "work-queue e2e (msgs/s)");
    if (r) {
        r->aaax = rate;
        r->base = floor_rate;
        snprintf (r->base_note, sizeof r->base_note, "lmdb floor B=%u", bsz);
        r->ratio = ratio;
        snprintf (r->target, sizeof r->target, "aaax >= 100000 msgs/s");
        r->target_met = rate >= 100000;
        r->ok = !fail;
        char extra[200];
        snprintf (extra, sizeof extra,
                  "\"producers\":%u,\"consumers\":%u,"
                  "\"ops_per_commit\":%.1f,\"floor_batch\":%u,"
                  "\"duplicates\":%" PRIu64,
                  np, nc, batch, bsz, dups);
        s_summary (b, r, "msgs/s", n, lost, extra);
    }
    if (fail)
        b->failed = true;
}

/*  ---- workload 3: mailbox round trip --------------------------------------
 */

typedef struct {
    s_shared_t *sh;
    atomic_int stop;
    bool fail;
    uint64_t echoed, errors, ack_bad;
} s_pong_t;

static void *
s_pong_thread (void *arg)
{
    s_pong_t *p = (s_pong_t *) arg;
    s_shared_t *sh = p->sh;
    s_cli_t c;
    if (s_cli_open (&c, sh->b->cmd_ep, "bench.pong", NULL, 0, NULL) != 0) {
        p->fail = true;
        atomic_fetch_add (&sh->ready, 1);
        return NULL;
    }
    atomic_fetch_add (&sh->ready, 1);
    uint8_t *copy = (uint8_t *) malloc (sh->b->o.size + 64);
    char id[64], from[AAAX_MAX_NAME + 1];
    while (!atomic_load (&p->stop) && copy) {
        int64_t now = hal_clock_mono_us ();
        if (s_shared_over (sh, now))
            break;
        if (s_cli_keepalive (&c, now) != 0) {
            p->fail = true;
            break;
        }
        s_kind_t kind;
        int got = s_cli_recv (&c, 50, &kind);
        if (got < 0) {
            p->fail = true;
            break;
        }
        if (got == 0)
            continue;
        if (kind == IN_MSG) {
            s_env_t e;
            if (s_cli_msg_env (&c, &e) != 0 || !e.id || !e.from || !e.data
                || e.idlen >= sizeof id || e.fromlen >= sizeof from
                || e.datalen > sh->b->o.size + 64) {
                p->errors++;
                continue;
            }
            memcpy (id, e.id, e.idlen);
            id[e.idlen] = 0;
            memcpy (from, e.from, e.fromlen);
            from[e.fromlen] = 0;
            uint32_t dlen = e.datalen;
            memcpy (copy, e.data, dlen);
            /*  Reply first (the round trip), then ACK (a transient
                request was never stored: nothing to ACK). */
            bool transient = sh->b->o.transient;
            msgpack_packer *pk = s_cli_begin (&c, transient ? 5 : 3, NULL);
            chan_pack_cstr (pk, "to");
            chan_pack_cstr (pk, from);
            chan_pack_cstr (pk, "corr");
            chan_pack_cstr (pk, id);
            chan_pack_cstr (pk, "data");
            msgpack_pack_bin (pk, dlen);
            msgpack_pack_bin_body (pk, copy, dlen);
            if (transient) {
                chan_pack_cstr (pk, "transient");
                msgpack_pack_true (pk);
                chan_pack_cstr (pk, "noreply"); /* like a NATS reply */
                msgpack_pack_true (pk);
            }
            if (s_cli_send (&c, "SEND") != 0) {
                p->fail = true;
                break;
            }
            if (transient) {
                p->echoed++;
                continue;
            }
            pk = s_cli_begin (&c, 2, NULL);
            chan_pack_cstr (pk, "chan");
            chan_pack_cstr (pk, "@bench.pong");
            chan_pack_cstr (pk, "ids");
            msgpack_pack_array (pk, 1);
            chan_pack_cstr (pk, id);
            if (s_cli_send (&c, "ACK") != 0) {
                p->fail = true;
                break;
            }
            p->echoed++;
        } else if (kind == IN_OK) {
            size_t len;
            const void *body = s_cli_body (&c, &len);
            uint64_t a;
            if (s_body_uint (body, len, "acked", &a) && a != 1)
                p->ack_bad++;
        } else if (kind == IN_ERROR) {
            char why[300];
            if (p->errors++ < 5)
                fprintf (stderr, "bench: bench.pong: %s\n",
                         s_cli_error (&c, why, sizeof why));
        }
    }
    free (copy);
    s_cli_close (&c, true);
    return NULL;
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double p50, p99, p999, mean;
} s_lat_t;

static double
s_pct (const double *sorted, size_t n, double q)
{
    size_t k = (size_t) ceil (q * (double) n);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return sorted[k - 1];
}

static void
s_lat_of (double *us, size_t n, s_lat_t *l)
{
    memset (l, 0, sizeof *l);
    if (!n)
        return;
    qsort (us, n, sizeof *us, s_cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += us[i];
    l->mean = sum / (double) n;
    l->p50 = s_pct (us, n, 0.50);
    l->p99 = s_pct (us, n, 0.99);
    l->p999 = s_pct (us, n, 0.999);
}

#define S_SEND_BASE ((uint64_t) 1 << 40)
#define S_ACK_BASE ((uint64_t) 1 << 41)

/*  The aaax side: bench.ping SENDs to bench.pong, which answers with SEND
    corr=id and ACKs; a sample ends when the MSG carrying the SEND's
    sequence number comes back. Its corr is checked against the SEND's id
    once the SEND's OK (which waits for the commit) has arrived. */
typedef struct {
    s_bench_t *b;
    s_shared_t sh;
    s_pong_t pong;
    pthread_t pth;
    bool pth_started;
    s_cli_t c;
    char (*ids)[27];
    char (*corrs)[27];
    uint8_t *pay;
    uint32_t total, next, warmup;
    uint64_t send_ok, ack_ok, ack_bad, errs;
    bool fail;
} s_rtta_t;

/*  An OK to one of our SENDs (records its id) or ACKs (counts it). */
static void
s_rtta_ok (s_rtta_t *a)
{
    size_t len;
    const void *body = s_cli_body (&a->c, &len);
    uint64_t req = 0, acked;
    const char *id;
    uint32_t idlen;
    s_body_uint (body, len, "req", &req);
    if (req >= S_SEND_BASE && req < S_SEND_BASE + a->total
        && s_body_str (body, len, "id", &id, &idlen) && idlen == 26) {
        memcpy (a->ids[req - S_SEND_BASE], id, 26);
        a->send_ok++;
    } else if (req >= S_ACK_BASE && req < S_ACK_BASE + a->total
               && s_body_uint (body, len, "acked", &acked)) {
        if (acked == 1)
            a->ack_ok++;
        else
            a->ack_bad++;
    }
}

/*  Starts bench.pong and docks bench.ping, for warmup + samples round
    trips. 0 or -1 (call s_rtta_finish in both cases). */
static int
s_rtta_setup (s_bench_t *b, s_rtta_t *a, uint32_t warmup, uint32_t samples)
{
    a->b = b;
    a->warmup = warmup;
    a->total = warmup + samples;
    s_shared_init (&a->sh, b, a->total);
    a->pong.sh = &a->sh;
    atomic_init (&a->pong.stop, 0);
    a->ids = calloc (a->total, sizeof *a->ids);
    a->corrs = calloc (a->total, sizeof *a->corrs);
    a->pay = s_payload_new (b->o.size);
    if (!a->ids || !a->corrs || !a->pay
        || pthread_create (&a->pth, NULL, s_pong_thread, &a->pong) != 0)
        return -1;
    a->pth_started = true;
    if (!s_shared_wait_ready (&a->sh, 1) || a->pong.fail
        || s_cli_open (&a->c, b->cmd_ep, "bench.ping", NULL, 0, NULL) != 0) {
        fprintf (stderr, "bench: mailbox: setup failed\n");
        return -1;
    }
    atomic_store (&a->sh.deadline_us,
                  hal_clock_mono_us () + (int64_t) b->o.limit_s * 1000000);
    return 0;
}

/*  Runs up to count more round trips (samples past the warm-up go to us),
    then waits up to 5 s for the OKs of everything sent so far, so that
    the raw block that follows runs beside a quiet kernel. 0 or -1. */
static int
s_rtta_block (s_rtta_t *a, uint32_t count, double *us, size_t *nus)
{
    s_bench_t *b = a->b;
    s_cli_t *c = &a->c;
    uint32_t end = a->total - a->next < count ? a->total : a->next + count;
    for (; a->next < end && !a->fail; a->next++) {
        uint32_t i = a->next;
        s_payload_set (a->pay, i);
        c->next_req = S_SEND_BASE + i;
        msgpack_packer *pk = s_cli_begin (c, b->o.transient ? 4 : 2, NULL);
        chan_pack_cstr (pk, "to");
        chan_pack_cstr (pk, "bench.pong");
        chan_pack_cstr (pk, "data");
        msgpack_pack_bin (pk, b->o.size);
        msgpack_pack_bin_body (pk, a->pay, b->o.size);
        if (b->o.transient) {
            /*  A NATS request: no OK; a refusal would still come (ERROR). */
            chan_pack_cstr (pk, "transient");
            msgpack_pack_true (pk);
            chan_pack_cstr (pk, "noreply");
            msgpack_pack_true (pk);
        }
        int64_t ts = s_now_ns ();
        if (s_cli_send (c, "SEND") != 0) {
            a->fail = true;
            break;
        }
        bool back = false;
        while (!back && !a->fail) {
            if (s_shared_over (&a->sh, hal_clock_mono_us ())) {
                fprintf (stderr, "bench: mailbox: no reply to round trip %u\n",
                         i);
                a->fail = true;
                break;
            }
            s_kind_t kind;
            int got = s_cli_recv (c, 100, &kind);
            if (got < 0) {
                a->fail = true;
                break;
            }
            if (got == 0)
                continue;
            int64_t tr = s_now_ns ();
            if (kind == IN_MSG) {
                s_env_t e;
                if (s_cli_msg_env (c, &e) != 0 || !e.data || !e.id) {
                    a->fail = true;
                    break;
                }
                uint64_t seq = s_payload_seq (e.data, e.datalen);
                if (seq < a->total && e.corr && e.corrlen == 26)
                    memcpy (a->corrs[seq], e.corr, 26);
                if (seq == i) {
                    back = true;
                    if (i >= a->warmup)
                        us[(*nus)++] = (double) (tr - ts) / 1000.0;
                } else
                    a->errs++;
                if (b->o.transient)
                    continue; /* never stored: nothing to ACK */
                /*  ACK it (pipelined: its OK is counted when it comes). */
                c->next_req = S_ACK_BASE + (seq < a->total ? seq : 0);
                pk = s_cli_begin (c, 2, NULL);
                chan_pack_cstr (pk, "chan");
                chan_pack_cstr (pk, "@bench.ping");
                chan_pack_cstr (pk, "ids");
                msgpack_pack_array (pk, 1);
                chan_pack_str (pk, e.id, e.idlen);
                if (s_cli_send (c, "ACK") != 0)
                    a->fail = true;
            } else if (kind == IN_OK)
                s_rtta_ok (a);
            else if (kind == IN_ERROR) {
                char why[300];
                if (a->errs++ < 5)
                    fprintf (stderr, "bench: bench.ping: %s\n",
                             s_cli_error (c, why, sizeof why));
            }
        }
    }
    /*  The OKs of this block wait for their commits. */
    int64_t until = hal_clock_mono_ms () + 5000;
    uint32_t acks = b->o.transient ? 0 : a->next;
    uint32_t oks = b->o.transient ? 0 : a->next; /* noreply: no OK */
    while (!a->fail && (a->send_ok < oks || a->ack_ok + a->ack_bad < acks)
           && hal_clock_mono_ms () < until && !s_interrupted) {
        s_kind_t kind;
        int got = s_cli_recv (c, 100, &kind);
        if (got < 0)
            a->fail = true;
        else if (got == 1 && kind == IN_OK)
            s_rtta_ok (a);
        else if (got == 1 && kind == IN_ERROR)
            a->errs++;
    }
    return a->fail ? -1 : 0;
}

/*  Checks every reply, stops bench.pong and frees. 0 when every round
    trip completed with corr == id and every SEND and ACK was answered. */
static int
s_rtta_finish (s_rtta_t *a, bool complete)
{
    bool fail = a->fail || !complete;
    if (!fail) {
        uint32_t mismatched = 0;
        bool transient = a->b->o.transient;
        /*  Transient requests are noreply (no id told): every reply must
            still carry a corr, an id distinct from the one before. */
        for (uint32_t i = 0; i < a->total; i++)
            if (transient
                    ? !a->corrs[i][0]
                          || (i && !memcmp (a->corrs[i], a->corrs[i - 1], 26))
                    : !a->ids[i][0] || memcmp (a->ids[i], a->corrs[i], 26) != 0)
                mismatched++;
        uint32_t acks = transient ? 0 : a->total;
        if (a->next != a->total || a->send_ok != (transient ? 0 : a->total)
            || a->ack_ok != acks || a->ack_bad || a->errs || mismatched) {
            fprintf (stderr,
                     "bench: mailbox: SEND ok %" PRIu64 "/%u, ACK ok %" PRIu64
                     " (bad %" PRIu64 "), errors %" PRIu64 ", corr != id %u\n",
                     a->send_ok, a->total, a->ack_ok, a->ack_bad, a->errs,
                     mismatched);
            fail = true;
        }
    }
    if (a->pth_started) {
        atomic_store (&a->pong.stop, 1);
        pthread_join (a->pth, NULL);
        if (a->pong.fail || a->pong.errors || a->pong.ack_bad
            || (!fail && a->pong.echoed != a->total)) {
            fprintf (stderr,
                     "bench: bench.pong: echoed %" PRIu64 "/%u, "
                     "errors %" PRIu64 ", bad ACKs %" PRIu64 "\n",
                     a->pong.echoed, a->total, a->pong.errors, a->pong.ack_bad);
            fail = true;
        }
    }
    s_cli_close (&a->c, true);
    free (a->ids);
    free (a->corrs);
    free (a->pay);
    return fail ? -1 : 0;
}

/*  CURVE keys of the raw echo (Z85): the ROUTER's pair, the DEALER's. */
typedef struct {
    char srv_pub[HAL_CURVE_Z85_LEN + 1], srv_sec[HAL_CURVE_Z85_LEN + 1];
    char cli_pub[HAL_CURVE_Z85_LEN + 1], cli_sec[HAL_CURVE_Z85_LEN + 1];
} s_rawkeys_t;

/*  The raw side: a DEALER and a ROUTER echo thread over tcp loopback. */
typedef struct {
    void *ctx;             /* s_srvctx_new */
    const cpu_set_t *cpus; /* the thread's CPUs, or NULL */
    char ep[128];
    sem_t ready;
    int rc;
    atomic_int stop;
} s_echo_t;

static void *
s_echo_thread (void *arg)
{
    s_echo_t *e = (s_echo_t *) arg;
    pthread_setname_np (pthread_self (), "raw-echo");
    s_srv_pin_self (e->cpus);
    void *router = zmq_socket (e->ctx, ZMQ_ROUTER);
    int zero = 0, tmo = 100;
    size_t len = sizeof e->ep;
    e->rc = -1;
    if (!router) {
        sem_post (&e->ready);
        return NULL;
    }
    zmq_setsockopt (router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (router, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    if (zmq_bind (router, "tcp://127.0.0.1:*") != 0) {
        zmq_close (router);
        sem_post (&e->ready);
        return NULL;
    }
    zmq_getsockopt (router, ZMQ_LAST_ENDPOINT, e->ep, &len);
    e->rc = 0;
    sem_post (&e->ready);
    zmq_msg_t rid, body;
    zmq_msg_init (&rid);
    zmq_msg_init (&body);
    while (!atomic_load (&e->stop) && !s_interrupted) {
        if (zmq_msg_recv (&rid, router, 0) < 0)
            continue;
        if (!zmq_msg_more (&rid) || zmq_msg_recv (&body, router, 0) < 0)
            continue;
        zmq_msg_send (&rid, router, ZMQ_SNDMORE);
        zmq_msg_send (&body, router, 0);
    }
    zmq_msg_close (&rid);
    zmq_msg_close (&body);
    zmq_close (router);
    return NULL;
}

typedef struct {
    s_bench_t *b;
    /*  Set before s_rttr_setup, for the remote workloads: the DEALER's
        CURVE keys, and an echo that runs elsewhere (no thread here). */
    const s_rawkeys_t *curve;
    const char *ext_ep;
    s_echo_t echo;
    pthread_t th;
    bool th_started;
    void *dealer;
    uint8_t *pay;
    zmq_msg_t in;
    uint32_t total, next;
    bool fail;
} s_rttr_t;

/*  Starts the echo thread and connects the DEALER. 0 or -1 (call
    s_rttr_finish in both cases). */
static int
s_rttr_setup (s_bench_t *b, s_rttr_t *r)
{
    r->b = b;
    r->total = b->o.warmup + b->o.samples;
    r->echo.ctx = r->ext_ep ? b->rawctx : s_srvctx_new (b);
    r->echo.cpus = b->srv_pin ? &b->srv_cpus : NULL;
    atomic_init (&r->echo.stop, 0);
    sem_init (&r->echo.ready, 0, 0);
    zmq_msg_init (&r->in);
    r->pay = s_payload_new (b->o.size);
    if (!r->pay || !r->echo.ctx)
        return -1;
    if (!r->ext_ep) {
        if (pthread_create (&r->th, NULL, s_echo_thread, &r->echo) != 0)
            return -1;
        r->th_started = true;
        sem_wait (&r->echo.ready);
    }
    int zero = 0, tmo = 5000, hwm = S_RAW_HWM;
    if ((!r->ext_ep && r->echo.rc != 0)
        || !(r->dealer = zmq_socket (b->rawctx, ZMQ_DEALER)))
        return -1;
    zmq_setsockopt (r->dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (r->dealer, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt (r->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (r->dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    const s_rawkeys_t *k = r->curve;
    if (k
        && (zmq_setsockopt (r->dealer, ZMQ_CURVE_SERVERKEY, k->srv_pub,
                            sizeof k->srv_pub)
                != 0
            || zmq_setsockopt (r->dealer, ZMQ_CURVE_PUBLICKEY, k->cli_pub,
                               sizeof k->cli_pub)
                   != 0
            || zmq_setsockopt (r->dealer, ZMQ_CURVE_SECRETKEY, k->cli_sec,
                               sizeof k->cli_sec)
                   != 0))
        return -1;
    return zmq_connect (r->dealer, r->ext_ep ? r->ext_ep : r->echo.ep) == 0
               ? 0
               : -1;
}

/*  Runs up to count more round trips, one in flight. 0 or -1. */
static int
s_rttr_block (s_rttr_t *r, uint32_t count, double *us, size_t *nus)
{
    uint32_t end = r->total - r->next < count ? r->total : r->next + count;
    for (; r->next < end && !r->fail && !s_interrupted; r->next++) {
        uint32_t i = r->next;
        s_payload_set (r->pay, i);
        int64_t ts = s_now_ns ();
        if (zmq_send (r->dealer, r->pay, r->b->o.size, 0) < 0
            || zmq_msg_recv (&r->in, r->dealer, 0) < 0) {
            fprintf (stderr, "bench: raw echo: no reply to round trip %u\n", i);
            r->fail = true;
            break;
        }
        int64_t tr = s_now_ns ();
        if (s_payload_seq (zmq_msg_data (&r->in), zmq_msg_size (&r->in)) != i) {
            r->fail = true;
            break;
        }
        if (i >= r->b->o.warmup)
            us[(*nus)++] = (double) (tr - ts) / 1000.0;
    }
    if (s_interrupted)
        r->fail = true;
    return r->fail ? -1 : 0;
}

static int
s_rttr_finish (s_rttr_t *r, bool complete)
{
    bool fail = r->fail || !complete || r->next != r->total;
    zmq_msg_close (&r->in);
    if (r->dealer)
        zmq_close (r->dealer);
    if (r->th_started) {
        atomic_store (&r->echo.stop, 1);
        pthread_join (r->th, NULL);
    }
    sem_destroy (&r->echo.ready);
    if (r->b)
        s_srvctx_end (r->b, r->echo.ctx);
    free (r->pay);
    return fail ? -1 : 0;
}

static void
s_workload_rtt (s_bench_t *b)
{
    uint32_t total = b->o.warmup + b->o.samples;
    uint32_t blk = b->o.rtt_block ? b->o.rtt_block : total;
    printf ("\n== mailbox round trip: SEND -> reply SEND(corr) -> MSG, one in "
            "flight, %u B, %u samples after %u warm-up; aaax and raw "
            "alternate in blocks of %u ==\n",
            b->o.size, b->o.samples, b->o.warmup, blk);
    fflush (stdout);
    double *ua = (double *) calloc (total, sizeof (double));
    double *ur = (double *) calloc (total, sizeof (double));
    s_rtta_t *a = (s_rtta_t *) calloc (1, sizeof *a);
    s_rttr_t *r = (s_rttr_t *) calloc (1, sizeof *r);
    size_t na = 0, nr = 0;
    s_lat_t la, lr;
    s_stat_t st0, st1;
    bool have_st = s_stat (b, &st0) == 0;
    bool fail_a =
        !ua || !a || s_rtta_setup (b, a, b->o.warmup, b->o.samples) != 0;
    bool fail_r = !ur || !r || s_rttr_setup (b, r) != 0;
    /*  Alternating blocks: whatever else the machine does at a moment
        weighs on both sides alike, so the ratio stays meaningful. */
    while (!fail_a && !fail_r && (a->next < total || r->next < total)) {
        if (s_rtta_block (a, blk, ua, &na) != 0)
            fail_a = true;
        if (!fail_a && s_rttr_block (r, blk, ur, &nr) != 0)
            fail_r = true;
    }
    if (a && s_rtta_finish (a, !fail_a) != 0)
        fail_a = true;
    if (r && s_rttr_finish (r, !fail_r) != 0)
        fail_r = true;

    s_lat_of (ua, na, &la);
    printf ("  aaax: %sp50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  mean "
            "%8.1f us  (%zu samples)\n",
            fail_a ? "FAILED " : "", la.p50, la.p99, la.p999, la.mean, na);
    if (have_st && s_stat (b, &st1) == 0 && st1.commits > st0.commits) {
        uint64_t dc = st1.commits - st0.commits, dops = st1.ops - st0.ops;
        printf ("        kernel store meanwhile: %" PRIu64 " commits, %.1f "
                "ops/commit, %.2f ms per commit (SEND OKs wait for them; "
                "the round trip does not)\n",
                dc, (double) dops / (double) dc,
                (double) (st1.commit_us - st0.commit_us) / 1000.0
                    / (double) dc);
    }
    s_lat_of (ur, nr, &lr);
    printf ("  raw:  %sp50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  mean "
            "%8.1f us  (%zu samples; DEALER -> ROUTER echo)\n",
            fail_r ? "FAILED " : "", lr.p50, lr.p99, lr.p999, lr.mean, nr);
    double ratio = lr.p50 > 0 ? la.p50 / lr.p50 : 0;
    bool met = !fail_a && !fail_r && ratio > 0 && ratio <= 2.0;
    printf ("  ratio of p50s aaax/raw: %.2f   target: aaax p50 <= 2x raw: %s\n",
            ratio, met ? "met" : "NOT met");

    s_result_t *res =
        s_result_add (b, "mailbox_rtt_p50", "mailbox RTT p50 (us)");
    if (res) {
        res->aaax = la.p50;
        res->base = lr.p50;
        snprintf (res->base_note, sizeof res->base_note, "raw zmq");
        res->ratio = ratio;
        snprintf (res->target, sizeof res->target, "aaax p50 <= 2x raw");
        res->target_met = met;
        res->ok = !fail_a && !fail_r;
        char extra[256];
        snprintf (extra, sizeof extra,
                  "\"aaax_p99\":%.1f,\"aaax_p999\":%.1f,"
                  "\"raw_p99\":%.1f,\"raw_p999\":%.1f,\"samples\":%u",
                  la.p99, la.p999, lr.p99, lr.p999, b->o.samples);
        s_summary (b, res, "us", total, fail_a ? 1 : 0, extra);
    }
    res = s_result_add (b, "mailbox_rtt_p99", "mailbox RTT p99 (us)");
    if (res) {
        res->aaax = la.p99;
        res->base = lr.p99;
        snprintf (res->base_note, sizeof res->base_note, "raw zmq");
        res->ratio = lr.p99 > 0 ? la.p99 / lr.p99 : 0;
        res->ok = !fail_a && !fail_r;
    }
    if (fail_a || fail_r)
        b->failed = true;
    free (a);
    free (r);
    free (ua);
    free (ur);
}

/*  ---- workloads 4 and 5: the action gate ---------------------------------

    One generator makes every policy of the bench: the kernel's config and
    the in-process policies. Rule by rule: the bench's own channel rules
    (bench.* systems), then a few rules whose action is a glob (the engine
    scans them for every decision), then four literal-action rules per tool
    "tool.K": allow its work dir, deny its secrets, ask for external
    targets, and either a rated allow (even K) or an ops allow (odd K). */

#define S_GATE_RULES 1000  /* the measured policy, and the kernel's */
#define S_GATE_SMALL 10    /* the comparison */
#define S_GATE_STREAM 4096 /* (subject, action, target) triples, cycled */
#define S_GATE_BATCH 64    /* the gate actor's CLAIM max: one audit commit */
#define S_GATE_SYSTEM "agent-bench" /* the tcp requester, matches agent-* */
#define S_NCHAN_RULES 5
#define S_GATE_BASE ((uint64_t) 1 << 42) /* reqs of gate WRITEs */
#define S_GACK_BASE ((uint64_t) 1 << 43) /* ... of the answers' ACKs */
#define S_GPING_BASE ((uint64_t) 1 << 44)

typedef struct {
    char subject[32], action[32], target[48], name[32];
    const char *effect, *rate;
} s_grule_t;

/*  subject, action, target, effect, rate */
static const char *const s_gate_wild[][5] = {
    { "*", "tool.*", "/etc/*", "deny", NULL },
    { "agent-*", "net.*", "https://*", "ask", NULL },
    { "agent-*", "read.*", "/pub/*", "allow", NULL },
    { "agent-guest*", "*", "*", "deny", NULL },
    { "agent-*", "fs.*", "/home/*", "allow", "100000/s" },
    { "*", "fs.*", "*/.ssh/*", "deny", NULL },
    { "agent-*", "shell.*", "*", "ask", NULL },
    { "agent-ops-*", "*.status", "*", "allow", NULL },
};

static size_t
s_gate_nwild (size_t n)
{
    return n >= 100 ? 8 : 2;
}

/*  Tools with at least their allow rule in a policy of n rules. */
static size_t
s_gate_ntools (size_t n)
{
    size_t fixed = S_NCHAN_RULES + s_gate_nwild (n);
    return n > fixed ? (n - fixed + 3) / 4 : 0;
}

/*  Rule i (0-based) of the policy of n rules. */
static void
s_gate_rule (size_t n, size_t i, s_grule_t *r)
{
    static const char *const chan[S_NCHAN_RULES][2] = {
        { "chan.read", S_CHAN_B },    { "chan.write", S_CHAN_B },
        { "chan.write", S_CHAN_Q },   { "chan.claim", S_CHAN_Q },
        { "chan.write", "@bench.*" },
    };
    size_t nwild = s_gate_nwild (n);
    memset (r, 0, sizeof *r);
    r->effect = "allow";
    if (i < S_NCHAN_RULES) {
        snprintf (r->subject, sizeof r->subject, "bench.*");
        snprintf (r->action, sizeof r->action, "%s", chan[i][0]);
        snprintf (r->target, sizeof r->target, "%s", chan[i][1]);
        snprintf (r->name, sizeof r->name, "bench-%zu", i + 1);
        return;
    }
    if (i < S_NCHAN_RULES + nwild) {
        const char *const *w = s_gate_wild[i - S_NCHAN_RULES];
        snprintf (r->subject, sizeof r->subject, "%s", w[0]);
        snprintf (r->action, sizeof r->action, "%s", w[1]);
        snprintf (r->target, sizeof r->target, "%s", w[2]);
        r->effect = w[3];
        r->rate = w[4];
        snprintf (r->name, sizeof r->name, "wild-%zu", i - S_NCHAN_RULES + 1);
        return;
    }
    size_t j = i - S_NCHAN_RULES - nwild, k = j / 4;
    snprintf (r->subject, sizeof r->subject, "agent-*");
    snprintf (r->action, sizeof r->action, "tool.%zu", k);
    switch (j % 4) {
    case 0:
        snprintf (r->target, sizeof r->target, "/work/%zu/*", k);
        snprintf (r->name, sizeof r->name, "t%zu-work", k);
        break;
    case 1:
        snprintf (r->target, sizeof r->target, "/work/%zu/secret/*", k);
        snprintf (r->name, sizeof r->name, "t%zu-secret", k);
        r->effect = "deny";
        break;
    case 2:
        snprintf (r->target, sizeof r->target, "/ext/*");
        snprintf (r->name, sizeof r->name, "t%zu-ext", k);
        r->effect = "ask";
        break;
    default:
        if (k % 2 == 0) {
            snprintf (r->subject, sizeof r->subject, "agent-1*");
            snprintf (r->target, sizeof r->target, "/tmp/*");
            snprintf (r->name, sizeof r->name, "t%zu-tmp", k);
            r->rate = "50/s";
        } else {
            snprintf (r->subject, sizeof r->subject, "agent-ops-*");
            snprintf (r->target, sizeof r->target, "*");
            snprintf (r->name, sizeof r->name, "t%zu-ops", k);
        }
        break;
    }
}

/*  The policy of n generated rules; NULL with a message on stderr. */
static policy_t *
s_gate_policy (size_t n)
{
    policy_t *p = policy_new ();
    char err[256];
    for (size_t i = 0; p && i < n; i++) {
        s_grule_t r;
        s_gate_rule (n, i, &r);
        policy_rule_spec_t spec = { r.subject, r.action, r.target, r.effect,
                                    r.rate,    r.name,   NULL };
        if (policy_add (p, &spec, err, sizeof err) != 0) {
            fprintf (stderr, "bench: gate policy: %s\n", err);
            policy_destroy (&p);
        }
    }
    return p;
}

typedef struct {
    char subject[32], action[32], target[48];
} s_triple_t;

static uint64_t
s_rand (uint64_t *state)
{
    uint64_t x = *state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/*  S_GATE_STREAM triples for the policy of n rules, in a fixed mix: about
    40% allowed work files, 10% denied secrets, 8% asks, 5% rated and 3% ops
    allows, 12% decided by the glob-action rules, 2% guests, 20% matching
    no rule (an unknown tool, or a known one on a target no rule names). */
static void
s_gate_stream (size_t n, s_triple_t *t, uint64_t seed)
{
    size_t nt = s_gate_ntools (n);
    if (!nt)
        nt = 1;
    uint64_t st = seed ? seed : 1;
    for (size_t i = 0; i < S_GATE_STREAM; i++, t++) {
        uint64_t r = s_rand (&st);
        unsigned u = (unsigned) (r % 100);
        size_t k = (size_t) ((r >> 8) % nt);
        unsigned x = (unsigned) ((r >> 32) % 1000);
        snprintf (t->subject, sizeof t->subject, "agent-%u", 20 + x % 50);
        snprintf (t->action, sizeof t->action, "tool.%zu", k);
        if (u < 40)
            snprintf (t->target, sizeof t->target, "/work/%zu/f%u", k, x);
        else if (u < 50)
            snprintf (t->target, sizeof t->target, "/work/%zu/secret/k%u", k,
                      x % 10);
        else if (u < 58)
            snprintf (t->target, sizeof t->target, "/ext/x%u", x);
        else if (u < 63) {
            snprintf (t->subject, sizeof t->subject, "agent-1%u", x % 10);
            snprintf (t->action, sizeof t->action, "tool.%zu", k & ~(size_t) 1);
            snprintf (t->target, sizeof t->target, "/tmp/t%u", x);
        } else if (u < 66) {
            snprintf (t->subject, sizeof t->subject, "agent-ops-%u", x % 5);
            snprintf (t->action, sizeof t->action, "tool.%zu", k | 1);
            snprintf (t->target, sizeof t->target, "/var/log/l%u", x);
        } else if (u < 70)
            snprintf (t->target, sizeof t->target, "/etc/passwd");
        else if (u < 73) {
            snprintf (t->action, sizeof t->action, "read.doc");
            snprintf (t->target, sizeof t->target, "/pub/d%u", x);
        } else if (u < 76) {
            snprintf (t->action, sizeof t->action, "fs.write");
            snprintf (t->target, sizeof t->target, "/home/u/f%u", x);
        } else if (u < 78) {
            snprintf (t->action, sizeof t->action, "net.get");
            snprintf (t->target, sizeof t->target, "https://example.com/%u", x);
        } else if (u < 80) {
            snprintf (t->subject, sizeof t->subject, "agent-guest-%u", x % 5);
            snprintf (t->target, sizeof t->target, "/work/%zu/f%u", k, x);
        } else if (u < 90) {
            snprintf (t->action, sizeof t->action, "tool.%zu", nt + x);
            snprintf (t->target, sizeof t->target, "/work/%u", x);
        } else
            snprintf (t->target, sizeof t->target, "/elsewhere/%u", x);
    }
}

enum { S_V_ALLOW, S_V_ASK, S_V_DENY, S_V_NORULE, S_V_RATE, S_V_N };

static int
s_verdict_kind (const gate_verdict_t *v)
{
    if (v->decision == POLICY_ALLOW)
        return S_V_ALLOW;
    if (v->decision == POLICY_ASK)
        return S_V_ASK;
    if (!v->rule)
        return S_V_NORULE;
    return strcmp (v->reason, "rate") == 0 ? S_V_RATE : S_V_DENY;
}

static void
s_print_mix (const uint64_t *counts, uint64_t total)
{
    static const char *const names[S_V_N] = { "allow", "ask", "deny by rule",
                                              "no rule", "rate" };
    printf ("        mix:");
    for (int i = 0; i < S_V_N; i++)
        printf (" %s %.1f%%", names[i],
                total ? 100.0 * (double) counts[i] / (double) total : 0.0);
    printf ("\n");
}

/*  One policy in a gate core, with its stream. */
typedef struct {
    size_t rules;
    gate_core_t *core;
    s_triple_t *stream;
    uint64_t at; /* position in the stream */
    uint64_t done;
    int64_t ns;
    uint64_t counts[S_V_N];
} s_gdec_t;

static int
s_gdec_setup (s_gdec_t *g, size_t rules)
{
    memset (g, 0, sizeof *g);
    g->rules = rules;
    g->stream = (s_triple_t *) calloc (S_GATE_STREAM, sizeof *g->stream);
    g->core = gate_core_new ();
    if (!g->stream || !g->core)
        return -1;
    policy_t *p = s_gate_policy (rules);
    if (!p)
        return -1;
    gate_core_set_policy (g->core, p);
    s_gate_stream (rules, g->stream, 0x9E3779B97F4A7C15ULL);
    return 0;
}

static void
s_gdec_fini (s_gdec_t *g)
{
    gate_core_destroy (&g->core);
    free (g->stream);
}

/*  count decisions, timed; the clock is read once per S_GATE_BATCH, as
    the gate actor reads it once per claimed batch. */
static void
s_gdec_run (s_gdec_t *g, uint64_t count)
{
    gate_verdict_t v;
    uint64_t wall = (uint64_t) hal_clock_wall_s ();
    int64_t now_ms = 0;
    int64_t t0 = s_now_ns ();
    for (uint64_t i = 0; i < count; i++) {
        if (i % S_GATE_BATCH == 0)
            now_ms = hal_clock_mono_ms ();
        const s_triple_t *t = &g->stream[g->at++ % S_GATE_STREAM];
        gate_core_decide (g->core, t->subject, t->action, t->target, now_ms,
                          wall, &v);
        g->counts[s_verdict_kind (&v)]++;
    }
    g->ns += s_now_ns () - t0;
    g->done += count;
}

static double
s_gdec_rate (const s_gdec_t *g)
{
    return g->ns > 0 ? (double) g->done * 1e9 / (double) g->ns : 0;
}

/*  Decides n more triples of g and appends each decision to a fresh audit
    journal in <tmp>/gate-audit, S_GATE_BATCH records at a time, waiting
    for each batch as the gate actor does. Then closes the journal (its
    final checkpoint) and verifies the whole chain. Records/s, 0 on
    failure. */
static double
s_gate_audit (s_bench_t *b, s_gdec_t *g, uint64_t n, hal_audit_stats_t *st)
{
    char dir[PATH_MAX + 32], err[256] = "";
    snprintf (dir, sizeof dir, "%.4000s/gate-audit", b->tmp);
    hal_keys_t *keys = NULL;
    hal_audit_t *au = NULL;
    chan_buf_t args;
    chan_buf_init (&args);
    double rate = 0;
    bool fail = false;
    memset (st, 0, sizeof *st);
    if (mkdir (dir, 0700) != 0 || !(keys = hal_keys_open (dir, err, sizeof err))
        || !(au = hal_audit_open (dir, (size_t) 256 << 20, keys, 1000, err,
                                  sizeof err))) {
        fprintf (stderr, "bench: gate audit: cannot open a journal in %s: %s\n",
                 dir, err[0] ? err : strerror (errno));
        fail = true;
        goto done;
    }
    uint64_t tickets[S_GATE_BATCH];
    uint64_t wall = (uint64_t) hal_clock_wall_s ();
    int64_t t0 = s_now_ns ();
    for (uint64_t i = 0; i < n && !fail && !s_interrupted; i += S_GATE_BATCH) {
        size_t m = n - i < S_GATE_BATCH ? (size_t) (n - i) : S_GATE_BATCH;
        int64_t now_ms = hal_clock_mono_ms ();
        for (size_t j = 0; j < m; j++) {
            const s_triple_t *t = &g->stream[g->at++ % S_GATE_STREAM];
            gate_verdict_t v;
            gate_core_decide (g->core, t->subject, t->action, t->target, now_ms,
                              wall, &v);
            chan_buf_reset (&args);
            msgpack_packer apk;
            chan_buf_packer (&args, &apk);
            msgpack_pack_map (&apk, 2);
            chan_pack_cstr (&apk, "path");
            chan_pack_cstr (&apk, t->target);
            chan_pack_cstr (&apk, "n");
            msgpack_pack_uint64 (&apk, i + j);
            char corr[32];
            snprintf (corr, sizeof corr, "BENCH%021" PRIu64, i + j);
            hal_audit_rec_t rec = { .kind = "gate",
                                    .subject = t->subject,
                                    .action = t->action,
                                    .target = t->target,
                                    .verdict = policy_effect_str (v.decision),
                                    .rule = v.rule,
                                    .reason = v.reason,
                                    .args = args.data,
                                    .argslen = args.len,
                                    .corr = corr };
            tickets[j] = args.oom ? 0 : hal_audit_append (au, &rec, NULL, 0);
            if (!tickets[j]) {
                fprintf (stderr, "bench: gate audit: append failed\n");
                fail = true;
                m = j;
                break;
            }
        }
        for (size_t j = 0; j < m; j++) {
            int rc = hal_audit_wait (au, tickets[j], 10000, NULL);
            if (rc != 0) {
                fprintf (stderr, "bench: gate audit: record %" PRIu64 ": %s\n",
                         i + j, aaax_strerror (rc));
                fail = true;
            }
        }
    }
    int64_t t1 = s_now_ns ();
    hal_audit_stats (au, st);
    if (!fail && !s_interrupted && t1 > t0)
        rate = (double) n * 1e9 / (double) (t1 - t0);
    hal_audit_close (&au);
    if (!fail) {
        hal_audit_reader_t *rd = hal_audit_reader_open (dir, err, sizeof err);
        hal_audit_verify_t vf;
        memset (&vf, 0, sizeof vf);
        int rc =
            rd ? hal_audit_verify (rd, hal_keys_public (keys), &vf) : AAAX_EIO;
        if (rc != 0 || vf.records < n) {
            fprintf (stderr,
                     "bench: gate audit: the journal does not verify: %s "
                     "(%" PRIu64 " records intact, first bad %" PRIu64
                     ": %s)\n",
                     rd ? aaax_strerror (rc) : err, vf.records, vf.first_bad,
                     vf.why);
            fail = true;
        }
        hal_audit_reader_close (&rd);
    }
done:
    hal_audit_close (&au);
    hal_keys_destroy (&keys);
    chan_buf_fini (&args);
    return fail ? 0 : rate;
}

static void
s_workload_gate (s_bench_t *b)
{
    uint64_t n = b->o.decisions;
    printf ("\n== gate decisions in-process: gate_core_decide, %u-rule and "
            "%u-rule policies, %" PRIu64 " decisions each (alternating in 4 "
            "rounds), a stream of %u triples ==\n",
            S_GATE_RULES, S_GATE_SMALL, n, S_GATE_STREAM);
    fflush (stdout);
    s_gdec_t big, small;
    bool fail = s_gdec_setup (&big, S_GATE_RULES) != 0;
    fail = s_gdec_setup (&small, S_GATE_SMALL) != 0 || fail;
    if (!fail) {
        /*  Warm-up: one pass over each stream, not counted. */
        s_gdec_run (&small, S_GATE_STREAM);
        s_gdec_run (&big, S_GATE_STREAM);
        small.done = big.done = 0;
        small.ns = big.ns = 0;
        memset (small.counts, 0, sizeof small.counts);
        memset (big.counts, 0, sizeof big.counts);
        for (int round = 0; round < 4 && !s_interrupted; round++) {
            uint64_t per = n / 4 + (round == 3 ? n % 4 : 0);
            s_gdec_run (&small, per);
            s_gdec_run (&big, per);
        }
        fail = s_interrupted != 0;
    }
    double rb = fail ? 0 : s_gdec_rate (&big);
    double rs = fail ? 0 : s_gdec_rate (&small);
    const s_gdec_t *gs[2] = { &big, &small };
    double rates[2] = { rb, rs };
    for (int i = 0; i < 2; i++) {
        printf ("  %4zu rules: %s%10.0f decisions/s  %7.1f ns/decision  "
                "(%" PRIu64 " decisions)\n",
                gs[i]->rules, fail ? "FAILED " : "", rates[i],
                rates[i] > 0 ? 1e9 / rates[i] : 0.0, gs[i]->done);
        s_print_mix (gs[i]->counts, gs[i]->done);
    }
    double ratio = rs > 0 ? rb / rs : 0;
    printf ("  ratio 1000-rule / 10-rule: %.3f\n", ratio);
    s_result_t *r = s_result_add (b, "gate_decide", "gate decide 1k (dec/s)");
    if (r) {
        r->aaax = rb;
        r->base = rs;
        snprintf (r->base_note, sizeof r->base_note, "%u-rule policy",
                  S_GATE_SMALL);
        r->ratio = ratio;
        r->ok = !fail;
        char extra[200];
        snprintf (extra, sizeof extra,
                  "\"rules\":%u,\"ns_per_decision\":%.1f,"
                  "\"base_rules\":%u,\"base_ns_per_decision\":%.1f",
                  S_GATE_RULES, rb > 0 ? 1e9 / rb : 0.0, S_GATE_SMALL,
                  rs > 0 ? 1e9 / rs : 0.0);
        s_summary (b, r, "decisions/s", n, 0, extra);
    }

    uint64_t na = b->o.audit_records;
    printf ("\n== gate decision + audit record: %" PRIu64 " decisions of the "
            "%u-rule policy, each appended to a hal_audit journal in the "
            "temp dir, waiting for each batch of %u (as the gate actor) ==\n",
            na, S_GATE_RULES, S_GATE_BATCH);
    fflush (stdout);
    hal_audit_stats_t st;
    memset (&st, 0, sizeof st);
    double ra = fail ? 0 : s_gate_audit (b, &big, na, &st);
    bool afail = fail || ra <= 0;
    double ms_commit = ra > 0 && st.commits
                           ? (double) na * 1e3 / ra / (double) st.commits
                           : 0.0;
    printf ("  %srecords/s %10.0f  %7.1f us/record; %" PRIu64 " commits, "
            "%.1f records/commit, %.2f ms/commit; journal verified: %s\n",
            afail ? "FAILED " : "", ra, ra > 0 ? 1e6 / ra : 0.0, st.commits,
            st.commits ? (double) st.records / (double) st.commits : 0.0,
            ms_commit, afail ? "no" : "yes");
    r = s_result_add (b, "gate_audit", "gate+audit (records/s)");
    if (r) {
        r->aaax = ra;
        r->base = rb;
        snprintf (r->base_note, sizeof r->base_note, "decide only, 1k");
        r->ratio = rb > 0 ? ra / rb : 0;
        r->ok = !afail;
        char extra[160];
        snprintf (extra, sizeof extra,
                  "\"batch\":%u,\"commits\":%" PRIu64
                  ",\"records_per_commit\":%.1f,\"ms_per_commit\":%.2f",
                  S_GATE_BATCH, st.commits,
                  st.commits ? (double) st.records / (double) st.commits : 0.0,
                  ms_commit);
        s_summary (b, r, "records/s", na, afail ? 1 : 0, extra);
    }
    s_gdec_fini (&big);
    s_gdec_fini (&small);
    if (fail || afail)
        b->failed = true;
}

/*  The tcp side: S_GATE_SYSTEM WRITEs {action, target, args} to
    kernel.gate, one in flight; a sample ends when the answer arrives in
    its mailbox. The answer is ACKed (pipelined) and its corr checked
    against the WRITE's id. */
typedef struct {
    s_bench_t *b;
    s_cli_t c;
    s_cli_t *idle; /* another client kept docked meanwhile (PINGs) */
    s_triple_t *stream;
    uint32_t total, next, warmup, pnext;
    uint64_t write_ok, ack_ok, ack_bad, errs, mismatched, noaudit;
    uint64_t counts[3]; /* allow, ask, deny */
    int64_t deadline_us;
    bool fail;
} s_grtt_t;

/*  The answer's envelope id and corr, and its decision. 0 or -1. */
static int
s_gate_answer (s_cli_t *c, s_env_t *e, int *decision, bool *audit)
{
    *decision = -1;
    *audit = false;
    if (s_cli_msg_env (c, e) != 0)
        return -1;
    size_t len;
    const void *body = s_cli_body (c, &len);
    chan_mpk_reader_t r;
    chan_mpk_obj_t o, k, v;
    chan_mpk_reader_init (&r, body, len);
    if (!s_mpk_find (&r, "msg") || !s_mpk_find (&r, "data")
        || chan_mpk_next (&r, &o) != 0 || o.type != CHAN_MPK_MAP)
        return -1;
    for (uint32_t i = 0; i < o.v.n; i++) {
        if (chan_mpk_next (&r, &k) != 0 || k.type != CHAN_MPK_STR)
            return -1;
        if (s_keyis (&k, "decision")) {
            if (chan_mpk_next (&r, &v) != 0 || v.type != CHAN_MPK_STR)
                return -1;
            *decision = v.len == 5 && memcmp (v.ptr, "allow", 5) == 0  ? 0
                        : v.len == 3 && memcmp (v.ptr, "ask", 3) == 0  ? 1
                        : v.len == 4 && memcmp (v.ptr, "deny", 4) == 0 ? 2
                                                                       : -1;
        } else if (s_keyis (&k, "audit_id")) {
            if (chan_mpk_next (&r, &v) != 0)
                return -1;
            *audit = v.type == CHAN_MPK_STR && v.len > 0;
        } else if (chan_mpk_skip (&r, AAAX_MAX_DEPTH) != 0)
            return -1;
    }
    return *decision >= 0 ? 0 : -1;
}

/*  An OK to a gate WRITE (its id into wid) or to an ACK (counted). */
static void
s_grtt_ok (s_grtt_t *g, uint64_t want, char *wid, size_t widsize)
{
    size_t len;
    const void *body = s_cli_body (&g->c, &len);
    uint64_t req = 0, acked;
    const char *id;
    uint32_t idlen;
    s_body_uint (body, len, "req", &req);
    if (wid && req == want && s_body_str (body, len, "id", &id, &idlen)
        && idlen < widsize) {
        memcpy (wid, id, idlen);
        wid[idlen] = 0;
        g->write_ok++;
    } else if (req >= S_GACK_BASE && req < S_GACK_BASE + g->total
               && s_body_uint (body, len, "acked", &acked)) {
        if (acked == 1)
            g->ack_ok++;
        else
            g->ack_bad++;
    }
}

/*  True (and failed) when interrupted or past the block's time limit;
    keeps g->idle docked meanwhile. */
static bool
s_grtt_over (s_grtt_t *g)
{
    int64_t now = hal_clock_mono_us ();
    if (s_interrupted || now > g->deadline_us) {
        if (!s_interrupted)
            fprintf (stderr, "bench: gate: no answer within %d s\n",
                     g->b->o.limit_s);
        g->fail = true;
        return true;
    }
    if (g->idle && g->idle->open)
        s_cli_keepalive (g->idle, now);
    return false;
}

/*  Up to count more gate round trips, then waits for the ACKs' OKs. */
static int
s_grtt_block (s_grtt_t *g, uint32_t count, double *us, size_t *nus)
{
    s_cli_t *c = &g->c;
    g->deadline_us = hal_clock_mono_us () + (int64_t) g->b->o.limit_s * 1000000;
    uint32_t end = g->total - g->next < count ? g->total : g->next + count;
    for (; g->next < end && !g->fail; g->next++) {
        uint32_t i = g->next;
        const s_triple_t *t = &g->stream[i % S_GATE_STREAM];
        uint64_t want = S_GATE_BASE + i;
        c->next_req = want;
        msgpack_packer *pk = s_cli_begin (c, 2, NULL);
        chan_pack_cstr (pk, "chan");
        chan_pack_cstr (pk, "kernel.gate");
        chan_pack_cstr (pk, "data");
        msgpack_pack_map (pk, 3);
        chan_pack_cstr (pk, "action");
        chan_pack_cstr (pk, t->action);
        chan_pack_cstr (pk, "target");
        chan_pack_cstr (pk, t->target);
        chan_pack_cstr (pk, "args");
        msgpack_pack_map (pk, 1);
        chan_pack_cstr (pk, "n");
        msgpack_pack_uint32 (pk, i);
        char wid[40] = "", corr[40] = "";
        bool answered = false;
        int64_t ts = s_now_ns ();
        if (s_cli_send (c, "WRITE") != 0) {
            g->fail = true;
            break;
        }
        /*  One request in flight: its answer and its WRITE's OK. */
        while ((!answered || !wid[0]) && !s_grtt_over (g)) {
            s_kind_t kind;
            int got = s_cli_recv (c, 100, &kind);
            if (got < 0) {
                g->fail = true;
                break;
            }
            if (got == 0)
                continue;
            int64_t tr = s_now_ns ();
            if (kind == IN_MSG) {
                s_env_t e;
                int dec;
                bool audit;
                if (s_gate_answer (c, &e, &dec, &audit) != 0 || !e.id || !e.corr
                    || e.corrlen >= sizeof corr || answered) {
                    if (g->errs++ < 5)
                        fprintf (stderr, "bench: gate: unexpected message "
                                         "in the mailbox\n");
                } else {
                    answered = true;
                    memcpy (corr, e.corr, e.corrlen);
                    corr[e.corrlen] = 0;
                    g->counts[dec]++;
                    if (!audit)
                        g->noaudit++;
                    if (i >= g->warmup)
                        us[(*nus)++] = (double) (tr - ts) / 1000.0;
                }
                if (e.id) {
                    c->next_req = S_GACK_BASE + i;
                    pk = s_cli_begin (c, 2, NULL);
                    chan_pack_cstr (pk, "chan");
                    chan_pack_cstr (pk, "@" S_GATE_SYSTEM);
                    chan_pack_cstr (pk, "ids");
                    msgpack_pack_array (pk, 1);
                    chan_pack_str (pk, e.id, e.idlen);
                    if (s_cli_send (c, "ACK") != 0)
                        g->fail = true;
                }
            } else if (kind == IN_OK)
                s_grtt_ok (g, want, wid, sizeof wid);
            else if (kind == IN_ERROR) {
                char why[300];
                size_t len;
                uint64_t req = 0;
                const void *body = s_cli_body (c, &len);
                s_body_uint (body, len, "req", &req);
                if (g->errs++ < 5)
                    fprintf (stderr, "bench: gate: %s\n",
                             s_cli_error (c, why, sizeof why));
                if (req == want)
                    g->fail = true;
            }
        }
        if (!g->fail && strcmp (wid, corr) != 0)
            g->mismatched++;
    }
    int64_t until = hal_clock_mono_ms () + 5000;
    while (!g->fail && g->ack_ok + g->ack_bad < g->next
           && hal_clock_mono_ms () < until && !s_interrupted) {
        s_kind_t kind;
        int got = s_cli_recv (c, 100, &kind);
        if (got < 0)
            g->fail = true;
        else if (got == 1 && kind == IN_OK)
            s_grtt_ok (g, 0, NULL, 0);
        else if (got == 1)
            g->errs++;
    }
    return g->fail ? -1 : 0;
}

/*  Up to count more PING -> PONG round trips on the same connection. */
static int
s_gping_block (s_grtt_t *g, uint32_t count, double *us, size_t *nus)
{
    s_cli_t *c = &g->c;
    g->deadline_us = hal_clock_mono_us () + (int64_t) g->b->o.limit_s * 1000000;
    uint32_t end = g->total - g->pnext < count ? g->total : g->pnext + count;
    for (; g->pnext < end && !g->fail; g->pnext++) {
        c->next_req = S_GPING_BASE + g->pnext;
        int64_t ts = s_now_ns ();
        if (s_cli_ping (c) != 0) {
            g->fail = true;
            break;
        }
        bool pong = false;
        while (!pong && !s_grtt_over (g)) {
            s_kind_t kind;
            int got = s_cli_recv (c, 100, &kind);
            if (got < 0)
                g->fail = true;
            if (got <= 0)
                continue;
            if (kind == IN_PONG) {
                pong = true;
                if (g->pnext >= g->warmup)
                    us[(*nus)++] = (double) (s_now_ns () - ts) / 1000.0;
            } else if (kind == IN_OK)
                s_grtt_ok (g, 0, NULL, 0);
            else
                g->errs++;
        }
    }
    return g->fail ? -1 : 0;
}

static void
s_workload_gate_rtt (s_bench_t *b)
{
    uint32_t warm = b->o.gate_samples / 10 > 200 ? b->o.gate_samples / 10 : 200;
    uint32_t total = warm + b->o.gate_samples;
    uint32_t blk = b->o.rtt_block ? b->o.rtt_block : total;
    printf ("\n== gate round trip over tcp: WRITE kernel.gate {action, target, "
            "args} -> answer MSG in @%s, one in flight, %u-rule policy, %u "
            "samples after %u warm-up; gate, mailbox round trip and PING "
            "alternate in blocks of %u ==\n",
            S_GATE_SYSTEM, S_GATE_RULES, b->o.gate_samples, warm, blk);
    fflush (stdout);
    double *ug = (double *) calloc (total, sizeof (double));
    double *um = (double *) calloc (total, sizeof (double));
    double *up = (double *) calloc (total, sizeof (double));
    s_grtt_t *g = (s_grtt_t *) calloc (1, sizeof *g);
    s_rtta_t *a = (s_rtta_t *) calloc (1, sizeof *a);
    size_t ng = 0, nm = 0, np = 0;
    bool fail_g = !ug || !up || !g, fail_a = !um || !a;
    bool gopen = false;
    if (!fail_g) {
        g->b = b;
        g->total = total;
        g->warmup = warm;
        g->stream = (s_triple_t *) calloc (S_GATE_STREAM, sizeof *g->stream);
        if (!g->stream
            || s_cli_open (&g->c, b->cmd_ep, S_GATE_SYSTEM, NULL, 0, NULL)
                   != 0) {
            fprintf (stderr, "bench: gate: setup failed\n");
            fail_g = true;
        } else {
            gopen = true;
            s_gate_stream (S_GATE_RULES, g->stream, 0x5DEECE66DULL);
            g->deadline_us =
                hal_clock_mono_us () + (int64_t) b->o.limit_s * 1000000;
        }
    }
    if (!fail_a && s_rtta_setup (b, a, warm, b->o.gate_samples) != 0)
        fail_a = true;
    if (!fail_g && !fail_a)
        g->idle = &a->c; /* bench.ping idles through the gate blocks */
    while (!fail_g && !fail_a
           && (g->next < total || a->next < total || g->pnext < total)) {
        if (s_grtt_block (g, blk, ug, &ng) != 0)
            fail_g = true;
        /*  The limit is per block here: gate blocks are slow. */
        atomic_store (&a->sh.deadline_us,
                      hal_clock_mono_us () + (int64_t) b->o.limit_s * 1000000);
        if (!fail_g && s_rtta_block (a, blk, um, &nm) != 0)
            fail_a = true;
        if (!fail_g && !fail_a && s_gping_block (g, blk, up, &np) != 0)
            fail_g = true;
    }
    if (a && s_rtta_finish (a, !fail_a) != 0)
        fail_a = true;
    if (g && !fail_g
        && (g->next != total || g->pnext != total || g->write_ok != total
            || g->ack_ok != total || g->ack_bad || g->errs || g->mismatched
            || g->noaudit)) {
        fprintf (stderr,
                 "bench: gate: %u/%u answered, WRITE ok %" PRIu64
                 ", ACK ok %" PRIu64 " (bad %" PRIu64 "), errors %" PRIu64
                 ", corr != id %" PRIu64 ", without audit_id %" PRIu64 "\n",
                 g->next, total, g->write_ok, g->ack_ok, g->ack_bad, g->errs,
                 g->mismatched, g->noaudit);
        fail_g = true;
    }
    if (gopen)
        s_cli_close (&g->c, true);

    s_lat_t lg, lm, lp;
    s_lat_of (ug, ng, &lg);
    s_lat_of (um, nm, &lm);
    s_lat_of (up, np, &lp);
    printf ("  gate:    %sp50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  mean "
            "%8.1f us  (%zu samples: %" PRIu64 " allow, %" PRIu64
            " ask, %" PRIu64 " deny)\n",
            fail_g ? "FAILED " : "", lg.p50, lg.p99, lg.p999, lg.mean, ng,
            g ? g->counts[0] : 0, g ? g->counts[1] : 0, g ? g->counts[2] : 0);
    printf ("  mailbox: %sp50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  mean "
            "%8.1f us  (%zu samples; SEND -> echo SEND(corr) -> MSG)\n",
            fail_a ? "FAILED " : "", lm.p50, lm.p99, lm.p999, lm.mean, nm);
    printf ("  PING:    %sp50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  mean "
            "%8.1f us  (%zu samples; PING -> PONG)\n",
            fail_g ? "FAILED " : "", lp.p50, lp.p99, lp.p999, lp.mean, np);
    double ratio = lm.p50 > 0 ? lg.p50 / lm.p50 : 0;
    printf ("  ratio gate/mailbox: p50 %.2f  p99 %.2f;  gate/PING p50 %.2f\n",
            ratio, lm.p99 > 0 ? lg.p99 / lm.p99 : 0,
            lp.p50 > 0 ? lg.p50 / lp.p50 : 0);

    bool ok = !fail_g && !fail_a;
    s_result_t *res = s_result_add (b, "gate_rtt_p50", "gate RTT p50 (us)");
    if (res) {
        res->aaax = lg.p50;
        res->base = lm.p50;
        snprintf (res->base_note, sizeof res->base_note, "mailbox RTT");
        res->ratio = ratio;
        res->ok = ok;
        char extra[320];
        snprintf (extra, sizeof extra,
                  "\"rules\":%u,\"gate_p99\":%.1f,\"gate_p999\":%.1f,"
                  "\"mailbox_p99\":%.1f,\"mailbox_p999\":%.1f,"
                  "\"ping_p50\":%.1f,\"ping_p99\":%.1f,\"samples\":%u",
                  S_GATE_RULES, lg.p99, lg.p999, lm.p99, lm.p999, lp.p50,
                  lp.p99, b->o.gate_samples);
        s_summary (b, res, "us", total, ok ? 0 : 1, extra);
    }
    res = s_result_add (b, "gate_rtt_p99", "gate RTT p99 (us)");
    if (res) {
        res->aaax = lg.p99;
        res->base = lm.p99;
        snprintf (res->base_note, sizeof res->base_note, "mailbox RTT");
        res->ratio = lm.p99 > 0 ? lg.p99 / lm.p99 : 0;
        res->ok = ok;
    }
    if (!ok)
        b->failed = true;
    if (g)
        free (g->stream);
    free (g);
    free (a);
    free (ug);
    free (um);
    free (up);
}

/*  ---- the kernel under test -------------------------------------------- */

/*  The config: the bench's channels, and the 1000-rule policy of
    s_gate_rule (its first rules let bench.* systems use them). */
static int
s_write_config (s_bench_t *b)
{
    FILE *f = fopen (b->cfg, "w");
    if (!f)
        return -1;
    fprintf (f,
             "-- written by aaax_bench for one run\n"
             "return {\n"
             "  heartbeat_ms = 1000,\n"
             "  sndhwm = 100000,\n"
             "  channels = {\n"
             "    { name = \"%s\", kind = \"broadcast\", visibility = "
             "\"private\", retain = 0 },\n"
             "    { name = \"%s\", kind = \"work-queue\", durable = true, "
             "max_len = 10000000, max_attempts = 5 },\n"
             "  },\n"
             "  policy = {\n",
             S_CHAN_B, S_CHAN_Q);
    for (size_t i = 0; i < S_GATE_RULES; i++) {
        s_grule_t r;
        s_gate_rule (S_GATE_RULES, i, &r);
        fprintf (f,
                 "    { subject = \"%s\", action = \"%s\", target = \"%s\", "
                 "effect = \"%s\"",
                 r.subject, r.action, r.target, r.effect);
        if (r.rate)
            fprintf (f, ", rate = \"%s\"", r.rate);
        fprintf (f, ", name = \"%s\" },\n", r.name);
    }
    fprintf (f, "  },\n}\n");
    return fclose (f) == 0 ? 0 : -1;
}

/*  The config of an app workload's kernel: no app at boot, one app host
    worker, the broadcast channel bench.b for bench.* systems (the C
    subscriber, the publishers and bench/apps/bsink), mailboxes long enough
    for every message of a run. */
static int
s_write_app_config (s_bench_t *b)
{
    FILE *f = fopen (b->cfg, "w");
    if (!f)
        return -1;
    fprintf (f,
             "-- written by aaax_bench for one app workload\n"
             "return {\n"
             "  heartbeat_ms = 1000,\n"
             "  sndhwm = 100000,\n"
             "  mailbox_max_len = 10000000,\n"
             "  app_workers = 1,\n"
             "  apps = {},\n"
             "  channels = {\n"
             "    { name = \"%s\", kind = \"broadcast\", visibility = "
             "\"private\", retain = 0 },\n"
             "  },\n"
             "  policy = {\n"
             "    { subject = \"bench.*\", action = \"chan.read\", target = "
             "\"%s\", effect = \"allow\" },\n"
             "    { subject = \"bench.*\", action = \"chan.write\", target = "
             "\"%s\", effect = \"allow\" },\n"
             "  },\n"
             "}\n",
             S_CHAN_B, S_CHAN_B, S_CHAN_B);
    return fclose (f) == 0 ? 0 : -1;
}

static void
s_log_tail (const s_bench_t *b)
{
    FILE *f = fopen (b->log, "r");
    if (!f)
        return;
    char lines[20][512];
    int n = 0;
    while (fgets (lines[n % 20], sizeof lines[0], f))
        n++;
    fclose (f);
    fprintf (stderr, "bench: last lines of the aaaxd log (%s):\n", b->log);
    for (int i = n > 20 ? n - 20 : 0; i < n; i++)
        fprintf (stderr, "  | %s", lines[i % 20]);
}

/*  Starts aaaxd and waits until it answers PING. 0 or -1. */
static int
s_kernel_start (s_bench_t *b)
{
    int port = peer_free_port ();
    if (port < 0
        || (b->app_cfg ? s_write_app_config (b) : s_write_config (b)) != 0) {
        fprintf (stderr, "bench: cannot prepare %s\n", b->cfg);
        return -1;
    }
    snprintf (b->cmd_ep, sizeof b->cmd_ep, "tcp://127.0.0.1:%d", port);
    snprintf (b->ipc_ep, sizeof b->ipc_ep, "ipc://%s/aaax.sock", b->data);
    fflush (NULL);
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGTERM);
        int fd = open (b->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2 (fd, 1);
            dup2 (fd, 2);
            close (fd);
        }
        if (b->curve_mode)
            execl (b->aaaxd, "aaaxd", "--data", b->data, "--bind", b->cmd_ep,
                   "--tap", "", "--config", b->cfg, "--curve", b->curve_mode,
                   (char *) NULL);
        else
            execl (b->aaaxd, "aaaxd", "--data", b->data, "--bind", b->cmd_ep,
                   "--tap", "", "--config", b->cfg, (char *) NULL);
        _exit (127);
    }
    b->pid = pid;
    int64_t until = hal_clock_mono_ms () + 15000;
    while (hal_clock_mono_ms () < until && !s_interrupted) {
        int status;
        if (waitpid (pid, &status, WNOHANG) == pid) {
            b->pid = 0;
            fprintf (stderr, "bench: %s exited at start (status %d)\n",
                     b->aaaxd, WIFEXITED (status) ? WEXITSTATUS (status) : -1);
            s_log_tail (b);
            return -1;
        }
        /*  A plaintext client gets no answer on a CURVE endpoint: then
            ask over ipc, which stays plain. */
        chan_client_t *cc =
            chan_client_new (b->curve_mode ? b->ipc_ep : b->cmd_ep, 200);
        if (cc) {
            chan_reply_t r;
            memset (&r, 0, sizeof r);
            int rc = chan_client_call (cc, "PING", NULL, &r);
            bool pong = rc == 0 && strcmp (r.cmd, "PONG") == 0;
            chan_reply_fini (&r);
            chan_client_destroy (&cc);
            if (pong)
                return 0;
        }
        s_sleep_ms (50);
    }
    fprintf (stderr, "bench: %s does not answer on %s\n", b->aaaxd, b->cmd_ep);
    s_log_tail (b);
    return -1;
}

/*  SIGTERM, then waits (10 s) for exit status 0. 0 or -1. */
static int
s_kernel_stop (s_bench_t *b)
{
    if (b->pid <= 0)
        return -1;
    kill (b->pid, SIGTERM);
    int64_t until = hal_clock_mono_ms () + 10000;
    int status = 0;
    while (waitpid (b->pid, &status, WNOHANG) == 0) {
        if (hal_clock_mono_ms () > until) {
            fprintf (stderr, "bench: aaaxd did not stop within 10 s of "
                             "SIGTERM; killing it\n");
            kill (b->pid, SIGKILL);
            waitpid (b->pid, &status, 0);
            b->pid = 0;
            s_log_tail (b);
            return -1;
        }
        s_sleep_ms (10);
    }
    b->pid = 0;
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
        fprintf (stderr, "bench: aaaxd exited with %s %d after SIGTERM\n",
                 WIFEXITED (status) ? "status" : "signal",
                 WIFEXITED (status) ? WEXITSTATUS (status) : WTERMSIG (status));
        s_log_tail (b);
        return -1;
    }
    return 0;
}

static int
s_rm_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove (path) == 0 || errno == ENOENT ? 0 : -1;
}

/*  ---- workloads 7-9: the Lua app host --------------------------------------
    Each starts its own aaaxd (a data dir, config and log of its own in the
    temp dir) whose config loads no app at boot (apps = {}) and runs one app
    host worker (app_workers = 1). The bench asks the loader (kernel.loader,
    privileged, over ipc) as `aaax app` does. */

#define S_APP_SINK "bench.sink"   /* bench/apps/sink: an empty message() */
#define S_APP_BSINK "bench.bsink" /* bench/apps/bsink: same, on bench.b */
#define S_CSINK "bench.csink"     /* the C consumer of the same messages */
#define S_APP_POLL_MS 5           /* loader list polls while measuring */
#define S_APP_ACK_MAX 256         /* C consumer: ids per ACK, as the runtime */
#define S_APP_REQ_MS 120000       /* wait for one loader answer */
#define S_APP_SETTLE_MS 1000      /* before reading VmRSS */
#define S_MAX_TASKS 256           /* aaaxd threads looked at */

/*  The kernel of an app workload: its own paths in the temp dir. */
static void
s_app_paths (s_bench_t *b, const char *name)
{
    snprintf (b->data, sizeof b->data, "%.4000s/%s-data", b->tmp, name);
    snprintf (b->cfg, sizeof b->cfg, "%.4000s/%s.lua", b->tmp, name);
    snprintf (b->log, sizeof b->log, "%.4000s/%s.log", b->tmp, name);
}

static int s_kernel_start (s_bench_t *b);
static int s_kernel_stop (s_bench_t *b);

static int
s_app_kernel_start (s_bench_t *b, const char *name)
{
    s_app_paths (b, name);
    b->app_cfg = true;
    int rc = s_kernel_start (b);
    b->app_cfg = false;
    if (rc == 0)
        printf ("aaaxd (%s): pid %d, command %s, data %s\n", name, (int) b->pid,
                b->cmd_ep, b->data);
    return rc;
}

static void
s_app_kernel_stop (s_bench_t *b)
{
    if (s_kernel_stop (b) != 0)
        b->failed = true;
}

/*  ---- /proc: the kernel's memory and CPU ---- */

/*  A field of /proc/PID/status in KiB ("VmRSS"), or 0. */
static uint64_t
s_proc_kb (pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return 0;
    size_t n = strlen (field);
    uint64_t kb = 0;
    while (fgets (line, sizeof line, f))
        if (strncmp (line, field, n) == 0 && line[n] == ':') {
            kb = strtoull (line + n + 1, NULL, 10);
            break;
        }
    fclose (f);
    return kb;
}

typedef struct {
    int tid;
    char comm[20];
    uint64_t ns; /* time on a CPU (schedstat), else ticks converted */
} s_task_t;

typedef struct {
    uint64_t ticks; /* utime + stime of the process, /proc/PID/stat */
    size_t n;
    s_task_t t[S_MAX_TASKS];
} s_cpu_t;

/*  utime + stime (fields 14, 15) of a stat file, in clock ticks. */
static uint64_t
s_stat_ticks (const char *path)
{
    char buf[1024];
    FILE *f = fopen (path, "r");
    if (!f)
        return 0;
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    buf[n] = 0;
    char *p = strrchr (buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p
        || sscanf (p + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                   &ut, &st)
               != 2)
        return 0;
    return ut + st;
}

static void
s_cpu_snap (pid_t pid, s_cpu_t *c)
{
    memset (c, 0, sizeof *c);
    char path[128];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    c->ticks = s_stat_ticks (path);
    snprintf (path, sizeof path, "/proc/%d/task", (int) pid);
    DIR *d = opendir (path);
    if (!d)
        return;
    long hz = sysconf (_SC_CLK_TCK);
    struct dirent *e;
    while ((e = readdir (d)) && c->n < S_MAX_TASKS) {
        int tid = atoi (e->d_name);
        if (tid <= 0)
            continue;
        s_task_t *t = &c->t[c->n];
        t->tid = tid;
        char p[192];
        snprintf (p, sizeof p, "/proc/%d/task/%d/comm", (int) pid, tid);
        FILE *f = fopen (p, "r");
        if (f) {
            if (fgets (t->comm, sizeof t->comm, f))
                t->comm[strcspn (t->comm, "\n")] = 0;
            fclose (f);
        }
        snprintf (p, sizeof p, "/proc/%d/task/%d/schedstat", (int) pid, tid);
        unsigned long long ns = 0;
        f = fopen (p, "r");
        if (f) {
            if (fscanf (f, "%llu", &ns) != 1)
                ns = 0;
            fclose (f);
        }
        if (!ns) {
            snprintf (p, sizeof p, "/proc/%d/task/%d/stat", (int) pid, tid);
            ns = s_stat_ticks (p) * (1000000000ULL / (hz > 0 ? hz : 100));
        }
        t->ns = ns;
        c->n++;
    }
    closedir (d);
}

/*  A thread's CPU seconds between two snapshots (0 if it is not in both). */
static double
s_cpu_tid (const s_cpu_t *a, const s_cpu_t *b, int tid)
{
    uint64_t x = 0, y = 0;
    bool ina = false, inb = false;
    for (size_t i = 0; i < a->n; i++)
        if (a->t[i].tid == tid) {
            x = a->t[i].ns;
            ina = true;
        }
    for (size_t i = 0; i < b->n; i++)
        if (b->t[i].tid == tid) {
            y = b->t[i].ns;
            inb = true;
        }
    return ina && inb && y >= x ? (double) (y - x) / 1e9 : 0;
}

/*  The process's CPU seconds (utime + stime) between two snapshots. */
static double
s_cpu_proc (const s_cpu_t *a, const s_cpu_t *b)
{
    long hz = sysconf (_SC_CLK_TCK);
    return b->ticks >= a->ticks
               ? (double) (b->ticks - a->ticks) / (double) (hz > 0 ? hz : 100)
               : 0;
}

/*  ---- asking the loader ---- */

typedef struct {
    chan_client_t *cc;
    cli_kernel_t k;
    bool open;
} s_admin_t;

/*  Docks privileged over ipc (the token of the data dir). 0 or -1. */
static int
s_admin_open (s_bench_t *b, s_admin_t *a, const char *system)
{
    char token[65];
    memset (a, 0, sizeof *a);
    if (chan_client_read_token (b->data, token) != 0) {
        fprintf (stderr, "bench: cannot read %s/session.token\n", b->data);
        return -1;
    }
    a->cc = chan_client_new (b->ipc_ep, 10000);
    if (!a->cc) {
        fprintf (stderr, "bench: cannot connect to %s\n", b->ipc_ep);
        return -1;
    }
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    int rc = chan_client_hello (a->cc, system, token, true, NULL, 0, &r);
    if (rc != 0) {
        char why[256] = "";
        if (r.raw)
            chan_reply_reason (&r, why, sizeof why);
        fprintf (stderr, "bench: privileged HELLO as %s failed: %s %s\n",
                 system, aaax_strerror (rc), why);
        chan_reply_fini (&r);
        chan_client_destroy (&a->cc);
        return -1;
    }
    chan_reply_fini (&r);
    cli_kernel_init (&a->k, a->cc, system);
    a->k.stop = &s_interrupted;
    a->open = true;
    return 0;
}

/*  A PING: a session idle for longer than the heartbeat allows is
    undocked. */
static void
s_admin_ping (s_admin_t *a)
{
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    if (chan_client_call (a->cc, "PING", NULL, &r) == 0)
        chan_reply_fini (&r);
}

static void
s_admin_close (s_admin_t *a)
{
    if (!a->open)
        return;
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    if (chan_client_call (a->cc, "BYE", NULL, &r) == 0)
        chan_reply_fini (&r);
    chan_client_destroy (&a->cc);
    a->open = false;
}

/*  {op: "load", path} or {op: "load", paths: [...]} (npaths > 1), or
    {op: "list"} (npaths 0), packed into sb. */
static void
s_loader_pack (msgpack_sbuffer *sb, const char *op, char **paths, size_t npaths)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, npaths ? 2 : 1);
    chan_pack_cstr (&pk, "op");
    chan_pack_cstr (&pk, op);
    if (npaths == 1) {
        chan_pack_cstr (&pk, "path");
        chan_pack_cstr (&pk, paths[0]);
    } else if (npaths > 1) {
        chan_pack_cstr (&pk, "paths");
        msgpack_pack_array (&pk, npaths);
        for (size_t i = 0; i < npaths; i++)
            chan_pack_cstr (&pk, paths[i]);
    }
}

/*  Whether a loader answer says ok; its reason into why otherwise. */
static bool
s_loader_ok (const msgpack_object *data, char *why, size_t size)
{
    const msgpack_object *ok = data ? chan_obj_get (data, "ok") : NULL;
    if (ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean)
        return true;
    const char *r = "no ok in the answer";
    size_t len = strlen (r);
    if (data)
        chan_obj_get_str (data, "reason", &r, &len);
    snprintf (why, size, "%.*s", (int) len, r);
    return false;
}

/*  One loader request and its answer. 0 with the answer's data in rep
    (caller finis it), or -1 with a message on stderr. */
static int
s_loader_call (s_admin_t *a, const char *op, char **paths, size_t npaths,
               cli_kernel_reply_t *rep)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    s_loader_pack (&sb, op, paths, npaths);
    int rc = cli_kernel_request (&a->k, "kernel.loader", sb.data, sb.size,
                                 S_APP_REQ_MS, rep);
    msgpack_sbuffer_destroy (&sb);
    if (rc != 0) {
        fprintf (stderr, "bench: kernel.loader %s: %s\n", op, a->k.err);
        return -1;
    }
    return 0;
}

/*  What "list" says. */
typedef struct {
    size_t n, running;
    uint64_t mem_sum, mem_min, mem_max;
    bool found;       /* the module named */
    uint64_t handled; /* ... its handled count */
    char state[16];   /* ... its state */
} s_list_t;

static int
s_loader_list (s_admin_t *a, const char *name, s_list_t *out)
{
    memset (out, 0, sizeof *out);
    out->mem_min = UINT64_MAX;
    cli_kernel_reply_t rep;
    if (s_loader_call (a, "list", NULL, 0, &rep) != 0)
        return -1;
    char why[300];
    const msgpack_object *mods = s_loader_ok (rep.data, why, sizeof why)
                                     ? chan_obj_get (rep.data, "modules")
                                     : NULL;
    if (!mods || mods->type != MSGPACK_OBJECT_ARRAY) {
        fprintf (stderr, "bench: kernel.loader list: %s\n",
                 mods ? "no modules" : why);
        cli_kernel_reply_fini (&rep);
        return -1;
    }
    for (uint32_t i = 0; i < mods->via.array.size; i++) {
        const msgpack_object *m = &mods->via.array.ptr[i];
        const char *nm, *st;
        size_t nlen, slen;
        uint64_t mem = 0, handled = 0;
        chan_obj_get_uint (m, "memory", &mem);
        chan_obj_get_uint (m, "handled", &handled);
        bool has_st = chan_obj_get_str (m, "state", &st, &slen);
        out->n++;
        if (has_st && slen == 7 && memcmp (st, "running", 7) == 0)
            out->running++;
        out->mem_sum += mem;
        if (mem < out->mem_min)
            out->mem_min = mem;
        if (mem > out->mem_max)
            out->mem_max = mem;
        if (name && chan_obj_get_str (m, "name", &nm, &nlen)
            && nlen == strlen (name) && memcmp (nm, name, nlen) == 0) {
            out->found = true;
            out->handled = handled;
            if (has_st)
                snprintf (out->state, sizeof out->state, "%.*s", (int) slen,
                          st);
        }
    }
    if (!out->n)
        out->mem_min = 0;
    cli_kernel_reply_fini (&rep);
    return 0;
}

/*  Loads one app directory (on a connection of its own); -1 with the
    reason on stderr. */
static int
s_app_load (s_bench_t *b, const char *dir)
{
    s_admin_t a;
    if (s_admin_open (b, &a, "bench.apps") != 0)
        return -1;
    char *paths[1] = { (char *) dir };
    cli_kernel_reply_t rep;
    bool ok = false;
    if (s_loader_call (&a, "load", paths, 1, &rep) == 0) {
        char why[600];
        ok = s_loader_ok (rep.data, why, sizeof why);
        if (!ok)
            fprintf (stderr, "bench: load %s refused: %s\n", dir, why);
        cli_kernel_reply_fini (&rep);
    }
    s_admin_close (&a);
    return ok ? 0 : -1;
}

/*  Polls the loader's list for an app's handled count while a run goes on,
    on a connection of its own. */
typedef struct {
    s_shared_t *sh;
    const char *app;
    uint64_t want;
    atomic_uint_fast64_t handled;
    _Atomic int64_t t_done_us; /* the answer that first said >= want */
    atomic_int stop;
    bool fail;
    uint64_t polls;
} s_poll_t;

static void *
s_poll_thread (void *arg)
{
    s_poll_t *p = (s_poll_t *) arg;
    s_shared_t *sh = p->sh;
    s_admin_t a;
    if (s_admin_open (sh->b, &a, "bench.poll") != 0) {
        p->fail = true;
        atomic_fetch_add (&sh->ready, 1);
        return NULL;
    }
    atomic_fetch_add (&sh->ready, 1);
    while (!atomic_load (&p->stop)
           && !s_shared_over (sh, hal_clock_mono_us ())) {
        s_list_t l;
        if (s_loader_list (&a, p->app, &l) != 0) {
            p->fail = true;
            break;
        }
        if (!l.found) {
            fprintf (stderr, "bench: %s is not loaded\n", p->app);
            p->fail = true;
            break;
        }
        p->polls++;
        atomic_store (&p->handled, l.handled);
        if (l.handled >= p->want) {
            atomic_store (&p->t_done_us, hal_clock_mono_us ());
            break;
        }
        if (atomic_load (&sh->go) > 0)
            s_sleep_ms (S_APP_POLL_MS);
        else
            s_sleep_ms (20);
    }
    s_admin_close (&a);
    return NULL;
}

/*  ---- mailbox producers and the C consumer ---- */

typedef struct {
    s_shared_t *sh;
    int idx;
    uint32_t nthreads; /* seq = idx + k * nthreads */
    const char *to;
    bool fail;
    uint64_t oks, errs;
} s_mprod_t;

static void *
s_mprod (void *arg)
{
    s_mprod_t *w = (s_mprod_t *) arg;
    s_shared_t *sh = w->sh;
    s_bench_t *b = sh->b;
    char system[32];
    snprintf (system, sizeof system, "bench.mprod%d", w->idx);
    s_cli_t c;
    uint8_t *pay = s_payload_new (b->o.size);
    if (!pay || s_cli_open (&c, b->cmd_ep, system, NULL, 0, NULL) != 0) {
        free (pay);
        w->fail = true;
        atomic_fetch_add (&sh->ready, 1);
        return NULL;
    }
    atomic_fetch_add (&sh->ready, 1);
    uint64_t total = 0;
    for (uint64_t s = (uint64_t) w->idx; s < sh->n; s += w->nthreads)
        total++;
    if (!s_shared_wait_go (sh))
        goto done;
    uint64_t sent = 0;
    while (w->oks + w->errs < total) {
        while (sent < total && sent - w->oks - w->errs < b->o.qwindow) {
            s_payload_set (pay, (uint64_t) w->idx + sent * w->nthreads);
            msgpack_packer *pk = s_cli_begin (&c, 2, NULL);
            chan_pack_cstr (pk, "to");
            chan_pack_cstr (pk, w->to);
            chan_pack_cstr (pk, "data");
            msgpack_pack_bin (pk, b->o.size);
            msgpack_pack_bin_body (pk, pay, b->o.size);
            if (s_cli_send (&c, "SEND") != 0)
                break;
            sent++;
        }
        if (s_shared_over (sh, hal_clock_mono_us ()))
            break;
        s_kind_t kind;
        int got = s_cli_recv (&c, 100, &kind);
        if (got < 0)
            break;
        if (got == 0)
            continue;
        if (kind == IN_OK)
            w->oks++;
        else if (kind == IN_ERROR) {
            char why[300];
            if (w->errs++ < 5)
                fprintf (stderr, "bench: %s: SEND to %s: %s\n", system, w->to,
                         s_cli_error (&c, why, sizeof why));
        }
    }
    if (w->oks != total) {
        fprintf (stderr,
                 "bench: %s: %" PRIu64 " of %" PRIu64 " SENDs acknowledged\n",
                 system, w->oks, total);
        w->fail = true;
    }
done:
    s_cli_close (&c, true);
    free (pay);
    return NULL;
}

typedef struct {
    s_shared_t *sh;
    uint64_t *seen; /* one bit per seq */
    bool fail;
    uint64_t got, dups, foreign, acks, ack_ids, acked, errors;
    _Atomic int64_t t_done_us; /* when the last message arrived */
} s_csink_t;

/*  Sends one ACK of the ids gathered. */
static int
s_csink_ack (s_csink_t *k, s_cli_t *c, char (*ids)[48], uint32_t *nids)
{
    if (!*nids)
        return 0;
    msgpack_packer *pk = s_cli_begin (c, 2, NULL);
    chan_pack_cstr (pk, "chan");
    chan_pack_cstr (pk, "@" S_CSINK);
    chan_pack_cstr (pk, "ids");
    msgpack_pack_array (pk, *nids);
    for (uint32_t i = 0; i < *nids; i++)
        chan_pack_cstr (pk, ids[i]);
    k->acks++;
    k->ack_ids += *nids;
    *nids = 0;
    return s_cli_send (c, "ACK");
}

/*  Receives the mailbox's MSGs and ACKs them in batches of up to
    S_APP_ACK_MAX ids (whatever is there when the socket has nothing more,
    as the app runtime does); then waits for the ACKs' OKs. */
static void *
s_csink_thread (void *arg)
{
    s_csink_t *k = (s_csink_t *) arg;
    s_shared_t *sh = k->sh;
    s_cli_t c;
    char (*ids)[48] = (char (*)[48]) calloc (S_APP_ACK_MAX, 48);
    if (!ids || s_cli_open (&c, sh->b->cmd_ep, S_CSINK, NULL, 0, NULL) != 0) {
        free (ids);
        k->fail = true;
        atomic_fetch_add (&sh->ready, 1);
        return NULL;
    }
    atomic_fetch_add (&sh->ready, 1);
    uint32_t nids = 0;
    uint64_t n = sh->n;
    while (k->got < n || k->acked < k->ack_ids + nids) {
        int64_t now = hal_clock_mono_us ();
        if (s_shared_over (sh, now)) {
            k->fail = true;
            break;
        }
        if (s_cli_keepalive (&c, now) != 0) {
            k->fail = true;
            break;
        }
        s_kind_t kind;
        int got = s_cli_recv (&c, nids ? 0 : 100, &kind);
        if (got < 0) {
            k->fail = true;
            break;
        }
        if (got == 0) {
            if (s_csink_ack (k, &c, ids, &nids) != 0) {
                k->fail = true;
                break;
            }
            continue;
        }
        if (kind == IN_MSG) {
            s_env_t e;
            if (s_cli_msg_env (&c, &e) != 0 || !e.id || e.idlen >= 48) {
                k->errors++;
                continue;
            }
            memcpy (ids[nids], e.id, e.idlen);
            ids[nids][e.idlen] = 0;
            nids++;
            uint64_t seq =
                e.data ? s_payload_seq (e.data, e.datalen) : UINT64_MAX;
            if (seq >= n)
                k->foreign++;
            else if (k->seen[seq >> 6] & ((uint64_t) 1 << (seq & 63)))
                k->dups++;
            else {
                k->seen[seq >> 6] |= (uint64_t) 1 << (seq & 63);
                if (++k->got == n)
                    atomic_store (&k->t_done_us, hal_clock_mono_us ());
            }
            if (nids == S_APP_ACK_MAX && s_csink_ack (k, &c, ids, &nids) != 0) {
                k->fail = true;
                break;
            }
        } else if (kind == IN_OK) {
            size_t len;
            const void *body = s_cli_body (&c, &len);
            uint64_t v;
            if (s_body_uint (body, len, "acked", &v))
                k->acked += v;
        } else if (kind == IN_ERROR) {
            char why[300];
            if (k->errors++ < 5)
                fprintf (stderr, "bench: %s: %s\n", S_CSINK,
                         s_cli_error (&c, why, sizeof why));
        }
    }
    free (ids);
    s_cli_close (&c, true);
    return NULL;
}

/*  ---- one measured run ---- */

typedef struct {
    double rate;     /* msgs/s, wall */
    double proc_cpu; /* aaaxd utime + stime, s */
    s_cpu_t c0, c1;  /* per-thread snapshots at start and end */
    bool fail;
    uint64_t lost;
} s_run_t;

/*  Waits until *t_done is set (then snapshots the CPU) or the run is
    over. */
static void
s_run_wait (s_bench_t *b, s_shared_t *sh, _Atomic int64_t *t_done, s_run_t *run,
            int64_t t0)
{
    while (!atomic_load (t_done) && !s_shared_over (sh, hal_clock_mono_us ()))
        usleep (200);
    s_cpu_snap (b->pid, &run->c1);
    int64_t t = atomic_load (t_done);
    if (t > t0)
        run->rate = (double) sh->n * 1e6 / (double) (t - t0);
    else
        run->fail = true;
    run->proc_cpu = s_cpu_proc (&run->c0, &run->c1);
}

/*  n messages SENT by np producers to @to, consumed by the app `to` (the
    loader's list says when it has handled them all) or, when to is
    S_CSINK, by the C consumer. */
static void
s_mbox_run (s_bench_t *b, const char *to, uint64_t n, s_run_t *run)
{
    memset (run, 0, sizeof *run);
    bool app = strcmp (to, S_CSINK) != 0;
    uint32_t np = b->o.producers;
    s_shared_t sh;
    s_shared_init (&sh, b, n);
    s_mprod_t w[S_MAX_WORKERS];
    pthread_t th[S_MAX_WORKERS + 1];
    uint32_t started = 0;
    bool sink_started = false;
    s_poll_t poll;
    s_csink_t k;
    memset (&poll, 0, sizeof poll);
    memset (&k, 0, sizeof k);
    poll.sh = k.sh = &sh;
    poll.app = to;
    poll.want = n;
    atomic_init (&poll.handled, 0);
    atomic_init (&poll.t_done_us, 0);
    atomic_init (&poll.stop, 0);
    atomic_init (&k.t_done_us, 0);
    k.seen = (uint64_t *) calloc ((n + 63) / 64, sizeof (uint64_t));
    _Atomic int64_t *t_done = app ? &poll.t_done_us : &k.t_done_us;
    if (!k.seen
        || pthread_create (&th[S_MAX_WORKERS], NULL,
                           app ? s_poll_thread : s_csink_thread,
                           app ? (void *) &poll : (void *) &k)
               != 0)
        run->fail = true;
    else
        sink_started = true;
    for (uint32_t i = 0; i < np && !run->fail; i++) {
        memset (&w[i], 0, sizeof w[i]);
        w[i].sh = &sh;
        w[i].idx = (int) i;
        w[i].nthreads = np;
        w[i].to = to;
        if (pthread_create (&th[i], NULL, s_mprod, &w[i]) != 0)
            break;
        started++;
    }
    if (started < np || !s_shared_wait_ready (&sh, (int) np + 1))
        run->fail = true;
    for (uint32_t i = 0; i < started; i++)
        run->fail |= w[i].fail;
    run->fail |= poll.fail || k.fail;
    if (run->fail) {
        fprintf (stderr, "bench: mailbox run to %s: setup failed\n", to);
        atomic_store (&sh.go, -1);
    } else {
        s_cpu_snap (b->pid, &run->c0);
        int64_t t0 = hal_clock_mono_us ();
        atomic_store (&sh.deadline_us, t0 + (int64_t) b->o.limit_s * 1000000);
        atomic_store (&sh.go, 1);
        s_run_wait (b, &sh, t_done, run, t0);
    }
    for (uint32_t i = 0; i < started; i++) {
        pthread_join (th[i], NULL);
        run->fail |= w[i].fail;
    }
    atomic_store (&poll.stop, 1);
    if (sink_started)
        pthread_join (th[S_MAX_WORKERS], NULL);
    if (app) {
        uint64_t h = atomic_load (&poll.handled);
        run->lost = h < n ? n - h : 0;
        run->fail |= poll.fail || h != n;
        if (h != n)
            fprintf (stderr,
                     "bench: %s handled %" PRIu64 " of %" PRIu64 " messages\n",
                     to, h, n);
    } else {
        run->lost = n - k.got;
        run->fail |=
            k.fail || k.got != n || k.dups || k.foreign || k.acked != n;
        if (k.got != n || k.dups || k.foreign || k.acked != n)
            fprintf (stderr,
                     "bench: %s got %" PRIu64 " of %" PRIu64 " (dups %" PRIu64
                     ", foreign %" PRIu64 "), acked %" PRIu64 "\n",
                     S_CSINK, k.got, n, k.dups, k.foreign, k.acked);
    }
    free (k.seen);
    if (run->fail)
        run->rate = 0;
}

/*  Raw libzmq: np PUSH sockets -> one PULL, tcp loopback, the same
    payloads. The rate from the start until the PULL has all n. */
typedef struct {
    s_shared_t *sh;
    const char *ep;
    int idx;
    uint32_t nthreads;
    bool fail;
} s_rpush_t;

static void *
s_rpush_thread (void *arg)
{
    s_rpush_t *p = (s_rpush_t *) arg;
    s_shared_t *sh = p->sh;
    s_bench_t *b = sh->b;
    void *push = zmq_socket (b->rawctx, ZMQ_PUSH);
    uint8_t *pay = s_payload_new (b->o.size);
    /*  Closed when all is sent: it must not drop what is still queued. */
    int linger = 10000, hwm = S_RAW_HWM, tmo = 1000;
    if (!push || !pay) {
        p->fail = true;
        goto done;
    }
    zmq_setsockopt (push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (push, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (push, ZMQ_SNDTIMEO, &tmo, sizeof tmo);
    if (zmq_connect (push, p->ep) != 0
        || zmq_send (push, "sync", 4, 0) != 4) { /* connected */
        p->fail = true;
        goto done;
    }
    if (!s_shared_wait_go (sh))
        goto done;
    for (uint64_t s = (uint64_t) p->idx; s < sh->n; s += p->nthreads) {
        s_payload_set (pay, s);
        while (zmq_send (push, pay, b->o.size, 0) < 0)
            if (errno != EAGAIN || s_shared_over (sh, hal_clock_mono_us ())) {
                p->fail = true;
                goto done;
            }
    }
done:
    if (push)
        zmq_close (push);
    free (pay);
    return NULL;
}

static double
s_mbox_raw (s_bench_t *b, uint64_t n, bool *fail)
{
    uint32_t np = b->o.producers;
    s_shared_t sh;
    s_shared_init (&sh, b, n);
    void *pull = zmq_socket (b->rawctx, ZMQ_PULL);
    int zero = 0, hwm = S_RAW_HWM, tmo = 100;
    char ep[128] = "";
    size_t len = sizeof ep;
    s_rpush_t p[S_MAX_WORKERS];
    pthread_t th[S_MAX_WORKERS];
    uint32_t started = 0;
    double rate = 0;
    uint64_t got = 0;
    *fail = false;
    if (!pull) {
        *fail = true;
        return 0;
    }
    zmq_setsockopt (pull, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (pull, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (pull, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    if (zmq_bind (pull, "tcp://127.0.0.1:*") != 0
        || zmq_getsockopt (pull, ZMQ_LAST_ENDPOINT, ep, &len) != 0) {
        *fail = true;
        goto done;
    }
    for (uint32_t i = 0; i < np; i++) {
        memset (&p[i], 0, sizeof p[i]);
        p[i].sh = &sh;
        p[i].ep = ep;
        p[i].idx = (int) i;
        p[i].nthreads = np;
        if (pthread_create (&th[i], NULL, s_rpush_thread, &p[i]) != 0)
            break;
        started++;
    }
    zmq_msg_t m;
    zmq_msg_init (&m);
    uint32_t syncs = 0;
    int64_t until = hal_clock_mono_ms () + S_SETUP_MS;
    while (started == np && syncs < np && hal_clock_mono_ms () < until
           && !s_interrupted)
        if (zmq_msg_recv (&m, pull, 0) == 4)
            syncs++;
    if (syncs < np) {
        fprintf (stderr, "bench: raw PUSH/PULL: setup failed\n");
        *fail = true;
        atomic_store (&sh.go, -1);
    } else {
        uint64_t *seen = (uint64_t *) calloc ((n + 63) / 64, sizeof (uint64_t));
        int64_t t0 = hal_clock_mono_us ();
        atomic_store (&sh.deadline_us, t0 + (int64_t) b->o.limit_s * 1000000);
        atomic_store (&sh.go, 1);
        while (got < n && seen) {
            if (zmq_msg_recv (&m, pull, 0) < 0) {
                if ((errno == EAGAIN || errno == EINTR)
                    && !s_shared_over (&sh, hal_clock_mono_us ()))
                    continue;
                break;
            }
            uint64_t s = s_payload_seq (zmq_msg_data (&m), zmq_msg_size (&m));
            if (s < n && !(seen[s >> 6] & ((uint64_t) 1 << (s & 63)))) {
                seen[s >> 6] |= (uint64_t) 1 << (s & 63);
                got++;
            }
        }
        int64_t t1 = hal_clock_mono_us ();
        if (got == n && t1 > t0)
            rate = (double) n * 1e6 / (double) (t1 - t0);
        else
            *fail = true;
        free (seen);
    }
    zmq_msg_close (&m);
    for (uint32_t i = 0; i < started; i++) {
        pthread_join (th[i], NULL);
        *fail |= p[i].fail;
    }
done:
    zmq_close (pull);
    return *fail ? 0 : rate;
}

/*  The app broadcast run: a publisher WRITEs n messages to bench.b (window
    bwindow, and at most S_BCAST_LEAD ahead of what the app has handled);
    the loader's list says when bench.bsink has handled them all. */
static void
s_bcast_app_run (s_bench_t *b, uint64_t n, s_run_t *run)
{
    memset (run, 0, sizeof *run);
    s_shared_t sh;
    s_shared_init (&sh, b, n);
    s_poll_t poll;
    memset (&poll, 0, sizeof poll);
    poll.sh = &sh;
    poll.app = S_APP_BSINK;
    poll.want = n;
    atomic_init (&poll.handled, 0);
    atomic_init (&poll.t_done_us, 0);
    atomic_init (&poll.stop, 0);
    pthread_t th;
    uint8_t *pay = s_payload_new (b->o.size);
    s_cli_t pub;
    memset (&pub, 0, sizeof pub);
    const char *chans[] = { S_CHAN_B };
    bool started = false;
    if (!pay || pthread_create (&th, NULL, s_poll_thread, &poll) != 0)
        run->fail = true;
    else
        started = true;
    if (run->fail
        || s_cli_open (&pub, b->cmd_ep, "bench.apub", chans, 1, NULL) != 0
        || !s_shared_wait_ready (&sh, 1) || poll.fail) {
        fprintf (stderr, "bench: app broadcast: setup failed\n");
        run->fail = true;
        atomic_store (&sh.go, -1);
        goto done;
    }
    s_cpu_snap (b->pid, &run->c0);
    int64_t t0 = hal_clock_mono_us ();
    atomic_store (&sh.deadline_us, t0 + (int64_t) b->o.limit_s * 1000000);
    atomic_store (&sh.go, 1);
    uint64_t sent = 0, oks = 0, errs = 0;
    while (oks + errs < n) {
        bool credit = true;
        while (
            sent < n && sent - oks - errs < b->o.bwindow
            && (credit = sent < atomic_load (&poll.handled) + S_BCAST_LEAD)) {
            s_payload_set (pay, sent);
            s_cli_write (&pub, S_CHAN_B, pay, b->o.size, NULL);
            if (s_cli_send (&pub, "WRITE") != 0)
                break;
            sent++;
        }
        if (s_shared_over (&sh, hal_clock_mono_us ()) || poll.fail)
            break;
        s_kind_t kind;
        int got = s_cli_recv (&pub, credit ? 100 : 1, &kind);
        if (got < 0)
            break;
        if (got == 0)
            continue;
        if (kind == IN_OK)
            oks++;
        else if (kind == IN_ERROR) {
            char why[300];
            if (errs++ < 5)
                fprintf (stderr, "bench: WRITE %s: %s\n", S_CHAN_B,
                         s_cli_error (&pub, why, sizeof why));
        }
    }
    if (oks != n) {
        fprintf (stderr,
                 "bench: app broadcast: %" PRIu64 " of %" PRIu64
                 " WRITEs acknowledged\n",
                 oks, n);
        run->fail = true;
        atomic_store (&sh.go, -1);
    }
    s_run_wait (b, &sh, &poll.t_done_us, run, t0);
done:
    atomic_store (&poll.stop, 1);
    if (started)
        pthread_join (th, NULL);
    uint64_t h = atomic_load (&poll.handled);
    run->lost = h < n ? n - h : 0;
    if (poll.fail || h != n) {
        fprintf (stderr,
                 "bench: %s handled %" PRIu64 " of %" PRIu64 " messages\n",
                 S_APP_BSINK, h, n);
        run->fail = true;
    }
    if (run->fail)
        run->rate = 0;
    s_cli_close (&pub, true);
    free (pay);
}

/*  The thread that did the app's work: the one whose CPU grew most in the
    app run compared with the C run (the app host worker is idle in the C
    run; the switchboard, store writer and I/O threads work in both). 0
    when none stands out. */
static int
s_worker_tid (const s_run_t *c, const s_run_t *app)
{
    int best = 0;
    double best_d = 0.02;
    for (size_t i = 0; i < app->c1.n; i++) {
        const s_task_t *t = &app->c1.t[i];
        if (strncmp (t->comm, "ZMQbg", 5) == 0)
            continue;
        double d = s_cpu_tid (&app->c0, &app->c1, t->tid)
                   - s_cpu_tid (&c->c0, &c->c1, t->tid);
        if (d > best_d) {
            best_d = d;
            best = t->tid;
        }
    }
    return best;
}

/*  The busiest threads of the runs: CPU s in each. */
static void
s_print_threads (pid_t pid, const s_run_t *const *runs,
                 const char *const *names, size_t nruns, int worker)
{
    const s_run_t *last = runs[nruns - 1];
    bool shown[S_MAX_TASKS] = { false };
    printf ("  aaaxd threads, CPU s in each run (");
    for (size_t r = 0; r < nruns; r++)
        printf ("%s%s", r ? " / " : "", names[r]);
    printf ("):\n");
    for (int k = 0; k < 6; k++) {
        size_t bi = SIZE_MAX;
        double bsum = 0.005;
        for (size_t i = 0; i < last->c1.n; i++) {
            if (shown[i])
                continue;
            double sum = 0;
            for (size_t r = 0; r < nruns; r++)
                sum +=
                    s_cpu_tid (&runs[r]->c0, &runs[r]->c1, last->c1.t[i].tid);
            if (sum > bsum) {
                bsum = sum;
                bi = i;
            }
        }
        if (bi == SIZE_MAX)
            break;
        shown[bi] = true;
        const s_task_t *t = &last->c1.t[bi];
        printf ("    tid %-7d %-15s", t->tid, t->comm);
        for (size_t r = 0; r < nruns; r++)
            printf ("%s%6.2f", r ? " / " : " ",
                    s_cpu_tid (&runs[r]->c0, &runs[r]->c1, t->tid));
        printf ("%s\n", t->tid == worker      ? "   <- app host worker"
                        : t->tid == (int) pid ? "   <- main: switchboard"
                                              : "");
    }
}

/*  An app directory of bench/apps (realpath'ed into out). */
static int
s_bench_app_dir (const s_bench_t *b, const char *app, char *out)
{
    char p[PATH_MAX + 64];
    snprintf (p, sizeof p, "%.4000s/%s", b->apps_dir, app);
    if (!realpath (p, out)) {
        fprintf (stderr,
                 "bench: no app directory %s (--bench-apps DIR: the "
                 "source tree's bench/apps)\n",
                 p);
        return -1;
    }
    return 0;
}

static void
s_workload_app_msgs (s_bench_t *b)
{
    uint64_t n = b->o.app_msgs;
    printf ("\n== app host, messages: %" PRIu64 " messages of %u B to one Lua "
            "app with an empty message() (app_workers = 1); the same to a C "
            "consumer, and through raw PUSH/PULL; then broadcast ==\n",
            n, b->o.size);
    fflush (stdout);
    char sink[PATH_MAX], bsink[PATH_MAX];
    if (s_bench_app_dir (b, "sink", sink) != 0
        || s_bench_app_dir (b, "bsink", bsink) != 0) {
        b->failed = true;
        return;
    }
    if (s_app_kernel_start (b, "app-msgs") != 0) {
        b->failed = true;
        return;
    }
    bool fail = false;

    /*  Mailbox: C consumer, raw, then the app. */
    s_run_t rc, ra, rbc, rba;
    memset (&rc, 0, sizeof rc);
    memset (&ra, 0, sizeof ra);
    memset (&rbc, 0, sizeof rbc);
    memset (&rba, 0, sizeof rba);
    bool fail_raw = false;
    double raw = 0;
    if (!fail) {
        s_mbox_run (b, S_CSINK, n, &rc);
        raw = s_mbox_raw (b, n, &fail_raw);
        if (s_app_load (b, sink) != 0)
            fail = true;
        else
            s_mbox_run (b, S_APP_SINK, n, &ra);
    }
    fail |= rc.fail || ra.fail;
    int worker = s_worker_tid (&rc, &ra);
    double wcpu = worker ? s_cpu_tid (&ra.c0, &ra.c1, worker) : 0;
    double w_per = wcpu > 0 && !ra.fail ? (double) n / wcpu : 0;
    double a_per = ra.proc_cpu > 0 && !ra.fail ? (double) n / ra.proc_cpu : 0;
    double c_per = rc.proc_cpu > 0 && !rc.fail ? (double) n / rc.proc_cpu : 0;
    printf ("  app:  %s%10.0f msgs/s handled (SEND -> Lua message() -> "
            "ACK by the runtime), %" PRIu32 " producers window %u\n",
            ra.fail ? "FAILED " : "", ra.rate, b->o.producers, b->o.qwindow);
    printf ("        aaaxd CPU %.2f s: %.0f msgs per aaaxd CPU-s; app host "
            "worker thread %s%d: %.2f s, %.0f msgs per worker CPU-s\n",
            ra.proc_cpu, a_per, worker ? "tid " : "not identified ", worker,
            wcpu, w_per);
    printf ("  C:    %s%10.0f msgs/s received and ACKed (up to %d ids per "
            "ACK) by a C consumer\n",
            rc.fail ? "FAILED " : "", rc.rate, S_APP_ACK_MAX);
    printf ("        aaaxd CPU %.2f s: %.0f msgs per aaaxd CPU-s\n",
            rc.proc_cpu, c_per);
    printf ("  raw:  %s%10.0f msgs/s  %u PUSH -> 1 PULL (tcp loopback)\n",
            fail_raw ? "FAILED " : "", raw, b->o.producers);
    double ratio_c = rc.rate > 0 ? ra.rate / rc.rate : 0;
    double ratio_r = raw > 0 ? ra.rate / raw : 0;
    printf ("  ratio app/C: %.3f  app/raw: %.3f  C/raw: %.3f\n", ratio_c,
            ratio_r, raw > 0 ? rc.rate / raw : 0);

    /*  Broadcast: C subscriber, raw, then the app. */
    uint64_t lost_bc = 0, lost_br = 0;
    bool fail_bc = false, fail_br = false;
    double rate_bc = 0, rate_br = 0;
    if (!fail && !s_interrupted) {
        uint64_t count = b->o.count;
        b->o.count = n;
        s_cpu_snap (b->pid, &rbc.c0);
        rate_bc = s_bcast_aaax (b, 1, &lost_bc, &fail_bc);
        s_cpu_snap (b->pid, &rbc.c1);
        rbc.proc_cpu = s_cpu_proc (&rbc.c0, &rbc.c1);
        rate_br = s_bcast_raw (b, 1, &lost_br, &fail_br);
        b->o.count = count;
        if (s_app_load (b, bsink) != 0)
            fail = true;
        else
            s_bcast_app_run (b, n, &rba);
    }
    fail |= fail_bc || rba.fail;
    double wbcpu = worker ? s_cpu_tid (&rba.c0, &rba.c1, worker) : 0;
    printf ("  broadcast (WRITE bench.b, window %u, lead <= %d):\n",
            b->o.bwindow, S_BCAST_LEAD);
    printf ("  app:  %s%10.0f msgs/s handled; aaaxd CPU %.2f s: %.0f msgs "
            "per aaaxd CPU-s; worker %.2f s: %.0f msgs per worker CPU-s\n",
            rba.fail ? "FAILED " : "", rba.rate, rba.proc_cpu,
            rba.proc_cpu > 0 && !rba.fail ? n / rba.proc_cpu : 0, wbcpu,
            wbcpu > 0 && !rba.fail ? n / wbcpu : 0);
    printf ("  C:    %s%10.0f msgs/s to a C subscriber; aaaxd CPU %.2f s "
            "(with docking): %.0f msgs per aaaxd CPU-s\n",
            fail_bc ? "FAILED " : "", rate_bc, rbc.proc_cpu,
            rbc.proc_cpu > 0 && !fail_bc ? n / rbc.proc_cpu : 0);
    printf ("  raw:  %s%10.0f msgs/s  PUB -> zmq_proxy -> 1 SUB\n",
            fail_br ? "FAILED " : "", rate_br);
    printf ("  ratio app/C: %.3f  app/raw: %.3f\n",
            rate_bc > 0 ? rba.rate / rate_bc : 0,
            rate_br > 0 ? rba.rate / rate_br : 0);
    const s_run_t *runs[] = { &rc, &ra, &rbc, &rba };
    const char *names[] = { "C mailbox", "app mailbox", "C bcast",
                            "app bcast" };
    s_print_threads (b->pid, runs, names, 4, worker);
    bool met = w_per >= 200000;
    printf ("  target: >= 200000 handled msgs/s per core (msgs per app host "
            "worker CPU-s): %s (%.0f; wall %.0f msgs/s with the kernel on "
            "the same %ld cores)\n",
            met ? "met" : "NOT met", w_per, ra.rate,
            sysconf (_SC_NPROCESSORS_ONLN));

    char extra[400];
    s_result_t *r = s_result_add (b, "app_mailbox", "app mailbox (msgs/s)");
    if (r) {
        r->aaax = ra.rate;
        r->base = rc.rate;
        snprintf (r->base_note, sizeof r->base_note, "C consumer");
        r->ratio = ratio_c;
        r->ok = !ra.fail && !rc.fail;
        snprintf (extra, sizeof extra,
                  "\"producers\":%u,\"raw_push_pull\":%.1f,"
                  "\"aaaxd_cpu_s\":%.3f,\"msgs_per_aaaxd_cpu_s\":%.1f,"
                  "\"c_aaaxd_cpu_s\":%.3f,\"c_msgs_per_aaaxd_cpu_s\":%.1f",
                  b->o.producers, raw, ra.proc_cpu, a_per, rc.proc_cpu, c_per);
        s_summary (b, r, "msgs/s", n, ra.lost + rc.lost, extra);
    }
    r = s_result_add (b, "app_msgs_per_core", "app msgs/worker CPU-s");
    if (r) {
        r->aaax = w_per;
        r->base = a_per;
        snprintf (r->base_note, sizeof r->base_note, "per aaaxd CPU-s");
        r->ratio = a_per > 0 ? w_per / a_per : 0;
        snprintf (r->target, sizeof r->target, ">= 200000 msgs/s per core");
        r->target_met = met;
        r->ok = !ra.fail && worker != 0;
        snprintf (extra, sizeof extra,
                  "\"worker_tid\":%d,\"worker_cpu_s\":%.3f,"
                  "\"aaaxd_cpu_s\":%.3f,\"wall_msgs_s\":%.1f",
                  worker, wcpu, ra.proc_cpu, ra.rate);
        s_summary (b, r, "msgs/cpu-s", n, ra.lost, extra);
    }
    r = s_result_add (b, "kernel_mailbox", "kernel mailbox (msgs/s)");
    if (r) {
        r->aaax = rc.rate;
        r->base = raw;
        snprintf (r->base_note, sizeof r->base_note, "raw push/pull");
        r->ratio = raw > 0 ? rc.rate / raw : 0;
        r->ok = !rc.fail && !fail_raw;
        snprintf (extra, sizeof extra, "\"producers\":%u", b->o.producers);
        s_summary (b, r, "msgs/s", n, rc.lost, extra);
    }
    r = s_result_add (b, "app_broadcast", "app broadcast (msgs/s)");
    if (r) {
        r->aaax = rba.rate;
        r->base = rate_bc;
        snprintf (r->base_note, sizeof r->base_note, "C subscriber");
        r->ratio = rate_bc > 0 ? rba.rate / rate_bc : 0;
        r->ok = !rba.fail && !fail_bc && !fail_br;
        snprintf (extra, sizeof extra,
                  "\"raw_pub_sub\":%.1f,\"aaaxd_cpu_s\":%.3f,"
                  "\"worker_cpu_s\":%.3f",
                  rate_br, rba.proc_cpu, wbcpu);
        s_summary (b, r, "msgs/s", n, rba.lost + lost_bc, extra);
    }
    s_app_kernel_stop (b);
    if (fail || fail_raw || fail_br)
        b->failed = true;
}

/*  ---- generated apps (app-idle-mem, app-load) ---- */

/*  Writes napps app directories <tmp>/gen-apps/app-NNNN (once); their
    absolute paths into *paths (caller frees each and the array). */
static int
s_gen_apps (s_bench_t *b, char ***paths_p)
{
    size_t n = b->o.apps;
    char root[PATH_MAX + 32];
    snprintf (root, sizeof root, "%.4000s/gen-apps", b->tmp);
    if (mkdir (root, 0700) != 0 && errno != EEXIST)
        return -1;
    char real[PATH_MAX];
    if (!realpath (root, real))
        return -1;
    char **paths = (char **) calloc (n, sizeof (char *));
    if (!paths)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf (name, sizeof name, "app-%04zu", i);
        if (asprintf (&paths[i], "%s/%s", real, name) < 0) {
            paths[i] = NULL;
            goto fail;
        }
        if (mkdir (paths[i], 0700) != 0 && errno != EEXIST)
            goto fail;
        char file[PATH_MAX + 64];
        snprintf (file, sizeof file, "%.4000s/manifest.lua", paths[i]);
        FILE *f = fopen (file, "w");
        if (!f)
            goto fail;
        fprintf (f,
                 "return { name = \"%s\", version = \"1.0.0\", "
                 "permissions = {}, channels = {}, depends = {} }\n",
                 name);
        if (fclose (f) != 0)
            goto fail;
        snprintf (file, sizeof file, "%.4000s/main.lua", paths[i]);
        f = fopen (file, "w");
        if (!f)
            goto fail;
        fprintf (f, "return { message = function (msg) "
                    "aaax.reply(msg, msg.data) end }\n");
        if (fclose (f) != 0)
            goto fail;
    }
    *paths_p = paths;
    return 0;
fail:
    fprintf (stderr, "bench: cannot write the generated apps in %s\n", real);
    for (size_t i = 0; i < n; i++)
        free (paths[i]);
    free (paths);
    return -1;
}

static void
s_free_paths (char **paths, size_t n)
{
    for (size_t i = 0; paths && i < n; i++)
        free (paths[i]);
    free (paths);
}

/*  One load request for all paths: ms from send to answer, or -1. */
static double
s_load_batch (s_admin_t *adm, char **paths, size_t n)
{
    cli_kernel_reply_t rep;
    int64_t t0 = hal_clock_mono_us ();
    if (s_loader_call (adm, "load", paths, n, &rep) != 0)
        return -1;
    int64_t t1 = hal_clock_mono_us ();
    char why[600];
    const msgpack_object *mods = NULL;
    bool ok = s_loader_ok (rep.data, why, sizeof why);
    if (ok)
        mods = chan_obj_get (rep.data, "modules");
    if (!ok)
        fprintf (stderr, "bench: load of %zu apps refused: %s\n", n, why);
    else if (!mods || mods->type != MSGPACK_OBJECT_ARRAY
             || mods->via.array.size != n) {
        fprintf (stderr, "bench: load of %zu apps answered %u modules\n", n,
                 mods && mods->type == MSGPACK_OBJECT_ARRAY
                     ? mods->via.array.size
                     : 0);
        ok = false;
    }
    cli_kernel_reply_fini (&rep);
    return ok ? (double) (t1 - t0) / 1000.0 : -1;
}

static void
s_workload_app_mem (s_bench_t *b)
{
    size_t n = b->o.apps;
    printf ("\n== app host, idle memory: %zu generated apps (app-0000.., "
            "message = aaax.reply(msg, msg.data)) loaded in one request, "
            "app_workers = 1 ==\n",
            n);
    fflush (stdout);
    char **paths = NULL;
    if (s_gen_apps (b, &paths) != 0) {
        b->failed = true;
        return;
    }
    if (s_app_kernel_start (b, "app-idle-mem") != 0) {
        s_free_paths (paths, n);
        b->failed = true;
        return;
    }
    s_admin_t adm;
    bool fail = s_admin_open (b, &adm, "bench.apps") != 0;
    s_list_t l;
    memset (&l, 0, sizeof l);
    uint64_t rss0 = 0, rss1 = 0, anon0 = 0, anon1 = 0;
    double ms = -1;
    if (!fail) {
        s_sleep_ms (S_APP_SETTLE_MS);
        rss0 = s_proc_kb (b->pid, "VmRSS");
        anon0 = s_proc_kb (b->pid, "RssAnon");
        s_admin_ping (&adm);
        ms = s_load_batch (&adm, paths, n);
        fail = ms < 0;
    }
    if (!fail) {
        s_sleep_ms (S_APP_SETTLE_MS);
        rss1 = s_proc_kb (b->pid, "VmRSS");
        anon1 = s_proc_kb (b->pid, "RssAnon");
        s_admin_ping (&adm);
        if (s_loader_list (&adm, NULL, &l) != 0 || l.running != n) {
            fprintf (stderr, "bench: %zu of %zu apps running\n", l.running, n);
            fail = true;
        }
    }
    double per = rss1 > rss0 ? (double) (rss1 - rss0) / (double) n : 0;
    double lua = l.n ? (double) l.mem_sum / (double) l.n / 1024.0 : 0;
    bool met = !fail && per <= 64.0;
    printf ("  aaaxd VmRSS %" PRIu64 " KiB before, %" PRIu64 " KiB with %zu "
            "idle apps: %s%.1f KiB per app (RssAnon %" PRIu64 " -> %" PRIu64
            " KiB: %.1f KiB per app)\n",
            rss0, rss1, n, fail ? "FAILED " : "", per, anon0, anon1,
            anon1 > anon0 ? (double) (anon1 - anon0) / (double) n : 0.0);
    printf ("  Lua state per app (loader list \"memory\"): mean %.1f KiB, "
            "min %.1f, max %.1f; the rest, %.1f KiB per app, is outside "
            "the Lua heap (runtime, kernel session, allocator)\n",
            lua, l.mem_min / 1024.0, l.mem_max / 1024.0,
            per > lua ? per - lua : 0.0);
    printf ("  (the load took %.1f ms)\n", ms);
    printf ("  target: <= 64 KiB per idle app: %s\n", met ? "met" : "NOT met");
    s_result_t *r = s_result_add (b, "app_idle_mem", "idle app RSS (KiB/app)");
    if (r) {
        r->aaax = per;
        r->base = lua;
        snprintf (r->base_note, sizeof r->base_note, "Lua state only");
        r->ratio = lua > 0 ? per / lua : 0;
        snprintf (r->target, sizeof r->target, "<= 64 KiB per idle app");
        r->target_met = met;
        r->ok = !fail;
        char extra[300];
        snprintf (extra, sizeof extra,
                  "\"apps\":%zu,\"rss_before_kb\":%" PRIu64
                  ",\"rss_after_kb\":%" PRIu64 ",\"rssanon_before_kb\":%" PRIu64
                  ",\"rssanon_after_kb\":%" PRIu64 ",\"lua_mean_kb\":%.2f",
                  n, rss0, rss1, anon0, anon1, lua);
        s_summary (b, r, "KiB/app", n, 0, extra);
    }
    s_admin_close (&adm);
    s_app_kernel_stop (b);
    s_free_paths (paths, n);
    if (fail)
        b->failed = true;
}

/*  n load requests, one app each, all sent at once; ms from the first
    send to the last answer, or -1. */
static double
s_load_pipelined (s_bench_t *b, s_admin_t *adm, char **paths, size_t n)
{
    chan_client_t *cc = adm->cc;
    int64_t t0 = hal_clock_mono_us ();
    size_t sent = 0, oks = 0, answers = 0, good = 0, errors = 0;
    for (size_t i = 0; i < n; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init (&sb);
        s_loader_pack (&sb, "load", &paths[i], 1);
        chan_body_t body;
        chan_body_init (&body);
        chan_body_str (&body, "chan", "kernel.loader");
        chan_body_raw (&body, "data", sb.data, sb.size);
        int rc = chan_client_send (cc, "WRITE", &body, NULL);
        chan_body_fini (&body);
        msgpack_sbuffer_destroy (&sb);
        if (rc != 0)
            break;
        sent++;
    }
    int64_t until = hal_clock_mono_ms () + S_APP_REQ_MS;
    int64_t next_ping = hal_clock_mono_ms () + 400;
    while ((oks + errors < sent || answers < oks) && !s_interrupted
           && hal_clock_mono_ms () < until) {
        if (hal_clock_mono_ms () >= next_ping) {
            chan_client_send (cc, "PING", NULL, NULL);
            next_ping = hal_clock_mono_ms () + 400;
        }
        chan_reply_t r;
        memset (&r, 0, sizeof r);
        int rc = chan_client_recv (cc, &r, 100);
        if (rc == AAAX_ETIMEDOUT)
            continue;
        if (rc != 0)
            break;
        if (strcmp (r.cmd, "OK") == 0) {
            const char *id;
            size_t len;
            if (chan_obj_get_str (&r.body, "id", &id, &len))
                oks++; /* a WRITE's (an ACK's OK has no id) */
        } else if (strcmp (r.cmd, "ERROR") == 0) {
            char why[300];
            if (errors++ < 5)
                fprintf (stderr, "bench: load WRITE: %s\n",
                         chan_reply_reason (&r, why, sizeof why));
        } else if (strcmp (r.cmd, "MSG") == 0
                   && cli_kernel_classify (&r.body, adm->k.mailbox, NULL)
                          == CLI_KERNEL_STALE) {
            const msgpack_object *env = chan_obj_get (&r.body, "msg");
            char why[600];
            answers++;
            if (s_loader_ok (chan_obj_get (env, "data"), why, sizeof why))
                good++;
            else if (answers - good <= 5)
                fprintf (stderr, "bench: load refused: %s\n", why);
            const char *id;
            size_t len;
            if (chan_obj_get_str (env, "id", &id, &len) && len < 64) {
                char idbuf[64];
                memcpy (idbuf, id, len);
                idbuf[len] = 0;
                const char *ids[1] = { idbuf };
                chan_body_t ack;
                chan_body_init (&ack);
                chan_body_str (&ack, "chan", adm->k.mailbox);
                chan_body_strv (&ack, "ids", ids, 1);
                chan_client_send (cc, "ACK", &ack, NULL);
                chan_body_fini (&ack);
            }
        }
        chan_reply_fini (&r);
    }
    int64_t t1 = hal_clock_mono_us ();
    if (sent != n || oks != n || answers != n || good != n) {
        fprintf (stderr,
                 "bench: pipelined loads: %zu sent, %zu accepted, "
                 "%zu answered, %zu loaded of %zu\n",
                 sent, oks, answers, good, n);
        return -1;
    }
    return (double) (t1 - t0) / 1000.0;
}

static void
s_workload_app_load (s_bench_t *b)
{
    size_t n = b->o.apps;
    printf ("\n== app host, load time: %zu generated apps, app_workers = 1: "
            "one load request with %zu paths; then, in a fresh kernel, %zu "
            "load requests pipelined ==\n",
            n, n, n);
    fflush (stdout);
    char **paths = NULL;
    if (s_gen_apps (b, &paths) != 0) {
        b->failed = true;
        return;
    }
    double batch = -1, piped = -1;
    size_t running[2] = { 0, 0 };
    s_stat_t st[2][2];
    memset (st, 0, sizeof st);
    s_run_t cpu[2];
    memset (cpu, 0, sizeof cpu);
    pid_t pids[2] = { 0, 0 };
    for (int pass = 0; pass < 2 && !s_interrupted; pass++) {
        if (s_app_kernel_start (b, pass ? "app-load-piped" : "app-load") != 0)
            break;
        s_admin_t adm;
        if (s_admin_open (b, &adm, "bench.apps") == 0) {
            s_list_t l;
            s_stat (b, &st[pass][0]);
            pids[pass] = b->pid;
            s_cpu_snap (b->pid, &cpu[pass].c0);
            if (pass == 0)
                batch = s_load_batch (&adm, paths, n);
            else
                piped = s_load_pipelined (b, &adm, paths, n);
            s_cpu_snap (b->pid, &cpu[pass].c1);
            cpu[pass].proc_cpu = s_cpu_proc (&cpu[pass].c0, &cpu[pass].c1);
            s_stat (b, &st[pass][1]);
            if (s_loader_list (&adm, NULL, &l) == 0)
                running[pass] = l.running;
            s_admin_close (&adm);
        }
        s_app_kernel_stop (b);
    }
    size_t running1 = running[0], running2 = running[1];
    bool fail = batch < 0 || piped < 0 || running1 != n || running2 != n;
    bool met = batch >= 0 && batch < 2000;
    printf ("  one request:  %s%9.1f ms from the WRITE to the answer "
            "(%zu running after), %.0f apps/s\n",
            batch < 0 ? "FAILED " : "", batch, running1,
            batch > 0 ? n * 1000.0 / batch : 0);
    printf ("  %zu requests: %s%9.1f ms from the first WRITE to the last "
            "answer (%zu running after), %.0f apps/s\n",
            n, piped < 0 ? "FAILED " : "", piped, running2,
            piped > 0 ? n * 1000.0 / piped : 0);
    for (int pass = 0; pass < 2; pass++) {
        if (!pids[pass])
            continue;
        printf ("  aaaxd CPU during the %s: %.2f s\n",
                pass ? "pipelined loads" : "one request", cpu[pass].proc_cpu);
        const s_run_t *runs[] = { &cpu[pass] };
        const char *names[] = { pass ? "pipelined" : "one request" };
        s_print_threads (pids[pass], runs, names, 1, 0);
    }
    for (int pass = 0; pass < 2; pass++) {
        const s_stat_t *s0 = &st[pass][0], *s1 = &st[pass][1];
        uint64_t dops = s1->ops - s0->ops, dcom = s1->commits - s0->commits;
        if (s1->commits >= s0->commits && dcom)
            printf ("  kernel store meanwhile (%s): %" PRIu64 " commits, "
                    "%.1f ops/commit, %.2f ms per commit\n",
                    pass ? "pipelined" : "one request", dcom,
                    (double) dops / (double) dcom,
                    (double) (s1->commit_us - s0->commit_us) / 1000.0
                        / (double) dcom);
    }
    printf ("  target: %zu apps loaded in < 2 s: %s (one request)\n", n,
            met ? "met" : "NOT met");
    s_result_t *r = s_result_add (b, "app_load", "load apps (ms)");
    if (r) {
        snprintf (r->label, sizeof r->label, "load %zu apps (ms)", n);
        r->aaax = batch > 0 ? batch : 0;
        r->base = piped > 0 ? piped : 0;
        snprintf (r->base_note, sizeof r->base_note, "%zu requests", n);
        r->ratio = piped > 0 && batch > 0 ? batch / piped : 0;
        snprintf (r->target, sizeof r->target, "< 2000 ms");
        r->target_met = met;
        r->ok = !fail;
        char extra[200];
        snprintf (extra, sizeof extra,
                  "\"apps\":%zu,\"pipelined_ms\":%.1f,\"apps_per_s\":%.1f", n,
                  piped, batch > 0 ? n * 1000.0 / batch : 0);
        s_summary (b, r, "ms", n, 0, extra);
    }
    s_free_paths (paths, n);
    if (fail)
        b->failed = true;
}

/*  ---- workload 10: remote sessions, CURVE against plain tcp --------------
    Two kernels of the group's own with the same config (the app
    workloads' one: no app at boot, bench.b for bench.* systems,
    heartbeat_ms = 1000): one with --curve all (CURVE on loopback tcp, as
    on any other address) and one plain. The bench's clients are DEALERs
    of their own (s_conn_t), in a context whose socket limit is raised. */

#define S_REMOTE_PING_US 1000 /* the probe's pace: one PING per ms */
#define S_REMOTE_IDLE_MS 3000 /* the probe before the sessions dock */
#define S_FLEET_WINDOW 64     /* HELLOs outstanding while docking */
#define S_FLEET_DOCK_MS 60000 /* every session docked within */
#define S_REMOTE_ID "bench.r" /* the sessions: bench.r.0000 .. */
#define S_REMOTE_ROUNDS 2     /* throughput: plain and CURVE alternate */

/*  A kernel of the group: what s_kernel_start fills in, kept here while
    the other one is in b. */
typedef struct {
    const char *name; /* "plain", "CURVE" */
    pid_t pid;
    char cmd_ep[64];
    char ipc_ep[PATH_MAX + 32];
    char data[PATH_MAX + 16];
    char cfg[PATH_MAX + 16];
    char log[PATH_MAX + 16];
} s_kern_t;

/*  Makes k the kernel the bench's calls use (b->pid, b->cmd_ep, ...). */
static void
s_kern_enter (s_bench_t *b, const s_kern_t *k)
{
    b->pid = k->pid;
    memcpy (b->cmd_ep, k->cmd_ep, sizeof b->cmd_ep);
    memcpy (b->ipc_ep, k->ipc_ep, sizeof b->ipc_ep);
    memcpy (b->data, k->data, sizeof b->data);
    memcpy (b->cfg, k->cfg, sizeof b->cfg);
    memcpy (b->log, k->log, sizeof b->log);
}

/*  Takes the kernel in b back into k (b then has none). */
static void
s_kern_leave (s_bench_t *b, s_kern_t *k)
{
    k->pid = b->pid;
    memcpy (k->cmd_ep, b->cmd_ep, sizeof k->cmd_ep);
    memcpy (k->ipc_ep, b->ipc_ep, sizeof k->ipc_ep);
    memcpy (k->data, b->data, sizeof k->data);
    memcpy (k->cfg, b->cfg, sizeof k->cfg);
    memcpy (k->log, b->log, sizeof k->log);
    b->pid = 0;
}

/*  SIGTERM and exit status 0 required, as for every kernel of the bench. */
static void
s_kern_stop (s_bench_t *b, s_kern_t *k)
{
    if (k->pid <= 0)
        return;
    s_kern_enter (b, k);
    if (s_kernel_stop (b) != 0)
        b->failed = true;
    else
        printf ("aaaxd (%s): stopped with SIGTERM, exit status 0\n", k->name);
    k->pid = 0;
    b->pid = 0;
}

/*  Waits for the PONG of the PING just sent on c; anything else is
    counted in *errs. 0, or -1 (socket failed, or nothing by deadline). */
static int
s_cli_pong (s_cli_t *c, int64_t deadline_us, uint64_t *errs)
{
    while (!s_interrupted && hal_clock_mono_us () < deadline_us) {
        s_kind_t kind;
        int got = s_cli_recv (c, 100, &kind);
        if (got < 0)
            return -1;
        if (got == 0)
            continue;
        if (kind == IN_PONG)
            return 0;
        if (kind == IN_ERROR && (*errs)++ < 5) {
            char why[300];
            fprintf (stderr, "bench: PING: %s\n",
                     s_cli_error (c, why, sizeof why));
        }
    }
    return -1;
}

/*  ---- the sessions: one thread, n DEALERs ---- */

typedef struct {
    void *sock;
    int64_t next_ping_us, last_ping_us;
    uint8_t state; /* 0 not yet, 1 HELLO sent, 2 docked, 3 failed */
} s_fsess_t;

typedef struct {
    void *ctx;
    const char *ep;
    const char *server; /* the kernel's public key; NULL: plain */
    char (*keys)[2][HAL_CURVE_Z85_LEN + 1]; /* per session: public, secret */
    size_t n;
    s_fsess_t *s;
    uint32_t hb_ms;   /* from the HELLO replies */
    atomic_int stop;  /* main -> fleet: stop PINGing, say BYE, close */
    atomic_int state; /* fleet -> main: 0 docking, 1 all docked, -1 not */
    double dock_ms;   /* first HELLO to last reply */
    size_t docked, failed;
    uint64_t pings, pongs, errors, others;
    int64_t max_gap_us; /* longest time between a session's PINGs */
    char why[300];      /* the first failure */
} s_fleet_t;

/*  The first failure is kept in why: what, then detail. */
static void
s_fleet_fail (s_fleet_t *f, const char *what, const char *detail)
{
    if (!f->why[0])
        snprintf (f->why, sizeof f->why, "%s%s", what, detail);
}

/*  Reads everything a session's socket holds: PONGs are counted, an
    ERROR or anything else is a failure. */
static void
s_fleet_drain (s_fleet_t *f, s_fsess_t *s, zmq_msg_t *cmd, zmq_msg_t *body)
{
    while (zmq_msg_recv (cmd, s->sock, ZMQ_DONTWAIT) >= 0) {
        bool more = zmq_msg_more (cmd);
        zmq_msg_close (body);
        zmq_msg_init (body);
        while (more) {
            if (zmq_msg_recv (body, s->sock, 0) < 0)
                break;
            more = zmq_msg_more (body);
        }
        const char *w = (const char *) zmq_msg_data (cmd);
        size_t n = zmq_msg_size (cmd);
        if (n == 4 && memcmp (w, "PONG", 4) == 0)
            f->pongs++;
        else if (n == 5 && memcmp (w, "ERROR", 5) == 0) {
            f->errors++;
            uint64_t code = 0;
            s_body_uint (zmq_msg_data (body), zmq_msg_size (body), "code",
                         &code);
            char c[32];
            snprintf (c, sizeof c, "%" PRIu64, code);
            s_fleet_fail (f, "a docked session got an ERROR to a PING: ", c);
        } else
            f->others++;
    }
}

/*  PINGs every docked session whose turn it is (once per heartbeat
    period), reading its last PONG first. */
static void
s_fleet_ping_due (s_fleet_t *f, int64_t now, zmq_msg_t *cmd, zmq_msg_t *body)
{
    static const char ping_body[] = "\x81\xa3req\x01"; /* {req: 1} */
    int64_t period = (int64_t) f->hb_ms * 1000;
    for (size_t i = 0; i < f->n; i++) {
        s_fsess_t *s = &f->s[i];
        if (s->state != 2 || now < s->next_ping_us)
            continue;
        s_fleet_drain (f, s, cmd, body);
        if (zmq_send (s->sock, "PING", 4, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0
            || zmq_send (s->sock, ping_body, sizeof ping_body - 1, ZMQ_DONTWAIT)
                   < 0) {
            f->errors++;
            s_fleet_fail (f,
                          "a PING could not be sent: ", zmq_strerror (errno));
        }
        f->pings++;
        if (now - s->last_ping_us > f->max_gap_us)
            f->max_gap_us = now - s->last_ping_us;
        s->last_ping_us = now;
        s->next_ping_us += period;
        if (s->next_ping_us <= now)
            s->next_ping_us = now + period;
    }
}

/*  The reply to session i's HELLO. */
static void
s_fleet_hello_reply (s_fleet_t *f, size_t i, zmq_msg_t *cmd, zmq_msg_t *body)
{
    s_fsess_t *s = &f->s[i];
    if (zmq_msg_recv (cmd, s->sock, ZMQ_DONTWAIT) < 0)
        return;
    zmq_msg_close (body);
    zmq_msg_init (body);
    if (zmq_msg_more (cmd) && zmq_msg_recv (body, s->sock, 0) < 0) {
        s->state = 3;
        f->failed++;
        s_fleet_fail (f, "HELLO: ", zmq_strerror (errno));
        return;
    }
    const void *bd = zmq_msg_data (body);
    size_t blen = zmq_msg_size (body);
    int64_t now = hal_clock_mono_us ();
    if (zmq_msg_size (cmd) == 2 && memcmp (zmq_msg_data (cmd), "OK", 2) == 0) {
        uint64_t hb = 0;
        if (!f->hb_ms && s_body_uint (bd, blen, "heartbeat_ms", &hb) && hb)
            f->hb_ms = (uint32_t) hb;
        if (!f->hb_ms)
            f->hb_ms = 1000;
        s->state = 2;
        f->docked++;
        /*  Spread over the period, as independent agents would be. */
        s->last_ping_us = now;
        s->next_ping_us =
            now + (int64_t) f->hb_ms * 1000 * (int64_t) i / (int64_t) f->n;
    } else {
        s->state = 3;
        f->failed++;
        uint64_t code = 0;
        const char *reason = "";
        uint32_t rlen = 0;
        s_body_uint (bd, blen, "code", &code);
        s_body_str (bd, blen, "reason", &reason, &rlen);
        char why[240];
        snprintf (why, sizeof why, "%" PRIu64 " %.*s", code, (int) rlen,
                  reason);
        s_fleet_fail (f, "HELLO refused: ERROR ", why);
    }
}

static void *
s_fleet_thread (void *arg)
{
    s_fleet_t *f = (s_fleet_t *) arg;
    chan_buf_t buf;
    msgpack_packer pk;
    chan_buf_init (&buf);
    chan_buf_packer (&buf, &pk);
    zmq_msg_t cmd, body;
    zmq_msg_init (&cmd);
    zmq_msg_init (&body);
    zmq_pollitem_t items[S_FLEET_WINDOW];
    size_t pend[S_FLEET_WINDOW];
    size_t npend = 0, next = 0;
    int64_t t0 = hal_clock_mono_us ();
    int64_t until = t0 + (int64_t) S_FLEET_DOCK_MS * 1000;
    int64_t t_last = t0;

    /*  Docking: up to S_FLEET_WINDOW HELLOs outstanding; the sessions
        docked so far PING meanwhile. */
    while (f->docked + f->failed < f->n && !s_interrupted
           && !atomic_load (&f->stop)) {
        if (hal_clock_mono_us () > until) {
            s_fleet_fail (f, "not every session docked within 60 s", "");
            break;
        }
        while (npend < S_FLEET_WINDOW && next < f->n) {
            s_fsess_t *s = &f->s[next];
            const char *pub = f->server ? f->keys[next][0] : NULL;
            const char *sec = f->server ? f->keys[next][1] : NULL;
            s->sock = s_dealer_new (f->ctx, f->server, pub, sec);
            char id[32];
            snprintf (id, sizeof id, S_REMOTE_ID ".%04zu", next);
            chan_buf_reset (&buf);
            msgpack_pack_map (&pk, 3);
            chan_pack_cstr (&pk, "req");
            msgpack_pack_uint32 (&pk, 1);
            chan_pack_cstr (&pk, "system");
            chan_pack_cstr (&pk, id);
            chan_pack_cstr (&pk, "version");
            msgpack_pack_uint32 (&pk, AAAX_PROTOCOL_VERSION);
            if (!s->sock || zmq_connect (s->sock, f->ep) != 0
                || zmq_send (s->sock, "HELLO", 5, ZMQ_SNDMORE) < 0
                || zmq_send (s->sock, buf.data, buf.len, 0) < 0) {
                s_fleet_fail (f,
                              "cannot open a session: ", zmq_strerror (errno));
                s->state = 3;
                f->failed++;
            } else {
                s->state = 1;
                pend[npend++] = next;
            }
            next++;
        }
        for (size_t i = 0; i < npend; i++) {
            items[i].socket = f->s[pend[i]].sock;
            items[i].fd = 0;
            items[i].events = ZMQ_POLLIN;
            items[i].revents = 0;
        }
        if (npend && zmq_poll (items, (int) npend, 2) > 0)
            for (size_t i = npend; i-- > 0;)
                if (items[i].revents & ZMQ_POLLIN) {
                    s_fleet_hello_reply (f, pend[i], &cmd, &body);
                    if (f->s[pend[i]].state != 1) {
                        t_last = hal_clock_mono_us ();
                        pend[i] = pend[--npend];
                    }
                }
        if (f->hb_ms)
            s_fleet_ping_due (f, hal_clock_mono_us (), &cmd, &body);
    }
    f->dock_ms = (double) (t_last - t0) / 1000.0;
    atomic_store (&f->state, f->docked == f->n ? 1 : -1);

    /*  Docked: each PINGs once per heartbeat period until told to stop. */
    while (!atomic_load (&f->stop) && !s_interrupted) {
        if (f->hb_ms)
            s_fleet_ping_due (f, hal_clock_mono_us (), &cmd, &body);
        s_sleep_ms (1);
    }
    /*  Every PING's PONG (3 s at most), then BYE from each, and close. */
    int64_t end = hal_clock_mono_ms () + 3000;
    while (f->pongs + f->errors < f->pings && hal_clock_mono_ms () < end) {
        for (size_t i = 0; i < f->n; i++)
            if (f->s[i].state == 2)
                s_fleet_drain (f, &f->s[i], &cmd, &body);
        s_sleep_ms (5);
    }
    static const char bye_body[] = "\x81\xa3req\x02"; /* {req: 2} */
    for (size_t i = 0; i < f->n; i++) {
        s_fsess_t *s = &f->s[i];
        if (s->state == 2 && zmq_send (s->sock, "BYE", 3, ZMQ_SNDMORE) >= 0)
            zmq_send (s->sock, bye_body, sizeof bye_body - 1, 0);
        if (s->sock)
            zmq_close (s->sock);
        s->sock = NULL;
    }
    zmq_msg_close (&cmd);
    zmq_msg_close (&body);
    chan_buf_fini (&buf);
    return NULL;
}

/*  Up to count PING -> PONG round trips on c, one in flight; the ones past
    warmup go to us. */
typedef struct {
    s_cli_t c;
    uint32_t next, total, warmup;
    uint64_t errs;
    int limit_s;
    bool fail;
} s_prtt_t;

static int
s_prtt_block (s_prtt_t *p, uint32_t count, double *us, size_t *nus)
{
    uint32_t end = p->total - p->next < count ? p->total : p->next + count;
    for (; p->next < end && !p->fail; p->next++) {
        int64_t ts = s_now_ns ();
        if (s_cli_ping (&p->c) != 0
            || s_cli_pong (
                   &p->c, hal_clock_mono_us () + (int64_t) p->limit_s * 1000000,
                   &p->errs)
                   != 0) {
            fprintf (stderr, "bench: no PONG to round trip %u\n", p->next);
            p->fail = true;
            break;
        }
        if (p->next >= p->warmup)
            us[(*nus)++] = (double) (s_now_ns () - ts) / 1000.0;
    }
    return p->fail ? -1 : 0;
}

/*  The probe: one PING every S_REMOTE_PING_US for ms, one in flight; the
    round trips (us) into us (room for cap). 0, or -1 when a PONG did
    not come within the time limit. */
static int
s_probe (s_cli_t *c, int ms, int limit_s, double *us, size_t cap, size_t *n,
         uint64_t *errs)
{
    *n = 0;
    int64_t start = hal_clock_mono_us ();
    int64_t t_end = start + (int64_t) ms * 1000, next = start;
    while (*n < cap && !s_interrupted) {
        int64_t now = hal_clock_mono_us ();
        if (now >= t_end)
            break;
        if (now < next) {
            struct timespec ts = { 0, (long) (next - now) * 1000L };
            nanosleep (&ts, NULL);
            continue;
        }
        next += S_REMOTE_PING_US;
        if (next < now)
            next = now + S_REMOTE_PING_US;
        int64_t t0 = s_now_ns ();
        if (s_cli_ping (c) != 0
            || s_cli_pong (c, now + (int64_t) limit_s * 1000000, errs) != 0) {
            fprintf (stderr, "bench: probe: no PONG within %d s\n", limit_s);
            return -1;
        }
        us[(*n)++] = (double) (s_now_ns () - t0) / 1000.0;
    }
    return s_interrupted ? -1 : 0;
}

/*  CTL list (privileged, over ipc): the bench.r.* sessions docked and how
    many of them say auth "curve". 0 or -1. */
static int
s_remote_list (s_bench_t *b, size_t *docked, size_t *curve)
{
    *docked = *curve = 0;
    s_admin_t adm;
    if (s_admin_open (b, &adm, "bench.remote") != 0)
        return -1;
    chan_body_t body;
    chan_body_init (&body);
    chan_body_str (&body, "op", "list");
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    int rc = chan_client_call (adm.cc, "CTL", &body, &r);
    chan_body_fini (&body);
    const msgpack_object *sys = NULL;
    if (rc == 0 && strcmp (r.cmd, "OK") == 0)
        sys = chan_obj_get (&r.body, "systems");
    if (!sys || sys->type != MSGPACK_OBJECT_ARRAY) {
        fprintf (stderr, "bench: CTL list failed: %s\n",
                 rc ? aaax_strerror (rc) : r.cmd);
        chan_reply_fini (&r);
        s_admin_close (&adm);
        return -1;
    }
    size_t plen = strlen (S_REMOTE_ID ".");
    for (uint32_t i = 0; i < sys->via.array.size; i++) {
        const msgpack_object *e = &sys->via.array.ptr[i];
        const char *id, *st, *auth;
        size_t idlen, stlen, alen;
        if (!chan_obj_get_str (e, "id", &id, &idlen) || idlen <= plen
            || memcmp (id, S_REMOTE_ID ".", plen) != 0)
            continue;
        if (chan_obj_get_str (e, "state", &st, &stlen) && stlen == 6
            && memcmp (st, "docked", 6) == 0)
            (*docked)++;
        if (chan_obj_get_str (e, "auth", &auth, &alen) && alen == 5
            && memcmp (auth, "curve", 5) == 0)
            (*curve)++;
    }
    chan_reply_fini (&r);
    s_admin_close (&adm);
    return 0;
}

/*  What one session run measured. */
typedef struct {
    bool fail;
    size_t n, docked_end, curve_end;
    double dock_ms;
    uint64_t rss0, rss1, rss2, anon0, anon1; /* KiB: before, docked, end */
    double per_kib;                          /* (rss1 - rss0) / n */
    s_lat_t idle, busy;
    double idle_max, busy_max;
    size_t nidle, nbusy;
    uint64_t pings, pongs, errors, others;
    double max_gap_ms;
    uint32_t hb_ms;
} s_sess_res_t;

/*  n sessions docked at once on kernel k (CURVE when conn->curve: each
    with its own key), each PINGing once per heartbeat period; the probe
    (conn's key, system bench.probe) measures PING round trips before they
    dock and while they are docked. */
static void
s_remote_sessions (s_bench_t *b, s_kern_t *k, const s_conn_t *conn, void *fctx,
                   char (*keys)[2][HAL_CURVE_Z85_LEN + 1], size_t n,
                   s_sess_res_t *res)
{
    memset (res, 0, sizeof *res);
    res->n = n;
    printf ("  %s: ", k->name);
    fflush (stdout);
    s_kern_enter (b, k);
    size_t cap = (size_t) b->o.probe_s * 1000000 / S_REMOTE_PING_US + 64;
    size_t icap = (size_t) S_REMOTE_IDLE_MS * 1000 / S_REMOTE_PING_US + 64;
    double *ub = (double *) calloc (cap, sizeof (double));
    double *ui = (double *) calloc (icap, sizeof (double));
    s_fleet_t *f = (s_fleet_t *) calloc (1, sizeof *f);
    s_fsess_t *ss = (s_fsess_t *) calloc (n, sizeof *ss);
    s_cli_t probe;
    bool popen = false, started = false;
    pthread_t th;
    uint64_t perrs = 0;
    if (!ub || !ui || !f || !ss) {
        res->fail = true;
        goto done;
    }
    if (s_cli_open_own (&probe, conn, b->cmd_ep, "bench.probe", NULL, 0) != 0) {
        res->fail = true;
        goto done;
    }
    popen = true;
    /*  The idle kernel: RSS, then the probe alone. */
    s_sleep_ms (S_APP_SETTLE_MS);
    res->rss0 = s_proc_kb (k->pid, "VmRSS");
    res->anon0 = s_proc_kb (k->pid, "RssAnon");
    if (s_probe (&probe, S_REMOTE_IDLE_MS, b->o.limit_s, ui, icap, &res->nidle,
                 &perrs)
        != 0) {
        res->fail = true;
        goto done;
    }
    f->ctx = fctx;
    f->ep = k->cmd_ep;
    f->server = conn->curve ? conn->server : NULL;
    f->keys = keys;
    f->n = n;
    f->s = ss;
    atomic_init (&f->stop, 0);
    atomic_init (&f->state, 0);
    if (pthread_create (&th, NULL, s_fleet_thread, f) != 0) {
        res->fail = true;
        goto done;
    }
    started = true;
    /*  The probe keeps PINGing (and so stays docked) while they dock. */
    while (atomic_load (&f->state) == 0 && !s_interrupted) {
        uint64_t e = 0;
        s_cli_ping (&probe);
        if (s_cli_pong (&probe,
                        hal_clock_mono_us () + (int64_t) b->o.limit_s * 1000000,
                        &e)
            != 0) {
            res->fail = true;
            break;
        }
        s_sleep_ms (100);
    }
    if (atomic_load (&f->state) != 1 || res->fail) {
        res->fail = true;
        goto done;
    }
    s_sleep_ms (S_APP_SETTLE_MS);
    res->rss1 = s_proc_kb (k->pid, "VmRSS");
    res->anon1 = s_proc_kb (k->pid, "RssAnon");
    if (s_probe (&probe, (int) b->o.probe_s * 1000, b->o.limit_s, ub, cap,
                 &res->nbusy, &perrs)
        != 0)
        res->fail = true;
    res->rss2 = s_proc_kb (k->pid, "VmRSS");
    if (s_remote_list (b, &res->docked_end, &res->curve_end) != 0
        || res->docked_end != n)
        res->fail = true;

done:
    if (started) {
        atomic_store (&f->stop, 1);
        pthread_join (th, NULL);
        res->dock_ms = f->dock_ms;
        res->pings = f->pings;
        res->pongs = f->pongs;
        res->errors = f->errors;
        res->others = f->others;
        res->max_gap_ms = (double) f->max_gap_us / 1000.0;
        res->hb_ms = f->hb_ms;
        if (f->docked != n || f->errors || f->others || f->pongs != f->pings) {
            fprintf (stderr,
                     "bench: %s sessions: %zu of %zu docked, %" PRIu64
                     " PINGs, %" PRIu64 " PONGs, %" PRIu64 " errors, %" PRIu64
                     " other messages%s%s\n",
                     k->name, f->docked, n, f->pings, f->pongs, f->errors,
                     f->others, f->why[0] ? ": " : "", f->why);
            res->fail = true;
        }
    }
    if (popen)
        s_cli_close (&probe, true);
    if (perrs)
        res->fail = true;
    if (res->rss1 > res->rss0)
        res->per_kib = (double) (res->rss1 - res->rss0) / (double) n;
    s_lat_of (ui, res->nidle, &res->idle);
    s_lat_of (ub, res->nbusy, &res->busy);
    res->idle_max = res->nidle ? ui[res->nidle - 1] : 0;
    res->busy_max = res->nbusy ? ub[res->nbusy - 1] : 0;
    printf ("%s%zu sessions docked in %.0f ms (%.0f HELLOs/s, %d in "
            "flight)\n",
            res->fail ? "FAILED " : "", f ? f->docked : 0, res->dock_ms,
            res->dock_ms > 0 ? (double) n * 1000.0 / res->dock_ms : 0.0,
            S_FLEET_WINDOW);
    s_kern_leave (b, k);
    free (ub);
    free (ui);
    free (f);
    free (ss);
}

/*  The raw pair's echo: one thread serving a plain ROUTER and a CURVE
    one, so that both DEALERs (in the bench's main thread) talk to the
    same threads. Two echo threads would each land on a CPU of their own
    choosing, and on this 2-vCPU VM a round trip is about 15 or about 55
    us depending on where its threads sleep. */
typedef struct {
    void *ctx;
    const s_rawkeys_t *keys;
    char ep[2][128]; /* plain, CURVE */
    sem_t ready;
    int rc;
    atomic_int stop;
} s_echo2_t;

static void *
s_echo2_thread (void *arg)
{
    s_echo2_t *e = (s_echo2_t *) arg;
    void *r[2] = { NULL, NULL };
    int zero = 0, one = 1, hwm = S_RAW_HWM;
    e->rc = -1;
    for (int i = 0; i < 2; i++) {
        size_t len = sizeof e->ep[i];
        r[i] = zmq_socket (e->ctx, ZMQ_ROUTER);
        if (!r[i])
            goto done;
        zmq_setsockopt (r[i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt (r[i], ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt (r[i], ZMQ_RCVHWM, &hwm, sizeof hwm);
        if (i == 1
            && (zmq_setsockopt (r[i], ZMQ_CURVE_SERVER, &one, sizeof one) != 0
                || zmq_setsockopt (r[i], ZMQ_CURVE_SECRETKEY, e->keys->srv_sec,
                                   sizeof e->keys->srv_sec)
                       != 0))
            goto done;
        if (zmq_bind (r[i], "tcp://127.0.0.1:*") != 0
            || zmq_getsockopt (r[i], ZMQ_LAST_ENDPOINT, e->ep[i], &len) != 0)
            goto done;
    }
    e->rc = 0;
    sem_post (&e->ready);
    zmq_msg_t rid, body;
    zmq_msg_init (&rid);
    zmq_msg_init (&body);
    while (!atomic_load (&e->stop) && !s_interrupted) {
        zmq_pollitem_t it[2] = { { r[0], 0, ZMQ_POLLIN, 0 },
                                 { r[1], 0, ZMQ_POLLIN, 0 } };
        if (zmq_poll (it, 2, 100) <= 0)
            continue;
        for (int i = 0; i < 2; i++)
            while ((it[i].revents & ZMQ_POLLIN)
                   && zmq_msg_recv (&rid, r[i], ZMQ_DONTWAIT) >= 0) {
                if (!zmq_msg_more (&rid) || zmq_msg_recv (&body, r[i], 0) < 0)
                    continue;
                zmq_msg_send (&rid, r[i], ZMQ_SNDMORE);
                zmq_msg_send (&body, r[i], 0);
            }
    }
    zmq_msg_close (&rid);
    zmq_msg_close (&body);
done:
    if (e->rc != 0)
        sem_post (&e->ready);
    for (int i = 0; i < 2; i++)
        if (r[i])
            zmq_close (r[i]);
    return NULL;
}

/*  Pipelined echo through the raw DEALER (window outstanding): n
    messages there and back; msgs/s, or 0 on a loss. */
static double
s_rawpipe (s_rttr_t *r, uint64_t n, uint32_t window)
{
    uint64_t sent = 0, got = 0;
    int64_t t0 = s_now_ns ();
    while (got < n && !s_interrupted) {
        while (sent < n && sent - got < window) {
            s_payload_set (r->pay, sent);
            if (zmq_send (r->dealer, r->pay, r->b->o.size, ZMQ_DONTWAIT) < 0)
                break;
            sent++;
        }
        if (zmq_msg_recv (&r->in, r->dealer, 0) < 0) {
            fprintf (stderr, "bench: raw echo: nothing back within 5 s\n");
            break;
        }
        if (s_payload_seq (zmq_msg_data (&r->in), zmq_msg_size (&r->in))
            != got) {
            fprintf (stderr, "bench: raw echo: out of order\n");
            break;
        }
        got++;
    }
    int64_t t1 = s_now_ns ();
    return got == n && t1 > t0 ? (double) n * 1e9 / (double) (t1 - t0) : 0;
}

static void
s_remote_result (s_bench_t *b, const char *name, const char *label, double aaax,
                 double base, const char *note, bool ok)
{
    s_result_t *r = s_result_add (b, name, label);
    if (!r)
        return;
    r->aaax = aaax;
    r->base = base;
    snprintf (r->base_note, sizeof r->base_note, "%s", note);
    r->ratio = base > 0 ? aaax / base : 0;
    r->ok = ok;
}

static void
s_print_lat (const char *what, const s_lat_t *l, size_t n, bool fail,
             const char *note)
{
    printf ("  %-15s %sp50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  mean "
            "%8.1f us  (%zu samples%s%s)\n",
            what, fail ? "FAILED " : "", l->p50, l->p99, l->p999, l->mean, n,
            note ? "; " : "", note ? note : "");
}

/*  Sets the CPU affinity of every thread of process pid (0: this one).
    The number of threads set. */
static int
s_pin_process (pid_t pid, const cpu_set_t *set)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/task", pid ? (int) pid : getpid ());
    DIR *d = opendir (path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir (d))) {
        int tid = atoi (e->d_name);
        if (tid > 0 && sched_setaffinity (tid, sizeof *set, set) == 0)
            n++;
    }
    closedir (d);
    return n;
}

/*  Raises the soft limit on open files for n sessions (the bench holds a
    socket and an eventfd per session, the kernel a socket; aaaxd inherits
    the limit). The number of sessions that fit. */
static size_t
s_remote_fds (size_t n, unsigned long long *limit)
{
    struct rlimit rl;
    *limit = 0;
    if (getrlimit (RLIMIT_NOFILE, &rl) != 0)
        return n;
    rlim_t want = (rlim_t) n * 3 + 1024;
    if (rl.rlim_cur < want) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want
                          ? want
                          : rl.rlim_max;
        if (setrlimit (RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = old;
    }
    *limit = (unsigned long long) rl.rlim_cur;
    if (rl.rlim_cur < want) {
        size_t fit =
            rl.rlim_cur > 1024 + 3 ? (size_t) (rl.rlim_cur - 1024) / 3 : 1;
        fprintf (stderr,
                 "bench: RLIMIT_NOFILE %llu allows %zu sessions, not %zu\n",
                 (unsigned long long) rl.rlim_cur, fit, n);
        return fit;
    }
    return n;
}

static void
s_workload_remote (s_bench_t *b)
{
    unsigned long long nofile;
    size_t n = s_remote_fds (b->o.sessions, &nofile);
    uint64_t count = b->o.remote_count;
    uint32_t total = b->o.warmup + b->o.samples;
    uint32_t blk = b->o.rtt_block ? b->o.rtt_block : total;
    printf ("\n== remote: CURVE against plain tcp, one kernel each (the "
            "CURVE one with --curve all on loopback); %zu sessions docked at "
            "once with liveness, PING probe %u s; broadcast 1->1 %" PRIu64
            " messages of %u B; PING and raw echo round trips %u after %u "
            "warm-up, blocks of %u; RLIMIT_NOFILE %llu ==\n",
            n, b->o.probe_s, count, b->o.size, b->o.samples, b->o.warmup, blk,
            nofile);
    fflush (stdout);
    s_kern_t kp, kc;
    memset (&kp, 0, sizeof kp);
    memset (&kc, 0, sizeof kc);
    kp.name = "plain";
    kc.name = "CURVE";
    s_kern_t *kk[2] = { &kp, &kc };
    s_conn_t cp, cc;
    memset (&cp, 0, sizeof cp);
    memset (&cc, 0, sizeof cc);
    s_rawkeys_t rk;
    char (*keys)[2][HAL_CURVE_Z85_LEN + 1] = NULL;
    s_rttr_t *raws = NULL;
    s_run_t *runs = NULL;
    s_prtt_t *pr = NULL;
    double *ur[2] = { NULL, NULL }, *up[2] = { NULL, NULL };
    s_sess_res_t sr[2];
    memset (sr, 0, sizeof sr);
    bool fail = false, raws_setup = false, echo_started = false;
    s_echo2_t echo;
    pthread_t echo_th;
    memset (&echo, 0, sizeof echo);
    char err[300] = "";
    void *ctx = zmq_ctx_new ();
    keys = (char (*)[2][HAL_CURVE_Z85_LEN + 1]) calloc (n, sizeof *keys);
    if (!ctx || !keys || zmq_ctx_set (ctx, ZMQ_MAX_SOCKETS, (int) n + 64) != 0
        || zmq_curve_keypair (cc.pub, cc.sec) != 0
        || zmq_curve_keypair (rk.srv_pub, rk.srv_sec) != 0
        || zmq_curve_keypair (rk.cli_pub, rk.cli_sec) != 0) {
        fprintf (stderr, "bench: remote: no context or no CURVE keys (%s)\n",
                 zmq_strerror (errno));
        fail = true;
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        if (zmq_curve_keypair (keys[i][0], keys[i][1]) != 0) {
            fail = true;
            goto done;
        }
    cp.ctx = cc.ctx = ctx;
    cc.curve = true;
    const s_conn_t *conns[2] = { &cp, &cc };

    /*  The plain kernel. */
    s_app_paths (b, "remote-plain");
    b->app_cfg = true;
    b->curve_mode = NULL;
    int rc = s_kernel_start (b);
    s_kern_leave (b, &kp);
    if (rc != 0) {
        fail = true;
        goto done;
    }
    printf ("aaaxd (remote-plain): pid %d, command %s, data %s\n", (int) kp.pid,
            kp.cmd_ep, kp.data);

    /*  The CURVE kernel: its certificate made here, then the bench's key
        bound to the workloads' ids and one key per session bound to its
        id, before it starts. */
    s_app_paths (b, "remote-curve");
    char secret[HAL_CURVE_Z85_LEN + 1];
    if (mkdir (b->data, 0700) != 0
        || hal_curve_server_cert (b->data, true, cc.server, secret, err,
                                  sizeof err)
               != 0) {
        fprintf (stderr, "bench: remote: no server certificate in %s: %s\n",
                 b->data, err);
        fail = true;
        goto stop;
    }
    const char *ids[] = { "bench.pub1", "bench.sub1.0", "bench.rping",
                          "bench.probe" };
    int64_t ta = hal_clock_mono_us ();
    rc = hal_curve_authorize (b->data, cc.pub, ids, 4, false, err, sizeof err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char id[32];
        snprintf (id, sizeof id, S_REMOTE_ID ".%04zu", i);
        const char *one[1] = { id };
        rc = hal_curve_authorize (b->data, keys[i][0], one, 1, false, err,
                                  sizeof err);
    }
    double auth_ms = (double) (hal_clock_mono_us () - ta) / 1000.0;
    if (rc != 0) {
        fprintf (stderr, "bench: remote: hal_curve_authorize: %s\n", err);
        fail = true;
        goto stop;
    }
    b->curve_mode = "all";
    rc = s_kernel_start (b);
    b->curve_mode = NULL;
    b->app_cfg = false;
    s_kern_leave (b, &kc);
    if (rc != 0) {
        fail = true;
        goto stop;
    }
    printf ("aaaxd (remote-curve): pid %d, command %s (CURVE, server key "
            "%s), data %s; %zu keys bound with hal_curve_authorize in %.0f "
            "ms\n",
            (int) kc.pid, kc.cmd_ep, cc.server, kc.data, n + 1, auth_ms);
    fflush (stdout);

    /*  1. Sessions docked at once: CURVE, then plain (fresh kernels). */
    printf ("  sessions (each PINGs once per heartbeat period; the probe "
            "PINGs every %d us, %d s before they dock, %u s while docked):\n",
            S_REMOTE_PING_US, S_REMOTE_IDLE_MS / 1000, b->o.probe_s);
    s_remote_sessions (b, &kc, &cc, ctx, keys, n, &sr[0]);
    if (!s_interrupted)
        s_remote_sessions (b, &kp, &cp, ctx, keys, n, &sr[1]);
    else
        sr[1].fail = true;
    for (int i = 0; i < 2; i++) {
        const s_sess_res_t *r = &sr[i];
        printf ("  %s, %zu sessions:\n", i ? "plain" : "CURVE", n);
        printf ("    aaaxd VmRSS %" PRIu64 " KiB before, %" PRIu64
                " KiB docked, %" PRIu64 " KiB at the end: %.1f KiB per "
                "session (RssAnon %" PRIu64 " -> %" PRIu64 " KiB: %.1f)\n",
                r->rss0, r->rss1, r->rss2, r->per_kib, r->anon0, r->anon1,
                r->anon1 > r->anon0
                    ? (double) (r->anon1 - r->anon0) / (double) n
                    : 0.0);
        printf ("    probe, no sessions:  p50 %7.1f us  p99 %7.1f us  p99.9 "
                "%7.1f us  max %7.1f us  (%zu PINGs)\n",
                r->idle.p50, r->idle.p99, r->idle.p999, r->idle_max, r->nidle);
        printf ("    probe, %zu docked: %sp50 %7.1f us  p99 %7.1f us  p99.9 "
                "%7.1f us  max %7.1f us  (%zu PINGs)\n",
                n, r->fail ? "FAILED " : "", r->busy.p50, r->busy.p99,
                r->busy.p999, r->busy_max, r->nbusy);
        printf ("    sessions: %" PRIu64 " PINGs, %" PRIu64 " PONGs, %" PRIu64
                " errors (heartbeat_ms %u, longest gap between a session's "
                "PINGs %.0f ms); CTL list at the end: %zu of %zu docked",
                r->pings, r->pongs, r->errors, r->hb_ms, r->max_gap_ms,
                r->docked_end, n);
        if (i == 0)
            printf (", %zu with auth \"curve\"", r->curve_end);
        printf ("\n");
        printf ("    target: PING p99 < 5 ms with %zu sessions docked: %s "
                "(%.2f ms)\n",
                n,
                !r->fail && r->nbusy && r->busy.p99 < 5000 ? "met" : "NOT met",
                r->busy.p99 / 1000.0);
    }
    fflush (stdout);

    /*  2. Throughput: broadcast 1->1 through each kernel, and the raw
        pipelined echo plain and CURVE, in alternating rounds. */
    double t_k[2] = { 0, 0 }, t_r[2] = { 0, 0 }; /* seconds: plain, CURVE */
    uint64_t n_k[2] = { 0, 0 }, n_r[2] = { 0, 0 };
    bool fk[2] = { false, false }, fr[2] = { false, false };
    uint64_t lost_k = 0;
    uint64_t per = count / S_REMOTE_ROUNDS ? count / S_REMOTE_ROUNDS : 1;
    raws = (s_rttr_t *) calloc (2, sizeof *raws);
    runs = (s_run_t *) calloc (2, sizeof *runs);
    pr = (s_prtt_t *) calloc (2, sizeof *pr);
    for (int i = 0; i < 2; i++) {
        ur[i] = (double *) calloc (total, sizeof (double));
        up[i] = (double *) calloc (total, sizeof (double));
    }
    if (!raws || !runs || !pr || !ur[0] || !ur[1] || !up[0] || !up[1]) {
        fail = true;
        goto stop;
    }
    echo.ctx = b->rawctx;
    echo.keys = &rk;
    atomic_init (&echo.stop, 0);
    sem_init (&echo.ready, 0, 0);
    if (pthread_create (&echo_th, NULL, s_echo2_thread, &echo) != 0) {
        sem_destroy (&echo.ready);
        fail = true;
        goto stop;
    }
    echo_started = true;
    sem_wait (&echo.ready);
    if (echo.rc != 0) {
        fprintf (stderr, "bench: raw echo: setup failed\n");
        fail = true;
        goto stop;
    }
    raws[0].ext_ep = echo.ep[0];
    raws[1].ext_ep = echo.ep[1];
    raws[1].curve = &rk;
    raws_setup = true;
    for (int i = 0; i < 2; i++)
        if (s_rttr_setup (b, &raws[i]) != 0) {
            fprintf (stderr, "bench: raw %s echo: setup failed\n", kk[i]->name);
            fr[i] = true;
        }
    printf ("  broadcast 1->1 (WRITE %s, window %u, lead <= %d) and the raw "
            "echo pipelined (DEALER -> ROUTER -> DEALER, window %u): %d "
            "rounds of %" PRIu64 " messages, plain and CURVE alternating\n",
            S_CHAN_B, b->o.bwindow, S_BCAST_LEAD, b->o.bwindow, S_REMOTE_ROUNDS,
            per);
    fflush (stdout);
    for (int i = 0; i < 2; i++)
        s_cpu_snap (kk[i]->pid, &runs[i].c0);
    {
        uint64_t save = b->o.count;
        b->o.count = per;
        for (int round = 0; round < S_REMOTE_ROUNDS && !s_interrupted; round++)
            for (int j = 0; j < 2; j++) {
                int i = round % 2 ? 1 - j : j; /* who goes first alternates */
                uint64_t lost = 0;
                bool f1 = false;
                s_kern_enter (b, kk[i]);
                b->conn = conns[i];
                double rate = s_bcast_aaax (b, 1, &lost, &f1);
                b->conn = NULL;
                s_kern_leave (b, kk[i]);
                lost_k += lost;
                fk[i] |= f1 || rate <= 0;
                if (rate > 0) {
                    t_k[i] += (double) per / rate;
                    n_k[i] += per;
                }
                if (!fr[i]) {
                    double rr = s_rawpipe (&raws[i], per, b->o.bwindow);
                    fr[i] |= rr <= 0;
                    if (rr > 0) {
                        t_r[i] += (double) per / rr;
                        n_r[i] += per;
                    }
                }
            }
        b->o.count = save;
    }
    for (int i = 0; i < 2; i++)
        s_cpu_snap (kk[i]->pid, &runs[i].c1);
    double rate_k[2], rate_r[2], cpu_k[2];
    for (int i = 0; i < 2; i++) {
        fk[i] |= n_k[i] != per * S_REMOTE_ROUNDS;
        fr[i] |= n_r[i] != per * S_REMOTE_ROUNDS;
        rate_k[i] = !fk[i] && t_k[i] > 0 ? (double) n_k[i] / t_k[i] : 0;
        rate_r[i] = !fr[i] && t_r[i] > 0 ? (double) n_r[i] / t_r[i] : 0;
        cpu_k[i] = 0;
        for (size_t t = 0; t < runs[i].c1.n; t++)
            cpu_k[i] +=
                s_cpu_tid (&runs[i].c0, &runs[i].c1, runs[i].c1.t[t].tid);
    }
    for (int i = 0; i < 2; i++)
        printf ("  aaax %-5s  %s%10.0f msgs/s; aaaxd CPU %.2f s: %.2f us "
                "per message\n",
                kk[i]->name, fk[i] ? "FAILED " : "", rate_k[i], cpu_k[i],
                n_k[i] ? cpu_k[i] * 1e6 / (double) n_k[i] : 0.0);
    for (int i = 0; i < 2; i++)
        printf ("  raw  %-5s  %s%10.0f msgs/s\n", kk[i]->name,
                fr[i] ? "FAILED " : "", rate_r[i]);
    double tr_k = rate_k[0] > 0 ? rate_k[1] / rate_k[0] : 0;
    double tr_r = rate_r[0] > 0 ? rate_r[1] / rate_r[0] : 0;
    printf ("  ratio CURVE/plain: aaax %.3f  raw %.3f;  aaaxd CPU per message "
            "%.2f\n",
            tr_k, tr_r,
            cpu_k[0] > 0 && n_k[0] && n_k[1]
                ? (cpu_k[1] / (double) n_k[1]) / (cpu_k[0] / (double) n_k[0])
                : 0.0);
    for (int i = 0; i < 2; i++) {
        const s_run_t *one[1] = { &runs[i] };
        const char *nm[1] = { i ? "CURVE kernel, broadcast rounds"
                                : "plain kernel, broadcast rounds" };
        s_print_threads (kk[i]->pid, one, nm, 1, 0);
    }
    fflush (stdout);

    /*  3. Round trips: PING through each kernel, the raw echo plain and
        CURVE, alternating in blocks; the bench and both kernels on one
        CPU. On this 2-vCPU VM a round trip is fast or about 40 us slower
        depending on whether its threads wake each other across CPUs, and
        that placement sticks to a process for a while: unpinned, the PING
        ratio of two kernels came out anywhere from 0.5 to 1.7 in runs
        a minute apart. On one CPU a round trip costs the CPU work on its
        path, which is what CURVE changes. */
    size_t np[2] = { 0, 0 }, nr[2] = { 0, 0 };
    bool fp[2] = { false, false };
    cpu_set_t saved, one;
    int pin_cpu = -1;
    if (!b->o.no_pin && sched_getaffinity (0, sizeof saved, &saved) == 0
        && CPU_COUNT (&saved) > 1 && (pin_cpu = sched_getcpu ()) >= 0) {
        CPU_ZERO (&one);
        CPU_SET (pin_cpu, &one);
        if (s_pin_process (0, &one) == 0 || s_pin_process (kp.pid, &one) == 0
            || s_pin_process (kc.pid, &one) == 0) {
            s_pin_process (0, &saved);
            s_pin_process (kp.pid, &saved);
            s_pin_process (kc.pid, &saved);
            pin_cpu = -1;
        }
    }
    for (int i = 0; i < 2; i++) {
        pr[i].total = total;
        pr[i].warmup = b->o.warmup;
        pr[i].limit_s = b->o.limit_s;
        s_kern_enter (b, kk[i]);
        fp[i] = s_cli_open_own (&pr[i].c, conns[i], b->cmd_ep, "bench.rping",
                                NULL, 0)
                != 0;
        s_kern_leave (b, kk[i]);
        pr[i].fail = fp[i];
    }
    for (int turn = 0;
         !s_interrupted
         && ((!fp[0] && pr[0].next < total) || (!fp[1] && pr[1].next < total)
             || (!fr[0] && raws[0].next < total)
             || (!fr[1] && raws[1].next < total));
         turn++) {
        for (int j = 0; j < 2; j++) {
            int i = turn % 2 ? 1 - j : j; /* who goes first alternates */
            if (!fp[i] && s_prtt_block (&pr[i], blk, up[i], &np[i]) != 0)
                fp[i] = true;
        }
        for (int j = 0; j < 2; j++) {
            int i = turn % 2 ? 1 - j : j;
            if (!fr[i] && s_rttr_block (&raws[i], blk, ur[i], &nr[i]) != 0)
                fr[i] = true;
        }
    }
    if (pin_cpu >= 0) {
        s_pin_process (0, &saved);
        s_pin_process (kp.pid, &saved);
        s_pin_process (kc.pid, &saved);
    }
    s_lat_t lp[2], lr[2];
    for (int i = 0; i < 2; i++) {
        fp[i] |= s_interrupted || pr[i].next != total || pr[i].errs;
        if (pr[i].c.open)
            s_cli_close (&pr[i].c, true);
        s_lat_of (up[i], np[i], &lp[i]);
        s_lat_of (ur[i], nr[i], &lr[i]);
    }
    if (pin_cpu >= 0)
        printf ("  round trips, one in flight, the bench and both kernels on "
                "CPU %d (PING -> PONG through the kernel; raw: DEALER -> "
                "ROUTER echo, %u B):\n",
                pin_cpu, b->o.size);
    else
        printf ("  round trips, one in flight, not pinned to a CPU (PING -> "
                "PONG through the kernel; raw: DEALER -> ROUTER echo, %u "
                "B):\n",
                b->o.size);
    for (int i = 0; i < 2; i++) {
        char what[32];
        snprintf (what, sizeof what, "PING %s:", kk[i]->name);
        s_print_lat (what, &lp[i], np[i], fp[i], NULL);
    }
    for (int i = 0; i < 2; i++) {
        char what[32];
        snprintf (what, sizeof what, "raw %s:", kk[i]->name);
        s_print_lat (what, &lr[i], nr[i], fr[i], NULL);
    }
    printf ("  ratio CURVE/plain: PING p50 %.2f p99 %.2f;  raw p50 %.2f "
            "p99 %.2f\n",
            lp[0].p50 > 0 ? lp[1].p50 / lp[0].p50 : 0,
            lp[0].p99 > 0 ? lp[1].p99 / lp[0].p99 : 0,
            lr[0].p50 > 0 ? lr[1].p50 / lr[0].p50 : 0,
            lr[0].p99 > 0 ? lr[1].p99 / lr[0].p99 : 0);

    /*  The table and the SUMMARY lines. */
    char extra[512];
    s_result_t *res;
    s_remote_result (b, "remote_bcast", "CURVE bcast 1->1 (msg/s)", rate_k[1],
                     rate_k[0], "plain tcp", !fk[0] && !fk[1]);
    res = &b->res[b->nres - 1];
    snprintf (extra, sizeof extra,
              "\"rounds\":%d,\"plain_cpu_us_per_msg\":%.3f,"
              "\"curve_cpu_us_per_msg\":%.3f,\"raw_plain\":%.1f,"
              "\"raw_curve\":%.1f,\"raw_ratio\":%.4f",
              S_REMOTE_ROUNDS, n_k[0] ? cpu_k[0] * 1e6 / (double) n_k[0] : 0.0,
              n_k[1] ? cpu_k[1] * 1e6 / (double) n_k[1] : 0.0, rate_r[0],
              rate_r[1], tr_r);
    s_summary (b, res, "msgs/s", per * S_REMOTE_ROUNDS, lost_k, extra);
    s_remote_result (b, "remote_raw_echo", "CURVE raw echo (msgs/s)", rate_r[1],
                     rate_r[0], "raw plain", !fr[0] && !fr[1]);
    res = &b->res[b->nres - 1];
    s_summary (b, res, "msgs/s", per * S_REMOTE_ROUNDS, 0, "\"window\":1000");
    s_remote_result (b, "remote_ping_p50", "CURVE PING p50 (us)", lp[1].p50,
                     lp[0].p50, "plain tcp", !fp[0] && !fp[1]);
    res = &b->res[b->nres - 1];
    snprintf (extra, sizeof extra,
              "\"curve_p99\":%.1f,\"plain_p99\":%.1f,\"curve_p999\":%.1f,"
              "\"plain_p999\":%.1f,\"samples\":%u,\"pinned_cpu\":%d",
              lp[1].p99, lp[0].p99, lp[1].p999, lp[0].p999, b->o.samples,
              pin_cpu);
    s_summary (b, res, "us", total, 0, extra);
    s_remote_result (b, "remote_ping_p99", "CURVE PING p99 (us)", lp[1].p99,
                     lp[0].p99, "plain tcp", !fp[0] && !fp[1]);
    s_remote_result (b, "remote_raw_p50", "CURVE raw echo p50 (us)", lr[1].p50,
                     lr[0].p50, "raw plain", !fr[0] && !fr[1]);
    res = &b->res[b->nres - 1];
    snprintf (extra, sizeof extra,
              "\"curve_p99\":%.1f,\"plain_p99\":%.1f,\"samples\":%u,"
              "\"pinned_cpu\":%d",
              lr[1].p99, lr[0].p99, b->o.samples, pin_cpu);
    s_summary (b, res, "us", total, 0, extra);
    s_remote_result (b, "remote_raw_p99", "CURVE raw echo p99 (us)", lr[1].p99,
                     lr[0].p99, "raw plain", !fr[0] && !fr[1]);
    for (int i = 0; i < 2; i++) {
        const s_sess_res_t *r = &sr[i];
        char name[32], label[40], note[40];
        snprintf (name, sizeof name, "remote_sessions_%s",
                  i ? "plain" : "curve");
        snprintf (label, sizeof label, "%zu %s sess p99 (us)", n,
                  i ? "plain" : "CURVE");
        snprintf (note, sizeof note, "no sessions");
        s_remote_result (b, name, label, r->busy.p99, r->idle.p99, note,
                         !r->fail);
        res = &b->res[b->nres - 1];
        snprintf (res->target, sizeof res->target, "p99 < 5 ms");
        res->target_met = !r->fail && r->nbusy && r->busy.p99 < 5000;
        snprintf (
            extra, sizeof extra,
            "\"sessions\":%zu,\"p50\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
            "\"probe_pings\":%zu,\"idle_p50\":%.1f,\"idle_max\":%.1f,"
            "\"dock_ms\":%.1f,\"docked_end\":%zu,\"rss_before_kb\":%" PRIu64
            ",\"rss_docked_kb\":%" PRIu64
            ",\"kib_per_session\":%.2f,\"session_pings\":%" PRIu64
            ",\"session_pongs\":%" PRIu64,
            n, r->busy.p50, r->busy.p999, r->busy_max, r->nbusy, r->idle.p50,
            r->idle_max, r->dock_ms, r->docked_end, r->rss0, r->rss1,
            r->per_kib, r->pings, r->pongs);
        s_summary (b, res, "us", r->nbusy, r->pings - r->pongs, extra);
    }
    s_remote_result (b, "remote_session_mem", "CURVE RSS/session (KiB)",
                     sr[0].per_kib, sr[1].per_kib, "plain tcp",
                     !sr[0].fail && !sr[1].fail);
    res = &b->res[b->nres - 1];
    s_summary (b, res, "KiB/session", n, 0, NULL);
    for (int i = 0; i < 2; i++)
        fail |= sr[i].fail || fk[i] || fr[i] || fp[i];

stop:
    for (int i = 0; raws_setup && i < 2; i++)
        s_rttr_finish (&raws[i], true);
    if (echo_started) {
        atomic_store (&echo.stop, 1);
        pthread_join (echo_th, NULL);
        sem_destroy (&echo.ready);
    }
    s_kern_stop (b, &kc);
    s_kern_stop (b, &kp);
done:
    if (fail || s_interrupted)
        b->failed = true;
    b->app_cfg = false;
    b->curve_mode = NULL;
    b->conn = NULL;
    free (raws);
    free (runs);
    free (pr);
    for (int i = 0; i < 2; i++) {
        free (ur[i]);
        free (up[i]);
    }
    free (keys);
    if (ctx)
        zmq_ctx_term (ctx);
}

/*  ---- machine, table, options ------------------------------------------ */

static const char *
s_fs_type (const char *path)
{
    struct statfs sf;
    if (statfs (path, &sf) != 0)
        return "?";
    switch ((unsigned long) sf.f_type) {
    case 0xEF53UL: return "ext4";
    case 0x01021994UL: return "tmpfs";
    case 0x58465342UL: return "xfs";
    case 0x9123683EUL: return "btrfs";
    case 0x794C7630UL: return "overlayfs";
    default: return "other";
    }
}

static void
s_machine (const s_bench_t *b)
{
    struct utsname u;
    char cpu[128];
    peer_cpu_model (cpu, sizeof cpu);
    int maj, min, pat;
    zmq_version (&maj, &min, &pat);
    uname (&u);
    printf ("machine: nproc=%ld kernel=%s cpu=\"%s\" libzmq=%d.%d.%d "
            "lmdb=\"%s\" msgpack-c=%s tmp=%s (%s)\n",
            sysconf (_SC_NPROCESSORS_ONLN), u.release, cpu, maj, min, pat,
            mdb_version (NULL, NULL, NULL), msgpack_version (), b->tmp,
            s_fs_type (b->tmp));
}

static void
s_fmt (char *out, size_t size, double v)
{
    if (v <= 0)
        snprintf (out, size, "-");
    else if (v >= 1000)
        snprintf (out, size, "%.0f", v);
    else
        snprintf (out, size, "%.1f", v);
}

static void
s_table (const s_bench_t *b)
{
    printf ("\n%-24s | %10s | %-31s | %7s | %s\n", "workload", "aaax",
            "raw/floor", "ratio", "target");
    printf ("-------------------------+------------+-------------------------"
            "--------+---------+-------------------------------\n");
    for (size_t i = 0; i < b->nres; i++) {
        const s_result_t *r = &b->res[i];
        char a[32], base[32], note[48], tgt[80];
        s_fmt (a, sizeof a, r->aaax);
        s_fmt (base, sizeof base, r->base);
        snprintf (note, sizeof note, "(%s)", r->base_note);
        if (r->target_met < 0)
            snprintf (tgt, sizeof tgt, "%s", r->ok ? "-" : "FAILED");
        else
            snprintf (tgt, sizeof tgt, "%s: %s%s", r->target,
                      r->target_met ? "met" : "NOT met",
                      r->ok ? "" : " (FAILED)");
        printf ("%-24s | %10s | %10s %-20s | %7.3f | %s\n", r->label, a, base,
                note, r->ratio, tgt);
    }
}

static void
s_usage (FILE *f)
{
    fprintf (
        f,
        "usage: aaax_bench [options]\n"
        "\n"
        "Runs the same traffic through a real aaaxd (started here, fresh data\n"
        "dir, free loopback port) and through raw libzmq sockets or LMDB, and\n"
        "prints each figure, its baseline and the ratio. Exit status: 0 when\n"
        "everything sent was delivered and acknowledged, 1 when anything was\n"
        "lost or refused, 2 for bad options, 3 when aaaxd cannot be run.\n"
        "Figures are never checked against timings.\n"
        "\n"
        "  --aaaxd PATH     the kernel (default: $AAAXD, else ../aaaxd next "
        "to\n"
        "                   this binary)\n"
        "  --quick          a ~15 s run (fewer messages and samples)\n"
        "  --count N        messages per broadcast and work-queue run\n"
        "                   (default 3000000; --quick 800000)\n"
        "  --size B         payload bytes, >= 8 (default 100)\n"
        "  --samples N      mailbox round trips measured (default 20000;\n"
        "                   --quick 5000); warm-up is a tenth of it\n"
        "  --producers N    work-queue producers, 1..%d (default 2)\n"
        "  --consumers N    work-queue consumers, 1..%d (default 2)\n"
        "  --limit S        hard time limit of each measured phase, seconds\n"
        "                   (default 60; --quick 30)\n"
        "  --only LIST      run only these of broadcast,queue,rtt,gate,\n"
        "                   gate-rtt,app-msgs,app-idle-mem,app-load, or apps\n"
        "                   (the three app-host workloads; each starts its\n"
        "                   own kernel), remote (CURVE against plain tcp,\n"
        "                   sessions docked at once: two kernels of its\n"
        "                   own); gate: in-process decisions and\n"
        "                   decisions + audit, no kernel needed\n"
        "  --sessions N     remote sessions docked at once (default 1000)\n"
        "  --probe-s S      seconds of PING probe while they are docked\n"
        "                   (default 10; --quick 5)\n"
        "  --remote-count N broadcast messages plain and over CURVE, and\n"
        "                   through the raw echo (default 500000; --quick\n"
        "                   200000)\n"
        "  --no-pin         remote round trips: do not put the bench and\n"
        "                   both kernels on one CPU\n"
        "  --app-msgs N     messages to the app, and to the C consumer\n"
        "                   (default 200000; --quick 100000)\n"
        "  --apps N         generated apps loaded by app-idle-mem and\n"
        "                   app-load (default 1000)\n"
        "  --bench-apps DIR the bench's apps (default: the source tree's\n"
        "                   bench/apps)\n"
        "  --decisions N    in-process gate decisions per policy (default\n"
        "                   2000000; --quick 500000)\n"
        "  --audit N        gate decisions appended to the audit journal\n"
        "                   (default 64000; --quick 16000)\n"
        "  --gate-samples N gate round trips over tcp measured (default\n"
        "                   5000; --quick 2000); warm-up a tenth, >= 200\n"
        "  --rtt-block N    round trips per turn, aaax and raw alternating\n"
        "                   (default 500; 0: all aaax, then all raw)\n"
        "  --batch N        broadcast (workload 1): up to N messages per\n"
        "                   WRITE batch, subscribers SUB with batch (MSGS)\n"
        "                   (default 1: one WRITE per message)\n"
        "  --noreply        broadcast (workload 1): WRITE {noreply} (no OK,\n"
        "                   like a NATS PUB; paced by the subscribers)\n"
        "  --transient      mailbox round trip (workload 3): transient\n"
        "                   SENDs (pushed once, never stored, no ACK)\n"
        "  --keep           keep the temp dir (data, config, aaaxd log)\n"
        "  --help           this text\n",
        S_MAX_WORKERS, S_MAX_WORKERS);
}

static bool
s_parse_u64 (const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull (s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/*  --only: a comma-separated list of broadcast, queue, rtt, gate,
    gate-rtt, app-msgs, app-idle-mem, app-load, apps, remote. */
static bool
s_parse_only (const char *arg, unsigned *out)
{
    unsigned bits = 0;
    const char *p = arg;
    while (*p) {
        size_t n = strcspn (p, ",");
        if (n == 9 && strncmp (p, "broadcast", 9) == 0)
            bits |= S_W_BCAST;
        else if (n == 5 && strncmp (p, "queue", 5) == 0)
            bits |= S_W_QUEUE;
        else if (n == 3 && strncmp (p, "rtt", 3) == 0)
            bits |= S_W_RTT;
        else if (n == 4 && strncmp (p, "gate", 4) == 0)
            bits |= S_W_GATE;
        else if (n == 8 && strncmp (p, "gate-rtt", 8) == 0)
            bits |= S_W_GATE_RTT;
        else if (n == 8 && strncmp (p, "app-msgs", 8) == 0)
            bits |= S_W_APP_MSGS;
        else if (n == 12 && strncmp (p, "app-idle-mem", 12) == 0)
            bits |= S_W_APP_MEM;
        else if (n == 8 && strncmp (p, "app-load", 8) == 0)
            bits |= S_W_APP_LOAD;
        else if (n == 4 && strncmp (p, "apps", 4) == 0)
            bits |= S_W_APPS;
        else if (n == 6 && strncmp (p, "remote", 6) == 0)
            bits |= S_W_REMOTE;
        else
            return false;
        p += n + (p[n] == ',');
    }
    *out = bits;
    return bits != 0;
}

/*  0, 1 for --help, -1 on a bad option. */
static int
s_options (s_bench_t *b, int argc, char **argv)
{
    static const struct option longs[] = {
        { "aaaxd", required_argument, NULL, 'a' },
        { "quick", no_argument, NULL, 'q' },
        { "count", required_argument, NULL, 'n' },
        { "size", required_argument, NULL, 's' },
        { "samples", required_argument, NULL, 'S' },
        { "producers", required_argument, NULL, 'P' },
        { "consumers", required_argument, NULL, 'C' },
        { "limit", required_argument, NULL, 'l' },
        { "keep", no_argument, NULL, 'k' },
        { "only", required_argument, NULL, 'o' },
        { "rtt-block", required_argument, NULL, 'B' },
        { "decisions", required_argument, NULL, 'D' },
        { "audit", required_argument, NULL, 'A' },
        { "gate-samples", required_argument, NULL, 'G' },
        { "app-msgs", required_argument, NULL, 'M' },
        { "apps", required_argument, NULL, 'N' },
        { "bench-apps", required_argument, NULL, 'd' },
        { "sessions", required_argument, NULL, 'R' },
        { "probe-s", required_argument, NULL, 'p' },
        { "remote-count", required_argument, NULL, 'm' },
        { "no-pin", no_argument, NULL, 'x' },
        { "batch", required_argument, NULL, 'b' },
        { "transient", no_argument, NULL, 't' },
        { "noreply", no_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    s_opts_t *o = &b->o;
    uint64_t count = 0, size = 100, samples = 0, prod = 2, cons = 2, limit = 0;
    uint64_t rtt_block = 500, decisions = 0, audit = 0, gsamples = 0;
    uint64_t app_msgs = 0, apps = 1000;
    uint64_t sessions = 1000, probe_s = 0, remote_count = 0, wbatch = 1;
    int c, li = 0;
    while ((c = getopt_long (argc, argv, "", longs, &li)) != -1) {
        bool ok = true;
        switch (c) {
        case 'a': o->aaaxd = optarg; break;
        case 'q': o->quick = true; break;
        case 'n': ok = s_parse_u64 (optarg, 1, 100000000, &count); break;
        case 's': ok = s_parse_u64 (optarg, 8, 512 * 1024, &size); break;
        case 'S': ok = s_parse_u64 (optarg, 1, 10000000, &samples); break;
        case 'P': ok = s_parse_u64 (optarg, 1, S_MAX_WORKERS, &prod); break;
        case 'C': ok = s_parse_u64 (optarg, 1, S_MAX_WORKERS, &cons); break;
        case 'l': ok = s_parse_u64 (optarg, 1, 3600, &limit); break;
        case 'B': ok = s_parse_u64 (optarg, 0, 100000000, &rtt_block); break;
        case 'D': ok = s_parse_u64 (optarg, 1, 1000000000, &decisions); break;
        case 'A': ok = s_parse_u64 (optarg, 1, 100000000, &audit); break;
        case 'G': ok = s_parse_u64 (optarg, 1, 10000000, &gsamples); break;
        case 'M': ok = s_parse_u64 (optarg, 1, 100000000, &app_msgs); break;
        case 'N': ok = s_parse_u64 (optarg, 1, 10000, &apps); break;
        case 'd': o->apps_dir = optarg; break;
        case 'R': ok = s_parse_u64 (optarg, 1, 10000, &sessions); break;
        case 'p': ok = s_parse_u64 (optarg, 1, 600, &probe_s); break;
        case 'm': ok = s_parse_u64 (optarg, 2, 100000000, &remote_count); break;
        case 'k': o->keep = true; break;
        case 'x': o->no_pin = true; break;
        case 'b': ok = s_parse_u64 (optarg, 1, AAAX_MAX_BATCH, &wbatch); break;
        case 't': o->transient = true; break;
        case 'r': o->noreply = true; break;
        case 'o': ok = s_parse_only (optarg, &o->only); break;
        case 'h': s_usage (stdout); return 1;
        default: s_usage (stderr); return -1;
        }
        if (!ok) {
            fprintf (stderr, "aaax_bench: bad value for --%s: %s\n",
                     longs[li].name, optarg);
            s_usage (stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "aaax_bench: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (!o->only)
        o->only = S_W_ALL;
    o->count = count ? count : o->quick ? 800000 : 3000000;
    o->size = (uint32_t) size;
    o->samples = (uint32_t) (samples ? samples : o->quick ? 5000 : 20000);
    o->warmup = o->samples / 10 ? o->samples / 10 : 1;
    o->producers = (uint32_t) prod;
    o->consumers = (uint32_t) cons;
    o->bwindow = 1000;
    o->wbatch = (uint32_t) wbatch;
    o->qwindow = 2000;
    o->limit_s = (int) (limit ? limit : o->quick ? 30 : 60);
    o->rtt_block = (uint32_t) rtt_block;
    o->decisions = decisions ? decisions : o->quick ? 500000 : 2000000;
    o->audit_records = audit ? audit : o->quick ? 16000 : 64000;
    o->gate_samples = (uint32_t) (gsamples ? gsamples : o->quick ? 2000 : 5000);
    o->app_msgs = app_msgs ? app_msgs : o->quick ? 100000 : 200000;
    o->apps = (size_t) apps;
    o->sessions = (size_t) sessions;
    o->probe_s = (uint32_t) (probe_s ? probe_s : o->quick ? 5 : 10);
    o->remote_count = remote_count ? remote_count : o->quick ? 200000 : 500000;
    return 0;
}

/*  The kernel binary: --aaaxd, $AAAXD, or ../aaaxd beside this binary. */
static void
s_find_aaaxd (s_bench_t *b)
{
    const char *env = getenv ("AAAXD");
    if (b->o.aaaxd)
        snprintf (b->aaaxd, sizeof b->aaaxd, "%s", b->o.aaaxd);
    else if (env && *env)
        snprintf (b->aaaxd, sizeof b->aaaxd, "%s", env);
    else {
        char self[PATH_MAX];
        ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
        if (n < 0)
            n = 0;
        self[n] = 0;
        char *slash = strrchr (self, '/');
        if (slash)
            *slash = 0;
        snprintf (b->aaaxd, sizeof b->aaaxd, "%.4000s/../aaaxd", self);
    }
}

/*  What every run needs before its first kernel: our signal handlers, not
    czmq's (Ctrl-C still stops aaaxd and cleans up), and a temp dir
    $TMPDIR/PREFIX-XXXXXX with the paths of the data dir, config and log.
    0, or -1 with a message on stderr. */
static int
s_prepare (s_bench_t *b, const char *prefix)
{
    zsys_handler_set (NULL);
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);

    const char *tmpdir = getenv ("TMPDIR");
    snprintf (b->tmp, sizeof b->tmp, "%.3000s/%.100s-XXXXXX",
              tmpdir && *tmpdir ? tmpdir : "/tmp", prefix);
    if (!mkdtemp (b->tmp)) {
        fprintf (stderr, "%s: cannot make a temp dir: %s\n", prefix,
                 strerror (errno));
        return -1;
    }
    snprintf (b->data, sizeof b->data, "%.4000s/data", b->tmp);
    snprintf (b->cfg, sizeof b->cfg, "%.4000s/bench.lua", b->tmp);
    snprintf (b->log, sizeof b->log, "%.4000s/aaaxd.log", b->tmp);
    return 0;
}

/*  aaax_bench's main (aaax_bench_main.c): every workload selected by the
    options, the table, the exit status. */
int
aaax_bench_main (int argc, char **argv)
{
    static s_bench_t bench;
    s_bench_t *b = &bench;
    int orc = s_options (b, argc, argv);
    if (orc != 0)
        return orc > 0 ? 0 : 2;
    s_find_aaaxd (b);
#ifdef AAAX_APPS_DIR
    snprintf (b->apps_dir, sizeof b->apps_dir, "%s",
              b->o.apps_dir ? b->o.apps_dir : AAAX_APPS_DIR "/../bench/apps");
#else
    snprintf (b->apps_dir, sizeof b->apps_dir, "%s",
              b->o.apps_dir ? b->o.apps_dir : "bench/apps");
#endif
    if (access (b->aaaxd, X_OK) != 0) {
        fprintf (stderr,
                 "aaax_bench: no kernel at %s (use --aaaxd or "
                 "AAAXD)\n",
                 b->aaaxd);
        return 3;
    }

    if (s_prepare (b, "aaax-bench") != 0)
        return 3;

    printf ("aaax_bench %s: kernel %s, %s mode, %" PRIu64 " messages, %u B "
            "payloads, %u round trips, limit %d s per phase; gate: %" PRIu64
            " decisions, %" PRIu64 " audited, %u round trips; apps: %" PRIu64
            " messages, %zu apps; remote: %zu sessions, %" PRIu64 " messages\n",
            AAAX_VERSION_STRING, b->aaaxd, b->o.quick ? "quick" : "full",
            b->o.count, b->o.size, b->o.samples, b->o.limit_s, b->o.decisions,
            b->o.audit_records, b->o.gate_samples, b->o.app_msgs, b->o.apps,
            b->o.sessions, b->o.remote_count);
    s_machine (b);
    fflush (stdout);

    int rc = 0;
    bool kernel = (b->o.only & S_W_KERNEL) != 0;
    zsys_init ();
    b->rawctx = zmq_ctx_new ();
    if (!b->rawctx) {
        rc = 3;
        goto cleanup;
    }
    /*  In-process, before the kernel runs: nothing else in the machine. */
    if (!s_interrupted && (b->o.only & S_W_GATE))
        s_workload_gate (b);
    if (kernel && s_kernel_start (b) != 0) {
        rc = 3;
        goto cleanup;
    }
    if (kernel)
        printf ("aaaxd: pid %d, command %s, data %s\n", (int) b->pid, b->cmd_ep,
                b->data);

    if (!s_interrupted && (b->o.only & S_W_BCAST))
        s_workload_bcast (b, 1);
    if (!s_interrupted && (b->o.only & S_W_BCAST))
        s_workload_bcast (b, 4);
    if (!s_interrupted && (b->o.only & S_W_QUEUE))
        s_workload_queue (b);
    if (!s_interrupted && (b->o.only & S_W_RTT))
        s_workload_rtt (b);
    if (!s_interrupted && (b->o.only & S_W_GATE_RTT))
        s_workload_gate_rtt (b);

    printf ("\n");
    if (kernel && s_kernel_stop (b) != 0)
        b->failed = true;
    else if (kernel)
        printf ("aaaxd: stopped with SIGTERM, exit status 0\n");

    /*  The app host: each workload runs its own kernel(s), stopped with
        SIGTERM (exit status 0 required) before the next. */
    if (!s_interrupted && (b->o.only & S_W_APP_MSGS))
        s_workload_app_msgs (b);
    if (!s_interrupted && (b->o.only & S_W_APP_MEM))
        s_workload_app_mem (b);
    if (!s_interrupted && (b->o.only & S_W_APP_LOAD))
        s_workload_app_load (b);
    if (b->o.only & S_W_APPS)
        printf ("\n");

    /*  CURVE against plain tcp: two kernels of its own, stopped as the
        others. */
    if (!s_interrupted && (b->o.only & S_W_REMOTE)) {
        s_workload_remote (b);
        printf ("\n");
    }

    s_table (b);
    s_machine (b);
    if (s_interrupted) {
        printf ("\ninterrupted\n");
        b->failed = true;
    }
    printf ("\nresult: %s\n", b->failed ? "FAILED: something was lost, "
                                          "refused or timed out (see above)"
                                        : "everything sent was "
                                          "delivered and acknowledged");
    rc = b->failed ? 1 : 0;

cleanup:
    if (b->pid > 0)
        s_kernel_stop (b);
    if (b->rawctx)
        zmq_ctx_term (b->rawctx);
    if (b->o.keep)
        printf ("kept %s\n", b->tmp);
    else
        nftw (b->tmp, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    fflush (stdout);
    return rc;
}

/*  ---- bench_aaax.h: the workloads as functions, for aaax_vs -------------
    Thin wrappers over the static workload code above: one run of one
    workload against the kernel of bench_aaax_start, or of its raw libzmq
    baseline, with aaax_bench's defaults for everything not given. */

struct bench_aaax {
    s_bench_t b;
};

bench_aaax_t *
bench_aaax_new (const char *aaaxd)
{
    bench_aaax_t *x = (bench_aaax_t *) calloc (1, sizeof *x);
    if (!x)
        return NULL;
    s_bench_t *b = &x->b;
    b->o.aaaxd = aaaxd;
    s_find_aaaxd (b);
    if (access (b->aaaxd, X_OK) != 0) {
        fprintf (stderr, "bench: no kernel at %s (use --aaaxd or AAAXD)\n",
                 b->aaaxd);
        free (x);
        return NULL;
    }
    b->o.count = 100000;
    b->o.size = 100;
    b->o.samples = 20000;
    b->o.warmup = 2000;
    b->o.producers = 2;
    b->o.consumers = 2;
    b->o.bwindow = 1000;
    b->o.qwindow = 2000;
    b->o.limit_s = 60;
    b->o.only = S_W_KERNEL;

    if (s_prepare (b, "aaax-vs") != 0) {
        free (x);
        return NULL;
    }
    zsys_init ();
    b->rawctx = zmq_ctx_new ();
    if (!b->rawctx) {
        bench_aaax_destroy (&x);
        return NULL;
    }
    return x;
}

void
bench_aaax_destroy (bench_aaax_t **xp)
{
    bench_aaax_t *x = *xp;
    if (!x)
        return;
    s_bench_t *b = &x->b;
    if (b->pid > 0)
        s_kernel_stop (b);
    if (b->rawctx)
        zmq_ctx_term (b->rawctx);
    nftw (b->tmp, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free (x);
    *xp = NULL;
}

const char *
bench_aaax_version (void)
{
    return AAAX_VERSION_STRING;
}

bool
bench_aaax_interrupted (void)
{
    return s_interrupted != 0;
}

void
bench_aaax_limit (bench_aaax_t *x, int limit_s)
{
    x->b.o.limit_s = limit_s;
}

void
bench_aaax_server_cpus (bench_aaax_t *x, const cpu_set_t *set)
{
    s_bench_t *b = &x->b;
    b->srv_pin = set != NULL;
    CPU_ZERO (&b->srv_cpus);
    if (set)
        memcpy (&b->srv_cpus, set, sizeof b->srv_cpus);
}

int
bench_aaax_start (bench_aaax_t *x)
{
    s_bench_t *b = &x->b;
    if (b->pid > 0)
        s_kernel_stop (b);
    nftw (b->data, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return s_kernel_start (b);
}

pid_t
bench_aaax_pid (const bench_aaax_t *x)
{
    return x->b.pid;
}

int
bench_aaax_stop (bench_aaax_t *x)
{
    return s_kernel_stop (&x->b);
}

/*  One broadcast run of fn (s_bcast_aaax or s_bcast_raw). */
static double
s_bcast_run (bench_aaax_t *x, int nsubs, uint64_t count, uint32_t size,
             bool *ok, double (*fn) (s_bench_t *, int, uint64_t *, bool *))
{
    s_bench_t *b = &x->b;
    uint64_t lost = 0;
    bool fail = false;
    b->o.count = count;
    b->o.size = size;
    if (nsubs < 1 || nsubs > S_MAX_SUBS) {
        *ok = false;
        return 0;
    }
    double r = fn (b, nsubs, &lost, &fail);
    *ok = !fail && !lost;
    return r;
}

double
bench_aaax_bcast (bench_aaax_t *x, int nsubs, uint64_t count, uint32_t size,
                  bool *ok)
{
    return s_bcast_run (x, nsubs, count, size, ok, s_bcast_aaax);
}

double
bench_raw_bcast (bench_aaax_t *x, int nsubs, uint64_t count, uint32_t size,
                 bool *ok)
{
    return s_bcast_run (x, nsubs, count, size, ok, s_bcast_raw);
}

double
bench_aaax_queue (bench_aaax_t *x, uint64_t count, uint32_t size, double *floor,
                  bool *ok)
{
    s_bench_t *b = &x->b;
    b->o.count = count;
    b->o.size = size;
    b->nres = 0;
    b->failed = false;
    s_workload_queue (b);
    *ok = !b->failed && b->nres == 1 && b->res[0].ok;
    *floor = b->nres == 1 ? b->res[0].base : 0;
    return b->nres == 1 && *ok ? b->res[0].aaax : 0;
}

static void
s_lat_out (double *us, size_t n, bench_lat_t *lat)
{
    s_lat_t l;
    s_lat_of (us, n, &l);
    lat->p50 = l.p50;
    lat->p99 = l.p99;
    lat->p999 = l.p999;
    lat->mean = l.mean;
    lat->n = n;
}

int
bench_aaax_rtt (bench_aaax_t *x, uint32_t samples, uint32_t size,
                bench_lat_t *lat)
{
    s_bench_t *b = &x->b;
    b->o.size = size;
    b->o.samples = samples;
    b->o.warmup = samples / 10 ? samples / 10 : 1;
    uint32_t total = b->o.warmup + samples;
    double *us = (double *) calloc (total, sizeof (double));
    s_rtta_t *a = (s_rtta_t *) calloc (1, sizeof *a);
    size_t n = 0;
    memset (lat, 0, sizeof *lat);
    bool fail =
        !us || !a || s_rtta_setup (b, a, b->o.warmup, b->o.samples) != 0;
    if (!fail && s_rtta_block (a, total, us, &n) != 0)
        fail = true;
    if (a && s_rtta_finish (a, !fail) != 0)
        fail = true;
    if (!fail && n != samples)
        fail = true;
    if (us)
        s_lat_out (us, n, lat);
    free (a);
    free (us);
    return fail ? -1 : 0;
}

int
bench_raw_rtt (bench_aaax_t *x, uint32_t samples, uint32_t size,
               bench_lat_t *lat)
{
    s_bench_t *b = &x->b;
    b->o.size = size;
    b->o.samples = samples;
    b->o.warmup = samples / 10 ? samples / 10 : 1;
    uint32_t total = b->o.warmup + samples;
    double *us = (double *) calloc (total, sizeof (double));
    s_rttr_t *r = (s_rttr_t *) calloc (1, sizeof *r);
    size_t n = 0;
    memset (lat, 0, sizeof *lat);
    bool fail = !us || !r || s_rttr_setup (b, r) != 0;
    if (!fail && s_rttr_block (r, total, us, &n) != 0)
        fail = true;
    if (r && s_rttr_finish (r, !fail) != 0)
        fail = true;
    if (!fail && n != samples)
        fail = true;
    if (us)
        s_lat_out (us, n, lat);
    free (r);
    free (us);
    return fail ? -1 : 0;
}

void
bench_aaax_batch (bench_aaax_t *x, uint32_t batch)
{
    x->b.o.wbatch = batch;
}

void
bench_aaax_transient (bench_aaax_t *x, bool transient)
{
    x->b.o.transient = transient;
}

void
bench_aaax_noreply (bench_aaax_t *x, bool noreply)
{
    x->b.o.noreply = noreply;
}
