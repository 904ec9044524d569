/*  fuzz_audit.c — libFuzzer target for hal_audit_check_record, the core of
    `aaax audit verify`, which reads records from a file anyone with write
    access could have edited. Input: [flags][seq][body...]. With flags bit 0
    the rest is used as the stored value as is (hash || body, so the hash
    almost never matches); otherwise the fuzzer's bytes are the body and the
    correct chain hash is put in front, so that the body parser and the
    checkpoint checks are reached. The value is copied into a buffer of its
    exact size so that ASan sees any read past it.
    Invariants checked (abort on violation):
    - the result is 0 or AAAX_EINVAL, and why is NUL-terminated;
    - on success the returned hash is the stored one, the body is one valid
      msgpack value, and a checkpoint was accepted only without a key to
      check (nobody can forge the test key's signature);
    - a record accepted with a key is accepted without one, identically. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "aaax.h"
#include "chan_mpk.h"
#include "hal_audit.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                 \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf (stderr, "fuzz_audit: %s:%d: invariant failed: %s\n", \
                     __FILE__, __LINE__, #cond);                          \
            abort ();                                                     \
        }                                                                 \
    } while (0)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    bool raw = data[0] & 1;
    uint64_t seq = data[1];
    const uint8_t *rest = data + 2;
    size_t restlen = size - 2;
    /*  A fixed previous hash: zeros for seq 1, a pattern otherwise. */
    uint8_t prev[32];
    memset (prev, seq == 1 ? 0 : 0x5a, sizeof prev);

    size_t vlen = raw ? restlen : 32 + restlen;
    uint8_t *val = (uint8_t *) malloc (vlen ? vlen : 1);
    if (!val)
        abort ();
    if (raw)
        memcpy (val, rest, restlen);
    else {
        uint8_t be[8];
        for (int i = 7, s = 0; i >= 0; i--, s += 8)
            be[i] = (uint8_t) (seq >> s);
        crypto_generichash_state st;
        crypto_generichash_init (&st, NULL, 0, 32);
        crypto_generichash_update (&st, prev, 32);
        crypto_generichash_update (&st, be, 8);
        crypto_generichash_update (&st, rest, restlen);
        crypto_generichash_final (&st, val, 32);
        memcpy (val + 32, rest, restlen);
    }

    /*  Some key: its signature can never be produced by the fuzzer. */
    uint8_t pk[32];
    memset (pk, 0x11, sizeof pk);
    pk[31] = 0x42;

    bool ck1 = false, ck2 = false;
    uint8_t h1[32], h2[32];
    char why1[128], why2[128];
    int rc1 = hal_audit_check_record (prev, seq, val, vlen, pk, &ck1, h1, why1,
                                      sizeof why1);
    int rc2 = hal_audit_check_record (prev, seq, val, vlen, NULL, &ck2, h2,
                                      why2, sizeof why2);
    FUZZ_ASSERT (rc1 == 0 || rc1 == AAAX_EINVAL);
    FUZZ_ASSERT (rc2 == 0 || rc2 == AAAX_EINVAL);
    if (rc1)
        FUZZ_ASSERT (memchr (why1, 0, sizeof why1) != NULL);
    if (rc2)
        FUZZ_ASSERT (memchr (why2, 0, sizeof why2) != NULL);
    if (rc1 == 0) {
        FUZZ_ASSERT (!ck1);
        FUZZ_ASSERT (rc2 == 0 && !ck2);
        FUZZ_ASSERT (memcmp (h1, h2, 32) == 0);
    }
    if (rc2 == 0) {
        FUZZ_ASSERT (vlen > 32);
        FUZZ_ASSERT (memcmp (h2, val, 32) == 0);
        FUZZ_ASSERT (chan_mpk_valid (val + 32, vlen - 32, AAAX_MAX_DEPTH + 2));
        /*  A checkpoint's head is the previous hash. */
        if (ck2)
            FUZZ_ASSERT (rc1 == AAAX_EINVAL);
    }
    free (val);
    return 0;
}
