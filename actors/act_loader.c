/*  act_loader.c — the module loader: serves kernel.loader (written by
    privileged systems only) and owns the app host's pool of workers.

    load: manifests are read and validated (file:line), ordered by their
    dependencies, their permissions decided against the policy (what it
    refuses is reported), the pin checked, and each app handed to the least
    loaded worker once its dependencies run. The answer waits for start()
    of every app of the request. Every change is broadcast on
    kernel.modules and audited; crashes, restarts and failures reported by
    the workers too. The switchboard hears an app's state through CTL
    appstate, for the heartbeat and `aaax ps`. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_kernel.h"
#include "app_host.h"
#include "app_manifest.h"
#include "chan_mpk.h"
#include "hal_clock.h"
#include "hal_luadata.h"

#define S_SYSTEM "kernel.loader"
#define S_QUEUE "kernel.loader"
#define S_MAX_WORKERS 16
#define S_PIN_NS "kernel.loader"

/*  ---- a worker actor ----------------------------------------------------- */

typedef struct {
    app_worker_cfg_t cfg;
    char host_id[64];
} s_host_args_t;

static void
s_on_event (void *arg, const char *name, app_event_t ev, const char *detail)
{
    zsock_send ((zsock_t *) arg, "ssis", "EVENT", name, (int) ev,
                detail ? detail : "");
}

/*  One worker of the pool: its apps and its connection. Commands on the
    pipe: ADD ptr(spec), REMOVE name kill, RESTART name, STATS name. */
static void
s_host_actor (zsock_t *pipe, void *args)
{
    s_host_args_t *h = (s_host_args_t *) args;
    char err[300];
    app_worker_t *w =
        app_worker_new (&h->cfg, s_on_event, pipe, err, sizeof err);
    /*  Signalled before docking: the switchboard serves HELLO only once
        its loop runs, after every actor has started. */
    zsock_signal (pipe, 0);
    if (w && app_worker_connect (w, err, sizeof err) != 0)
        app_worker_destroy (&w);
    if (!w) {
        zsys_error ("%s: cannot start: %s", h->host_id, err);
        act_wait_term (pipe);
        return;
    }
    for (;;) {
        int64_t now = hal_clock_mono_ms ();
        int64_t next = app_worker_serve (w, now);
        long timeout = next == INT64_MAX ? 1000 : (long) (next - now);
        if (timeout < 0)
            timeout = 0;
        if (timeout > 1000)
            timeout = 1000;
        zmq_pollitem_t items[2] = { { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
                                    { app_worker_socket (w), 0, ZMQ_POLLIN,
                                      0 } };
        if (zmq_poll (items, 2, timeout) < 0)
            break;
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        char *cmd = NULL, *name = NULL;
        void *ptr = NULL;
        int kill = 0;
        zmsg_t *msg = zmsg_recv (pipe);
        if (!msg)
            break;
        cmd = zmsg_popstr (msg);
        bool term = !cmd || streq (cmd, "$TERM");
        if (term) {
            zstr_free (&cmd);
            zmsg_destroy (&msg);
            break;
        }
        if (streq (cmd, "ADD")) {
            zframe_t *f = zmsg_pop (msg);
            if (f && zframe_size (f) == sizeof ptr)
                memcpy (&ptr, zframe_data (f), sizeof ptr);
            zframe_destroy (&f);
            app_spec_t *spec = (app_spec_t *) ptr;
            if (spec) {
                char nm[AAAX_MAX_NAME + 1];
                snprintf (nm, sizeof nm, "%s", spec->m.name);
                if (app_worker_add (w, spec) != 0)
                    s_on_event (pipe, nm, APP_EV_LOAD_FAILED,
                                "already running on this worker");
            }
        } else if (streq (cmd, "REMOVE")) {
            name = zmsg_popstr (msg);
            char *k = zmsg_popstr (msg);
            kill = k && streq (k, "1");
            zstr_free (&k);
            if (name && app_worker_remove (w, name, kill) != 0)
                s_on_event (pipe, name, APP_EV_STOPPED, "not running");
        } else if (streq (cmd, "RESTART")) {
            name = zmsg_popstr (msg);
            if (name)
                app_worker_restart (w, name);
        } else if (streq (cmd, "STATS")) {
            name = zmsg_popstr (msg);
            app_stats_t st;
            if (!name || app_worker_stats (w, name, &st) != 0)
                memset (&st, 0, sizeof st);
            /*  Numbers as decimal text: the pipe is only in-process, but
                text needs no agreement on byte order. */
            char nums[4][24];
            snprintf (nums[0], 24, "%zu", st.memory);
            snprintf (nums[1], 24, "%llu", (unsigned long long) st.handled);
            snprintf (nums[2], 24, "%llu", (unsigned long long) st.errors);
            snprintf (nums[3], 24, "%llu", (unsigned long long) st.restarts);
            zsock_send (pipe, "sssssss", "STATS", st.state, nums[0], nums[1],
                        nums[2], nums[3], st.error);
        }
        zstr_free (&cmd);
        zstr_free (&name);
        zmsg_destroy (&msg);
    }
    app_worker_shutdown (w, 3000);
    app_worker_destroy (&w);
}

/*  ---- modules -------------------------------------------------------------
 */

typedef struct _s_op_t s_op_t;

typedef struct {
    char name[AAAX_MAX_NAME + 1];
    char version[64];
    char dir[4096];
    char digest[65];
    char **granted, **refused, **channels, **depends;
    size_t ngranted, nrefused, nchannels, ndepends;
    app_limits_t limits;
    int worker;     /* index in the pool, -1 when not running */
    char state[16]; /* starting running restarting failed stopped */
    double since;
    uint64_t restarts;
    char error[256];
    app_spec_t *pending; /* the spec to start once the dependencies run */
    s_op_t *op;          /* the request waiting for it */
    bool unloading;
    app_spec_t *reload_spec; /* reload: the new one, once the old stops */
} s_mod_t;

enum { OP_LOAD = 1, OP_RELOAD, OP_UNLOAD, OP_START };

struct _s_op_t {
    int kind;
    char to[AAAX_MAX_NAME + 1]; /* "" for the boot list */
    char corr[40];
    zlistx_t *mods; /* s_mod_t (borrowed) still waited for */
    zlistx_t *done; /* names, for the answer */
    bool failed;
    char reason[600];
};

typedef struct {
    const act_ctx_t *ctx;
    act_conn_t *conn;
    zactor_t *workers[S_MAX_WORKERS];
    s_host_args_t hargs[S_MAX_WORKERS];
    size_t nworkers;
    size_t load[S_MAX_WORKERS];
    zhashx_t *mods;   /* name -> s_mod_t */
    zlistx_t *ops;    /* s_op_t */
    zlistx_t *events; /* s_ev_t: worker events read while waiting for STATS */
    policy_t *policy;
    uint64_t policy_version;
    char files_root[4200];
    bool booted;
} s_self_t;

static void
s_strv_free (char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free (v[i]);
    free (v);
}

static char **
s_strv_dup (char *const *v, size_t n)
{
    char **out = (char **) calloc (n ? n : 1, sizeof (char *));
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!(out[i] = strdup (v[i]))) {
            s_strv_free (out, i);
            return NULL;
        }
    return out;
}

