"""The aaax CLI for remote kernels (docs/CLI.md, "Remote kernels"): keygen,
kernel-key, authorize (offline, on the data directory's files), enroll, the
connection options --server-key / --cert (--key) against a kernel whose tcp
endpoint speaks CURVE (`aaaxd --curve all`), reconnecting long-running
commands (tail, claim --wait, gate --wait-approval) across a kernel restart
and a killed session, and what `aaax ps` says about auth and --insecure."""

import json
import os
import re
import signal
import stat
import subprocess
import time

import msgpack
import pytest
import zmq
import zmq.auth

from conftest import AAAX_CLI, free_port, wait_until

pytestmark = pytest.mark.skipif(
    not os.path.exists(AAAX_CLI),
    reason="the aaax CLI binary %s does not exist (build it, or set "
           "AAAX_CLI)" % AAAX_CLI)

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
Z85 = re.compile(r"^[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
TOKEN = re.compile(r"^aaax-enroll-[0-9a-f]{40}$")
CURVE = ("--curve", "all")


def check_clean(stderr):
    for mark in SANITIZER_MARKS:
        assert mark not in stderr, "sanitizer report from aaax:\n" + stderr


def clean_env(extra=None):
    e = dict(os.environ)
    for v in ("AAAX_CONNECT", "AAAX_SYSTEM", "AAAX_SERVER_KEY", "AAAX_CERT"):
        e.pop(v, None)
    if extra:
        e.update(extra)
    return e


def aaax(*args, input=None, timeout=60, env=None, cwd=None):
    p = subprocess.run([AAAX_CLI] + [str(a) for a in args],
                       capture_output=True, text=True, input=input,
                       timeout=timeout, env=clean_env(env), cwd=cwd)
    check_clean(p.stderr)
    return p


def popen(*args, env=None):
    return subprocess.Popen([AAAX_CLI] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env(env))


def lines(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def last_word(text):
    return text.split()[-1]


def server_key(k):
    pub, _ = zmq.auth.load_certificate(
        os.path.join(k.data, "curve", "server.cert"))
    return pub.decode()


def keygen(path):
    p = aaax("keygen", path)
    assert p.returncode == 0, p.stderr
    return last_word(p.stdout)


def authorize(k, key, *systems):
    args = ["authorize", key]
    for s in systems:
        args += ["--system", s]
    p = aaax(*args, "--data", k.data)
    assert p.returncode == 0, p.stderr
    return p


def curve_opts(k, cert, key_opt="--cert"):
    return ["--connect", k.endpoint, "--server-key", server_key(k), key_opt,
            cert]


def ps(k):
    """`aaax ps --json` over the ipc endpoint (privileged): {id: entry}."""
    p = aaax("ps", "--json", "--data", k.data)
    assert p.returncode == 0, p.stderr
    return {s["id"]: s for s in lines(p.stdout)}


def session_of(k, system):
    """The session id of system while it is docked, else None."""
    s = ps(k).get(system)
    return s and s.get("session")


def wait_session(k, system, other_than=None, timeout=40):
    """Waits until system is docked with a session id other than
    other_than; returns that id."""
    def docked():
        sess = session_of(k, system)
        return sess if sess and sess != other_than else None
    return wait_until(docked, timeout=timeout, interval=0.2,
                      what="%s docked%s" % (system,
                                            " again" if other_than else ""))


class Proc:
    """A running aaax whose stdout (lines) and stderr are read on threads,
    so that neither pipe can fill up."""

    def __init__(self, *args, env=None):
        import queue
        import threading
        self.proc = popen(*args, env=env)
        self.q = queue.Queue()
        self.err = []
        self.t_out = threading.Thread(target=self._out, daemon=True)
        self.t_err = threading.Thread(target=self._err, daemon=True)
        self.t_out.start()
        self.t_err.start()

    def _out(self):
        for line in self.proc.stdout:
            self.q.put(line)
        self.q.put(None)

    def _err(self):
        for line in self.proc.stderr:
            self.err.append(line)

    def stderr(self):
        return "".join(self.err)

    def next_text(self, timeout=30):
        """The next line, without its newline."""
        import queue
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line within %ss; stderr:\n%s" %
                                 (timeout, self.stderr()))
        assert line is not None, "the process ended: %s" % self.stderr()
        return line.rstrip("\n")

    def next(self, timeout=30):
        """The next line, as JSON."""
        return json.loads(self.next_text(timeout))

    def interrupt(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout=30):
        """Waits for the end: (returncode, lines not read yet, stderr)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("aaax did not end within %ss:\n%s" %
                                 (timeout, self.stderr()))
        self.t_out.join(10)
        self.t_err.join(10)
        rest = []
        while not self.q.empty():
            line = self.q.get()
            if line is not None:
                rest.append(json.loads(line))
        err = self.stderr()
        check_clean(err)
        return self.proc.returncode, rest, err


def kill_session(k, system):
    """CTL kill over the ipc endpoint, privileged (no signal, no rate
    limit)."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(k.ipc)
    try:
        def call(cmd, body):
            s.send_multipart([cmd, msgpack.packb(body)])
            assert s.poll(10000), "no answer to %s" % cmd
            return s.recv_multipart()
        cmd, _ = call(b"HELLO", {"req": 1, "system": "py-killer",
                                 "version": 1, "privileged": True,
                                 "token": k.token})
        assert cmd == b"OK"
        cmd, body = call(b"CTL", {"req": 2, "op": "kill", "system": system})
        assert cmd == b"OK", msgpack.unpackb(body)
        call(b"BYE", {"req": 3})
    finally:
        s.close()


# ---- keygen ----------------------------------------------------------------

def test_keygen_writes_the_pair_and_refuses_to_overwrite(tmp_path):
    path = str(tmp_path / "agent-1")
    p = aaax("keygen", path)
    assert p.returncode == 0, p.stderr
    key = last_word(p.stdout)
    assert Z85.match(key), p.stdout
    pub, sec = zmq.auth.load_certificate(path)
    assert pub.decode() == key and sec is None
    pub2, sec2 = zmq.auth.load_certificate(path + "_secret")
    assert pub2.decode() == key and sec2 and len(sec2) == 40
    # the secret matches the public key
    assert zmq.curve_public(sec2) == pub2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(path + "_secret").st_mode) == 0o600
    before = (open(path).read(), open(path + "_secret").read())
    # never overwrites, not even half a pair
    p = aaax("keygen", path)
    assert p.returncode == 1
    assert "overwrite" in p.stderr and p.stdout == ""
    os.unlink(path)
    p = aaax("keygen", path)
    assert p.returncode == 1
    assert not os.path.exists(path)
    assert open(path + "_secret").read() == before[1]
    # two pairs differ
    other = keygen(str(tmp_path / "agent-2"))
    assert other != key


