/*  hal_kv.c — per-app key-value namespaces in LMDB (see hal_kv.h).

    Three sub-databases. "ns" maps a namespace name to its record: a
    numeric id (u32) and its usage (bytes, count), rewritten in the same
    transaction as every put and delete. "meta" holds the next id. "data"
    holds the entries under [id, 4 bytes big-endian][key], so that two
    namespaces can never share a key whatever bytes the keys hold: the id
    has a fixed length and ids are never reused.

    LMDB keys are at most 511 bytes, less than the id and a 512-byte key.
    A key longer than SHORT_MAX is stored under [id][its first SHORT_MAX
    bytes][BLAKE2b-256 of the whole key] (always KEY_ENC_MAX bytes, a length
    no short key's encoding has), its value prefixed with [u16 klen][key] so
    that the key can be given back and checked: a hash collision would be
    refused, never merged. */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>
#include <lmdb.h>
#include <sodium.h>

#include "aaax.h"
#include "hal_fs.h"
#include "hal_kv.h"

#define ID_LEN 4
#define HASH_LEN 32
#define KEY_ENC_MAX 511 /* LMDB's default maximum key size */
#define SHORT_MAX (KEY_ENC_MAX - ID_LEN - HASH_LEN) /* 475 */
#define USAGE_LEN (4 + 8 + 8)
#define MAX_READERS 256

struct _hal_kv_t {
    MDB_env *env;
    MDB_dbi meta; /* "next_ns" -> u32 */
    MDB_dbi ns;   /* name -> s_usage_t */
    MDB_dbi data; /* [id][key or prefix + hash] -> value */
};

typedef struct {
    uint32_t id;
    uint64_t bytes;
    uint64_t count;
} s_usage_t;

/*  An encoded data key. */
typedef struct {
    uint8_t buf[KEY_ENC_MAX];
    size_t len;
    bool hashed; /* a long key: the value starts with [u16 klen][key] */
} s_dkey_t;

static const char s_next_ns[] = "next_ns";

static void
s_put_be (uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (uint8_t) v;
        v >>= 8;
    }
}

