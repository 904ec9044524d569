"""Endpoints, the data directory, the command line and the configuration
file (contract sections 1, 8, 10; docs/PROTOCOL.md section 1)."""

import os
import re
import socket
import stat
import subprocess

import pytest
import msgpack
import time
import zmq

from conftest import AAAXD, free_port, wait_until

import aaax


def run(args, timeout=15):
    return subprocess.run([AAAXD] + list(args), capture_output=True,
                          text=True, timeout=timeout)


def pings(endpoint, timeout=2.0):
    c = aaax.Client(endpoint, timeout=timeout)
    try:
        return isinstance(c.ping(), float)
    except aaax.AaaxTimeout:
        return False
    finally:
        c.close()


# ---- the command line --------------------------------------------------------

def test_help():
    p = run(["--help"])
    assert p.returncode == 0
    for opt in ("--data", "--bind", "--tap", "--config", "--insecure",
                "--print-config", "--check-config", "--version"):
        assert opt in p.stdout


def test_version():
    p = run(["--version"])
    assert p.returncode == 0
    assert re.match(r"aaaxd \d+\.\d+\.\d+", p.stdout)
    assert "AAAX/1" in p.stdout


@pytest.mark.parametrize("args", [["--no-such-option"], ["--bind"],
                                  ["stray-argument"], ["-x"]])
def test_bad_options_exit_2(args):
    p = run(args)
    assert p.returncode == 2
    assert p.stderr.strip()


def test_print_config_is_a_valid_config(tmp_path):
    p = run(["--print-config"])
    assert p.returncode == 0
    text = p.stdout
    assert "return {" in text
    for key in ("heartbeat_ms", "max_frame", "channels", "policy",
                "127.0.0.1:5670", "127.0.0.1:5671"):
        assert key in text
    cfg = tmp_path / "defaults.lua"
    cfg.write_text(text)
    q = run(["--check-config", "--config", str(cfg), "--data",
             str(tmp_path / "d")])
    assert q.returncode == 0, q.stderr
    assert "OK" in q.stdout
    # --check-config starts nothing: no data directory was made
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("body,word", [
    ("return { heartbeat_ms = 'fast' }", "heartbeat_ms"),
    ("return { no_such_key = 1 }", "no_such_key"),
    ("return { channels = { { name = 'x', kind = 'pipe' } } }", "kind"),
    ("return { channels = { { name = 'heartbeat', kind = 'broadcast' } } }",
     "heartbeat"),
    ("return { policy = { { subject = '*', action = 'chan.read', "
     "target = '*', effect = 'perhaps' } } }", "effect"),
    ("return {", "config.lua"),
    ("return 5", "table"),
])
def test_check_config_rejects_bad_files(tmp_path, body, word):
    cfg = tmp_path / "config.lua"
    cfg.write_text(body)
    p = run(["--check-config", "--config", str(cfg)])
    assert p.returncode == 1
    assert word in p.stderr, p.stderr
    # and the kernel refuses to start with it
    p = run(["--config", str(cfg), "--data", str(tmp_path / "d"), "--bind",
             "tcp://127.0.0.1:%d" % free_port(), "--tap", ""])
    assert p.returncode == 1
    assert word in p.stderr


def test_missing_config_file_refuses_to_start(tmp_path):
    p = run(["--config", str(tmp_path / "absent.lua"), "--check-config"])
    assert p.returncode != 0
    assert "absent.lua" in p.stderr


# ---- endpoints ---------------------------------------------------------------

def test_data_bind_and_tap_override_the_defaults(kernel):
    # the fixture passes --data, --bind and --tap: they are what serves
    assert pings(kernel.endpoint)
    assert os.path.isdir(kernel.data)
    assert os.path.exists(os.path.join(kernel.data, "session.token"))
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(kernel.tap)
    sub.subscribe(b"heartbeat")
    try:
        assert sub.poll(5000), "no heartbeat on the tap given by --tap"
        frames = sub.recv_multipart()
        assert frames[0] == b"heartbeat"
    finally:
        sub.close()


def test_bind_given_twice_serves_both(kernel_factory):
    second = "tcp://127.0.0.1:%d" % free_port()
    k = kernel_factory(extra_args=["--bind", second])
    assert pings(k.endpoint) and pings(second)
    a = k.client("on-first", channels=["jobs"])
    b = aaax.Client(second, system="on-second", channels=["jobs"])
    try:
        b.dock()
        wid = a.write("jobs", "via first")
        msgs = b.claim("jobs")
        assert [m["id"] for m in msgs] == [wid]
        assert msgs[0]["from"] == "on-first"
    finally:
        b.close()


