/*  cli_app.c — `aaax app load|unload|reload|list|pin|unpin`: one request to
    the module loader (kernel.loader) per run, as the CLI's other kernel
    subcommands ask their actors (cli_kernel_request), and the pure helpers
    that print its answers (see cli_app.h). */

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
#include "chan_mpk.h"
#include "cli_app.h"
#include "cli_json.h"
#include "cli_kernel.h"

#define S_LOADER "kernel.loader"
#define S_DEFAULT_ENDPOINT "tcp://127.0.0.1:5670"
#define S_DEFAULT_TIMEOUT 5000
#define S_START_TIMEOUT 30000 /* load, reload: start() runs first */
#define S_MAX_MS 86400000u    /* 24 h: the longest --timeout */
#define S_ENDPOINT_MAX 4200
#define S_PATH_MAX 4096
#define S_MAX_PATHS 256 /* paths in one load */

/*  Set by SIGINT / SIGTERM while a request waits. */
static volatile sig_atomic_t s_stop = 0;

static void
s_on_signal (int sig)
{
    (void) sig;
    s_stop = 1;
}

/*  ---- the subcommands ------------------------------------------------- */

typedef enum { S_LOAD, S_UNLOAD, S_RELOAD, S_LIST, S_PIN, S_UNPIN } s_op_t;

typedef struct {
    const char *name; /* also the request's op */
    s_op_t op;
    int min_args, max_args; /* -1: no limit */
    bool json;              /* accepts --json */
    const char *synopsis;
    const char *summary;
    const char *help; /* description, own options, examples */
} s_sub_t;

static const s_sub_t s_subs[] = {
    { "load", S_LOAD, 1, S_MAX_PATHS, false,
      "aaax app load PATH [PATH...] --data DIR [options]",
      "load apps: directories with manifest.lua and main.lua",
      "Asks the module loader (kernel.loader) to load the app in each\n"
      "directory PATH. Relative paths are made absolute here first: the\n"
      "kernel resolves paths in its own working directory. Several paths go\n"
      "in one request and are loaded in the order of their manifests'\n"
      "depends. Each app docks with its manifest name as its system id and\n"
      "its start() runs; then one line per app loaded:\n"
      "  loaded echo 1.0.0 (digest 3f2a9c0b7d1e) granted: chan.write:news; "
      "refused: none\n"
      "granted / refused are the manifest's permissions as the policy\n"
      "decided them. A refusal (a manifest error with file:line, a "
      "dependency\n"
      "cycle or a missing dependency, a pinned digest that does not match,\n"
      "an app of that name already loaded, start() raised) is said on\n"
      "stderr: 'aaax: app load: <reason>', exit 1.\n"
      "Privileged: needs --data DIR (the session token).\n"
      "\n"
      "Examples:\n"
      "  aaax app load apps/echo --data ./aaax-data\n"
      "  aaax app load apps/counter apps/toolrunner --data ./aaax-data\n" },
    { "unload", S_UNLOAD, 1, 1, false,
      "aaax app unload NAME --data DIR [options]", "stop an app and unload it",
      "Asks the loader to unload the app NAME: its stop() runs (errors are\n"
      "ignored), it undocks and is no longer supervised. Refused while other\n"
      "loaded apps depend on it (the reason names them). Prints\n"
      "  unloaded NAME\n"
      "\n"
      "Example:\n"
      "  aaax app unload echo --data ./aaax-data\n" },
    { "reload", S_RELOAD, 1, 1, false,
      "aaax app reload NAME --data DIR [options]",
      "read an app's directory again and restart it",
      "Asks the loader to read the directory the app NAME was loaded from\n"
      "again (refused if it is pinned and its files changed), run stop() of\n"
      "the running instance and start the new one. Prints one line as load\n"
      "does:\n"
      "  reloaded echo 1.0.1 (digest 9d04e1c2aa7b) granted: chan.write:news; "
      "refused: none\n"
      "Also brings back an app that failed (too many restarts).\n"
      "\n"
      "Example:\n"
      "  aaax app reload echo --data ./aaax-data\n" },
    { "list", S_LIST, 0, 0, true, "aaax app list --data DIR [--json] [options]",
      "list the loaded apps",
      "Asks the loader for every loaded app and prints an aligned table,\n"
      "sorted by name:\n"
      "  NAME     VERSION  STATE    RESTARTS  MEMORY(KiB)  HANDLED  PINNED  "
      "PATH\n"
      "  counter  1.0.0    running  0         212          17       yes     "
      "/srv/apps/counter\n"
      "  echo     1.0.0    failed   5         0            3        no      "
      "/srv/apps/echo\n"
      "    error: main.lua:4: attempt to index a nil value (local 'msg')\n"
      "STATE is starting, running, restarting, failed or stopped; RESTARTS\n"
      "counts the restarts of the last 60 s; MEMORY is what the app's Lua\n"
      "state holds; HANDLED counts the messages it handled. The last error\n"
      "of a failed app is on the line under its row.\n"
      "\n"
      "Options:\n"
      "  --json         print the loader's modules array instead, as one "
      "line\n"
      "                 of JSON: [{name, version, path, digest, pinned, "
      "state,\n"
      "                 since, restarts, error, granted, refused, channels,\n"
      "                 depends, memory, limits, handled}, ...]\n"
      "\n"
      "Examples:\n"
      "  aaax app list --data ./aaax-data\n"
      "  aaax app list --data ./aaax-data --json | jq -r "
      "'.[] | select(.state == \"failed\") | .name'\n" },
    { "pin", S_PIN, 1, 1, false, "aaax app pin NAME --data DIR [options]",
      "pin an app to the digest of its files as they are now",
      "Asks the loader to record the digest of the app's files as they are\n"
      "on disk now. From then on a load or reload of different files is\n"
      "refused until the app is pinned again. Prints\n"
      "  pinned NAME digest HEX\n"
      "\n"
      "Example:\n"
      "  aaax app pin counter --data ./aaax-data\n" },
    { "unpin", S_UNPIN, 1, 1, false, "aaax app unpin NAME --data DIR [options]",
      "forget an app's pinned digest",
      "Asks the loader to forget the digest pinned for NAME: any files load\n"
      "again. Prints\n"
      "  unpinned NAME\n"
      "\n"
      "Example:\n"
      "  aaax app unpin counter --data ./aaax-data\n" },
};

