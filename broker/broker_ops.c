/*  broker_ops.c — the commands of the contract (section 4) and the two
    extensions STAT and CTL. Every command checks, in this order, what the
    contract lists: 413 and 400 were settled by the decoder; here come 401
    (not docked), 423 (paused), 404 (no such channel or system), 403 (no
    grant), 429 (length or rate limit), then the work. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "broker_impl.h"
#include "chan_env.h"
#include "hal_clock.h"

static inline void
msgpack_pack_bool (msgpack_packer *pk, bool b)
{
    if (b)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
}

#define NAME_BUF (AAAX_MAX_NAME + 2)

/*  ---- helpers -------------------------------------------------------- */

static bool
s_span_cstr (chan_span_t span, char *out, size_t size)
{
    if (!span.ptr || span.len >= size || memchr (span.ptr, 0, span.len))
        return false;
    memcpy (out, span.ptr, span.len);
    out[span.len] = 0;
    return true;
}

/*  System ids: 1..128 of [A-Za-z0-9._:-], not starting with '.' (the rule
    the authorized-keys file checks too). */
static bool
s_valid_system (const char *id)
{
    return hal_curve_id_valid (id);
}

static const char *
s_action (int right)
{
    return right == R_READ    ? "chan.read"
           : right == R_WRITE ? "chan.write"
                              : "chan.claim";
}

/*  The grant of s on target (a broker_chan_t or broker_sys_t), or NULL. */
static broker_grant_t *
s_grant (broker_session_t *s, const void *target)
{
    return (broker_grant_t *) chan_map_get (&s->grants,
                                            (uint64_t) (uintptr_t) target);
}

/*  Sets g->rights from base and caprights, keeping s->nrights. */
static void
s_grant_settle (broker_session_t *s, broker_grant_t *g)
{
    uint8_t now = (uint8_t) (g->base | g->caprights);
    s->nrights += (uint32_t) __builtin_popcount (now);
    s->nrights -= (uint32_t) __builtin_popcount (g->rights);
    g->rights = now;
}

/*  Adds right (with the rate rules of its action) to s's grant on target,
    as a policy grant (base) or a capability's (cap); rated lists are kept
    for writes only. name is the policy's target ("orders", "@bob"); label
    and mbox describe the target for listing. false on no memory. */
static bool
s_grant_add (broker_t *self, broker_session_t *s, const void *target,
             uint8_t right, const char *name, const char *label, bool mbox,
             bool cap)
{
    broker_grant_t *g = s_grant (s, target);
    if (!g || (right == R_WRITE && !(g->rights & R_WRITE))) {
        uint32_t nrated = 0;
        int rated[64];
        if (right == R_WRITE) {
            size_t total = policy_rated (self->policy, s->sys->id, "chan.write",
                                         name, rated, 64);
            if (total > 64) {
                zsys_error ("broker: more than 64 rate rules match %s on %s; "
                            "refusing the grant",
                            s->sys->id, name);
                return true; /* fail closed: not granted */
            }
            nrated = (uint32_t) total;
        }
        broker_grant_t *ng = (broker_grant_t *) malloc (
            sizeof *ng
            + (right == R_WRITE ? nrated : (g ? g->nrated : 0)) * sizeof (int));
        if (!ng)
            return false;
        ng->rights = g ? g->rights : 0;
        ng->base = g ? g->base : 0;
        ng->caprights = g ? g->caprights : 0;
        ng->mbox = mbox;
        ng->label = label;
        if (right == R_WRITE) {
            ng->nrated = nrated;
            memcpy (ng->rated, rated, nrated * sizeof (int));
        } else {
            ng->nrated = g ? g->nrated : 0;
            if (g)
                memcpy (ng->rated, g->rated, ng->nrated * sizeof (int));
        }
        if (chan_map_put (&s->grants, (uint64_t) (uintptr_t) target, ng) != 0) {
            free (ng);
            return false;
        }
        free (g);
        g = ng;
    }
    if (cap)
        g->caprights |= right;
    else
        g->base |= right;
    s_grant_settle (s, g);
    return true;
}

/*  A grant on a channel: its name is both the policy's target and the
    label. */
static bool
s_grant_chan (broker_t *self, broker_session_t *s, broker_chan_t *ch,
              uint8_t right)
{
    return s_grant_add (self, s, ch, right, ch->name, ch->name, false, false);
}

/*  Rights a channel kind can carry. */
static uint8_t
s_kind_rights (const broker_chan_t *ch)
{
    return ch->kind == BROKER_CHAN_BROADCAST ? (R_READ | R_WRITE)
                                             : (R_WRITE | R_CLAIM);
}

static bool
s_has (broker_session_t *s, const void *target, uint8_t right)
{
    if (s->kernel)
        return true;
    broker_grant_t *g = s_grant (s, target);
    return g && (g->rights & right);
}

/*  Takes n writes (a WRITE batch counts each message) from the rate limits
    that apply, all or none; true when allowed. */
static bool
s_rate_ok (broker_t *self, broker_session_t *s, const void *target, int64_t now,
           uint32_t n)
{
    if (s->kernel)
        return true;
    broker_grant_t *g = s_grant (s, target);
    if (!g || g->nrated == 0)
        return true;
    return policy_rate_take_n (self->policy, g->rated, g->nrated, s->sys->id,
                               now, n)
           == 0;
}

/*  Whether s may write the mailbox of sys: allowed unless a policy rule says
    deny (or ask, which a channel write cannot wait for). Cached per session
    as a grant keyed by the system record. */
static bool
s_mbox_writable (broker_t *self, broker_session_t *s, broker_sys_t *sys)
{
    if (s->kernel)
        return true;
    broker_grant_t *g = s_grant (s, sys);
    if (g)
        return g->rights & R_WRITE;
    char target[NAME_BUF + 1];
    snprintf (target, sizeof target, "@%s", sys->id);
    policy_decision_t d;
    policy_decide (self->policy, s->sys->id, "chan.write", target, &d);
    bool ok = d.rule < 0 || d.effect == POLICY_ALLOW;
    if (ok)
        s_grant_add (self, s, sys, R_WRITE, target, sys->id, true, false);
    else {
        /*  A refusal is cached too: no rights. */
        broker_grant_t *ng = (broker_grant_t *) calloc (1, sizeof *ng);
        if (ng) {
            ng->mbox = true;
            ng->label = sys->id;
            if (chan_map_put (&s->grants, (uint64_t) (uintptr_t) sys, ng) != 0)
                free (ng);
        }
    }
    return ok;
}

/*  What a request names: a channel, or a mailbox "@ID". */
typedef struct {
    broker_chan_t *ch;
    broker_sys_t *sys;
    char name[NAME_BUF + 1];
} s_target_t;

/*  Resolves a channel name; false with a 404 answered when unknown. */
static bool
s_resolve (broker_t *self, broker_rq_t *rq, chan_span_t span, s_target_t *t)
{
    memset (t, 0, sizeof *t);
    char reason[200];
    if (!s_span_cstr (span, t->name, sizeof t->name)) {
        broker_error (self, rq, 404, "no such channel");
        return false;
    }
    if (t->name[0] == '@') {
        t->sys = s_valid_system (t->name + 1)
                     ? broker_sys_find (self, t->name + 1)
                     : NULL;
        if (!t->sys) {
            snprintf (reason, sizeof reason,
                      "no system \"%s\" is known to "
                      "this kernel",
                      t->name + 1);
            broker_error (self, rq, 404, reason);
            return false;
        }
        return true;
    }
    t->ch = broker_chan_find (self, t->name);
    if (!t->ch) {
        snprintf (reason, sizeof reason, "no channel \"%s\"", t->name);
        broker_error (self, rq, 404, reason);
        return false;
    }
    return true;
}

static void
s_forbidden (broker_t *self, broker_rq_t *rq, const char *what,
             const char *chan, const char *hint)
{
    char reason[300];
    snprintf (reason, sizeof reason, "no %s grant on \"%s\"%s%s", what, chan,
              hint ? ": " : "", hint ? hint : "");
    broker_error (self, rq, 403, reason);
}

/*  ---- capabilities, events, audit ------------------------------------ */

static void s_add_common_grants (broker_t *self, broker_session_t *s);
static void s_hello_grants (broker_t *self, broker_session_t *s,
                            chan_span_t channels);
typedef struct broker_entry s_entry_t;
static void s_publish (broker_t *self, broker_chan_t *ch, const uint8_t *env,
                       const s_entry_t *e, size_t n);
static bool s_has (broker_session_t *s, const void *target, uint8_t right);

uint8_t
broker_right_bit (const char *name, size_t len)
{
    if (len == 4 && memcmp (name, "read", 4) == 0)
        return R_READ;
    if (len == 5 && memcmp (name, "write", 5) == 0)
        return R_WRITE;
    if (len == 5 && memcmp (name, "claim", 5) == 0)
        return R_CLAIM;
    return 0;
}

/*  The rights bits of a CTL grant's "rights"; 0 when one is unknown. */
static uint8_t
s_rights_of (chan_span_t rights)
{
    uint8_t bits = 0;
    size_t pos = 0;
    chan_span_t sp;
    while (chan_req_next_str (rights, &pos, &sp)) {
        uint8_t bit = broker_right_bit (sp.ptr, sp.len);
        if (!bit)
            return 0;
        bits |= bit;
    }
    return bits;
}

/*  Sets the capability part of s's grant on ch from s->sys's live caps. */
static void
s_caps_apply (broker_t *self, broker_session_t *s, broker_chan_t *ch,
              int64_t wall)
{
    if (s->kernel)
        return;
    uint8_t cr = 0;
    for (broker_cap_t *c = s->sys->caps; c; c = c->next)
        if (c->chan == ch && c->expires_ms > wall)
            cr |= c->rights;
    for (uint8_t right = R_READ; right <= R_CLAIM; right <<= 1)
        if (cr & right)
            s_grant_add (self, s, ch, right, ch->name, ch->name, false, true);
    broker_grant_t *g = s_grant (s, ch);
    if (g) {
        g->caprights = cr;
        s_grant_settle (s, g);
    }
}

void
broker_caps_apply_all (broker_t *self, broker_session_t *s)
{
    int64_t wall = hal_clock_wall_ms ();
    for (broker_cap_t *c = s->sys->caps; c; c = c->next)
        s_caps_apply (self, s, c->chan, wall);
}

/*  Ends subscription index i of s (to ch) and tells s why (DROPPED). */
static void
s_end_sub (broker_t *self, broker_session_t *s, size_t i, broker_chan_t *ch,
           const char *reason)
{
    chan_sub_t *sub = s->subs[i];
    chan_bcast_unsubscribe (sub);
    s->subs[i] = s->subs[--s->nsubs];
    free (sub);
    chan_buf_t note;
    chan_buf_init (&note);
    msgpack_packer np;
    chan_buf_packer (&note, &np);
    msgpack_pack_map (&np, 2);
    chan_pack_str (&np, "sub", 3);
    chan_pack_cstr (&np, ch->name);
    chan_pack_str (&np, "reason", 6);
    chan_pack_cstr (&np, reason);
    if (!note.oom)
        broker_send_ctl (self, s->rid, s->ridlen, s->hostlen, s, OUT_DROPPED,
                         note.data, note.len);
    chan_buf_fini (&note);
}

