/*  test_config.c — unit tests of aaaxd's configuration
    (broker/broker_config.c): the embedded defaults, files and strings laid
    over them, every validation, broker_config_check and the loopback rule. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aaax.h"
#include "broker_config.h"
#include "policy.h"
#include "testutil.h"

static char s_err[1024];

static broker_config_t *
fresh (void)
{
    broker_config_t *c = broker_config_new (s_err, sizeof s_err);
    if (!c) {
        fprintf (stderr, "broker_config_new: %s\n", s_err);
        abort ();
    }
    return c;
}

static int
load (broker_config_t *c, const char *src)
{
    s_err[0] = 0;
    return broker_config_load_string (c, src, "test.lua", s_err, sizeof s_err);
}

/*  Loads src into a fresh config: expects failure and an error containing
    needle, and the configuration unchanged (spot checks). */
#define CHECK_BAD(src, needle)                                       \
    do {                                                             \
        broker_config_t *c_ = fresh ();                              \
        CHECK_EQ_INT (load (c_, (src)), AAAX_EINVAL);                \
        if (!strstr (s_err, (needle))) {                             \
            fprintf (stderr, "  error \"%s\" lacks \"%s\"\n", s_err, \
                     (needle));                                      \
            CHECK (strstr (s_err, (needle)) != NULL);                \
        }                                                            \
        CHECK_EQ_INT (c_->nchannels, 3);                             \
        CHECK_EQ_INT (c_->heartbeat_ms, 1000);                       \
        CHECK_EQ_STR (c_->source, "embedded defaults");              \
        broker_config_destroy (&c_);                                 \
    } while (0)

#define CHECK_GOOD(src)                                          \
    do {                                                         \
        broker_config_t *c_ = fresh ();                          \
        int rc_ = load (c_, (src));                              \
        if (rc_)                                                 \
            fprintf (stderr, "  unexpected error: %s\n", s_err); \
        CHECK_EQ_INT (rc_, 0);                                   \
        broker_config_destroy (&c_);                             \
    } while (0)

static const broker_chan_cfg_t *
chan (const broker_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->nchannels; i++)
        if (!strcmp (c->channels[i].name, name))
            return &c->channels[i];
    return NULL;
}

static policy_effect_t
decide (const broker_config_t *c, const char *s, const char *a, const char *t)
{
    policy_decision_t d;
    policy_decide (c->policy, s, a, t, &d);
    return d.effect;
}

static void
test_defaults (void)
{
    const char *text = broker_config_defaults ();
    CHECK (text && strncmp (text, "--", 2) == 0);
    CHECK (strstr (text, "return {") != NULL);

    broker_config_t *c = fresh ();
    CHECK_EQ_STR (c->data_dir, "./aaax-data");
    CHECK_EQ_INT (c->nbinds, 1);
    CHECK_EQ_STR (c->binds[0], "tcp://127.0.0.1:5670");
    CHECK_EQ_STR (c->tap, "tcp://127.0.0.1:5671");
    CHECK (!c->insecure);
    CHECK_EQ_INT (c->heartbeat_ms, 1000);
    CHECK_EQ_INT (c->max_frame, 1048576);
    /*  The example apps of the source tree, by absolute path. */
    CHECK_EQ_INT (c->napps, 4);
    if (c->napps == 4) {
        CHECK (strstr (c->apps[0], "/apps/echo") != NULL);
        CHECK (strstr (c->apps[3], "/apps/watchdog") != NULL);
        CHECK (c->apps[0][0] == '/');
    }
    CHECK_EQ_INT (c->app_memory_kb, 4096);
    CHECK_EQ_INT (c->app_memory_max_kb, 65536);
    CHECK_EQ_INT (c->app_instructions, 10000000);
    CHECK (c->app_workers >= 1 && c->app_workers <= 16);
    CHECK_EQ_INT (c->kv_map_mb, 1024);
    CHECK_EQ_INT (c->store_map_mb, 4096);
    CHECK_EQ_INT (c->sndhwm, 4096);
    CHECK_EQ_INT (c->mailbox_max_len, 100000);
    CHECK_EQ_INT (c->mailbox_window, 1024);
    CHECK_EQ_INT (c->idempotency_ttl_s, 600);
    CHECK_EQ_INT (c->forget_after_s, 30 * 86400);
    CHECK_EQ_INT (c->max_sessions, 100000);
    CHECK_EQ_INT (c->spin_us, 100);
    CHECK_EQ_INT (c->commit_delay_us, 1000);
    CHECK_EQ_INT (c->audit_map_mb, 256);
    CHECK_EQ_INT (c->audit_checkpoint_every, 1000);
    CHECK_EQ_STR (c->lifecycle_rate, "10/s");
    CHECK_EQ_INT (c->lifecycle_rate_n, 10);
    CHECK_EQ_INT (c->lifecycle_rate_ms, 1000);
    CHECK_EQ_INT (c->stop_grace_ms, 5000);
    CHECK_EQ_INT (c->ask_timeout_s, 300);
    CHECK (strstr (text, "audit_map_mb = 256") != NULL);
    CHECK (strstr (text, "audit_checkpoint_every = 1000") != NULL);
    CHECK (strstr (text, "lifecycle_rate = \"10/s\"") != NULL);
    CHECK (strstr (text, "stop_grace_ms = 5000") != NULL);
    CHECK (strstr (text, "ask_timeout_s = 300") != NULL);
    CHECK_EQ_STR (c->source, "embedded defaults");
    CHECK_EQ_STR (broker_config_policy_source (c), "embedded defaults");
    CHECK_EQ_INT (c->policy_from, BROKER_POLICY_TEXT);
    CHECK (c->policy_text == NULL);

    CHECK_EQ_INT (c->nchannels, 3);
    CHECK (chan (c, "alerts") != NULL);
    const broker_chan_cfg_t *jobs = chan (c, "jobs");
    CHECK (jobs != NULL);
    if (jobs) {
        CHECK_EQ_INT (jobs->kind, BROKER_CHAN_QUEUE);
        CHECK (jobs->durable);
        CHECK_EQ_INT (jobs->max_attempts, 5);
        CHECK_EQ_INT (jobs->max_len, 100000);
        CHECK_EQ_INT (jobs->max_bytes, 0);
        CHECK_EQ_INT (jobs->lease_ms, 30000);
        CHECK (!jobs->public);
        CHECK_EQ_INT (jobs->retain, 0);
    }
    const broker_chan_cfg_t *ev = chan (c, "events");
    CHECK (ev != NULL);
    if (ev) {
        CHECK_EQ_INT (ev->kind, BROKER_CHAN_BROADCAST);
        CHECK (!ev->durable);
        CHECK (ev->public);
        CHECK_EQ_INT (ev->retain, 100);
    }
    //  policy rules
    CHECK (c->policy != NULL);
    CHECK_EQ_INT (policy_size (c->policy), 11);
    CHECK_EQ_INT (decide (c, "anyone", "chan.write", "jobs"), POLICY_ALLOW);
    CHECK_EQ_INT (decide (c, "watchdog", "chan.write", "alerts"), POLICY_ALLOW);
    CHECK_EQ_INT (decide (c, "anyone", "chan.write", "alerts"), POLICY_DENY);
    CHECK_EQ_INT (decide (c, "anyone", "chan.claim", "jobs"), POLICY_ALLOW);
    CHECK_EQ_INT (decide (c, "anyone", "chan.claim", "jobs.dlq"), POLICY_ALLOW);
    CHECK_EQ_INT (decide (c, "anyone", "chan.read", "events"), POLICY_ALLOW);
    CHECK_EQ_INT (decide (c, "anyone", "chan.write", "events"), POLICY_ALLOW);
    CHECK_EQ_INT (decide (c, "anyone", "chan.write", "jobs.dlq"), POLICY_DENY);
    CHECK_EQ_INT (decide (c, "anyone", "chan.read", "jobs"), POLICY_DENY);
    //  the defaults pass the whole-configuration check
    CHECK_EQ_INT (broker_config_check (c, s_err, sizeof s_err), 0);
    broker_config_destroy (&c);
    CHECK (c == NULL);
    broker_config_destroy (&c);
    broker_config_destroy (NULL);
}

