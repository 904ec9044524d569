/*  app_host.c — the Lua app runtime (see app_host.h).

    One worker, many apps. The worker reads the kernel's messages from one
    DEALER; in hosted mode each carries a slot frame that names the app's
    current incarnation. An app's callbacks (start, message, stop, signal,
    timers) each run in a coroutine of its sandbox; an aaax.* call that
    needs the kernel sends its request, records (req -> coroutine) and
    yields; the reply resumes it. Nothing in an app ever blocks the worker.

    Values cross between msgpack and Lua in protected calls on the app's
    main thread (a memory error there is the app's crash, never an abort),
    then move to the coroutine with lua_xmove, which does not allocate. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <czmq.h>
#include <lauxlib.h>
#include <lua.h>
#include <msgpack.h>
#include <sodium.h>

#include "aaax.h"
#include "app_host.h"
#include "app_sandbox.h"
#include "chan_client.h"
#include "chan_heap.h"
#include "chan_map.h"
#include "chan_mpk.h"
#include "hal_clock.h"
#include "hal_vfs.h"

#define S_MAX_TIMERS 1000    /* per app */
#define S_LOG_PER_S 100      /* log lines per app per second */
#define S_ACK_MAX 256        /* mailbox ids ACKed at once */
#define S_EARLY_MAX 64       /* gate answers that beat their WRITE's OK */
#define S_HELD_MAX 4096      /* messages held while start() runs */
#define S_STOP_GRACE_MS 3000 /* stop() may wait on the kernel this long */
#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS 10000
#define S_CONNECT_MS 5000
#define S_RELINK_MIN_MS 100  /* direct mode: the first reconnect's delay */
#define S_RELINK_MAX_MS 5000 /* ... doubling up to this */
#define S_ORPHANS_MAX 256    /* gate answers no call waits for any more */
#define S_LOST "503 connection to the kernel lost (docking again)"

/*  ---- limits ----------------------------------------------------------- */

void
app_limits_cfg_default (app_limits_cfg_t *cfg)
{
    cfg->memory_kb = 4096;
    cfg->memory_max_kb = 65536;
    cfg->instructions = 10000000;
    cfg->instructions_max = 1000000000;
    cfg->files_kb = 16384;
    cfg->files_max_kb = 1048576;
    cfg->kv_kb = 16384;
    cfg->kv_max_kb = 1048576;
}

int
app_limits_resolve (const app_limits_cfg_t *cfg, const app_limits_t *want,
                    app_limits_t *out, char *err, size_t errlen)
{
    out->memory_kb = want->memory_kb ? want->memory_kb : cfg->memory_kb;
    out->instructions =
        want->instructions ? want->instructions : cfg->instructions;
    out->files_kb = want->files_kb ? want->files_kb : cfg->files_kb;
    out->kv_kb = want->kv_kb ? want->kv_kb : cfg->kv_kb;
    if (out->memory_kb > cfg->memory_max_kb) {
        aaax_seterr (err, errlen,
                     "limits.memory_kb %u is above the kernel's ceiling "
                     "app_memory_max_kb = %u",
                     out->memory_kb, cfg->memory_max_kb);
        return AAAX_ELIMIT;
    }
    if (out->instructions > cfg->instructions_max) {
        aaax_seterr (err, errlen,
                     "limits.instructions %llu is above the kernel's "
                     "ceiling app_instructions_max = %llu",
                     (unsigned long long) out->instructions,
                     (unsigned long long) cfg->instructions_max);
        return AAAX_ELIMIT;
    }
    if (out->files_kb > cfg->files_max_kb) {
        aaax_seterr (err, errlen,
                     "limits.files_kb %u is above the kernel's ceiling "
                     "app_files_max_kb = %u",
                     out->files_kb, cfg->files_max_kb);
        return AAAX_ELIMIT;
    }
    if (out->kv_kb > cfg->kv_max_kb) {
        aaax_seterr (err, errlen,
                     "limits.kv_kb %u is above the kernel's ceiling "
                     "app_kv_max_kb = %u",
                     out->kv_kb, cfg->kv_max_kb);
        return AAAX_ELIMIT;
    }
    return 0;
}

void
app_spec_destroy (app_spec_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    app_spec_t *self = *self_p;
    app_manifest_fini (&self->m);
    free (self->src);
    free (self);
    *self_p = NULL;
}

/*  ---- structures -------------------------------------------------------- */

enum {
    A_LOADING = 0, /* main.lua runs */
    A_DOCKING,     /* HELLO sent */
    A_STARTING,    /* start() runs */
    A_RUNNING,
    A_STOPPING, /* stop() runs, then BYE */
    A_BACKOFF,  /* crashed; restarts at the due time */
    A_FAILED
};

static const char *s_state_names[] = { "starting", "starting", "starting",
                                       "running",  "stopping", "restarting",
                                       "failed" };

/*  What a deadline in the worker's heap belongs to. */
enum { D_TIMER = 1, D_RESTART, D_STOP };

typedef struct {
    chan_heap_node_t node; /* first: the heap hands back this address */
    int type;
} s_due_t;

typedef struct _s_app_t s_app_t;

typedef struct {
    s_due_t due;
    s_app_t *app;
    uint64_t id;
    int fn_ref;
    int64_t every_ms; /* 0: once */
} s_timer_t;

/*  A request in flight for an app. */
enum {
    C_HELLO = 1,
    C_ASYNC, /* SEND, WRITE: no one waits; a refusal is logged */
    C_SUB,
    C_UNSUB,
    C_CLAIM,
    C_ACK,
    C_NACK,
    C_GATE, /* WRITE on kernel.gate; then the answer by corr */
    C_BYE,
    C_ACKS,  /* the runtime's own mailbox ACKs */
    C_PROBE, /* direct mode: UNSUB @self, the keepalive only a docked
                session gets OK for */
    C_RESUB  /* direct mode: SUB again after a re-dock to a new session */
};

enum { FS_NONE = 0, FS_READ, FS_WRITE, FS_LIST, FS_REMOVE };

typedef struct {
    int kind;
    lua_State *co;   /* the callback waiting, or NULL */
    bool wait_final; /* gate: wait past "ask" for the approval */
    int fs_op;
    char *fs_path;
    char *fs_data;
    size_t fs_len;
    char gate_id[40]; /* C_GATE once the WRITE was accepted */
    char *chan;       /* direct mode: C_SUB, C_UNSUB, C_RESUB's channel */
    char (*ids)[40];  /* direct mode: C_ACKS's ids */
    size_t nids;
} s_call_t;

/*  A message that arrived while start() was running. */
typedef struct _s_held_t {
    struct _s_held_t *next;
    size_t len;
    uint8_t body[];
} s_held_t;

struct _s_app_t {
    app_worker_t *w;
    app_spec_t *spec;
    const char *name;
    int state;
    bool first_start; /* the start of a load: a failure removes it */
    bool remove_when_down;
    uint32_t slot; /* the incarnation's slot (hosted) */
    app_sandbox_t *sb;
    int ref_start, ref_message, ref_stop, ref_signal;
    lua_State *running; /* the callback coroutine being resumed */
    bool waiting;       /* set by an aaax.* call that yields */
    lua_State *idle_co; /* a finished callback thread, reused */
    lua_State *stop_co;
    chan_map_t cbs; /* coroutine -> s_cb_t: the callbacks in flight */
    uint64_t next_req;
    chan_map_t calls;  /* req -> s_call_t */
    zhashx_t *gates;   /* gate request id -> s_call_t (answer pending) */
    zhashx_t *early;   /* request id -> packed envelope that came early */
    chan_map_t timers; /* id -> s_timer_t */
    uint64_t next_timer;
    char (*acks)[40]; /* S_ACK_MAX ids, made on the first (s_ack_later) */
    size_t nacks;
    s_held_t *held_head, *held_tail;
    size_t nheld;
    s_due_t restart_due;
    s_due_t stop_due;
    int64_t restarts_at[16]; /* monotonic ms of recent restarts */
    size_t nrestarts;
    hal_vfs_t *vfs;
    int64_t log_window;
    uint32_t log_count;
    uint64_t log_dropped;
    uint64_t handled, errors, restarts_total;
    char error[512];
    /*  Direct mode (NULL when hosted): mailbox ids being handled (S_BUSY)
        or handled with their ACK not yet confirmed (S_DONE) -- a message
        the kernel delivers again after a re-dock is not handled twice --;
        the channels subscribed to (renewed on a new session); gate ids
        whose waiting call failed when the link was lost. */
    zhashx_t *seen, *subs, *orphans;
};

#define S_BUSY ((void *) 1)
#define S_DONE ((void *) 2)

struct _app_worker_t {
    app_worker_cfg_t cfg;
    bool direct;
    zsock_t *sock;
    void *raw;
    app_event_fn *fn;
    void *fn_arg;
    chan_map_t slots; /* slot -> s_app_t (hosted) */
    zhashx_t *byname; /* name -> s_app_t */
    uint32_t next_slot;
    uint64_t next_req; /* the worker's own session (hosted) */
    chan_heap_t due;
    uint32_t heartbeat_ms;
    chan_buf_t out;
    s_app_t *touched[64]; /* apps with ACKs to flush */
    size_t ntouched;
    /*  Direct mode: the link to the kernel. One socket is one connection
        (libzmq does not reconnect it); a lost one is closed and a new one
        made after a back-off, which docks again with HELLO {resume}. */
    zsock_t *mon;      /* PAIR: the socket's monitor events, or NULL */
    unsigned sockets;  /* sockets made */
    bool up;           /* a socket exists */
    bool handshaken;   /* its ZMTP (CURVE) handshake succeeded */
    bool linked;       /* its HELLO was answered: a live session */
    bool ever_docked;  /* some HELLO was answered */
    bool maybe_docked; /* a HELLO went unanswered on a lost link */
    char session[40];  /* the session to resume, or "" */
    int64_t hello_at;  /* a HELLO waits for its answer since, or 0 */
    int64_t last_sent, last_recv;
    int64_t gap_at;     /* when a silence of 2 heartbeats ended, or 0 */
    int64_t relink_at;  /* while !up: when to try again */
    uint32_t relink_ms; /* the next back-off */
    int64_t lost_at;    /* when the link was lost */
    uint32_t attempts;  /* since then */
};

/*  A callback in flight: which handler, and for a mailbox message the id
    to ACK when it returns. */
enum { K_START = 1, K_MESSAGE, K_STOP, K_TIMER, K_SIGNAL };

typedef struct {
    int kind;
    char ack[40]; /* mailbox message id, or "" */
} s_cb_t;

/*  ---- small helpers ------------------------------------------------------ */

static void
s_event (app_worker_t *w, s_app_t *a, app_event_t ev, const char *detail)
{
    if (w->fn)
        w->fn (w->fn_arg, a->name, ev, detail);
}

/*  Copies a string into a log-safe form (printable, bounded). */
static void
s_clean (char *out, size_t size, const char *s, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 1 < size; i++) {
        unsigned char c = (unsigned char) s[i];
        out[j++] =
            (c >= 32 && c != 127) || c >= 128 || c == '\t' ? (char) c : '?';
    }
    out[j] = 0;
}

/*  Sends [cmd, body] for app a (hosted: with its slot frame), or for the
    worker's own session when a is NULL. The body is self->out with the
    map header already counting "req", which goes first. */
