/*  chan_req.c — request decoding: command word, body map, typed fields.
    Runs once per request on the switchboard's hot path, so it makes one pass
    over the body and allocates nothing. */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "aaax.h"
#include "chan_id.h"
#include "chan_mpk.h"
#include "chan_req.h"

static const char *s_names[CHAN_CMD_COUNT] = {
    [CHAN_CMD_UNKNOWN] = "?",   [CHAN_CMD_HELLO] = "HELLO",
    [CHAN_CMD_WRITE] = "WRITE", [CHAN_CMD_SUB] = "SUB",
    [CHAN_CMD_UNSUB] = "UNSUB", [CHAN_CMD_CLAIM] = "CLAIM",
    [CHAN_CMD_ACK] = "ACK",     [CHAN_CMD_NACK] = "NACK",
    [CHAN_CMD_SEND] = "SEND",   [CHAN_CMD_PING] = "PING",
    [CHAN_CMD_BYE] = "BYE",     [CHAN_CMD_STAT] = "STAT",
    [CHAN_CMD_CTL] = "CTL",
};

const char *
chan_req_command_name (chan_cmd_t cmd)
{
    return cmd > 0 && cmd < CHAN_CMD_COUNT ? s_names[cmd] : "?";
}

chan_cmd_t
chan_req_command (const void *word, size_t len)
{
    if (len == 0 || len > 5)
        return CHAN_CMD_UNKNOWN;
    const char *w = (const char *) word;
    for (int c = 1; c < CHAN_CMD_COUNT; c++)
        if (s_names[c][0] == w[0] && strlen (s_names[c]) == len
            && memcmp (s_names[c], word, len) == 0)
            return (chan_cmd_t) c;
    return CHAN_CMD_UNKNOWN;
}

/*  Known keys: name, bit, and the reader for its value. */
typedef enum {
    K_UINT,
    K_STR,
    K_STR_OR_NIL,
    K_BOOL,
    K_ANY,
    K_STRS,
    K_BATCH /* an array of data values, or a boolean (SUB) */
} kind_t;

typedef struct {
    const char *name;
    uint32_t bit;
    kind_t kind;
    uint32_t max; /* strings: max bytes; arrays: max elements; uints: max */
    uint8_t len;  /* strlen (name), filled in by the table's macro */
} key_t_;

#define KEY(n, bit, kind, max)            \
    {                                     \
        n, bit, kind, max, sizeof (n) - 1 \
    }

static const key_t_ s_keys[] = {
    KEY ("req", CHAN_F_REQ, K_UINT, 0),
    KEY ("system", CHAN_F_SYSTEM, K_STR, AAAX_MAX_NAME),
    KEY ("version", CHAN_F_VERSION, K_UINT, 0),
    KEY ("token", CHAN_F_TOKEN, K_STR, 256),
    KEY ("channels", CHAN_F_CHANNELS, K_STRS, AAAX_MAX_HELLO_CHANNELS),
    KEY ("privileged", CHAN_F_PRIVILEGED, K_BOOL, 0),
    KEY ("chan", CHAN_F_CHAN, K_STR, AAAX_MAX_NAME + 1),
    KEY ("data", CHAN_F_DATA, K_ANY, 0),
    KEY ("to", CHAN_F_TO, K_STR_OR_NIL, AAAX_MAX_NAME),
    KEY ("corr", CHAN_F_CORR, K_STR_OR_NIL, AAAX_MAX_KEY),
    KEY ("key", CHAN_F_KEY, K_STR_OR_NIL, AAAX_MAX_KEY),
    KEY ("since", CHAN_F_SINCE, K_STR_OR_NIL, 64),
    KEY ("max", CHAN_F_MAX, K_UINT, 0),
    KEY ("wait_ms", CHAN_F_WAIT_MS, K_UINT, 0),
    KEY ("lease_ms", CHAN_F_LEASE_MS, K_UINT, 0),
    KEY ("ids", CHAN_F_IDS, K_STRS, AAAX_MAX_IDS),
    KEY ("delay_ms", CHAN_F_DELAY_MS, K_UINT, 0),
    KEY ("keep_leases", CHAN_F_KEEP_LEASES, K_BOOL, 0),
    KEY ("op", CHAN_F_OP, K_STR, 32),
    KEY ("cap", CHAN_F_CAP, K_STR, 64),
    KEY ("rights", CHAN_F_RIGHTS, K_STRS, 16),
    KEY ("expires", CHAN_F_EXPIRES, K_UINT, 0),
    KEY ("state", CHAN_F_STATE, K_STR, 16),
    KEY ("resume", CHAN_F_RESUME, K_STR, 64),
    KEY ("ttl_ms", CHAN_F_TTL_MS, K_UINT, 0),
    KEY ("batch", CHAN_F_BATCH, K_BATCH, AAAX_MAX_BATCH),
    KEY ("transient", CHAN_F_TRANSIENT, K_BOOL, 0),
    KEY ("noreply", CHAN_F_NOREPLY, K_BOOL, 0),
};
#define NKEYS (sizeof s_keys / sizeof s_keys[0])

