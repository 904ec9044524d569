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

Liveness: the kernel undocks a session that stays silent for 3 heartbeat
periods (``heartbeat_ms``, told at ``HELLO``). While this client waits
inside a call (``recv``, a long-poll ``claim``, any reply) it sends
``PING`` whenever it has sent nothing for half a period, so a session is
never silent for more than ``heartbeat_ms``. Between calls it cannot (it
has no thread): a script that stays away longer should call
``keepalive()`` now and then, or ``dock()`` again after an
``AaaxError`` 401.

Errors from the kernel raise ``AaaxError`` with ``code`` (int, as in the
protocol: 400, 401, 403, 404, 409, 413, 423, 429, 500, 503) and
``reason``; no reply in time raises ``AaaxTimeout`` (a subclass, code 0).
"""

import collections
import os
import random
import time

import msgpack
import zmq

__all__ = ["Client", "AaaxError", "AaaxTimeout", "read_token",
           "DEFAULT_ENDPOINT", "DEFAULT_TAP"]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5670"
DEFAULT_TAP = "tcp://127.0.0.1:5671"
PROTOCOL_VERSION = 1


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


def read_token(data_dir):
    """Returns the session token the kernel wrote at boot to
    ``<data_dir>/session.token`` (64 hex characters). Only the kernel's own
    user can read it; presenting it in ``HELLO`` makes a session
    privileged."""
    with open(os.path.join(data_dir, "session.token")) as f:
        return f.read().strip()


def _pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


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
    ``{zmq.RCVHWM: 100}``).

    After ``dock()``: ``grants`` (list of ``"RIGHT:CHANNEL"``),
    ``session`` (the session id), ``kernel`` (the kernel id),
    ``heartbeat_ms`` and ``docked`` (bool).
    """

    def __init__(self, endpoint=DEFAULT_ENDPOINT, system=None, token=None,
                 privileged=False, channels=(), timeout=5.0, context=None,
                 sockopts=None):
        self.endpoint = endpoint
        self.system = system
        self.token = token
        self.privileged = privileged
        self.channels = list(channels)
        self.timeout = timeout
        self.grants = []
        self.session = None
        self.kernel = None
        self.heartbeat_ms = 1000
        self.docked = False
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        for opt, value in (sockopts or {}).items():
            self._sock.setsockopt(opt, value)
        self._sock.connect(endpoint)
        self._next_req = random.randrange(1, 1 << 20)
        self._waiting = collections.OrderedDict()  # req -> None (awaited)
        self._replies = {}                          # req -> (cmd, body)
        self._pings = set()                         # reqs of our own PINGs
        self._pushes = collections.deque()          # pushed messages
        self._last_send = time.monotonic()

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
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        self.docked = False

    @property
    def socket(self):
        """The underlying DEALER socket (for zmq.Poller)."""
        return self._sock

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
        self._waiting[req] = None
        return req

    def reply(self, req, timeout=None):
        """Waits for the reply to ``req``; returns ``(command, body)``
        (``command`` is ``"OK"``, ``"PONG"``...). Raises ``AaaxError`` for
        an ``ERROR`` and ``AaaxTimeout`` when nothing came within
        ``timeout`` seconds (default: the client's)."""
        if timeout is None:
            timeout = self.timeout
        deadline = time.monotonic() + timeout
        while req not in self._replies:
            left = deadline - time.monotonic()
            if left <= 0:
                self._pump(0)          # what has arrived counts
                if req in self._replies:
                    break
                self._waiting.pop(req, None)
                raise AaaxTimeout("no reply within %.3gs" % timeout, req)
            self._pump(left)
        cmd, body = self._replies.pop(req)
        if cmd == "ERROR":
            if body.get("code") == 401:
                self.docked = False
            raise AaaxError(body.get("code", 0), body.get("reason", ""),
                            body.get("req"))
        return cmd, body

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
        was sent for half a heartbeat period, and reads what has arrived.
        Call it from a loop that does not otherwise talk to the kernel."""
        self._maybe_ping()
        self._pump(0)

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

    def _pump(self, timeout):
        """Reads what arrives within timeout seconds (at least one poll),
        PINGing as needed; returns after the first message read or when
        the time is up."""
        if self._sock is None:
            raise AaaxError(0, "client closed")
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            self._maybe_ping()
            now = time.monotonic()
            wait = deadline - now
            if self.docked:
                wait = min(wait, self._last_send + self.heartbeat_ms / 2000.0
                           - now)
            wait_ms = max(0, int(wait * 1000 + 0.999))
            if self._sock.poll(wait_ms, zmq.POLLIN):
                got = False
                while self._sock.poll(0, zmq.POLLIN):
                    self._dispatch(self._sock.recv_multipart())
                    got = True
                if got:
                    return
            if time.monotonic() >= deadline:
                return

    def _dispatch(self, frames):
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
            self._pushes.append(body)
            return
        if cmd == "DROPPED":
            self._pushes.append({"dropped": body.get("sub"),
                                 "reason": body.get("reason")})
            return
        req = body.get("req")
        if req is None and cmd == "ERROR" and self._waiting:
            # The kernel could not read a request far enough to find its
            # req; it answers at once, so it is the oldest one awaited.
            req = next(iter(self._waiting))
        if req in self._pings:
            self._pings.discard(req)
            if cmd == "ERROR" and body.get("code") == 401:
                self.docked = False
            return
        if req in self._waiting:
            del self._waiting[req]
            self._replies[req] = (cmd, body)
        # else: the answer to a request given up on (timeout): dropped.

    # ---- sessions -------------------------------------------------------

    def dock(self, system=None, channels=None, token=None, privileged=None):
        """Sends ``HELLO`` (with this client's ``system``, ``channels``,
        ``token``, ``privileged``, each replaceable here) and keeps the
        reply's ``grants``, ``session``, ``kernel`` and ``heartbeat_ms``.
        Returns the reply body. Docking again on a docked connection with
        the same id re-makes the grants."""
        if system is not None:
            self.system = system
        if channels is not None:
            self.channels = list(channels)
        if token is not None:
            self.token = token
        if privileged is not None:
            self.privileged = privileged
        if self.system is None:
            raise ValueError("dock() needs a system id")
        body = {"system": self.system, "version": PROTOCOL_VERSION,
                "channels": list(self.channels)}
        if self.privileged:
            body["privileged"] = True
        if self.token is not None:
            body["token"] = self.token
        r = self.call("HELLO", **body)
        self.grants = list(r.get("grants", []))
        self.session = r.get("session")
        self.kernel = r.get("kernel")
        self.heartbeat_ms = int(r.get("heartbeat_ms") or 1000)
        self.docked = True
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

    def ping(self):
        """``PING`` (answered docked or not); returns the kernel's clock
        (``ts``, seconds since the epoch)."""
        return self.call("PING")["ts"]

    # ---- channels -------------------------------------------------------

    def write(self, chan, data, to=None, corr=None, key=None):
        """Writes ``data`` (any msgpack value) to channel ``chan``
        (``"@ID"`` for a mailbox) and returns the new message's id. On a
        durable channel the reply comes once the message is on disk. An
        idempotency ``key`` makes a repeat return the first write's id."""
        body = {"chan": chan, "data": data}
        if to is not None:
            body["to"] = to
        if corr is not None:
            body["corr"] = corr
        if key is not None:
            body["key"] = key
        return self.call("WRITE", **body)["id"]

    def send(self, to, data, corr=None, key=None):
        """Sends ``data`` to system ``to``'s mailbox; returns the id."""
        body = {"to": to, "data": data}
        if corr is not None:
            body["corr"] = corr
        if key is not None:
            body["key"] = key
        return self.call("SEND", **body)["id"]

    def claim(self, chan, max=1, wait_ms=None, lease_ms=None):
        """Leases up to ``max`` messages of work-queue ``chan``; returns a
        list of envelopes (dicts with ``id``, ``ts``, ``from``, ``chan``,
        ``to``, ``corr``, ``data``, ``attempt``). With ``wait_ms`` and
        nothing ready it waits up to that long (and returns ``[]`` if
        nothing came). ``lease_ms`` overrides the queue's lease."""
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

    def subscribe(self, chan, since=None):
        """Subscribes to broadcast channel ``chan``; messages come through
        ``recv()``. ``since`` (a message id, or ``""`` for all) first
        replays the retained messages written after it."""
        body = {"chan": chan}
        if since is not None:
            body["since"] = since
        self.call("SUB", **body)

    def unsubscribe(self, chan):
        """Ends a subscription (harmless when there is none)."""
        self.call("UNSUB", chan=chan)

    def recv(self, timeout=None):
        """Returns the next pushed message, or None when none came within
        ``timeout`` seconds (``None``: wait as long as it takes, PINGing
        meanwhile):

        * a channel or mailbox message: ``{"sub": CHANNEL, "msg": ENVELOPE}``
        * a ``DROPPED`` notice (a subscription ended because this client
          did not keep up): ``{"dropped": CHANNEL, "reason": TEXT}``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pushes:
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
            self._pump(min(left, 0.5))

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
