/*  test_cap.c — unit tests of signed capabilities (hal/hal_cap.c): the
    exact canonical bytes, sign / verify round trips (also through the map
    form), every signed field and every signature byte mattering, the
    issuer bound to the verifying key, rights normalisation, and
    hal_cap_from_obj on malformed maps. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <msgpack.h>

#include "aaax.h"
#include "hal_cap.h"
#include "hal_fs.h"
#include "hal_keys.h"
#include "testutil.h"

static char s_dir[64];
static hal_keys_t *s_keys;

#define SET(field, s) (cap->field = (s), cap->field##len = strlen (s))

static void
make_cap (hal_cap_t *cap)
{
    memset (cap, 0, sizeof *cap);
    SET (id, "cap-1");
    SET (subject, "sys.alpha");
    SET (resource, "chan:jobs");
    cap->rights[0] = "write";
    cap->rights[1] = "read";
    cap->rights[2] = "write";
    cap->rightslen[0] = 5;
    cap->rightslen[1] = 4;
    cap->rightslen[2] = 5;
    cap->nrights = 3;
    cap->expires = 1900000000;
    SET (issuer, hal_keys_public_hex (s_keys));
    hal_cap_normalize (cap);
}

static void
test_normalize (void)
{
    hal_cap_t c;
    memset (&c, 0, sizeof c);
    const char *in[] = { "write", "read", "claim", "read", "write",
                         "ab",    "a",    "b",     "a" };
    size_t n = sizeof in / sizeof in[0];
    for (size_t i = 0; i < n; i++) {
        c.rights[i] = in[i];
        c.rightslen[i] = strlen (in[i]);
    }
    c.nrights = n;
    hal_cap_normalize (&c);
    const char *want[] = { "a", "ab", "b", "claim", "read", "write" };
    CHECK_EQ_INT (c.nrights, 6);
    for (size_t i = 0; i < 6 && i < c.nrights; i++)
        CHECK (c.rightslen[i] == strlen (want[i])
               && memcmp (c.rights[i], want[i], c.rightslen[i]) == 0);
    /*  Bytes, not C strings: "a\0b" sorts after "a" and before "b". */
    c.rights[0] = "b";
    c.rights[1] = "a\0b";
    c.rights[2] = "a";
    c.rightslen[0] = 1;
    c.rightslen[1] = 3;
    c.rightslen[2] = 1;
    c.nrights = 3;
    hal_cap_normalize (&c);
    CHECK (c.nrights == 3 && c.rightslen[0] == 1 && c.rightslen[1] == 3
           && c.rights[2][0] == 'b');
    c.nrights = 0;
    hal_cap_normalize (&c);
    CHECK_EQ_INT (c.nrights, 0);
}

static void
test_canonical_bytes (void)
{
    hal_cap_t c;
    memset (&c, 0, sizeof c);
    c.id = "c1";
    c.idlen = 2;
    c.subject = "s";
    c.subjectlen = 1;
    c.resource = "r";
    c.resourcelen = 1;
    c.rights[0] = "a";
    c.rights[1] = "b";
    c.rightslen[0] = c.rightslen[1] = 1;
    c.nrights = 2;
    c.expires = 300;
    const char *iss = hal_keys_public_hex (s_keys);
    c.issuer = iss;
    c.issuerlen = 64;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    CHECK_EQ_INT (hal_cap_canonical (&c, &sb), 0);
    uint8_t want[256];
    size_t n = 0;
    memcpy (want, "aaax-cap-v1", 12); /* with its NUL */
    n = 12;
    const uint8_t head[] = { 0x96, 0xa2, 'c',  '1',  0xa1, 's',
                             0xa1, 'r',  0x92, 0xa1, 'a',  0xa1,
                             'b',  0xcd, 0x01, 0x2c, 0xd9, 0x40 };
    memcpy (want + n, head, sizeof head);
    n += sizeof head;
    memcpy (want + n, iss, 64);
    n += 64;
    CHECK_EQ_INT (sb.size, n);
    CHECK (sb.size == n && memcmp (sb.data, want, n) == 0);

    /*  Shortest integer forms. */
    const struct {
        uint64_t v;
        uint8_t b[9];
        size_t len;
    } ints[] = {
        { 0, { 0x00 }, 1 },
        { 127, { 0x7f }, 1 },
        { 128, { 0xcc, 0x80 }, 2 },
        { 65536, { 0xce, 0, 1, 0, 0 }, 5 },
        { 1ull << 32, { 0xcf, 0, 0, 0, 1, 0, 0, 0, 0 }, 9 },
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        c.expires = ints[i].v;
        msgpack_sbuffer_clear (&sb);
        CHECK_EQ_INT (hal_cap_canonical (&c, &sb), 0);
        /*  expires sits after the rights, before the issuer's 66 bytes. */
        size_t off = 12 + 13;
        CHECK (sb.size == off + ints[i].len + 66
               && memcmp (sb.data + off, ints[i].b, ints[i].len) == 0);
    }

    /*  Refused: unsorted or repeated rights, missing or empty fields. */
    c.rights[0] = "b";
    c.rights[1] = "a";
    msgpack_sbuffer_clear (&sb);
    CHECK_EQ_INT (hal_cap_canonical (&c, &sb), AAAX_EINVAL);
    c.rights[0] = "a";
    CHECK_EQ_INT (hal_cap_canonical (&c, &sb), AAAX_EINVAL);
    c.rights[1] = "b";
    c.id = NULL;
    CHECK_EQ_INT (hal_cap_canonical (&c, &sb), AAAX_EINVAL);
    c.id = "c1";
    c.subjectlen = 0;
    CHECK_EQ_INT (hal_cap_canonical (&c, &sb), AAAX_EINVAL);
    c.subjectlen = 1;
    c.rightslen[1] = 0;
    CHECK_EQ_INT (hal_cap_canonical (&c, &sb), AAAX_EINVAL);
    c.rightslen[1] = 1;
    c.nrights = HAL_CAP_MAX_RIGHTS + 1;
    CHECK_EQ_INT (hal_cap_canonical (&c, &sb), AAAX_EINVAL);
    c.nrights = 0;
    CHECK_EQ_INT (hal_cap_canonical (&c, &sb), 0);
    msgpack_sbuffer_destroy (&sb);
}

