/*  act_capability.c — the capability actor: serves
    kernel.capability_requests (grant, revoke, list, verify).

    A grant is decided by the policy for the requesting system (the
    envelope's `from`, set by the kernel from the session), signed with the
    kernel's ed25519 key, installed in the switchboard's grant table (CTL
    grant, for channel capabilities), written to the journal in the same
    transaction as its audit record, then broadcast on kernel.capabilities
    and answered. Capabilities end at expiry, on revoke, and when their
    system undocks (kernel.systems says so). */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "act_kernel.h"
#include "chan_mpk.h"
#include "hal_cap.h"
#include "hal_clock.h"

#define S_SYSTEM "kernel.capability"
#define S_QUEUE "kernel.capability_requests"
#define S_REGISTRY "kernel.capabilities"
#define S_MAX_TTL_S (30u * 86400u)
#define S_DEFAULT_TTL_S 3600u
#define S_MAX_CAPS_PER_SYSTEM 1024

/*  A live capability: its packed map (as signed) and what indexes it. */
typedef struct {
    char id[40];
    char subject[AAAX_MAX_NAME + 1];
    char resource[AAAX_MAX_NAME + 16];
    uint64_t expires; /* Unix seconds */
    uint8_t *packed;  /* the section 7 map */
    size_t plen;
} s_cap_t;

typedef struct {
    const act_ctx_t *ctx;
    act_conn_t *conn;
    policy_t *policy;
    uint64_t policy_version;
    zhashx_t *caps;       /* id -> s_cap_t */
    zhashx_t *privileged; /* docked privileged system ids -> "1" */
    int64_t next_sweep;
} s_self_t;

static void
s_cap_free (void **item)
{
    s_cap_t *c = (s_cap_t *) *item;
    if (c) {
        free (c->packed);
        free (c);
    }
    *item = NULL;
}

static void
s_policy_refresh (s_self_t *self)
{
    policy_t *p = act_policy_take (self->ctx->policy, &self->policy_version);
    if (p) {
        policy_destroy (&self->policy);
        self->policy = p;
    }
}

/*  ---- journal and registry ------------------------------------------- */

/*  Appends an audit record (with the cap's side-table change when put is
    not NULL) and waits for it: 0 and the audit id, or AAAX_EIO. */
static int
s_audit (s_self_t *self, const hal_audit_rec_t *rec, const hal_audit_put_t *put,
         uint64_t *seq)
{
    uint64_t t = hal_audit_append (self->ctx->audit, rec, put, put ? 1 : 0);
    if (!t)
        return AAAX_ENOMEM;
    return hal_audit_wait (self->ctx->audit, t, 10000, seq);
}

static void
s_publish (s_self_t *self, const char *event, const s_cap_t *c,
           const char *reason)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, reason ? 4 : 3);
    chan_pack_cstr (&pk, "event");
    chan_pack_cstr (&pk, event);
    chan_pack_cstr (&pk, "id");
    chan_pack_cstr (&pk, c->id);
    chan_pack_cstr (&pk, "cap");
    chan_buf_append (&b, c->packed, c->plen);
    if (reason) {
        chan_pack_cstr (&pk, "reason");
        chan_pack_cstr (&pk, reason);
    }
    if (!b.oom)
        act_write (self->conn, S_REGISTRY, b.data, b.len);
    chan_buf_fini (&b);
}

/*  Takes a capability out of the switchboard's table (CTL revoke). */
static void
s_uninstall (s_self_t *self, const char *id)
{
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "cap", id);
    chan_reply_t reply;
    int rc = act_ctl (self->conn, "revoke", &b, &reply);
    chan_body_fini (&b);
    if (rc != AAAX_ETIMEDOUT && rc != AAAX_EIO)
        chan_reply_fini (&reply);
}

/*  Ends c: out of the switchboard's table when uninstall is true (an
    explicit revoke; at undock and expiry the switchboard has dropped it
    itself), out of the journal with an audit record of kind "revoke",
    announced on the registry. c is freed. */
