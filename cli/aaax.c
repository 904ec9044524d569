/*  aaax.c — the aaax command-line client: one subcommand per thing a person
    does with the kernel from a shell (ping, tail, write, claim, ack, nack,
    send, stat, version; the kernel actors' ps, pause ... kill, gate, cap,
    approve, deny, approvals, policy reload; audit read offline; bench,
    cli/cli_bench.c), JSON in and
    JSON lines out, through chan_client and cli_kernel. Exit codes: 0 ok, 1
    the kernel said ERROR or did not answer, 2 usage (gate: 3 deny, 4 ask).
 */

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
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <czmq.h>
#include <sodium.h>

#include "aaax.h"
#include "chan_client.h"
#include "chan_req.h"
#include "cli_app.h"
#include "cli_bench.h"
#include "cli_json.h"
#include "cli_kernel.h"
#include "hal_audit.h"
#include "hal_cap.h"
#include "hal_clock.h"
#include "hal_curve.h"
#include "hal_keys.h"

#define S_DEFAULT_ENDPOINT "tcp://127.0.0.1:5670"
#define S_DEFAULT_TIMEOUT 5000
#define S_MAX_MS 86400000u      /* 24 h: longest --wait, --lease, ... */
#define S_MAX_STDIN (64u << 20) /* JSON read from stdin */
#define S_ENDPOINT_MAX 4200
#define S_MAX_FILE (1u << 20)        /* a capability file */
#define S_MAX_GRACE 600000           /* stop --grace: the kernel's limit */
#define S_AUDIT_POLL_MS 200          /* audit tail -f */
#define S_DEFAULT_DATA "./aaax-data" /* aaaxd's default --data */
#define S_ENROLL_TTL_MS 600000u      /* enroll --ttl: 10 minutes */
#define S_MAX_ENROLL_TTL_MS (30ull * 86400000ull) /* 30 days */

enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_DENY = 3, /* gate: the decision is deny */
    EXIT_ASK = 4   /* gate: the decision is ask (not decided yet) */
};

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
    OPT_DELAY,
    OPT_JSON,
    OPT_REASON,
    OPT_GRACE,
    OPT_SCOPE,
    OPT_REVOKE,
    OPT_ARGS,
    OPT_WAIT_APPROVAL,
    OPT_RIGHTS,
    OPT_TTL,
    OPT_PUB,
    OPT_FOLLOW,
    OPT_LINES,
    OPT_SERVER_KEY,
    OPT_CERT,
    OPT_LIST,
    OPT_TOKEN,
    OPT_SIZE,
    OPT_PUBLISHERS,
    OPT_SUBSCRIBERS,
    OPT_CHANNEL,
    OPT_BATCH,
    OPT_TRANSIENT,
    OPT_LAST = OPT_TRANSIENT
};
#define BIT(o) (UINT64_C (1) << (o))
/*  --key is --cert on every connecting subcommand but write and send, where
    it is the idempotency key. */
#define COMMON_OPTS                                                            \
    (BIT (OPT_CONNECT) | BIT (OPT_SYSTEM) | BIT (OPT_DATA) | BIT (OPT_TIMEOUT) \
     | BIT (OPT_HELP) | BIT (OPT_SERVER_KEY) | BIT (OPT_CERT) | BIT (OPT_KEY))

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
    { "json", no_argument, NULL, 256 + OPT_JSON },
    { "reason", required_argument, NULL, 256 + OPT_REASON },
    { "grace", required_argument, NULL, 256 + OPT_GRACE },
    { "scope", required_argument, NULL, 256 + OPT_SCOPE },
    { "revoke", required_argument, NULL, 256 + OPT_REVOKE },
    { "args", required_argument, NULL, 256 + OPT_ARGS },
    { "wait-approval", no_argument, NULL, 256 + OPT_WAIT_APPROVAL },
    { "rights", required_argument, NULL, 256 + OPT_RIGHTS },
    { "ttl", required_argument, NULL, 256 + OPT_TTL },
    { "pub", required_argument, NULL, 256 + OPT_PUB },
    { "follow", no_argument, NULL, 256 + OPT_FOLLOW },
    { "lines", required_argument, NULL, 256 + OPT_LINES },
    { "server-key", required_argument, NULL, 256 + OPT_SERVER_KEY },
    { "cert", required_argument, NULL, 256 + OPT_CERT },
    { "list", no_argument, NULL, 256 + OPT_LIST },
    { "token", required_argument, NULL, 256 + OPT_TOKEN },
    { "size", required_argument, NULL, 256 + OPT_SIZE },
    { "publishers", required_argument, NULL, 256 + OPT_PUBLISHERS },
    { "subscribers", required_argument, NULL, 256 + OPT_SUBSCRIBERS },
    { "channel", required_argument, NULL, 256 + OPT_CHANNEL },
    { "batch", required_argument, NULL, 256 + OPT_BATCH },
    { "transient", no_argument, NULL, 256 + OPT_TRANSIENT },
    { NULL, 0, NULL, 0 }
};

typedef struct _s_app_t s_app_t;

/*  s_command_t.flags */
enum {
    S_OFFLINE = 1, /* reads files only: no --connect, --system, --timeout */
    S_PRIV = 2,    /* the kernel answers privileged sessions only */
    S_DEFDATA = 4, /* offline; --data defaults to aaaxd's, ./aaax-data */
    S_LOCAL = 8    /* offline, and no --data either */
};

typedef struct {
    const char *name; /* one word, or two ("audit tail") */
    int (*run) (s_app_t *app);
    uint64_t opts; /* BIT (OPT_*) it accepts besides the common ones */
    int min_args;
    int max_args; /* -1: no limit */
    const char *synopsis;
    const char *summary;
    const char *help;  /* description, own options, examples */
    unsigned flags;    /* S_OFFLINE, S_PRIV */
    const char *exits; /* its exit codes, when not the common ones */
} s_command_t;

