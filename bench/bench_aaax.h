/*  bench_aaax.h — aaax_bench's aaax and raw libzmq workloads as functions
    another driver can call one run at a time (bench/aaax_vs.c interleaves
    them with the NATS and Redis peers). A fresh aaaxd per start, with
    aaax_bench's config (bench.b broadcast, bench.q durable work-queue);
    the raw libzmq baselines run in this process. All of it is defined in
    aaax_bench.c (its last section), which also holds aaax_bench_main.
    cpu_set_t needs _GNU_SOURCE, which the build defines. See
    bench/README.md. */

#ifndef BENCH_AAAX_H
#define BENCH_AAAX_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*  The whole of aaax_bench: its options (see bench/README.md), its output,
    its exit status (0 everything delivered, 1 a loss, 2 bad options, 3 no
    kernel, or the kernel or the temp dir failed to start). */
int aaax_bench_main (int argc, char **argv);

typedef struct bench_aaax bench_aaax_t;

typedef struct {
    double p50, p99, p999, mean; /* µs */
    size_t n;                    /* samples measured (after warm-up) */
} bench_lat_t;

/*  aaaxd: the kernel binary, or NULL for $AAAXD or ../aaaxd beside this
    executable. Makes a temp dir, installs SIGINT/SIGTERM handlers (see
    bench_aaax_interrupted). NULL when there is no kernel binary. */
bench_aaax_t *bench_aaax_new (const char *aaaxd);
/*  Stops a kernel still running, removes the temp dir. */
void bench_aaax_destroy (bench_aaax_t **xp);
const char *bench_aaax_version (void);
bool bench_aaax_interrupted (void);
/*  Broadcast: up to batch messages per WRITE {batch} and subscribers with
    SUB {batch: true} (MSGS pushes); 0 or 1: one WRITE per message. */
void bench_aaax_batch (bench_aaax_t *x, uint32_t batch);
/*  Broadcast: WRITE {noreply} (no OK per WRITE, like a NATS PUB; the
    publisher is paced by the subscribers' progress alone). */
void bench_aaax_noreply (bench_aaax_t *x, bool noreply);
/*  Mailbox round trip: transient SENDs both ways (never stored, no ACK). */
void bench_aaax_transient (bench_aaax_t *x, bool transient);
/*  Hard limit on each measured phase. */
void bench_aaax_limit (bench_aaax_t *x, int limit_s);
/*  Where the raw baselines' "server" runs: the zmq_proxy thread of
    bench_raw_bcast and the echo thread of bench_raw_rtt are pinned to set,
    and each gets a libzmq context of its own whose I/O thread is pinned
    there too; the raw clients' sockets stay in the client context, on the
    CPUs of the calling thread. NULL (the default): nothing is pinned and
    the server thread shares the clients' context, as in aaax_bench. The
    set is copied. */
void bench_aaax_server_cpus (bench_aaax_t *x, const cpu_set_t *set);

/*  A fresh kernel: an empty data dir, aaax_bench's config; waits for PING.
    0 or -1. */
int bench_aaax_start (bench_aaax_t *x);
pid_t bench_aaax_pid (const bench_aaax_t *x);
/*  SIGTERM; 0 when it exited with status 0. */
int bench_aaax_stop (bench_aaax_t *x);

/*  Broadcast 1->nsubs on bench.b: a publisher pipelining WRITEs (window
    1 000, at most 50 000 ahead of the slowest subscriber). msgs/s, 0 on
    failure; *ok false when anything was lost or refused. Kernel running. */
double bench_aaax_bcast (bench_aaax_t *x, int nsubs, uint64_t count,
                         uint32_t size, bool *ok);
/*  The same through PUB -> zmq_proxy (XSUB/XPUB) -> nsubs SUBs, in this
    process (no kernel needed; the proxy thread placed as
    bench_aaax_server_cpus says). */
double bench_raw_bcast (bench_aaax_t *x, int nsubs, uint64_t count,
                        uint32_t size, bool *ok);
/*  Durable work-queue end to end (2 producers, window 2 000; 2 consumers
    CLAIM + ACK), then the LMDB floor at the kernel's commit batch size into
    *floor (msgs/s). msgs/s. Kernel running (prints aaax_bench's report). */
double bench_aaax_queue (bench_aaax_t *x, uint64_t count, uint32_t size,
                         double *floor, bool *ok);
/*  Mailbox SEND -> reply, one in flight: samples after samples / 10 of
    warm-up. 0 or -1. Kernel running. */
int bench_aaax_rtt (bench_aaax_t *x, uint32_t samples, uint32_t size,
                    bench_lat_t *lat);
/*  Raw DEALER -> ROUTER echo (an echo thread in this process, placed as
    bench_aaax_server_cpus says). */
int bench_raw_rtt (bench_aaax_t *x, uint32_t samples, uint32_t size,
                   bench_lat_t *lat);

#endif
