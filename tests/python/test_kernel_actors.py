"""The kernel actors against a real aaaxd: the action gate and approvals,
capabilities, lifecycle, the registries and policy reload (contract
sections 6-8, docs/SECURITY.md)."""

import os
import signal
import time

import pytest

import aaax
from conftest import wait_until

POLICY = """
return {
  heartbeat_ms = 200,
  ask_timeout_s = %(ask)d,
  lifecycle_rate = "%(lrate)s",
  channels = {
    { name = "orders", kind = "work-queue", durable = true },
    { name = "news", kind = "broadcast" },
    { name = "secret", kind = "broadcast" },
  },
  policy = {
    { subject = "agent-*", action = "fs.read", target = "*", effect = "allow" },
    { subject = "*", action = "fs.delete", target = "*", effect = "deny" },
    { subject = "agent-*", action = "net.fetch", target = "https://*", effect = "ask" },
    { subject = "agent-*", action = "tool.*", target = "*", effect = "allow", rate = "3/s" },
    { subject = "agent-*", action = "shell.run", target = "*", effect = "allow" },
    { subject = "agent-*", action = "shell.run", target = "rm*", effect = "ask" },
    { subject = "agent-*", action = "chan.write", target = "orders", effect = "allow" },
    { subject = "agent-*", action = "chan.claim", target = "orders", effect = "allow" },
    { subject = "agent-*", action = "chan.read", target = "news", effect = "allow" },
    { subject = "*", action = "chan.read", target = "secret", effect = "deny" },
    { subject = "op", action = "chan.write", target = "news", effect = "allow" },
  },
}
"""


def config(ask=300, lrate="100/s"):
    return POLICY % {"ask": ask, "lrate": lrate}


@pytest.fixture
def k(kernel_factory):
    return kernel_factory(config=config())


def admin(k, name="op"):
    return k.client(name, privileged=True, token=k.token)


def cap_req(c, **body):
    return c.kernel_request("kernel.capability_requests", body)


def lifecycle(a, **body):
    return a.kernel_request("kernel.lifecycle", body)


def approvals(a, **body):
    return a.kernel_request("kernel.approvals", body)


def mailbox_msgs(c, timeout=1.0, ack=True):
    """Pushed mailbox envelopes until none comes for `timeout` seconds
    (acknowledged unless ack is False: a paused system's ACK gets 423)."""
    out = []
    while True:
        p = c.recv(timeout)
        if p is None:
            return out
        if p.get("sub") == "@" + c.system:
            out.append(p["msg"])
            if ack:
                c.ack("@" + c.system, [p["msg"]["id"]])


# ---- the gate --------------------------------------------------------------

def test_gate_decisions_name_the_rule_and_the_audit_record(k):
    c = k.client("agent-1")
    allow = c.gate("fs.read", "/etc/hosts")
    assert allow["decision"] == "allow" and allow["rule"] == "rule#1"
    deny = c.gate("fs.delete", "/etc/hosts")
    assert deny["decision"] == "deny" and deny["rule"] == "rule#2"
    ask = c.gate("net.fetch", "https://example.com")
    assert ask["decision"] == "ask" and ask["rule"] == "rule#3"
    none = c.gate("launch.missiles", "moon")
    assert none["decision"] == "deny" and none["rule"] is None
    assert none["reason"] == "no rule allows it"
    ids = [int(r["audit_id"]) for r in (allow, deny, ask, none)]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_gate_deny_overrides_allow_and_ask_overrides_allow(k):
    c = k.client("agent-2")
    # fs.delete: only a deny matches; shell.run on rm*: allow and ask match
    assert c.gate("shell.run", "ls")["decision"] == "allow"
    r = c.gate("shell.run", "rm -rf /")
    assert r["decision"] == "ask" and r["rule"] == "rule#6"


def test_gate_subject_comes_from_the_session_not_the_body(k):
    c = k.client("intruder")
    r = c.kernel_request("kernel.gate", {"action": "fs.read", "target": "/x",
                                         "args": {}, "from": "agent-1",
                                         "subject": "agent-1"})
    assert r["decision"] == "deny"


def test_gate_rate_limit_denies_with_reason_rate(k):
    c = k.client("agent-3")
    got = [c.gate("tool.search", "q")["decision"] for _ in range(5)]
    assert got[:3] == ["allow"] * 3
    r = c.gate("tool.search", "q")
    assert r["decision"] == "deny" and r["reason"] == "rate"
    # another subject has its own window
    assert k.client("agent-4").gate("tool.search", "q")["decision"] == "allow"


