/*  broker_config.h — aaaxd's configuration: the embedded defaults (a Lua
    text of the same shape as a user's file), a user's file laid over them,
    then command-line options over both. Every value is checked here, with a
    message naming the file and the key, so the switchboard gets only valid
    settings. */

#ifndef BROKER_CONFIG_H_INCLUDED
#define BROKER_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "policy.h"

typedef enum { BROKER_CHAN_BROADCAST = 1, BROKER_CHAN_QUEUE = 2 } broker_kind_t;

typedef struct {
    char *name;
    broker_kind_t kind;
    bool durable;          /* work-queues: kept in LMDB (default true) */
    bool public;           /* broadcast: mirrored on the tap */
    uint32_t retain;       /* broadcast: last N kept for SUB since */
    uint32_t max_attempts; /* work-queues: deliveries before the dlq */
    uint32_t max_len;      /* work-queues: messages held (0 = no limit) */
    uint64_t max_bytes;    /* work-queues: payload bytes held (0 = none) */
    uint32_t lease_ms;     /* work-queues: default lease */
} broker_chan_cfg_t;

typedef struct {
    char *data_dir;
    char **binds; /* command endpoints besides ipc://<data>/aaax.sock and
                     inproc://aaax */
    size_t nbinds;
    char *tap;
    bool insecure;
    uint32_t heartbeat_ms;
    size_t max_frame;
    broker_chan_cfg_t *channels;
    size_t nchannels;
    policy_t *policy;
    char **apps;
    size_t napps;
    /*  Extensions (docs/CONFIG.md). */
    uint64_t store_map_mb;    /* LMDB map size */
    uint32_t sndhwm;          /* per-connection send high-water mark */
    uint32_t mailbox_max_len; /* messages held per mailbox */
    uint32_t mailbox_window;  /* unacknowledged pushes per session */
    uint32_t idempotency_ttl_s;
    uint32_t forget_after_s; /* known systems forgotten when idle */
    uint32_t max_sessions;
    uint32_t spin_us;         /* busy-poll after a busy turn before sleeping */
    uint32_t commit_delay_us; /* see hal_store_set_delay */
    char *source; /* where the file part came from ("embedded defaults") */
} broker_config_t;

/*  The embedded defaults as Lua text (what `aaaxd --print-config` shows). */
const char *broker_config_defaults (void);

/*  A configuration holding the embedded defaults; NULL with err on failure
    (which would be a bug in the defaults). Caller owns. */
broker_config_t *broker_config_new (char *err, size_t errlen);

void broker_config_destroy (broker_config_t **self_p);

/*  Lays the Lua file at path over self: every key it sets replaces the
    default (lists whole). Unknown keys are errors. Returns 0, or
    AAAX_EINVAL / AAAX_ENOENT / AAAX_ELIMIT with "path: key: problem" in
    err; self is unchanged on error. */
int broker_config_load_file (broker_config_t *self, const char *path, char *err,
                             size_t errlen);

/*  As broker_config_load_file, from a string (tests). */
int broker_config_load_string (broker_config_t *self, const char *src,
                               const char *chunkname, char *err, size_t errlen);

/*  Replaces the data directory / endpoints (command line). */
int broker_config_set_data (broker_config_t *self, const char *dir);
int broker_config_set_binds (broker_config_t *self, char **binds, size_t n);
int broker_config_set_tap (broker_config_t *self, const char *tap);

/*  Channel names: 1..128 bytes of [A-Za-z0-9._-], not starting with '.' */
bool broker_config_valid_name (const char *name, size_t len);

/*  Checks the whole configuration for consistency (endpoints, reserved
    names, CURVE rule); 0 or AAAX_EINVAL with a message. */
int broker_config_check (const broker_config_t *self, char *err, size_t errlen);

/*  True when a tcp:// endpoint's host is a loopback address. Non-tcp
    endpoints (ipc, inproc) count as local: true. */
bool broker_config_is_loopback (const char *endpoint);

#endif
