/*  hal_curve.h — CURVE keys on disk: the kernel's CURVE certificate, client
    certificates (aaax keygen), the authorized-keys file that binds a
    client's public key to the system ids it may dock as (aaax authorize),
    and one-time enrollment tokens (aaax enroll).

    Everything lives in <data>/curve/ (mode 0700):

      server.cert          the kernel's certificate, public part (0644)
      server.cert_secret   the same with the secret key (0600)
      authorized           bindings, one per line: "KEY ID [ID ...]"
      authorized.lock      flock'ed around every change of authorized
      enroll               pending enrollment tokens (0600, kernel only)

    Certificates are in czmq's zcert text format (zcert_load and pyzmq's
    zmq.auth.load_certificate read them): a file NAME with the public key
    and NAME_secret with both. Keys are Z85 text, 40 characters.

    The authorized file: lines "KEY ID [ID ...]" separated by single
    spaces; lines starting with "# " and empty lines are comments. A key
    appears on one line at most. Changes are made under an exclusive flock
    of authorized.lock and land by rename(2), so a reader always sees a
    whole file; the running kernel notices a change (inotify, and a stat on
    every CURVE HELLO) and applies it at once. */

#ifndef HAL_CURVE_H_INCLUDED
#define HAL_CURVE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HAL_CURVE_Z85_LEN 40   /* a key as Z85 text, without NUL */
#define HAL_CURVE_ID_MAX 128   /* a system id's longest length */
#define HAL_CURVE_IDS_MAX 64   /* system ids bound to one key */
#define HAL_CURVE_TOKEN_LEN 52 /* "aaax-enroll-" + 40 hex characters */

/*  True when s is exactly 40 characters of the Z85 alphabet that decode
    to 32 bytes. */
bool hal_curve_key_valid (const char *s);

/*  True for a valid system id: 1..128 characters of A-Z a-z 0-9 . _ - :
    not starting with '.'. */
bool hal_curve_id_valid (const char *id);

/*  The path of a file in <data>/curve/ (name NULL: the directory). 0 or
    AAAX_EINVAL when it does not fit. */
int hal_curve_path (const char *data_dir, const char *name, char *out,
                    size_t outlen);

/*  ---- certificates ---- */

/*  Loads the kernel's certificate from <data>/curve/, making it when it
    does not exist and create is true (the directory too). secret may be
    NULL (only the public part is read, and create must be false).
    0, AAAX_ENOENT (none yet, create false), AAAX_EINVAL/AAAX_EIO with a
    message: a damaged file, a secret file readable by group or others, a
    public key that does not match the secret. Never replaces a key. */
int hal_curve_server_cert (const char *data_dir, bool create,
                           char public_z85[HAL_CURVE_Z85_LEN + 1],
                           char secret_z85[HAL_CURVE_Z85_LEN + 1], char *err,
                           size_t errlen);

/*  Makes a new key pair and writes path (public) and path_secret (0600),
    refusing to overwrite either (AAAX_EEXIST). Prints nothing; the
    public key is returned. */
int hal_curve_keygen (const char *path, char public_z85[HAL_CURVE_Z85_LEN + 1],
                      char *err, size_t errlen);

/*  Loads a certificate: path_secret if it exists, else path itself (which
    may also be the secret file). secret may come back empty ("") when only
    a public certificate exists: AAAX_EINVAL then if need_secret. */
int hal_curve_load_cert (const char *path, bool need_secret,
                         char public_z85[HAL_CURVE_Z85_LEN + 1],
                         char secret_z85[HAL_CURVE_Z85_LEN + 1], char *err,
                         size_t errlen);

/*  Parses certificate text: public-key (required) and, when secret_z85
    is not NULL, secret-key (left "" when absent). A secret that does not
    belong to the public key is AAAX_EINVAL. */
int hal_curve_cert_parse (const char *text, size_t len,
                          char public_z85[HAL_CURVE_Z85_LEN + 1],
                          char secret_z85[HAL_CURVE_Z85_LEN + 1]);

/*  ---- the authorized-keys file ---- */

typedef struct _hal_curve_auth_t hal_curve_auth_t;

/*  Reads <data>/curve/authorized (a missing file is an empty set).
    Malformed lines are skipped with a warning to zsys (the file is written
    by this code; a hand edit must not lock everyone out). NULL only on
    out of memory or an unreadable file, with err set. */
