/*  act_gate.c — the action gate: serves kernel.gate ({action, target,
    args} -> allow | deny | ask) and kernel.approvals (approve, deny, list,
    revoke; privileged systems only, by the switchboard's grants).

    Every decision is written to the audit log before it is answered: the
    claimed batch is decided, its records appended together (one commit),
    and each answer carries its record's audit_id. A decision whose record
    cannot be written is answered `deny` (fail closed). An `ask` waits for
    an operator: when one approves, the requester gets a second message
    with the same corr and decision "allow"; when one denies, or nobody
    answers within ask_timeout_s, "deny". */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "act_gate_core.h"
#include "act_kernel.h"
#include "chan_mpk.h"
#include "hal_cap.h"
#include "hal_clock.h"

#define S_SYSTEM "kernel.gate"
#define S_QUEUE "kernel.gate"
#define S_APPROVALS "kernel.approvals"
#define S_MAX_TARGET 1024
#define S_MAX_ARGS 16384
#define S_MAX_PENDING 10000

/*  An `ask` waiting for an operator. */
typedef struct {
    char audit_id[24];
    char subject[AAAX_MAX_NAME + 1];
    char corr[40];
    char *action, *target;
    char rule[128];
    int64_t deadline; /* monotonic ms */
    double ts;
} s_pending_t;

typedef struct {
    const act_ctx_t *ctx;
    act_conn_t *conn;
    gate_core_t *core;
    uint64_t policy_version;
    zhashx_t *pending; /* audit id -> s_pending_t */
    int64_t next_sweep;
} s_self_t;

static void
s_pending_free (void **item)
{
    s_pending_t *p = (s_pending_t *) *item;
    if (p) {
        free (p->action);
        free (p->target);
        free (p);
    }
    *item = NULL;
}

static void
s_policy_refresh (s_self_t *self)
{
    policy_t *p = act_policy_take (self->ctx->policy, &self->policy_version);
    if (p)
        gate_core_set_policy (self->core, p);
}

/*  ---- packing helpers --------------------------------------------------- */

static void
s_pack_bool (msgpack_packer *pk, bool v)
{
    if (v)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
}

static void
s_pack_opt (msgpack_packer *pk, const char *s)
{
    if (s)
        chan_pack_cstr (pk, s);
    else
        msgpack_pack_nil (pk);
}

/*  ---- kernel.gate ----------------------------------------------------- */

typedef struct {
    act_req_t req; /* copied: ids and from live in the buffers */
    char action[AAAX_MAX_NAME + 1];
    char target[S_MAX_TARGET + 1];
    bool valid;
    gate_verdict_t v;
    uint64_t ticket;
    uint64_t seq;
    int rc;
} s_item_t;

typedef struct {
    s_self_t *self;
    s_item_t *items;
    size_t n, cap;
    act_batch_t batch;
} s_turn_t;

static void
s_collect (void *arg, act_req_t *req)
{
    s_turn_t *t = (s_turn_t *) arg;
    if (t->n == t->cap)
        return;
    s_item_t *it = &t->items[t->n++];
    memset (it, 0, sizeof *it);
    memcpy (it->req.idbuf, req->id, strlen (req->id) + 1);
    memcpy (it->req.frombuf, req->from, strlen (req->from) + 1);
    it->req.id = it->req.idbuf;
    it->req.from = it->req.frombuf;
    it->req.data = req->data;
    const msgpack_object *d = req->data;
    const msgpack_object *args = d ? chan_obj_get (d, "args") : NULL;
    if (!act_get_str (d, "action", it->action, sizeof it->action)
        || !it->action[0]) {
        snprintf (it->v.reason, sizeof it->v.reason,
                  "\"action\" must be a string of 1 to 128 bytes");
    } else if (!act_get_str (d, "target", it->target, sizeof it->target)) {
        snprintf (it->v.reason, sizeof it->v.reason,
                  "\"target\" must be a string of at most 1024 bytes");
    } else if (args && args->type != MSGPACK_OBJECT_MAP
               && args->type != MSGPACK_OBJECT_NIL) {
        snprintf (it->v.reason, sizeof it->v.reason, "\"args\" must be a map");
    } else
        it->valid = true;
}

