/*  act_gate_core.h — the action gate's decision, without I/O: the policy
    (deny > ask > allow, no match denies), standing approvals that turn an
    `ask` into `allow`, action capabilities that do the same, and the rate
    limits of the matching rules. The gate actor wraps it with the audit
    log and the protocol; the bench measures it in-process. */

#ifndef ACT_GATE_CORE_H_INCLUDED
#define ACT_GATE_CORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

typedef struct _gate_core_t gate_core_t;

typedef struct {
    policy_effect_t decision;
    const char *rule; /* the deciding rule's name (borrowed), or NULL */
    char reason[160];
} gate_verdict_t;

gate_core_t *gate_core_new (void);
void gate_core_destroy (gate_core_t **self_p);

/*  Replaces the policy (the core takes ownership; rate windows restart). */
void gate_core_set_policy (gate_core_t *self, policy_t *policy);
policy_t *gate_core_policy (gate_core_t *self);

/*  A standing approval of (subject, action, target), exact strings.
    session: it ends with gate_core_end_session (subject). 0 or
    AAAX_ENOMEM / AAAX_EEXIST (same id). */
int gate_core_approve (gate_core_t *self, const char *id, const char *subject,
                       const char *action, const char *target, bool session);

/*  Sets when an approval was given (Unix seconds; gate_core_approve
    records the current time). 0 or AAAX_ENOENT. */
int gate_core_approval_set_ts (gate_core_t *self, const char *id, double ts);

/*  Whether a standing approval with this id exists. */
bool gate_core_has_approval (gate_core_t *self, const char *id);

/*  Removes a standing approval; 0 or AAAX_ENOENT. */
int gate_core_unapprove (gate_core_t *self, const char *id);

/*  Ends the session approvals of subject; returns how many. */
size_t gate_core_end_session (gate_core_t *self, const char *subject);

/*  An action capability: subject may take actions matching the glob
    pattern (on any target) where the policy says `ask`, until expires
    (Unix seconds). 0 or AAAX_ENOMEM. */
int gate_core_cap_add (gate_core_t *self, const char *id, const char *subject,
                       const char *pattern, uint64_t expires);
void gate_core_cap_del (gate_core_t *self, const char *id);

/*  Decides (subject, action, target) at now_ms (monotonic, for rates) and
    now_s (Unix seconds, for capability expiry). Takes one event from the
    rate limits when the verdict is allow or ask. */
void gate_core_decide (gate_core_t *self, const char *subject,
                       const char *action, const char *target, int64_t now_ms,
                       uint64_t now_s, gate_verdict_t *out);

/*  Calls fn for each standing approval. */
typedef void (gate_core_approval_fn) (void *arg, const char *id,
                                      const char *subject, const char *action,
                                      const char *target, bool session,
                                      double ts);
void gate_core_approvals (gate_core_t *self, gate_core_approval_fn *fn,
                          void *arg);

#endif
