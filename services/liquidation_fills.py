"""Fills of liquidation orders (issue 8) and the call they complete (RISK_METHODS §2 "completed liquidation").

Dealing reports what it sold; the desk records it on the order (`record_fill`): the filled quantity is
at most what is left of the order and of the holding, whole lots unless it is the whole holding, at a
price above 0 (and not below a limit order's limit). In one audited transaction the order's filled
quantity and proceeds grow (state ``partly filled`` or ``filled``), the store's position falls by the
quantity and its cash in the security's currency rises by quantity × price.

`record_and_apply` also moves the running monitor's engine at once (`LiveMonitor.apply_fill`, as the
check service applies a fill), so E, IM and the call follow. When every order of the call that was not
cancelled is filled, the call ends as ``liquidated`` with a remark naming the orders — unless the sale
brought E ≥ MM and the recalculation already ended it as met.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from models import schema as S
from services import audit
from services import liquidation_orders as lo
from services.liquidation import LiquidationError
from services.store import Store

FILLABLE = ("confirmed", "sent", "partly filled")
EPS = 1e-9


@dataclass
class FillResult:
    order_id: int
    account: str
    code: str
    currency: str
    qty: float  # shares sold in this fill
    price: float  # security currency
    proceeds: float  # qty × price, security currency
    state: str  # the order's state after the fill
    filled_qty: float  # the order's filled quantity after the fill
    position_after: float
    cash_after: float  # the account's cash in `currency` after the fill (store)
    call_id: int | None
    call_open: bool  # the order's call was still open in the store
    call_orders: list[int] = field(default_factory=list)  # the call's orders that were not cancelled
    call_orders_filled: bool = False  # ... and every one of them is filled now
    margin: dict[str, Any] | None = None  # the account in the live engine after the fill
    call_ended: str | None = None  # "liquidated" or "met" when this fill ended the call

    def message(self) -> str:
        text = (f"Order #{self.order_id} {self.state}: sold {self.qty:,.0f} {self.code} at {self.price:,.4g} "
                f"{self.currency} for {self.account} (proceeds {self.proceeds:,.2f}; holding now "
                f"{self.position_after:,.0f})")
        if self.call_ended == "liquidated":
            text += f"; call #{self.call_id} closed as liquidated"
        elif self.call_ended == "met":
            text += f"; call #{self.call_id} met (E ≥ MM)"
        return text + "."


def fill_problem(order: dict[str, Any], qty: float, price: float, holding: float) -> str:
    """What is wrong with a fill of `order` ("" when it can be recorded); the message names the field."""
    if order["state"] not in FILLABLE:
        return f"Order #{order['id']} is {order['state']}: only confirmed or sent orders are filled"
    left = float(order["qty"]) - float(order.get("filled_qty") or 0.0)
    lot = max(int(order.get("lot_size") or 1), 1)
    if not qty > 0:
        return "Filled qty: more than 0"
    if qty > left + EPS:
        return (f"Filled qty: at most {left:,.0f} (the order's {float(order['qty']):,.0f}"
                + (f" less {float(order['filled_qty']):,.0f} already filled)" if order.get("filled_qty") else ")"))
    if qty > holding + EPS:
        return f"Filled qty: the account holds only {holding:,.0f} {order['code']}"
    if abs(qty - round(qty)) > EPS:
        return "Filled qty: whole shares"
    if round(qty) % lot and abs(qty - holding) > EPS:
        return f"Filled qty: whole lots of {lot:,}, or all {holding:,.0f} held"
    if not price > 0:
        return "Price: more than 0"
    if order.get("order_type") == "limit" and order.get("limit_price") and price < float(order["limit_price"]) - EPS:
        return f"Price: below the order's limit {float(order['limit_price']):,.4g}"
    return ""


def holding(store: Store, account: str, code: str) -> float:
    """The account's stored position in `code` (the dialog's "whole holding" check)."""
    with store.begin() as conn:
        return _holding(conn, account, code)[0]


def _holding(conn: Connection, account: str, code: str) -> tuple[float, int, int, str]:
    acct = conn.execute(select(S.accounts.c.id).where(S.accounts.c.code == account)).scalar()
    sec = conn.execute(select(S.securities.c.id, S.securities.c.currency).where(S.securities.c.code == code)).first()
    if acct is None or sec is None:
        raise LiquidationError(f"{'account ' + account if acct is None else 'security ' + code} is not in the store")
    q = conn.execute(select(S.positions.c.qty).where(S.positions.c.account_id == acct,
                                                     S.positions.c.security_id == sec.id)).scalar()
    return float(q or 0.0), int(acct), int(sec.id), str(sec.currency)


def record_fill(store: Store, user: Any, order_id: int, qty: float, price: float,
                now: datetime | None = None) -> FillResult:
    """Record a fill of one liquidation order (see the module docstring); nothing is written when the
    fill is refused (LiquidationError naming the field, AuthError for a role that may not liquidate)."""
    lo._check_permitted(store, user)
    qty, price = float(qty), float(price)
    now = now or datetime.now(UTC)
    t, pos, cash = S.liquidation_orders, S.positions, S.cash_balances
    with store.begin() as conn:
        r = conn.execute(select(t).where(t.c.id == order_id)).first()
        if r is None:
            raise LiquidationError(f"order #{order_id} does not exist")
        order = dict(r._mapping)
        held, acct_id, sec_id, ccy = _holding(conn, order["account"], order["code"])
        msg = fill_problem(order, qty, price, held)
        if msg:
            raise LiquidationError(msg)
        filled = float(order["filled_qty"] or 0.0) + qty
        state = "filled" if filled >= float(order["qty"]) - EPS else "partly filled"
        done = conn.execute(update(t).where(t.c.id == order_id, t.c.version == order["version"]).values(
            state=state, filled_qty=filled, fill_value=float(order["fill_value"] or 0.0) + qty * price,
            filled_at=now, filled_by=user.login, version=t.c.version + 1)).rowcount
        if done != 1:
            raise LiquidationError(f"order #{order_id} changed meanwhile; reload and try again")
        conn.execute(update(pos).where(pos.c.account_id == acct_id, pos.c.security_id == sec_id)
                     .values(qty=pos.c.qty - qty))
        old_cash = conn.execute(select(cash.c.amount).where(cash.c.account_id == acct_id,
                                                            cash.c.currency == ccy)).scalar()
        new_cash = float(old_cash or 0.0) + qty * price
        if old_cash is None:
            conn.execute(cash.insert().values(account_id=acct_id, currency=ccy, amount=new_cash))
        else:
            conn.execute(update(cash).where(cash.c.account_id == acct_id, cash.c.currency == ccy)
                         .values(amount=cash.c.amount + qty * price))
        call_id = order["call_id"]
        call_open, call_orders, all_filled = False, [], False
        if call_id is not None:
            call_open = conn.execute(select(S.margin_calls.c.state).where(
                S.margin_calls.c.id == call_id)).scalar() == "open"
            rows = conn.execute(select(t.c.id, t.c.state).where(t.c.call_id == call_id, t.c.state != "cancelled")
                                .order_by(t.c.id)).all()
            call_orders = [int(x.id) for x in rows]
            all_filled = bool(rows) and all(x.state == "filled" for x in rows)
        audit.append(conn, store.kind, user.login, "liquidation_fill", "liquidation_orders", str(order_id),
                     json.dumps({"state": order["state"], "filled_qty": float(order["filled_qty"] or 0.0),
                                 "position": held, "cash": float(old_cash or 0.0)}),
                     json.dumps({"state": state, "filled_qty": filled, "fill_qty": qty, "price": price,
                                 "account": order["account"], "code": order["code"], "position": held - qty,
                                 "cash": new_cash, "currency": ccy}))
    return FillResult(order_id, order["account"], order["code"], ccy, qty, price, qty * price, state, filled,
                      held - qty, new_cash, call_id, call_open, call_orders, all_filled)


def completion_remark(result: FillResult) -> str:
    ids = ", ".join(f"#{i}" for i in result.call_orders)
    return f"Liquidation completed: order{'s' if len(result.call_orders) > 1 else ''} {ids} filled"


def record_and_apply(store: Store, user: Any, order_id: int, qty: float, price: float, monitor: Any = None,
                     now: datetime | None = None) -> FillResult:
    """`record_fill`, then the sale in the running monitor's engine, then — when every order of the call
    is filled and the call is still open — the call closed as ``liquidated`` (through the monitor)."""
    result = record_fill(store, user, order_id, qty, price, now)
    if monitor is None:
        return result
    a = monitor.engine.book.acct_index.get(result.account)
    was_open = a is not None and bool(monitor.tracker.open[a])
    result.margin = monitor.apply_fill(result.account, result.code, result.qty, result.proceeds)
    if was_open and not result.margin["call_open"]:
        result.call_ended = "met"
    elif result.call_open and result.call_orders_filled and result.margin["call_open"]:
        monitor.close_call(a, user, completion_remark(result), reason="liquidated")
        result.margin["call_open"] = False
        result.call_ended = "liquidated"
    return result
