/*  hal_keys.h — the kernel's ed25519 signing key (libsodium crypto_sign):
    made at first boot in the data directory, the secret part in
    <data>/kernel.key (mode 0600) and the public part in <data>/kernel.pub
    (64 lower-case hex characters and a newline), so that a third party
    holding kernel.pub verifies capabilities and audit checkpoints offline.
    The secret key lives in sodium_malloc'd (guarded, locked) memory.

    kernel.key holds libsodium's 64-byte ed25519 secret key (32-byte seed
    followed by the 32-byte public key) as 128 lower-case hex characters
    and a newline, written atomically with mode 0600 (hal_fs_write_secret);
    kernel.pub is written atomically with mode 0644. On reading, the
    trailing newline is optional and hex digits of either case are
    accepted. */

#ifndef HAL_KEYS_H_INCLUDED
#define HAL_KEYS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define HAL_KEYS_PK_BYTES 32
#define HAL_KEYS_SIG_BYTES 64

typedef struct _hal_keys_t hal_keys_t;

/*  Loads the key pair of data_dir, making it when neither file exists.
    A kernel.key without kernel.pub (or the reverse), a file of the wrong
    size or mode wider than 0600 for the secret, or a public key that does
    not match the secret one are errors (AAAX_EINVAL / AAAX_EIO with a
    message naming the file in err): the kernel never silently replaces
    an identity. data_dir must exist (hal_fs_prepare_dir). Thread-safe
    after open: signing and verifying from several threads is fine. */
hal_keys_t *hal_keys_open (const char *data_dir, char *err, size_t errlen);

/*  Wipes and frees the secret key. Accepts NULL. */
void hal_keys_destroy (hal_keys_t **self_p);

/*  The public key (32 bytes) and its hex form (64 chars + NUL), borrowed. */
const uint8_t *hal_keys_public (const hal_keys_t *self);
const char *hal_keys_public_hex (const hal_keys_t *self);

/*  Detached ed25519 signature of msg. Never fails. */
void hal_keys_sign (const hal_keys_t *self, const void *msg, size_t len,
                    uint8_t sig[HAL_KEYS_SIG_BYTES]);

/*  Verifies a detached signature against public key pk: 0 or AAAX_EAUTH. */
int hal_keys_verify (const uint8_t pk[HAL_KEYS_PK_BYTES], const void *msg,
                     size_t len, const uint8_t sig[HAL_KEYS_SIG_BYTES]);

/*  Reads a public key file (<data>/kernel.pub or any file of that format)
    into pk. 0, AAAX_ENOENT, or AAAX_EINVAL (with a message in err). */
int hal_keys_read_public (const char *path, uint8_t pk[HAL_KEYS_PK_BYTES],
                          char *err, size_t errlen);

#endif