/*  Ends the subscriptions of s to channels it may no longer read (after a
    revocation, an expiry or a policy reload), each with a DROPPED notice:
    a right that ends ends its deliveries too. */
static void
s_drop_unreadable (broker_t *self, broker_session_t *s)
{
    if (s->kernel)
        return;
    for (size_t i = s->nsubs; i-- > 0;) {
        chan_sub_t *sub = s->subs[i];
        broker_chan_t *ch =
            broker_chan_find (self, chan_bcast_name (sub->chan));
        if (!ch || s_has (s, ch, R_READ))
            continue;
        s_end_sub (self, s, i, ch,
                   "the read right on this channel ended (revoked, "
                   "expired, or withdrawn by a policy reload)");
    }
}

/*  Unlinks and frees cap id of sys; re-applies the session's grant. */
static bool
s_cap_remove (broker_t *self, broker_sys_t *sys, const char *id)
{
    for (broker_cap_t **pp = &sys->caps; *pp; pp = &(*pp)->next)
        if (streq ((*pp)->id, id)) {
            broker_cap_t *c = *pp;
            *pp = c->next;
            zhashx_delete (self->caps, id);
            if (sys->session) {
                s_caps_apply (self, sys->session, c->chan,
                              hal_clock_wall_ms ());
                s_drop_unreadable (self, sys->session);
            }
            free (c);
            return true;
        }
    return false;
}

void
broker_caps_drop (broker_t *self, broker_sys_t *sys)
{
    while (sys->caps) {
        broker_cap_t *c = sys->caps;
        sys->caps = c->next;
        zhashx_delete (self->caps, c->id);
        free (c);
    }
}

void
broker_caps_expire (broker_t *self, int64_t wall)
{
    if (wall < self->cap_next_expiry)
        return;
    int64_t next = INT64_MAX;
    zlistx_t *gone = zlistx_new ();
    for (broker_sys_t *sys = (broker_sys_t *) zhashx_first (self->systems);
         sys && gone; sys = (broker_sys_t *) zhashx_next (self->systems))
        for (broker_cap_t *c = sys->caps; c; c = c->next) {
            if (c->expires_ms <= wall) {
                zlistx_add_end (gone, sys);
                zlistx_add_end (gone, c->id);
            } else if (c->expires_ms < next)
                next = c->expires_ms;
        }
    /*  Pairs (system, id); ids are freed by the removal, so copy. */
    for (void *p = gone ? zlistx_first (gone) : NULL; p;
         p = zlistx_next (gone)) {
        broker_sys_t *sys = (broker_sys_t *) p;
        char id[65];
        snprintf (id, sizeof id, "%s", (const char *) zlistx_next (gone));
        s_cap_remove (self, sys, id);
    }
    zlistx_destroy (&gone);
    self->cap_next_expiry = next;
}

void
broker_publish (broker_t *self, const char *chan, const void *data, size_t len)
{
    broker_chan_t *ch = broker_chan_find (self, chan);
    if (!ch || !ch->bcast)
        return;
    double ts = hal_clock_wall_s ();
    char id[CHAN_ID_LEN];
    uint64_t seq = broker_next_id (self, (int64_t) (ts * 1000.0), id);
    chan_buf_t pairs;
    chan_buf_init (&pairs);
    chan_env_pairs (&pairs, id, CHAN_ID_LEN, ts, "kernel", 6, ch->name,
                    strlen (ch->name), NULL, 0, NULL, 0, data, len);
    if (!pairs.oom) {
        s_entry_t e = { .seq = seq, .off = 0, .len = (uint32_t) pairs.len };
        memcpy (e.id, id, CHAN_ID_LEN);
        s_publish (self, ch, pairs.data, &e, 1);
        ch->writes++;
    }
    chan_buf_fini (&pairs);
}

void
broker_event (broker_t *self, const char *event, broker_session_t *s,
              const char *reason)
{
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, reason ? 6 : 5);
    chan_pack_cstr (&pk, "event");
    chan_pack_cstr (&pk, event);
    chan_pack_cstr (&pk, "system");
    chan_pack_cstr (&pk, s->sys->id);
    chan_pack_cstr (&pk, "session");
    chan_pack_cstr (&pk, s->session_id);
    chan_pack_cstr (&pk, "kind");
    chan_pack_cstr (&pk, s->kind ? s->kind : "local");
    chan_pack_cstr (&pk, "privileged");
    if (s->privileged)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
    if (reason) {
        chan_pack_cstr (&pk, "reason");
        chan_pack_cstr (&pk, reason);
    }
    if (!b.oom)
        broker_publish (self, "kernel.systems", b.data, b.len);
    chan_buf_fini (&b);
}

void
broker_audit (broker_t *self, const char *kind, const char *subject,
              const char *action, const char *verdict, const char *reason)
{
    if (!self->audit)
        return;
    hal_audit_rec_t rec = { .kind = kind,
                            .subject = subject,
                            .action = action,
                            .verdict = verdict,
                            .reason = reason };
    if (hal_audit_append (self->audit, &rec, NULL, 0) == 0)
        zsys_error ("broker: could not queue an audit record (%s %s)", kind,
                    subject);
}

/*  The kind of a new session from its Peer-Address: none for inproc,
    "localhost:..." for ipc, an IP address for tcp. */
static void
s_session_kind (broker_session_t *s, const char *peer)
{
    if (s->kernel)
        s->kind = "kernel";
    else if (s->host)
        s->kind = "app";
    else if (!peer || strncmp (peer, "localhost:", 10) == 0)
        s->kind = "local";
    else {
        s->kind = "remote";
        snprintf (s->peer, sizeof s->peer, "%s", peer);
    }
}

/*  Grants s anew from the current policy (after a reload). */
static void
s_regrant (broker_t *self, broker_session_t *s)
{
    if (s->kernel)
        return;
    broker_grants_clear (s);
    chan_map_init (&s->grants);
    s_add_common_grants (self, s);
    if (s->hello_chans) {
        chan_span_t sp = { (const char *) s->hello_chans, s->hello_len };
        s_hello_grants (self, s, sp);
    }
    broker_caps_apply_all (self, s);
    s_drop_unreadable (self, s);
}

int
broker_policy_reload (broker_t *self, const char *by, char *err, size_t errlen)
{
    policy_t *fresh = NULL;
    char source[sizeof self->policy_source];
    if (broker_config_reload_policy (self->cfg, &fresh, source, sizeof source,
                                     err, errlen)
        != 0) {
        zsys_error ("broker: policy reload refused, the old policy stays: %s",
                    err);
        broker_audit (self, "policy", by, "policy.reload", "refused", err);
        return AAAX_EINVAL;
    }
    policy_destroy (&self->policy);
    self->policy = fresh;
    self->cfg->policy = fresh;
    snprintf (self->policy_source, sizeof self->policy_source, "%s", source);
    for (broker_session_t *s = self->lru_head; s; s = s->lru_next)
        s_regrant (self, s);
    broker_policy_announce (self, by);
    return 0;
}

void
broker_policy_announce (broker_t *self, const char *by)
{
    self->policy_version++;
    if (self->shared_policy
        && act_policy_set (self->shared_policy, self->policy) == 0)
        zsys_error ("broker: out of memory sharing the policy with the gate");
    const char *digest = policy_digest (self->policy);
    zsys_info ("broker: policy version %llu: %zu rules, digest %.16s... "
               "(%s)",
               (unsigned long long) self->policy_version,
               policy_size (self->policy), digest, self->policy_source);
    chan_buf_t b;
    chan_buf_init (&b);
    msgpack_packer pk;
    chan_buf_packer (&b, &pk);
    msgpack_pack_map (&pk, 6);
    chan_pack_cstr (&pk, "version");
    msgpack_pack_uint64 (&pk, self->policy_version);
    chan_pack_cstr (&pk, "digest");
    chan_pack_cstr (&pk, digest);
    chan_pack_cstr (&pk, "rules");
    msgpack_pack_uint64 (&pk, policy_size (self->policy));
    chan_pack_cstr (&pk, "source");
    chan_pack_cstr (&pk, self->policy_source);
    chan_pack_cstr (&pk, "by");
    chan_pack_cstr (&pk, by);
    chan_pack_cstr (&pk, "ts");
    msgpack_pack_double (&pk, hal_clock_wall_s ());
    if (!b.oom)
        broker_publish (self, "kernel.policy", b.data, b.len);
    chan_buf_fini (&b);
    char reason[200];
    snprintf (reason, sizeof reason, "version %llu, %zu rules, digest %s",
              (unsigned long long) self->policy_version,
              policy_size (self->policy), digest);
    broker_audit (self, "policy", by, "policy.load", "ok", reason);
}

/*  ---- HELLO ---------------------------------------------------------- */

static void
s_add_common_grants (broker_t *self, broker_session_t *s)
{
    const char *common[] = { "kernel.capability_requests", "kernel.gate" };
    for (size_t i = 0; i < 2; i++) {
        broker_chan_t *ch = broker_chan_find (self, common[i]);
        if (ch)
            s_grant_chan (self, s, ch, R_WRITE);
    }
    broker_chan_t *hb = broker_chan_find (self, "heartbeat");
    if (hb)
        s_grant_chan (self, s, hb, R_READ);
    if (s->privileged) {
        const char *w[] = { "kernel.loader", "kernel.lifecycle",
                            "kernel.approvals" };
        const char *r[] = { "kernel.capabilities", "kernel.modules",
                            "kernel.policy", "kernel.systems" };
        for (size_t i = 0; i < 3; i++) {
            broker_chan_t *ch = broker_chan_find (self, w[i]);
            if (ch)
                s_grant_chan (self, s, ch, R_WRITE);
        }
        for (size_t i = 0; i < 4; i++) {
            broker_chan_t *ch = broker_chan_find (self, r[i]);
            if (ch)
                s_grant_chan (self, s, ch, R_READ);
        }
    }
}

/*  The number of "RIGHT:NAME" grants s holds (its own mailbox included). */
static uint32_t
s_count_grants (const broker_session_t *s)
{
    return s->kernel ? 1 : 1 + s->nrights;
}

/*  Packs s's grants as "RIGHT:NAME" strings (an array). */
static void
s_pack_grants (broker_session_t *s, msgpack_packer *pk)
{
    msgpack_pack_array (pk, s_count_grants (s));
    if (s->kernel) {
        chan_pack_str (pk, "all:*", 5);
        return;
    }
    char buf[NAME_BUF + 16];
    int len = snprintf (buf, sizeof buf, "read:@%s", s->sys->id);
    chan_pack_str (pk, buf, (size_t) len);
    const char *names[] = { "read", "write", "claim" };
    const chan_map_t *m = &s->grants;
    for (size_t i = 0; m->mask && i <= m->mask; i++) {
        if (!m->keys[i])
            continue;
        const broker_grant_t *g = (const broker_grant_t *) m->vals[i];
        for (int r = 0; r < 3; r++)
            if (g->rights & (1 << r)) {
                len = snprintf (buf, sizeof buf, "%s:%s%s", names[r],
                                g->mbox ? "@" : "", g->label);
                chan_pack_str (pk, buf, (size_t) len);
            }
    }
}

