/*  hal_fs.c — data directory, secret files, instance lock, ipc socket path. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "aaax.h"
#include "hal_fs.h"

static int
s_mkdir_p (char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int rc = mkdir (path, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    if (mkdir (path, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

int
hal_fs_prepare_dir (const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (!*dir || strlen (dir) >= sizeof path) {
        snprintf (err, errlen, "data directory path is empty or too long");
        return AAAX_EINVAL;
    }
    strcpy (path, dir);
    if (s_mkdir_p (path) != 0) {
        snprintf (err, errlen, "cannot create %s: %s", dir, strerror (errno));
        return AAAX_EIO;
    }
    struct stat st;
    if (lstat (dir, &st) != 0 || !S_ISDIR (st.st_mode)) {
        snprintf (err, errlen, "%s is not a directory", dir);
        return AAAX_EIO;
    }
    if (st.st_uid != geteuid ()) {
        snprintf (err, errlen, "%s belongs to another user (uid %u)", dir,
                  (unsigned) st.st_uid);
        return AAAX_EPERM;
    }
    if ((st.st_mode & 07777) != 0700 && chmod (dir, 0700) != 0) {
        snprintf (err, errlen, "cannot set mode 0700 on %s: %s", dir,
                  strerror (errno));
        return AAAX_EIO;
    }
    return 0;
}

int
hal_fs_write_secret (const char *path, const void *data, size_t len, char *err,
                     size_t errlen)
{
    return hal_fs_write_atomic (path, data, len, 0600, err, errlen);
}

int
hal_fs_write_atomic (const char *path, const void *data, size_t len,
                     mode_t mode, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if ((size_t) snprintf (tmp, sizeof tmp, "%s.tmp%d", path, (int) getpid ())
        >= sizeof tmp) {
        snprintf (err, errlen, "path too long: %s", path);
        return AAAX_EINVAL;
    }
    unlink (tmp);
    int fd =
        open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        snprintf (err, errlen, "cannot create %s: %s", tmp, strerror (errno));
        return AAAX_EIO;
    }
    const char *p = (const char *) data;
    size_t left = len;
    while (left) {
        ssize_t n = write (fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto err_unlink;
        p += n;
        left -= (size_t) n;
    }
    if (fchmod (fd, mode) != 0 || fsync (fd) != 0)
        goto err_unlink;
    close (fd);
    if (rename (tmp, path) != 0) {
        snprintf (err, errlen, "cannot rename %s: %s", tmp, strerror (errno));
        unlink (tmp);
        return AAAX_EIO;
    }
    return 0;

err_unlink:
    snprintf (err, errlen, "cannot write %s: %s", tmp, strerror (errno));
    close (fd);
    unlink (tmp);
    return AAAX_EIO;
}

int
hal_fs_lock (const char *path, int *fd_out, char *err, size_t errlen)
{
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf (err, errlen, "cannot open %s: %s", path, strerror (errno));
        return AAAX_EIO;
    }
    if (flock (fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close (fd);
        if (e == EWOULDBLOCK) {
            snprintf (err, errlen,
                      "another aaaxd is running on this data "
                      "directory (%s is locked)",
                      path);
            return AAAX_EEXIST;
        }
        snprintf (err, errlen, "cannot lock %s: %s", path, strerror (e));
        return AAAX_EIO;
    }
    char pid[32];
    int n = snprintf (pid, sizeof pid, "%d\n", (int) getpid ());
    if (ftruncate (fd, 0) == 0 && write (fd, pid, (size_t) n) != n)
        snprintf (err, errlen, "cannot write pid to %s", path);
    *fd_out = fd;
    return 0;
}

int
hal_fs_ipc_prepare (const char *path, char *err, size_t errlen)
{
    struct sockaddr_un addr;
    if (strlen (path) >= sizeof addr.sun_path) {
        snprintf (err, errlen,
                  "ipc socket path is %zu bytes, longer than "
                  "the %zu a unix socket allows: %s (use a shorter --data)",
                  strlen (path), sizeof addr.sun_path - 1, path);
        return AAAX_EINVAL;
    }
    struct stat st;
    if (lstat (path, &st) != 0)
        return 0; /* absent */
    if (S_ISLNK (st.st_mode)) {
        if (unlink (path) != 0) {
            snprintf (err, errlen, "cannot remove symlink %s: %s", path,
                      strerror (errno));
            return AAAX_EIO;
        }
        return 0;
    }
    if (!S_ISSOCK (st.st_mode)) {
        snprintf (err, errlen, "%s exists and is not a socket", path);
        return AAAX_EEXIST;
    }
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf (err, errlen, "socket: %s", strerror (errno));
        return AAAX_EIO;
    }
    memset (&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy (addr.sun_path, path);
    int rc = connect (fd, (struct sockaddr *) &addr, sizeof addr);
    int e = errno;
    close (fd);
    if (rc == 0) {
        snprintf (err, errlen,
                  "%s is live: another aaaxd serves this data "
                  "directory",
                  path);
        return AAAX_EEXIST;
    }
    if (e != ECONNREFUSED && e != ENOENT) {
        snprintf (err, errlen, "cannot probe %s: %s", path, strerror (e));
        return AAAX_EIO;
    }
    if (unlink (path) != 0 && errno != ENOENT) {
        snprintf (err, errlen, "cannot remove stale socket %s: %s", path,
                  strerror (errno));
        return AAAX_EIO;
    }
    return 0;
}

int
hal_fs_absolute (const char *path, char *out, size_t outlen)
{
    if (path[0] == '/') {
        if (strlen (path) >= outlen)
            return AAAX_EINVAL;
        strcpy (out, path);
        return 0;
    }
    char cwd[PATH_MAX];
    if (!getcwd (cwd, sizeof cwd))
        return AAAX_EIO;
    const char *rel = path;
    while (rel[0] == '.' && rel[1] == '/')
        rel += 2;
    if (strcmp (rel, ".") == 0)
        rel = "";
    int n = snprintf (out, outlen, "%s%s%s", cwd, *rel ? "/" : "", rel);
    return n < 0 || (size_t) n >= outlen ? AAAX_EINVAL : 0;
}
