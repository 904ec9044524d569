/*  chan_req.h — decodes one request ([COMMAND, BODY] of the command endpoint)
    into a flat struct of spans pointing into the body frame. Checks only what
    can be checked without kernel state: the command word, the body's shape,
    each known field's type and bound, and the fields each command requires. */

#ifndef CHAN_REQ_H_INCLUDED
#define CHAN_REQ_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    CHAN_CMD_UNKNOWN = 0,
    CHAN_CMD_HELLO,
    CHAN_CMD_WRITE,
    CHAN_CMD_SUB,
    CHAN_CMD_UNSUB,
    CHAN_CMD_CLAIM,
    CHAN_CMD_ACK,
    CHAN_CMD_NACK,
    CHAN_CMD_SEND,
    CHAN_CMD_PING,
    CHAN_CMD_BYE,
    CHAN_CMD_STAT, /* extension: kernel status, privileged */
    CHAN_CMD_CTL,  /* extension: systems, grants, policy reload, privileged */
    CHAN_CMD_COUNT
} chan_cmd_t;

/*  Bytes borrowed from the body frame; ptr is NULL when absent. */
typedef struct {
    const char *ptr;
    uint32_t len;
} chan_span_t;

/*  Bits of chan_req_t.fields: which keys the body carried. */
enum {
    CHAN_F_REQ = 1u << 0,
    CHAN_F_SYSTEM = 1u << 1,
    CHAN_F_VERSION = 1u << 2,
    CHAN_F_TOKEN = 1u << 3,
    CHAN_F_CHANNELS = 1u << 4,
    CHAN_F_PRIVILEGED = 1u << 5,
    CHAN_F_CHAN = 1u << 6,
    CHAN_F_DATA = 1u << 7,
    CHAN_F_TO = 1u << 8,
    CHAN_F_CORR = 1u << 9,
    CHAN_F_KEY = 1u << 10,
    CHAN_F_SINCE = 1u << 11,
    CHAN_F_MAX = 1u << 12,
    CHAN_F_WAIT_MS = 1u << 13,
    CHAN_F_LEASE_MS = 1u << 14,
    CHAN_F_IDS = 1u << 15,
    CHAN_F_DELAY_MS = 1u << 16,
    CHAN_F_KEEP_LEASES = 1u << 17,
    CHAN_F_OP = 1u << 18,
    CHAN_F_CAP = 1u << 19,
    CHAN_F_RIGHTS = 1u << 20,
    CHAN_F_EXPIRES = 1u << 21,
    CHAN_F_STATE = 1u << 22,
    CHAN_F_RESUME = 1u << 23,
    CHAN_F_TTL_MS = 1u << 24,
    CHAN_F_BATCH = 1u << 25,
    CHAN_F_TRANSIENT = 1u << 26,
    CHAN_F_NOREPLY = 1u << 27
};

/*  Bounds checked at decode (an ERROR 400 outside them). */
#define CHAN_REQ_MAX_WAIT_MS 600000u    /* CLAIM wait_ms */
#define CHAN_REQ_MAX_LEASE_MS 86400000u /* CLAIM lease_ms (>= 1) */
#define CHAN_REQ_MAX_DELAY_MS 86400000u /* NACK delay_ms */

typedef struct {
    chan_cmd_t cmd;
    bool has_req;
    uint64_t req;
    uint32_t fields;
    chan_span_t system, token, chan, to, corr, key, since, op, cap;
    chan_span_t state;    /* CTL appstate */
    chan_span_t resume;   /* HELLO: the session to take over */
    chan_span_t data;     /* the raw msgpack value */
    chan_span_t channels; /* raw array of strings, nchannels long */
    uint32_t nchannels;
    chan_span_t ids; /* raw array of strings, nids long */
    uint32_t nids;
    chan_span_t rights; /* raw array of strings, nrights long (CTL grant) */
    uint32_t nrights;
    /*  WRITE / SEND `batch`: the raw array's elements (each a data value),
        nbatch of them; SUB `batch`: the boolean in batch_flag. */
    chan_span_t batch;
    uint32_t nbatch;
    bool batch_flag;
    bool transient; /* WRITE / SEND to a mailbox: not kept, pushed once */
    bool noreply;   /* WRITE / SEND: no OK on success (errors still come) */
    uint64_t version, max, wait_ms, lease_ms, delay_ms, expires;
    uint64_t ttl_ms;    /* CTL enroll */
    uint64_t since_seq; /* `since` parsed: 0 for "" (everything retained) */
    bool privileged, keep_leases;
} chan_req_t;

/*  Maps a command word to its chan_cmd_t (CHAN_CMD_UNKNOWN if none). */
chan_cmd_t chan_req_command (const void *word, size_t len);

/*  The command word of a chan_cmd_t ("HELLO", ...). */
const char *chan_req_command_name (chan_cmd_t cmd);

/*  Decodes one request. Returns 0, or AAAX_EINVAL with a reason in why (an
    ERROR 400); req->has_req and req->req are set whenever `req` was read
    before the failure, so the error can echo it. Spans borrow body. */
int chan_req_decode (chan_req_t *req, const void *cmd, size_t cmdlen,
                     const void *body, size_t bodylen, char *why,
                     size_t whylen);

/*  Finds a top-level `req` in a body that is not decoded otherwise (for an
    ERROR 413); true and *out when found. */
bool chan_req_peek_req (const void *body, size_t bodylen, uint64_t *out);

/*  Iterates the strings of an array span (channels or ids) that
    chan_req_decode validated: call with *pos = 0 first; returns false at
    the end. */
bool chan_req_next_str (chan_span_t array, size_t *pos, chan_span_t *out);

/*  Iterates the data values of a WRITE / SEND batch that chan_req_decode
    validated: call with *pos = 0 first; out spans one whole value. */
bool chan_req_next_value (chan_span_t batch, size_t *pos, chan_span_t *out);

#endif
