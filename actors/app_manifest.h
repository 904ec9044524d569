/*  app_manifest.h — a Lua app's manifest: reads DIR/manifest.lua in the
    restricted data-file state (hal_luadata.h), validates every field with
    messages that name FILE:LINE, digests the app's files, and orders apps
    by their dependencies. An app is a directory of plain files holding at
    least manifest.lua and main.lua (docs/PROTOCOL.md, "Lua apps"). */

#ifndef APP_MANIFEST_H_INCLUDED
#define APP_MANIFEST_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "aaax.h"

#define APP_MANIFEST_MAX_LIST \
    256 /* permissions, channels, depends entries each */
#define APP_MANIFEST_MAX_SIZE (64u * 1024u) /* bytes of manifest.lua */
#define APP_MANIFEST_MAX_PERMISSION 512     /* bytes of one "ACTION:TARGET" */

/*  Limits of the app digest (app_manifest_digest). */
#define APP_MANIFEST_DIGEST_DEPTH 8 /* directories below the app's own */
#define APP_MANIFEST_DIGEST_FILES 1000
#define APP_MANIFEST_DIGEST_BYTES (64u * 1024u * 1024u)

typedef struct {
    uint32_t memory_kb;    /* 0 = not set (use the default) */
    uint64_t instructions; /* 0 = not set */
    uint32_t files_kb;     /* 0 = not set */
    uint32_t kv_kb;        /* 0 = not set */
} app_limits_t;

typedef struct {
    char name[AAAX_MAX_NAME + 1];
    char version[64];
    char **permissions; /* "ACTION:TARGET" strings, validated */
    size_t npermissions;
    char **channels;
    size_t nchannels;
    char **depends;
    size_t ndepends;
    app_limits_t limits;
    char dir[4096];  /* absolute path of the app directory (realpath) */
    char digest[65]; /* hex BLAKE2b-256 of the app's files */
} app_manifest_t;

/*  Reads DIR/manifest.lua, validates it, checks that DIR/main.lua is a
    regular file and computes the digest (app_manifest_digest). *m is
    overwritten: the manifest on success (caller finis it), zeros on error
    (fini is then a no-op), so it must not hold a manifest still to fini.
    Errors: "DIR/manifest.lua:LINE: FIELD: problem" when a scan of the
    source finds the line of the offending field or list element
    (app_manifest_line), else "DIR/manifest.lua: FIELD: problem"; Lua's
    syntax and runtime errors as Lua reports them ("DIR/manifest.lua:3:
    ..."); "DIR: no manifest.lua" / "DIR: no main.lua". Returns 0,
    AAAX_ENOENT (no such directory or file), AAAX_EINVAL (invalid; also an
    app file that is not a plain file), AAAX_ELIMIT (manifest larger than
    64 KiB, a list longer than 256, the digest's limits, Lua's memory or
    instruction cap), AAAX_ENOMEM, AAAX_EIO (a file changed or could not be
    read while digesting). */
int app_manifest_load (const char *dir, app_manifest_t *m, char *err,
                       size_t errlen);

/*  As app_manifest_load from the source text src (len bytes, need not be
    NUL-terminated), without a directory: no main.lua check, dir and digest
    left empty. chunkname names the text in messages (NULL:
    "manifest.lua"). */
int app_manifest_parse (const char *src, size_t len, const char *chunkname,
                        app_manifest_t *m, char *err, size_t errlen);

/*  Frees the lists and zeroes the manifest; safe on a zeroed or failed
    manifest, and twice. Accepts NULL. */
void app_manifest_fini (app_manifest_t *m);

/*  The line where a field of a manifest is written, found by a tokenizer
    scan of src (len bytes; no Lua runs; linear in len, never reads past
    it). The chunk must end with `return { ... }`. With key NULL, looks in
    that returned table constructor; with key set, in the constructor given
    as the value of its (last) element `key = { ... }`. There it finds the
    last element `sub = ...` (or `["sub"] = ...`) when sub is set, else
    positional element number index (1-based), and then sets *npos_p (may
    be NULL) to the number of positional elements of that constructor: a
    count that differs from the length Lua saw means an element expanded
    to several values or none, and the line cannot be trusted. Returns the
    1-based line, or 0 when the source does not tell (built by code, no
    such element, not a plain constructor). */
int app_manifest_line (const char *src, size_t len, const char *key,
                       const char *sub, size_t index, size_t *npos_p);

/*  Digest of an app directory: BLAKE2b-256 over every regular file below
    dir (recursive, at most 8 levels of directories below dir, 1000 files
    and 64 MiB in all; hidden files too), in byte-wise order of their
    relative paths ("lib/x.lua"), each contributing its relative path, a
    NUL, its length as 8 bytes little-endian and its bytes. Directories
    add nothing of their own (an empty one changes nothing). Writes 64 hex
    digits and a NUL into out on success. Returns 0, AAAX_ENOENT (no such
    directory), AAAX_EINVAL naming the path of a symbolic link or other
    non-regular file, AAAX_ELIMIT (too deep, too many files or bytes),
    AAAX_EIO (a file could not be read or changed while read),
    AAAX_ENOMEM. */
int app_manifest_digest (const char *dir, char out[65], char *err,
                         size_t errlen);

/*  Dependency order of n manifests loaded together, given the names of
    the apps already loaded (nloaded of them), which satisfy depends. A
    dependency among ms is ordered first even when also loaded. Writes the
    indexes of ms into order[0..n) so that each comes after those it
    depends on, keeping the given order where free (of the apps ready at
    each step, the first given goes first). Returns 0, AAAX_ENOMEM, or
    AAAX_EINVAL (order untouched) with: "app 'a' is given twice (DIR1,
    DIR2)"; "app 'a' depends on 'b', which is not loaded"; "dependency
    cycle: a -> b -> c -> a" (each depends on the next). */
int app_manifest_order (app_manifest_t *const *ms, size_t n,
                        const char *const *loaded, size_t nloaded,
                        size_t *order, char *err, size_t errlen);

#endif
