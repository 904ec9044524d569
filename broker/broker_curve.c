/*  broker_curve.c — the switchboard's side of CURVE (docs/REMOTE.md):
    the kernel's certificate, the security options of each endpoint, the
    ZAP handler, and the authorized-keys file kept current while running.

    Who may dock as which system is decided at HELLO (broker_ops.c), not in
    the handshake: on the command endpoint ZAP lets every CURVE key through
    (the handshake has already proved the client holds the key's secret)
    and names it as the connection's User-Id, so an unknown key gets a
    clear 401, and a fresh key can enroll with a one-time token. Only the
    tap, which has no HELLO, checks the key in the handshake. */

#include <errno.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <sodium.h>

#include "broker_impl.h"
#include "broker_config.h"
#include "hal_clock.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

int
broker_curve_init (broker_t *self, char *err, size_t errlen)
{
    self->inotify_fd = -1;
    self->curve_secret = (char *) sodium_malloc (HAL_CURVE_Z85_LEN + 1);
    if (!self->curve_secret) {
        snprintf (err, errlen, "out of memory");
        return AAAX_ENOMEM;
    }
    int rc = hal_curve_server_cert (self->data_dir, true, self->curve_public,
                                    self->curve_secret, err, errlen);
    if (rc != 0)
        return rc;
    self->auth = hal_curve_auth_load (self->data_dir, err, errlen);
    if (!self->auth)
        return AAAX_EIO;
    hal_curve_auth_stamp (self->data_dir, &self->auth_stamp);
    self->enroll = hal_curve_enroll_open (self->data_dir, err, errlen);
    if (!self->enroll)
        return AAAX_EIO;

    const broker_config_t *cfg = self->cfg;
    bool any = false;
    for (size_t i = 0; i < cfg->nbinds; i++) {
        if (broker_config_endpoint_curve (cfg, cfg->binds[i]))
            any = true;
        else if (strncmp (cfg->binds[i], "tcp://", 6) == 0
                 && !broker_config_is_loopback (cfg->binds[i]))
            self->insecure_plain = true;
    }
    if (cfg->tap && *cfg->tap) {
        if (broker_config_endpoint_curve (cfg, cfg->tap))
            any = true;
        else if (strncmp (cfg->tap, "tcp://", 6) == 0
                 && !broker_config_is_loopback (cfg->tap))
            self->insecure_plain = true;
    }
    if (self->insecure_plain)
        zsys_warning ("broker: --insecure: plain TCP on a non-loopback "
                      "address; anyone on the network can read and forge "
                      "this traffic");
    if (any) {
        self->zap = zmq_socket (self->ctx, ZMQ_REP);
        int linger = 0;
        if (!self->zap) {
            snprintf (err, errlen, "cannot create the ZAP socket");
            return AAAX_EIO;
        }
        zmq_setsockopt (self->zap, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_bind (self->zap, ZAP_ENDPOINT) != 0) {
            snprintf (err, errlen, "cannot bind the ZAP handler: %s",
                      zmq_strerror (errno));
            return AAAX_EIO;
        }
    }
    char dir[4200];
    hal_curve_path (self->data_dir, NULL, dir, sizeof dir);
    self->inotify_fd = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);
    if (self->inotify_fd >= 0
        && inotify_add_watch (self->inotify_fd, dir,
                              IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE
                                  | IN_CREATE)
               < 0) {
        /*  Then a change is seen at the next CURVE HELLO or housekeeping
            turn (once a second). */
        zsys_warning ("broker: cannot watch %s: %s", dir, strerror (errno));
        close (self->inotify_fd);
        self->inotify_fd = -1;
    }
    zsys_info ("broker: CURVE public key %s", self->curve_public);
    return 0;
}

void
broker_curve_destroy (broker_t *self)
{
    if (self->zap) {
        zmq_close (self->zap);
        self->zap = NULL;
    }
    if (self->inotify_fd >= 0) {
        close (self->inotify_fd);
        self->inotify_fd = -1;
    }
    if (self->curve_secret) {
        sodium_free (self->curve_secret);
        self->curve_secret = NULL;
    }
    hal_curve_auth_destroy (&self->auth);
    hal_curve_enroll_destroy (&self->enroll);
}

void
broker_curve_bind_opts (broker_t *self, void *sock, const char *ep,
                        const char *domain)
{
    int on = broker_config_endpoint_curve (self->cfg, ep) ? 1 : 0;
    if (on) {
        zmq_setsockopt (sock, ZMQ_CURVE_SERVER, &on, sizeof on);
        zmq_setsockopt (sock, ZMQ_CURVE_SECRETKEY, self->curve_secret,
                        HAL_CURVE_Z85_LEN);
        zmq_setsockopt (sock, ZMQ_ZAP_DOMAIN, domain, strlen (domain));
    } else {
        /*  Back to the NULL mechanism for the endpoints bound after. */
        zmq_setsockopt (sock, ZMQ_CURVE_SERVER, &on, sizeof on);
        zmq_setsockopt (sock, ZMQ_ZAP_DOMAIN, "", 0);
    }
}

