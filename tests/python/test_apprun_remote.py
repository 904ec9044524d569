"""`aaax app run` docked over tcp keeps itself docked (docs/LUA.md,
"Running an app remotely"): it waits for a kernel that is not up yet; after
a kernel restart on the same port and data, after the kernel stood still
(SIGSTOP) for more than 3 heartbeat periods, after this process stood
still, and after a network cut (a TCP relay that drops its connections) it
reconnects and docks again by itself -- taking its session over when the
kernel still has it -- and the app keeps its Lua state (start() does not
run again), its subscription works again, a call that was waiting on the
kernel returned nil, "503 ...", and a mailbox message it had handled is not
handled twice. A kill by the operator is not undone by reconnecting. Over
CURVE (`aaaxd --curve all`) it docks with --server-key / --key when its key
is bound to the app's name, and a key that is not is refused at once
(status 1, the 401 on stderr).

Each test's clients are made again after a disruption: the kernel (or its
sessions) went away under them, and they do not reconnect by themselves."""

import os
import select
import signal
import socket
import subprocess
import threading
import time

import pytest
import zmq

from conftest import AAAX_CLI, APP_CONFIG, wait_until
from test_apps import Apps, write_app

pytestmark = pytest.mark.skipif(
    not os.path.exists(AAAX_CLI),
    reason="the aaax CLI binary %s does not exist (build it, or set "
           "AAAX_CLI)" % AAAX_CLI)

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

CHANNELS = """
    { name = "news", kind = "broadcast" },
    { name = "tasks", kind = "work-queue", durable = true },
"""

POLICY = """
    { subject = "rapp", action = "chan.read", target = "news", effect = "allow" },
    { subject = "rapp", action = "chan.claim", target = "tasks", effect = "allow" },
    { subject = "user-1", action = "chan.write", target = "news", effect = "allow" },
"""

# A Lua variable (calls: kept while the process lives), a kv counter
# (boots: how often start() ran), a subscription made in start(), and a
# call that waits on the kernel ({op = "claim"}: a long-poll CLAIM) whose
# outcome the next answer reports.
RAPP = """
local calls = 0
local claim_err = nil
return {
  start = function ()
    aaax.kv.put("boots", (aaax.kv.get("boots") or 0) + 1)
    assert(aaax.subscribe("news"))
  end,
  message = function (msg)
    if msg.chan == "news" then
      aaax.send("user-1", { news = msg.data })
      return
    end
    calls = calls + 1
    local d = msg.data
    if type(d) == "table" and d.op == "claim" then
      aaax.reply(msg, "claiming")
      local got, err = aaax.claim("tasks", 1, 60000)
      claim_err = err or "got " .. #got
      return
    end
    aaax.reply(msg, { echo = d, calls = calls, boots = aaax.kv.get("boots"),
                      claim_err = claim_err })
  end,
  stop = function ()
    aaax.send("user-1", "rapp stopping")
  end,
}
"""


def env():
    e = dict(os.environ)
    for k in ("AAAX_CONNECT", "AAAX_SYSTEM", "AAAX_SERVER_KEY", "AAAX_CERT"):
        e.pop(k, None)
    return e


def config(heartbeat_ms=1000):
    return APP_CONFIG % {"heartbeat_ms": heartbeat_ms, "apps": "",
                         "channels": CHANNELS, "policy": POLICY,
                         "extra": ""}


class Run:
    """`aaax app run DIR --connect EP ...` with its output in files (read
    while it runs)."""

    def __init__(self, tmp, d, endpoint, *args, extra_env=None):
        self.out_path = os.path.join(str(tmp), "run.out")
        self.err_path = os.path.join(str(tmp), "run.err")
        self._out = open(self.out_path, "w")
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [AAAX_CLI, "app", "run", d, "--connect", endpoint, "--data",
             os.path.join(str(tmp), "appdata")] + list(args),
            stdout=self._out, stderr=self._err,
            env=dict(env(), **(extra_env or {})))

    def output(self):
        with open(self.out_path) as f, open(self.err_path) as g:
            return f.read() + g.read()

    def alive(self):
        return self.proc.poll() is None

    def wait(self, timeout=20):
        try:
            self.proc.wait(timeout)
        finally:
            self._out.close()
            self._err.close()
        text = self.output()
        for mark in SANITIZER_MARKS:
            assert mark not in text, "sanitizer report from aaax:\n" + text
        return self.proc.returncode

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.wait(5)
            raise AssertionError("app run did not stop on SIGTERM:\n"
                                 + self.output())