static uint64_t
s_get_be (const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*  Logs an LMDB failure once and converts it. */
static int
s_lmdb_err (const char *what, int rc)
{
    zsys_error ("kv: %s failed: %s", what, mdb_strerror (rc));
    return AAAX_EIO;
}

/*  Validates the namespace (returning its length in *nslen) and the key. */
static int
s_check (const char *ns, const void *key, size_t klen, size_t *nslen)
{
    if (!ns)
        return AAAX_EINVAL;
    size_t n = strnlen (ns, HAL_KV_NS_MAX + 1);
    if (n == 0 || n > HAL_KV_NS_MAX)
        return AAAX_EINVAL;
    *nslen = n;
    if (klen == 0 || !key)
        return AAAX_EINVAL;
    if (klen > HAL_KV_KEY_MAX)
        return AAAX_ETOOBIG;
    return 0;
}

/*  Encodes key; the id is filled in later by s_dkey_set_id. */
static void
s_dkey_init (s_dkey_t *dk, const void *key, size_t klen)
{
    if (klen <= SHORT_MAX) {
        memcpy (dk->buf + ID_LEN, key, klen);
        dk->len = ID_LEN + klen;
        dk->hashed = false;
    } else {
        memcpy (dk->buf + ID_LEN, key, SHORT_MAX);
        crypto_generichash (dk->buf + ID_LEN + SHORT_MAX, HASH_LEN,
                            (const unsigned char *) key, klen, NULL, 0);
        dk->len = KEY_ENC_MAX;
        dk->hashed = true;
    }
}

static void
s_dkey_set_id (s_dkey_t *dk, uint32_t id)
{
    s_put_be (dk->buf, id, ID_LEN);
}

/*  Splits a stored entry into the app's key and value (borrowed from k and
    v). Returns false for a record that makes no sense. */
static bool
s_decode (const MDB_val *k, const MDB_val *v, const void **key, size_t *klen,
          const void **val, size_t *vlen)
{
    if (k->mv_size <= ID_LEN)
        return false;
    if (k->mv_size < KEY_ENC_MAX) {
        *key = (const uint8_t *) k->mv_data + ID_LEN;
        *klen = k->mv_size - ID_LEN;
        *val = v->mv_data;
        *vlen = v->mv_size;
        return true;
    }
    const uint8_t *p = (const uint8_t *) v->mv_data;
    if (v->mv_size < 2)
        return false;
    size_t kl = (size_t) s_get_be (p, 2);
    if (kl <= SHORT_MAX || kl > HAL_KV_KEY_MAX || 2 + kl > v->mv_size)
        return false;
    *key = p + 2;
    *klen = kl;
    *val = p + 2 + kl;
    *vlen = v->mv_size - 2 - kl;
    return true;
}

/*  Reads the record of ns: 0, MDB_NOTFOUND or another LMDB code. */
static int
s_usage_get (hal_kv_t *self, MDB_txn *txn, const char *ns, size_t nslen,
             s_usage_t *u)
{
    MDB_val k = { nslen, (void *) ns }, v;
    int rc = mdb_get (txn, self->ns, &k, &v);
    if (rc)
        return rc;
    if (v.mv_size != USAGE_LEN) {
        zsys_error ("kv: usage record of \"%s\" is damaged", ns);
        return MDB_CORRUPTED;
    }
    const uint8_t *p = (const uint8_t *) v.mv_data;
    u->id = (uint32_t) s_get_be (p, 4);
    u->bytes = s_get_be (p + 4, 8);
    u->count = s_get_be (p + 12, 8);
    return 0;
}

static int
s_usage_put (hal_kv_t *self, MDB_txn *txn, const char *ns, size_t nslen,
             const s_usage_t *u)
{
    uint8_t buf[USAGE_LEN];
    s_put_be (buf, u->id, 4);
    s_put_be (buf + 4, u->bytes, 8);
    s_put_be (buf + 12, u->count, 8);
    MDB_val k = { nslen, (void *) ns }, v = { sizeof buf, buf };
    return mdb_put (txn, self->ns, &k, &v, 0);
}

/*  Gives a namespace seen for the first time its id (ids are never
    reused: a namespace keeps its record, and its id, when emptied). */
static int
s_usage_new (hal_kv_t *self, MDB_txn *txn, s_usage_t *u)
{
    MDB_val k = { sizeof s_next_ns - 1, (void *) s_next_ns }, v;
    uint32_t next = 1;
    int rc = mdb_get (txn, self->meta, &k, &v);
    if (rc == 0 && v.mv_size == 4)
        next = (uint32_t) s_get_be ((const uint8_t *) v.mv_data, 4);
    else if (rc == 0)
        return MDB_CORRUPTED;
    else if (rc != MDB_NOTFOUND)
        return rc;
    if (next == UINT32_MAX)
        return MDB_MAP_FULL; /* four billion namespaces: treat as full */
    uint8_t buf[4];
    s_put_be (buf, next + 1, 4);
    v.mv_size = sizeof buf;
    v.mv_data = buf;
    rc = mdb_put (txn, self->meta, &k, &v, 0);
    if (rc)
        return rc;
    u->id = next;
    u->bytes = 0;
    u->count = 0;
    return 0;
}

/*  Looks up the entry under dk and checks it holds key; *vlen gets the
    length of its value. 0, MDB_NOTFOUND or another LMDB code. */
static int
s_entry_get (hal_kv_t *self, MDB_txn *txn, const s_dkey_t *dk, const void *key,
             size_t klen, const void **val, size_t *vlen)
{
    MDB_val k = { dk->len, (void *) dk->buf }, v;
    int rc = mdb_get (txn, self->data, &k, &v);
    if (rc)
        return rc;
    const void *skey;
    size_t sklen;
    if (!s_decode (&k, &v, &skey, &sklen, val, vlen))
        return MDB_CORRUPTED;
    if (sklen != klen || memcmp (skey, key, klen) != 0) {
        /*  Two long keys with one prefix and one BLAKE2b-256 hash. */
        zsys_error ("kv: two keys of %zu bytes share an encoding", klen);
        return MDB_KEYEXIST;
    }
    return 0;
}

hal_kv_t *
hal_kv_open (const char *dir, size_t map_size, char *err, size_t errlen)
{
    if (sodium_init () < 0) {
        aaax_seterr (err, errlen, "cannot initialise libsodium");
        return NULL;
    }
    if (hal_fs_prepare_dir (dir, err, errlen) != 0)
        return NULL;
    hal_kv_t *self = (hal_kv_t *) calloc (1, sizeof *self);
    if (!self) {
        aaax_seterr (err, errlen, "out of memory");
        return NULL;
    }
    int rc = mdb_env_create (&self->env);
    if (rc)
        goto err_free;
    mdb_env_set_maxdbs (self->env, 4);
    mdb_env_set_maxreaders (self->env, MAX_READERS);
    if (map_size && (rc = mdb_env_set_mapsize (self->env, map_size)) != 0)
        goto err_close_env;
    rc = mdb_env_open (self->env, dir, MDB_NOTLS, 0600);
    if (rc)
        goto err_close_env;
    if (mdb_env_get_maxkeysize (self->env) < KEY_ENC_MAX) {
        rc = MDB_BAD_VALSIZE;
        goto err_close_env;
    }
    int dead = 0;
    mdb_reader_check (self->env, &dead);

    MDB_txn *txn;
    rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc)
        goto err_close_env;
    if ((rc = mdb_dbi_open (txn, "meta", MDB_CREATE, &self->meta)) != 0
        || (rc = mdb_dbi_open (txn, "ns", MDB_CREATE, &self->ns)) != 0
        || (rc = mdb_dbi_open (txn, "data", MDB_CREATE, &self->data)) != 0) {
        mdb_txn_abort (txn);
        goto err_close_env;
    }
    rc = mdb_txn_commit (txn);
    if (rc)
        goto err_close_env;
    return self;

err_close_env:
    mdb_env_close (self->env);
err_free:
    aaax_seterr (err, errlen, "cannot open key-value store in %s: %s", dir,
                 mdb_strerror (rc));
    free (self);
    return NULL;
}

