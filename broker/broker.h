/*  broker.h — aaaxd's switchboard: one ROUTER on every command endpoint, the
    tap XPUB, sessions, the channel table, grants, and the loop that serves
    them (contract sections 1-6). It is the only writer of channel state. */

#ifndef BROKER_H_INCLUDED
#define BROKER_H_INCLUDED

#include <stddef.h>

#include "broker_config.h"

typedef struct _broker_t broker_t;

/*  Opens the data directory, the store, restores channel state, binds every
    endpoint and starts the kernel actors. Takes ownership of *cfg_p (and
    sets it to NULL) on success. Returns NULL with a message in err on
    failure; nothing is left bound or locked then. */
broker_t *broker_new (broker_config_t **cfg_p, char *err, size_t errlen);

/*  Serves until a SIGTERM or SIGINT arrives on sigfd (a signalfd, or -1) or
    "$TERM" on pipe (a zsock_t actor pipe, or NULL), then shuts down
    gracefully: a last heartbeat says "shutdown", commits in flight finish,
    their replies go out. Returns 0. */
int broker_run (broker_t *self, int sigfd, void *pipe);

/*  Closes sockets, the store and the lock, and removes the ipc socket file.
    Accepts NULL. */
void broker_destroy (broker_t **self_p);

/*  The persistent kernel id (borrowed). */
const char *broker_kernel_id (const broker_t *self);

/*  The data directory, absolute (borrowed). */
const char *broker_data_dir (const broker_t *self);

/*  The protocol code (400, 401, ...) for an AAAX_E* code. */
int broker_error_code (int aaax_error);

#endif
