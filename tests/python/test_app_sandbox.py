"""The Lua app sandbox against a real aaaxd (docs/LUA.md, "The sandbox" and
"Limits"): every escape is tried by a real app's handler, which reports
what it got with aaax.reply -- or crashes, which must then be an app crash
(kernel.modules "crash", a restart) and never a kernel death. After every
attempt the kernel still answers PING and another app, echo, still echoes.

The escaping handler acts on the first delivery only (msg.attempt == 1):
when the attempt crashes the app, the message comes again after the
restart and the handler answers {recovered = attempt}."""

import ctypes

import pytest

from test_apps import Apps, ECHO, write_app


# The handler runs BODY (Lua statements that end with `return ...`) in a
# pcall on the first attempt and answers {ok, res, res2}; later attempts
# (after a crash) answer {recovered = attempt}.
PROBE = """
return {
  message = function (msg)
    if msg.attempt > 1 then
      aaax.reply(msg, { recovered = msg.attempt })
      return
    end
    local r = table.pack(pcall(function ()
%s
    end))
    aaax.reply(msg, { ok = r[1], res = r[2], res2 = r[3] })
  end,
}
"""

# The same without the pcall: an error the body raises crashes the app.
RAW = """
return {
  message = function (msg)
    if msg.attempt > 1 then
      aaax.reply(msg, { recovered = msg.attempt })
      return
    end
%s
    aaax.reply(msg, { ok = true })
  end,
}
"""


class Sandbox:
    def __init__(self, app_kernel, tmp_path):
        self.a = Apps(app_kernel())
        self.tmp = tmp_path
        self.a.load_ok(write_app(tmp_path, "echo", ECHO))

    def probe(self, body, template=PROBE, name="probe", timeout=10.0,
              **manifest):
        """Loads an app running body; returns its answer to one message."""
        self.a.load_ok(write_app(self.tmp, name, template % body, **manifest))
        return self.a.ask(name, "go", timeout=timeout)

    def crashed(self, name="probe"):
        """The app's crash events (reasons)."""
        return [e["reason"] for e in self.a.events(name)
                if e["event"] == "crash"]

    def check_alive(self):
        self.a.alive()
        assert self.a.k.alive()


@pytest.fixture
def sb(app_kernel, tmp_path):
    s = Sandbox(app_kernel, tmp_path)
    yield s
    s.check_alive()


# ---- what is not there ------------------------------------------------------

@pytest.mark.parametrize("expr", [
    "io", "os", "debug", "package", "require", "dofile", "loadfile",
    "string.dump", "rawget(_G, 'io')", "_ENV.os",
    "_G.loadstring or _G.module or _G.setfenv or _G.gcinfo",
    "getmetatable(_G) and getmetatable(_G).__index"])
def test_missing_global(sb, expr):
    r = sb.probe("      return type(%s)" % expr)
    assert r == {"ok": True, "res": "nil"}, (expr, r)


def test_globals_are_the_documented_ones(sb):
    r = sb.probe("""
      local names = {}
      for k in pairs(_G) do names[#names + 1] = k end
      table.sort(names)
      return table.concat(names, " ")
""")
    allowed = set("""_G _VERSION aaax assert collectgarbage coroutine error
        getmetatable ipairs load math next pairs pcall print rawequal rawget
        rawlen rawset select setmetatable string table tonumber tostring type
        utf8 xpcall""".split())
    got = set(r["res"].split())
    assert got <= allowed, got - allowed
    assert {"aaax", "string", "table", "math", "load", "pcall"} <= got


def test_libraries_reach_nothing_outside(sb):
    r = sb.probe("""
      local bad = {}
      for _, lib in ipairs({ string, table, math, utf8, coroutine }) do
        for k, v in pairs(lib) do
          if k == "dump" or k == "loadlib" or k == "execute" then bad[#bad + 1] = k end
        end
      end
      return #bad, type(string.dump), type(("").dump)
""")
    assert r == {"ok": True, "res": 0, "res2": "nil"}, r


