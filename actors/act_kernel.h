/*  act_kernel.h — what the kernel actors (capability, gate, lifecycle)
    share: the context the switchboard starts them with, the policy they
    read, and a connection that docks over inproc://aaax as a kernel system
    and serves a kernel.* work-queue the way any system would: long-poll
    CLAIM, answer in the requester's mailbox with corr = the request's id,
    ACK. */

#ifndef ACT_KERNEL_H_INCLUDED
#define ACT_KERNEL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <czmq.h>

#include "aaax.h"
#include "chan_client.h"
#include "hal_audit.h"
#include "app_host.h"
#include "hal_keys.h"
#include "hal_kv.h"
#include "policy.h"

/*  ---- the shared policy ----------------------------------------------- */

/*  The active policy as the switchboard last loaded it, for the actors
    that decide with it in their own threads. Each actor takes a private
    clone (with its own rate-limit windows) when the version moves. */
typedef struct _act_policy_t act_policy_t;

act_policy_t *act_policy_new (void);
void act_policy_destroy (act_policy_t **self_p);

/*  Publishes a clone of src as the new version; returns the version, or 0
    on no memory (the previous one stays). */
uint64_t act_policy_set (act_policy_t *self, const policy_t *src);

/*  When the published version differs from *version: a fresh clone of it
    (the caller owns it) and *version updated. NULL otherwise. */
policy_t *act_policy_take (act_policy_t *self, uint64_t *version);

/*  ---- the context ---------------------------------------------------- */

typedef struct {
    const char *kernel_token; /* 64 hex, authenticates the kernel sessions */
    const char *kernel_id;
    const char *data_dir;
    const hal_keys_t *keys;
    hal_audit_t *audit;
    act_policy_t *policy;
    uint32_t heartbeat_ms;
    const char *lifecycle_rate; /* "N/s" ... */
    uint32_t stop_grace_ms;
    uint32_t ask_timeout_s;
    /*  The loader and its app host (issue 4). */
    const app_limits_cfg_t *app_limits;
    uint32_t app_workers;         /* worker actors in the pool */
    const char *const *boot_apps; /* app directories loaded at boot */
    size_t nboot_apps;
    hal_kv_t *kv; /* apps' key-value spaces, pins */
} act_ctx_t;

/*  ---- a kernel actor's connection ----------------------------------- */

typedef struct _act_conn_t act_conn_t;

/*  Connects to inproc://aaax as system (a "kernel.*" id). NULL on failure. */
act_conn_t *act_conn_new (const act_ctx_t *ctx, const char *system);
void act_conn_destroy (act_conn_t **self_p);

/*  Docks (privileged HELLO with the kernel token) and subscribes to each of
    subs. Returns 0 or the error. */
int act_conn_dock (act_conn_t *self, const char **subs, size_t nsubs);

chan_client_t *act_conn_client (act_conn_t *self);
const char *act_conn_system (const act_conn_t *self);

/*  One request taken from a queue, borrowed from the CLAIM reply. */
typedef struct {
    const char *id; /* envelope id, NUL-terminated copy */
    const char *from;
    const msgpack_object *data;
    char idbuf[40];
    char frombuf[AAAX_MAX_NAME + 1];
} act_req_t;

/*  The answers to a batch of requests: SENDs pipelined, then one ACK. */
typedef struct {
    act_conn_t *conn;
    const char *chan;
    uint64_t sends[256];
    size_t nsends;
    const char *ids[256];
    char idbuf[256][40]; /* copies: requests are borrowed only per call */
    size_t nids;
} act_batch_t;

void act_batch_init (act_batch_t *b, act_conn_t *conn, const char *chan);

/*  Sends data (a packed map) to the mailbox of to with corr; the answer
    to the SEND is collected by act_batch_finish. */
void act_batch_send (act_batch_t *b, const char *to, const char *corr,
                     const void *data, size_t len);

/*  Marks a request for the batch's ACK (id copied). */
void act_batch_ack (act_batch_t *b, const char *id);

/*  Waits for every SEND's answer (logging refusals), then ACKs. */
void act_batch_finish (act_batch_t *b);

/*  Serves a claimed batch one request at a time: fn answers req through
    batch (act_batch_send); each request is ACKed; the answers are
    collected and the ACK sent at the end (act_batch_finish). */
typedef void (act_one_fn) (void *self, act_batch_t *batch, act_req_t *req);
void act_batch_each (act_conn_t *conn, const char *queue,
                     const chan_reply_t *claim, act_one_fn *fn, void *self);

/*  Sends one message now and waits for its answer. 0, or an AAAX_E*. */
int act_send_now (act_conn_t *conn, const char *to, const char *corr,
                  const void *data, size_t len);

/*  WRITE a packed value on a channel (a registry broadcast). 0 or error. */
int act_write (act_conn_t *conn, const char *chan, const void *data,
               size_t len);

/*  CTL with extra fields packed in body (op added here). The reply is the
    caller's to fini. 0 when the kernel said OK. */
int act_ctl (act_conn_t *conn, const char *op, chan_body_t *body,
             chan_reply_t *reply);

/*  Reads the requests in a CLAIM reply: calls fn for each (req borrowed
    for the call). */
typedef void (act_req_fn) (void *arg, act_req_t *req);
void act_claimed_each (const chan_reply_t *reply, act_req_fn *fn, void *arg);

/*  ---- the serving loop ----------------------------------------------- */

/*  Callbacks of one actor. Any may be NULL. */
typedef struct {
    /*  Requests claimed from queue (at most 64 at a time). */
    void (*batch) (void *self, const char *queue, const chan_reply_t *claim);
    /*  A push: MSG on a subscription or the mailbox. */
    void (*push) (void *self, const chan_reply_t *msg);
    /*  Called each turn; returns the monotonic ms of its next deadline or
        INT64_MAX. */
    int64_t (*tick) (void *self, int64_t now);
    /*  After docking (again): reload state (e.g. a snapshot by CTL). */
    void (*docked) (void *self);
    /*  More sockets to wake on (e.g. worker actors' pipes): fills socks,
        returns how many (at most max). tick runs after they are readable. */
    size_t (*watch) (void *self, void **socks, size_t max);
} act_ops_t;

/*  Serves queues[0..nqueues) until $TERM on pipe: keeps one long-poll CLAIM
    per queue outstanding, dispatches pushes, runs tick. Re-docks after a
    refusal. Returns when terminated. */
void act_serve (zsock_t *pipe, act_conn_t *conn, const char **queues,
                size_t nqueues, const char **subs, size_t nsubs,
                const act_ops_t *ops, void *self);

/*  Waits for $TERM on pipe (an actor that could not start). */
void act_wait_term (zsock_t *pipe);

/*  A string field of a map (a NUL-terminated copy in buf), or NULL. */
const char *act_get_str (const msgpack_object *map, const char *key, char *buf,
                         size_t size);

/*  The kernel's three request-serving actors (czmq actor functions; args is
    an act_ctx_t * that outlives them). */
void act_capability (zsock_t *pipe, void *args);
void act_gate (zsock_t *pipe, void *args);
void act_lifecycle (zsock_t *pipe, void *args);
void act_loader (zsock_t *pipe, void *args);

#endif
