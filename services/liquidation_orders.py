"""Liquidation orders in the store: confirm a proposal, batch and automatic liquidation, cancel, list.

Orders are operational records: written directly, each step audited in the same transaction, nothing
half-written. A confirmation re-reads the account's outstanding orders inside its transaction and
re-checks the lines against them, so two workstations cannot sell the same shares twice. Batch
liquidation is refused unless the company parameter ``batch_liquidation_enabled`` is 1 (changed only
through four-eyes). Automatic liquidation (`run_auto_liquidation`) handles each call past its deadline
at most once per day: the (call, day) row in ``liquidation_auto_runs`` is written in the same
transaction as the orders, and a second run — here or on another workstation — skips it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from models import schema as S
from services import audit
from services.auth import AuthError, User, permitted
from services.calendar import HK_TZ, TradingCalendar
from services.liquidation import (
    LiquidationAccount,
    LiquidationError,
    OrderLine,
    PlannedOrder,
    evaluate,
    planned,
    propose_many,
)
from services.margin import MarginEngine
from services.store import Store

PERMISSION_KIND = "liquidation"
OUTSTANDING = ("confirmed", "sent", "partly filled")  # what is not yet filled stays reserved
BATCH_PARAMETER = "batch_liquidation_enabled"
AUTO_ENABLED = "auto_liquidation_enabled"
AUTO_TIME = "auto_liquidation_time"
LAST_RUN_META = "auto_liquidation_last_run"
AUTO_ACTOR = "auto"


def hk_day(ts: float | None = None) -> date:
    return datetime.fromtimestamp(ts if ts is not None else datetime.now(UTC).timestamp(), HK_TZ).date()


def minutes_text(minutes: float) -> str:
    m = int(round(minutes))
    return f"{m // 60:02d}:{m % 60:02d}"


@dataclass
class LiquidationSettings:
    batch_enabled: bool
    auto_enabled: bool
    auto_minutes: float
    last_run: dict[str, Any] | None

    @property
    def auto_time(self) -> str:
        return minutes_text(self.auto_minutes)


@dataclass
class CallContext:
    """What the dialog needs from the store for one account: its open call and outstanding orders."""

    account: str
    call_id: int | None
    deadline: date | None
    reserved: dict[str, float]  # code → shares in outstanding orders today
    outstanding: list[dict[str, Any]]


@dataclass
class BatchItem:
    call_id: int
    account: str
    deadline: date | None
    deficit: float
    orders: list[PlannedOrder]
    shortfall_after: float
    reserved: dict[str, float]


@dataclass
class AutoRunResult:
    ran: bool
    message: str
    calls: int = 0
    orders: int = 0
    skipped: int = 0


# ---------------------------------------------------------------------- reading
def settings(store: Store) -> LiquidationSettings:
    with store.begin() as conn:
        params = {r.name: float(r.value) for r in conn.execute(select(S.company_parameters).where(
            S.company_parameters.c.name.in_([BATCH_PARAMETER, AUTO_ENABLED, AUTO_TIME])))}
        meta = conn.execute(select(S.store_meta.c.value).where(S.store_meta.c.key == LAST_RUN_META)).scalar()
    return LiquidationSettings(params.get(BATCH_PARAMETER, 0.0) == 1.0, params.get(AUTO_ENABLED, 0.0) == 1.0,
                               params.get(AUTO_TIME, 600.0), json.loads(meta) if meta else None)


def _outstanding(conn: Connection, accounts: Sequence[str], day: date) -> list[dict[str, Any]]:
    t = S.liquidation_orders
    if not accounts:
        return []
    rows = conn.execute(select(t).where(t.c.account.in_(list(accounts)), t.c.state.in_(OUTSTANDING),
                                        t.c.trade_day == day).order_by(t.c.id)).all()
    return [dict(r._mapping) for r in rows]


def _reserved(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        by = out.setdefault(r["account"], {})
        by[r["code"]] = by.get(r["code"], 0.0) + float(r["qty"]) - float(r.get("filled_qty") or 0.0)
    return out


def _open_calls(conn: Connection, accounts: Sequence[str] | None = None) -> dict[str, tuple[int, date]]:
    mc, ac = S.margin_calls, S.accounts
    q = select(ac.c.code, mc.c.id, mc.c.deadline).join(ac, ac.c.id == mc.c.account_id).where(mc.c.state == "open")
    if accounts is not None:
        q = q.where(ac.c.code.in_(list(accounts)))
    return {r.code: (int(r.id), r.deadline) for r in conn.execute(q)}


def call_context(store: Store, account: str, today: date | None = None) -> CallContext:
    """The account's open call (if any) and its outstanding liquidation orders of today."""
    today = today or hk_day()
    with store.begin() as conn:
        call = _open_calls(conn, [account]).get(account)
        rows = _outstanding(conn, [account], today)
    return CallContext(account, call[0] if call else None, call[1] if call else None,
                       _reserved(rows).get(account, {}), rows)


