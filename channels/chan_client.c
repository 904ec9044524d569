/*  chan_client.c — protocol client over a DEALER (see chan_client.h). */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>
#include <sodium.h>

#include "aaax.h"
#include "chan_client.h"
#include "hal_clock.h"

#define S_Z85_LEN 40
#define S_REDOCK_FIRST_MS 100
#define S_REDOCK_MAX_MS 5000

struct _chan_client_t {
    void *sock;
    int timeout_ms;
    uint64_t next_req;
    uint32_t heartbeat_ms;
    zlistx_t *kept; /* chan_reply_t * not yet taken */
    char *endpoint;
    bool curve;
    char server_key[S_Z85_LEN + 1];
    char public_key[S_Z85_LEN + 1];
    char secret_key[S_Z85_LEN + 1];
    int64_t last_rx; /* mono ms: the last message read, or the socket made */
    /*  The last successful HELLO, for chan_client_redock. */
    char *system;
    char *token; /* the session token of a privileged HELLO */
    bool privileged;
    char **channels;
    size_t nchannels;
    char session[65];
};

/*  ---- bodies ---------------------------------------------------------- */

void
chan_body_init (chan_body_t *b)
{
    chan_buf_init (&b->buf);
    chan_buf_packer (&b->buf, &b->pk);
    b->n = 0;
}

void
chan_body_fini (chan_body_t *b)
{
    chan_buf_fini (&b->buf);
}

msgpack_packer *
chan_body_key (chan_body_t *b, const char *key)
{
    chan_pack_cstr (&b->pk, key);
    b->n++;
    return &b->pk;
}

void
chan_body_str (chan_body_t *b, const char *key, const char *value)
{
    chan_pack_cstr (chan_body_key (b, key), value);
}

void
chan_body_uint (chan_body_t *b, const char *key, uint64_t value)
{
    msgpack_pack_uint64 (chan_body_key (b, key), value);
}

void
chan_body_bool (chan_body_t *b, const char *key, bool value)
{
    msgpack_packer *pk = chan_body_key (b, key);
    if (value)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
}

void
chan_body_raw (chan_body_t *b, const char *key, const void *packed, size_t len)
{
    chan_body_key (b, key);
    chan_buf_append (&b->buf, packed, len);
}

