/*  test_vfs.c — unit tests of the per-app file areas (hal/hal_vfs.c): path
    checks, read / write / list / remove, symbolic links placed inside the
    root by someone else (with openat2 and with the component walk), a
    directory where a file is expected and the reverse, quotas at the
    boundary, atomic writes, and concurrent use. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aaax.h"
#include "hal_vfs.h"
#include "testutil.h"

static char s_tmp[64];

static void
path_of (char *out, size_t size, const char *rel)
{
    snprintf (out, size, "%s/%s", s_tmp, rel);
}

static int
s_rm_cb (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove (path);
}

/*  rm -rf that never follows a link. */
static void
rmrf (const char *dir)
{
    nftw (dir, s_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int
mode_of (const char *path)
{
    struct stat st;
    if (lstat (path, &st) != 0)
        return -1;
    return (int) (st.st_mode & 07777);
}

static bool
exists (const char *path)
{
    struct stat st;
    return lstat (path, &st) == 0;
}

/*  True when path in vfs holds exactly want (or is absent for NULL). */
static bool
holds (hal_vfs_t *vfs, const char *path, const char *want)
{
    char err[256], *buf = NULL;
    size_t len = 0;
    int rc = hal_vfs_read (vfs, path, 1 << 20, &buf, &len, err, sizeof err);
    bool ok;
    if (!want)
        ok = rc == AAAX_ENOENT;
    else
        ok = rc == 0 && len == strlen (want) && memcmp (buf, want, len) == 0
             && buf[len] == 0;
    if (!ok)
        fprintf (stderr, "read %s: rc %d (%s)\n", path, rc,
                 rc ? err : "content differs");
    if (rc == 0)
        free (buf);
    return ok;
}

static int
write_s (hal_vfs_t *vfs, const char *path, const char *data)
{
    char err[256];
    return hal_vfs_write (vfs, path, data, strlen (data), err, sizeof err);
}

static int
remove_s (hal_vfs_t *vfs, const char *path)
{
    char err[256];
    return hal_vfs_remove (vfs, path, err, sizeof err);
}

/*  A listing as one string: "name/" for a directory, "name:size" for a
    file, separated by spaces. */
typedef struct {
    char text[4096];
    int n, stop_at;
} s_listing_t;

static int
s_list_cb (void *arg, const char *name, bool is_dir, uint64_t size)
{
    s_listing_t *l = (s_listing_t *) arg;
    size_t at = strlen (l->text);
    if (is_dir)
        snprintf (l->text + at, sizeof l->text - at, "%s%s/", at ? " " : "",
                  name);
    else
        snprintf (l->text + at, sizeof l->text - at, "%s%s:%llu", at ? " " : "",
                  name, (unsigned long long) size);
    l->n++;
    return l->stop_at && l->n == l->stop_at ? 9 : 0;
}

static int
list_s (hal_vfs_t *vfs, const char *dir, s_listing_t *l)
{
    char err[256];
    memset (l, 0, sizeof *l);
    return hal_vfs_list (vfs, dir, s_list_cb, l, err, sizeof err);
}

/*  Counts the area's temporary files under dir, recursively. */
static int
count_tmp (const char *dir)
{
    DIR *d = opendir (dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir (d))) {
        if (!strcmp (e->d_name, ".") || !strcmp (e->d_name, ".."))
            continue;
        if (!strncmp (e->d_name, HAL_VFS_TMP_PREFIX,
                      strlen (HAL_VFS_TMP_PREFIX)))
            n++;
        char sub[2048];
        snprintf (sub, sizeof sub, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat (sub, &st) == 0 && S_ISDIR (st.st_mode))
            n += count_tmp (sub);
    }
    closedir (d);
    return n;
}

static void
test_check_path (void)
{
    char err[256];
    static const char *good[] = { "a",       "a/b",     "a/b/c.txt", "...",
                                  ".hidden", "a b/c d", "é/ü",       "a.",
                                  "..a",     "a..",     "-x",        NULL };
    for (int i = 0; good[i]; i++) {
        err[0] = 0;
        int rc = hal_vfs_check_path (good[i], err, sizeof err);
        if (rc)
            fprintf (stderr, "refused %s: %s\n", good[i], err);
        CHECK_EQ_INT (rc, 0);
    }
    static const char *bad[] = { "",
                                 "/",
                                 "/etc/passwd",
                                 "../x",
                                 "a/../../x",
                                 "..",
                                 ".",
                                 "./a",
                                 "a/.",
                                 "a/./b",
                                 "a/..",
                                 "a//b",
                                 "a/",
                                 "//a",
                                 "a\\b",
                                 "..\\x",
                                 "a\x01",
                                 "a\nb",
                                 "a\tb",
                                 "\x7f",
                                 "\x1b[31m",
                                 HAL_VFS_TMP_PREFIX "1",
                                 "d/" HAL_VFS_TMP_PREFIX "x",
                                 NULL };
    for (int i = 0; bad[i]; i++) {
        err[0] = 0;
        int rc = hal_vfs_check_path (bad[i], err, sizeof err);
        if (rc != AAAX_EINVAL)
            fprintf (stderr, "accepted bad path %d\n", i);
        CHECK_EQ_INT (rc, AAAX_EINVAL);
        CHECK (err[0] != 0);
    }
    CHECK_EQ_INT (hal_vfs_check_path (NULL, err, sizeof err), AAAX_EINVAL);
    //  NUL bytes in a string that came with a length
    CHECK_EQ_INT (hal_vfs_check_pathn ("a\0b", 3, err, sizeof err),
                  AAAX_EINVAL);
    CHECK (strstr (err, "NUL") != NULL);
    CHECK_EQ_INT (hal_vfs_check_pathn ("ab\0", 3, err, sizeof err),
                  AAAX_EINVAL);
    CHECK_EQ_INT (hal_vfs_check_pathn ("\0", 1, err, sizeof err), AAAX_EINVAL);
    CHECK_EQ_INT (hal_vfs_check_pathn ("a/b", 3, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_check_pathn ("a/bc", 3, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_check_pathn ("a/b", 0, err, sizeof err), AAAX_EINVAL);
    //  lengths: components 1..255, paths 1..1024
    char p[2048];
    memset (p, 'x', 255);
    p[255] = 0;
    CHECK_EQ_INT (hal_vfs_check_path (p, err, sizeof err), 0);
    p[255] = 'x';
    p[256] = 0;
    CHECK_EQ_INT (hal_vfs_check_path (p, err, sizeof err), AAAX_EINVAL);
    //  1024 bytes: three 255-byte names, a 251-byte one, a 4-byte one
    memset (p, 'y', 1024);
    p[255] = p[511] = p[767] = p[1019] = '/';
    p[1024] = 0;
    CHECK_EQ_INT (hal_vfs_check_path (p, err, sizeof err), 0);
    p[1024] = 'y';
    p[1025] = 0;
    CHECK_EQ_INT (hal_vfs_check_path (p, err, sizeof err), AAAX_EINVAL);
    memset (p, 'z', sizeof p - 1);
    p[sizeof p - 1] = 0;
    CHECK_EQ_INT (hal_vfs_check_path (p, err, sizeof err), AAAX_EINVAL);
}

static void
test_read_write (bool walk)
{
    char err[256], root[160], p[256];
    path_of (root, sizeof root, walk ? "rw-walk/apps/one" : "rw/apps/one");
    hal_vfs_t *vfs = hal_vfs_open (root, 0, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs) {
        fprintf (stderr, "open: %s\n", err);
        return;
    }
    hal_vfs_force_walk (vfs, walk);
    if (walk)
        CHECK (!hal_vfs_uses_openat2 (vfs));
    CHECK_EQ_INT (mode_of (root), 0700);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 0);
    CHECK (holds (vfs, "a.txt", NULL));
    CHECK_EQ_INT (write_s (vfs, "a.txt", "hello"), 0);
    CHECK (holds (vfs, "a.txt", "hello"));
    snprintf (p, sizeof p, "%s/a.txt", root);
    CHECK_EQ_INT (mode_of (p), 0600);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 5);
    //  overwrite
    CHECK_EQ_INT (write_s (vfs, "a.txt", "hi"), 0);
    CHECK (holds (vfs, "a.txt", "hi"));
    CHECK_EQ_INT (hal_vfs_usage (vfs), 2);
    //  an empty file
    CHECK_EQ_INT (hal_vfs_write (vfs, "empty", NULL, 0, err, sizeof err), 0);
    CHECK (holds (vfs, "empty", ""));
    //  parents are created, 0700
    CHECK_EQ_INT (write_s (vfs, "x/y/z.bin", "deep"), 0);
    CHECK (holds (vfs, "x/y/z.bin", "deep"));
    snprintf (p, sizeof p, "%s/x/y", root);
    CHECK_EQ_INT (mode_of (p), 0700);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 6);
    //  max
    char *buf = NULL;
    size_t len = 0;
    CHECK_EQ_INT (
        hal_vfs_read (vfs, "x/y/z.bin", 4, &buf, &len, err, sizeof err), 0);
    CHECK (len == 4 && memcmp (buf, "deep", 4) == 0);
    free (buf);
    buf = NULL;
    CHECK_EQ_INT (
        hal_vfs_read (vfs, "x/y/z.bin", SIZE_MAX, &buf, &len, err, sizeof err),
        0);
    CHECK (len == 4 && memcmp (buf, "deep", 4) == 0);
    free (buf);
    buf = NULL;
    CHECK_EQ_INT (
        hal_vfs_read (vfs, "x/y/z.bin", 3, &buf, &len, err, sizeof err),
        AAAX_ETOOBIG);
    CHECK (buf == NULL);
    CHECK_EQ_INT (
        hal_vfs_read (vfs, "x/y/nope", 3, &buf, &len, err, sizeof err),
        AAAX_ENOENT);
    CHECK (strstr (err, "x/y/nope") != NULL);
    CHECK_EQ_INT (hal_vfs_read (vfs, "nope/z", 3, &buf, &len, err, sizeof err),
                  AAAX_ENOENT);
    //  a larger file, read whole
    size_t big = 300000;
    char *data = (char *) malloc (big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char) (i * 13);
    CHECK_EQ_INT (hal_vfs_write (vfs, "x/big", data, big, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_read (vfs, "x/big", big, &buf, &len, err, sizeof err),
                  0);
    CHECK (len == big && memcmp (buf, data, big) == 0);
    free (buf);
    free (data);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 6 + big);
    //  remove: files, then an empty directory; a full one is refused
    CHECK_EQ_INT (remove_s (vfs, "x/big"), 0);
    CHECK_EQ_INT (remove_s (vfs, "x/big"), AAAX_ENOENT);
    CHECK_EQ_INT (remove_s (vfs, "x/y"), AAAX_EEXIST);
    CHECK_EQ_INT (remove_s (vfs, "x/y/z.bin"), 0);
    CHECK_EQ_INT (remove_s (vfs, "x/y"), 0);
    CHECK_EQ_INT (remove_s (vfs, "x"), 0);
    CHECK_EQ_INT (remove_s (vfs, "x"), AAAX_ENOENT);
    CHECK_EQ_INT (remove_s (vfs, "nope/a"), AAAX_ENOENT);
    CHECK_EQ_INT (remove_s (vfs, "a.txt/b"), AAAX_ENOENT);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 2);
    //  bad paths are refused by every call
    static const char *bad[] = { "../x", "a/../../x", "/etc/passwd",
                                 "a//b", "./a",       "a/",
                                 "",     NULL };
    for (int i = 0; bad[i]; i++) {
        CHECK_EQ_INT (write_s (vfs, bad[i], "x"), AAAX_EINVAL);
        CHECK_EQ_INT (
            hal_vfs_read (vfs, bad[i], 10, &buf, &len, err, sizeof err),
            AAAX_EINVAL);
        CHECK_EQ_INT (remove_s (vfs, bad[i]), AAAX_EINVAL);
    }
    s_listing_t l;
    CHECK_EQ_INT (list_s (vfs, "../", &l), AAAX_EINVAL);
    CHECK_EQ_INT (list_s (vfs, "/", &l), AAAX_EINVAL);
    CHECK_EQ_INT (list_s (vfs, ".", &l), AAAX_EINVAL);
    CHECK_EQ_INT (list_s (vfs, "a//", &l), AAAX_EINVAL);
    CHECK_EQ_INT (hal_vfs_list (vfs, NULL, s_list_cb, &l, err, sizeof err),
                  AAAX_EINVAL);
    //  nothing escaped: the parent of the root is as it was
    char parent[200];
    snprintf (parent, sizeof parent, "%s/..", root);
    char x[300];
    snprintf (x, sizeof x, "%s/x", parent);
    CHECK (!exists (x));
    hal_vfs_destroy (&vfs);
    CHECK (vfs == NULL);
    hal_vfs_destroy (&vfs);
    hal_vfs_destroy (NULL);
}

