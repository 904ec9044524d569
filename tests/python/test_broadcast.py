"""Broadcast channels: fan-out, retention and SUB since, the tap, slow
subscribers, the heartbeat (contract sections 1, 6, 7; docs/PROTOCOL.md
sections 4 SUB, 7, 8)."""

import time

import msgpack
import pytest
import zmq

from conftest import wait_until

CONFIG = """
return {
  heartbeat_ms = %d,
  channels = {
    { name = "jobs", kind = "work-queue" },
    { name = "events", kind = "broadcast", visibility = "public", retain = 3 },
    { name = "private", kind = "broadcast", retain = 5 },
    { name = "plain", kind = "broadcast" },
  },
  policy = {
    { subject = "*", action = "chan.*", target = "*", effect = "allow" },
  },
}
"""

SLOW = """
return {
  sndhwm = 100,
  heartbeat_ms = 1000,
  channels = {
    { name = "firehose", kind = "broadcast" },
  },
  policy = {
    { subject = "*", action = "chan.*", target = "*", effect = "allow" },
  },
}
"""


@pytest.fixture
def k(kernel_factory):
    return kernel_factory(config=CONFIG % 1000)


@pytest.fixture
def fast(kernel_factory):
    """heartbeat_ms = 200."""
    return kernel_factory(config=CONFIG % 200)


def tap_socket(k, *topics):
    s = zmq.Context.instance().socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(k.tap)
    for t in topics:
        s.subscribe(t)
    k._closers.append(lambda: s.close(0))
    return s


def tap_recv(s, timeout=2.0):
    if not s.poll(int(timeout * 1000)):
        return None
    return s.recv_multipart()


def recv_data(c, n, timeout=2.0, sub=None):
    out = []
    for _ in range(n):
        m = c.recv(timeout)
        assert m is not None, "got %d of %d" % (len(out), n)
        if sub:
            assert m["sub"] == sub
        out.append(m["msg"])
    return out


def test_fan_out_to_every_subscriber(k):
    subs = [k.client("sub-%d" % i, channels=["plain"]) for i in range(4)]
    for s in subs:
        s.subscribe("plain")
    w = k.client("pub", channels=["plain"])
    ids = [w.write("plain", {"n": i}) for i in range(10)]
    for s in subs:
        got = recv_data(s, 10, sub="plain")
        assert [m["id"] for m in got] == ids
        assert [m["data"] for m in got] == [{"n": i} for i in range(10)]
        assert all(m["from"] == "pub" and m["chan"] == "plain" for m in got)
        assert all("attempt" not in m for m in got)   # broadcast: none
        assert s.recv(0.2) is None          # at most once
    assert w.recv(0.1) is None              # the writer did not subscribe


def test_subscribing_twice_delivers_once(k):
    s = k.client("twice", channels=["plain"])
    s.subscribe("plain")
    s.subscribe("plain")
    w = k.client("pub", channels=["plain"])
    w.write("plain", 1)
    assert len(recv_data(s, 1)) == 1
    assert s.recv(0.2) is None


def test_unsubscribe_stops_delivery(k):
    s = k.client("quitter", channels=["plain"])
    w = k.client("pub", channels=["plain"])
    s.subscribe("plain")
    w.write("plain", 1)
    recv_data(s, 1)
    s.unsubscribe("plain")
    w.write("plain", 2)
    assert s.recv(0.3) is None
    s.unsubscribe("plain")                  # not subscribed: still OK
    s.unsubscribe("events")


def test_only_current_subscribers_get_a_message(k):
    w = k.client("pub", channels=["plain"])
    w.write("plain", "before")
    s = k.client("late", channels=["plain"])
    s.subscribe("plain")
    w.write("plain", "after")
    assert [m["data"] for m in recv_data(s, 1)] == ["after"]
    assert s.recv(0.2) is None


def test_sub_needs_a_read_grant_and_a_broadcast_channel(k):
    r = k.raw()
    r.hello("nogrant", channels=["jobs"])
    assert r.err("SUB", chan="plain") == 403
    assert r.err("SUB", chan="jobs") == 403
    assert r.err("SUB", chan="nothing") == 404