static const key_t_ *
s_key (const char *ptr, uint32_t len)
{
    /*  Called for every field of every request: compare the length and the
        first byte before the bytes. */
    if (len == 0)
        return NULL;
    for (size_t i = 0; i < NKEYS; i++)
        if (s_keys[i].len == len && s_keys[i].name[0] == ptr[0]
            && memcmp (s_keys[i].name, ptr, len) == 0)
            return &s_keys[i];
    return NULL;
}

static int s_fail (char *why, size_t whylen, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_fail (char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (why, whylen, fmt, ap);
    va_end (ap);
    return AAAX_EINVAL;
}

static const char *
s_type_name (chan_mpk_type_t t)
{
    switch (t) {
    case CHAN_MPK_NIL: return "nil";
    case CHAN_MPK_BOOL: return "bool";
    case CHAN_MPK_UINT: return "uint";
    case CHAN_MPK_INT: return "negative int";
    case CHAN_MPK_FLOAT: return "float";
    case CHAN_MPK_STR: return "str";
    case CHAN_MPK_BIN: return "bin";
    case CHAN_MPK_ARRAY: return "array";
    case CHAN_MPK_MAP: return "map";
    case CHAN_MPK_EXT: return "ext";
    }
    return "?";
}

/*  Which fields each command must carry (besides req). */
static uint32_t
s_required (chan_cmd_t cmd)
{
    switch (cmd) {
    case CHAN_CMD_HELLO: return CHAN_F_SYSTEM | CHAN_F_VERSION;
    case CHAN_CMD_WRITE: return CHAN_F_CHAN | CHAN_F_DATA;
    case CHAN_CMD_SUB:
    case CHAN_CMD_UNSUB:
    case CHAN_CMD_CLAIM: return CHAN_F_CHAN;
    case CHAN_CMD_ACK:
    case CHAN_CMD_NACK: return CHAN_F_CHAN | CHAN_F_IDS;
    case CHAN_CMD_SEND: return CHAN_F_TO | CHAN_F_DATA;
    case CHAN_CMD_CTL: return CHAN_F_OP;
    default: return 0;
    }
}

static chan_span_t *
s_span_for (chan_req_t *req, uint32_t bit)
{
    switch (bit) {
    case CHAN_F_SYSTEM: return &req->system;
    case CHAN_F_TOKEN: return &req->token;
    case CHAN_F_CHAN: return &req->chan;
    case CHAN_F_TO: return &req->to;
    case CHAN_F_CORR: return &req->corr;
    case CHAN_F_KEY: return &req->key;
    case CHAN_F_SINCE: return &req->since;
    case CHAN_F_OP: return &req->op;
    case CHAN_F_CAP: return &req->cap;
    case CHAN_F_STATE: return &req->state;
    case CHAN_F_RESUME: return &req->resume;
    default: return NULL;
    }
}

static uint64_t *
s_uint_for (chan_req_t *req, uint32_t bit)
{
    switch (bit) {
    case CHAN_F_VERSION: return &req->version;
    case CHAN_F_MAX: return &req->max;
    case CHAN_F_WAIT_MS: return &req->wait_ms;
    case CHAN_F_LEASE_MS: return &req->lease_ms;
    case CHAN_F_DELAY_MS: return &req->delay_ms;
    case CHAN_F_EXPIRES: return &req->expires;
    case CHAN_F_TTL_MS: return &req->ttl_ms;
    default: return NULL;
    }
}

static int
s_check_bounds (chan_req_t *req, char *why, size_t whylen)
{
    char msg[128];
    if ((req->fields & CHAN_F_VERSION)
        && req->version != AAAX_PROTOCOL_VERSION) {
        snprintf (msg, sizeof msg,
                  "unsupported protocol version %llu (this "
                  "kernel speaks %d)",
                  (unsigned long long) req->version, AAAX_PROTOCOL_VERSION);
        return s_fail (why, whylen, "%s", msg);
    }
    if (!(req->fields & CHAN_F_MAX))
        req->max = 1;
    else if (req->max < 1 || req->max > AAAX_MAX_CLAIM) {
        snprintf (msg, sizeof msg, "\"max\" must be 1..%d", AAAX_MAX_CLAIM);
        return s_fail (why, whylen, "%s", msg);
    }
    if (req->wait_ms > CHAN_REQ_MAX_WAIT_MS) {
        snprintf (msg, sizeof msg, "\"wait_ms\" must be at most %u",
                  CHAN_REQ_MAX_WAIT_MS);
        return s_fail (why, whylen, "%s", msg);
    }
    if ((req->fields & CHAN_F_LEASE_MS)
        && (req->lease_ms < 1 || req->lease_ms > CHAN_REQ_MAX_LEASE_MS)) {
        snprintf (msg, sizeof msg, "\"lease_ms\" must be 1..%u",
                  CHAN_REQ_MAX_LEASE_MS);
        return s_fail (why, whylen, "%s", msg);
    }
    if (req->delay_ms > CHAN_REQ_MAX_DELAY_MS) {
        snprintf (msg, sizeof msg, "\"delay_ms\" must be at most %u",
                  CHAN_REQ_MAX_DELAY_MS);
        return s_fail (why, whylen, "%s", msg);
    }
    if (req->since.ptr && req->since.len > 0
        && !chan_id_parse (req->since.ptr, req->since.len, &req->since_seq,
                           NULL))
        return s_fail (why, whylen, "%s",
                       "\"since\" must be a message id "
                       "(or \"\" for everything retained)");
    if (req->key.ptr
        && (req->key.len == 0 || memchr (req->key.ptr, 0, req->key.len)))
        return s_fail (why, whylen, "%s",
                       "\"key\" must be 1..256 bytes "
                       "without NUL");
    return 0;
}

static int s_decode (chan_req_t *req, const void *cmd, size_t cmdlen,
                     const void *body, size_t bodylen, char *why,
                     size_t whylen);

int
chan_req_decode (chan_req_t *req, const void *cmd, size_t cmdlen,
                 const void *body, size_t bodylen, char *why, size_t whylen)
{
    int rc = s_decode (req, cmd, cmdlen, body, bodylen, why, whylen);
    /*  An error echoes req even when a field before it was the problem. */
    if (rc != 0 && !req->has_req)
        req->has_req = chan_req_peek_req (body, bodylen, &req->req);
    return rc;
}

static int
s_decode (chan_req_t *req, const void *cmd, size_t cmdlen, const void *body,
          size_t bodylen, char *why, size_t whylen)
{
    memset (req, 0, sizeof *req);
    req->cmd = chan_req_command (cmd, cmdlen);

    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, body, bodylen);
    chan_mpk_obj_t o;
    if (chan_mpk_next (&r, &o) != 0 || o.type != CHAN_MPK_MAP)
        return s_fail (why, whylen, "%s", "body must be one msgpack map");
    uint32_t pairs = o.v.n;
    uint32_t seen = 0; /* keys read so far, nil ones included */
    for (uint32_t i = 0; i < pairs; i++) {
        chan_mpk_obj_t k;
        if (chan_mpk_next (&r, &k) != 0)
            return s_fail (why, whylen, "%s", "body is not valid msgpack");
        if (k.type != CHAN_MPK_STR)
            return s_fail (why, whylen, "%s", "body keys must be strings");
        const key_t_ *key = s_key (k.ptr, k.len);
        if (!key) {
            /*  Unknown keys are ignored, but must still be valid msgpack. */
            if (chan_mpk_skip (&r, AAAX_MAX_DEPTH - 1) != 0)
                return s_fail (why, whylen, "%s",
                               "body is not valid msgpack or nests too deep");
            continue;
        }
        if (seen & key->bit)
            return s_fail (why, whylen, "duplicate key \"%s\"", key->name);
        seen |= key->bit;
        req->fields |= key->bit;

        if (key->kind == K_ANY) {
            const char *start = (const char *) r.p;
            if (chan_mpk_skip (&r, AAAX_MAX_DATA_DEPTH + 1) != 0)
                return s_fail (why, whylen,
                               "\"%s\" is not valid msgpack or "
                               "nests too deep",
                               key->name);
            req->data.ptr = start;
            req->data.len = (uint32_t) ((const char *) r.p - start);
            continue;
        }
        chan_mpk_obj_t v;
        if (chan_mpk_next (&r, &v) != 0)
            return s_fail (why, whylen, "\"%s\" is not valid msgpack",
                           key->name);
        if (v.type == CHAN_MPK_NIL) {
            /*  nil is as absent, for every field (a required one is then
                missing). */
            req->fields &= ~key->bit;
            continue;
        }
        switch (key->kind) {
        case K_UINT:
            if (v.type != CHAN_MPK_UINT) {
                char msg[96];
                snprintf (msg, sizeof msg,
                          "\"%s\" must be an unsigned "
                          "integer, not %s",
                          key->name, s_type_name (v.type));
                return s_fail (why, whylen, "%s", msg);
            }
            if (key->bit == CHAN_F_REQ) {
                req->has_req = true;
                req->req = v.v.u;
            } else
                *s_uint_for (req, key->bit) = v.v.u;
            break;
        case K_BOOL:
            if (v.type != CHAN_MPK_BOOL)
                return s_fail (why, whylen, "\"%s\" must be a boolean",
                               key->name);
            if (key->bit == CHAN_F_PRIVILEGED)
                req->privileged = v.v.b;
            else if (key->bit == CHAN_F_TRANSIENT)
                req->transient = v.v.b;
            else if (key->bit == CHAN_F_NOREPLY)
                req->noreply = v.v.b;
            else
                req->keep_leases = v.v.b;
            break;
        case K_STR:
        case K_STR_OR_NIL:
            if (v.type != CHAN_MPK_STR)
                return s_fail (why, whylen, "\"%s\" must be a string",
                               key->name);
            if (v.len > key->max)
                return s_fail (why, whylen, "\"%s\" is too long", key->name);
            s_span_for (req, key->bit)->ptr = v.ptr;
            s_span_for (req, key->bit)->len = v.len;
            break;
        case K_STRS: {
            if (v.type != CHAN_MPK_ARRAY)
                return s_fail (why, whylen,
                               "\"%s\" must be an array of "
                               "strings",
                               key->name);
            if (v.v.n > key->max)
                return s_fail (why, whylen, "\"%s\" has too many entries",
                               key->name);
            const char *start = (const char *) r.p;
            for (uint32_t j = 0; j < v.v.n; j++) {
                chan_mpk_obj_t s;
                if (chan_mpk_next (&r, &s) != 0 || s.type != CHAN_MPK_STR)
                    return s_fail (why, whylen,
                                   "\"%s\" must be an array of "
                                   "strings",
                                   key->name);
                if (s.len > AAAX_MAX_NAME + 1)
                    return s_fail (why, whylen,
                                   "an entry of \"%s\" is too "
                                   "long",
                                   key->name);
            }
            chan_span_t span = { start,
                                 (uint32_t) ((const char *) r.p - start) };
            if (key->bit == CHAN_F_CHANNELS) {
                req->channels = span;
                req->nchannels = v.v.n;
            } else if (key->bit == CHAN_F_RIGHTS) {
                req->rights = span;
                req->nrights = v.v.n;
            } else {
                req->ids = span;
                req->nids = v.v.n;
            }
            break;
        }
        case K_BATCH: {
            if (v.type == CHAN_MPK_BOOL) {
                req->batch_flag = v.v.b;
                break;
            }
            if (v.type != CHAN_MPK_ARRAY)
                return s_fail (why, whylen, "%s",
                               "\"batch\" must be an array of data values "
                               "(WRITE, SEND) or a boolean (SUB)");
            if (v.v.n < 1 || v.v.n > key->max)
                return s_fail (why, whylen, "\"batch\" must hold 1..%u values",
                               key->max);
            const char *start = (const char *) r.p;
            for (uint32_t j = 0; j < v.v.n; j++)
                if (chan_mpk_skip (&r, AAAX_MAX_DATA_DEPTH + 1) != 0)
                    return s_fail (why, whylen, "%s",
                                   "an entry of \"batch\" is not valid "
                                   "msgpack or nests too deep");
            req->batch.ptr = start;
            req->batch.len = (uint32_t) ((const char *) r.p - start);
            req->nbatch = v.v.n;
            break;
        }
        case K_ANY: break;
        }
    }
    if (chan_mpk_remaining (&r) != 0)
        return s_fail (why, whylen, "%s", "trailing bytes after the body map");
    if (req->cmd == CHAN_CMD_UNKNOWN) {
        char word[24];
        size_t n = cmdlen < sizeof word - 4 ? cmdlen : sizeof word - 4;
        size_t j = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = ((const unsigned char *) cmd)[i];
            word[j++] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
        }
        if (n < cmdlen) {
            memcpy (word + j, "...", 3);
            j += 3;
        }
        word[j] = 0;
        return s_fail (why, whylen, "unknown command \"%s\"", word);
    }
    if (!req->has_req)
        return s_fail (why, whylen, "%s", "missing \"req\"");
    uint32_t missing = s_required (req->cmd) & ~req->fields;
    /*  A batch stands for data; it is an array for WRITE and SEND, a
        boolean for SUB. */
    if ((req->fields & CHAN_F_BATCH) && req->cmd != CHAN_CMD_WRITE
        && req->cmd != CHAN_CMD_SEND && req->cmd != CHAN_CMD_SUB) {
        /*  Meaningless elsewhere: ignored, as an unknown key is. */
        req->fields &= ~CHAN_F_BATCH;
        memset (&req->batch, 0, sizeof req->batch);
        req->nbatch = 0;
        req->batch_flag = false;
    }
    if (req->fields & CHAN_F_BATCH) {
        bool writes = req->cmd == CHAN_CMD_WRITE || req->cmd == CHAN_CMD_SEND;
        if (writes && !req->nbatch)
            return s_fail (why, whylen, "%s",
                           "\"batch\" of WRITE and SEND must be an array "
                           "of data values");
        if (req->cmd == CHAN_CMD_SUB && req->nbatch)
            return s_fail (why, whylen, "%s",
                           "\"batch\" of SUB must be a boolean");
        if (writes && (req->fields & CHAN_F_DATA))
            return s_fail (why, whylen, "%s",
                           "give \"data\" or \"batch\", not both");
        if (writes && (req->fields & CHAN_F_KEY))
            return s_fail (why, whylen, "%s",
                           "an idempotency \"key\" names one message: it "
                           "cannot be used with \"batch\"");
        if (writes)
            missing &= ~CHAN_F_DATA;
    }
    /*  An enrolling HELLO may leave the system id to its token. */
    if (req->cmd == CHAN_CMD_HELLO && (req->fields & CHAN_F_TOKEN)
        && !req->privileged)
        missing &= ~CHAN_F_SYSTEM;
    if (missing) {
        for (size_t i = 0; i < NKEYS; i++)
            if (missing & s_keys[i].bit) {
                char msg[96];
                snprintf (msg, sizeof msg, "%s needs \"%s\"",
                          chan_req_command_name (req->cmd), s_keys[i].name);
                return s_fail (why, whylen, "%s", msg);
            }
    }
    if (req->cmd == CHAN_CMD_CTL && !(req->fields & CHAN_F_SYSTEM)) {
        /*  The ops that act on a system need it (a 400 before any 403). */
        static const char *const with_system[] = { "pause", "resume", "kill" };
        for (size_t i = 0; i < 3; i++)
            if (req->op.len == strlen (with_system[i])
                && memcmp (req->op.ptr, with_system[i], req->op.len) == 0)
                return s_fail (why, whylen, "CTL %s needs \"system\"",
                               with_system[i]);
    }
    return s_check_bounds (req, why, whylen);
}

