"""Client trading limits (issue 4): one limit of each type per client, with expiry.

Whether a limit is in force is derived, not stored by a background job: it must be active, not past
its expiry date, and — when flagged `expire_on_call` — the account must have no open margin call.
Changing a limit (new, amount, set invalid) is a four-eyes change request on `client_trading_limits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from models.book import TRADING_LIMIT_TYPES
from services import changes
from services.auth import User
from services.store import Store, _as_dt

LIMIT_TYPES = TRADING_LIMIT_TYPES


@dataclass
class TradingLimit:
    id: int
    account: str
    limit_type: str
    amount: float
    expires_at: datetime | None
    expire_on_call: bool
    status: str  # stored: active / invalid / expired
    state: str  # derived: in force / expired / expired (margin call) / invalid


def limits(store: Store, now: datetime | None = None) -> list[TradingLimit]:
    now = now or datetime.now(UTC)
    with store.begin() as conn:
        rows = conn.execute(text(
            "select t.id, a.code, t.limit_type, t.amount, t.expires_at, t.expire_on_call, t.status, "
            "exists (select 1 from margin_calls c where c.account_id = t.account_id and c.state = 'open') "
            "as in_call from client_trading_limits t join accounts a on a.id = t.account_id order by t.id")).all()
    out = []
    for r in rows:
        exp = _as_dt(r.expires_at)
        if r.status != "active":
            state = r.status
        elif exp is not None and exp <= now:
            state = "expired"
        elif r.expire_on_call and r.in_call:
            state = "expired (margin call)"
        else:
            state = "in force"
        out.append(TradingLimit(r.id, r.code, r.limit_type, float(r.amount), exp, bool(r.expire_on_call), r.status,
                                state))
    return out


def in_force(store: Store, now: datetime | None = None) -> dict[tuple[str, str], float]:
    """(account, limit type) → amount for the limits in force (what pre-trade checks will use)."""
    return {(t.account, t.limit_type): t.amount for t in limits(store, now) if t.state == "in force"}


def propose(store: Store, user: User, account: str, limit_type: str, amount: float, reason: str,
            expires_at: datetime | None = None, expire_on_call: bool = False) -> int:
    """New limit, or overwrite the client's limit of the same type (a change request)."""
    if limit_type not in LIMIT_TYPES:
        raise changes.ChangeError(f"unknown limit type {limit_type!r}: one of {', '.join(LIMIT_TYPES)}")
    if not amount >= 0:
        raise changes.ChangeError(f"a trading limit must be ≥ 0, got {amount:g}")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise changes.ChangeError("the expiry date must be in the future")
    with store.begin() as conn:
        acct = conn.execute(text("select id from accounts where code = :c"), {"c": account}).scalar()
        if acct is None:
            raise changes.ChangeError(f"unknown account {account!r}")
        existing = conn.execute(text("select id from client_trading_limits where account_id = :a and "
                                     "limit_type = :t"), {"a": acct, "t": limit_type}).scalar()
        new_id = changes.insert_id_floor(conn, "client_trading_limits") + 1
    after: dict[str, Any] = {"amount": float(amount), "status": "active", "expire_on_call": expire_on_call,
                             "expires_at": expires_at.astimezone(UTC).isoformat() if expires_at else None}
    if existing is not None:  # one type per client: the new one overwrites
        return changes.submit(store, user, "client_trading_limit", {"id": int(existing)}, after, reason,
                              amount=float(amount), context={"account": account, "limit_type": limit_type})
    return changes.submit(store, user, "client_trading_limit", {"id": new_id},
                          {**after, "account_id": int(acct), "limit_type": limit_type}, reason, op="insert",
                          amount=float(amount), context={"account": account, "limit_type": limit_type})


def set_invalid(store: Store, user: User, limit_id: int, reason: str) -> int:
    return changes.submit(store, user, "client_trading_limit", {"id": limit_id}, {"status": "invalid"}, reason)
