/*  test_sandbox.c — unit tests of the app sandbox (actors/app_sandbox.c):
    the allow-list of globals, the hidden string metatable, the memory cap
    and the instruction budget against each way of escaping them, the size
    bombs, finalizers, text-only load, yields from host functions, the size
    of an idle sandbox. A guard that stops working makes a check fail or the
    test hang (alarm() then ends it). */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "aaax.h"
#include "app_sandbox.h"
#include "testutil.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define BUDGET 100000u

/*  What the script passed to note (), and how many times it was called. */
static char s_note[512];
static int s_notes;

/*  note (msg): records msg and returns it, so it also serves as an xpcall
    message handler (called as C, it runs no instruction). */
static int
t_note (lua_State *L)
{
    const char *msg = lua_tostring (L, 1);
    snprintf (s_note, sizeof s_note, "%s", msg ? msg : "(not a string)");
    s_notes++;
    lua_settop (L, 1);
    return 1;
}

/*  wait (): a host call waiting on the kernel; the resume's values are its
    results. */
static int
t_wait (lua_State *L)
{
    return lua_yield (L, 0);
}

static int
t_register (lua_State *L)
{
    lua_register (L, "note", t_note);
    lua_register (L, "wait", t_wait);
    return 0;
}

/*  A sandbox with note and wait (helpers = 1) or as the host gets it. */
static app_sandbox_t *
t_new (size_t mem, uint64_t budget, int helpers)
{
    app_sandbox_t *sb = app_sandbox_new (mem, budget);
    CHECK (sb != NULL);
    if (sb && helpers)
        CHECK_EQ_INT (app_sandbox_pcall (sb, t_register, NULL, NULL, 0), 0);
    s_notes = 0;
    s_note[0] = '\0';
    return sb;
}

/*  Formats the top n values of L as "v1,v2,..." (no metamethods). */
static void
t_values (lua_State *L, int n, char *out, size_t size)
{
    size_t off = 0;
    out[0] = '\0';
    for (int i = n; i >= 1 && off < size; i--) {
        const char *sep = i == n ? "" : ",";
        int type = lua_type (L, -i);
        if (type == LUA_TSTRING || type == LUA_TNUMBER)
            off += snprintf (out + off, size - off, "%s%s", sep,
                             lua_tostring (L, -i));
        else if (type == LUA_TBOOLEAN)
            off += snprintf (out + off, size - off, "%s%s", sep,
                             lua_toboolean (L, -i) ? "true" : "false");
        else
            off += snprintf (out + off, size - off, "%s%s", sep,
                             lua_typename (L, type));
    }
}

/*  Loads src as chunk "t" into a new callback thread and resumes it; *co_p
    gets the thread (still anchored). */
static app_run_t
t_start (app_sandbox_t *sb, const char *src, lua_State **co_p, int *nres,
         char *err, size_t errlen)
{
    *co_p = NULL;
    if (app_sandbox_load (sb, src, strlen (src), "t", err, errlen) != 0)
        return APP_RUN_ERROR;
    lua_State *co = app_sandbox_thread (sb);
    CHECK (co != NULL);
    if (!co) {
        lua_pop (app_sandbox_state (sb), 1);
        return APP_RUN_ERROR;
    }
    lua_xmove (app_sandbox_state (sb), co, 1);
    *co_p = co;
    return app_sandbox_resume (sb, co, 0, nres, err, errlen);
}

/*  Runs src to its end in sb; out gets its results (DONE) or the message
    (ERROR, KILLED); the thread is released. */
static app_run_t
t_run (app_sandbox_t *sb, const char *src, char *out, size_t size)
{
    lua_State *co;
    int nres = 0;
    out[0] = '\0';
    app_run_t rc = t_start (sb, src, &co, &nres, out, size);
    if (rc == APP_RUN_DONE || rc == APP_RUN_YIELD)
        t_values (co, nres, out, size);
    app_sandbox_release (sb, co);
    return rc;
}

/*  As t_run in a fresh sandbox of mem bytes and BUDGET, with the helpers. */
static app_run_t
t_run1 (size_t mem, const char *src, char *out, size_t size)
{
    app_sandbox_t *sb = t_new (mem, BUDGET, 1);
    app_run_t rc = sb ? t_run (sb, src, out, size) : APP_RUN_ERROR;
    app_sandbox_destroy (&sb);
    return rc;
}

static double
t_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static const char s_budget_msg[] = "instruction budget of 100000 exceeded";

/*  The script must be killed by the instruction budget; yielded: by a
    yield out of the callback coroutine. */
