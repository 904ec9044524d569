"""The kernel channels of contract section 6 and the replies of section 7.

The actors' behaviour is tested in depth in test_kernel_actors.py (the
loader's, kernel.loader, in test_apps.py)."""

import pytest

import aaax

KERNEL_CHANNELS = {
    "heartbeat": ("broadcast", True),
    "kernel.capabilities": ("broadcast", False),
    "kernel.modules": ("broadcast", False),
    "kernel.policy": ("broadcast", False),
    "kernel.capability_requests": ("work-queue", None),
    "kernel.gate": ("work-queue", None),
    "kernel.loader": ("work-queue", None),
    "kernel.lifecycle": ("work-queue", None),
    "kernel.systems": ("broadcast", False),
    "kernel.approvals": ("work-queue", None),
}

POLICY = """
return {
  policy = {
    { subject = "*", action = "fs.delete", target = "*", effect = "deny" },
    { subject = "*", action = "net.fetch", target = "https://*", effect = "allow" },
  },
}
"""

def test_kernel_channels_exist_with_their_kind_and_visibility(kernel):
    admin = kernel.client("admin", privileged=True, token=kernel.token)
    chans = admin.stat()["channels"]
    for name, (kind, public) in KERNEL_CHANNELS.items():
        assert name in chans, name
        assert chans[name]["kind"] == kind, name
        if kind == "broadcast":
            assert chans[name]["public"] is public, name
        else:
            assert name + ".dlq" in chans


def test_common_grants_work(kernel):
    c = kernel.client("anyone")
    c.write("kernel.capability_requests", {"op": "list"})
    c.write("kernel.gate", {"action": "fs.read", "target": "/tmp/x",
                            "args": {}})
    c.subscribe("heartbeat")
    c.subscribe("@anyone")
    for chan in ("kernel.loader", "kernel.lifecycle"):
        with pytest.raises(aaax.AaaxError) as e:
            c.write(chan, {"op": "list"})
        assert e.value.code == 403, chan
    for chan in ("kernel.capabilities", "kernel.modules", "kernel.policy"):
        with pytest.raises(aaax.AaaxError) as e:
            c.subscribe(chan)
        assert e.value.code == 403, chan
    for chan in ("kernel.gate", "kernel.lifecycle"):
        with pytest.raises(aaax.AaaxError) as e:
            c.claim(chan)
        assert e.value.code == 403, chan


def test_privileged_grants_work(kernel):
    c = kernel.client("root", privileged=True, token=kernel.token)
    c.write("kernel.loader", {"op": "list"})
    c.write("kernel.lifecycle", {"op": "list"})
    for chan in ("kernel.capabilities", "kernel.modules", "kernel.policy"):
        c.subscribe(chan)


def reply_to(c, req_id, timeout=1.0):
    while True:
        m = c.recv(timeout)
        if m is None:
            return None
        if m["sub"] == "@" + c.system and m["msg"]["corr"] == req_id:
            c.ack("@" + c.system, [m["msg"]["id"]])
            return m["msg"]


def test_gate_request_answered_in_the_mailbox(kernel_factory):
    k = kernel_factory(config=POLICY)
    c = k.client("agent-1")
    rid = c.write("kernel.gate", {"action": "fs.delete", "target": "/etc",
                                  "args": {}})
    r = reply_to(c, rid)
    assert r is not None, "no reply in the mailbox"
    assert r["from"].startswith("kernel.") and r["to"] == "agent-1"
    assert r["data"]["decision"] == "deny"
    assert {"reason", "rule", "audit_id"} <= set(r["data"])


def test_capability_request_answered_in_the_mailbox(kernel):
    c = kernel.client("agent-2")
    rid = c.write("kernel.capability_requests", {"op": "list"})
    r = reply_to(c, rid)
    assert r is not None, "no reply in the mailbox"


def test_lifecycle_list_answered_in_the_mailbox(kernel):
    c = kernel.client("root", privileged=True, token=kernel.token)
    rid = c.write("kernel.lifecycle", {"op": "list"})
    r = reply_to(c, rid)
    assert r is not None, "no reply in the mailbox"
    assert r["data"]["ok"] is True and "root" in str(r["data"]["systems"])


def test_loader_list_answered_in_the_mailbox(kernel):
    c = kernel.client("root", privileged=True, token=kernel.token)
    rid = c.write("kernel.loader", {"op": "list"})
    r = reply_to(c, rid, timeout=5.0)
    assert r is not None, "no reply in the mailbox"
    assert r["from"] == "kernel.loader" and r["to"] == "root"
    assert r["data"]["ok"] is True and "modules" in r["data"]
    assert isinstance(r["data"]["modules"], list)
