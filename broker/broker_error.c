/*  broker_error.c — the one place where project error codes become the
    protocol's numeric codes (contract section 5). */

#include "aaax.h"
#include "broker.h"

int
broker_error_code (int e)
{
    switch (e) {
    case AAAX_EINVAL:
    case AAAX_EPROTO: return 400;
    case AAAX_EAUTH: return 401;
    case AAAX_EPERM: return 403;
    case AAAX_ENOENT: return 404;
    case AAAX_EEXIST: return 409;
    case AAAX_ETOOBIG: return 413;
    case AAAX_EPAUSED: return 423;
    case AAAX_ELIMIT: return 429;
    case AAAX_ESHUTDOWN: return 503;
    default: return 500;
    }
}