/*  Grants of the channels a HELLO lists (a packed array of strings), as
    far as the policy allows. */
static void
s_hello_grants (broker_t *self, broker_session_t *s, chan_span_t channels)
{
    size_t pos = 0;
    chan_span_t span;
    while (chan_req_next_str (channels, &pos, &span)) {
        char name[NAME_BUF + 1];
        if (!s_span_cstr (span, name, sizeof name))
            continue;
        if (name[0] == '@') {
            broker_sys_t *sys = s_valid_system (name + 1)
                                    ? broker_sys_find (self, name + 1)
                                    : NULL;
            if (sys && sys != s->sys)
                s_mbox_writable (self, s, sys);
            continue;
        }
        broker_chan_t *ch = broker_chan_find (self, name);
        if (!ch)
            continue;
        uint8_t possible = s_kind_rights (ch);
        /*  The heartbeat is written by the kernel only. */
        if (streq (name, "heartbeat"))
            possible &= (uint8_t) ~R_WRITE;
        for (uint8_t right = R_READ; right <= R_CLAIM; right <<= 1) {
            if (!(possible & right))
                continue;
            policy_decision_t d;
            policy_decide (self->policy, s->sys->id, s_action (right), name,
                           &d);
            if (d.effect == POLICY_ALLOW)
                s_grant_chan (self, s, ch, right);
        }
    }
}

/*  A 401 at HELLO, with its audit record (kind "dock", verdict "deny"). */
static void
s_hello_refuse (broker_t *self, broker_rq_t *rq, const char *sysid,
                const char *reason)
{
    broker_audit (self, "dock", sysid[0] ? sysid : "?", NULL, "deny", reason);
    broker_error (self, rq, 401, reason);
}

/*  Redeems HELLO's enrollment token: the connection's key becomes bound to
    the token's system id, which sysid receives. False when refused (the
    error is sent). */
static bool
s_hello_enroll (broker_t *self, broker_rq_t *rq, char *sysid, size_t size)
{
    chan_req_t *r = &rq->req;
    if (!rq->key) {
        s_hello_refuse (self, rq, sysid,
                        "enrollment needs a CURVE connection: connect with "
                        "the kernel's public key (aaax kernel-key) and a "
                        "fresh key pair of your own");
        return false;
    }
    char id[HAL_CURVE_ID_MAX + 1];
    int rc = hal_curve_enroll_redeem (self->enroll, r->token.ptr, r->token.len,
                                      hal_clock_wall_ms (),
                                      sysid[0] ? sysid : NULL, id);
    if (rc == AAAX_EPERM) {
        char why[300];
        snprintf (why, sizeof why,
                  "this enrollment token is for system \"%s\", not \"%s\"", id,
                  sysid);
        s_hello_refuse (self, rq, sysid, why);
        return false;
    }
    if (rc == AAAX_EAUTH) {
        s_hello_refuse (self, rq, sysid, "enrollment token expired");
        return false;
    }
    if (rc == AAAX_EIO) {
        broker_error (self, rq, 500,
                      "cannot record the enrollment (see the kernel's log)");
        return false;
    }
    if (rc != 0) {
        s_hello_refuse (self, rq, sysid,
                        "enrollment token unknown or already used");
        return false;
    }
    char err[512];
    const char *ids[1] = { id };
    if (hal_curve_authorize (self->data_dir, rq->key, ids, 1, false, err,
                             sizeof err)
        != 0) {
        zsys_error ("broker: enrollment of %s: %s", id, err);
        broker_error (self, rq, 500, "cannot record the enrollment");
        return false;
    }
    broker_curve_refresh (self, true);
    snprintf (sysid, size, "%s", id);
    char why[120];
    snprintf (why, sizeof why, "key %.8s... enrolled", rq->key);
    broker_audit (self, "enroll", id, "dock", "allow", why);
    zsys_info ("broker: key %s enrolled as %s", rq->key, id);
    return true;
}

/*  Whether this connection may dock as sysid: over CURVE, the key must be
    bound to it; without CURVE, an id bound to a key is refused (unless the
    HELLO is privileged or from an app host). False when refused. */
static bool
s_hello_key_ok (broker_t *self, broker_rq_t *rq, const char *sysid)
{
    if (!rq->key && (rq->req.privileged || rq->hostlen))
        return true;
    /*  The file may have changed since the last inotify turn (this HELLO
        can be read in the same drain as the change): a stat first. */
    broker_curve_refresh (self, false);
    if (rq->key) {
        if (hal_curve_auth_allows (self->auth, rq->key, sysid))
            return true;
        char why[400];
        snprintf (why, sizeof why,
                  "CURVE key %s is not authorized for system \"%s\" (on the "
                  "kernel's host: aaax authorize %s --system %s)",
                  rq->key, sysid, rq->key, sysid);
        s_hello_refuse (self, rq, sysid, why);
        return false;
    }
    if (!hal_curve_auth_id_bound (self->auth, sysid))
        return true;
    char why[300];
    snprintf (why, sizeof why,
              "system \"%s\" is bound to a CURVE key: dock over a CURVE "
              "endpoint with that key",
              sysid);
    s_hello_refuse (self, rq, sysid, why);
    return false;
}

/*  True when HELLO's resume names s, a session that can move. */
static bool
s_resumable (const broker_session_t *s, chan_span_t resume)
{
    return !s->dead && !s->host && !s->kernel && !s->hosted && resume.len == 32
           && sodium_memcmp (resume.ptr, s->session_id, 32) == 0;
}

static void
s_session_auth (broker_session_t *s, const broker_rq_t *rq)
{
    s->curve_key[0] = 0;
    if (rq->key) {
        memcpy (s->curve_key, rq->key, HAL_CURVE_Z85_LEN + 1);
        s->auth = "curve";
    } else if (s->kernel)
        s->auth = "inproc";
    else if (s->host)
        s->auth = "hosted";
    else if (!rq->peer)
        s->auth = "inproc";
    else if (!rq->peer[0] || (s->kind && streq (s->kind, "local")))
        s->auth = "ipc";
    else
        s->auth = "plain";
}

static void
s_hello (broker_t *self, broker_rq_t *rq, int64_t now)
{
    chan_req_t *r = &rq->req;
    char sysid[NAME_BUF];
    /*  An enrolling HELLO may leave the id to its token. */
    bool enrolling = !r->privileged && r->token.ptr && !rq->hostlen
                     && r->token.len > 12
                     && memcmp (r->token.ptr, "aaax-enroll-", 12) == 0;
    if (!r->system.ptr && !enrolling) {
        broker_error (self, rq, 400, "HELLO needs \"system\"");
        return;
    }
    if (enrolling && !r->system.ptr)
        sysid[0] = 0;
    else if (!s_span_cstr (r->system, sysid, sizeof sysid)
             || !s_valid_system (sysid)) {
        broker_error (self, rq, 400,
                      "\"system\" must be 1..128 characters "
                      "of A-Z a-z 0-9 . _ - : and not start with '.'");
        return;
    }
    bool kernel = false;
    if (r->privileged && rq->hostlen) {
        broker_error (self, rq, 403,
                      "an app host's session cannot be privileged");
        return;
    }
    if (r->privileged) {
        if (!r->token.ptr) {
            broker_error (self, rq, 401,
                          "a privileged HELLO needs \"token\": "
                          "the session token in <data>/session.token");
            return;
        }
        if (r->token.len == 64
            && sodium_memcmp (r->token.ptr, self->kernel_token, 64) == 0)
            kernel = true;
        else if (r->token.len != 64
                 || sodium_memcmp (r->token.ptr, self->session_token, 64)
                        != 0) {
            broker_error (self, rq, 401, "wrong session token");
            return;
        }
    }
    if (self->state == BROKER_SHUTDOWN && !kernel) {
        broker_error (self, rq, 503, "the kernel is shutting down");
        return;
    }
    bool enrolled = false;
    if (enrolling && !s_hello_enroll (self, rq, sysid, sizeof sysid))
        return;
    if (enrolling)
        enrolled = true;
    if (!kernel && !s_hello_key_ok (self, rq, sysid))
        return;
    if (strncmp (sysid, "kernel.", 7) == 0 && !kernel) {
        broker_error (self, rq, 403,
                      "system ids starting with \"kernel.\" "
                      "are reserved for the kernel's actors");
        return;
    }
    broker_session_t *s = rq->session;
    if (s && !streq (s->sys->id, sysid)) {
        char reason[200];
        snprintf (reason, sizeof reason,
                  "this connection is docked as \"%s\"; "
                  "send BYE before docking as another system",
                  s->sys->id);
        broker_error (self, rq, 409, reason);
        return;
    }
    broker_sys_t *sys = broker_sys_find (self, sysid);
    bool resumed = false;
    if (!s && sys && sys->session && r->resume.ptr
        && s_resumable (sys->session, r->resume)) {
        /*  The same session on a new connection (docs/PROTOCOL.md,
            "Resuming a session"). */
        s = sys->session;
        broker_session_rebind (self, s, rq->rid, rq->ridlen);
        /*  Live from now: the old connection's silence is not this one's. */
        broker_touch (self, s, now);
        rq->session = s;
        resumed = true;
    }
    if (!s && sys && sys->session) {
        broker_session_t *other = sys->session;
        /*  A hosted session is live while its host is (a kernel actor,
            which never goes silent). */
        if (!other->dead
            && (other->host
                || other->last_active
                       >= now - 3 * (int64_t) self->cfg->heartbeat_ms)) {
            char reason[200];
            snprintf (reason, sizeof reason,
                      "system \"%s\" is docked on "
                      "another live connection",
                      sysid);
            broker_error (self, rq, 409, reason);
            return;
        }
        /*  The other connection went silent: it is over. */
        broker_undock (self, other, "replaced by a new connection", false);
    }
    if (!s && !kernel && !rq->hostlen
        && self->nsessions - self->nkernel - self->nhosted
               >= self->cfg->max_sessions) {
        broker_error (self, rq, 429, "too many sessions");
        return;
    }
    int64_t wall = hal_clock_wall_ms ();
    bool fresh = !s;
    if (!s) {
        sys = broker_sys_get (self, sysid, wall);
        s = (broker_session_t *) calloc (1, sizeof *s);
        if (!sys || !s) {
            free (s);
            broker_error (self, rq, 500, "out of memory");
            return;
        }
        memcpy (s->rid, rq->rid, rq->ridlen);
        s->ridlen = (uint8_t) rq->ridlen;
        s->sys = sys;
        uint8_t raw[16];
        randombytes_buf (raw, sizeof raw);
        sodium_bin2hex (s->session_id, sizeof s->session_id, raw, sizeof raw);
        s->docked_at = wall;
        chan_map_init (&s->grants);
        struct {
            uint8_t len;
            uint8_t b[BROKER_RID_MAX];
        } k;
        k.len = s->ridlen;
        memcpy (k.b, s->rid, s->ridlen);
        if (zhashx_insert (self->sessions, &k, s) != 0) {
            free (s);
            broker_error (self, rq, 500, "out of memory");
            return;
        }
        if (rq->hostlen) {
            /*  A hosted session: on its host's list, ending with it. */
            s->hostlen = rq->hostlen;
            s->host = broker_session_find (self, rq->rid, rq->hostlen);
            s->hosted_next = s->host->hosted;
            if (s->hosted_next)
                s->hosted_next->hosted_prev = s;
            s->host->hosted = s;
            self->nhosted++;
        }
        sys->session = s;
        self->nsessions++;
        if (kernel)
            self->nkernel++;
        broker_touch (self, s, now);
        rq->session = s;
        zsys_info ("broker: %s docked%s", sysid,
                   kernel          ? " (kernel)"
                   : r->privileged ? " (privileged)"
                                   : "");
        if (kernel && self->state == BROKER_BOOTING
            && streq (sysid, "kernel.heartbeat")) {
            self->state = BROKER_RUNNING;
            zsys_info ("broker: kernel %s running", self->kernel_id);
        }
    } else {
        /*  HELLO again on the same connection: grants are made anew. */
        broker_grants_clear (s);
        chan_map_init (&s->grants);
    }
    s->privileged = r->privileged;
    s->kernel = kernel;
    sys->last_seen = wall;
    {
        uint8_t val[16];
        memcpy (val, &sys->first_seen, 8);
        memcpy (val + 8, &sys->last_seen, 8);
        hal_store_put (self->store, HAL_DB_SYSTEMS, sys->id, strlen (sys->id),
                       val, sizeof val);
    }
    s_add_common_grants (self, s);
    free (s->hello_chans);
    s->hello_chans = NULL;
    s->hello_len = 0;
    if (r->channels.ptr) {
        s_hello_grants (self, s, r->channels);
        /*  Kept to grant again after a policy reload. */
        s->hello_chans =
            (uint8_t *) malloc (r->channels.len ? r->channels.len : 1);
        if (s->hello_chans) {
            memcpy (s->hello_chans, r->channels.ptr, r->channels.len);
            s->hello_len = r->channels.len;
        }
    }
    broker_caps_apply_all (self, s);
    if (fresh || resumed) {
        s_session_kind (s, rq->peer);
        s_session_auth (s, rq);
    }
    if (fresh) {
        broker_event (self, "dock", s, NULL);
        if (!kernel)
            broker_audit (self, "dock", sysid, NULL, "ok",
                          enrolled          ? "enrolled"
                          : r->privileged   ? "privileged"
                          : s->curve_key[0] ? "curve"
                                            : NULL);
    } else if (resumed) {
        broker_event (self, "reconnect", s, NULL);
        broker_audit (self, "dock", sysid, NULL, "ok", "resumed");
    }

    msgpack_packer pk;
    broker_begin (self, rq,
                  5 + (r->resume.ptr ? 1 : 0) + (enrolled ? 1 : 0) + 1, &pk);
    if (r->resume.ptr) {
        chan_pack_str (&pk, "resumed", 7);
        msgpack_pack_bool (&pk, resumed);
    }
    if (enrolled) {
        chan_pack_str (&pk, "enrolled", 8);
        msgpack_pack_bool (&pk, true);
    }
    chan_pack_str (&pk, "system", 6);
    chan_pack_cstr (&pk, sysid);
    chan_pack_str (&pk, "session", 7);
    chan_pack_cstr (&pk, s->session_id);
    chan_pack_str (&pk, "kernel", 6);
    chan_pack_cstr (&pk, self->kernel_id);
    chan_pack_str (&pk, "grants", 6);
    s_pack_grants (s, &pk);
    chan_pack_str (&pk, "heartbeat_ms", 12);
    msgpack_pack_uint32 (&pk, self->cfg->heartbeat_ms);
    broker_reply (self, rq, OUT_OK, false);
    /*  What waited in the mailbox comes after the OK. */
    broker_mbox_pump (self, sys);
}

