"""`aaax bench pub|queue|rpc` against a real aaaxd (docs/CLI.md): each mode
with small counts exits 0 with the JSON summary and nothing lost; usage
errors exit 2; no progress bar when stderr is not a terminal."""

import json
import os
import subprocess

import pytest

from conftest import AAAX_CLI

pytestmark = pytest.mark.skipif(
    not os.path.exists(AAAX_CLI),
    reason="the aaax CLI binary %s does not exist" % AAAX_CLI)

LATENCY_KEYS = {"samples", "p50", "p99", "p99_9", "max"}


def bench(kernel, *args, timeout=60):
    cmd = [AAAX_CLI, "bench"] + list(args)
    if kernel is not None:
        cmd += ["--connect", kernel.endpoint]
    env = dict(os.environ)
    env.pop("AAAX_CONNECT", None)
    env.pop("AAAX_SYSTEM", None)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=env)
    for mark in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert mark not in p.stderr, p.stderr
    return p


def summary(p):
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr  # no progress bar when piped
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout
    return json.loads(lines[0])


def check_latency(lat, samples):
    assert set(lat) == LATENCY_KEYS
    assert lat["samples"] == samples
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]


def test_pub(kernel):
    s = summary(bench(kernel, "pub", "--count", "2000", "--publishers", "2",
                      "--subscribers", "2", "--size", "100", "--json"))
    assert s["mode"] == "pub" and s["channel"] == "events"
    assert s["ok"] is True and s["error"] is None
    assert s["sent"] == 2000 and s["lost"] == 0 and s["dropped"] == 0
    assert s["received"] == 2 * s["sent"]
    assert [x["received"] for x in s["per_subscriber"]] == [2000, 2000]
    assert s["publish"]["msgs"] == 2000 and s["publish"]["msgs_per_s"] > 0
    assert s["publish"]["mb_per_s"] > 0
    check_latency(s["latency_us"], 4000)


def test_queue(kernel):
    s = summary(bench(kernel, "queue", "--count", "2000", "--publishers", "2",
                      "--subscribers", "2", "--max", "50", "--json"))
    assert s["mode"] == "queue" and s["channel"] == "jobs"
    assert s["ok"] is True and s["lost"] == 0 and s["foreign"] == 0
    assert s["sent"] == s["received"] == s["claimed"] == 2000
    assert s["enqueue"]["msgs"] == 2000 and s["end_to_end"]["msgs"] == 2000
    assert s["end_to_end"]["msgs_per_s"] > 0
    check_latency(s["latency_us"], 2000)
    # Everything was acknowledged: a later claim finds nothing.
    c = kernel.client("after", channels=["jobs"])
    assert c.claim("jobs", max=10) == []


def test_queue_leaves_foreign_messages(kernel):
    c = kernel.client("other", channels=["jobs"])
    c.write("jobs", {"not": "ours"})
    s = summary(bench(kernel, "queue", "--count", "500", "--json"))
    assert s["sent"] == s["received"] == 500 and s["foreign"] == 1
    # It was not acknowledged: released at the bench's BYE, claimable.
    got = c.claim("jobs", max=10, wait_ms=2000)
    assert [m["data"] for m in got] == [{"not": "ours"}]


def test_rpc(kernel):
    s = summary(bench(kernel, "rpc", "--count", "2000", "--json"))
    assert s["mode"] == "rpc" and s["ok"] is True and s["lost"] == 0
    assert s["warmup"] == 200 and s["round_trips"] == 2000
    assert s["sent"] == s["received"] == 2200
    assert s["rate"]["msgs_per_s"] > 0
    check_latency(s["latency_us"], 2000)


def test_pub_batched(kernel):
    s = summary(bench(kernel, "pub", "--count", "5000", "--subscribers", "2",
                      "--batch", "64", "--size", "100", "--json"))
    assert s["ok"] is True and s["lost"] == 0 and s["dropped"] == 0
    assert s["write_batch"] == 64
    assert s["sent"] == 5000 and s["received"] == 10000
    assert [x["received"] for x in s["per_subscriber"]] == [5000, 5000]
    check_latency(s["latency_us"], 10000)


def test_pub_batch_not_dividing_the_count(kernel):
    s = summary(bench(kernel, "pub", "--count", "1001", "--publishers", "2",
                      "--batch", "100", "--json"))
    assert s["ok"] is True and s["sent"] == 1001 and s["received"] == 1001


def test_queue_batched(kernel):
    s = summary(bench(kernel, "queue", "--count", "3000", "--batch", "100",
                      "--max", "200", "--json"))
    assert s["ok"] is True and s["write_batch"] == 100
    assert s["sent"] == s["received"] == s["claimed"] == 3000
    c = kernel.client("after", channels=["jobs"])
    assert c.claim("jobs", max=10) == []


def test_rpc_transient(kernel):
    s = summary(bench(kernel, "rpc", "--count", "1000", "--transient",
                      "--json"))
    assert s["ok"] is True and s["transient"] is True
    assert s["round_trips"] == 1000 and s["sent"] == s["received"] == 1100
    check_latency(s["latency_us"], 1000)
    # Nothing was stored: no mailbox message is left for either side.
    st = kernel.client("adm", privileged=True, token=kernel.token).stat()
    assert st["store"]["ops"] < 50


def test_human_table(kernel):
    p = bench(kernel, "pub", "--count", "500")
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr
    assert "msgs/s" in p.stdout and "MB/s" in p.stdout
    assert "p99.9" in p.stdout


@pytest.mark.parametrize("args", [
    [],
    ["frob"],
    ["pub", "--size", "3"],
    ["pub", "--size", "2000000"],
    ["pub", "--count", "0"],
    ["pub", "--publishers", "0"],
    ["pub", "--subscribers", "65"],
    ["pub", "--max", "10"],
    ["queue", "--subscribers", "0"],
    ["rpc", "--publishers", "2"],
    ["pub", "--frob"],
    ["pub", "queue"],
    ["pub", "--channel", "@someone"],
    ["pub", "--batch", "0"],
    ["pub", "--batch", "10001"],
    ["rpc", "--batch", "2"],
    ["pub", "--transient"],
])
def test_usage_errors(args):
    p = bench(None, *args, "--connect", "tcp://127.0.0.1:1")
    assert p.returncode == 2, (args, p.stderr)
    assert "usage: aaax bench" in p.stderr


def test_help():
    p = bench(None, "--help")
    assert p.returncode == 0
    assert "aaax bench pub|queue|rpc" in p.stdout and "Examples:" in p.stdout


def test_no_kernel_fails():
    p = bench(None, "pub", "--count", "10", "--connect", "tcp://127.0.0.1:1",
              "--timeout", "1500")
    assert p.returncode == 1
    assert "aaax bench:" in p.stderr


def test_not_granted(kernel):
    # A work-queue nobody may write: the bench says so and exits 1.
    p = bench(kernel, "pub", "--channel", "jobs", "--count", "10")
    assert p.returncode == 1
    assert "not granted" in p.stderr


def test_progress_bar_on_a_terminal(kernel):
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.run(
            [AAAX_CLI, "bench", "pub", "--count", "20000", "--json",
             "--connect", kernel.endpoint],
            stdout=subprocess.PIPE, stderr=slave, timeout=60)
        os.close(slave)
        slave = None
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0, err
    assert b"\r" in err and b"pub   [" in err
    # stdout (piped) still holds only the summary.
    assert json.loads(p.stdout)["lost"] == 0
