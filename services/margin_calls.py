"""Margin-call lifecycle (RISK_METHODS §2): open, follow, force, met, close — with snapshots.

`CallTracker` is the in-memory, vectorised state per account and turns each recalculation into
events; `CallRepository` writes events and snapshots to the store (never editing a snapshot) and
reads open calls back at start. The tracker never waits for the database: the live monitor hands
events to a writer thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from models import schema as S
from services import audit
from services.calendar import TradingCalendar, local_date
from services.margin import CALL, FORCE, STATUS_NAMES, MarginEngine
from services.store import Store

NO_DEADLINE = np.datetime64("NaT", "D")


@dataclass
class CallEvent:
    account: int  # account index in the engine's book
    kind: str  # open, force, met, eod, closed
    ts: float
    status: str
    amount: float
    equity: float
    im: float
    mm: float
    deadline: date | None = None
    snapshot: dict[str, Any] | None = None
    detail: str = ""
    actor: str = ""  # who closed the call (manual close, completed liquidation): audited with the event


@dataclass
class OpenCall:
    call_id: int
    account: str
    opened_at: datetime
    trigger_status: str
    trigger_amount: float
    deadline: date
    current_status: str
    current_amount: float
    snapshots: list[dict[str, Any]] = field(default_factory=list)


def snapshot(engine: MarginEngine, a: int, ts: float) -> dict[str, Any]:
    """The account's positions, prices, cash, E, IM, MM and status at `ts` (a JSON-able dict)."""
    b = engine.book
    p = engine.positions_of(a)
    return {
        "account": b.acct_codes[a], "ts": datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds"),
        "status": STATUS_NAMES[int(engine.status[a])], "equity": round(float(engine.equity[a]), 2),
        "im": round(float(engine.im[a]), 2), "mm": round(float(engine.mm[a]), 2),
        "loan": round(float(engine.loan[a]), 2), "call_amount": round(float(engine.call_amount[a]), 2),
        "cash": {c: round(float(b.cash[a, j]), 2) for j, c in enumerate(b.currencies) if b.cash[a, j] != 0},
        "fx": {c: float(b.fx[j]) for j, c in enumerate(b.currencies)},
        "positions": [
            {"code": b.sec_codes[s], "qty": float(q), "price": float(px), "mv": round(float(mv), 2),
             "im_ratio": float(r1), "mm_ratio": float(r2)}
            for s, q, px, mv, r1, r2 in zip(p["sec"].tolist(), p["qty"].tolist(), p["price"].tolist(),
                                            p["mv"].tolist(), p["im_ratio"].tolist(), p["mm_ratio"].tolist(),
                                            strict=True)],
    }


