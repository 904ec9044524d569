/*  hal_curve.c — CURVE keys on disk: see hal_curve.h. */

#include "hal_curve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <czmq.h>
#include <sodium.h>

#include "aaax.h"
#include "hal_clock.h"
#include "hal_fs.h"

#define ENROLL_PREFIX "aaax-enroll-"
#define FILE_MAX (16u << 20) /* no key file of ours comes near this */

/*  ---- small things ---- */

bool
hal_curve_key_valid (const char *s)
{
    if (!s || strlen (s) != HAL_CURVE_Z85_LEN)
        return false;
    uint8_t raw[32];
    return zmq_z85_decode (raw, s) != NULL;
}

bool
hal_curve_id_valid (const char *id)
{
    size_t n = id ? strlen (id) : 0;
    if (n == 0 || n > HAL_CURVE_ID_MAX || id[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'
              || c == ':'))
            return false;
    }
    return true;
}

int
hal_curve_path (const char *data_dir, const char *name, char *out,
                size_t outlen)
{
    int n = name ? snprintf (out, outlen, "%s/curve/%s", data_dir, name)
                 : snprintf (out, outlen, "%s/curve", data_dir);
    return n < 0 || (size_t) n >= outlen ? AAAX_EINVAL : 0;
}

/*  Reads a whole (small) file into a NUL-terminated buffer. 0, AAAX_ENOENT,
    AAAX_EIO. *mode receives the file's permission bits when not NULL. */
static int
s_read_file (const char *path, char **out, size_t *len, mode_t *mode, char *err,
             size_t errlen)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return AAAX_ENOENT;
        snprintf (err, errlen, "cannot open %s: %s", path, strerror (errno));
        return AAAX_EIO;
    }
    struct stat st;
    if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)
        || (uint64_t) st.st_size > FILE_MAX) {
        snprintf (err, errlen, "%s: not a regular file of at most %u bytes",
                  path, FILE_MAX);
        close (fd);
        return AAAX_EIO;
    }
    if (mode)
        *mode = st.st_mode & 07777;
    size_t size = (size_t) st.st_size;
    char *buf = (char *) malloc (size + 1);
    if (!buf) {
        close (fd);
        snprintf (err, errlen, "out of memory");
        return AAAX_ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read (fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t) r;
    }
    close (fd);
    buf[got] = 0;
    *out = buf;
    *len = got;
    return 0;
}

/*  ---- certificates (czmq's zcert text format) ---- */

/*  Finds `name = "VALUE"` (quotes optional) in zcert text and copies a
    40-character value. */
static bool
s_cert_value (const char *text, size_t len, const char *name,
              char out[HAL_CURVE_Z85_LEN + 1])
{
    size_t nl = strlen (name);
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        size_t a = pos;
        while (a < end && (text[a] == ' ' || text[a] == '\t'))
            a++;
        if (a < end && text[a] != '#' && end - a > nl
            && memcmp (text + a, name, nl) == 0) {
            size_t b = a + nl;
            while (b < end && (text[b] == ' ' || text[b] == '\t'))
                b++;
            if (b < end && text[b] == '=') {
                b++;
                while (b < end && (text[b] == ' ' || text[b] == '\t'))
                    b++;
                bool quoted = b < end && text[b] == '"';
                if (quoted)
                    b++;
                size_t e = b;
                while (e < end && text[e] != '"' && text[e] != ' '
                       && text[e] != '\t' && text[e] != '\r')
                    e++;
                if (e - b == HAL_CURVE_Z85_LEN) {
                    memcpy (out, text + b, HAL_CURVE_Z85_LEN);
                    out[HAL_CURVE_Z85_LEN] = 0;
                    if (hal_curve_key_valid (out))
                        return true;
                }
                out[0] = 0;
                return false;
            }
        }
        pos = end + 1;
    }
    return false;
}

