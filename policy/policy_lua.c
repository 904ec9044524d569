/*  policy_lua.c — reads policy rules from a Lua list of rule tables. Only raw
    access (lua_next, lua_rawgeti) and no allocation in the Lua state, so
    that no metamethod runs and no Lua error can be raised outside a pcall. */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "aaax.h"
#include "hal_luadata.h"
#include "policy.h"
#include "policy_lines.h"
#include "policy_lua.h"

/*  Copies up to 64 bytes of a Lua string into out (at least 72 bytes) for
    quoting: non-printable bytes become '?', a longer one ends in "...". */
static const char *
s_quote (const char *text, size_t len, char *out)
{
    size_t i = 0;
    for (; i < len && i < 64; i++) {
        unsigned char c = (unsigned char) text[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
    }
    if (i < len) {
        memcpy (out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

enum { S_SUBJECT, S_ACTION, S_TARGET, S_EFFECT, S_RATE, S_NAME, S_NFIELDS };

static const char *const s_fields[S_NFIELDS] = { "subject", "action", "target",
                                                 "effect",  "rate",   "name" };
static const int s_required[S_NFIELDS] = { 1, 1, 1, 1, 0, 0 };

/*  Reads the rule table at stack index t (absolute) into values, which
    point into the table's strings (kept alive by the table). Returns 0 or
    AAAX_EINVAL with a message naming the rule (number) and field. */
static int
s_read_rule (lua_State *L, int t, const char *source, size_t number,
             const char *values[S_NFIELDS], char *err, size_t errlen)
{
    char quoted[72];
    int types[S_NFIELDS];
    for (int f = 0; f < S_NFIELDS; f++) {
        values[f] = NULL;
        types[f] = LUA_TNIL;
    }
    //  One pass over the keys. Unknown keys are reported before missing
    //  fields (a typo like "efect" says so rather than "missing effect");
    //  of several, the smallest is named, so messages are deterministic.
    const char *unknown = NULL;
    size_t unknown_len = 0;
    int bad_key_type = LUA_TNONE;
    lua_pushnil (L);
    while (lua_next (L, t)) {
        if (lua_type (L, -2) != LUA_TSTRING) {
            int type = lua_type (L, -2);
            if (bad_key_type == LUA_TNONE || type < bad_key_type)
                bad_key_type = type;
            lua_pop (L, 1);
            continue;
        }
        size_t len;
        const char *key = lua_tolstring (L, -2, &len);
        int f = 0;
        while (f < S_NFIELDS
               && !(strlen (s_fields[f]) == len
                    && memcmp (s_fields[f], key, len) == 0))
            f++;
        if (f == S_NFIELDS) {
            if (!unknown || strcmp (key, unknown) < 0) {
                unknown = key;
                unknown_len = len;
            }
        } else {
            types[f] = lua_type (L, -1);
            if (types[f] == LUA_TSTRING) {
                size_t vlen;
                const char *value = lua_tolstring (L, -1, &vlen);
                if (strlen (value) != vlen) {
                    aaax_seterr (err, errlen,
                                 "%s: rule %zu: field \"%s\" contains a NUL "
                                 "byte",
                                 source, number, s_fields[f]);
                    lua_pop (L, 2);
                    return AAAX_EINVAL;
                }
                values[f] = value;
            }
        }
        lua_pop (L, 1);
    }
    if (bad_key_type != LUA_TNONE) {
        aaax_seterr (err, errlen,
                     "%s: rule %zu: field names must be strings (got a %s "
                     "key)",
                     source, number, lua_typename (L, bad_key_type));
        return AAAX_EINVAL;
    }
    if (unknown) {
        aaax_seterr (err, errlen, "%s: rule %zu: unknown field \"%s\"", source,
                     number, s_quote (unknown, unknown_len, quoted));
        return AAAX_EINVAL;
    }
    for (int f = 0; f < S_NFIELDS; f++) {
        if (types[f] == LUA_TNIL) {
            if (!s_required[f])
                continue;
            aaax_seterr (err, errlen, "%s: rule %zu: missing field \"%s\"",
                         source, number, s_fields[f]);
            return AAAX_EINVAL;
        }
        if (types[f] != LUA_TSTRING) {
            aaax_seterr (err, errlen,
                         "%s: rule %zu: field \"%s\" must be a string (got %s)",
                         source, number, s_fields[f],
                         lua_typename (L, types[f]));
            return AAAX_EINVAL;
        }
    }
    return 0;
}

/*  Checks that the table at t is a sequence 1..n (no other keys, no
    holes) and returns n in *n_p. */
static int
s_check_sequence (lua_State *L, int t, const char *source, size_t *n_p,
                  char *err, size_t errlen)
{
    size_t count = 0;
    lua_Integer max = 0;
    int bad_key = 0;
    lua_pushnil (L);
    while (lua_next (L, t)) {
        if (lua_isinteger (L, -2)) {
            lua_Integer key = lua_tointeger (L, -2);
            if (key < 1)
                bad_key = 1;
            else if (key > max)
                max = key;
        } else
            bad_key = 1;
        count++;
        lua_pop (L, 1);
    }
    if (bad_key) {
        aaax_seterr (err, errlen,
                     "%s: policy must be a list of rules (found a key that is "
                     "not a rule number 1, 2, ...)",
                     source);
        return AAAX_EINVAL;
    }
    if ((lua_Unsigned) max != count) {
        //  count positive integer keys, the largest above count: some
        //  index in 1..count+1 is missing.
        size_t hole = 1;
        while (hole <= count) {
            int type = lua_rawgeti (L, t, (lua_Integer) hole);
            lua_pop (L, 1);
            if (type == LUA_TNIL)
                break;
            hole++;
        }
        aaax_seterr (err, errlen,
                     "%s: policy must be a list of rules (rule %zu is "
                     "missing)",
                     source, hole);
        return AAAX_EINVAL;
    }
    *n_p = count;
    return 0;
}

/*  Reads the list at idx; see policy_from_lua_at. */
static int
s_from_lua (lua_State *L, int idx, const char *source, const int *lines,
            size_t nlines, policy_t **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!source)
        source = "policy";
    if (!L || !out) {
        aaax_seterr (err, errlen, "%s: invalid arguments", source);
        return AAAX_EINVAL;
    }
    int t = lua_absindex (L, idx);
    if (lua_type (L, t) != LUA_TTABLE) {
        aaax_seterr (err, errlen, "%s: policy must be a list of rules (got %s)",
                     source, luaL_typename (L, t));
        return AAAX_EINVAL;
    }
    if (!lua_checkstack (L, 4)) {
        aaax_seterr (err, errlen, "%s: out of memory", source);
        return AAAX_ENOMEM;
    }
    int top = lua_gettop (L);
    size_t n;
    int rc = s_check_sequence (L, t, source, &n, err, errlen);
    if (rc)
        return rc;
    //  Lines count only when the scan saw exactly the rules Lua made.
    if (!lines || nlines != n)
        lines = NULL;
    size_t where_len = strlen (source) + 24;
    char *where = (char *) malloc (where_len);
    policy_t *policy = policy_new ();
    if (!policy || !where) {
        policy_destroy (&policy);
        free (where);
        aaax_seterr (err, errlen, "%s: out of memory", source);
        return AAAX_ENOMEM;
    }
    for (size_t i = 1; i <= n; i++) {
        //  Where rule i is written: "file:line", or the file alone.
        if (lines)
            snprintf (where, where_len, "%s:%d", source, lines[i - 1]);
        else
            snprintf (where, where_len, "%s", source);
        int type = lua_rawgeti (L, t, (lua_Integer) i);
        if (type != LUA_TTABLE) {
            aaax_seterr (err, errlen, "%s: rule %zu: must be a table (got %s)",
                         where, i, lua_typename (L, type));
            rc = AAAX_EINVAL;
            break;
        }
        const char *values[S_NFIELDS];
        rc = s_read_rule (L, top + 1, where, i, values, err, errlen);
        if (rc)
            break;
        policy_rule_spec_t spec = { values[S_SUBJECT],
                                    values[S_ACTION],
                                    values[S_TARGET],
                                    values[S_EFFECT],
                                    values[S_RATE],
                                    values[S_NAME],
                                    where };
        rc = policy_add (policy, &spec, err, errlen);
        if (rc)
            break;
        lua_settop (L, top);
    }
    lua_settop (L, top);
    free (where);
    if (rc) {
        policy_destroy (&policy);
        return rc;
    }
    *out = policy;
    return 0;
}

int
policy_from_lua (lua_State *L, int idx, const char *source, policy_t **out,
                 char *err, size_t errlen)
{
    return s_from_lua (L, idx, source, NULL, 0, out, err, errlen);
}

int
policy_from_lua_at (lua_State *L, int idx, const char *file, const int *lines,
                    size_t nlines, policy_t **out, char *err, size_t errlen)
{
    return s_from_lua (L, idx, file, lines, nlines, out, err, errlen);
}

int
policy_load_text (const char *text, size_t len, const char *file,
                  policy_t **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!text || !file || !out) {
        aaax_seterr (err, errlen, "policy_load_text: invalid arguments");
        return AAAX_EINVAL;
    }
    lua_State *L = hal_luadata_new ();
    if (!L) {
        aaax_seterr (err, errlen, "%s: out of memory", file);
        return AAAX_ENOMEM;
    }
    int rc = hal_luadata_run_string (L, text, len, file, err, errlen);
    if (rc == 0) {
        int *lines = NULL;
        size_t nlines = 0;
        if (policy_lines (text, len, POLICY_LINES_FILE, &lines, &nlines))
            nlines = 0; /* not a literal list: rules named by number */
        rc = policy_from_lua_at (L, -1, file, lines, nlines, out, err, errlen);
        free (lines);
    }
    hal_luadata_destroy (&L);
    return rc;
}

int
policy_load_file (const char *path, policy_t **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!path || !out) {
        aaax_seterr (err, errlen, "policy_load_file: invalid arguments");
        return AAAX_EINVAL;
    }
    //  One read serves both Lua and the line scan, so they see one text.
    char *text = NULL;
    size_t len = 0;
    int rc = hal_luadata_read_file (path, &text, &len, err, errlen);
    if (rc)
        return rc;
    rc = policy_load_text (text, len, path, out, err, errlen);
    free (text);
    return rc;
}
