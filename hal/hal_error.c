/*  hal_error.c — text for the project-wide AAAX_E* codes of include/aaax.h. */

#include <stdarg.h>
#include <stdio.h>

#include "aaax.h"

const char *
aaax_strerror (int code)
{
    switch (code) {
    case AAAX_OK: return "success";
    case AAAX_EINVAL: return "invalid or malformed input";
    case AAAX_ENOMEM: return "out of memory";
    case AAAX_ENOENT: return "not found";
    case AAAX_EEXIST: return "already exists";
    case AAAX_EPERM: return "permission denied";
    case AAAX_ELIMIT: return "limit reached";
    case AAAX_ETOOBIG: return "too large";
    case AAAX_EIO: return "input/output error";
    case AAAX_ETIMEDOUT: return "timed out";
    case AAAX_EPROTO: return "protocol error";
    case AAAX_EPAUSED: return "system is paused";
    case AAAX_EAUTH: return "not authenticated";
    case AAAX_ESHUTDOWN: return "kernel is shutting down";
    case AAAX_EINTERNAL: return "internal error";
    default: return "unknown error";
    }
}

void
aaax_seterr (char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, errlen, fmt, args);
    va_end (args);
}
