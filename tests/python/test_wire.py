"""Framing, decoding and errors on the command endpoint, on the raw wire
(contract sections 2, 3 and 5; docs/PROTOCOL.md sections 2, 3, 6, 9)."""

import re
import time

import msgpack
import pytest

from conftest import wait_until

ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # Crockford base32

SMALL_FRAME = """
return {
  max_frame = 2048,
  channels = {
    { name = "jobs", kind = "work-queue" },
    { name = "events", kind = "broadcast", visibility = "public", retain = 10 },
  },
  policy = {
    { subject = "*", action = "chan.write", target = "*", effect = "allow" },
    { subject = "*", action = "chan.claim", target = "*", effect = "allow" },
    { subject = "*", action = "chan.read", target = "*", effect = "allow" },
  },
}
"""


def pk(obj):
    return msgpack.packb(obj, use_bin_type=True)


def assert_error(got, code, req="any"):
    assert got is not None, "no reply"
    cmd, body = got
    assert cmd == "ERROR", got
    assert isinstance(body, dict), got
    assert body["code"] == code, got
    assert isinstance(body["reason"], str) and body["reason"], got
    assert "req" in body, got
    if req != "any":
        assert body["req"] == req, got
    return body


# ---- frame counts ----------------------------------------------------------

def test_one_frame_is_400_with_nil_req(kernel):
    r = kernel.raw()
    r.send([pk({"req": 7})])
    assert_error(r.recv(), 400, req=None)
    r.send([b"PING"])
    assert_error(r.recv(), 400, req=None)


def test_three_frames_is_400_with_nil_req(kernel):
    r = kernel.raw()
    r.send([b"PING", pk({"req": 7}), b"extra"])
    assert_error(r.recv(), 400, req=None)
    r.send([b"PING", pk({"req": 8}), pk({"req": 9}), b""])
    assert_error(r.recv(), 400, req=None)


def test_empty_frame_is_400(kernel):
    r = kernel.raw()
    r.send([b""])
    assert_error(r.recv(), 400, req=None)
    r.send([b"PING", b""])
    assert_error(r.recv(), 400, req=None)


def test_replies_are_exactly_two_frames(kernel):
    r = kernel.raw()
    r.send([b"PING", pk({"req": 1})])
    frames = r.sock.recv_multipart()
    assert len(frames) == 2
    assert frames[0] == b"PONG"
    body = msgpack.unpackb(frames[1], raw=False)
    assert body["req"] == 1
    assert isinstance(body["ts"], float)
    assert abs(body["ts"] - time.time()) < 5
    # extension: whether this connection is docked
    assert body["docked"] is False
    r.hello("pinger")
    assert r.ok("PING")["docked"] is True
    r.ok("BYE")
    assert r.ok("PING")["docked"] is False


# ---- body decoding ---------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"\xc1",                      # never-used msgpack byte
    b"\x82\xa3req",               # truncated map
    b"not msgpack at all",
    b"\xdf\xff\xff\xff\xff",      # map of 4G pairs, no content
])
def test_body_not_msgpack_is_400(kernel, body):
    r = kernel.raw()
    r.send([b"PING", body])
    assert_error(r.recv(), 400, req=None)
    assert r.rpc("PING")[0] == "PONG"


@pytest.mark.parametrize("obj", [[1, 2], "PING", 7, None, True, 1.5,
                                 b"\x00\x01"])
def test_body_not_a_map_is_400(kernel, obj):
    r = kernel.raw()
    r.send([b"PING", pk(obj)])
    assert_error(r.recv(), 400, req=None)


def test_non_string_keys_are_400(kernel):
    r = kernel.raw()
    r.send([b"PING", pk({1: 2, "req": 3})])
    assert_error(r.recv(), 400)
    r.send([b"PING", pk({b"req": 3})])       # a bin key is not a string
    assert_error(r.recv(), 400, req=None)


