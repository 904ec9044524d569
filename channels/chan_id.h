/*  chan_id.h — message ids: 26 characters of Crockford base32 over 128 bits,
    48 bits of wall-clock milliseconds then an 80-bit kernel-wide sequence
    number (the low 64 bits used). Ids sort by write order: the millisecond
    part never goes backwards (it is the maximum of the clock and the last
    value handed out, persisted across boots) and the sequence only grows.
    The sequence doubles as the LMDB key of a stored message, so an ACK's id
    finds its message without a second index. */

#ifndef CHAN_ID_H_INCLUDED
#define CHAN_ID_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHAN_ID_LEN 26

typedef struct {
    uint64_t last_ms;  /* last millisecond value handed out */
    uint64_t next_seq; /* next sequence number (>= 1) */
} chan_id_gen_t;

/*  Next id at wall time now_ms: writes CHAN_ID_LEN characters (no NUL) to
    out and returns the sequence number it carries. */
uint64_t chan_id_next (chan_id_gen_t *gen, int64_t now_ms, char *out);

/*  Formats (ms, seq) as an id. */
void chan_id_format (uint64_t ms, uint64_t seq, char *out);

/*  Parses an id; true and *seq (and *ms if not NULL) when it is well formed.
    Lower-case letters are accepted; the Crockford aliases are not. */
bool chan_id_parse (const char *s, size_t len, uint64_t *seq, uint64_t *ms);

#endif
