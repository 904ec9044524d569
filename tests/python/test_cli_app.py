"""`aaax app ...` against a real aaaxd (docs/CLI.md, "Lua apps"): load,
unload, reload, list (table and --json), pin, unpin -- their output and
exit codes (0 done, 1 refused, 2 usage, 3 no answer) -- their --help, and
`aaax app run DIR --connect EP`, an app in a process of its own docked
over tcp."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import AAAX_CLI, wait_until
from test_apps import Apps, ECHO, HEX64, write_app

pytestmark = pytest.mark.skipif(
    not os.path.exists(AAAX_CLI),
    reason="the aaax CLI binary %s does not exist (build it, or set "
           "AAAX_CLI)" % AAAX_CLI)

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

SUBS = ["load", "unload", "reload", "list", "pin", "unpin", "run"]

LOADED = re.compile(r"^(loaded|reloaded) (\S+) (\S+) \(digest ([0-9a-f]{12})\)"
                    r" granted: (.*); refused: (.*)$")

POLICY = """
    { subject = "perm", action = "fs.read", target = "*", effect = "allow" },
"""


def env():
    e = dict(os.environ)
    e.pop("AAAX_CONNECT", None)
    e.pop("AAAX_SYSTEM", None)
    return e


def check_clean(stderr):
    for mark in SANITIZER_MARKS:
        assert mark not in stderr, "sanitizer report from aaax:\n" + stderr


def app(*args, k=None, cwd=None, timeout=60):
    """Runs `aaax app ARGS... [--data k.data]`."""
    cmd = [AAAX_CLI, "app"] + list(args)
    if k is not None:
        cmd += ["--data", k.data]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=env(), cwd=cwd)
    check_clean(p.stderr)
    return p


@pytest.fixture
def k(app_kernel):
    return app_kernel(policy=POLICY)


# ---- help and usage ---------------------------------------------------------

def test_app_help_lists_the_subcommands():
    p = app("--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: aaax app")
    for sub in SUBS:
        assert "app " + sub in p.stdout, sub
    assert subprocess.run([AAAX_CLI, "help", "app"], capture_output=True,
                          text=True).stdout == p.stdout
    main = subprocess.run([AAAX_CLI, "--help"], capture_output=True,
                          text=True)
    assert "app" in main.stdout


@pytest.mark.parametrize("sub", SUBS)
def test_help_of_each_subcommand(sub):
    p = app(sub, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: aaax app " + sub), p.stdout[:80]
    assert app(sub, "-h").stdout == p.stdout
    if sub == "run":
        for opt in ("--connect", "--data", "--server-key", "--key"):
            assert opt in p.stdout, opt
    else:
        for opt in ("--data", "--connect", "--timeout", "Exit codes",
                    "xample"):
            assert opt in p.stdout, (sub, opt)
    if sub == "list":
        assert "--json" in p.stdout


@pytest.mark.parametrize("args", [
    [],
    ["frob"],
    ["load"],
    ["unload"],
    ["unload", "a", "b"],
    ["reload"],
    ["pin"],
    ["unpin", "a", "b"],
    ["list", "extra"],
    ["load", "x", "--json"],
    ["list", "--timeout", "soon"],
    ["run"],
    ["run", "a", "b"],
])
def test_usage_errors_exit_2(args):
    p = app(*args)
    assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
    assert p.stderr


# ---- load, list, unload -----------------------------------------------------

def test_load_prints_one_line_and_list_shows_it(k, tmp_path):
    d = write_app(tmp_path, "perm", ECHO, version="1.2.3",
                  permissions=["fs.read:*", "net.fetch:https://x"])
    p = app("load", d, k=k)
    assert p.returncode == 0, p.stderr
    m = LOADED.match(p.stdout.strip())
    assert m, p.stdout
    assert m.group(1) == "loaded" and m.group(2) == "perm"
    assert m.group(3) == "1.2.3"
    assert m.group(5) == "fs.read:*" and m.group(6) == "net.fetch:https://x"
    digest12 = m.group(4)
    # list: a table sorted by name
    d2 = write_app(tmp_path, "alpha", ECHO)
    p = app("load", d2, k=k)
    assert p.returncode == 0
    assert p.stdout.strip().endswith("granted: none; refused: none")
    p = app("list", k=k)
    assert p.returncode == 0, p.stderr
    rows = p.stdout.splitlines()
    assert rows[0].split() == ["NAME", "VERSION", "STATE", "RESTARTS",
                               "MEMORY(KiB)", "HANDLED", "PINNED", "PATH"]
    assert [r.split()[0] for r in rows[1:]] == ["alpha", "perm"]
    cols = rows[2].split()
    assert cols[1:4] == ["1.2.3", "running", "0"]
    assert cols[6] == "no" and cols[7] == d
    # --json: the loader's modules
    p = app("list", "--json", k=k)
    assert p.returncode == 0, p.stderr
    mods = {m["name"]: m for m in json.loads(p.stdout)}
    assert set(mods) == {"alpha", "perm"}
    assert mods["perm"]["digest"].startswith(digest12)
    assert HEX64.match(mods["perm"]["digest"])
    assert mods["perm"]["state"] == "running"
    assert mods["perm"]["pinned"] is None
    assert mods["perm"]["granted"] == ["fs.read:*"]
    assert set(mods["perm"]["limits"]) == {"memory_kb", "instructions",
                                           "files_kb", "kv_kb"}
    # unload
    p = app("unload", "perm", k=k)
    assert p.returncode == 0 and p.stdout.strip() == "unloaded perm", p
    p = app("list", "--json", k=k)
    assert [m["name"] for m in json.loads(p.stdout)] == ["alpha"]


def test_list_when_nothing_is_loaded(k):
    p = app("list", "--json", k=k)
    assert p.returncode == 0 and json.loads(p.stdout) == []
    p = app("list", k=k)
    assert p.returncode == 0
    assert p.stdout.split()[0] == "NAME"


def test_load_several_in_dependency_order(k, tmp_path):
    base = write_app(tmp_path, "base", ECHO)
    top = write_app(tmp_path, "top", ECHO, depends=["base"])
    p = app("load", top, base, k=k)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [LOADED.match(l).group(2) for l in lines] == ["base", "top"]


def test_relative_paths_are_made_absolute(k, tmp_path):
    write_app(tmp_path / "apps", "rel", ECHO)
    p = app("load", "apps/./rel", k=k, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    mods = json.loads(app("list", "--json", k=k).stdout)
    assert mods[0]["path"] == str(tmp_path / "apps" / "rel")


def test_refusals_exit_1_with_the_reason(k, tmp_path):
    d = write_app(tmp_path, "dup", ECHO)
    assert app("load", d, k=k).returncode == 0
    p = app("load", d, k=k)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr.startswith("aaax: app load: ")
    assert "already loaded" in p.stderr
    bad = write_app(tmp_path, "bad", ECHO, channels=[], frob=1)
    p = app("load", bad, k=k)
    assert p.returncode == 1
    assert os.path.join(bad, "manifest.lua") + ":5:" in p.stderr, p.stderr
    for args in (["unload", "nosuch"], ["reload", "nosuch"],
                 ["pin", "nosuch"], ["unpin", "nosuch"]):
        p = app(*args, k=k)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        assert p.stderr.startswith("aaax: app %s: " % args[0]), p.stderr
        assert "nosuch" in p.stderr
    needy = write_app(tmp_path, "needy", ECHO, depends=["dup"])
    assert app("load", needy, k=k).returncode == 0
    p = app("unload", "dup", k=k)
    assert p.returncode == 1 and "needy" in p.stderr


def test_without_data_the_loader_is_not_reachable(k, tmp_path):
    d = write_app(tmp_path, "x", ECHO)
    p = subprocess.run([AAAX_CLI, "app", "load", d, "--connect", k.endpoint],
                       capture_output=True, text=True, env=env(), timeout=30)
    assert p.returncode == 3, (p.returncode, p.stderr)
    assert "403" in p.stderr and "--data" in p.stderr
    p = app("list", "--data", str(tmp_path / "no-data"))
    assert p.returncode == 3, (p.returncode, p.stderr)


def test_reload_pin_unpin(k, tmp_path):
    d = write_app(tmp_path, "pinme", ECHO, version="1")
    p = app("load", d, k=k)
    assert p.returncode == 0
    digest12 = LOADED.match(p.stdout.strip()).group(4)
    p = app("pin", "pinme", k=k)
    assert p.returncode == 0, p.stderr
    m = re.match(r"^pinned pinme digest ([0-9a-f]{64})$", p.stdout.strip())
    assert m and m.group(1).startswith(digest12), p.stdout
    listed = app("list", k=k).stdout.splitlines()[1].split()
    assert listed[6] == "yes"
    assert json.loads(app("list", "--json", k=k).stdout)[0]["pinned"] \
        == m.group(1)
    # changed files: reload refused while pinned
    write_app(tmp_path, "pinme", ECHO + "-- changed\n", version="2")
    p = app("reload", "pinme", k=k)
    assert p.returncode == 1
    assert "pinned" in p.stderr and "aaax app pin pinme" in p.stderr
    assert app("unpin", "pinme", k=k).stdout.strip() == "unpinned pinme"
    p = app("reload", "pinme", k=k)
    assert p.returncode == 0, p.stderr
    m = LOADED.match(p.stdout.strip())
    assert m and m.group(1) == "reloaded" and m.group(3) == "2", p.stdout
    assert m.group(4) != digest12
    assert json.loads(app("list", "--json", k=k).stdout)[0]["pinned"] is None


def test_list_shows_the_error_of_a_failed_app(k, tmp_path):
    d = write_app(tmp_path, "crashy", """