def binary_chunk():
    """A genuine Lua 5.4 binary chunk of `return "from a binary chunk"`,
    made with lua_dump of the system's liblua5.4 (the one aaaxd links), as
    a Lua string literal; a truncated header when that library is not
    there."""
    try:
        lib = ctypes.CDLL("liblua5.4.so.0")
    except OSError:
        return '"\\27LuaT\\0\\25\\147\\r\\n\\26\\n"'
    lib.luaL_newstate.restype = ctypes.c_void_p
    lib.luaL_loadstring.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    writer_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p,
                                ctypes.c_void_p, ctypes.c_size_t,
                                ctypes.c_void_p)
    lib.lua_dump.argtypes = [ctypes.c_void_p, writer_t, ctypes.c_void_p,
                             ctypes.c_int]
    lib.lua_close.argtypes = [ctypes.c_void_p]
    lib.luaL_loadbufferx.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.c_size_t, ctypes.c_char_p,
                                     ctypes.c_char_p]
    parts = []

    def write(_L, p, size, _ud):
        parts.append(ctypes.string_at(p, size))
        return 0
    w = writer_t(write)
    L = lib.luaL_newstate()
    try:
        assert lib.luaL_loadstring(L, b"return 'from a binary chunk'") == 0
        assert lib.lua_dump(L, w, None, 0) == 0
        chunk = b"".join(parts)
        # it is a chunk an unrestricted Lua loads
        assert lib.luaL_loadbufferx(L, chunk, len(chunk), b"=x", b"b") == 0
    finally:
        lib.lua_close(L)
    return '"' + "".join("\\%d" % c for c in chunk) + '"'


def test_load_refuses_binary_chunks(sb):
    r = sb.probe(r"""
      local bin = %s
""" % binary_chunk() + r"""
      local out = {}
      for i, mode in ipairs({ "b", "bt", "t" }) do
        local f, err = load(bin, "=x", mode)
        out[i] = f == nil and err or "LOADED"
      end
      local f, err = load(bin)
      out[4] = f == nil and err or "LOADED"
      local parts, n = { bin:sub(1, 5), bin:sub(6) }, 0
      local f2, err2 = load(function () n = n + 1 return parts[n] end)
      out[5] = f2 == nil and err2 or "LOADED"
      return out
""")
    assert r["ok"] is True, r
    assert len(r["res"]) == 5
    for err in r["res"]:
        assert err != "LOADED"
        assert "binary" in err, r


def test_load_text_runs_in_the_sandbox(sb):
    # a text chunk loads fine, and sees the same sandbox
    r = sb.probe("""
      local f = assert(load("return type(io), type(os), 1 + 1"))
      local a, b, c = f()
      local g = load("return io", "x", "t", { io = 5 })
      return a .. b .. c .. type(g())
""")
    assert r == {"ok": True, "res": "nilnil2number"}, r


def test_string_metatable_is_not_reachable(sb):
    r = sb.probe("""
      local mt = getmetatable("")
      local ok = pcall(setmetatable, "", {})
      local ok2 = pcall(function () getmetatable("").__index = {} end)
      return type(mt) .. " " .. tostring(ok) .. " " .. tostring(ok2) .. " " .. ("x"):upper()
""")
    assert r["ok"] is True, r
    mt, ok, ok2, up = r["res"].split()
    assert mt != "table"
    assert ok == "false" and ok2 == "false" and up == "X"


def test_gc_metamethod_is_refused(sb):
    r = sb.probe("""
      return setmetatable({}, { __gc = function () aaax.send("user-1", "finalized") end })
""")
    assert r["ok"] is False and "__gc" in r["res"], r
    # a __gc added after setmetatable does not make a finalizer either
    sb.a.load_ok(write_app(sb.tmp, "gc2", PROBE % """
      local mt = {}
      local t = setmetatable({}, mt)
      mt.__gc = function () aaax.send("user-1", "finalized") end
      t = nil
      collectgarbage("collect")
      collectgarbage("collect")
      return "done"
"""))
    assert sb.a.ask("gc2", "go") == {"ok": True, "res": "done"}
    assert sb.a.mailbox(timeout=0.5,
                        pred=lambda m: m["data"] == "finalized") is None