def test_trailing_bytes_after_the_map_are_400(kernel):
    r = kernel.raw()
    r.send([b"PING", pk({"req": 3}) + b"\x01"])
    assert_error(r.recv(), 400)


def test_missing_req_is_400(kernel):
    r = kernel.raw()
    r.send([b"PING", pk({})])
    assert_error(r.recv(), 400, req=None)
    r.send([b"HELLO", pk({"system": "a", "version": 1})])
    assert_error(r.recv(), 400, req=None)


@pytest.mark.parametrize("req", ["7", -1, 1.0, None, [7], True])
def test_mistyped_req_is_400(kernel, req):
    r = kernel.raw()
    r.send([b"PING", pk({"req": req})])
    assert_error(r.recv(), 400, req=None)


@pytest.mark.parametrize("word", [b"FOO", b"ping", b"Ping", b"PINGX",
                                  b"HELLO ", b"\xff\x00", b"X" * 300],
                         ids=["FOO", "ping", "Ping", "PINGX", "HELLO_space",
                              "binary", "long"])
def test_unknown_command_is_400_echoing_req(kernel, word):
    r = kernel.raw()
    r.send([word, pk({"req": 4242})])
    assert_error(r.recv(), 400, req=4242)


def test_unknown_command_when_docked_is_400_echoing_req(kernel):
    r = kernel.raw()
    r.hello("wire-1")
    r.send([b"FETCH", pk({"req": 77, "chan": "jobs"})])
    assert_error(r.recv(), 400, req=77)


def test_req_is_echoed_exactly(kernel):
    r = kernel.raw()
    for req in (0, 1, 127, 128, 65535, 2 ** 32, 2 ** 64 - 1):
        cmd, body = r.rpc("PING", {"req": req})
        assert (cmd, body["req"]) == ("PONG", req)
    r.hello("wire-2", channels=["jobs"])
    for req in (0, 2 ** 64 - 1):
        cmd, body = r.rpc("WRITE", {"req": req, "chan": "jobs", "data": 1})
        assert (cmd, body["req"]) == ("OK", req)
        cmd, body = r.rpc("WRITE", {"req": req, "chan": "nope", "data": 1})
        assert (cmd, body["req"], body["code"]) == ("ERROR", req, 404)


@pytest.mark.parametrize("cmd,body", [
    ("HELLO", {"version": 1}),                       # no system
    ("HELLO", {"system": "x"}),                      # no version
    ("HELLO", {"system": 5, "version": 1}),          # mistyped
    ("HELLO", {"system": "x", "version": "1"}),
    ("HELLO", {"system": "x", "version": 1, "channels": "jobs"}),
    ("HELLO", {"system": "x", "version": 1, "channels": [1]}),
    ("HELLO", {"system": "x", "version": 1, "privileged": "yes"}),
])
def test_missing_or_mistyped_hello_fields_are_400(kernel, cmd, body):
    r = kernel.raw()
    assert r.err(cmd, body) == 400


@pytest.mark.parametrize("cmd,body", [
    ("WRITE", {"data": 1}),
    ("WRITE", {"chan": "jobs"}),
    ("WRITE", {"chan": 5, "data": 1}),
    ("WRITE", {"chan": "jobs", "data": 1, "key": 5}),
    ("WRITE", {"chan": "jobs", "data": 1, "corr": 5}),
    ("WRITE", {"chan": "jobs", "data": 1, "key": "x" * 257}),
    ("SEND", {"data": 1}),
    ("SEND", {"to": "x"}),
    ("SUB", {}),
    ("SUB", {"chan": "events", "since": "not-an-id"}),
    ("UNSUB", {}),
    ("CLAIM", {}),
    ("CLAIM", {"chan": "jobs", "max": 0}),
    ("CLAIM", {"chan": "jobs", "max": 10001}),
    ("CLAIM", {"chan": "jobs", "max": -1}),
    ("CLAIM", {"chan": "jobs", "wait_ms": 600001}),
    ("CLAIM", {"chan": "jobs", "lease_ms": 0}),
    ("CLAIM", {"chan": "jobs", "lease_ms": 86400001}),
    ("ACK", {"chan": "jobs"}),
    ("ACK", {"ids": []}),
    ("ACK", {"chan": "jobs", "ids": "X"}),
    ("ACK", {"chan": "jobs", "ids": [1]}),
    ("ACK", {"chan": "jobs", "ids": ["A"] * 10001}),
    ("NACK", {"chan": "jobs", "ids": [], "delay_ms": 86400001}),
    ("CTL", {"op": "pause"}),
    ("BYE", {"keep_leases": "yes"}),
])
def test_missing_or_mistyped_fields_are_400(kernel, cmd, body):
    r = kernel.raw()
    r.hello("wire-3", channels=["jobs", "events"])
    assert r.err(cmd, body) == 400
    # the session is still fine
    assert r.ok("WRITE", chan="jobs", data="still here")["id"]