/*  ---- WRITE / SEND --------------------------------------------------- */

/*  OK {req, id} for one message; OK {req, ids: [...]} for a batch. */
static void
s_reply_ids (broker_t *self, broker_rq_t *rq, const s_entry_t *e, size_t n,
             bool batch, bool durable)
{
    msgpack_packer pk;
    broker_begin (self, rq, 2, &pk);
    if (!batch) {
        chan_pack_str (&pk, "id", 2);
        chan_pack_str (&pk, e[0].id, CHAN_ID_LEN);
    } else {
        chan_pack_str (&pk, "ids", 3);
        msgpack_pack_array (&pk, n);
        for (size_t i = 0; i < n; i++)
            chan_pack_str (&pk, e[i].id, CHAN_ID_LEN);
    }
    broker_reply (self, rq, OUT_OK, durable);
}

static void
s_reply_id (broker_t *self, broker_rq_t *rq, const char *id, bool durable)
{
    s_entry_t e;
    memcpy (e.id, id, CHAN_ID_LEN);
    s_reply_ids (self, rq, &e, 1, false, durable);
}

/*  A subscriber whose pipe is full cannot keep up: its subscription ends
    and it is told so (DROPPED). Call while iterating subscribers from the
    end. */
static void
s_drop_slow (broker_t *self, broker_chan_t *ch, broker_session_t *s,
             chan_sub_t *sub)
{
    self->dropped_subs++;
    zsys_warning ("broker: %s dropped from %s: too slow", s->sys->id, ch->name);
    for (size_t j = 0; j < s->nsubs; j++)
        if (s->subs[j] == sub) {
            s_end_sub (self, s, j, ch,
                       "slow subscriber: its queue reached the kernel's "
                       "limit; subscribe again to resume (SUB since replays "
                       "what is retained)");
            return;
        }
}

/*  Which subscribers s_fan_out serves. */
enum { S_TO_ALL, S_TO_SINGLE, S_TO_BATCHED };

/*  Sends body (a MSG or MSGS) to the subscribers of ch that `to` selects,
    sharing proto's bytes (zmq_msg_copy); closes proto. */