def test_gate_malformed_requests_are_denied_and_answered(k):
    c = k.client("agent-5")
    for body in ({"target": "x"}, {"action": 7, "target": "x"},
                 {"action": "fs.read"}, {"action": "fs.read", "target": "x",
                                         "args": [1, 2]},
                 {"action": "a" * 300, "target": "x"}, "not a map"):
        r = c.kernel_request("kernel.gate", body)
        assert r["decision"] == "deny", body
        assert r["reason"], body


def test_gate_answers_many_requests_pipelined(k):
    c = k.client("agent-6")
    ids = [c.write("kernel.gate", {"action": "fs.read", "target": "/f%d" % i,
                                   "args": {"i": i}}) for i in range(200)]
    got = {}
    deadline = time.time() + 20
    while len(got) < len(ids) and time.time() < deadline:
        p = c.recv(1)
        if p and p["sub"] == "@agent-6":
            got[p["msg"]["corr"]] = p["msg"]["data"]
            c.ack("@agent-6", [p["msg"]["id"]])
    assert set(got) == set(ids)
    assert all(d["decision"] == "allow" for d in got.values())
    assert len({d["audit_id"] for d in got.values()}) == 200


# ---- approvals -----------------------------------------------------------

def test_approval_once_sends_a_follow_up_with_the_same_corr(k):
    c = k.client("agent-7")
    a = admin(k)
    rid = c.write("kernel.gate", {"action": "net.fetch",
                                  "target": "https://a.example", "args": {}})
    first = c.await_corr(rid)
    assert first["decision"] == "ask"
    pend = approvals(a, op="list")["pending"]
    assert any(p["audit_id"] == first["audit_id"] and p["subject"] == "agent-7"
               for p in pend)
    r = approvals(a, op="approve", audit_id=first["audit_id"], scope="once")
    assert r["ok"] is True
    follow = c.await_corr(rid)
    assert follow["decision"] == "allow"
    assert follow["audit_id"] == first["audit_id"]
    assert int(follow["approval_id"]) > int(first["audit_id"])
    # once: the next identical request asks again
    assert c.gate("net.fetch", "https://a.example")["decision"] == "ask"
    # and an answered ask cannot be approved twice
    again = approvals(a, op="approve", audit_id=first["audit_id"],
                      scope="once")
    assert again["ok"] is False


def test_approval_session_ends_when_the_system_undocks(k):
    c = k.client("agent-8")
    a = admin(k)
    ask = c.gate("net.fetch", "https://b.example")
    assert approvals(a, op="approve", audit_id=ask["audit_id"],
                     scope="session")["ok"]
    r = c.gate("net.fetch", "https://b.example")
    assert r["decision"] == "allow" and "session approval" in r["reason"]
    # another target still asks
    assert c.gate("net.fetch", "https://c.example")["decision"] == "ask"
    c.bye()
    c2 = k.client("agent-8")
    wait_until(lambda: c2.gate("net.fetch", "https://b.example")["decision"]
               == "ask", what="session approval ended")


def test_approval_always_persists_across_a_restart_and_can_be_revoked(
        kernel_factory):
    k = kernel_factory(config=config())
    c = k.client("agent-9")
    a = admin(k)
    ask = c.gate("net.fetch", "https://d.example")
    r = approvals(a, op="approve", audit_id=ask["audit_id"], scope="always")
    assert r["ok"] and r["approval_id"].startswith("apr_")
    before_restart = time.time()
    k.close_clients()
    k.stop()
    k.start()
    c = k.client("agent-9")
    assert c.gate("net.fetch", "https://d.example")["decision"] == "allow"
    a = admin(k)
    listed = approvals(a, op="list")["approvals"]
    assert [x["id"] for x in listed] == [r["approval_id"]]
    # when it was given, kept across the restart
    assert before_restart - 5 < listed[0]["ts"] <= before_restart
    assert listed[0]["scope"] == "always"
    assert approvals(a, op="revoke", id=r["approval_id"])["ok"]
    assert c.gate("net.fetch", "https://d.example")["decision"] == "ask"
    assert approvals(a, op="revoke", id=r["approval_id"])["ok"] is False


