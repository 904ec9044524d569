/*  test_kv.c — unit tests of the per-app key-value namespaces
    (hal/hal_kv.c): isolation (crafted keys included), long keys, quotas at
    the boundary, limits, delete, persistence, concurrent puts, a full map. */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aaax.h"
#include "hal_kv.h"
#include "testutil.h"

static char s_tmp[64];
static char s_dir[128];

/*  True when key holds exactly want (wlen bytes), or is absent for NULL. */
static bool
has (hal_kv_t *kv, const char *ns, const void *key, size_t klen,
     const void *want, size_t wlen)
{
    void *val = NULL;
    size_t vlen = 0;
    int rc = hal_kv_get (kv, ns, key, klen, &val, &vlen);
    bool ok;
    if (!want)
        ok = rc == AAAX_ENOENT;
    else
        ok = rc == 0 && vlen == wlen && memcmp (val, want, wlen) == 0;
    if (rc == 0)
        free (val);
    return ok;
}

static bool
has_s (hal_kv_t *kv, const char *ns, const char *key, const char *want)
{
    return has (kv, ns, key, strlen (key), want, want ? strlen (want) : 0);
}

static int
put_s (hal_kv_t *kv, const char *ns, const char *key, const char *val)
{
    return hal_kv_put (kv, ns, key, strlen (key), val, strlen (val), 0);
}

static bool
usage_is (hal_kv_t *kv, const char *ns, uint64_t bytes, uint64_t count)
{
    uint64_t b = 99, c = 99;
    if (hal_kv_usage (kv, ns, &b, &c) != 0)
        return false;
    if (b != bytes || c != count)
        fprintf (stderr, "usage of %s: %llu bytes, %llu entries\n", ns,
                 (unsigned long long) b, (unsigned long long) c);
    return b == bytes && c == count;
}

/*  Collects the keys seen by hal_kv_each. */
typedef struct {
    char keys[64][520];
    size_t klens[64];
    size_t vbytes;
    int n, stop_at;
} s_seen_t;

