/*  test_curve.c — unit tests of CURVE keys on disk (hal/hal_curve.c):
    key and id validation, the kernel's certificate (made once, never
    replaced, modes, damage refused), keygen and loading certificates
    (czmq's format, a secret that does not match, a secret readable by
    others), the authorized file (bind, merge, several keys per id, revoke,
    limits, malformed lines skipped, the stamp), and enrollment tokens
    (one use, expiry, a token for another id kept, persistence). */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <czmq.h>

#include "aaax.h"
#include "hal_clock.h"
#include "hal_curve.h"
#include "testutil.h"

static char s_tmp[64];

static mode_t
s_mode (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 ? st.st_mode & 07777 : 0;
}

static void
s_write (const char *path, const char *text)
{
    FILE *f = fopen (path, "w");
    if (f) {
        fputs (text, f);
        fclose (f);
    }
}

static void
test_valid (void)
{
    char pub[41], sec[41];
    CHECK (zmq_curve_keypair (pub, sec) == 0);
    CHECK (hal_curve_key_valid (pub));
    CHECK (hal_curve_key_valid (sec));
    CHECK (!hal_curve_key_valid (""));
    CHECK (!hal_curve_key_valid (NULL));
    char shorter[41];
    memcpy (shorter, pub, 39);
    shorter[39] = 0;
    CHECK (!hal_curve_key_valid (shorter));
    char bad[41];
    memcpy (bad, pub, 41);
    bad[5] = ' '; /* not in the Z85 alphabet */
    CHECK (!hal_curve_key_valid (bad));
    bad[5] = '"';
    CHECK (!hal_curve_key_valid (bad));
    CHECK (hal_curve_id_valid ("agent-1"));
    CHECK (hal_curve_id_valid ("a.b_c:d-E9"));
    CHECK (!hal_curve_id_valid (""));
    CHECK (!hal_curve_id_valid (".hidden"));
    CHECK (!hal_curve_id_valid ("with space"));
    CHECK (!hal_curve_id_valid ("slash/no"));
    char longid[140];
    memset (longid, 'a', 129);
    longid[129] = 0;
    CHECK (!hal_curve_id_valid (longid));
    longid[128] = 0;
    CHECK (hal_curve_id_valid (longid));
}

static void
test_server_cert (void)
{
    char data[128], pub[41], sec[41], pub2[41], sec2[41], err[512];
    snprintf (data, sizeof data, "%s/data", s_tmp);
    mkdir (data, 0700);
    //  not there yet, and not made without create
    CHECK_EQ_INT (
        hal_curve_server_cert (data, false, pub, NULL, err, sizeof err),
        AAAX_ENOENT);
    CHECK (strstr (err, "first start") != NULL);
    CHECK_EQ_INT (hal_curve_server_cert (data, true, pub, sec, err, sizeof err),
                  0);
    CHECK (hal_curve_key_valid (pub) && hal_curve_key_valid (sec));
    char path[256];
    snprintf (path, sizeof path, "%s/curve", data);
    CHECK_EQ_INT (s_mode (path), 0700);
    snprintf (path, sizeof path, "%s/curve/server.cert_secret", data);
    CHECK_EQ_INT (s_mode (path), 0600);
    snprintf (path, sizeof path, "%s/curve/server.cert", data);
    CHECK_EQ_INT (s_mode (path), 0644);
    //  czmq reads what we wrote, with the same keys
    zcert_t *zc = zcert_load (path);
    CHECK (zc != NULL);
    if (zc) {
        CHECK_EQ_STR (zcert_public_txt (zc), pub);
        CHECK_EQ_STR (zcert_secret_txt (zc), sec);
        zcert_destroy (&zc);
    }
    //  the same key at the next boot, public part alone too
    CHECK_EQ_INT (
        hal_curve_server_cert (data, true, pub2, sec2, err, sizeof err), 0);
    CHECK_EQ_STR (pub2, pub);
    CHECK_EQ_STR (sec2, sec);
    CHECK_EQ_INT (
        hal_curve_server_cert (data, false, pub2, NULL, err, sizeof err), 0);
    CHECK_EQ_STR (pub2, pub);
    //  a secret readable by others is refused
    snprintf (path, sizeof path, "%s/curve/server.cert_secret", data);
    chmod (path, 0644);
    CHECK_EQ_INT (
        hal_curve_server_cert (data, true, pub2, sec2, err, sizeof err),
        AAAX_EINVAL);
    CHECK (strstr (err, "chmod 600") != NULL);
    chmod (path, 0600);
    //  a public file that does not match its secret is refused
    char opub[41], osec[41];
    zmq_curve_keypair (opub, osec);
    char text[512], ppath[256];
    snprintf (text, sizeof text, "metadata\ncurve\n    public-key = \"%s\"\n",
              opub);
    snprintf (ppath, sizeof ppath, "%s/curve/server.cert", data);
    s_write (ppath, text);
    CHECK_EQ_INT (
        hal_curve_server_cert (data, true, pub2, sec2, err, sizeof err),
        AAAX_EINVAL);
    CHECK (strstr (err, "does not match") != NULL);
    //  one half missing: refused, never silently replaced
    unlink (ppath);
    CHECK_EQ_INT (
        hal_curve_server_cert (data, true, pub2, sec2, err, sizeof err),
        AAAX_EINVAL);
    CHECK (strstr (err, "without") != NULL);
    CHECK (access (path, F_OK) == 0);
    tu_rmrf (data);
}

