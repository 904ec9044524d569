/*  test_fs.c — unit tests of the kernel's file-system footprint
    (hal/hal_fs.c): the data directory, secret files, the instance lock, the
    ipc socket path and absolute paths. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aaax.h"
#include "hal_fs.h"
#include "testutil.h"

static char s_tmp[64];

static void
path_of (char *out, size_t size, const char *rel)
{
    snprintf (out, size, "%s/%s", s_tmp, rel);
}

static int
mode_of (const char *path)
{
    struct stat st;
    if (lstat (path, &st) != 0)
        return -1;
    return (int) (st.st_mode & 07777);
}

static void
test_prepare_dir (void)
{
    char err[512], p[256];
    //  creates missing parents, ends 0700
    path_of (p, sizeof p, "a/b/c");
    CHECK_EQ_INT (hal_fs_prepare_dir (p, err, sizeof err), 0);
    CHECK_EQ_INT (mode_of (p), 0700);
    //  again: fine
    CHECK_EQ_INT (hal_fs_prepare_dir (p, err, sizeof err), 0);
    //  a trailing slash
    char ps[260];
    snprintf (ps, sizeof ps, "%s/", p);
    CHECK_EQ_INT (hal_fs_prepare_dir (ps, err, sizeof err), 0);
    //  an existing 0755 directory is narrowed
    path_of (p, sizeof p, "wide");
    CHECK_EQ_INT (mkdir (p, 0755), 0);
    chmod (p, 0755);
    CHECK_EQ_INT (mode_of (p), 0755);
    CHECK_EQ_INT (hal_fs_prepare_dir (p, err, sizeof err), 0);
    CHECK_EQ_INT (mode_of (p), 0700);
    //  so is one with special bits
    chmod (p, 01777);
    CHECK_EQ_INT (hal_fs_prepare_dir (p, err, sizeof err), 0);
    CHECK_EQ_INT (mode_of (p), 0700);
    //  a narrower one is widened to exactly 0700
    chmod (p, 0500);
    CHECK_EQ_INT (hal_fs_prepare_dir (p, err, sizeof err), 0);
    CHECK_EQ_INT (mode_of (p), 0700);
    //  a file is refused
    path_of (p, sizeof p, "afile");
    int fd = open (p, O_CREAT | O_WRONLY, 0600);
    close (fd);
    err[0] = 0;
    CHECK_EQ_INT (hal_fs_prepare_dir (p, err, sizeof err), AAAX_EIO);
    CHECK (strstr (err, "not a directory") != NULL);
    //  a path through a file is refused
    path_of (p, sizeof p, "afile/sub");
    CHECK_EQ_INT (hal_fs_prepare_dir (p, err, sizeof err), AAAX_EIO);
    //  a symlink to a directory is refused (lstat)
    char target[256];
    path_of (target, sizeof target, "wide");
    path_of (p, sizeof p, "link-to-dir");
    CHECK_EQ_INT (symlink (target, p), 0);
    CHECK (hal_fs_prepare_dir (p, err, sizeof err) != 0);
    //  empty and too long
    CHECK_EQ_INT (hal_fs_prepare_dir ("", err, sizeof err), AAAX_EINVAL);
    char *longp = (char *) malloc (PATH_MAX + 10);
    memset (longp, 'x', PATH_MAX + 9);
    longp[0] = '/';
    longp[PATH_MAX + 9] = 0;
    CHECK_EQ_INT (hal_fs_prepare_dir (longp, err, sizeof err), AAAX_EINVAL);
    free (longp);
    //  owned by another user (only testable as root)
    if (geteuid () == 0) {
        path_of (p, sizeof p, "foreign");
        CHECK_EQ_INT (mkdir (p, 0700), 0);
        CHECK_EQ_INT (chown (p, 65534, 65534), 0);
        err[0] = 0;
        CHECK_EQ_INT (hal_fs_prepare_dir (p, err, sizeof err), AAAX_EPERM);
        CHECK (strstr (err, "another user") != NULL);
    }
}

static void
test_write_secret (void)
{
    char err[512], p[256];
    path_of (p, sizeof p, "secret");
    const char *tok = "0123456789abcdef0123456789abcdef";
    mode_t old = umask (0); // the mode must not depend on the umask
    CHECK_EQ_INT (hal_fs_write_secret (p, tok, strlen (tok), err, sizeof err),
                  0);
    umask (old);
    CHECK_EQ_INT (mode_of (p), 0600);
    char buf[128];
    int fd = open (p, O_RDONLY);
    ssize_t n = read (fd, buf, sizeof buf);
    close (fd);
    CHECK_EQ_INT (n, (ssize_t) strlen (tok));
    CHECK (n > 0 && memcmp (buf, tok, (size_t) n) == 0);
    //  replacing a wider, longer file: new content, 0600
    chmod (p, 0644);
    fd = open (p, O_WRONLY | O_APPEND);
    CHECK (write (fd, "more and more and more", 22) == 22);
    close (fd);
    CHECK_EQ_INT (hal_fs_write_secret (p, "short", 5, err, sizeof err), 0);
    CHECK_EQ_INT (mode_of (p), 0600);
    fd = open (p, O_RDONLY);
    n = read (fd, buf, sizeof buf);
    close (fd);
    CHECK_EQ_INT (n, 5);
    CHECK (memcmp (buf, "short", 5) == 0);
    //  binary content with NULs, and an empty file
    CHECK_EQ_INT (hal_fs_write_secret (p, "a\0b\0", 4, err, sizeof err), 0);
    struct stat st;
    CHECK (stat (p, &st) == 0 && st.st_size == 4);
    CHECK_EQ_INT (hal_fs_write_secret (p, "", 0, err, sizeof err), 0);
    CHECK (stat (p, &st) == 0 && st.st_size == 0);
    //  no temporary left behind
    char tmpname[300];
    snprintf (tmpname, sizeof tmpname, "%s.tmp%d", p, (int) getpid ());
    CHECK (access (tmpname, F_OK) != 0);
    //  a stale temporary of ours is replaced
    fd = open (tmpname, O_CREAT | O_WRONLY, 0666);
    close (fd);
    CHECK_EQ_INT (hal_fs_write_secret (p, "x", 1, err, sizeof err), 0);
    CHECK (access (tmpname, F_OK) != 0);
    //  a symlink at the final path is replaced, its target untouched
    char target[256], link[256];
    path_of (target, sizeof target, "target");
    path_of (link, sizeof link, "secret-link");
    fd = open (target, O_CREAT | O_WRONLY, 0644);
    CHECK (write (fd, "keep", 4) == 4);
    close (fd);
    CHECK_EQ_INT (symlink (target, link), 0);
    CHECK_EQ_INT (hal_fs_write_secret (link, "new", 3, err, sizeof err), 0);
    struct stat lst;
    CHECK (lstat (link, &lst) == 0 && S_ISREG (lst.st_mode));
    CHECK (stat (target, &st) == 0 && st.st_size == 4);
    //  a directory that does not exist
    path_of (p, sizeof p, "no/such/dir/secret");
    err[0] = 0;
    CHECK_EQ_INT (hal_fs_write_secret (p, "x", 1, err, sizeof err), AAAX_EIO);
    CHECK (err[0] != 0);
}

static void
test_lock (void)
{
    char err[512], p[256];
    path_of (p, sizeof p, "aaaxd.lock");
    int fd1 = -1, fd2 = -1;
    CHECK_EQ_INT (hal_fs_lock (p, &fd1, err, sizeof err), 0);
    CHECK (fd1 >= 0);
    CHECK_EQ_INT (mode_of (p), 0600);
    //  the file names this process
    char buf[32] = "";
    int rfd = open (p, O_RDONLY);
    ssize_t n = read (rfd, buf, sizeof buf - 1);
    close (rfd);
    char want[32];
    snprintf (want, sizeof want, "%d\n", (int) getpid ());
    CHECK (n > 0 && strcmp (buf, want) == 0);
    //  a second lock in the same process: flock is per open file
    //  description, so the second open + flock fails
    fd2 = 12345;
    err[0] = 0;
    CHECK_EQ_INT (hal_fs_lock (p, &fd2, err, sizeof err), AAAX_EEXIST);
    CHECK_EQ_INT (fd2, 12345); // untouched
    CHECK (strstr (err, "another aaaxd") != NULL);
    //  another process fails too
    pid_t pid = fork ();
    if (pid == 0) {
        int cfd = -1;
        char cerr[256];
        int rc = hal_fs_lock (p, &cfd, cerr, sizeof cerr);
        _exit (rc == AAAX_EEXIST ? 0 : 1);
    }
    int status = -1;
    waitpid (pid, &status, 0);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    //  the lock was not broken by the failed attempts, and the pid in the
    //  file was not truncated by them
    rfd = open (p, O_RDONLY);
    n = read (rfd, buf, sizeof buf - 1);
    close (rfd);
    buf[n > 0 ? n : 0] = 0;
    CHECK_EQ_STR (buf, want);
    //  released with its descriptor: then it can be taken again
    close (fd1);
    CHECK_EQ_INT (hal_fs_lock (p, &fd2, err, sizeof err), 0);
    close (fd2);
    //  a lock file in a directory that does not exist
    path_of (p, sizeof p, "nowhere/aaaxd.lock");
    CHECK_EQ_INT (hal_fs_lock (p, &fd2, err, sizeof err), AAAX_EIO);
    //  the lock file may not be a symlink
    char target[256];
    path_of (target, sizeof target, "lock-target");
    path_of (p, sizeof p, "lock-link");
    CHECK_EQ_INT (symlink (target, p), 0);
    CHECK_EQ_INT (hal_fs_lock (p, &fd2, err, sizeof err), AAAX_EIO);
    CHECK (access (target, F_OK) != 0);
}

static int
unix_socket_at (const char *path, bool listening)
{
    int fd = socket (AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr;
    memset (&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy (addr.sun_path, path);
    if (bind (fd, (struct sockaddr *) &addr, sizeof addr) != 0) {
        close (fd);
        return -1;
    }
    if (listening && listen (fd, 4) != 0) {
        close (fd);
        return -1;
    }
    return fd;
}

static void
test_ipc_prepare (void)
{
    char err[512], p[256];
    //  use a short directory: sun_path is 108 bytes
    path_of (p, sizeof p, "s.sock");
    CHECK (strlen (p) < 100);
    //  absent: fine
    CHECK_EQ_INT (hal_fs_ipc_prepare (p, err, sizeof err), 0);
    //  stale: bound, closed, never unlinked
    int fd = unix_socket_at (p, false);
    CHECK (fd >= 0);
    close (fd);
    struct stat st;
    CHECK (lstat (p, &st) == 0 && S_ISSOCK (st.st_mode));
    CHECK_EQ_INT (hal_fs_ipc_prepare (p, err, sizeof err), 0);
    CHECK (lstat (p, &st) != 0 && errno == ENOENT);
    //  bound but not listening (still open): nobody accepts -> stale
    fd = unix_socket_at (p, false);
    CHECK (fd >= 0);
    CHECK_EQ_INT (hal_fs_ipc_prepare (p, err, sizeof err), 0);
    CHECK (access (p, F_OK) != 0);
    close (fd);
    //  live: listening -> refused, left in place
    fd = unix_socket_at (p, true);
    CHECK (fd >= 0);
    err[0] = 0;
    CHECK_EQ_INT (hal_fs_ipc_prepare (p, err, sizeof err), AAAX_EEXIST);
    CHECK (strstr (err, "is live") != NULL);
    CHECK (lstat (p, &st) == 0 && S_ISSOCK (st.st_mode));
    close (fd);
    //  once its listener is gone it is stale
    CHECK_EQ_INT (hal_fs_ipc_prepare (p, err, sizeof err), 0);
    CHECK (access (p, F_OK) != 0);
    //  a symlink is removed (dangling or not), its target kept
    char target[256];
    path_of (target, sizeof target, "sock-target");
    int tfd = open (target, O_CREAT | O_WRONLY, 0600);
    close (tfd);
    CHECK_EQ_INT (symlink (target, p), 0);
    CHECK_EQ_INT (hal_fs_ipc_prepare (p, err, sizeof err), 0);
    CHECK (lstat (p, &st) != 0);
    CHECK (access (target, F_OK) == 0);
    CHECK_EQ_INT (symlink ("/nonexistent/x", p), 0);
    CHECK_EQ_INT (hal_fs_ipc_prepare (p, err, sizeof err), 0);
    CHECK (lstat (p, &st) != 0);
    //  a regular file: refused and kept
    int rfd = open (p, O_CREAT | O_WRONLY, 0600);
    close (rfd);
    err[0] = 0;
    CHECK_EQ_INT (hal_fs_ipc_prepare (p, err, sizeof err), AAAX_EEXIST);
    CHECK (strstr (err, "not a socket") != NULL);
    CHECK (access (p, F_OK) == 0);
    unlink (p);
    //  a directory: refused
    CHECK_EQ_INT (mkdir (p, 0700), 0);
    CHECK_EQ_INT (hal_fs_ipc_prepare (p, err, sizeof err), AAAX_EEXIST);
    rmdir (p);
    //  too long for sun_path (108 bytes with its NUL)
    struct sockaddr_un addr;
    char longp[sizeof addr.sun_path + 8];
    memset (longp, 'a', sizeof longp);
    longp[0] = '/';
    longp[sizeof addr.sun_path] = 0; // 108 characters: one too many
    err[0] = 0;
    CHECK_EQ_INT (hal_fs_ipc_prepare (longp, err, sizeof err), AAAX_EINVAL);
    CHECK (strstr (err, "longer than") != NULL);
    longp[sizeof addr.sun_path - 1] = 0; // 107: fits (and is absent)
    CHECK_EQ_INT (hal_fs_ipc_prepare (longp, err, sizeof err), 0);
}

static void
test_absolute (void)
{
    char out[PATH_MAX], cwd[PATH_MAX], want[PATH_MAX + 16];
    CHECK (getcwd (cwd, sizeof cwd) != NULL);
    CHECK_EQ_INT (hal_fs_absolute ("/abs/path", out, sizeof out), 0);
    CHECK_EQ_STR (out, "/abs/path");
    CHECK_EQ_INT (hal_fs_absolute ("rel", out, sizeof out), 0);
    snprintf (want, sizeof want, "%s/rel", cwd);
    CHECK_EQ_STR (out, want);
    CHECK_EQ_INT (hal_fs_absolute ("./rel/x", out, sizeof out), 0);
    snprintf (want, sizeof want, "%s/rel/x", cwd);
    CHECK_EQ_STR (out, want);
    CHECK_EQ_INT (hal_fs_absolute ("././rel", out, sizeof out), 0);
    snprintf (want, sizeof want, "%s/rel", cwd);
    CHECK_EQ_STR (out, want);
    CHECK_EQ_INT (hal_fs_absolute (".", out, sizeof out), 0);
    CHECK_EQ_STR (out, cwd);
    //  too small for the result
    char small[4];
    CHECK_EQ_INT (hal_fs_absolute ("/abcd", small, sizeof small), AAAX_EINVAL);
    CHECK_EQ_INT (hal_fs_absolute ("/ab", small, sizeof small), 0);
    CHECK_EQ_INT (hal_fs_absolute ("rel", small, sizeof small), AAAX_EINVAL);
}

static void
rm_tree (const char *dir)
{
    char cmd[128];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system (cmd) != 0)
        fprintf (stderr, "could not remove %s\n", dir);
}

int
main (void)
{
    snprintf (s_tmp, sizeof s_tmp, "/tmp/aaax-fs-XXXXXX");
    if (!mkdtemp (s_tmp)) {
        perror ("mkdtemp");
        return 1;
    }
    test_prepare_dir ();
    test_write_secret ();
    test_lock ();
    test_ipc_prepare ();
    test_absolute ();
    rm_tree (s_tmp);
    TEST_DONE ();
}
