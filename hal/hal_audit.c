/*  hal_audit.c — the kernel's journal (see hal_audit.h): a hash-chained,
    periodically signed audit log and the kernel actors' side tables, in an
    LMDB environment of their own, written by one thread with group commit.

    Appending packs the record's fields (all but seq and ts) into a buffer
    at once, outside any lock, and queues it under the mutex with its ticket
    and timestamp. The writer takes the whole queue, numbers the records,
    builds each body as {seq, ts, <packed fields>}, chains it, applies the
    side-table changes, adds checkpoints where due, and commits once with a
    synced transaction. It then publishes each ticket's result in a ring
    indexed by ticket and wakes the waiters. */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <czmq.h>
#include <lmdb.h>
#include <msgpack.h>
#include <sodium.h>

#include "aaax.h"
#include "chan_mpk.h"
#include "hal_audit.h"
#include "hal_clock.h"

#define S_RING HAL_AUDIT_RESULTS /* power of two */
#define S_HASH 32
#define S_CKPT_PREFIX "aaax-audit-checkpoint-v1"
#define S_FORMAT "aaax-audit-v1"
/*  Nesting accepted in a body when checking it: a body is a map around
    args of at most AAAX_MAX_DEPTH levels. */
#define S_CHECK_DEPTH (AAAX_MAX_DEPTH + 2)

static const char *s_side_names[HAL_AUDIT_DB_COUNT] = {
    [HAL_AUDIT_DB_CAPS] = "caps",
    [HAL_AUDIT_DB_APPROVALS] = "approvals",
};

typedef struct _s_item_t {
    struct _s_item_t *next;
    uint64_t ticket;
    double ts;
    uint32_t npairs; /* fields packed in pairs (seq and ts excluded) */
    char *pairs;     /* malloc'd */
    size_t pairslen;
    /*  Side-table changes, flat: [u8 db][u8 del][u32 klen][u32 vlen]
        [key][val] each. */
    uint8_t *puts;
    size_t putslen;
    /*  Set by the writer. */
    uint64_t seq;
    int status;
} s_item_t;

typedef struct {
    uint64_t ticket;
    uint64_t seq;
    int status;
} s_result_t;

typedef struct _s_waiter_t {
    struct _s_waiter_t *prev, *next;
    uint64_t ticket;
} s_waiter_t;

struct _hal_audit_t {
    MDB_env *env;
    MDB_dbi records, meta;
    MDB_dbi dbi[HAL_AUDIT_DB_COUNT];
    const hal_keys_t *keys;
    uint32_t checkpoint_every;

    /*  The writer's own state (and open's before the writer starts). */
    uint64_t head_seq;
    uint8_t head_hash[S_HASH];
    uint64_t since_ckpt; /* records after the last checkpoint */
    uint64_t batches;    /* transactions attempted */
    msgpack_sbuffer scratch;

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* writer: queue not empty or stop */
    pthread_cond_t done_cv; /* waiters: results published */
    pthread_cond_t room_cv; /* writer: a waiter collected its result */

    /*  Guarded by mu. */
    s_item_t *qhead, *qtail;
    bool stop;
    uint64_t last_ticket; /* last issued */
    uint64_t done_ticket; /* last answered */
    s_result_t *ring;
    s_waiter_t *waiters;
    bool room_wait;
    hal_audit_stats_t stats;
};

/*  ---- encoding helpers ---------------------------------------------- */

static void
s_be64 (uint64_t v, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t) v;
        v >>= 8;
    }
}

