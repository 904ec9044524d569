/*  app_manifest.c — Lua app manifests: run in the restricted data-file
    state, read with raw access only (no metamethod runs, nothing is
    allocated in the Lua state, so no Lua error can escape a pcall), checked
    field by field; a small tokenizer finds the line of the offending field
    for messages; the app directory's digest; dependency order. */

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <limits.h>
#include <unistd.h>

#include <lua.h>
#include <sodium.h>

#include "aaax.h"
#include "app_manifest.h"
#include "broker_config.h"
#include "hal_luadata.h"
#include "policy_lex.h"

/*  ---- the line finder ------------------------------------------------- */

typedef struct {
    const char *key; /* an element's key to find, or NULL */
    size_t keylen;
    size_t index; /* a positional element to find (1-based), or 0 */
} s_want_t;

typedef struct {
    int line;    /* of the last element keyed want.key, or element index */
    size_t npos; /* positional elements */
} s_found_t;

/*  The constructor given to a key of the returned table, walked for want. */
typedef struct {
    const char *key;
    size_t keylen;
    s_want_t want;
    s_found_t found;
    int ok; /* the last element with that key was a plain constructor */
} s_inner_t;

/*  Just after a constructor's '{': walks its elements up to and including
    the closing '}', recording in *found what want asks for. When inner is
    set, the value of each element keyed inner->key that is a constructor
    standing alone is walked (one level, inner NULL) for inner->want; a
    later element with that key replaces the result. Returns 0, or -1 when
    the constructor does not end properly. */
static int
s_ctor (policy_lex_t *lx, const s_want_t *want, s_found_t *found,
        s_inner_t *inner)
{
    for (;;) {
        policy_tok_t tok, value;
        policy_lex_next (lx, &tok);
        if (policy_tok_is_op (&tok, '}'))
            return 0; /* empty, or after a trailing separator */
        if (tok.type == POLICY_T_EOF)
            return -1;
        //  Keyed "name = v", "['name'] = v", "[expr] = v", or positional.
        int keyed = 0;
        const char *key = NULL; /* NULL for a key that cannot be read */
        size_t keylen = 0;
        if (tok.type == POLICY_T_NAME && !policy_tok_is_keyword (&tok)) {
            policy_lex_t peek = *lx;
            policy_tok_t after;
            policy_lex_next (&peek, &after);
            if (policy_tok_is_op (&after, POLICY_OP_ASSIGN)) {
                keyed = 1;
                key = tok.text;
                keylen = tok.len;
                *lx = peek;
            }
        } else if (policy_tok_is_op (&tok, '[')) {
            policy_lex_t peek = *lx;
            policy_tok_t a, b, c;
            policy_lex_next (&peek, &a);
            policy_lex_next (&peek, &b);
            policy_lex_next (&peek, &c);
            keyed = 1;
            if (a.type == POLICY_T_STRING && policy_tok_is_op (&b, ']')
                && policy_tok_is_op (&c, POLICY_OP_ASSIGN)) {
                //  Escapes would need decoding: such a key is not read.
                if (a.quoted && !memchr (a.text, '\\', a.len)) {
                    key = a.text;
                    keylen = a.len;
                }
                *lx = peek;
            } else {
                //  "[expr] =": up to the matching ']', then '='.
                long depth = 1;
                policy_tok_t t;
                while (depth > 0) {
                    policy_lex_next (lx, &t);
                    if (t.type == POLICY_T_EOF)
                        return -1;
                    depth += policy_tok_nesting (&t);
                }
                if (!policy_tok_is_op (&t, ']'))
                    return -1;
                policy_lex_next (lx, &t);
                if (!policy_tok_is_op (&t, POLICY_OP_ASSIGN))
                    return -1;
            }
        }
        if (keyed) {
            if (key && want->key && keylen == want->keylen
                && memcmp (key, want->key, keylen) == 0)
                found->line = tok.line;
            policy_lex_next (lx, &value);
            if (key && inner && keylen == inner->keylen
                && memcmp (key, inner->key, keylen) == 0) {
                memset (&inner->found, 0, sizeof (inner->found));
                inner->ok = 0;
                if (policy_tok_is_op (&value, '{')) {
                    s_found_t in = { 0, 0 };
                    if (s_ctor (lx, &inner->want, &in, NULL))
                        return -1;
                    policy_lex_next (lx, &value);
                    if (policy_tok_is_op (&value, ',')
                        || policy_tok_is_op (&value, ';')
                        || policy_tok_is_op (&value, '}')) {
                        inner->found = in;
                        inner->ok = 1;
                    }
                }
            }
        } else {
            value = tok;
            if (found->npos < (size_t) -1)
                found->npos++;
            if (want->index && found->npos == want->index)
                found->line = tok.line;
        }
        int more = policy_lex_skip_element (lx, &value);
        if (more < 0)
            return -1;
        if (more == 0)
            return 0;
    }
}

/*  app_manifest_line with lengths for the keys (which may hold NULs). */
static int
s_line (const char *src, size_t len, const char *key, size_t keylen,
        const char *sub, size_t sublen, size_t index, size_t *npos_p)
{
    if (npos_p)
        *npos_p = 0;
    if (!src || (!sub && index == 0))
        return 0;
    policy_lex_t lx = { src, len, 0, 1 };
    policy_tok_t tok;
    //  The chunk's own "return": the first one outside every block and
    //  bracket (it must be the chunk's last statement).
    long depth = 0;
    for (policy_lex_next (&lx, &tok); tok.type != POLICY_T_EOF;
         policy_lex_next (&lx, &tok)) {
        if (depth == 0 && policy_tok_is_name (&tok, "return"))
            break;
        depth += policy_tok_nesting (&tok);
    }
    if (tok.type == POLICY_T_EOF)
        return 0;
    policy_lex_next (&lx, &tok);
    if (!policy_tok_is_op (&tok, '{'))
        return 0;
    s_want_t want = { sub, sub ? sublen : 0, sub ? 0 : index };
    s_want_t none = { NULL, 0, 0 };
    s_inner_t inner = { key, keylen, want, { 0, 0 }, 0 };
    s_found_t top = { 0, 0 };
    if (s_ctor (&lx, key ? &none : &want, &top, key ? &inner : NULL))
        return 0;
    //  "return { ... }" must end the chunk (not "return {...} .. x").
    policy_lex_next (&lx, &tok);
    if (policy_tok_is_op (&tok, ';'))
        policy_lex_next (&lx, &tok);
    if (tok.type != POLICY_T_EOF || lx.pos < lx.len)
        return 0;
    if (key && !inner.ok)
        return 0;
    const s_found_t *found = key ? &inner.found : &top;
    if (npos_p)
        *npos_p = found->npos;
    return found->line;
}