def test_operator_deny_sends_a_deny_follow_up(k):
    c = k.client("agent-10")
    a = admin(k)
    rid = c.write("kernel.gate", {"action": "net.fetch",
                                  "target": "https://e.example", "args": {}})
    ask = c.await_corr(rid)
    assert approvals(a, op="deny", audit_id=ask["audit_id"],
                     reason="not today")["ok"]
    follow = c.await_corr(rid)
    assert follow["decision"] == "deny" and "not today" in follow["reason"]


def test_an_unanswered_ask_times_out_with_a_deny(kernel_factory):
    k = kernel_factory(config=config(ask=1))
    c = k.client("agent-11")
    rid = c.write("kernel.gate", {"action": "net.fetch",
                                  "target": "https://f.example", "args": {}})
    assert c.await_corr(rid)["decision"] == "ask"
    follow = c.await_corr(rid, timeout=5)
    assert follow["decision"] == "deny"
    assert follow["reason"] == "approval timed out"


def test_approvals_need_a_privileged_session(k):
    c = k.client("agent-12")
    with pytest.raises(aaax.AaaxError) as e:
        c.write("kernel.approvals", {"op": "list"})
    assert e.value.code == 403


def test_deny_is_never_approved(k):
    a = admin(k)
    c = k.client("agent-13")
    d = c.gate("fs.delete", "/")
    r = approvals(a, op="approve", audit_id=d["audit_id"], scope="always")
    assert r["ok"] is False
    assert c.gate("fs.delete", "/")["decision"] == "deny"


# ---- capabilities --------------------------------------------------------

def test_capability_grant_gives_the_right_and_is_signed(k):
    c = k.client("agent-20")
    with pytest.raises(aaax.AaaxError) as e:
        c.subscribe("news")
    assert e.value.code == 403
    r = cap_req(c, op="grant", resource="chan:news", rights=["read"],
                ttl_s=60)
    assert r["granted"] is True, r
    cap = r["cap"]
    assert set(cap) == {"id", "subject", "resource", "rights", "expires",
                        "issuer", "sig"}
    assert cap["subject"] == "agent-20" and cap["rights"] == ["read"]
    assert cap["expires"] >= time.time() + 55
    with open(os.path.join(k.data, "kernel.pub")) as f:
        assert f.read().strip() == cap["issuer"]
    assert len(cap["sig"]) == 128
    c.subscribe("news")
    v = cap_req(c, op="verify", cap=cap)
    assert v["valid"] is True
    forged = dict(cap, rights=["read", "write"])
    v = cap_req(c, op="verify", cap=forged)
    assert v["valid"] is False and "signature" in v["reason"]
    forged = dict(cap, sig="00" * 64)
    assert cap_req(c, op="verify", cap=forged)["valid"] is False


def test_capability_refused_by_policy_names_why(k):
    c = k.client("agent-21")
    r = cap_req(c, op="grant", resource="chan:secret", rights=["read"],
                ttl_s=60)
    assert r["granted"] is False and "denied" in r["reason"]
    r = cap_req(c, op="grant", resource="chan:news", rights=["write"],
                ttl_s=60)
    assert r["granted"] is False
    for bad in ({"resource": "disk:/", "rights": ["read"]},
                {"resource": "chan:news", "rights": ["fly"]},
                {"resource": "chan:news", "rights": ["read"], "ttl_s": 0},
                {"resource": "chan:nosuch", "rights": ["read"]}):
        r = cap_req(c, op="grant", **bad)
        assert r["granted"] is False, bad
    with pytest.raises(aaax.AaaxError):
        c.subscribe("secret")


def test_capability_expires_within_a_heartbeat(k):
    c = k.client("agent-22")
    r = cap_req(c, op="grant", resource="chan:news", rights=["read"],
                ttl_s=1)
    assert r["granted"]
    c.subscribe("news")
    c.unsubscribe("news")
    end = r["cap"]["expires"] + 0.3
    while time.time() < end:      # stay live: heartbeat_ms is 200 here
        c.ping()
        time.sleep(0.1)
    with pytest.raises(aaax.AaaxError) as e:
        c.subscribe("news")
    assert e.value.code == 403
    assert cap_req(c, op="verify", cap=r["cap"])["valid"] is False


