"""Fixtures for the Python integration tests: each test gets a real aaaxd in
a fresh temporary data directory, on free loopback ports, stopped with
SIGTERM afterwards (and the test fails if it did not exit cleanly).

Fixtures: `kernel` (embedded defaults) and `kernel_factory(config=None,
extra_args=(), start=True, subdir=None)`. A Kernel has `endpoint`, `tap`,
`ipc`, `data`, `token`, `start()`, `stop()`, `kill9()`, and helpers for
tests: `client(system, **kw)` (a docked aaax.Client; it does not reconnect
by itself unless given reconnect=True), `raw()` (a Raw DEALER for
wire-level tests), `rss_kb()`, `wait_log(text)`, `alive()`, `restart()`
(same ports and data), and for CURVE `server_key`, `authorize(key, *ids)`,
`curve_client(system, **kw)`. Fixture `curve_kernel(config=None,
extra_args=())`: kernel_factory with `--curve all`.
Sockets made through them are closed before the kernel stops. The
temporary directory is removed after a clean test and kept otherwise.

Run: AAAXD=build/aaaxd /usr/bin/python3 -m pytest -q tests/python"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import pytest
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

AAAXD = os.environ.get("AAAXD", os.path.join(ROOT, "build", "aaaxd"))
AAAX_CLI = os.environ.get("AAAX_CLI", os.path.join(ROOT, "build", "aaax"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kernel:
    """A running aaaxd. `endpoint` is its tcp command endpoint, `tap` its tap,
    `ipc` its ipc endpoint, `data` its data directory."""

    def __init__(self, tmp, config=None, extra_args=(), heartbeat_ms=None):
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.port = free_port()
        # Two probes in a row can get the same port back from the OS.
        self.tap_port = free_port()
        while self.tap_port == self.port:
            self.tap_port = free_port()
        self.endpoint = "tcp://127.0.0.1:%d" % self.port
        self.tap = "tcp://127.0.0.1:%d" % self.tap_port
        self.ipc = "ipc://%s/aaax.sock" % self.data
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(tmp, "config.lua")
            with open(self.config_path, "w") as f:
                f.write(config)
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(tmp, "aaaxd.log")
        self._closers = []

    def args(self):
        a = [AAAXD, "--data", self.data, "--bind", self.endpoint,
             "--tap", self.tap]
        if self.config_path:
            a += ["--config", self.config_path]
        return a + self.extra_args

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self._log_size = self.log.tell()
        self.proc = subprocess.Popen(self.args(), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def curve_all(self):
        """True when every tcp endpoint speaks CURVE (--curve all, or
        curve = "all" in the config): a plain PING gets no answer there."""
        a = self.extra_args
        if any(a[i] == "--curve" and a[i + 1] == "all"
               for i in range(len(a) - 1)) or "--curve=all" in a:
            return True
        if self.config_path:
            with open(self.config_path) as f:
                text = f.read().replace(" ", "")
            return 'curve="all"' in text or "curve='all'" in text
        return False

    def wait_ready(self, timeout=10.0):
        """Waits until the kernel answers PING on its tcp endpoint (its ipc
        endpoint when the tcp one speaks CURVE)."""
        ctx = zmq.Context.instance()
        deadline = time.time() + timeout
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RECONNECT_IVL, 10)   # retry fast while it boots
        s.connect(self.ipc if self.curve_all() else self.endpoint)
        try:
            # queued until the connection is made, then sent once
            s.send_multipart([b"PING", msgpack.packb({"req": 1})])
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("aaaxd exited with %s:\n%s" %
                                       (self.proc.returncode,
                                        self.read_log()))
                if s.poll(20):
                    s.recv_multipart()
                    self._wait_actors(deadline)
                    return
        finally:
            s.close()
        raise RuntimeError("aaaxd did not answer within %ss:\n%s" %
                           (timeout, self.read_log()))

    def _wait_actors(self, deadline):
        """The kernel answers PING a moment before its heartbeat actor has
        docked; tests see a kernel with its actors up (and a SIGTERM in
        that first moment makes the shutdown slow). Best effort: waits for
        the log line, at most until deadline."""
        start = self._log_size
        end = min(deadline, time.time() + 2)
        while time.time() < end:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                if b"kernel.heartbeat docked" in f.read():
                    return
            if self.proc.poll() is not None:
                return
            time.sleep(0.005)

    @property
    def token(self):
        with open(os.path.join(self.data, "session.token")) as f:
            return f.read().strip()

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Stops the kernel; returns its exit status."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("aaaxd did not stop within %ss" % timeout)
        self.log.close()
        return self.proc.returncode

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    # ---- helpers for tests (additions; the interface above is unchanged)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self):
        """Resident memory of the running aaaxd, in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def wait_log(self, text, timeout=5.0):
        """Waits until text appears in the kernel's log; returns the log."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            log = self.read_log()
            if text in log:
                return log
            time.sleep(0.02)
        raise AssertionError("%r not in the log within %ss:\n%s" %
                             (text, timeout, self.read_log()))

    def client(self, system=None, endpoint=None, **kw):
        """An aaax.Client on this kernel (docked when system is given).
        Closed by the kernel_factory fixture at the end of the test. Unlike
        aaax.Client's default it does not reconnect (the tests written
        before reconnect existed expect the 401 of an ended session):
        pass reconnect=True for that."""
        import aaax
        kw.setdefault("reconnect", False)
        c = aaax.Client(endpoint or self.endpoint, system=system, **kw)
        self._closers.append(c.close)
        if system is not None:
            c.dock()
        return c

    def restart(self, kill=False, wait=True):
        """Stops the kernel (SIGTERM, or SIGKILL with kill) and starts it
        again on the same ports and data directory. Returns the exit status
        of the stop (-9 after kill). Clients stay open."""
        if kill:
            self.kill9()
            rc = self.proc.returncode
        else:
            rc = self.stop()
        self.start(wait=wait)
        return rc

    @property
    def server_key(self):
        """The kernel's CURVE public key (Z85 str), from
        <data>/curve/server.cert."""
        import zmq.auth
        public, _ = zmq.auth.load_certificate(
            os.path.join(self.data, "curve", "server.cert"))
        return public.decode()

    def authorize(self, key, *systems, revoke=False):
        """Binds a client's public key (Z85) to system ids (or revokes it)
        with `aaax authorize KEY --system ID... --data DIR`; returns the
        CompletedProcess (asserting success)."""
        key = key.decode() if isinstance(key, bytes) else key
        args = [AAAX_CLI, "authorize", "--data", self.data]
        if revoke:
            args += ["--revoke", key]
        else:
            for s in systems:
                args += ["--system", s]
            args += ["--", key]       # a Z85 key may start with '-'
        p = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p

    def curve_client(self, system=None, endpoint=None, authorize=True,
                     **kw):
        """An aaax.Client over CURVE on this kernel with a fresh key pair,
        bound to system first when authorize (docked when system is
        given). Its key pair is c.public_key / c._secret_key."""
        import zmq
        pub, sec = zmq.curve_keypair()
        if authorize and system is not None:
            self.authorize(pub, system)
        kw.setdefault("server_key", self.server_key)
        kw.setdefault("public_key", pub.decode())
        kw.setdefault("secret_key", sec.decode())
        return self.client(system, endpoint=endpoint, **kw)

    def raw(self, endpoint=None, **sockopts):
        """A raw DEALER socket on this kernel, wrapped in Raw."""
        r = Raw(endpoint or self.endpoint, **sockopts)
        self._closers.append(r.close)
        return r

    def close_clients(self):
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                pass
        self._closers = []


class Raw:
    """A DEALER socket speaking the wire protocol by hand: send() takes the
    frames as given, rpc() packs a body and waits for the reply with its
    req (queueing pushes in self.pushes)."""

    def __init__(self, endpoint, **sockopts):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        for k, v in sockopts.items():
            self.sock.setsockopt(getattr(zmq, k.upper()), v)
        self.sock.connect(endpoint)
        self.pushes = []
        self.req = 1000

    def close(self):
        self.sock.close(0)

    def send(self, frames):
        self.sock.send_multipart(frames)

    def recv(self, timeout=5.0):
        """The next message as (COMMAND, decoded body) -- or (COMMAND, raw
        bytes) if the body is not msgpack --, None on timeout."""
        if not self.sock.poll(int(timeout * 1000)):
            return None
        frames = self.sock.recv_multipart()
        assert len(frames) == 2, "kernel sent %d frames: %r" % (
            len(frames), frames)
        try:
            body = msgpack.unpackb(frames[1], raw=False,
                                   strict_map_key=False)
        except Exception:
            body = frames[1]
        return frames[0].decode(), body

    def reply(self, timeout=5.0, req=None):
        """The next reply (not MSG/DROPPED; those go to self.pushes),
        matching req when given."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            got = self.recv(max(left, 0)) if left > 0 else None
            if got is None:
                raise AssertionError("no reply within %ss" % timeout)
            cmd, body = got
            if cmd in ("MSG", "DROPPED"):
                self.pushes.append(got)
                continue
            if req is not None and isinstance(body, dict) \
                    and body.get("req") not in (req, None):
                continue
            return got

    def rpc(self, cmd, body=None, timeout=5.0, **kw):
        """Sends [cmd, body + req] and returns (COMMAND, body) of its
        reply. body may be a dict (req added unless present) or bytes
        (sent as is; then the first reply is returned)."""
        if body is None:
            body = {}
        body = dict(body, **kw) if isinstance(body, dict) else body
        if isinstance(body, dict):
            if "req" not in body:
                self.req += 1
                body = dict({"req": self.req}, **body)   # req first
            req = body["req"]
            payload = msgpack.packb(body, use_bin_type=True)
        else:
            req, payload = None, body
        if isinstance(cmd, str):
            cmd = cmd.encode()
        self.send([cmd, payload])
        return self.reply(timeout, req)

    def ok(self, cmd, body=None, **kw):
        """rpc() that must succeed; returns the body."""
        c, b = self.rpc(cmd, body, **kw)
        assert c in ("OK", "PONG"), (cmd, c, b)
        return b

    def err(self, cmd, body=None, **kw):
        """rpc() that must fail; returns the error code."""
        c, b = self.rpc(cmd, body, **kw)
        assert c == "ERROR", (cmd, c, b)
        return b["code"]

    def hello(self, system, **kw):
        return self.ok("HELLO", dict({"system": system, "version": 1}, **kw))


