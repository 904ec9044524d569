/*  test_keys.c — unit tests of the kernel key pair (hal/hal_keys.c): made
    at first open with the right modes and formats, the same key on reopen,
    refusal of half-present, mismatched, corrupt, too-open or symlinked
    files (and the identity untouched afterwards), signing and verifying,
    tampered signatures and messages rejected, reading public key files. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aaax.h"
#include "hal_fs.h"
#include "hal_keys.h"
#include "testutil.h"

static char s_dir[64];
static char s_key[128];
static char s_pub[128];

static size_t
read_file (const char *path, char *buf, size_t cap)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return 0;
    size_t n = fread (buf, 1, cap, f);
    fclose (f);
    return n;
}

static void
write_file (const char *path, const void *data, size_t len, mode_t mode)
{
    unlink (path);
    FILE *f = fopen (path, "wb");
    if (!f)
        return;
    fwrite (data, 1, len, f);
    fclose (f);
    chmod (path, mode);
}

/*  Opening must fail and the message must name the file. */
static void
expect_refused (const char *name_in_err)
{
    char err[256] = "";
    hal_keys_t *k = hal_keys_open (s_dir, err, sizeof err);
    CHECK (k == NULL);
    CHECK (strstr (err, name_in_err) != NULL);
    if (k || !strstr (err, name_in_err))
        fprintf (stderr, "  err: %s\n", err);
    hal_keys_destroy (&k);
}

static void
test_create_and_reload (uint8_t pk_out[HAL_KEYS_PK_BYTES])
{
    char err[256] = "";
    hal_keys_t *k = hal_keys_open (s_dir, err, sizeof err);
    CHECK (k != NULL);
    if (!k) {
        fprintf (stderr, "  open: %s\n", err);
        return;
    }
    struct stat st;
    CHECK (stat (s_key, &st) == 0 && (st.st_mode & 07777) == 0600);
    CHECK (st.st_size == 129);
    CHECK (stat (s_pub, &st) == 0 && (st.st_mode & 07777) == 0644);
    CHECK (st.st_size == 65);

    char buf[256];
    size_t n = read_file (s_pub, buf, sizeof buf);
    CHECK (n == 65 && buf[64] == '\n');
    buf[64] = 0;
    CHECK_EQ_STR (buf, hal_keys_public_hex (k));
    CHECK (strlen (hal_keys_public_hex (k)) == 64);
    for (int i = 0; i < 64; i++)
        CHECK (strchr ("0123456789abcdef", hal_keys_public_hex (k)[i]));
    n = read_file (s_key, buf, sizeof buf);
    CHECK (n == 129 && buf[128] == '\n');
    /*  libsodium's secret key ends with the public key. */
    CHECK (memcmp (buf + 64, hal_keys_public_hex (k), 64) == 0);

    uint8_t pk[HAL_KEYS_PK_BYTES];
    CHECK_EQ_INT (hal_keys_read_public (s_pub, pk, err, sizeof err), 0);
    CHECK (memcmp (pk, hal_keys_public (k), sizeof pk) == 0);
    memcpy (pk_out, hal_keys_public (k), HAL_KEYS_PK_BYTES);
    hal_keys_destroy (&k);
    CHECK (k == NULL);
    hal_keys_destroy (&k); /* NULL is fine */

    /*  Reopen: the same identity. */
    k = hal_keys_open (s_dir, err, sizeof err);
    CHECK (k != NULL);
    if (k)
        CHECK (memcmp (hal_keys_public (k), pk_out, HAL_KEYS_PK_BYTES) == 0);
    hal_keys_destroy (&k);
}

