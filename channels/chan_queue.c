/*  chan_queue.c — work-queue state and its store records.

    Stored record: [u8 version=1][u8 0][u16 0][u32 attempt]
                   [u64 not_before, wall ms, 0 = none][envelope pairs]
    The attempt stored is the count of deliveries that ended without an ACK
    (written when a message comes back); a claim does not write, so after a
    kernel crash a message that was leased at that moment counts that one
    delivery less. */

#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "chan_env.h"
#include "chan_heap.h"
#include "chan_map.h"
#include "chan_queue.h"

#define REC_HDR 16

typedef enum { Q_READY_FRESH, Q_READY_BACK, Q_LEASED, Q_DELAYED } qstate_t;

struct _chan_qmsg_t {
    uint64_t seq;
    uint32_t attempt;
    uint8_t state;
    chan_heap_node_t node; /* Q_READY_BACK: by seq; LEASED/DELAYED: due */
    chan_qmsg_t *next;     /* Q_READY_FRESH FIFO */
    chan_holder_t *holder; /* Q_LEASED */
    chan_qmsg_t *hprev, *hnext;
    chan_queue_t *queue;
    uint32_t len;
    uint8_t pairs[];
};

struct _chan_queue_t {
    char *name;
    chan_queue_cfg_t cfg;
    hal_store_t *store;
    chan_queue_t *dlq;
    chan_map_t by_seq;
    chan_qmsg_t *fresh_head, *fresh_tail;
    size_t nfresh;
    chan_heap_t back;  /* returned, ready, by seq */
    chan_heap_t timed; /* leased and delayed, by deadline */
    size_t nleased, ndelayed;
    uint64_t bytes;
};

void
chan_holder_init (chan_holder_t *holder)
{
    holder->head = NULL;
    holder->count = 0;
}

static void
s_holder_add (chan_holder_t *h, chan_qmsg_t *m)
{
    m->holder = h;
    m->hprev = NULL;
    m->hnext = h->head;
    if (h->head)
        h->head->hprev = m;
    h->head = m;
    h->count++;
}

static void
s_holder_remove (chan_qmsg_t *m)
{
    chan_holder_t *h = m->holder;
    if (!h)
        return;
    if (m->hprev)
        m->hprev->hnext = m->hnext;
    else
        h->head = m->hnext;
    if (m->hnext)
        m->hnext->hprev = m->hprev;
    h->count--;
    m->holder = NULL;
    m->hprev = m->hnext = NULL;
}

size_t
chan_queue_key (const char *name, uint64_t seq, uint8_t *out)
{
    size_t n = strlen (name);
    memcpy (out, name, n);
    out[n] = 0;
    for (int i = 0; i < 8; i++)
        out[n + 1 + i] = (uint8_t) (seq >> (56 - 8 * i));
    return n + 9;
}

bool
chan_queue_parse_key (const void *key, size_t klen, char *name_out,
                      uint64_t *seq)
{
    const uint8_t *k = (const uint8_t *) key;
    if (klen < 10 || klen > AAAX_MAX_NAME + 9 || k[klen - 9] != 0)
        return false;
    size_t n = klen - 9;
    if (memchr (k, 0, n))
        return false;
    memcpy (name_out, k, n);
    name_out[n] = 0;
    uint64_t s = 0;
    for (int i = 0; i < 8; i++)
        s = (s << 8) | k[n + 1 + i];
    *seq = s;
    return true;
}

