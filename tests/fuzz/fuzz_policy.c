/*  fuzz_policy.c — libFuzzer target for the policy engine. The input is
    lines: groups of six (subject, action, target, effect, rate, name) make
    rules until a line "%%", then groups of three (subject, action, target)
    are queries. Decisions, rated lists, rate limits and globs are checked
    against simple reference implementations; any difference aborts.
    An input starting with "LUA\n" is instead run as a Lua data chunk and
    read with policy_from_lua; one starting with "FILE\n" is loaded as a
    policy file (policy_load_text: rules named by their lines) and cloned. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "aaax.h"
#include "hal_luadata.h"
#include "policy.h"
#include "policy_lua.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define MAX_FIELDS 512
#define MAX_RULES 64
#define MAX_EVENTS 4096

typedef struct {
    const char *subject, *action, *target;
    policy_effect_t effect;
    int limit; /* 0 without a rate */
    int64_t period;
} ref_rule_t;

typedef struct {
    int rule;
    const char *subject;
    int64_t t;
} ref_event_t;

static int
ref_glob (const char *glob, const char *text)
{
    size_t gl = strlen (glob), tl = strlen (text);
    unsigned char *m = (unsigned char *) calloc ((gl + 1) * (tl + 1), 1);
    if (!m)
        abort ();
#define M(i, j) m[(i) * (tl + 1) + (j)]
    M (gl, tl) = 1;
    for (size_t i = gl; i-- > 0;)
        for (size_t j = tl + 1; j-- > 0;) {
            if (glob[i] == '*')
                M (i, j) = M (i + 1, j) || (j < tl && M (i, j + 1));
            else
                M (i, j) = j < tl && glob[i] == text[j] && M (i + 1, j + 1);
        }
    int result = M (0, 0);
#undef M
    free (m);
    return result;
}

static int
ref_matches (const ref_rule_t *rule, const char *subject, const char *action,
             const char *target)
{
    return policy_glob_match (rule->subject, subject)
           && policy_glob_match (rule->action, action)
           && policy_glob_match (rule->target, target);
}

static void
s_fuzz_lua (const uint8_t *data, size_t size)
{
    lua_State *L = hal_luadata_new ();
    if (!L)
        return;
    char err[256];
    if (hal_luadata_run_string (L, (const char *) data, size, "fuzz.lua", err,
                                sizeof (err))
        == 0) {
        policy_t *policy = NULL;
        if (policy_from_lua (L, -1, "fuzz.lua", &policy, err, sizeof (err))
            == 0) {
            policy_decision_t d;
            policy_decide (policy, "a", "b", "c", &d);
            policy_digest (policy);
            policy_destroy (&policy);
        } else if (policy)
            abort (); /* *out must stay untouched on error */
    }
    if (strlen (err) >= sizeof (err))
        abort ();
    hal_luadata_destroy (&L);
}

