/*  fuzz_cap.c — libFuzzer target for reading capabilities from outside
    bytes (`aaax cap verify FILE`, the verify op of
    kernel.capability_requests): the input, when it is one valid msgpack
    value (checked first with the bounded reader, as every caller must,
    since msgpack_unpack allocates by declared container sizes), is
    unpacked into its own exact-size buffer and read by hal_cap_from_obj,
    then verified, canonicalised, normalised and packed again.
    Invariants checked (abort on violation):
    - from_obj returns 0 or AAAX_EINVAL with a NUL-terminated reason; on
      success every field lies within bounds;
    - verify returns AAAX_EINVAL or AAAX_EAUTH, never 0 (nobody can forge
      the test key's signature), and EINVAL exactly when canonical refuses;
    - a cap read back from hal_cap_pack's output has the same fields;
    - normalising gives sorted unique rights that canonical accepts when
      the other fields are well-formed. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <msgpack.h>

#include "aaax.h"
#include "chan_mpk.h"
#include "hal_cap.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                               \
    do {                                                                \
        if (!(cond)) {                                                  \
            fprintf (stderr, "fuzz_cap: %s:%d: invariant failed: %s\n", \
                     __FILE__, __LINE__, #cond);                        \
            abort ();                                                   \
        }                                                               \
    } while (0)

static bool
s_same (const char *a, size_t alen, const char *b, size_t blen)
{
    if (!a || !b)
        return !a && !b;
    return alen == blen && (alen == 0 || memcmp (a, b, alen) == 0);
}

static void
s_check_round_trip (const hal_cap_t *c)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    hal_cap_pack (c, &pk);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    FUZZ_ASSERT (msgpack_unpack_next (&u, sb.data, sb.size, NULL)
                 == MSGPACK_UNPACK_SUCCESS);
    hal_cap_t r;
    char err[160];
    FUZZ_ASSERT (hal_cap_from_obj (&u.data, &r, err, sizeof err) == 0);
    FUZZ_ASSERT (s_same (r.id, r.idlen, c->id, c->idlen));
    FUZZ_ASSERT (s_same (r.subject, r.subjectlen, c->subject, c->subjectlen));
    FUZZ_ASSERT (
        s_same (r.resource, r.resourcelen, c->resource, c->resourcelen));
    FUZZ_ASSERT (s_same (r.issuer, r.issuerlen, c->issuer, c->issuerlen));
    FUZZ_ASSERT (s_same (r.sig, r.siglen, c->sig, c->siglen));
    FUZZ_ASSERT (r.expires == c->expires && r.nrights == c->nrights);
    for (size_t i = 0; i < r.nrights; i++)
        FUZZ_ASSERT (s_same (r.rights[i], r.rightslen[i], c->rights[i],
                             c->rightslen[i]));
    msgpack_unpacked_destroy (&u);
    msgpack_sbuffer_destroy (&sb);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!chan_mpk_valid (data, size, AAAX_MAX_DEPTH))
        return 0;
    char *buf = (char *) malloc (size ? size : 1);
    if (!buf)
        abort ();
    memcpy (buf, data, size);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    int urc = msgpack_unpack_next (&u, buf, size, &off);
    if (urc != MSGPACK_UNPACK_SUCCESS) {
        /*  msgpack-c refuses a few things the bounded reader accepts
            (e.g. nesting past its own stack): not our concern here. */
        msgpack_unpacked_destroy (&u);
        free (buf);
        return 0;
    }
    hal_cap_t cap;
    char err[160];
    err[0] = 0;
    int rc = hal_cap_from_obj (&u.data, &cap, err, sizeof err);
    FUZZ_ASSERT (rc == 0 || rc == AAAX_EINVAL);
    FUZZ_ASSERT (memchr (err, 0, sizeof err) != NULL);
    if (rc == 0) {
        FUZZ_ASSERT (cap.nrights <= HAL_CAP_MAX_RIGHTS);
        FUZZ_ASSERT (cap.idlen <= HAL_CAP_MAX_STR && cap.id);
        FUZZ_ASSERT (cap.subjectlen <= HAL_CAP_MAX_STR && cap.subject);
        FUZZ_ASSERT (cap.resourcelen <= HAL_CAP_MAX_STR && cap.resource);
        FUZZ_ASSERT (cap.issuerlen <= HAL_CAP_MAX_STR && cap.issuer);
        FUZZ_ASSERT (!cap.sig || cap.siglen <= HAL_CAP_MAX_STR);

        uint8_t pk[HAL_KEYS_PK_BYTES];
        memset (pk, 0x22, sizeof pk);
        int vrc = hal_cap_verify (&cap, pk);
        FUZZ_ASSERT (vrc == AAAX_EINVAL || vrc == AAAX_EAUTH);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init (&sb);
        int crc = hal_cap_canonical (&cap, &sb);
        FUZZ_ASSERT (crc == 0 || crc == AAAX_EINVAL);
        FUZZ_ASSERT ((crc == AAAX_EINVAL) == (vrc == AAAX_EINVAL));
        FUZZ_ASSERT (crc != 0 || sb.size > 12);
        s_check_round_trip (&cap);

        hal_cap_t n = cap;
        hal_cap_normalize (&n);
        FUZZ_ASSERT (n.nrights <= cap.nrights);
        bool fields_ok = true;
        for (size_t i = 0; i < n.nrights; i++)
            if (n.rightslen[i] == 0)
                fields_ok = false;
        fields_ok = fields_ok && cap.idlen && cap.subjectlen && cap.resourcelen
                    && cap.issuerlen;
        msgpack_sbuffer_clear (&sb);
        int nrc = hal_cap_canonical (&n, &sb);
        FUZZ_ASSERT (nrc == (fields_ok ? 0 : AAAX_EINVAL));
        msgpack_sbuffer_destroy (&sb);
    }
    msgpack_unpacked_destroy (&u);
    free (buf);
    return 0;
}
