"""Work-queues: one claimer per message, leases, attempts, NACK, dead
letters, long-poll, idempotency keys, limits (contract section 6;
docs/PROTOCOL.md sections 4 CLAIM/ACK/NACK, BYE, 7)."""

import time

import msgpack
import pytest

import aaax

CONFIG = """
return {
  channels = {
    { name = "jobs", kind = "work-queue" },
    { name = "twice", kind = "work-queue", max_attempts = 2 },
    { name = "once", kind = "work-queue", max_attempts = 1 },
    { name = "small", kind = "work-queue", max_len = 3 },
    { name = "bytes", kind = "work-queue", max_bytes = 1000 },
    { name = "mem", kind = "work-queue", durable = false },
    { name = "shortlease", kind = "work-queue", lease_ms = 300 },
    { name = "news", kind = "broadcast" },
  },
  policy = {
    { subject = "*", action = "chan.*", target = "*", effect = "allow" },
  },
}
"""

ALL = ["jobs", "jobs.dlq", "twice", "twice.dlq", "once", "once.dlq", "small",
       "bytes", "mem", "shortlease", "news"]


@pytest.fixture
def k(kernel_factory):
    return kernel_factory(config=CONFIG)


def cl(k, system):
    return k.client(system, channels=ALL)


def test_each_message_goes_to_exactly_one_claimer(k):
    w = cl(k, "producer")
    ids = [w.write("jobs", i) for i in range(30)]
    workers = [cl(k, "worker-%d" % i) for i in range(3)]
    seen = []
    while True:
        got = [m for c in workers for m in c.claim("jobs", max=4)]
        if not got:
            break
        seen += got
    assert sorted(m["id"] for m in seen) == sorted(ids)
    assert len({m["id"] for m in seen}) == 30
    assert all(m["attempt"] == 1 for m in seen)
    assert all(m["chan"] == "jobs" and m["from"] == "producer" for m in seen)


def test_claim_max_and_default(k):
    c = cl(k, "c")
    for i in range(5):
        c.write("jobs", i)
    assert len(c.call("CLAIM", chan="jobs")["msgs"]) == 1     # default max 1
    assert len(c.claim("jobs", max=3)) == 3
    assert len(c.claim("jobs", max=10)) == 1
    assert c.claim("jobs", max=10) == []


def test_served_oldest_first_including_returned(k):
    c = cl(k, "c")
    ids = [c.write("jobs", i) for i in range(4)]
    first = c.claim("jobs", max=2)
    assert [m["id"] for m in first] == ids[:2]
    assert c.nack("jobs", [first[1]["id"]]) == 1     # ids[1] comes back
    again = c.claim("jobs", max=3)
    assert [m["id"] for m in again] == [ids[1], ids[2], ids[3]]
    assert [m["attempt"] for m in again] == [2, 1, 1]


def test_ack_removes_for_good(k):
    c = cl(k, "c")
    wid = c.write("jobs", "x")
    assert [m["id"] for m in c.claim("jobs", lease_ms=200)] == [wid]
    assert c.ack("jobs", [wid]) == 1
    assert c.ack("jobs", [wid]) == 0                 # already gone
    time.sleep(0.3)                                   # the lease would end
    assert c.claim("jobs") == []


def test_lease_expiry_redelivers_with_attempt_plus_one(k):
    a, b = cl(k, "a"), cl(k, "b")
    wid = a.write("jobs", "task")
    t0 = time.monotonic()
    m = a.claim("jobs", lease_ms=300)
    assert m[0]["attempt"] == 1
    assert b.claim("jobs") == []                      # leased
    got = b.claim("jobs", wait_ms=3000)
    dt = time.monotonic() - t0
    assert [x["id"] for x in got] == [wid] and got[0]["attempt"] == 2
    assert 0.25 <= dt < 2.0, dt
    assert got[0]["data"] == "task"
    # the old holder's ACK changes nothing now
    assert a.ack("jobs", [wid]) == 0
    assert b.ack("jobs", [wid]) == 1