#define S_NSUBS (sizeof s_subs / sizeof s_subs[0])

static const char s_run_summary[] =
    "run an app in this process, docked to a kernel";

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
    "  --timeout MS   how long to wait for each answer (default 5000; load\n"
    "                 and reload wait up to 30000 for the loader's answer,\n"
    "                 as start() runs first)\n"
    "  -h, --help     this help\n";

static const char s_exits[] =
    "Exit codes:\n"
    "  0  done\n"
    "  1  the loader refused ('aaax: app SUBCOMMAND: <reason>' on stderr)\n"
    "  2  usage: unknown subcommand or option, missing or bad argument, a\n"
    "     malformed endpoint\n"
    "  3  no answer: DIR/session.token cannot be read, the kernel answered\n"
    "     ERROR (e.g. 403 without --data), nothing came within --timeout,\n"
    "     interrupted; or the answer could not be read or printed\n";

static const s_sub_t *
s_find (const char *name)
{
    for (size_t i = 0; i < S_NSUBS; i++)
        if (strcmp (s_subs[i].name, name) == 0)
            return &s_subs[i];
    return NULL;
}

void
cli_app_summaries (FILE *out)
{
    for (size_t i = 0; i < S_NSUBS; i++)
        fprintf (out, "  app %-10s %s\n", s_subs[i].name, s_subs[i].summary);
    fprintf (out, "  app %-10s %s\n", "run", s_run_summary);
}

static void
s_group_usage (FILE *out)
{
    fprintf (out, "usage: aaax app SUBCOMMAND [ARGS] [options]\n\n"
                  "Lua apps: load them into the kernel's app host, list,\n"
                  "reload, pin them; or run one here (docs/LUA.md).\n\n");
    cli_app_summaries (out);
    fprintf (out, "\n'aaax app SUBCOMMAND --help' describes one.\n");
}

static int
s_sub_help (const s_sub_t *sub)
{
    printf ("usage: %s\n\n%s\n%s\n%s", sub->synopsis, sub->help, s_common_help,
            s_exits);
    return fflush (stdout) == 0 ? CLI_APP_OK : CLI_APP_FAILED;
}

int
cli_app_help (const char *sub)
{
    if (!sub) {
        s_group_usage (stdout);
        return CLI_APP_OK;
    }
    if (strcmp (sub, "run") == 0) {
        char w0[] = "run", w1[] = "--help";
        char *argv[] = { w0, w1, NULL };
        return cli_app_run (2, argv);
    }
    const s_sub_t *s = s_find (sub);
    if (s)
        return s_sub_help (s);
    fprintf (stderr, "aaax: unknown subcommand 'app %s'\n\n", sub);
    s_group_usage (stderr);
    return CLI_APP_USAGE;
}