return {
  start = function ()
    if (aaax.kv.get("armed") or 0) > 0 then
      aaax.timer.after(10, function () error("boom in a timer") end)
    end
  end,
  message = function (msg)
    aaax.kv.put("armed", 1)
    aaax.timer.after(10, function () error("boom in a timer") end)
  end,
}
""")
    assert app("load", d, k=k).returncode == 0
    a = Apps(k)
    a.user.send("crashy", "arm")
    a.wait_state("crashy", "failed", timeout=15)
    p = app("list", k=k)
    assert p.returncode == 0
    rows = p.stdout.splitlines()
    assert rows[1].split()[:4] == ["crashy", "1.0.0", "failed", "5"]
    assert rows[2].startswith("  error: ") and "boom in a timer" in rows[2]
    mods = json.loads(app("list", "--json", k=k).stdout)
    assert mods[0]["state"] == "failed"
    assert "boom in a timer" in mods[0]["error"]
    # reload brings it back (once disarmed)
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write(ECHO)
    p = app("reload", "crashy", k=k)
    assert p.returncode == 0, p.stderr
    assert app("list", k=k).stdout.splitlines()[1].split()[2] == "running"


def test_ps_shows_apps(k, tmp_path):
    assert app("load", write_app(tmp_path, "shown", ECHO), k=k).returncode == 0
    p = subprocess.run([AAAX_CLI, "ps", "--json", "--data", k.data],
                       capture_output=True, text=True, env=env(), timeout=30)
    assert p.returncode == 0, p.stderr
    rows = {r["id"]: r for r in map(json.loads, p.stdout.splitlines())}
    assert rows["shown"]["app_state"] == "running"
    assert rows["shown"]["state"] == "docked"


# ---- app run ----------------------------------------------------------------

REMOTE = """
return {
  start = function ()
    aaax.kv.put("boots", (aaax.kv.get("boots") or 0) + 1)
  end,
  message = function (msg)
    aaax.reply(msg, { echo = msg.data, self = aaax.self, boots = aaax.kv.get("boots") })
  end,
  stop = function ()
    aaax.send("user-1", "remote stopping")
  end,
}
"""


def start_run(d, k, data):
    return subprocess.Popen([AAAX_CLI, "app", "run", d, "--connect",
                             k.endpoint, "--data", data],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env())


def wait_docked(a, name, proc, timeout=10):
    def docked():
        assert proc.poll() is None, proc.communicate()
        return name in a.systems()
    wait_until(docked, timeout, 0.05, "%s docked" % name)


def test_app_run_echo_round_trip_over_tcp(k, tmp_path):
    a = Apps(k)
    d = write_app(tmp_path, "remote-echo", REMOTE)
    data = str(tmp_path / "appdata")
    proc = start_run(d, k, data)
    try:
        wait_docked(a, "remote-echo", proc)
        r = a.ask("remote-echo", {"x": [1, 2]})
        assert r == {"echo": {"x": [1, 2]}, "self": "remote-echo",
                     "boots": 1}
        # it is docked directly (not through the kernel's app host), so
        # the loader does not list it
        assert a.systems()["remote-echo"]["kind"] != "app"
        assert "remote-echo" not in a.modules()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        check_clean(err)
        assert proc.returncode == 0, (out, err)
        assert a.mailbox(timeout=3, pred=lambda m: m["data"]
                         == "remote stopping") is not None, "stop() did not run"
        wait_until(lambda: "remote-echo" not in a.systems(), 5, 0.05,
                   "undocked")
        # its kv lives under --data: a second run sees it
        proc = start_run(d, k, data)
        wait_docked(a, "remote-echo", proc)
        assert a.ask("remote-echo", 1)["boots"] == 2
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_app_run_crashes_are_supervised(k, tmp_path):
    a = Apps(k)
    d = write_app(tmp_path, "remote-flaky", """
