"""Lua apps against a real aaaxd (docs/LUA.md, the app host's spec): the
module loader (kernel.loader), its kernel.modules events and audit records,
the aaax API seen end to end from small test apps, supervision and the
lifecycle of apps.

Every kernel here runs with `apps = {}` (the app_kernel fixture), so the
example apps of the embedded defaults stay out; the test apps are written
into the test's temporary directory and loaded by a privileged client.

The helpers at the top (write_app, Apps, ...) are shared with
test_app_sandbox.py and test_cli_app.py."""

import hashlib
import json
import os
import re
import subprocess
import time

import pytest

import aaax
from conftest import AAAX_CLI, wait_until

HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ---- writing apps -----------------------------------------------------------

def lua(v):
    """A Python value as a Lua literal (ASCII strings)."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(lua(x) for x in v) + " }"
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (k, lua(x))
                                for k, x in v.items()) + " }"
    raise TypeError(v)


def manifest_text(name, version="1.0.0", **fields):
    """manifest.lua for an app: one field a line, name on line 2, version
    on line 3, the other fields from line 4 on in the order given."""
    out = ["return {", "  name = %s," % lua(name),
           "  version = %s," % lua(version)]
    for k, v in fields.items():
        out.append("  %s = %s," % (k, lua(v)))
    out.append("}")
    return "\n".join(out) + "\n"


def write_app(root, name, main, manifest=None, dirname=None, **fields):
    """Writes DIR = root/(dirname or name) with manifest.lua (manifest text,
    or made from name and fields) and main.lua; returns DIR."""
    d = os.path.join(str(root), dirname or name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "manifest.lua"), "w") as f:
        f.write(manifest if manifest is not None
                else manifest_text(name, **fields))
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write(main)
    return d


ECHO = """
return {
  message = function (msg) aaax.reply(msg, msg.data) end,
}
"""

# Runs the Lua code of each request ({code = "..."}) as a function of
# (msg) and answers {ok, res, res2, n}: pcall's outcome. A test's own
# probe into the API without an app per question.
EVAL = """
return {
  message = function (msg)
    local f, err = load(msg.data.code, "=probe")
    if not f then
      aaax.reply(msg, { ok = false, res = "load: " .. err })
      return
    end
    local r = table.pack(pcall(f, msg))
    aaax.reply(msg, { ok = r[1], res = r[2], res2 = r[3], n = r.n })
  end,
}
"""


# ---- a kernel seen from the tests -------------------------------------------

class Apps:
    """Clients on a kernel for app tests: `admin` (privileged; asks the
    loader), `watch` (privileged, subscribed to kernel.modules: `events`),
    `user` (an ordinary system, user-1, that talks to the apps). Waits keep
    every client's session alive."""

    def __init__(self, k, user="user-1", channels=()):
        self.k = k
        self.admin = k.client("admin", privileged=True, token=k.token)
        self.watch = k.client("watch", privileged=True, token=k.token)
        self.watch.subscribe("kernel.modules")
        self.user = k.client(user, channels=list(channels))
        self._clients = [self.admin, self.watch, self.user]
        self._events = []

    def client(self, system, **kw):
        c = self.k.client(system, **kw)
        self._clients.append(c)
        return c

    def keepalive(self):
        for c in self._clients:
            if c.docked:
                c.keepalive()

    # -- the loader

    def loader(self, op, **body):
        self.keepalive()
        return self.admin.loader(op, **body)

    def load(self, *paths):
        if len(paths) == 1:
            return self.loader("load", path=paths[0])
        return self.loader("load", paths=list(paths))

    def load_ok(self, *paths):
        r = self.load(*paths)
        assert r["ok"] is True, r
        return r["modules"]

    def modules(self):
        r = self.loader("list")
        assert r["ok"] is True, r
        return {m["name"]: m for m in r["modules"]}

    def lifecycle(self, **body):
        self.keepalive()
        return self.admin.kernel_request("kernel.lifecycle", body)

    # -- talking to apps

    def ask(self, to, data, timeout=5.0, client=None):
        """Sends data to app `to` and returns the data of its answer (the
        mailbox message whose corr is the request's id)."""
        c = client or self.user
        self.keepalive()
        mid = c.send(to, data)
        return c.await_corr(mid, timeout)

    def ask_env(self, to, data, timeout=5.0):
        """As ask, but returns the answer's whole envelope."""
        self.keepalive()
        mid = self.user.send(to, data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.user.recv(0.05)
            if p and p.get("sub") == "@" + self.user.system:
                m = p["msg"]
                self.user.ack(p["sub"], [m["id"]])
                if m.get("corr") == mid:
                    return mid, m
            self.keepalive()
        raise AssertionError("no answer from %s" % to)

    def no_answer(self, to, data, wait=1.0):
        """True when app `to` does not answer within wait seconds."""
        try:
            self.ask(to, data, timeout=wait)
        except aaax.AaaxTimeout:
            return True
        return False

    def mailbox(self, timeout=2.0, pred=None):
        """The data of the next message in user's mailbox (matching pred)
        within timeout, else None; acknowledged."""
        deadline = time.monotonic() + timeout
        box = "@" + self.user.system
        while time.monotonic() < deadline:
            p = self.user.recv(0.05)
            if p and p.get("sub") == box:
                self.user.ack(box, [p["msg"]["id"]])
                if pred is None or pred(p["msg"]):
                    return p["msg"]
            self.keepalive()
        return None

    def eval(self, app, code, timeout=5.0):
        """Runs code in an EVAL app; returns its {ok, res, res2, n}."""
        return self.ask(app, {"code": code}, timeout)

    # -- kernel.modules

    def events(self, name=None):
        """Every kernel.modules event so far (the data), in order."""
        while True:
            p = self.watch.recv(0)
            if p is None:
                break
            if p.get("sub") == "kernel.modules":
                self._events.append(p["msg"]["data"])
        return [e for e in self._events if name is None or e["name"] == name]

    def wait_event(self, event, name, timeout=10.0, count=1):
        """Waits until `count` events `event` of app `name` came; returns
        the last of them."""
        deadline = time.monotonic() + timeout
        while True:
            got = [e for e in self.events(name) if e["event"] == event]
            if len(got) >= count:
                return got[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(
                    "no %r event for %s within %ss; events: %r"
                    % (event, name, timeout, self.events(name)))
            self.keepalive()
            p = self.watch.recv(0.05)
            if p is not None and p.get("sub") == "kernel.modules":
                self._events.append(p["msg"]["data"])

    def wait_state(self, name, state, timeout=10.0):
        def check():
            m = self.modules().get(name)
            return m if m and m["state"] == state else None
        return wait_until(check, timeout, 0.05,
                          "app %s in state %s" % (name, state))

    def heartbeat(self, pred, timeout=5.0):
        """The first heartbeat whose data satisfies pred."""
        hb = self.client("hb-watch-%d" % len(self._clients))
        hb.subscribe("heartbeat")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = hb.recv(0.1)
            self.keepalive()
            if p and p.get("sub") == "heartbeat" and pred(p["msg"]["data"]):
                return p["msg"]["data"]
        raise AssertionError("no such heartbeat within %ss" % timeout)

    def listed(self):
        """Everything kernel.lifecycle lists: the docked systems and the
        apps that are not docked (failed, stopped), by id."""
        r = self.lifecycle(op="list")
        return {s["id"]: s for s in r["systems"]}

    def systems(self):
        """The docked systems (kernel.lifecycle list), by id."""
        return {i: s for i, s in self.listed().items()
                if s.get("session") is not None}

    def alive(self, echo="echo"):
        """The kernel answers PING and the echo app echoes."""
        assert self.k.alive(), self.k.read_log()
        self.admin.ping()
        token = {"alive": time.monotonic()}
        assert self.ask(echo, token) == token


def audit_records(k, n=500):
    """The last n audit records of kernel k, read with the CLI."""
    p = subprocess.run([AAAX_CLI, "audit", "tail", "-n", str(n), "--data",
                        k.data], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


def module_audit(k, name):
    return [r for r in audit_records(k)
            if r.get("kind") == "module" and r.get("subject") == name]


@pytest.fixture
def apps(app_kernel):
    """Apps on a kernel with a policy for the API tests."""
    return Apps(app_kernel())


# ---- the loader: load, list, unload -----------------------------------------

POLICY_READ = """
    { subject = "reader", action = "fs.read", target = "docs/*", effect = "allow" },
"""


def test_load_answers_with_the_module(app_kernel, tmp_path):
    a = Apps(app_kernel(policy=POLICY_READ))
    d = write_app(tmp_path, "reader", ECHO, version="2.5.1",
                  permissions=["fs.read:docs/*", "net.fetch:https://*"])
    before = time.time()
    r = a.load(d)
    assert r["ok"] is True, r
    assert len(r["modules"]) == 1
    m = r["modules"][0]
    assert m["name"] == "reader"
    assert m["version"] == "2.5.1"
    assert m["path"] == d
    assert HEX64.match(m["digest"]), m["digest"]
    assert m["state"] == "running"
    assert m["pinned"] is None
    assert m["granted"] == ["fs.read:docs/*"]
    assert m["refused"] == ["net.fetch:https://*"]
    assert m["channels"] == [] and m["depends"] == []
    assert m["restarts"] == 0 and m["error"] is None
    assert m["handled"] == 0
    assert isinstance(m["memory"], int) and m["memory"] > 0
    assert before - 1 <= m["since"] <= time.time() + 1
    assert m["limits"] == {"memory_kb": 4096, "instructions": 10000000,
                           "files_kb": 16384, "kv_kb": 16384}
    # it is docked under its name and answers
    assert "reader" in a.systems()
    assert a.ask("reader", {"x": [1, 2]}) == {"x": [1, 2]}
    assert a.modules()["reader"]["handled"] == 1


def test_digest_changes_with_the_files_only(apps, tmp_path):
    d = write_app(tmp_path, "dg", ECHO)
    first = apps.load_ok(d)[0]["digest"]
    assert apps.loader("unload", name="dg")["ok"] is True
    assert apps.load_ok(d)[0]["digest"] == first   # same files, same digest
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("any file of the directory counts\n")
    r = apps.loader("reload", name="dg")
    assert r["ok"] is True, r
    assert r["modules"][0]["digest"] != first


def test_manifest_limits_are_reported(apps, tmp_path):
    d = write_app(tmp_path, "lim", ECHO,
                  limits={"memory_kb": 1024, "instructions": 500000,
                          "kv_kb": 64, "files_kb": 128})
    m = apps.load_ok(d)[0]
    assert m["limits"] == {"memory_kb": 1024, "instructions": 500000,
                           "files_kb": 128, "kv_kb": 64}


def test_list_has_every_loaded_app(apps, tmp_path):
    assert apps.modules() == {}
    apps.load_ok(write_app(tmp_path, "one", ECHO))
    apps.load_ok(write_app(tmp_path, "two", ECHO))
    mods = apps.modules()
    assert set(mods) == {"one", "two"}
    assert all(m["state"] == "running" for m in mods.values())
    assert all(HEX64.match(m["digest"]) for m in mods.values())


def test_unload_stops_and_forgets_the_app(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "echo", ECHO))
    apps.load_ok(write_app(tmp_path, "gone", ECHO))
    assert apps.ask("gone", 1) == 1
    r = apps.loader("unload", name="gone")
    assert r["ok"] is True, r
    assert "gone" not in apps.modules()
    assert "gone" not in apps.systems()
    ev = apps.wait_event("unload", "gone")
    assert ev["state"] == "stopped"
    assert apps.no_answer("gone", 2, wait=1.0)
    hb = apps.heartbeat(lambda d: "gone" not in d["systems"]
                        and "echo" in d["systems"])
    assert "gone" not in hb["systems"]
    # a second unload: it is not loaded any more
    r = apps.loader("unload", name="gone")
    assert r["ok"] is False and "gone" in r["reason"]
    apps.alive()


def test_unloaded_app_leaves_the_heartbeat_apps_map(apps, tmp_path):
    """The heartbeat's `apps` shows the state of the loaded apps; one that
    was unloaded is not loaded any more."""
    apps.load_ok(write_app(tmp_path, "transient", ECHO))
    apps.heartbeat(lambda d: d.get("apps", {}).get("transient") == "running")
    assert apps.loader("unload", name="transient")["ok"] is True
    hb = apps.heartbeat(lambda d: "transient" not in d["systems"])
    assert "transient" not in hb["apps"], hb["apps"]


def test_reload_runs_the_new_main_lua(apps, tmp_path):
    main = """
return {
  message = function (msg) aaax.reply(msg, { version = %d }) end,
  stop = function () aaax.kv.put("stopped_version", %d) end,
}
"""
    d = write_app(tmp_path, "rl", main % (1, 1))
    old = apps.load_ok(d)[0]
    assert apps.ask("rl", {}) == {"version": 1}
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write(main % (2, 2) + "-- v2\n")
    r = apps.loader("reload", name="rl")
    assert r["ok"] is True, r
    new = r["modules"][0]
    assert new["name"] == "rl" and new["state"] == "running"
    assert new["digest"] != old["digest"]
    assert apps.ask("rl", {}) == {"version": 2}
    ev = apps.wait_event("reload", "rl")
    assert ev["digest"] == new["digest"]
    # the old instance's stop() ran (v2's, at this reload: it wrote 2)
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write('return { message = function (msg) '
                'aaax.reply(msg, { stopped = aaax.kv.get("stopped_version") }) '
                'end }\n')
    assert apps.loader("reload", name="rl")["ok"] is True
    assert apps.ask("rl", {}) == {"stopped": 2}


@pytest.mark.parametrize("broken,line", [
    ("return {\n  x = = 1,\n}\n", "main.lua:2:"),
    ('return {\n  start = function ()\n    error("v2 will not start")\n'
     '  end,\n}\n', "main.lua:3:"),
], ids=["syntax-error", "start-raises"])
def test_reload_to_broken_code_does_not_lose_the_app(apps, tmp_path, broken,
                                                     line):
    d = write_app(tmp_path, "rb", ECHO)
    apps.load_ok(d)
    assert apps.ask("rb", 1) == 1
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write(broken)
    r = apps.loader("reload", name="rb")
    assert r["ok"] is False
    assert line in r["reason"], r
    # the app is still loaded: running the old code, or at least listed
    # (and a reload of fixed files brings it back)
    mods = apps.modules()
    assert "rb" in mods, ("the failed reload unloaded the app", mods,
                          apps.events("rb"))
    # what the heartbeat says agrees with the loader
    hb = apps.heartbeat(lambda d: True)
    assert hb["apps"].get("rb") == mods["rb"]["state"], (hb["apps"], mods)
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write(ECHO)
    assert apps.loader("reload", name="rb")["ok"] is True
    assert apps.ask("rb", 2) == 2


def test_a_failed_start_in_a_multi_load_is_reported(apps, tmp_path):
    good = write_app(tmp_path, "good", ECHO)
    bad = write_app(tmp_path, "bad", 'return { start = function () '
                    'error("bad start") end }\n')
    r = apps.load(good, bad)
    assert r["ok"] is False
    assert "bad" in r["reason"] and "bad start" in r["reason"], r
    mods = apps.modules()
    assert "bad" not in mods
    # what the answer lists as loaded is what is loaded
    assert {m["name"] for m in r["modules"]} == set(mods)


def test_load_refused_when_the_name_is_docked(apps, tmp_path):
    r = apps.load(write_app(tmp_path, "user-1", ECHO))
    assert r["ok"] is False
    assert "409" in r["reason"] and "user-1" in r["reason"], r
    assert "user-1" not in apps.modules()
    assert apps.user.ping()


def test_reserved_names_are_refused(apps, tmp_path):
    for name in ("kernel.evil", "kernelish", ".hidden", "has space", ""):
        d = write_app(tmp_path, "n%d" % len(name), ECHO, manifest=(
            'return {\n  name = %s,\n  version = "1",\n}\n' % lua(name)))
        r = apps.load(d)
        assert r["ok"] is False, (name, r)
        assert os.path.join(d, "manifest.lua") + ":2:" in r["reason"], r
    assert apps.modules() == {}


def test_reload_of_unknown_app_is_refused(apps):
    r = apps.loader("reload", name="nosuch")
    assert r["ok"] is False and "nosuch" in r["reason"]


def test_load_twice_is_refused_already_loaded(apps, tmp_path):
    d = write_app(tmp_path, "twice", ECHO)
    apps.load_ok(d)
    r = apps.load(d)
    assert r["ok"] is False
    assert "already loaded" in r["reason"] and "twice" in r["reason"]
    # the same name from another directory too
    d2 = write_app(tmp_path, "twice", ECHO, dirname="twice-copy")
    r = apps.load(d2)
    assert r["ok"] is False and "already loaded" in r["reason"]
    # the loaded one is untouched
    assert apps.modules()["twice"]["path"] == d
    assert apps.ask("twice", "still") == "still"


@pytest.mark.parametrize("fields,line,text", [
    # manifest_text: name on line 2, version on 3, then one field a line
    ({"permissions": ["chan.write:x", "nocolon"]}, 4, "permissions[2]"),
    ({"channels": [], "frob": 1}, 5, "frob"),
    ({"depends": [], "channels": [], "limits": {"memory_kb": 32}}, 6,
     "limits.memory_kb"),
    ({"depends": ["self-dep"]}, 4, "depends"),
])
def test_manifest_errors_name_the_file_and_line(apps, tmp_path, fields, line,
                                                text):
    d = write_app(tmp_path, "self-dep", ECHO, **fields)
    r = apps.load(d)
    assert r["ok"] is False, r
    where = os.path.join(d, "manifest.lua") + ":%d:" % line
    assert where in r["reason"], r["reason"]
    assert text in r["reason"], r["reason"]
    assert "self-dep" not in apps.modules()


def test_manifest_above_the_kernels_ceiling(apps, tmp_path):
    d = write_app(tmp_path, "greedy", ECHO, limits={"memory_kb": 131072})
    r = apps.load(d)
    assert r["ok"] is False
    assert os.path.join(d, "manifest.lua") in r["reason"], r
    assert "131072" in r["reason"] and "ceiling" in r["reason"], r


def test_manifest_syntax_error_and_missing_name(apps, tmp_path):
    d = write_app(tmp_path, "x", ECHO,
                  manifest='return {\n  name = "x",\n  version = "1"\n  oops\n}\n')
    r = apps.load(d)
    assert r["ok"] is False
    assert os.path.join(d, "manifest.lua") + ":4:" in r["reason"], r
    d = write_app(tmp_path, "y", ECHO, manifest='return {\n  version = "1",\n}\n')
    r = apps.load(d)
    assert r["ok"] is False
    assert "name" in r["reason"] and "missing" in r["reason"], r
    r = apps.load(str(tmp_path / "no-such-dir"))
    assert r["ok"] is False and "no-such-dir" in r["reason"]
    assert apps.modules() == {}


def test_syntax_error_in_main_lua_names_the_line(apps, tmp_path):
    d = write_app(tmp_path, "syn", "local x = 1\n\nreturn {\n"
                  "  message = function (msg)\n    x = = 2\n  end,\n}\n")
    r = apps.load(d)
    assert r["ok"] is False
    assert "main.lua:5:" in r["reason"], r["reason"]
    assert "syn" in r["reason"]
    assert "syn" not in apps.modules()
    assert "syn" not in apps.systems()


def test_main_lua_must_return_a_table(apps, tmp_path):
    r = apps.load(write_app(tmp_path, "num", "return 42\n"))
    assert r["ok"] is False and "table" in r["reason"], r


def test_start_error_refuses_the_load(apps, tmp_path):
    d = write_app(tmp_path, "st", 'return {\n  start = function ()\n'
                  '    error("cannot start: no config")\n  end,\n}\n')
    r = apps.load(d)
    assert r["ok"] is False
    assert "cannot start: no config" in r["reason"], r
    assert "main.lua:3" in r["reason"], r
    assert "st" not in apps.modules()
    assert "st" not in apps.systems()
    # nothing half-done: it loads once fixed
    write_app(tmp_path, "st", ECHO)
    assert apps.load_ok(d)[0]["state"] == "running"


DEP_MAIN = """
return {
  start = function ()
    aaax.kv.put("started_at", aaax.mono())
  end,
  message = function (msg)
    aaax.reply(msg, { started_at = aaax.kv.get("started_at") })
  end,
}
"""


def test_dependencies_load_first(apps, tmp_path):
    a = write_app(tmp_path, "base-a", DEP_MAIN)
    b = write_app(tmp_path, "user-b", DEP_MAIN, depends=["base-a"])
    r = apps.load(b, a)
    assert r["ok"] is True, r
    assert {m["name"] for m in r["modules"]} == {"base-a", "user-b"}
    assert all(m["state"] == "running" for m in r["modules"])
    assert apps.modules()["user-b"]["depends"] == ["base-a"]
    loads = [e["name"] for e in apps.events() if e["event"] == "load"]
    assert loads == ["base-a", "user-b"]
    ta = apps.ask("base-a", {})["started_at"]
    tb = apps.ask("user-b", {})["started_at"]
    assert ta <= tb


def test_missing_dependency_names_both_apps(apps, tmp_path):
    b = write_app(tmp_path, "needy", ECHO, depends=["provider"])
    r = apps.load(b)
    assert r["ok"] is False
    assert "needy" in r["reason"] and "provider" in r["reason"], r
    assert "needy" not in apps.modules()


def test_dependency_cycle_is_named(apps, tmp_path):
    p1 = write_app(tmp_path, "cy1", ECHO, depends=["cy2"])
    p2 = write_app(tmp_path, "cy2", ECHO, depends=["cy3"])
    p3 = write_app(tmp_path, "cy3", ECHO, depends=["cy1"])
    r = apps.load(p1, p2, p3)
    assert r["ok"] is False
    assert "cycle" in r["reason"], r
    for n in ("cy1", "cy2", "cy3"):
        assert n in r["reason"]
    assert apps.modules() == {}


def test_unload_refused_while_others_depend(apps, tmp_path):
    a = write_app(tmp_path, "lib", ECHO)
    b = write_app(tmp_path, "app1", ECHO, depends=["lib"])
    c = write_app(tmp_path, "app2", ECHO, depends=["lib"])
    apps.load_ok(a, b, c)
    r = apps.loader("unload", name="lib")
    assert r["ok"] is False
    assert "app1" in r["reason"] and "app2" in r["reason"], r
    assert apps.modules()["lib"]["state"] == "running"
    assert apps.ask("lib", "up") == "up"
    assert apps.loader("unload", name="app1")["ok"] is True
    r = apps.loader("unload", name="lib")
    assert r["ok"] is False and "app2" in r["reason"]
    assert "app1" not in r["reason"]
    assert apps.loader("unload", name="app2")["ok"] is True
    assert apps.loader("unload", name="lib")["ok"] is True


def test_pin_refuses_changed_files_until_pinned_again(apps, tmp_path):
    d = write_app(tmp_path, "pinned",
                  'return { message = function (msg) '
                  'aaax.reply(msg, 1) end }\n')
    digest = apps.load_ok(d)[0]["digest"]
    r = apps.loader("pin", name="pinned")
    assert r["ok"] is True and r["digest"] == digest
    assert apps.modules()["pinned"]["pinned"] == digest
    assert apps.wait_event("pin", "pinned")["digest"] == digest
    # an unchanged reload is fine
    assert apps.loader("reload", name="pinned")["ok"] is True
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write('return { message = function (msg) aaax.reply(msg, 2) end }\n')
    r = apps.loader("reload", name="pinned")
    assert r["ok"] is False
    assert "pinned" in r["reason"] and digest[:12] in r["reason"], r
    assert apps.ask("pinned", {}) == 1          # the old one still runs
    r = apps.loader("pin", name="pinned")
    assert r["ok"] is True and r["digest"] != digest
    new = r["digest"]
    r = apps.loader("reload", name="pinned")
    assert r["ok"] is True, r
    assert r["modules"][0]["digest"] == new
    assert apps.ask("pinned", {}) == 2
    # the pin outlives an unload: loading other files is refused
    assert apps.loader("unload", name="pinned")["ok"] is True
    with open(os.path.join(d, "main.lua"), "a") as f:
        f.write("-- edited while unloaded\n")
    r = apps.load(d)
    assert r["ok"] is False and "pinned" in r["reason"], r
    # unpin lifts it
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write('return { message = function (msg) aaax.reply(msg, 2) end }\n')
    apps.load_ok(d)
    r = apps.loader("unpin", name="pinned")
    assert r["ok"] is True, r
    assert apps.modules()["pinned"]["pinned"] is None
    apps.wait_event("unpin", "pinned")
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write('return { message = function (msg) aaax.reply(msg, 3) end }\n')
    assert apps.loader("reload", name="pinned")["ok"] is True
    assert apps.ask("pinned", {}) == 3


def test_loader_refuses_bad_requests(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "x", ECHO))
    for body, text in [({"op": "frob", "name": "x"}, "frob"),
                       ({"op": "frob", "name": "nosuch"}, "nosuch"),
                       ({"op": "unload"}, "name"),
                       ({"op": "load"}, "path"),
                       ({"op": "load", "paths": [1, 2]}, "paths"),
                       ({"op": "pin", "name": "nosuch"}, "nosuch"),
                       ({"name": "x"}, "op")]:
        apps.keepalive()
        r = apps.admin.kernel_request("kernel.loader", body)
        assert r["ok"] is False, (body, r)
        assert text in r["reason"], (body, r)


def test_loader_serves_privileged_systems_only(apps):
    with pytest.raises(aaax.AaaxError) as e:
        apps.user.write("kernel.loader", {"op": "list"})
    assert e.value.code == 403


# ---- kernel.modules and the audit log ---------------------------------------

def test_every_change_is_broadcast_and_audited(apps, tmp_path):
    d = write_app(tmp_path, "ev", """
return {
  message = function (msg)
    if msg.data == "crash" and msg.attempt == 1 then error("asked to crash") end
    aaax.reply(msg, msg.attempt)
  end,
}
""", version="3.1")
    digest = apps.load_ok(d)[0]["digest"]
    assert apps.loader("pin", name="ev")["ok"] is True
    assert apps.loader("reload", name="ev")["ok"] is True
    assert apps.loader("unpin", name="ev")["ok"] is True
    assert apps.ask("ev", "crash") == 2          # crashed, then redelivered
    apps.wait_event("restart", "ev")
    assert apps.loader("unload", name="ev")["ok"] is True
    apps.wait_event("unload", "ev")
    evs = apps.events("ev")
    kinds = [e["event"] for e in evs]
    assert kinds == ["load", "pin", "reload", "unpin", "crash", "restart",
                     "unload"], kinds
    for e in evs:
        assert e["name"] == "ev" and e["version"] == "3.1"
        assert e["digest"] == digest
        assert isinstance(e["ts"], float)
        assert e["state"] in ("running", "restarting", "stopped")
    crash = evs[kinds.index("crash")]
    assert crash["state"] == "restarting"
    assert "asked to crash" in crash["reason"]
    assert evs[kinds.index("unload")]["state"] == "stopped"
    # the same in the audit log, kind "module"
    def audited():
        recs = module_audit(apps.k, "ev")
        acts = [r["action"] for r in recs]
        want = ["module.load", "module.pin", "module.reload",
                "module.unpin", "module.crash", "module.restart",
                "module.unload"]
        return recs if all(w in acts for w in want) else None
    recs = wait_until(audited, 5, 0.2, "module audit records")
    acts = [r["action"] for r in recs]
    assert acts.index("module.load") < acts.index("module.pin") \
        < acts.index("module.reload") < acts.index("module.unload")
    by = {r["action"]: r for r in recs}
    assert by["module.load"]["verdict"] == "ok"
    assert "admin" in by["module.load"]["reason"]
    assert by["module.crash"]["verdict"] != "ok"
    assert "asked to crash" in by["module.crash"]["reason"]


def test_refused_load_is_audited(apps, tmp_path):
    d = write_app(tmp_path, "bad", ECHO, frob=1)
    assert apps.load(d)["ok"] is False
    recs = wait_until(
        lambda: [r for r in audit_records(apps.k)
                 if r.get("kind") == "module"
                 and r.get("action") == "module.load"
                 and r.get("verdict") == "refused"],
        5, 0.2, "a refused module.load record")
    assert "frob" in recs[-1]["reason"]


# ---- the aaax API -----------------------------------------------------------

def test_reply_round_trip_with_corr_and_values(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "echo", ECHO))
    data = {"int": 7, "neg": -3, "float": 2.5, "str": "h\u00e9llo",
            "list": [1, "two", 3.5, False], "map": {"a": {"b": [1]}},
            "t": True, "big": 2 ** 40, "empty": ""}
    mid, env = apps.ask_env("echo", data)
    assert env["corr"] == mid
    assert env["from"] == "echo" and env["to"] == "user-1"
    assert env["data"] == data
    assert isinstance(env["data"]["float"], float)
    assert isinstance(env["data"]["int"], int)