static void
test_keygen (void)
{
    char path[128], pub[41], pub2[41], sec[41], err[512];
    snprintf (path, sizeof path, "%s/agent", s_tmp);
    CHECK_EQ_INT (hal_curve_keygen (path, pub, err, sizeof err), 0);
    CHECK_EQ_INT (s_mode (path), 0644);
    char secpath[160];
    snprintf (secpath, sizeof secpath, "%s_secret", path);
    CHECK_EQ_INT (s_mode (secpath), 0600);
    //  never overwritten
    CHECK_EQ_INT (hal_curve_keygen (path, pub2, err, sizeof err), AAAX_EEXIST);
    //  loaded by either name
    CHECK_EQ_INT (hal_curve_load_cert (path, true, pub2, sec, err, sizeof err),
                  0);
    CHECK_EQ_STR (pub2, pub);
    CHECK_EQ_INT (
        hal_curve_load_cert (secpath, true, pub2, sec, err, sizeof err), 0);
    CHECK_EQ_STR (pub2, pub);
    //  the secret file alone, under the public name
    unlink (path);
    rename (secpath, path);
    CHECK_EQ_INT (hal_curve_load_cert (path, true, pub2, sec, err, sizeof err),
                  0);
    CHECK_EQ_STR (pub2, pub);
    //  a public certificate alone: fine unless the secret is needed
    char ppath[160];
    snprintf (ppath, sizeof ppath, "%s/pubonly", s_tmp);
    char text[256];
    snprintf (text, sizeof text, "curve\n    public-key = \"%s\"\n", pub);
    s_write (ppath, text);
    CHECK_EQ_INT (
        hal_curve_load_cert (ppath, false, pub2, sec, err, sizeof err), 0);
    CHECK_EQ_STR (sec, "");
    CHECK_EQ_INT (hal_curve_load_cert (ppath, true, pub2, sec, err, sizeof err),
                  AAAX_EINVAL);
    CHECK (strstr (err, "no secret key") != NULL);
    //  a secret that is not the public key's
    char opub[41], osec[41];
    zmq_curve_keypair (opub, osec);
    snprintf (text, sizeof text,
              "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", pub,
              osec);
    s_write (ppath, text);
    chmod (ppath, 0600);
    CHECK_EQ_INT (
        hal_curve_load_cert (ppath, false, pub2, sec, err, sizeof err),
        AAAX_EINVAL);
    //  a secret readable by others
    snprintf (text, sizeof text,
              "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", opub,
              osec);
    s_write (ppath, text);
    chmod (ppath, 0640);
    CHECK_EQ_INT (
        hal_curve_load_cert (ppath, false, pub2, sec, err, sizeof err),
        AAAX_EINVAL);
    CHECK (strstr (err, "chmod 600") != NULL);
    //  missing
    CHECK_EQ_INT (hal_curve_load_cert ("/nonexistent/x", false, pub2, sec, err,
                                       sizeof err),
                  AAAX_ENOENT);
    unlink (ppath);
    unlink (path);
}

