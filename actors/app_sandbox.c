/*  app_sandbox.c — the Lua 5.4 sandbox for untrusted apps: one lua_State per
    app holding an allow-list of globals, a memory cap in its allocator and an
    instruction budget per run slice kept by a count hook.

    Design. The host runs each callback in a coroutine of its own
    (app_sandbox_thread), resumed by app_sandbox_resume; a slice lasts from a
    resume until the coroutine yields, returns or fails, and gets a fresh
    budget. Limits are per sandbox (the allocator's ud is the sandbox, found
    again with lua_getallocf), never per thread. When a limit is hit the
    sandbox is "killed" until the next slice: the count hook is set to fire at
    every instruction, and there it yields out of the callback coroutine when
    it can (a yield crosses pcall in 5.4, so the script cannot catch it) or
    raises an error when it cannot (inside a sort comparator, a gsub callback,
    a message handler, a coroutine the app made), again at each following
    instruction until control is back at a yieldable point of the callback.
    app_sandbox_resume then reports KILLED and the coroutine is never resumed.

    Hooks are per thread: lua_newthread copies the hook of its creator (5.4,
    lstate.c), so coroutines the app makes are counted too. A thread's
    instructions since its last hook call are not charged when it stops for
    good, so coroutine.create and coroutine.wrap give new threads a short
    interval (APP_SANDBOX_CO_INTERVAL) and charge that much up front.

    What C code does without running VM instructions escapes the hook, so the
    library functions that loop over a range given by the script charge one
    instruction per element (table.move, insert, remove, concat, unpack),
    string.rep checks its result against the memory left, finalizers (run with
    hooks off) cannot be installed, and collectgarbage is charged by heap
    size. An error raised by the hook is raised where hooks are off, so an
    xpcall message handler is skipped once killed, and a coroutine of the
    app's that died of it is never closed (both would run unbudgeted).

    Not guarded: Lua patterns (find, match, gmatch, gsub) backtrack in C,
    exponentially in the number of quantifiers, and no hook runs there:
    string.find (("a"):rep (300), ("a*"):rep (4) .. "b") takes minutes.
    Other C work done in one instruction is bounded by the memory cap but
    not charged (copying strings with .., format, rep, concat; sorting
    without a comparator; parsing in load; collecting), so a loop of such
    instructions does O(mem_limit) work per instruction. Host C functions
    are not budgeted. */

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <czmq.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "aaax.h"
#include "app_sandbox.h"

struct _app_sandbox_t {
    lua_State *main; /* the state; app code runs only in its coroutines */
    lua_State *co;   /* the callback coroutine being resumed, or NULL */
    size_t used;     /* bytes allocated by the state */
    size_t limit;    /* cap on used */
    uint64_t budget; /* instructions per slice */
    uint64_t spent;  /* instructions charged to this slice */
    int killed;      /* S_KILL_* until the next slice */
};

enum { S_KILL_NONE = 0, S_KILL_INSTR, S_KILL_MEM };

/*  The registry's thread table, weak-keyed, says what each thread is: the
    threads app_sandbox_thread made (the app may not resume, close or yield
    them; the host may not resume a killed one) and the app's own (which may
    not be closed once they died while the sandbox was killed). */
enum { S_HOST_LIVE = 1, S_HOST_KILLED, S_APP_LIVE, S_APP_DEAD };
static const char s_threads_key = 't'; /* its address is the registry key */

static app_sandbox_t *
s_self (lua_State *L)
{
    void *ud = NULL;
    lua_getallocf (L, &ud);
    return (app_sandbox_t *) ud;
}

static void s_hook (lua_State *L, lua_Debug *ar);

/*  Sets L's count hook: every instruction once killed, else at the next
    interval or when the budget runs out, whichever is first. Lua resets the
    count after each call of the hook by itself; lua_sethook walks the whole
    CallInfo list (settraps), which a deep recursion makes long, so it is
    called only when something changes. */
static void
s_arm (app_sandbox_t *self, lua_State *L)
{
    int count = 1;
    if (!self->killed) {
        uint64_t left = self->budget - self->spent; /* spent < budget here */
        count =
            L == self->co ? APP_SANDBOX_HOOK_INTERVAL : APP_SANDBOX_CO_INTERVAL;
        if (left < (uint64_t) count)
            count = left > 0 ? (int) left : 1;
    }
    if (lua_gethook (L) != s_hook || lua_gethookmask (L) != LUA_MASKCOUNT
        || lua_gethookcount (L) != count)
        lua_sethook (L, s_hook, LUA_MASKCOUNT, count);
}

