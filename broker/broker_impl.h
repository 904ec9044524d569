/*  broker_impl.h — the switchboard's private structures, shared by
    broker.c (loop, sockets, sessions), broker_ops.c (the commands) and
    broker_boot.c (state restored from the store). Nothing outside broker/
    includes this. */

#ifndef BROKER_IMPL_H_INCLUDED
#define BROKER_IMPL_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>

#include "aaax.h"
#include "broker.h"
#include "chan_bcast.h"
#include "chan_heap.h"
#include "chan_id.h"
#include "chan_idem.h"
#include "chan_map.h"
#include "chan_mbox.h"
#include "chan_mpk.h"
#include "chan_queue.h"
#include "chan_req.h"
#include "hal_audit.h"
#include "hal_curve.h"
#include "hal_keys.h"
#include "hal_kv.h"
#include "app_host.h"
#include "hal_store.h"
#include "policy.h"
#include "act_kernel.h"

#define BROKER_RID_MAX 255
#define BROKER_SLOT_LEN 4           /* the slot frame of a hosted session */
#define BROKER_SEQ_BLOCK (1u << 20) /* ids reserved in the store at once */
#define BROKER_DRAIN_MAX 4096       /* requests read in one loop turn */
#define BROKER_OUTQ_MAX 65536       /* control messages queued per session */
#define BROKER_SUBS_MAX 4096        /* subscriptions per session */
#define BROKER_WAITERS_MAX 256      /* long-poll CLAIMs per session */
#define BROKER_ENDED_MAX 1024       /* ended sessions remembered (401 why) */
#define BROKER_ENDED_RID 32         /* of routing ids up to this long */

typedef enum {
    BROKER_BOOTING = 0,
    BROKER_RUNNING,
    BROKER_DEGRADED,
    BROKER_SHUTDOWN
} broker_state_t;

enum { R_READ = 1, R_WRITE = 2, R_CLAIM = 4 };

typedef struct _broker_session_t broker_session_t;
typedef struct _broker_waiter_t broker_waiter_t;
typedef struct _broker_cap_t broker_cap_t;

/*  A known system: everything that outlives its sessions. */
typedef struct {
    char *id;
    chan_mbox_t mbox;
    chan_holder_t holder;
    broker_session_t *session;     /* docked session, or NULL */
    bool paused;                   /* survives re-docking */
    int64_t first_seen, last_seen; /* wall ms */
    broker_cap_t *caps;            /* live capabilities on channels */
    char app_state[16]; /* an app's, from the loader (CTL appstate), or "" */
} broker_sys_t;

/*  A channel of the table. */
typedef struct {
    char *name;
    broker_kind_t kind;
    bool kernel; /* a kernel channel (contract section 6) */
    chan_bcast_t *bcast;
    chan_queue_t *queue;
    broker_waiter_t *wait_head, *wait_tail; /* long-poll CLAIMs, FIFO */
    uint64_t writes;
    chan_heap_node_t due; /* in the broker's queue heap: a lower bound of
                             the queue's next lease or delay deadline */
} broker_chan_t;

/*  A live capability on a channel, installed by the capability actor
    (CTL grant): the switchboard's copy for the per-message check, without
    the signature. It belongs to the system, not the session; undocking
    drops it. */
struct _broker_cap_t {
    broker_cap_t *next; /* in the system's list */
    char id[65];
    broker_chan_t *chan;
    uint8_t rights;
    int64_t expires_ms; /* wall clock */
};

/*  What a session may do to one target (a channel or a system's mailbox). */
typedef struct {
    uint8_t rights;    /* base | caprights: what the per-message check uses */
    uint8_t base;      /* from the policy: common and HELLO grants */
    uint8_t caprights; /* from live capabilities */
    bool mbox;         /* the target is a system's mailbox */
    const char *label; /* the channel's name or the system's id, borrowed
                          from the target (grants on a system are dropped
                          before the system is forgotten) */
    uint32_t nrated;
    int rated[]; /* policy rules whose rate limits apply to writes */
} broker_grant_t;

/*  A control message that could not be sent yet (the peer's pipe was full). */
typedef struct _broker_out_t {
    struct _broker_out_t *next;
    uint8_t cmd;
    uint32_t len;
    uint8_t body[];
} broker_out_t;

struct _broker_waiter_t {
    chan_heap_node_t node; /* deadline, in the broker's waiter heap */
    broker_session_t *session;
    broker_chan_t *chan;
    uint64_t req;
    uint32_t max, lease_ms;
    broker_waiter_t *prev, *next;   /* in chan's FIFO */
    broker_waiter_t *sprev, *snext; /* in session's list */
};

