/*  aaax_vs.c — one side-by-side run: aaax, raw libzmq, NATS and Redis on
    the same workloads, the systems interleaved round by round, servers on
    CPU 0 and clients on CPU 1 (the raw libzmq proxy and echo threads, and
    their libzmq I/O thread, count as servers). Writes results/latest.md
    and, through gnuplot, results/latest.png. Exit status 1 when anything
    sent was not delivered (or a server did not start). See
    bench/README.md, "Side by side: aaax_vs". */

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bench_aaax.h"
#include "peer_common.h"
#include "peer_nats.h"
#include "peer_redis.h"

#ifndef AAAX_BENCH_DIR
#define AAAX_BENCH_DIR "bench"
#endif

#define S_MAX_ROUNDS 50
#define S_MAX_SYS 5
#define S_NW 6

enum { K_BCAST, K_QUEUE, K_RTT };

typedef struct {
    const char *name; /* table row */
    const char *tag;  /* chart label */
    int kind;
    uint32_t size;
    int subs;
    int nsys;
    const char *sys[S_MAX_SYS];
} s_wl_t;

static const s_wl_t s_wls[S_NW] = {
    { "broadcast 100 B 1->1",
      "100B 1->1",
      K_BCAST,
      100,
      1,
      5,
      { "aaax (batched)", "raw zmq_proxy", "NATS core", "Redis pub/sub",
        "aaax (1 WRITE per message)" } },
    { "broadcast 100 B 1->4",
      "100B 1->4",
      K_BCAST,
      100,
      4,
      5,
      { "aaax (batched)", "raw zmq_proxy", "NATS core", "Redis pub/sub",
        "aaax (1 WRITE per message)" } },
    { "broadcast 1 KiB 1->1",
      "1KiB 1->1",
      K_BCAST,
      1024,
      1,
      5,
      { "aaax (batched)", "raw zmq_proxy", "NATS core", "Redis pub/sub",
        "aaax (1 WRITE per message)" } },
    { "broadcast 1 KiB 1->4",
      "1KiB 1->4",
      K_BCAST,
      1024,
      4,
      5,
      { "aaax (batched)", "raw zmq_proxy", "NATS core", "Redis pub/sub",
        "aaax (1 WRITE per message)" } },
    { "durable work queue 100 B",
      "queue",
      K_QUEUE,
      100,
      2,
      5,
      { "aaax (fsync)", "Redis Streams always", "Redis Streams everysec",
        "NATS JetStream (no fsync)", "LMDB floor" } },
    { "request/reply 100 B",
      "rtt",
      K_RTT,
      100,
      1,
      4,
      { "aaax transient SEND", "raw DEALER/ROUTER", "NATS req/reply",
        "aaax mailbox SEND (durable)" } },
};

typedef struct {
    bool run, ok;
    double v; /* msgs/s, or p50 µs */
    double p99, p999;
    double cpu; /* server CPU-µs per message, < 0: not measured */
} s_cell_t;

typedef struct {
    int rounds;
    bool quick, pin;
    uint64_t count, qcount;
    uint32_t samples;
    int limit_s;
    const char *out;
    const char *aaaxd;
    bench_aaax_t *x;
    unsigned only; /* bits 1 << K_*: the kinds of workload that run */
    s_cell_t cell[S_NW][S_MAX_SYS][S_MAX_ROUNDS];
    bool failed;
    char nats_ver[64], redis_ver[64];
    cpu_set_t srv_set, cli_set;
} s_vs_t;

/*  ---- CPU placement ------------------------------------------------------ */

static void
s_pin_tasks (pid_t pid, const cpu_set_t *set)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/task", (int) pid);
    DIR *d = opendir (path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir (d))) {
        int tid = atoi (e->d_name);
        if (tid > 0)
            sched_setaffinity (tid, sizeof *set, set);
    }
    closedir (d);
}

/*  Before a server starts: this thread on the server CPU, so that the
    forked server and every thread it makes inherit it. */
static void
s_pre_spawn (s_vs_t *v)
{
    if (v->pin)
        sched_setaffinity (0, sizeof v->srv_set, &v->srv_set);
}