def test_send_with_corr(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "sender", """
return {
  message = function (msg)
    assert(aaax.send(msg.from, { hello = msg.data.n }, "my-corr-" .. msg.data.n) == true)
    aaax.send("user-1", "no corr")
  end,
}
"""))
    apps.user.send("sender", {"n": 5})
    m = apps.mailbox(pred=lambda m: m["corr"] == "my-corr-5")
    assert m is not None and m["data"] == {"hello": 5}
    assert m["from"] == "sender"
    m = apps.mailbox(pred=lambda m: m["data"] == "no corr")
    assert m is not None and m["corr"] is None


def test_send_transient_and_reply_to_a_transient_request(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "echo", ECHO))
    apps.load_ok(write_app(tmp_path, "tsender", """
return {
  message = function (msg)
    aaax.send(msg.from, { t = msg.data.n }, nil, { transient = true })
    aaax.send(msg.from, "durable", nil, { transient = false })
  end,
}
"""))
    u = apps.user
    # A transient request to echo: aaax.reply answers transiently too.
    apps.keepalive()
    mid = u.send("echo", {"q": 1}, transient=True)
    deadline = time.monotonic() + 5
    env = None
    while env is None and time.monotonic() < deadline:
        p = u.recv(0.05)
        if p and p["msg"].get("corr") == mid:
            env = p["msg"]
    assert env is not None and env["data"] == {"q": 1}
    assert "attempt" not in env                 # the answer was not stored
    # A durable request still gets a durable answer.
    mid2, env2 = apps.ask_env("echo", {"q": 2})
    assert env2["attempt"] == 1
    # aaax.send with {transient = true} / {transient = false}.
    u.send("tsender", {"n": 3})
    got = {}
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        p = u.recv(0.05)
        if p and p["msg"]["from"] == "tsender":
            got[json.dumps(p["msg"]["data"], sort_keys=True)] = p["msg"]
            if "attempt" in p["msg"]:
                u.ack(p["sub"], [p["msg"]["id"]])
    assert "attempt" not in got['{"t": 3}']
    assert got['"durable"']["attempt"] == 1


