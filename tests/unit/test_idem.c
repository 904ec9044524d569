/*  test_idem.c — unit tests of idempotency keys (channels/chan_idem.c): put,
    get and expiry, scoping by (chan, writer, key), replacing, keys holding
    0x1f bytes, durable records in a real hal_store and their restore
    (expired ones deleted). */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aaax.h"
#include "chan_id.h"
#include <sodium.h>

#include "chan_idem.h"
#include "hal_store.h"
#include "testutil.h"

#define TTL_S 600
#define TTL_MS (TTL_S * 1000)

static void
idfor (uint64_t seq, char *out)
{
    chan_id_format (1700000000000ULL, seq, out);
}

static bool
has (chan_idem_t *ix, const char *chan, const char *writer, const char *key,
     size_t keylen, int64_t wall, uint64_t want_seq)
{
    char id[CHAN_ID_LEN], want[CHAN_ID_LEN];
    memset (id, '#', sizeof id);
    if (!chan_idem_get (ix, chan, writer, key, keylen, wall, id))
        return false;
    idfor (want_seq, want);
    return memcmp (id, want, CHAN_ID_LEN) == 0;
}

static void
test_put_get_expire (void)
{
    chan_idem_t *ix = chan_idem_new (NULL, TTL_S);
    CHECK (ix != NULL);
    CHECK_EQ_INT (chan_idem_size (ix), 0);
    char id[CHAN_ID_LEN];
    CHECK (!chan_idem_get (ix, "jobs", "w1", "k1", 2, 0, id));

    idfor (1, id);
    CHECK_EQ_INT (chan_idem_put (ix, "jobs", "w1", "k1", 2, id, false, 1000),
                  0);
    CHECK_EQ_INT (chan_idem_size (ix), 1);
    CHECK (has (ix, "jobs", "w1", "k1", 2, 1000, 1));
    CHECK (has (ix, "jobs", "w1", "k1", 2, 1000 + TTL_MS - 1, 1));
    CHECK (!has (ix, "jobs", "w1", "k1", 2, 1000 + TTL_MS, 1)); // expired
    //  scoped by channel, writer and key
    CHECK (!has (ix, "jobs2", "w1", "k1", 2, 1000, 1));
    CHECK (!has (ix, "jobs", "w2", "k1", 2, 1000, 1));
    CHECK (!has (ix, "jobs", "w1", "k2", 2, 1000, 1));
    CHECK (!has (ix, "jobs", "w1", "k", 1, 1000, 1));
    CHECK (!has (ix, "jobs", "w1", "k1x", 3, 1000, 1));
    //  the split is unambiguous: ("ab", "c") is not ("a", "bc")
    idfor (2, id);
    chan_idem_put (ix, "ab", "c", "k", 1, id, false, 1000);
    CHECK (!has (ix, "a", "bc", "k", 1, 1000, 2));
    CHECK (has (ix, "ab", "c", "k", 1, 1000, 2));

    //  expire: only what is due
    idfor (3, id);
    chan_idem_put (ix, "jobs", "w1", "later", 5, id, false, 5000);
    CHECK_EQ_INT (chan_idem_size (ix), 3);
    chan_idem_expire (ix, 1000 + TTL_MS - 1);
    CHECK_EQ_INT (chan_idem_size (ix), 3);
    chan_idem_expire (ix, 1000 + TTL_MS);
    CHECK_EQ_INT (chan_idem_size (ix), 1);
    CHECK (!chan_idem_get (ix, "jobs", "w1", "k1", 2, 0, id));
    CHECK (has (ix, "jobs", "w1", "later", 5, 1000 + TTL_MS, 3));
    chan_idem_expire (ix, 5000 + TTL_MS);
    CHECK_EQ_INT (chan_idem_size (ix), 0);
    chan_idem_expire (ix, INT64_MAX); // nothing left: fine
    chan_idem_destroy (&ix);
    CHECK (ix == NULL);
    chan_idem_destroy (&ix);
    chan_idem_destroy (NULL);
}

