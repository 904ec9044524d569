"""The Python client (clients/python/aaax.py) itself, against a real
kernel: docking, reply matching, pushes, errors, liveness."""

import os
import pydoc
import subprocess
import sys
import time

import pytest

from conftest import ROOT

import aaax

FAST = "return { heartbeat_ms = 200 }"


def test_module_documents_itself():
    text = pydoc.render_doc(aaax, renderer=pydoc.plaintext)
    for name in ("Client", "AaaxError", "read_token", "dock", "write",
                 "claim", "recv", "subscribe", "PING", "heartbeat_ms"):
        assert name in text
    for fn in (aaax.Client.write, aaax.Client.send, aaax.Client.claim,
               aaax.Client.ack, aaax.Client.nack, aaax.Client.subscribe,
               aaax.Client.unsubscribe, aaax.Client.recv, aaax.Client.ping,
               aaax.Client.bye, aaax.Client.stat, aaax.Client.ctl,
               aaax.Client.call, aaax.Client.dock, aaax.Client.close,
               aaax.read_token):
        assert fn.__doc__ and len(fn.__doc__) > 20, fn


def test_importable_with_pythonpath_only(kernel):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "clients", "python"))
    code = ("import aaax; c = aaax.Client(%r, system='script', "
            "channels=['jobs']); c.dock(); print(c.write('jobs', 1)); "
            "c.bye(); c.close()" % kernel.endpoint)
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd="/",
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.strip()) == 26


def test_dock_keeps_what_hello_says(kernel):
    c = kernel.client("keeper", channels=["jobs", "events"])
    assert c.docked
    assert len(c.session) == 32 and int(c.session, 16) >= 0
    assert c.kernel.startswith("aaax-")
    assert c.heartbeat_ms == 1000
    assert {"write:jobs", "claim:jobs", "read:events", "write:events",
            "read:@keeper", "read:heartbeat"} <= set(c.grants)


def test_context_manager_docks_and_says_bye(kernel):
    with aaax.Client(kernel.endpoint, system="cm", channels=["jobs"]) as c:
        assert c.docked
        c.write("jobs", "x")
        c.claim("jobs", lease_ms=60000)
    assert not c.docked and c.socket is None
    # BYE released the lease at once: another session gets attempt 2
    other = kernel.client("cm2", channels=["jobs"])
    msgs = other.claim("jobs")
    assert len(msgs) == 1 and msgs[0]["attempt"] == 2
    # and the id is free again
    again = kernel.client("cm")
    assert again.docked


def test_errors_raise_aaaxerror_with_int_code(kernel):
    c = kernel.client()
    with pytest.raises(aaax.AaaxError) as e:
        c.write("jobs", 1)
    assert e.value.code == 401 and isinstance(e.value.code, int)
    assert e.value.reason
    c.dock("errs", channels=["jobs"])
    with pytest.raises(aaax.AaaxError) as e:
        c.write("nope", 1)
    assert e.value.code == 404
    with pytest.raises(aaax.AaaxError) as e:
        c.call("FROB")
    assert e.value.code == 400
    assert "404" in str(aaax.AaaxError(404, "x"))


def test_timeout_raises_aaaxtimeout(kernel):
    c = kernel.client("slow", channels=["jobs"], timeout=0.3)
    req = c.request("CLAIM", chan="jobs", wait_ms=2000)
    t0 = time.monotonic()
    with pytest.raises(aaax.AaaxTimeout):
        c.reply(req)
    assert 0.25 < time.monotonic() - t0 < 2
    # the late reply is dropped; the client keeps working
    time.sleep(0.1)
    assert isinstance(c.ping(), float)
    assert isinstance(aaax.AaaxTimeout("x"), TimeoutError)


def test_pipelined_requests_matched_by_req(kernel):
    c = kernel.client("pipe", channels=["jobs"])
    reqs = [c.request("WRITE", chan="jobs", data=i) for i in range(100)]
    pings = [c.request("PING") for _ in range(10)]
    ids = {}
    for r in reversed(reqs):          # collected in the reverse order
        cmd, body = c.reply(r)
        assert cmd == "OK" and body["req"] == r
        ids[r] = body["id"]
    for p in pings:
        assert c.reply(p)[0] == "PONG"
    ordered = [ids[r] for r in reqs]
    assert ordered == sorted(ordered)
    msgs = c.claim("jobs", max=1000)
    assert [m["data"] for m in msgs] == list(range(100))