static int
s_send (app_worker_t *w, s_app_t *a, const char *cmd, const void *body,
        size_t len)
{
    bool slot = a && !w->direct;
    if (w->direct) {
        /*  No socket while the link is down; and nothing but HELLO goes
            on a new one before the kernel has answered it. */
        if (!w->raw || (!w->linked && !streq (cmd, "HELLO")))
            return AAAX_EIO;
        int64_t now = hal_clock_mono_ms ();
        /*  Sends are at most heartbeat_ms / 2 apart while docked: a longer
            pause means this process stood still, and the kernel may have
            undocked the session meanwhile. */
        if (w->linked && w->heartbeat_ms
            && now - w->last_sent > 2 * (int64_t) w->heartbeat_ms)
            w->gap_at = now;
        w->last_sent = now;
    }
    if (zmq_send (w->raw, cmd, strlen (cmd), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return AAAX_EIO;
    if (zmq_send (w->raw, body, len,
                  slot ? ZMQ_SNDMORE | ZMQ_DONTWAIT : ZMQ_DONTWAIT)
        < 0)
        return AAAX_EIO;
    if (slot) {
        uint8_t s[4];
        memcpy (s, &a->slot, 4);
        if (zmq_send (w->raw, s, 4, ZMQ_DONTWAIT) < 0)
            return AAAX_EIO;
    }
    return 0;
}

/*  Starts a request body in w->out: a map of n + 1 pairs, "req" first. */
static msgpack_packer *
s_begin (app_worker_t *w, uint64_t req, uint32_t n, msgpack_packer *pk)
{
    chan_buf_reset (&w->out);
    chan_buf_packer (&w->out, pk);
    msgpack_pack_map (pk, n + 1);
    chan_pack_str (pk, "req", 3);
    msgpack_pack_uint64 (pk, req);
    return pk;
}

static void s_call_free (s_call_t *c);

/*  Sends w->out for app a and records the call (taken). */
static int
s_request (s_app_t *a, uint64_t req, const char *cmd, s_call_t *call)
{
    app_worker_t *w = a->w;
    if (w->out.oom) {
        s_call_free (call);
        return AAAX_ENOMEM;
    }
    if (call && chan_map_put (&a->calls, req, call) != 0) {
        s_call_free (call);
        return AAAX_ENOMEM;
    }
    /*  Direct mode, re-docking: a subscribe or unsubscribe waits and goes
        once the app is docked again (s_redocked); anything else fails. */
    if (w->direct && !w->linked && call && call->co
        && (call->kind == C_SUB || call->kind == C_UNSUB))
        return 0;
    int rc = s_send (w, a, cmd, w->out.data, w->out.len);
    if (rc != 0 && call) {
        chan_map_del (&a->calls, req);
        s_call_free (call);
    }
    return rc;
}

static s_call_t *
s_call_new (int kind, lua_State *co)
{
    s_call_t *c = (s_call_t *) calloc (1, sizeof *c);
    if (c) {
        c->kind = kind;
        c->co = co;
    }
    return c;
}

static void
s_call_free (s_call_t *c)
{
    if (!c)
        return;
    free (c->fs_path);
    free (c->fs_data);
    free (c->chan);
    free (c->ids);
    free (c);
}

/*  ---- msgpack <-> Lua ---------------------------------------------------- */

/*  Pushes o as a Lua value (may raise: call it protected). */
static void
s_push_obj (lua_State *L, const msgpack_object *o, int depth)
{
    luaL_checkstack (L, 3, "value too deep");
    if (depth > AAAX_MAX_DEPTH) {
        lua_pushnil (L);
        return;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN: lua_pushboolean (L, o->via.boolean); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t) INT64_MAX)
            lua_pushnumber (L, (lua_Number) o->via.u64);
        else
            lua_pushinteger (L, (lua_Integer) o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        lua_pushinteger (L, (lua_Integer) o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        lua_pushnumber (L, (lua_Number) o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        lua_pushlstring (L, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        lua_pushlstring (L, o->via.bin.ptr, o->via.bin.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        lua_createtable (L, (int) o->via.array.size, 0);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            s_push_obj (L, &o->via.array.ptr[i], depth + 1);
            lua_rawseti (L, -2, (lua_Integer) i + 1);
        }
        break;
    case MSGPACK_OBJECT_MAP:
        lua_createtable (L, 0, (int) o->via.map.size);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type != MSGPACK_OBJECT_STR
                && k->type != MSGPACK_OBJECT_POSITIVE_INTEGER
                && k->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
                continue;
            s_push_obj (L, k, depth + 1);
            s_push_obj (L, &o->via.map.ptr[i].val, depth + 1);
            lua_rawset (L, -3);
        }
        break;
    default: lua_pushnil (L);
    }
}

/*  Packs the Lua value at idx (may raise a Lua error naming the problem). */
static void
s_pack_lua (lua_State *L, int idx, msgpack_packer *pk, int depth)
{
    idx = lua_absindex (L, idx);
    switch (lua_type (L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE: msgpack_pack_nil (pk); return;
    case LUA_TBOOLEAN:
        if (lua_toboolean (L, idx))
            msgpack_pack_true (pk);
        else
            msgpack_pack_false (pk);
        return;
    case LUA_TNUMBER:
        if (lua_isinteger (L, idx))
            msgpack_pack_int64 (pk, (int64_t) lua_tointeger (L, idx));
        else
            msgpack_pack_double (pk, (double) lua_tonumber (L, idx));
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring (L, idx, &len);
        chan_pack_str (pk, s, len);
        return;
    }
    case LUA_TTABLE: break;
    default: luaL_error (L, "cannot send a %s", luaL_typename (L, idx)); return;
    }
    if (depth >= AAAX_MAX_DATA_DEPTH)
        luaL_error (L, "data nested deeper than %d levels (or a cycle)",
                    AAAX_MAX_DATA_DEPTH);
    luaL_checkstack (L, 4, "data too deep");
    /*  An array when the keys are exactly 1..n, else a map. */
    lua_Integer n = (lua_Integer) lua_rawlen (L, idx);
    size_t count = 0;
    bool array = true;
    lua_pushnil (L);
    while (lua_next (L, idx)) {
        count++;
        if (!lua_isinteger (L, -2) || lua_tointeger (L, -2) < 1
            || lua_tointeger (L, -2) > n)
            array = false;
        lua_pop (L, 1);
    }
    if (count > UINT32_MAX)
        luaL_error (L, "table too large");
    /*  An empty table goes as an empty map: {} is what a caller means
        by "no args" far more often than []. */
    if (array && count > 0 && (lua_Integer) count == n) {
        msgpack_pack_array (pk, (size_t) n);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti (L, idx, i);
            s_pack_lua (L, -1, pk, depth + 1);
            lua_pop (L, 1);
        }
        return;
    }
    msgpack_pack_map (pk, count);
    lua_pushnil (L);
    while (lua_next (L, idx)) {
        int kt = lua_type (L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
            luaL_error (L, "a map key must be a string or a number, not %s",
                        luaL_typename (L, -2));
        s_pack_lua (L, -2, pk, depth + 1);
        s_pack_lua (L, -1, pk, depth + 1);
        lua_pop (L, 1);
    }
}

static void s_resume (s_app_t *a, lua_State *co, int nargs);
static int s_open_api (lua_State *L);

/*  ---- running callbacks ------------------------------------------------- */

static void s_crash (s_app_t *a, const char *reason);
static void s_flush_acks (s_app_t *a);

static void
s_touch (app_worker_t *w, s_app_t *a)
{
    for (size_t i = 0; i < w->ntouched; i++)
        if (w->touched[i] == a)
            return;
    if (w->ntouched == sizeof w->touched / sizeof w->touched[0])
        s_flush_acks (a);
    else
        w->touched[w->ntouched++] = a;
}

/*  A thread for a callback: the idle one when there is one. */
static lua_State *
s_thread (s_app_t *a)
{
    if (a->idle_co) {
        lua_State *co = a->idle_co;
        a->idle_co = NULL;
        return co;
    }
    return app_sandbox_thread (a->sb);
}

/*  What a finished callback leaves: its thread kept for reuse, or
    released. */
static void
s_done_thread (s_app_t *a, lua_State *co, bool reusable)
{
    if (reusable && !a->idle_co && lua_status (co) == LUA_OK) {
        lua_settop (co, 0);
        a->idle_co = co;
    } else
        app_sandbox_release (a->sb, co);
}

/*  Pushes a msgpack value onto co, converted in a protected call on the
    app's main thread. false on a memory error (the caller crashes the
    app). */
static int
s_pconvert (lua_State *L)
{
    const msgpack_object *o = (const msgpack_object *) lua_touserdata (L, 1);
    lua_settop (L, 0);
    s_push_obj (L, o, 0);
    return 1;
}

static bool
s_push_to (s_app_t *a, lua_State *co, const msgpack_object *o)
{
    lua_State *L = app_sandbox_state (a->sb);
    lua_pushcfunction (L, s_pconvert);
    lua_pushlightuserdata (L, (void *) o);
    if (lua_pcall (L, 1, 1, 0) != LUA_OK) {
        lua_pop (L, 1);
        return false;
    }
    if (!lua_checkstack (co, 4)) {
        lua_pop (L, 1);
        return false;
    }
    lua_xmove (L, co, 1);
    return true;
}

/*  Pushes nil and "CODE reason" (a refusal) on co: two values. */
static void
s_push_refusal (lua_State *co, int code, const char *reason)
{
    lua_pushnil (co);
    char buf[400];
    snprintf (buf, sizeof buf, "%d %s", code, reason ? reason : "");
    lua_pushstring (co, buf);
}

/*  Queues a mailbox id for the ACK of this turn. The buffer is made on
    the first: an app that is never sent anything does not pay for it. */
static void
s_ack_queue (s_app_t *a, const char *id)
{
    if (!a->acks && !(a->acks = (char (*)[40]) malloc (S_ACK_MAX * 40))) {
        zsys_warning ("app %s: no memory to acknowledge %s; it comes again",
                      a->name, id);
        return;
    }
    snprintf (a->acks[a->nacks++], 40, "%s", id);
    s_touch (a->w, a);
    if (a->nacks == S_ACK_MAX)
        s_flush_acks (a);
}

/*  A mailbox message is done with: ACK it. Direct mode remembers it until
    the kernel confirms the ACK: after a re-dock it is acknowledged again,
    and a copy the kernel delivers again is not handled twice. */
static void
s_ack_later (s_app_t *a, const char *id)
{
    if (!id || !*id)
        return;
    if (a->seen) {
        if (zhashx_lookup (a->seen, id))
            zhashx_update (a->seen, id, S_DONE);
        else if (zhashx_insert (a->seen, id, S_DONE) != 0) {
            zsys_warning ("app %s: no memory to acknowledge %s; it comes "
                          "again",
                          a->name, id);
            return;
        }
    }
    s_ack_queue (a, id);
}

/*  Starts a callback: handler ref with the argument pushed by push (NULL:
    none). kind and ack describe it. */
static void
s_callback (s_app_t *a, int kind, int ref, const msgpack_object *arg,
            const char *ack)
{
    if (ref == LUA_NOREF || ref == LUA_REFNIL) {
        /*  No handler for it: the message is consumed all the same. */
        s_ack_later (a, ack);
        return;
    }
    lua_State *co = s_thread (a);
    if (!co) {
        s_crash (a, "memory limit: cannot start a callback");
        return;
    }
    s_cb_t *cb = (s_cb_t *) calloc (1, sizeof *cb);
    if (!cb || chan_map_put (&a->cbs, (uint64_t) (uintptr_t) co, cb) != 0) {
        free (cb);
        app_sandbox_release (a->sb, co);
        s_crash (a, "out of memory");
        return;
    }
    cb->kind = kind;
    if (ack)
        snprintf (cb->ack, sizeof cb->ack, "%s", ack);
    lua_rawgeti (co, LUA_REGISTRYINDEX, ref);
    int nargs = 0;
    if (arg) {
        if (!s_push_to (a, co, arg)) {
            s_crash (a, "memory limit exceeded while receiving a message");
            return;
        }
        nargs = 1;
    }
    if (kind == K_STOP)
        a->stop_co = co;
    s_resume (a, co, nargs);
}

static void s_started (s_app_t *a);
static void s_stopped (s_app_t *a);

/*  Resumes co; handles how it ended. */
static void
s_resume (s_app_t *a, lua_State *co, int nargs)
{
    char err[300] = "";
    int nres = 0;
    a->running = co;
    a->waiting = false;
    app_run_t r = app_sandbox_resume (a->sb, co, nargs, &nres, err, sizeof err);
    a->running = NULL;
    if (r == APP_RUN_YIELD && a->waiting)
        return; /* an aaax.* call resumes it with the kernel's answer */
    s_cb_t *cb = (s_cb_t *) chan_map_del (&a->cbs, (uint64_t) (uintptr_t) co);
    int kind = cb ? cb->kind : 0;
    if (r == APP_RUN_YIELD) {
        r = APP_RUN_ERROR;
        snprintf (err, sizeof err,
                  "coroutine.yield() in a handler: only aaax.* calls may "
                  "wait (wrap your own yields in coroutine.wrap)");
    }
    if (kind == K_STOP)
        a->stop_co = NULL;
    if (r == APP_RUN_DONE) {
        if (cb)
            s_ack_later (a, cb->ack);
        if (kind == K_MESSAGE)
            a->handled++;
        free (cb);
        s_done_thread (a, co, true);
        if (kind == K_START && a->state == A_STARTING)
            s_started (a);
        else if (kind == K_STOP && a->state == A_STOPPING)
            s_stopped (a);
        return;
    }
    free (cb);
    app_sandbox_release (a->sb, co);
    a->errors++;
    if (kind == K_STOP) {
        /*  stop() failing changes nothing: the app is going anyway. */
        zsys_warning ("app %s: stop(): %s", a->name, err);
        if (a->state == A_STOPPING)
            s_stopped (a);
        return;
    }
    char reason[360];
    snprintf (reason, sizeof reason, "%s%s",
              r == APP_RUN_KILLED ? "killed: " : "", err);
    s_crash (a, reason);
}

/*  A waiting call's answer is on co's stack (nres values): resume. */
static void
s_answer (s_app_t *a, lua_State *co, int nres)
{
    if (!chan_map_get (&a->cbs, (uint64_t) (uintptr_t) co))
        return; /* its callback is gone (crash, stop) */
    s_resume (a, co, nres);
}

/*  ---- an app's incarnations ---------------------------------------------- */

static void
s_flush_acks (s_app_t *a)
{
    if (!a->nacks)
        return;
    app_worker_t *w = a->w;
    /*  Direct mode without a session: the ids stay in a->seen and are
        acknowledged once docked again. */
    if (a->state == A_DOCKING || a->state == A_BACKOFF || a->state == A_FAILED
        || a->state == A_LOADING || (w->direct && !w->linked)) {
        a->nacks = 0;
        return;
    }
    msgpack_packer pk;
    uint64_t req = ++a->next_req;
    s_begin (w, req, 2, &pk);
    chan_pack_str (&pk, "chan", 4);
    char mbox[AAAX_MAX_NAME + 2];
    snprintf (mbox, sizeof mbox, "@%s", a->name);
    chan_pack_cstr (&pk, mbox);
    chan_pack_str (&pk, "ids", 3);
    msgpack_pack_array (&pk, a->nacks);
    for (size_t i = 0; i < a->nacks; i++)
        chan_pack_cstr (&pk, a->acks[i]);
    s_call_t *c = s_call_new (C_ACKS, NULL);
    if (c && a->seen && (c->ids = (char (*)[40]) malloc (a->nacks * 40))) {
        memcpy (c->ids, a->acks, a->nacks * 40);
        c->nids = a->nacks;
    }
    a->nacks = 0;
    s_request (a, req, "ACK", c);
}

static void
s_release_calls (s_app_t *a)
{
    for (size_t i = 0; a->calls.mask && i <= a->calls.mask; i++)
        if (a->calls.keys[i])
            s_call_free ((s_call_t *) a->calls.vals[i]);
    chan_map_fini (&a->calls);
    chan_map_init (&a->calls);
    for (s_call_t *c = (s_call_t *) zhashx_first (a->gates); c;
         c = (s_call_t *) zhashx_next (a->gates))
        s_call_free (c);
    zhashx_purge (a->gates);
    zhashx_purge (a->early);
    for (size_t i = 0; a->cbs.mask && i <= a->cbs.mask; i++)
        if (a->cbs.keys[i])
            free (a->cbs.vals[i]);
    chan_map_fini (&a->cbs);
    chan_map_init (&a->cbs);
    for (size_t i = 0; a->timers.mask && i <= a->timers.mask; i++)
        if (a->timers.keys[i]) {
            s_timer_t *t = (s_timer_t *) a->timers.vals[i];
            chan_heap_remove (&a->w->due, &t->due.node);
            free (t);
        }
    chan_map_fini (&a->timers);
    chan_map_init (&a->timers);
    while (a->held_head) {
        s_held_t *h = a->held_head;
        a->held_head = h->next;
        free (h);
    }
    a->held_tail = NULL;
    a->nheld = 0;
    if (a->seen)
        zhashx_purge (a->seen);
    if (a->subs)
        zhashx_purge (a->subs);
    if (a->orphans)
        zhashx_purge (a->orphans);
}

/*  Ends the incarnation: the Lua state, the calls, the session (BYE: its
    unacknowledged mailbox messages come again to the next one). */
static void
s_down (s_app_t *a, bool bye)
{
    app_worker_t *w = a->w;
    if (bye && a->state != A_BACKOFF && a->state != A_FAILED
        && a->state != A_LOADING) {
        /*  What was handled (a TERM signal included) is acknowledged
            first; only what was not comes back to the next incarnation. */
        s_flush_acks (a);
        msgpack_packer pk;
        uint64_t req = ++a->next_req;
        s_begin (w, req, 0, &pk);
        s_send (w, a, "BYE", w->out.data, w->out.len);
    }
    if (!w->direct)
        chan_map_del (&w->slots, a->slot);
    else {
        /*  The session is over (or is left to time out, when the link
            is down): the next HELLO docks anew. */
        w->linked = false;
        w->hello_at = 0;
        w->session[0] = 0;
    }
    a->nacks = 0;
    s_release_calls (a);
    chan_heap_remove (&w->due, &a->stop_due.node);
    a->idle_co = a->stop_co = a->running = NULL;
    app_sandbox_destroy (&a->sb);
    a->ref_start = a->ref_message = a->ref_stop = a->ref_signal = LUA_NOREF;
}

static int s_boot (s_app_t *a, char *err, size_t errlen);

static void
s_crash (s_app_t *a, const char *reason)
{
    app_worker_t *w = a->w;
    snprintf (a->error, sizeof a->error, "%s", reason);
    zsys_warning ("app %s: crashed: %s", a->name, reason);
    bool first = a->first_start;
    s_down (a, true);
    if (first) {
        a->state = A_FAILED;
        a->remove_when_down = true;
        s_event (w, a, APP_EV_LOAD_FAILED, reason);
        return;
    }
    int64_t now = hal_clock_mono_ms ();
    /*  The restarts within the window decide: too many, and it stays
        down. */
    size_t kept = 0;
    for (size_t i = 0; i < a->nrestarts; i++)
        if (a->restarts_at[i] > now - (int64_t) w->cfg.restart_window_ms)
            a->restarts_at[kept++] = a->restarts_at[i];
    a->nrestarts = kept;
    if (a->nrestarts >= w->cfg.restart_max) {
        a->state = A_FAILED;
        char why[400];
        snprintf (why, sizeof why, "%zu restarts within %u s; last: %s",
                  a->nrestarts, w->cfg.restart_window_ms / 1000, reason);
        snprintf (a->error, sizeof a->error, "%s", why);
        zsys_error ("app %s: failed: %s", a->name, why);
        s_event (w, a, APP_EV_FAILED, why);
        return;
    }
    int64_t backoff = S_BACKOFF_MIN_MS << (a->nrestarts < 8 ? a->nrestarts : 8);
    if (backoff > S_BACKOFF_MAX_MS)
        backoff = S_BACKOFF_MAX_MS;
    if (a->nrestarts < sizeof a->restarts_at / sizeof a->restarts_at[0])
        a->restarts_at[a->nrestarts++] = now;
    a->restarts_total++;
    a->state = A_BACKOFF;
    chan_heap_remove (&w->due, &a->restart_due.node);
    chan_heap_push (&w->due, &a->restart_due.node, now + backoff);
    s_event (w, a, APP_EV_CRASHED, reason);
}

/*  Sends a HELLO for a; resume (direct mode, docking again) names the
    session to take over. */
static int
s_hello_send (s_app_t *a, const char *resume)
{
    app_worker_t *w = a->w;
    app_manifest_t *m = &a->spec->m;
    msgpack_packer pk;
    uint64_t req = ++a->next_req;
    bool priv = w->direct && w->cfg.session_token;
    s_begin (w, req, (priv ? 5 : 3) + (resume ? 1 : 0), &pk);
    chan_pack_str (&pk, "system", 6);
    chan_pack_cstr (&pk, a->name);
    chan_pack_str (&pk, "version", 7);
    msgpack_pack_uint64 (&pk, AAAX_PROTOCOL_VERSION);
    chan_pack_str (&pk, "channels", 8);
    msgpack_pack_array (&pk, m->nchannels);
    for (size_t i = 0; i < m->nchannels; i++)
        chan_pack_cstr (&pk, m->channels[i]);
    if (priv) {
        chan_pack_str (&pk, "privileged", 10);
        msgpack_pack_true (&pk);
        chan_pack_str (&pk, "token", 5);
        chan_pack_cstr (&pk, w->cfg.session_token);
    }
    if (resume) {
        chan_pack_str (&pk, "resume", 6);
        chan_pack_cstr (&pk, resume);
    }
    int rc = s_request (a, req, "HELLO", s_call_new (C_HELLO, NULL));
    if (rc == 0 && w->direct)
        w->hello_at = hal_clock_mono_ms ();
    return rc;
}

/*  HELLO for the incarnation. */
static int
s_hello (s_app_t *a)
{
    a->state = A_DOCKING;
    /*  Direct mode with the link down: it goes once a new link is up. */
    if (a->w->direct && !a->w->up)
        return 0;
    return s_hello_send (a, NULL);
}

/*  Reads the handlers out of the table main.lua returned (on the main
    thread's top), protected. */
static int
s_pextract (lua_State *L)
{
    s_app_t *a = (s_app_t *) lua_touserdata (L, 1);
    if (!lua_istable (L, 2))
        return luaL_error (L,
                           "main.lua must return a table of handlers, "
                           "not %s",
                           luaL_typename (L, 2));
    static const char *names[] = { "start", "message", "stop", "signal" };
    int *refs[] = { &a->ref_start, &a->ref_message, &a->ref_stop,
                    &a->ref_signal };
    for (int i = 0; i < 4; i++) {
        lua_pushstring (L, names[i]);
        lua_rawget (L, 2);
        if (lua_isnil (L, -1)) {
            lua_pop (L, 1);
            *refs[i] = LUA_NOREF;
        } else if (!lua_isfunction (L, -1))
            return luaL_error (L, "handler %s must be a function, not %s",
                               names[i], luaL_typename (L, -1));
        else
            *refs[i] = luaL_ref (L, LUA_REGISTRYINDEX);
    }
    return 0;
}

static int
s_popen_api (lua_State *L)
{
    lua_pushvalue (L, lua_upvalueindex (1));
    lua_insert (L, 1);
    return s_open_api (L);
}

/*  A new incarnation: sandbox, API, main.lua, handlers, then HELLO. */
static int
s_boot (s_app_t *a, char *err, size_t errlen)
{
    app_worker_t *w = a->w;
    app_limits_t *lim = &a->spec->limits;
    a->sb = app_sandbox_new ((size_t) lim->memory_kb * 1024, lim->instructions);
    if (!a->sb) {
        aaax_seterr (err, errlen, "no memory for a Lua state");
        return AAAX_ENOMEM;
    }
    lua_State *L = app_sandbox_state (a->sb);
    lua_pushlightuserdata (L, a);
    lua_pushcclosure (L, s_popen_api, 1);
    if (lua_pcall (L, 0, 0, 0) != LUA_OK) {
        aaax_seterr (err, errlen, "cannot set up the aaax API: %s",
                     lua_tostring (L, -1));
        lua_pop (L, 1);
        return AAAX_ELIMIT;
    }
    char chunk[AAAX_MAX_NAME + 16];
    snprintf (chunk, sizeof chunk, "main.lua");
    int rc = app_sandbox_load (a->sb, a->spec->src, a->spec->srclen, chunk, err,
                               errlen);
    if (rc != 0)
        return rc;
    lua_State *co = app_sandbox_thread (a->sb);
    if (!co) {
        lua_pop (L, 1);
        aaax_seterr (err, errlen, "memory limit: cannot run main.lua");
        return AAAX_ELIMIT;
    }
    lua_xmove (L, co, 1);
    a->state = A_LOADING;
    int nres = 0;
    a->running = co;
    app_run_t r = app_sandbox_resume (a->sb, co, 0, &nres, err, errlen);
    a->running = NULL;
    if (r == APP_RUN_YIELD) {
        aaax_seterr (err, errlen,
                     "main.lua yielded: it may only define handlers; wait "
                     "on the kernel from start()");
        r = APP_RUN_ERROR;
    }
    if (r != APP_RUN_DONE) {
        app_sandbox_release (a->sb, co);
        return r == APP_RUN_KILLED ? AAAX_ELIMIT : AAAX_EINVAL;
    }
    if (nres < 1)
        lua_pushnil (co);
    else if (nres > 1)
        lua_pop (co, nres - 1);
    lua_pushcfunction (L, s_pextract);
    lua_pushlightuserdata (L, a);
    lua_xmove (co, L, 1);
    app_sandbox_release (a->sb, co);
    if (lua_pcall (L, 2, 0, 0) != LUA_OK) {
        aaax_seterr (err, errlen, "%s/main.lua: %s", a->name,
                     lua_tostring (L, -1));
        lua_pop (L, 1);
        return AAAX_EINVAL;
    }
    if (!w->direct) {
        a->slot = ++w->next_slot;
        if (a->slot == 0)
            a->slot = ++w->next_slot;
        if (chan_map_put (&w->slots, a->slot, a) != 0) {
            aaax_seterr (err, errlen, "out of memory");
            return AAAX_ENOMEM;
        }
    }
    if (s_hello (a) != 0) {
        aaax_seterr (err, errlen, "cannot reach the kernel");
        return AAAX_EIO;
    }
    return 0;
}

/*  start() returned: the app runs; messages held meanwhile go in. */
static void s_deliver (s_app_t *a, const void *body, size_t len, bool held);

static void
s_started (s_app_t *a)
{
    a->state = A_RUNNING;
    bool first = a->first_start;
    a->first_start = false;
    s_event (a->w, a, APP_EV_STARTED, first ? "load" : "restart");
    while (a->held_head && a->state == A_RUNNING) {
        s_held_t *h = a->held_head;
        a->held_head = h->next;
        if (!a->held_head)
            a->held_tail = NULL;
        a->nheld--;
        s_deliver (a, h->body, h->len, true);
        free (h);
    }
}

static void
s_stopped (s_app_t *a)
{
    s_down (a, true);
    a->state = A_FAILED;
    a->remove_when_down = true;
    snprintf (a->error, sizeof a->error, "stopped");
    s_event (a->w, a, APP_EV_STOPPED, "stopped");
}

/*  ---- the kernel's answers ------------------------------------------------
 */

static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    return map ? chan_obj_get (map, key) : NULL;
}

static bool
s_get_str (const msgpack_object *map, const char *key, char *buf, size_t size)
{
    const char *p;
    size_t len;
    if (!map || !chan_obj_get_str (map, key, &p, &len) || len >= size)
        return false;
    memcpy (buf, p, len);
    buf[len] = 0;
    return true;
}

/*  The error of an ERROR body as "CODE reason" parts. */
static void
s_error_of (const msgpack_object *body, int *code, char *reason, size_t size)
{
    uint64_t c = 500;
    chan_obj_get_uint (body, "code", &c);
    *code = (int) c;
    if (!s_get_str (body, "reason", reason, size))
        snprintf (reason, size, "refused");
}

static int s_fs_do (s_app_t *a, lua_State *co, s_call_t *c);
static bool s_hello_direct (s_app_t *a, bool ok, int code, const char *reason,
                            const msgpack_object *body);

/*  A gate answer (the envelope's data) for call c. Returns true when the
    call is finished (c freed). */
static bool
s_gate_answer (s_app_t *a, s_call_t *c, const msgpack_object *data)
{
    char decision[16] = "";
    s_get_str (data, "decision", decision, sizeof decision);
    if (streq (decision, "ask") && c->wait_final)
        return false; /* the approval's follow-up decides */
    lua_State *co = c->co;
    if (!chan_map_get (&a->cbs, (uint64_t) (uintptr_t) co)) {
        s_call_free (c);
        return true;
    }
    if (c->fs_op) {
        if (streq (decision, "allow")) {
            int n = s_fs_do (a, co, c);
            s_call_free (c);
            s_answer (a, co, n);
        } else {
            char reason[200] = "", why[300];
            s_get_str (data, "reason", reason, sizeof reason);
            snprintf (why, sizeof why, "gate: %s (%s)",
                      decision[0] ? decision : "no decision", reason);
            s_call_free (c);
            s_push_refusal (co, 403, why);
            s_answer (a, co, 2);
        }
        return true;
    }
    s_call_free (c);
    if (!s_push_to (a, co, data)) {
        s_crash (a, "memory limit exceeded while receiving a gate answer");
        return true;
    }
    s_answer (a, co, 1);
    return true;
}

static void s_begin_stop (s_app_t *a, bool kill);

/*  A MSG push for app a (body packed); held: one that waited for start()
    to return. */
static void
s_deliver (s_app_t *a, const void *body, size_t len, bool held)
{
    msgpack_unpacked unp;
    msgpack_unpacked_init (&unp);
    if (msgpack_unpack_next (&unp, (const char *) body, len, NULL)
        != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy (&unp);
        return;
    }
    const msgpack_object *env = s_get (&unp.data, "msg");
    char sub[AAAX_MAX_NAME + 2] = "", id[40] = "", corr[40] = "",
                             from[AAAX_MAX_NAME + 1] = "";
    s_get_str (&unp.data, "sub", sub, sizeof sub);
    bool mbox = sub[0] == '@';
    if (env && env->type == MSGPACK_OBJECT_MAP) {
        s_get_str (env, "id", id, sizeof id);
        s_get_str (env, "corr", corr, sizeof corr);
        s_get_str (env, "from", from, sizeof from);
    }
    if (!env || env->type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy (&unp);
        return;
    }
    const msgpack_object *data = s_get (env, "data");
    /*  Direct mode: after a re-dock the kernel delivers again what was not
        acknowledged. One being handled (or held) is acknowledged when done;
        one handled already is acknowledged again, not handled twice. */
    if (a->seen && mbox && id[0] && !held) {
        void *st = zhashx_lookup (a->seen, id);
        if (st) {
            if (st == S_DONE)
                s_ack_queue (a, id);
            msgpack_unpacked_destroy (&unp);
            return;
        }
    }
    if (a->orphans && mbox && corr[0] && streq (from, "kernel.gate")
        && zhashx_lookup (a->orphans, corr)) {
        /*  Its call failed when the link was lost: no one waits for it. */
        zhashx_delete (a->orphans, corr);
        s_ack_later (a, id);
        msgpack_unpacked_destroy (&unp);
        return;
    }
    if (mbox && corr[0] && streq (from, "kernel.gate")) {
        s_call_t *c = (s_call_t *) zhashx_lookup (a->gates, corr);
        if (c) {
            s_ack_later (a, id);
            zhashx_delete (a->gates, corr);
            if (!s_gate_answer (a, c, data))
                zhashx_insert (a->gates, corr, c);
            msgpack_unpacked_destroy (&unp);
            return;
        }
        /*  Its WRITE's OK may not have come yet. */
        bool unconfirmed = false;
        for (size_t i = 0; a->calls.mask && i <= a->calls.mask; i++)
            if (a->calls.keys[i]
                && ((s_call_t *) a->calls.vals[i])->kind == C_GATE)
                unconfirmed = true;
        if (unconfirmed && zhashx_size (a->early) < S_EARLY_MAX) {
            zchunk_t *copy = zchunk_new (body, len);
            zhashx_update (a->early, corr, copy);
            msgpack_unpacked_destroy (&unp);
            return;
        }
    }
    if (mbox && streq (from, "kernel.lifecycle") && data
        && data->type == MSGPACK_OBJECT_MAP) {
        char sig[16] = "";
        if (s_get_str (data, "signal", sig, sizeof sig)) {
            s_ack_later (a, id);
            msgpack_unpacked_destroy (&unp);
            if (streq (sig, "TERM"))
                s_begin_stop (a, false);
            else if (streq (sig, "KILL"))
                s_begin_stop (a, true);
            else if (a->state == A_RUNNING && a->ref_signal != LUA_NOREF) {
                msgpack_sbuffer sb;
                msgpack_sbuffer_init (&sb);
                msgpack_packer pk;
                msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
                chan_pack_cstr (&pk, sig);
                msgpack_unpacked u2;
                msgpack_unpacked_init (&u2);
                if (msgpack_unpack_next (&u2, sb.data, sb.size, NULL)
                    == MSGPACK_UNPACK_SUCCESS)
                    s_callback (a, K_SIGNAL, a->ref_signal, &u2.data, NULL);
                msgpack_unpacked_destroy (&u2);
                msgpack_sbuffer_destroy (&sb);
            }
            return;
        }
    }
    if (a->state == A_STARTING) {
        /*  start() has not returned: the message waits for it. */
        s_held_t *h = a->nheld < S_HELD_MAX
                          ? (s_held_t *) malloc (sizeof *h + len)
                          : NULL;
        if (h && a->seen && mbox && id[0]
            && zhashx_insert (a->seen, id, S_BUSY) != 0) {
            free (h);
            h = NULL;
        }
        if (h) {
            h->next = NULL;
            h->len = len;
            memcpy (h->body, body, len);
            if (a->held_tail)
                a->held_tail->next = h;
            else
                a->held_head = h;
            a->held_tail = h;
            a->nheld++;
        }
        msgpack_unpacked_destroy (&unp);
        return;
    }
    if (a->state == A_RUNNING) {
        if (a->seen && mbox && id[0] && !held
            && zhashx_insert (a->seen, id, S_BUSY) != 0) {
            /*  No memory to remember it: it comes again. */
            msgpack_unpacked_destroy (&unp);
            return;
        }
        s_callback (a, K_MESSAGE, a->ref_message, env, mbox ? id : NULL);
    }
    msgpack_unpacked_destroy (&unp);
}

/*  An OK / ERROR / PONG for app a. */
static void
s_reply (s_app_t *a, const char *cmd, const msgpack_object *body)
{
    uint64_t req = 0;
    if (!chan_obj_get_uint (body, "req", &req))
        return;
    s_call_t *c = (s_call_t *) chan_map_del (&a->calls, req);
    if (!c)
        return;
    bool ok = streq (cmd, "OK");
    int code = 0;
    char reason[256] = "";
    if (!ok)
        s_error_of (body, &code, reason, sizeof reason);
    lua_State *co = c->co;
    switch (c->kind) {
    case C_HELLO:
        s_call_free (c);
        if (a->w->direct && !s_hello_direct (a, ok, code, reason, body))
            return;
        if (!ok) {
            char why[320];
            snprintf (why, sizeof why, "the kernel refused to dock it: %d %s",
                      code, reason);
            s_crash (a, why);
            return;
        }
        a->state = A_STARTING;
        if (a->ref_start == LUA_NOREF)
            s_started (a);
        else
            s_callback (a, K_START, a->ref_start, NULL, NULL);
        return;
    case C_ASYNC:
    case C_ACKS:
    case C_BYE:
        if (!ok) {
            a->errors++;
            zsys_warning ("app %s: the kernel refused a request: %d %s",
                          a->name, code, reason);
        }
        /*  Answered either way: nothing to acknowledge again. */
        for (size_t i = 0; a->seen && i < c->nids; i++)
            if (zhashx_lookup (a->seen, c->ids[i]) == S_DONE)
                zhashx_delete (a->seen, c->ids[i]);
        s_call_free (c);
        return;
    case C_PROBE: s_call_free (c); return;
    case C_RESUB:
        if (!ok) {
            a->errors++;
            zsys_warning ("app %s: cannot subscribe to %s again after "
                          "docking again: %d %s",
                          a->name, c->chan ? c->chan : "?", code, reason);
            if (a->subs && c->chan)
                zhashx_delete (a->subs, c->chan);
        }
        s_call_free (c);
        return;
    case C_GATE:
        if (ok) {
            char id[40];
            if (!s_get_str (body, "id", id, sizeof id)) {
                s_call_free (c);
                s_push_refusal (co, 500, "no id in the gate request's OK");
                s_answer (a, co, 2);
                return;
            }
            zchunk_t *early = (zchunk_t *) zhashx_lookup (a->early, id);
            if (early) {
                zhashx_insert (a->gates, id, c);
                zchunk_t *copy = zchunk_dup (early);
                zhashx_delete (a->early, id);
                s_deliver (a, zchunk_data (copy), zchunk_size (copy), false);
                zchunk_destroy (&copy);
            } else
                zhashx_insert (a->gates, id, c);
            return;
        }
        s_call_free (c);
        s_push_refusal (co, code, reason);
        s_answer (a, co, 2);
        return;
    default: break;
    }
    /*  Calls a callback waits for. */
    int kind = c->kind;
    if (ok && a->subs && c->chan) {
        /*  Direct mode: what a new session is subscribed to again. */
        if (kind == C_SUB)
            zhashx_update (a->subs, c->chan, S_BUSY);
        else if (kind == C_UNSUB)
            zhashx_delete (a->subs, c->chan);
    }
    s_call_free (c);
    if (!ok) {
        s_push_refusal (co, code, reason);
        s_answer (a, co, 2);
        return;
    }
    if (kind == C_SUB || kind == C_UNSUB) {
        lua_pushboolean (co, 1);
        s_answer (a, co, 1);
    } else if (kind == C_CLAIM) {
        const msgpack_object *msgs = s_get (body, "msgs");
        static const msgpack_object empty = { .type = MSGPACK_OBJECT_ARRAY };
        if (!s_push_to (a, co, msgs ? msgs : &empty)) {
            s_crash (a, "memory limit exceeded while receiving claimed "
                        "messages");
            return;
        }
        s_answer (a, co, 1);
    } else {
        uint64_t n = 0;
        chan_obj_get_uint (body, kind == C_ACK ? "acked" : "requeued", &n);
        lua_pushinteger (co, (lua_Integer) n);
        s_answer (a, co, 1);
    }
}

/*  ---- the aaax API ---------------------------------------------------------
 */

static s_app_t *
s_app (lua_State *L)
{
    return (s_app_t *) lua_touserdata (L, lua_upvalueindex (1));
}

static void
s_need_docked (lua_State *L, s_app_t *a, const char *fn)
{
    if (a->state != A_STARTING && a->state != A_RUNNING
        && a->state != A_STOPPING)
        luaL_error (L,
                    "aaax.%s: the app is not docked yet (call it from "
                    "start() or later, not while main.lua runs)",
                    fn);
}

/*  Raises unless the caller is the callback being run: only it can wait
    (the worker resumes it; a coroutine of the app's own would be resumed
    behind the app's back). Called before anything is allocated. */
static void
s_waitable (lua_State *L, s_app_t *a, const char *fn)
{
    if (L != a->running)
        luaL_error (L,
                    "aaax.%s waits for the kernel: call it from a handler "
                    "or a timer, not from a coroutine of your own",
                    fn);
}

/*  Suspends the calling callback (s_waitable said it may) until the
    kernel answers. */
static int
s_wait (lua_State *L, s_app_t *a)
{
    a->waiting = true;
    return lua_yield (L, 0);
}

/*  nil and why a request could not go: two values. */
static int
s_push_unsent (lua_State *L, s_app_t *a, int rc)
{
    lua_pushnil (L);
    if (a->w->direct && !a->w->linked)
        lua_pushstring (L, S_LOST);
    else
        lua_pushfstring (L, "500 cannot reach the kernel (%s)",
                         aaax_strerror (rc));
    return 2;
}

/*  Sends the request in w->out; a waiting kind suspends the caller. chan:
    the channel of a SUB or UNSUB (direct mode keeps it). */
static int
s_issue (lua_State *L, s_app_t *a, uint64_t req, const char *cmd, int kind,
         const char *fn, const char *chan)
{
    if (kind != C_ASYNC)
        s_waitable (L, a, fn);
    s_call_t *c = s_call_new (kind, kind == C_ASYNC ? NULL : L);
    if (c && chan && a->subs && !(c->chan = strdup (chan))) {
        s_call_free (c);
        c = NULL;
    }
    if (!c)
        return luaL_error (L, "aaax.%s: out of memory", fn);
    int rc = s_request (a, req, cmd, c);
    if (rc != 0)
        return s_push_unsent (L, a, rc);
    if (kind == C_ASYNC) {
        lua_pushboolean (L, 1);
        return 1;
    }
    return s_wait (L, a);
}

static const char *
s_check_name (lua_State *L, int arg, const char *what)
{
    size_t len;
    const char *s = luaL_checklstring (L, arg, &len);
    if (len == 0 || len > AAAX_MAX_NAME)
        luaL_argerror (
            L, arg,
            lua_pushfstring (L, "%s must be 1..%d bytes", what, AAAX_MAX_NAME));
    return s;
}

static int
s_api_send (lua_State *L)
{
    s_app_t *a = s_app (L);
    s_need_docked (L, a, "send");
    const char *to = s_check_name (L, 1, "to");
    luaL_checkany (L, 2);
    const char *corr = luaL_optstring (L, 3, NULL);
    /*  opts: {transient = bool}; any other key is a mistake worth telling. */
    bool transient = false;
    if (!lua_isnoneornil (L, 4)) {
        luaL_checktype (L, 4, LUA_TTABLE);
        lua_pushnil (L);
        while (lua_next (L, 4)) {
            if (lua_type (L, -2) != LUA_TSTRING
                || strcmp (lua_tostring (L, -2), "transient") != 0)
                return luaL_argerror (L, 4,
                                      "the only option is transient (a "
                                      "boolean)");
            if (!lua_isboolean (L, -1))
                return luaL_argerror (L, 4, "transient must be a boolean");
            transient = lua_toboolean (L, -1);
            lua_pop (L, 1);
        }
    }
    msgpack_packer pk;
    uint64_t req = ++a->next_req;
    s_begin (a->w, req, 2 + (corr != NULL) + transient, &pk);
    chan_pack_str (&pk, "to", 2);
    chan_pack_cstr (&pk, to);
    chan_pack_str (&pk, "data", 4);
    s_pack_lua (L, 2, &pk, 0);
    if (corr) {
        chan_pack_str (&pk, "corr", 4);
        chan_pack_cstr (&pk, corr);
    }
    if (transient) {
        chan_pack_str (&pk, "transient", 9);
        msgpack_pack_true (&pk);
    }
    return s_issue (L, a, req, "SEND", C_ASYNC, "send", NULL);
}

static int
s_api_reply (lua_State *L)
{
    luaL_checktype (L, 1, LUA_TTABLE);
    luaL_checkany (L, 2);
    lua_settop (L, 2);
    lua_getfield (L, 1, "from");
    lua_getfield (L, 1, "id");
    if (lua_type (L, 3) != LUA_TSTRING || lua_type (L, 4) != LUA_TSTRING)
        return luaL_error (L, "aaax.reply: msg has no from and id (pass the "
                              "message your handler received)");
    /*  A transient request (a mailbox message without attempt) gets a
        transient answer: nothing of the exchange is stored. */
    lua_getfield (L, 1, "chan");
    lua_getfield (L, 1, "attempt");
    size_t clen = 0;
    const char *chan = lua_tolstring (L, 5, &clen);
    bool transient = lua_isnil (L, 6) && chan && clen > 1 && chan[0] == '@';
    /*  send (msg.from, data, msg.id [, {transient = true}]) */
    lua_copy (L, 3, 1);
    lua_copy (L, 4, 3);
    lua_settop (L, 3);
    if (transient) {
        lua_createtable (L, 0, 1);
        lua_pushboolean (L, 1);
        lua_setfield (L, -2, "transient");
    }
    return s_api_send (L);
}

static int
s_api_write (lua_State *L)
{
    s_app_t *a = s_app (L);
    s_need_docked (L, a, "write");
    const char *chan = s_check_name (L, 1, "chan");
    luaL_checkany (L, 2);
    msgpack_packer pk;
    uint64_t req = ++a->next_req;
    s_begin (a->w, req, 2, &pk);
    chan_pack_str (&pk, "chan", 4);
    chan_pack_cstr (&pk, chan);
    chan_pack_str (&pk, "data", 4);
    s_pack_lua (L, 2, &pk, 0);
    return s_issue (L, a, req, "WRITE", C_ASYNC, "write", NULL);
}

static int
s_api_sub (lua_State *L, const char *cmd, int kind, const char *fn)
{
    s_app_t *a = s_app (L);
    s_need_docked (L, a, fn);
    const char *chan = s_check_name (L, 1, "chan");
    msgpack_packer pk;
    uint64_t req = ++a->next_req;
    s_begin (a->w, req, 1, &pk);
    chan_pack_str (&pk, "chan", 4);
    chan_pack_cstr (&pk, chan);
    return s_issue (L, a, req, cmd, kind, fn, chan);
}

static int
s_api_subscribe (lua_State *L)
{
    return s_api_sub (L, "SUB", C_SUB, "subscribe");
}

static int
s_api_unsubscribe (lua_State *L)
{
    return s_api_sub (L, "UNSUB", C_UNSUB, "unsubscribe");
}

static int
s_api_claim (lua_State *L)
{
    s_app_t *a = s_app (L);
    s_need_docked (L, a, "claim");
    const char *chan = s_check_name (L, 1, "chan");
    lua_Integer max = luaL_optinteger (L, 2, 1);
    lua_Integer wait_ms = luaL_optinteger (L, 3, 0);
    lua_Integer lease_ms = luaL_optinteger (L, 4, 0);
    luaL_argcheck (L, max >= 1 && max <= 1000, 2, "max must be 1..1000");
    luaL_argcheck (L, wait_ms >= 0 && wait_ms <= 60000, 3,
                   "wait_ms must be 0..60000");
    luaL_argcheck (L, lease_ms >= 0 && lease_ms <= 86400000, 4,
                   "lease_ms must be 0..86400000");
    msgpack_packer pk;
    uint64_t req = ++a->next_req;
    s_begin (a->w, req, lease_ms ? 4 : 3, &pk);
    chan_pack_str (&pk, "chan", 4);
    chan_pack_cstr (&pk, chan);
    chan_pack_str (&pk, "max", 3);
    msgpack_pack_uint64 (&pk, (uint64_t) max);
    chan_pack_str (&pk, "wait_ms", 7);
    msgpack_pack_uint64 (&pk, (uint64_t) wait_ms);
    if (lease_ms) {
        chan_pack_str (&pk, "lease_ms", 8);
        msgpack_pack_uint64 (&pk, (uint64_t) lease_ms);
    }
    return s_issue (L, a, req, "CLAIM", C_CLAIM, "claim", NULL);
}

/*  Packs ids (a string or a list of strings) at arg. */
static void
s_pack_ids (lua_State *L, int arg, msgpack_packer *pk)
{
    if (lua_type (L, arg) == LUA_TSTRING) {
        msgpack_pack_array (pk, 1);
        size_t len;
        const char *s = lua_tolstring (L, arg, &len);
        chan_pack_str (pk, s, len);
        return;
    }
    luaL_checktype (L, arg, LUA_TTABLE);
    lua_Integer n = (lua_Integer) lua_rawlen (L, arg);
    luaL_argcheck (L, n >= 1 && n <= AAAX_MAX_IDS, arg,
                   "ids: a list of 1..10000 message ids");
    msgpack_pack_array (pk, (size_t) n);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti (L, arg, i);
        size_t len;
        const char *s = lua_tolstring (L, -1, &len);
        if (!s || lua_type (L, -1) != LUA_TSTRING)
            luaL_argerror (L, arg, "ids must be strings");
        chan_pack_str (pk, s, len);
        lua_pop (L, 1);
    }
}

static int
s_api_ack (lua_State *L)
{
    s_app_t *a = s_app (L);
    s_need_docked (L, a, "ack");
    const char *chan = s_check_name (L, 1, "chan");
    msgpack_packer pk;
    uint64_t req = ++a->next_req;
    s_begin (a->w, req, 2, &pk);
    chan_pack_str (&pk, "chan", 4);
    chan_pack_cstr (&pk, chan);
    chan_pack_str (&pk, "ids", 3);
    s_pack_ids (L, 2, &pk);
    return s_issue (L, a, req, "ACK", C_ACK, "ack", NULL);
}

static int
s_api_nack (lua_State *L)
{
    s_app_t *a = s_app (L);
    s_need_docked (L, a, "nack");
    const char *chan = s_check_name (L, 1, "chan");
    lua_Integer delay = luaL_optinteger (L, 3, 0);
    luaL_argcheck (L, delay >= 0 && delay <= 86400000, 3,
                   "delay_ms must be 0..86400000");
    msgpack_packer pk;
    uint64_t req = ++a->next_req;
    s_begin (a->w, req, delay ? 3 : 2, &pk);
    chan_pack_str (&pk, "chan", 4);
    chan_pack_cstr (&pk, chan);
    chan_pack_str (&pk, "ids", 3);
    s_pack_ids (L, 2, &pk);
    if (delay) {
        chan_pack_str (&pk, "delay_ms", 8);
        msgpack_pack_uint64 (&pk, (uint64_t) delay);
    }
    return s_issue (L, a, req, "NACK", C_NACK, "nack", NULL);
}

/*  Sends a gate request {action, target, args} and waits for its answer.
    The call that waits is made from tpl (its fs_path and fs_data, borrowed
    from Lua, copied) once nothing can raise any more: a bad args table
    leaks nothing. */
static int
s_gate_issue (lua_State *L, s_app_t *a, const char *action, const char *target,
              int args_idx, const s_call_t *tpl, const char *fn)
{
    s_waitable (L, a, fn);
    msgpack_packer pk;
    uint64_t req = ++a->next_req;
    s_begin (a->w, req, 2, &pk);
    chan_pack_str (&pk, "chan", 4);
    chan_pack_cstr (&pk, "kernel.gate");
    chan_pack_str (&pk, "data", 4);
    msgpack_pack_map (&pk, args_idx ? 3 : 2);
    chan_pack_str (&pk, "action", 6);
    chan_pack_cstr (&pk, action);
    chan_pack_str (&pk, "target", 6);
    chan_pack_cstr (&pk, target);
    if (args_idx) {
        chan_pack_str (&pk, "args", 4);
        s_pack_lua (L, args_idx, &pk, 0);
    }
    s_call_t *c = s_call_new (C_GATE, L);
    if (c) {
        c->wait_final = tpl->wait_final;
        c->fs_op = tpl->fs_op;
        c->fs_len = tpl->fs_len;
        if (tpl->fs_path)
            c->fs_path = strdup (tpl->fs_path);
        if (tpl->fs_data
            && (c->fs_data = (char *) malloc (tpl->fs_len ? tpl->fs_len : 1)))
            memcpy (c->fs_data, tpl->fs_data, tpl->fs_len);
    }
    if (!c || (tpl->fs_path && !c->fs_path) || (tpl->fs_data && !c->fs_data)) {
        s_call_free (c);
        return luaL_error (L, "aaax.%s: out of memory", fn);
    }
    int rc = s_request (a, req, "WRITE", c);
    if (rc != 0)
        return s_push_unsent (L, a, rc);
    return s_wait (L, a);
}

static int
s_api_gate (lua_State *L)
{
    s_app_t *a = s_app (L);
    s_need_docked (L, a, "gate");
    const char *action = s_check_name (L, 1, "action");
    size_t tlen;
    const char *target = luaL_checklstring (L, 2, &tlen);
    luaL_argcheck (L, tlen <= 4096, 2, "target longer than 4096 bytes");
    int args_idx = 0;
    if (!lua_isnoneornil (L, 3)) {
        luaL_checktype (L, 3, LUA_TTABLE);
        args_idx = 3;
    }
    bool wait_final = false;
    if (lua_istable (L, 4)) {
        lua_getfield (L, 4, "wait");
        wait_final = lua_toboolean (L, -1);
        lua_pop (L, 1);
    }
    s_call_t tpl = { .kind = C_GATE, .wait_final = wait_final };
    return s_gate_issue (L, a, action, target, args_idx, &tpl, "gate");
}

/*  ---- aaax.kv ---------------------------------------------------------------
 */

static size_t
s_check_key (lua_State *L, int arg, const char **key)
{
    size_t len;
    *key = luaL_checklstring (L, arg, &len);
    luaL_argcheck (L, len >= 1 && len <= 512, arg, "key must be 1..512 bytes");
    return len;
}

static int
s_api_kv_get (lua_State *L)
{
    s_app_t *a = s_app (L);
    const char *key;
    size_t klen = s_check_key (L, 1, &key);
    if (!a->w->cfg.kv)
        return luaL_error (L, "aaax.kv: no key-value store on this host");
    void *val = NULL;
    size_t vlen = 0;
    int rc = hal_kv_get (a->w->cfg.kv, a->name, key, klen, &val, &vlen);
    if (rc == AAAX_ENOENT) {
        lua_pushnil (L);
        return 1;
    }
    if (rc != 0) {
        lua_pushnil (L);
        lua_pushfstring (L, "500 %s", aaax_strerror (rc));
        return 2;
    }
    msgpack_unpacked unp;
    msgpack_unpacked_init (&unp);
    bool ok = msgpack_unpack_next (&unp, (const char *) val, vlen, NULL)
              == MSGPACK_UNPACK_SUCCESS;
    if (!ok) {
        free (val);
        msgpack_unpacked_destroy (&unp);
        lua_pushnil (L);
        lua_pushstring (L, "500 stored value is not msgpack");
        return 2;
    }
    /*  A memory error while pushing must not leak the zone: convert in a
        protected call. */
    lua_pushcfunction (L, s_pconvert);
    lua_pushlightuserdata (L, &unp.data);
    /*  The unpacked strings point into val: it lives until they are
        copied. */
    int st = lua_pcall (L, 1, 1, 0);
    msgpack_unpacked_destroy (&unp);
    free (val);
    if (st != LUA_OK)
        return lua_error (L);
    return 1;
}

static int
s_api_kv_put (lua_State *L)
{
    s_app_t *a = s_app (L);
    const char *key;
    size_t klen = s_check_key (L, 1, &key);
    luaL_checkany (L, 2);
    if (!a->w->cfg.kv)
        return luaL_error (L, "aaax.kv: no key-value store on this host");
    msgpack_packer pk;
    chan_buf_reset (&a->w->out);
    chan_buf_packer (&a->w->out, &pk);
    s_pack_lua (L, 2, &pk, 0);
    if (a->w->out.oom)
        return luaL_error (L, "aaax.kv.put: out of memory");
    int rc =
        hal_kv_put (a->w->cfg.kv, a->name, key, klen, a->w->out.data,
                    a->w->out.len, (uint64_t) a->spec->limits.kv_kb * 1024);
    if (rc == 0) {
        lua_pushboolean (L, 1);
        return 1;
    }
    lua_pushnil (L);
    if (rc == AAAX_ELIMIT)
        lua_pushfstring (L, "429 kv quota of %d KiB reached",
                         (int) a->spec->limits.kv_kb);
    else if (rc == AAAX_ETOOBIG)
        lua_pushstring (L, "413 value larger than 1 MiB");
    else
        lua_pushfstring (L, "500 %s", aaax_strerror (rc));
    return 2;
}

static int
s_api_kv_del (lua_State *L)
{
    s_app_t *a = s_app (L);
    const char *key;
    size_t klen = s_check_key (L, 1, &key);
    if (!a->w->cfg.kv)
        return luaL_error (L, "aaax.kv: no key-value store on this host");
    int rc = hal_kv_del (a->w->cfg.kv, a->name, key, klen);
    lua_pushboolean (L, rc == 0);
    return 1;
}

/*  ---- aaax.fs: the gate first, then the HAL's rooted area ------------------
 */

static hal_vfs_t *
s_vfs (s_app_t *a, char *err, size_t errlen)
{
    if (a->vfs)
        return a->vfs;
    if (!a->w->cfg.files_root) {
        aaax_seterr (err, errlen, "no file area on this host");
        return NULL;
    }
    char root[4400];
    snprintf (root, sizeof root, "%s/%s", a->w->cfg.files_root, a->name);
    a->vfs = hal_vfs_open (root, (uint64_t) a->spec->limits.files_kb * 1024,
                           err, errlen);
    return a->vfs;
}

typedef struct {
    lua_State *L;
    lua_Integer i;
} s_list_ctx_t;

static int
s_list_one (void *arg, const char *name, bool is_dir, uint64_t size)
{
    s_list_ctx_t *ctx = (s_list_ctx_t *) arg;
    lua_State *L = ctx->L;
    if (!lua_checkstack (L, 3))
        return 1;
    lua_createtable (L, 0, 3);
    lua_pushstring (L, name);
    lua_setfield (L, -2, "name");
    lua_pushboolean (L, is_dir);
    lua_setfield (L, -2, "dir");
    lua_pushinteger (L, (lua_Integer) size);
    lua_setfield (L, -2, "size");
    lua_rawseti (L, -2, ++ctx->i);
    return 0;
}

/*  Pushes the list on the main thread, protected (allocations). */
static int
s_plist (lua_State *L)
{
    s_app_t *a = (s_app_t *) lua_touserdata (L, 1);
    const char *dir = lua_tostring (L, 2);
    lua_settop (L, 0);
    lua_newtable (L);
    s_list_ctx_t ctx = { L, 0 };
    char err[256];
    int rc = hal_vfs_list (a->vfs, dir, s_list_one, &ctx, err, sizeof err);
    if (rc != 0) {
        lua_pushnil (L);
        lua_pushfstring (L, "%d %s", rc == AAAX_ENOENT ? 404 : 400, err);
        return 2;
    }
    return 1;
}

/*  Does the file operation of c (the gate allowed it); pushes its results
    on co and returns their number. */
static int
s_fs_do (s_app_t *a, lua_State *co, s_call_t *c)
{
    char err[300] = "";
    hal_vfs_t *vfs = s_vfs (a, err, sizeof err);
    if (!vfs) {
        s_push_refusal (co, 500, err);
        return 2;
    }
    int rc = 0;
    if (c->fs_op == FS_READ) {
        char *buf = NULL;
        size_t len = 0;
        size_t max = (size_t) a->spec->limits.memory_kb * 1024 / 4;
        rc = hal_vfs_read (vfs, c->fs_path, max, &buf, &len, err, sizeof err);
        if (rc == 0) {
            lua_State *L = app_sandbox_state (a->sb);
            /*  Copied on the main thread, protected: the app's memory
                cap applies. */
            lua_pushcfunction (L, s_pconvert);
            msgpack_object o = { .type = MSGPACK_OBJECT_STR };
            o.via.str.ptr = buf;
            o.via.str.size = (uint32_t) len;
            lua_pushlightuserdata (L, &o);
            int st = lua_pcall (L, 1, 1, 0);
            free (buf);
            if (st != LUA_OK || !lua_checkstack (co, 2)) {
                lua_pop (L, 1);
                s_push_refusal (co, 413,
                                "file larger than the app's memory "
                                "allows");
                return 2;
            }
            lua_xmove (L, co, 1);
            return 1;
        }
    } else if (c->fs_op == FS_WRITE)
        rc = hal_vfs_write (vfs, c->fs_path, c->fs_data, c->fs_len, err,
                            sizeof err);
    else if (c->fs_op == FS_REMOVE)
        rc = hal_vfs_remove (vfs, c->fs_path, err, sizeof err);
    else if (c->fs_op == FS_LIST) {
        lua_State *L = app_sandbox_state (a->sb);
        lua_pushcfunction (L, s_plist);
        lua_pushlightuserdata (L, a);
        lua_pushstring (L, c->fs_path);
        if (lua_pcall (L, 2, 2, 0) != LUA_OK) {
            lua_pop (L, 1);
            s_push_refusal (co, 413,
                            "listing larger than the app's memory "
                            "allows");
            return 2;
        }
        if (!lua_checkstack (co, 3)) {
            lua_pop (L, 2);
            s_push_refusal (co, 500, "stack");
            return 2;
        }
        int n = lua_isnil (L, -2) ? 2 : 1;
        if (n == 1)
            lua_pop (L, 1);
        lua_xmove (L, co, n);
        return n;
    }
    if (rc != 0) {
        int code = rc == AAAX_ENOENT    ? 404
                   : rc == AAAX_ELIMIT  ? 429
                   : rc == AAAX_ETOOBIG ? 413
                   : rc == AAAX_EINVAL  ? 400
                                        : 500;
        s_push_refusal (co, code, err);
        return 2;
    }
    lua_pushboolean (co, 1);
    return 1;
}

static int
s_api_fs (lua_State *L, int op, const char *fn)
{
    s_app_t *a = s_app (L);
    s_need_docked (L, a, fn);
    size_t plen = 0;
    const char *path = op == FS_LIST ? luaL_optlstring (L, 1, "", &plen)
                                     : luaL_checklstring (L, 1, &plen);
    char err[300];
    /*  A directory to list may end with '/'; a NUL byte anywhere is
        refused, never cut short. */
    size_t check = plen;
    if (op == FS_LIST && check > 1 && path[check - 1] == '/')
        check--;
    if (!(op == FS_LIST && plen == 0)
        && hal_vfs_check_pathn (path, check, err, sizeof err) != 0) {
        lua_pushnil (L);
        lua_pushfstring (L, "400 %s", err);
        return 2;
    }
    size_t dlen = 0;
    const char *data = NULL;
    if (op == FS_WRITE)
        data = luaL_checklstring (L, 2, &dlen);
    s_call_t tpl = { .kind = C_GATE,
                     .fs_op = op,
                     .fs_path = (char *) path,
                     .fs_data = (char *) data,
                     .fs_len = dlen };
    static const char *actions[] = { "", "fs.read", "fs.write", "fs.list",
                                     "fs.remove" };
    return s_gate_issue (L, a, actions[op], *path ? path : ".", 0, &tpl, fn);
}

static int
s_api_fs_read (lua_State *L)
{
    return s_api_fs (L, FS_READ, "fs.read");
}
static int
s_api_fs_write (lua_State *L)
{
    return s_api_fs (L, FS_WRITE, "fs.write");
}
static int
s_api_fs_list (lua_State *L)
{
    return s_api_fs (L, FS_LIST, "fs.list");
}
static int
s_api_fs_remove (lua_State *L)
{
    return s_api_fs (L, FS_REMOVE, "fs.remove");
}

/*  ---- crypto, clock, timers, log -------------------------------------------
 */

static int
s_api_hash (lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring (L, 1, &len);
    uint8_t h[32];
    crypto_generichash (h, sizeof h, (const uint8_t *) s, len, NULL, 0);
    char hex[65];
    sodium_bin2hex (hex, sizeof hex, h, sizeof h);
    lua_pushstring (L, hex);
    return 1;
}

static int
s_api_random (lua_State *L)
{
    lua_Integer n = luaL_checkinteger (L, 1);
    luaL_argcheck (L, n >= 1 && n <= 1024, 1, "n must be 1..1024");
    uint8_t buf[1024];
    randombytes_buf (buf, (size_t) n);
    lua_pushlstring (L, (const char *) buf, (size_t) n);
    return 1;
}

static int
s_api_now (lua_State *L)
{
    lua_pushnumber (L, hal_clock_wall_s ());
    return 1;
}

static int
s_api_mono (lua_State *L)
{
    lua_pushinteger (L, (lua_Integer) hal_clock_mono_ms ());
    return 1;
}

static int
s_timer_add (lua_State *L, bool every)
{
    s_app_t *a = s_app (L);
    lua_Integer ms = luaL_checkinteger (L, 1);
    luaL_checktype (L, 2, LUA_TFUNCTION);
    lua_Integer min = every ? 10 : 1;
    luaL_argcheck (L, ms >= min && ms <= 86400000LL * 30, 1,
                   every ? "ms must be 10..2592000000"
                         : "ms must be 1..2592000000");
    if (a->timers.n >= S_MAX_TIMERS)
        return luaL_error (L, "at most %d timers per app", S_MAX_TIMERS);
    s_timer_t *t = (s_timer_t *) calloc (1, sizeof *t);
    if (!t)
        return luaL_error (L, "out of memory");
    lua_pushvalue (L, 2);
    t->fn_ref = luaL_ref (L, LUA_REGISTRYINDEX);
    t->app = a;
    t->id = ++a->next_timer;
    t->every_ms = every ? ms : 0;
    t->due.type = D_TIMER;
    chan_heap_node_init (&t->due.node);
    if (chan_map_put (&a->timers, t->id, t) != 0
        || chan_heap_push (&a->w->due, &t->due.node, hal_clock_mono_ms () + ms)
               != 0) {
        chan_map_del (&a->timers, t->id);
        luaL_unref (L, LUA_REGISTRYINDEX, t->fn_ref);
        free (t);
        return luaL_error (L, "out of memory");
    }
    lua_pushinteger (L, (lua_Integer) t->id);
    return 1;
}

static int
s_api_after (lua_State *L)
{
    return s_timer_add (L, false);
}

static int
s_api_every (lua_State *L)
{
    return s_timer_add (L, true);
}

static int
s_api_cancel (lua_State *L)
{
    s_app_t *a = s_app (L);
    lua_Integer id = luaL_checkinteger (L, 1);
    s_timer_t *t =
        id > 0 ? (s_timer_t *) chan_map_del (&a->timers, (uint64_t) id) : NULL;
    if (t) {
        chan_heap_remove (&a->w->due, &t->due.node);
        luaL_unref (L, LUA_REGISTRYINDEX, t->fn_ref);
        free (t);
    }
    lua_pushboolean (L, t != NULL);
    return 1;
}

static void
s_log (s_app_t *a, const char *level, const char *text, size_t len)
{
    int64_t now = hal_clock_mono_ms ();
    if (now - a->log_window >= 1000) {
        if (a->log_dropped)
            zsys_warning ("app %s: %llu log lines dropped (more than %d/s)",
                          a->name, (unsigned long long) a->log_dropped,
                          S_LOG_PER_S);
        a->log_window = now;
        a->log_count = 0;
        a->log_dropped = 0;
    }
    if (++a->log_count > S_LOG_PER_S) {
        a->log_dropped++;
        return;
    }
    char clean[1024];
    s_clean (clean, sizeof clean, text, len);
    if (streq (level, "error"))
        zsys_error ("app %s: %s", a->name, clean);
    else if (streq (level, "warn"))
        zsys_warning ("app %s: %s", a->name, clean);
    else if (streq (level, "debug"))
        zsys_debug ("app %s: %s", a->name, clean);
    else
        zsys_info ("app %s: %s", a->name, clean);
}

static int
s_api_log (lua_State *L)
{
    s_app_t *a = s_app (L);
    static const char *levels[] = { "debug", "info", "warn", "error", NULL };
    int lv = luaL_checkoption (L, 1, NULL, levels);
    size_t len;
    const char *text = luaL_tolstring (L, 2, &len);
    s_log (a, levels[lv], text, len);
    return 0;
}

static int
s_api_print (lua_State *L)
{
    s_app_t *a = s_app (L);
    int n = lua_gettop (L);
    luaL_Buffer b;
    luaL_buffinit (L, &b);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_tolstring (L, i, &len);
        if (i > 1)
            luaL_addchar (&b, '\t');
        luaL_addlstring (&b, s, len > 1024 ? 1024 : len);
        lua_pop (L, 1);
    }
    luaL_pushresult (&b);
    size_t len;
    const char *text = lua_tolstring (L, -1, &len);
    s_log (a, "info", text, len);
    return 0;
}

