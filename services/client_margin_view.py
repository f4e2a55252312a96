"""What the client margin dock shows and checks, without Qt: the client-specific ratios with the
pending change requests on them, read in one task; the inline check of a new ratio; and the change
requests that add a ratio or set one to expired (RISK_METHODS §1: account, then client group, then the
security's own ratio). SQLAlchemy and the change-request service load inside the task functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.auth import User
    from services.store import Store

KIND = "client_margin_ratio"
TABLE = "client_margin_ratios"
SUBJECT_KINDS = (("account", "Account"), ("group", "Client group"))
TARGET_KINDS = (("security", "Security"), ("group", "Stock group"))
SIDES = ("long", "short")
CURRENT = ("active", "pending")


@dataclass
class Lookups:
    """Codes and names the form may name, upper-cased → database id."""

    accounts: dict[str, int] = field(default_factory=dict)
    client_groups: dict[str, int] = field(default_factory=dict)
    securities: dict[str, int] = field(default_factory=dict)
    stock_groups: dict[str, int] = field(default_factory=dict)


def _number(text: str, what: str) -> tuple[float | None, str]:
    t = text.strip().replace(",", "")
    if not t:
        return None, f"Enter the {what} ratio."
    try:
        v = float(t)
    except ValueError:
        return None, f"{what} “{text.strip()}” is not a number."
    if not math.isfinite(v):
        return None, f"{what} must be a finite number."
    return v, ""


def validate_client_ratio(subject_kind: str, subject: str, target_kind: str, target: str, side: str,
                          im_text: str, mm_text: str, lookups: Lookups | None,
                          expires_at: datetime | None = None, now: datetime | None = None
                          ) -> tuple[dict[str, Any] | None, str]:
    """(the new row's values, "") when the form is acceptable, else (None, why not).

    Long ratios lie in [0, 1]; short-sell ratios are from 1 up (e.g. 1.5); MM ≤ IM; the subject
    and the target exist; an expiry lies in the future. Without ``lookups`` (not loaded yet) the
    codes are not checked and no ids are given.
    """
    subject, target = subject.strip(), target.strip()
    if not subject:
        return None, "Enter the account code." if subject_kind == "account" else "Enter the client group."
    if not target:
        return None, "Enter the security code." if target_kind == "security" else "Enter the stock group."
    values: dict[str, Any] = {"account_id": None, "client_group_id": None, "security_id": None,
                              "stock_group_id": None}
    if lookups is not None:
        if subject_kind == "account":
            if subject.upper() not in lookups.accounts:
                return None, f"Unknown account “{subject}”."
            values["account_id"] = lookups.accounts[subject.upper()]
        else:
            if subject.upper() not in lookups.client_groups:
                return None, f"Unknown client group “{subject}”."
            values["client_group_id"] = lookups.client_groups[subject.upper()]
        if target_kind == "security":
            if target.upper() not in lookups.securities:
                return None, f"Unknown security “{target}”."
            values["security_id"] = lookups.securities[target.upper()]
        else:
            if target.upper() not in lookups.stock_groups:
                return None, f"Unknown stock group “{target}”."
            values["stock_group_id"] = lookups.stock_groups[target.upper()]
    if side not in SIDES:
        return None, f"Side must be long or short, not “{side}”."
    im, why = _number(im_text, "IM")
    if im is None:
        return None, why
    mm, why = _number(mm_text, "MM")
    if mm is None:
        return None, why
    if side == "long" and not (0 <= im <= 1 and 0 <= mm <= 1):
        return None, "Long ratios must be between 0 and 1 (e.g. 0.5)."
    if side == "short" and (im < 1 or mm < 1):
        return None, "Short-sell ratios are from 1 up (e.g. 1.5)."
    if mm > im:
        return None, f"MM ({mm:g}) must not exceed IM ({im:g})."
    if expires_at is not None and expires_at <= (now or datetime.now(UTC)):
        return None, "The expiry must lie in the future."
    values.update(side=side, im_ratio=im, mm_ratio=mm)
    return values, ""


@dataclass
class ClientMarginSnapshot:
    rows: list[dict[str, Any]]
    lookups: Lookups
    may_request: bool


def load_client_margin(store: Store, user: User) -> ClientMarginSnapshot:
    """Every client ratio with its subject, target and pending request, plus pending inserts (task)."""
    from sqlalchemy import text

    from services import changes
    from services.auth import permitted

    with store.begin() as conn:
        acct = {r[0]: (r[1], r[2]) for r in conn.execute(text(
            "select a.id, a.code, c.code from accounts a join clients c on c.id = a.client_id"))}
        cgrp: dict[int, str] = dict(conn.execute(text("select id, name from client_groups")).all())
        secs: dict[int, str] = dict(conn.execute(text("select id, code from securities")).all())
        sgrp: dict[int, str] = dict(conn.execute(text("select id, name from stock_groups")).all())
        raw = [dict(r._mapping) for r in conn.execute(text(f"select * from {TABLE} order by id"))]
    pending_upd: dict[int, int] = {}
    inserts: list[tuple[int, dict[str, Any]]] = []
    for req in changes.listing(store, status="pending"):  # newest first
        if req.kind != KIND or "id" not in req.target_key:
            continue
        if req.op == "insert":
            inserts.append((req.id, {**req.after, "id": int(req.target_key["id"])}))
        else:
            pending_upd.setdefault(int(req.target_key["id"]), req.id)

    def describe(r: dict[str, Any], req_id: int | None, new: bool) -> dict[str, Any]:
        a = acct.get(r.get("account_id")) if r.get("account_id") is not None else None
        subject = a[0] if a else f"group: {cgrp.get(int(r.get('client_group_id') or 0), '?')}"
        target = (secs.get(r["security_id"], "?") if r.get("security_id") is not None
                  else f"stock group: {sgrp.get(int(r.get('stock_group_id') or 0), '?')}")
        return {"id": int(r["id"]), "subject": subject, "client": a[1] if a else "", "target": target,
                "subject_key": ("a", r.get("account_id")) if a else ("g", r.get("client_group_id")),
                "side": r.get("side") or "long", "im": float(r["im_ratio"]), "mm": float(r["mm_ratio"]),
                "status": "pending" if new else r["status"], "effective_from": r.get("effective_from"),
                "expires_at": r.get("expires_at"), "version": r.get("version"), "request_id": req_id,
                "request": "" if req_id is None else f"request #{req_id} pending" + (" (new)" if new else "")}

    rows = [describe(r, pending_upd.get(int(r["id"])), False) for r in raw]
    rows += [describe(after, rid, True) for rid, after in reversed(inserts)]
    lookups = Lookups(accounts={c.upper(): i for i, (c, _) in acct.items()},
                      client_groups={str(n).upper(): i for i, n in cgrp.items()},
                      securities={str(c).upper(): i for i, c in secs.items()},
                      stock_groups={str(n).upper(): i for i, n in sgrp.items()})
    return ClientMarginSnapshot(rows, lookups, permitted(store, user, "request", KIND))


def submit_new_ratio(store: Store, user: User, values: dict[str, Any], reason: str,
                     expires_at: datetime | None = None, context: dict[str, Any] | None = None) -> int:
    """An insert request for a new active client ratio, effective now (task function); its id."""
    from services import changes

    with store.begin() as conn:
        new_id = changes.insert_id_floor(conn, TABLE) + 1
    after = {**values, "status": "active", "effective_from": datetime.now(UTC).isoformat(),
             "expires_at": expires_at.isoformat() if expires_at else None}
    return changes.submit(store, user, KIND, {"id": new_id}, after, reason, op="insert", context=context)


def submit_expire(store: Store, user: User, record_id: int, reason: str) -> int:
    """An update request setting record ``record_id`` to expired (task function); its id."""
    from services import changes

    return changes.submit(store, user, KIND, {"id": record_id}, {"status": "expired"}, reason, op="update")