def test_pushes_during_a_call_are_kept_for_recv(kernel):
    c = kernel.client("listener", channels=["events"])
    w = kernel.client("talker", channels=["events"])
    c.subscribe("events")
    ids = [w.write("events", i) for i in range(5)]
    # this call reads the pushes while it waits for its PONG
    c.ping()
    got = [c.recv(1.0) for _ in range(5)]
    assert [g["msg"]["id"] for g in got] == ids
    assert all(g["sub"] == "events" for g in got)
    assert c.recv(0.1) is None


def test_recv_returns_none_on_timeout(kernel):
    c = kernel.client("idle")
    t0 = time.monotonic()
    assert c.recv(0.2) is None
    assert 0.15 < time.monotonic() - t0 < 1.0
    assert c.recv(0) is None


def test_ack_accepts_ids_or_envelopes(kernel):
    c = kernel.client("acker", channels=["jobs"])
    for i in range(3):
        c.write("jobs", i)
    m = c.claim("jobs", max=3)
    assert c.ack("jobs", m[0]["id"]) == 1
    assert c.ack("jobs", [m[1]]) == 1
    assert c.nack("jobs", m[2]) == 1


def test_recv_pings_to_stay_docked(kernel_factory):
    k = kernel_factory(config=FAST)
    c = k.client("patient", channels=["events"])
    assert c.heartbeat_ms == 200
    c.subscribe("events")
    assert c.recv(1.5) is None        # 7 heartbeat periods
    assert c.docked
    w = k.client("poster", channels=["events"])
    wid = w.write("events", "late")
    got = c.recv(2.0)
    assert got and got["msg"]["id"] == wid


def test_long_claim_pings_to_stay_docked(kernel_factory):
    k = kernel_factory(config=FAST)
    c = k.client("waiter", channels=["jobs"])
    assert c.claim("jobs", wait_ms=1200) == []
    c.write("jobs", 1)                 # still docked: no 401
    assert len(c.claim("jobs")) == 1


def test_without_calls_the_session_times_out(kernel_factory):
    k = kernel_factory(config=FAST)
    c = k.client("forgetful", channels=["jobs"])
    time.sleep(1.0)                    # no thread pings for us
    with pytest.raises(aaax.AaaxError) as e:
        c.write("jobs", 1)
    assert e.value.code == 401
    assert not c.docked
    c.dock()
    c.write("jobs", 1)


def test_keepalive(kernel_factory):
    k = kernel_factory(config=FAST)
    c = k.client("kept", channels=["jobs"])
    for _ in range(12):
        time.sleep(0.09)
        c.keepalive()
    c.write("jobs", 1)


def test_stat_and_ctl(kernel):
    admin = kernel.client("admin", privileged=True, token=kernel.token)
    s = admin.stat()
    assert "req" not in s and s["heartbeat"]["state"] == "running"
    kernel.client("victim")
    assert admin.ctl("pause", "victim") == {"system": "victim",
                                           "state": "paused"}


def test_read_token(kernel):
    assert aaax.read_token(kernel.data) == kernel.token
    c = kernel.client("root", endpoint=kernel.ipc, privileged=True,
                      token=aaax.read_token(kernel.data))
    assert "write:kernel.lifecycle" in c.grants


def test_readme_heartbeat_snippet_works(kernel):
    import re
    text = open(os.path.join(ROOT, "clients", "python", "README.md")).read()
    snippet = [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
               if "heartbeat" in b and "SUB" in b][0]
    assert len(snippet.strip().splitlines()) == 5
    code = snippet.replace("tcp://127.0.0.1:5671", kernel.tap).replace(
        "while True:", "for _ in range(1):")
    out = []
    g = {"print": out.append}
    try:
        exec(compile(code, "README.md", "exec"), g)
    finally:
        if "s" in g:
            g["s"].close(0)
            g["s"].context.term()
    assert out and out[0]["state"] == "running"
    assert out[0]["kernel_id"].startswith("aaax-")