int
hal_curve_cert_parse (const char *text, size_t len,
                      char public_z85[HAL_CURVE_Z85_LEN + 1],
                      char secret_z85[HAL_CURVE_Z85_LEN + 1])
{
    public_z85[0] = 0;
    if (secret_z85)
        secret_z85[0] = 0;
    if (!s_cert_value (text, len, "public-key", public_z85))
        return AAAX_EINVAL;
    if (secret_z85 && s_cert_value (text, len, "secret-key", secret_z85)) {
        /*  The secret must be the public key's. */
        uint8_t sk[32], pk[32], derived[32];
        zmq_z85_decode (sk, secret_z85);
        zmq_z85_decode (pk, public_z85);
        crypto_scalarmult_base (derived, sk);
        sodium_memzero (sk, sizeof sk);
        if (sodium_memcmp (pk, derived, 32) != 0) {
            sodium_memzero (secret_z85, HAL_CURVE_Z85_LEN + 1);
            return AAAX_EINVAL;
        }
    }
    return 0;
}

static int
s_cert_text (char *buf, size_t size, const char *pub, const char *sec)
{
    time_t t = time (NULL);
    struct tm tm;
    char date[32] = "";
    if (gmtime_r (&t, &tm))
        strftime (date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", &tm);
    int n;
    if (sec)
        n = snprintf (buf, size,
                      "#   ****  Generated on %s by aaax  ****\n"
                      "#   ZeroMQ CURVE **Secret** Certificate\n"
                      "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change "
                      "its permissions.\n\n"
                      "metadata\n"
                      "curve\n"
                      "    public-key = \"%s\"\n"
                      "    secret-key = \"%s\"\n",
                      date, pub, sec);
    else
        n = snprintf (buf, size,
                      "#   ****  Generated on %s by aaax  ****\n"
                      "#   ZeroMQ CURVE Public Certificate\n"
                      "#   Exchange securely, or use a secure mechanism to "
                      "verify the contents\n"
                      "#   of this file after exchange.\n\n"
                      "metadata\n"
                      "curve\n"
                      "    public-key = \"%s\"\n",
                      date, pub);
    return n < 0 || (size_t) n >= size ? -1 : n;
}

/*  Writes a new pair to path and path_secret. refuse_existing: EEXIST if
    either exists. */
static int
s_write_pair (const char *path, char pub[HAL_CURVE_Z85_LEN + 1],
              char sec[HAL_CURVE_Z85_LEN + 1], char *err, size_t errlen)
{
    uint8_t pk[32], sk[32];
    if (crypto_box_keypair (pk, sk) != 0) {
        snprintf (err, errlen, "cannot make a key pair");
        return AAAX_EIO;
    }
    zmq_z85_encode (pub, pk, 32);
    zmq_z85_encode (sec, sk, 32);
    sodium_memzero (sk, sizeof sk);
    char secpath[4200], text[1024];
    snprintf (secpath, sizeof secpath, "%s_secret", path);
    int n = s_cert_text (text, sizeof text, pub, sec);
    int rc = n < 0
                 ? AAAX_EINVAL
                 : hal_fs_write_secret (secpath, text, (size_t) n, err, errlen);
    sodium_memzero (text, sizeof text);
    if (rc != 0)
        return rc;
    n = s_cert_text (text, sizeof text, pub, NULL);
    rc = n < 0
             ? AAAX_EINVAL
             : hal_fs_write_atomic (path, text, (size_t) n, 0644, err, errlen);
    if (rc != 0)
        unlink (secpath);
    return rc;
}

int
hal_curve_load_cert (const char *path, bool need_secret,
                     char public_z85[HAL_CURVE_Z85_LEN + 1],
                     char secret_z85[HAL_CURVE_Z85_LEN + 1], char *err,
                     size_t errlen)
{
    char secpath[4200];
    snprintf (secpath, sizeof secpath, "%s_secret", path);
    char *text = NULL;
    size_t len = 0;
    mode_t mode = 0;
    const char *used = secpath;
    int rc = s_read_file (secpath, &text, &len, &mode, err, errlen);
    if (rc == AAAX_ENOENT) {
        used = path;
        rc = s_read_file (path, &text, &len, &mode, err, errlen);
    }
    if (rc == AAAX_ENOENT) {
        snprintf (err, errlen, "no certificate %s (nor %s)", path, secpath);
        return rc;
    }
    if (rc != 0)
        return rc;
    char sec[HAL_CURVE_Z85_LEN + 1];
    rc = hal_curve_cert_parse (text, len, public_z85, sec);
    sodium_memzero (text, len);
    free (text);
    if (rc != 0) {
        snprintf (err, errlen,
                  "%s: not a CURVE certificate (public-key = \"...\" with 40 "
                  "Z85 characters, and a matching secret-key)",
                  used);
        return AAAX_EINVAL;
    }
    if (sec[0] && (mode & 077)) {
        snprintf (err, errlen,
                  "%s holds a secret key but is readable by others (mode "
                  "%04o): chmod 600 %s",
                  used, (unsigned) mode, used);
        sodium_memzero (sec, sizeof sec);
        return AAAX_EINVAL;
    }
    if (need_secret && !sec[0]) {
        snprintf (err, errlen,
                  "%s has no secret key: give the certificate made by aaax "
                  "keygen (NAME, with NAME_secret beside it)",
                  used);
        return AAAX_EINVAL;
    }
    if (secret_z85)
        memcpy (secret_z85, sec, sizeof sec);
    sodium_memzero (sec, sizeof sec);
    return 0;
}

int
hal_curve_keygen (const char *path, char public_z85[HAL_CURVE_Z85_LEN + 1],
                  char *err, size_t errlen)
{
    char secpath[4200];
    if (snprintf (secpath, sizeof secpath, "%s_secret", path)
        >= (int) sizeof secpath) {
        snprintf (err, errlen, "path too long");
        return AAAX_EINVAL;
    }
    struct stat st;
    if (lstat (path, &st) == 0 || lstat (secpath, &st) == 0) {
        snprintf (err, errlen, "%s or %s exists: not replacing a key", path,
                  secpath);
        return AAAX_EEXIST;
    }
    char sec[HAL_CURVE_Z85_LEN + 1];
    int rc = s_write_pair (path, public_z85, sec, err, errlen);
    sodium_memzero (sec, sizeof sec);
    return rc;
}

static int
s_curve_dir (const char *data_dir, char *err, size_t errlen)
{
    char dir[4200];
    if (hal_curve_path (data_dir, NULL, dir, sizeof dir) != 0) {
        snprintf (err, errlen, "data directory path too long");
        return AAAX_EINVAL;
    }
    return hal_fs_prepare_dir (dir, err, errlen);
}

int
hal_curve_server_cert (const char *data_dir, bool create,
                       char public_z85[HAL_CURVE_Z85_LEN + 1],
                       char secret_z85[HAL_CURVE_Z85_LEN + 1], char *err,
                       size_t errlen)
{
    char path[4200], secpath[4200];
    if (hal_curve_path (data_dir, "server.cert", path, sizeof path) != 0
        || hal_curve_path (data_dir, "server.cert_secret", secpath,
                           sizeof secpath)
               != 0) {
        snprintf (err, errlen, "data directory path too long");
        return AAAX_EINVAL;
    }
    struct stat st;
    bool has_pub = lstat (path, &st) == 0, has_sec = lstat (secpath, &st) == 0;
    if (!has_pub && !has_sec) {
        if (!create) {
            snprintf (err, errlen,
                      "no CURVE certificate in %s/curve: aaaxd makes it at "
                      "its first start with this data directory",
                      data_dir);
            return AAAX_ENOENT;
        }
        int rc = s_curve_dir (data_dir, err, errlen);
        if (rc != 0)
            return rc;
        char sec[HAL_CURVE_Z85_LEN + 1];
        rc = s_write_pair (path, public_z85, sec, err, errlen);
        if (rc == 0 && secret_z85)
            memcpy (secret_z85, sec, sizeof sec);
        sodium_memzero (sec, sizeof sec);
        if (rc == 0)
            zsys_info ("curve: made the kernel's CURVE certificate %s", path);
        return rc;
    }
    if (!secret_z85) {
        /*  The public key: from the public file (the secret one has it too,
            but need not be readable by whoever asks). */
        char *text = NULL;
        size_t len = 0;
        int rc = s_read_file (has_pub ? path : secpath, &text, &len, NULL, err,
                              errlen);
        if (rc != 0)
            return rc;
        rc = hal_curve_cert_parse (text, len, public_z85, NULL);
        free (text);
        if (rc != 0)
            snprintf (err, errlen, "%s: damaged certificate",
                      has_pub ? path : secpath);
        return rc;
    }
    if (!has_sec || !has_pub) {
        snprintf (err, errlen,
                  "%s exists without %s: restore both from a backup, or "
                  "remove both to make a new kernel key (every agent then "
                  "needs the new one)",
                  has_pub ? path : secpath, has_pub ? secpath : path);
        return AAAX_EINVAL;
    }
    char pub2[HAL_CURVE_Z85_LEN + 1];
    int rc =
        hal_curve_load_cert (path, true, public_z85, secret_z85, err, errlen);
    if (rc != 0)
        return rc;
    char *text = NULL;
    size_t len = 0;
    rc = s_read_file (path, &text, &len, NULL, err, errlen);
    if (rc == 0) {
        rc = hal_curve_cert_parse (text, len, pub2, NULL);
        free (text);
    }
    if (rc != 0 || strcmp (pub2, public_z85) != 0) {
        snprintf (err, errlen, "%s does not match %s", path, secpath);
        sodium_memzero (secret_z85, HAL_CURVE_Z85_LEN + 1);
        return AAAX_EINVAL;
    }
    return 0;
}

/*  ---- the authorized-keys file ---- */

typedef struct {
    char key[HAL_CURVE_Z85_LEN + 1];
    char *ids; /* space-separated */
} s_entry_t;

struct _hal_curve_auth_t {
    s_entry_t *v;
    size_t n, cap;
    zhashx_t *by_key; /* key -> s_entry_t index + 1 */
    zhashx_t *by_id;  /* "KEY ID" -> 1 and "ID" -> count */
};

void
hal_curve_auth_destroy (hal_curve_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    hal_curve_auth_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++)
        free (self->v[i].ids);
    free (self->v);
    zhashx_destroy (&self->by_key);
    zhashx_destroy (&self->by_id);
    free (self);
    *self_p = NULL;
}

