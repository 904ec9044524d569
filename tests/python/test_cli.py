"""The aaax CLI against a real aaaxd: every subcommand, its exit codes, and
the JSON <-> msgpack mapping (docs/CLI.md). The binary is $AAAX_CLI
(default build/aaax); one fake kernel (a Python ROUTER) drives what a real
one cannot be made to do on demand (DROPPED)."""

import base64
import json
import math
import os
import signal
import struct
import subprocess
import threading
import time

import msgpack
import pytest
import zmq

from conftest import AAAX_CLI, free_port

pytestmark = pytest.mark.skipif(
    not os.path.exists(AAAX_CLI),
    reason="the aaax CLI binary %s does not exist (build it, or set "
           "AAAX_CLI)" % AAAX_CLI)

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def check_clean(stderr):
    for mark in SANITIZER_MARKS:
        assert mark not in stderr, "sanitizer report from aaax:\n" + stderr


def cli(kernel, sub, *args, system=None, input=None, timeout=30,
        connect=True, env=None):
    """Runs `aaax SUB --connect EP [--system ID] ARGS...`."""
    cmd = [AAAX_CLI, sub]
    if connect and kernel is not None:
        cmd += ["--connect", kernel.endpoint]
    if system:
        cmd += ["--system", system]
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.pop("AAAX_CONNECT", None)
    full_env.pop("AAAX_SYSTEM", None)
    if env:
        full_env.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, input=input,
                       timeout=timeout, env=full_env)
    check_clean(p.stderr)
    return p


def cli_popen(kernel, sub, *args, system=None):
    cmd = [AAAX_CLI, sub, "--connect", kernel.endpoint]
    if system:
        cmd += ["--system", system]
    cmd += list(args)
    env = dict(os.environ)
    env.pop("AAAX_CONNECT", None)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(proc, timeout=20):
    out, err = proc.communicate(timeout=timeout)
    check_clean(err)
    return proc.returncode, out, err


