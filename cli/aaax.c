/*  aaax.c — the aaax command-line client: one subcommand per thing a person
    does with the kernel from a shell (ping, tail, write, claim, ack, nack,
    send, stat, version), JSON in and JSON lines out, through chan_client.
    Exit codes: 0 ok, 1 the kernel said ERROR or did not answer, 2 usage. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <czmq.h>
#include <sodium.h>

#include "aaax.h"
#include "chan_client.h"
#include "chan_req.h"
#include "cli_json.h"
#include "hal_clock.h"

#define S_DEFAULT_ENDPOINT "tcp://127.0.0.1:5670"
#define S_DEFAULT_TIMEOUT 5000
#define S_MAX_MS 86400000u      /* 24 h: longest --wait, --lease, ... */
#define S_MAX_STDIN (64u << 20) /* JSON read from stdin */
#define S_ENDPOINT_MAX 4200

enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_USAGE = 2 };

/*  Set by SIGINT / SIGTERM; the only global state, as a signal handler
    cannot reach anything else. */
static volatile sig_atomic_t s_interrupted = 0;

static void
s_on_signal (int sig)
{
    (void) sig;
    s_interrupted = 1;
}

/*  ---- options --------------------------------------------------------- */

enum {
    OPT_CONNECT,
    OPT_SYSTEM,
    OPT_DATA,
    OPT_TIMEOUT,
    OPT_HELP,
    OPT_RAW,
    OPT_SINCE,
    OPT_COUNT,
    OPT_KEY,
    OPT_TO,
    OPT_CORR,
    OPT_MAX,
    OPT_WAIT,
    OPT_LEASE,
    OPT_ACK,
    OPT_DELAY
};
#define BIT(o) (1u << (o))
#define COMMON_OPTS                                                            \
    (BIT (OPT_CONNECT) | BIT (OPT_SYSTEM) | BIT (OPT_DATA) | BIT (OPT_TIMEOUT) \
     | BIT (OPT_HELP))

static const struct option s_longopts[] = {
    { "connect", required_argument, NULL, 256 + OPT_CONNECT },
    { "system", required_argument, NULL, 256 + OPT_SYSTEM },
    { "data", required_argument, NULL, 256 + OPT_DATA },
    { "timeout", required_argument, NULL, 256 + OPT_TIMEOUT },
    { "help", no_argument, NULL, 256 + OPT_HELP },
    { "raw", no_argument, NULL, 256 + OPT_RAW },
    { "since", required_argument, NULL, 256 + OPT_SINCE },
    { "count", required_argument, NULL, 256 + OPT_COUNT },
    { "key", required_argument, NULL, 256 + OPT_KEY },
    { "to", required_argument, NULL, 256 + OPT_TO },
    { "corr", required_argument, NULL, 256 + OPT_CORR },
    { "max", required_argument, NULL, 256 + OPT_MAX },
    { "wait", required_argument, NULL, 256 + OPT_WAIT },
    { "lease", required_argument, NULL, 256 + OPT_LEASE },
    { "ack", no_argument, NULL, 256 + OPT_ACK },
    { "delay", required_argument, NULL, 256 + OPT_DELAY },
    { NULL, 0, NULL, 0 }
};

typedef struct _s_app_t s_app_t;

typedef struct {
    const char *name;
    int (*run) (s_app_t *app);
    unsigned opts; /* BIT (OPT_*) it accepts besides the common ones */
    int min_args;
    int max_args; /* -1: no limit */
    const char *synopsis;
    const char *summary;
    const char *help; /* description, own options, examples */
} s_command_t;

struct _s_app_t {
    const s_command_t *cmd;
    unsigned given;      /* BIT (OPT_*) of the options given */
    const char *connect; /* --connect, or NULL */
    const char *system;
    const char *data;
    int timeout_ms;
    bool raw;
    bool ack;
    const char *since;
    const char *key;
    const char *to;
    const char *corr;
    uint64_t count;
    uint64_t max;
    uint64_t wait_ms;
    uint64_t lease_ms;
    uint64_t delay_ms;
    char **args;
    int nargs;
    /*  Made from the options. */
    char endpoint[S_ENDPOINT_MAX];
    char sysbuf[AAAX_MAX_NAME + 1];
    char mailbox[AAAX_MAX_NAME + 2]; /* "@" + system */
    char token[65];
    bool privileged;
    chan_client_t *client;
};

/*  ---- help ------------------------------------------------------------ */

static const char s_common_help[] =
    "Common options:\n"
    "  --connect EP   the kernel's command endpoint (default: with --data DIR\n"
    "                 ipc://DIR/aaax.sock, else $AAAX_CONNECT, else\n"
    "                 " S_DEFAULT_ENDPOINT ")\n"
    "  --system ID    the system id to dock as (default: $AAAX_SYSTEM, else\n"
    "                 cli-HOSTNAME-PID)\n"
    "  --data DIR     the kernel's data directory: dock privileged with the\n"
    "                 token in DIR/session.token (and, without --connect,\n"
    "                 connect to ipc://DIR/aaax.sock)\n"
    "  --timeout MS   how long to wait for each answer (default 5000)\n"
    "  -h, --help     this help\n"
    "\n"
    "Exit codes:\n"
    "  0  done\n"
    "  1  the kernel answered ERROR (printed as 'aaax: ERROR <code>: "
    "<reason>'),\n"
    "     or did not answer within --timeout, or output failed\n"
    "  2  usage: unknown subcommand or option, missing or bad argument, "
    "invalid JSON\n";

static int s_cmd_ping (s_app_t *app);
static int s_cmd_tail (s_app_t *app);
static int s_cmd_write (s_app_t *app);
static int s_cmd_claim (s_app_t *app);
static int s_cmd_ack (s_app_t *app);
static int s_cmd_nack (s_app_t *app);
static int s_cmd_send (s_app_t *app);
static int s_cmd_stat (s_app_t *app);
static int s_cmd_version (s_app_t *app);