def test_capability_revoke_by_holder_or_privileged_only(k):
    c = k.client("agent-23")
    other = k.client("agent-24")
    r = cap_req(c, op="grant", resource="chan:news", rights=["read"],
                ttl_s=60)
    cid = r["cap"]["id"]
    assert cap_req(other, op="revoke", id=cid)["revoked"] is False
    assert [x["id"] for x in cap_req(c, op="list")["caps"]] == [cid]
    assert cap_req(other, op="list")["caps"] == []
    a = admin(k)
    assert cid in [x["id"] for x in cap_req(a, op="list")["caps"]]
    assert cap_req(c, op="revoke", id=cid)["revoked"] is True
    with pytest.raises(aaax.AaaxError):
        c.subscribe("news")
    r = cap_req(c, op="grant", resource="chan:news", rights=["read"],
                ttl_s=60)
    assert cap_req(a, op="revoke", id=r["cap"]["id"])["revoked"] is True


def test_capabilities_end_when_the_system_undocks_and_are_broadcast(k):
    a = admin(k)
    a.subscribe("kernel.capabilities")
    c = k.client("agent-25")
    r = cap_req(c, op="grant", resource="chan:news", rights=["read"],
                ttl_s=60)
    cid = r["cap"]["id"]
    c.bye()
    events = []
    deadline = time.time() + 5
    while time.time() < deadline and not any(
            e["event"] == "revoke" for e in events):
        p = a.recv(0.5)
        if p and p["sub"] == "kernel.capabilities":
            events.append(p["msg"]["data"])
    assert [e["event"] for e in events][:2] == ["grant", "revoke"]
    assert all(e["id"] == cid for e in events)
    c = k.client("agent-25")
    with pytest.raises(aaax.AaaxError):
        c.subscribe("news")
    assert cap_req(c, op="list")["caps"] == []


def test_capabilities_survive_a_restart_and_expired_ones_are_dropped(
        kernel_factory):
    k = kernel_factory(config=config())
    c = k.client("agent-26")
    keep = cap_req(c, op="grant", resource="chan:news", rights=["read"],
                   ttl_s=600)
    short = cap_req(c, op="grant", resource="chan:orders", rights=["claim"],
                    ttl_s=1)
    assert keep["granted"] and short["granted"]
    k.close_clients()
    k.stop()                       # SIGTERM: the system did not undock itself
    time.sleep(1.2)
    k.start()
    c = k.client("agent-26")
    c.subscribe("news")
    assert [x["id"] for x in cap_req(c, op="list")["caps"]] == \
        [keep["cap"]["id"]]


def test_action_capability_turns_ask_into_allow_but_not_deny(k):
    c = k.client("agent-27")
    assert c.gate("shell.run", "rm x")["decision"] == "ask"
    r = cap_req(c, op="grant", resource="action:shell.run", ttl_s=60)
    assert r["granted"] is True and r["cap"]["rights"] == ["invoke"]
    g = c.gate("shell.run", "rm x")
    assert g["decision"] == "allow" and r["cap"]["id"] in g["reason"]
    # no capability for an action the policy does not allow on "*"
    assert cap_req(c, op="grant", resource="action:fs.delete",
                   ttl_s=60)["granted"] is False
    assert cap_req(c, op="grant", resource="action:net.fetch",
                   ttl_s=60)["granted"] is False


# ---- lifecycle -----------------------------------------------------------

def test_lifecycle_list_describes_every_docked_system(k):
    a = admin(k)
    c = k.client("agent-30", channels=["orders"])
    c.write("orders", {"n": 1})
    r = lifecycle(a, op="list")
    assert r["ok"] is True
    by_id = {s["id"]: s for s in r["systems"]}
    assert {"kernel.gate", "kernel.capability", "kernel.lifecycle",
            "kernel.heartbeat", "op", "agent-30"} <= set(by_id)
    s = by_id["agent-30"]
    assert s["kind"] == "remote" and s["state"] == "docked"
    assert s["privileged"] is False and s["msgs_in"] >= 1
    assert {"since", "msgs_out", "leases"} <= set(s)
    assert by_id["op"]["privileged"] is True
    assert by_id["kernel.gate"]["kind"] == "kernel"