/*  Marks the sandbox killed and makes the hook fire at the next instruction
    of L (the running thread, NULL when unknown) and of the callback
    coroutine. lua_sethook may be called at any time (even from a signal
    handler, says the manual), so this is safe inside the allocator. */
static void
s_kill (app_sandbox_t *self, lua_State *L, int why)
{
    if (self->killed)
        return;
    self->killed = why;
    if (L)
        lua_sethook (L, s_hook, LUA_MASKCOUNT, 1);
    if (self->co && self->co != L)
        lua_sethook (self->co, s_hook, LUA_MASKCOUNT, 1);
}

static void
s_killmsg (const app_sandbox_t *self, char *buf, size_t size)
{
    if (self->killed == S_KILL_MEM)
        aaax_seterr (buf, size, "memory limit of %zu KiB exceeded",
                     self->limit / 1024);
    else
        aaax_seterr (buf, size, "instruction budget of %" PRIu64 " exceeded",
                     self->budget);
}

static int
s_raise_killed (lua_State *L, const app_sandbox_t *self)
{
    char msg[96];
    s_killmsg (self, msg, sizeof msg);
    return luaL_error (L, "%s", msg);
}

/*  Charges n instructions of work done in C to the slice; returns nonzero
    when the sandbox is (now) killed, and the caller must raise at once
    instead of doing the work. */
static int
s_charge (lua_State *L, uint64_t n)
{
    app_sandbox_t *self = s_self (L);
    if (!self->killed) {
        self->spent =
            n > UINT64_MAX - self->spent ? UINT64_MAX : self->spent + n;
        if (self->spent < self->budget)
            return 0;
        s_kill (self, L, S_KILL_INSTR);
    }
    return 1;
}

/*  Elements in [lo, hi] (hi >= lo), saturated. */
static uint64_t
s_span (lua_Integer lo, lua_Integer hi)
{
    uint64_t n = (uint64_t) hi - (uint64_t) lo;
    return n == UINT64_MAX ? n : n + 1;
}

/*  Count hook. pcall cannot swallow a kill: yielding crosses it, and an
    error raised where no yield is possible is raised again at every
    following instruction (the hook stays at count 1). */
static void
s_hook (lua_State *L, lua_Debug *ar)
{
    (void) ar;
    app_sandbox_t *self = s_self (L);
    if (!self->killed) {
        if (!s_charge (L, (uint64_t) lua_gethookcount (L))) {
            s_arm (self, L);
            return;
        }
    }
    if (L == self->co && lua_isyieldable (L)) {
        lua_yield (L, 0); /* a hook must return right after yielding */
        return;
    }
    s_raise_killed (L, self);
}

/*  The allocator: refuses growth past the cap, which inside a slice kills
    the sandbox (a pcall around the allocation must not let the script try
    again). Once killed, APP_SANDBOX_MEM_MARGIN more bytes are allowed so that
    error messages and unwinding do not fail. Shrinking never fails, as Lua
    assumes. */
static void *
s_alloc (void *ud, void *ptr, size_t osize, size_t nsize)
{
    app_sandbox_t *self = (app_sandbox_t *) ud;
    if (ptr == NULL)
        osize = 0; /* osize then encodes the object type */
    if (nsize == 0) {
        free (ptr);
        self->used -= osize;
        return NULL;
    }
    if (nsize > osize) {
        size_t cap = self->limit + (self->killed ? APP_SANDBOX_MEM_MARGIN : 0);
        if (self->used > cap || nsize - osize > cap - self->used) {
            if (self->co)
                s_kill (self, NULL, S_KILL_MEM);
            return NULL; /* Lua collects, retries once, then raises */
        }
    }
    void *block = realloc (ptr, nsize);
    if (block == NULL)
        return nsize < osize ? ptr : NULL;
    self->used = self->used - osize + nsize;
    return block;
}

static int
s_panic (lua_State *L)
{
    const char *msg = lua_type (L, -1) == LUA_TSTRING ? lua_tostring (L, -1)
                                                      : "(not a string)";
    zsys_error ("app_sandbox: unprotected Lua error (host code must use "
                "app_sandbox_pcall): %s",
                msg);
    return 0; /* Lua then aborts */
}

/*  Writes the error object on top of L into err without running any of its
    metamethods (a __tostring would run unbudgeted, in the host). */