/*  ---- the command line ------------------------------------------------ */

typedef struct {
    const s_sub_t *sub;
    const char *connect;
    const char *system;
    const char *data;
    int timeout_ms;
    bool timeout_given;
    bool json;
    char **args;
    int nargs;
    char endpoint[S_ENDPOINT_MAX];
    char sysbuf[AAAX_MAX_NAME + 1];
    char token[65];
    bool privileged;
    chan_client_t *client;
    bool docked; /* HELLO succeeded: BYE at the end */
} s_cli_t;

static int s_usage (const s_sub_t *sub, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_usage (const s_sub_t *sub, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    fprintf (stderr, "aaax app %s: ", sub->name);
    vfprintf (stderr, fmt, ap);
    va_end (ap);
    fprintf (stderr, "\nusage: %s\nTry 'aaax app %s --help'.\n", sub->synopsis,
             sub->name);
    return CLI_APP_USAGE;
}

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

enum { OPT_CONNECT = 256, OPT_SYSTEM, OPT_DATA, OPT_TIMEOUT, OPT_JSON };

static const struct option s_longopts[] = {
    { "connect", required_argument, NULL, OPT_CONNECT },
    { "system", required_argument, NULL, OPT_SYSTEM },
    { "data", required_argument, NULL, OPT_DATA },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "json", no_argument, NULL, OPT_JSON },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

/*  argv[0] is the subcommand. 0, -1 for --help, or the exit code. */
static int
s_parse (s_cli_t *cli, int argc, char **argv)
{
    const s_sub_t *sub = cli->sub;
    cli->timeout_ms = S_DEFAULT_TIMEOUT;
    bool help = false;
    opterr = 0;
    optind = 1;
    for (;;) {
        int c = getopt_long (argc, argv, ":h", s_longopts, NULL);
        if (c == -1)
            break;
        const char *bad = argv[optind - 1];
        uint64_t v = 0;
        switch (c) {
        case 'h': help = true; break;
        case OPT_CONNECT: cli->connect = optarg; break;
        case OPT_SYSTEM: cli->system = optarg; break;
        case OPT_DATA: cli->data = optarg; break;
        case OPT_TIMEOUT:
            if (!s_parse_uint (optarg, 1, S_MAX_MS, &v))
                return s_usage (sub, "--timeout needs milliseconds, 1 to %u",
                                S_MAX_MS);
            cli->timeout_ms = (int) v;
            cli->timeout_given = true;
            break;
        case OPT_JSON:
            if (!sub->json)
                return s_usage (sub, "option '--json' does not apply to app %s",
                                sub->name);
            cli->json = true;
            break;
        case ':': return s_usage (sub, "option '%s' needs a value", bad);
        default:
            if (optopt && optopt < 256)
                return s_usage (sub, "unknown option '-%c'", optopt);
            return s_usage (sub, "unknown option '%s'", bad);
        }
    }
    if (help)
        return -1;
    cli->args = argv + optind;
    cli->nargs = argc - optind;
    if (cli->nargs < sub->min_args)
        return s_usage (sub, "missing argument");
    if (sub->max_args >= 0 && cli->nargs > sub->max_args)
        return s_usage (sub, "unexpected argument '%s'",
                        cli->args[sub->max_args]);
    for (int i = 0; i < cli->nargs; i++)
        if (!cli->args[i][0])
            return s_usage (sub, "an empty argument");
    if (!cli->system)
        cli->system = getenv ("AAAX_SYSTEM");
    if (!cli->system || !*cli->system) {
        s_default_system (cli->sysbuf, sizeof cli->sysbuf);
        cli->system = cli->sysbuf;
    }
    if (strlen (cli->system) > AAAX_MAX_NAME)
        return s_usage (sub, "--system is longer than %d bytes", AAAX_MAX_NAME);
    const char *env = getenv ("AAAX_CONNECT");
    int n;
    if (cli->connect)
        n = snprintf (cli->endpoint, sizeof cli->endpoint, "%s", cli->connect);
    else if (cli->data)
        n = snprintf (cli->endpoint, sizeof cli->endpoint, "ipc://%s/aaax.sock",
                      cli->data);
    else
        n = snprintf (cli->endpoint, sizeof cli->endpoint, "%s",
                      env && *env ? env : S_DEFAULT_ENDPOINT);
    if (n < 0 || (size_t) n >= sizeof cli->endpoint)
        return s_usage (sub, "endpoint too long");
    return 0;
}

/*  ---- asking the loader ----------------------------------------------- */

/*  Connects and docks (privileged with --data). Exit code. */
static int
s_dock (s_cli_t *cli)
{
    if (cli->data) {
        if (chan_client_read_token (cli->data, cli->token) != 0) {
            fprintf (stderr,
                     "aaax: cannot read %s/session.token (is %s the "
                     "kernel's --data directory, and is it running?)\n",
                     cli->data, cli->data);
            return CLI_APP_FAILED;
        }
        cli->privileged = true;
    }
    cli->client = chan_client_new (cli->endpoint, cli->timeout_ms);
    if (!cli->client) {
        fprintf (stderr, "aaax: cannot connect to '%s': %s\n", cli->endpoint,
                 zmq_strerror (zmq_errno ()));
        return CLI_APP_USAGE;
    }
    chan_reply_t reply;
    memset (&reply, 0, sizeof reply);
    int rc = chan_client_hello (cli->client, cli->system,
                                cli->privileged ? cli->token : NULL,
                                cli->privileged, NULL, 0, &reply);
    if (rc == 0) {
        chan_reply_fini (&reply);
        cli->docked = true;
        return CLI_APP_OK;
    }
    if (strcmp (reply.cmd, "ERROR") == 0) {
        char reason[512];
        fprintf (stderr, "aaax: ERROR %d: %s\n", chan_reply_code (&reply),
                 chan_reply_reason (&reply, reason, sizeof reason));
    } else if (s_stop)
        fprintf (stderr, "aaax: interrupted\n");
    else if (rc == AAAX_ETIMEDOUT)
        fprintf (stderr,
                 "aaax: no answer from %s within %d ms \xe2\x80\x94 "
                 "is aaaxd running?\n",
                 cli->endpoint, cli->timeout_ms);
    else
        fprintf (stderr, "aaax: %s: %s\n", cli->endpoint, aaax_strerror (rc));
    chan_reply_fini (&reply);
    return CLI_APP_FAILED;
}

static void
s_bye (s_cli_t *cli)
{
    if (!cli->docked)
        return;
    chan_reply_t reply;
    memset (&reply, 0, sizeof reply);
    chan_client_call (cli->client, "BYE", NULL, &reply);
    chan_reply_fini (&reply);
}

/*  Docks, writes req to kernel.loader and waits for the answer (a map).
    Exit code; on 0 reply holds it (fini it either way). */
static int
s_ask (s_cli_t *cli, const chan_buf_t *req, cli_kernel_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    if (req->oom) {
        fprintf (stderr, "aaax: out of memory\n");
        return CLI_APP_FAILED;
    }
    int ret = s_dock (cli);
    if (ret)
        return ret;
    int64_t wait = cli->timeout_ms;
    if (!cli->timeout_given
        && (cli->sub->op == S_LOAD || cli->sub->op == S_RELOAD))
        wait = S_START_TIMEOUT;
    cli_kernel_t k;
    cli_kernel_init (&k, cli->client, cli->system);
    k.stop = &s_stop;
    int rc =
        cli_kernel_request (&k, S_LOADER, req->data, req->len, wait, reply);
    if (rc) {
        if (k.stopped)
            fprintf (stderr, "aaax: interrupted\n");
        else
            fprintf (stderr, "aaax: %s\n", k.err);
        if (k.code == 403 && !cli->privileged)
            fprintf (stderr,
                     "aaax: ('app %s' is privileged: give --data DIR, the "
                     "kernel's data directory)\n",
                     cli->sub->name);
        return CLI_APP_FAILED;
    }
    if (!reply->data || reply->data->type != MSGPACK_OBJECT_MAP) {
        fprintf (stderr, "aaax: the answer from " S_LOADER " is not a map\n");
        cli_kernel_reply_fini (reply);
        return CLI_APP_FAILED;
    }
    return CLI_APP_OK;
}

/*  ok: false → the reason on stderr, CLI_APP_REFUSED. */
static int
s_check (const s_cli_t *cli, const msgpack_object *data)
{
    const msgpack_object *ok = chan_obj_get (data, "ok");
    if (!(ok && ok->type == MSGPACK_OBJECT_BOOLEAN && !ok->via.boolean))
        return CLI_APP_OK;
    const char *reason = "no reason given";
    size_t len = strlen (reason);
    chan_obj_get_str (data, "reason", &reason, &len);
    fprintf (stderr, "aaax: app %s: ", cli->sub->name);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) reason[i];
        /*  Keep the manifest errors' newlines; nothing else that moves the
            cursor. */
        fputc (c == '\n' || (c >= 0x20 && c != 0x7f) ? c : '?', stderr);
    }
    fputc ('\n', stderr);
    return CLI_APP_REFUSED;
}