static void
s_reply (s_turn_t *t, s_item_t *it)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 4);
    chan_pack_cstr (&pk, "decision");
    chan_pack_cstr (&pk, policy_effect_str (it->v.decision));
    chan_pack_cstr (&pk, "reason");
    chan_pack_cstr (&pk, it->v.reason);
    chan_pack_cstr (&pk, "rule");
    s_pack_opt (&pk, it->v.rule);
    chan_pack_cstr (&pk, "audit_id");
    char aid[24];
    snprintf (aid, sizeof aid, "%llu", (unsigned long long) it->seq);
    s_pack_opt (&pk, it->rc == 0 && it->seq ? aid : NULL);
    if (!b.oom)
        act_batch_send (&t->batch, it->req.from, it->req.id, b.data, b.len);
    chan_buf_fini (&b);
}

static void
s_gate_batch (s_self_t *self, const char *queue, const chan_reply_t *claim)
{
    s_item_t items[64];
    s_turn_t t = { self, items, 0, 64, { 0 } };
    act_batch_init (&t.batch, self->conn, queue);
    act_claimed_each (claim, s_collect, &t);
    s_policy_refresh (self);
    int64_t now = hal_clock_mono_ms ();
    uint64_t wall = (uint64_t) hal_clock_wall_s ();
    chan_buf_t args;
    chan_buf_init (&args);
    /*  Decide everything, append every record: one commit for the batch. */
    for (size_t i = 0; i < t.n; i++) {
        s_item_t *it = &items[i];
        if (it->valid)
            gate_core_decide (self->core, it->req.from, it->action, it->target,
                              now, wall, &it->v);
        else
            it->v.decision = POLICY_DENY;
        chan_buf_reset (&args);
        const msgpack_object *a =
            it->req.data ? chan_obj_get (it->req.data, "args") : NULL;
        if (a && a->type == MSGPACK_OBJECT_MAP) {
            msgpack_packer apk;
            chan_buf_packer (&args, &apk);
            msgpack_pack_object (&apk, *a);
            if (args.len > S_MAX_ARGS) {
                /*  Too big to keep: the record holds its digest. */
                uint8_t h[32];
                crypto_generichash (h, sizeof h, args.data, args.len, NULL, 0);
                char hex[65];
                sodium_bin2hex (hex, sizeof hex, h, sizeof h);
                chan_buf_reset (&args);
                chan_buf_packer (&args, &apk);
                msgpack_pack_map (&apk, 1);
                chan_pack_cstr (&apk, "blake2b");
                chan_pack_cstr (&apk, hex);
            }
        }
        hal_audit_rec_t rec = { .kind = "gate",
                                .subject = it->req.from,
                                .action = it->valid ? it->action : NULL,
                                .target = it->valid ? it->target : NULL,
                                .verdict = policy_effect_str (it->v.decision),
                                .rule = it->v.rule,
                                .reason = it->v.reason,
                                .args =
                                    args.len && !args.oom ? args.data : NULL,
                                .argslen = args.oom ? 0 : args.len,
                                .corr = it->req.id };
        it->ticket = hal_audit_append (self->ctx->audit, &rec, NULL, 0);
    }
    chan_buf_fini (&args);
    for (size_t i = 0; i < t.n; i++) {
        s_item_t *it = &items[i];
        it->rc = it->ticket ? hal_audit_wait (self->ctx->audit, it->ticket,
                                              10000, &it->seq)
                            : AAAX_ENOMEM;
        if (it->rc != 0) {
            /*  Not in the audit log: not allowed. */
            it->v.decision = POLICY_DENY;
            snprintf (it->v.reason, sizeof it->v.reason,
                      "the audit log could not be written (%s); the gate "
                      "fails closed",
                      aaax_strerror (it->rc));
        }
        if (it->rc == 0 && it->v.decision == POLICY_ASK) {
            s_pending_t *p = NULL;
            if (zhashx_size (self->pending) < S_MAX_PENDING)
                p = (s_pending_t *) calloc (1, sizeof *p);
            if (p) {
                snprintf (p->audit_id, sizeof p->audit_id, "%llu",
                          (unsigned long long) it->seq);
                snprintf (p->subject, sizeof p->subject, "%s", it->req.from);
                snprintf (p->corr, sizeof p->corr, "%s", it->req.id);
                snprintf (p->rule, sizeof p->rule, "%s",
                          it->v.rule ? it->v.rule : "");
                p->action = strdup (it->action);
                p->target = strdup (it->target);
                p->deadline = now + (int64_t) self->ctx->ask_timeout_s * 1000;
                p->ts = hal_clock_wall_s ();
            }
            if (!p || !p->action || !p->target
                || zhashx_insert (self->pending, p->audit_id, p) != 0) {
                void *q = p;
                s_pending_free (&q);
                it->v.decision = POLICY_DENY;
                snprintf (it->v.reason, sizeof it->v.reason,
                          "too many approvals pending");
            }
        }
        s_reply (&t, it);
        act_batch_ack (&t.batch, it->req.id);
    }
    act_batch_finish (&t.batch);
}

