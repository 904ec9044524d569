"""Sessions: HELLO, tokens, 401/409, BYE, liveness (contract section 4;
docs/PROTOCOL.md sections 4 (HELLO, BYE) and 5)."""

import re
import time

import msgpack
import pytest

from conftest import wait_until

FAST = """
return {
  heartbeat_ms = 200,
  channels = {
    { name = "jobs", kind = "work-queue" },
    { name = "events", kind = "broadcast", visibility = "public" },
  },
  policy = {
    { subject = "*", action = "chan.*", target = "*", effect = "allow" },
  },
}
"""

PRIVILEGED_GRANTS = {"write:kernel.loader", "write:kernel.lifecycle",
                     "read:kernel.capabilities", "read:kernel.modules",
                     "read:kernel.policy"}


def common_grants(system):
    return {"read:@" + system, "read:heartbeat",
            "write:kernel.capability_requests", "write:kernel.gate"}


# ---- HELLO comes first -------------------------------------------------------

def test_ping_is_answered_undocked(kernel):
    r = kernel.raw()
    cmd, body = r.rpc("PING", {"req": 99})
    assert cmd == "PONG" and body["req"] == 99
    assert isinstance(body["ts"], float) and abs(body["ts"] - time.time()) < 5


@pytest.mark.parametrize("cmd,body", [
    ("WRITE", {"chan": "jobs", "data": 1}),
    ("SEND", {"to": "x", "data": 1}),
    ("SUB", {"chan": "events"}),
    ("UNSUB", {"chan": "events"}),
    ("CLAIM", {"chan": "jobs"}),
    ("CLAIM", {"chan": "jobs", "wait_ms": 100}),
    ("ACK", {"chan": "jobs", "ids": []}),
    ("NACK", {"chan": "jobs", "ids": []}),
    ("BYE", {}),
    ("STAT", {}),
    ("CTL", {"op": "pause", "system": "x"}),
])
def test_anything_but_ping_undocked_is_401(kernel, cmd, body):
    r = kernel.raw()
    c, b = r.rpc(cmd, dict(body, req=5))
    assert (c, b["code"], b["req"]) == ("ERROR", 401, 5)


def test_hello_reply(kernel):
    r = kernel.raw()
    b = r.hello("fresh", channels=["jobs"])
    assert set(b) >= {"req", "session", "kernel", "grants", "heartbeat_ms"}
    assert re.fullmatch(r"[0-9a-f]{32}", b["session"])
    assert re.fullmatch(r"aaax-[0-9a-f]{16}", b["kernel"])
    assert b["heartbeat_ms"] == 1000
    assert all(isinstance(g, str) for g in b["grants"])
    assert common_grants("fresh") <= set(b["grants"])
    assert not PRIVILEGED_GRANTS & set(b["grants"])
    # a new session id for each session
    r2 = kernel.raw()
    assert r2.hello("fresh2")["session"] != b["session"]


def test_kernel_id_persists_across_restarts(kernel):
    c = kernel.client("k1")
    first = c.kernel
    c.close()
    assert kernel.stop() == 0
    kernel.start()
    assert kernel.client("k2").kernel == first


@pytest.mark.parametrize("version", [0, 2, 100])
def test_hello_version_other_than_1_is_400(kernel, version):
    r = kernel.raw()
    cmd, b = r.rpc("HELLO", system="v", version=version)
    assert (cmd, b["code"]) == ("ERROR", 400)
    # and not docked
    assert r.err("WRITE", chan="jobs", data=1) == 401


@pytest.mark.parametrize("system", ["", ".hidden", "a b", "x" * 129,
                                    "caf\u00e9", "a/b", "a@b"])
def test_bad_system_ids_are_400(kernel, system):
    r = kernel.raw()
    assert r.err("HELLO", system=system, version=1) == 400


@pytest.mark.parametrize("system", ["a", "A-Z_0.9:x", "x" * 128,
                                    "host:agent-1"])
