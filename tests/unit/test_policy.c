/*  test_policy.c — unit tests of the policy engine (policy.c), reading
    policies from Lua (policy_lua.c) and the restricted Lua state for data
    files (hal_luadata.c). */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "aaax.h"
#include "hal_luadata.h"
#include "policy.h"
#include "policy_lines.h"
#include "policy_lua.h"
#include "testutil.h"

//  Helpers ---------------------------------------------------------------

static int
add_rule (policy_t *policy, const char *subject, const char *action,
          const char *target, const char *effect, const char *rate)
{
    policy_rule_spec_t spec = { subject, action, target, effect,
                                rate,    NULL,   NULL };
    char err[256];
    int rc = policy_add (policy, &spec, err, sizeof (err));
    if (rc)
        fprintf (stderr, "policy_add: %s\n", err);
    return rc;
}

/*  Reference glob matcher: plain dynamic programming over (glob, text). */
static int
ref_glob (const char *glob, const char *text)
{
    size_t gl = strlen (glob), tl = strlen (text);
    //  m[i][j]: glob[i..] matches text[j..]
    unsigned char *m = calloc ((gl + 1) * (tl + 1), 1);
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

typedef struct {
    char subject[16], action[16], target[16];
    policy_effect_t effect;
    int rated;
} ref_rule_t;

/*  Reference decision: a linear scan over every rule. */
static void
ref_decide (const ref_rule_t *rules, int n, const char *subject,
            const char *action, const char *target, policy_decision_t *out)
{
    static const int severity[3] = { 2, 1, 0 }; /* DENY, ASK, ALLOW */
    out->effect = POLICY_DENY;
    out->rule = -1;
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (!policy_glob_match (rules[i].subject, subject)
            || !policy_glob_match (rules[i].action, action)
            || !policy_glob_match (rules[i].target, target))
            continue;
        if (severity[rules[i].effect] > best) {
            best = severity[rules[i].effect];
            out->effect = rules[i].effect;
            out->rule = i;
        }
    }
}

static unsigned int rng_state = 12345;

static unsigned int
rng (void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 16) & 0x7fff;
}

static void
random_string (char *out, size_t max, const char *alphabet, int stars)
{
    size_t len = rng () % max;
    size_t alen = strlen (alphabet);
    for (size_t i = 0; i < len; i++)
        out[i] = (stars && rng () % 4 == 0) ? '*' : alphabet[rng () % alen];
    out[len] = '\0';
}

//  Globs -----------------------------------------------------------------

static void
test_globs (void)
{
    static const struct {
        const char *glob, *text;
        int match;
    } cases[] = {
        { "*", "", 1 },
        { "*", "anything at all", 1 },
        { "**", "x", 1 },
        { "", "", 1 },
        { "", "a", 0 },
        { "abc", "abc", 1 },
        { "abc", "abcd", 0 },
        { "abc", "ab", 0 },
        { "abc", "ABC", 0 },
        { "worker-*", "worker-", 1 },
        { "worker-*", "worker-7", 1 },
        { "worker-*", "worke", 0 },
        { "worker-*", "xworker-7", 0 },
        { "*.read", "chan.read", 1 },
        { "*.read", ".read", 1 },
        { "*.read", "chan.reads", 0 },
        { "https://*", "https://example.org/x", 1 },
        { "https://*", "http://example.org", 0 },
        { "a*c", "ac", 1 },
        { "a*c", "abbbc", 1 },
        { "a*c", "abbbcd", 0 },
        { "a*b*c", "abc", 1 },
        { "a*b*c", "aXbYc", 1 },
        { "a*b*c", "acb", 0 },
        { "*a*b*", "xxaxxbxx", 1 },
        { "*a*b*", "xxbxxaxx", 0 },
        { "aa*aa", "aaa", 0 }, /* prefix and suffix may not overlap */
        { "aa*aa", "aaaa", 1 },
        { "a*a*a", "aa", 0 },
        { "a*a*a", "aaa", 1 },
        { "*ab*ab*", "abab", 1 },
        { "*ab*ab*", "aab", 0 },
        { "?", "?", 1 }, /* only '*' is special */
        { "?", "a", 0 },
        { "[a]", "a", 0 },
        { "[a]", "[a]", 1 },
        { "a\\*", "a\\xyz", 1 }, /* no escapes: backslash is literal */
        { "*x", "", 0 },
        { "x*", "", 0 },
    };
    for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++) {
        int got = policy_glob_match (cases[i].glob, cases[i].text);
        if (got != cases[i].match)
            fprintf (stderr, "glob \"%s\" text \"%s\": got %d\n", cases[i].glob,
                     cases[i].text, got);
        CHECK_EQ_INT (got, cases[i].match);
        CHECK_EQ_INT (ref_glob (cases[i].glob, cases[i].text), cases[i].match);
    }
    CHECK_EQ_INT (policy_glob_match (NULL, "x"), 0);

    //  Against the reference on random small globs and texts.
    int mismatches = 0;
    for (int i = 0; i < 50000; i++) {
        char glob[12], text[16];
        random_string (glob, sizeof (glob), "ab", 1);
        random_string (text, sizeof (text), "ab", 0);
        if (policy_glob_match (glob, text) != ref_glob (glob, text)) {
            if (mismatches++ < 5)
                fprintf (stderr, "glob mismatch: \"%s\" \"%s\"\n", glob, text);
        }
    }
    CHECK_EQ_INT (mismatches, 0);

    //  A pathological case stays fast (no backtracking blow-up).
    size_t n = 200000;
    char *text = malloc (n + 1);
    memset (text, 'a', n);
    text[n] = '\0';
    CHECK_EQ_INT (policy_glob_match ("*a*a*a*a*a*a*a*a*a*a*b", text), 0);
    CHECK_EQ_INT (policy_glob_match ("*a*a*a*a*a*a*a*a*a*a*", text), 1);
    free (text);
}

//  Rule validation ------------------------------------------------------

