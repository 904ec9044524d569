/*  chan_idem.c — idempotency keys in a zhashx, expiring through a heap.
    Store key: chan NUL writer NUL blake2b-128(key) — bounded (at most 275
    bytes, under LMDB's 511) whatever the key; value: [u64 expires, wall ms]
    [id][key]. */

#include <czmq.h>
#include <sodium.h>

#include "aaax.h"
#include "chan_heap.h"
#include "chan_idem.h"

typedef struct {
    chan_heap_node_t node; /* keyed by expiry */
    bool durable;
    char id[CHAN_ID_LEN];
    size_t skeylen;
    uint8_t keys[]; /* store key (skeylen), then the hash key + NUL */
} s_entry_t;

struct _chan_idem_t {
    hal_store_t *store;
    int64_t ttl_ms;
    zhashx_t *map; /* "chan\x1fwriter\x1fkey" -> s_entry_t */
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

/*  The store key: chan NUL writer NUL hash(key); returns its length. */
static size_t
s_skey (uint8_t *out, const char *chan, const char *writer, const char *key,
        size_t keylen)
{
    size_t c = strlen (chan), w = strlen (writer);
    memcpy (out, chan, c);
    out[c] = 0;
    memcpy (out + c + 1, writer, w);
    out[c + 1 + w] = 0;
    crypto_generichash (out + c + 2 + w, 16, (const unsigned char *) key,
                        keylen, NULL, 0);
    return c + 2 + w + 16;
}

int
chan_idem_put (chan_idem_t *self, const char *chan, const char *writer,
               const char *key, size_t keylen, const char *id, bool durable,
               int64_t wall_ms)
{
    char buf[2 * AAAX_MAX_NAME + AAAX_MAX_KEY + 8];
    if (strlen (chan) > AAAX_MAX_NAME + 1 || strlen (writer) > AAAX_MAX_NAME
        || keylen > AAAX_MAX_KEY
        || !s_hkey (buf, sizeof buf, chan, writer, key, keylen))
        return AAAX_EINVAL;
    uint8_t skey[2 * AAAX_MAX_NAME + 24];
    size_t skeylen = s_skey (skey, chan, writer, key, keylen);
    int64_t expires = wall_ms + self->ttl_ms;
    int rc = s_insert (self, buf, skey, skeylen, id, durable, expires);
    if (rc == 0 && durable && self->store) {
        uint8_t val[8 + CHAN_ID_LEN + AAAX_MAX_KEY];
        uint64_t x = (uint64_t) expires;
        memcpy (val, &x, 8);
        memcpy (val + 8, id, CHAN_ID_LEN);
        memcpy (val + 8 + CHAN_ID_LEN, key, keylen);
        hal_store_put (self->store, HAL_DB_IDEM, skey, skeylen, val,
                       8 + CHAN_ID_LEN + keylen);
    }
    return rc;
}

int
chan_idem_restore (chan_idem_t *self, const void *key, size_t klen,
                   const void *val, size_t vlen, int64_t wall_ms)
{
    if (vlen <= 8 + CHAN_ID_LEN || vlen > 8 + CHAN_ID_LEN + AAAX_MAX_KEY
        || klen < 18 || klen > 2 * AAAX_MAX_NAME + 24)
        return AAAX_EINVAL;
    uint64_t expires;
    memcpy (&expires, val, 8);
    if ((int64_t) expires <= wall_ms) {
        if (self->store)
            hal_store_del (self->store, HAL_DB_IDEM, key, klen);
        return 0;
    }
    /*  chan NUL writer NUL hash(16) */
    const char *k = (const char *) key;
    const char *z1 = (const char *) memchr (k, 0, klen - 16);
    const char *z2 = z1 ? (const char *) memchr (
                         z1 + 1, 0, (size_t) (k + klen - 16 - (z1 + 1)))
                        : NULL;
    if (!z1 || !z2 || z2 + 1 != k + klen - 16)
        return AAAX_EINVAL;
    const char *ukey = (const char *) val + 8 + CHAN_ID_LEN;
    size_t ukeylen = vlen - 8 - CHAN_ID_LEN;
    if (memchr (ukey, 0, ukeylen))
        return AAAX_EINVAL;
    char buf[2 * AAAX_MAX_NAME + AAAX_MAX_KEY + 8];
    if (!s_hkey (buf, sizeof buf, k, z1 + 1, ukey, ukeylen))
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