/*  ---- follow-ups ----------------------------------------------------- */

static void
s_follow_up (s_self_t *self, s_pending_t *p, bool allow, const char *reason,
             const char *approval_id, const char *scope)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 6);
    chan_pack_cstr (&pk, "decision");
    chan_pack_cstr (&pk, allow ? "allow" : "deny");
    chan_pack_cstr (&pk, "reason");
    chan_pack_cstr (&pk, reason);
    chan_pack_cstr (&pk, "rule");
    s_pack_opt (&pk, p->rule[0] ? p->rule : NULL);
    chan_pack_cstr (&pk, "audit_id");
    chan_pack_cstr (&pk, p->audit_id);
    chan_pack_cstr (&pk, "approval_id");
    s_pack_opt (&pk, approval_id);
    chan_pack_cstr (&pk, "scope");
    s_pack_opt (&pk, scope);
    if (!b.oom
        && act_send_now (self->conn, p->subject, p->corr, b.data, b.len) != 0)
        zsys_warning ("gate: the answer to ask %s could not be sent to %s",
                      p->audit_id, p->subject);
    chan_buf_fini (&b);
}

/*  ---- kernel.approvals ----------------------------------------------- */

static void
s_answer (s_self_t *self, act_batch_t *batch, act_req_t *req, bool ok,
          const char *reason, const char *key, const char *value)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, key ? 3 : 2);
    chan_pack_cstr (&pk, "ok");
    s_pack_bool (&pk, ok);
    chan_pack_cstr (&pk, "reason");
    chan_pack_cstr (&pk, reason);
    if (key) {
        chan_pack_cstr (&pk, key);
        s_pack_opt (&pk, value);
    }
    if (!b.oom)
        act_batch_send (batch, req->from, req->id, b.data, b.len);
    chan_buf_fini (&b);
    (void) self;
}

/*  Writes an approval's record (and, for `always`, its standing entry);
    0 and the record's seq. */
static int
s_record (s_self_t *self, const char *subject, const char *action,
          const char *target, const char *verdict, const char *reason,
          const char *corr, const hal_audit_put_t *put, uint64_t *seq)
{
    hal_audit_rec_t rec = { .kind = "approval",
                            .subject = subject,
                            .action = action,
                            .target = target,
                            .verdict = verdict,
                            .reason = reason,
                            .corr = corr };
    uint64_t tk = hal_audit_append (self->ctx->audit, &rec, put, put ? 1 : 0);
    if (!tk)
        return AAAX_ENOMEM;
    return hal_audit_wait (self->ctx->audit, tk, 10000, seq);
}