static void
s_fan_out (broker_t *self, broker_chan_t *ch, zmq_msg_t *proto, int cmd, int to)
{
    chan_bcast_t *b = ch->bcast;
    const char *word = cmd == OUT_MSGS ? "MSGS" : "MSG";
    size_t wlen = cmd == OUT_MSGS ? 4 : 3;
    for (size_t i = chan_bcast_nsubs (b); i-- > 0;) {
        chan_sub_t *sub = chan_bcast_sub (b, i);
        if (to != S_TO_ALL && sub->batch != (to == S_TO_BATCHED))
            continue;
        broker_session_t *s = (broker_session_t *) sub->owner;
        if (s->dead || s->sys->paused)
            continue;
        int rc = s->outq_head ? -1 : broker_send_rid (self, s);
        if (rc < 0) {
            if (!s->outq_head && errno == EHOSTUNREACH)
                broker_mark_dead (self, s);
            else
                s_drop_slow (self, ch, s, sub);
            continue;
        }
        zmq_send (self->router, word, wlen, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_msg_t copy;
        zmq_msg_init (&copy);
        zmq_msg_copy (&copy, proto);
        if (zmq_msg_send (&copy, self->router,
                          ZMQ_DONTWAIT | (s->hostlen ? ZMQ_SNDMORE : 0))
            < 0)
            zmq_msg_close (&copy);
        broker_send_slot (self, s);
        s->msgs_out++;
    }
    zmq_msg_close (proto);
}

/*  Writes the head of a {sub: NAME, <key>: ...} body; returns its length
    (at most 8 + 255 + 5). */
static size_t
s_sub_head (uint8_t *p, const char *name, size_t namelen, const char *key,
            size_t keylen)
{
    size_t hl = 0;
    p[hl++] = 0x82;
    memcpy (p + hl, "\xa3sub", 4);
    hl += 4;
    if (namelen < 32)
        p[hl++] = (uint8_t) (0xa0 | namelen);
    else {
        p[hl++] = 0xd9;
        p[hl++] = (uint8_t) namelen;
    }
    memcpy (p + hl, name, namelen);
    hl += namelen;
    p[hl++] = (uint8_t) (0xa0 | keylen);
    memcpy (p + hl, key, keylen);
    return hl + keylen;
}

/*  Publishes the n messages of one WRITE on broadcast channel ch: each as
    a MSG {sub, msg} to subscribers without batch (and into the retention
    ring and the tap), and, when n > 1, all of them as one
    MSGS {sub, msgs: [envelope...]} to subscribers with batch. */
static void
s_publish (broker_t *self, broker_chan_t *ch, const uint8_t *env,
           const s_entry_t *e, size_t n)
{
    chan_bcast_t *b = ch->bcast;
    size_t namelen = strlen (ch->name);
    size_t nsubs = chan_bcast_nsubs (b), nbatched = 0;
    for (size_t i = 0; n > 1 && i < nsubs; i++) /* one message: MSG for all */
        nbatched += chan_bcast_sub (b, i)->batch;
    bool tap = self->tap && chan_bcast_public (b) && self->tap_subs > 0;
    bool singles = nsubs > nbatched || tap || chan_bcast_retain (b) > 0;
    self->published += n;

    for (size_t k = 0; k < n; k++) {
        if (!singles) {
            chan_bcast_published_msg (b, e[k].seq, NULL, 0); /* counts */
            continue;
        }
        /*  The MSG body {sub: NAME, msg: ENVELOPE} is written once, straight
            into the message ZeroMQ sends; subscribers share it. */
        uint8_t head[300];
        size_t hl = s_sub_head (head, ch->name, namelen, "msg", 3);
        size_t blen = hl + 1 + e[k].len;
        zmq_msg_t proto;
        if (zmq_msg_init_size (&proto, blen) != 0)
            return;
        uint8_t *body = (uint8_t *) zmq_msg_data (&proto);
        memcpy (body, head, hl);
        body[hl] = 0x80 | CHAN_ENV_PAIRS; /* the envelope map, no attempt */
        memcpy (body + hl + 1, env + e[k].off, e[k].len);
        /*  Kept and mirrored before the sends, which may hand proto itself
            to the last subscriber. */
        chan_bcast_published_msg (b, e[k].seq, body, blen);
        if (tap) {
            if (zmq_send (self->tap, ch->name, namelen,
                          ZMQ_SNDMORE | ZMQ_DONTWAIT)
                >= 0)
                zmq_send (self->tap, body + hl, blen - hl, ZMQ_DONTWAIT);
        }
        if (nsubs > nbatched)
            s_fan_out (self, ch, &proto, OUT_MSG,
                       nbatched ? S_TO_SINGLE : S_TO_ALL);
        else
            zmq_msg_close (&proto);
    }
    if (!nbatched)
        return;
    uint8_t head[300];
    size_t hl = s_sub_head (head, ch->name, namelen, "msgs", 4);
    size_t blen = hl + 5;
    for (size_t k = 0; k < n; k++)
        blen += 1 + e[k].len;
    zmq_msg_t proto;
    if (zmq_msg_init_size (&proto, blen) != 0)
        return;
    uint8_t *p = (uint8_t *) zmq_msg_data (&proto);
    memcpy (p, head, hl);
    p += hl;
    *p++ = 0xdd; /* array 32: n is at most AAAX_MAX_BATCH */
    for (int i = 3; i >= 0; i--)
        *p++ = (uint8_t) (n >> (8 * i));
    for (size_t k = 0; k < n; k++) {
        *p++ = 0x80 | CHAN_ENV_PAIRS;
        memcpy (p, env + e[k].off, e[k].len);
        p += e[k].len;
    }
    s_fan_out (self, ch, &proto, OUT_MSGS, S_TO_BATCHED);
}

/*  A transient mailbox message: pushed once to the recipient's live
    session, never stored, never redelivered (no attempt, no ACK needed). */
static void
s_push_transient (broker_t *self, broker_sys_t *sys, const s_entry_t *e,
                  size_t n)
{
    for (size_t k = 0; k < n && !sys->session->dead; k++)
        broker_send_mbox_msg (self, sys, self->scratch.data + e[k].off,
                              e[k].len, 0);
}

static void
s_write (broker_t *self, broker_rq_t *rq, int64_t now)
{
    chan_req_t *r = &rq->req;
    broker_session_t *s = rq->session;
    s_target_t t;
    chan_span_t to = r->to;
    if (r->cmd == CHAN_CMD_SEND) {
        char name[NAME_BUF + 1];
        char sysid[NAME_BUF];
        if (!s_span_cstr (r->to, sysid, sizeof sysid)
            || !s_valid_system (sysid)) {
            broker_error (self, rq, 404, "no such system");
            return;
        }
        snprintf (name, sizeof name, "@%s", sysid);
        chan_span_t span = { name, (uint32_t) strlen (name) };
        if (!s_resolve (self, rq, span, &t))
            return;
    } else if (!s_resolve (self, rq, r->chan, &t))
        return;
    bool batch = r->nbatch > 0;
    uint32_t n = batch ? r->nbatch : 1;
    size_t bytes = batch ? r->batch.len : r->data.len;
    if (t.sys) {
        to.ptr = t.sys->id;
        to.len = (uint32_t) strlen (t.sys->id);
        if (!s_mbox_writable (self, s, t.sys)) {
            broker_error (self, rq, 403,
                          "the policy denies writing this "
                          "mailbox");
            return;
        }
        if (r->transient) {
            broker_session_t *rs = t.sys->session;
            if (!rs || rs->dead || t.sys->paused) {
                broker_error (self, rq, 404,
                              "the recipient is not docked or is paused: a "
                              "transient message is delivered at once or "
                              "not at all");
                return;
            }
        } else if (t.sys->mbox.count > self->cfg->mailbox_max_len
                   || n > self->cfg->mailbox_max_len - t.sys->mbox.count) {
            broker_error (self, rq, 429, "the recipient's mailbox is full");
            return;
        }
    } else {
        if (!s_has (s, t.ch, R_WRITE)
            || (streq (t.ch->name, "heartbeat") && !s->kernel)) {
            s_forbidden (self, rq, "write", t.name,
                         "list it in HELLO's channels (the policy must allow "
                         "chan.write)");
            return;
        }
        if (t.ch->queue && r->transient) {
            broker_error (self, rq, 400,
                          "\"transient\" is for mailboxes (and broadcast "
                          "channels, which keep nothing anyway): a "
                          "work-queue keeps every message");
            return;
        }
        if (t.ch->queue
            && chan_queue_admit_n (t.ch->queue, n, bytes + 128 * (size_t) n)
                   != 0) {
            broker_error (self, rq, 429,
                          "the queue is full (max_len or "
                          "max_bytes)");
            return;
        }
    }
    const void *target = t.sys ? (const void *) t.sys : (const void *) t.ch;
    bool durable = t.sys ? !r->transient
                         : (t.ch->queue && chan_queue_durable (t.ch->queue));
    double ts = hal_clock_wall_s ();
    int64_t wall = (int64_t) (ts * 1000.0);
    if (r->key.ptr) {
        char id[CHAN_ID_LEN];
        if (chan_idem_get (self->idem, t.name, s->sys->id, r->key.ptr,
                           r->key.len, wall, id)) {
            /*  A repeat: the first write's id, once that write is durable
                (it may still be in the batch being committed). */
            if (!r->noreply)
                s_reply_id (self, rq, id, durable);
            return;
        }
    }
    if (!s_rate_ok (self, s, target, now, n)) {
        broker_error (self, rq, 429, "rate limit reached");
        return;
    }
    /*  Every message of the batch gets its id and envelope first; nothing
        is written until all are built. */
    s_entry_t *e = self->entries;
    chan_buf_t *pairs = &self->scratch;
    chan_buf_reset (pairs);
    size_t pos = 0;
    const char *from = s->sys->id;
    size_t fromlen = strlen (from), namelen = strlen (t.name);
    for (uint32_t k = 0; k < n; k++) {
        chan_span_t data = r->data;
        if (batch && !chan_req_next_value (r->batch, &pos, &data)) {
            broker_error (self, rq, 500, "a batch entry could not be read");
            return;
        }
        e[k].seq = broker_next_id (self, wall, e[k].id);
        e[k].off = (uint32_t) pairs->len;
        chan_env_pairs (pairs, e[k].id, CHAN_ID_LEN, ts, from, fromlen, t.name,
                        namelen, to.ptr, to.len, r->corr.ptr, r->corr.len,
                        data.ptr, data.len);
        e[k].len = (uint32_t) (pairs->len - e[k].off);
    }
    if (pairs->oom) {
        broker_error (self, rq, 500, "out of memory");
        return;
    }
    uint32_t done = n;
    int rc = 0;
    if (t.sys && r->transient)
        s_push_transient (self, t.sys, e, n);
    else if (t.sys || t.ch->queue) {
        for (done = 0; done < n; done++) {
            const uint8_t *p = pairs->data + e[done].off;
            rc = t.sys ? chan_mbox_append (&t.sys->mbox, self->store, t.sys->id,
                                           e[done].seq, p, e[done].len)
                       : chan_queue_append (t.ch->queue, e[done].seq, p,
                                            e[done].len);
            if (rc != 0)
                break;
        }
    } else
        s_publish (self, t.ch, pairs->data, e, n);
    if (rc != 0) {
        char reason[120];
        snprintf (reason, sizeof reason,
                  "out of memory (%u of the batch's %u messages were "
                  "written)",
                  done, n);
        broker_error (self, rq, 500, batch ? reason : "out of memory");
        if (done && t.sys)
            broker_mbox_pump (self, t.sys);
        return;
    }
    if (r->key.ptr
        && chan_idem_put (self->idem, t.name, s->sys->id, r->key.ptr,
                          r->key.len, e[0].id, durable, wall)
               != 0)
        zsys_warning ("broker: could not remember an idempotency key");
    if (t.ch)
        t.ch->writes += n;
    if (!r->noreply)
        s_reply_ids (self, rq, e, n, batch, durable);
    if (t.sys) {
        if (!r->transient)
            broker_mbox_pump (self, t.sys);
    } else if (t.ch->queue && t.ch->wait_head)
        broker_serve_waiters (self, t.ch, now);
}

/*  ---- CLAIM / ACK / NACK -------------------------------------------- */

void
broker_claim_reply (broker_t *self, broker_rq_t *rq, broker_chan_t *ch,
                    broker_session_t *s, uint32_t max, uint32_t lease_ms,
                    int64_t now, bool wait)
{
    chan_qmsg_t **got = self->claim_buf;
    size_t n = max ? chan_queue_claim (ch->queue, &s->sys->holder, max,
                                       lease_ms, now, got)
                   : 0;
    if (n)
        broker_queue_due (self, ch);
    if (n == 0 && wait) {
        broker_waiter_t *w = (broker_waiter_t *) calloc (1, sizeof *w);
        if (!w || s->nwaiters >= BROKER_WAITERS_MAX) {
            free (w);
            broker_error (self, rq, 429,
                          "too many long-poll CLAIMs waiting "
                          "on this session");
            return;
        }
        chan_heap_node_init (&w->node);
        w->session = s;
        w->chan = ch;
        w->req = rq->req.req;
        w->max = max;
        w->lease_ms = lease_ms;
        if (chan_heap_push (&self->waiter_heap, &w->node,
                            now + (int64_t) rq->req.wait_ms)
            != 0) {
            free (w);
            broker_error (self, rq, 500, "out of memory");
            return;
        }
        w->prev = ch->wait_tail;
        if (ch->wait_tail)
            ch->wait_tail->next = w;
        else
            ch->wait_head = w;
        ch->wait_tail = w;
        w->snext = s->waiters;
        if (s->waiters)
            s->waiters->sprev = w;
        s->waiters = w;
        s->nwaiters++;
        return;
    }
    msgpack_packer pk;
    broker_begin (self, rq, 2, &pk);
    chan_pack_str (&pk, "msgs", 4);
    msgpack_pack_array (&pk, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *pairs = chan_qmsg_pairs (got[i], &len);
        chan_env_map (&self->out, pairs, len, chan_qmsg_attempt (got[i]));
    }
    broker_reply (self, rq, OUT_OK, false);
}

static void
s_claim (broker_t *self, broker_rq_t *rq, int64_t now)
{
    s_target_t t;
    if (!s_resolve (self, rq, rq->req.chan, &t))
        return;
    broker_session_t *s = rq->session;
    if (t.sys || !t.ch->queue || !s_has (s, t.ch, R_CLAIM)) {
        s_forbidden (self, rq, "claim", t.name,
                     t.sys          ? "mailboxes are pushed, not claimed"
                     : !t.ch->queue ? "CLAIM needs a work-queue"
                                    : "list it in HELLO's channels (the "
                                      "policy must allow chan.claim)");
        return;
    }
    uint32_t lease = rq->req.fields & CHAN_F_LEASE_MS
                         ? (uint32_t) rq->req.lease_ms
                         : chan_queue_lease_ms (t.ch->queue);
    broker_claim_reply (self, rq, t.ch, s, (uint32_t) rq->req.max, lease, now,
                        rq->req.wait_ms > 0);
}

static void
s_ack (broker_t *self, broker_rq_t *rq, int64_t now)
{
    chan_req_t *r = &rq->req;
    bool nack = r->cmd == CHAN_CMD_NACK;
    s_target_t t;
    if (!s_resolve (self, rq, r->chan, &t))
        return;
    broker_session_t *s = rq->session;
    if (t.sys) {
        if (t.sys != s->sys || nack) {
            s_forbidden (self, rq, nack ? "claim" : "read", t.name,
                         nack ? "NACK applies to work-queues; a mailbox "
                                "message stays until acknowledged"
                              : "only the owner acknowledges a mailbox");
            return;
        }
    } else if (!t.ch->queue || !s_has (s, t.ch, R_CLAIM)) {
        s_forbidden (self, rq, "claim", t.name,
                     !t.ch->queue ? "ACK and NACK apply to work-queues and "
                                    "mailboxes"
                                  : NULL);
        return;
    }
    uint32_t count = 0;
    size_t pos = 0;
    chan_span_t span;
    int64_t wall = hal_clock_wall_ms ();
    while (chan_req_next_str (r->ids, &pos, &span)) {
        uint64_t seq;
        if (!chan_id_parse (span.ptr, span.len, &seq, NULL))
            continue;
        bool done;
        if (t.sys)
            done = chan_mbox_ack (&t.sys->mbox, self->store, t.sys->id, seq);
        else if (nack)
            done = chan_queue_nack (t.ch->queue, &s->sys->holder, seq,
                                    (uint32_t) r->delay_ms, now, wall);
        else
            done = chan_queue_ack (t.ch->queue, &s->sys->holder, seq);
        count += done;
    }
    msgpack_packer pk;
    broker_begin (self, rq, 2, &pk);
    chan_pack_cstr (&pk, nack ? "requeued" : "acked");
    msgpack_pack_uint32 (&pk, count);
    bool durable = t.sys || chan_queue_durable (t.ch->queue);
    broker_reply (self, rq, OUT_OK, durable && count > 0);
    if (t.sys)
        broker_mbox_pump (self, t.sys);
    else if (nack && count) {
        broker_queue_due (self, t.ch);
        broker_serve_waiters (self, t.ch, now);
        chan_queue_t *dlq = chan_queue_dlq (t.ch->queue);
        broker_chan_t *dch =
            dlq ? broker_chan_find (self, chan_queue_name (dlq)) : NULL;
        if (dch)
            broker_serve_waiters (self, dch, now);
    }
}

/*  ---- SUB / UNSUB ---------------------------------------------------- */

static void
s_replay_cb (void *arg, const void *body, size_t len)
{
    void **a = (void **) arg;
    broker_t *self = (broker_t *) a[0];
    broker_session_t *s = (broker_session_t *) a[1];
    broker_send_ctl (self, s->rid, s->ridlen, s->hostlen, s, OUT_MSG, body,
                     len);
}

static chan_sub_t *
s_find_sub (broker_session_t *s, broker_chan_t *ch, size_t *index)
{
    for (size_t i = 0; i < s->nsubs; i++)
        if (s->subs[i]->chan == ch->bcast) {
            if (index)
                *index = i;
            return s->subs[i];
        }
    return NULL;
}

static void
s_ok_empty (broker_t *self, broker_rq_t *rq)
{
    msgpack_packer pk;
    broker_begin (self, rq, 1, &pk);
    broker_reply (self, rq, OUT_OK, false);
}

static void
s_sub (broker_t *self, broker_rq_t *rq)
{
    s_target_t t;
    if (!s_resolve (self, rq, rq->req.chan, &t))
        return;
    broker_session_t *s = rq->session;
    if (t.sys) {
        if (t.sys != s->sys) {
            s_forbidden (self, rq, "read", t.name,
                         "a mailbox is read by its owner only");
            return;
        }
        s_ok_empty (self, rq); /* the own mailbox is always pushed */
        return;
    }
    if (!t.ch->bcast || !s_has (s, t.ch, R_READ)) {
        s_forbidden (self, rq, "read", t.name,
                     !t.ch->bcast ? "SUB needs a broadcast channel (CLAIM "
                                    "reads a work-queue)"
                                  : "list it in HELLO's channels (the policy "
                                    "must allow chan.read)");
        return;
    }
    chan_sub_t *have = s_find_sub (s, t.ch, NULL);
    if (have)
        have->batch = rq->req.batch_flag; /* SUB again changes the mode */
    else {
        if (s->nsubs >= BROKER_SUBS_MAX) {
            broker_error (self, rq, 429, "too many subscriptions");
            return;
        }
        if (s->nsubs == s->capsubs) {
            size_t cap = s->capsubs ? s->capsubs * 2 : 4;
            chan_sub_t **subs =
                (chan_sub_t **) realloc (s->subs, cap * sizeof *subs);
            if (!subs) {
                broker_error (self, rq, 500, "out of memory");
                return;
            }
            s->subs = subs;
            s->capsubs = cap;
        }
        chan_sub_t *sub = (chan_sub_t *) calloc (1, sizeof *sub);
        if (!sub) {
            broker_error (self, rq, 500, "out of memory");
            return;
        }
        sub->owner = s;
        sub->batch = rq->req.batch_flag;
        if (chan_bcast_subscribe (t.ch->bcast, sub) != 0) {
            free (sub);
            broker_error (self, rq, 500, "out of memory");
            return;
        }
        s->subs[s->nsubs++] = sub;
    }
    s_ok_empty (self, rq);
    if (rq->req.since.ptr) {
        void *arg[2] = { self, s };
        chan_bcast_replay (t.ch->bcast, rq->req.since_seq, s_replay_cb, arg);
    }
}

static void
s_unsub (broker_t *self, broker_rq_t *rq)
{
    s_target_t t;
    if (!s_resolve (self, rq, rq->req.chan, &t))
        return;
    broker_session_t *s = rq->session;
    size_t i;
    chan_sub_t *sub = t.ch && t.ch->bcast ? s_find_sub (s, t.ch, &i) : NULL;
    if (sub) {
        chan_bcast_unsubscribe (sub);
        s->subs[i] = s->subs[--s->nsubs];
        free (sub);
    }
    s_ok_empty (self, rq);
}

/*  ---- STAT / CTL ----------------------------------------------------- */

static const char *
s_state_name (broker_state_t st)
{
    switch (st) {
    case BROKER_BOOTING: return "booting";
    case BROKER_RUNNING: return "running";
    case BROKER_DEGRADED: return "degraded";
    case BROKER_SHUTDOWN: return "shutdown";
    }
    return "?";
}

static size_t
s_depth (const broker_chan_t *ch)
{
    return ch->queue ? chan_queue_depth (ch->queue)
                     : chan_bcast_retained (ch->bcast);
}

void
broker_stat_heartbeat (broker_t *self, msgpack_packer *pk)
{
    int64_t now = hal_clock_mono_ms ();
    msgpack_pack_map (pk, 10);
    /*  Extension: how the endpoints are secured (docs/REMOTE.md). */
    chan_pack_str (pk, "insecure", 8);
    msgpack_pack_bool (pk, self->insecure_plain);
    {
        const broker_config_t *cfg = self->cfg;
        bool tap = cfg->tap && *cfg->tap;
        chan_pack_str (pk, "endpoints", 9);
        msgpack_pack_array (pk, (uint32_t) cfg->nbinds + (tap ? 1 : 0));
        for (size_t i = 0; i < cfg->nbinds + (tap ? 1 : 0); i++) {
            const char *ep = i < cfg->nbinds ? cfg->binds[i] : cfg->tap;
            msgpack_pack_map (pk, 3);
            chan_pack_str (pk, "endpoint", 8);
            chan_pack_cstr (pk, ep);
            chan_pack_str (pk, "role", 4);
            chan_pack_cstr (pk, i < cfg->nbinds ? "command" : "tap");
            chan_pack_str (pk, "curve", 5);
            msgpack_pack_bool (pk, broker_config_endpoint_curve (cfg, ep));
        }
    }
    chan_pack_str (pk, "kernel_id", 9);
    chan_pack_cstr (pk, self->kernel_id);
    chan_pack_str (pk, "timestamp", 9);
    msgpack_pack_double (pk, hal_clock_wall_s ());
    chan_pack_str (pk, "uptime_s", 8);
    msgpack_pack_double (pk, (double) (now - self->boot_mono) / 1000.0);
    chan_pack_str (pk, "state", 5);
    chan_pack_cstr (pk, s_state_name (self->state));
    chan_pack_str (pk, "systems", 7);
    msgpack_pack_array (pk, (uint32_t) self->nsessions);
    uint64_t grants = 0;
    for (broker_session_t *s = self->lru_head; s; s = s->lru_next) {
        chan_pack_cstr (pk, s->sys->id);
        grants += s_count_grants (s);
    }
    chan_pack_str (pk, "capabilities_active", 19);
    msgpack_pack_uint64 (pk, grants);
    chan_pack_str (pk, "channels", 8);
    msgpack_pack_map (pk, (uint32_t) zhashx_size (self->channels));
    for (broker_chan_t *ch = (broker_chan_t *) zhashx_first (self->channels);
         ch; ch = (broker_chan_t *) zhashx_next (self->channels)) {
        chan_pack_cstr (pk, ch->name);
        msgpack_pack_uint64 (pk, s_depth (ch));
    }
    /*  Extension: the state of every loaded app (a failed one included,
        which is not among the docked systems). */
    chan_pack_str (pk, "apps", 4);
    msgpack_pack_map (pk, (uint32_t) zhashx_size (self->apps));
    for (broker_sys_t *sys = (broker_sys_t *) zhashx_first (self->apps); sys;
         sys = (broker_sys_t *) zhashx_next (self->apps)) {
        chan_pack_cstr (pk, sys->id);
        chan_pack_cstr (pk, sys->app_state);
    }
}

static void
s_stat (broker_t *self, broker_rq_t *rq)
{
    if (!rq->session->privileged && !rq->session->kernel) {
        broker_error (self, rq, 403, "STAT needs a privileged session");
        return;
    }
    msgpack_packer pk;
    broker_begin (self, rq, 8, &pk);
    chan_pack_str (&pk, "heartbeat", 9);
    broker_stat_heartbeat (self, &pk);
    chan_pack_str (&pk, "version", 7);
    chan_pack_cstr (&pk, AAAX_VERSION_STRING);
    chan_pack_str (&pk, "data", 4);
    chan_pack_cstr (&pk, self->data_dir);
    chan_pack_str (&pk, "counters", 8);
    msgpack_pack_map (&pk, 6);
    chan_pack_cstr (&pk, "requests");
    msgpack_pack_uint64 (&pk, self->requests);
    chan_pack_cstr (&pk, "errors");
    msgpack_pack_uint64 (&pk, self->errors);
    chan_pack_cstr (&pk, "published");
    msgpack_pack_uint64 (&pk, self->published);
    chan_pack_cstr (&pk, "dropped_subscribers");
    msgpack_pack_uint64 (&pk, self->dropped_subs);
    chan_pack_cstr (&pk, "known_systems");
    msgpack_pack_uint64 (&pk, zhashx_size (self->systems));
    chan_pack_cstr (&pk, "idempotency_keys");
    msgpack_pack_uint64 (&pk, chan_idem_size (self->idem));
    hal_store_stats_t st;
    hal_store_stats (self->store, &st);
    chan_pack_str (&pk, "store", 5);
    msgpack_pack_map (&pk, 5);
    chan_pack_cstr (&pk, "commits");
    msgpack_pack_uint64 (&pk, st.commits);
    chan_pack_cstr (&pk, "ops");
    msgpack_pack_uint64 (&pk, st.ops);
    chan_pack_cstr (&pk, "failures");
    msgpack_pack_uint64 (&pk, st.failures);
    chan_pack_cstr (&pk, "max_batch");
    msgpack_pack_uint64 (&pk, st.max_batch);
    chan_pack_cstr (&pk, "commit_us");
    msgpack_pack_uint64 (&pk, st.commit_us);
    chan_pack_str (&pk, "channels", 8);
    msgpack_pack_map (&pk, (uint32_t) zhashx_size (self->channels));
    for (broker_chan_t *ch = (broker_chan_t *) zhashx_first (self->channels);
         ch; ch = (broker_chan_t *) zhashx_next (self->channels)) {
        chan_pack_cstr (&pk, ch->name);
        if (ch->queue) {
            msgpack_pack_map (&pk, 7);
            chan_pack_cstr (&pk, "kind");
            chan_pack_cstr (&pk, "work-queue");
            chan_pack_cstr (&pk, "durable");
            if (chan_queue_durable (ch->queue))
                msgpack_pack_true (&pk);
            else
                msgpack_pack_false (&pk);
            chan_pack_cstr (&pk, "depth");
            msgpack_pack_uint64 (&pk, chan_queue_depth (ch->queue));
            chan_pack_cstr (&pk, "ready");
            msgpack_pack_uint64 (&pk, chan_queue_ready (ch->queue));
            chan_pack_cstr (&pk, "leased");
            msgpack_pack_uint64 (&pk, chan_queue_leased (ch->queue));
            chan_pack_cstr (&pk, "delayed");
            msgpack_pack_uint64 (&pk, chan_queue_delayed (ch->queue));
            chan_pack_cstr (&pk, "writes");
            msgpack_pack_uint64 (&pk, ch->writes);
        } else {
            msgpack_pack_map (&pk, 5);
            chan_pack_cstr (&pk, "kind");
            chan_pack_cstr (&pk, "broadcast");
            chan_pack_cstr (&pk, "public");
            if (chan_bcast_public (ch->bcast))
                msgpack_pack_true (&pk);
            else
                msgpack_pack_false (&pk);
            chan_pack_cstr (&pk, "subscribers");
            msgpack_pack_uint64 (&pk, chan_bcast_nsubs (ch->bcast));
            chan_pack_cstr (&pk, "retained");
            msgpack_pack_uint64 (&pk, chan_bcast_retained (ch->bcast));
            chan_pack_cstr (&pk, "published");
            msgpack_pack_uint64 (&pk, chan_bcast_published (ch->bcast));
        }
    }
    chan_pack_str (&pk, "sessions", 8);
    msgpack_pack_array (&pk, (uint32_t) self->nsessions);
    for (broker_session_t *s = self->lru_head; s; s = s->lru_next) {
        msgpack_pack_map (&pk, 8);
        chan_pack_cstr (&pk, "system");
        chan_pack_cstr (&pk, s->sys->id);
        chan_pack_cstr (&pk, "privileged");
        if (s->privileged)
            msgpack_pack_true (&pk);
        else
            msgpack_pack_false (&pk);
        chan_pack_cstr (&pk, "kernel");
        if (s->kernel)
            msgpack_pack_true (&pk);
        else
            msgpack_pack_false (&pk);
        chan_pack_cstr (&pk, "paused");
        if (s->sys->paused)
            msgpack_pack_true (&pk);
        else
            msgpack_pack_false (&pk);
        chan_pack_cstr (&pk, "since");
        msgpack_pack_double (&pk, (double) s->docked_at / 1000.0);
        chan_pack_cstr (&pk, "msgs_in");
        msgpack_pack_uint64 (&pk, s->msgs_in);
        chan_pack_cstr (&pk, "msgs_out");
        msgpack_pack_uint64 (&pk, s->msgs_out);
        chan_pack_cstr (&pk, "leases");
        msgpack_pack_uint64 (&pk, s->sys->holder.count);
    }
    broker_reply (self, rq, OUT_OK, false);
}

/*  CTL list: every docked system. */
static void
s_ctl_list (broker_t *self, broker_rq_t *rq)
{
    msgpack_packer pk;
    broker_begin (self, rq, 3, &pk);
    chan_pack_str (&pk, "insecure", 8);
    msgpack_pack_bool (&pk, self->insecure_plain);
    chan_pack_str (&pk, "systems", 7);
    /*  Apps that are not docked (failed, stopped, restarting) are listed
        too, with their state: `aaax ps` shows a failed app. */
    uint32_t down = 0;
    for (broker_sys_t *sys = (broker_sys_t *) zhashx_first (self->apps); sys;
         sys = (broker_sys_t *) zhashx_next (self->apps))
        if (!sys->session)
            down++;
    msgpack_pack_array (&pk, (uint32_t) self->nsessions + down);
    for (broker_sys_t *sys = (broker_sys_t *) zhashx_first (self->apps); sys;
         sys = (broker_sys_t *) zhashx_next (self->apps)) {
        if (sys->session)
            continue;
        msgpack_pack_map (&pk, 11);
        chan_pack_cstr (&pk, "id");
        chan_pack_cstr (&pk, sys->id);
        chan_pack_cstr (&pk, "kind");
        chan_pack_cstr (&pk, "app");
        chan_pack_cstr (&pk, "state");
        chan_pack_cstr (&pk, sys->app_state);
        chan_pack_cstr (&pk, "app_state");
        chan_pack_cstr (&pk, sys->app_state);
        chan_pack_cstr (&pk, "since");
        msgpack_pack_double (&pk, (double) sys->last_seen / 1000.0);
        chan_pack_cstr (&pk, "privileged");
        msgpack_pack_false (&pk);
        chan_pack_cstr (&pk, "session");
        msgpack_pack_nil (&pk);
        chan_pack_cstr (&pk, "msgs_in");
        msgpack_pack_uint64 (&pk, 0);
        chan_pack_cstr (&pk, "msgs_out");
        msgpack_pack_uint64 (&pk, 0);
        chan_pack_cstr (&pk, "leases");
        msgpack_pack_uint64 (&pk, sys->holder.count);
        chan_pack_cstr (&pk, "capabilities");
        msgpack_pack_uint32 (&pk, 0);
    }
    for (broker_session_t *s = self->lru_head; s; s = s->lru_next) {
        bool remote = s->kind && streq (s->kind, "remote");
        bool app = s->sys->app_state[0] != 0;
        bool curve = s->curve_key[0] != 0;
        msgpack_pack_map (&pk, 11 + (remote ? 1 : 0) + (app ? 1 : 0)
                                   + (curve ? 1 : 0));
        chan_pack_cstr (&pk, "auth");
        chan_pack_cstr (&pk, s->auth ? s->auth : "inproc");
        if (curve) {
            chan_pack_cstr (&pk, "key");
            chan_pack_cstr (&pk, s->curve_key);
        }
        if (app) {
            chan_pack_cstr (&pk, "app_state");
            chan_pack_cstr (&pk, s->sys->app_state);
        }
        chan_pack_cstr (&pk, "id");
        chan_pack_cstr (&pk, s->sys->id);
        chan_pack_cstr (&pk, "kind");
        chan_pack_cstr (&pk, s->kind ? s->kind : "local");
        chan_pack_cstr (&pk, "state");
        chan_pack_cstr (&pk, s->sys->paused ? "paused" : "docked");
        chan_pack_cstr (&pk, "since");
        msgpack_pack_double (&pk, (double) s->docked_at / 1000.0);
        chan_pack_cstr (&pk, "privileged");
        if (s->privileged)
            msgpack_pack_true (&pk);
        else
            msgpack_pack_false (&pk);
        chan_pack_cstr (&pk, "session");
        chan_pack_cstr (&pk, s->session_id);
        chan_pack_cstr (&pk, "msgs_in");
        msgpack_pack_uint64 (&pk, s->msgs_in);
        chan_pack_cstr (&pk, "msgs_out");
        msgpack_pack_uint64 (&pk, s->msgs_out);
        chan_pack_cstr (&pk, "leases");
        msgpack_pack_uint64 (&pk, s->sys->holder.count);
        chan_pack_cstr (&pk, "capabilities");
        uint32_t ncaps = 0;
        for (broker_cap_t *c = s->sys->caps; c; c = c->next)
            ncaps++;
        msgpack_pack_uint32 (&pk, ncaps);
        if (remote) {
            chan_pack_cstr (&pk, "peer");
            chan_pack_cstr (&pk, s->peer);
        }
    }
    broker_reply (self, rq, OUT_OK, false);
}

/*  CTL enroll (privileged): a one-time token with which a new agent's
    fresh CURVE key binds itself to a system id at its first HELLO. */
static void
s_ctl_enroll (broker_t *self, broker_rq_t *rq)
{
    chan_req_t *r = &rq->req;
    char sysid[NAME_BUF];
    if (!s_span_cstr (r->system, sysid, sizeof sysid) || !s_valid_system (sysid)
        || strncmp (sysid, "kernel.", 7) == 0) {
        broker_error (self, rq, 400,
                      "CTL enroll needs \"system\": a system id that does "
                      "not start with \"kernel.\"");
        return;
    }
    uint64_t ttl = (r->fields & CHAN_F_TTL_MS) ? r->ttl_ms : 600000;
    if (ttl < 1000 || ttl > 30ull * 86400000ull) {
        broker_error (self, rq, 400,
                      "CTL enroll: ttl_ms must be between 1000 (1 s) and "
                      "2592000000 (30 days)");
        return;
    }
    int64_t expires = hal_clock_wall_ms () + (int64_t) ttl;
    char token[HAL_CURVE_TOKEN_LEN + 1], err[300];
    int rc = hal_curve_enroll_new (self->enroll, sysid, expires, token, err,
                                   sizeof err);
    if (rc == AAAX_ELIMIT) {
        broker_error (self, rq, 429, err);
        return;
    }
    if (rc != 0) {
        zsys_error ("broker: enroll: %s", err);
        broker_error (self, rq, 500, "cannot record the enrollment token");
        return;
    }
    broker_session_t *by = rq->session;
    char why[200];
    snprintf (why, sizeof why, "token for %s, ttl %llu ms, by %s", sysid,
              (unsigned long long) ttl, by->sys->id);
    broker_audit (self, "enroll", sysid, "issue", "ok", why);
    msgpack_packer pk;
    broker_begin (self, rq, 4, &pk);
    chan_pack_str (&pk, "system", 6);
    chan_pack_cstr (&pk, sysid);
    chan_pack_str (&pk, "token", 5);
    chan_pack_cstr (&pk, token);
    chan_pack_str (&pk, "expires", 7);
    msgpack_pack_int64 (&pk, expires);
    broker_reply (self, rq, OUT_OK, false);
    sodium_memzero (token, sizeof token);
}

/*  CTL grant (kernel actors only): installs a capability's rights. */
static void
s_ctl_grant (broker_t *self, broker_rq_t *rq)
{
    chan_req_t *r = &rq->req;
    char sysid[NAME_BUF], cap[65], chan[NAME_BUF];
    if (!s_span_cstr (r->system, sysid, sizeof sysid)
        || !s_span_cstr (r->cap, cap, sizeof cap) || !cap[0]
        || !s_span_cstr (r->chan, chan, sizeof chan) || !r->rights.ptr
        || !(r->fields & CHAN_F_EXPIRES)) {
        broker_error (self, rq, 400,
                      "CTL grant needs system, cap, chan, rights and "
                      "expires");
        return;
    }
    broker_sys_t *sys = broker_sys_find (self, sysid);
    broker_chan_t *ch = broker_chan_find (self, chan);
    if (!sys || !ch) {
        broker_error (self, rq, 404,
                      !sys ? "no such system" : "no such channel");
        return;
    }
    uint8_t rights = s_rights_of (r->rights);
    if (!rights || (rights & ~s_kind_rights (ch))
        || (streq (chan, "heartbeat") && (rights & R_WRITE)) || ch->kernel) {
        char reason[400];
        snprintf (reason, sizeof reason,
                  "rights not available on \"%s\": a %s channel carries "
                  "%s%s",
                  chan, ch->bcast ? "broadcast" : "work-queue",
                  ch->bcast ? "read and write" : "write and claim",
                  ch->kernel ? "; kernel channels are not granted by "
                               "capability"
                             : "");
        broker_error (self, rq, 400, reason);
        return;
    }
    if (zhashx_lookup (self->caps, cap)) {
        broker_error (self, rq, 409, "a capability with this id exists");
        return;
    }
    broker_cap_t *c = (broker_cap_t *) calloc (1, sizeof *c);
    if (!c || zhashx_insert (self->caps, cap, sys) != 0) {
        free (c);
        broker_error (self, rq, 500, "out of memory");
        return;
    }
    snprintf (c->id, sizeof c->id, "%s", cap);
    c->chan = ch;
    c->rights = rights;
    c->expires_ms = r->expires > (uint64_t) INT64_MAX / 1000
                        ? INT64_MAX
                        : (int64_t) r->expires * 1000;
    c->next = sys->caps;
    sys->caps = c;
    if (c->expires_ms < self->cap_next_expiry)
        self->cap_next_expiry = c->expires_ms;
    if (sys->session)
        s_caps_apply (self, sys->session, ch, hal_clock_wall_ms ());
    s_ok_empty (self, rq);
}

static void
s_ctl_revoke (broker_t *self, broker_rq_t *rq)
{
    char cap[65];
    if (!s_span_cstr (rq->req.cap, cap, sizeof cap)) {
        broker_error (self, rq, 400, "CTL revoke needs cap");
        return;
    }
    broker_sys_t *sys = (broker_sys_t *) zhashx_lookup (self->caps, cap);
    if (!sys || !s_cap_remove (self, sys, cap)) {
        broker_error (self, rq, 404, "no such capability");
        return;
    }
    s_ok_empty (self, rq);
}

static void
s_ctl_reload (broker_t *self, broker_rq_t *rq)
{
    char err[600];
    if (broker_policy_reload (self, rq->session->sys->id, err, sizeof err)
        != 0) {
        broker_error (self, rq, 400, err);
        return;
    }
    msgpack_packer pk;
    broker_begin (self, rq, 5, &pk);
    chan_pack_str (&pk, "version", 7);
    msgpack_pack_uint64 (&pk, self->policy_version);
    chan_pack_str (&pk, "digest", 6);
    chan_pack_cstr (&pk, policy_digest (self->policy));
    chan_pack_str (&pk, "rules", 5);
    msgpack_pack_uint64 (&pk, policy_size (self->policy));
    chan_pack_str (&pk, "source", 6);
    chan_pack_cstr (&pk, self->policy_source);
    broker_reply (self, rq, OUT_OK, false);
}

static void
s_ctl (broker_t *self, broker_rq_t *rq, int64_t now)
{
    broker_session_t *s = rq->session;
    if (!s->privileged && !s->kernel) {
        broker_error (self, rq, 403, "CTL needs a privileged session");
        return;
    }
    char op[40], sysid[NAME_BUF];
    s_span_cstr (rq->req.op, op, sizeof op);
    if (streq (op, "list")) {
        s_ctl_list (self, rq);
        return;
    }
    if (streq (op, "reload")) {
        s_ctl_reload (self, rq);
        return;
    }
    if (streq (op, "enroll")) {
        s_ctl_enroll (self, rq);
        return;
    }
    if (streq (op, "appstate")) {
        /*  The loader tells the state of an app (heartbeat, ps). */
        char state[17];
        broker_sys_t *sys;
        if (!s->kernel) {
            broker_error (self, rq, 403, "CTL appstate is for the loader");
            return;
        }
        if (!s_span_cstr (rq->req.system, sysid, sizeof sysid)
            || !s_span_cstr (rq->req.state, state, sizeof state)
            || !(sys = broker_sys_get (self, sysid, hal_clock_wall_ms ()))) {
            broker_error (self, rq, 400, "CTL appstate needs system, state");
            return;
        }
        memcpy (sys->app_state, state, sizeof sys->app_state);
        sys->app_state[sizeof sys->app_state - 1] = 0;
        /*  The heartbeat and CTL list walk the apps, not every system the
            kernel knows. */
        if (sys->app_state[0])
            zhashx_update (self->apps, sys->id, sys);
        else
            zhashx_delete (self->apps, sys->id);
        s_ok_empty (self, rq);
        return;
    }
    if (streq (op, "grant") || streq (op, "revoke")) {
        if (!s->kernel) {
            broker_error (self, rq, 403,
                          "CTL grant and revoke are for the capability "
                          "actor; ask kernel.capability_requests");
            return;
        }
        if (streq (op, "grant"))
            s_ctl_grant (self, rq);
        else
            s_ctl_revoke (self, rq);
        return;
    }
    bool pause = streq (op, "pause"), resume = streq (op, "resume"),
         kill = streq (op, "kill");
    if (!pause && !resume && !kill) {
        broker_error (self, rq, 400,
                      "CTL op must be \"pause\", \"resume\", \"kill\", "
                      "\"list\" or \"reload\"");
        return;
    }
    if (!s_span_cstr (rq->req.system, sysid, sizeof sysid)) {
        broker_error (self, rq, 400,
                      "CTL pause, resume and kill need "
                      "\"system\"");
        return;
    }
    broker_sys_t *sys = broker_sys_find (self, sysid);
    if (strncmp (sysid, "kernel.", 7) == 0 || (sys && sys == s->sys)) {
        broker_error (self, rq, 403,
                      "CTL does not act on kernel actors or on "
                      "the caller itself");
        return;
    }
    if (!sys) {
        broker_error (self, rq, 404, "no such system");
        return;
    }
    if (pause) {
        sys->paused = true;
        if (sys->session)
            broker_event (self, "pause", sys->session, NULL);
    } else if (resume) {
        sys->paused = false;
        if (sys->session)
            broker_event (self, "resume", sys->session, NULL);
        broker_mbox_pump (self, sys);
        for (broker_chan_t *ch =
                 (broker_chan_t *) zhashx_first (self->channels);
             ch; ch = (broker_chan_t *) zhashx_next (self->channels))
            if (ch->wait_head)
                broker_serve_waiters (self, ch, now);
    } else if (sys->session)
        broker_undock (self, sys->session, "killed", false);
    const char *done = pause ? "paused" : resume ? "resumed" : "killed";
    zsys_info ("broker: %s %s by %s", sysid, done, s->sys->id);
    if (!s->kernel) {
        char reason[200];
        snprintf (reason, sizeof reason, "by %s (CTL)", s->sys->id);
        char action[64];
        snprintf (action, sizeof action, "lifecycle.%s", op);
        broker_audit (self, "lifecycle", sysid, action, "ok", reason);
    }
    msgpack_packer pk;
    broker_begin (self, rq, 3, &pk);
    chan_pack_str (&pk, "system", 6);
    chan_pack_cstr (&pk, sys->id);
    chan_pack_str (&pk, "state", 5);
    chan_pack_cstr (&pk, sys->paused    ? "paused"
                         : sys->session ? "docked"
                                        : "undocked");
    broker_reply (self, rq, OUT_OK, false);
}

/*  ---- dispatch ------------------------------------------------------- */

void
broker_dispatch (broker_t *self, broker_rq_t *rq, int64_t now)
{
    chan_req_t *r = &rq->req;
    broker_session_t *s = rq->session;
    if (r->cmd == CHAN_CMD_PING) {
        msgpack_packer pk;
        broker_begin (self, rq, 3, &pk);
        chan_pack_str (&pk, "ts", 2);
        msgpack_pack_double (&pk, hal_clock_wall_s ());
        /*  Extension: whether this connection is docked, so a client that
            only receives learns that its session ended (timeout, kill). */
        chan_pack_str (&pk, "docked", 6);
        msgpack_pack_bool (&pk, s != NULL);
        broker_reply (self, rq, OUT_PONG, false);
        return;
    }
    if (r->cmd == CHAN_CMD_HELLO) {
        s_hello (self, rq, now);
        return;
    }
    if (!s) {
        const char *why = rq->hostlen
                              ? NULL
                              : broker_ended_reason (self, rq->rid, rq->ridlen);
        if (why) {
            char reason[160];
            snprintf (reason, sizeof reason,
                      "not docked: the session of this connection ended (%s); "
                      "send HELLO",
                      why);
            broker_error (self, rq, 401, reason);
        } else
            broker_error (self, rq, 401, "not docked: send HELLO first");
        return;
    }
    if (r->cmd == CHAN_CMD_BYE) {
        s_ok_empty (self, rq);
        broker_undock (self, s, "bye", r->keep_leases);
        return;
    }
    if (self->state == BROKER_SHUTDOWN && !s->kernel) {
        broker_error (self, rq, 503, "the kernel is shutting down");
        return;
    }
    if (s->sys->paused && r->cmd != CHAN_CMD_STAT && r->cmd != CHAN_CMD_CTL
        && r->cmd != CHAN_CMD_UNSUB) {
        broker_error (self, rq, 423, "this system is paused");
        return;
    }
    switch (r->cmd) {
    case CHAN_CMD_WRITE:
    case CHAN_CMD_SEND: s_write (self, rq, now); break;
    case CHAN_CMD_CLAIM: s_claim (self, rq, now); break;
    case CHAN_CMD_ACK:
    case CHAN_CMD_NACK: s_ack (self, rq, now); break;
    case CHAN_CMD_SUB: s_sub (self, rq); break;
    case CHAN_CMD_UNSUB: s_unsub (self, rq); break;
    case CHAN_CMD_STAT: s_stat (self, rq); break;
    case CHAN_CMD_CTL: s_ctl (self, rq, now); break;
    default: broker_error (self, rq, 400, "unknown command"); break;
    }
}