static void
s_end (s_self_t *self, s_cap_t *c, const char *reason, const char *corr,
       bool uninstall)
{
    if (uninstall && strncmp (c->resource, "chan:", 5) == 0)
        s_uninstall (self, c->id);
    hal_audit_rec_t rec = { .kind = "revoke",
                            .subject = c->subject,
                            .action = "cap.revoke",
                            .target = c->resource,
                            .verdict = "revoked",
                            .reason = reason,
                            .corr = corr };
    hal_audit_put_t put = { HAL_AUDIT_DB_CAPS, c->id, strlen (c->id), NULL, 0 };
    if (s_audit (self, &rec, &put, NULL) != 0)
        zsys_error ("capability: the revocation of %s could not be written "
                    "to the journal",
                    c->id);
    s_publish (self, "revoke", c, reason);
    zhashx_delete (self->caps, c->id);
}

/*  ---- the switchboard's copy ----------------------------------------- */

static int
s_install (s_self_t *self, const char *id, const char *subject,
           const char *chan, const char **rights, size_t nrights,
           uint64_t expires, char *why, size_t whylen)
{
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "system", subject);
    chan_body_str (&b, "cap", id);
    chan_body_str (&b, "chan", chan);
    chan_body_strv (&b, "rights", rights, nrights);
    chan_body_uint (&b, "expires", expires);
    chan_reply_t reply;
    int rc = act_ctl (self->conn, "grant", &b, &reply);
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

/*  ---- requests -------------------------------------------------------- */

/*  A request being answered. */
typedef struct {
    s_self_t *self;
    act_batch_t *batch;
} s_turn_t;

static void
s_answer (s_turn_t *t, act_req_t *req, chan_buf_t *b)
{
    if (b->oom) {
        zsys_error ("capability: out of memory answering %s", req->from);
        return;
    }
    act_batch_send (t->batch, req->from, req->id, b->data, b->len);
}

static void
s_answer_err (s_turn_t *t, act_req_t *req, const char *reason)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 3);
    chan_pack_cstr (&pk, "ok");
    msgpack_pack_false (&pk);
    chan_pack_cstr (&pk, "granted");
    msgpack_pack_false (&pk);
    chan_pack_cstr (&pk, "reason");
    chan_pack_cstr (&pk, reason);
    s_answer (t, req, &b);
    chan_buf_fini (&b);
}

static bool
s_is_privileged (s_self_t *self, const char *system)
{
    return zhashx_lookup (self->privileged, system) != NULL;
}

static size_t
s_count_of (s_self_t *self, const char *subject)
{
    size_t n = 0;
    for (s_cap_t *c = (s_cap_t *) zhashx_first (self->caps); c;
         c = (s_cap_t *) zhashx_next (self->caps))
        if (streq (c->subject, subject))
            n++;
    return n;
}

/*  Reads and checks `rights`: for chan: read/write/claim; for action:
    invoke. Returns the count, or -1 with why. */
static int
s_rights (const msgpack_object *data, bool chan, const char **out,
          char store[][8], char *why, size_t whylen)
{
    const msgpack_object *r = chan_obj_get (data, "rights");
    if (!r || r->type == MSGPACK_OBJECT_NIL) {
        if (chan) {
            snprintf (why, whylen,
                      "\"rights\" is required for chan: "
                      "resources (read, write, claim)");
            return -1;
        }
        out[0] = "invoke";
        return 1;
    }
    if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size == 0
        || r->via.array.size > 3) {
        snprintf (why, whylen,
                  "\"rights\" must be a non-empty array of at "
                  "most 3 strings");
        return -1;
    }
    int n = 0;
    for (uint32_t i = 0; i < r->via.array.size; i++) {
        const msgpack_object *o = &r->via.array.ptr[i];
        if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= 8) {
            snprintf (why, whylen, "unknown right in \"rights\"");
            return -1;
        }
        memcpy (store[i], o->via.str.ptr, o->via.str.size);
        store[i][o->via.str.size] = 0;
        const char *s = store[i];
        bool ok = chan ? (streq (s, "read") || streq (s, "write")
                          || streq (s, "claim"))
                       : streq (s, "invoke");
        if (!ok) {
            snprintf (why, whylen, "unknown right \"%s\" for %s resources%s", s,
                      chan ? "chan:" : "action:",
                      chan ? " (read, write, claim)" : " (invoke)");
            return -1;
        }
        bool dup = false;
        for (int j = 0; j < n; j++)
            if (streq (out[j], s))
                dup = true;
        if (!dup)
            out[n++] = s;
    }
    return n;
}