@pytest.fixture
def runs():
    made = []
    yield made
    for r in made:
        if r.alive():
            r.proc.kill()
            r.wait(5)


def start_run(runs, tmp, d, endpoint, *args, extra_env=None):
    r = Run(tmp, d, endpoint, *args, extra_env=extra_env)
    runs.append(r)
    return r


def wait_docked(a, run, name="rapp", timeout=30):
    """Waits until `name` is docked (a new session once the old one is
    gone), keeping a's clients alive."""
    def docked():
        assert run.alive(), "app run ended:\n" + run.output()
        a.keepalive()
        return name in a.systems()
    wait_until(docked, timeout, 0.1, "%s docked" % name)


def wait_output(run, text, timeout=30):
    wait_until(lambda: text in run.output(), timeout, 0.05,
               "%r in app run's output" % text)


def news_arrives(a, headline, timeout=10):
    """Writes headline on news until the app forwards it (a fresh
    subscription may be made just after a write)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a.user.write("news", headline)
        m = a.mailbox(timeout=1.0, pred=lambda m: m["data"]
                      == {"news": headline})
        if m is not None:
            return True
    return False


def fresh_apps(k):
    """Clients made again (the old ones lost their kernel or session;
    they do not reconnect by themselves)."""
    k.close_clients()
    return Apps(k, channels=["news"])


def session_of(a, name="rapp"):
    return a.systems()[name]["session"]


# ---- reconnecting --------------------------------------------------------


def test_kernel_restart_redocks_and_keeps_the_app(app_kernel, tmp_path,
                                                   runs):
    k = app_kernel(channels=CHANNELS, policy=POLICY)
    a = Apps(k, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, k.endpoint)
    wait_docked(a, run)
    assert a.ask("rapp", "one") == {"echo": "one", "calls": 1, "boots": 1}
    assert news_arrives(a, "before")
    # a handler waits on the kernel (a long-poll claim) when it goes away
    assert a.ask("rapp", {"op": "claim"}) == "claiming"
    first = session_of(a)
    k.close_clients()
    assert k.stop() == 0
    k.start()
    a = fresh_apps(k)
    wait_docked(a, run)
    assert session_of(a) != first
    wait_output(run, "docked again at %s" % k.endpoint)
    assert "lost the kernel at %s" % k.endpoint in run.output()
    # the same Lua state: calls went on (the claim message was handled
    # once, though the kernel may deliver it again), start() did not run
    # again (boots), and the waiting claim returned the 503
    r = a.ask("rapp", "two", timeout=10)
    assert r["echo"] == "two" and r["boots"] == 1, r
    assert r["calls"] == 3, r
    assert r["claim_err"].startswith("503 "), r
    # a new session: the runtime subscribed again
    assert news_arrives(a, "after")
    assert run.alive()
    assert run.stop() == 0, run.output()
    assert a.mailbox(timeout=5, pred=lambda m: m["data"]
                     == "rapp stopping") is not None, "stop() did not run"


def test_a_kernel_not_up_yet_is_waited_for(kernel_factory, tmp_path, runs):
    k = kernel_factory(config=config(), start=False)
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, k.endpoint)
    wait_output(run, "cannot dock at %s (cannot connect)" % k.endpoint)
    k.start()
    a = Apps(k, channels=["news"])
    wait_docked(a, run)
    assert "docked at %s after" % k.endpoint in run.output(), run.output()
    assert a.ask("rapp", "late")["boots"] == 1
    assert news_arrives(a, "late news")
    assert run.stop() == 0, run.output()


def test_kernel_standing_still_is_noticed(app_kernel, tmp_path, runs):
    # heartbeat 1 s: after 3 s with nothing from the kernel the app gives
    # up the connection and docks again once the kernel moves
    k = app_kernel(channels=CHANNELS, policy=POLICY)
    a = Apps(k, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, k.endpoint)
    wait_docked(a, run)
    assert a.ask("rapp", 1)["calls"] == 1
    a.user.send("rapp", "handled before the stop")
    os.kill(k.pid, signal.SIGSTOP)
    try:
        wait_output(run, "lost the kernel at", timeout=30)
        assert "nothing from it for" in run.output(), run.output()
    finally:
        os.kill(k.pid, signal.SIGCONT)
    # every client of the kernel went silent meanwhile: made again
    a = fresh_apps(k)
    wait_docked(a, run)
    wait_output(run, "docked again at")
    r = a.ask("rapp", 2, timeout=10)
    assert r["echo"] == 2 and r["boots"] == 1 and r["calls"] == 3, r
    assert news_arrives(a, "after the stop")
    assert run.stop() == 0, run.output()


def test_app_run_standing_still_docks_again(app_kernel, tmp_path, runs):
    # this time the app run process stands still: the kernel undocks its
    # silent session; that is not a kill, and it docks again
    k = app_kernel(channels=CHANNELS, policy=POLICY)
    a = Apps(k, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, k.endpoint)
    wait_docked(a, run)
    assert a.ask("rapp", 1)["calls"] == 1
    first = session_of(a)
    run.proc.send_signal(signal.SIGSTOP)
    try:
        # silent for 3 heartbeat periods, or its connection's ZMTP
        # heartbeat timed out first
        wait_until(lambda: (a.keepalive(),
                            "rapp undocked (" in k.read_log())[1],
                   30, 0.05, "rapp undocked")
    finally:
        run.proc.send_signal(signal.SIGCONT)
    wait_docked(a, run)
    assert session_of(a) != first
    r = a.ask("rapp", 2, timeout=10)
    assert r["boots"] == 1 and r["calls"] == 2, r
    assert news_arrives(a, "after")
    assert run.stop() == 0, run.output()


def test_a_message_handled_before_the_loss_is_not_handled_again(
        app_kernel, tmp_path, runs):
    # the kernel dies while the app's ACK of a handled message may not have
    # reached it; whatever comes again is acknowledged, not handled twice
    k = app_kernel(channels=CHANNELS, policy=POLICY)
    a = Apps(k, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, k.endpoint)
    wait_docked(a, run)
    for i in range(20):
        a.user.send("rapp", i)
    k.close_clients()
    k.kill9()
    k.start()
    a = fresh_apps(k)
    wait_docked(a, run)
    # the mailbox is durable and an ACK is answered once it is on disk:
    # each of the 20 comes once more at most, and is handled once
    r = a.ask("rapp", "last", timeout=15)
    assert r["calls"] == 21, r
    assert run.stop() == 0, run.output()


class Proxy:
    """A TCP relay to the kernel on a port of its own: cut() drops the
    connections through it (reset), as a network failure would, which the
    kernel does not take for an undock; block() refuses new connections
    until unblock(). One thread does all the socket work."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.endpoint = "tcp://127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.blocked = False
        self.pairs = {}          # socket -> its other end
        self._cut = threading.Event()
        self._cut_done = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _drop(self, s):
        other = self.pairs.pop(s, None)
        for x in (s, other):
            if x is None:
                continue
            self.pairs.pop(x, None)
            try:
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            x.close()

    def _run(self):
        while not self._stop.is_set():
            if self._cut.is_set():
                for s in list(self.pairs):
                    self._drop(s)
                self._cut.clear()
                self._cut_done.set()
            r, _, _ = select.select([self.lsock] + list(self.pairs), [], [],
                                    0.02)
            for s in r:
                if s is self.lsock:
                    c, _ = self.lsock.accept()
                    if self.blocked:
                        c.close()
                        continue
                    try:
                        u = socket.create_connection(self.target, 5)
                    except OSError:
                        c.close()
                        continue
                    self.pairs[c] = u
                    self.pairs[u] = c
                elif s in self.pairs:
                    try:
                        data = s.recv(65536)
                        if data:
                            self.pairs[s].sendall(data)
                            continue
                    except OSError:
                        pass
                    self._drop(s)
        for s in list(self.pairs):
            self._drop(s)
        self.lsock.close()

    def cut(self):
        self._cut_done.clear()
        self._cut.set()
        assert self._cut_done.wait(5)

    def close(self):
        self._stop.set()
        self.thread.join(5)


