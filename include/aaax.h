/*  aaax.h — the one project-wide header: version, error codes, hard limits.
    Every module returns 0 or a negative AAAX_E* code from here; the protocol's
    numeric codes (400, 403, ...) are made from these in broker_error.c only. */

#ifndef AAAX_H_INCLUDED
#define AAAX_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define AAAX_VERSION_STRING "0.1.0"
#define AAAX_PROTOCOL_VERSION 1

/*  Error codes: 0 is success, every failure is one of these (negative). */
enum {
    AAAX_OK = 0,
    AAAX_EINVAL = -1,     /* malformed or mistyped input */
    AAAX_ENOMEM = -2,     /* allocation failed */
    AAAX_ENOENT = -3,     /* no such channel, system, record or file */
    AAAX_EEXIST = -4,     /* already exists / already docked */
    AAAX_EPERM = -5,      /* denied by policy or missing capability */
    AAAX_ELIMIT = -6,     /* rate or length limit reached */
    AAAX_ETOOBIG = -7,    /* larger than the configured maximum */
    AAAX_EIO = -8,        /* storage or system I/O failed */
    AAAX_ETIMEDOUT = -9,  /* no answer in time */
    AAAX_EPROTO = -10,    /* the peer broke the protocol */
    AAAX_EPAUSED = -11,   /* the system is paused */
    AAAX_EAUTH = -12,     /* not docked, bad token, bad key */
    AAAX_ESHUTDOWN = -13, /* the kernel is shutting down */
    AAAX_EINTERNAL = -14  /* a bug or an impossible state; logged */
};

/*  Returns a static, human-readable description of an AAAX_E* code. */
const char *aaax_strerror (int code);

/*  Formats a message into err (errlen bytes, always NUL-terminated); does
    nothing when err is NULL or errlen is 0. */
void aaax_seterr (char *err, size_t errlen, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/*  Hard limits on anything that comes from outside (peers, files). */
#define AAAX_MAX_NAME 128 /* channel and system ids, bytes */
#define AAAX_MAX_KEY 256  /* idempotency keys, bytes */
#define AAAX_MAX_DEPTH 32 /* msgpack nesting of a request body */
/*  Non-empty containers nested in a payload (`data`): the kernel wraps a
    payload in at most 3 more (CLAIM reply, msgs, envelope), so everything it
    sends stays within 32 levels, the limit of msgpack-c and many decoders. */
#define AAAX_MAX_DATA_DEPTH 28
#define AAAX_MAX_IDS 10000   /* ids in one ACK / NACK */
#define AAAX_MAX_CLAIM 10000 /* messages in one CLAIM */
#define AAAX_MAX_BATCH 10000 /* messages in one WRITE / SEND batch */
#define AAAX_MAX_HELLO_CHANNELS 1024

#endif
