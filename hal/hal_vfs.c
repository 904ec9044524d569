/*  hal_vfs.c — a rooted file area per app (see hal_vfs.h).

    Every path is checked lexically first (relative, no "." or "..", no
    empty components, no control bytes) and then resolved relative to a
    descriptor of the root with openat2 (RESOLVE_BENEATH |
    RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), or, where the kernel lacks
    openat2, one component at a time with openat (O_NOFOLLOW | O_DIRECTORY)
    and a final O_NOFOLLOW open. Either way no symbolic link is followed,
    wherever it lies and whoever placed it, so nothing outside the root can
    be reached. Apps cannot create symbolic links or hard links (there is no
    call for either), so a link under the root was put there from outside;
    hard links would be counted once per name by the quota. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <czmq.h>

#include "aaax.h"
#include "hal_fs.h"
#include "hal_vfs.h"

#define RESOLVE_FLAGS \
    (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

struct _hal_vfs_t {
    char *root;
    int rootfd; /* O_PATH | O_DIRECTORY */
    uint64_t quota;
    _Atomic uint64_t usage;
    pthread_mutex_t lock; /* serialises writes and removals */
    bool openat2;         /* the kernel has it (probed at open) */
    _Atomic bool walk;    /* tests: resolve by walking anyway */
    uint64_t tmp_seq;     /* under lock */
};

typedef struct {
    char *name;
    bool is_dir;
    uint64_t size;
} s_entry_t;

/*  Checks one component (len bytes); the reason in err. */
static int
s_check_name (const char *name, size_t len, size_t index, char *err,
              size_t errlen)
{
    if (len == 0) {
        aaax_seterr (err, errlen, "empty component %zu in path", index);
        return AAAX_EINVAL;
    }
    if (len > HAL_VFS_NAME_MAX) {
        aaax_seterr (err, errlen, "component %zu is longer than %d bytes",
                     index, HAL_VFS_NAME_MAX);
        return AAAX_EINVAL;
    }
    if ((len == 1 && name[0] == '.')
        || (len == 2 && name[0] == '.' && name[1] == '.')) {
        aaax_seterr (err, errlen, "\".\" or \"..\" as component %zu", index);
        return AAAX_EINVAL;
    }
    size_t plen = sizeof HAL_VFS_TMP_PREFIX - 1;
    if (len >= plen && memcmp (name, HAL_VFS_TMP_PREFIX, plen) == 0) {
        aaax_seterr (err, errlen, "names starting with %s are reserved",
                     HAL_VFS_TMP_PREFIX);
        return AAAX_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) name[i];
        if (c == 0) {
            aaax_seterr (err, errlen, "NUL byte in path");
            return AAAX_EINVAL;
        }
        if (c < 0x20 || c == 0x7f) {
            aaax_seterr (err, errlen, "control byte 0x%02x in path", c);
            return AAAX_EINVAL;
        }
        if (c == '\\') {
            aaax_seterr (err, errlen, "backslash in path");
            return AAAX_EINVAL;
        }
        if (c == '/') {
            aaax_seterr (err, errlen, "'/' in a name");
            return AAAX_EINVAL;
        }
    }
    return 0;
}

/*  Checks a path of len bytes. A directory (dir) may end with one '/'. */
static int
s_check (const char *path, size_t len, bool dir, char *err, size_t errlen)
{
    if (!path || len == 0) {
        aaax_seterr (err, errlen, "empty path");
        return AAAX_EINVAL;
    }
    if (len > HAL_VFS_PATH_MAX) {
        aaax_seterr (err, errlen, "path longer than %d bytes",
                     HAL_VFS_PATH_MAX);
        return AAAX_EINVAL;
    }
    if (path[0] == '/') {
        aaax_seterr (err, errlen, "absolute path refused");
        return AAAX_EINVAL;
    }
    if (dir && path[len - 1] == '/')
        len--;
    else if (path[len - 1] == '/') {
        aaax_seterr (err, errlen, "trailing '/' in a file's path");
        return AAAX_EINVAL;
    }
    size_t start = 0, index = 1;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        int rc = s_check_name (path + start, i - start, index++, err, errlen);
        if (rc)
            return rc;
        start = i + 1;
    }
    return 0;
}

int
hal_vfs_check_path (const char *path, char *err, size_t errlen)
{
    return s_check (path, path ? strnlen (path, HAL_VFS_PATH_MAX + 1) : 0,
                    false, err, errlen);
}