/*  Prints text (may be NULL: out of memory). Exit code. */
static int
s_output (char *text)
{
    if (!text) {
        fprintf (stderr, "aaax: out of memory\n");
        return CLI_APP_FAILED;
    }
    int rc = fputs (text, stdout) == EOF || fflush (stdout) != 0 ? errno : 0;
    free (text);
    if (rc == 0)
        return CLI_APP_OK;
    if (rc == EPIPE)
        return CLI_APP_OK; /* the reader left: nothing to say */
    fprintf (stderr, "aaax: cannot write to stdout: %s\n", strerror (rc));
    return CLI_APP_FAILED;
}

static char *s_strdupf (const char *fmt, ...)
    __attribute__ ((format (printf, 1, 2)));

static char *
s_strdupf (const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    char *s = NULL;
    if (vasprintf (&s, fmt, ap) < 0)
        s = NULL;
    va_end (ap);
    return s;
}

/*  A value of the answer, or a string, made safe for a terminal
    (malloc'd; NULL on OOM). */
static char *s_text (const msgpack_object *o);
static char *s_safe (const char *s);

static int
s_print_modules (const msgpack_object *data, const char *verb)
{
    const msgpack_object *mods = chan_obj_get (data, "modules");
    if (!mods || mods->type != MSGPACK_OBJECT_ARRAY) {
        fprintf (stderr, "aaax: warning: the loader's answer lists no "
                         "modules\n");
        return CLI_APP_OK;
    }
    return s_output (cli_app_loaded_lines (mods, verb));
}