@pytest.fixture
def proxies():
    made = []
    yield made
    for p in made:
        p.close()


def test_network_cut_resumes_the_session(app_kernel, tmp_path, runs,
                                          proxies):
    k = app_kernel(channels=CHANNELS, policy=POLICY)
    proxy = Proxy(k.port)
    proxies.append(proxy)
    a = Apps(k, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, proxy.endpoint)
    wait_docked(a, run)
    assert a.ask("rapp", 1)["calls"] == 1
    first = session_of(a)
    proxy.cut()
    # the connection ends: noticed at once, a new one takes the session
    # over (the kernel still has it): subscriptions carried over
    wait_output(run, "docked again at")
    out = run.output()
    assert "lost the kernel at %s (connection closed)" % proxy.endpoint \
        in out, out
    assert "session resumed" in out, out
    assert session_of(a) == first
    r = a.ask("rapp", 2)
    assert r["calls"] == 2 and r["boots"] == 1, r
    assert news_arrives(a, "resumed")
    assert run.stop() == 0, run.output()


def test_what_is_sent_while_cut_off_arrives_after(app_kernel, tmp_path, runs,
                                                  proxies):
    k = app_kernel(channels=CHANNELS, policy=POLICY)
    proxy = Proxy(k.port)
    proxies.append(proxy)
    a = Apps(k, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, proxy.endpoint)
    wait_docked(a, run)
    proxy.blocked = True
    proxy.cut()
    wait_output(run, "cannot dock again at %s" % proxy.endpoint)
    ids = [a.user.send("rapp", "while cut off %d" % i) for i in range(3)]
    proxy.blocked = False
    answers = [a.user.await_corr(i, 30) for i in ids]
    assert [x["echo"] for x in answers] == ["while cut off %d" % i
                                            for i in range(3)]
    assert [x["calls"] for x in answers] == [1, 2, 3]
    assert answers[0]["boots"] == 1
    assert news_arrives(a, "after the cut")
    assert run.stop() == 0, run.output()


