"""The STAT and CTL extensions (docs/PROTOCOL.md section 4 STAT, CTL)."""

import os
import time

import msgpack
import pytest

import aaax
from conftest import wait_until


@pytest.fixture
def admin(kernel):
    """A privileged client, once the kernel's heartbeat actor has docked
    (it docks a moment after the kernel answers PING)."""
    a = kernel.client("admin", privileged=True, token=kernel.token)
    wait_until(lambda: "kernel.heartbeat" in
               a.stat()["heartbeat"]["systems"], 5, what="heartbeat actor")
    return a


# ---- STAT --------------------------------------------------------------------

def test_stat_is_privileged(kernel):
    c = kernel.client("plain")
    with pytest.raises(aaax.AaaxError) as e:
        c.stat()
    assert e.value.code == 403


def test_stat_reply(kernel, admin):
    w = kernel.client("w", channels=["jobs", "events"])
    w.write("jobs", 1)
    w.write("events", 2)
    s = admin.stat()
    assert set(s) >= {"heartbeat", "version", "data", "counters", "store",
                      "channels", "sessions"}
    hb = s["heartbeat"]
    assert set(hb) >= {"kernel_id", "timestamp", "uptime_s", "state",
                       "systems", "capabilities_active", "channels"}
    assert hb["kernel_id"] == admin.kernel and hb["state"] == "running"
    assert {"admin", "w", "kernel.heartbeat"} <= set(hb["systems"])
    assert hb["channels"]["jobs"] == 1 and hb["channels"]["events"] == 1
    assert os.path.realpath(s["data"]) == os.path.realpath(kernel.data)
    assert s["version"].count(".") == 2
    assert set(s["counters"]) >= {"requests", "errors", "published",
                                  "dropped_subscribers", "known_systems",
                                  "idempotency_keys"}
    assert s["counters"]["known_systems"] >= 3
    assert set(s["store"]) >= {"commits", "ops", "failures", "max_batch",
                               "commit_us"}
    assert s["store"]["commits"] >= 1 and s["store"]["failures"] == 0
    jobs = s["channels"]["jobs"]
    assert jobs["kind"] == "work-queue" and jobs["depth"] == 1
    ev = s["channels"]["events"]
    assert ev["kind"] == "broadcast" and ev["public"] is True
    assert ev["retained"] == 1 and ev["published"] >= 1
    assert "jobs.dlq" in s["channels"] and "kernel.gate" in s["channels"]
    sess = {x["system"]: x for x in s["sessions"]}
    assert sess["admin"]["privileged"] is True
    assert sess["w"]["privileged"] is False and sess["w"]["paused"] is False
    assert sess["kernel.heartbeat"]["kernel"] is True


def test_stat_counts_errors(kernel, admin):
    before = admin.stat()["counters"]["errors"]
    r = kernel.raw()
    r.send([b"junk"])
    r.recv()
    assert admin.stat()["counters"]["errors"] > before


# ---- CTL ---------------------------------------------------------------------

def test_ctl_is_privileged(kernel):
    kernel.client("target")
    c = kernel.client("plain")
    with pytest.raises(aaax.AaaxError) as e:
        c.ctl("pause", "target")
    assert e.value.code == 403


def test_ctl_errors(kernel, admin):
    kernel.client("target")
    for op, system, code in (("pause", "nobody", 404),
                             ("explode", "target", 400),
                             ("pause", "admin", 403),
                             ("kill", "kernel.heartbeat", 403)):
        with pytest.raises(aaax.AaaxError) as e:
            admin.ctl(op, system)
        assert e.value.code == code, (op, system)


