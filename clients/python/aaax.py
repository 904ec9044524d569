"""A small Python client for the aaax kernel (protocol AAAX/1).

It speaks the kernel's command protocol over one ZeroMQ DEALER socket
(pyzmq) with msgpack bodies, in the caller's thread: no threads, one file,
nothing to install (put this directory on PYTHONPATH).

    import aaax

    with aaax.Client("tcp://127.0.0.1:5670", system="worker-1",
                     channels=["jobs"]) as c:
        c.write("jobs", {"task": "resize", "file": "a.png"})
        for m in c.claim("jobs", max=10, wait_ms=1000):
            print(m["attempt"], m["data"])
            c.ack("jobs", [m["id"]])

The model, in short (docs/PROTOCOL.md has it all):

* A client *docks* with ``HELLO`` as a *system* id and asks for rights on
  channels (``channels``); the kernel answers with ``grants``
  (``"RIGHT:CHANNEL"`` strings).
* **broadcast** channels: ``write`` / ``subscribe``; messages are then
  pushed, read them with ``recv()``.
* **work-queues**: ``write`` / ``claim`` (a lease) then ``ack`` or ``nack``.
* **mailboxes** ``@ID``: ``send(to, data)``; your own mailbox is pushed to
  you (``recv()`` returns ``{"sub": "@YOU", "msg": ...}``) and stays until
  you ``ack("@YOU", ids)``.

Every request carries ``req`` (chosen here) and its reply is matched by
``req``: replies may come out of order, and messages pushed by the kernel
while a reply is awaited are kept, in order, for ``recv()``.

Remote kernels (CURVE): a kernel's non-loopback tcp endpoints (and every
tcp endpoint with ``aaaxd --curve all``) speak CURVE. Give the kernel's
public key (``server_key``: Z85 text, as ``aaax kernel-key`` prints it, or
the path of its certificate) and this client's certificate: ``key``, the
path of a pair made by ``aaax keygen NAME`` (``NAME`` or ``NAME_secret``),
or ``public_key`` and ``secret_key`` (Z85). The key must be bound to the
system id (``aaax authorize KEY --system ID``), or enrolled once with a
one-time token (``Client(..., token="aaax-enroll-...")``).

Liveness: the kernel undocks a session that stays silent for 3 heartbeat
periods (``heartbeat_ms``, told at ``HELLO``). While this client waits
inside a call (``recv``, a long-poll ``claim``, any reply) it sends
``PING`` whenever it has sent nothing for half a period, so a session is
never silent for more than ``heartbeat_ms``. Between calls it cannot (it
has no thread): a script that stays away longer should call
``keepalive()`` now and then; if it does not, the kernel undocks it and
the next request re-docks (below).

Reconnect (``reconnect=True``, the default): inside a call, the
connection counts as lost when nothing at all came from the kernel for
3 heartbeat periods (the PINGs above are answered by a live kernel), when
ZeroMQ reports the connection closed (the kernel stopped or restarted),
or when the session ended although the client was docked (timed out,
killed, or a kernel restarted in between): a request refused with ``ERROR
401`` "not docked", or a ``PONG`` saying ``docked: false``. The client then
closes its socket, opens a new one and sends ``HELLO`` again with the same
``system``, ``channels`` and ``token`` plus ``resume: SESSION``; attempts
are spaced by a back-off from 0.1 s doubling up to ``max_backoff`` (with
jitter), without limit unless ``reconnect_timeout`` is given. A kernel
that still holds the session hands it over (``resumed``: subscriptions,
leases and unacknowledged mailbox messages carry over); otherwise the
session is new and this client subscribes again to every channel it had
subscribed to, from the last message id it saw on each (so a channel
that retains messages fills the gap; duplicates are dropped). Then the
request in flight is sent again when repeating it is harmless (``PING``,
``STAT``, ``SUB``, ``UNSUB``, ``ACK``, ``CLAIM``, ``CTL list``, and
``WRITE``/``SEND`` with an idempotency ``key``); otherwise the call raises
``AaaxDisconnected`` -- the write may or may not have happened -- and the
client is docked again, ready for the next call. Messages already read
stay queued for ``recv()``; unacknowledged mailbox messages come again
(``attempt`` + 1) unless they are still queued. ``reconnects`` counts the
re-docks and ``on_reconnect(resumed)``, when set, is called after each.
Time spent re-docking does not count against a call's ``timeout``: the
request sent again gets the whole timeout anew. A refusal while
re-docking (401 for a revoked key or a stale privileged token, 403, 400)
is raised as it is and leaves the client undocked. ``reconnect=False``
keeps the plain behaviour: errors are raised, ``dock()`` is up to you.

Errors from the kernel raise ``AaaxError`` with ``code`` (int, as in the
protocol: 400, 401, 403, 404, 409, 413, 423, 429, 500, 503) and
``reason``; no reply in time raises ``AaaxTimeout`` (a subclass, code 0);
a request lost with the connection raises ``AaaxDisconnected`` (a
subclass, code 0).
"""

import collections
import os
import random
import time

import msgpack
import zmq

__all__ = ["Client", "AaaxError", "AaaxTimeout", "AaaxDisconnected",
           "read_token", "load_key", "DEFAULT_ENDPOINT", "DEFAULT_TAP"]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5670"
