/*  test_cli_app.c — unit tests of cli/cli_app.c: the pure helpers (paths
    made absolute, digests, the load lines and the list table), then whole
    `aaax app …` runs against a fake loader (a ROUTER actor over inproc)
    that records each request and answers as the spec says, with stdout
    and stderr captured. */

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <czmq.h>
#include <msgpack.h>

#include "aaax.h"
#include "chan_client.h"
#include "chan_mpk.h"
#include "cli_app.h"
#include "cli_json.h"
#include "testutil.h"

#define FAKE_EP "inproc://fake-loader"

/*  Parses JSON into u (destroy it, and fini buf). */
static const msgpack_object *
s_obj (const char *json, chan_buf_t *buf, msgpack_unpacked *u)
{
    chan_buf_init (buf);
    msgpack_unpacked_init (u);
    char err[200];
    if (cli_json_to_msgpack (json, buf, err, sizeof err) != 0) {
        fprintf (stderr, "bad test JSON: %s\n", err);
        return NULL;
    }
    size_t off = 0;
    if (msgpack_unpack_next (u, (const char *) buf->data, buf->len, &off)
        != MSGPACK_UNPACK_SUCCESS)
        return NULL;
    return &u->data;
}

/*  ---- pure helpers ---------------------------------------------------- */

static void
test_abspath (void)
{
    char out[64];
    CHECK_EQ_INT (cli_app_abspath ("/home/u", "apps/echo", out, sizeof out), 0);
    CHECK_EQ_STR (out, "/home/u/apps/echo");
    CHECK_EQ_INT (
        cli_app_abspath ("/home/u/", "./apps//echo/", out, sizeof out), 0);
    CHECK_EQ_STR (out, "/home/u/apps/echo");
    CHECK_EQ_INT (cli_app_abspath ("/home/u", "../x", out, sizeof out), 0);
    CHECK_EQ_STR (out, "/home/u/../x");
    CHECK_EQ_INT (cli_app_abspath ("/home/u", "/srv/apps/a/", out, sizeof out),
                  0);
    CHECK_EQ_STR (out, "/srv/apps/a");
    CHECK_EQ_INT (cli_app_abspath ("/", ".", out, sizeof out), 0);
    CHECK_EQ_STR (out, "/");
    CHECK_EQ_INT (cli_app_abspath ("/home/u", ".", out, sizeof out), 0);
    CHECK_EQ_STR (out, "/home/u");
    CHECK_EQ_INT (cli_app_abspath (NULL, "/a", out, sizeof out), 0);
    CHECK_EQ_STR (out, "/a");
    /*  Refused: empty, relative without an absolute cwd, too long. */
    CHECK_EQ_INT (cli_app_abspath ("/home/u", "", out, sizeof out), -1);
    CHECK_EQ_INT (cli_app_abspath ("rel", "a", out, sizeof out), -1);
    CHECK_EQ_INT (cli_app_abspath (NULL, "a", out, sizeof out), -1);
    char small[8];
    CHECK_EQ_INT (cli_app_abspath ("/home/u", "a", small, sizeof small), -1);
    CHECK_EQ_INT (cli_app_abspath ("/abc", "de", small, sizeof small), 0);
    CHECK_EQ_STR (small, "/abc/de");
}

static void
s_digest (const char *json, const char *want)
{
    chan_buf_t buf;
    msgpack_unpacked u;
    const msgpack_object *o = s_obj (json, &buf, &u);
    char out[16];
    cli_app_digest12 (o, out, sizeof out);
    CHECK_EQ_STR (out, want);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&buf);
}

