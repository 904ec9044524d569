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

/*  Where the rules of the running policy are written. */
typedef enum {
    BROKER_POLICY_TEXT = 0,   /* the `policy` of a text chunk: the embedded
                                 defaults, or broker_config_load_string */
    BROKER_POLICY_INLINE = 1, /* the `policy` table of a configuration file */
    BROKER_POLICY_FILE = 2    /* a policy file (`policy = "path"`) */
} broker_policy_from_t;

typedef struct {
    char *data_dir;
    char **binds; /* command endpoints besides ipc://<data>/aaax.sock and
                     inproc://aaax */
    size_t nbinds;
    char *tap;
    bool insecure;
    bool curve_all; /* curve = "all": CURVE on loopback tcp too */
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
    /*  Kernel actors (docs/CONFIG.md). */
    uint32_t audit_map_mb;           /* the audit journal's LMDB map size */
    uint32_t audit_checkpoint_every; /* records between signed checkpoints */
    char *lifecycle_rate;       /* "N/s" | "N/m" | "N/h": mutating lifecycle
                                   commands per caller (canonical text) */
    uint32_t lifecycle_rate_n;  /* its N */
    uint32_t lifecycle_rate_ms; /* its period in milliseconds */
    uint32_t stop_grace_ms;     /* lifecycle stop: TERM, then KILL after */
    uint32_t ask_timeout_s;     /* a gate "ask" waits this long for approval */
    /*  The app host (docs/CONFIG.md). */
    uint32_t app_workers; /* worker actors (default: one per core) */
    uint32_t kv_map_mb;   /* apps' key-value LMDB map size */
    uint32_t app_memory_kb, app_memory_max_kb;
    uint64_t app_instructions, app_instructions_max;
    uint32_t app_files_kb, app_files_max_kb;
    uint32_t app_kv_kb, app_kv_max_kb;
    char *source; /* where the file part came from ("embedded defaults") */
    /*  Where the policy was defined, for broker_config_reload_policy (read
        them through broker_config_policy_source). */
    broker_policy_from_t policy_from;
    char *policy_source; /* BROKER_POLICY_FILE: the policy file's path;
                            BROKER_POLICY_INLINE: the configuration file's;
                            BROKER_POLICY_TEXT: the chunk's name */
    char *policy_text;   /* BROKER_POLICY_TEXT: a copy of the chunk, or NULL
                            for the embedded defaults */
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

/*  What the policy was loaded from, for kernel.policy's `source` and
    messages: a path (the policy file, or the configuration file that holds
    it inline), or "embedded defaults" (or a string chunk's name). */
const char *broker_config_policy_source (const broker_config_t *self);

/*  Reads the policy again from where the running configuration defined it:
    the policy file when the configuration's `policy` was a path; the
    configuration file when the policy was inline there (the file is run
    again and only its `policy` key is read: changes to the other keys are
    ignored, and take effect at the next start); the embedded defaults when
    there was no configuration file (or it did not set `policy`). A file
    that now says `policy = "path"` (or no longer sets `policy`) is followed
    as a boot would. On success sets *out to the new policy (caller owns),
    writes what was loaded into source_out (a path or "embedded defaults";
    may be NULL) and returns 0. On error returns AAAX_EINVAL / AAAX_ENOENT /
    AAAX_ELIMIT / AAAX_ENOMEM with "FILE:LINE: ..." (or "FILE: ...") in err,
    and leaves *out and source_out untouched: the caller keeps its policy.
    Rate windows are those of a new policy: empty. */
int broker_config_reload_policy (const broker_config_t *cfg, policy_t **out,
                                 char *source_out, size_t source_len, char *err,
                                 size_t errlen);

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

/*  "auto" (false) or "all" (true) into *all; AAAX_EINVAL otherwise. */
int broker_config_curve_mode (const char *mode, bool *all);

/*  True when the endpoint is served with CURVE: a tcp endpoint that is not
    loopback (unless insecure), or any tcp endpoint with curve = "all". */
bool broker_config_endpoint_curve (const broker_config_t *self,
                                   const char *endpoint);

#endif
