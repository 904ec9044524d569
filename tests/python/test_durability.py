"""Durability across restarts and kill -9, and the graceful shutdown
(contract sections 4, 6; docs/PROTOCOL.md sections 4 WRITE, 7 Durability,
and aaaxd --help on signals)."""

import os
import signal
import time

import pytest

import aaax

CONFIG = """
return {
  channels = {
    { name = "jobs", kind = "work-queue" },
    { name = "mem", kind = "work-queue", durable = false },
    { name = "twice", kind = "work-queue", max_attempts = 2 },
  },
  policy = {
    { subject = "*", action = "chan.*", target = "*", effect = "allow" },
  },
}
"""

ALL = ["jobs", "jobs.dlq", "mem", "twice", "twice.dlq"]


@pytest.fixture
def k(kernel_factory):
    return kernel_factory(config=CONFIG)


def restart(k, how):
    if how == "graceful":
        assert k.stop() == 0
    else:
        k.kill9()
    k.start()


def drain(c, chan):
    out = []
    while True:
        got = c.claim(chan, max=1000)
        if not got:
            return out
        out += got


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_acknowledged_writes_survive(k, how):
    c = k.client("producer", channels=ALL)
    data = [{"n": i, "blob": bytes([i % 256]) * 100} for i in range(200)]
    ids = [c.write("jobs", d, corr="c%d" % i) for i, d in enumerate(data)]
    c.close()
    restart(k, how)
    r = k.client("consumer", channels=ALL)
    got = drain(r, "jobs")
    assert [m["id"] for m in got] == ids
    assert [m["data"] for m in got] == data
    assert all(m["from"] == "producer" and m["attempt"] == 1 for m in got)
    assert [m["corr"] for m in got] == ["c%d" % i for i in range(200)]


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_pipelined_writes_survive_kill9_after_their_ok(k, how):
    c = k.client("fast-producer", channels=ALL)
    reqs = [c.request("WRITE", chan="jobs", data=i) for i in range(1000)]
    ids = [c.reply(q)[1]["id"] for q in reqs]       # every OK received
    c.close()
    restart(k, how)
    got = drain(k.client("consumer", channels=ALL), "jobs")
    assert [m["id"] for m in got] == ids


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_acked_messages_do_not_come_back(k, how):
    c = k.client("worker", channels=ALL)
    ids = [c.write("jobs", i) for i in range(20)]
    got = c.claim("jobs", max=10)
    assert c.ack("jobs", got) == 10
    c.close()
    restart(k, how)
    left = drain(k.client("worker2", channels=ALL), "jobs")
    assert [m["id"] for m in left] == ids[10:]


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_attempts_and_dead_letters_survive(k, how):
    c = k.client("w", channels=ALL)
    a = c.write("jobs", "a")
    b = c.write("twice", "b")
    for chan, wid in (("jobs", a), ("twice", b)):
        c.claim(chan)
        c.nack(chan, [wid])
    c.claim("twice")
    c.nack("twice", [b])                             # dead-lettered
    c.close()
    restart(k, how)
    r = k.client("r", channels=ALL)
    got = r.claim("jobs")
    assert got[0]["id"] == a and got[0]["attempt"] == 2
    assert r.claim("twice") == []
    d = r.claim("twice.dlq")
    assert [m["id"] for m in d] == [b] and d[0]["data"] == "b"
    assert d[0]["chan"] == "twice.dlq"


def test_leased_message_is_ready_again_after_restart(k):
    c = k.client("w", channels=ALL)
    wid = c.write("jobs", 1)
    c.claim("jobs", lease_ms=600000)
    c.close()
    restart(k, "graceful")
    got = k.client("r", channels=ALL).claim("jobs")
    assert [m["id"] for m in got] == [wid]
    assert got[0]["attempt"] >= 1


