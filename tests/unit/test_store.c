/*  test_store.c — unit tests of the LMDB store and its writer actor
    (hal/hal_store.c): batches committed synchronously and through the
    writer, horizon / committed, get / scan, statistics, failed batches, and
    what a reopened store sees. */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <czmq.h>

#include "aaax.h"
#include "hal_clock.h"
#include "hal_store.h"
#include "testutil.h"

static char s_tmp[64];
static char s_dir[128];

/*  The value under key in db as a C string ("" when absent). */
static bool
value_is (hal_store_t *st, hal_db_t db, const char *key, const char *want)
{
    void *val = NULL;
    size_t vlen = 0;
    int rc = hal_store_get (st, db, key, strlen (key), &val, &vlen);
    bool ok;
    if (!want)
        ok = rc == AAAX_ENOENT;
    else
        ok = rc == 0 && vlen == strlen (want) && memcmp (val, want, vlen) == 0;
    if (rc == 0)
        free (val);
    return ok;
}

static void
put_s (hal_store_t *st, hal_db_t db, const char *k, const char *v)
{
    hal_store_put (st, db, k, strlen (k), v, strlen (v));
}

typedef struct {
    char keys[16][32];
    int n, stop_at;
} s_scan_t;

static int
s_scan_cb (void *arg, const void *key, size_t klen, const void *val,
           size_t vlen)
{
    s_scan_t *s = (s_scan_t *) arg;
    if (s->n < 16 && klen < 32) {
        memcpy (s->keys[s->n], key, klen);
        s->keys[s->n][klen] = 0;
    }
    s->n++;
    return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

static void
test_sync (void)
{
    char err[256] = "";
    hal_store_t *st = hal_store_open (s_dir, 64u << 20, err, sizeof err);
    CHECK (st != NULL);
    if (!st) {
        fprintf (stderr, "  open: %s\n", err);
        return;
    }
    struct stat sb;
    CHECK (stat (s_dir, &sb) == 0 && (sb.st_mode & 07777) == 0700);
    CHECK (hal_store_env (st) != NULL);
    CHECK (hal_store_socket (st) == NULL); // no writer yet
    CHECK (!hal_store_busy (st));

    //  fresh: nothing pending, nothing committed
    CHECK_EQ_INT (hal_store_committed (st), 0);
    CHECK_EQ_INT (hal_store_horizon (st), 0);
    CHECK (!hal_store_pending (st));
    CHECK_EQ_INT (hal_store_commit_sync (st), 0); // empty: nothing happens
    CHECK_EQ_INT (hal_store_committed (st), 0);
    CHECK (!hal_store_kick (st)); // no writer

    //  a batch: puts in several dbs, a delete of something absent
    put_s (st, HAL_DB_META, "kernel_id", "aaax-0123456789abcdef");
    put_s (st, HAL_DB_QUEUE, "b", "2");
    put_s (st, HAL_DB_QUEUE, "a", "1");
    put_s (st, HAL_DB_QUEUE, "c", "3");
    put_s (st, HAL_DB_MBOX, "a", "mbox-a");
    hal_store_del (st, HAL_DB_SYSTEMS, "nobody", 6);
    CHECK (hal_store_pending (st));
    CHECK_EQ_INT (hal_store_horizon (st), 1);
    //  not visible before the commit
    CHECK (value_is (st, HAL_DB_QUEUE, "a", NULL));
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    CHECK_EQ_INT (hal_store_committed (st), 1);
    CHECK_EQ_INT (hal_store_horizon (st), 1); // everything on disk
    CHECK (!hal_store_pending (st));
    CHECK (value_is (st, HAL_DB_QUEUE, "a", "1"));
    CHECK (value_is (st, HAL_DB_MBOX, "a", "mbox-a")); // dbs are separate
    CHECK (value_is (st, HAL_DB_SYSTEMS, "a", NULL));
    CHECK (value_is (st, HAL_DB_META, "kernel_id", "aaax-0123456789abcdef"));

    //  scan: key order, within one db, stop on non-zero
    s_scan_t sc;
    memset (&sc, 0, sizeof sc);
    CHECK_EQ_INT (hal_store_scan (st, HAL_DB_QUEUE, s_scan_cb, &sc), 0);
    CHECK_EQ_INT (sc.n, 3);
    CHECK_EQ_STR (sc.keys[0], "a");
    CHECK_EQ_STR (sc.keys[1], "b");
    CHECK_EQ_STR (sc.keys[2], "c");
    memset (&sc, 0, sizeof sc);
    sc.stop_at = 2;
    CHECK_EQ_INT (hal_store_scan (st, HAL_DB_QUEUE, s_scan_cb, &sc), 7);
    CHECK_EQ_INT (sc.n, 2);
    memset (&sc, 0, sizeof sc);
    CHECK_EQ_INT (hal_store_scan (st, HAL_DB_IDEM, s_scan_cb, &sc), 0);
    CHECK_EQ_INT (sc.n, 0);

    //  overwrite and delete in one batch, applied in order
    put_s (st, HAL_DB_QUEUE, "a", "one");
    hal_store_del (st, HAL_DB_QUEUE, "b", 1);
    put_s (st, HAL_DB_QUEUE, "d", "x");
    hal_store_del (st, HAL_DB_QUEUE, "d", 1);
    put_s (st, HAL_DB_QUEUE, "e", "y");
    hal_store_del (st, HAL_DB_QUEUE, "e", 1);
    put_s (st, HAL_DB_QUEUE, "e", "z");
    CHECK_EQ_INT (hal_store_horizon (st), 2);
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    CHECK_EQ_INT (hal_store_committed (st), 2);
    CHECK (value_is (st, HAL_DB_QUEUE, "a", "one"));
    CHECK (value_is (st, HAL_DB_QUEUE, "b", NULL));
    CHECK (value_is (st, HAL_DB_QUEUE, "d", NULL));
    CHECK (value_is (st, HAL_DB_QUEUE, "e", "z"));

    //  empty values, binary keys, big values, the longest key
    hal_store_put (st, HAL_DB_SYSTEMS, "empty", 5, "", 0);
    hal_store_put (st, HAL_DB_SYSTEMS, "bin\0key\xff", 9, "v", 1);
    size_t bigsz = 3u << 20;
    char *big = (char *) malloc (bigsz);
    CHECK (big != NULL);
    for (size_t i = 0; big && i < bigsz; i++)
        big[i] = (char) (i * 7);
    if (big)
        hal_store_put (st, HAL_DB_SYSTEMS, "big", 3, big, bigsz);
    char k511[511];
    memset (k511, 'k', sizeof k511);
    hal_store_put (st, HAL_DB_SYSTEMS, k511, sizeof k511, "long", 4);
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    void *val = NULL;
    size_t vlen = 99;
    CHECK_EQ_INT (hal_store_get (st, HAL_DB_SYSTEMS, "empty", 5, &val, &vlen),
                  0);
    CHECK_EQ_INT (vlen, 0);
    free (val);
    CHECK_EQ_INT (
        hal_store_get (st, HAL_DB_SYSTEMS, "bin\0key\xff", 9, &val, &vlen), 0);
    CHECK_EQ_INT (vlen, 1);
    free (val);
    CHECK_EQ_INT (hal_store_get (st, HAL_DB_SYSTEMS, "big", 3, &val, &vlen), 0);
    CHECK_EQ_INT (vlen, bigsz);
    CHECK (big && val && memcmp (val, big, bigsz) == 0);
    free (val);
    free (big);
    CHECK_EQ_INT (
        hal_store_get (st, HAL_DB_SYSTEMS, k511, sizeof k511, &val, &vlen), 0);
    free (val);
    //  out-parameters untouched when absent
    val = (void *) 0x1;
    vlen = 12345;
    CHECK_EQ_INT (hal_store_get (st, HAL_DB_SYSTEMS, "nope", 4, &val, &vlen),
                  AAAX_ENOENT);
    CHECK (val == (void *) 0x1);
    CHECK_EQ_INT (vlen, 12345);

    //  statistics so far: 3 commits, 6 + 7 + 4 ops
    hal_store_stats_t stats;
    hal_store_stats (st, &stats);
    CHECK_EQ_INT (stats.commits, 3);
    CHECK_EQ_INT (stats.ops, 17);
    CHECK_EQ_INT (stats.max_batch, 7);
    CHECK_EQ_INT (stats.failures, 0);

    //  A key over 511 bytes fails the whole batch (nothing of it applied).
    put_s (st, HAL_DB_QUEUE, "f", "never");
    char k512[512];
    memset (k512, 'k', sizeof k512);
    hal_store_put (st, HAL_DB_QUEUE, k512, sizeof k512, "x", 1);
    CHECK (hal_store_pending (st));
    CHECK_EQ_INT (hal_store_commit_sync (st), AAAX_ENOMEM);
    CHECK_EQ_INT (hal_store_committed (st), 4); // completed, unsuccessfully
    CHECK (value_is (st, HAL_DB_QUEUE, "f", NULL));
    CHECK (!hal_store_pending (st)); // the next batch starts clean
    hal_store_stats (st, &stats);
    CHECK_EQ_INT (stats.failures, 1);
    CHECK_EQ_INT (stats.commits, 3);
    //  An LMDB refusal (an empty key) fails the batch with AAAX_EIO and
    //  aborts its transaction.
    put_s (st, HAL_DB_QUEUE, "g", "never");
    hal_store_put (st, HAL_DB_QUEUE, "", 0, "x", 1);
    CHECK_EQ_INT (hal_store_commit_sync (st), AAAX_EIO);
    CHECK (value_is (st, HAL_DB_QUEUE, "g", NULL));
    hal_store_stats (st, &stats);
    CHECK_EQ_INT (stats.failures, 2);
    //  and the store still works
    put_s (st, HAL_DB_QUEUE, "h", "fine");
    CHECK_EQ_INT (hal_store_commit_sync (st), 0);
    CHECK (value_is (st, HAL_DB_QUEUE, "h", "fine"));
    CHECK_EQ_INT (hal_store_committed (st), 6);

    hal_store_destroy (&st);
    CHECK (st == NULL);
    hal_store_destroy (&st);
    hal_store_destroy (NULL);
}

static void
test_writer (void)
{
    char err[256];
    hal_store_t *st = hal_store_open (s_dir, 64u << 20, err, sizeof err);
    CHECK (st != NULL);
    if (!st)
        return;
    //  the previous test's data is there
    CHECK (value_is (st, HAL_DB_QUEUE, "h", "fine"));
    CHECK (value_is (st, HAL_DB_QUEUE, "a", "one"));
    uint64_t base = hal_store_committed (st); // counts restart at 0
    CHECK_EQ_INT (base, 0);

    CHECK_EQ_INT (hal_store_start (st), 0);
    CHECK (hal_store_socket (st) != NULL);
    uint64_t no = 99;
    int status = 99;
    CHECK_EQ_INT (hal_store_reap (st, 0, &no, &status), AAAX_ENOENT);
    CHECK (!hal_store_kick (st)); // nothing pending

    put_s (st, HAL_DB_QUEUE, "w1", "one");
    CHECK_EQ_INT (hal_store_horizon (st), 1);
    CHECK (hal_store_kick (st));
    CHECK (hal_store_busy (st));
    CHECK (!hal_store_pending (st));
    CHECK_EQ_INT (hal_store_horizon (st), 1); // in flight
    CHECK (!hal_store_kick (st));             // busy
    //  the next batch fills meanwhile
    put_s (st, HAL_DB_QUEUE, "w2", "two");
    put_s (st, HAL_DB_QUEUE, "w3", "three");
    CHECK_EQ_INT (hal_store_horizon (st), 2);
    CHECK (!hal_store_kick (st)); // still busy (or done, but not reaped)
    CHECK_EQ_INT (hal_store_reap (st, 5000, &no, &status), 0);
    CHECK_EQ_INT (no, 1);
    CHECK_EQ_INT (status, 0);
    CHECK_EQ_INT (hal_store_committed (st), 1);
    CHECK (!hal_store_busy (st));
    CHECK (value_is (st, HAL_DB_QUEUE, "w1", "one"));
    CHECK (value_is (st, HAL_DB_QUEUE, "w2", NULL));
    CHECK_EQ_INT (hal_store_reap (st, 0, &no, &status), AAAX_ENOENT);
    //  the second batch
    CHECK (hal_store_kick (st));
    CHECK_EQ_INT (hal_store_horizon (st), 2);
    //  poll the socket like the switchboard does
    void *sock = hal_store_socket (st);
    zpoller_t *poller = zpoller_new (sock, NULL);
    CHECK (zpoller_wait (poller, 5000) == sock);
    zpoller_destroy (&poller);
    CHECK_EQ_INT (hal_store_reap (st, 0, &no, &status), 0);
    CHECK_EQ_INT (no, 2);
    CHECK_EQ_INT (status, 0);
    CHECK_EQ_INT (hal_store_committed (st), 2);
    CHECK_EQ_INT (hal_store_horizon (st), 2);
    CHECK (value_is (st, HAL_DB_QUEUE, "w3", "three"));

    //  a failed batch through the writer reports its status
    char k600[600];
    memset (k600, 'x', sizeof k600);
    hal_store_put (st, HAL_DB_QUEUE, k600, sizeof k600, "x", 1);
    CHECK (hal_store_pending (st));
    CHECK (hal_store_kick (st));
    CHECK_EQ_INT (hal_store_reap (st, 5000, &no, &status), 0);
    CHECK_EQ_INT (no, 3);
    CHECK_EQ_INT (status, AAAX_ENOMEM);
    CHECK_EQ_INT (hal_store_committed (st), 3);

    //  many small batches, each kicked when the writer is idle: group
    //  commit puts everything appended meanwhile into one batch
    int appended = 0;
    uint64_t last = 3;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 20; i++) {
            char k[32];
            snprintf (k, sizeof k, "g-%03d-%02d", round, i);
            put_s (st, HAL_DB_MBOX, k, "v");
            appended++;
        }
        if (!hal_store_busy (st))
            CHECK (hal_store_kick (st));
        if (hal_store_reap (st, 0, &no, &status) == 0) {
            CHECK_EQ_INT (status, 0);
            CHECK (no == last + 1);
            last = no;
        }
    }
    while (hal_store_busy (st) || hal_store_pending (st)) {
        if (!hal_store_busy (st))
            hal_store_kick (st);
        if (hal_store_reap (st, 5000, &no, &status) == 0) {
            CHECK_EQ_INT (status, 0);
            CHECK (no == last + 1);
            last = no;
        }
    }
    CHECK_EQ_INT (hal_store_committed (st), last);
    CHECK_EQ_INT (hal_store_horizon (st), last);
    s_scan_t sc;
    memset (&sc, 0, sizeof sc);
    hal_store_scan (st, HAL_DB_MBOX, s_scan_cb, &sc);
    CHECK_EQ_INT (sc.n, appended + 1); // and "a" from test_sync
    hal_store_stats_t stats;
    hal_store_stats (st, &stats);
    CHECK_EQ_INT (stats.failures, 1);
    CHECK_EQ_INT (stats.ops, 3 + (uint64_t) appended);
    CHECK_EQ_INT (stats.commits, last - 1);
    CHECK (stats.max_batch >= 20);

    //  commit_sync refuses while a batch is in flight
    put_s (st, HAL_DB_QUEUE, "x1", "1");
    CHECK (hal_store_kick (st));
    put_s (st, HAL_DB_QUEUE, "x2", "2");
    CHECK_EQ_INT (hal_store_commit_sync (st), AAAX_EINTERNAL);
    //  destroy with a batch in flight completes it; the pending one
    //  (x2, never handed over) is dropped
    hal_store_destroy (&st);
    st = hal_store_open (s_dir, 64u << 20, err, sizeof err);
    CHECK (st != NULL);
    if (!st)
        return;
    CHECK (value_is (st, HAL_DB_QUEUE, "x1", "1"));
    CHECK (value_is (st, HAL_DB_QUEUE, "x2", NULL));
    CHECK (value_is (st, HAL_DB_QUEUE, "w3", "three"));
    hal_store_destroy (&st);
}