static void
s_mod_free (s_mod_t *m)
{
    if (!m)
        return;
    s_strv_free (m->granted, m->ngranted);
    s_strv_free (m->refused, m->nrefused);
    s_strv_free (m->channels, m->nchannels);
    s_strv_free (m->depends, m->ndepends);
    app_spec_destroy (&m->pending);
    app_spec_destroy (&m->reload_spec);
    free (m);
}

static void
s_refresh_policy (s_self_t *self)
{
    policy_t *p = act_policy_take (self->ctx->policy, &self->policy_version);
    if (p) {
        policy_destroy (&self->policy);
        self->policy = p;
    }
}

/*  ---- the registry's voice: kernel.modules, the audit log, the switchboard */

static void
s_pack_strv (msgpack_packer *pk, char **v, size_t n)
{
    msgpack_pack_array (pk, n);
    for (size_t i = 0; i < n; i++)
        chan_pack_cstr (pk, v[i]);
}

static void
s_broadcast (s_self_t *self, const char *event, s_mod_t *m, const char *reason)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, reason ? 7 : 6);
    chan_pack_cstr (&pk, "event");
    chan_pack_cstr (&pk, event);
    chan_pack_cstr (&pk, "name");
    chan_pack_cstr (&pk, m->name);
    chan_pack_cstr (&pk, "version");
    chan_pack_cstr (&pk, m->version);
    chan_pack_cstr (&pk, "digest");
    chan_pack_cstr (&pk, m->digest);
    chan_pack_cstr (&pk, "state");
    chan_pack_cstr (&pk, m->state);
    chan_pack_cstr (&pk, "ts");
    msgpack_pack_double (&pk, hal_clock_wall_s ());
    if (reason) {
        chan_pack_cstr (&pk, "reason");
        chan_pack_cstr (&pk, reason);
    }
    if (!b.oom)
        act_write (self->conn, "kernel.modules", b.data, b.len);
    chan_buf_fini (&b);
    /*  The switchboard shows the state in the heartbeat and `aaax ps`. */
    chan_body_t body;
    chan_body_init (&body);
    chan_body_str (&body, "system", m->name);
    chan_body_str (&body, "state", streq (event, "unload") ? "" : m->state);
    chan_reply_t reply;
    if (act_ctl (self->conn, "appstate", &body, &reply) == 0 || reply.raw)
        chan_reply_fini (&reply);
    chan_body_fini (&body);
}

static void
s_audit (s_self_t *self, const char *what, const char *name, bool ok,
         const char *by, const char *detail)
{
    if (!self->ctx->audit)
        return;
    char action[64], reason[700];
    snprintf (action, sizeof action, "module.%s", what);
    snprintf (reason, sizeof reason, "by %s%s%s",
              by && *by ? by : "kernel.loader", detail ? ": " : "",
              detail ? detail : "");
    hal_audit_rec_t rec = { .kind = "module",
                            .subject = name,
                            .action = action,
                            .target = name,
                            .verdict = ok ? "ok" : "refused",
                            .reason = reason };
    if (hal_audit_append (self->ctx->audit, &rec, NULL, 0) == 0)
        zsys_error ("loader: could not queue an audit record");
}

/*  ---- talking to the workers ----------------------------------------------
 */

typedef struct {
    char name[AAAX_MAX_NAME + 1];
    int ev;
    char detail[512];
} s_ev_t;

static void s_handle_event (s_self_t *self, const char *name, int ev,
                            const char *detail);

/*  Reads what a worker sent: an EVENT is handled (or kept when keep is
    set), a STATS reply copied into st. Returns true when STATS came. */