static void
test_add_errors (void)
{
    policy_t *policy = policy_new ();
    CHECK (policy);
    char err[256];
    policy_rule_spec_t spec = {
        "*", "*", "*", "alow", NULL, NULL, "policy.lua"
    };

    //  Two valid rules first, so the bad one is rule 3.
    spec.effect = "allow";
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), 0);
    CHECK_EQ_STR (err, "");
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), 0);
    spec.effect = "alow";
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "policy.lua: rule 3: effect must be \"allow\", \"ask\" "
                       "or \"deny\" (got \"alow\")");
    spec.effect = "Allow";
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    spec.effect = "allow ";
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    spec.effect = "";
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    spec.effect = NULL;
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "policy.lua: rule 3: missing field \"effect\"");
    spec.effect = "deny";

    //  Without a source the message starts at the rule.
    spec.source = NULL;
    spec.subject = "";
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "rule 3: field \"subject\" must not be empty");
    spec.subject = NULL;
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "rule 3: missing field \"subject\"");
    spec.subject = "*";
    spec.action = NULL;
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "rule 3: missing field \"action\"");
    spec.action = "*";
    spec.target = "";
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "rule 3: field \"target\" must not be empty");
    char *longglob = malloc (1026);
    memset (longglob, 'x', 1025);
    longglob[1025] = '\0';
    spec.target = longglob;
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "rule 3: field \"target\" is longer than 1024 bytes");
    longglob[1024] = '\0'; /* exactly 1024 bytes is fine */
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), 0);
    free (longglob);
    spec.target = "*";
    spec.name = "";
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "rule 4: field \"name\" must not be empty");
    spec.name = NULL;

    //  Rates.
    static const char *bad_rates[] = {
        "",      "0/s",    "1000001/s", "1/x",  "1/ s",
        " 1/s",  "1/s ",   "01/s",      "-1/s", "+1/s",
        "1/",    "/s",     "1",         "1/ss", "1/S",
        "1.5/s", "1e3/s",  "1 /s",      "1//s", "99999999999999999999/s",
        "1/sec", "0x10/s",
    };
    for (size_t i = 0; i < sizeof (bad_rates) / sizeof (bad_rates[0]); i++) {
        spec.rate = bad_rates[i];
        int rc = policy_add (policy, &spec, err, sizeof (err));
        if (rc != AAAX_EINVAL)
            fprintf (stderr, "rate \"%s\" accepted\n", bad_rates[i]);
        CHECK_EQ_INT (rc, AAAX_EINVAL);
    }
    spec.rate = "0/s";
    spec.source = "config.lua: policy";
    policy_add (policy, &spec, err, sizeof (err));
    CHECK_EQ_STR (err, "config.lua: policy: rule 4: rate must be \"N/s\", "
                       "\"N/m\" or \"N/h\" with N from 1 to 1000000 (got "
                       "\"0/s\")");
    static const char *good_rates[] = { "1/s", "1000000/s", "10/m", "7/h",
                                        "1000000/h" };
    spec.effect = "allow";
    for (size_t i = 0; i < sizeof (good_rates) / sizeof (good_rates[0]); i++) {
        spec.rate = good_rates[i];
        CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), 0);
    }
    CHECK_EQ_INT (policy_size (policy), 8);

    //  Names and sources.
    CHECK_EQ_STR (policy_rule_name (policy, 0), "rule#1");
    CHECK_EQ_STR (policy_rule_source (policy, 0), "policy.lua");
    CHECK_EQ_STR (policy_rule_source (policy, 2), "");
    spec.name = "my-rule";
    spec.rate = NULL;
    CHECK_EQ_INT (policy_add (policy, &spec, err, sizeof (err)), 0);
    CHECK_EQ_STR (policy_rule_name (policy, 8), "my-rule");
    CHECK_EQ_INT (policy_rule_effect (policy, 8), POLICY_ALLOW);
    CHECK_EQ_STR (policy_effect_str (POLICY_ALLOW), "allow");
    CHECK_EQ_STR (policy_effect_str (POLICY_ASK), "ask");
    CHECK_EQ_STR (policy_effect_str (POLICY_DENY), "deny");

    //  Tiny error buffers are still terminated; NULL ones are fine.
    char tiny[8];
    spec.effect = "nope";
    CHECK_EQ_INT (policy_add (policy, &spec, tiny, sizeof (tiny)), AAAX_EINVAL);
    CHECK_EQ_INT (strlen (tiny), 7);
    CHECK_EQ_INT (policy_add (policy, &spec, NULL, 0), AAAX_EINVAL);
    CHECK_EQ_INT (policy_add (policy, NULL, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_INT (policy_add (NULL, &spec, err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_INT (policy_size (policy), 9);

    policy_destroy (&policy);
    CHECK (policy == NULL);
    policy_destroy (&policy);
    policy_destroy (NULL);
}

//  Decisions ------------------------------------------------------------

static void
test_decide (void)
{
    policy_t *policy = policy_new ();
    policy_decision_t d;

    //  Empty policy denies everything.
    policy_decide (policy, "a", "b", "c", &d);
    CHECK_EQ_INT (d.effect, POLICY_DENY);
    CHECK_EQ_INT (d.rule, -1);

    CHECK_EQ_INT (add_rule (policy, "*", "chan.read", "*", "allow", NULL), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "chan.read", "news", "allow", NULL),
                  0);
    CHECK_EQ_INT (add_rule (policy, "agent-*", "chan.*", "news", "ask", NULL),
                  0);
    CHECK_EQ_INT (add_rule (policy, "agent-*", "*", "*", "ask", NULL), 0);
    CHECK_EQ_INT (
        add_rule (policy, "agent-7", "chan.read", "news", "deny", NULL), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "*", "news", "deny", NULL), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "fs.delete", "*", "deny", NULL), 0);

    //  Only allow rules match: the first of them decides.
    policy_decide (policy, "bob", "chan.read", "news", &d);
    CHECK_EQ_INT (d.effect, POLICY_DENY); /* rule 5 "* * news" denies */
    CHECK_EQ_INT (d.rule, 5);
    policy_decide (policy, "bob", "chan.read", "orders", &d);
    CHECK_EQ_INT (d.effect, POLICY_ALLOW);
    CHECK_EQ_INT (d.rule, 0);
    //  ask beats allow; the first ask decides.
    policy_decide (policy, "agent-1", "chan.read", "orders", &d);
    CHECK_EQ_INT (d.effect, POLICY_ASK);
    CHECK_EQ_INT (d.rule, 3);
    //  deny beats ask and allow, even from a later rule; the first deny.
    policy_decide (policy, "agent-7", "chan.read", "news", &d);
    CHECK_EQ_INT (d.effect, POLICY_DENY);
    CHECK_EQ_INT (d.rule, 4);
    //  Nothing matches.
    policy_decide (policy, "bob", "chan.write", "orders", &d);
    CHECK_EQ_INT (d.effect, POLICY_DENY);
    CHECK_EQ_INT (d.rule, -1);
    policy_decide (policy, "bob", "fs.delete", "/etc", &d);
    CHECK_EQ_INT (d.effect, POLICY_DENY);
    CHECK_EQ_INT (d.rule, 6);
    //  NULL strings are empty strings.
    policy_decide (policy, NULL, NULL, NULL, &d);
    CHECK_EQ_INT (d.effect, POLICY_DENY);
    CHECK_EQ_INT (d.rule, -1);
    policy_decide (NULL, "a", "b", "c", &d);
    CHECK_EQ_INT (d.rule, -1);
    policy_destroy (&policy);

    //  Order does not change the winning effect, only the deciding rule.
    policy = policy_new ();
    CHECK_EQ_INT (add_rule (policy, "*", "x", "*", "ask", NULL), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", NULL), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "x", "*", "ask", NULL), 0);
    policy_decide (policy, "s", "x", "t", &d);
    CHECK_EQ_INT (d.effect, POLICY_ASK);
    CHECK_EQ_INT (d.rule, 0);
    policy_decide (policy, "s", "y", "t", &d);
    CHECK_EQ_INT (d.effect, POLICY_ALLOW);
    CHECK_EQ_INT (d.rule, 1);
    policy_destroy (&policy);
}

static void
test_rated (void)
{
    policy_t *policy = policy_new ();
    CHECK_EQ_INT (add_rule (policy, "*", "chan.write", "*", "allow", "10/s"),
                  0);
    CHECK_EQ_INT (add_rule (policy, "*", "chan.write", "orders", "allow", NULL),
                  0);
    CHECK_EQ_INT (add_rule (policy, "*", "chan.*", "orders", "ask", "5/m"), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "*", "orders", "deny", "1/h"), 0);
    CHECK_EQ_INT (
        add_rule (policy, "bob", "chan.write", "orders", "allow", "2/h"), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "chan.read", "orders", "allow", "2/h"),
                  0);

    int out[8] = { -9, -9, -9, -9, -9, -9, -9, -9 };
    //  Rules 0, 2, 4 (rule 3 denies, rule 1 has no rate, 5 does not match).
    CHECK_EQ_INT (policy_rated (policy, "bob", "chan.write", "orders", out, 8),
                  3);
    CHECK_EQ_INT (out[0], 0);
    CHECK_EQ_INT (out[1], 2);
    CHECK_EQ_INT (out[2], 4);
    CHECK_EQ_INT (out[3], -9);
    //  As snprintf: the count in all, only max written.
    out[0] = out[1] = -9;
    CHECK_EQ_INT (policy_rated (policy, "bob", "chan.write", "orders", out, 1),
                  3);
    CHECK_EQ_INT (out[0], 0);
    CHECK_EQ_INT (out[1], -9);
    CHECK_EQ_INT (policy_rated (policy, "bob", "chan.write", "orders", NULL, 0),
                  3);
    CHECK_EQ_INT (policy_rated (policy, "eve", "chan.write", "news", out, 8),
                  1);
    CHECK_EQ_INT (policy_rated (policy, "eve", "fs.read", "news", out, 8), 0);
    CHECK_EQ_INT (policy_rated (NULL, "eve", "fs.read", "news", out, 8), 0);
    policy_destroy (&policy);
}

//  Rate limits ------------------------------------------------------------

static void
test_rate_window (void)
{
    policy_t *policy = policy_new ();
    CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", "3/s"), 0);
    int r = 0;
    /*  Boundary: "at most N events within any window of the period". An
        event at now is accepted iff fewer than N events are recorded, or
        the oldest of the last N accepted events is at or before
        now - period. So the window counted at now is (now - period, now]:
        with 3/s, events at 0, 100, 200 fill it; at 999 it is still full
        (0 is inside (-1, 999]); at 1000 the event at 0 has left it
        (0 <= 1000 - 1000) and the event is accepted. */
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 0), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 100), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 200), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 300), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 999), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 1000), 0);
    //  Now 100, 200, 1000: next room at 1100.
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 1001), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 1099), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 1100), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 1199), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 1200), 0);
    //  Refused events were not recorded: at 2000 the log is 1000, 1100,
    //  1200, and 2000 has room again.
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 2000), 0);
    //  Subjects are independent.
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "other", 2000), 0);
    //  A burst of N at one instant is allowed, N + 1 is not.
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "burst", 5000), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "burst", 5000), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "burst", 5000), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "burst", 5000), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "burst", 6000), 0);
    //  Bad indexes.
    int bad = 1;
    CHECK_EQ_INT (policy_rate_take (policy, &bad, 1, "s", 0), AAAX_EINVAL);
    bad = -1;
    CHECK_EQ_INT (policy_rate_take (policy, &bad, 1, "s", 0), AAAX_EINVAL);
    CHECK_EQ_INT (policy_rate_take (policy, NULL, 0, "s", 0), 0);
    policy_destroy (&policy);

    //  Minutes and hours; a large N exercises the ring's growth.
    policy = policy_new ();
    CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", "2/m"), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", "1/h"), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", "1000/s"), 0);
    CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", NULL), 0);
    r = 0;
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 10), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 20), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 60009), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 60010), 0);
    r = 1;
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 0), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 3599999), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 3600000), 0);
    r = 2;
    int accepted = 0;
    //  2000 events, one every 0.5 ms: a sliding second holds 1000.
    for (int i = 0; i < 4000; i++)
        if (policy_rate_take (policy, &r, 1, "s", i / 2) == 0)
            accepted++;
    /*  Times 0..1999 with two events per ms: the first 1000 accepted are
        at 0..499 and fill the window; 500..999 are refused; from 1000 to
        1499 each ms frees the two slots taken at t - 1000, and those
        events fill the window again, so 1500..1999 are refused. */
    CHECK_EQ_INT (accepted, 2000);
    //  A rule without a rate never limits.
    r = 3;
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "s", 0), 0);
    policy_destroy (&policy);
}