//  The commit delay holds a small batch back only while replies of two or
//  more sessions wait on it and the previous commit completed recently.
static void
test_commit_delay (void)
{
    char err[256];
    hal_store_t *st = hal_store_open (s_dir, 64u << 20, err, sizeof err);
    CHECK (st != NULL);
    if (!st)
        return;
    CHECK_EQ_INT (hal_store_start (st), 0);
    hal_store_set_delay (st, 200000); // 200 ms: far longer than a commit
    uint64_t no;
    int status;

    //  a first commit, so that "the previous commit" is recent
    put_s (st, HAL_DB_QUEUE, "d0", "x");
    hal_store_note_waiter (st, 1);
    hal_store_note_waiter (st, 2);
    CHECK (hal_store_kick (st)); // no commit completed yet: not held
    CHECK_EQ_INT (hal_store_reap (st, 2000, &no, &status), 0);
    int64_t done = hal_clock_mono_us ();

    //  one session waiting: never held
    put_s (st, HAL_DB_QUEUE, "d1", "x");
    hal_store_note_waiter (st, 1);
    hal_store_note_waiter (st, 1);
    CHECK_EQ_INT (hal_store_kick_at (st), INT64_MAX);
    CHECK (hal_store_kick (st));
    CHECK_EQ_INT (hal_store_reap (st, 2000, &no, &status), 0);
    done = hal_clock_mono_us ();

    //  two sessions, a small batch, a recent commit: held until the delay
    put_s (st, HAL_DB_QUEUE, "d2", "x");
    hal_store_note_waiter (st, 1);
    hal_store_note_waiter (st, 2);
    CHECK (!hal_store_kick (st));
    int64_t at = hal_store_kick_at (st);
    CHECK (at != INT64_MAX);
    CHECK (at <= done + 200000 && at > done + 150000);
    while (hal_clock_mono_us () < at)
        usleep (1000);
    CHECK_EQ_INT (hal_store_kick_at (st), INT64_MAX);
    CHECK (hal_store_kick (st));
    CHECK_EQ_INT (hal_store_reap (st, 2000, &no, &status), 0);

    //  two sessions but a large batch (64 operations): not held
    for (int i = 0; i < 64; i++) {
        char key[16];
        snprintf (key, sizeof key, "big%d", i);
        put_s (st, HAL_DB_QUEUE, key, "x");
    }
    hal_store_note_waiter (st, 1);
    hal_store_note_waiter (st, 2);
    CHECK (hal_store_kick (st));
    CHECK_EQ_INT (hal_store_reap (st, 2000, &no, &status), 0);

    //  delay 0: never held
    hal_store_set_delay (st, 0);
    put_s (st, HAL_DB_QUEUE, "d3", "x");
    hal_store_note_waiter (st, 1);
    hal_store_note_waiter (st, 2);
    CHECK (hal_store_kick (st));
    CHECK_EQ_INT (hal_store_reap (st, 2000, &no, &status), 0);
    CHECK (value_is (st, HAL_DB_QUEUE, "d3", "x"));
    hal_store_destroy (&st);
}

static void
test_open_errors (void)
{
    char err[256] = "";
    //  a directory that cannot be made
    hal_store_t *st =
        hal_store_open ("/proc/aaax-no/such", 1u << 20, err, sizeof err);
    CHECK (st == NULL);
    CHECK (strstr (err, "cannot create") != NULL);
    //  a path that is a file
    char file[160];
    snprintf (file, sizeof file, "%s/file", s_tmp);
    FILE *f = fopen (file, "w");
    if (f)
        fclose (f);
    err[0] = 0;
    st = hal_store_open (file, 1u << 20, err, sizeof err);
    CHECK (st == NULL);
    CHECK (err[0] != 0);
    unlink (file);
}

int
main (void)
{
    snprintf (s_tmp, sizeof s_tmp, "/tmp/aaax-test-store-XXXXXX");
    if (!mkdtemp (s_tmp)) {
        perror ("mkdtemp");
        return 1;
    }
    snprintf (s_dir, sizeof s_dir, "%s/db", s_tmp);
    test_sync ();
    test_writer ();
    test_commit_delay ();
    test_open_errors ();
    tu_rmrf (s_dir);
    tu_rmrf (s_tmp);
    TEST_DONE ();
}