class CallTracker:
    """Which accounts have an open call, with its status, amount and deadline (arrays by account)."""

    def __init__(self, n_acct: int, calendar: TradingCalendar, deadline_days: int = 3) -> None:
        self.calendar = calendar
        self.deadline_days = int(deadline_days)
        self.resize(n_acct)
        self.day: date | None = None

    def resize(self, n_acct: int) -> None:
        self.open = np.zeros(n_acct, bool)
        self.status = np.zeros(n_acct, np.int8)
        self.amount = np.zeros(n_acct)
        self.deadline = np.full(n_acct, NO_DEADLINE)
        self.opened_at = np.zeros(n_acct)
        self.dirty = np.zeros(n_acct, bool)  # amount/status moved since the last persisted update
        # closed by hand or by liquidation while still below MM: not called again until E ≥ MM or the next day
        self.quiet = np.zeros(n_acct, bool)

    def adopt(self, a: int, status: int, amount: float, deadline: date, opened_at: float) -> None:
        """An open call read from the store (at start, or opened by another workstation)."""
        self.open[a] = True
        self.status[a] = status
        self.amount[a] = amount
        self.deadline[a] = np.datetime64(deadline, "D")
        self.opened_at[a] = opened_at

    def update(self, engine: MarginEngine, accounts: np.ndarray, ts: float) -> list[CallEvent]:
        """Apply one recalculation of `accounts`; returns the lifecycle events it caused."""
        events: list[CallEvent] = []
        day = local_date(ts)
        if self.day is not None and day != self.day:
            events += self._end_of_day(engine, ts)
        self.day = day
        if accounts.size == 0:
            return events
        st = engine.status[accounts]
        was_open = self.open[accounts]
        recovered = engine.equity[accounts] >= engine.mm[accounts]
        self.quiet[accounts[recovered]] = False
        opening = accounts[(st >= CALL) & ~was_open & ~self.quiet[accounts]]
        met = accounts[was_open & recovered]
        still = was_open & (engine.equity[accounts] < engine.mm[accounts])
        forcing = accounts[still & (st == FORCE) & (self.status[accounts] != FORCE)]
        following = accounts[still]
        if following.size:
            moved = ((self.amount[following] != engine.call_amount[following])
                     | (self.status[following] != engine.status[following]))
            self.dirty[following[moved]] = True
            self.amount[following] = engine.call_amount[following]
            self.status[following] = np.maximum(engine.status[following], CALL)
        if opening.size:
            deadline = self.calendar.add_trading_days(day, self.deadline_days)
            self.open[opening] = True
            self.status[opening] = engine.status[opening]
            self.amount[opening] = engine.call_amount[opening]
            self.deadline[opening] = np.datetime64(deadline, "D")
            self.opened_at[opening] = ts
            events += [self._event(engine, int(a), "open", ts, deadline) for a in opening.tolist()]
        events += [self._event(engine, int(a), "force", ts) for a in forcing.tolist()]
        if met.size:
            events += [self._event(engine, int(a), "met", ts) for a in met.tolist()]
            self.open[met] = False
            self.amount[met] = 0.0
            self.status[met] = 0
            self.deadline[met] = NO_DEADLINE
            self.dirty[met] = False
        return events

    def _end_of_day(self, engine: MarginEngine, ts: float) -> list[CallEvent]:
        self.quiet[:] = False
        return [self._event(engine, int(a), "eod", ts) for a in np.flatnonzero(self.open).tolist()]

    def close(self, engine: MarginEngine, a: int, ts: float, reason: str, remark: str, actor: str = "") -> CallEvent:
        """Manual close (with a remark) or completed liquidation. An account still below MM is not
        called again until it recovers (E ≥ MM) or the day ends: the close is a decision the desk took."""
        ev = self._event(engine, a, "closed" if reason == "manual" else reason, ts)
        ev.detail = remark
        ev.actor = actor
        self.open[a] = False
        self.amount[a] = 0.0
        self.status[a] = 0
        self.deadline[a] = NO_DEADLINE
        self.dirty[a] = False
        self.quiet[a] = bool(engine.equity[a] < engine.mm[a])
        return ev

    def _event(self, engine: MarginEngine, a: int, kind: str, ts: float, deadline: date | None = None
               ) -> CallEvent:
        return CallEvent(
            account=a, kind=kind, ts=ts, status=STATUS_NAMES[int(engine.status[a])],
            amount=float(engine.call_amount[a]), equity=float(engine.equity[a]), im=float(engine.im[a]),
            mm=float(engine.mm[a]), deadline=deadline, snapshot=snapshot(engine, a, ts))

    def take_dirty(self) -> np.ndarray:
        d = np.flatnonzero(self.dirty & self.open)
        self.dirty[:] = False
        return d

    def long_standing(self, today: date) -> np.ndarray:
        """Open calls past their deadline (RISK_METHODS §2 "long-standing unsettled")."""
        return self.open & (self.deadline < np.datetime64(today, "D"))

    def age_days(self, today: date) -> np.ndarray:
        """Trading days since each open call was triggered (−1 where none is open)."""
        out = np.full(self.open.shape[0], -1, np.int64)
        idx = np.flatnonzero(self.open)
        if idx.size:
            opened = np.array([local_date(t) for t in self.opened_at[idx].tolist()], dtype="datetime64[D]")
            out[idx] = self.calendar.business_days_between(opened, np.datetime64(today, "D"))
        return out


_SNAPSHOT_KINDS = {"open": "trigger", "force": "force", "met": "end", "eod": "eod", "closed": "end",
                   "liquidated": "end", "notice": "notice"}


