/*  chan_mpk.h — msgpack for the wire: a bounded, zero-copy reader over a frame
    (what peers send), and a growable buffer that msgpack-c's packer writes
    into (what the kernel sends). The reader exists because msgpack-c cannot
    hand back the byte span of a value: the switchboard copies a WRITE's `data`
    into the envelope as bytes, validated but never decoded and re-encoded. */

#ifndef CHAN_MPK_H_INCLUDED
#define CHAN_MPK_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

typedef enum {
    CHAN_MPK_NIL,
    CHAN_MPK_BOOL,
    CHAN_MPK_UINT, /* non-negative integer (any msgpack int encoding) */
    CHAN_MPK_INT,  /* negative integer */
    CHAN_MPK_FLOAT,
    CHAN_MPK_STR,
    CHAN_MPK_BIN,
    CHAN_MPK_ARRAY, /* header only: n elements follow */
    CHAN_MPK_MAP,   /* header only: n key/value pairs follow */
    CHAN_MPK_EXT
} chan_mpk_type_t;

/*  One item as read. Strings, bins and exts point into the reader's buffer:
    borrowed for as long as that buffer lives. */
typedef struct {
    chan_mpk_type_t type;
    union {
        bool b;
        uint64_t u;
        int64_t i;
        double f;
        uint32_t n; /* ARRAY and MAP: element / pair count */
    } v;
    const char *ptr; /* STR, BIN, EXT payload */
    uint32_t len;
    int8_t ext_type;
} chan_mpk_obj_t;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} chan_mpk_reader_t;

void chan_mpk_reader_init (chan_mpk_reader_t *r, const void *data, size_t size);

/*  Bytes not yet read. */
size_t chan_mpk_remaining (const chan_mpk_reader_t *r);

/*  Reads one item; for ARRAY and MAP only the header (the elements follow).
    Returns 0, or AAAX_EINVAL on truncated or invalid input (0xc1), or when a
    container claims more elements than bytes remain. Nothing is consumed on
    error. */
int chan_mpk_next (chan_mpk_reader_t *r, chan_mpk_obj_t *o);

/*  Skips one whole value, checking it on the way: nesting deeper than
    max_depth (the value itself counts 1) or any invalid byte gives
    AAAX_EINVAL. Iterative: no recursion on peer input. */
int chan_mpk_skip (chan_mpk_reader_t *r, int max_depth);

/*  True when data is exactly one valid msgpack value within max_depth. */
bool chan_mpk_valid (const void *data, size_t size, int max_depth);

/*  A growable byte buffer. Embedded: init / fini. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool oom; /* sticky: an append failed; the content is incomplete */
} chan_buf_t;

void chan_buf_init (chan_buf_t *b);
void chan_buf_fini (chan_buf_t *b);
void chan_buf_reset (chan_buf_t *b);
/*  Ensures room for extra more bytes; returns 0 or AAAX_ENOMEM (and sets oom).
 */
int chan_buf_reserve (chan_buf_t *b, size_t extra);
void chan_buf_append (chan_buf_t *b, const void *data, size_t len);

/*  The msgpack_packer write callback for a chan_buf_t (data is the buffer). */
int chan_buf_write_cb (void *data, const char *buf, size_t len);

/*  Initialises pk to append into b. */
void chan_buf_packer (chan_buf_t *b, msgpack_packer *pk);

/*  Packing helpers over msgpack-c. */
void chan_pack_cstr (msgpack_packer *pk, const char *s);
void chan_pack_str (msgpack_packer *pk, const char *s, size_t len);
/*  Packs a string, or nil when s is NULL. */
void chan_pack_str_or_nil (msgpack_packer *pk, const char *s, size_t len);

/*  Smallest map header for n pairs, written to out (up to 5 bytes); returns
    its length. Used to prefix a block of already-packed pairs. */
size_t chan_mpk_map_header (uint32_t n, uint8_t out[5]);

#endif
