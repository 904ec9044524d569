/*  broker_config.c — embedded defaults, the Lua configuration file, checks.
    A file is read into a scratch configuration first and merged only when
    every key passed its check, so a bad file changes nothing. */

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>
#include <lua.h>
#include <czmq.h>

#include "aaax.h"
#include "app_host.h"
#include "broker_config.h"
#include "hal_luadata.h"
#include "policy_lines.h"
#include "policy_lua.h"

#ifndef BROKER_DEFAULT_COMMIT_DELAY_US
#define BROKER_DEFAULT_COMMIT_DELAY_US 1000
#endif
#ifndef BROKER_DEFAULT_SPIN_US
#define BROKER_DEFAULT_SPIN_US 100
#endif

/*  The example apps of this source tree, run by the embedded defaults. */
#ifndef AAAX_APPS_DIR
#define AAAX_APPS_DIR "apps"
#endif

static const char s_defaults[] =
    "-- aaaxd embedded defaults: what runs with no --config at all.\n"
    "-- Copy this file, change what you need, and start aaaxd --config FILE.\n"
    "return {\n"
    "  data = \"./aaax-data\",            -- same as --data\n"
    "  bind = { \"tcp://127.0.0.1:5670\" }, -- same as --bind (repeatable)\n"
    "  tap = \"tcp://127.0.0.1:5671\",     -- same as --tap\n"
    "  curve = \"auto\",  -- CURVE on non-loopback tcp; \"all\": on every "
    "tcp endpoint\n"
    "  heartbeat_ms = 1000,\n"
    "  max_frame = 1048576,\n"
    "  channels = {\n"
    "    -- a durable work-queue (jobs.dlq, its dead-letter queue, comes "
    "with it)\n"
    "    { name = \"jobs\", kind = \"work-queue\", durable = true, "
    "max_attempts = 5, max_len = 100000 },\n"
    "    -- a public broadcast channel, mirrored on the tap, last 100 "
    "kept\n"
    "    { name = \"events\", kind = \"broadcast\", visibility = \"public\", "
    "retain = 100 },\n"
    "    -- the watchdog app's alerts (a system left the heartbeat)\n"
    "    { name = \"alerts\", kind = \"broadcast\", visibility = \"public\", "
    "retain = 100 },\n"
    "  },\n"
    "  policy = {\n"
    "    { subject = \"*\", action = \"chan.write\", target = \"jobs\",   "
    "effect = \"allow\" },\n"
    "    { subject = \"*\", action = \"chan.claim\", target = \"jobs*\",  "
    "effect = \"allow\" },\n"
    "    { subject = \"*\", action = \"chan.read\",  target = \"events\", "
    "effect = \"allow\" },\n"
    "    { subject = \"*\", action = \"chan.write\", target = \"events\", "
    "effect = \"allow\" },\n"
    "    -- the example apps (apps/, docs/LUA.md)\n"
    "    { subject = \"*\", action = \"chan.read\",  target = \"alerts\", "
    "effect = \"allow\" },\n"
    "    { subject = \"watchdog\", action = \"chan.read\", target = "
    "\"heartbeat\", effect = \"allow\" },\n"
    "    { subject = \"watchdog\", action = \"chan.write\", target = "
    "\"alerts\", effect = \"allow\" },\n"
    "    { subject = \"toolrunner\", action = \"tool.*\", target = "
    "\"*\", effect = \"allow\" },   -- ask wins on https://\n"
    "    { subject = \"toolrunner\", action = \"tool.*\", target = "
    "\"https://*\", effect = \"ask\" },\n"
    "    { subject = \"toolrunner\", action = \"fs.*\", target = "
    "\"notes/*\", effect = \"allow\" },\n"
    "    { subject = \"toolrunner\", action = \"fs.list\", target = "
    "\"*\", effect = \"allow\" },\n"
    "  },\n"
    "  -- app directories loaded at boot (relative paths: to this file)\n"
    "  apps = { \"" AAAX_APPS_DIR "/echo\", \"" AAAX_APPS_DIR "/counter\",\n"
    "           \"" AAAX_APPS_DIR "/toolrunner\", \"" AAAX_APPS_DIR
    "/watchdog\" },\n"
    "  app_memory_kb = 4096,         -- per app (manifest limits.memory_kb "
    "up to app_memory_max_kb)\n"
    "  app_instructions = 10000000,  -- per callback slice\n"
    "  -- kernel actors\n"
    "  audit_map_mb = 256,            -- the audit journal's LMDB map size\n"
    "  audit_checkpoint_every = 1000, -- audit records between signed "
    "checkpoints\n"
    "  lifecycle_rate = \"10/s\",      -- pause/resume/stop/kill per caller\n"
    "  stop_grace_ms = 5000,          -- lifecycle stop: TERM, then KILL "
    "after this\n"
    "  ask_timeout_s = 300,           -- a gate \"ask\" waits this long for "
    "approval\n"
    "}\n";

const char *
broker_config_defaults (void)
{
    return s_defaults;
}

/*  Bits of what a file set. */
enum {
    SET_DATA = 1u << 0,
    SET_BIND = 1u << 1,
    SET_TAP = 1u << 2,
    SET_HB = 1u << 3,
    SET_FRAME = 1u << 4,
    SET_CHANNELS = 1u << 5,
    SET_POLICY = 1u << 6,
    SET_APPS = 1u << 7,
    SET_INSECURE = 1u << 8,
    SET_MAP = 1u << 9,
    SET_HWM = 1u << 10,
    SET_MBOX_LEN = 1u << 11,
    SET_MBOX_WIN = 1u << 12,
    SET_IDEM = 1u << 13,
    SET_FORGET = 1u << 14,
    SET_SESSIONS = 1u << 15,
    SET_SPIN = 1u << 16,
    SET_DELAY = 1u << 17,
    SET_AUDIT_MAP = 1u << 18,
    SET_AUDIT_CKPT = 1u << 19,
    SET_LC_RATE = 1u << 20,
    SET_GRACE = 1u << 21,
    SET_ASK = 1u << 22,
    SET_APPCFG = 1u << 23, /* app_* and kv_map_mb: copied when non-zero */
    SET_CURVE = 1u << 24
};