static void
s_errmsg (lua_State *L, char *err, size_t errlen)
{
    int type = lua_type (L, -1);
    if (type == LUA_TSTRING)
        aaax_seterr (err, errlen, "%s", lua_tostring (L, -1));
    else if (type == LUA_TNUMBER && lua_isinteger (L, -1))
        aaax_seterr (err, errlen, "%lld", (long long) lua_tointeger (L, -1));
    else if (type == LUA_TNUMBER)
        aaax_seterr (err, errlen, "%.14g", (double) lua_tonumber (L, -1));
    else
        aaax_seterr (err, errlen, "(error object is a %s value)",
                     lua_typename (L, type));
}

//  ---------------------------------------------------------------------
//  Wrapped library functions. Each keeps the original as its upvalue (a
//  light C function without upvalues of its own) and calls it in place.

static int
s_orig (lua_State *L)
{
    return lua_tocfunction (L, lua_upvalueindex (1)) (L);
}

/*  Finalizers run with hooks off (GCTM in lgc.c sets allowhook = 0), so a
    loop in __gc would escape the budget: refuse metatables with a __gc
    field. Lua marks an object for finalization only when its metatable has
    __gc at setmetatable time, so adding one later has no effect. */
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
    return s_orig (L);
}

/*  load (chunk [, chunkname [, mode [, env]]]) with the mode forced to "t":
    bytecode can crash the VM. Lua checks the mode on the first byte read,
    so reader functions are text-only too. */
static int
s_load (lua_State *L)
{
    lua_settop (L, lua_gettop (L) >= 4 ? 4 : 3); /* keep env only if given */
    lua_pushliteral (L, "t");
    lua_replace (L, 3);
    return s_orig (L);
}

/*  collectgarbage: "collect", "step" and "count" only (the others tune or
    stop the collector the cap relies on). A collection is work in C that
    the hook does not see: charge it by heap size. */
static int
s_collectgarbage (lua_State *L)
{
    static const char *const opts[] = { "collect", "step", "count", NULL };
    if (luaL_checkoption (L, 1, "collect", opts) != 2
        && s_charge (L, s_self (L)->used / 16 + 1))
        return s_raise_killed (L, s_self (L));
    return s_orig (L);
}

/*  string.rep: with an empty string and separator it loops n times in C
    without allocating (2^50 times if asked); answer "" at once. Otherwise
    refuse, as a memory kill, a result larger than the memory left, before
    anything is allocated. */
static int
s_string_rep (lua_State *L)
{
    size_t len, seplen;
    luaL_checklstring (L, 1, &len);
    lua_Integer n = luaL_checkinteger (L, 2);
    luaL_optlstring (L, 3, "", &seplen);
    if (n <= 0 || len + seplen == 0) {
        lua_pushliteral (L, "");
        return 1;
    }
    app_sandbox_t *self = s_self (L);
    size_t room = self->used < self->limit ? self->limit - self->used : 0;
    /* n * len + (n - 1) * seplen <= room, without overflow */
    if (len > room || (uint64_t) (n - 1) > (room - len) / (len + seplen)) {
        s_kill (self, L, S_KILL_MEM);
        return luaL_error (L,
                           "string.rep: result exceeds the memory limit of "
                           "%I KiB",
                           (lua_Integer) (self->limit / 1024));
    }
    return s_orig (L);
}

/*  table.move loops over its range in C (on an empty table without
    allocating): charge one instruction per element. */
static int
s_table_move (lua_State *L)
{
    lua_Integer f = luaL_checkinteger (L, 2);
    lua_Integer e = luaL_checkinteger (L, 3);
    if (e >= f && s_charge (L, s_span (f, e)))
        return s_raise_killed (L, s_self (L));
    return s_orig (L);
}

/*  table.concat: charged per element. The length is taken once and passed
    on explicitly, so that a __len cannot answer differently the second
    time. */
static int
s_table_concat (lua_State *L)
{
    lua_Integer i = luaL_optinteger (L, 3, 1);
    lua_Integer last =
        lua_isnoneornil (L, 4) ? luaL_len (L, 1) : luaL_checkinteger (L, 4);
    if (last >= i && s_charge (L, s_span (i, last)))
        return s_raise_killed (L, s_self (L));
    lua_settop (L, 2);
    lua_pushinteger (L, i);
    lua_pushinteger (L, last);
    return s_orig (L);
}

/*  table.unpack: at most APP_SANDBOX_UNPACK_MAX values (Lua itself allows
    up to the stack limit, a million slots, 16 MiB of stack). */