static void
s_approve (s_self_t *self, act_batch_t *batch, act_req_t *req, bool allow)
{
    char aid[24], scope[16] = "once", why[200];
    if (!act_get_str (req->data, "audit_id", aid, sizeof aid)) {
        s_answer (self, batch, req, false,
                  "\"audit_id\" must be the audit id of an ask", NULL, NULL);
        return;
    }
    if (allow) {
        const msgpack_object *so = chan_obj_get (req->data, "scope");
        if (so && so->type != MSGPACK_OBJECT_NIL
            && (!act_get_str (req->data, "scope", scope, sizeof scope)
                || (!streq (scope, "once") && !streq (scope, "session")
                    && !streq (scope, "always")))) {
            s_answer (self, batch, req, false,
                      "\"scope\" must be \"once\", \"session\" or "
                      "\"always\"",
                      NULL, NULL);
            return;
        }
    }
    s_pending_t *p = (s_pending_t *) zhashx_lookup (self->pending, aid);
    if (!p) {
        s_answer (self, batch, req, false,
                  "no pending ask with this audit id (answered already, "
                  "timed out, or never asked)",
                  NULL, NULL);
        return;
    }
    char reason[300];
    const char *given = NULL;
    char gbuf[160];
    if (!allow)
        given = act_get_str (req->data, "reason", gbuf, sizeof gbuf);
    if (allow)
        snprintf (reason, sizeof reason, "approved by %s, scope %s, for ask %s",
                  req->from, scope, aid);
    else
        snprintf (reason, sizeof reason, "denied by %s for ask %s%s%s",
                  req->from, aid, given ? ": " : "", given ? given : "");
    char apid[40] = "";
    chan_buf_t val;
    chan_buf_init (&val);
    hal_audit_put_t put;
    bool always = allow && streq (scope, "always");
    if (allow && !streq (scope, "once")) {
        uint8_t raw[12];
        randombytes_buf (raw, sizeof raw);
        memcpy (apid, "apr_", 4);
        sodium_bin2hex (apid + 4, sizeof apid - 4, raw, sizeof raw);
    }
    if (always) {
        msgpack_packer pk;
        chan_buf_packer (&val, &pk);
        msgpack_pack_map (&pk, 7);
        chan_pack_cstr (&pk, "id");
        chan_pack_cstr (&pk, apid);
        chan_pack_cstr (&pk, "subject");
        chan_pack_cstr (&pk, p->subject);
        chan_pack_cstr (&pk, "action");
        chan_pack_cstr (&pk, p->action);
        chan_pack_cstr (&pk, "target");
        chan_pack_cstr (&pk, p->target);
        chan_pack_cstr (&pk, "scope");
        chan_pack_cstr (&pk, "always");
        chan_pack_cstr (&pk, "by");
        chan_pack_cstr (&pk, req->from);
        chan_pack_cstr (&pk, "ts");
        msgpack_pack_double (&pk, hal_clock_wall_s ());
        put = (hal_audit_put_t){ HAL_AUDIT_DB_APPROVALS, apid, strlen (apid),
                                 val.data, val.len };
    }
    uint64_t seq = 0;
    int rc = val.oom ? AAAX_ENOMEM
                     : s_record (self, p->subject, p->action, p->target,
                                 allow ? "allow" : "deny", reason, p->corr,
                                 always ? &put : NULL, &seq);
    chan_buf_fini (&val);
    if (rc != 0) {
        snprintf (why, sizeof why,
                  "the audit log could not be written (%s); nothing changed",
                  aaax_strerror (rc));
        s_answer (self, batch, req, false, why, NULL, NULL);
        return;
    }
    if (allow && !streq (scope, "once"))
        gate_core_approve (self->core, apid, p->subject, p->action, p->target,
                           streq (scope, "session"));
    char seqs[24];
    snprintf (seqs, sizeof seqs, "%llu", (unsigned long long) seq);
    s_follow_up (self, p, allow,
                 allow ? "approved" : (given ? given : "denied by an operator"),
                 apid[0] ? apid : seqs, allow ? scope : NULL);
    zsys_info ("gate: ask %s %s by %s", aid, allow ? "approved" : "denied",
               req->from);
    zhashx_delete (self->pending, aid);
    s_answer (self, batch, req, true, allow ? "approved" : "denied",
              "approval_id", apid[0] ? apid : seqs);
}