def test_retain_and_sub_since(k):
    w = k.client("pub", channels=["events"])
    ids = [w.write("events", i) for i in range(5)]   # retain = 3
    a = k.client("a", channels=["events"])
    a.subscribe("events", since="")                   # everything retained
    got = recv_data(a, 3, sub="events")
    assert [m["id"] for m in got] == ids[2:]
    assert [m["data"] for m in got] == [2, 3, 4]
    assert a.recv(0.2) is None
    b = k.client("b", channels=["events"])
    b.subscribe("events", since=ids[3])               # only after ids[3]
    assert [m["id"] for m in recv_data(b, 1)] == [ids[4]]
    assert b.recv(0.2) is None
    c = k.client("c", channels=["events"])
    c.subscribe("events", since=ids[4])               # nothing after the last
    assert c.recv(0.2) is None
    d = k.client("d", channels=["events"])
    d.subscribe("events")                             # no since: no replay
    assert d.recv(0.2) is None
    e = k.client("e", channels=["events"])
    e.subscribe("events", since=ids[0])               # older than retained
    assert [m["id"] for m in recv_data(e, 3)] == ids[2:]
    # replay first, then live messages, in order
    nid = w.write("events", 5)
    for s in (a, b, c, d, e):
        assert [m["id"] for m in recv_data(s, 1)] == [nid]


def test_replay_comes_after_the_ok(k):
    w = k.client("pub", channels=["private"])
    ids = [w.write("private", i) for i in range(3)]
    r = k.raw()
    r.hello("rawsub", channels=["private"])
    r.send([b"SUB", msgpack.packb({"req": 5, "chan": "private",
                                   "since": ""})])
    seq = [r.recv() for _ in range(4)]
    assert seq[0][0] == "OK" and seq[0][1]["req"] == 5
    assert [m[0] for m in seq[1:]] == ["MSG"] * 3
    assert [m[1]["msg"]["id"] for m in seq[1:]] == ids
    assert all(m[1]["sub"] == "private" for m in seq[1:])


def test_public_channel_is_on_the_tap(k):
    tap = tap_socket(k, b"events")
    w = k.client("pub", channels=["events"])
    # the tap subscription needs a moment to reach the kernel
    def seen():
        w.write("events", "probe")
        return tap_recv(tap, 0.1)
    wait_until(seen, 5, what="tap subscription")
    wid = w.write("events", {"hello": "tap"}, corr="c-1")
    while True:
        frames = tap_recv(tap)
        assert frames is not None
        assert len(frames) == 2 and frames[0] == b"events"
        env = msgpack.unpackb(frames[1], raw=False)
        if env["data"] != "probe":
            break
    assert env["id"] == wid and env["chan"] == "events"
    assert env["from"] == "pub" and env["corr"] == "c-1"
    assert env["data"] == {"hello": "tap"} and isinstance(env["ts"], float)
    assert "attempt" not in env


def test_private_channel_is_not_on_the_tap(k):
    tap = tap_socket(k, b"")                          # everything
    w = k.client("pub", channels=["events", "private", "plain"])
    def seen():
        w.write("events", "probe")
        return tap_recv(tap, 0.1)
    wait_until(seen, 5, what="tap subscription")
    w.write("private", "hidden")
    w.write("plain", "hidden too")
    w.write("events", "marker")
    topics = []
    while True:
        frames = tap_recv(tap)
        assert frames is not None, topics
        topics.append(frames[0])
        if frames[0] == b"events" and \
                msgpack.unpackb(frames[1], raw=False)["data"] == "marker":
            break
    assert b"private" not in topics and b"plain" not in topics
    assert set(topics) <= {b"events", b"heartbeat"}


def test_tap_is_read_only(k):
    """Whatever a tap peer sends is not a command."""
    s = zmq.Context.instance().socket(zmq.XSUB)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(k.tap)
    k._closers.append(lambda: s.close(0))
    s.send(b"\x01heartbeat")
    s.send_multipart([b"WRITE", msgpack.packb({"req": 1, "chan": "events",
                                               "data": "x"})])
    c = k.client("check", channels=["events"])
    c.subscribe("events", since="")
    assert c.recv(0.3) is None


def test_heartbeat_message(fast):
    k = fast
    c = k.client("hb-reader", channels=["jobs"])
    c.write("jobs", 1)
    c.write("jobs", 2)
    c.subscribe("heartbeat")
    t0 = time.time()

    def beat():
        m = c.recv(1.0)
        return m and m["sub"] == "heartbeat" and \
            m["msg"]["data"]["channels"].get("jobs") == 2 and m
    m = wait_until(beat, 3)
    env, hb = m["msg"], m["msg"]["data"]
    assert env["chan"] == "heartbeat" and env["from"] == "kernel.heartbeat"
    assert set(hb) >= {"kernel_id", "timestamp", "uptime_s", "state",
                       "systems", "capabilities_active", "channels"}
    assert hb["kernel_id"] == c.kernel
    assert abs(hb["timestamp"] - t0) < 5
    assert isinstance(hb["uptime_s"], (int, float)) and hb["uptime_s"] >= 0
    assert hb["state"] == "running"
    assert "hb-reader" in hb["systems"] and "kernel.heartbeat" in hb["systems"]
    assert isinstance(hb["capabilities_active"], int)
    assert hb["capabilities_active"] >= len(c.grants)
    assert hb["channels"]["jobs"] == 2
    assert {"events", "heartbeat", "kernel.gate"} <= set(hb["channels"])
    # every heartbeat_ms (200 here)
    t1 = time.monotonic()
    recv_data(c, 3, sub="heartbeat")
    assert time.monotonic() - t1 < 2.0
    # the uptime grows
    assert recv_data(c, 1)[0]["data"]["uptime_s"] > hb["uptime_s"]


