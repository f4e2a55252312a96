"""Reconciliation breaks in the store (RISK_METHODS §7): recorded from each import, worked to resolution.

`record_breaks` keeps one break per (kind, key, type, field) while it is unresolved: a later import
that still shows it updates its values and last-seen time; one where it no longer appears resolves it
("matched in import #N"). Re-importing the same pair of files for the same day changes nothing
(SHA-256 of both files). Breaks are then assigned, investigated and resolved with a root cause.

Recording an import and working a break are for operations, risk officers, supervisors and the CRO
(`WORK_ROLES`); a trader or an auditor is refused with a message naming their role. A plain string
actor is the system (the headless `reconcile` job, a seed).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from models import schema as S
from services import audit
from services.auth import ROLE_LABELS, User
from services.recon import ReconResult, age_status
from services.store import Store

STATES = ("open", "assigned", "investigating", "resolved")
WORK_ROLES = ("operations", "risk_officer", "supervisor", "cro")  # may import files and work breaks
WHO_MAY = "Reconciliation and breaks are for " + ", ".join(ROLE_LABELS[r] for r in WORK_ROLES[:-1]) + \
    f" or {ROLE_LABELS[WORK_ROLES[-1]]}"


class BreakError(ValueError):
    """A break action that is not allowed; the message says why."""


def may_work(user: User) -> bool:
    return user.role in WORK_ROLES


def actor(user: User | str, what: str) -> str:
    """The login acting, or `BreakError` naming the user's role when it may not ``what``."""
    if isinstance(user, User):
        if not may_work(user):
            raise BreakError(f"{user.login} ({user.role_label}) may not {what}: {WHO_MAY[0].lower()}{WHO_MAY[1:]}")
        return user.login
    return str(user)


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_breaks(store: Store, result: ReconResult, ours: str | Path, theirs: str | Path,
                  as_of: date | None = None, user: User | str = "system") -> tuple[int, bool]:
    """(import id, True when new). The same files for the same day again: nothing changes."""
    user = actor(user, "record reconciliation imports")
    as_of = as_of or date.today()
    now = datetime.now(UTC)
    so, st = sha256(ours), sha256(theirs)
    t = S.recon_breaks
    with store.begin() as conn:
        old = conn.execute(select(S.recon_imports.c.id).where(
            S.recon_imports.c.kind == result.kind, S.recon_imports.c.ours_sha256 == so,
            S.recon_imports.c.theirs_sha256 == st, S.recon_imports.c.as_of == as_of)).first()
        if old is not None:
            return int(old.id), False
        imp = int(conn.execute(insert(S.recon_imports).values(
            kind=result.kind, ours_sha256=so, theirs_sha256=st, as_of=as_of, imported_by=user, imported_at=now,
            matched=result.matched, auto_resolved=result.auto_resolved, breaks=len(result.breaks))
            .returning(S.recon_imports.c.id)).scalar_one())
        open_rows = {(r.key, r.type, r.field): int(r.id) for r in conn.execute(
            select(t.c.id, t.c.key, t.c.type, t.c.field).where(t.c.kind == result.kind, t.c.status != "resolved"))}
        seen: set[int] = set()
        new_rows = []
        for b in result.breaks:
            k = (b["key"], b["type"], b["field"])
            values = {"ours": None if b["ours"] is None else str(b["ours"]),
                      "theirs": None if b["theirs"] is None else str(b["theirs"]),
                      "difference": b["difference"] if isinstance(b["difference"], int | float) else None}
            if k in open_rows:
                seen.add(open_rows[k])
                conn.execute(update(t).where(t.c.id == open_rows[k]).values(last_seen=now, **values))
            else:  # the age is recomputed from the item's date whenever breaks are read
                new_rows.append({"kind": result.kind, "key": b["key"], "type": b["type"], "field": b["field"],
                                 "item_date": _item_date(as_of, b["age_days"]),
                                 "first_seen": now, "last_seen": now, **values})
        if new_rows:
            conn.execute(insert(t), new_rows)
        gone = [i for i in open_rows.values() if i not in seen]
        if gone:
            conn.execute(update(t).where(t.c.id.in_(gone)).values(
                status="resolved", resolution=f"matched in import #{imp}", resolved_by=user, resolved_at=now,
                version=t.c.version + 1))
        audit.append(conn, store.kind, user, "import", "recon_imports", str(imp),
                     after=f"{result.kind} {as_of.isoformat()}: {result.matched} matched, {result.auto_resolved} "
                     f"auto-resolved, {len(result.breaks)} breaks ({len(new_rows)} new, {len(gone)} resolved)")
    return imp, True