return {
  message = function (msg)
    if msg.attempt == 1 then error("first attempt fails") end
    aaax.reply(msg, { attempt = msg.attempt })
  end,
}
""")
    proc = start_run(d, k, str(tmp_path / "appdata"))
    try:
        wait_docked(a, "remote-flaky", proc)
        assert a.ask("remote-flaky", 1, timeout=10) == {"attempt": 2}
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "first attempt fails" in out + err


def test_app_run_stopped_by_the_lifecycle(k, tmp_path):
    a = Apps(k)
    d = write_app(tmp_path, "remote-echo", REMOTE)
    proc = start_run(d, k, str(tmp_path / "appdata"))
    try:
        wait_docked(a, "remote-echo", proc)
        r = a.lifecycle(op="stop", target="remote-echo")
        assert r["ok"] is True, r
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, (out, err)
        assert a.mailbox(timeout=3, pred=lambda m: m["data"]
                         == "remote stopping") is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("case", ["no-dir", "bad-manifest", "syntax",
                                  "start-raises"])
def test_app_run_bad_app_exits_1(k, tmp_path, case):
    if case == "no-dir":
        d, text = str(tmp_path / "nothing-here"), "nothing-here"
    elif case == "bad-manifest":
        d = write_app(tmp_path, "bm", ECHO, frob=1)
        text = "manifest.lua:4:"
    elif case == "syntax":
        d = write_app(tmp_path, "syn", "return {\n  message = function (\n")
        text = "main.lua:"
    else:
        d = write_app(tmp_path, "sr", 'return { start = function () '
                      'error("will not start") end }\n')
        text = "will not start"
    p = subprocess.run([AAAX_CLI, "app", "run", d, "--connect", k.endpoint,
                        "--data", str(tmp_path / "appdata")],
                       capture_output=True, text=True, env=env(), timeout=30)
    check_clean(p.stderr)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("aaax: app run: "), p.stderr
    assert text in p.stderr, p.stderr


def test_app_run_refused_when_the_name_is_taken(k, tmp_path):
    a = Apps(k)
    d = write_app(tmp_path, "taken", ECHO)
    a.load_ok(d)
    p = subprocess.run([AAAX_CLI, "app", "run", d, "--connect", k.endpoint,
                        "--data", str(tmp_path / "appdata")],
                       capture_output=True, text=True, env=env(), timeout=30)
    assert p.returncode == 1 and "409" in p.stderr, p.stderr
    assert a.ask("taken", "still mine") == "still mine"


def test_app_run_without_a_kernel_does_not_hang_forever(tmp_path):
    d = write_app(tmp_path, "lonely", ECHO)
    proc = subprocess.Popen([AAAX_CLI, "app", "run", d, "--connect",
                             "tcp://127.0.0.1:1", "--data",
                             str(tmp_path / "appdata")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env())
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    check_clean(err)
    assert proc.returncode in (0, 1), (proc.returncode, out, err)