struct _broker_session_t {
    uint8_t rid[BROKER_RID_MAX];
    uint8_t ridlen;
    /*  A hosted session (an app of an app host, docs/PROTOCOL.md "Hosted
        sessions"): rid is the host's routing id (hostlen bytes) followed by
        the 4-byte slot the host put in a third frame; messages to it go to
        the host with that slot frame appended. 0 for a connection's own
        session. */
    uint8_t hostlen;
    broker_session_t *host;   /* the host's own session */
    broker_session_t *hosted; /* a host's: its hosted sessions */
    broker_session_t *hosted_prev, *hosted_next; /* in the host's list */
    broker_sys_t *sys;
    char session_id[33];
    bool privileged, kernel;
    const char *kind; /* "kernel" "local" "remote" (static string) */
    char peer[48];    /* the peer's address, for a remote session */
    /*  The connection's CURVE client key (Z85), "" when not CURVE: every
        command must come with it (a routing id alone proves nothing). */
    char curve_key[HAL_CURVE_Z85_LEN + 1];
    const char *auth;     /* "curve" "plain" "ipc" "inproc" "hosted" (static) */
    uint8_t *hello_chans; /* HELLO's channels (packed array), for regrants */
    uint32_t hello_len, hello_n;
    bool dead;           /* the peer is gone: undock at the end of the turn */
    int64_t docked_at;   /* wall ms */
    int64_t last_active; /* monotonic ms */
    broker_session_t *lru_prev, *lru_next;
    chan_map_t grants; /* target pointer -> broker_grant_t */
    uint32_t nrights;  /* rights held in grants (the heartbeat's count) */
    chan_sub_t **subs;
    size_t nsubs, capsubs;
    broker_waiter_t *waiters;
    size_t nwaiters;
    broker_out_t *outq_head, *outq_tail;
    size_t outq_len;
    uint64_t msgs_in, msgs_out;
    broker_session_t *dead_next; /* in the broker's undock-later list */
    broker_session_t *blk_prev, *blk_next; /* in the broker's blocked list */
};

/*  A request being served. */
typedef struct {
    const uint8_t *rid;
    size_t ridlen;
    uint8_t hostlen; /* > 0: a hosted session's request (see the session) */
    broker_session_t *session; /* NULL when the connection is not docked */
    const char *peer;          /* HELLO only: the Peer-Address property, NULL
                                  for inproc */
    const char *key; /* HELLO only: the CURVE client key (ZAP User-Id) or
                        NULL on a connection without CURVE */
    chan_req_t req;
} broker_rq_t;

/*  Output commands (index into broker_cmd_names). */
enum { OUT_OK = 0, OUT_ERROR, OUT_PONG, OUT_MSG, OUT_DROPPED, OUT_MSGS };

struct _broker_t {
    broker_config_t *cfg;
    char data_dir[4096];
    char ipc_path[4200];
    int lock_fd;
    void *ctx;
    void *router;
    void *tap;
    hal_store_t *store;
    policy_t *policy;
    uint64_t policy_version;
    char policy_source[4200];
    hal_keys_t *keys;
    hal_audit_t *audit;
    act_policy_t *shared_policy; /* the gate's copy comes from here */
    zhashx_t *caps;              /* cap id -> broker_sys_t (holder) */
    int64_t cap_next_expiry;     /* wall ms of the earliest, or INT64_MAX */
    broker_state_t state;
    bool store_failed;
    int64_t boot_mono;
    char kernel_id[40];
    char session_token[65]; /* in sodium_malloc memory */
    char *kernel_token;     /* in sodium_malloc memory, 64 hex + NUL */

    zhashx_t *channels; /* name -> broker_chan_t */
    zhashx_t *systems;  /* id -> broker_sys_t */
    zhashx_t *apps;     /* id -> broker_sys_t with an app_state (borrowed) */
    zhashx_t *sessions; /* rid (binary) -> broker_session_t */
    broker_session_t *lru_head, *lru_tail;
    broker_session_t *dead_list;
    size_t nsessions;
    size_t nkernel; /* of which kernel actors (not counted in max_sessions) */
    size_t nhosted; /* and apps of the app host (not counted either) */
    broker_session_t *blocked; /* sessions with queued control output */
    chan_heap_t waiter_heap;
    chan_heap_t queue_heap; /* work-queues with deadlines, by the earliest */
    chan_idem_t *idem;
    chan_id_gen_t ids;
    uint64_t seq_reserved;

