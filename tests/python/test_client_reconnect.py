"""The Python client's reconnect (clients/python/aaax.py, issue 5): a
client with reconnect=True survives a kernel restart (a new session:
subscriptions made again, unacknowledged mailbox messages delivered
again), a CTL kill (the 401 path), a lost connection whose session the
kernel still holds (resume: subscription and leases carried over), and a
request lost in flight (sent again when it is idempotent, AaaxDisconnected
otherwise). Every test runs on plain loopback tcp and on CURVE
(`aaaxd --curve all`, keys bound with `aaax authorize`).

A lost connection is made on demand with Proxy, a TCP forwarder between
the client and the kernel's tcp endpoint: freeze() turns the connections
open now into black holes (the client hears nothing, the kernel keeps its
side), cut() closes them."""

import os
import select
import signal
import socket
import threading
import time

import pytest
import zmq

import aaax
from conftest import wait_until

HB500 = "return { heartbeat_ms = 500 }"


class Proxy:
    """Forwards tcp connections from `endpoint` to 127.0.0.1:port.

    freeze(down=True, up=False): from now on the connections open at this
    moment forward nothing from the kernel to the client (down) and, with
    up, nothing from the client to the kernel either; data is read and
    thrown away, and the kernel's side stays open even when the client
    closes its side (so the kernel does not see the connection go).
    Connections made later are forwarded normally. cut(): closes both
    sides of every connection open now."""

    def __init__(self, port):
        self.target = port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.endpoint = "tcp://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.conns = []       # [client_sock, kernel_sock, drop_down, drop_up]
        self.accepted = 0
        self.wake_r, self.wake_w = socket.socketpair()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _close(self, c, which):
        for i in which:
            if c[i] is not None:
                try:
                    c[i].close()
                except OSError:
                    pass
                c[i] = None

    def _run(self):
        while self.running:
            with self.lock:
                socks = [self.lsock, self.wake_r]
                for c in self.conns:
                    socks += [s for s in c[:2] if s is not None]
            try:
                ready, _, _ = select.select(socks, [], [], 0.2)
            except (OSError, ValueError):
                continue
            for s in ready:
                if s is self.wake_r:
                    s.recv(100)
                    continue
                if s is self.lsock:
                    cl, _ = self.lsock.accept()
                    k = socket.socket()
                    try:
                        k.connect(("127.0.0.1", self.target))
                    except OSError:
                        cl.close()
                        k.close()
                        continue
                    with self.lock:
                        self.conns.append([cl, k, False, False])
                        self.accepted += 1
                    continue
                with self.lock:
                    pair = next((c for c in self.conns if s in c[:2]), None)
                if pair is None:
                    continue
                from_client = s is pair[0]
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                with self.lock:
                    dropping = pair[3] if from_client else pair[2]
                    if not data:
                        if from_client and (pair[2] or pair[3]):
                            self._close(pair, (0,))    # keep the kernel side
                        else:
                            self._close(pair, (0, 1))
                        if pair[0] is None and pair[1] is None:
                            self.conns.remove(pair)
                        continue
                    if dropping:
                        continue
                    other = pair[1] if from_client else pair[0]
                if other is not None:
                    try:
                        other.sendall(data)
                    except OSError:
                        with self.lock:
                            self._close(pair, (0, 1))

    def freeze(self, down=True, up=False):
        with self.lock:
            for c in self.conns:
                c[2] = c[2] or down
                c[3] = c[3] or up
            return len(self.conns)

    def cut(self):
        with self.lock:
            for c in self.conns:
                for s in c[:2]:
                    if s is not None:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self._close(c, (0, 1))
            self.conns = []
        self.wake_w.send(b"x")

    def close(self):
        self.running = False
        self.wake_w.send(b"x")
        self.thread.join(5)
        with self.lock:
            for c in self.conns:
                self._close(c, (0, 1))
            self.conns = []
        self.lsock.close()
        self.wake_r.close()
        self.wake_w.close()


