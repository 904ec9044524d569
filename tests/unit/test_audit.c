/*  test_audit.c — unit tests of the audit journal (hal/hal_audit.c):
    appends and waits from several threads (group commit, contiguous seqs,
    each waiter its own seq), checkpoints every N records and at close with
    valid signatures, the chain continued across reopen (and the count to
    the next checkpoint), side tables committed with their record, a reader
    in another process seeing the latest commits, hal_audit_verify on
    intact logs and on copies damaged in every way it must detect, failed
    transactions (a tiny map) reported to their waiters with the log still
    intact, argument checks, and a throughput figure. */

#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <lmdb.h>
#include <msgpack.h>
#include <sodium.h>

#include "aaax.h"
#include "hal_audit.h"
#include "hal_clock.h"
#include "hal_keys.h"
#include "testutil.h"

extern char **environ;

static char s_root[64];    /* holds everything, removed at the end */
static char s_dir[128];    /* the main data directory */
static char s_self[4096];  /* this program, for the reader child */
static hal_keys_t *s_keys; /* in s_dir */

/*  ---- helpers ---------------------------------------------------------- */

static void
path_in (char *out, size_t len, const char *dir, const char *name)
{
    snprintf (out, len, "%s/%s", dir, name);
}

static void
make_dir (char *out, size_t len, const char *name)
{
    path_in (out, len, s_root, name);
    mkdir (out, 0700);
}

static void
rm_data_dir (const char *dir)
{
    char a[256];
    path_in (a, sizeof a, dir, "audit");
    tu_rmrf (a);
    tu_rmrf (dir);
}

static bool
copy_file (const char *from, const char *to)
{
    FILE *in = fopen (from, "rb"), *out = fopen (to, "wb");
    bool ok = in && out;
    char buf[65536];
    size_t n;
    while (ok && (n = fread (buf, 1, sizeof buf, in)) > 0)
        ok = fwrite (buf, 1, n, out) == n;
    if (in)
        fclose (in);
    if (out)
        fclose (out);
    return ok;
}

/*  Copies <from>/audit/data.mdb into a fresh <to>/audit. */
static bool
copy_env (const char *from, const char *to)
{
    char a[256], b[256], fa[300], fb[300];
    rm_data_dir (to);
    mkdir (to, 0700);
    path_in (a, sizeof a, from, "audit");
    path_in (b, sizeof b, to, "audit");
    mkdir (b, 0700);
    path_in (fa, sizeof fa, a, "data.mdb");
    path_in (fb, sizeof fb, b, "data.mdb");
    return copy_file (fa, fb);
}

static void
be64 (uint64_t v, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t) v;
}

static hal_audit_rec_t
rec_of (const char *subject, const char *corr)
{
    hal_audit_rec_t r;
    memset (&r, 0, sizeof r);
    r.kind = "gate";
    r.subject = subject;
    r.action = "fs.read";
    r.target = "/etc/motd";
    r.verdict = "allow";
    r.rule = "r1";
    r.reason = "matched";
    r.corr = corr;
    return r;
}

/*  Finds string field name in a packed body map into out ("" if none). */
static void
body_str (const void *body, size_t len, const char *name, char *out,
          size_t outlen)
{
    out[0] = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    if (msgpack_unpack_next (&u, body, len, NULL) == MSGPACK_UNPACK_SUCCESS
        && u.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            msgpack_object_kv *kv = &u.data.via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR
                && kv->key.via.str.size == strlen (name)
                && !memcmp (kv->key.via.str.ptr, name, strlen (name))
                && kv->val.type == MSGPACK_OBJECT_STR
                && kv->val.via.str.size < outlen) {
                memcpy (out, kv->val.via.str.ptr, kv->val.via.str.size);
                out[kv->val.via.str.size] = 0;
            }
        }
    msgpack_unpacked_destroy (&u);
}

/*  Verifies the log of dir in this process. */
static int
verify_dir (const char *dir, hal_audit_verify_t *v)
{
    char err[256] = "";
    hal_audit_reader_t *r = hal_audit_reader_open (dir, err, sizeof err);
    if (!r) {
        fprintf (stderr, "  reader: %s\n", err);
        return AAAX_EIO;
    }
    int rc = hal_audit_verify (r, hal_keys_public (s_keys), v);
    if (rc)
        fprintf (stderr, "  verify %s: first_bad %llu: %s\n", dir,
                 (unsigned long long) v->first_bad, v->why);
    hal_audit_reader_close (&r);
    return rc;
}

/*  Records of a scan: seq and corr / kind per record. */
typedef struct {
    uint64_t n, last;
    bool contiguous;
    char corr[4096][24];
    char kind[4096][16];
} s_log_t;

static int
s_log_cb (void *arg, uint64_t seq, const uint8_t *hash, const void *body,
          size_t len)
{
    s_log_t *l = (s_log_t *) arg;
    if (seq != l->last + 1)
        l->contiguous = false;
    l->last = seq;
    if (seq < 4096) {
        body_str (body, len, "corr", l->corr[seq], sizeof l->corr[seq]);
        body_str (body, len, "kind", l->kind[seq], sizeof l->kind[seq]);
    }
    l->n++;
    return 0;
}

static s_log_t *
read_log (const char *dir)
{
    s_log_t *l = (s_log_t *) calloc (1, sizeof *l);
    l->contiguous = true;
    char err[256];
    hal_audit_reader_t *r = hal_audit_reader_open (dir, err, sizeof err);
    CHECK (r != NULL);
    if (r) {
        CHECK_EQ_INT (hal_audit_reader_scan (r, 0, 0, s_log_cb, l), 0);
        hal_audit_reader_close (&r);
    }
    return l;
}

/*  Runs this program as a reader of dir in a child process (LMDB must not
    be opened twice in one process): it checks that the log verifies and
    holds at least min records. */
