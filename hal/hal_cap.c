/*  hal_cap.c — signed capabilities: canonical encoding, signing,
    verification, and the section 7 map form (see hal_cap.h). */

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "aaax.h"
#include "hal_cap.h"

#define S_PREFIX "aaax-cap-v1"

/*  Bytewise order of two strings (shorter first on a common prefix). */
static int
s_cmp (const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp (a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

void
hal_cap_normalize (hal_cap_t *cap)
{
    size_t n = cap->nrights;
    if (n > HAL_CAP_MAX_RIGHTS)
        n = cap->nrights = HAL_CAP_MAX_RIGHTS;
    /*  Insertion sort: at most 16 entries. */
    for (size_t i = 1; i < n; i++) {
        const char *s = cap->rights[i];
        size_t len = cap->rightslen[i];
        size_t j = i;
        while (j > 0
               && s_cmp (cap->rights[j - 1], cap->rightslen[j - 1], s, len)
                      > 0) {
            cap->rights[j] = cap->rights[j - 1];
            cap->rightslen[j] = cap->rightslen[j - 1];
            j--;
        }
        cap->rights[j] = s;
        cap->rightslen[j] = len;
    }
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (out > 0
            && s_cmp (cap->rights[out - 1], cap->rightslen[out - 1],
                      cap->rights[i], cap->rightslen[i])
                   == 0)
            continue;
        cap->rights[out] = cap->rights[i];
        cap->rightslen[out] = cap->rightslen[i];
        out++;
    }
    cap->nrights = out;
}

static bool
s_field_ok (const char *s, size_t len)
{
    return s && len > 0 && len <= HAL_CAP_MAX_STR;
}

/*  True when every field the signature covers is present and bounded, and
    rights are sorted and unique. */
static bool
s_fields_ok (const hal_cap_t *cap)
{
    if (!s_field_ok (cap->id, cap->idlen)
        || !s_field_ok (cap->subject, cap->subjectlen)
        || !s_field_ok (cap->resource, cap->resourcelen)
        || !s_field_ok (cap->issuer, cap->issuerlen)
        || cap->nrights > HAL_CAP_MAX_RIGHTS)
        return false;
    for (size_t i = 0; i < cap->nrights; i++) {
        if (!s_field_ok (cap->rights[i], cap->rightslen[i]))
            return false;
        if (i > 0
            && s_cmp (cap->rights[i - 1], cap->rightslen[i - 1], cap->rights[i],
                      cap->rightslen[i])
                   >= 0)
            return false;
    }
    return true;
}

static int
s_pack_str (msgpack_packer *pk, const char *s, size_t len)
{
    int rc = msgpack_pack_str (pk, len);
    return rc | msgpack_pack_str_body (pk, s, len);
}

int
hal_cap_canonical (const hal_cap_t *cap, msgpack_sbuffer *sbuf)
{
    if (!s_fields_ok (cap))
        return AAAX_EINVAL;
    if (msgpack_sbuffer_write (sbuf, S_PREFIX, sizeof S_PREFIX) != 0)
        return AAAX_ENOMEM;
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    int rc = msgpack_pack_array (&pk, 6);
    rc |= s_pack_str (&pk, cap->id, cap->idlen);
    rc |= s_pack_str (&pk, cap->subject, cap->subjectlen);
    rc |= s_pack_str (&pk, cap->resource, cap->resourcelen);
    rc |= msgpack_pack_array (&pk, cap->nrights);
    for (size_t i = 0; i < cap->nrights; i++)
        rc |= s_pack_str (&pk, cap->rights[i], cap->rightslen[i]);
    rc |= msgpack_pack_uint64 (&pk, cap->expires);
    rc |= s_pack_str (&pk, cap->issuer, cap->issuerlen);
    /*  msgpack_sbuffer_write only fails on allocation. */
    return rc ? AAAX_ENOMEM : 0;
}

/*  The canonical bytes of cap into a fresh buffer (caller destroys). */
static int
s_canonical (const hal_cap_t *cap, msgpack_sbuffer *sbuf)
{
    msgpack_sbuffer_init (sbuf);
    int rc = hal_cap_canonical (cap, sbuf);
    if (rc)
        msgpack_sbuffer_destroy (sbuf);
    return rc;
}

int
hal_cap_sign (const hal_cap_t *cap, const hal_keys_t *keys,
              char sig_hex[HAL_CAP_SIG_HEX])
{
    const char *issuer = hal_keys_public_hex (keys);
    if (!cap->issuer || cap->issuerlen != strlen (issuer)
        || memcmp (cap->issuer, issuer, cap->issuerlen) != 0)
        return AAAX_EINVAL;
    msgpack_sbuffer sbuf;
    int rc = s_canonical (cap, &sbuf);
    if (rc)
        return rc == AAAX_ENOMEM ? rc : AAAX_EINVAL;
    uint8_t sig[HAL_KEYS_SIG_BYTES];
    hal_keys_sign (keys, sbuf.data, sbuf.size, sig);
    msgpack_sbuffer_destroy (&sbuf);
    sodium_bin2hex (sig_hex, HAL_CAP_SIG_HEX, sig, sizeof sig);
    return 0;
}

int
hal_cap_verify (const hal_cap_t *cap, const uint8_t pk[HAL_KEYS_PK_BYTES])
{
    if (!s_fields_ok (cap))
        return AAAX_EINVAL;
    /*  The issuer must be pk, spelt as the kernel spells it. */
    char pk_hex[2 * HAL_KEYS_PK_BYTES + 1];
    sodium_bin2hex (pk_hex, sizeof pk_hex, pk, HAL_KEYS_PK_BYTES);
    if (cap->issuerlen != 2 * HAL_KEYS_PK_BYTES
        || memcmp (cap->issuer, pk_hex, cap->issuerlen) != 0)
        return AAAX_EAUTH;
    if (!cap->sig || cap->siglen != 2 * HAL_KEYS_SIG_BYTES)
        return AAAX_EAUTH;
    for (size_t i = 0; i < cap->siglen; i++)
        if (!cap->sig[i] || !strchr ("0123456789abcdef", cap->sig[i]))
            return AAAX_EAUTH; /* one spelling only */
    uint8_t sig[HAL_KEYS_SIG_BYTES];
    size_t bin_len = 0;
    const char *end = NULL;
    if (sodium_hex2bin (sig, sizeof sig, cap->sig, cap->siglen, NULL, &bin_len,
                        &end)
            != 0
        || bin_len != sizeof sig || end != cap->sig + cap->siglen)
        return AAAX_EAUTH;
    msgpack_sbuffer sbuf;
    int rc = s_canonical (cap, &sbuf);
    if (rc)
        return rc == AAAX_ENOMEM ? rc : AAAX_EINVAL;
    rc = hal_keys_verify (pk, sbuf.data, sbuf.size, sig);
    msgpack_sbuffer_destroy (&sbuf);
    return rc ? AAAX_EAUTH : 0;
}

static void
s_pack_key (msgpack_packer *pk, const char *key)
{
    s_pack_str (pk, key, strlen (key));
}

void
hal_cap_pack (const hal_cap_t *cap, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 7);
    s_pack_key (pk, "id");
    s_pack_str (pk, cap->id ? cap->id : "", cap->id ? cap->idlen : 0);
    s_pack_key (pk, "subject");
    s_pack_str (pk, cap->subject ? cap->subject : "",
                cap->subject ? cap->subjectlen : 0);
    s_pack_key (pk, "resource");
    s_pack_str (pk, cap->resource ? cap->resource : "",
                cap->resource ? cap->resourcelen : 0);
    s_pack_key (pk, "rights");
    size_t n =
        cap->nrights > HAL_CAP_MAX_RIGHTS ? HAL_CAP_MAX_RIGHTS : cap->nrights;
    msgpack_pack_array (pk, n);
    for (size_t i = 0; i < n; i++)
        s_pack_str (pk, cap->rights[i], cap->rightslen[i]);
    s_pack_key (pk, "expires");
    msgpack_pack_uint64 (pk, cap->expires);
    s_pack_key (pk, "issuer");
    s_pack_str (pk, cap->issuer ? cap->issuer : "",
                cap->issuer ? cap->issuerlen : 0);
    s_pack_key (pk, "sig");
    if (cap->sig)
        s_pack_str (pk, cap->sig, cap->siglen);
    else
        msgpack_pack_nil (pk);
}