def test_nack_delay_survives_restart(k):
    c = k.client("w", channels=ALL)
    wid = c.write("jobs", 1)
    c.claim("jobs")
    t0 = time.monotonic()     # before: the OK waits for the commit
    c.nack("jobs", [wid], delay_ms=1500)
    c.close()
    restart(k, "graceful")
    r = k.client("r", channels=ALL)
    if time.monotonic() - t0 < 1.2:
        assert r.claim("jobs") == []                 # still delayed
    got = r.claim("jobs", wait_ms=5000)
    assert [m["id"] for m in got] == [wid] and got[0]["attempt"] == 2
    assert time.monotonic() - t0 >= 1.4


def test_memory_queue_is_not_durable(k):
    c = k.client("w", channels=ALL)
    c.write("mem", 1)
    c.write("jobs", 2)
    c.close()
    restart(k, "graceful")
    r = k.client("r", channels=ALL)
    assert r.claim("mem") == []
    assert len(r.claim("jobs")) == 1


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_idempotency_key_survives_restart(k, how):
    c = k.client("retrier", channels=ALL)
    first = c.write("jobs", "pay 10", key="payment-1")
    c.close()
    restart(k, how)
    c = k.client("retrier", channels=ALL)
    assert c.write("jobs", "pay 10", key="payment-1") == first
    assert c.write("jobs", "pay 20", key="payment-2") != first
    got = drain(c, "jobs")
    assert [m["data"] for m in got] == ["pay 10", "pay 20"]


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_mailbox_survives_restart(k, how):
    bob = k.client("bob")
    bob.bye()
    alice = k.client("alice")
    mids = [alice.send("bob", i) for i in range(3)]
    alice.close()
    restart(k, how)
    bob = k.client("bob")
    got = [bob.recv(2.0) for _ in range(3)]
    assert [m["msg"]["id"] for m in got] == mids
    bob.ack("@bob", [got[0]["msg"]["id"]])
    bob.close()
    restart(k, how)
    bob = k.client("bob")
    again = [bob.recv(2.0) for _ in range(2)]
    assert [m["msg"]["id"] for m in again] == mids[1:]
    assert bob.recv(0.2) is None


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_ids_keep_growing_across_restarts(k, how):
    c = k.client("w", channels=ALL)
    before = c.write("jobs", 1)
    c.close()
    restart(k, how)
    c = k.client("w", channels=ALL)
    after = c.write("jobs", 2)
    assert after > before


# ---- graceful shutdown -------------------------------------------------------

def test_sigterm_exits_0_and_removes_the_ipc_socket(k):
    sock = os.path.join(k.data, "aaax.sock")
    assert os.path.exists(sock)
    k.proc.send_signal(signal.SIGTERM)
    assert k.proc.wait(10) == 0
    assert not os.path.exists(sock)
    # and it starts again on the same directory
    k.start()
    assert os.path.exists(sock)


def test_sigint_is_graceful_too(k):
    k.proc.send_signal(signal.SIGINT)
    assert k.proc.wait(10) == 0
    assert not os.path.exists(os.path.join(k.data, "aaax.sock"))


def test_sighup_does_not_stop_the_kernel(k):
    k.proc.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    assert k.alive()
    assert isinstance(k.client().ping(), float)


def test_pending_durable_writes_are_acknowledged_before_exit(k):
    c = k.client("rusher", channels=ALL)
    reqs = [c.request("WRITE", chan="jobs", data=i) for i in range(3000)]
    k.proc.send_signal(signal.SIGTERM)
    assert k.proc.wait(15) == 0
    oked, refused, lost = [], 0, 0
    for q in reqs:
        try:
            # the kernel is gone: what it answered has arrived (or nearly)
            cmd, body = c.reply(q, timeout=0.5 if not lost else 0)
            assert cmd == "OK"
            oked.append(body["id"])
        except aaax.AaaxTimeout:
            lost += 1
        except aaax.AaaxError as e:
            assert e.code == 503, e
            refused += 1
    print("oked %d refused %d lost %d" % (len(oked), refused, lost))
    assert oked, "no write was acknowledged"
    c.close()
    k.start()
    got = drain(k.client("checker", channels=ALL), "jobs")
    present = [m["id"] for m in got]
    # every acknowledged write is there; nothing else but unanswered ones
    assert set(oked) <= set(present)
    assert len(present) <= len(oked) + lost
    assert present == sorted(present)


