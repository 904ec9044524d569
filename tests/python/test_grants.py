"""Grants at HELLO and the policy behind them: globs, deny over ask over
allow, nothing matching is a deny, rate limits (contract sections 4, 8;
docs/PROTOCOL.md section 4 HELLO, WRITE)."""

import time

import pytest

import aaax

POLICY = """
return {
  channels = {
    { name = "orders", kind = "work-queue" },
    { name = "logs", kind = "work-queue" },
    { name = "news", kind = "broadcast", visibility = "public", retain = 10 },
    { name = "secret", kind = "broadcast" },
    { name = "limited", kind = "work-queue" },
    { name = "minute", kind = "work-queue" },
  },
  policy = {
    { subject = "worker-*", action = "chan.claim", target = "orders*", effect = "allow" },
    { subject = "*",        action = "chan.write", target = "orders",  effect = "allow" },
    { subject = "*",        action = "chan.read",  target = "news",    effect = "allow" },
    { subject = "editor",   action = "chan.write", target = "news",    effect = "allow" },
    { subject = "*",        action = "chan.write", target = "logs",    effect = "allow" },
    { subject = "*",        action = "chan.claim", target = "logs",    effect = "allow" },
    { subject = "evil*",    action = "chan.write", target = "logs",    effect = "deny" },
    { subject = "agent-*",  action = "chan.read",  target = "secret",  effect = "ask" },
    { subject = "agent-2",  action = "chan.read",  target = "secret",  effect = "allow" },
    { subject = "spy",      action = "chan.read",  target = "secret",  effect = "allow" },
    { subject = "*",        action = "chan.write", target = "limited", effect = "allow", rate = "5/s" },
    { subject = "*",        action = "chan.claim", target = "limited", effect = "allow" },
    { subject = "*",        action = "chan.write", target = "minute",  effect = "allow", rate = "3/m" },
    { subject = "*",        action = "chan.write", target = "@boss",   effect = "deny" },
    { subject = "*",        action = "fs.delete",  target = "*",       effect = "deny" },
  },
}
"""


@pytest.fixture
def k(kernel_factory):
    return kernel_factory(config=POLICY)


def grants(k, system, channels):
    r = k.raw()
    return set(r.hello(system, channels=channels)["grants"]), r


def chan_grants(gs):
    """Grants other than the common ones and the own mailbox."""
    return {g for g in gs if not g.startswith("read:@")
            and g not in ("read:heartbeat", "write:kernel.capability_requests",
                          "write:kernel.gate")}


def test_listed_channels_get_exactly_what_policy_allows(k):
    gs, _ = grants(k, "worker-1", ["orders", "news", "logs", "secret",
                                   "limited", "nope"])
    assert chan_grants(gs) == {"write:orders", "claim:orders", "read:news",
                               "write:logs", "claim:logs", "write:limited",
                               "claim:limited"}
    gs, _ = grants(k, "client-1", ["orders", "news"])
    assert chan_grants(gs) == {"write:orders", "read:news"}
    gs, _ = grants(k, "editor", ["news"])
    assert chan_grants(gs) == {"read:news", "write:news"}


def test_nothing_listed_nothing_granted(k):
    gs, r = grants(k, "worker-2", [])
    assert chan_grants(gs) == set()
    assert r.err("WRITE", chan="orders", data=1) == 403
    assert r.err("CLAIM", chan="orders") == 403
    assert r.err("SUB", chan="news") == 403


def test_rights_follow_the_kind(k):
    gs, r = grants(k, "worker-3", ["orders", "news"])
    assert "read:orders" not in gs          # work-queues: write, claim
    assert "claim:news" not in gs           # broadcast: read, write
    assert r.err("SUB", chan="orders") == 403
    assert r.err("CLAIM", chan="news") == 403


def test_unlisted_channel_write_is_403(k):
    _, r = grants(k, "worker-4", ["news"])
    assert r.err("WRITE", chan="orders", data=1) == 403
    assert r.err("WRITE", chan="logs", data=1) == 403