static void
test_digest (void)
{
    s_digest ("\"3f2a9c0b7d1e55aa00112233445566778899aabbccddeeff0011223344556"
              "677\"",
              "3f2a9c0b7d1e");
    s_digest ("\"blake2b:0123456789abcdef\"", "0123456789ab");
    s_digest ("\"abc\"", "abc");
    s_digest ("\"\"", "-");
    s_digest ("null", "-");
    s_digest ("42", "-");
    char none[16];
    cli_app_digest12 (NULL, none, sizeof none);
    CHECK_EQ_STR (none, "-");
    /*  A bin: its first 6 bytes as hex. */
    uint8_t bytes[32];
    for (int i = 0; i < 32; i++)
        bytes[i] = (uint8_t) (0xa0 + i);
    msgpack_object bin = { .type = MSGPACK_OBJECT_BIN };
    bin.via.bin.ptr = (const char *) bytes;
    bin.via.bin.size = 32;
    char out[16];
    cli_app_digest12 (&bin, out, sizeof out);
    CHECK_EQ_STR (out, "a0a1a2a3a4a5");
}

static void
test_loaded_lines (void)
{
    chan_buf_t buf;
    msgpack_unpacked u;
    const msgpack_object *o = s_obj (
        "[{\"name\": \"echo\", \"version\": \"1.0.0\", \"digest\": "
        "\"3f2a9c0b7d1e99\", \"granted\": [\"chan.write:news\", "
        "\"fs.read:*\"], \"refused\": [\"net.fetch:*\"]},"
        " {\"name\": \"w\\u001b[2J\", \"version\": \"2\", \"granted\": [], "
        "\"refused\": []},"
        " 7]",
        &buf, &u);
    char *text = cli_app_loaded_lines (o, "loaded");
    CHECK_EQ_STR (text, "loaded echo 1.0.0 (digest 3f2a9c0b7d1e) granted: "
                        "chan.write:news, fs.read:*; refused: net.fetch:*\n"
                        "loaded w?[2J 2 (digest -) granted: none; refused: "
                        "none\n");
    free (text);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&buf);
    o = s_obj ("[]", &buf, &u);
    text = cli_app_loaded_lines (o, "reloaded");
    CHECK_EQ_STR (text, "");
    free (text);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&buf);
}

static const char s_modules[] =
    "[{\"name\": \"echo\", \"version\": \"1.0.0\", \"path\": "
    "\"/srv/apps/echo\","
    "  \"digest\": \"aa\", \"pinned\": null, \"state\": \"failed\","
    "  \"since\": 1732291200.5, \"restarts\": 5,"
    "  \"error\": \"main.lua:4: boom\\nsecond line\","
    "  \"granted\": [], \"refused\": [], \"channels\": [], \"depends\": [],"
    "  \"memory\": 0, \"limits\": {\"memory_kb\": 4096}, \"handled\": 3},"
    " {\"name\": \"counter\", \"version\": \"1.0.10\", \"path\": "
    "\"/srv/apps/counter\","
    "  \"digest\": \"bb\", \"pinned\": \"bb\", \"state\": \"running\","
    "  \"restarts\": 0, \"error\": \"old crash\", \"memory\": 217089,"
    "  \"handled\": 17}]";

static void
test_table (void)
{
    chan_buf_t buf;
    msgpack_unpacked u;
    const msgpack_object *o = s_obj (s_modules, &buf, &u);
    char *text = cli_app_table (o);
    /*  Sorted by name; MEMORY rounded up to KiB; only a failed app shows
        its error (control characters made '?'). */
    CHECK_EQ_STR (text,
                  "NAME     VERSION  STATE    RESTARTS  MEMORY(KiB)  HANDLED  "
                  "PINNED  PATH\n"
                  "counter  1.0.10   running  0         213          17       "
                  "yes     /srv/apps/counter\n"
                  "echo     1.0.0    failed   5         0            3        "
                  "no      /srv/apps/echo\n"
                  "  error: main.lua:4: boom?second line\n");
    free (text);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&buf);

    o = s_obj ("[]", &buf, &u);
    text = cli_app_table (o);
    CHECK_EQ_STR (text, "NAME  VERSION  STATE  RESTARTS  MEMORY(KiB)  "
                        "HANDLED  PINNED  PATH\n");
    free (text);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&buf);

    /*  Missing fields are '-'; not an array: NULL. */
    o = s_obj ("[{\"name\": \"x\"}]", &buf, &u);
    text = cli_app_table (o);
    CHECK (text
           && strstr (text, "\nx     -        -      -         -    "
                            "        -        no      -\n"));
    free (text);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&buf);
    o = s_obj ("{}", &buf, &u);
    CHECK (cli_app_table (o) == NULL);
    msgpack_unpacked_destroy (&u);
    chan_buf_fini (&buf);
}