/*  Installs the global `aaax` (and print) in the app's state; a (light
    userdata) is at index 1 and becomes every function's upvalue. */
static int
s_open_api (lua_State *L)
{
    s_app_t *a = (s_app_t *) lua_touserdata (L, 1);
    static const luaL_Reg top[] = { { "send", s_api_send },
                                    { "reply", s_api_reply },
                                    { "write", s_api_write },
                                    { "subscribe", s_api_subscribe },
                                    { "unsubscribe", s_api_unsubscribe },
                                    { "claim", s_api_claim },
                                    { "ack", s_api_ack },
                                    { "nack", s_api_nack },
                                    { "gate", s_api_gate },
                                    { "now", s_api_now },
                                    { "mono", s_api_mono },
                                    { "log", s_api_log },
                                    { NULL, NULL } };
    static const luaL_Reg kv[] = { { "get", s_api_kv_get },
                                   { "put", s_api_kv_put },
                                   { "del", s_api_kv_del },
                                   { NULL, NULL } };
    static const luaL_Reg fs[] = { { "read", s_api_fs_read },
                                   { "write", s_api_fs_write },
                                   { "list", s_api_fs_list },
                                   { "remove", s_api_fs_remove },
                                   { NULL, NULL } };
    static const luaL_Reg crypto[] = { { "hash", s_api_hash },
                                       { "random", s_api_random },
                                       { NULL, NULL } };
    static const luaL_Reg timer[] = { { "after", s_api_after },
                                      { "every", s_api_every },
                                      { "cancel", s_api_cancel },
                                      { NULL, NULL } };
    lua_createtable (L, 0, 16);
    lua_pushlightuserdata (L, a);
    luaL_setfuncs (L, top, 1);
    struct {
        const char *name;
        const luaL_Reg *fns;
    } subs[] = {
        { "kv", kv }, { "fs", fs }, { "crypto", crypto }, { "timer", timer }
    };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        lua_createtable (L, 0, 4);
        lua_pushlightuserdata (L, a);
        luaL_setfuncs (L, subs[i].fns, 1);
        lua_setfield (L, -2, subs[i].name);
    }
    lua_pushstring (L, a->name);
    lua_setfield (L, -2, "self");
    lua_pushstring (L, a->spec->m.version);
    lua_setfield (L, -2, "version");
    lua_setglobal (L, "aaax");
    lua_pushlightuserdata (L, a);
    lua_pushcclosure (L, s_api_print, 1);
    lua_setglobal (L, "print");
    return 0;
}