/*  A path of exactly 1024 bytes, five levels deep. */
static void
test_long_paths (void)
{
    char err[256], root[160];
    path_of (root, sizeof root, "long");
    hal_vfs_t *vfs = hal_vfs_open (root, 0, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs)
        return;
    char p[1100];
    memset (p, 'n', 1024);
    p[255] = p[511] = p[767] = p[1019] = '/';
    p[1024] = 0;
    CHECK_EQ_INT (write_s (vfs, p, "far"), 0);
    CHECK (holds (vfs, p, "far"));
    p[1020] = 0; //  the directory holding it
    s_listing_t l;
    CHECK_EQ_INT (list_s (vfs, p, &l), 0);
    CHECK_EQ_STR (l.text, "nnnn:3");
    p[1020] = 'n';
    p[1024] = 'n';
    p[1025] = 0;
    CHECK_EQ_INT (write_s (vfs, p, "too far"), AAAX_EINVAL);
    hal_vfs_destroy (&vfs);
}

static void
test_list (bool walk)
{
    char err[256], root[160];
    path_of (root, sizeof root, walk ? "list-walk" : "list");
    hal_vfs_t *vfs = hal_vfs_open (root, 0, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs)
        return;
    hal_vfs_force_walk (vfs, walk);
    s_listing_t l;
    CHECK_EQ_INT (list_s (vfs, "", &l), 0);
    CHECK_EQ_STR (l.text, "");
    CHECK_EQ_INT (l.n, 0);
    CHECK_EQ_INT (write_s (vfs, "b", "bb"), 0);
    CHECK_EQ_INT (write_s (vfs, "a", "a"), 0);
    CHECK_EQ_INT (write_s (vfs, "B", "BBB"), 0);
    CHECK_EQ_INT (write_s (vfs, "c/x", "x"), 0);
    CHECK_EQ_INT (write_s (vfs, "c/sub/y", "yy"), 0);
    CHECK_EQ_INT (write_s (vfs, "aa", ""), 0);
    CHECK_EQ_INT (list_s (vfs, "", &l), 0);
    CHECK_EQ_STR (l.text, "B:3 a:1 aa:0 b:2 c/");
    CHECK_EQ_INT (list_s (vfs, "c", &l), 0);
    CHECK_EQ_STR (l.text, "sub/ x:1");
    CHECK_EQ_INT (list_s (vfs, "c/", &l), 0);
    CHECK_EQ_STR (l.text, "sub/ x:1");
    CHECK_EQ_INT (list_s (vfs, "c/sub", &l), 0);
    CHECK_EQ_STR (l.text, "y:2");
    //  errors: absent, a file, a path through a file
    CHECK_EQ_INT (list_s (vfs, "nope", &l), AAAX_ENOENT);
    CHECK_EQ_INT (list_s (vfs, "a", &l), AAAX_EINVAL);
    CHECK_EQ_INT (list_s (vfs, "a/b", &l), AAAX_ENOENT);
    //  fn stops the walk
    memset (&l, 0, sizeof l);
    l.stop_at = 2;
    CHECK_EQ_INT (hal_vfs_list (vfs, "", s_list_cb, &l, err, sizeof err), 9);
    CHECK_EQ_INT (l.n, 2);
    //  entries an app did not make are left out: a temporary file, a FIFO,
    //  a name with a control byte
    char p[300];
    snprintf (p, sizeof p, "%s/%sstray", root, HAL_VFS_TMP_PREFIX);
    FILE *f = fopen (p, "w");
    if (f)
        fclose (f);
    snprintf (p, sizeof p, "%s/fifo", root);
    CHECK_EQ_INT (mkfifo (p, 0600), 0);
    snprintf (p, sizeof p, "%s/bad\x01name", root);
    f = fopen (p, "w");
    if (f)
        fclose (f);
    CHECK_EQ_INT (list_s (vfs, "", &l), 0);
    CHECK_EQ_STR (l.text, "B:3 a:1 aa:0 b:2 c/");
    //  a FIFO is refused at once, not waited on
    char *buf = NULL;
    size_t len;
    CHECK_EQ_INT (hal_vfs_read (vfs, "fifo", 10, &buf, &len, err, sizeof err),
                  AAAX_EINVAL);
    CHECK (strstr (err, "not a regular file") != NULL);
    CHECK_EQ_INT (write_s (vfs, "fifo", "x"), AAAX_EEXIST);
    CHECK_EQ_INT (remove_s (vfs, "fifo"), AAAX_EPERM);
    hal_vfs_destroy (&vfs);
}