static int
s_each_cb (void *arg, const void *key, size_t klen, const void *val,
           size_t vlen)
{
    s_seen_t *s = (s_seen_t *) arg;
    if (s->n < 64 && klen < 520) {
        memcpy (s->keys[s->n], key, klen);
        s->keys[s->n][klen] = 0;
        s->klens[s->n] = klen;
    }
    s->vbytes += vlen;
    s->n++;
    return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

static void
test_basics (void)
{
    char err[256] = "";
    hal_kv_t *kv = hal_kv_open (s_dir, 64 << 20, err, sizeof err);
    CHECK (kv != NULL);
    if (!kv) {
        fprintf (stderr, "open: %s\n", err);
        return;
    }
    CHECK (has_s (kv, "app", "k", NULL));
    CHECK (usage_is (kv, "app", 0, 0));
    CHECK_EQ_INT (put_s (kv, "app", "k", "v1"), 0);
    CHECK (has_s (kv, "app", "k", "v1"));
    CHECK (usage_is (kv, "app", 3, 1));
    //  overwrite: count unchanged, bytes follow the new value
    CHECK_EQ_INT (put_s (kv, "app", "k", "value2"), 0);
    CHECK (has_s (kv, "app", "k", "value2"));
    CHECK (usage_is (kv, "app", 7, 1));
    //  an empty value
    CHECK_EQ_INT (hal_kv_put (kv, "app", "e", 1, NULL, 0, 0), 0);
    CHECK (has (kv, "app", "e", 1, "", 0));
    CHECK (usage_is (kv, "app", 8, 2));
    //  delete
    CHECK_EQ_INT (hal_kv_del (kv, "app", "k", 1), 0);
    CHECK (has_s (kv, "app", "k", NULL));
    CHECK_EQ_INT (hal_kv_del (kv, "app", "k", 1), AAAX_ENOENT);
    CHECK_EQ_INT (hal_kv_del (kv, "nobody", "k", 1), AAAX_ENOENT);
    CHECK (usage_is (kv, "app", 1, 1));
    CHECK_EQ_INT (hal_kv_del (kv, "app", "e", 1), 0);
    CHECK (usage_is (kv, "app", 0, 0));
    //  an emptied namespace can be used again
    CHECK_EQ_INT (put_s (kv, "app", "again", "x"), 0);
    CHECK (has_s (kv, "app", "again", "x"));
    CHECK (usage_is (kv, "app", 6, 1));
    hal_kv_destroy (&kv);
    CHECK (kv == NULL);
    hal_kv_destroy (&kv);
    hal_kv_destroy (NULL);
}

static void
test_limits (void)
{
    char err[256];
    hal_kv_t *kv = hal_kv_open (s_dir, 64 << 20, err, sizeof err);
    CHECK (kv != NULL);
    if (!kv)
        return;
    void *val;
    size_t vlen;
    uint64_t b, c;
    //  namespaces: 1..128 bytes
    char ns[200];
    memset (ns, 'n', sizeof ns);
    ns[128] = 0;
    CHECK_EQ_INT (put_s (kv, ns, "k", "v"), 0);
    CHECK (has_s (kv, ns, "k", "v"));
    ns[129] = 0;
    ns[128] = 'n';
    CHECK_EQ_INT (put_s (kv, ns, "k", "v"), AAAX_EINVAL);
    CHECK_EQ_INT (hal_kv_get (kv, ns, "k", 1, &val, &vlen), AAAX_EINVAL);
    CHECK_EQ_INT (hal_kv_del (kv, ns, "k", 1), AAAX_EINVAL);
    CHECK_EQ_INT (hal_kv_usage (kv, ns, &b, &c), AAAX_EINVAL);
    CHECK_EQ_INT (put_s (kv, "", "k", "v"), AAAX_EINVAL);
    CHECK_EQ_INT (put_s (kv, NULL, "k", "v"), AAAX_EINVAL);
    CHECK_EQ_INT (hal_kv_usage (kv, "", &b, &c), AAAX_EINVAL);
    //  keys: 1..512 bytes
    CHECK_EQ_INT (hal_kv_put (kv, "lim", "", 0, "v", 1, 0), AAAX_EINVAL);
    CHECK_EQ_INT (hal_kv_put (kv, "lim", NULL, 3, "v", 1, 0), AAAX_EINVAL);
    CHECK_EQ_INT (hal_kv_get (kv, "lim", "", 0, &val, &vlen), AAAX_EINVAL);
    uint8_t key[600];
    memset (key, 'k', sizeof key);
    CHECK_EQ_INT (hal_kv_put (kv, "lim", key, 512, "v", 1, 0), 0);
    CHECK (has (kv, "lim", key, 512, "v", 1));
    CHECK_EQ_INT (hal_kv_put (kv, "lim", key, 513, "v", 1, 0), AAAX_ETOOBIG);
    CHECK_EQ_INT (hal_kv_get (kv, "lim", key, 513, &val, &vlen), AAAX_ETOOBIG);
    CHECK_EQ_INT (hal_kv_del (kv, "lim", key, 513), AAAX_ETOOBIG);
    //  values: 0..1 MiB
    size_t big = HAL_KV_VALUE_MAX + 1;
    uint8_t *data = (uint8_t *) malloc (big);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t) (i * 7);
    CHECK_EQ_INT (hal_kv_put (kv, "lim", "big", 3, data, big, 0), AAAX_ETOOBIG);
    CHECK_EQ_INT (hal_kv_put (kv, "lim", "big", 3, data, big - 1, 0), 0);
    CHECK (has (kv, "lim", "big", 3, data, big - 1));
    CHECK_EQ_INT (hal_kv_put (kv, "lim", "v", 1, NULL, 5, 0), AAAX_EINVAL);
    CHECK (usage_is (kv, "lim", 513 + 3 + HAL_KV_VALUE_MAX, 2));
    free (data);
    hal_kv_destroy (&kv);
}