static void
test_overlay (void)
{
    broker_config_t *c = fresh ();
    //  one key: only it changes
    CHECK_EQ_INT (load (c, "return { heartbeat_ms = 500 }"), 0);
    CHECK_EQ_INT (c->heartbeat_ms, 500);
    CHECK_EQ_INT (c->nchannels, 3);
    CHECK_EQ_INT (c->nbinds, 1);
    CHECK_EQ_INT (policy_size (c->policy), 11);
    //  app host keys, with their bounds
    CHECK_EQ_INT (load (c, "return { app_workers = 3, app_memory_kb = 128, "
                           "app_kv_max_kb = 10 }"),
                  0);
    CHECK_EQ_INT (c->app_workers, 3);
    CHECK_EQ_INT (c->app_memory_kb, 128);
    CHECK_EQ_INT (c->app_kv_max_kb, 10);
    CHECK_EQ_INT (c->app_memory_max_kb, 65536); /* untouched */
    CHECK (load (c, "return { app_workers = 0 }") != 0);
    CHECK (load (c, "return { app_memory_kb = 10 }") != 0);
    CHECK (load (c, "return { app_instructions = 5 }") != 0);
    CHECK_EQ_STR (c->source, "test.lua");
    //  lists replace whole
    CHECK_EQ_INT (load (c, "return { bind = { 'tcp://127.0.0.1:7000', "
                           "'ipc:///tmp/x.sock' } }"),
                  0);
    CHECK_EQ_INT (c->nbinds, 2);
    CHECK_EQ_STR (c->binds[0], "tcp://127.0.0.1:7000");
    CHECK_EQ_STR (c->binds[1], "ipc:///tmp/x.sock");
    CHECK_EQ_INT (load (c, "return { bind = {} }"), 0);
    CHECK_EQ_INT (c->nbinds, 0);
    CHECK_EQ_INT (load (c, "return { channels = { { name = 'a', kind = "
                           "'broadcast' } } }"),
                  0);
    CHECK_EQ_INT (c->nchannels, 1);
    CHECK_EQ_STR (c->channels[0].name, "a");
    CHECK (chan (c, "jobs") == NULL);
    CHECK_EQ_INT (c->heartbeat_ms, 500); // earlier overlay kept
    CHECK_EQ_INT (load (c, "return { policy = { { subject = 's', action = "
                           "'chan.read', target = 'a', effect = 'deny' } } }"),
                  0);
    CHECK_EQ_INT (policy_size (c->policy), 1);
    CHECK_EQ_INT (decide (c, "x", "chan.write", "jobs"), POLICY_DENY);
    CHECK_EQ_INT (load (c, "return { policy = {} }"), 0);
    CHECK_EQ_INT (policy_size (c->policy), 0);
    CHECK_EQ_INT (load (c, "return { apps = { 'a.lua', 'b.lua' } }"), 0);
    CHECK_EQ_INT (c->napps, 2);
    CHECK_EQ_STR (c->apps[1], "b.lua");
    //  every scalar
    CHECK_EQ_INT (load (c, "return { data = '/var/lib/aaax', tap = "
                           "'tcp://127.0.0.1:9', insecure = true, "
                           "max_frame = 2048, store_map_mb = 16, sndhwm = "
                           "100, mailbox_max_len = 5, mailbox_window = 7, "
                           "idempotency_ttl_s = 600, forget_after_s = 3600, "
                           "max_sessions = 3, spin_us = 0, "
                           "commit_delay_us = 250 }"),
                  0);
    CHECK_EQ_INT (c->spin_us, 0);
    CHECK_EQ_INT (c->commit_delay_us, 250);
    CHECK_EQ_INT (load (c, "return { audit_map_mb = 64, "
                           "audit_checkpoint_every = 10, lifecycle_rate = "
                           "'30/m', stop_grace_ms = 0, ask_timeout_s = 60 }"),
                  0);
    CHECK_EQ_INT (c->audit_map_mb, 64);
    CHECK_EQ_INT (c->audit_checkpoint_every, 10);
    CHECK_EQ_STR (c->lifecycle_rate, "30/m");
    CHECK_EQ_INT (c->lifecycle_rate_n, 30);
    CHECK_EQ_INT (c->lifecycle_rate_ms, 60000);
    CHECK_EQ_INT (c->stop_grace_ms, 0);
    CHECK_EQ_INT (c->ask_timeout_s, 60);
    CHECK_EQ_INT (load (c, "return { lifecycle_rate = '1000000/h' }"), 0);
    CHECK_EQ_INT (c->lifecycle_rate_n, 1000000);
    CHECK_EQ_INT (c->lifecycle_rate_ms, 3600000);
    CHECK_EQ_INT (c->audit_map_mb, 64); /* earlier overlay kept */
    CHECK_EQ_STR (c->data_dir, "/var/lib/aaax");
    CHECK_EQ_STR (c->tap, "tcp://127.0.0.1:9");
    CHECK (c->insecure);
    CHECK_EQ_INT (c->max_frame, 2048);
    CHECK_EQ_INT (c->store_map_mb, 16);
    CHECK_EQ_INT (c->sndhwm, 100);
    CHECK_EQ_INT (c->mailbox_max_len, 5);
    CHECK_EQ_INT (c->mailbox_window, 7);
    CHECK_EQ_INT (c->idempotency_ttl_s, 600);
    CHECK_EQ_INT (c->forget_after_s, 3600);
    CHECK_EQ_INT (c->max_sessions, 3);
    //  an empty table changes nothing (but the source)
    CHECK_EQ_INT (load (c, "return {}"), 0);
    CHECK_EQ_INT (c->max_sessions, 3);
    //  Lua computes: a data file may use expressions and locals
    CHECK_EQ_INT (load (c, "local n = 250 return { heartbeat_ms = n * 2 }"), 0);
    CHECK_EQ_INT (c->heartbeat_ms, 500);
    //  a whole number given as a float is fine
    CHECK_EQ_INT (load (c, "return { heartbeat_ms = 750.0 }"), 0);
    CHECK_EQ_INT (c->heartbeat_ms, 750);
    //  command-line setters
    CHECK_EQ_INT (broker_config_set_data (c, "/d"), 0);
    CHECK_EQ_STR (c->data_dir, "/d");
    char *binds[] = { "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "inproc://x" };
    CHECK_EQ_INT (broker_config_set_binds (c, binds, 3), 0);
    CHECK_EQ_INT (c->nbinds, 3);
    CHECK_EQ_STR (c->binds[2], "inproc://x");
    CHECK_EQ_INT (broker_config_set_binds (c, NULL, 0), 0);
    CHECK_EQ_INT (c->nbinds, 0);
    CHECK_EQ_INT (broker_config_set_tap (c, ""), 0);
    CHECK_EQ_STR (c->tap, "");
    broker_config_destroy (&c);
}

static void
test_bad_files (void)
{
    //  unknown keys are named
    CHECK_BAD ("return { bogus = 1 }", "bogus");
    CHECK_BAD ("return { heartbeat_ms = 500, hearbeat = 1 }", "hearbeat");
    CHECK_BAD ("return { heartbeat_ms = 500, hearbeat = 1 }", "unknown key");
    CHECK_BAD ("return { [1] = 2 }", "keys must be strings");
    //  not a table, syntax and runtime errors, binary chunks
    CHECK_BAD ("return 5", "must return a table");
    CHECK_BAD ("return", "must return a table");
    CHECK_BAD ("return {", "test.lua");
    CHECK_BAD ("error('boom')", "boom");
    CHECK_BAD ("return { data = os.getenv('HOME') }", "os");
    CHECK_BAD ("\x1bLua", "");
    //  types
    CHECK_BAD ("return { data = 5 }", "data: must be a string, not number");
    CHECK_BAD ("return { data = '' }", "data: must be a non-empty string");
    CHECK_BAD ("return { data = 'a\\0b' }", "without NUL");
    CHECK_BAD ("return { data = string.rep('x', 4097) }", "at most 4096");
    CHECK_GOOD ("return { data = string.rep('x', 4096) }");
    CHECK_BAD ("return { insecure = 'yes' }",
               "insecure: must be true or false");
    CHECK_BAD ("return { insecure = 1 }", "must be true or false");
    CHECK_BAD ("return { curve = 'some' }",
               "curve: must be \"auto\" or \"all\"");
    CHECK_BAD ("return { curve = true }", "curve: must be a string");
    CHECK_BAD ("return { bind = 'tcp://127.0.0.1:1' }", "bind: must be a list");
    CHECK_BAD ("return { bind = { 1 } }", "bind[1]: must be a string");
    CHECK_BAD ("return { bind = { 'a', nil, 'c' } }", "must be a list");
    CHECK_BAD ("return { bind = { x = 'a' } }", "must be a list");
    CHECK_BAD ("return { bind = { [0] = 'a' } }", "must be a list");
    CHECK_BAD ("local t = {} for i = 1, 65 do t[i] = 'tcp://127.0.0.1:' .. i "
               "end return { bind = t }",
               "more than 64");
    CHECK_GOOD ("local t = {} for i = 1, 64 do t[i] = 'tcp://127.0.0.1:' .. i "
                "end return { bind = t }");
    CHECK_BAD ("return { apps = { 'a', 2 } }", "apps[2]");
    CHECK_BAD ("return { channels = 'jobs' }", "must be a list of channel");
    CHECK_BAD ("return { channels = { name = 'x' } }", "must be a list");
    CHECK_BAD ("return { policy = 5 }", "policy");
    CHECK_BAD ("return { heartbeat_ms = '500' }",
               "must be a number, not string");
    CHECK_BAD ("return { heartbeat_ms = 500.5 }", "must be a whole number");
    CHECK_BAD ("return { heartbeat_ms = true }", "must be a number");
    //  lifecycle_rate has a rule's rate syntax
    CHECK_BAD ("return { lifecycle_rate = 10 }",
               "lifecycle_rate: must be a string such as \"10/s\", not "
               "number");
    const char *bad_rates[] = { "",     "0/s",  "10/d",      "10",
                                "1/ s", "01/s", "2000000/s", "10/s\\0" };
    for (size_t i = 0; i < sizeof bad_rates / sizeof bad_rates[0]; i++) {
        char src[128];
        snprintf (src, sizeof src, "return { lifecycle_rate = '%s' }",
                  bad_rates[i]);
        CHECK_BAD (src, "lifecycle_rate: must be \"N/s\", \"N/m\" or "
                        "\"N/h\"");
    }
    CHECK_GOOD ("return { lifecycle_rate = '1/h' }");
    //  policy errors name the file and the line of the rule
    CHECK_BAD ("return {\n  heartbeat_ms = 500,\n  policy = {\n"
               "    { subject = '*', action = '*', target = '*', effect = "
               "'allow' },\n"
               "    { subject = '*', action = '*', target = '*', effect = "
               "'alow' },\n  },\n}",
               "test.lua:5: rule 2: effect must be \"allow\", \"ask\" or "
               "\"deny\" (got \"alow\")");
    CHECK_BAD ("local p = {}\np[1] = { subject = '*' }\nreturn { policy = p "
               "}",
               "test.lua: rule 1: missing field \"action\"");
    CHECK_BAD ("return { policy = '' }", "test.lua: policy: a path must be");
}

static void
test_numeric_bounds (void)
{
    struct {
        const char *key;
        long long lo, hi;
    } b[] = {
        { "heartbeat_ms", 50, 60000 },
        { "max_frame", 1024, 256LL << 20 },
        { "store_map_mb", 16, 1LL << 20 },
        { "sndhwm", 100, 1000000 },
        { "mailbox_max_len", 1, 10000000 },
        { "mailbox_window", 1, 65536 },
        { "idempotency_ttl_s", 600, 604800 },
        { "forget_after_s", 3600, 315360000 },
        { "max_sessions", 1, 1000000 },
        { "spin_us", 0, 10000 },
        { "commit_delay_us", 0, 100000 },
        { "audit_map_mb", 1, 65536 },
        { "audit_checkpoint_every", 1, 1000000 },
        { "stop_grace_ms", 0, 600000 },
        { "ask_timeout_s", 1, 86400 },
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        char src[128];
        snprintf (src, sizeof src, "return { %s = %lld }", b[i].key, b[i].lo);
        CHECK_GOOD (src);
        snprintf (src, sizeof src, "return { %s = %lld }", b[i].key, b[i].hi);
        CHECK_GOOD (src);
        snprintf (src, sizeof src, "return { %s = %lld }", b[i].key,
                  b[i].lo - 1);
        CHECK_BAD (src, "must be between");
        snprintf (src, sizeof src, "return { %s = %lld }", b[i].key,
                  b[i].hi + 1);
        CHECK_BAD (src, b[i].key);
        snprintf (src, sizeof src, "return { %s = -1 }", b[i].key);
        CHECK_BAD (src, "must be between");
        snprintf (src, sizeof src, "return { %s = math.maxinteger }", b[i].key);
        CHECK_BAD (src, "must be between");
        snprintf (src, sizeof src, "return { %s = math.mininteger }", b[i].key);
        CHECK_BAD (src, "must be between");
    }
    //  floats that are not whole, or do not fit an integer at all, are
    //  refused (and must not be converted to an integer first: that is
    //  undefined behaviour in C for out-of-range values)
    CHECK_BAD ("return { heartbeat_ms = 1e300 }", "heartbeat_ms");
    CHECK_BAD ("return { heartbeat_ms = -1e300 }", "heartbeat_ms");
    CHECK_BAD ("return { heartbeat_ms = 2^63 }", "heartbeat_ms");
    CHECK_BAD ("return { heartbeat_ms = math.huge }", "heartbeat_ms");
    CHECK_BAD ("return { heartbeat_ms = -math.huge }", "heartbeat_ms");
    CHECK_BAD ("return { heartbeat_ms = 0/0 }", "heartbeat_ms");
    CHECK_BAD ("return { heartbeat_ms = 1e-300 }", "heartbeat_ms");
    CHECK_BAD ("return { channels = { { name = 'q', kind = 'work-queue', "
               "lease_ms = 1e300 } } }",
               "lease_ms");
}

static void
test_channels (void)
{
    //  a full, valid set
    broker_config_t *c = fresh ();
    CHECK_EQ_INT (
        load (c,
              "return { channels = {\n"
              "  { name = 'q1', kind = 'work-queue' },\n"
              "  { name = 'q2', kind = 'work-queue', durable = false, "
              "max_attempts = 1, max_len = 0, max_bytes = 1024, lease_ms = 100 "
              "},\n"
              "  { name = 'b1', kind = 'broadcast' },\n"
              "  { name = 'b2', kind = 'broadcast', visibility = 'private', "
              "retain = 100000, durable = false },\n"
              "  { name = 'b3', kind = 'broadcast', visibility = 'public' },\n"
              "  { name = 'A-z_0.9', kind = 'broadcast' },\n"
              "} }"),
        0);
    CHECK_EQ_INT (c->nchannels, 6);
    const broker_chan_cfg_t *q1 = chan (c, "q1"), *q2 = chan (c, "q2");
    const broker_chan_cfg_t *b1 = chan (c, "b1"), *b2 = chan (c, "b2");
    const broker_chan_cfg_t *b3 = chan (c, "b3");
    CHECK (q1 && q2 && b1 && b2 && b3 && chan (c, "A-z_0.9"));
    if (q1 && q2 && b1 && b2 && b3) {
        CHECK (q1->durable);
        CHECK_EQ_INT (q1->max_attempts, 5);
        CHECK_EQ_INT (q1->max_len, 100000);
        CHECK_EQ_INT (q1->lease_ms, 30000);
        CHECK (!q2->durable);
        CHECK_EQ_INT (q2->max_attempts, 1);
        CHECK_EQ_INT (q2->max_len, 0);
        CHECK_EQ_INT (q2->max_bytes, 1024);
        CHECK_EQ_INT (q2->lease_ms, 100);
        CHECK (!b1->durable); // broadcast: never durable
        CHECK (!b1->public);
        CHECK_EQ_INT (b1->retain, 0);
        CHECK (!b2->public);
        CHECK_EQ_INT (b2->retain, 100000);
        CHECK (b3->public);
    }
    CHECK_EQ_INT (broker_config_check (c, s_err, sizeof s_err), 0);
    broker_config_destroy (&c);

    //  each field validated
    CHECK_BAD ("return { channels = { { name = 'x', kind = 'queue' } } }",
               "kind must be \"broadcast\" or \"work-queue\"");
    CHECK_BAD ("return { channels = { { name = 'x' } } }", "needs a kind");
    CHECK_BAD ("return { channels = { { kind = 'broadcast' } } }",
               "needs a name");
    CHECK_BAD ("return { channels = { { name = '.x', kind = 'broadcast' } } }",
               "channels[1]: name \".x\"");
    CHECK_BAD ("return { channels = { { name = 'a b', kind = 'broadcast' } } }",
               "must be 1..128 characters");
    CHECK_BAD ("return { channels = { { name = 'a/b', kind = 'broadcast' } } }",
               "name");
    CHECK_BAD ("return { channels = { { name = '@x', kind = 'broadcast' } } }",
               "name");
    CHECK_BAD ("return { channels = { { name = '', kind = 'broadcast' } } }",
               "channels[1].name");
    CHECK_BAD ("return { channels = { { name = string.rep('n', 129), "
               "kind = 'broadcast' } } }",
               "must be 1..128");
    CHECK_GOOD ("return { channels = { { name = string.rep('n', 128), "
                "kind = 'broadcast' } } }");
    CHECK_BAD ("return { channels = { { name = 5, kind = 'broadcast' } } }",
               "channels[1].name: must be a string");
    CHECK_BAD ("return { channels = { { name = 'a', kind = 'broadcast' }, "
               "{ name = 'b', kind = 'broadcast' }, { name = 'a', kind = "
               "'work-queue' } } }",
               "channels[3]: channel \"a\" is defined "
               "twice");
    CHECK_BAD ("return { channels = { { name = 'b', kind = 'broadcast', "
               "durable = true } } }",
               "broadcast channels are not durable");
    CHECK_BAD ("return { channels = { { name = 'q', kind = 'work-queue', "
               "retain = 5 } } }",
               "apply to broadcast channels only");
    CHECK_BAD ("return { channels = { { name = 'q', kind = 'work-queue', "
               "visibility = 'public' } } }",
               "broadcast channels only");
    CHECK_BAD ("return { channels = { { name = 'q', kind = 'work-queue', "
               "visibility = 'private' } } }",
               "broadcast channels only");
    CHECK_BAD ("return { channels = { { name = 'b', kind = 'broadcast', "
               "visibility = 'secret' } } }",
               "visibility must be");
    CHECK_BAD ("return { channels = { { name = 'b', kind = 'broadcast', "
               "colour = 'red' } } }",
               "channels[1].colour: unknown field");
    CHECK_BAD ("return { channels = { { name = 'b', kind = 'broadcast', "
               "[1] = 2 } } }",
               "field names must be strings");
    CHECK_BAD ("return { channels = { 'jobs' } }", "channels[1]: must be a "
                                                   "table");
    CHECK_BAD ("return { channels = { { name = 'q', kind = 'work-queue', "
               "durable = 'yes' } } }",
               "channels[1].durable");
    //  numeric bounds of channel fields
    struct {
        const char *key;
        long long lo, hi;
    } b[] = {
        { "max_attempts", 1, 1000 },
        { "max_len", 0, 100000000 },
        { "max_bytes", 0, 1LL << 40 },
        { "lease_ms", 100, 86400000 },
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        char src[200];
        snprintf (src, sizeof src,
                  "return { channels = { { name = 'q', kind "
                  "= 'work-queue', %s = %lld } } }",
                  b[i].key, b[i].lo);
        CHECK_GOOD (src);
        snprintf (src, sizeof src,
                  "return { channels = { { name = 'q', kind "
                  "= 'work-queue', %s = %lld } } }",
                  b[i].key, b[i].hi);
        CHECK_GOOD (src);
        snprintf (src, sizeof src,
                  "return { channels = { { name = 'q', kind "
                  "= 'work-queue', %s = %lld } } }",
                  b[i].key, b[i].lo - 1);
        CHECK_BAD (src, b[i].key);
        snprintf (src, sizeof src,
                  "return { channels = { { name = 'q', kind "
                  "= 'work-queue', %s = %lld } } }",
                  b[i].key, b[i].hi + 1);
        CHECK_BAD (src, "must be between");
    }
    CHECK_GOOD ("return { channels = { { name = 'b', kind = 'broadcast', "
                "retain = 100000 } } }");
    CHECK_BAD ("return { channels = { { name = 'b', kind = 'broadcast', "
               "retain = 100001 } } }",
               "channels[1].retain");
    CHECK_BAD ("return { channels = { { name = 'b', kind = 'broadcast', "
               "retain = -1 } } }",
               "retain");
    CHECK_GOOD ("local t = {} for i = 1, 4096 do t[i] = { name = 'c' .. i, "
                "kind = 'broadcast' } end return { channels = t }");
    CHECK_BAD ("local t = {} for i = 1, 4097 do t[i] = { name = 'c' .. i, "
               "kind = 'broadcast' } end return { channels = t }",
               "more than 4096");
}

static int
check_with (const char *src)
{
    broker_config_t *c = fresh ();
    int rc = load (c, src);
    if (rc) {
        fprintf (stderr, "  load: %s\n", s_err);
        broker_config_destroy (&c);
        return 99;
    }
    s_err[0] = 0;
    rc = broker_config_check (c, s_err, sizeof s_err);
    broker_config_destroy (&c);
    return rc;
}

static void
test_check (void)
{
    //  CURVE rule: non-loopback tcp is served with CURVE (no flag needed);
    //  --insecure makes it plain; curve = "all" covers loopback too
    CHECK_EQ_INT (check_with ("return { bind = { 'tcp://0.0.0.0:5670' } }"), 0);
    {
        broker_config_t *c = broker_config_new (s_err, sizeof s_err);
        CHECK (c != NULL);
        CHECK (broker_config_endpoint_curve (c, "tcp://0.0.0.0:5670"));
        CHECK (broker_config_endpoint_curve (c, "tcp://10.0.0.1:5670"));
        CHECK (broker_config_endpoint_curve (c, "tcp://*:5671"));
        CHECK (!broker_config_endpoint_curve (c, "tcp://127.0.0.1:5670"));
        CHECK (!broker_config_endpoint_curve (c, "ipc:///tmp/x"));
        CHECK (!broker_config_endpoint_curve (c, "inproc://aaax"));
        c->insecure = true;
        CHECK (!broker_config_endpoint_curve (c, "tcp://0.0.0.0:5670"));
        c->insecure = false;
        c->curve_all = true;
        CHECK (broker_config_endpoint_curve (c, "tcp://127.0.0.1:5670"));
        CHECK (broker_config_endpoint_curve (c, "tcp://0.0.0.0:5670"));
        CHECK (!broker_config_endpoint_curve (c, "ipc:///tmp/x"));
        broker_config_destroy (&c);
    }
    CHECK_EQ_INT (check_with ("return { bind = { 'tcp://0.0.0.0:5670' }, "
                              "insecure = true }"),
                  0);
    CHECK_EQ_INT (check_with ("return { curve = 'all' }"), 0);
    CHECK_EQ_INT (check_with ("return { curve = 'auto' }"), 0);
    CHECK_EQ_INT (check_with ("return { curve = 'all', insecure = true }"),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "contradict") != NULL);
    CHECK_EQ_INT (check_with ("return { tap = 'tcp://*:5671' }"), 0);
    CHECK_EQ_INT (check_with ("return { tap = 'tcp://*:5671', insecure = "
                              "true }"),
                  0);
    CHECK_EQ_INT (check_with ("return { tap = 'ipc:///tmp/tap' }"), 0);
    //  endpoints must name a transport
    CHECK_EQ_INT (check_with ("return { bind = { 'udp://127.0.0.1:1' } }"),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "must start with tcp://") != NULL);
    CHECK_EQ_INT (check_with ("return { bind = { 'tcp://' } }"), AAAX_EINVAL);
    CHECK_EQ_INT (check_with ("return { bind = { '127.0.0.1:5670' } }"),
                  AAAX_EINVAL);
    CHECK_EQ_INT (check_with ("return { tap = 'pgm://x' }"), AAAX_EINVAL);
    CHECK_EQ_INT (check_with ("return { bind = { 'inproc://a', 'ipc://b' } "
                              "}"),
                  0);
    //  an empty tap binds nothing: fine
    broker_config_t *c = fresh ();
    broker_config_set_tap (c, "");
    CHECK_EQ_INT (broker_config_check (c, s_err, sizeof s_err), 0);
    //  no data directory
    broker_config_set_data (c, "");
    CHECK_EQ_INT (broker_config_check (c, s_err, sizeof s_err), AAAX_EINVAL);
    CHECK (strstr (s_err, "no data directory") != NULL);
    broker_config_destroy (&c);

    //  reserved names
    CHECK_EQ_INT (check_with ("return { channels = { { name = 'heartbeat', "
                              "kind = 'broadcast' } } }"),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "\"heartbeat\" is a kernel channel name") != NULL);
    CHECK (strstr (s_err, "test.lua: channels[1]") != NULL);
    CHECK_EQ_INT (check_with ("return { channels = { { name = 'ok', kind = "
                              "'broadcast' }, { name = 'kernel.x', kind = "
                              "'work-queue' } } }"),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "channels[2]: \"kernel.x\"") != NULL);
    CHECK_EQ_INT (check_with ("return { channels = { { name = 'x.dlq', kind "
                              "= 'work-queue' } } }"),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, "names ending in .dlq") != NULL);
    CHECK_EQ_INT (check_with ("return { channels = { { name = 'x.dlq', kind "
                              "= 'broadcast' } } }"),
                  AAAX_EINVAL);
    //  near misses are fine
    CHECK_EQ_INT (check_with ("return { channels = { { name = 'heartbeats', "
                              "kind = 'broadcast' }, { name = 'kernel', kind "
                              "= 'broadcast' }, { name = 'x.dlqx', kind = "
                              "'broadcast' }, { name = 'dlq', kind = "
                              "'work-queue' } } }"),
                  0);
    //  a work-queue name leaves room for ".dlq"
    char src[512];
    snprintf (src, sizeof src,
              "return { channels = { { name = "
              "string.rep('q', %d), kind = 'work-queue' } } }",
              AAAX_MAX_NAME - 4);
    CHECK_EQ_INT (check_with (src), 0);
    snprintf (src, sizeof src,
              "return { channels = { { name = "
              "string.rep('q', %d), kind = 'work-queue' } } }",
              AAAX_MAX_NAME - 3);
    CHECK_EQ_INT (check_with (src), AAAX_EINVAL);
    CHECK (strstr (s_err, "leave room for \".dlq\"") != NULL);
    snprintf (src, sizeof src,
              "return { channels = { { name = "
              "string.rep('b', %d), kind = 'broadcast' } } }",
              AAAX_MAX_NAME);
    CHECK_EQ_INT (check_with (src), 0);
}

