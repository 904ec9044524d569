"""Garbage on the wire never stops the kernel (contract section 5: "a bad
request never stops the kernel and never loses an accepted message")."""

import random
import signal

import msgpack
import pytest

COMMANDS = [b"HELLO", b"WRITE", b"SEND", b"SUB", b"UNSUB", b"CLAIM", b"ACK",
            b"NACK", b"PING", b"BYE", b"STAT", b"CTL"]
KEYS = ["req", "system", "version", "token", "channels", "privileged", "chan",
        "data", "to", "corr", "key", "since", "max", "wait_ms", "lease_ms",
        "ids", "delay_ms", "keep_leases", "op"]


def pk(obj):
    return msgpack.packb(obj, use_bin_type=True)


def random_value(rng, depth=0):
    choice = rng.randrange(12 if depth < 4 else 8)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.randrange(-2 ** 63, 2 ** 64)
    if choice == 3:
        return rng.choice([0, 1, 2, 255, 65536, 2 ** 32, 600001, 10001])
    if choice == 4:
        return rng.random() * 1e6
    if choice == 5:
        return "".join(rng.choice("aZ09.-_@:*\u00e9 ") for _ in
                       range(rng.randrange(0, 140)))
    if choice == 6:
        return rng.choice(["jobs", "events", "@fuzzer", "jobs.dlq",
                           "heartbeat", "pause", "kill", "", "x" * 300])
    if choice == 7:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    if choice in (8, 9):
        return [random_value(rng, depth + 1)
                for _ in range(rng.randrange(0, 5))]
    return {rng.choice(KEYS + ["zz", "x"]): random_value(rng, depth + 1)
            for _ in range(rng.randrange(0, 6))}


def nested(levels, leaf=b"\x01"):
    return b"\x91" * levels + leaf


def garbage_messages(rng):
    """A deterministic list of hostile messages (lists of frames)."""
    out = []
    # plain random bytes, random frame counts
    for _ in range(120):
        n = rng.choice([1, 2, 2, 2, 3, 4])
        out.append([bytes(rng.randrange(256)
                          for _ in range(rng.randrange(0, 64)))
                    for _ in range(n)])
    # truncated msgpack bodies of valid requests
    for _ in range(80):
        cmd = rng.choice(COMMANDS)
        body = pk({"req": rng.randrange(2 ** 32), "chan": "jobs",
                   "data": random_value(rng), "system": "fuzzer",
                   "version": 1, "ids": ["A" * 26]})
        out.append([cmd, body[:rng.randrange(0, len(body))]])
    # deep nesting, as data, as an unknown key, as a bare body
    for levels in (33, 100, 1000, 5000):
        out.append([b"PING", b"\x82" + pk("req") + pk(1) + pk("x")
                    + nested(levels)])
        out.append([b"WRITE", b"\x83" + pk("req") + pk(2) + pk("chan")
                    + pk("jobs") + pk("data") + nested(levels)])
        out.append([b"WRITE", nested(levels)])
        out.append([b"PING", b"\x81\xa1x" + b"\x81\xa1x" * levels + b"\xc0"])
    # huge declared lengths with nothing behind them
    for prefix in (b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                   b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
                   b"\xc9\xff\xff\xff\xff\x01", b"\xda\xff\xff",
                   b"\xdc\xff\xff", b"\xde\xff\xff"):
        out.append([b"PING", prefix])
        out.append([b"PING", b"\x82" + pk("req") + pk(3) + pk("data")
                    + prefix + b"abc"])
        out.append([b"WRITE", b"\x83" + pk("req") + pk(4) + pk("chan")
                    + pk("jobs") + pk("data") + prefix])
        out.append([b"ACK", b"\x83" + pk("req") + pk(5) + pk("chan")
                    + pk("jobs") + pk("ids") + prefix])
    # valid maps with random keys and values for every command
    for _ in range(150):
        body = {rng.choice(KEYS): random_value(rng)
                for _ in range(rng.randrange(0, 8))}
        if rng.random() < 0.8:
            body["req"] = rng.randrange(2 ** 64)
        try:
            out.append([rng.choice(COMMANDS), pk(body)])
        except (OverflowError, ValueError):
            pass
    # ext types, float keys, nil keys, reserved byte
    for raw in (b"\x81\xd4\x01\x02\x01", b"\x81\xcb" + b"\x00" * 8 + b"\x01",
                b"\x81\xc0\xc0", b"\x81\xa3req\xc1", b"\x81\xa3req\xd3"
                + b"\xff" * 8, b"\x81\xa3req\xcf" + b"\xff" * 8):
        out.append([b"PING", raw])
    return out


def strict_ping(r, req, timeout=5.0):
    """PING with a req no garbage used; skips every other reply."""
    r.send([b"PING", pk({"req": req})])
    while True:
        got = r.recv(timeout)
        if got is None:
            return False
        cmd, body = got
        if cmd == "PONG" and isinstance(body, dict) and body["req"] == req:
            return True


@pytest.mark.parametrize("docked", [False, True])
def test_garbage_never_stops_the_kernel(kernel, docked):
    rng = random.Random(20240601 + docked)
    r = kernel.raw()
    admin = kernel.raw()
    admin.hello("fuzz-admin", privileged=True, token=kernel.token)
    if docked:
        r.hello("fuzzer", channels=["jobs", "events", "jobs.dlq"],
                privileged=True, token=kernel.token)
    keeper = kernel.client("keeper", channels=["jobs"])
    precious = keeper.write("jobs", "precious")
    msgs = garbage_messages(rng)
    assert len(msgs) >= 300
    for i, frames in enumerate(msgs):
        r.send(frames)
        if i % 25 == 0:
            # the kernel still answers, on this connection and another
            assert admin.rpc("PING")[0] == "PONG", "after message %d" % i
            assert strict_ping(r, 2 ** 63 + i), "after message %d" % i
    assert kernel.alive()
    assert admin.rpc("PING")[0] == "PONG"
    # a fresh connection docks and works; the accepted message is intact
    fresh = kernel.client("fresh", channels=["jobs", "jobs.dlq"])
    seen = []
    for chan in ("jobs", "jobs.dlq"):
        while True:
            got = fresh.claim(chan, max=1000)
            if not got:
                break
            seen += got
    assert precious in [m["id"] for m in seen]
    kernel.proc.send_signal(signal.SIGTERM)
    assert kernel.proc.wait(15) == 0


def test_many_connections_coming_and_going(kernel):
    for i in range(100):
        r = kernel.raw()
        if i % 2:
            r.hello("transient-%d" % i)
            r.send([b"WRITE", pk({"req": 1, "chan": "jobs", "data": i})])
        r.send([b"\xff" * (i % 13), b"\x00" * i])
        r.close()
    c = kernel.client("survivor")
    assert isinstance(c.ping(), float)


def test_oversize_beyond_16x_max_frame_drops_only_that_connection(
        kernel_factory):
    k = kernel_factory(config="return { max_frame = 1024 }")
    r = k.raw()
    r.send([b"PING", b"\x00" * (1024 * 16 + 70000)])
    c = k.client("bystander")
    assert isinstance(c.ping(), float)
    assert k.alive()