def test_duplicate_known_key_is_400(kernel):
    r = kernel.raw()
    r.hello("wire-4", channels=["jobs"])
    # msgpack map with "chan" twice, built by hand
    body = (b"\x84" + pk("req") + pk(9) + pk("chan") + pk("jobs")
            + pk("chan") + pk("jobs") + pk("data") + pk(1))
    r.send([b"WRITE", body])
    assert_error(r.recv(), 400, req=9)


def test_nesting_limit(kernel):
    r = kernel.raw()
    r.hello("wire-5", channels=["jobs"])
    shallow = 1
    for _ in range(28):       # data: at most 28 nested non-empty containers,
        shallow = [shallow]   # so every reply carrying it fits in 32 levels
    r.ok("WRITE", chan="jobs", data=shallow)
    too_deep = [shallow]
    assert r.err("WRITE", chan="jobs", data=too_deep) == 400
    deep = b"\x91" * 40 + b"\x01"
    body = pk({"req": 5, "chan": "jobs"})
    body = b"\x83" + body[1:] + pk("data") + deep
    r.send([b"WRITE", body])
    assert_error(r.recv(), 400, req=5)
    msgs = r.ok("CLAIM", chan="jobs", max=10)["msgs"]
    assert [m["data"] for m in msgs] == [shallow]


def test_unknown_keys_are_ignored(kernel):
    r = kernel.raw()
    r.hello("wire-6", channels=["jobs"], color="blue", extra={"a": [1, 2]})
    assert r.ok("PING", whatever=[1, {"x": None}])["req"]
    wid = r.ok("WRITE", chan="jobs", data="d", priority=9,
               meta={"nested": [1, 2, {"k": b"\x00"}]})["id"]
    m = r.ok("CLAIM", chan="jobs", max=5, foo="bar")["msgs"]
    assert [x["id"] for x in m] == [wid]
    assert "priority" not in m[0] and "meta" not in m[0]
    assert r.ok("ACK", chan="jobs", ids=[wid], bar=1)["acked"] == 1


def test_kernel_set_keys_in_write_are_ignored(kernel):
    r = kernel.raw()
    r.hello("honest", channels=["jobs", "events"])
    sub = kernel.raw()
    sub.hello("watcher", channels=["events"])
    sub.ok("SUB", chan="events")
    t0 = time.time()
    wid = r.ok("WRITE", chan="jobs", data="x", id="00000000000000000000000000",
               ts=1.0, **{"from": "mallory", "attempt": 99})["id"]
    assert wid != "00000000000000000000000000"
    m = r.ok("CLAIM", chan="jobs")["msgs"][0]
    assert m["id"] == wid
    assert m["from"] == "honest"
    assert m["chan"] == "jobs"
    assert m["attempt"] == 1
    assert abs(m["ts"] - t0) < 5
    bid = r.ok("WRITE", chan="events", data="y", id="X", ts=2.0,
               **{"from": "mallory"})["id"]
    got = sub.recv()
    assert got[0] == "MSG"
    env = got[1]["msg"]
    assert env["id"] == bid and env["from"] == "honest"
    assert abs(env["ts"] - t0) < 5