static void
test_replace (void)
{
    chan_idem_t *ix = chan_idem_new (NULL, TTL_S);
    char id[CHAN_ID_LEN];
    //  an expired entry (not yet expired away) is replaced by a new put
    idfor (1, id);
    chan_idem_put (ix, "c", "w", "k", 1, id, false, 0);
    CHECK (!has (ix, "c", "w", "k", 1, TTL_MS + 10, 1));
    idfor (2, id);
    CHECK_EQ_INT (chan_idem_put (ix, "c", "w", "k", 1, id, false, TTL_MS + 10),
                  0);
    CHECK_EQ_INT (chan_idem_size (ix), 1);
    CHECK (has (ix, "c", "w", "k", 1, TTL_MS + 10, 2));
    //  the old expiry no longer removes the new entry
    chan_idem_expire (ix, TTL_MS + 5);
    CHECK_EQ_INT (chan_idem_size (ix), 1);
    CHECK (has (ix, "c", "w", "k", 1, TTL_MS + 11, 2));
    //  put over a live one (the caller checks first; still consistent)
    idfor (3, id);
    CHECK_EQ_INT (chan_idem_put (ix, "c", "w", "k", 1, id, false, TTL_MS + 20),
                  0);
    CHECK_EQ_INT (chan_idem_size (ix), 1);
    CHECK (has (ix, "c", "w", "k", 1, TTL_MS + 20, 3));
    chan_idem_expire (ix, 2 * TTL_MS + 19);
    CHECK_EQ_INT (chan_idem_size (ix), 1);
    chan_idem_expire (ix, 2 * TTL_MS + 20);
    CHECK_EQ_INT (chan_idem_size (ix), 0);
    //  many keys, expiring in waves
    for (int i = 0; i < 5000; i++) {
        char key[32];
        int n = snprintf (key, sizeof key, "key-%d", i);
        idfor ((uint64_t) i + 1, id);
        chan_idem_put (ix, "c", "w", key, (size_t) n, id, false, i);
    }
    CHECK_EQ_INT (chan_idem_size (ix), 5000);
    chan_idem_expire (ix, TTL_MS + 2499);
    CHECK_EQ_INT (chan_idem_size (ix), 2500);
    CHECK (has (ix, "c", "w", "key-2500", 8, TTL_MS + 2499, 2501));
    CHECK (!has (ix, "c", "w", "key-2499", 8, 0, 2500));
    chan_idem_destroy (&ix); // with entries left: freed
}

static void
test_odd_keys (void)
{
    chan_idem_t *ix = chan_idem_new (NULL, TTL_S);
    char id[CHAN_ID_LEN];
    //  keys with 0x1f bytes are distinct keys, not separators
    const char *keys[] = { "a\x1f"
                           "b",
                           "a",
                           "\x1f",
                           "\x1f\x1f",
                           "b\x1f",
                           "\x1f"
                           "b",
                           "" };
    size_t nk = sizeof keys / sizeof keys[0];
    for (size_t i = 0; i < nk; i++) {
        idfor (i + 1, id);
        CHECK_EQ_INT (chan_idem_put (ix, "c", "w", keys[i], strlen (keys[i]),
                                     id, false, 0),
                      0);
    }
    CHECK_EQ_INT (chan_idem_size (ix), nk);
    for (size_t i = 0; i < nk; i++)
        CHECK (has (ix, "c", "w", keys[i], strlen (keys[i]), 0, i + 1));
    //  a 0x1f inside the key after the separators
    idfor (50, id);
    chan_idem_put (ix, "c", "w", "x\x1fy", 3, id, false, 0);
    CHECK (has (ix, "c", "w", "x\x1fy", 3, 0, 50));
    //  the longest key; and one too long to fit
    char big[AAAX_MAX_KEY + 300];
    memset (big, 'K', sizeof big);
    char name[AAAX_MAX_NAME + 1];
    memset (name, 'n', AAAX_MAX_NAME);
    name[AAAX_MAX_NAME] = 0;
    idfor (60, id);
    CHECK_EQ_INT (
        chan_idem_put (ix, name, name, big, AAAX_MAX_KEY, id, false, 0), 0);
    CHECK (has (ix, name, name, big, AAAX_MAX_KEY, 0, 60));
    CHECK_EQ_INT (chan_idem_put (ix, name, name, big, sizeof big, id, false, 0),
                  AAAX_EINVAL);
    CHECK (!chan_idem_get (ix, name, name, big, sizeof big, 0, id));
    chan_idem_destroy (&ix);
}

//  Durable records ------------------------------------------------------------

typedef struct {
    chan_idem_t *ix;
    int64_t wall;
    int n, failed;
} s_restore_t;

static int
s_restore_cb (void *arg, const void *key, size_t klen, const void *val,
              size_t vlen)
{
    s_restore_t *r = (s_restore_t *) arg;
    r->n++;
    if (chan_idem_restore (r->ix, key, klen, val, vlen, r->wall) != 0)
        r->failed++;
    return 0;
}