typedef struct {
    msgpack_packer *pk;
} s_list_t;

static void
s_pack_approval (void *arg, const char *id, const char *subject,
                 const char *action, const char *target, bool session,
                 double ts)
{
    msgpack_packer *pk = ((s_list_t *) arg)->pk;
    msgpack_pack_map (pk, 6);
    chan_pack_cstr (pk, "ts");
    msgpack_pack_double (pk, ts);
    chan_pack_cstr (pk, "id");
    chan_pack_cstr (pk, id);
    chan_pack_cstr (pk, "subject");
    chan_pack_cstr (pk, subject);
    chan_pack_cstr (pk, "action");
    chan_pack_cstr (pk, action);
    chan_pack_cstr (pk, "target");
    chan_pack_cstr (pk, target);
    chan_pack_cstr (pk, "scope");
    chan_pack_cstr (pk, session ? "session" : "always");
}

static void
s_count_approval (void *arg, const char *id, const char *subject,
                  const char *action, const char *target, bool session,
                  double ts)
{
    (*(uint32_t *) arg)++;
}

static void
s_list (s_self_t *self, act_batch_t *batch, act_req_t *req)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 3);
    chan_pack_cstr (&pk, "ok");
    msgpack_pack_true (&pk);
    chan_pack_cstr (&pk, "pending");
    msgpack_pack_array (&pk, (uint32_t) zhashx_size (self->pending));
    for (s_pending_t *p = (s_pending_t *) zhashx_first (self->pending); p;
         p = (s_pending_t *) zhashx_next (self->pending)) {
        msgpack_pack_map (&pk, 6);
        chan_pack_cstr (&pk, "audit_id");
        chan_pack_cstr (&pk, p->audit_id);
        chan_pack_cstr (&pk, "subject");
        chan_pack_cstr (&pk, p->subject);
        chan_pack_cstr (&pk, "action");
        chan_pack_cstr (&pk, p->action);
        chan_pack_cstr (&pk, "target");
        chan_pack_cstr (&pk, p->target);
        chan_pack_cstr (&pk, "rule");
        s_pack_opt (&pk, p->rule[0] ? p->rule : NULL);
        chan_pack_cstr (&pk, "ts");
        msgpack_pack_double (&pk, p->ts);
    }
    uint32_t n = 0;
    gate_core_approvals (self->core, s_count_approval, &n);
    chan_pack_cstr (&pk, "approvals");
    msgpack_pack_array (&pk, n);
    s_list_t l = { &pk };
    gate_core_approvals (self->core, s_pack_approval, &l);
    if (!b.oom)
        act_batch_send (batch, req->from, req->id, b.data, b.len);
    chan_buf_fini (&b);
}

static void
s_unapprove (s_self_t *self, act_batch_t *batch, act_req_t *req)
{
    char id[40];
    if (!act_get_str (req->data, "id", id, sizeof id)) {
        s_answer (self, batch, req, false,
                  "\"id\" must be the id of a standing approval", NULL, NULL);
        return;
    }
    if (!gate_core_has_approval (self->core, id)) {
        s_answer (self, batch, req, false, "no standing approval with this id",
                  NULL, NULL);
        return;
    }
    hal_audit_put_t put = { HAL_AUDIT_DB_APPROVALS, id, strlen (id), NULL, 0 };
    char reason[200];
    snprintf (reason, sizeof reason, "approval %s revoked by %s", id,
              req->from);
    /*  Out of the journal first: a revocation that is not written does
        not happen (or the approval would come back at the next boot). */
    int rc = s_record (self, req->from, "approval.revoke", id, "revoked",
                       reason, req->id, &put, NULL);
    if (rc != 0) {
        s_answer (self, batch, req, false,
                  "the audit log could not be written; the approval stays",
                  NULL, NULL);
        return;
    }
    gate_core_unapprove (self->core, id);
    s_answer (self, batch, req, true, "revoked", NULL, NULL);
}

