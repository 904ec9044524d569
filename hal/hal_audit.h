/*  hal_audit.h — the kernel's journal: the tamper-evident audit log and the
    small durable tables of the kernel actors (capabilities, approvals), in
    their own LMDB environment <data>/audit (separate from the channel store,
    so neither waits on the other's fsync, and `aaax audit verify` opens a
    small environment read-only while aaaxd runs).

    Records: key = seq (uint64, big-endian, 1, 2, 3, ... without gaps);
    value = hash (32 bytes) || body, where body is one msgpack map
        {seq, ts, kind, subject, action?, target?, verdict, rule?, reason?,
         args?, corr?}          (kind "checkpoint": {seq, ts, kind, head, sig})
    and hash = BLAKE2b-256(prev_hash || seq_be(8) || body), prev_hash of
    record 1 being 32 zero bytes. Every `checkpoint_every` records, and at
    close, the writer appends a checkpoint record whose `sig` (64 bytes,
    bin) is the kernel's ed25519 signature over
        "aaax-audit-checkpoint-v1" NUL || seq_be(8) of the checkpoint ||
        head (32 bytes: the hash of the record before it),
    and `head` is that hash (bin 32). The checkpoint is itself chained.

    Thread model: any thread may append (a mutex guards the queue); one
    writer thread commits whole queues as single synced transactions
    (group commit), assigns sequence numbers and computes the chain. A
    failed commit fails every record of its transaction (their waiters get
    AAAX_EIO) and the chain continues from the last committed record: a
    record is either in the log, chained, or reported as not written. */

#ifndef HAL_AUDIT_H_INCLUDED
#define HAL_AUDIT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hal_keys.h"

typedef struct _hal_audit_t hal_audit_t;

/*  Bounds checked by hal_audit_append. */
#define HAL_AUDIT_MAX_STR 65536      /* bytes in any string field */
#define HAL_AUDIT_MAX_ARGS (1 << 20) /* bytes of packed args */
#define HAL_AUDIT_MAX_KEY 511        /* bytes of a side-table key (LMDB) */
/*  Answers kept for hal_audit_wait: a ticket must be waited before this
    many later tickets are answered (a thread already blocked in
    hal_audit_wait is always answered: the writer waits for it). */
#define HAL_AUDIT_RESULTS 65536

/*  Side tables committed in the same transaction as a record. */
typedef enum {
    HAL_AUDIT_DB_CAPS = 0,  /* capabilities: key cap id, value packed map */
    HAL_AUDIT_DB_APPROVALS, /* standing approvals: key id, value packed map */
    HAL_AUDIT_DB_COUNT
} hal_audit_db_t;

/*  One record to append. Strings are borrowed for the call; NULL ones are
    left out of the body. args is one packed msgpack value (or NULL). */
typedef struct {
    const char *kind;    /* "gate" "dock" "undock" "grant" "revoke"
                            "lifecycle" "policy" "approval" ... */
    const char *subject; /* the system the record is about (required) */
    const char *action;
    const char *target;
    const char *verdict; /* the final outcome: "allow" "deny" "ask" "ok"
                            "refused" ... (required) */
    const char *rule;
    const char *reason;
    const void *args;
    size_t argslen;
    const char *corr; /* id of the request this record answers */
} hal_audit_rec_t;

/*  A side-table change: val NULL deletes key. Copied at append. */
typedef struct {
    hal_audit_db_t db;
    const void *key;
    size_t klen;
    const void *val;
    size_t vlen;
} hal_audit_put_t;

typedef struct {
    uint64_t records;     /* last committed seq (checkpoints included) */
    uint64_t commits;     /* transactions committed */
    uint64_t failures;    /* transactions that failed */
    uint64_t checkpoints; /* checkpoints written by this process */
} hal_audit_stats_t;

/*  Opens (creating, mode 0700) <data_dir>/audit with the given map size,
    reads the chain head, and starts the writer. keys is borrowed and must
    outlive the journal. checkpoint_every >= 1. NULL with a message in err
    on failure. */
hal_audit_t *hal_audit_open (const char *data_dir, size_t map_size,
                             const hal_keys_t *keys, uint32_t checkpoint_every,
                             char *err, size_t errlen);

/*  Commits what is queued, appends a final checkpoint when records were
    added since the last one, stops the writer and closes. Accepts NULL. */
void hal_audit_close (hal_audit_t **self_p);

/*  Queues rec and the side-table changes puts[0..nputs) for the next
    transaction; never waits for the disk. Returns a ticket (> 0) for
    hal_audit_wait, or 0 when rec is invalid or memory ran out (then
    nothing was queued). Invalid: kind, subject or verdict NULL, kind
    "checkpoint", a string longer than HAL_AUDIT_MAX_STR, args not exactly
    one msgpack value within AAAX_MAX_DEPTH or longer than
    HAL_AUDIT_MAX_ARGS, a put with a bad db, an empty key or one longer
    than HAL_AUDIT_MAX_KEY, or called after hal_audit_close began.
    ts is the wall clock at append (under the queue's lock). */
uint64_t hal_audit_append (hal_audit_t *self, const hal_audit_rec_t *rec,
                           const hal_audit_put_t *puts, size_t nputs);