static void
test_loopback (void)
{
    CHECK (broker_config_is_loopback ("tcp://127.0.0.1:5670"));
    CHECK (broker_config_is_loopback ("tcp://127.1.2.3:5670"));
    CHECK (broker_config_is_loopback ("tcp://localhost:5670"));
    CHECK (broker_config_is_loopback ("tcp://[::1]:5670"));
    CHECK (broker_config_is_loopback ("tcp://lo:5670"));
    CHECK (!broker_config_is_loopback ("tcp://0.0.0.0:5670"));
    CHECK (!broker_config_is_loopback ("tcp://*:5670"));
    CHECK (!broker_config_is_loopback ("tcp://10.0.0.1:5670"));
    CHECK (!broker_config_is_loopback ("tcp://192.168.1.1:5670"));
    CHECK (!broker_config_is_loopback ("tcp://[::]:5670"));
    CHECK (!broker_config_is_loopback ("tcp://eth0:5670"));
    CHECK (!broker_config_is_loopback ("tcp://example.com:5670"));
    CHECK (!broker_config_is_loopback ("tcp://localhost.example.com:5670"));
    CHECK (!broker_config_is_loopback ("tcp://1127.0.0.1:5670"));
    //  non-tcp endpoints are local
    CHECK (broker_config_is_loopback ("ipc:///tmp/aaax.sock"));
    CHECK (broker_config_is_loopback ("inproc://aaax"));
}