static void
s_free_strv (char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free (v[i]);
    free (v);
}

static void
s_free_channels (broker_chan_cfg_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free (c[i].name);
    free (c);
}

void
broker_config_destroy (broker_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_config_t *self = *self_p;
    free (self->data_dir);
    s_free_strv (self->binds, self->nbinds);
    free (self->tap);
    s_free_channels (self->channels, self->nchannels);
    policy_destroy (&self->policy);
    s_free_strv (self->apps, self->napps);
    free (self->lifecycle_rate);
    free (self->source);
    free (self->policy_source);
    free (self->policy_text);
    free (self);
    *self_p = NULL;
}

bool
broker_config_valid_name (const char *name, size_t len)
{
    if (len < 1 || len > AAAX_MAX_NAME || name[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) name[i];
        if (!(isalnum (c) || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/*  ---- reading Lua values ---------------------------------------------- */

typedef struct {
    const char *source;
    char *err;
    size_t errlen;
    const char *text; /* the chunk's text, for the lines of policy rules */
    size_t len;
    bool embedded; /* the chunk is the embedded defaults */
} s_ctx_t;

static int s_bad (s_ctx_t *ctx, const char *key, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_bad (s_ctx_t *ctx, const char *key, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    snprintf (ctx->err, ctx->errlen, "%s: %s: %s", ctx->source, key, msg);
    return AAAX_EINVAL;
}

static int
s_get_uint (lua_State *L, int idx, s_ctx_t *ctx, const char *key, uint64_t lo,
            uint64_t hi, uint64_t *out)
{
    lua_Integer v;
    if (lua_isinteger (L, idx))
        v = lua_tointeger (L, idx);
    else if (lua_type (L, idx) == LUA_TNUMBER) {
        /*  A float is accepted when it is a whole number in range; checked
            before any conversion (1e300, inf and nan convert to nothing). */
        lua_Number n = lua_tonumber (L, idx);
        if (!(n >= 0 && n <= 9007199254740992.0) || n != floor (n))
            return s_bad (ctx, key,
                          "must be a whole number between %llu and "
                          "%llu",
                          (unsigned long long) lo, (unsigned long long) hi);
        v = (lua_Integer) n;
    } else
        return s_bad (ctx, key, "must be a number, not %s",
                      luaL_typename (L, idx));
    if (v < 0 || (uint64_t) v < lo || (uint64_t) v > hi)
        return s_bad (ctx, key, "must be between %llu and %llu (got %lld)",
                      (unsigned long long) lo, (unsigned long long) hi,
                      (long long) v);
    *out = (uint64_t) v;
    return 0;
}

static int
s_get_str (lua_State *L, int idx, s_ctx_t *ctx, const char *key, char **out)
{
    if (lua_type (L, idx) != LUA_TSTRING)
        return s_bad (ctx, key, "must be a string, not %s",
                      luaL_typename (L, idx));
    size_t len;
    const char *s = lua_tolstring (L, idx, &len);
    if (len == 0 || strlen (s) != len || len > 4096)
        return s_bad (ctx, key,
                      "must be a non-empty string without NUL "
                      "bytes, at most 4096 bytes");
    *out = strdup (s);
    return *out ? 0 : AAAX_ENOMEM;
}

static int
s_get_bool (lua_State *L, int idx, s_ctx_t *ctx, const char *key, bool *out)
{
    if (lua_type (L, idx) != LUA_TBOOLEAN)
        return s_bad (ctx, key, "must be true or false, not %s",
                      luaL_typename (L, idx));
    *out = lua_toboolean (L, idx);
    return 0;
}

/*  Length of a proper sequence at idx (raw, no holes, only integer keys),
    or -1. */
static lua_Integer
s_seq_len (lua_State *L, int idx)
{
    if (lua_type (L, idx) != LUA_TTABLE)
        return -1;
    idx = lua_absindex (L, idx);
    lua_Integer n = (lua_Integer) lua_rawlen (L, idx), count = 0;
    lua_pushnil (L);
    while (lua_next (L, idx)) {
        lua_pop (L, 1);
        if (!lua_isinteger (L, -1)) {
            lua_pop (L, 1);
            return -1;
        }
        lua_Integer k = lua_tointeger (L, -1);
        if (k < 1 || k > n) {
            lua_pop (L, 1);
            return -1;
        }
        count++;
    }
    return count == n ? n : -1;
}

static int
s_get_strv (lua_State *L, int idx, s_ctx_t *ctx, const char *key, size_t max,
            char ***out, size_t *nout)
{
    lua_Integer n = s_seq_len (L, idx);
    if (n < 0)
        return s_bad (ctx, key, "must be a list of strings");
    if ((size_t) n > max)
        return s_bad (ctx, key, "has more than %zu entries", max);
    char **v = (char **) calloc ((size_t) n + 1, sizeof *v);
    if (!v)
        return AAAX_ENOMEM;
    idx = lua_absindex (L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti (L, idx, i);
        char sub[64];
        snprintf (sub, sizeof sub, "%s[%lld]", key, (long long) i);
        int rc = s_get_str (L, -1, ctx, sub, &v[i - 1]);
        lua_pop (L, 1);
        if (rc) {
            s_free_strv (v, (size_t) i - 1);
            return rc;
        }
    }
    *out = v;
    *nout = (size_t) n;
    return 0;
}

static int
s_get_channel (lua_State *L, int idx, s_ctx_t *ctx, const char *where,
               broker_chan_cfg_t *c)
{
    if (lua_type (L, idx) != LUA_TTABLE)
        return s_bad (ctx, where, "must be a table");
    idx = lua_absindex (L, idx);
    memset (c, 0, sizeof *c);
    c->durable = true;
    c->max_attempts = 5;
    c->max_len = 100000;
    c->lease_ms = 30000;
    char *kind = NULL, *vis = NULL;
    bool have_durable = false;
    int rc = 0;
    char key[96];
    lua_pushnil (L);
    while (rc == 0 && lua_next (L, idx)) {
        if (lua_type (L, -2) != LUA_TSTRING) {
            rc = s_bad (ctx, where, "field names must be strings");
            lua_pop (L, 2);
            break;
        }
        const char *k = lua_tostring (L, -2);
        snprintf (key, sizeof key, "%s.%s", where, k);
        uint64_t u;
        if (streq (k, "name"))
            rc = s_get_str (L, -1, ctx, key, &c->name);
        else if (streq (k, "kind"))
            rc = s_get_str (L, -1, ctx, key, &kind);
        else if (streq (k, "visibility"))
            rc = s_get_str (L, -1, ctx, key, &vis);
        else if (streq (k, "durable")) {
            rc = s_get_bool (L, -1, ctx, key, &c->durable);
            have_durable = true;
        } else if (streq (k, "retain")) {
            rc = s_get_uint (L, -1, ctx, key, 0, 100000, &u);
            c->retain = (uint32_t) u;
        } else if (streq (k, "max_attempts")) {
            rc = s_get_uint (L, -1, ctx, key, 1, 1000, &u);
            c->max_attempts = (uint32_t) u;
        } else if (streq (k, "max_len")) {
            rc = s_get_uint (L, -1, ctx, key, 0, 100000000, &u);
            c->max_len = (uint32_t) u;
        } else if (streq (k, "max_bytes")) {
            rc = s_get_uint (L, -1, ctx, key, 0, (uint64_t) 1 << 40, &u);
            c->max_bytes = u;
        } else if (streq (k, "lease_ms")) {
            rc = s_get_uint (L, -1, ctx, key, 100, 86400000, &u);
            c->lease_ms = (uint32_t) u;
        } else
            rc = s_bad (ctx, key,
                        "unknown field (known: name, kind, "
                        "durable, visibility, retain, max_attempts, max_len, "
                        "max_bytes, lease_ms)");
        lua_pop (L, 1);
    }
    if (rc == 0 && !c->name)
        rc = s_bad (ctx, where, "needs a name");
    if (rc == 0 && !broker_config_valid_name (c->name, strlen (c->name)))
        rc = s_bad (ctx, where,
                    "name \"%s\" must be 1..%d characters of "
                    "A-Z a-z 0-9 . _ - and not start with '.'",
                    c->name, AAAX_MAX_NAME);
    if (rc == 0 && !kind)
        rc = s_bad (ctx, where,
                    "needs a kind (\"broadcast\" or "
                    "\"work-queue\")");
    if (rc == 0) {
        if (streq (kind, "broadcast"))
            c->kind = BROKER_CHAN_BROADCAST;
        else if (streq (kind, "work-queue"))
            c->kind = BROKER_CHAN_QUEUE;
        else
            rc = s_bad (ctx, where,
                        "kind must be \"broadcast\" or "
                        "\"work-queue\" (got \"%s\")",
                        kind);
    }
    if (rc == 0 && vis) {
        if (streq (vis, "public"))
            c->public = true;
        else if (!streq (vis, "private"))
            rc = s_bad (ctx, where,
                        "visibility must be \"public\" or "
                        "\"private\" (got \"%s\")",
                        vis);
    }
    if (rc == 0 && c->kind == BROKER_CHAN_BROADCAST && have_durable
        && c->durable)
        rc = s_bad (ctx, where,
                    "broadcast channels are not durable (retain "
                    "keeps the last N in memory)");
    if (rc == 0 && c->kind == BROKER_CHAN_QUEUE && (vis || c->retain))
        rc = s_bad (ctx, where,
                    "visibility and retain apply to broadcast "
                    "channels only");
    if (c->kind == BROKER_CHAN_BROADCAST)
        c->durable = false;
    free (kind);
    free (vis);
    if (rc) {
        free (c->name);
        c->name = NULL;
    }
    return rc;
}

static int
s_get_channels (lua_State *L, int idx, s_ctx_t *ctx, broker_chan_cfg_t **out,
                size_t *nout)
{
    lua_Integer n = s_seq_len (L, idx);
    if (n < 0)
        return s_bad (ctx, "channels", "must be a list of channel tables");
    if (n > 4096)
        return s_bad (ctx, "channels", "more than 4096 channels");
    broker_chan_cfg_t *c =
        (broker_chan_cfg_t *) calloc ((size_t) n + 1, sizeof *c);
    if (!c)
        return AAAX_ENOMEM;
    idx = lua_absindex (L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        char where[32];
        snprintf (where, sizeof where, "channels[%lld]", (long long) i);
        lua_rawgeti (L, idx, i);
        int rc = s_get_channel (L, -1, ctx, where, &c[i - 1]);
        lua_pop (L, 1);
        for (lua_Integer j = 1; rc == 0 && j < i; j++)
            if (streq (c[j - 1].name, c[i - 1].name))
                rc = s_bad (ctx, where, "channel \"%s\" is defined twice",
                            c[i - 1].name);
        if (rc) {
            s_free_channels (c, (size_t) i);
            return rc;
        }
    }
    *out = c;
    *nout = (size_t) n;
    return 0;
}

/*  A rate "N/s" | "N/m" | "N/h", as a policy rule's. */
static int
s_get_rate (lua_State *L, int idx, s_ctx_t *ctx, const char *key, char **text,
            uint32_t *n, uint32_t *period_ms)
{
    if (lua_type (L, idx) != LUA_TSTRING)
        return s_bad (ctx, key, "must be a string such as \"10/s\", not %s",
                      luaL_typename (L, idx));
    size_t len;
    const char *s = lua_tolstring (L, idx, &len);
    uint32_t n_;
    int64_t period;
    if (strlen (s) != len || len > 16 || policy_parse_rate (s, &n_, &period))
        return s_bad (ctx, key,
                      "must be \"N/s\", \"N/m\" or \"N/h\" with N from 1 to "
                      "1000000");
    *text = strdup (s);
    if (!*text)
        return AAAX_ENOMEM;
    *n = n_;
    *period_ms = (uint32_t) period;
    return 0;
}

/*  Reads the value of a `policy` key at idx of the chunk file (whose text
    is text, len bytes): a path to a policy file (relative to dir when dir
    is not NULL), loaded into *policy with *file set to the path (caller
    frees); or a list of rules, each named "file:line" where the list is a
    literal, with *file left NULL. */
static int
s_get_policy (lua_State *L, int idx, const char *file, const char *text,
              size_t len, const char *dir, policy_t **policy, char **path_p,
              char *err, size_t errlen)
{
    *path_p = NULL;
    if (lua_type (L, idx) == LUA_TSTRING) {
        size_t plen;
        const char *p = lua_tolstring (L, idx, &plen);
        if (plen == 0 || strlen (p) != plen || plen > 4096) {
            aaax_seterr (err, errlen,
                         "%s: policy: a path must be a non-empty string "
                         "without NUL bytes, at most 4096 bytes",
                         file);
            return AAAX_EINVAL;
        }
        char *path = NULL;
        if ((p[0] == '/' || !dir ? asprintf (&path, "%s", p)
                                 : asprintf (&path, "%s/%s", dir, p))
            < 0)
            return AAAX_ENOMEM;
        int rc = policy_load_file (path, policy, err, errlen);
        if (rc)
            free (path);
        else
            *path_p = path;
        return rc;
    }
    int *lines = NULL;
    size_t nlines = 0;
    if (lua_type (L, idx) == LUA_TTABLE && text
        && policy_lines (text, len, POLICY_LINES_CONFIG, &lines, &nlines))
        nlines = 0; /* not a literal list: rules named by number */
    int rc =
        policy_from_lua_at (L, idx, file, lines, nlines, policy, err, errlen);
    free (lines);
    return rc;
}

/*  Reads the table at the top of L into scratch; *set says what it held. */
static int
s_read_table (lua_State *L, s_ctx_t *ctx, const char *dir,
              broker_config_t *scratch, uint32_t *set)
{
    if (lua_type (L, -1) != LUA_TTABLE)
        return s_bad (ctx, "(file)", "must return a table, not %s",
                      luaL_typename (L, -1));
    int t = lua_gettop (L);
    int rc = 0;
    lua_pushnil (L);
    while (rc == 0 && lua_next (L, t)) {
        if (lua_type (L, -2) != LUA_TSTRING) {
            lua_pop (L, 2);
            return s_bad (ctx, "(file)", "keys must be strings");
        }
        const char *k = lua_tostring (L, -2);
        uint64_t u;
        if (streq (k, "data")) {
            rc = s_get_str (L, -1, ctx, k, &scratch->data_dir);
            *set |= SET_DATA;
        } else if (streq (k, "bind")) {
            rc = s_get_strv (L, -1, ctx, k, 64, &scratch->binds,
                             &scratch->nbinds);
            *set |= SET_BIND;
        } else if (streq (k, "tap")) {
            /*  "" binds no tap. */
            if (lua_type (L, -1) == LUA_TSTRING && lua_rawlen (L, -1) == 0)
                rc = (scratch->tap = strdup ("")) ? 0 : AAAX_ENOMEM;
            else
                rc = s_get_str (L, -1, ctx, k, &scratch->tap);
            *set |= SET_TAP;
        } else if (streq (k, "insecure")) {
            rc = s_get_bool (L, -1, ctx, k, &scratch->insecure);
            *set |= SET_INSECURE;
        } else if (streq (k, "curve")) {
            char *mode = NULL;
            rc = s_get_str (L, -1, ctx, k, &mode);
            if (rc == 0
                && broker_config_curve_mode (mode, &scratch->curve_all) != 0)
                rc = s_bad (ctx, k, "must be \"auto\" or \"all\"");
            free (mode);
            *set |= SET_CURVE;
        } else if (streq (k, "heartbeat_ms")) {
            rc = s_get_uint (L, -1, ctx, k, 50, 60000, &u);
            scratch->heartbeat_ms = (uint32_t) u;
            *set |= SET_HB;
        } else if (streq (k, "max_frame")) {
            rc = s_get_uint (L, -1, ctx, k, 1024, 256u << 20, &u);
            scratch->max_frame = (size_t) u;
            *set |= SET_FRAME;
        } else if (streq (k, "channels")) {
            rc = s_get_channels (L, -1, ctx, &scratch->channels,
                                 &scratch->nchannels);
            *set |= SET_CHANNELS;
        } else if (streq (k, "policy")) {
            *set |= SET_POLICY;
            char *file = NULL;
            rc = s_get_policy (L, -1, ctx->source, ctx->text, ctx->len, dir,
                               &scratch->policy, &file, ctx->err, ctx->errlen);
            if (rc == 0 && file) {
                scratch->policy_from = BROKER_POLICY_FILE;
                scratch->policy_source = file;
            } else if (rc == 0) {
                scratch->policy_from =
                    dir ? BROKER_POLICY_INLINE : BROKER_POLICY_TEXT;
                scratch->policy_source = strdup (ctx->source);
                if (!scratch->policy_source)
                    rc = AAAX_ENOMEM;
                if (rc == 0 && !dir && !ctx->embedded
                    && !(scratch->policy_text = strndup (ctx->text, ctx->len)))
                    rc = AAAX_ENOMEM;
            }
        } else if (streq (k, "apps")) {
            rc = s_get_strv (L, -1, ctx, k, 10000, &scratch->apps,
                             &scratch->napps);
            /*  Relative to the configuration file, like a policy path. */
            for (size_t i = 0; rc == 0 && dir && i < scratch->napps; i++)
                if (scratch->apps[i][0] != '/') {
                    char *joined = NULL;
                    if (asprintf (&joined, "%s/%s", dir, scratch->apps[i])
                        < 0) {
                        rc = AAAX_ENOMEM;
                        break;
                    }
                    free (scratch->apps[i]);
                    scratch->apps[i] = joined;
                }
            *set |= SET_APPS;
        } else if (streq (k, "store_map_mb")) {
            rc = s_get_uint (L, -1, ctx, k, 16, 1u << 20, &u);
            scratch->store_map_mb = u;
            *set |= SET_MAP;
        } else if (streq (k, "sndhwm")) {
            rc = s_get_uint (L, -1, ctx, k, 100, 1000000, &u);
            scratch->sndhwm = (uint32_t) u;
            *set |= SET_HWM;
        } else if (streq (k, "mailbox_max_len")) {
            rc = s_get_uint (L, -1, ctx, k, 1, 10000000, &u);
            scratch->mailbox_max_len = (uint32_t) u;
            *set |= SET_MBOX_LEN;
        } else if (streq (k, "mailbox_window")) {
            rc = s_get_uint (L, -1, ctx, k, 1, 65536, &u);
            scratch->mailbox_window = (uint32_t) u;
            *set |= SET_MBOX_WIN;
        } else if (streq (k, "idempotency_ttl_s")) {
            rc = s_get_uint (L, -1, ctx, k, 600, 604800, &u);
            scratch->idempotency_ttl_s = (uint32_t) u;
            *set |= SET_IDEM;
        } else if (streq (k, "forget_after_s")) {
            rc = s_get_uint (L, -1, ctx, k, 3600, 315360000, &u);
            scratch->forget_after_s = (uint32_t) u;
            *set |= SET_FORGET;
        } else if (streq (k, "spin_us")) {
            rc = s_get_uint (L, -1, ctx, k, 0, 10000, &u);
            scratch->spin_us = (uint32_t) u;
            *set |= SET_SPIN;
        } else if (streq (k, "commit_delay_us")) {
            rc = s_get_uint (L, -1, ctx, k, 0, 100000, &u);
            scratch->commit_delay_us = (uint32_t) u;
            *set |= SET_DELAY;
        } else if (streq (k, "audit_map_mb")) {
            rc = s_get_uint (L, -1, ctx, k, 1, 65536, &u);
            scratch->audit_map_mb = (uint32_t) u;
            *set |= SET_AUDIT_MAP;
        } else if (streq (k, "audit_checkpoint_every")) {
            rc = s_get_uint (L, -1, ctx, k, 1, 1000000, &u);
            scratch->audit_checkpoint_every = (uint32_t) u;
            *set |= SET_AUDIT_CKPT;
        } else if (streq (k, "lifecycle_rate")) {
            rc = s_get_rate (L, -1, ctx, k, &scratch->lifecycle_rate,
                             &scratch->lifecycle_rate_n,
                             &scratch->lifecycle_rate_ms);
            *set |= SET_LC_RATE;
        } else if (streq (k, "stop_grace_ms")) {
            rc = s_get_uint (L, -1, ctx, k, 0, 600000, &u);
            scratch->stop_grace_ms = (uint32_t) u;
            *set |= SET_GRACE;
        } else if (streq (k, "ask_timeout_s")) {
            rc = s_get_uint (L, -1, ctx, k, 1, 86400, &u);
            scratch->ask_timeout_s = (uint32_t) u;
            *set |= SET_ASK;
        } else if (streq (k, "app_workers")) {
            rc = s_get_uint (L, -1, ctx, k, 1, 16, &u);
            scratch->app_workers = (uint32_t) u;
            *set |= SET_APPCFG;
        } else if (streq (k, "kv_map_mb")) {
            rc = s_get_uint (L, -1, ctx, k, 1, 1u << 20, &u);
            scratch->kv_map_mb = (uint32_t) u;
            *set |= SET_APPCFG;
        } else if (streq (k, "app_memory_kb")
                   || streq (k, "app_memory_max_kb")) {
            rc = s_get_uint (L, -1, ctx, k, 64, 1048576, &u);
            if (streq (k, "app_memory_kb"))
                scratch->app_memory_kb = (uint32_t) u;
            else
                scratch->app_memory_max_kb = (uint32_t) u;
            *set |= SET_APPCFG;
        } else if (streq (k, "app_instructions")
                   || streq (k, "app_instructions_max")) {
            rc = s_get_uint (L, -1, ctx, k, 1000, 10000000000ULL, &u);
            if (streq (k, "app_instructions"))
                scratch->app_instructions = u;
            else
                scratch->app_instructions_max = u;
            *set |= SET_APPCFG;
        } else if (streq (k, "app_files_kb") || streq (k, "app_files_max_kb")
                   || streq (k, "app_kv_kb") || streq (k, "app_kv_max_kb")) {
            rc = s_get_uint (L, -1, ctx, k, 1, 16777216, &u);
            if (streq (k, "app_files_kb"))
                scratch->app_files_kb = (uint32_t) u;
            else if (streq (k, "app_files_max_kb"))
                scratch->app_files_max_kb = (uint32_t) u;
            else if (streq (k, "app_kv_kb"))
                scratch->app_kv_kb = (uint32_t) u;
            else
                scratch->app_kv_max_kb = (uint32_t) u;
            *set |= SET_APPCFG;
        } else if (streq (k, "max_sessions")) {
            rc = s_get_uint (L, -1, ctx, k, 1, 1000000, &u);
            scratch->max_sessions = (uint32_t) u;
            *set |= SET_SESSIONS;
        } else
            rc = s_bad (ctx, k,
                        "unknown key (see docs/CONFIG.md; aaaxd "
                        "--print-config shows the defaults)");
        lua_pop (L, 1);
    }
    return rc;
}

#define MOVE(field)              \
    do {                         \
        dst->field = src->field; \
        src->field = 0;          \
    } while (0)

static void
s_merge (broker_config_t *dst, broker_config_t *src, uint32_t set)
{
    if (set & SET_DATA) {
        free (dst->data_dir);
        MOVE (data_dir);
    }
    if (set & SET_BIND) {
        s_free_strv (dst->binds, dst->nbinds);
        MOVE (binds);
        MOVE (nbinds);
    }
    if (set & SET_TAP) {
        free (dst->tap);
        MOVE (tap);
    }
    if (set & SET_INSECURE)
        dst->insecure = src->insecure;
    if (set & SET_CURVE)
        dst->curve_all = src->curve_all;
    if (set & SET_HB)
        dst->heartbeat_ms = src->heartbeat_ms;
    if (set & SET_FRAME)
        dst->max_frame = src->max_frame;
    if (set & SET_CHANNELS) {
        s_free_channels (dst->channels, dst->nchannels);
        MOVE (channels);
        MOVE (nchannels);
    }
    if (set & SET_POLICY) {
        policy_destroy (&dst->policy);
        MOVE (policy);
        dst->policy_from = src->policy_from;
        free (dst->policy_source);
        MOVE (policy_source);
        free (dst->policy_text);
        MOVE (policy_text);
    }
    if (set & SET_APPS) {
        s_free_strv (dst->apps, dst->napps);
        MOVE (apps);
        MOVE (napps);
    }
    if (set & SET_APPCFG) {
#define S_IFSET(field) \
    if (src->field)    \
        dst->field = src->field;
        S_IFSET (app_workers);
        S_IFSET (kv_map_mb);
        S_IFSET (app_memory_kb);
        S_IFSET (app_memory_max_kb);
        S_IFSET (app_instructions);
        S_IFSET (app_instructions_max);
        S_IFSET (app_files_kb);
        S_IFSET (app_files_max_kb);
        S_IFSET (app_kv_kb);
        S_IFSET (app_kv_max_kb);
#undef S_IFSET
    }
    if (set & SET_MAP)
        dst->store_map_mb = src->store_map_mb;
    if (set & SET_HWM)
        dst->sndhwm = src->sndhwm;
    if (set & SET_MBOX_LEN)
        dst->mailbox_max_len = src->mailbox_max_len;
    if (set & SET_MBOX_WIN)
        dst->mailbox_window = src->mailbox_window;
    if (set & SET_IDEM)
        dst->idempotency_ttl_s = src->idempotency_ttl_s;
    if (set & SET_FORGET)
        dst->forget_after_s = src->forget_after_s;
    if (set & SET_SESSIONS)
        dst->max_sessions = src->max_sessions;
    if (set & SET_SPIN)
        dst->spin_us = src->spin_us;
    if (set & SET_DELAY)
        dst->commit_delay_us = src->commit_delay_us;
    if (set & SET_AUDIT_MAP)
        dst->audit_map_mb = src->audit_map_mb;
    if (set & SET_AUDIT_CKPT)
        dst->audit_checkpoint_every = src->audit_checkpoint_every;
    if (set & SET_LC_RATE) {
        free (dst->lifecycle_rate);
        MOVE (lifecycle_rate);
        dst->lifecycle_rate_n = src->lifecycle_rate_n;
        dst->lifecycle_rate_ms = src->lifecycle_rate_ms;
    }
    if (set & SET_GRACE)
        dst->stop_grace_ms = src->stop_grace_ms;
    if (set & SET_ASK)
        dst->ask_timeout_s = src->ask_timeout_s;
}

/*  The directory of path ("." when it has none) into dir. */
static void
s_dirname (const char *path, char *dir, size_t dirlen)
{
    snprintf (dir, dirlen, "%s", path);
    char *slash = strrchr (dir, '/');
    if (slash == dir)
        dir[1] = 0; /* "/aaax.lua" lives in "/" */
    else if (slash)
        *slash = 0;
    else
        snprintf (dir, dirlen, ".");
}

static int
s_load (broker_config_t *self, const char *path, const char *src, size_t srclen,
        const char *chunkname, char *err, size_t errlen)
{
    //  A file is read once, here: Lua runs that text and the scan for the
    //  lines of policy rules reads the same.
    char *text = NULL;
    if (path) {
        int rc = hal_luadata_read_file (path, &text, &srclen, err, errlen);
        if (rc)
            return rc;
        src = text;
    }
    const char *source = path ? path : chunkname;
    lua_State *L = hal_luadata_new ();
    if (!L) {
        snprintf (err, errlen, "out of memory");
        free (text);
        return AAAX_ENOMEM;
    }
    int rc = hal_luadata_run_string (L, src, srclen, source, err, errlen);
    if (rc) {
        hal_luadata_destroy (&L);
        free (text);
        return rc;
    }
    char dir[4096] = "";
    if (path)
        s_dirname (path, dir, sizeof dir);
    s_ctx_t ctx = { source, err, errlen, src, srclen, src == s_defaults };
    broker_config_t *scratch = (broker_config_t *) calloc (1, sizeof *scratch);
    if (!scratch) {
        hal_luadata_destroy (&L);
        free (text);
        return AAAX_ENOMEM;
    }
    uint32_t set = 0;
    rc = s_read_table (L, &ctx, path ? dir : NULL, scratch, &set);
    hal_luadata_destroy (&L);
    free (text);
    if (rc == 0) {
        s_merge (self, scratch, set);
        free (self->source);
        self->source = strdup (source);
    }
    broker_config_destroy (&scratch);
    return rc;
}

broker_config_t *
broker_config_new (char *err, size_t errlen)
{
    broker_config_t *self = (broker_config_t *) calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->heartbeat_ms = 1000;
    self->max_frame = 1048576;
    self->store_map_mb = 4096;
    self->sndhwm = 4096;
    self->mailbox_max_len = 100000;
    self->mailbox_window = 1024;
    self->idempotency_ttl_s = 600;
    self->forget_after_s = 30 * 86400;
    self->max_sessions = 100000;
    self->spin_us = BROKER_DEFAULT_SPIN_US;
    self->commit_delay_us = BROKER_DEFAULT_COMMIT_DELAY_US;
    self->audit_map_mb = 256;
    self->audit_checkpoint_every = 1000;
    self->lifecycle_rate = strdup ("10/s");
    self->lifecycle_rate_n = 10;
    self->lifecycle_rate_ms = 1000;
    self->stop_grace_ms = 5000;
    self->ask_timeout_s = 300;
    {
        app_limits_cfg_t lim;
        app_limits_cfg_default (&lim);
        long cores = sysconf (_SC_NPROCESSORS_ONLN);
        self->app_workers = cores < 1 ? 1 : cores > 16 ? 16 : (uint32_t) cores;
        self->kv_map_mb = 1024;
        self->app_memory_kb = lim.memory_kb;
        self->app_memory_max_kb = lim.memory_max_kb;
        self->app_instructions = lim.instructions;
        self->app_instructions_max = lim.instructions_max;
        self->app_files_kb = lim.files_kb;
        self->app_files_max_kb = lim.files_max_kb;
        self->app_kv_kb = lim.kv_kb;
        self->app_kv_max_kb = lim.kv_max_kb;
    }
    self->policy = policy_new ();
    if (!self->policy || !self->lifecycle_rate
        || s_load (self, NULL, s_defaults, strlen (s_defaults),
                   "embedded defaults", err, errlen)
               != 0) {
        broker_config_destroy (&self);
        return NULL;
    }
    return self;
}

const char *
broker_config_policy_source (const broker_config_t *self)
{
    return self && self->policy_source ? self->policy_source
                                       : "embedded defaults";
}

/*  Runs a configuration chunk (text, len) named file and reads only its
    `policy`, as a boot would: a path (relative to dir), a list, or none
    (the embedded defaults). */
static int
s_reload_chunk (const char *text, size_t len, const char *file, const char *dir,
                bool embedded, policy_t **out, char *source_out,
                size_t source_len, char *err, size_t errlen)
{
    lua_State *L = hal_luadata_new ();
    if (!L) {
        aaax_seterr (err, errlen, "%s: out of memory", file);
        return AAAX_ENOMEM;
    }
    int rc = hal_luadata_run_string (L, text, len, file, err, errlen);
    if (rc) {
        hal_luadata_destroy (&L);
        return rc;
    }
    if (lua_type (L, -1) != LUA_TTABLE) {
        aaax_seterr (err, errlen, "%s: must return a table, not %s", file,
                     luaL_typename (L, -1));
        hal_luadata_destroy (&L);
        return AAAX_EINVAL;
    }
    //  Find the key by walking the table: raw, no allocation in the state
    //  (lua_getfield could run a metamethod, or fail outside a pcall).
    int t = lua_gettop (L);
    int found = 0;
    lua_pushnil (L);
    while (lua_next (L, t)) {
        if (lua_type (L, -2) == LUA_TSTRING) {
            size_t klen;
            const char *k = lua_tolstring (L, -2, &klen);
            if (klen == 6 && memcmp (k, "policy", 6) == 0) {
                found = 1;
                break; /* the value stays on top */
            }
        }
        lua_pop (L, 1);
    }
    policy_t *policy = NULL;
    char *path = NULL;
    if (found)
        rc = s_get_policy (L, -1, file, text, len, dir, &policy, &path, err,
                           errlen);
    hal_luadata_destroy (&L);
    if (rc)
        return rc;
    if (!found && !embedded)
        //  The file no longer sets a policy: the defaults' applies.
        return s_reload_chunk (s_defaults, strlen (s_defaults),
                               "embedded defaults", NULL, true, out, source_out,
                               source_len, err, errlen);
    if (!found) {
        aaax_seterr (err, errlen, "%s: no policy", file);
        return AAAX_EINVAL;
    }
    if (source_out && source_len)
        snprintf (source_out, source_len, "%s", path ? path : file);
    free (path);
    *out = policy;
    return 0;
}

int
broker_config_reload_policy (const broker_config_t *cfg, policy_t **out,
                             char *source_out, size_t source_len, char *err,
                             size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!cfg || !out) {
        aaax_seterr (err, errlen,
                     "broker_config_reload_policy: invalid "
                     "arguments");
        return AAAX_EINVAL;
    }
    const char *file = broker_config_policy_source (cfg);
    if (cfg->policy_from == BROKER_POLICY_FILE) {
        policy_t *policy = NULL;
        int rc = policy_load_file (file, &policy, err, errlen);
        if (rc)
            return rc;
        if (source_out && source_len)
            snprintf (source_out, source_len, "%s", file);
        *out = policy;
        return 0;
    }
    if (cfg->policy_from == BROKER_POLICY_INLINE) {
        char *text = NULL;
        size_t len = 0;
        int rc = hal_luadata_read_file (file, &text, &len, err, errlen);
        if (rc)
            return rc;
        char dir[4096];
        s_dirname (file, dir, sizeof dir);
        rc = s_reload_chunk (text, len, file, dir, false, out, source_out,
                             source_len, err, errlen);
        free (text);
        return rc;
    }
    if (cfg->policy_text)
        return s_reload_chunk (cfg->policy_text, strlen (cfg->policy_text),
                               file, NULL, false, out, source_out, source_len,
                               err, errlen);
    return s_reload_chunk (s_defaults, strlen (s_defaults), "embedded defaults",
                           NULL, true, out, source_out, source_len, err,
                           errlen);
}

int
broker_config_load_file (broker_config_t *self, const char *path, char *err,
                         size_t errlen)
{
    return s_load (self, path, NULL, 0, NULL, err, errlen);
}

int
broker_config_load_string (broker_config_t *self, const char *src,
                           const char *chunkname, char *err, size_t errlen)
{
    return s_load (self, NULL, src, strlen (src), chunkname, err, errlen);
}

int
broker_config_set_data (broker_config_t *self, const char *dir)
{
    char *copy = strdup (dir);
    if (!copy)
        return AAAX_ENOMEM;
    free (self->data_dir);
    self->data_dir = copy;
    return 0;
}

int
broker_config_set_binds (broker_config_t *self, char **binds, size_t n)
{
    char **v = (char **) calloc (n + 1, sizeof *v);
    if (!v)
        return AAAX_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] = strdup (binds[i]))) {
            s_free_strv (v, i);
            return AAAX_ENOMEM;
        }
    s_free_strv (self->binds, self->nbinds);
    self->binds = v;
    self->nbinds = n;
    return 0;
}

int
broker_config_set_tap (broker_config_t *self, const char *tap)
{
    char *copy = strdup (tap);
    if (!copy)
        return AAAX_ENOMEM;
    free (self->tap);
    self->tap = copy;
    return 0;
}

bool
broker_config_is_loopback (const char *ep)
{
    if (strncmp (ep, "tcp://", 6) != 0)
        return true;
    const char *host = ep + 6;
    /*  tcp://[source;]host:port — the part before ';' is a source address. */
    const char *semi = strchr (host, ';');
    if (semi)
        host = semi + 1;
    const char *colon = strrchr (host, ':');
    if (!colon || colon == host)
        return false;
    size_t len = (size_t) (colon - host);
    char h[64];
    if (len >= sizeof h)
        return false;
    memcpy (h, host, len);
    h[len] = 0;
    if (streq (h, "localhost") || streq (h, "[::1]") || streq (h, "lo"))
        return true;
    /*  An IPv4 literal 127.a.b.c. */
    unsigned a, b, c, d;
    char tail;
    return sscanf (h, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127
           && b < 256 && c < 256 && d < 256;
}

int
broker_config_curve_mode (const char *mode, bool *all)
{
    if (mode && streq (mode, "auto"))
        *all = false;
    else if (mode && streq (mode, "all"))
        *all = true;
    else
        return AAAX_EINVAL;
    return 0;
}

bool
broker_config_endpoint_curve (const broker_config_t *self, const char *ep)
{
    if (strncmp (ep, "tcp://", 6) != 0)
        return false;
    if (self->curve_all)
        return true;
    return !broker_config_is_loopback (ep) && !self->insecure;
}

static bool
s_valid_endpoint (const char *ep)
{
    const char *schemes[] = { "tcp://", "ipc://", "inproc://" };
    for (size_t i = 0; i < 3; i++)
        if (strncmp (ep, schemes[i], strlen (schemes[i])) == 0
            && strlen (ep) > strlen (schemes[i]))
            return true;
    return false;
}

int
broker_config_check (const broker_config_t *self, char *err, size_t errlen)
{
    if (!self->data_dir || !*self->data_dir) {
        snprintf (err, errlen, "no data directory");
        return AAAX_EINVAL;
    }
    for (size_t i = 0; i < self->nbinds; i++) {
        const char *ep = self->binds[i];
        if (!s_valid_endpoint (ep)) {
            snprintf (err, errlen,
                      "bind endpoint \"%s\" must start with "
                      "tcp://, ipc:// or inproc://",
                      ep);
            return AAAX_EINVAL;
        }
    }
    if (self->insecure && self->curve_all) {
        snprintf (err, errlen,
                  "--insecure (plain TCP on non-loopback addresses) and "
                  "curve = \"all\" (CURVE on every tcp endpoint) contradict "
                  "each other: choose one");
        return AAAX_EINVAL;
    }
    if (self->tap && *self->tap) {
        if (!s_valid_endpoint (self->tap)) {
            snprintf (err, errlen,
                      "tap endpoint \"%s\" must start with "
                      "tcp://, ipc:// or inproc://",
                      self->tap);
            return AAAX_EINVAL;
        }
    }
    for (size_t i = 0; i < self->nchannels; i++) {
        const char *n = self->channels[i].name;
        size_t len = strlen (n);
        if (streq (n, "heartbeat") || strncmp (n, "kernel.", 7) == 0) {
            snprintf (err, errlen,
                      "%s: channels[%zu]: \"%s\" is a kernel "
                      "channel name",
                      self->source ? self->source : "config", i + 1, n);
            return AAAX_EINVAL;
        }
        if (len > 4 && streq (n + len - 4, ".dlq")) {
            snprintf (err, errlen,
                      "%s: channels[%zu]: names ending in .dlq "
                      "are the dead-letter queues the kernel makes beside "
                      "each work-queue",
                      self->source ? self->source : "config", i + 1);
            return AAAX_EINVAL;
        }
        if (self->channels[i].kind == BROKER_CHAN_QUEUE
            && len + 4 > AAAX_MAX_NAME) {
            snprintf (err, errlen,
                      "%s: channels[%zu]: a work-queue name must "
                      "leave room for \".dlq\" (at most %d characters)",
                      self->source ? self->source : "config", i + 1,
                      AAAX_MAX_NAME - 4);
            return AAAX_EINVAL;
        }
    }
    return 0;
}
