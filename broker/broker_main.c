/*  broker_main.c — aaaxd: options, signals, then the switchboard's loop. */

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <czmq.h>

#include "aaax.h"
#include "broker.h"
#include "broker_config.h"

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "usage: aaaxd [options]\n"
        "\n"
        "The aaax kernel: a message broker for agents and apps, with\n"
        "broadcast, work-queue and mailbox channels, durable in LMDB.\n"
        "With no options it serves its embedded defaults.\n"
        "\n"
        "options (command line beats --config, which beats the defaults):\n"
        "  --data DIR       data directory (default ./aaax-data), made 0700;\n"
        "                   holds the store, session.token and aaax.sock\n"
        "  --bind EP        command endpoint, repeatable; replaces the "
        "default\n"
        "                   tcp://127.0.0.1:5670 (ipc://DIR/aaax.sock and\n"
        "                   inproc://aaax are always bound)\n"
        "  --tap EP         tap endpoint (XPUB mirror of public broadcast\n"
        "                   channels; default tcp://127.0.0.1:5671; \"\" for "
        "none)\n"
        "  --config FILE    Lua configuration file (docs/CONFIG.md)\n"
        "  --curve MODE     auto (default): CURVE on every tcp endpoint that\n"
        "                   is not loopback; all: on loopback tcp too\n"
        "                   (docs/REMOTE.md)\n"
        "  --insecure       plain TCP on non-loopback addresses (no CURVE;\n"
        "                   the heartbeat and aaax ps then say so)\n"
        "  --print-config   print the embedded defaults (a config file to\n"
        "                   start from) and exit\n"
        "  --check-config   load and check the configuration, then exit\n"
        "  --version        print the version and exit\n"
        "  --help           this text\n"
        "\n"
        "Signals: SIGTERM or SIGINT shut down gracefully (the last heartbeat\n"
        "says \"shutdown\", commits in flight finish, aaax.sock is removed).\n"
        "Exit status: 0 after a clean shutdown, 1 when it cannot start, 2 for\n"
        "bad options.\n");
}

int
main (int argc, char **argv)
{
    static const struct option opts[] = {
        { "data", required_argument, NULL, 'd' },
        { "bind", required_argument, NULL, 'b' },
        { "tap", required_argument, NULL, 't' },
        { "config", required_argument, NULL, 'c' },
        { "insecure", no_argument, NULL, 'i' },
        { "curve", required_argument, NULL, 'C' },
        { "print-config", no_argument, NULL, 'p' },
        { "check-config", no_argument, NULL, 'k' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *data = NULL, *tap = NULL, *config = NULL;
    char **binds = (char **) calloc ((size_t) argc + 1, sizeof (char *));
    size_t nbinds = 0;
    bool insecure = false, check_only = false, curve_all = false,
         curve_set = false;
    int c;
    if (!binds)
        return 1;
    while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'b': binds[nbinds++] = optarg; break;
        case 't': tap = optarg; break;
        case 'c': config = optarg; break;
        case 'i': insecure = true; break;
        case 'C':
            if (broker_config_curve_mode (optarg, &curve_all) != 0) {
                fprintf (stderr,
                         "aaaxd: --curve must be \"auto\" or \"all\" "
                         "(got \"%s\")\n",
                         optarg);
                free (binds);
                return 2;
            }
            curve_set = true;
            break;
        case 'k': check_only = true; break;
        case 'p':
            fputs (broker_config_defaults (), stdout);
            free (binds);
            return 0;
        case 'V':
            printf ("aaaxd %s (protocol AAAX/%d)\n", AAAX_VERSION_STRING,
                    AAAX_PROTOCOL_VERSION);
            free (binds);
            return 0;
        case 'h':
            s_usage (stdout);
            free (binds);
            return 0;
        default:
            s_usage (stderr);
            free (binds);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "aaaxd: unexpected argument \"%s\" (see --help)\n",
                 argv[optind]);
        free (binds);
        return 2;
    }

    char err[1024] = "";
    {
        /*  Every remote connection is a descriptor: take what the host
            allows (the soft limit is often 1024, the hard one far more). */
        struct rlimit rl;
        if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit (RLIMIT_NOFILE, &rl);
        }
    }
    broker_config_t *cfg = broker_config_new (err, sizeof err);
    if (!cfg) {
        fprintf (stderr, "aaaxd: embedded defaults: %s\n", err);
        free (binds);
        return 1;
    }
    if (config && broker_config_load_file (cfg, config, err, sizeof err) != 0) {
        fprintf (stderr, "aaaxd: %s\n", err);
        broker_config_destroy (&cfg);
        free (binds);
        return 1;
    }
    if ((data && broker_config_set_data (cfg, data) != 0)
        || (nbinds && broker_config_set_binds (cfg, binds, nbinds) != 0)
        || (tap && broker_config_set_tap (cfg, tap) != 0)) {
        fprintf (stderr, "aaaxd: out of memory\n");
        broker_config_destroy (&cfg);
        free (binds);
        return 1;
    }
    free (binds);
    if (insecure)
        cfg->insecure = true;
    if (curve_set)
        cfg->curve_all = curve_all;
    if (broker_config_check (cfg, err, sizeof err) != 0) {
        fprintf (stderr, "aaaxd: %s\n", err);
        broker_config_destroy (&cfg);
        return 1;
    }
    if (check_only) {
        printf ("aaaxd: configuration OK (%s)\n",
                cfg->source ? cfg->source : "embedded defaults");
        broker_config_destroy (&cfg);
        return 0;
    }

    /*  Signals arrive through a signalfd the loop polls: blocked in every
        thread, starting before any thread exists. czmq's own handler stays
        out of the way. */
    sigset_t mask;
    sigemptyset (&mask);
    sigaddset (&mask, SIGTERM);
    sigaddset (&mask, SIGINT);
    sigaddset (&mask, SIGHUP);
    sigprocmask (SIG_BLOCK, &mask, NULL);
    signal (SIGPIPE, SIG_IGN);
    int sigfd = signalfd (-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    zsys_handler_set (NULL);
    zsys_set_logident ("aaaxd");
    zsys_set_logstream (stderr);

    broker_t *broker = broker_new (&cfg, err, sizeof err);
    if (!broker) {
        fprintf (stderr, "aaaxd: %s\n", err);
        broker_config_destroy (&cfg);
        if (sigfd >= 0)
            close (sigfd);
        return 1;
    }
    int rc = broker_run (broker, sigfd, NULL);
    broker_destroy (&broker);
    if (sigfd >= 0)
        close (sigfd);
    zsys_shutdown ();
    return rc == 0 ? 0 : 1;
}