/*  ---- a fake loader ---------------------------------------------------- */

typedef struct {
    int requests;
    char last[2048]; /* the last request to kernel.loader, as JSON */
    bool silent;     /* answer nothing */
} fake_t;

static void
s_send (zsock_t *router, zframe_t *rid, const char *cmd, chan_buf_t *body)
{
    zmsg_t *m = zmsg_new ();
    zmsg_append (m, &(zframe_t *){ zframe_dup (rid) });
    zmsg_addstr (m, cmd);
    zmsg_addmem (m, body->data, body->len);
    zmsg_send (&m, router);
}

static void
s_begin (chan_buf_t *b, msgpack_packer *pk, uint64_t req, uint32_t more)
{
    chan_buf_init (b);
    chan_buf_packer (b, pk);
    msgpack_pack_map (pk, 1 + more);
    chan_pack_cstr (pk, "req");
    msgpack_pack_uint64 (pk, req);
}

/*  The loader's answer (JSON) to a request. */
static const char *
s_answer (const msgpack_object *req)
{
    const char *op = "", *name = "", *path = "";
    size_t oplen = 0, nlen = 0, plen = 0;
    chan_obj_get_str (req, "op", &op, &oplen);
    chan_obj_get_str (req, "name", &name, &nlen);
    chan_obj_get_str (req, "path", &path, &plen);
    char o[16];
    snprintf (o, sizeof o, "%.*s", (int) oplen, op);
    bool busy = nlen == 4 && memcmp (name, "busy", 4) == 0;
    bool bad = plen >= 4 && memcmp (path + plen - 4, "/bad", 4) == 0;
    if (streq (o, "load") && bad)
        return "{\"ok\": false, \"reason\": \"/x/bad/manifest.lua:3: name: "
               "missing (every app needs a name, its system id)\"}";
    if (streq (o, "load") || streq (o, "reload"))
        return "{\"ok\": true, \"modules\": [{\"name\": \"echo\", "
               "\"version\": \"1.0.0\", \"digest\": "
               "\"3f2a9c0b7d1e0000\", \"granted\": [\"chan.write:news\"], "
               "\"refused\": []}, {\"name\": \"counter\", \"version\": "
               "\"1.0.0\", \"digest\": \"99887766554433\", \"granted\": [], "
               "\"refused\": [\"net.fetch:*\", \"fs.write:*\"]}]}";
    if (streq (o, "unload") && busy)
        return "{\"ok\": false, \"reason\": \"apps depend on it: toolrunner\"}";
    if (streq (o, "list"))
        return NULL; /* the caller wraps s_modules */
    if (streq (o, "pin"))
        return "{\"ok\": true, \"digest\": \"0123456789abcdef0123\"}";
    return "{\"ok\": true}";
}

/*  MSG {sub: "@me", msg: {id, from: kernel.loader, chan, corr, data}}. */
static void
s_push_answer (zsock_t *router, zframe_t *rid, const char *corr,
               const msgpack_object *req)
{
    char list[4096];
    const char *json = s_answer (req);
    if (!json) {
        snprintf (list, sizeof list, "{\"ok\": true, \"modules\": %s}",
                  s_modules);
        json = list;
    }
    char env[8192];
    snprintf (env, sizeof env,
              "{\"sub\": \"@me\", \"msg\": {\"id\": \"M%s\", \"from\": "
              "\"kernel.loader\", \"chan\": \"@me\", \"corr\": \"%s\", "
              "\"data\": %s}}",
              corr, corr, json);
    chan_buf_t b;
    chan_buf_init (&b);
    char err[200];
    int rc = cli_json_to_msgpack (env, &b, err, sizeof err);
    if (rc)
        fprintf (stderr, "fake: %s\n", err);
    s_send (router, rid, "MSG", &b);
    chan_buf_fini (&b);
}