static int
s_table_unpack (lua_State *L)
{
    lua_Integer i = luaL_optinteger (L, 2, 1);
    lua_Integer e =
        lua_isnoneornil (L, 3) ? luaL_len (L, 1) : luaL_checkinteger (L, 3);
    if (i > e)
        return 0;
    uint64_t n = s_span (i, e);
    if (n > APP_SANDBOX_UNPACK_MAX)
        return luaL_error (L, "table.unpack: too many results (at most %d)",
                           APP_SANDBOX_UNPACK_MAX);
    if (s_charge (L, n))
        return s_raise_killed (L, s_self (L));
    lua_settop (L, 1);
    lua_pushinteger (L, i);
    lua_pushinteger (L, e);
    return s_orig (L);
}

/*  table.insert and table.remove shift elements up to #t in a C loop, and
    #t comes from __len: 2^40 would loop for hours. They are rewritten from
    ltablib.c (5.4) to take the length once and charge the shift. */
static int
s_has_metafield (lua_State *L, int mt, const char *name)
{
    lua_pushstring (L, name);
    int type = lua_rawget (L, mt);
    lua_pop (L, 1);
    return type != LUA_TNIL;
}

static lua_Integer
s_getn_rw (lua_State *L)
{
    if (lua_type (L, 1) != LUA_TTABLE) { /* or something that acts like one */
        int top = lua_gettop (L);
        int ok = lua_getmetatable (L, 1)
                 && s_has_metafield (L, top + 1, "__index")
                 && s_has_metafield (L, top + 1, "__newindex")
                 && s_has_metafield (L, top + 1, "__len");
        lua_settop (L, top);
        if (!ok)
            luaL_checktype (L, 1, LUA_TTABLE); /* raises */
    }
    return luaL_len (L, 1);
}

static int
s_table_insert (lua_State *L)
{
    lua_Integer e = (lua_Integer) ((lua_Unsigned) s_getn_rw (L) + 1u);
    lua_Integer pos = e; /* first empty element */
    switch (lua_gettop (L)) {
    case 2: break;
    case 3:
        pos = luaL_checkinteger (L, 2);
        luaL_argcheck (L, (lua_Unsigned) pos - 1u < (lua_Unsigned) e, 2,
                       "position out of bounds");
        if (e > pos && s_charge (L, s_span (pos, e - 1)))
            return s_raise_killed (L, s_self (L));
        for (lua_Integer i = e; i > pos; i--) {
            lua_geti (L, 1, i - 1);
            lua_seti (L, 1, i); /* t[i] = t[i - 1] */
        }
        break;
    default: return luaL_error (L, "wrong number of arguments to 'insert'");
    }
    lua_seti (L, 1, pos); /* t[pos] = v */
    return 0;
}

static int
s_table_remove (lua_State *L)
{
    lua_Integer size = s_getn_rw (L);
    lua_Integer pos = luaL_optinteger (L, 2, size);
    if (pos != size)
        luaL_argcheck (L, (lua_Unsigned) pos - 1u <= (lua_Unsigned) size, 2,
                       "position out of bounds");
    if (pos < size && s_charge (L, s_span (pos, size - 1)))
        return s_raise_killed (L, s_self (L));
    lua_geti (L, 1, pos); /* the result, t[pos] */
    for (; pos < size; pos++) {
        lua_geti (L, 1, pos + 1);
        lua_seti (L, 1, pos); /* t[pos] = t[pos + 1] */
    }
    lua_pushnil (L);
    lua_seti (L, 1, pos);
    return 1;
}

/*  The state of the thread at idx in the thread table (S_*), 0 if absent. */
static int
s_thread_state (lua_State *L, int idx)
{
    idx = lua_absindex (L, idx);
    lua_rawgetp (L, LUA_REGISTRYINDEX, &s_threads_key);
    lua_pushvalue (L, idx);
    lua_rawget (L, -2);
    int state = (int) lua_tointeger (L, -1);
    lua_pop (L, 2);
    return state;
}

/*  Sets it; a new entry allocates, changing an existing one does not. */
static void
s_set_thread_state (lua_State *L, int idx, int state)
{
    idx = lua_absindex (L, idx);
    lua_rawgetp (L, LUA_REGISTRYINDEX, &s_threads_key);
    lua_pushvalue (L, idx);
    lua_pushinteger (L, state);
    lua_rawset (L, -3);
    lua_pop (L, 1);
}