static const s_command_t s_commands[] = {
    { "ping", s_cmd_ping, 0, 0, 0, "aaax ping [options]",
      "check that the kernel answers (no docking needed)",
      "Sends PING and prints the round trip and the kernel's clock:\n"
      "  PONG from EP in 0.213 ms (kernel time 1732291200.123456)\n"
      "\n"
      "Examples:\n"
      "  aaax ping\n"
      "  aaax ping --connect tcp://127.0.0.1:5670 --timeout 1000\n" },
    { "tail", s_cmd_tail, BIT (OPT_RAW) | BIT (OPT_SINCE) | BIT (OPT_COUNT), 1,
      1, "aaax tail CHANNEL [--raw] [--since ID] [--count N] [options]",
      "print a broadcast channel (or your mailbox) as JSON lines",
      "Docks with channels=[CHANNEL], subscribes, and prints each message as\n"
      "one JSON line: the whole envelope {id, ts, from, chan, to, corr, "
      "data}.\n"
      "'aaax tail @ME' (ME = --system) prints ME's mailbox and acknowledges\n"
      "each message once it is printed. Pings every heartbeat_ms/2 to stay\n"
      "docked. If the kernel drops the subscription (a slow reader), tail\n"
      "warns on stderr and subscribes again from the last id it printed.\n"
      "Ends with exit 0 after --count messages or on SIGINT/SIGTERM (after\n"
      "BYE), with exit 1 when the kernel goes away or undocks it.\n"
      "\n"
      "Options:\n"
      "  --raw          print only data: a string as raw text, anything "
      "else\n"
      "                 as JSON (one line each)\n"
      "  --since ID     first replay the retained messages after ID\n"
      "                 (--since '' replays all that is retained)\n"
      "  --count N      exit after N messages\n"
      "\n"
      "Examples:\n"
      "  aaax tail heartbeat --count 1\n"
      "  aaax tail events --since ''\n"
      "  aaax tail events --raw\n"
      "  aaax tail @me --system me\n" },
    { "write", s_cmd_write, BIT (OPT_KEY) | BIT (OPT_TO) | BIT (OPT_CORR), 2, 2,
      "aaax write CHANNEL JSON [--key K] [--to ID] [--corr ID] [options]",
      "write one message to a channel; prints its id",
      "Writes JSON (one JSON value; '-' reads it from stdin) as the data of\n"
      "one message to CHANNEL (a work-queue, a broadcast channel, or @ID for\n"
      "a mailbox) and prints the id the kernel gave it. For a durable\n"
      "channel the id is printed only once the message is on disk.\n"
      "JSON that does not parse is a usage error (exit 2); a JSON argument\n"
      "that starts with '-' (a negative number) goes after '--'.\n"
      "\n"
      "Options:\n"
      "  --key K        idempotency key: a repeat returns the first id\n"
      "  --to ID        the envelope's to\n"
      "  --corr ID      the envelope's corr (the id this message answers)\n"
      "\n"
      "Examples:\n"
      "  aaax write jobs '{\"task\": \"resize\", \"file\": \"a.png\"}'\n"
      "  aaax write events '\"hello\"' --key greeting-1\n"
      "  echo '[1, 2, 3]' | aaax write jobs -\n"
      "  aaax write jobs -- -5\n" },
    { "claim", s_cmd_claim,
      BIT (OPT_MAX) | BIT (OPT_WAIT) | BIT (OPT_LEASE) | BIT (OPT_ACK), 1, 1,
      "aaax claim CHANNEL [--max N] [--wait MS] [--lease MS] [--ack] "
      "[options]",
      "lease messages from a work-queue; prints them as JSON lines",
      "Claims up to --max messages from the work-queue CHANNEL and prints\n"
      "each envelope as one JSON line (nothing when none was ready).\n"
      "With --ack they are acknowledged (removed for good) once printed.\n"
      "Without --ack the session ends with BYE {keep_leases: true}: the\n"
      "messages stay leased to this system id until the lease runs out\n"
      "(--lease, default the queue's, 30 s), so that a later\n"
      "'aaax ack CHANNEL ID --system SAME' (or nack) settles them. Use the\n"
      "same --system for both: the default id changes with every run.\n"
      "\n"
      "Options:\n"
      "  --max N        claim up to N messages (default 1)\n"
      "  --wait MS      when none is ready, wait up to MS for one\n"
      "  --lease MS     lease length\n"
      "  --ack          acknowledge what was printed\n"
      "\n"
      "Examples:\n"
      "  aaax claim jobs --max 10 --ack\n"
      "  aaax claim jobs --wait 30000 --lease 60000 --system worker-1\n"
      "  aaax ack jobs 01JD8X5Y6Z7A8B9C0D1E2F3G4H --system worker-1\n" },
    { "ack", s_cmd_ack, 0, 2, -1, "aaax ack CHANNEL ID... [options]",
      "acknowledge claimed messages (or your mailbox's); prints the count",
      "Acknowledges the messages ID... of CHANNEL: on a work-queue those\n"
      "whose lease this system holds (claimed with the same --system); on\n"
      "@ME (ME = --system) messages of your own mailbox. Prints how many\n"
      "took effect (ids not held are not counted, and are no error).\n"
      "\n"
      "Examples:\n"
      "  aaax ack jobs 01JD8X5Y6Z7A8B9C0D1E2F3G4H --system worker-1\n"
      "  aaax ack @me 01JD8X5Y6Z7A8B9C0D1E2F3G4H --system me\n" },
    { "nack", s_cmd_nack, BIT (OPT_DELAY), 2, -1,
      "aaax nack CHANNEL ID... [--delay MS] [options]",
      "give claimed messages back to the queue; prints the count",
      "Gives the messages ID... of the work-queue CHANNEL, leased by this\n"
      "system, back: ready again at once or after --delay, with attempt + 1\n"
      "(or to CHANNEL.dlq after max_attempts). Prints how many came back.\n"
      "\n"
      "Options:\n"
      "  --delay MS     make them ready again only after MS\n"
      "\n"
      "Examples:\n"
      "  aaax nack jobs 01JD8X5Y6Z7A8B9C0D1E2F3G4H --system worker-1\n"
      "  aaax nack jobs 01JD8X5Y6Z7A8B9C0D1E2F3G4H --delay 10000 "
      "--system w1\n" },
    { "send", s_cmd_send, BIT (OPT_CORR) | BIT (OPT_KEY) | BIT (OPT_WAIT), 2, 2,
      "aaax send TO JSON [--corr ID] [--key K] [--wait MS] [options]",
      "send a message to a system's mailbox; prints its id",
      "Sends JSON (one JSON value; '-' reads stdin) to the mailbox of the\n"
      "system TO (with or without a leading @) and prints the message id.\n"
      "With --wait, then waits up to MS for a reply in its own mailbox whose\n"
      "corr is that id, prints the reply's envelope as one JSON line and\n"
      "acknowledges it (exit 1 if none came in time). Other mailbox\n"
      "messages that arrive meanwhile are left for a later dock.\n"
      "\n"
      "Options:\n"
      "  --corr ID      the envelope's corr\n"
      "  --key K        idempotency key\n"
      "  --wait MS      wait up to MS for the reply\n"
      "\n"
      "Examples:\n"
      "  aaax send worker-1 '{\"cmd\": \"status\"}'\n"
      "  aaax send worker-1 '{\"cmd\": \"status\"}' --wait 5000 | tail -n "
      "1\n" },
    { "stat", s_cmd_stat, 0, 0, 0, "aaax stat --data DIR [options]",
      "print the kernel's statistics (privileged)",
      "Docks privileged (needs --data DIR for the session token) and prints\n"
      "the STAT reply as indented JSON: heartbeat, version, data, counters,\n"
      "store, channels, sessions. Without the token the kernel refuses\n"
      "(ERROR 403, exit 1).\n"
      "\n"
      "Examples:\n"
      "  aaax stat --data ./aaax-data\n"
      "  aaax stat --data ./aaax-data --connect tcp://127.0.0.1:5670\n" },
    { "version", s_cmd_version, 0, 0, 0, "aaax version",
      "print the CLI's version and protocol version",
      "Prints 'aaax VERSION (protocol AAAX/1)'. Contacts nobody.\n"
      "\n"
      "Example:\n"
      "  aaax version\n" },
};

