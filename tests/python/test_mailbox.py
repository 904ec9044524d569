"""Mailboxes @ID: SEND, pushes, durability until ACK, redelivery at the next
dock (contract sections 4, 6; docs/PROTOCOL.md sections 4 WRITE/SEND,
ACK, 7 Mailbox)."""

import time

import pytest

import aaax

CONFIG = """
return {
  mailbox_window = 3,
  policy = {
    { subject = "*",       action = "chan.write", target = "jobs",    effect = "allow" },
    { subject = "spammer", action = "chan.write", target = "@*",      effect = "deny" },
    { subject = "*",       action = "chan.write", target = "@vip",    effect = "ask" },
    { subject = "friend",  action = "chan.write", target = "@vip",    effect = "allow" },
  },
}
"""


@pytest.fixture
def k(kernel_factory):
    return kernel_factory(config=CONFIG)


def recv_msgs(c, n, timeout=2.0):
    out = []
    for _ in range(n):
        m = c.recv(timeout)
        assert m is not None, "got %d of %d" % (len(out), n)
        out.append(m)
    return out


def test_send_is_pushed_to_the_live_recipient(k):
    bob = k.client("bob")
    alice = k.client("alice")
    t0 = time.time()
    mid = alice.send("bob", {"hi": "bob"}, corr="c-9")
    m = bob.recv(2.0)
    assert m["sub"] == "@bob"
    env = m["msg"]
    assert env["id"] == mid and env["chan"] == "@bob"
    assert env["from"] == "alice" and env["to"] == "bob"
    assert env["corr"] == "c-9" and env["data"] == {"hi": "bob"}
    assert env["attempt"] == 1 and abs(env["ts"] - t0) < 5
    assert alice.recv(0.1) is None


def test_write_to_at_id_is_the_same_as_send(k):
    bob = k.client("bob")
    alice = k.client("alice")
    mid = alice.write("@bob", "via write", to="someone-else")
    env = bob.recv(2.0)["msg"]
    assert env["id"] == mid and env["to"] == "bob" and env["chan"] == "@bob"
    assert env["from"] == "alice"


def test_pushed_in_id_order(k):
    bob = k.client("bob")
    alice = k.client("alice")
    ids = [alice.send("bob", i) for i in range(3)]
    got = recv_msgs(bob, 3)
    assert [m["msg"]["id"] for m in got] == ids


def test_kept_until_acked_and_redelivered_at_next_dock(k):
    bob = k.client("bob")
    alice = k.client("alice")
    mid = alice.send("bob", "important")
    assert bob.recv(2.0)["msg"]["attempt"] == 1
    bob.bye()                                  # not acknowledged
    bob.dock()
    env = bob.recv(2.0)["msg"]
    assert env["id"] == mid and env["attempt"] == 2
    assert env["data"] == "important"
    assert bob.ack("@bob", [mid]) == 1
    bob.bye()
    bob.dock()
    assert bob.recv(0.3) is None               # acknowledged: gone


def test_not_redelivered_within_a_session(k):
    bob = k.client("bob")
    alice = k.client("alice")
    alice.send("bob", 1)
    assert bob.recv(2.0)
    assert bob.recv(0.3) is None


def test_sent_while_offline_delivered_at_dock(k):
    bob = k.client("bob")
    bob.bye()                                  # known to the kernel now
    alice = k.client("alice")
    ids = [alice.send("bob", i) for i in range(2)]
    bob.dock()
    got = recv_msgs(bob, 2)
    assert [m["msg"]["id"] for m in got] == ids
    assert all(m["msg"]["attempt"] == 1 for m in got)


def test_mailbox_after_silent_timeout_redelivered(kernel_factory):
    k = kernel_factory(config="return { heartbeat_ms = 200 }")
    bob = k.client("bob")
    alice = k.client("alice")
    mid = alice.send("bob", "x")
    assert bob.recv(1.0)
    time.sleep(0.9)                            # bob is silent: undocked
    alice.ping()
    bob.dock()
    env = bob.recv(2.0)["msg"]
    assert env["id"] == mid and env["attempt"] == 2


def test_window_limits_unacknowledged_pushes(k):
    bob = k.client("bob")
    alice = k.client("alice")
    ids = [alice.send("bob", i) for i in range(5)]   # window = 3
    got = recv_msgs(bob, 3)
    assert bob.recv(0.3) is None
    bob.ack("@bob", [got[0]["msg"]["id"]])
    got += recv_msgs(bob, 1)
    bob.ack("@bob", [m["msg"]["id"] for m in got[1:]])
    got += recv_msgs(bob, 1)
    assert [m["msg"]["id"] for m in got] == ids


def test_send_to_a_never_seen_system_is_404(k):
    alice = k.client("alice")
    for call in (lambda: alice.send("nobody", 1),
                 lambda: alice.write("@nobody", 1)):
        with pytest.raises(aaax.AaaxError) as e:
            call()
        assert e.value.code == 404