/*  The modules array, bins as hex, as one line of JSON. */
static int
s_print_json (const msgpack_object *mods)
{
    chan_buf_t hex;
    chan_buf_init (&hex);
    int rc = cli_kernel_hexify (mods, &hex);
    if (rc) {
        chan_buf_fini (&hex);
        fprintf (stderr, "aaax: the modules cannot be shown as JSON (%s)\n",
                 aaax_strerror (rc));
        return CLI_APP_FAILED;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    char err[160] = "cannot read the modules back";
    char *text = NULL;
    if (msgpack_unpack_next (&u, (const char *) hex.data, hex.len, &off)
        == MSGPACK_UNPACK_SUCCESS)
        text = cli_msgpack_to_json (&u.data, CLI_JSON_COMPACT, err, sizeof err);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&hex);
    if (!text) {
        fprintf (stderr, "aaax: the modules cannot be shown as JSON (%s)\n",
                 err);
        return CLI_APP_FAILED;
    }
    char *line = s_strdupf ("%s\n", text);
    free (text);
    return s_output (line);
}

/*  The request of cli's subcommand into req. Exit code. */
static int
s_request (const s_cli_t *cli, chan_buf_t *req)
{
    msgpack_packer pk;
    chan_buf_packer (req, &pk);
    const s_sub_t *sub = cli->sub;
    if (sub->op == S_LIST) {
        msgpack_pack_map (&pk, 1);
        chan_pack_cstr (&pk, "op");
        chan_pack_cstr (&pk, sub->name);
        return CLI_APP_OK;
    }
    msgpack_pack_map (&pk, 2);
    chan_pack_cstr (&pk, "op");
    chan_pack_cstr (&pk, sub->name);
    if (sub->op != S_LOAD) {
        chan_pack_cstr (&pk, "name");
        chan_pack_cstr (&pk, cli->args[0]);
        return CLI_APP_OK;
    }
    char cwd[S_PATH_MAX];
    if (!getcwd (cwd, sizeof cwd)) {
        fprintf (stderr, "aaax: cannot read the working directory: %s\n",
                 strerror (errno));
        return CLI_APP_FAILED;
    }
    /*  One path as path; several as paths, so that the loader orders them
        by their dependencies. */
    if (cli->nargs == 1)
        chan_pack_cstr (&pk, "path");
    else {
        chan_pack_cstr (&pk, "paths");
        msgpack_pack_array (&pk, (size_t) cli->nargs);
    }
    for (int i = 0; i < cli->nargs; i++) {
        char abs[S_PATH_MAX];
        if (cli_app_abspath (cwd, cli->args[i], abs, sizeof abs) != 0)
            return s_usage (sub, "path too long: '%s'", cli->args[i]);
        chan_pack_cstr (&pk, abs);
    }
    return CLI_APP_OK;
}

