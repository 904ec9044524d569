/*  cli_json.c — JSON text <-> msgpack for the aaax CLI (see cli_json.h).
    jansson parses and prints; this file only walks the two trees, bounded
    in depth, so that recursion here never goes deeper than
    CLI_JSON_MAX_DEPTH whatever the input. */

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <sodium.h>

#include "aaax.h"
#include "chan_mpk.h"
#include "cli_json.h"

static void s_err (char *err, size_t errlen, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_err (char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err, errlen, fmt, ap);
    va_end (ap);
}

/*  ---- JSON -> msgpack ------------------------------------------------- */

static int
s_pack (const json_t *j, msgpack_packer *pk, int depth, char *err,
        size_t errlen)
{
    switch (json_typeof (j)) {
    case JSON_OBJECT: {
        if (depth > CLI_JSON_MAX_DEPTH) {
            s_err (err, errlen, "JSON nests deeper than %d levels",
                   CLI_JSON_MAX_DEPTH);
            return AAAX_EINVAL;
        }
        size_t n = json_object_size (j);
        if (n > UINT32_MAX) {
            s_err (err, errlen, "JSON object too large");
            return AAAX_EINVAL;
        }
        msgpack_pack_map (pk, (uint32_t) n);
        /*  jansson's iterators take a non-const object; nothing is
            changed through it. */
        json_t *obj = (json_t *) j;
        for (void *it = json_object_iter (obj); it;
             it = json_object_iter_next (obj, it)) {
            chan_pack_str (pk, json_object_iter_key (it),
                           json_object_iter_key_len (it));
            int rc = s_pack (json_object_iter_value (it), pk, depth + 1, err,
                             errlen);
            if (rc)
                return rc;
        }
        return 0;
    }
    case JSON_ARRAY: {
        if (depth > CLI_JSON_MAX_DEPTH) {
            s_err (err, errlen, "JSON nests deeper than %d levels",
                   CLI_JSON_MAX_DEPTH);
            return AAAX_EINVAL;
        }
        size_t n = json_array_size (j);
        if (n > UINT32_MAX) {
            s_err (err, errlen, "JSON array too large");
            return AAAX_EINVAL;
        }
        msgpack_pack_array (pk, (uint32_t) n);
        for (size_t i = 0; i < n; i++) {
            int rc = s_pack (json_array_get (j, i), pk, depth + 1, err, errlen);
            if (rc)
                return rc;
        }
        return 0;
    }
    case JSON_STRING:
        chan_pack_str (pk, json_string_value (j), json_string_length (j));
        return 0;
    case JSON_INTEGER:
        msgpack_pack_int64 (pk, (int64_t) json_integer_value (j));
        return 0;
    case JSON_REAL: msgpack_pack_double (pk, json_real_value (j)); return 0;
    case JSON_TRUE: msgpack_pack_true (pk); return 0;
    case JSON_FALSE: msgpack_pack_false (pk); return 0;
    case JSON_NULL: msgpack_pack_nil (pk); return 0;
    }
    s_err (err, errlen, "unknown JSON type");
    return AAAX_EINTERNAL;
}

int
cli_json_to_msgpackn (const char *text, size_t len, chan_buf_t *out, char *err,
                      size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb (
        text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
        &jerr);
    if (!root) {
        if (json_error_code (&jerr) == json_error_out_of_memory) {
            s_err (err, errlen, "out of memory");
            return AAAX_ENOMEM;
        }
        s_err (err, errlen, "invalid JSON at line %d, column %d: %s", jerr.line,
               jerr.column, jerr.text);
        return AAAX_EINVAL;
    }
    chan_buf_t tmp;
    chan_buf_init (&tmp);
    msgpack_packer pk;
    chan_buf_packer (&tmp, &pk);
    int rc = s_pack (root, &pk, 1, err, errlen);
    json_decref (root);
    if (rc == 0 && tmp.oom) {
        s_err (err, errlen, "out of memory");
        rc = AAAX_ENOMEM;
    }
    if (rc == 0) {
        chan_buf_append (out, tmp.data, tmp.len);
        if (out->oom) {
            s_err (err, errlen, "out of memory");
            rc = AAAX_ENOMEM;
        }
    }
    chan_buf_fini (&tmp);
    return rc;
}

int
cli_json_to_msgpack (const char *text, chan_buf_t *out, char *err,
                     size_t errlen)
{
    return cli_json_to_msgpackn (text, strlen (text), out, err, errlen);
}