/*  After: the server's threads on CPU 0, every thread of ours on CPU 1
    (libzmq may have started an I/O thread meanwhile). */
static void
s_post_spawn (s_vs_t *v, pid_t server)
{
    if (!v->pin)
        return;
    if (server > 0)
        s_pin_tasks (server, &v->srv_set);
    s_pin_tasks (getpid (), &v->cli_set);
}

static double
s_proc_cpu (pid_t pid)
{
    return pid > 0 ? peer_proc_cpu_us (pid) : 0;
}

/*  ---- one run of one system --------------------------------------------- */

static void
s_report (s_vs_t *v, int w, int s, int round, const s_cell_t *c,
          const char *err)
{
    const s_wl_t *wl = &s_wls[w];
    printf ("round %d  %-26s %-26s ", round + 1, wl->name, wl->sys[s]);
    if (wl->kind == K_RTT)
        printf ("p50 %8.1f us  p99 %8.1f us  p99.9 %8.1f us", c->v, c->p99,
                c->p999);
    else
        printf ("%12.0f msgs/s", c->v);
    if (c->cpu >= 0)
        printf ("  %7.2f srv-CPU-us/msg", c->cpu);
    if (!c->ok) {
        printf ("  FAILED%s%s", err && *err ? ": " : "", err ? err : "");
        v->failed = true;
    }
    printf ("\n");
    fflush (stdout);
}

/*  nats (core or JetStream) or redis (appendfsync fsync). */
static void
s_peer (s_vs_t *v, int w, int s, int round, const char *server,
        const char *fsync)
{
    const s_wl_t *wl = &s_wls[w];
    s_cell_t *c = &v->cell[w][s][round];
    peer_server_t srv;
    peer_result_t r;
    memset (&r, 0, sizeof r);
    c->run = true;
    c->cpu = -1;
    bool nats = strcmp (server, "redis") != 0;
    bool js = strcmp (server, "nats-js") == 0;
    s_pre_spawn (v);
    int rc = nats ? peer_nats_start (&srv, js) : peer_redis_start (&srv, fsync);
    s_post_spawn (v, rc == 0 ? srv.pid : 0);
    if (rc != 0) {
        c->ok = false;
        s_report (v, w, s, round, c, "server did not start");
        return;
    }
    char *ver = nats ? v->nats_ver : v->redis_ver;
    if (!*ver)
        snprintf (ver, sizeof v->nats_ver, "%s", srv.version);
    peer_params_t p = { .count = v->count,
                        .size = wl->size,
                        .subs = (uint32_t) wl->subs,
                        .lead = 50000,
                        .batch = 1000,
                        .samples = v->samples,
                        .limit_s = v->limit_s };
    if (wl->kind == K_QUEUE) {
        p.count = v->qcount;
        p.subs = 2;
        p.producers = 2;
        p.batch = 500;
    }
    if (wl->kind == K_BCAST)
        (nats ? peer_nats_pubsub : peer_redis_pubsub) (&srv, &p, &r);
    else if (wl->kind == K_RTT)
        peer_nats_rtt (&srv, &p, &r);
    else if (js)
        peer_nats_jsqueue (&srv, &p, &r);
    else
        peer_redis_streams (&srv, &p, fsync, &r);
    if (peer_server_stop (&srv) != 0)
        peer_fail (&r, "%s needed SIGKILL", srv.name);
    c->ok = r.ok;
    c->v = wl->kind == K_RTT ? r.p50_us : r.msgs_s;
    c->p99 = r.p99_us;
    c->p999 = r.p999_us;
    c->cpu = r.cpu_us_msg;
    s_report (v, w, s, round, c, r.err);
}

/*  Messages per WRITE batch of the batched aaax publisher: what fits in
    64 KiB (a NATS client's write buffer), at most 256. */
static uint32_t
s_batch_for (uint32_t size)
{
    uint32_t n = 65536 / (size ? size : 1);
    return n > 256 ? 256 : n < 2 ? 2 : n;
}

/*  aaax (a fresh kernel) as system column sys: for broadcast the batched
    publisher (sys 0) or one WRITE per message (sys 4); for request/reply
    transient SENDs (sys 0) or durable mailbox SENDs (sys 3); and, for the
    queue, the LMDB floor with it. */