static hal_curve_auth_t *
s_auth_new (void)
{
    hal_curve_auth_t *self = (hal_curve_auth_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->by_key = zhashx_new ();
    self->by_id = zhashx_new ();
    if (!self->by_key || !self->by_id) {
        hal_curve_auth_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->by_key, NULL);
    zhashx_set_destructor (self->by_id, NULL);
    return self;
}

/*  Indexes the ids of every key. */
static void
s_auth_index (hal_curve_auth_t *self)
{
    /*  by_key was filled while parsing (it finds repeated keys there); the
        ids of each key go in by_id as "KEY ID" and as "ID". */
    for (size_t i = 0; i < self->n; i++) {
        s_entry_t *e = &self->v[i];
        const char *p = e->ids;
        while (*p) {
            const char *sp = strchr (p, ' ');
            size_t l = sp ? (size_t) (sp - p) : strlen (p);
            char pair[HAL_CURVE_Z85_LEN + 2 + HAL_CURVE_ID_MAX + 1];
            snprintf (pair, sizeof pair, "%s %.*s", e->key, (int) l, p);
            zhashx_update (self->by_id, pair, (void *) (uintptr_t) 1);
            zhashx_update (self->by_id, pair + HAL_CURVE_Z85_LEN + 1,
                           (void *) (uintptr_t) 1);
            p += l;
            while (*p == ' ')
                p++;
        }
    }
}

static int
s_auth_push (hal_curve_auth_t *self, const char *key, char *ids)
{
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        s_entry_t *v = (s_entry_t *) realloc (self->v, cap * sizeof *v);
        if (!v)
            return -1;
        self->v = v;
        self->cap = cap;
    }
    s_entry_t *e = &self->v[self->n++];
    memcpy (e->key, key, HAL_CURVE_Z85_LEN + 1);
    e->ids = ids;
    return 0;
}

