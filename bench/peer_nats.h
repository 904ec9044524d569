/*  peer_nats.h — nats-server started fresh, a minimal client of the NATS
    text protocol (INFO, CONNECT, PUB, SUB, MSG/HMSG, PING/PONG, +OK/-ERR;
    https://docs.nats.io/reference/reference-protocols/nats-protocol) and the
    NATS workloads of the peer benchmarks. See bench/README.md. */

#ifndef PEER_NATS_H
#define PEER_NATS_H

#include "peer_common.h"

#include <stddef.h>

/*  ---- the server -------------------------------------------------------- */

/*  nats-server -p PORT -a 127.0.0.1, with -js -sd DIR when jetstream. */
int peer_nats_start (peer_server_t *s, bool jetstream);
#define peer_nats_stop peer_server_stop

/*  ---- the client -------------------------------------------------------- */

typedef struct {
    int fd;
    char *rbuf;
    size_t rcap, rlen, rpos;
    char *wbuf;
    size_t wcap, wlen;
    uint64_t pongs; /* PONGs received so far */
    char err[160];  /* why the last call failed */
} peer_nats_t;

/*  One received message; the pointers are valid until the next call. */
typedef struct {
    const char *subject, *reply; /* reply is NULL when there is none */
    size_t subject_len, reply_len;
    const char *hdr; /* HMSG: the header block ("NATS/1.0 ..."), else NULL */
    size_t hdr_len;
    const char *data;
    size_t len;
} peer_nats_msg_t;

/*  Connects, reads INFO, sends CONNECT (verbose false, headers true) and
    waits for the PONG of a PING. 0 or -1 (c->err). */
int peer_nats_connect (peer_nats_t *c, int port, const char *name);
void peer_nats_close (peer_nats_t *c);
/*  PUB subject [reply] len, buffered: sent by peer_nats_flush, or when the
    buffer passes 64 KiB. */
int peer_nats_pub (peer_nats_t *c, const char *subject, const char *reply,
                   const void *data, size_t len);
int peer_nats_sub (peer_nats_t *c, const char *subject, unsigned sid);
int peer_nats_flush (peer_nats_t *c);
/*  PING, then waits for its PONG: every command sent before it has been
    processed by the server (a SUB is active). MSGs that arrive meanwhile are
    an error. */
int peer_nats_ping (peer_nats_t *c, int timeout_ms);
/*  The next MSG or HMSG: 1, 0 on timeout, -1 on error or when the server
    closed the connection (-ERR or EOF: a slow consumer is disconnected).
    Answers the server's PINGs. */
int peer_nats_next (peer_nats_t *c, peer_nats_msg_t *m, int timeout_ms);

/*  ---- the workloads ----------------------------------------------------- */

/*  Core pub/sub: one pipelined publisher, p->subs subscribers (1..8), each
    on its own thread and connection; p->count messages of p->size bytes on
    one subject. Every subscriber must get every message, in order. */
int peer_nats_pubsub (const peer_server_t *s, const peer_params_t *p,
                      peer_result_t *r);
/*  Request/reply: a responder thread subscribed to a subject answers to the
    reply inbox; the requester keeps one request in flight, p->samples round
    trips measured after p->samples / 10 of warm-up. */
int peer_nats_rtt (const peer_server_t *s, const peer_params_t *p,
                   peer_result_t *r);
/*  JetStream work-queue stream (server started with jetstream): p->producers
    publishers with an ack per message (window p->batch), p->subs pull
    consumers (one durable, batches of p->batch) acking with +ACK. Every
    message exactly once, the stream empty at the end. nats-server 2.9 does
    not fsync each message (sync_interval 2 min by default): not the same
    durability as an fsync before the ack. */
int peer_nats_jsqueue (const peer_server_t *s, const peer_params_t *p,
                       peer_result_t *r);

#endif