def test_send_options_are_checked(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "evalapp", EVAL))
    r = apps.eval("evalapp", "return aaax.send('user-1', 1, nil, "
                             "{ transient = true, bogus = 1 })")
    assert r["ok"] is False and "only option is transient" in r["res"]
    r = apps.eval("evalapp", "return aaax.send('user-1', 1, nil, "
                             "{ transient = 'yes' })")
    assert r["ok"] is False and "must be a boolean" in r["res"]
    r = apps.eval("evalapp", "return aaax.send('user-1', 1, nil, 5)")
    assert r["ok"] is False


CHANNELS = """
    { name = "news", kind = "broadcast" },
    { name = "feed", kind = "broadcast" },
    { name = "tasks", kind = "work-queue", durable = true, max_attempts = 5 },
"""

CHANNEL_POLICY = """
    { subject = "*", action = "chan.read", target = "news", effect = "allow" },
    { subject = "user-1", action = "chan.write", target = "news", effect = "allow" },
    { subject = "*", action = "chan.read", target = "feed", effect = "allow" },
    { subject = "writer", action = "chan.write", target = "feed", effect = "allow" },
    { subject = "user-1", action = "chan.write", target = "tasks", effect = "allow" },
    { subject = "claimer", action = "chan.claim", target = "tasks", effect = "allow" },
"""


