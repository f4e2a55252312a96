"""A feed publisher for demos, tests and benchmarks: a random walk over a `Book`, on the real wire format.

`FeedSimulator.run` binds a PUB socket and publishes until `stop` (or ``duration``):

- ``px`` messages of ``batch`` items at ``rate`` items/s: vectorised log-price random walk (steps
  scaled to ~2 % daily volatility at the tick rate, jumps of ±5–15 % with probability ``jump_prob``
  per tick). Securities are chosen by a round-robin sweep over one shuffled order plus random
  extras, the sweep share sized so every security ticks at least every 1.5 s when ``rate`` allows
  (a sweep cannot be faster than ``n_sec / rate`` seconds).
- ``pos`` every ``pos_every`` s: the absolute quantity of a held position changed by ±10–60 % (lot
  rounded), or now and then a brand-new position in a security the account does not hold.
- ``cash`` every ``cash_every`` s: a deposit or withdrawal on an account's base-currency balance,
  published as the new absolute balance (like ``pos``, so a re-sent or re-read value is idempotent).
- ``hb`` every second.

``seq`` rises by one per message per epoch across all topics. ``book.price`` is updated in place
as prices are published (nothing else in the book is touched: positions and cash are tracked on the
side); ``on_prices(sec_idx, prices)`` is called from the publishing thread at most once a second with
the securities changed since the previous call, and once more when `run` returns.

Fault injection for tests and demos, as constructor arguments or from any thread while running:
``gap_every`` (skip a seq), ``epoch_every`` (new epoch, seq from 0), ``malformed_every`` (one bad
message, cycling through `MALFORMED_KINDS`), `pause` (silence, not even ``hb``), and the one-shot
`inject_gap`, `new_epoch`, `send_malformed`. Malformed messages that the wire rejects do not use up
a seq number (so they do not also look like a gap); the unknown-code one is valid on the wire and does.
"""

from __future__ import annotations

import logging
import math
import queue
import secrets
import threading
import time
from collections.abc import Callable

import numpy as np
import zmq

from models.book import Book
from services.feed.wire import MAX_PAYLOAD, encode

log = logging.getLogger(__name__)

MALFORMED_KINDS = ("bad_json", "nan_price", "negative_price", "unknown_code", "bad_seq_type", "oversized",
                   "wrong_frames")
UNKNOWN_CODE = "NOPE.XX"

_DAILY_VOL = 0.02
_TRADING_SECONDS = 23_400.0
_SWEEP_SECONDS = 1.5
_HB_EVERY = 1.0
_PRICES_EVERY = 1.0
_NEW_POSITION_PROB = 0.2
_LOG_MIN, _LOG_MAX = math.log(1e-3), math.log(1e7)


def new_epoch_id() -> str:
    """A fresh publisher run id; random (not seeded) so a restarted publisher never reuses one."""
    return secrets.token_hex(6)