def test_keygen_usage(tmp_path):
    for args in (["keygen"], ["keygen", "a", "b"],
                 ["keygen", str(tmp_path / "x"), "--data", str(tmp_path)]):
        p = aaax(*args)
        assert p.returncode == 2, (args, p.stderr)
        assert "usage" in p.stderr


# ---- kernel-key ------------------------------------------------------------

def test_kernel_key_prints_the_key_in_the_data_dir(kernel, tmp_path):
    want = server_key(kernel)
    p = aaax("kernel-key", "--data", kernel.data)
    assert p.returncode == 0, p.stderr
    assert last_word(p.stdout) == want
    # the default data directory is aaaxd's: ./aaax-data
    os.symlink(kernel.data, str(tmp_path / "aaax-data"))
    p = aaax("kernel-key", cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert last_word(p.stdout) == want


def test_kernel_key_of_a_kernel_that_never_booted(tmp_path):
    p = aaax("kernel-key", "--data", str(tmp_path))
    assert p.returncode == 1
    assert "server.cert" in p.stderr and "aaaxd" in p.stderr
    assert p.stdout == ""


# ---- authorize -------------------------------------------------------------

def test_authorize_list_revoke(tmp_path):
    data = str(tmp_path / "data")
    os.mkdir(data)
    k1 = keygen(str(tmp_path / "c1"))
    k2 = keygen(str(tmp_path / "c2"))
    p = aaax("authorize", k1, "--system", "agent-1", "--system", "agent-1b",
             "--data", data)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["authorized", k1, "agent-1", "agent-1b"]
    # adds to what the key has
    p = aaax("authorize", k1, "--system", "agent-1c", "--data", data)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[-3:] == ["agent-1", "agent-1b", "agent-1c"]
    assert aaax("authorize", k2, "--system", "agent-2",
                "--data", data).returncode == 0
    p = aaax("authorize", "--list", "--data", data)
    assert p.returncode == 0, p.stderr
    assert [l.split() for l in p.stdout.splitlines()] == [
        [k1, "agent-1", "agent-1b", "agent-1c"], [k2, "agent-2"]]
    p = aaax("authorize", "--list", "--json", "--data", data)
    assert lines(p.stdout) == [
        {"key": k1, "systems": ["agent-1", "agent-1b", "agent-1c"]},
        {"key": k2, "systems": ["agent-2"]}]
    # rotation: an id may be bound to a second key, then the first revoked
    p = aaax("authorize", k2, "--system", "agent-1", "--data", data)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["authorized", k2, "agent-2", "agent-1"]
    p = aaax("authorize", "--revoke", k1, "--data", data)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["revoked", k1]
    p = aaax("authorize", "--list", "--data", data)
    assert [l.split() for l in p.stdout.splitlines()] == [
        [k2, "agent-2", "agent-1"]]
    p = aaax("authorize", "--revoke", k1, "--data", data)
    assert p.returncode == 1 and "not authorized" in p.stderr
    # the file the kernel reads
    with open(os.path.join(data, "curve", "authorized")) as f:
        assert k2 + " agent-2 agent-1" in f.read()


def test_authorize_a_key_that_starts_with_a_dash(tmp_path):
    # 1 key in 85 starts with '-': still the KEY, wherever it stands
    while True:
        pub, _ = zmq.curve_keypair()
        if pub.startswith(b"-"):
            key = pub.decode()
            break
    data = str(tmp_path)
    p = aaax("authorize", key, "--system", "a", "--data", data)
    assert p.returncode == 0, p.stderr
    p = aaax("authorize", "--system", "b", key, "--data", data)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["authorized", key, "a", "b"]
    p = aaax("authorize", "--revoke", key, "--data", data)
    assert p.returncode == 0, p.stderr
    p = aaax("authorize", key, "extra", "--system", "a", "--data", data)
    assert p.returncode == 2 and "extra" in p.stderr


@pytest.mark.parametrize("args,why", [
    (["not-a-key", "--system", "a"], "not a public key"),
    (["KEY", "--system", ".dot"], "not a system id"),
    (["KEY", "--system", "a b"], "not a system id"),
    (["KEY", "--system", "x" * 129], "not a system id"),
    (["KEY"], "--system"),
    ([], "--list"),
    (["KEY", "--system", "a", "--list"], "one of"),
    (["--list", "--revoke", "KEY"], "one of"),
    (["--revoke", "short"], "not a public key"),
    (["--revoke", "KEY", "--json"], "--json"),
    (["--list", "--system", "a"], "--system"),
])
def test_authorize_usage_errors(tmp_path, args, why):
    key = keygen(str(tmp_path / "c"))
    args = [key if a == "KEY" else a for a in args]
    p = aaax("authorize", *args, "--data", str(tmp_path))
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert why in p.stderr, p.stderr
    assert "usage" in p.stderr
    assert not os.path.exists(tmp_path / "curve" / "authorized")


def test_authorize_needs_an_existing_data_dir(tmp_path):
    key = keygen(str(tmp_path / "c"))
    missing = str(tmp_path / "no-such-dir")
    p = aaax("authorize", key, "--system", "a", "--data", missing)
    assert p.returncode == 1
    assert "not a directory" in p.stderr
    assert not os.path.exists(missing)


# ---- connection options ----------------------------------------------------

def test_server_key_and_cert_go_together(kernel, tmp_path):
    cert = str(tmp_path / "c")
    keygen(cert)
    sk = server_key(kernel)
    for args in (["--server-key", sk], ["--cert", cert], ["--key", cert]):
        p = aaax("ping", "--connect", kernel.endpoint, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert "--server-key" in p.stderr and "--cert" in p.stderr
    p = aaax("ping", "--connect", kernel.endpoint, "--server-key", "nope",
             "--cert", cert)
    assert p.returncode == 2 and "Z85" in p.stderr
    # from the environment, on tcp:// only
    p = aaax("ping", "--connect", kernel.endpoint,
             env={"AAAX_SERVER_KEY": sk})
    assert p.returncode == 2 and "--cert" in p.stderr
    p = aaax("stat", "--data", kernel.data, env={"AAAX_SERVER_KEY": sk})
    assert p.returncode == 0, p.stderr
    # a certificate that cannot be read
    p = aaax("ping", "--connect", kernel.endpoint, "--server-key", sk,
             "--cert", str(tmp_path / "missing"))
    assert p.returncode == 1 and "missing" in p.stderr


def test_curve_ping_write_tail(kernel_factory, tmp_path):
    k = kernel_factory(extra_args=CURVE)
    cert = str(tmp_path / "agent")
    key = keygen(cert)
    authorize(k, key, "agent-1", "agent-1w")
    opts = curve_opts(k, cert)
    p = aaax("ping", *opts)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("PONG from " + k.endpoint)
    # --key is --cert on tail
    tail = Proc("tail", "events", "--count", "2", "--system", "agent-1",
                *curve_opts(k, cert, "--key"))
    wait_session(k, "agent-1")
    entry = ps(k)["agent-1"]
    assert entry["auth"] == "curve" and entry["key"] == key
    # on write --key stays the idempotency key: --cert it is
    for _ in range(2):
        p = aaax("write", "events", '{"n": 1}', "--key", "same", "--system",
                 "agent-1w", *opts)
        assert p.returncode == 0, p.stderr
    p = aaax("write", "events", '"two"', "--system", "agent-1w", *opts)
    assert p.returncode == 0, p.stderr
    rc, got, err = tail.finish()
    assert rc == 0, err
    assert [e["data"] for e in got] == [{"n": 1}, "two"]
    assert all(e["from"] == "agent-1w" for e in got)
    # the same from the environment
    env = {"AAAX_SERVER_KEY": server_key(k), "AAAX_CERT": cert,
           "AAAX_CONNECT": k.endpoint}
    p = aaax("write", "events", '"env"', "--system", "agent-1w", env=env)
    assert p.returncode == 0, p.stderr


def test_curve_refuses_plain_and_unbound_keys(kernel_factory, tmp_path):
    k = kernel_factory(extra_args=CURVE)
    cert = str(tmp_path / "stranger")
    key = keygen(cert)
    # a plaintext client gets no answer at all
    p = aaax("ping", "--connect", k.endpoint, "--timeout", "1000")
    assert p.returncode == 1 and "no answer" in p.stderr
    # a CURVE key that is not authorized: the handshake works, HELLO 401
    p = aaax("write", "events", "1", "--system", "agent-9",
             *curve_opts(k, cert))
    assert p.returncode == 1
    assert "ERROR 401" in p.stderr and "aaax authorize" in p.stderr
    # bound to another id: still 401 for this one
    authorize(k, key, "agent-other")
    p = aaax("write", "events", "1", "--system", "agent-9",
             *curve_opts(k, cert))
    assert p.returncode == 1 and "ERROR 401" in p.stderr
    p = aaax("write", "events", "1", "--system", "agent-other",
             *curve_opts(k, cert))
    assert p.returncode == 0, p.stderr
    # a wrong server key: no handshake, no answer
    wrong, _ = zmq.curve_keypair()
    p = aaax("ping", "--connect", k.endpoint, "--server-key", wrong.decode(),
             "--cert", cert, "--timeout", "1000")
    assert p.returncode == 1
    assert "no answer" in p.stderr and "--server-key" in p.stderr


# ---- enroll ----------------------------------------------------------------

def hello_with_token(k, token, system=None):
    """HELLO {token} over CURVE with a fresh key pair: (cmd, body, key)."""
    pub, sec = zmq.curve_keypair()
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.curve_serverkey = server_key(k).encode()
    s.curve_publickey = pub
    s.curve_secretkey = sec
    s.connect(k.endpoint)
    try:
        body = {"req": 1, "version": 1, "token": token}
        if system:
            body["system"] = system
        s.send_multipart([b"HELLO", msgpack.packb(body)])
        assert s.poll(10000), "no answer to HELLO"
        cmd, raw = s.recv_multipart()
        reply = msgpack.unpackb(raw, raw=False)
        if cmd == b"OK":
            s.send_multipart([b"BYE", msgpack.packb({"req": 2})])
            s.poll(5000)
        return cmd.decode(), reply, pub.decode()
    finally:
        s.close()


def test_enroll_token_binds_a_fresh_key_once(kernel_factory):
    k = kernel_factory(extra_args=CURVE)
    p = aaax("enroll", "--system", "agent-e", "--ttl", "10m",
             "--data", k.data)
    assert p.returncode == 0, p.stderr
    token = last_word(p.stdout)
    assert TOKEN.match(token), p.stdout
    assert "agent-e" in p.stdout
    cmd, reply, key = hello_with_token(k, token)
    assert cmd == "OK", reply
    assert reply.get("enrolled") is True and reply["system"] == "agent-e"
    listed = lines(aaax("authorize", "--list", "--json", "--data",
                        k.data).stdout)
    assert {"key": key, "systems": ["agent-e"]} in listed
    # used: refused for the next key
    cmd, reply, _ = hello_with_token(k, token)
    assert cmd == "ERROR" and reply["code"] == 401, reply
    # --json: the kernel's answer
    p = aaax("enroll", "--system", "agent-j", "--ttl", "90s", "--json",
             "--data", k.data)
    assert p.returncode == 0, p.stderr
    ans = json.loads(p.stdout)
    assert ans["system"] == "agent-j" and TOKEN.match(ans["token"])
    assert abs(ans["expires"] / 1000 - (time.time() + 90)) < 30


def test_enroll_redeemed_by_the_cli(kernel_factory, tmp_path):
    k = kernel_factory(extra_args=CURVE)
    token = last_word(aaax("enroll", "--system", "agent-f",
                           "--data", k.data).stdout)
    cert = str(tmp_path / "agent-f")
    key = keygen(cert)
    # not yet bound
    p = aaax("write", "events", "1", "--system", "agent-f",
             *curve_opts(k, cert))
    assert p.returncode == 1 and "ERROR 401" in p.stderr
    p = aaax("enroll", "--token", token, *curve_opts(k, cert))
    assert p.returncode == 0, p.stderr
    assert last_word(p.stdout) == "agent-f" and key in p.stdout
    p = aaax("write", "events", "1", "--system", "agent-f",
             *curve_opts(k, cert))
    assert p.returncode == 0, p.stderr
    # the token is spent
    cert2 = str(tmp_path / "other")
    keygen(cert2)
    p = aaax("enroll", "--token", token, *curve_opts(k, cert2))
    assert p.returncode == 1
    assert "ERROR 401" in p.stderr and "already used" in p.stderr
    # a token for another id than --system
    token = last_word(aaax("enroll", "--system", "agent-g",
                           "--data", k.data).stdout)
    p = aaax("enroll", "--token", token, "--system", "agent-h",
             *curve_opts(k, cert2))
    assert p.returncode == 1 and "ERROR 401" in p.stderr


@pytest.mark.parametrize("args,why", [
    ([], "--system"),
    (["--system", "a", "--ttl", "0s"], "--ttl"),
    (["--system", "a", "--ttl", "10x"], "--ttl"),
    (["--system", "a", "--ttl", "31d"], "--ttl"),
    (["--system", ".a"], "not a system id"),
    (["--token", "aaax-enroll-00"], "CURVE"),
])
def test_enroll_usage_errors(args, why):
    p = aaax("enroll", *args, "--connect", "tcp://127.0.0.1:%d" % free_port())
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert why in p.stderr


def test_enroll_is_privileged(kernel):
    p = aaax("enroll", "--system", "agent-x", "--connect", kernel.endpoint)
    assert p.returncode == 1
    assert "ERROR 403" in p.stderr and "--data" in p.stderr


# ---- reconnecting ----------------------------------------------------------

def test_tail_survives_a_kernel_restart(kernel_factory, tmp_path):
    k = kernel_factory(config="return { heartbeat_ms = 300 }",
                       extra_args=CURVE)
    cert = str(tmp_path / "agent")
    key = keygen(cert)
    authorize(k, key, "tailer", "writer")
    opts = curve_opts(k, cert)
    tail = Proc("tail", "events", "--system", "tailer", *opts)
    try:
        first = wait_session(k, "tailer")
        assert aaax("write", "events", '"one"', "--system", "writer",
                    *opts).returncode == 0
        assert tail.next()["data"] == "one"
        assert k.stop() == 0
        k.start()
        wait_session(k, "tailer", other_than=first)
        p = aaax("write", "events", '"two"', "--system", "writer", *opts)
        assert p.returncode == 0, p.stderr
        assert tail.next()["data"] == "two"
    finally:
        tail.interrupt()
    rc, rest, err = tail.finish()
    assert rc == 0, err
    assert rest == []  # nothing printed twice
    assert "reconnecting" in err and "reconnected" in err


def test_tail_survives_its_session_being_killed(kernel_factory, tmp_path):
    k = kernel_factory(config="return { heartbeat_ms = 300 }",
                       extra_args=CURVE)
    cert = str(tmp_path / "agent")
    key = keygen(cert)
    authorize(k, key, "tailer-k", "writer-k")
    opts = curve_opts(k, cert)
    tail = Proc("tail", "events", "--system", "tailer-k", *opts)
    try:
        first = wait_session(k, "tailer-k")
        assert aaax("write", "events", '"before"', "--system", "writer-k",
                    *opts).returncode == 0
        assert tail.next()["data"] == "before"
        kill_session(k, "tailer-k")
        wait_session(k, "tailer-k", other_than=first)
        p = aaax("write", "events", '"after"', "--system", "writer-k", *opts)
        assert p.returncode == 0, p.stderr
        assert tail.next()["data"] == "after"
    finally:
        tail.interrupt()
    rc, rest, err = tail.finish()
    assert rc == 0, err
    assert rest == []
    assert "401" in err and "reconnected" in err


def test_tail_of_a_mailbox_prints_each_message_once_across_a_kill(
        kernel_factory):
    k = kernel_factory(config="return { heartbeat_ms = 300 }")
    tail = Proc("tail", "@mb-r", "--system", "mb-r", "--connect", k.endpoint)
    try:
        first = wait_session(k, "mb-r")
        ids = []
        for i in range(3):
            p = aaax("send", "mb-r", str(i), "--connect", k.endpoint)
            assert p.returncode == 0, p.stderr
            ids.append(p.stdout.strip())
        assert [tail.next()["id"] for _ in range(3)] == ids
        kill_session(k, "mb-r")
        wait_session(k, "mb-r", other_than=first)
        p = aaax("send", "mb-r", '"later"', "--connect", k.endpoint)
        assert p.returncode == 0, p.stderr
        assert tail.next()["data"] == "later"
    finally:
        tail.interrupt()
    rc, rest, err = tail.finish()
    assert rc == 0, err
    assert rest == []


def test_claim_wait_survives_a_kernel_restart(kernel_factory):
    k = kernel_factory(config="return { heartbeat_ms = 300 }")
    claim = Proc("claim", "jobs", "--wait", "120000", "--ack", "--system",
                 "w-restart", "--connect", k.endpoint)
    try:
        first = wait_session(k, "w-restart")
        assert k.stop() == 0
        k.start()
        wait_session(k, "w-restart", other_than=first)
        p = aaax("write", "jobs", '{"job": 1}', "--connect", k.endpoint)
        assert p.returncode == 0, p.stderr
        rc, got, err = claim.finish(timeout=60)
    finally:
        claim.interrupt()
    assert rc == 0, err
    assert [e["data"] for e in got] == [{"job": 1}]
    assert "reconnected" in err
    # acknowledged: nothing left
    p = aaax("claim", "jobs", "--connect", k.endpoint)
    assert p.returncode == 0 and p.stdout == ""


def test_send_wait_survives_a_kernel_restart(kernel_factory):
    k = kernel_factory(config="return { heartbeat_ms = 300 }")
    # svc must have docked once for its mailbox to exist
    assert aaax("ping", "--connect", k.endpoint).returncode == 0
    p = aaax("write", "events", "1", "--system", "svc", "--connect",
             k.endpoint)
    assert p.returncode == 0, p.stderr
    send = Proc("send", "svc", '{"q": 1}', "--wait", "120000", "--system",
                "asker", "--connect", k.endpoint)
    try:
        mid = send.next_text()
        assert len(mid) == 26, mid
        first = wait_session(k, "asker")
        assert k.stop() == 0
        k.start()
        wait_session(k, "asker", other_than=first)
        p = aaax("send", "asker", '"the answer"', "--corr", mid, "--system",
                 "svc", "--connect", k.endpoint)
        assert p.returncode == 0, p.stderr
        rc, got, err = send.finish(timeout=60)
    finally:
        send.interrupt()
    assert rc == 0, err
    assert [(e["data"], e["corr"]) for e in got] == [("the answer", mid)]
    assert "reconnected" in err


GATE_CONFIG = """
return {
  heartbeat_ms = 300,
  policy = {
    { subject = "agent-*", action = "net.fetch", target = "https://*",
      effect = "ask", name = "agents-fetch" },
  },
  ask_timeout_s = 120,
}
"""


def test_gate_wait_approval_survives_its_session_being_killed(
        kernel_factory):
    k = kernel_factory(config=GATE_CONFIG)
    gate = Proc("gate", "net.fetch", "https://example.com/x",
                "--wait-approval", "--system", "agent-g", "--connect",
                k.endpoint)
    try:
        first = gate.next()
        assert first["decision"] == "ask"
        sess = wait_session(k, "agent-g")
        kill_session(k, "agent-g")
        wait_session(k, "agent-g", other_than=sess)
        p = aaax("approve", first["audit_id"], "--data", k.data)
        assert p.returncode == 0, p.stderr
        rc, got, err = gate.finish(timeout=60)
    finally:
        gate.interrupt()
    assert rc == 0, err
    (follow,) = got
    assert follow["decision"] == "allow"
    assert follow["audit_id"] == first["audit_id"]
    assert "reconnected" in err


# ---- ps --------------------------------------------------------------------

def test_ps_shows_auth(kernel_factory, tmp_path):
    k = kernel_factory(extra_args=CURVE)
    cert = str(tmp_path / "agent")
    key = keygen(cert)
    authorize(k, key, "agent-ps")
    tail = Proc("tail", "events", "--system", "agent-ps",
                *curve_opts(k, cert))
    try:
        wait_session(k, "agent-ps")
        p = aaax("ps", "--data", k.data)
        assert p.returncode == 0, p.stderr
        assert "WARNING" not in p.stderr
        rows = {r.split()[0]: r.split() for r in p.stdout.splitlines()[1:]}
        assert rows["agent-ps"][1] == "remote/curve:" + key[:8]
        me = [r for r in rows.values() if r[0].startswith("cli-")]
        assert me and me[0][1] == "local"
        got = ps(k)
        assert got["agent-ps"]["auth"] == "curve"
        assert got["agent-ps"]["key"] == key
        assert got["kernel.gate"]["kind"] == "kernel"
    finally:
        tail.interrupt()
    rc, _, err = tail.finish()
    assert rc == 0, err


def test_ps_warns_when_insecure(kernel_factory):
    port = free_port()
    k = kernel_factory(extra_args=("--bind", "tcp://0.0.0.0:%d" % port,
                                   "--insecure"))
    tail = Proc("tail", "events", "--system", "plain-1", "--connect",
                k.endpoint)
    try:
        wait_session(k, "plain-1")
        p = aaax("ps", "--data", k.data)
        assert p.returncode == 0, p.stderr
        assert p.stderr.startswith("WARNING: ")
        assert "--insecure" in p.stderr
        rows = {r.split()[0]: r.split() for r in p.stdout.splitlines()[1:]}
        assert rows["plain-1"][1] == "remote/plain"
        p = aaax("ps", "--json", "--data", k.data)
        assert p.returncode == 0 and "WARNING" in p.stderr
        got = {s["id"]: s for s in lines(p.stdout)}
        assert got["plain-1"]["auth"] == "plain"
    finally:
        tail.interrupt()
    rc, _, err = tail.finish()
    assert rc == 0, err


def test_ps_no_warning_on_loopback(kernel):
    p = aaax("ps", "--data", kernel.data)
    assert p.returncode == 0, p.stderr
    assert "WARNING" not in p.stderr


# ---- help ------------------------------------------------------------------

@pytest.mark.parametrize("sub,opts", [
    ("kernel-key", ["--data"]),
    ("keygen", []),
    ("authorize", ["--system", "--list", "--json", "--revoke", "--data"]),
    ("enroll", ["--system", "--ttl", "--token", "--server-key", "--cert",
                "--data", "--connect"]),
    ("tail", ["--server-key", "--cert"]),
    ("ping", ["--server-key", "--cert"]),
])
def test_help(sub, opts):
    p = aaax(sub, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: aaax " + sub)
    for o in opts:
        assert o in p.stdout, (sub, o)
    assert "Exit codes" in p.stdout and "xample" in p.stdout
    assert aaax("--help").stdout.count("  " + sub + " ") >= 1