def _item_date(as_of: date, age: int) -> date:
    """The business day ``age`` trading days before ``as_of`` (the item's date as the recon aged it)."""
    import numpy as np

    from services.calendar import TradingCalendar, shipped_holidays

    cal = TradingCalendar(d for d, _ in shipped_holidays())
    d = np.busday_offset(np.datetime64(as_of, "D"), -age, roll="backward", holidays=cal.holidays)
    return d.astype(date)  # type: ignore[no-any-return]


def breaks(store: Store, status: str | None = None, as_of: date | None = None,
           resolved_since: datetime | None = None, resolved_limit: int | None = None) -> list[dict[str, Any]]:
    """Breaks with their age in business days and escalation status (today by default).

    ``resolved_since`` / ``resolved_limit`` keep every unresolved break but only the resolved ones
    resolved since then, at most that many, the most recently resolved first (the dock's view)."""
    import numpy as np

    from services.calendar import TradingCalendar, shipped_holidays

    t = S.recon_breaks
    q = select(t).order_by(t.c.item_date, t.c.id)
    if status == "unresolved" or (status is None and (resolved_since or resolved_limit)):
        q = q.where(t.c.status != "resolved")
    elif status:
        q = q.where(t.c.status == status)
    with store.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
        if status is None and (resolved_since or resolved_limit):
            rq = select(t).where(t.c.status == "resolved").order_by(t.c.resolved_at.desc(), t.c.id.desc())
            if resolved_since is not None:
                rq = rq.where(t.c.resolved_at >= resolved_since)
            if resolved_limit is not None:
                rq = rq.limit(resolved_limit)
            rows += [dict(r._mapping) for r in conn.execute(rq)]
            rows.sort(key=lambda r: (r["item_date"], r["id"]))
    if not rows:
        return []
    cal = TradingCalendar(d for d, _ in shipped_holidays())
    days = np.array([r["item_date"] for r in rows], dtype="datetime64[D]")
    ages = np.maximum(0, cal.business_days_between(days, np.datetime64(as_of or date.today(), "D")))
    for r, a in zip(rows, ages.tolist(), strict=True):
        r["age_days"] = int(a)
        r["escalation"] = age_status(int(a))
    return rows


def _move(store: Store, break_id: int, user: User | str, allowed: tuple[str, ...], **values: Any) -> None:
    login = actor(user, "work reconciliation breaks")
    t = S.recon_breaks
    with store.begin() as conn:
        r = conn.execute(select(t.c.status).where(t.c.id == break_id)).first()
        if r is None:
            raise BreakError(f"break {break_id} does not exist")
        if r.status not in allowed:
            raise BreakError(f"break {break_id} is {r.status}")
        conn.execute(update(t).where(t.c.id == break_id).values(version=t.c.version + 1, **values))
        audit.append(conn, store.kind, login, str(values["status"]), "recon_breaks", str(break_id), before=r.status,
                     after=", ".join(f"{k}={v}" for k, v in values.items() if k in ("status", "assignee", "root_cause")))


def assign(store: Store, break_id: int, assignee: str, user: User | str) -> None:
    if not assignee.strip():
        raise BreakError("name who the break is assigned to")
    _move(store, break_id, user, ("open", "assigned", "investigating"), status="assigned", assignee=assignee.strip())


def investigate(store: Store, break_id: int, user: User | str) -> None:
    _move(store, break_id, user, ("open", "assigned"), status="investigating")


def resolve(store: Store, break_id: int, user: User | str, root_cause: str, resolution: str) -> None:
    login = actor(user, "work reconciliation breaks")
    if not root_cause.strip():
        raise BreakError("a resolved break needs its root cause")
    _move(store, break_id, user, ("open", "assigned", "investigating"), status="resolved",
          root_cause=root_cause.strip(), resolution=resolution.strip(), resolved_by=login,
          resolved_at=datetime.now(UTC))