static void
s_fake_loader (zsock_t *pipe, void *args)
{
    fake_t *st = (fake_t *) args;
    zsock_t *router = zsock_new_router (FAKE_EP);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    zsock_signal (pipe, 0);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == pipe) {
            char *cmd = zstr_recv (pipe);
            bool term = !cmd || streq (cmd, "$TERM");
            zstr_free (&cmd);
            if (term)
                break;
            continue;
        }
        if (which != router)
            break;
        zmsg_t *m = zmsg_recv (router);
        zframe_t *rid = zmsg_pop (m);
        char *cmd = zmsg_popstr (m);
        zframe_t *body = zmsg_pop (m);
        msgpack_unpacked u;
        msgpack_unpacked_init (&u);
        size_t off = 0;
        msgpack_unpack_next (&u, (const char *) zframe_data (body),
                             zframe_size (body), &off);
        uint64_t req = 0;
        chan_obj_get_uint (&u.data, "req", &req);
        chan_buf_t b;
        msgpack_packer pk;
        if (streq (cmd, "HELLO")) {
            s_begin (&b, &pk, req, 1);
            chan_pack_cstr (&pk, "heartbeat_ms");
            msgpack_pack_uint32 (&pk, 1000);
            s_send (router, rid, "OK", &b);
        } else if (streq (cmd, "WRITE")) {
            const char *chan = "";
            size_t len = 0;
            chan_obj_get_str (&u.data, "chan", &chan, &len);
            if (len != 13 || memcmp (chan, "kernel.loader", 13) != 0) {
                s_begin (&b, &pk, req, 2);
                chan_pack_cstr (&pk, "code");
                msgpack_pack_uint32 (&pk, 403);
                chan_pack_cstr (&pk, "reason");
                chan_pack_cstr (&pk, "not that queue");
                s_send (router, rid, "ERROR", &b);
            } else {
                st->requests++;
                char corr[32];
                snprintf (corr, sizeof corr, "REQ%d", st->requests);
                const msgpack_object *data = chan_obj_get (&u.data, "data");
                char err[100];
                char *json = data ? cli_msgpack_to_json (data, CLI_JSON_COMPACT,
                                                         err, sizeof err)
                                  : NULL;
                snprintf (st->last, sizeof st->last, "%s", json ? json : "?");
                free (json);
                s_begin (&b, &pk, req, 1);
                chan_pack_cstr (&pk, "id");
                chan_pack_cstr (&pk, corr);
                s_send (router, rid, "OK", &b);
                if (!st->silent && data)
                    s_push_answer (router, rid, corr, data);
            }
        } else if (streq (cmd, "PING")) {
            s_begin (&b, &pk, req, 0);
            s_send (router, rid, "PONG", &b);
        } else {
            s_begin (&b, &pk, req, 0); /* ACK, BYE */
            s_send (router, rid, "OK", &b);
        }
        chan_buf_fini (&b);
        msgpack_unpacked_destroy (&u);
        zframe_destroy (&body);
        zstr_free (&cmd);
        zframe_destroy (&rid);
        zmsg_destroy (&m);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

/*  ---- whole runs ------------------------------------------------------ */

typedef struct {
    int rc;
    char out[4096];
    char err[4096];
} run_t;

static void
s_slurp (const char *path, char *buf, size_t size)
{
    buf[0] = 0;
    FILE *f = fopen (path, "r");
    if (!f)
        return;
    size_t n = fread (buf, 1, size - 1, f);
    buf[n] = 0;
    fclose (f);
}