static void
test_sign_verify (void)
{
    hal_cap_t c, *cap = &c;
    make_cap (cap);
    CHECK_EQ_INT (cap->nrights, 2);
    char sig[HAL_CAP_SIG_HEX];
    CHECK_EQ_INT (hal_cap_sign (cap, s_keys, sig), 0);
    CHECK_EQ_INT (strlen (sig), 128);
    const uint8_t *pk = hal_keys_public (s_keys);
    CHECK_EQ_INT (hal_cap_verify (cap, pk), AAAX_EAUTH); /* unsigned */
    cap->sig = sig;
    cap->siglen = 128;
    CHECK_EQ_INT (hal_cap_verify (cap, pk), 0);

    /*  Every signed field matters. */
    hal_cap_t m;
    m = c;
    m.id = "cap-2";
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    m = c;
    m.idlen = 4;
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    m = c;
    m.subject = "sys.alphb";
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    m = c;
    m.resource = "chan:jobz";
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    m = c;
    m.nrights = 1; /* "read" only */
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    m = c;
    m.rights[2] = "x-more";
    m.rightslen[2] = 6;
    m.nrights = 3;
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    m = c;
    m.rights[1] = "writf";
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    m = c;
    m.expires++;
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    m = c;
    m.expires = 0;
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);

    /*  Every signature character matters; one spelling only. */
    int bad = 0;
    for (int i = 0; i < 128; i++) {
        char s2[HAL_CAP_SIG_HEX];
        memcpy (s2, sig, sizeof s2);
        s2[i] = s2[i] == '0' ? '1' : '0';
        m = c;
        m.sig = s2;
        if (hal_cap_verify (&m, pk) != AAAX_EAUTH)
            bad++;
    }
    CHECK_EQ_INT (bad, 0);
    char up[HAL_CAP_SIG_HEX];
    memcpy (up, sig, sizeof up);
    for (int i = 0; i < 128; i++)
        if (up[i] >= 'a' && up[i] <= 'f')
            up[i] = (char) (up[i] - 'a' + 'A');
    m = c;
    m.sig = up;
    CHECK_EQ_INT (hal_cap_verify (&m, pk), strcmp (up, sig) ? AAAX_EAUTH : 0);
    m = c;
    m.siglen = 127;
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    m = c;
    m.sig = NULL;
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);

    /*  Another key: neither as verifier nor as claimed issuer. */
    uint8_t other[HAL_KEYS_PK_BYTES];
    memcpy (other, pk, sizeof other);
    other[31] ^= 0x40;
    CHECK_EQ_INT (hal_cap_verify (&c, other), AAAX_EAUTH);
    char iss[65];
    memcpy (iss, c.issuer, 65);
    iss[0] = iss[0] == 'a' ? 'b' : 'a';
    m = c;
    m.issuer = iss;
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EAUTH);
    /*  Signing in another issuer's name is refused. */
    CHECK_EQ_INT (hal_cap_sign (&m, s_keys, up), AAAX_EINVAL);
    /*  Malformed fields are EINVAL, not EAUTH. */
    m = c;
    m.rights[0] = "write";
    m.rights[1] = "read";
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EINVAL);
    CHECK_EQ_INT (hal_cap_sign (&m, s_keys, up), AAAX_EINVAL);
    m = c;
    m.resource = NULL;
    CHECK_EQ_INT (hal_cap_verify (&m, pk), AAAX_EINVAL);
}

