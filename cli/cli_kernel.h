/*  cli_kernel.h — asking the kernel's actors from a client: a request is a
    WRITE to a kernel.* work-queue, its answer a message in the requester's
    mailbox @SYSTEM whose corr is the request's id (docs/PROTOCOL.md). Used
    by the aaax CLI, the tests and the bench; also the small pure helpers of
    the CLI's kernel subcommands (audit records and capabilities as JSON). */

#ifndef CLI_KERNEL_H_INCLUDED
#define CLI_KERNEL_H_INCLUDED

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#include "aaax.h"
#include "chan_client.h"
#include "chan_mpk.h"

/*  Deepest nesting cli_kernel_hexify copies (the value itself is 1). */
#define CLI_KERNEL_MAX_DEPTH AAAX_MAX_DEPTH

/*  One answer of a kernel actor. */
typedef struct {
    chan_reply_t msg;           /* the MSG push (owned) */
    const msgpack_object *env;  /* its envelope, borrowed from msg */
    const msgpack_object *data; /* the envelope's data: the answer */
    char id[64];                /* the request's id (the answer's corr) */
} cli_kernel_reply_t;

/*  Frees what reply holds; accepts a zeroed or finished reply. */
void cli_kernel_reply_fini (cli_kernel_reply_t *reply);

/*  The requester: a client docked as system. Embedded: cli_kernel_init,
    no fini (it owns nothing). */
typedef struct {
    chan_client_t *client; /* borrowed, docked */
    char mailbox[AAAX_MAX_NAME + 2];
    /*  Optional: a flag (set by a signal handler) that ends a wait with
        AAAX_ETIMEDOUT and stopped = true. */
    volatile sig_atomic_t *stop;
    bool stopped;
    int code;         /* the ERROR code when the kernel refused the WRITE */
    uint64_t skipped; /* stale kernel messages acknowledged and ignored */
    char err[512];    /* why the last call failed */
} cli_kernel_t;

/*  Sets self up for client, docked as system (at most AAAX_MAX_NAME
    bytes). */
void cli_kernel_init (cli_kernel_t *self, chan_client_t *client,
                      const char *system);

/*  WRITEs req (one packed msgpack value, normally a map) to the work-queue
    chan, then waits up to timeout_ms (> 0) for the answer: a MSG in our
    mailbox from a kernel.* system whose corr is the WRITE's id. The answer
    is acknowledged; other messages from kernel.* systems that arrive in the
    mailbox meanwhile (stale answers of an earlier run with the same system
    id) are acknowledged and ignored; anything else is left alone (it comes
    again at the next dock). PINGs every heartbeat_ms / 2 while waiting.
    Returns 0 with the answer in reply (caller finis it); the AAAX_E* of
    the ERROR code when the kernel refused the WRITE (self->code says
    which, e.g. 403); AAAX_ETIMEDOUT when no answer came (or self->stop was
    set: self->stopped); AAAX_EAUTH when the kernel undocked the session;
    AAAX_EIO. self->err says why on every failure. */
int cli_kernel_request (cli_kernel_t *self, const char *chan, const void *req,
                        size_t reqlen, int64_t timeout_ms,
                        cli_kernel_reply_t *reply);

/*  Waits up to timeout_ms for a further answer with corr (e.g. the outcome
    of a gate request that was answered "ask"), as cli_kernel_request does
    after its WRITE. Same returns; reply->id is corr. */
int cli_kernel_await (cli_kernel_t *self, const char *corr, int64_t timeout_ms,
                      cli_kernel_reply_t *reply);

/*  ---- pure helpers ------------------------------------------------- */

/*  What a MSG push body ({sub, msg}) is to a requester with mailbox
    ("@SYSTEM") waiting for corr. */
typedef enum {
    CLI_KERNEL_OTHER = 0, /* not in our mailbox, or not from the kernel */
    CLI_KERNEL_ANSWER,    /* the answer: from kernel.*, corr matches */
    CLI_KERNEL_STALE      /* from kernel.* in our mailbox, another corr */
} cli_kernel_kind_t;

cli_kernel_kind_t cli_kernel_classify (const msgpack_object *push,
                                       const char *mailbox, const char *corr);

/*  Packs a comma-separated list ("read,write") as an array of strings.
    AAAX_EINVAL (nothing packed) for an empty list or an empty item. */
int cli_kernel_pack_list (msgpack_packer *pk, const char *csv);

/*  Appends to out a copy of o with every bin (at any depth) turned into a
    string of its lower-case hex. AAAX_EINVAL when o nests deeper than
    CLI_KERNEL_MAX_DEPTH (out unchanged); AAAX_ENOMEM. */
int cli_kernel_hexify (const msgpack_object *o, chan_buf_t *out);

/*  One audit record as one line of compact JSON (NUL-terminated, no
    newline; caller frees with free ()): {seq, hash: hex, ...the body's
    other pairs}, bins as hex. A body that is not a
    msgpack map gives {seq, hash, error, body: hex}. NULL when memory ran
    out or the body cannot be JSON (err says why). */
char *cli_kernel_audit_json (uint64_t seq, const uint8_t hash[32],
                             const void *body, size_t bodylen, char *err,
                             size_t errlen);

/*  Reads a capability file's content: JSON (an object: a capability map as
    `aaax cap list` prints it, or an answer carrying it as its `cap`
    member, as `aaax cap grant` prints it) or raw msgpack of the same.
    Appends the packed capability map to out. 0, or AAAX_EINVAL with the
    reason in err (out unchanged); AAAX_ENOMEM. */
int cli_kernel_cap_load (const void *text, size_t len, chan_buf_t *out,
                         char *err, size_t errlen);

/*  A duration in seconds for people: "42s", "3m07s", "2h05m", "3d04h"
    ("-" when negative). */
void cli_kernel_age (double seconds, char *out, size_t size);

/*  Unix seconds as UTC ISO 8601: "2025-01-31T12:00:00Z". */
void cli_kernel_utc (uint64_t unix_s, char *out, size_t size);

#endif