static bool
s_read_worker (s_self_t *self, size_t wi, bool keep, app_stats_t *st)
{
    zmsg_t *msg = zmsg_recv (zactor_sock (self->workers[wi]));
    if (!msg)
        return false;
    char *cmd = zmsg_popstr (msg);
    bool stats = false;
    if (cmd && streq (cmd, "EVENT")) {
        char *name = zmsg_popstr (msg), *ev = zmsg_popstr (msg),
             *detail = zmsg_popstr (msg);
        if (name && ev) {
            if (keep) {
                s_ev_t *e = (s_ev_t *) calloc (1, sizeof *e);
                if (e) {
                    snprintf (e->name, sizeof e->name, "%s", name);
                    e->ev = atoi (ev);
                    snprintf (e->detail, sizeof e->detail, "%s",
                              detail ? detail : "");
                    zlistx_add_end (self->events, e);
                }
            } else
                s_handle_event (self, name, atoi (ev), detail ? detail : "");
        }
        zstr_free (&name);
        zstr_free (&ev);
        zstr_free (&detail);
    } else if (cmd && streq (cmd, "STATS") && st) {
        char *state = zmsg_popstr (msg);
        snprintf (st->state, sizeof st->state, "%s", state ? state : "");
        zstr_free (&state);
        uint64_t v[4] = { 0 };
        for (int i = 0; i < 4; i++) {
            char *num = zmsg_popstr (msg);
            v[i] = num ? strtoull (num, NULL, 10) : 0;
            zstr_free (&num);
        }
        st->memory = (size_t) v[0];
        st->handled = v[1];
        st->errors = v[2];
        st->restarts = v[3];
        char *e = zmsg_popstr (msg);
        snprintf (st->error, sizeof st->error, "%s", e ? e : "");
        zstr_free (&e);
        stats = true;
    }
    zstr_free (&cmd);
    zmsg_destroy (&msg);
    return stats;
}

static void
s_stats (s_self_t *self, s_mod_t *m, app_stats_t *st)
{
    memset (st, 0, sizeof *st);
    if (m->worker < 0)
        return;
    zsock_send (zactor_sock (self->workers[m->worker]), "ss", "STATS", m->name);
    while (!s_read_worker (self, (size_t) m->worker, true, st))
        ;
}

/*  ---- answers ---------------------------------------------------------------
 */

static void
s_pack_module (s_self_t *self, msgpack_packer *pk, s_mod_t *m)
{
    app_stats_t st;
    s_stats (self, m, &st);
    char pin[80] = "";
    void *val = NULL;
    size_t vlen = 0;
    char key[AAAX_MAX_NAME + 8];
    snprintf (key, sizeof key, "pin:%s", m->name);
    if (self->ctx->kv
        && hal_kv_get (self->ctx->kv, S_PIN_NS, key, strlen (key), &val, &vlen)
               == 0) {
        snprintf (pin, sizeof pin, "%.*s", (int) (vlen < 64 ? vlen : 64),
                  (char *) val);
        free (val);
    }
    msgpack_pack_map (pk, 18);
    chan_pack_cstr (pk, "name");
    chan_pack_cstr (pk, m->name);
    chan_pack_cstr (pk, "version");
    chan_pack_cstr (pk, m->version);
    chan_pack_cstr (pk, "path");
    chan_pack_cstr (pk, m->dir);
    chan_pack_cstr (pk, "digest");
    chan_pack_cstr (pk, m->digest);
    chan_pack_cstr (pk, "pinned");
    if (pin[0])
        chan_pack_cstr (pk, pin);
    else
        msgpack_pack_nil (pk);
    chan_pack_cstr (pk, "state");
    chan_pack_cstr (pk, m->state);
    chan_pack_cstr (pk, "since");
    msgpack_pack_double (pk, m->since);
    chan_pack_cstr (pk, "restarts");
    msgpack_pack_uint64 (pk, m->worker >= 0 ? st.restarts : m->restarts);
    chan_pack_cstr (pk, "error");
    if (m->error[0])
        chan_pack_cstr (pk, m->error);
    else
        msgpack_pack_nil (pk);
    chan_pack_cstr (pk, "granted");
    s_pack_strv (pk, m->granted, m->ngranted);
    chan_pack_cstr (pk, "refused");
    s_pack_strv (pk, m->refused, m->nrefused);
    chan_pack_cstr (pk, "channels");
    s_pack_strv (pk, m->channels, m->nchannels);
    chan_pack_cstr (pk, "depends");
    s_pack_strv (pk, m->depends, m->ndepends);
    chan_pack_cstr (pk, "memory");
    msgpack_pack_uint64 (pk, st.memory);
    chan_pack_cstr (pk, "handled");
    msgpack_pack_uint64 (pk, st.handled);
    /*  Handler failures and kernel refusals of its asynchronous sends. */
    chan_pack_cstr (pk, "errors");
    msgpack_pack_uint64 (pk, st.errors);
    chan_pack_cstr (pk, "worker");
    msgpack_pack_int (pk, m->worker);
    chan_pack_cstr (pk, "limits");
    msgpack_pack_map (pk, 4);
    chan_pack_cstr (pk, "memory_kb");
    msgpack_pack_uint32 (pk, m->limits.memory_kb);
    chan_pack_cstr (pk, "instructions");
    msgpack_pack_uint64 (pk, m->limits.instructions);
    chan_pack_cstr (pk, "files_kb");
    msgpack_pack_uint32 (pk, m->limits.files_kb);
    chan_pack_cstr (pk, "kv_kb");
    msgpack_pack_uint32 (pk, m->limits.kv_kb);
}

/*  Answers to (to, corr): {ok, reason, modules: [names' records]}. */
static void
s_reply (s_self_t *self, const char *to, const char *corr, bool ok,
         const char *reason, zlistx_t *names, const char *digest)
{
    if (!to || !*to) {
        if (!ok)
            zsys_error ("loader: %s", reason ? reason : "refused");
        return;
    }
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 2 + (reason ? 1 : 0) + (names ? 1 : 0)
                               + (digest ? 1 : 0));
    chan_pack_cstr (&pk, "ok");
    if (ok)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
    chan_pack_cstr (&pk, "op_ts");
    msgpack_pack_double (&pk, hal_clock_wall_s ());
    if (reason) {
        chan_pack_cstr (&pk, "reason");
        chan_pack_cstr (&pk, reason);
    }
    if (digest) {
        chan_pack_cstr (&pk, "digest");
        chan_pack_cstr (&pk, digest);
    }
    if (names) {
        size_t n = 0;
        for (const char *nm = (const char *) zlistx_first (names); nm;
             nm = (const char *) zlistx_next (names))
            if (zhashx_lookup (self->mods, nm))
                n++;
        chan_pack_cstr (&pk, "modules");
        msgpack_pack_array (&pk, n);
        for (const char *nm = (const char *) zlistx_first (names); nm;
             nm = (const char *) zlistx_next (names)) {
            s_mod_t *m = (s_mod_t *) zhashx_lookup (self->mods, nm);
            if (m)
                s_pack_module (self, &pk, m);
        }
    }
    if (!b.oom)
        act_send_now (self->conn, to, corr, b.data, b.len);
    chan_buf_fini (&b);
}

