/*  cli_kernel.c — requests to the kernel's actors over chan_client, and the
    pure helpers of the CLI's kernel subcommands (see cli_kernel.h). */

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aaax.h"
#include "chan_client.h"
#include "chan_mpk.h"
#include "cli_json.h"
#include "cli_kernel.h"
#include "hal_clock.h"

void
cli_kernel_reply_fini (cli_kernel_reply_t *reply)
{
    if (!reply)
        return;
    chan_reply_fini (&reply->msg);
    memset (reply, 0, sizeof *reply);
}

void
cli_kernel_init (cli_kernel_t *self, chan_client_t *client, const char *system)
{
    memset (self, 0, sizeof *self);
    self->client = client;
    snprintf (self->mailbox, sizeof self->mailbox, "@%s", system);
}

/*  ---- classifying pushes ---------------------------------------------- */

static bool
s_str_eq (const msgpack_object *o, const char *s)
{
    size_t len = strlen (s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == len
           && memcmp (o->via.str.ptr, s, len) == 0;
}

static bool
s_from_kernel (const msgpack_object *env)
{
    const char *from;
    size_t len;
    return chan_obj_get_str (env, "from", &from, &len) && len > 7
           && memcmp (from, "kernel.", 7) == 0;
}

cli_kernel_kind_t
cli_kernel_classify (const msgpack_object *push, const char *mailbox,
                     const char *corr)
{
    if (!push || push->type != MSGPACK_OBJECT_MAP)
        return CLI_KERNEL_OTHER;
    const msgpack_object *env = chan_obj_get (push, "msg");
    if (!s_str_eq (chan_obj_get (push, "sub"), mailbox) || !env
        || env->type != MSGPACK_OBJECT_MAP || !s_from_kernel (env))
        return CLI_KERNEL_OTHER;
    if (corr && s_str_eq (chan_obj_get (env, "corr"), corr))
        return CLI_KERNEL_ANSWER;
    return CLI_KERNEL_STALE;
}

/*  ---- requests -------------------------------------------------------- */

/*  ACK of one id of our mailbox: waited for (sync) or not. */
static int
s_ack (cli_kernel_t *self, const msgpack_object *env, bool sync)
{
    const char *id;
    size_t len;
    char idbuf[AAAX_MAX_KEY + 1];
    if (!chan_obj_get_str (env, "id", &id, &len) || len >= sizeof idbuf)
        return 0;
    memcpy (idbuf, id, len);
    idbuf[len] = 0;
    const char *ids[1] = { idbuf };
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", self->mailbox);
    chan_body_strv (&b, "ids", ids, 1);
    int rc;
    if (sync) {
        chan_reply_t r;
        memset (&r, 0, sizeof r);
        rc = chan_client_call (self->client, "ACK", &b, &r);
        chan_reply_fini (&r);
    } else
        rc = chan_client_send (self->client, "ACK", &b, NULL);
    chan_body_fini (&b);
    return rc;
}

int
cli_kernel_await (cli_kernel_t *self, const char *corr, int64_t timeout_ms,
                  cli_kernel_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    self->stopped = false;
    self->err[0] = 0;
    snprintf (reply->id, sizeof reply->id, "%s", corr);
    uint32_t hb = chan_client_heartbeat_ms (self->client);
    int64_t tick = (hb ? hb : 1000) / 2;
    if (tick < 10)
        tick = 10;
    int64_t now = hal_clock_mono_ms ();
    int64_t deadline = now + (timeout_ms > 0 ? timeout_ms : 0);
    int64_t next_ping = now + tick;
    for (;;) {
        if (self->stop && *self->stop) {
            self->stopped = true;
            snprintf (self->err, sizeof self->err,
                      "interrupted while waiting for the answer to %s", corr);
            return AAAX_ETIMEDOUT;
        }
        now = hal_clock_mono_ms ();
        if (now >= deadline) {
            snprintf (self->err, sizeof self->err,
                      "no answer to %s within %" PRId64 " ms", corr,
                      timeout_ms);
            return AAAX_ETIMEDOUT;
        }
        if (now >= next_ping) {
            if (chan_client_send (self->client, "PING", NULL, NULL) != 0) {
                snprintf (self->err, sizeof self->err,
                          "cannot reach the kernel");
                return AAAX_EIO;
            }
            next_ping = now + tick;
        }
        int64_t wait = (next_ping < deadline ? next_ping : deadline) - now;
        /*  Short slices, so that a signal is seen soon. */
        if (wait > 200)
            wait = 200;
        chan_reply_t r;
        memset (&r, 0, sizeof r);
        int rc = chan_client_recv (self->client, &r, (int) wait);
        if (rc == AAAX_ETIMEDOUT)
            continue;
        if (rc) {
            snprintf (self->err, sizeof self->err, "the connection failed: %s",
                      aaax_strerror (rc));
            return rc;
        }
        if (strcmp (r.cmd, "MSG") == 0) {
            cli_kernel_kind_t kind =
                cli_kernel_classify (&r.body, self->mailbox, corr);
            const msgpack_object *env = chan_obj_get (&r.body, "msg");
            if (kind == CLI_KERNEL_ANSWER) {
                reply->msg = r;
                reply->env = chan_obj_get (&reply->msg.body, "msg");
                reply->data = chan_obj_get (reply->env, "data");
                /*  A failed ACK only means the answer comes again at the
                    next dock, where it is stale and dropped. */
                s_ack (self, reply->env, true);
                return 0;
            }
            if (kind == CLI_KERNEL_STALE) {
                self->skipped++;
                s_ack (self, env, false);
            }
        } else if (strcmp (r.cmd, "ERROR") == 0
                   && chan_reply_code (&r) == 401) {
            char reason[256];
            snprintf (self->err, sizeof self->err,
                      "the kernel undocked this session (ERROR 401: %s)",
                      chan_reply_reason (&r, reason, sizeof reason));
            chan_reply_fini (&r);
            return AAAX_EAUTH;
        }
        /*  PONG, the OKs of ACKs, DROPPED, other ERRORs: nothing to do. */
        chan_reply_fini (&r);
    }
}

int
cli_kernel_request (cli_kernel_t *self, const char *chan, const void *req,
                    size_t reqlen, int64_t timeout_ms,
                    cli_kernel_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    self->code = 0;
    self->stopped = false;
    self->err[0] = 0;
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", chan);
    chan_body_raw (&b, "data", req, reqlen);
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    int rc = chan_client_call (self->client, "WRITE", &b, &r);
    chan_body_fini (&b);
    if (rc) {
        if (rc == AAAX_ETIMEDOUT)
            snprintf (self->err, sizeof self->err,
                      "no answer to WRITE on %s (is aaaxd running?)", chan);
        else
            snprintf (self->err, sizeof self->err, "WRITE on %s: %s", chan,
                      aaax_strerror (rc));
        chan_reply_fini (&r);
        return rc;
    }
    if (strcmp (r.cmd, "ERROR") == 0) {
        char reason[400];
        self->code = chan_reply_code (&r);
        snprintf (self->err, sizeof self->err, "ERROR %d: %s", self->code,
                  chan_reply_reason (&r, reason, sizeof reason));
        chan_reply_fini (&r);
        return chan_client_error_of (self->code);
    }
    const char *id;
    size_t len;
    char idbuf[64];
    if (strcmp (r.cmd, "OK") != 0
        || !chan_obj_get_str (&r.body, "id", &id, &len)
        || len >= sizeof idbuf) {
        snprintf (self->err, sizeof self->err,
                  "the kernel's answer to WRITE carries no id");
        chan_reply_fini (&r);
        return AAAX_EPROTO;
    }
    memcpy (idbuf, id, len);
    idbuf[len] = 0;
    chan_reply_fini (&r);
    rc = cli_kernel_await (self, idbuf, timeout_ms, reply);
    if (rc == AAAX_ETIMEDOUT && !self->stopped)
        snprintf (self->err, sizeof self->err,
                  "no answer from %s within %" PRId64
                  " ms (request %s; is the kernel actor running?)",
                  chan, timeout_ms, idbuf);
    return rc;
}

/*  ---- pure helpers ---------------------------------------------------- */

int
cli_kernel_pack_list (msgpack_packer *pk, const char *csv)
{
    if (!csv || !*csv)
        return AAAX_EINVAL;
    uint32_t n = 1;
    for (const char *p = csv; *p; p++) {
        if (*p == ',') {
            if (p[1] == ',' || p[1] == 0 || p == csv)
                return AAAX_EINVAL;
            n++;
        }
    }
    msgpack_pack_array (pk, n);
    const char *start = csv;
    for (const char *p = csv;; p++) {
        if (*p == ',' || *p == 0) {
            chan_pack_str (pk, start, (size_t) (p - start));
            if (*p == 0)
                break;
            start = p + 1;
        }
    }
    return 0;
}

static void
s_pack_hex (msgpack_packer *pk, const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *) data;
    msgpack_pack_str (pk, len * 2);
    char chunk[128];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        chunk[n++] = digits[p[i] >> 4];
        chunk[n++] = digits[p[i] & 15];
        if (n == sizeof chunk) {
            msgpack_pack_str_body (pk, chunk, n);
            n = 0;
        }
    }
    if (n)
        msgpack_pack_str_body (pk, chunk, n);
}