/*  Packs cap, unpacks it, reads it back and verifies it. */
static void
test_map_round_trip (void)
{
    hal_cap_t c;
    make_cap (&c);
    char sig[HAL_CAP_SIG_HEX];
    CHECK_EQ_INT (hal_cap_sign (&c, s_keys, sig), 0);
    c.sig = sig;
    c.siglen = 128;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    hal_cap_pack (&c, &pk);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    CHECK (msgpack_unpack_next (&u, sb.data, sb.size, &off)
           == MSGPACK_UNPACK_SUCCESS);
    CHECK (off == sb.size);
    CHECK (u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 7);
    hal_cap_t r;
    char err[256] = "";
    CHECK_EQ_INT (hal_cap_from_obj (&u.data, &r, err, sizeof err), 0);
    CHECK (r.idlen == c.idlen && memcmp (r.id, c.id, c.idlen) == 0);
    CHECK (r.subjectlen == c.subjectlen
           && memcmp (r.subject, c.subject, c.subjectlen) == 0);
    CHECK (r.nrights == 2 && r.rightslen[0] == 4
           && memcmp (r.rights[0], "read", 4) == 0);
    CHECK (r.expires == c.expires);
    CHECK (r.siglen == 128 && memcmp (r.sig, sig, 128) == 0);
    CHECK_EQ_INT (hal_cap_verify (&r, hal_keys_public (s_keys)), 0);
    msgpack_unpacked_destroy (&u);
    msgpack_sbuffer_destroy (&sb);
}

/*  Builds a map from a compact description and runs hal_cap_from_obj. */
typedef enum {
    F_OMIT,
    F_GOOD,
    F_INT,
    F_NEG,
    F_FLOAT,
    F_NIL,
    F_LONG,
    F_ARR,
    F_MANY,
    F_BADELEM,
    F_DUP
} s_how_t;

static int
from_map (s_how_t how_field[7], bool extra, char *err, size_t errlen)
{
    static const char *names[7] = { "id",      "subject", "resource", "rights",
                                    "expires", "issuer",  "sig" };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    size_t n = extra ? 2 : 0;
    for (int i = 0; i < 7; i++)
        n += how_field[i] == F_OMIT ? 0 : how_field[i] == F_DUP ? 2 : 1;
    msgpack_pack_map (&pk, n);
    if (extra) {
        msgpack_pack_int (&pk, 1); /* a non-string key: ignored */
        msgpack_pack_str_with_body (&pk, "x", 1);
        msgpack_pack_str_with_body (&pk, "note", 4);
        msgpack_pack_array (&pk, 0);
    }
    static char longstr[HAL_CAP_MAX_STR + 2];
    memset (longstr, 'x', sizeof longstr - 1);
    for (int i = 0; i < 7; i++) {
        s_how_t h = how_field[i];
        for (int rep = 0; rep < (h == F_DUP ? 2 : h == F_OMIT ? 0 : 1); rep++) {
            msgpack_pack_str_with_body (&pk, names[i], strlen (names[i]));
            if (h == F_GOOD || h == F_DUP) {
                if (i == 3) {
                    msgpack_pack_array (&pk, 1);
                    msgpack_pack_str_with_body (&pk, "read", 4);
                } else if (i == 4)
                    msgpack_pack_uint64 (&pk, 42);
                else
                    msgpack_pack_str_with_body (&pk, "v", 1);
            } else if (h == F_INT)
                msgpack_pack_int (&pk, 7);
            else if (h == F_NEG)
                msgpack_pack_int (&pk, -7);
            else if (h == F_FLOAT)
                msgpack_pack_double (&pk, 7.5);
            else if (h == F_NIL)
                msgpack_pack_nil (&pk);
            else if (h == F_LONG)
                msgpack_pack_str_with_body (&pk, longstr, HAL_CAP_MAX_STR + 1);
            else if (h == F_ARR) {
                msgpack_pack_array (&pk, 1);
                msgpack_pack_str_with_body (&pk, "v", 1);
            } else if (h == F_MANY) {
                msgpack_pack_array (&pk, HAL_CAP_MAX_RIGHTS + 1);
                for (int j = 0; j <= HAL_CAP_MAX_RIGHTS; j++)
                    msgpack_pack_str_with_body (&pk, "r", 1);
            } else if (h == F_BADELEM) {
                msgpack_pack_array (&pk, 2);
                msgpack_pack_str_with_body (&pk, "read", 4);
                msgpack_pack_map (&pk, 0);
            }
        }
    }
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    int rc = AAAX_EINTERNAL;
    if (msgpack_unpack_next (&u, sb.data, sb.size, NULL)
        == MSGPACK_UNPACK_SUCCESS) {
        hal_cap_t cap;
        rc = hal_cap_from_obj (&u.data, &cap, err, errlen);
    }
    msgpack_unpacked_destroy (&u);
    msgpack_sbuffer_destroy (&sb);
    return rc;
}

