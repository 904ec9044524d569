"""The aaax CLI's kernel subcommands against a real aaaxd (docs/CLI.md):
ps, pause / resume / stop / kill, gate (with --wait-approval), approve,
deny, approvals, cap grant / list / revoke / verify, policy reload, and
audit tail / show / verify read offline from the data directory. One fake
kernel (a Python ROUTER) checks what a real one cannot be made to do on
demand: stale and forged answers in the mailbox around the real one."""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import msgpack
import pytest
import zmq

from conftest import AAAX_CLI, wait_until

pytestmark = pytest.mark.skipif(
    not os.path.exists(AAAX_CLI),
    reason="the aaax CLI binary %s does not exist (build it, or set "
           "AAAX_CLI)" % AAAX_CLI)

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

POLICY_RULES = """
    { subject = "*", action = "fs.read", target = "*", effect = "allow",
      name = "read-anything" },
    { subject = "*", action = "fs.delete", target = "*", effect = "deny",
      name = "no-delete" },
    { subject = "agent-*", action = "net.fetch", target = "https://*",
      effect = "ask", name = "agents-fetch" },
    { subject = "*", action = "chan.write", target = "jobs", effect = "allow" },
    { subject = "w*", action = "chan.claim", target = "jobs", effect = "allow" },
    { subject = "w*", action = "tool.run", target = "*", effect = "allow" },
"""

CONFIG = """
return {
  policy = {%s},
  audit_checkpoint_every = 5,
  ask_timeout_s = 60,
}
""" % POLICY_RULES

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_clean(stderr):
    for mark in SANITIZER_MARKS:
        assert mark not in stderr, "sanitizer report from aaax:\n" + stderr


def env():
    e = dict(os.environ)
    e.pop("AAAX_CONNECT", None)
    e.pop("AAAX_SYSTEM", None)
    return e


def aaax(*args, kernel=None, system=None, priv=False, input=None,
         timeout=60):
    """Runs `aaax ARGS...`: with kernel, connected to its tcp endpoint, or
    (priv) docked privileged with --data over its ipc endpoint."""
    cmd = [AAAX_CLI] + list(args)
    if kernel is not None:
        if priv:
            cmd += ["--data", kernel.data]
        else:
            cmd += ["--connect", kernel.endpoint]
    if system:
        cmd += ["--system", system]
    p = subprocess.run(cmd, capture_output=True, text=True, input=input,
                       timeout=timeout, env=env())
    check_clean(p.stderr)
    return p


def popen(*args, kernel=None, system=None):
    cmd = [AAAX_CLI] + list(args)
    if kernel is not None:
        cmd += ["--connect", kernel.endpoint]
    if system:
        cmd += ["--system", system]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())


def finish(proc, timeout=30):
    out, err = proc.communicate(timeout=timeout)
    check_clean(err)
    return proc.returncode, out, err


