/*  hal_store.c — LMDB environment, batches of operations and the writer
    actor that commits them (see hal_store.h). A batch is a flat buffer of
    records [u8 op][u8 db][u16 klen][u32 vlen][key][value]; the switchboard
    fills one while the writer commits the other, and they swap when the
    writer reports back. Only the pointer crosses the pipe, and only one
    thread touches a batch at a time. */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <czmq.h>

#include "aaax.h"
#include "chan_mpk.h"
#include "hal_clock.h"
#include "hal_store.h"

enum { OP_PUT = 1, OP_DEL = 2 };

#ifndef HAL_STORE_WRITER_NICE
#define HAL_STORE_WRITER_NICE 10
#endif

static const char *s_db_names[HAL_DB_COUNT] = {
    [HAL_DB_META] = "meta", [HAL_DB_QUEUE] = "queue",
    [HAL_DB_MBOX] = "mbox", [HAL_DB_SYSTEMS] = "systems",
    [HAL_DB_IDEM] = "idem",
};

typedef struct {
    uint64_t no;
    chan_buf_t ops;
    uint64_t nops;
    int status;       /* set by the writer */
    uintptr_t waiter; /* first session whose reply waits on this batch */
    bool waiters;     /* replies of two or more sessions wait on it */
} s_batch_t;

struct _hal_store_t {
    MDB_env *env;
    MDB_dbi dbi[HAL_DB_COUNT];
    s_batch_t batches[2];
    s_batch_t *filling;  /* accumulating, main thread */
    s_batch_t *inflight; /* with the writer, or NULL */
    uint64_t committed;  /* last completed batch number */
    zactor_t *writer;
    hal_store_stats_t stats;
    int64_t delay_us;     /* commit delay, 0 = none */
    int64_t last_done_us; /* when the last commit completed */
};

/*  Applies a batch in one write transaction. Runs in whichever thread owns
    the batch at the time (the writer, or main before the writer starts). */