chan_queue_t *
chan_queue_new (const char *name, const chan_queue_cfg_t *cfg,
                hal_store_t *store)
{
    chan_queue_t *self = (chan_queue_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->name = strdup (name);
    if (!self->name) {
        free (self);
        return NULL;
    }
    self->cfg = *cfg;
    if (!store)
        self->cfg.durable = false;
    self->store = store;
    chan_map_init (&self->by_seq);
    chan_heap_init (&self->back);
    chan_heap_init (&self->timed);
    return self;
}

void
chan_queue_destroy (chan_queue_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    chan_queue_t *self = *self_p;
    /*  The heaps point into the messages: drop them first. */
    chan_heap_fini (&self->back);
    chan_heap_fini (&self->timed);
    chan_map_t *m = &self->by_seq;
    for (size_t i = 0; m->mask && i <= m->mask; i++)
        if (m->keys[i]) {
            chan_qmsg_t *q = (chan_qmsg_t *) m->vals[i];
            s_holder_remove (q);
            free (q);
        }
    chan_map_fini (&self->by_seq);
    free (self->name);
    free (self);
    *self_p = NULL;
}

void
chan_queue_set_dlq (chan_queue_t *self, chan_queue_t *dlq)
{
    self->dlq = dlq;
}

chan_queue_t *
chan_queue_dlq (const chan_queue_t *self)
{
    return self->dlq;
}

const char *
chan_queue_name (const chan_queue_t *self)
{
    return self->name;
}

bool
chan_queue_durable (const chan_queue_t *self)
{
    return self->cfg.durable;
}

uint32_t
chan_queue_lease_ms (const chan_queue_t *self)
{
    return self->cfg.lease_ms;
}

size_t
chan_queue_depth (const chan_queue_t *self)
{
    return self->by_seq.n;
}

size_t
chan_queue_ready (const chan_queue_t *self)
{
    return self->nfresh + self->back.n;
}

size_t
chan_queue_leased (const chan_queue_t *self)
{
    return self->nleased;
}

size_t
chan_queue_delayed (const chan_queue_t *self)
{
    return self->ndelayed;
}

uint64_t
chan_queue_bytes (const chan_queue_t *self)
{
    return self->bytes;
}

int
chan_queue_admit (const chan_queue_t *self, size_t bytes)
{
    return chan_queue_admit_n (self, 1, bytes);
}

int
chan_queue_admit_n (const chan_queue_t *self, size_t n, size_t bytes)
{
    if (self->cfg.max_len
        && (n > self->cfg.max_len || self->by_seq.n > self->cfg.max_len - n))
        return AAAX_ELIMIT;
    if (self->cfg.max_bytes && self->bytes + bytes > self->cfg.max_bytes)
        return AAAX_ELIMIT;
    return 0;
}

static chan_qmsg_t *
s_msg_new (chan_queue_t *q, uint64_t seq, uint32_t attempt, const void *pairs,
           size_t len)
{
    chan_qmsg_t *m = (chan_qmsg_t *) malloc (sizeof *m + len);
    if (!m)
        return NULL;
    memset (m, 0, sizeof *m);
    m->seq = seq;
    m->attempt = attempt;
    chan_heap_node_init (&m->node);
    m->queue = q;
    m->len = (uint32_t) len;
    memcpy (m->pairs, pairs, len);
    if (chan_map_put (&q->by_seq, seq, m) != 0) {
        free (m);
        return NULL;
    }
    q->bytes += len;
    return m;
}

static void
s_msg_free (chan_queue_t *q, chan_qmsg_t *m)
{
    chan_map_del (&q->by_seq, m->seq);
    q->bytes -= m->len;
    free (m);
}

static void
s_record (chan_queue_t *q, chan_qmsg_t *m, int64_t not_before)
{
    if (!q->cfg.durable)
        return;
    uint8_t key[AAAX_MAX_NAME + 10];
    size_t klen = chan_queue_key (q->name, m->seq, key);
    size_t vlen = REC_HDR + m->len;
    uint8_t stackbuf[1024];
    uint8_t *val =
        vlen <= sizeof stackbuf ? stackbuf : (uint8_t *) malloc (vlen);
    if (!val) {
        /*  Recording the attempt is best effort; the message itself is
            already on disk. */
        return;
    }
    memset (val, 0, REC_HDR);
    val[0] = 1;
    memcpy (val + 4, &m->attempt, 4);
    uint64_t nb = not_before > 0 ? (uint64_t) not_before : 0;
    memcpy (val + 8, &nb, 8);
    memcpy (val + REC_HDR, m->pairs, m->len);
    hal_store_put (q->store, HAL_DB_QUEUE, key, klen, val, vlen);
    if (val != stackbuf)
        free (val);
}

static void
s_unrecord (chan_queue_t *q, uint64_t seq)
{
    if (!q->cfg.durable)
        return;
    uint8_t key[AAAX_MAX_NAME + 10];
    size_t klen = chan_queue_key (q->name, seq, key);
    hal_store_del (q->store, HAL_DB_QUEUE, key, klen);
}

static void
s_push_fresh (chan_queue_t *q, chan_qmsg_t *m)
{
    m->state = Q_READY_FRESH;
    m->next = NULL;
    if (q->fresh_tail)
        q->fresh_tail->next = m;
    else
        q->fresh_head = m;
    q->fresh_tail = m;
    q->nfresh++;
}

int
chan_queue_append (chan_queue_t *self, uint64_t seq, const void *pairs,
                   size_t len)
{
    chan_qmsg_t *m = s_msg_new (self, seq, 0, pairs, len);
    if (!m)
        return AAAX_ENOMEM;
    /*  Seqs only grow, so the FIFO stays in id order. */
    s_push_fresh (self, m);
    s_record (self, m, 0);
    return 0;
}

/*  Puts m (not in any structure) back as ready or delayed. */
static int
s_make_ready (chan_queue_t *q, chan_qmsg_t *m, int64_t due)
{
    if (due > 0) {
        int rc = chan_heap_push (&q->timed, &m->node, due);
        if (rc == 0) {
            m->state = Q_DELAYED;
            q->ndelayed++;
        }
        return rc;
    }
    m->state = Q_READY_BACK;
    return chan_heap_push (&q->back, &m->node, (int64_t) m->seq);
}

int
chan_queue_restore (chan_queue_t *self, uint64_t seq, const void *val,
                    size_t vlen, int64_t now, int64_t wall_ms)
{
    const uint8_t *v = (const uint8_t *) val;
    if (vlen < REC_HDR || v[0] != 1)
        return AAAX_EINVAL;
    uint32_t attempt;
    uint64_t nb;
    memcpy (&attempt, v + 4, 4);
    memcpy (&nb, v + 8, 8);
    chan_qmsg_t *m =
        s_msg_new (self, seq, attempt, v + REC_HDR, vlen - REC_HDR);
    if (!m)
        return AAAX_ENOMEM;
    int64_t due = 0;
    if (nb && (int64_t) nb > wall_ms)
        due = now + ((int64_t) nb - wall_ms);
    if (due == 0 && attempt == 0) {
        /*  Restored in key (= seq) order, so the FIFO stays sorted. */
        s_push_fresh (self, m);
        return 0;
    }
    if (s_make_ready (self, m, due) != 0) {
        s_msg_free (self, m);
        return AAAX_ENOMEM;
    }
    return 0;
}

/*  The oldest ready message, removed from its structure; NULL if none. */
static chan_qmsg_t *
s_take_ready (chan_queue_t *q)
{
    chan_qmsg_t *f = q->fresh_head;
    chan_heap_node_t *b = chan_heap_top (&q->back);
    chan_qmsg_t *bm =
        b ? (chan_qmsg_t *) ((char *) b - offsetof (chan_qmsg_t, node)) : NULL;
    if (f && (!bm || f->seq < bm->seq)) {
        q->fresh_head = f->next;
        if (!q->fresh_head)
            q->fresh_tail = NULL;
        q->nfresh--;
        f->next = NULL;
        return f;
    }
    if (bm) {
        chan_heap_remove (&q->back, &bm->node);
        return bm;
    }
    return NULL;
}

size_t
chan_queue_claim (chan_queue_t *self, chan_holder_t *holder, size_t max,
                  uint32_t lease_ms, int64_t now, chan_qmsg_t **out)
{
    size_t n = 0;
    while (n < max) {
        /*  Make room in the deadline heap before taking the message, so a
            failure leaves it where it was. */
        if (self->timed.n == self->timed.cap) {
            chan_heap_node_t dummy;
            chan_heap_node_init (&dummy);
            if (chan_heap_push (&self->timed, &dummy, INT64_MIN) != 0)
                break;
            chan_heap_remove (&self->timed, &dummy);
        }
        chan_qmsg_t *m = s_take_ready (self);
        if (!m)
            break;
        m->state = Q_LEASED;
        m->attempt++;
        chan_heap_push (&self->timed, &m->node, now + (int64_t) lease_ms);
        s_holder_add (holder, m);
        self->nleased++;
        out[n++] = m;
    }
    return n;
}

static chan_qmsg_t *
s_leased_by (chan_queue_t *q, const chan_holder_t *holder, uint64_t seq)
{
    chan_qmsg_t *m = (chan_qmsg_t *) chan_map_get (&q->by_seq, seq);
    if (!m || m->state != Q_LEASED || m->holder != holder)
        return NULL;
    return m;
}

bool
chan_queue_ack (chan_queue_t *self, const chan_holder_t *holder, uint64_t seq)
{
    chan_qmsg_t *m = s_leased_by (self, holder, seq);
    if (!m)
        return false;
    chan_heap_remove (&self->timed, &m->node);
    s_holder_remove (m);
    self->nleased--;
    s_unrecord (self, seq);
    s_msg_free (self, m);
    return true;
}

/*  Moves m (out of every structure) to the dead-letter queue with its
    envelope's chan rewritten. false (m untouched) on no memory. */
static bool
s_dead_letter (chan_queue_t *q, chan_qmsg_t *m)
{
    chan_queue_t *dlq = q->dlq;
    chan_buf_t b;
    chan_buf_init (&b);
    chan_qmsg_t *d = NULL;
    if (chan_env_rechan (&b, m->pairs, m->len, dlq->name, strlen (dlq->name))
            == 0
        && !b.oom)
        d = s_msg_new (dlq, m->seq, 0, b.data, b.len);
    chan_buf_fini (&b);
    if (!d)
        return false;
    if (chan_heap_push (&dlq->back, &d->node, (int64_t) d->seq) != 0) {
        s_msg_free (dlq, d);
        return false;
    }
    d->state = Q_READY_BACK;
    s_unrecord (q, m->seq);
    s_record (dlq, d, 0);
    s_msg_free (q, m);
    return true;
}

/*  m has left its lease (out of the deadline heap, no holder): dead-letter
    it when out of attempts, else make it ready, after delay_ms if given.
    Returns true when it is ready in q now. */
static bool
s_return (chan_queue_t *q, chan_qmsg_t *m, uint32_t delay_ms, int64_t now,
          int64_t wall_ms)
{
    if (q->cfg.max_attempts && m->attempt >= q->cfg.max_attempts && q->dlq
        && s_dead_letter (q, m))
        return false;
    int64_t due = delay_ms ? now + (int64_t) delay_ms : 0;
    if (s_make_ready (q, m, due) != 0) {
        /*  No memory for a slot in the ready heap. The deadline heap had
            this message a moment ago, so it has room: retry shortly. */
        m->state = Q_DELAYED;
        q->ndelayed++;
        due = now + 100;
        chan_heap_push (&q->timed, &m->node, due);
    }
    s_record (q, m, due ? wall_ms + (due - now) : 0);
    return due == 0;
}

bool
chan_queue_nack (chan_queue_t *self, const chan_holder_t *holder, uint64_t seq,
                 uint32_t delay_ms, int64_t now, int64_t wall_ms)
{
    chan_qmsg_t *m = s_leased_by (self, holder, seq);
    if (!m)
        return false;
    chan_heap_remove (&self->timed, &m->node);
    s_holder_remove (m);
    self->nleased--;
    s_return (self, m, delay_ms, now, wall_ms);
    return true;
}

int64_t
chan_queue_next_due (const chan_queue_t *self)
{
    chan_heap_node_t *top = chan_heap_top (&self->timed);
    return top ? top->key : INT64_MAX;
}

size_t
chan_queue_tick (chan_queue_t *self, int64_t now, int64_t wall_ms)
{
    size_t ready = 0;
    chan_heap_node_t *top;
    while ((top = chan_heap_top (&self->timed)) && top->key <= now) {
        chan_heap_remove (&self->timed, top);
        chan_qmsg_t *m =
            (chan_qmsg_t *) ((char *) top - offsetof (chan_qmsg_t, node));
        if (m->state == Q_LEASED) {
            s_holder_remove (m);
            self->nleased--;
            if (s_return (self, m, 0, now, wall_ms))
                ready++;
        } else {
            self->ndelayed--;
            m->state = Q_READY_BACK;
            if (chan_heap_push (&self->back, &m->node, (int64_t) m->seq) != 0) {
                m->state = Q_DELAYED;
                self->ndelayed++;
                chan_heap_push (&self->timed, &m->node, now + 100);
                break;
            }
            ready++;
        }
    }
    return ready;
}

void
chan_holder_release (chan_holder_t *holder, int64_t now, int64_t wall_ms,
                     chan_queue_ready_fn *fn, void *arg)
{
    while (holder->head) {
        chan_qmsg_t *m = holder->head;
        chan_queue_t *q = m->queue;
        chan_heap_remove (&q->timed, &m->node);
        s_holder_remove (m);
        q->nleased--;
        s_return (q, m, 0, now, wall_ms);
        if (fn)
            fn (arg, q);
    }
}

uint64_t
chan_qmsg_seq (const chan_qmsg_t *m)
{
    return m->seq;
}

uint32_t
chan_qmsg_attempt (const chan_qmsg_t *m)
{
    return m->attempt;
}

const uint8_t *
chan_qmsg_pairs (const chan_qmsg_t *m, size_t *len)
{
    *len = m->len;
    return m->pairs;
}
