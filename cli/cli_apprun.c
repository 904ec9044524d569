/*  cli_apprun.c — `aaax app run DIR --connect EP [--data DIR]`: runs one
    app in this process with the same runtime as the kernel's app host
    (actors/app_host.c), docked directly over its own connection under its
    manifest's name. Its aaax.kv and aaax.fs live on this host, under
    --data. The supervisor is the same: a crash restarts it with back-off,
    5 restarts within 60 s end the process with status 1. The connection
    looks after itself (actors/app_host.h): a lost kernel is reconnected to
    and docked again, the app keeping its state. */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <czmq.h>
#include <sodium.h>

#include "aaax.h"
#include "app_host.h"
#include "app_manifest.h"
#include "cli_app.h"
#include "hal_clock.h"
#include "hal_curve.h"
#include "hal_fs.h"
#include "hal_kv.h"
#include "hal_luadata.h"

static const char s_usage[] =
    "usage: aaax app run DIR [--connect EP] [--data DIR]\n"
    "                    [--server-key Z85 --key CERTFILE]\n"
    "\n"
    "Runs the app in DIR (manifest.lua, main.lua) in this process, docked\n"
    "to the kernel at EP as the system its manifest names, with the same\n"
    "runtime, sandbox and limits as inside aaaxd. Its aaax.kv and aaax.fs\n"
    "are kept on this host, under --data. Ctrl-C (or SIGTERM, or a TERM\n"
    "signal from the kernel's lifecycle) runs stop() and undocks.\n"
    "\n"
    "  --connect EP       the kernel's command endpoint\n"
    "                     (default tcp://127.0.0.1:5670)\n"
    "  --data DIR         where the app's kv and files live\n"
    "                     (default ./aaax-app-data)\n"
    "  --server-key Z85   the kernel's CURVE public key (aaax kernel-key\n"
    "                     on the kernel's host)\n"
    "  --key CERTFILE     this agent's CURVE certificate (--cert is the\n"
    "                     same): `aaax keygen NAME` writes NAME and\n"
    "                     NAME_secret; give NAME. Its key must be bound\n"
    "                     to the app's name on the kernel:\n"
    "                     aaax authorize KEY --system APPNAME\n"
    "                     Both options are needed for a CURVE endpoint (any\n"
    "                     non-loopback tcp one, unless the kernel runs\n"
    "                     with --insecure). On a tcp endpoint they default\n"
    "                     to $AAAX_SERVER_KEY and $AAAX_CERT, as for the\n"
    "                     other aaax commands.\n"
    "\n"
    "Reconnecting: it sends a keepalive when it has sent nothing for half a\n"
    "heartbeat period. When nothing comes from the kernel for 3 heartbeat\n"
    "periods, or the connection ends (a kernel restart, a network failure),\n"
    "it closes the connection, connects again after a back-off (100 ms\n"
    "doubling to 5 s, jittered) and docks again: the kernel hands it its\n"
    "old session (HELLO resume), or it gets a new one and subscribes again\n"
    "to what the app had subscribed to. The app keeps its Lua state and\n"
    "start() does not run again; a call that was waiting on the kernel\n"
    "returns nil, \"503 connection to the kernel lost (docking again)\".\n"
    "Every lost connection, failed attempt and re-dock is a line of the\n"
    "log (stdout). An unreachable kernel, or one that does not complete\n"
    "the handshake (a wrong --server-key), is tried again until it\n"
    "answers.\n"
    "\n"
    "It does not dock again when the kernel ended its session on purpose:\n"
    "`aaax kill APPNAME` (the KILL signal) stops it (status 0), and an\n"
    "undock while the connection was live (a privileged CTL kill, its key\n"
    "revoked) ends it with status 1. A refused first HELLO (401: the key\n"
    "is not bound to the name; 409: the name is docked elsewhere) ends it\n"
    "with status 1 at once.\n"
    "\n"
    "Exit status: 0 after a requested stop; 1 when the app cannot start,\n"
    "fails (5 crashes within 60 s), is refused or is undocked by the\n"
    "kernel; 2 on a usage error.\n";