#define S_NCOMMANDS (sizeof s_commands / sizeof s_commands[0])

static void
s_main_usage (FILE *out)
{
    fprintf (out, "usage: aaax SUBCOMMAND [ARGS] [options]\n"
                  "\n"
                  "The command-line client of aaaxd (AAAX/1).\n"
                  "\n"
                  "Subcommands:\n");
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        fprintf (out, "  %-8s %s\n", s_commands[i].name, s_commands[i].summary);
    fprintf (out,
             "\n"
             "'aaax SUBCOMMAND --help' describes one, with its options "
             "and examples.\n\n%s",
             s_common_help);
}

static int
s_cmd_help (const s_command_t *cmd)
{
    printf ("usage: %s\n\n%s\n%s", cmd->synopsis, cmd->help, s_common_help);
    return EXIT_OK;
}

static int s_usage (const s_command_t *cmd, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_usage (const s_command_t *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    fprintf (stderr, "aaax %s: ", cmd->name);
    vfprintf (stderr, fmt, ap);
    va_end (ap);
    fprintf (stderr, "\nusage: %s\nTry 'aaax %s --help'.\n", cmd->synopsis,
             cmd->name);
    return EXIT_USAGE;
}

/*  ---- parsing the command line ---------------------------------------- */

/*  A decimal number in [lo, hi]. */
static bool
s_parse_uint (const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || !*s)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned) (*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/*  The characters HELLO accepts in a system id. */
static bool
s_system_char (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'
           || c == ':';
}

/*  cli-HOSTNAME-PID, with anything HELLO would refuse made '-'. */
static void
s_default_system (char *out, size_t size)
{
    char host[64] = "host";
    if (gethostname (host, sizeof host) != 0 || !host[0])
        strcpy (host, "host");
    host[sizeof host - 1] = 0;
    for (char *p = host; *p; p++)
        if (!s_system_char (*p))
            *p = '-';
    snprintf (out, size, "cli-%s-%ld", host, (long) getpid ());
}

static int
s_parse (s_app_t *app, int argc, char **argv)
{
    const s_command_t *cmd = app->cmd;
    unsigned allowed = COMMON_OPTS | cmd->opts;
    app->timeout_ms = S_DEFAULT_TIMEOUT;
    app->max = 1;
    opterr = 0;
    optind = 1;
    for (;;) {
        int idx = -1;
        int c = getopt_long (argc, argv, ":h", s_longopts, &idx);
        if (c == -1)
            break;
        const char *bad = argv[optind - 1];
        if (c == '?') {
            if (optopt && optopt < 256)
                return s_usage (cmd, "unknown option '-%c'", optopt);
            return s_usage (cmd, "unknown option '%s'", bad);
        }
        if (c == ':')
            return s_usage (cmd, "option '%s' needs a value", bad);
        int opt = c == 'h' ? OPT_HELP : c - 256;
        if (!(allowed & BIT (opt)))
            return s_usage (cmd, "option '--%s' does not apply to %s",
                            s_longopts[opt].name, cmd->name);
        app->given |= BIT (opt);
        uint64_t v = 0;
        switch (opt) {
        case OPT_CONNECT: app->connect = optarg; break;
        case OPT_SYSTEM: app->system = optarg; break;
        case OPT_DATA: app->data = optarg; break;
        case OPT_TIMEOUT:
            if (!s_parse_uint (optarg, 1, S_MAX_MS, &v))
                return s_usage (cmd, "--timeout needs milliseconds, 1 to %u",
                                S_MAX_MS);
            app->timeout_ms = (int) v;
            break;
        case OPT_HELP: break;
        case OPT_RAW: app->raw = true; break;
        case OPT_SINCE: app->since = optarg; break;
        case OPT_COUNT:
            if (!s_parse_uint (optarg, 1, UINT64_MAX, &app->count))
                return s_usage (cmd, "--count needs a number of messages, "
                                     "at least 1");
            break;
        case OPT_KEY: app->key = optarg; break;
        case OPT_TO: app->to = optarg; break;
        case OPT_CORR: app->corr = optarg; break;
        case OPT_MAX:
            if (!s_parse_uint (optarg, 1, UINT32_MAX, &app->max))
                return s_usage (cmd, "--max needs a number of messages, at "
                                     "least 1");
            break;
        case OPT_WAIT:
            if (!s_parse_uint (optarg, 0, S_MAX_MS, &app->wait_ms))
                return s_usage (cmd, "--wait needs milliseconds, 0 to %u",
                                S_MAX_MS);
            break;
        case OPT_LEASE:
            if (!s_parse_uint (optarg, 1, S_MAX_MS, &app->lease_ms))
                return s_usage (cmd, "--lease needs milliseconds, 1 to %u",
                                S_MAX_MS);
            break;
        case OPT_ACK: app->ack = true; break;
        case OPT_DELAY:
            if (!s_parse_uint (optarg, 0, S_MAX_MS, &app->delay_ms))
                return s_usage (cmd, "--delay needs milliseconds, 0 to %u",
                                S_MAX_MS);
            break;
        default: return s_usage (cmd, "unknown option '%s'", bad);
        }
    }
    if (app->given & BIT (OPT_HELP))
        return -1; /* the caller prints the help */
    app->args = argv + optind;
    app->nargs = argc - optind;
    if (app->nargs < cmd->min_args)
        return s_usage (cmd, "missing argument");
    if (cmd->max_args >= 0 && app->nargs > cmd->max_args)
        return s_usage (cmd, "unexpected argument '%s'",
                        app->args[cmd->max_args]);
    /*  Resolve the defaults. */
    if (!app->system)
        app->system = getenv ("AAAX_SYSTEM");
    if (!app->system || !*app->system) {
        s_default_system (app->sysbuf, sizeof app->sysbuf);
        app->system = app->sysbuf;
    }
    if (strlen (app->system) > AAAX_MAX_NAME)
        return s_usage (cmd, "--system is longer than %d bytes", AAAX_MAX_NAME);
    snprintf (app->mailbox, sizeof app->mailbox, "@%s", app->system);
    const char *env = getenv ("AAAX_CONNECT");
    int n;
    if (app->connect)
        n = snprintf (app->endpoint, sizeof app->endpoint, "%s", app->connect);
    else if (app->data)
        n = snprintf (app->endpoint, sizeof app->endpoint, "ipc://%s/aaax.sock",
                      app->data);
    else
        n = snprintf (app->endpoint, sizeof app->endpoint, "%s",
                      env && *env ? env : S_DEFAULT_ENDPOINT);
    if (n < 0 || (size_t) n >= sizeof app->endpoint)
        return s_usage (cmd, "endpoint too long");
    return 0;
}

/*  ---- talking to the kernel ------------------------------------------- */

/*  Says on stderr why a call failed (rc from chan_client, or the ERROR in
    reply); returns the exit code. */
static int
s_report (s_app_t *app, int rc, const chan_reply_t *reply)
{
    if (reply && strcmp (reply->cmd, "ERROR") == 0) {
        char reason[512];
        fprintf (stderr, "aaax: ERROR %d: %s\n", chan_reply_code (reply),
                 chan_reply_reason (reply, reason, sizeof reason));
    } else if (s_interrupted)
        fprintf (stderr, "aaax: interrupted\n");
    else if (rc == AAAX_ETIMEDOUT)
        fprintf (stderr,
                 "aaax: no answer from %s within %d ms \xe2\x80\x94 "
                 "is aaaxd running?\n",
                 app->endpoint, app->timeout_ms);
    else if (rc == AAAX_EPROTO)
        fprintf (stderr, "aaax: the kernel's answer could not be decoded "
                         "(msgpack nesting deeper than msgpack-c reads?)\n");
    else
        fprintf (stderr, "aaax: %s: %s\n", app->endpoint,
                 aaax_strerror (rc ? rc : AAAX_EPROTO));
    return EXIT_ERROR;
}

static bool
s_is (const chan_reply_t *r, const char *cmd)
{
    return strcmp (r->cmd, cmd) == 0;
}

/*  Connects, reading the token first when --data was given. Exit code. */
static int
s_connect (s_app_t *app)
{
    if (app->data) {
        if (chan_client_read_token (app->data, app->token) != 0) {
            fprintf (stderr,
                     "aaax: cannot read %s/session.token (is %s the "
                     "kernel's --data directory, and is it "
                     "running?)\n",
                     app->data, app->data);
            return EXIT_ERROR;
        }
        app->privileged = true;
    }
    app->client = chan_client_new (app->endpoint, app->timeout_ms);
    if (!app->client) {
        fprintf (stderr, "aaax: cannot connect to '%s': %s\n", app->endpoint,
                 zmq_strerror (zmq_errno ()));
        return EXIT_USAGE;
    }
    return 0;
}

/*  A call whose answer must be OK (or PONG): 0, or the exit code after
    saying why. The caller finis reply either way. */
static int
s_call (s_app_t *app, const char *cmd, chan_body_t *body, chan_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    int rc = chan_client_call (app->client, cmd, body, reply);
    if (rc == 0 && (s_is (reply, "OK") || s_is (reply, "PONG")))
        return 0;
    return s_report (app, rc, reply);
}

/*  A call that may wait longer than --timeout (a long-poll CLAIM): pushes
    that arrive meanwhile are dropped (mailbox messages come again at the
    next dock). 0 or the exit code. */
static int
s_call_long (s_app_t *app, const char *cmd, chan_body_t *body,
             chan_reply_t *reply, int64_t wait_ms)
{
    memset (reply, 0, sizeof *reply);
    uint64_t req;
    int rc = chan_client_send (app->client, cmd, body, &req);
    if (rc)
        return s_report (app, rc, NULL);
    int64_t deadline = hal_clock_mono_ms () + wait_ms;
    for (;;) {
        int64_t left = deadline - hal_clock_mono_ms ();
        if (s_interrupted)
            return s_report (app, AAAX_ETIMEDOUT, NULL);
        if (left < 0) {
            fprintf (stderr,
                     "aaax: no answer from %s within %" PRId64
                     " ms \xe2\x80\x94 is aaaxd running?\n",
                     app->endpoint, wait_ms);
            return EXIT_ERROR;
        }
        chan_reply_t r;
        memset (&r, 0, sizeof r);
        rc = chan_client_recv (app->client, &r,
                               left > INT32_MAX ? INT32_MAX : (int) left);
        if (rc == AAAX_ETIMEDOUT)
            continue;
        if (rc)
            return s_report (app, rc, NULL);
        uint64_t got = 0;
        bool push = s_is (&r, "MSG") || s_is (&r, "DROPPED");
        if (!push && chan_obj_get_uint (&r.body, "req", &got) && got == req) {
            *reply = r;
            if (s_is (reply, "OK"))
                return 0;
            return s_report (app, 0, reply);
        }
        /*  A body msgpack-c could not unpack (too deep) but that is our
            answer: say so rather than time out. */
        if (!push && r.body.type == MSGPACK_OBJECT_NIL && r.raw
            && chan_req_peek_req (r.raw, r.rawlen, &got) && got == req) {
            chan_reply_fini (&r);
            return s_report (app, AAAX_EPROTO, NULL);
        }
        chan_reply_fini (&r);
    }
}

/*  HELLO, with channels=[channel] when channel is not NULL. Exit code. */
static int
s_dock (s_app_t *app, const char *channel)
{
    chan_reply_t reply;
    memset (&reply, 0, sizeof reply);
    const char *chans[1] = { channel };
    int rc = chan_client_hello (
        app->client, app->system, app->privileged ? app->token : NULL,
        app->privileged, channel ? chans : NULL, channel ? 1 : 0, &reply);
    int ret = rc ? s_report (app, rc, &reply) : 0;
    chan_reply_fini (&reply);
    return ret;
}

/*  BYE; with keep_leases the leases outlive the session. */
static void
s_bye (s_app_t *app, bool keep_leases)
{
    chan_body_t b;
    chan_body_init (&b);
    if (keep_leases)
        chan_body_bool (&b, "keep_leases", true);
    chan_reply_t reply;
    memset (&reply, 0, sizeof reply);
    int rc = chan_client_call (app->client, "BYE", &b, &reply);
    if (keep_leases && (rc || !s_is (&reply, "OK")))
        fprintf (stderr, "aaax: warning: BYE {keep_leases: true} was not "
                         "answered; the leases may be released\n");
    chan_reply_fini (&reply);
    chan_body_fini (&b);
}

/*  The channel argument of the HELLO for chan: not a mailbox. */
static const char *
s_hello_chan (const char *chan)
{
    return chan[0] == '@' ? NULL : chan;
}

/*  ---- output ---------------------------------------------------------- */

enum { S_OUT_OK = 0, S_OUT_SKIPPED = 1, S_OUT_FAILED = -1 };

static int
s_flush_line (void)
{
    if (putchar ('\n') == EOF || fflush (stdout) != 0)
        return S_OUT_FAILED;
    return S_OUT_OK;
}

/*  Prints o as JSON plus a newline and flushes: S_OUT_OK, S_OUT_SKIPPED (o
    cannot be JSON: said on stderr, nothing printed) or S_OUT_FAILED
    (stdout failed; errno tells). */
static int
s_print_json (const msgpack_object *o, int flags)
{
    char err[160];
    char *text = cli_msgpack_to_json (o, flags, err, sizeof err);
    if (!text) {
        fprintf (stderr,
                 "aaax: warning: a message cannot be shown as JSON "
                 "(%s); skipped\n",
                 err);
        return S_OUT_SKIPPED;
    }
    int rc = fputs (text, stdout) == EOF ? S_OUT_FAILED : s_flush_line ();
    free (text);
    return rc;
}

/*  --raw: a string as its bytes, anything else as JSON. */
static int
s_print_raw (const msgpack_object *data)
{
    if (data->type != MSGPACK_OBJECT_STR)
        return s_print_json (data, CLI_JSON_COMPACT);
    if (data->via.str.size
        && fwrite (data->via.str.ptr, 1, data->via.str.size, stdout)
               != data->via.str.size)
        return S_OUT_FAILED;
    return s_flush_line ();
}

static int
s_output_failed (void)
{
    if (errno == EPIPE)
        return EXIT_ERROR; /* the reader left; nothing to say */
    fprintf (stderr, "aaax: cannot write to stdout: %s\n", strerror (errno));
    return EXIT_ERROR;
}

/*  Reads the JSON argument (or stdin for "-") into packed msgpack. Exit
    code. */
static int
s_json_arg (s_app_t *app, const char *arg, chan_buf_t *out)
{
    char err[256];
    int rc;
    if (strcmp (arg, "-") == 0) {
        chan_buf_t in;
        chan_buf_init (&in);
        char chunk[65536];
        size_t n;
        while ((n = fread (chunk, 1, sizeof chunk, stdin)) > 0) {
            chan_buf_append (&in, chunk, n);
            if (in.oom || in.len > S_MAX_STDIN) {
                chan_buf_fini (&in);
                fprintf (stderr,
                         "aaax %s: JSON on stdin larger than %u "
                         "bytes\n",
                         app->cmd->name, S_MAX_STDIN);
                return EXIT_USAGE;
            }
        }
        if (ferror (stdin)) {
            chan_buf_fini (&in);
            fprintf (stderr, "aaax: cannot read stdin: %s\n", strerror (errno));
            return EXIT_ERROR;
        }
        rc = cli_json_to_msgpackn (in.len ? (const char *) in.data : "", in.len,
                                   out, err, sizeof err);
        chan_buf_fini (&in);
    } else
        rc = cli_json_to_msgpack (arg, out, err, sizeof err);
    if (rc == AAAX_ENOMEM) {
        fprintf (stderr, "aaax: out of memory\n");
        return EXIT_ERROR;
    }
    if (rc) {
        fprintf (stderr, "aaax %s: %s\n", app->cmd->name, err);
        if (strncmp (err, "invalid JSON", 12) == 0)
            fprintf (stderr,
                     "(one JSON value, quoted for the shell: "
                     "'{\"a\": 1}', '\"text\"'; see aaax %s "
                     "--help)\n",
                     app->cmd->name);
        return EXIT_USAGE;
    }
    return 0;
}

/*  ---- ping, version --------------------------------------------------- */

static int
s_cmd_ping (s_app_t *app)
{
    int ret = s_connect (app);
    if (ret)
        return ret;
    chan_reply_t reply;
    int64_t t0 = hal_clock_mono_us ();
    ret = s_call (app, "PING", NULL, &reply);
    int64_t t1 = hal_clock_mono_us ();
    if (ret == 0) {
        const msgpack_object *ts = chan_obj_get (&reply.body, "ts");
        double kts = ts
                             && (ts->type == MSGPACK_OBJECT_FLOAT64
                                 || ts->type == MSGPACK_OBJECT_FLOAT32)
                         ? ts->via.f64
                         : 0.0;
        printf ("PONG from %s in %.3f ms (kernel time %.6f)\n", app->endpoint,
                (double) (t1 - t0) / 1000.0, kts);
        if (fflush (stdout) != 0)
            ret = s_output_failed ();
    }
    chan_reply_fini (&reply);
    return ret;
}

static int
s_cmd_version (s_app_t *app)
{
    (void) app;
    printf ("aaax %s (protocol AAAX/%d)\n", AAAX_VERSION_STRING,
            AAAX_PROTOCOL_VERSION);
    return fflush (stdout) == 0 ? EXIT_OK : s_output_failed ();
}

/*  ---- write, send ----------------------------------------------------- */

/*  Prints the id of a WRITE / SEND answer into id (27 bytes at least). */
static int
s_print_id (const chan_reply_t *reply, char *id, size_t size)
{
    const char *p;
    size_t len;
    if (!chan_obj_get_str (&reply->body, "id", &p, &len) || len >= size) {
        fprintf (stderr, "aaax: the kernel's OK carries no id\n");
        return EXIT_ERROR;
    }
    memcpy (id, p, len);
    id[len] = 0;
    printf ("%s\n", id);
    return fflush (stdout) == 0 ? EXIT_OK : s_output_failed ();
}

static int
s_cmd_write (s_app_t *app)
{
    const char *chan = app->args[0];
    chan_buf_t data;
    chan_buf_init (&data);
    int ret = s_json_arg (app, app->args[1], &data);
    if (ret == 0)
        ret = s_connect (app);
    if (ret == 0)
        ret = s_dock (app, s_hello_chan (chan));
    if (ret) {
        chan_buf_fini (&data);
        return ret;
    }
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", chan);
    chan_body_raw (&b, "data", data.data, data.len);
    if (app->to)
        chan_body_str (&b, "to", app->to);
    if (app->corr)
        chan_body_str (&b, "corr", app->corr);
    if (app->key)
        chan_body_str (&b, "key", app->key);
    chan_reply_t reply;
    ret = s_call (app, "WRITE", &b, &reply);
    char id[64];
    if (ret == 0)
        ret = s_print_id (&reply, id, sizeof id);
    chan_reply_fini (&reply);
    chan_body_fini (&b);
    chan_buf_fini (&data);
    s_bye (app, false);
    return ret;
}

/*  ---- the receive loop of tail and send --wait ------------------------- */

typedef struct {
    const char *chan; /* tail: the channel printed */
    bool mailbox;     /* tail: chan is our mailbox, ACK what is printed */
    const char *corr; /* send --wait: the corr of the awaited reply */
    int64_t deadline; /* send --wait: give up then (0: never) */
    char last_id[64]; /* the newest id printed (broadcast) */
    bool have_last;
    uint64_t printed;
    uint64_t resub_req; /* the re-SUB after a DROPPED, answered or 0 */
    uint64_t acks_out;  /* mailbox ACKs not yet answered */
    bool done;
} s_loop_t;

static bool
s_str_eq (const msgpack_object *o, const char *s)
{
    size_t len = strlen (s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == len
           && memcmp (o->via.str.ptr, s, len) == 0;
}

/*  Ids are fixed-width base32: longer sorts later, then bytes. */
static int
s_id_cmp (const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return memcmp (a, b, alen);
}

static int
s_ack_async (s_app_t *app, const char *id, size_t len)
{
    char idbuf[AAAX_MAX_KEY + 1];
    if (len >= sizeof idbuf)
        return 0;
    memcpy (idbuf, id, len);
    idbuf[len] = 0;
    const char *ids[1] = { idbuf };
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", app->mailbox);
    chan_body_strv (&b, "ids", ids, 1);
    int rc = chan_client_send (app->client, "ACK", &b, NULL);
    chan_body_fini (&b);
    return rc;
}

/*  SUB to lp->chan, since the last id printed (or --since before any). */
static int
s_resub (s_app_t *app, s_loop_t *lp)
{
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", lp->chan);
    if (lp->have_last)
        chan_body_str (&b, "since", lp->last_id);
    else if (app->since)
        chan_body_str (&b, "since", app->since);
    int rc = chan_client_send (app->client, "SUB", &b, &lp->resub_req);
    chan_body_fini (&b);
    return rc;
}

/*  One MSG. Returns 0 to go on, or an exit code with lp->done set. */
static int
s_on_msg (s_app_t *app, s_loop_t *lp, const chan_reply_t *r)
{
    const msgpack_object *sub = chan_obj_get (&r->body, "sub");
    const msgpack_object *msg = chan_obj_get (&r->body, "msg");
    if (!msg || msg->type != MSGPACK_OBJECT_MAP) {
        if (r->body.type == MSGPACK_OBJECT_NIL)
            fprintf (stderr, "aaax: warning: a message could not be decoded "
                             "(nested deeper than msgpack-c reads); "
                             "skipped\n");
        return 0;
    }
    const char *id = NULL;
    size_t idlen = 0;
    chan_obj_get_str (msg, "id", &id, &idlen);
    if (lp->corr) {
        /*  send --wait: only the reply counts. */
        if (!s_str_eq (sub, app->mailbox)
            || !s_str_eq (chan_obj_get (msg, "corr"), lp->corr))
            return 0;
        lp->done = true;
        int out = s_print_json (msg, CLI_JSON_COMPACT);
        if (out == S_OUT_FAILED)
            return s_output_failed ();
        if (out == S_OUT_SKIPPED)
            return EXIT_ERROR;
        if (id) {
            char idbuf[AAAX_MAX_KEY + 1];
            const char *ids[1] = { idbuf };
            snprintf (idbuf, sizeof idbuf, "%.*s", (int) idlen, id);
            chan_body_t b;
            chan_body_init (&b);
            chan_body_str (&b, "chan", app->mailbox);
            chan_body_strv (&b, "ids", ids, 1);
            chan_reply_t reply;
            int ret = s_call (app, "ACK", &b, &reply);
            chan_reply_fini (&reply);
            chan_body_fini (&b);
            return ret;
        }
        return EXIT_OK;
    }
    if (!s_str_eq (sub, lp->chan))
        return 0; /* e.g. our own mailbox while tailing a channel */
    if (!lp->mailbox && id && lp->have_last
        && s_id_cmp (id, idlen, lp->last_id, strlen (lp->last_id)) <= 0)
        return 0; /* replayed again after a re-SUB */
    int out;
    if (app->raw) {
        const msgpack_object *data = chan_obj_get (msg, "data");
        msgpack_object nil;
        nil.type = MSGPACK_OBJECT_NIL;
        out = s_print_raw (data ? data : &nil);
    } else
        out = s_print_json (msg, CLI_JSON_COMPACT);
    if (out == S_OUT_FAILED) {
        lp->done = true;
        /*  The reader went away (tail | head): not an error of ours. */
        return errno == EPIPE ? EXIT_OK : s_output_failed ();
    }
    if (id && idlen < sizeof lp->last_id && !lp->mailbox) {
        memcpy (lp->last_id, id, idlen);
        lp->last_id[idlen] = 0;
        lp->have_last = true;
    }
    if (out == S_OUT_SKIPPED)
        return 0; /* not printed: not acknowledged, not counted */
    if (lp->mailbox && id) {
        if (s_ack_async (app, id, idlen) != 0) {
            lp->done = true;
            return s_report (app, AAAX_EIO, NULL);
        }
        lp->acks_out++;
    }
    lp->printed++;
    if (app->count && lp->printed >= app->count)
        lp->done = true;
    return 0;
}

/*  Receives until lp says done, keeping the session alive (PING every
    heartbeat_ms / 2) and checking now and then that it is still docked
    (UNSUB of our own mailbox: answered when docked, 401 when not). Returns
    the exit code. */
static int
s_loop (s_app_t *app, s_loop_t *lp)
{
    uint32_t hb = chan_client_heartbeat_ms (app->client);
    int64_t tick = (hb ? hb : 1000) / 2;
    if (tick < 10)
        tick = 10;
    int64_t dead_after =
        app->timeout_ms > 3 * tick ? app->timeout_ms : 3 * tick;
    int64_t now = hal_clock_mono_ms ();
    int64_t next_tick = now + tick, last_rx = now;
    uint64_t ticks = 0;
    int ret = EXIT_OK;
    bool draining = false; /* done; waiting for the mailbox ACKs' answers */
    int64_t drain_until = 0;
    for (;;) {
        if (s_interrupted)
            break;
        if (lp->done && !draining) {
            if (lp->acks_out == 0 || ret != EXIT_OK)
                break;
            draining = true;
            drain_until = hal_clock_mono_ms () + app->timeout_ms;
        }
        now = hal_clock_mono_ms ();
        if (draining && (lp->acks_out == 0 || now >= drain_until))
            break;
        if (lp->deadline && now >= lp->deadline) {
            fprintf (stderr, "aaax: no reply to %s within %" PRIu64 " ms\n",
                     lp->corr, app->wait_ms);
            ret = EXIT_ERROR;
            break;
        }
        if (now - last_rx >= dead_after) {
            fprintf (stderr,
                     "aaax: no answer from %s within %" PRId64
                     " ms \xe2\x80\x94 the kernel went away\n",
                     app->endpoint, dead_after);
            return EXIT_ERROR;
        }
        if (now >= next_tick) {
            int rc = chan_client_send (app->client, "PING", NULL, NULL);
            if (rc == 0 && ticks++ % 2 == 1) {
                chan_body_t b;
                chan_body_init (&b);
                chan_body_str (&b, "chan", app->mailbox);
                rc = chan_client_send (app->client, "UNSUB", &b, NULL);
                chan_body_fini (&b);
            }
            if (rc)
                return s_report (app, rc, NULL);
            next_tick = now + tick;
        }
        int64_t wait = next_tick - now;
        if (lp->deadline && lp->deadline - now < wait)
            wait = lp->deadline - now;
        if (wait < 0)
            wait = 0;
        chan_reply_t r;
        memset (&r, 0, sizeof r);
        int rc = chan_client_recv (app->client, &r, (int) wait);
        if (rc == AAAX_ETIMEDOUT)
            continue;
        if (rc)
            return s_report (app, rc, NULL);
        last_rx = hal_clock_mono_ms ();
        uint64_t req = 0;
        bool has_req = chan_obj_get_uint (&r.body, "req", &req);
        if (s_is (&r, "MSG")) {
            if (!lp->done) {
                int x = s_on_msg (app, lp, &r);
                if (x != 0 || lp->done)
                    ret = x;
            }
        } else if (s_is (&r, "DROPPED")) {
            const msgpack_object *sub = chan_obj_get (&r.body, "sub");
            if (lp->chan && s_str_eq (sub, lp->chan) && !lp->done) {
                char reason[256];
                fprintf (stderr,
                         "aaax: warning: the kernel dropped the "
                         "subscription to %s (%s); subscribing "
                         "again since %s\n",
                         lp->chan,
                         chan_reply_reason (&r, reason, sizeof reason),
                         lp->have_last ? lp->last_id
                         : app->since  ? app->since
                                       : "now");
                if (s_resub (app, lp) != 0) {
                    chan_reply_fini (&r);
                    return s_report (app, AAAX_EIO, NULL);
                }
            }
        } else if (s_is (&r, "ERROR")) {
            int code = chan_reply_code (&r);
            if (code == 401) {
                char reason[256];
                fprintf (stderr,
                         "aaax: the kernel undocked this session "
                         "(ERROR 401: %s)\n",
                         chan_reply_reason (&r, reason, sizeof reason));
                chan_reply_fini (&r);
                return EXIT_ERROR;
            }
            if (has_req && req == lp->resub_req) {
                ret = s_report (app, 0, &r);
                chan_reply_fini (&r);
                return ret;
            }
            s_report (app, 0, &r); /* e.g. 423 while paused: go on */
            if (lp->acks_out)
                lp->acks_out--;
        } else if (s_is (&r, "OK") && chan_obj_get (&r.body, "acked")) {
            if (lp->acks_out)
                lp->acks_out--;
        }
        chan_reply_fini (&r);
        if (lp->done && ret != EXIT_OK)
            return ret;
    }
    s_bye (app, false);
    return ret;
}

static int
s_cmd_tail (s_app_t *app)
{
    s_loop_t lp;
    memset (&lp, 0, sizeof lp);
    lp.chan = app->args[0];
    lp.mailbox = strcmp (lp.chan, app->mailbox) == 0;
    int ret = s_connect (app);
    if (ret == 0)
        ret = s_dock (app, s_hello_chan (lp.chan));
    if (ret)
        return ret;
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", lp.chan);
    if (app->since && !lp.mailbox)
        chan_body_str (&b, "since", app->since);
    chan_reply_t reply;
    ret = s_call (app, "SUB", &b, &reply);
    chan_reply_fini (&reply);
    chan_body_fini (&b);
    if (ret) {
        s_bye (app, false);
        return ret;
    }
    return s_loop (app, &lp);
}

static int
s_cmd_send (s_app_t *app)
{
    const char *to = app->args[0][0] == '@' ? app->args[0] + 1 : app->args[0];
    chan_buf_t data;
    chan_buf_init (&data);
    int ret = s_json_arg (app, app->args[1], &data);
    if (ret == 0)
        ret = s_connect (app);
    if (ret == 0)
        ret = s_dock (app, NULL);
    if (ret) {
        chan_buf_fini (&data);
        return ret;
    }
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "to", to);
    chan_body_raw (&b, "data", data.data, data.len);
    if (app->corr)
        chan_body_str (&b, "corr", app->corr);
    if (app->key)
        chan_body_str (&b, "key", app->key);
    chan_reply_t reply;
    ret = s_call (app, "SEND", &b, &reply);
    char id[64];
    if (ret == 0)
        ret = s_print_id (&reply, id, sizeof id);
    chan_reply_fini (&reply);
    chan_body_fini (&b);
    chan_buf_fini (&data);
    if (ret || !(app->given & BIT (OPT_WAIT))) {
        s_bye (app, false);
        return ret;
    }
    s_loop_t lp;
    memset (&lp, 0, sizeof lp);
    lp.corr = id;
    lp.deadline = hal_clock_mono_ms () + (int64_t) app->wait_ms;
    ret = s_loop (app, &lp);
    if (s_interrupted && !lp.done) {
        fprintf (stderr, "aaax: interrupted before the reply came\n");
        ret = EXIT_ERROR;
    }
    return ret;
}

/*  ---- claim, ack, nack ------------------------------------------------ */

static int
s_cmd_claim (s_app_t *app)
{
    const char *chan = app->args[0];
    int ret = s_connect (app);
    if (ret == 0)
        ret = s_dock (app, s_hello_chan (chan));
    if (ret)
        return ret;
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", chan);
    chan_body_uint (&b, "max", app->max);
    if (app->given & BIT (OPT_WAIT))
        chan_body_uint (&b, "wait_ms", app->wait_ms);
    if (app->given & BIT (OPT_LEASE))
        chan_body_uint (&b, "lease_ms", app->lease_ms);
    chan_reply_t reply;
    ret = s_call_long (app, "CLAIM", &b, &reply,
                       (int64_t) app->wait_ms + app->timeout_ms);
    chan_body_fini (&b);
    if (ret) {
        /*  Nothing was printed: whatever the CLAIM may still lease to us
            (an interrupted long poll) goes back at once. */
        chan_reply_fini (&reply);
        s_bye (app, false);
        return ret;
    }
    const msgpack_object *msgs = chan_obj_get (&reply.body, "msgs");
    if (!msgs || msgs->type != MSGPACK_OBJECT_ARRAY) {
        fprintf (stderr, "aaax: the kernel's OK carries no msgs\n");
        ret = EXIT_ERROR;
    }
    /*  Print every envelope; collect the ids of what was printed. */
    uint32_t n = ret ? 0 : msgs->via.array.size, nids = 0;
    const char **ids = n ? (const char **) calloc (n, sizeof *ids) : NULL;
    char *idmem = n ? (char *) calloc (n, 64) : NULL;
    if (n && (!ids || !idmem)) {
        fprintf (stderr, "aaax: out of memory\n");
        ret = EXIT_ERROR;
        n = 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *env = &msgs->via.array.ptr[i];
        int out = s_print_json (env, CLI_JSON_COMPACT);
        if (out == S_OUT_FAILED) {
            ret = s_output_failed ();
            break;
        }
        if (out == S_OUT_SKIPPED) {
            ret = EXIT_ERROR;
            continue;
        }
        const char *id;
        size_t len;
        if (chan_obj_get_str (env, "id", &id, &len) && len < 64) {
            char *slot = idmem + 64 * (size_t) nids;
            memcpy (slot, id, len);
            slot[len] = 0;
            ids[nids++] = slot;
        }
    }
    chan_reply_fini (&reply);
    if (app->ack && nids) {
        chan_body_init (&b);
        chan_body_str (&b, "chan", chan);
        chan_body_strv (&b, "ids", ids, nids);
        int aret = s_call (app, "ACK", &b, &reply);
        uint64_t acked = 0;
        if (aret == 0 && chan_obj_get_uint (&reply.body, "acked", &acked)
            && acked != nids)
            fprintf (stderr,
                     "aaax: warning: %" PRIu64 " of %" PRIu32
                     " acknowledged (leases lost?)\n",
                     acked, nids);
        if (aret && ret == 0)
            ret = aret;
        chan_reply_fini (&reply);
        chan_body_fini (&b);
    }
    free (ids);
    free (idmem);
    s_bye (app, !app->ack);
    return ret;
}

/*  ACK or NACK of args[1..]; prints the count answered in key. */
static int
s_settle (s_app_t *app, const char *cmd, const char *key)
{
    const char *chan = app->args[0];
    int ret = s_connect (app);
    if (ret == 0)
        ret = s_dock (app, s_hello_chan (chan));
    if (ret)
        return ret;
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", chan);
    chan_body_strv (&b, "ids", (const char **) (app->args + 1),
                    (size_t) app->nargs - 1);
    if (app->given & BIT (OPT_DELAY))
        chan_body_uint (&b, "delay_ms", app->delay_ms);
    chan_reply_t reply;
    ret = s_call (app, cmd, &b, &reply);
    uint64_t count = 0;
    if (ret == 0) {
        if (!chan_obj_get_uint (&reply.body, key, &count)) {
            fprintf (stderr, "aaax: the kernel's OK carries no %s\n", key);
            ret = EXIT_ERROR;
        } else {
            printf ("%" PRIu64 "\n", count);
            if (fflush (stdout) != 0)
                ret = s_output_failed ();
        }
    }
    chan_reply_fini (&reply);
    chan_body_fini (&b);
    s_bye (app, false);
    return ret;
}

static int
s_cmd_ack (s_app_t *app)
{
    return s_settle (app, "ACK", "acked");
}

static int
s_cmd_nack (s_app_t *app)
{
    return s_settle (app, "NACK", "requeued");
}

/*  ---- stat ------------------------------------------------------------ */

static int
s_cmd_stat (s_app_t *app)
{
    int ret = s_connect (app);
    if (ret == 0)
        ret = s_dock (app, NULL);
    if (ret)
        return ret;
    chan_reply_t reply;
    ret = s_call (app, "STAT", NULL, &reply);
    if (ret == 0 && reply.body.type == MSGPACK_OBJECT_MAP) {
        /*  The body without its req. */
        const msgpack_object_map *m = &reply.body.via.map;
        msgpack_object_kv *kv =
            (msgpack_object_kv *) calloc (m->size ? m->size : 1, sizeof *kv);
        if (!kv) {
            fprintf (stderr, "aaax: out of memory\n");
            ret = EXIT_ERROR;
        } else {
            uint32_t n = 0;
            for (uint32_t i = 0; i < m->size; i++)
                if (!s_str_eq (&m->ptr[i].key, "req"))
                    kv[n++] = m->ptr[i];
            msgpack_object o;
            o.type = MSGPACK_OBJECT_MAP;
            o.via.map.size = n;
            o.via.map.ptr = kv;
            int out = s_print_json (&o, CLI_JSON_PRETTY);
            if (out == S_OUT_FAILED)
                ret = s_output_failed ();
            else if (out == S_OUT_SKIPPED)
                ret = EXIT_ERROR;
            free (kv);
        }
    }
    chan_reply_fini (&reply);
    s_bye (app, false);
    return ret;
}

/*  ---- main ------------------------------------------------------------ */

int
main (int argc, char **argv)
{
    /*  CZMQ must not take SIGINT / SIGTERM: tail ends on them with BYE. */
    zsys_handler_set (NULL);
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);

    if (argc < 2) {
        s_main_usage (stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp (name, "--help") == 0 || strcmp (name, "-h") == 0
        || strcmp (name, "help") == 0) {
        if (argc > 2 && strcmp (name, "help") == 0) {
            for (size_t i = 0; i < S_NCOMMANDS; i++)
                if (strcmp (argv[2], s_commands[i].name) == 0)
                    return s_cmd_help (&s_commands[i]);
        }
        s_main_usage (stdout);
        return EXIT_OK;
    }
    if (strcmp (name, "--version") == 0)
        name = "version";
    const s_command_t *cmd = NULL;
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strcmp (name, s_commands[i].name) == 0)
            cmd = &s_commands[i];
    if (!cmd) {
        fprintf (stderr, "aaax: unknown subcommand '%s'\n\n", name);
        s_main_usage (stderr);
        return EXIT_USAGE;
    }
    s_app_t app;
    memset (&app, 0, sizeof app);
    app.cmd = cmd;
    int ret = s_parse (&app, argc - 1, argv + 1);
    if (ret < 0)
        return s_cmd_help (cmd);
    if (ret)
        return ret;
    ret = cmd->run (&app);
    chan_client_destroy (&app.client);
    sodium_memzero (app.token, sizeof app.token);
    return ret;
}