void
hal_kv_destroy (hal_kv_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    hal_kv_t *self = *self_p;
    mdb_env_close (self->env);
    free (self);
    *self_p = NULL;
}

int
hal_kv_get (hal_kv_t *self, const char *ns, const void *key, size_t klen,
            void **val_p, size_t *vlen_p)
{
    size_t nslen;
    int result = s_check (ns, key, klen, &nslen);
    if (result)
        return result;
    s_dkey_t dk;
    s_dkey_init (&dk, key, klen);
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return s_lmdb_err ("read transaction", rc);
    s_usage_t u;
    const void *val;
    size_t vlen;
    rc = s_usage_get (self, txn, ns, nslen, &u);
    if (rc == 0) {
        s_dkey_set_id (&dk, u.id);
        rc = s_entry_get (self, txn, &dk, key, klen, &val, &vlen);
    }
    if (rc == MDB_NOTFOUND || rc == MDB_KEYEXIST)
        result = AAAX_ENOENT;
    else if (rc)
        result = s_lmdb_err ("get", rc);
    else {
        void *copy = malloc (vlen ? vlen : 1);
        if (!copy)
            result = AAAX_ENOMEM;
        else {
            memcpy (copy, val, vlen);
            *val_p = copy;
            *vlen_p = vlen;
        }
    }
    mdb_txn_abort (txn);
    return result;
}

int
hal_kv_put (hal_kv_t *self, const char *ns, const void *key, size_t klen,
            const void *val, size_t vlen, uint64_t quota_bytes)
{
    size_t nslen;
    int result = s_check (ns, key, klen, &nslen);
    if (result)
        return result;
    if (vlen > HAL_KV_VALUE_MAX)
        return AAAX_ETOOBIG;
    if (vlen && !val)
        return AAAX_EINVAL;
    s_dkey_t dk;
    s_dkey_init (&dk, key, klen);

    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc)
        return s_lmdb_err ("write transaction", rc);
    s_usage_t u;
    rc = s_usage_get (self, txn, ns, nslen, &u);
    if (rc == MDB_NOTFOUND)
        rc = s_usage_new (self, txn, &u);
    if (rc)
        goto err_lmdb;
    s_dkey_set_id (&dk, u.id);

    const void *old;
    size_t oldlen;
    uint64_t freed = 0;
    bool exists = false;
    rc = s_entry_get (self, txn, &dk, key, klen, &old, &oldlen);
    if (rc == 0) {
        freed = klen + oldlen;
        exists = true;
    } else if (rc != MDB_NOTFOUND)
        goto err_lmdb;
    if (u.bytes < freed) {
        rc = MDB_CORRUPTED;
        goto err_lmdb;
    }
    uint64_t total = u.bytes - freed + klen + vlen;
    if (quota_bytes && total > quota_bytes) {
        result = AAAX_ELIMIT;
        goto err_abort_txn;
    }

    MDB_val k = { dk.len, dk.buf };
    MDB_val v = { dk.hashed ? 2 + klen + vlen : vlen, NULL };
    if (v.mv_size == 0) {
        v.mv_data = (void *) "";
        rc = mdb_put (txn, self->data, &k, &v, 0);
    } else
        rc = mdb_put (txn, self->data, &k, &v, MDB_RESERVE);
    if (rc)
        goto err_lmdb;
    uint8_t *p = (uint8_t *) v.mv_data;
    if (dk.hashed) {
        s_put_be (p, klen, 2);
        memcpy (p + 2, key, klen);
        p += 2 + klen;
    }
    if (vlen)
        memcpy (p, val, vlen);

    u.bytes = total;
    if (!exists)
        u.count++;
    rc = s_usage_put (self, txn, ns, nslen, &u);
    if (rc)
        goto err_lmdb;
    rc = mdb_txn_commit (txn);
    if (rc)
        return s_lmdb_err ("commit", rc);
    return 0;

