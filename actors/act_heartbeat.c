/*  act_heartbeat.c — every period: STAT (the switchboard's status, which
    carries the section 7 heartbeat map), then WRITE that map on `heartbeat`.
    Two small round trips a period over inproc; no shared memory with the
    switchboard, as for any other system. */

#include <string.h>
#include <sodium.h>

#include "aaax.h"
#include "act_heartbeat.h"
#include "chan_client.h"
#include "hal_clock.h"

#define SYSTEM_ID "kernel.heartbeat"

typedef struct {
    chan_client_t *client;
    char *token;
    uint32_t period_ms;
    bool docked;
} s_self_t;

static bool
s_dock (s_self_t *self)
{
    chan_reply_t reply;
    const char *channels[] = { "heartbeat" };
    int rc = chan_client_hello (self->client, SYSTEM_ID, self->token, true,
                                channels, 1, &reply);
    if (rc == 0)
        self->docked = true;
    else if (rc != AAAX_ETIMEDOUT) {
        char why[128];
        zsys_error ("heartbeat: cannot dock: %s",
                    chan_reply_reason (&reply, why, sizeof why));
    }
    if (rc != AAAX_ETIMEDOUT && rc != AAAX_EIO)
        chan_reply_fini (&reply);
    return self->docked;
}

/*  One heartbeat: STAT, then WRITE its `heartbeat` map. */
static void
s_beat (s_self_t *self)
{
    if (!self->docked && !s_dock (self))
        return;
    chan_reply_t stat;
    if (chan_client_call (self->client, "STAT", NULL, &stat) != 0) {
        zsys_warning ("heartbeat: no answer to STAT");
        return;
    }
    const msgpack_object *hb = chan_obj_get (&stat.body, "heartbeat");
    if (!hb) {
        char why[128];
        zsys_warning ("heartbeat: STAT refused: %s",
                      chan_reply_reason (&stat, why, sizeof why));
        if (chan_reply_code (&stat) == 401)
            self->docked = false;
        chan_reply_fini (&stat);
        return;
    }
    chan_body_t body;
    chan_body_init (&body);
    chan_body_str (&body, "chan", "heartbeat");
    msgpack_pack_object (chan_body_key (&body, "data"), *hb);
    chan_reply_fini (&stat);
    chan_reply_t ok;
    if (chan_client_call (self->client, "WRITE", &body, &ok) == 0) {
        int code = chan_reply_code (&ok);
        if (code) {
            char why[128];
            zsys_warning ("heartbeat: WRITE refused (%d): %s", code,
                          chan_reply_reason (&ok, why, sizeof why));
            if (code == 401)
                self->docked = false;
        }
        chan_reply_fini (&ok);
    }
    chan_body_fini (&body);
}

void
act_heartbeat (zsock_t *pipe, void *args)
{
    act_heartbeat_args_t *a = (act_heartbeat_args_t *) args;
    s_self_t self = { NULL, NULL, a->heartbeat_ms, false };
    self.token = (char *) sodium_malloc (65);
    if (self.token) {
        memcpy (self.token, a->kernel_token, 64);
        self.token[64] = 0;
    }
    self.client = chan_client_new ("inproc://aaax", 2000);
    /*  Signal first: the switchboard serves our HELLO only after zactor_new
        returns. */
    zsock_signal (pipe, 0);
    if (!self.client || !self.token) {
        zsys_error ("heartbeat: cannot start");
        goto wait_term;
    }
    zpoller_t *poller = zpoller_new (pipe, NULL);
    void *sock = chan_client_socket (self.client);
    int linger = 0;
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    /*  Dock at once: the switchboard says "running" when we are in. */
    s_dock (&self);
    int64_t next = hal_clock_mono_ms () + 20;
    bool stopped = false; /* after SHUTDOWN: no more beats, wait for $TERM */
    while (poller) {
        int64_t wait = next - hal_clock_mono_ms ();
        zmq_pollitem_t items[2] = { { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
                                    { sock, 0, ZMQ_POLLIN, 0 } };
        int rc = zmq_poll (items, 2, stopped ? -1 : wait > 0 ? (long) wait : 0);
        if (rc < 0)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *cmd = zstr_recv (pipe);
            bool term = !cmd || streq (cmd, "$TERM");
            if (cmd && streq (cmd, "SHUTDOWN")) {
                s_beat (&self);
                zstr_send (pipe, "DONE");
                stopped = true;
            } else if (!term)
                zsys_warning ("heartbeat: unknown command %s", cmd);
            zstr_free (&cmd);
            if (term)
                break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            /*  Nothing is expected here; drop what comes. */
            chan_reply_t r;
            if (chan_client_recv (self.client, &r, 0) == 0)
                chan_reply_fini (&r);
        }
        if (stopped)
            next = INT64_MAX;
        else if (hal_clock_mono_ms () >= next) {
            s_beat (&self);
            next = hal_clock_mono_ms () + self.period_ms;
        }
    }
    /*  No BYE: the switchboard has stopped serving when $TERM comes, and it
        drops every session itself. */
    zpoller_destroy (&poller);
    chan_client_destroy (&self.client);
    sodium_free (self.token);
    return;

wait_term:
    chan_client_destroy (&self.client);
    sodium_free (self.token);
    char *cmd;
    while ((cmd = zstr_recv (pipe))) {
        bool term = streq (cmd, "$TERM");
        zstr_free (&cmd);
        if (term)
            break;
    }
}