static void
test_sign_verify (void)
{
    char err[256] = "";
    hal_keys_t *k = hal_keys_open (s_dir, err, sizeof err);
    CHECK (k != NULL);
    if (!k)
        return;
    const char *msg = "the kernel says so";
    uint8_t sig[HAL_KEYS_SIG_BYTES];
    hal_keys_sign (k, msg, strlen (msg), sig);
    const uint8_t *pk = hal_keys_public (k);
    CHECK_EQ_INT (hal_keys_verify (pk, msg, strlen (msg), sig), 0);
    /*  Deterministic (ed25519). */
    uint8_t sig2[HAL_KEYS_SIG_BYTES];
    hal_keys_sign (k, msg, strlen (msg), sig2);
    CHECK (memcmp (sig, sig2, sizeof sig) == 0);
    /*  Every bit of the signature matters. */
    int bad = 0;
    for (size_t i = 0; i < sizeof sig; i++) {
        memcpy (sig2, sig, sizeof sig);
        sig2[i] ^= (uint8_t) (1u << (i % 8));
        if (hal_keys_verify (pk, msg, strlen (msg), sig2) != AAAX_EAUTH)
            bad++;
    }
    CHECK_EQ_INT (bad, 0);
    /*  A changed message, a truncated message, another key. */
    CHECK_EQ_INT (hal_keys_verify (pk, "the kernel says no", 18, sig),
                  AAAX_EAUTH);
    CHECK_EQ_INT (hal_keys_verify (pk, msg, strlen (msg) - 1, sig), AAAX_EAUTH);
    uint8_t other[HAL_KEYS_PK_BYTES];
    memcpy (other, pk, sizeof other);
    other[0] ^= 1;
    CHECK_EQ_INT (hal_keys_verify (other, msg, strlen (msg), sig), AAAX_EAUTH);
    /*  Empty messages are signable. */
    hal_keys_sign (k, "", 0, sig);
    CHECK_EQ_INT (hal_keys_verify (pk, "", 0, sig), 0);
    hal_keys_destroy (&k);
}

static void
test_refusals (const uint8_t pk_good[HAL_KEYS_PK_BYTES])
{
    char key[256], pub[256];
    size_t klen = read_file (s_key, key, sizeof key);
    size_t plen = read_file (s_pub, pub, sizeof pub);
    CHECK (klen == 129 && plen == 65);

    /*  kernel.pub missing. */
    unlink (s_pub);
    expect_refused ("kernel.pub");
    CHECK (access (s_pub, F_OK) != 0); /* not silently re-made */
    write_file (s_pub, pub, plen, 0644);

    /*  kernel.key missing. */
    unlink (s_key);
    expect_refused ("kernel.key");
    CHECK (access (s_key, F_OK) != 0);
    write_file (s_key, key, klen, 0600);

    /*  Secret readable by others. */
    chmod (s_key, 0644);
    expect_refused ("kernel.key");
    chmod (s_key, 0640);
    expect_refused ("kernel.key");
    chmod (s_key, 0600);

    /*  A public key of another pair. */
    char other[65];
    memcpy (other, pub, 65);
    other[10] = other[10] == 'a' ? 'b' : 'a';
    write_file (s_pub, other, 65, 0644);
    expect_refused ("kernel.pub");
    /*  A public file of the wrong size / not hex. */
    write_file (s_pub, pub, 40, 0644);
    expect_refused ("kernel.pub");
    memcpy (other, pub, 65);
    other[3] = 'x';
    write_file (s_pub, other, 65, 0644);
    expect_refused ("kernel.pub");
    write_file (s_pub, pub, plen, 0644);

    /*  A secret key whose seed was changed: it no longer makes its public
        half. */
    char bad[256];
    memcpy (bad, key, klen);
    bad[5] = bad[5] == '0' ? '1' : '0';
    write_file (s_key, bad, klen, 0600);
    expect_refused ("kernel.key");
    /*  ... or whose public half was changed. */
    memcpy (bad, key, klen);
    bad[100] = bad[100] == '0' ? '1' : '0';
    write_file (s_key, bad, klen, 0600);
    expect_refused ("kernel.key");
    /*  Truncated, too long, not hex, empty. */
    write_file (s_key, key, 100, 0600);
    expect_refused ("kernel.key");
    memcpy (bad, key, klen);
    memcpy (bad + klen, "00\n", 3);
    write_file (s_key, bad, klen + 3, 0600);
    expect_refused ("kernel.key");
    memcpy (bad, key, klen);
    bad[7] = 'g';
    write_file (s_key, bad, klen, 0600);
    expect_refused ("kernel.key");
    write_file (s_key, "", 0, 0600);
    expect_refused ("kernel.key");
    /*  A symlink to the real key is refused too. */
    char real[160];
    snprintf (real, sizeof real, "%s/real.key", s_dir);
    write_file (real, key, klen, 0600);
    unlink (s_key);
    CHECK (symlink (real, s_key) == 0);
    expect_refused ("kernel.key");
    unlink (s_key);
    unlink (real);

    /*  Restored: the same identity as ever; no newline needed either. */
    write_file (s_key, key, klen - 1, 0600);
    char err[256] = "";
    hal_keys_t *k = hal_keys_open (s_dir, err, sizeof err);
    CHECK (k != NULL);
    if (k)
        CHECK (memcmp (hal_keys_public (k), pk_good, HAL_KEYS_PK_BYTES) == 0);
    else
        fprintf (stderr, "  reopen: %s\n", err);
    hal_keys_destroy (&k);
    write_file (s_key, key, klen, 0600);
}

