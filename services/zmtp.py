"""A ZeroMQ ROUTER endpoint served by the thread that handles the requests: ZMTP 3.1 over TCP, no I/O thread.

The order-check service answers every order of an order management system, and its answer time is
the OMS's order latency. Through libzmq each request and each answer crosses two threads of the
service (libzmq's I/O thread reads the socket and wakes the request loop, the loop wakes the I/O
thread to write the answer): on the two-core machine the benchmark runs on, those wake-ups, not the
checks, made most of the tail (a bare libzmq echo server answered a paced client at p99 1.1–2.9 ms,
the same echo served by this endpoint at 0.5–0.6 ms; `bench/bench_pretrade.py` prints both). Here the
request loop reads and writes the TCP connections itself.

It speaks the ZeroMQ wire protocol, so clients keep their ZeroMQ library and sockets (REQ, DEALER or
ROUTER; https://rfc.zeromq.org/spec/23/ and /37/): the greeting, the NULL security handshake (READY
with the socket type), multipart messages and PING/PONG heartbeats. It refuses — closes the
connection, with an ERROR command where the protocol has one — peers of ZMTP before 3.0, security
mechanisms other than NULL, socket types a ROUTER cannot talk to, envelope frames above the size
limit and messages of more than `MAX_FRAMES` frames. A message whose last frame (the request) is above
the size limit is read past, not kept, and delivered with its size and no body, so the caller can
answer that it is too large.

Like a ZeroMQ ROUTER: every message is delivered with the connection it came from and its envelope
(every frame before the last), and an answer to a connection that has gone is dropped. One thread
owns the endpoint; `wake` may be called from any thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import selectors
import socket
import struct
import time
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

MAX_FRAMES = 32  # frames in one message (an envelope of a few routing frames and the request)
MAX_COMMAND = 64 * 1024  # bytes of a command frame (READY with its properties, PING)
MAX_UNSENT = 64 * 1024 * 1024  # answers a connection has not read: beyond this the connection is dropped
REFUSAL_LOG_EVERY = 60.0  # seconds between log messages about one refused address
REFUSAL_LOG_LINES = 10  # log lines about refused addresses a minute, all addresses together
PEER_TYPES = (b"REQ", b"DEALER", b"ROUTER")  # the socket types that can talk to a ROUTER (RFC 28)

# greeting: signature, version 3.1, mechanism NULL, as-server 0, filler (RFC 23)
GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
_SIZE = struct.Struct(">Q")
_PROP = struct.Struct(">I")
_RECV = 256 * 1024

# connection stages
_GREETING, _HANDSHAKE, _OPEN = 0, 1, 2

# a delivered message: (connection id, its envelope as received — every frame before the last, in wire
# form, sent back as it came —, the request body or None when it is too large, the request's size)
Message = tuple[int, bytes, bytes | None, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


class BindError(ValueError):
    """The address cannot be served: the message names what is wrong."""


def command(name: bytes, body: bytes = b"") -> bytes:
    """A command frame (RFC 23): the name's length, the name, the body."""
    data = bytes([len(name)]) + name + body
    return (bytes([0x04, len(data)]) if len(data) < 256 else b"\x06" + _SIZE.pack(len(data))) + data