static int
s_run (s_cli_t *cli)
{
    chan_buf_t req;
    chan_buf_init (&req);
    int ret = s_request (cli, &req);
    if (ret) {
        chan_buf_fini (&req);
        return ret;
    }
    cli_kernel_reply_t reply;
    ret = s_ask (cli, &req, &reply);
    chan_buf_fini (&req);
    if (ret == CLI_APP_OK)
        ret = s_check (cli, reply.data);
    if (ret == CLI_APP_OK) {
        const msgpack_object *data = reply.data;
        char *name = cli->nargs ? s_safe (cli->args[0]) : NULL;
        switch (cli->sub->op) {
        case S_LOAD: ret = s_print_modules (data, "loaded"); break;
        case S_RELOAD: ret = s_print_modules (data, "reloaded"); break;
        case S_UNLOAD:
            ret = s_output (name ? s_strdupf ("unloaded %s\n", name) : NULL);
            break;
        case S_UNPIN:
            ret = s_output (name ? s_strdupf ("unpinned %s\n", name) : NULL);
            break;
        case S_PIN: {
            char *digest = s_text (chan_obj_get (data, "digest"));
            ret = s_output (name && digest ? s_strdupf ("pinned %s digest %s\n",
                                                        name, digest)
                                           : NULL);
            free (digest);
            break;
        }
        case S_LIST: {
            const msgpack_object *mods = chan_obj_get (data, "modules");
            if (!mods || mods->type != MSGPACK_OBJECT_ARRAY) {
                fprintf (stderr, "aaax: the answer carries no modules\n");
                ret = CLI_APP_FAILED;
            } else if (cli->json)
                ret = s_print_json (mods);
            else
                ret = s_output (cli_app_table (mods));
            break;
        }
        }
        free (name);
    }
    cli_kernel_reply_fini (&reply);
    s_bye (cli);
    return ret;
}

int
cli_app_main (int argc, char **argv)
{
    if (argc < 2) {
        fprintf (stderr, "aaax: 'app' needs a subcommand\n\n");
        s_group_usage (stderr);
        return CLI_APP_USAGE;
    }
    const char *name = argv[1];
    if (strcmp (name, "--help") == 0 || strcmp (name, "-h") == 0
        || strcmp (name, "help") == 0)
        return cli_app_help (strcmp (name, "help") == 0 && argc > 2 ? argv[2]
                                                                    : NULL);
    if (strcmp (name, "run") == 0)
        return cli_app_run (argc - 1, argv + 1);
    const s_sub_t *sub = s_find (name);
    if (!sub) {
        fprintf (stderr, "aaax: unknown subcommand 'app %s'\n\n", name);
        s_group_usage (stderr);
        return CLI_APP_USAGE;
    }
    /*  SIGINT / SIGTERM end the wait for the answer (with BYE). */
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
    s_cli_t cli;
    memset (&cli, 0, sizeof cli);
    cli.sub = sub;
    int ret = s_parse (&cli, argc - 1, argv + 1);
    if (ret < 0)
        return s_sub_help (sub);
    if (ret == 0)
        ret = s_run (&cli);
    chan_client_destroy (&cli.client);
    sodium_memzero (cli.token, sizeof cli.token);
    return ret;
}

/*  ---- pure helpers ---------------------------------------------------- */

int
cli_app_abspath (const char *cwd, const char *path, char *out, size_t size)
{
    if (!path || !*path || size < 2)
        return -1;
    bool rel = path[0] != '/';
    if (rel && (!cwd || cwd[0] != '/'))
        return -1;
    size_t n = 0;
    /*  Appends the items of s, each as "/item". */
    for (int pass = rel ? 0 : 1; pass < 2; pass++) {
        const char *p = pass == 0 ? cwd : path;
        while (*p) {
            while (*p == '/')
                p++;
            const char *start = p;
            while (*p && *p != '/')
                p++;
            size_t len = (size_t) (p - start);
            if (len == 0 || (len == 1 && start[0] == '.'))
                continue;
            if (n + 1 + len + 1 > size)
                return -1;
            out[n++] = '/';
            memcpy (out + n, start, len);
            n += len;
        }
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = 0;
    return 0;
}

/*  Appends s (len bytes) with control characters as '?'. */
static void
s_put_safe (chan_buf_t *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if ((unsigned char) c < 0x20 || c == 0x7f)
            c = '?';
        chan_buf_append (b, &c, 1);
    }
}