static int
s_count_cb (void *arg, const void *key, size_t klen, const void *val,
            size_t vlen)
{
    (*(int *) arg)++;
    return 0;
}

static int
count_records (hal_store_t *st)
{
    int n = 0;
    hal_store_scan (st, HAL_DB_IDEM, s_count_cb, &n);
    return n;
}

static void
test_durable (void)
{
    char tmp[] = "/tmp/aaax-test-idem-XXXXXX";
    CHECK (mkdtemp (tmp) != NULL);
    char dir[300], err[256];
    snprintf (dir, sizeof dir, "%s/store", tmp);
    hal_store_t *st = hal_store_open (dir, 64u << 20, err, sizeof err);
    CHECK (st != NULL);
    if (!st)
        return;
    chan_idem_t *ix = chan_idem_new (st, TTL_S);
    char id[CHAN_ID_LEN];
    idfor (1, id);
    chan_idem_put (ix, "jobs", "w1", "plain", 5, id, true, 1000);
    idfor (2, id);
    chan_idem_put (ix, "jobs", "w1", "with\x1fsep\x1f", 9, id, true, 1000);
    idfor (3, id);
    chan_idem_put (ix, "@peer", "w2", "late", 4, id, true, 500000);
    idfor (4, id);
    chan_idem_put (ix, "events", "w1", "mem", 3, id, false, 1000); // memory
    CHECK_EQ_INT (chan_idem_size (ix), 4);
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    CHECK_EQ_INT (count_records (st), 3);

    //  the stored key is chan NUL writer NUL blake2b-128(key); the value is
    //  [expires][id][key]
    uint8_t skey[8 + 16];
    memcpy (skey, "jobs\0w1\0", 8);
    crypto_generichash (skey + 8, 16, (const unsigned char *) "with\x1fsep\x1f",
                        9, NULL, 0);
    void *val = NULL;
    size_t vlen = 0;
    CHECK_EQ_INT (
        hal_store_get (st, HAL_DB_IDEM, skey, sizeof skey, &val, &vlen), 0);
    CHECK_EQ_INT (vlen, 8 + CHAN_ID_LEN + 9);
    if (val && vlen == 8 + CHAN_ID_LEN + 9) {
        idfor (2, id);
        CHECK (memcmp ((char *) val + 8, id, CHAN_ID_LEN) == 0);
        CHECK (memcmp ((char *) val + 8 + CHAN_ID_LEN, "with\x1fsep\x1f", 9)
               == 0);
        int64_t expires;
        memcpy (&expires, val, 8);
        CHECK_EQ_INT (expires, 1000 + TTL_MS);
    }
    free (val);

    //  Restore at a wall time when the first two have expired: they are
    //  deleted from the store, the third comes back.
    chan_idem_t *ix2 = chan_idem_new (st, TTL_S);
    s_restore_t r = { ix2, 1000 + TTL_MS, 0, 0 };
    CHECK_EQ_INT (hal_store_scan (st, HAL_DB_IDEM, s_restore_cb, &r), 0);
    CHECK_EQ_INT (r.n, 3);
    CHECK_EQ_INT (r.failed, 0);
    CHECK_EQ_INT (chan_idem_size (ix2), 1);
    CHECK (has (ix2, "@peer", "w2", "late", 4, 1000 + TTL_MS, 3));
    CHECK (hal_store_pending (st)); // the deletions
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    CHECK_EQ_INT (count_records (st), 1);
    chan_idem_destroy (&ix2);

    //  Restore before expiry: keys with 0x1f come back intact.
    idfor (2, id);
    chan_idem_put (ix, "jobs", "w1", "with\x1fsep\x1f", 9, id, true, 2000);
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    chan_idem_t *ix3 = chan_idem_new (st, TTL_S);
    s_restore_t r3 = { ix3, 3000, 0, 0 };
    CHECK_EQ_INT (hal_store_scan (st, HAL_DB_IDEM, s_restore_cb, &r3), 0);
    CHECK_EQ_INT (r3.failed, 0);
    CHECK_EQ_INT (chan_idem_size (ix3), 2);
    CHECK (has (ix3, "jobs", "w1", "with\x1fsep\x1f", 9, 3000, 2));
    CHECK (!has (ix3, "jobs", "w1", "with", 4, 3000, 2));
    CHECK (!hal_store_pending (st)); // nothing to delete
    //  expire deletes stored records
    chan_idem_expire (ix3, 2000 + TTL_MS);
    CHECK_EQ_INT (chan_idem_size (ix3), 1);
    CHECK (hal_store_pending (st));
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    CHECK_EQ_INT (count_records (st), 1);
    chan_idem_expire (ix3, 500000 + TTL_MS);
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    CHECK_EQ_INT (count_records (st), 0);

    //  unreadable records: value [expires][id][key "c"], key
    //  chan NUL writer NUL hash(16)
    uint8_t v[8 + CHAN_ID_LEN + 1];
    memset (v, 0, sizeof v);
    int64_t future = INT64_MAX;
    memcpy (v, &future, 8);
    idfor (9, (char *) v + 8);
    v[8 + CHAN_ID_LEN] = 'c';
    uint8_t k[4 + 16];
    memcpy (k, "a\0b\0", 4);
    crypto_generichash (k + 4, 16, (const unsigned char *) "c", 1, NULL, 0);
    CHECK_EQ_INT (chan_idem_restore (ix3, k, sizeof k, v, 8 + CHAN_ID_LEN, 0),
                  AAAX_EINVAL); // no key in the value
    CHECK_EQ_INT (chan_idem_restore (ix3, "", 0, v, sizeof v, 0),
                  AAAX_EINVAL); // empty store key
    uint8_t one[2 + 16];
    memcpy (one, "ab\0", 3);
    memset (one + 3, 'h', sizeof one - 3);
    CHECK_EQ_INT (chan_idem_restore (ix3, one, sizeof one, v, sizeof v, 0),
                  AAAX_EINVAL); // one separator
    uint8_t three[6 + 16];
    memcpy (three, "a\0b\0c\0", 6);
    memset (three + 6, 'h', 16);
    CHECK_EQ_INT (chan_idem_restore (ix3, three, sizeof three, v, sizeof v, 0),
                  AAAX_EINVAL); // a NUL before the hash
    uint8_t withnul[8 + CHAN_ID_LEN + 2];
    memcpy (withnul, v, sizeof v);
    withnul[sizeof v] = 0;
    CHECK_EQ_INT (
        chan_idem_restore (ix3, k, sizeof k, withnul, sizeof withnul, 0),
        AAAX_EINVAL); // a NUL in the key
    CHECK_EQ_INT (chan_idem_restore (ix3, k, sizeof k, v, sizeof v, 0), 0);
    CHECK (has (ix3, "a", "b", "c", 1, 0, 9));
    CHECK_EQ_INT (chan_idem_size (ix3), 1);

    //  The largest durable key a peer can make: a SEND with a 256-byte key
    //  from a 128-character system to the mailbox of another ("@" + 128).
    //  It must be stored, and must not fail the other operations of its
    //  batch (LMDB keys are at most 511 bytes).
    char mbox[AAAX_MAX_NAME + 2], writer[AAAX_MAX_NAME + 1];
    char key[AAAX_MAX_KEY];
    mbox[0] = '@';
    memset (mbox + 1, 'r', AAAX_MAX_NAME);
    mbox[AAAX_MAX_NAME + 1] = 0;
    memset (writer, 'w', AAAX_MAX_NAME);
    writer[AAAX_MAX_NAME] = 0;
    memset (key, 'k', sizeof key);
    hal_store_put (st, HAL_DB_SYSTEMS, "bystander", 9, "v", 1);
    idfor (70, id);
    CHECK_EQ_INT (
        chan_idem_put (ix3, mbox, writer, key, sizeof key, id, true, 0), 0);
    CHECK (has (ix3, mbox, writer, key, sizeof key, 0, 70));
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    void *bv = NULL;
    size_t bvlen = 0;
    CHECK_EQ_INT (
        hal_store_get (st, HAL_DB_SYSTEMS, "bystander", 9, &bv, &bvlen), 0);
    free (bv);
    chan_idem_t *ix4 = chan_idem_new (st, TTL_S);
    s_restore_t r4 = { ix4, 0, 0, 0 };
    CHECK_EQ_INT (hal_store_scan (st, HAL_DB_IDEM, s_restore_cb, &r4), 0);
    CHECK (has (ix4, mbox, writer, key, sizeof key, 0, 70));
    chan_idem_destroy (&ix4);

    chan_idem_destroy (&ix3);
    chan_idem_destroy (&ix);
    hal_store_destroy (&st);
    tu_rmrf (dir);
    rmdir (tmp);
}

int
main (void)
{
    test_put_get_expire ();
    test_replace ();
    test_odd_keys ();
    test_durable ();
    TEST_DONE ();
}