static int
reader_child (const char *dir, uint64_t min)
{
    char minbuf[32];
    snprintf (minbuf, sizeof minbuf, "%llu", (unsigned long long) min);
    char *argv[] = { s_self, (char *) "--reader", (char *) dir, minbuf, NULL };
    pid_t pid;
    if (posix_spawn (&pid, s_self, NULL, NULL, argv, environ) != 0)
        return -1;
    int status;
    if (waitpid (pid, &status, 0) != pid || !WIFEXITED (status))
        return -1;
    return WEXITSTATUS (status);
}

static int
reader_main (const char *dir, const char *minstr)
{
    char err[256] = "";
    hal_audit_reader_t *r = hal_audit_reader_open (dir, err, sizeof err);
    if (!r) {
        fprintf (stderr, "reader child: %s\n", err);
        return 2;
    }
    uint64_t min = strtoull (minstr, NULL, 10);
    uint64_t last = hal_audit_reader_last (r);
    uint8_t pk[HAL_KEYS_PK_BYTES];
    char pub[300];
    path_in (pub, sizeof pub, dir, "kernel.pub");
    int rc = hal_keys_read_public (pub, pk, err, sizeof err);
    hal_audit_verify_t v;
    if (!rc)
        rc = hal_audit_verify (r, pk, &v);
    hal_audit_reader_close (&r);
    if (rc) {
        fprintf (stderr, "reader child: verify: %s %s\n", err, v.why);
        return 3;
    }
    if (last < min || v.records < last) {
        fprintf (stderr, "reader child: last %llu < %llu\n",
                 (unsigned long long) last, (unsigned long long) min);
        return 4;
    }
    return 0;
}

/*  ---- concurrent appends ------------------------------------------------ */

#define THREADS 4
#define PER_THREAD 250

typedef struct {
    hal_audit_t *au;
    int id;
    int fails;
    uint64_t seqs[PER_THREAD];
} s_worker_t;

static void *
s_worker (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    char subject[16];
    snprintf (subject, sizeof subject, "sys.t%d", w->id);
    /*  Half appended one at a time, half in runs of 5 before waiting. */
    for (int i = 0; i < PER_THREAD;) {
        int run = i < PER_THREAD / 2 ? 1 : 5;
        uint64_t tickets[5];
        for (int j = 0; j < run; j++) {
            char corr[24];
            snprintf (corr, sizeof corr, "t%d-%d", w->id, i + j);
            hal_audit_rec_t r = rec_of (subject, corr);
            /*  args: {"i": n} */
            uint8_t args[16] = { 0x81, 0xa1, 'i', 0xcd };
            args[4] = (uint8_t) ((i + j) >> 8);
            args[5] = (uint8_t) (i + j);
            r.args = args;
            r.argslen = 6;
            tickets[j] = hal_audit_append (w->au, &r, NULL, 0);
            if (!tickets[j])
                w->fails++;
        }
        for (int j = 0; j < run; j++) {
            uint64_t seq = 0;
            if (hal_audit_wait (w->au, tickets[j], 10000, &seq) != 0)
                w->fails++;
            w->seqs[i + j] = seq;
        }
        i += run;
    }
    return NULL;
}