static void
s_grant (s_turn_t *t, act_req_t *req)
{
    s_self_t *self = t->self;
    char resource[AAAX_MAX_NAME + 16], why[256];
    if (!act_get_str (req->data, "resource", resource, sizeof resource)) {
        s_answer_err (t, req,
                      "\"resource\" must be \"chan:NAME\" or "
                      "\"action:PATTERN\"");
        return;
    }
    bool chan = strncmp (resource, "chan:", 5) == 0;
    bool action = strncmp (resource, "action:", 7) == 0;
    const char *name = chan ? resource + 5 : resource + 7;
    if ((!chan && !action) || !*name || strlen (name) > AAAX_MAX_NAME) {
        s_answer_err (t, req,
                      "\"resource\" must be \"chan:NAME\" or "
                      "\"action:PATTERN\" (NAME up to 128 bytes)");
        return;
    }
    if (chan && name[0] == '@') {
        s_answer_err (t, req, "mailboxes are not granted by capability");
        return;
    }
    const char *rights[3];
    char store[3][8];
    int nrights = s_rights (req->data, chan, rights, store, why, sizeof why);
    if (nrights < 0) {
        s_answer_err (t, req, why);
        return;
    }
    uint64_t ttl = S_DEFAULT_TTL_S;
    const msgpack_object *to = chan_obj_get (req->data, "ttl_s");
    if (to && to->type != MSGPACK_OBJECT_NIL) {
        if (to->type != MSGPACK_OBJECT_POSITIVE_INTEGER || to->via.u64 == 0
            || to->via.u64 > S_MAX_TTL_S) {
            s_answer_err (t, req,
                          "\"ttl_s\" must be an integer from 1 to 2592000 "
                          "(30 days)");
            return;
        }
        ttl = to->via.u64;
    }
    if (s_count_of (self, req->from) >= S_MAX_CAPS_PER_SYSTEM) {
        s_answer_err (t, req, "too many live capabilities for this system");
        return;
    }
    s_policy_refresh (self);
    /*  The policy decides every right; all must be allowed. */
    const char *deciding = NULL;
    bool granted = self->policy != NULL;
    char reason[300] = "no policy loaded";
    for (int i = 0; granted && i < nrights; i++) {
        char act[64];
        const char *a = name, *target = name;
        if (chan) {
            snprintf (act, sizeof act, "chan.%s", rights[i]);
            a = act;
        } else
            target = "*";
        policy_decision_t d;
        policy_decide (self->policy, req->from, a, target, &d);
        deciding = d.rule >= 0 ? policy_rule_name (self->policy, d.rule) : NULL;
        if (d.effect != POLICY_ALLOW) {
            granted = false;
            snprintf (reason, sizeof reason,
                      "%s on \"%s\": %s by the policy%s%s", a, target,
                      d.rule < 0               ? "no rule allows it"
                      : d.effect == POLICY_ASK ? "needs an approval (ask)"
                                               : "denied",
                      deciding ? ", rule " : "", deciding ? deciding : "");
        }
    }
    char id[40];
    uint8_t raw[16];
    randombytes_buf (raw, sizeof raw);
    memcpy (id, "cap_", 4);
    sodium_bin2hex (id + 4, sizeof id - 4, raw, sizeof raw);
    uint64_t expires = (uint64_t) hal_clock_wall_s () + ttl;

    hal_cap_t cap;
    memset (&cap, 0, sizeof cap);
    cap.id = id;
    cap.idlen = strlen (id);
    cap.subject = req->from;
    cap.subjectlen = strlen (req->from);
    cap.resource = resource;
    cap.resourcelen = strlen (resource);
    for (int i = 0; i < nrights; i++) {
        cap.rights[i] = rights[i];
        cap.rightslen[i] = strlen (rights[i]);
    }
    cap.nrights = (size_t) nrights;
    cap.expires = expires;
    cap.issuer = hal_keys_public_hex (self->ctx->keys);
    cap.issuerlen = strlen (cap.issuer);
    hal_cap_normalize (&cap);
    char sig[HAL_CAP_SIG_HEX];
    if (granted && hal_cap_sign (&cap, self->ctx->keys, sig) != 0) {
        granted = false;
        snprintf (reason, sizeof reason, "the capability could not be signed");
    }
    if (granted && chan) {
        const char *sorted[3];
        for (size_t i = 0; i < cap.nrights; i++)
            sorted[i] = cap.rights[i];
        char w[200];
        if (s_install (self, id, req->from, name, sorted, cap.nrights, expires,
                       w, sizeof w)
            != 0) {
            granted = false;
            snprintf (reason, sizeof reason, "%s", w);
        }
    }
    chan_buf_t packed;
    chan_buf_init (&packed);
    if (granted) {
        cap.sig = sig;
        cap.siglen = strlen (sig);
        msgpack_packer cpk;
        chan_buf_packer (&packed, &cpk);
        hal_cap_pack (&cap, &cpk);
    }
    hal_audit_rec_t rec = { .kind = "grant",
                            .subject = req->from,
                            .action = "cap.grant",
                            .target = resource,
                            .verdict = granted ? "granted" : "refused",
                            .rule = deciding,
                            .reason = granted ? id : reason,
                            .corr = req->id };
    hal_audit_put_t put = { HAL_AUDIT_DB_CAPS, id, strlen (id), packed.data,
                            packed.len };
    uint64_t seq = 0;
    int arc = packed.oom ? AAAX_ENOMEM
                         : s_audit (self, &rec, granted ? &put : NULL, &seq);
    if (arc != 0 && granted) {
        /*  Not in the journal: not granted (fail closed). */
        granted = false;
        snprintf (reason, sizeof reason,
                  "the audit log could not be written; nothing granted");
        if (chan)
            s_uninstall (self, id);
    }
    s_cap_t *c = NULL;
    if (granted) {
        c = (s_cap_t *) calloc (1, sizeof *c);
        if (c) {
            snprintf (c->id, sizeof c->id, "%s", id);
            snprintf (c->subject, sizeof c->subject, "%s", req->from);
            snprintf (c->resource, sizeof c->resource, "%s", resource);
            c->expires = expires;
            c->packed = (uint8_t *) malloc (packed.len);
            if (c->packed) {
                memcpy (c->packed, packed.data, packed.len);
                c->plen = packed.len;
            }
        }
        if (!c || !c->packed || zhashx_insert (self->caps, id, c) != 0) {
            if (c) {
                free (c->packed);
                free (c);
            }
            c = NULL;
            zsys_error ("capability: out of memory keeping %s", id);
        }
    }
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, granted ? 5 : 4);
    chan_pack_cstr (&pk, "ok");
    msgpack_pack_true (&pk);
    chan_pack_cstr (&pk, "granted");
    if (granted)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
    chan_pack_cstr (&pk, "reason");
    chan_pack_cstr (&pk, granted ? "granted by the policy" : reason);
    chan_pack_cstr (&pk, "audit_id");
    char aid[24];
    snprintf (aid, sizeof aid, "%llu", (unsigned long long) seq);
    if (arc == 0)
        chan_pack_cstr (&pk, aid);
    else
        msgpack_pack_nil (&pk);
    if (granted) {
        chan_pack_cstr (&pk, "cap");
        chan_buf_append (&b, packed.data, packed.len);
    }
    s_answer (t, req, &b);
    chan_buf_fini (&b);
    if (c)
        s_publish (self, "grant", c, NULL);
    chan_buf_fini (&packed);
}