int
app_manifest_line (const char *src, size_t len, const char *key,
                   const char *sub, size_t index, size_t *npos_p)
{
    return s_line (src, len, key, key ? strlen (key) : 0, sub,
                   sub ? strlen (sub) : 0, index, npos_p);
}

/*  ---- messages -------------------------------------------------------- */

typedef struct {
    const char *file; /* names the text in messages */
    const char *src;  /* the text, for the line finder */
    size_t len;
    char *err;
    size_t errlen;
} s_ctx_t;

/*  Where a problem is: a top-level field, a field of its table, or an
    element of its list (count: the list's length as Lua saw it). */
typedef struct {
    const char *key; /* NULL: the manifest as a whole */
    size_t keylen;
    const char *sub;
    size_t sublen;
    size_t index;
    size_t count;
} s_where_t;

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

static int s_fail (const s_ctx_t *ctx, int rc, const s_where_t *w,
                   const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

/*  Writes "FILE[:LINE]: [FIELD: ]problem" into the context's err and
    returns rc. The line is the element's, else the field's, when the
    source tells. */
static int
s_fail (const s_ctx_t *ctx, int rc, const s_where_t *w, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);

    int line = 0;
    if (w && w->key && w->index) {
        size_t npos = 0;
        line = s_line (ctx->src, ctx->len, w->key, w->keylen, NULL, 0, w->index,
                       &npos);
        if (npos != w->count)
            line = 0; /* an element expanded: the scan cannot tell */
    } else if (w && w->key && w->sub)
        line = s_line (ctx->src, ctx->len, w->key, w->keylen, w->sub, w->sublen,
                       0, NULL);
    if (!line && w && w->key)
        line = s_line (ctx->src, ctx->len, NULL, 0, w->key, w->keylen, 0, NULL);

    char pos[32] = "";
    if (line > 0)
        snprintf (pos, sizeof pos, ":%d", line);
    if (!w || !w->key) {
        aaax_seterr (ctx->err, ctx->errlen, "%s%s: %s", ctx->file, pos, msg);
        return rc;
    }
    char key[72], sub[72], label[192];
    s_quote (w->key, w->keylen, key);
    if (w->sub)
        snprintf (label, sizeof label, "%s.%s", key,
                  s_quote (w->sub, w->sublen, sub));
    else if (w->index)
        snprintf (label, sizeof label, "%s[%zu]", key, w->index);
    else
        snprintf (label, sizeof label, "%s", key);
    aaax_seterr (ctx->err, ctx->errlen, "%s%s: %s: %s", ctx->file, pos, label,
                 msg);
    return rc;
}

static int
s_nomem (const s_ctx_t *ctx)
{
    aaax_seterr (ctx->err, ctx->errlen, "%s: out of memory", ctx->file);
    return AAAX_ENOMEM;
}

/*  ---- reading the manifest's table ------------------------------------ */

enum { F_NAME, F_VERSION, F_PERMISSIONS, F_CHANNELS, F_DEPENDS, F_LIMITS, F_N };
static const char *const s_fields[F_N] = { "name",     "version", "permissions",
                                           "channels", "depends", "limits" };

enum { L_MEMORY, L_INSTRUCTIONS, L_FILES, L_KV, L_N };
static const char *const s_limits[L_N] = { "memory_kb", "instructions",
                                           "files_kb", "kv_kb" };
static const uint64_t s_limit_lo[L_N] = { 64, 1000, 0, 0 };
static const uint64_t s_limit_hi[L_N] = { 1048576, 10000000000ull, 16777216,
                                          16777216 };

/*  Index of key among names[0..n), or n. */
static int
s_lookup (const char *const *names, int n, const char *key, size_t len)
{
    int i = 0;
    while (i < n
           && !(strlen (names[i]) == len && memcmp (names[i], key, len) == 0))
        i++;
    return i;
}