static void
test_isolation (void)
{
    char err[256];
    hal_kv_t *kv = hal_kv_open (s_dir, 64 << 20, err, sizeof err);
    CHECK (kv != NULL);
    if (!kv)
        return;
    //  "a" + "bc" against "ab" + "c"
    CHECK_EQ_INT (put_s (kv, "a", "bc", "1"), 0);
    CHECK_EQ_INT (put_s (kv, "ab", "c", "2"), 0);
    CHECK (has_s (kv, "a", "bc", "1"));
    CHECK (has_s (kv, "ab", "c", "2"));
    CHECK (has_s (kv, "a", "c", NULL));
    CHECK (has_s (kv, "ab", "bc", NULL));
    //  keys with NUL bytes: "\0b" in "a" is neither "\0" nor "b" nor a key
    //  of any namespace "a?b"
    CHECK_EQ_INT (hal_kv_put (kv, "a", "\0b", 2, "nul-b", 5, 0), 0);
    CHECK_EQ_INT (hal_kv_put (kv, "a", "\0", 1, "nul", 3, 0), 0);
    CHECK (has (kv, "a", "\0b", 2, "nul-b", 5));
    CHECK (has (kv, "a", "\0", 1, "nul", 3));
    CHECK (has (kv, "a", "\0b\0", 3, NULL, 0));
    CHECK (has (kv, "ab", "\0b", 2, NULL, 0));
    CHECK (has (kv, "ab", "\0", 1, NULL, 0));
    //  keys crafted to look like the encoding of another namespace's key
    //  ([u32 id][key], whatever ids "a" and "ab" got), written and removed
    for (uint8_t id = 0; id < 16; id++) {
        const uint8_t fake[] = { 0, 0, 0, id, 'c' };
        CHECK_EQ_INT (hal_kv_put (kv, "a", fake, sizeof fake, "fake", 4, 0), 0);
        CHECK (has_s (kv, "ab", "c", "2"));
        CHECK (has (kv, "a", fake, sizeof fake, "fake", 4));
        CHECK (has (kv, "a", fake + 4, 1, NULL, 0));
    }
    for (uint8_t id = 0; id < 16; id++) {
        const uint8_t fake[] = { 0, 0, 0, id, 'c' };
        if (id != 2)
            CHECK_EQ_INT (hal_kv_del (kv, "a", fake, sizeof fake), 0);
    }
    CHECK (has_s (kv, "ab", "c", "2"));
    static const uint8_t fake[] = { 0, 0, 0, 2, 'c' };
    //  and a length-prefixed namespace name
    static const uint8_t fake_ns[] = { 1, 'a', 'b', 'c' };
    CHECK_EQ_INT (hal_kv_put (kv, "a", fake_ns, sizeof fake_ns, "z", 1, 0), 0);
    CHECK (has (kv, "ab", "c", 1, "2", 1));
    //  each sees only its own namespace, in key order
    s_seen_t *s = (s_seen_t *) calloc (1, sizeof *s);
    CHECK_EQ_INT (hal_kv_each (kv, "a", s_each_cb, s), 0);
    CHECK_EQ_INT (s->n, 5);
    CHECK (s->klens[0] == 1 && s->keys[0][0] == 0);
    CHECK (s->klens[1] == 5 && memcmp (s->keys[1], fake, 5) == 0);
    CHECK (s->klens[2] == 2 && memcmp (s->keys[2], "\0b", 2) == 0);
    CHECK (s->klens[3] == 4 && memcmp (s->keys[3], fake_ns, 4) == 0);
    CHECK_EQ_STR (s->keys[4], "bc");
    memset (s, 0, sizeof *s);
    CHECK_EQ_INT (hal_kv_each (kv, "ab", s_each_cb, s), 0);
    CHECK_EQ_INT (s->n, 1);
    CHECK_EQ_STR (s->keys[0], "c");
    memset (s, 0, sizeof *s);
    CHECK_EQ_INT (hal_kv_each (kv, "nobody", s_each_cb, s), 0);
    CHECK_EQ_INT (s->n, 0);
    //  fn stops the walk with its value
    memset (s, 0, sizeof *s);
    s->stop_at = 2;
    CHECK_EQ_INT (hal_kv_each (kv, "a", s_each_cb, s), 7);
    CHECK_EQ_INT (s->n, 2);
    //  deleting in one namespace leaves the other alone
    CHECK_EQ_INT (hal_kv_del (kv, "ab", "c", 1), 0);
    CHECK (has_s (kv, "a", "bc", "1"));
    CHECK_EQ_INT (hal_kv_del (kv, "a", fake, sizeof fake), 0);
    CHECK (usage_is (kv, "ab", 0, 0));
    CHECK (usage_is (kv, "a", 3 + 3 + 4 + 5 + 1 + 3, 4));
    free (s);
    hal_kv_destroy (&kv);
}