/*  Sliding-log semantics against a brute-force reference: accepted iff the
    accepted events in (now - period, now] number fewer than N. */
static void
test_rate_reference (void)
{
    for (int round = 0; round < 20; round++) {
        int limit = 1 + (int) (rng () % 7);
        char rate[16];
        snprintf (rate, sizeof (rate), "%d/s", limit);
        policy_t *policy = policy_new ();
        CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", rate), 0);
        int64_t accepted[4000];
        int naccepted = 0;
        int64_t now = 0;
        int mismatches = 0;
        for (int i = 0; i < 4000; i++) {
            now += rng () % 400;
            int in_window = 0;
            for (int j = 0; j < naccepted; j++)
                if (accepted[j] > now - 1000)
                    in_window++;
            int expect = in_window < limit;
            int r = 0;
            int got = policy_rate_take (policy, &r, 1, "s", now) == 0;
            if (got != expect)
                mismatches++;
            if (got)
                accepted[naccepted++] = now;
        }
        CHECK_EQ_INT (mismatches, 0);
        policy_destroy (&policy);
    }
}

static void
test_rate_two_phase (void)
{
    policy_t *policy = policy_new ();
    CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", "2/s"), 0); /* A */
    CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", "2/s"), 0); /* B */
    int a = 0, b = 1;
    int both[2] = { 0, 1 };
    CHECK_EQ_INT (policy_rate_take (policy, &b, 1, "s", 0), 0); /* B: 1 */
    CHECK_EQ_INT (policy_rate_take (policy, both, 2, "s", 1),
                  0); /* A: 1, B: 2 */
    //  B is full: refused, and A records nothing.
    CHECK_EQ_INT (policy_rate_take (policy, both, 2, "s", 2), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, both, 2, "s", 3), AAAX_ELIMIT);
    //  A still has exactly one slot.
    CHECK_EQ_INT (policy_rate_take (policy, &a, 1, "s", 4), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &a, 1, "s", 5), AAAX_ELIMIT);
    //  The same rule listed twice counts once.
    int twice[2] = { 0, 0 };
    CHECK_EQ_INT (policy_rate_take (policy, twice, 2, "t", 0), 0);
    CHECK_EQ_INT (policy_rate_take (policy, twice, 2, "t", 0), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &a, 1, "t", 0), AAAX_ELIMIT);
    //  An out-of-range index anywhere refuses the whole take.
    int mixed[2] = { 1, 7 };
    CHECK_EQ_INT (policy_rate_take (policy, mixed, 2, "u", 0), AAAX_EINVAL);
    CHECK_EQ_INT (policy_rate_take (policy, &b, 1, "u", 0), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &b, 1, "u", 0), 0);
    policy_destroy (&policy);
}

static void
test_rate_gc (void)
{
    policy_t *policy = policy_new ();
    CHECK_EQ_INT (add_rule (policy, "*", "*", "*", "allow", "3/s"), 0);
    int r = 0;
    char subject[32];
    for (int i = 0; i < 1000; i++) {
        snprintf (subject, sizeof (subject), "s%d", i);
        CHECK_EQ_INT (policy_rate_take (policy, &r, 1, subject, i), 0);
    }
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "x", 0), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "x", 100), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "x", 200), 0);
    //  gc keeps what is still inside a window: x stays full until 1000.
    policy_rate_gc (policy, 500);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "x", 600), AAAX_ELIMIT);
    policy_rate_gc (policy, 999);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "x", 999), AAAX_ELIMIT);
    //  Dropping idle subjects changes no decision.
    policy_rate_gc (policy, 1200);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "x", 1200), 0);
    policy_rate_gc (policy, 100000);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "x", 100000), 0);
    CHECK_EQ_INT (policy_rate_take (policy, &r, 1, "x", 100000), AAAX_ELIMIT);
    policy_rate_gc (NULL, 0);
    policy_destroy (&policy);
}

//  Digest -------------------------------------------------------------------

static void
test_digest (void)
{
    //  Known answers, from the encoding (8-byte big-endian lengths):
    //  "aaax-policy-1", count, then subject, action, target, effect,
    //  rate, name per rule; BLAKE2b-256.
    policy_t *a = policy_new ();
    CHECK_EQ_STR (
        policy_digest (a),
        "5b469e13484a7bd4e537b76bd9bf3c88c1ddaf6e42df53e852fb647ba4c46a85");
    CHECK_EQ_INT (
        add_rule (a, "worker-*", "chan.claim", "orders*", "allow", "1000/s"),
        0);
    const char *da = policy_digest (a);
    CHECK_EQ_STR (
        da, "a3dff2b89b39512b396eccefd56f62108d6e35433c11961aea0b325bbb78e155");
    CHECK (policy_digest (a) == da); /* cached */
    char saved[65];
    snprintf (saved, sizeof (saved), "%s", da);

    //  Same rules, same digest; the source does not count.
    policy_t *b = policy_new ();
    policy_rule_spec_t spec = { "worker-*", "chan.claim", "orders*",    "allow",
                                "1000/s",   NULL,         "elsewhere:3" };
    char err[256];
    CHECK_EQ_INT (policy_add (b, &spec, err, sizeof (err)), 0);
    CHECK_EQ_STR (policy_digest (b), saved);

    //  Any change of any field changes it.
    const char *fields[6] = { "worker-*", "chan.claim", "orders*",
                              "allow",    "1000/s",     NULL };
    for (int f = 0; f < 6; f++) {
        policy_t *c = policy_new ();
        const char *v[6];
        memcpy (v, fields, sizeof (v));
        static const char *changed[6] = { "worker-", "chan.clai", "orders",
                                          "deny",    "1000/m",    "named" };
        v[f] = changed[f];
        policy_rule_spec_t s2 = { v[0], v[1], v[2], v[3], v[4], v[5], NULL };
        CHECK_EQ_INT (policy_add (c, &s2, err, sizeof (err)), 0);
        CHECK (strcmp (policy_digest (c), saved) != 0);
        policy_destroy (&c);
    }
    //  No rate differs from a rate.
    policy_t *c = policy_new ();
    CHECK_EQ_INT (
        add_rule (c, "worker-*", "chan.claim", "orders*", "allow", NULL), 0);
    CHECK (strcmp (policy_digest (c), saved) != 0);
    policy_destroy (&c);

    //  Field boundaries are unambiguous.
    policy_t *d1 = policy_new (), *d2 = policy_new ();
    CHECK_EQ_INT (add_rule (d1, "ab", "c", "x", "allow", NULL), 0);
    CHECK_EQ_INT (add_rule (d2, "a", "bc", "x", "allow", NULL), 0);
    CHECK (strcmp (policy_digest (d1), policy_digest (d2)) != 0);
    policy_destroy (&d1);
    policy_destroy (&d2);

    //  Adding a rule changes it; order matters.
    CHECK_EQ_INT (add_rule (a, "*", "*", "*", "deny", NULL), 0);
    CHECK (strcmp (policy_digest (a), saved) != 0);
    policy_t *e = policy_new ();
    CHECK_EQ_INT (add_rule (e, "*", "*", "*", "deny", NULL), 0);
    CHECK_EQ_INT (
        add_rule (e, "worker-*", "chan.claim", "orders*", "allow", "1000/s"),
        0);
    CHECK (strcmp (policy_digest (a), policy_digest (e)) != 0);
    //  Rate state does not count.
    snprintf (saved, sizeof (saved), "%s", policy_digest (e));
    int r = 1;
    CHECK_EQ_INT (policy_rate_take (e, &r, 1, "s", 0), 0);
    CHECK_EQ_STR (policy_digest (e), saved);
    //  Lower-case hex, 64 characters.
    const char *hex = policy_digest (e);
    CHECK_EQ_INT (strlen (hex), 64);
    CHECK_EQ_INT (strspn (hex, "0123456789abcdef"), 64);
    policy_destroy (&a);
    policy_destroy (&b);
    policy_destroy (&e);
}

//  The action index against a linear scan ----------------------------------