static void
s_fuzz_file (const uint8_t *data, size_t size)
{
    policy_t *policy = NULL;
    char err[256];
    int rc = policy_load_text ((const char *) data, size, "fuzz.lua", &policy,
                               err, sizeof (err));
    if (strlen (err) >= sizeof (err))
        abort ();
    if (rc) {
        if (policy)
            abort (); /* *out must stay untouched on error */
        return;
    }
    policy_t *copy = policy_clone (policy);
    if (copy) {
        if (policy_size (copy) != policy_size (policy)
            || strcmp (policy_digest (copy), policy_digest (policy)) != 0)
            abort ();
        for (size_t i = 0; i < policy_size (policy); i++) {
            policy_decision_t a, b;
            policy_rule_spec_t spec;
            if (policy_rule_spec (copy, (int) i, &spec))
                abort ();
            policy_decide (policy, spec.subject, spec.action, spec.target, &a);
            policy_decide (copy, spec.subject, spec.action, spec.target, &b);
            if (a.effect != b.effect || a.rule != b.rule)
                abort ();
        }
        policy_destroy (&copy);
    }
    policy_destroy (&policy);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    if (size >= 4 && memcmp (data, "LUA\n", 4) == 0) {
        s_fuzz_lua (data + 4, size - 4);
        return 0;
    }
    if (size >= 5 && memcmp (data, "FILE\n", 5) == 0) {
        s_fuzz_file (data + 5, size - 5);
        return 0;
    }
    char *copy = (char *) malloc (size + 1);
    if (!copy)
        return 0;
    memcpy (copy, data, size);
    copy[size] = '\0';
    char *fields[MAX_FIELDS];
    size_t nfields = 0;
    char *p = copy;
    while (nfields < MAX_FIELDS) {
        fields[nfields++] = p;
        char *nl = (char *) memchr (p, '\n', (size_t) (copy + size - p));
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }

    policy_t *policy = policy_new ();
    if (!policy) {
        free (copy);
        return 0;
    }
    ref_rule_t rules[MAX_RULES];
    int nrules = 0;
    size_t f = 0;
    char err[128];
    while (f + 6 <= nfields && strcmp (fields[f], "%%") != 0
           && nrules < MAX_RULES) {
        const char *effect = fields[f + 3];
        //  One-digit shorthands keep many rules valid.
        if (strcmp (effect, "0") == 0)
            effect = "allow";
        else if (strcmp (effect, "1") == 0)
            effect = "ask";
        else if (strcmp (effect, "2") == 0)
            effect = "deny";
        policy_rule_spec_t spec = { fields[f],
                                    fields[f + 1],
                                    fields[f + 2],
                                    effect,
                                    *fields[f + 4] ? fields[f + 4] : NULL,
                                    *fields[f + 5] ? fields[f + 5] : NULL,
                                    "fuzz" };
        size_t before = policy_size (policy);
        int rc = policy_add (policy, &spec, err, sizeof (err));
        if (strlen (err) >= sizeof (err))
            abort ();
        if (rc == 0) {
            if (policy_size (policy) != before + 1)
                abort ();
            ref_rule_t *rule = &rules[nrules++];
            rule->subject = spec.subject;
            rule->action = spec.action;
            rule->target = spec.target;
            rule->effect = policy_rule_effect (policy, (int) before);
            rule->limit = 0;
            rule->period = 0;
            if (spec.rate) {
                char unit = spec.rate[strlen (spec.rate) - 1];
                rule->limit = atoi (spec.rate);
                rule->period = unit == 's'   ? 1000
                               : unit == 'm' ? 60000
                                             : 3600000;
            }
            if (strcmp (policy_effect_str (rule->effect), effect) != 0)
                abort ();
        } else if (rc != AAAX_EINVAL || policy_size (policy) != before)
            abort ();
        f += 6;
    }
    if (f < nfields && strcmp (fields[f], "%%") == 0)
        f++;

    ref_event_t *events =
        (ref_event_t *) calloc (MAX_EVENTS, sizeof (ref_event_t));
    size_t nevents = 0;
    int64_t now = 0;
    static const int severity[3] = { 2, 1, 0 }; /* DENY, ASK, ALLOW */
    for (; events && f + 3 <= nfields; f += 3) {
        const char *subject = fields[f];
        const char *action = fields[f + 1];
        const char *target = fields[f + 2];
        now += (int64_t) (unsigned char) target[0] * 7;

        //  Decision against a linear scan.
        policy_decision_t got, want = { POLICY_DENY, -1 };
        policy_decide (policy, subject, action, target, &got);
        int best = -1;
        for (int i = 0; i < nrules; i++)
            if (ref_matches (&rules[i], subject, action, target)
                && severity[rules[i].effect] > best) {
                best = severity[rules[i].effect];
                want.effect = rules[i].effect;
                want.rule = i;
            }
        if (got.effect != want.effect || got.rule != want.rule)
            abort ();

        //  Rated rules against a linear scan.
        int rated[MAX_RULES], expect[MAX_RULES];
        size_t nexpect = 0;
        for (int i = 0; i < nrules; i++)
            if (rules[i].limit && rules[i].effect != POLICY_DENY
                && ref_matches (&rules[i], subject, action, target))
                expect[nexpect++] = i;
        size_t max = (unsigned char) action[0] % 4 == 0 ? 1 : MAX_RULES;
        size_t nrated =
            policy_rated (policy, subject, action, target, rated, max);
        if (nrated != nexpect)
            abort ();
        size_t nwritten = nrated < max ? nrated : max;
        if (memcmp (rated, expect, nwritten * sizeof (int)) != 0)
            abort ();

        //  Rate limits against the brute-force sliding window.
        int room = 1;
        for (size_t i = 0; i < nwritten; i++) {
            const ref_rule_t *rule = &rules[rated[i]];
            int in_window = 0;
            for (size_t e = 0; e < nevents; e++)
                if (events[e].rule == rated[i]
                    && strcmp (events[e].subject, subject) == 0
                    && events[e].t > now - rule->period)
                    in_window++;
            if (in_window >= rule->limit)
                room = 0;
        }
        int rc = policy_rate_take (policy, rated, nwritten, subject, now);
        if (rc != (room ? 0 : AAAX_ELIMIT))
            abort ();
        if (rc == 0)
            for (size_t i = 0; i < nwritten && nevents < MAX_EVENTS; i++) {
                events[nevents].rule = rated[i];
                events[nevents].subject = subject;
                events[nevents].t = now;
                nevents++;
            }
        if (nevents >= MAX_EVENTS)
            break; /* the reference would be incomplete */
        if ((unsigned char) subject[0] % 8 == 0)
            policy_rate_gc (policy, now);

        //  Globs against the reference, on any two slices.
        if (strlen (subject) <= 64 && strlen (target) <= 64
            && policy_glob_match (subject, target)
                   != ref_glob (subject, target))
            abort ();
    }
    const char *digest = policy_digest (policy);
    if (!digest || strlen (digest) != 64)
        abort ();
    free (events);
    policy_destroy (&policy);
    free (copy);
    return 0;
}
