/*  act_kernel.c — the shared policy, the kernel actors' connection and
    serving loop (see act_kernel.h). */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "act_kernel.h"
#include "hal_clock.h"

/*  ---- the shared policy ----------------------------------------------- */

struct _act_policy_t {
    pthread_mutex_t lock;
    policy_t *current;
    _Atomic uint64_t version;
};

act_policy_t *
act_policy_new (void)
{
    act_policy_t *self = (act_policy_t *) calloc (1, sizeof *self);
    if (self)
        pthread_mutex_init (&self->lock, NULL);
    return self;
}

void
act_policy_destroy (act_policy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    act_policy_t *self = *self_p;
    policy_destroy (&self->current);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

uint64_t
act_policy_set (act_policy_t *self, const policy_t *src)
{
    policy_t *copy = policy_clone (src);
    if (!copy)
        return 0;
    pthread_mutex_lock (&self->lock);
    policy_destroy (&self->current);
    self->current = copy;
    uint64_t v = atomic_load (&self->version) + 1;
    atomic_store (&self->version, v);
    pthread_mutex_unlock (&self->lock);
    return v;
}

policy_t *
act_policy_take (act_policy_t *self, uint64_t *version)
{
    if (atomic_load (&self->version) == *version)
        return NULL;
    pthread_mutex_lock (&self->lock);
    policy_t *copy = self->current ? policy_clone (self->current) : NULL;
    if (copy)
        *version = atomic_load (&self->version);
    pthread_mutex_unlock (&self->lock);
    return copy;
}

/*  ---- connection ------------------------------------------------------ */

struct _act_conn_t {
    chan_client_t *client;
    char *token; /* sodium_malloc'd */
    char system[AAAX_MAX_NAME + 1];
    bool docked;
};

act_conn_t *
act_conn_new (const act_ctx_t *ctx, const char *system)
{
    act_conn_t *self = (act_conn_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    snprintf (self->system, sizeof self->system, "%s", system);
    self->token = (char *) sodium_malloc (65);
    self->client = chan_client_new ("inproc://aaax", 10000);
    if (!self->token || !self->client) {
        act_conn_destroy (&self);
        return NULL;
    }
    memcpy (self->token, ctx->kernel_token, 64);
    self->token[64] = 0;
    int linger = 0;
    zmq_setsockopt (chan_client_socket (self->client), ZMQ_LINGER, &linger,
                    sizeof linger);
    return self;
}

void
act_conn_destroy (act_conn_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    act_conn_t *self = *self_p;
    chan_client_destroy (&self->client);
    if (self->token)
        sodium_free (self->token);
    free (self);
    *self_p = NULL;
}

chan_client_t *
act_conn_client (act_conn_t *self)
{
    return self->client;
}

const char *
act_conn_system (const act_conn_t *self)
{
    return self->system;
}

int
act_conn_dock (act_conn_t *self, const char **subs, size_t nsubs)
{
    chan_reply_t reply;
    int rc = chan_client_hello (self->client, self->system, self->token, true,
                                NULL, 0, &reply);
    if (rc == AAAX_ETIMEDOUT || rc == AAAX_EIO)
        return rc;
    if (rc) {
        char why[160];
        zsys_error ("%s: cannot dock: %s", self->system,
                    chan_reply_reason (&reply, why, sizeof why));
        chan_reply_fini (&reply);
        return rc;
    }
    chan_reply_fini (&reply);
    for (size_t i = 0; i < nsubs; i++) {
        chan_body_t b;
        chan_body_init (&b);
        chan_body_str (&b, "chan", subs[i]);
        rc = chan_client_call (self->client, "SUB", &b, &reply);
        chan_body_fini (&b);
        if (rc)
            return rc;
        int code = chan_reply_code (&reply);
        if (code) {
            char why[160];
            zsys_error ("%s: cannot subscribe to %s: %s", self->system, subs[i],
                        chan_reply_reason (&reply, why, sizeof why));
            chan_reply_fini (&reply);
            return chan_client_error_of (code);
        }
        chan_reply_fini (&reply);
    }
    self->docked = true;
    return 0;
}

/*  ---- answers -------------------------------------------------------- */

void
act_batch_init (act_batch_t *b, act_conn_t *conn, const char *chan)
{
    memset (b, 0, sizeof *b);
    b->conn = conn;
    b->chan = chan;
}

static void
s_send_body (chan_body_t *body, const char *to, const char *corr,
             const void *data, size_t len)
{
    chan_body_init (body);
    chan_body_str (body, "to", to);
    if (corr)
        chan_body_str (body, "corr", corr);
    chan_body_raw (body, "data", data, len);
}

static void
s_check_answer (act_conn_t *conn, int rc, chan_reply_t *reply, const char *what)
{
    if (rc) {
        zsys_warning ("%s: %s: no answer (%s)", conn->system, what,
                      aaax_strerror (rc));
        return;
    }
    int code = chan_reply_code (reply);
    if (code) {
        char why[160];
        zsys_warning ("%s: %s refused (%d): %s", conn->system, what, code,
                      chan_reply_reason (reply, why, sizeof why));
        if (code == 401)
            conn->docked = false;
    }
    chan_reply_fini (reply);
}

void
act_batch_send (act_batch_t *b, const char *to, const char *corr,
                const void *data, size_t len)
{
    if (b->nsends == sizeof b->sends / sizeof b->sends[0])
        act_batch_finish (b);
    chan_body_t body;
    s_send_body (&body, to, corr, data, len);
    uint64_t req;
    if (chan_client_send (b->conn->client, "SEND", &body, &req) == 0)
        b->sends[b->nsends++] = req;
    else
        zsys_warning ("%s: cannot answer %s", b->conn->system, to);
    chan_body_fini (&body);
}

void
act_batch_ack (act_batch_t *b, const char *id)
{
    if (b->nids == sizeof b->ids / sizeof b->ids[0])
        act_batch_finish (b);
    snprintf (b->idbuf[b->nids], sizeof b->idbuf[0], "%s", id);
    b->ids[b->nids] = b->idbuf[b->nids];
    b->nids++;
}

void
act_batch_finish (act_batch_t *b)
{
    for (size_t i = 0; i < b->nsends; i++) {
        chan_reply_t reply;
        int rc = chan_client_wait (b->conn->client, b->sends[i], &reply);
        s_check_answer (b->conn, rc, &reply, "SEND");
    }
    b->nsends = 0;
    if (b->nids) {
        chan_body_t body;
        chan_body_init (&body);
        chan_body_str (&body, "chan", b->chan);
        chan_body_strv (&body, "ids", b->ids, b->nids);
        chan_reply_t reply;
        int rc = chan_client_call (b->conn->client, "ACK", &body, &reply);
        chan_body_fini (&body);
        s_check_answer (b->conn, rc, &reply, "ACK");
        b->nids = 0;
    }
}

int
act_send_now (act_conn_t *conn, const char *to, const char *corr,
              const void *data, size_t len)
{
    chan_body_t body;
    s_send_body (&body, to, corr, data, len);
    chan_reply_t reply;
    int rc = chan_client_call (conn->client, "SEND", &body, &reply);
    chan_body_fini (&body);
    if (rc == 0) {
        int code = chan_reply_code (&reply);
        if (code)
            rc = chan_client_error_of (code);
        s_check_answer (conn, 0, &reply, "SEND");
    }
    return rc;
}

int
act_write (act_conn_t *conn, const char *chan, const void *data, size_t len)
{
    chan_body_t body;
    chan_body_init (&body);
    chan_body_str (&body, "chan", chan);
    chan_body_raw (&body, "data", data, len);
    chan_reply_t reply;
    int rc = chan_client_call (conn->client, "WRITE", &body, &reply);
    chan_body_fini (&body);
    if (rc == 0) {
        int code = chan_reply_code (&reply);
        if (code)
            rc = chan_client_error_of (code);
        s_check_answer (conn, 0, &reply, "WRITE");
    }
    return rc;
}

int
act_ctl (act_conn_t *conn, const char *op, chan_body_t *body,
         chan_reply_t *reply)
{
    chan_body_t own;
    if (!body) {
        chan_body_init (&own);
        body = &own;
    }
    chan_body_str (body, "op", op);
    int rc = chan_client_call (conn->client, "CTL", body, reply);
    if (body == &own)
        chan_body_fini (&own);
    if (rc)
        return rc;
    int code = chan_reply_code (reply);
    return code ? chan_client_error_of (code) : 0;
}

const char *
act_get_str (const msgpack_object *map, const char *key, char *buf, size_t size)
{
    const char *p;
    size_t len;
    if (!map || map->type != MSGPACK_OBJECT_MAP
        || !chan_obj_get_str (map, key, &p, &len) || len >= size)
        return NULL;
    memcpy (buf, p, len);
    buf[len] = 0;
    /*  A string with a NUL inside is not a name. */
    if (memchr (buf, 0, len))
        return NULL;
    return buf;
}

void
act_claimed_each (const chan_reply_t *reply, act_req_fn *fn, void *arg)
{
    const msgpack_object *msgs = chan_obj_get (&reply->body, "msgs");
    if (!msgs || msgs->type != MSGPACK_OBJECT_ARRAY)
        return;
    for (uint32_t i = 0; i < msgs->via.array.size; i++) {
        const msgpack_object *env = &msgs->via.array.ptr[i];
        act_req_t req;
        memset (&req, 0, sizeof req);
        req.id = act_get_str (env, "id", req.idbuf, sizeof req.idbuf);
        req.from = act_get_str (env, "from", req.frombuf, sizeof req.frombuf);
        req.data = chan_obj_get (env, "data");
        if (req.id && req.from)
            fn (arg, &req);
    }
}

typedef struct {
    act_batch_t batch;
    act_one_fn *fn;
    void *self;
} s_each_t;

static void
s_each_one (void *arg, act_req_t *req)
{
    s_each_t *e = (s_each_t *) arg;
    e->fn (e->self, &e->batch, req);
    act_batch_ack (&e->batch, req->id);
}

void
act_batch_each (act_conn_t *conn, const char *queue, const chan_reply_t *claim,
                act_one_fn *fn, void *self)
{
    s_each_t e;
    act_batch_init (&e.batch, conn, queue);
    e.fn = fn;
    e.self = self;
    act_claimed_each (claim, s_each_one, &e);
    act_batch_finish (&e.batch);
}

/*  ---- serving -------------------------------------------------------- */

void
act_wait_term (zsock_t *pipe)
{
    char *cmd;
    while ((cmd = zstr_recv (pipe))) {
        bool term = streq (cmd, "$TERM");
        zstr_free (&cmd);
        if (term)
            break;
    }
}

#define S_CLAIM_MAX 64
#define S_CLAIM_WAIT_MS 1000

void
act_serve (zsock_t *pipe, act_conn_t *conn, const char **queues, size_t nqueues,
           const char **subs, size_t nsubs, const act_ops_t *ops, void *self)
{
    uint64_t claim_req[4] = { 0 };
    bool claim_out[4] = { false };
    if (nqueues > 4)
        nqueues = 4;
    int64_t retry_at = 0;
    void *sock = chan_client_socket (conn->client);
    for (;;) {
        int64_t now = hal_clock_mono_ms ();
        if (!conn->docked && now >= retry_at) {
            memset (claim_out, 0, sizeof claim_out);
            if (act_conn_dock (conn, subs, nsubs) == 0) {
                if (ops->docked)
                    ops->docked (self);
            } else
                retry_at = now + 500;
        }
        if (conn->docked)
            for (size_t q = 0; q < nqueues; q++) {
                if (claim_out[q])
                    continue;
                chan_body_t b;
                chan_body_init (&b);
                chan_body_str (&b, "chan", queues[q]);
                chan_body_uint (&b, "max", S_CLAIM_MAX);
                chan_body_uint (&b, "wait_ms", S_CLAIM_WAIT_MS);
                if (chan_client_send (conn->client, "CLAIM", &b, &claim_req[q])
                    == 0)
                    claim_out[q] = true;
                chan_body_fini (&b);
            }
        /*  What has arrived, kept messages first. */
        chan_reply_t r;
        while (chan_client_recv (conn->client, &r, 0) == 0) {
            uint64_t req;
            bool is_push = streq (r.cmd, "MSG") || streq (r.cmd, "DROPPED");
            if (is_push) {
                if (ops->push && streq (r.cmd, "MSG"))
                    ops->push (self, &r);
                else if (streq (r.cmd, "DROPPED"))
                    zsys_warning ("%s: dropped from a subscription",
                                  conn->system);
                chan_reply_fini (&r);
                continue;
            }
            if (chan_obj_get_uint (&r.body, "req", &req))
                for (size_t q = 0; q < nqueues; q++)
                    if (claim_out[q] && claim_req[q] == req) {
                        claim_out[q] = false;
                        int code = chan_reply_code (&r);
                        if (code) {
                            char why[160];
                            zsys_warning (
                                "%s: CLAIM %s refused (%d): %s", conn->system,
                                queues[q], code,
                                chan_reply_reason (&r, why, sizeof why));
                            if (code == 401)
                                conn->docked = false;
                        } else if (ops->batch)
                            ops->batch (self, queues[q], &r);
                        break;
                    }
            chan_reply_fini (&r);
        }
        now = hal_clock_mono_ms ();
        int64_t next = ops->tick ? ops->tick (self, now) : INT64_MAX;
        if (!conn->docked && retry_at < next)
            next = retry_at;
        /*  Look again at once when tick's calls kept a message (the socket
            will not say so) or a CLAIM is to be sent. */
        bool again = chan_client_kept (conn->client) > 0;
        for (size_t q = 0; q < nqueues; q++)
            if (conn->docked && !claim_out[q])
                again = true;
        long timeout = next == INT64_MAX ? 1000 : (long) (next - now);
        if (timeout < 0 || again)
            timeout = 0;
        if (timeout > 1000)
            timeout = 1000;
        zmq_pollitem_t items[2 + 16] = { { zsock_resolve (pipe), 0, ZMQ_POLLIN,
                                           0 },
                                         { sock, 0, ZMQ_POLLIN, 0 } };
        size_t nitems = 2;
        if (ops->watch) {
            void *socks[16];
            size_t n = ops->watch (self, socks, 16);
            for (size_t i = 0; i < n; i++)
                items[nitems++] =
                    (zmq_pollitem_t){ socks[i], 0, ZMQ_POLLIN, 0 };
        }
        int rc = zmq_poll (items, (int) nitems, timeout);
        if (rc < 0)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *cmd = zstr_recv (pipe);
            bool term = !cmd || streq (cmd, "$TERM");
            zstr_free (&cmd);
            if (term)
                break;
        }
    }
}