static bool
s_too_deep (const msgpack_object *o, int depth)
{
    if (o->type != MSGPACK_OBJECT_ARRAY && o->type != MSGPACK_OBJECT_MAP)
        return false;
    if (depth > CLI_KERNEL_MAX_DEPTH)
        return true;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (s_too_deep (&o->via.array.ptr[i], depth + 1))
                return true;
        return false;
    }
    for (uint32_t i = 0; i < o->via.map.size; i++)
        if (s_too_deep (&o->via.map.ptr[i].key, depth + 1)
            || s_too_deep (&o->via.map.ptr[i].val, depth + 1))
            return true;
    return false;
}

/*  o, bins as hex; the depth was checked before. */
static void
s_hexify (msgpack_packer *pk, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_BIN:
        s_pack_hex (pk, o->via.bin.ptr, o->via.bin.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        msgpack_pack_array (pk, o->via.array.size);
        for (uint32_t i = 0; i < o->via.array.size; i++)
            s_hexify (pk, &o->via.array.ptr[i]);
        break;
    case MSGPACK_OBJECT_MAP:
        msgpack_pack_map (pk, o->via.map.size);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            s_hexify (pk, &o->via.map.ptr[i].key);
            s_hexify (pk, &o->via.map.ptr[i].val);
        }
        break;
    default: msgpack_pack_object (pk, *o); break;
    }
}

