/*  act_gate_core.c — the action gate's decision (see act_gate_core.h). */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>

#include "aaax.h"
#include "act_gate_core.h"
#include "hal_clock.h"

typedef struct {
    char *id, *subject, *action, *target;
    bool session;
    double ts;
} s_approval_t;

typedef struct {
    char *id, *subject, *pattern;
    uint64_t expires;
} s_cap_t;

struct _gate_core_t {
    policy_t *policy;
    zhashx_t *approvals; /* "subject\x1faction\x1ftarget" -> s_approval_t */
    zhashx_t *by_id;     /* approval id -> the same s_approval_t */
    zhashx_t *caps;      /* id -> s_cap_t */
};

static void
s_approval_free (void **item)
{
    s_approval_t *a = (s_approval_t *) *item;
    if (a) {
        free (a->id);
        free (a->subject);
        free (a->action);
        free (a->target);
        free (a);
    }
    *item = NULL;
}

static void
s_cap_free (void **item)
{
    s_cap_t *c = (s_cap_t *) *item;
    if (c) {
        free (c->id);
        free (c->subject);
        free (c->pattern);
        free (c);
    }
    *item = NULL;
}

gate_core_t *
gate_core_new (void)
{
    gate_core_t *self = (gate_core_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->approvals = zhashx_new ();
    self->by_id = zhashx_new ();
    self->caps = zhashx_new ();
    if (!self->approvals || !self->by_id || !self->caps) {
        gate_core_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->approvals, s_approval_free);
    zhashx_set_destructor (self->caps, s_cap_free);
    return self;
}

void
gate_core_destroy (gate_core_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gate_core_t *self = *self_p;
    zhashx_destroy (&self->by_id);
    zhashx_destroy (&self->approvals);
    zhashx_destroy (&self->caps);
    policy_destroy (&self->policy);
    free (self);
    *self_p = NULL;
}

void
gate_core_set_policy (gate_core_t *self, policy_t *policy)
{
    policy_destroy (&self->policy);
    self->policy = policy;
}

policy_t *
gate_core_policy (gate_core_t *self)
{
    return self->policy;
}

/*  The approvals key; NULL when too long. */
static char *
s_key (char *buf, size_t size, const char *subject, const char *action,
       const char *target)
{
    int n = snprintf (buf, size, "%s\x1f%s\x1f%s", subject, action, target);
    return n > 0 && (size_t) n < size ? buf : NULL;
}

int
gate_core_approve (gate_core_t *self, const char *id, const char *subject,
                   const char *action, const char *target, bool session)
{
    if (zhashx_lookup (self->by_id, id))
        return AAAX_EEXIST;
    char kbuf[2048];
    const char *key = s_key (kbuf, sizeof kbuf, subject, action, target);
    if (!key)
        return AAAX_EINVAL;
    s_approval_t *a = (s_approval_t *) calloc (1, sizeof *a);
    if (!a)
        return AAAX_ENOMEM;
    a->id = strdup (id);
    a->subject = strdup (subject);
    a->action = strdup (action);
    a->target = strdup (target);
    a->session = session;
    a->ts = hal_clock_wall_s ();
    if (!a->id || !a->subject || !a->action || !a->target) {
        void *p = a;
        s_approval_free (&p);
        return AAAX_ENOMEM;
    }
    /*  A newer approval of the same triple replaces the older one. */
    s_approval_t *old = (s_approval_t *) zhashx_lookup (self->approvals, key);
    if (old)
        zhashx_delete (self->by_id, old->id);
    zhashx_update (self->approvals, key, a);
    if (zhashx_insert (self->by_id, id, a) != 0) {
        zhashx_delete (self->approvals, key);
        return AAAX_ENOMEM;
    }
    return 0;
}

int
gate_core_approval_set_ts (gate_core_t *self, const char *id, double ts)
{
    s_approval_t *a = (s_approval_t *) zhashx_lookup (self->by_id, id);
    if (!a)
        return AAAX_ENOENT;
    a->ts = ts;
    return 0;
}

bool
gate_core_has_approval (gate_core_t *self, const char *id)
{
    return zhashx_lookup (self->by_id, id) != NULL;
}

int
gate_core_unapprove (gate_core_t *self, const char *id)
{
    s_approval_t *a = (s_approval_t *) zhashx_lookup (self->by_id, id);
    if (!a)
        return AAAX_ENOENT;
    char kbuf[2048];
    const char *key =
        s_key (kbuf, sizeof kbuf, a->subject, a->action, a->target);
    zhashx_delete (self->by_id, id);
    if (key)
        zhashx_delete (self->approvals, key);
    return 0;
}

size_t
gate_core_end_session (gate_core_t *self, const char *subject)
{
    zlistx_t *ids = zlistx_new ();
    if (!ids)
        return 0;
    for (s_approval_t *a = (s_approval_t *) zhashx_first (self->approvals); a;
         a = (s_approval_t *) zhashx_next (self->approvals))
        if (a->session && streq (a->subject, subject))
            zlistx_add_end (ids, a->id);
    size_t n = 0;
    /*  Copy ids out first: unapprove frees the records they point into. */
    for (char *id = (char *) zlistx_first (ids); id;
         id = (char *) zlistx_next (ids)) {
        char copy[256];
        snprintf (copy, sizeof copy, "%s", id);
        if (gate_core_unapprove (self, copy) == 0)
            n++;
    }
    zlistx_destroy (&ids);
    return n;
}

int
gate_core_cap_add (gate_core_t *self, const char *id, const char *subject,
                   const char *pattern, uint64_t expires)
{
    s_cap_t *c = (s_cap_t *) calloc (1, sizeof *c);
    if (!c)
        return AAAX_ENOMEM;
    c->id = strdup (id);
    c->subject = strdup (subject);
    c->pattern = strdup (pattern);
    c->expires = expires;
    if (!c->id || !c->subject || !c->pattern) {
        void *p = c;
        s_cap_free (&p);
        return AAAX_ENOMEM;
    }
    zhashx_update (self->caps, id, c);
    return 0;
}

void
gate_core_cap_del (gate_core_t *self, const char *id)
{
    zhashx_delete (self->caps, id);
}

void
gate_core_decide (gate_core_t *self, const char *subject, const char *action,
                  const char *target, int64_t now_ms, uint64_t now_s,
                  gate_verdict_t *out)
{
    out->decision = POLICY_DENY;
    out->rule = NULL;
    out->reason[0] = 0;
    if (!self->policy) {
        snprintf (out->reason, sizeof out->reason, "no policy loaded");
        return;
    }
    policy_decision_t d;
    policy_decide (self->policy, subject, action, target, &d);
    out->rule = d.rule >= 0 ? policy_rule_name (self->policy, d.rule) : NULL;
    if (d.effect == POLICY_DENY) {
        snprintf (out->reason, sizeof out->reason, "%s",
                  d.rule < 0 ? "no rule allows it" : "denied by the policy");
        return;
    }
    policy_effect_t effect = d.effect;
    if (effect == POLICY_ASK) {
        char kbuf[2048];
        const char *key = s_key (kbuf, sizeof kbuf, subject, action, target);
        s_approval_t *a =
            key ? (s_approval_t *) zhashx_lookup (self->approvals, key) : NULL;
        if (a) {
            effect = POLICY_ALLOW;
            snprintf (out->reason, sizeof out->reason,
                      "approved (%s approval %s)",
                      a->session ? "session" : "standing", a->id);
        } else {
            for (s_cap_t *c = (s_cap_t *) zhashx_first (self->caps); c;
                 c = (s_cap_t *) zhashx_next (self->caps))
                if (c->expires > now_s && streq (c->subject, subject)
                    && policy_glob_match (c->pattern, action)) {
                    effect = POLICY_ALLOW;
                    snprintf (out->reason, sizeof out->reason,
                              "allowed by capability %s", c->id);
                    break;
                }
        }
        if (effect == POLICY_ASK)
            snprintf (out->reason, sizeof out->reason,
                      "the policy asks for an approval");
    } else
        snprintf (out->reason, sizeof out->reason, "allowed by the policy");
    int rated[64];
    size_t n = policy_rated (self->policy, subject, action, target, rated, 64);
    if (n > 64
        || (n > 0
            && policy_rate_take (self->policy, rated, n, subject, now_ms)
                   != 0)) {
        snprintf (out->reason, sizeof out->reason, "rate");
        return;
    }
    out->decision = effect;
}

void
gate_core_approvals (gate_core_t *self, gate_core_approval_fn *fn, void *arg)
{
    for (s_approval_t *a = (s_approval_t *) zhashx_first (self->by_id); a;
         a = (s_approval_t *) zhashx_next (self->by_id))
        fn (arg, a->id, a->subject, a->action, a->target, a->session, a->ts);
}