static void
s_put (chan_buf_t *b, const char *s)
{
    chan_buf_append (b, s, strlen (s));
}

static void s_putf (chan_buf_t *b, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_putf (chan_buf_t *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (tmp, sizeof tmp, fmt, ap);
    va_end (ap);
    if (n > 0)
        chan_buf_append (b, tmp,
                         (size_t) n < sizeof tmp ? (size_t) n : sizeof tmp - 1);
}

static void
s_put_hex (chan_buf_t *b, const uint8_t *p, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        char two[2] = { digits[p[i] >> 4], digits[p[i] & 15] };
        chan_buf_append (b, two, 2);
    }
}

/*  A scalar for people: a string as it is (made safe), numbers, yes / no;
    "-" when absent or nil, "?" for anything else. */
static void
s_put_value (chan_buf_t *b, const msgpack_object *o)
{
    if (!o) {
        s_put (b, "-");
        return;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        s_put_safe (b, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        s_put_hex (b, (const uint8_t *) o->via.bin.ptr, o->via.bin.size);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        s_putf (b, "%" PRIu64, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        s_putf (b, "%" PRId64, o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: s_putf (b, "%g", o->via.f64); break;
    case MSGPACK_OBJECT_BOOLEAN:
        s_put (b, o->via.boolean ? "yes" : "no");
        break;
    case MSGPACK_OBJECT_NIL: s_put (b, "-"); break;
    default: s_put (b, "?"); break;
    }
}

/*  b's content as a malloc'd C string (b is left empty); NULL on OOM. */
static char *
s_take (chan_buf_t *b)
{
    chan_buf_append (b, "", 1);
    if (b->oom) {
        chan_buf_fini (b);
        return NULL;
    }
    char *s = (char *) b->data;
    chan_buf_init (b);
    return s;
}

static char *
s_text (const msgpack_object *o)
{
    chan_buf_t b;
    chan_buf_init (&b);
    s_put_value (&b, o);
    return s_take (&b);
}

static char *
s_safe (const char *s)
{
    chan_buf_t b;
    chan_buf_init (&b);
    s_put_safe (&b, s, strlen (s));
    return s_take (&b);
}

void
cli_app_digest12 (const msgpack_object *digest, char *out, size_t size)
{
    chan_buf_t b;
    chan_buf_init (&b);
    if (digest && digest->type == MSGPACK_OBJECT_STR) {
        const char *p = digest->via.str.ptr;
        size_t len = digest->via.str.size;
        const char *colon = len ? memrchr (p, ':', len) : NULL;
        if (colon) {
            len -= (size_t) (colon + 1 - p);
            p = colon + 1;
        }
        s_put_safe (&b, p, len < 12 ? len : 12);
    } else if (digest && digest->type == MSGPACK_OBJECT_BIN)
        s_put_hex (&b, (const uint8_t *) digest->via.bin.ptr,
                   digest->via.bin.size < 6 ? digest->via.bin.size : 6);
    if (b.len == 0 || b.oom)
        snprintf (out, size, "-");
    else
        snprintf (out, size, "%.*s", (int) b.len, (const char *) b.data);
    chan_buf_fini (&b);
}

/*  The strings of a list, ", "-separated; "none" when empty or absent. */
static void
s_put_list (chan_buf_t *b, const msgpack_object *list)
{
    if (!list || list->type != MSGPACK_OBJECT_ARRAY || !list->via.array.size) {
        s_put (b, "none");
        return;
    }
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        if (i)
            s_put (b, ", ");
        s_put_value (b, &list->via.array.ptr[i]);
    }
}

char *
cli_app_loaded_lines (const msgpack_object *modules, const char *verb)
{
    chan_buf_t b;
    chan_buf_init (&b);
    if (modules && modules->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < modules->via.array.size; i++) {
            const msgpack_object *m = &modules->via.array.ptr[i];
            if (m->type != MSGPACK_OBJECT_MAP)
                continue;
            char digest[16];
            cli_app_digest12 (chan_obj_get (m, "digest"), digest,
                              sizeof digest);
            s_put (&b, verb);
            s_put (&b, " ");
            s_put_value (&b, chan_obj_get (m, "name"));
            s_put (&b, " ");
            s_put_value (&b, chan_obj_get (m, "version"));
            s_putf (&b, " (digest %s) granted: ", digest);
            s_put_list (&b, chan_obj_get (m, "granted"));
            s_put (&b, "; refused: ");
            s_put_list (&b, chan_obj_get (m, "refused"));
            s_put (&b, "\n");
        }
    return s_take (&b);
}

enum { S_COLS = 8 };

typedef struct {
    char *cell[S_COLS];
    char *error; /* a failed app's last error, or NULL */
} s_row_t;

static int
s_row_cmp (const void *a, const void *b)
{
    return strcmp (((const s_row_t *) a)->cell[0],
                   ((const s_row_t *) b)->cell[0]);
}

static bool
s_str_is (const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen (s)
           && memcmp (o->via.str.ptr, s, o->via.str.size) == 0;
}

/*  A row's cells; false on OOM. */
static bool
s_row_fill (s_row_t *row, const msgpack_object *m)
{
    static const char *keys[S_COLS] = { "name", "version", "state", "restarts",
                                        NULL,   "handled", NULL,    "path" };
    chan_buf_t b;
    chan_buf_init (&b);
    for (int c = 0; c < S_COLS; c++) {
        if (keys[c])
            s_put_value (&b, chan_obj_get (m, keys[c]));
        else if (c == 4) {
            const msgpack_object *mem = chan_obj_get (m, "memory");
            if (mem && mem->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                s_putf (&b, "%" PRIu64,
                        mem->via.u64 / 1024 + (mem->via.u64 % 1024 != 0));
            else
                s_put_value (&b, mem);
        } else {
            const msgpack_object *pin = chan_obj_get (m, "pinned");
            bool pinned =
                pin && pin->type != MSGPACK_OBJECT_NIL
                && !(pin->type == MSGPACK_OBJECT_BOOLEAN && !pin->via.boolean);
            s_put (&b, pinned ? "yes" : "no");
        }
        row->cell[c] = s_take (&b);
        if (!row->cell[c])
            return false;
    }
    const msgpack_object *err = chan_obj_get (m, "error");
    if (s_str_is (chan_obj_get (m, "state"), "failed") && err
        && err->type == MSGPACK_OBJECT_STR) {
        row->error = s_text (err);
        if (!row->error)
            return false;
    }
    return true;
}

char *
cli_app_table (const msgpack_object *modules)
{
    static const char *heads[S_COLS] = { "NAME",     "VERSION",     "STATE",
                                         "RESTARTS", "MEMORY(KiB)", "HANDLED",
                                         "PINNED",   "PATH" };
    if (!modules || modules->type != MSGPACK_OBJECT_ARRAY)
        return NULL;
    uint32_t n = 0;
    for (uint32_t i = 0; i < modules->via.array.size; i++)
        if (modules->via.array.ptr[i].type == MSGPACK_OBJECT_MAP)
            n++;
    s_row_t *rows = (s_row_t *) calloc (n ? n : 1, sizeof *rows);
    if (!rows)
        return NULL;
    bool ok = true;
    uint32_t r = 0;
    for (uint32_t i = 0; ok && i < modules->via.array.size; i++)
        if (modules->via.array.ptr[i].type == MSGPACK_OBJECT_MAP)
            ok = s_row_fill (&rows[r++], &modules->via.array.ptr[i]);
    char *text = NULL;
    if (ok) {
        size_t width[S_COLS];
        for (int c = 0; c < S_COLS; c++) {
            width[c] = strlen (heads[c]);
            for (uint32_t i = 0; i < n; i++)
                if (strlen (rows[i].cell[c]) > width[c])
                    width[c] = strlen (rows[i].cell[c]);
        }
        if (n)
            qsort (rows, n, sizeof *rows, s_row_cmp);
        chan_buf_t b;
        chan_buf_init (&b);
        for (uint32_t i = 0; i <= n; i++) {
            for (int c = 0; c < S_COLS; c++) {
                const char *cell = i == 0 ? heads[c] : rows[i - 1].cell[c];
                s_put (&b, cell);
                if (c + 1 < S_COLS)
                    for (size_t k = strlen (cell); k < width[c] + 2; k++)
                        s_put (&b, " ");
            }
            s_put (&b, "\n");
            if (i > 0 && rows[i - 1].error) {
                s_put (&b, "  error: ");
                s_put (&b, rows[i - 1].error);
                s_put (&b, "\n");
            }
        }
        text = s_take (&b);
    }
    for (uint32_t i = 0; i < n; i++) {
        for (int c = 0; c < S_COLS; c++)
            free (rows[i].cell[c]);
        free (rows[i].error);
    }
    free (rows);
    return text;
}