int
cli_kernel_hexify (const msgpack_object *o, chan_buf_t *out)
{
    if (s_too_deep (o, 1))
        return AAAX_EINVAL;
    size_t len = out->len;
    msgpack_packer pk;
    chan_buf_packer (out, &pk);
    s_hexify (&pk, o);
    if (out->oom) {
        out->len = len;
        return AAAX_ENOMEM;
    }
    return 0;
}

/*  Unpacks exactly one value of buf into u. */
static bool
s_unpack (msgpack_unpacked *u, const void *data, size_t len)
{
    size_t off = 0;
    return msgpack_unpack_next (u, (const char *) data, len, &off)
               == MSGPACK_UNPACK_SUCCESS
           && off == len;
}

char *
cli_kernel_audit_json (uint64_t seq, const uint8_t hash[32], const void *body,
                       size_t bodylen, char *err, size_t errlen)
{
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    bool ok = s_unpack (&u, body, bodylen) && u.data.type == MSGPACK_OBJECT_MAP
              && !s_too_deep (&u.data, 1);
    chan_buf_t buf;
    chan_buf_init (&buf);
    msgpack_packer pk;
    chan_buf_packer (&buf, &pk);
    if (ok) {
        const msgpack_object_map *m = &u.data.via.map;
        uint32_t n = 2;
        for (uint32_t i = 0; i < m->size; i++)
            if (!s_str_eq (&m->ptr[i].key, "seq"))
                n++;
        msgpack_pack_map (&pk, n);
        chan_pack_cstr (&pk, "seq");
        msgpack_pack_uint64 (&pk, seq);
        chan_pack_cstr (&pk, "hash");
        s_pack_hex (&pk, hash, 32);
        for (uint32_t i = 0; i < m->size; i++) {
            if (s_str_eq (&m->ptr[i].key, "seq"))
                continue;
            s_hexify (&pk, &m->ptr[i].key);
            s_hexify (&pk, &m->ptr[i].val);
        }
    } else {
        msgpack_pack_map (&pk, 4);
        chan_pack_cstr (&pk, "seq");
        msgpack_pack_uint64 (&pk, seq);
        chan_pack_cstr (&pk, "hash");
        s_pack_hex (&pk, hash, 32);
        chan_pack_cstr (&pk, "error");
        chan_pack_cstr (&pk, "the body is not a msgpack map");
        chan_pack_cstr (&pk, "body");
        s_pack_hex (&pk, body, bodylen);
    }
    msgpack_unpacked_destroy (&u);
    char *text = NULL;
    if (buf.oom)
        aaax_seterr (err, errlen, "out of memory");
    else {
        msgpack_unpacked v;
        msgpack_unpacked_init (&v);
        if (s_unpack (&v, buf.data, buf.len))
            text = cli_msgpack_to_json (&v.data, CLI_JSON_COMPACT, err, errlen);
        else
            aaax_seterr (err, errlen, "cannot read the record back");
        msgpack_unpacked_destroy (&v);
    }
    chan_buf_fini (&buf);
    return text;
}