static void
s_reply_one (s_self_t *self, const char *to, const char *corr, bool ok,
             const char *reason)
{
    s_reply (self, to, corr, ok, reason, NULL, NULL);
}

/*  ---- pins ----------------------------------------------------------------
 */

static bool
s_pin_get (s_self_t *self, const char *name, char out[65])
{
    char key[AAAX_MAX_NAME + 8];
    snprintf (key, sizeof key, "pin:%s", name);
    void *val = NULL;
    size_t vlen = 0;
    if (!self->ctx->kv
        || hal_kv_get (self->ctx->kv, S_PIN_NS, key, strlen (key), &val, &vlen)
               != 0)
        return false;
    snprintf (out, 65, "%.*s", (int) (vlen < 64 ? vlen : 64), (char *) val);
    free (val);
    return true;
}

/*  ---- operations ------------------------------------------------------------
 */

static s_op_t *
s_op_new (s_self_t *self, int kind, const char *to, const char *corr)
{
    s_op_t *op = (s_op_t *) calloc (1, sizeof *op);
    if (!op)
        return NULL;
    op->kind = kind;
    snprintf (op->to, sizeof op->to, "%s", to ? to : "");
    snprintf (op->corr, sizeof op->corr, "%s", corr ? corr : "");
    op->mods = zlistx_new ();
    op->done = zlistx_new ();
    zlistx_set_duplicator (op->done, (zlistx_duplicator_fn *) strdup);
    zlistx_set_destructor (op->done, (zlistx_destructor_fn *) zstr_free);
    zlistx_add_end (self->ops, op);
    return op;
}

static void
s_op_finish (s_self_t *self, s_op_t *op)
{
    static const char *verbs[] = { "", "load", "reload", "unload", "start" };
    if (op->failed)
        s_reply (self, op->to, op->corr, false, op->reason, op->done, NULL);
    else
        s_reply (self, op->to, op->corr, true, NULL, op->done, NULL);
    if (!op->to[0] && op->failed)
        zsys_error ("loader: boot %s: %s", verbs[op->kind], op->reason);
    void *h = zlistx_find (self->ops, op);
    if (h)
        zlistx_delete (self->ops, h);
    zlistx_destroy (&op->mods);
    zlistx_destroy (&op->done);
    free (op);
}

static void
s_list_remove (zlistx_t *list, void *item)
{
    void *h = zlistx_find (list, item);
    if (h)
        zlistx_delete (list, h);
}

static bool
s_running (s_self_t *self, const char *name)
{
    s_mod_t *m = (s_mod_t *) zhashx_lookup (self->mods, name);
    return m && streq (m->state, "running");
}

/*  Hands pending apps whose dependencies run to the least loaded
    worker. */
static void
s_dispatch (s_self_t *self, s_op_t *op)
{
    for (s_mod_t *m = (s_mod_t *) zlistx_first (op->mods); m;
         m = (s_mod_t *) zlistx_next (op->mods)) {
        if (!m->pending)
            continue;
        bool ready = true;
        for (size_t i = 0; i < m->ndepends; i++)
            if (!s_running (self, m->depends[i]))
                ready = false;
        if (!ready)
            continue;
        size_t best = 0;
        for (size_t i = 1; i < self->nworkers; i++)
            if (self->load[i] < self->load[best])
                best = i;
        m->worker = (int) best;
        self->load[best]++;
        app_spec_t *spec = m->pending;
        m->pending = NULL;
        snprintf (m->state, sizeof m->state, "starting");
        zsock_send (zactor_sock (self->workers[best]), "sp", "ADD", spec);
    }
}

static void
s_mod_forget (s_self_t *self, s_mod_t *m)
{
    zhashx_delete (self->mods, m->name);
    s_mod_free (m);
}

/*  Reads an app directory into a spec: manifest, limits, pin, main.lua. */
static app_spec_t *
s_read_app (s_self_t *self, const char *path, char *err, size_t errlen)
{
    app_spec_t *spec = (app_spec_t *) calloc (1, sizeof *spec);
    if (!spec) {
        aaax_seterr (err, errlen, "out of memory");
        return NULL;
    }
    char e[600];
    if (app_manifest_load (path, &spec->m, e, sizeof e) != 0) {
        aaax_seterr (err, errlen, "%s", e);
        app_spec_destroy (&spec);
        return NULL;
    }
    if (app_limits_resolve (self->ctx->app_limits, &spec->m.limits,
                            &spec->limits, e, sizeof e)
        != 0) {
        aaax_seterr (err, errlen, "%s/manifest.lua: %s", spec->m.dir, e);
        app_spec_destroy (&spec);
        return NULL;
    }
    char pin[65];
    if (s_pin_get (self, spec->m.name, pin) && !streq (pin, spec->m.digest)) {
        aaax_seterr (err, errlen,
                     "app '%s' is pinned to digest %.12s but its files in %s "
                     "now have digest %.12s; review the change and run "
                     "`aaax app pin %s` to accept it",
                     spec->m.name, pin, spec->m.dir, spec->m.digest,
                     spec->m.name);
        app_spec_destroy (&spec);
        return NULL;
    }
    char mainp[4200];
    snprintf (mainp, sizeof mainp, "%s/main.lua", spec->m.dir);
    if (hal_luadata_read_file (mainp, &spec->src, &spec->srclen, e, sizeof e)
        != 0) {
        aaax_seterr (err, errlen, "%s", e);
        app_spec_destroy (&spec);
        return NULL;
    }
    return spec;
}