hal_curve_auth_t *
hal_curve_auth_parse (const char *text, size_t len, size_t *nbad)
{
    hal_curve_auth_t *self = s_auth_new ();
    if (!self)
        return NULL;
    size_t bad = 0, pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        size_t l = end - pos;
        if (l > 0 && text[pos + l - 1] == '\r')
            l--;
        const char *line = text + pos;
        pos = end + 1;
        if (l == 0 || (l >= 2 && line[0] == '#' && line[1] == ' ')
            || (l == 1 && line[0] == '#'))
            continue;
        /*  KEY ID [ID ...] */
        char key[HAL_CURVE_Z85_LEN + 1];
        if (l < HAL_CURVE_Z85_LEN + 2 || line[HAL_CURVE_Z85_LEN] != ' ') {
            bad++;
            continue;
        }
        memcpy (key, line, HAL_CURVE_Z85_LEN);
        key[HAL_CURVE_Z85_LEN] = 0;
        if (!hal_curve_key_valid (key) || zhashx_lookup (self->by_key, key)) {
            bad++;
            continue;
        }
        char *ids = (char *) malloc (l - HAL_CURVE_Z85_LEN);
        if (!ids) {
            hal_curve_auth_destroy (&self);
            return NULL;
        }
        size_t o = 0, nids = 0;
        bool ok = true;
        const char *p = line + HAL_CURVE_Z85_LEN + 1, *lend = line + l;
        while (p < lend && ok) {
            while (p < lend && (*p == ' ' || *p == '\t'))
                p++;
            const char *q = p;
            while (q < lend && *q != ' ' && *q != '\t')
                q++;
            if (q == p)
                break;
            char id[HAL_CURVE_ID_MAX + 1];
            size_t il = (size_t) (q - p);
            if (il > HAL_CURVE_ID_MAX || nids >= HAL_CURVE_IDS_MAX) {
                ok = false;
                break;
            }
            memcpy (id, p, il);
            id[il] = 0;
            if (!hal_curve_id_valid (id)) {
                ok = false;
                break;
            }
            if (o)
                ids[o++] = ' ';
            memcpy (ids + o, id, il);
            o += il;
            nids++;
            p = q;
        }
        ids[o] = 0;
        if (!ok || nids == 0) {
            free (ids);
            bad++;
            continue;
        }
        if (s_auth_push (self, key, ids) != 0) {
            free (ids);
            hal_curve_auth_destroy (&self);
            return NULL;
        }
        if (zhashx_insert (self->by_key, key, (void *) (uintptr_t) self->n)
            != 0) {
            hal_curve_auth_destroy (&self);
            return NULL;
        }
    }
    s_auth_index (self);
    if (nbad)
        *nbad = bad;
    return self;
}