/*  ---- direct mode: the link to the kernel ----------------------------------
 */

static void s_link_close (app_worker_t *w, bool flush);

/*  Makes the link's socket and connects it (the HELLO is the caller's). */
static int
s_link_open (app_worker_t *w, char *err, size_t errlen)
{
    w->sock = zsock_new (ZMQ_DEALER);
    if (!w->sock) {
        aaax_seterr (err, errlen, "cannot make a socket");
        return AAAX_ENOMEM;
    }
    w->raw = zsock_resolve (w->sock);
    int hwm = 0; /* the kernel bounds what it sends (mailbox window) */
    zmq_setsockopt (w->raw, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (w->raw, ZMQ_RCVHWM, &hwm, sizeof hwm);
    int linger = 1000; /* the BYE at the end is flushed */
    zmq_setsockopt (w->raw, ZMQ_LINGER, &linger, sizeof linger);
    /*  One connection per socket: libzmq must not connect again behind the
        session's back (the kernel would see a new peer, not docked); a
        lost connection is a new socket and a new HELLO. */
    int ivl = -1;
    zmq_setsockopt (w->raw, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    if (w->cfg.curve_server
        && (zmq_setsockopt (w->raw, ZMQ_CURVE_SERVERKEY, w->cfg.curve_server,
                            40)
                != 0
            || zmq_setsockopt (w->raw, ZMQ_CURVE_PUBLICKEY, w->cfg.curve_public,
                               40)
                   != 0
            || zmq_setsockopt (w->raw, ZMQ_CURVE_SECRETKEY, w->cfg.curve_secret,
                               40)
                   != 0)) {
        aaax_seterr (err, errlen, "bad CURVE key: %s", zmq_strerror (errno));
        s_link_close (w, false);
        return AAAX_EINVAL;
    }
    /*  Its events tell at once when the connection fails or ends; without
        them the heartbeat finds it (3 periods). */
    char ep[96];
    snprintf (ep, sizeof ep, "inproc://aaax-app-link-%p-%u", (void *) w,
              ++w->sockets);
    if (zmq_socket_monitor (w->raw, ep,
                            ZMQ_EVENT_CLOSED | ZMQ_EVENT_DISCONNECTED
                                | ZMQ_EVENT_HANDSHAKE_SUCCEEDED
                                | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                                | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        == 0) {
        w->mon = zsock_new (ZMQ_PAIR);
        if (w->mon && zsock_connect (w->mon, "%s", ep) != 0)
            zsock_destroy (&w->mon);
        if (!w->mon)
            zmq_socket_monitor (w->raw, NULL, 0);
    }
    if (zmq_connect (w->raw, w->cfg.endpoint) != 0) {
        aaax_seterr (err, errlen, "cannot connect to %s: %s", w->cfg.endpoint,
                     zmq_strerror (errno));
        s_link_close (w, false);
        return AAAX_EINVAL;
    }
    int64_t now = hal_clock_mono_ms ();
    w->up = true;
    w->handshaken = w->linked = false;
    w->hello_at = 0;
    w->last_sent = w->last_recv = now;
    w->gap_at = 0;
    return 0;
}

/*  Closes the link's socket (hosted mode: the worker's). flush: a queued
    BYE still goes (linger); else what is queued is dropped. */
static void
s_link_close (app_worker_t *w, bool flush)
{
    if (w->raw && w->mon)
        zmq_socket_monitor (w->raw, NULL, 0);
    zsock_destroy (&w->mon);
    if (w->raw && !flush) {
        int linger = 0;
        zmq_setsockopt (w->raw, ZMQ_LINGER, &linger, sizeof linger);
    }
    zsock_destroy (&w->sock);
    w->raw = NULL;
    w->up = w->handshaken = w->linked = false;
    w->hello_at = 0;
}

/*  The link is gone: what waited on it is answered (the app keeps its
    state and its callbacks go on). A subscribe or unsubscribe is repeated
    once docked again; a claim, ack, nack, gate or fs.* call returns
    nil, S_LOST (it may or may not have taken effect); a send or write in
    flight is not known to have arrived. The runtime's own requests are
    made again as needed. */
static void
s_calls_lost (s_app_t *a)
{
    size_t cap = a->calls.n + zhashx_size (a->gates) + 1;
    lua_State **fail = (lua_State **) calloc (cap, sizeof *fail);
    if (!fail) {
        s_crash (a, "out of memory");
        return;
    }
    size_t nfail = 0, nasync = 0;
    chan_map_t old = a->calls;
    chan_map_init (&a->calls);
    for (size_t i = 0; old.mask && i <= old.mask; i++) {
        if (!old.keys[i])
            continue;
        s_call_t *c = (s_call_t *) old.vals[i];
        if ((c->kind == C_SUB || c->kind == C_UNSUB) && c->co) {
            if (chan_map_put (&a->calls, old.keys[i], c) == 0)
                continue; /* s_redocked sends it again */
            fail[nfail++] = c->co;
        } else if (c->kind == C_CLAIM || c->kind == C_ACK || c->kind == C_NACK
                   || c->kind == C_GATE) {
            if (c->co)
                fail[nfail++] = c->co;
        } else if (c->kind == C_ASYNC)
            nasync++;
        s_call_free (c);
    }
    chan_map_fini (&old);
    for (s_call_t *c = (s_call_t *) zhashx_first (a->gates); c;
         c = (s_call_t *) zhashx_next (a->gates)) {
        /*  The decision may still come to the mailbox: dropped then. */
        if (a->orphans && zhashx_size (a->orphans) < S_ORPHANS_MAX)
            zhashx_insert (a->orphans, (const char *) zhashx_cursor (a->gates),
                           S_BUSY);
        if (c->co)
            fail[nfail++] = c->co;
        s_call_free (c);
    }
    zhashx_purge (a->gates);
    zhashx_purge (a->early);
    if (nasync)
        zsys_warning ("app %s: %zu send/write request(s) had no answer yet: "
                      "they may not have reached the kernel",
                      a->name, nasync);
    for (size_t i = 0; i < nfail; i++) {
        lua_State *co = fail[i];
        /*  A callback resumed before may have crashed the app. */
        if (!a->sb || !chan_map_get (&a->cbs, (uint64_t) (uintptr_t) co)
            || !lua_checkstack (co, 2))
            continue;
        lua_pushnil (co);
        lua_pushstring (co, S_LOST);
        s_answer (a, co, 2);
    }
    free (fail);
}

/*  The link failed (why): closed now, tried again after a back-off. */
static void
s_link_lost (app_worker_t *w, const char *why)
{
    if (!w->up)
        return;
    s_app_t *a = (s_app_t *) zhashx_first (w->byname);
    bool was_linked = w->linked;
    if (w->hello_at && w->handshaken)
        w->maybe_docked = true; /* the kernel may have docked it */
    s_link_close (w, false);
    int64_t now = hal_clock_mono_ms ();
    if (!w->lost_at)
        w->lost_at = now;
    w->attempts++;
    /*  100 ms doubling to 5 s, each within +-25 %: the agents of a
        restarted kernel do not all come back at the same moment. */
    uint32_t base = w->relink_ms ? w->relink_ms : S_RELINK_MIN_MS;
    uint32_t delay = base - base / 4 + randombytes_uniform (base / 2 + 1);
    w->relink_ms = base >= S_RELINK_MAX_MS / 2 ? S_RELINK_MAX_MS : base * 2;
    w->relink_at = now + delay;
    zsys_warning ("app %s: %s %s (%s); trying again in %u ms",
                  a ? a->name : "?",
                  was_linked       ? "lost the kernel at"
                  : w->ever_docked ? "cannot dock again at"
                                   : "cannot dock at",
                  w->cfg.endpoint, why, delay);
    if (a && a->sb)
        s_calls_lost (a);
}

static int
s_cmp_req (const void *x, const void *y)
{
    uint64_t p = *(const uint64_t *) x, q = *(const uint64_t *) y;
    return p < q ? -1 : p > q;
}

/*  Docked again; resumed: the kernel kept the session. The subscribe and
    unsubscribe calls that waited go, in the order they were made; a new
    session subscribes again to what the app was subscribed to; what was
    handled but whose ACK is unconfirmed is acknowledged again. Returns the
    number of subscriptions renewed. */
static size_t
s_redocked (s_app_t *a, bool resumed)
{
    app_worker_t *w = a->w;
    size_t n = 0;
    uint64_t *reqs = NULL;
    if (a->calls.n
        && !(reqs = (uint64_t *) malloc (a->calls.n * sizeof *reqs))) {
        s_crash (a, "out of memory");
        return 0;
    }
    for (size_t i = 0; a->calls.mask && i <= a->calls.mask; i++) {
        s_call_t *c = (s_call_t *) a->calls.vals[i];
        if (a->calls.keys[i] && (c->kind == C_SUB || c->kind == C_UNSUB))
            reqs[n++] = a->calls.keys[i];
    }
    if (n)
        qsort (reqs, n, sizeof *reqs, s_cmp_req);
    msgpack_packer pk;
    for (size_t i = 0; i < n; i++) {
        s_call_t *c = (s_call_t *) chan_map_get (&a->calls, reqs[i]);
        s_begin (w, reqs[i], 1, &pk);
        chan_pack_str (&pk, "chan", 4);
        chan_pack_cstr (&pk, c->chan ? c->chan : "");
        s_send (w, a, c->kind == C_SUB ? "SUB" : "UNSUB", w->out.data,
                w->out.len);
    }
    size_t renewed = 0;
    for (void *it = !resumed && a->subs ? zhashx_first (a->subs) : NULL; it;
         it = zhashx_next (a->subs)) {
        const char *chan = (const char *) zhashx_cursor (a->subs);
        bool pending = false;
        for (size_t i = 0; i < n && !pending; i++) {
            s_call_t *c = (s_call_t *) chan_map_get (&a->calls, reqs[i]);
            pending = c && c->chan && streq (c->chan, chan);
        }
        if (pending)
            continue;
        s_call_t *c = s_call_new (C_RESUB, NULL);
        if (!c || !(c->chan = strdup (chan))) {
            s_call_free (c);
            continue;
        }
        uint64_t req = ++a->next_req;
        s_begin (w, req, 1, &pk);
        chan_pack_str (&pk, "chan", 4);
        chan_pack_cstr (&pk, chan);
        if (s_request (a, req, "SUB", c) == 0)
            renewed++;
    }
    free (reqs);
    for (void *st = a->seen ? zhashx_first (a->seen) : NULL; st;
         st = zhashx_next (a->seen))
        if (st == S_DONE)
            s_ack_queue (a, (const char *) zhashx_cursor (a->seen));
    s_flush_acks (a);
    return renewed;
}

/*  Direct mode: the answer to a HELLO. Returns true when the usual path
    goes on (the incarnation's first dock: start() runs, or a refusal
    crashes it), false when handled here. */
static bool
s_hello_direct (s_app_t *a, bool ok, int code, const char *reason,
                const msgpack_object *body)
{
    app_worker_t *w = a->w;
    bool redock = a->state != A_DOCKING;
    w->hello_at = 0;
    if (!ok) {
        /*  Refused for who it is (a key not bound to the name, a bad
            token): asking again changes nothing. A first dock refused
            for any reason (409: the name is taken) ends the run too. */
        bool fatal = code == 400 || code == 401 || code == 403
                     || (!redock && a->first_start && !w->ever_docked
                         && !w->maybe_docked);
        char why[400];
        if (!fatal) {
            snprintf (why, sizeof why, "HELLO refused: %d %s", code, reason);
            s_link_lost (w, why);
            return false;
        }
        if (!redock)
            return true;
        snprintf (why, sizeof why, "the kernel refused to dock it again: %d %s",
                  code, reason);
        zsys_error ("app %s: %s", a->name, why);
        snprintf (a->error, sizeof a->error, "%s", why);
        s_down (a, false);
        a->state = A_FAILED;
        s_event (w, a, APP_EV_FAILED, why);
        return false;
    }
    uint64_t hb = 0;
    if (chan_obj_get_uint (body, "heartbeat_ms", &hb) && hb)
        w->heartbeat_ms = (uint32_t) hb;
    if (!s_get_str (body, "session", w->session, sizeof w->session))
        w->session[0] = 0;
    int64_t now = hal_clock_mono_ms ();
    w->linked = true;
    w->last_recv = now;
    w->gap_at = 0;
    w->relink_ms = S_RELINK_MIN_MS;
    w->ever_docked = true;
    w->maybe_docked = false;
    int64_t took = w->lost_at ? now - w->lost_at : 0;
    uint32_t attempts = w->attempts;
    w->lost_at = 0;
    w->attempts = 0;
    if (!redock) {
        if (attempts)
            zsys_info ("app %s: docked at %s after %u failed attempt(s)",
                       a->name, w->cfg.endpoint, attempts);
        return true;
    }
    const msgpack_object *r = s_get (body, "resumed");
    bool resumed = r && r->type == MSGPACK_OBJECT_BOOLEAN && r->via.boolean;
    size_t renewed = s_redocked (a, resumed);
    if (resumed)
        zsys_info ("app %s: docked again at %s after %lld ms: session "
                   "resumed",
                   a->name, w->cfg.endpoint, (long long) took);
    else
        zsys_info ("app %s: docked again at %s after %lld ms: a new "
                   "session, %zu subscription(s) renewed",
                   a->name, w->cfg.endpoint, (long long) took, renewed);
    return false;
}

/*  A 401 on a request of a live session: the kernel no longer knows it.
    After a silence of either side (this process or the kernel stood
    still) it timed the session out: dock again. Otherwise it ended it on
    purpose -- an operator's CTL kill, a revoked key -- and docking again
    would undo that: the app stops (no stop(): it is undocked) and the
    run fails. */
static void
s_undocked (s_app_t *a, const char *reason)
{
    app_worker_t *w = a->w;
    int64_t now = hal_clock_mono_ms ();
    /*  The kernel says why it ended the session (docs/PROTOCOL.md, section
        5): a timeout or a takeover is docked again, a kill or a revoked
        key is final. Without a reason (an older kernel), the silence
        decides. */
    bool timed_out = strstr (reason, "ended (silent") != NULL
                     || strstr (reason, "ended (replaced") != NULL;
    bool ended = strstr (reason, "ended (") != NULL;
    if (timed_out
        || (!ended && w->gap_at
            && now - w->gap_at <= 3 * (int64_t) w->heartbeat_ms)) {
        s_link_lost (w, "401: the session timed out while silent");
        return;
    }
    char why[300];
    snprintf (why, sizeof why,
              "undocked by the kernel while its connection was live (%s); "
              "not docking again",
              ended ? reason : "killed by an operator, or its key revoked");
    zsys_error ("app %s: %s", a->name, why);
    snprintf (a->error, sizeof a->error, "%s", why);
    s_down (a, false);
    a->state = A_FAILED;
    s_event (w, a, APP_EV_FAILED, why);
}

/*  The socket's monitor events: a failed or ended connection. */
static void
s_link_events (app_worker_t *w)
{
    while (w->mon) {
        void *mon = zsock_resolve (w->mon);
        zmq_msg_t m;
        zmq_msg_init (&m);
        if (zmq_msg_recv (&m, mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&m);
            return;
        }
        uint16_t ev = 0;
        if (zmq_msg_size (&m) >= 6)
            memcpy (&ev, zmq_msg_data (&m), 2);
        bool more = zmq_msg_more (&m);
        zmq_msg_close (&m);
        while (more) { /* the endpoint */
            zmq_msg_init (&m);
            if (zmq_msg_recv (&m, mon, 0) < 0) {
                zmq_msg_close (&m);
                break;
            }
            more = zmq_msg_more (&m);
            zmq_msg_close (&m);
        }
        bool curve = w->cfg.curve_server != NULL;
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            w->handshaken = true;
        else if (ev == ZMQ_EVENT_CLOSED)
            s_link_lost (w, "cannot connect");
        else if (ev == ZMQ_EVENT_DISCONNECTED)
            s_link_lost (w, w->handshaken ? "connection closed"
                            : curve       ? "closed during the CURVE "
                                            "handshake: check --server-key "
                                            "(aaax kernel-key) and --key"
                                          : "closed during the handshake");
        else
            s_link_lost (w, curve ? "CURVE handshake failed: check "
                                    "--server-key (aaax kernel-key) and --key"
                                  : "handshake failed");
    }
}

/*  What the app needs of the link: a session (docking, or docked). */
static bool
s_wants_link (s_app_t *a)
{
    return a && a->sb
           && (a->state == A_DOCKING || a->state == A_STARTING
               || a->state == A_RUNNING || a->state == A_STOPPING);
}

static int64_t
s_hello_limit (app_worker_t *w)
{
    int64_t t = 3 * (int64_t) w->heartbeat_ms;
    return t > S_CONNECT_MS ? t : S_CONNECT_MS;
}

/*  The link's timers: a new link when due, the HELLO's answer, liveness
    and the keepalive. */
static void
s_link_tick (app_worker_t *w, int64_t now)
{
    s_app_t *a = (s_app_t *) zhashx_first (w->byname);
    char why[200];
    if (!w->up) {
        if (!s_wants_link (a) || now < w->relink_at)
            return;
        if (s_link_open (w, why, sizeof why) != 0) {
            w->relink_at = now + w->relink_ms;
            zsys_warning ("app %s: %s", a->name, why);
            return;
        }
        /*  Docking again keeps the app's state: its session is taken over
            when the kernel still has it. */
        s_hello_send (a, a->state != A_DOCKING && w->session[0] ? w->session
                                                                : NULL);
        return;
    }
    if (w->hello_at) {
        int64_t limit = s_hello_limit (w);
        if (now - w->hello_at > limit) {
            snprintf (why, sizeof why, "no answer to HELLO within %lld ms%s",
                      (long long) limit,
                      w->handshaken ? ""
                                    : ", the connection's handshake did not "
                                      "complete (a CURVE endpoint? give "
                                      "--server-key and --key)");
            s_link_lost (w, why);
        }
        return;
    }
    if (!w->linked || !w->heartbeat_ms || !a || !a->sb)
        return;
    int64_t hb = w->heartbeat_ms;
    if (now - w->last_recv > 3 * hb) {
        snprintf (why, sizeof why, "nothing from it for %lld ms",
                  (long long) (now - w->last_recv));
        s_link_lost (w, why);
        return;
    }
    if (now - w->last_sent >= hb / 2) {
        /*  The keepalive: UNSUB of its own mailbox does nothing, and only a
            docked session gets OK for it -- an idle app notices a kill. */
        msgpack_packer pk;
        uint64_t req = ++a->next_req;
        s_begin (w, req, 1, &pk);
        chan_pack_str (&pk, "chan", 4);
        char mbox[AAAX_MAX_NAME + 2];
        snprintf (mbox, sizeof mbox, "@%s", a->name);
        chan_pack_cstr (&pk, mbox);
        s_request (a, req, "UNSUB", s_call_new (C_PROBE, NULL));
    }
}

/*  When s_link_tick has something to do next. */
static int64_t
s_link_next (app_worker_t *w)
{
    s_app_t *a = (s_app_t *) zhashx_first (w->byname);
    if (!s_wants_link (a))
        return INT64_MAX;
    if (!w->up)
        return w->relink_at;
    if (w->hello_at)
        return w->hello_at + s_hello_limit (w) + 1;
    if (!w->linked || !w->heartbeat_ms)
        return INT64_MAX;
    int64_t hb = w->heartbeat_ms;
    int64_t ping = w->last_sent + hb / 2, dead = w->last_recv + 3 * hb + 1;
    return ping < dead ? ping : dead;
}

/*  A message came on the link. */
static void
s_heard (app_worker_t *w)
{
    int64_t now = hal_clock_mono_ms ();
    /*  The kernel answers the keepalive every heartbeat_ms / 2: a longer
        silence means it stood still, and may have timed the session out
        meanwhile. */
    if (w->linked && w->heartbeat_ms
        && now - w->last_recv > 2 * (int64_t) w->heartbeat_ms)
        w->gap_at = now;
    w->last_recv = now;
}

/*  ---- the worker -----------------------------------------------------------
 */

static void
s_begin_stop (s_app_t *a, bool kill)
{
    if (a->state == A_STOPPING && !kill)
        return;
    if (kill || a->state != A_RUNNING || a->ref_stop == LUA_NOREF) {
        if (a->state == A_BACKOFF || a->state == A_FAILED) {
            chan_heap_remove (&a->w->due, &a->restart_due.node);
            a->state = A_FAILED;
            a->remove_when_down = true;
            snprintf (a->error, sizeof a->error, "stopped");
            s_event (a->w, a, APP_EV_STOPPED, "stopped");
            return;
        }
        s_stopped (a);
        return;
    }
    a->state = A_STOPPING;
    chan_heap_remove (&a->w->due, &a->stop_due.node);
    chan_heap_push (&a->w->due, &a->stop_due.node,
                    hal_clock_mono_ms () + S_STOP_GRACE_MS);
    s_callback (a, K_STOP, a->ref_stop, NULL, NULL);
}

static void
s_app_free (s_app_t *a)
{
    if (!a)
        return;
    chan_heap_remove (&a->w->due, &a->restart_due.node);
    chan_heap_remove (&a->w->due, &a->stop_due.node);
    if (a->sb)
        s_down (a, false);
    chan_map_fini (&a->calls);
    chan_map_fini (&a->cbs);
    chan_map_fini (&a->timers);
    zhashx_destroy (&a->gates);
    zhashx_destroy (&a->early);
    zhashx_destroy (&a->seen);
    zhashx_destroy (&a->subs);
    zhashx_destroy (&a->orphans);
    free (a->acks);
    hal_vfs_destroy (&a->vfs);
    app_spec_destroy (&a->spec);
    free (a);
}

static void
s_chunk_free (void **item)
{
    zchunk_t *c = (zchunk_t *) *item;
    zchunk_destroy (&c);
    *item = NULL;
}

app_worker_t *
app_worker_new (const app_worker_cfg_t *cfg, app_event_fn *fn, void *arg,
                char *err, size_t errlen)
{
    app_worker_t *w = (app_worker_t *) calloc (1, sizeof *w);
    if (!w) {
        aaax_seterr (err, errlen, "out of memory");
        return NULL;
    }
    w->cfg = *cfg;
    if (!w->cfg.restart_max)
        w->cfg.restart_max = 5;
    if (!w->cfg.restart_window_ms)
        w->cfg.restart_window_ms = 60000;
    w->direct = cfg->kernel_token == NULL;
    w->fn = fn;
    w->fn_arg = arg;
    chan_map_init (&w->slots);
    chan_heap_init (&w->due);
    chan_buf_init (&w->out);
    w->byname = zhashx_new ();
    if (!w->byname) {
        aaax_seterr (err, errlen, "out of memory");
        app_worker_destroy (&w);
        return NULL;
    }
    if (w->direct) {
        if (cfg->curve_server && (!cfg->curve_public || !cfg->curve_secret)) {
            aaax_seterr (err, errlen,
                         "CURVE needs the server's key and this client's "
                         "key pair");
            app_worker_destroy (&w);
            return NULL;
        }
        w->relink_ms = S_RELINK_MIN_MS;
        if (s_link_open (w, err, errlen) != 0) {
            app_worker_destroy (&w);
            return NULL;
        }
        return w;
    }
    w->sock = zsock_new (ZMQ_DEALER);
    if (!w->sock) {
        aaax_seterr (err, errlen, "cannot make a socket");
        app_worker_destroy (&w);
        return NULL;
    }
    w->raw = zsock_resolve (w->sock);
    int hwm = 0; /* the kernel bounds what it sends (mailbox window) */
    zmq_setsockopt (w->raw, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (w->raw, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /*  An in-process host's peer is gone already when it closes. */
    int linger = 0;
    zmq_setsockopt (w->raw, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect (w->raw, cfg->endpoint) != 0) {
        aaax_seterr (err, errlen, "cannot connect to %s: %s", cfg->endpoint,
                     zmq_strerror (errno));
        app_worker_destroy (&w);
        return NULL;
    }
    return w;
}

void
app_worker_destroy (app_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    app_worker_t *w = *self_p;
    if (w->byname) {
        for (s_app_t *a = (s_app_t *) zhashx_first (w->byname); a;
             a = (s_app_t *) zhashx_next (w->byname))
            s_app_free (a);
        zhashx_destroy (&w->byname);
    }
    chan_map_fini (&w->slots);
    chan_heap_fini (&w->due);
    chan_buf_fini (&w->out);
    /*  A direct link flushes its BYE (linger). */
    s_link_close (w, true);
    free (w);
    *self_p = NULL;
}

void *
app_worker_socket (app_worker_t *self)
{
    return self->raw;
}

void *
app_worker_monitor (app_worker_t *self)
{
    return self->mon ? zsock_resolve (self->mon) : NULL;
}

size_t
app_worker_count (const app_worker_t *self)
{
    return zhashx_size (self->byname);
}

/*  Reads one message: [cmd, body (, slot)]. false when none. */
typedef struct {
    zmq_msg_t parts[3];
    int n;
} s_in_t;

static bool
s_recv (app_worker_t *w, s_in_t *in, int flags)
{
    in->n = 0;
    for (;;) {
        zmq_msg_t tmp;
        zmq_msg_init (&tmp);
        if (zmq_msg_recv (&tmp, w->raw, flags) < 0) {
            zmq_msg_close (&tmp);
            if (in->n == 0)
                return false;
            break;
        }
        bool more = zmq_msg_more (&tmp);
        if (in->n < 3) {
            in->parts[in->n] = tmp;
            in->n++;
        } else
            zmq_msg_close (&tmp);
        if (!more)
            break;
        flags = 0;
    }
    return true;
}

static void
s_in_close (s_in_t *in)
{
    for (int i = 0; i < in->n; i++)
        zmq_msg_close (&in->parts[i]);
}

int
app_worker_connect (app_worker_t *self, char *err, size_t errlen)
{
    if (self->direct)
        return 0;
    msgpack_packer pk;
    uint64_t req = ++self->next_req;
    s_begin (self, req, 4, &pk);
    chan_pack_str (&pk, "system", 6);
    chan_pack_cstr (&pk, self->cfg.host_id);
    chan_pack_str (&pk, "version", 7);
    msgpack_pack_uint64 (&pk, AAAX_PROTOCOL_VERSION);
    chan_pack_str (&pk, "privileged", 10);
    msgpack_pack_true (&pk);
    chan_pack_str (&pk, "token", 5);
    chan_pack_cstr (&pk, self->cfg.kernel_token);
    if (s_send (self, NULL, "HELLO", self->out.data, self->out.len) != 0) {
        aaax_seterr (err, errlen, "cannot send HELLO");
        return AAAX_EIO;
    }
    int64_t until = hal_clock_mono_ms () + S_CONNECT_MS;
    while (hal_clock_mono_ms () < until) {
        zmq_pollitem_t item = { self->raw, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        s_in_t in;
        if (!s_recv (self, &in, ZMQ_DONTWAIT))
            continue;
        bool ok = in.n == 2 && zmq_msg_size (&in.parts[0]) == 2
                  && memcmp (zmq_msg_data (&in.parts[0]), "OK", 2) == 0;
        bool error = in.n == 2 && zmq_msg_size (&in.parts[0]) == 5;
        s_in_close (&in);
        if (ok)
            return 0;
        if (error) {
            aaax_seterr (err, errlen, "the kernel refused the app host");
            return AAAX_EAUTH;
        }
    }
    aaax_seterr (err, errlen, "no answer from the kernel");
    return AAAX_ETIMEDOUT;
}

static s_app_t *
s_find (app_worker_t *w, const char *name)
{
    return (s_app_t *) zhashx_lookup (w->byname, name);
}

int
app_worker_add (app_worker_t *self, app_spec_t *spec)
{
    if (s_find (self, spec->m.name)) {
        app_spec_destroy (&spec);
        return AAAX_EEXIST;
    }
    s_app_t *a = (s_app_t *) calloc (1, sizeof *a);
    if (!a) {
        app_spec_destroy (&spec);
        return AAAX_ENOMEM;
    }
    a->w = self;
    a->spec = spec;
    a->name = spec->m.name;
    a->first_start = true;
    a->ref_start = a->ref_message = a->ref_stop = a->ref_signal = LUA_NOREF;
    chan_map_init (&a->calls);
    chan_map_init (&a->cbs);
    chan_map_init (&a->timers);
    a->gates = zhashx_new ();
    a->early = zhashx_new ();
    a->restart_due.type = D_RESTART;
    a->stop_due.type = D_STOP;
    chan_heap_node_init (&a->restart_due.node);
    chan_heap_node_init (&a->stop_due.node);
    if (self->direct) {
        a->seen = zhashx_new ();
        a->subs = zhashx_new ();
        a->orphans = zhashx_new ();
    }
    if (!a->gates || !a->early
        || (self->direct && (!a->seen || !a->subs || !a->orphans))
        || zhashx_insert (self->byname, a->name, a)) {
        s_app_free (a);
        return AAAX_ENOMEM;
    }
    zhashx_set_destructor (a->early, s_chunk_free);
    char err[400];
    if (s_boot (a, err, sizeof err) != 0)
        s_crash (a, err);
    return 0;
}

int
app_worker_remove (app_worker_t *self, const char *name, bool kill)
{
    s_app_t *a = s_find (self, name);
    if (!a || a->remove_when_down)
        return AAAX_ENOENT;
    s_begin_stop (a, kill);
    return 0;
}

int
app_worker_restart (app_worker_t *self, const char *name)
{
    s_app_t *a = s_find (self, name);
    if (!a || a->remove_when_down)
        return AAAX_ENOENT;
    if (a->sb)
        s_down (a, true);
    chan_heap_remove (&self->due, &a->restart_due.node);
    a->nrestarts = 0;
    a->error[0] = 0;
    a->state = A_BACKOFF;
    chan_heap_push (&self->due, &a->restart_due.node, hal_clock_mono_ms ());
    return 0;
}

int
app_worker_stats (app_worker_t *self, const char *name, app_stats_t *out)
{
    s_app_t *a = s_find (self, name);
    if (!a)
        return AAAX_ENOENT;
    memset (out, 0, sizeof *out);
    snprintf (out->state, sizeof out->state, "%s", s_state_names[a->state]);
    out->memory = a->sb ? app_sandbox_mem_used (a->sb) : 0;
    out->handled = a->handled;
    out->errors = a->errors;
    /*  Restarts within the current window (the intensity the
        supervisor counts). */
    int64_t now = hal_clock_mono_ms ();
    for (size_t i = 0; i < a->nrestarts; i++)
        if (a->restarts_at[i] > now - (int64_t) self->cfg.restart_window_ms)
            out->restarts++;
    snprintf (out->error, sizeof out->error, "%s", a->error);
    return 0;
}

/*  One message from the kernel. */
static void
s_input (app_worker_t *w, s_in_t *in)
{
    if (in->n < 2)
        return;
    s_app_t *a = NULL;
    if (w->direct)
        a = (s_app_t *) zhashx_first (w->byname);
    else if (in->n == 3 && zmq_msg_size (&in->parts[2]) == 4) {
        uint32_t slot;
        memcpy (&slot, zmq_msg_data (&in->parts[2]), 4);
        a = (s_app_t *) chan_map_get (&w->slots, slot);
    } else
        return; /* the host's own session: PONGs */
    if (!a || !a->sb)
        return;
    char cmd[16];
    size_t clen = zmq_msg_size (&in->parts[0]);
    if (clen >= sizeof cmd)
        return;
    memcpy (cmd, zmq_msg_data (&in->parts[0]), clen);
    cmd[clen] = 0;
    const void *body = zmq_msg_data (&in->parts[1]);
    size_t len = zmq_msg_size (&in->parts[1]);
    if (streq (cmd, "MSG")) {
        s_deliver (a, body, len, false);
        return;
    }
    msgpack_unpacked unp;
    msgpack_unpacked_init (&unp);
    if (msgpack_unpack_next (&unp, (const char *) body, len, NULL)
            == MSGPACK_UNPACK_SUCCESS
        && unp.data.type == MSGPACK_OBJECT_MAP) {
        if (streq (cmd, "DROPPED")) {
            char sub[AAAX_MAX_NAME + 2] = "";
            s_get_str (&unp.data, "sub", sub, sizeof sub);
            zsys_warning ("app %s: the kernel ended its subscription to %s "
                          "(too slow)",
                          a->name, sub);
            if (a->subs)
                zhashx_delete (a->subs, sub);
        } else if (streq (cmd, "ERROR") && w->direct) {
            uint64_t code = 0;
            chan_obj_get_uint (&unp.data, "code", &code);
            uint64_t req = 0;
            bool has_req = chan_obj_get_uint (&unp.data, "req", &req);
            s_call_t *c =
                has_req ? (s_call_t *) chan_map_get (&a->calls, req) : NULL;
            if (code == 401 && !has_req)
                s_crash (a, "undocked by the kernel");
            else if (code == 401 && c && c->kind != C_HELLO && w->linked) {
                char reason[200] = "";
                s_get_str (&unp.data, "reason", reason, sizeof reason);
                s_undocked (a, reason); /* "not docked": on a docked session */
            } else
                s_reply (a, cmd, &unp.data);
        } else
            s_reply (a, cmd, &unp.data);
    }
    msgpack_unpacked_destroy (&unp);
}

static void
s_due (app_worker_t *w, s_due_t *d, int64_t now)
{
    if (d->type == D_TIMER) {
        s_timer_t *t = (s_timer_t *) d;
        s_app_t *a = t->app;
        int ref = t->fn_ref;
        if (t->every_ms)
            chan_heap_push (&w->due, &t->due.node, now + t->every_ms);
        else
            chan_map_del (&a->timers, t->id);
        if (a->state == A_RUNNING || a->state == A_STARTING)
            s_callback (a, K_TIMER, ref, NULL, NULL);
        if (!t->every_ms) {
            if (a->sb)
                luaL_unref (app_sandbox_state (a->sb), LUA_REGISTRYINDEX, ref);
            free (t);
        }
        return;
    }
    s_app_t *a =
        (s_app_t *) ((char *) d
                     - (d->type == D_RESTART ? offsetof (s_app_t, restart_due)
                                             : offsetof (s_app_t, stop_due)));
    if (d->type == D_STOP) {
        if (a->state == A_STOPPING) {
            zsys_warning ("app %s: stop() did not finish in %d ms", a->name,
                          S_STOP_GRACE_MS);
            s_stopped (a);
        }
        return;
    }
    if (a->state != A_BACKOFF)
        return;
    char err[400];
    if (s_boot (a, err, sizeof err) != 0)
        s_crash (a, err);
}

int64_t
app_worker_serve (app_worker_t *self, int64_t now)
{
    s_in_t in;
    for (int i = 0; i < 4096 && self->raw && s_recv (self, &in, ZMQ_DONTWAIT);
         i++) {
        if (self->direct)
            s_heard (self);
        s_input (self, &in);
        s_in_close (&in);
    }
    /*  What came before a connection ended was read first. */
    if (self->direct)
        s_link_events (self);
    chan_heap_node_t *top;
    while ((top = chan_heap_top (&self->due)) && top->key <= now) {
        chan_heap_remove (&self->due, top);
        s_due (self, (s_due_t *) top, now);
    }
    for (size_t i = 0; i < self->ntouched; i++)
        s_flush_acks (self->touched[i]);
    self->ntouched = 0;
    /*  Apps that are gone for good. */
    zlistx_t *gone = NULL;
    for (s_app_t *a = (s_app_t *) zhashx_first (self->byname); a;
         a = (s_app_t *) zhashx_next (self->byname))
        if (a->remove_when_down) {
            if (!gone)
                gone = zlistx_new ();
            zlistx_add_end (gone, a);
        }
    if (gone) {
        for (s_app_t *a = (s_app_t *) zlistx_first (gone); a;
             a = (s_app_t *) zlistx_next (gone)) {
            zhashx_delete (self->byname, a->name);
            s_app_free (a);
        }
        zlistx_destroy (&gone);
    }
    /*  A direct link: reconnecting, liveness, the keepalive. */
    if (self->direct)
        s_link_tick (self, hal_clock_mono_ms ());
    int64_t next = INT64_MAX;
    if ((top = chan_heap_top (&self->due)))
        next = top->key;
    if (self->direct) {
        int64_t l = s_link_next (self);
        if (l < next)
            next = l;
    }
    return next;
}

void
app_worker_shutdown (app_worker_t *self, int timeout_ms)
{
    for (s_app_t *a = (s_app_t *) zhashx_first (self->byname); a;
         a = (s_app_t *) zhashx_next (self->byname))
        if (!a->remove_when_down)
            s_begin_stop (a, false);
    int64_t until = hal_clock_mono_ms () + timeout_ms;
    for (;;) {
        int64_t now = hal_clock_mono_ms ();
        app_worker_serve (self, now);
        if (zhashx_size (self->byname) == 0 || now >= until)
            break;
        zmq_pollitem_t item = { self->raw, 0, ZMQ_POLLIN, 0 };
        zmq_poll (&item, self->raw ? 1 : 0, 20);
    }
}
