"""WRITE / SEND batches, SUB batch (MSGS pushes) and transient mailbox
messages (docs/PROTOCOL.md, "Batches" and "Transient messages")."""

import time

import msgpack
import pytest

import aaax
from conftest import wait_until

CONFIG = """
return {
  heartbeat_ms = 1000,
  mailbox_max_len = 5,
  channels = {
    { name = "b", kind = "broadcast", visibility = "public", retain = 4 },
    { name = "plain", kind = "broadcast" },
    { name = "q", kind = "work-queue" },
    { name = "small", kind = "work-queue", max_len = 3 },
    { name = "limited", kind = "broadcast" },
    { name = "roomy", kind = "broadcast" },
  },
  policy = {
    { subject = "*", action = "chan.write", target = "limited",
      effect = "allow", rate = "5/s" },
    { subject = "*", action = "chan.write", target = "roomy",
      effect = "allow", rate = "1000/s" },
    { subject = "*", action = "chan.*", target = "*", effect = "allow" },
  },
}
"""


@pytest.fixture
def k(kernel_factory):
    return kernel_factory(config=CONFIG)


def raw_docked(k, system, channels=()):
    r = k.raw()
    cmd, body = r.rpc("HELLO", {"system": system, "version": 1,
                                "channels": list(channels)})
    assert cmd == "OK", body
    return r


def next_push(r, timeout=2.0):
    if r.pushes:
        return r.pushes.pop(0)
    got = r.recv(timeout)
    assert got is not None, "no push came"
    return got


def error(callable_, *a, **kw):
    with pytest.raises(aaax.AaaxError) as e:
        callable_(*a, **kw)
    return e.value


# ---- WRITE batch on a broadcast channel -----------------------------------

def test_batch_gives_each_message_its_id_in_order(k):
    w = k.client("pub", channels=["plain"])
    ids = w.write_batch("plain", [{"n": i} for i in range(50)])
    assert len(ids) == 50 and len(set(ids)) == 50
    assert ids == sorted(ids)               # sortable by write order
    later = w.write("plain", "after")
    assert later > ids[-1]


def test_batch_subscriber_gets_one_msgs_and_plain_one_msg_each(k):
    r = raw_docked(k, "bsub", ["plain"])
    cmd, _ = r.rpc("SUB", {"chan": "plain", "batch": True})
    assert cmd == "OK"
    p = k.client("psub", channels=["plain"])
    p.subscribe("plain")
    w = k.client("pub", channels=["plain"])
    data = [{"n": i} for i in range(20)]
    ids = w.write_batch("plain", data)

    cmd, body = next_push(r)
    assert cmd == "MSGS"
    assert body["sub"] == "plain" and set(body) == {"sub", "msgs"}
    msgs = body["msgs"]
    assert [m["id"] for m in msgs] == ids
    assert [m["data"] for m in msgs] == data
    for m in msgs:
        assert m["from"] == "pub" and m["chan"] == "plain"
        assert "attempt" not in m
        assert isinstance(m["ts"], float)
    assert r.recv(0.2) is None              # once

    got = [p.recv(2)["msg"] for _ in range(20)]
    assert [m["id"] for m in got] == ids
    assert [m["data"] for m in got] == data
    assert p.recv(0.2) is None


def test_single_writes_reach_batch_subscribers_as_msg(k):
    r = raw_docked(k, "bsub", ["plain"])
    assert r.rpc("SUB", {"chan": "plain", "batch": True})[0] == "OK"
    w = k.client("pub", channels=["plain"])
    one = w.write("plain", "x")
    cmd, body = next_push(r)
    assert cmd == "MSG" and body["msg"]["id"] == one
    (only,) = w.write_batch("plain", ["y"])     # a batch of one: MSG too
    cmd, body = next_push(r)
    assert cmd == "MSG" and body["msg"]["id"] == only


def test_sub_again_switches_the_mode(k):
    r = raw_docked(k, "bsub", ["plain"])
    assert r.rpc("SUB", {"chan": "plain", "batch": True})[0] == "OK"
    w = k.client("pub", channels=["plain"])
    w.write_batch("plain", [1, 2])
    assert next_push(r)[0] == "MSGS"
    assert r.rpc("SUB", {"chan": "plain"})[0] == "OK"
    w.write_batch("plain", [3, 4])
    assert [next_push(r)[0] for _ in range(2)] == ["MSG", "MSG"]
    assert r.recv(0.2) is None              # still one subscription