def lines(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def one(text):
    got = lines(text)
    assert len(got) == 1, text
    return got[0]


@pytest.fixture
def k(kernel_factory):
    """A kernel with the test policy and a checkpoint every 5 records."""
    return kernel_factory(config=CONFIG)


# ---- help and usage (no kernel) --------------------------------------------

KERNEL_SUBCOMMANDS = {
    "ps": ["--json"],
    "pause": ["--reason"],
    "resume": ["--reason"],
    "stop": ["--reason", "--grace"],
    "kill": ["--reason"],
    "gate": ["--args", "--wait-approval"],
    "cap grant": ["--rights", "--ttl"],
    "cap list": [],
    "cap revoke": [],
    "cap verify": ["--pub", "--data"],
    "approve": ["--scope"],
    "deny": ["--reason"],
    "approvals": ["--revoke"],
    "policy reload": [],
    "audit tail": ["-f", "--follow", "-n", "--lines", "--data"],
    "audit show": ["--data"],
    "audit verify": ["--pub", "--data"],
}
ONLINE_OPTIONS = ["--connect", "--system", "--data", "--timeout", "--help"]


def test_main_help_lists_kernel_subcommands():
    p = aaax("--help")
    assert p.returncode == 0
    for sub in KERNEL_SUBCOMMANDS:
        assert "  " + sub + " " in p.stdout, sub


@pytest.mark.parametrize("sub", sorted(KERNEL_SUBCOMMANDS))
def test_help_of_kernel_subcommand(sub):
    words = sub.split()
    p = aaax(*words, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: aaax " + sub)
    offline = sub.startswith("audit") or sub == "cap verify"
    for opt in KERNEL_SUBCOMMANDS[sub] + ([] if offline else ONLINE_OPTIONS):
        assert opt in p.stdout, (sub, opt)
    assert "Exit codes" in p.stdout
    assert "xample" in p.stdout
    assert aaax(*words, "-h").stdout == p.stdout
    assert aaax("help", *words).stdout == p.stdout


def test_gate_help_documents_its_exit_codes():
    out = aaax("gate", "--help").stdout
    assert "0  allow" in out and "3  deny" in out and "4  ask" in out


@pytest.mark.parametrize("group,subs", [
    ("cap", ["grant", "list", "revoke", "verify"]),
    ("audit", ["tail", "show", "verify"]),
    ("policy", ["reload"]),
])
def test_two_word_groups(group, subs):
    p = aaax(group, "--help")
    assert p.returncode == 0
    for s in subs:
        assert "%s %s" % (group, s) in p.stdout
    assert aaax("help", group).stdout == p.stdout
    p = aaax(group)
    assert p.returncode == 2 and "needs a subcommand" in p.stderr
    p = aaax(group, "frobnicate")
    assert p.returncode == 2
    assert "unknown subcommand '%s frobnicate'" % group in p.stderr


@pytest.mark.parametrize("args", [
    ["ps", "extra"],
    ["pause"],
    ["pause", "a", "b"],
    ["pause", "x", "--grace", "5"],
    ["stop", "x", "--grace", "700000"],
    ["stop", "x", "--grace", "soon"],
    ["gate"],
    ["gate", "fs.read"],
    ["gate", "fs.read", "x", "--args", "[1, 2]"],
    ["gate", "fs.read", "x", "--json"],
    ["approve"],
    ["approve", "1", "--scope", "forever"],
    ["deny"],
    ["approvals", "extra"],
    ["cap", "grant"],
    ["cap", "grant", "chan:jobs", "--rights", "read,,write"],
    ["cap", "grant", "chan:jobs", "--rights", ""],
    ["cap", "grant", "chan:jobs", "--ttl", "0"],
    ["cap", "revoke"],
    ["cap", "verify"],
    ["cap", "verify", "f.json"],
    ["cap", "verify", "f.json", "--pub", "p", "--data", "d"],
    ["cap", "verify", "f.json", "--pub", "p", "--timeout", "5"],
    ["policy", "reload", "now"],
    ["audit", "tail"],
    ["audit", "tail", "--data", "d", "-n", "x"],
    ["audit", "tail", "--data", "d", "--connect", "tcp://127.0.0.1:1"],
    ["audit", "show", "--data", "d"],
    ["audit", "show", "seven", "--data", "d"],
    ["audit", "show", "0", "--data", "d"],
    ["audit", "verify"],
    ["audit", "verify", "--data", "d", "--system", "x"],
])
def test_usage_errors_exit_2(args):
    p = aaax(*args, timeout=10)
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert "usage" in p.stderr
    assert p.stdout == ""


def test_gate_invalid_args_json_exit_2():
    p = aaax("gate", "fs.read", "x", "--args", "{bad json", timeout=10)
    assert p.returncode == 2
    assert "invalid JSON" in p.stderr and p.stdout == ""


# ---- ps and the lifecycle --------------------------------------------------

def test_ps_table(k):
    p = aaax("ps", kernel=k, priv=True, system="ops-1")
    assert p.returncode == 0, p.stderr
    rows = p.stdout.splitlines()
    assert rows[0].split() == ["SYSTEM", "KIND", "STATE", "PRIV", "UP", "IN",
                               "OUT", "LEASES"]
    by_id = {r.split()[0]: r.split() for r in rows[1:]}
    assert by_id["ops-1"][1:4] == ["local", "docked", "yes"]
    assert by_id["kernel.gate"][1:4] == ["kernel", "docked", "yes"]
    # aligned: every column starts at the same offset on every line
    col = rows[0].index("KIND")
    assert all(r[col - 2:col] == "  " and r[col] != " " for r in rows)
    # the rows are sorted by system id
    ids = [r.split()[0] for r in rows[1:]]
    assert ids == sorted(ids)


def test_ps_json(k):
    c = k.client("w-ps")
    p = aaax("ps", "--json", kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    systems = {s["id"]: s for s in lines(p.stdout)}
    w = systems["w-ps"]
    assert w["state"] == "docked" and w["privileged"] is False
    assert isinstance(w["since"], float) and w["since"] <= time.time() + 1
    for key in ("kind", "msgs_in", "msgs_out", "leases"):
        assert key in w
    c.close()


def test_ps_needs_privilege(k):
    p = aaax("ps", kernel=k)
    assert p.returncode == 1
    assert "ERROR 403" in p.stderr
    assert "--data" in p.stderr


def test_pause_resume_stop_kill(k):
    import aaax as client_lib
    victim = k.client("victim", channels=["jobs"])
    p = aaax("pause", "victim", "--reason", "checking", kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    assert one(p.stdout)["ok"] is True
    with pytest.raises(client_lib.AaaxError) as e:
        victim.write("jobs", 1)
    assert e.value.code == 423
    ps = {s["id"]: s for s in
          lines(aaax("ps", "--json", kernel=k, priv=True).stdout)}
    assert ps["victim"]["state"] == "paused"

    p = aaax("resume", "victim", kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    victim.write("jobs", 2)
    signals = []
    deadline = time.time() + 5
    while time.time() < deadline and len(signals) < 2:
        m = victim.recv(0.2)
        if m and m.get("sub") == "@victim":
            signals.append(m["msg"]["data"])
            victim.ack("@victim", m["msg"]["id"])
    assert [s["signal"] for s in signals] == ["STOP", "CONT"]
    assert "checking" in signals[0]["reason"]

    p = aaax("stop", "victim", "--grace", "200", "--reason", "bye now",
             kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    m = None
    deadline = time.time() + 5
    while time.time() < deadline and m is None:
        got = victim.recv(0.2)
        if got and got.get("sub") == "@victim":
            m = got["msg"]["data"]
    assert m["signal"] == "TERM" and "bye now" in m["reason"]

    def gone():
        return "victim" not in [
            s["id"] for s in
            lines(aaax("ps", "--json", kernel=k, priv=True).stdout)]
    wait_until(gone, timeout=10, interval=0.2, what="victim stopped")

    victim2 = k.client("victim2", channels=["jobs"])
    p = aaax("kill", "victim2", kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    assert "killed" in one(p.stdout)["reason"]
    with pytest.raises(client_lib.AaaxError) as e:
        victim2.write("jobs", 3)
    assert e.value.code == 401


def test_lifecycle_refusals(k):
    p = aaax("kill", "kernel.gate", kernel=k, priv=True)
    assert p.returncode == 1
    assert one(p.stdout)["ok"] is False
    assert "refused:" in p.stderr
    p = aaax("pause", "nobody-here", kernel=k, priv=True)
    assert p.returncode == 1 and "refused:" in p.stderr
    # not privileged: the kernel refuses the WRITE itself
    p = aaax("kill", "x", kernel=k, system="plain")
    assert p.returncode == 1 and "ERROR 403" in p.stderr


# ---- gate, approvals -------------------------------------------------------

def test_gate_decisions_and_exit_codes(k):
    p = aaax("gate", "fs.read", "/etc/hosts", kernel=k, system="w1")
    assert p.returncode == 0, p.stderr
    d = one(p.stdout)
    assert d["decision"] == "allow" and d["rule"] == "read-anything"
    assert d["audit_id"].isdigit()

    p = aaax("gate", "fs.delete", "/", kernel=k, system="w1")
    assert p.returncode == 3, p.stderr
    assert one(p.stdout)["decision"] == "deny"

    p = aaax("gate", "net.fetch", "https://example.com", kernel=k,
             system="agent-1")
    assert p.returncode == 4, p.stderr
    assert one(p.stdout)["decision"] == "ask"

    p = aaax("gate", "net.fetch", "https://example.com", kernel=k,
             system="w1")   # no rule for w1: deny
    assert p.returncode == 3


def test_gate_args_are_audited(k):
    p = aaax("gate", "fs.read", "/tmp/a", "--args", '{"n": 7, "why": "test"}',
             kernel=k, system="w1")
    assert p.returncode == 0, p.stderr
    aid = one(p.stdout)["audit_id"]
    p = aaax("audit", "show", aid, "--data", k.data)
    assert p.returncode == 0, p.stderr
    rec = one(p.stdout)
    assert rec["seq"] == int(aid)
    assert rec["kind"] == "gate" and rec["subject"] == "w1"
    assert rec["action"] == "fs.read" and rec["target"] == "/tmp/a"
    assert rec["verdict"] == "allow"
    assert rec["args"] == {"n": 7, "why": "test"}
    # --args from stdin
    p = aaax("gate", "fs.read", "/tmp/b", "--args", "-", kernel=k,
             system="w1", input='{"from": "stdin"}')
    assert p.returncode == 0, p.stderr


def pending_ids(k):
    p = aaax("approvals", kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    return [a["audit_id"] for a in lines(p.stdout) if a["type"] == "pending"]


def start_waiting_gate(k, system, *extra):
    proc = popen("gate", "net.fetch", "https://example.com/x",
                 "--wait-approval", *extra, kernel=k, system=system)
    first = json.loads(proc.stdout.readline())
    assert first["decision"] == "ask"
    return proc, first["audit_id"]


def test_gate_wait_approval_approved(k):
    proc, aid = start_waiting_gate(k, "agent-7")
    assert aid in pending_ids(k)
    pend = [a for a in lines(aaax("approvals", kernel=k, priv=True).stdout)
            if a.get("audit_id") == aid][0]
    assert pend["subject"] == "agent-7" and pend["action"] == "net.fetch"
    p = aaax("approve", aid, kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    assert one(p.stdout)["ok"] is True
    rc, out, err = finish(proc)
    assert rc == 0, err
    follow = one(out)
    assert follow["decision"] == "allow"
    assert follow["audit_id"] == aid
    assert aid not in pending_ids(k)
    # approving again: nothing pending any more
    p = aaax("approve", aid, kernel=k, priv=True)
    assert p.returncode == 1 and "refused:" in p.stderr


def test_gate_wait_approval_denied(k):
    proc, aid = start_waiting_gate(k, "agent-8")
    p = aaax("deny", aid, "--reason", "not today", kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    rc, out, err = finish(proc)
    assert rc == 3, err
    follow = one(out)
    assert follow["decision"] == "deny"
    assert follow["audit_id"] == aid


def test_gate_wait_approval_times_out(k):
    t0 = time.time()
    proc, aid = start_waiting_gate(k, "agent-9", "--timeout", "1500")
    rc, out, err = finish(proc)
    assert rc == 4
    assert out == ""
    assert "no decision on audit id %s" % aid in err
    assert time.time() - t0 < 15


def test_approve_always_and_revoke(k):
    proc, aid = start_waiting_gate(k, "agent-a")
    p = aaax("approve", aid, "--scope", "always", kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    assert finish(proc)[0] == 0
    standing = [a for a in lines(aaax("approvals", kernel=k,
                                      priv=True).stdout)
                if a["type"] == "approval"]
    assert len(standing) == 1
    ap = standing[0]
    assert ap["scope"] == "always" and ap["subject"] == "agent-a"
    # the same request is now allowed at once
    p = aaax("gate", "net.fetch", "https://example.com/x", kernel=k,
             system="agent-a")
    assert p.returncode == 0, (p.stdout, p.stderr)
    p = aaax("approvals", "--revoke", ap["id"], kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    assert one(p.stdout)["ok"] is True
    p = aaax("gate", "net.fetch", "https://example.com/x", kernel=k,
             system="agent-a")
    assert p.returncode == 4
    p = aaax("approvals", "--revoke", ap["id"], kernel=k, priv=True)
    assert p.returncode == 1


def test_approvals_need_privilege(k):
    p = aaax("approvals", kernel=k, system="plain")
    assert p.returncode == 1 and "ERROR 403" in p.stderr
    p = aaax("approve", "1", kernel=k, system="plain")
    assert p.returncode == 1 and "ERROR 403" in p.stderr


# ---- capabilities ----------------------------------------------------------

def grant(k, tmp_path, *args, system="w1"):
    p = aaax("cap", "grant", *args, kernel=k, system=system)
    path = tmp_path / ("cap-%s.json" % system)
    path.write_text(p.stdout)
    return p, path


def test_cap_grant_and_verify_offline(k, tmp_path):
    p, path = grant(k, tmp_path, "chan:jobs", "--rights", "write,claim",
                    "--ttl", "600")
    assert p.returncode == 0, p.stderr
    ans = one(p.stdout)
    assert ans["ok"] is True and ans["granted"] is True
    cap = ans["cap"]
    assert cap["subject"] == "w1" and cap["resource"] == "chan:jobs"
    assert cap["rights"] == ["claim", "write"]
    assert abs(cap["expires"] - (time.time() + 600)) < 30
    assert len(cap["sig"]) == 128
    with open(os.path.join(k.data, "kernel.pub")) as f:
        assert cap["issuer"] == f.read().strip()

    # the grant answer as printed, the bare cap, raw msgpack of both
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(cap))
    mp = tmp_path / "cap.mp"
    mp.write_bytes(msgpack.packb(cap))
    mp_answer = tmp_path / "answer.mp"
    mp_answer.write_bytes(msgpack.packb(ans))
    for f in (path, bare, mp, mp_answer):
        p = aaax("cap", "verify", str(f), "--data", k.data)
        assert (p.returncode, p.stdout) == (0, "valid\n"), (f, p.stderr)
    p = aaax("cap", "verify", str(bare), "--pub",
             os.path.join(k.data, "kernel.pub"))
    assert (p.returncode, p.stdout) == (0, "valid\n"), p.stderr
    p = aaax("cap", "verify", "-", "--data", k.data, input=json.dumps(cap))
    assert (p.returncode, p.stdout) == (0, "valid\n"), p.stderr


def test_cap_grant_action_defaults_to_invoke(k):
    p = aaax("cap", "grant", "action:tool.run", kernel=k, system="w2")
    assert p.returncode == 0, p.stderr
    assert one(p.stdout)["cap"]["rights"] == ["invoke"]


def test_cap_verify_rejects_forgeries(k, kernel_factory, tmp_path):
    p, path = grant(k, tmp_path, "chan:jobs", "--rights", "claim")
    assert p.returncode == 0, p.stderr
    cap = one(p.stdout)["cap"]

    def verify(c, *key):
        f = tmp_path / "forged.json"
        f.write_text(json.dumps(c))
        return aaax("cap", "verify", str(f), *(key or ("--data", k.data)))

    forged = dict(cap, rights=["claim", "write"])
    p = verify(forged)
    assert p.returncode == 1 and p.stdout == "invalid: bad signature\n"
    forged = dict(cap, subject="mallory")
    assert verify(forged).stdout == "invalid: bad signature\n"
    forged = dict(cap, expires=cap["expires"] + 86400)
    assert verify(forged).returncode == 1
    sig = cap["sig"]
    forged = dict(cap, sig=("0" if sig[0] != "0" else "1") + sig[1:])
    assert verify(forged).stdout == "invalid: bad signature\n"
    forged = dict(cap)
    del forged["sig"]
    p = verify(forged)
    assert p.returncode == 1 and p.stdout.startswith("invalid: ")
    # checked against another kernel's key
    other = kernel_factory(config=CONFIG)
    p = verify(cap, "--data", other.data)
    assert p.returncode == 1
    assert p.stdout.startswith("invalid: issued by another key")
    # not a capability at all
    for text in ("[1, 2]", "", "{\"a\": 1}", "not json"):
        f = tmp_path / "junk"
        f.write_text(text)
        p = aaax("cap", "verify", str(f), "--data", k.data)
        assert p.returncode == 1 and p.stdout.startswith("invalid: "), text
    p = aaax("cap", "verify", str(tmp_path / "missing.json"), "--data",
             k.data)
    assert p.returncode == 1 and p.stdout == "" and "missing.json" in p.stderr


def test_cap_verify_expired(k, tmp_path):
    p, path = grant(k, tmp_path, "chan:jobs", "--rights", "claim", "--ttl",
                    "1")
    assert p.returncode == 0, p.stderr
    assert aaax("cap", "verify", str(path), "--data", k.data).returncode == 0
    time.sleep(2.2)
    p = aaax("cap", "verify", str(path), "--data", k.data)
    assert p.returncode == 1
    assert re.match(r"^expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$",
                    p.stdout.strip()), p.stdout


def test_cap_grant_refused(k, tmp_path):
    # no rule lets x1 claim jobs
    p, path = grant(k, tmp_path, "chan:jobs", "--rights", "claim",
                    system="x1")
    assert p.returncode == 1
    ans = one(p.stdout)
    assert ans["granted"] is False
    assert "not granted:" in p.stderr
    p = aaax("cap", "verify", str(path), "--data", k.data)
    assert p.returncode == 1
    assert p.stdout.startswith("invalid: no capability: the grant was "
                               "refused")
    p = aaax("cap", "grant", "chan:jobs", "--rights", "fly", kernel=k,
             system="w1")
    assert p.returncode == 1 and "refused:" in p.stderr


def test_cap_list_and_revoke(k):
    holder = k.client("w-holder")
    ans = holder.kernel_request("kernel.capability_requests",
                                {"op": "grant", "resource": "chan:jobs",
                                 "rights": ["claim"], "ttl_s": 600})
    assert ans["granted"] is True, ans
    cid = ans["cap"]["id"]
    p = aaax("cap", "list", kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    caps = {c["id"]: c for c in lines(p.stdout)}
    assert caps[cid]["subject"] == "w-holder"
    assert caps[cid]["rights"] == ["claim"]
    # a listed capability is a valid `cap verify` file as it is
    line = [l for l in p.stdout.splitlines() if cid in l][0]
    v = aaax("cap", "verify", "-", "--data", k.data, input=line)
    assert (v.returncode, v.stdout) == (0, "valid\n"), v.stderr
    # another system sees only its own: none
    p = aaax("cap", "list", kernel=k, system="w-other")
    assert (p.returncode, p.stdout) == (0, ""), p.stderr
    # nor may it revoke the holder's
    p = aaax("cap", "revoke", cid, kernel=k, system="w-other")
    assert p.returncode == 1
    p = aaax("cap", "revoke", cid, kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    assert one(p.stdout)["revoked"] is True
    p = aaax("cap", "list", kernel=k, priv=True)
    assert cid not in p.stdout
    p = aaax("cap", "revoke", cid, kernel=k, priv=True)
    assert p.returncode == 1
    holder.close()


# ---- policy reload ---------------------------------------------------------

def test_policy_reload(kernel_factory, tmp_path):
    pol = tmp_path / "policy.lua"
    pol.write_text("return {\n" + POLICY_RULES + "}\n")
    k = kernel_factory(config='return { policy = "%s" }' % pol)
    p = aaax("gate", "fs.write", "/tmp/x", kernel=k, system="w1")
    assert p.returncode == 3
    pol.write_text("return {\n" + POLICY_RULES +
                   '  { subject = "*", action = "fs.write", target = "/tmp/*",'
                   ' effect = "allow" },\n}\n')
    p = aaax("policy", "reload", kernel=k, priv=True)
    assert p.returncode == 0, p.stderr
    info = one(p.stdout)
    assert info["rules"] == 7
    assert HEX64.match(info["digest"])
    version = info["version"]
    p = aaax("gate", "fs.write", "/tmp/x", kernel=k, system="w1")
    assert p.returncode == 0, p.stderr
    # a broken file: refused with file:line, the old policy stays
    pol.write_text("return {\n  { subject = \"*\", action = 5 },\n}\n")
    p = aaax("policy", "reload", kernel=k, priv=True)
    assert p.returncode == 1
    assert "ERROR 400" in p.stderr and "policy.lua:2" in p.stderr
    assert aaax("gate", "fs.write", "/tmp/x", kernel=k,
                system="w1").returncode == 0
    p = aaax("policy", "reload", kernel=k, system="plain")
    assert p.returncode == 1 and "ERROR 403" in p.stderr
    # the reloads are audited
    recs = lines(aaax("audit", "tail", "-n", "100", "--data",
                      k.data).stdout)
    pol_recs = [r for r in recs if r.get("kind") == "policy"]
    assert len(pol_recs) >= 2
    assert version >= 2


# ---- audit -----------------------------------------------------------------

def test_audit_tail_show_verify_while_running(k):
    for i in range(3):
        aaax("gate", "fs.read", "/f%d" % i, kernel=k, system="w1")
    p = aaax("audit", "tail", "-n", "4", "--data", k.data)
    assert p.returncode == 0, p.stderr
    recs = lines(p.stdout)
    assert len(recs) == 4
    seqs = [r["seq"] for r in recs]
    assert seqs == list(range(seqs[0], seqs[0] + 4))
    for r in recs:
        assert HEX64.match(r["hash"])
        assert "kind" in r and "ts" in r
    gates = [r for r in recs if r["kind"] == "gate"]
    assert gates and gates[-1]["target"] == "/f2"
    last = recs[-1]["seq"]
    # everything, oldest first
    allrecs = lines(aaax("audit", "tail", "-n", "100000", "--data",
                         k.data).stdout)
    assert [r["seq"] for r in allrecs] == list(range(1, len(allrecs) + 1))
    assert len(allrecs) >= last
    # with checkpoint_every = 5 there are signed checkpoints, as hex
    cps = [r for r in allrecs if r["kind"] == "checkpoint"]
    assert cps
    assert HEX64.match(cps[0]["head"]) and len(cps[0]["sig"]) == 128
    # show
    p = aaax("audit", "show", str(last), "--data", k.data)
    assert p.returncode == 0 and one(p.stdout) == recs[-1]
    p = aaax("audit", "show", "999999", "--data", k.data)
    assert p.returncode == 1 and "no audit record 999999" in p.stderr
    # verify, while the kernel runs
    p = aaax("audit", "verify", "--data", k.data)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.match(r"^audit: (\d+) records verified, (\d+) checkpoints, "
                 r"(\d+) unsigned at the tail$", p.stdout.strip())
    assert m, p.stdout
    assert int(m.group(1)) >= len(allrecs)
    assert int(m.group(2)) >= len(cps)
    # -n 0: nothing
    p = aaax("audit", "tail", "-n", "0", "--data", k.data)
    assert (p.returncode, p.stdout) == (0, "")


def test_audit_tail_follow(k):
    proc = subprocess.Popen([AAAX_CLI, "audit", "tail", "-f", "-n", "0",
                             "--data", k.data], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    try:
        time.sleep(0.5)
        p = aaax("gate", "fs.delete", "/follow-me", kernel=k, system="w1")
        assert p.returncode == 3
        aid = int(one(p.stdout)["audit_id"])
        seen = []
        deadline = time.time() + 10
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            rec = json.loads(line)
            seen.append(rec)
            if rec["seq"] == aid:
                break
        gate = [r for r in seen if r["seq"] == aid]
        assert gate and gate[0]["target"] == "/follow-me"
        assert gate[0]["verdict"] == "deny"
        # no record printed twice, none skipped
        seqs = [r["seq"] for r in seen]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        proc.send_signal(signal.SIGINT)
        rc, _, err = finish(proc, timeout=10)
    assert rc == 0, err


def test_audit_verify_detects_damage(k, tmp_path):
    p = aaax("gate", "fs.read", "/tamper-me-0123456789", kernel=k,
             system="w1")
    aid = int(one(p.stdout)["audit_id"])
    assert k.stop() == 0     # a clean stop signs the tail
    p = aaax("audit", "verify", "--data", k.data)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().endswith("0 unsigned at the tail")
    total = int(p.stdout.split()[1])

    copy = tmp_path / "copy"
    shutil.copytree(k.data, copy, ignore=shutil.ignore_patterns("*.sock"))
    mdb = copy / "audit" / "data.mdb"
    raw = mdb.read_bytes()
    assert b"/tamper-me-0123456789" in raw
    mdb.write_bytes(raw.replace(b"/tamper-me-0123456789",
                                b"/tamper-me-9876543210"))
    p = aaax("audit", "verify", "--data", str(copy))
    assert p.returncode == 1
    m = re.match(r"^audit: damaged at record (\d+): (.+) \((\d+) records? "
                 r"before it verified\)$", p.stdout.strip())
    assert m, p.stdout
    assert int(m.group(1)) == aid
    assert int(m.group(3)) == aid - 1
    # the original is intact; tail still reads the damaged copy
    assert aaax("audit", "verify", "--data", k.data).returncode == 0
    p = aaax("audit", "show", str(aid), "--data", str(copy))
    assert one(p.stdout)["target"] == "/tamper-me-9876543210"
    # a wrong public key: the checkpoints do not verify
    other = tmp_path / "other.pub"
    other.write_text("ab" * 32 + "\n")
    p = aaax("audit", "verify", "--data", k.data, "--pub", str(other))
    assert p.returncode == 1 and "damaged at record" in p.stdout
    assert total >= aid


def test_audit_without_a_log(tmp_path):
    for args in (["audit", "verify"], ["audit", "tail"],
                 ["audit", "show", "1"]):
        p = aaax(*args, "--data", str(tmp_path))
        assert p.returncode == 1, args
        assert p.stdout == ""
        assert p.stderr.startswith("aaax: ")


# ---- stale answers ---------------------------------------------------------

def test_stale_answer_in_the_mailbox_is_skipped(k):
    """A kernel answer left in the mailbox by an earlier run with the same
    system id is acknowledged and not taken for this run's answer."""
    earlier = k.client("w-stale")
    rid = earlier.write("kernel.gate", {"action": "fs.delete",
                                        "target": "/old", "args": {}})
    got = earlier.recv(10)   # the answer, read but not acknowledged
    assert got["msg"]["corr"] == rid
    earlier.bye()
    p = aaax("gate", "fs.read", "/new", kernel=k, system="w-stale")
    assert p.returncode == 0, p.stderr
    d = one(p.stdout)
    assert d["decision"] == "allow"
    # both answers were acknowledged: the mailbox is empty now
    later = k.client("w-stale")
    assert later.recv(1.0) is None
    later.bye()


def fake_kernel(script):
    """A ROUTER that answers HELLO, PING, ACK, BYE, and a WRITE with id
    "REQ1" followed by the pushes script(rid) returns. Returns (endpoint,
    stop(), acks)."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    acks = []
    halt = threading.Event()

    def push(rid, cmd, body):
        router.send_multipart([rid, cmd, msgpack.packb(body)])

    def serve():
        while not halt.is_set():
            if not router.poll(50):
                continue
            rid, cmd, raw = router.recv_multipart()
            body = msgpack.unpackb(raw)
            req = body.get("req")
            if cmd == b"HELLO":
                push(rid, b"OK", {"req": req, "heartbeat_ms": 1000})
            elif cmd == b"PING":
                push(rid, b"PONG", {"req": req, "ts": time.time()})
            elif cmd == b"WRITE":
                push(rid, b"OK", {"req": req, "id": "REQ1"})
                for m in script(body):
                    push(rid, b"MSG", m)
            elif cmd == b"ACK":
                acks.extend(body["ids"])
                push(rid, b"OK", {"req": req, "acked": len(body["ids"])})
            else:
                push(rid, b"OK", {"req": req})

    t = threading.Thread(target=serve)
    t.start()

    def stop():
        halt.set()
        t.join()
        router.close()
    return "tcp://127.0.0.1:%d" % port, stop, acks


def mail(mid, frm, corr, data):
    return {"sub": "@me", "msg": {"id": mid, "ts": 1.0, "from": frm,
                                  "chan": "@me", "to": "me", "corr": corr,
                                  "data": data}}


def test_only_the_kernels_answer_with_our_corr_counts():
    """Stale kernel answers are acknowledged and skipped; a forged answer
    (right corr, not from kernel.*) is neither printed nor acknowledged;
    another system's mail is left alone."""
    writes = []

    def script(body):
        writes.append(body)
        return [mail("M1", "kernel.gate", "OLD", {"decision": "deny"}),
                mail("M2", "mallory", "REQ1", {"decision": "allow"}),
                mail("M3", "friend", None, {"hello": 1}),
                mail("M4", "kernel.gate", "REQ1",
                     {"decision": "ask", "reason": "r", "rule": "x",
                      "audit_id": "5"})]

    ep, stop, acks = fake_kernel(script)
    try:
        p = subprocess.run([AAAX_CLI, "gate", "net.fetch", "https://x",
                            "--args", '{"a": [1]}', "--connect", ep,
                            "--system", "me"], capture_output=True,
                           text=True, timeout=20, env=env())
    finally:
        stop()
    check_clean(p.stderr)
    assert p.returncode == 4, p.stderr
    assert one(p.stdout)["audit_id"] == "5"
    assert sorted(acks) == ["M1", "M4"]
    assert writes[0]["chan"] == "kernel.gate"
    assert writes[0]["data"] == {"action": "net.fetch", "target": "https://x",
                                 "args": {"a": [1]}}


def test_no_answer_times_out():
    ep, stop, acks = fake_kernel(lambda body: [])
    try:
        t0 = time.time()
        p = subprocess.run([AAAX_CLI, "cap", "list", "--connect", ep,
                            "--timeout", "800"], capture_output=True,
                           text=True, timeout=20, env=env())
        took = time.time() - t0
    finally:
        stop()
    check_clean(p.stderr)
    assert p.returncode == 1
    assert "no answer from kernel.capability_requests within 800 ms" \
        in p.stderr
    assert took < 10
