/*  test_gate_core.c — the action gate's decision (actors/act_gate_core.c)
    and the shared policy handed to the actors (act_policy_t). */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "act_gate_core.h"
#include "act_kernel.h"
#include "testutil.h"

static void
s_add (policy_t *p, const char *subject, const char *action, const char *target,
       const char *effect, const char *rate)
{
    policy_rule_spec_t spec = { subject, action, target, effect,
                                rate,    NULL,   NULL };
    char err[200];
    CHECK (policy_add (p, &spec, err, sizeof err) == 0);
}

static policy_t *
s_policy (void)
{
    policy_t *p = policy_new ();
    s_add (p, "agent-*", "fs.read", "*", "allow", NULL);         /* rule#1 */
    s_add (p, "*", "fs.delete", "*", "deny", NULL);              /* rule#2 */
    s_add (p, "agent-*", "net.fetch", "https://*", "ask", NULL); /* rule#3 */
    s_add (p, "agent-*", "tool.*", "*", "allow", "2/s");         /* rule#4 */
    s_add (p, "agent-*", "shell.run", "*", "allow", NULL);       /* rule#5 */
    s_add (p, "agent-*", "shell.run", "rm*", "ask", NULL);       /* rule#6 */
    s_add (p, "agent-*", "shell.run", "rm -rf /", "deny", NULL); /* rule#7 */
    return p;
}

static void
test_policy_order (void)
{
    gate_core_t *g = gate_core_new ();
    gate_verdict_t v;
    //  no policy: deny
    gate_core_decide (g, "agent-1", "fs.read", "/x", 0, 0, &v);
    CHECK (v.decision == POLICY_DENY);
    CHECK_EQ_STR (v.reason, "no policy loaded");
    gate_core_set_policy (g, s_policy ());
    gate_core_decide (g, "agent-1", "fs.read", "/x", 0, 0, &v);
    CHECK (v.decision == POLICY_ALLOW);
    CHECK_EQ_STR (v.rule, "rule#1");
    gate_core_decide (g, "agent-1", "fs.delete", "/x", 0, 0, &v);
    CHECK (v.decision == POLICY_DENY);
    CHECK_EQ_STR (v.rule, "rule#2");
    gate_core_decide (g, "other", "fs.read", "/x", 0, 0, &v);
    CHECK (v.decision == POLICY_DENY);
    CHECK (v.rule == NULL);
    CHECK_EQ_STR (v.reason, "no rule allows it");
    //  ask beats allow; deny beats both
    gate_core_decide (g, "agent-1", "shell.run", "ls", 0, 0, &v);
    CHECK (v.decision == POLICY_ALLOW);
    gate_core_decide (g, "agent-1", "shell.run", "rm x", 0, 0, &v);
    CHECK (v.decision == POLICY_ASK);
    CHECK_EQ_STR (v.rule, "rule#6");
    gate_core_decide (g, "agent-1", "shell.run", "rm -rf /", 0, 0, &v);
    CHECK (v.decision == POLICY_DENY);
    CHECK_EQ_STR (v.rule, "rule#7");
    gate_core_destroy (&g);
    gate_core_destroy (&g); /* NULL is fine */
}

static void
test_approvals (void)
{
    gate_core_t *g = gate_core_new ();
    gate_core_set_policy (g, s_policy ());
    gate_verdict_t v;
    CHECK (
        gate_core_approve (g, "a1", "agent-1", "net.fetch", "https://x", true)
        == 0);
    CHECK (
        gate_core_approve (g, "a1", "agent-1", "net.fetch", "https://y", true)
        == AAAX_EEXIST);
    CHECK (
        gate_core_approve (g, "a2", "agent-2", "net.fetch", "https://x", false)
        == 0);
    //  exact triple only
    gate_core_decide (g, "agent-1", "net.fetch", "https://x", 0, 0, &v);
    CHECK (v.decision == POLICY_ALLOW);
    CHECK (strstr (v.reason, "a1") != NULL);
    gate_core_decide (g, "agent-1", "net.fetch", "https://z", 0, 0, &v);
    CHECK (v.decision == POLICY_ASK);
    gate_core_decide (g, "agent-3", "net.fetch", "https://x", 0, 0, &v);
    CHECK (v.decision == POLICY_ASK);
    //  an approval never turns a deny into allow
    CHECK (
        gate_core_approve (g, "a3", "agent-1", "shell.run", "rm -rf /", false)
        == 0);
    gate_core_decide (g, "agent-1", "shell.run", "rm -rf /", 0, 0, &v);
    CHECK (v.decision == POLICY_DENY);
    //  session approvals end with the session; standing ones stay
    CHECK_EQ_INT (gate_core_end_session (g, "agent-1"), 1);
    CHECK_EQ_INT (gate_core_end_session (g, "agent-2"), 0);
    gate_core_decide (g, "agent-1", "net.fetch", "https://x", 0, 0, &v);
    CHECK (v.decision == POLICY_ASK);
    gate_core_decide (g, "agent-2", "net.fetch", "https://x", 0, 0, &v);
    CHECK (v.decision == POLICY_ALLOW);
    CHECK (gate_core_unapprove (g, "a2") == 0);
    CHECK (gate_core_unapprove (g, "a2") == AAAX_ENOENT);
    gate_core_decide (g, "agent-2", "net.fetch", "https://x", 0, 0, &v);
    CHECK (v.decision == POLICY_ASK);
    //  a newer approval of the same triple replaces the older one
    CHECK (
        gate_core_approve (g, "b1", "agent-5", "net.fetch", "https://q", false)
        == 0);
    CHECK (
        gate_core_approve (g, "b2", "agent-5", "net.fetch", "https://q", false)
        == 0);
    CHECK (gate_core_unapprove (g, "b1") == AAAX_ENOENT);
    CHECK (gate_core_unapprove (g, "b2") == 0);
    gate_core_destroy (&g);
}