class CallRepository:
    """Writes call events to the store; one instance per writer thread."""

    def __init__(self, store: Store, acct_ids: np.ndarray) -> None:
        self.store = store
        self.acct_ids = acct_ids
        self.call_ids: dict[int, int] = {}  # account index → open call id

    def load_open(self, tracker: CallTracker, acct_index: dict[int, int], today: date | None = None) -> None:
        """Adopt the store's open calls into the tracker (acct_index: account id → index); calls closed
        by hand or by liquidation on `today` (HK) keep their account quiet for the rest of the day."""
        with self.store.begin() as conn:
            rows = conn.execute(select(S.margin_calls).where(S.margin_calls.c.state == "open")).all()
            closed = [] if today is None else conn.execute(
                select(S.margin_calls.c.account_id, S.margin_calls.c.closed_at).where(
                    S.margin_calls.c.state.in_(("closed", "liquidated")),
                    S.margin_calls.c.closed_at >= datetime.combine(today, datetime.min.time(), UTC)
                    - timedelta(hours=8))).all()
        for r in closed:
            a = acct_index.get(r.account_id)
            at = r.closed_at if r.closed_at.tzinfo else r.closed_at.replace(tzinfo=UTC)
            if a is not None and local_date(at.timestamp()) == today:
                tracker.quiet[a] = True
        self.call_ids.clear()
        for r in rows:
            a = acct_index.get(r.account_id)
            if a is None:
                continue
            self.call_ids[a] = r.id
            opened = r.opened_at if r.opened_at.tzinfo else r.opened_at.replace(tzinfo=UTC)
            tracker.adopt(a, STATUS_NAMES.index(r.current_status), r.current_amount, r.deadline,
                          opened.timestamp())

    def write(self, events: list[CallEvent]) -> None:
        """All events of one batch in one transaction: a crash leaves none or all of them."""
        if not events:
            return
        with self.store.begin() as conn:
            for ev in events:
                ts = datetime.fromtimestamp(ev.ts, UTC)
                account_id = int(self.acct_ids[ev.account])
                if ev.kind == "open":
                    try:
                        with conn.begin_nested():
                            call_id = conn.execute(insert(S.margin_calls).values(
                                account_id=account_id, opened_at=ts, trigger_status=ev.status,
                                trigger_amount=ev.amount, deadline=ev.deadline, state="open",
                                current_status=ev.status, current_amount=ev.amount,
                                force_at=ts if ev.status == "force" else None,
                            ).returning(S.margin_calls.c.id)).scalar_one()
                    except IntegrityError:
                        # another workstation opened it first: adopt theirs
                        call_id = conn.execute(select(S.margin_calls.c.id).where(and_(
                            S.margin_calls.c.account_id == account_id,
                            S.margin_calls.c.state == "open"))).scalar_one()
                    self.call_ids[ev.account] = call_id
                else:
                    call_id = self.call_ids.get(ev.account) or conn.execute(
                        select(S.margin_calls.c.id).where(and_(S.margin_calls.c.account_id == account_id,
                                                               S.margin_calls.c.state == "open"))).scalar()
                    if call_id is None:
                        continue
                    values: dict[str, Any] = {"current_status": ev.status if ev.status in ("call", "force")
                                              else "call", "current_amount": ev.amount}
                    if ev.kind != "eod":  # an end-of-day snapshot does not make a pending deadline request stale
                        values["version"] = S.margin_calls.c.version + 1
                    if ev.kind == "force":
                        values["force_at"] = ts
                    ending = ev.kind in ("met", "closed", "liquidated")
                    if ending:
                        values.update(state=ev.kind, closed_at=ts, close_reason=ev.kind,
                                      remark=ev.detail or None)
                        self.call_ids.pop(ev.account, None)
                    stmt = update(S.margin_calls).where(S.margin_calls.c.id == call_id)
                    if ending:  # ended elsewhere meanwhile (another workstation): it stays as they ended it
                        stmt = stmt.where(S.margin_calls.c.state == "open")
                    if conn.execute(stmt.values(**values)).rowcount == 0 and ending:
                        continue
                    if ev.actor:
                        audit.append(conn, self.store.kind, ev.actor, f"margin_call_{ev.kind}", "margin_calls",
                                     str(call_id), "open", json.dumps({"state": ev.kind, "remark": ev.detail,
                                                                      "equity": round(ev.equity, 2),
                                                                      "mm": round(ev.mm, 2)}))
                conn.execute(insert(S.margin_call_events).values(
                    call_id=call_id, ts=ts, kind=ev.kind, status=ev.status, amount=ev.amount, equity=ev.equity,
                    im=ev.im, mm=ev.mm, detail=f"{ev.actor}: {ev.detail}" if ev.actor else ev.detail))
                if ev.snapshot is not None:
                    conn.execute(insert(S.margin_call_snapshots).values(
                        call_id=call_id, ts=ts, kind=_SNAPSHOT_KINDS.get(ev.kind, ev.kind),
                        payload=json.dumps(ev.snapshot, separators=(",", ":"))))

    def write_amounts(self, accounts: np.ndarray, status: np.ndarray, amount: np.ndarray) -> None:
        """Follow the current status and amount of open calls (batched, about every 2 s)."""
        rows = [{"cid": self.call_ids[a], "st": STATUS_NAMES[max(int(s), CALL)], "amt": float(x)}
                for a, s, x in zip(accounts.tolist(), status.tolist(), amount.tolist(), strict=True)
                if a in self.call_ids]
        if not rows:
            return
        from sqlalchemy import bindparam

        stmt = (update(S.margin_calls).where(S.margin_calls.c.id == bindparam("cid"))
                .values(current_status=bindparam("st"), current_amount=bindparam("amt")))
        with self.store.begin() as conn:
            conn.execute(stmt, rows)


def open_call_details(store: Store, account_id: int) -> OpenCall | None:
    """The account's open call with its snapshots (drill-down)."""
    with store.begin() as conn:
        r = conn.execute(select(S.margin_calls, S.accounts.c.code).join(
            S.accounts, S.accounts.c.id == S.margin_calls.c.account_id).where(and_(
                S.margin_calls.c.account_id == account_id, S.margin_calls.c.state == "open"))).first()
        if r is None:
            return None
        snaps = conn.execute(select(S.margin_call_snapshots).where(
            S.margin_call_snapshots.c.call_id == r.id).order_by(S.margin_call_snapshots.c.ts)).all()
    return OpenCall(
        call_id=r.id, account=r.code, opened_at=r.opened_at, trigger_status=r.trigger_status,
        trigger_amount=r.trigger_amount, deadline=r.deadline, current_status=r.current_status,
        current_amount=r.current_amount,
        snapshots=[{"kind": s.kind, "ts": s.ts, **json.loads(s.payload)} for s in snaps])