static void
t_killed_by_budget_y (const char *what, const char *src, int yielded)
{
    char out[512];
    double t0 = t_now ();
    lua_State *co;
    int nres;
    app_sandbox_t *sb = t_new (4 * MIB, BUDGET, 1);
    app_run_t rc = t_start (sb, src, &co, &nres, out, sizeof out);
    if (rc != APP_RUN_KILLED || strcmp (out, s_budget_msg) != 0)
        fprintf (stderr, "budget test '%s': rc %d, '%s'\n", what, (int) rc,
                 out);
    CHECK_EQ_INT (rc, APP_RUN_KILLED);
    CHECK_EQ_STR (out, s_budget_msg);
    if (yielded)
        CHECK_EQ_INT (lua_status (co), LUA_YIELD); /* stopped, not unwound */
    app_sandbox_release (sb, co);
    CHECK (app_sandbox_instr_spent (sb) >= BUDGET);
    CHECK_EQ_INT (s_notes, 0); /* nothing ran after the loop */
    //  The sandbox goes on: the next callback runs with a fresh budget.
    CHECK_EQ_INT (t_run (sb, "return 'next'", out, sizeof out), APP_RUN_DONE);
    CHECK_EQ_STR (out, "next");
    app_sandbox_destroy (&sb);
    printf ("budget: %-28s killed in %.1f ms\n", what, (t_now () - t0) * 1e3);
}

/*  The script must be killed by the memory cap of 1 MiB. When it ends with
    an error, top (if not NULL) must be in its message. */
static void
t_killed_by_memory (const char *what, const char *src, const char *top)
{
    char out[512];
    lua_State *co;
    int nres;
    app_sandbox_t *sb = t_new (MIB, 100000000u, 1);
    app_run_t rc = t_start (sb, src, &co, &nres, out, sizeof out);
    if (rc != APP_RUN_KILLED)
        fprintf (stderr, "memory test '%s': rc %d, '%s'\n", what, (int) rc,
                 out);
    CHECK_EQ_INT (rc, APP_RUN_KILLED);
    CHECK_EQ_STR (out, "memory limit of 1024 KiB exceeded");
    if (top) {
        const char *msg = co ? lua_tostring (co, -1) : NULL;
        if (!msg || !strstr (msg, top))
            fprintf (stderr, "memory test '%s': error '%s'\n", what,
                     msg ? msg : "(none)");
        CHECK (msg && strstr (msg, top));
    }
    app_sandbox_release (sb, co);
    CHECK (app_sandbox_mem_used (sb) <= MIB + APP_SANDBOX_MEM_MARGIN);
    CHECK_EQ_INT (s_notes, 0);
    lua_gc (app_sandbox_state (sb), LUA_GCCOLLECT); /* the thread is gone */
    CHECK_EQ_INT (t_run (sb, "return 'next'", out, sizeof out), APP_RUN_DONE);
    CHECK_EQ_STR (out, "next");
    app_sandbox_destroy (&sb);
}

static void
t_killed_by_budget (const char *what, const char *src)
{
    t_killed_by_budget_y (what, src, 0);
}

//  ---------------------------------------------------------------------
//  1, 2: globals and the string metatable