static void
test_concurrent (void)
{
    char err[256] = "";
    hal_audit_t *au =
        hal_audit_open (s_dir, 64u << 20, s_keys, 10, err, sizeof err);
    CHECK (au != NULL);
    if (!au) {
        fprintf (stderr, "  open: %s\n", err);
        return;
    }
    char ad[256];
    path_in (ad, sizeof ad, s_dir, "audit");
    struct stat st;
    CHECK (stat (ad, &st) == 0 && (st.st_mode & 07777) == 0700);

    s_worker_t w[THREADS];
    pthread_t th[THREADS];
    memset (w, 0, sizeof w);
    for (int i = 0; i < THREADS; i++) {
        w[i].au = au;
        w[i].id = i;
        pthread_create (&th[i], NULL, s_worker, &w[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join (th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ_INT (w[i].fails, 0);

    /*  1000 records and a checkpoint after every 10: seqs 1..1100, every
        11th a checkpoint, each waiter holding its own record's seq. */
    hal_audit_stats_t stats;
    hal_audit_stats (au, &stats);
    CHECK_EQ_INT (stats.records, 1100);
    CHECK_EQ_INT (stats.checkpoints, 100);
    CHECK_EQ_INT (stats.failures, 0);
    CHECK (stats.commits >= 1 && stats.commits <= 1000);
    printf ("concurrent: 1000 records in %llu commits\n",
            (unsigned long long) stats.commits);

    /*  A reader in another process sees all of it while the journal is
        open. */
    CHECK_EQ_INT (reader_child (s_dir, 1100), 0);

    hal_audit_close (&au);
    CHECK (au == NULL);
    hal_audit_close (&au); /* NULL is fine */

    s_log_t *l = read_log (s_dir);
    CHECK (l->contiguous);
    CHECK_EQ_INT (l->n, 1100);
    int wrong = 0;
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < PER_THREAD; j++) {
            char corr[24];
            snprintf (corr, sizeof corr, "t%d-%d", i, j);
            uint64_t s = w[i].seqs[j];
            if (s == 0 || s > 1100 || strcmp (l->corr[s], corr) != 0)
                wrong++;
        }
    CHECK_EQ_INT (wrong, 0);
    int ck = 0;
    for (uint64_t s = 1; s <= 1100; s++)
        if (!strcmp (l->kind[s], "checkpoint")) {
            ck++;
            CHECK (s % 11 == 0);
        }
    CHECK_EQ_INT (ck, 100);
    free (l);

    hal_audit_verify_t v;
    CHECK_EQ_INT (verify_dir (s_dir, &v), 0);
    CHECK_EQ_INT (v.records, 1100);
    CHECK_EQ_INT (v.checkpoints, 100);
    CHECK_EQ_INT (v.unsigned_tail, 0);
    CHECK_EQ_INT (v.first_bad, 0);
}

/*  Reopen: seqs continue; a checkpoint at close only when due. */
static void
test_reopen (void)
{
    char err[256] = "";
    hal_audit_t *au =
        hal_audit_open (s_dir, 64u << 20, s_keys, 10, err, sizeof err);
    CHECK (au != NULL);
    if (!au)
        return;
    hal_audit_stats_t stats;
    hal_audit_stats (au, &stats);
    CHECK_EQ_INT (stats.records, 1100);
    uint64_t seq = 0;
    for (int i = 0; i < 3; i++) {
        hal_audit_rec_t r = rec_of ("sys.re", "re");
        r.action = r.target = r.rule = r.reason = r.corr = NULL;
        uint64_t t = hal_audit_append (au, &r, NULL, 0);
        CHECK (t > 0);
        CHECK_EQ_INT (hal_audit_wait (au, t, -1, &seq), 0);
        CHECK_EQ_INT (seq, 1101 + (uint64_t) i);
        /*  Waiting again for an answered ticket gives the same answer. */
        uint64_t again = 0;
        CHECK_EQ_INT (hal_audit_wait (au, t, 0, &again), 0);
        CHECK_EQ_INT (again, seq);
    }
    hal_audit_close (&au);
    hal_audit_verify_t v;
    CHECK_EQ_INT (verify_dir (s_dir, &v), 0);
    CHECK_EQ_INT (v.records, 1104); /* 1104: the checkpoint at close */
    CHECK_EQ_INT (v.checkpoints, 101);
    CHECK_EQ_INT (v.unsigned_tail, 0);

    /*  Nothing appended: no checkpoint at close. */
    au = hal_audit_open (s_dir, 64u << 20, s_keys, 10, err, sizeof err);
    CHECK (au != NULL);
    hal_audit_close (&au);
    CHECK_EQ_INT (verify_dir (s_dir, &v), 0);
    CHECK_EQ_INT (v.records, 1104);

    /*  A log whose tail lacks a checkpoint (as after a crash): the count
        to the next checkpoint is read back at open. Copy the file while
        the journal is open and idle: 4 records after checkpoint 1104. */
    char crash[128];
    make_dir (crash, sizeof crash, "crash");
    au = hal_audit_open (s_dir, 64u << 20, s_keys, 5, err, sizeof err);
    CHECK (au != NULL);
    if (!au)
        return;
    for (int i = 0; i < 4; i++) {
        hal_audit_rec_t r = rec_of ("sys.crash", "c");
        CHECK_EQ_INT (
            hal_audit_wait (au, hal_audit_append (au, &r, NULL, 0), -1, &seq),
            0);
    }
    CHECK_EQ_INT (seq, 1108);
    CHECK (copy_env (s_dir, crash));
    hal_audit_close (&au); /* checkpoint 1109 in s_dir */

    CHECK_EQ_INT (verify_dir (crash, &v), 0);
    CHECK_EQ_INT (v.records, 1108);
    CHECK_EQ_INT (v.unsigned_tail, 4);
    au = hal_audit_open (crash, 64u << 20, s_keys, 5, err, sizeof err);
    CHECK (au != NULL);
    if (!au)
        return;
    hal_audit_rec_t r = rec_of ("sys.crash", "c5");
    CHECK_EQ_INT (
        hal_audit_wait (au, hal_audit_append (au, &r, NULL, 0), -1, &seq), 0);
    CHECK_EQ_INT (seq, 1109);
    hal_audit_stats (au, &stats);
    CHECK_EQ_INT (stats.records, 1110); /* the 5th record made one due */
    CHECK_EQ_INT (stats.checkpoints, 1);
    hal_audit_close (&au);
    CHECK_EQ_INT (verify_dir (crash, &v), 0);
    CHECK_EQ_INT (v.records, 1110);
    CHECK_EQ_INT (v.unsigned_tail, 0);
    rm_data_dir (crash);
}

/*  ---- side tables -------------------------------------------------------- */

typedef struct {
    int n;
    char keys[8][32];
    char vals[8][32];
} s_scan_t;

static int
s_scan_cb (void *arg, const void *key, size_t klen, const void *val,
           size_t vlen)
{
    s_scan_t *s = (s_scan_t *) arg;
    if (s->n < 8 && klen < 32 && vlen < 32) {
        memcpy (s->keys[s->n], key, klen);
        s->keys[s->n][klen] = 0;
        memcpy (s->vals[s->n], val, vlen);
        s->vals[s->n][vlen] = 0;
    }
    s->n++;
    return 0;
}

static int
s_stop_cb (void *arg, const void *key, size_t klen, const void *val,
           size_t vlen)
{
    return 42;
}

static void
test_side_tables (void)
{
    char dir[128], err[256] = "";
    make_dir (dir, sizeof dir, "side");
    hal_audit_t *au =
        hal_audit_open (dir, 1u << 20, s_keys, 100, err, sizeof err);
    CHECK (au != NULL);
    if (!au)
        return;
    hal_audit_put_t puts[3] = {
        { HAL_AUDIT_DB_CAPS, "cap-b", 5, "B", 1 },
        { HAL_AUDIT_DB_CAPS, "cap-a", 5, "A", 1 },
        { HAL_AUDIT_DB_APPROVALS, "ap-1", 4, "once", 4 },
    };
    hal_audit_rec_t r = rec_of ("sys.s", "g1");
    r.kind = "grant";
    uint64_t t = hal_audit_append (au, &r, puts, 3);
    uint64_t seq = 0;
    CHECK_EQ_INT (hal_audit_wait (au, t, -1, &seq), 0);
    CHECK_EQ_INT (seq, 1);
    s_scan_t s;
    memset (&s, 0, sizeof s);
    CHECK_EQ_INT (hal_audit_scan_db (au, HAL_AUDIT_DB_CAPS, s_scan_cb, &s), 0);
    CHECK_EQ_INT (s.n, 2);
    CHECK_EQ_STR (s.keys[0], "cap-a");
    CHECK_EQ_STR (s.vals[0], "A");
    CHECK_EQ_STR (s.keys[1], "cap-b");
    memset (&s, 0, sizeof s);
    CHECK_EQ_INT (hal_audit_scan_db (au, HAL_AUDIT_DB_APPROVALS, s_scan_cb, &s),
                  0);
    CHECK_EQ_INT (s.n, 1);
    CHECK_EQ_STR (s.vals[0], "once");
    CHECK_EQ_INT (hal_audit_scan_db (au, HAL_AUDIT_DB_CAPS, s_stop_cb, NULL),
                  42);
    CHECK_EQ_INT (hal_audit_scan_db (au, (hal_audit_db_t) 7, s_stop_cb, NULL),
                  AAAX_EINVAL);

    /*  Delete one (val NULL), overwrite the other, delete a missing key. */
    hal_audit_put_t ch[3] = {
        { HAL_AUDIT_DB_CAPS, "cap-a", 5, NULL, 0 },
        { HAL_AUDIT_DB_CAPS, "cap-b", 5, "B2", 2 },
        { HAL_AUDIT_DB_CAPS, "cap-z", 5, NULL, 0 },
    };
    r.kind = "revoke";
    t = hal_audit_append (au, &r, ch, 3);
    CHECK_EQ_INT (hal_audit_wait (au, t, -1, &seq), 0);
    CHECK_EQ_INT (seq, 2);
    memset (&s, 0, sizeof s);
    CHECK_EQ_INT (hal_audit_scan_db (au, HAL_AUDIT_DB_CAPS, s_scan_cb, &s), 0);
    CHECK_EQ_INT (s.n, 1);
    CHECK_EQ_STR (s.keys[0], "cap-b");
    CHECK_EQ_STR (s.vals[0], "B2");

    /*  Bad puts refuse the whole append. */
    hal_audit_put_t bad[] = {
        { HAL_AUDIT_DB_CAPS, "", 0, "x", 1 },
        { (hal_audit_db_t) HAL_AUDIT_DB_COUNT, "k", 1, "x", 1 },
        { HAL_AUDIT_DB_CAPS, NULL, 3, "x", 1 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT (hal_audit_append (au, &r, &bad[i], 1), 0);
    char longkey[HAL_AUDIT_MAX_KEY + 1];
    memset (longkey, 'k', sizeof longkey);
    hal_audit_put_t lk = { HAL_AUDIT_DB_CAPS, longkey, sizeof longkey, "x", 1 };
    CHECK_EQ_INT (hal_audit_append (au, &r, &lk, 1), 0);
    lk.klen = HAL_AUDIT_MAX_KEY;
    t = hal_audit_append (au, &r, &lk, 1);
    CHECK (t > 0);
    CHECK_EQ_INT (hal_audit_wait (au, t, -1, &seq), 0);
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 2), 0);

    /*  The journal reads its own log (the kernel never opens a reader). */
    s_log_t *l = (s_log_t *) calloc (1, sizeof *l);
    l->contiguous = true;
    CHECK_EQ_INT (hal_audit_scan (au, 0, 0, s_log_cb, l), 0);
    CHECK (l->contiguous);
    CHECK_EQ_INT (l->n, 3);
    CHECK_EQ_STR (l->kind[1], "grant");
    CHECK_EQ_STR (l->kind[2], "revoke");
    memset (l, 0, sizeof *l);
    l->last = 1;
    CHECK_EQ_INT (hal_audit_scan (au, 2, 2, s_log_cb, l), 0);
    CHECK_EQ_INT (l->n, 1);
    CHECK_EQ_INT (l->last, 2);
    free (l);
    hal_audit_close (&au);

    /*  Survives reopen. */
    au = hal_audit_open (dir, 1u << 20, s_keys, 100, err, sizeof err);
    CHECK (au != NULL);
    if (au) {
        memset (&s, 0, sizeof s);
        CHECK_EQ_INT (hal_audit_scan_db (au, HAL_AUDIT_DB_CAPS, s_scan_cb, &s),
                      0);
        CHECK_EQ_INT (s.n, 2);
        hal_audit_close (&au);
    }
    hal_audit_verify_t v;
    CHECK_EQ_INT (verify_dir (dir, &v), 0);
    CHECK_EQ_INT (v.records, 4);
    rm_data_dir (dir);
}

/*  ---- argument checks -------------------------------------------------- */

static void
test_arguments (void)
{
    char dir[128], err[256] = "";
    make_dir (dir, sizeof dir, "args");
    CHECK (hal_audit_open (dir, 1u << 20, s_keys, 0, err, sizeof err) == NULL);
    hal_audit_t *au =
        hal_audit_open (dir, 1u << 20, s_keys, 3, err, sizeof err);
    CHECK (au != NULL);
    if (!au)
        return;
    hal_audit_rec_t r = rec_of ("sys.a", NULL);
    CHECK_EQ_INT (hal_audit_append (au, NULL, NULL, 0), 0);
    r.subject = NULL;
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    r = rec_of ("sys.a", NULL);
    r.verdict = NULL;
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    r = rec_of ("sys.a", NULL);
    r.kind = NULL;
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    r.kind = "checkpoint"; /* only the writer makes those */
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    r = rec_of ("sys.a", NULL);
    const uint8_t bad1[] = { 0xc1 }, bad2[] = { 0x92, 0x01 },
                  bad3[] = { 0x01, 0x02 };
    r.args = bad1;
    r.argslen = 1;
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    r.args = bad2;
    r.argslen = 2;
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    r.args = bad3;
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    r.argslen = 0;
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    /*  Nesting deeper than AAAX_MAX_DEPTH. */
    uint8_t deep[AAAX_MAX_DEPTH + 2];
    memset (deep, 0x91, sizeof deep);
    deep[sizeof deep - 1] = 0x00;
    r.args = deep;
    r.argslen = sizeof deep;
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    r.args = deep + 2; /* exactly AAAX_MAX_DEPTH levels */
    r.argslen = sizeof deep - 2;
    uint64_t t = hal_audit_append (au, &r, NULL, 0);
    CHECK (t > 0);
    static char longstr[HAL_AUDIT_MAX_STR + 2];
    memset (longstr, 'x', sizeof longstr - 1);
    r = rec_of ("sys.a", longstr);
    CHECK_EQ_INT (hal_audit_append (au, &r, NULL, 0), 0);
    longstr[HAL_AUDIT_MAX_STR] = 0;
    t = hal_audit_append (au, &r, NULL, 0);
    CHECK (t > 0);

    /*  Tickets never issued. */
    CHECK_EQ_INT (hal_audit_wait (au, 0, 0, NULL), AAAX_ENOENT);
    CHECK_EQ_INT (hal_audit_wait (au, t + 1, 100, NULL), AAAX_ENOENT);
    CHECK_EQ_INT (hal_audit_wait (au, t, 5000, NULL), 0);
    hal_audit_close (&au);

    hal_audit_verify_t v;
    CHECK_EQ_INT (verify_dir (dir, &v), 0);
    CHECK_EQ_INT (v.records, 3); /* 2 records and the closing checkpoint */

    /*  No log: the reader says so. */
    char none[128];
    make_dir (none, sizeof none, "none");
    CHECK (hal_audit_reader_open (none, err, sizeof err) == NULL);
    CHECK (strstr (err, "no audit log") != NULL);
    rm_data_dir (none);
    rm_data_dir (dir);
}

/*  More tickets than HAL_AUDIT_RESULTS answered without waiting: the
    oldest answers are gone (ENOENT), the newest are kept. */
static void
test_old_tickets (void)
{
    char dir[128], err[256] = "";
    make_dir (dir, sizeof dir, "old");
    hal_audit_t *au =
        hal_audit_open (dir, 256u << 20, s_keys, 1000000, err, sizeof err);
    CHECK (au != NULL);
    if (!au)
        return;
    uint64_t n = HAL_AUDIT_RESULTS + 100, first = 0, last = 0;
    hal_audit_rec_t r = rec_of ("sys.old", NULL);
    for (uint64_t i = 0; i < n; i++) {
        last = hal_audit_append (au, &r, NULL, 0);
        if (!first)
            first = last;
    }
    uint64_t seq = 0;
    CHECK_EQ_INT (hal_audit_wait (au, last, -1, &seq), 0);
    CHECK_EQ_INT (seq, n);
    CHECK_EQ_INT (hal_audit_wait (au, first, 0, &seq), AAAX_ENOENT);
    CHECK_EQ_INT (hal_audit_wait (au, last - HAL_AUDIT_RESULTS + 1, 0, &seq),
                  0);
    CHECK_EQ_INT (seq, n - HAL_AUDIT_RESULTS + 1);
    hal_audit_stats_t st;
    hal_audit_stats (au, &st);
    printf ("%llu records without waiting: %llu commits\n",
            (unsigned long long) n, (unsigned long long) st.commits);
    hal_audit_close (&au);
    hal_audit_verify_t v;
    CHECK_EQ_INT (verify_dir (dir, &v), 0);
    CHECK_EQ_INT (v.records, n + 1);
    CHECK_EQ_INT (v.checkpoints, 1);
    rm_data_dir (dir);
}

/*  ---- damage ------------------------------------------------------------ */

typedef struct {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
} s_raw_t;

static bool
raw_open (const char *dir, s_raw_t *raw)
{
    char ad[256];
    path_in (ad, sizeof ad, dir, "audit");
    if (mdb_env_create (&raw->env))
        return false;
    mdb_env_set_maxdbs (raw->env, 8);
    mdb_env_set_mapsize (raw->env, 64u << 20);
    if (mdb_env_open (raw->env, ad, 0, 0600)
        || mdb_txn_begin (raw->env, NULL, 0, &raw->txn)
        || mdb_dbi_open (raw->txn, "records", 0, &raw->dbi)) {
        mdb_env_close (raw->env);
        return false;
    }
    return true;
}

static void
raw_close (s_raw_t *raw)
{
    CHECK_EQ_INT (mdb_txn_commit (raw->txn), 0);
    mdb_env_close (raw->env);
}

/*  A private copy of record seq's value. */
static uint8_t *
raw_get (s_raw_t *raw, uint64_t seq, size_t *len)
{
    uint8_t kb[8];
    be64 (seq, kb);
    MDB_val k = { 8, kb }, v;
    if (mdb_get (raw->txn, raw->dbi, &k, &v))
        return NULL;
    uint8_t *copy = (uint8_t *) malloc (v.mv_size);
    memcpy (copy, v.mv_data, v.mv_size);
    *len = v.mv_size;
    return copy;
}

static void
raw_put (s_raw_t *raw, uint64_t seq, const void *val, size_t len)
{
    uint8_t kb[8];
    be64 (seq, kb);
    MDB_val k = { 8, kb }, v = { len, (void *) val };
    CHECK_EQ_INT (mdb_put (raw->txn, raw->dbi, &k, &v, 0), 0);
}

/*  Recomputes the hashes of records from..end, as a forger would. */
static void
raw_rechain (s_raw_t *raw, uint64_t from)
{
    uint8_t prev[32] = { 0 };
    size_t len;
    if (from > 1) {
        uint8_t *p = raw_get (raw, from - 1, &len);
        memcpy (prev, p, 32);
        free (p);
    }
    for (uint64_t s = from;; s++) {
        uint8_t *val = raw_get (raw, s, &len);
        if (!val)
            break;
        uint8_t kb[8];
        be64 (s, kb);
        crypto_generichash_state st;
        crypto_generichash_init (&st, NULL, 0, 32);
        crypto_generichash_update (&st, prev, 32);
        crypto_generichash_update (&st, kb, 8);
        crypto_generichash_update (&st, val + 32, len - 32);
        crypto_generichash_final (&st, val, 32);
        memcpy (prev, val, 32);
        raw_put (raw, s, val, len);
        free (val);
    }
}

/*  Offset of a checkpoint's head / sig bytes in its value. */
static size_t
ckpt_field (const uint8_t *val, size_t len, const char *field)
{
    const char *pat =
        !strcmp (field, "head") ? "\xa4head\xc4\x20" : "\xa3sig\xc4\x40";
    size_t plen = strlen (pat);
    for (size_t i = 32; i + plen <= len; i++)
        if (!memcmp (val + i, pat, plen))
            return i + plen;
    return 0;
}

typedef enum {
    D_BODY,
    D_HASH,
    D_DELETE,
    D_SIG,
    D_SIG_RECHAINED,
    D_HEAD_SIGNED,
    D_SWAP,
    D_DUP,
    D_SEQ_RECHAINED,
    D_TRUNCATE_VALUE,
} s_damage_t;

/*  Damages a copy of the 1104-record log of s_dir at seq and checks that
    verify names want_bad with a reason containing want_why. */
static void
damage (s_damage_t how, uint64_t seq, uint64_t want_bad, const char *want_why)
{
    char dir[128];
    make_dir (dir, sizeof dir, "damaged");
    CHECK (copy_env (s_dir, dir));
    s_raw_t raw;
    CHECK (raw_open (dir, &raw));
    size_t len = 0;
    uint8_t *val = raw_get (&raw, seq, &len);
    CHECK (val != NULL);
    if (!val) {
        mdb_txn_abort (raw.txn);
        mdb_env_close (raw.env);
        return;
    }
    uint8_t kb[8];
    be64 (seq, kb);
    MDB_val k = { 8, kb };
    switch (how) {
    case D_BODY: /* a byte of the target string */
        val[len - 3] ^= 0x01;
        raw_put (&raw, seq, val, len);
        break;
    case D_HASH:
        val[17] ^= 0x80;
        raw_put (&raw, seq, val, len);
        break;
    case D_DELETE:
        CHECK_EQ_INT (mdb_del (raw.txn, raw.dbi, &k, NULL), 0);
        break;
    case D_SIG:
    case D_SIG_RECHAINED: {
        size_t off = ckpt_field (val, len, "sig");
        CHECK (off > 0);
        val[off + 10] ^= 0x04;
        raw_put (&raw, seq, val, len);
        if (how == D_SIG_RECHAINED)
            raw_rechain (&raw, seq);
        break;
    }
    case D_HEAD_SIGNED: {
        /*  A checkpoint over another head, signed with the real key (a
            checkpoint replayed from elsewhere), chain recomputed. */
        size_t hoff = ckpt_field (val, len, "head");
        size_t soff = ckpt_field (val, len, "sig");
        CHECK (hoff > 0 && soff > 0);
        val[hoff] ^= 0xff;
        uint8_t msg[25 + 8 + 32];
        memcpy (msg, "aaax-audit-checkpoint-v1", 25);
        be64 (seq, msg + 25);
        memcpy (msg + 33, val + hoff, 32);
        hal_keys_sign (s_keys, msg, sizeof msg, val + soff);
        raw_put (&raw, seq, val, len);
        raw_rechain (&raw, seq);
        break;
    }
    case D_SWAP: {
        size_t len2;
        uint8_t *next = raw_get (&raw, seq + 1, &len2);
        raw_put (&raw, seq, next, len2);
        raw_put (&raw, seq + 1, val, len);
        free (next);
        break;
    }
    case D_DUP: raw_put (&raw, seq + 1, val, len); break;
    case D_SEQ_RECHAINED: {
        /*  The body of seq repeated under key seq + 1, hashes recomputed:
            only the body's seq gives it away. */
        raw_put (&raw, seq + 1, val, len);
        raw_rechain (&raw, seq + 1);
        break;
    }
    case D_TRUNCATE_VALUE: raw_put (&raw, seq, val, 20); break;
    }
    free (val);
    raw_close (&raw);
    hal_audit_verify_t v;
    memset (&v, 0, sizeof v);
    char err[256];
    hal_audit_reader_t *r = hal_audit_reader_open (dir, err, sizeof err);
    CHECK (r != NULL);
    if (r) {
        CHECK_EQ_INT (hal_audit_verify (r, hal_keys_public (s_keys), &v),
                      AAAX_EINVAL);
        CHECK_EQ_INT (v.first_bad, want_bad);
        CHECK (strstr (v.why, want_why) != NULL);
        if (v.first_bad != want_bad || !strstr (v.why, want_why))
            fprintf (stderr, "  damage %d at %llu: first_bad %llu: %s\n",
                     (int) how, (unsigned long long) seq,
                     (unsigned long long) v.first_bad, v.why);
        CHECK_EQ_INT (v.records, want_bad - 1);
        hal_audit_reader_close (&r);
    }
    rm_data_dir (dir);
}

static void
test_damage (void)
{
    /*  s_dir holds 1104 records; checkpoints at 11, 22, ..., 1100, 1104. */
    damage (D_BODY, 5, 5, "hash");
    damage (D_BODY, 1, 1, "hash");
    damage (D_BODY, 1103, 1103, "hash");
    damage (D_HASH, 7, 7, "hash");
    damage (D_HASH, 1104, 1104, "hash");
    damage (D_DELETE, 9, 9, "missing");
    damage (D_DELETE, 1, 1, "missing");
    damage (D_DELETE, 11, 11, "missing");
    damage (D_SIG, 22, 22, "hash");
    damage (D_SIG_RECHAINED, 22, 22, "signature");
    damage (D_SIG_RECHAINED, 1104, 1104, "signature");
    damage (D_HEAD_SIGNED, 33, 33, "head");
    damage (D_SWAP, 40, 40, "hash");
    damage (D_DUP, 50, 51, "hash");
    damage (D_SEQ_RECHAINED, 60, 61, "seq");
    damage (D_TRUNCATE_VALUE, 70, 70, "short");

    /*  A pure check of one record: what the fuzzer drives. */
    s_raw_t raw;
    char dir[128];
    make_dir (dir, sizeof dir, "pure");
    CHECK (copy_env (s_dir, dir));
    CHECK (raw_open (dir, &raw));
    size_t l1, l2;
    uint8_t *r10 = raw_get (&raw, 10, &l1), *r11 = raw_get (&raw, 11, &l2);
    mdb_txn_abort (raw.txn);
    mdb_env_close (raw.env);
    rm_data_dir (dir);
    bool ck = true;
    uint8_t h[32];
    char why[128];
    CHECK_EQ_INT (hal_audit_check_record (r10, 11, r11, l2,
                                          hal_keys_public (s_keys), &ck, h, why,
                                          sizeof why),
                  0);
    CHECK (ck);
    CHECK (memcmp (h, r11, 32) == 0);
    /*  pk NULL skips only the signature. */
    CHECK_EQ_INT (hal_audit_check_record (r10, 11, r11, l2, NULL, &ck, h, why,
                                          sizeof why),
                  0);
    uint8_t other[32];
    memcpy (other, hal_keys_public (s_keys), 32);
    other[0] ^= 1;
    CHECK_EQ_INT (hal_audit_check_record (r10, 11, r11, l2, other, &ck, h, why,
                                          sizeof why),
                  AAAX_EINVAL);
    CHECK_EQ_INT (hal_audit_check_record (r10, 12, r11, l2, NULL, &ck, h, why,
                                          sizeof why),
                  AAAX_EINVAL);
    CHECK_EQ_INT (hal_audit_check_record (r10, 11, r11, 32, NULL, &ck, h, why,
                                          sizeof why),
                  AAAX_EINVAL);
    CHECK_EQ_INT (hal_audit_check_record (r10, 11, NULL, 0, NULL, NULL, NULL,
                                          why, sizeof why),
                  AAAX_EINVAL);
    free (r10);
    free (r11);
}

/*  ---- failed transactions ---------------------------------------------- */

#define FAIL_THREADS 4
#define FAIL_PER 60

typedef struct {
    hal_audit_t *au;
    int id;
    uint64_t seqs[FAIL_PER];
    int status[FAIL_PER];
} s_fworker_t;

static uint8_t s_big_args[700 * 1024]; /* bin: never fits a 256 KiB map */
static uint8_t s_mid_args[6 * 1024];   /* fills the map soon */

static void
init_args (void)
{
    s_big_args[0] = 0xc6; /* bin32 */
    uint32_t n = sizeof s_big_args - 5;
    s_big_args[1] = (uint8_t) (n >> 24);
    s_big_args[2] = (uint8_t) (n >> 16);
    s_big_args[3] = (uint8_t) (n >> 8);
    s_big_args[4] = (uint8_t) n;
    s_mid_args[0] = 0xc5; /* bin16 */
    n = sizeof s_mid_args - 3;
    s_mid_args[1] = (uint8_t) (n >> 8);
    s_mid_args[2] = (uint8_t) n;
}

static void *
s_fworker (void *arg)
{
    s_fworker_t *w = (s_fworker_t *) arg;
    for (int i = 0; i < FAIL_PER; i += 3) {
        uint64_t t[3];
        for (int j = 0; j < 3; j++) {
            char corr[24];
            snprintf (corr, sizeof corr, "f%d-%d", w->id, i + j);
            hal_audit_rec_t r = rec_of ("sys.f", corr);
            if ((i + j) % 5 == 3) {
                r.args = s_mid_args;
                r.argslen = sizeof s_mid_args;
            }
            t[j] = hal_audit_append (w->au, &r, NULL, 0);
        }
        for (int j = 0; j < 3; j++) {
            w->seqs[i + j] = 0;
            w->status[i + j] =
                hal_audit_wait (w->au, t[j], 10000, &w->seqs[i + j]);
        }
    }
    return NULL;
}

static void
test_failures (void)
{
    init_args ();
    char dir[128], err[256] = "";
    make_dir (dir, sizeof dir, "tiny");
    size_t map = 256u << 10;
    hal_audit_t *au = hal_audit_open (dir, map, s_keys, 4, err, sizeof err);
    CHECK (au != NULL);
    if (!au) {
        fprintf (stderr, "  open tiny: %s\n", err);
        return;
    }
    /*  A record that cannot fit fails alone; its side-table change with
        it; the next record chains from the last committed one. */
    hal_audit_rec_t r = rec_of ("sys.f", "ok-1");
    uint64_t seq = 0;
    CHECK_EQ_INT (
        hal_audit_wait (au, hal_audit_append (au, &r, NULL, 0), -1, &seq), 0);
    CHECK_EQ_INT (seq, 1);
    r = rec_of ("sys.f", "big");
    r.args = s_big_args;
    r.argslen = sizeof s_big_args;
    hal_audit_put_t put = { HAL_AUDIT_DB_CAPS, "lost", 4, "x", 1 };
    uint64_t t = hal_audit_append (au, &r, &put, 1);
    CHECK (t > 0);
    seq = 99;
    CHECK_EQ_INT (hal_audit_wait (au, t, -1, &seq), AAAX_EIO);
    CHECK_EQ_INT (seq, 99); /* untouched */
    s_scan_t s;
    memset (&s, 0, sizeof s);
    CHECK_EQ_INT (hal_audit_scan_db (au, HAL_AUDIT_DB_CAPS, s_scan_cb, &s), 0);
    CHECK_EQ_INT (s.n, 0);
    r = rec_of ("sys.f", "ok-2");
    CHECK_EQ_INT (
        hal_audit_wait (au, hal_audit_append (au, &r, NULL, 0), -1, &seq), 0);
    CHECK_EQ_INT (seq, 2);
    hal_audit_stats_t st;
    hal_audit_stats (au, &st);
    CHECK_EQ_INT (st.failures, 1);
    CHECK_EQ_INT (st.records, 2);

    /*  Several threads filling the map: every ticket either fails with
        EIO or has a seq holding its own record; the log stays a chain. */
    s_fworker_t w[FAIL_THREADS];
    pthread_t th[FAIL_THREADS];
    for (int i = 0; i < FAIL_THREADS; i++) {
        memset (&w[i], 0, sizeof w[i]);
        w[i].au = au;
        w[i].id = i;
        pthread_create (&th[i], NULL, s_fworker, &w[i]);
    }
    for (int i = 0; i < FAIL_THREADS; i++)
        pthread_join (th[i], NULL);
    hal_audit_stats (au, &st);
    uint64_t committed = st.records;
    hal_audit_close (&au);

    s_log_t *l = read_log (dir);
    CHECK (l->contiguous);
    CHECK (l->last >= committed); /* + the checkpoint at close, if it fit */
    int ok = 0, eio = 0, wrong = 0;
    for (int i = 0; i < FAIL_THREADS; i++)
        for (int j = 0; j < FAIL_PER; j++) {
            char corr[24];
            snprintf (corr, sizeof corr, "f%d-%d", i, j);
            if (w[i].status[j] == AAAX_EIO)
                eio++;
            else if (w[i].status[j] == 0 && w[i].seqs[j] <= l->last
                     && w[i].seqs[j] < 4096
                     && !strcmp (l->corr[w[i].seqs[j]], corr))
                ok++;
            else
                wrong++;
        }
    /*  Nothing in the log that nobody was told about. */
    int records = 0;
    for (uint64_t q = 1; q <= l->last && q < 4096; q++)
        if (strcmp (l->kind[q], "checkpoint") != 0)
            records++;
    printf ("tiny map: %d records written, %d failed (EIO), %llu failed "
            "transactions\n",
            ok, eio, (unsigned long long) st.failures);
    CHECK_EQ_INT (wrong, 0);
    CHECK (eio > 0);
    CHECK_EQ_INT (records, ok + 2); /* ok-1 and ok-2 */
    free (l);
    hal_audit_verify_t v;
    CHECK_EQ_INT (verify_dir (dir, &v), 0);
    rm_data_dir (dir);
}

/*  ---- throughput ------------------------------------------------------- */

typedef struct {
    hal_audit_t *au;
    int64_t until_us;
    uint64_t n;
    int fails;
} s_perf_t;

static void *
s_perf (void *arg)
{
    s_perf_t *p = (s_perf_t *) arg;
    while (hal_clock_mono_us () < p->until_us) {
        hal_audit_rec_t r = rec_of ("sys.perf", "perf-corr-0123456789");
        uint64_t seq;
        if (hal_audit_wait (p->au, hal_audit_append (p->au, &r, NULL, 0), -1,
                            &seq)
            != 0)
            p->fails++;
        p->n++;
    }
    return NULL;
}

static void
test_throughput (void)
{
    char dir[128], err[256] = "";
    make_dir (dir, sizeof dir, "perf");
    hal_audit_t *au =
        hal_audit_open (dir, 256u << 20, s_keys, 1000, err, sizeof err);
    CHECK (au != NULL);
    if (!au)
        return;
    const char *env = getenv ("AAAX_AUDIT_PERF_MS");
    int ms = env ? atoi (env) : 1000;
    for (int nthreads = 1; nthreads <= 4; nthreads *= 4) {
        s_perf_t p[4];
        pthread_t th[4];
        hal_audit_stats_t s0, s1;
        hal_audit_stats (au, &s0);
        int64_t t0 = hal_clock_mono_us ();
        for (int i = 0; i < nthreads; i++) {
            p[i] = (s_perf_t){ au, t0 + ms * 1000, 0, 0 };
            pthread_create (&th[i], NULL, s_perf, &p[i]);
        }
        uint64_t n = 0;
        for (int i = 0; i < nthreads; i++) {
            pthread_join (th[i], NULL);
            n += p[i].n;
            CHECK_EQ_INT (p[i].fails, 0);
        }
        double secs = (double) (hal_clock_mono_us () - t0) / 1e6;
        hal_audit_stats (au, &s1);
        uint64_t commits = s1.commits - s0.commits;
        printf ("throughput: %d thread(s): %.0f appends+waits/s, %.1f records "
                "per commit, %.0f us per commit\n",
                nthreads, (double) n / secs,
                commits ? (double) n / (double) commits : 0.0,
                commits ? secs * 1e6 / (double) commits : 0.0);
    }
    hal_audit_close (&au);
    hal_audit_verify_t v;
    CHECK_EQ_INT (verify_dir (dir, &v), 0);
    rm_data_dir (dir);
}

int
main (int argc, char **argv)
{
    if (argc == 4 && !strcmp (argv[1], "--reader"))
        return reader_main (argv[2], argv[3]);
    if (!realpath ("/proc/self/exe", s_self))
        return 1;
    snprintf (s_root, sizeof s_root, "/tmp/aaax-test-audit-XXXXXX");
    if (!mkdtemp (s_root))
        return 1;
    make_dir (s_dir, sizeof s_dir, "data");
    char err[256] = "";
    s_keys = hal_keys_open (s_dir, err, sizeof err);
    CHECK (s_keys != NULL);
    if (!s_keys) {
        fprintf (stderr, "keys: %s\n", err);
        TEST_DONE ();
    }
    test_concurrent ();
    test_reopen ();
    test_damage ();
    test_side_tables ();
    test_arguments ();
    test_old_tickets ();
    test_failures ();
    test_throughput ();

    hal_keys_destroy (&s_keys);
    char p[256];
    path_in (p, sizeof p, s_dir, "kernel.key");
    unlink (p);
    path_in (p, sizeof p, s_dir, "kernel.pub");
    unlink (p);
    rm_data_dir (s_dir);
    rmdir (s_root);
    TEST_DONE ();
}