static void
test_authorized (void)
{
    char data[128], err[512];
    snprintf (data, sizeof data, "%s/data2", s_tmp);
    mkdir (data, 0700);
    char k1[41], k2[41], sec[41];
    zmq_curve_keypair (k1, sec);
    zmq_curve_keypair (k2, sec);
    hal_curve_auth_t *a = hal_curve_auth_load (data, err, sizeof err);
    CHECK (a && hal_curve_auth_size (a) == 0);
    CHECK (!hal_curve_auth_allows (a, k1, "one"));
    hal_curve_auth_destroy (&a);

    hal_curve_stamp_t st0, st1;
    hal_curve_auth_stamp (data, &st0);
    CHECK (!st0.exists);
    const char *ids[] = { "one", "two" };
    CHECK_EQ_INT (
        hal_curve_authorize (data, k1, ids, 2, false, err, sizeof err), 0);
    hal_curve_auth_stamp (data, &st1);
    CHECK (st1.exists && !hal_curve_stamp_eq (&st0, &st1));
    const char *ids2[] = { "two", "three" };
    CHECK_EQ_INT (
        hal_curve_authorize (data, k1, ids2, 2, false, err, sizeof err), 0);
    //  an id may have two keys (rotation)
    CHECK_EQ_INT (
        hal_curve_authorize (data, k2, ids, 1, false, err, sizeof err), 0);
    a = hal_curve_auth_load (data, err, sizeof err);
    CHECK (a != NULL);
    CHECK_EQ_INT (hal_curve_auth_size (a), 2);
    CHECK (hal_curve_auth_allows (a, k1, "one"));
    CHECK (hal_curve_auth_allows (a, k1, "two"));
    CHECK (hal_curve_auth_allows (a, k1, "three"));
    CHECK (hal_curve_auth_allows (a, k2, "one"));
    CHECK (!hal_curve_auth_allows (a, k2, "two"));
    CHECK (!hal_curve_auth_allows (a, k1, "four"));
    CHECK (hal_curve_auth_id_bound (a, "one"));
    CHECK (hal_curve_auth_id_bound (a, "three"));
    CHECK (!hal_curve_auth_id_bound (a, "four"));
    CHECK (hal_curve_auth_known (a, k2));
    const char *key, *list;
    CHECK (hal_curve_auth_entry (a, 0, &key, &list));
    CHECK_EQ_STR (key, k1);
    CHECK_EQ_STR (list, "one two three");
    CHECK (!hal_curve_auth_entry (a, 2, &key, &list));
    hal_curve_auth_destroy (&a);
    //  bad input
    CHECK_EQ_INT (
        hal_curve_authorize (data, "nope", ids, 1, false, err, sizeof err),
        AAAX_EINVAL);
    CHECK (strstr (err, "not a CURVE public key") != NULL);
    const char *badid[] = { "bad id" };
    CHECK_EQ_INT (
        hal_curve_authorize (data, k1, badid, 1, false, err, sizeof err),
        AAAX_EINVAL);
    CHECK_EQ_INT (
        hal_curve_authorize (data, k1, NULL, 0, false, err, sizeof err),
        AAAX_EINVAL);
    //  at most HAL_CURVE_IDS_MAX ids per key
    {
        char names[HAL_CURVE_IDS_MAX + 1][16];
        const char *many[HAL_CURVE_IDS_MAX + 1];
        for (int i = 0; i <= HAL_CURVE_IDS_MAX; i++) {
            snprintf (names[i], sizeof names[i], "m%d", i);
            many[i] = names[i];
        }
        char k3[41];
        zmq_curve_keypair (k3, sec);
        CHECK_EQ_INT (hal_curve_authorize (data, k3, many, HAL_CURVE_IDS_MAX,
                                           false, err, sizeof err),
                      0);
        CHECK_EQ_INT (hal_curve_authorize (data, k3, many + 1,
                                           HAL_CURVE_IDS_MAX, false, err,
                                           sizeof err),
                      AAAX_ELIMIT);
        CHECK_EQ_INT (
            hal_curve_authorize (data, k3, NULL, 0, true, err, sizeof err), 0);
    }
    //  revoke
    CHECK_EQ_INT (
        hal_curve_authorize (data, k1, NULL, 0, true, err, sizeof err), 0);
    CHECK_EQ_INT (
        hal_curve_authorize (data, k1, NULL, 0, true, err, sizeof err),
        AAAX_ENOENT);
    a = hal_curve_auth_load (data, err, sizeof err);
    CHECK (a && !hal_curve_auth_allows (a, k1, "one"));
    CHECK (a && hal_curve_auth_allows (a, k2, "one"));
    CHECK (a && !hal_curve_auth_id_bound (a, "three"));
    hal_curve_auth_destroy (&a);
    //  a hand-edited file: bad lines skipped, good ones kept
    char path[256], text[1024];
    snprintf (path, sizeof path, "%s/curve/authorized", data);
    snprintf (text, sizeof text,
              "# comment\n\n%s alpha beta\r\nnot-a-key x\n%s\n%s gamma\n"
              "%s bad/id\n#\n",
              k1, k2, k1, k2);
    s_write (path, text);
    size_t nbad = 0;
    a = hal_curve_auth_parse (text, strlen (text), &nbad);
    CHECK (a != NULL);
    CHECK_EQ_INT (nbad, 4); /* not-a-key, k2 alone, k1 again, bad/id */
    CHECK (a && hal_curve_auth_allows (a, k1, "alpha"));
    CHECK (a && hal_curve_auth_allows (a, k1, "beta"));
    CHECK (a && !hal_curve_auth_allows (a, k1, "gamma"));
    CHECK (a && !hal_curve_auth_known (a, k2));
    hal_curve_auth_destroy (&a);
    tu_rmrf (data);
}

