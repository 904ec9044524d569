"""Hosts on one machine for the multi-host tests: network namespaces joined
by veth pairs on a bridge (iproute2's `ip netns`, `ip link`; needs root).

    lan = Lan(["k", "a", "b"])     # host "k" holds the bridge: 10.200.1.1
    lan.addr("a")                  # "10.200.1.2"
    p = lan.popen("a", [argv...])  # a process on host a
    lan.link_down("k"); lan.link_up("k")
    lan.close()                    # kills what it started, deletes it all

The first host holds a bridge `br0` (10.200.1.1/24); every other host gets
one veth pair, `eth0` (10.200.1.N/24) on its side and a port of the bridge
on the first host's side. A namespace is named `aaaxt-PID-NAME` (PID: this
process), so runs in parallel never meet; since addresses live inside the
namespaces, they may all use the same subnet. `sweep_stale()` deletes the
namespaces left behind by a process that no longer exists (a run killed
with SIGKILL cannot clean up after itself).

Processes run through `ip netns exec NS ARGV` (which execs ARGV: the Popen's
pid is the program's). `close()` (also run at exit for a Lan still open) kills every process
still running in the namespaces (also ones started by others, found with `ip netns pids`) before
deleting them: a namespace with a live process would outlive its deletion.
"""

import atexit
import os
import re
import signal
import subprocess
import time
import weakref

PREFIX = "aaaxt-"
SUBNET = "10.200.1"
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"


class NetnsUnavailable(Exception):
    """Namespaces cannot be made here (not root, no iproute2, no
    permission): the caller skips."""


def _ip(*args, check=True, ns=None):
    argv = [IP] + (["-n", ns] if ns else []) + list(args)
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                r.stderr.strip()))
    return r


def list_namespaces():
    try:
        r = _ip("netns", "list", check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _ns_pids(ns):
    r = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _kill_all_in(ns, grace=3.0):
    """SIGTERM to every process in ns, SIGKILL to those left after grace
    seconds."""
    pids = _ns_pids(ns)
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace
    while pids and time.time() < deadline:
        time.sleep(0.05)
        pids = _ns_pids(ns)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 5
    while _ns_pids(ns) and time.time() < deadline:
        time.sleep(0.05)


def _delete(ns):
    _kill_all_in(ns)
    _ip("netns", "delete", ns, check=False)


def sweep_stale():
    """Deletes aaaxt-PID-* namespaces whose PID is not a live process."""
    for ns in list_namespaces():
        m = re.match(re.escape(PREFIX) + r"(\d+)-", ns)
        if not m:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and not os.path.exists("/proc/%d" % pid):
            _delete(ns)


_live = weakref.WeakSet()


@atexit.register
def _close_all():
    """Whatever way the interpreter ends (short of SIGKILL), no namespace
    of this process stays behind."""
    for lan in list(_live):
        lan.close()


class Lan:
    """Hosts (network namespaces) on one bridged subnet; see the module's
    text. Raises NetnsUnavailable when the first namespace cannot be made."""

    _serial = 0

    def __init__(self, hosts):
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        Lan._serial += 1
        self.hosts = list(hosts)
        self.ns = {h: "%s%d-%d%s" % (PREFIX, os.getpid(), Lan._serial, h)
                   for h in self.hosts}
        self.procs = []
        self._made = []
        self._addr = {}
        _live.add(self)
        try:
            first = self.hosts[0]
            try:
                _ip("netns", "add", self.ns[first])
            except (OSError, RuntimeError) as e:
                raise NetnsUnavailable("ip netns add failed: %s" % e)
            self._made.append(self.ns[first])
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self):
        k = self.hosts[0]
        kns = self.ns[k]
        _ip("link", "set", "lo", "up", ns=kns)
        _ip("link", "add", "br0", "type", "bridge", "forward_delay", "0",
            ns=kns)
        self._addr[k] = SUBNET + ".1"
        _ip("addr", "add", self._addr[k] + "/24", "dev", "br0", ns=kns)
        for i, h in enumerate(self.hosts[1:], start=2):
            ns = self.ns[h]
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("link", "set", "lo", "up", ns=ns)
            port = "p%d" % i
            # Made directly inside the namespaces: no name in the root one.
            _ip("link", "add", port, "netns", kns, "type", "veth", "peer",
                "name", "eth0", "netns", ns)
            _ip("link", "set", port, "master", "br0", ns=kns)
            _ip("link", "set", port, "up", ns=kns)
            self._addr[h] = "%s.%d" % (SUBNET, i)
            _ip("addr", "add", self._addr[h] + "/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
        _ip("link", "set", "br0", "up", ns=kns)

    def addr(self, host):
        return self._addr[host]

    def dev(self, host):
        """The host's link: the bridge on the first host, eth0 elsewhere."""
        return "br0" if host == self.hosts[0] else "eth0"

    def argv(self, host, argv):
        return [IP, "netns", "exec", self.ns[host]] + list(argv)

    def run(self, host, argv, timeout=60, **kw):
        """Runs argv on host to its end; a CompletedProcess (text)."""
        return subprocess.run(self.argv(host, argv), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              timeout=timeout, **kw)

    def popen(self, host, argv, **kw):
        """Starts argv on host; it is killed at close() if still running."""
        p = subprocess.Popen(self.argv(host, argv), **kw)
        self.procs.append(p)
        return p

    def link_down(self, host):
        _ip("link", "set", self.dev(host), "down", ns=self.ns[host])

    def link_up(self, host):
        _ip("link", "set", self.dev(host), "up", ns=self.ns[host])

    def reachable(self, src, dst, port, timeout=10.0):
        """True once a TCP connect from src to dst:port is answered (by an
        accept or a refusal: either shows the path works)."""
        code = ("import socket,sys,time\n"
                "d=time.time()+%f\n"
                "while time.time()<d:\n"
                "  s=socket.socket();s.settimeout(1)\n"
                "  try:\n"
                "    s.connect((%r,%d));sys.exit(0)\n"
                "  except ConnectionRefusedError: sys.exit(0)\n"
                "  except OSError: time.sleep(0.05)\n"
                "  finally: s.close()\n"
                "sys.exit(1)\n" % (timeout, self.addr(dst), port))
        return self.run(src, ["/usr/bin/python3", "-c", code],
                        timeout=timeout + 10).returncode == 0

    def close(self):
        """Kills the processes started here (SIGTERM, then SIGKILL), then
        every other process in the namespaces, and deletes them (the veths
        and the bridge go with them). Safe to call more than once."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.time() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in reversed(self._made):
            _delete(ns)
        self._made = []
        _live.discard(self)