def malformed_frames(kind: str, epoch: str, seq: int, code: str, ts: float) -> tuple[list[bytes], bool]:
    """The frames of one deliberately bad message of ``kind``, and whether it is valid on the wire."""
    if kind == "bad_json":
        return [b"px", encode("px", epoch, seq, [[code, 1.0]], ts)[1][:-9]], False
    if kind == "nan_price":
        head = encode("px", epoch, seq, [[code, 1.0]], ts)[1]
        return [b"px", head.replace(b",1.0]]", b",NaN]]")], False
    if kind == "negative_price":
        return encode("px", epoch, seq, [[code, -1.5]], ts), False
    if kind == "unknown_code":
        return encode("px", epoch, seq, [[UNKNOWN_CODE, 1.0]], ts), True
    if kind == "bad_seq_type":
        return encode("px", epoch, str(seq), [[code, 1.0]], ts), False  # type: ignore[arg-type]
    if kind == "oversized":
        return encode("px", epoch, seq, [[code, 1.0]] * (MAX_PAYLOAD // 10 + 1), ts), False
    if kind == "wrong_frames":
        return [*encode("px", epoch, seq, [[code, 1.0]], ts), b"extra"], False
    raise ValueError(f"unknown malformed kind {kind!r}; expected one of {', '.join(MALFORMED_KINDS)}")


class FeedSimulator:
    """Publishes a simulated feed for ``book`` on ``bind`` (see the module docstring)."""

    def __init__(self, book: Book, bind: str, rate: float = 1000.0, seed: int = 1, batch: int = 200,
                 jump_prob: float = 0.001, pos_every: float = 2.0, cash_every: float = 3.0,
                 on_prices: Callable[[np.ndarray, np.ndarray], None] | None = None, *,
                 gap_every: float = 0.0, epoch_every: float = 0.0, malformed_every: float = 0.0) -> None:
        self.book = book
        self.bind = bind
        self.rate = float(rate)
        self.batch = max(1, int(batch))
        self.jump_prob = float(jump_prob)
        self.pos_every = float(pos_every)
        self.cash_every = float(cash_every)
        self.on_prices = on_prices
        self.gap_every = float(gap_every)
        self.epoch_every = float(epoch_every)
        self.malformed_every = float(malformed_every)
        self.ready = threading.Event()  # set once bound (or once binding failed: then `error` is set)
        self.endpoint: str | None = None
        self.error: Exception | None = None
        self.epoch = new_epoch_id()
        self.seq = 0  # the seq of the next message
        self.sent_messages = 0
        self.sent_updates = 0
        self.malformed_sent = 0
        self._stop_event = threading.Event()
        self._pause_until = 0.0
        self._commands: queue.SimpleQueue[tuple[str, str | None]] = queue.SimpleQueue()
        self._rng = np.random.default_rng(seed)
        self._malformed_next = 0

        n_sec = book.n_sec
        price = np.asarray(book.price, dtype=np.float64)
        valid = np.isfinite(price) & (price > 0)
        self._logp = np.log(np.where(valid, price, 1.0))
        self._dirty = np.zeros(n_sec, dtype=bool)
        # One shuffled order swept round-robin: a security is at the same place in every sweep, so the
        # time between two of its sweep ticks is exactly one sweep (fresh permutations could make it two).
        self._perm = self._rng.permutation(n_sec)
        self._cursor = 0
        ticks_per_sec = (self.rate / n_sec) if (n_sec and 0 < self.rate < 1e9) else 1.0
        self._sigma = min(0.01, _DAILY_VOL / math.sqrt(max(1.0, ticks_per_sec * _TRADING_SECONDS)))

        self._positions: dict[tuple[int, int], float] = {}
        for a, s, q in zip(book.pos_acct.tolist(), book.pos_sec.tolist(), book.pos_qty.tolist(), strict=True):
            self._positions[(a, s)] = self._positions.get((a, s), 0.0) + q
        self._position_keys = list(self._positions)
        base = book.currencies.index(book.base_currency) if book.base_currency in book.currencies else 0
        self._base_currency = book.currencies[base] if book.currencies else book.base_currency
        cash = np.asarray(book.cash, dtype=np.float64)
        has_base = cash.ndim == 2 and cash.shape[0] == book.n_acct and cash.shape[1] > base
        self._cash = cash[:, base].copy() if has_base else np.zeros(book.n_acct)

    # ----------------------------------------------------------------- control (any thread)
    def stop(self) -> None:
        """Make `run` return (within ~50 ms, plus up to 0.5 s linger to deliver what is queued)."""
        self._stop_event.set()

    def pause(self, seconds: float) -> None:
        """Publish nothing at all, not even ``hb``, for ``seconds`` from now."""
        self._pause_until = time.perf_counter() + max(0.0, float(seconds))

    def set_gap_every(self, seconds: float) -> None:
        self.gap_every = float(seconds)

    def set_epoch_every(self, seconds: float) -> None:
        self.epoch_every = float(seconds)

    def set_malformed_every(self, seconds: float) -> None:
        self.malformed_every = float(seconds)

    def inject_gap(self) -> None:
        """Skip one seq number before the next message."""
        self._commands.put(("gap", None))

    def new_epoch(self) -> None:
        """Start a new epoch (new id, seq from 0) before the next message."""
        self._commands.put(("epoch", None))

    def send_malformed(self, kind: str | None = None) -> None:
        """Send one malformed message of ``kind`` (default: the next in the `MALFORMED_KINDS` cycle)."""
        if kind is not None and kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown malformed kind {kind!r}; expected one of {', '.join(MALFORMED_KINDS)}")
        self._commands.put(("malformed", kind))

    # ----------------------------------------------------------------- publishing loop
    def run(self, duration: float | None = None) -> None:
        """Bind, set `ready`, publish until `stop` or ``duration`` seconds, then close the socket."""
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUB)
        try:
            self.endpoint = self._bind(sock)
        except Exception as e:
            self.error = e
            self.ready.set()
            sock.close(linger=0)
            ctx.term()
            raise
        self.ready.set()
        try:
            self._loop(sock, duration)
        finally:
            self._flush_prices()
            sock.close(linger=500)
            ctx.term()

    def _bind(self, sock: zmq.Socket) -> str:
        if self.bind.endswith(":0"):
            base = self.bind[:-2]
            return f"{base}:{sock.bind_to_random_port(base)}"
        sock.bind(self.bind)
        return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))

    def _loop(self, sock: zmq.Socket, duration: float | None) -> None:
        stop = self._stop_event
        start = time.perf_counter()
        end = start + duration if duration is not None else math.inf
        interval = self.batch / self.rate if 0 < self.rate < 1e9 else 0.0
        has_px = self.book.n_sec > 0
        next_px = start
        last_hb = start - _HB_EVERY  # a first hb at once, so subscribers see the feed immediately
        last_pos = last_cash = last_gap = last_epoch = last_bad = last_prices = start
        while not stop.is_set():
            now = time.perf_counter()
            if now >= end:
                break
            if now < self._pause_until:
                stop.wait(min(self._pause_until - now, 0.02))
                next_px = time.perf_counter()  # no catch-up burst after a pause
                continue
            self._run_commands(sock)
            if now - last_hb >= _HB_EVERY:
                self._send(sock, "hb", [])
                last_hb = now
            if 0 < self.epoch_every <= now - last_epoch:
                self._start_epoch()
                last_epoch = now
            if 0 < self.gap_every <= now - last_gap:
                self.seq += 1
                last_gap = now
            if 0 < self.malformed_every <= now - last_bad:
                self._send_malformed(sock, None)
                last_bad = now
            if 0 < self.pos_every <= now - last_pos:
                self._send(sock, "pos", self._position_change())
                last_pos = now
            if 0 < self.cash_every <= now - last_cash:
                self._send(sock, "cash", self._cash_change())
                last_cash = now
            if now - last_prices >= _PRICES_EVERY:
                self._flush_prices()
                last_prices = now
            if has_px and now >= next_px:
                self._send(sock, "px", self._tick())
                next_px = next_px + interval if now - next_px < 0.25 else now + interval
                continue
            wake = min(next_px if has_px else math.inf, last_hb + _HB_EVERY, end, now + 0.05)
            if wake > now:
                stop.wait(wake - now)

    def _send(self, sock: zmq.Socket, topic: str, items: list) -> None:
        if topic != "hb" and not items:
            return
        sock.send_multipart(encode(topic, self.epoch, self.seq, items))
        self.seq += 1
        self.sent_messages += 1
        self.sent_updates += len(items)

    def _run_commands(self, sock: zmq.Socket) -> None:
        while True:
            try:
                command, arg = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "gap":
                self.seq += 1
            elif command == "epoch":
                self._start_epoch()
            elif command == "malformed":
                self._send_malformed(sock, arg)

    def _start_epoch(self) -> None:
        self.epoch = new_epoch_id()
        self.seq = 0

    def _send_malformed(self, sock: zmq.Socket, kind: str | None) -> None:
        if kind is None:
            kind = MALFORMED_KINDS[self._malformed_next % len(MALFORMED_KINDS)]
            self._malformed_next += 1
        code = self.book.sec_codes[0] if self.book.n_sec else "A.XX"
        frames, consumes_seq = malformed_frames(kind, self.epoch, self.seq, code, time.time())
        sock.send_multipart(frames)
        self.malformed_sent += 1
        if consumes_seq:
            self.seq += 1

    # ----------------------------------------------------------------- simulated data
    def _pick(self) -> np.ndarray:
        """Securities for one px message: the next slice of the round-robin sweep plus random extras."""
        n = self.book.n_sec
        size = min(self.batch, n)
        if 0 < self.rate < 1e9:
            sweep = math.ceil(n * self.batch / (_SWEEP_SECONDS * self.rate))
        else:
            sweep = 0
        sweep = min(size, max(sweep, size // 2, 1))
        parts: list[np.ndarray] = []
        need = sweep
        while need:
            if self._cursor >= n:
                self._cursor = 0
            chunk = self._perm[self._cursor:self._cursor + need]
            self._cursor += chunk.size
            need -= chunk.size
            parts.append(chunk)
        parts.append(self._rng.integers(0, n, size - sweep))
        idx = np.unique(np.concatenate(parts))
        if idx.size < size:  # extras that collided with the sweep: top up with distinct ones, so the
            rest = np.setdiff1d(np.arange(n), idx, assume_unique=True)  # item rate is the asked rate
            idx = np.union1d(idx, self._rng.choice(rest, size - idx.size, replace=False))
        return idx

    def _tick(self) -> list:
        idx = self._pick()
        rng = self._rng
        step = rng.standard_normal(idx.size) * self._sigma
        jumps = rng.random(idx.size) < self.jump_prob
        if jumps.any():
            k = int(jumps.sum())
            step[jumps] += np.log1p(rng.uniform(0.05, 0.15, k) * rng.choice((-1.0, 1.0), k))
        logp = np.clip(self._logp[idx] + step, _LOG_MIN, _LOG_MAX)
        self._logp[idx] = logp
        prices = np.maximum(np.round(np.exp(logp), 4), 1e-4)
        self.book.price[idx] = prices
        self._dirty[idx] = True
        codes = self.book.sec_codes
        return list(zip([codes[i] for i in idx.tolist()], prices.tolist(), strict=True))

    def _position_change(self) -> list:
        book, rng = self.book, self._rng
        if book.n_sec == 0 or book.n_acct == 0:
            return []
        key: tuple[int, int] | None = None
        if not self._position_keys or rng.random() < _NEW_POSITION_PROB:
            for _ in range(20):
                candidate = (int(rng.integers(book.n_acct)), int(rng.integers(book.n_sec)))
                if candidate not in self._positions:
                    key = candidate
                    break
        if key is not None:
            qty = float(max(1, int(book.lot_size[key[1]])) * rng.integers(1, 21))
            self._position_keys.append(key)
        else:
            key = self._position_keys[int(rng.integers(len(self._position_keys)))]
            old = self._positions[key]
            lot = max(1, int(book.lot_size[key[1]]))
            change = rng.uniform(0.10, 0.60) * rng.choice((-1.0, 1.0))
            qty = float(round(old * (1.0 + change) / lot) * lot)
            if old == 0:
                qty = float(lot * rng.integers(1, 11))
            elif qty == old:
                qty = old + math.copysign(lot, old * change)
        self._positions[key] = qty
        a, s = key
        return [[book.acct_codes[a], book.sec_codes[s], int(qty) if float(qty).is_integer() else qty]]

    def _cash_change(self) -> list:
        if self.book.n_acct == 0:
            return []
        rng = self._rng
        a = int(rng.integers(self.book.n_acct))
        amount = round(float(rng.uniform(10_000, 500_000)), -2) * float(rng.choice((-1.0, 1.0)))
        self._cash[a] = round(float(self._cash[a]) + amount, 2)
        return [[self.book.acct_codes[a], self._base_currency, float(self._cash[a])]]

    def _flush_prices(self) -> None:
        if self.on_prices is None:
            return
        idx = np.flatnonzero(self._dirty)
        if idx.size == 0:
            return
        self._dirty[idx] = False
        try:
            self.on_prices(idx, self.book.price[idx].copy())
        except Exception:
            log.exception("on_prices failed; the publisher carries on")
