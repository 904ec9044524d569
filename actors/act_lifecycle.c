/*  act_lifecycle.c — the lifecycle actor: serves kernel.lifecycle (written
    by privileged systems only): list, pause, resume, stop, kill, and
    start/restart for apps, which it hands to kernel.loader (the loader
    answers the caller).

    Signals reach a system as messages in its mailbox from
    kernel.lifecycle: {signal: "TERM" | "STOP" | "CONT" | "KILL", reason,
    session}. The switchboard does the enforcing part (CTL): a paused
    system's commands get 423 and nothing is delivered to it; a killed one
    is undocked at once, its leases released and its capabilities revoked.
    `stop` sends TERM and kills the same session when it is still docked
    after the grace period. Mutating commands are rate limited per caller
    (lifecycle_rate, an exact sliding window) and each is audited. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_kernel.h"
#include "chan_mpk.h"
#include "hal_clock.h"

#define S_SYSTEM "kernel.lifecycle"
#define S_QUEUE "kernel.lifecycle"
#define S_MAX_STOPS 4096

/*  A stop waiting for its grace period. */
typedef struct {
    char system[AAAX_MAX_NAME + 1];
    char session[40];
    char by[AAAX_MAX_NAME + 1];
    int64_t deadline;
} s_stop_t;

typedef struct {
    const act_ctx_t *ctx;
    act_conn_t *conn;
    policy_t *limiter; /* one rule carrying lifecycle_rate */
    int rated;
    zlistx_t *stops; /* s_stop_t */
} s_self_t;

/*  What the switchboard says about one system. */
typedef struct {
    bool found, docked;
    char session[40];
} s_sysinfo_t;

static void
s_info (s_self_t *self, const char *system, s_sysinfo_t *out)
{
    memset (out, 0, sizeof *out);
    chan_reply_t reply;
    int rc = act_ctl (self->conn, "list", NULL, &reply);
    if (rc == AAAX_ETIMEDOUT || rc == AAAX_EIO)
        return;
    const msgpack_object *systems = chan_obj_get (&reply.body, "systems");
    if (rc == 0 && systems && systems->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < systems->via.array.size; i++) {
            const msgpack_object *s = &systems->via.array.ptr[i];
            char id[AAAX_MAX_NAME + 1];
            if (act_get_str (s, "id", id, sizeof id) && streq (id, system)) {
                out->found = out->docked = true;
                act_get_str (s, "session", out->session, sizeof out->session);
                break;
            }
        }
    chan_reply_fini (&reply);
}

static int
s_signal (s_self_t *self, const char *system, const char *signal,
          const char *reason, const char *session)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 4);
    chan_pack_cstr (&pk, "signal");
    chan_pack_cstr (&pk, signal);
    chan_pack_cstr (&pk, "reason");
    chan_pack_cstr (&pk, reason);
    chan_pack_cstr (&pk, "session");
    if (session && *session)
        chan_pack_cstr (&pk, session);
    else
        msgpack_pack_nil (&pk);
    chan_pack_cstr (&pk, "ts");
    msgpack_pack_double (&pk, hal_clock_wall_s ());
    int rc = b.oom ? AAAX_ENOMEM
                   : act_send_now (self->conn, system, NULL, b.data, b.len);
    chan_buf_fini (&b);
    return rc;
}

/*  CTL op on system; 0, or the error with its reason in why. */
static int
s_ctl (s_self_t *self, const char *op, const char *system, char *why,
       size_t whylen)
{
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "system", system);
    chan_reply_t reply;
    int rc = act_ctl (self->conn, op, &b, &reply);
    chan_body_fini (&b);
    if (rc == AAAX_ETIMEDOUT || rc == AAAX_EIO) {
        snprintf (why, whylen, "the switchboard did not answer");
        return rc;
    }
    if (rc)
        chan_reply_reason (&reply, why, whylen);
    chan_reply_fini (&reply);
    return rc;
}

static void
s_audit (s_self_t *self, const char *op, const char *target, bool ok,
         const char *by, const char *detail, const char *corr)
{
    char action[40], reason[400];
    snprintf (action, sizeof action, "lifecycle.%s", op);
    snprintf (reason, sizeof reason, "by %s%s%s", by, detail ? ": " : "",
              detail ? detail : "");
    hal_audit_rec_t rec = { .kind = "lifecycle",
                            .subject = target,
                            .action = action,
                            .target = target,
                            .verdict = ok ? "ok" : "refused",
                            .reason = reason,
                            .corr = corr };
    uint64_t t = hal_audit_append (self->ctx->audit, &rec, NULL, 0);
    if (!t || hal_audit_wait (self->ctx->audit, t, 10000, NULL) != 0)
        zsys_error ("lifecycle: %s of %s could not be audited", op, target);
}

/*  ---- requests -------------------------------------------------------- */

/*  A request being answered. */
typedef struct {
    s_self_t *self;
    act_batch_t *batch;
} s_turn_t;