static int
s_apply (MDB_env *env, const MDB_dbi *dbi, s_batch_t *batch)
{
    if (batch->ops.oom)
        return AAAX_ENOMEM;
    MDB_txn *txn;
    int rc = mdb_txn_begin (env, NULL, 0, &txn);
    if (rc) {
        zsys_error ("store: cannot begin transaction: %s", mdb_strerror (rc));
        return AAAX_EIO;
    }
    const uint8_t *p = batch->ops.data, *end = p + batch->ops.len;
    while (p < end) {
        uint8_t op = p[0], db = p[1];
        uint16_t klen;
        uint32_t vlen;
        memcpy (&klen, p + 2, 2);
        memcpy (&vlen, p + 4, 4);
        MDB_val k = { klen, (void *) (p + 8) };
        MDB_val v = { vlen, (void *) (p + 8 + klen) };
        p += 8 + klen + vlen;
        if (op == OP_PUT)
            rc = mdb_put (txn, dbi[db], &k, &v, 0);
        else {
            rc = mdb_del (txn, dbi[db], &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        }
        if (rc) {
            zsys_error ("store: %s in \"%s\" failed: %s",
                        op == OP_PUT ? "put" : "delete", s_db_names[db],
                        mdb_strerror (rc));
            goto err_abort_txn;
        }
    }
    rc = mdb_txn_commit (txn);
    if (rc) {
        zsys_error ("store: commit failed: %s", mdb_strerror (rc));
        return AAAX_EIO;
    }
    return 0;

err_abort_txn:
    mdb_txn_abort (txn);
    return AAAX_EIO;
}

typedef struct {
    MDB_env *env;
    MDB_dbi dbi[HAL_DB_COUNT];
} s_writer_args_t;

static void
s_writer (zsock_t *pipe, void *args)
{
    s_writer_args_t *wa = (s_writer_args_t *) args;
    /*  Commits mostly wait on the disk, but the file system's work around
        each fsync costs CPU. At a lower priority that work yields to the
        switchboard and to clients on a busy machine instead of adding
        latency to messages that never touch the disk; the writer still
        gets every idle cycle, and under load batches simply grow. */
    if (setpriority (PRIO_PROCESS, (id_t) gettid (), HAL_STORE_WRITER_NICE)
        != 0)
        zsys_debug ("store: cannot lower the writer's priority");
    zsock_signal (pipe, 0);
    while (true) {
        char *cmd = NULL;
        void *ptr = NULL;
        if (zsock_recv (pipe, "sp", &cmd, &ptr) != 0)
            break;
        bool term = cmd && streq (cmd, "$TERM");
        bool batch = cmd && streq (cmd, "BATCH") && ptr;
        if (!term && !batch)
            zsys_warning ("store: writer got unknown command %s",
                          cmd ? cmd : "(none)");
        zstr_free (&cmd);
        if (term)
            break;
        if (!batch)
            continue;
        s_batch_t *b = (s_batch_t *) ptr;
        int64_t t0 = hal_clock_mono_us ();
        b->status = s_apply (wa->env, wa->dbi, b);
        int64_t dt = hal_clock_mono_us () - t0;
        zsock_send (pipe, "p8", b, (uint64_t) dt);
    }
    free (wa);
}

hal_store_t *
hal_store_open (const char *dir, size_t map_size, char *err, size_t errlen)
{
    if (mkdir (dir, 0700) != 0 && errno != EEXIST) {
        snprintf (err, errlen, "cannot create %s: %s", dir, strerror (errno));
        return NULL;
    }
    chmod (dir, 0700);
    hal_store_t *self = (hal_store_t *) zmalloc (sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    int rc = mdb_env_create (&self->env);
    if (rc)
        goto err_lmdb;
    mdb_env_set_maxdbs (self->env, 32);
    rc = mdb_env_set_mapsize (self->env, map_size);
    if (rc)
        goto err_lmdb_env;
    rc = mdb_env_open (self->env, dir, MDB_NOTLS, 0600);
    if (rc)
        goto err_lmdb_env;

    MDB_txn *txn;
    rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    if (rc)
        goto err_lmdb_env;
    for (int i = 0; i < HAL_DB_COUNT; i++) {
        rc = mdb_dbi_open (txn, s_db_names[i], MDB_CREATE, &self->dbi[i]);
        if (rc) {
            mdb_txn_abort (txn);
            goto err_lmdb_env;
        }
    }
    rc = mdb_txn_commit (txn);
    if (rc)
        goto err_lmdb_env;

    for (int i = 0; i < 2; i++)
        chan_buf_init (&self->batches[i].ops);
    self->filling = &self->batches[0];
    self->filling->no = 1;
    return self;

err_lmdb_env:
    mdb_env_close (self->env);
err_lmdb:
    snprintf (err, errlen, "cannot open store in %s: %s", dir,
              mdb_strerror (rc));
    free (self);
    return NULL;
}

void
hal_store_destroy (hal_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    hal_store_t *self = *self_p;
    if (self->writer) {
        /*  Let the batch in flight finish before the writer goes. */
        uint64_t no;
        int status;
        while (self->inflight)
            if (hal_store_reap (self, 1000, &no, &status) == AAAX_ENOENT)
                zsys_warning ("store: still waiting for a commit");
        zactor_destroy (&self->writer);
    }
    for (int i = 0; i < 2; i++)
        chan_buf_fini (&self->batches[i].ops);
    mdb_env_close (self->env);
    free (self);
    *self_p = NULL;
}

MDB_env *
hal_store_env (hal_store_t *self)
{
    return self->env;
}

MDB_dbi
hal_store_dbi (hal_store_t *self, hal_db_t db)
{
    return self->dbi[db];
}

int
hal_store_get (hal_store_t *self, hal_db_t db, const void *key, size_t klen,
               void **val, size_t *vlen)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return AAAX_EIO;
    MDB_val k = { klen, (void *) key }, v;
    rc = mdb_get (txn, self->dbi[db], &k, &v);
    int result = 0;
    if (rc == MDB_NOTFOUND)
        result = AAAX_ENOENT;
    else if (rc)
        result = AAAX_EIO;
    else {
        void *copy = malloc (v.mv_size ? v.mv_size : 1);
        if (!copy)
            result = AAAX_ENOMEM;
        else {
            memcpy (copy, v.mv_data, v.mv_size);
            *val = copy;
            *vlen = v.mv_size;
        }
    }
    mdb_txn_abort (txn);
    return result;
}

int
hal_store_scan (hal_store_t *self, hal_db_t db, hal_store_scan_fn *fn,
                void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin (self->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return AAAX_EIO;
    rc = mdb_cursor_open (txn, self->dbi[db], &cur);
    if (rc) {
        mdb_txn_abort (txn);
        return AAAX_EIO;
    }
    MDB_val k, v;
    int result = 0;
    rc = mdb_cursor_get (cur, &k, &v, MDB_FIRST);
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

static void
s_append (hal_store_t *self, uint8_t op, hal_db_t db, const void *key,
          size_t klen, const void *val, size_t vlen)
{
    s_batch_t *b = self->filling;
    if (klen > 511 || vlen > UINT32_MAX) {
        /*  Callers bound names long before this; a bug if it happens. */
        zsys_error ("store: key of %zu bytes refused", klen);
        b->ops.oom = true;
        return;
    }
    uint8_t hdr[8];
    uint16_t kl = (uint16_t) klen;
    uint32_t vl = (uint32_t) vlen;
    hdr[0] = op;
    hdr[1] = (uint8_t) db;
    memcpy (hdr + 2, &kl, 2);
    memcpy (hdr + 4, &vl, 4);
    if (chan_buf_reserve (&b->ops, 8 + klen + vlen) != 0)
        return;
    chan_buf_append (&b->ops, hdr, 8);
    chan_buf_append (&b->ops, key, klen);
    chan_buf_append (&b->ops, val, vlen);
    b->nops++;
}

void
hal_store_put (hal_store_t *self, hal_db_t db, const void *key, size_t klen,
               const void *val, size_t vlen)
{
    s_append (self, OP_PUT, db, key, klen, val, vlen);
}

void
hal_store_del (hal_store_t *self, hal_db_t db, const void *key, size_t klen)
{
    s_append (self, OP_DEL, db, key, klen, NULL, 0);
}

uint64_t
hal_store_horizon (hal_store_t *self)
{
    if (self->filling->nops)
        return self->filling->no;
    if (self->inflight)
        return self->inflight->no;
    return self->committed;
}

uint64_t
hal_store_committed (hal_store_t *self)
{
    return self->committed;
}

static void
s_next_filling (hal_store_t *self, s_batch_t *done)
{
    chan_buf_reset (&done->ops);
    done->nops = 0;
    done->status = 0;
    done->waiter = 0;
    done->waiters = false;
    (void) self;
}

void
hal_store_set_delay (hal_store_t *self, int64_t delay_us)
{
    self->delay_us = delay_us > 0 ? delay_us : 0;
}

void
hal_store_note_waiter (hal_store_t *self, uintptr_t tag)
{
    s_batch_t *b = self->filling;
    if (!b->waiter)
        b->waiter = tag;
    else if (b->waiter != tag)
        b->waiters = true;
}

/*  True when the commit delay holds the accumulating batch back now. */
static bool
s_held (hal_store_t *self, int64_t now_us)
{
    s_batch_t *b = self->filling;
    return self->delay_us && b->waiters && b->nops < 64
           && now_us - self->last_done_us < self->delay_us;
}

int64_t
hal_store_kick_at (hal_store_t *self)
{
    if (!self->writer || self->inflight || !hal_store_pending (self)
        || !s_held (self, hal_clock_mono_us ()))
        return INT64_MAX;
    return self->last_done_us + self->delay_us;
}

static void
s_account (hal_store_t *self, s_batch_t *b, uint64_t us)
{
    if (b->status == 0) {
        self->stats.commits++;
        self->stats.ops += b->nops;
        if (b->nops > self->stats.max_batch)
            self->stats.max_batch = b->nops;
    } else
        self->stats.failures++;
    self->stats.commit_us += us;
    self->committed = b->no;
}

int
hal_store_commit_sync (hal_store_t *self)
{
    s_batch_t *b = self->filling;
    if (self->inflight)
        return AAAX_EINTERNAL;
    if (!b->nops && !b->ops.oom)
        return 0;
    int64_t t0 = hal_clock_mono_us ();
    b->status = s_apply (self->env, self->dbi, b);
    int status = b->status;
    s_account (self, b, (uint64_t) (hal_clock_mono_us () - t0));
    uint64_t no = b->no;
    s_next_filling (self, b);
    b->no = no + 1;
    return status;
}

int
hal_store_start (hal_store_t *self)
{
    s_writer_args_t *wa = (s_writer_args_t *) zmalloc (sizeof *wa);
    if (!wa)
        return AAAX_ENOMEM;
    wa->env = self->env;
    memcpy (wa->dbi, self->dbi, sizeof wa->dbi);
    self->writer = zactor_new (s_writer, wa);
    if (!self->writer) {
        free (wa);
        return AAAX_ENOMEM;
    }
    return 0;
}

void *
hal_store_socket (hal_store_t *self)
{
    return self->writer ? zsock_resolve (self->writer) : NULL;
}

bool
hal_store_busy (hal_store_t *self)
{
    return self->inflight != NULL;
}

bool
hal_store_pending (hal_store_t *self)
{
    return self->filling->nops > 0 || self->filling->ops.oom;
}

bool
hal_store_kick (hal_store_t *self)
{
    if (!self->writer || self->inflight || !hal_store_pending (self)
        || s_held (self, hal_clock_mono_us ()))
        return false;
    s_batch_t *b = self->filling;
    s_batch_t *other =
        b == &self->batches[0] ? &self->batches[1] : &self->batches[0];
    if (zsock_send (self->writer, "sp", "BATCH", b) != 0) {
        zsys_error ("store: cannot reach the writer");
        return false;
    }
    self->inflight = b;
    self->filling = other;
    s_next_filling (self, other);
    other->no = b->no + 1;
    return true;
}

int
hal_store_reap (hal_store_t *self, int timeout_ms, uint64_t *batch_no,
                int *status)
{
    if (!self->writer || !self->inflight)
        return AAAX_ENOENT;
    void *sock = zsock_resolve (self->writer);
    zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
    int rc = zmq_poll (&item, 1, timeout_ms > 0 ? timeout_ms : 0);
    if (rc <= 0 || !(item.revents & ZMQ_POLLIN))
        return AAAX_ENOENT;
    void *ptr = NULL;
    uint64_t us = 0;
    if (zsock_recv (self->writer, "p8", &ptr, &us) != 0
        || ptr != self->inflight)
        return AAAX_EINTERNAL;
    s_batch_t *b = self->inflight;
    s_account (self, b, us);
    *batch_no = b->no;
    *status = b->status;
    self->inflight = NULL;
    self->last_done_us = hal_clock_mono_us ();
    chan_buf_reset (&b->ops);
    b->nops = 0;
    return 0;
}

void
hal_store_stats (hal_store_t *self, hal_store_stats_t *out)
{
    *out = self->stats;
}
