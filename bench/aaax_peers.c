/*  aaax_peers.c — runs the peer workloads once each against fresh
    nats-server and redis-server processes and prints one line per workload.
    Exit status 1 when anything sent was not received (or a server did not
    start). See bench/README.md, "Peers: NATS and Redis". */

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_nats.h"
#include "peer_redis.h"

typedef int (*s_run_fn) (const peer_server_t *, const peer_params_t *,
                         peer_result_t *);

static int s_failed = 0;

static void
s_print (const peer_result_t *r)
{
    printf ("%-6s %-28s %5u B %12.0f msgs/s %8.2f srv-CPU-us/msg", r->system,
            r->workload, r->size, r->msgs_s, r->cpu_us_msg);
    if (r->has_lat)
        printf ("  p50 %.1f us  p99 %.1f us  p99.9 %.1f us", r->p50_us,
                r->p99_us, r->p999_us);
    if (!r->ok) {
        printf ("  FAILED: %s", r->err);
        s_failed = 1;
    }
    printf ("\n");
    fflush (stdout);
}

/*  Starts a fresh server, runs one workload, stops the server. */
static void
s_nats (bool js, s_run_fn fn, const peer_params_t *p)
{
    peer_server_t s;
    peer_result_t r;
    if (peer_nats_start (&s, js) != 0) {
        printf ("nats   server did not start: FAILED\n");
        s_failed = 1;
        return;
    }
    fn (&s, p, &r);
    if (peer_nats_stop (&s) != 0)
        peer_fail (&r, "nats-server needed SIGKILL");
    s_print (&r);
}

static void
s_redis_pubsub (const peer_params_t *p)
{
    peer_server_t s;
    peer_result_t r;
    if (peer_redis_start (&s, "everysec") != 0) {
        printf ("redis  server did not start: FAILED\n");
        s_failed = 1;
        return;
    }
    peer_redis_pubsub (&s, p, &r);
    if (peer_redis_stop (&s) != 0)
        peer_fail (&r, "redis-server needed SIGKILL");
    s_print (&r);
}

static void
s_redis_streams (const char *fsync, const peer_params_t *p)
{
    peer_server_t s;
    peer_result_t r;
    if (peer_redis_start (&s, fsync) != 0) {
        printf ("redis  server did not start: FAILED\n");
        s_failed = 1;
        return;
    }
    peer_redis_streams (&s, p, fsync, &r);
    if (peer_redis_stop (&s) != 0)
        peer_fail (&r, "redis-server needed SIGKILL");
    s_print (&r);
}

static void
s_versions (void)
{
    peer_server_t s;
    if (peer_nats_start (&s, false) == 0) {
        printf ("# nats-server %s\n", s.version);
        peer_nats_stop (&s);
    }
    if (peer_redis_start (&s, "everysec") == 0) {
        printf ("# redis-server %s\n", s.version);
        peer_redis_stop (&s);
    }
}

int
main (int argc, char **argv)
{
    uint64_t count = 1000000, qcount = 200000;
    uint32_t samples = 20000;
    int limit = 60;
    const char *only = NULL;
    bool js = true;
    static const struct option opts[] = {
        { "count", required_argument, NULL, 'c' },
        { "queue-count", required_argument, NULL, 'q' },
        { "samples", required_argument, NULL, 's' },
        { "limit", required_argument, NULL, 'l' },
        { "only", required_argument, NULL, 'o' },
        { "no-js", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int ch;
    while ((ch = getopt_long (argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': count = strtoull (optarg, NULL, 10); break;
        case 'q': qcount = strtoull (optarg, NULL, 10); break;
        case 's': samples = (uint32_t) strtoul (optarg, NULL, 10); break;
        case 'l': limit = atoi (optarg); break;
        case 'o': only = optarg; break;
        case 'j': js = false; break;
        default:
            fprintf (stderr, "usage: aaax_peers [--count N] [--queue-count N] "
                             "[--samples N] [--limit S] [--only nats|redis] "
                             "[--no-js]\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    if (only && strcmp (only, "nats") && strcmp (only, "redis")) {
        fprintf (stderr, "aaax_peers: --only nats or redis\n");
        return 2;
    }
    if (count < 1 || qcount < 1 || samples < 1 || limit < 1) {
        fprintf (stderr, "aaax_peers: counts and limit must be positive\n");
        return 2;
    }
    signal (SIGPIPE, SIG_IGN);
    bool nats = !only || !strcmp (only, "nats");
    bool redis = !only || !strcmp (only, "redis");
    printf ("# aaax_peers: count %" PRIu64 ", queue count %" PRIu64
            ", samples %u, limit %d s\n",
            count, qcount, samples, limit);
    s_versions ();
    static const uint32_t sizes[] = { 100, 1024 };
    static const uint32_t fans[] = { 1, 4 };
    peer_params_t p = { .count = count,
                        .samples = samples,
                        .limit_s = limit,
                        .lead = 50000,
                        .batch = 1000 };
    for (size_t z = 0; z < 2; z++) {
        p.size = sizes[z];
        for (size_t f = 0; f < 2; f++) {
            p.subs = fans[f];
            if (nats)
                s_nats (false, peer_nats_pubsub, &p);
            if (redis)
                s_redis_pubsub (&p);
        }
    }
    p.size = 100;
    if (nats)
        s_nats (false, peer_nats_rtt, &p);
    peer_params_t q = { .count = qcount,
                        .size = 100,
                        .subs = 2,
                        .producers = 2,
                        .batch = 500,
                        .limit_s = limit };
    if (redis) {
        s_redis_streams ("always", &q);
        s_redis_streams ("everysec", &q);
    }
    if (nats && js)
        s_nats (true, peer_nats_jsqueue, &q);
    return s_failed;
}
