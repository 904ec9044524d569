/*  peer_common.c — see peer_common.h. */

#include "peer_common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t
peer_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
peer_sleep_us (long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000L };
    nanosleep (&ts, NULL);
}

int
peer_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind (fd, (struct sockaddr *) &a, sizeof a) == 0
        && getsockname (fd, (struct sockaddr *) &a, &len) == 0)
        port = ntohs (a.sin_port);
    close (fd);
    return port;
}

void
peer_cpu_model (char *out, size_t size)
{
    snprintf (out, size, "?");
    FILE *f = fopen ("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets (line, sizeof line, f))
        if (strncmp (line, "model name", 10) == 0) {
            char *p = strchr (line, ':');
            if (p) {
                p += strspn (p, ": \t");
                p[strcspn (p, "\n")] = 0;
                snprintf (out, size, "%s", p);
            }
            break;
        }
    fclose (f);
}

int
peer_server_prepare (peer_server_t *s, const char *name)
{
    memset (s, 0, sizeof *s);
    snprintf (s->name, sizeof s->name, "%s", name);
    const char *tmp = getenv ("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf (s->dir, sizeof s->dir, "%s/aaax-peer-%s-XXXXXX", tmp, name);
    if (!mkdtemp (s->dir)) {
        fprintf (stderr, "peers: mkdtemp %s: %s\n", s->dir, strerror (errno));
        s->dir[0] = 0;
        return -1;
    }
    snprintf (s->log, sizeof s->log, "%s/server.log", s->dir);
    s->port = peer_free_port ();
    return s->port > 0 ? 0 : -1;
}

int
peer_tcp_connect (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons ((uint16_t) port) };
    a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (connect (fd, (struct sockaddr *) &a, sizeof a) != 0) {
        close (fd);
        return -1;
    }
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void
s_log_tail (const peer_server_t *s)
{
    FILE *f = fopen (s->log, "r");
    if (!f)
        return;
    char buf[2048];
    fseek (f, -(long) sizeof buf + 1, SEEK_END);
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose (f);
    fprintf (stderr, "peers: %s log (%s), tail:\n%s\n", s->name, s->log, buf);
}

static int
s_rm (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    remove (path);
    return 0;
}

int
peer_server_spawn (peer_server_t *s, char *const argv[], int wait_ms)
{
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /*  The server dies with the bench, whatever happens to the bench. */
        prctl (PR_SET_PDEATHSIG, SIGTERM);
        if (getppid () != parent)
            _exit (127);
        int fd = open (s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2 (fd, 1);
            dup2 (fd, 2);
            close (fd);
        }
        int nul = open ("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2 (nul, 0);
        execvp (argv[0], argv);
        fprintf (stderr, "exec %s: %s\n", argv[0], strerror (errno));
        _exit (127);
    }
    s->pid = pid;
    int64_t deadline = peer_now_ns () + (int64_t) wait_ms * 1000000;
    while (peer_now_ns () < deadline) {
        int st;
        if (waitpid (pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            fprintf (stderr, "peers: %s exited at start (status %d)\n", s->name,
                     st);
            s_log_tail (s);
            return -1;
        }
        int fd = peer_tcp_connect (s->port);
        if (fd >= 0) {
            close (fd);
            return 0;
        }
        peer_sleep_us (10000);
    }
    fprintf (stderr, "peers: %s does not accept on port %d after %d ms\n",
             s->name, s->port, wait_ms);
    s_log_tail (s);
    peer_server_stop (s);
    return -1;
}

int
peer_server_stop (peer_server_t *s)
{
    int rc = 0;
    if (s->pid > 0) {
        kill (s->pid, SIGTERM);
        int64_t deadline = peer_now_ns () + 5000000000LL;
        int st = 0;
        pid_t w = 0;
        while ((w = waitpid (s->pid, &st, WNOHANG)) == 0
               && peer_now_ns () < deadline)
            peer_sleep_us (10000);
        if (w != s->pid) {
            fprintf (stderr,
                     "peers: %s (pid %d) ignored SIGTERM for 5 s, "
                     "SIGKILL\n",
                     s->name, (int) s->pid);
            kill (s->pid, SIGKILL);
            waitpid (s->pid, &st, 0);
            rc = -1;
        }
        s->pid = 0;
    }
    if (s->dir[0]) {
        nftw (s->dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
        s->dir[0] = 0;
    }
    return rc;
}

double
peer_proc_cpu_us (pid_t pid)
{
    char path[64], buf[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return 0;
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    buf[n] = 0;
    /*  Fields after the command name (which may hold spaces): state is
        field 3, utime field 14, stime field 15. */
    char *p = strrchr (buf, ')');
    if (!p)
        return 0;
    p += 2;
    unsigned long long ut = 0, st = 0;
    if (sscanf (p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                &st)
        != 2)
        return 0;
    return (double) (ut + st) * 1e6 / (double) sysconf (_SC_CLK_TCK);
}

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

void
peer_latency (int64_t *ns, size_t n, peer_result_t *r)
{
    if (n == 0)
        return;
    qsort (ns, n, sizeof *ns, s_cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double) ns[i];
    r->has_lat = true;
    r->p50_us = (double) ns[n / 2] / 1e3;
    r->p99_us = (double) ns[(size_t) ((double) n * 0.99)] / 1e3;
    r->p999_us = (double) ns[(size_t) ((double) n * 0.999)] / 1e3;
    r->mean_us = sum / (double) n / 1e3;
}

void
peer_result_init (peer_result_t *r, const char *system, const char *workload,
                  const peer_params_t *p)
{
    memset (r, 0, sizeof *r);
    snprintf (r->system, sizeof r->system, "%s", system);
    snprintf (r->workload, sizeof r->workload, "%s", workload);
    r->size = p->size;
    r->ok = true;
}

int
peer_fail (peer_result_t *r, const char *fmt, ...)
{
    if (r->ok) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (r->err, sizeof r->err, fmt, ap);
        va_end (ap);
    }
    r->ok = false;
    return -1;
}

void
peer_seq_put (char *buf, uint64_t seq)
{
    for (int i = 0; i < 8; i++)
        buf[i] = (char) (seq >> (8 * i));
}

uint64_t
peer_seq_get (const char *buf)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t) (unsigned char) buf[i] << (8 * i);
    return v;
}