struct _s_app_t {
    const s_command_t *cmd;
    uint64_t given;      /* BIT (OPT_*) of the options given */
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
    bool json;
    bool wait_approval;
    bool follow;
    const char *reason;
    const char *scope;
    const char *revoke;
    const char *args_json;
    const char *rights;
    const char *pub;
    uint64_t grace_ms;
    uint64_t ttl_s;
    uint64_t lines;
    bool list;
    uint64_t size;            /* bench --size */
    uint64_t publishers;      /* bench --publishers */
    uint64_t subscribers;     /* bench --subscribers */
    const char *channel;      /* bench --channel */
    uint64_t wbatch;          /* bench --batch */
    bool transient;           /* bench --transient */
    const char *server_key;   /* --server-key, else $AAAX_SERVER_KEY (tcp) */
    const char *cert;         /* --cert / --key FILE, else $AAAX_CERT (tcp) */
    const char *enroll_token; /* enroll --token */
    uint64_t ttl_ms;          /* enroll --ttl */
    const char *systems[HAL_CURVE_IDS_MAX]; /* authorize --system ... */
    char *dash_key[1];                      /* authorize -KEY */
    size_t nsystems;
    char **args;
    int nargs;
    /*  Made from the options. */
    char endpoint[S_ENDPOINT_MAX];
    char sysbuf[AAAX_MAX_NAME + 1];
    char mailbox[AAAX_MAX_NAME + 2]; /* "@" + system */
    char token[65];
    bool privileged;
    char curve_public[HAL_CURVE_Z85_LEN + 1];
    char curve_secret[HAL_CURVE_Z85_LEN + 1];
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
    "  --server-key Z85  use CURVE: the kernel's public key ('aaax "
    "kernel-key'\n"
    "                 on its host; default $AAAX_SERVER_KEY on tcp://)\n"
    "  --cert FILE    with --server-key: this client's certificate from 'aaax\n"
    "                 keygen' (FILE_secret is read; default $AAAX_CERT on\n"
    "                 tcp://). --key FILE is the same, but not on write and\n"
    "                 send, where --key is the idempotency key\n"
    "  -h, --help     this help\n";

static const char s_offline_help[] =
    "Common options:\n"
    "  --data DIR     the kernel's data directory (read directly; no "
    "connection\n"
    "                 to the kernel is made, it may be running or not)\n"
    "  -h, --help     this help\n";

static const char s_common_exits[] =
    "Exit codes:\n"
    "  0  done\n"
    "  1  the kernel answered ERROR (printed as 'aaax: ERROR <code>: "
    "<reason>'),\n"
    "     or did not answer within --timeout, or output failed\n"
    "  2  usage: unknown subcommand or option, missing or bad argument, "
    "invalid JSON\n";

/*  The exit codes of subcommands that ask a kernel actor. */
#define S_ACTOR_EXITS                                                        \
    "Exit codes:\n"                                                          \
    "  0  done: the kernel actor answered with ok (and granted / revoked)\n" \
    "  1  the actor refused (ok: false: 'aaax: refused: <reason>' on "       \
    "stderr,\n"                                                              \
    "     the answer still printed), the kernel answered ERROR, or no "      \
    "answer\n"                                                               \
    "     came within --timeout\n"                                           \
    "  2  usage: unknown option, missing or bad argument\n"

static int s_cmd_ping (s_app_t *app);
static int s_cmd_tail (s_app_t *app);
static int s_cmd_write (s_app_t *app);
static int s_cmd_claim (s_app_t *app);
static int s_cmd_ack (s_app_t *app);
static int s_cmd_nack (s_app_t *app);
static int s_cmd_send (s_app_t *app);
static int s_cmd_stat (s_app_t *app);
static int s_cmd_version (s_app_t *app);
static int s_cmd_ps (s_app_t *app);
static int s_cmd_lifecycle (s_app_t *app);
static int s_cmd_gate (s_app_t *app);
static int s_cmd_cap_grant (s_app_t *app);
static int s_cmd_cap_list (s_app_t *app);
static int s_cmd_cap_revoke (s_app_t *app);
static int s_cmd_cap_verify (s_app_t *app);
static int s_cmd_approve (s_app_t *app);
static int s_cmd_deny (s_app_t *app);
static int s_cmd_approvals (s_app_t *app);
static int s_cmd_policy_reload (s_app_t *app);
static int s_cmd_audit_tail (s_app_t *app);
static int s_cmd_audit_show (s_app_t *app);
static int s_cmd_audit_verify (s_app_t *app);
static int s_cmd_kernel_key (s_app_t *app);
static int s_cmd_keygen (s_app_t *app);
static int s_cmd_authorize (s_app_t *app);
static int s_cmd_enroll (s_app_t *app);
static int s_cmd_bench (s_app_t *app);

static const s_command_t s_commands[] = {
    { "ping", s_cmd_ping, 0, 0, 0, "aaax ping [options]",
      "check that the kernel answers (no docking needed)",
      "Sends PING and prints the round trip and the kernel's clock:\n"
      "  PONG from EP in 0.213 ms (kernel time 1732291200.123456)\n"
      "\n"
      "Examples:\n"
      "  aaax ping\n"
      "  aaax ping --connect tcp://127.0.0.1:5670 --timeout 1000\n",
      0, NULL },
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
      "When the kernel is lost (no answer for 3 heartbeat periods, a\n"
      "restart, the session undocked) tail says so on stderr, reconnects\n"
      "with back-off (100 ms doubling to 5 s) and docks again, resuming its\n"
      "session (HELLO {resume}); a new session subscribes again since the\n"
      "last id printed, filling the gap from what the kernel retains.\n"
      "Nothing is printed twice. Ends with exit 0 after --count messages or\n"
      "on SIGINT/SIGTERM (after BYE); with exit 1 when docking again is\n"
      "refused (a revoked key).\n"
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
      "  aaax tail @me --system me\n",
      0, NULL },
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
      "  aaax write jobs -- -5\n",
      0, NULL },
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
      "  --wait MS      when none is ready, wait up to MS for one; if the\n"
      "                 kernel is lost meanwhile, reconnect and claim again\n"
      "                 for the time left\n"
      "  --lease MS     lease length\n"
      "  --ack          acknowledge what was printed\n"
      "\n"
      "Examples:\n"
      "  aaax claim jobs --max 10 --ack\n"
      "  aaax claim jobs --wait 30000 --lease 60000 --system worker-1\n"
      "  aaax ack jobs 01JD8X5Y6Z7A8B9C0D1E2F3G4H --system worker-1\n",
      0, NULL },
    { "ack", s_cmd_ack, 0, 2, -1, "aaax ack CHANNEL ID... [options]",
      "acknowledge claimed or mailbox messages; prints the count",
      "Acknowledges the messages ID... of CHANNEL: on a work-queue those\n"
      "whose lease this system holds (claimed with the same --system); on\n"
      "@ME (ME = --system) messages of your own mailbox. Prints how many\n"
      "took effect (ids not held are not counted, and are no error).\n"
      "\n"
      "Examples:\n"
      "  aaax ack jobs 01JD8X5Y6Z7A8B9C0D1E2F3G4H --system worker-1\n"
      "  aaax ack @me 01JD8X5Y6Z7A8B9C0D1E2F3G4H --system me\n",
      0, NULL },
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
      "--system w1\n",
      0, NULL },
    { "send", s_cmd_send,
      BIT (OPT_CORR) | BIT (OPT_KEY) | BIT (OPT_WAIT) | BIT (OPT_TRANSIENT), 2,
      2,
      "aaax send TO JSON [--corr ID] [--key K] [--wait MS] [--transient] "
      "[options]",
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
      "  --wait MS      wait up to MS for the reply (reconnecting if the\n"
      "                 kernel is lost meanwhile)\n"
      "  --transient    push it once to TO's live session and store nothing\n"
      "                 (no ACK, no redelivery); exit 1 with 404 when TO is\n"
      "                 not docked or is paused\n"
      "\n"
      "Examples:\n"
      "  aaax send worker-1 '{\"cmd\": \"status\"}'\n"
      "  aaax send worker-1 '{\"cmd\": \"status\"}' --transient --wait 2000\n"
      "  aaax send worker-1 '{\"cmd\": \"status\"}' --wait 5000 | tail -n "
      "1\n",
      0, NULL },
    { "stat", s_cmd_stat, 0, 0, 0, "aaax stat --data DIR [options]",
      "print the kernel's statistics (privileged)",
      "Docks privileged (needs --data DIR for the session token) and prints\n"
      "the STAT reply as indented JSON: heartbeat, version, data, counters,\n"
      "store, channels, sessions. Without the token the kernel refuses\n"
      "(ERROR 403, exit 1).\n"
      "\n"
      "Examples:\n"
      "  aaax stat --data ./aaax-data\n"
      "  aaax stat --data ./aaax-data --connect tcp://127.0.0.1:5670\n",
      0, NULL },
    { "version", s_cmd_version, 0, 0, 0, "aaax version",
      "print the CLI's version and protocol version",
      "Prints 'aaax VERSION (protocol AAAX/1)'. Contacts nobody.\n"
      "\n"
      "Example:\n"
      "  aaax version\n",
      0, NULL },
    { "ps", s_cmd_ps, BIT (OPT_JSON), 0, 0,
      "aaax ps --data DIR [--json] [options]",
      "list the docked systems (privileged)",
      "Asks the lifecycle actor (kernel.lifecycle {op: \"list\"}) for every\n"
      "docked system and prints an aligned table:\n"
      "  SYSTEM          KIND    STATE   PRIV  UP      IN   OUT  LEASES\n"
      "  kernel.gate     kernel  docked  yes   3m07s   12   12   0\n"
      "  worker-1        remote  paused  no    42s     3    1    1\n"
      "KIND is kernel, local (ipc) or, for tcp, remote with how it is\n"
      "secured: remote/plain, or remote/curve:KEYPREFIX (the first 8\n"
      "characters of its CURVE key). UP is the time since the system\n"
      "docked; IN / OUT count the messages it wrote and received in this\n"
      "session. When the kernel serves plain TCP on a non-loopback address\n"
      "(aaaxd --insecure), a line 'WARNING: ...' goes to stderr first.\n"
      "Privileged: needs --data DIR (the session token).\n"
      "\n"
      "Options:\n"
      "  --json         one JSON line per system instead: {id, kind, state,\n"
      "                 since, privileged, msgs_in, msgs_out, leases, auth,\n"
      "                 key, ...} as the kernel lists it\n"
      "\n"
      "Examples:\n"
      "  aaax ps --data ./aaax-data\n"
      "  aaax ps --data ./aaax-data --json | jq -r "
      "'select(.state == \"paused\") | .id'\n",
      S_PRIV, S_ACTOR_EXITS },
    { "pause", s_cmd_lifecycle, BIT (OPT_REASON), 1, 1,
      "aaax pause ID --data DIR [--reason TEXT] [options]",
      "pause a system: no writes, no deliveries (privileged)",
      "Asks the lifecycle actor to pause the system ID: its WRITE, SEND, SUB,\n"
      "CLAIM, ACK, NACK get ERROR 423, nothing is delivered to it, it keeps\n"
      "its leases; the pause belongs to the system id and outlives a new\n"
      "dock. ID gets a STOP signal in its mailbox. Prints the answer\n"
      "{ok, reason} as one JSON line. Audited; rate limited per caller.\n"
      "\n"
      "Options:\n"
      "  --reason TEXT  why (in the signal message and the audit log)\n"
      "\n"
      "Examples:\n"
      "  aaax pause worker-1 --data ./aaax-data --reason 'runaway loop'\n"
      "  aaax resume worker-1 --data ./aaax-data\n",
      S_PRIV, S_ACTOR_EXITS },
    { "resume", s_cmd_lifecycle, BIT (OPT_REASON), 1, 1,
      "aaax resume ID --data DIR [--reason TEXT] [options]",
      "resume a paused system (privileged)",
      "Asks the lifecycle actor to lift the pause of the system ID: what\n"
      "waited in its mailbox is delivered, it may write again; it gets a\n"
      "CONT signal. Prints the answer {ok, reason} as one JSON line.\n"
      "\n"
      "Options:\n"
      "  --reason TEXT  why (in the signal message and the audit log)\n"
      "\n"
      "Example:\n"
      "  aaax resume worker-1 --data ./aaax-data\n",
      S_PRIV, S_ACTOR_EXITS },
    { "stop", s_cmd_lifecycle, BIT (OPT_REASON) | BIT (OPT_GRACE), 1, 1,
      "aaax stop ID --data DIR [--reason TEXT] [--grace MS] [options]",
      "ask a system to stop, then undock it (privileged)",
      "Asks the lifecycle actor to stop the system ID: a TERM signal goes to\n"
      "its mailbox ({signal: \"TERM\", reason, session}); if it is still\n"
      "docked when the grace period ends it is undocked as by kill. Prints\n"
      "the answer {ok, reason} as one JSON line (at once: it does not wait\n"
      "for the grace period).\n"
      "\n"
      "Options:\n"
      "  --reason TEXT  why (in the signal message and the audit log)\n"
      "  --grace MS     the grace period, up to 600000 (default: the "
      "kernel's,\n"
      "                 stop_grace_ms)\n"
      "\n"
      "Example:\n"
      "  aaax stop worker-1 --data ./aaax-data --grace 10000\n",
      S_PRIV, S_ACTOR_EXITS },
    { "kill", s_cmd_lifecycle, BIT (OPT_REASON), 1, 1,
      "aaax kill ID --data DIR [--reason TEXT] [options]",
      "undock a system now (privileged)",
      "Asks the lifecycle actor to kill the system ID: a KILL signal to its\n"
      "mailbox, then its session is undocked at once, its leases released\n"
      "and its capabilities and session approvals revoked. Prints the\n"
      "answer {ok, reason} as one JSON line.\n"
      "\n"
      "Options:\n"
      "  --reason TEXT  why (in the signal message and the audit log)\n"
      "\n"
      "Example:\n"
      "  aaax kill worker-1 --data ./aaax-data --reason 'compromised'\n",
      S_PRIV, S_ACTOR_EXITS },
    { "gate", s_cmd_gate, BIT (OPT_ARGS) | BIT (OPT_WAIT_APPROVAL), 2, 2,
      "aaax gate ACTION TARGET [--args JSON] [--wait-approval] [options]",
      "ask the action gate: allow, deny or ask?",
      "Writes {action, target, args} to kernel.gate and prints the decision\n"
      "as one JSON line: {decision: \"allow\" | \"deny\" | \"ask\", reason,\n"
      "rule, audit_id}. The exit code says the decision (see below). Every\n"
      "decision is in the audit log under audit_id ('aaax audit show ID').\n"
      "An \"ask\" waits for an operator: 'aaax approve AUDIT_ID' or\n"
      "'aaax deny AUDIT_ID'.\n"
      "\n"
      "Options:\n"
      "  --args JSON      the action's arguments, a JSON object (default "
      "{};\n"
      "                   '-' reads it from stdin)\n"
      "  --wait-approval  when the decision is ask, wait for the outcome\n"
      "                   (approved: decision allow; denied or timed out in\n"
      "                   the kernel: deny) and print it as a second line.\n"
      "                   The wait is bounded by --timeout when given, else\n"
      "                   by the kernel's ask timeout (24 h at most). If\n"
      "                   the kernel is lost meanwhile it reconnects and\n"
      "                   waits on.\n"
      "\n"
      "Examples:\n"
      "  aaax gate fs.delete /tmp/x\n"
      "  aaax gate net.fetch https://example.com --system agent-1 "
      "--wait-approval\n"
      "  aaax gate shell.run make --args '{\"argv\": [\"make\", \"-j2\"]}'\n"
      "  if aaax gate fs.write /etc/hosts >/dev/null; then echo allowed; "
      "fi\n",
      0,
      "Exit codes:\n"
      "  0  allow\n"
      "  3  deny\n"
      "  4  ask (without --wait-approval, or no outcome within --timeout)\n"
      "  1  the kernel answered ERROR, no answer within --timeout, "
      "interrupted,\n"
      "     or an answer without a decision\n"
      "  2  usage: unknown option, missing argument, invalid JSON, --args "
      "not an\n"
      "     object\n" },
    { "cap grant", s_cmd_cap_grant, BIT (OPT_RIGHTS) | BIT (OPT_TTL), 1, 1,
      "aaax cap grant RESOURCE [--rights R1,R2] [--ttl S] [options]",
      "ask for a signed capability",
      "Asks the capability actor (kernel.capability_requests) for a\n"
      "capability on RESOURCE for this system (--system): \"chan:NAME\"\n"
      "with rights read, write, claim, or \"action:PATTERN\" with invoke\n"
      "(the default there). The policy decides. Prints the answer as one\n"
      "JSON line: {ok, granted, reason, cap}, cap being the signed\n"
      "{id, subject, resource, rights, expires, issuer, sig}; that line,\n"
      "saved to a file, is what 'aaax cap verify FILE' reads.\n"
      "\n"
      "Options:\n"
      "  --rights LIST  comma-separated rights, e.g. read,write\n"
      "  --ttl S        lifetime in seconds (default: the kernel's, 3600;\n"
      "                 at most 30 days)\n"
      "\n"
      "Examples:\n"
      "  aaax cap grant chan:orders --rights read,claim --ttl 600 "
      "--system w1\n"
      "  aaax cap grant action:net.fetch --system agent-1 > cap.json\n"
      "  aaax cap verify cap.json --data ./aaax-data\n",
      0, S_ACTOR_EXITS },
    { "cap list", s_cmd_cap_list, 0, 0, 0, "aaax cap list [options]",
      "list capabilities (your own; all with --data)",
      "Asks the capability actor for the capabilities of this system\n"
      "(--system), or every live one when docked privileged (--data DIR),\n"
      "and prints each as one JSON line {id, subject, resource, rights,\n"
      "expires, issuer, sig} (a line is also a valid 'cap verify' file).\n"
      "\n"
      "Examples:\n"
      "  aaax cap list --system w1\n"
      "  aaax cap list --data ./aaax-data | jq -r .id\n",
      0, S_ACTOR_EXITS },
    { "cap revoke", s_cmd_cap_revoke, 0, 1, 1, "aaax cap revoke ID [options]",
      "revoke a capability (its holder, or privileged)",
      "Asks the capability actor to revoke the capability ID; allowed to\n"
      "its holder (same --system) and to a privileged session. Prints the\n"
      "answer {ok, revoked, reason} as one JSON line; exit 0 only when it\n"
      "was revoked.\n"
      "\n"
      "Examples:\n"
      "  aaax cap revoke cap_9e9e168197119262b54dceec076079ef --system w1\n"
      "  aaax cap revoke cap_9e9e168197119262b54dceec076079ef --data "
      "./aaax-data\n",
      0, S_ACTOR_EXITS },
    { "cap verify", s_cmd_cap_verify, BIT (OPT_PUB), 1, 1,
      "aaax cap verify FILE (--pub FILE | --data DIR)",
      "check a capability's signature and expiry (offline)",
      "Reads a capability from FILE ('-': stdin) — JSON as 'aaax cap grant'\n"
      "prints it (the capability is its cap member) or as 'aaax cap list'\n"
      "prints it, or raw msgpack of either — and checks its ed25519\n"
      "signature against the kernel's public key, then its expiry against\n"
      "this machine's clock. Prints one line:\n"
      "  valid\n"
      "  invalid: <why>          (bad signature, another issuer, malformed)\n"
      "  expired at <UTC time>   (the signature is good)\n"
      "Contacts nobody, so it cannot know of a revocation: ask the kernel\n"
      "('aaax cap list') for that.\n"
      "\n"
      "Options:\n"
      "  --pub FILE     the kernel's public key file (kernel.pub: 64 hex\n"
      "                 characters)\n"
      "  --data DIR     use DIR/kernel.pub\n"
      "\n"
      "Examples:\n"
      "  aaax cap verify cap.json --data ./aaax-data\n"
      "  aaax cap list --system w1 | head -1 | aaax cap verify - --pub "
      "kernel.pub\n",
      S_OFFLINE,
      "Exit codes:\n"
      "  0  valid and not expired\n"
      "  1  invalid or expired; or FILE or the key cannot be read\n"
      "  2  usage: missing FILE, neither or both of --pub and --data\n" },
    { "approve", s_cmd_approve, BIT (OPT_SCOPE), 1, 1,
      "aaax approve AUDIT_ID --data DIR [--scope once|session|always] "
      "[options]",
      "approve a pending ask of the gate (privileged)",
      "Tells the approvals actor (kernel.approvals) to approve the pending\n"
      "gate request AUDIT_ID (its audit_id; 'aaax approvals' lists them).\n"
      "The requester gets a follow-up answer with decision allow. Prints\n"
      "the answer {ok, reason, approval_id} as one JSON line.\n"
      "\n"
      "Options:\n"
      "  --scope S      once: this request only (the default); session: the\n"
      "                 same subject, action and target until the subject\n"
      "                 undocks; always: a standing approval, kept across\n"
      "                 restarts until 'aaax approvals --revoke ID'\n"
      "\n"
      "Examples:\n"
      "  aaax approve 42 --data ./aaax-data\n"
      "  aaax approve 42 --scope session --data ./aaax-data\n",
      S_PRIV, S_ACTOR_EXITS },
    { "deny", s_cmd_deny, BIT (OPT_REASON), 1, 1,
      "aaax deny AUDIT_ID --data DIR [--reason TEXT] [options]",
      "deny a pending ask of the gate (privileged)",
      "Tells the approvals actor to deny the pending gate request AUDIT_ID;\n"
      "the requester gets a follow-up answer with decision deny. Prints the\n"
      "answer {ok, reason} as one JSON line.\n"
      "\n"
      "Options:\n"
      "  --reason TEXT  why (default: the kernel's, denied by an operator)\n"
      "\n"
      "Example:\n"
      "  aaax deny 42 --data ./aaax-data --reason 'not on a Friday'\n",
      S_PRIV, S_ACTOR_EXITS },
    { "approvals", s_cmd_approvals, BIT (OPT_REVOKE), 0, 0,
      "aaax approvals --data DIR [--revoke ID] [options]",
      "list pending asks and standing approvals (privileged)",
      "Asks the approvals actor for the gate requests waiting for an\n"
      "operator and the approvals in force, and prints one JSON line each,\n"
      "pending ones first:\n"
      "  {type: \"pending\", audit_id, subject, action, target, ts}\n"
      "  {type: \"approval\", id, subject, action, target, scope, ts}\n"
      "\n"
      "Options:\n"
      "  --revoke ID    instead, revoke the approval ID (a session or "
      "always\n"
      "                 approval) and print the answer {ok, reason}\n"
      "\n"
      "Examples:\n"
      "  aaax approvals --data ./aaax-data\n"
      "  aaax approvals --data ./aaax-data | jq -r "
      "'select(.type == \"pending\") | .audit_id'\n"
      "  aaax approvals --data ./aaax-data --revoke "
      "apr_a9df5717f59b0b0411e95e40\n",
      S_PRIV, S_ACTOR_EXITS },
    { "policy reload", s_cmd_policy_reload, 0, 0, 0,
      "aaax policy reload --data DIR [options]",
      "reload the policy file now (privileged; as SIGHUP)",
      "Makes the kernel read its policy again (CTL {op: \"reload\"}), as\n"
      "SIGHUP does, and prints {version, digest, rules} of the policy now in\n"
      "force as one JSON line; the change is published on kernel.policy and\n"
      "audited. A policy file with an error is refused with its file:line\n"
      "(ERROR 400, exit 1) and the old policy stays.\n"
      "\n"
      "Example:\n"
      "  aaax policy reload --data ./aaax-data\n",
      S_PRIV, NULL },
    { "audit tail", s_cmd_audit_tail, BIT (OPT_FOLLOW) | BIT (OPT_LINES), 0, 0,
      "aaax audit tail --data DIR [-f] [-n N]",
      "print the last audit records (offline)",
      "Reads the audit log DIR/audit directly (read-only; aaaxd may be\n"
      "running) and prints its last N records, oldest first, one JSON line\n"
      "each: {seq, hash, ts, kind, subject, action, target, verdict, rule,\n"
      "reason, args, corr} as far as the record has them, bytes (hash, a\n"
      "checkpoint's head and sig) as lower-case hex.\n"
      "\n"
      "Options:\n"
      "  -n, --lines N  how many (default 10; 0 with -f: only new ones)\n"
      "  -f, --follow   then print new records as they are written "
      "(polling\n"
      "                 every 200 ms) until SIGINT / SIGTERM\n"
      "\n"
      "Examples:\n"
      "  aaax audit tail --data ./aaax-data -n 50\n"
      "  aaax audit tail --data ./aaax-data -f -n 0 | jq -c "
      "'select(.verdict == \"deny\")'\n",
      S_OFFLINE,
      "Exit codes:\n"
      "  0  done (with -f: after SIGINT / SIGTERM, or when the reader went "
      "away)\n"
      "  1  the audit log cannot be opened or read, stdout failed\n"
      "  2  usage: no --data, bad -n\n" },
    { "audit show", s_cmd_audit_show, 0, 1, 1, "aaax audit show ID --data DIR",
      "print one audit record (offline)",
      "Prints the audit record whose seq is ID (the audit_id of a gate\n"
      "answer) as one JSON line, as 'aaax audit tail' does.\n"
      "\n"
      "Example:\n"
      "  aaax audit show 42 --data ./aaax-data | jq .verdict\n",
      S_OFFLINE,
      "Exit codes:\n"
      "  0  printed\n"
      "  1  no such record, or the log cannot be read\n"
      "  2  usage: no --data, ID not a number\n" },
    { "audit verify", s_cmd_audit_verify, BIT (OPT_PUB), 0, 0,
      "aaax audit verify --data DIR [--pub FILE]",
      "check the audit chain and its signatures (offline)",
      "Walks the whole audit log DIR/audit: sequence numbers contiguous from\n"
      "1, every hash recomputed over the previous one, every checkpoint\n"
      "signature checked with the kernel's public key (DIR/kernel.pub, or\n"
      "--pub FILE). Works while aaaxd runs. Prints\n"
      "  audit: 1234 records verified, 2 checkpoints, 0 unsigned at the "
      "tail\n"
      "or, on damage, names the first bad record:\n"
      "  audit: damaged at record 17: <why> (16 records before it "
      "verified)\n"
      "Records after the last checkpoint are chained but not yet signed\n"
      "(\"unsigned at the tail\"); the kernel signs at every checkpoint and "
      "at\n"
      "shutdown.\n"
      "\n"
      "Options:\n"
      "  --pub FILE     the kernel's public key (default DIR/kernel.pub)\n"
      "\n"
      "Examples:\n"
      "  aaax audit verify --data ./aaax-data\n"
      "  aaax audit verify --data /backup/aaax-data --pub ~/kernel.pub\n",
      S_OFFLINE,
      "Exit codes:\n"
      "  0  intact\n"
      "  1  damaged (the first bad record named), or the log or key cannot "
      "be\n"
      "     read\n"
      "  2  usage: no --data\n" },
    { "kernel-key", s_cmd_kernel_key, 0, 0, 0, "aaax kernel-key [--data DIR]",
      "print the kernel's CURVE public key (offline)",
      "Prints the public key of the kernel's CURVE certificate\n"
      "(DIR/curve/server.cert, made by aaaxd at its first boot) as 40\n"
      "characters of Z85 on one line. Remote clients give it as\n"
      "--server-key (or $AAAX_SERVER_KEY). Reads the file only: the kernel\n"
      "may be running or not. The key is public: copy it to the clients any\n"
      "way you like, but make sure it is the right one (it is what proves to\n"
      "them that they talk to this kernel).\n"
      "\n"
      "Options:\n"
      "  --data DIR     the kernel's data directory (default " S_DEFAULT_DATA
      ")\n"
      "\n"
      "Examples:\n"
      "  aaax kernel-key --data ./aaax-data\n"
      "  export AAAX_SERVER_KEY=$(aaax kernel-key --data ./aaax-data)\n",
      S_OFFLINE | S_DEFDATA,
      "Exit codes:\n"
      "  0  printed\n"
      "  1  no key in DIR (aaaxd never started there), or it cannot be read\n"
      "  2  usage: unknown option, an argument\n" },
    { "keygen", s_cmd_keygen, 0, 1, 1, "aaax keygen NAME",
      "make a client CURVE certificate: NAME and NAME_secret",
      "Makes a new CURVE key pair and writes it in czmq's certificate format:\n"
      "NAME holds the public key (mode 0644) and NAME_secret both keys (mode\n"
      "0600). Prints the public key (Z85, 40 characters) on stdout: give it\n"
      "to the kernel's operator for 'aaax authorize', or dock once with an\n"
      "enrollment token ('aaax enroll --token'). Never overwrites: when NAME\n"
      "or NAME_secret exists it refuses (exit 1). Connect with --cert NAME\n"
      "(or --key NAME, or $AAAX_CERT=NAME). Keep NAME_secret secret; if it is\n"
      "lost or stolen, have the key revoked ('aaax authorize --revoke').\n"
      "\n"
      "Examples:\n"
      "  aaax keygen ~/.aaax/agent-1\n"
      "  chmod 700 ~/.aaax && aaax keygen ~/.aaax/agent-1 > agent-1.pub\n",
      S_LOCAL,
      "Exit codes:\n"
      "  0  written; the public key printed\n"
      "  1  NAME or NAME_secret exists, or they cannot be written\n"
      "  2  usage: no NAME, unknown option\n" },
    { "authorize", s_cmd_authorize,
      BIT (OPT_SYSTEM) | BIT (OPT_LIST) | BIT (OPT_REVOKE) | BIT (OPT_JSON), 0,
      1,
      "aaax authorize KEY --system ID [--system ID...] | --list [--json] | "
      "--revoke KEY [--data DIR]",
      "bind a CURVE key to system ids; --list, --revoke (offline)",
      "Edits the kernel's authorized keys (DIR/curve/authorized) directly,\n"
      "whether or not aaaxd runs; a running kernel applies the change at\n"
      "once. Over CURVE a HELLO may only dock as a system id bound to the\n"
      "connection's key (else ERROR 401); an id bound to a key can only be\n"
      "docked with a key bound to it (or privileged, with the session\n"
      "token).\n"
      "\n"
      "  KEY --system ID...  binds the public key KEY (Z85, as 'aaax keygen'\n"
      "                 prints it) to each ID, adding to what it has. An id\n"
      "                 may be bound to several keys: to rotate a key, bind\n"
      "                 the new one, then revoke the old. Prints\n"
      "                 'authorized KEY ID...' (all its ids now).\n"
      "  --list         prints every binding: 'KEY ID...' per line\n"
      "  --revoke KEY   removes the key: it can no longer dock, and its\n"
      "                 live sessions are undocked at once. Prints\n"
      "                 'revoked KEY'.\n"
      "\n"
      "Options:\n"
      "  --system ID    a system id the key may dock as (repeatable)\n"
      "  --list         list the bindings\n"
      "  --json         with --list: one JSON line per key, {key, systems}\n"
      "  --revoke KEY   revoke the key\n"
      "  --data DIR     the kernel's data directory (default " S_DEFAULT_DATA
      ")\n"
      "\n"
      "Examples:\n"
      "  aaax authorize 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7' --system "
      "agent-1\n"
      "  aaax authorize \"$(cat agent-1.pub)\" --system agent-1 --system "
      "agent-1b --data /srv/aaax\n"
      "  aaax authorize --list --data /srv/aaax\n"
      "  aaax authorize --revoke 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7'\n",
      S_OFFLINE | S_DEFDATA,
      "Exit codes:\n"
      "  0  done\n"
      "  1  DIR does not exist, the file cannot be read or written, more\n"
      "     than 64 ids for one key, --revoke of a key that is not there\n"
      "  2  usage: no KEY or a malformed one, a malformed system id, KEY\n"
      "     without --system, two modes at once\n" },
    { "enroll", s_cmd_enroll, BIT (OPT_TTL) | BIT (OPT_TOKEN) | BIT (OPT_JSON),
      0, 0,
      "aaax enroll --system ID [--ttl DURATION] --data DIR [options]\n"
      "       aaax enroll --token TOKEN --server-key Z85 --cert FILE "
      "[--system ID] --connect EP",
      "make a one-time enrollment token (privileged), or redeem one",
      "Enrollment binds a new client's key without copying files back to\n"
      "the kernel's host. On the kernel's host (privileged: --data DIR):\n"
      "asks the kernel (CTL {op: \"enroll\"}) for a one-time token for the\n"
      "system id ID, valid for --ttl, and prints it as the last word:\n"
      "  enrollment token for agent-7, one use, valid until "
      "2025-01-31T12:10:00Z:\n"
      "  aaax-enroll-6f1c...\n"
      "The new client docks once over CURVE with HELLO {token} (here:\n"
      "'aaax enroll --token TOKEN' with its --server-key and --cert); its key\n"
      "is then bound to ID as 'aaax authorize' would. A used or expired\n"
      "token is refused.\n"
      "\n"
      "Options:\n"
      "  --system ID    the system id to enroll (making a token; this\n"
      "                 command itself docks under its default id). With\n"
      "                 --token: optional, must be the token's id\n"
      "  --ttl D        how long the token is valid: 90s, 10m, 2h, 1d (a\n"
      "                 plain number is seconds; 1s to 30d; default 10m)\n"
      "  --json         print the kernel's answer {system, token, expires}\n"
      "                 (expires: Unix time in ms) as one JSON line\n"
      "  --token TOKEN  redeem TOKEN: dock once with it over CURVE, print\n"
      "                 'enrolled: the key KEY may now dock as ID', leave\n"
      "\n"
      "Examples:\n"
      "  aaax enroll --system agent-7 --ttl 10m --data ./aaax-data\n"
      "  TOKEN=$(aaax enroll --system agent-7 --data ./aaax-data | tail -n 1 "
      "| awk '{print $NF}')\n"
      "  # on the new machine:\n"
      "  aaax keygen agent-7\n"
      "  aaax enroll --token \"$TOKEN\" --connect tcp://kernel-host:5670 \\\n"
      "      --server-key \"$KERNEL_KEY\" --cert agent-7\n",
      S_PRIV, NULL },
    { "bench", s_cmd_bench,
      BIT (OPT_SIZE) | BIT (OPT_COUNT) | BIT (OPT_PUBLISHERS)
          | BIT (OPT_SUBSCRIBERS) | BIT (OPT_CHANNEL) | BIT (OPT_MAX)
          | BIT (OPT_JSON) | BIT (OPT_BATCH) | BIT (OPT_TRANSIENT),
      1, 1,
      "aaax bench pub|queue|rpc [--size B] [--count N] [--publishers P] "
      "[--subscribers S] [--channel NAME] [--max N] [--batch N] "
      "[--transient] [--json] [options]",
      "measure a running kernel: msgs/s, MB/s, latency percentiles",
      "Puts load on a running kernel, like 'nats bench', and prints what it\n"
      "measured. Each publisher, subscriber, ... is a thread with its own\n"
      "connection and session, docked as SYSTEM-pub1, SYSTEM-sub1, ...\n"
      "(SYSTEM = --system; over CURVE authorize the key for those ids).\n"
      "The payload is --size bytes (a msgpack bin) that starts with the\n"
      "send time, so latency is measured from the send to the receipt.\n"
      "\n"
      "  pub    P publishers WRITE --count messages in all (split between\n"
      "         them, 256 WRITEs in flight each) to "
      "the broadcast channel\n"
      "         --channel (default events), which S subscribers SUB. "
      "Reports\n"
      "         the publish rate (OKs), each subscriber's receive rate and\n"
      "         the write->receive latency. The publishers stay at most\n"
      "         2048 messages ahead of the slowest subscriber, so that the\n"
      "         kernel never drops one for being slow.\n"
      "  queue  P producers WRITE --count messages in all to the work-queue\n"
      "         --channel (default jobs); S consumers CLAIM (up to --max\n"
      "         at a time, default 100, long-polling) and ACK them. Reports\n"
      "         the enqueue rate (OKs: on disk for a durable queue), the end\n"
      "         to end rate (ACKed) and the write->claim latency. Messages\n"
      "         in the queue that this run did not write are left alone.\n"
      "  rpc    one requester SENDs to a responder run by the command\n"
      "         itself, which answers with SEND to the requester (corr =\n"
      "         the request's id); one in flight. Reports round-trip\n"
      "         percentiles over --count round trips after a warm-up of\n"
      "         --count/10 (at most 1000).\n"
      "\n"
      "A progress bar goes to stderr when it is a terminal; the summary to\n"
      "stdout. Everything sent must be received: otherwise (or when the\n"
      "kernel refuses, a subscriber is DROPPED, or --timeout passes) it\n"
      "says how many were not, on stderr, and exits 1.\n"
      "\n"
      "Options:\n"
      "  --size B       payload bytes, 16 to 1000000 (default 128)\n"
      "  --count N      messages in all (pub, queue; default 100000), or\n"
      "                 round trips (rpc; default 10000)\n"
      "  --publishers P publishers / producers, 1 to 64 (default 1)\n"
      "  --subscribers S  subscribers (0 to 64) / consumers (1 to 64)\n"
      "                 (default 1)\n"
      "  --channel NAME the channel (default events for pub, jobs for queue)\n"
      "  --max N        queue: CLAIM up to N at a time (default 100)\n"
      "  --batch N      pub, queue: up to N messages per WRITE (a WRITE\n"
      "                 batch; subscribers SUB with batch and get MSGS);\n"
      "                 default 1, one WRITE per message\n"
      "  --transient    rpc: transient SENDs both ways (pushed once, never\n"
      "                 stored, no ACK): NATS request/reply semantics\n"
      "  --json         print one JSON object instead of the table: mode,\n"
      "                 sent, received, lost, ok, error, latency_us {samples,\n"
      "                 p50, p99, p99_9, max}, and per mode publish,\n"
      "                 per_subscriber / enqueue, end_to_end / rate\n"
      "  --timeout MS   for bench: the longest the whole run may take\n"
      "                 (default 60000); each answer is waited for at most\n"
      "                 10 s within it\n"
      "\n"
      "Examples:\n"
      "  aaax bench pub\n"
      "  aaax bench pub --size 100 --count 1000000 --subscribers 4\n"
      "  aaax bench queue --publishers 4 --subscribers 2 --max 500\n"
      "  aaax bench rpc --count 20000 --json | jq .latency_us\n"
      "  aaax bench pub --size 100 --count 2000000 --batch 256\n"
      "  aaax bench rpc --transient\n"
      "  aaax bench pub --connect tcp://kernel:5670 --server-key KEY --cert "
      "bench\n",
      0,
      "Exit codes:\n"
      "  0  done: everything sent was received\n"
      "  1  messages were not received (how many is said), the kernel\n"
      "     refused or did not answer, --timeout passed, or interrupted\n"
      "  2  usage: unknown mode or option, bad value\n" },
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
        fprintf (out, "  %-14s %s\n", s_commands[i].name,
                 s_commands[i].summary);
    cli_app_summaries (out);
    fprintf (out,
             "\n"
             "'aaax SUBCOMMAND --help' describes one, with its options "
             "and examples.\n\n%s\n%s",
             s_common_help, s_common_exits);
}