static void
s_ok_reason (s_turn_t *t, act_req_t *req, bool ok, const char *key, bool val,
             const char *reason)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, key ? 3 : 2);
    chan_pack_cstr (&pk, "ok");
    if (ok)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
    if (key) {
        chan_pack_cstr (&pk, key);
        if (val)
            msgpack_pack_true (&pk);
        else
            msgpack_pack_false (&pk);
    }
    chan_pack_cstr (&pk, "reason");
    chan_pack_cstr (&pk, reason);
    s_answer (t, req, &b);
    chan_buf_fini (&b);
}

static void
s_revoke (s_turn_t *t, act_req_t *req)
{
    s_self_t *self = t->self;
    char id[40];
    if (!act_get_str (req->data, "id", id, sizeof id)) {
        s_ok_reason (t, req, false, "revoked", false,
                     "\"id\" must be a capability id");
        return;
    }
    s_cap_t *c = (s_cap_t *) zhashx_lookup (self->caps, id);
    if (!c) {
        s_ok_reason (t, req, true, "revoked", false,
                     "no live capability with this id");
        return;
    }
    if (!streq (c->subject, req->from) && !s_is_privileged (self, req->from)) {
        s_ok_reason (t, req, false, "revoked", false,
                     "only the holder or a privileged system may revoke "
                     "a capability");
        return;
    }
    char by[AAAX_MAX_NAME + 16];
    snprintf (by, sizeof by, "by %s", req->from);
    s_end (self, c, by, req->id, true);
    s_ok_reason (t, req, true, "revoked", true, "revoked");
}