/*  Keys longer than the 475 bytes stored as they are. */
static void
test_long_keys (void)
{
    char err[256];
    hal_kv_t *kv = hal_kv_open (s_dir, 64 << 20, err, sizeof err);
    CHECK (kv != NULL);
    if (!kv)
        return;
    uint8_t k[5][512];
    size_t kl[5] = { 475, 476, 512, 512, 507 };
    for (int i = 0; i < 5; i++)
        memset (k[i], 'L', 512);
    k[3][511] = 'M'; //  differs from k[2] in its last byte only
    k[4][500] = 0;
    for (int i = 0; i < 5; i++) {
        char v = (char) ('0' + i);
        CHECK_EQ_INT (hal_kv_put (kv, "long", k[i], kl[i], &v, 1, 0), 0);
    }
    for (int i = 0; i < 5; i++) {
        char v = (char) ('0' + i);
        CHECK (has (kv, "long", k[i], kl[i], &v, 1));
    }
    //  a prefix of a long key is another key
    CHECK (has (kv, "long", k[2], 511, NULL, 0));
    CHECK (has (kv, "long", k[2], 477, NULL, 0));
    CHECK (has (kv, "other", k[2], 512, NULL, 0));
    CHECK (usage_is (kv, "long", 475 + 476 + 512 + 512 + 507 + 5, 5));
    //  each gives the whole keys back
    s_seen_t *s = (s_seen_t *) calloc (1, sizeof *s);
    CHECK_EQ_INT (hal_kv_each (kv, "long", s_each_cb, s), 0);
    CHECK_EQ_INT (s->n, 5);
    CHECK_EQ_INT (s->klens[0], 475); //  the short one comes first
    int found = 0;
    for (int i = 0; i < 5 && i < s->n; i++)
        for (int j = 0; j < 5; j++)
            if (s->klens[i] == kl[j] && !memcmp (s->keys[i], k[j], kl[j]))
                found |= 1 << j;
    CHECK_EQ_INT (found, 31);
    //  overwrite and delete one of the two 512-byte keys
    CHECK_EQ_INT (hal_kv_put (kv, "long", k[3], 512, "xyz", 3, 0), 0);
    CHECK (has (kv, "long", k[3], 512, "xyz", 3));
    CHECK (has (kv, "long", k[2], 512, "2", 1));
    CHECK_EQ_INT (hal_kv_del (kv, "long", k[2], 512), 0);
    CHECK (has (kv, "long", k[2], 512, NULL, 0));
    CHECK (has (kv, "long", k[3], 512, "xyz", 3));
    CHECK (usage_is (kv, "long", 475 + 476 + 512 + 507 + 3 + 3, 4));
    free (s);
    hal_kv_destroy (&kv);
}

static void
test_quota (void)
{
    char err[256];
    hal_kv_t *kv = hal_kv_open (s_dir, 64 << 20, err, sizeof err);
    CHECK (kv != NULL);
    if (!kv)
        return;
    char v[128];
    memset (v, 'v', sizeof v);
    //  exactly at the quota: fine; one byte more: refused, nothing changed
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k1", 2, v, 48, 100), 0);
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k2", 2, v, 49, 100), AAAX_ELIMIT);
    CHECK (has (kv, "q", "k2", 2, NULL, 0));
    CHECK (usage_is (kv, "q", 50, 1));
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k2", 2, v, 48, 100), 0);
    CHECK (usage_is (kv, "q", 100, 2));
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k", 1, NULL, 0, 100), AAAX_ELIMIT);
    //  overwriting counts the old value as freed
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k1", 2, v, 49, 100), AAAX_ELIMIT);
    CHECK (has (kv, "q", "k1", 2, v, 48));
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k1", 2, v, 48, 100), 0);
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k1", 2, v, 10, 100), 0);
    CHECK (usage_is (kv, "q", 62, 2));
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k1", 2, v, 48, 100), 0);
    //  delete frees
    CHECK_EQ_INT (hal_kv_del (kv, "q", "k2", 2), 0);
    CHECK (usage_is (kv, "q", 50, 1));
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k3", 2, v, 48, 100), 0);
    //  the quota is per namespace; 0 means none
    CHECK_EQ_INT (hal_kv_put (kv, "q2", "k", 1, v, 99, 100), 0);
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k4", 2, v, 128, 0), 0);
    CHECK (usage_is (kv, "q", 230, 3));
    //  over quota already (quota lowered): shrinking is still refused
    //  while above it, deleting is not
    CHECK_EQ_INT (hal_kv_put (kv, "q", "k4", 2, v, 100, 100), AAAX_ELIMIT);
    CHECK_EQ_INT (hal_kv_del (kv, "q", "k4", 2), 0);
    CHECK (usage_is (kv, "q", 100, 2));
    hal_kv_destroy (&kv);
}