def test_good_system_ids(kernel, system):
    r = kernel.raw()
    assert "read:@" + system in r.hello(system)["grants"]


def test_kernel_ids_are_reserved(kernel):
    r = kernel.raw()
    assert r.err("HELLO", system="kernel.heartbeat", version=1) == 403
    assert r.err("HELLO", system="kernel.mine", version=1,
                 privileged=True, token=kernel.token) == 403


# ---- tokens ------------------------------------------------------------------

def test_privileged_without_token_is_401(kernel):
    r = kernel.raw()
    assert r.err("HELLO", system="root", version=1, privileged=True) == 401
    assert r.err("STAT") == 401


@pytest.mark.parametrize("token", ["", "0" * 64, "zz", "0" * 63, "0" * 65])
def test_privileged_with_wrong_token_is_401(kernel, token):
    r = kernel.raw()
    assert r.err("HELLO", system="root", version=1, privileged=True,
                 token=token) == 401
    assert r.err("STAT") == 401


def test_token_case_and_whitespace_matter(kernel):
    r = kernel.raw()
    if kernel.token.upper() != kernel.token:
        assert r.err("HELLO", system="root", version=1, privileged=True,
                     token=kernel.token.upper()) == 401
    assert r.err("HELLO", system="root", version=1, privileged=True,
                 token=kernel.token + "\n") == 401


def test_token_of_a_previous_boot_is_401(kernel):
    old = kernel.token
    assert kernel.stop() == 0
    kernel.start()
    assert kernel.token != old
    r = kernel.raw()
    assert r.err("HELLO", system="root", version=1, privileged=True,
                 token=old) == 401


def test_right_token_gives_privileged_grants(kernel):
    r = kernel.raw()
    b = r.hello("root", privileged=True, token=kernel.token)
    assert PRIVILEGED_GRANTS <= set(b["grants"])
    assert common_grants("root") <= set(b["grants"])
    assert r.ok("STAT")["heartbeat"]["state"] == "running"
    # over ipc as well
    i = kernel.raw(kernel.ipc)
    assert PRIVILEGED_GRANTS <= set(
        i.hello("root-ipc", privileged=True, token=kernel.token)["grants"])


def test_token_without_privileged_is_not_privileged(kernel):
    r = kernel.raw()
    b = r.hello("notroot", token=kernel.token)
    assert not PRIVILEGED_GRANTS & set(b["grants"])
    assert r.err("STAT") == 403


# ---- one live connection per system ------------------------------------------

def test_same_id_on_another_live_connection_is_409(kernel):
    a = kernel.raw()
    a.hello("dup", channels=["jobs"])
    b = kernel.raw()
    cmd, body = b.rpc("HELLO", system="dup", version=1)
    assert (cmd, body["code"]) == ("ERROR", 409)
    assert b.err("WRITE", chan="jobs", data=1) == 401   # b is not docked
    a.ok("WRITE", chan="jobs", data=1)                   # a still is
    # privileged does not override it
    assert b.err("HELLO", system="dup", version=1, privileged=True,
                 token=kernel.token) == 409
    a.ok("BYE")
    assert b.hello("dup")["session"]


def test_hello_again_same_id_remakes_grants(kernel):
    r = kernel.raw()
    g1 = set(r.hello("again", channels=["jobs"])["grants"])
    assert "write:jobs" in g1 and "read:events" not in g1
    g2 = set(r.hello("again", channels=["events"])["grants"])
    assert "read:events" in g2 and "write:jobs" not in g2
    assert r.err("WRITE", chan="jobs", data=1) == 403
    r.ok("SUB", chan="events")


def test_hello_with_another_id_on_a_docked_connection_is_409(kernel):
    r = kernel.raw()
    r.hello("first")
    assert r.err("HELLO", system="second", version=1) == 409
    r.ok("BYE")
    r.hello("second")


# ---- BYE ---------------------------------------------------------------------