DEFAULT_TAP = "tcp://127.0.0.1:5671"
PROTOCOL_VERSION = 1
ENROLL_PREFIX = "aaax-enroll-"


class AaaxError(Exception):
    """An ``ERROR`` reply from the kernel: ``code`` (int) and ``reason``
    (str); ``req`` is the request's number (None when the kernel could not
    decode it)."""

    def __init__(self, code, reason, req=None):
        super().__init__(code, reason)
        self.code = int(code)
        self.reason = reason
        self.req = req

    def __str__(self):
        return "%d %s" % (self.code, self.reason)


class AaaxTimeout(AaaxError, TimeoutError):
    """No reply came within the client's timeout (code 0)."""

    def __init__(self, reason, req=None):
        super().__init__(0, reason, req)


class AaaxDisconnected(AaaxError):
    """The connection to the kernel was lost while this request was in
    flight, and the request is not one that may be repeated blindly (a
    ``WRITE`` or ``SEND`` without an idempotency ``key``, ``NACK``, ``CTL``
    other than ``list``...): whether it took effect cannot be known (code
    0). By the time this is raised the client has docked again, so the
    caller may retry (or check first)."""

    def __init__(self, reason, req=None):
        super().__init__(0, reason, req)


class _Lost(Exception):
    """Internal: the connection counts as lost (see the module's doc)."""


def read_token(data_dir):
    """Returns the session token the kernel wrote at boot to
    ``<data_dir>/session.token`` (64 hex characters). Only the kernel's own
    user can read it; presenting it in ``HELLO`` makes a session
    privileged."""
    with open(os.path.join(data_dir, "session.token")) as f:
        return f.read().strip()


def _z85(value):
    if isinstance(value, bytes):
        value = value.decode("ascii")
    value = value.strip()
    if len(value) != 40:
        raise ValueError("a CURVE key is 40 characters of Z85, got %r"
                         % value)
    import zmq.utils.z85
    try:
        zmq.utils.z85.decode(value.encode("ascii"))
    except Exception:
        raise ValueError("not a Z85 key: %r" % value) from None
    return value


def load_key(path, secret=True):
    """Loads a CURVE certificate in czmq's format (what ``aaax keygen NAME``
    writes: ``NAME``, the public part, and ``NAME_secret``) and returns
    ``(public, secret)`` as Z85 text. ``path`` may name either file: for
    ``NAME``, ``NAME_secret`` is read when it exists. With ``secret`` a
    certificate without its secret key is a ValueError; else ``secret`` may
    come back None (e.g. the kernel's ``<data>/curve/server.cert``)."""
    import zmq.auth
    candidates = [path]
    if not path.endswith("_secret"):
        candidates.insert(0, path + "_secret")
    for p in candidates:
        if os.path.exists(p):
            public, sec = zmq.auth.load_certificate(p)
            if secret and not sec:
                raise ValueError("%s has no secret key: give the pair made "
                                 "by aaax keygen (NAME or NAME_secret)" % p)
            return (public.decode("ascii"),
                    sec.decode("ascii") if sec else None)
    raise FileNotFoundError("no certificate at %s" % path)


def _pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _repeatable(cmd, body):
    """True when sending this request twice has the effect of sending it
    once (or an effect the caller accepts: a second CLAIM leases more)."""
    if cmd in ("PING", "STAT", "SUB", "UNSUB", "ACK", "CLAIM", "HELLO"):
        return True
    if cmd == "CTL":
        return body.get("op") == "list"
    if cmd in ("WRITE", "SEND"):
        return body.get("key") is not None
    return False


def _not_docked(cmd, body):
    return (cmd == "ERROR" and body.get("code") == 401
            and str(body.get("reason", "")).startswith("not docked"))


# What the kernel may answer a HELLO with while it is busy, full, shutting
# down or still holding the old session: worth another attempt.
_RETRY_CODES = (409, 429, 500, 503)