/*  The module record for a spec: permissions decided now. */
static s_mod_t *
s_mod_of (s_self_t *self, const app_spec_t *spec)
{
    s_mod_t *m = (s_mod_t *) calloc (1, sizeof *m);
    if (!m)
        return NULL;
    const app_manifest_t *am = &spec->m;
    snprintf (m->name, sizeof m->name, "%s", am->name);
    snprintf (m->version, sizeof m->version, "%s", am->version);
    snprintf (m->dir, sizeof m->dir, "%s", am->dir);
    snprintf (m->digest, sizeof m->digest, "%s", am->digest);
    m->limits = spec->limits;
    m->worker = -1;
    m->since = hal_clock_wall_s ();
    snprintf (m->state, sizeof m->state, "starting");
    m->channels = s_strv_dup (am->channels, am->nchannels);
    m->nchannels = am->nchannels;
    m->depends = s_strv_dup (am->depends, am->ndepends);
    m->ndepends = am->ndepends;
    m->granted = (char **) calloc (am->npermissions + 1, sizeof (char *));
    m->refused = (char **) calloc (am->npermissions + 1, sizeof (char *));
    if (!m->channels || !m->depends || !m->granted || !m->refused) {
        s_mod_free (m);
        return NULL;
    }
    s_refresh_policy (self);
    for (size_t i = 0; i < am->npermissions; i++) {
        const char *p = am->permissions[i];
        const char *colon = strchr (p, ':');
        char action[256];
        snprintf (action, sizeof action, "%.*s",
                  colon ? (int) (colon - p) : (int) strlen (p), p);
        const char *target = colon ? colon + 1 : "*";
        policy_decision_t d;
        d.effect = POLICY_DENY;
        if (self->policy)
            policy_decide (self->policy, am->name, action, target, &d);
        if (d.effect == POLICY_DENY)
            m->refused[m->nrefused++] = strdup (p);
        else
            m->granted[m->ngranted++] = strdup (p);
    }
    return m;
}

/*  load: paths (one or several) → an op waiting for their starts. */
static void
s_load (s_self_t *self, const char *to, const char *corr, char **paths,
        size_t n, const char *by)
{
    char err[900] = "";
    app_spec_t **specs = (app_spec_t **) calloc (n ? n : 1, sizeof *specs);
    size_t *order = (size_t *) calloc (n ? n : 1, sizeof *order);
    const char **loaded = NULL;
    size_t nloaded = 0, i = 0;
    bool ok = specs && order;
    for (i = 0; ok && i < n; i++)
        if (!(specs[i] = s_read_app (self, paths[i], err, sizeof err)))
            ok = false;
    for (i = 0; ok && i < n; i++) {
        s_mod_t *old = (s_mod_t *) zhashx_lookup (self->mods, specs[i]->m.name);
        if (old) {
            snprintf (err, sizeof err,
                      "app '%s' is already loaded (from %.600s); unload it "
                      "first, or reload it",
                      old->name, old->dir);
            ok = false;
        }
    }
    if (ok) {
        nloaded = zhashx_size (self->mods);
        loaded = (const char **) calloc (nloaded + 1, sizeof (char *));
        size_t k = 0;
        for (s_mod_t *m = (s_mod_t *) zhashx_first (self->mods); m && loaded;
             m = (s_mod_t *) zhashx_next (self->mods))
            loaded[k++] = m->name;
        app_manifest_t **ms =
            (app_manifest_t **) calloc (n ? n : 1, sizeof *ms);
        for (i = 0; ms && i < n; i++)
            ms[i] = &specs[i]->m;
        if (!loaded || !ms
            || app_manifest_order ((app_manifest_t *const *) ms, n,
                                   (const char *const *) loaded, nloaded, order,
                                   err, sizeof err)
                   != 0)
            ok = false;
        free (ms);
        free (loaded);
    }
    if (!ok) {
        for (i = 0; specs && i < n; i++)
            app_spec_destroy (&specs[i]);
        free (specs);
        free (order);
        s_audit (self, "load", n == 1 ? paths[0] : "(several)", false, by,
                 err[0] ? err : "out of memory");
        s_reply_one (self, to, corr, false, err[0] ? err : "out of memory");
        return;
    }
    s_op_t *op = s_op_new (self, OP_LOAD, to, corr);
    for (i = 0; i < n; i++) {
        app_spec_t *spec = specs[order[i]];
        s_mod_t *m = op ? s_mod_of (self, spec) : NULL;
        if (!m || zhashx_insert (self->mods, m->name, m) != 0) {
            s_mod_free (m);
            app_spec_destroy (&spec);
            continue;
        }
        m->pending = spec;
        m->op = op;
        zlistx_add_end (op->mods, m);
    }
    free (specs);
    free (order);
    if (!op)
        return;
    s_dispatch (self, op);
    if (zlistx_size (op->mods) == 0)
        s_op_finish (self, op);
}

/*  An op's app started or failed. */
static void
s_op_progress (s_self_t *self, s_mod_t *m, bool started, const char *why)
{
    s_op_t *op = m->op;
    m->op = NULL;
    if (!op)
        return;
    void *h = zlistx_find (op->mods, m);
    if (h)
        zlistx_delete (op->mods, h);
    if (started)
        zlistx_add_end (op->done, m->name);
    else if (!op->failed) {
        op->failed = true;
        snprintf (op->reason, sizeof op->reason, "app '%s': %s", m->name, why);
    }
    if (op->failed) {
        /*  Apps of the op that wait for their dependencies do not start. */
        s_mod_t *w;
        while ((w = (s_mod_t *) zlistx_first (op->mods)) && w->pending) {
            zlistx_delete (op->mods, zlistx_cursor (op->mods));
            s_mod_forget (self, w);
        }
    } else
        s_dispatch (self, op);
    if (zlistx_size (op->mods) == 0)
        s_op_finish (self, op);
}