hal_curve_auth_t *hal_curve_auth_load (const char *data_dir, char *err,
                                       size_t errlen);
/*  Parses the file's text (what hal_curve_auth_load reads); never fails
    but on out of memory (NULL). nbad counts skipped lines (may be NULL). */
hal_curve_auth_t *hal_curve_auth_parse (const char *text, size_t len,
                                        size_t *nbad);
void hal_curve_auth_destroy (hal_curve_auth_t **self_p);

/*  True when key (Z85) may dock as id. */
bool hal_curve_auth_allows (const hal_curve_auth_t *self, const char *key,
                            const char *id);
/*  True when some key is bound to id (then only that key, or a privileged
    session, may dock as id). */
bool hal_curve_auth_id_bound (const hal_curve_auth_t *self, const char *id);
/*  True when the key has any binding. */
bool hal_curve_auth_known (const hal_curve_auth_t *self, const char *key);

/*  Iterates the bindings in file order: i from 0 while it returns true;
    key and ids (a space-separated list) are borrowed. */
bool hal_curve_auth_entry (const hal_curve_auth_t *self, size_t i,
                           const char **key, const char **ids);
size_t hal_curve_auth_size (const hal_curve_auth_t *self);

/*  Changes the file under its lock: binds key to each of ids (added to
    what it has; an id may be bound to several keys, which is how a key is
    rotated: bind the new one, then revoke the old), or with revoke true
    removes the key's line (AAAX_ENOENT when absent; ids ignored). At most
    HAL_CURVE_IDS_MAX ids per key (AAAX_ELIMIT). The directory is made when
    missing. */
int hal_curve_authorize (const char *data_dir, const char *key,
                         const char *const *ids, size_t nids, bool revoke,
                         char *err, size_t errlen);

/*  Identity of the file as last seen (inode, size, mtime): a cheap check
    whether it changed. */
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
    bool exists;
} hal_curve_stamp_t;
void hal_curve_auth_stamp (const char *data_dir, hal_curve_stamp_t *out);
bool hal_curve_stamp_eq (const hal_curve_stamp_t *a,
                         const hal_curve_stamp_t *b);

/*  ---- enrollment tokens (kept by the kernel) ---- */

typedef struct _hal_curve_enroll_t hal_curve_enroll_t;

/*  Loads <data>/curve/enroll (only hashes of tokens are stored), dropping
    expired ones. */
hal_curve_enroll_t *hal_curve_enroll_open (const char *data_dir, char *err,
                                           size_t errlen);
void hal_curve_enroll_destroy (hal_curve_enroll_t **self_p);

/*  Adds the tokens in the enroll file's text (lines "HASH ID EXPIRES_MS"),
    skipping those expired at now. Returns the number of malformed lines,
    or AAAX_ENOMEM. */
int hal_curve_enroll_parse (hal_curve_enroll_t *self, const char *text,
                            size_t len, int64_t now_wall_ms);

/*  Makes a one-time token for id valid until expires_wall_ms; writes it
    (HAL_CURVE_TOKEN_LEN characters + NUL) to token. */
int hal_curve_enroll_new (hal_curve_enroll_t *self, const char *id,
                          int64_t expires_wall_ms,
                          char token[HAL_CURVE_TOKEN_LEN + 1], char *err,
                          size_t errlen);

/*  Redeems a token: 0 and its id (copied to id, HAL_CURVE_ID_MAX + 1)
    when it exists and has not expired, and removes it; AAAX_ENOENT for an
    unknown or used token, AAAX_EAUTH for an expired one (also removed),
    AAAX_EPERM when want_id is not NULL and not the token's id (the token
    is kept: a typo does not burn it).
    The change is saved before returning 0 (a token is never used twice,
    even across a crash); AAAX_EIO when it cannot be saved. */
int hal_curve_enroll_redeem (hal_curve_enroll_t *self, const char *token,
                             size_t len, int64_t now_wall_ms,
                             const char *want_id,
                             char id[HAL_CURVE_ID_MAX + 1]);

/*  Pending tokens (not expired at now). */
size_t hal_curve_enroll_pending (hal_curve_enroll_t *self, int64_t now_wall_ms);

#endif