static void
s_answer (s_turn_t *t, act_req_t *req, bool ok, const char *reason)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 2);
    chan_pack_cstr (&pk, "ok");
    if (ok)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
    chan_pack_cstr (&pk, "reason");
    chan_pack_cstr (&pk, reason);
    if (!b.oom)
        act_batch_send (t->batch, req->from, req->id, b.data, b.len);
    chan_buf_fini (&b);
}

static void
s_list (s_turn_t *t, act_req_t *req)
{
    chan_reply_t reply;
    int rc = act_ctl (t->self->conn, "list", NULL, &reply);
    if (rc == AAAX_ETIMEDOUT || rc == AAAX_EIO) {
        s_answer (t, req, false, "the switchboard did not answer");
        return;
    }
    const msgpack_object *systems = chan_obj_get (&reply.body, "systems");
    const msgpack_object *insecure = chan_obj_get (&reply.body, "insecure");
    bool plain = rc == 0 && insecure && insecure->type == MSGPACK_OBJECT_BOOLEAN
                 && insecure->via.boolean;
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 4);
    chan_pack_cstr (&pk, "ok");
    msgpack_pack_true (&pk);
    chan_pack_cstr (&pk, "reason");
    chan_pack_cstr (&pk, "listed");
    /*  As CTL list: a kernel serving plain TCP to a network says so. */
    chan_pack_cstr (&pk, "insecure");
    if (plain)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
    chan_pack_cstr (&pk, "systems");
    if (rc == 0 && systems)
        msgpack_pack_object (&pk, *systems);
    else
        msgpack_pack_array (&pk, 0);
    chan_reply_fini (&reply);
    if (!b.oom)
        act_batch_send (t->batch, req->from, req->id, b.data, b.len);
    chan_buf_fini (&b);
}

static void
s_one (void *arg, act_batch_t *batch, act_req_t *req)
{
    s_turn_t turn = { (s_self_t *) arg, batch };
    s_turn_t *t = &turn;
    s_self_t *self = t->self;
    char op[16], target[AAAX_MAX_NAME + 1], rbuf[200], why[300];
    const char *o = act_get_str (req->data, "op", op, sizeof op);
    if (!o) {
        s_answer (t, req, false,
                  "\"op\" must be one of list, pause, resume, stop, kill, "
                  "start, restart");
        return;
    }
    if (streq (o, "list")) {
        s_list (t, req);
        return;
    }
    bool pause = streq (o, "pause"), resume = streq (o, "resume"),
         stop = streq (o, "stop"), kill = streq (o, "kill"),
         start = streq (o, "start") || streq (o, "restart");
    if (!pause && !resume && !stop && !kill && !start) {
        s_answer (t, req, false,
                  "\"op\" must be one of list, pause, resume, stop, kill, "
                  "start, restart");
        return;
    }
    if (!act_get_str (req->data, "target", target, sizeof target)
        || !target[0]) {
        s_answer (t, req, false, "\"target\" must be a system id");
        return;
    }
    const char *given = act_get_str (req->data, "reason", rbuf, sizeof rbuf);
    /*  Rate: every mutating command counts, refused ones included. */
    if (self->limiter
        && policy_rate_take (self->limiter, &self->rated, 1, req->from,
                             hal_clock_mono_ms ())
               != 0) {
        s_audit (self, o, target, false, req->from, "rate", req->id);
        s_answer (t, req, false, "rate");
        return;
    }
    if (start) {
        /*  Apps are the loader's: it answers the caller itself. */
        chan_buf_t b;
        chan_buf_init (&b);
        msgpack_packer pk;
        chan_buf_packer (&b, &pk);
        msgpack_pack_map (&pk, 4);
        chan_pack_cstr (&pk, "op");
        chan_pack_cstr (&pk, o);
        chan_pack_cstr (&pk, "name");
        chan_pack_cstr (&pk, target);
        chan_pack_cstr (&pk, "reply_to");
        chan_pack_cstr (&pk, req->from);
        chan_pack_cstr (&pk, "reply_corr");
        chan_pack_cstr (&pk, req->id);
        int rc = b.oom ? AAAX_ENOMEM
                       : act_write (self->conn, "kernel.loader", b.data, b.len);
        chan_buf_fini (&b);
        s_audit (self, o, target, rc == 0, req->from,
                 rc == 0 ? "handed to kernel.loader" : aaax_strerror (rc),
                 req->id);
        if (rc != 0)
            s_answer (t, req, false, "the loader could not be reached");
        return;
    }
    if (strncmp (target, "kernel.", 7) == 0 || streq (target, req->from)) {
        s_audit (self, o, target, false, req->from,
                 "not on kernel actors or the caller", req->id);
        s_answer (t, req, false,
                  "lifecycle commands do not act on kernel actors or on the "
                  "caller itself");
        return;
    }
    char reason[300];
    snprintf (reason, sizeof reason, "%s by %s%s%s", o, req->from,
              given ? ": " : "", given ? given : "");
    s_sysinfo_t info;
    s_info (self, target, &info);
    int rc = 0;
    why[0] = 0;
    if (pause) {
        /*  STOP first: once paused, nothing is delivered. */
        if (info.docked)
            s_signal (self, target, "STOP", reason, info.session);
        rc = s_ctl (self, "pause", target, why, sizeof why);
    } else if (resume) {
        rc = s_ctl (self, "resume", target, why, sizeof why);
        if (rc == 0 && info.docked)
            s_signal (self, target, "CONT", reason, info.session);
    } else if (stop) {
        if (!info.docked) {
            rc = AAAX_ENOENT;
            snprintf (why, sizeof why, "\"%s\" is not docked", target);
        } else {
            rc = s_signal (self, target, "TERM", reason, info.session);
            if (rc)
                snprintf (why, sizeof why,
                          "the TERM signal could not be "
                          "sent");
            else if (zlistx_size (self->stops) < S_MAX_STOPS) {
                s_stop_t *st = (s_stop_t *) calloc (1, sizeof *st);
                uint64_t grace = self->ctx->stop_grace_ms;
                const msgpack_object *g = chan_obj_get (req->data, "grace_ms");
                if (g && g->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                    && g->via.u64 <= 600000)
                    grace = g->via.u64;
                if (st) {
                    snprintf (st->system, sizeof st->system, "%s", target);
                    snprintf (st->session, sizeof st->session, "%s",
                              info.session);
                    snprintf (st->by, sizeof st->by, "%s", req->from);
                    st->deadline = hal_clock_mono_ms () + (int64_t) grace;
                    zlistx_add_end (self->stops, st);
                }
            }
        }
    } else {
        if (info.docked)
            s_signal (self, target, "KILL", reason, info.session);
        rc = s_ctl (self, "kill", target, why, sizeof why);
    }
    s_audit (self, o, target, rc == 0, req->from, rc == 0 ? given : why,
             req->id);
    if (rc == 0) {
        char done[200];
        snprintf (done, sizeof done, "%s %s", target,
                  pause    ? "paused"
                  : resume ? "resumed"
                  : stop   ? "asked to stop (TERM sent)"
                           : "killed");
        zsys_info ("lifecycle: %s by %s", done, req->from);
        s_answer (t, req, true, done);
    } else
        s_answer (t, req, false, why);
}