static void
s_handle_event (s_self_t *self, const char *name, int ev, const char *detail)
{
    s_mod_t *m = (s_mod_t *) zhashx_lookup (self->mods, name);
    if (!m)
        return;
    m->since = hal_clock_wall_s ();
    switch (ev) {
    case APP_EV_STARTED: {
        bool load = streq (detail, "load");
        snprintf (m->state, sizeof m->state, "running");
        if (load)
            m->error[0] = 0;
        const char *what = m->op && m->op->kind == OP_RELOAD  ? "reload"
                           : m->op && m->op->kind == OP_START ? "start"
                           : load                             ? "load"
                                                              : "restart";
        zsys_info ("loader: %s %s (%s)", what, m->name, m->version);
        s_audit (self, what, m->name, true, m->op ? m->op->to : NULL,
                 m->digest);
        s_broadcast (self, what, m, NULL);
        s_op_progress (self, m, true, NULL);
        break;
    }
    case APP_EV_LOAD_FAILED:
        if (m->worker >= 0 && self->load[m->worker])
            self->load[m->worker]--;
        m->worker = -1;
        s_audit (self, "load", m->name, false, m->op ? m->op->to : NULL,
                 detail);
        {
            /*  A reload or start that fails keeps the module, failed,
                with the reason; only a first load forgets it. */
            bool keep = m->op && m->op->kind != OP_LOAD;
            if (m->op)
                s_op_progress (self, m, false, detail);
            if (keep) {
                snprintf (m->state, sizeof m->state, "failed");
                snprintf (m->error, sizeof m->error, "%s", detail);
                s_broadcast (self, "failed", m, detail);
            } else
                s_mod_forget (self, m);
        }
        break;
    case APP_EV_CRASHED:
        snprintf (m->state, sizeof m->state, "restarting");
        snprintf (m->error, sizeof m->error, "%s", detail);
        m->restarts++;
        s_audit (self, "crash", m->name, false, NULL, detail);
        s_broadcast (self, "crash", m, detail);
        break;
    case APP_EV_FAILED:
        snprintf (m->state, sizeof m->state, "failed");
        snprintf (m->error, sizeof m->error, "%s", detail);
        s_audit (self, "failed", m->name, false, NULL, detail);
        s_broadcast (self, "failed", m, detail);
        break;
    case APP_EV_STOPPED: {
        if (m->worker >= 0 && self->load[m->worker])
            self->load[m->worker]--;
        m->worker = -1;
        snprintf (m->state, sizeof m->state, "stopped");
        s_op_t *op = m->op;
        if (m->reload_spec) {
            /*  reload: the old one is down; the new one starts. */
            app_spec_t *spec = m->reload_spec;
            m->reload_spec = NULL;
            s_mod_t *n = s_mod_of (self, spec);
            if (!n) {
                app_spec_destroy (&spec);
                m->op = NULL;
                if (op) {
                    op->failed = true;
                    snprintf (op->reason, sizeof op->reason, "out of memory");
                    s_list_remove (op->mods, m);
                    s_op_finish (self, op);
                }
                break;
            }
            s_list_remove (op->mods, m);
            zhashx_delete (self->mods, m->name); /* frees nothing: no
                                                    destructor */
            s_mod_free (m);
            zhashx_insert (self->mods, n->name, n);
            n->pending = spec;
            n->op = op;
            zlistx_add_end (op->mods, n);
            s_dispatch (self, op);
            break;
        }
        s_audit (self, m->unloading ? "unload" : "stop", m->name, true,
                 op ? op->to : NULL, detail);
        s_broadcast (self, m->unloading ? "unload" : "stop", m, NULL);
        if (op) {
            m->op = NULL;
            s_list_remove (op->mods, m);
            s_op_finish (self, op);
        }
        if (m->unloading)
            s_mod_forget (self, m);
        break;
    }
    default: break;
    }
}

/*  Dependents of name that are loaded (for unload). */
static void
s_dependents (s_self_t *self, const char *name, char *out, size_t size)
{
    out[0] = 0;
    for (s_mod_t *m = (s_mod_t *) zhashx_first (self->mods); m;
         m = (s_mod_t *) zhashx_next (self->mods))
        for (size_t i = 0; i < m->ndepends; i++)
            if (streq (m->depends[i], name)) {
                size_t l = strlen (out);
                snprintf (out + l, size - l, "%s'%s'", l ? ", " : "", m->name);
            }
}

static void
s_remove (s_self_t *self, s_mod_t *m, bool kill)
{
    if (m->worker >= 0)
        zsock_send (zactor_sock (self->workers[m->worker]), "sss", "REMOVE",
                    m->name, kill ? "1" : "0");
    else {
        /*  Not running anywhere (failed, stopped): done at once. */
        s_handle_event (self, m->name, APP_EV_STOPPED, "not running");
    }
}

/*  ---- requests
 * --------------------------------------------------------------- */