def lines(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


class Py:
    """A minimal protocol client over pyzmq, as a user would write it."""

    def __init__(self, endpoint, system, channels=(), token=None):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.req = 0
        self.pushes = []
        body = dict(system=system, version=1, channels=list(channels))
        if token:
            body.update(token=token, privileged=True)
        cmd, self.welcome = self.call("HELLO", **body)
        assert cmd == "OK", self.welcome

    def send_raw(self, cmd, body_bytes):
        self.sock.send_multipart([cmd.encode(), body_bytes])

    def send(self, cmd, **body):
        self.req += 1
        body["req"] = self.req
        self.sock.send_multipart([cmd.encode(), msgpack.packb(body)])
        return self.req

    def wait_reply(self, req, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.sock.poll(100):
                continue
            cmd, raw = self.sock.recv_multipart()
            body = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            if cmd in (b"MSG", b"DROPPED"):
                self.pushes.append((cmd.decode(), body))
            elif body.get("req") == req:
                return cmd.decode(), body
        raise AssertionError("no reply to req %d" % req)

    def call(self, cmd, **body):
        return self.wait_reply(self.send(cmd, **body))

    def next_push(self, timeout=5.0):
        deadline = time.time() + timeout
        while not self.pushes and time.time() < deadline:
            if self.sock.poll(100):
                cmd, raw = self.sock.recv_multipart()
                body = msgpack.unpackb(raw, raw=False)
                if cmd in (b"MSG", b"DROPPED"):
                    self.pushes.append((cmd.decode(), body))
        return self.pushes.pop(0) if self.pushes else None

    def close(self):
        try:
            self.call("BYE")
        except AssertionError:
            pass
        self.sock.close()


def docked(kernel, system):
    admin = Py(kernel.endpoint, "py-stat-%d" % os.getpid(),
               token=kernel.token)
    _, st = admin.call("STAT")
    admin.close()
    return system in [s["system"] for s in st["sessions"]]


def wait_docked(kernel, system, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if docked(kernel, system):
            return
        time.sleep(0.1)
    raise AssertionError("%s did not dock" % system)


# ---- basics --------------------------------------------------------------

SUBCOMMAND_OPTIONS = {
    "ping": [],
    "tail": ["--raw", "--since", "--count"],
    "write": ["--key", "--to", "--corr"],
    "claim": ["--max", "--wait", "--lease", "--ack"],
    "ack": [],
    "nack": ["--delay"],
    "send": ["--corr", "--key", "--wait"],
    "stat": [],
    "version": [],
}
COMMON_OPTIONS = ["--connect", "--system", "--data", "--timeout", "--help"]


def test_help_lists_subcommands():
    p = cli(None, "--help")
    assert p.returncode == 0
    for sub in SUBCOMMAND_OPTIONS:
        assert sub in p.stdout


@pytest.mark.parametrize("sub", sorted(SUBCOMMAND_OPTIONS))
def test_help_of_every_subcommand(sub):
    p = cli(None, sub, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: aaax " + sub)
    for opt in SUBCOMMAND_OPTIONS[sub] + COMMON_OPTIONS:
        assert opt in p.stdout, (sub, opt)
    assert "Exit codes" in p.stdout
    assert "xample" in p.stdout
    assert cli(None, sub, "-h").stdout == p.stdout


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["ping", "--bogus"],
    ["ping", "extra"],
    ["tail"],
    ["tail", "events", "--ack"],
    ["tail", "events", "--count", "zero"],
    ["tail", "events", "--count", "0"],
    ["claim", "jobs", "--max"],
    ["write", "jobs"],
    ["ack", "jobs"],
    ["send", "x", "1", "--wait", "-5"],
    ["stat", "--timeout", "0"],
])
def test_usage_errors_exit_2(args):
    p = subprocess.run([AAAX_CLI] + args, capture_output=True, text=True,
                       timeout=10)
    check_clean(p.stderr)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert "usage" in p.stderr
    assert p.stdout == ""


def test_version():
    p = cli(None, "version")
    assert p.returncode == 0
    assert p.stdout.startswith("aaax 0.1.0")


def test_ping(kernel):
    p = cli(kernel, "ping")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("PONG from " + kernel.endpoint)


def test_connect_and_system_from_environment(kernel):
    env = {"AAAX_CONNECT": kernel.endpoint, "AAAX_SYSTEM": "env-sys"}
    p = cli(kernel, "ping", connect=False, env=env)
    assert p.returncode == 0, p.stderr
    p = cli(kernel, "write", "jobs", '"from env"', connect=False, env=env)
    assert p.returncode == 0, p.stderr
    (e,) = lines(cli(kernel, "claim", "jobs", "--ack").stdout)
    assert e["from"] == "env-sys"
    # --system beats $AAAX_SYSTEM; --data (ipc) beats $AAAX_CONNECT
    bogus = {"AAAX_CONNECT": "tcp://127.0.0.1:%d" % free_port(),
             "AAAX_SYSTEM": "env-sys"}
    p = cli(kernel, "stat", "--data", kernel.data, "--system", "opt-sys",
            connect=False, env=bogus)
    assert p.returncode == 0, p.stderr
    assert "opt-sys" in [s["system"] for s in json.loads(p.stdout)["sessions"]]
    # the default system id
    p = cli(kernel, "write", "jobs", "1")
    (e,) = lines(cli(kernel, "claim", "jobs", "--ack").stdout)
    assert e["from"].startswith("cli-")


def test_no_kernel_exit_1():
    ep = "tcp://127.0.0.1:%d" % free_port()
    for args in (["ping"], ["write", "jobs", "{}"], ["tail", "events"]):
        t0 = time.time()
        p = cli(None, args[0], *args[1:], "--connect", ep, "--timeout",
                "300")
        assert p.returncode == 1, p.stderr
        assert "no answer from %s within 300 ms" % ep in p.stderr
        assert "is aaaxd running?" in p.stderr
        assert time.time() - t0 < 5


# ---- write and claim -----------------------------------------------------

ROUND_TRIP = {
    "nested": {"a": [1, {"b": [True, False, None, {"c": {"d": "deep"}}]}]},
    "unicode": "h\u00e9llo \u2603 \U0001F600 \u4e2d\u6587 \"quoted\" \\ \t",
    "nul": "a\u0000b",
    "big": 2 ** 63 - 1,
    "neg": -2 ** 63,
    "float": 3.141592653589793,
    "tenth": 0.1,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "zero": 0.0,
    "minus_zero": -0.0,
    "empty_obj": {},
    "empty_list": [],
    "": "empty key",
}


def test_write_claim_ack_round_trip(kernel):
    p = cli(kernel, "write", "jobs", json.dumps(ROUND_TRIP))
    assert p.returncode == 0, p.stderr
    wid = p.stdout.strip()
    assert len(wid) == 26
    p = cli(kernel, "claim", "jobs", "--ack", system="rt-worker")
    assert p.returncode == 0, p.stderr
    (env,) = lines(p.stdout)
    assert env["id"] == wid
    assert env["chan"] == "jobs"
    assert env["attempt"] == 1
    assert env["to"] is None and env["corr"] is None
    assert env["data"] == ROUND_TRIP
    assert isinstance(env["data"]["zero"], float)
    assert math.copysign(1, env["data"]["minus_zero"]) == -1
    assert isinstance(env["data"]["big"], int)
    # acknowledged: gone
    p = cli(kernel, "claim", "jobs", "--ack")
    assert p.returncode == 0 and p.stdout == ""


def test_scalars_keys_to_corr(kernel):
    values = ['"just text"', "42", "-7", "null", "true", "[1,2]", "2.5"]
    ids = []
    for v in values:
        p = cli(kernel, "write", "jobs", "--", v)
        assert p.returncode == 0, (v, p.stderr)
        ids.append(p.stdout.strip())
    p = cli(kernel, "write", "jobs", "{}", "--key", "k-1", "--to", "bob",
            "--corr", "c-1", system="keyed")
    assert p.returncode == 0
    # the key is scoped to (channel, writer): the same writer, the same id
    again = cli(kernel, "write", "jobs", "{}", "--key", "k-1",
                system="keyed")
    assert again.returncode == 0 and again.stdout == p.stdout
    ids.append(p.stdout.strip())
    p = cli(kernel, "claim", "jobs", "--max", "100", "--ack")
    envs = lines(p.stdout)
    assert [e["id"] for e in envs] == ids
    assert [e["data"] for e in envs[:-1]] == [json.loads(v) for v in values]
    assert envs[-1]["to"] == "bob" and envs[-1]["corr"] == "c-1"


def test_write_from_stdin(kernel):
    p = cli(kernel, "write", "jobs", "-", input='{"from": "stdin"}\n')
    assert p.returncode == 0, p.stderr
    p = cli(kernel, "claim", "jobs", "--ack")
    assert lines(p.stdout)[0]["data"] == {"from": "stdin"}


def test_claim_then_ack_with_same_system(kernel):
    wid = cli(kernel, "write", "jobs", '{"job": 1}').stdout.strip()
    p = cli(kernel, "claim", "jobs", "--lease", "60000", system="w-1")
    assert p.returncode == 0, p.stderr
    (env,) = lines(p.stdout)
    assert env["id"] == wid
    # another system does not hold the lease
    p = cli(kernel, "ack", "jobs", wid, system="w-other")
    assert p.returncode == 0 and p.stdout.strip() == "0"
    # the same system does: BYE {keep_leases: true} kept it
    p = cli(kernel, "ack", "jobs", wid, system="w-1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1"
    p = cli(kernel, "ack", "jobs", wid, system="w-1")
    assert p.stdout.strip() == "0"
    assert cli(kernel, "claim", "jobs").stdout == ""


def test_claim_then_nack(kernel):
    wid = cli(kernel, "write", "jobs", '"again"').stdout.strip()
    assert lines(cli(kernel, "claim", "jobs", system="w-2").stdout)[0][
        "id"] == wid
    p = cli(kernel, "nack", "jobs", wid, "--delay", "0", system="w-2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1"
    (env,) = lines(cli(kernel, "claim", "jobs", "--ack").stdout)
    assert env["id"] == wid and env["attempt"] == 2


def test_claim_long_poll(kernel):
    t0 = time.time()
    p = cli(kernel, "claim", "jobs", "--wait", "400", "--timeout", "1000")
    assert p.returncode == 0 and p.stdout == ""
    assert time.time() - t0 >= 0.35
    # a wait longer than --timeout: the claim is answered when a write comes
    proc = cli_popen(kernel, "claim", "jobs", "--wait", "10000", "--ack",
                     "--timeout", "1000")
    time.sleep(1.5)
    cli(kernel, "write", "jobs", '"late"')
    rc, out, err = finish(proc)
    assert rc == 0, err
    assert lines(out)[0]["data"] == "late"


# ---- JSON from what other clients wrote -----------------------------------

def write_raw(py, chan, raw_data):
    """WRITE with data given as raw msgpack bytes."""
    py.req += 1
    body = (b"\x83" + msgpack.packb("req") + msgpack.packb(py.req)
            + msgpack.packb("chan") + msgpack.packb(chan)
            + msgpack.packb("data") + raw_data)
    py.send_raw("WRITE", body)
    cmd, reply = py.wait_reply(py.req)
    assert cmd == "OK", reply
    return reply["id"]


def test_msgpack_to_json_mapping(kernel):
    py = Py(kernel.endpoint, "py-mapper", channels=["jobs"])
    cases = [
        (msgpack.packb(b"\x00\x01\xfe\xff", use_bin_type=True),
         {"$bin": base64.b64encode(b"\x00\x01\xfe\xff").decode()}),
        (msgpack.packb(msgpack.ExtType(5, b"xyz")),
         {"$ext": 5, "data": base64.b64encode(b"xyz").decode()}),
        (b"\x83\x01\xa3one\xc0\xa3nil\xc3\xa1t",
         {"1": "one", "null": "nil", "true": "t"}),
        (b"\x81\x92\x01\x02\xa1v", {"[1,2]": "v"}),
        (b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", float(2 ** 64 - 1)),
        (msgpack.packb(0.5, use_single_float=True), 0.5),
        (msgpack.packb(float("nan")), {"$float": "NaN"}),
        (msgpack.packb(float("inf")), {"$float": "Infinity"}),
        (msgpack.packb(float("-inf")), {"$float": "-Infinity"}),
        (b"\xa4a\xffb\xc3", "a\ufffdb\ufffd"),
        (msgpack.packb({"k": [1, -1, 2 ** 40]}), {"k": [1, -1, 2 ** 40]}),
    ]
    ids = [write_raw(py, "jobs", raw) for raw, _ in cases]
    py.close()
    p = cli(kernel, "claim", "jobs", "--max", "100", "--ack")
    assert p.returncode == 0, p.stderr
    envs = lines(p.stdout)
    assert [e["id"] for e in envs] == ids
    for env, (raw, want) in zip(envs, cases):
        assert env["data"] == want, (raw, env["data"])
    assert isinstance(envs[4]["data"], float)


# ---- tail ----------------------------------------------------------------

def test_tail_prints_live_messages_and_exits_after_count(kernel):
    proc = cli_popen(kernel, "tail", "events", "--count", "3")
    py = Py(kernel.endpoint, "py-writer", channels=["events"])
    n = 0
    deadline = time.time() + 15
    while proc.poll() is None and time.time() < deadline:
        cmd, reply = py.call("WRITE", chan="events", data={"n": n})
        assert cmd == "OK", reply
        n += 1
        time.sleep(0.05)
    rc, out, err = finish(proc)
    py.close()
    assert rc == 0, err
    envs = lines(out)
    assert len(envs) == 3
    assert all(e["chan"] == "events" and e["from"] == "py-writer"
               for e in envs)
    first = envs[0]["data"]["n"]
    assert [e["data"]["n"] for e in envs] == [first, first + 1, first + 2]


def test_tail_raw_and_since(kernel):
    py = Py(kernel.endpoint, "py-raw", channels=["events"])
    ids = [py.call("WRITE", chan="events", data=d)[1]["id"]
           for d in ("hello world", {"a": [1, "x"]}, 5, "line\nbreak")]
    py.close()
    p = cli(kernel, "tail", "events", "--since", "", "--raw", "--count", "4")
    assert p.returncode == 0, p.stderr
    assert p.stdout == 'hello world\n{"a":[1,"x"]}\n5\nline\nbreak\n'
    p = cli(kernel, "tail", "events", "--since", ids[1], "--count", "2")
    assert p.returncode == 0, p.stderr
    assert [e["id"] for e in lines(p.stdout)] == ids[2:]


def test_tail_heartbeat(kernel):
    p = cli(kernel, "tail", "heartbeat", "--count", "1")
    assert p.returncode == 0, p.stderr
    (env,) = lines(p.stdout)
    assert env["chan"] == "heartbeat"
    assert env["from"] == "kernel.heartbeat"
    assert env["data"]["state"] == "running"
    assert env["data"]["kernel_id"].startswith("aaax-")


def test_tail_errors(kernel):
    p = cli(kernel, "tail", "no-such-channel", "--count", "1")
    assert p.returncode == 1
    assert "ERROR 404" in p.stderr
    p = cli(kernel, "tail", "jobs", "--count", "1")  # a work-queue
    assert p.returncode == 1
    assert "ERROR 403" in p.stderr
    p = cli(kernel, "tail", "@someone-else", "--count", "1")
    assert p.returncode == 1


def test_tail_stops_with_bye_on_sigterm(kernel):
    proc = cli_popen(kernel, "tail", "events", system="tailer-term")
    wait_docked(kernel, "tailer-term")
    stat = json.loads(cli(kernel, "stat", "--data", kernel.data).stdout)
    assert "tailer-term" in [s["system"] for s in stat["sessions"]]
    proc.send_signal(signal.SIGTERM)
    rc, out, err = finish(proc, timeout=10)
    assert rc == 0, err
    # it said BYE: undocked at once, not after 3 heartbeats of silence
    assert not docked(kernel, "tailer-term")


def test_tail_stays_docked_across_heartbeats(kernel_factory):
    k = kernel_factory(config="return { heartbeat_ms = 200 }")
    proc = cli_popen(k, "tail", "events", system="tailer-alive")
    wait_docked(k, "tailer-alive")
    time.sleep(2.0)  # 10 heartbeat periods: undocked after 3 without PING
    assert proc.poll() is None
    assert docked(k, "tailer-alive")
    py = Py(k.endpoint, "py-late", channels=["events"])
    py.call("WRITE", chan="events", data="still here")
    py.close()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rc, out, err = finish(proc)
    assert rc == 0, err
    assert [e["data"] for e in lines(out)] == ["still here"]


def test_tail_docks_again_when_undocked(kernel):
    # Undocked (here by CTL kill), tail docks again and goes on (issue 5:
    # the CLI reconnects by itself); the 401 is said on stderr.
    proc = cli_popen(kernel, "tail", "events", system="tailer-kill")
    wait_docked(kernel, "tailer-kill")
    admin = Py(kernel.endpoint, "py-admin", token=kernel.token)
    cmd, reply = admin.call("CTL", op="list")
    first = [s["session"] for s in reply["systems"]
             if s["id"] == "tailer-kill"]
    cmd, reply = admin.call("CTL", op="kill", system="tailer-kill")
    assert cmd == "OK", reply
    deadline = time.time() + 20
    while True:
        cmd, reply = admin.call("CTL", op="list")
        now = [s["session"] for s in reply["systems"]
               if s["id"] == "tailer-kill"]
        if now and now != first:
            break
        assert time.time() < deadline, "tail did not dock again"
        time.sleep(0.1)
    admin.close()
    py = Py(kernel.endpoint, "py-w-kill", channels=["events"])
    py.call("WRITE", chan="events", data="after the kill")
    py.close()
    assert json.loads(proc.stdout.readline())["data"] == "after the kill"
    proc.send_signal(signal.SIGINT)
    rc, out, err = finish(proc, timeout=15)
    assert rc == 0, err
    assert "401" in err and "reconnected" in err


def test_tail_reconnects_when_kernel_goes_away(kernel):
    # The kernel gone, tail says so and keeps trying to dock again (issue
    # 5) until SIGINT, which ends it with exit 0 as always.
    proc = cli_popen(kernel, "tail", "events", "--timeout", "2000",
                     system="tailer-gone")
    wait_docked(kernel, "tailer-gone")
    assert kernel.stop() == 0
    seen = []

    def read_err():
        seen.append(proc.stderr.readline())
    t = threading.Thread(target=read_err, daemon=True)
    t.start()
    t.join(30)
    assert seen and "lost the kernel" in seen[0], seen
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    rc, out, err = finish(proc, timeout=15)
    assert rc == 0, err
    assert out == ""


# ---- mailboxes: send, tail @ME, send --wait --------------------------------

def test_send_and_tail_own_mailbox(kernel):
    proc = cli_popen(kernel, "tail", "@mb-1", "--count", "2", system="mb-1")
    deadline = time.time() + 10
    while True:  # 404 until mb-1 has docked once
        p = cli(kernel, "send", "mb-1", '{"x": 1}')
        if p.returncode == 0 or time.time() > deadline:
            break
        assert "404" in p.stderr
        time.sleep(0.1)
    assert p.returncode == 0, p.stderr
    first = p.stdout.strip()
    p = cli(kernel, "send", "@mb-1", '"two"', "--corr", first)
    assert p.returncode == 0, p.stderr
    rc, out, err = finish(proc)
    assert rc == 0, err
    envs = lines(out)
    assert [e["data"] for e in envs] == [{"x": 1}, "two"]
    assert all(e["chan"] == "@mb-1" and e["to"] == "mb-1" for e in envs)
    assert envs[1]["corr"] == first
    # tail acknowledged both: nothing waits for mb-1 any more
    py = Py(kernel.endpoint, "mb-1")
    assert py.next_push(timeout=0.7) is None
    py.close()


def test_ack_own_mailbox(kernel):
    Py(kernel.endpoint, "mb-2").close()  # known to the kernel
    mid = cli(kernel, "send", "mb-2", '"ack me"').stdout.strip()
    p = cli(kernel, "ack", "@mb-2", mid, system="mb-2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1"


def test_send_wait_gets_the_reply(kernel):
    responder = Py(kernel.endpoint, "responder")
    done = threading.Event()

    def serve():
        push = responder.next_push(timeout=15)
        if push:
            msg = push[1]["msg"]
            responder.call("SEND", to=msg["from"], corr=msg["id"],
                           data={"answer": msg["data"]["q"] * 2})
            responder.call("ACK", chan="@responder", ids=[msg["id"]])
        done.set()

    t = threading.Thread(target=serve)
    t.start()
    p = cli(kernel, "send", "responder", '{"q": 21}', "--wait", "10000",
            system="asker")
    t.join()
    responder.close()
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert len(out) == 2
    sent_id = out[0]
    reply = json.loads(out[1])
    assert reply["corr"] == sent_id
    assert reply["from"] == "responder"
    assert reply["data"] == {"answer": 42}
    # the reply was acknowledged
    py = Py(kernel.endpoint, "asker")
    assert py.next_push(timeout=0.7) is None
    py.close()


def test_send_transient_wait_gets_a_transient_reply(kernel):
    responder = Py(kernel.endpoint, "tresponder")
    done = threading.Event()

    def serve():
        push = responder.next_push(timeout=15)
        if push:
            msg = push[1]["msg"]
            assert "attempt" not in msg             # the request: transient
            responder.call("SEND", to=msg["from"], corr=msg["id"],
                           data={"answer": msg["data"]["q"] + 1},
                           transient=True)
        done.set()

    t = threading.Thread(target=serve)
    t.start()
    p = cli(kernel, "send", "tresponder", '{"q": 41}', "--transient",
            "--wait", "10000", system="tasker")
    t.join()
    responder.close()
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert len(out) == 2
    reply = json.loads(out[1])
    assert reply["corr"] == out[0] and reply["data"] == {"answer": 42}
    assert "attempt" not in reply
    # nothing was kept for either side
    py = Py(kernel.endpoint, "tasker")
    assert py.next_push(timeout=0.5) is None
    py.close()


def test_send_transient_to_an_undocked_system_fails(kernel):
    Py(kernel.endpoint, "gone").close()
    p = cli(kernel, "send", "gone", "{}", "--transient")
    assert p.returncode == 1
    assert "404" in p.stderr and "not docked" in p.stderr


def test_send_wait_times_out(kernel):
    Py(kernel.endpoint, "silent").close()
    t0 = time.time()
    p = cli(kernel, "send", "silent", "{}", "--wait", "600")
    assert p.returncode == 1
    assert "no reply" in p.stderr
    assert 0.5 < time.time() - t0 < 10


# ---- stat ----------------------------------------------------------------

def test_stat_with_data_dir(kernel):
    # --data alone: the token, and ipc://DATA/aaax.sock
    p = cli(kernel, "stat", "--data", kernel.data, connect=False)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert st["heartbeat"]["state"] == "running"
    for key in ("version", "counters", "store", "channels", "sessions"):
        assert key in st
    assert "req" not in st
    assert st["channels"]["jobs"]["kind"] == "work-queue"
    assert p.stdout.startswith("{\n  ")  # indented
    # over tcp with the token
    assert cli(kernel, "stat", "--data", kernel.data).returncode == 0


def test_stat_without_token_fails(kernel, tmp_path):
    p = cli(kernel, "stat")
    assert p.returncode == 1
    assert "ERROR 403" in p.stderr or "ERROR 401" in p.stderr
    p = cli(kernel, "stat", "--data", str(tmp_path))
    assert p.returncode == 1
    assert "session.token" in p.stderr


# ---- errors --------------------------------------------------------------

def test_kernel_errors_exit_1_with_code(kernel):
    p = cli(kernel, "write", "no-such-channel", "{}")
    assert p.returncode == 1
    assert "aaax: ERROR 404: " in p.stderr
    assert p.stdout == ""
    p = cli(kernel, "claim", "events")
    assert p.returncode == 1 and "ERROR 403" in p.stderr
    p = cli(kernel, "send", "nobody-ever", "{}")
    assert p.returncode == 1 and "ERROR 404" in p.stderr
    p = cli(kernel, "nack", "@me-x", "x", system="me-x")
    assert p.returncode == 1 and "ERROR 403" in p.stderr
    p = cli(kernel, "write", "jobs", "{}", system="kernel.fake")
    assert p.returncode == 1 and "ERROR 403" in p.stderr


@pytest.mark.parametrize("text,why", [
    ("{bad", "invalid JSON"),
    ("{'a': 1}", "invalid JSON"),
    ("1 2", "invalid JSON"),
    ("", "invalid JSON"),
    ("hello", "invalid JSON"),
    ('{"a": 1, "a": 2}', "duplicate"),
    ("[" * 33 + "]" * 33, "deeper than 32"),
    ("123456789012345678901234567890", "invalid JSON"),
])
def test_bad_json_is_a_usage_error(kernel, text, why):
    p = cli(kernel, "write", "jobs", "--", text)
    assert p.returncode == 2, p.stderr
    assert why in p.stderr
    p = cli(kernel, "send", "anyone", "--", text)
    assert p.returncode == 2
    assert cli(kernel, "claim", "jobs").stdout == ""  # nothing written


def test_nesting_limits(kernel):
    # 32 levels: the CLI takes it, the kernel's body limit (32 levels, the
    # WRITE body being one of them) refuses it
    p = cli(kernel, "write", "jobs", "[" * 32 + "]" * 32)
    assert p.returncode == 1 and "ERROR 400" in p.stderr
    # what goes through write, claim (msgpack-c in chan_client reads at
    # most 31 nested non-empty containers: reply, msgs, envelope, 28 of
    # data) and back to JSON
    ok = "[" * 29 + "]" * 29
    p = cli(kernel, "write", "jobs", ok)
    assert p.returncode == 0, p.stderr
    (env,) = lines(cli(kernel, "claim", "jobs", "--ack").stdout)
    assert env["data"] == json.loads(ok)


def test_what_the_kernel_accepts_can_be_claimed(kernel):
    # the kernel refuses data nested deeper than 28 non-empty containers, so
    # every reply that carries a payload stays within msgpack-c's 32 levels
    deep = "[" * 31 + "]" * 31
    p = cli(kernel, "write", "jobs", deep)
    assert p.returncode == 1
    assert "ERROR 400" in p.stderr and "too deep" in p.stderr


# ---- against a fake kernel: DROPPED --------------------------------------

def envelope(mid, data):
    return {"id": mid, "ts": 1.5, "from": "w", "chan": "events", "to": None,
            "corr": None, "data": data}


def test_tail_resubscribes_after_dropped():
    """A fake kernel drops the subscription after one message; tail must
    warn, SUB again with since = the last id, and skip replayed ids."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    subs = []
    stop = threading.Event()

    def push(rid, cmd, body):
        router.send_multipart([rid, cmd, msgpack.packb(body)])

    def serve():
        while not stop.is_set():
            if not router.poll(50):
                continue
            rid, cmd, raw = router.recv_multipart()
            body = msgpack.unpackb(raw)
            req = body.get("req")
            if cmd == b"HELLO":
                push(rid, b"OK", {"req": req, "session": "s", "kernel": "k",
                                  "grants": ["read:events"],
                                  "heartbeat_ms": 1000})
            elif cmd == b"PING":
                push(rid, b"PONG", {"req": req, "ts": time.time()})
            elif cmd == b"SUB":
                subs.append(body)
                push(rid, b"OK", {"req": req})
                if len(subs) == 1:
                    push(rid, b"MSG", {"sub": "events",
                                       "msg": envelope("0000000000000000000000000A", 1)})
                    push(rid, b"DROPPED", {"sub": "events",
                                           "reason": "too slow"})
                else:
                    # a replay of what was printed, then the next one
                    push(rid, b"MSG", {"sub": "events",
                                       "msg": envelope("0000000000000000000000000A", 1)})
                    push(rid, b"MSG", {"sub": "events",
                                       "msg": envelope("0000000000000000000000000B", 2)})
            else:  # UNSUB, BYE, ...
                push(rid, b"OK", {"req": req})

    t = threading.Thread(target=serve)
    t.start()
    try:
        p = subprocess.run([AAAX_CLI, "tail", "events", "--count", "2",
                            "--connect", "tcp://127.0.0.1:%d" % port],
                           capture_output=True, text=True, timeout=20)
    finally:
        stop.set()
        t.join()
        router.close()
    check_clean(p.stderr)
    assert p.returncode == 0, p.stderr
    assert [e["data"] for e in lines(p.stdout)] == [1, 2]
    assert "dropped" in p.stderr and "too slow" in p.stderr
    assert len(subs) == 2
    assert "since" not in subs[0]
    assert subs[1]["since"] == "0000000000000000000000000A"
