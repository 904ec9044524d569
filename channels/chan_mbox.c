/*  chan_mbox.c — mailbox state. Stored record: [u8 version=1][u8 0][u16 0]
    [u32 attempt][envelope pairs], keyed like a queue message: owner NUL
    seq(8, big-endian). */

#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "chan_mbox.h"
#include "chan_queue.h"

#define REC_HDR 8

struct _chan_mmsg_t {
    uint64_t seq;
    uint32_t attempt;
    bool inflight;
    chan_mmsg_t *prev, *next;
    uint32_t len;
    uint8_t pairs[];
};

void
chan_mbox_init (chan_mbox_t *self)
{
    memset (self, 0, sizeof *self);
    chan_map_init (&self->by_seq);
}

void
chan_mbox_fini (chan_mbox_t *self)
{
    chan_mmsg_t *m = self->head;
    while (m) {
        chan_mmsg_t *next = m->next;
        free (m);
        m = next;
    }
    chan_map_fini (&self->by_seq);
    memset (self, 0, sizeof *self);
}

static void
s_record (hal_store_t *store, const char *owner, const chan_mmsg_t *m)
{
    if (!store)
        return;
    uint8_t key[AAAX_MAX_NAME + 10];
    size_t klen = chan_queue_key (owner, m->seq, key);
    size_t vlen = REC_HDR + m->len;
    uint8_t stackbuf[1024];
    uint8_t *val =
        vlen <= sizeof stackbuf ? stackbuf : (uint8_t *) malloc (vlen);
    if (!val)
        return;
    memset (val, 0, REC_HDR);
    val[0] = 1;
    memcpy (val + 4, &m->attempt, 4);
    memcpy (val + REC_HDR, m->pairs, m->len);
    hal_store_put (store, HAL_DB_MBOX, key, klen, val, vlen);
    if (val != stackbuf)
        free (val);
}

/*  Links m at the tail (seqs arrive in order; restore walks keys in order). */
static int
s_link (chan_mbox_t *self, chan_mmsg_t *m)
{
    if (chan_map_put (&self->by_seq, m->seq, m) != 0)
        return AAAX_ENOMEM;
    m->prev = self->tail;
    m->next = NULL;
    if (self->tail)
        self->tail->next = m;
    else
        self->head = m;
    self->tail = m;
    if (!self->cursor)
        self->cursor = m;
    self->count++;
    self->bytes += m->len;
    return 0;
}

static chan_mmsg_t *
s_new (uint64_t seq, uint32_t attempt, const void *pairs, size_t len)
{
    chan_mmsg_t *m = (chan_mmsg_t *) malloc (sizeof *m + len);
    if (!m)
        return NULL;
    memset (m, 0, sizeof *m);
    m->seq = seq;
    m->attempt = attempt;
    m->len = (uint32_t) len;
    memcpy (m->pairs, pairs, len);
    return m;
}

int
chan_mbox_append (chan_mbox_t *self, hal_store_t *store, const char *owner,
                  uint64_t seq, const void *pairs, size_t len)
{
    chan_mmsg_t *m = s_new (seq, 0, pairs, len);
    if (!m || s_link (self, m) != 0) {
        free (m);
        return AAAX_ENOMEM;
    }
    s_record (store, owner, m);
    return 0;
}

int
chan_mbox_restore (chan_mbox_t *self, uint64_t seq, const void *val,
                   size_t vlen)
{
    const uint8_t *v = (const uint8_t *) val;
    if (vlen < REC_HDR || v[0] != 1)
        return AAAX_EINVAL;
    uint32_t attempt;
    memcpy (&attempt, v + 4, 4);
    chan_mmsg_t *m = s_new (seq, attempt, v + REC_HDR, vlen - REC_HDR);
    if (!m || s_link (self, m) != 0) {
        free (m);
        return AAAX_ENOMEM;
    }
    return 0;
}

chan_mmsg_t *
chan_mbox_next (chan_mbox_t *self, size_t window)
{
    if (!self->cursor || self->inflight >= window)
        return NULL;
    chan_mmsg_t *m = self->cursor;
    self->cursor = m->next;
    m->inflight = true;
    m->attempt++;
    self->inflight++;
    return m;
}

bool
chan_mbox_ack (chan_mbox_t *self, hal_store_t *store, const char *owner,
               uint64_t seq)
{
    chan_mmsg_t *m = (chan_mmsg_t *) chan_map_get (&self->by_seq, seq);
    if (!m || !m->inflight)
        return false;
    chan_map_del (&self->by_seq, seq);
    if (m->prev)
        m->prev->next = m->next;
    else
        self->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        self->tail = m->prev;
    /*  In flight, so the cursor is past it and cannot point at it. */
    self->count--;
    self->inflight--;
    self->bytes -= m->len;
    if (store) {
        uint8_t key[AAAX_MAX_NAME + 10];
        size_t klen = chan_queue_key (owner, seq, key);
        hal_store_del (store, HAL_DB_MBOX, key, klen);
    }
    free (m);
    return true;
}

void
chan_mbox_undock (chan_mbox_t *self, hal_store_t *store, const char *owner)
{
    for (chan_mmsg_t *m = self->head; m && m != self->cursor; m = m->next)
        if (m->inflight) {
            m->inflight = false;
            s_record (store, owner, m);
        }
    self->inflight = 0;
    self->cursor = self->head;
}

uint64_t
chan_mmsg_seq (const chan_mmsg_t *m)
{
    return m->seq;
}

uint32_t
chan_mmsg_attempt (const chan_mmsg_t *m)
{
    return m->attempt;
}

const uint8_t *
chan_mmsg_pairs (const chan_mmsg_t *m, size_t *len)
{
    *len = m->len;
    return m->pairs;
}