static void
s_list (s_turn_t *t, act_req_t *req)
{
    s_self_t *self = t->self;
    bool all = s_is_privileged (self, req->from);
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    uint32_t n = 0;
    for (s_cap_t *c = (s_cap_t *) zhashx_first (self->caps); c;
         c = (s_cap_t *) zhashx_next (self->caps))
        if (all || streq (c->subject, req->from))
            n++;
    msgpack_pack_map (&pk, 2);
    chan_pack_cstr (&pk, "ok");
    msgpack_pack_true (&pk);
    chan_pack_cstr (&pk, "caps");
    msgpack_pack_array (&pk, n);
    for (s_cap_t *c = (s_cap_t *) zhashx_first (self->caps); c;
         c = (s_cap_t *) zhashx_next (self->caps))
        if (all || streq (c->subject, req->from))
            chan_buf_append (&b, c->packed, c->plen);
    s_answer (t, req, &b);
    chan_buf_fini (&b);
}

static void
s_verify (s_turn_t *t, act_req_t *req)
{
    s_self_t *self = t->self;
    const msgpack_object *o = chan_obj_get (req->data, "cap");
    hal_cap_t cap;
    char why[200];
    if (!o || hal_cap_from_obj (o, &cap, why, sizeof why) != 0) {
        s_ok_reason (t, req, true, "valid", false,
                     o ? why : "\"cap\" must be a capability map");
        return;
    }
    if (hal_cap_verify (&cap, hal_keys_public (self->ctx->keys)) != 0) {
        s_ok_reason (t, req, true, "valid", false,
                     "bad signature: not issued by this kernel, or altered");
        return;
    }
    if (cap.expires <= (uint64_t) hal_clock_wall_s ()) {
        s_ok_reason (t, req, true, "valid", false, "expired");
        return;
    }
    char id[40];
    if (cap.idlen >= sizeof id) {
        s_ok_reason (t, req, true, "valid", false, "revoked");
        return;
    }
    memcpy (id, cap.id, cap.idlen);
    id[cap.idlen] = 0;
    if (!zhashx_lookup (self->caps, id)) {
        s_ok_reason (t, req, true, "valid", false, "revoked");
        return;
    }
    s_ok_reason (t, req, true, "valid", true, "valid");
}

static void
s_one (void *arg, act_batch_t *batch, act_req_t *req)
{
    s_turn_t turn = { (s_self_t *) arg, batch };
    s_turn_t *t = &turn;
    char op[16];
    const char *o = act_get_str (req->data, "op", op, sizeof op);
    if (!o)
        s_answer_err (t, req,
                      "\"op\" must be \"grant\", \"revoke\", \"list\" or "
                      "\"verify\"");
    else if (streq (o, "grant"))
        s_grant (t, req);
    else if (streq (o, "revoke"))
        s_revoke (t, req);
    else if (streq (o, "list"))
        s_list (t, req);
    else if (streq (o, "verify"))
        s_verify (t, req);
    else
        s_answer_err (t, req,
                      "\"op\" must be \"grant\", \"revoke\", \"list\" or "
                      "\"verify\"");
}

static void
s_batch (void *arg, const char *queue, const chan_reply_t *claim)
{
    act_batch_each (((s_self_t *) arg)->conn, queue, claim, s_one, arg);
}

/*  ---- events ---------------------------------------------------------- */