/*  Byte-wise order of two Lua strings. */
static int
s_cmp (const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp (a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/*  Reads the string keys of the table at t among names[0..n) into the n
    stack slots from slots on (nil when absent). Of several unknown string
    keys the smallest is reported, of other keys the smallest type, so that
    messages do not depend on the hash order. table names the table in
    messages (NULL: the manifest itself), known lists the names for them.
    Returns 0 or AAAX_EINVAL. */
static int
s_read_keys (lua_State *L, int t, int slots, const char *const *names, int n,
             const s_ctx_t *ctx, const char *table, const char *known)
{
    const char *unknown = NULL;
    size_t unknown_len = 0;
    int bad_type = LUA_TNONE;
    lua_pushnil (L);
    while (lua_next (L, t)) {
        if (lua_type (L, -2) != LUA_TSTRING) {
            int type = lua_type (L, -2);
            if (bad_type == LUA_TNONE || type < bad_type)
                bad_type = type;
        } else {
            size_t len;
            const char *key = lua_tolstring (L, -2, &len);
            int f = s_lookup (names, n, key, len);
            if (f < n)
                lua_copy (L, -1, slots + f);
            else if (!unknown || s_cmp (key, len, unknown, unknown_len) < 0) {
                unknown = key;
                unknown_len = len;
            }
        }
        lua_pop (L, 1);
    }
    if (unknown) {
        s_where_t w = { 0 };
        if (table) {
            w.key = table;
            w.keylen = strlen (table);
            w.sub = unknown;
            w.sublen = unknown_len;
        } else {
            w.key = unknown;
            w.keylen = unknown_len;
        }
        return s_fail (ctx, AAAX_EINVAL, &w, "unknown %s (known: %s)",
                       table ? "limit" : "field", known);
    }
    if (bad_type != LUA_TNONE) {
        s_where_t w = { table, table ? strlen (table) : 0, NULL, 0, 0, 0 };
        return s_fail (ctx, AAAX_EINVAL, &w,
                       "%s must be named, as in %s = ... (found a %s key)",
                       table ? "limits" : "fields", names[0],
                       lua_typename (L, bad_type));
    }
    return 0;
}

/*  The string at idx, for field w: a string without NUL bytes. */
static int
s_get_string (lua_State *L, int idx, const s_ctx_t *ctx, const s_where_t *w,
              const char **s_p, size_t *len_p)
{
    if (lua_type (L, idx) != LUA_TSTRING)
        return s_fail (ctx, AAAX_EINVAL, w, "must be a string (got %s)",
                       lua_typename (L, lua_type (L, idx)));
    size_t len;
    const char *s = lua_tolstring (L, idx, &len);
    if (strlen (s) != len)
        return s_fail (ctx, AAAX_EINVAL, w, "contains a NUL byte");
    *s_p = s;
    *len_p = len;
    return 0;
}

#define S_NAME_RULE \
    "must be 1..128 characters of A-Z a-z 0-9 . _ - and not start with '.'"

/*  An element check: NULL when s is fine, else the problem (in why). */
typedef const char *(s_check_fn) (const char *s, size_t len, char *why,
                                  size_t whylen);

static const char *
s_check_permission (const char *s, size_t len, char *why, size_t whylen)
{
    char q[72];
    if (len > APP_MANIFEST_MAX_PERMISSION) {
        snprintf (why, whylen, "longer than %d bytes",
                  APP_MANIFEST_MAX_PERMISSION);
        return why;
    }
    const char *colon = (const char *) memchr (s, ':', len);
    if (!colon) {
        snprintf (why, whylen,
                  "\"%s\" must be ACTION:TARGET, as in \"chan.write:news\"",
                  s_quote (s, len, q));
        return why;
    }
    //  ACTION: words of a-z 0-9 _ * joined by single dots.
    size_t alen = (size_t) (colon - s);
    bool ok = alen > 0;
    for (size_t i = 0; ok && i < alen; i++) {
        char c = s[i];
        if (c == '.')
            ok = i > 0 && i + 1 < alen && s[i + 1] != '.';
        else
            ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
                 || c == '*';
    }
    if (!ok) {
        snprintf (why, whylen,
                  "action \"%s\" must be dotted lower-case words (a-z 0-9 "
                  "_ *), as in chan.write",
                  s_quote (s, alen, q));
        return why;
    }
    size_t tlen = len - alen - 1;
    if (tlen == 0) {
        snprintf (why, whylen, "\"%s\" has an empty target",
                  s_quote (s, len, q));
        return why;
    }
    for (size_t i = alen + 1; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 0x20 || c >= 0x7f) {
            snprintf (why, whylen,
                      "the target of \"%s\" must be printable ASCII "
                      "characters",
                      s_quote (s, len, q));
            return why;
        }
    }
    return NULL;
}

static const char *
s_check_name (const char *s, size_t len, char *why, size_t whylen)
{
    char q[72];
    if (broker_config_valid_name (s, len))
        return NULL;
    snprintf (why, whylen, "\"%s\" " S_NAME_RULE, s_quote (s, len, q));
    return why;
}

static void
s_free_list (char **list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        free (list[i]);
    free (list);
}

/*  Reads the list of strings at idx (nil: empty) for the top-level field,
    each checked by check, into a new array (*out, caller frees with
    s_free_list; NULL when empty). */
static int
s_read_list (lua_State *L, int idx, const s_ctx_t *ctx, const char *field,
             s_check_fn *check, char ***out, size_t *n_out)
{
    s_where_t w = { field, strlen (field), NULL, 0, 0, 0 };
    int type = lua_type (L, idx);
    if (type == LUA_TNIL)
        return 0;
    if (type != LUA_TTABLE)
        return s_fail (ctx, AAAX_EINVAL, &w,
                       "must be a list of strings (got %s)",
                       lua_typename (L, type));
    //  A sequence 1..n: integer keys from 1 only, no holes.
    size_t count = 0;
    lua_Integer max = 0;
    const char *bad_str = NULL; /* the smallest string key */
    size_t bad_len = 0;
    int bad_num = 0; /* a number key that is not 1, 2, ... */
    lua_Number bad_val = 0;
    int bad_type = LUA_TNONE; /* a key of another type */
    lua_pushnil (L);
    while (lua_next (L, idx)) {
        int ktype = lua_type (L, -2);
        if (lua_isinteger (L, -2) && lua_tointeger (L, -2) >= 1) {
            if (lua_tointeger (L, -2) > max)
                max = lua_tointeger (L, -2);
        } else if (ktype == LUA_TSTRING) {
            size_t len;
            const char *key = lua_tolstring (L, -2, &len);
            if (!bad_str || s_cmp (key, len, bad_str, bad_len) < 0) {
                bad_str = key;
                bad_len = len;
            }
        } else if (ktype == LUA_TNUMBER) {
            lua_Number v = lua_tonumber (L, -2);
            if (!bad_num || v < bad_val)
                bad_val = v;
            bad_num = 1;
        } else if (bad_type == LUA_TNONE || ktype < bad_type)
            bad_type = ktype;
        lua_pop (L, 1);
        if (++count > APP_MANIFEST_MAX_LIST) {
            lua_pop (L, 1);
            return s_fail (ctx, AAAX_ELIMIT, &w, "more than %d entries",
                           APP_MANIFEST_MAX_LIST);
        }
    }
    char q[72];
    if (bad_str) {
        s_where_t kw = { field, strlen (field), bad_str, bad_len, 0, 0 };
        return s_fail (ctx, AAAX_EINVAL, &kw,
                       "must be a list of strings, without keys (found key "
                       "\"%s\")",
                       s_quote (bad_str, bad_len, q));
    }
    if (bad_num)
        return s_fail (ctx, AAAX_EINVAL, &w,
                       "must be a list of strings numbered 1, 2, ... (found "
                       "key %.14g)",
                       (double) bad_val);
    if (bad_type != LUA_TNONE)
        return s_fail (ctx, AAAX_EINVAL, &w,
                       "must be a list of strings (found a %s key)",
                       lua_typename (L, bad_type));
    if ((lua_Unsigned) max != count) {
        //  count keys in 1..max with max > count: one of 1..count+1 is
        //  missing.
        size_t hole = 1;
        while (hole <= count) {
            int t = lua_rawgeti (L, idx, (lua_Integer) hole);
            lua_pop (L, 1);
            if (t == LUA_TNIL)
                break;
            hole++;
        }
        s_where_t hw = { field, strlen (field), NULL, 0, hole, (size_t) max };
        return s_fail (ctx, AAAX_EINVAL, &hw,
                       "is nil, but a list cannot have holes");
    }
    if (count == 0)
        return 0;
    char **list = (char **) calloc (count, sizeof (char *));
    if (!list)
        return s_nomem (ctx);
    int rc = 0;
    size_t n = 0;
    for (; n < count; n++) {
        s_where_t ew = { field, strlen (field), NULL, 0, n + 1, count };
        lua_rawgeti (L, idx, (lua_Integer) (n + 1));
        const char *s;
        size_t len;
        rc = s_get_string (L, -1, ctx, &ew, &s, &len);
        if (rc == 0) {
            char why[256];
            if (check (s, len, why, sizeof why))
                rc = s_fail (ctx, AAAX_EINVAL, &ew, "%s", why);
        }
        if (rc == 0 && !(list[n] = strdup (s)))
            rc = s_nomem (ctx);
        lua_pop (L, 1);
        if (rc)
            break;
    }
    if (rc) {
        s_free_list (list, n);
        return rc;
    }
    *out = list;
    *n_out = count;
    return 0;
}

/*  Reads the limits table at idx (nil: none set). */
static int
s_read_limits (lua_State *L, int idx, const s_ctx_t *ctx, app_limits_t *out)
{
    s_where_t w = { "limits", 6, NULL, 0, 0, 0 };
    int type = lua_type (L, idx);
    if (type == LUA_TNIL)
        return 0;
    if (type != LUA_TTABLE)
        return s_fail (ctx, AAAX_EINVAL, &w, "must be a table (got %s)",
                       lua_typename (L, type));
    int slots = lua_gettop (L) + 1;
    for (int i = 0; i < L_N; i++)
        lua_pushnil (L);
    int rc = s_read_keys (L, idx, slots, s_limits, L_N, ctx, "limits",
                          "memory_kb, instructions, files_kb, kv_kb");
    uint64_t values[L_N] = { 0 };
    for (int i = 0; rc == 0 && i < L_N; i++) {
        int v = slots + i;
        s_where_t lw = { "limits", 6, s_limits[i], strlen (s_limits[i]), 0, 0 };
        int vtype = lua_type (L, v);
        if (vtype == LUA_TNIL)
            continue;
        //  A whole number; a float such as 1e7 is accepted when exact.
        //  Checked before converting (1e300, inf and nan convert to none).
        lua_Integer x = 0;
        bool whole = false;
        if (lua_isinteger (L, v)) {
            x = lua_tointeger (L, v);
            whole = true;
        } else if (vtype == LUA_TNUMBER) {
            lua_Number d = lua_tonumber (L, v);
            if (d >= -1e18 && d <= 1e18 && d == floor (d)) {
                x = (lua_Integer) d;
                whole = true;
            }
        }
        if (!whole)
            rc = s_fail (ctx, AAAX_EINVAL, &lw,
                         "must be a whole number from %llu to %llu (got %s)",
                         (unsigned long long) s_limit_lo[i],
                         (unsigned long long) s_limit_hi[i],
                         vtype == LUA_TNUMBER ? "a fraction"
                                              : lua_typename (L, vtype));
        else if (x < 0 || (uint64_t) x < s_limit_lo[i]
                 || (uint64_t) x > s_limit_hi[i])
            rc = s_fail (ctx, AAAX_EINVAL, &lw,
                         "must be from %llu to %llu (got %lld)",
                         (unsigned long long) s_limit_lo[i],
                         (unsigned long long) s_limit_hi[i], (long long) x);
        else
            values[i] = (uint64_t) x;
    }
    lua_settop (L, slots - 1);
    if (rc)
        return rc;
    out->memory_kb = (uint32_t) values[L_MEMORY];
    out->instructions = values[L_INSTRUCTIONS];
    out->files_kb = (uint32_t) values[L_FILES];
    out->kv_kb = (uint32_t) values[L_KV];
    return 0;
}

/*  Reads and checks the manifest table the chunk returned (top of L's
    stack) into m (zeroed; on error the caller finis it). */
static int
s_read_manifest (lua_State *L, const s_ctx_t *ctx, app_manifest_t *m)
{
    int t = lua_gettop (L);
    if (lua_type (L, t) != LUA_TTABLE)
        return s_fail (ctx, AAAX_EINVAL, NULL,
                       "must return a table of fields, as in return { name "
                       "= \"app\", version = \"1.0.0\" } (got %s)",
                       lua_typename (L, lua_type (L, t)));
    if (!lua_checkstack (L, 2 * F_N + 16))
        return s_nomem (ctx);
    int slots = t + 1;
    for (int f = 0; f < F_N; f++)
        lua_pushnil (L);
    int rc = s_read_keys (L, t, slots, s_fields, F_N, ctx, NULL,
                          "name, version, permissions, channels, depends, "
                          "limits");
    if (rc)
        return rc;

    const char *s;
    size_t len;
    char q[72];
    s_where_t w = { "name", 4, NULL, 0, 0, 0 };
    if (lua_isnil (L, slots + F_NAME))
        return s_fail (ctx, AAAX_EINVAL, &w,
                       "missing (every app needs a name, its system id)");
    rc = s_get_string (L, slots + F_NAME, ctx, &w, &s, &len);
    if (rc)
        return rc;
    if (!broker_config_valid_name (s, len))
        return s_fail (ctx, AAAX_EINVAL, &w, "\"%s\" " S_NAME_RULE,
                       s_quote (s, len, q));
    if (strncmp (s, "kernel", 6) == 0)
        return s_fail (ctx, AAAX_EINVAL, &w,
                       "\"%s\" starts with \"kernel\", which is reserved for "
                       "the kernel's own systems",
                       s_quote (s, len, q));
    memcpy (m->name, s, len + 1);

    w = (s_where_t){ "version", 7, NULL, 0, 0, 0 };
    if (lua_isnil (L, slots + F_VERSION))
        return s_fail (ctx, AAAX_EINVAL, &w,
                       "missing (as in version = "
                       "\"1.0.0\")");
    rc = s_get_string (L, slots + F_VERSION, ctx, &w, &s, &len);
    if (rc)
        return rc;
    bool ok = len >= 1 && len < sizeof (m->version);
    for (size_t i = 0; ok && i < len; i++)
        ok = s[i] > 0x20 && s[i] < 0x7f;
    if (!ok)
        return s_fail (ctx, AAAX_EINVAL, &w,
                       "\"%s\" must be 1..%zu printable ASCII characters "
                       "without spaces",
                       s_quote (s, len, q), sizeof (m->version) - 1);
    memcpy (m->version, s, len + 1);

    rc = s_read_list (L, slots + F_PERMISSIONS, ctx, "permissions",
                      s_check_permission, &m->permissions, &m->npermissions);
    if (rc == 0)
        rc = s_read_list (L, slots + F_CHANNELS, ctx, "channels", s_check_name,
                          &m->channels, &m->nchannels);
    if (rc == 0)
        rc = s_read_list (L, slots + F_DEPENDS, ctx, "depends", s_check_name,
                          &m->depends, &m->ndepends);
    for (size_t i = 0; rc == 0 && i < m->ndepends; i++) {
        s_where_t dw = { "depends", 7, NULL, 0, i + 1, m->ndepends };
        const char *dep = m->depends[i];
        if (strcmp (dep, m->name) == 0)
            rc = s_fail (ctx, AAAX_EINVAL, &dw,
                         "an app cannot depend on itself (\"%s\")", dep);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (strcmp (m->depends[j], dep) == 0)
                rc = s_fail (ctx, AAAX_EINVAL, &dw,
                             "\"%s\" is listed twice (also element %zu)", dep,
                             j + 1);
    }
    if (rc == 0)
        rc = s_read_limits (L, slots + F_LIMITS, ctx, &m->limits);
    lua_settop (L, t);
    return rc;
}

/*  Parses src into m (zeroed by the caller) naming it file in messages. */
static int
s_parse (const char *src, size_t len, const char *file, app_manifest_t *m,
         char *err, size_t errlen)
{
    s_ctx_t ctx = { file, src, len, err, errlen };
    if (len > APP_MANIFEST_MAX_SIZE) {
        aaax_seterr (err, errlen, "%s: larger than %u bytes (%zu)", file,
                     APP_MANIFEST_MAX_SIZE, len);
        return AAAX_ELIMIT;
    }
    lua_State *L = hal_luadata_new ();
    if (!L)
        return s_nomem (&ctx);
    int rc = hal_luadata_run_string (L, src, len, file, err, errlen);
    if (rc == 0)
        rc = s_read_manifest (L, &ctx, m);
    hal_luadata_destroy (&L);
    return rc;
}

int
app_manifest_parse (const char *src, size_t len, const char *chunkname,
                    app_manifest_t *m, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!m || (!src && len > 0)) {
        aaax_seterr (err, errlen, "app_manifest_parse: invalid arguments");
        return AAAX_EINVAL;
    }
    memset (m, 0, sizeof (*m));
    int rc = s_parse (src ? src : "", len,
                      chunkname ? chunkname : "manifest.lua", m, err, errlen);
    if (rc)
        app_manifest_fini (m);
    return rc;
}