def test_pause_refuses_commands_with_423(kernel, admin):
    k = kernel
    other = k.client("other", channels=["jobs"])
    wid = other.write("jobs", 1)
    p = k.raw()
    p.hello("paused-one", channels=["jobs", "events"])
    leased = p.ok("CLAIM", chan="jobs", lease_ms=60000)["msgs"]
    assert [m["id"] for m in leased] == [wid]
    assert admin.ctl("pause", "paused-one")["state"] == "paused"
    for cmd, body in (("WRITE", {"chan": "jobs", "data": 1}),
                      ("SEND", {"to": "other", "data": 1}),
                      ("SUB", {"chan": "events"}),
                      ("CLAIM", {"chan": "jobs"}),
                      ("ACK", {"chan": "jobs", "ids": [wid]}),
                      ("NACK", {"chan": "jobs", "ids": [wid]})):
        assert p.err(cmd, body) == 423, cmd
    assert p.rpc("PING")[0] == "PONG"
    assert p.ok("UNSUB", chan="events")["req"]
    # it keeps its leases while paused
    assert other.claim("jobs") == []
    assert admin.stat()["sessions"] and any(
        x["system"] == "paused-one" and x["paused"] and x["leases"] == 1
        for x in admin.stat()["sessions"])
    assert admin.ctl("resume", "paused-one")["state"] == "docked"
    assert p.ok("ACK", chan="jobs", ids=[wid])["acked"] == 1


def test_bye_is_answered_while_paused(kernel, admin):
    p = kernel.raw()
    p.hello("pb")
    admin.ctl("pause", "pb")
    assert p.rpc("BYE")[0] == "OK"
    assert p.err("WRITE", chan="jobs", data=1) == 401


def test_pause_belongs_to_the_system(kernel, admin):
    p = kernel.client("sticky", channels=["jobs"])
    admin.ctl("pause", "sticky")
    p.bye()
    p.dock()
    with pytest.raises(aaax.AaaxError) as e:
        p.write("jobs", 1)
    assert e.value.code == 423
    admin.ctl("resume", "sticky")
    p.write("jobs", 1)


def test_nothing_delivered_while_paused_resume_delivers(kernel, admin):
    k = kernel
    p = k.client("sleeper", channels=["events", "jobs"])
    p.subscribe("events")
    sender = k.client("sender", channels=["events"])
    admin.ctl("pause", "sleeper")
    mid = sender.send("sleeper", "while paused")
    sender.write("events", "broadcast while paused")
    assert p.recv(0.4) is None
    admin.ctl("resume", "sleeper")
    m = p.recv(2.0)
    assert m is not None and m["sub"] == "@sleeper"
    assert m["msg"]["id"] == mid
    # and after resume, broadcasts flow again
    bid = sender.write("events", "after resume")
    while True:
        m = p.recv(2.0)
        assert m is not None
        if m["sub"] == "events":
            break
    assert m["msg"]["id"] == bid


def test_paused_long_poll_gets_nothing_resume_serves_it(kernel, admin):
    k = kernel
    p = k.client("poller", channels=["jobs"])
    w = k.client("w", channels=["jobs"])
    req = p.request("CLAIM", chan="jobs", wait_ms=5000)
    time.sleep(0.1)
    admin.ctl("pause", "poller")
    wid = w.write("jobs", 1)
    time.sleep(0.3)
    other = k.client("other", channels=["jobs"])
    got = other.claim("jobs")                 # the paused waiter got nothing
    assert [m["id"] for m in got] == [wid]
    other.nack("jobs", got)
    admin.ctl("resume", "poller")
    msgs = p.reply(req, timeout=6)[1]["msgs"]
    assert [m["id"] for m in msgs] == [wid]


def test_kill_undocks(kernel, admin):
    k = kernel
    v = k.raw()
    v.hello("victim", channels=["jobs"])
    v.ok("WRITE", chan="jobs", data=1)
    v.ok("CLAIM", chan="jobs", lease_ms=60000)
    r = admin.ctl("kill", "victim")
    assert r["system"] == "victim" and r["state"] == "undocked"
    assert v.err("WRITE", chan="jobs", data=1) == 401
    # leases released at once
    got = k.client("heir", channels=["jobs"]).claim("jobs")
    assert len(got) == 1 and got[0]["attempt"] == 2
    # it may dock again
    v.hello("victim")


def test_kill_answers_a_waiting_claim(kernel, admin):
    v = kernel.raw()
    v.hello("waiting-victim", channels=["jobs"])
    v.send([b"CLAIM", msgpack.packb({"req": 5, "chan": "jobs",
                                     "wait_ms": 10000})])
    time.sleep(0.1)
    admin.ctl("kill", "waiting-victim")
    cmd, body = v.reply(req=5)
    assert cmd == "OK" and body["msgs"] == []