/*  ---- msgpack -> JSON ------------------------------------------------- */

/*  Most bytes of JSON text made for non-string map keys in one rendering.
    A key's text is escaped again in each enclosing key, so keys nested in
    keys would otherwise double the output at every level. */
#define S_KEY_BUDGET (1u << 20)

typedef struct {
    int precision;    /* digits the reals seen so far need to read back */
    size_t key_bytes; /* JSON text made for non-string keys so far */
    char *err;
    size_t errlen;
} s_ctx_t;

/*  Fewest significant digits (1..17) with which "%.*g" reads back to d. */
static int
s_digits (double d)
{
    char buf[40];
    for (int p = 1; p < 17; p++) {
        snprintf (buf, sizeof buf, "%.*g", p, d);
        if (strtod (buf, NULL) == d)
            return p;
    }
    return 17;
}

/*  Length of the valid UTF-8 sequence at p (as jansson checks it: no
    overlong forms, no surrogates, nothing beyond U+10FFFF), or 0. */
static size_t
s_utf8_seq (const uint8_t *p, size_t left)
{
    uint8_t c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else
        return 0;
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)
        || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
        return 0;
    return n;
}

/*  A JSON string from msgpack str bytes: invalid UTF-8 bytes become
    U+FFFD each (JSON text cannot carry them). */
static json_t *
s_string (const char *ptr, size_t len)
{
    const uint8_t *p = (const uint8_t *) ptr;
    size_t bad = 0;
    for (size_t i = 0; i < len;) {
        size_t n = s_utf8_seq (p + i, len - i);
        if (n == 0) {
            bad++;
            n = 1;
        }
        i += n;
    }
    if (bad == 0)
        return json_stringn (len ? ptr : "", len);
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    uint8_t *fixed = (uint8_t *) malloc (len * 3 + 1);
    if (!fixed)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = s_utf8_seq (p + i, len - i);
        if (n == 0) {
            fixed[o++] = 0xEF;
            fixed[o++] = 0xBF;
            fixed[o++] = 0xBD;
            i++;
            continue;
        }
        memcpy (fixed + o, p + i, n);
        o += n;
        i += n;
    }
    json_t *s = json_stringn ((const char *) fixed, o);
    free (fixed);
    return s;
}