def test_python_client_unpacks_msgs(k):
    s = k.client("bsub", channels=["plain"])
    s.subscribe("plain", batch=True)
    w = k.client("pub", channels=["plain"])
    ids = w.write_batch("plain", list(range(100)))
    got = [s.recv(2) for _ in range(100)]
    assert [m["msg"]["id"] for m in got] == ids
    assert all(m["sub"] == "plain" for m in got)
    assert s.recv(0.2) is None


def test_batch_is_retained_and_mirrored_per_message(k):
    import zmq
    t = zmq.Context.instance().socket(zmq.SUB)
    t.setsockopt(zmq.LINGER, 0)
    t.connect(k.tap)
    t.subscribe(b"b")
    k._closers.append(lambda: t.close(0))
    w = k.client("pub", channels=["b"])
    # The tap is a PUB: wait until the subscription has reached it.
    wait_until(lambda: (w.write("b", "probe"), t.poll(100))[1], 5,
               what="tap subscription")
    while t.poll(200):
        t.recv_multipart()
    ids = w.write_batch("b", ["a", "b", "c", "d", "e", "f"])
    mirrored = []
    while len(mirrored) < 6 and t.poll(2000):
        topic, env = t.recv_multipart()
        assert topic == b"b"
        mirrored.append(msgpack.unpackb(env, raw=False)["id"])
    assert mirrored == ids
    # retain = 4: the last four, each replayed as its own MSG
    late = k.client("late", channels=["b"])
    late.subscribe("b", since="")
    got = [late.recv(2)["msg"]["id"] for _ in range(4)]
    assert got == ids[2:]


def test_batch_counts_each_message_against_the_rate_limit(k):
    w = k.client("pub", channels=["limited"])
    e = error(w.write_batch, "limited", list(range(6)))
    assert e.code == 429
    assert len(w.write_batch("limited", list(range(5)))) == 5
    assert error(w.write, "limited", "over").code == 429


def test_batch_rate_refusal_takes_nothing(k):
    w = k.client("pub", channels=["limited"])
    w.write_batch("limited", [1, 2, 3])
    assert error(w.write_batch, "limited", [4, 5, 6]).code == 429
    assert len(w.write_batch("limited", [4, 5])) == 2


def test_batches_larger_than_the_rate_ring(k):
    # Batches of 100 against 1000/s: the rate log grows to hold them all
    # (it once wrapped and overflowed its ring here).
    w = k.client("pub", channels=["roomy"])
    for _ in range(10):
        assert len(w.write_batch("roomy", list(range(100)))) == 100
    assert error(w.write_batch, "roomy", [1]).code == 429
    assert error(w.write_batch, "roomy", list(range(1001))).code == 429
    assert w.ping()


def test_batch_needs_the_write_right(k):
    w = k.client("nobody")                     # no channels granted
    assert error(w.write_batch, "plain", [1, 2]).code == 403
    assert error(w.write_batch, "nochan", [1]).code == 404


# ---- WRITE batch on a work-queue and a mailbox -----------------------------

def test_batch_on_a_durable_queue_survives_kill9(k):
    w = k.client("prod", channels=["q"])
    ids = w.write_batch("q", [{"job": i} for i in range(200)])
    assert len(ids) == 200
    k.close_clients()
    k.kill9()
    k.start()
    c = k.client("cons", channels=["q"])
    got = c.claim("q", max=500)
    assert [m["id"] for m in got] == ids
    assert [m["data"] for m in got] == [{"job": i} for i in range(200)]
    assert all(m["attempt"] == 1 for m in got)
    assert c.ack("q", got) == 200


def test_batch_over_max_len_is_refused_whole(k):
    w = k.client("prod", channels=["small"])
    assert error(w.write_batch, "small", [1, 2, 3, 4]).code == 429
    c = k.client("cons", channels=["small"])
    assert c.claim("small", max=10) == []      # nothing of it was written
    assert len(w.write_batch("small", [1, 2, 3])) == 3
    assert error(w.write, "small", 4).code == 429


def test_batch_wakes_a_waiting_claim(k):
    c = k.client("cons", channels=["q"])
    w = k.client("prod", channels=["q"])
    req = c.request("CLAIM", chan="q", max=10, wait_ms=5000)
    time.sleep(0.1)
    ids = w.write_batch("q", ["a", "b", "c"])
    cmd, body = c.reply(req)
    assert [m["id"] for m in body["msgs"]] == ids


