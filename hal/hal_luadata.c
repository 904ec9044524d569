/*  hal_luadata.c — a restricted Lua 5.4 state for data files (configuration,
    policy, app manifests): text chunks only, a safe subset of the standard
    libraries, a memory cap in the allocator, an instruction cap in a hook. */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <czmq.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "aaax.h"
#include "hal_luadata.h"

/*  Per-state bookkeeping; it is the allocator's ud, found again with
    lua_getallocf. Freed by hal_luadata_destroy after lua_close. */
typedef struct {
    size_t used;    /* bytes currently allocated by the state */
    size_t max;     /* cap on used */
    int mem_hit;    /* the allocator refused a request in this run */
    int instr_hit;  /* the count hook fired in this run */
    int instr_line; /* current line when it fired, 0 if unknown */
} s_budget_t;

static void *
s_alloc (void *ud, void *ptr, size_t osize, size_t nsize)
{
    s_budget_t *budget = (s_budget_t *) ud;
    if (ptr == NULL)
        osize = 0; /* osize then encodes the object type */
    if (nsize == 0) {
        free (ptr);
        budget->used -= osize;
        return NULL;
    }
    if (nsize > osize && nsize - osize > budget->max - budget->used) {
        budget->mem_hit = 1;
        return NULL; /* Lua raises a memory error */
    }
    void *block = realloc (ptr, nsize);
    if (block == NULL)
        return NULL;
    budget->used = budget->used - osize + nsize;
    return block;
}

static s_budget_t *
s_budget (lua_State *L)
{
    void *ud = NULL;
    lua_getallocf (L, &ud);
    return (s_budget_t *) ud;
}

static int
s_panic (lua_State *L)
{
    const char *msg = lua_type (L, -1) == LUA_TSTRING ? lua_tostring (L, -1)
                                                      : "(not a string)";
    zsys_error ("hal_luadata: unprotected Lua error: %s", msg);
    return 0; /* Lua then aborts */
}

/*  Count hook: fires once the budget of instructions is spent. From then on
    it fires at every instruction, so that a chunk catching the error with
    pcall cannot carry on (the error re-raises at its next instruction). */
static void
s_hook (lua_State *L, lua_Debug *ar)
{
    s_budget_t *budget = s_budget (L);
    if (!budget->instr_hit) {
        budget->instr_hit = 1;
        budget->instr_line = 0;
        if (lua_getinfo (L, "l", ar) && ar->currentline > 0)
            budget->instr_line = ar->currentline;
        lua_sethook (L, s_hook, LUA_MASKCOUNT, 1);
    }
    luaL_where (L, 0);
    lua_pushliteral (L, "instruction limit reached");
    lua_concat (L, 2);
    lua_error (L);
}

static void
s_arm_hook (lua_State *L)
{
    s_budget_t *budget = s_budget (L);
    budget->mem_hit = 0;
    budget->instr_hit = 0;
    budget->instr_line = 0;
    lua_sethook (L, s_hook, LUA_MASKCOUNT, (int) HAL_LUADATA_INSTR_MAX);
}

/*  string.rep with an empty string and separator loops n times in C without
    allocating; answer "" at once. Otherwise defer to the original. */
static int
s_string_rep (lua_State *L)
{
    size_t len, seplen = 0;
    luaL_checklstring (L, 1, &len);
    lua_Integer n = luaL_checkinteger (L, 2);
    luaL_optlstring (L, 3, "", &seplen);
    if (n <= 0 || len + seplen == 0) {
        lua_pushliteral (L, "");
        return 1;
    }
    lua_pushvalue (L, lua_upvalueindex (1));
    lua_insert (L, 1);
    lua_call (L, lua_gettop (L) - 1, 1);
    return 1;
}

/*  table.move loops in C over its range without running instructions, so
    the count hook cannot stop it: refuse ranges longer than the
    instruction cap before deferring to the original. */
static int
s_table_move (lua_State *L)
{
    lua_Integer f = luaL_checkinteger (L, 2);
    lua_Integer e = luaL_checkinteger (L, 3);
    if (e >= f
        && (lua_Unsigned) e - (lua_Unsigned) f
               >= (lua_Unsigned) HAL_LUADATA_INSTR_MAX)
        return luaL_error (L, "table.move: range too large");
    lua_pushvalue (L, lua_upvalueindex (1));
    lua_insert (L, 1);
    lua_call (L, lua_gettop (L) - 1, LUA_MULTRET);
    return lua_gettop (L);
}

