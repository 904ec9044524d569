/*  chan_mpk.c — bounded zero-copy msgpack reader and the packer's buffer.
    The reader never trusts a length: every count and size is checked against
    the bytes that remain before it is used. */

#include <stdlib.h>
#include <string.h>

#include "aaax.h"
#include "chan_mpk.h"

#define CHAN_MPK_STACK_MAX 64

void
chan_mpk_reader_init (chan_mpk_reader_t *r, const void *data, size_t size)
{
    r->p = (const uint8_t *) data;
    r->end = size ? r->p + size : r->p;
}

size_t
chan_mpk_remaining (const chan_mpk_reader_t *r)
{
    return (size_t) (r->end - r->p);
}

static uint64_t
s_be (const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

int
chan_mpk_next (chan_mpk_reader_t *r, chan_mpk_obj_t *o)
{
    const uint8_t *p = r->p;
    size_t avail = (size_t) (r->end - p);
    if (avail < 1)
        return AAAX_EINVAL;
    uint8_t c = p[0];
    size_t hdr = 1;       /* header bytes, including c */
    uint64_t payload = 0; /* STR/BIN/EXT payload bytes after the header */
    memset (o, 0, sizeof *o);

    if (c <= 0x7f) {
        o->type = CHAN_MPK_UINT;
        o->v.u = c;
    } else if (c >= 0xe0) {
        o->type = CHAN_MPK_INT;
        o->v.i = (int8_t) c;
    } else if (c >= 0x80 && c <= 0x8f) {
        o->type = CHAN_MPK_MAP;
        o->v.n = c & 0x0f;
    } else if (c >= 0x90 && c <= 0x9f) {
        o->type = CHAN_MPK_ARRAY;
        o->v.n = c & 0x0f;
    } else if (c >= 0xa0 && c <= 0xbf) {
        o->type = CHAN_MPK_STR;
        payload = c & 0x1f;
    } else {
        int n = 0; /* size of the length / value field after c */
        switch (c) {
        case 0xc0: o->type = CHAN_MPK_NIL; break;
        case 0xc2:
            o->type = CHAN_MPK_BOOL;
            o->v.b = false;
            break;
        case 0xc3:
            o->type = CHAN_MPK_BOOL;
            o->v.b = true;
            break;
        case 0xc4:
        case 0xc5:
        case 0xc6:
            o->type = CHAN_MPK_BIN;
            n = 1 << (c - 0xc4);
            break;
        case 0xc7:
        case 0xc8:
        case 0xc9:
            o->type = CHAN_MPK_EXT;
            n = 1 << (c - 0xc7);
            break;
        case 0xca:
        case 0xcb:
            o->type = CHAN_MPK_FLOAT;
            n = c == 0xca ? 4 : 8;
            break;
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            o->type = CHAN_MPK_UINT;
            n = 1 << (c - 0xcc);
            break;
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3:
            o->type = CHAN_MPK_INT;
            n = 1 << (c - 0xd0);
            break;
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8: o->type = CHAN_MPK_EXT; break;
        case 0xd9:
        case 0xda:
        case 0xdb:
            o->type = CHAN_MPK_STR;
            n = 1 << (c - 0xd9);
            break;
        case 0xdc:
        case 0xdd:
            o->type = CHAN_MPK_ARRAY;
            n = c == 0xdc ? 2 : 4;
            break;
        case 0xde:
        case 0xdf:
            o->type = CHAN_MPK_MAP;
            n = c == 0xde ? 2 : 4;
            break;
        default: return AAAX_EINVAL; /* 0xc1, never used */
        }
        if (avail < 1 + (size_t) n)
            return AAAX_EINVAL;
        hdr = 1 + (size_t) n;
        uint64_t field = n ? s_be (p + 1, n) : 0;
        switch (o->type) {
        case CHAN_MPK_BIN:
        case CHAN_MPK_STR: payload = field; break;
        case CHAN_MPK_EXT:
            if (c >= 0xd4)
                payload = (uint64_t) 1 << (c - 0xd4);
            else
                payload = field;
            if (avail < hdr + 1)
                return AAAX_EINVAL;
            o->ext_type = (int8_t) p[hdr];
            hdr += 1;
            break;
        case CHAN_MPK_FLOAT:
            if (n == 4) {
                uint32_t bits = (uint32_t) field;
                float f;
                memcpy (&f, &bits, 4);
                o->v.f = f;
            } else {
                double d;
                memcpy (&d, &field, 8);
                o->v.f = d;
            }
            break;
        case CHAN_MPK_UINT: o->v.u = field; break;
        case CHAN_MPK_INT: {
            int64_t v;
            if (n == 1)
                v = (int8_t) field;
            else if (n == 2)
                v = (int16_t) field;
            else if (n == 4)
                v = (int32_t) field;
            else
                v = (int64_t) field;
            if (v >= 0) {
                o->type = CHAN_MPK_UINT;
                o->v.u = (uint64_t) v;
            } else
                o->v.i = v;
            break;
        }
        case CHAN_MPK_ARRAY:
        case CHAN_MPK_MAP: o->v.n = (uint32_t) field; break;
        default: break;
        }
    }
    size_t rest = avail - hdr;
    if (o->type == CHAN_MPK_STR || o->type == CHAN_MPK_BIN
        || o->type == CHAN_MPK_EXT) {
        if (payload > rest)
            return AAAX_EINVAL;
        o->ptr = (const char *) p + hdr;
        o->len = (uint32_t) payload;
        hdr += (size_t) payload;
    } else if (o->type == CHAN_MPK_ARRAY) {
        if ((uint64_t) o->v.n > rest)
            return AAAX_EINVAL;
    } else if (o->type == CHAN_MPK_MAP) {
        if ((uint64_t) o->v.n * 2 > rest)
            return AAAX_EINVAL;
    }
    r->p = p + hdr;
    return 0;
}

int
chan_mpk_skip (chan_mpk_reader_t *r, int max_depth)
{
    if (max_depth < 1)
        return AAAX_EINVAL;
    if (max_depth > CHAN_MPK_STACK_MAX)
        max_depth = CHAN_MPK_STACK_MAX;
    /*  left[d] = items still to read in the container open at depth d. */
    uint64_t left[CHAN_MPK_STACK_MAX + 1];
    int depth = 0;
    left[0] = 1;
    const uint8_t *start = r->p;
    while (depth >= 0) {
        if (left[depth] == 0) {
            depth--;
            continue;
        }
        chan_mpk_obj_t o;
        if (chan_mpk_next (r, &o) != 0) {
            r->p = start;
            return AAAX_EINVAL;
        }
        left[depth]--;
        if (o.type == CHAN_MPK_ARRAY || o.type == CHAN_MPK_MAP) {
            uint64_t items =
                o.type == CHAN_MPK_MAP ? (uint64_t) o.v.n * 2 : o.v.n;
            if (items == 0)
                continue;
            /*  depth counts open containers below the top value; the value
                at depth d has nesting level d + 1. */
            if (depth + 2 > max_depth) {
                r->p = start;
                return AAAX_EINVAL;
            }
            left[++depth] = items;
        }
    }
    return 0;
}

bool
chan_mpk_valid (const void *data, size_t size, int max_depth)
{
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, data, size);
    return chan_mpk_skip (&r, max_depth) == 0 && chan_mpk_remaining (&r) == 0;
}