def test_queue_default_lease_from_config(k):
    c = cl(k, "c")
    c.write("shortlease", 1)
    c.claim("shortlease")                             # lease_ms = 300
    t0 = time.monotonic()
    got = c.claim("shortlease", wait_ms=3000)
    assert got and got[0]["attempt"] == 2
    assert time.monotonic() - t0 < 1.0


def test_attempts_count_every_delivery(k):
    c = cl(k, "c")
    wid = c.write("jobs", 1)
    for attempt in range(1, 5):
        m = c.claim("jobs")
        assert m[0]["id"] == wid and m[0]["attempt"] == attempt
        assert c.nack("jobs", [wid]) == 1


def test_nack_requeues_at_once(k):
    a, b = cl(k, "a"), cl(k, "b")
    wid = a.write("jobs", 1)
    a.claim("jobs", lease_ms=60000)
    assert a.nack("jobs", [wid]) == 1
    got = b.claim("jobs")
    assert [m["id"] for m in got] == [wid] and got[0]["attempt"] == 2


def test_nack_delay(k):
    a, b = cl(k, "a"), cl(k, "b")
    wid = a.write("jobs", 1)
    a.claim("jobs")
    t0 = time.monotonic()
    assert a.nack("jobs", [wid], delay_ms=400) == 1
    assert b.claim("jobs") == []                      # delayed
    got = b.claim("jobs", wait_ms=3000)
    dt = time.monotonic() - t0
    assert [m["id"] for m in got] == [wid] and got[0]["attempt"] == 2
    assert 0.35 <= dt < 2.0, dt


def test_dead_letter_after_max_attempts(k):
    c = cl(k, "c")
    data = {"payload": [1, b"\x00\x01", {"deep": None}], "s": "t\u00e9"}
    wid = c.write("twice", data, corr="orig-corr")
    for attempt in (1, 2):
        m = c.claim("twice")
        assert m[0]["attempt"] == attempt
        assert c.nack("twice", [wid]) == 1
    assert c.claim("twice") == []                     # gone from the queue
    d = c.claim("twice.dlq")
    assert len(d) == 1
    assert d[0]["id"] == wid and d[0]["chan"] == "twice.dlq"
    assert d[0]["data"] == data                       # unchanged
    assert d[0]["from"] == "c" and d[0]["corr"] == "orig-corr"
    assert c.ack("twice.dlq", [wid]) == 1
    assert c.claim("twice.dlq") == []


def test_dead_letter_after_lease_expiry(k):
    c = cl(k, "c")
    wid = c.write("once", "x")
    c.claim("once", lease_ms=100)
    got = c.claim("once.dlq", wait_ms=3000)
    assert [m["id"] for m in got] == [wid]
    assert c.claim("once") == []


def test_dead_letters_stay_until_acknowledged(k):
    c = cl(k, "c")
    wid = c.write("once", "x")
    c.claim("once")
    c.nack("once", [wid])
    for attempt in range(1, 8):                       # never dead-letters
        d = c.claim("once.dlq")
        assert [m["id"] for m in d] == [wid]
        assert c.nack("once.dlq", [wid]) == 1
    assert c.claim("once") == []


def test_default_max_attempts_is_5(k):
    c = cl(k, "c")
    wid = c.write("jobs", "x")
    for _ in range(5):
        assert c.claim("jobs")[0]["id"] == wid
        c.nack("jobs", [wid])
    assert c.claim("jobs") == []
    assert [m["id"] for m in c.claim("jobs.dlq")] == [wid]


def test_ack_nack_from_a_non_holder_change_nothing(k):
    a, b = cl(k, "holder"), cl(k, "stranger")
    wid = a.write("jobs", 1)
    a.claim("jobs", lease_ms=60000)
    assert b.ack("jobs", [wid]) == 0
    assert b.nack("jobs", [wid]) == 0
    assert b.claim("jobs") == []                       # still leased
    assert a.ack("jobs", [wid]) == 1