static int
s_is_host (lua_State *L, int idx)
{
    int state = s_thread_state (L, idx);
    return state == S_HOST_LIVE || state == S_HOST_KILLED;
}

/*  xpcall (f, msgh, ...): an error raised by the hook is raised inside the
    hook, where hooks are off, and Lua calls the message handler right there
    (luaG_errormsg): an app's handler would then run unbudgeted. Once
    killed, the handler is skipped and the message passes unchanged. */
static int
s_msgh (lua_State *L)
{
    if (s_self (L)->killed)
        return 1;
    lua_pushvalue (L, lua_upvalueindex (1));
    lua_insert (L, 1);
    lua_call (L, lua_gettop (L) - 1, 1);
    return 1;
}

static int
s_xpcall (lua_State *L)
{
    luaL_checktype (L, 2, LUA_TFUNCTION);
    lua_pushvalue (L, 2);
    lua_pushcclosure (L, s_msgh, 1);
    lua_replace (L, 2);
    return s_orig (L);
}

/*  coroutine.create / wrap: the new thread copied its creator's hook and
    count; give it the short interval and charge that interval now, as what
    it runs after its last hook call is never charged. It goes into the
    thread table now, so that marking it dead later allocates nothing. */
static int
s_adopt (lua_State *L)
{
    app_sandbox_t *self = s_self (L);
    if (s_charge (L, APP_SANDBOX_CO_INTERVAL))
        return s_raise_killed (L, self);
    s_set_thread_state (L, -1, S_APP_LIVE);
    s_arm (self, lua_tothread (L, -1));
    return 1;
}

static int
s_co_create (lua_State *L)
{
    s_orig (L); /* pushes the thread */
    return s_adopt (L);
}

/*  After a resume of the app's thread at idx: a thread that died while the
    sandbox was killed may have died of an error raised inside the hook, and
    then keeps hooks off (nothing restores its allowhook): closing it would
    run its __close handlers unbudgeted. It is marked, and never closed. */
static void
s_after_resume (lua_State *L, int idx)
{
    lua_State *co = lua_tothread (L, idx);
    if (s_self (L)->killed && co && lua_status (co) > LUA_YIELD)
        s_set_thread_state (L, idx, S_APP_DEAD);
}

/*  coroutine.resume / close: a callback coroutine belongs to the host (it
    may be waiting on the kernel, or killed); the app may not drive it. */
static int
s_co_resume (lua_State *L)
{
    if (lua_type (L, 1) == LUA_TTHREAD && s_is_host (L, 1))
        return luaL_error (L, "cannot resume or close a host coroutine");
    int n = s_orig (L);
    s_after_resume (L, 1);
    return n;
}

static int
s_co_close (lua_State *L)
{
    if (lua_type (L, 1) == LUA_TTHREAD) {
        int state = s_thread_state (L, 1);
        if (state == S_HOST_LIVE || state == S_HOST_KILLED)
            return luaL_error (L, "cannot resume or close a host coroutine");
        if (state == S_APP_DEAD) {
            lua_pushboolean (L, 0);
            lua_pushliteral (L, "cannot close a killed coroutine");
            return 2;
        }
    }
    return s_orig (L);
}

/*  The function coroutine.wrap returns (upvalues: the thread, the original
    coroutine.resume): luaB_auxwrap of lcorolib.c, except that a killed
    thread is not reset (see s_after_resume). */
static int
s_co_wrapped (lua_State *L)
{
    lua_pushvalue (L, lua_upvalueindex (1));
    lua_insert (L, 1);
    int n = lua_tocfunction (L, lua_upvalueindex (2)) (L);
    s_after_resume (L, 1);
    if (lua_toboolean (L, -n))
        return n - 1; /* the results, without resume's true */
    lua_State *co = lua_tothread (L, 1);
    int status = lua_status (co);
    if (status != LUA_OK && status != LUA_YIELD
        && s_thread_state (L, 1) != S_APP_DEAD) {
        status = lua_resetthread (co); /* close its tbc variables */
        lua_xmove (co, L, 1);
    }
    if (status != LUA_ERRMEM && lua_type (L, -1) == LUA_TSTRING) {
        luaL_where (L, 1);
        lua_insert (L, -2);
        lua_concat (L, 2);
    }
    return lua_error (L);
}