bool
chan_req_peek_req (const void *body, size_t bodylen, uint64_t *out)
{
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, body, bodylen);
    chan_mpk_obj_t o;
    if (chan_mpk_next (&r, &o) != 0 || o.type != CHAN_MPK_MAP)
        return false;
    for (uint32_t i = 0; i < o.v.n; i++) {
        chan_mpk_obj_t k, v;
        if (chan_mpk_next (&r, &k) != 0 || k.type != CHAN_MPK_STR)
            return false;
        if (k.len == 3 && memcmp (k.ptr, "req", 3) == 0) {
            if (chan_mpk_next (&r, &v) != 0 || v.type != CHAN_MPK_UINT)
                return false;
            *out = v.v.u;
            return true;
        }
        if (chan_mpk_skip (&r, AAAX_MAX_DEPTH - 1) != 0)
            return false;
    }
    return false;
}

bool
chan_req_next_str (chan_span_t array, size_t *pos, chan_span_t *out)
{
    if (*pos >= array.len)
        return false;
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, array.ptr + *pos, array.len - *pos);
    chan_mpk_obj_t o;
    if (chan_mpk_next (&r, &o) != 0 || o.type != CHAN_MPK_STR)
        return false;
    out->ptr = o.ptr;
    out->len = o.len;
    *pos = (size_t) ((const char *) r.p - array.ptr);
    return true;
}

bool
chan_req_next_value (chan_span_t batch, size_t *pos, chan_span_t *out)
{
    if (*pos >= batch.len)
        return false;
    chan_mpk_reader_t r;
    chan_mpk_reader_init (&r, batch.ptr + *pos, batch.len - *pos);
    if (chan_mpk_skip (&r, AAAX_MAX_DATA_DEPTH + 1) != 0)
        return false;
    out->ptr = batch.ptr + *pos;
    out->len = (uint32_t) ((const char *) r.p - out->ptr);
    *pos += out->len;
    return true;
}