static void
test_read_public (void)
{
    char path[160], err[256] = "";
    uint8_t pk[HAL_KEYS_PK_BYTES];
    snprintf (path, sizeof path, "%s/none.pub", s_dir);
    CHECK_EQ_INT (hal_keys_read_public (path, pk, err, sizeof err),
                  AAAX_ENOENT);
    snprintf (path, sizeof path, "%s/x.pub", s_dir);
    write_file (path, "hello\n", 6, 0644);
    CHECK_EQ_INT (hal_keys_read_public (path, pk, err, sizeof err),
                  AAAX_EINVAL);
    CHECK (strstr (err, "x.pub") != NULL);
    /*  Upper-case hex and no newline are accepted on reading. */
    char hex[65];
    for (int i = 0; i < 64; i++)
        hex[i] = "0123456789ABCDEF"[i % 16];
    write_file (path, hex, 64, 0644);
    CHECK_EQ_INT (hal_keys_read_public (path, pk, err, sizeof err), 0);
    CHECK (pk[0] == 0x01 && pk[7] == 0xef);
    /*  Two newlines, trailing garbage, a directory. */
    hex[64] = '\n';
    char twice[66];
    memcpy (twice, hex, 65);
    twice[65] = '\n';
    write_file (path, twice, 66, 0644);
    CHECK_EQ_INT (hal_keys_read_public (path, pk, err, sizeof err),
                  AAAX_EINVAL);
    CHECK_EQ_INT (hal_keys_read_public (s_dir, pk, err, sizeof err),
                  AAAX_EINVAL);
    unlink (path);
}

int
main (void)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/aaax-test-keys-XXXXXX");
    if (!mkdtemp (s_dir))
        return 1;
    snprintf (s_key, sizeof s_key, "%s/kernel.key", s_dir);
    snprintf (s_pub, sizeof s_pub, "%s/kernel.pub", s_dir);
    char err[256];
    CHECK_EQ_INT (hal_fs_prepare_dir (s_dir, err, sizeof err), 0);

    uint8_t pk[HAL_KEYS_PK_BYTES] = { 0 };
    test_create_and_reload (pk);
    test_sign_verify ();
    test_refusals (pk);
    test_read_public ();

    /*  A missing data directory is an error, not a crash. */
    char gone[96];
    snprintf (gone, sizeof gone, "%s/nope", s_dir);
    hal_keys_t *k = hal_keys_open (gone, err, sizeof err);
    CHECK (k == NULL);
    hal_keys_destroy (&k);

    tu_rmrf (s_dir);
    TEST_DONE ();
}