def test_ack_counts_only_what_took_effect(k):
    c = cl(k, "c")
    ids = [c.write("jobs", i) for i in range(3)]
    c.claim("jobs", max=2)
    n = c.ack("jobs", [ids[0], ids[1], ids[2], "bogus", "",
                       "0" * 26, ids[0]])
    assert n == 2
    assert c.nack("jobs", ["bogus", ids[2]]) == 0      # ids[2] not claimed


def test_ack_needs_the_claim_grant(k):
    a = cl(k, "a")
    wid = a.write("jobs", 1)
    a.claim("jobs")
    r = k.raw()
    r.hello("nogrant", channels=[])
    assert r.err("ACK", chan="jobs", ids=[wid]) == 403
    assert r.err("NACK", chan="jobs", ids=[wid]) == 403
    assert r.err("CLAIM", chan="jobs") == 403
    assert r.err("ACK", chan="news", ids=[wid]) == 403


def test_claim_on_broadcast_or_mailbox_is_403(k):
    c = cl(k, "c")
    for chan in ("news", "@c"):
        with pytest.raises(aaax.AaaxError) as e:
            c.claim(chan)
        assert e.value.code == 403


def test_long_poll_returns_as_soon_as_a_message_is_written(k):
    waiter, writer = cl(k, "waiter"), cl(k, "writer")
    req = waiter.request("CLAIM", chan="jobs", max=5, wait_ms=5000)
    time.sleep(0.2)
    t0 = time.monotonic()
    wid = writer.write("jobs", "now")
    cmd, body = waiter.reply(req, timeout=6)
    assert time.monotonic() - t0 < 1.0
    assert [m["id"] for m in body["msgs"]] == [wid]
    assert body["msgs"][0]["attempt"] == 1


def test_long_poll_returns_empty_after_wait_ms(k):
    c = cl(k, "c")
    t0 = time.monotonic()
    assert c.claim("jobs", wait_ms=300) == []
    assert 0.28 <= time.monotonic() - t0 < 1.5


def test_long_poll_served_first_come_first_served(k):
    first, second, w = cl(k, "first"), cl(k, "second"), cl(k, "w")
    r1 = first.request("CLAIM", chan="jobs", wait_ms=5000)
    time.sleep(0.05)
    r2 = second.request("CLAIM", chan="jobs", wait_ms=5000)
    time.sleep(0.1)
    a = w.write("jobs", "a")
    assert [m["id"] for m in first.reply(r1)[1]["msgs"]] == [a]
    b = w.write("jobs", "b")
    assert [m["id"] for m in second.reply(r2)[1]["msgs"]] == [b]


def test_long_poll_gets_a_message_coming_back(k):
    a, b = cl(k, "a"), cl(k, "b")
    wid = a.write("jobs", 1)
    a.claim("jobs", lease_ms=60000)
    req = b.request("CLAIM", chan="jobs", wait_ms=5000)
    time.sleep(0.1)
    a.nack("jobs", [wid])
    got = b.reply(req)[1]["msgs"]
    assert [m["id"] for m in got] == [wid] and got[0]["attempt"] == 2


def test_idempotency_key_returns_the_same_id(k):
    c = cl(k, "c")
    first = c.write("jobs", "once", key="order-17")
    assert c.write("jobs", "once again", key="order-17") == first
    other = c.write("jobs", "x", key="order-18")
    assert other != first
    msgs = c.claim("jobs", max=10)
    assert [m["id"] for m in msgs] == [first, other]
    assert msgs[0]["data"] == "once"
    # still the same id once the message is gone
    c.ack("jobs", msgs)
    assert c.write("jobs", "later", key="order-17") == first
    assert c.claim("jobs") == []


def test_idempotency_key_scope_is_channel_and_writer(k):
    a, b = cl(k, "a"), cl(k, "b")
    i1 = a.write("jobs", 1, key="k")
    assert b.write("jobs", 1, key="k") != i1           # another writer
    assert a.write("mem", 1, key="k") != i1            # another channel
    assert a.write("jobs", 1, key="k") == i1
    assert len(a.claim("jobs", max=10)) == 2