def test_heartbeat_on_the_tap_and_retained(fast):
    k = fast
    tap = tap_socket(k, b"heartbeat")
    frames = tap_recv(tap, 3)
    assert frames and frames[0] == b"heartbeat"
    hb = msgpack.unpackb(frames[1], raw=False)["data"]
    assert hb["state"] == "running"
    c = k.client("late-reader")
    c.subscribe("heartbeat", since="")                # retains 1
    m = c.recv(1.0)
    assert m["sub"] == "heartbeat" and m["msg"]["data"]["state"] == "running"


def test_last_heartbeat_on_sigterm_says_shutdown(fast):
    k = fast
    tap = tap_socket(k, b"heartbeat")
    assert tap_recv(tap, 3)
    c = k.client("witness")
    c.subscribe("heartbeat")
    assert c.recv(2.0)
    k.proc.terminate()
    assert k.proc.wait(10) == 0
    states = []
    while True:
        frames = tap_recv(tap, 0.3)
        if frames is None:
            break
        states.append(msgpack.unpackb(frames[1], raw=False)["data"]["state"])
    assert states and states[-1] == "shutdown", states
    assert set(states[:-1]) <= {"running"}
    pushed = []
    while True:
        m = c.recv(0.3)
        if m is None:
            break
        pushed.append(m["msg"]["data"]["state"])
    assert pushed and pushed[-1] == "shutdown", pushed


def test_slow_subscriber_is_dropped_and_told(kernel_factory):
    k = kernel_factory(config=SLOW)
    slow = k.raw(rcvhwm=10)
    slow.hello("slowpoke", channels=["firehose"])
    slow.ok("SUB", chan="firehose")
    pub = k.client("firehose-writer", channels=["firehose"])
    rss0 = k.rss_kb()
    blob = b"x" * 65536
    sent = 0
    peak = rss0
    while sent < 2000:                      # 128 MiB in all
        reqs = [pub.request("WRITE", chan="firehose", data=blob)
                for _ in range(100)]
        for q in reqs:
            assert pub.reply(q)[0] == "OK"
        sent += 100
        # the slow one stays docked (sends without reading)
        slow.send([b"PING", msgpack.packb({"req": 1})])
        peak = max(peak, k.rss_kb())
    print("rss before %d KiB, peak %d KiB" % (rss0, peak))
    assert peak - rss0 < 64 * 1024, (rss0, peak)   # half of what went by
    assert isinstance(pub.ping(), float)          # healthy
    # now the slow subscriber reads: some messages, then DROPPED
    n_msgs, dropped = 0, None
    while dropped is None:
        got = slow.recv(5.0)
        assert got is not None, "no DROPPED after %d messages" % n_msgs
        cmd, body = got
        if cmd == "MSG":
            n_msgs += 1
        elif cmd == "DROPPED":
            dropped = body
    print("messages before DROPPED:", n_msgs)
    assert dropped["sub"] == "firehose" and dropped["reason"]
    assert n_msgs < sent
    # it may subscribe again and gets new messages
    slow.ok("SUB", chan="firehose")
    wid = pub.write("firehose", "after")
    while True:
        got = slow.recv(3.0)
        assert got is not None
        if got[0] == "MSG" and got[1]["msg"]["id"] == wid:
            break
    assert k.alive()


def test_dropped_is_returned_by_the_client(kernel_factory):
    k = kernel_factory(config=SLOW)
    c = k.client(None, sockopts={zmq.RCVHWM: 10})
    c.dock("slow-client", channels=["firehose"])
    c.subscribe("firehose")
    pub = k.client("writer", channels=["firehose"])
    blob = b"y" * 65536
    for _ in range(10):
        reqs = [pub.request("WRITE", chan="firehose", data=blob)
                for _ in range(100)]
        for q in reqs:
            pub.reply(q)
        c.socket.send_multipart([b"PING", msgpack.packb({"req": 1})])
    while True:
        m = c.recv(5.0)
        assert m is not None
        if "dropped" in m:
            break
        assert m["sub"] == "firehose"
    assert m["dropped"] == "firehose" and m["reason"]
