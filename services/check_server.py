"""The order-check service: an order management system asks it about every order (ZeroMQ, JSON).

``python main.py check-server --db URL --bind tcp://127.0.0.1:PORT [--feed ADDR] [--allow HOST,NET/BITS]``

It answers ZeroMQ REQ and DEALER clients alike as a ROUTER socket would (`services.zmtp`: the ZeroMQ
wire protocol spoken by the request loop itself, without libzmq's I/O thread): the last frame is the
JSON request and every frame before it is the envelope, sent back unchanged with the answer.
Requests (DESIGN.md):

- ``{"op": "check", "order": {account, trader, code, side, qty, price, order_type, client_order_id}}``
  → ``{"ok": true, "decision": "accept" | "prompt" | "approval" | "reject", "reasons": [{rule, action,
  threshold, observed, message}], "notional": …}``; an ``approval`` also carries ``decision_id`` and
  ``release_request`` (the four-eyes order-release request now in the Approvals dock). Once answered,
  a non-rejected order counts for duplicates and the daily order count.
- ``{"op": "fill", "fill": {account, trader, code, side, qty, price, client_order_id}}`` → the fill,
  the position and the cash balance are written together; the account's margin after it is returned.
- ``{"op": "what_if", "order": {…}}`` → the account's margin before and after, nothing recorded.
- ``{"op": "ping"}`` → counters and the version of the limits in force.
- Anything else → ``{"ok": false, "error": "<what is wrong>"}``. The service never dies on input.

Decisions are stored in batches off the request loop (`services.decision_writer`: a writer process
of its own for the CLI's service, else a thread). An ``approval`` is stored with its release
request by another thread and answered once that is committed (its answer names the request);
the loop serves other requests meanwhile. Approved limit or list changes reach the
service through the store's change notifications (PostgreSQL LISTEN/NOTIFY, SQLite polling): the
listener thread reloads the rules and flags and the loop swaps them in before the next request.
Account and security flags (open margin calls, halts, blacklist) are also refreshed every few
seconds. With ``--feed`` the service follows the price/position feed like the workstation does.
With ``--allow`` only those hosts are answered (the ZeroMQ NULL mechanism authenticates nobody).
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from services import pretrade_store as ps
from services.decision_writer import DecisionWriter
from services.pretrade import Decision, PreTradeEngine
from services.pretrade_orders import OrderError, parse_order, to_json
from services.store import Store
from services.zmtp import Network, RouterEndpoint

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 64 * 1024
OPS = ("check", "fill", "what_if", "ping")

# Answers to requests that arrived together are written together, ANSWER_BATCH at a time: each write is
# a system call that on loopback also delivers the bytes to the client, so one write per answer would
# cost the burst's later requests more than the wait for a few answers costs the earlier ones.
ANSWER_BATCH = 4
Route = tuple[int, bytes]  # the connection a request came on and its envelope (wire form)


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the latency tail (for a process that is only the service).

    The book, the limit index and the flags are hundreds of thousands of long-lived objects; every
    full collection walked them all and stopped the request loop for tens of milliseconds. They are
    moved to the permanent generation once loaded. Automatic collections are then switched off: the
    request loop collects between batches of requests (`_Collector`), after their answers are sent,
    never while a request waits — measured at 5,000 requests/s, automatic young collections stopped
    the loop mid-burst ~20 times a second for 0.1–1.2 ms each."""
    gc.collect()
    gc.freeze()
    gc.disable()


class _Collector:
    """The collections thresholds of (700, 10, 1000) would make — a young collection per 700 new
    container objects, every 10th also the middle generation, every 10,000th a full one (what the
    day has built since the book was frozen) — made by the request loop between batches."""

    def __init__(self) -> None:
        self.runs = 0

    def between(self) -> None:
        if gc.get_count()[0] < 700:
            return
        self.runs += 1
        gc.collect(2 if self.runs % 10_000 == 0 else 1 if self.runs % 10 == 0 else 0)