    /*  Replies waiting for a commit: records in a byte FIFO. */
    chan_buf_t pending;
    size_t pending_off;

    chan_buf_t out;     /* the reply being built */
    chan_buf_t scratch; /* envelope pairs being built */
    /*  The messages of the WRITE being handled (AAAX_MAX_BATCH slots): each
        one's seq, id and envelope pairs at off/len in scratch. */
    struct broker_entry {
        uint64_t seq;
        uint32_t off, len;
        char id[CHAN_ID_LEN];
    } * entries;
    zhashx_t *tap_topics;
    size_t tap_subs;

    chan_qmsg_t **claim_buf; /* AAAX_MAX_CLAIM slots for CLAIM replies */
    zactor_t *heartbeat;
    zactor_t *actors[4]; /* capability, gate, lifecycle, loader */
    hal_kv_t *kv;        /* apps' key-value spaces (<data>/kv) */
    app_limits_cfg_t app_limits;
    act_ctx_t actx; /* what they share; outlives them */
    int64_t next_housekeeping;
    uint64_t requests, errors, published, dropped_subs;

    /*  CURVE (broker_curve.c, docs/REMOTE.md). */
    char curve_public[HAL_CURVE_Z85_LEN + 1];
    char *curve_secret;     /* sodium_malloc'd, Z85 + NUL */
    void *zap;              /* the ZAP handler (REP), or NULL */
    hal_curve_auth_t *auth; /* the authorized-keys file, as last read */
    hal_curve_stamp_t auth_stamp;
    int inotify_fd;             /* watches <data>/curve, or -1 */
    hal_curve_enroll_t *enroll; /* one-time enrollment tokens */
    bool insecure_plain; /* a non-loopback tcp endpoint is plain (--insecure) */
    uint64_t zap_requests, zap_denied;

    /*  Why the last sessions ended, by routing id, so that a connection
        whose session the kernel ended hears why in its next 401 (a ring). */
    struct {
        uint8_t rid[BROKER_ENDED_RID];
        uint8_t ridlen;
        char reason[64];
    } ended[BROKER_ENDED_MAX];
    size_t ended_next;
};

/*  ---- broker_curve.c: CURVE, ZAP, authorized keys, enrollment ---- */

/*  Loads (or makes) the kernel's CURVE certificate, the authorized keys and
    the enrollment tokens; starts the ZAP handler when an endpoint needs
    CURVE and watches <data>/curve. Before any bind. */
int broker_curve_init (broker_t *self, char *err, size_t errlen);
void broker_curve_destroy (broker_t *self);
/*  Sets the security options of sock for binding ep: CURVE server with the
    kernel's key and ZAP domain `domain`, or plain. */
void broker_curve_bind_opts (broker_t *self, void *sock, const char *ep,
                             const char *domain);
/*  Answers waiting ZAP requests. */
void broker_curve_zap (broker_t *self);
/*  Reads the authorized file again if it changed (or always if force);
    undocks sessions whose key lost its binding. */
void broker_curve_refresh (broker_t *self, bool force);
/*  Drains the inotify descriptor, then refreshes. */
void broker_curve_inotify (broker_t *self);

/*  ---- broker.c: output and sessions ---- */

/*  Sends a control message (reply, notice, mailbox push) to a connection:
    queued behind earlier ones when the peer's pipe is full; a session
    whose queue overflows is undocked. */
void broker_send_ctl (broker_t *self, const uint8_t *rid, size_t ridlen,
                      size_t hostlen, broker_session_t *session, int cmd,
                      const void *body, size_t len);

/*  Sends the routing frames of a message to session s: the routing id, and
    for a hosted session the host's routing id (the slot frame then follows
    the body: broker_send_slot). ZMQ_SNDMORE is set. <0 as zmq_send. */
int broker_send_rid (broker_t *self, broker_session_t *s);
/*  Ends a message to a hosted session with its slot frame (after a body
    sent with ZMQ_SNDMORE); nothing for other sessions. */
void broker_send_slot (broker_t *self, broker_session_t *s);

/*  Frees every grant of s (its rights count goes to 0). */
void broker_grants_clear (broker_session_t *s);

/*  Marks a session whose peer is gone; undocked at the end of the turn. */
void broker_mark_dead (broker_t *self, broker_session_t *s);

/*  Sends the reply built in self->out: now, or when the store has committed
    everything appended so far if durable is true. */
void broker_reply (broker_t *self, broker_rq_t *rq, int cmd, bool durable);