static void
test_from_obj (void)
{
    char err[256];
    s_how_t f[7];
    for (int i = 0; i < 7; i++)
        f[i] = F_GOOD;
    CHECK_EQ_INT (from_map (f, false, err, sizeof err), 0);
    CHECK_EQ_INT (from_map (f, true, err, sizeof err), 0);
    /*  sig is optional (nil or absent); everything else required. */
    f[6] = F_NIL;
    CHECK_EQ_INT (from_map (f, false, err, sizeof err), 0);
    f[6] = F_OMIT;
    CHECK_EQ_INT (from_map (f, false, err, sizeof err), 0);
    f[6] = F_GOOD;
    for (int i = 0; i < 6; i++) {
        f[i] = F_OMIT;
        err[0] = 0;
        CHECK_EQ_INT (from_map (f, true, err, sizeof err), AAAX_EINVAL);
        CHECK (strstr (err, "missing") != NULL);
        f[i] = F_GOOD;
    }
    /*  Wrong types, bounds, duplicates, for every field. */
    const s_how_t bad_any[] = { F_INT, F_NEG, F_FLOAT, F_DUP };
    for (int i = 0; i < 7; i++) {
        for (size_t j = 0; j < sizeof bad_any / sizeof bad_any[0]; j++) {
            if (i == 4 && bad_any[j] == F_INT)
                continue; /* expires is an int */
            f[i] = bad_any[j];
            CHECK_EQ_INT (from_map (f, false, err, sizeof err), AAAX_EINVAL);
        }
        f[i] = i == 3 ? F_INT : F_ARR; /* strings are not arrays, ... */
        CHECK_EQ_INT (from_map (f, false, err, sizeof err), AAAX_EINVAL);
        if (i != 3 && i != 4) {
            f[i] = F_LONG;
            CHECK_EQ_INT (from_map (f, false, err, sizeof err), AAAX_EINVAL);
        }
        if (i < 6) {
            f[i] = F_NIL;
            CHECK_EQ_INT (from_map (f, false, err, sizeof err), AAAX_EINVAL);
        }
        f[i] = F_GOOD;
    }
    f[3] = F_MANY;
    CHECK_EQ_INT (from_map (f, false, err, sizeof err), AAAX_EINVAL);
    f[3] = F_BADELEM;
    CHECK_EQ_INT (from_map (f, false, err, sizeof err), AAAX_EINVAL);
    f[3] = F_GOOD;

    /*  Not maps at all. */
    msgpack_object o;
    memset (&o, 0, sizeof o);
    hal_cap_t cap;
    for (int t = MSGPACK_OBJECT_NIL; t <= MSGPACK_OBJECT_BIN; t++) {
        if (t == MSGPACK_OBJECT_MAP)
            continue;
        o.type = (msgpack_object_type) t;
        CHECK_EQ_INT (hal_cap_from_obj (&o, &cap, err, sizeof err),
                      AAAX_EINVAL);
    }
    CHECK_EQ_INT (hal_cap_from_obj (NULL, &cap, err, sizeof err), AAAX_EINVAL);
    /*  An empty map. */
    o.type = MSGPACK_OBJECT_MAP;
    o.via.map.size = 0;
    CHECK_EQ_INT (hal_cap_from_obj (&o, &cap, err, sizeof err), AAAX_EINVAL);
}

int
main (void)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/aaax-test-cap-XXXXXX");
    if (!mkdtemp (s_dir))
        return 1;
    char err[256] = "";
    s_keys = hal_keys_open (s_dir, err, sizeof err);
    CHECK (s_keys != NULL);
    if (!s_keys) {
        fprintf (stderr, "keys: %s\n", err);
        TEST_DONE ();
    }
    test_normalize ();
    test_canonical_bytes ();
    test_sign_verify ();
    test_map_round_trip ();
    test_from_obj ();
    hal_keys_destroy (&s_keys);
    tu_rmrf (s_dir);
    TEST_DONE ();
}