static void
s_batch (void *arg, const char *queue, const chan_reply_t *claim)
{
    act_batch_each (((s_self_t *) arg)->conn, queue, claim, s_one, arg);
}

static int64_t
s_tick (void *arg, int64_t now)
{
    s_self_t *self = (s_self_t *) arg;
    int64_t next = INT64_MAX;
    s_stop_t *st = (s_stop_t *) zlistx_first (self->stops);
    while (st) {
        if (st->deadline > now) {
            if (st->deadline < next)
                next = st->deadline;
            st = (s_stop_t *) zlistx_next (self->stops);
            continue;
        }
        s_sysinfo_t info;
        s_info (self, st->system, &info);
        if (info.docked && streq (info.session, st->session)) {
            char why[200];
            if (s_ctl (self, "kill", st->system, why, sizeof why) == 0) {
                zsys_info ("lifecycle: %s killed: grace period over",
                           st->system);
                s_audit (self, "kill", st->system, true, st->by,
                         "stop: the grace period ended", NULL);
            }
        }
        zlistx_delete (self->stops, zlistx_cursor (self->stops));
        st = (s_stop_t *) zlistx_first (self->stops);
    }
    return next;
}

static void
s_free_stop (void **item)
{
    free (*item);
    *item = NULL;
}

void
act_lifecycle (zsock_t *pipe, void *args)
{
    const act_ctx_t *ctx = (const act_ctx_t *) args;
    s_self_t self;
    memset (&self, 0, sizeof self);
    self.ctx = ctx;
    self.conn = act_conn_new (ctx, S_SYSTEM);
    self.stops = zlistx_new ();
    self.limiter = policy_new ();
    zsock_signal (pipe, 0);
    if (self.limiter) {
        policy_rule_spec_t spec = { "*",
                                    "lifecycle",
                                    "*",
                                    "allow",
                                    ctx->lifecycle_rate,
                                    "lifecycle_rate",
                                    "config: lifecycle_rate" };
        char err[200];
        if (policy_add (self.limiter, &spec, err, sizeof err) != 0) {
            zsys_error ("lifecycle: %s", err);
            policy_destroy (&self.limiter);
        }
    }
    if (!self.conn || !self.stops || !self.limiter) {
        zsys_error ("lifecycle: cannot start");
        act_wait_term (pipe);
    } else {
        zlistx_set_destructor (self.stops, s_free_stop);
        const char *queues[] = { S_QUEUE };
        act_ops_t ops = { s_batch, NULL, s_tick, NULL, NULL };
        act_serve (pipe, self.conn, queues, 1, NULL, 0, &ops, &self);
    }
    zlistx_destroy (&self.stops);
    policy_destroy (&self.limiter);
    act_conn_destroy (&self.conn);
}
