/*  app_host.h — the Lua app runtime: a worker that runs many sandboxed apps
    (one lua_State each) over one connection to the kernel.

    Each app is a docked system named by its manifest. Inside aaaxd a
    worker is an actor of the loader's pool: it docks as a kernel system
    (kernel.apphost.N) and speaks for its apps through hosted sessions (a
    third frame, the slot, names the app's session: docs/PROTOCOL.md,
    "Hosted sessions"); `aaax app run DIR --connect EP` runs the same worker
    in its own process with one app, docked directly on its own connection.

    A direct connection looks after itself: a keepalive when nothing was
    sent for heartbeat_ms / 2, the link counted lost when nothing came for
    3 x heartbeat_ms or the connection ends, then a new socket after a
    back-off (100 ms doubling to 5 s, jittered) and HELLO {resume}; the app
    keeps its Lua state (start() does not run again). docs/LUA.md,
    "Running an app remotely", says what the app sees.

    Handlers run as coroutines: a call that waits on the kernel (subscribe,
    claim, gate, fs.*) suspends only its own callback; the worker goes on
    serving the others. A handler that raises or hits a limit crashes its
    app: the worker discards the state, undocks it and restarts it after a
    back-off; 5 restarts within 60 s mark it failed (docs/LUA.md). */

#ifndef APP_HOST_H_INCLUDED
#define APP_HOST_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app_manifest.h"
#include "hal_kv.h"

/*  Defaults and ceilings of per-app limits (configuration keys app_*). */
typedef struct {
    uint32_t memory_kb, memory_max_kb;
    uint64_t instructions, instructions_max;
    uint32_t files_kb, files_max_kb;
    uint32_t kv_kb, kv_max_kb;
} app_limits_cfg_t;

void app_limits_cfg_default (app_limits_cfg_t *cfg);

/*  The limits an app runs with: the manifest's where set, else the
    defaults. AAAX_ELIMIT with err naming the field when a manifest value is
    above its ceiling. */
int app_limits_resolve (const app_limits_cfg_t *cfg, const app_limits_t *want,
                        app_limits_t *out, char *err, size_t errlen);

/*  What a worker needs to start. Strings are borrowed for its lifetime. */
typedef struct {
    const char *endpoint;      /* where to dock */
    const char *host_id;       /* hosted mode: the worker's own system id */
    const char *kernel_token;  /* hosted mode: 64 hex; NULL = direct mode */
    const char *session_token; /* direct mode: privileged HELLO, or NULL */
    const char *files_root;    /* apps' file areas: <files_root>/<name> */
    hal_kv_t *kv;              /* apps' key-value spaces (shared) */
    /*  CURVE for a direct connection over tcp (issue 5): the server's
        public key and this client's keys, Z85 (40 chars), or NULL. */
    const char *curve_server, *curve_public, *curve_secret;
    uint32_t restart_max;       /* restarts within restart_window_ms: 5 */
    uint32_t restart_window_ms; /* 60000 */
} app_worker_cfg_t;

/*  An app to run: the manifest, its main.lua source and the limits it
    runs with. The worker takes ownership (app_spec_destroy). */
typedef struct {
    app_manifest_t m;
    char *src; /* main.lua, NUL-terminated */
    size_t srclen;
    app_limits_t limits;
} app_spec_t;

void app_spec_destroy (app_spec_t **self_p);

/*  What the worker tells its owner about an app. */
typedef enum {
    APP_EV_STARTED = 0, /* start() returned (first start or a restart) */
    APP_EV_LOAD_FAILED, /* the first start failed: the app is removed */
    APP_EV_CRASHED,     /* a handler raised or hit a limit: restarting */
    APP_EV_FAILED,      /* restart intensity reached: stays down */
    APP_EV_STOPPED      /* removed on request (stop() has run) */
} app_event_t;

typedef void (app_event_fn) (void *arg, const char *name, app_event_t ev,
                             const char *detail);

typedef struct _app_worker_t app_worker_t;

app_worker_t *app_worker_new (const app_worker_cfg_t *cfg, app_event_fn *fn,
                              void *arg, char *err, size_t errlen);
void app_worker_destroy (app_worker_t **self_p);

/*  Docks the worker (hosted mode: its own kernel session). 0 or error. */
int app_worker_connect (app_worker_t *self, char *err, size_t errlen);

/*  The socket to poll for input (borrowed). In direct mode it changes when
    the link is made anew, and is NULL while it is down: ask each time. */
void *app_worker_socket (app_worker_t *self);

/*  Direct mode: a second socket to poll, the link's connection events (a
    lost connection is noticed at once), or NULL. Borrowed; ask each time. */
void *app_worker_monitor (app_worker_t *self);

/*  Adds an app (takes spec) and starts it: it docks, then start() runs;
    the outcome arrives as an event. AAAX_EEXIST when one of that name
    runs here. */
int app_worker_add (app_worker_t *self, app_spec_t *spec);

/*  Stops an app: stop() runs (unless kill), it undocks and is removed;
    APP_EV_STOPPED follows. AAAX_ENOENT when unknown. */
int app_worker_remove (app_worker_t *self, const char *name, bool kill);

/*  Restarts a failed or running app now (its restart count is cleared). */
int app_worker_restart (app_worker_t *self, const char *name);

/*  Serves what is readable and what is due; returns the monotonic ms of
    the next deadline (INT64_MAX when none). Never blocks. */
int64_t app_worker_serve (app_worker_t *self, int64_t now);

/*  Per-app figures, for the loader's list. */
typedef struct {
    char state[16]; /* starting running restarting failed stopping */
    size_t memory;  /* bytes held by the Lua state */
    uint64_t handled, errors, restarts;
    char error[512]; /* last crash reason */
} app_stats_t;
int app_worker_stats (app_worker_t *self, const char *name, app_stats_t *out);
size_t app_worker_count (const app_worker_t *self);

/*  Waits until stop() of every app has run and they have undocked, at
    most timeout_ms. */
void app_worker_shutdown (app_worker_t *self, int timeout_ms);

#endif