def wait_until(pred, timeout=5.0, interval=0.01, what="condition"):
    """Polls pred() until it returns something true; returns that."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("%s not met within %ss" % (what, timeout))
        time.sleep(interval)


@pytest.fixture
def kernel_factory():
    """Makes kernels on demand: kernel_factory(config=None, extra_args=(),
    start=True, subdir=None); config is the text of a Lua config file."""
    made = []
    tmp = tempfile.mkdtemp(prefix="aaax-test-")

    def make(config=None, extra_args=(), start=True, subdir=None):
        d = os.path.join(tmp, subdir or "k%d" % len(made))
        os.makedirs(d, exist_ok=True)
        k = Kernel(d, config=config, extra_args=extra_args)
        made.append(k)
        if start:
            k.start()
        return k

    yield make
    failures = []
    for k in made:
        k.close_clients()
    for k in made:
        if k.proc and k.proc.poll() is None:
            rc = k.stop()
            if rc != 0:
                failures.append("aaaxd exited %s:\n%s" % (rc, k.read_log()))
        log = k.read_log()
        if "ERROR: AddressSanitizer" in log or "runtime error:" in log:
            failures.append("sanitizer report:\n" + log)
    if failures:
        pytest.fail("\n".join(failures))
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def curve_kernel(kernel_factory):
    """Makes kernels whose every tcp endpoint speaks CURVE
    (`aaaxd --curve all`): curve_kernel(config=None, extra_args=(),
    start=True, subdir=None)."""
    def make(config=None, extra_args=(), start=True, subdir=None):
        extra = ("--curve", "all") + tuple(extra_args)
        return kernel_factory(config=config, extra_args=extra, start=start,
                              subdir=subdir)
    return make


@pytest.fixture
def kernel(kernel_factory):
    """One kernel with the embedded defaults (channels jobs, events)."""
    return kernel_factory()


APP_CONFIG = """
return {
  heartbeat_ms = %(heartbeat_ms)d,
  apps = { %(apps)s },
  channels = { %(channels)s },
  policy = { %(policy)s },
%(extra)s
}
"""


@pytest.fixture
def app_kernel(kernel_factory):
    """Makes kernels for the Lua app tests: app_kernel(policy="",
    channels="", apps="", extra="", heartbeat_ms=1000, start=True,
    subdir=None). Unlike the embedded defaults its configuration loads no
    app at boot (`apps = {}`, or the Lua list items given as `apps`) and
    declares only the channels and policy rules given (Lua text spliced into
    those lists); `extra` is more `key = value,` lines. Returns the Kernel
    of kernel_factory."""
    def make(policy="", channels="", apps="", extra="", heartbeat_ms=1000,
             start=True, subdir=None):
        config = APP_CONFIG % {"heartbeat_ms": heartbeat_ms, "apps": apps,
                               "channels": channels, "policy": policy,
                               "extra": extra}
        return kernel_factory(config=config, start=start, subdir=subdir)
    return make