/*  One ZAP reply (RFC 27): version, request id, status, text, user id,
    metadata. */
static void
s_zap_reply (broker_t *self, zmq_msg_t *reqid, const char *status,
             const char *text, const char *user)
{
    zmq_send (self->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_msg_send (reqid, self->zap, ZMQ_SNDMORE);
    zmq_send (self->zap, status, strlen (status), ZMQ_SNDMORE);
    zmq_send (self->zap, text, strlen (text), ZMQ_SNDMORE);
    zmq_send (self->zap, user, strlen (user), ZMQ_SNDMORE);
    zmq_send (self->zap, "", 0, 0);
}

void
broker_curve_zap (broker_t *self)
{
    if (!self->zap)
        return;
    for (;;) {
        zmq_msg_t f[7];
        int n = 0;
        bool more = true;
        while (more) {
            zmq_msg_t *m = &f[n < 7 ? n : 6];
            if (n >= 7)
                zmq_msg_close (m);
            zmq_msg_init (m);
            if (zmq_msg_recv (m, self->zap, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close (m);
                if (n == 0)
                    return;
                break;
            }
            more = zmq_msg_more (m);
            if (n < 7)
                n++;
        }
        self->zap_requests++;
        /*  version, request id, domain, address, identity, mechanism,
            credentials... */
        const char *status = "400", *text = "malformed ZAP request";
        char user[HAL_CURVE_Z85_LEN + 1] = "";
        if (n >= 6 && zmq_msg_size (&f[0]) == 3
            && memcmp (zmq_msg_data (&f[0]), "1.0", 3) == 0) {
            const char *mech = (const char *) zmq_msg_data (&f[5]);
            size_t ml = zmq_msg_size (&f[5]);
            const char *dom = (const char *) zmq_msg_data (&f[2]);
            size_t dl = zmq_msg_size (&f[2]);
            if (ml == 4 && memcmp (mech, "NULL", 4) == 0) {
                status = "200";
                text = "OK";
            } else if (ml == 5 && memcmp (mech, "CURVE", 5) == 0 && n >= 7
                       && zmq_msg_size (&f[6]) == 32) {
                zmq_z85_encode (user, (const uint8_t *) zmq_msg_data (&f[6]),
                                32);
                if (dl == 8 && memcmp (dom, "aaax-tap", 8) == 0) {
                    broker_curve_refresh (self, false);
                    if (hal_curve_auth_known (self->auth, user)) {
                        status = "200";
                        text = "OK";
                    } else {
                        status = "400";
                        text = "key not authorized (aaax authorize)";
                    }
                } else {
                    status = "200";
                    text = "OK";
                }
            } else {
                status = "400";
                text = "mechanism not accepted";
            }
        }
        if (status[0] != '2')
            self->zap_denied++;
        if (n >= 2)
            s_zap_reply (self, &f[1], status, text,
                         status[0] == '2' ? user : "");
        else {
            /*  Nothing to echo: a REP must still answer. */
            zmq_msg_t empty;
            zmq_msg_init (&empty);
            s_zap_reply (self, &empty, "400", text, "");
            zmq_msg_close (&empty);
        }
        for (int i = 0; i < n; i++)
            zmq_msg_close (&f[i]);
    }
}

void
broker_curve_refresh (broker_t *self, bool force)
{
    hal_curve_stamp_t st;
    hal_curve_auth_stamp (self->data_dir, &st);
    if (!force && hal_curve_stamp_eq (&st, &self->auth_stamp))
        return;
    char err[512] = "";
    hal_curve_auth_t *fresh =
        hal_curve_auth_load (self->data_dir, err, sizeof err);
    if (!fresh) {
        /*  Keep the old set: a bad read must not open or close doors. */
        zsys_error ("broker: cannot read the authorized keys: %s", err);
        return;
    }
    hal_curve_auth_destroy (&self->auth);
    self->auth = fresh;
    self->auth_stamp = st;
    zsys_info ("broker: authorized keys reloaded (%zu keys)",
               hal_curve_auth_size (fresh));
    /*  A key that lost its binding loses its sessions now. */
    broker_session_t *s = self->lru_head;
    while (s) {
        broker_session_t *next = s->lru_next;
        if (s->curve_key[0] && !s->dead
            && !hal_curve_auth_allows (self->auth, s->curve_key, s->sys->id)) {
            char why[120];
            snprintf (why, sizeof why, "key %.8s... revoked", s->curve_key);
            broker_audit (self, "revoke", s->sys->id, "dock", "deny", why);
            broker_undock (self, s, "key revoked", false);
        }
        s = next;
    }
}

void
broker_curve_inotify (broker_t *self)
{
    if (self->inotify_fd < 0)
        return;
    char buf[4096]
        __attribute__ ((aligned (__alignof__(struct inotify_event))));
    while (read (self->inotify_fd, buf, sizeof buf) > 0)
        ;
    broker_curve_refresh (self, false);
}