@pytest.fixture
def chans(app_kernel):
    return Apps(app_kernel(channels=CHANNELS, policy=CHANNEL_POLICY),
                channels=["news", "feed", "tasks"])


def test_write_to_a_broadcast_channel(chans, tmp_path):
    chans.load_ok(write_app(tmp_path, "writer", """
return {
  message = function (msg)
    aaax.write("feed", { n = msg.data, by = aaax.self })
    aaax.reply(msg, "written")
  end,
}
""", channels=["feed"]))
    chans.user.subscribe("feed")
    assert chans.ask("writer", 41) == "written"
    got = None
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and got is None:
        p = chans.user.recv(0.1)
        if p and p.get("sub") == "feed":
            got = p["msg"]
    assert got is not None, "nothing on feed"
    assert got["from"] == "writer" and got["data"] == {"n": 41, "by": "writer"}


def test_write_without_a_grant_is_refused_not_raised(chans, tmp_path):
    # no rule lets "nogrant" write feed: the write is refused (logged), the
    # handler goes on
    chans.load_ok(write_app(tmp_path, "nogrant", """
return {
  message = function (msg)
    local r = aaax.write("feed", "x")
    aaax.reply(msg, { returned = r })
  end,
}
""", channels=["feed"]))
    chans.user.subscribe("feed")
    assert chans.ask("nogrant", 1) == {"returned": True}
    p = chans.user.recv(0.5)
    assert p is None or p.get("sub") != "feed"
    chans.k.wait_log("app nogrant")


def test_subscribe_and_receive_broadcasts(chans, tmp_path):
    chans.load_ok(write_app(tmp_path, "listener", """
return {
  start = function () assert(aaax.subscribe("news")) end,
  message = function (msg)
    if msg.chan == "news" then
      aaax.send("user-1", { seen = msg.data, chan = msg.chan, from = msg.from })
    elseif msg.data == "unsub" then
      aaax.reply(msg, { unsub = aaax.unsubscribe("news") })
    elseif msg.data == "bad" then
      local ok, err = aaax.subscribe("no-such-chan")
      aaax.reply(msg, { ok = ok, err = err })
    end
  end,
}
""", channels=["news"]))
    chans.user.write("news", {"headline": 1})
    m = chans.mailbox(pred=lambda m: isinstance(m["data"], dict)
                      and "seen" in m["data"])
    assert m is not None, "the app did not get the broadcast"
    assert m["data"] == {"seen": {"headline": 1}, "chan": "news",
                         "from": "user-1"}
    r = chans.ask("listener", "bad")
    assert r.get("ok") is None and r["err"].startswith("404"), r
    assert chans.ask("listener", "unsub") == {"unsub": True}
    chans.user.write("news", {"headline": 2})
    assert chans.mailbox(timeout=0.7) is None


