"""Stock margin setting records (issue 4): every new or edited ratio is a record that takes effect at
its effective time (pending until then), now with "Sync", or never with "Cancel sync" (revoked).

Each of the three is a four-eyes change request on `stock_margin_ratios`; what is in force is derived
from the records and the clock (`services.store.ratio_settings_in_force`), so nothing has to run at
the effective time for it to apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from services import changes
from services.auth import User, permitted
from services.store import Store, _as_dt, ratio_settings_in_force

TABLES = ("long", "short", "intraday")
KIND = "stock_margin_ratio"


@dataclass
class SettingRecord:
    id: int
    code: str
    table: str
    im_ratio: float
    mm_ratio: float
    status: str  # stored: active / pending / revoked / expired
    effective_from: datetime | None
    expires_at: datetime | None
    state: str  # derived: pending, in force, superseded, expired, revoked


def setting_problem(table: str, im: float, mm: float, effective: datetime | None = None,
                    expires: datetime | None = None) -> str | None:
    """Why a setting may not be proposed, or None: the one rule set for the service and the editor."""
    if table not in TABLES:
        return f"unknown ratio table {table!r}: one of {', '.join(TABLES)}"
    for name, v in (("IM", im), ("MM", mm)):
        if not math.isfinite(v):
            return f"{name} must be a finite number"
        if table == "short" and v < 1.0:
            return f"short-sell {name} must be from 1 up (e.g. 1.5), got {v:g}"
        if table != "short" and not 0.0 <= v <= 1.0:
            return f"{table} {name} must be between 0 and 1, got {v:g}"
    if mm > im:
        return f"MM ({mm:g}) must not exceed IM ({im:g}): the maintenance ratio must not exceed the initial ratio"
    if expires is not None and expires <= (effective or datetime.now(UTC)):
        return "the expiry must be after the effective time"
    return None


def stock_status(store: Store) -> dict[str, str]:
    """Each security's trading status from the store: suspended, halted (an intraday trading halt) or
    trading — suspended wins when both flags are set. The editors re-read it on "Refresh stock status"."""
    with store.begin() as conn:
        rows = conn.execute(text("select code, suspended, halted from securities")).all()
    return {str(c): "suspended" if s else "halted" if h else "trading" for c, s, h in rows}


def security_codes(store: Store) -> list[str]:
    with store.begin() as conn:
        return [str(c) for (c,) in conn.execute(text("select code from securities order by code"))]


def propose(store: Store, user: User, code: str, table: str, im: float, mm: float, reason: str,
            effective_from: datetime | None = None, expires_at: datetime | None = None) -> int:
    """A new setting record (a change request); in force from `effective_from` (default: approval)."""
    problem = setting_problem(table, im, mm, effective_from, expires_at)
    if problem:
        raise changes.ChangeError(problem)
    with store.begin() as conn:
        sid = conn.execute(text("select id from securities where code = :c"), {"c": code}).scalar()
        if sid is None:
            raise changes.ChangeError(f"unknown security code {code!r}")
        new_id = changes.insert_id_floor(conn, "stock_margin_ratios") + 1
    eff = (effective_from or datetime.now(UTC)).astimezone(UTC)
    after: dict[str, Any] = {"security_id": int(sid), "kind": table, "im_ratio": im, "mm_ratio": mm,
                             "status": "pending", "effective_from": eff.isoformat(),
                             "expires_at": expires_at.astimezone(UTC).isoformat() if expires_at else None}
    return changes.submit(store, user, "stock_margin_ratio", {"id": new_id}, after, reason, op="insert",
                          context={"code": code, "table": table})


def sync(store: Store, user: User, record_id: int, reason: str = "sync now") -> int:
    """Bring a pending record into force now (a change request)."""
    return changes.submit(store, user, "stock_margin_ratio", {"id": record_id},
                          {"effective_from": datetime.now(UTC).isoformat()}, reason)


def cancel_sync(store: Store, user: User, record_id: int, reason: str = "cancel sync") -> int:
    """Revoke a record so it never applies (a change request)."""
    return changes.submit(store, user, "stock_margin_ratio", {"id": record_id}, {"status": "revoked"}, reason)


def records(store: Store, code: str | None = None, now: datetime | None = None) -> list[SettingRecord]:
    """Every setting record with its derived state, newest first (history per security)."""
    now = now or datetime.now(UTC)
    sql = ("select r.id, r.security_id, r.kind, r.im_ratio, r.mm_ratio, r.status, r.effective_from, "
           "r.expires_at, s.code from stock_margin_ratios r join securities s on s.id = r.security_id")
    params: dict[str, Any] = {}
    if code:
        sql += " where s.code = :c"
        params["c"] = code
    with store.begin() as conn:
        rows = conn.execute(text(sql + " order by r.id desc"), params).all()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    winners: dict[tuple[int, str], tuple[datetime, int]] = {}  # (security, table) → latest (effective, id)
    for rid, sid, kind, _im, _mm, status, eff, _exp, _code in rows:
        e0 = _as_dt(eff) or epoch
        if status in ("active", "pending") and e0 <= now:
            key = (e0, rid)
            if key > winners.get((sid, kind), (epoch, -1)):
                winners[(sid, kind)] = key
    in_force_ids = {rid for _, rid in winners.values()}
    live = ratio_settings_in_force([r[:8] for r in rows], now)
    out = []
    for rid, sid, kind, im, mm, status, eff, exp, c in rows:
        start, end = _as_dt(eff), _as_dt(exp)
        if status == "revoked":
            state = "revoked"
        elif start is not None and start > now:
            state = "pending"
        elif rid in in_force_ids:
            state = "in force" if (sid, kind) in live else "expired"
        else:
            state = "superseded"
        out.append(SettingRecord(rid, c, kind, im, mm, status, start, end, state))
    return out


@dataclass
class MarginSettingsSnapshot:
    """What one background read of the margin settings editor delivers: every record, the pending
    requests on them, the codes, and each security's trading status (code → suspended / halted /
    trading, also on each row as ``stock_status``)."""

    rows: list[dict[str, Any]]
    codes: list[str]
    may_request: bool
    new_requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (code, table) → insert request
    stock_status: dict[str, str] = field(default_factory=dict)


def load_margin_settings(store: Store, user: User) -> MarginSettingsSnapshot:
    """Read the setting records with their state, pending requests and stock status (runs in a worker)."""
    recs = records(store)
    on_record: dict[int, int] = {}
    new_requests: dict[tuple[str, str], int] = {}
    for req in changes.listing(store, status="pending", kind=KIND):
        if req.op == "insert":
            ctx = req.context or {}
            new_requests.setdefault((str(ctx.get("code")), str(ctx.get("table"))), req.id)
        elif "id" in req.target_key:
            on_record.setdefault(int(req.target_key["id"]), req.id)
    codes = security_codes(store)
    status = stock_status(store)
    rows = []
    for r in recs:
        rid = on_record.get(r.id)
        if rid is None and r.state == "in force":
            rid = new_requests.get((r.code, r.table))
        rows.append({"id": r.id, "code": r.code, "table": r.table, "im": r.im_ratio, "mm": r.mm_ratio,
                     "state": r.state, "effective_from": r.effective_from, "expires_at": r.expires_at,
                     "stock_status": status.get(r.code, "trading"),
                     "request_id": rid, "request": f"request #{rid} pending" if rid else ""})
    return MarginSettingsSnapshot(rows, codes, permitted(store, user, "request", KIND), new_requests, status)
