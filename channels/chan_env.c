/*  chan_env.c — envelope pairs. */

#include <string.h>

#include "aaax.h"
#include "chan_env.h"

/*  Writes a msgpack str header and bytes at p; returns the end. */
static uint8_t *
s_str (uint8_t *p, const char *s, size_t len)
{
    if (len < 32)
        *p++ = (uint8_t) (0xa0 | len);
    else if (len < 256) {
        *p++ = 0xd9;
        *p++ = (uint8_t) len;
    } else if (len < 65536) {
        *p++ = 0xda;
        *p++ = (uint8_t) (len >> 8);
        *p++ = (uint8_t) len;
    } else {
        *p++ = 0xdb;
        for (int i = 3; i >= 0; i--)
            *p++ = (uint8_t) (len >> (8 * i));
    }
    memcpy (p, s, len);
    return p + len;
}

static uint8_t *
s_str_or_nil (uint8_t *p, const char *s, size_t len)
{
    if (!s) {
        *p++ = 0xc0;
        return p;
    }
    return s_str (p, s, len);
}

void
chan_env_pairs (chan_buf_t *b, const char *id, size_t idlen, double ts,
                const char *from, size_t fromlen, const char *chan,
                size_t chanlen, const char *to, size_t tolen, const char *corr,
                size_t corrlen, const void *data, size_t datalen)
{
    /*  On every write: packed by hand in one reservation (keys are fixed,
        every header at most 5 bytes) rather than a packer call per item. */
    size_t most = 7 * 5 + 16 + 9 + 6 * 5 + idlen + fromlen + chanlen + tolen
                  + corrlen + datalen;
    if (chan_buf_reserve (b, most) != 0)
        return;
    uint8_t *p = b->data + b->len;
    p = s_str (p, "id", 2);
    p = s_str (p, id, idlen);
    p = s_str (p, "ts", 2);
    uint64_t bits;
    memcpy (&bits, &ts, 8);
    *p++ = 0xcb;
    for (int i = 7; i >= 0; i--)
        *p++ = (uint8_t) (bits >> (8 * i));
    p = s_str (p, "from", 4);
    p = s_str (p, from, fromlen);
    p = s_str (p, "chan", 4);
    p = s_str (p, chan, chanlen);
    p = s_str (p, "to", 2);
    p = s_str_or_nil (p, to, tolen);
    p = s_str (p, "corr", 4);
    p = s_str_or_nil (p, corr, corrlen);
    p = s_str (p, "data", 4);
    memcpy (p, data, datalen);
    p += datalen;
    b->len = (size_t) (p - b->data);
}

void
chan_env_map (chan_buf_t *b, const void *pairs, size_t len, uint32_t attempt)
{
    uint8_t hdr[5];
    size_t hl = chan_mpk_map_header (CHAN_ENV_PAIRS + (attempt ? 1 : 0), hdr);
    chan_buf_append (b, hdr, hl);
    chan_buf_append (b, pairs, len);
    if (attempt) {
        msgpack_packer pk;
        chan_buf_packer (b, &pk);
        chan_pack_str (&pk, "attempt", 7);
        msgpack_pack_uint32 (&pk, attempt);
    }
}

int
chan_env_rechan (chan_buf_t *b, const void *pairs, size_t len, const char *chan,
                 size_t chanlen)
{
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, pairs, len);
    for (int i = 0; i < CHAN_ENV_PAIRS; i++) {
        const uint8_t *kstart = r.p;
        chan_mpk_obj_t k;
        if (chan_mpk_next (&r, &k) != 0 || k.type != CHAN_MPK_STR)
            return AAAX_EINVAL;
        const uint8_t *vstart = r.p;
        if (chan_mpk_skip (&r, AAAX_MAX_DEPTH) != 0)
            return AAAX_EINVAL;
        chan_buf_append (b, kstart, (size_t) (vstart - kstart));
        if (k.len == 4 && memcmp (k.ptr, "chan", 4) == 0) {
            msgpack_packer pk;
            chan_buf_packer (b, &pk);
            chan_pack_str (&pk, chan, chanlen);
        } else
            chan_buf_append (b, vstart, (size_t) (r.p - vstart));
    }
    return chan_mpk_remaining (&r) == 0 ? 0 : AAAX_EINVAL;
}
