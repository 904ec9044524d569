"""Several hosts on one machine (issue 5, "A real multi-host test"): the
kernel runs in one network namespace, agents in others, joined by veth
pairs on a bridge (netns.py). The link is a real non-loopback one, so the
kernel's tcp endpoint uses CURVE without being asked to.

Host "k" (10.200.1.1) runs aaaxd; hosts "a" (10.200.1.2) and "b"
(10.200.1.3) run agents: small Python programs (AGENT below, with the
aaax client of clients/python) started with `ip netns exec`, which print
what they saw as JSON lines. The test process itself stays in the root
namespace and reaches the kernel over its ipc socket (a path in the data
directory: unix sockets do not care about network namespaces) for
privileged checks (STAT, CTL list).

Needs root and iproute2; skipped otherwise (it runs in CI as root). The
namespaces are deleted, and their processes killed, on every way out of a
test; ones left behind by a killed run are swept at the start.

Run: AAAXD=build/aaaxd AAAX_CLI=build/aaax PYTHONPATH=clients/python \
     /usr/bin/python3 -m pytest -q tests/python/test_multihost.py
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import zmq
import zmq.auth

from conftest import AAAXD, AAAX_CLI, ROOT, wait_until
import netns

import aaax

PY = "/usr/bin/python3"
PORT = 5670          # each kernel has a network namespace of its own
TAP_PORT = 5671

CONFIG = """
return {
  heartbeat_ms = 1000,
  apps = {},
  channels = {
    { name = "work", kind = "work-queue", durable = true,
      max_attempts = 1000, lease_ms = 600000 },
    { name = "news", kind = "broadcast", visibility = "public", retain = 10 },
  },
  policy = {
    { subject = "*", action = "chan.write", target = "work",  effect = "allow" },
    { subject = "*", action = "chan.claim", target = "work*", effect = "allow" },
    { subject = "*", action = "chan.read",  target = "news",  effect = "allow" },
    { subject = "*", action = "chan.write", target = "news",  effect = "allow" },
  },
}
"""

# ---------------------------------------------------------------------------
# The agent program. argv[1] is a JSON object: "role" picks what it does,
# "endpoint", "server_key" and "key" (a certificate made by aaax keygen)
# say how to reach the kernel, "dir" is a directory shared with the test
# (flag files: the test tells the agent when to go on by creating them).
# Everything it sees is printed as one JSON object per line.

AGENT = r'''
import json, os, sys, time
import msgpack
import zmq
import zmq.auth
import aaax

cfg = json.loads(sys.argv[1])


def out(**kw):
    kw["t"] = time.time()
    sys.stdout.write(json.dumps(kw, default=repr) + "\n")
    sys.stdout.flush()


def flag(name):
    return os.path.exists(os.path.join(cfg["dir"], name))


def wait_flag(name, timeout=60.0):
    deadline = time.time() + timeout
    while not flag(name):
        if time.time() > deadline:
            raise SystemExit("flag %s never came" % name)
        time.sleep(0.02)


def client(system, channels=(), key=None, **kw):
    opts = dict(system=system, channels=list(channels),
                timeout=cfg.get("timeout", 5.0))
    key = key or cfg.get("key")
    if key:
        opts["server_key"] = cfg["server_key"]
        opts["key"] = key
    opts.update(kw)
    return aaax.Client(cfg["endpoint"], **opts)


def env(m):
    return {k: m.get(k) for k in ("id", "from", "chan", "to", "corr",
                                  "data", "attempt")}


def role_work():
    """Docks, then write (twice with one idempotency key), claim, ack,
    subscribe and receive its own broadcast; until the flag "bye" (the
    test looks at the session meanwhile) it takes and ACKs what comes to
    its mailbox; then BYE."""
    c = client(cfg["system"], ["work", "news"])
    r = c.dock()
    out(step="dock", session=r.get("session"), grants=r.get("grants"))
    c.subscribe("news")
    out(step="sub")
    wid = c.write("work", {"n": 1}, key="k1")
    wid2 = c.write("work", {"n": 1}, key="k1")
    out(step="write", id=wid, again=wid2)
    msgs = c.claim("work", max=10, wait_ms=3000, lease_ms=30000)
    out(step="claim", msgs=[env(m) for m in msgs])
    out(step="ack", acked=c.ack("work", [m["id"] for m in msgs]))
    out(step="claim-again", n=len(c.claim("work", max=10, wait_ms=200)))
    nid = c.write("news", {"hello": cfg["system"]})
    got = c.recv(timeout=10)
    out(step="recv", id=nid, got=got)
    out(step="ready")
    deadline = time.time() + 60
    while not flag("bye") and time.time() < deadline:
        p = c.recv(timeout=0.05)          # PINGs meanwhile
        if p and p.get("sub") == "@" + cfg["system"]:
            out(step="mail", msg=env(p["msg"]),
                acked=c.ack(p["sub"], [p["msg"]["id"]]))
    c.bye()
    out(step="bye")
    c.close()


def role_refused():
    """Tries each {system, key} of cfg["attempts"] on a fresh connection;
    then a plaintext DEALER (no CURVE) sends PING and HELLO and waits
    cfg["plain_wait"] seconds for any answer."""
    for a in cfg["attempts"]:
        c = client(a["system"], [], key=a["key"])
        try:
            r = c.dock()
            out(system=a["system"], result="docked",
                session=r.get("session"))
            c.bye()
        except aaax.AaaxTimeout as e:
            out(system=a["system"], result="timeout", reason=str(e))
        except aaax.AaaxError as e:
            out(system=a["system"], result="error", code=e.code,
                reason=e.reason)
        finally:
            c.close()
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(cfg["endpoint"])
    s.send_multipart([b"PING", msgpack.packb({"req": 1})])
    s.send_multipart([b"HELLO", msgpack.packb(
        {"req": 2, "system": cfg["plain_system"], "version": 1})])
    answered = s.poll(int(cfg["plain_wait"] * 1000))
    out(plain="answered" if answered else "silent",
        frames=s.recv_multipart() if answered else None)
    s.close()


def role_tap():
    """Two tap subscribers, one with an authorized key, one with an
    unknown one; prints "ready", then what each received once the
    authorized one has had cfg["want"] messages (and the other one was
    given 1 s more)."""
    ctx = zmq.Context.instance()
    subs = {}
    for name, path in (("good", cfg["key"]), ("unknown", cfg["other_key"])):
        pub, sec = zmq.auth.load_certificate(path + "_secret")
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_serverkey = cfg["server_key"].encode()
        s.curve_publickey = pub
        s.curve_secretkey = sec
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(cfg["tap"])
        subs[name] = s
    out(step="ready")
    got = {"good": 0, "unknown": 0}
    deadline = time.time() + 30
    extra = None
    while time.time() < deadline:
        for name, s in subs.items():
            while s.poll(0):
                frames = s.recv_multipart()
                if frames[0] == b"news":
                    got[name] += 1
        if got["good"] >= cfg["want"] and extra is None:
            extra = time.time() + 1.0
        if extra is not None and time.time() > extra:
            break
        time.sleep(0.01)
    out(step="done", got=got)


def role_producer():
    """Writes {seq} to "work" with idempotency key "s<seq>", a seq after
    the other, until the flag "stop-producer"; a write that fails is
    retried with the same key (safe: the kernel returns the first id)."""
    c = client(cfg["system"], ["work"], reconnect=True)
    c.dock()
    out(ev="docked", session=c.session)
    seq = 0
    while not flag("stop-producer"):
        seq += 1
        while True:
            try:
                mid = c.write("work", {"seq": seq}, key="s%d" % seq)
                out(ev="ok", seq=seq, id=mid, rc=c.reconnects)
                break
            except aaax.AaaxError as e:
                out(ev="retry", seq=seq, error=type(e).__name__,
                    code=e.code, reason=e.reason, rc=c.reconnects)
                if e.code not in (0, 401, 409, 503):
                    raise
                time.sleep(0.05)
        time.sleep(0.02)
    out(ev="end", reconnects=c.reconnects, last=seq)
    c.close()


def role_consumer():
    """Claims from "work" (lease 10 min) and ACKs each message on its own,
    printing every message received and the outcome of every ACK. From
    the flag "hold" until its client has reconnected it ACKs nothing
    (printing "held"): those leases can only come back through the
    session's end. Stops at the flag "stop-consumer"."""
    c = client(cfg["system"], ["work"], reconnect=True)
    c.dock()
    out(ev="docked", session=c.session)
    hold_rc = None
    while not flag("stop-consumer"):
        if hold_rc is None and flag("hold"):
            hold_rc = c.reconnects
        try:
            msgs = c.claim("work", max=10, wait_ms=300, lease_ms=600000)
        except aaax.AaaxError as e:
            out(ev="claim_err", error=type(e).__name__, code=e.code,
                reason=e.reason, rc=c.reconnects)
            if e.code not in (0, 401, 409, 503):
                raise
            time.sleep(0.05)
            continue
        for m in msgs:
            out(ev="recv", id=m["id"], seq=m["data"]["seq"],
                attempt=m["attempt"], rc=c.reconnects)
        holding = hold_rc is not None and c.reconnects == hold_rc
        for m in msgs:
            if holding:
                out(ev="held", id=m["id"], seq=m["data"]["seq"],
                    attempt=m["attempt"])
                continue
            try:
                n = c.ack("work", [m["id"]])
                out(ev="ack", id=m["id"], seq=m["data"]["seq"], acked=n)
            except aaax.AaaxError as e:
                out(ev="ack_err", id=m["id"], seq=m["data"]["seq"],
                    error=type(e).__name__, code=e.code, reason=e.reason)
                if e.code not in (0, 401, 409, 503):
                    raise
    out(ev="end", reconnects=c.reconnects)
    c.close()