void
chan_buf_init (chan_buf_t *b)
{
    memset (b, 0, sizeof *b);
}

void
chan_buf_fini (chan_buf_t *b)
{
    free (b->data);
    memset (b, 0, sizeof *b);
}

void
chan_buf_reset (chan_buf_t *b)
{
    b->len = 0;
    b->oom = false;
}

int
chan_buf_reserve (chan_buf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return AAAX_ENOMEM;
        }
        cap *= 2;
    }
    uint8_t *data = (uint8_t *) realloc (b->data, cap);
    if (!data) {
        b->oom = true;
        return AAAX_ENOMEM;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

void
chan_buf_append (chan_buf_t *b, const void *data, size_t len)
{
    if (len == 0 || chan_buf_reserve (b, len) != 0)
        return;
    memcpy (b->data + b->len, data, len);
    b->len += len;
}

int
chan_buf_write_cb (void *data, const char *buf, size_t len)
{
    chan_buf_t *b = (chan_buf_t *) data;
    chan_buf_append (b, buf, len);
    return b->oom ? -1 : 0;
}

void
chan_buf_packer (chan_buf_t *b, msgpack_packer *pk)
{
    msgpack_packer_init (pk, b, chan_buf_write_cb);
}

void
chan_pack_str (msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, s, len);
}

void
chan_pack_cstr (msgpack_packer *pk, const char *s)
{
    chan_pack_str (pk, s, strlen (s));
}

void
chan_pack_str_or_nil (msgpack_packer *pk, const char *s, size_t len)
{
    if (s)
        chan_pack_str (pk, s, len);
    else
        msgpack_pack_nil (pk);
}

size_t
chan_mpk_map_header (uint32_t n, uint8_t out[5])
{
    if (n < 16) {
        out[0] = (uint8_t) (0x80 | n);
        return 1;
    }
    if (n < 65536) {
        out[0] = 0xde;
        out[1] = (uint8_t) (n >> 8);
        out[2] = (uint8_t) n;
        return 3;
    }
    out[0] = 0xdf;
    out[1] = (uint8_t) (n >> 24);
    out[2] = (uint8_t) (n >> 16);
    out[3] = (uint8_t) (n >> 8);
    out[4] = (uint8_t) n;
    return 5;
}