def test_envelope_shape_and_data_byte_for_byte(kernel):
    r = kernel.raw()
    r.hello("shape", channels=["jobs"])
    payloads = [None, True, False, 0, -1, 2 ** 64 - 1, -2 ** 63, 1.5,
                "text \u00e9\u4e2d", b"\x00\xff binary", [], {},
                [1, [2, [3]]], {"k": {"n": [None, b"b"]}, "z": 1.25},
                "x" * 1000]
    ids = [r.ok("WRITE", chan="jobs", data=p, corr="C1", to="someone")["id"]
           for p in payloads]
    assert all(ID_RE.match(i) for i in ids), ids
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    msgs = r.ok("CLAIM", chan="jobs", max=100)["msgs"]
    assert [m["id"] for m in msgs] == ids
    for m, p in zip(msgs, payloads):
        assert m["data"] == p and type(m["data"]) == type(p)
        assert set(m) >= {"id", "ts", "from", "chan", "to", "corr", "data",
                          "attempt"}
        assert isinstance(m["ts"], float)
        assert m["from"] == "shape" and m["chan"] == "jobs"
        assert m["corr"] == "C1" and m["to"] == "someone"
    # the raw bytes of data are exactly what was written
    r.send([b"WRITE", pk({"req": 1, "chan": "jobs",
                          "data": {"a": b"\x01\x02", "b": [1.0, -3]}})])
    assert r.reply()[0] == "OK"
    r.send([b"CLAIM", pk({"req": 2, "chan": "jobs"})])
    frames = r.sock.recv_multipart()
    assert pk({"a": b"\x01\x02", "b": [1.0, -3]}) in frames[1]


def test_to_and_corr_are_nil_when_absent(kernel):
    r = kernel.raw()
    r.hello("nils", channels=["jobs"])
    r.ok("WRITE", chan="jobs", data=1)
    m = r.ok("CLAIM", chan="jobs")["msgs"][0]
    assert m["to"] is None and m["corr"] is None


def test_error_replies_carry_req_code_reason(kernel):
    r = kernel.raw()
    cmd, body = r.rpc("WRITE", {"req": 31, "chan": "jobs", "data": 1})
    assert cmd == "ERROR"
    assert set(body) >= {"req", "code", "reason"}
    assert body == dict(body, req=31, code=401)


def test_replies_are_matched_by_req_when_pipelined(kernel):
    r = kernel.raw()
    r.hello("pipe", channels=["jobs"])
    reqs = list(range(500, 700))
    for q in reqs:
        if q % 3 == 0:
            r.send([b"PING", pk({"req": q})])
        else:
            r.send([b"WRITE", pk({"req": q, "chan": "jobs", "data": q})])
    got = {}
    while len(got) < len(reqs):
        cmd, body = r.recv()
        got[body["req"]] = cmd
    assert got == {q: ("PONG" if q % 3 == 0 else "OK") for q in reqs}


# ---- 413 -------------------------------------------------------------------

def test_frame_larger_than_max_frame_is_413_echoing_req(kernel_factory):
    k = kernel_factory(config=SMALL_FRAME)
    r = k.raw()
    r.hello("big", channels=["jobs"])
    assert r.ok("WRITE", chan="jobs", data="x" * 1500)["id"]
    r.send([b"WRITE", pk({"req": 66, "chan": "jobs", "data": "x" * 3000})])
    assert_error(r.recv(), 413, req=66)
    # req after the big value is still found
    r.send([b"WRITE", pk({"chan": "jobs", "data": "x" * 3000, "req": 67})])
    assert_error(r.recv(), 413, req=67)
    # nothing was accepted
    msgs = r.ok("CLAIM", chan="jobs", max=10)["msgs"]
    assert len(msgs) == 1
    # a big command frame is 413 too
    r.send([b"X" * 5000, pk({"req": 68})])
    assert_error(r.recv(), 413)
    assert r.rpc("PING")[0] == "PONG"