def test_claim_ack_nack_on_a_work_queue(chans, tmp_path):
    chans.load_ok(write_app(tmp_path, "claimer", """
return {
  message = function (msg)
    local op = msg.data.op
    if op == "claim" then
      local got = aaax.claim("tasks", msg.data.max, msg.data.wait or 0)
      local out = {}
      for i, m in ipairs(got) do out[i] = { id = m.id, data = m.data, attempt = m.attempt } end
      aaax.reply(msg, out)
    elseif op == "ack" then
      aaax.reply(msg, { n = aaax.ack("tasks", msg.data.ids) })
    elseif op == "nack" then
      aaax.reply(msg, { n = aaax.nack("tasks", msg.data.ids) })
    elseif op == "ackone" then
      aaax.reply(msg, { n = aaax.ack("tasks", msg.data.id) })
    end
  end,
}
""", channels=["tasks"]))
    for i in range(3):
        chans.user.write("tasks", {"task": i})
    got = chans.ask("claimer", {"op": "claim", "max": 2})
    assert [g["data"] for g in got] == [{"task": 0}, {"task": 1}]
    assert all(g["attempt"] == 1 for g in got)
    assert chans.ask("claimer", {"op": "ack",
                                 "ids": [g["id"] for g in got]}) == {"n": 2}
    got = chans.ask("claimer", {"op": "claim", "max": 5})
    assert [g["data"] for g in got] == [{"task": 2}]
    assert chans.ask("claimer", {"op": "nack",
                                 "ids": [got[0]["id"]]}) == {"n": 1}
    again = chans.ask("claimer", {"op": "claim", "max": 5})
    assert [g["data"] for g in again] == [{"task": 2}]
    assert again[0]["attempt"] == 2
    assert chans.ask("claimer", {"op": "ackone",
                                 "id": again[0]["id"]}) == {"n": 1}
    # empty now; a long poll comes back empty after its wait
    t0 = time.monotonic()
    assert not chans.ask("claimer", {"op": "claim", "max": 1, "wait": 300})
    assert time.monotonic() - t0 >= 0.25
    # a long poll is woken by a write
    mid = chans.user.send("claimer", {"op": "claim", "max": 1, "wait": 3000})
    time.sleep(0.2)
    chans.user.write("tasks", {"task": "late"})
    got = chans.user.await_corr(mid, 5)
    assert [g["data"] for g in got] == [{"task": "late"}]


def test_messages_wait_for_start_to_return(chans, tmp_path):
    chans.load_ok(write_app(tmp_path, "claimer", """
local started = false
return {
  start = function ()
    aaax.claim("tasks", 1, 400)      -- waits: start() is suspended
    started = true
  end,
  message = function (msg) aaax.reply(msg, { started = started }) end,
}
""", channels=["tasks"]))
    # load returned: start() is over
    assert chans.ask("claimer", 1) == {"started": True}
    assert chans.loader("restart", name="claimer")["ok"] is True
    mid = chans.user.send("claimer", 2)      # while start() waits
    assert chans.user.await_corr(mid, 5) == {"started": True}


def test_claim_refusal_is_nil_err(chans, tmp_path):
    chans.load_ok(write_app(tmp_path, "noclaim", EVAL))
    r = chans.eval("noclaim", 'return aaax.claim("tasks")')
    assert r["ok"] is True and r.get("res") is None
    assert r["res2"].startswith("403"), r
    r = chans.eval("noclaim", 'return aaax.claim("nope")')
    assert r.get("res") is None and r["res2"].startswith("404"), r


KV_MAIN = """
return {
  message = function (msg)
    local d = msg.data
    if d.op == "incr" then
      local n = (aaax.kv.get("n") or 0) + 1
      assert(aaax.kv.put("n", n))
      aaax.reply(msg, { n = n })
    elseif d.op == "get" then
      aaax.reply(msg, { n = aaax.kv.get("n") })
    end
  end,
}
"""


def test_kv_survives_reload_and_kernel_restart(app_kernel, tmp_path):
    d = write_app(tmp_path, "kvapp", KV_MAIN)
    # loaded at boot from the configuration
    k = app_kernel(apps=json.dumps(d))
    a = Apps(k)
    a.wait_state("kvapp", "running", 10)
    assert a.ask("kvapp", {"op": "incr"}) == {"n": 1}
    assert a.ask("kvapp", {"op": "incr"}) == {"n": 2}
    assert a.loader("reload", name="kvapp")["ok"] is True
    assert a.ask("kvapp", {"op": "get"}) == {"n": 2}
    assert a.ask("kvapp", {"op": "incr"}) == {"n": 3}
    k.close_clients()
    assert k.stop() == 0
    k.start()
    a = Apps(k)
    a.wait_state("kvapp", "running", 10)
    assert a.ask("kvapp", {"op": "get"}) == {"n": 3}
    assert a.ask("kvapp", {"op": "incr"}) == {"n": 4}


def test_kv_values_round_trip(apps, tmp_path):
    """Strings, floats, nested tables come back as they were put."""
    apps.load_ok(write_app(tmp_path, "kvv", EVAL))
    r = apps.eval("kvv", 'return aaax.kv.put("s", "a string value")')
    assert r == {"ok": True, "res": True, "n": 2}
    # compared in Lua first: a broken string may not even reach the test
    r = apps.eval("kvv", 'local v = aaax.kv.get("s") '
                         'return v == "a string value", #v')
    assert (r["res"], r["res2"]) == (True, 14), r
    r = apps.eval("kvv", 'return aaax.kv.get("s")')
    assert r["res"] == "a string value", r
    value = {"name": "x", "list": [1, 2.5, "three"], "nested": {"t": True}}
    r = apps.eval("kvv", 'return aaax.kv.put("t", %s)' % lua(value))
    assert r["res"] is True
    r = apps.eval("kvv", 'local v = aaax.kv.get("t") '
                         'return v.name == "x" and v.list[3] == "three" '
                         'and v.nested.t == true')
    assert r["res"] is True, r
    r = apps.eval("kvv", 'return aaax.kv.get("t")')
    assert r["res"] == value, r
    r = apps.eval("kvv", 'return aaax.kv.get("missing")')
    assert r["ok"] is True and r.get("res") is None
    r = apps.eval("kvv", 'return aaax.kv.del("s"), aaax.kv.del("s")')
    assert (r["res"], r["res2"]) == (True, False)
    r = apps.eval("kvv", 'return aaax.kv.get("s")')
    assert r.get("res") is None


def test_kv_misuse_raises(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "kvm", EVAL))
    for code in ['aaax.kv.put("", 1)',
                 'aaax.kv.put(string.rep("k", 513), 1)',
                 'aaax.kv.put("f", function () end)',
                 'aaax.kv.get(42 > 1)']:
        r = apps.eval("kvm", code)
        assert r["ok"] is False, (code, r)
    assert apps.eval("kvm", "return 1")["res"] == 1


def test_kv_is_per_app(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "kv-a", EVAL))
    apps.load_ok(write_app(tmp_path, "kv-b", EVAL))
    assert apps.eval("kv-a", 'return aaax.kv.put("k", 1)')["res"] is True
    assert apps.eval("kv-b", 'return aaax.kv.put("k", 2)')["res"] is True
    assert apps.eval("kv-a", 'return aaax.kv.get("k")')["res"] == 1
    assert apps.eval("kv-b", 'return aaax.kv.get("k")')["res"] == 2


def test_kv_quota(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "kvq", EVAL, limits={"kv_kb": 8}))
    r = apps.eval("kvq", """
local i = 0
while true do
  i = i + 1
  local ok, err = aaax.kv.put("k" .. i, string.rep("x", 1000))
  if not ok then return i, err end
  if i > 100 then return i, "no quota" end
end
""")
    assert r["ok"] is True, r
    n, err = r["res"], r["res2"]
    assert 2 <= n <= 9, r
    assert err == "429 kv quota of 8 KiB reached", err
    # what was written is intact; a delete makes room
    r = apps.eval("kvq", 'return #aaax.kv.get("k1"), aaax.kv.get("k%d")' % n)
    assert r["res"] == 1000 and r.get("res2") is None, r
    r = apps.eval("kvq", 'aaax.kv.del("k1") return aaax.kv.put("again", 1)')
    assert r["res"] is True, r


FS_POLICY = """
    { subject = "files", action = "fs.*", target = "*", effect = "allow" },
    { subject = "pubonly", action = "fs.read", target = "pub/*", effect = "allow" },
    { subject = "pubonly", action = "fs.write", target = "tmp/*", effect = "ask" },
"""


@pytest.fixture
def fsk(app_kernel):
    return Apps(app_kernel(policy=FS_POLICY))


def test_fs_write_read_list_remove(fsk, tmp_path):
    fsk.load_ok(write_app(tmp_path, "files", EVAL,
                          permissions=["fs.read:*", "fs.write:*"]))
    r = fsk.eval("files", 'return aaax.fs.write("notes/a.txt", "hello\\0world")')
    assert r["res"] is True, r
    on_disk = os.path.join(fsk.k.data, "files", "files", "notes", "a.txt")
    with open(on_disk, "rb") as f:
        assert f.read() == b"hello\x00world"
    r = fsk.eval("files", 'return aaax.fs.read("notes/a.txt")')
    assert r["res"] == "hello\x00world", r
    assert fsk.eval("files", 'return aaax.fs.write("top.txt", "12")')["res"]
    r = fsk.eval("files", 'return aaax.fs.list()')
    assert [(e["name"], e["dir"]) for e in r["res"]] == [
        ("notes", True), ("top.txt", False)], r
    assert r["res"][1]["size"] == 2
    r = fsk.eval("files", 'return aaax.fs.list("notes")')
    assert r["res"] == [{"name": "a.txt", "dir": False, "size": 11}], r
    r = fsk.eval("files", 'return aaax.fs.remove("notes/a.txt")')
    assert r["res"] is True
    assert not os.path.exists(on_disk)
    r = fsk.eval("files", 'return aaax.fs.read("notes/a.txt")')
    assert r.get("res") is None and r["res2"].startswith("404"), r
    r = fsk.eval("files", 'return aaax.fs.remove("notes")')
    assert r["res"] is True, r
    r = fsk.eval("files", 'return aaax.fs.list()')
    assert [e["name"] for e in r["res"]] == ["top.txt"]