def test_send_batch_to_a_mailbox(k):
    r = k.client("rcpt")
    s = k.client("sender")
    ids = s.call("SEND", to="rcpt", batch=["x", "y", "z"])["ids"]
    got = [r.recv(2)["msg"] for _ in range(3)]
    assert [m["id"] for m in got] == ids
    assert all(m["attempt"] == 1 and m["to"] == "rcpt" for m in got)
    assert r.ack("@rcpt", got) == 3


def test_send_batch_over_the_mailbox_limit_is_refused_whole(k):
    k.client("rcpt").bye()                      # known, not docked
    s = k.client("sender")
    assert s.call("SEND", to="rcpt", batch=[1, 2, 3])["ids"]
    e = error(s.call, "SEND", to="rcpt", batch=[4, 5, 6])
    assert e.code == 429                        # 3 + 3 > mailbox_max_len 5
    assert len(s.call("SEND", to="rcpt", batch=[4, 5])["ids"]) == 2
    r = k.client("rcpt")
    got = [r.recv(2)["msg"]["data"] for _ in range(5)]
    assert got == [1, 2, 3, 4, 5]
    assert r.recv(0.2) is None


# ---- bad batches ------------------------------------------------------------

@pytest.mark.parametrize("body, words", [
    ({"chan": "plain", "batch": []}, "1..10000"),
    ({"chan": "plain", "batch": "x"}, "array"),
    ({"chan": "plain", "batch": True}, "array of data values"),
    ({"chan": "plain", "batch": [1], "data": 1}, "not both"),
    ({"chan": "plain", "batch": [1], "key": "k"}, "key"),
    ({"chan": "plain", "batch": list(range(10001))}, "1..10000"),
])
def test_bad_write_batches_are_400(k, body, words):
    r = raw_docked(k, "pub", ["plain"])
    cmd, reply = r.rpc("WRITE", body)
    assert cmd == "ERROR" and reply["code"] == 400, reply
    assert words in reply["reason"]


def test_sub_batch_must_be_a_boolean(k):
    r = raw_docked(k, "s", ["plain"])
    cmd, reply = r.rpc("SUB", {"chan": "plain", "batch": [1]})
    assert cmd == "ERROR" and reply["code"] == 400
    assert "boolean" in reply["reason"]


def test_a_batch_entry_nesting_too_deep_is_400(k):
    r = raw_docked(k, "pub", ["plain"])
    deep = 1
    for _ in range(40):
        deep = [deep]
    cmd, reply = r.rpc("WRITE", {"chan": "plain", "batch": [1, deep]})
    assert cmd == "ERROR" and reply["code"] == 400
    assert "batch" in reply["reason"]


def test_ten_thousand_entries_are_accepted(k):
    s = k.client("bsub", channels=["plain"])
    s.subscribe("plain", batch=True)
    w = k.client("pub", channels=["plain"])
    ids = w.write_batch("plain", list(range(10000)))
    assert len(ids) == 10000
    got = [s.recv(5)["msg"]["data"] for _ in range(10000)]
    assert got == list(range(10000))


# ---- transient mailbox messages --------------------------------------------

def test_transient_send_is_pushed_once_and_never_kept(k):
    r = k.client("rcpt")
    s = k.client("sender")
    mid = s.send("rcpt", {"q": 1}, corr="c1", transient=True)
    m = r.recv(2)
    assert m["sub"] == "@rcpt"
    env = m["msg"]
    assert env["id"] == mid and env["data"] == {"q": 1}
    assert env["corr"] == "c1" and env["from"] == "sender"
    assert "attempt" not in env             # nothing to acknowledge
    assert r.ack("@rcpt", [mid]) == 0       # it was never in the mailbox
    # Not redelivered on a new session, unlike a mailbox message.
    r.bye()
    r2 = k.client("rcpt")
    assert r2.recv(0.5) is None


def test_transient_reply_round_trip(k):
    server = k.client("srv")
    client = k.client("cli")
    for i in range(20):
        client.send("srv", i, transient=True)
        req = server.recv(2)["msg"]
        server.send(req["from"], req["data"] * 2, corr=req["id"],
                    transient=True)
        rep = client.recv(2)["msg"]
        assert rep["corr"] == req["id"] and rep["data"] == 2 * i


def test_transient_to_an_undocked_system_is_404(k):
    k.client("away").bye()
    s = k.client("sender")
    e = error(s.send, "away", 1, transient=True)
    assert e.code == 404 and "not docked" in e.reason
    assert error(s.send, "never-seen", 1, transient=True).code == 404


