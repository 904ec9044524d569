/*  chan_id.c — sortable message ids (see chan_id.h). */

#include <string.h>

#include "chan_id.h"

static const char s_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void
chan_id_format (uint64_t ms, uint64_t seq, char *out)
{
    /*  128 bits as big-endian: hi = ms(48) | 16 zero bits, lo = seq. */
    uint64_t hi = (ms & 0xffffffffffffULL) << 16;
    uint64_t lo = seq;
    /*  26 groups of 5 bits over 130 bits: the first group holds 3 bits. */
    for (int i = CHAN_ID_LEN - 1; i >= 0; i--) {
        out[i] = s_alphabet[lo & 31];
        lo = (lo >> 5) | (hi << 59);
        hi >>= 5;
    }
}

uint64_t
chan_id_next (chan_id_gen_t *gen, int64_t now_ms, char *out)
{
    uint64_t ms = now_ms > 0 ? (uint64_t) now_ms : 0;
    if (ms < gen->last_ms)
        ms = gen->last_ms;
    gen->last_ms = ms;
    if (gen->next_seq == 0)
        gen->next_seq = 1;
    uint64_t seq = gen->next_seq++;
    chan_id_format (ms, seq, out);
    return seq;
}

static int
s_digit (char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char) (c - 'a' + 'A');
    const char *p = c ? strchr (s_alphabet, c) : NULL;
    return p ? (int) (p - s_alphabet) : -1;
}

bool
chan_id_parse (const char *s, size_t len, uint64_t *seq, uint64_t *ms)
{
    if (len != CHAN_ID_LEN)
        return false;
    uint64_t hi = 0, lo = 0;
    for (size_t i = 0; i < CHAN_ID_LEN; i++) {
        int d = s_digit (s[i]);
        if (d < 0 || (i == 0 && d > 7))
            return false;
        hi = (hi << 5) | (lo >> 59);
        lo = (lo << 5) | (uint64_t) d;
    }
    if ((hi & 0xffff) != 0 || lo == 0)
        return false;
    *seq = lo;
    if (ms)
        *ms = hi >> 16;
    return true;
}