/*  ERROR {req, code, reason}. */
void broker_error (broker_t *self, broker_rq_t *rq, int code,
                   const char *reason);

/*  Starts self->out as a map of n pairs with "req" first (n counts it). */
msgpack_packer *broker_begin (broker_t *self, broker_rq_t *rq, uint32_t n,
                              msgpack_packer *pk);

broker_session_t *broker_session_find (broker_t *self, const uint8_t *rid,
                                       size_t ridlen);
broker_sys_t *broker_sys_find (broker_t *self, const char *id);
broker_sys_t *broker_sys_get (broker_t *self, const char *id, int64_t wall);
broker_chan_t *broker_chan_find (broker_t *self, const char *name);
void broker_touch (broker_t *self, broker_session_t *s, int64_t now);

/*  Ends a session: subscriptions, waiters (answered with no messages),
    mailbox in-flight marks; leases given back unless keep_leases. */
void broker_undock (broker_t *self, broker_session_t *s, const char *reason,
                    bool keep_leases);

/*  Moves a live session to another connection (HELLO resume): its long
    polls and queued output for the old one are dropped, its mailbox
    messages in flight are due again; subscriptions and leases stay. */
void broker_session_rebind (broker_t *self, broker_session_t *s,
                            const uint8_t *rid, size_t ridlen);

/*  Why the session last on this routing id ended, or NULL. */
const char *broker_ended_reason (const broker_t *self, const uint8_t *rid,
                                 size_t ridlen);

/*  Pushes mailbox messages of sys to its live session while the window
    allows. */
void broker_mbox_pump (broker_t *self, broker_sys_t *sys);
/*  Pushes MSG {sub: "@ID", msg: envelope} to sys's live session (which
    must exist); attempt 0 for a transient message (no attempt key). */
void broker_send_mbox_msg (broker_t *self, broker_sys_t *sys, const void *pairs,
                           size_t len, uint32_t attempt);

/*  Serves long-poll CLAIMs of ch while it has ready messages. */
void broker_serve_waiters (broker_t *self, broker_chan_t *ch, int64_t now);

/*  Records that a queue's next deadline may have moved earlier (after a
    claim, a delayed NACK, a release): keeps the queue heap a lower bound. */
void broker_queue_due (broker_t *self, broker_chan_t *ch);

/*  Next message id; reserves more ids in the store when needed. */
uint64_t broker_next_id (broker_t *self, int64_t wall_ms, char *id);

/*  ---- broker_ops.c: the commands ---- */
void broker_dispatch (broker_t *self, broker_rq_t *rq, int64_t now);
void broker_claim_reply (broker_t *self, broker_rq_t *rq, broker_chan_t *ch,
                         broker_session_t *s, uint32_t max, uint32_t lease_ms,
                         int64_t now, bool wait);
void broker_stat_heartbeat (broker_t *self, msgpack_packer *pk);

/*  R_READ / R_WRITE / R_CLAIM for "read" / "write" / "claim", else 0. */
uint8_t broker_right_bit (const char *name, size_t len);

/*  Capabilities in the switchboard's table (installed by CTL grant). */
void broker_caps_apply_all (broker_t *self, broker_session_t *s);
void broker_caps_drop (broker_t *self, broker_sys_t *sys);
/*  Drops caps past their expiry (wall ms); keeps cap_next_expiry. */
void broker_caps_expire (broker_t *self, int64_t wall);

/*  Publishes data (packed) on a kernel broadcast channel, from "kernel". */
void broker_publish (broker_t *self, const char *chan, const void *data,
                     size_t len);
/*  A kernel.systems event about session s ("dock", "undock", ...). */
void broker_event (broker_t *self, const char *event, broker_session_t *s,
                   const char *reason);
/*  Queues an audit record (never waits). */
void broker_audit (broker_t *self, const char *kind, const char *subject,
                   const char *action, const char *verdict, const char *reason);
/*  Reloads the policy as configured; on error the old one stays and err
    says why (file:line). by names who asked (for the audit log). */
int broker_policy_reload (broker_t *self, const char *by, char *err,
                          size_t errlen);
/*  Publishes the active policy's version and digest on kernel.policy, hands
    it to the actors and audits it. */
void broker_policy_announce (broker_t *self, const char *by);

/*  ---- broker_boot.c: restoring state ---- */
int broker_boot_restore (broker_t *self, char *err, size_t errlen);
int broker_boot_channels (broker_t *self, char *err, size_t errlen);
/*  Installs the journal's live channel capabilities (after restore). */
void broker_boot_caps (broker_t *self);

#endif
