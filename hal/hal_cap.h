/*  hal_cap.h — signed capabilities (contract section 7): the canonical
    encoding that is signed, signing with the kernel key, verification by
    anyone holding the kernel's public key, and the msgpack map form
    {id, subject, resource, rights, expires, issuer, sig}.

    Canonical encoding (what the signature covers), documented in
    docs/SECURITY.md:
        "aaax-cap-v1" NUL, then one msgpack array of 6, packed with the
        shortest forms: [id str, subject str, resource str,
        rights [str, ...] (sorted bytewise, no duplicates),
        expires uint (Unix seconds), issuer str (hex public key)].
    sig is the ed25519 detached signature as 128 lower-case hex chars. */

#ifndef HAL_CAP_H_INCLUDED
#define HAL_CAP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#include "hal_keys.h"

#define HAL_CAP_MAX_RIGHTS 16
#define HAL_CAP_MAX_STR 4096 /* bytes in any one string field */
#define HAL_CAP_SIG_HEX 129  /* 128 hex chars + NUL */

/*  A capability's fields. Strings are borrowed. */
typedef struct {
    const char *id;
    size_t idlen;
    const char *subject;
    size_t subjectlen;
    const char *resource;
    size_t resourcelen;
    const char *rights[HAL_CAP_MAX_RIGHTS];
    size_t rightslen[HAL_CAP_MAX_RIGHTS];
    size_t nrights;
    uint64_t expires; /* Unix seconds */
    const char *issuer;
    size_t issuerlen;
    const char *sig; /* hex, or NULL when unsigned */
    size_t siglen;
} hal_cap_t;

/*  Sorts and de-duplicates cap->rights in place (call before signing). */
void hal_cap_normalize (hal_cap_t *cap);

/*  Appends the canonical encoding of cap (sig excluded) to sbuf.
    AAAX_EINVAL when rights are not sorted and unique, or a field is
    missing: id, subject, resource, issuer and every right must be
    non-empty and at most HAL_CAP_MAX_STR bytes, nrights at most
    HAL_CAP_MAX_RIGHTS (zero rights is allowed); AAAX_ENOMEM; 0
    otherwise. */
int hal_cap_canonical (const hal_cap_t *cap, msgpack_sbuffer *sbuf);

/*  Signs cap with keys into sig_hex (129 bytes). 0 or AAAX_EINVAL (also
    when cap->issuer is not hal_keys_public_hex (keys)). */
int hal_cap_sign (const hal_cap_t *cap, const hal_keys_t *keys,
                  char sig_hex[HAL_CAP_SIG_HEX]);

/*  Verifies cap->sig against public key pk: 0, or AAAX_EAUTH (bad or
    missing signature, sig not 128 hex chars, issuer not the lower-case hex
    of pk) / AAAX_EINVAL (malformed fields, as hal_cap_canonical; rights
    are not re-sorted: a map with unsorted rights is invalid). Does not
    look at expiry. */
int hal_cap_verify (const hal_cap_t *cap, const uint8_t pk[HAL_KEYS_PK_BYTES]);

/*  Packs cap as the section 7 map (7 pairs in the order id, subject,
    resource, rights, expires, issuer, sig; sig should be set, it is
    packed as nil when NULL). */
void hal_cap_pack (const hal_cap_t *cap, msgpack_packer *pk);

/*  Reads a capability map (as hal_cap_pack makes, extra keys ignored) into
    cap, borrowing from obj. 0, or AAAX_EINVAL with the reason in err.
    Every field but sig is required (sig absent or nil: cap->sig NULL);
    types are checked, strings bounded by HAL_CAP_MAX_STR, rights by
    HAL_CAP_MAX_RIGHTS, a repeated field is an error. Safe on any object;
    but note that msgpack_unpack of untrusted bytes allocates by declared
    container sizes: check the bytes first (chan_mpk_valid). */
int hal_cap_from_obj (const msgpack_object *obj, hal_cap_t *cap, char *err,
                      size_t errlen);

#endif