static void
test_enroll (void)
{
    char data[128], err[512], tok[HAL_CURVE_TOKEN_LEN + 1],
        tok2[HAL_CURVE_TOKEN_LEN + 1], id[HAL_CURVE_ID_MAX + 1];
    snprintf (data, sizeof data, "%s/data3", s_tmp);
    mkdir (data, 0700);
    hal_curve_enroll_t *e = hal_curve_enroll_open (data, err, sizeof err);
    CHECK (e != NULL);
    if (!e)
        return;
    int64_t now = hal_clock_wall_ms ();
    CHECK_EQ_INT (
        hal_curve_enroll_new (e, "newbie", now + 60000, tok, err, sizeof err),
        0);
    CHECK_EQ_INT (strlen (tok), HAL_CURVE_TOKEN_LEN);
    CHECK (strncmp (tok, "aaax-enroll-", 12) == 0);
    CHECK_EQ_INT (
        hal_curve_enroll_new (e, "bad id", now + 60000, tok2, err, sizeof err),
        AAAX_EINVAL);
    CHECK_EQ_INT (
        hal_curve_enroll_new (e, "other", now + 60000, tok2, err, sizeof err),
        0);
    CHECK (strcmp (tok, tok2) != 0);
    CHECK_EQ_INT (hal_curve_enroll_pending (e, now), 2);
    //  the file holds hashes only, mode 0600
    char path[256];
    snprintf (path, sizeof path, "%s/curve/enroll", data);
    CHECK_EQ_INT (s_mode (path), 0600);
    {
        FILE *f = fopen (path, "r");
        char buf[2048] = "";
        size_t n = f ? fread (buf, 1, sizeof buf - 1, f) : 0;
        buf[n] = 0;
        if (f)
            fclose (f);
        CHECK (strstr (buf, tok + 12) == NULL);
        CHECK (strstr (buf, "newbie") != NULL);
    }
    //  a wrong id keeps the token; a wrong token is unknown
    CHECK_EQ_INT (
        hal_curve_enroll_redeem (e, tok, strlen (tok), now, "someone", id),
        AAAX_EPERM);
    CHECK_EQ_STR (id, "newbie");
    tok2[20] ^= 1;
    CHECK_EQ_INT (
        hal_curve_enroll_redeem (e, tok2, strlen (tok2), now, NULL, id),
        AAAX_ENOENT);
    CHECK_EQ_INT (hal_curve_enroll_redeem (e, "short", 5, now, NULL, id),
                  AAAX_ENOENT);
    //  survives a restart, then is used once
    hal_curve_enroll_destroy (&e);
    e = hal_curve_enroll_open (data, err, sizeof err);
    CHECK (e != NULL);
    if (!e)
        return;
    CHECK_EQ_INT (hal_curve_enroll_pending (e, now), 2);
    CHECK_EQ_INT (
        hal_curve_enroll_redeem (e, tok, strlen (tok), now, "newbie", id), 0);
    CHECK_EQ_STR (id, "newbie");
    CHECK_EQ_INT (hal_curve_enroll_redeem (e, tok, strlen (tok), now, NULL, id),
                  AAAX_ENOENT);
    hal_curve_enroll_destroy (&e);
    e = hal_curve_enroll_open (data, err, sizeof err);
    CHECK (e != NULL);
    if (!e)
        return;
    CHECK_EQ_INT (hal_curve_enroll_redeem (e, tok, strlen (tok), now, NULL, id),
                  AAAX_ENOENT);
    //  expiry
    CHECK_EQ_INT (
        hal_curve_enroll_new (e, "late", now + 1000, tok, err, sizeof err), 0);
    CHECK_EQ_INT (
        hal_curve_enroll_redeem (e, tok, strlen (tok), now + 1000, NULL, id),
        AAAX_EAUTH);
    CHECK_EQ_INT (hal_curve_enroll_redeem (e, tok, strlen (tok), now, NULL, id),
                  AAAX_ENOENT); /* and gone */
    //  the parser skips malformed lines and expired tokens
    const char *text = "# x\nzz other 1\n"
                       "00112233445566778899aabbccddeeff00112233445566778899aa"
                       "bbccddeeff ok 99999999999999\n"
                       "00112233445566778899aabbccddeeff00112233445566778899aa"
                       "bbccddeeff old 1\n"
                       "00112233445566778899aabbccddeeff00112233445566778899aa"
                       "bbccddeeff bad/id 99999999999999\n";
    size_t before = hal_curve_enroll_pending (e, now);
    CHECK_EQ_INT (hal_curve_enroll_parse (e, text, strlen (text), now), 2);
    CHECK_EQ_INT (hal_curve_enroll_pending (e, now), before + 1);
    hal_curve_enroll_destroy (&e);
    tu_rmrf (data);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    snprintf (s_tmp, sizeof s_tmp, "/tmp/test_curve.XXXXXX");
    if (!mkdtemp (s_tmp)) {
        perror ("mkdtemp");
        return 1;
    }
    test_valid ();
    test_server_cert ();
    test_keygen ();
    test_authorized ();
    test_enroll ();
    tu_rmrf (s_tmp);
    TEST_DONE ();
}