def test_bind_replaces_the_tcp_default(kernel):
    """--bind replaces tcp://127.0.0.1:5670 (checked on a free port: the
    fixture's own --bind is the only tcp endpoint)."""
    log = kernel.read_log()
    served = re.findall(r"serving (\S+)", log)
    tcp = [e for e in served if e.startswith("tcp://")]
    assert tcp == [kernel.endpoint], served


def test_empty_tap_binds_no_tap(kernel_factory):
    k = kernel_factory(extra_args=["--tap", ""])
    assert pings(k.endpoint)
    assert "tap on" not in k.read_log()
    s = socket.socket()
    try:
        assert s.connect_ex(("127.0.0.1", k.tap_port)) != 0
    finally:
        s.close()


def test_ipc_endpoint_works(kernel):
    path = os.path.join(kernel.data, "aaax.sock")
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    c = kernel.client("over-ipc", endpoint=kernel.ipc, channels=["jobs"])
    wid = c.write("jobs", {"via": "ipc"})
    t = kernel.client("over-tcp", channels=["jobs"])
    assert [m["id"] for m in t.claim("jobs")] == [wid]


def test_data_directory_mode_0700(kernel_factory, tmp_path):
    k = kernel_factory(start=False)
    os.makedirs(k.data, mode=0o755)
    os.chmod(k.data, 0o755)
    k.start()
    assert stat.S_IMODE(os.stat(k.data).st_mode) == 0o700
    k2 = kernel_factory()            # made by the kernel itself
    assert stat.S_IMODE(os.stat(k2.data).st_mode) == 0o700


def test_session_token_file(kernel):
    path = os.path.join(kernel.data, "session.token")
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    raw = open(path).read()
    tok = raw.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", tok), raw
    assert aaax.read_token(kernel.data) == tok


def test_session_token_changes_at_each_boot(kernel):
    seen = {kernel.token}
    for _ in range(2):
        assert kernel.stop() == 0
        kernel.start()
        seen.add(kernel.token)
        st = os.stat(os.path.join(kernel.data, "session.token"))
        assert stat.S_IMODE(st.st_mode) == 0o600
    assert len(seen) == 3