@pytest.mark.parametrize("opt", ["stop", "restart", "incremental",
                                 "generational", "setpause", "setstepmul",
                                 "isrunning"])
def test_collectgarbage_options_are_refused(sb, opt):
    r = sb.probe('      return collectgarbage("%s")' % opt)
    assert r["ok"] is False, (opt, r)
    # the allowed ones work
    sb.a.load_ok(write_app(sb.tmp, "gcok", PROBE % """
      collectgarbage("collect")
      collectgarbage("step")
      return type(collectgarbage("count"))
"""))
    assert sb.a.ask("gcok", 1) == {"ok": True, "res": "number"}


def test_debug_like_access_through_coroutines_is_closed(sb):
    r = sb.probe("""
      local co = coroutine.running()
      local ok = pcall(coroutine.resume, co)
      local ok2 = pcall(coroutine.close, co)
      return tostring(ok) .. tostring(ok2)
""")
    assert r == {"ok": True, "res": "falsefalse"}, r


def test_identity_cannot_be_spoofed(sb):
    r = sb.probe("""
      pcall(function () aaax.self = "kernel.loader" end)
      pcall(rawset, aaax, "self", "kernel.loader")
      aaax.send("user-1", "who am i")
      return aaax.self
""")
    assert r["ok"] is True
    m = sb.a.mailbox(timeout=3, pred=lambda m: m["data"] == "who am i")
    assert m is not None and m["from"] == "probe", m


# ---- limits: instructions ---------------------------------------------------

def _crash_then_recover(sb, body, template, want, **manifest):
    """The probe crashes with a reason containing want, is restarted and
    answers the redelivered message; echo answers meanwhile."""
    r = sb.probe(body, template=template, **manifest)
    assert r == {"recovered": 2}, r
    reasons = sb.crashed()
    assert len(reasons) == 1, sb.a.events("probe")
    assert want in reasons[0], reasons
    sb.a.wait_event("restart", "probe")
    m = sb.a.modules()["probe"]
    assert m["state"] == "running" and want in m["error"], m
    return reasons[0]


def test_infinite_loop_crashes_the_app_only(sb):
    reason = _crash_then_recover(sb, "    while true do end", RAW,
                                 "instruction budget")
    assert "10000000" in reason


def test_infinite_loop_inside_pcall_is_not_caught(sb):
    _crash_then_recover(sb, """
    local ok = pcall(function () while true do end end)
    aaax.send("user-1", "pcall returned")
""", RAW, "instruction budget")
    assert sb.a.mailbox(timeout=0.3,
                        pred=lambda m: m["data"] == "pcall returned") is None


def test_infinite_loop_in_xpcall_handler_and_coroutine(sb):
    _crash_then_recover(sb, """
    xpcall(error, function () while true do end end)
""", RAW, "instruction budget")
    sb.a.load_ok(write_app(sb.tmp, "co", RAW % """
    local co = coroutine.wrap(function () while true do end end)
    pcall(co)
"""))
    assert sb.a.ask("co", "go", timeout=10) == {"recovered": 2}
    assert any("instruction budget" in e.get("reason", "")
               for e in sb.a.events("co") if e["event"] == "crash")


def test_infinite_loop_in_a_string_callback(sb):
    _crash_then_recover(sb, """
    string.gsub("aaaa", "a", function () while true do end end)
""", RAW, "instruction budget")


def test_a_small_instruction_limit_from_the_manifest(sb):
    reason = _crash_then_recover(sb, """
    local x = 0
    for i = 1, 100000 do x = x + i end
""", RAW, "instruction budget", limits={"instructions": 10000})
    assert "10000 " in reason + " "


def test_other_apps_answer_while_one_loops(sb):
    sb.a.load_ok(write_app(sb.tmp, "probe", RAW % "    while true do end"))
    mid = sb.a.user.send("probe", "go")
    for i in range(5):
        assert sb.a.ask("echo", i) == i
    assert sb.a.user.await_corr(mid, 10) == {"recovered": 2}


# ---- limits: memory ---------------------------------------------------------