static bool
s_key_is (const msgpack_object *k, const char *name)
{
    size_t len = strlen (name);
    return k->via.str.size == len && memcmp (k->via.str.ptr, name, len) == 0;
}

/*  Reads a bounded string field; seen guards against duplicate keys. */
static int
s_get_str (const msgpack_object *v, const char *name, const char **s,
           size_t *len, bool *seen, char *err, size_t errlen)
{
    if (*seen) {
        aaax_seterr (err, errlen, "duplicate field \"%s\"", name);
        return AAAX_EINVAL;
    }
    *seen = true;
    if (v->type != MSGPACK_OBJECT_STR) {
        aaax_seterr (err, errlen, "\"%s\" is not a string", name);
        return AAAX_EINVAL;
    }
    if (v->via.str.size > HAL_CAP_MAX_STR) {
        aaax_seterr (err, errlen, "\"%s\" is longer than %d bytes", name,
                     HAL_CAP_MAX_STR);
        return AAAX_EINVAL;
    }
    *s = v->via.str.ptr;
    *len = v->via.str.size;
    return 0;
}

int
hal_cap_from_obj (const msgpack_object *obj, hal_cap_t *cap, char *err,
                  size_t errlen)
{
    memset (cap, 0, sizeof *cap);
    if (!obj || obj->type != MSGPACK_OBJECT_MAP) {
        aaax_seterr (err, errlen, "a capability is a map");
        return AAAX_EINVAL;
    }
    bool seen_id = false, seen_subject = false, seen_resource = false;
    bool seen_rights = false, seen_expires = false, seen_issuer = false;
    bool seen_sig = false;
    const msgpack_object_kv *kv = obj->via.map.ptr;
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        const msgpack_object *k = &kv[i].key, *v = &kv[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            continue; /* not ours */
        int rc = 0;
        if (s_key_is (k, "id"))
            rc = s_get_str (v, "id", &cap->id, &cap->idlen, &seen_id, err,
                            errlen);
        else if (s_key_is (k, "subject"))
            rc = s_get_str (v, "subject", &cap->subject, &cap->subjectlen,
                            &seen_subject, err, errlen);
        else if (s_key_is (k, "resource"))
            rc = s_get_str (v, "resource", &cap->resource, &cap->resourcelen,
                            &seen_resource, err, errlen);
        else if (s_key_is (k, "issuer"))
            rc = s_get_str (v, "issuer", &cap->issuer, &cap->issuerlen,
                            &seen_issuer, err, errlen);
        else if (s_key_is (k, "sig")) {
            /*  nil: unsigned (hal_cap_pack without a signature). */
            if (v->type == MSGPACK_OBJECT_NIL && !seen_sig)
                seen_sig = true;
            else
                rc = s_get_str (v, "sig", &cap->sig, &cap->siglen, &seen_sig,
                                err, errlen);
        } else if (s_key_is (k, "expires")) {
            if (seen_expires) {
                aaax_seterr (err, errlen, "duplicate field \"expires\"");
                return AAAX_EINVAL;
            }
            seen_expires = true;
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
                aaax_seterr (err, errlen,
                             "\"expires\" is not a non-negative integer");
                return AAAX_EINVAL;
            }
            cap->expires = v->via.u64;
        } else if (s_key_is (k, "rights")) {
            if (seen_rights) {
                aaax_seterr (err, errlen, "duplicate field \"rights\"");
                return AAAX_EINVAL;
            }
            seen_rights = true;
            if (v->type != MSGPACK_OBJECT_ARRAY) {
                aaax_seterr (err, errlen, "\"rights\" is not an array");
                return AAAX_EINVAL;
            }
            if (v->via.array.size > HAL_CAP_MAX_RIGHTS) {
                aaax_seterr (err, errlen, "more than %d rights",
                             HAL_CAP_MAX_RIGHTS);
                return AAAX_EINVAL;
            }
            for (uint32_t j = 0; j < v->via.array.size; j++) {
                const msgpack_object *r = &v->via.array.ptr[j];
                if (r->type != MSGPACK_OBJECT_STR
                    || r->via.str.size > HAL_CAP_MAX_STR) {
                    aaax_seterr (err, errlen,
                                 "\"rights\" holds something other than a "
                                 "string of at most %d bytes",
                                 HAL_CAP_MAX_STR);
                    return AAAX_EINVAL;
                }
                cap->rights[j] = r->via.str.ptr;
                cap->rightslen[j] = r->via.str.size;
            }
            cap->nrights = v->via.array.size;
        }
        if (rc)
            return rc;
    }
    const char *missing = !seen_id         ? "id"
                          : !seen_subject  ? "subject"
                          : !seen_resource ? "resource"
                          : !seen_rights   ? "rights"
                          : !seen_expires  ? "expires"
                          : !seen_issuer   ? "issuer"
                                           : NULL;
    if (missing) {
        aaax_seterr (err, errlen, "field \"%s\" is missing", missing);
        return AAAX_EINVAL;
    }
    return 0;
}