def open_calls(store: Store) -> list[dict[str, Any]]:
    """Every open call with its account, status, amount and deadline (batch liquidation picks from these)."""
    mc, ac = S.margin_calls, S.accounts
    with store.begin() as conn:
        rows = conn.execute(select(mc.c.id, ac.c.code.label("account"), mc.c.current_status, mc.c.current_amount,
                                   mc.c.deadline, mc.c.opened_at).join(ac, ac.c.id == mc.c.account_id)
                            .where(mc.c.state == "open").order_by(mc.c.deadline, ac.c.code)).all()
    return [dict(r._mapping) for r in rows]


def list_orders(store: Store, state: str | None = None, account: str | None = None, day_from: date | None = None,
                day_to: date | None = None, limit: int = 20_000) -> list[dict[str, Any]]:
    """Orders newest first, filtered by state, account (substring, any case) and trade day range."""
    t = S.liquidation_orders
    q = select(t)
    if state:
        q = q.where(t.c.state == state)
    if account:
        q = q.where(t.c.account.ilike(f"%{account.strip()}%"))
    if day_from is not None:
        q = q.where(t.c.trade_day >= day_from)
    if day_to is not None:
        q = q.where(t.c.trade_day <= day_to)
    with store.begin() as conn:
        rows = conn.execute(q.order_by(t.c.id.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


# ---------------------------------------------------------------------- writing
def _check_permitted(store: Store, user: User) -> None:
    if not permitted(store, user, "request", PERMISSION_KIND):
        raise AuthError(f"{user.login} ({user.role_label}) may not liquidate")


def _ticket(day: date) -> str:
    return f"L{day:%Y%m%d}-{uuid.uuid4().hex[:6].upper()}"


def _insert_orders(conn: Connection, ticket: str, account: str, call_id: int | None, orders: Sequence[PlannedOrder],
                   lines: Sequence[OrderLine] | None, reason: str, actor: str, now: datetime, day: date) -> list[int]:
    ids = []
    for k, o in enumerate(orders):
        line = lines[k] if lines is not None else None
        ids.append(int(conn.execute(insert(S.liquidation_orders).values(
            ticket=ticket, account=account, call_id=call_id, code=o.code, qty=o.qty, lot_size=o.lot,
            order_type=line.order_type if line else "market",
            limit_price=line.limit_price if line and line.order_type == "limit" else None,
            ref_price=o.ref_price, currency=o.currency, im_release=o.im_release, state="confirmed", reason=reason,
            created_by=actor, created_at=now, trade_day=day).returning(S.liquidation_orders.c.id)).scalar_one()))
    return ids


def _audit_orders(conn: Connection, store: Store, actor: str, action: str, ticket: str, account: str,
                  call_id: int | None, orders: Sequence[PlannedOrder], reason: str, extra: dict[str, Any]) -> None:
    after = json.dumps({"account": account, "call_id": call_id, "reason": reason, **extra,
                        "orders": [{"code": o.code, "qty": o.qty, "im_release": round(o.im_release, 2)}
                                   for o in orders]}, separators=(",", ":"))
    audit.append(conn, store.kind, actor, action, "liquidation_orders", ticket, "", after)


def confirm(store: Store, user: User, acct: LiquidationAccount, lines: Sequence[OrderLine], reason: str, *,
            allow_partial: bool = False, now: datetime | None = None) -> list[int]:
    """Store the (edited) orders of one account as confirmed, with an audit record; returns their ids.

    Refused (LiquidationError, nothing written) when a line is invalid, when the orders leave an IM
    shortfall and ``allow_partial`` is not set, or without a reason."""
    _check_permitted(store, user)
    reason = reason.strip()
    if not reason:
        raise LiquidationError("reason: say why the account is liquidated")
    if not lines:
        raise LiquidationError("there are no orders to confirm")
    now = now or datetime.now(UTC)
    day = hk_day(now.timestamp())
    with store.begin() as conn:
        rows = _outstanding(conn, [acct.account], day)
        current = _reserved(rows).get(acct.account, {})
        if current != {c: float(q) for c, q in zip(acct.codes, acct.reserved.tolist(), strict=True) if q > 0}:
            res = np.minimum(np.array([current.get(c, 0.0) for c in acct.codes], float), acct.holding)
            acct = replace(acct, reserved=res, reserved_release=float((res * acct.pxb * acct.im_ratio).sum()))
        effect = evaluate(acct, lines)
        if effect.problems:
            raise LiquidationError(effect.problems[0])
        if not effect.restores and not allow_partial:
            raise LiquidationError(effect.message())
        call = _open_calls(conn, [acct.account]).get(acct.account)
        call_id = call[0] if call else None
        orders = planned(acct, lines)
        ticket = _ticket(day)
        ids = _insert_orders(conn, ticket, acct.account, call_id, orders, lines, reason, user.login, now, day)
        _audit_orders(conn, store, user.login, "liquidation_confirm", ticket, acct.account, call_id, orders, reason,
                      {"shortfall_after": round(effect.shortfall_after, 2)})
    return ids


def cancel(store: Store, user: User, order_id: int, reason: str, now: datetime | None = None) -> None:
    """Cancel a mistaken order (not one already cancelled) with a reason, audited."""
    _check_permitted(store, user)
    reason = reason.strip()
    if not reason:
        raise LiquidationError("reason: say why the order is cancelled")
    t = S.liquidation_orders
    with store.begin() as conn:
        r = conn.execute(select(t).where(t.c.id == order_id)).first()
        if r is None:
            raise LiquidationError(f"order #{order_id} does not exist")
        if r.state in ("cancelled", "filled"):
            raise LiquidationError(f"order #{order_id} is already {r.state}")
        done = conn.execute(update(t).where(t.c.id == order_id, t.c.version == r.version).values(
            state="cancelled", cancelled_by=user.login, cancelled_at=now or datetime.now(UTC), cancel_reason=reason,
            version=t.c.version + 1)).rowcount
        if done != 1:
            raise LiquidationError(f"order #{order_id} changed meanwhile; reload and try again")
        audit.append(conn, store.kind, user.login, "liquidation_cancel", "liquidation_orders", str(order_id),
                     json.dumps({"state": r.state}), json.dumps({"state": "cancelled", "reason": reason}))


def mark_sent(store: Store, user: User, order_ids: Sequence[int], now: datetime | None = None) -> int:
    """Confirmed orders handed to the dealing desk: state sent (audited); returns how many moved."""
    _check_permitted(store, user)
    t = S.liquidation_orders
    with store.begin() as conn:
        ids = [int(i) for i in conn.execute(select(t.c.id).where(t.c.id.in_(list(order_ids)),
                                                                 t.c.state == "confirmed")).scalars()]
        if ids:
            conn.execute(update(t).where(t.c.id.in_(ids)).values(state="sent", sent_at=now or datetime.now(UTC),
                                                                 version=t.c.version + 1))
            audit.append(conn, store.kind, user.login, "liquidation_sent", "liquidation_orders",
                         ",".join(map(str, ids)), "confirmed", "sent")
    return len(ids)


# ---------------------------------------------------------------------- many calls at once
def _plan(engine: MarginEngine, lock: AbstractContextManager[Any], calls: dict[str, tuple[int, date]],
          reserved: dict[str, dict[str, float]]) -> list[BatchItem]:
    with lock:
        b = engine.book
        idx = {a: b.acct_index[a] for a in calls if a in b.acct_index}
        sec = b.sec_index
        res = {(idx[a], sec[c]): q for a, by in reserved.items() if a in idx for c, q in by.items() if c in sec}
        plan = propose_many(engine, idx.values(), res)
        deficit = {a: float(engine.im[i] - engine.equity[i]) for a, i in idx.items()}
    return [BatchItem(calls[a][0], a, calls[a][1], deficit[a], plan[i][0], plan[i][1], reserved.get(a, {}))
            for a, i in sorted(idx.items())]


def propose_batch(store: Store, engine: MarginEngine, call_ids: Sequence[int],
                  lock: Any = None, today: date | None = None) -> list[BatchItem]:
    """Proposals for many open calls at once (refused while batch liquidation is disabled)."""
    today = today or hk_day()
    if not settings(store).batch_enabled:
        raise LiquidationError(_batch_refusal())
    with store.begin() as conn:
        calls = {a: c for a, c in _open_calls(conn).items() if c[0] in set(call_ids)}
        reserved = _reserved(_outstanding(conn, list(calls), today))
    return _plan(engine, lock or nullcontext(), calls, reserved)


def _batch_refusal() -> str:
    return (f"Batch liquidation is disabled (company parameter {BATCH_PARAMETER} = 0). It can be enabled "
            "only through an approved change request.")


def confirm_batch(store: Store, user: User, items: Sequence[BatchItem], reason: str,
                  now: datetime | None = None) -> list[int]:
    """Store the orders of every item in one transaction (all or none), each ticket audited.

    Refused when batch liquidation is disabled, when a call is no longer open, or when an account's
    outstanding orders changed since the proposal (propose again)."""
    _check_permitted(store, user)
    reason = reason.strip()
    if not reason:
        raise LiquidationError("reason: say why these calls are liquidated")
    now = now or datetime.now(UTC)
    day = hk_day(now.timestamp())
    ids: list[int] = []
    with store.begin() as conn:
        on = conn.execute(select(S.company_parameters.c.value).where(
            S.company_parameters.c.name == BATCH_PARAMETER)).scalar()
        if on != 1.0:
            raise LiquidationError(_batch_refusal())
        calls = _open_calls(conn, [i.account for i in items])
        current = _reserved(_outstanding(conn, [i.account for i in items], day))
        for item in items:
            if calls.get(item.account, (None,))[0] != item.call_id:
                raise LiquidationError(f"{item.account}: call #{item.call_id} is no longer open; propose again")
            if current.get(item.account, {}) != item.reserved:
                raise LiquidationError(f"{item.account}: liquidation orders were confirmed for it meanwhile; "
                                       "propose again")
        for item in items:
            if not item.orders:
                continue
            ticket = _ticket(day)
            ids += _insert_orders(conn, ticket, item.account, item.call_id, item.orders, None, f"batch: {reason}",
                                  user.login, now, day)
            _audit_orders(conn, store, user.login, "liquidation_batch", ticket, item.account, item.call_id,
                          item.orders, f"batch: {reason}", {"shortfall_after": round(item.shortfall_after, 2)})
    return ids


def run_auto_liquidation(store: Store, engine: MarginEngine, now: float,
                         lock: Any = None,
                         calendar: TradingCalendar | None = None) -> AutoRunResult:
    """At or after the configured time on a trading day, create orders for every open call past its
    deadline that has not been handled today (reason "auto"). Idempotent: a call is handled at most
    once per day, however often and wherever this runs."""
    st = settings(store)
    local = datetime.fromtimestamp(now, HK_TZ)
    today = local.date()
    if not st.auto_enabled:
        return AutoRunResult(False, f"automatic liquidation is off ({AUTO_ENABLED} = 0)")
    if calendar is not None and not calendar.is_trading_day(today):
        return AutoRunResult(False, f"{today} is not a trading day")
    if local.hour * 60 + local.minute < st.auto_minutes:
        return AutoRunResult(False, f"runs at {st.auto_time} HK time")
    with store.begin() as conn:
        done = set(conn.execute(select(S.liquidation_auto_runs.c.call_id).where(
            S.liquidation_auto_runs.c.day == today)).scalars())
        excepted: set[int] = set()
        if "margin_call_exceptions" in S.metadata.tables:  # a call marked as an exception is left alone
            ex = S.metadata.tables["margin_call_exceptions"]
            excepted = set(conn.execute(select(ex.c.call_id).where(ex.c.cleared_at.is_(None))).scalars())
        calls = {a: c for a, c in _open_calls(conn).items()
                 if c[1] < today and c[0] not in done and c[0] not in excepted}
        reserved = _reserved(_outstanding(conn, list(calls), today))
    items = _plan(engine, lock or nullcontext(), calls, reserved)
    ts = datetime.fromtimestamp(now, UTC)
    handled = orders = skipped = 0
    with store.begin() as conn:
        for item in items:
            try:
                with conn.begin_nested():
                    conn.execute(insert(S.liquidation_auto_runs).values(
                        call_id=item.call_id, day=today, account=item.account, ts=ts, orders=len(item.orders),
                        shortfall_after=item.shortfall_after))
            except IntegrityError:
                skipped += 1  # another workstation handled it a moment ago
                continue
            handled += 1
            if item.orders:
                ticket = _ticket(today)
                orders += len(_insert_orders(conn, ticket, item.account, item.call_id, item.orders, None, "auto",
                                             AUTO_ACTOR, ts, today))
                _audit_orders(conn, store, AUTO_ACTOR, "liquidation_auto", ticket, item.account, item.call_id,
                              item.orders, "auto", {"deadline": str(item.deadline),
                                                    "shortfall_after": round(item.shortfall_after, 2)})
        meta = json.dumps({"ts": ts.isoformat(timespec="seconds"), "day": str(today), "calls": handled,
                           "orders": orders})
        if conn.execute(update(S.store_meta).where(S.store_meta.c.key == LAST_RUN_META).values(value=meta)
                        ).rowcount == 0:
            conn.execute(insert(S.store_meta).values(key=LAST_RUN_META, value=meta))
    msg = f"{handled} calls past their deadline, {orders} orders created" + (
        f", {skipped} already handled elsewhere" if skipped else "")
    return AutoRunResult(True, msg, handled, orders, skipped)


def due_calls_today(store: Store, today: date | None = None) -> int:
    """Open calls past their deadline not yet handled by automatic liquidation today."""
    today = today or hk_day()
    with store.begin() as conn:
        done = set(conn.execute(select(S.liquidation_auto_runs.c.call_id).where(
            S.liquidation_auto_runs.c.day == today)).scalars())
        return sum(1 for c in _open_calls(conn).values() if c[1] < today and c[0] not in done)


def orders_for_call(store: Store, call_id: int) -> list[dict[str, Any]]:
    t = S.liquidation_orders
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t).where(and_(t.c.call_id == call_id))
                                                       .order_by(t.c.id))]