def test_default_max_frame_is_1mib(kernel):
    r = kernel.raw()
    r.hello("big2", channels=["jobs"])
    assert r.ok("WRITE", chan="jobs", data=b"x" * (1024 * 1024 - 100))["id"]
    r.send([b"WRITE", pk({"req": 3, "chan": "jobs",
                          "data": b"x" * (1024 * 1024 + 10)})])
    assert_error(r.recv(), 413, req=3)


# ---- order of checks: 413, 400, 401, 423, 404, 403, 429 ----------------------

ORDER_CONFIG = """
return {
  max_frame = 2048,
  channels = {
    { name = "jobs", kind = "work-queue", max_len = 1 },
    { name = "open", kind = "work-queue" },
    { name = "events", kind = "broadcast" },
  },
  policy = {
    { subject = "*", action = "chan.write", target = "jobs", effect = "allow" },
    { subject = "*", action = "chan.claim", target = "jobs", effect = "allow" },
    { subject = "*", action = "chan.write", target = "open", effect = "allow",
      rate = "2/h" },
    { subject = "*", action = "chan.read", target = "events", effect = "allow" },
    { subject = "*", action = "chan.write", target = "@*", effect = "deny" },
  },
}
"""


def _admin(k):
    a = k.raw()
    a.hello("admin", privileged=True, token=k.token)
    return a


def test_order_413_before_400(kernel_factory):
    k = kernel_factory(config=ORDER_CONFIG)
    r = k.raw()
    # oversize and not msgpack (and undocked): 413
    r.send([b"WRITE", b"\xc1" * 3000])
    assert_error(r.recv(), 413)
    # oversize and unknown command: 413
    r.send([b"BOGUS", pk({"req": 5, "pad": "x" * 3000})])
    assert_error(r.recv(), 413, req=5)
    # oversize and wrong frame count: 413
    r.send([b"PING", pk({"req": 6}), b"x" * 3000])
    assert_error(r.recv(), 413)


def test_order_400_before_401(kernel_factory):
    k = kernel_factory(config=ORDER_CONFIG)
    r = k.raw()   # not docked
    assert_error(r.rpc("WRITE", {"req": 1, "chan": "jobs"}), 400, req=1)
    assert_error(r.rpc("CLAIM", {"req": 2, "chan": "jobs", "max": 0}), 400,
                 req=2)
    assert_error(r.rpc("NOPE", {"req": 3}), 400, req=3)
    assert_error(r.rpc("WRITE", {"req": 4, "chan": "jobs", "data": 1}), 401,
                 req=4)


def test_order_401_before_423(kernel_factory):
    k = kernel_factory(config=ORDER_CONFIG)
    p = k.raw()
    p.hello("pausee", channels=["jobs"])
    admin = _admin(k)
    admin.ok("CTL", op="pause", system="pausee")
    assert p.err("WRITE", chan="jobs", data=1) == 423
    p.ok("BYE")
    # the system is paused but this connection is not docked: 401
    assert p.err("WRITE", chan="jobs", data=1) == 401
    assert p.err("CLAIM", chan="jobs") == 401


def test_order_423_before_404_and_403(kernel_factory):
    k = kernel_factory(config=ORDER_CONFIG)
    p = k.raw()
    p.hello("pausee", channels=[])
    _admin(k).ok("CTL", op="pause", system="pausee")
    assert p.err("WRITE", chan="no-such-channel", data=1) == 423
    assert p.err("SEND", to="never-seen", data=1) == 423
    assert p.err("WRITE", chan="jobs", data=1) == 423     # no grant
    assert p.err("CLAIM", chan="nope") == 423
    assert p.err("SUB", chan="nope") == 423