hal_curve_auth_t *
hal_curve_auth_load (const char *data_dir, char *err, size_t errlen)
{
    char path[4200];
    if (hal_curve_path (data_dir, "authorized", path, sizeof path) != 0) {
        snprintf (err, errlen, "data directory path too long");
        return NULL;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = s_read_file (path, &text, &len, NULL, err, errlen);
    if (rc == AAAX_ENOENT) {
        hal_curve_auth_t *self = s_auth_new ();
        if (!self)
            snprintf (err, errlen, "out of memory");
        return self;
    }
    if (rc != 0)
        return NULL;
    size_t bad = 0;
    hal_curve_auth_t *self = hal_curve_auth_parse (text, len, &bad);
    free (text);
    if (!self)
        snprintf (err, errlen, "out of memory");
    else if (bad)
        zsys_warning ("curve: %s: skipped %zu malformed line(s) (expected "
                      "\"KEY ID [ID ...]\")",
                      path, bad);
    return self;
}

bool
hal_curve_auth_allows (const hal_curve_auth_t *self, const char *key,
                       const char *id)
{
    if (!self || !key || !id)
        return false;
    char pair[HAL_CURVE_Z85_LEN + 2 + HAL_CURVE_ID_MAX + 1];
    int n = snprintf (pair, sizeof pair, "%s %s", key, id);
    if (n < 0 || (size_t) n >= sizeof pair)
        return false;
    return zhashx_lookup (self->by_id, pair) != NULL;
}

bool
hal_curve_auth_id_bound (const hal_curve_auth_t *self, const char *id)
{
    return self && id && strchr (id, ' ') == NULL
           && zhashx_lookup (self->by_id, id) != NULL;
}

bool
hal_curve_auth_known (const hal_curve_auth_t *self, const char *key)
{
    return self && key && zhashx_lookup (self->by_key, key) != NULL;
}

size_t
hal_curve_auth_size (const hal_curve_auth_t *self)
{
    return self ? self->n : 0;
}

bool
hal_curve_auth_entry (const hal_curve_auth_t *self, size_t i, const char **key,
                      const char **ids)
{
    if (!self || i >= self->n)
        return false;
    *key = self->v[i].key;
    *ids = self->v[i].ids;
    return true;
}

/*  True when the space-separated list has id. */
static bool
s_has_id (const char *ids, const char *id)
{
    size_t l = strlen (id);
    const char *p = ids;
    while (*p) {
        const char *sp = strchr (p, ' ');
        size_t pl = sp ? (size_t) (sp - p) : strlen (p);
        if (pl == l && memcmp (p, id, l) == 0)
            return true;
        p += pl;
        while (*p == ' ')
            p++;
    }
    return false;
}

static size_t
s_count_ids (const char *ids)
{
    size_t n = 0;
    for (const char *p = ids; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        n++;
        while (*p && *p != ' ')
            p++;
    }
    return n;
}

int
hal_curve_authorize (const char *data_dir, const char *key,
                     const char *const *ids, size_t nids, bool revoke,
                     char *err, size_t errlen)
{
    if (!hal_curve_key_valid (key)) {
        snprintf (err, errlen,
                  "\"%s\" is not a CURVE public key (40 Z85 characters, as "
                  "aaax keygen prints)",
                  key ? key : "");
        return AAAX_EINVAL;
    }
    if (!revoke && nids == 0) {
        snprintf (err, errlen, "no system id to bind the key to");
        return AAAX_EINVAL;
    }
    for (size_t i = 0; !revoke && i < nids; i++)
        if (!hal_curve_id_valid (ids[i])) {
            snprintf (err, errlen,
                      "\"%s\" is not a system id (1..128 characters of A-Z "
                      "a-z 0-9 . _ - : not starting with '.')",
                      ids[i]);
            return AAAX_EINVAL;
        }
    int rc = s_curve_dir (data_dir, err, errlen);
    if (rc != 0)
        return rc;
    char path[4200], lockpath[4200];
    hal_curve_path (data_dir, "authorized", path, sizeof path);
    hal_curve_path (data_dir, "authorized.lock", lockpath, sizeof lockpath);
    int lfd = open (lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0) {
        snprintf (err, errlen, "cannot open %s: %s", lockpath,
                  strerror (errno));
        return AAAX_EIO;
    }
    while (flock (lfd, LOCK_EX) != 0 && errno == EINTR)
        ;
    hal_curve_auth_t *auth = hal_curve_auth_load (data_dir, err, errlen);
    if (!auth) {
        close (lfd);
        return AAAX_EIO;
    }
    uintptr_t at = (uintptr_t) zhashx_lookup (auth->by_key, key);
    if (revoke) {
        if (!at) {
            snprintf (err, errlen, "key %s is not authorized", key);
            rc = AAAX_ENOENT;
            goto done;
        }
        free (auth->v[at - 1].ids);
        memmove (&auth->v[at - 1], &auth->v[at],
                 (auth->n - at) * sizeof (s_entry_t));
        auth->n--;
    } else {
        const char *old = at ? auth->v[at - 1].ids : "";
        size_t need = strlen (old) + 1;
        for (size_t i = 0; i < nids; i++)
            need += strlen (ids[i]) + 1;
        char *merged = (char *) malloc (need);
        if (!merged) {
            snprintf (err, errlen, "out of memory");
            rc = AAAX_ENOMEM;
            goto done;
        }
        strcpy (merged, old);
        for (size_t i = 0; i < nids; i++)
            if (!s_has_id (merged, ids[i])) {
                if (*merged)
                    strcat (merged, " ");
                strcat (merged, ids[i]);
            }
        if (s_count_ids (merged) > HAL_CURVE_IDS_MAX) {
            free (merged);
            snprintf (err, errlen,
                      "a key may be bound to at most %d system ids",
                      HAL_CURVE_IDS_MAX);
            rc = AAAX_ELIMIT;
            goto done;
        }
        if (at) {
            free (auth->v[at - 1].ids);
            auth->v[at - 1].ids = merged;
        } else if (s_auth_push (auth, key, merged) != 0) {
            free (merged);
            snprintf (err, errlen, "out of memory");
            rc = AAAX_ENOMEM;
            goto done;
        }
    }
    {
        /*  Write it back whole. */
        size_t size = 160;
        for (size_t i = 0; i < auth->n; i++)
            size += HAL_CURVE_Z85_LEN + 2 + strlen (auth->v[i].ids);
        char *text = (char *) malloc (size);
        if (!text) {
            snprintf (err, errlen, "out of memory");
            rc = AAAX_ENOMEM;
            goto done;
        }
        size_t o = (size_t) snprintf (
            text, size,
            "# aaax authorized CURVE keys: KEY SYSTEM [SYSTEM ...]\n"
            "# change with aaax authorize (aaax authorize --help)\n");
        for (size_t i = 0; i < auth->n; i++)
            o += (size_t) snprintf (text + o, size - o, "%s %s\n",
                                    auth->v[i].key, auth->v[i].ids);
        rc = hal_fs_write_atomic (path, text, o, 0600, err, errlen);
        free (text);
    }
done:
    hal_curve_auth_destroy (&auth);
    flock (lfd, LOCK_UN);
    close (lfd);
    return rc;
}

void
hal_curve_auth_stamp (const char *data_dir, hal_curve_stamp_t *out)
{
    memset (out, 0, sizeof *out);
    char path[4200];
    struct stat st;
    if (hal_curve_path (data_dir, "authorized", path, sizeof path) != 0
        || stat (path, &st) != 0)
        return;
    out->exists = true;
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->size = st.st_size;
    out->mtime_ns =
        (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

bool
hal_curve_stamp_eq (const hal_curve_stamp_t *a, const hal_curve_stamp_t *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino
           && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

/*  ---- enrollment tokens ---- */

typedef struct {
    uint8_t hash[32];
    char id[HAL_CURVE_ID_MAX + 1];
    int64_t expires;
} s_token_t;

struct _hal_curve_enroll_t {
    char path[4200];
    s_token_t *v;
    size_t n, cap;
};

void
hal_curve_enroll_destroy (hal_curve_enroll_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    hal_curve_enroll_t *self = *self_p;
    free (self->v);
    free (self);
    *self_p = NULL;
}

static void
s_token_hash (const char *token, size_t len, uint8_t out[32])
{
    crypto_generichash (out, 32, (const uint8_t *) token, len, NULL, 0);
}

static int
s_enroll_save (hal_curve_enroll_t *self, char *err, size_t errlen)
{
    size_t size = 64 + self->n * (64 + 1 + HAL_CURVE_ID_MAX + 1 + 21 + 1);
    char *text = (char *) malloc (size);
    if (!text) {
        snprintf (err, errlen, "out of memory");
        return AAAX_ENOMEM;
    }
    size_t o = (size_t) snprintf (text, size,
                                  "# aaax enrollment tokens (hashes): HASH "
                                  "SYSTEM EXPIRES_MS\n");
    for (size_t i = 0; i < self->n; i++) {
        char hex[65];
        sodium_bin2hex (hex, sizeof hex, self->v[i].hash, 32);
        o += (size_t) snprintf (text + o, size - o, "%s %s %lld\n", hex,
                                self->v[i].id, (long long) self->v[i].expires);
    }
    int rc = hal_fs_write_secret (self->path, text, o, err, errlen);
    free (text);
    return rc;
}

int
hal_curve_enroll_parse (hal_curve_enroll_t *self, const char *text, size_t len,
                        int64_t now_wall_ms)
{
    size_t pos = 0;
    int bad = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        char line[64 + 1 + HAL_CURVE_ID_MAX + 1 + 24 + 1];
        size_t l = end - pos;
        const char *src = text + pos;
        pos = end + 1;
        if (l == 0 || src[0] == '#')
            continue;
        if (l >= sizeof line) {
            bad++;
            continue;
        }
        memcpy (line, src, l);
        line[l] = 0;
        char hex[65], id[HAL_CURVE_ID_MAX + 1];
        long long exp;
        char tail;
        if (sscanf (line, "%64s %128s %lld%c", hex, id, &exp, &tail) != 3
            || strlen (hex) != 64 || !hal_curve_id_valid (id)) {
            bad++;
            continue;
        }
        s_token_t t;
        if (sodium_hex2bin (t.hash, 32, hex, 64, NULL, NULL, NULL) != 0) {
            bad++;
            continue;
        }
        if (exp <= now_wall_ms)
            continue;
        snprintf (t.id, sizeof t.id, "%s", id);
        t.expires = exp;
        if (self->n == self->cap) {
            size_t cap = self->cap ? self->cap * 2 : 8;
            s_token_t *v = (s_token_t *) realloc (self->v, cap * sizeof *v);
            if (!v)
                return AAAX_ENOMEM;
            self->v = v;
            self->cap = cap;
        }
        self->v[self->n++] = t;
    }
    return bad;
}

hal_curve_enroll_t *
hal_curve_enroll_open (const char *data_dir, char *err, size_t errlen)
{
    hal_curve_enroll_t *self = (hal_curve_enroll_t *) calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    if (hal_curve_path (data_dir, "enroll", self->path, sizeof self->path) != 0
        || s_curve_dir (data_dir, err, errlen) != 0) {
        if (!*err)
            snprintf (err, errlen, "data directory path too long");
        free (self);
        return NULL;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = s_read_file (self->path, &text, &len, NULL, err, errlen);
    if (rc == AAAX_ENOENT)
        return self;
    if (rc != 0) {
        free (self);
        return NULL;
    }
    int bad = hal_curve_enroll_parse (self, text, len, hal_clock_wall_ms ());
    free (text);
    if (bad < 0) {
        snprintf (err, errlen, "out of memory");
        hal_curve_enroll_destroy (&self);
        return NULL;
    }
    if (bad > 0)
        zsys_warning ("curve: %s: skipped %d malformed line(s)", self->path,
                      bad);
    return self;
}

int
hal_curve_enroll_new (hal_curve_enroll_t *self, const char *id,
                      int64_t expires_wall_ms,
                      char token[HAL_CURVE_TOKEN_LEN + 1], char *err,
                      size_t errlen)
{
    if (!hal_curve_id_valid (id)) {
        snprintf (err, errlen, "\"%s\" is not a system id", id ? id : "");
        return AAAX_EINVAL;
    }
    /*  Forget expired tokens first. */
    int64_t now = hal_clock_wall_ms ();
    size_t o = 0;
    for (size_t i = 0; i < self->n; i++)
        if (self->v[i].expires > now)
            self->v[o++] = self->v[i];
    self->n = o;
    if (self->n >= 10000) {
        snprintf (err, errlen, "too many pending enrollment tokens (10000)");
        return AAAX_ELIMIT;
    }
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 8;
        s_token_t *v = (s_token_t *) realloc (self->v, cap * sizeof *v);
        if (!v) {
            snprintf (err, errlen, "out of memory");
            return AAAX_ENOMEM;
        }
        self->v = v;
        self->cap = cap;
    }
    uint8_t raw[20];
    randombytes_buf (raw, sizeof raw);
    memcpy (token, ENROLL_PREFIX, strlen (ENROLL_PREFIX));
    sodium_bin2hex (token + strlen (ENROLL_PREFIX), 41, raw, sizeof raw);
    sodium_memzero (raw, sizeof raw);
    s_token_t *t = &self->v[self->n];
    s_token_hash (token, HAL_CURVE_TOKEN_LEN, t->hash);
    snprintf (t->id, sizeof t->id, "%s", id);
    t->expires = expires_wall_ms;
    self->n++;
    int rc = s_enroll_save (self, err, errlen);
    if (rc != 0) {
        self->n--;
        sodium_memzero (token, HAL_CURVE_TOKEN_LEN + 1);
    }
    return rc;
}

int
hal_curve_enroll_redeem (hal_curve_enroll_t *self, const char *token,
                         size_t len, int64_t now_wall_ms, const char *want_id,
                         char id[HAL_CURVE_ID_MAX + 1])
{
    if (len != HAL_CURVE_TOKEN_LEN
        || memcmp (token, ENROLL_PREFIX, strlen (ENROLL_PREFIX)) != 0)
        return AAAX_ENOENT;
    uint8_t h[32];
    s_token_hash (token, len, h);
    for (size_t i = 0; i < self->n; i++) {
        if (sodium_memcmp (h, self->v[i].hash, 32) != 0)
            continue;
        if (want_id && strcmp (want_id, self->v[i].id) != 0
            && self->v[i].expires > now_wall_ms) {
            memcpy (id, self->v[i].id, sizeof self->v[i].id);
            return AAAX_EPERM;
        }
        s_token_t t = self->v[i];
        self->v[i] = self->v[self->n - 1];
        self->n--;
        char err[256];
        if (s_enroll_save (self, err, sizeof err) != 0) {
            zsys_error ("curve: %s", err);
            /*  Not saved: the token is not used either. */
            self->v[self->n++] = t;
            return AAAX_EIO;
        }
        if (t.expires <= now_wall_ms)
            return AAAX_EAUTH;
        memcpy (id, t.id, sizeof t.id);
        return 0;
    }
    return AAAX_ENOENT;
}

size_t
hal_curve_enroll_pending (hal_curve_enroll_t *self, int64_t now_wall_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < self->n; i++)
        if (self->v[i].expires > now_wall_ms)
            n++;
    return n;
}