static void
s_aaax (s_vs_t *v, int w, int sys, int round)
{
    const s_wl_t *wl = &s_wls[w];
    s_cell_t *c = &v->cell[w][sys][round];
    bench_aaax_batch (
        v->x, wl->kind == K_BCAST && sys == 0 ? s_batch_for (wl->size) : 1);
    bench_aaax_transient (v->x, wl->kind == K_RTT && sys == 0);
    c->run = true;
    c->cpu = -1;
    s_pre_spawn (v);
    int rc = bench_aaax_start (v->x);
    pid_t pid = bench_aaax_pid (v->x);
    s_post_spawn (v, rc == 0 ? pid : 0);
    if (rc != 0) {
        c->ok = false;
        s_report (v, w, sys, round, c, "aaaxd did not start");
        return;
    }
    double cpu0 = s_proc_cpu (pid), n = 1;
    double floor = 0;
    if (wl->kind == K_BCAST) {
        c->v = bench_aaax_bcast (v->x, wl->subs, v->count, wl->size, &c->ok);
        n = (double) v->count;
    } else if (wl->kind == K_QUEUE) {
        c->v = bench_aaax_queue (v->x, v->qcount, wl->size, &floor, &c->ok);
        n = (double) v->qcount;
    } else {
        bench_lat_t l;
        c->ok = bench_aaax_rtt (v->x, v->samples, wl->size, &l) == 0;
        c->v = l.p50;
        c->p99 = l.p99;
        c->p999 = l.p999;
        n = (double) v->samples * 1.1;
    }
    double cpu1 = s_proc_cpu (pid);
    if (bench_aaax_stop (v->x) != 0)
        c->ok = false;
    c->cpu = (cpu1 - cpu0) / n;
    s_report (v, w, sys, round, c, c->ok ? NULL : "see above");
    if (wl->kind == K_QUEUE) {
        s_cell_t *f = &v->cell[w][4][round];
        f->run = true;
        f->ok = floor > 0;
        f->v = floor;
        f->cpu = -1;
        s_report (v, w, 4, round, f, f->ok ? NULL : "no floor");
    }
}

/*  raw libzmq, in this process. Its "server" (the proxy or echo thread) is
    a thread of ours: bench_aaax_server_cpus (set in main) puts it, with a
    libzmq context and I/O thread of its own, on the server CPU for the
    run; the clients' sockets stay on ours. Its CPU is not measured (the
    process's would count the clients too). */
static void
s_raw (s_vs_t *v, int w, int round)
{
    const s_wl_t *wl = &s_wls[w];
    s_cell_t *c = &v->cell[w][1][round];
    c->run = true;
    c->cpu = -1;
    if (wl->kind == K_BCAST)
        c->v = bench_raw_bcast (v->x, wl->subs, v->count, wl->size, &c->ok);
    else {
        bench_lat_t l;
        c->ok = bench_raw_rtt (v->x, v->samples, wl->size, &l) == 0;
        c->v = l.p50;
        c->p99 = l.p99;
        c->p999 = l.p999;
    }
    s_report (v, w, 1, round, c, c->ok ? NULL : "see above");
}

static void
s_round (s_vs_t *v, int round)
{
    for (int w = 0; w < S_NW && !bench_aaax_interrupted (); w++) {
        const s_wl_t *wl = &s_wls[w];
        if (!(v->only & (1u << wl->kind)))
            continue;
        if (wl->kind == K_BCAST) {
            s_aaax (v, w, 0, round);
            s_raw (v, w, round);
            s_peer (v, w, 2, round, "nats", NULL);
            s_peer (v, w, 3, round, "redis", "everysec");
            s_aaax (v, w, 4, round);
        } else if (wl->kind == K_QUEUE) {
            s_aaax (v, w, 0, round);
            s_peer (v, w, 1, round, "redis", "always");
            s_peer (v, w, 2, round, "redis", "everysec");
            s_peer (v, w, 3, round, "nats-js", NULL);
        } else {
            s_aaax (v, w, 0, round);
            s_raw (v, w, round);
            s_peer (v, w, 2, round, "nats", NULL);
            s_aaax (v, w, 3, round);
        }
    }
}