static void
test_files (void)
{
    char dir[] = "/tmp/aaax-test-config-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char path[256], ppath[256];
    snprintf (path, sizeof path, "%s/aaaxd.lua", dir);
    snprintf (ppath, sizeof ppath, "%s/rules.lua", dir);

    broker_config_t *c = fresh ();
    //  a file that does not exist
    CHECK_EQ_INT (broker_config_load_file (c, path, s_err, sizeof s_err),
                  AAAX_ENOENT);
    //  a good file, with the policy in a file beside it (relative path)
    FILE *f = fopen (ppath, "w");
    fputs ("return { { subject = 'ops', action = 'chan.*', target = '*', "
           "effect = 'allow' } }\n",
           f);
    fclose (f);
    f = fopen (path, "w");
    fputs ("return {\n  heartbeat_ms = 250,\n  policy = 'rules.lua',\n"
           "  channels = { { name = 'only', kind = 'work-queue' } },\n}\n",
           f);
    fclose (f);
    CHECK_EQ_INT (broker_config_load_file (c, path, s_err, sizeof s_err), 0);
    CHECK_EQ_INT (c->heartbeat_ms, 250);
    CHECK_EQ_INT (policy_size (c->policy), 1);
    CHECK_EQ_INT (decide (c, "ops", "chan.claim", "only"), POLICY_ALLOW);
    CHECK_EQ_INT (c->nchannels, 1);
    CHECK_EQ_STR (c->source, path);

    //  A bad file leaves the configuration unchanged, even when its first
    //  keys were good.
    f = fopen (path, "w");
    fputs ("return {\n  heartbeat_ms = 999,\n  data = '/elsewhere',\n"
           "  bind = { 'tcp://127.0.0.1:1', 'tcp://127.0.0.1:2' },\n"
           "  channels = { { name = 'new', kind = 'broadcast' } },\n"
           "  policy = {},\n  apps = { 'x' },\n  nonsense = true,\n}\n",
           f);
    fclose (f);
    s_err[0] = 0;
    CHECK_EQ_INT (broker_config_load_file (c, path, s_err, sizeof s_err),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, path) != NULL);
    CHECK (strstr (s_err, "nonsense") != NULL);
    CHECK_EQ_INT (c->heartbeat_ms, 250);
    CHECK_EQ_STR (c->data_dir, "./aaax-data");
    CHECK_EQ_INT (c->nbinds, 1);
    CHECK_EQ_INT (c->nchannels, 1);
    CHECK_EQ_STR (c->channels[0].name, "only");
    CHECK_EQ_INT (policy_size (c->policy), 1);
    CHECK_EQ_INT (c->napps, 4);
    //  a syntax error: "path:line:" in the message, nothing changed
    f = fopen (path, "w");
    fputs ("return {\n  heartbeat_ms = = 5,\n}\n", f);
    fclose (f);
    CHECK_EQ_INT (broker_config_load_file (c, path, s_err, sizeof s_err),
                  AAAX_EINVAL);
    CHECK (strstr (s_err, ":2:") != NULL);
    CHECK_EQ_INT (c->heartbeat_ms, 250);
    //  a policy file that is missing or bad
    f = fopen (path, "w");
    fputs ("return { heartbeat_ms = 100, policy = 'missing.lua' }\n", f);
    fclose (f);
    CHECK (broker_config_load_file (c, path, s_err, sizeof s_err) != 0);
    CHECK_EQ_INT (c->heartbeat_ms, 250);
    CHECK_EQ_INT (policy_size (c->policy), 1);
    f = fopen (ppath, "w");
    fputs ("return { { subject = 'x' } }\n", f);
    fclose (f);
    f = fopen (path, "w");
    fputs ("return { heartbeat_ms = 100, policy = 'rules.lua' }\n", f);
    fclose (f);
    CHECK (broker_config_load_file (c, path, s_err, sizeof s_err) != 0);
    CHECK_EQ_INT (c->heartbeat_ms, 250);
    //  an endless file hits the instruction cap
    f = fopen (path, "w");
    fputs ("while true do end\n", f);
    fclose (f);
    CHECK_EQ_INT (broker_config_load_file (c, path, s_err, sizeof s_err),
                  AAAX_ELIMIT);
    CHECK_EQ_INT (c->heartbeat_ms, 250);
    broker_config_destroy (&c);
    unlink (path);
    unlink (ppath);
    rmdir (dir);
}