def properties(props: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"".join(bytes([len(k)]) + k + _PROP.pack(len(v)) + v for k, v in props)


def parse_properties(data: bytes) -> dict[bytes, bytes]:
    """The metadata of a READY command, or ValueError when it does not parse."""
    out: dict[bytes, bytes] = {}
    i, n = 0, len(data)
    while i < n:
        k = data[i]
        name = data[i + 1:i + 1 + k]
        i += 1 + k
        if i + 4 > n:
            raise ValueError("truncated property")
        (v,) = _PROP.unpack_from(data, i)
        i += 4
        if i + v > n or not name:
            raise ValueError("truncated property")
        out[name.lower()] = data[i:i + v]
        i += v
    return out


READY = command(b"READY", properties([(b"Socket-Type", b"ROUTER")]))


_SHORT_LAST = [bytes([0, n]) for n in range(256)]  # the header of a last frame of n < 256 bytes


def header(n: int) -> bytes:
    """The header of a message's last frame of ``n`` bytes."""
    return _SHORT_LAST[n] if n < 256 else b"\x02" + _SIZE.pack(n)


def parse_address(address: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` → (host, port); ``*`` for all interfaces, a port of ``*`` or 0 for any free one."""
    if not address.startswith("tcp://"):
        scheme = address.split("://", 1)[0] if "://" in address else address
        raise BindError(f"{address!r}: the check service answers on tcp://HOST:PORT, not {scheme!r}")
    rest = address[len("tcp://"):]
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise BindError(f"{address!r}: give the address as tcp://HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "*":
        host = "0.0.0.0"
    if port in ("*", "0"):
        return host, 0
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BindError(f"{address!r}: the port must be a number from 1 to 65535 or *, got {port!r}")
    return host, int(port)


def parse_allow(text: str) -> tuple[Network, ...]:
    """``--allow``: comma-separated hosts or networks (``10.1.2.3``, ``10.1.0.0/16``, ``::1``) the
    service answers; a malformed item is named."""
    out: list[Network] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise BindError(f"--allow {item!r}: give an IP address or network (10.1.2.3, 10.1.0.0/16, ::1)"
                            ) from None
        if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_V4_MAPPED) and net.prefixlen >= 96:
            # ::ffff:a.b.c.d/n names IPv4 peers, which are matched as IPv4
            net = ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}")
        out.append(net)
    if not out:
        raise BindError("--allow: name at least one IP address or network")
    return tuple(out)


def is_loopback(host: str) -> bool:
    """Whether a bind host (as `parse_address` returns it) serves this machine only."""
    if host == "localhost":
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's or bind host's address; an IPv4 peer of a dual-stack socket (``::ffff:a.b.c.d``) as IPv4."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _allowed(networks: Sequence[Network], host: str) -> bool:
    ip = _ip(host)
    return ip is not None and any(ip in n for n in networks)


class RefusalLog:
    """Says which addresses were refused without flooding the log: a ZeroMQ client reconnects every
    0.1 s, and a peer can take a new IPv6 address inside its /64 for each attempt. Each source (an IPv4
    address, an IPv6 /64) is logged at most once a minute with the count since, and at most
    `REFUSAL_LOG_LINES` lines are written a minute in all; what is not logged is counted and said
    in the next line."""

    def __init__(self, every: float = REFUSAL_LOG_EVERY, lines: int = REFUSAL_LOG_LINES) -> None:
        self.every, self.lines = every, lines
        self._last: dict[str, tuple[float, int]] = {}  # source -> (last logged, refused since)
        self._window = -every  # start of the current minute of the line budget
        self._written = 0  # lines written in it
        self._unlogged = 0  # refusals from sources whose line was over the budget or forgotten

    @staticmethod
    def source(host: str) -> str:
        ip = _ip(host)
        if isinstance(ip, ipaddress.IPv6Address):
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip) if ip is not None else host

    def refused(self, host: str, now: float) -> None:
        src = self.source(host)
        last, since = self._last.get(src, (-self.every, 0))
        if now - last < self.every:
            self._last[src] = (last, since + 1)
            return
        if now - self._window >= self.every:
            self._window, self._written = now, 0
        if self._written >= self.lines:
            self._unlogged += 1
            return
        if len(self._last) >= 1024:  # forget the quiet sources (their counts go into the next line)
            for k, (t, n) in list(self._last.items()):
                if now - t >= self.every:
                    self._unlogged += n
                    del self._last[k]
            if len(self._last) >= 1024:
                self._unlogged += sum(n for _, n in self._last.values())
                self._last.clear()
        self._last[src] = (now, 0)
        self._written += 1
        more = f" ({since:,} more since the last message)" if since else ""
        others = f"; {self._unlogged:,} refused from other addresses not logged" if self._unlogged else ""
        self._unlogged = 0
        log.warning("check service: refused a connection from %s: not in --allow%s%s", src, more, others)


class _Connection:
    __slots__ = ("id", "sock", "stage", "buf", "envelope", "size", "skip", "unsent", "writing", "peer")

    def __init__(self, cid: int, sock: socket.socket, peer: str) -> None:
        self.id = cid
        self.sock = sock
        self.peer = peer
        self.stage = _GREETING
        self.buf = b""  # received bytes not yet taken (the start of an incomplete message)
        self.envelope = b""  # of a message whose request is too large and is being read past
        self.size = -1  # the size of that request
        self.skip = 0  # bytes of that frame still to read past
        self.unsent = bytearray()
        self.writing = False  # registered for EVENT_WRITE (unsent bytes are waiting)


class RouterEndpoint:
    """Listens on ``address``; `receive` returns the messages that have arrived, `send` queues an answer
    and `flush` writes the queued answers (call it once the messages at hand are answered).
    With ``allow``, a connection from any other address is closed as soon as it is accepted."""

    def __init__(self, address: str, max_request: int, allow: Sequence[Network] | None = None) -> None:
        host, port = parse_address(address)
        self.max_request = max_request
        self.allow = None if allow is None else tuple(allow)  # empty: nobody
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        except OSError as e:
            raise BindError(f"{address!r}: unknown host {host!r} ({e})") from None
        self._listener = socket.socket(infos[0][0], socket.SOCK_STREAM)
        try:
            if os.name != "nt":  # restart on the same port at once (on Windows the flag would share it)
                self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(infos[0][4])
            self._listener.listen(128)
        except OSError as e:
            self._listener.close()
            raise BindError(f"cannot bind {address}: {e.strerror or e}") from None
        self._listener.setblocking(False)
        bound = self._listener.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        self.endpoint = f"tcp://{shown}:{bound[1]}"
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._conns: dict[int, _Connection] = {}
        self._next_id = 0
        self._dirty: list[_Connection] = []  # connections with answers queued since the last flush
        self.refused = 0  # connections closed for a protocol error
        self.refused_peers = 0  # connections closed because their address is not allowed
        self._refusals = RefusalLog()

    # ------------------------------------------------------------------ the loop's side
    @property
    def connections(self) -> int:
        return sum(1 for c in self._conns.values() if c.stage == _OPEN)

    def receive(self, timeout: float | None) -> list[Message]:
        """Wait up to ``timeout`` seconds (None: until something happens) and return the complete
        messages that arrived; an empty list on a timeout or a `wake`."""
        out: list[Message] = []
        for key, events in self._selector.select(timeout):
            conn = key.data
            if conn is None:
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._drain_wake()
                continue
            if events & selectors.EVENT_WRITE:
                self._write(conn)
            if events & selectors.EVENT_READ and conn.id in self._conns:
                self._read(conn, out)
        return out

    def send(self, cid: int, envelope: bytes, body: bytes) -> None:
        """Queue an answer to connection ``cid`` under the envelope its request came with (dropped when
        the connection has gone, as a ROUTER does)."""
        conn = self._conns.get(cid)
        if conn is None:
            return
        out = conn.unsent
        if not out:
            self._dirty.append(conn)
        out += envelope
        out += _SHORT_LAST[len(body)] if len(body) < 256 else header(len(body))
        out += body
        if conn.writing and len(out) > MAX_UNSENT:  # the client has stopped reading
            self._drop(conn, f"{len(out):,} bytes of answers not read by the client")

    def flush(self) -> None:
        """Write what `send` queued; what a connection does not take now is written when it can."""
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            if conn.id in self._conns and not conn.writing:
                self._write(conn)

    def wake(self) -> None:
        """Make a waiting `receive` return now (any thread)."""
        with contextlib.suppress(OSError):  # already woken (the pair's buffer is full) or closed
            self._wake_w.send(b"\0")

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn, None)
        for s in (self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            s.close()
        self._selector.close()

    # ------------------------------------------------------------------ connections
    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of file descriptors and the like: keep serving the others
                log.warning("check service: cannot accept a connection: %s", e)
                return
            if self.allow is not None and not _allowed(self.allow, addr[0]):
                sock.close()
                self._refused_peer(addr[0])
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._next_id += 1
            conn = _Connection(self._next_id, sock, f"{addr[0]}:{addr[1]}")
            self._conns[conn.id] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)
            conn.unsent += GREETING + READY  # both at once: the NULL handshake needs nothing from the peer
            self._write(conn)

    def _refused_peer(self, host: str) -> None:
        self.refused_peers += 1
        self._refusals.refused(host, time.monotonic())

    def _drop(self, conn: _Connection, why: str | None) -> None:
        if why is not None:
            self.refused += 1
            log.warning("check service: closed the connection from %s: %s", conn.peer, why)
        self._conns.pop(conn.id, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _refuse(self, conn: _Connection, why: str) -> None:
        """Tell the peer why (ZMTP ERROR command) as far as the socket takes it now, then close."""
        if conn.stage != _GREETING:
            with contextlib.suppress(OSError):
                reason = why.encode()[:255]
                conn.sock.send(command(b"ERROR", bytes([len(reason)]) + reason))
        self._drop(conn, why)

    def _write(self, conn: _Connection) -> None:
        try:
            n = conn.sock.send(conn.unsent)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:  # the peer has gone: its answers go nowhere, as with a ROUTER
            self._drop(conn, None)
            return
        del conn.unsent[:n]
        if conn.unsent:
            if len(conn.unsent) > MAX_UNSENT:
                self._drop(conn, f"{len(conn.unsent):,} bytes of answers not read by the client")
                return
            if not conn.writing:
                conn.writing = True
                self._selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        elif conn.writing:
            conn.writing = False
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # ------------------------------------------------------------------ reading
    def _read(self, conn: _Connection, out: list[Message]) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn, None)
            return
        if not data:  # the peer closed
            self._drop(conn, None)
            return
        if conn.skip:  # reading past a request that is too large
            if len(data) <= conn.skip:
                conn.skip -= len(data)
                if conn.skip == 0:
                    self._deliver_large(conn, out)
                return
            data = data[conn.skip:]
            conn.skip = 0
            self._deliver_large(conn, out)
        buf = conn.buf + data if conn.buf else data
        try:
            used = self._parse(conn, buf, out)
        except _Refused as e:
            self._refuse(conn, str(e))
            return
        conn.buf = buf[used:] if used < len(buf) else b""

    def _deliver_large(self, conn: _Connection, out: list[Message]) -> None:
        out.append((conn.id, conn.envelope, None, conn.size))
        conn.envelope = b""
        conn.size = -1

    def _parse(self, conn: _Connection, buf: bytes, out: list[Message]) -> int:
        """Take the complete frames at the start of ``buf``; returns how many bytes were used."""
        i, n = 0, len(buf)
        if conn.stage == _GREETING:
            if n < 64:
                if n and buf[0] != 0xFF:
                    raise _Refused("not a ZeroMQ peer (no ZMTP greeting)")
                return 0
            if buf[0] != 0xFF or not buf[9] & 1:
                raise _Refused("not a ZeroMQ peer (no ZMTP greeting)")
            if buf[10] < 3:
                raise _Refused(f"ZMTP {buf[10]}.0 peer: the check service speaks ZMTP 3 (libzmq 4 or later)")
            mechanism = buf[12:32].rstrip(b"\0")
            conn.stage = _HANDSHAKE
            if mechanism != b"NULL":
                raise _Refused(f"security mechanism {mechanism.decode(errors='replace')} is not offered")
            i = 64
        start = i  # where the message being read begins: an incomplete one is read again with more bytes
        frames = 0
        while n - i >= 2:
            flags = buf[i]
            if flags & 0x02:
                if n - i < 9:
                    break
                (size,) = _SIZE.unpack_from(buf, i + 1)
                head = 9
            else:
                size = buf[i + 1]
                head = 2
            if flags & 0x04:  # a command (between messages)
                if size > MAX_COMMAND:
                    raise _Refused(f"command frame of {size:,} bytes")
                if n - i < head + size:
                    break
                self._command(conn, buf[i + head:i + head + size])
                i += head + size
                start = i
                continue
            if conn.stage != _OPEN:
                raise _Refused("message before the READY handshake")
            if size > self.max_request:
                if flags & 0x01:
                    raise _Refused(f"envelope frame of {size:,} bytes")
                conn.envelope = buf[start:i]
                conn.size = size
                i += head
                if n - i >= size:  # all of it is here: past it at once
                    i += size
                    start = i
                    frames = 0
                    self._deliver_large(conn, out)
                    continue
                conn.skip = size - (n - i)
                return n
            if n - i < head + size:
                break
            i += head + size
            if flags & 0x01:
                frames += 1
                if frames >= MAX_FRAMES:
                    raise _Refused(f"a message of more than {MAX_FRAMES} frames")
            else:
                out.append((conn.id, buf[start:i - head - size], buf[i - size:i], size))
                start = i
                frames = 0
        return start

    def _command(self, conn: _Connection, data: bytes) -> None:
        if not data:
            raise _Refused("empty command frame")
        name = data[1:1 + data[0]]
        body = data[1 + data[0]:]
        if conn.stage == _HANDSHAKE:
            if name != b"READY":
                raise _Refused(f"expected READY, got {name.decode(errors='replace')!r}")
            try:
                props = parse_properties(body)
            except (ValueError, IndexError):
                raise _Refused("READY metadata does not parse") from None
            kind = props.get(b"socket-type", b"")
            if kind not in PEER_TYPES:
                raise _Refused(f"socket type {kind.decode(errors='replace') or 'missing'} cannot talk to a ROUTER")
            conn.stage = _OPEN
        elif name == b"PING":  # heartbeat (ZMTP 3.1): PONG with the ping's context
            if conn.id in self._conns:
                if not conn.unsent:
                    self._dirty.append(conn)
                conn.unsent += command(b"PONG", body[2:18])
        elif name == b"ERROR":
            raise _Refused(f"the peer reported an error: {body[1:1 + body[0]].decode(errors='replace')}"
                           if body else "the peer reported an error")
        # PONG, SUBSCRIBE, CANCEL and commands of later versions: nothing to do


class _Refused(Exception):
    pass

