/*  peer_common.h — what the peer benchmarks (NATS, Redis) share: a server
    process started fresh on a free loopback port with an empty temp dir and
    stopped by its pid, the server's CPU time from /proc, and one result
    record per workload. See bench/README.md, "Peers: NATS and Redis". */

#ifndef PEER_COMMON_H
#define PEER_COMMON_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/*  A server started by peer_server_spawn. dir is an empty temp dir made for
    it (its data, and its stdout/stderr in dir/server.log); peer_server_stop
    removes it. */
typedef struct {
    char name[16]; /* "nats-server", "redis-server" */
    pid_t pid;     /* 0 when not running */
    int port;      /* tcp port on 127.0.0.1 */
    char dir[PATH_MAX];
    char log[PATH_MAX + 16];
    char version[64]; /* as the server reports it, or "" */
} peer_server_t;

/*  What a workload is asked to do. Every workload is bounded by count (or
    samples) and by limit_s for its measured phase. */
typedef struct {
    uint64_t count;     /* messages per throughput run */
    uint32_t size;      /* payload bytes, >= 8 (the first 8: a sequence) */
    uint32_t subs;      /* subscribers (pub/sub), consumers (queues) */
    uint32_t producers; /* queue producers */
    uint32_t samples;   /* round trips measured (after samples/10 warm-up) */
    uint32_t batch;     /* pipelining: commands per batch / window */
    uint64_t lead;      /* pub/sub: publisher at most this many messages
                           ahead of the slowest subscriber (0: unbounded) */
    int limit_s;        /* hard limit on the measured phase */
} peer_params_t;

/*  One workload's outcome. ok is false when anything sent was not received
    (or was duplicated, reordered, refused or timed out); err says what. */
typedef struct {
    char system[16];   /* "nats", "redis" */
    char workload[48]; /* "pubsub 1->4", "streams always", "req/reply" */
    uint32_t size;
    uint64_t count;    /* messages sent (or round trips measured) */
    uint64_t received; /* messages received by each receiver, summed */
    double secs;       /* measured window */
    double msgs_s;     /* messages per second (publishes, not deliveries) */
    double cpu_us_msg; /* server process CPU (user+sys) per message, µs */
    bool has_lat;
    double p50_us, p99_us, p999_us, mean_us;
    bool ok;
    char err[200];
} peer_result_t;

/*  Makes a temp dir ($TMPDIR or /tmp) and picks a free loopback port. */
/*  A free tcp port on 127.0.0.1 (bound and released), or -1. */
int peer_free_port (void);
/*  The "model name" of /proc/cpuinfo into out ("?" when unknown). */
void peer_cpu_model (char *out, size_t size);

int peer_server_prepare (peer_server_t *s, const char *name);
/*  Forks and execs argv (argv[0] looked up in PATH) with stdout and stderr
    to s->log, then waits up to wait_ms until 127.0.0.1:s->port accepts.
    On failure the process is stopped and -1 returned (the log's tail is
    printed to stderr). */
int peer_server_spawn (peer_server_t *s, char *const argv[], int wait_ms);
/*  SIGTERM, waits up to 5 s, then SIGKILL; removes s->dir. Returns 0 when
    it exited by itself within the deadline. Safe to call twice. */
int peer_server_stop (peer_server_t *s);
/*  utime + stime of pid from /proc/PID/stat, in µs (tick resolution). */
double peer_proc_cpu_us (pid_t pid);

int64_t peer_now_ns (void);
void peer_sleep_us (long us);
/*  A connected, blocking tcp socket to 127.0.0.1:port with TCP_NODELAY. */
int peer_tcp_connect (int port);
/*  Percentiles of n latencies in ns (sorted in place) into r, in µs. */
void peer_latency (int64_t *ns, size_t n, peer_result_t *r);
void peer_result_init (peer_result_t *r, const char *system,
                       const char *workload, const peer_params_t *p);
/*  Sets r->ok = false and r->err (the first error only). Returns -1. */
int peer_fail (peer_result_t *r, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
/*  The sequence number in the first 8 bytes of a payload (little-endian). */
void peer_seq_put (char *buf, uint64_t seq);
uint64_t peer_seq_get (const char *buf);

#endif