def test_order_404_before_403(kernel_factory):
    k = kernel_factory(config=ORDER_CONFIG)
    r = k.raw()
    r.hello("someone", channels=[])
    assert r.err("WRITE", chan="no-such-channel", data=1) == 404
    assert r.err("CLAIM", chan="no-such-channel") == 404
    assert r.err("SUB", chan="no-such-channel") == 404
    assert r.err("ACK", chan="no-such-channel", ids=[]) == 404
    # the policy denies every mailbox write, but the system is unknown
    assert r.err("SEND", to="never-seen", data=1) == 404
    assert r.err("WRITE", chan="@never-seen", data=1) == 404
    # known system: now the deny answers
    other = k.raw()
    other.hello("known")
    assert r.err("SEND", to="known", data=1) == 403


def test_order_403_before_429(kernel_factory):
    k = kernel_factory(config=ORDER_CONFIG)
    w = k.raw()
    w.hello("writer", channels=["jobs", "open"])
    w.ok("WRITE", chan="jobs", data=1)
    assert w.err("WRITE", chan="jobs", data=2) == 429      # max_len = 1
    w.ok("WRITE", chan="open", data=1)
    w.ok("WRITE", chan="open", data=2)
    assert w.err("WRITE", chan="open", data=3) == 429      # rate 2/h
    n = k.raw()
    n.hello("nogrant", channels=[])                        # nothing listed
    assert n.err("WRITE", chan="jobs", data=1) == 403      # full, no grant
    n2 = k.raw()
    n2.hello("writer2", channels=[])
    assert n2.err("WRITE", chan="open", data=1) == 403


def test_kernel_survives_every_error(kernel):
    """A bad request never stops the kernel and never loses an accepted
    message."""
    r = kernel.raw()
    r.hello("keeper", channels=["jobs"])
    wid = r.ok("WRITE", chan="jobs", data="precious")["id"]
    for frames in ([b"x"], [b"WRITE", b"\xc1"], [b"A", b"B", b"C"],
                   [b"ACK", pk({"req": 1, "chan": "jobs", "ids": ["bad"]})]):
        r.send(frames)
        assert r.recv()[0] in ("ERROR", "OK")
    msgs = r.ok("CLAIM", chan="jobs")["msgs"]
    assert [m["id"] for m in msgs] == [wid]
    assert wait_until(lambda: kernel.alive())


def test_limits_from_the_doc(kernel):
    r = kernel.raw()
    assert r.err("HELLO", system="lim", version=1,
                 channels=["jobs"] * 1025) == 400
    r.hello("lim", channels=["jobs"] * 1024)
    assert r.err("WRITE", chan="jobs", data=1, corr="c" * 257) == 400
    assert r.ok("WRITE", chan="jobs", data=1, corr="c" * 256,
                key="k" * 256)["id"]
    assert r.err("WRITE", chan="x" * 129, data=1) in (400, 404)
    assert r.err("WRITE", chan="x" * 300, data=1) in (400, 404)
    assert r.err("ACK", chan="jobs", ids=["A"] * 10001) == 400
    assert r.ok("ACK", chan="jobs", ids=["A"] * 10000)["acked"] == 0


def test_ids_sort_in_write_order_across_channels(kernel):
    r = kernel.raw()
    r.hello("orderly", channels=["jobs", "events"])
    ids = []
    for i in range(50):
        ids.append(r.ok("WRITE", chan="jobs" if i % 2 else "events",
                        data=i)["id"])
    assert ids == sorted(ids) and len(set(ids)) == 50


def test_idempotency_key_is_1_to_256_bytes(kernel):
    r = kernel.raw()
    r.hello("empty-key", channels=["jobs"])
    assert r.err("WRITE", chan="jobs", data=1, key="") == 400
    assert r.err("SEND", to="empty-key", data=1, key="") == 400
    assert r.err("WRITE", chan="jobs", data=1, key="a\x00b") == 400
    assert r.ok("WRITE", chan="jobs", data=1, key="k")["id"]
