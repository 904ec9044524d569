/*  app_sandbox.h — the Lua 5.4 sandbox for untrusted apps: one small
    lua_State per app (thousands per process), an allow-list of globals, a
    memory cap in the allocator and an instruction budget per run slice that
    pcall cannot swallow. Each callback runs in its own coroutine, which may
    yield from host C functions (aaax.* calls waiting on the kernel). */

#ifndef APP_SANDBOX_H_INCLUDED
#define APP_SANDBOX_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

#define APP_SANDBOX_UNPACK_MAX 8000    /* values table.unpack may return */
#define APP_SANDBOX_MEM_MARGIN 16384   /* bytes past the cap once killed */
#define APP_SANDBOX_HOOK_INTERVAL 1000 /* instructions between hook calls */
#define APP_SANDBOX_CO_INTERVAL 100    /* same in coroutines the app makes */

typedef struct _app_sandbox_t app_sandbox_t;

typedef enum {
    APP_RUN_DONE = 0, /* the function returned; nres results on its stack */
    APP_RUN_YIELD,    /* a host C function yielded (lua_yield); nres values */
    APP_RUN_ERROR,    /* a Lua error escaped: err is "chunk:line: message" */
    APP_RUN_KILLED    /* a limit was hit: err says which; release the thread */
} app_run_t;

/*  Returns a new sandboxed state (caller owns; app_sandbox_destroy) or NULL
    on no memory (also when mem_limit cannot hold the libraries). mem_limit:
    bytes the state may hold, enforced by its allocator; instr_budget: VM
    instructions allowed per run slice (see app_sandbox_resume). */
app_sandbox_t *app_sandbox_new (size_t mem_limit, uint64_t instr_budget);

/*  Closes the state (lua_close) and frees the sandbox; accepts NULL and sets
 *self_p to NULL. */
void app_sandbox_destroy (app_sandbox_t **self_p);

/*  Returns the main state (borrowed until destroy), to register host
    functions into. Run app code only through app_sandbox_resume. */
lua_State *app_sandbox_state (app_sandbox_t *self);

/*  Returns the bytes the state holds now, and its cap. */
size_t app_sandbox_mem_used (const app_sandbox_t *self);
size_t app_sandbox_mem_limit (const app_sandbox_t *self);

/*  Returns the instructions charged to the current or last slice. */
uint64_t app_sandbox_instr_spent (const app_sandbox_t *self);

/*  Loads src as a text chunk (binary chunks refused) whose _ENV is the
    sandbox's globals and pushes the function on the main state. chunkname
    (NULL: "app") names it in messages. Returns 0, AAAX_EINVAL on a syntax
    error or binary chunk (err "chunkname:line: message"), AAAX_ELIMIT when
    the memory cap was hit, AAAX_ENOMEM; nothing is pushed on error. */
int app_sandbox_load (app_sandbox_t *self, const char *src, size_t len,
                      const char *chunkname, char *err, size_t errlen);

/*  Returns a new coroutine for one callback (borrowed; anchored in the
    registry until app_sandbox_release), or NULL on no memory. Push the
    function and its arguments on it (lua_xmove from the main state), then
    call app_sandbox_resume. Apps cannot resume, close or yield it. */
lua_State *app_sandbox_thread (app_sandbox_t *self);

/*  Drops the anchor of a finished, killed or abandoned thread; never resume
    it afterwards. Accepts NULL; never raises. */
void app_sandbox_release (app_sandbox_t *self, lua_State *co);

/*  Runs co (lua_resume) with nargs values on its stack, with a fresh
    instruction budget for this slice (from here until it yields, returns or
    fails). On DONE / YIELD *nres gets the number of results / yielded values,
    on top of co's stack: pop them before resuming again. On ERROR and KILLED
    err holds the message; a KILLED thread is refused from then on. Not
    reentrant: a host function must not resume a thread of its own sandbox. */
app_run_t app_sandbox_resume (app_sandbox_t *self, lua_State *co, int nargs,
                              int *nres, char *err, size_t errlen);

/*  Runs fn on the main state under lua_pcall with ud as its only argument
    (a light userdata); its results are dropped. For host code that calls
    the Lua API where it may raise (any allocation: a push can hit the cap),
    as an unprotected error would abort the process. To pass values to a
    suspended thread, build them on the main state inside fn, then
    lua_checkstack (co, n) and lua_xmove: an error raised on a thread that
    is not running resets it. Returns 0, AAAX_ELIMIT (memory cap), AAAX_EINVAL
    (fn raised; err holds the message). */
int app_sandbox_pcall (app_sandbox_t *self, lua_CFunction fn, void *ud,
                       char *err, size_t errlen);

#endif