def role_asker():
    """Sends cfg["n"] messages to the mailbox of cfg["to"] and waits for
    each answer (the mailbox message whose corr is the request's id)."""
    c = client(cfg["system"], [])
    c.dock()
    for i in range(cfg["n"]):
        mid = c.send(cfg["to"], {"q": i, "from_host": cfg["system"]})
        deadline = time.time() + 20
        while True:
            p = c.recv(timeout=max(0.0, deadline - time.time()))
            if p is None:
                out(q=i, answer=None)
                break
            m = p.get("msg") or {}
            if p.get("sub") == "@" + cfg["system"] and m.get("corr") == mid:
                c.ack("@" + cfg["system"], [m["id"]])
                out(q=i, answer=m.get("data"), frm=m.get("from"))
                break
    c.bye()
    c.close()


globals()["role_" + cfg["role"]]()
'''


# ---------------------------------------------------------------------------
# The harness.

def cli(*args, timeout=30):
    """Runs the aaax CLI here (offline commands: keygen, authorize,
    kernel-key, audit); returns the CompletedProcess, checked."""
    r = subprocess.run([AAAX_CLI] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    assert r.returncode == 0, "aaax %s: exit %d\n%s%s" % (
        " ".join(args), r.returncode, r.stdout, r.stderr)
    return r


class NsKernel:
    """aaaxd on host k of a Lan, bound to its bridge address."""

    def __init__(self, lan, tmp, insecure=False, config=CONFIG):
        self.lan = lan
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.addr = lan.addr("k")
        self.endpoint = "tcp://%s:%d" % (self.addr, PORT)
        self.tap = "tcp://%s:%d" % (self.addr, TAP_PORT)
        self.ipc = "ipc://%s/aaax.sock" % self.data
        self.config_path = os.path.join(tmp, "config.lua")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.args = [AAAXD, "--data", self.data, "--bind", self.endpoint,
                     "--tap", self.tap, "--config", self.config_path]
        if insecure:
            self.args.append("--insecure")
        self.log_path = os.path.join(tmp, "aaaxd.log")
        self.proc = None
        self._clients = []

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = self.lan.popen("k", self.args, stdout=self.log,
                                   stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not os.path.exists(os.path.join(self.data, "aaax.sock")):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("aaaxd did not start (%s):\n%s" %
                                   (self.proc.poll(), self.read_log()))
            time.sleep(0.02)
        c = aaax.Client(self.ipc, timeout=10)
        try:
            c.ping()
        finally:
            c.close()
        wait_until(lambda: "kernel.heartbeat docked" in self.read_log(),
                   timeout=10, what="kernel.heartbeat docked")
        return self

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def token(self):
        return aaax.read_token(self.data)

    def admin(self):
        """A privileged client on the ipc socket (closed at stop())."""
        c = aaax.Client(self.ipc, system="admin-%d" % len(self._clients),
                        privileged=True, token=self.token, timeout=10)
        c.dock()
        self._clients.append(c)
        return c

    def client(self, system, channels=()):
        """An ordinary client on the ipc socket (kernel side)."""
        c = aaax.Client(self.ipc, system=system, channels=list(channels),
                        timeout=10)
        c.dock()
        self._clients.append(c)
        return c

    def server_key(self):
        key = cli("kernel-key", "--data", self.data).stdout.strip()
        assert len(key) == 40, key
        pub, _ = zmq.auth.load_certificate(
            os.path.join(self.data, "curve", "server.cert"))
        assert pub.decode() == key
        return key

    def stop(self):
        """SIGTERM; returns the exit status (None if it had to be
        killed)."""
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients = []
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.log.close()


class Agent:
    """One run of AGENT on a host; its JSON lines are collected as they
    come (self.lines)."""

    def __init__(self, lan, host, tmp, name, **cfg):
        self.name = name
        script = os.path.join(tmp, "agent.py")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(AGENT)
        cfg.setdefault("dir", tmp)
        self.err_path = os.path.join(tmp, name + ".stderr")
        self.err = open(self.err_path, "w")
        envv = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "clients",
                                                        "python"))
        self.proc = lan.popen(host, [PY, script, json.dumps(cfg)],
                              stdout=subprocess.PIPE, stderr=self.err,
                              text=True, env=envv)
        self.lines = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"raw": line.rstrip("\n")}
            with self._lock:
                self.lines.append(obj)

    def events(self):
        with self._lock:
            return list(self.lines)

    def diag(self):
        try:
            with open(self.err_path) as f:
                err = f.read()[-4000:]
        except OSError:
            err = ""
        ev = self.events()
        return "agent %s: exit %s; last lines %s\nstderr:\n%s" % (
            self.name, self.proc.poll(), json.dumps(ev[-15:], default=repr),
            err)

    def wait_for(self, pred, timeout, what):
        """Polls until pred(events) is true; fails with the agent's
        output otherwise (also when it exited first)."""
        deadline = time.time() + timeout
        while True:
            v = pred(self.events())
            if v:
                return v
            if self.proc.poll() is not None:
                self._reader.join(5)
                v = pred(self.events())
                if v:
                    return v
                raise AssertionError("%s: agent ended first\n%s" %
                                     (what, self.diag()))
            if time.time() > deadline:
                raise AssertionError("%s: not within %ss\n%s" %
                                     (what, timeout, self.diag()))
            time.sleep(0.02)

    def finish(self, timeout=30):
        """Waits for the end; asserts exit 0; returns the lines."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("agent %s did not end within %ss\n%s" %
                                 (self.name, timeout, self.diag()))
        self._reader.join(10)
        assert self.proc.returncode == 0, self.diag()
        return self.events()


class Net:
    """What a test gets: the Lan, a temporary directory, helpers to make
    keys, start the kernel and run agents."""

    def __init__(self, lan, tmp):
        self.lan = lan
        self.tmp = tmp
        self.kernel = None
        self.agents = []

    def start_kernel(self, **kw):
        d = os.path.join(self.tmp, "k")
        os.makedirs(d, exist_ok=True)
        self.kernel = NsKernel(self.lan, d, **kw)
        return self.kernel.start()

    def keygen(self, name):
        """A client certificate made by `aaax keygen`; returns (path,
        public key)."""
        path = os.path.join(self.tmp, "keys", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cli("keygen", path)
        assert os.stat(path + "_secret").st_mode & 0o077 == 0
        pub, sec = zmq.auth.load_certificate(path + "_secret")
        assert sec is not None
        return path, pub.decode()

    def authorize(self, pub, *systems):
        args = ["authorize", pub]
        for s in systems:
            args += ["--system", s]
        cli(*(args + ["--data", self.kernel.data]))

    def agent(self, host, name, role, **cfg):
        cfg["role"] = role
        cfg.setdefault("endpoint", self.kernel.endpoint)
        a = Agent(self.lan, host, self.tmp, name, **cfg)
        self.agents.append(a)
        return a

    def set_flag(self, name):
        open(os.path.join(self.tmp, name), "w").close()


def _term_to_interrupt(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


@pytest.fixture
def net(request):
    """Three hosts k, a, b; everything torn down on every way out. Fails
    the test when aaaxd did not exit cleanly or a sanitizer spoke."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not shutil.which(netns.IP) and not os.path.exists(netns.IP):
        pytest.skip("iproute2's ip is not installed")
    netns.sweep_stale()
    # SIGTERM (a CI job cancelled) would end pytest without any teardown:
    # made a KeyboardInterrupt meanwhile, so the namespaces still go.
    old_term = signal.getsignal(signal.SIGTERM)
    if old_term == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _term_to_interrupt)
    try:
        lan = netns.Lan(["k", "a", "b"])
    except netns.NetnsUnavailable as e:
        signal.signal(signal.SIGTERM, old_term)
        pytest.skip(str(e))
    tmp = tempfile.mkdtemp(prefix="aaax-mh-")
    n = Net(lan, tmp)
    failed_before = request.session.testsfailed
    failures = []
    try:
        yield n
        if n.kernel is not None:
            for a in n.agents:
                if a.proc.poll() is None:
                    a.proc.terminate()
            rc = n.kernel.stop()
            log = n.kernel.read_log()
            if rc != 0:
                failures.append("aaaxd exited %s:\n%s" % (rc, log[-6000:]))
            if "ERROR: AddressSanitizer" in log or "runtime error:" in log:
                failures.append("sanitizer report:\n" + log)
    finally:
        if n.kernel is not None:
            n.kernel.stop()
        lan.close()
        for a in n.agents:
            a.err.close()
        signal.signal(signal.SIGTERM, old_term)
    assert not any(ns in netns.list_namespaces() for ns in lan.ns.values())
    if failures:
        pytest.fail("\n".join(failures) + "\n(files kept in %s)" % tmp)
    if request.session.testsfailed == failed_before:
        shutil.rmtree(tmp, ignore_errors=True)   # kept when the test failed


def outage(net, admin, systems, seconds=5.0, during=None, keep=()):
    """Takes the kernel host's link down for `seconds`, watching (over
    ipc) for the kernel to undock every one of `systems` (`during` is
    called once the link is down; the clients in `keep`, on the kernel's
    side, are kept alive meanwhile); brings the link
    back (also on an error) and returns (when it came back, how long the
    kernel took to undock them all, None if it had not by then)."""
    down_at = time.time()
    net.lan.link_down("k")
    gone_after = None
    try:
        if during:
            during()
        while time.time() < down_at + seconds:
            if gone_after is None:
                docked = ctl_list(admin)
                if not any(s in docked for s in systems):
                    gone_after = time.time() - down_at
            for c in keep:
                c.keepalive()
            time.sleep(0.1)
    finally:
        net.lan.link_up("k")
    return time.time(), gone_after


def ctl_list(admin):
    return {s["id"]: s for s in admin.ctl("list")["systems"]}


def work_depth(admin):
    ch = admin.stat()["channels"]["work"]
    return ch["depth"], ch["leased"]


# ---------------------------------------------------------------------------
# The tests.

def test_harness_insecure_plain_dock_across_the_link(net):
    """--insecure: a plain client docks from another host, and the kernel
    says it is insecure (heartbeat, CTL list, aaax ps)."""
    k = net.start_kernel(insecure=True)
    assert net.lan.reachable("a", "k", PORT)
    a = net.agent("a", "plain", "work", system="agent-plain")
    a.wait_for(lambda ev: any(e.get("step") == "ready" for e in ev), 30,
               "plain agent ready")
    admin = k.admin()
    entry = ctl_list(admin)["agent-plain"]
    assert entry["kind"] == "remote"
    assert entry["auth"] == "plain"
    assert entry.get("peer", "").startswith(net.lan.addr("a")), entry
    hb = admin.stat()["heartbeat"]
    assert hb["insecure"] is True
    eps = {e["endpoint"]: e["curve"] for e in hb["endpoints"]}
    assert eps[k.endpoint] is False, eps
    assert admin.ctl("list")["insecure"] is True
    ps = cli("ps", "--data", k.data)
    assert "WARNING" in ps.stderr, ps.stderr    # the table stays on stdout
    assert "agent-plain" in ps.stdout
    net.set_flag("bye")
    ev = a.finish()
    steps = {e.get("step"): e for e in ev}
    assert steps["write"]["id"] == steps["write"]["again"]
    assert steps["ack"]["acked"] == 1


def test_authorized_agent_docks_and_works_across_the_link(net):
    """A key bound with `aaax authorize` docks over CURVE from host a and
    uses every kind of request; the kernel reports the session as a curve
    one with that key, and its endpoint as a CURVE endpoint without any
    flag."""
    k = net.start_kernel()
    zkey = k.server_key()
    cert, pub = net.keygen("agent-a")
    net.authorize(pub, "agent-a")
    a = net.agent("a", "agent-a", "work", system="agent-a", server_key=zkey,
                  key=cert)
    a.wait_for(lambda ev: any(e.get("step") == "ready" for e in ev), 30,
               "agent-a ready")
    admin = k.admin()
    entry = ctl_list(admin)["agent-a"]
    assert entry["auth"] == "curve", entry
    assert entry["key"] == pub, entry
    assert entry["kind"] == "remote"
    assert entry["peer"].startswith(net.lan.addr("a")), entry
    hb = admin.stat()["heartbeat"]
    assert hb["insecure"] is False
    eps = {e["endpoint"]: e["curve"] for e in hb["endpoints"]}
    assert eps[k.endpoint] is True, eps
    # A push across the link: a mailbox message from the kernel's host.
    mid = k.client("sender").send("agent-a", {"to": "host a"})
    a.wait_for(lambda ev: any(e.get("step") == "mail" for e in ev), 30,
               "the mail reached agent-a")
    net.set_flag("bye")
    ev = a.finish()
    steps = {e.get("step"): e for e in ev}
    assert "write:work" in steps["dock"]["grants"]
    assert steps["write"]["id"] == steps["write"]["again"]
    claimed = steps["claim"]["msgs"]
    assert [m["data"] for m in claimed] == [{"n": 1}]
    assert claimed[0]["id"] == steps["write"]["id"]
    assert claimed[0]["from"] == "agent-a"
    assert steps["ack"]["acked"] == 1
    assert steps["claim-again"]["n"] == 0
    got = steps["recv"]["got"]
    assert got["sub"] == "news" and got["msg"]["id"] == steps["recv"]["id"]
    assert got["msg"]["data"] == {"hello": "agent-a"}
    assert steps["mail"]["msg"]["id"] == mid
    assert steps["mail"]["msg"]["from"] == "sender"
    assert steps["mail"]["msg"]["data"] == {"to": "host a"}
    assert steps["mail"]["acked"] == 1
    assert "bye" in steps
    wait_until(lambda: "agent-a" not in ctl_list(admin), 10,
               what="agent-a undocked after BYE")


def test_unknown_key_other_id_and_plaintext_are_refused(net):
    """Over CURVE: an unknown key gets 401, a key docking as an id it is
    not bound to gets 401 (also an id bound to another key), each with an
    audit record; the bound key docks (the control). A plaintext client
    gets no answer at all. On the tap, only an authorized key hears the
    public channel."""
    k = net.start_kernel()
    zkey = k.server_key()
    good, good_pub = net.keygen("good")
    other, other_pub = net.keygen("other")
    unknown, _ = net.keygen("unknown")
    net.authorize(good_pub, "agent-a")
    net.authorize(other_pub, "agent-b")
    attempts = [
        {"system": "agent-x", "key": unknown},   # unknown key, free id
        {"system": "agent-a", "key": unknown},   # unknown key, bound id
        {"system": "agent-b", "key": good},      # bound to another key
        {"system": "agent-c", "key": good},      # not bound to this key
        {"system": "agent-a", "key": good},      # the control: docks
    ]
    a = net.agent("a", "refused", "refused", server_key=zkey,
                  attempts=attempts, plain_system="agent-c", plain_wait=3.0)
    ev = a.finish(60)
    results = [e for e in ev if "result" in e]
    assert [r["system"] for r in results] == [x["system"] for x in attempts]
    for r in results[:4]:
        assert r["result"] == "error" and r["code"] == 401, r
        assert "aaax authorize" in r["reason"], r
    assert results[4]["result"] == "docked", results[4]
    plain = [e for e in ev if "plain" in e]
    assert plain and plain[0]["plain"] == "silent", plain

    audit = [json.loads(line) for line in cli(
        "audit", "tail", "--data", k.data, "-n", "200").stdout.splitlines()
        if line.strip()]
    denies = [r for r in audit
              if r.get("kind") == "dock" and r.get("verdict") == "deny"]
    for system in ("agent-x", "agent-b", "agent-c"):
        assert any(system in json.dumps(r) for r in denies), (system, denies)
    assert len(denies) >= 4, denies

    # The tap over CURVE: the good key hears "news", the unknown one not.
    t = net.agent("b", "tap", "tap", server_key=zkey, key=good,
                  other_key=unknown, tap=k.tap, want=3)
    t.wait_for(lambda ev: any(e.get("step") == "ready" for e in ev), 30,
               "tap agent ready")
    writer = k.client("tap-writer", ["news"])
    while t.proc.poll() is None:    # until it has heard enough (<= 30 s)
        writer.write("news", {"tick": time.time()})
        time.sleep(0.1)
    done = [e for e in t.finish() if e.get("step") == "done"][0]
    assert done["got"]["good"] >= 3, done
    assert done["got"]["unknown"] == 0, done


def test_link_down_5s_during_durable_writes_and_claims(net):
    """Host a writes seq numbers to a durable work-queue (idempotency key
    per seq, retried until OK); host b claims and ACKs them. The bridge
    on the kernel's host goes down for 5 s (heartbeat 1 s: the kernel ends
    both sessions, releasing the leases) and comes back. Both clients
    reconnect by themselves; then every write that was OK'd has been
    received, the claims held unacknowledged over the outage were
    delivered again (their lease is 10 min: only the end of the session
    gives them back), no message was delivered after its ACK was
    accepted, and no seq became two messages."""
    k = net.start_kernel()
    zkey = k.server_key()
    pcert, ppub = net.keygen("producer")
    ccert, cpub = net.keygen("consumer")
    net.authorize(ppub, "producer")
    net.authorize(cpub, "consumer")
    admin = k.admin()
    cons = net.agent("b", "consumer", "consumer", system="consumer",
                     server_key=zkey, key=ccert)
    prod = net.agent("a", "producer", "producer", system="producer",
                     server_key=zkey, key=pcert)

    def count(agent, ev_name, pred=lambda e: True):
        return sum(1 for e in agent.events()
                   if e.get("ev") == ev_name and pred(e))

    # The stream runs.
    cons.wait_for(lambda ev: sum(e.get("ev") == "ack" for e in ev) >= 30,
                  60, "30 ACKs before the outage")
    # The consumer stops ACKing; once it holds something, the link goes.
    net.set_flag("hold")
    cons.wait_for(lambda ev: any(e.get("ev") == "held" for e in ev), 30,
                  "a claim held")
    ok_before = count(prod, "ok")
    up_at, gone_after = outage(net, admin, ["producer", "consumer"])
    assert gone_after is not None, \
        "the kernel still had the sessions after 5 s of silence"

    # Both come back by themselves, and the stream goes on.
    prod.wait_for(lambda ev: sum(e.get("ev") == "ok" and e["t"] > up_at
                                 and e["rc"] >= 1 for e in ev) >= 20,
                  60, "20 writes OK'd after the outage")
    net.set_flag("stop-producer")
    pev = prod.finish(30)
    ok = {}
    for e in pev:
        if e.get("ev") == "ok":
            assert ok.setdefault(e["seq"], e["id"]) == e["id"], e
    assert ok_before > 0 and len(ok) > ok_before

    held = {e["id"]: e for e in cons.events() if e.get("ev") == "held"}

    def drained(_ev):
        ev = cons.events()
        seen = {e["seq"] for e in ev if e.get("ev") == "recv"}
        if not set(ok) <= seen:
            return False
        for hid, h in held.items():
            if not any(e.get("ev") == "recv" and e["id"] == hid
                       and e["attempt"] > h["attempt"] for e in ev):
                return False
        return work_depth(admin) == (0, 0)
    cons.wait_for(drained, 60, "the consumer has everything")
    net.set_flag("stop-consumer")
    cev = cons.finish(30)

    print("outage: kernel undocked both after %.2fs; writes OK'd %d (%d "
          "before), retries %d; received %d times, held %d, ACK errors %d; "
          "reconnects %s/%s" % (
              gone_after, len(ok), ok_before,
              sum(e.get("ev") == "retry" for e in pev),
              sum(e.get("ev") == "recv" for e in cev), len(held),
              sum(e.get("ev") == "ack_err" for e in cev),
              [e for e in pev if e.get("ev") == "end"][0]["reconnects"],
              [e for e in cev if e.get("ev") == "end"][0]["reconnects"]))
    # Both reconnected (the same processes, by themselves).
    pend = [e for e in pev if e.get("ev") == "end"][0]
    cend = [e for e in cev if e.get("ev") == "end"][0]
    assert pend["reconnects"] >= 1, pend
    assert cend["reconnects"] >= 1, cend

    # No acknowledged write lost.
    recv = [e for e in cev if e.get("ev") == "recv"]
    seen = {e["seq"] for e in recv}
    assert set(ok) - seen == set()
    # One message per seq (the retries' idempotency keys held), and it is
    # the one the producer was told about.
    ids_of = {}
    for e in recv:
        ids_of.setdefault(e["seq"], set()).add(e["id"])
    assert {s: i for s, i in ids_of.items() if len(i) > 1} == {}
    for seq, mid in ok.items():
        assert ids_of[seq] == {mid}, (seq, mid, ids_of[seq])
    # The held claims came again, with a higher attempt.
    assert held
    for hid, h in held.items():
        again = [e for e in recv if e["id"] == hid
                 and e["t"] > h["t"] and e["attempt"] > h["attempt"]]
        assert again, ("held claim not delivered again", h)
    # Nothing delivered after its ACK was accepted; no ACK accepted twice.
    acked_at = {}
    for i, e in enumerate(cev):
        if e.get("ev") == "ack" and e["acked"] == 1:
            assert e["id"] not in acked_at, ("acked twice", e)
            acked_at[e["id"]] = i
    for i, e in enumerate(cev):
        if e.get("ev") == "recv" and e["id"] in acked_at:
            assert i < acked_at[e["id"]], ("delivered after its ACK", e)
    # Every message was settled: an accepted ACK, or an ACK lost with the
    # link (its outcome unknown to the consumer; the queue is empty).
    unsure = {e["id"] for e in cev if e.get("ev") == "ack_err"}
    for e in recv:
        assert e["id"] in acked_at or e["id"] in unsure, e
    assert work_depth(admin) == (0, 0)


def test_app_run_docks_a_lua_app_from_another_host(net):
    """`aaax app run apps/echo` on host a, over CURVE with a key bound to
    "echo": an agent on host b asks it and gets the answers. Then the link
    goes down for 5 s; a message sent to echo meanwhile (from the kernel's
    host) is answered once app run has re-docked by itself."""
    k = net.start_kernel()
    zkey = k.server_key()
    ecert, epub = net.keygen("echo")
    acert, apub = net.keygen("asker")
    net.authorize(epub, "echo")
    net.authorize(apub, "asker")
    admin = k.admin()
    app_data = os.path.join(net.tmp, "echo-data")
    log_path = os.path.join(net.tmp, "app-run.log")
    with open(log_path, "wb") as log:
        app = net.lan.popen("a", [AAAX_CLI, "app", "run",
                                  os.path.join(ROOT, "apps", "echo"),
                                  "--connect", k.endpoint,
                                  "--server-key", zkey, "--key", ecert,
                                  "--data", app_data],
                            stdout=log, stderr=subprocess.STDOUT)

    def app_log():
        with open(log_path, "rb") as f:
            return "app run (exit %s):\n%s" % (
                app.poll(), f.read().decode(errors="replace"))

    def echo_docked():
        if app.poll() is not None:
            raise AssertionError(app_log())
        return ctl_list(admin).get("echo")
    entry = wait_until(echo_docked, 30, what="echo docked\n" + app_log())
    assert entry["auth"] == "curve" and entry["key"] == epub, entry
    assert entry["peer"].startswith(net.lan.addr("a")), entry

    asker = net.agent("b", "asker", "asker", system="asker",
                      server_key=zkey, key=acert, to="echo", n=3)
    answers = [e for e in asker.finish(60) if "q" in e]
    assert [(e["q"], e["answer"], e["frm"]) for e in answers] == [
        (i, {"q": i, "from_host": "asker"}, "echo") for i in range(3)], \
        answers

    # The link goes; a request waits in echo's mailbox meanwhile.
    local = k.client("asker-k")
    sent = []
    _, gone_after = outage(net, admin, ["echo"], keep=[local],
                           during=lambda: sent.append(local.send(
                               "echo", {"during": "outage"})))
    mid = sent[0]
    assert gone_after is not None, \
        "the kernel still had echo after 5 s of silence"
    reply = None
    deadline = time.time() + 60
    while reply is None and time.time() < deadline:
        if app.poll() is not None:
            raise AssertionError("app run ended\n" + app_log())
        p = local.recv(timeout=0.5)
        if p and (p.get("msg") or {}).get("corr") == mid:
            reply = p["msg"]
    assert reply is not None, "no answer after the outage\n" + app_log()
    assert reply["data"] == {"during": "outage"} and reply["from"] == "echo"
    local.ack("@asker-k", [reply["id"]])
    assert app.poll() is None, app_log()
    again = ctl_list(admin)["echo"]
    assert again["auth"] == "curve" and again["key"] == epub, again
    app.send_signal(signal.SIGTERM)
    assert app.wait(20) == 0, app_log()
