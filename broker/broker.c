/*  broker.c — the switchboard's loop and plumbing: sockets, the turn (read a
    burst of requests, hand the store its batch, release replies whose batch
    committed, fire deadlines), output with per-session overflow queues,
    sessions and their undocking, long-poll waiters, mailbox pushes, and the
    graceful shutdown. The commands themselves are in broker_ops.c. */

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <sodium.h>

#include "act_heartbeat.h"
#include "broker_impl.h"
#include "chan_env.h"
#include "hal_clock.h"
#include "hal_fs.h"

static const char *s_out_names[] = { "OK",  "ERROR",   "PONG",
                                     "MSG", "DROPPED", "MSGS" };

/*  ---- session map keyed by ROUTER routing id (binary) ---------------- */

typedef struct {
    uint8_t len;
    uint8_t b[BROKER_RID_MAX];
} s_ridkey_t;

static size_t
s_rid_hash (const void *key)
{
    const s_ridkey_t *k = (const s_ridkey_t *) key;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < k->len; i++) {
        h ^= k->b[i];
        h *= 1099511628211ULL;
    }
    return (size_t) h;
}

static int
s_rid_cmp (const void *a, const void *b)
{
    const s_ridkey_t *x = (const s_ridkey_t *) a, *y = (const s_ridkey_t *) b;
    if (x->len != y->len)
        return (int) x->len - (int) y->len;
    return memcmp (x->b, y->b, x->len);
}

static void *
s_rid_dup (const void *key)
{
    const s_ridkey_t *k = (const s_ridkey_t *) key;
    s_ridkey_t *copy = (s_ridkey_t *) malloc (1 + (size_t) k->len);
    if (copy)
        memcpy (copy, k, 1 + (size_t) k->len);
    return copy;
}

static void
s_rid_free (void **key)
{
    free (*key);
    *key = NULL;
}

static void
s_ridkey (s_ridkey_t *k, const uint8_t *rid, size_t len)
{
    k->len = (uint8_t) len;
    memcpy (k->b, rid, len);
}

broker_session_t *
broker_session_find (broker_t *self, const uint8_t *rid, size_t ridlen)
{
    if (ridlen == 0 || ridlen > BROKER_RID_MAX)
        return NULL;
    s_ridkey_t k;
    s_ridkey (&k, rid, ridlen);
    return (broker_session_t *) zhashx_lookup (self->sessions, &k);
}

broker_sys_t *
broker_sys_find (broker_t *self, const char *id)
{
    return (broker_sys_t *) zhashx_lookup (self->systems, id);
}

static void
s_sys_record (broker_t *self, broker_sys_t *sys)
{
    uint8_t val[16];
    memcpy (val, &sys->first_seen, 8);
    memcpy (val + 8, &sys->last_seen, 8);
    hal_store_put (self->store, HAL_DB_SYSTEMS, sys->id, strlen (sys->id), val,
                   sizeof val);
}

broker_sys_t *
broker_sys_get (broker_t *self, const char *id, int64_t wall)
{
    broker_sys_t *sys = broker_sys_find (self, id);
    if (sys)
        return sys;
    sys = (broker_sys_t *) calloc (1, sizeof *sys);
    if (!sys || !(sys->id = strdup (id))) {
        free (sys);
        return NULL;
    }
    chan_mbox_init (&sys->mbox);
    chan_holder_init (&sys->holder);
    sys->first_seen = sys->last_seen = wall;
    if (zhashx_insert (self->systems, id, sys) != 0) {
        free (sys->id);
        free (sys);
        return NULL;
    }
    return sys;
}

static void
s_sys_free (void **item)
{
    broker_sys_t *sys = (broker_sys_t *) *item;
    if (!sys)
        return;
    chan_mbox_fini (&sys->mbox);
    while (sys->caps) {
        broker_cap_t *c = sys->caps;
        sys->caps = c->next;
        free (c);
    }
    free (sys->id);
    free (sys);
    *item = NULL;
}

broker_chan_t *
broker_chan_find (broker_t *self, const char *name)
{
    return (broker_chan_t *) zhashx_lookup (self->channels, name);
}

static void
s_chan_free (void **item)
{
    broker_chan_t *ch = (broker_chan_t *) *item;
    if (!ch)
        return;
    chan_bcast_destroy (&ch->bcast);
    chan_queue_destroy (&ch->queue);
    free (ch->name);
    free (ch);
    *item = NULL;
}

/*  ---- ids ------------------------------------------------------------ */

static void
s_meta_put_u64 (broker_t *self, const char *key, uint64_t v)
{
    hal_store_put (self->store, HAL_DB_META, key, strlen (key), &v, sizeof v);
}

uint64_t
broker_next_id (broker_t *self, int64_t wall_ms, char *id)
{
    uint64_t seq = chan_id_next (&self->ids, wall_ms, id);
    if (self->ids.next_seq + BROKER_SEQ_BLOCK / 2 > self->seq_reserved) {
        self->seq_reserved += BROKER_SEQ_BLOCK;
        s_meta_put_u64 (self, "seq_reserved", self->seq_reserved);
        s_meta_put_u64 (self, "last_ms", self->ids.last_ms);
    }
    return seq;
}

/*  ---- output --------------------------------------------------------- */

/*  One message [rid, cmd, body] without blocking: 0, AAAX_ELIMIT when the
    peer's pipe is full, AAAX_ENOENT when the peer is gone. For a hosted
    session (hostlen > 0) the first hostlen bytes of rid route to the host
    and the rest goes last, as the slot frame. */