/*  Waits up to timeout_ms (-1: forever) for ticket's transaction. 0 and
    the record's seq in *seq (may be NULL) when it is on disk; AAAX_EIO when
    its transaction failed (the record is not in the log); AAAX_ETIMEDOUT
    (timeout_ms 0: just polls); AAAX_ENOENT for a ticket never issued or
    answered more than HAL_AUDIT_RESULTS tickets ago. Tickets are answered
    in order; each ticket may be waited once or not at all. */
int hal_audit_wait (hal_audit_t *self, uint64_t ticket, int timeout_ms,
                    uint64_t *seq);

/*  Calls fn for every entry of a side table in key order, within one read
    transaction (key and value borrowed for the call); fn returning
    non-zero stops the walk and that value is returned. */
typedef int (hal_audit_scan_fn) (void *arg, const void *key, size_t klen,
                                 const void *val, size_t vlen);
int hal_audit_scan_db (hal_audit_t *self, hal_audit_db_t db,
                       hal_audit_scan_fn *fn, void *arg);

/*  Calls fn for each committed record with from <= seq <= to (to 0: to
    the end), as hal_audit_reader_scan does, through the journal's own
    environment: the kernel reads its log with this, never with a reader
    (LMDB forbids opening one environment twice in a process). */
typedef int (hal_audit_rec_fn) (void *arg, uint64_t seq, const uint8_t *hash,
                                const void *body, size_t bodylen);
int hal_audit_scan (hal_audit_t *self, uint64_t from, uint64_t to,
                    hal_audit_rec_fn *fn, void *arg);

void hal_audit_stats (hal_audit_t *self, hal_audit_stats_t *out);

/*  ---- reading the log (any process, read-only) ---------------------- */

typedef struct _hal_audit_reader_t hal_audit_reader_t;

/*  Opens <data_dir>/audit read-only (works while aaaxd writes it, from
    another process: not in the process holding the journal open).
    NULL with a message in err (AAAX_ENOENT-like: no audit log yet). */
hal_audit_reader_t *hal_audit_reader_open (const char *data_dir, char *err,
                                           size_t errlen);
void hal_audit_reader_close (hal_audit_reader_t **self_p);

/*  The last seq in the log now (0 when empty); each call sees the latest
    committed state. */
uint64_t hal_audit_reader_last (hal_audit_reader_t *self);

/*  Calls fn for each record with from <= seq <= to (to 0: to the end) in
    order; body is the packed msgpack map, hash its 32-byte chain hash,
    both borrowed for the call. fn returning non-zero stops the walk and
    that value is returned. AAAX_EIO on a store error, AAAX_EINVAL on a
    damaged key or value (not checked further: see hal_audit_verify).
    hal_audit_rec_fn is declared above, with hal_audit_scan. */
int hal_audit_reader_scan (hal_audit_reader_t *self, uint64_t from, uint64_t to,
                           hal_audit_rec_fn *fn, void *arg);

typedef struct {
    uint64_t records;       /* records verified intact (the whole log if ok) */
    uint64_t checkpoints;   /* checkpoint signatures verified */
    uint64_t unsigned_tail; /* records after the last checkpoint */
    uint64_t first_bad;     /* seq of the first damaged record, 0 if none */
    char why[256];          /* what is wrong with first_bad */
} hal_audit_verify_t;

/*  Walks the whole chain: contiguous seqs from 1, every body a well-formed
    map whose seq matches its key, every hash recomputed, every checkpoint
    signature verified with pk (NULL: signatures not checked) and its
    head matching. 0 when intact,
    AAAX_EINVAL when damaged (out says where and why), AAAX_EIO. A missing
    record is reported as first_bad = its seq. Records removed from the
    end leave no trace but are no longer covered by a checkpoint:
    unsigned_tail says how many records only the chain protects. */
int hal_audit_verify (hal_audit_reader_t *self,
                      const uint8_t pk[HAL_KEYS_PK_BYTES],
                      hal_audit_verify_t *out);

/*  Checks one stored record, a pure function (the verifier's core, and a
    fuzz target): val (vlen bytes) is the LMDB value hash || body stored
    under key seq, prev_hash the previous record's hash (zeros for seq 1).
    The stored hash must equal BLAKE2b-256 (prev_hash || seq_be || body),
    the body must be exactly one msgpack map (nesting within
    AAAX_MAX_DEPTH + 2) with string keys, seq (uint) equal to seq, ts
    (float or uint), kind (str), and subject and verdict (str) unless kind
    is "checkpoint"; none of these keys (nor head, sig) repeated. A
    checkpoint needs head (bin 32) equal to prev_hash and sig (bin 64)
    valid for pk (pk NULL skips only the signature). 0 with *is_checkpoint
    and hash_out (the record's hash, for the next call) set, or AAAX_EINVAL
    with the reason in why. */
int hal_audit_check_record (const uint8_t prev_hash[32], uint64_t seq,
                            const void *val, size_t vlen, const uint8_t pk[32],
                            bool *is_checkpoint, uint8_t hash_out[32],
                            char *why, size_t whylen);

#endif