/*  Runs cli_app_main on words (NULL-terminated), stdout and stderr
    captured into r. */
static void
s_run (run_t *r, const char *const *words)
{
    char *argv[32];
    int argc = 0;
    char store[32][256];
    for (; words[argc] && argc < 31; argc++) {
        snprintf (store[argc], sizeof store[argc], "%s", words[argc]);
        argv[argc] = store[argc];
    }
    argv[argc] = NULL;
    char out_path[] = "/tmp/test_cli_app.out.XXXXXX";
    char err_path[] = "/tmp/test_cli_app.err.XXXXXX";
    int out_fd = mkstemp (out_path);
    int err_fd = mkstemp (err_path);
    fflush (stdout);
    fflush (stderr);
    int saved_out = dup (1), saved_err = dup (2);
    dup2 (out_fd, 1);
    dup2 (err_fd, 2);
    r->rc = cli_app_main (argc, argv);
    fflush (stdout);
    fflush (stderr);
    dup2 (saved_out, 1);
    dup2 (saved_err, 2);
    close (saved_out);
    close (saved_err);
    close (out_fd);
    close (err_fd);
    s_slurp (out_path, r->out, sizeof r->out);
    s_slurp (err_path, r->err, sizeof r->err);
    unlink (out_path);
    unlink (err_path);
}

#define APP(...)                                                         \
    (const char *const[])                                                \
    {                                                                    \
        "app", __VA_ARGS__, "--connect", FAKE_EP, "--system", "me", NULL \
    }