static void
test_index_equivalence (void)
{
    static const char *actions[] = { "a",         "b",      "ab",  "a*",
                                     "*",         "*b",     "a*b", "ba",
                                     "chan.read", "chan.*", "**",  "b*a" };
    static const char *effects[] = { "allow", "ask", "deny" };
    int mismatches = 0;
    for (int round = 0; round < 40; round++) {
        policy_t *policy = policy_new ();
        ref_rule_t rules[200];
        int n = 1 + (int) (rng () % 200);
        for (int i = 0; i < n; i++) {
            random_string (rules[i].subject, 5, "ab", 1);
            if (!*rules[i].subject)
                strcpy (rules[i].subject, "*");
            snprintf (
                rules[i].action, sizeof (rules[i].action), "%s",
                actions[rng () % (sizeof (actions) / sizeof (actions[0]))]);
            random_string (rules[i].target, 5, "ab", 1);
            if (!*rules[i].target)
                strcpy (rules[i].target, "a*");
            int e = (int) (rng () % 3);
            rules[i].effect = e == 0   ? POLICY_ALLOW
                              : e == 1 ? POLICY_ASK
                                       : POLICY_DENY;
            rules[i].rated = rng () % 2;
            CHECK_EQ_INT (add_rule (policy, rules[i].subject, rules[i].action,
                                    rules[i].target, effects[e],
                                    rules[i].rated ? "5/s" : NULL),
                          0);
        }
        for (int q = 0; q < 500; q++) {
            char subject[8], action[12], target[8];
            random_string (subject, sizeof (subject), "ab", 0);
            if (rng () % 2)
                snprintf (action, sizeof (action), "%s",
                          rng () % 2 ? "chan.read" : "chan.write");
            else
                random_string (action, 4, "ab", 0);
            random_string (target, sizeof (target), "ab", 0);
            policy_decision_t got, want;
            policy_decide (policy, subject, action, target, &got);
            ref_decide (rules, n, subject, action, target, &want);
            if (got.effect != want.effect || got.rule != want.rule)
                mismatches++;
            //  policy_rated: every matching rated non-deny rule, in order.
            int out[200], expect[200];
            size_t count =
                policy_rated (policy, subject, action, target, out, 200);
            size_t ecount = 0;
            for (int i = 0; i < n; i++)
                if (rules[i].rated && rules[i].effect != POLICY_DENY
                    && policy_glob_match (rules[i].subject, subject)
                    && policy_glob_match (rules[i].action, action)
                    && policy_glob_match (rules[i].target, target))
                    expect[ecount++] = i;
            if (count != ecount
                || memcmp (out, expect, count * sizeof (int)) != 0)
                mismatches++;
        }
        policy_destroy (&policy);
    }
    CHECK_EQ_INT (mismatches, 0);
}

//  Lua data state -----------------------------------------------------------

static int
run (lua_State *L, const char *src, char *err, size_t errlen)
{
    return hal_luadata_run_string (L, src, strlen (src), "test.lua", err,
                                   errlen);
}

