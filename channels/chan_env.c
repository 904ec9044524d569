/*  chan_env.c — envelope pairs. */

#include <string.h>

#include "aaax.h"
#include "chan_env.h"

void
chan_env_pairs (chan_buf_t *b, const char *id, size_t idlen, double ts,
                const char *from, size_t fromlen, const char *chan,
                size_t chanlen, const char *to, size_t tolen, const char *corr,
                size_t corrlen, const void *data, size_t datalen)
{
    msgpack_packer pk;
    chan_buf_packer (b, &pk);
    chan_pack_str (&pk, "id", 2);
    chan_pack_str (&pk, id, idlen);
    chan_pack_str (&pk, "ts", 2);
    msgpack_pack_double (&pk, ts);
    chan_pack_str (&pk, "from", 4);
    chan_pack_str (&pk, from, fromlen);
    chan_pack_str (&pk, "chan", 4);
    chan_pack_str (&pk, chan, chanlen);
    chan_pack_str (&pk, "to", 2);
    chan_pack_str_or_nil (&pk, to, tolen);
    chan_pack_str (&pk, "corr", 4);
    chan_pack_str_or_nil (&pk, corr, corrlen);
    chan_pack_str (&pk, "data", 4);
    chan_buf_append (b, data, datalen);
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