/*  Set by SIGINT / SIGTERM: stop the app and leave. */
static volatile sig_atomic_t s_stop = 0;

static void
s_on_signal (int sig)
{
    (void) sig;
    s_stop = 1;
}

typedef struct {
    bool done;
    int status;
} s_run_t;

static void
s_on_event (void *arg, const char *name, app_event_t ev, const char *detail)
{
    s_run_t *run = (s_run_t *) arg;
    switch (ev) {
    case APP_EV_STARTED:
        fprintf (stderr, "app %s: running (%s)\n", name, detail);
        break;
    case APP_EV_LOAD_FAILED:
        fprintf (stderr, "aaax: app run: %s: %s\n", name, detail);
        run->done = true;
        run->status = 1;
        break;
    case APP_EV_CRASHED:
        fprintf (stderr, "app %s: crashed, restarting: %s\n", name, detail);
        break;
    case APP_EV_FAILED:
        fprintf (stderr, "aaax: app run: %s failed: %s\n", name, detail);
        run->done = true;
        run->status = 1;
        break;
    case APP_EV_STOPPED:
        fprintf (stderr, "app %s: stopped\n", name);
        run->done = true;
        break;
    }
    fflush (stderr);
}

int
cli_app_run (int argc, char **argv)
{
    const char *dir = NULL, *endpoint = "tcp://127.0.0.1:5670",
               *data = "./aaax-app-data", *server_key = NULL, *certfile = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (streq (a, "--help") || streq (a, "-h")) {
            fputs (s_usage, stdout);
            return CLI_APP_OK;
        } else if (streq (a, "--connect") && has)
            endpoint = argv[++i];
        else if (streq (a, "--data") && has)
            data = argv[++i];
        else if (streq (a, "--server-key") && has)
            server_key = argv[++i];
        else if ((streq (a, "--key") || streq (a, "--cert")) && has)
            certfile = argv[++i];
        else if (a[0] == '-' || dir) {
            fprintf (stderr, "aaax: app run: unexpected '%s'\n%s", a, s_usage);
            return CLI_APP_USAGE;
        } else
            dir = a;
    }
    if (!dir) {
        fprintf (stderr, "aaax: app run: which app directory?\n%s", s_usage);
        return CLI_APP_USAGE;
    }
    /*  The same defaults as the other commands: only for tcp, so that a
        kernel's ipc socket is not asked for CURVE. */
    if (strncmp (endpoint, "tcp://", 6) == 0) {
        const char *ek = getenv ("AAAX_SERVER_KEY"), *ec = getenv ("AAAX_CERT");
        if (!server_key && ek && *ek)
            server_key = ek;
        if (!certfile && ec && *ec)
            certfile = ec;
    }
    if ((server_key != NULL) != (certfile != NULL)) {
        fprintf (stderr, "aaax: app run: --server-key and --key go "
                         "together\n");
        return CLI_APP_USAGE;
    }
    if (server_key && !hal_curve_key_valid (server_key)) {
        fprintf (stderr, "aaax: app run: --server-key must be a Z85 key "
                         "(40 characters)\n");
        return CLI_APP_USAGE;
    }
    char err[900];
    app_spec_t *spec = (app_spec_t *) calloc (1, sizeof *spec);
    if (!spec)
        return 1;
    if (app_manifest_load (dir, &spec->m, err, sizeof err) != 0) {
        fprintf (stderr, "aaax: app run: %s\n", err);
        app_spec_destroy (&spec);
        return 1;
    }
    app_limits_cfg_t lim;
    app_limits_cfg_default (&lim);
    char path[4200];
    snprintf (path, sizeof path, "%s/main.lua", spec->m.dir);
    if (app_limits_resolve (&lim, &spec->m.limits, &spec->limits, err,
                            sizeof err)
            != 0
        || hal_luadata_read_file (path, &spec->src, &spec->srclen, err,
                                  sizeof err)
               != 0) {
        fprintf (stderr, "aaax: app run: %s\n", err);
        app_spec_destroy (&spec);
        return 1;
    }
    /*  The host's side of the HAL: kv and files under --data. */
    char root[4200], kvdir[4300], files[4300];
    if (hal_fs_absolute (data, root, sizeof root) != 0
        || hal_fs_prepare_dir (root, err, sizeof err) != 0) {
        fprintf (stderr, "aaax: app run: %s: %s\n", data,
                 err[0] ? err : "path too long");
        app_spec_destroy (&spec);
        return 1;
    }
    snprintf (kvdir, sizeof kvdir, "%s/kv", root);
    snprintf (files, sizeof files, "%s/files", root);
    hal_kv_t *kv = hal_kv_open (kvdir, (size_t) 256 << 20, err, sizeof err);
    if (!kv) {
        fprintf (stderr, "aaax: app run: %s\n", err);
        app_spec_destroy (&spec);
        return 1;
    }
    /*  The certificate, read as the other commands read it: a secret file
        readable by others, or one whose secret is not the public key's,
        is refused. */
    zcert_t *cert = NULL;
    if (certfile) {
        char cpub[HAL_CURVE_Z85_LEN + 1], csec[HAL_CURVE_Z85_LEN + 1];
        if (hal_curve_load_cert (certfile, true, cpub, csec, err, sizeof err)
            != 0) {
            fprintf (stderr, "aaax: app run: %s\n", err);
            hal_kv_destroy (&kv);
            app_spec_destroy (&spec);
            return 1;
        }
        uint8_t pk[32], sk[32];
        zmq_z85_decode (pk, cpub);
        zmq_z85_decode (sk, csec);
        cert = zcert_new_from (pk, sk);
        sodium_memzero (sk, sizeof sk);
        sodium_memzero (csec, sizeof csec);
        if (!cert) {
            hal_kv_destroy (&kv);
            app_spec_destroy (&spec);
            return 1;
        }
    }
    app_worker_cfg_t cfg = { 0 };
    cfg.endpoint = endpoint;
    cfg.files_root = files;
    cfg.kv = kv;
    if (cert) {
        cfg.curve_server = server_key;
        cfg.curve_public = zcert_public_txt (cert);
        cfg.curve_secret = zcert_secret_txt (cert);
    }
    s_run_t run = { false, 0 };
    app_worker_t *w = app_worker_new (&cfg, s_on_event, &run, err, sizeof err);
    if (!w) {
        fprintf (stderr, "aaax: app run: %s\n", err);
        zcert_destroy (&cert);
        hal_kv_destroy (&kv);
        app_spec_destroy (&spec);
        return 1;
    }
    char name[AAAX_MAX_NAME + 1];
    snprintf (name, sizeof name, "%s", spec->m.name);
    app_worker_add (w, spec);
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
    bool stopping = false;
    while (!run.done) {
        if (s_stop && !stopping) {
            stopping = true;
            app_worker_remove (w, name, false);
        }
        int64_t now = hal_clock_mono_ms ();
        int64_t next = app_worker_serve (w, now);
        if (run.done)
            break;
        long timeout = next == INT64_MAX ? 500 : (long) (next - now);
        if (timeout < 0)
            timeout = 0;
        if (timeout > 500)
            timeout = 500;
        /*  The link's socket (none while it is down) and its connection
            events; both change when it is made anew. */
        zmq_pollitem_t items[2];
        int n = 0;
        void *sock = app_worker_socket (w), *mon = app_worker_monitor (w);
        if (sock)
            items[n++] = (zmq_pollitem_t){ sock, 0, ZMQ_POLLIN, 0 };
        if (mon)
            items[n++] = (zmq_pollitem_t){ mon, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (items, n, timeout) < 0 && errno != EINTR)
            break;
    }
    app_worker_destroy (&w);
    zcert_destroy (&cert);
    hal_kv_destroy (&kv);
    return run.status;
}
