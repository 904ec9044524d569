/*  chan_client.h — the client side of the protocol in C: a DEALER connected
    to a command endpoint, requests with `req` numbering, replies matched by
    req, and pushes (MSG, DROPPED) that arrive meanwhile kept in order for
    chan_client_recv. Used by the kernel's own actors (over inproc), the aaax
    CLI, the C tests and the bench. One client belongs to one thread. */

#ifndef CHAN_CLIENT_H_INCLUDED
#define CHAN_CLIENT_H_INCLUDED

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#include "chan_mpk.h"

typedef struct _chan_client_t chan_client_t;

/*  A request body being built: call chan_body_key for each field, then pack
    its value with the returned packer. `req` is added by the client. */
typedef struct {
    chan_buf_t buf;
    msgpack_packer pk;
    uint32_t n;
} chan_body_t;

void chan_body_init (chan_body_t *b);
void chan_body_fini (chan_body_t *b);
msgpack_packer *chan_body_key (chan_body_t *b, const char *key);
void chan_body_str (chan_body_t *b, const char *key, const char *value);
void chan_body_uint (chan_body_t *b, const char *key, uint64_t value);
void chan_body_bool (chan_body_t *b, const char *key, bool value);
/*  A value that is already packed msgpack (copied as is). */
void chan_body_raw (chan_body_t *b, const char *key, const void *packed,
                    size_t len);
void chan_body_strv (chan_body_t *b, const char *key, const char **values,
                     size_t n);

/*  A message from the kernel: its command word and body, unpacked. */
typedef struct {
    char cmd[16];
    void *raw; /* the body frame's bytes (owned) */
    size_t rawlen;
    msgpack_unpacked unp;
    msgpack_object body; /* a map, or nil if the body was not msgpack */
} chan_reply_t;

void chan_reply_fini (chan_reply_t *r);

/*  The value of key in map (a msgpack map object), or NULL. */
const msgpack_object *chan_obj_get (const msgpack_object *map, const char *key);
/*  Typed reads: false when absent or of another type. */
bool chan_obj_get_str (const msgpack_object *map, const char *key,
                       const char **ptr, size_t *len);
bool chan_obj_get_uint (const msgpack_object *map, const char *key,
                        uint64_t *out);
/*  For an ERROR: its code; 0 otherwise. */
int chan_reply_code (const chan_reply_t *r);
/*  For an ERROR: its reason (borrowed, NUL-terminated copy in buf). */
const char *chan_reply_reason (const chan_reply_t *r, char *buf, size_t size);

/*  Connects a DEALER to endpoint (tcp://, ipc://, inproc://). timeout_ms
    bounds each call's wait for its reply. NULL on failure. */
chan_client_t *chan_client_new (const char *endpoint, int timeout_ms);
void chan_client_destroy (chan_client_t **self_p);

/*  The DEALER, for polling (borrowed). */
void *chan_client_socket (chan_client_t *self);

/*  The heartbeat period the kernel announced at HELLO (0 before). */
uint32_t chan_client_heartbeat_ms (const chan_client_t *self);

/*  Sends cmd with body (NULL: an empty one) and a fresh req (written to
 *req when not NULL). 0, or AAAX_EIO. */
int chan_client_send (chan_client_t *self, const char *cmd, chan_body_t *body,
                      uint64_t *req);

/*  Sends and waits for the reply with the same req. Pushes and other
    replies that arrive meanwhile are kept for chan_client_recv. Returns 0
    (reply holds OK, PONG or ERROR; the caller finis it), AAAX_ETIMEDOUT or
    AAAX_EIO. */
int chan_client_call (chan_client_t *self, const char *cmd, chan_body_t *body,
                      chan_reply_t *reply);

/*  Waits for the reply to a request sent earlier with chan_client_send
    (pipelining: send several, then wait for each). As chan_client_call. */
int chan_client_wait (chan_client_t *self, uint64_t req, chan_reply_t *reply);

/*  How many messages chan_client_call / chan_client_wait kept for
    chan_client_recv (they do not make the socket readable). */
size_t chan_client_kept (const chan_client_t *self);

/*  The next message not yet taken (kept ones first), waiting up to
    timeout_ms (-1: forever). 0, AAAX_ETIMEDOUT or AAAX_EIO. */
int chan_client_recv (chan_client_t *self, chan_reply_t *reply, int timeout_ms);

/*  HELLO: docks as system; token may be NULL; channels may be NULL.
    Returns 0 when docked (reply holds the OK), or the error: AAAX_EAUTH,
    AAAX_EEXIST, ... mapped from the ERROR code (reply holds the ERROR), or
    AAAX_ETIMEDOUT / AAAX_EIO. */
