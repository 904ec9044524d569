/*  hal_keys.c — the kernel's ed25519 key pair (see hal_keys.h). The secret
    key, and the hex text it is read from or written as, only ever live in
    sodium_malloc'd memory, wiped when freed. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "aaax.h"
#include "hal_fs.h"
#include "hal_keys.h"

#define S_SK_BYTES 64                    /* crypto_sign_SECRETKEYBYTES */
#define S_SK_HEX (2 * S_SK_BYTES)        /* 128 */
#define S_PK_HEX (2 * HAL_KEYS_PK_BYTES) /* 64 */
#define S_FILE_MAX 256                   /* larger files are refused */

struct _hal_keys_t {
    uint8_t *sk; /* sodium_malloc'd, read-only once loaded */
    uint8_t pk[HAL_KEYS_PK_BYTES];
    char pk_hex[S_PK_HEX + 1];
};

/*  Reads a whole small regular file into buf (cap bytes); *len receives its
    size. Refuses symlinks and anything larger than cap. When max_mode is
    non-zero, permission bits outside it are an error. 0, AAAX_ENOENT,
    AAAX_EINVAL or AAAX_EIO. */
static int
s_read_small (const char *path, char *buf, size_t cap, size_t *len,
              mode_t max_mode, char *err, size_t errlen)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return AAAX_ENOENT;
        aaax_seterr (err, errlen, "cannot open %s: %s", path, strerror (errno));
        return errno == ELOOP ? AAAX_EINVAL : AAAX_EIO;
    }
    struct stat st;
    int rc = 0;
    if (fstat (fd, &st) != 0) {
        aaax_seterr (err, errlen, "cannot stat %s: %s", path, strerror (errno));
        rc = AAAX_EIO;
    } else if (!S_ISREG (st.st_mode)) {
        aaax_seterr (err, errlen, "%s is not a regular file", path);
        rc = AAAX_EINVAL;
    } else if (max_mode && (st.st_mode & 07777 & ~max_mode)) {
        aaax_seterr (err, errlen, "%s has mode %04o, wider than %04o", path,
                     (unsigned) (st.st_mode & 07777), (unsigned) max_mode);
        rc = AAAX_EINVAL;
    } else if ((size_t) st.st_size > cap) {
        aaax_seterr (err, errlen, "%s has the wrong size (%lld bytes)", path,
                     (long long) st.st_size);
        rc = AAAX_EINVAL;
    }
    size_t got = 0;
    while (rc == 0 && got < cap) {
        ssize_t n = read (fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            aaax_seterr (err, errlen, "cannot read %s: %s", path,
                         strerror (errno));
            rc = AAAX_EIO;
        }
        if (n <= 0)
            break;
        got += (size_t) n;
    }
    close (fd);
    *len = got;
    return rc;
}

/*  Decodes exactly nbytes from hex text of len bytes: 2 * nbytes hex digits,
    optionally followed by one newline. */
static bool
s_unhex (const char *text, size_t len, uint8_t *out, size_t nbytes)
{
    if (len == 2 * nbytes + 1 && text[len - 1] == '\n')
        len--;
    if (len != 2 * nbytes)
        return false;
    size_t bin_len = 0;
    const char *end = NULL;
    return sodium_hex2bin (out, nbytes, text, len, NULL, &bin_len, &end) == 0
           && bin_len == nbytes && end == text + len;
}

int
hal_keys_read_public (const char *path, uint8_t pk[HAL_KEYS_PK_BYTES],
                      char *err, size_t errlen)
{
    char buf[S_FILE_MAX];
    size_t len = 0;
    int rc = s_read_small (path, buf, sizeof buf, &len, 0, err, errlen);
    if (rc == AAAX_ENOENT)
        aaax_seterr (err, errlen, "%s does not exist", path);
    if (rc)
        return rc;
    if (!s_unhex (buf, len, pk, HAL_KEYS_PK_BYTES)) {
        aaax_seterr (err, errlen,
                     "%s is not a public key (64 hex characters and a "
                     "newline)",
                     path);
        return AAAX_EINVAL;
    }
    return 0;
}

/*  Makes a new key pair in self and writes both files. */
static int
s_create (hal_keys_t *self, const char *key_path, const char *pub_path,
          char *err, size_t errlen)
{
    if (crypto_sign_keypair (self->pk, self->sk) != 0) {
        aaax_seterr (err, errlen, "cannot make a key pair");
        return AAAX_EINTERNAL;
    }
    char *text = (char *) sodium_malloc (S_SK_HEX + 2);
    if (!text) {
        aaax_seterr (err, errlen, "out of memory");
        return AAAX_ENOMEM;
    }
    sodium_bin2hex (text, S_SK_HEX + 1, self->sk, S_SK_BYTES);
    text[S_SK_HEX] = '\n';
    int rc = hal_fs_write_secret (key_path, text, S_SK_HEX + 1, err, errlen);
    sodium_free (text);
    if (rc)
        return rc;
    char pub[S_PK_HEX + 2];
    sodium_bin2hex (pub, S_PK_HEX + 1, self->pk, HAL_KEYS_PK_BYTES);
    pub[S_PK_HEX] = '\n';
    rc = hal_fs_write_atomic (pub_path, pub, S_PK_HEX + 1, 0644, err, errlen);
    if (rc)
        unlink (key_path); /* never used: leave no half identity behind */
    return rc;
}