def test_string_doubling_hits_the_memory_limit(sb):
    _crash_then_recover(sb, """
    local s = "x"
    while true do s = s .. s end
""", RAW, "memory")


def test_string_doubling_inside_pcall_is_not_caught(sb):
    _crash_then_recover(sb, """
    local t = {}
    pcall(function ()
      local s = "x"
      while true do s = s .. s; t[#t + 1] = s end
    end)
    aaax.send("user-1", "pcall returned")
""", RAW, "memory")


def test_table_growth_hits_the_memory_limit(sb):
    _crash_then_recover(sb, """
    local t = {}
    local i = 0
    while true do i = i + 1; t[i] = { i } end
""", RAW, "memory")


def test_string_rep_huge_is_refused(sb):
    r = sb.probe('      return #string.rep("x", 2^40)')
    # an error the handler sees, or an app crash: never the kernel's death
    if "recovered" in r:
        assert any("memory" in x for x in sb.crashed()), sb.crashed()
    else:
        assert r["ok"] is False, r
    sb.a.load_ok(write_app(sb.tmp, "rep2", PROBE % """
      return #string.rep("ab", 2^31, ",")
"""))
    r = sb.a.ask("rep2", 1, timeout=10)
    assert r.get("ok") is False or r.get("recovered"), r


def test_table_concat_and_unpack_are_bounded(sb):
    r = sb.probe("""
      local t = {}
      for i = 1, 1000 do t[i] = "x" end
      local ok1 = pcall(table.unpack, t, 1, 1e8)
      local ok2 = pcall(table.concat, t, string.rep("y", 1e6))
      return tostring(ok1) .. " " .. tostring(ok2)
""")
    assert r.get("ok") is False or r.get("recovered") \
        or r["res"].startswith("false"), r


def test_deep_recursion_is_an_error_not_a_kernel_death(sb):
    r = sb.probe("""
      local function f(n) return 1 + f(n + 1) end
      return f(1)
""")
    assert r.get("ok") is False or r.get("recovered") == 2, r
    sb.a.load_ok(write_app(sb.tmp, "deep2", PROBE % """
      local function g(n) return g(n + 1) end   -- a tail call: a loop
      return g(1)
"""))
    r = sb.a.ask("deep2", 1, timeout=10)
    assert r == {"recovered": 2}, r
    sb.a.load_ok(write_app(sb.tmp, "deep3", PROBE % """
      local s = string.rep("(", 100000) .. "1" .. string.rep(")", 100000)
      local f, err = load("return " .. s)
      return f == nil, err
"""))
    r = sb.a.ask("deep3", 1, timeout=10)
    assert r.get("recovered") or (r["ok"] is True and r["res"] is True), r


def test_yield_from_a_handler_does_not_hang_the_app(sb):
    r = sb.probe("      return coroutine.yield()", template=PROBE)
    assert r.get("ok") is False or r.get("recovered"), r
    sb.a.load_ok(write_app(sb.tmp, "yield2", RAW % "    coroutine.yield(1)"))
    r = sb.a.ask("yield2", 1, timeout=10)
    assert r == {"recovered": 2} or r == {"ok": True}, r


def test_memory_limit_from_the_manifest(sb):
    reason = _crash_then_recover(sb, """
    local t = {}
    for i = 1, 100 do t[i] = string.rep("x", 10000) .. i end
""", RAW, "memory", limits={"memory_kb": 256})
    assert "256 KiB" in reason
    assert sb.a.modules()["probe"]["limits"]["memory_kb"] == 256


def test_crash_in_main_lua_at_restart_is_supervised(sb):
    """A main.lua that hits the instruction limit at its top level refuses
    the load; no kernel harm."""
    sb.a.load_ok(write_app(sb.tmp, "ok-app", ECHO))
    r = sb.a.load(write_app(sb.tmp, "toplevel", "while true do end\nreturn {}\n"))
    assert r["ok"] is False and "instruction" in r["reason"], r
    r = sb.a.load(write_app(sb.tmp, "topmem",
                            'local s = "x" while true do s = s .. s end\n'))
    assert r["ok"] is False and "memory" in r["reason"], r