void
chan_body_strv (chan_body_t *b, const char *key, const char **values, size_t n)
{
    msgpack_packer *pk = chan_body_key (b, key);
    msgpack_pack_array (pk, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        chan_pack_cstr (pk, values[i]);
}

/*  ---- replies --------------------------------------------------------- */

void
chan_reply_fini (chan_reply_t *r)
{
    if (r->raw) {
        msgpack_unpacked_destroy (&r->unp);
        free (r->raw);
    }
    memset (r, 0, sizeof *r);
}

const msgpack_object *
chan_obj_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen
            && memcmp (k->via.str.ptr, key, klen) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

bool
chan_obj_get_str (const msgpack_object *map, const char *key, const char **ptr,
                  size_t *len)
{
    const msgpack_object *o = chan_obj_get (map, key);
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return false;
    *ptr = o->via.str.ptr;
    *len = o->via.str.size;
    return true;
}

bool
chan_obj_get_uint (const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *o = chan_obj_get (map, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = o->via.u64;
    return true;
}

int
chan_reply_code (const chan_reply_t *r)
{
    uint64_t code;
    if (strcmp (r->cmd, "ERROR") != 0)
        return 0;
    return chan_obj_get_uint (&r->body, "code", &code) ? (int) code : 500;
}

const char *
chan_reply_reason (const chan_reply_t *r, char *buf, size_t size)
{
    const char *p = NULL;
    size_t len = 0;
    if (!chan_obj_get_str (&r->body, "reason", &p, &len))
        len = 0;
    if (len >= size)
        len = size - 1;
    memcpy (buf, len ? p : "", len);
    buf[len] = 0;
    return buf;
}

int
chan_client_error_of (int code)
{
    switch (code) {
    case 400: return AAAX_EINVAL;
    case 401: return AAAX_EAUTH;
    case 403: return AAAX_EPERM;
    case 404: return AAAX_ENOENT;
    case 409: return AAAX_EEXIST;
    case 413: return AAAX_ETOOBIG;
    case 423: return AAAX_EPAUSED;
    case 429: return AAAX_ELIMIT;
    case 503: return AAAX_ESHUTDOWN;
    default: return AAAX_EINTERNAL;
    }
}

/*  ---- the client ------------------------------------------------------ */

static void
s_reply_free (void **item)
{
    chan_reply_t *r = (chan_reply_t *) *item;
    if (r) {
        chan_reply_fini (r);
        free (r);
    }
    *item = NULL;
}

static void
s_strv_free (char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free (v[i]);
    free (v);
}

static void
s_token_free (char *token)
{
    if (token) {
        sodium_memzero (token, strlen (token));
        free (token);
    }
}

/*  A DEALER with the client's options, connected to its endpoint. */
static void *
s_socket (chan_client_t *self)
{
    void *ctx = zsys_init ();
    void *sock = ctx ? zmq_socket (ctx, ZMQ_DEALER) : NULL;
    if (!sock)
        return NULL;
    int linger = 200, hwm = 100000;
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (strncmp (self->endpoint, "tcp://", 6) == 0) {
        /*  A host that drops SYNs must not hold a connect for minutes; a
            kernel that restarts is found again soon. */
        int connect_timeout = 3000, ivl = 100, ivl_max = 1000;
        zmq_setsockopt (sock, ZMQ_CONNECT_TIMEOUT, &connect_timeout,
                        sizeof connect_timeout);
        zmq_setsockopt (sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt (sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    }
    if (self->curve
        && (zmq_setsockopt (sock, ZMQ_CURVE_SERVERKEY, self->server_key,
                            S_Z85_LEN + 1)
                != 0
            || zmq_setsockopt (sock, ZMQ_CURVE_PUBLICKEY, self->public_key,
                               S_Z85_LEN + 1)
                   != 0
            || zmq_setsockopt (sock, ZMQ_CURVE_SECRETKEY, self->secret_key,
                               S_Z85_LEN + 1)
                   != 0)) {
        zmq_close (sock);
        return NULL;
    }
    if (zmq_connect (sock, self->endpoint) != 0) {
        int e = zmq_errno ();
        zmq_close (sock);
        errno = e;
        return NULL;
    }
    return sock;
}

static void
s_forget_hello (chan_client_t *self)
{
    free (self->system);
    self->system = NULL;
    s_token_free (self->token);
    self->token = NULL;
    s_strv_free (self->channels, self->nchannels);
    self->channels = NULL;
    self->nchannels = 0;
    self->privileged = false;
}

/*  Copies a Z85 key into out: false unless it is 40 characters that
    decode. */
static bool
s_key_copy (char out[S_Z85_LEN + 1], const char *key)
{
    uint8_t bin[32];
    if (!key || strlen (key) != S_Z85_LEN || !zmq_z85_decode (bin, key))
        return false;
    memcpy (out, key, S_Z85_LEN + 1);
    sodium_memzero (bin, sizeof bin);
    return true;
}

chan_client_t *
chan_client_new_curve (const char *endpoint, int timeout_ms,
                       const char *server_z85, const char *public_z85,
                       const char *secret_z85)
{
    chan_client_t *self = (chan_client_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->endpoint = strdup (endpoint);
    self->kept = zlistx_new ();
    if (!self->endpoint || !self->kept)
        goto err_free;
    zlistx_set_destructor (self->kept, s_reply_free);
    if (server_z85) {
        if (!zmq_has ("curve") || !s_key_copy (self->server_key, server_z85)
            || !s_key_copy (self->public_key, public_z85)
            || !s_key_copy (self->secret_key, secret_z85)) {
            errno = EINVAL;
            goto err_free;
        }
        self->curve = true;
    }
    self->sock = s_socket (self);
    if (!self->sock)
        goto err_free;
    self->timeout_ms = timeout_ms;
    self->next_req = 1;
    self->last_rx = hal_clock_mono_ms ();
    return self;

err_free:
    zlistx_destroy (&self->kept);
    free (self->endpoint);
    sodium_memzero (self->secret_key, sizeof self->secret_key);
    free (self);
    return NULL;
}

chan_client_t *
chan_client_new (const char *endpoint, int timeout_ms)
{
    return chan_client_new_curve (endpoint, timeout_ms, NULL, NULL, NULL);
}

void
chan_client_destroy (chan_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    chan_client_t *self = *self_p;
    zmq_close (self->sock);
    zlistx_destroy (&self->kept);
    s_forget_hello (self);
    free (self->endpoint);
    sodium_memzero (self->secret_key, sizeof self->secret_key);
    free (self);
    *self_p = NULL;
}

const char *
chan_client_endpoint (const chan_client_t *self)
{
    return self->endpoint;
}

bool
chan_client_curve (const chan_client_t *self)
{
    return self->curve;
}

const char *
chan_client_session (const chan_client_t *self)
{
    return self->session;
}

const char *
chan_client_system (const chan_client_t *self)
{
    return self->system ? self->system : "";
}

int64_t
chan_client_idle_ms (const chan_client_t *self)
{
    return hal_clock_mono_ms () - self->last_rx;
}

int
chan_client_reconnect (chan_client_t *self)
{
    /*  Nothing queued for the old connection matters any more. */
    int zero = 0;
    zmq_setsockopt (self->sock, ZMQ_LINGER, &zero, sizeof zero);
    void *sock = s_socket (self);
    if (!sock)
        return AAAX_EIO;
    zmq_close (self->sock);
    self->sock = sock;
    self->last_rx = hal_clock_mono_ms ();
    return 0;
}

void *
chan_client_socket (chan_client_t *self)
{
    return self->sock;
}

uint32_t
chan_client_heartbeat_ms (const chan_client_t *self)
{
    return self->heartbeat_ms;
}

int
chan_client_send (chan_client_t *self, const char *cmd, chan_body_t *body,
                  uint64_t *req)
{
    uint64_t r = self->next_req++;
    chan_buf_t out;
    chan_buf_init (&out);
    msgpack_packer pk;
    chan_buf_packer (&out, &pk);
    msgpack_pack_map (&pk, 1 + (body ? body->n : 0));
    chan_pack_str (&pk, "req", 3);
    msgpack_pack_uint64 (&pk, r);
    if (body)
        chan_buf_append (&out, body->buf.data, body->buf.len);
    int rc = 0;
    if (out.oom || (body && body->buf.oom))
        rc = AAAX_ENOMEM;
    else if (zmq_send (self->sock, cmd, strlen (cmd), ZMQ_SNDMORE) < 0
             || zmq_send (self->sock, out.data, out.len, 0) < 0)
        rc = AAAX_EIO;
    chan_buf_fini (&out);
    if (rc == 0 && req)
        *req = r;
    return rc;
}

/*  Reads one message from the socket into r, waiting up to timeout_ms. */
static int
s_read (chan_client_t *self, chan_reply_t *r, int timeout_ms)
{
    zmq_pollitem_t item = { self->sock, 0, ZMQ_POLLIN, 0 };
    int rc = zmq_poll (&item, 1, timeout_ms);
    if (rc < 0)
        return errno == EINTR ? AAAX_ETIMEDOUT : AAAX_EIO;
    if (rc == 0)
        return AAAX_ETIMEDOUT;
    memset (r, 0, sizeof *r);
    zmq_msg_t part;
    int n = 0;
    zmq_msg_init (&part);
    do {
        if (zmq_msg_recv (&part, self->sock, 0) < 0) {
            zmq_msg_close (&part);
            chan_reply_fini (r);
            return AAAX_EIO;
        }
        if (n == 0) {
            size_t len = zmq_msg_size (&part);
            if (len >= sizeof r->cmd)
                len = sizeof r->cmd - 1;
            memcpy (r->cmd, zmq_msg_data (&part), len);
            r->cmd[len] = 0;
        } else if (n == 1) {
            r->rawlen = zmq_msg_size (&part);
            r->raw = malloc (r->rawlen ? r->rawlen : 1);
            if (r->raw)
                memcpy (r->raw, zmq_msg_data (&part), r->rawlen);
        }
        n++;
    } while (zmq_msg_more (&part));
    zmq_msg_close (&part);
    self->last_rx = hal_clock_mono_ms ();
    if (!r->raw) {
        r->raw = malloc (1);
        r->rawlen = 0;
    }
    msgpack_unpacked_init (&r->unp);
    size_t off = 0;
    if (r->rawlen
        && msgpack_unpack_next (&r->unp, (const char *) r->raw, r->rawlen, &off)
               == MSGPACK_UNPACK_SUCCESS)
        r->body = r->unp.data;
    else
        r->body.type = MSGPACK_OBJECT_NIL;
    return 0;
}

static int
s_wait_req (chan_client_t *self, uint64_t req, chan_reply_t *reply)
{
    int64_t deadline = hal_clock_mono_ms () + self->timeout_ms;
    for (;;) {
        int64_t left = deadline - hal_clock_mono_ms ();
        if (left < 0)
            return AAAX_ETIMEDOUT;
        chan_reply_t r;
        int rc = s_read (self, &r, (int) left);
        if (rc)
            return rc;
        uint64_t got;
        bool is_reply =
            strcmp (r.cmd, "MSG") != 0 && strcmp (r.cmd, "DROPPED") != 0;
        if (is_reply && chan_obj_get_uint (&r.body, "req", &got)
            && got == req) {
            *reply = r;
            return 0;
        }
        chan_reply_t *keep = (chan_reply_t *) malloc (sizeof *keep);
        if (!keep) {
            chan_reply_fini (&r);
            return AAAX_ENOMEM;
        }
        *keep = r;
        zlistx_add_end (self->kept, keep);
    }
}

int
chan_client_call (chan_client_t *self, const char *cmd, chan_body_t *body,
                  chan_reply_t *reply)
{
    uint64_t req;
    int rc = chan_client_send (self, cmd, body, &req);
    if (rc)
        return rc;
    return s_wait_req (self, req, reply);
}

size_t
chan_client_kept (const chan_client_t *self)
{
    return zlistx_size (self->kept);
}

int
chan_client_wait (chan_client_t *self, uint64_t req, chan_reply_t *reply)
{
    /*  It may have arrived already, while waiting for another. */
    for (chan_reply_t *k = (chan_reply_t *) zlistx_first (self->kept); k;
         k = (chan_reply_t *) zlistx_next (self->kept)) {
        uint64_t got;
        if (strcmp (k->cmd, "MSG") != 0 && strcmp (k->cmd, "DROPPED") != 0
            && chan_obj_get_uint (&k->body, "req", &got) && got == req) {
            *reply = *k;
            memset (k, 0, sizeof *k);
            zlistx_delete (self->kept, zlistx_cursor (self->kept));
            return 0;
        }
    }
    return s_wait_req (self, req, reply);
}

int
chan_client_recv (chan_client_t *self, chan_reply_t *reply, int timeout_ms)
{
    chan_reply_t *kept = (chan_reply_t *) zlistx_first (self->kept);
    if (kept) {
        *reply = *kept;
        memset (kept, 0, sizeof *kept);
        zlistx_delete (self->kept, zlistx_cursor (self->kept));
        return 0;
    }
    return s_read (self, reply, timeout_ms);
}

/*  Remembers a successful HELLO for chan_client_redock. */
static void
s_remember (chan_client_t *self, const chan_hello_t *h,
            const chan_reply_t *reply)
{
    const char *p;
    size_t len;
    char *system = NULL;
    if (h->system)
        system = strdup (h->system);
    else if (chan_obj_get_str (&reply->body, "system", &p, &len))
        system = strndup (p, len);
    else {
        /*  An enrollment without system: the mailbox grant names it. */
        const msgpack_object *g = chan_obj_get (&reply->body, "grants");
        for (uint32_t i = 0; g && g->type == MSGPACK_OBJECT_ARRAY
                             && i < g->via.array.size && !system;
             i++) {
            const msgpack_object *o = &g->via.array.ptr[i];
            if (o->type == MSGPACK_OBJECT_STR && o->via.str.size > 6
                && memcmp (o->via.str.ptr, "read:@", 6) == 0)
                system = strndup (o->via.str.ptr + 6, o->via.str.size - 6);
        }
    }
    char *token = h->privileged && h->token ? strdup (h->token) : NULL;
    char **channels =
        h->nchannels ? (char **) calloc (h->nchannels, sizeof *channels) : NULL;
    bool ok = system && (!h->privileged || !h->token || token)
              && (!h->nchannels || channels);
    for (size_t i = 0; ok && i < h->nchannels; i++)
        ok = (channels[i] = strdup (h->channels[i])) != NULL;
    if (!ok) {
        /*  Out of memory: no redock later, nothing worse. */
        s_strv_free (channels, h->nchannels);
        free (system);
        s_token_free (token);
        return;
    }
    s_forget_hello (self);
    self->system = system;
    self->token = token;
    self->privileged = h->privileged;
    self->channels = channels;
    self->nchannels = h->nchannels;
    if (chan_obj_get_str (&reply->body, "session", &p, &len)
        && len < sizeof self->session) {
        memcpy (self->session, p, len);
        self->session[len] = 0;
    } else
        self->session[0] = 0;
}

int
chan_client_hello_ex (chan_client_t *self, const chan_hello_t *h,
                      chan_reply_t *reply)
{
    chan_body_t b;
    chan_body_init (&b);
    if (h->system)
        chan_body_str (&b, "system", h->system);
    chan_body_uint (&b, "version", AAAX_PROTOCOL_VERSION);
    if (h->token)
        chan_body_str (&b, "token", h->token);
    if (h->privileged)
        chan_body_bool (&b, "privileged", true);
    if (h->channels)
        chan_body_strv (&b, "channels", h->channels, h->nchannels);
    if (h->resume && *h->resume)
        chan_body_str (&b, "resume", h->resume);
    int rc = chan_client_call (self, "HELLO", &b, reply);
    chan_body_fini (&b);
    if (rc)
        return rc;
    int code = chan_reply_code (reply);
    if (code)
        return chan_client_error_of (code);
    uint64_t hb;
    if (chan_obj_get_uint (&reply->body, "heartbeat_ms", &hb))
        self->heartbeat_ms = (uint32_t) hb;
    s_remember (self, h, reply);
    return 0;
}

int
chan_client_hello (chan_client_t *self, const char *system, const char *token,
                   bool privileged, const char **channels, size_t nchannels,
                   chan_reply_t *reply)
{
    chan_hello_t h = { system, token, privileged, channels, nchannels, NULL };
    return chan_client_hello_ex (self, &h, reply);
}

/*  Sleeps ms in short slices, ending early when *stop is set. */
static void
s_nap (int64_t ms, volatile sig_atomic_t *stop)
{
    int64_t until = hal_clock_mono_ms () + ms;
    for (;;) {
        if (stop && *stop)
            return;
        int64_t left = until - hal_clock_mono_ms ();
        if (left <= 0)
            return;
        zclock_sleep ((int) (left < 50 ? left : 50));
    }
}

int
chan_client_redock (chan_client_t *self, const chan_redock_t *opt,
                    chan_reply_t *reply)
{
    static const chan_redock_t none = { 0 };
    if (!opt)
        opt = &none;
    memset (reply, 0, sizeof *reply);
    if (!self->system)
        return AAAX_EINVAL;
    /*  A successful HELLO replaces what is remembered: work on copies. */
    bool privileged = self->privileged;
    size_t nchannels = self->nchannels;
    char *system = strdup (self->system);
    char *token = self->token ? strdup (self->token) : NULL;
    char **channels =
        nchannels ? (char **) calloc (nchannels, sizeof *channels) : NULL;
    char session[sizeof self->session];
    memcpy (session, self->session, sizeof session);
    bool ok = system && (!self->token || token) && (!nchannels || channels);
    for (size_t i = 0; ok && i < nchannels; i++)
        ok = (channels[i] = strdup (self->channels[i])) != NULL;
    int rc = ok ? 0 : AAAX_ENOMEM;
    int64_t backoff = S_REDOCK_FIRST_MS;
    for (int attempt = 1; ok; attempt++) {
        if (opt->stop && *opt->stop) {
            chan_reply_fini (reply);
            rc = AAAX_ETIMEDOUT;
            break;
        }
        if (privileged && opt->token_dir) {
            char fresh[65];
            if (chan_client_read_token (opt->token_dir, fresh) == 0) {
                s_token_free (token);
                token = strdup (fresh);
                sodium_memzero (fresh, sizeof fresh);
            }
        }
        chan_reply_fini (reply);
        rc = chan_client_reconnect (self);
        if (rc == 0) {
            chan_hello_t h = { system,     token,
                               privileged, (const char **) channels,
                               nchannels,  session };
            rc = chan_client_hello_ex (self, &h, reply);
        }
        if (rc == 0)
            break;
        int code = chan_reply_code (reply);
        bool retry = rc == AAAX_ETIMEDOUT || rc == AAAX_EIO || code == 409
                     || code == 429 || code == 500 || code == 503;
        /*  A privileged HELLO refused for its token just after a restart:
            the new kernel has written a new token meanwhile. */
        if (code == 401 && privileged && opt->token_dir) {
            char fresh[65];
            if (chan_client_read_token (opt->token_dir, fresh) == 0
                && (!token || strcmp (fresh, token) != 0))
                retry = true;
            sodium_memzero (fresh, sizeof fresh);
        }
        if (!retry)
            break;
        /*  Between half and all of the back-off: clients that lost the
            same kernel do not all come back at once. */
        int64_t wait = backoff / 2
                       + (int64_t) randombytes_uniform (
                           (uint32_t) (backoff - backoff / 2 + 1));
        if (opt->deadline_ms
            && hal_clock_mono_ms () + wait >= opt->deadline_ms) {
            if (opt->on_retry)
                opt->on_retry (opt->arg, attempt, rc, code ? reply : NULL, -1);
            chan_reply_fini (reply);
            rc = AAAX_ETIMEDOUT;
            break;
        }
        if (opt->on_retry)
            opt->on_retry (opt->arg, attempt, rc, code ? reply : NULL, wait);
        s_nap (wait, opt->stop);
        backoff = backoff * 2 > S_REDOCK_MAX_MS ? S_REDOCK_MAX_MS : backoff * 2;
    }
    free (system);
    s_token_free (token);
    s_strv_free (channels, nchannels);
    return rc;
}

int
chan_client_read_token (const char *data_dir, char *out)
{
    char path[4200];
    snprintf (path, sizeof path, "%s/session.token", data_dir);
    FILE *f = fopen (path, "r");
    if (!f)
        return AAAX_ENOENT;
    size_t n = fread (out, 1, 64, f);
    fclose (f);
    if (n != 64)
        return AAAX_ENOENT;
    out[64] = 0;
    return 0;
}
