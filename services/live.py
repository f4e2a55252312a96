"""The live margin monitor: feed → engine → call lifecycle → changes for the GUI (Qt-free).

Threads:
- the feed subscriber thread owns the SUB socket, and applies each batch to the engine under
  `lock` (the only writer of the engine);
- a writer thread persists call events and amounts, so the feed never waits on the database;
- the GUI (or any reader) takes accumulated changes with `take_changes()` on its own timer and reads
  engine arrays under `lock`.

Intraday sessions (services/sessions.py) switch intraday-financing accounts between the intraday and
the long ratio table. The monitor keeps the time of the next session boundary; each batch (heartbeats
included, so at least once a second while a feed runs) compares the clock with it and, past it, sets
`engine.intraday_session` and recomputes everything when the answer flipped. Approved changes reload
the sessions with the book.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.book import Book
from services import sessions as trading_sessions
from services.calendar import TradingCalendar, in_trading_hours, local_date
from services.feed.subscriber import FeedStats, FeedSubscriber
from services.feed.wire import Message
from services.margin import MarginEngine
from services.margin_calls import CallEvent, CallRepository, CallTracker
from services.store import Store

log = logging.getLogger(__name__)


@dataclass
class PositionAlert:
    """RISK_METHODS §6: a new position, or a position changing by more than 50% in one update."""

    ts: float
    account: str
    code: str
    kind: str  # "new position" | "change > 50%"
    old_qty: float
    new_qty: float


class HistoryBuffer:
    """Equity, IM and MM of every account sampled through the session, within a memory budget."""

    def __init__(self, n_acct: int, interval: float = 10.0, budget_bytes: int = 64 << 20) -> None:
        self.interval = interval
        self.capacity = max(16, min(4096, budget_bytes // max(1, n_acct * 12)))
        self.t = np.zeros(self.capacity)
        self.values = np.zeros((self.capacity, 3, n_acct), np.float32)
        self.n = 0
        self.last = 0.0

    def maybe_sample(self, engine: MarginEngine, ts: float) -> None:
        if ts - self.last < self.interval:
            return
        self.last = ts
        i = self.n % self.capacity
        self.t[i] = ts
        self.values[i, 0] = engine.equity
        self.values[i, 1] = engine.im
        self.values[i, 2] = engine.mm
        self.n += 1

    def series(self, a: int) -> tuple[np.ndarray, np.ndarray]:
        """(times, [equity, im, mm] × samples) for one account, oldest first."""
        k = min(self.n, self.capacity)
        order = (np.arange(k) + (self.n - k)) % self.capacity
        return self.t[order], self.values[order, :, a].T.astype(np.float64)


class LiveMonitor:
    def __init__(self, store: Store | None, book: Book, feed_address: str | None = None,
                 calendar: TradingCalendar | None = None, clock: Callable[[], float] = time.time,
                 persist_calls: bool = True, sessions: list[trading_sessions.TradingSession] | None = None
                 ) -> None:
        self.store = store
        self.clock = clock
        self.calendar = calendar or TradingCalendar()
        self.lock = threading.RLock()
        # the trading sessions: given (tests, a book file), else the store's, re-read on approvals
        self._own_sessions = sessions is None
        self.sessions: list[trading_sessions.TradingSession] = (
            list(sessions) if sessions is not None else self._load_sessions())
        self.session_flips = 0
        self._next_boundary = trading_sessions.next_boundary(clock(), self.sessions, self.calendar)
        self.engine = MarginEngine(book, intraday_session=trading_sessions.intraday_active(
            clock(), self.sessions, self.calendar))
        self.stats = FeedStats()
        self.feed_address = feed_address
        self.position_alerts: deque[PositionAlert] = deque(maxlen=500)
        # automatic credit (services/auto_credit.py): requests submitted, and accounts skipped
        # because their client is blacklisted for Credit (they need a manual request)
        self.auto_credit_requests: deque[int] = deque(maxlen=500)
        self.auto_credit_skipped: deque[str] = deque(maxlen=500)
        self._credit_blacklist: set[str] = set()
        self.recalc_count = 0
        self.last_recalc = clock()
        self._changed = np.zeros(book.n_acct, bool)
        self._reset = True
        self._batches_since_full = 0
        self._subscriber: FeedSubscriber | None = None
        self._writer_q: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._persist = persist_calls and store is not None
        self.writer_errors: deque[str] = deque(maxlen=20)
        self.write_failures = 0  # how many writer batches failed (a caller waiting on its write compares)
        self._last_amount_flush = 0.0
        # publish time of the oldest tick applied but not yet taken by the GUI, and the observed
        # tick → take latencies (seconds) for the gui.tick_to_row benchmark and the feed dock
        self._oldest_pending: float | None = None
        self.latencies: deque[float] = deque(maxlen=10_000)
        self._init_book_state(book)
        self.tracker = CallTracker(book.n_acct, self.calendar, int(book.parameter("call_deadline_days")))
        self._repo: CallRepository | None = None
        self._changes: Any = None  # services.notify.ChangeListener once started
        self.parameter_reloads = 0
        if self._persist and book.acct_ids is not None:
            assert store is not None
            self._repo = CallRepository(store, book.acct_ids)
            self._repo.load_open(self.tracker, {int(x): i for i, x in enumerate(book.acct_ids.tolist())},
                                 local_date(clock()))
        # the first recalculation can open thousands of calls: they wait in the writer's queue and are
        # stored once `start()` runs the writer, instead of blocking construction on the database
        first = self.tracker.update(self.engine, np.arange(book.n_acct), clock())
        if first and self._repo is not None:
            self._writer_q.put(("events", first))

    def _init_book_state(self, book: Book) -> None:
        now = self.clock()
        self.auto_credit = bool(book.parameter("auto_credit_enabled")) and self.store is not None \
            and book.acct_ids is not None
        if self.auto_credit:
            from services.credit import blacklisted_accounts

            assert self.store is not None
            try:
                self._credit_blacklist = blacklisted_accounts(self.store, "Credit")
            except Exception:  # an older store without the lists: no blacklist to honour
                self._credit_blacklist = set()
        self.price_ts = np.full(book.n_sec, now)
        self.stale_after = book.parameter("stale_after_seconds") or 5.0
        self.market_open = book.parameter("market_open_hhmm")
        self.market_close = book.parameter("market_close_hhmm")
        self.history = HistoryBuffer(book.n_acct)
        self.history.maybe_sample(self.engine, now)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.store is not None and self._changes is None:
            from services.notify import ChangeListener

            self._changes = ChangeListener(self.store, self._on_change_request)
            self._changes.start()
        if self._persist and self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="call-writer", daemon=True)
            self._writer.start()
        if self.feed_address and self._subscriber is None:
            self.stats.state = "connecting"
            self._subscriber = FeedSubscriber(self.feed_address, self._on_batch, self._on_resync,
                                              stats=self.stats, stale_after=self.stale_after)
            self._subscriber.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._changes is not None:
            self._changes.stop()
            self._changes.join(timeout)
            self._changes = None
        if self._subscriber is not None:
            self._subscriber.stop()
            self._subscriber.join(timeout)
            self._subscriber = None
        if self._writer is not None:
            self._writer_q.put(("stop", None))
            self._writer.join(timeout)
            self._writer = None

    @property
    def running(self) -> bool:
        return self._subscriber is not None and self._subscriber.is_alive()

    # ------------------------------------------------------------------ intraday sessions
    def _load_sessions(self) -> list[trading_sessions.TradingSession]:
        if self.store is None:
            return []
        try:
            return trading_sessions.load_sessions(self.store)
        except Exception:  # an older store without the table: no intraday sessions
            log.exception("reading the trading sessions failed")
            return []

    def _session_flip(self, now: float) -> np.ndarray | None:
        """Past the cached boundary: re-derive the session; on a flip, recompute every account and
        return the accounts whose numbers moved (None when nothing flipped). Call under `lock`."""
        if now < self._next_boundary:
            return None
        active = trading_sessions.intraday_active(now, self.sessions, self.calendar)
        self._next_boundary = trading_sessions.next_boundary(now, self.sessions, self.calendar)
        if active == self.engine.intraday_session:
            return None
        d = self.engine.set_intraday_session(active)
        self._batches_since_full = 0
        self.session_flips += 1
        return d.accounts

    def check_session(self) -> bool:
        """Apply a session boundary that has passed (the batches do this; call it when no feed runs).
        True when the intraday flag flipped and the results were recomputed."""
        now = self.clock()
        with self.lock:
            moved = self._session_flip(now)
            if moved is None:
                return False
            self._changed[moved] = True
            events = self.tracker.update(self.engine, moved, now)
            self.recalc_count += 1
            self.last_recalc = now
        self._handle_events(events)
        return True

    @property
    def intraday_session(self) -> bool:
        """Whether intraday ratios apply now (as the engine computes)."""
        return bool(self.engine.intraday_session)

    @property
    def next_session_boundary(self) -> float:
        return self._next_boundary

    # ------------------------------------------------------------------ feed side
    def _on_change_request(self, payload: dict[str, Any]) -> None:
        """An approved change (here or on another workstation) is in the results within a second."""
        if payload.get("status") == "approved" or payload.get("reload"):
            if self.store is None:
                return
            book = self.store.load_book()
            with self.lock:
                # keep live prices: the store's last prices may lag the feed by a second
                if book.sec_codes == self.engine.book.sec_codes:
                    book.price[:] = self.engine.book.price
            self.reload(book)
            self.parameter_reloads += 1

    def _on_resync(self, reason: str) -> None:
        """A gap, a new epoch or the first message: re-read the store before trusting results."""
        if self.store is None:
            return
        self.stats.state = "resyncing"
        book = self.store.load_book()
        self.reload(book)

    def reload(self, book: Book) -> None:
        sessions = self._load_sessions() if self._own_sessions else self.sessions
        with self.lock:
            self.sessions = sessions
            now = self.clock()
            self.engine.intraday_session = trading_sessions.intraday_active(now, sessions, self.calendar)
            self._next_boundary = trading_sessions.next_boundary(now, sessions, self.calendar)
            self.engine.reload(book)
            self._changed = np.zeros(book.n_acct, bool)
            self._reset = True
            if self.tracker.open.shape[0] != book.n_acct:
                self.tracker.resize(book.n_acct)
            if self._repo is not None and book.acct_ids is not None:
                self._repo.acct_ids = book.acct_ids
                self._repo.load_open(self.tracker, {int(x): i for i, x in enumerate(book.acct_ids.tolist())},
                                     local_date(now))
            self._init_book_state(book)
            events = self.tracker.update(self.engine, np.arange(book.n_acct), self.clock())
            self.last_recalc = self.clock()
            self.recalc_count += 1
        self._handle_events(events)

    def _on_batch(self, messages: list[Message]) -> None:
        b = self.engine.book
        px_codes: list[str] = []
        px_vals: list[float] = []
        pos: list[list[Any]] = []
        cash: list[list[Any]] = []
        fx: list[list[Any]] = []
        oldest_px = min((m.ts for m in messages if m.topic == "px"), default=None)
        for m in messages:
            if m.topic == "px":
                for code, price in m.items:
                    px_codes.append(code)
                    px_vals.append(price)
            elif m.topic == "pos":
                pos.extend(m.items)
            elif m.topic == "cash":
                cash.extend(m.items)
            elif m.topic == "fx":
                fx.extend(m.items)
        now = self.clock()
        events: list[CallEvent] = []
        credit_candidates: list[np.ndarray] = []
        with self.lock:
            touched: list[np.ndarray] = []
            flipped = self._session_flip(now)
            if flipped is not None:
                touched.append(flipped)
            if px_codes:
                idx = np.fromiter((b.sec_index.get(c, -1) for c in px_codes), np.int64, len(px_codes))
                bad = idx < 0
                if bad.any():
                    self.stats.drop(f"px: unknown security {px_codes[int(np.argmax(bad))]!r} "
                                    f"({int(bad.sum())} item(s) ignored)")
                ok = ~bad
                prices = np.asarray(px_vals, np.float64)[ok]
                idx = idx[ok]
                d = self.engine.apply_prices(idx, prices)
                self.price_ts[idx] = now
                touched.append(d.accounts)
            if fx:
                cur = [(b.currencies.index(c) if c in b.currencies else -1, r) for c, r in fx]
                for (ci, _), (c, _) in zip(cur, fx, strict=True):
                    if ci < 0:
                        self.stats.drop(f"fx: unknown currency {c!r}")
                good = [(ci, r) for ci, r in cur if ci >= 0]
                if good:
                    d = self.engine.apply_fx(np.array([g[0] for g in good]), np.array([g[1] for g in good]))
                    touched.append(d.accounts)
            if cash:
                crow = [(b.acct_index.get(a, -1), b.currencies.index(c) if c in b.currencies else -1, v)
                        for a, c, v in cash]
                cgood = [r for r in crow if r[0] >= 0 and r[1] >= 0]
                if len(cgood) < len(crow):
                    self.stats.drop(f"cash: {len(crow) - len(cgood)} item(s) with unknown account or currency")
                if cgood:
                    arr = np.array(cgood, np.float64)
                    ca, cc = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
                    deposits = ca[arr[:, 2] > b.cash[ca, cc]]
                    d = self.engine.apply_cash(ca, cc, arr[:, 2])
                    touched.append(d.accounts)
                    credit_candidates.append(deposits)
            if pos:
                touched.append(self._apply_positions(pos, now, credit_candidates))
            if touched:
                acc = np.unique(np.concatenate(touched)) if len(touched) > 1 else touched[0]
                self._changed[acc] = True
                if oldest_px is not None and self._oldest_pending is None:
                    self._oldest_pending = oldest_px
                events = self.tracker.update(self.engine, acc, now)
                self.recalc_count += 1
                self.last_recalc = now
                self._batches_since_full += 1
                if self._batches_since_full >= 500:  # clear float drift of the incremental sums
                    self.engine.recompute_all()
                    self._batches_since_full = 0
            self.history.maybe_sample(self.engine, now)
            self._flush_amounts(now)
            if self.auto_credit and credit_candidates:
                self._propose_credit(np.concatenate(credit_candidates))
        self._handle_events(events)

    def _propose_credit(self, accounts: np.ndarray) -> None:
        """A deposit or transfer in: evaluate the automatic-credit rule now, submit in the writer."""
        from services import auto_credit

        if accounts.size == 0:
            return
        b = self.engine.book
        proposals, skipped = auto_credit.evaluate(self.engine, accounts, b.parameter("auto_credit_share"),
                                                  b.parameter("auto_credit_cap"), self._credit_blacklist)
        self.auto_credit_skipped.extend(skipped)
        if proposals and self._repo is not None:
            if self._writer is None:
                self._safe_write(("auto_credit", proposals))
            else:
                self._writer_q.put(("auto_credit", proposals))

    def _apply_positions(self, items: list[list[Any]], now: float, credit_candidates: list[np.ndarray]
                         ) -> np.ndarray:
        b = self.engine.book
        rows = [(b.acct_index.get(a, -1), b.sec_index.get(c, -1), q) for a, c, q in items]
        good = [r for r in rows if r[0] >= 0 and r[1] >= 0]
        if len(good) < len(rows):
            self.stats.drop(f"pos: {len(rows) - len(good)} item(s) with unknown account or security")
        if not good:
            return np.zeros(0, np.int64)
        arr = np.array(good, np.float64)
        a, s, q = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2]
        old_rows = self.engine.find_positions(a, s)
        old_q = np.where(old_rows >= 0, b.pos_qty[np.maximum(old_rows, 0)], 0.0)
        d, new = self.engine.apply_positions(a, s, q)
        credit_candidates.append(a[q > np.maximum(old_q, 0.0)])  # stock transferred in
        big = (~new) & (np.abs(q - old_q) > 0.5 * np.abs(old_q))
        for i in np.flatnonzero(new | big).tolist():
            self.position_alerts.append(PositionAlert(
                now, b.acct_codes[a[i]], b.sec_codes[s[i]], "new position" if new[i] else "change > 50%",
                float(old_q[i]), float(q[i])))
        return d.accounts

    def _flush_amounts(self, now: float) -> None:
        if self._repo is None or now - self._last_amount_flush < 2.0:
            return
        self._last_amount_flush = now
        dirty = self.tracker.take_dirty()
        if dirty.size:
            self._writer_q.put(("amounts", (dirty, self.tracker.status[dirty].copy(),
                                            self.tracker.amount[dirty].copy())))

    def _handle_events(self, events: list[CallEvent]) -> None:
        if events and self._repo is not None:
            if self._writer is None:
                self._safe_write(("events", events))
            else:
                self._writer_q.put(("events", events))

    def _write_loop(self) -> None:
        while True:
            item = self._writer_q.get()
            if item[0] == "stop":
                return
            if item[0] == "flush":
                item[1].set()
                continue
            self._safe_write(item)

    def _safe_write(self, item: tuple[str, Any]) -> None:
        assert self._repo is not None
        try:
            if item[0] == "events":
                self._repo.write(item[1])
            elif item[0] == "auto_credit":
                from services import auto_credit

                self.auto_credit_requests.extend(auto_credit.submit(self._repo.store, self.engine, item[1]))
            else:
                self._repo.write_amounts(*item[1])
        except Exception as e:  # the store may be briefly unreachable; the next events carry on
            log.exception("writing margin-call events failed")
            self.write_failures += 1
            self.writer_errors.append(f"{time.strftime('%H:%M:%S')} {e}")

    def flush_writes(self, timeout: float = 10.0) -> bool:
        """Wait until the writer has stored everything queued so far (tests, shutdown)."""
        if self._writer is None:
            return self._writer_q.empty()
        done = threading.Event()
        self._writer_q.put(("flush", done))
        return done.wait(timeout)

    # ------------------------------------------------------------------ ending a call by hand or by liquidation
    def close_call(self, account_index: int, user: Any, remark: str, reason: str = "closed") -> CallEvent:
        """End the account's open call (RISK_METHODS §2): ``closed`` by hand with a remark, or
        ``liquidated`` when its liquidation orders are all filled. The end snapshot and the event go
        through the writer like every call event, with an audit record naming the user and the remark;
        returns once they are stored (raises when storing failed: the monitor has closed it already).

        Refused (CallCloseError) without a remark, for a reason other than closed / liquidated, or when
        the account has no open call; AuthError for a role that may not close calls (traders)."""
        from services import call_close

        remark = call_close.check_close(self.store, user, remark, reason)
        now = self.clock()
        with self.lock:
            a = int(account_index)
            if not (0 <= a < self.tracker.open.shape[0]) or not self.tracker.open[a]:
                code = self.engine.book.acct_codes[a] if 0 <= a < self.engine.book.n_acct else f"#{a}"
                raise call_close.CallCloseError(f"{code} has no open margin call (it may have just been met)")
            ev = self.tracker.close(self.engine, a, now, reason, remark, actor=user.login)
            self._changed[a] = True
            failures = self.write_failures
        self._handle_events([ev])
        if self._writer is not None:
            self.flush_writes()
        if self.write_failures != failures:
            raise call_close.CallCloseError(
                f"the call is closed here but storing it failed: {self.writer_errors[-1] if self.writer_errors else '?'}")
        return ev

    def apply_fill(self, account: str, code: str, qty_sold: float, proceeds: float) -> dict[str, Any]:
        """A liquidation sale stored in the store: the engine's position falls by ``qty_sold`` and the
        cash in the security's currency rises by ``proceeds`` at once (as the check service's fill), the
        call lifecycle follows (a sale that brings E ≥ MM ends the call as met). Returns the account's
        margin after it, with ``call_open``."""
        b = self.engine.book
        a, s = b.acct_index.get(account), b.sec_index.get(code)
        if a is None or s is None:
            raise KeyError(f"{account if a is None else code} is not in the live book")
        now = self.clock()
        with self.lock:
            cur = int(b.sec_currency[s])
            row = int(self.engine.find_positions(np.array([a]), np.array([s]))[0])
            held = float(b.pos_qty[row]) if row >= 0 else 0.0
            self.engine.apply_positions(np.array([a]), np.array([s]), np.array([held - qty_sold]))
            self.engine.apply_cash(np.array([a]), np.array([cur]), np.array([float(b.cash[a, cur]) + proceeds]))
            acc = np.array([a], np.int64)
            self._changed[acc] = True
            events = self.tracker.update(self.engine, acc, now)
            self.recalc_count += 1
            self.last_recalc = now
            out = self.engine.account_result(a)
            out["call_open"] = bool(self.tracker.open[a])
            out["position"] = held - qty_sold
        self._handle_events(events)
        return out

    # ------------------------------------------------------------------ GUI side
    def take_changes(self) -> tuple[bool, np.ndarray]:
        """(full reset?, changed account indices) since the last call; cheap, under the lock.

        Without a running feed no batch arrives to cross a session boundary, so the reader's timer
        does (one float comparison; the recompute runs only at a boundary, a few times a day)."""
        if not self.running and self.clock() >= self._next_boundary:
            self.check_session()
        with self.lock:
            reset = self._reset
            changed = np.flatnonzero(self._changed)
            if changed.size:
                self._changed[changed] = False
            self._reset = False
            if self._oldest_pending is not None:
                self.latencies.append(time.time() - self._oldest_pending)
                self._oldest_pending = None
        return reset, changed

    def stale_securities(self) -> np.ndarray:
        now = self.clock()
        if not in_trading_hours(now, self.market_open, self.market_close, self.calendar):
            return np.zeros(self.price_ts.shape[0], bool)
        return (now - self.price_ts) > self.stale_after

    def stale_accounts(self, stale_sec: np.ndarray | None = None) -> np.ndarray:
        """Accounts holding at least one stale price (their alerts are flagged)."""
        with self.lock:
            e = self.engine
            s = self.stale_securities() if stale_sec is None else stale_sec
            out = np.zeros(e.book.n_acct, bool)
            if s.any() and e.book.n_pos:
                hit = s[e.book.pos_sec].astype(np.int64)
                counts = np.add.reduceat(hit, e._seg_starts)
                out[e._nonempty] = counts > 0
            return out

    def today(self) -> Any:
        return local_date(self.clock())

    def feed_state(self) -> str:
        if not self.feed_address:
            return "no feed"
        return self.stats.state