def test_fs_denied_by_policy(fsk, tmp_path):
    fsk.load_ok(write_app(tmp_path, "pubonly", EVAL))
    r = fsk.eval("pubonly", 'return aaax.fs.write("secret.txt", "x")')
    assert r.get("res") is None
    assert r["res2"].startswith("403 gate: deny ("), r
    assert not os.path.exists(os.path.join(fsk.k.data, "files", "pubonly",
                                           "secret.txt"))
    r = fsk.eval("pubonly", 'return aaax.fs.write("tmp/x", "x")')
    assert r["res2"].startswith("403 gate: ask ("), r
    r = fsk.eval("pubonly", 'return aaax.fs.list()')
    assert r["res2"].startswith("403 gate: deny"), r
    r = fsk.eval("pubonly", 'return aaax.fs.remove("pub/x")')
    assert r["res2"].startswith("403 gate: deny"), r
    # allowed, but there is no such file
    r = fsk.eval("pubonly", 'return aaax.fs.read("pub/none")')
    assert r["res2"].startswith("404"), r


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "./x",
                                  "a//b", "", "a/./b", "..", "x/.."])
def test_fs_path_escape_is_refused(fsk, tmp_path, path):
    fsk.load_ok(write_app(tmp_path, "files", EVAL))
    ops = ['aaax.fs.write(%s, "pwned")', 'aaax.fs.read(%s)',
           'aaax.fs.remove(%s)']
    if path:                        # fs.list("") may mean the top
        ops.append('aaax.fs.list(%s)')
    for op in ops:
        r = fsk.eval("files", "return " + op % lua(path))
        assert r["ok"] is True, (op, r)
        assert r.get("res") is None, (op, r)
        assert r["res2"].startswith("400"), (op, path, r)
    assert not os.path.exists(os.path.join(fsk.k.data, "files", "x"))
    assert not os.path.exists(os.path.join(fsk.k.data, "x"))


def test_fs_does_not_follow_symlinks(fsk, tmp_path):
    fsk.load_ok(write_app(tmp_path, "files", EVAL))
    assert fsk.eval("files", 'return aaax.fs.write("a.txt", "mine")')["res"]
    secret = tmp_path / "outside.txt"
    secret.write_text("not yours")
    area = os.path.join(fsk.k.data, "files", "files")
    os.symlink(str(secret), os.path.join(area, "link"))
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    os.symlink(str(outdir), os.path.join(area, "dirlink"))
    r = fsk.eval("files", 'return aaax.fs.read("link")')
    assert r.get("res") is None and "not yours" not in str(r), r
    assert "link" in r["res2"], r
    r = fsk.eval("files", 'return aaax.fs.write("link", "overwrite")')
    assert secret.read_text() == "not yours", r
    r = fsk.eval("files", 'return aaax.fs.write("dirlink/evil", "x")')
    assert not (outdir / "evil").exists()
    assert r.get("res") is None, r
    r = fsk.eval("files", 'return aaax.fs.list("dirlink")')
    assert r.get("res") is None, r


def test_fs_quota(app_kernel, tmp_path):
    a = Apps(app_kernel(policy=FS_POLICY))
    a.load_ok(write_app(tmp_path, "files", EVAL, limits={"files_kb": 16}))
    r = a.eval("files", 'return aaax.fs.write("big", string.rep("x", 20000))')
    assert r.get("res") is None and re.match(r"^[45]\d\d ", r["res2"]), r
    r = a.eval("files", 'return aaax.fs.write("small", string.rep("x", 1000))')
    assert r["res"] is True, r


GATE_POLICY = """
    { subject = "gater", action = "tool.ok", target = "*", effect = "allow", name = "tools-ok" },
    { subject = "gater", action = "net.fetch", target = "https://*", effect = "ask", name = "fetch-ask" },
    { subject = "gater", action = "tool.rm", target = "*", effect = "deny", name = "no-rm" },
"""


def test_gate_returns_the_decision_table(app_kernel, tmp_path):
    a = Apps(app_kernel(policy=GATE_POLICY))
    a.load_ok(write_app(tmp_path, "gater", EVAL))
    r = a.eval("gater", 'return aaax.gate("tool.ok", "x", { n = 1 })')["res"]
    assert r["decision"] == "allow" and r["rule"] == "tools-ok"
    assert r["audit_id"].isdigit() and r["reason"]
    r2 = a.eval("gater", 'return aaax.gate("tool.rm", "/")')["res"]
    assert r2["decision"] == "deny" and r2["rule"] == "no-rm"
    r3 = a.eval("gater", 'return aaax.gate("net.fetch", "https://e.x")')["res"]
    assert r3["decision"] == "ask" and r3["rule"] == "fetch-ask"
    r4 = a.eval("gater", 'return aaax.gate("launch", "moon")')["res"]
    assert r4["decision"] == "deny" and r4.get("rule") is None
    ids = [int(x["audit_id"]) for x in (r, r2, r3, r4)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    # the app is the subject of the audited decision, with its args
    p = subprocess.run([AAAX_CLI, "audit", "show", r["audit_id"], "--data",
                        a.k.data], capture_output=True, text=True)
    rec = json.loads(p.stdout)
    assert rec["subject"] == "gater" and rec["action"] == "tool.ok"
    assert rec["args"] == {"n": 1}
    # misuse raises
    r = a.eval("gater", 'return aaax.gate(1)')
    assert r["ok"] is False
    # args that cannot be sent raise (and leak nothing: the sanitized run
    # checks the kernel's exit); the app goes on
    r = a.eval("gater", 'return aaax.gate("tool.ok", "x", {f = print})')
    assert r["ok"] is False and "cannot send a function" in r["res"], r
    r = a.eval("gater", 'return aaax.gate("tool.ok", "x")')["res"]
    assert r["decision"] == "allow"


def test_refused_sends_are_counted_in_errors(app_kernel, tmp_path):
    """aaax.send is asynchronous: a refusal is logged and counted in the
    module's `errors`."""
    a = Apps(app_kernel())
    a.load_ok(write_app(tmp_path, "sender", EVAL))
    assert a.modules()["sender"]["errors"] == 0
    r = a.eval("sender", 'return aaax.send("nobody-at-all", {x = 1})')
    assert r["ok"] is True and r["res"] is True
    wait_until(lambda: a.modules()["sender"]["errors"] == 1, 5, 0.05,
               "the refusal counted")


def test_message_handled_while_another_callback_waits_on_the_gate(
        app_kernel, tmp_path):
    a = Apps(app_kernel(policy=GATE_POLICY))
    a.load_ok(write_app(tmp_path, "gater", """
return {
  message = function (msg)
    if msg.data == "fetch" then
      local d = assert(aaax.gate("net.fetch", "https://slow.example", {}, { wait = true }))
      aaax.reply(msg, { decision = d.decision, approval_id = d.approval_id, scope = d.scope })
    else
      aaax.reply(msg, { pong = msg.data })
    end
  end,
}
"""))
    mid = a.user.send("gater", "fetch")
    # the first callback waits for an operator; others go on meanwhile
    pend = wait_until(
        lambda: [p for p in a.admin.kernel_request(
            "kernel.approvals", {"op": "list"})["pending"]
            if p["subject"] == "gater"], 5, 0.05, "a pending ask of gater")
    for i in range(3):
        assert a.ask("gater", i) == {"pong": i}
    with pytest.raises(aaax.AaaxTimeout):
        a.user.await_corr(mid, 0.3)
    r = a.admin.kernel_request("kernel.approvals", {
        "op": "approve", "audit_id": pend[0]["audit_id"], "scope": "once"})
    assert r["ok"] is True, r
    got = a.user.await_corr(mid, 5)
    assert got["decision"] == "allow" and got["scope"] == "once"
    assert got["approval_id"]


def test_timers_after_every_cancel(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "timers", """
local ticks, every_id = 0, nil
return {
  start = function ()
    aaax.timer.after(50, function () aaax.send("user-1", { after = true }) end)
  end,
  message = function (msg)
    local d = msg.data
    if d == "every" then
      every_id = aaax.timer.every(20, function ()
        ticks = ticks + 1
        if ticks == 3 then aaax.send("user-1", { ticks = ticks }) end
      end)
      aaax.reply(msg, { id = every_id })
    elseif d == "cancel" then
      aaax.timer.cancel(every_id)
      aaax.reply(msg, { ticks = ticks })
    elseif d == "ticks" then
      aaax.reply(msg, { ticks = ticks })
    elseif d == "cancel-after" then
      local fired = false
      local id = aaax.timer.after(30, function () aaax.send("user-1", "should not fire") end)
      aaax.timer.cancel(id)
      local ok1 = pcall(aaax.timer.after, 0, function () end)
      local ok2 = pcall(aaax.timer.every, 5, function () end)
      local ok3 = pcall(aaax.timer.after, 10, "not a function")
      aaax.reply(msg, { id = id, ok = { ok1, ok2, ok3 } })
    end
  end,
}
"""))
    m = apps.mailbox(timeout=3, pred=lambda m: m["data"] == {"after": True})
    assert m is not None, "after() did not fire"
    r = apps.ask("timers", "every")
    assert isinstance(r["id"], int)
    m = apps.mailbox(timeout=3, pred=lambda m: isinstance(m["data"], dict)
                     and m["data"].get("ticks") == 3)
    assert m is not None, "every() did not fire 3 times"
    n = apps.ask("timers", "cancel")["ticks"]
    time.sleep(0.2)
    assert apps.ask("timers", "ticks")["ticks"] == n   # cancelled
    r = apps.ask("timers", "cancel-after")
    assert r["ok"] == [False, False, False], r
    assert apps.mailbox(timeout=0.3,
                        pred=lambda m: m["data"] == "should not fire") is None


