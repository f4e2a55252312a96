"""The check service's ZeroMQ endpoint (`services.zmtp`) against libzmq clients and raw TCP peers.

An echo loop serves the endpoint in a thread, as the check service's request loop does: each request
comes back under its own envelope, a request above the size limit comes back as its size. libzmq REQ
and DEALER sockets are the clients an order management system uses; raw sockets send what libzmq
never would (split frames, bad greetings, other security mechanisms, floods of frames).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from services import zmtp
from services.zmtp import BindError, RouterEndpoint, is_loopback, parse_address, parse_allow


class Echo:
    def __init__(self, max_request: int = 1024) -> None:
        self.ep = RouterEndpoint("tcp://127.0.0.1:*", max_request)
        self.halt = False
        self.seen: list[tuple[bytes, bytes | None, int]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.halt:
            for cid, envelope, body, size in self.ep.receive(0.02):
                self.seen.append((envelope, body, size))
                self.ep.send(cid, envelope, body if body is not None else f"too large: {size}".encode())
            self.ep.flush()

    def stop(self) -> None:
        self.halt = True
        self.thread.join(5)
        self.ep.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    e = Echo()
    yield e
    e.stop()


def _zmq(kind: int, endpoint: str) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(endpoint)
    return ctx, s


def _still_served(endpoint: str) -> None:
    """A new REQ client is answered."""
    ctx, req = _zmq(zmq.REQ, endpoint)
    try:
        req.send(b"still here")
        assert req.recv() == b"still here"
    finally:
        req.close(0)
        ctx.term()


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _frame(data: bytes, more: bool = False) -> bytes:
    if len(data) < 256:
        return bytes([1 if more else 0, len(data)]) + data
    return bytes([3 if more else 2]) + struct.pack(">Q", len(data)) + data


def _greeting(major: int = 3, mechanism: bytes = b"NULL") -> bytes:
    return b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([major, 0]) + mechanism.ljust(20, b"\x00") + b"\x00" * 32


def _ready(kind: bytes = b"DEALER") -> bytes:
    return zmtp.command(b"READY", zmtp.properties([(b"Socket-Type", kind)]))


class Raw:
    """A TCP peer speaking ZMTP by hand."""

    def __init__(self, endpoint: str, handshake: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", _port(endpoint)), timeout=5)
        self.buf = b""
        if handshake:
            self.sock.sendall(_greeting() + _ready())
            greeting = self.take(64)
            assert greeting[0] == 0xFF and greeting[10] == 3 and greeting[12:16] == b"NULL"
            flags, name, body = self.frame()
            assert flags & 0x04 and name == b"READY" and zmtp.parse_properties(body)[b"socket-type"] == b"ROUTER"

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes, bytes]:
        """(flags, command name or b"", body) of the next frame."""
        flags = self.take(1)[0]
        size = struct.unpack(">Q", self.take(8))[0] if flags & 0x02 else self.take(1)[0]
        data = self.take(size)
        if flags & 0x04:
            return flags, data[1:1 + data[0]], data[1 + data[0]:]
        return flags, b"", data

    def message(self) -> list[bytes]:
        out = []
        while True:
            flags, _, data = self.frame()
            out.append(data)
            if not flags & 0x01:
                return out

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the endpoint closes the connection (what it sent first is read past)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def test_req_and_dealer_clients_get_answers_under_their_own_envelopes(echo: Echo) -> None:
    ctx, req = _zmq(zmq.REQ, echo.ep.endpoint)
    ctx2, dealer = _zmq(zmq.DEALER, echo.ep.endpoint)
    try:
        req.send(b"hello")
        assert req.recv() == b"hello"
        dealer.send_multipart([b"7", b"", b"x" * 300])  # a long frame (8-byte size) under a routing envelope
        assert dealer.recv_multipart() == [b"7", b"", b"x" * 300]
        dealer.send(b"bare")  # a DEALER without the empty frame
        assert dealer.recv_multipart() == [b"bare"]
        for i in range(50):  # pipelined: every answer, in order
            dealer.send_multipart([str(i).encode(), b"", b"q"])
        assert [dealer.recv_multipart()[0] for _ in range(50)] == [str(i).encode() for i in range(50)]
        req.send(b"again")  # the REQ client was not answered the DEALER's messages
        assert req.recv() == b"again"
        assert echo.ep.connections == 2
    finally:
        req.close(0)
        dealer.close(0)
        ctx.term()
        ctx2.term()


def test_frames_split_across_reads_arrive_whole(echo: Echo) -> None:
    raw = Raw(echo.ep.endpoint)
    try:
        wire = _frame(b"id", more=True) + _frame(b"", more=True) + _frame(b"y" * 700)
        for i in range(len(wire)):  # one byte at a time
            raw.sock.send(wire[i:i + 1])
            time.sleep(0.0005 if i % 50 == 0 else 0)
        assert raw.message() == [b"id", b"", b"y" * 700]
        assert echo.seen[-1] == (_frame(b"id", True) + _frame(b"", True), b"y" * 700, 700)
    finally:
        raw.close()


def test_a_request_above_the_limit_is_read_past_and_answered_with_its_size(echo: Echo) -> None:
    raw = Raw(echo.ep.endpoint)
    try:
        raw.sock.sendall(_frame(b"", more=True) + _frame(b"z" * 200_000))  # above 1,024
        assert raw.message() == [b"", b"too large: 200000"]
        raw.sock.sendall(_frame(b"", more=True) + _frame(b"next"))  # the stream is still in step
        assert raw.message() == [b"", b"next"]
        assert echo.seen[0][1] is None
    finally:
        raw.close()


def test_heartbeat_ping_gets_a_pong_with_its_context(echo: Echo) -> None:
    raw = Raw(echo.ep.endpoint)
    try:
        raw.sock.sendall(zmtp.command(b"PING", struct.pack(">H", 10) + b"ctx-42"))
        flags, name, body = raw.frame()
        assert flags & 0x04 and (name, body) == (b"PONG", b"ctx-42")
    finally:
        raw.close()
    # libzmq's own heartbeats: a client that drops a connection without a PONG keeps this one
    ctx, dealer = _zmq(zmq.DEALER, echo.ep.endpoint)
    dealer.setsockopt(zmq.HEARTBEAT_IVL, 20)
    dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, 100)
    monitor = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        dealer.send(b"a")
        assert dealer.recv_multipart() == [b"a"]
        time.sleep(0.6)
        assert monitor.poll(0) == 0  # never disconnected
        dealer.send(b"b")
        assert dealer.recv_multipart() == [b"b"]
    finally:
        monitor.close(0)
        dealer.close(0)
        ctx.term()


@pytest.mark.parametrize(("wire", "why"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a ZeroMQ peer"),
    (_greeting(major=2), "ZMTP 2.0 peer"),
    (_greeting(mechanism=b"PLAIN") + _ready(), "security mechanism PLAIN is not offered"),
    (_greeting() + _ready(b"PUB"), "socket type PUB cannot talk to a ROUTER"),
    (_greeting() + _frame(b"hello"), "message before the READY handshake"),
    (_greeting() + _ready() + _frame(b"x" * 2000, more=True) + _frame(b"req"), "envelope frame of 2,000 bytes"),
    (_greeting() + _ready() + b"".join(_frame(b"", more=True) for _ in range(40)) + _frame(b"req"),
     "more than 32 frames"),
    (_greeting() + zmtp.command(b"HELLO"), "expected READY, got 'HELLO'"),
])
def test_peers_that_break_the_protocol_are_closed_and_the_endpoint_serves_on(
        echo: Echo, wire: bytes, why: str, caplog: pytest.LogCaptureFixture) -> None:
    raw = Raw(echo.ep.endpoint, handshake=False)
    try:
        raw.sock.sendall(wire)
        assert raw.closed()
    finally:
        raw.close()
    assert why in caplog.text
    assert echo.ep.refused == 1
    _still_served(echo.ep.endpoint)


def test_the_peer_is_told_why_with_a_zmtp_error(echo: Echo) -> None:
    raw = Raw(echo.ep.endpoint, handshake=False)
    try:
        raw.sock.sendall(_greeting() + _ready(b"SUB"))
        assert raw.take(64)[12:16] == b"NULL"
        names = []
        while True:
            flags, name, body = raw.frame()
            names.append(name)
            if name == b"ERROR":
                assert body[1:1 + body[0]] == b"socket type SUB cannot talk to a ROUTER"
                break
    finally:
        raw.close()


def test_answers_to_a_connection_that_has_gone_are_dropped(echo: Echo) -> None:
    ep = echo.ep
    raw = Raw(ep.endpoint)
    raw.sock.sendall(_frame(b"one"))
    assert raw.message() == [b"one"]
    cid = max(ep._conns)
    raw.close()
    deadline = time.monotonic() + 5
    while cid in ep._conns and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cid not in ep._conns
    ep.send(cid, b"", b"late answer")  # nobody to take it: nothing raised, nothing kept
    assert ep._dirty == []


def test_a_client_that_never_reads_its_answers_is_dropped(echo: Echo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zmtp, "MAX_UNSENT", 256 * 1024)
    raw = Raw(echo.ep.endpoint)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        body = _frame(b"w" * 1000) * 64
        deadline = time.monotonic() + 30
        with pytest.raises(OSError):  # the endpoint drops the connection once 256 KiB wait unread
            while time.monotonic() < deadline:
                raw.sock.sendall(body)
        assert echo.ep.refused == 1
        _still_served(echo.ep.endpoint)
    finally:
        raw.close()


def test_a_wake_returns_a_waiting_receive_at_once() -> None:
    ep = RouterEndpoint("tcp://127.0.0.1:*", 1024)
    try:
        threading.Timer(0.05, ep.wake).start()
        t = time.monotonic()
        assert ep.receive(5.0) == []
        assert time.monotonic() - t < 2.0
    finally:
        ep.close()


@pytest.mark.parametrize(("address", "message"), [
    ("ipc:///tmp/x", "answers on tcp://HOST:PORT, not 'ipc'"),
    ("tcp://127.0.0.1", "give the address as tcp://HOST:PORT"),
    ("tcp://127.0.0.1:http", "the port must be a number from 1 to 65535 or *, got 'http'"),
    ("tcp://127.0.0.1:70000", "got '70000'"),
])
def test_addresses_that_cannot_be_served_are_named(address: str, message: str) -> None:
    with pytest.raises(BindError, match=message.replace("*", r"\*").replace("(", r"\(")):
        parse_address(address)


def test_parse_address_forms() -> None:
    assert parse_address("tcp://*:5600") == ("0.0.0.0", 5600)
    assert parse_address("tcp://127.0.0.1:*") == ("127.0.0.1", 0)
    assert parse_address("tcp://[::1]:0") == ("::1", 0)


def test_a_port_in_use_is_named() -> None:
    ep = RouterEndpoint("tcp://127.0.0.1:*", 1024)
    try:
        with pytest.raises(BindError, match=f"cannot bind {ep.endpoint}"):
            RouterEndpoint(ep.endpoint, 1024)
    finally:
        ep.close()


def _served_by(allow: str) -> tuple[RouterEndpoint, threading.Thread, threading.Event]:
    ep = RouterEndpoint("tcp://127.0.0.1:*", 1024, parse_allow(allow))
    halt = threading.Event()

    def loop() -> None:
        while not halt.is_set():
            for cid, envelope, body, _size in ep.receive(0.02):
                ep.send(cid, envelope, body or b"")
            ep.flush()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return ep, t, halt


def test_only_allowed_peers_are_answered(caplog: pytest.LogCaptureFixture) -> None:
    # a service that answers 10.0.0.0/8 only closes a connection from 127.0.0.1 at once, and serves on
    ep, t, halt = _served_by("10.0.0.0/8, 192.168.1.7")
    try:
        raw = socket.create_connection(("127.0.0.1", _port(ep.endpoint)), timeout=5)
        raw.settimeout(5)
        assert raw.recv(64) == b""  # closed without a greeting
        raw.close()
        ctx, req = _zmq(zmq.REQ, ep.endpoint)
        req.setsockopt(zmq.RCVTIMEO, 500)
        req.send(b"hello")
        with pytest.raises(zmq.Again):
            req.recv()
        req.close(0)
        ctx.term()
        assert ep.refused_peers >= 2 and ep.connections == 0
        # the REQ socket reconnected every 0.1 s: the log says so once, not each time
        said = [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()]
        assert said == ["check service: refused a connection from 127.0.0.1: not in --allow"]
    finally:
        halt.set()
        t.join(5)
        ep.close()
    # the same client, allowed (as a host and as a network), is answered
    for allow in ("127.0.0.1", "127.0.0.0/8,::1"):
        ep, t, halt = _served_by(allow)
        try:
            _still_served(ep.endpoint)
            assert ep.refused_peers == 0
        finally:
            halt.set()
            t.join(5)
            ep.close()


def test_allow_lists_and_loopback_binds() -> None:
    assert parse_allow("10.1.2.3, 10.9.0.0/16,::1") == (
        ipaddress.ip_network("10.1.2.3/32"), ipaddress.ip_network("10.9.0.0/16"), ipaddress.ip_network("::1/128"))
    assert parse_allow("10.9.1.1/16") == (ipaddress.ip_network("10.9.0.0/16"),)  # host bits dropped
    assert zmtp._allowed(parse_allow("10.9.0.0/16"), "::ffff:10.9.4.5")  # an IPv4 peer on a dual-stack socket
    assert not zmtp._allowed(parse_allow("10.9.0.0/16"), "10.8.4.5")
    for bad in ("10.0.0.300", "host.example", "10.0.0.0/33"):
        with pytest.raises(BindError, match=f"--allow '{bad}'"):
            parse_allow(bad)
    assert [is_loopback(parse_address(a)[0]) for a in (
        "tcp://127.0.0.1:1", "tcp://[::1]:1", "tcp://localhost:1", "tcp://[::ffff:127.0.0.1]:1", "tcp://*:1",
        "tcp://10.0.0.5:1")] == [True, True, True, True, False, False]
    # IPv4 peers arrive on a dual-stack socket as ::ffff:a.b.c.d: an allow entry in that form matches them
    assert parse_allow("::ffff:10.0.0.0/104") == (ipaddress.ip_network("10.0.0.0/8"),)
    assert zmtp._allowed(parse_allow("::ffff:10.1.2.3"), "10.1.2.3")


def test_an_empty_allow_list_answers_nobody() -> None:
    ep = RouterEndpoint("tcp://127.0.0.1:*", 1024, allow=())
    try:
        raw = socket.create_connection(("127.0.0.1", _port(ep.endpoint)), timeout=5)
        raw.settimeout(5)
        ep.receive(0.5)
        assert raw.recv(64) == b"" and ep.refused_peers == 1
        raw.close()
    finally:
        ep.close()


def test_refusals_are_logged_without_flooding(caplog: pytest.LogCaptureFixture) -> None:
    said = lambda: [r.getMessage().split("from ", 1)[1] for r in caplog.records]  # noqa: E731
    log = zmtp.RefusalLog(every=60.0, lines=3)
    log.refused("10.0.0.1", 0.0)
    log.refused("10.0.0.1", 0.1)  # a reconnect: counted, not logged
    log.refused("2001:db8::1", 0.2)
    log.refused("2001:db8::ffff", 0.3)  # a new address in the same /64: the same source
    assert said() == ["10.0.0.1: not in --allow", "2001:db8::/64: not in --allow"]
    log.refused("10.0.0.2", 1.0)  # the third line of the minute
    log.refused("10.0.0.3", 2.0)  # over the budget: counted for the next line
    log.refused("10.0.0.1", 61.0)
    assert said()[2:] == ["10.0.0.2: not in --allow", "10.0.0.1: not in --allow (1 more since the last message); "
                                                      "1 refused from other addresses not logged"]