int
cli_kernel_cap_load (const void *text, size_t len, chan_buf_t *out, char *err,
                     size_t errlen)
{
    const uint8_t *p = (const uint8_t *) text;
    size_t skip = 0;
    if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
        skip = 3; /* a UTF-8 byte order mark */
    while (skip < len
           && (p[skip] == ' ' || p[skip] == '\t' || p[skip] == '\n'
               || p[skip] == '\r'))
        skip++;
    if (skip == len) {
        aaax_seterr (err, errlen, "the file is empty");
        return AAAX_EINVAL;
    }
    chan_buf_t packed;
    chan_buf_init (&packed);
    const void *data = text;
    size_t datalen = len;
    if (p[skip] == '{') {
        char jerr[256];
        int rc = cli_json_to_msgpackn ((const char *) p + skip, len - skip,
                                       &packed, jerr, sizeof jerr);
        if (rc) {
            aaax_seterr (err, errlen, "%s", jerr);
            chan_buf_fini (&packed);
            return rc;
        }
        data = packed.data;
        datalen = packed.len;
    } else if (!chan_mpk_valid (text, len, CLI_KERNEL_MAX_DEPTH)) {
        aaax_seterr (err, errlen,
                     "neither a JSON object nor one msgpack value");
        return AAAX_EINVAL;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    int rc = 0;
    if (!s_unpack (&u, data, datalen) || u.data.type != MSGPACK_OBJECT_MAP) {
        aaax_seterr (err, errlen, "not a map / JSON object");
        rc = AAAX_EINVAL;
        goto done;
    }
    const msgpack_object *cap = &u.data;
    const msgpack_object *member = chan_obj_get (&u.data, "cap");
    if (member && member->type == MSGPACK_OBJECT_MAP)
        cap = member;
    else if (!chan_obj_get (&u.data, "sig")) {
        const msgpack_object *granted = chan_obj_get (&u.data, "granted");
        const char *reason = "";
        size_t rlen = 0;
        chan_obj_get_str (&u.data, "reason", &reason, &rlen);
        if (granted && granted->type == MSGPACK_OBJECT_BOOLEAN
            && !granted->via.boolean)
            aaax_seterr (err, errlen,
                         "no capability: the grant was refused (%.*s)",
                         (int) (rlen > 200 ? 200 : rlen), reason);
        else
            aaax_seterr (err, errlen,
                         "no capability: neither a \"cap\" member nor a "
                         "\"sig\"");
        rc = AAAX_EINVAL;
        goto done;
    }
    size_t before = out->len;
    msgpack_packer pk;
    chan_buf_packer (out, &pk);
    msgpack_pack_object (&pk, *cap);
    if (out->oom) {
        out->len = before;
        aaax_seterr (err, errlen, "out of memory");
        rc = AAAX_ENOMEM;
    }
done:
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&packed);
    return rc;
}

void
cli_kernel_age (double seconds, char *out, size_t size)
{
    if (!(seconds >= 0)) {
        snprintf (out, size, "-");
        return;
    }
    uint64_t s = (uint64_t) seconds;
    if (s < 60)
        snprintf (out, size, "%" PRIu64 "s", s);
    else if (s < 3600)
        snprintf (out, size, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf (out, size, "%" PRIu64 "h%02" PRIu64 "m", s / 3600,
                  s % 3600 / 60);
    else
        snprintf (out, size, "%" PRIu64 "d%02" PRIu64 "h", s / 86400,
                  s % 86400 / 3600);
}

void
cli_kernel_utc (uint64_t unix_s, char *out, size_t size)
{
    time_t t = (time_t) unix_s;
    struct tm tm;
    if ((uint64_t) t != unix_s || !gmtime_r (&t, &tm)
        || strftime (out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf (out, size, "%" PRIu64, unix_s);
}