/*  A directory where a file is expected, and a file where a directory is. */
static void
test_dir_vs_file (void)
{
    char err[256], root[160];
    path_of (root, sizeof root, "dirfile");
    hal_vfs_t *vfs = hal_vfs_open (root, 0, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs)
        return;
    CHECK_EQ_INT (write_s (vfs, "d/f", "in d"), 0);
    CHECK_EQ_INT (write_s (vfs, "d", "over a dir"), AAAX_EEXIST);
    char *buf = NULL;
    size_t len;
    CHECK_EQ_INT (hal_vfs_read (vfs, "d", 100, &buf, &len, err, sizeof err),
                  AAAX_EINVAL);
    CHECK (strstr (err, "is a directory") != NULL);
    CHECK (holds (vfs, "d/f", "in d"));
    //  a file in the way of a directory
    CHECK_EQ_INT (write_s (vfs, "f", "file"), 0);
    CHECK_EQ_INT (hal_vfs_write (vfs, "f/x", "x", 1, err, sizeof err),
                  AAAX_EEXIST);
    CHECK (strstr (err, "not a directory") != NULL);
    CHECK_EQ_INT (write_s (vfs, "f/x/y", "x"), AAAX_EEXIST);
    CHECK (holds (vfs, "f/x", NULL));
    CHECK (holds (vfs, "f", "file"));
    CHECK_EQ_INT (remove_s (vfs, "d"), AAAX_EEXIST);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 8);
    hal_vfs_destroy (&vfs);
}