static uint64_t
s_from_be64 (const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

static int
s_pack_kv (msgpack_packer *pk, const char *key, const char *val)
{
    size_t klen = strlen (key), vlen = strlen (val);
    int rc = msgpack_pack_str (pk, klen);
    rc |= msgpack_pack_str_body (pk, key, klen);
    rc |= msgpack_pack_str (pk, vlen);
    rc |= msgpack_pack_str_body (pk, val, vlen);
    return rc;
}

static int
s_pack_key (msgpack_packer *pk, const char *key)
{
    size_t klen = strlen (key);
    int rc = msgpack_pack_str (pk, klen);
    return rc | msgpack_pack_str_body (pk, key, klen);
}

/*  hash = BLAKE2b-256 (prev || seq_be || body) */
static void
s_chain_hash (const uint8_t prev[S_HASH], uint64_t seq, const void *body,
              size_t len, uint8_t out[S_HASH])
{
    crypto_generichash_state st;
    uint8_t be[8];
    s_be64 (seq, be);
    crypto_generichash_init (&st, NULL, 0, S_HASH);
    crypto_generichash_update (&st, prev, S_HASH);
    crypto_generichash_update (&st, be, sizeof be);
    crypto_generichash_update (&st, (const unsigned char *) body, len);
    crypto_generichash_final (&st, out, S_HASH);
}

/*  The message a checkpoint signs. */
static void
s_ckpt_msg (uint64_t seq, const uint8_t head[S_HASH],
            uint8_t msg[sizeof S_CKPT_PREFIX + 8 + S_HASH])
{
    memcpy (msg, S_CKPT_PREFIX, sizeof S_CKPT_PREFIX); /* with its NUL */
    s_be64 (seq, msg + sizeof S_CKPT_PREFIX);
    memcpy (msg + sizeof S_CKPT_PREFIX + 8, head, S_HASH);
}

/*  ---- checking one record (the verifier's core, pure) --------------- */

static bool
s_str_is (const chan_mpk_obj_t *o, const char *s)
{
    size_t len = strlen (s);
    return o->type == CHAN_MPK_STR && o->len == len
           && memcmp (o->ptr, s, len) == 0;
}

int
hal_audit_check_record (const uint8_t prev_hash[32], uint64_t seq,
                        const void *val, size_t vlen, const uint8_t pk[32],
                        bool *is_checkpoint, uint8_t hash_out[32], char *why,
                        size_t whylen)
{
    if (is_checkpoint)
        *is_checkpoint = false;
    if (!val || vlen <= S_HASH) {
        aaax_seterr (why, whylen, "value of %zu bytes is too short", vlen);
        return AAAX_EINVAL;
    }
    const uint8_t *stored = (const uint8_t *) val;
    const uint8_t *body = stored + S_HASH;
    size_t blen = vlen - S_HASH;
    uint8_t hash[S_HASH];
    s_chain_hash (prev_hash, seq, body, blen, hash);
    if (memcmp (hash, stored, S_HASH) != 0) {
        aaax_seterr (why, whylen,
                     "hash does not match the body and the previous hash");
        return AAAX_EINVAL;
    }
    if (!chan_mpk_valid (body, blen, S_CHECK_DEPTH)) {
        aaax_seterr (why, whylen, "body is not one well-formed msgpack value");
        return AAAX_EINVAL;
    }
    chan_mpk_reader_t r;
    chan_mpk_obj_t o;
    chan_mpk_reader_init (&r, body, blen);
    if (chan_mpk_next (&r, &o) != 0 || o.type != CHAN_MPK_MAP) {
        aaax_seterr (why, whylen, "body is not a map");
        return AAAX_EINVAL;
    }
    uint32_t n = o.v.n;
    bool has_seq = false, has_ts = false, has_kind = false;
    bool has_subject = false, has_verdict = false;
    bool has_head = false, has_sig = false;
    uint64_t body_seq = 0;
    chan_mpk_obj_t kind = { 0 }, head = { 0 }, sig = { 0 };
    for (uint32_t i = 0; i < n; i++) {
        chan_mpk_obj_t k, v;
        if (chan_mpk_next (&r, &k) != 0 || k.type != CHAN_MPK_STR) {
            aaax_seterr (why, whylen, "body has a key that is not a string");
            return AAAX_EINVAL;
        }
        const chan_mpk_reader_t at = r;
        if (chan_mpk_next (&r, &v) != 0) {
            aaax_seterr (why, whylen, "body is malformed");
            return AAAX_EINVAL;
        }
        bool dup = false, bad = false;
        const char *name = NULL;
        if (s_str_is (&k, "seq")) {
            name = "seq", dup = has_seq, has_seq = true;
            bad = v.type != CHAN_MPK_UINT;
            body_seq = v.v.u;
        } else if (s_str_is (&k, "ts")) {
            name = "ts", dup = has_ts, has_ts = true;
            bad = v.type != CHAN_MPK_FLOAT && v.type != CHAN_MPK_UINT;
        } else if (s_str_is (&k, "kind")) {
            name = "kind", dup = has_kind, has_kind = true;
            bad = v.type != CHAN_MPK_STR;
            kind = v;
        } else if (s_str_is (&k, "subject")) {
            name = "subject", dup = has_subject, has_subject = true;
            bad = v.type != CHAN_MPK_STR;
        } else if (s_str_is (&k, "verdict")) {
            name = "verdict", dup = has_verdict, has_verdict = true;
            bad = v.type != CHAN_MPK_STR;
        } else if (s_str_is (&k, "head")) {
            name = "head", dup = has_head, has_head = true;
            bad = v.type != CHAN_MPK_BIN || v.len != S_HASH;
            head = v;
        } else if (s_str_is (&k, "sig")) {
            name = "sig", dup = has_sig, has_sig = true;
            bad = v.type != CHAN_MPK_BIN || v.len != HAL_KEYS_SIG_BYTES;
            sig = v;
        }
        if (dup || bad) {
            aaax_seterr (why, whylen, "body field \"%s\" is %s", name,
                         dup ? "repeated" : "mistyped");
            return AAAX_EINVAL;
        }
        /*  Skip the whole value (containers included) from its start. */
        r = at;
        if (chan_mpk_skip (&r, S_CHECK_DEPTH) != 0) {
            aaax_seterr (why, whylen, "body is malformed");
            return AAAX_EINVAL;
        }
    }
    if (!has_seq || !has_ts || !has_kind) {
        aaax_seterr (why, whylen, "body lacks \"%s\"",
                     !has_seq  ? "seq"
                     : !has_ts ? "ts"
                               : "kind");
        return AAAX_EINVAL;
    }
    if (body_seq != seq) {
        aaax_seterr (why, whylen, "body says seq %llu under key %llu",
                     (unsigned long long) body_seq, (unsigned long long) seq);
        return AAAX_EINVAL;
    }
    if (s_str_is (&kind, "checkpoint")) {
        if (!has_head || !has_sig) {
            aaax_seterr (why, whylen, "checkpoint lacks \"%s\"",
                         !has_head ? "head" : "sig");
            return AAAX_EINVAL;
        }
        if (memcmp (head.ptr, prev_hash, S_HASH) != 0) {
            aaax_seterr (why, whylen,
                         "checkpoint head is not the previous record's hash");
            return AAAX_EINVAL;
        }
        if (pk) {
            uint8_t msg[sizeof S_CKPT_PREFIX + 8 + S_HASH];
            s_ckpt_msg (seq, prev_hash, msg);
            if (hal_keys_verify (pk, msg, sizeof msg, (const uint8_t *) sig.ptr)
                != 0) {
                aaax_seterr (why, whylen, "checkpoint signature is not valid");
                return AAAX_EINVAL;
            }
        }
        if (is_checkpoint)
            *is_checkpoint = true;
    } else if (!has_subject || !has_verdict) {
        aaax_seterr (why, whylen, "body lacks \"%s\"",
                     !has_subject ? "subject" : "verdict");
        return AAAX_EINVAL;
    }
    if (hash_out)
        memcpy (hash_out, hash, S_HASH);
    return 0;
}

/*  True when body (a packed map) has kind "checkpoint"; used at open to
    count the records after the last checkpoint. */
static bool
s_body_is_checkpoint (const void *body, size_t len)
{
    chan_mpk_reader_t r;
    chan_mpk_obj_t o, k;
    chan_mpk_reader_init (&r, body, len);
    if (chan_mpk_next (&r, &o) != 0 || o.type != CHAN_MPK_MAP)
        return false;
    for (uint32_t i = 0; i < o.v.n; i++) {
        if (chan_mpk_next (&r, &k) != 0 || k.type != CHAN_MPK_STR)
            return false;
        if (s_str_is (&k, "kind")) {
            chan_mpk_obj_t v;
            return chan_mpk_next (&r, &v) == 0 && s_str_is (&v, "checkpoint");
        }
        if (chan_mpk_skip (&r, S_CHECK_DEPTH) != 0)
            return false;
    }
    return false;
}

/*  ---- the writer ----------------------------------------------------- */

/*  Appends a record whose body is in self->scratch after a 32-byte
    placeholder: fills in the hash, puts it, advances *seq / prev. */
static int
s_put_chained (hal_audit_t *self, MDB_txn *txn, uint64_t seq,
               uint8_t prev[S_HASH])
{
    msgpack_sbuffer *sb = &self->scratch;
    uint8_t hash[S_HASH];
    s_chain_hash (prev, seq, sb->data + S_HASH, sb->size - S_HASH, hash);
    memcpy (sb->data, hash, S_HASH);
    uint8_t kbuf[8];
    s_be64 (seq, kbuf);
    MDB_val k = { sizeof kbuf, kbuf }, v = { sb->size, sb->data };
    int rc = mdb_put (txn, self->records, &k, &v, MDB_APPEND);
    if (rc)
        return rc;
    memcpy (prev, hash, S_HASH);
    return 0;
}

static int
s_body_start (hal_audit_t *self, msgpack_packer *pk, uint32_t npairs,
              uint64_t seq, double ts)
{
    static const uint8_t zeros[S_HASH];
    msgpack_sbuffer *sb = &self->scratch;
    sb->size = 0;
    msgpack_packer_init (pk, sb, msgpack_sbuffer_write);
    int rc = msgpack_sbuffer_write (sb, (const char *) zeros, S_HASH);
    rc |= msgpack_pack_map (pk, npairs);
    rc |= s_pack_key (pk, "seq");
    rc |= msgpack_pack_uint64 (pk, seq);
    rc |= s_pack_key (pk, "ts");
    rc |= msgpack_pack_double (pk, ts);
    return rc ? ENOMEM : 0; /* fails the transaction */
}

static int
s_put_record (hal_audit_t *self, MDB_txn *txn, s_item_t *it, uint64_t seq,
              uint8_t prev[S_HASH])
{
    msgpack_packer pk;
    int rc = s_body_start (self, &pk, it->npairs + 2, seq, it->ts);
    if (!rc && msgpack_sbuffer_write (&self->scratch, it->pairs, it->pairslen))
        rc = ENOMEM;
    if (!rc)
        rc = s_put_chained (self, txn, seq, prev);
    const uint8_t *p = it->puts, *end = p + it->putslen;
    while (!rc && p < end) {
        uint32_t klen, vlen;
        memcpy (&klen, p + 2, 4);
        memcpy (&vlen, p + 6, 4);
        MDB_val k = { klen, (void *) (p + 10) };
        MDB_val v = { vlen, (void *) (p + 10 + klen) };
        MDB_dbi dbi = self->dbi[p[0]];
        if (p[1]) {
            rc = mdb_del (txn, dbi, &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        } else
            rc = mdb_put (txn, dbi, &k, &v, 0);
        p += 10 + klen + vlen;
    }
    return rc;
}

static int
s_put_checkpoint (hal_audit_t *self, MDB_txn *txn, uint64_t seq,
                  uint8_t prev[S_HASH])
{
    uint8_t msg[sizeof S_CKPT_PREFIX + 8 + S_HASH];
    uint8_t sig[HAL_KEYS_SIG_BYTES];
    s_ckpt_msg (seq, prev, msg);
    hal_keys_sign (self->keys, msg, sizeof msg, sig);
    msgpack_packer pk;
    int rc = s_body_start (self, &pk, 5, seq, hal_clock_wall_s ());
    if (rc)
        return rc;
    int prc = s_pack_kv (&pk, "kind", "checkpoint");
    prc |= s_pack_key (&pk, "head");
    prc |= msgpack_pack_bin (&pk, S_HASH);
    prc |= msgpack_pack_bin_body (&pk, prev, S_HASH);
    prc |= s_pack_key (&pk, "sig");
    prc |= msgpack_pack_bin (&pk, sizeof sig);
    prc |= msgpack_pack_bin_body (&pk, sig, sizeof sig);
    if (prc)
        return ENOMEM;
    return s_put_chained (self, txn, seq, prev);
}

/*  Commits batch (may be NULL) in one transaction, with the checkpoints
    that fall due, and a final one when final is set and records follow
    the last checkpoint. Sets each item's seq and status; on success
    advances the chain head. Returns the number of checkpoints written, or
    -1 when the transaction failed. */
static int
s_commit (hal_audit_t *self, s_item_t *batch, bool final)
{
    uint64_t seq = self->head_seq;
    uint8_t prev[S_HASH];
    memcpy (prev, self->head_hash, S_HASH);
    uint64_t since = self->since_ckpt;
    int nckpt = 0;
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    for (s_item_t *it = batch; !rc && it; it = it->next) {
        it->seq = ++seq;
        rc = s_put_record (self, txn, it, seq, prev);
        if (!rc && ++since >= self->checkpoint_every) {
            rc = s_put_checkpoint (self, txn, ++seq, prev);
            since = 0;
            nckpt++;
        }
    }
    if (!rc && final && since > 0) {
        rc = s_put_checkpoint (self, txn, ++seq, prev);
        since = 0;
        nckpt++;
    }
    if (!rc) {
        rc = mdb_txn_commit (txn);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort (txn);
    if (rc) {
        zsys_error ("audit: commit of records from %llu failed: %s",
                    (unsigned long long) (self->head_seq + 1),
                    mdb_strerror (rc));
        for (s_item_t *it = batch; it; it = it->next) {
            it->seq = 0;
            it->status = AAAX_EIO;
        }
        return -1;
    }
    for (s_item_t *it = batch; it; it = it->next)
        it->status = 0;
    self->head_seq = seq;
    memcpy (self->head_hash, prev, S_HASH);
    self->since_ckpt = since;
    return nckpt;
}

/*  True when publishing ticket t would overwrite a result a registered
    waiter has not collected yet. Called with mu held. */
static bool
s_ring_blocked (hal_audit_t *self, uint64_t t)
{
    if (t < S_RING)
        return false;
    for (s_waiter_t *w = self->waiters; w; w = w->next)
        if (w->ticket <= t - S_RING)
            return true;
    return false;
}

static void
s_publish (hal_audit_t *self, s_item_t *batch, int nckpt)
{
    pthread_mutex_lock (&self->mu);
    if (nckpt >= 0) {
        self->stats.commits++;
        self->stats.checkpoints += (uint64_t) nckpt;
        self->stats.records = self->head_seq;
    } else
        self->stats.failures++;
    for (s_item_t *it = batch; it; it = it->next) {
        while (s_ring_blocked (self, it->ticket)) {
            pthread_cond_broadcast (&self->done_cv);
            self->room_wait = true;
            pthread_cond_wait (&self->room_cv, &self->mu);
            self->room_wait = false;
        }
        s_result_t *slot = &self->ring[it->ticket & (S_RING - 1)];
        slot->ticket = it->ticket;
        slot->seq = it->seq;
        slot->status = it->status;
        self->done_ticket = it->ticket;
    }
    pthread_cond_broadcast (&self->done_cv);
    pthread_mutex_unlock (&self->mu);
}

static void
s_free_items (s_item_t *it)
{
    while (it) {
        s_item_t *next = it->next;
        free (it->pairs);
        free (it->puts);
        free (it);
        it = next;
    }
}

static void *
s_writer (void *arg)
{
    hal_audit_t *self = (hal_audit_t *) arg;
    while (true) {
        pthread_mutex_lock (&self->mu);
        while (!self->qhead && !self->stop)
            pthread_cond_wait (&self->work_cv, &self->mu);
        s_item_t *batch = self->qhead;
        self->qhead = self->qtail = NULL;
        pthread_mutex_unlock (&self->mu);
        if (!batch)
            break; /* stop, and nothing left */
        int nckpt = s_commit (self, batch, false);
        s_publish (self, batch, nckpt);
        s_free_items (batch);
        if (++self->batches % 1024 == 0) {
            int dead = 0;
            mdb_reader_check (self->env, &dead);
        }
    }
    if (self->since_ckpt > 0) {
        int nckpt = s_commit (self, NULL, true);
        s_publish (self, NULL, nckpt);
    }
    return NULL;
}

/*  ---- the journal ----------------------------------------------------- */

/*  Reads the chain head and counts the records after the last checkpoint
    (up to checkpoint_every: more would only mean "due now"). */
static int
s_read_head (hal_audit_t *self, MDB_txn *txn, char *err, size_t errlen)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open (txn, self->records, &cur);
    if (rc)
        return rc;
    MDB_val k, v;
    rc = mdb_cursor_get (cur, &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND) {
        mdb_cursor_close (cur);
        return 0; /* empty log */
    }
    if (rc == 0 && (k.mv_size != 8 || v.mv_size <= S_HASH)) {
        aaax_seterr (err, errlen, "the last audit record is damaged");
        mdb_cursor_close (cur);
        return MDB_CORRUPTED;
    }
    if (rc == 0) {
        self->head_seq = s_from_be64 ((const uint8_t *) k.mv_data);
        memcpy (self->head_hash, v.mv_data, S_HASH);
    }
    while (rc == 0 && self->since_ckpt < self->checkpoint_every) {
        if (v.mv_size > S_HASH
            && s_body_is_checkpoint ((const uint8_t *) v.mv_data + S_HASH,
                                     v.mv_size - S_HASH))
            break;
        self->since_ckpt++;
        rc = mdb_cursor_get (cur, &k, &v, MDB_PREV);
    }
    mdb_cursor_close (cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
s_open_dbs (hal_audit_t *self, char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = mdb_dbi_open (txn, "records", MDB_CREATE, &self->records);
    if (!rc)
        rc = mdb_dbi_open (txn, "meta", MDB_CREATE, &self->meta);
    for (int i = 0; !rc && i < HAL_AUDIT_DB_COUNT; i++)
        rc = mdb_dbi_open (txn, s_side_names[i], MDB_CREATE, &self->dbi[i]);
    if (!rc) {
        MDB_val k = { 6, (void *) "format" };
        MDB_val v = { strlen (S_FORMAT), (void *) S_FORMAT };
        rc = mdb_put (txn, self->meta, &k, &v, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST)
            rc = 0;
    }
    if (!rc)
        rc = s_read_head (self, txn, err, errlen);
    if (rc) {
        mdb_txn_abort (txn);
        return rc;
    }
    return mdb_txn_commit (txn);
}

hal_audit_t *
hal_audit_open (const char *data_dir, size_t map_size, const hal_keys_t *keys,
                uint32_t checkpoint_every, char *err, size_t errlen)
{
    if (!data_dir || !keys || checkpoint_every < 1) {
        aaax_seterr (err, errlen, "audit: bad arguments");
        return NULL;
    }
    if (sodium_init () < 0) {
        aaax_seterr (err, errlen, "audit: cannot initialise libsodium");
        return NULL;
    }
    char path[PATH_MAX], why[128] = "";
    if ((size_t) snprintf (path, sizeof path, "%s/audit", data_dir)
        >= sizeof path) {
        aaax_seterr (err, errlen, "audit: path too long");
        return NULL;
    }
    if (mkdir (path, 0700) != 0 && errno != EEXIST) {
        aaax_seterr (err, errlen, "cannot create %s: %s", path,
                     strerror (errno));
        return NULL;
    }
    if (chmod (path, 0700) != 0) {
        aaax_seterr (err, errlen, "cannot set mode 0700 on %s: %s", path,
                     strerror (errno));
        return NULL;
    }
    hal_audit_t *self = (hal_audit_t *) calloc (1, sizeof *self);
    if (!self) {
        aaax_seterr (err, errlen, "out of memory");
        return NULL;
    }
    self->keys = keys;
    self->checkpoint_every = checkpoint_every;
    msgpack_sbuffer_init (&self->scratch);
    self->ring = (s_result_t *) calloc (S_RING, sizeof *self->ring);
    if (!self->ring) {
        aaax_seterr (err, errlen, "out of memory");
        free (self);
        return NULL;
    }

    int rc = mdb_env_create (&self->env);
    if (rc)
        goto err_lmdb;
    mdb_env_set_maxdbs (self->env, 2 + HAL_AUDIT_DB_COUNT);
    rc = mdb_env_set_mapsize (self->env, map_size);
    if (!rc)
        rc = mdb_env_open (self->env, path, MDB_NOTLS, 0600);
    if (!rc) {
        /*  Reader slots left by readers that died mid-read would keep
            pages from being reused. */
        int dead = 0;
        mdb_reader_check (self->env, &dead);
        rc = s_open_dbs (self, why, sizeof why);
    }
    if (rc)
        goto err_env;

    pthread_condattr_t ca;
    pthread_condattr_init (&ca);
    pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
    pthread_mutex_init (&self->mu, NULL);
    pthread_cond_init (&self->work_cv, NULL);
    pthread_cond_init (&self->done_cv, &ca);
    pthread_cond_init (&self->room_cv, NULL);
    pthread_condattr_destroy (&ca);
    self->stats.records = self->head_seq;
    if (pthread_create (&self->thread, NULL, s_writer, self) != 0) {
        aaax_seterr (err, errlen, "cannot start the audit writer");
        pthread_cond_destroy (&self->room_cv);
        pthread_cond_destroy (&self->done_cv);
        pthread_cond_destroy (&self->work_cv);
        pthread_mutex_destroy (&self->mu);
        mdb_env_close (self->env);
        goto err_free;
    }
    return self;

err_env:
    mdb_env_close (self->env);
err_lmdb:
    aaax_seterr (err, errlen, "cannot open %s: %s", path,
                 *why ? why : mdb_strerror (rc));
err_free:
    msgpack_sbuffer_destroy (&self->scratch);
    free (self->ring);
    free (self);
    return NULL;
}

void
hal_audit_close (hal_audit_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    hal_audit_t *self = *self_p;
    pthread_mutex_lock (&self->mu);
    self->stop = true;
    pthread_cond_signal (&self->work_cv);
    pthread_mutex_unlock (&self->mu);
    pthread_join (self->thread, NULL);
    pthread_cond_destroy (&self->room_cv);
    pthread_cond_destroy (&self->done_cv);
    pthread_cond_destroy (&self->work_cv);
    pthread_mutex_destroy (&self->mu);
    mdb_env_close (self->env);
    msgpack_sbuffer_destroy (&self->scratch);
    free (self->ring);
    free (self);
    *self_p = NULL;
}

static bool
s_str_ok (const char *s)
{
    return s && strnlen (s, HAL_AUDIT_MAX_STR + 1) <= HAL_AUDIT_MAX_STR;
}

/*  Packs the record's fields (seq and ts excepted) in the documented
    order; returns the number of pairs, or 0 on allocation failure. */
static uint32_t
s_pack_fields (const hal_audit_rec_t *rec, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sb, msgpack_sbuffer_write);
    uint32_t n = 0;
    int rc = 0;
    const char *names[] = { "kind",    "subject", "action", "target",
                            "verdict", "rule",    "reason" };
    const char *vals[] = { rec->kind,    rec->subject, rec->action, rec->target,
                           rec->verdict, rec->rule,    rec->reason };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (vals[i]) {
            rc |= s_pack_kv (&pk, names[i], vals[i]);
            n++;
        }
    if (rec->args) {
        rc |= s_pack_key (&pk, "args");
        rc |=
            msgpack_sbuffer_write (sb, (const char *) rec->args, rec->argslen);
        n++;
    }
    if (rec->corr) {
        rc |= s_pack_kv (&pk, "corr", rec->corr);
        n++;
    }
    return rc ? 0 : n;
}

static bool
s_rec_ok (const hal_audit_rec_t *rec)
{
    if (!rec || !s_str_ok (rec->kind) || !s_str_ok (rec->subject)
        || !s_str_ok (rec->verdict) || !strcmp (rec->kind, "checkpoint"))
        return false;
    const char *opt[] = { rec->action, rec->target, rec->rule, rec->reason,
                          rec->corr };
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
        if (opt[i] && !s_str_ok (opt[i]))
            return false;
    if (rec->args
        && (rec->argslen > HAL_AUDIT_MAX_ARGS
            || !chan_mpk_valid (rec->args, rec->argslen, AAAX_MAX_DEPTH)))
        return false;
    return true;
}

uint64_t
hal_audit_append (hal_audit_t *self, const hal_audit_rec_t *rec,
                  const hal_audit_put_t *puts, size_t nputs)
{
    if (!s_rec_ok (rec) || (nputs && !puts))
        return 0;
    size_t putslen = 0;
    for (size_t i = 0; i < nputs; i++) {
        const hal_audit_put_t *p = &puts[i];
        if ((unsigned) p->db >= HAL_AUDIT_DB_COUNT || !p->key || p->klen == 0
            || p->klen > HAL_AUDIT_MAX_KEY || (p->val && p->vlen > UINT32_MAX)
            || (!p->val && p->vlen))
            return 0;
        putslen += 10 + p->klen + (p->val ? p->vlen : 0);
    }
    s_item_t *it = (s_item_t *) calloc (1, sizeof *it);
    if (!it)
        return 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    it->npairs = s_pack_fields (rec, &sb);
    it->pairslen = sb.size;
    it->pairs = msgpack_sbuffer_release (&sb);
    if (!it->npairs || !it->pairs)
        goto err_free;
    if (putslen) {
        it->puts = (uint8_t *) malloc (putslen);
        if (!it->puts)
            goto err_free;
        uint8_t *q = it->puts;
        for (size_t i = 0; i < nputs; i++) {
            const hal_audit_put_t *p = &puts[i];
            uint32_t klen = (uint32_t) p->klen;
            uint32_t vlen = p->val ? (uint32_t) p->vlen : 0;
            q[0] = (uint8_t) p->db;
            q[1] = p->val ? 0 : 1;
            memcpy (q + 2, &klen, 4);
            memcpy (q + 6, &vlen, 4);
            memcpy (q + 10, p->key, klen);
            if (vlen)
                memcpy (q + 10 + klen, p->val, vlen);
            q += 10 + klen + vlen;
        }
        it->putslen = putslen;
    }

    pthread_mutex_lock (&self->mu);
    if (self->stop) {
        pthread_mutex_unlock (&self->mu);
        goto err_free;
    }
    it->ticket = ++self->last_ticket;
    it->ts = hal_clock_wall_s ();
    if (self->qtail)
        self->qtail->next = it;
    else {
        self->qhead = it;
        pthread_cond_signal (&self->work_cv);
    }
    self->qtail = it;
    uint64_t ticket = it->ticket;
    pthread_mutex_unlock (&self->mu);
    return ticket;

err_free:
    s_free_items (it);
    return 0;
}

int
hal_audit_wait (hal_audit_t *self, uint64_t ticket, int timeout_ms,
                uint64_t *seq)
{
    struct timespec deadline;
    if (timeout_ms > 0) {
        clock_gettime (CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock (&self->mu);
    if (ticket == 0 || ticket > self->last_ticket) {
        pthread_mutex_unlock (&self->mu);
        return AAAX_ENOENT;
    }
    s_waiter_t w = { NULL, self->waiters, ticket };
    if (self->waiters)
        self->waiters->prev = &w;
    self->waiters = &w;
    int rc = 0;
    while (self->done_ticket < ticket) {
        if (timeout_ms == 0) {
            rc = AAAX_ETIMEDOUT;
            break;
        }
        if (timeout_ms < 0)
            pthread_cond_wait (&self->done_cv, &self->mu);
        else if (pthread_cond_timedwait (&self->done_cv, &self->mu, &deadline)
                     == ETIMEDOUT
                 && self->done_ticket < ticket) {
            rc = AAAX_ETIMEDOUT;
            break;
        }
    }
    if (!rc) {
        const s_result_t *slot = &self->ring[ticket & (S_RING - 1)];
        if (slot->ticket != ticket)
            rc = AAAX_ENOENT; /* answered too long ago */
        else {
            rc = slot->status;
            if (!rc && seq)
                *seq = slot->seq;
        }
    }
    if (w.prev)
        w.prev->next = w.next;
    else
        self->waiters = w.next;
    if (w.next)
        w.next->prev = w.prev;
    if (self->room_wait)
        pthread_cond_signal (&self->room_cv);
    pthread_mutex_unlock (&self->mu);
    return rc;
}

int
hal_audit_scan_db (hal_audit_t *self, hal_audit_db_t db, hal_audit_scan_fn *fn,
                   void *arg)
{
    if ((unsigned) db >= HAL_AUDIT_DB_COUNT)
        return AAAX_EINVAL;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn) != 0)
        return AAAX_EIO;
    if (mdb_cursor_open (txn, self->dbi[db], &cur) != 0) {
        mdb_txn_abort (txn);
        return AAAX_EIO;
    }
    MDB_val k, v;
    int result = 0;
    int rc = mdb_cursor_get (cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        result = fn (arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        if (result)
            break;
        rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    if (rc && rc != MDB_NOTFOUND)
        result = AAAX_EIO;
    mdb_cursor_close (cur);
    mdb_txn_abort (txn);
    return result;
}

/*  Walks records from..to within txn, which it ends. */
static int
s_scan_records (MDB_txn *txn, MDB_dbi records, uint64_t from, uint64_t to,
                hal_audit_rec_fn *fn, void *arg)
{
    MDB_cursor *cur;
    if (mdb_cursor_open (txn, records, &cur) != 0) {
        mdb_txn_abort (txn);
        return AAAX_EIO;
    }
    uint8_t kbuf[8];
    s_be64 (from, kbuf);
    MDB_val k = { sizeof kbuf, kbuf }, v;
    int result = 0;
    int rc = mdb_cursor_get (cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size != 8 || v.mv_size <= S_HASH) {
            result = AAAX_EINVAL; /* damaged: hal_audit_verify says more */
            break;
        }
        uint64_t seq = s_from_be64 ((const uint8_t *) k.mv_data);
        if (to && seq > to)
            break;
        const uint8_t *val = (const uint8_t *) v.mv_data;
        result = fn (arg, seq, val, val + S_HASH, v.mv_size - S_HASH);
        if (result)
            break;
        rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    if (rc && rc != MDB_NOTFOUND)
        result = AAAX_EIO;
    mdb_cursor_close (cur);
    mdb_txn_abort (txn);
    return result;
}

int
hal_audit_scan (hal_audit_t *self, uint64_t from, uint64_t to,
                hal_audit_rec_fn *fn, void *arg)
{
    MDB_txn *txn;
    if (mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn) != 0)
        return AAAX_EIO;
    return s_scan_records (txn, self->records, from, to, fn, arg);
}

void
hal_audit_stats (hal_audit_t *self, hal_audit_stats_t *out)
{
    pthread_mutex_lock (&self->mu);
    *out = self->stats;
    pthread_mutex_unlock (&self->mu);
}

/*  ---- the reader ------------------------------------------------------ */

struct _hal_audit_reader_t {
    MDB_env *env;
    MDB_dbi records;
};

/*  A fresh read transaction (it sees the latest commit). */
static int
s_read_txn (hal_audit_reader_t *self, MDB_txn **txn)
{
    int rc = mdb_txn_begin (self->env, NULL, MDB_RDONLY, txn);
    if (rc == MDB_MAP_RESIZED) {
        /*  The kernel reopened with a larger map: adopt it. */
        mdb_env_set_mapsize (self->env, 0);
        rc = mdb_txn_begin (self->env, NULL, MDB_RDONLY, txn);
    }
    return rc;
}

hal_audit_reader_t *
hal_audit_reader_open (const char *data_dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if ((size_t) snprintf (path, sizeof path, "%s/audit", data_dir)
        >= sizeof path) {
        aaax_seterr (err, errlen, "audit: path too long");
        return NULL;
    }
    struct stat st;
    if (stat (path, &st) != 0 || !S_ISDIR (st.st_mode)) {
        aaax_seterr (err, errlen, "no audit log in %s", data_dir);
        return NULL;
    }
    if (sodium_init () < 0) {
        aaax_seterr (err, errlen, "audit: cannot initialise libsodium");
        return NULL;
    }
    hal_audit_reader_t *self = (hal_audit_reader_t *) calloc (1, sizeof *self);
    if (!self) {
        aaax_seterr (err, errlen, "out of memory");
        return NULL;
    }
    MDB_txn *txn;
    int rc = mdb_env_create (&self->env);
    if (rc)
        goto err_free;
    mdb_env_set_maxdbs (self->env, 2 + HAL_AUDIT_DB_COUNT);
    rc = mdb_env_open (self->env, path, MDB_RDONLY | MDB_NOTLS, 0600);
    if (!rc)
        rc = s_read_txn (self, &txn);
    if (rc)
        goto err_env;
    rc = mdb_dbi_open (txn, "records", 0, &self->records);
    if (rc) {
        mdb_txn_abort (txn);
        goto err_env;
    }
    rc = mdb_txn_commit (txn);
    if (rc)
        goto err_env;
    return self;

err_env:
    mdb_env_close (self->env);
err_free:
    if (rc == MDB_NOTFOUND || rc == ENOENT)
        aaax_seterr (err, errlen, "no audit log in %s", data_dir);
    else
        aaax_seterr (err, errlen, "cannot open %s: %s", path,
                     mdb_strerror (rc));
    free (self);
    return NULL;
}

void
hal_audit_reader_close (hal_audit_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    hal_audit_reader_t *self = *self_p;
    mdb_env_close (self->env);
    free (self);
    *self_p = NULL;
}

uint64_t
hal_audit_reader_last (hal_audit_reader_t *self)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    uint64_t last = 0;
    if (s_read_txn (self, &txn) != 0)
        return 0;
    if (mdb_cursor_open (txn, self->records, &cur) == 0) {
        MDB_val k, v;
        if (mdb_cursor_get (cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
            last = s_from_be64 ((const uint8_t *) k.mv_data);
        mdb_cursor_close (cur);
    }
    mdb_txn_abort (txn);
    return last;
}

int
hal_audit_reader_scan (hal_audit_reader_t *self, uint64_t from, uint64_t to,
                       hal_audit_rec_fn *fn, void *arg)
{
    MDB_txn *txn;
    if (s_read_txn (self, &txn) != 0)
        return AAAX_EIO;
    return s_scan_records (txn, self->records, from, to, fn, arg);
}

int
hal_audit_verify (hal_audit_reader_t *self, const uint8_t pk[HAL_KEYS_PK_BYTES],
                  hal_audit_verify_t *out)
{
    memset (out, 0, sizeof *out);
    MDB_txn *txn;
    MDB_cursor *cur;
    if (s_read_txn (self, &txn) != 0)
        return AAAX_EIO;
    if (mdb_cursor_open (txn, self->records, &cur) != 0) {
        mdb_txn_abort (txn);
        return AAAX_EIO;
    }
    uint8_t prev[S_HASH] = { 0 };
    uint64_t expected = 1;
    int result = 0;
    MDB_val k, v;
    int rc = mdb_cursor_get (cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size != 8) {
            aaax_seterr (out->why, sizeof out->why,
                         "a key of %zu bytes where record %llu should be",
                         k.mv_size, (unsigned long long) expected);
            out->first_bad = expected;
            result = AAAX_EINVAL;
            break;
        }
        uint64_t seq = s_from_be64 ((const uint8_t *) k.mv_data);
        if (seq != expected) {
            if (seq > expected)
                aaax_seterr (out->why, sizeof out->why,
                             "record %llu is missing (the next one is %llu)",
                             (unsigned long long) expected,
                             (unsigned long long) seq);
            else
                aaax_seterr (out->why, sizeof out->why,
                             "record %llu out of order",
                             (unsigned long long) seq);
            out->first_bad = expected;
            result = AAAX_EINVAL;
            break;
        }
        bool ckpt = false;
        uint8_t hash[S_HASH];
        if (hal_audit_check_record (prev, seq, v.mv_data, v.mv_size, pk, &ckpt,
                                    hash, out->why, sizeof out->why)
            != 0) {
            out->first_bad = seq;
            result = AAAX_EINVAL;
            break;
        }
        out->records++;
        if (ckpt) {
            out->checkpoints++;
            out->unsigned_tail = 0;
        } else
            out->unsigned_tail++;
        memcpy (prev, hash, S_HASH);
        expected++;
        rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    if (!result && rc != MDB_NOTFOUND)
        result = AAAX_EIO;
    mdb_cursor_close (cur);
    mdb_txn_abort (txn);
    return result;
}