static void
test_luadata (void)
{
    char err[512];
    lua_State *L = hal_luadata_new ();
    CHECK (L);
    int top = lua_gettop (L);

    //  One value on success: the first return value, or nil.
    CHECK_EQ_INT (run (L, "return 42, 43", err, sizeof (err)), 0);
    CHECK_EQ_INT (lua_gettop (L), top + 1);
    CHECK_EQ_INT (lua_tointeger (L, -1), 42);
    lua_settop (L, top);
    CHECK_EQ_INT (run (L, "local x = 1", err, sizeof (err)), 0);
    CHECK_EQ_INT (lua_gettop (L), top + 1);
    CHECK (lua_isnil (L, -1));
    lua_settop (L, top);
    CHECK_EQ_INT (hal_luadata_run_string (L, "", 0, "empty", err, sizeof (err)),
                  0);
    CHECK (lua_isnil (L, -1));
    lua_settop (L, top);

    //  The dangerous globals are gone; the safe libraries are there.
    CHECK_EQ_INT (run (L,
                       "return io == nil and os == nil and require == nil "
                       "and load == nil and loadfile == nil and dofile == nil "
                       "and package == nil and debug == nil and print == nil "
                       "and string.dump == nil and loadstring == nil "
                       "and string.find == nil and string.match == nil "
                       "and string.gmatch == nil and string.gsub == nil "
                       "and collectgarbage ~= nil",
                       err, sizeof (err)),
                  0);
    CHECK (lua_toboolean (L, -1));
    lua_settop (L, top);
    CHECK_EQ_INT (run (L,
                       "return string.format('%d-%s', math.max(1, 2), "
                       "table.concat({'a','b'}, ',')) .. utf8.char(65) .. "
                       "('x'):rep(3) .. #string.rep('ab', 2, ',')",
                       err, sizeof (err)),
                  0);
    CHECK_EQ_STR (lua_tostring (L, -1), "2-a,bAxxx5");
    lua_settop (L, top);
    //  The string metatable is hidden.
    CHECK_EQ_INT (run (L, "return getmetatable('')", err, sizeof (err)), 0);
    CHECK (lua_isboolean (L, -1) && !lua_toboolean (L, -1));
    lua_settop (L, top);
    //  table.move still works on small ranges.
    CHECK_EQ_INT (run (L, "local t = table.move({1,2,3}, 1, 3, 2) return #t",
                       err, sizeof (err)),
                  0);
    CHECK_EQ_INT (lua_tointeger (L, -1), 4);
    lua_settop (L, top);

    //  Errors: "name:line: message", stack unchanged.
    CHECK_EQ_INT (run (L, "\n\nerror('boom')", err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "test.lua:3: boom");
    CHECK_EQ_INT (lua_gettop (L), top);
    CHECK_EQ_INT (run (L, "local x = \n = 2", err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "test.lua:2: unexpected symbol near '='");
    CHECK_EQ_INT (run (L, "\nerror('no position', 0)", err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK_EQ_STR (err, "test.lua:2: no position");
    CHECK_EQ_INT (run (L, "error({})", err, sizeof (err)), AAAX_EINVAL);
    CHECK_EQ_STR (err, "test.lua:1: (error object is a table value)");
    CHECK_EQ_INT (run (L, "return require('os')", err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK (strstr (err, "test.lua:1: attempt to call a nil value") == err);
    CHECK_EQ_INT (run (L, "return io.open('/etc/passwd')", err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK_EQ_INT (run (L, "return load('return 1')", err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK_EQ_INT (run (L, "return dofile('/etc/passwd')", err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK_EQ_INT (lua_gettop (L), top);

    //  Binary chunks are refused.
    const char binary[] = "\x1bLua\x54\x00\x19\x93\r\n\x1a\n";
    CHECK_EQ_INT (hal_luadata_run_string (L, binary, sizeof (binary) - 1, "bin",
                                          err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK_EQ_STR (err, "bin: binary chunks are not allowed (text only)");

    //  The instruction cap, also when the chunk tries to catch it.
    CHECK_EQ_INT (run (L, "\nwhile true do end", err, sizeof (err)),
                  AAAX_ELIMIT);
    CHECK_EQ_STR (err, "test.lua:2: instruction limit reached");
    CHECK_EQ_INT (lua_gettop (L), top);
    CHECK_EQ_INT (run (L,
                       "while true do pcall(function() while true do end "
                       "end) end",
                       err, sizeof (err)),
                  AAAX_ELIMIT);
    CHECK (strstr (err, "instruction limit reached") != NULL);
    //  table.move over a huge range (a loop in C) is refused at once.
    CHECK_EQ_INT (run (L, "return table.move({}, 1, math.maxinteger - 1, 2)",
                       err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK_EQ_STR (err, "test.lua:1: table.move: range too large");
    //  string.rep of empty strings a huge number of times returns at once.
    CHECK_EQ_INT (
        run (L, "return string.rep('', math.maxinteger)", err, sizeof (err)),
        0);
    CHECK_EQ_STR (lua_tostring (L, -1), "");
    lua_settop (L, top);
    //  The state still works after hitting the cap.
    CHECK_EQ_INT (run (L,
                       "local n = 0 for i = 1, 1000000 do n = n + i end "
                       "return n",
                       err, sizeof (err)),
                  0);
    CHECK_EQ_INT (lua_tointeger (L, -1), 500000500000LL);
    lua_settop (L, top);

    //  The memory cap.
    CHECK_EQ_INT (run (L, "return string.rep('x', 1e9)", err, sizeof (err)),
                  AAAX_ELIMIT);
    CHECK_EQ_STR (err, "test.lua: memory limit reached");
    CHECK_EQ_INT (lua_gettop (L), top);
    CHECK_EQ_INT (run (L,
                       "local t = {} local i = 0 while true do i = i + 1 "
                       "t[i] = {i} end",
                       err, sizeof (err)),
                  AAAX_ELIMIT);
    CHECK_EQ_STR (err, "test.lua: memory limit reached");
    CHECK_EQ_INT (run (L, "local s = 'x' while true do s = s .. s end", err,
                       sizeof (err)),
                  AAAX_ELIMIT);
    CHECK_EQ_STR (err, "test.lua: memory limit reached");
    //  ... even when the chunk catches the memory error.
    CHECK_EQ_INT (run (L,
                       "local ok, e = pcall(string.rep, 'x', 1e9) "
                       "error(e)",
                       err, sizeof (err)),
                  AAAX_ELIMIT);
    CHECK_EQ_INT (run (L, "return 'still alive'", err, sizeof (err)), 0);
    CHECK_EQ_STR (lua_tostring (L, -1), "still alive");
    lua_settop (L, top);

    //  Finalizers run with hooks off: __gc metatables are refused.
    CHECK_EQ_INT (run (L,
                       "setmetatable({}, {__gc = function() while true do "
                       "end end}) collectgarbage() return 1",
                       err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK_EQ_STR (err, "test.lua:1: setmetatable: __gc is not allowed");
    CHECK_EQ_INT (run (L,
                       "local mt = {} local t = setmetatable({}, mt) "
                       "mt.__gc = function() while true do end end "
                       "t = nil collectgarbage() return getmetatable(t)",
                       err, sizeof (err)),
                  0);
    lua_settop (L, top);
    CHECK_EQ_INT (run (L,
                       "return getmetatable(setmetatable({}, {__index = "
                       "{a = 1}})).__index.a",
                       err, sizeof (err)),
                  0);
    CHECK_EQ_INT (lua_tointeger (L, -1), 1);
    lua_settop (L, top);
    hal_luadata_destroy (&L);
    CHECK (L == NULL);
    hal_luadata_destroy (&L);
    hal_luadata_destroy (NULL);
}

static void
test_luadata_files (const char *dir)
{
    char err[512], path[512];
    lua_State *L = hal_luadata_new ();
    int top = lua_gettop (L);

    snprintf (path, sizeof (path), "%s/missing.lua", dir);
    CHECK_EQ_INT (hal_luadata_run_file (L, path, err, sizeof (err)),
                  AAAX_ENOENT);
    char want[600];
    snprintf (want, sizeof (want), "%s: cannot open: %s", path,
              strerror (ENOENT));
    CHECK_EQ_STR (err, want);
    CHECK_EQ_INT (hal_luadata_run_file (L, dir, err, sizeof (err)),
                  AAAX_ENOENT);

    snprintf (path, sizeof (path), "%s/data.lua", dir);
    FILE *file = fopen (path, "w");
    fputs ("-- data\nreturn { answer = 42 }\n", file);
    fclose (file);
    CHECK_EQ_INT (hal_luadata_run_file (L, path, err, sizeof (err)), 0);
    CHECK (lua_istable (L, -1));
    lua_settop (L, top);

    file = fopen (path, "w");
    fputs ("local x = 1\nreturn x +\n", file);
    fclose (file);
    CHECK_EQ_INT (hal_luadata_run_file (L, path, err, sizeof (err)),
                  AAAX_EINVAL);
    snprintf (want, sizeof (want), "%s:3: unexpected symbol near <eof>", path);
    CHECK_EQ_STR (err, want);

    //  Long paths are named in full, not as Lua's "...tail".
    char longdir[400];
    snprintf (longdir, sizeof (longdir),
              "%s/a-rather-long-directory-name-to-exceed-lua-idsize-limits",
              dir);
    CHECK_EQ_INT (mkdir (longdir, 0700), 0);
    snprintf (path, sizeof (path), "%s/file-with-a-long-name.lua", longdir);
    file = fopen (path, "w");
    fputs ("\nerror('deep')\n", file);
    fclose (file);
    CHECK_EQ_INT (hal_luadata_run_file (L, path, err, sizeof (err)),
                  AAAX_EINVAL);
    snprintf (want, sizeof (want), "%s:2: deep", path);
    CHECK_EQ_STR (err, want);
    file = fopen (path, "w");
    fputs ("\n\nreturn {", file);
    fclose (file);
    CHECK_EQ_INT (hal_luadata_run_file (L, path, err, sizeof (err)),
                  AAAX_EINVAL);
    snprintf (want, sizeof (want), "%s:3: unexpected symbol near <eof>", path);
    CHECK_EQ_STR (err, want);
    unlink (path);
    rmdir (longdir);

    //  A binary file is refused.
    snprintf (path, sizeof (path), "%s/bin.lua", dir);
    file = fopen (path, "w");
    fputs ("\x1bLuaT", file);
    fclose (file);
    CHECK_EQ_INT (hal_luadata_run_file (L, path, err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK (strstr (err, "binary chunks are not allowed") != NULL);
    unlink (path);

    snprintf (path, sizeof (path), "%s/data.lua", dir);
    unlink (path);
    CHECK_EQ_INT (lua_gettop (L), top);
    hal_luadata_destroy (&L);
}

//  Policies from Lua -------------------------------------------------------

/*  Runs src and reads its value as a policy; returns the rc. */
static int
from_lua (const char *src, policy_t **out, char *err, size_t errlen)
{
    lua_State *L = hal_luadata_new ();
    int rc = hal_luadata_run_string (L, src, strlen (src), "config.lua", err,
                                     errlen);
    if (rc == 0) {
        int top = lua_gettop (L);
        rc = policy_from_lua (L, -1, "config.lua", out, err, errlen);
        CHECK_EQ_INT (lua_gettop (L), top); /* stack unchanged */
    }
    hal_luadata_destroy (&L);
    return rc;
}

static void
test_policy_from_lua (void)
{
    char err[512];
    policy_t *policy = NULL;
    const char *good = "return {\n"
                       "  { subject = 'worker-*', action = 'chan.claim', "
                       "target = 'orders*', effect = 'allow' },\n"
                       "  { subject = '*', action = 'chan.write', target = "
                       "'orders', effect = 'allow', rate = '1000/s' },\n"
                       "  { subject = '*', action = 'chan.read', target = "
                       "'news', effect = 'allow', name = 'news' },\n"
                       "  { subject = '*', action = 'fs.delete', target = '*', "
                       "effect = 'deny' },\n"
                       "  { subject = 'agent-*', action = 'net.fetch', target "
                       "= 'https://*', effect = 'ask' },\n"
                       "}\n";
    CHECK_EQ_INT (from_lua (good, &policy, err, sizeof (err)), 0);
    CHECK (policy);
    CHECK_EQ_INT (policy_size (policy), 5);
    policy_decision_t d;
    policy_decide (policy, "worker-3", "chan.claim", "orders.eu", &d);
    CHECK_EQ_INT (d.effect, POLICY_ALLOW);
    CHECK_EQ_INT (d.rule, 0);
    policy_decide (policy, "agent-1", "net.fetch", "https://x", &d);
    CHECK_EQ_INT (d.effect, POLICY_ASK);
    policy_decide (policy, "agent-1", "fs.delete", "/", &d);
    CHECK_EQ_INT (d.effect, POLICY_DENY);
    CHECK_EQ_INT (d.rule, 3);
    CHECK_EQ_STR (policy_rule_name (policy, 2), "news");
    CHECK_EQ_STR (policy_rule_name (policy, 1), "rule#2");
    CHECK_EQ_STR (policy_rule_source (policy, 1), "config.lua");
    int rated[4];
    CHECK_EQ_INT (policy_rated (policy, "x", "chan.write", "orders", rated, 4),
                  1);
    CHECK_EQ_INT (rated[0], 1);
    policy_destroy (&policy);

    //  An empty list is a valid policy that denies everything.
    CHECK_EQ_INT (from_lua ("return {}", &policy, err, sizeof (err)), 0);
    CHECK_EQ_INT (policy_size (policy), 0);
    policy_destroy (&policy);

    //  Metatables are not consulted.
    CHECK_EQ_INT (from_lua ("return setmetatable({}, {__index = function() "
                            "error('called') end, __len = function() return "
                            "5 end})",
                            &policy, err, sizeof (err)),
                  0);
    CHECK_EQ_INT (policy_size (policy), 0);
    policy_destroy (&policy);
    CHECK_EQ_INT (from_lua ("local r = setmetatable({}, {__index = {subject = "
                            "'*', action = '*', target = '*', effect = "
                            "'allow'}}) return { r }",
                            &policy, err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK_EQ_STR (err, "config.lua: rule 1: missing field \"subject\"");

    static const struct {
        const char *src, *message;
    } bad[] = {
        { "return nil",
          "config.lua: policy must be a list of rules (got nil)" },
        { "return 'policy.lua'",
          "config.lua: policy must be a list of rules (got string)" },
        { "return { {subject='*', action='*', target='*', effect='allow'}, "
          "{subject='*', action='*', target='*', efect='deny'} }",
          "config.lua: rule 2: unknown field \"efect\"" },
        { "return { {subject='*', action='*', target='*', effect='allow', "
          "zzz=1, aaa=2} }",
          "config.lua: rule 1: unknown field \"aaa\"" },
        { "return { {subject='*', action='*', target='*'} }",
          "config.lua: rule 1: missing field \"effect\"" },
        { "return { {subject='*', action='*', effect='allow'} }",
          "config.lua: rule 1: missing field \"target\"" },
        { "return { {subject=1, action='*', target='*', effect='allow'} }",
          "config.lua: rule 1: field \"subject\" must be a string (got "
          "number)" },
        { "return { {subject='*', action='*', target='*', effect='allow', "
          "rate=10} }",
          "config.lua: rule 1: field \"rate\" must be a string (got number)" },
        { "return { {subject='*', action='*', target='*', effect='allow', "
          "name=true} }",
          "config.lua: rule 1: field \"name\" must be a string (got boolean)" },
        { "return { {subject='*', action='*', target='*', effect='allow', "
          "'positional'} }",
          "config.lua: rule 1: field names must be strings (got a number "
          "key)" },
        { "return { {subject='*', action='*', target='*', effect='allow'}, 42 "
          "}",
          "config.lua: rule 2: must be a table (got number)" },
        { "return { [1] = {subject='*', action='*', target='*', "
          "effect='allow'}, [3] = {} }",
          "config.lua: policy must be a list of rules (rule 2 is missing)" },
        { "return { [2] = {} }",
          "config.lua: policy must be a list of rules (rule 1 is missing)" },
        { "return { {subject='*', action='*', target='*', effect='allow'}, x = "
          "{} }",
          "config.lua: policy must be a list of rules (found a key that is not "
          "a rule number 1, 2, ...)" },
        { "return { [0] = {} }",
          "config.lua: policy must be a list of rules (found a key that is not "
          "a rule number 1, 2, ...)" },
        { "return { [1.5] = {} }",
          "config.lua: policy must be a list of rules (found a key that is not "
          "a rule number 1, 2, ...)" },
        { "return { {subject='*', action='*', target='*', effect='alow'} }",
          "config.lua: rule 1: effect must be \"allow\", \"ask\" or \"deny\" "
          "(got \"alow\")" },
        { "return { {subject='*', action='*', target='*', effect='allow', "
          "rate='5/d'} }",
          "config.lua: rule 1: rate must be \"N/s\", \"N/m\" or \"N/h\" with N "
          "from 1 to 1000000 (got \"5/d\")" },
        { "return { {subject='', action='*', target='*', effect='allow'} }",
          "config.lua: rule 1: field \"subject\" must not be empty" },
        { "return { {subject='a\\0b', action='*', target='*', effect='allow'} "
          "}",
          "config.lua: rule 1: field \"subject\" contains a NUL byte" },
        { "return { {subject='*', action='*', target='*', effect='allow', "
          "['eff\\1ect']='x'} }",
          "config.lua: rule 1: unknown field \"eff?ect\"" },
    };
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++) {
        policy = NULL;
        err[0] = '\0';
        int rc = from_lua (bad[i].src, &policy, err, sizeof (err));
        CHECK_EQ_INT (rc, AAAX_EINVAL);
        CHECK (policy == NULL);
        CHECK_EQ_STR (err, bad[i].message);
    }
    //  Errors from running the chunk come through as they are.
    CHECK_EQ_INT (from_lua ("return {", &policy, err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK (strncmp (err, "config.lua:1:", 13) == 0);
    //  A non-table at another index and a relative index.
    lua_State *L = hal_luadata_new ();
    CHECK_EQ_INT (run (L,
                       "return {{subject='*', action='*', target='*', "
                       "effect='deny'}}",
                       err, sizeof (err)),
                  0);
    lua_pushinteger (L, 7);
    CHECK_EQ_INT (policy_from_lua (L, -2, "x", &policy, err, sizeof (err)), 0);
    CHECK_EQ_INT (policy_size (policy), 1);
    policy_destroy (&policy);
    CHECK_EQ_INT (policy_from_lua (L, -1, "x", &policy, err, sizeof (err)),
                  AAAX_EINVAL);
    CHECK_EQ_STR (err, "x: policy must be a list of rules (got number)");
    hal_luadata_destroy (&L);
}

static void
test_policy_load_file (const char *dir)
{
    char err[512], path[512], want[700];
    policy_t *policy = NULL;
    snprintf (path, sizeof (path), "%s/policy.lua", dir);
    FILE *file = fopen (path, "w");
    fputs ("-- policy file\n"
           "local rules = {}\n"
           "for _, who in ipairs({'a', 'b'}) do\n"
           "  rules[#rules + 1] = { subject = who .. '-*', action = "
           "'chan.read', target = '*', effect = 'allow', rate = '10/m' }\n"
           "end\n"
           "return rules\n",
           file);
    fclose (file);
    CHECK_EQ_INT (policy_load_file (path, &policy, err, sizeof (err)), 0);
    CHECK_EQ_INT (policy_size (policy), 2);
    CHECK_EQ_STR (policy_rule_source (policy, 0), path);
    policy_destroy (&policy);

    file = fopen (path, "w");
    fputs ("return {\n { subject = '*', action = '*', target = '*', efect = "
           "'deny' },\n}\n",
           file);
    fclose (file);
    CHECK_EQ_INT (policy_load_file (path, &policy, err, sizeof (err)),
                  AAAX_EINVAL);
    snprintf (want, sizeof (want), "%s:2: rule 1: unknown field \"efect\"",
              path);
    CHECK_EQ_STR (err, want);
    CHECK (policy == NULL);

    file = fopen (path, "w");
    fputs ("while true do end\n", file);
    fclose (file);
    CHECK_EQ_INT (policy_load_file (path, &policy, err, sizeof (err)),
                  AAAX_ELIMIT);
    unlink (path);
    CHECK_EQ_INT (policy_load_file (path, &policy, err, sizeof (err)),
                  AAAX_ENOENT);
    CHECK (policy == NULL);
}

//  Copies and listing ------------------------------------------------------

static void
test_clone (void)
{
    policy_t *policy = policy_new ();
    policy_rule_spec_t specs[] = {
        { "*", "chan.write", "orders", "allow", "2/s", NULL, "p.lua:3" },
        { "agent-*", "net.fetch", "https://*", "ask", NULL, "fetch", NULL },
        { "*", "fs.delete", "*", "deny", NULL, NULL, "p.lua:9" },
        { "w-*", "chan.*", "q*", "allow", "0100/m", NULL, NULL },
    };
    char err[256];
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ_INT (policy_add (policy, &specs[i], err, sizeof (err)), 0);
    //  A leading zero is refused; a plain rate is kept.
    CHECK_EQ_INT (policy_add (policy, &specs[3], err, sizeof (err)),
                  AAAX_EINVAL);
    specs[3].rate = "100/m";
    CHECK_EQ_INT (policy_add (policy, &specs[3], err, sizeof (err)), 0);

    //  Rules as written, borrowed.
    policy_rule_spec_t got;
    CHECK_EQ_INT (policy_rule_spec (policy, 0, &got), 0);
    CHECK_EQ_STR (got.subject, "*");
    CHECK_EQ_STR (got.action, "chan.write");
    CHECK_EQ_STR (got.target, "orders");
    CHECK_EQ_STR (got.effect, "allow");
    CHECK_EQ_STR (got.rate, "2/s");
    CHECK_EQ_STR (got.name, "rule#1");
    CHECK_EQ_STR (got.source, "p.lua:3");
    CHECK_EQ_INT (policy_rule_spec (policy, 1, &got), 0);
    CHECK_EQ_STR (got.effect, "ask");
    CHECK (got.rate == NULL);
    CHECK_EQ_STR (got.name, "fetch");
    CHECK (got.source == NULL);
    CHECK_EQ_INT (policy_rule_spec (policy, 3, &got), 0);
    CHECK_EQ_STR (got.rate, "100/m");
    CHECK_EQ_INT (policy_rule_spec (policy, 4, &got), AAAX_EINVAL);
    CHECK_EQ_INT (policy_rule_spec (policy, -1, &got), AAAX_EINVAL);
    CHECK_EQ_INT (policy_rule_spec (NULL, 0, &got), AAAX_EINVAL);
    CHECK_EQ_INT (policy_rule_spec (policy, 0, NULL), AAAX_EINVAL);

    //  Use up the original's window for bob.
    int rated[4];
    CHECK_EQ_INT (
        policy_rated (policy, "bob", "chan.write", "orders", rated, 4), 1);
    CHECK_EQ_INT (policy_rate_take (policy, rated, 1, "bob", 0), 0);
    CHECK_EQ_INT (policy_rate_take (policy, rated, 1, "bob", 1), 0);
    CHECK_EQ_INT (policy_rate_take (policy, rated, 1, "bob", 2), AAAX_ELIMIT);

    policy_t *copy = policy_clone (policy);
    CHECK (copy != NULL);
    CHECK (policy_clone (NULL) == NULL);
    CHECK_EQ_INT (policy_size (copy), policy_size (policy));
    char digest[65];
    snprintf (digest, sizeof (digest), "%s", policy_digest (policy));
    CHECK_EQ_STR (policy_digest (copy), digest);
    for (int i = 0; i < 4; i++) {
        policy_rule_spec_t a, b;
        CHECK_EQ_INT (policy_rule_spec (policy, i, &a), 0);
        CHECK_EQ_INT (policy_rule_spec (copy, i, &b), 0);
        CHECK_EQ_STR (a.subject, b.subject);
        CHECK_EQ_STR (a.action, b.action);
        CHECK_EQ_STR (a.target, b.target);
        CHECK_EQ_STR (a.effect, b.effect);
        CHECK_EQ_STR (a.name, b.name);
        CHECK ((a.rate == NULL) == (b.rate == NULL));
        if (a.rate && b.rate)
            CHECK_EQ_STR (a.rate, b.rate);
        CHECK ((a.source == NULL) == (b.source == NULL));
        if (a.source && b.source)
            CHECK_EQ_STR (a.source, b.source);
        CHECK (a.subject != b.subject); /* deep: its own strings */
    }
    //  Fresh rate state in the copy, the original's untouched.
    CHECK_EQ_INT (policy_rate_take (copy, rated, 1, "bob", 2), 0);
    CHECK_EQ_INT (policy_rate_take (copy, rated, 1, "bob", 3), 0);
    CHECK_EQ_INT (policy_rate_take (copy, rated, 1, "bob", 4), AAAX_ELIMIT);
    CHECK_EQ_INT (policy_rate_take (policy, rated, 1, "bob", 5), AAAX_ELIMIT);
    //  Same decisions; the copy outlives the original.
    policy_decision_t d1, d2;
    policy_decide (policy, "agent-1", "net.fetch", "https://x", &d1);
    policy_destroy (&policy);
    policy_decide (copy, "agent-1", "net.fetch", "https://x", &d2);
    CHECK_EQ_INT (d1.effect, d2.effect);
    CHECK_EQ_INT (d1.rule, d2.rule);
    CHECK_EQ_STR (policy_rule_name (copy, 1), "fetch");
    CHECK_EQ_STR (policy_rule_source (copy, 2), "p.lua:9");
    policy_destroy (&copy);

    //  An empty policy clones to an empty one with the same digest.
    policy = policy_new ();
    copy = policy_clone (policy);
    CHECK (copy && policy_size (copy) == 0);
    CHECK_EQ_STR (policy_digest (copy), policy_digest (policy));
    policy_destroy (&copy);
    policy_destroy (&policy);

    //  Rates parse as a rule's.
    uint32_t n = 0;
    int64_t period = 0;
    CHECK_EQ_INT (policy_parse_rate ("10/s", &n, &period), 0);
    CHECK_EQ_INT (n, 10);
    CHECK_EQ_INT (period, 1000);
    CHECK_EQ_INT (policy_parse_rate ("1000000/h", &n, &period), 0);
    CHECK_EQ_INT (period, 3600000);
    CHECK_EQ_INT (policy_parse_rate ("3/m", NULL, NULL), 0);
    const char *bad[] = { "",      "0/s",  "01/s",      "10",   "10/", "10/d",
                          "10/ss", " 1/s", "1000001/s", "-1/s", "1/S" };
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++)
        CHECK_EQ_INT (policy_parse_rate (bad[i], &n, &period), AAAX_EINVAL);
    CHECK_EQ_INT (policy_parse_rate (NULL, &n, &period), AAAX_EINVAL);
}

//  Lines of rules -----------------------------------------------------------

/*  Scans src; returns the rc and writes "l1,l2,..." into out. */
static int
lines_of (const char *src, policy_lines_mode_t mode, char *out, size_t outlen)
{
    int *lines = (int *) 1; /* must stay untouched on error */
    size_t n = 99;
    out[0] = '\0';
    int rc = policy_lines (src, strlen (src), mode, &lines, &n);
    if (rc) {
        CHECK (lines == (int *) 1 && n == 99);
        return rc;
    }
    CHECK ((n == 0) == (lines == NULL));
    size_t used = 0;
    for (size_t i = 0; i < n && used < outlen; i++)
        used += (size_t) snprintf (out + used, outlen - used, "%s%d",
                                   i ? "," : "", lines[i]);
    free (lines);
    return 0;
}

static void
test_lines (void)
{
    char got[256];
    static const struct {
        int mode; /* 0 file, 1 config */
        const char *src;
        int rc;
        const char *lines;
    } cases[] = {
        { 0, "return {}", 0, "" },
        { 0, "return {\n}\n", 0, "" },
        { 0, "return { {a=1}, {b=2} }", 0, "1,1" },
        { 0, "return {\n {a=1},\n\n {b=2},\n}\n", 0, "2,4" },
        { 0, "return {\n {a=1};\n {b=2};\n};", 0, "2,3" },
        //  comments and strings holding brackets, quotes and separators
        { 0,
          "-- a { comment }, with ' and \"\n"
          "--[==[ long\n } ]] ]=] \n]==]\n"
          "return { -- {\n"
          "  { s = '}', t = \"{,\" },\n"
          "  { s = [[\n}\n]], t = 'a\\'b' },  --[[ , ]] { u = [=[]]]=] },\n"
          "  { s = \"x\\\n y\" },\n"
          "  {\n s = 1 },\n"
          "}\n",
          0, "6,7,9,10,12" },
        //  nested tables, functions and calls inside a rule
        { 0,
          "local function f(x) return x end\n"
          "return {\n"
          "  f({ a = { 1, 2, { 3 } } }),\n"
          "  { a = (function() if true then return '}' end end)() },\n"
          "  { a = ({ 'x' })[1], b = 1 == 1 and 2 >= 1, c = 1 ~= 2 },\n"
          "}",
          0, "3,4,5" },
        //  numbers: exponents with signs, hex floats, concatenation
        { 0,
          "return {\n{ a = 1e+5, b = 0x1p-2, c = .5, d = 3 .. 4 },\n"
          "{ e = 'a'..'b', f = ... },\n}",
          0, "2,3" },
        //  line breaks: \r\n, \n\r and \r each count once
        { 0, "return {\r\n{a=1},\r\n{b=2},\n\r{c=3},\r{d=4}}", 0, "2,3,4,5" },
        //  \z skips line breaks inside a string, which still count
        { 0, "return {\n{ a = 'x\\z\n\n  y' },\n{ b = 1 }\n}", 0, "2,5" },
        //  the chunk's own return, not one inside a block
        { 0,
          "local function g() return { 1 } end\n"
          "if false then return { 2 } end\n"
          "do local x = { 3 } end\n"
          "while false do end\n"
          "for i = 1, 2 do end\n"
          "repeat local y = 1 until true\n"
          "return {\n  { z = 1 },\n}",
          0, "8" },
        //  not a literal list
        { 0, "local r = {} return r", AAAX_ENOENT, "" },
        { 0, "return { [1] = {} }", AAAX_ENOENT, "" },
        { 0, "return { x = {} }", AAAX_ENOENT, "" },
        { 0, "return { {} } .. 'x'", AAAX_ENOENT, "" },
        { 0, "return {", AAAX_ENOENT, "" },
        { 0, "return { {a=1}, ", AAAX_ENOENT, "" },
        { 0, "return { {a=1)) }", AAAX_ENOENT, "" },
        { 0, "return { [[x }", AAAX_ENOENT, "" },
        { 0, "return { --[[ x }", AAAX_ENOENT, "" },
        { 0, "x = 1", AAAX_ENOENT, "" },
        { 0, "", AAAX_ENOENT, "" },
        { 0, "function f() return {1} end", AAAX_ENOENT, "" },
        //  configuration files: the policy key of the returned table
        { 1,
          "return {\n"
          "  heartbeat_ms = 1000,\n"
          "  channels = { { name = 'policy' }, policy = 1 },\n"
          "  policy = {\n"
          "    { subject = '*' },\n"
          "    { subject = 'x' },\n"
          "  },\n"
          "  apps = {},\n"
          "}\n",
          0, "5,6" },
        { 1, "return { ['policy'] = {\n{},\n{}} }", 0, "2,3" },
        { 1, "return { policy = {} }", 0, "" },
        { 1, "return { policy = {{}}, policy = {\n{}} }", 0, "2" },
        { 1, "return { policy = 'rules.lua' }", AAAX_ENOENT, "" },
        { 1, "return { policy = {{}} or x }", AAAX_ENOENT, "" },
        { 1, "return { policy = {{}}, policy = p }", AAAX_ENOENT, "" },
        { 1, "return { heartbeat_ms = 5 }", AAAX_ENOENT, "" },
        { 1, "local p = {} return { policy = p }", AAAX_ENOENT, "" },
        { 1, "return { policy = { [1] = {} }, policy = {{}} }", AAAX_ENOENT,
          "" },
        { 1, "return { policy == {{}} }", AAAX_ENOENT, "" },
    };
    for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++) {
        int rc =
            lines_of (cases[i].src,
                      cases[i].mode ? POLICY_LINES_CONFIG : POLICY_LINES_FILE,
                      got, sizeof (got));
        if (rc != cases[i].rc || strcmp (got, cases[i].lines) != 0) {
            fprintf (stderr, "  lines case %zu: rc %d \"%s\"\n", i, rc, got);
            CHECK_EQ_INT (rc, cases[i].rc);
            CHECK_EQ_STR (got, cases[i].lines);
        }
    }
    //  Not NUL-terminated, and bytes of every value.
    int *lines = NULL;
    size_t n = 0;
    CHECK_EQ_INT (
        policy_lines ("return {{},{}}XXXX", 14, POLICY_LINES_FILE, &lines, &n),
        0);
    CHECK_EQ_INT (n, 2);
    free (lines);
    char noise[512];
    for (int round = 0; round < 2000; round++) {
        size_t len = rng () % sizeof (noise);
        static const char alphabet[] = "return{}[]=-\"'\\\n\r, ;policyxz.0e+";
        for (size_t j = 0; j < len; j++)
            noise[j] = round % 2 ? (char) rng ()
                                 : alphabet[rng () % (sizeof (alphabet) - 1)];
        lines = NULL;
        if (policy_lines (noise, len, (policy_lines_mode_t) (round % 2 == 0),
                          &lines, &n)
            == 0)
            free (lines);
    }
    CHECK_EQ_INT (policy_lines (NULL, 0, POLICY_LINES_FILE, &lines, &n),
                  AAAX_ENOENT);
}

/*  Loads a policy file's text; returns the rc. */
static int
load_text (const char *text, policy_t **out, char *err, size_t errlen)
{
    return policy_load_text (text, strlen (text), "/etc/aaax/policy.lua", out,
                             err, errlen);
}

static void
test_rule_lines (const char *dir)
{
    char err[512];
    policy_t *policy = NULL;
    const char *good = "-- the policy\n"
                       "return {\n"
                       "  { subject = '*', action = 'chan.read', target = 'a', "
                       "effect = 'allow' },\n"
                       "\n"
                       "  { subject = '*', action = 'chan.write',\n"
                       "    target = 'a', effect = 'deny', name = 'no' },\n"
                       "}\n";
    CHECK_EQ_INT (load_text (good, &policy, err, sizeof (err)), 0);
    CHECK_EQ_INT (policy_size (policy), 2);
    CHECK_EQ_STR (policy_rule_source (policy, 0), "/etc/aaax/policy.lua:3");
    CHECK_EQ_STR (policy_rule_source (policy, 1), "/etc/aaax/policy.lua:5");
    CHECK_EQ_STR (policy_rule_name (policy, 1), "no");
    policy_destroy (&policy);

    static const struct {
        const char *src, *message;
    } bad[] = {
        { "return {\n"
          "  { subject = '*', action = '*', target = '*', effect = 'allow' },\n"
          "  -- a comment\n"
          "  { subject = '*', action = '*', target = '*', effect = 'alow' },\n"
          "}\n",
          "/etc/aaax/policy.lua:4: rule 2: effect must be \"allow\", \"ask\" "
          "or \"deny\" (got \"alow\")" },
        { "return {\n\n\n  { subject = '*', action = '*', target = '*' },\n}",
          "/etc/aaax/policy.lua:4: rule 1: missing field \"effect\"" },
        { "return {\n{ subject = '*', action = '*', target = '*', effect = "
          "'allow', rate = '5/d' }}",
          "/etc/aaax/policy.lua:2: rule 1: rate must be \"N/s\", \"N/m\" or "
          "\"N/h\" with N from 1 to 1000000 (got \"5/d\")" },
        { "return {\n {subject='*', action='*', target='*', effect='allow'},\n"
          " 42,\n}",
          "/etc/aaax/policy.lua:3: rule 2: must be a table (got number)" },
        { "return {\n {subject='*', action='*', target='*', efect='deny'} }",
          "/etc/aaax/policy.lua:2: rule 1: unknown field \"efect\"" },
        //  built by code: no line, the rule's number
        { "local r = {}\nr[1] = {subject='*', action='*', target='*', "
          "effect='maybe'}\nreturn r",
          "/etc/aaax/policy.lua: rule 1: effect must be \"allow\", \"ask\" or "
          "\"deny\" (got \"maybe\")" },
        //  an element that expands to several rules: the count differs
        { "local r = {subject='*', action='*', target='*', effect='allow'}\n"
          "return {\n r,\n {},\n table.unpack({ r, r })\n}",
          "/etc/aaax/policy.lua: rule 2: missing field \"subject\"" },
        //  Lua's own errors carry its line
        { "return {\n {subject='*',, }\n}",
          "/etc/aaax/policy.lua:2: unexpected symbol near ','" },
        { "\n\nerror('no policy today')",
          "/etc/aaax/policy.lua:3: no policy today" },
    };
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++) {
        policy = NULL;
        int rc = load_text (bad[i].src, &policy, err, sizeof (err));
        CHECK_EQ_INT (rc, AAAX_EINVAL);
        CHECK (policy == NULL);
        CHECK_EQ_STR (err, bad[i].message);
    }

    //  Rules built by code keep the file as their source.
    CHECK_EQ_INT (load_text ("local r = {}\nr[1] = {subject='*', action='*', "
                             "target='*', effect='allow'}\nreturn r",
                             &policy, err, sizeof (err)),
                  0);
    CHECK_EQ_STR (policy_rule_source (policy, 0), "/etc/aaax/policy.lua");
    policy_destroy (&policy);

    //  From a file, through one read.
    char path[512], want[700];
    snprintf (path, sizeof (path), "%s/lines.lua", dir);
    FILE *file = fopen (path, "w");
    fputs ("return {\r\n"
           "  { subject = 'a', action = 'x', target = '*', effect = 'allow' "
           "},\r\n"
           "  { subject = 'b', action = 'x', target = '*', effect = 'nope' "
           "},\r\n"
           "}\r\n",
           file);
    fclose (file);
    CHECK_EQ_INT (policy_load_file (path, &policy, err, sizeof (err)),
                  AAAX_EINVAL);
    snprintf (want, sizeof (want),
              "%s:3: rule 2: effect must be \"allow\", \"ask\" or \"deny\" "
              "(got \"nope\")",
              path);
    CHECK_EQ_STR (err, want);
    char *text = NULL;
    size_t len = 0;
    CHECK_EQ_INT (hal_luadata_read_file (path, &text, &len, err, sizeof (err)),
                  0);
    CHECK (text && len == strlen (text) && strncmp (text, "return {", 8) == 0);
    free (text);
    CHECK_EQ_INT (hal_luadata_read_file (dir, &text, &len, err, sizeof (err)),
                  AAAX_ENOENT);
    unlink (path);
    CHECK_EQ_INT (hal_luadata_read_file (path, &text, &len, err, sizeof (err)),
                  AAAX_ENOENT);
    snprintf (want, sizeof (want), "%s: cannot open: %s", path,
              strerror (ENOENT));
    CHECK_EQ_STR (err, want);
}

//  The examples of docs/POLICY.md --------------------------------------------

/*  Checks one example: text is a policy file whose comments hold lines
    "-- decides: SUBJECT ACTION TARGET -> EFFECT" and
    "-- limits: SUBJECT ACTION TARGET -> N/u" (N events pass within the
    period, one more does not, and after the period one does again).
    Returns the number of checks made, or -1 when the file does not load. */
static int
check_example (const char *text, size_t len, int number)
{
    char err[512], name[64];
    snprintf (name, sizeof (name), "POLICY.md example %d", number);
    policy_t *policy = NULL;
    if (policy_load_text (text, len, name, &policy, err, sizeof (err))) {
        fprintf (stderr, "  %s\n", err);
        return -1;
    }
    int checks = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr (p, '\n', (size_t) (end - p));
        if (!eol)
            eol = end;
        char line[512];
        size_t n = (size_t) (eol - p) < sizeof (line) - 1 ? (size_t) (eol - p)
                                                          : sizeof (line) - 1;
        memcpy (line, p, n);
        line[n] = '\0';
        p = eol + 1;
        char kind[16], subject[128], action[128], target[128], arrow[8],
            want[32];
        const char *c = strstr (line, "-- ");
        if (!c
            || sscanf (c, "-- %15[a-z]: %127s %127s %127s %7s %31s", kind,
                       subject, action, target, arrow, want)
                   != 6
            || strcmp (arrow, "->") != 0)
            continue;
        if (strcmp (kind, "decides") == 0) {
            policy_decision_t d;
            policy_decide (policy, subject, action, target, &d);
            if (strcmp (policy_effect_str (d.effect), want) != 0) {
                fprintf (stderr, "  %s: %s %s %s -> %s, not %s\n", name,
                         subject, action, target, policy_effect_str (d.effect),
                         want);
                CHECK (0);
            }
            checks++;
        } else if (strcmp (kind, "limits") == 0) {
            uint32_t limit = 0;
            int64_t period = 0;
            CHECK_EQ_INT (policy_parse_rate (want, &limit, &period), 0);
            policy_t *fresh = policy_clone (policy);
            int rated[16];
            size_t nrated =
                policy_rated (fresh, subject, action, target, rated, 16);
            CHECK (nrated >= 1 && nrated <= 16);
            int ok = 1;
            for (uint32_t i = 0; i < limit; i++)
                ok &= policy_rate_take (fresh, rated, nrated, subject,
                                        1000 + i % 2)
                      == 0;
            ok &= policy_rate_take (fresh, rated, nrated, subject, 1001)
                  == AAAX_ELIMIT;
            ok &=
                policy_rate_take (fresh, rated, nrated, subject, 1001 + period)
                == 0;
            if (!ok) {
                fprintf (stderr, "  %s: %s %s %s does not limit to %s\n", name,
                         subject, action, target, want);
                CHECK (0);
            }
            policy_destroy (&fresh);
            checks++;
        }
    }
    policy_destroy (&policy);
    return checks;
}

static void
test_doc_examples (void)
{
    //  docs/POLICY.md, found from this file's path (CMake passes absolute
    //  paths): <root>/tests/unit/test_policy.c.
    char path[1024];
    snprintf (path, sizeof (path), "%s", __FILE__);
    char *cut = strstr (path, "tests/unit/test_policy.c");
    CHECK (cut != NULL);
    if (!cut)
        return;
    snprintf (cut, sizeof (path) - (size_t) (cut - path), "docs/POLICY.md");
    char *doc = NULL;
    size_t len = 0;
    char err[512];
    if (hal_luadata_read_file (path, &doc, &len, err, sizeof (err))) {
        fprintf (stderr, "  %s\n", err);
        CHECK (0);
        return;
    }
    //  Every ```lua block with a "-- decides:" or "-- limits:" line.
    int examples = 0, checks = 0;
    const char *p = doc;
    while ((p = strstr (p, "```lua\n"))) {
        p += 7;
        const char *close = strstr (p, "\n```");
        if (!close)
            break;
        size_t blen = (size_t) (close - p) + 1;
        char *block = strndup (p, blen);
        if (strstr (block, "-- decides:") || strstr (block, "-- limits:")) {
            examples++;
            int n = check_example (block, blen, examples);
            CHECK (n > 0);
            checks += n > 0 ? n : 0;
        }
        free (block);
        p = close + 4;
    }
    CHECK (examples >= 6);
    CHECK (checks >= 30);
    free (doc);
}

int
main (void)
{
    char dir[] = "/tmp/test_policy.XXXXXX";
    if (!mkdtemp (dir)) {
        perror ("mkdtemp");
        return 1;
    }
    CHECK_EQ_INT (policy_test (0), 0);
    test_globs ();
    test_add_errors ();
    test_decide ();
    test_rated ();
    test_rate_window ();
    test_rate_reference ();
    test_rate_two_phase ();
    test_rate_gc ();
    test_digest ();
    test_index_equivalence ();
    test_luadata ();
    test_luadata_files (dir);
    test_policy_from_lua ();
    test_policy_load_file (dir);
    test_clone ();
    test_lines ();
    test_rule_lines (dir);
    test_doc_examples ();
    rmdir (dir);
    TEST_DONE ();
}