static json_t *
s_base64 (const char *ptr, size_t len)
{
    size_t b64len =
        sodium_base64_ENCODED_LEN (len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = (char *) malloc (b64len);
    if (!b64)
        return NULL;
    sodium_bin2base64 (b64, b64len, (const unsigned char *) ptr, len,
                       sodium_base64_VARIANT_ORIGINAL);
    json_t *s = json_string (b64);
    free (b64);
    return s;
}

/*  {"$float": "NaN" | "Infinity" | "-Infinity"}: JSON has no such reals. */
static json_t *
s_nonfinite (double d)
{
    const char *word = isnan (d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity";
    json_t *o = json_object ();
    if (o && json_object_set_new (o, "$float", json_string (word)) != 0) {
        json_decref (o);
        return NULL;
    }
    return o;
}

static json_t *s_to_json (const msgpack_object *o, int depth, s_ctx_t *ctx);

/*  The key of a JSON object for a msgpack map key: strings as they are,
    anything else as its own compact JSON text. Caller frees *key. */
static int
s_key (const msgpack_object *k, int depth, s_ctx_t *ctx, char **key,
       size_t *keylen)
{
    json_t *j = k->type == MSGPACK_OBJECT_STR
                    ? s_string (k->via.str.ptr, k->via.str.size)
                    : s_to_json (k, depth, ctx);
    if (!j) {
        if (ctx->err && ctx->err[0] == 0)
            s_err (ctx->err, ctx->errlen, "out of memory");
        return AAAX_EINVAL;
    }
    if (json_is_string (j)) {
        size_t len = json_string_length (j);
        *key = (char *) malloc (len + 1);
        if (*key) {
            memcpy (*key, json_string_value (j), len + 1);
            *keylen = len;
        }
    } else {
        *key = json_dumps (j, JSON_COMPACT | JSON_ENCODE_ANY
                                  | JSON_REAL_PRECISION (17));
        *keylen = *key ? strlen (*key) : 0;
        ctx->key_bytes += *keylen;
    }
    json_decref (j);
    if (!*key) {
        s_err (ctx->err, ctx->errlen, "out of memory");
        return AAAX_ENOMEM;
    }
    if (ctx->key_bytes > S_KEY_BUDGET) {
        free (*key);
        *key = NULL;
        s_err (ctx->err, ctx->errlen,
               "non-string map keys make more than "
               "%u bytes of JSON text",
               S_KEY_BUDGET);
        return AAAX_ETOOBIG;
    }
    return 0;
}

static json_t *
s_to_json (const msgpack_object *o, int depth, s_ctx_t *ctx)
{
    json_t *j = NULL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: j = json_null (); break;
    case MSGPACK_OBJECT_BOOLEAN: j = json_boolean (o->via.boolean); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        /*  Beyond INT64_MAX JSON integers (jansson's json_int_t) cannot
            follow: such a value becomes the nearest real. */
        if (o->via.u64 > (uint64_t) INT64_MAX) {
            double d = (double) o->via.u64;
            int p = s_digits (d);
            if (p > ctx->precision)
                ctx->precision = p;
            j = json_real (d);
        } else
            j = json_integer ((json_int_t) o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        j = json_integer ((json_int_t) o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite (o->via.f64))
            j = s_nonfinite (o->via.f64);
        else {
            int p = s_digits (o->via.f64);
            if (p > ctx->precision)
                ctx->precision = p;
            j = json_real (o->via.f64);
        }
        break;
    case MSGPACK_OBJECT_STR:
        j = s_string (o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN: {
        json_t *b64 = s_base64 (o->via.bin.ptr, o->via.bin.size);
        j = b64 ? json_object () : NULL;
        if (j && json_object_set_new (j, "$bin", b64) != 0) {
            json_decref (j);
            j = NULL;
        } else if (!j)
            json_decref (b64);
        break;
    }
    case MSGPACK_OBJECT_EXT: {
        json_t *b64 = s_base64 (o->via.ext.ptr, o->via.ext.size);
        j = b64 ? json_object () : NULL;
        if (!j) {
            json_decref (b64);
            break;
        }
        if (json_object_set_new (j, "$ext", json_integer (o->via.ext.type))
            != 0) {
            json_decref (b64);
            json_decref (j);
            j = NULL;
        } else if (json_object_set_new (j, "data", b64) != 0) {
            json_decref (j);
            j = NULL;
        }
        break;
    }
    case MSGPACK_OBJECT_ARRAY:
        if (depth > CLI_JSON_MAX_DEPTH) {
            s_err (ctx->err, ctx->errlen,
                   "msgpack nests deeper than %d "
                   "levels",
                   CLI_JSON_MAX_DEPTH);
            return NULL;
        }
        j = json_array ();
        for (uint32_t i = 0; j && i < o->via.array.size; i++) {
            json_t *v = s_to_json (&o->via.array.ptr[i], depth + 1, ctx);
            if (!v || json_array_append_new (j, v) != 0) {
                json_decref (j);
                return NULL;
            }
        }
        break;
    case MSGPACK_OBJECT_MAP:
        if (depth > CLI_JSON_MAX_DEPTH) {
            s_err (ctx->err, ctx->errlen,
                   "msgpack nests deeper than %d "
                   "levels",
                   CLI_JSON_MAX_DEPTH);
            return NULL;
        }
        j = json_object ();
        for (uint32_t i = 0; j && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            char *key = NULL;
            size_t keylen = 0;
            if (s_key (&kv->key, depth + 1, ctx, &key, &keylen) != 0) {
                json_decref (j);
                return NULL;
            }
            json_t *v = s_to_json (&kv->val, depth + 1, ctx);
            /*  A key seen twice: the later value wins, as in most JSON
                readers. */
            int rc = v ? json_object_setn_new (j, key, keylen, v) : -1;
            free (key);
            if (rc != 0) {
                json_decref (j);
                return NULL;
            }
        }
        break;
    }
    if (!j && ctx->err && ctx->err[0] == 0)
        s_err (ctx->err, ctx->errlen, "out of memory");
    return j;
}

char *
cli_msgpack_to_json (const msgpack_object *o, int flags, char *err,
                     size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    s_ctx_t ctx = { 1, 0, err, errlen };
    json_t *j = s_to_json (o, 1, &ctx);
    if (!j)
        return NULL;
    size_t dflags = JSON_ENCODE_ANY | JSON_REAL_PRECISION (ctx.precision);
    dflags |= (flags & CLI_JSON_PRETTY) ? JSON_INDENT (2) : JSON_COMPACT;
    char *text = json_dumps (j, dflags);
    json_decref (j);
    if (!text)
        s_err (err, errlen, "out of memory");
    return text;
}