/*  True when name is the first word of two-word subcommands ("cap"). */
static bool
s_is_group (const char *name)
{
    size_t len = strlen (name);
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strncmp (s_commands[i].name, name, len) == 0
            && s_commands[i].name[len] == ' ')
            return true;
    return false;
}

/*  The usage of a group: its subcommands. */
static void
s_group_usage (FILE *out, const char *group)
{
    size_t len = strlen (group);
    fprintf (out, "usage: aaax %s SUBCOMMAND [ARGS] [options]\n\n", group);
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strncmp (s_commands[i].name, group, len) == 0
            && s_commands[i].name[len] == ' ')
            fprintf (out, "  %-14s %s\n", s_commands[i].name,
                     s_commands[i].summary);
    fprintf (out, "\n'aaax %s SUBCOMMAND --help' describes one.\n", group);
}

/*  The subcommand named by words[0] (and words[1] for a two-word one):
 *used says how many words the name took. NULL if none. */
static const s_command_t *
s_find (int nwords, char **words, int *used)
{
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strcmp (words[0], s_commands[i].name) == 0) {
            *used = 1;
            return &s_commands[i];
        }
    if (nwords < 2)
        return NULL;
    char name[64];
    int n = snprintf (name, sizeof name, "%s %s", words[0], words[1]);
    if (n < 0 || (size_t) n >= sizeof name)
        return NULL;
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strcmp (name, s_commands[i].name) == 0) {
            *used = 2;
            return &s_commands[i];
        }
    return NULL;
}

