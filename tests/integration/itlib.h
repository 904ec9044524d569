/*  itlib.h — integration-test harness in C: start a real aaaxd in a fresh
    temporary directory on free loopback ports, talk to it with the C client
    or raw sockets, stop it with a signal and read its exit status. */

#ifndef ITLIB_H_INCLUDED
#define ITLIB_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "chan_client.h"

typedef struct {
    const char *aaaxd;
    char dir[256];     /* temporary directory (removed by it_kernel_cleanup) */
    char data[320];    /* data directory */
    char endpoint[64]; /* tcp command endpoint */
    char tap[64];
    char ipc[400];
    char config[400]; /* config file path, or "" */
    char log[400];
    pid_t pid;
} it_kernel_t;

/*  Prepares k (temp dir, ports) for aaaxd at path; config_text may be NULL. */
void it_kernel_init (it_kernel_t *k, const char *aaaxd,
                     const char *config_text);

/*  Starts aaaxd (extra args may be NULL-terminated list or NULL) and waits
    until it answers PING; returns 0 or -1 (its log is printed). */
int it_kernel_start (it_kernel_t *k, const char *const *extra);

/*  Sends sig and waits (up to 20 s); returns the exit status, or -1 when it
    died of a signal or did not stop. */
int it_kernel_stop (it_kernel_t *k, int sig);

/*  SIGKILL and reap. */
void it_kernel_kill9 (it_kernel_t *k);

/*  Removes the temporary directory. */
void it_kernel_cleanup (it_kernel_t *k);

/*  True when the kernel's log shows a sanitizer report. */
bool it_kernel_log_has_sanitizer_report (const it_kernel_t *k);

/*  A client docked as system with channels (NULL-terminated, may be NULL);
    NULL on failure (printed). */
chan_client_t *it_dock (const it_kernel_t *k, const char *system,
                        const char *const *channels);

/*  A privileged client (token from the data dir) over ipc. */
chan_client_t *it_dock_privileged (const it_kernel_t *k, const char *system);

/*  Sends cmd with body, returns the reply's error code (0 for OK/PONG) and
    keeps the reply in *out when out is not NULL (caller finis it). -1 when
    no reply came. */
int it_call (chan_client_t *c, const char *cmd, chan_body_t *body,
             chan_reply_t *out);

/*  WRITE data (a JSON-free msgpack uint payload) to chan; returns the error
    code and the id (27 bytes) when OK. */
int it_write_uint (chan_client_t *c, const char *chan, uint64_t value,
                   char *id);

int it_free_port (void);

#endif