def test_after_bye_next_command_is_401(kernel):
    r = kernel.raw()
    r.hello("leaver", channels=["jobs", "events"])
    assert r.ok("BYE")["req"]
    for cmd, body in (("WRITE", {"chan": "jobs", "data": 1}),
                      ("SUB", {"chan": "events"}), ("CLAIM", {"chan": "jobs"}),
                      ("BYE", {})):
        assert r.err(cmd, body) == 401
    assert r.rpc("PING")[0] == "PONG"
    # docking again works
    r.hello("leaver")


def test_bye_ends_subscriptions(kernel):
    s = kernel.raw()
    s.hello("sub-then-bye", channels=["events"])
    s.ok("SUB", chan="events")
    s.ok("BYE")
    s.hello("sub-then-bye", channels=["events"])     # same conn, new session
    w = kernel.client("w", channels=["events"])
    w.write("events", "after bye")
    assert s.recv(0.3) is None


def test_bye_answers_waiting_claims_with_nothing(kernel):
    r = kernel.raw()
    r.hello("poller", channels=["jobs"])
    r.send([b"CLAIM", msgpack.packb(
        {"req": 77, "chan": "jobs", "wait_ms": 10000})])
    time.sleep(0.05)
    r.send([b"BYE", msgpack.packb({"req": 78})])
    got = {}
    for _ in range(2):
        cmd, body = r.recv()
        got[body["req"]] = (cmd, body)
    assert got[77][0] == "OK" and got[77][1]["msgs"] == []
    assert got[78][0] == "OK"


# ---- liveness ----------------------------------------------------------------

def test_silent_session_undocked_and_leases_released(kernel_factory):
    k = kernel_factory(config=FAST)
    a = k.raw()
    a.hello("sleepy", channels=["jobs"])
    a.ok("WRITE", chan="jobs", data="task")
    got = a.ok("CLAIM", chan="jobs", lease_ms=60000)["msgs"]
    assert got[0]["attempt"] == 1
    silent_since = time.monotonic()
    b = k.client("awake", channels=["jobs"])
    # well before 3 periods: still leased to sleepy
    assert b.claim("jobs") == []
    msgs = b.claim("jobs", wait_ms=3000)
    elapsed = time.monotonic() - silent_since
    assert len(msgs) == 1, "the silent session's lease was not released"
    assert msgs[0]["id"] == got[0]["id"] and msgs[0]["attempt"] == 2
    assert 0.55 <= elapsed < 2.0, elapsed
    # the silent connection's next command gets 401, saying why
    cmd, body = a.rpc("WRITE", chan="jobs", data=1)
    assert (cmd, body["code"]) == ("ERROR", 401)
    assert "silent for 3 heartbeat periods" in body["reason"], body
    assert a.rpc("PING")[0] == "PONG"


def test_401_after_the_kernel_ended_the_session_says_why(kernel):
    """A connection whose session the kernel ended hears why (killed,
    bye) in its next 401; one that never docked hears "send HELLO"."""
    fresh = kernel.raw()
    cmd, body = fresh.rpc("SUB", chan="events")
    assert body["reason"] == "not docked: send HELLO first"
    a = kernel.raw()
    a.hello("doomed")
    admin = kernel.client("admin-why", privileged=True, token=kernel.token)
    admin.ctl("kill", system="doomed")
    cmd, body = a.rpc("SUB", chan="events")
    assert (cmd, body["code"]) == ("ERROR", 401)
    assert "ended (killed)" in body["reason"], body
    b = kernel.raw()
    b.hello("leaver")
    b.ok("BYE")
    cmd, body = b.rpc("SUB", chan="events")
    assert "ended (bye)" in body["reason"], body


def test_silent_session_can_be_taken_over(kernel_factory):
    k = kernel_factory(config=FAST)
    a = k.raw()
    a.hello("phoenix")
    b = k.raw()
    assert b.err("HELLO", system="phoenix", version=1) == 409
    time.sleep(0.7)
    b.hello("phoenix")
    assert a.err("SUB", chan="events") == 401