void
app_manifest_fini (app_manifest_t *m)
{
    if (!m)
        return;
    s_free_list (m->permissions, m->npermissions);
    s_free_list (m->channels, m->nchannels);
    s_free_list (m->depends, m->ndepends);
    memset (m, 0, sizeof (*m));
}

/*  ---- loading from a directory ---------------------------------------- */

/*  "dir/name" in a new string (dir without its trailing slashes), or
    NULL. */
static char *
s_join (const char *dir, size_t dirlen, const char *name)
{
    size_t namelen = strlen (name);
    char *path = (char *) malloc (dirlen + namelen + 2);
    if (!path)
        return NULL;
    memcpy (path, dir, dirlen);
    path[dirlen] = '/';
    memcpy (path + dirlen + 1, name, namelen + 1);
    return path;
}

int
app_manifest_load (const char *dir, app_manifest_t *m, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!m || !dir || !*dir) {
        if (m)
            memset (m, 0, sizeof (*m));
        aaax_seterr (err, errlen, "app_manifest_load: invalid arguments");
        return AAAX_EINVAL;
    }
    memset (m, 0, sizeof (*m));
    //  Messages name the directory as given, without trailing slashes.
    size_t dirlen = strlen (dir);
    while (dirlen > 1 && dir[dirlen - 1] == '/')
        dirlen--;
    if (dirlen == 1 && dir[0] == '/')
        dirlen = 0; /* "/" itself: paths become "/manifest.lua" */
    int shown = dirlen ? (int) (dirlen > INT_MAX ? INT_MAX : dirlen) : 1;

    int rc = 0;
    char *mpath = NULL, *mainpath = NULL, *text = NULL, *real = NULL;
    struct stat st;
    if (stat (dir, &st) != 0) {
        aaax_seterr (err, errlen, "%.*s: no such directory (%s)", shown, dir,
                     strerror (errno));
        return AAAX_ENOENT;
    }
    if (!S_ISDIR (st.st_mode)) {
        aaax_seterr (err, errlen, "%.*s: not a directory", shown, dir);
        return AAAX_ENOENT;
    }
    mpath = s_join (dir, dirlen, "manifest.lua");
    mainpath = s_join (dir, dirlen, "main.lua");
    if (!mpath || !mainpath) {
        aaax_seterr (err, errlen, "%.*s: out of memory", shown, dir);
        rc = AAAX_ENOMEM;
        goto done;
    }
    if (lstat (mpath, &st) != 0) {
        if (errno == ENOENT)
            aaax_seterr (err, errlen, "%.*s: no manifest.lua", shown, dir);
        else
            aaax_seterr (err, errlen, "%s: cannot read: %s", mpath,
                         strerror (errno));
        rc = AAAX_ENOENT;
        goto done;
    }
    if (!S_ISREG (st.st_mode)) {
        aaax_seterr (err, errlen,
                     "%s: not a regular file (an app directory holds plain "
                     "files only)",
                     mpath);
        rc = AAAX_EINVAL;
        goto done;
    }
    if (st.st_size > (off_t) APP_MANIFEST_MAX_SIZE) {
        aaax_seterr (err, errlen, "%s: larger than %u bytes (%lld)", mpath,
                     APP_MANIFEST_MAX_SIZE, (long long) st.st_size);
        rc = AAAX_ELIMIT;
        goto done;
    }
    size_t len = 0;
    rc = hal_luadata_read_file (mpath, &text, &len, err, errlen);
    if (rc)
        goto done;
    rc = s_parse (text, len, mpath, m, err, errlen);
    if (rc)
        goto done;

    if (lstat (mainpath, &st) != 0) {
        if (errno == ENOENT)
            aaax_seterr (err, errlen, "%.*s: no main.lua", shown, dir);
        else
            aaax_seterr (err, errlen, "%s: cannot read: %s", mainpath,
                         strerror (errno));
        rc = AAAX_ENOENT;
        goto done;
    }
    if (!S_ISREG (st.st_mode)) {
        aaax_seterr (err, errlen,
                     "%s: not a regular file (an app directory holds plain "
                     "files only)",
                     mainpath);
        rc = AAAX_EINVAL;
        goto done;
    }
    real = realpath (dir, NULL);
    if (!real) {
        aaax_seterr (err, errlen, "%.*s: cannot resolve: %s", shown, dir,
                     strerror (errno));
        rc = errno == ENOMEM ? AAAX_ENOMEM : AAAX_ENOENT;
        goto done;
    }
    if (strlen (real) >= sizeof (m->dir)) {
        aaax_seterr (err, errlen, "%.*s: path too long", shown, dir);
        rc = AAAX_ELIMIT;
        goto done;
    }
    strcpy (m->dir, real);
    rc = app_manifest_digest (dir, m->digest, err, errlen);

