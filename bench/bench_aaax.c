/*  bench_aaax.c — aaax_bench's workloads as functions (bench_aaax.h).
    aaax_bench.c is compiled here a second time, its main() renamed and
    unused, so that both binaries run exactly the same client code; only
    the thin wrappers below are new. */

#define main s_aaax_bench_main
int s_aaax_bench_main (int argc, char **argv);
/*  GCC's constant propagation here (not in aaax_bench) makes a false
    stringop-overflow of s_bsub_credit's subs[i], i < nsubs <= S_MAX_SUBS. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
#include "aaax_bench.c"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#undef main

#include "bench_aaax.h"

struct bench_aaax {
    s_bench_t b;
};

bench_aaax_t *
bench_aaax_new (const char *aaaxd)
{
    bench_aaax_t *x = (bench_aaax_t *) calloc (1, sizeof *x);
    if (!x)
        return NULL;
    s_bench_t *b = &x->b;
    b->o.aaaxd = aaaxd;
    s_find_aaaxd (b);
    if (access (b->aaaxd, X_OK) != 0) {
        fprintf (stderr, "bench: no kernel at %s (use --aaaxd or AAAXD)\n",
                 b->aaaxd);
        free (x);
        return NULL;
    }
    b->o.count = 100000;
    b->o.size = 100;
    b->o.samples = 20000;
    b->o.warmup = 2000;
    b->o.producers = 2;
    b->o.consumers = 2;
    b->o.bwindow = 1000;
    b->o.qwindow = 2000;
    b->o.limit_s = 60;
    b->o.only = S_W_KERNEL;

    zsys_handler_set (NULL);
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);

    const char *tmpdir = getenv ("TMPDIR");
    snprintf (b->tmp, sizeof b->tmp, "%.3000s/aaax-vs-XXXXXX",
              tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp (b->tmp)) {
        fprintf (stderr, "bench: cannot make a temp dir: %s\n",
                 strerror (errno));
        free (x);
        return NULL;
    }
    snprintf (b->data, sizeof b->data, "%.4000s/data", b->tmp);
    snprintf (b->cfg, sizeof b->cfg, "%.4000s/bench.lua", b->tmp);
    snprintf (b->log, sizeof b->log, "%.4000s/aaaxd.log", b->tmp);
    zsys_init ();
    b->rawctx = zmq_ctx_new ();
    if (!b->rawctx) {
        bench_aaax_destroy (&x);
        return NULL;
    }
    return x;
}

void
bench_aaax_destroy (bench_aaax_t **xp)
{
    bench_aaax_t *x = *xp;
    if (!x)
        return;
    s_bench_t *b = &x->b;
    if (b->pid > 0)
        s_kernel_stop (b);
    if (b->rawctx)
        zmq_ctx_term (b->rawctx);
    nftw (b->tmp, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free (x);
    *xp = NULL;
}

const char *
bench_aaax_version (void)
{
    return AAAX_VERSION_STRING;
}

bool
bench_aaax_interrupted (void)
{
    return s_interrupted != 0;
}

void
bench_aaax_limit (bench_aaax_t *x, int limit_s)
{
    x->b.o.limit_s = limit_s;
}

int
bench_aaax_start (bench_aaax_t *x)
{
    s_bench_t *b = &x->b;
    if (b->pid > 0)
        s_kernel_stop (b);
    nftw (b->data, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return s_kernel_start (b);
}

pid_t
bench_aaax_pid (const bench_aaax_t *x)
{
    return x->b.pid;
}

int
bench_aaax_stop (bench_aaax_t *x)
{
    return s_kernel_stop (&x->b);
}

double
bench_aaax_bcast (bench_aaax_t *x, int nsubs, uint64_t count, uint32_t size,
                  bool *ok)
{
    s_bench_t *b = &x->b;
    uint64_t lost = 0;
    bool fail = false;
    b->o.count = count;
    b->o.size = size;
    if (nsubs < 1 || nsubs > S_MAX_SUBS) {
        *ok = false;
        return 0;
    }
    double r = s_bcast_aaax (b, nsubs, &lost, &fail);
    *ok = !fail && !lost;
    return r;
}

double
bench_raw_bcast (bench_aaax_t *x, int nsubs, uint64_t count, uint32_t size,
                 bool *ok)
{
    s_bench_t *b = &x->b;
    uint64_t lost = 0;
    bool fail = false;
    b->o.count = count;
    b->o.size = size;
    if (nsubs < 1 || nsubs > S_MAX_SUBS) {
        *ok = false;
        return 0;
    }
    double r = s_bcast_raw (b, nsubs, &lost, &fail);
    *ok = !fail && !lost;
    return r;
}

double
bench_aaax_queue (bench_aaax_t *x, uint64_t count, uint32_t size, double *floor,
                  bool *ok)
{
    s_bench_t *b = &x->b;
    b->o.count = count;
    b->o.size = size;
    b->nres = 0;
    b->failed = false;
    s_workload_queue (b);
    *ok = !b->failed && b->nres == 1 && b->res[0].ok;
    *floor = b->nres == 1 ? b->res[0].base : 0;
    return b->nres == 1 && *ok ? b->res[0].aaax : 0;
}

static void
s_lat_out (double *us, size_t n, bench_lat_t *lat)
{
    s_lat_t l;
    s_lat_of (us, n, &l);
    lat->p50 = l.p50;
    lat->p99 = l.p99;
    lat->p999 = l.p999;
    lat->mean = l.mean;
    lat->n = n;
}

int
bench_aaax_rtt (bench_aaax_t *x, uint32_t samples, uint32_t size,
                bench_lat_t *lat)
{
    s_bench_t *b = &x->b;
    b->o.size = size;
    b->o.samples = samples;
    b->o.warmup = samples / 10 ? samples / 10 : 1;
    uint32_t total = b->o.warmup + samples;
    double *us = (double *) calloc (total, sizeof (double));
    s_rtta_t *a = (s_rtta_t *) calloc (1, sizeof *a);
    size_t n = 0;
    memset (lat, 0, sizeof *lat);
    bool fail =
        !us || !a || s_rtta_setup (b, a, b->o.warmup, b->o.samples) != 0;
    if (!fail && s_rtta_block (a, total, us, &n) != 0)
        fail = true;
    if (a && s_rtta_finish (a, !fail) != 0)
        fail = true;
    if (!fail && n != samples)
        fail = true;
    if (us)
        s_lat_out (us, n, lat);
    free (a);
    free (us);
    return fail ? -1 : 0;
}

int
bench_raw_rtt (bench_aaax_t *x, uint32_t samples, uint32_t size,
               bench_lat_t *lat)
{
    s_bench_t *b = &x->b;
    b->o.size = size;
    b->o.samples = samples;
    b->o.warmup = samples / 10 ? samples / 10 : 1;
    uint32_t total = b->o.warmup + samples;
    double *us = (double *) calloc (total, sizeof (double));
    s_rttr_t *r = (s_rttr_t *) calloc (1, sizeof *r);
    size_t n = 0;
    memset (lat, 0, sizeof *lat);
    bool fail = !us || !r || s_rttr_setup (b, r) != 0;
    if (!fail && s_rttr_block (r, total, us, &n) != 0)
        fail = true;
    if (r && s_rttr_finish (r, !fail) != 0)
        fail = true;
    if (!fail && n != samples)
        fail = true;
    if (us)
        s_lat_out (us, n, lat);
    free (r);
    free (us);
    return fail ? -1 : 0;
}