def test_pinging_session_stays_docked(kernel_factory):
    k = kernel_factory(config=FAST)
    r = k.raw()
    r.hello("chatty", channels=["jobs"])
    r.ok("WRITE", chan="jobs", data=1)
    r.ok("CLAIM", chan="jobs", lease_ms=60000)
    other = k.client("other", channels=["jobs"])
    end = time.monotonic() + 1.5                  # 7.5 periods
    while time.monotonic() < end:
        assert r.rpc("PING")[0] == "PONG"
        time.sleep(0.1)
        assert other.claim("jobs") == []          # lease still held
    r.ok("WRITE", chan="jobs", data=2)
    b = k.raw()
    assert b.err("HELLO", system="chatty", version=1) == 409


def test_any_command_counts_as_activity(kernel_factory):
    k = kernel_factory(config=FAST)
    r = k.raw()
    r.hello("busy", channels=["jobs"])
    end = time.monotonic() + 1.2
    while time.monotonic() < end:
        r.ok("WRITE", chan="jobs", data=1)
        time.sleep(0.1)
    r.ok("WRITE", chan="jobs", data=1)


def test_long_poll_claim_keeps_the_session_live(kernel_factory):
    """A session waiting in a long-poll CLAIM is live though silent."""
    k = kernel_factory(config=FAST)
    r = k.raw()
    r.hello("long-poller", channels=["jobs"])
    t0 = time.monotonic()
    cmd, body = r.rpc("CLAIM", chan="jobs", wait_ms=1200)
    assert cmd == "OK" and body["msgs"] == []
    assert time.monotonic() - t0 >= 1.1
    r.ok("WRITE", chan="jobs", data=1)            # not 401
    b = k.raw()
    assert b.err("HELLO", system="long-poller", version=1) == 409


def test_heartbeat_lists_docked_systems(kernel_factory):
    k = kernel_factory(config=FAST)
    c = k.client("listed", channels=[])
    c.subscribe("heartbeat")
    other = k.raw()
    other.hello("also-listed")

    def beat_with(ids):
        m = c.recv(1.0)
        return m and set(ids) <= set(m["msg"]["data"]["systems"]) and m
    m = wait_until(lambda: beat_with(["listed", "also-listed",
                                      "kernel.heartbeat"]), 3)
    assert m["msg"]["from"] == "kernel.heartbeat"
    other.ok("BYE")
    wait_until(lambda: (lambda m: m and "also-listed" not in
                        m["msg"]["data"]["systems"])(c.recv(1.0)), 3)


def test_from_is_the_session_never_the_payload(kernel):
    w = kernel.raw()
    w.hello("real-writer", channels=["jobs", "events"])
    sub = kernel.client("reader", channels=["events"])
    sub.subscribe("events")
    w.ok("WRITE", chan="jobs", data={"from": "fake"}, **{"from": "fake"})
    w.ok("WRITE", chan="events", data=1, **{"from": "fake"})
    w.ok("SEND", to="reader", data=2, **{"from": "fake"})
    m = kernel.client("claimer", channels=["jobs"]).claim("jobs")[0]
    assert m["from"] == "real-writer" and m["data"] == {"from": "fake"}
    froms = {sub.recv(2.0)["msg"]["from"] for _ in range(2)}
    assert froms == {"real-writer"}


def test_gone_peer_is_undocked_when_a_send_fails(kernel):
    a = kernel.raw()
    a.hello("vanishing", channels=["events"])
    a.ok("SUB", chan="events")
    a.close()
    w = kernel.client("pub", channels=["events"])
    b = kernel.raw()

    def taken_over():
        w.write("events", "anyone there?")
        cmd, body = b.rpc("HELLO", system="vanishing", version=1)
        return cmd == "OK"
    # well within the 3 s silence timeout (heartbeat_ms 1000)
    t0 = time.monotonic()
    wait_until(taken_over, 2.0, interval=0.05, what="take-over")
    assert time.monotonic() - t0 < 2.0