def test_pause_blocks_writes_and_deliveries_then_resume(k):
    a = admin(k)
    c = k.client("agent-31", channels=["orders", "news"])
    c.subscribe("news")
    assert lifecycle(a, op="pause", target="agent-31")["ok"]
    sig = mailbox_msgs(c, 0.5, ack=False)
    assert [m["data"]["signal"] for m in sig] == ["STOP"]
    with pytest.raises(aaax.AaaxError) as e:
        c.write("orders", {"n": 1})
    assert e.value.code == 423
    a.send("agent-31", {"hello": 1})
    assert c.recv(0.5) is None        # nothing is delivered while paused
    assert lifecycle(a, op="resume", target="agent-31")["ok"]
    got = mailbox_msgs(c, 0.5)
    datas = [m["data"] for m in got]
    assert {"hello": 1} in datas
    assert any(d.get("signal") == "CONT" for d in datas)
    c.write("orders", {"n": 2})


def test_stop_sends_term_then_undocks_after_the_grace_period(k):
    a = admin(k)
    c = k.client("agent-32")
    r = lifecycle(a, op="stop", target="agent-32", grace_ms=300,
                  reason="maintenance")
    assert r["ok"] is True
    sig = mailbox_msgs(c, 0.3)
    assert sig and sig[0]["data"]["signal"] == "TERM"
    assert "maintenance" in sig[0]["data"]["reason"]
    assert sig[0]["from"] == "kernel.lifecycle"
    time.sleep(0.6)
    with pytest.raises(aaax.AaaxError) as e:
        c.write("orders", {"n": 1})
    assert e.value.code == 401


def test_kill_undocks_releases_leases_and_revokes(k):
    a = admin(k)
    w = k.client("agent-33", channels=["orders"])
    cap = cap_req(w, op="grant", resource="chan:news", rights=["read"],
                  ttl_s=60)
    assert cap["granted"]
    w.write("orders", {"job": 1})
    msgs = w.claim("orders", max=1, lease_ms=60000)
    assert len(msgs) == 1
    assert lifecycle(a, op="kill", target="agent-33")["ok"]
    with pytest.raises(aaax.AaaxError) as e:
        w.write("orders", {"n": 1})
    assert e.value.code == 401
    other = k.client("agent-34", channels=["orders"])
    again = other.claim("orders", max=1, wait_ms=2000)
    assert again and again[0]["data"] == {"job": 1}
    assert again[0]["attempt"] == 2
    w2 = k.client("agent-33")
    with pytest.raises(aaax.AaaxError):
        w2.subscribe("news")


def test_lifecycle_refuses_kernel_actors_self_unknown_and_apps(k):
    a = admin(k)
    assert lifecycle(a, op="kill", target="kernel.gate")["ok"] is False
    assert lifecycle(a, op="pause", target="op")["ok"] is False
    assert lifecycle(a, op="pause", target="nobody")["ok"] is False
    assert lifecycle(a, op="start", target="echo")["ok"] is False
    assert lifecycle(a, op="explode", target="x")["ok"] is False
    c = k.client("agent-35")
    with pytest.raises(aaax.AaaxError) as e:
        c.write("kernel.lifecycle", {"op": "kill", "target": "op"})
    assert e.value.code == 403


def test_lifecycle_commands_are_rate_limited_per_caller(kernel_factory):
    k = kernel_factory(config=config(lrate="3/s"))
    a = admin(k, "op-a")
    b = admin(k, "op-b")
    k.client("agent-36")
    got = [lifecycle(a, op="resume", target="agent-36")["ok"]
           for _ in range(4)]
    assert got == [True, True, True, False]
    assert lifecycle(a, op="resume", target="agent-36")["reason"] == "rate"
    assert lifecycle(b, op="resume", target="agent-36")["ok"] is True
    assert lifecycle(a, op="list")["ok"] is True     # list is not limited


# ---- registries, events, policy reload ----------------------------------

def test_kernel_policy_carries_the_digest_and_reload_publishes_it(
        kernel_factory):
    k = kernel_factory(config=config())
    a = admin(k)
    a.subscribe("kernel.policy", since="")
    first = a.recv(2)["msg"]["data"]
    assert first["version"] == 1 and len(first["digest"]) == 64
    assert first["rules"] == 11
    with open(k.config_path) as f:
        text = f.read()
    with open(k.config_path, "w") as f:
        f.write(text.replace(
            '{ subject = "agent-*", action = "fs.read", target = "*", '
            'effect = "allow" },',
            '{ subject = "agent-*", action = "fs.read", target = "*", '
            'effect = "deny" },'))
    r = a.ctl("reload")
    assert r["version"] == 2 and r["digest"] != first["digest"]
    second = a.recv(2)["msg"]["data"]
    assert second["digest"] == r["digest"]
    c = k.client("agent-40")
    wait_until(lambda: c.gate("fs.read", "/x")["decision"] == "deny",
               what="the gate uses the new policy")


