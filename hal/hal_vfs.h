/*  hal_vfs.h — a rooted file area per app (aaax.fs.read/write/list/remove
    of Lua apps): relative paths only, resolution that never leaves the root
    whatever lies on disk (symbolic links are never followed), atomic
    writes, and a quota on the total size of the regular files.

    Thread safety: one hal_vfs_t may be used from several threads at once.
    Reads and listings run in parallel; writes and removals of one root are
    serialised (so that the quota is exact) and readers see a file's old or
    new content, never a part. */

#ifndef HAL_VFS_H_INCLUDED
#define HAL_VFS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HAL_VFS_PATH_MAX 1024 /* bytes of a path */
#define HAL_VFS_NAME_MAX 255  /* bytes of one component */

/*  Names starting with this are the area's own temporary files: refused
    in app paths, hidden from listings, removed at open. */
#define HAL_VFS_TMP_PREFIX ".aaax-tmp."

typedef struct _hal_vfs_t hal_vfs_t;

/*  Opens the area rooted at root (the app's directory; created 0700 with
    missing parents; refused when it is a symlink or another user's).
    quota_bytes bounds the total size of the regular files under root (0:
    no quota). The usage is computed now, by walking the tree (temporary
    files left by a crash are removed then); changes made under root by
    anything but this object are not seen until the next open, so keep one
    object per root (opening removes every temporary file, another object's
   too). Returns NULL and a message in err on failure. The caller owns it. */
hal_vfs_t *hal_vfs_open (const char *root, uint64_t quota_bytes, char *err,
                         size_t errlen);

/*  Closes the area; no call may be running. Accepts NULL. */
void hal_vfs_destroy (hal_vfs_t **self_p);

/*  Checks an app path: relative, '/'-separated, 1..HAL_VFS_PATH_MAX bytes,
    each component 1..HAL_VFS_NAME_MAX bytes. AAAX_EINVAL (and why in err)
    for an empty or absolute path, "." or ".." components, empty components
    ("a//b", a trailing "/"), control bytes (0x01..0x1f, 0x7f), a backslash,
    or a component starting with HAL_VFS_TMP_PREFIX. Every call below
    checks its path this way. */
int hal_vfs_check_path (const char *path, char *err, size_t errlen);

/*  The same for a path of len bytes that may hold NUL bytes (a Lua
    string): a NUL anywhere is refused. Use it before passing a string that
    came with a length to the calls below, which take C strings. */
int hal_vfs_check_pathn (const char *path, size_t len, char *err,
                         size_t errlen);

/*  Reads the regular file at path into a malloc'd buffer (*buf_p, *len_p;
    NUL-terminated for convenience, the caller frees). AAAX_ENOENT when
    absent, AAAX_ETOOBIG when larger than max bytes, AAAX_EINVAL for a
    directory or any other non-regular file, AAAX_EPERM when the path runs
    into a symbolic link, AAAX_EIO / AAAX_ENOMEM otherwise. */
int hal_vfs_read (hal_vfs_t *self, const char *path, size_t max, char **buf_p,
                  size_t *len_p, char *err, size_t errlen);

/*  Replaces (or creates) the file at path with len bytes of data,
    atomically: a temporary file in the same directory, fsync, renameat,
    fsync of the directory. Missing parent directories are created (0700);
    the file is 0600. AAAX_ELIMIT when the usage would exceed the quota (the
    replaced file's size counted as freed); AAAX_EEXIST when path or one of
    its parents exists as something else (a directory in place of the file,
    a file in place of a directory); AAAX_EPERM when it runs into a symbolic
    link; AAAX_EIO otherwise (full disk included). */
int hal_vfs_write (hal_vfs_t *self, const char *path, const void *data,
                   size_t len, char *err, size_t errlen);

/*  Calls fn for each regular file and directory in dir ("" for the root; a
    trailing "/" is accepted), sorted by name (bytewise); size is a file's
    size, 0 for a directory. Other entries (symlinks, sockets, ...) and the
    area's temporary files are left out. fn returning non-zero stops the
    walk and that value is returned; otherwise 0, AAAX_ENOENT, AAAX_EINVAL
    (not a directory), AAAX_EPERM (a symbolic link), AAAX_ENOMEM or
    AAAX_EIO. */
typedef int (hal_vfs_list_fn) (void *arg, const char *name, bool is_dir,
                               uint64_t size);
int hal_vfs_list (hal_vfs_t *self, const char *dir, hal_vfs_list_fn *fn,
                  void *arg, char *err, size_t errlen);

/*  Removes the file, or the empty directory, at path. AAAX_ENOENT when
    absent, AAAX_EEXIST for a directory that is not empty, AAAX_EPERM for a
    symbolic link or a path through one, AAAX_EIO otherwise. */
int hal_vfs_remove (hal_vfs_t *self, const char *path, char *err,
                    size_t errlen);

/*  Bytes of regular files under the root, as this object accounts them. */
uint64_t hal_vfs_usage (const hal_vfs_t *self);

/*  For tests: resolve by walking components with openat (the fallback for
    kernels without openat2) even where openat2 works. */
void hal_vfs_force_walk (hal_vfs_t *self, bool walk);

/*  True when paths are resolved with openat2 (probed at open). */
bool hal_vfs_uses_openat2 (const hal_vfs_t *self);

#endif