# ---- a kill is not undone ---------------------------------------------------


def test_ctl_kill_is_not_undone(app_kernel, tmp_path, runs):
    # heartbeat 2 s: a loaded machine does not make a 4 s silence
    k = app_kernel(channels=CHANNELS, policy=POLICY, heartbeat_ms=2000)
    a = Apps(k, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, k.endpoint)
    wait_docked(a, run)
    assert a.ask("rapp", 1)["calls"] == 1
    r = a.admin.ctl("kill", system="rapp")
    assert r["state"] == "undocked", r
    # its keepalive (every second) gets 401 on the live connection: it
    # stops, fails, and does not dock again
    assert run.wait(30) == 1, run.output()
    out = run.output()
    assert "undocked by the kernel while its connection was live" in out, out
    assert "docked again" not in out, out
    assert "rapp stopping" not in out
    a.keepalive()
    assert "rapp" not in a.systems()
    # stop() did not run (the app was undocked: nothing to say it with)
    assert a.mailbox(timeout=1, pred=lambda m: m["data"]
                     == "rapp stopping") is None


def test_lifecycle_kill_stops_it_for_good(app_kernel, tmp_path, runs):
    k = app_kernel(channels=CHANNELS, policy=POLICY, heartbeat_ms=2000)
    a = Apps(k, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, k.endpoint)
    wait_docked(a, run)
    assert a.lifecycle(op="kill", target="rapp")["ok"] is True
    # the KILL signal (sent before the undock) stops it: a requested stop
    assert run.wait(30) == 0, run.output()
    out = run.output()
    assert "docked again" not in out, out
    a.keepalive()
    assert "rapp" not in a.systems()
    assert a.mailbox(timeout=1, pred=lambda m: m["data"]
                     == "rapp stopping") is None


# ---- CURVE ----------------------------------------------------------------


def cli(*args):
    p = subprocess.run([AAAX_CLI] + list(args), capture_output=True,
                       text=True, env=env(), timeout=30)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout.strip()


class OverIpc:
    """A kernel whose tcp endpoint speaks CURVE, seen by the tests' own
    clients over its ipc endpoint."""

    def __init__(self, k):
        self._k = k

    def __getattr__(self, name):
        return getattr(self._k, name)

    def client(self, system=None, endpoint=None, **kw):
        return self._k.client(system, endpoint=endpoint or self._k.ipc, **kw)


@pytest.fixture
def ck(curve_kernel):
    """A kernel with `--curve all` (its loopback tcp endpoint is CURVE)."""
    return OverIpc(curve_kernel(config=config()))