static void
test_caps (void)
{
    gate_core_t *g = gate_core_new ();
    gate_core_set_policy (g, s_policy ());
    gate_verdict_t v;
    CHECK (gate_core_cap_add (g, "c1", "agent-1", "net.*", 1000) == 0);
    gate_core_decide (g, "agent-1", "net.fetch", "https://x", 0, 999, &v);
    CHECK (v.decision == POLICY_ALLOW);
    CHECK (strstr (v.reason, "c1") != NULL);
    //  expired, other subject, deny: no effect
    gate_core_decide (g, "agent-1", "net.fetch", "https://x", 0, 1000, &v);
    CHECK (v.decision == POLICY_ASK);
    gate_core_decide (g, "agent-9", "net.fetch", "https://x", 0, 999, &v);
    CHECK (v.decision == POLICY_ASK);
    CHECK (gate_core_cap_add (g, "c2", "agent-1", "*", 5000) == 0);
    gate_core_decide (g, "agent-1", "fs.delete", "/", 0, 999, &v);
    CHECK (v.decision == POLICY_DENY);
    //  nor does a capability allow what no rule mentions
    gate_core_decide (g, "agent-1", "launch", "x", 0, 999, &v);
    CHECK (v.decision == POLICY_DENY);
    gate_core_cap_del (g, "c1");
    gate_core_cap_del (g, "c2");
    gate_core_decide (g, "agent-1", "net.fetch", "https://x", 0, 999, &v);
    CHECK (v.decision == POLICY_ASK);
    gate_core_destroy (&g);
}

static void
test_rates (void)
{
    gate_core_t *g = gate_core_new ();
    gate_core_set_policy (g, s_policy ());
    gate_verdict_t v;
    gate_core_decide (g, "agent-1", "tool.a", "t", 1000, 0, &v);
    CHECK (v.decision == POLICY_ALLOW);
    gate_core_decide (g, "agent-1", "tool.b", "t", 1100, 0, &v);
    CHECK (v.decision == POLICY_ALLOW);
    gate_core_decide (g, "agent-1", "tool.c", "t", 1200, 0, &v);
    CHECK (v.decision == POLICY_DENY);
    CHECK_EQ_STR (v.reason, "rate");
    //  per subject
    gate_core_decide (g, "agent-2", "tool.c", "t", 1200, 0, &v);
    CHECK (v.decision == POLICY_ALLOW);
    //  a sliding window: one slot frees at 2000
    gate_core_decide (g, "agent-1", "tool.c", "t", 2000, 0, &v);
    CHECK (v.decision == POLICY_ALLOW);
    gate_core_decide (g, "agent-1", "tool.c", "t", 2050, 0, &v);
    CHECK (v.decision == POLICY_DENY);
    //  a new policy starts new windows
    gate_core_set_policy (g, s_policy ());
    gate_core_decide (g, "agent-1", "tool.c", "t", 2060, 0, &v);
    CHECK (v.decision == POLICY_ALLOW);
    gate_core_destroy (&g);
}

static void
test_shared_policy (void)
{
    act_policy_t *sp = act_policy_new ();
    uint64_t seen = 0;
    CHECK (act_policy_take (sp, &seen) == NULL);
    policy_t *p = s_policy ();
    CHECK (act_policy_set (sp, p) == 1);
    policy_t *c = act_policy_take (sp, &seen);
    CHECK (c != NULL && seen == 1);
    CHECK_EQ_STR (policy_digest (c), policy_digest (p));
    CHECK (act_policy_take (sp, &seen) == NULL); /* unchanged */
    CHECK (act_policy_set (sp, p) == 2);
    policy_t *c2 = act_policy_take (sp, &seen);
    CHECK (c2 != NULL && seen == 2);
    policy_destroy (&c);
    policy_destroy (&c2);
    policy_destroy (&p);
    act_policy_destroy (&sp);
    act_policy_destroy (&sp);
}

int
main (void)
{
    test_policy_order ();
    test_approvals ();
    test_caps ();
    test_rates ();
    test_shared_policy ();
    TEST_DONE ();
}