int chan_client_hello (chan_client_t *self, const char *system,
                       const char *token, bool privileged,
                       const char **channels, size_t nchannels,
                       chan_reply_t *reply);

/*  ---- CURVE, resume and reconnecting ---------------------------------- */

/*  Like chan_client_new, with CURVE on the connection when server_z85 is
    not NULL: the kernel's public key and this client's key pair, each 40
    characters of Z85 (hal_curve.h). NULL on failure (a malformed key, a
    libzmq without CURVE: errno / zmq_errno () tell). Every socket the
    client makes later (chan_client_reconnect) gets the same keys. On tcp
    endpoints (CURVE or not) the client sets ZMQ_CONNECT_TIMEOUT and a
    short ZMQ_RECONNECT_IVL (100 ms, up to 1 s). */
chan_client_t *chan_client_new_curve (const char *endpoint, int timeout_ms,
                                      const char *server_z85,
                                      const char *public_z85,
                                      const char *secret_z85);

/*  The endpoint it connects to (borrowed). */
const char *chan_client_endpoint (const chan_client_t *self);

/*  True when the connection uses CURVE. */
bool chan_client_curve (const chan_client_t *self);

/*  HELLO with every field (chan_client_hello is this with system set and
    resume NULL). */
typedef struct {
    const char *system;    /* NULL: none (an enrollment with its token) */
    const char *token;     /* session token (privileged) or enrollment */
    bool privileged;       /* token is the session token */
    const char **channels; /* NULL: none */
    size_t nchannels;
    const char *resume; /* a session id to take over, or NULL */
} chan_hello_t;

/*  Sends HELLO as h says; as chan_client_hello. On success the client
    remembers the HELLO (system, channels, privileged and its token; an
    enrollment token is not kept: it is used once), the session id and
    heartbeat_ms of the reply, for chan_client_redock. */
int chan_client_hello_ex (chan_client_t *self, const chan_hello_t *h,
                          chan_reply_t *reply);

/*  The session id of the last successful HELLO ("" before one). */
const char *chan_client_session (const chan_client_t *self);

/*  The system id of the last successful HELLO ("" before one). */
const char *chan_client_system (const chan_client_t *self);

/*  Milliseconds since the last message from the kernel arrived (since the
    socket was made, before any). A docked client that PINGs every
    heartbeat_ms / 2 and has heard nothing for 3 x heartbeat_ms has lost
    the kernel. */
int64_t chan_client_idle_ms (const chan_client_t *self);

/*  Closes the socket and connects a new one to the same endpoint with the
    same keys (what was queued for the old one is dropped; messages already
    kept for chan_client_recv stay). The client is not docked afterwards.
    0, or AAAX_EIO. */
int chan_client_reconnect (chan_client_t *self);

/*  How chan_client_redock retries. Zeroed: forever, quietly. */
typedef struct {
    /*  Set (by a signal handler): stop retrying, AAAX_ETIMEDOUT. */
    volatile sig_atomic_t *stop;
    /*  When not NULL, the session token is read again from
        <token_dir>/session.token before each privileged HELLO (a restarted
        kernel has a new one). */
    const char *token_dir;
    /*  hal_clock_mono_ms () at which to give up (AAAX_ETIMEDOUT); 0:
        never. */
    int64_t deadline_ms;
    /*  Called after each failed attempt, before waiting wait_ms: rc is
        the attempt's AAAX_E* code, reply its ERROR when the kernel
        answered one (else NULL). */
    void (*on_retry) (void *arg, int attempt, int rc, const chan_reply_t *reply,
                      int64_t wait_ms);
    void *arg;
} chan_redock_t;

/*  Re-docks after a lost connection or session: a new socket
    (chan_client_reconnect), then HELLO as the last successful one with
    resume: its session id, repeated with back-off (100 ms doubling to 5
    s, with jitter) while the kernel does not answer, is shutting down
    (503) or still holds the old session (409). Returns 0 when docked:
    reply holds the HELLO's OK, whose `resumed` says whether the session
    was taken over (subscriptions and leases kept) or is a new one
    (resumed false or absent: subscribe again). Returns the error when the
    kernel refuses in a way retrying cannot mend (401 with a CURVE key not
    bound, 403, 400; reply holds the ERROR), AAAX_ETIMEDOUT when opt's
    stop or deadline ended it, AAAX_EINVAL when there was no HELLO to
    repeat. */
int chan_client_redock (chan_client_t *self, const chan_redock_t *opt,
                        chan_reply_t *reply);

/*  Reads the session token of a data directory (<dir>/session.token) into
    out (65 bytes). 0, or AAAX_ENOENT. */
int chan_client_read_token (const char *data_dir, char *out);

/*  The AAAX_E* code for a protocol error code. */
int chan_client_error_of (int code);

#endif