int
hal_vfs_check_pathn (const char *path, size_t len, char *err, size_t errlen)
{
    if (path && memchr (path, 0, len)) {
        aaax_seterr (err, errlen, "NUL byte in path");
        return AAAX_EINVAL;
    }
    return s_check (path, len, false, err, errlen);
}

/*  Converts a failed system call on path into a code and a message.
    enotdir is the code for ENOTDIR (a file where a directory should be). */
static int
s_fail (int e, const char *path, int enotdir, char *err, size_t errlen)
{
    switch (e) {
    case ENOENT:
        aaax_seterr (err, errlen, "%s: no such file or directory", path);
        return AAAX_ENOENT;
    case ENOTDIR:
        aaax_seterr (err, errlen, "%s: a parent is not a directory", path);
        return enotdir;
    case ELOOP:
    case EXDEV:
        aaax_seterr (err, errlen,
                     "%s: refused, the path runs into a symbolic link "
                     "(links are never followed)",
                     path);
        return AAAX_EPERM;
    case EACCES:
    case EPERM:
        aaax_seterr (err, errlen, "%s: permission denied", path);
        return AAAX_EPERM;
    case ENAMETOOLONG:
        aaax_seterr (err, errlen, "%s: name too long", path);
        return AAAX_EINVAL;
    case ENOMEM:
        aaax_seterr (err, errlen, "%s: out of memory", path);
        return AAAX_ENOMEM;
    case ENOSPC:
    case EDQUOT:
        aaax_seterr (err, errlen, "%s: no space left on the device", path);
        return AAAX_EIO;
    default:
        aaax_seterr (err, errlen, "%s: %s", path, strerror (e));
        return AAAX_EIO;
    }
}

static bool
s_is_link (int dirfd, const char *name)
{
    struct stat st;
    return fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
           && S_ISLNK (st.st_mode);
}

/*  The fallback: opens rel beneath dirfd one component at a time, never
    following a symbolic link (ELOOP when one is met). */
static int
s_walk_open (int dirfd, const char *rel, int flags, mode_t mode)
{
    char buf[HAL_VFS_PATH_MAX + 1];
    size_t n = strlen (rel);
    if (n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy (buf, rel, n + 1);
    int cur = dirfd, fd = -1, e = 0;
    char *p = buf, *slash;
    while ((slash = strchr (p, '/'))) {
        *slash = 0;
        int next =
            openat (cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            e = errno == ENOTDIR && s_is_link (cur, p) ? ELOOP : errno;
            goto done;
        }
        if (cur != dirfd)
            close (cur);
        cur = next;
        p = slash + 1;
    }
    fd = openat (cur, p, flags | O_NOFOLLOW, mode);
    if (fd < 0)
        e = errno == ENOTDIR && s_is_link (cur, p) ? ELOOP : errno;
    else if (flags & O_PATH) {
        /*  O_PATH | O_NOFOLLOW gives the link itself: refuse it. */
        struct stat st;
        if (fstat (fd, &st) != 0)
            e = errno;
        else if (S_ISLNK (st.st_mode))
            e = ELOOP;
        if (e) {
            close (fd);
            fd = -1;
        }
    }
done:
    if (cur != dirfd)
        close (cur);
    if (fd < 0)
        errno = e;
    return fd;
}

/*  Opens rel (a checked path, or ".") beneath dirfd without following any
    symbolic link. Returns the descriptor, or -1 with errno (ELOOP or EXDEV
    for a link). */
static int
s_open_beneath (const hal_vfs_t *self, int dirfd, const char *rel, int flags,
                mode_t mode)
{
    /*  openat2 refuses O_PATH with flags other than O_DIRECTORY,
        O_NOFOLLOW and O_CLOEXEC. */
    flags |= O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY);
    if (!self->openat2 || atomic_load (&self->walk))
        return s_walk_open (dirfd, rel, flags, mode);
    /*  RESOLVE_NO_SYMLINKS covers the last component too; O_NOFOLLOW with
        O_PATH would return a link instead of refusing it. */
    struct open_how how = { .flags = (uint64_t) (flags & ~O_NOFOLLOW),
                            .mode = (flags & O_CREAT) ? mode : 0,
                            .resolve = RESOLVE_FLAGS };
    for (int tries = 0;; tries++) {
        long fd = syscall (SYS_openat2, dirfd, rel, &how, sizeof how);
        if (fd >= 0)
            return (int) fd;
        if ((errno != EAGAIN && errno != EINTR) || tries >= 16)
            return -1;
    }
}