static void
test_valid_name (void)
{
    CHECK (broker_config_valid_name ("jobs", 4));
    CHECK (broker_config_valid_name ("a.b_c-d9", 8));
    CHECK (broker_config_valid_name ("-x", 2));
    CHECK (!broker_config_valid_name (".x", 2));
    CHECK (!broker_config_valid_name ("", 0));
    CHECK (!broker_config_valid_name ("a b", 3));
    CHECK (!broker_config_valid_name ("a:b", 3));
    CHECK (!broker_config_valid_name ("a@b", 3));
    CHECK (!broker_config_valid_name ("a\0b", 3));
    CHECK (!broker_config_valid_name ("\xc3\xa9", 2));
    char n[AAAX_MAX_NAME + 1];
    memset (n, 'n', sizeof n);
    CHECK (broker_config_valid_name (n, AAAX_MAX_NAME));
    CHECK (!broker_config_valid_name (n, AAAX_MAX_NAME + 1));
}

static void
write_file (const char *path, const char *text)
{
    FILE *f = fopen (path, "w");
    CHECK (f != NULL);
    if (f) {
        fputs (text, f);
        fclose (f);
    }
}

static void
test_reload (void)
{
    char src[1024], err[1024];
    policy_t *p = NULL;

    //  Embedded defaults: the demo policy again, same digest.
    broker_config_t *c = fresh ();
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        0);
    CHECK_EQ_STR (src, "embedded defaults");
    CHECK (p && p != c->policy);
    CHECK_EQ_INT (policy_size (p), 11);
    CHECK_EQ_STR (policy_digest (p), policy_digest (c->policy));
    policy_destroy (&p);
    //  A file that does not set the policy keeps the defaults' (and a
    //  reload still reads the defaults).
    CHECK_EQ_INT (load (c, "return { heartbeat_ms = 500 }"), 0);
    CHECK_EQ_STR (broker_config_policy_source (c), "embedded defaults");
    CHECK_EQ_INT (broker_config_reload_policy (c, &p, NULL, 0, err, sizeof err),
                  0);
    CHECK_EQ_INT (policy_size (p), 11);
    policy_destroy (&p);
    //  A string chunk is kept and read again.
    CHECK_EQ_INT (load (c, "return { policy = {\n { subject = 's', action = "
                           "'a', target = 't', effect = 'ask' } } }"),
                  0);
    CHECK_EQ_INT (c->policy_from, BROKER_POLICY_TEXT);
    CHECK_EQ_STR (broker_config_policy_source (c), "test.lua");
    CHECK_EQ_STR (policy_rule_source (c->policy, 0), "test.lua:2");
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        0);
    CHECK_EQ_STR (src, "test.lua");
    CHECK_EQ_INT (policy_size (p), 1);
    CHECK_EQ_STR (policy_rule_source (p, 0), "test.lua:2");
    policy_destroy (&p);
    CHECK_EQ_INT (
        broker_config_reload_policy (NULL, &p, NULL, 0, err, sizeof err),
        AAAX_EINVAL);
    CHECK_EQ_INT (
        broker_config_reload_policy (c, NULL, NULL, 0, err, sizeof err),
        AAAX_EINVAL);
    broker_config_destroy (&c);

    char dir[] = "/tmp/aaax-test-reload-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char path[256], ppath[256], want[1024];
    snprintf (path, sizeof path, "%s/aaaxd.lua", dir);
    snprintf (ppath, sizeof ppath, "%s/rules.lua", dir);

    //  Inline in the configuration file.
    write_file (path, "return {\n  heartbeat_ms = 250,\n  policy = {\n"
                      "    { subject = 'a', action = 'x', target = '*', "
                      "effect = 'allow' },\n  },\n}\n");
    c = fresh ();
    CHECK_EQ_INT (broker_config_load_file (c, path, s_err, sizeof s_err), 0);
    CHECK_EQ_INT (c->policy_from, BROKER_POLICY_INLINE);
    CHECK_EQ_STR (broker_config_policy_source (c), path);
    snprintf (want, sizeof want, "%s:4", path);
    CHECK_EQ_STR (policy_rule_source (c->policy, 0), want);
    //  changed rules, a changed (even invalid) other key: only the policy
    write_file (path, "return {\n  heartbeat_ms = 1,\n  bogus = true,\n"
                      "  policy = {\n"
                      "    { subject = 'a', action = 'x', target = '*', "
                      "effect = 'deny' },\n"
                      "    { subject = 'b', action = 'x', target = '*', "
                      "effect = 'allow' },\n  },\n}\n");
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        0);
    CHECK_EQ_STR (src, path);
    CHECK_EQ_INT (policy_size (p), 2);
    snprintf (want, sizeof want, "%s:6", path);
    CHECK_EQ_STR (policy_rule_source (p, 1), want);
    CHECK_EQ_INT (c->heartbeat_ms, 250);
    policy_destroy (&p);
    //  a bad rule: file:line, *out and source untouched
    write_file (path, "return {\n  policy = {\n"
                      "    { subject = 'a', action = 'x', target = '*', "
                      "effect = 'allow' },\n"
                      "    { subject = 'b', action = 'x', target = '*', "
                      "effect = 'alow' },\n  },\n}\n");
    policy_t *sentinel = (policy_t *) 1;
    p = sentinel;
    snprintf (src, sizeof src, "unchanged");
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        AAAX_EINVAL);
    CHECK (p == sentinel);
    CHECK_EQ_STR (src, "unchanged");
    snprintf (want, sizeof want,
              "%s:4: rule 2: effect must be \"allow\", \"ask\" or \"deny\" "
              "(got \"alow\")",
              path);
    CHECK_EQ_STR (err, want);
    //  a syntax error carries Lua's line
    write_file (path, "return {\n  policy = {\n    { subject = = 'a' },\n"
                      "  },\n}\n");
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        AAAX_EINVAL);
    CHECK (p == sentinel);
    snprintf (want, sizeof want, "%s:3:", path);
    CHECK (strncmp (err, want, strlen (want)) == 0);
    write_file (path, "return 5\n");
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        AAAX_EINVAL);
    CHECK (strstr (err, "must return a table") != NULL);
    //  the file now points at a policy file: followed, as a boot would
    write_file (ppath,
                "return {\n\n  { subject = 'ops', action = '*', target = "
                "'*', effect = 'allow' },\n}\n");
    write_file (path, "return { policy = 'rules.lua' }\n");
    p = NULL;
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        0);
    snprintf (want, sizeof want, "%s/rules.lua", dir);
    CHECK_EQ_STR (src, want);
    snprintf (want, sizeof want, "%s/rules.lua:3", dir);
    CHECK_EQ_STR (policy_rule_source (p, 0), want);
    policy_destroy (&p);
    //  the file no longer sets a policy: the embedded defaults
    write_file (path, "return { heartbeat_ms = 100 }\n");
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        0);
    CHECK_EQ_STR (src, "embedded defaults");
    CHECK_EQ_INT (policy_size (p), 11);
    policy_destroy (&p);
    //  the file is gone
    unlink (path);
    p = sentinel;
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        AAAX_ENOENT);
    CHECK (p == sentinel);
    CHECK (strstr (err, path) != NULL);
    broker_config_destroy (&c);

    //  A policy file.
    write_file (ppath, "return {\n  { subject = 'ops', action = '*', target = "
                       "'*', effect = 'allow' },\n}\n");
    write_file (path, "return { policy = 'rules.lua', heartbeat_ms = 300 }\n");
    c = fresh ();
    CHECK_EQ_INT (broker_config_load_file (c, path, s_err, sizeof s_err), 0);
    CHECK_EQ_INT (c->policy_from, BROKER_POLICY_FILE);
    snprintf (want, sizeof want, "%s/rules.lua", dir);
    CHECK_EQ_STR (broker_config_policy_source (c), want);
    //  the configuration file changes nothing now: only rules.lua is read
    write_file (path, "garbage that is not Lua\n");
    write_file (ppath, "-- v2\nreturn {\n"
                       "  { subject = 'ops', action = '*', target = '*', "
                       "effect = 'allow' },\n"
                       "  { subject = '*', action = 'fs.delete', target = '*', "
                       "effect = 'deny' },\n}\n");
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        0);
    CHECK_EQ_STR (src, want);
    CHECK_EQ_INT (policy_size (p), 2);
    CHECK (strcmp (policy_digest (p), policy_digest (c->policy)) != 0);
    policy_destroy (&p);
    write_file (ppath, "return {\n  { subject = 'ops', action = '*', target = "
                       "'*', effect = 'allow', rate = '5/d' },\n}\n");
    p = sentinel;
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        AAAX_EINVAL);
    CHECK (p == sentinel);
    snprintf (want, sizeof want, "%s/rules.lua:2: rule 1: rate must be", dir);
    CHECK (strncmp (err, want, strlen (want)) == 0);
    unlink (ppath);
    CHECK_EQ_INT (
        broker_config_reload_policy (c, &p, src, sizeof src, err, sizeof err),
        AAAX_ENOENT);
    CHECK (p == sentinel);
    broker_config_destroy (&c);
    unlink (path);
    rmdir (dir);
}

int
main (void)
{
    test_defaults ();
    test_overlay ();
    test_bad_files ();
    test_numeric_bounds ();
    test_channels ();
    test_check ();
    test_loopback ();
    test_files ();
    test_valid_name ();
    test_reload ();
    TEST_DONE ();
}