static void
test_reopen (void)
{
    char err[256];
    hal_kv_t *kv = hal_kv_open (s_dir, 64 << 20, err, sizeof err);
    CHECK (kv != NULL);
    if (!kv)
        return;
    //  what the earlier tests left
    CHECK (has_s (kv, "app", "again", "x"));
    CHECK (usage_is (kv, "app", 6, 1));
    CHECK (has_s (kv, "a", "bc", "1"));
    CHECK (has (kv, "a", "\0b", 2, "nul-b", 5));
    CHECK (usage_is (kv, "q", 100, 2));
    //  a new namespace gets a fresh id, not one in use
    CHECK_EQ_INT (put_s (kv, "fresh", "bc", "F"), 0);
    CHECK (has_s (kv, "a", "bc", "1"));
    CHECK (has_s (kv, "fresh", "bc", "F"));
    hal_kv_destroy (&kv);
    //  a file in place of the directory is refused
    char path[160];
    snprintf (path, sizeof path, "%s/afile", s_tmp);
    FILE *f = fopen (path, "w");
    if (f)
        fclose (f);
    err[0] = 0;
    CHECK (hal_kv_open (path, 1 << 20, err, sizeof err) == NULL);
    CHECK (err[0] != 0);
    unlink (path);
}

/*  Concurrent puts from several threads. */
typedef struct {
    hal_kv_t *kv;
    char ns[16];
    int id, n;
    int failures;
} s_worker_t;

static void *
s_worker (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    for (int i = 0; i < w->n; i++) {
        char key[32], val[32];
        int kl = snprintf (key, sizeof key, "t%d-k%03d", w->id, i);
        int vl = snprintf (val, sizeof val, "v%d", i);
        if (hal_kv_put (w->kv, w->ns, key, (size_t) kl, val, (size_t) vl, 0)
            != 0)
            w->failures++;
        //  overwrite a shared key and read something back too
        if (hal_kv_put (w->kv, w->ns, "shared", 6, key, (size_t) kl, 0) != 0)
            w->failures++;
        void *got;
        size_t glen;
        if (hal_kv_get (w->kv, w->ns, key, (size_t) kl, &got, &glen) != 0)
            w->failures++;
        else {
            if (glen != (size_t) vl || memcmp (got, val, glen))
                w->failures++;
            free (got);
        }
    }
    return NULL;
}

