/*  chan_idem.c — idempotency keys in a zhashx, expiring through a heap.
    Store key: chan NUL writer NUL key; value: [u64 expires, wall ms][id]. */

#include <czmq.h>

#include "aaax.h"
#include "chan_heap.h"
#include "chan_idem.h"

typedef struct {
    chan_heap_node_t node; /* keyed by expiry */
    bool durable;
    char id[CHAN_ID_LEN];
    size_t skeylen;
    uint8_t keys[];        /* store key (skeylen), then the hash key + NUL */
} s_entry_t;

struct _chan_idem_t {
    hal_store_t *store;
    int64_t ttl_ms;
    zhashx_t *map;   /* "chan\x1fwriter\x1fkey" -> s_entry_t */
    chan_heap_t by_expiry;
};

static void
s_entry_free (void **item)
{
    free (*item);
    *item = NULL;
}

chan_idem_t *
chan_idem_new (hal_store_t *store, uint32_t ttl_s)
{
    chan_idem_t *self = (chan_idem_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->map = zhashx_new ();
    if (!self->map) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->map, s_entry_free);
    self->store = store;
    self->ttl_ms = (int64_t) ttl_s * 1000;
    chan_heap_init (&self->by_expiry);
    return self;
}

void
chan_idem_destroy (chan_idem_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    chan_idem_t *self = *self_p;
    chan_heap_fini (&self->by_expiry);
    zhashx_destroy (&self->map);
    free (self);
    *self_p = NULL;
}

/*  Hash key "chan\x1fwriter\x1fkey": channel and system names cannot hold
    0x1f, so the split is unambiguous. Returns NULL if it does not fit. */
static char *
s_hkey (char *buf, size_t size, const char *chan, const char *writer,
        const char *key, size_t keylen)
{
    size_t c = strlen (chan), w = strlen (writer);
    if (c + w + keylen + 3 > size)
        return NULL;
    memcpy (buf, chan, c);
    buf[c] = 0x1f;
    memcpy (buf + c + 1, writer, w);
    buf[c + 1 + w] = 0x1f;
    memcpy (buf + c + 2 + w, key, keylen);
    buf[c + 2 + w + keylen] = 0;
    return buf;
}

bool
chan_idem_get (chan_idem_t *self, const char *chan, const char *writer,
               const char *key, size_t keylen, int64_t wall_ms, char *id_out)
{
    char buf[2 * AAAX_MAX_NAME + AAAX_MAX_KEY + 8];
    if (!s_hkey (buf, sizeof buf, chan, writer, key, keylen))
        return false;
    s_entry_t *e = (s_entry_t *) zhashx_lookup (self->map, buf);
    if (!e || e->node.key <= wall_ms)
        return false;
    memcpy (id_out, e->id, CHAN_ID_LEN);
    return true;
}

static int
s_insert (chan_idem_t *self, const char *hkey, const uint8_t *skey,
          size_t skeylen, const char *id, bool durable, int64_t expires)
{
    size_t hlen = strlen (hkey);
    s_entry_t *e = (s_entry_t *) calloc (1, sizeof *e + skeylen + hlen + 1);
    if (!e)
        return AAAX_ENOMEM;
    chan_heap_node_init (&e->node);
    e->durable = durable;
    memcpy (e->id, id, CHAN_ID_LEN);
    e->skeylen = skeylen;
    memcpy (e->keys, skey, skeylen);
    memcpy (e->keys + skeylen, hkey, hlen + 1);
    if (chan_heap_push (&self->by_expiry, &e->node, expires) != 0) {
        free (e);
        return AAAX_ENOMEM;
    }
    /*  A replaced (expired) entry must leave the heap before it is freed. */
    s_entry_t *old = (s_entry_t *) zhashx_lookup (self->map, hkey);
    if (old)
        chan_heap_remove (&self->by_expiry, &old->node);
    if (zhashx_insert (self->map, hkey, e) != 0)
        zhashx_update (self->map, hkey, e);
    return 0;
}

int
chan_idem_put (chan_idem_t *self, const char *chan, const char *writer,
               const char *key, size_t keylen, const char *id, bool durable,
               int64_t wall_ms)
{
    char buf[2 * AAAX_MAX_NAME + AAAX_MAX_KEY + 8];
    if (!s_hkey (buf, sizeof buf, chan, writer, key, keylen))
        return AAAX_EINVAL;
    size_t skeylen = strlen (buf);
    uint8_t skey[sizeof buf];
    memcpy (skey, buf, skeylen);
    for (size_t i = 0, seps = 0; i < skeylen && seps < 2; i++)
        if (skey[i] == 0x1f) {
            skey[i] = 0;
            seps++;
        }
    int64_t expires = wall_ms + self->ttl_ms;
    int rc = s_insert (self, buf, skey, skeylen, id, durable, expires);
    if (rc == 0 && durable && self->store) {
        uint8_t val[8 + CHAN_ID_LEN];
        uint64_t x = (uint64_t) expires;
        memcpy (val, &x, 8);
        memcpy (val + 8, id, CHAN_ID_LEN);
        hal_store_put (self->store, HAL_DB_IDEM, skey, skeylen, val,
                       sizeof val);
    }
    return rc;
}

int
chan_idem_restore (chan_idem_t *self, const void *key, size_t klen,
                   const void *val, size_t vlen, int64_t wall_ms)
{
    if (vlen != 8 + CHAN_ID_LEN || klen == 0 || klen > 2 * AAAX_MAX_NAME
        + AAAX_MAX_KEY + 4)
        return AAAX_EINVAL;
    uint64_t expires;
    memcpy (&expires, val, 8);
    if ((int64_t) expires <= wall_ms) {
        if (self->store)
            hal_store_del (self->store, HAL_DB_IDEM, key, klen);
        return 0;
    }
    char buf[2 * AAAX_MAX_NAME + AAAX_MAX_KEY + 8];
    memcpy (buf, key, klen);
    buf[klen] = 0;
    size_t seps = 0;
    for (size_t i = 0; i < klen; i++)
        if (buf[i] == 0 && seps < 2) {
            buf[i] = 0x1f;
            seps++;
        }
    if (seps != 2 || strlen (buf) != klen)
        return AAAX_EINVAL;
    return s_insert (self, buf, (const uint8_t *) key, klen,
                     (const char *) val + 8, true, (int64_t) expires);
}

void
chan_idem_expire (chan_idem_t *self, int64_t wall_ms)
{
    chan_heap_node_t *top;
    while ((top = chan_heap_top (&self->by_expiry)) && top->key <= wall_ms) {
        chan_heap_remove (&self->by_expiry, top);
        s_entry_t *e = (s_entry_t *) top;
        if (e->durable && self->store)
            hal_store_del (self->store, HAL_DB_IDEM, e->keys, e->skeylen);
        zhashx_delete (self->map, (const char *) e->keys + e->skeylen);
    }
}

size_t
chan_idem_size (const chan_idem_t *self)
{
    return zhashx_size (self->map);
}