err_lmdb:
    result = s_lmdb_err ("put", rc);
err_abort_txn:
    mdb_txn_abort (txn);
    return result;
}

int
hal_kv_del (hal_kv_t *self, const char *ns, const void *key, size_t klen)
{
    size_t nslen;
    int result = s_check (ns, key, klen, &nslen);
    if (result)
        return result;
    s_dkey_t dk;
    s_dkey_init (&dk, key, klen);

    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc)
        return s_lmdb_err ("write transaction", rc);
    s_usage_t u;
    const void *old;
    size_t oldlen;
    rc = s_usage_get (self, txn, ns, nslen, &u);
    if (rc == 0) {
        s_dkey_set_id (&dk, u.id);
        rc = s_entry_get (self, txn, &dk, key, klen, &old, &oldlen);
    }
    if (rc == MDB_NOTFOUND || rc == MDB_KEYEXIST) {
        result = AAAX_ENOENT;
        goto err_abort_txn;
    }
    if (rc)
        goto err_lmdb;
    uint64_t freed = klen + oldlen;
    if (u.bytes < freed || u.count == 0) {
        rc = MDB_CORRUPTED;
        goto err_lmdb;
    }
    MDB_val k = { dk.len, dk.buf };
    rc = mdb_del (txn, self->data, &k, NULL);
    if (rc)
        goto err_lmdb;
    u.bytes -= freed;
    u.count--;
    rc = s_usage_put (self, txn, ns, nslen, &u);
    if (rc)
        goto err_lmdb;
    rc = mdb_txn_commit (txn);
    if (rc)
        return s_lmdb_err ("commit", rc);
    return 0;

err_lmdb:
    result = s_lmdb_err ("delete", rc);
err_abort_txn:
    mdb_txn_abort (txn);
    return result;
}

int
hal_kv_usage (hal_kv_t *self, const char *ns, uint64_t *bytes, uint64_t *count)
{
    size_t nslen;
    int result = s_check (ns, "k", 1, &nslen);
    if (result)
        return result;
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return s_lmdb_err ("read transaction", rc);
    s_usage_t u = { 0, 0, 0 };
    rc = s_usage_get (self, txn, ns, nslen, &u);
    mdb_txn_abort (txn);
    if (rc && rc != MDB_NOTFOUND)
        return s_lmdb_err ("usage", rc);
    *bytes = u.bytes;
    *count = u.count;
    return 0;
}

int
hal_kv_each (hal_kv_t *self, const char *ns, hal_kv_each_fn *fn, void *arg)
{
    size_t nslen;
    int result = s_check (ns, "k", 1, &nslen);
    if (result)
        return result;
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return s_lmdb_err ("read transaction", rc);
    s_usage_t u;
    rc = s_usage_get (self, txn, ns, nslen, &u);
    if (rc) {
        mdb_txn_abort (txn);
        return rc == MDB_NOTFOUND ? 0 : s_lmdb_err ("each", rc);
    }
    MDB_cursor *cur;
    rc = mdb_cursor_open (txn, self->data, &cur);
    if (rc) {
        mdb_txn_abort (txn);
        return s_lmdb_err ("cursor", rc);
    }
    uint8_t prefix[ID_LEN];
    s_put_be (prefix, u.id, ID_LEN);
    MDB_val k = { ID_LEN, prefix }, v;
    rc = mdb_cursor_get (cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size > ID_LEN
           && memcmp (k.mv_data, prefix, ID_LEN) == 0) {
        const void *key, *val;
        size_t klen, vlen;
        if (!s_decode (&k, &v, &key, &klen, &val, &vlen)) {
            rc = MDB_CORRUPTED;
            break;
        }
        result = fn (arg, key, klen, val, vlen);
        if (result)
            break;
        rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    if (rc && rc != MDB_NOTFOUND)
        result = s_lmdb_err ("each", rc);
    mdb_cursor_close (cur);
    mdb_txn_abort (txn);
    return result;
}