def keygen(tmp, name):
    """`aaax keygen`: the certificate's path and its public key."""
    path = os.path.join(str(tmp), name)
    return path, cli("keygen", path)


def test_curve_docks_with_a_bound_key(ck, tmp_path, runs):
    server_key = cli("kernel-key", "--data", ck.data)
    assert len(server_key) == 40
    cert, public = keygen(tmp_path, "rapp-cert")
    ck.authorize(public, "rapp")
    a = Apps(ck, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, ck.endpoint, "--server-key",
                    server_key, "--key", cert)
    wait_docked(a, run)
    mine = [s for s in a.admin.ctl("list")["systems"] if s["id"] == "rapp"]
    assert mine[0].get("auth") == "curve", mine
    assert mine[0].get("key") == public, mine
    assert a.ask("rapp", "over curve")["echo"] == "over curve"
    assert news_arrives(a, "curve news")
    # a kernel restart: the new connection is made with the keys again
    ck.close_clients()
    assert ck.restart() == 0
    a = fresh_apps(ck)
    wait_docked(a, run)
    r = a.ask("rapp", "again", timeout=10)
    assert r["echo"] == "again" and r["boots"] == 1, r
    assert news_arrives(a, "curve news again")
    # its key revoked: the kernel undocks it at once, and it does not try
    # to dock again (it could not)
    ck.authorize(public, revoke=True)
    assert run.wait(30) == 1, run.output()
    out = run.output()
    assert "undocked by the kernel while its connection was live" in out, out
    assert out.count("docked again") == 1, out


def test_curve_key_not_bound_to_the_name_is_refused_at_once(ck, tmp_path,
                                                            runs):
    server_key = cli("kernel-key", "--data", ck.data)
    stranger, _ = keygen(tmp_path, "stranger")
    other, other_public = keygen(tmp_path, "other")
    ck.authorize(other_public, "someone-else")
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    for cert in (stranger, other):
        run = start_run(runs, tmp_path, d, ck.endpoint, "--server-key",
                        server_key, "--key", cert)
        # a 401 at the first HELLO is not tried again
        assert run.wait(30) == 1, run.output()
        out = run.output()
        assert "aaax: app run: rapp: the kernel refused to dock it: 401" \
            in out, out
        assert "trying again" not in out, out


def test_curve_wrong_server_key_is_said_and_tried_again(ck, tmp_path, runs):
    # not a refusal (the handshake never completes): tried again, with a
    # hint, until stopped
    cert, public = keygen(tmp_path, "rapp-cert")
    ck.authorize(public, "rapp")
    wrong = zmq.curve_keypair()[0].decode()
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, ck.endpoint, "--server-key", wrong,
                    "--key", cert)
    wait_output(run, "cannot dock at %s" % ck.endpoint, timeout=30)
    assert "--server-key" in run.output(), run.output()
    assert run.alive()
    assert run.stop() == 0, run.output()


def test_curve_keys_from_the_environment(ck, tmp_path, runs):
    """AAAX_SERVER_KEY and AAAX_CERT stand for --server-key and --key, as
    for the other commands."""
    server_key = cli("kernel-key", "--data", ck.data)
    cert, public = keygen(tmp_path, "rapp-cert")
    ck.authorize(public, "rapp")
    a = Apps(ck, channels=["news"])
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, ck.endpoint, extra_env={
        "AAAX_SERVER_KEY": server_key, "AAAX_CERT": cert})
    wait_docked(a, run)
    mine = [s for s in a.admin.ctl("list")["systems"] if s["id"] == "rapp"]
    assert mine[0].get("key") == public, mine


def test_a_secret_readable_by_others_is_refused(ck, tmp_path, runs):
    server_key = cli("kernel-key", "--data", ck.data)
    cert, public = keygen(tmp_path, "rapp-cert")
    ck.authorize(public, "rapp")
    os.chmod(cert + "_secret", 0o644)
    d = write_app(tmp_path, "rapp", RAPP, channels=["news", "tasks"])
    run = start_run(runs, tmp_path, d, ck.endpoint, "--server-key",
                    server_key, "--key", cert)
    assert run.wait(30) == 1, run.output()
    assert "chmod 600" in run.output(), run.output()