def test_a_bad_policy_reload_names_file_and_line_and_keeps_the_old(
        kernel_factory):
    k = kernel_factory(config=config())
    a = admin(k)
    with open(k.config_path) as f:
        good = f.read()
    lines = good.split("\n")
    n = next(i for i, l in enumerate(lines) if "fs.delete" in l)
    lines[n] = lines[n].replace('"deny"', '"nope"')
    with open(k.config_path, "w") as f:
        f.write("\n".join(lines))
    with pytest.raises(aaax.AaaxError) as e:
        a.ctl("reload")
    assert e.value.code == 400
    assert "%s:%d:" % (k.config_path, n + 1) in e.value.reason
    c = k.client("agent-41")
    assert c.gate("fs.delete", "/")["decision"] == "deny"
    assert c.gate("fs.read", "/")["decision"] == "allow"


def test_sighup_reloads_the_policy_and_regrants_sessions(kernel_factory):
    k = kernel_factory(config=config())
    c = k.client("agent-42", channels=["orders"])
    c.write("orders", {"n": 1})
    with open(k.config_path) as f:
        text = f.read()
    with open(k.config_path, "w") as f:
        f.write(text.replace(
            '{ subject = "agent-*", action = "chan.write", target = "orders",'
            ' effect = "allow" },', ''))
    a = admin(k)
    a.subscribe("kernel.policy")
    k.proc.send_signal(signal.SIGHUP)
    p = a.recv(5)
    assert p and p["msg"]["data"]["version"] == 2
    assert p["msg"]["data"]["by"] == "SIGHUP"
    with pytest.raises(aaax.AaaxError) as e:
        c.write("orders", {"n": 2})
    assert e.value.code == 403


def test_kernel_systems_reports_dock_and_undock(k):
    a = admin(k)
    a.subscribe("kernel.systems")
    c = k.client("agent-43")
    c.bye()
    ev = []
    deadline = time.time() + 3
    while time.time() < deadline and len(ev) < 2:
        p = a.recv(0.5)
        # Only agent-43's: the example apps of the embedded defaults may
        # still be docking when the subscription starts.
        if (p and p["sub"] == "kernel.systems"
                and p["msg"]["data"].get("system") == "agent-43"):
            ev.append(p["msg"]["data"])
    assert [(e["event"], e["system"]) for e in ev] == [
        ("dock", "agent-43"), ("undock", "agent-43")]
    assert ev[0]["session"] == ev[1]["session"]
    assert ev[0]["kind"] == "remote" and ev[0]["privileged"] is False
    c2 = k.client("agent-44")
    with pytest.raises(aaax.AaaxError) as e:
        c2.subscribe("kernel.systems")
    assert e.value.code == 403


# ---- the audit log fails closed ------------------------------------------

def test_gate_fails_closed_when_the_audit_log_is_full(kernel_factory):
    k = kernel_factory(config=config().replace(
        "heartbeat_ms = 200,", "heartbeat_ms = 200, audit_map_mb = 1,"))
    c = k.client("agent-50")
    big = {"blob": "x" * 15000}
    seen = set()
    for i in range(400):
        r = c.gate("fs.read", "/f", args=big)
        seen.add(r["decision"])
        if r["decision"] == "deny":
            assert "audit log" in r["reason"] and r["audit_id"] is None
            break
    assert seen == {"allow", "deny"}
    # the kernel keeps serving
    c.ping()


def test_a_revoked_read_right_ends_the_subscription(k):
    c = k.client("agent-60")
    a = k.client("op", privileged=True, token=k.token, channels=["news"])
    r = cap_req(c, op="grant", resource="chan:news", rights=["read"],
                ttl_s=60)
    c.subscribe("news")
    a.write("news", {"n": 1})
    p = c.recv(2)
    assert p["msg"]["data"] == {"n": 1}
    assert cap_req(a, op="revoke", id=r["cap"]["id"])["revoked"] is True
    p = c.recv(2)
    while p and p.get("sub") == "@agent-60":
        p = c.recv(2)
    assert p == {"dropped": "news", "reason": p["reason"]}
    assert "read right" in p["reason"]
    a.write("news", {"n": 2})
    assert c.recv(0.5) is None