static void
test_globals (void)
{
    char out[1024];
    app_sandbox_t *sb = t_new (MIB, BUDGET, 0);
    CHECK_EQ_INT (t_run (sb,
                         "local names = {}\n"
                         "for k in pairs (_G) do names[#names + 1] = k end\n"
                         "table.sort (names)\n"
                         "return table.concat (names, ' ')",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "_G _VERSION assert collectgarbage coroutine error "
                       "getmetatable ipairs load math next pairs pcall "
                       "rawequal rawget rawlen rawset select setmetatable "
                       "string table tonumber tostring type utf8 xpcall");
    CHECK_EQ_INT (t_run (sb,
                         "return io, os, debug, package, require, dofile, "
                         "loadfile, print, loadstring, string.dump, _G == "
                         "_ENV, _VERSION",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,true,Lua 5.4");
    //  The libraries are there.
    CHECK_EQ_INT (t_run (sb,
                         "return math.floor (2.5), utf8.char (72, 105), "
                         "string.format ('%03d', 7), #table.pack (1, 2)",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "2,Hi,007,2");
    app_sandbox_destroy (&sb);
}

static void
test_string_metatable (void)
{
    char out[512];
    app_sandbox_t *sb = t_new (MIB, BUDGET, 0);
    CHECK_EQ_INT (t_run (sb, "return getmetatable ('')", out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "false");
    CHECK_EQ_INT (t_run (sb,
                         "return ('x'):upper (), ('%d'):format (7), "
                         "('abc'):sub (2)",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "X,7,bc");
    CHECK_EQ_INT (t_run (sb, "getmetatable ('').__index = {}", out, sizeof out),
                  APP_RUN_ERROR);
    CHECK (strstr (out, "t:1: attempt to index a boolean value"));
    app_sandbox_destroy (&sb);
}

//  ---------------------------------------------------------------------
//  3: the memory cap cannot be caught

static void
test_memory_cap (void)
{
    //  One pcall around the allocation, then carry on: killed all the same.
    t_killed_by_memory ("pcall",
                        "local ok = pcall (function ()\n"
                        "  local t = {}\n"
                        "  for i = 1, 1e7 do t[i] = i end\n"
                        "end)\n"
                        "note ('survived: ' .. tostring (ok))\n"
                        "return 'survived'",
                        NULL);
    //  Retrying in a loop, the failing allocation in pcall each time.
    t_killed_by_memory ("pcall retry",
                        "for i = 1, 100 do\n"
                        "  pcall (function ()\n"
                        "    local t = {}\n"
                        "    for j = 1, 1e7 do t[j] = j end\n"
                        "  end)\n"
                        "end\n"
                        "note ('survived')",
                        NULL);
    //  The allocation fails in a coroutine of the app's.
    t_killed_by_memory ("coroutine",
                        "local co = coroutine.wrap (function ()\n"
                        "  local t = {}\n"
                        "  for j = 1, 1e7 do t[j] = j end\n"
                        "end)\n"
                        "pcall (co)\n"
                        "note ('survived')",
                        NULL);

    //  A cap too small for the libraries: no sandbox.
    CHECK (app_sandbox_new (4 * KIB, BUDGET) == NULL);
}

//  ---------------------------------------------------------------------
//  4: the instruction budget cannot be caught

static void
test_budget (void)
{
    t_killed_by_budget_y ("while true", "while true do end note ('after')", 1);
    t_killed_by_budget_y ("pcall loop",
                          "while true do\n"
                          "  pcall (function () while true do end end)\n"
                          "end",
                          1);
    t_killed_by_budget ("own coroutine, resumed",
                        "while true do\n"
                        "  local co = coroutine.create (function ()\n"
                        "    while true do end\n"
                        "  end)\n"
                        "  coroutine.resume (co)\n"
                        "end");
    t_killed_by_budget ("own coroutine, wrapped",
                        "local co = coroutine.wrap (function ()\n"
                        "  while true do pcall (function () while true do "
                        "end end) end\n"
                        "end)\n"
                        "while true do pcall (co) end");
    t_killed_by_budget ("yielding coroutine",
                        "local co = coroutine.wrap (function ()\n"
                        "  while true do coroutine.yield () end\n"
                        "end)\n"
                        "while true do co () end");
    t_killed_by_budget ("table.sort comparator",
                        "local t = { 3, 1, 2, 5, 4 }\n"
                        "while true do\n"
                        "  pcall (table.sort, t, function (a, b)\n"
                        "    while true do end\n"
                        "  end)\n"
                        "end");
    t_killed_by_budget ("string.gsub callback",
                        "while true do\n"
                        "  pcall (string.gsub, 'abc', '%w', function ()\n"
                        "    while true do end\n"
                        "  end)\n"
                        "end");
    t_killed_by_budget ("xpcall handler",
                        "while true do\n"
                        "  xpcall (error, function () while true do end "
                        "end)\n"
                        "end");
    t_killed_by_budget ("__index",
                        "local t = setmetatable ({}, { __index = function "
                        "()\n"
                        "  while true do end\n"
                        "end })\n"
                        "while true do pcall (function () return t.x end) "
                        "end");
    t_killed_by_budget ("__close",
                        "while true do\n"
                        "  pcall (function ()\n"
                        "    local x <close> = setmetatable ({}, {\n"
                        "      __close = function () while true do end end "
                        "})\n"
                        "  end)\n"
                        "end");
    t_killed_by_budget ("__tostring in string.format",
                        "local o = setmetatable ({}, { __tostring = function "
                        "()\n"
                        "  while true do end\n"
                        "end })\n"
                        "while true do pcall (string.format, '%s', o) end");
    t_killed_by_budget ("load reader",
                        "while true do\n"
                        "  pcall (load, function () while true do end end)\n"
                        "end");
    //  C loops over a range given by the script: charged per element.
    t_killed_by_budget ("table.move", "pcall (table.move, {}, 1, 2^40, 2)\n"
                                      "note ('moved')");
    t_killed_by_budget ("table.remove __len",
                        "local t = setmetatable ({}, { __len = function () "
                        "return 2^40 end })\n"
                        "pcall (table.remove, t, 1) note ('removed')");
    t_killed_by_budget ("table.insert __len",
                        "local t = setmetatable ({}, { __len = function () "
                        "return 2^40 end })\n"
                        "pcall (table.insert, t, 1, 'x') note ('inserted')");
    t_killed_by_budget ("collectgarbage loop",
                        "while true do collectgarbage () end");
    //  C work without VM instructions, charged: collections by heap size,
    //  concat per element.
    t_killed_by_budget ("2000 collections",
                        "for i = 1, 2000 do collectgarbage () end "
                        "note ('done')");
    t_killed_by_budget ("table.concat 500000",
                        "local t = { ('x'):rep (50000):byte (1, -1) }\n"
                        "for i = 1, 10 do local s = table.concat (t) end\n"
                        "note ('done')");
}

/*  The budget is per slice, counted exactly enough, and a killed thread
    is never run again. */
static void
test_budget_slices (void)
{
    char out[512];
    lua_State *co;
    int nres = 0;
    app_sandbox_t *sb = t_new (MIB, BUDGET, 1);
    //  Three slices of ~60000 instructions: more than the budget in all.
    const char *src = "for i = 1, 60000 do end wait ()\n"
                      "for i = 1, 60000 do end wait ()\n"
                      "for i = 1, 60000 do end return 'ok'";
    CHECK_EQ_INT (t_start (sb, src, &co, &nres, out, sizeof out),
                  APP_RUN_YIELD);
    CHECK (app_sandbox_instr_spent (sb) < BUDGET);
    CHECK_EQ_INT (app_sandbox_resume (sb, co, 0, &nres, out, sizeof out),
                  APP_RUN_YIELD);
    CHECK_EQ_INT (app_sandbox_resume (sb, co, 0, &nres, out, sizeof out),
                  APP_RUN_DONE);
    t_values (co, nres, out, sizeof out);
    CHECK_EQ_STR (out, "ok");
    app_sandbox_release (sb, co);

    //  Killed close to the budget, not far past it.
    CHECK_EQ_INT (t_start (sb, "local n = 0 while true do n = n + 1 end", &co,
                           &nres, out, sizeof out),
                  APP_RUN_KILLED);
    CHECK (app_sandbox_instr_spent (sb) >= BUDGET);
    CHECK (app_sandbox_instr_spent (sb) < BUDGET + 2000);
    //  The host cannot resume it by mistake.
    lua_pushinteger (co, 1);
    CHECK_EQ_INT (app_sandbox_resume (sb, co, 1, &nres, out, sizeof out),
                  APP_RUN_ERROR);
    CHECK_EQ_STR (out, "the coroutine was killed");
    app_sandbox_release (sb, co);
    //  Nor a released one.
    CHECK_EQ_INT (app_sandbox_resume (sb, co, 0, &nres, out, sizeof out),
                  APP_RUN_ERROR);
    CHECK_EQ_STR (out, "not a live thread of this sandbox");
    app_sandbox_destroy (&sb);

    //  A budget of 0 runs nothing.
    sb = t_new (MIB, 0, 1);
    CHECK_EQ_INT (t_run (sb, "note ('ran')", out, sizeof out), APP_RUN_KILLED);
    CHECK_EQ_STR (out, "instruction budget of 0 exceeded");
    CHECK_EQ_INT (s_notes, 0);
    app_sandbox_destroy (&sb);
}

/*  A coroutine of the app's that dies of the hook's error keeps hooks off
    (Lua restores them only where a pcall catches the error): its __close
    handlers must never run, neither from coroutine.close nor from the error
    path of coroutine.wrap. Nor may coroutines escape the budget by ending
    before their first hook call. */
static void
test_killed_coroutines (void)
{
    char out[512];
    app_sandbox_t *sb = t_new (MIB, BUDGET, 1);
    CHECK_EQ_INT (t_run (sb,
                         "dead = coroutine.create (function ()\n"
                         "  local x <close> = setmetatable ({}, {\n"
                         "    __close = function () while true do end end })\n"
                         "  while true do end\n"
                         "end)\n"
                         "coroutine.resume (dead)",
                         out, sizeof out),
                  APP_RUN_KILLED);
    CHECK_EQ_INT (t_run (sb,
                         "local st = coroutine.status (dead)\n"
                         "return st, coroutine.close (dead)",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "dead,false,cannot close a killed coroutine");

    CHECK_EQ_INT (t_run (sb,
                         "local w = coroutine.wrap (function ()\n"
                         "  local x <close> = setmetatable ({}, {\n"
                         "    __close = function () while true do end end })\n"
                         "  while true do end\n"
                         "end)\n"
                         "w ()",
                         out, sizeof out),
                  APP_RUN_KILLED);
    CHECK_EQ_STR (out, s_budget_msg);

    //  Outside a kill, __close handlers run as usual.
    CHECK_EQ_INT (t_run (sb,
                         "local closed = 0\n"
                         "local mt = { __close = function () closed = closed "
                         "+ 1 end }\n"
                         "local w = coroutine.wrap (function ()\n"
                         "  local x <close> = setmetatable ({}, mt)\n"
                         "  error ('e', 0)\n"
                         "end)\n"
                         "local ok, e = pcall (w)\n"
                         "local co = coroutine.create (function ()\n"
                         "  local x <close> = setmetatable ({}, mt)\n"
                         "  coroutine.yield ()\n"
                         "end)\n"
                         "coroutine.resume (co)\n"
                         "return ok, e, coroutine.close (co), closed",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "false,e,true,2");

    //  150 coroutines of 900 instructions each, each ending before the
    //  1000th instruction that would call the hook it copied from the
    //  callback: counted all the same (they get a shorter interval).
    CHECK_EQ_INT (t_run (sb,
                         "for i = 1, 150 do\n"
                         "  coroutine.wrap (function () for j = 1, 900 do end "
                         "end) ()\n"
                         "end\n"
                         "return 'done'",
                         out, sizeof out),
                  APP_RUN_KILLED);
    CHECK_EQ_STR (out, s_budget_msg);
    //  2000 of 93 instructions, under even that interval: the interval is
    //  charged when each is made.
    CHECK_EQ_INT (t_run (sb,
                         "for i = 1, 2000 do\n"
                         "  coroutine.wrap (function () for j = 1, 90 do end "
                         "end) ()\n"
                         "end\n"
                         "return 'done'",
                         out, sizeof out),
                  APP_RUN_KILLED);
    CHECK_EQ_STR (out, s_budget_msg);
    //  Neither counts a coroutine for more than it runs plus the interval.
    CHECK_EQ_INT (t_run (sb,
                         "for i = 1, 200 do\n"
                         "  coroutine.wrap (function () for j = 1, 90 do end "
                         "end) ()\n"
                         "end\n"
                         "return 'done'",
                         out, sizeof out),
                  APP_RUN_DONE);
    app_sandbox_destroy (&sb);
}

/*  The app cannot resume, close or yield a callback coroutine (the host's,
    perhaps waiting on the kernel); its own coroutines work as usual. */
static void
test_host_threads (void)
{
    char out[512];
    lua_State *co;
    int nres = 0;
    app_sandbox_t *sb = t_new (MIB, BUDGET, 1);
    CHECK_EQ_INT (t_start (sb, "me = coroutine.running () wait () return 1",
                           &co, &nres, out, sizeof out),
                  APP_RUN_YIELD);
    CHECK_EQ_INT (
        t_run (sb,
               "local ok1, e1 = pcall (coroutine.resume, me)\n"
               "local ok2 = pcall (coroutine.close, me)\n"
               "local ok3, e3 = pcall (coroutine.yield, 'x')\n"
               "return ok1, e1, ok2, ok3, e3, coroutine.isyieldable (), "
               "coroutine.isyieldable (me), coroutine.status (me)",
               out, sizeof out),
        APP_RUN_DONE);
    CHECK_EQ_STR (out, "false,cannot resume or close a host coroutine,false,"
                       "false,attempt to yield from outside a coroutine,"
                       "false,false,suspended");
    CHECK_EQ_INT (app_sandbox_resume (sb, co, 0, &nres, out, sizeof out),
                  APP_RUN_DONE);
    t_values (co, nres, out, sizeof out);
    CHECK_EQ_STR (out, "1");
    app_sandbox_release (sb, co);

    CHECK_EQ_INT (t_run (sb,
                         "local gen = coroutine.wrap (function ()\n"
                         "  coroutine.yield (coroutine.isyieldable ())\n"
                         "  return 2\n"
                         "end)\n"
                         "local co = coroutine.create (function (a) return "
                         "a * 2 end)\n"
                         "return gen (), gen (), coroutine.resume (co, 21)",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "true,2,true,42");
    app_sandbox_destroy (&sb);
}

//  ---------------------------------------------------------------------
//  5: size bombs

static void
test_size_bombs (void)
{
    char out[512];

    //  string.rep of nothing 2^50 times loops in C unless answered at once.
    CHECK_EQ_INT (t_run1 (MIB,
                          "return #string.rep ('', 2^50), "
                          "#string.rep ('', 2^50, ''), #('x'):rep (0), "
                          "string.rep ('ab', 3, ',')",
                          out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "0,0,0,ab,ab,ab");

    //  string.rep past the memory left: refused before allocating (the
    //  error is the guard's, not Lua's "not enough memory"), and a memory
    //  kill.
    const char *rep_msg = "t:1: string.rep: result exceeds the memory limit";
    t_killed_by_memory ("rep 2^40", "string.rep ('x', 2^40)", rep_msg);
    t_killed_by_memory ("method rep 2^40", "local s = ('x'):rep (2^40)",
                        rep_msg);
    t_killed_by_memory ("rep with separator", "string.rep ('x', 2^30, ', ')",
                        rep_msg);
    t_killed_by_memory ("rep just too large", "string.rep ('x', 1024 * 1024)",
                        rep_msg);
    t_killed_by_memory ("rep in pcall",
                        "pcall (string.rep, 'x', 2^40) note ('survived')",
                        NULL);

    //  Doubling, format and concat: the allocator's cap.
    t_killed_by_memory ("s .. s", "local s = 'x' while true do s = s .. s end",
                        "not enough memory");
    t_killed_by_memory ("format %s",
                        "local big = ('x'):rep (100000)\n"
                        "local t = {}\n"
                        "for i = 1, 1000 do\n"
                        "  t[i] = string.format ('%s', big)\n"
                        "end",
                        "not enough memory");
    t_killed_by_memory ("table.concat",
                        "local t, s = {}, ('x'):rep (1000)\n"
                        "for i = 1, 2000 do t[i] = s end\n"
                        "local r = table.concat (t, s)",
                        "not enough memory");
    t_killed_by_memory ("string.byte",
                        "local s = ('x'):rep (500000)\n"
                        "local n = select ('#', s:byte (1, "
                        "-1))",
                        NULL);

    //  Lua 5.4 refuses widths and precisions of more than two digits.
    CHECK_EQ_INT (t_run1 (MIB,
                          "local ok, e = pcall (string.format, '%099999d', 1)\n"
                          "local ok2 = pcall (string.format, '%.100f', 1)\n"
                          "return ok, e, ok2, #string.format ('%99d', 1), "
                          "#string.format ('%.99f', 1)",
                          out, sizeof out),
                  APP_RUN_DONE);
    CHECK (strncmp (out, "false,", 6) == 0);
    CHECK (strstr (out, "invalid conversion"));
    CHECK (strstr (out, "'%099999d'"));
    CHECK (strstr (out, ",false,99,101"));

    //  table.unpack: at most APP_SANDBOX_UNPACK_MAX values (1e5 would fit
    //  the stack and the cap).
    CHECK_EQ_INT (t_run1 (4 * MIB,
                          "local ok1, e1 = pcall (table.unpack, {}, 1, 1e8)\n"
                          "local ok2 = pcall (table.unpack, {}, 1, 2^31)\n"
                          "local ok3 = pcall (table.unpack, {}, 1, 1e5)\n"
                          "local t = setmetatable ({}, { __len = function () "
                          "return 1e6 end })\n"
                          "local ok4 = pcall (table.unpack, t)\n"
                          "return ok1, e1, ok2, ok3, ok4, "
                          "select ('#', table.unpack ({}, 1, 8000)), "
                          "table.unpack ({ 1, 2, 3 }, 2)",
                          out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "false,table.unpack: too many results (at most 8000),"
                       "false,false,false,8000,2,3");

    //  utf8.char with many arguments is fine.
    CHECK_EQ_INT (t_run1 (MIB,
                          "local t = {} for i = 1, 1000 do t[i] = 65 end\n"
                          "return #utf8.char (table.unpack (t))",
                          out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "1000");

    //  The rewritten table functions still behave.
    CHECK_EQ_INT (t_run1 (MIB,
                          "local t = { 1, 2, 3 }\n"
                          "table.insert (t, 1, 0) table.insert (t, 4)\n"
                          "local r = table.remove (t, 1)\n"
                          "local last = table.remove (t)\n"
                          "table.move (t, 1, 3, 2)\n"
                          "local ok1, e1 = pcall (table.insert, t, 9, 'x')\n"
                          "local ok2, e2 = pcall (table.insert, t, 1, 2, 3)\n"
                          "return r, last, table.concat (t, ','), "
                          "table.concat ({ 'a', 'b', 'c' }, '-', 2), "
                          "ok1, e1, ok2, e2",
                          out, sizeof out),
                  APP_RUN_DONE);
    CHECK (strncmp (out, "0,4,1,1,2,3,b-c,false,", 22) == 0);
    CHECK (strstr (out, "position out of bounds"));
    CHECK (strstr (out, "wrong number of arguments to 'insert'"));

    //  Deep recursion: Lua's stack limit (a million slots) is an error.
    double t0 = t_now ();
    app_sandbox_t *sb = t_new (128 * MIB, 100000000u, 1);
    CHECK_EQ_INT (t_run (sb,
                         "local function f () return f () + 1 end\n"
                         "return f ()",
                         out, sizeof out),
                  APP_RUN_ERROR);
    CHECK (strstr (out, "stack overflow"));
    app_sandbox_destroy (&sb);
    printf ("deep recursion: error in %.1f ms\n", (t_now () - t0) * 1e3);
    //  With a small cap it is the cap.
    t_killed_by_memory ("deep recursion",
                        "local function f () return f () + 1 end f ()", NULL);

    //  Recursion through a metamethod nests C calls: a C stack overflow.
    CHECK_EQ_INT (t_run1 (MIB,
                          "local t = setmetatable ({}, { __index = function "
                          "(t, k) return t[k] end })\n"
                          "return t.x",
                          out, sizeof out),
                  APP_RUN_ERROR);
    CHECK (strstr (out, "stack overflow"));
    CHECK_EQ_INT (t_run1 (MIB,
                          "local co\n"
                          "co = coroutine.wrap (function () return co () "
                          "end)\n"
                          "return co ()",
                          out, sizeof out),
                  APP_RUN_ERROR);
    CHECK (strstr (out, "C stack overflow") || strstr (out, "non-suspended"));
}

//  ---------------------------------------------------------------------
//  6: finalizers

static void
test_finalizers (void)
{
    char out[512];
    CHECK_EQ_INT (t_run1 (MIB,
                          "local ok1, e1 = pcall (setmetatable, {}, "
                          "{ __gc = function () while true do end end })\n"
                          "local ok2 = pcall (setmetatable, {}, "
                          "{ __gc = false })\n"
                          "return ok1, e1, ok2",
                          out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "false,setmetatable: __gc is not allowed,false");

    //  A __gc added after setmetatable is never called: not on collect,
    //  not at lua_close.
    app_sandbox_t *sb = t_new (MIB, BUDGET, 1);
    CHECK_EQ_INT (t_run (sb,
                         "local mt = {}\n"
                         "keep = setmetatable ({}, mt)\n"
                         "setmetatable ({}, mt)\n"
                         "mt.__gc = function () note ('finalized') end\n"
                         "collectgarbage () collectgarbage ()\n"
                         "return 'ok'",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "ok");
    app_sandbox_destroy (&sb);
    CHECK_EQ_INT (s_notes, 0);
}

//  ---------------------------------------------------------------------
//  7: load is text-only

static void
test_load (void)
{
    char out[512];
    app_sandbox_t *sb = t_new (MIB, BUDGET, 1);
    CHECK_EQ_INT (t_run (sb,
                         "x = 5\n"
                         "local y = load ('return x') ()\n"
                         "local z = load ('return y', 'chunk', 't', "
                         "{ y = 7 }) ()\n"
                         "local w = load ('return 1', 'c', 'bt') ()\n"
                         "local f, e = load ('return +', '=named')\n"
                         "return y, z, w, f, e",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "5,7,1,nil,named:1: unexpected symbol near '+'");

    //  Bytecode: refused as a string, in mode "b", through a reader.
    CHECK_EQ_INT (t_run (sb,
                         "local f1, e1 = load ('\\27Lua\\84\\0\\25\\147')\n"
                         "local f2, e2 = load ('\\27Lua\\84\\0', 'c', 'b')\n"
                         "local parts = { '\\27Lua', '\\84\\0\\25' }\n"
                         "local f3, e3 = load (function () return "
                         "table.remove (parts, 1) end)\n"
                         "return f1, e1, f2, e2, f3, e3",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "nil,attempt to load a binary chunk (mode is 't'),"
                       "nil,attempt to load a binary chunk (mode is 't'),"
                       "nil,attempt to load a binary chunk (mode is 't')");
    //  A text reader works.
    CHECK_EQ_INT (t_run (sb,
                         "local parts = { 'return ', '4', '2' }\n"
                         "return load (function () return table.remove "
                         "(parts, 1) end) ()",
                         out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_STR (out, "42");

    //  The host's load: binary and syntax errors.
    char err[256];
    CHECK_EQ_INT (app_sandbox_load (sb, "\033Lua", 4, "bin", err, sizeof err),
                  AAAX_EINVAL);
    CHECK_EQ_STR (err, "bin: binary chunks are not allowed (text only)");
    CHECK_EQ_INT (app_sandbox_load (sb, "x = = 1", 7, "bad", err, sizeof err),
                  AAAX_EINVAL);
    CHECK_EQ_STR (err, "bad:1: unexpected symbol near '='");
    CHECK_EQ_INT (lua_gettop (app_sandbox_state (sb)), 0);
    app_sandbox_destroy (&sb);

    //  Too large for the cap.
    sb = t_new (64 * KIB, BUDGET, 0);
    size_t len = 200000;
    char *src = (char *) malloc (len + 1);
    CHECK (src != NULL);
    if (src) {
        memset (src, ' ', len);
        memcpy (src, "return '", 8);
        src[len - 1] = '\'';
        src[len] = '\0';
        CHECK_EQ_INT (app_sandbox_load (sb, src, len, "big", err, sizeof err),
                      AAAX_ELIMIT);
        CHECK_EQ_STR (err, "big: memory limit of 64 KiB exceeded");
    }
    free (src);
    app_sandbox_destroy (&sb);
}

//  ---------------------------------------------------------------------
//  8: yields from host functions, errors

static void
test_yield (void)
{
    char out[512];
    lua_State *co;
    int nres = -1;
    app_sandbox_t *sb = t_new (MIB, BUDGET, 1);
    CHECK_EQ_INT (t_start (sb, "local a, b = wait () return a + b, 'sum'", &co,
                           &nres, out, sizeof out),
                  APP_RUN_YIELD);
    CHECK_EQ_INT (nres, 0);
    lua_pushinteger (co, 2);
    lua_pushinteger (co, 3);
    CHECK_EQ_INT (app_sandbox_resume (sb, co, 2, &nres, out, sizeof out),
                  APP_RUN_DONE);
    CHECK_EQ_INT (nres, 2);
    t_values (co, nres, out, sizeof out);
    CHECK_EQ_STR (out, "5,sum");
    app_sandbox_release (sb, co);

    //  Through pcall (yieldable in 5.4).
    CHECK_EQ_INT (t_start (sb,
                           "local ok, v = pcall (function () return wait () "
                           "end)\n"
                           "return ok, v",
                           &co, &nres, out, sizeof out),
                  APP_RUN_YIELD);
    lua_pushliteral (co, "hi");
    CHECK_EQ_INT (app_sandbox_resume (sb, co, 1, &nres, out, sizeof out),
                  APP_RUN_DONE);
    t_values (co, nres, out, sizeof out);
    CHECK_EQ_STR (out, "true,hi");
    app_sandbox_release (sb, co);

    //  Two callbacks waiting at once, resumed in the other order.
    lua_State *co2;
    CHECK_EQ_INT (
        t_start (sb, "return 'a' .. wait ()", &co, &nres, out, sizeof out),
        APP_RUN_YIELD);
    CHECK_EQ_INT (
        t_start (sb, "return 'b' .. wait ()", &co2, &nres, out, sizeof out),
        APP_RUN_YIELD);
    lua_pushliteral (co2, "2");
    CHECK_EQ_INT (app_sandbox_resume (sb, co2, 1, &nres, out, sizeof out),
                  APP_RUN_DONE);
    t_values (co2, nres, out, sizeof out);
    CHECK_EQ_STR (out, "b2");
    lua_pushliteral (co, "1");
    CHECK_EQ_INT (app_sandbox_resume (sb, co, 1, &nres, out, sizeof out),
                  APP_RUN_DONE);
    t_values (co, nres, out, sizeof out);
    CHECK_EQ_STR (out, "a1");
    app_sandbox_release (sb, co);
    app_sandbox_release (sb, co2);

    //  Errors: "chunk:line: message" and nothing else.
    CHECK_EQ_INT (t_run (sb, "\nerror ('boom')", out, sizeof out),
                  APP_RUN_ERROR);
    CHECK_EQ_STR (out, "t:2: boom");
    CHECK_EQ_INT (t_run (sb, "local x\nreturn x.y", out, sizeof out),
                  APP_RUN_ERROR);
    CHECK_EQ_STR (out, "t:2: attempt to index a nil value (local 'x')");
    CHECK_EQ_INT (t_run (sb, "error (42)", out, sizeof out), APP_RUN_ERROR);
    CHECK_EQ_STR (out, "42");
    //  The host never runs an error object's __tostring.
    CHECK_EQ_INT (t_run (sb,
                         "error (setmetatable ({}, { __tostring = function "
                         "() while true do end end }))",
                         out, sizeof out),
                  APP_RUN_ERROR);
    CHECK_EQ_STR (out, "(error object is a table value)");
    app_sandbox_destroy (&sb);
}

//  ---------------------------------------------------------------------
//  collectgarbage, app_sandbox_pcall, the panic handler

static void
test_collectgarbage (void)
{
    char out[512];
    CHECK_EQ_INT (
        t_run1 (MIB,
                "local ok = {}\n"
                "for _, o in ipairs { 'stop', 'restart', 'setpause', "
                "'setstepmul', 'isrunning', 'generational', 'incremental' } "
                "do\n"
                "  ok[#ok + 1] = tostring (pcall (collectgarbage, o))\n"
                "end\n"
                "return table.concat (ok, ' '), type (collectgarbage "
                "('count')), collectgarbage (), collectgarbage ('collect'), "
                "type (collectgarbage ('step'))",
                out, sizeof out),
        APP_RUN_DONE);
    CHECK_EQ_STR (out, "false false false false false false false,number,0,0,"
                       "boolean");
}

static int
t_push_big (lua_State *L)
{
    size_t len = *(size_t *) lua_touserdata (L, 1);
    luaL_Buffer b;
    memset (luaL_buffinitsize (L, &b, len), 'x', len); /* raises past cap */
    luaL_pushresultsize (&b, len);
    return 0;
}

static void
test_pcall (void)
{
    char err[256], out[256];
    app_sandbox_t *sb = t_new (MIB, BUDGET, 1);
    //  A host push past the cap is an error, not an abort.
    size_t len = 16;
    CHECK_EQ_INT (app_sandbox_pcall (sb, t_push_big, &len, err, sizeof err), 0);
    len = 2 * MIB;
    CHECK_EQ_INT (app_sandbox_pcall (sb, t_push_big, &len, err, sizeof err),
                  AAAX_ELIMIT);
    CHECK_EQ_STR (err, "memory limit of 1024 KiB exceeded");
    CHECK_EQ_INT (t_run (sb, "return 'alive'", out, sizeof out), APP_RUN_DONE);
    CHECK_EQ_STR (out, "alive");

    //  A panic handler is installed.
    lua_State *L = app_sandbox_state (sb);
    lua_CFunction panic = lua_atpanic (L, NULL);
    CHECK (panic != NULL);
    lua_atpanic (L, panic);
    app_sandbox_destroy (&sb);
    app_sandbox_destroy (&sb); /* NULL is fine */
}

//  ---------------------------------------------------------------------
//  9: size and cost of idle sandboxes

static void
test_footprint (void)
{
    app_sandbox_t *sb = app_sandbox_new (MIB, BUDGET);
    CHECK (sb != NULL);
    size_t idle = app_sandbox_mem_used (sb);
    printf ("idle sandbox: %zu bytes (%.1f KiB)\n", idle, idle / 1024.0);
    CHECK (idle < 40 * KIB);
    CHECK_EQ_INT (app_sandbox_mem_limit (sb), MIB);
    app_sandbox_destroy (&sb);

    enum { N = 1000 };
    static app_sandbox_t *many[N];
    double t0 = t_now ();
    for (int i = 0; i < N; i++) {
        many[i] = app_sandbox_new (MIB, BUDGET);
        CHECK (many[i] != NULL);
    }
    double t1 = t_now ();
    for (int i = 0; i < N; i++)
        app_sandbox_destroy (&many[i]);
    double t2 = t_now ();
    printf ("%d sandboxes: created in %.1f ms (%.1f us each), destroyed in "
            "%.1f ms\n",
            N, (t1 - t0) * 1e3, (t1 - t0) * 1e6 / N, (t2 - t1) * 1e3);
}

int
main (void)
{
    alarm (100); /* a guard that stopped working shows as a hang */
    test_globals ();
    test_string_metatable ();
    test_memory_cap ();
    test_budget ();
    test_budget_slices ();
    test_killed_coroutines ();
    test_host_threads ();
    test_size_bombs ();
    test_finalizers ();
    test_load ();
    test_yield ();
    test_collectgarbage ();
    test_pcall ();
    test_footprint ();
    TEST_DONE ();
}