static int
s_send3 (broker_t *self, const uint8_t *rid, size_t ridlen, size_t hostlen,
         int cmd, const void *body, size_t len)
{
    size_t route = hostlen ? hostlen : ridlen;
    if (zmq_send (self->router, rid, route, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return errno == EAGAIN ? AAAX_ELIMIT : AAAX_ENOENT;
    const char *name = s_out_names[cmd];
    zmq_send (self->router, name, strlen (name), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (hostlen) {
        zmq_send (self->router, body, len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (self->router, rid + hostlen, ridlen - hostlen, ZMQ_DONTWAIT);
    } else
        zmq_send (self->router, body, len, ZMQ_DONTWAIT);
    return 0;
}

int
broker_send_rid (broker_t *self, broker_session_t *s)
{
    return zmq_send (self->router, s->rid, s->hostlen ? s->hostlen : s->ridlen,
                     ZMQ_SNDMORE | ZMQ_DONTWAIT);
}

void
broker_send_slot (broker_t *self, broker_session_t *s)
{
    if (s->hostlen)
        zmq_send (self->router, s->rid + s->hostlen, s->ridlen - s->hostlen,
                  ZMQ_DONTWAIT);
}

void
broker_mark_dead (broker_t *self, broker_session_t *s)
{
    if (s->dead)
        return;
    s->dead = true;
    s->dead_next = self->dead_list;
    self->dead_list = s;
}

/*  The list of sessions with queued output: only they are retried. */
static void
s_blocked_add (broker_t *self, broker_session_t *s)
{
    s->blk_prev = NULL;
    s->blk_next = self->blocked;
    if (self->blocked)
        self->blocked->blk_prev = s;
    self->blocked = s;
}

static void
s_blocked_remove (broker_t *self, broker_session_t *s)
{
    if (s->blk_prev)
        s->blk_prev->blk_next = s->blk_next;
    else if (self->blocked == s)
        self->blocked = s->blk_next;
    if (s->blk_next)
        s->blk_next->blk_prev = s->blk_prev;
    s->blk_prev = s->blk_next = NULL;
}

static bool
s_outq_push (broker_t *self, broker_session_t *s, int cmd, const void *body,
             size_t len)
{
    broker_out_t *o = (broker_out_t *) malloc (sizeof *o + len);
    if (!o)
        return false;
    o->next = NULL;
    o->cmd = (uint8_t) cmd;
    o->len = (uint32_t) len;
    memcpy (o->body, body, len);
    if (s->outq_tail)
        s->outq_tail->next = o;
    else {
        s->outq_head = o;
        s_blocked_add (self, s);
    }
    s->outq_tail = o;
    s->outq_len++;
    return true;
}

static void
s_outq_free (broker_t *self, broker_session_t *s)
{
    if (s->outq_head)
        s_blocked_remove (self, s);
    while (s->outq_head) {
        broker_out_t *o = s->outq_head;
        s->outq_head = o->next;
        free (o);
    }
    s->outq_tail = NULL;
    s->outq_len = 0;
}

/*  Sends what waits in s's overflow queue; stops at a full pipe. */
static void
s_outq_flush (broker_t *self, broker_session_t *s)
{
    while (s->outq_head && !s->dead) {
        broker_out_t *o = s->outq_head;
        int rc = s_send3 (self, s->rid, s->ridlen, s->hostlen, o->cmd, o->body,
                          o->len);
        if (rc == AAAX_ELIMIT)
            return;
        if (rc == AAAX_ENOENT) {
            broker_mark_dead (self, s);
            return;
        }
        s->outq_head = o->next;
        if (!s->outq_head) {
            s->outq_tail = NULL;
            s_blocked_remove (self, s);
        }
        s->outq_len--;
        s->msgs_out++;
        free (o);
    }
}

void
broker_send_ctl (broker_t *self, const uint8_t *rid, size_t ridlen,
                 size_t hostlen, broker_session_t *session, int cmd,
                 const void *body, size_t len)
{
    if (!session) {
        /*  Not docked: nothing to queue against; a peer that does not read
            its replies loses them. */
        s_send3 (self, rid, ridlen, hostlen, cmd, body, len);
        return;
    }
    if (session->dead)
        return;
    if (!session->outq_head) {
        int rc = s_send3 (self, rid, ridlen, hostlen, cmd, body, len);
        if (rc == 0) {
            session->msgs_out++;
            return;
        }
        if (rc == AAAX_ENOENT) {
            broker_mark_dead (self, session);
            return;
        }
    }
    if (session->outq_len >= BROKER_OUTQ_MAX
        || !s_outq_push (self, session, cmd, body, len)) {
        zsys_warning ("broker: %s does not read its replies; undocking it",
                      session->sys->id);
        broker_mark_dead (self, session);
    }
}

msgpack_packer *
broker_begin (broker_t *self, broker_rq_t *rq, uint32_t n, msgpack_packer *pk)
{
    chan_buf_reset (&self->out);
    chan_buf_packer (&self->out, pk);
    msgpack_pack_map (pk, n);
    chan_pack_str (pk, "req", 3);
    if (rq->req.has_req)
        msgpack_pack_uint64 (pk, rq->req.req);
    else
        msgpack_pack_nil (pk);
    return pk;
}

/*  Pending reply record:
    [u64 batch][u8 cmd][u8 ridlen][u32 len][u8 hostlen][rid][body] */
#define S_PENDING_HDR 15
static void
s_pending_push (broker_t *self, uint64_t batch, int cmd, const uint8_t *rid,
                size_t ridlen, size_t hostlen, const void *body, size_t len)
{
    uint8_t hdr[S_PENDING_HDR];
    memcpy (hdr, &batch, 8);
    hdr[8] = (uint8_t) cmd;
    hdr[9] = (uint8_t) ridlen;
    uint32_t l = (uint32_t) len;
    memcpy (hdr + 10, &l, 4);
    hdr[14] = (uint8_t) hostlen;
    chan_buf_t *p = &self->pending;
    if (chan_buf_reserve (p, sizeof hdr + ridlen + len) != 0) {
        zsys_error ("broker: no memory for a pending reply");
        return;
    }
    chan_buf_append (p, hdr, sizeof hdr);
    chan_buf_append (p, rid, ridlen);
    chan_buf_append (p, body, len);
}

void
broker_reply (broker_t *self, broker_rq_t *rq, int cmd, bool durable)
{
    if (self->out.oom) {
        broker_error (self, rq, 500, "out of memory");
        return;
    }
    if (durable) {
        uint64_t horizon = hal_store_horizon (self->store);
        if (horizon > hal_store_committed (self->store)) {
            hal_store_note_waiter (self->store, (uintptr_t) rq->session);
            s_pending_push (self, horizon, cmd, rq->rid, rq->ridlen,
                            rq->hostlen, self->out.data, self->out.len);
            return;
        }
    }
    broker_send_ctl (self, rq->rid, rq->ridlen, rq->hostlen, rq->session, cmd,
                     self->out.data, self->out.len);
}

void
broker_error (broker_t *self, broker_rq_t *rq, int code, const char *reason)
{
    msgpack_packer pk;
    broker_begin (self, rq, 3, &pk);
    chan_pack_str (&pk, "code", 4);
    msgpack_pack_int (&pk, code);
    chan_pack_str (&pk, "reason", 6);
    chan_pack_cstr (&pk, reason);
    self->errors++;
    broker_send_ctl (self, rq->rid, rq->ridlen, rq->hostlen, rq->session,
                     OUT_ERROR, self->out.data, self->out.len);
}

/*  Releases replies whose batch is committed (status: that batch's). */
static void
s_release (broker_t *self, uint64_t batch, int status)
{
    chan_buf_t *p = &self->pending;
    while (p->len - self->pending_off >= S_PENDING_HDR) {
        uint8_t *r = p->data + self->pending_off;
        uint64_t b;
        uint32_t len;
        memcpy (&b, r, 8);
        if (b > batch)
            break;
        int cmd = r[8];
        size_t ridlen = r[9];
        memcpy (&len, r + 10, 4);
        size_t hostlen = r[14];
        const uint8_t *rid = r + S_PENDING_HDR;
        const uint8_t *body = rid + ridlen;
        broker_session_t *s = broker_session_find (self, rid, ridlen);
        if (status == 0)
            broker_send_ctl (self, rid, ridlen, hostlen, s, cmd, body, len);
        else {
            /*  The commit failed: the change is not on disk. Answer 500 with
                the request's req. */
            broker_rq_t rq;
            memset (&rq, 0, sizeof rq);
            rq.rid = rid;
            rq.ridlen = ridlen;
            rq.hostlen = (uint8_t) hostlen;
            rq.session = s;
            rq.req.has_req = chan_req_peek_req (body, len, &rq.req.req);
            char reason[160];
            snprintf (reason, sizeof reason,
                      "store: commit failed (%s); the "
                      "change is not durable",
                      aaax_strerror (status));
            broker_error (self, &rq, 500, reason);
        }
        self->pending_off += S_PENDING_HDR + ridlen + len;
    }
    if (self->pending_off == p->len) {
        chan_buf_reset (p);
        self->pending_off = 0;
    } else if (self->pending_off > (1u << 20)
               && self->pending_off * 2 > p->len) {
        memmove (p->data, p->data + self->pending_off,
                 p->len - self->pending_off);
        p->len -= self->pending_off;
        self->pending_off = 0;
    }
}

static void
s_reap (broker_t *self, int timeout_ms)
{
    uint64_t no;
    int status;
    while (hal_store_reap (self->store, timeout_ms, &no, &status) == 0) {
        if (status != 0 && !self->store_failed) {
            zsys_error ("broker: store commit failed: kernel degraded");
            self->store_failed = true;
        } else if (status == 0 && self->store_failed) {
            zsys_info ("broker: store commits again: kernel running");
            self->store_failed = false;
        }
        if (self->state == BROKER_RUNNING && self->store_failed)
            self->state = BROKER_DEGRADED;
        else if (self->state == BROKER_DEGRADED && !self->store_failed)
            self->state = BROKER_RUNNING;
        s_release (self, no, status);
        /*  Keep the writer busy: hand it the next batch at once. */
        hal_store_kick (self->store);
        timeout_ms = 0;
    }
}

/*  ---- sessions ------------------------------------------------------- */

static void
s_lru_unlink (broker_t *self, broker_session_t *s)
{
    if (s->lru_prev)
        s->lru_prev->lru_next = s->lru_next;
    else if (self->lru_head == s)
        self->lru_head = s->lru_next;
    if (s->lru_next)
        s->lru_next->lru_prev = s->lru_prev;
    else if (self->lru_tail == s)
        self->lru_tail = s->lru_prev;
    s->lru_prev = s->lru_next = NULL;
}

static void
s_lru_append (broker_t *self, broker_session_t *s)
{
    s->lru_prev = self->lru_tail;
    s->lru_next = NULL;
    if (self->lru_tail)
        self->lru_tail->lru_next = s;
    else
        self->lru_head = s;
    self->lru_tail = s;
}

void
broker_grants_clear (broker_session_t *s)
{
    for (size_t i = 0; s->grants.mask && i <= s->grants.mask; i++)
        if (s->grants.keys[i])
            free (s->grants.vals[i]);
    chan_map_fini (&s->grants);
    s->nrights = 0;
}

void
broker_touch (broker_t *self, broker_session_t *s, int64_t now)
{
    s->last_active = now;
    if (self->lru_tail != s) {
        s_lru_unlink (self, s);
        s_lru_append (self, s);
    }
}

static void
s_waiter_unlink (broker_t *self, broker_waiter_t *w)
{
    broker_chan_t *ch = w->chan;
    if (w->prev)
        w->prev->next = w->next;
    else
        ch->wait_head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        ch->wait_tail = w->prev;
    broker_session_t *s = w->session;
    if (w->sprev)
        w->sprev->snext = w->snext;
    else
        s->waiters = w->snext;
    if (w->snext)
        w->snext->sprev = w->sprev;
    s->nwaiters--;
    chan_heap_remove (&self->waiter_heap, &w->node);
}

/*  The request a long-poll waiter will answer. */
static void
s_waiter_rq (const broker_waiter_t *w, broker_rq_t *rq)
{
    memset (rq, 0, sizeof *rq);
    rq->rid = w->session->rid;
    rq->ridlen = w->session->ridlen;
    rq->hostlen = w->session->hostlen;
    rq->session = w->session;
    rq->req.has_req = true;
    rq->req.req = w->req;
}

/*  Answers a waiter with whatever its queue has now (possibly nothing) and
    frees it. */
static void
s_waiter_finish (broker_t *self, broker_waiter_t *w, int64_t now)
{
    broker_session_t *s = w->session;
    broker_chan_t *ch = w->chan;
    broker_rq_t rq;
    s_waiter_rq (w, &rq);
    uint32_t max = w->max, lease = w->lease_ms;
    s_waiter_unlink (self, w);
    free (w);
    broker_claim_reply (self, &rq, ch, s, s->sys->paused ? 0 : max, lease, now,
                        false);
    /*  The session was live while it waited. */
    broker_touch (self, s, now);
}

void
broker_serve_waiters (broker_t *self, broker_chan_t *ch, int64_t now)
{
    while (ch->wait_head && ch->queue && chan_queue_ready (ch->queue) > 0) {
        broker_waiter_t *w = ch->wait_head;
        if (w->session->sys->paused || w->session->dead) {
            /*  A paused waiter keeps its place but gets nothing now; move
                on to the next one. */
            broker_waiter_t *next = w->next;
            bool any = false;
            for (broker_waiter_t *x = next; x; x = x->next)
                if (!x->session->sys->paused && !x->session->dead) {
                    any = true;
                    w = x;
                    break;
                }
            if (!any)
                return;
        }
        s_waiter_finish (self, w, now);
    }
}

static void
s_ready_cb (void *arg, chan_queue_t *q)
{
    broker_t *self = (broker_t *) arg;
    broker_chan_t *ch = broker_chan_find (self, chan_queue_name (q));
    if (ch) {
        broker_queue_due (self, ch);
        broker_serve_waiters (self, ch, hal_clock_mono_ms ());
    }
    chan_queue_t *dlq = chan_queue_dlq (q);
    if (dlq && (ch = broker_chan_find (self, chan_queue_name (dlq))))
        broker_serve_waiters (self, ch, hal_clock_mono_ms ());
}

void
broker_queue_due (broker_t *self, broker_chan_t *ch)
{
    int64_t d = chan_queue_next_due (ch->queue);
    if (d == INT64_MAX)
        return; /* a stale earlier entry only wakes the loop once for nothing */
    if (chan_heap_contains (&ch->due)) {
        if (ch->due.key <= d)
            return;
        chan_heap_remove (&self->queue_heap, &ch->due);
    }
    if (chan_heap_push (&self->queue_heap, &ch->due, d) != 0)
        zsys_error ("broker: no memory to schedule %s", ch->name);
}

void
broker_send_mbox_msg (broker_t *self, broker_sys_t *sys, const void *pairs,
                      size_t len, uint32_t attempt)
{
    broker_session_t *s = sys->session;
    chan_buf_t *b = &self->out;
    chan_buf_reset (b);
    msgpack_packer pk;
    chan_buf_packer (b, &pk);
    msgpack_pack_map (&pk, 2);
    chan_pack_str (&pk, "sub", 3);
    msgpack_pack_str (&pk, 1 + strlen (sys->id));
    msgpack_pack_str_body (&pk, "@", 1);
    msgpack_pack_str_body (&pk, sys->id, strlen (sys->id));
    chan_pack_str (&pk, "msg", 3);
    chan_env_map (b, pairs, len, attempt);
    if (!b->oom)
        broker_send_ctl (self, s->rid, s->ridlen, s->hostlen, s, OUT_MSG,
                         b->data, b->len);
}

void
broker_mbox_pump (broker_t *self, broker_sys_t *sys)
{
    broker_session_t *s = sys->session;
    if (!s || s->dead || sys->paused)
        return;
    chan_mmsg_t *m;
    while ((m = chan_mbox_next (&sys->mbox, self->cfg->mailbox_window))) {
        size_t len;
        const uint8_t *pairs = chan_mmsg_pairs (m, &len);
        broker_send_mbox_msg (self, sys, pairs, len, chan_mmsg_attempt (m));
        if (s->dead)
            return;
    }
}

void
broker_undock (broker_t *self, broker_session_t *s, const char *reason,
               bool keep_leases)
{
    int64_t now = hal_clock_mono_ms (), wall = hal_clock_wall_ms ();
    broker_sys_t *sys = s->sys;
    /*  A host takes its hosted sessions with it; a hosted session leaves
        its host's list. */
    while (s->hosted) {
        char why[160];
        snprintf (why, sizeof why, "its app host %s undocked (%s)", sys->id,
                  reason);
        broker_undock (self, s->hosted, why, keep_leases);
    }
    if (s->host) {
        if (s->hosted_prev)
            s->hosted_prev->hosted_next = s->hosted_next;
        else
            s->host->hosted = s->hosted_next;
        if (s->hosted_next)
            s->hosted_next->hosted_prev = s->hosted_prev;
        s->host = NULL;
        s->hosted_prev = s->hosted_next = NULL;
        self->nhosted--;
    }
    zsys_info ("broker: %s undocked (%s)", sys->id, reason);
    if (!s->host && !s->kernel && s->ridlen <= BROKER_ENDED_RID) {
        size_t i = self->ended_next++ % BROKER_ENDED_MAX;
        memcpy (self->ended[i].rid, s->rid, s->ridlen);
        self->ended[i].ridlen = s->ridlen;
        snprintf (self->ended[i].reason, sizeof self->ended[i].reason, "%s",
                  reason);
    }
    /*  Every capability of the system ends with its session; the
        capability actor hears it on kernel.systems. */
    broker_caps_drop (self, sys);
    broker_event (self, "undock", s, reason);
    if (!s->kernel)
        broker_audit (self, "undock", sys->id, NULL, "ok", reason);
    free (s->hello_chans);
    s->hello_chans = NULL;
    /*  Long-poll CLAIMs end with what there is: nothing, as the session is
        leaving. */
    while (s->waiters) {
        broker_waiter_t *w = s->waiters;
        broker_rq_t rq;
        s_waiter_rq (w, &rq);
        broker_chan_t *ch = w->chan;
        s_waiter_unlink (self, w);
        free (w);
        if (!s->dead)
            broker_claim_reply (self, &rq, ch, s, 0, 0, now, false);
    }
    for (size_t i = 0; i < s->nsubs; i++) {
        chan_bcast_unsubscribe (s->subs[i]);
        free (s->subs[i]);
    }
    free (s->subs);
    s->subs = NULL;
    s->nsubs = 0;
    chan_mbox_undock (&sys->mbox, self->store, sys->id);
    if (!keep_leases)
        chan_holder_release (&sys->holder, now, wall, s_ready_cb, self);
    broker_grants_clear (s);
    s_outq_free (self, s);
    sys->session = NULL;
    sys->last_seen = wall;
    s_sys_record (self, sys);
    s_lru_unlink (self, s);
    s_ridkey_t k;
    s_ridkey (&k, s->rid, s->ridlen);
    zhashx_delete (self->sessions, &k);
    self->nsessions--;
    if (s->kernel)
        self->nkernel--;
    if (s->dead) {
        /*  Still on the dead list: leave it as a tombstone the list walk
            frees. */
        s->sys = NULL;
        return;
    }
    free (s);
}

const char *
broker_ended_reason (const broker_t *self, const uint8_t *rid, size_t ridlen)
{
    if (ridlen > BROKER_ENDED_RID)
        return NULL;
    /*  Newest first: a routing id is not reused by libzmq, but a client
        may choose its own. */
    size_t n = self->ended_next < BROKER_ENDED_MAX ? self->ended_next
                                                   : BROKER_ENDED_MAX;
    for (size_t k = 1; k <= n; k++) {
        size_t i = (self->ended_next - k) % BROKER_ENDED_MAX;
        if (self->ended[i].ridlen == ridlen
            && memcmp (self->ended[i].rid, rid, ridlen) == 0)
            return self->ended[i].reason;
    }
    return NULL;
}

void
broker_session_rebind (broker_t *self, broker_session_t *s, const uint8_t *rid,
                       size_t ridlen)
{
    /*  What was on its way to the old connection is lost with it: long
        polls end unanswered (the client asks again), queued output is
        dropped, and mailbox messages in flight are due again. */
    while (s->waiters) {
        broker_waiter_t *w = s->waiters;
        s_waiter_unlink (self, w);
        free (w);
    }
    s_outq_free (self, s);
    chan_mbox_undock (&s->sys->mbox, self->store, s->sys->id);
    s_ridkey_t k;
    s_ridkey (&k, s->rid, s->ridlen);
    zhashx_delete (self->sessions, &k);
    memcpy (s->rid, rid, ridlen);
    s->ridlen = (uint8_t) ridlen;
    s_ridkey (&k, s->rid, s->ridlen);
    zhashx_insert (self->sessions, &k, s);
}

static void
s_reap_dead (broker_t *self)
{
    while (self->dead_list) {
        broker_session_t *s = self->dead_list;
        self->dead_list = s->dead_next;
        if (s->sys)
            broker_undock (self, s, "connection gone", false);
        free (s);
    }
}

/*  ---- deadlines ------------------------------------------------------ */

static int64_t
s_next_deadline (broker_t *self)
{
    int64_t next = INT64_MAX;
    chan_heap_node_t *w = chan_heap_top (&self->waiter_heap);
    if (w)
        next = w->key;
    chan_heap_node_t *q = chan_heap_top (&self->queue_heap);
    if (q && q->key < next)
        next = q->key;
    if (self->lru_head) {
        int64_t d = self->lru_head->last_active
                    + 3 * (int64_t) self->cfg->heartbeat_ms + 1;
        if (d < next)
            next = d;
    }
    if (self->next_housekeeping < next)
        next = self->next_housekeeping;
    if (self->cap_next_expiry != INT64_MAX) {
        int64_t d = hal_clock_mono_ms ()
                    + (self->cap_next_expiry - hal_clock_wall_ms ());
        if (d < next)
            next = d;
    }
    int64_t kick = hal_store_kick_at (self->store);
    if (kick != INT64_MAX && (kick + 999) / 1000 < next)
        next = (kick + 999) / 1000;
    return next;
}

static void
s_housekeeping (broker_t *self, int64_t now, int64_t wall)
{
    chan_idem_expire (self->idem, wall);
    policy_rate_gc (self->policy, now);
    /*  Forget systems idle past forget_after_s with nothing kept for them
        (capabilities included: self->caps points at their holder). */
    int64_t horizon = wall - (int64_t) self->cfg->forget_after_s * 1000;
    zlistx_t *gone = zlistx_new ();
    for (broker_sys_t *sys = (broker_sys_t *) zhashx_first (self->systems);
         sys && gone; sys = (broker_sys_t *) zhashx_next (self->systems))
        if (!sys->session && sys->last_seen < horizon && sys->mbox.count == 0
            && sys->holder.count == 0 && !sys->paused && !sys->caps
            && !sys->app_state[0])
            zlistx_add_end (gone, sys->id);
    for (char *id = gone ? (char *) zlistx_first (gone) : NULL; id;
         id = (char *) zlistx_next (gone)) {
        /*  Grants are keyed by the record's address: drop those on it, or a
            system later allocated there would inherit them. */
        broker_sys_t *sys = broker_sys_find (self, id);
        for (broker_session_t *s = self->lru_head; s; s = s->lru_next) {
            broker_grant_t *g = (broker_grant_t *) chan_map_del (
                &s->grants, (uint64_t) (uintptr_t) sys);
            if (g && (g->rights & R_WRITE))
                s->nrights--;
            free (g);
        }
        hal_store_del (self->store, HAL_DB_SYSTEMS, id, strlen (id));
        zsys_info ("broker: forgetting idle system %s", id);
        zhashx_delete (self->systems, id);
    }
    zlistx_destroy (&gone);
    /*  The authorized keys, in case inotify missed a change. */
    broker_curve_refresh (self, false);
    self->next_housekeeping = now + 1000;
}

static void
s_timers (broker_t *self, int64_t now)
{
    int64_t wall = hal_clock_wall_ms ();
    chan_heap_node_t *top;
    /*  Queues whose earliest lease or delay is due: expire, then serve the
        long-polls of the queue and of its dead-letter queue. */
    while ((top = chan_heap_top (&self->queue_heap)) && top->key <= now) {
        broker_chan_t *ch =
            (broker_chan_t *) ((char *) top - offsetof (broker_chan_t, due));
        chan_heap_remove (&self->queue_heap, top);
        chan_queue_tick (ch->queue, now, wall);
        int64_t d = chan_queue_next_due (ch->queue);
        if (d != INT64_MAX)
            chan_heap_push (&self->queue_heap, &ch->due, d);
        broker_serve_waiters (self, ch, now);
        chan_queue_t *dlq = chan_queue_dlq (ch->queue);
        broker_chan_t *dch =
            dlq ? broker_chan_find (self, chan_queue_name (dlq)) : NULL;
        if (dch)
            broker_serve_waiters (self, dch, now);
    }
    while ((top = chan_heap_top (&self->waiter_heap)) && top->key <= now)
        s_waiter_finish (self, (broker_waiter_t *) top, now);
    /*  Silent sessions: 3 heartbeat periods without a word. */
    int64_t limit = now - 3 * (int64_t) self->cfg->heartbeat_ms;
    while (self->lru_head && self->lru_head->last_active < limit) {
        broker_session_t *s = self->lru_head;
        /*  Kernel actors do not time out; hosted sessions live as long
            as their host. */
        if (s->kernel || s->nwaiters || s->host) {
            broker_touch (self, s, now);
            continue;
        }
        broker_undock (self, s, "silent for 3 heartbeat periods", false);
    }
    broker_caps_expire (self, wall);
    if (now >= self->next_housekeeping)
        s_housekeeping (self, now, wall);
}

/*  ---- the tap -------------------------------------------------------- */

static void
s_tap_read (broker_t *self)
{
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    while (zmq_msg_recv (&msg, self->tap, ZMQ_DONTWAIT) >= 0) {
        const uint8_t *d = (const uint8_t *) zmq_msg_data (&msg);
        size_t n = zmq_msg_size (&msg);
        if (n >= 1 && (d[0] == 0 || d[0] == 1)) {
            char topic[AAAX_MAX_NAME + 2];
            size_t tl = n - 1 < sizeof topic - 1 ? n - 1 : sizeof topic - 1;
            memcpy (topic, d + 1, tl);
            topic[tl] = 0;
            if (d[0] == 1)
                zhashx_update (self->tap_topics, topic, self);
            else
                zhashx_delete (self->tap_topics, topic);
            self->tap_subs = zhashx_size (self->tap_topics);
        }
        zmq_msg_close (&msg);
        zmq_msg_init (&msg);
    }
    zmq_msg_close (&msg);
}

/*  ---- reading requests ---------------------------------------------- */

/*  Reads one whole message from the ROUTER and serves it. Returns false when
    nothing was waiting. */
static bool
s_serve_one (broker_t *self, int64_t now)
{
    zmq_msg_t parts[4];
    int nparts = 0, total = 0;
    bool oversize = false;
    size_t max = self->cfg->max_frame;
    for (;;) {
        zmq_msg_t *m = &parts[nparts < 4 ? nparts : 3];
        if (nparts >= 4)
            zmq_msg_close (m);
        zmq_msg_init (m);
        if (zmq_msg_recv (m, self->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (m);
            if (total == 0)
                return false;
            break; /* cannot happen: parts arrive together */
        }
        if (total > 0 && zmq_msg_size (m) > max)
            oversize = true;
        total++;
        if (nparts < 4)
            nparts++;
        if (!zmq_msg_more (m))
            break;
    }
    self->requests++;
    broker_rq_t rq;
    memset (&rq, 0, sizeof rq);
    rq.rid = (const uint8_t *) zmq_msg_data (&parts[0]);
    rq.ridlen = zmq_msg_size (&parts[0]);
    rq.session = broker_session_find (self, rq.rid, rq.ridlen);
    if (rq.session && rq.session->curve_key[0]) {
        /*  A CURVE session is its key's: a connection that reuses the
            routing id (ZMQ_ROUTING_ID is the client's choice) without the
            key is not it. */
        const char *uid = zmq_msg_gets (&parts[nparts > 1 ? 1 : 0], "User-Id");
        if (!uid || strcmp (uid, rq.session->curve_key) != 0)
            rq.session = NULL;
    }
    if (rq.session) {
        rq.session->msgs_in++;
        broker_touch (self, rq.session, now);
    }
    /*  An app host (a kernel session) speaks for its hosted sessions with
        a third frame, the slot: the session is the host's routing id and
        the slot together. Any other connection must send two frames. */
    uint8_t vrid[BROKER_RID_MAX];
    if (total == 4 && rq.session && rq.session->kernel && !rq.session->host
        && zmq_msg_size (&parts[3]) == BROKER_SLOT_LEN
        && rq.ridlen + BROKER_SLOT_LEN <= BROKER_RID_MAX) {
        memcpy (vrid, rq.rid, rq.ridlen);
        memcpy (vrid + rq.ridlen, zmq_msg_data (&parts[3]), BROKER_SLOT_LEN);
        rq.hostlen = (uint8_t) rq.ridlen;
        rq.rid = vrid;
        rq.ridlen += BROKER_SLOT_LEN;
        rq.session = broker_session_find (self, rq.rid, rq.ridlen);
        if (rq.session)
            rq.session->msgs_in++;
        total = 3;
    }
    if (oversize) {
        char reason[96];
        snprintf (reason, sizeof reason,
                  "frame larger than the maximum of "
                  "%zu bytes",
                  max);
        if (total == 3)
            rq.req.has_req =
                chan_req_peek_req (zmq_msg_data (&parts[2]),
                                   zmq_msg_size (&parts[2]), &rq.req.req);
        broker_error (self, &rq, 413, reason);
    } else if (total != 3) {
        char reason[96];
        snprintf (reason, sizeof reason,
                  "expected 2 frames [COMMAND, BODY], "
                  "got %d",
                  total - 1);
        broker_error (self, &rq, 400, reason);
    } else {
        char why[160];
        if (chan_req_decode (&rq.req, zmq_msg_data (&parts[1]),
                             zmq_msg_size (&parts[1]), zmq_msg_data (&parts[2]),
                             zmq_msg_size (&parts[2]), why, sizeof why)
            != 0)
            broker_error (self, &rq, 400, why);
        else {
            if (rq.req.cmd == CHAN_CMD_HELLO) {
                rq.peer = zmq_msg_gets (&parts[1], "Peer-Address");
                const char *uid = zmq_msg_gets (&parts[1], "User-Id");
                if (uid && strlen (uid) == HAL_CURVE_Z85_LEN)
                    rq.key = uid;
            }
            broker_dispatch (self, &rq, now);
        }
    }
    for (int i = 0; i < nparts; i++)
        zmq_msg_close (&parts[i]);
    return true;
}

/*  ---- lifecycle ------------------------------------------------------ */

static void
s_tokens (broker_t *self)
{
    uint8_t raw[32];
    randombytes_buf (raw, sizeof raw);
    sodium_bin2hex (self->session_token, sizeof self->session_token, raw,
                    sizeof raw);
    randombytes_buf (raw, sizeof raw);
    sodium_bin2hex (self->kernel_token, 65, raw, sizeof raw);
    sodium_memzero (raw, sizeof raw);
}

static int
s_bind (broker_t *self, const char *ep, char *err, size_t errlen)
{
    if (zmq_bind (self->router, ep) != 0) {
        snprintf (err, errlen, "cannot bind %s: %s", ep, zmq_strerror (errno));
        return AAAX_EIO;
    }
    zsys_info ("broker: serving %s%s", ep,
               broker_config_endpoint_curve (self->cfg, ep) ? " (CURVE)" : "");
    return 0;
}

broker_t *
broker_new (broker_config_t **cfg_p, char *err, size_t errlen)
{
    broker_config_t *cfg = *cfg_p;
    if (broker_config_check (cfg, err, errlen) != 0)
        return NULL;
    if (sodium_init () < 0) {
        snprintf (err, errlen, "libsodium cannot start");
        return NULL;
    }
    broker_t *self = (broker_t *) calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->lock_fd = -1;
    self->inotify_fd = -1;
    self->cfg = cfg;
    self->boot_mono = hal_clock_mono_ms ();
    self->state = BROKER_BOOTING;
    chan_buf_init (&self->pending);
    chan_buf_init (&self->out);
    chan_buf_init (&self->scratch);
    chan_heap_init (&self->waiter_heap);
    chan_heap_init (&self->queue_heap);
    self->kernel_token = (char *) sodium_malloc (65);
    self->entries =
        (struct broker_entry *) calloc (AAAX_MAX_BATCH, sizeof *self->entries);
    self->claim_buf =
        (chan_qmsg_t **) calloc (AAAX_MAX_CLAIM, sizeof (chan_qmsg_t *));
    if (!self->kernel_token || !self->claim_buf || !self->entries) {
        snprintf (err, errlen, "out of memory");
        goto err_free;
    }

    if (hal_fs_absolute (cfg->data_dir, self->data_dir, sizeof self->data_dir)
        != 0) {
        snprintf (err, errlen, "data directory path too long");
        goto err_free;
    }
    if (hal_fs_prepare_dir (self->data_dir, err, errlen) != 0)
        goto err_free;
    snprintf (self->ipc_path, sizeof self->ipc_path, "%s/aaax.sock",
              self->data_dir);
    if (hal_fs_ipc_prepare (self->ipc_path, err, errlen) != 0)
        goto err_free;
    char path[4300];
    snprintf (path, sizeof path, "%s/aaaxd.lock", self->data_dir);
    if (hal_fs_lock (path, &self->lock_fd, err, errlen) != 0)
        goto err_free;

    snprintf (path, sizeof path, "%s/store", self->data_dir);
    self->store =
        hal_store_open (path, (size_t) cfg->store_map_mb << 20, err, errlen);
    if (!self->store)
        goto err_free;

    self->channels = zhashx_new ();
    self->systems = zhashx_new ();
    self->apps = zhashx_new ();
    self->sessions = zhashx_new ();
    self->tap_topics = zhashx_new ();
    self->idem = chan_idem_new (self->store, cfg->idempotency_ttl_s);
    if (!self->channels || !self->systems || !self->sessions
        || !self->tap_topics || !self->idem) {
        snprintf (err, errlen, "out of memory");
        goto err_free;
    }
    zhashx_set_destructor (self->channels, s_chan_free);
    zhashx_set_destructor (self->systems, s_sys_free);
    zhashx_set_key_hasher (self->sessions, s_rid_hash);
    zhashx_set_key_comparator (self->sessions, s_rid_cmp);
    zhashx_set_key_duplicator (self->sessions, s_rid_dup);
    zhashx_set_key_destructor (self->sessions, s_rid_free);

    self->caps = zhashx_new ();
    self->shared_policy = act_policy_new ();
    if (!self->caps || !self->shared_policy) {
        snprintf (err, errlen, "out of memory");
        goto err_free;
    }
    zhashx_set_destructor (self->caps, NULL);
    self->cap_next_expiry = INT64_MAX;
    self->keys = hal_keys_open (self->data_dir, err, errlen);
    if (!self->keys)
        goto err_free;
    self->audit =
        hal_audit_open (self->data_dir, (size_t) cfg->audit_map_mb << 20,
                        self->keys, cfg->audit_checkpoint_every, err, errlen);
    if (!self->audit)
        goto err_free;

    self->policy = cfg->policy;
    snprintf (self->policy_source, sizeof self->policy_source, "%s",
              broker_config_policy_source (cfg));
    if (broker_boot_channels (self, err, errlen) != 0
        || broker_boot_restore (self, err, errlen) != 0)
        goto err_free;
    broker_boot_caps (self);
    for (broker_chan_t *ch = (broker_chan_t *) zhashx_first (self->channels);
         ch; ch = (broker_chan_t *) zhashx_next (self->channels))
        if (ch->queue)
            broker_queue_due (self, ch);
    if (hal_store_commit_sync (self->store) != 0) {
        snprintf (err, errlen, "cannot write to the store in %s/store",
                  self->data_dir);
        goto err_free;
    }

    s_tokens (self);
    snprintf (path, sizeof path, "%s/session.token", self->data_dir);
    if (hal_fs_write_secret (path, self->session_token, 64, err, errlen) != 0)
        goto err_free;

    self->ctx = zsys_init ();
    if (!self->ctx) {
        snprintf (err, errlen, "cannot start ZeroMQ");
        goto err_free;
    }
    if (broker_curve_init (self, err, errlen) != 0)
        goto err_free;
    self->router = zmq_socket (self->ctx, ZMQ_ROUTER);
    if (!self->router) {
        snprintf (err, errlen, "cannot create a ROUTER socket");
        goto err_free;
    }
    int one = 1, linger = 1000;
    int hwm = (int) cfg->sndhwm;
    int64_t maxmsg = (int64_t) cfg->max_frame * 16 + 65536;
    zmq_setsockopt (self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt (self->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    {
        /*  ZMTP heartbeats close a connection whose peer went away without
            a word (a cable pulled, a host gone): libzmq frees it, and the
            session, silent, is undocked after 3 periods anyway. */
        int ivl = (int) cfg->heartbeat_ms, hbt = 3 * (int) cfg->heartbeat_ms;
        zmq_setsockopt (self->router, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt (self->router, ZMQ_HEARTBEAT_TIMEOUT, &hbt, sizeof hbt);
        zmq_setsockopt (self->router, ZMQ_HEARTBEAT_TTL, &hbt, sizeof hbt);
    }
    for (size_t i = 0; i < cfg->nbinds; i++) {
        broker_curve_bind_opts (self, self->router, cfg->binds[i], "aaax");
        if (s_bind (self, cfg->binds[i], err, errlen) != 0)
            goto err_free;
    }
    char ep[4300];
    snprintf (ep, sizeof ep, "ipc://%s", self->ipc_path);
    broker_curve_bind_opts (self, self->router, ep, "aaax");
    if (s_bind (self, ep, err, errlen) != 0)
        goto err_free;
    chmod (self->ipc_path, 0600);
    if (s_bind (self, "inproc://aaax", err, errlen) != 0)
        goto err_free;

    if (cfg->tap && *cfg->tap) {
        self->tap = zmq_socket (self->ctx, ZMQ_XPUB);
        if (!self->tap) {
            snprintf (err, errlen, "cannot create the tap socket");
            goto err_free;
        }
        zmq_setsockopt (self->tap, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt (self->tap, ZMQ_SNDHWM, &hwm, sizeof hwm);
        broker_curve_bind_opts (self, self->tap, cfg->tap, "aaax-tap");
        if (zmq_bind (self->tap, cfg->tap) != 0) {
            snprintf (err, errlen, "cannot bind the tap %s: %s", cfg->tap,
                      zmq_strerror (errno));
            goto err_free;
        }
        zsys_info ("broker: tap on %s%s", cfg->tap,
                   broker_config_endpoint_curve (cfg, cfg->tap) ? " (CURVE)"
                                                                : "");
    }
    hal_store_set_delay (self->store, cfg->commit_delay_us);
    if (hal_store_start (self->store) != 0) {
        snprintf (err, errlen, "cannot start the store writer");
        goto err_free;
    }
    snprintf (path, sizeof path, "%s/kv", self->data_dir);
    self->kv = hal_kv_open (path, (size_t) cfg->kv_map_mb << 20, err, errlen);
    if (!self->kv)
        goto err_free;
    app_limits_cfg_default (&self->app_limits);
    self->app_limits.memory_kb = cfg->app_memory_kb;
    self->app_limits.memory_max_kb = cfg->app_memory_max_kb;
    self->app_limits.instructions = cfg->app_instructions;
    self->app_limits.instructions_max = cfg->app_instructions_max;
    self->app_limits.files_kb = cfg->app_files_kb;
    self->app_limits.files_max_kb = cfg->app_files_max_kb;
    self->app_limits.kv_kb = cfg->app_kv_kb;
    self->app_limits.kv_max_kb = cfg->app_kv_max_kb;
    self->next_housekeeping = hal_clock_mono_ms () + 1000;
    *cfg_p = NULL;
    return self;

err_free:
    self->cfg = NULL; /* the caller keeps its configuration on failure */
    self->policy = NULL;
    broker_destroy (&self);
    return NULL;
}

void
broker_destroy (broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_t *self = *self_p;
    zactor_destroy (&self->heartbeat);
    for (int i = 3; i >= 0; i--)
        zactor_destroy (&self->actors[i]);
    if (self->sessions) {
        /*  Leases and in-flight marks of live sessions stay as they are in
            the store: the next boot finds everything unacknowledged. */
        zhashx_destroy (&self->sessions);
    }
    if (self->router)
        zmq_close (self->router);
    if (self->tap)
        zmq_close (self->tap);
    broker_curve_destroy (self);
    hal_store_destroy (&self->store);
    /*  The final signed checkpoint goes in when the journal closes. */
    hal_audit_close (&self->audit);
    hal_kv_destroy (&self->kv);
    hal_keys_destroy (&self->keys);
    act_policy_destroy (&self->shared_policy);
    zhashx_destroy (&self->caps);
    /*  The queue heap points into the channels: empty it first. */
    chan_heap_fini (&self->queue_heap);
    zhashx_destroy (&self->channels);
    zhashx_destroy (&self->apps);
    zhashx_destroy (&self->systems);
    zhashx_destroy (&self->tap_topics);
    chan_idem_destroy (&self->idem);
    chan_heap_fini (&self->waiter_heap);
    chan_buf_fini (&self->pending);
    chan_buf_fini (&self->out);
    chan_buf_fini (&self->scratch);
    if (self->ipc_path[0] && self->router)
        unlink (self->ipc_path);
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    sodium_memzero (self->session_token, sizeof self->session_token);
    sodium_free (self->kernel_token);
    free (self->claim_buf);
    free (self->entries);
    broker_config_destroy (&self->cfg);
    free (self);
    *self_p = NULL;
}

const char *
broker_kernel_id (const broker_t *self)
{
    return self->kernel_id;
}

const char *
broker_data_dir (const broker_t *self)
{
    return self->data_dir;
}

/*  At a graceful stop, every delivery not acknowledged counts: leases are
    given back (their attempt recorded, dead-lettered when exhausted) and
    mailbox messages in flight are recorded with their attempt, so the next
    boot delivers them with attempt + 1. */
static void
s_count_deliveries (broker_t *self)
{
    int64_t now = hal_clock_mono_ms (), wall = hal_clock_wall_ms ();
    for (broker_sys_t *sys = (broker_sys_t *) zhashx_first (self->systems); sys;
         sys = (broker_sys_t *) zhashx_next (self->systems)) {
        chan_holder_release (&sys->holder, now, wall, NULL, NULL);
        if (sys->mbox.inflight)
            chan_mbox_undock (&sys->mbox, self->store, sys->id);
    }
}

/*  Frees every session at shutdown (after the loop): nothing is sent. */
static void
s_free_sessions (broker_t *self)
{
    broker_session_t *s = self->lru_head;
    while (s) {
        broker_session_t *next = s->lru_next;
        while (s->waiters) {
            broker_waiter_t *w = s->waiters;
            s_waiter_unlink (self, w);
            free (w);
        }
        for (size_t i = 0; i < s->nsubs; i++) {
            chan_bcast_unsubscribe (s->subs[i]);
            free (s->subs[i]);
        }
        free (s->subs);
        free (s->hello_chans);
        broker_grants_clear (s);
        s_outq_free (self, s);
        if (s->sys) {
            s->sys->session = NULL;
            s->sys->last_seen = hal_clock_wall_ms ();
            s_sys_record (self, s->sys);
        }
        free (s);
        s = next;
    }
    self->lru_head = self->lru_tail = NULL;
    zhashx_purge (self->sessions);
    self->nsessions = 0;
    self->nkernel = 0;
    self->nhosted = 0;
}

int
broker_run (broker_t *self, int sigfd, void *pipe)
{
    broker_policy_announce (self, "boot");
    {
        /*  The module registry's state at boot: no app host in this build
            (apps arrive with it), so no modules. */
        uint8_t snap[64];
        size_t n = 0;
        snap[n++] = 0x82;
        memcpy (snap + n,
                "\xa5"
                "event"
                "\xa8"
                "snapshot",
                15);
        n += 15;
        memcpy (snap + n,
                "\xa7"
                "modules"
                "\x90",
                9);
        n += 9;
        broker_publish (self, "kernel.modules", snap, n);
    }
    self->actx = (act_ctx_t){ self->kernel_token,
                              self->kernel_id,
                              self->data_dir,
                              self->keys,
                              self->audit,
                              self->shared_policy,
                              self->cfg->heartbeat_ms,
                              self->cfg->lifecycle_rate,
                              self->cfg->stop_grace_ms,
                              self->cfg->ask_timeout_s,
                              &self->app_limits,
                              self->cfg->app_workers,
                              (const char *const *) self->cfg->apps,
                              self->cfg->napps,
                              self->kv };
    zactor_fn *fns[4] = { act_capability, act_gate, act_lifecycle, act_loader };
    for (int i = 0; i < 4; i++) {
        self->actors[i] = zactor_new (fns[i], &self->actx);
        if (!self->actors[i])
            zsys_error ("broker: cannot start a kernel actor");
    }
    act_heartbeat_args_t hb = { self->kernel_token, self->cfg->heartbeat_ms };
    self->heartbeat = zactor_new (act_heartbeat, &hb);
    if (!self->heartbeat)
        zsys_error ("broker: cannot start the heartbeat actor");
    /*  Running once the heartbeat actor has docked (see s_hello). */
    if (!self->heartbeat)
        self->state = BROKER_RUNNING;
    zsys_info ("broker: kernel %s starting, data in %s", self->kernel_id,
               self->data_dir);

    zmq_pollitem_t items[8];
    int n = 0;
    int i_router = n;
    items[n++] = (zmq_pollitem_t){ self->router, 0, ZMQ_POLLIN, 0 };
    int i_store = n;
    items[n++] =
        (zmq_pollitem_t){ hal_store_socket (self->store), 0, ZMQ_POLLIN, 0 };
    int i_tap = -1, i_sig = -1, i_pipe = -1, i_hb = -1;
    if (self->tap) {
        i_tap = n;
        items[n++] = (zmq_pollitem_t){ self->tap, 0, ZMQ_POLLIN, 0 };
    }
    if (sigfd >= 0) {
        i_sig = n;
        items[n++] = (zmq_pollitem_t){ NULL, sigfd, ZMQ_POLLIN, 0 };
    }
    if (pipe) {
        i_pipe = n;
        items[n++] = (zmq_pollitem_t){ zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
    }
    int i_zap = -1, i_ino = -1;
    if (self->zap) {
        i_zap = n;
        items[n++] = (zmq_pollitem_t){ self->zap, 0, ZMQ_POLLIN, 0 };
    }
    if (self->inotify_fd >= 0) {
        i_ino = n;
        items[n++] = (zmq_pollitem_t){ NULL, self->inotify_fd, ZMQ_POLLIN, 0 };
    }
    if (self->heartbeat) {
        i_hb = n;
        items[n++] = (zmq_pollitem_t){ zsock_resolve (self->heartbeat), 0,
                                       ZMQ_POLLIN, 0 };
    }
    bool stopping = false, hb_done = self->heartbeat == NULL;
    int64_t spin_until = 0;
    int64_t stop_deadline = 0;

    for (;;) {
        int64_t now = hal_clock_mono_ms ();
        int64_t next = s_next_deadline (self);
        long timeout = next == INT64_MAX ? 1000 : (long) (next - now);
        if (timeout < 0)
            timeout = 0;
        if (timeout > 1000)
            timeout = 1000;
        /*  Sessions with queued output are retried soon. */
        if (self->blocked && timeout > 2)
            timeout = 2;
        if (stopping && timeout > 50)
            timeout = 50;
        /*  Spin, then park: after a turn that did work, look again without
            sleeping for up to spin_us before blocking. Waking a parked
            thread costs tens of microseconds on a virtual machine, and a
            request/reply exchange often brings the next message sooner. */
        int rc = 0;
        if (spin_until > 0 && timeout > 0) {
            while ((rc = zmq_poll (items, n, 0)) == 0
                   && hal_clock_mono_us () < spin_until)
                sched_yield (); /* the I/O thread shares this CPU */
        }
        if (rc == 0)
            rc = zmq_poll (items, n, timeout);
        if (rc < 0 && errno != EINTR) {
            zsys_error ("broker: poll failed: %s", zmq_strerror (errno));
            break;
        }
        now = hal_clock_mono_ms ();
        /*  No spin while the store writer has a commit to make or in
            flight: it shares the core, and its completion wakes the loop
            anyway (spinning then cost the durable work-queue about a
            tenth of its rate). */
        spin_until = rc > 0 && self->cfg->spin_us
                             && !hal_store_busy (self->store)
                             && !hal_store_pending (self->store)
                         ? hal_clock_mono_us () + self->cfg->spin_us
                         : 0;
        if (items[i_store].revents & ZMQ_POLLIN)
            s_reap (self, 0);
        /*  A change of the authorized keys before the requests of this
            turn: a revoked key's next command is refused. */
        if (i_ino >= 0 && (items[i_ino].revents & ZMQ_POLLIN))
            broker_curve_inotify (self);
        if (i_zap >= 0 && (items[i_zap].revents & ZMQ_POLLIN))
            broker_curve_zap (self);
        if (items[i_router].revents & ZMQ_POLLIN) {
            for (int k = 0; k < BROKER_DRAIN_MAX; k++) {
                if (!s_serve_one (self, now))
                    break;
                /*  Start a commit as soon as the writer is free: the batch
                    keeps filling while it runs. */
                if ((k & 63) == 63)
                    hal_store_kick (self->store);
            }
        }
        hal_store_kick (self->store);
        if (i_tap >= 0 && (items[i_tap].revents & ZMQ_POLLIN))
            s_tap_read (self);
        if (i_sig >= 0 && (items[i_sig].revents & ZMQ_POLLIN)) {
            struct signalfd_siginfo si;
            if (read (sigfd, &si, sizeof si) == (ssize_t) sizeof si) {
                if (si.ssi_signo == SIGHUP) {
                    char why[600];
                    zsys_info ("broker: SIGHUP: reloading the policy");
                    broker_policy_reload (self, "SIGHUP", why, sizeof why);
                } else if (!stopping) {
                    zsys_info ("broker: signal %u: shutting down",
                               si.ssi_signo);
                    stopping = true;
                }
            }
        }
        if (i_pipe >= 0 && (items[i_pipe].revents & ZMQ_POLLIN)) {
            char *cmd = zstr_recv (pipe);
            if (cmd && streq (cmd, "$TERM"))
                stopping = true;
            zstr_free (&cmd);
        }
        if (i_hb >= 0 && (items[i_hb].revents & ZMQ_POLLIN)) {
            char *msg = zstr_recv (self->heartbeat);
            if (msg && streq (msg, "DONE"))
                hb_done = true;
            zstr_free (&msg);
        }
        if (stopping && self->state != BROKER_SHUTDOWN) {
            self->state = BROKER_SHUTDOWN;
            hal_store_set_delay (self->store, 0); /* commit what is left now */
            stop_deadline = now + 8000;
            if (self->heartbeat)
                zstr_send (self->heartbeat, "SHUTDOWN");
            /*  The loader stops its apps while the switchboard still
                answers: its calls would otherwise wait for their timeout.
                Its end is the signal on its pipe, left unread for
                zactor_destroy. */
            if (self->actors[3])
                zstr_send (self->actors[3], "$TERM");
        }
        bool loader_done =
            !self->actors[3]
            || (zsock_events (zactor_sock (self->actors[3])) & ZMQ_POLLIN);
        s_timers (self, now);
        for (broker_session_t *s = self->blocked, *after; s; s = after) {
            after = s->blk_next; /* s leaves the list when it empties */
            s_outq_flush (self, s);
        }
        s_reap_dead (self);
        hal_store_kick (self->store);
        if (stopping) {
            bool store_idle = !hal_store_busy (self->store)
                              && !hal_store_pending (self->store);
            if ((hb_done && loader_done && store_idle) || now > stop_deadline) {
                if (!store_idle)
                    zsys_warning ("broker: shutdown deadline passed with "
                                  "commits outstanding");
                break;
            }
        }
    }
    /*  Finish commits in flight and answer them. */
    while (hal_store_busy (self->store) || hal_store_pending (self->store)) {
        hal_store_kick (self->store);
        s_reap (self, 1000);
    }
    for (broker_session_t *s = self->blocked, *after; s; s = after) {
        after = s->blk_next;
        s_outq_flush (self, s);
    }
    zactor_destroy (&self->heartbeat);
    for (int i = 3; i >= 0; i--)
        zactor_destroy (&self->actors[i]);
    s_meta_put_u64 (self, "last_ms", self->ids.last_ms);
    s_reap_dead (self);
    s_count_deliveries (self);
    s_free_sessions (self);
    while (hal_store_busy (self->store) || hal_store_pending (self->store)) {
        hal_store_kick (self->store);
        s_reap (self, 1000);
    }
    zsys_info ("broker: stopped");
    return 0;
}
