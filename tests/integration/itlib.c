/*  itlib.c — see itlib.h. */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aaax.h"
#include "hal_clock.h"
#include "itlib.h"

int
it_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset (&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind (fd, (struct sockaddr *) &a, sizeof a) == 0
        && getsockname (fd, (struct sockaddr *) &a, &len) == 0)
        port = ntohs (a.sin_port);
    if (fd >= 0)
        close (fd);
    return port;
}

void
it_kernel_init (it_kernel_t *k, const char *aaaxd, const char *config_text)
{
    memset (k, 0, sizeof *k);
    k->aaaxd = aaaxd;
    snprintf (k->dir, sizeof k->dir, "/tmp/aaax-it-XXXXXX");
    if (!mkdtemp (k->dir)) {
        perror ("mkdtemp");
        exit (2);
    }
    snprintf (k->data, sizeof k->data, "%s/data", k->dir);
    snprintf (k->endpoint, sizeof k->endpoint, "tcp://127.0.0.1:%d",
              it_free_port ());
    snprintf (k->tap, sizeof k->tap, "tcp://127.0.0.1:%d", it_free_port ());
    snprintf (k->ipc, sizeof k->ipc, "ipc://%s/aaax.sock", k->data);
    snprintf (k->log, sizeof k->log, "%s/aaaxd.log", k->dir);
    if (config_text) {
        snprintf (k->config, sizeof k->config, "%s/config.lua", k->dir);
        FILE *f = fopen (k->config, "w");
        if (!f) {
            perror ("config");
            exit (2);
        }
        fputs (config_text, f);
        fclose (f);
    }
}

static void
s_print_log (const it_kernel_t *k)
{
    FILE *f = fopen (k->log, "r");
    if (!f)
        return;
    char line[1024];
    fprintf (stderr, "---- aaaxd log ----\n");
    while (fgets (line, sizeof line, f))
        fputs (line, stderr);
    fclose (f);
}

bool
it_kernel_log_has_sanitizer_report (const it_kernel_t *k)
{
    FILE *f = fopen (k->log, "r");
    if (!f)
        return false;
    char line[2048];
    bool found = false;
    while (fgets (line, sizeof line, f))
        if (strstr (line, "AddressSanitizer") || strstr (line, "runtime error:")
            || strstr (line, "LeakSanitizer"))
            found = true;
    fclose (f);
    return found;
}

int
it_kernel_start (it_kernel_t *k, const char *const *extra)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = k->aaaxd;
    argv[n++] = "--data";
    argv[n++] = k->data;
    argv[n++] = "--bind";
    argv[n++] = k->endpoint;
    argv[n++] = "--tap";
    argv[n++] = k->tap;
    if (k->config[0]) {
        argv[n++] = "--config";
        argv[n++] = k->config;
    }
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open (k->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2 (fd, 1);
            dup2 (fd, 2);
            close (fd);
        }
        execv (k->aaaxd, (char *const *) argv);
        _exit (127);
    }
    k->pid = pid;
    int64_t deadline = hal_clock_mono_ms () + 10000;
    while (hal_clock_mono_ms () < deadline) {
        int status;
        if (waitpid (pid, &status, WNOHANG) == pid) {
            fprintf (stderr, "aaaxd exited at start (status %d)\n", status);
            s_print_log (k);
            k->pid = 0;
            return -1;
        }
        chan_client_t *c = chan_client_new (k->endpoint, 200);
        if (c) {
            chan_reply_t r;
            int rc = chan_client_call (c, "PING", NULL, &r);
            if (rc == 0)
                chan_reply_fini (&r);
            chan_client_destroy (&c);
            if (rc == 0)
                return 0;
        }
        usleep (20000);
    }
    fprintf (stderr, "aaaxd did not answer PING in time\n");
    s_print_log (k);
    return -1;
}

int
it_kernel_stop (it_kernel_t *k, int sig)
{
    if (k->pid <= 0)
        return -1;
    kill (k->pid, sig);
    int64_t deadline = hal_clock_mono_ms () + 20000;
    int status;
    while (hal_clock_mono_ms () < deadline) {
        pid_t r = waitpid (k->pid, &status, WNOHANG);
        if (r == k->pid) {
            k->pid = 0;
            if (WIFEXITED (status)) {
                if (WEXITSTATUS (status) != 0)
                    s_print_log (k);
                return WEXITSTATUS (status);
            }
            s_print_log (k);
            return -1;
        }
        usleep (10000);
    }
    kill (k->pid, SIGKILL);
    waitpid (k->pid, &status, 0);
    k->pid = 0;
    fprintf (stderr, "aaaxd did not stop within 20 s\n");
    s_print_log (k);
    return -1;
}

void
it_kernel_kill9 (it_kernel_t *k)
{
    if (k->pid <= 0)
        return;
    kill (k->pid, SIGKILL);
    int status;
    waitpid (k->pid, &status, 0);
    k->pid = 0;
}

void
it_kernel_cleanup (it_kernel_t *k)
{
    if (k->pid > 0)
        it_kernel_kill9 (k);
    char cmd[600];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", k->dir);
    if (system (cmd) != 0)
        fprintf (stderr, "could not remove %s\n", k->dir);
}

chan_client_t *
it_dock (const it_kernel_t *k, const char *system, const char *const *channels)
{
    chan_client_t *c = chan_client_new (k->endpoint, 5000);
    if (!c)
        return NULL;
    size_t n = 0;
    while (channels && channels[n])
        n++;
    chan_reply_t r;
    int rc = chan_client_hello (c, system, NULL, false,
                                (const char **) channels, n, &r);
    if (rc != 0) {
        char why[256] = "";
        if (rc != AAAX_ETIMEDOUT && rc != AAAX_EIO) {
            chan_reply_reason (&r, why, sizeof why);
            chan_reply_fini (&r);
        }
        fprintf (stderr, "HELLO %s failed: %s %s\n", system, aaax_strerror (rc),
                 why);
        chan_client_destroy (&c);
        return NULL;
    }
    chan_reply_fini (&r);
    return c;
}

chan_client_t *
it_dock_privileged (const it_kernel_t *k, const char *system)
{
    char token[65];
    if (chan_client_read_token (k->data, token) != 0)
        return NULL;
    chan_client_t *c = chan_client_new (k->ipc, 5000);
    if (!c)
        return NULL;
    chan_reply_t r;
    int rc = chan_client_hello (c, system, token, true, NULL, 0, &r);
    if (rc != AAAX_ETIMEDOUT && rc != AAAX_EIO)
        chan_reply_fini (&r);
    if (rc != 0)
        chan_client_destroy (&c);
    return c;
}

int
it_call (chan_client_t *c, const char *cmd, chan_body_t *body,
         chan_reply_t *out)
{
    chan_reply_t r;
    if (chan_client_call (c, cmd, body, &r) != 0)
        return -1;
    int code = chan_reply_code (&r);
    if (out)
        *out = r;
    else
        chan_reply_fini (&r);
    return code;
}

int
it_write_uint (chan_client_t *c, const char *chan, uint64_t value, char *id)
{
    chan_body_t b;
    chan_body_init (&b);
    chan_body_str (&b, "chan", chan);
    chan_body_uint (&b, "data", value);
    chan_reply_t r;
    int code = it_call (c, "WRITE", &b, &r);
    chan_body_fini (&b);
    if (code == 0 && id) {
        const char *p;
        size_t len;
        if (chan_obj_get_str (&r.body, "id", &p, &len) && len < 27) {
            memcpy (id, p, len);
            id[len] = 0;
        }
    }
    if (code >= 0)
        chan_reply_fini (&r);
    return code;
}