done:
    free (real);
    free (text);
    free (mainpath);
    free (mpath);
    if (rc)
        app_manifest_fini (m);
    return rc;
}

/*  ---- the digest ------------------------------------------------------ */

typedef struct {
    char *rel; /* relative path */
    dev_t dev;
    ino_t ino;
    off_t size;
} s_file_t;

typedef struct {
    const char *dir; /* for messages */
    s_file_t *files;
    size_t n, cap;
    uint64_t bytes;
    char *err;
    size_t errlen;
} s_walk_t;

static int
s_file_cmp (const void *a, const void *b)
{
    return strcmp (((const s_file_t *) a)->rel, ((const s_file_t *) b)->rel);
}

/*  Walks the directory open at fd (the walk takes it) whose relative path
    is prefix ("" at the top), depth levels below the app's directory,
    recording its regular files. */
static int
s_walk (s_walk_t *w, int fd, const char *prefix, int depth)
{
    DIR *d = fdopendir (fd);
    if (!d) {
        aaax_seterr (w->err, w->errlen, "%s/%s: cannot read: %s", w->dir,
                     prefix, strerror (errno));
        close (fd);
        return AAAX_EIO;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir (d);
        if (!e) {
            if (errno) {
                aaax_seterr (w->err, w->errlen, "%s/%s: cannot read: %s",
                             w->dir, prefix, strerror (errno));
                rc = AAAX_EIO;
            }
            break;
        }
        if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
            continue;
        size_t plen = strlen (prefix), nlen = strlen (e->d_name);
        char *rel = (char *) malloc (plen + nlen + 2);
        if (!rel) {
            aaax_seterr (w->err, w->errlen, "%s: out of memory", w->dir);
            rc = AAAX_ENOMEM;
            break;
        }
        if (plen) {
            memcpy (rel, prefix, plen);
            rel[plen] = '/';
            memcpy (rel + plen + 1, e->d_name, nlen + 1);
        } else
            memcpy (rel, e->d_name, nlen + 1);
        struct stat st;
        if (fstatat (dirfd (d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            aaax_seterr (w->err, w->errlen, "%s/%s: cannot stat: %s", w->dir,
                         rel, strerror (errno));
            rc = AAAX_EIO;
        } else if (S_ISLNK (st.st_mode)) {
            aaax_seterr (w->err, w->errlen,
                         "%s/%s: is a symbolic link (an app directory holds "
                         "plain files only)",
                         w->dir, rel);
            rc = AAAX_EINVAL;
        } else if (S_ISDIR (st.st_mode)) {
            if (depth + 1 > APP_MANIFEST_DIGEST_DEPTH) {
                aaax_seterr (w->err, w->errlen,
                             "%s/%s: directories nested deeper than %d levels",
                             w->dir, rel, APP_MANIFEST_DIGEST_DEPTH);
                rc = AAAX_ELIMIT;
            } else {
                int sub =
                    openat (dirfd (d), e->d_name,
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) {
                    aaax_seterr (w->err, w->errlen, "%s/%s: cannot open: %s",
                                 w->dir, rel, strerror (errno));
                    rc = AAAX_EIO;
                } else
                    rc = s_walk (w, sub, rel, depth + 1);
            }
        } else if (S_ISREG (st.st_mode)) {
            if (w->n >= APP_MANIFEST_DIGEST_FILES) {
                aaax_seterr (w->err, w->errlen, "%s: more than %d files",
                             w->dir, APP_MANIFEST_DIGEST_FILES);
                rc = AAAX_ELIMIT;
            } else if ((uint64_t) st.st_size
                       > APP_MANIFEST_DIGEST_BYTES - w->bytes) {
                aaax_seterr (w->err, w->errlen,
                             "%s: more than %u bytes of files", w->dir,
                             APP_MANIFEST_DIGEST_BYTES);
                rc = AAAX_ELIMIT;
            } else {
                if (w->n == w->cap) {
                    size_t cap = w->cap ? w->cap * 2 : 32;
                    s_file_t *files = (s_file_t *) realloc (
                        w->files, cap * sizeof (s_file_t));
                    if (!files) {
                        aaax_seterr (w->err, w->errlen, "%s: out of memory",
                                     w->dir);
                        free (rel);
                        rc = AAAX_ENOMEM;
                        break;
                    }
                    w->files = files;
                    w->cap = cap;
                }
                w->bytes += (uint64_t) st.st_size;
                w->files[w->n].rel = rel;
                w->files[w->n].dev = st.st_dev;
                w->files[w->n].ino = st.st_ino;
                w->files[w->n].size = st.st_size;
                w->n++;
                rel = NULL;
            }
        } else {
            aaax_seterr (w->err, w->errlen,
                         "%s/%s: not a regular file (an app directory holds "
                         "plain files only)",
                         w->dir, rel);
            rc = AAAX_EINVAL;
        }
        free (rel);
        if (rc)
            break;
    }
    closedir (d);
    return rc;
}

/*  Hashes one file of the walk (opened again below root, which must still
    be the file the walk saw) into st. */
static int
s_hash_file (const s_walk_t *w, int root, const s_file_t *f,
             crypto_generichash_state *st, unsigned char *buf, size_t buflen)
{
    int fd = openat (root, f->rel,
                     O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        aaax_seterr (w->err, w->errlen, "%s/%s: cannot open: %s", w->dir,
                     f->rel, strerror (errno));
        return errno == ELOOP ? AAAX_EINVAL : AAAX_EIO;
    }
    struct stat now;
    int rc = 0;
    if (fstat (fd, &now) != 0 || !S_ISREG (now.st_mode) || now.st_dev != f->dev
        || now.st_ino != f->ino || now.st_size != f->size)
        rc = AAAX_EIO;
    unsigned char le[8];
    uint64_t size = (uint64_t) f->size;
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char) (size >> (8 * i));
    if (rc == 0) {
        crypto_generichash_update (st, (const unsigned char *) f->rel,
                                   strlen (f->rel) + 1);
        crypto_generichash_update (st, le, sizeof le);
    }
    uint64_t left = size;
    while (rc == 0) {
        size_t want = left < buflen ? (size_t) left : buflen;
        if (want == 0)
            want = 1; /* one byte more than the size: did it grow? */
        ssize_t got = read (fd, buf, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            aaax_seterr (w->err, w->errlen, "%s/%s: cannot read: %s", w->dir,
                         f->rel, strerror (errno));
            close (fd);
            return AAAX_EIO;
        }
        if (left == 0) {
            if (got > 0)
                rc = AAAX_EIO; /* grew */
            break;
        }
        if (got == 0) {
            rc = AAAX_EIO; /* shrank */
            break;
        }
        crypto_generichash_update (st, buf, (unsigned long long) got);
        left -= (uint64_t) got;
    }
    close (fd);
    if (rc)
        aaax_seterr (w->err, w->errlen, "%s/%s: changed while being read",
                     w->dir, f->rel);
    return rc;
}

int
app_manifest_digest (const char *dir, char out[65], char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!dir || !out) {
        aaax_seterr (err, errlen, "app_manifest_digest: invalid arguments");
        return AAAX_EINVAL;
    }
    if (sodium_init () < 0) {
        aaax_seterr (err, errlen, "%s: libsodium cannot start", dir);
        return AAAX_EINTERNAL;
    }
    int root = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        aaax_seterr (err, errlen, "%s: no such directory (%s)", dir,
                     strerror (errno));
        return AAAX_ENOENT;
    }
    //  Messages name "dir/rel" with dir's trailing slashes dropped.
    size_t dirlen = strlen (dir);
    while (dirlen > 1 && dir[dirlen - 1] == '/')
        dirlen--;
    char *shown = strndup (dir, dirlen);
    s_walk_t w = { shown, NULL, 0, 0, 0, err, errlen };
    int rc = 0;
    int fd = shown ? dup (root) : -1;
    if (!shown) {
        aaax_seterr (err, errlen, "%s: out of memory", dir);
        rc = AAAX_ENOMEM;
    } else if (fd < 0) {
        aaax_seterr (err, errlen, "%s: cannot open: %s", dir, strerror (errno));
        rc = AAAX_EIO;
    } else
        rc = s_walk (&w, fd, "", 0);

    unsigned char *buf = NULL;
    const size_t buflen = 65536;
    if (rc == 0 && !(buf = (unsigned char *) malloc (buflen))) {
        aaax_seterr (err, errlen, "%s: out of memory", dir);
        rc = AAAX_ENOMEM;
    }
    if (rc == 0) {
        if (w.n > 1)
            qsort (w.files, w.n, sizeof (s_file_t), s_file_cmp);
        crypto_generichash_state st;
        crypto_generichash_init (&st, NULL, 0, 32);
        for (size_t i = 0; rc == 0 && i < w.n; i++)
            rc = s_hash_file (&w, root, &w.files[i], &st, buf, buflen);
        unsigned char hash[32];
        crypto_generichash_final (&st, hash, sizeof hash);
        if (rc == 0)
            sodium_bin2hex (out, 65, hash, sizeof hash);
    }
    free (buf);
    for (size_t i = 0; i < w.n; i++)
        free (w.files[i].rel);
    free (w.files);
    free (shown);
    close (root);
    return rc;
}

