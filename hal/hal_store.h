/*  hal_store.h — the kernel's LMDB store and its writer actor.

    The switchboard keeps channel state in memory and records every durable
    change here as an operation in the batch now accumulating. A writer actor
    (its own thread, its own write transactions) commits whole batches, each
    as one synced LMDB transaction, while the switchboard goes on serving and
    filling the next batch: group commit that grows with load. Replies that
    promise durability wait for the batch that holds their change. */

#ifndef HAL_STORE_H_INCLUDED
#define HAL_STORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <lmdb.h>

typedef struct _hal_store_t hal_store_t;

/*  Named sub-databases. */
typedef enum {
    HAL_DB_META = 0, /* kernel id, format, id sequence reservation */
    HAL_DB_QUEUE,    /* work-queue messages: chan NUL seq(8, BE) */
    HAL_DB_MBOX,     /* mailbox messages: system NUL seq(8, BE) */
    HAL_DB_SYSTEMS,  /* known systems: id */
    HAL_DB_IDEM,     /* idempotency keys: chan NUL writer NUL key */
    HAL_DB_COUNT
} hal_db_t;

typedef struct {
    uint64_t commits;   /* batches committed */
    uint64_t ops;       /* operations committed */
    uint64_t failures;  /* batches that failed to commit */
    uint64_t max_batch; /* most operations in one batch */
    uint64_t commit_us; /* total time spent in commits */
} hal_store_stats_t;

/*  Opens (creating if needed) the store in directory dir (mode 0700) with
    the given map size in bytes. Returns NULL and a message in err on failure.
    The caller owns the store. */
hal_store_t *hal_store_open (const char *dir, size_t map_size, char *err,
                             size_t errlen);

/*  Stops the writer (its batch in flight, if any, is completed first), then
    closes the environment. Operations not yet handed to the writer are
    dropped: hand them over and reap until hal_store_busy and
    hal_store_pending are both false first to keep them. Accepts NULL. */
void hal_store_destroy (hal_store_t **self_p);

MDB_env *hal_store_env (hal_store_t *self);
MDB_dbi hal_store_dbi (hal_store_t *self, hal_db_t db);

/*  Reads one value in its own read transaction into a malloc'd buffer
    (*val, *vlen; caller frees). Returns 0, AAAX_ENOENT or AAAX_EIO. */
int hal_store_get (hal_store_t *self, hal_db_t db, const void *key, size_t klen,
                   void **val, size_t *vlen);

/*  Calls fn for every record of db in key order within one read
    transaction; key and value are borrowed for the call. fn returning
    non-zero stops the walk and that value is returned. */
typedef int (hal_store_scan_fn) (void *arg, const void *key, size_t klen,
                                 const void *val, size_t vlen);
int hal_store_scan (hal_store_t *self, hal_db_t db, hal_store_scan_fn *fn,
                    void *arg);

/*  Appends a put / delete to the accumulating batch (copies key and value).
    Main thread only. On no memory the batch is marked failed: its commit
    reports AAAX_ENOMEM. */
void hal_store_put (hal_store_t *self, hal_db_t db, const void *key,
                    size_t klen, const void *val, size_t vlen);
void hal_store_del (hal_store_t *self, hal_db_t db, const void *key,
                    size_t klen);

/*  The batch number after whose commit every operation appended so far is
    on disk. When it is <= hal_store_committed, everything already is. */
uint64_t hal_store_horizon (hal_store_t *self);

/*  Number of the last batch whose commit completed (successfully or not). */
uint64_t hal_store_committed (hal_store_t *self);

/*  Commits the accumulating batch in the calling thread (boot, before
    hal_store_start). Returns 0 or AAAX_EIO / AAAX_ENOMEM. */
int hal_store_commit_sync (hal_store_t *self);

/*  Starts the writer actor. Returns 0 or AAAX_ENOMEM. */
int hal_store_start (hal_store_t *self);

/*  The zmq socket to poll for completions (NULL before hal_store_start). */
void *hal_store_socket (hal_store_t *self);

/*  Hands the accumulating batch to the writer when the writer is idle and
    the batch holds operations; returns true if it did. */
bool hal_store_kick (hal_store_t *self);

/*  True while the writer holds a batch. */
bool hal_store_busy (hal_store_t *self);

/*  True when operations wait in the accumulating batch. */
bool hal_store_pending (hal_store_t *self);

/*  Collects one completion without blocking (or waiting up to timeout_ms
    when timeout_ms > 0). Returns 0 with the batch number and its status
    (0 or a negative AAAX_E* code), or AAAX_ENOENT when none arrived. */
int hal_store_reap (hal_store_t *self, int timeout_ms, uint64_t *batch_no,
                    int *status);

/*  Commit delay (as PostgreSQL's commit_delay with commit_siblings = 1):
    while the accumulating batch is small (< 64 operations) and replies of
    at least two different sessions wait on it, hal_store_kick holds it back
    until delay_us have passed since the previous commit completed, so that
    request/reply traffic among several systems shares one fsync instead of
    paying one each. A lone writer is never delayed. 0 disables it. */
void hal_store_set_delay (hal_store_t *self, int64_t delay_us);

/*  Tells the store that a reply of the session tagged tag (any non-zero
    value, e.g. its pointer) waits on the accumulating batch. */
void hal_store_note_waiter (hal_store_t *self, uintptr_t tag);

/*  When a batch held back by the commit delay may go (monotonic
    microseconds), or INT64_MAX when nothing is held back. */
int64_t hal_store_kick_at (hal_store_t *self);

/*  Statistics, updated at each completion. */
void hal_store_stats (hal_store_t *self, hal_store_stats_t *out);

#endif