class Setup:
    """A kernel in one mode (plain loopback tcp, or CURVE on every tcp
    endpoint) and reconnecting clients on it."""

    def __init__(self, mode, kernel_factory, request):
        self.mode = mode
        self.kernel_factory = kernel_factory
        self.request = request
        self.keys = {}
        self.k = None

    def start(self, config=None):
        extra = ("--curve", "all") if self.mode == "curve" else ()
        self.k = self.kernel_factory(config=config, extra_args=extra)
        return self.k

    def agent(self, system, endpoint=None, **kw):
        """A docked aaax.Client with reconnect on (closed at the end)."""
        kw.setdefault("reconnect", True)
        if self.mode == "curve":
            if system not in self.keys:
                pub, sec = zmq.curve_keypair()
                self.keys[system] = (pub.decode(), sec.decode())
                self.k.authorize(pub, system)
            pub, sec = self.keys[system]
            kw.setdefault("server_key", self.k.server_key)
            kw.setdefault("public_key", pub)
            kw.setdefault("secret_key", sec)
        return self.k.client(system, endpoint=endpoint, **kw)

    def admin(self):
        """A privileged session over ipc; it re-docks by itself when it
        was undocked for staying silent while the test did something
        else."""
        return self.k.client("admin-%d" % time.monotonic_ns(),
                             endpoint=self.k.ipc, privileged=True,
                             token=self.k.token, reconnect=True)

    def proxy(self):
        p = Proxy(self.k.port)
        self.request.addfinalizer(p.close)
        return p


@pytest.fixture(params=["plain", "curve"])
def rk(request, kernel_factory):
    return Setup(request.param, kernel_factory, request)


def depth(admin, chan="jobs"):
    return admin.stat()["channels"][chan]["depth"]