def test_transient_to_a_paused_system_is_404(kernel_factory):
    k = kernel_factory()
    admin = k.client("admin", privileged=True, token=k.token)
    k.client("sleepy")
    admin.ctl("pause", "sleepy")
    s = k.client("sender")
    e = error(s.send, "sleepy", 1, transient=True)
    assert e.code == 404 and "paused" in e.reason


def test_transient_on_a_work_queue_is_400(k):
    w = k.client("prod", channels=["q"])
    e = error(w.write, "q", 1, transient=True)
    assert e.code == 400 and "work-queue" in e.reason


def test_transient_on_a_broadcast_changes_nothing(k):
    s = k.client("sub", channels=["plain"])
    s.subscribe("plain")
    w = k.client("pub", channels=["plain"])
    mid = w.write("plain", 1, transient=True)
    assert s.recv(2)["msg"]["id"] == mid


def test_transient_batch(k):
    r = k.client("rcpt")
    s = k.client("sender")
    ids = s.write_batch("@rcpt", ["a", "b"], transient=True)
    got = [r.recv(2)["msg"] for _ in range(2)]
    assert [m["id"] for m in got] == ids
    assert all("attempt" not in m for m in got)


def test_transient_must_be_a_boolean(k):
    r = raw_docked(k, "s")
    cmd, reply = r.rpc("SEND", {"to": "s", "data": 1, "transient": 1})
    assert cmd == "ERROR" and reply["code"] == 400


# ---- noreply ------------------------------------------------------------------

def test_noreply_write_is_delivered_without_an_ok(k):
    s = k.client("sub", channels=["plain"])
    s.subscribe("plain")
    r = raw_docked(k, "pub", ["plain"])
    r.send([b"WRITE", msgpack.packb({"req": 7, "chan": "plain", "data": 1,
                                     "noreply": True})])
    r.send([b"WRITE", msgpack.packb({"req": 8, "chan": "plain",
                                     "batch": [2, 3], "noreply": True})])
    got = [s.recv(2)["msg"]["data"] for _ in range(3)]
    assert got == [1, 2, 3]
    cmd, body = r.rpc("PING", {})
    assert cmd == "PONG"                    # nothing came before it
    assert r.pushes == [] and r.recv(0.2) is None


def test_noreply_still_reports_errors(k):
    k.client("away").bye()
    r = raw_docked(k, "pub", ["plain"])
    r.send([b"WRITE", msgpack.packb({"req": 9, "chan": "nochan", "data": 1,
                                     "noreply": True})])
    cmd, body = r.recv(2)
    assert cmd == "ERROR" and body["req"] == 9 and body["code"] == 404
    r.send([b"SEND", msgpack.packb({"req": 10, "to": "away", "data": 1,
                                    "transient": True, "noreply": True})])
    cmd, body = r.recv(2)
    assert cmd == "ERROR" and body["req"] == 10 and body["code"] == 404


def test_noreply_transient_round_trip(k):
    srv = raw_docked(k, "srv")
    cli = raw_docked(k, "cli")
    for i in range(10):
        cli.send([b"SEND", msgpack.packb({"req": 100 + i, "to": "srv",
                                          "data": i, "transient": True,
                                          "noreply": True})])
        cmd, body = srv.recv(2)
        assert cmd == "MSG" and body["msg"]["data"] == i
        srv.send([b"SEND", msgpack.packb({
            "req": 200 + i, "to": "cli", "data": -i,
            "corr": body["msg"]["id"], "transient": True, "noreply": True})])
        cmd, reply = cli.recv(2)
        assert cmd == "MSG" and reply["msg"]["data"] == -i
        assert reply["msg"]["corr"] == body["msg"]["id"]
    assert cli.recv(0.2) is None and srv.recv(0.1) is None


def test_python_client_keeps_batch_mode_across_a_restart(k):
    s = k.client("bsub", channels=["plain"], reconnect=True)
    s.subscribe("plain", batch=True)
    words = []
    dispatch = s._dispatch

    def spy(frames):
        if len(frames) == 2:
            words.append(bytes(frames[0]))
        return dispatch(frames)
    s._dispatch = spy
    k.restart()
    w = k.client("pub", channels=["plain"])
    # The client notices the restart, docks again and subscribes again,
    # with batch: a batch then arrives as one MSGS.
    got = []
    deadline = time.time() + 15
    while not got and time.time() < deadline:
        w.write_batch("plain", ["x", "y"])
        m = s.recv(1.0)
        if m:
            got.append(m)
    assert got, "no message after the restart"
    assert s.reconnects >= 1
    assert got[0]["msg"]["data"] == "x"
    assert b"MSGS" in words and b"MSG" not in words