def _error(text: str) -> dict[str, Any]:
    return {"ok": False, "error": text}


class CheckServer:
    """Owns the pre-trade engine; `serve_forever` (or `start` for a thread) answers requests."""

    def __init__(self, store: Store, bind: str, feed: str | None = None, flags_refresh: float = 3.0,
                 engine: PreTradeEngine | None = None, sync_writes: bool = False, tune_gc: bool = False,
                 writer_process: bool = False, allow: Sequence[Network] | None = None) -> None:
        self.store = store
        self.bind = bind
        self.allow = allow  # the peers answered (None: any that reaches the address)
        self.feed_address = feed
        self.flags_refresh = flags_refresh
        self.sync_writes = sync_writes  # the naive design (commit per decision): benchmark baseline only
        self.tune_gc = tune_gc  # a process of its own (the CLI): freeze the loaded book out of the collector
        self.engine = engine or ps.build_engine(store)
        self.limits_version = 0
        self.counts = {"check": 0, "fill": 0, "what_if": 0, "ping": 0, "error": 0}
        self._swap: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        # decisions to store: a writer process of its own for a service that is a process of its own
        self._writer = DecisionWriter(store, process=writer_process)
        self._approvals: queue.SimpleQueue[tuple[Route, Decision] | None] = queue.SimpleQueue()
        self._replies: queue.SimpleQueue[tuple[Route, dict[str, Any]]] = queue.SimpleQueue()
        self._halt = threading.Event()
        self.ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: Any = None
        self._endpoint: RouterEndpoint | None = None
        self._subscriber: Any = None
        self._approval_errors = 0
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> CheckServer:
        t = threading.Thread(target=self.serve_forever, name="check-server", daemon=True)
        t.start()
        self._threads.append(t)
        if not self.ready.wait(60):  # the decision writer process takes a second or two to start
            raise RuntimeError(f"the check service did not start on {self.bind}")
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        for t in self._threads:
            t.join(timeout)

    def serve_forever(self) -> None:
        from services.notify import ChangeListener

        if self.tune_gc:
            _tune_gc()

        try:
            ep = self._endpoint = RouterEndpoint(self.bind, MAX_REQUEST_BYTES, self.allow)
        except ValueError as e:  # the address is malformed or taken: `start` raises it
            self.error = e
            self.ready.set()
            return
        try:
            self._writer.start(pumped=True)  # a writer process is pumped by this loop between requests
        except Exception as e:  # the writer process could not start: say so instead of serving unrecorded
            ep.close()
            self.error = e
            self.ready.set()
            return
        approver = threading.Thread(target=self._approval_loop, name="check-server-approvals", daemon=True)
        approver.start()
        refresher = threading.Thread(target=self._refresh_loop, name="check-server-flags", daemon=True)
        refresher.start()
        self._listener = ChangeListener(self.store, self._on_change)
        self._listener.start()
        if self.feed_address:
            self._start_feed()
        try:
            self.ready.set()
            swaps, replies, halt, writer = self._swap, self._replies, self._halt, self._writer
            clock, pumped = time.monotonic, writer.pumped
            collect = _Collector().between if self.tune_gc else None
            while not halt.is_set():
                if not swaps.empty():
                    self._apply_swaps()
                if not replies.empty():
                    self._send_deferred(ep)
                for k, (cid, envelope, body, size) in enumerate(ep.receive(writer.interval if writer.pending()
                                                                           else 0.1), 1):
                    answer = self.handle(body, (cid, envelope)) if body is not None else self._too_large(size)
                    if answer is not None:
                        ep.send(cid, envelope, to_json(answer))
                    if k % ANSWER_BATCH == 0:
                        ep.flush()
                ep.flush()
                if pumped:
                    writer.pump(clock())  # decisions to the writer process once per interval, after the answers
                if collect is not None:
                    collect()
        finally:
            ep.close()
            self._stop_background(approver)

    @property
    def endpoint(self) -> str | None:
        """The bound address (a port of 0 or * resolved); None before the service is bound."""
        return self._endpoint.endpoint if self._endpoint is not None else None

    def _stop_background(self, approver: threading.Thread) -> None:
        self._listener.stop()
        if self._subscriber is not None:
            self._subscriber.stop()
        self._approvals.put(None)
        self._writer.stop()
        approver.join(5)

    def _wake(self) -> None:
        if self._endpoint is not None:
            self._endpoint.wake()

    def _post(self, what: str, value: Any) -> None:
        """Hand the request loop new limits, flags or feed data (any thread); it takes them before
        the next request."""
        self._swap.put((what, value))
        self._wake()

    # ------------------------------------------------------------------ requests
    def _send_deferred(self, ep: RouterEndpoint) -> None:
        while True:
            try:
                (cid, envelope), reply = self._replies.get_nowait()
            except queue.Empty:
                return
            ep.send(cid, envelope, to_json(reply))

    def _too_large(self, size: int) -> dict[str, Any]:
        self.counts["error"] += 1
        return _error(f"request of {size:,} bytes is larger than {MAX_REQUEST_BYTES:,}")

    def handle(self, raw: bytes, route: Route | None = None) -> dict[str, Any] | None:
        """The answer to one request (never raises); None when it will be sent later (an approval,
        answered once its release request is stored, while other requests are served meanwhile)."""
        try:
            if len(raw) > MAX_REQUEST_BYTES:
                return self._too_large(len(raw))
            try:
                req = orjson.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                raise OrderError(f"request is not valid JSON: {e}") from None
            if not isinstance(req, dict):
                raise OrderError("request must be a JSON object")
            op = req.get("op")
            if op not in OPS:
                raise OrderError(f"unknown op {op!r}: one of {', '.join(OPS)}")
            self.counts[op] += 1
            if op == "check":
                return self._check(req, route)
            if op == "fill":
                return self._fill(req)
            if op == "what_if":
                return {"ok": True, **self.engine.what_if(parse_order(req.get("order")))}
            return {"ok": True, "limits_version": self.limits_version, "counts": dict(self.counts),
                    "trading_day": self.engine.totals.day.isoformat(), "write_errors": self.write_errors}
        except OrderError as e:
            self.counts["error"] += 1
            return _error(str(e))
        except Exception as e:  # a bug must not take the service down: answer and log it
            self.counts["error"] += 1
            log.exception("check service request failed")
            return _error(f"internal error ({type(e).__name__}): {e}")

    def _check(self, req: dict[str, Any], route: Route | None) -> dict[str, Any] | None:
        if "order" not in req:
            raise OrderError("check needs an 'order' object")
        d = self.engine.check(parse_order(req["order"]), time.time())
        if d.decision == "approval":
            self.engine.record(d)
            if route is None:  # called directly: store it now
                ps.save_approval(self.store, d)
                return d.as_json()
            # the answer names the release request: sent once it is stored
            self._approvals.put((route, d))
            return None
        reply = d.as_json()
        row = ps.decision_row(d, reply["reasons"])
        if self.sync_writes:
            ps.save_decision_rows(self.store, [row])
        else:
            self._writer.put(row)
        self.engine.record(d)
        return reply

    def _fill(self, req: dict[str, Any]) -> dict[str, Any]:
        body = req.get("fill")
        if body is None:
            raise OrderError("fill needs a 'fill' object")
        if isinstance(body, dict) and "price" not in body:
            raise OrderError("fill.price is missing")
        order = parse_order(body)
        b = self.engine.margin.book
        if order.account not in b.acct_index:
            raise OrderError(f"fill.account {order.account} is unknown")
        if order.code not in b.sec_index:
            raise OrderError(f"fill.code {order.code} is unknown")
        now = time.time()
        assert order.price is not None
        ps.save_fill(self.store, order, order.price, now)  # stored first: nothing counted that is not kept
        return {"ok": True, "account": self.engine.fill(order, now)}

    # ------------------------------------------------------------------ background work
    def _approval_loop(self) -> None:
        while True:
            item = self._approvals.get()
            if item is None:
                return
            route, d = item
            try:
                ps.save_approval(self.store, d)
                reply: dict[str, Any] = d.as_json()
            except Exception as e:
                self._approval_errors += 1
                log.exception("storing an approval decision failed")
                reply = _error(f"the order needs a release approval but the request could not be stored: {e}")
            self._replies.put((route, reply))
            self._wake()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued decisions are stored (tests, shutdown)."""
        return self._writer.flush(timeout)

    @property
    def write_errors(self) -> int:
        """Batches of decisions and approvals the store refused."""
        return self._writer.errors + self._approval_errors

    def _on_change(self, payload: dict[str, Any]) -> None:
        """A change request was decided somewhere: reload rules and flags (listener thread)."""
        if payload.get("status") not in (None, "approved") and not payload.get("reload"):
            return
        try:
            self._post("limits", ps.load_limits(self.store))
            self._post("flags", ps.load_flags(self.store, self.engine.margin))
        except Exception:
            log.exception("reloading limits after a change failed")

    def _refresh_loop(self) -> None:
        """Re-read the flags when their fingerprint moves (a reload holds the interpreter for tens of
        milliseconds on a big book, so it must not run every few seconds for nothing)."""
        last = None
        while not self._halt.wait(self.flags_refresh):
            try:
                sig = ps.flags_signature(self.store)
                if last is not None and sig != last:
                    self._post("flags", ps.load_flags(self.store, self.engine.margin))
                last = sig
            except Exception:
                log.exception("refreshing account and security flags failed")

    def _apply_swaps(self) -> None:
        while True:
            try:
                what, value = self._swap.get_nowait()
            except queue.Empty:
                return
            if what == "limits":
                self.engine.set_limits(value)
                self.limits_version += 1
            elif what == "flags":
                self.engine.set_flags(value)
            elif what == "feed":
                self._apply_feed(value)
            elif what == "resync":
                self.engine.margin.reload(self.store.load_book())
            if self.tune_gc and what in ("limits", "flags", "resync"):
                gc.freeze()  # the reloaded objects join the long-lived ones

    # ------------------------------------------------------------------ the feed (optional)
    def _start_feed(self) -> None:
        from services.feed.subscriber import FeedSubscriber

        self._subscriber = FeedSubscriber(self.feed_address or "", lambda ms: self._post("feed", ms),
                                          lambda _r: self._post("resync", None))
        self._subscriber.start()

    def _apply_feed(self, messages: list[Any]) -> None:
        m = self.engine.margin
        b = m.book
        for msg in messages:
            cols = msg.columns
            if cols is None:
                continue
            if msg.topic == "px":
                idx = np.array([b.sec_index.get(c, -1) for c in cols[0]], np.int64)
                ok = idx >= 0
                if ok.any():
                    m.apply_prices(idx[ok], cols[1][ok])
            elif msg.topic == "pos":
                a = np.array([b.acct_index.get(c, -1) for c in cols[0]], np.int64)
                s = np.array([b.sec_index.get(c, -1) for c in cols[1]], np.int64)
                ok = (a >= 0) & (s >= 0)
                if ok.any():
                    m.apply_positions(a[ok], s[ok], cols[2][ok])
            elif msg.topic == "cash":
                a = np.array([b.acct_index.get(c, -1) for c in cols[0]], np.int64)
                cur = {c: i for i, c in enumerate(b.currencies)}
                k = np.array([cur.get(c, -1) for c in cols[1]], np.int64)
                ok = (a >= 0) & (k >= 0)
                if ok.any():
                    m.apply_cash(a[ok], k[ok], cols[2][ok])