static void
test_runs (void)
{
    fake_t st;
    memset (&st, 0, sizeof st);
    zactor_t *fake = zactor_new (s_fake_loader, &st);
    run_t r;
    char cwd[1024];
    CHECK (getcwd (cwd, sizeof cwd) != NULL);

    /*  load: one relative path, sent absolute as path. */
    s_run (&r, APP ("load", "apps/echo"));
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    char want[2048];
    snprintf (want, sizeof want, "{\"op\":\"load\",\"path\":\"%s/apps/echo\"}",
              strcmp (cwd, "/") ? cwd : "");
    CHECK_EQ_STR (st.last, want);
    CHECK_EQ_STR (r.out, "loaded echo 1.0.0 (digest 3f2a9c0b7d1e) granted: "
                         "chan.write:news; refused: none\n"
                         "loaded counter 1.0.0 (digest 998877665544) "
                         "granted: none; refused: net.fetch:*, fs.write:*\n");
    CHECK_EQ_STR (r.err, "");

    /*  Several paths go as paths, in the order given. */
    s_run (&r, APP ("load", "/srv/a/", "b", "--timeout", "2000"));
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    snprintf (want, sizeof want,
              "{\"op\":\"load\",\"paths\":[\"/srv/a\",\"%s/b\"]}",
              strcmp (cwd, "/") ? cwd : "");
    CHECK_EQ_STR (st.last, want);

    /*  Refused: the reason on stderr, exit 1, nothing on stdout. */
    s_run (&r, APP ("load", "/x/bad"));
    CHECK_EQ_INT (r.rc, CLI_APP_REFUSED);
    CHECK_EQ_STR (r.out, "");
    CHECK_EQ_STR (r.err, "aaax: app load: /x/bad/manifest.lua:3: name: "
                         "missing (every app needs a name, its system id)\n");

    s_run (&r, APP ("reload", "echo"));
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    CHECK_EQ_STR (st.last, "{\"op\":\"reload\",\"name\":\"echo\"}");
    CHECK (strncmp (r.out, "reloaded echo 1.0.0 (digest 3f2a9c0b7d1e)", 41)
           == 0);

    s_run (&r, APP ("unload", "echo"));
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    CHECK_EQ_STR (st.last, "{\"op\":\"unload\",\"name\":\"echo\"}");
    CHECK_EQ_STR (r.out, "unloaded echo\n");
    s_run (&r, APP ("unload", "busy"));
    CHECK_EQ_INT (r.rc, CLI_APP_REFUSED);
    CHECK_EQ_STR (r.err, "aaax: app unload: apps depend on it: toolrunner\n");

    s_run (&r, APP ("pin", "counter"));
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    CHECK_EQ_STR (st.last, "{\"op\":\"pin\",\"name\":\"counter\"}");
    CHECK_EQ_STR (r.out, "pinned counter digest 0123456789abcdef0123\n");
    s_run (&r, APP ("unpin", "counter"));
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    CHECK_EQ_STR (st.last, "{\"op\":\"unpin\",\"name\":\"counter\"}");
    CHECK_EQ_STR (r.out, "unpinned counter\n");

    s_run (&r, APP ("list"));
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    CHECK_EQ_STR (st.last, "{\"op\":\"list\"}");
    CHECK (strncmp (r.out, "NAME     VERSION  STATE", 23) == 0);
    CHECK (strstr (r.out, "  error: main.lua:4: boom?second line\n"));

    /*  --json: the modules array, one line. */
    s_run (&r, APP ("list", "--json"));
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    CHECK (r.out[0] == '[' && strstr (r.out, "\"name\":\"counter\"")
           && strstr (r.out, "]\n") && !strchr (r.out, '\n')[1]);

    /*  Usage. */
    int before = st.requests;
    s_run (&r, APP ("pin"));
    CHECK_EQ_INT (r.rc, CLI_APP_USAGE);
    CHECK (strstr (r.err, "aaax app pin: missing argument"));
    s_run (&r, APP ("unload", "a", "--json"));
    CHECK_EQ_INT (r.rc, CLI_APP_USAGE);
    s_run (&r, APP ("list", "--frob"));
    CHECK_EQ_INT (r.rc, CLI_APP_USAGE);
    CHECK (strstr (r.err, "unknown option '--frob'"));
    s_run (&r, APP ("frob"));
    CHECK_EQ_INT (r.rc, CLI_APP_USAGE);
    s_run (&r, (const char *const[]){ "app", NULL });
    CHECK_EQ_INT (r.rc, CLI_APP_USAGE);
    s_run (&r, APP ("list", "--timeout", "0"));
    CHECK_EQ_INT (r.rc, CLI_APP_USAGE);
    CHECK_EQ_INT (st.requests, before);

    /*  Help. */
    s_run (&r, (const char *const[]){ "app", "load", "--help", NULL });
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    CHECK (strncmp (r.out, "usage: aaax app load PATH", 25) == 0);
    CHECK (strstr (r.out, "Exit codes:"));
    s_run (&r, (const char *const[]){ "app", "--help", NULL });
    CHECK_EQ_INT (r.rc, CLI_APP_OK);
    CHECK (strstr (r.out, "app pin ") && strstr (r.out, "app run "));

    /*  No answer: exit 3. */
    st.silent = true;
    s_run (&r, APP ("list", "--timeout", "300"));
    CHECK_EQ_INT (r.rc, CLI_APP_FAILED);
    CHECK (strstr (r.err, "no answer from kernel.loader within 300 ms"));
    st.silent = false;

    zactor_destroy (&fake);

    /*  No kernel at all (and an unreadable token): exit 3. */
    s_run (&r,
           (const char *const[]){ "app", "list", "--connect", "inproc://nobody",
                                  "--timeout", "200", NULL });
    CHECK_EQ_INT (r.rc, CLI_APP_FAILED);
    s_run (&r, (const char *const[]){ "app", "list", "--data",
                                      "/nonexistent/aaax", NULL });
    CHECK_EQ_INT (r.rc, CLI_APP_FAILED);
    CHECK (strstr (r.err, "cannot read /nonexistent/aaax/session.token"));
}

int
main (void)
{
    zsys_init ();
    zsys_handler_set (NULL);
    test_abspath ();
    test_digest ();
    test_loaded_lines ();
    test_table ();
    test_runs ();
    TEST_DONE ();
}