def test_send_to_a_known_offline_system_is_accepted(k):
    k.client("carol").bye()
    alice = k.client("alice")
    assert len(alice.send("carol", 1)) == 26


def test_known_systems_survive_a_restart(k):
    k.client("dave").bye()
    assert k.stop() == 0
    k.start()
    alice = k.client("alice")
    alice.send("dave", "after restart")
    dave = k.client("dave")
    assert dave.recv(2.0)["msg"]["data"] == "after restart"


def test_policy_deny_on_mailbox_write_is_403(k):
    k.client("bob")
    spammer = k.client("spammer")
    for call in (lambda: spammer.send("bob", "buy"),
                 lambda: spammer.write("@bob", "buy")):
        with pytest.raises(aaax.AaaxError) as e:
            call()
        assert e.value.code == 403


def test_policy_ask_on_mailbox_write_refuses(k):
    k.client("vip")
    other = k.client("other")
    with pytest.raises(aaax.AaaxError) as e:
        other.send("vip", 1)
    assert e.value.code == 403
    # friend matches both the ask rule and an allow rule: ask wins
    with pytest.raises(aaax.AaaxError) as e:
        k.client("friend").send("vip", 1)
    assert e.value.code == 403
    # no rule at all about @bob: a mailbox is writable unless denied
    k.client("bob")
    assert len(other.send("bob", 1)) == 26


def test_ack_on_someone_elses_mailbox_is_403(k):
    bob = k.client("bob")
    alice = k.client("alice")
    mid = alice.send("bob", 1)
    bob.recv(2.0)
    with pytest.raises(aaax.AaaxError) as e:
        alice.ack("@bob", [mid])
    assert e.value.code == 403
    assert bob.ack("@bob", [mid]) == 1


def test_nack_on_a_mailbox_is_403(k):
    bob = k.client("bob")
    mid = k.client("alice").send("bob", 1)
    bob.recv(2.0)
    with pytest.raises(aaax.AaaxError) as e:
        bob.nack("@bob", [mid])
    assert e.value.code == 403


def test_sub_on_own_mailbox_ok_other_403(k):
    bob = k.client("bob")
    k.client("alice")
    bob.subscribe("@bob")
    with pytest.raises(aaax.AaaxError) as e:
        bob.subscribe("@alice")
    assert e.value.code == 403
    mid = k.client("eve").send("bob", 1)
    assert bob.recv(2.0)["msg"]["id"] == mid
    assert bob.recv(0.2) is None               # once, not twice


def test_ack_of_unknown_or_unpushed_ids_is_0(k):
    bob = k.client("bob")
    assert bob.ack("@bob", ["bogus", "0" * 26]) == 0


def test_mailbox_idempotency_key(k):
    bob = k.client("bob")
    alice = k.client("alice")
    i1 = alice.send("bob", 1, key="once")
    assert alice.send("bob", 2, key="once") == i1
    assert bob.recv(2.0)["msg"]["id"] == i1
    assert bob.recv(0.2) is None


def test_mailbox_max_len(kernel_factory):
    k = kernel_factory(config="return { mailbox_max_len = 2 }")
    k.client("bob").bye()
    alice = k.client("alice")
    alice.send("bob", 1)
    alice.send("bob", 2)
    with pytest.raises(aaax.AaaxError) as e:
        alice.send("bob", 3)
    assert e.value.code == 429


def test_mailbox_grants_listed_at_hello(k):
    k.client("bob")
    c = k.client("lister", channels=["@bob", "@nobody"])
    assert "write:@bob" in c.grants
    assert not any("nobody" in g for g in c.grants)


def test_mailbox_pushed_after_the_hello_ok(k):
    k.client("zoe").bye()
    alice = k.client("alice")
    mids = [alice.send("zoe", i) for i in range(2)]
    r = k.raw()
    r.send([b"HELLO", __import__("msgpack").packb(
        {"req": 3, "system": "zoe", "version": 1})])
    seq = [r.recv() for _ in range(3)]
    assert seq[0][0] == "OK" and seq[0][1]["req"] == 3
    assert [s[0] for s in seq[1:]] == ["MSG", "MSG"]
    assert [s[1]["msg"]["id"] for s in seq[1:]] == mids
    assert all(s[1]["sub"] == "@zoe" for s in seq[1:])


def test_kernel_set_keys_in_send_are_ignored(k):
    bob = k.client("bob")
    alice = k.client("alice")
    mid = alice.call("SEND", to="bob", data=1, chan="jobs", id="X" * 26,
                     ts=1.0, **{"from": "mallory"})["id"]
    env = bob.recv(2.0)["msg"]
    assert env["id"] == mid != "X" * 26
    assert env["chan"] == "@bob" and env["from"] == "alice"
    assert env["ts"] > 1000