def test_shutdown_refuses_new_work_with_503_or_goes_away(k):
    """Commands that arrive during the shutdown get 503 (or no answer once
    the kernel is gone) -- never an OK that is then lost."""
    c = k.client("late", channels=ALL)
    k.proc.send_signal(signal.SIGTERM)
    oked = []
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end and k.alive():
        try:
            oked.append(c.call("WRITE", chan="jobs", data=1,
                               _timeout=0.3)["id"])
        except aaax.AaaxTimeout:
            break
        except aaax.AaaxError as e:
            assert e.code == 503
            break
    assert k.proc.wait(10) == 0
    c.close()
    k.start()
    present = {m["id"] for m in drain(k.client("chk", channels=ALL), "jobs")}
    assert set(oked) <= present


def test_kill9_leaves_a_restartable_directory(k):
    k.client("w", channels=ALL).write("jobs", 1)
    k.kill9()
    # the stale ipc socket and the lock file are there; boot still works
    assert os.path.exists(os.path.join(k.data, "aaax.sock"))
    k.start()
    assert len(k.client("r", channels=ALL).claim("jobs")) == 1


def test_sigterm_with_waiting_claims_and_subscribers_exits_promptly(k):
    c = k.client("waiter", channels=ALL)
    req = c.request("CLAIM", chan="jobs", wait_ms=60000)
    s = k.client("subscriber", channels=[])
    s.subscribe("heartbeat")
    t0 = time.monotonic()
    k.proc.send_signal(signal.SIGTERM)
    assert k.proc.wait(10) == 0
    assert time.monotonic() - t0 < 4.0
    assert req


def test_graceful_restart_counts_a_leased_delivery(k):
    c = k.client("w", channels=ALL)
    wid = c.write("jobs", 1)
    assert c.claim("jobs", lease_ms=600000)[0]["attempt"] == 1
    c.close()
    restart(k, "graceful")
    got = k.client("r", channels=ALL).claim("jobs")
    assert [m["id"] for m in got] == [wid]
    assert got[0]["attempt"] == 2


def test_graceful_restart_counts_a_mailbox_push(k):
    k.client("bob").bye()
    mid = k.client("alice").send("bob", "x")
    bob = k.client("bob")
    assert bob.recv(2.0)["msg"]["attempt"] == 1
    bob.close()
    restart(k, "graceful")
    env = k.client("bob").recv(2.0)["msg"]
    assert env["id"] == mid
    assert env["attempt"] == 2


def test_queue_left_out_of_the_config_keeps_its_messages(kernel_factory):
    with_q = CONFIG
    without_q = CONFIG.replace(
        '{ name = "twice", kind = "work-queue", max_attempts = 2 },', '')
    assert without_q != with_q
    k = kernel_factory(config=with_q)
    c = k.client("w", channels=ALL)
    ids = [c.write("twice", i) for i in range(3)]
    c.close()
    assert k.stop() == 0
    with open(k.config_path, "w") as f:
        f.write(without_q)
    k.start()
    c = k.client("w", channels=ALL)
    with pytest.raises(aaax.AaaxError) as e:
        c.claim("twice")
    assert e.value.code == 404
    c.write("jobs", "still works")
    c.close()
    assert k.stop() == 0
    with open(k.config_path, "w") as f:
        f.write(with_q)
    k.start()
    got = drain(k.client("r", channels=ALL), "twice")
    assert [m["id"] for m in got] == ids