static void
s_one (void *arg, act_batch_t *batch, act_req_t *req)
{
    s_self_t *self = (s_self_t *) arg;
    char op[16], name[AAAX_MAX_NAME + 1], to[AAAX_MAX_NAME + 1], corr[40];
    /*  The lifecycle actor forwards start/restart for the caller, who gets
        the answer. Only it may name another recipient. */
    snprintf (to, sizeof to, "%s", req->from);
    snprintf (corr, sizeof corr, "%s", req->id);
    if (streq (req->from, "kernel.lifecycle")) {
        char t[AAAX_MAX_NAME + 1], c[40];
        if (act_get_str (req->data, "reply_to", t, sizeof t)
            && act_get_str (req->data, "reply_corr", c, sizeof c)) {
            snprintf (to, sizeof to, "%s", t);
            snprintf (corr, sizeof corr, "%s", c);
        }
    }
    if (!act_get_str (req->data, "op", op, sizeof op)) {
        s_reply_one (self, to, corr, false,
                     "\"op\" must be one of load, unload, reload, list, "
                     "pin, unpin, start, stop, restart, kill");
        return;
    }
    if (streq (op, "list")) {
        /*  Names borrowed from the records: nothing is forgotten while the
            answer is built (worker events read meanwhile wait in
            self->events). */
        zlistx_t *names = zlistx_new ();
        for (s_mod_t *m = (s_mod_t *) zhashx_first (self->mods); m;
             m = (s_mod_t *) zhashx_next (self->mods))
            zlistx_add_end (names, m->name);
        s_reply (self, to, corr, true, NULL, names, NULL);
        zlistx_destroy (&names);
        return;
    }
    if (streq (op, "load")) {
        const msgpack_object *ps = chan_obj_get (req->data, "paths");
        char *one[1];
        char pbuf[4096];
        if (ps && ps->type == MSGPACK_OBJECT_ARRAY && ps->via.array.size > 0
            && ps->via.array.size <= 10000) {
            size_t n = ps->via.array.size;
            char **paths = (char **) calloc (n, sizeof (char *));
            bool ok = paths != NULL;
            for (size_t i = 0; ok && i < n; i++) {
                const msgpack_object *p = &ps->via.array.ptr[i];
                if (p->type != MSGPACK_OBJECT_STR || p->via.str.size == 0
                    || p->via.str.size >= 4096
                    || !(paths[i] = strndup (p->via.str.ptr, p->via.str.size)))
                    ok = false;
            }
            if (ok)
                s_load (self, to, corr, paths, n, req->from);
            else
                s_reply_one (self, to, corr, false,
                             "\"paths\" must be a list of directory paths");
            for (size_t i = 0; paths && i < n; i++)
                free (paths[i]);
            free (paths);
            return;
        }
        if (!act_get_str (req->data, "path", pbuf, sizeof pbuf) || !pbuf[0]) {
            s_reply_one (self, to, corr, false,
                         "load needs \"path\" (an app directory) or "
                         "\"paths\"");
            return;
        }
        one[0] = pbuf;
        s_load (self, to, corr, one, 1, req->from);
        return;
    }
    if (!act_get_str (req->data, "name", name, sizeof name) || !name[0]) {
        s_reply_one (self, to, corr, false,
                     "this op needs \"name\" (a loaded app)");
        return;
    }
    s_mod_t *m = (s_mod_t *) zhashx_lookup (self->mods, name);
    char why[900];
    if (!m) {
        snprintf (why, sizeof why, "no app named '%s' is loaded", name);
        s_reply_one (self, to, corr, false, why);
        return;
    }
    if (m->op) {
        snprintf (why, sizeof why,
                  "app '%s' is busy with another request; try again", name);
        s_reply_one (self, to, corr, false, why);
        return;
    }
    if (streq (op, "pin") || streq (op, "unpin")) {
        char key[AAAX_MAX_NAME + 8], digest[65];
        snprintf (key, sizeof key, "pin:%s", name);
        if (streq (op, "unpin")) {
            hal_kv_del (self->ctx->kv, S_PIN_NS, key, strlen (key));
            s_audit (self, "unpin", name, true, req->from, NULL);
            s_broadcast (self, "unpin", m, NULL);
            s_reply_one (self, to, corr, true, NULL);
            return;
        }
        if (app_manifest_digest (m->dir, digest, why, sizeof why) != 0) {
            s_reply_one (self, to, corr, false, why);
            return;
        }
        int rc = hal_kv_put (self->ctx->kv, S_PIN_NS, key, strlen (key), digest,
                             64, 0);
        s_audit (self, "pin", name, rc == 0, req->from, digest);
        if (rc == 0)
            s_broadcast (self, "pin", m, NULL);
        s_reply (self, to, corr, rc == 0,
                 rc == 0 ? NULL : "the pin could not be stored", NULL,
                 rc == 0 ? digest : NULL);
        return;
    }
    if (streq (op, "unload")) {
        s_dependents (self, name, why, sizeof why);
        if (why[0]) {
            char msg[1200];
            snprintf (msg, sizeof msg,
                      "app '%s' is needed by %s; unload them first", name, why);
            s_reply_one (self, to, corr, false, msg);
            return;
        }
        s_op_t *o = s_op_new (self, OP_UNLOAD, to, corr);
        m->unloading = true;
        m->op = o;
        zlistx_add_end (o->mods, m);
        s_remove (self, m, false);
        return;
    }
    if (streq (op, "reload")) {
        app_spec_t *spec = s_read_app (self, m->dir, why, sizeof why);
        if (spec && !streq (spec->m.name, name)) {
            snprintf (why, sizeof why,
                      "%.400s/manifest.lua now names the app '%s', not '%s'; "
                      "unload '%s' and load the directory",
                      m->dir, spec->m.name, name, name);
            app_spec_destroy (&spec);
        }
        if (!spec) {
            s_audit (self, "reload", name, false, req->from, why);
            s_reply_one (self, to, corr, false, why);
            return;
        }
        s_op_t *o = s_op_new (self, OP_RELOAD, to, corr);
        m->reload_spec = spec;
        m->op = o;
        zlistx_add_end (o->mods, m);
        s_remove (self, m, false);
        return;
    }
    if (streq (op, "stop") || streq (op, "kill")) {
        if (m->worker < 0) {
            snprintf (why, sizeof why, "app '%s' is not running (%s)", name,
                      m->state);
            s_reply_one (self, to, corr, false, why);
            return;
        }
        s_op_t *o = s_op_new (self, OP_UNLOAD, to, corr);
        m->op = o;
        zlistx_add_end (o->mods, m);
        s_remove (self, m, streq (op, "kill"));
        return;
    }
    if ((streq (op, "restart")
         || (streq (op, "start") && streq (m->state, "failed")))
        && m->worker >= 0) {
        zsock_send (zactor_sock (self->workers[m->worker]), "ss", "RESTART",
                    name);
        m->restarts = 0;
        s_audit (self, "restart", name, true, req->from, "on request");
        s_reply_one (self, to, corr, true, NULL);
        return;
    }
    if (streq (op, "start") || streq (op, "restart")) {
        if (m->worker >= 0) {
            snprintf (why, sizeof why, "app '%s' is already %s", name,
                      m->state);
            s_reply_one (self, to, corr, false, why);
            return;
        }
        /*  Stopped or failed: from the same files as loaded. */
        app_spec_t *spec = s_read_app (self, m->dir, why, sizeof why);
        if (spec && !streq (spec->m.digest, m->digest)) {
            snprintf (why, sizeof why,
                      "the files of '%s' changed since it was loaded; use "
                      "`aaax app reload %s`",
                      name, name);
            app_spec_destroy (&spec);
        }
        if (!spec) {
            s_reply_one (self, to, corr, false, why);
            return;
        }
        s_op_t *o = s_op_new (self, OP_START, to, corr);
        m->pending = spec;
        m->op = o;
        m->restarts = 0;
        m->error[0] = 0;
        zlistx_add_end (o->mods, m);
        s_dispatch (self, o);
        return;
    }
    snprintf (why, sizeof why, "unknown op \"%s\"", op);
    s_reply_one (self, to, corr, false, why);
}

