"""The kernel's CURVE and resume behaviour seen from outside, with raw
pyzmq DEALERs (issue 5; PROTOCOL.md "CURVE identities", "Resuming a
session"): the kernel's certificate, who may dock as what over CURVE,
plaintext clients, bindings changed on a running kernel, enrollment
tokens, the audit records of refusals, HELLO {resume}, and what STAT, the
heartbeat and CTL list report.

Covered elsewhere and not repeated here: a non-loopback bind serving CURVE
without a flag and the tap's key check (test_config), the CLI's keygen /
authorize / enroll / ps (test_cli_remote), a silent plain session undocked
with its leases released (test_sessions), the Python client's reconnect
(test_client_reconnect)."""

import json
import os
import stat
import subprocess
import time

import msgpack
import pytest
import zmq
import zmq.auth

from conftest import AAAX_CLI, free_port, wait_until

TOKEN_PREFIX = "aaax-enroll-"


def curve_raw(k, pub=None, sec=None, endpoint=None):
    """A Raw DEALER over CURVE on k (a fresh key pair unless given); its
    public key is r.key."""
    if pub is None:
        pub, sec = zmq.curve_keypair()
    pub = pub.encode() if isinstance(pub, str) else pub
    sec = sec.encode() if isinstance(sec, str) else sec
    r = k.raw(endpoint, curve_serverkey=k.server_key.encode(),
              curve_publickey=pub, curve_secretkey=sec)
    r.key = pub.decode()
    r.secret = sec.decode()
    return r


def bound_raw(k, system):
    """A CURVE Raw whose fresh key is bound to system."""
    pub, sec = zmq.curve_keypair()
    k.authorize(pub, system)
    return curve_raw(k, pub, sec)


def admin_raw(k):
    """A privileged session over ipc."""
    r = k.raw(k.ipc)
    r.hello("admin", privileged=True, token=k.token)
    return r


def hello_err(r, system, **kw):
    """HELLO that must fail: (code, reason)."""
    c, b = r.rpc("HELLO", dict({"system": system, "version": 1}, **kw))
    assert c == "ERROR", (c, b)
    return b["code"], b["reason"]