/*  Opens directory rel (or "." for the root) for reading, creating missing
    components (0700) when create. Returns 0 with *fd_out or a code. */
static int
s_open_dir (hal_vfs_t *self, const char *rel, bool create, int *fd_out,
            const char *path, char *err, size_t errlen)
{
    int enotdir = create ? AAAX_EEXIST : AAAX_ENOENT;
    int fd = s_open_beneath (self, self->rootfd, rel,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    if (fd >= 0) {
        *fd_out = fd;
        return 0;
    }
    if (!create || errno != ENOENT)
        return s_fail (errno, path, enotdir, err, errlen);

    char buf[HAL_VFS_PATH_MAX + 1];
    snprintf (buf, sizeof buf, "%s", rel);
    int cur = s_open_beneath (self, self->rootfd, ".",
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    if (cur < 0)
        return s_fail (errno, path, enotdir, err, errlen);
    char *p = buf;
    while (p) {
        char *slash = strchr (p, '/');
        if (slash)
            *slash = 0;
        if (mkdirat (cur, p, 0700) != 0 && errno != EEXIST)
            goto err_close;
        int next = s_open_beneath (self, cur, p,
                                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
        if (next < 0)
            goto err_close;
        close (cur);
        cur = next;
        p = slash ? slash + 1 : NULL;
    }
    *fd_out = cur;
    return 0;

err_close:;
    int e = errno;
    close (cur);
    if (e == ENOTDIR) {
        aaax_seterr (err, errlen, "%s: a parent exists and is not a directory",
                     path);
        return AAAX_EEXIST;
    }
    return s_fail (e, path, enotdir, err, errlen);
}

/*  Splits a checked path (copied into buf) into its parent ("." for the
    root) and its last component. */
static void
s_split (const char *path, char *buf, size_t size, const char **parent,
         const char **leaf)
{
    snprintf (buf, size, "%s", path);
    char *slash = strrchr (buf, '/');
    if (slash) {
        *slash = 0;
        *parent = buf;
        *leaf = slash + 1;
    } else {
        *parent = ".";
        *leaf = buf;
    }
}

/*  Adds up the sizes of the regular files under rel (rlen bytes of a
    buffer of cap; "." for the root) and removes temporary files left by a
    crash. One descriptor open at a time, whatever the depth; never follows
    a link. */
static void
s_scan (hal_vfs_t *self, char *rel, size_t rlen, size_t cap, uint64_t *total)
{
    int fd = s_open_beneath (self, self->rootfd, rel,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    if (fd < 0) {
        zsys_warning ("vfs: cannot scan %s/%s: %s", self->root, rel,
                      strerror (errno));
        return;
    }
    int dfd = dup (fd);
    DIR *d = dfd >= 0 ? fdopendir (dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close (dfd);
        close (fd);
        return;
    }
    char **subdirs = NULL;
    size_t n = 0, room = 0;
    struct dirent *de;
    size_t plen = sizeof HAL_VFS_TMP_PREFIX - 1;
    while ((de = readdir (d))) {
        const char *name = de->d_name;
        if (!strcmp (name, ".") || !strcmp (name, ".."))
            continue;
        struct stat st;
        if (fstatat (fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISREG (st.st_mode)) {
            if (strncmp (name, HAL_VFS_TMP_PREFIX, plen) == 0
                && unlinkat (fd, name, 0) == 0)
                continue;
            *total += (uint64_t) st.st_size;
        } else if (S_ISDIR (st.st_mode)) {
            if (n == room) {
                size_t nroom = room ? room * 2 : 8;
                char **ns = (char **) realloc (subdirs, nroom * sizeof *ns);
                if (!ns)
                    break;
                subdirs = ns;
                room = nroom;
            }
            if ((subdirs[n] = strdup (name)))
                n++;
        }
    }
    closedir (d);
    close (fd);
    bool is_root = rlen == 1 && rel[0] == '.';
    size_t at = is_root ? 0 : rlen + 1;
    for (size_t i = 0; i < n; i++) {
        size_t nlen = strlen (subdirs[i]);
        if (at + nlen >= cap)
            zsys_warning ("vfs: %s: a directory under %s is too deep to "
                          "count",
                          self->root, rel);
        else {
            if (!is_root)
                rel[rlen] = '/';
            memcpy (rel + at, subdirs[i], nlen + 1);
            s_scan (self, rel, at + nlen, cap, total);
            if (is_root)
                strcpy (rel, ".");
            else
                rel[rlen] = 0;
        }
        free (subdirs[i]);
    }
    free (subdirs);
}

hal_vfs_t *
hal_vfs_open (const char *root, uint64_t quota_bytes, char *err, size_t errlen)
{
    if (!root || hal_fs_prepare_dir (root, err, errlen) != 0) {
        if (!root)
            aaax_seterr (err, errlen, "no root directory");
        return NULL;
    }
    hal_vfs_t *self = (hal_vfs_t *) calloc (1, sizeof *self);
    if (!self || !(self->root = strdup (root))) {
        free (self);
        aaax_seterr (err, errlen, "out of memory");
        return NULL;
    }
    self->rootfd = open (root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (self->rootfd < 0) {
        aaax_seterr (err, errlen, "cannot open %s: %s", root, strerror (errno));
        free (self->root);
        free (self);
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    self->quota = quota_bytes;

    struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                            .resolve = RESOLVE_FLAGS };
    long fd = syscall (SYS_openat2, self->rootfd, ".", &how, sizeof how);
    if (fd >= 0) {
        close ((int) fd);
        self->openat2 = true;
    } else
        zsys_debug ("vfs: no openat2 (%s), walking paths instead",
                    strerror (errno));

    char rel[PATH_MAX] = ".";
    uint64_t total = 0;
    s_scan (self, rel, 1, sizeof rel, &total);
    atomic_store (&self->usage, total);
    return self;
}

void
hal_vfs_destroy (hal_vfs_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    hal_vfs_t *self = *self_p;
    close (self->rootfd);
    pthread_mutex_destroy (&self->lock);
    free (self->root);
    free (self);
    *self_p = NULL;
}

int
hal_vfs_read (hal_vfs_t *self, const char *path, size_t max, char **buf_p,
              size_t *len_p, char *err, size_t errlen)
{
    int rc = hal_vfs_check_path (path, err, errlen);
    if (rc)
        return rc;
    /*  O_NONBLOCK: a FIFO put here from outside must not hang the caller;
        it is refused below like any non-regular file. */
    int fd = s_open_beneath (self, self->rootfd, path,
                             O_RDONLY | O_NONBLOCK | O_NOFOLLOW, 0);
    if (fd < 0)
        return s_fail (errno, path, AAAX_ENOENT, err, errlen);
    struct stat st;
    char *buf = NULL;
    if (fstat (fd, &st) != 0) {
        rc = s_fail (errno, path, AAAX_EIO, err, errlen);
        goto done;
    }
    if (!S_ISREG (st.st_mode)) {
        aaax_seterr (err, errlen, "%s: %s", path,
                     S_ISDIR (st.st_mode) ? "is a directory"
                                          : "not a regular file");
        rc = AAAX_EINVAL;
        goto done;
    }
    if ((uint64_t) st.st_size > max) {
        aaax_seterr (err, errlen, "%s: %llu bytes, more than %zu", path,
                     (unsigned long long) st.st_size, max);
        rc = AAAX_ETOOBIG;
        goto done;
    }
    /*  Read to the end (max + 1 bytes at most) rather than trust st_size:
        the file could have changed meanwhile. */
    if (max > SIZE_MAX / 2)
        max = SIZE_MAX / 2;
    size_t cap = (size_t) st.st_size + 1, len = 0;
    buf = (char *) malloc (cap + 1);
    while (buf) {
        if (len == cap) {
            if (len > max)
                break;
            size_t ncap = cap > max / 2 ? max + 1 : cap * 2;
            char *nbuf = (char *) realloc (buf, ncap + 1);
            if (!nbuf) {
                free (buf);
                buf = NULL;
                break;
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = read (fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = s_fail (errno, path, AAAX_EIO, err, errlen);
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t) n;
    }
    if (!buf) {
        aaax_seterr (err, errlen, "%s: out of memory", path);
        rc = AAAX_ENOMEM;
        goto done;
    }
    if (len > max) {
        aaax_seterr (err, errlen, "%s: more than %zu bytes", path, max);
        rc = AAAX_ETOOBIG;
        goto done;
    }
    buf[len] = 0;
    *buf_p = buf;
    *len_p = len;
    buf = NULL;
done:
    free (buf);
    close (fd);
    return rc;
}

/*  Writes all of data to fd. */
static int
s_write_all (int fd, const void *data, size_t len)
{
    const char *p = (const char *) data;
    while (len) {
        ssize_t n = write (fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

int
hal_vfs_write (hal_vfs_t *self, const char *path, const void *data, size_t len,
               char *err, size_t errlen)
{
    int rc = hal_vfs_check_path (path, err, errlen);
    if (rc)
        return rc;
    if (len && !data) {
        aaax_seterr (err, errlen, "no data");
        return AAAX_EINVAL;
    }
    char buf[HAL_VFS_PATH_MAX + 1];
    const char *parent, *leaf;
    s_split (path, buf, sizeof buf, &parent, &leaf);

    pthread_mutex_lock (&self->lock);
    int dfd;
    rc = s_open_dir (self, parent, true, &dfd, path, err, errlen);
    if (rc)
        goto err_unlock;
    struct stat st;
    uint64_t freed = 0;
    if (fstatat (dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK (st.st_mode)) {
            rc = s_fail (ELOOP, path, AAAX_EIO, err, errlen);
            goto err_close_dir;
        }
        if (!S_ISREG (st.st_mode)) {
            aaax_seterr (err, errlen, "%s: exists and is %s", path,
                         S_ISDIR (st.st_mode) ? "a directory"
                                              : "not a regular file");
            rc = AAAX_EEXIST;
            goto err_close_dir;
        }
        freed = (uint64_t) st.st_size;
    } else if (errno != ENOENT) {
        rc = s_fail (errno, path, AAAX_EIO, err, errlen);
        goto err_close_dir;
    }
    uint64_t usage = atomic_load (&self->usage);
    uint64_t after = (usage > freed ? usage - freed : 0) + len;
    if (self->quota && after > self->quota) {
        aaax_seterr (err, errlen,
                     "%s: quota of %llu bytes would be exceeded (%llu in use)",
                     path, (unsigned long long) self->quota,
                     (unsigned long long) usage);
        rc = AAAX_ELIMIT;
        goto err_close_dir;
    }

    char tmp[64];
    snprintf (tmp, sizeof tmp, "%s%d.%llu", HAL_VFS_TMP_PREFIX, (int) getpid (),
              (unsigned long long) ++self->tmp_seq);
    int fd = openat (
        dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = s_fail (errno, path, AAAX_EIO, err, errlen);
        goto err_close_dir;
    }
    if (s_write_all (fd, data, len) != 0 || fsync (fd) != 0) {
        rc = s_fail (errno, path, AAAX_EIO, err, errlen);
        close (fd);
        goto err_unlink_tmp;
    }
    if (close (fd) != 0) {
        rc = s_fail (errno, path, AAAX_EIO, err, errlen);
        goto err_unlink_tmp;
    }
    /*  renameat replaces leaf itself, never what a link there points to. */
    if (renameat (dfd, tmp, dfd, leaf) != 0) {
        int e = errno;
        if (e == EISDIR || e == ENOTEMPTY || e == EEXIST) {
            aaax_seterr (err, errlen, "%s: exists and is a directory", path);
            rc = AAAX_EEXIST;
        } else
            rc = s_fail (e, path, AAAX_EIO, err, errlen);
        goto err_unlink_tmp;
    }
    atomic_store (&self->usage, after);
    if (fsync (dfd) != 0)
        rc = s_fail (errno, path, AAAX_EIO, err, errlen);
    close (dfd);
    pthread_mutex_unlock (&self->lock);
    return rc;

err_unlink_tmp:
    unlinkat (dfd, tmp, 0);
err_close_dir:
    close (dfd);
err_unlock:
    pthread_mutex_unlock (&self->lock);
    return rc;
}

static int
s_entry_cmp (const void *a, const void *b)
{
    return strcmp (((const s_entry_t *) a)->name,
                   ((const s_entry_t *) b)->name);
}

int
hal_vfs_list (hal_vfs_t *self, const char *dir, hal_vfs_list_fn *fn, void *arg,
              char *err, size_t errlen)
{
    char rel[HAL_VFS_PATH_MAX + 1] = ".";
    const char *shown = "/";
    if (!dir) {
        aaax_seterr (err, errlen, "no directory");
        return AAAX_EINVAL;
    }
    if (*dir) {
        size_t len = strnlen (dir, HAL_VFS_PATH_MAX + 1);
        int rc = s_check (dir, len, true, err, errlen);
        if (rc)
            return rc;
        memcpy (rel, dir, len);
        rel[len] = 0;
        if (rel[len - 1] == '/')
            rel[len - 1] = 0;
        shown = rel;
    }
    /*  O_PATH first: whatever dir is, opening it has no side effect. */
    int pfd = s_open_beneath (self, self->rootfd, rel, O_PATH | O_NOFOLLOW, 0);
    if (pfd < 0)
        return s_fail (errno, shown, AAAX_ENOENT, err, errlen);
    struct stat st;
    if (fstat (pfd, &st) != 0 || !S_ISDIR (st.st_mode)) {
        close (pfd);
        aaax_seterr (err, errlen, "%s: not a directory", shown);
        return AAAX_EINVAL;
    }
    int fd = openat (pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close (pfd);
    DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close (fd);
        return s_fail (e, shown, AAAX_EIO, err, errlen);
    }

    s_entry_t *entries = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir (d))) {
        const char *name = de->d_name;
        size_t nlen = strlen (name);
        /*  Only what an app could have made and can address: no ".",
            "..", temporary files, or names it could not pass back. */
        if (s_check_name (name, nlen, 0, NULL, 0) != 0)
            continue;
        if (fstatat (dirfd (d), name, &st, AT_SYMLINK_NOFOLLOW) != 0
            || !(S_ISREG (st.st_mode) || S_ISDIR (st.st_mode)))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            s_entry_t *ne =
                (s_entry_t *) realloc (entries, ncap * sizeof *entries);
            if (!ne)
                goto err_nomem;
            entries = ne;
            cap = ncap;
        }
        entries[n].name = strdup (name);
        if (!entries[n].name)
            goto err_nomem;
        entries[n].is_dir = S_ISDIR (st.st_mode);
        entries[n].size = S_ISREG (st.st_mode) ? (uint64_t) st.st_size : 0;
        n++;
    }
    closedir (d);
    d = NULL;
    if (n)
        qsort (entries, n, sizeof *entries, s_entry_cmp);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn (arg, entries[i].name, entries[i].is_dir, entries[i].size);
    goto done;

err_nomem:
    aaax_seterr (err, errlen, "%s: out of memory", shown);
    rc = AAAX_ENOMEM;
done:
    if (d)
        closedir (d);
    for (size_t i = 0; i < n; i++)
        free (entries[i].name);
    free (entries);
    return rc;
}

int
hal_vfs_remove (hal_vfs_t *self, const char *path, char *err, size_t errlen)
{
    int rc = hal_vfs_check_path (path, err, errlen);
    if (rc)
        return rc;
    char buf[HAL_VFS_PATH_MAX + 1];
    const char *parent, *leaf;
    s_split (path, buf, sizeof buf, &parent, &leaf);

    pthread_mutex_lock (&self->lock);
    int dfd;
    rc = s_open_dir (self, parent, false, &dfd, path, err, errlen);
    if (rc)
        goto err_unlock;
    struct stat st;
    if (fstatat (dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) != 0)
        rc = s_fail (errno, path, AAAX_ENOENT, err, errlen);
    else if (S_ISLNK (st.st_mode))
        rc = s_fail (ELOOP, path, AAAX_EIO, err, errlen);
    else if (S_ISDIR (st.st_mode)) {
        if (unlinkat (dfd, leaf, AT_REMOVEDIR) != 0) {
            if (errno == ENOTEMPTY || errno == EEXIST) {
                aaax_seterr (err, errlen, "%s: directory not empty", path);
                rc = AAAX_EEXIST;
            } else
                rc = s_fail (errno, path, AAAX_EIO, err, errlen);
        }
    } else if (S_ISREG (st.st_mode)) {
        if (unlinkat (dfd, leaf, 0) != 0)
            rc = s_fail (errno, path, AAAX_EIO, err, errlen);
        else {
            uint64_t usage = atomic_load (&self->usage);
            uint64_t size = (uint64_t) st.st_size;
            atomic_store (&self->usage, usage > size ? usage - size : 0);
        }
    } else {
        aaax_seterr (err, errlen, "%s: not a file or a directory", path);
        rc = AAAX_EPERM;
    }
    if (rc == 0 && fsync (dfd) != 0)
        rc = s_fail (errno, path, AAAX_EIO, err, errlen);
    close (dfd);
err_unlock:
    pthread_mutex_unlock (&self->lock);
    return rc;
}

uint64_t
hal_vfs_usage (const hal_vfs_t *self)
{
    return atomic_load (&((hal_vfs_t *) self)->usage);
}

void
hal_vfs_force_walk (hal_vfs_t *self, bool walk)
{
    atomic_store (&self->walk, walk);
}

bool
hal_vfs_uses_openat2 (const hal_vfs_t *self)
{
    return self->openat2 && !atomic_load (&((hal_vfs_t *) self)->walk);
}