static void
s_push (void *arg, const chan_reply_t *msg)
{
    s_self_t *self = (s_self_t *) arg;
    char sub[64];
    if (!act_get_str (&msg->body, "sub", sub, sizeof sub)
        || !streq (sub, "kernel.systems"))
        return;
    const msgpack_object *env = chan_obj_get (&msg->body, "msg");
    const msgpack_object *data = env ? chan_obj_get (env, "data") : NULL;
    char event[16], system[AAAX_MAX_NAME + 1];
    if (!act_get_str (data, "event", event, sizeof event)
        || !act_get_str (data, "system", system, sizeof system))
        return;
    if (streq (event, "dock")) {
        const msgpack_object *p = chan_obj_get (data, "privileged");
        if (p && p->type == MSGPACK_OBJECT_BOOLEAN && p->via.boolean)
            zhashx_update (self->privileged, system, (void *) "1");
        else
            zhashx_delete (self->privileged, system);
    } else if (streq (event, "undock")) {
        zhashx_delete (self->privileged, system);
        /*  Every capability of the system ends with its session. */
        zlistx_t *ids = zlistx_new ();
        for (s_cap_t *c = (s_cap_t *) zhashx_first (self->caps); c && ids;
             c = (s_cap_t *) zhashx_next (self->caps))
            if (streq (c->subject, system))
                zlistx_add_end (ids, c->id);
        char reason[160];
        char why[64] = "undocked";
        act_get_str (data, "reason", why, sizeof why);
        snprintf (reason, sizeof reason, "the system undocked (%s)", why);
        for (char *id = ids ? (char *) zlistx_first (ids) : NULL; id;
             id = (char *) zlistx_next (ids)) {
            s_cap_t *c = (s_cap_t *) zhashx_lookup (self->caps, id);
            if (c)
                s_end (self, c, reason, NULL, false);
        }
        zlistx_destroy (&ids);
    }
}

/*  Reads docked privileged systems from the switchboard (CTL list). */
static void
s_snapshot (s_self_t *self)
{
    chan_reply_t reply;
    int rc = act_ctl (self->conn, "list", NULL, &reply);
    if (rc == AAAX_ETIMEDOUT || rc == AAAX_EIO)
        return;
    const msgpack_object *systems = chan_obj_get (&reply.body, "systems");
    if (rc == 0 && systems && systems->type == MSGPACK_OBJECT_ARRAY) {
        zhashx_purge (self->privileged);
        for (uint32_t i = 0; i < systems->via.array.size; i++) {
            const msgpack_object *s = &systems->via.array.ptr[i];
            char id[AAAX_MAX_NAME + 1];
            const msgpack_object *p = chan_obj_get (s, "privileged");
            if (act_get_str (s, "id", id, sizeof id) && p
                && p->type == MSGPACK_OBJECT_BOOLEAN && p->via.boolean)
                zhashx_update (self->privileged, id, (void *) "1");
        }
    }
    chan_reply_fini (&reply);
}

/*  Loads the journal's capabilities: expired ones are ended, live ones
    installed in the switchboard again. */
static int
s_load_one (void *arg, const void *key, size_t klen, const void *val,
            size_t vlen)
{
    zlistx_t *list = (zlistx_t *) arg;
    s_cap_t *c = (s_cap_t *) calloc (1, sizeof *c);
    if (!c)
        return 0;
    c->packed = (uint8_t *) malloc (vlen ? vlen : 1);
    if (!c->packed) {
        free (c);
        return 0;
    }
    memcpy (c->packed, val, vlen);
    c->plen = vlen;
    snprintf (c->id, sizeof c->id, "%.*s",
              (int) (klen < sizeof c->id ? klen : sizeof c->id - 1),
              (const char *) key);
    zlistx_add_end (list, c);
    return 0;
}