def test_stale_ipc_socket_is_replaced(kernel_factory):
    k = kernel_factory(start=False)
    os.makedirs(k.data, mode=0o700)
    path = os.path.join(k.data, "aaax.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)              # a socket file nobody accepts on
    s.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    assert probe.connect_ex(path) != 0          # stale: nobody accepts
    probe.close()
    k.start()
    assert pings(k.ipc)                         # replaced by a live one
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    assert probe.connect_ex(path) == 0
    probe.close()


def test_second_kernel_on_same_data_dir_fails(kernel_factory):
    k = kernel_factory()
    p = run(["--data", k.data, "--bind", "tcp://127.0.0.1:%d" % free_port(),
             "--tap", "tcp://127.0.0.1:%d" % free_port()])
    assert p.returncode != 0
    assert k.data in p.stderr and ("another aaaxd" in p.stderr
                                   or "live" in p.stderr), p.stderr
    # the first kernel is untouched, ipc included
    assert k.alive()
    assert os.path.exists(os.path.join(k.data, "aaax.sock"))
    assert pings(k.ipc) and pings(k.endpoint)


def test_second_kernel_blocked_by_lock_without_socket(kernel_factory):
    """Even with the socket file gone, the lock keeps a second kernel off."""
    k = kernel_factory()
    os.unlink(os.path.join(k.data, "aaax.sock"))
    p = run(["--data", k.data, "--bind", "tcp://127.0.0.1:%d" % free_port(),
             "--tap", ""])
    assert p.returncode != 0
    assert "aaaxd.lock" in p.stderr or "another aaaxd" in p.stderr, p.stderr
    assert pings(k.endpoint)


def _curve_dealer(endpoint, server_key, pub=None, sec=None):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    if server_key:
        if pub is None:
            pub, sec = zmq.curve_keypair()
        s.curve_serverkey = server_key
        s.curve_publickey = pub
        s.curve_secretkey = sec
    s.connect(endpoint)
    return s


def _hello(s, system, timeout=3000):
    s.send_multipart([b"HELLO", msgpack.packb(
        {"req": 1, "system": system, "version": 1})])
    if not s.poll(timeout):
        return None
    cmd, body = s.recv_multipart()
    return cmd.decode(), msgpack.unpackb(body)


def test_non_loopback_is_curve_without_a_flag(kernel_factory):
    """Contract section 1: a kernel bound to a non-loopback address uses
    CURVE on both endpoints, with no flag; a plaintext client is never
    answered, an authorized key docks, and the tap wants a known key."""
    port, tport = free_port(), free_port()
    k = kernel_factory(start=False)
    k.endpoint = "tcp://0.0.0.0:%d" % port
    k.tap = "tcp://0.0.0.0:%d" % tport
    k.start(wait=False)
    deadline = time.time() + 15
    cert = os.path.join(k.data, "curve", "server.cert")
    while not os.path.exists(cert) and time.time() < deadline:
        time.sleep(0.05)
    import zmq.auth
    server_key, _ = zmq.auth.load_certificate(cert)
    ep = "tcp://127.0.0.1:%d" % port
    # The kernel answers over CURVE once it runs (any key: 401 at HELLO).
    got = None
    while time.time() < deadline and got is None:
        s = _curve_dealer(ep, server_key)
        got = _hello(s, "probe", 500)
        s.close()
    assert got and got[0] == "ERROR" and got[1]["code"] == 401, got
    plain = _curve_dealer(ep, None)
    assert _hello(plain, "plain-one", 1500) is None
    plain.close()
    pub, sec = zmq.curve_keypair()
    with open(os.path.join(k.data, "curve", "authorized"), "a") as f:
        f.write("%s tapper\n" % pub.decode())
    s = _curve_dealer(ep, server_key, pub, sec)
    got = _hello(s, "tapper")
    assert got and got[0] == "OK", got
    s.close()
    # The tap: a plain subscriber gets nothing, an authorized key the
    # heartbeat.
    ctx = zmq.Context.instance()
    subs = []
    for keyed in (False, True):
        sub = ctx.socket(zmq.SUB)
        sub.linger = 0
        if keyed:
            sub.curve_serverkey = server_key
            sub.curve_publickey = pub
            sub.curve_secretkey = sec
        sub.setsockopt(zmq.SUBSCRIBE, b"heartbeat")
        sub.connect("tcp://127.0.0.1:%d" % tport)
        subs.append(sub)
    try:
        assert subs[1].poll(5000), "no heartbeat on the CURVE tap"
        assert subs[1].recv_multipart()[0] == b"heartbeat"
        assert not subs[0].poll(200)
    finally:
        for sub in subs:
            sub.close()


def test_non_loopback_checks_in_config_too(tmp_path):
    cfg = tmp_path / "c.lua"
    cfg.write_text('return { bind = { "tcp://0.0.0.0:%d" } }' % free_port())
    p = run(["--check-config", "--config", str(cfg)])
    assert p.returncode == 0, p.stderr
    cfg.write_text('return { curve = "all", insecure = true }')
    p = run(["--check-config", "--config", str(cfg)])
    assert p.returncode == 1 and "contradict" in p.stderr
    p = run(["--check-config", "--curve", "sometimes"])
    assert p.returncode == 2 and "--curve" in p.stderr


def test_non_loopback_with_insecure_starts(kernel_factory):
    port = free_port()
    k = kernel_factory(start=False, extra_args=["--insecure"])
    k.endpoint = "tcp://0.0.0.0:%d" % port
    k.start(wait=False)
    k.endpoint = "tcp://127.0.0.1:%d" % port
    k.wait_ready()
    assert pings(k.endpoint)
    # It says so: in the heartbeat and in CTL list (aaax ps).
    c = k.client("admin-ins", privileged=True, token=k.token)
    st = c.stat()
    assert st["heartbeat"]["insecure"] is True
    eps = {e["endpoint"]: e["curve"] for e in st["heartbeat"]["endpoints"]}
    assert eps["tcp://0.0.0.0:%d" % port] is False
    assert c.ctl("list")["insecure"] is True
    lc = c.kernel_request("kernel.lifecycle", {"op": "list"})
    assert lc["insecure"] is True, lc


def test_heartbeat_ms_from_config(kernel_factory):
    k = kernel_factory(config="return { heartbeat_ms = 200 }")
    c = k.client("hb")
    assert c.heartbeat_ms == 200


def test_config_channels_replace_the_defaults(kernel_factory):
    k = kernel_factory(config="""return {
      channels = { { name = "only", kind = "work-queue" } },
      policy = { { subject = "*", action = "chan.*", target = "*",
                   effect = "allow" } } }""")
    c = k.client("cfg", channels=["only", "jobs", "only.dlq"])
    assert "write:only" in c.grants and "claim:only" in c.grants
    assert "claim:only.dlq" in c.grants
    assert not any(g.endswith(":jobs") for g in c.grants)
    with pytest.raises(aaax.AaaxError) as e:
        c.write("jobs", 1)
    assert e.value.code == 404


def test_policy_from_a_separate_file(kernel_factory):
    # a relative path is relative to the configuration file's directory
    k = kernel_factory(config='return { policy = "rules/policy.lua" }',
                       start=False)
    os.makedirs(os.path.join(k.tmp, "rules"))
    with open(os.path.join(k.tmp, "rules", "policy.lua"), "w") as f:
        f.write("""return {
      { subject = "*", action = "chan.write", target = "jobs", effect = "allow" },
    }""")
    k.start()
    c = k.client("pf", channels=["jobs", "events"])
    assert "write:jobs" in c.grants
    assert "claim:jobs" not in c.grants and "read:events" not in c.grants


def _serve(args, ep, timeout=10.0):
    """Starts aaaxd with args, waits for PING on ep; returns the process."""
    p = subprocess.Popen([AAAXD] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: p.poll() is not None or pings(ep, 0.2), timeout,
                   what="aaaxd answering on %s" % ep)
    except AssertionError:
        p.kill()
        raise
    assert p.poll() is None, p.stdout.read().decode()
    return p


def _stop(p):
    p.terminate()
    assert p.wait(10) == 0


def test_config_file_sets_data_bind_and_tap(tmp_path):
    port, tap = free_port(), free_port()
    data = tmp_path / "from-config"
    cfg = tmp_path / "c.lua"
    cfg.write_text('return { data = "%s", bind = { "tcp://127.0.0.1:%d" }, '
                   'tap = "tcp://127.0.0.1:%d" }' % (data, port, tap))
    p = _serve(["--config", str(cfg)], "tcp://127.0.0.1:%d" % port)
    try:
        assert (data / "session.token").exists()
        assert pings("ipc://%s/aaax.sock" % data)
        s = socket.socket()
        try:
            assert s.connect_ex(("127.0.0.1", tap)) == 0
        finally:
            s.close()
    finally:
        _stop(p)


def test_command_line_beats_the_config_file(tmp_path):
    cport, lport = free_port(), free_port()
    cfg = tmp_path / "c.lua"
    ctap, ltap = free_port(), free_port()
    cfg.write_text('return { data = "%s", bind = { "tcp://127.0.0.1:%d" }, '
                   'tap = "tcp://127.0.0.1:%d" }'
                   % (tmp_path / "cfg-data", cport, ctap))
    ep = "tcp://127.0.0.1:%d" % lport
    p = _serve(["--config", str(cfg), "--data", str(tmp_path / "cli-data"),
                "--bind", ep, "--tap", "tcp://127.0.0.1:%d" % ltap], ep)
    try:
        assert (tmp_path / "cli-data" / "session.token").exists()
        assert not (tmp_path / "cfg-data").exists()
        for port, open_ in ((cport, False), (ctap, False), (ltap, True)):
            s = socket.socket()
            try:
                assert (s.connect_ex(("127.0.0.1", port)) == 0) == open_
            finally:
                s.close()
    finally:
        _stop(p)


def test_max_sessions(kernel_factory):
    """max_sessions bounds the docked sessions (the kernel's own actors,
    docked too, may count against it)."""
    k = kernel_factory(config="return { max_sessions = 3 }")
    docked = []
    with pytest.raises(aaax.AaaxError) as e:
        for i in range(4):
            docked.append(k.client("s%d" % i))
    assert e.value.code == 429
    assert 2 <= len(docked) <= 3
    docked[0].bye()
    k.client("latecomer")


def test_files_in_the_data_directory(kernel):
    modes = {name: stat.S_IMODE(os.stat(os.path.join(kernel.data, name))
                                .st_mode)
             for name in ("store", "session.token", "aaax.sock",
                          "aaaxd.lock")}
    assert modes == {"store": 0o700, "session.token": 0o600,
                     "aaax.sock": 0o600, "aaaxd.lock": 0o600}


def test_empty_tap_in_config_binds_no_tap(tmp_path):
    port = free_port()
    cfg = tmp_path / "c.lua"
    cfg.write_text('return { data = "%s", bind = { "tcp://127.0.0.1:%d" }, '
                   'tap = "" }' % (tmp_path / "d", port))
    p = run(["--check-config", "--config", str(cfg)])
    assert p.returncode == 0, p.stderr
    p = _serve(["--config", str(cfg)], "tcp://127.0.0.1:%d" % port)
    _stop(p)