def test_unknown_channel_is_404_and_not_granted(k):
    gs, r = grants(k, "worker-5", ["ghost", "orders"])
    assert not any(g.endswith(":ghost") for g in gs)
    assert "write:orders" in gs
    assert r.err("WRITE", chan="ghost", data=1) == 404
    assert r.err("SUB", chan="ghost") == 404
    assert r.err("CLAIM", chan="ghost") == 404


def test_deny_overrides_allow(k):
    gs, r = grants(k, "evil-1", ["logs"])
    assert "write:logs" not in gs and "claim:logs" in gs
    assert r.err("WRITE", chan="logs", data=1) == 403


def test_ask_is_not_allow_and_deny_beats_ask(k):
    gs, r = grants(k, "agent-1", ["secret"])
    assert "read:secret" not in gs
    assert r.err("SUB", chan="secret") == 403
    # ask (agent-*) and allow (agent-2) both match: ask wins
    gs, _ = grants(k, "agent-2", ["secret"])
    assert "read:secret" not in gs
    gs, r = grants(k, "spy", ["secret"])
    assert "read:secret" in gs
    r.ok("SUB", chan="secret")


def test_no_matching_rule_denies(k):
    gs, r = grants(k, "client-2", ["orders", "secret"])
    assert "claim:orders" not in gs         # only worker-* may claim
    assert "read:secret" not in gs
    assert r.err("CLAIM", chan="orders") == 403


def test_glob_target_covers_the_dlq(k):
    gs, r = grants(k, "worker-6", ["orders.dlq", "logs.dlq"])
    assert "claim:orders.dlq" in gs         # orders* matches
    assert "claim:logs.dlq" not in gs       # logs does not
    assert r.ok("CLAIM", chan="orders.dlq")["msgs"] == []


def test_heartbeat_is_written_by_the_kernel_only(k):
    gs, r = grants(k, "worker-7", ["heartbeat"])
    assert "write:heartbeat" not in gs and "read:heartbeat" in gs
    assert r.err("WRITE", chan="heartbeat", data={"state": "fake"}) == 403


def test_privileged_gets_no_extra_channel_rights(k):
    r = k.raw()
    gs = set(r.hello("root", privileged=True, token=k.token,
                     channels=["orders", "secret"])["grants"])
    assert "write:orders" in gs
    assert "claim:orders" not in gs and "read:secret" not in gs


def test_rate_limit_burst_then_429_then_allowed_again(k):
    c = k.client("writer", channels=["limited"])
    ids = [c.write("limited", i) for i in range(5)]      # a burst of 5
    with pytest.raises(aaax.AaaxError) as e:
        c.write("limited", 5)
    assert e.value.code == 429
    with pytest.raises(aaax.AaaxError):
        c.write("limited", 6)
    time.sleep(1.05)
    ids += [c.write("limited", i) for i in range(10, 15)]
    with pytest.raises(aaax.AaaxError) as e:
        c.write("limited", 15)
    assert e.value.code == 429
    # what was refused was not accepted
    msgs = c.claim("limited", max=100)
    assert [m["id"] for m in msgs] == ids
    assert [m["data"] for m in msgs] == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]


def test_rate_limit_is_per_subject(k):
    a = k.client("writer-a", channels=["minute"])
    b = k.client("writer-b", channels=["minute"])
    for i in range(3):
        a.write("minute", i)
    with pytest.raises(aaax.AaaxError) as e:
        a.write("minute", 3)
    assert e.value.code == 429
    for i in range(3):
        b.write("minute", i)
    with pytest.raises(aaax.AaaxError) as e:
        b.write("minute", 3)
    assert e.value.code == 429


def test_rate_limit_survives_redocking(k):
    a = k.client("writer-c", channels=["minute"])
    for i in range(3):
        a.write("minute", i)
    a.bye()
    a.dock()
    with pytest.raises(aaax.AaaxError) as e:
        a.write("minute", 3)
    assert e.value.code == 429


def test_mailbox_write_denied_by_policy(k):
    k.raw().hello("boss")
    k.raw().hello("peer")
    gs, r = grants(k, "clerk", ["@boss", "@peer"])
    assert "write:@peer" in gs and "write:@boss" not in gs
    assert r.err("SEND", to="boss", data=1) == 403
    assert r.err("WRITE", chan="@boss", data=1) == 403
    assert r.ok("SEND", to="peer", data=1)["id"]