def recv_until(c, pred, timeout=15.0):
    """recv() until pred(push); returns that push (others are skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = c.recv(max(0.05, deadline - time.monotonic()))
        if p is not None and pred(p):
            return p
    raise AssertionError("no matching push within %ss" % timeout)


# ---- (a) the kernel restarts: a new session --------------------------------

@pytest.mark.parametrize("how", ["term", "kill9"])
def test_kernel_restart_redocks_resubscribes_and_redelivers(rk, how):
    k = rk.start()
    calls = []
    c = rk.agent("survivor", channels=["events", "jobs"],
                 on_reconnect=calls.append)
    old_session = c.session
    c.subscribe("events")
    w = rk.agent("writer", channels=["events", "jobs"], reconnect=False)
    before = w.write("events", "before")
    got = recv_until(c, lambda p: p.get("sub") == "events")
    assert got["msg"]["id"] == before
    mail = w.send("survivor", "mail-1")
    got = recv_until(c, lambda p: p.get("sub") == "@survivor")
    assert got["msg"]["id"] == mail and got["msg"]["attempt"] == 1
    w.write("jobs", "job-1")
    leased = c.claim("jobs", lease_ms=600000)
    assert [m["data"] for m in leased] == ["job-1"]
    w.close()

    rc = k.restart(kill=(how == "kill9"))
    assert rc == (-9 if how == "kill9" else 0)

    # The client, idle in recv(), finds the connection closed, docks again
    # (a new session: the kernel never knew the old one) and gets its
    # unacknowledged mailbox message again (a crash may lose the count of
    # the first delivery: PROTOCOL.md, durability).
    counted = 2 if how == "term" else 1
    again = recv_until(c, lambda p: p.get("sub") == "@survivor")
    assert again["msg"]["id"] == mail and again["msg"]["attempt"] >= counted
    assert c.docked and c.reconnects == 1 and calls == [False]
    assert c.session != old_session and not c.resumed
    # the subscription came back
    w2 = rk.agent("writer", channels=["events"], reconnect=False)
    after = w2.write("events", "after")
    got = recv_until(c, lambda p: p.get("sub") == "events")
    assert got["msg"]["id"] == after
    # the lease went with the old kernel: the job is claimable again
    msgs = c.claim("jobs", wait_ms=5000)
    assert [m["data"] for m in msgs] == ["job-1"]
    assert msgs[0]["attempt"] >= counted
    assert c.ack("jobs", msgs) == 1
    assert c.ack("@survivor", [mail]) == 1
    assert c.reconnects == 1


def test_kernel_down_for_a_while_write_with_key_lands_once(rk):
    k = rk.start(HB500)
    c = rk.agent("patient", channels=["jobs"], max_backoff=0.5)
    k.stop()
    started = []

    def bring_back():
        # once the client has noticed and is trying to dock again
        wait_until(lambda: not c.docked, timeout=30, what="client noticed")
        time.sleep(1.0)
        k.start()
        started.append(True)
    t = threading.Thread(target=bring_back)
    t.start()
    try:
        mid = c.write("jobs", "while-down", key="wd-1")
    finally:
        t.join(60)
    assert started and c.docked and c.reconnects == 1
    admin = rk.admin()
    assert depth(admin) == 1
    msgs = c.claim("jobs", max=10)
    assert [(m["id"], m["data"]) for m in msgs] == [(mid, "while-down")]


def test_reconnect_timeout_gives_up(rk):
    k = rk.start(HB500)
    c = rk.agent("quitter", channels=["jobs"], reconnect_timeout=1.5,
                 max_backoff=0.2)
    k.stop()
    t0 = time.monotonic()
    with pytest.raises(aaax.AaaxTimeout) as e:
        c.write("jobs", "x", key="q-1")
    assert "docking again failed" in e.value.reason
    assert time.monotonic() - t0 < 15
    assert not c.docked and c.reconnects == 0
    k.start()
    c.dock()
    assert c.write("jobs", "y")


def test_privileged_client_with_token_callable_survives_restart(kernel):
    c = aaax.Client(kernel.ipc, system="root", privileged=True,
                    token=lambda: aaax.read_token(kernel.data))
    kernel._closers.append(c.close)
    c.dock()
    old_token, old_session = kernel.token, c.session
    assert c.stat()["heartbeat"]["state"] == "running"
    kernel.restart()
    assert kernel.token != old_token
    s = c.stat()          # the closed connection is noticed: re-dock
    assert c.reconnects == 1 and c.docked and c.session != old_session
    assert s["heartbeat"]["state"] == "running"
    assert "write:kernel.lifecycle" in c.grants


# ---- (b) the session is killed: the 401 path -------------------------------

def test_ctl_kill_redocks_on_the_401(rk):
    rk.start()
    admin = rk.admin()
    calls = []
    c = rk.agent("victim", channels=["events", "jobs"],
                 on_reconnect=calls.append)
    c.subscribe("events")
    w = rk.agent("talker", channels=["events"], reconnect=False)
    ids = [w.write("events", i) for i in range(3)]
    c.ping()                     # reads the pushes into the pending queue
    wait_until(lambda: (c.keepalive(), c.pending())[1] >= 3, timeout=10)
    assert admin.ctl("kill", "victim")["state"] == "undocked"
    # the WRITE is refused (401 not docked), so it is sent again after
    # the re-dock: it happens once
    mid = c.write("jobs", "after-kill")
    assert c.reconnects == 1 and calls == [False] and c.docked
    # what was read before the kill is still there, in order
    got = [c.recv(1.0) for _ in range(3)]
    assert [g["msg"]["id"] for g in got] == ids
    # the subscription was made again (since the last id seen: no replay)
    later = w.write("events", "later")
    got = recv_until(c, lambda p: p.get("sub") == "events")
    assert got["msg"]["id"] == later
    msgs = c.claim("jobs", max=10)
    assert [(m["id"], m["data"]) for m in msgs] == [(mid, "after-kill")]


def test_killed_receiver_notices_from_its_pongs(rk):
    # A client that only receives sends nothing the kernel could refuse:
    # its PINGs' PONGs say the connection is no longer docked.
    rk.start(HB500)
    admin = rk.admin()
    calls = []
    c = rk.agent("listener", channels=["events"], on_reconnect=calls.append)
    c.subscribe("events")
    assert admin.ctl("kill", "listener")["state"] == "undocked"
    wait_until(lambda: (c.recv(0.2), c.reconnects)[1] == 1, timeout=10,
               interval=0, what="re-docked from recv()")
    assert calls == [False] and c.docked
    w = rk.agent("speaker", channels=["events"])
    eid = w.write("events", "heard")
    assert recv_until(c, lambda p: p.get("sub") == "events")["msg"]["id"] \
        == eid


def test_resubscribe_fills_the_gap_from_the_retain_ring(rk):
    rk.start()
    admin = rk.admin()
    c = rk.agent("gappy", channels=["events", "jobs"])
    c.subscribe("events")
    w = rk.agent("filler", channels=["events"], reconnect=False)
    first = w.write("events", "seen")
    assert recv_until(c, lambda p: p.get("sub") == "events")["msg"]["id"] \
        == first
    admin.ctl("kill", "gappy")
    missed = [w.write("events", "missed-%d" % i) for i in range(3)]
    c.write("jobs", "x")          # 401, re-dock, SUB since=first
    got = [recv_until(c, lambda p: p.get("sub") == "events")["msg"]["id"]
           for _ in missed]
    assert got == missed
    assert c.recv(0.3) is None    # nothing twice


def test_without_reconnect_the_401_is_raised(rk):
    rk.start()
    admin = rk.admin()
    c = rk.agent("plainold", channels=["jobs"], reconnect=False)
    admin.ctl("kill", "plainold")
    with pytest.raises(aaax.AaaxError) as e:
        c.write("jobs", 1)
    assert e.value.code == 401 and not c.docked and c.reconnects == 0


# ---- (c) resume: the kernel still holds the session ------------------------

def test_lost_connection_resumes_the_session(rk):
    k = rk.start(HB500)
    admin = rk.admin()
    p = rk.proxy()
    calls = []
    c = rk.agent("resumer", endpoint=p.endpoint,
                 channels=["events", "jobs"], on_reconnect=calls.append)
    session = c.session
    c.subscribe("events")         # no message seen on it before the loss
    w = rk.agent("feeder", channels=["events", "jobs"])
    w.write("jobs", "leased")
    leased = c.claim("jobs", lease_ms=600000)
    assert len(leased) == 1
    mail = w.send("resumer", "unacked")
    got = recv_until(c, lambda p: p.get("sub") == "@resumer")
    assert got["msg"]["attempt"] == 1

    assert p.freeze(down=True) == 1   # replies stop coming; PINGs go on
    t0 = time.monotonic()
    assert isinstance(c.ping(), float)   # silence, re-dock, PING again
    assert time.monotonic() - t0 >= 1.5 * 0.9   # 3 heartbeats of silence
    assert c.reconnects == 1 and calls == [True] and c.resumed
    assert c.session == session
    # the mailbox message delivered but not acknowledged comes again
    again = recv_until(c, lambda p: p.get("sub") == "@resumer")
    assert again["msg"]["id"] == mail and again["msg"]["attempt"] == 2
    # the lease carried over: this session can still ACK it
    assert c.ack("jobs", leased) == 1
    # the subscription carried over (nothing was seen on it, so the client
    # did not subscribe again)
    eid = w.write("events", "still-subscribed")
    got = recv_until(c, lambda p: p.get("sub") == "events")
    assert got["msg"]["id"] == eid
    systems = [s for s in admin.ctl("list")["systems"]
               if s["id"] == "resumer"]
    assert len(systems) == 1 and systems[0]["session"] == session
    assert k.alive()


def test_second_connection_takes_the_session_over(rk):
    k = rk.start()
    c = rk.agent("twin", channels=["events", "jobs"])
    c.subscribe("events")
    w = rk.agent("source", channels=["events", "jobs"], reconnect=False)
    w.write("jobs", "held")
    leased = c.claim("jobs", lease_ms=600000)
    assert len(leased) == 1
    opts = {}
    if rk.mode == "curve":
        pub, sec = rk.keys["twin"]
        opts = {"curve_serverkey": k.server_key.encode(),
                "curve_publickey": pub.encode(),
                "curve_secretkey": sec.encode()}
    raw = k.raw(**opts)
    r = raw.hello("twin", channels=["events", "jobs"], resume=c.session)
    assert r["resumed"] is True and r["session"] == c.session
    # the lease and the subscription are the new connection's now
    assert raw.ok("ACK", chan="jobs", ids=[leased[0]["id"]])["acked"] == 1
    eid = w.write("events", "to-the-twin")
    got = raw.recv(5.0)
    assert got[0] == "MSG" and got[1]["msg"]["id"] == eid
    # the old connection is no longer docked: its next request gets 401,
    # and the client docks again, taking the session back
    assert c.write("jobs", "back", key="back-1")
    assert c.reconnects == 1 and c.resumed and c.docked
    assert raw.rpc("WRITE", chan="jobs", data=1)[1]["code"] == 401


def test_keepalive_loop_notices_silence(rk):
    rk.start(HB500)
    p = rk.proxy()
    c = rk.agent("looper", endpoint=p.endpoint, channels=["jobs"])
    p.freeze(down=True)
    # keepalive() called often: the silence adds up across the calls
    wait_until(lambda: (c.keepalive(), c.reconnects)[1] == 1, timeout=20,
               interval=0.05, what="re-docked from keepalive()")
    assert c.docked and c.resumed


def test_connection_closed_is_noticed_at_once(rk):
    # heartbeat 5 s: the silence alone would take 15 s to notice
    rk.start("return { heartbeat_ms = 5000 }")
    p = rk.proxy()
    c = rk.agent("quick", endpoint=p.endpoint, channels=["jobs"])
    assert p.accepted == 1
    p.cut()
    wait_until(lambda: (c.keepalive(), c.reconnects)[1] == 1, timeout=10,
               interval=0.05, what="re-docked after the cut")
    assert c.docked
    assert c.write("jobs", "after-cut")


# ---- (d) a request in flight when the connection is lost -------------------

def test_write_with_key_lost_in_flight_lands_once(rk):
    rk.start(HB500)
    admin = rk.admin()
    p = rk.proxy()
    c = rk.agent("keyed", endpoint=p.endpoint, channels=["jobs"])
    p.freeze(down=True)      # the WRITE reaches the kernel, its OK is lost
    mid = c.write("jobs", "exactly-once", key="eo-1")
    assert c.reconnects == 1
    assert depth(admin) == 1
    msgs = c.claim("jobs", max=10)
    assert [(m["id"], m["data"]) for m in msgs] == [(mid, "exactly-once")]


def test_write_without_key_lost_in_flight_raises(rk):
    rk.start(HB500)
    admin = rk.admin()
    p = rk.proxy()
    c = rk.agent("unkeyed", endpoint=p.endpoint, channels=["jobs"])
    p.freeze(down=True)
    with pytest.raises(aaax.AaaxDisconnected) as e:
        c.write("jobs", "maybe")
    assert e.value.code == 0 and isinstance(e.value, aaax.AaaxError)
    assert "WRITE" in e.value.reason
    # already docked again: the caller may go on
    assert c.docked and c.reconnects == 1
    assert depth(admin) == 1          # it did land, once (not re-sent)
    c.write("jobs", "next")
    assert [m["data"] for m in c.claim("jobs", max=10)] == ["maybe", "next"]


def test_pipelined_requests_after_a_loss(rk):
    rk.start(HB500)
    p = rk.proxy()
    c = rk.agent("piper", endpoint=p.endpoint, channels=["jobs"])
    p.freeze(down=True)
    safe = [c.request("WRITE", chan="jobs", data=i, key="pk-%d" % i)
            for i in range(5)]
    unsafe = c.request("WRITE", chan="jobs", data="nokey")
    ping = c.request("PING")
    ids = [c.reply(r)[1]["id"] for r in safe]
    with pytest.raises(aaax.AaaxDisconnected):
        c.reply(unsafe)
    assert c.reply(ping)[0] == "PONG"
    assert c.reconnects == 1
    msgs = c.claim("jobs", max=100)
    assert sorted(m["id"] for m in msgs if m["data"] != "nokey") \
        == sorted(ids)
    assert [m["data"] for m in msgs].count("nokey") == 1


def test_sigstop_mid_request(rk):
    """The kernel stops answering (SIGSTOP) with a WRITE in flight and
    comes back (SIGCONT) while the client re-docks: with a key the write
    lands once, without one the client raises AaaxDisconnected."""
    k = rk.start(HB500)
    c = rk.agent("stopped", channels=["jobs"], max_backoff=0.5)

    def cont_when_noticed():
        try:
            wait_until(lambda: not c.docked, timeout=30,
                       what="client noticed")
            time.sleep(0.5)
        finally:
            os.kill(k.pid, signal.SIGCONT)

    for key in ("stop-1", None):
        os.kill(k.pid, signal.SIGSTOP)
        t = threading.Thread(target=cont_when_noticed)
        t.start()
        try:
            if key:
                mid = c.write("jobs", key, key=key)
            else:
                with pytest.raises(aaax.AaaxDisconnected):
                    c.write("jobs", "no-key")
        finally:
            t.join(60)
        assert c.docked
    assert c.reconnects == 2
    msgs = c.claim("jobs", max=10, wait_ms=2000)
    data = [m["data"] for m in msgs]
    assert data.count("stop-1") == 1 and data.count("no-key") <= 1
    assert [m["id"] for m in msgs if m["data"] == "stop-1"] == [mid]


# ---- CURVE specifics -------------------------------------------------------

def test_revoked_key_cannot_dock_again(curve_kernel):
    k = curve_kernel()
    c = k.curve_client("revokee", channels=["jobs"], reconnect=True)
    k.authorize(c.public_key, revoke=True)
    with pytest.raises(aaax.AaaxError) as e:
        c.write("jobs", "x")
    assert e.value.code == 401 and not c.docked
    assert c.reconnects == 0


def test_enrolled_client_redocks_with_its_key_alone(curve_kernel):
    k = curve_kernel()
    admin = k.client("admin", endpoint=k.ipc, privileged=True,
                     token=k.token)
    tok = admin.ctl("enroll", "newbie", ttl_ms=60000)["token"]
    pub, sec = zmq.curve_keypair()
    c = aaax.Client(k.endpoint, system="newbie", channels=["jobs"],
                    token=tok, server_key=k.server_key,
                    public_key=pub.decode(), secret_key=sec.decode())
    k._closers.append(c.close)
    r = c.dock()
    assert r.get("enrolled") is True and c.enrolled
    assert c.token is None              # spent, not sent again
    admin.ctl("kill", "newbie")
    assert c.write("jobs", "enrolled-write")
    assert c.reconnects == 1 and c.docked


def test_client_key_from_keygen_files(curve_kernel, tmp_path):
    k = curve_kernel()
    import zmq.auth
    pub_path, sec_path = zmq.auth.create_certificates(str(tmp_path), "agent")
    pub, _ = zmq.auth.load_certificate(pub_path)
    k.authorize(pub, "filed")
    server_cert = os.path.join(k.data, "curve", "server.cert")
    for path in (pub_path, sec_path):
        # the kernel's certificate path works as server_key too
        c = k.client("filed", server_key=server_cert, key=path)
        assert c.docked and c.public_key == pub.decode()
        c.bye()
        c.close()
    with pytest.raises(ValueError):
        aaax.Client(k.endpoint, key=pub_path)          # no server_key
    with pytest.raises(ValueError):
        aaax.Client(k.endpoint, server_key="too-short")
