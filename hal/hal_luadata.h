/*  hal_luadata.h — runs a Lua data file (configuration, policy, app manifest)
    in a restricted state: text chunks only; no io, os, package, require,
    debug, load, loadfile, dofile; a memory cap enforced by the allocator and
    an instruction cap enforced by a count hook. The chunk's first return value
    is left on the stack for the caller to read. */

#ifndef HAL_LUADATA_H_INCLUDED
#define HAL_LUADATA_H_INCLUDED

#include <stddef.h>
#include <lua.h>

#define HAL_LUADATA_MEM_MAX (16u * 1024u * 1024u) /* bytes per state */
#define HAL_LUADATA_INSTR_MAX 20000000L           /* VM instructions per run */

/*  Returns a new restricted state (caller owns; close with hal_luadata_destroy)
    or NULL on no memory. */
lua_State *hal_luadata_new (void);

/*  Closes the state; accepts NULL and sets *L_p to NULL. */
void hal_luadata_destroy (lua_State **L_p);

/*  Loads and runs the file at path as text (binary chunks are refused) and
    pushes its first return value (nil when it returned nothing). Returns 0,
    AAAX_ENOENT when the file cannot be read, AAAX_EINVAL on a syntax or runtime
    error, AAAX_ELIMIT when the memory or instruction cap was hit; on error
    err holds "path:line: message" and the stack is unchanged. */
int hal_luadata_run_file (lua_State *L, const char *path, char *err,
                          size_t errlen);

/*  Reads the whole file at path into a new NUL-terminated buffer (caller
    frees *buf_p; *len_p excludes the NUL). Returns 0, AAAX_ENOENT when it
    cannot be read (or is a directory), AAAX_ELIMIT when larger than
    HAL_LUADATA_MEM_MAX, AAAX_ENOMEM; err then holds "path: problem". */
int hal_luadata_read_file (const char *path, char **buf_p, size_t *len_p,
                           char *err, size_t errlen);

/*  As hal_luadata_run_file, from a string; chunkname names it in messages. */
int hal_luadata_run_string (lua_State *L, const char *src, size_t len,
                            const char *chunkname, char *err, size_t errlen);

#endif