/*  Finalizers run with debug hooks off (see GCTM in lgc.c), so a looping
    __gc would escape the instruction cap: refuse metatables with a __gc
    field. Lua only marks an object for finalization when its metatable
    has __gc at setmetatable time, so adding one later has no effect. */
static int
s_setmetatable (lua_State *L)
{
    if (lua_type (L, 2) == LUA_TTABLE) {
        lua_pushliteral (L, "__gc");
        int type = lua_rawget (L, 2);
        lua_pop (L, 1);
        if (type != LUA_TNIL)
            return luaL_error (L, "setmetatable: __gc is not allowed");
    }
    lua_pushvalue (L, lua_upvalueindex (1));
    lua_insert (L, 1);
    lua_call (L, lua_gettop (L) - 1, 1);
    return 1;
}

/*  Replaces lib.field (lib on top of the stack) by fn with the original as
    its upvalue. */
static void
s_wrap (lua_State *L, const char *field, lua_CFunction fn)
{
    lua_getfield (L, -1, field);
    lua_pushcclosure (L, fn, 1);
    lua_setfield (L, -2, field);
}

/*  Opens the allowed libraries; runs under lua_pcall. */
static int
s_open_libs (lua_State *L)
{
    static const char *const removed[] = { "dofile",  "loadfile", "load",
                                           "require", "print",    "warn",
                                           NULL };
    luaL_requiref (L, LUA_GNAME, luaopen_base, 1);
    for (int i = 0; removed[i]; i++) {
        lua_pushnil (L);
        lua_setfield (L, -2, removed[i]);
    }
    s_wrap (L, "setmetatable", s_setmetatable);
    lua_pop (L, 1);

    /*  string: no dump (bytecode), and no pattern matching (find, match,
        gmatch, gsub): a pattern like 'a*a*a*b' over a long subject runs for
        minutes inside one C call, where the instruction cap cannot reach.
        Data files do not need them. */
    luaL_requiref (L, LUA_STRLIBNAME, luaopen_string, 1);
    static const char *const unsafe[] = { "dump",   "find", "match",
                                          "gmatch", "gsub", NULL };
    for (int i = 0; unsafe[i]; i++) {
        lua_pushnil (L);
        lua_setfield (L, -2, unsafe[i]);
    }
    s_wrap (L, "rep", s_string_rep);
    lua_pop (L, 1);

    luaL_requiref (L, LUA_TABLIBNAME, luaopen_table, 1);
    s_wrap (L, "move", s_table_move);
    lua_pop (L, 1);

    luaL_requiref (L, LUA_MATHLIBNAME, luaopen_math, 1);
    lua_pop (L, 1);
    luaL_requiref (L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    lua_pop (L, 1);

    //  Hide the string metatable: getmetatable ("") returns false.
    lua_pushliteral (L, "");
    if (lua_getmetatable (L, -1)) {
        lua_pushboolean (L, 0);
        lua_setfield (L, -2, "__metatable");
        lua_pop (L, 1);
    }
    lua_pop (L, 1);

    return 0;
}

lua_State *
hal_luadata_new (void)
{
    s_budget_t *budget = (s_budget_t *) calloc (1, sizeof (s_budget_t));
    if (!budget)
        return NULL;
    budget->max = HAL_LUADATA_MEM_MAX;
    lua_State *L = lua_newstate (s_alloc, budget);
    if (!L) {
        free (budget);
        return NULL;
    }
    lua_atpanic (L, s_panic);
    s_arm_hook (L);
    lua_pushcfunction (L, s_open_libs);
    if (lua_pcall (L, 0, 0, 0) != LUA_OK) {
        zsys_error ("hal_luadata: cannot open libraries: %s",
                    lua_type (L, -1) == LUA_TSTRING ? lua_tostring (L, -1)
                                                    : "?");
        lua_close (L);
        free (budget);
        return NULL;
    }
    return L;
}

void
hal_luadata_destroy (lua_State **L_p)
{
    if (!L_p || !*L_p)
        return;
    lua_State *L = *L_p;
    s_budget_t *budget = s_budget (L);
    lua_close (L);
    free (budget);
    *L_p = NULL;
}

/*  Lua's short_src for a chunk name ("@path" or "=name"), as luaO_chunkid
    makes it: long names are cut to fit LUA_IDSIZE. */
static void
s_short_src (const char *chunkname, char *out)
{
    size_t srclen = strlen (chunkname);
    size_t bufflen = LUA_IDSIZE;
    if (*chunkname == '@' && srclen > bufflen) {
        memcpy (out, "...", 3);
        bufflen -= 3;
        memcpy (out + 3, chunkname + 1 + srclen - bufflen, bufflen);
    } else if (srclen <= bufflen)
        memcpy (out, chunkname + 1, srclen);
    else {
        memcpy (out, chunkname + 1, bufflen - 1);
        out[bufflen - 1] = '\0';
    }
}

/*  Message handler: makes the error a string with a position. */
static int
s_msgh (lua_State *L)
{
    const char *msg;
    if (lua_type (L, 1) == LUA_TSTRING)
        msg = lua_tostring (L, 1);
    else if (lua_type (L, 1) == LUA_TNUMBER) {
        lua_pushvalue (L, 1);
        msg = lua_tostring (L, -1);
    } else
        msg = lua_pushfstring (L, "(error object is a %s value)",
                               luaL_typename (L, 1));
    lua_Debug ar;
    for (int level = 1; lua_getstack (L, level, &ar); level++) {
        if (!lua_getinfo (L, "Sl", &ar) || ar.currentline <= 0)
            continue;
        size_t srclen = strlen (ar.short_src);
        if (strncmp (msg, ar.short_src, srclen) == 0 && msg[srclen] == ':')
            break; /* already has a position */
        lua_pushfstring (L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
        return 1;
    }
    lua_pushstring (L, msg);
    return 1;
}

/*  Writes "name<rest>" into err, where msg is "<short_src><rest>" as Lua
    wrote it; messages without that prefix get "name: " in front. */
static void
s_format_msg (char *err, size_t errlen, const char *name, const char *chunkname,
              const char *msg)
{
    char short_src[LUA_IDSIZE];
    s_short_src (chunkname, short_src);
    size_t srclen = strlen (short_src);
    if (strncmp (msg, short_src, srclen) == 0 && msg[srclen] == ':')
        aaax_seterr (err, errlen, "%s%s", name, msg + srclen);
    else
        aaax_seterr (err, errlen, "%s: %s", name, msg);
}

/*  Loads src as a text chunk and runs it; see hal_luadata_run_file. name is
    what messages call the chunk, chunkname what Lua is given. */
static int
s_run (lua_State *L, const char *src, size_t len, const char *name,
       const char *chunkname, char *err, size_t errlen)
{
    if (len > 0 && src[0] == LUA_SIGNATURE[0]) {
        aaax_seterr (err, errlen,
                     "%s: binary chunks are not allowed (text only)", name);
        return AAAX_EINVAL;
    }
    if (!lua_checkstack (L, 4)) {
        aaax_seterr (err, errlen, "%s: out of memory", name);
        return AAAX_ENOMEM;
    }
    int base = lua_gettop (L);
    s_budget_t *budget = s_budget (L);
    s_arm_hook (L);
    lua_pushcfunction (L, s_msgh);
    int status = luaL_loadbufferx (L, src, len, chunkname, "t");
    if (status == LUA_OK)
        status = lua_pcall (L, 0, 1, base + 1);

    int rc = 0;
    if (status == LUA_OK) {
        lua_remove (L, base + 1); /* the message handler */
        return 0;
    }
    if (budget->instr_hit) {
        if (budget->instr_line > 0)
            aaax_seterr (err, errlen, "%s:%d: instruction limit reached", name,
                         budget->instr_line);
        else
            aaax_seterr (err, errlen, "%s: instruction limit reached", name);
        rc = AAAX_ELIMIT;
    } else if (budget->mem_hit) {
        aaax_seterr (err, errlen, "%s: memory limit reached", name);
        rc = AAAX_ELIMIT;
    } else if (status == LUA_ERRMEM) {
        aaax_seterr (err, errlen, "%s: out of memory", name);
        rc = AAAX_ENOMEM;
    } else {
        const char *msg = lua_type (L, -1) == LUA_TSTRING
                              ? lua_tostring (L, -1)
                              : "error in error handling";
        s_format_msg (err, errlen, name, chunkname, msg);
        rc = AAAX_EINVAL;
    }
    lua_settop (L, base);
    return rc;
}

int
hal_luadata_run_string (lua_State *L, const char *src, size_t len,
                        const char *chunkname, char *err, size_t errlen)
{
    if (!L || (!src && len > 0)) {
        aaax_seterr (err, errlen, "invalid arguments");
        return AAAX_EINVAL;
    }
    const char *name = chunkname ? chunkname : "(string)";
    size_t namelen = strlen (name);
    char *luaname = (char *) malloc (namelen + 2);
    if (!luaname) {
        aaax_seterr (err, errlen, "%s: out of memory", name);
        return AAAX_ENOMEM;
    }
    luaname[0] = '=';
    memcpy (luaname + 1, name, namelen + 1);
    int rc = s_run (L, src ? src : "", len, name, luaname, err, errlen);
    free (luaname);
    return rc;
}

int
hal_luadata_read_file (const char *path, char **buf_p, size_t *len_p, char *err,
                       size_t errlen)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        aaax_seterr (err, errlen, "%s: cannot open: %s", path,
                     strerror (errno));
        return AAAX_ENOENT;
    }
    struct stat st;
    if (fstat (fd, &st) == 0 && S_ISDIR (st.st_mode)) {
        aaax_seterr (err, errlen, "%s: cannot open: %s", path,
                     strerror (EISDIR));
        close (fd);
        return AAAX_ENOENT;
    }
    //  Read at most one byte more than the cap, to tell "too large".
    size_t cap = 4096, len = 0;
    size_t most = (size_t) HAL_LUADATA_MEM_MAX + 1;
    char *buf = (char *) malloc (cap + 1); /* + the NUL */
    if (!buf)
        goto err_nomem;
    while (len < most) {
        if (len == cap) {
            size_t bigger_cap = cap * 2 < most ? cap * 2 : most;
            char *bigger = (char *) realloc (buf, bigger_cap + 1);
            if (!bigger)
                goto err_nomem;
            buf = bigger;
            cap = bigger_cap;
        }
        ssize_t got = read (fd, buf + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            aaax_seterr (err, errlen, "%s: cannot read: %s", path,
                         strerror (errno));
            free (buf);
            close (fd);
            return AAAX_ENOENT;
        }
        if (got == 0)
            break;
        len += (size_t) got;
    }
    if (len > HAL_LUADATA_MEM_MAX) {
        aaax_seterr (err, errlen, "%s: file too large (more than %u bytes)",
                     path, (unsigned) HAL_LUADATA_MEM_MAX);
        free (buf);
        close (fd);
        return AAAX_ELIMIT;
    }
    close (fd);
    buf[len] = '\0';
    /*  Callers may keep the text (an app's main.lua lives as long as the
        app): give back what the read did not use. */
    if (len < cap) {
        char *fit = (char *) realloc (buf, len + 1);
        if (fit)
            buf = fit;
    }
    *buf_p = buf;
    *len_p = len;
    return 0;

err_nomem:
    aaax_seterr (err, errlen, "%s: out of memory", path);
    free (buf);
    close (fd);
    return AAAX_ENOMEM;
}

int
hal_luadata_run_file (lua_State *L, const char *path, char *err, size_t errlen)
{
    if (!L || !path) {
        aaax_seterr (err, errlen, "invalid arguments");
        return AAAX_EINVAL;
    }
    char *buf = NULL;
    size_t len = 0;
    int rc = hal_luadata_read_file (path, &buf, &len, err, errlen);
    if (rc)
        return rc;
    size_t pathlen = strlen (path);
    char *luaname = (char *) malloc (pathlen + 2);
    if (!luaname) {
        free (buf);
        aaax_seterr (err, errlen, "%s: out of memory", path);
        return AAAX_ENOMEM;
    }
    luaname[0] = '@';
    memcpy (luaname + 1, path, pathlen + 1);
    rc = s_run (L, buf, len, path, luaname, err, errlen);
    free (luaname);
    free (buf);
    return rc;
}