/*  coroutine.wrap (upvalues: the original create and resume). */
static int
s_co_wrap (lua_State *L)
{
    lua_tocfunction (L, lua_upvalueindex (1)) (L); /* pushes the thread */
    s_adopt (L);
    lua_pushvalue (L, lua_upvalueindex (2));
    lua_pushcclosure (L, s_co_wrapped, 2);
    return 1;
}

/*  coroutine.yield: a callback coroutine is the app's main thread; only the
    host yields it. */
static int
s_co_yield (lua_State *L)
{
    lua_pushthread (L);
    int host = s_is_host (L, -1);
    lua_pop (L, 1);
    if (host)
        return luaL_error (L, "attempt to yield from outside a coroutine");
    return s_orig (L);
}

static int
s_co_isyieldable (lua_State *L)
{
    if (lua_isnone (L, 1))
        lua_pushthread (L);
    else
        lua_pushvalue (L, 1);
    int host = lua_type (L, -1) == LUA_TTHREAD && s_is_host (L, -1);
    lua_pop (L, 1);
    if (host) {
        lua_pushboolean (L, 0);
        return 1;
    }
    return s_orig (L);
}

//  ---------------------------------------------------------------------
//  Opening the libraries

/*  Replaces lib.field (lib on top of the stack) by fn with the original as
    its upvalue. */
static void
s_wrap (lua_State *L, const char *field, lua_CFunction fn)
{
    lua_getfield (L, -1, field);
    lua_pushcclosure (L, fn, 1);
    lua_setfield (L, -2, field);
}

static int
s_listed (const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcmp (name, *list) == 0)
            return 1;
    return 0;
}

/*  Opens the allowed libraries straight into the globals (no
    package.loaded: smaller); runs under lua_pcall. */
static int
s_open (lua_State *L)
{
    static const char *const globals[] = {
        "assert",         "error",  "ipairs",       "next",         "pairs",
        "pcall",          "xpcall", "rawequal",     "rawget",       "rawlen",
        "rawset",         "select", "tonumber",     "tostring",     "type",
        "load",           "_G",     "setmetatable", "getmetatable", "_VERSION",
        "collectgarbage", NULL
    };
    lua_pushcfunction (L, luaopen_base);
    lua_call (L, 0, 1); /* the globals table */
    lua_pushnil (L);
    while (lua_next (L, -2)) {
        lua_pop (L, 1);
        if (lua_type (L, -1) != LUA_TSTRING
            || !s_listed (lua_tostring (L, -1), globals)) {
            lua_pushvalue (L, -1);
            lua_pushnil (L);
            lua_rawset (L, -4); /* clearing a field is fine during next */
        }
    }
    s_wrap (L, "setmetatable", s_setmetatable);
    s_wrap (L, "xpcall", s_xpcall);
    s_wrap (L, "load", s_load);
    s_wrap (L, "collectgarbage", s_collectgarbage);

    static const luaL_Reg libs[] = {
        { LUA_STRLIBNAME, luaopen_string },   { LUA_TABLIBNAME, luaopen_table },
        { LUA_MATHLIBNAME, luaopen_math },    { LUA_UTF8LIBNAME, luaopen_utf8 },
        { LUA_COLIBNAME, luaopen_coroutine }, { NULL, NULL }
    };
    for (const luaL_Reg *lib = libs; lib->name; lib++) {
        lua_pushcfunction (L, lib->func);
        lua_call (L, 0, 1);
        lua_pushvalue (L, -1);
        lua_setfield (L, -3, lib->name);
        if (lib->func == luaopen_string) {
            lua_pushnil (L); /* bytecode, which load refuses anyway */
            lua_setfield (L, -2, "dump");
            s_wrap (L, "rep", s_string_rep);
        } else if (lib->func == luaopen_table) {
            s_wrap (L, "move", s_table_move);
            s_wrap (L, "concat", s_table_concat);
            s_wrap (L, "unpack", s_table_unpack);
            lua_pushcfunction (L, s_table_insert);
            lua_setfield (L, -2, "insert");
            lua_pushcfunction (L, s_table_remove);
            lua_setfield (L, -2, "remove");
        } else if (lib->func == luaopen_coroutine) {
            s_wrap (L, "create", s_co_create);
            lua_getfield (L, -1, "create");
            lua_getupvalue (L, -1, 1); /* the original */
            lua_remove (L, -2);
            lua_getfield (L, -2, "resume");
            lua_pushcclosure (L, s_co_wrap, 2);
            lua_setfield (L, -2, "wrap");
            s_wrap (L, "resume", s_co_resume);
            s_wrap (L, "close", s_co_close);
            s_wrap (L, "yield", s_co_yield);
            s_wrap (L, "isyieldable", s_co_isyieldable);
        }
        lua_pop (L, 1);
    }

    //  The string metatable is shared by every string: hide it, so that
    //  getmetatable ("") is false and its __index cannot be replaced.
    lua_pushliteral (L, "");
    lua_getmetatable (L, -1);
    lua_pushboolean (L, 0);
    lua_setfield (L, -2, "__metatable");
    lua_pop (L, 2);

    //  The thread table.
    lua_newtable (L);
    lua_createtable (L, 0, 1);
    lua_pushliteral (L, "k");
    lua_setfield (L, -2, "__mode");
    lua_setmetatable (L, -2);
    lua_rawsetp (L, LUA_REGISTRYINDEX, &s_threads_key);
    return 0;
}