/*  Symbolic links put inside the root by someone else: to /etc/passwd, to
    a directory outside, to a missing file outside, relative ones climbing
    out, and one to a directory inside. None is ever followed. */
static void
test_symlinks (bool walk)
{
    char err[256], root[160], out[160], p[300], q[300];
    path_of (root, sizeof root, walk ? "links-walk/root" : "links/root");
    path_of (out, sizeof out, walk ? "links-walk/outside" : "links/outside");
    hal_vfs_t *vfs = hal_vfs_open (root, 0, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs)
        return;
    hal_vfs_force_walk (vfs, walk);
    CHECK_EQ_INT (mkdir (out, 0700), 0);
    snprintf (p, sizeof p, "%s/secret", out);
    FILE *f = fopen (p, "w");
    if (f) {
        fputs ("secret", f);
        fclose (f);
    }
    CHECK_EQ_INT (write_s (vfs, "sub/file", "inside"), 0);
    struct {
        const char *name, *target;
    } links[] = { { "pw", "/etc/passwd" },
                  { "out", out },
                  { "decoy", "" }, //  outside/decoy, made below
                  { "dangling", "" },
                  { "up", "../outside" },
                  { "sub/up2", "../../outside/secret" },
                  { "in", "sub" } };
    char decoy[200], dangling[200];
    snprintf (decoy, sizeof decoy, "%s/decoy", out);
    snprintf (dangling, sizeof dangling, "%s/dangling", out);
    links[2].target = decoy;
    links[3].target = dangling;
    f = fopen (decoy, "w");
    if (f) {
        fputs ("decoy", f);
        fclose (f);
    }
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf (p, sizeof p, "%s/%s", root, links[i].name);
        CHECK_EQ_INT (symlink (links[i].target, p), 0);
    }
    struct stat pw0, pw1;
    CHECK_EQ_INT (stat ("/etc/passwd", &pw0), 0);

    char *buf = NULL;
    size_t len;
    static const char *through[] = { "pw",        "out/secret", "decoy",
                                     "up/secret", "sub/up2",    "in/file",
                                     "dangling",  NULL };
    for (int i = 0; through[i]; i++) {
        err[0] = 0;
        CHECK_EQ_INT (hal_vfs_read (vfs, through[i], 1 << 20, &buf, &len, err,
                                    sizeof err),
                      AAAX_EPERM);
        CHECK (strstr (err, "symbolic link") != NULL);
        if (strcmp (through[i], "dangling") != 0) {
            err[0] = 0;
            CHECK_EQ_INT (remove_s (vfs, through[i]), AAAX_EPERM);
        }
    }
    //  writes through a link: the decoy and the missing file first, then
    //  /etc/passwd (writes never open what is at the path, they rename
    //  over it, so even a bug could only replace the link)
    static const char *wthrough[] = { "decoy",      "dangling",  "out/new",
                                      "out/secret", "up/secret", "sub/up2",
                                      "in/new",     "in/file",   NULL };
    for (int i = 0; wthrough[i]; i++) {
        err[0] = 0;
        CHECK_EQ_INT (
            hal_vfs_write (vfs, wthrough[i], "PWNED", 5, err, sizeof err),
            AAAX_EPERM);
        CHECK (strstr (err, "symbolic link") != NULL);
    }
    snprintf (p, sizeof p, "%s/decoy", out);
    f = fopen (p, "r");
    char got[32] = "";
    if (f) {
        if (!fgets (got, sizeof got, f))
            got[0] = 0;
        fclose (f);
    }
    CHECK_EQ_STR (got, "decoy");
    CHECK (!exists (dangling));
    if (strcmp (got, "decoy") == 0)
        CHECK_EQ_INT (write_s (vfs, "pw", "PWNED"), AAAX_EPERM);
    CHECK_EQ_INT (stat ("/etc/passwd", &pw1), 0);
    CHECK (pw0.st_ino == pw1.st_ino && pw0.st_size == pw1.st_size
           && pw0.st_mtime == pw1.st_mtime);
    //  new directories through a link
    CHECK_EQ_INT (write_s (vfs, "out/newdir/x", "x"), AAAX_EPERM);
    CHECK_EQ_INT (write_s (vfs, "in/newdir/x", "x"), AAAX_EPERM);
    //  listing through a link
    s_listing_t l;
    static const char *ldirs[] = { "out", "up", "in", "in/", "pw", NULL };
    for (int i = 0; ldirs[i]; i++) {
        err[0] = 0;
        memset (&l, 0, sizeof l);
        CHECK_EQ_INT (
            hal_vfs_list (vfs, ldirs[i], s_list_cb, &l, err, sizeof err),
            AAAX_EPERM);
        CHECK (strstr (err, "symbolic link") != NULL);
        CHECK_EQ_INT (l.n, 0);
    }
    //  removing a link itself is refused too (the app did not make it)
    CHECK_EQ_INT (remove_s (vfs, "out"), AAAX_EPERM);
    CHECK_EQ_INT (remove_s (vfs, "dangling"), AAAX_EPERM);
    snprintf (p, sizeof p, "%s/out", root);
    CHECK (exists (p));
    //  links are not listed; the real entries are
    CHECK_EQ_INT (list_s (vfs, "", &l), 0);
    CHECK_EQ_STR (l.text, "sub/");
    CHECK_EQ_INT (list_s (vfs, "sub", &l), 0);
    CHECK_EQ_STR (l.text, "file:6");
    //  nothing outside changed
    int entries = 0;
    DIR *d = opendir (out);
    struct dirent *e;
    while (d && (e = readdir (d)))
        entries++;
    if (d)
        closedir (d);
    CHECK_EQ_INT (entries, 4); //  ".", "..", secret, decoy
    snprintf (q, sizeof q, "%s/secret", out);
    f = fopen (q, "r");
    got[0] = 0;
    if (f) {
        if (!fgets (got, sizeof got, f))
            got[0] = 0;
        fclose (f);
    }
    CHECK_EQ_STR (got, "secret");
    CHECK_EQ_INT (hal_vfs_usage (vfs), 6);
    hal_vfs_destroy (&vfs);
    //  reopening does not count what the links point to
    vfs = hal_vfs_open (root, 0, err, sizeof err);
    CHECK (vfs != NULL);
    if (vfs)
        CHECK_EQ_INT (hal_vfs_usage (vfs), 6);
    hal_vfs_destroy (&vfs);
    //  a root that is itself a link is refused
    path_of (p, sizeof p, walk ? "links-walk/rootlink" : "links/rootlink");
    CHECK_EQ_INT (symlink (out, p), 0);
    err[0] = 0;
    CHECK (hal_vfs_open (p, 0, err, sizeof err) == NULL);
    CHECK (err[0] != 0);
}

