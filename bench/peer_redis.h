/*  peer_redis.h — redis-server started fresh and the Redis workloads of the
    peer benchmarks, through hiredis. See bench/README.md. */

#ifndef PEER_REDIS_H
#define PEER_REDIS_H

#include "peer_common.h"

/*  redis-server --port PORT --bind 127.0.0.1 --dir DIR --save ''
    --appendonly yes --appendfsync FSYNC ("always", "everysec", "no"). */
int peer_redis_start (peer_server_t *s, const char *appendfsync);
#define peer_redis_stop peer_server_stop

/*  PUBLISH / SUBSCRIBE: one publisher pipelining PUBLISH in batches of
    p->batch (each reply must count p->subs receivers), p->subs subscribers
    (1..8) on their own threads and connections. Every subscriber must get
    every message, in order. */
int peer_redis_pubsub (const peer_server_t *s, const peer_params_t *p,
                       peer_result_t *r);
/*  Streams as a durable work queue: p->producers producers pipeline XADD
    (window p->batch), p->subs consumers in one group XREADGROUP COUNT
    p->batch BLOCK 100 and XACK each batch (pipelined with the next read).
    Every message exactly once, nothing pending at the end. The name says
    the server's appendfsync (label). */
int peer_redis_streams (const peer_server_t *s, const peer_params_t *p,
                        const char *label, peer_result_t *r);

#endif
