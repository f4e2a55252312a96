"""Collateral haircuts (issue 4, "Haircuts"): per security and per index (the SFC test's haircut for an
index's members), each changed only through a four-eyes change request, with the modification
records of every security and index.

A security's haircut is an update of its `haircuts` row; an index's is an insert of its
`index_haircuts` row the first time and an update afterwards. One request waits on a target at a
time: a second one is refused with the number of the first, so two approvals can never race on one
row. Everything here runs in a worker (the docks call it through the task runner).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from services import changes
from services.auth import User, permitted
from services.change_kinds import INDEX_KIND, SECURITY_KIND
from services.store import Store


@dataclass
class HaircutsSnapshot:
    """What one background read of the haircuts dock delivers (rows are plain dicts keyed by ``id``)."""

    securities: list[dict[str, Any]]
    indices: list[dict[str, Any]]
    may_request: bool
    may_request_index: bool = False
    # target id → its haircut change requests, newest first (the modification records)
    security_records: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    index_records: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def validate_haircut(text_: str) -> tuple[float | None, str]:
    """(the haircut, "") when ``text_`` is a number in [0, 1], else (None, why not)."""
    t = text_.strip()
    if not t:
        return None, "Enter the new haircut."
    try:
        v = float(t)
    except ValueError:
        return None, f"Haircut “{t}” is not a number."
    if not math.isfinite(v) or not 0 <= v <= 1:
        return None, "A haircut lies between 0 and 1 (e.g. 0.3)."
    return v, ""


def _check(haircut: float) -> float:
    value, why = validate_haircut(str(haircut))
    if value is None:
        raise changes.ChangeError(why.rstrip("."))
    return value


def _record(req: changes.ChangeRequest) -> dict[str, Any]:
    """One modification record as the dock lists it."""
    before, after = req.before.get("haircut"), req.after.get("haircut")
    return {"id": req.id, "request": f"#{req.id}", "op": req.op, "status": req.status, "maker": req.maker,
            "checker": req.checker or "", "before": before, "after": after,
            "change": f"{_fmt(before)} → {_fmt(after)}", "created_at": req.created_at,
            "decided_at": req.decided_at, "reason": req.reason}


def _fmt(v: Any) -> str:
    return "none" if v is None else f"{float(v):g}"


def modification_records(store: Store, kind: str, key: str) -> dict[int, list[dict[str, Any]]]:
    """Every change request of ``kind``, grouped by the target's ``key`` (security_id / index_id),
    newest first: maker, checker, before → after, status and times."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for req in changes.listing(store, kind=kind, limit=1_000_000):
        if key in req.target_key:
            out[int(req.target_key[key])].append(_record(req))
    return dict(out)


def _pending(records: dict[int, list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    return {t: next(r for r in recs if r["status"] == "pending") for t, recs in records.items()
            if any(r["status"] == "pending" for r in recs)}


def _request_text(p: dict[str, Any] | None) -> tuple[int | None, str]:
    if p is None:
        return None, ""
    return int(p["id"]), f"request #{p['id']} pending → {_fmt(p['after'])}"


def security_haircuts(store: Store, records: dict[int, list[dict[str, Any]]] | None = None
                      ) -> list[dict[str, Any]]:
    """Every security with its haircut, suspension and pending haircut request."""
    with store.begin() as conn:
        raw = conn.execute(text(
            "select s.id, s.code, s.name, s.level, s.suspended, h.haircut, h.effective_from "
            "from securities s left join haircuts h on h.security_id = s.id order by s.id")).all()
    pending = _pending(records if records is not None else modification_records(store, SECURITY_KIND,
                                                                                  "security_id"))
    rows = []
    for r in raw:
        rid, request = _request_text(pending.get(int(r.id)))
        rows.append({"id": int(r.id), "code": r.code, "name": r.name, "level": int(r.level),
                     "haircut": None if r.haircut is None else float(r.haircut),
                     "effective_from": r.effective_from, "suspended": "suspended" if r.suspended else "",
                     "request_id": rid, "request": request})
    return rows


def index_haircuts(store: Store, records: dict[int, list[dict[str, Any]]] | None = None
                   ) -> list[dict[str, Any]]:
    """Every index: code, name, market, level, member count, haircut (None when it has none) and the
    pending request on it."""
    with store.begin() as conn:
        raw = conn.execute(text(
            "select i.id, i.code, i.name, i.market, i.level, "
            "(select count(*) from index_members m where m.index_id = i.id) as members, "
            "h.haircut, h.effective_from from indices i left join index_haircuts h on h.index_id = i.id "
            "order by i.id")).all()
    pending = _pending(records if records is not None else modification_records(store, INDEX_KIND, "index_id"))
    rows = []
    for r in raw:
        rid, request = _request_text(pending.get(int(r.id)))
        rows.append({"id": int(r.id), "code": r.code, "name": r.name, "market": r.market, "level": int(r.level),
                     "members": int(r.members), "haircut": None if r.haircut is None else float(r.haircut),
                     "effective_from": r.effective_from, "request_id": rid, "request": request})
    return rows


def load_haircuts(store: Store, user: User) -> HaircutsSnapshot:
    """Both tables, their pending requests and modification records, and what the user may do."""
    sec_records = modification_records(store, SECURITY_KIND, "security_id")
    idx_records = modification_records(store, INDEX_KIND, "index_id")
    return HaircutsSnapshot(security_haircuts(store, sec_records), index_haircuts(store, idx_records),
                            permitted(store, user, "request", SECURITY_KIND),
                            permitted(store, user, "request", INDEX_KIND), sec_records, idx_records)


def _refuse_if_pending(store: Store, kind: str, key: str, target: int, what: str) -> None:
    for req in changes.listing(store, status="pending", kind=kind, limit=1_000_000):
        if int(req.target_key.get(key, -1)) == target:
            raise changes.ChangeError(f"{what} already has change request #{req.id} pending: "
                                      "wait for its decision or ask the maker to cancel it")


def submit_haircut(store: Store, user: User, security_id: int, haircut: float, reason: str,
                   code: str = "") -> int:
    """An update request for the security's haircut; its id."""
    value = _check(haircut)
    _refuse_if_pending(store, SECURITY_KIND, "security_id", security_id, code or f"security {security_id}")
    return changes.submit(store, user, SECURITY_KIND, {"security_id": security_id}, {"haircut": value}, reason,
                          context={"security": code} if code else None)


def submit_index_haircut(store: Store, user: User, index_id: int, haircut: float, reason: str) -> int:
    """A request for the index's haircut (0..1): an insert when the index has none yet, else an update."""
    value = _check(haircut)
    with store.begin() as conn:
        idx = conn.execute(text("select code from indices where id = :i"), {"i": index_id}).first()
        has = conn.execute(text("select 1 from index_haircuts where index_id = :i"), {"i": index_id}).first()
    if idx is None:
        raise changes.ChangeError(f"index {index_id} does not exist")
    _refuse_if_pending(store, INDEX_KIND, "index_id", index_id, f"index {idx.code}")
    return changes.submit(store, user, INDEX_KIND, {"index_id": index_id}, {"haircut": value}, reason,
                          op="update" if has is not None else "insert", context={"index": idx.code})