def seed_demo_liquidation(store: Store, now: float | None = None) -> int:
    """Demo: open the book's calls (a third of them a week ago, so past their deadline), confirm two
    proposals, cancel one order as a mistake, hand one ticket to dealing, and run the automatic
    liquidation once. Returns the number of orders stored."""
    import time

    from services.auth import User
    from services.calendar import shipped_holidays
    from services.liquidation import account_for_liquidation, propose
    from services.margin_calls import CallRepository, CallTracker

    now = time.time() if now is None else now
    book = store.load_book()
    if book.acct_ids is None or not book.n_acct:
        return 0
    engine = MarginEngine(book)
    cal = TradingCalendar(d for d, _ in shipped_holidays())
    tracker = CallTracker(book.n_acct, cal, int(book.parameter("call_deadline_days")))
    repo = CallRepository(store, book.acct_ids)
    repo.load_open(tracker, {int(x): i for i, x in enumerate(book.acct_ids.tolist())})
    in_call = np.flatnonzero((engine.status >= 2) & ~tracker.open)
    week_ago = datetime.combine(cal.add_trading_days(hk_day(now), -5), datetime.min.time(), HK_TZ).timestamp()
    old, new = in_call[::3], np.setdiff1d(in_call, in_call[::3])
    repo.write(tracker.update(engine, old, week_ago + 10 * 3600))
    repo.write(tracker.update(engine, new, now - 3600))
    rita = User("rita", "Rita Chan", "risk_officer")
    today = hk_day(now)
    fresh = [book.acct_index[c["account"]] for c in open_calls(store)
             if c["deadline"] >= today and c["account"] in book.acct_index][:2]
    tickets = []
    for a in fresh:
        acct = account_for_liquidation(engine, a)
        lines = propose(acct)
        if lines:
            tickets.append(confirm(store, rita, acct, lines, "Client unreachable; liquidating to restore IM",
                                   allow_partial=True))
    if tickets:
        mark_sent(store, rita, tickets[0])
    if len(tickets) > 1:
        cancel(store, rita, tickets[1][0], "Client deposited funds before the order went out")
    run_auto_liquidation(store, engine, now, calendar=cal)
    with store.begin() as conn:
        return len(conn.execute(select(S.liquidation_orders.c.id)).all())