static int
s_cmd_help (const s_command_t *cmd)
{
    printf ("usage: %s\n\n%s\n%s\n%s", cmd->synopsis, cmd->help,
            cmd->flags & S_LOCAL     ? "Common options:\n"
                                       "  -h, --help     this help\n"
            : cmd->flags & S_OFFLINE ? s_offline_help
                                     : s_common_help,
            cmd->exits ? cmd->exits : s_common_exits);
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

/*  A duration: a number with a unit ms, s, m, h or d (a plain number is
    seconds), in milliseconds within [lo_ms, hi_ms]. */
static bool
s_parse_duration (const char *s, uint64_t lo_ms, uint64_t hi_ms, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = { { "ms", 1 },    { "s", 1000 },    { "", 1000 },
                  { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 } };
    if (!s || *s < '0' || *s > '9')
        return false;
    size_t digits = strspn (s, "0123456789");
    if (digits > 9)
        return false;
    char num[16];
    memcpy (num, s, digits);
    num[digits] = 0;
    uint64_t v;
    if (!s_parse_uint (num, 0, UINT64_MAX, &v))
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp (s + digits, units[i].unit) == 0) {
            uint64_t ms = v * units[i].ms;
            if (ms < lo_ms || ms > hi_ms)
                return false;
            *out = ms;
            return true;
        }
    return false;
}

static bool
s_is_tcp (const char *endpoint)
{
    return strncmp (endpoint, "tcp://", 6) == 0;
}

static bool
s_is_loopback (const char *endpoint)
{
    const char *h = endpoint + 6;
    return strncmp (h, "127.", 4) == 0 || strncmp (h, "localhost:", 10) == 0
           || strncmp (h, "[::1]:", 6) == 0;
}

/*  --server-key and --cert (or, on a tcp:// endpoint, $AAAX_SERVER_KEY
    and $AAAX_CERT): both or neither; the key must be Z85. 0 or the exit
    code. The certificate is read by s_connect. */
static int
s_curve_options (s_app_t *app)
{
    const s_command_t *cmd = app->cmd;
    bool tcp = s_is_tcp (app->endpoint);
    const char *env_key = getenv ("AAAX_SERVER_KEY");
    const char *env_cert = getenv ("AAAX_CERT");
    if (!app->server_key && tcp && env_key && *env_key)
        app->server_key = env_key;
    if (!app->cert && tcp && env_cert && *env_cert)
        app->cert = env_cert;
    if (app->server_key && !*app->server_key)
        app->server_key = NULL;
    if (app->cert && !*app->cert)
        app->cert = NULL;
    if (app->server_key && !app->cert)
        return s_usage (cmd, "--server-key needs --cert FILE too: CURVE needs "
                             "the kernel's public key (--server-key) and "
                             "this client's certificate (--cert, made by "
                             "'aaax keygen')");
    if (app->cert && !app->server_key)
        return s_usage (cmd, "--cert needs --server-key Z85 too: CURVE needs "
                             "the kernel's public key (--server-key, printed "
                             "by 'aaax kernel-key' on its host) and this "
                             "client's certificate (--cert)");
    if (app->server_key && !hal_curve_key_valid (app->server_key))
        return s_usage (cmd, "--server-key must be the kernel's public key: "
                             "40 characters of Z85, as 'aaax kernel-key' "
                             "prints it");
    return 0;
}

static int
s_parse (s_app_t *app, int argc, char **argv)
{
    const s_command_t *cmd = app->cmd;
    uint64_t allowed =
        (cmd->flags & S_LOCAL     ? BIT (OPT_HELP)
         : cmd->flags & S_OFFLINE ? BIT (OPT_DATA) | BIT (OPT_HELP)
                                  : COMMON_OPTS)
        | cmd->opts;
    /*  write and send: --key is the idempotency key. */
    bool key_is_idem = cmd->run == s_cmd_write || cmd->run == s_cmd_send;
    app->timeout_ms = S_DEFAULT_TIMEOUT;
    app->max = 1;
    app->lines = 10;
    /*  authorize KEY: a Z85 key may start with '-', which getopt would
        take for options. Such a word (not the value of an option before
        it, not after "--") is the KEY. */
    char *dash_key = NULL;
    for (int i = 1; cmd->run == s_cmd_authorize && i < argc; i++) {
        if (strcmp (argv[i], "--") == 0)
            break;
        const char *prev = argv[i - 1];
        bool is_value =
            i > 1
            && (strcmp (prev, "--system") == 0 || strcmp (prev, "--revoke") == 0
                || strcmp (prev, "--data") == 0);
        if (argv[i][0] == '-' && !is_value && hal_curve_key_valid (argv[i])) {
            dash_key = argv[i];
            memmove (argv + i, argv + i + 1,
                     (size_t) (argc - i - 1) * sizeof *argv);
            argc--;
            break;
        }
    }
    opterr = 0;
    optind = 1;
    for (;;) {
        int idx = -1;
        int c = getopt_long (argc, argv, ":hfn:", s_longopts, &idx);
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
        int opt = c == 'h'   ? OPT_HELP
                  : c == 'f' ? OPT_FOLLOW
                  : c == 'n' ? OPT_LINES
                             : c - 256;
        if (opt < 0 || opt > OPT_LAST)
            return s_usage (cmd, "unknown option '%s'", bad);
        if (!(allowed & BIT (opt)))
            return s_usage (cmd, "option '--%s' does not apply to %s",
                            s_longopts[opt].name, cmd->name);
        app->given |= BIT (opt);
        uint64_t v = 0;
        switch (opt) {
        case OPT_CONNECT: app->connect = optarg; break;
        case OPT_SYSTEM:
            if (cmd->run != s_cmd_authorize) {
                app->system = optarg;
                break;
            }
            /*  authorize: every --system counts. */
            if (!hal_curve_id_valid (optarg))
                return s_usage (cmd,
                                "'%s' is not a system id (1-%d characters of "
                                "A-Z a-z 0-9 . _ - :, not starting with '.')",
                                optarg, HAL_CURVE_ID_MAX);
            if (app->nsystems == HAL_CURVE_IDS_MAX)
                return s_usage (cmd, "at most %d --system per key",
                                HAL_CURVE_IDS_MAX);
            app->systems[app->nsystems++] = optarg;
            break;
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
        case OPT_KEY:
            if (key_is_idem)
                app->key = optarg;
            else
                app->cert = optarg;
            break;
        case OPT_CERT: app->cert = optarg; break;
        case OPT_SERVER_KEY: app->server_key = optarg; break;
        case OPT_LIST: app->list = true; break;
        case OPT_TOKEN: app->enroll_token = optarg; break;
        case OPT_SIZE:
            if (!s_parse_uint (optarg, CLI_BENCH_MIN_SIZE, CLI_BENCH_MAX_SIZE,
                               &app->size))
                return s_usage (cmd, "--size needs bytes, %d to %d",
                                CLI_BENCH_MIN_SIZE, CLI_BENCH_MAX_SIZE);
            break;
        case OPT_PUBLISHERS:
            if (!s_parse_uint (optarg, 1, CLI_BENCH_MAX_CLIENTS,
                               &app->publishers))
                return s_usage (cmd, "--publishers needs a number, 1 to %d",
                                CLI_BENCH_MAX_CLIENTS);
            break;
        case OPT_SUBSCRIBERS:
            if (!s_parse_uint (optarg, 0, CLI_BENCH_MAX_CLIENTS,
                               &app->subscribers))
                return s_usage (cmd, "--subscribers needs a number, 0 to %d",
                                CLI_BENCH_MAX_CLIENTS);
            break;
        case OPT_CHANNEL: app->channel = optarg; break;
        case OPT_BATCH:
            if (!s_parse_uint (optarg, 1, AAAX_MAX_BATCH, &app->wbatch))
                return s_usage (cmd, "--batch needs a number, 1 to %d",
                                AAAX_MAX_BATCH);
            break;
        case OPT_TRANSIENT: app->transient = true; break;
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
        case OPT_JSON: app->json = true; break;
        case OPT_REASON: app->reason = optarg; break;
        case OPT_GRACE:
            if (!s_parse_uint (optarg, 0, S_MAX_GRACE, &app->grace_ms))
                return s_usage (cmd, "--grace needs milliseconds, 0 to %u",
                                S_MAX_GRACE);
            break;
        case OPT_SCOPE:
            if (strcmp (optarg, "once") != 0 && strcmp (optarg, "session") != 0
                && strcmp (optarg, "always") != 0)
                return s_usage (cmd, "--scope must be once, session or "
                                     "always");
            app->scope = optarg;
            break;
        case OPT_REVOKE: app->revoke = optarg; break;
        case OPT_ARGS: app->args_json = optarg; break;
        case OPT_WAIT_APPROVAL: app->wait_approval = true; break;
        case OPT_RIGHTS: app->rights = optarg; break;
        case OPT_TTL:
            if (cmd->run == s_cmd_enroll) {
                if (!s_parse_duration (optarg, 1000, S_MAX_ENROLL_TTL_MS,
                                       &app->ttl_ms))
                    return s_usage (cmd,
                                    "--ttl needs a duration from 1s to 30d, "
                                    "such as 90s, 10m, 2h or 1d (a plain "
                                    "number is seconds)");
                break;
            }
            if (!s_parse_uint (optarg, 1, UINT32_MAX, &app->ttl_s))
                return s_usage (cmd, "--ttl needs seconds, 1 to %u",
                                UINT32_MAX);
            break;
        case OPT_PUB: app->pub = optarg; break;
        case OPT_FOLLOW: app->follow = true; break;
        case OPT_LINES:
            if (!s_parse_uint (optarg, 0, UINT32_MAX, &app->lines))
                return s_usage (cmd, "-n needs a number of records");
            break;
        default: return s_usage (cmd, "unknown option '%s'", bad);
        }
    }
    if (app->given & BIT (OPT_HELP))
        return -1; /* the caller prints the help */
    app->args = argv + optind;
    app->nargs = argc - optind;
    if (dash_key) {
        if (app->nargs > 0)
            return s_usage (cmd, "unexpected argument '%s'", app->args[0]);
        app->dash_key[0] = dash_key;
        app->args = app->dash_key;
        app->nargs = 1;
    }
    if (app->nargs < cmd->min_args)
        return s_usage (cmd, "missing argument");
    if (cmd->max_args >= 0 && app->nargs > cmd->max_args)
        return s_usage (cmd, "unexpected argument '%s'",
                        app->args[cmd->max_args]);
    if (cmd->run == s_cmd_cap_verify) {
        if (!app->pub == !app->data)
            return s_usage (cmd, "give either --pub FILE or --data DIR");
    } else if (cmd->flags & S_DEFDATA) {
        if (!app->data)
            app->data = S_DEFAULT_DATA;
    } else if ((cmd->flags & S_OFFLINE) && !(cmd->flags & S_LOCAL)
               && !app->data)
        return s_usage (cmd, "needs --data DIR (the kernel's data "
                             "directory)");
    if (cmd->flags & (S_OFFLINE | S_LOCAL))
        return 0;
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
    return s_curve_options (app);
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
    else if (rc == AAAX_ETIMEDOUT && app->server_key)
        fprintf (stderr,
                 "aaax: no answer from %s within %d ms \xe2\x80\x94 "
                 "is aaaxd running, does it use CURVE there, and is "
                 "--server-key its key ('aaax kernel-key')?\n",
                 app->endpoint, app->timeout_ms);
    else if (rc == AAAX_ETIMEDOUT)
        fprintf (stderr,
                 "aaax: no answer from %s within %d ms \xe2\x80\x94 "
                 "is aaaxd running?%s\n",
                 app->endpoint, app->timeout_ms,
                 s_is_tcp (app->endpoint) && !s_is_loopback (app->endpoint)
                     ? " (a kernel on another host speaks CURVE: give "
                       "--server-key and --cert)"
                     : "");
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

/*  Reads the session token (--data) and the CURVE certificate (--cert)
    into app. Exit code. */
static int
s_credentials (s_app_t *app)
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
    if (app->server_key) {
        char err[300] = "";
        int rc = hal_curve_load_cert (app->cert, true, app->curve_public,
                                      app->curve_secret, err, sizeof err);
        if (rc) {
            fprintf (stderr, "aaax: cannot use the certificate %s: %s\n",
                     app->cert, err[0] ? err : aaax_strerror (rc));
            return EXIT_ERROR;
        }
    }
    return 0;
}

