/*  cli_bench.h — `aaax bench pub|queue|rpc`: load against a running kernel,
    like `nats bench`. Threads, one chan_client each: publishers WRITE a
    broadcast channel that subscribers SUB (pub), producers WRITE a
    work-queue that consumers CLAIM and ACK (queue), or one requester SENDs
    to a responder that answers with SEND (rpc). Reports msgs/s, MB/s and
    latency percentiles, as a table or one JSON object (docs/CLI.md). */

#ifndef CLI_BENCH_H_INCLUDED
#define CLI_BENCH_H_INCLUDED

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  Exit codes of `aaax bench`. */
enum {
    CLI_BENCH_OK = 0,
    CLI_BENCH_FAILED = 1, /* something sent was not received, the kernel
                             refused, no answer, --timeout, interrupted */
    CLI_BENCH_USAGE = 2
};

/*  Smallest and largest --size: the payload carries an 8-byte timestamp
    and an 8-byte sequence number; the frame limit is 1 MiB. */
#define CLI_BENCH_MIN_SIZE 16
#define CLI_BENCH_MAX_SIZE 1000000
#define CLI_BENCH_MAX_COUNT 100000000u
#define CLI_BENCH_MAX_CLIENTS 64
/*  WRITEs a publisher or producer keeps outstanding. */
#define CLI_BENCH_WINDOW 256

typedef enum {
    CLI_BENCH_PUB = 0,
    CLI_BENCH_QUEUE,
    CLI_BENCH_RPC
} cli_bench_mode_t;

typedef struct {
    cli_bench_mode_t mode;
    const char *endpoint;
    const char *system;     /* base id: SYSTEM-pub1, SYSTEM-sub1, ... */
    const char *token;      /* the session token (privileged), or NULL */
    const char *server_key; /* CURVE: the kernel's key, or NULL */
    const char *curve_public;
    const char *curve_secret;
    const char *channel;  /* pub: broadcast; queue: work-queue */
    uint64_t size;        /* payload bytes */
    uint64_t count;       /* pub/queue: messages in all; rpc: round trips */
    uint64_t publishers;  /* publishers / producers */
    uint64_t subscribers; /* subscribers / consumers */
    uint64_t batch;       /* queue: CLAIM max */
    uint64_t wbatch;      /* pub/queue: messages per WRITE (1: no batch);
                             pub subscribers SUB {batch} when > 1 */
    bool transient;       /* rpc: transient SENDs (never stored, no ACK) */
    int64_t timeout_ms;   /* the whole run */
    bool json;
    bool progress; /* a progress bar on stderr */
    volatile sig_atomic_t *interrupted;
} cli_bench_opts_t;

/*  Runs the benchmark o describes (already checked) and prints its
    summary on stdout. Returns the exit code. */
int cli_bench_run (const cli_bench_opts_t *o);

/*  ---- pure helpers (latency histogram) --------------------------------- */

/*  A log-linear histogram of nanoseconds: exact below 128, then 128
    buckets per power of two (under 0.8 % error). */
#define CLI_BENCH_HBUCKETS (128 + 57 * 128)

typedef struct {
    uint64_t n;
    uint64_t max;
    uint64_t b[CLI_BENCH_HBUCKETS];
} cli_bench_hist_t;

void cli_bench_hist_add (cli_bench_hist_t *h, uint64_t ns);
void cli_bench_hist_merge (cli_bench_hist_t *into, const cli_bench_hist_t *h);
/*  The q-quantile (0 < q <= 1) in ns; 0 when empty. */
uint64_t cli_bench_hist_pct (const cli_bench_hist_t *h, double q);

#endif