def test_at_most_1000_timers(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "many", EVAL))
    r = apps.eval("many", """
local n = 0
for i = 1, 1001 do
  aaax.timer.after(600000, function () end)
  n = n + 1
end
return n
""")
    assert r["ok"] is False and "1000 timers" in r["res"], r
    assert apps.eval("many", "return 1")["res"] == 1


def test_hosted_apps_do_not_time_out(app_kernel, tmp_path):
    a = Apps(app_kernel(heartbeat_ms=100))
    a.load_ok(write_app(tmp_path, "idle", ECHO))
    deadline = time.monotonic() + 1.0            # 10 heartbeat periods
    while time.monotonic() < deadline:
        a.keepalive()
        time.sleep(0.02)
    assert "idle" in a.systems()
    assert a.ask("idle", "awake") == "awake"


def test_kernel_shutdown_runs_stop(app_kernel, tmp_path):
    d = write_app(tmp_path, "graceful", """
return {
  message = function (msg)
    aaax.reply(msg, { stops = aaax.kv.get("stops") or 0 })
  end,
  stop = function ()
    aaax.kv.put("stops", (aaax.kv.get("stops") or 0) + 1)
  end,
}
""")
    k = app_kernel(apps=json.dumps(d))
    a = Apps(k)
    a.wait_state("graceful", "running")
    assert a.ask("graceful", {}) == {"stops": 0}
    k.close_clients()
    assert k.stop() == 0
    k.start()
    a = Apps(k)
    a.wait_state("graceful", "running")
    assert a.ask("graceful", {}) == {"stops": 1}


def test_self_version_now_mono(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "who", EVAL, version="9.8.7"))
    assert apps.eval("who", "return aaax.self")["res"] == "who"
    assert apps.eval("who", "return aaax.version")["res"] == "9.8.7"
    now = apps.eval("who", "return aaax.now()")["res"]
    assert isinstance(now, float) and abs(now - time.time()) < 5
    r = apps.eval("who", """
local t0 = aaax.mono()
local x = 0
for i = 1, 200000 do x = x + i end
return aaax.mono() - t0, math.type(t0) or type(t0)
""")
    assert r["res"] >= 0, r
    # identity cannot be changed from inside
    r = apps.eval("who", 'aaax.self = "admin"; aaax.send("user-1", "from?") return 1')
    m = apps.mailbox(timeout=1, pred=lambda m: m["data"] == "from?")
    assert m is None or m["from"] == "who"


def test_crypto_hash_and_random(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "cr", EVAL))
    r = apps.eval("cr", 'return aaax.crypto.hash("abc")')["res"]
    assert HEX64.match(r)
    assert r == hashlib.blake2b(b"abc", digest_size=32).hexdigest()
    r = apps.eval("cr", 'return aaax.crypto.hash("")')["res"]
    assert r == hashlib.blake2b(b"", digest_size=32).hexdigest()
    r = apps.eval("cr", "return #aaax.crypto.random(1), #aaax.crypto.random(1024)")
    assert (r["res"], r["res2"]) == (1, 1024)
    r = apps.eval("cr", "return aaax.crypto.random(32) ~= aaax.crypto.random(32)")
    assert r["res"] is True
    for n in (0, 1025, -1):
        r = apps.eval("cr", "return aaax.crypto.random(%d)" % n)
        assert r["ok"] is False, (n, r)


def test_log_and_print(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "logger", EVAL))
    r = apps.eval("logger", """
aaax.log("debug", "dbg line")
aaax.log("info", "info line")
aaax.log("warn", "warn line")
aaax.log("error", "error line")
print("printed", 42, true)
return pcall(aaax.log, "loud", "x")
""")
    assert r["ok"] is True and r["res"] is False, r
    log = apps.k.wait_log("app logger: error line")
    for t in ("info line", "warn line", "error line"):
        assert "app logger: " + t in log
    line = [l for l in log.splitlines() if "app logger: printed" in l]
    assert line, log[-2000:]
    assert "42" in line[0] and "true" in line[0]


def test_log_is_rate_limited(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "chatty", EVAL))
    r = apps.eval("chatty", """
for i = 1, 1000 do aaax.log("info", "line " .. i) end
return true
""")
    assert r["res"] is True
    time.sleep(0.3)
    n = apps.k.read_log().count("app chatty: line ")
    assert 50 <= n <= 200, n          # 100/s (a window may straddle)
    assert apps.eval("chatty", "return 1")["res"] == 1


def test_api_misuse_raises_lua_errors(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "mis", EVAL))
    for code in ["aaax.send()", "aaax.send({}, 1)", "aaax.write()",
                 "aaax.subscribe()", "aaax.claim()", "aaax.timer.every()",
                 "aaax.timer.after(10)", "aaax.crypto.hash()",
                 "aaax.crypto.hash({})", "aaax.log()", "aaax.fs.read()",
                 "aaax.fs.write('a', {})", "aaax.gate()"]:
        r = apps.eval("mis", code)
        assert r["ok"] is False, (code, r)
    assert apps.eval("mis", "return 2")["res"] == 2


def test_unanswered_send_is_not_an_error(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "fire", EVAL))
    r = apps.eval("fire", 'return aaax.send("nobody-at-all", 1)')
    assert r["res"] is True
    apps.k.wait_log("app fire")


# ---- supervision ------------------------------------------------------------

# Crashes from a timer once "poison" is set: poison makes the next start
# crash too, so the app crash-loops to `failed`; a "heal" message delivered
# right after a start clears it.
POISON = """
return {
  start = function ()
    aaax.kv.put("boots", (aaax.kv.get("boots") or 0) + 1)
    aaax.timer.after(150, function ()
      if aaax.kv.get("poison") then error("poisoned timer") end
    end)
  end,
  message = function (msg)
    local op = msg.data.op
    if op == "poison" then
      aaax.kv.put("poison", true)
      aaax.timer.after(20, function () error("poisoned now") end)
    elseif op == "heal" then
      aaax.kv.del("poison")
    end
    aaax.reply(msg, { op = op, boots = aaax.kv.get("boots") })
  end,
}
"""


def crash_to_failed(a, tmp_path, name="px"):
    """Loads echo and the POISON app `name`, poisons it; waits for
    `failed`, checking that echo answers meanwhile. Returns the module."""
    a.load_ok(write_app(tmp_path, "echo", ECHO))
    a.load_ok(write_app(tmp_path, name, POISON))
    assert a.ask(name, {"op": "poison"})["op"] == "poison"
    deadline = time.monotonic() + 15
    answered = 0
    while not any(e["event"] == "failed" for e in a.events(name)):
        assert time.monotonic() < deadline, a.events(name)
        assert a.ask("echo", answered) == answered
        answered += 1
        time.sleep(0.05)
    assert answered >= 5      # served all along
    return a.modules()[name]


def test_crash_loop_marks_the_app_failed(app_kernel, tmp_path):
    a = Apps(app_kernel())
    m = crash_to_failed(a, tmp_path)
    assert m["state"] == "failed"
    assert m["error"] and "poisoned" in m["error"], m
    assert m["restarts"] == 5
    evs = a.events("px")
    kinds = [e["event"] for e in evs]
    assert kinds.count("restart") == 5, kinds
    assert kinds.count("crash") >= 5, kinds
    assert kinds[-1] == "failed"
    failed = evs[-1]
    assert failed["state"] == "failed" and "poisoned" in failed["reason"]
    crashes = [e for e in evs if e["event"] == "crash"]
    assert all("poisoned" in e["reason"] for e in crashes)
    # backoff: 100 ms doubling, so the five restarts take >= 3 s
    restarts = [e["ts"] for e in evs if e["event"] == "restart"]
    assert restarts[-1] - crashes[0]["ts"] >= 2.5
    # not restarted any more
    time.sleep(1.0)
    assert a.modules()["px"]["state"] == "failed"
    assert [e["event"] for e in a.events("px")][-1] == "failed"
    # not docked, yet listed by lifecycle (so `aaax ps`) as a failed app
    assert "px" not in a.systems()
    px = a.listed()["px"]
    assert px["state"] == "failed" and px["kind"] == "app", px
    assert px["app_state"] == "failed" and px["session"] is None
    ps = subprocess.run([AAAX_CLI, "ps", "--data", a.k.data,
                         "--connect", a.k.endpoint], capture_output=True,
                        text=True, timeout=30)
    assert ps.returncode == 0, ps.stderr
    assert any(l.split()[:3] == ["px", "app", "failed"]
               for l in ps.stdout.splitlines()), ps.stdout
    hb = a.heartbeat(lambda d: "px" in d.get("apps", {}))
    assert hb["apps"]["px"] == "failed"
    assert hb["apps"]["echo"] == "running"
    assert "px" not in hb["systems"]
    # audited
    acts = [r["action"] for r in module_audit(a.k, "px")]
    assert "module.failed" in acts and acts.count("module.crash") >= 5
    a.alive()