static void
test_quota (void)
{
    char err[256], root[160];
    path_of (root, sizeof root, "quota");
    hal_vfs_t *vfs = hal_vfs_open (root, 100, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs)
        return;
    char data[200];
    memset (data, 'q', sizeof data);
    CHECK_EQ_INT (hal_vfs_write (vfs, "a", data, 60, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_write (vfs, "d/b", data, 41, err, sizeof err),
                  AAAX_ELIMIT);
    CHECK (strstr (err, "quota") != NULL);
    CHECK_EQ_INT (hal_vfs_write (vfs, "d/b", data, 40, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 100);
    CHECK_EQ_INT (hal_vfs_write (vfs, "c", data, 1, err, sizeof err),
                  AAAX_ELIMIT);
    CHECK_EQ_INT (hal_vfs_write (vfs, "c", data, 0, err, sizeof err), 0);
    //  an overwrite counts the old size as freed
    CHECK_EQ_INT (hal_vfs_write (vfs, "a", data, 61, err, sizeof err),
                  AAAX_ELIMIT);
    CHECK (holds (vfs, "d/b", "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"));
    CHECK_EQ_INT (hal_vfs_write (vfs, "a", data, 60, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_write (vfs, "a", data, 10, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 50);
    CHECK_EQ_INT (hal_vfs_write (vfs, "a", data, 60, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 100);
    //  a removal frees
    CHECK_EQ_INT (remove_s (vfs, "d/b"), 0);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 60);
    CHECK_EQ_INT (hal_vfs_write (vfs, "e", data, 40, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_write (vfs, "f", data, 1, err, sizeof err),
                  AAAX_ELIMIT);
    //  no temporary file is left behind by refused writes
    CHECK_EQ_INT (count_tmp (root), 0);
    hal_vfs_destroy (&vfs);
    //  reopened: the usage is counted again from the files
    vfs = hal_vfs_open (root, 100, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs)
        return;
    CHECK_EQ_INT (hal_vfs_usage (vfs), 100);
    CHECK_EQ_INT (hal_vfs_write (vfs, "f", data, 1, err, sizeof err),
                  AAAX_ELIMIT);
    hal_vfs_destroy (&vfs);
    //  a quota below the usage: only writes that end within it pass;
    //  removals always do
    vfs = hal_vfs_open (root, 50, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs)
        return;
    CHECK_EQ_INT (hal_vfs_write (vfs, "a", data, 59, err, sizeof err),
                  AAAX_ELIMIT);
    CHECK_EQ_INT (remove_s (vfs, "e"), 0);
    CHECK_EQ_INT (hal_vfs_write (vfs, "a", data, 50, err, sizeof err), 0);
    CHECK_EQ_INT (hal_vfs_usage (vfs), 50);
    hal_vfs_destroy (&vfs);
}

static void
test_atomic (void)
{
    char err[256], root[160], p[300];
    path_of (root, sizeof root, "atomic");
    hal_vfs_t *vfs = hal_vfs_open (root, 0, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs)
        return;
    for (int i = 0; i < 20; i++) {
        char name[32], data[32];
        snprintf (name, sizeof name, "d%d/f%d", i % 3, i);
        snprintf (data, sizeof data, "data %d", i);
        CHECK_EQ_INT (write_s (vfs, name, data), 0);
        CHECK_EQ_INT (write_s (vfs, name, data), 0);
    }
    CHECK_EQ_INT (count_tmp (root), 0);
    uint64_t usage = hal_vfs_usage (vfs);
    hal_vfs_destroy (&vfs);
    //  temporary files left by a crash are removed at open, not counted
    snprintf (p, sizeof p, "%s/d1/%s123.4", root, HAL_VFS_TMP_PREFIX);
    FILE *f = fopen (p, "w");
    if (f) {
        fputs ("half a write", f);
        fclose (f);
    }
    CHECK_EQ_INT (count_tmp (root), 1);
    vfs = hal_vfs_open (root, 0, err, sizeof err);
    CHECK (vfs != NULL);
    if (!vfs)
        return;
    CHECK_EQ_INT (count_tmp (root), 0);
    CHECK_EQ_INT (hal_vfs_usage (vfs), usage);
    CHECK (holds (vfs, "d1/f1", "data 1"));
    hal_vfs_destroy (&vfs);
}

/*  Two areas used from two threads each, and four threads racing for the
    quota of one area. */
typedef struct {
    hal_vfs_t *vfs;
    int id, n, failures, written;
} s_worker_t;

static void *
s_worker (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    char err[256];
    for (int i = 0; i < w->n; i++) {
        char name[64], data[64];
        snprintf (name, sizeof name, "t%d/d%d/f%d", w->id, i % 5, i);
        int len = snprintf (data, sizeof data, "thread %d file %d", w->id, i);
        if (hal_vfs_write (w->vfs, name, data, (size_t) len, err, sizeof err)
            != 0) {
            w->failures++;
            continue;
        }
        char *buf = NULL;
        size_t blen = 0;
        if (hal_vfs_read (w->vfs, name, 100, &buf, &blen, err, sizeof err) != 0
            || blen != (size_t) len || memcmp (buf, data, blen) != 0)
            w->failures++;
        free (buf);
        if (i % 2 && hal_vfs_remove (w->vfs, name, err, sizeof err) != 0)
            w->failures++;
    }
    return NULL;
}

static void *
s_quota_worker (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    char err[256], data[10];
    memset (data, 'w', sizeof data);
    for (int i = 0; i < w->n; i++) {
        char name[32];
        snprintf (name, sizeof name, "q%d-%d", w->id, i);
        int rc =
            hal_vfs_write (w->vfs, name, data, sizeof data, err, sizeof err);
        if (rc == 0)
            w->written++;
        else if (rc != AAAX_ELIMIT)
            w->failures++;
    }
    return NULL;
}

static void
test_concurrent (void)
{
    char err[256], r1[160], r2[160];
    path_of (r1, sizeof r1, "conc/one");
    path_of (r2, sizeof r2, "conc/two");
    hal_vfs_t *v1 = hal_vfs_open (r1, 0, err, sizeof err);
    hal_vfs_t *v2 = hal_vfs_open (r2, 0, err, sizeof err);
    CHECK (v1 && v2);
    if (!v1 || !v2)
        return;
    hal_vfs_force_walk (v2, true);
    enum { N = 60 };
    s_worker_t w[4] = { { v1, 0, N, 0, 0 },
                        { v2, 0, N, 0, 0 },
                        { v1, 1, N, 0, 0 },
                        { v2, 1, N, 0, 0 } };
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT (pthread_create (&t[i], NULL, s_worker, &w[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join (t[i], NULL);
        CHECK_EQ_INT (w[i].failures, 0);
    }
    //  what is left: the even files of each thread
    uint64_t expect = 0;
    for (int id = 0; id < 2; id++)
        for (int i = 0; i < N; i += 2) {
            char data[64];
            expect += (uint64_t) snprintf (data, sizeof data,
                                           "thread %d file %d", id, i);
        }
    CHECK_EQ_INT (hal_vfs_usage (v1), expect);
    CHECK_EQ_INT (hal_vfs_usage (v2), expect);
    CHECK (holds (v1, "t1/d4/f4", "thread 1 file 4"));
    CHECK (holds (v2, "t0/d3/f58", "thread 0 file 58"));
    CHECK (holds (v2, "t0/d4/f59", NULL));
    hal_vfs_destroy (&v1);
    hal_vfs_destroy (&v2);
    //  reopened, the walk agrees
    v1 = hal_vfs_open (r1, 0, err, sizeof err);
    CHECK (v1 != NULL);
    if (v1)
        CHECK_EQ_INT (hal_vfs_usage (v1), expect);
    hal_vfs_destroy (&v1);

    //  four threads, 10-byte files, a 1000-byte quota: exactly 100 fit
    char rq[160];
    path_of (rq, sizeof rq, "conc/quota");
    hal_vfs_t *vq = hal_vfs_open (rq, 1000, err, sizeof err);
    CHECK (vq != NULL);
    if (!vq)
        return;
    for (int i = 0; i < 4; i++) {
        w[i] = (s_worker_t){ vq, i, 40, 0, 0 };
        CHECK_EQ_INT (pthread_create (&t[i], NULL, s_quota_worker, &w[i]), 0);
    }
    int written = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join (t[i], NULL);
        CHECK_EQ_INT (w[i].failures, 0);
        written += w[i].written;
    }
    CHECK_EQ_INT (written, 100);
    CHECK_EQ_INT (hal_vfs_usage (vq), 1000);
    s_listing_t l;
    CHECK_EQ_INT (list_s (vq, "", &l), 0);
    CHECK_EQ_INT (l.n, 100);
    CHECK_EQ_INT (count_tmp (rq), 0);
    hal_vfs_destroy (&vq);
}

int
main (void)
{
    snprintf (s_tmp, sizeof s_tmp, "/tmp/aaax-test-vfs-XXXXXX");
    if (!mkdtemp (s_tmp)) {
        perror ("mkdtemp");
        return 1;
    }
    char err[256], root[160];
    path_of (root, sizeof root, "probe");
    hal_vfs_t *vfs = hal_vfs_open (root, 0, err, sizeof err);
    CHECK (vfs != NULL);
    printf ("openat2: %s\n",
            vfs && hal_vfs_uses_openat2 (vfs) ? "yes" : "no (walking)");
    hal_vfs_destroy (&vfs);

    test_check_path ();
    for (int walk = 0; walk < 2; walk++) {
        test_read_write (walk);
        test_list (walk);
        test_symlinks (walk);
    }
    test_long_paths ();
    test_dir_vs_file ();
    test_quota ();
    test_atomic ();
    test_concurrent ();
    rmrf (s_tmp);
    TEST_DONE ();
}