/*  ---- dependency order ------------------------------------------------ */

typedef struct {
    const char *name;
    size_t index;
} s_named_t;

static int
s_named_cmp (const void *a, const void *b)
{
    const s_named_t *x = (const s_named_t *) a, *y = (const s_named_t *) b;
    int c = strcmp (x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static int
s_str_cmp (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/*  Index among ms of the app called name (byname sorted, n entries), or
    (size_t) -1. */
static size_t
s_find (const s_named_t *byname, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp (byname[mid].name, name);
        if (c == 0)
            return byname[mid].index;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t) -1;
}

/*  A min-heap of indexes: the ready app given first goes first. */
static void
s_heap_push (size_t *heap, size_t *n, size_t v)
{
    size_t i = (*n)++;
    while (i > 0 && heap[(i - 1) / 2] > v) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = v;
}

static size_t
s_heap_pop (size_t *heap, size_t *n)
{
    size_t top = heap[0], v = heap[--(*n)], i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap[c + 1] < heap[c])
            c++;
        if (heap[c] >= v)
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (*n)
        heap[i] = v;
    return top;
}

/*  Names a manifest in messages: its directory, else its position. */
static const char *
s_origin (const app_manifest_t *m, size_t i, char *buf, size_t len)
{
    if (m->dir[0])
        return m->dir;
    snprintf (buf, len, "manifest %zu", i + 1);
    return buf;
}

/*  After the order stopped with apps left (placed[i] false): every such
    app waits on another such app; follows the first one each depends on
    from the first left until an app repeats, and reports that cycle,
    starting from its app given first. */
static int
s_cycle (app_manifest_t *const *ms, size_t n, const size_t *dep,
         const size_t *start, const bool *placed, char *err, size_t errlen)
{
    size_t *path = (size_t *) malloc (n * sizeof (size_t));
    size_t *seen = (size_t *) malloc (n * sizeof (size_t));
    if (!path || !seen) {
        free (path);
        free (seen);
        aaax_seterr (err, errlen, "dependency order: out of memory");
        return AAAX_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        seen[i] = (size_t) -1;
    size_t cur = 0;
    while (placed[cur])
        cur++;
    size_t len = 0;
    while (seen[cur] == (size_t) -1) {
        seen[cur] = len;
        path[len++] = cur;
        size_t next = (size_t) -1;
        for (size_t e = start[cur]; e < start[cur + 1]; e++)
            if (dep[e] != (size_t) -1 && !placed[dep[e]]) {
                next = dep[e];
                break;
            }
        if (next == (size_t) -1)
            break; /* cannot happen: cur would have been placed */
        cur = next;
    }
    size_t first = seen[cur], k = len - first;
    size_t low = first; /* the cycle's app given first */
    for (size_t i = first; i < len; i++)
        if (path[i] < path[low])
            low = i;
    size_t need = 32;
    for (size_t i = first; i < len; i++)
        need += strlen (ms[path[i]]->name) + 4;
    need += strlen (ms[path[low]]->name);
    char *msg = (char *) malloc (need);
    if (msg) {
        size_t pos = (size_t) snprintf (msg, need, "dependency cycle: ");
        for (size_t j = 0; j <= k; j++) {
            size_t at = path[first + (low - first + j) % k];
            pos += (size_t) snprintf (msg + pos, need - pos, "%s%s",
                                      j ? " -> " : "", ms[at]->name);
        }
        aaax_seterr (err, errlen, "%s", msg);
        free (msg);
    } else
        aaax_seterr (err, errlen,
                     "dependency cycle (out of memory to name "
                     "it)");
    free (path);
    free (seen);
    return msg ? AAAX_EINVAL : AAAX_ENOMEM;
}

int
app_manifest_order (app_manifest_t *const *ms, size_t n,
                    const char *const *loaded, size_t nloaded, size_t *order,
                    char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if ((n && (!ms || !order)) || (nloaded && !loaded)) {
        aaax_seterr (err, errlen, "app_manifest_order: invalid arguments");
        return AAAX_EINVAL;
    }
    size_t edges = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ms[i] || (ms[i]->ndepends && !ms[i]->depends)) {
            aaax_seterr (err, errlen, "app_manifest_order: invalid arguments");
            return AAAX_EINVAL;
        }
        edges += ms[i]->ndepends;
    }
    for (size_t i = 0; i < nloaded; i++)
        if (!loaded[i]) {
            aaax_seterr (err, errlen, "app_manifest_order: invalid arguments");
            return AAAX_EINVAL;
        }
    if (n == 0)
        return 0;

    int rc = 0;
    s_named_t *byname = (s_named_t *) malloc (n * sizeof (s_named_t));
    const char **have =
        (const char **) malloc ((nloaded ? nloaded : 1) * sizeof (char *));
    size_t *start = (size_t *) calloc (n + 1, sizeof (size_t));
    size_t *dep = (size_t *) malloc ((edges ? edges : 1) * sizeof (size_t));
    size_t *indeg = (size_t *) calloc (n, sizeof (size_t));
    size_t *rstart = (size_t *) calloc (n + 1, sizeof (size_t));
    size_t *rlist = (size_t *) malloc ((edges ? edges : 1) * sizeof (size_t));
    size_t *heap = (size_t *) malloc (n * sizeof (size_t));
    size_t *out = (size_t *) malloc (n * sizeof (size_t));
    bool *placed = (bool *) calloc (n, sizeof (bool));
    if (!byname || !have || !start || !dep || !indeg || !rstart || !rlist
        || !heap || !out || !placed) {
        aaax_seterr (err, errlen, "dependency order: out of memory");
        rc = AAAX_ENOMEM;
        goto done;
    }
    //  Names given twice.
    for (size_t i = 0; i < n; i++)
        byname[i] = (s_named_t){ ms[i]->name, i };
    qsort (byname, n, sizeof (s_named_t), s_named_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp (byname[i - 1].name, byname[i].name) == 0) {
            char a[32], b[32];
            size_t x = byname[i - 1].index, y = byname[i].index;
            aaax_seterr (err, errlen, "app '%s' is given twice (%s, %s)",
                         byname[i].name, s_origin (ms[x], x, a, sizeof a),
                         s_origin (ms[y], y, b, sizeof b));
            rc = AAAX_EINVAL;
            goto done;
        }
    if (nloaded) {
        memcpy (have, loaded, nloaded * sizeof (char *));
        qsort (have, nloaded, sizeof (char *), s_str_cmp);
    }
    //  Each dependency: an index among ms, or (size_t) -1 when loaded.
    size_t e = 0;
    for (size_t i = 0; i < n; i++) {
        start[i] = e;
        for (size_t j = 0; j < ms[i]->ndepends; j++) {
            const char *name = ms[i]->depends[j];
            size_t at = name ? s_find (byname, n, name) : (size_t) -1;
            if (at == (size_t) -1
                && !(name && nloaded
                     && bsearch (&name, have, nloaded, sizeof (char *),
                                 s_str_cmp))) {
                aaax_seterr (err, errlen,
                             "app '%s' depends on '%s', which is not loaded",
                             ms[i]->name, name ? name : "(null)");
                rc = AAAX_EINVAL;
                goto done;
            }
            dep[e++] = at;
            if (at != (size_t) -1) {
                indeg[i]++;
                rstart[at + 1]++;
            }
        }
    }
    start[n] = e;
    //  Who depends on each app (rlist[rstart[a] .. rstart[a + 1])).
    for (size_t i = 0; i < n; i++)
        rstart[i + 1] += rstart[i];
    {
        size_t *fill = heap; /* free until the heap is used */
        memcpy (fill, rstart, n * sizeof (size_t));
        for (size_t i = 0; i < n; i++)
            for (size_t k = start[i]; k < start[i + 1]; k++)
                if (dep[k] != (size_t) -1)
                    rlist[fill[dep[k]]++] = i;
    }
    //  Kahn's algorithm taking the ready app given first.
    size_t nheap = 0, nout = 0;
    for (size_t i = 0; i < n; i++)
        if (indeg[i] == 0)
            s_heap_push (heap, &nheap, i);
    while (nheap) {
        size_t a = s_heap_pop (heap, &nheap);
        placed[a] = true;
        out[nout++] = a;
        for (size_t k = rstart[a]; k < rstart[a + 1]; k++)
            if (--indeg[rlist[k]] == 0)
                s_heap_push (heap, &nheap, rlist[k]);
    }
    if (nout < n) {
        rc = s_cycle (ms, n, dep, start, placed, err, errlen);
        goto done;
    }
    memcpy (order, out, n * sizeof (size_t));

done:
    free (placed);
    free (out);
    free (heap);
    free (rlist);
    free (rstart);
    free (indeg);
    free (dep);
    free (start);
    free (have);
    free (byname);
    return rc;
}