static void
s_approvals_one (void *arg, act_batch_t *batch, act_req_t *req)
{
    s_self_t *self = (s_self_t *) arg;
    char op[16];
    const char *o = act_get_str (req->data, "op", op, sizeof op);
    if (o && streq (o, "approve"))
        s_approve (self, batch, req, true);
    else if (o && streq (o, "deny"))
        s_approve (self, batch, req, false);
    else if (o && streq (o, "list"))
        s_list (self, batch, req);
    else if (o && streq (o, "revoke"))
        s_unapprove (self, batch, req);
    else
        s_answer (self, batch, req, false,
                  "\"op\" must be \"approve\", \"deny\", \"list\" or "
                  "\"revoke\"",
                  NULL, NULL);
}

static void
s_batch (void *arg, const char *queue, const chan_reply_t *claim)
{
    s_self_t *self = (s_self_t *) arg;
    if (streq (queue, S_QUEUE)) {
        s_gate_batch (self, queue, claim);
        return;
    }
    act_batch_each (self->conn, queue, claim, s_approvals_one, self);
}

/*  ---- events and state ------------------------------------------------ */

/*  Keeps an action capability (a map as hal_cap_pack makes) for the
    decision; anything else is ignored. */
static void
s_action_cap (s_self_t *self, const msgpack_object *obj)
{
    hal_cap_t cap;
    char why[128], id[64], subject[AAAX_MAX_NAME + 1],
        pattern[AAAX_MAX_NAME + 1];
    if (!obj || hal_cap_from_obj (obj, &cap, why, sizeof why) != 0
        || cap.idlen >= sizeof id || cap.subjectlen >= sizeof subject
        || cap.resourcelen <= 7 || cap.resourcelen - 7 >= sizeof pattern
        || memcmp (cap.resource, "action:", 7) != 0)
        return;
    memcpy (id, cap.id, cap.idlen);
    id[cap.idlen] = 0;
    memcpy (subject, cap.subject, cap.subjectlen);
    subject[cap.subjectlen] = 0;
    memcpy (pattern, cap.resource + 7, cap.resourcelen - 7);
    pattern[cap.resourcelen - 7] = 0;
    gate_core_cap_add (self->core, id, subject, pattern, cap.expires);
}

/*  A kernel.capabilities event: a grant adds, anything else ends. */
static void
s_cap_event (s_self_t *self, const msgpack_object *data)
{
    char event[16], id[64];
    if (!act_get_str (data, "event", event, sizeof event)
        || !act_get_str (data, "id", id, sizeof id))
        return;
    if (streq (event, "grant"))
        s_action_cap (self, chan_obj_get (data, "cap"));
    else
        gate_core_cap_del (self->core, id);
}

static void
s_push (void *arg, const chan_reply_t *msg)
{
    s_self_t *self = (s_self_t *) arg;
    char sub[64];
    if (!act_get_str (&msg->body, "sub", sub, sizeof sub))
        return;
    const msgpack_object *env = chan_obj_get (&msg->body, "msg");
    const msgpack_object *data = env ? chan_obj_get (env, "data") : NULL;
    if (streq (sub, "kernel.capabilities")) {
        s_cap_event (self, data);
        return;
    }
    if (!streq (sub, "kernel.systems"))
        return;
    char event[16], system[AAAX_MAX_NAME + 1];
    if (act_get_str (data, "event", event, sizeof event)
        && act_get_str (data, "system", system, sizeof system)
        && streq (event, "undock")) {
        size_t n = gate_core_end_session (self->core, system);
        if (n)
            zsys_info ("gate: %zu session approvals of %s ended", n, system);
    }
}

static int
s_load_cap (void *arg, const void *key, size_t klen, const void *val,
            size_t vlen)
{
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    if (msgpack_unpack_next (&u, (const char *) val, vlen, NULL)
        == MSGPACK_UNPACK_SUCCESS)
        s_action_cap ((s_self_t *) arg, &u.data);
    msgpack_unpacked_destroy (&u);
    (void) key;
    (void) klen;
    return 0;
}