class Client:
    """One connection to the kernel, docked as one system.

    ``Client(endpoint, system, token, privileged, channels, timeout)``
    connects (ZeroMQ connects lazily) but does not dock: call ``dock()``,
    or use the client as a context manager, which docks on entry when
    ``system`` is given and says ``BYE`` and closes on exit.

    ``timeout`` (seconds) bounds the wait for each reply; a long-poll
    ``claim`` waits its ``wait_ms`` on top of it. ``context`` is a
    ``zmq.Context`` to use (default: the shared instance); ``sockopts`` a
    dict of ZeroMQ options set before connecting (e.g.
    ``{zmq.RCVHWM: 100}``). ``token`` may also be a callable returning the
    token, called at each dock (a privileged client that should survive a
    kernel restart reads the new ``session.token`` that way, e.g.
    ``token=lambda: aaax.read_token(DATA)``).

    CURVE: ``server_key`` (the kernel's public key, Z85 text or the path of
    its certificate) with ``key`` (the path of a certificate made by ``aaax
    keygen``) or ``public_key`` and ``secret_key`` (Z85). With
    ``server_key`` alone a throwaway key pair is made for this client (it
    lasts as long as the object: enough to enroll and work in one run).
    ``public_key`` then tells this client's key.

    Reconnect (see the module's doc): ``reconnect`` (default True),
    ``max_backoff`` (seconds, the longest pause between two attempts),
    ``reconnect_timeout`` (seconds; None: keep trying), ``on_reconnect``
    (a callable taking ``resumed``; may be set later as an attribute), and
    ``reconnects`` counts the re-docks.

    After ``dock()``: ``grants`` (list of ``"RIGHT:CHANNEL"``),
    ``session`` (the session id), ``kernel`` (the kernel id),
    ``heartbeat_ms``, ``docked`` (bool) and ``resumed`` (whether the last
    re-dock took the old session over).
    """

    def __init__(self, endpoint=DEFAULT_ENDPOINT, system=None, token=None,
                 privileged=False, channels=(), timeout=5.0, context=None,
                 sockopts=None, server_key=None, key=None, public_key=None,
                 secret_key=None, reconnect=True, max_backoff=5.0,
                 reconnect_timeout=None, on_reconnect=None):
        self.endpoint = endpoint
        self.system = system
        self.token = token
        self.privileged = privileged
        self.channels = list(channels or ())
        self.timeout = timeout
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self.reconnect_timeout = reconnect_timeout
        self.on_reconnect = on_reconnect
        self.reconnects = 0
        self.resumed = False
        self.grants = []
        self.session = None
        self.kernel = None
        self.heartbeat_ms = 1000
        self.docked = False
        self.enrolled = False
        self.server_key = None
        self.public_key = None
        self._secret_key = None
        if server_key is not None:
            if isinstance(server_key, str) and os.path.exists(server_key):
                self.server_key = load_key(server_key, secret=False)[0]
            else:
                self.server_key = _z85(server_key)
            if key is not None:
                self.public_key, self._secret_key = load_key(key)
            elif public_key is not None or secret_key is not None:
                if public_key is None or secret_key is None:
                    raise ValueError("give both public_key and secret_key")
                self.public_key = _z85(public_key)
                self._secret_key = _z85(secret_key)
            else:
                pub, sec = zmq.curve_keypair()
                self.public_key = pub.decode("ascii")
                self._secret_key = sec.decode("ascii")
        elif key is not None or public_key is not None \
                or secret_key is not None:
            raise ValueError("a client key needs server_key "
                             "(the kernel's public key)")
        self._ctx = context or zmq.Context.instance()
        self._sockopts = dict(sockopts or {})
        self._sock = None
        self._mon = None
        self._poller = None
        self._next_req = random.randrange(1, 1 << 20)
        self._waiting = collections.OrderedDict()  # req -> (cmd, body)
        self._replies = {}                          # req -> (cmd, body)
        self._pings = set()                         # reqs of our own PINGs
        self._pushes = collections.deque()          # pushed messages
        # Broadcast subscriptions: chan -> last message id seen (or the
        # since given to subscribe, or None), and per channel the ids seen
        # lately (to drop what a re-subscription replays twice).
        self._subs = collections.OrderedDict()
        self._batched = set()  # channels subscribed with batch=True
        self._seen = {}
        self._last_send = time.monotonic()
        self._last_recv = self._last_send
        self._call_start = self._last_send
        self._last_pump = self._last_send
        self._lost = None                           # why, once noticed
        self._open()

    # ---- context manager ------------------------------------------------

    def __enter__(self):
        if self.system is not None and not self.docked:
            self.dock()
        return self

    def __exit__(self, *exc):
        try:
            if self.docked:
                self.bye()
        except (AaaxError, zmq.ZMQError):
            pass
        finally:
            self.close()
        return False

    def __repr__(self):
        return "<aaax.Client %s as %s%s>" % (
            self.endpoint, self.system,
            "" if self.docked else " (not docked)")

    def close(self):
        """Closes the socket (without BYE: the kernel undocks the session
        after 3 silent heartbeat periods)."""
        self._close_socket()
        self.docked = False

    @property
    def socket(self):
        """The underlying DEALER socket (for zmq.Poller). A re-dock after a
        lost connection replaces it with a new one."""
        return self._sock

    # ---- the socket -------------------------------------------------------

    def _open(self):
        s = self._ctx.socket(zmq.DEALER)
        try:
            s.setsockopt(zmq.LINGER, 0)
            if self.server_key is not None:
                s.setsockopt(zmq.CURVE_SERVERKEY,
                             self.server_key.encode("ascii"))
                s.setsockopt(zmq.CURVE_PUBLICKEY,
                             self.public_key.encode("ascii"))
                s.setsockopt(zmq.CURVE_SECRETKEY,
                             self._secret_key.encode("ascii"))
            for opt, value in self._sockopts.items():
                s.setsockopt(opt, value)
            s.connect(self.endpoint)
            # The monitor tells at once when the connection closes (the
            # kernel stopped or restarted), which PINGs alone would not
            # reveal: a restarted kernel answers PING too.
            mon = (s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
                   if self.reconnect else None)
        except BaseException:
            s.close(0)
            raise
        self._sock = s
        self._mon = mon
        self._poller = None
        if mon is not None:
            self._poller = zmq.Poller()
            self._poller.register(s, zmq.POLLIN)
            self._poller.register(mon, zmq.POLLIN)
        self._lost = None

    def _close_socket(self):
        if self._mon is not None:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._mon.close(0)
            self._mon = None
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def _read_monitor(self):
        from zmq.utils.monitor import recv_monitor_message
        while self._mon is not None and self._mon.poll(0, zmq.POLLIN):
            ev = recv_monitor_message(self._mon)
            if ev["event"] == zmq.EVENT_DISCONNECTED and self.docked:
                self._lost = "the connection to the kernel closed"

    # ---- low level ------------------------------------------------------

    def request(self, cmd, **body):
        """Sends ``[cmd, body]`` with a fresh ``req`` and returns that req,
        without waiting: ``reply(req)`` collects the answer. Lets several
        requests be in flight at once (their replies can come in any
        order)."""
        req = self._next_req
        self._next_req += 1
        body = dict({"req": req}, **body)  # first: echoed even if the rest
        self._send(cmd, body)              # cannot be decoded
        self._waiting[req] = (cmd, body)
        return req

    def reply(self, req, timeout=None):
        """Waits for the reply to ``req``; returns ``(command, body)``
        (``command`` is ``"OK"``, ``"PONG"``...). Raises ``AaaxError`` for
        an ``ERROR``, ``AaaxTimeout`` when nothing came within ``timeout``
        seconds (default: the client's) and ``AaaxDisconnected`` when the
        connection was lost and the request cannot safely be sent again
        (see the module's doc)."""
        if timeout is None:
            timeout = self.timeout
        self._enter()
        deadline = time.monotonic() + timeout
        while True:
            got = self._replies.get(req)
            if got is not None and _not_docked(*got) and self.docked \
                    and self.reconnect and req in self._waiting:
                # Refused, so without effect: re-dock and send it again.
                self._recover_for(req, "the session ended (%s)"
                                  % got[1]["reason"])
                deadline = time.monotonic() + timeout
                continue
            if got is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                self._pump(0)          # what has arrived counts
                if req in self._replies:
                    continue
                self._waiting.pop(req, None)
                raise AaaxTimeout("no reply within %.3gs" % timeout, req)
            try:
                self._pump(left)
            except _Lost as e:
                if self._waiting.get(req, ("",))[0] == "BYE":
                    # Leaving anyway: the kernel ends the silent session.
                    self._close_socket()
                    self._open()
                    self.docked = False
                    self._waiting.pop(req, None)
                    return "OK", {"req": req}
                self._recover_for(req, str(e))
                deadline = time.monotonic() + timeout
        cmd, body = self._replies.pop(req)
        self._waiting.pop(req, None)
        if cmd == "DISCONNECTED":
            raise AaaxDisconnected(body["reason"], req)
        if cmd == "ERROR":
            if body.get("code") == 401:
                self.docked = False
            raise AaaxError(body.get("code", 0), body.get("reason", ""),
                            body.get("req"))
        return cmd, body

    def _recover_for(self, req, why):
        try:
            self._recover(why)
        except AaaxError:
            self._waiting.pop(req, None)
            self._replies.pop(req, None)
            raise

    def call(self, cmd, **body):
        """Raw access: sends command ``cmd`` with ``body`` (``req`` is
        added) and returns the reply's body (a dict, ``req`` included).
        Raises ``AaaxError`` for an ``ERROR`` reply. Extra timeout: a
        ``_timeout`` keyword (seconds) replaces the client's."""
        timeout = body.pop("_timeout", None)
        req = self.request(cmd, **body)
        return self.reply(req, timeout)[1]

    def keepalive(self):
        """Sends a ``PING`` (without waiting for the ``PONG``) if nothing
        was sent for half a heartbeat period, and reads what has arrived
        (re-docking if the connection was found lost). Call it from a loop
        that does not otherwise talk to the kernel."""
        self._enter()
        try:
            self._maybe_ping()
            self._pump(0)
        except _Lost as e:
            self._recover(str(e))

    def _send(self, cmd, body):
        if self._sock is None:
            raise AaaxError(0, "client closed")
        self._sock.send_multipart([cmd.encode("ascii"), _pack(body)])
        self._last_send = time.monotonic()

    def _maybe_ping(self):
        if not self.docked or self._sock is None:
            return
        if time.monotonic() - self._last_send >= self.heartbeat_ms / 2000.0:
            req = self._next_req
            self._next_req += 1
            if len(self._pings) > 10000:   # a kernel long gone: forget
                self._pings.clear()
            self._pings.add(req)
            self._send("PING", {"req": req})

    def _enter(self):
        """A call begins: silence is counted from now on when the client
        was left alone for longer than a heartbeat period (time between
        calls is not the kernel's silence), else from the last word."""
        now = time.monotonic()
        if now - self._last_pump > self.heartbeat_ms / 1000.0:
            self._call_start = now

    def _watching(self):
        return self.docked and self.reconnect

    def _check_lost(self):
        if not self._watching():
            return
        if self._lost is not None:
            raise _Lost(self._lost)
        heard = max(self._last_recv, self._call_start)
        if time.monotonic() - heard > 3 * self.heartbeat_ms / 1000.0:
            raise _Lost("nothing from the kernel for %d ms"
                        % (3 * self.heartbeat_ms))

    def _pump(self, timeout):
        """Reads what arrives within timeout seconds (at least one poll),
        PINGing as needed; returns after the first message read or when
        the time is up. Raises _Lost when the connection counts as lost
        (only with reconnect, while docked)."""
        if self._sock is None:
            raise AaaxError(0, "client closed")
        try:
            self._pump_loop(timeout)
        finally:
            self._last_pump = time.monotonic()

    def _pump_loop(self, timeout):
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            self._last_pump = time.monotonic()
            self._check_lost()
            self._maybe_ping()
            now = time.monotonic()
            wait = deadline - now
            if self.docked:
                wait = min(wait, self._last_send + self.heartbeat_ms / 2000.0
                           - now)
            if self._watching():
                heard = max(self._last_recv, self._call_start)
                wait = min(wait, heard + 3 * self.heartbeat_ms / 1000.0
                           - now + 0.001)
            wait_ms = max(0, int(wait * 1000 + 0.999))
            if self._mon is not None:
                ready = dict(self._poller.poll(wait_ms))
                sock_ready = self._sock in ready
                if self._mon in ready:
                    self._read_monitor()
            else:
                sock_ready = bool(self._sock.poll(wait_ms, zmq.POLLIN))
            got = False
            if sock_ready:
                while self._sock.poll(0, zmq.POLLIN):
                    self._dispatch(self._sock.recv_multipart())
                    got = True
            if self._lost is not None and self._watching():
                raise _Lost(self._lost)
            if got:
                return
            if time.monotonic() >= deadline:
                return

    def _dispatch(self, frames):
        self._last_recv = time.monotonic()
        if len(frames) != 2:
            return  # not something this protocol sends
        cmd = frames[0].decode("ascii", "replace")
        try:
            body = _unpack(frames[1])
        except Exception:
            return
        if not isinstance(body, dict):
            return
        if cmd == "MSG":
            self._push(body)
            return
        if cmd == "MSGS":
            # A WRITE batch on a batch=True subscription: one push each.
            msgs = body.get("msgs")
            if isinstance(msgs, list):
                for m in msgs:
                    self._push({"sub": body.get("sub"), "msg": m})
            return
        if cmd == "DROPPED":
            self._subs.pop(body.get("sub"), None)
            self._batched.discard(body.get("sub"))
            self._pushes.append({"dropped": body.get("sub"),
                                 "reason": body.get("reason")})
            return
        req = body.get("req")
        if req is None and cmd == "ERROR" and self._waiting:
            # The kernel could not read a request far enough to find its
            # req; it answers at once, so it is the oldest one awaited.
            req = next((r for r in self._waiting if r not in self._replies),
                       None)
        if req in self._pings:
            self._pings.discard(req)
            if cmd == "ERROR" and body.get("code") == 401:
                self.docked = False
            elif body.get("docked") is False and self.docked \
                    and self.reconnect:
                # A kernel that says in PONG whether the connection is
                # docked: the session is gone (timed out, killed, or a
                # restarted kernel that never knew it).
                self._lost = "the kernel no longer knows this session"
            return
        if req in self._waiting and req not in self._replies:
            self._replies[req] = (cmd, body)
        # else: the answer to a request given up on (timeout): dropped.

    def _push(self, body):
        sub = body.get("sub")
        msg = body.get("msg")
        mid = msg.get("id") if isinstance(msg, dict) else None
        if mid is not None and sub in self._subs:
            seen = self._seen.setdefault(sub, (collections.deque(), set()))
            if mid in seen[1]:
                return                 # replayed by a re-subscription
            seen[0].append(mid)
            seen[1].add(mid)
            if len(seen[0]) > 4096:
                seen[1].discard(seen[0].popleft())
            last = self._subs[sub]
            if not last or mid > last:
                self._subs[sub] = mid
        elif mid is not None and isinstance(sub, str) \
                and sub.startswith("@"):
            # A mailbox message delivered again after a re-dock while the
            # first delivery still waits for recv(): keep one.
            for p in self._pushes:
                m = p.get("msg")
                if p.get("sub") == sub and isinstance(m, dict) \
                        and m.get("id") == mid:
                    return
        self._pushes.append(body)

    # ---- reconnect --------------------------------------------------------

    def _hello_body(self):
        body = {"system": self.system, "version": PROTOCOL_VERSION,
                "channels": list(self.channels)}
        if self.system is None:
            del body["system"]
        if self.privileged:
            body["privileged"] = True
        token = self.token() if callable(self.token) else self.token
        if token is not None:
            body["token"] = token
        return body

    def _docked(self, r):
        """Keeps what a HELLO reply says."""
        if r.get("system"):
            self.system = r["system"]
        self.grants = list(r.get("grants", []))
        self.session = r.get("session")
        self.kernel = r.get("kernel")
        self.heartbeat_ms = int(r.get("heartbeat_ms") or 1000)
        self.resumed = bool(r.get("resumed"))
        if r.get("enrolled"):
            # The key is now bound to the system: the token is spent.
            self.enrolled = True
            if isinstance(self.token, str) \
                    and self.token.startswith(ENROLL_PREFIX):
                self.token = None
        self.docked = True
        now = time.monotonic()
        self._last_recv = now
        self._call_start = now
        if self._mon is not None:
            self._read_monitor()       # events of an earlier connection
            self._lost = None

    def _wait_internal(self, reqs, timeout):
        """Waits for the replies to internal requests (SUBs after a
        re-dock); False when the connection was lost again or time ran
        out."""
        deadline = time.monotonic() + timeout
        self._enter()
        while any(r not in self._replies for r in reqs):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._pump(left)
            except _Lost:
                return False
        return True

    def _attempt(self, wait):
        """One attempt to re-dock on a new socket: the HELLO reply, or None
        (no answer in time, or an answer worth another attempt). Raises
        AaaxError for a refusal."""
        self._close_socket()
        self._open()
        self._pings.clear()
        req = self._next_req
        self._next_req += 1
        body = dict({"req": req}, **self._hello_body())
        if self.session is not None:
            body["resume"] = self.session
        self._send("HELLO", body)
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000) + 1,
                                                zmq.POLLIN):
                if time.monotonic() >= deadline:
                    return None
                continue
            frames = self._sock.recv_multipart()
            self._last_recv = time.monotonic()
            try:
                cmd = frames[0].decode("ascii", "replace")
                rb = _unpack(frames[1]) if len(frames) == 2 else None
            except Exception:
                continue
            if not isinstance(rb, dict) or rb.get("req") != req:
                self._dispatch(frames)  # a push (none come before OK)
                continue
            if cmd == "OK":
                return rb
            if cmd == "ERROR" and rb.get("code") in _RETRY_CODES:
                return None
            raise AaaxError(rb.get("code", 0), rb.get("reason", ""), req)

    def _resubscribe(self, resumed):
        """After a re-dock: SUB again (from the last id seen) to what this
        client had subscribed to. A resumed session kept its
        subscriptions; a SUB with since then only fills what was pushed to
        the dead connection. False when the connection was lost again."""
        reqs = {}
        for chan, last in self._subs.items():
            if resumed and not last:
                continue
            body = {"chan": chan}
            if last is not None:
                body["since"] = last
            if chan in self._batched:
                body["batch"] = True
            reqs[self.request("SUB", **body)] = chan
        if not reqs:
            return True
        ok = self._wait_internal(list(reqs), max(self.timeout, 1.0))
        for req, chan in reqs.items():
            got = self._replies.pop(req, None)
            self._waiting.pop(req, None)
            if got is not None and got[0] == "ERROR":
                self._subs.pop(chan, None)
                self._seen.pop(chan, None)
                self._pushes.append({
                    "dropped": chan,
                    "reason": "subscribing again after a reconnect: %s %s"
                              % (got[1].get("code"), got[1].get("reason"))})
        return ok

    def _recover(self, why):
        """The connection is lost (why): re-docks on a new socket with
        back-off, subscribes again, sends again what may be repeated and
        marks the rest AaaxDisconnected. Raises AaaxError when the kernel
        refuses the re-dock and AaaxTimeout after reconnect_timeout."""
        start = time.monotonic()
        backoff = 0.1
        attempt_wait = max(3 * self.heartbeat_ms / 1000.0, 1.0)
        outstanding = [r for r in self._waiting if r not in self._replies
                       or _not_docked(*self._replies[r])]
        self.docked = False
        fresh = False        # some attempt docked afresh: SUB everything
        while True:
            try:
                r = self._attempt(attempt_wait)
            except AaaxError as e:
                self._fail_waiting("ERROR", {
                    "code": e.code,
                    "reason": "the connection was lost (%s) and docking "
                              "again was refused: %s" % (why, e.reason)})
                raise
            if r is not None:
                self._docked(r)
                fresh = fresh or not self.resumed
                self.resumed = not fresh
                if self._resubscribe(self.resumed):
                    break
                self.docked = False
            if self.reconnect_timeout is not None and \
                    time.monotonic() - start >= self.reconnect_timeout:
                self._fail_waiting("TIMEOUT", {})
                raise AaaxTimeout("the connection was lost (%s) and docking "
                                  "again failed for %.3gs"
                                  % (why, self.reconnect_timeout))
            pause = min(backoff * random.uniform(0.75, 1.25),
                        self.max_backoff)
            time.sleep(pause)
            backoff = min(backoff * 2, self.max_backoff)
        self.reconnects += 1
        for req in outstanding:
            if req not in self._waiting:
                continue
            cmd, body = self._waiting[req]
            got = self._replies.get(req)
            if got is not None:
                if not _not_docked(*got):
                    continue
                del self._replies[req]     # refused: safe to send again
            elif not _repeatable(cmd, body):
                self._replies[req] = ("DISCONNECTED", {
                    "req": req,
                    "reason": "the connection was lost (%s) while %s was "
                              "in flight; docked again, but whether it "
                              "took effect is unknown" % (why, cmd)})
                continue
            self._send(cmd, body)
        if self.on_reconnect is not None:
            self.on_reconnect(self.resumed)

    def _fail_waiting(self, cmd, body):
        for req in list(self._waiting):
            if req not in self._replies or _not_docked(*self._replies[req]):
                if cmd == "TIMEOUT":
                    self._waiting.pop(req, None)
                    self._replies.pop(req, None)
                else:
                    self._replies[req] = (cmd, dict(body, req=req))

    # ---- sessions -------------------------------------------------------

    def dock(self, system=None, channels=None, token=None, privileged=None):
        """Sends ``HELLO`` (with this client's ``system``, ``channels``,
        ``token``, ``privileged``, each replaceable here) and keeps the
        reply's ``grants``, ``session``, ``kernel`` and ``heartbeat_ms``.
        Returns the reply body. Docking again on a docked connection with
        the same id re-makes the grants.

        Enrollment (over CURVE): with an enrollment token (``aaax enroll``
        prints it, ``aaax-enroll-...``) as ``token`` the kernel binds this
        client's key to the token's system id; ``system`` may then be
        omitted. The reply has ``enrolled: true``; the spent token is
        forgotten (later re-docks present the key alone)."""
        if system is not None:
            self.system = system
        if channels is not None:
            self.channels = list(channels)
        if token is not None:
            self.token = token
        if privileged is not None:
            self.privileged = privileged
        if self.system is None and not (
                isinstance(self.token, str)
                and self.token.startswith(ENROLL_PREFIX)):
            raise ValueError("dock() needs a system id")
        was_docked = self.docked
        r = self.call("HELLO", **self._hello_body())
        if not was_docked:
            # A new session: whatever was subscribed before is gone.
            self._subs.clear()
            self._batched.clear()
            self._seen.clear()
        self._docked(r)
        self.resumed = False
        return r

    def bye(self, keep_leases=False):
        """Ends the session (``BYE``). With ``keep_leases`` the system's
        leases survive until they expire, so a later session of the same
        system id can still ``ack`` them."""
        body = {"keep_leases": True} if keep_leases else {}
        try:
            self.call("BYE", **body)
        finally:
            self.docked = False
            self._subs.clear()
            self._batched.clear()
            self._seen.clear()

    def ping(self):
        """``PING`` (answered docked or not); returns the kernel's clock
        (``ts``, seconds since the epoch)."""
        return self.call("PING")["ts"]

    # ---- channels -------------------------------------------------------

    def write(self, chan, data, to=None, corr=None, key=None,
              transient=False):
        """Writes ``data`` (any msgpack value) to channel ``chan``
        (``"@ID"`` for a mailbox) and returns the new message's id. On a
        durable channel the reply comes once the message is on disk. An
        idempotency ``key`` makes a repeat return the first write's id.
        ``transient=True`` (mailboxes): see ``send``."""
        body = {"chan": chan, "data": data}
        if to is not None:
            body["to"] = to
        if corr is not None:
            body["corr"] = corr
        if key is not None:
            body["key"] = key
        if transient:
            body["transient"] = True
        return self.call("WRITE", **body)["id"]

    def write_batch(self, chan, items, to=None, corr=None, transient=False):
        """Writes each value of ``items`` (1..10 000 of them) to ``chan`` in
        one request, in order, all or none; returns their ids. Each is a
        message of its own (own id); a subscriber with ``batch=True`` gets
        them in one push. On a durable channel the reply comes once all
        are on disk."""
        body = {"chan": chan, "batch": list(items)}
        if to is not None:
            body["to"] = to
        if corr is not None:
            body["corr"] = corr
        if transient:
            body["transient"] = True
        return self.call("WRITE", **body)["ids"]

    def send(self, to, data, corr=None, key=None, transient=False):
        """Sends ``data`` to system ``to``'s mailbox; returns the id.
        ``transient=True``: pushed once to ``to``'s live session and never
        stored (no ACK needed, nothing redelivered), or ``AaaxError`` 404
        when ``to`` is not docked or is paused -- for requests whose
        answer is worthless later, like NATS request/reply."""
        body = {"to": to, "data": data}
        if corr is not None:
            body["corr"] = corr
        if key is not None:
            body["key"] = key
        if transient:
            body["transient"] = True
        return self.call("SEND", **body)["id"]

    def claim(self, chan, max=1, wait_ms=None, lease_ms=None):
        """Leases up to ``max`` messages of work-queue ``chan``; returns a
        list of envelopes (dicts with ``id``, ``ts``, ``from``, ``chan``,
        ``to``, ``corr``, ``data``, ``attempt``). With ``wait_ms`` and
        nothing ready it waits up to that long (and returns ``[]`` if
        nothing came). ``lease_ms`` overrides the queue's lease. A CLAIM
        whose reply is lost with the connection is sent again after the
        re-dock: what the lost one leased comes back when its lease ends
        (at once when the session was not resumed)."""
        body = {"chan": chan, "max": max}
        if wait_ms is not None:
            body["wait_ms"] = wait_ms
        if lease_ms is not None:
            body["lease_ms"] = lease_ms
        body["_timeout"] = self.timeout + (wait_ms or 0) / 1000.0
        return self.call("CLAIM", **body)["msgs"]

    @staticmethod
    def _ids(ids):
        if isinstance(ids, (str, dict)):
            ids = [ids]
        return [i["id"] if isinstance(i, dict) else i for i in ids]

    def ack(self, chan, ids):
        """Acknowledges messages (ids, or envelopes) of work-queue ``chan``
        whose lease this system holds, or of its own mailbox ``"@ID"``;
        returns how many took effect."""
        return self.call("ACK", chan=chan, ids=self._ids(ids))["acked"]

    def nack(self, chan, ids, delay_ms=None):
        """Gives leased messages back (ready again at once, or after
        ``delay_ms``, with ``attempt`` + 1; dead-lettered to ``CHAN.dlq``
        after ``max_attempts``); returns how many took effect."""
        body = {"chan": chan, "ids": self._ids(ids)}
        if delay_ms is not None:
            body["delay_ms"] = delay_ms
        return self.call("NACK", **body)["requeued"]

    def subscribe(self, chan, since=None, batch=False):
        """Subscribes to broadcast channel ``chan``; messages come through
        ``recv()``. ``since`` (a message id, or ``""`` for all) first
        replays the retained messages written after it. ``batch=True``
        has the kernel push a WRITE batch as one ``MSGS`` (fewer, larger
        messages on the wire); ``recv()`` still returns one message at a
        time."""
        body = {"chan": chan}
        if since is not None:
            body["since"] = since
        if batch:
            body["batch"] = True
        self.call("SUB", **body)
        if batch:
            self._batched.add(chan)
        else:
            self._batched.discard(chan)
        if not chan.startswith("@"):
            if since or chan not in self._subs:
                self._subs[chan] = since or None
                self._seen.pop(chan, None)

    def unsubscribe(self, chan):
        """Ends a subscription (harmless when there is none)."""
        self.call("UNSUB", chan=chan)
        self._subs.pop(chan, None)
        self._batched.discard(chan)
        self._seen.pop(chan, None)

    def recv(self, timeout=None):
        """Returns the next pushed message, or None when none came within
        ``timeout`` seconds (``None``: wait as long as it takes, PINGing
        meanwhile):

        * a channel or mailbox message: ``{"sub": CHANNEL, "msg": ENVELOPE}``
        * a ``DROPPED`` notice (a subscription ended because this client
          did not keep up): ``{"dropped": CHANNEL, "reason": TEXT}``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._enter()
        while not self._pushes:
            try:
                if deadline is None:
                    self._pump(3600)
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    self._pump(0)
                    if not self._pushes:
                        return None
                    break
                self._pump(left)
            except _Lost as e:
                self._recover(str(e))
        return self._pushes.popleft()

    def pending(self):
        """How many pushed messages wait for ``recv()`` (already read from
        the socket)."""
        return len(self._pushes)

    # ---- extensions (privileged) -----------------------------------------

    def stat(self):
        """``STAT``: the kernel's status (privileged sessions only)."""
        r = self.call("STAT")
        r.pop("req", None)
        return r

    def ctl(self, op, system=None, **body):
        """``CTL``: ``op`` is ``"pause"``, ``"resume"`` or ``"kill"`` (acting
        on ``system``), ``"list"`` (the docked systems) or ``"reload"`` (the
        policy); privileged sessions only. Returns the reply without
        ``req``."""
        if system is not None:
            body["system"] = system
        r = self.call("CTL", op=op, **body)
        r.pop("req", None)
        return r

    # ---- kernel requests (contract section 7) ----------------------------

    def kernel_request(self, chan, data, timeout=10.0):
        """Writes ``data`` to the kernel work-queue ``chan`` (e.g.
        ``"kernel.gate"``) and returns the ``data`` of the kernel's answer:
        the message in this system's mailbox whose ``corr`` is the
        request's id (acknowledged here). Other pushes that arrive
        meanwhile stay for ``recv()``. Raises AaaxTimeout when no answer
        comes within ``timeout`` seconds."""
        rid = self.write(chan, data)
        return self.await_corr(rid, timeout)

    def await_corr(self, corr, timeout=10.0):
        """Waits for the mailbox message whose ``corr`` is ``corr`` (a
        follow-up to a kernel request, e.g. an approval), acknowledges it and
        returns its ``data``. Other pushes stay for ``recv()``."""
        deadline = time.monotonic() + timeout
        self._enter()
        mailbox = "@" + self.system
        while True:
            for i, p in enumerate(self._pushes):
                m = p.get("msg") if isinstance(p, dict) else None
                if (p.get("sub") == mailbox and isinstance(m, dict)
                        and m.get("corr") == corr):
                    del self._pushes[i]
                    self.ack(mailbox, [m["id"]])
                    return m.get("data")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AaaxTimeout("no answer from the kernel for " + str(corr))
            try:
                self._pump(min(left, 0.5))
            except _Lost as e:
                self._recover(str(e))

    def gate(self, action, target, args=None, timeout=10.0):
        """Asks the action gate: returns ``{decision, reason, rule,
        audit_id}``."""
        return self.kernel_request("kernel.gate", {"action": action, "target": target,
                                           "args": args or {}}, timeout)

    def loader(self, op, timeout=30.0, **body):
        """Asks the module loader (``kernel.loader``; privileged sessions
        only) and returns the ``data`` of its answer, e.g.
        ``loader("load", path="/abs/apps/echo")`` →
        ``{"ok": True, "modules": [...]}``, ``loader("list")``,
        ``loader("unload", name="echo")``; ops ``load`` (``path`` or
        ``paths``), ``unload``, ``reload``, ``list``, ``pin``, ``unpin``,
        ``start``, ``stop``, ``restart``, ``kill`` (``name``). A refusal is
        an answer with ``ok`` False and a ``reason``, not an exception.
        Paths are resolved by the kernel in its own working directory: give
        absolute ones. The default ``timeout`` is longer than other
        requests' as a load waits for the apps' ``start()``."""
        body["op"] = op
        return self.kernel_request("kernel.loader", body, timeout)