def audit(k, n=200):
    p = subprocess.run([AAAX_CLI, "audit", "tail", "--data", k.data,
                        "-n", str(n)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line]


def wait_audit(k, pred, what):
    return wait_until(lambda: [r for r in audit(k) if pred(r)], timeout=10,
                      interval=0.1, what=what)


def authorized(k):
    path = os.path.join(k.data, "curve", "authorized")
    if not os.path.exists(path):
        return {}
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts and not line.startswith("#"):
                out[parts[0]] = parts[1:]
    return out


def listed(admin, system):
    for s in admin.ok("CTL", op="list")["systems"]:
        if s["id"] == system:
            return s
    return None


# ---- the kernel's certificate ----------------------------------------------

def test_kernel_cert_made_at_first_boot_and_kept(kernel):
    d = os.path.join(kernel.data, "curve")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    cert = os.path.join(d, "server.cert")
    secret = os.path.join(d, "server.cert_secret")
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert not stat.S_IMODE(os.stat(cert).st_mode) & 0o022
    pub, none = zmq.auth.load_certificate(cert)
    pub2, sec = zmq.auth.load_certificate(secret)
    assert none is None and pub == pub2 and len(pub) == 40 and len(sec) == 40
    assert zmq.curve_public(sec) == pub
    kernel.restart()
    assert zmq.auth.load_certificate(cert)[0] == pub
    assert kernel.server_key == pub.decode()


# ---- who may dock as what --------------------------------------------------

def test_authorized_key_docks_and_is_listed(curve_kernel):
    k = curve_kernel()
    r = bound_raw(k, "agent-1")
    hello = r.hello("agent-1", channels=["jobs"])
    assert hello["system"] == "agent-1" and len(hello["session"]) == 32
    assert "enrolled" not in hello and "resumed" not in hello
    wid = r.ok("WRITE", chan="jobs", data="over curve")["id"]
    assert r.ok("CLAIM", chan="jobs")["msgs"][0]["id"] == wid
    admin = admin_raw(k)
    entry = listed(admin, "agent-1")
    assert entry["auth"] == "curve" and entry["key"] == r.key
    assert entry["kind"] == "remote"
    me = listed(admin, "admin")
    assert me["auth"] == "ipc" and "key" not in me
    assert listed(admin, "kernel.heartbeat")["auth"] == "inproc"


def test_unknown_key_gets_401_and_an_audit_record(curve_kernel):
    k = curve_kernel()
    r = curve_raw(k)
    assert r.rpc("PING")[0] == "PONG"     # the handshake worked
    code, reason = hello_err(r, "agent-x")
    assert code == 401 and "aaax authorize" in reason
    # nothing else works on that connection
    assert r.err("WRITE", chan="jobs", data=1) == 401
    # a privileged HELLO needs the binding too over CURVE
    code, _ = hello_err(r, "agent-x", privileged=True, token=k.token)
    assert code == 401
    wait_audit(k, lambda a: a.get("kind") == "dock"
               and a.get("verdict") == "deny"
               and a.get("subject") == "agent-x", "a dock deny record")


def test_key_bound_to_another_id_gets_401(curve_kernel):
    k = curve_kernel()
    r = bound_raw(k, "agent-a")
    code, reason = hello_err(r, "agent-b")
    assert code == 401 and "agent-b" in reason
    # the key still works for its own id on the same connection
    assert r.hello("agent-a")["system"] == "agent-a"
    wait_audit(k, lambda a: a.get("kind") == "dock"
               and a.get("verdict") == "deny"
               and a.get("subject") == "agent-b", "a dock deny record")


def test_bound_system_cannot_dock_without_its_key(kernel):
    # a default kernel: loopback tcp and ipc are plain
    pub, _ = zmq.curve_keypair()
    kernel.authorize(pub, "bound-1")
    for ep in (kernel.endpoint, kernel.ipc):
        r = kernel.raw(ep)
        code, reason = hello_err(r, "bound-1")
        assert code == 401, ep
    # privileged, with the session token, it may (the token proves
    # access to the data directory)
    r = kernel.raw(kernel.ipc)
    assert r.hello("bound-1", privileged=True,
                   token=kernel.token)["system"] == "bound-1"
    # an id bound to nothing docks over plain as before
    assert kernel.raw().hello("free-1")["system"] == "free-1"
    wait_audit(kernel, lambda a: a.get("kind") == "dock"
               and a.get("verdict") == "deny"
               and a.get("subject") == "bound-1", "a dock deny record")


def test_plaintext_client_gets_no_answer(curve_kernel):
    k = curve_kernel()
    plain = k.raw()
    plain.send([b"PING", b"\x81\xa3req\x01"])
    assert plain.recv(timeout=1.5) is None
    # while the kernel answers a CURVE client on the same endpoint
    assert curve_raw(k).rpc("PING")[0] == "PONG"
    assert plain.recv(timeout=0.2) is None


def test_authorize_on_a_running_kernel_takes_effect_at_once(curve_kernel):
    k = curve_kernel()
    r = curve_raw(k)
    assert hello_err(r, "late-1")[0] == 401
    k.authorize(r.key, "late-1")
    # the same connection, no restart
    assert r.hello("late-1")["system"] == "late-1"


def test_revoke_undocks_the_live_session_at_once(curve_kernel):
    k = curve_kernel()
    admin = admin_raw(k)
    r = bound_raw(k, "doomed")
    r.hello("doomed", channels=["jobs"])
    r.ok("WRITE", chan="jobs", data="held")
    held = r.ok("CLAIM", chan="jobs", lease_ms=600000)["msgs"]
    assert len(held) == 1
    other = bound_raw(k, "bystander")
    other.hello("bystander", channels=["jobs"])
    k.authorize(r.key, revoke=True)
    # no command from the session needed: the kernel undocks it
    wait_until(lambda: listed(admin, "doomed") is None, timeout=5,
               what="the revoked key's session undocked")
    assert r.err("WRITE", chan="jobs", data=1) == 401
    assert hello_err(r, "doomed")[0] == 401
    # its lease was released
    got = other.ok("CLAIM", chan="jobs", wait_ms=5000)["msgs"]
    assert [m["id"] for m in got] == [held[0]["id"]]
    assert listed(admin, "bystander") is not None
    wait_audit(k, lambda a: "revoked" in json.dumps(a)
               and a.get("subject") == "doomed", "a revocation record")


# ---- enrollment ------------------------------------------------------------

def enroll(admin, system, ttl_ms=None):
    body = {"op": "enroll", "system": system}
    if ttl_ms is not None:
        body["ttl_ms"] = ttl_ms
    return admin.ok("CTL", body)


def test_enrollment_binds_a_fresh_key_once(curve_kernel):
    k = curve_kernel()
    admin = admin_raw(k)
    t0 = time.time()
    e = enroll(admin, "newbie", ttl_ms=60000)
    tok = e["token"]
    assert e["system"] == "newbie"
    assert tok.startswith(TOKEN_PREFIX) and len(tok) == 52
    int(tok[len(TOKEN_PREFIX):], 16)
    assert abs(e["expires"] / 1000.0 - (t0 + 60)) < 30
    r = curve_raw(k)
    c, hello = r.rpc("HELLO", {"version": 1, "token": tok,
                               "channels": ["jobs"]})
    assert c == "OK", hello
    assert hello["enrolled"] is True and hello["system"] == "newbie"
    assert "write:jobs" in hello["grants"]
    assert authorized(k).get(r.key) == ["newbie"]
    r.ok("WRITE", chan="jobs", data="enrolled")
    # the key docks by itself from now on (a new connection)
    again = curve_raw(k, r.key, r.secret)
    r.ok("BYE")
    assert again.hello("newbie")["system"] == "newbie"
    # the token is spent
    r2 = curve_raw(k)
    code, reason = hello_err(r2, "newbie", token=tok)
    assert code == 401 and "already used" in reason
    assert r2.key not in authorized(k)
    wait_audit(k, lambda a: a.get("kind") == "enroll"
               and "newbie" in json.dumps(a), "enroll records")


def test_enrollment_refusals(curve_kernel):
    k = curve_kernel()
    admin = admin_raw(k)
    # unknown token
    code, reason = hello_err(curve_raw(k), "nobody",
                             token=TOKEN_PREFIX + "0" * 40)
    assert code == 401 and "unknown" in reason
    # expired
    tok = enroll(admin, "slow", ttl_ms=1000)["token"]
    time.sleep(1.3)
    code, reason = hello_err(curve_raw(k), "slow", token=tok)
    assert code == 401 and "expired" in reason
    # on a connection without CURVE: ipc, and plain tcp of another kernel
    tok = enroll(admin, "plainer", ttl_ms=60000)["token"]
    code, _ = hello_err(k.raw(k.ipc), "plainer", token=tok)
    assert code == 401
    # a system other than the token's: 401, and the token is kept
    r = curve_raw(k)
    code, _ = hello_err(r, "someone-else", token=tok)
    assert code == 401
    assert r.hello("plainer", token=tok)["enrolled"] is True
    # only privileged sessions make tokens
    plain = bound_raw(k, "agent-p")
    plain.hello("agent-p")
    c, b = plain.rpc("CTL", op="enroll", system="x")
    assert c == "ERROR" and b["code"] == 403
    # a bad system id
    c, b = admin.rpc("CTL", op="enroll", system=".bad")
    assert c == "ERROR" and b["code"] == 400


def test_enrollment_on_plain_tcp_is_refused(kernel):
    admin = admin_raw(kernel)
    tok = enroll(admin, "plain-e", ttl_ms=60000)["token"]
    code, _ = hello_err(kernel.raw(), "plain-e", token=tok)
    assert code == 401
    c, b = kernel.raw().rpc("HELLO", {"version": 1, "token": tok})
    assert c == "ERROR" and b["code"] == 401


# ---- resume ----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "curve"])
def test_resume_takes_the_live_session_over(kernel_factory, mode):
    k = kernel_factory(extra_args=("--curve", "all") if mode == "curve"
                       else ())
    if mode == "curve":
        pub, sec = zmq.curve_keypair()
        k.authorize(pub, "mover")

        def conn():
            return curve_raw(k, pub, sec)
    else:
        def conn():
            return k.raw()
    writer = conn() if mode == "plain" else bound_raw(k, "writer")
    writer.hello("writer", channels=["jobs", "events"])
    old = conn()
    h = old.hello("mover", channels=["jobs", "events"])
    session = h["session"]
    old.ok("SUB", chan="events")
    writer.ok("WRITE", chan="jobs", data="leased")
    lease = old.ok("CLAIM", chan="jobs", lease_ms=600000)["msgs"]
    mail = writer.ok("SEND", to="mover", data="unacked")["id"]
    got = old.recv(5.0)
    assert got[0] == "MSG" and got[1]["msg"]["id"] == mail
    # a long-poll of the old connection
    old.send([b"CLAIM", msgpack.packb({"req": 2000, "chan": "jobs",
                                       "max": 1, "wait_ms": 30000})])
    time.sleep(0.2)

    new = conn()
    h2 = new.hello("mover", channels=["jobs", "events"], resume=session)
    assert h2["resumed"] is True and h2["session"] == session
    # the unacknowledged mailbox message comes again
    got = new.recv(5.0)
    assert got[0] == "MSG" and got[1]["msg"]["id"] == mail
    assert got[1]["msg"]["attempt"] == 2
    # the lease carried over
    assert new.ok("ACK", chan="jobs", ids=[lease[0]["id"]])["acked"] == 1
    # the subscription carried over
    eid = writer.ok("WRITE", chan="events", data="after")["id"]
    got = new.recv(5.0)
    assert got[0] == "MSG" and got[1]["msg"]["id"] == eid
    # the old long-poll is gone: a new job goes to a new claim
    jid = writer.ok("WRITE", chan="jobs", data="fresh")["id"]
    got = new.ok("CLAIM", chan="jobs", wait_ms=3000)["msgs"]
    assert [m["id"] for m in got] == [jid]
    # the old connection is no longer docked
    assert old.err("WRITE", chan="jobs", data=1) == 401
    admin = admin_raw(k)
    assert listed(admin, "mover")["session"] == session


def test_a_resumed_session_counts_as_live_from_the_resume(kernel_factory):
    # The old connection was silent for most of 3 heartbeat periods when
    # the new one took the session over; the session's silence is counted
    # from the takeover, not from the old connection's last word.
    k = kernel_factory(config="return { heartbeat_ms = 1500 }")
    old = k.raw()
    session = old.hello("late-mover", channels=["jobs"])["session"]
    time.sleep(3.0)                   # 2 heartbeat periods
    new = k.raw()
    assert new.hello("late-mover", channels=["jobs"],
                     resume=session)["resumed"] is True
    time.sleep(2.0)                   # 3.3 after the old's last word
    assert new.ok("WRITE", chan="jobs", data="still docked")


def test_resume_with_a_wrong_session_is_409(kernel):
    a = kernel.raw()
    session = a.hello("held", channels=["events"])["session"]
    b = kernel.raw()
    wrong = "0" * 32 if session != "0" * 32 else "1" * 32
    assert hello_err(b, "held", resume=wrong)[0] == 409
    assert hello_err(b, "held", resume="not-a-session")[0] in (400, 409)
    # the holder is undisturbed
    assert a.ok("PING")
    assert a.ok("SUB", chan="events") == {"req": a.req}


def test_resume_when_not_docked_docks_afresh(kernel):
    a = kernel.raw()
    session = a.hello("gone", channels=["jobs", "events"])["session"]
    a.ok("SUB", chan="events")
    a.ok("BYE")
    b = kernel.raw()
    h = b.hello("gone", channels=["jobs", "events"], resume=session)
    assert h["resumed"] is False and h["session"] != session
    # the subscription went with the old session
    w = kernel.raw()
    w.hello("w", channels=["events"])
    w.ok("WRITE", chan="events", data=1)
    assert b.recv(0.5) is None


# ---- what the kernel reports -----------------------------------------------

def test_stat_and_heartbeat_report_endpoints(curve_kernel):
    k = curve_kernel()
    admin = admin_raw(k)
    hb = admin.ok("STAT")["heartbeat"]
    assert hb["insecure"] is False
    eps = {(e["endpoint"], e.get("role")): e["curve"] for e in hb["endpoints"]}
    assert eps[(k.endpoint, "command")] is True
    assert eps[(k.tap, "tap")] is True
    # ipc (when listed) is never CURVE
    assert not any(v for (ep, _), v in eps.items() if ep.startswith("ipc"))
    assert admin.ok("CTL", op="list")["insecure"] is False
    # the heartbeat channel says the same
    admin.ok("SUB", chan="heartbeat")
    deadline = time.time() + 5
    while time.time() < deadline:
        got = admin.recv(5.0)
        if got and got[0] == "MSG" and got[1]["sub"] == "heartbeat":
            data = got[1]["msg"]["data"]
            assert data["insecure"] is False
            assert any(e["curve"] for e in data["endpoints"])
            break
    else:
        raise AssertionError("no heartbeat")


def test_default_loopback_is_plain_and_not_insecure(kernel):
    admin = admin_raw(kernel)
    hb = admin.ok("STAT")["heartbeat"]
    assert hb["insecure"] is False
    eps = {e["endpoint"]: e["curve"] for e in hb["endpoints"]}
    assert eps[kernel.endpoint] is False
    r = kernel.raw()
    r.hello("looper")
    assert listed(admin, "looper")["auth"] == "plain"


def test_insecure_heartbeat_says_so(kernel_factory):
    port = free_port()
    k = kernel_factory(extra_args=("--insecure", "--bind",
                                   "tcp://0.0.0.0:%d" % port))
    r = k.raw("tcp://127.0.0.1:%d" % port)
    r.hello("outside")
    admin = admin_raw(k)
    assert listed(admin, "outside")["auth"] == "plain"
    admin.ok("SUB", chan="heartbeat")
    got = admin.recv(5.0)
    while got and not (got[0] == "MSG" and got[1]["sub"] == "heartbeat"):
        got = admin.recv(5.0)
    assert got, "no heartbeat"
    data = got[1]["msg"]["data"]
    assert data["insecure"] is True
    eps = {e["endpoint"]: e["curve"] for e in data["endpoints"]}
    assert eps["tcp://0.0.0.0:%d" % port] is False


def test_curve_session_silent_is_undocked_and_its_lease_released(
        curve_kernel):
    k = curve_kernel(config="return { heartbeat_ms = 200 }")
    a = bound_raw(k, "sleeper")
    a.hello("sleeper", channels=["jobs"])
    a.ok("WRITE", chan="jobs", data="task")
    held = a.ok("CLAIM", chan="jobs", lease_ms=600000)["msgs"]
    b = bound_raw(k, "waker")
    b.hello("waker", channels=["jobs"])
    got = b.ok("CLAIM", chan="jobs", wait_ms=5000)["msgs"]
    assert [m["id"] for m in got] == [held[0]["id"]]
    assert got[0]["attempt"] == 2
    assert a.err("WRITE", chan="jobs", data=1) == 401
