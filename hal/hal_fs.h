/*  hal_fs.h — the kernel's footprint on the host file system: the data
    directory (0700), secret files (0600, written atomically), the instance
    lock, and the ipc socket path (stale ones replaced, live ones refused). */

#ifndef HAL_FS_H_INCLUDED
#define HAL_FS_H_INCLUDED

#include <stddef.h>
#include <sys/types.h>

/*  Creates dir and missing parents; dir itself ends with mode 0700 (a wider
    mode on an existing directory is narrowed). Refuses a dir that is not a
    directory or is owned by another user. Returns 0 or AAAX_EIO / AAAX_EPERM
    with a message in err. */
int hal_fs_prepare_dir (const char *dir, char *err, size_t errlen);

/*  Writes data to path with the given mode through a temporary file, fsync
    and rename, so readers see the old or the new content, never a part.
    Returns 0 or AAAX_EIO / AAAX_EINVAL with a message in err. */
int hal_fs_write_atomic (const char *path, const void *data, size_t len,
                         mode_t mode, char *err, size_t errlen);

/*  hal_fs_write_atomic with mode 0600. */
int hal_fs_write_secret (const char *path, const void *data, size_t len,
                         char *err, size_t errlen);

/*  Takes an exclusive lock on path (created 0600) for this process's
    lifetime; *fd receives the descriptor. AAAX_EEXIST when another process
    holds it, AAAX_EIO otherwise. */
int hal_fs_lock (const char *path, int *fd, char *err, size_t errlen);

/*  Prepares a unix socket path for binding: absent is fine; a symlink is
    removed; a socket nobody listens on (connect refused) is stale and
    removed; a socket that accepts a connection belongs to a live process and
    gives AAAX_EEXIST; a path longer than sun_path allows gives AAAX_EINVAL;
    a path that exists and is not a socket gives AAAX_EEXIST too. */
int hal_fs_ipc_prepare (const char *path, char *err, size_t errlen);

/*  Makes path absolute (against the current directory) into out; returns 0
    or AAAX_EINVAL if it does not fit. */
int hal_fs_absolute (const char *path, char *out, size_t outlen);

#endif
