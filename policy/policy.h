/*  policy.h — the policy engine: rules that match subject, action and target
    with globs and carry allow | ask | deny, optional per-subject rate limits.
    Rules are compiled to C structures when added; no Lua runs per decision.
    Among matching rules deny wins over ask, ask over allow; no match denies. */

#ifndef POLICY_H_INCLUDED
#define POLICY_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct _policy_t policy_t;

typedef enum {
    POLICY_DENY = 0,
    POLICY_ASK = 1,
    POLICY_ALLOW = 2
} policy_effect_t;

/*  One rule as written by a user. Strings are borrowed for the call only. */
typedef struct {
    const char *subject; /* glob, '*' matches any run of characters */
    const char *action;  /* glob */
    const char *target;  /* glob */
    const char *effect;  /* "allow" | "ask" | "deny" */
    const char *rate;    /* NULL, or "N/s" | "N/m" | "N/h" (N >= 1) */
    const char *name;   /* optional rule name; NULL names it "rule#<index+1>" */
    const char *source; /* optional origin for messages, e.g. "policy.lua:12" */
} policy_rule_spec_t;

typedef struct {
    policy_effect_t effect; /* the decision */
    int rule;               /* index of the deciding rule, -1 if none matched */
} policy_decision_t;

/*  Creates an empty policy (which denies everything). NULL on no memory. */
policy_t *policy_new (void);

/*  Destroys the policy and its rate-limit state; accepts NULL. */
void policy_destroy (policy_t **self_p);

/*  Returns a deep copy of src: the same rules (names, sources, hence the
    same digest) with fresh, empty rate-limit state, for another thread to
    own. NULL on no memory (or when src is NULL). */
policy_t *policy_clone (const policy_t *src);

/*  Compiles and appends one rule. Returns 0, or AAAX_EINVAL with a message
    naming the source and the field in err (always NUL-terminated). */
int policy_add (policy_t *self, const policy_rule_spec_t *spec, char *err,
                size_t errlen);

/*  Number of rules. */
size_t policy_size (const policy_t *self);

/*  Lower-case hex BLAKE2b-256 digest of the rules' canonical encoding
    (stable across processes); borrowed until the next policy_add. */
const char *policy_digest (policy_t *self);

/*  Decides for (subject, action, target). Never fails: with no rule
    matching, out is {POLICY_DENY, -1}. Does not touch rate limits. */
void policy_decide (const policy_t *self, const char *subject,
                    const char *action, const char *target,
                    policy_decision_t *out);

/*  Writes into out (up to max) the indexes of every matching rule that has
    a rate and is not a deny rule; returns how many there are in all (which
    may be more than max, as snprintf). */
size_t policy_rated (const policy_t *self, const char *subject,
                     const char *action, const char *target, int *out,
                     size_t max);

/*  Takes one event for subject from the rate limit of each rule in rules.
    Returns 0 and records the event in every limit when all have room;
    AAAX_ELIMIT and records nothing when any limit already holds N events
    within its period ending at now_ms. now_ms is monotonic milliseconds. */
int policy_rate_take (policy_t *self, const int *rules, size_t n,
                      const char *subject, int64_t now_ms);

/*  The same for k events at once (a WRITE batch): all k are recorded, or
    none when any limit cannot take k more within its period (k larger
    than a limit never fits). */
int policy_rate_take_n (policy_t *self, const int *rules, size_t n,
                        const char *subject, int64_t now_ms, uint32_t k);

/*  Forgets rate state of subjects idle for longer than their period. */
void policy_rate_gc (policy_t *self, int64_t now_ms);

/*  Rule accessors; rule must be a valid index. Strings borrowed from self. */
const char *policy_rule_name (const policy_t *self, int rule);
const char *policy_rule_source (const policy_t *self, int rule);
policy_effect_t policy_rule_effect (const policy_t *self, int rule);

/*  Fills out with rule number rule (0-based) as it was added: subject,
    action, target and name as written, effect "allow" | "ask" | "deny",
    rate canonical ("10/s") or NULL, source or NULL. Strings are borrowed
    from self until it is destroyed. Returns 0, or AAAX_EINVAL when rule is
    out of range. For listing rules (`aaax policy show`). */
int policy_rule_spec (const policy_t *self, int rule, policy_rule_spec_t *out);

/*  Parses a rate "N/s" | "N/m" | "N/h" (N from 1 to 1000000, decimal, no
    sign, spaces or leading zeros) into N and the period in milliseconds.
    Returns 0 or AAAX_EINVAL. */
int policy_parse_rate (const char *text, uint32_t *n, int64_t *period_ms);

/*  "allow" | "ask" | "deny". */
const char *policy_effect_str (policy_effect_t effect);

/*  Matches text against a glob ('*' = any run, everything else literal). */
int policy_glob_match (const char *glob, const char *text);

/*  Self test; returns 0 when every check passed. */
int policy_test (int verbose);

#endif