static void
test_concurrent (void)
{
    char err[256];
    hal_kv_t *kv = hal_kv_open (s_dir, 64 << 20, err, sizeof err);
    CHECK (kv != NULL);
    if (!kv)
        return;
    enum { THREADS = 4, N = 50 };
    for (int same = 0; same < 2; same++) {
        s_worker_t w[THREADS];
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++) {
            w[i] = (s_worker_t){ kv, "", i, N, 0 };
            snprintf (w[i].ns, sizeof w[i].ns, same ? "same" : "own%d", i);
            CHECK_EQ_INT (pthread_create (&t[i], NULL, s_worker, &w[i]), 0);
        }
        for (int i = 0; i < THREADS; i++) {
            pthread_join (t[i], NULL);
            CHECK_EQ_INT (w[i].failures, 0);
        }
        //  keys "tI-kNNN" are 7 bytes, values "vN" 2 or 3 bytes;
        //  "shared" (6) holds a 7-byte key
        uint64_t vbytes = 10 * 2 + (N - 10) * 3;
        uint64_t own = N * 7 + vbytes + 6 + 7;
        if (same)
            CHECK (usage_is (kv, "same", THREADS * (own - 13) + 13,
                             THREADS * N + 1));
        else
            for (int i = 0; i < THREADS; i++)
                CHECK (usage_is (kv, w[i].ns, own, N + 1));
    }
    s_seen_t *s = (s_seen_t *) calloc (1, sizeof *s);
    CHECK_EQ_INT (hal_kv_each (kv, "same", s_each_cb, s), 0);
    CHECK_EQ_INT (s->n, THREADS * N + 1);
    free (s);
    hal_kv_destroy (&kv);
}

static void
test_map_full (void)
{
    char err[256], dir[160];
    snprintf (dir, sizeof dir, "%s/small", s_tmp);
    hal_kv_t *kv = hal_kv_open (dir, 1 << 20, err, sizeof err);
    CHECK (kv != NULL);
    if (!kv)
        return;
    size_t vlen = 64 * 1024;
    uint8_t *val = (uint8_t *) malloc (vlen);
    memset (val, 'x', vlen);
    int rc = 0, i;
    for (i = 0; i < 100 && rc == 0; i++) {
        char key[16];
        snprintf (key, sizeof key, "k%02d", i);
        rc = hal_kv_put (kv, "fill", key, 3, val, vlen, 0);
    }
    CHECK_EQ_INT (rc, AAAX_EIO);
    int stored = i - 1;
    CHECK (stored > 0 && stored < 100);
    //  the failed put changed nothing; reads still work
    CHECK (usage_is (kv, "fill", (uint64_t) stored * (3 + vlen),
                     (uint64_t) stored));
    CHECK (has (kv, "fill", "k00", 3, val, vlen));
    char last[16];
    snprintf (last, sizeof last, "k%02d", stored);
    CHECK (has (kv, "fill", last, 3, NULL, 0));
    s_seen_t *s = (s_seen_t *) calloc (1, sizeof *s);
    CHECK_EQ_INT (hal_kv_each (kv, "fill", s_each_cb, s), 0);
    CHECK_EQ_INT (s->n, stored);
    free (s);
    //  a value larger than the whole map
    CHECK_EQ_INT (hal_kv_put (kv, "other", "big", 3, val, 0, 0), 0);
    uint8_t *huge = (uint8_t *) calloc (1, HAL_KV_VALUE_MAX);
    CHECK_EQ_INT (
        hal_kv_put (kv, "other", "huge", 4, huge, HAL_KV_VALUE_MAX, 0),
        AAAX_EIO);
    free (huge);
    CHECK (usage_is (kv, "other", 3, 1));
    //  deleting frees room again
    CHECK_EQ_INT (hal_kv_del (kv, "fill", "k00", 3), 0);
    CHECK_EQ_INT (hal_kv_del (kv, "fill", "k01", 3), 0);
    CHECK_EQ_INT (hal_kv_put (kv, "fill", "k00", 3, val, vlen, 0), 0);
    CHECK (has (kv, "fill", "k00", 3, val, vlen));
    free (val);
    hal_kv_destroy (&kv);
    tu_rmrf (dir);
}

int
main (void)
{
    snprintf (s_tmp, sizeof s_tmp, "/tmp/aaax-test-kv-XXXXXX");
    if (!mkdtemp (s_tmp)) {
        perror ("mkdtemp");
        return 1;
    }
    //  the store's directory and a missing parent are created
    snprintf (s_dir, sizeof s_dir, "%s/data/kv", s_tmp);
    test_basics ();
    test_limits ();
    test_isolation ();
    test_long_keys ();
    test_quota ();
    test_reopen ();
    test_concurrent ();
    test_map_full ();
    tu_rmrf (s_dir);
    char data[160];
    snprintf (data, sizeof data, "%s/data", s_tmp);
    tu_rmrf (data);
    tu_rmrf (s_tmp);
    TEST_DONE ();
}