def test_idempotency_key_on_broadcast(k):
    c = cl(k, "c")
    s = cl(k, "s")
    s.subscribe("news")
    i1 = c.write("news", 1, key="n")
    assert c.write("news", 2, key="n") == i1
    assert s.recv(1.0)["msg"]["id"] == i1
    assert s.recv(0.2) is None


def test_max_len_is_429_and_not_accepted(k):
    c = cl(k, "c")
    ids = [c.write("small", i) for i in range(3)]
    with pytest.raises(aaax.AaaxError) as e:
        c.write("small", 3)
    assert e.value.code == 429
    m = c.claim("small")
    with pytest.raises(aaax.AaaxError):                 # leased still counts
        c.write("small", 4)
    c.ack("small", m)
    ids.append(c.write("small", 5))
    got = c.claim("small", max=10)
    assert [x["data"] for x in got] == [1, 2, 5]


def test_max_bytes_is_429(k):
    c = cl(k, "c")
    c.write("bytes", "x" * 300)
    with pytest.raises(aaax.AaaxError) as e:
        c.write("bytes", "y" * 900)
    assert e.value.code == 429


def test_bye_releases_leases_at_once(k):
    a, b = cl(k, "a"), cl(k, "b")
    wid = a.write("jobs", 1)
    a.claim("jobs", lease_ms=60000)
    a.bye()
    got = b.claim("jobs")
    assert [m["id"] for m in got] == [wid] and got[0]["attempt"] == 2


def test_bye_keep_leases_lets_the_same_system_ack(k):
    a = cl(k, "keeper")
    ids = [a.write("jobs", i) for i in range(2)]
    a.claim("jobs", max=2, lease_ms=60000)
    a.bye(keep_leases=True)
    other = cl(k, "other")
    assert other.claim("jobs") == []                    # still leased
    assert other.ack("jobs", ids) == 0
    again = cl(k, "keeper")                             # a new session
    assert again.ack("jobs", [ids[0]]) == 1
    assert again.nack("jobs", [ids[1]]) == 1
    got = other.claim("jobs")
    assert [m["id"] for m in got] == [ids[1]] and got[0]["attempt"] == 2


def test_bye_without_keep_leases_new_session_cannot_ack(k):
    a = cl(k, "forgetter")
    wid = a.write("jobs", 1)
    a.claim("jobs", lease_ms=60000)
    a.bye()
    again = cl(k, "forgetter")
    assert again.ack("jobs", [wid]) == 0
    got = again.claim("jobs")
    assert got[0]["id"] == wid and got[0]["attempt"] == 2


def test_kept_leases_still_expire(k):
    a = cl(k, "keeper2")
    wid = a.write("jobs", 1)
    a.claim("jobs", lease_ms=300)
    a.bye(keep_leases=True)
    b = cl(k, "b")
    got = b.claim("jobs", wait_ms=3000)
    assert [m["id"] for m in got] == [wid] and got[0]["attempt"] == 2


def test_waiting_claims_per_session_limit(k):
    r = k.raw()
    r.hello("greedy", channels=["jobs"])
    for i in range(256):
        r.send([b"CLAIM", msgpack.packb({"req": i, "chan": "jobs",
                                         "wait_ms": 20000})])
    r.send([b"CLAIM", msgpack.packb({"req": 999, "chan": "jobs",
                                     "wait_ms": 20000})])
    cmd, body = r.reply(req=999)
    assert (cmd, body["code"]) == ("ERROR", 429)
    r.ok("BYE")   # answers the 256 with nothing


def test_depth_in_stat(k):
    c = cl(k, "c")
    for i in range(4):
        c.write("jobs", i)
    c.claim("jobs", max=1)
    got = c.claim("jobs", max=1)
    c.nack("jobs", got, delay_ms=60000)
    admin = k.client("admin", privileged=True, token=k.token)
    st = admin.stat()["channels"]["jobs"]
    assert st["kind"] == "work-queue" and st["durable"] is True
    assert (st["depth"], st["ready"], st["leased"], st["delayed"]) == \
        (4, 2, 1, 1)
    assert admin.stat()["channels"]["mem"]["durable"] is False
