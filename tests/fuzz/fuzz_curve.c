/*  fuzz_curve.c — libFuzzer target for the CURVE key files read from
    outside bytes (hal/hal_curve.c): the authorized-keys file (hand-edited
    by operators), certificates (`--key FILE`, server.cert) and the
    enrollment file. The input is given to each parser.
    Invariants checked (abort on violation):
    - the authorized parser never fails but on out of memory; every entry
      it keeps has a valid key and 1..HAL_CURVE_IDS_MAX valid ids, each of
      which the key is allowed, and no key appears twice;
    - a certificate parsed with 0 has a valid public key, and its secret,
      when present, is valid;
    - the enrollment parser returns a count of bad lines >= 0. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "hal_curve.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                 \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf (stderr, "fuzz_curve: %s:%d: invariant failed: %s\n", \
                     __FILE__, __LINE__, #cond);                          \
            abort ();                                                     \
        }                                                                 \
    } while (0)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *text = (const char *) data;
    size_t nbad = 0;
    hal_curve_auth_t *a = hal_curve_auth_parse (text, size, &nbad);
    FUZZ_ASSERT (a != NULL);
    const char *key, *ids;
    for (size_t i = 0; hal_curve_auth_entry (a, i, &key, &ids); i++) {
        FUZZ_ASSERT (hal_curve_key_valid (key));
        FUZZ_ASSERT (hal_curve_auth_known (a, key));
        size_t n = 0;
        const char *p = ids;
        while (*p) {
            const char *sp = strchr (p, ' ');
            size_t l = sp ? (size_t) (sp - p) : strlen (p);
            char id[HAL_CURVE_ID_MAX + 2];
            FUZZ_ASSERT (l > 0 && l <= HAL_CURVE_ID_MAX);
            memcpy (id, p, l);
            id[l] = 0;
            FUZZ_ASSERT (hal_curve_id_valid (id));
            FUZZ_ASSERT (hal_curve_auth_allows (a, key, id));
            FUZZ_ASSERT (hal_curve_auth_id_bound (a, id));
            n++;
            p += l;
            if (*p == ' ')
                p++;
        }
        FUZZ_ASSERT (n >= 1 && n <= HAL_CURVE_IDS_MAX);
        for (size_t j = 0; j < i; j++) {
            const char *k2, *i2;
            FUZZ_ASSERT (hal_curve_auth_entry (a, j, &k2, &i2));
            FUZZ_ASSERT (strcmp (k2, key) != 0);
        }
    }
    hal_curve_auth_destroy (&a);

    char pub[HAL_CURVE_Z85_LEN + 1], sec[HAL_CURVE_Z85_LEN + 1];
    if (hal_curve_cert_parse (text, size, pub, sec) == 0) {
        FUZZ_ASSERT (hal_curve_key_valid (pub));
        FUZZ_ASSERT (sec[0] == 0 || hal_curve_key_valid (sec));
    }
    /*  The enrollment parser fills a set: a fresh one each time, in a
        directory of our own made once (it holds no file). */
    static char dir[] = "/tmp/fuzz_curve.XXXXXX";
    static int made;
    if (!made)
        made = mkdtemp (dir) ? 1 : -1;
    FUZZ_ASSERT (made == 1);
    char err[256];
    hal_curve_enroll_t *e = hal_curve_enroll_open (dir, err, sizeof err);
    FUZZ_ASSERT (e != NULL);
    int bad = hal_curve_enroll_parse (e, text, size, 1000);
    FUZZ_ASSERT (bad >= 0);
    hal_curve_enroll_destroy (&e);
    return 0;
}