//  ---------------------------------------------------------------------
//  The API

int
app_sandbox_pcall (app_sandbox_t *self, lua_CFunction fn, void *ud, char *err,
                   size_t errlen)
{
    if (!self || !fn) {
        aaax_seterr (err, errlen, "invalid arguments");
        return AAAX_EINVAL;
    }
    lua_State *L = self->main;
    if (!lua_checkstack (L, 2)) {
        aaax_seterr (err, errlen, "out of memory");
        return AAAX_ELIMIT;
    }
    int base = lua_gettop (L);
    lua_pushcfunction (L, fn);
    lua_pushlightuserdata (L, ud);
    int status = lua_pcall (L, 1, 0, 0);
    if (status == LUA_OK)
        return 0;
    int rc = AAAX_EINVAL;
    if (status == LUA_ERRMEM) {
        aaax_seterr (err, errlen, "memory limit of %zu KiB exceeded",
                     self->limit / 1024);
        rc = AAAX_ELIMIT;
    } else
        s_errmsg (L, err, errlen);
    lua_settop (L, base);
    return rc;
}

app_sandbox_t *
app_sandbox_new (size_t mem_limit, uint64_t instr_budget)
{
    app_sandbox_t *self = (app_sandbox_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->limit = mem_limit;
    self->budget = instr_budget;
    self->main = lua_newstate (s_alloc, self);
    if (!self->main) {
        free (self);
        return NULL;
    }
    lua_atpanic (self->main, s_panic);
    char err[256];
    if (app_sandbox_pcall (self, s_open, NULL, err, sizeof err) != 0) {
        zsys_debug ("app_sandbox: cannot open the libraries: %s", err);
        app_sandbox_destroy (&self);
        return NULL;
    }
    //  What the allow-list removed is garbage now; collect it before the
    //  app starts.
    lua_gc (self->main, LUA_GCCOLLECT);
    s_arm (self, self->main); /* threads copy the hook of their creator */
    return self;
}

void
app_sandbox_destroy (app_sandbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    app_sandbox_t *self = *self_p;
    lua_close (self->main); /* only frees: no finalizer of the app's runs */
    free (self);
    *self_p = NULL;
}

lua_State *
app_sandbox_state (app_sandbox_t *self)
{
    return self ? self->main : NULL;
}

size_t
app_sandbox_mem_used (const app_sandbox_t *self)
{
    return self ? self->used : 0;
}

size_t
app_sandbox_mem_limit (const app_sandbox_t *self)
{
    return self ? self->limit : 0;
}

uint64_t
app_sandbox_instr_spent (const app_sandbox_t *self)
{
    return self ? self->spent : 0;
}

int
app_sandbox_load (app_sandbox_t *self, const char *src, size_t len,
                  const char *chunkname, char *err, size_t errlen)
{
    const char *name = chunkname ? chunkname : "app";
    if (!self || (!src && len > 0)) {
        aaax_seterr (err, errlen, "invalid arguments");
        return AAAX_EINVAL;
    }
    if (len > 0 && src[0] == LUA_SIGNATURE[0]) {
        aaax_seterr (err, errlen,
                     "%s: binary chunks are not allowed (text only)", name);
        return AAAX_EINVAL;
    }
    //  "=name": messages then say "name:line:", not [string "name"].
    size_t namelen = strlen (name);
    char *luaname = (char *) malloc (namelen + 2);
    if (!luaname || !lua_checkstack (self->main, 1)) {
        free (luaname);
        aaax_seterr (err, errlen, "%s: out of memory", name);
        return AAAX_ENOMEM;
    }
    luaname[0] = '=';
    memcpy (luaname + 1, name, namelen + 1);
    int status = luaL_loadbufferx (self->main, src ? src : "", len, luaname,
                                   "t"); /* protected */
    free (luaname);
    if (status == LUA_OK)
        return 0;
    int rc = AAAX_EINVAL;
    if (status == LUA_ERRMEM) {
        aaax_seterr (err, errlen, "%s: memory limit of %zu KiB exceeded", name,
                     self->limit / 1024);
        rc = AAAX_ELIMIT;
    } else
        s_errmsg (self->main, err, errlen);
    lua_pop (self->main, 1);
    return rc;
}

/*  Makes a host thread: anchored in the registry under its own address,
    listed in the host-thread set. Runs under lua_pcall; ud is where to put
    the thread. */
static int
s_newthread (lua_State *L)
{
    lua_State **co_p = (lua_State **) lua_touserdata (L, 1);
    lua_State *co = lua_newthread (L);
    lua_pushvalue (L, -1);
    lua_rawsetp (L, LUA_REGISTRYINDEX, co);
    lua_rawgetp (L, LUA_REGISTRYINDEX, &s_threads_key);
    lua_pushvalue (L, -2);
    lua_pushinteger (L, S_HOST_LIVE);
    lua_rawset (L, -3);
    *co_p = co;
    return 0;
}

lua_State *
app_sandbox_thread (app_sandbox_t *self)
{
    lua_State *co = NULL;
    if (!self || app_sandbox_pcall (self, s_newthread, &co, NULL, 0) != 0)
        return NULL;
    return co;
}

void
app_sandbox_release (app_sandbox_t *self, lua_State *co)
{
    if (!self || !co || !lua_checkstack (self->main, 1))
        return;
    //  Setting an existing field to nil allocates nothing, so cannot raise;
    //  neither does an absent one (Lua 5.4 does not insert nil values).
    lua_pushnil (self->main);
    lua_rawsetp (self->main, LUA_REGISTRYINDEX, co);
}

app_run_t
app_sandbox_resume (app_sandbox_t *self, lua_State *co, int nargs, int *nres,
                    char *err, size_t errlen)
{
    if (!self || !co || nargs < 0 || !nres) {
        aaax_seterr (err, errlen, "invalid arguments");
        return APP_RUN_ERROR;
    }
    if (self->co) {
        aaax_seterr (err, errlen, "a slice of this sandbox is running");
        return APP_RUN_ERROR;
    }
    lua_State *L = self->main;
    if (!lua_checkstack (L, 3)) {
        aaax_seterr (err, errlen, "out of memory");
        return APP_RUN_ERROR;
    }
    //  co must be an anchored host thread, and not killed.
    int base = lua_gettop (L);
    lua_rawgetp (L, LUA_REGISTRYINDEX, co);
    if (lua_tothread (L, base + 1) != co) {
        lua_settop (L, base);
        aaax_seterr (err, errlen, "not a live thread of this sandbox");
        return APP_RUN_ERROR;
    }
    lua_rawgetp (L, LUA_REGISTRYINDEX, &s_threads_key);
    lua_pushvalue (L, base + 1);
    lua_rawget (L, base + 2);
    int state = (int) lua_tointeger (L, -1);
    lua_pop (L, 1);
    if (state == S_HOST_KILLED) {
        lua_settop (L, base);
        aaax_seterr (err, errlen, "the coroutine was killed");
        return APP_RUN_ERROR;
    }

    self->spent = 0;
    self->killed = S_KILL_NONE;
    self->co = co;
    s_arm (self, co);
    int n = 0;
    int status = lua_resume (co, NULL, nargs, &n);
    self->co = NULL;

    app_run_t rc;
    if (self->killed) {
        //  However it ended (an error, a hook's yield, even a return right
        //  after a refused allocation), it ends here.
        lua_pushvalue (L, base + 1);
        lua_pushinteger (L, S_HOST_KILLED);
        lua_rawset (L, base + 2); /* an existing key: allocates nothing */
        s_killmsg (self, err, errlen);
        rc = APP_RUN_KILLED;
    } else if (status == LUA_OK || status == LUA_YIELD) {
        *nres = n;
        rc = status == LUA_OK ? APP_RUN_DONE : APP_RUN_YIELD;
    } else {
        s_errmsg (co, err, errlen);
        rc = APP_RUN_ERROR;
    }
    lua_settop (L, base);
    return rc;
}