static void
s_batch (void *arg, const char *queue, const chan_reply_t *claim)
{
    s_self_t *self = (s_self_t *) arg;
    act_batch_each (self->conn, queue, claim, s_one, self);
}

static size_t
s_watch (void *arg, void **socks, size_t max)
{
    s_self_t *self = (s_self_t *) arg;
    size_t n = 0;
    for (size_t i = 0; i < self->nworkers && n < max; i++)
        socks[n++] = zsock_resolve (zactor_sock (self->workers[i]));
    return n;
}

static int64_t
s_tick (void *arg, int64_t now)
{
    s_self_t *self = (s_self_t *) arg;
    s_ev_t *e;
    while ((e = (s_ev_t *) zlistx_first (self->events))) {
        zlistx_detach_cur (self->events);
        s_handle_event (self, e->name, e->ev, e->detail);
        free (e);
    }
    for (size_t i = 0; i < self->nworkers; i++) {
        zsock_t *s = zactor_sock (self->workers[i]);
        while (zsock_events (s) & ZMQ_POLLIN)
            s_read_worker (self, i, false, NULL);
    }
    return INT64_MAX;
}

static void
s_docked (void *arg)
{
    s_self_t *self = (s_self_t *) arg;
    if (self->booted)
        return;
    self->booted = true;
    if (self->ctx->nboot_apps)
        s_load (self, NULL, NULL, (char **) self->ctx->boot_apps,
                self->ctx->nboot_apps, "boot");
}

void
act_loader (zsock_t *pipe, void *args)
{
    const act_ctx_t *ctx = (const act_ctx_t *) args;
    s_self_t self;
    memset (&self, 0, sizeof self);
    self.ctx = ctx;
    self.mods = zhashx_new ();
    self.ops = zlistx_new ();
    self.events = zlistx_new ();
    snprintf (self.files_root, sizeof self.files_root, "%s/files",
              ctx->data_dir);
    self.nworkers = ctx->app_workers ? ctx->app_workers : 1;
    if (self.nworkers > S_MAX_WORKERS)
        self.nworkers = S_MAX_WORKERS;
    for (size_t i = 0; i < self.nworkers; i++) {
        s_host_args_t *h = &self.hargs[i];
        snprintf (h->host_id, sizeof h->host_id, "kernel.apphost.%zu", i);
        h->cfg.endpoint = "inproc://aaax";
        h->cfg.host_id = h->host_id;
        h->cfg.kernel_token = ctx->kernel_token;
        h->cfg.files_root = self.files_root;
        h->cfg.kv = ctx->kv;
        self.workers[i] = zactor_new (s_host_actor, h);
    }
    self.conn = act_conn_new (ctx, S_SYSTEM);
    zsock_signal (pipe, 0);
    if (!self.conn) {
        zsys_error ("loader: cannot start");
        act_wait_term (pipe);
    } else {
        const char *queues[] = { S_QUEUE };
        act_ops_t ops = { .batch = s_batch,
                          .tick = s_tick,
                          .docked = s_docked,
                          .watch = s_watch };
        act_serve (pipe, self.conn, queues, 1, NULL, 0, &ops, &self);
    }
    for (size_t i = 0; i < self.nworkers; i++)
        zactor_destroy (&self.workers[i]);
    for (s_mod_t *m = (s_mod_t *) zhashx_first (self.mods); m;
         m = (s_mod_t *) zhashx_next (self.mods))
        s_mod_free (m);
    zhashx_destroy (&self.mods);
    s_op_t *op;
    while ((op = (s_op_t *) zlistx_first (self.ops))) {
        zlistx_detach_cur (self.ops);
        zlistx_destroy (&op->mods);
        zlistx_destroy (&op->done);
        free (op);
    }
    zlistx_destroy (&self.ops);
    s_ev_t *e;
    while ((e = (s_ev_t *) zlistx_first (self.events))) {
        zlistx_detach_cur (self.events);
        free (e);
    }
    zlistx_destroy (&self.events);
    policy_destroy (&self.policy);
    act_conn_destroy (&self.conn);
}