/*  ---- statistics and output ---------------------------------------------- */

static int
s_cmp (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

/*  Median, min and max of n values (sorted in place). */
static double
s_median (double *a, int n, double *lo, double *hi)
{
    if (n <= 0) {
        *lo = *hi = 0;
        return 0;
    }
    qsort (a, (size_t) n, sizeof *a, s_cmp);
    *lo = a[0];
    *hi = a[n - 1];
    return n % 2 ? a[n / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
}

typedef enum { F_V, F_P99, F_P999, F_CPU } s_field_t;

static double
s_field (const s_cell_t *c, s_field_t f)
{
    return f == F_V      ? c->v
           : f == F_P99  ? c->p99
           : f == F_P999 ? c->p999
                         : c->cpu;
}

/*  Median over the rounds where the system ran and delivered everything. */
static double
s_med (const s_vs_t *v, int w, int s, s_field_t f, int *n)
{
    double a[S_MAX_ROUNDS], lo, hi;
    *n = 0;
    for (int r = 0; r < v->rounds; r++) {
        const s_cell_t *c = &v->cell[w][s][r];
        if (c->run && c->ok && s_field (c, f) >= 0)
            a[(*n)++] = s_field (c, f);
    }
    return s_median (a, *n, &lo, &hi);
}

/*  aaax / system s, within each round: median [min, max]. */
static int
s_ratio (const s_vs_t *v, int w, int s, double *med, double *lo, double *hi)
{
    double a[S_MAX_ROUNDS];
    int n = 0;
    for (int r = 0; r < v->rounds; r++) {
        const s_cell_t *x = &v->cell[w][0][r], *c = &v->cell[w][s][r];
        if (x->run && x->ok && c->run && c->ok && c->v > 0)
            a[n++] = x->v / c->v;
    }
    *med = s_median (a, n, lo, hi);
    return n;
}

/*  The targets of the benchmark issue, each judged on the median of the
    within-round ratios (first aaax row / system), with its range. */
static void
s_targets (const s_vs_t *v, FILE *f)
{
    static const struct {
        int w, s;
        bool at_most; /* latency: the ratio must be at most limit */
        double limit;
        const char *what;
    } t[] = {
        { 0, 2, false, 1.0, "broadcast 100 B 1->1: aaax >= 1.0x NATS core" },
        { 0, 1, false, 0.6,
          "broadcast 100 B 1->1: aaax >= 0.6x the raw zmq_proxy hop" },
        { 4, 1, false, 2.0,
          "durable work queue: aaax >= 2x Redis Streams appendfsync "
          "always" },
        { 5, 2, true, 1.0, "request/reply p50: aaax <= NATS request/reply" },
        { 5, 1, true, 1.5, "request/reply p50: aaax <= 1.5x the raw echo" },
    };
    fprintf (f, "## Targets\n\n| target | ratio median [min, max] | met "
                "(median) |\n|---|---|---|\n");
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        double med, lo, hi;
        int n = s_ratio (v, t[i].w, t[i].s, &med, &lo, &hi);
        bool met =
            n > 0 && (t[i].at_most ? med <= t[i].limit : med >= t[i].limit);
        fprintf (f, "| %s (%s vs %s) | %.2f [%.2f, %.2f] | %s |\n", t[i].what,
                 s_wls[t[i].w].sys[0], s_wls[t[i].w].sys[t[i].s], med, lo, hi,
                 n ? (met ? "yes" : "**no**") : "not run");
    }
    fprintf (f, "\n");
}

static void
s_fmt_v (char *out, size_t size, double x, bool lat)
{
    if (x <= 0)
        snprintf (out, size, "-");
    else if (lat)
        snprintf (out, size, "%.1f us", x);
    else
        snprintf (out, size, "%.0f", x);
}

static int
s_write_md (s_vs_t *v, const char *path, const char *started, double secs)
{
    FILE *f = fopen (path, "w");
    if (!f)
        return -1;
    struct utsname u;
    uname (&u);
    char cpu[128];
    peer_cpu_model (cpu, sizeof cpu);
    int maj, min, pat;
    zmq_version (&maj, &min, &pat);
    fprintf (f, "# aaax side by side (`aaax_vs%s`)\n\n",
             v->quick ? " --quick" : "");
    fprintf (f,
             "Run %s, %.0f s, %d rounds, systems interleaved within each "
             "round; result: **%s**.\n\n",
             started, secs, v->rounds,
             v->failed ? "FAILED (something sent was not delivered)"
                       : "everything sent was delivered");
    fprintf (f,
             "- machine: nproc %ld, %s, Linux %s\n"
             "- versions: aaax %s, libzmq %d.%d.%d, nats-server %s, "
             "redis-server %s\n",
             sysconf (_SC_NPROCESSORS_ONLN), cpu, u.release,
             bench_aaax_version (), maj, min, pat,
             *v->nats_ver ? v->nats_ver : "?",
             *v->redis_ver ? v->redis_ver : "?");
    if (v->pin)
        fprintf (f, "- placement: servers (aaaxd, nats-server, redis-server) "
                    "on CPU 0, clients on CPU 1 (sched_setaffinity on every "
                    "thread); the raw libzmq server (the zmq_proxy thread, "
                    "the echo thread) is a thread of the client process, "
                    "pinned to CPU 0 with a libzmq context of its own whose "
                    "I/O thread is on CPU 0 too, the raw clients' sockets "
                    "and their I/O thread on CPU 1; its server CPU is not "
                    "measured (`-`: in-process)\n");
    else
        fprintf (f, "- placement: not pinned (--no-pin)\n");
    fprintf (f,
             "- broadcast: %" PRIu64 " messages per run; publisher window "
             "1 000 messages (aaax WRITEs, Redis PUBLISH pipeline); aaax "
             "(batched): up to %u (100 B) / %u (1 KiB) messages per "
             "WRITE {batch}, the subscribers SUB {batch: true} and get "
             "MSGS, every message still its own id and envelope; aaax (1 "
             "WRITE per message): one WRITE, one OK and one MSG per message; "
             "NATS PUB through "
             "a 64 KiB buffer (verbose false), at most 50 000 ahead of the "
             "slowest subscriber; raw: PUB -> zmq_proxy XSUB/XPUB -> SUB, "
             "HWM 100 000, XPUB_NODROP\n"
             "- durable queue: %" PRIu64 " messages per run, 2 producers, 2 "
             "consumers; aaax window 2 000 per producer, CLAIM max 500, ACK "
             "every claim (fsync before OK); Redis XADD window 500, "
             "XREADGROUP COUNT 500 + XACK; JetStream publish acks window "
             "500, pull batches of 500, +ACK; LMDB floor: synced txns at "
             "aaax's measured commit batch\n"
             "- request/reply: one in flight, %u samples after %u warm-up "
             "per round and system; aaax transient SEND: request and reply "
             "are SEND {transient: true, noreply: true} (pushed once, never "
             "stored, no OK: the semantics of a NATS request and its reply); "
             "aaax mailbox SEND "
             "(durable): request and reply are durable mailbox messages "
             "(committed, fsync) and both sides ACK them\n"
             "- every payload carries a sequence number checked by every "
             "receiver; CPU-us/msg is the server process's user+sys time "
             "(/proc, 10 ms ticks) over the run / messages (per round trip "
             "for request/reply); `-` where the server is in-process\n\n",
             v->count, s_batch_for (100), s_batch_for (1024), v->qcount,
             v->samples, v->samples / 10);
    fprintf (f, "Ratios are the first aaax row of each table / system, "
                "computed within each round; "
                "median [min, max] over the rounds. Throughput: higher is "
                "better for aaax; latency: lower is better for aaax.\n\n");
    for (int w = 0; w < S_NW; w++) {
        if (!(v->only & (1u << s_wls[w].kind)))
            continue;
        const s_wl_t *wl = &s_wls[w];
        bool lat = wl->kind == K_RTT;
        fprintf (f, "## %s\n\n", wl->name);
        if (lat)
            fprintf (f, "| system | p50 | p99 | p99.9 | server CPU-us/rt | "
                        "aaax/system p50 | rounds ok |\n"
                        "|---|---:|---:|---:|---:|---|---:|\n");
        else
            fprintf (f, "| system | msgs/s (median) | server CPU-us/msg | "
                        "aaax/system | rounds ok |\n"
                        "|---|---:|---:|---|---:|\n");
        for (int s = 0; s < wl->nsys; s++) {
            int n, nc;
            char a[32], b[32], c[32], cp[32], ra[64];
            s_fmt_v (a, sizeof a, s_med (v, w, s, F_V, &n), lat);
            double cpum = s_med (v, w, s, F_CPU, &nc);
            if (nc)
                snprintf (cp, sizeof cp, "%.2f", cpum);
            else
                snprintf (cp, sizeof cp, "-");
            double m, lo, hi;
            if (s == 0)
                snprintf (ra, sizeof ra, "-");
            else if (s_ratio (v, w, s, &m, &lo, &hi))
                snprintf (ra, sizeof ra, "%.2f [%.2f, %.2f]", m, lo, hi);
            else
                snprintf (ra, sizeof ra, "n/a");
            if (lat) {
                int n2;
                s_fmt_v (b, sizeof b, s_med (v, w, s, F_P99, &n2), true);
                s_fmt_v (c, sizeof c, s_med (v, w, s, F_P999, &n2), true);
                fprintf (f, "| %s | %s | %s | %s | %s | %s | %d/%d |\n",
                         wl->sys[s], a, b, c, cp, ra, n, v->rounds);
            } else
                fprintf (f, "| %s | %s | %s | %s | %d/%d |\n", wl->sys[s], a,
                         cp, ra, n, v->rounds);
        }
        fprintf (f, "\n");
    }
    fprintf (f, "Latencies are the median over rounds of each round's "
                "percentile. Chart: [latest.png](latest.png).\n\n");
    s_targets (v, f);
    return fclose (f) == 0 ? 0 : -1;
}

/*  Data files and a gnuplot script beside the table; gnuplot draws the
    PNG. 0, or -1 when gnuplot failed (the table is still there). */
static int
s_chart (s_vs_t *v, const char *dir)
{
    char path[4200];
    int n;
    snprintf (path, sizeof path, "%s/latest-bcast.dat", dir);
    FILE *f = fopen (path, "w");
    if (!f)
        return -1;
    for (int w = 0; w < S_NW; w++)
        if (s_wls[w].kind == K_BCAST) {
            fprintf (f, "\"%s\"", s_wls[w].tag);
            for (int s = 0; s < s_wls[w].nsys; s++)
                fprintf (f, " %.0f", s_med (v, w, s, F_V, &n));
            fprintf (f, "\n");
        }
    fclose (f);
    snprintf (path, sizeof path, "%s/latest-queue.dat", dir);
    if (!(f = fopen (path, "w")))
        return -1;
    for (int s = 0; s < s_wls[4].nsys; s++)
        fprintf (f, "\"%s\" %.0f\n", s_wls[4].sys[s], s_med (v, 4, s, F_V, &n));
    fclose (f);
    snprintf (path, sizeof path, "%s/latest-rtt.dat", dir);
    if (!(f = fopen (path, "w")))
        return -1;
    for (int s = 0; s < s_wls[5].nsys; s++) {
        int n2;
        fprintf (f, "\"%s\" %.1f %.1f\n", s_wls[5].sys[s],
                 s_med (v, 5, s, F_V, &n), s_med (v, 5, s, F_P99, &n2));
    }
    fclose (f);
    snprintf (path, sizeof path, "%s/latest.gp", dir);
    if (!(f = fopen (path, "w")))
        return -1;
    fprintf (f,
             "# written by aaax_vs; run from %s: gnuplot latest.gp\n"
             "set terminal pngcairo size 1400,1000 font ',10'\n"
             "set output 'latest.png'\n"
             "set multiplot layout 2,2 title 'aaax side by side (medians of "
             "%d rounds%s)'\n"
             "set style data histograms\n"
             "set style histogram clustered gap 1\n"
             "set style fill solid 0.8 border -1\n"
             "set termoption noenhanced\n"
             "set grid ytics\n"
             "set key top right\n"
             "set yrange [0:*]\n"
             "set title 'broadcast: published msgs/s (higher is better)'\n"
             "set format y '%%.1s%%c'\n"
             "plot 'latest-bcast.dat' using 2:xtic(1) title '%s', '' using "
             "3 title '%s', '' using 4 title '%s', '' using 5 title '%s', "
             "'' using 6 title '%s'\n"
             "set title 'durable work queue e2e msgs/s (higher is better)'\n"
             "set xtics rotate by -20\n"
             "plot 'latest-queue.dat' using 2:xtic(1) notitle lc rgb "
             "'#4477aa'\n"
             "set format y '%%g'\n"
             "set title 'request/reply round trip, us (lower is better)'\n"
             "plot 'latest-rtt.dat' using 2:xtic(1) title 'p50', '' using "
             "3 title 'p99'\n"
             "unset multiplot\n",
             dir, v->rounds, v->pin ? ", servers CPU 0, clients CPU 1" : "",
             s_wls[0].sys[0], s_wls[0].sys[1], s_wls[0].sys[2], s_wls[0].sys[3],
             s_wls[0].sys[4]);
    fclose (f);
    char cmd[4400];
    snprintf (cmd, sizeof cmd, "cd '%s' && gnuplot latest.gp", dir);
    int rc = system (cmd);
    return rc == 0 ? 0 : -1;
}

/*  ---- main --------------------------------------------------------------- */

static void
s_usage (FILE *f)
{
    fprintf (
        f,
        "usage: aaax_vs [--quick] [--rounds N] [--no-pin] [--count N] "
        "[--queue-count N]\n"
        "               [--samples N] [--limit S] [--out DIR] [--only LIST] "
        "[--aaaxd PATH]\n"
        "  --quick          smaller runs (under ~2 minutes)\n"
        "  --rounds N       rounds, systems interleaved (default 5, "
        ">= 1, <= %d)\n"
        "  --no-pin         leave CPU placement to the scheduler\n"
        "  --count N        broadcast messages per run (default 200000; "
        "quick 50000)\n"
        "  --queue-count N  work-queue messages per run (default 50000; "
        "quick 20000)\n"
        "  --samples N      round trips per round and system after N/10 "
        "warm-up (default 20000; quick 4000)\n"
        "  --limit S        hard limit per measured phase (default 60)\n"
        "  --out DIR        where latest.md and latest.png go (default "
        "%s/results)\n"
        "  --only LIST      some of broadcast,queue,rtt (default all; "
        "no chart then)\n",
        S_MAX_ROUNDS, AAAX_BENCH_DIR);
}

/*  --only: a comma-separated list of broadcast, queue, rtt. 0 or -1. */
static int
s_parse_only (const char *arg, unsigned *out)
{
    static const char *const names[] = { "broadcast", "queue", "rtt" };
    unsigned bits = 0;
    const char *p = arg;
    while (*p) {
        size_t n = strcspn (p, ",");
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (strlen (names[i]) == n && strncmp (p, names[i], n) == 0)
                k = i; /* K_BCAST, K_QUEUE, K_RTT in that order */
        if (k < 0)
            return -1;
        bits |= 1u << k;
        p += n + (p[n] == ',');
    }
    if (!bits)
        return -1;
    *out = bits;
    return 0;
}

static s_vs_t s_vs;

int
main (int argc, char **argv)
{
    s_vs_t *v = &s_vs;
    v->rounds = 5;
    v->pin = true;
    v->limit_s = 60;
    uint64_t count = 0, qcount = 0, samples = 0;
    static const struct option opts[] = {
        { "quick", no_argument, NULL, 'q' },
        { "rounds", required_argument, NULL, 'r' },
        { "no-pin", no_argument, NULL, 'x' },
        { "count", required_argument, NULL, 'c' },
        { "queue-count", required_argument, NULL, 'Q' },
        { "samples", required_argument, NULL, 's' },
        { "limit", required_argument, NULL, 'l' },
        { "out", required_argument, NULL, 'o' },
        { "aaaxd", required_argument, NULL, 'a' },
        { "only", required_argument, NULL, 'O' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int ch;
    while ((ch = getopt_long (argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'q': v->quick = true; break;
        case 'r': v->rounds = atoi (optarg); break;
        case 'x': v->pin = false; break;
        case 'c': count = strtoull (optarg, NULL, 10); break;
        case 'Q': qcount = strtoull (optarg, NULL, 10); break;
        case 's': samples = strtoull (optarg, NULL, 10); break;
        case 'l': v->limit_s = atoi (optarg); break;
        case 'o': v->out = optarg; break;
        case 'a': v->aaaxd = optarg; break;
        case 'O':
            if (s_parse_only (optarg, &v->only) != 0) {
                fprintf (stderr, "aaax_vs: --only takes broadcast, queue, "
                                 "rtt, separated by commas\n");
                return 2;
            }
            break;
        case 'h': s_usage (stdout); return 0;
        default: s_usage (stderr); return 2;
        }
    }
    if (optind < argc || v->rounds < 1 || v->rounds > S_MAX_ROUNDS
        || v->limit_s < 1 || samples > 10000000) {
        s_usage (stderr);
        return 2;
    }
    if (!v->only)
        v->only = (1u << K_BCAST) | (1u << K_QUEUE) | (1u << K_RTT);
    v->count = count ? count : v->quick ? 50000 : 200000;
    v->qcount = qcount ? qcount : v->quick ? 20000 : 50000;
    v->samples = (uint32_t) (samples ? samples : v->quick ? 4000 : 20000);
    char outdir[4096];
    snprintf (outdir, sizeof outdir, "%s",
              v->out ? v->out : AAAX_BENCH_DIR "/results");
    mkdir (outdir, 0755);

    if (v->pin && sysconf (_SC_NPROCESSORS_ONLN) < 2) {
        fprintf (stderr, "aaax_vs: one CPU: not pinning\n");
        v->pin = false;
    }
    CPU_ZERO (&v->srv_set);
    CPU_ZERO (&v->cli_set);
    CPU_SET (0, &v->srv_set);
    CPU_SET (1, &v->cli_set);
    if (v->pin)
        s_pin_tasks (getpid (), &v->cli_set);

    v->x = bench_aaax_new (v->aaaxd);
    if (!v->x)
        return 3;
    bench_aaax_limit (v->x, v->limit_s);
    if (v->pin)
        bench_aaax_server_cpus (v->x, &v->srv_set);
    time_t t0 = time (NULL);
    char started[64];
    strftime (started, sizeof started, "%Y-%m-%d %H:%M:%S UTC", gmtime (&t0));
    printf ("# aaax_vs %s: %d rounds, broadcast %" PRIu64 " msgs, queue "
            "%" PRIu64 " msgs, %u round trips per round; %s\n",
            v->quick ? "quick" : "full", v->rounds, v->count, v->qcount,
            v->samples,
            v->pin ? "servers on CPU 0, clients on CPU 1" : "not pinned");
    fflush (stdout);
    for (int r = 0; r < v->rounds && !bench_aaax_interrupted (); r++)
        s_round (v, r);
    if (bench_aaax_interrupted ()) {
        printf ("interrupted\n");
        v->failed = true;
    }
    bench_aaax_destroy (&v->x);

    char md[4200];
    snprintf (md, sizeof md, "%s/latest.md", outdir);
    if (s_write_md (v, md, started, difftime (time (NULL), t0)) != 0) {
        fprintf (stderr, "aaax_vs: cannot write %s\n", md);
        return 1;
    }
    bool all = v->only == ((1u << K_BCAST) | (1u << K_QUEUE) | (1u << K_RTT));
    if (!all)
        printf ("\nwrote %s (no chart: --only)\n\n", md);
    else if (s_chart (v, outdir) != 0)
        fprintf (stderr, "aaax_vs: gnuplot failed: no %s/latest.png\n", outdir);
    else
        printf ("\nwrote %s and %s/latest.png\n\n", md, outdir);
    FILE *f = fopen (md, "r");
    if (f) {
        char line[1024];
        while (fgets (line, sizeof line, f))
            fputs (line, stdout);
        fclose (f);
    }
    printf ("\nresult: %s\n", v->failed ? "FAILED: something sent was not "
                                          "delivered (see above)"
                                        : "everything sent was delivered");
    return v->failed ? 1 : 0;
}