/*  Loads kernel.key and checks it against itself and kernel.pub. */
static int
s_load (hal_keys_t *self, const char *key_path, const char *pub_path, char *err,
        size_t errlen)
{
    /*  The hex text is as secret as the key. */
    char *text = (char *) sodium_malloc (S_FILE_MAX);
    if (!text) {
        aaax_seterr (err, errlen, "out of memory");
        return AAAX_ENOMEM;
    }
    size_t len = 0;
    int rc = s_read_small (key_path, text, S_FILE_MAX, &len, 0600, err, errlen);
    if (rc == 0 && !s_unhex (text, len, self->sk, S_SK_BYTES)) {
        aaax_seterr (err, errlen,
                     "%s is not a kernel secret key (128 hex characters and "
                     "a newline)",
                     key_path);
        rc = AAAX_EINVAL;
    }
    sodium_free (text);
    if (rc)
        return rc;

    /*  libsodium's secret key is seed || public key: the seed must make the
        public half, or the file is damaged. */
    uint8_t pk_seed[HAL_KEYS_PK_BYTES];
    uint8_t *sk2 = (uint8_t *) sodium_malloc (S_SK_BYTES);
    if (!sk2) {
        aaax_seterr (err, errlen, "out of memory");
        return AAAX_ENOMEM;
    }
    rc = crypto_sign_seed_keypair (pk_seed, sk2, self->sk);
    sodium_free (sk2);
    if (rc != 0
        || memcmp (pk_seed, self->sk + S_SK_BYTES - HAL_KEYS_PK_BYTES,
                   HAL_KEYS_PK_BYTES)
               != 0) {
        aaax_seterr (err, errlen,
                     "%s is damaged: its public half does not match its seed",
                     key_path);
        return AAAX_EINVAL;
    }
    memcpy (self->pk, pk_seed, HAL_KEYS_PK_BYTES);

    uint8_t pk_file[HAL_KEYS_PK_BYTES];
    rc = hal_keys_read_public (pub_path, pk_file, err, errlen);
    if (rc == AAAX_ENOENT) {
        aaax_seterr (err, errlen, "%s exists but %s does not", key_path,
                     pub_path);
        return AAAX_EINVAL;
    }
    if (rc)
        return rc;
    if (memcmp (pk_file, self->pk, HAL_KEYS_PK_BYTES) != 0) {
        aaax_seterr (err, errlen, "%s does not match the secret key in %s",
                     pub_path, key_path);
        return AAAX_EINVAL;
    }
    return 0;
}

hal_keys_t *
hal_keys_open (const char *data_dir, char *err, size_t errlen)
{
    if (sodium_init () < 0) {
        aaax_seterr (err, errlen, "cannot initialise libsodium");
        return NULL;
    }
    char key_path[PATH_MAX], pub_path[PATH_MAX];
    if ((size_t) snprintf (key_path, sizeof key_path, "%s/kernel.key", data_dir)
            >= sizeof key_path
        || (size_t) snprintf (pub_path, sizeof pub_path, "%s/kernel.pub",
                              data_dir)
               >= sizeof pub_path) {
        aaax_seterr (err, errlen, "data directory path too long");
        return NULL;
    }
    hal_keys_t *self = (hal_keys_t *) calloc (1, sizeof *self);
    if (!self) {
        aaax_seterr (err, errlen, "out of memory");
        return NULL;
    }
    self->sk = (uint8_t *) sodium_malloc (S_SK_BYTES);
    if (!self->sk) {
        aaax_seterr (err, errlen, "out of memory");
        free (self);
        return NULL;
    }

    struct stat st;
    bool have_key = lstat (key_path, &st) == 0 || errno != ENOENT;
    bool have_pub = lstat (pub_path, &st) == 0 || errno != ENOENT;
    int rc;
    if (!have_key && !have_pub)
        rc = s_create (self, key_path, pub_path, err, errlen);
    else if (!have_key) {
        aaax_seterr (err, errlen, "%s exists but %s does not", pub_path,
                     key_path);
        rc = AAAX_EINVAL;
    } else
        rc = s_load (self, key_path, pub_path, err, errlen);
    if (rc) {
        sodium_free (self->sk);
        free (self);
        return NULL;
    }
    sodium_bin2hex (self->pk_hex, sizeof self->pk_hex, self->pk,
                    HAL_KEYS_PK_BYTES);
    sodium_mprotect_readonly (self->sk);
    return self;
}

void
hal_keys_destroy (hal_keys_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    hal_keys_t *self = *self_p;
    sodium_free (self->sk); /* wipes */
    sodium_memzero (self, sizeof *self);
    free (self);
    *self_p = NULL;
}

const uint8_t *
hal_keys_public (const hal_keys_t *self)
{
    return self->pk;
}

const char *
hal_keys_public_hex (const hal_keys_t *self)
{
    return self->pk_hex;
}

void
hal_keys_sign (const hal_keys_t *self, const void *msg, size_t len,
               uint8_t sig[HAL_KEYS_SIG_BYTES])
{
    crypto_sign_detached (sig, NULL, (const unsigned char *) msg, len,
                          self->sk);
}

int
hal_keys_verify (const uint8_t pk[HAL_KEYS_PK_BYTES], const void *msg,
                 size_t len, const uint8_t sig[HAL_KEYS_SIG_BYTES])
{
    if (sodium_init () < 0)
        return AAAX_EINTERNAL;
    return crypto_sign_verify_detached (sig, (const unsigned char *) msg, len,
                                        pk)
                   == 0
               ? 0
               : AAAX_EAUTH;
}