/*  Connects, reading the token first when --data was given. Exit code. */
static int
s_connect (s_app_t *app)
{
    int ret = s_credentials (app);
    if (ret)
        return ret;
    app->client =
        chan_client_new_curve (app->endpoint, app->timeout_ms, app->server_key,
                               app->server_key ? app->curve_public : NULL,
                               app->server_key ? app->curve_secret : NULL);
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

/*  ---- reconnecting (tail, claim --wait, send --wait, gate
    --wait-approval) ------------------------------------------------------ */

/*  How long a docked client that PINGs every heartbeat_ms / 2 may hear
    nothing before it counts the kernel as lost: 3 heartbeat periods. */
static int64_t
s_dead_after (s_app_t *app)
{
    uint32_t hb = chan_client_heartbeat_ms (app->client);
    int64_t dead = 3 * (int64_t) (hb ? hb : 1000);
    return dead < 300 ? 300 : dead;
}

/*  The PING period of a waiting client. */
static int64_t
s_tick (s_app_t *app)
{
    uint32_t hb = chan_client_heartbeat_ms (app->client);
    int64_t tick = (hb ? hb : 1000) / 2;
    return tick < 10 ? 10 : tick;
}

static void
s_on_retry (void *arg, int attempt, int rc, const chan_reply_t *reply,
            int64_t wait_ms)
{
    s_app_t *app = (s_app_t *) arg;
    char why[320], reason[256];
    if (reply)
        snprintf (why, sizeof why, "ERROR %d: %s", chan_reply_code (reply),
                  chan_reply_reason (reply, reason, sizeof reason));
    else if (rc == AAAX_ETIMEDOUT)
        snprintf (why, sizeof why, "no answer within %d ms", app->timeout_ms);
    else
        snprintf (why, sizeof why, "%s", aaax_strerror (rc));
    if (s_interrupted)
        return;
    fprintf (stderr,
             "aaax: reconnect %d to %s failed (%s); next try in %.1f s\n",
             attempt, app->endpoint, why, (double) wait_ms / 1000.0);
}

/*  After the connection or the session was lost (why says how): a new
    connection and HELLO {resume}, retried with back-off until it works or
    SIGINT / SIGTERM. 0 when docked again (*resumed: the old session was
    taken over, its subscriptions kept); S_REDOCK_STOPPED when interrupted;
    else the exit code after saying why (the kernel refused the key, ...). */
enum { S_REDOCK_STOPPED = 100 }; /* not an exit code */

static int
s_redock (s_app_t *app, const char *why, bool *resumed)
{
    *resumed = false;
    if (s_interrupted)
        return S_REDOCK_STOPPED;
    fprintf (stderr, "aaax: lost the kernel at %s (%s); reconnecting\n",
             app->endpoint, why);
    chan_redock_t opt;
    memset (&opt, 0, sizeof opt);
    opt.stop = &s_interrupted;
    opt.token_dir = app->privileged ? app->data : NULL;
    opt.on_retry = s_on_retry;
    opt.arg = app;
    chan_reply_t reply;
    int rc = chan_client_redock (app->client, &opt, &reply);
    if (rc == 0) {
        const msgpack_object *r = chan_obj_get (&reply.body, "resumed");
        *resumed = r && r->type == MSGPACK_OBJECT_BOOLEAN && r->via.boolean;
        fprintf (stderr, "aaax: reconnected to %s (%s)\n", app->endpoint,
                 *resumed ? "session resumed" : "new session");
        chan_reply_fini (&reply);
        return 0;
    }
    if (s_interrupted) {
        chan_reply_fini (&reply);
        return S_REDOCK_STOPPED;
    }
    int ret =
        s_report (app, rc, strcmp (reply.cmd, "ERROR") == 0 ? &reply : NULL);
    chan_reply_fini (&reply);
    return ret;
}

/*  Whether the kernel still knows this connection as docked: UNSUB of our
    own mailbox is answered OK when docked, 401 when not. 0 docked,
    AAAX_EAUTH not docked, else the call's error (no answer...). Pushes
    that arrive meanwhile are kept. */
static int
s_probe (s_app_t *app)
{
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", app->mailbox);
    chan_reply_t r;
    memset (&r, 0, sizeof r);
    int rc = chan_client_call (app->client, "UNSUB", &b, &r);
    chan_body_fini (&b);
    if (rc == 0 && chan_reply_code (&r) == 401)
        rc = AAAX_EAUTH;
    else if (rc == 0 && chan_reply_code (&r) == 503)
        rc = AAAX_ESHUTDOWN;
    chan_reply_fini (&r);
    return rc;
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
    char last_id[64]; /* the newest id printed (broadcast, and mailbox) */
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
    if (id && lp->have_last
        && s_id_cmp (id, idlen, lp->last_id, strlen (lp->last_id)) <= 0) {
        /*  Replayed again after a re-SUB, or a mailbox message printed
            before a reconnect whose ACK was lost: acknowledge it again,
            print it once. */
        if (lp->mailbox) {
            if (s_ack_async (app, id, idlen) != 0) {
                lp->done = true;
                return s_report (app, AAAX_EIO, NULL);
            }
            lp->acks_out++;
        }
        return 0;
    }
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
    if (id && idlen < sizeof lp->last_id) {
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

/*  Docks again after the connection or the session was lost, and makes
    what lp needs again: the subscription (SUB since the last id printed,
    which also fills the gap), the count of ACKs in flight. 0 to go on,
    S_REDOCK_STOPPED, or the exit code. */
static int
s_loop_redock (s_app_t *app, s_loop_t *lp, const char *why)
{
    bool resumed;
    int ret = s_redock (app, why, &resumed);
    if (ret)
        return ret;
    lp->acks_out = 0; /* their answers went with the old connection */
    lp->resub_req = 0;
    if (lp->chan && !lp->mailbox && s_resub (app, lp) != 0)
        return s_report (app, AAAX_EIO, NULL);
    return 0;
}

/*  Receives until lp says done, keeping the session alive (PING every
    heartbeat_ms / 2) and checking now and then that it is still docked
    (UNSUB of our own mailbox: answered when docked, 401 when not). When
    the kernel is lost (silent for 3 heartbeat periods, 401, 503) it
    reconnects and docks again (s_loop_redock). Returns the exit code. */

/*  One keepalive tick of a long wait: PING, and every other tick UNSUB of
    our own mailbox, which does nothing but gets 401 when the kernel ended
    the session (a PING is answered docked or not). */
static int
s_keepalive (s_app_t *app, uint64_t *ticks)
{
    int rc = chan_client_send (app->client, "PING", NULL, NULL);
    if (rc == 0 && (*ticks)++ % 2 == 1) {
        chan_body_t b;
        chan_body_init (&b);
        chan_body_str (&b, "chan", app->mailbox);
        rc = chan_client_send (app->client, "UNSUB", &b, NULL);
        chan_body_fini (&b);
    }
    return rc;
}

static int
s_loop (s_app_t *app, s_loop_t *lp)
{
    int64_t tick = s_tick (app);
    int64_t now = hal_clock_mono_ms ();
    int64_t next_tick = now + tick;
    uint64_t ticks = 0;
    int ret = EXIT_OK;
    bool draining = false; /* done; waiting for the mailbox ACKs' answers */
    int64_t drain_until = 0;
    const char *lost = NULL; /* set: reconnect, for this reason */
    char lost_buf[300];
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
        int64_t dead_after = s_dead_after (app);
        if (!lost && chan_client_idle_ms (app->client) >= dead_after) {
            snprintf (lost_buf, sizeof lost_buf,
                      "no answer within %" PRId64 " ms", dead_after);
            lost = lost_buf;
        }
        if (lost) {
            if (draining)
                break; /* the ACKs' answers are lost with it */
            int x = s_loop_redock (app, lp, lost);
            if (x == S_REDOCK_STOPPED)
                return lp->corr ? EXIT_ERROR : EXIT_OK;
            if (x)
                return x;
            lost = NULL;
            tick = s_tick (app);
            next_tick = hal_clock_mono_ms () + tick;
            continue;
        }
        if (now >= next_tick) {
            int rc = s_keepalive (app, &ticks);
            if (rc) {
                lost = "cannot send";
                continue;
            }
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
        if (rc) {
            lost = "cannot receive";
            continue;
        }
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
                if (s_resub (app, lp) != 0)
                    lost = "cannot send";
            }
        } else if (s_is (&r, "ERROR")) {
            int code = chan_reply_code (&r);
            if (code == 401 || code == 503) {
                char reason[256];
                snprintf (lost_buf, sizeof lost_buf,
                          code == 401 ? "the kernel undocked this session: "
                                        "ERROR 401: %s"
                                      : "ERROR 503: %s",
                          chan_reply_reason (&r, reason, sizeof reason));
                lost = lost_buf;
            } else if (has_req && req == lp->resub_req) {
                ret = s_report (app, 0, &r);
                chan_reply_fini (&r);
                return ret;
            } else {
                s_report (app, 0, &r); /* e.g. 423 while paused: go on */
                if (lp->acks_out)
                    lp->acks_out--;
            }
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
    if (app->transient)
        chan_body_bool (&b, "transient", true);
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

/*  The CLAIM of 'claim', which may wait longer than --timeout (a long
    poll, --wait): pushes that arrive meanwhile are dropped (mailbox
    messages come again at the next dock). While it waits it PINGs, and
    checks now and then that it is still docked; when the kernel is lost
    it docks again and sends the CLAIM again for the time left. 0 (reply
    holds the OK) or the exit code. */
static int
s_claim_call (s_app_t *app, const char *chan, chan_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    bool wait = app->given & BIT (OPT_WAIT);
    int64_t wait_until = hal_clock_mono_ms () + (int64_t) app->wait_ms;
    for (;;) {
        int64_t left_wait = wait ? wait_until - hal_clock_mono_ms () : 0;
        if (left_wait < 0)
            left_wait = 0;
        chan_body_t b;
        chan_body_init (&b);
        chan_body_str (&b, "chan", chan);
        chan_body_uint (&b, "max", app->max);
        if (wait)
            chan_body_uint (&b, "wait_ms", (uint64_t) left_wait);
        if (app->given & BIT (OPT_LEASE))
            chan_body_uint (&b, "lease_ms", app->lease_ms);
        uint64_t req;
        int rc = chan_client_send (app->client, "CLAIM", &b, &req);
        chan_body_fini (&b);
        if (rc)
            return s_report (app, rc, NULL);
        int64_t deadline = hal_clock_mono_ms () + left_wait + app->timeout_ms;
        int64_t tick = s_tick (app);
        int64_t next_tick = hal_clock_mono_ms () + tick;
        uint64_t ticks = 0;
        const char *lost = NULL;
        char lost_buf[300];
        while (!lost) {
            int64_t now = hal_clock_mono_ms ();
            if (s_interrupted)
                return s_report (app, AAAX_ETIMEDOUT, NULL);
            if (now >= deadline) {
                fprintf (stderr,
                         "aaax: no answer from %s within %" PRId64
                         " ms \xe2\x80\x94 is aaaxd running?\n",
                         app->endpoint, left_wait + app->timeout_ms);
                return EXIT_ERROR;
            }
            if (wait
                && chan_client_idle_ms (app->client) >= s_dead_after (app)) {
                snprintf (lost_buf, sizeof lost_buf,
                          "no answer within %" PRId64 " ms",
                          s_dead_after (app));
                lost = lost_buf;
                break;
            }
            if (wait && now >= next_tick) {
                /*  PING, and every other time UNSUB @ME: 401 when the
                    session is gone. */
                rc = s_keepalive (app, &ticks);
                if (rc) {
                    lost = "cannot send";
                    break;
                }
                next_tick = now + tick;
            }
            int64_t slice = deadline - now;
            if (wait && next_tick - now < slice)
                slice = next_tick - now;
            if (slice > 200)
                slice = 200; /* a signal is seen soon */
            if (slice < 0)
                slice = 0;
            chan_reply_t r;
            memset (&r, 0, sizeof r);
            rc = chan_client_recv (app->client, &r, (int) slice);
            if (rc == AAAX_ETIMEDOUT)
                continue;
            if (rc) {
                if (!wait)
                    return s_report (app, rc, NULL);
                lost = "cannot receive";
                break;
            }
            uint64_t got = 0;
            bool push = s_is (&r, "MSG") || s_is (&r, "DROPPED");
            bool ours =
                !push && chan_obj_get_uint (&r.body, "req", &got) && got == req;
            int code = chan_reply_code (&r);
            if (ours && s_is (&r, "OK")) {
                *reply = r;
                return 0;
            }
            if (wait && (code == 401 || code == 503)) {
                char reason[256];
                snprintf (lost_buf, sizeof lost_buf, "ERROR %d: %s", code,
                          chan_reply_reason (&r, reason, sizeof reason));
                lost = lost_buf;
                chan_reply_fini (&r);
                break;
            }
            if (ours) {
                *reply = r;
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
        bool resumed;
        int x = s_redock (app, lost, &resumed);
        if (x == S_REDOCK_STOPPED)
            return s_report (app, AAAX_ETIMEDOUT, NULL);
        if (x)
            return x;
    }
}

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
    chan_reply_t reply;
    ret = s_claim_call (app, chan, &reply);
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

/*  Prints an OK's body without its req. Exit code. */
static int
s_print_body (const chan_reply_t *reply, int flags)
{
    if (reply->body.type != MSGPACK_OBJECT_MAP)
        return EXIT_OK;
    const msgpack_object_map *m = &reply->body.via.map;
    msgpack_object_kv *kv =
        (msgpack_object_kv *) calloc (m->size ? m->size : 1, sizeof *kv);
    if (!kv) {
        fprintf (stderr, "aaax: out of memory\n");
        return EXIT_ERROR;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->size; i++)
        if (!s_str_eq (&m->ptr[i].key, "req"))
            kv[n++] = m->ptr[i];
    msgpack_object o;
    o.type = MSGPACK_OBJECT_MAP;
    o.via.map.size = n;
    o.via.map.ptr = kv;
    int ret = EXIT_OK;
    int out = s_print_json (&o, flags);
    if (out == S_OUT_FAILED)
        ret = s_output_failed ();
    else if (out == S_OUT_SKIPPED)
        ret = EXIT_ERROR;
    free (kv);
    return ret;
}

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
    if (ret == 0)
        ret = s_print_body (&reply, CLI_JSON_PRETTY);
    chan_reply_fini (&reply);
    s_bye (app, false);
    return ret;
}

/*  ---- asking the kernel's actors ------------------------------------- */

/*  Says why a kernel request failed; exit code. */
static int
s_kernel_failed (s_app_t *app, const cli_kernel_t *k)
{
    if (k->stopped)
        fprintf (stderr, "aaax: interrupted\n");
    else
        fprintf (stderr, "aaax: %s\n", k->err);
    if (k->code == 403 && (app->cmd->flags & S_PRIV) && !app->privileged)
        fprintf (stderr,
                 "aaax: ('%s' is privileged: give --data DIR, the "
                 "kernel's data directory)\n",
                 app->cmd->name);
    return EXIT_ERROR;
}

/*  Connects and docks, writes the packed request req to the work-queue
    chan and waits up to --timeout for the answer (a map). HELLO lists no
    channel: the kernel's common grants give every system write on
    kernel.gate and kernel.capability_requests, and privileged ones on
    kernel.lifecycle and kernel.approvals; listing a queue could only add
    rights not needed (claim). Exit code; on 0 reply holds the answer (fini
    it either way). */
static int
s_kernel_ask (s_app_t *app, const char *chan, const chan_buf_t *req,
              cli_kernel_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    int ret = s_connect (app);
    if (ret == 0)
        ret = s_dock (app, NULL);
    if (ret)
        return ret;
    cli_kernel_t k;
    cli_kernel_init (&k, app->client, app->system);
    k.stop = &s_interrupted;
    if (req->oom) {
        fprintf (stderr, "aaax: out of memory\n");
        return EXIT_ERROR;
    }
    int rc = cli_kernel_request (&k, chan, req->data, req->len, app->timeout_ms,
                                 reply);
    if (rc)
        return s_kernel_failed (app, &k);
    if (!reply->data || reply->data->type != MSGPACK_OBJECT_MAP) {
        fprintf (stderr, "aaax: the answer from %s is not a map\n", chan);
        cli_kernel_reply_fini (reply);
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

/*  Checks an answer: ok must not be false and, when key is not NULL, key
    must be true. Says why not on stderr; exit code. */
static int
s_answer_check (const msgpack_object *data, const char *key)
{
    const msgpack_object *ok = chan_obj_get (data, "ok");
    const msgpack_object *v = key ? chan_obj_get (data, key) : NULL;
    bool refused = ok && ok->type == MSGPACK_OBJECT_BOOLEAN && !ok->via.boolean;
    bool unmet =
        key && !(v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean);
    if (!refused && !unmet)
        return EXIT_OK;
    const char *reason = "no reason given";
    size_t len = strlen (reason);
    chan_obj_get_str (data, "reason", &reason, &len);
    if (refused)
        fprintf (stderr, "aaax: refused: %.*s\n", (int) len, reason);
    else
        fprintf (stderr, "aaax: not %s: %.*s\n", key, (int) len, reason);
    return EXIT_ERROR;
}

/*  Prints the answer as one JSON line, then checks it. Exit code. */
static int
s_answer_print (const msgpack_object *data, const char *key)
{
    int out = s_print_json (data, CLI_JSON_COMPACT);
    if (out == S_OUT_FAILED)
        return s_output_failed ();
    if (out == S_OUT_SKIPPED)
        return EXIT_ERROR;
    return s_answer_check (data, key);
}

/*  The whole round trip of the subcommands that print one answer: dock,
    ask chan with req, print, check key, BYE. Exit code. */
static int
s_kernel_simple (s_app_t *app, const char *chan, chan_buf_t *req,
                 const char *key)
{
    cli_kernel_reply_t reply;
    int ret = s_kernel_ask (app, chan, req, &reply);
    if (ret == 0)
        ret = s_answer_print (reply.data, key);
    cli_kernel_reply_fini (&reply);
    if (app->client)
        s_bye (app, false);
    return ret;
}

/*  Starts a request map of n pairs in buf (pk is its packer). */
static void
s_req_begin (chan_buf_t *buf, msgpack_packer *pk, uint32_t n)
{
    chan_buf_init (buf);
    chan_buf_packer (buf, pk);
    msgpack_pack_map (pk, n);
}

static void
s_req_str (msgpack_packer *pk, const char *key, const char *value)
{
    chan_pack_cstr (pk, key);
    chan_pack_cstr (pk, value);
}

/*  Asks chan for {op: "list"} and checks the answer. Exit code; reply as
    s_kernel_ask. */
static int
s_kernel_list (s_app_t *app, const char *chan, cli_kernel_reply_t *reply)
{
    chan_buf_t req;
    msgpack_packer pk;
    s_req_begin (&req, &pk, 1);
    s_req_str (&pk, "op", "list");
    int ret = s_kernel_ask (app, chan, &req, reply);
    chan_buf_fini (&req);
    if (ret == 0)
        ret = s_answer_check (reply->data, NULL);
    return ret;
}

/*  Prints every element of the array data[key] as one JSON line, each map
    with type (when not NULL) as its first pair. Exit code. */
static int
s_print_items (const msgpack_object *data, const char *key, const char *type)
{
    const msgpack_object *a = chan_obj_get (data, key);
    if (!a)
        return EXIT_OK;
    if (a->type != MSGPACK_OBJECT_ARRAY) {
        fprintf (stderr, "aaax: the answer's %s is not an array\n", key);
        return EXIT_ERROR;
    }
    int ret = EXIT_OK;
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *item = &a->via.array.ptr[i];
        msgpack_object tagged = *item;
        msgpack_object_kv *kv = NULL;
        if (type && item->type == MSGPACK_OBJECT_MAP) {
            uint32_t n = item->via.map.size;
            kv = (msgpack_object_kv *) calloc ((size_t) n + 1, sizeof *kv);
            if (!kv) {
                fprintf (stderr, "aaax: out of memory\n");
                return EXIT_ERROR;
            }
            kv[0].key.type = MSGPACK_OBJECT_STR;
            kv[0].key.via.str.ptr = "type";
            kv[0].key.via.str.size = 4;
            kv[0].val.type = MSGPACK_OBJECT_STR;
            kv[0].val.via.str.ptr = type;
            kv[0].val.via.str.size = (uint32_t) strlen (type);
            if (n)
                memcpy (kv + 1, item->via.map.ptr, n * sizeof *kv);
            tagged.via.map.size = n + 1;
            tagged.via.map.ptr = kv;
        }
        int out = s_print_json (&tagged, CLI_JSON_COMPACT);
        free (kv);
        if (out == S_OUT_FAILED)
            return errno == EPIPE ? EXIT_OK : s_output_failed ();
        if (out == S_OUT_SKIPPED)
            ret = EXIT_ERROR;
    }
    return ret;
}

/*  ---- ps, pause, resume, stop, kill ----------------------------------- */

static const char *
s_field (const msgpack_object *map, const char *key, char *buf, size_t size)
{
    const msgpack_object *v = chan_obj_get (map, key);
    if (!v)
        return "-";
    switch (v->type) {
    case MSGPACK_OBJECT_STR:
        snprintf (buf, size, "%.*s", (int) v->via.str.size, v->via.str.ptr);
        /*  Nothing that moves the cursor or rings a bell. */
        for (char *p = buf; *p; p++)
            if ((unsigned char) *p < 0x20 || *p == 0x7f)
                *p = '?';
        return buf;
    case MSGPACK_OBJECT_BOOLEAN: return v->via.boolean ? "yes" : "no";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf (buf, size, "%" PRIu64, v->via.u64);
        return buf;
    default: return "?";
    }
}

enum { S_PS_COLS = 8 };

typedef char s_ps_row_t[S_PS_COLS][AAAX_MAX_NAME + 1];

/*  Rows by system id. */
static int
s_ps_cmp (const void *a, const void *b)
{
    return strcmp ((*(const s_ps_row_t *) a)[0], (*(const s_ps_row_t *) b)[0]);
}

static int
s_ps_table (const msgpack_object *systems)
{
    static const char *heads[S_PS_COLS] = {
        "SYSTEM", "KIND", "STATE", "PRIV", "UP", "IN", "OUT", "LEASES"
    };
    static const char *keys[S_PS_COLS] = { "id",         "kind",  "state",
                                           "privileged", NULL,    "msgs_in",
                                           "msgs_out",   "leases" };
    uint32_t n = systems->via.array.size;
    s_ps_row_t *cells = (s_ps_row_t *) calloc (n ? n : 1, sizeof *cells);
    if (!cells) {
        fprintf (stderr, "aaax: out of memory\n");
        return EXIT_ERROR;
    }
    size_t width[S_PS_COLS];
    for (int c = 0; c < S_PS_COLS; c++)
        width[c] = strlen (heads[c]);
    double now = hal_clock_wall_s ();
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *sys = &systems->via.array.ptr[i];
        for (int c = 0; c < S_PS_COLS; c++) {
            char *cell = cells[i][c];
            if (keys[c] && strcmp (keys[c], "kind") == 0) {
                /*  A remote session with how it is authenticated:
                    remote/plain, remote/curve:KEYPREFIX (local means ipc,
                    kernel inproc or hosted). */
                char kind[AAAX_MAX_NAME + 1], auth[AAAX_MAX_NAME + 1],
                    key[AAAX_MAX_NAME + 1];
                const char *kd = s_field (sys, "kind", kind, sizeof kind);
                const char *a = s_field (sys, "auth", auth, sizeof auth);
                const char *k = s_field (sys, "key", key, sizeof key);
                if (strcmp (kd, "remote") != 0 || !chan_obj_get (sys, "auth"))
                    snprintf (cell, AAAX_MAX_NAME + 1, "%s", kd);
                else if (strcmp (a, "curve") == 0 && strcmp (k, "-") != 0)
                    snprintf (cell, AAAX_MAX_NAME + 1, "remote/curve:%.8s", k);
                else
                    snprintf (cell, AAAX_MAX_NAME + 1, "remote/%.16s", a);
            } else if (keys[c]) {
                char buf[AAAX_MAX_NAME + 1];
                const char *v = s_field (sys, keys[c], buf, sizeof buf);
                snprintf (cell, AAAX_MAX_NAME + 1, "%s", v);
            } else {
                const msgpack_object *since = chan_obj_get (sys, "since");
                double t = -1;
                if (since
                    && (since->type == MSGPACK_OBJECT_FLOAT64
                        || since->type == MSGPACK_OBJECT_FLOAT32))
                    t = since->via.f64;
                else if (since
                         && since->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                    t = (double) since->via.u64;
                cli_kernel_age (t >= 0 ? now - t : -1, cell, AAAX_MAX_NAME);
            }
            size_t len = strlen (cell);
            if (len > width[c])
                width[c] = len;
        }
    }
    if (n)
        qsort (cells, n, sizeof *cells, s_ps_cmp);
    for (int c = 0; c < S_PS_COLS; c++)
        printf ("%-*s%s", c + 1 < S_PS_COLS ? (int) width[c] : 0, heads[c],
                c + 1 < S_PS_COLS ? "  " : "\n");
    for (uint32_t i = 0; i < n; i++)
        for (int c = 0; c < S_PS_COLS; c++)
            printf ("%-*s%s", c + 1 < S_PS_COLS ? (int) width[c] : 0,
                    cells[i][c], c + 1 < S_PS_COLS ? "  " : "\n");
    free (cells);
    return fflush (stdout) == 0 ? EXIT_OK : s_output_failed ();
}

/*  Whether the kernel serves plain TCP on a non-loopback endpoint
    (--insecure), as the lifecycle list answer says. */
static bool
s_insecure (const msgpack_object *answer)
{
    const msgpack_object *v = chan_obj_get (answer, "insecure");
    return v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
}

static int
s_cmd_ps (s_app_t *app)
{
    const char *chan = "kernel.lifecycle";
    cli_kernel_reply_t reply;
    int ret = s_kernel_list (app, chan, &reply);
    if (ret == 0 && s_insecure (reply.data))
        fprintf (stderr,
                 "WARNING: the kernel serves plain TCP on a non-loopback "
                 "address (started with --insecure): anyone on that network "
                 "can read its traffic and dock as any system id\n");
    if (ret == 0) {
        const msgpack_object *systems = chan_obj_get (reply.data, "systems");
        if (!systems || systems->type != MSGPACK_OBJECT_ARRAY) {
            fprintf (stderr, "aaax: the answer carries no systems\n");
            ret = EXIT_ERROR;
        } else if (app->json)
            ret = s_print_items (reply.data, "systems", NULL);
        else
            ret = s_ps_table (systems);
    }
    cli_kernel_reply_fini (&reply);
    if (app->client)
        s_bye (app, false);
    return ret;
}

/*  pause, resume, stop, kill: the op is the subcommand's name. */
static int
s_cmd_lifecycle (s_app_t *app)
{
    chan_buf_t req;
    msgpack_packer pk;
    uint32_t n =
        2 + (app->reason ? 1 : 0) + (app->given & BIT (OPT_GRACE) ? 1 : 0);
    s_req_begin (&req, &pk, n);
    s_req_str (&pk, "op", app->cmd->name);
    s_req_str (&pk, "target", app->args[0]);
    if (app->reason)
        s_req_str (&pk, "reason", app->reason);
    if (app->given & BIT (OPT_GRACE)) {
        chan_pack_cstr (&pk, "grace_ms");
        msgpack_pack_uint64 (&pk, app->grace_ms);
    }
    int ret = s_kernel_simple (app, "kernel.lifecycle", &req, NULL);
    chan_buf_fini (&req);
    return ret;
}

/*  ---- gate ------------------------------------------------------------ */

/*  The exit code of a gate answer's decision. */
static int
s_decision_exit (const msgpack_object *data)
{
    if (s_str_eq (chan_obj_get (data, "decision"), "allow"))
        return EXIT_OK;
    if (s_str_eq (chan_obj_get (data, "decision"), "deny"))
        return EXIT_DENY;
    if (s_str_eq (chan_obj_get (data, "decision"), "ask"))
        return EXIT_ASK;
    fprintf (stderr, "aaax: the gate's answer carries no decision\n");
    return EXIT_ERROR;
}

/*  Waits up to wait_ms for the outcome of a gate request that was answered
    ask (a second answer with corr), as cli_kernel_await, in slices: after
    each it checks that the kernel is still there and this session docked,
    and if not docks again (the answer, if it came meanwhile, is delivered
    again from the mailbox). Returns what cli_kernel_await returns (k says
    why), or S_REDOCK_STOPPED, or an exit code (> 0) when it could not
    dock again. */
static int
s_gate_await (s_app_t *app, cli_kernel_t *k, const char *corr, int64_t wait_ms,
              cli_kernel_reply_t *reply)
{
    int64_t deadline = hal_clock_mono_ms () + wait_ms;
    for (;;) {
        cli_kernel_init (k, app->client, app->system);
        k->stop = &s_interrupted;
        int64_t left = deadline - hal_clock_mono_ms ();
        int64_t slice = 2 * s_dead_after (app);
        if (left < slice)
            slice = left;
        if (slice < 0)
            slice = 0;
        int rc = cli_kernel_await (k, corr, slice, reply);
        if (rc == 0 || k->stopped)
            return rc;
        char why[600];
        if (rc == AAAX_ETIMEDOUT) {
            if (hal_clock_mono_ms () >= deadline) {
                snprintf (k->err, sizeof k->err,
                          "no answer to %s within %" PRId64 " ms", corr,
                          wait_ms);
                return rc;
            }
            int64_t idle = chan_client_idle_ms (app->client);
            if (idle < s_dead_after (app)) {
                int p = s_probe (app);
                if (p == 0)
                    continue;
                snprintf (why, sizeof why, "%s",
                          p == AAAX_EAUTH ? "the kernel undocked this session"
                                          : aaax_strerror (p));
            } else
                snprintf (why, sizeof why, "no answer within %" PRId64 " ms",
                          s_dead_after (app));
        } else if (rc == AAAX_EAUTH || rc == AAAX_EIO)
            snprintf (why, sizeof why, "%s", k->err);
        else
            return rc;
        bool resumed;
        int x = s_redock (app, why, &resumed);
        if (x)
            return x;
    }
}

static int
s_cmd_gate (s_app_t *app)
{
    const char *chan = "kernel.gate";
    chan_buf_t args;
    chan_buf_init (&args);
    int ret = s_json_arg (app, app->args_json ? app->args_json : "{}", &args);
    if (ret) {
        chan_buf_fini (&args);
        return ret;
    }
    chan_mpk_reader_t rd;
    chan_mpk_obj_t top;
    chan_mpk_reader_init (&rd, args.data, args.len);
    if (chan_mpk_next (&rd, &top) != 0 || top.type != CHAN_MPK_MAP) {
        chan_buf_fini (&args);
        return s_usage (app->cmd, "--args must be a JSON object");
    }
    chan_buf_t req;
    msgpack_packer pk;
    s_req_begin (&req, &pk, 3);
    s_req_str (&pk, "action", app->args[0]);
    s_req_str (&pk, "target", app->args[1]);
    chan_pack_cstr (&pk, "args");
    chan_buf_append (&req, args.data, args.len);
    chan_buf_fini (&args);
    cli_kernel_reply_t reply;
    ret = s_kernel_ask (app, chan, &req, &reply);
    chan_buf_fini (&req);
    if (ret) {
        if (app->client)
            s_bye (app, false);
        return ret;
    }
    int out = s_print_json (reply.data, CLI_JSON_COMPACT);
    ret = out == S_OUT_FAILED    ? s_output_failed ()
          : out == S_OUT_SKIPPED ? EXIT_ERROR
                                 : s_decision_exit (reply.data);
    if (ret == EXIT_ASK && app->wait_approval) {
        /*  The outcome comes as a second answer with the same corr. */
        char corr[64], audit[64] = "?";
        snprintf (corr, sizeof corr, "%s", reply.id);
        const char *p;
        size_t len;
        if (chan_obj_get_str (reply.data, "audit_id", &p, &len)
            && len < sizeof audit) {
            memcpy (audit, p, len);
            audit[len] = 0;
        }
        cli_kernel_reply_fini (&reply);
        int64_t wait = app->given & BIT (OPT_TIMEOUT) ? app->timeout_ms
                                                      : (int64_t) S_MAX_MS;
        cli_kernel_t k;
        int rc = s_gate_await (app, &k, corr, wait, &reply);
        if (rc == S_REDOCK_STOPPED) {
            fprintf (stderr, "aaax: interrupted\n");
            ret = EXIT_ERROR;
        } else if (rc > 0)
            ret = rc; /* could not dock again: said why */
        else if (rc == 0) {
            out = s_print_json (reply.data, CLI_JSON_COMPACT);
            ret = out == S_OUT_FAILED    ? s_output_failed ()
                  : out == S_OUT_SKIPPED ? EXIT_ERROR
                                         : s_decision_exit (reply.data);
        } else if (rc == AAAX_ETIMEDOUT && !k.stopped)
            fprintf (stderr,
                     "aaax: no decision on audit id %s within %" PRId64
                     " ms: still ask\n",
                     audit, wait);
        else
            ret = s_kernel_failed (app, &k);
    }
    cli_kernel_reply_fini (&reply);
    s_bye (app, false);
    return ret;
}

/*  ---- cap grant, list, revoke, verify --------------------------------- */

static int
s_cmd_cap_grant (s_app_t *app)
{
    chan_buf_t req;
    msgpack_packer pk;
    bool ttl = app->given & BIT (OPT_TTL);
    s_req_begin (&req, &pk, 2 + (app->rights ? 1 : 0) + (ttl ? 1 : 0));
    s_req_str (&pk, "op", "grant");
    s_req_str (&pk, "resource", app->args[0]);
    if (ttl) {
        chan_pack_cstr (&pk, "ttl_s");
        msgpack_pack_uint64 (&pk, app->ttl_s);
    }
    if (app->rights) {
        chan_pack_cstr (&pk, "rights");
        if (cli_kernel_pack_list (&pk, app->rights) != 0) {
            chan_buf_fini (&req);
            return s_usage (app->cmd, "--rights needs a comma-separated "
                                      "list such as read,write");
        }
    }
    int ret =
        s_kernel_simple (app, "kernel.capability_requests", &req, "granted");
    chan_buf_fini (&req);
    return ret;
}

static int
s_cmd_cap_list (s_app_t *app)
{
    const char *chan = "kernel.capability_requests";
    cli_kernel_reply_t reply;
    int ret = s_kernel_list (app, chan, &reply);
    if (ret == 0)
        ret = s_print_items (reply.data, "caps", NULL);
    cli_kernel_reply_fini (&reply);
    if (app->client)
        s_bye (app, false);
    return ret;
}

static int
s_cmd_cap_revoke (s_app_t *app)
{
    chan_buf_t req;
    msgpack_packer pk;
    s_req_begin (&req, &pk, 2);
    s_req_str (&pk, "op", "revoke");
    s_req_str (&pk, "id", app->args[0]);
    int ret =
        s_kernel_simple (app, "kernel.capability_requests", &req, "revoked");
    chan_buf_fini (&req);
    return ret;
}

/*  Reads a whole file ("-": stdin) of at most S_MAX_FILE bytes into buf.
    Exit code. */
static int
s_read_file (const char *path, chan_buf_t *buf)
{
    bool std = strcmp (path, "-") == 0;
    FILE *f = std ? stdin : fopen (path, "rb");
    if (!f) {
        fprintf (stderr, "aaax: cannot open %s: %s\n", path, strerror (errno));
        return EXIT_ERROR;
    }
    char chunk[8192];
    size_t n;
    int ret = EXIT_OK;
    while ((n = fread (chunk, 1, sizeof chunk, f)) > 0) {
        chan_buf_append (buf, chunk, n);
        if (buf->oom || buf->len > S_MAX_FILE) {
            fprintf (stderr, "aaax: %s is larger than %u bytes\n", path,
                     S_MAX_FILE);
            ret = EXIT_ERROR;
            break;
        }
    }
    if (ret == EXIT_OK && ferror (f)) {
        fprintf (stderr, "aaax: cannot read %s: %s\n", path, strerror (errno));
        ret = EXIT_ERROR;
    }
    if (!std)
        fclose (f);
    return ret;
}

/*  The kernel's public key: --pub FILE, else DIR/kernel.pub. Exit code. */
static int
s_public_key (s_app_t *app, uint8_t pk[HAL_KEYS_PK_BYTES])
{
    char path[4200];
    int n = app->pub ? snprintf (path, sizeof path, "%s", app->pub)
                     : snprintf (path, sizeof path, "%s/kernel.pub", app->data);
    if (n < 0 || (size_t) n >= sizeof path) {
        fprintf (stderr, "aaax: path too long\n");
        return EXIT_USAGE;
    }
    char err[256] = "";
    int rc = hal_keys_read_public (path, pk, err, sizeof err);
    if (rc == 0)
        return EXIT_OK;
    if (err[0])
        fprintf (stderr, "aaax: %s\n", err);
    else
        fprintf (stderr, "aaax: cannot read the public key %s: %s\n", path,
                 aaax_strerror (rc));
    return EXIT_ERROR;
}

static int
s_cmd_cap_verify (s_app_t *app)
{
    const char *path = app->args[0];
    uint8_t pk[HAL_KEYS_PK_BYTES];
    int ret = s_public_key (app, pk);
    if (ret)
        return ret;
    chan_buf_t text, packed;
    chan_buf_init (&text);
    chan_buf_init (&packed);
    ret = s_read_file (path, &text);
    if (ret) {
        chan_buf_fini (&text);
        return ret;
    }
    char err[300];
    int rc = cli_kernel_cap_load (text.data ? (const void *) text.data : "",
                                  text.len, &packed, err, sizeof err);
    chan_buf_fini (&text);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    hal_cap_t cap;
    memset (&cap, 0, sizeof cap);
    if (rc == 0
        && msgpack_unpack_next (&u, (const char *) packed.data, packed.len,
                                &off)
               != MSGPACK_UNPACK_SUCCESS) {
        snprintf (err, sizeof err, "cannot read the capability back");
        rc = AAAX_EINVAL;
    }
    if (rc == 0)
        rc = hal_cap_from_obj (&u.data, &cap, err, sizeof err);
    if (rc == 0) {
        rc = hal_cap_verify (&cap, pk);
        if (rc) {
            char hex[2 * HAL_KEYS_PK_BYTES + 1];
            sodium_bin2hex (hex, sizeof hex, pk, HAL_KEYS_PK_BYTES);
            if (rc == AAAX_EAUTH && cap.issuer
                && (cap.issuerlen != strlen (hex)
                    || strncasecmp (cap.issuer, hex, cap.issuerlen) != 0))
                snprintf (err, sizeof err,
                          "issued by another key (issuer %.*s, not %s)",
                          (int) (cap.issuerlen > 64 ? 64 : cap.issuerlen),
                          cap.issuer, hex);
            else if (rc == AAAX_EAUTH)
                snprintf (err, sizeof err, "bad signature");
            else
                snprintf (err, sizeof err, "malformed capability");
        }
    }
    if (rc) {
        printf ("invalid: %s\n", err);
        ret = EXIT_ERROR;
    } else if (cap.expires <= (uint64_t) (hal_clock_wall_ms () / 1000)) {
        char when[64];
        cli_kernel_utc (cap.expires, when, sizeof when);
        printf ("expired at %s\n", when);
        ret = EXIT_ERROR;
    } else
        printf ("valid\n");
    if (fflush (stdout) != 0)
        ret = s_output_failed ();
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&packed);
    return ret;
}

/*  ---- approve, deny, approvals, policy reload ------------------------- */

static int
s_cmd_approve (s_app_t *app)
{
    chan_buf_t req;
    msgpack_packer pk;
    s_req_begin (&req, &pk, 3);
    s_req_str (&pk, "op", "approve");
    s_req_str (&pk, "audit_id", app->args[0]);
    s_req_str (&pk, "scope", app->scope ? app->scope : "once");
    int ret = s_kernel_simple (app, "kernel.approvals", &req, NULL);
    chan_buf_fini (&req);
    return ret;
}

static int
s_cmd_deny (s_app_t *app)
{
    chan_buf_t req;
    msgpack_packer pk;
    s_req_begin (&req, &pk, app->reason ? 3 : 2);
    s_req_str (&pk, "op", "deny");
    s_req_str (&pk, "audit_id", app->args[0]);
    if (app->reason)
        s_req_str (&pk, "reason", app->reason);
    int ret = s_kernel_simple (app, "kernel.approvals", &req, NULL);
    chan_buf_fini (&req);
    return ret;
}

static int
s_cmd_approvals (s_app_t *app)
{
    const char *chan = "kernel.approvals";
    chan_buf_t req;
    msgpack_packer pk;
    int ret;
    if (app->revoke) {
        s_req_begin (&req, &pk, 2);
        s_req_str (&pk, "op", "revoke");
        s_req_str (&pk, "id", app->revoke);
        ret = s_kernel_simple (app, chan, &req, NULL);
        chan_buf_fini (&req);
        return ret;
    }
    cli_kernel_reply_t reply;
    ret = s_kernel_list (app, chan, &reply);
    if (ret == 0)
        ret = s_print_items (reply.data, "pending", "pending");
    if (ret == 0)
        ret = s_print_items (reply.data, "approvals", "approval");
    cli_kernel_reply_fini (&reply);
    if (app->client)
        s_bye (app, false);
    return ret;
}

static int
s_cmd_policy_reload (s_app_t *app)
{
    int ret = s_connect (app);
    if (ret == 0)
        ret = s_dock (app, NULL);
    if (ret)
        return ret;
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "op", "reload");
    chan_reply_t reply;
    ret = s_call (app, "CTL", &b, &reply);
    if (ret == 0)
        ret = s_print_body (&reply, CLI_JSON_COMPACT);
    else if (!app->privileged && chan_reply_code (&reply) == 403)
        fprintf (stderr, "aaax: ('policy reload' is privileged: give --data "
                         "DIR, the kernel's data directory)\n");
    chan_reply_fini (&reply);
    chan_body_fini (&b);
    s_bye (app, false);
    return ret;
}

/*  ---- audit tail, show, verify (offline) ------------------------------ */

static hal_audit_reader_t *
s_audit_open (s_app_t *app)
{
    char err[300] = "";
    hal_audit_reader_t *r = hal_audit_reader_open (app->data, err, sizeof err);
    if (!r)
        fprintf (stderr, "aaax: cannot open the audit log in %s: %s\n",
                 app->data, err[0] ? err : "unknown error");
    return r;
}

typedef struct {
    uint64_t last;    /* the last seq printed */
    uint64_t printed; /* records printed */
    bool failed;      /* stdout failed (errno tells) */
    bool skipped;     /* a record could not be shown */
} s_audit_out_t;

static int
s_audit_print (void *arg, uint64_t seq, const uint8_t *hash, const void *body,
               size_t bodylen)
{
    s_audit_out_t *o = (s_audit_out_t *) arg;
    char err[160];
    char *text =
        cli_kernel_audit_json (seq, hash, body, bodylen, err, sizeof err);
    o->last = seq;
    if (!text) {
        fprintf (stderr,
                 "aaax: warning: audit record %" PRIu64
                 " cannot be shown as JSON (%s)\n",
                 seq, err);
        o->skipped = true;
        return 0;
    }
    int rc = fputs (text, stdout) == EOF ? S_OUT_FAILED : s_flush_line ();
    free (text);
    if (rc == S_OUT_FAILED) {
        o->failed = true;
        return 1; /* stop the walk */
    }
    o->printed++;
    return 0;
}

/*  The exit code after a walk that returned rc. */
static int
s_audit_done (s_app_t *app, const s_audit_out_t *o, int rc)
{
    if (o->failed)
        return errno == EPIPE ? EXIT_OK : s_output_failed ();
    if (rc < 0) {
        fprintf (stderr, "aaax: cannot read the audit log in %s: %s\n",
                 app->data, aaax_strerror (rc));
        return EXIT_ERROR;
    }
    return o->skipped ? EXIT_ERROR : EXIT_OK;
}

static int
s_cmd_audit_tail (s_app_t *app)
{
    hal_audit_reader_t *r = s_audit_open (app);
    if (!r)
        return EXIT_ERROR;
    s_audit_out_t o;
    memset (&o, 0, sizeof o);
    uint64_t last = hal_audit_reader_last (r);
    o.last = last;
    int rc = 0;
    if (app->lines > 0 && last > 0) {
        uint64_t from = last > app->lines ? last - app->lines + 1 : 1;
        rc = hal_audit_reader_scan (r, from, last, s_audit_print, &o);
    }
    while (app->follow && rc >= 0 && !o.failed && !s_interrupted) {
        for (int t = 0; t < S_AUDIT_POLL_MS / 20 && !s_interrupted; t++)
            zclock_sleep (20);
        if (s_interrupted)
            break;
        uint64_t now = hal_audit_reader_last (r);
        if (now > o.last)
            rc = hal_audit_reader_scan (r, o.last + 1, now, s_audit_print, &o);
    }
    int ret = s_audit_done (app, &o, rc);
    hal_audit_reader_close (&r);
    return ret;
}

static int
s_cmd_audit_show (s_app_t *app)
{
    uint64_t seq;
    if (!s_parse_uint (app->args[0], 1, UINT64_MAX, &seq))
        return s_usage (app->cmd, "ID must be a record's seq (1, 2, ...)");
    hal_audit_reader_t *r = s_audit_open (app);
    if (!r)
        return EXIT_ERROR;
    s_audit_out_t o;
    memset (&o, 0, sizeof o);
    int rc = hal_audit_reader_scan (r, seq, seq, s_audit_print, &o);
    int ret = s_audit_done (app, &o, rc);
    if (ret == EXIT_OK && o.printed == 0) {
        fprintf (stderr,
                 "aaax: no audit record %" PRIu64 " (the log has %" PRIu64
                 ")\n",
                 seq, hal_audit_reader_last (r));
        ret = EXIT_ERROR;
    }
    hal_audit_reader_close (&r);
    return ret;
}

static int
s_cmd_audit_verify (s_app_t *app)
{
    uint8_t pk[HAL_KEYS_PK_BYTES];
    int ret = s_public_key (app, pk);
    if (ret)
        return ret;
    hal_audit_reader_t *r = s_audit_open (app);
    if (!r)
        return EXIT_ERROR;
    hal_audit_verify_t v;
    memset (&v, 0, sizeof v);
    int rc = hal_audit_verify (r, pk, &v);
    hal_audit_reader_close (&r);
    if (rc == 0)
        printf ("audit: %" PRIu64 " records verified, %" PRIu64
                " checkpoints, %" PRIu64 " unsigned at the tail\n",
                v.records, v.checkpoints, v.unsigned_tail);
    else if (rc == AAAX_EINVAL) {
        printf ("audit: damaged at record %" PRIu64 ": %s (%" PRIu64
                " record%s before it verified)\n",
                v.first_bad, v.why[0] ? v.why : "no reason given", v.records,
                v.records == 1 ? "" : "s");
        ret = EXIT_ERROR;
    } else {
        fprintf (stderr, "aaax: cannot read the audit log in %s: %s\n",
                 app->data, aaax_strerror (rc));
        return EXIT_ERROR;
    }
    return fflush (stdout) == 0 ? ret : s_output_failed ();
}

/*  ---- kernel-key, keygen, authorize (files), enroll ------------------ */

/*  The data directory must exist (a typo must not make a new one). Exit
    code. */
static int
s_data_dir_exists (s_app_t *app)
{
    struct stat st;
    if (stat (app->data, &st) == 0 && S_ISDIR (st.st_mode))
        return EXIT_OK;
    fprintf (stderr,
             "aaax: %s is not a directory (give the kernel's data "
             "directory with --data DIR%s)\n",
             app->data,
             app->given & BIT (OPT_DATA) ? ""
                                         : "; the default is " S_DEFAULT_DATA);
    return EXIT_ERROR;
}

static int
s_cmd_kernel_key (s_app_t *app)
{
    char pub[HAL_CURVE_Z85_LEN + 1], err[300] = "";
    int rc =
        hal_curve_server_cert (app->data, false, pub, NULL, err, sizeof err);
    if (rc == AAAX_ENOENT) {
        char path[4200];
        if (hal_curve_path (app->data, "server.cert", path, sizeof path) != 0)
            snprintf (path, sizeof path, "%s/curve/server.cert", app->data);
        fprintf (stderr,
                 "aaax: no kernel key in %s: %s does not exist (has aaaxd "
                 "ever started with --data %s? it makes its key at first "
                 "boot)\n",
                 app->data, path, app->data);
        return EXIT_ERROR;
    }
    if (rc) {
        fprintf (stderr, "aaax: cannot read the kernel's key in %s: %s\n",
                 app->data, err[0] ? err : aaax_strerror (rc));
        return EXIT_ERROR;
    }
    printf ("%s\n", pub);
    return fflush (stdout) == 0 ? EXIT_OK : s_output_failed ();
}

static int
s_cmd_keygen (s_app_t *app)
{
    const char *path = app->args[0];
    if (!*path)
        return s_usage (app->cmd, "NAME must not be empty");
    char pub[HAL_CURVE_Z85_LEN + 1], err[300] = "";
    int rc = hal_curve_keygen (path, pub, err, sizeof err);
    if (rc == AAAX_EEXIST) {
        fprintf (stderr,
                 "aaax: %s\n"
                 "aaax: (keygen never overwrites a key: remove the old pair "
                 "first, or choose another NAME)\n",
                 err[0] ? err : "the certificate exists already");
        return EXIT_ERROR;
    }
    if (rc) {
        fprintf (stderr, "aaax: cannot write the certificate %s: %s\n", path,
                 err[0] ? err : aaax_strerror (rc));
        return EXIT_ERROR;
    }
    fprintf (stderr,
             "aaax: wrote %s (public key) and %s_secret (secret key, mode "
             "0600); the public key is:\n",
             path, path);
    printf ("%s\n", pub);
    return fflush (stdout) == 0 ? EXIT_OK : s_output_failed ();
}

/*  Prints one binding: "KEY ID ID..." or, with --json, {key, systems}.
    S_OUT_*. */
static int
s_print_binding (s_app_t *app, const char *key, const char *ids)
{
    if (!app->json) {
        if (printf ("%s %s\n", key, ids) < 0)
            return S_OUT_FAILED;
        return S_OUT_OK;
    }
    chan_buf_t buf;
    chan_buf_init (&buf);
    msgpack_packer pk;
    chan_buf_packer (&buf, &pk);
    msgpack_pack_map (&pk, 2);
    s_req_str (&pk, "key", key);
    chan_pack_cstr (&pk, "systems");
    uint32_t n = 0;
    for (const char *p = ids; *p;) {
        size_t len = strcspn (p, " ");
        if (len)
            n++;
        p += len;
        p += strspn (p, " ");
    }
    msgpack_pack_array (&pk, n);
    for (const char *p = ids; *p;) {
        size_t len = strcspn (p, " ");
        if (len)
            chan_pack_str (&pk, p, len);
        p += len;
        p += strspn (p, " ");
    }
    int out = S_OUT_FAILED;
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    if (!buf.oom
        && msgpack_unpack_next (&u, (const char *) buf.data, buf.len, &off)
               == MSGPACK_UNPACK_SUCCESS)
        out = s_print_json (&u.data, CLI_JSON_COMPACT);
    else
        errno = ENOMEM;
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&buf);
    return out;
}

static int
s_authorize_list (s_app_t *app)
{
    char err[300] = "";
    hal_curve_auth_t *auth = hal_curve_auth_load (app->data, err, sizeof err);
    if (!auth) {
        fprintf (stderr, "aaax: cannot read the authorized keys in %s: %s\n",
                 app->data, err[0] ? err : "unknown error");
        return EXIT_ERROR;
    }
    int ret = EXIT_OK;
    const char *key, *ids;
    for (size_t i = 0; hal_curve_auth_entry (auth, i, &key, &ids); i++) {
        int out = s_print_binding (app, key, ids);
        if (out == S_OUT_FAILED) {
            ret = errno == EPIPE ? EXIT_OK : s_output_failed ();
            break;
        }
        if (out == S_OUT_SKIPPED)
            ret = EXIT_ERROR;
    }
    hal_curve_auth_destroy (&auth);
    if (ret == EXIT_OK && fflush (stdout) != 0)
        ret = s_output_failed ();
    return ret;
}

static int
s_cmd_authorize (s_app_t *app)
{
    const s_command_t *cmd = app->cmd;
    int modes =
        (app->list ? 1 : 0) + (app->revoke ? 1 : 0) + (app->nargs > 0 ? 1 : 0);
    if (modes == 0)
        return s_usage (cmd, "give a KEY and --system ID, or --list, or "
                             "--revoke KEY");
    if (modes > 1)
        return s_usage (cmd, "give one of: KEY --system ID, --list, "
                             "--revoke KEY");
    if (app->json && !app->list)
        return s_usage (cmd, "--json goes with --list");
    if (app->nsystems && !app->nargs)
        return s_usage (cmd, "--system goes with a KEY to bind");
    const char *key = app->revoke  ? app->revoke
                      : app->nargs ? app->args[0]
                                   : NULL;
    if (key && !hal_curve_key_valid (key))
        return s_usage (cmd,
                        "'%s' is not a public key: 40 characters of Z85, as "
                        "'aaax keygen' prints it",
                        key);
    if (app->nargs && !app->nsystems)
        return s_usage (cmd, "give the system ids the key may dock as: "
                             "--system ID (repeatable)");
    int ret = s_data_dir_exists (app);
    if (ret)
        return ret;
    if (app->list)
        return s_authorize_list (app);
    char err[300] = "";
    int rc = hal_curve_authorize (app->data, key, app->systems, app->nsystems,
                                  app->revoke != NULL, err, sizeof err);
    if (rc == AAAX_ENOENT && app->revoke) {
        fprintf (stderr, "aaax: the key %s is not authorized in %s\n", key,
                 app->data);
        return EXIT_ERROR;
    }
    if (rc) {
        fprintf (stderr, "aaax: %s\n", err[0] ? err : aaax_strerror (rc));
        return EXIT_ERROR;
    }
    if (app->revoke) {
        printf ("revoked %s\n", key);
    } else {
        /*  What the key may dock as now (what it had, and these). */
        hal_curve_auth_t *auth =
            hal_curve_auth_load (app->data, err, sizeof err);
        const char *k, *ids = NULL;
        for (size_t i = 0; auth && hal_curve_auth_entry (auth, i, &k, &ids);
             i++, ids = NULL)
            if (strcmp (k, key) == 0)
                break;
        if (ids)
            printf ("authorized %s %s\n", key, ids);
        else {
            printf ("authorized %s", key);
            for (size_t i = 0; i < app->nsystems; i++)
                printf (" %s", app->systems[i]);
            printf ("\n");
        }
        hal_curve_auth_destroy (&auth);
    }
    return fflush (stdout) == 0 ? EXIT_OK : s_output_failed ();
}

/*  enroll --token: dock once with the enrollment token (this key becomes
    bound to the token's system id), then leave. */
static int
s_enroll_redeem (s_app_t *app)
{
    if (!app->server_key)
        return s_usage (app->cmd,
                        "--token needs CURVE: give --server-key Z85 and "
                        "--cert FILE (an enrollment binds that key)");
    int ret = s_connect (app);
    if (ret)
        return ret;
    chan_hello_t h;
    memset (&h, 0, sizeof h);
    h.system = app->given & BIT (OPT_SYSTEM) ? app->system : NULL;
    h.token = app->enroll_token;
    chan_reply_t reply;
    memset (&reply, 0, sizeof reply);
    int rc = chan_client_hello_ex (app->client, &h, &reply);
    if (rc) {
        ret = s_report (app, rc, &reply);
        chan_reply_fini (&reply);
        return ret;
    }
    chan_reply_fini (&reply);
    char idbuf[AAAX_MAX_NAME + 1];
    const char *id = chan_client_system (app->client);
    snprintf (idbuf, sizeof idbuf, "%s", *id ? id : "?");
    s_bye (app, false);
    printf ("enrolled: the key %s may now dock as %s\n", app->curve_public,
            idbuf);
    return fflush (stdout) == 0 ? EXIT_OK : s_output_failed ();
}

static int
s_cmd_enroll (s_app_t *app)
{
    const s_command_t *cmd = app->cmd;
    if (app->enroll_token) {
        if (app->data)
            return s_usage (cmd, "--token (redeeming) and --data (making a "
                                 "token) do not go together");
        if (app->given & BIT (OPT_TTL))
            return s_usage (cmd, "--ttl is for making a token, not with "
                                 "--token");
        return s_enroll_redeem (app);
    }
    if (!(app->given & BIT (OPT_SYSTEM)))
        return s_usage (cmd, "give the system id to enroll: --system ID");
    if (!hal_curve_id_valid (app->system))
        return s_usage (cmd,
                        "'%s' is not a system id (1-%d characters of A-Z "
                        "a-z 0-9 . _ - :, not starting with '.')",
                        app->system, HAL_CURVE_ID_MAX);
    /*  --system names the id to enroll; this command docks under its own
        (default) id. */
    const char *target = app->system;
    const char *env = getenv ("AAAX_SYSTEM");
    char dock_as[AAAX_MAX_NAME + 1];
    if (env && *env && strcmp (env, target) != 0
        && strlen (env) <= AAAX_MAX_NAME)
        snprintf (dock_as, sizeof dock_as, "%s", env);
    else
        s_default_system (dock_as, sizeof dock_as);
    snprintf (app->sysbuf, sizeof app->sysbuf, "%s", dock_as);
    app->system = app->sysbuf;
    snprintf (app->mailbox, sizeof app->mailbox, "@%s", app->system);
    uint64_t ttl = app->given & BIT (OPT_TTL) ? app->ttl_ms : S_ENROLL_TTL_MS;
    int ret = s_connect (app);
    if (ret == 0)
        ret = s_dock (app, NULL);
    if (ret)
        return ret;
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "op", "enroll");
    chan_body_str (&b, "system", target);
    chan_body_uint (&b, "ttl_ms", ttl);
    chan_reply_t reply;
    ret = s_call (app, "CTL", &b, &reply);
    chan_body_fini (&b);
    if (ret && !app->privileged && chan_reply_code (&reply) == 403)
        fprintf (stderr, "aaax: ('enroll' is privileged: give --data DIR, "
                         "the kernel's data directory)\n");
    if (ret == 0 && app->json)
        ret = s_print_body (&reply, CLI_JSON_COMPACT);
    else if (ret == 0) {
        const char *tok;
        size_t toklen;
        uint64_t expires = 0;
        if (!chan_obj_get_str (&reply.body, "token", &tok, &toklen)) {
            fprintf (stderr, "aaax: the kernel's OK carries no token\n");
            ret = EXIT_ERROR;
        } else {
            char when[64] = "?";
            if (chan_obj_get_uint (&reply.body, "expires", &expires))
                cli_kernel_utc (expires / 1000, when, sizeof when);
            printf ("enrollment token for %s, one use, valid until %s:\n"
                    "%.*s\n",
                    target, when, (int) toklen, tok);
            if (fflush (stdout) != 0)
                ret = s_output_failed ();
        }
    }
    chan_reply_fini (&reply);
    s_bye (app, false);
    return ret;
}

/*  ---- main ------------------------------------------------------------ */

/*  ---- bench (cli/cli_bench.c) ---------------------------------------- */

static int
s_cmd_bench (s_app_t *app)
{
    const s_command_t *cmd = app->cmd;
    cli_bench_opts_t o;
    memset (&o, 0, sizeof o);
    const char *mode = app->args[0];
    if (strcmp (mode, "pub") == 0)
        o.mode = CLI_BENCH_PUB;
    else if (strcmp (mode, "queue") == 0)
        o.mode = CLI_BENCH_QUEUE;
    else if (strcmp (mode, "rpc") == 0)
        o.mode = CLI_BENCH_RPC;
    else
        return s_usage (cmd, "unknown mode '%s': pub, queue or rpc", mode);
    uint64_t g = app->given;
    if (o.mode == CLI_BENCH_RPC
        && (g
            & (BIT (OPT_PUBLISHERS) | BIT (OPT_SUBSCRIBERS) | BIT (OPT_CHANNEL)
               | BIT (OPT_MAX))))
        return s_usage (cmd, "rpc takes no --publishers, --subscribers, "
                             "--channel or --max");
    if (o.mode == CLI_BENCH_PUB && (g & BIT (OPT_MAX)))
        return s_usage (cmd, "--max applies to queue only");
    if (o.mode == CLI_BENCH_RPC && (g & BIT (OPT_BATCH)))
        return s_usage (cmd, "--batch applies to pub and queue");
    if (o.mode != CLI_BENCH_RPC && (g & BIT (OPT_TRANSIENT)))
        return s_usage (cmd, "--transient applies to rpc only");
    o.wbatch = (g & BIT (OPT_BATCH)) ? app->wbatch : 1;
    o.transient = app->transient;
    if (app->count > CLI_BENCH_MAX_COUNT)
        return s_usage (cmd, "--count is at most %u", CLI_BENCH_MAX_COUNT);
    o.count = (g & BIT (OPT_COUNT))     ? app->count
              : o.mode == CLI_BENCH_RPC ? 10000
                                        : 100000;
    o.size = (g & BIT (OPT_SIZE)) ? app->size : 128;
    o.publishers = (g & BIT (OPT_PUBLISHERS)) ? app->publishers : 1;
    o.subscribers = (g & BIT (OPT_SUBSCRIBERS)) ? app->subscribers : 1;
    if (o.mode == CLI_BENCH_QUEUE && o.subscribers == 0)
        return s_usage (cmd, "queue needs at least one consumer "
                             "(--subscribers 1 or more)");
    if (o.mode != CLI_BENCH_RPC && o.count < o.publishers)
        return s_usage (cmd, "--count must be at least --publishers");
    if (g & BIT (OPT_MAX)) {
        if (app->max > 10000)
            return s_usage (cmd, "--max is at most 10000 (the kernel's CLAIM "
                                 "limit)");
        o.batch = app->max;
    } else
        o.batch = 100;
    o.channel = app->channel                ? app->channel
                : o.mode == CLI_BENCH_QUEUE ? "jobs"
                                            : "events";
    if (!*o.channel || strlen (o.channel) > AAAX_MAX_NAME)
        return s_usage (cmd, "--channel needs a name of 1 to %d bytes",
                        AAAX_MAX_NAME);
    if (o.channel[0] == '@')
        return s_usage (cmd, "--channel cannot be a mailbox (use rpc)");
    o.timeout_ms = (g & BIT (OPT_TIMEOUT)) ? app->timeout_ms : 60000;
    int ret = s_credentials (app);
    if (ret)
        return ret;
    o.endpoint = app->endpoint;
    o.system = app->system;
    o.token = app->privileged ? app->token : NULL;
    o.server_key = app->server_key;
    o.curve_public = app->server_key ? app->curve_public : NULL;
    o.curve_secret = app->server_key ? app->curve_secret : NULL;
    o.json = app->json;
    o.progress = isatty (STDERR_FILENO);
    o.interrupted = &s_interrupted;
    return cli_bench_run (&o);
}

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
    int used = 0;
    if (strcmp (name, "--help") == 0 || strcmp (name, "-h") == 0
        || strcmp (name, "help") == 0) {
        if (argc > 2 && strcmp (name, "help") == 0) {
            if (strcmp (argv[2], "app") == 0)
                return cli_app_help (argc > 3 ? argv[3] : NULL);
            const s_command_t *c = s_find (argc - 2, argv + 2, &used);
            if (c)
                return s_cmd_help (c);
            if (s_is_group (argv[2])) {
                s_group_usage (stdout, argv[2]);
                return EXIT_OK;
            }
        }
        s_main_usage (stdout);
        return EXIT_OK;
    }
    /*  "aaax app ...": Lua apps (cli/cli_app.c). */
    if (strcmp (name, "app") == 0)
        return cli_app_main (argc - 1, argv + 1);
    char version_word[] = "version";
    if (strcmp (name, "--version") == 0)
        name = argv[1] = version_word;
    const s_command_t *cmd = s_find (argc - 1, argv + 1, &used);
    if (!cmd && s_is_group (name)) {
        /*  "aaax cap", "aaax cap --help", "aaax cap frob". */
        const char *sub = argc > 2 ? argv[2] : NULL;
        if (sub && (strcmp (sub, "--help") == 0 || strcmp (sub, "-h") == 0)) {
            s_group_usage (stdout, name);
            return EXIT_OK;
        }
        if (sub)
            fprintf (stderr, "aaax: unknown subcommand '%s %s'\n\n", name, sub);
        else
            fprintf (stderr, "aaax: '%s' needs a subcommand\n\n", name);
        s_group_usage (stderr, name);
        return EXIT_USAGE;
    }
    if (!cmd) {
        fprintf (stderr, "aaax: unknown subcommand '%s'\n\n", name);
        s_main_usage (stderr);
        return EXIT_USAGE;
    }
    s_app_t app;
    memset (&app, 0, sizeof app);
    app.cmd = cmd;
    int ret = s_parse (&app, argc - used, argv + used);
    if (ret < 0)
        return s_cmd_help (cmd);
    if (ret)
        return ret;
    ret = cmd->run (&app);
    chan_client_destroy (&app.client);
    sodium_memzero (app.token, sizeof app.token);
    sodium_memzero (app.curve_secret, sizeof app.curve_secret);
    return ret;
}