def test_failed_app_restarted_by_lifecycle_start(app_kernel, tmp_path):
    a = Apps(app_kernel())
    crash_to_failed(a, tmp_path)
    heal = a.user.send("px", {"op": "heal"})   # waits in the mailbox
    r = a.lifecycle(op="start", target="px")
    assert r["ok"] is True, r
    assert a.user.await_corr(heal, 5)["op"] == "heal"
    m = a.wait_state("px", "running")
    assert m["restarts"] == 0, m
    time.sleep(0.4)                            # past the start timer
    assert a.modules()["px"]["state"] == "running"
    assert a.ask("px", {"op": "x"})["boots"] >= 7


def test_failed_app_restarted_by_lifecycle_restart(app_kernel, tmp_path):
    a = Apps(app_kernel())
    crash_to_failed(a, tmp_path)
    heal = a.user.send("px", {"op": "heal"})
    r = a.lifecycle(op="restart", target="px")
    assert r["ok"] is True, r
    assert a.user.await_corr(heal, 5)["op"] == "heal"
    a.wait_state("px", "running")
    time.sleep(0.4)
    assert a.modules()["px"]["state"] == "running"
    assert a.ask("px", {"op": "x"})["op"] == "x"
    a.wait_event("restart", "px", count=6)
    hb = a.heartbeat(lambda d: d.get("apps", {}).get("px") == "running")
    assert "px" in hb["systems"]
    # its restart count is cleared: 5 more crashes to fail again
    assert a.modules()["px"]["restarts"] == 0


def test_failed_app_restarted_by_loader_start(app_kernel, tmp_path):
    a = Apps(app_kernel())
    crash_to_failed(a, tmp_path)
    heal = a.user.send("px", {"op": "heal"})
    r = a.loader("start", name="px")
    assert r["ok"] is True, r
    assert a.user.await_corr(heal, 5)["op"] == "heal"
    a.wait_state("px", "running")


def test_failed_app_restarted_by_reload(app_kernel, tmp_path):
    a = Apps(app_kernel())
    crash_to_failed(a, tmp_path)
    heal = a.user.send("px", {"op": "heal"})
    r = a.loader("reload", name="px")
    assert r["ok"] is True, r
    assert r["modules"][0]["state"] == "running"
    assert a.user.await_corr(heal, 5)["op"] == "heal"
    time.sleep(0.4)
    m = a.modules()["px"]
    assert m["state"] == "running" and m["restarts"] == 0, m


def test_crash_redelivers_the_message(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "flaky", """
return {
  message = function (msg)
    if msg.attempt < 3 then error("attempt " .. msg.attempt) end
    aaax.reply(msg, { attempt = msg.attempt })
  end,
}
"""))
    assert apps.ask("flaky", "x", timeout=8) == {"attempt": 3}
    assert len([e for e in apps.events("flaky") if e["event"] == "crash"]) == 2
    m = apps.wait_state("flaky", "running")
    assert m["error"] and "attempt 2" in m["error"]


def test_a_crash_discards_lua_state(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "forget", """
local count = 0
return {
  message = function (msg)
    if msg.data == "crash" and msg.attempt == 1 then error("bye") end
    count = count + 1
    aaax.reply(msg, count)
  end,
}
"""))
    assert apps.ask("forget", 1) == 1
    assert apps.ask("forget", 1) == 2
    assert apps.ask("forget", "crash") == 1    # a fresh state after the crash


# ---- lifecycle of apps ------------------------------------------------------

LIFE = """
return {
  start = function ()
    aaax.kv.put("starts", (aaax.kv.get("starts") or 0) + 1)
  end,
  message = function (msg)
    aaax.reply(msg, { starts = aaax.kv.get("starts"), stops = aaax.kv.get("stops") or 0,
                      sigstop = aaax.kv.get("sigstop") or 0, sigcont = aaax.kv.get("sigcont") or 0 })
  end,
  stop = function ()
    aaax.kv.put("stops", (aaax.kv.get("stops") or 0) + 1)
    aaax.send("user-1", { stopping = aaax.self })
  end,
  signal = function (sig)
    if sig == "STOP" then aaax.kv.put("sigstop", (aaax.kv.get("sigstop") or 0) + 1) end
    if sig == "CONT" then aaax.kv.put("sigcont", (aaax.kv.get("sigcont") or 0) + 1) end
  end,
}
"""


def test_lifecycle_stop_runs_stop_and_start_brings_it_back(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "life", LIFE))
    assert apps.ask("life", {})["starts"] == 1
    r = apps.lifecycle(op="stop", target="life")
    assert r["ok"] is True, r
    m = apps.mailbox(timeout=5, pred=lambda m: m["data"] == {"stopping": "life"})
    assert m is not None, "stop() did not run"
    apps.wait_event("stop", "life")
    assert apps.wait_state("life", "stopped")["state"] == "stopped"
    wait_until(lambda: "life" not in apps.systems(), 5, 0.05, "life undocked")
    r = apps.lifecycle(op="start", target="life")
    assert r["ok"] is True, r
    apps.wait_event("start", "life")
    got = apps.ask("life", {})
    assert got["starts"] == 2 and got["stops"] == 1, got
    time.sleep(0.3)
    assert apps.modules()["life"]["state"] == "running"
    assert apps.ask("life", {})["stops"] == 1


def test_lifecycle_kill_skips_stop(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "life", LIFE))
    assert apps.ask("life", {})["starts"] == 1
    r = apps.lifecycle(op="kill", target="life")
    assert r["ok"] is True, r
    apps.wait_state("life", "stopped")
    assert apps.mailbox(timeout=0.5) is None      # stop() did not run
    r = apps.lifecycle(op="start", target="life")
    assert r["ok"] is True, r
    got = apps.ask("life", {})
    assert got["starts"] == 2 and got["stops"] == 0, got
    time.sleep(0.3)
    assert apps.modules()["life"]["state"] == "running"


def test_loader_stop_start_kill(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "life", LIFE))
    r = apps.loader("stop", name="life")
    assert r["ok"] is True, r
    assert apps.modules()["life"]["state"] == "stopped"
    assert apps.mailbox(timeout=2, pred=lambda m: m["data"] == {
        "stopping": "life"}) is not None
    assert apps.loader("stop", name="life")["ok"] is False
    r = apps.loader("start", name="life")
    assert r["ok"] is True and r["modules"][0]["state"] == "running", r
    assert apps.ask("life", {})["starts"] == 2
    r = apps.loader("start", name="life")
    assert r["ok"] is False and "already" in r["reason"], r
    r = apps.loader("kill", name="life")
    assert r["ok"] is True, r
    assert apps.modules()["life"]["state"] == "stopped"
    assert apps.mailbox(timeout=0.5) is None
    assert apps.loader("start", name="life")["ok"] is True
    assert apps.ask("life", {}) == {"starts": 3, "stops": 1, "sigstop": 0,
                                   "sigcont": 0}


def test_loader_restart_of_a_running_app(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "life", LIFE))
    r = apps.loader("restart", name="life")
    assert r["ok"] is True, r
    wait_until(lambda: apps.ask("life", {})["starts"] == 2, 5, 0.05,
               "a second start")
    assert apps.modules()["life"]["state"] == "running"


def test_lifecycle_pause_resume_signals_the_app(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "life", LIFE))
    assert apps.ask("life", {})["sigstop"] == 0
    assert apps.lifecycle(op="pause", target="life")["ok"] is True
    mid = apps.user.send("life", {})               # held while paused
    with pytest.raises(aaax.AaaxTimeout):
        apps.user.await_corr(mid, 0.5)
    assert apps.lifecycle(op="resume", target="life")["ok"] is True
    got = apps.user.await_corr(mid, 5)
    assert got["sigstop"] == 1
    got = apps.ask("life", {})
    assert got["sigstop"] == 1 and got["sigcont"] == 1, got
    assert got["stops"] == 0
    assert apps.modules()["life"]["state"] == "running"


def test_lifecycle_list_shows_the_app_state(apps, tmp_path):
    apps.load_ok(write_app(tmp_path, "life", LIFE))
    s = apps.systems()
    assert s["life"]["app_state"] == "running"
    assert "app_state" not in s["admin"]
    hb = apps.heartbeat(lambda d: "life" in d.get("apps", {}))
    assert hb["apps"] == {"life": "running"}


def test_lifecycle_start_of_unknown_app_is_refused(apps):
    r = apps.lifecycle(op="start", target="nosuch")
    assert r["ok"] is False and "nosuch" in r["reason"], r