static void
s_docked (void *arg)
{
    s_self_t *self = (s_self_t *) arg;
    s_snapshot (self);
    /*  Docked again after a refusal: the switchboard kept its table. */
    if (zhashx_size (self->caps) > 0)
        return;
    zlistx_t *list = zlistx_new ();
    if (!list)
        return;
    hal_audit_scan_db (self->ctx->audit, HAL_AUDIT_DB_CAPS, s_load_one, list);
    uint64_t now = (uint64_t) hal_clock_wall_s ();
    size_t live = 0, expired = 0;
    for (s_cap_t *c = (s_cap_t *) zlistx_first (list); c;
         c = (s_cap_t *) zlistx_next (list)) {
        msgpack_unpacked u;
        msgpack_unpacked_init (&u);
        hal_cap_t cap;
        char why[160];
        bool ok =
            msgpack_unpack_next (&u, (const char *) c->packed, c->plen, NULL)
                == MSGPACK_UNPACK_SUCCESS
            && hal_cap_from_obj (&u.data, &cap, why, sizeof why) == 0
            && hal_cap_verify (&cap, hal_keys_public (self->ctx->keys)) == 0
            && cap.idlen < sizeof c->id && cap.subjectlen < sizeof c->subject
            && cap.resourcelen < sizeof c->resource;
        if (ok) {
            memset (c->id, 0, sizeof c->id);
            memcpy (c->id, cap.id, cap.idlen);
            memcpy (c->subject, cap.subject, cap.subjectlen);
            memcpy (c->resource, cap.resource, cap.resourcelen);
            c->expires = cap.expires;
        }
        /*  Channel capabilities are in the switchboard's table already:
            it installs them from the journal at boot (broker_boot_caps). */
        bool keep = ok && cap.expires > now;
        msgpack_unpacked_destroy (&u);
        if (keep && zhashx_insert (self->caps, c->id, c) == 0) {
            live++;
            continue;
        }
        /*  Expired or unreadable: out of the journal. */
        expired++;
        hal_audit_rec_t rec = {
            .kind = "revoke",
            .subject = ok ? c->subject : S_SYSTEM,
            .action = "cap.expire",
            .target = ok ? c->resource : c->id,
            .verdict = "revoked",
            .reason = ok ? "expired while the kernel was down"
                         : "unreadable or not signed by this kernel's key"
        };
        hal_audit_put_t put = { HAL_AUDIT_DB_CAPS, c->id, strlen (c->id), NULL,
                                0 };
        s_audit (self, &rec, &put, NULL);
        free (c->packed);
        free (c);
    }
    zlistx_destroy (&list);
    if (live || expired)
        zsys_info ("capability: %zu capabilities restored, %zu dropped", live,
                   expired);
}

static int64_t
s_tick (void *arg, int64_t now)
{
    s_self_t *self = (s_self_t *) arg;
    if (now < self->next_sweep)
        return self->next_sweep;
    self->next_sweep = now + 250;
    uint64_t wall = (uint64_t) hal_clock_wall_s ();
    zlistx_t *ids = NULL;
    for (s_cap_t *c = (s_cap_t *) zhashx_first (self->caps); c;
         c = (s_cap_t *) zhashx_next (self->caps))
        if (c->expires <= wall) {
            if (!ids)
                ids = zlistx_new ();
            if (ids)
                zlistx_add_end (ids, c->id);
        }
    for (char *id = ids ? (char *) zlistx_first (ids) : NULL; id;
         id = (char *) zlistx_next (ids)) {
        s_cap_t *c = (s_cap_t *) zhashx_lookup (self->caps, id);
        if (c)
            s_end (self, c, "expired", NULL, false);
    }
    zlistx_destroy (&ids);
    return self->next_sweep;
}

void
act_capability (zsock_t *pipe, void *args)
{
    const act_ctx_t *ctx = (const act_ctx_t *) args;
    s_self_t self;
    memset (&self, 0, sizeof self);
    self.ctx = ctx;
    self.conn = act_conn_new (ctx, S_SYSTEM);
    self.caps = zhashx_new ();
    self.privileged = zhashx_new ();
    zsock_signal (pipe, 0);
    if (!self.conn || !self.caps || !self.privileged) {
        zsys_error ("capability: cannot start");
        act_wait_term (pipe);
    } else {
        zhashx_set_destructor (self.caps, s_cap_free);
        zhashx_set_destructor (self.privileged, NULL);
        zhashx_set_duplicator (self.privileged, NULL);
        s_policy_refresh (&self);
        const char *queues[] = { S_QUEUE };
        const char *subs[] = { "kernel.systems" };
        act_ops_t ops = { s_batch, s_push, s_tick, s_docked, NULL };
        act_serve (pipe, self.conn, queues, 1, subs, 1, &ops, &self);
    }
    zhashx_destroy (&self.caps);
    zhashx_destroy (&self.privileged);
    policy_destroy (&self.policy);
    act_conn_destroy (&self.conn);
}