static int
s_load_approval (void *arg, const void *key, size_t klen, const void *val,
                 size_t vlen)
{
    s_self_t *self = (s_self_t *) arg;
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    if (msgpack_unpack_next (&u, (const char *) val, vlen, NULL)
        == MSGPACK_UNPACK_SUCCESS) {
        char id[40], subject[AAAX_MAX_NAME + 1], action[AAAX_MAX_NAME + 1],
            target[S_MAX_TARGET + 1];
        if (act_get_str (&u.data, "id", id, sizeof id)
            && act_get_str (&u.data, "subject", subject, sizeof subject)
            && act_get_str (&u.data, "action", action, sizeof action)
            && act_get_str (&u.data, "target", target, sizeof target)
            && gate_core_approve (self->core, id, subject, action, target,
                                  false)
                   == 0) {
            const msgpack_object *ts = chan_obj_get (&u.data, "ts");
            if (ts && ts->type == MSGPACK_OBJECT_FLOAT64)
                gate_core_approval_set_ts (self->core, id, ts->via.f64);
        }
    }
    msgpack_unpacked_destroy (&u);
    (void) key;
    (void) klen;
    return 0;
}

static void
s_docked (void *arg)
{
    s_self_t *self = (s_self_t *) arg;
    /*  Subscribed first, then read: a change in between comes again as an
        event, and applying it twice is harmless. */
    hal_audit_scan_db (self->ctx->audit, HAL_AUDIT_DB_CAPS, s_load_cap, self);
    hal_audit_scan_db (self->ctx->audit, HAL_AUDIT_DB_APPROVALS,
                       s_load_approval, self);
}

static int64_t
s_tick (void *arg, int64_t now)
{
    s_self_t *self = (s_self_t *) arg;
    if (now < self->next_sweep)
        return self->next_sweep;
    self->next_sweep = now + 250;
    zlistx_t *gone = NULL;
    for (s_pending_t *p = (s_pending_t *) zhashx_first (self->pending); p;
         p = (s_pending_t *) zhashx_next (self->pending))
        if (p->deadline <= now) {
            if (!gone)
                gone = zlistx_new ();
            if (gone)
                zlistx_add_end (gone, p->audit_id);
        }
    for (char *aid = gone ? (char *) zlistx_first (gone) : NULL; aid;
         aid = (char *) zlistx_next (gone)) {
        s_pending_t *p = (s_pending_t *) zhashx_lookup (self->pending, aid);
        if (!p)
            continue;
        char reason[80];
        snprintf (reason, sizeof reason, "ask %s timed out", p->audit_id);
        s_record (self, p->subject, p->action, p->target, "deny", reason,
                  p->corr, NULL, NULL);
        s_follow_up (self, p, false, "approval timed out", NULL, NULL);
        zhashx_delete (self->pending, p->audit_id);
    }
    zlistx_destroy (&gone);
    return self->next_sweep;
}

void
act_gate (zsock_t *pipe, void *args)
{
    const act_ctx_t *ctx = (const act_ctx_t *) args;
    s_self_t self;
    memset (&self, 0, sizeof self);
    self.ctx = ctx;
    self.conn = act_conn_new (ctx, S_SYSTEM);
    self.core = gate_core_new ();
    self.pending = zhashx_new ();
    zsock_signal (pipe, 0);
    if (!self.conn || !self.core || !self.pending) {
        zsys_error ("gate: cannot start");
        act_wait_term (pipe);
    } else {
        zhashx_set_destructor (self.pending, s_pending_free);
        s_policy_refresh (&self);
        const char *queues[] = { S_QUEUE, S_APPROVALS };
        const char *subs[] = { "kernel.systems", "kernel.capabilities" };
        act_ops_t ops = { s_batch, s_push, s_tick, s_docked, NULL };
        act_serve (pipe, self.conn, queues, 2, subs, 2, &ops, &self);
    }
    zhashx_destroy (&self.pending);
    gate_core_destroy (&self.core);
    act_conn_destroy (&self.conn);
}
