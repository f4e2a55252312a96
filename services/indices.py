"""Index levels and stock-index membership (issue 6, "Index management"; RISK_METHODS §4).

A security's stock level is derived, never typed: the lowest level of any index that holds it, and
level 3 when no index does (once the store has any index; a store without indices keeps the levels
it was given). So the only things a user changes are the indices (code, name, market, level) and
their members, and each change is a four-eyes change request — kind ``index`` for the index rows,
``index_member`` for membership — applied when a checker approves it.

"Initialise" proposes the presets of ``resources/indices.json`` (the main Hong Kong and US indices
with their levels) that the store does not have yet, as insert requests in one transaction; an index
that exists — a preset edited by the desk or one the desk added — is never touched, and a preset
already waiting as a pending insert is not proposed twice, so initialising again is harmless.

Plain Python over the store (no Qt): the indices dock calls everything here through its task runner.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from models.book import INDEX_LEVELS
from services import changes
from services.auth import User, permitted
from services.store import Store

INDEX_KIND = "index"
MEMBER_KIND = "index_member"
LEVELS = INDEX_LEVELS
NO_INDEX_LEVEL = 3
PRESETS_PATH = Path(__file__).resolve().parent.parent / "resources" / "indices.json"
INITIALISE_REASON = "Initialise the index presets (main Hong Kong and US indices and their levels)"
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,31}$")
_MARKET = re.compile(r"^[A-Z]{2,8}$")


@dataclass(frozen=True)
class IndexPreset:
    code: str
    name: str
    market: str
    level: int

    def row(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "market": self.market, "level": self.level, "preset": True}


# ---------------------------------------------------------------------- validation
def validate_index(code: str, name: str, market: str, level: Any) -> tuple[dict[str, Any] | None, str]:
    """(the index row's values, "") when acceptable, else (None, why not) — the dock's inline check."""
    code, name, market = code.strip().upper(), name.strip(), market.strip().upper()
    if not code:
        return None, "Enter the index code (e.g. HSI)."
    if not _CODE.match(code):
        return None, f"Index code “{code}”: letters, digits, . _ - only, at most 32."
    if not name:
        return None, "Enter the index name."
    if len(name) > 128:
        return None, "The index name has at most 128 characters."
    if not _MARKET.match(market):
        return None, f"Market “{market}”: a market code such as HK or US."
    try:
        lv = int(str(level).strip())
    except ValueError:
        lv = 0
    if lv not in LEVELS:
        return None, f"Level must be 1, 2 or 3, got “{level}”."
    return {"code": code, "name": name, "market": market, "level": lv}, ""


def load_presets(path: str | Path | None = None) -> list[IndexPreset]:
    """The presets file; a bad entry is refused with its path (``indices[3].level``)."""
    p = Path(path) if path is not None else PRESETS_PATH
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read {p}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON: {e}") from None
    raw = doc.get("indices") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        raise ValueError(f"{p.name}: indices: must be a list")
    out: list[IndexPreset] = []
    seen: set[str] = set()
    for i, r in enumerate(raw):
        if not isinstance(r, dict):
            raise ValueError(f"{p.name}: indices[{i}]: must be an object")
        level = r.get("level")
        if isinstance(level, bool) or level not in LEVELS:
            raise ValueError(f"{p.name}: indices[{i}].level: must be 1, 2 or 3, got {level!r}")
        values, why = validate_index(str(r.get("code", "")), str(r.get("name", "")), str(r.get("market", "")),
                                     level)
        if values is None:
            raise ValueError(f"{p.name}: indices[{i}]: {why}")
        if values["code"] in seen:
            raise ValueError(f"{p.name}: indices[{i}].code: {values['code']} is listed twice")
        seen.add(values["code"])
        out.append(IndexPreset(values["code"], values["name"], values["market"], values["level"]))
    return out


# ---------------------------------------------------------------------- reading
def _pending(store: Store, kind: str) -> list[changes.ChangeRequest]:
    """Pending requests of ``kind``, oldest first."""
    return list(reversed(changes.listing(store, status="pending", kind=kind, limit=1_000_000)))


def _pending_in(conn: Connection, kind: str) -> list[dict[str, Any]]:
    rows = conn.execute(text("select id, op, target_key, after from change_requests "
                             "where status = 'pending' and kind = :k order by id"), {"k": kind}).all()
    return [{"id": int(r.id), "op": r.op, "key": json.loads(r.target_key), "after": json.loads(r.after)}
            for r in rows]


def derived_levels(conn: Connection) -> dict[int, int]:
    """Security id → its stock level as the book loader derives it (RISK_METHODS §4)."""
    secs = conn.execute(text("select id, level from securities")).all()
    if conn.execute(text("select 1 from indices limit 1")).first() is None:
        return {int(r.id): int(r.level) for r in secs}
    low: dict[int, int] = {int(s): int(lv) for s, lv in conn.execute(text(
        "select m.security_id, min(i.level) from index_members m join indices i on i.id = m.index_id "
        "group by m.security_id")).all()}
    return {int(r.id): low.get(int(r.id), NO_INDEX_LEVEL) for r in secs}


def _missing(conn: Connection, presets: list[IndexPreset]) -> list[IndexPreset]:
    have = {str(c).upper() for c in conn.execute(text("select code from indices")).scalars()}
    promised = {str(p["after"].get("code", "")).upper() for p in _pending_in(conn, INDEX_KIND) if p["op"] == "insert"}
    return [p for p in presets if p.code not in have and p.code not in promised]


def missing_presets(store: Store, presets: list[IndexPreset] | None = None) -> list[IndexPreset]:
    """The presets neither in the store nor waiting as a pending insert request."""
    with store.begin() as conn:
        return _missing(conn, presets if presets is not None else load_presets())


@dataclass
class IndicesSnapshot:
    """Everything the indices dock shows, read in one task (rows are plain dicts keyed by ``id``)."""

    indices: list[dict[str, Any]] = field(default_factory=list)
    members: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # index id → member rows
    securities: list[dict[str, Any]] = field(default_factory=list)
    security_ids: dict[str, int] = field(default_factory=dict)  # code → id
    missing_presets: list[str] = field(default_factory=list)
    may_request_index: bool = False
    may_request_member: bool = False


def _request_text(req_id: int, op: str) -> str:
    what = {"insert": "new", "update": "edit", "delete": "delete"}.get(op, op)
    return f"request #{req_id} pending ({what})"


def load_indices(store: Store, user: User, presets: list[IndexPreset] | None = None) -> IndicesSnapshot:
    """Indices with their pending requests, members of each, every security with its derived level."""
    presets = presets if presets is not None else load_presets()
    snap = IndicesSnapshot()
    with store.begin() as conn:
        idx = [dict(r._mapping) for r in conn.execute(text(
            "select i.id, i.code, i.name, i.market, i.level, i.preset, "
            "(select count(*) from index_members m where m.index_id = i.id) as members "
            "from indices i order by i.code")).all()]
        secs = conn.execute(text("select id, code, name, market from securities order by code")).all()
        member_rows = conn.execute(text("select index_id, security_id from index_members")).all()
        levels = derived_levels(conn)
        snap.missing_presets = [p.code for p in _missing(conn, presets)]
    sec_info = {int(r.id): (r.code, r.name or "", r.market) for r in secs}
    snap.security_ids = {r.code: int(r.id) for r in secs}
    idx_pending = {int(r.target_key["id"]): r for r in _pending(store, INDEX_KIND) if "id" in r.target_key}
    for r in idx:
        r["preset"] = bool(r["preset"])
        r["members"] = int(r["members"])
        req = idx_pending.pop(int(r["id"]), None)
        r["request_id"] = req.id if req else None
        r["request"] = _request_text(req.id, req.op) if req else ""
        r["new"] = False
    for req in idx_pending.values():  # a pending insert: a row of its own, marked new
        if req.op == "insert":
            a = req.after
            idx.append({"id": int(req.target_key["id"]), "code": a.get("code", ""), "name": a.get("name", ""),
                        "market": a.get("market", ""), "level": int(a.get("level", 3)),
                        "preset": bool(a.get("preset", False)), "members": 0, "request_id": req.id,
                        "request": _request_text(req.id, "insert"), "new": True})
    for r in idx:
        r["preset_text"] = "preset" if r["preset"] else "user"
    snap.indices = idx
    codes_of: dict[int, list[str]] = defaultdict(list)
    index_code = {int(r["id"]): r["code"] for r in idx}
    by_index: dict[int, dict[int, dict[str, Any]]] = {int(r["id"]): {} for r in idx}

    def member_row(sid: int) -> dict[str, Any]:
        code, name, market = sec_info.get(sid, (f"#{sid}", "", ""))
        return {"id": sid, "code": code, "name": name, "market": market, "level": levels.get(sid, NO_INDEX_LEVEL),
                "member": True, "request_id": None, "request": ""}

    for iid, sid in member_rows:
        by_index.setdefault(int(iid), {})[int(sid)] = member_row(int(sid))
        codes_of[int(sid)].append(index_code.get(int(iid), f"#{iid}"))
    pending_members: dict[int, int] = defaultdict(int)
    for req in _pending(store, MEMBER_KIND):
        iid, sid = int(req.target_key.get("index_id", -1)), int(req.target_key.get("security_id", -1))
        rows = by_index.setdefault(iid, {})
        if sid not in rows:
            rows[sid] = {**member_row(sid), "member": False}
        rows[sid]["request_id"] = req.id
        rows[sid]["request"] = f"request #{req.id} pending ({'add' if req.op == 'insert' else 'remove'})"
        pending_members[sid] += 1
    snap.members = {iid: sorted(rows.values(), key=lambda m: m["code"]) for iid, rows in by_index.items()}
    for r in idx:
        n = sum(1 for m in snap.members.get(int(r["id"]), []) if m["request_id"])
        r["member_requests"] = f"{n} pending" if n else ""
    snap.securities = [{"id": sid, "code": code, "name": name, "market": market,
                        "level": levels.get(sid, NO_INDEX_LEVEL), "indices": ", ".join(sorted(codes_of.get(sid, []))),
                        "request": f"{pending_members[sid]} membership request(s) pending"
                        if pending_members.get(sid) else ""}
                       for sid, (code, name, market) in sec_info.items()]
    snap.may_request_index = permitted(store, user, "request", INDEX_KIND)
    snap.may_request_member = permitted(store, user, "request", MEMBER_KIND)
    return snap


# ---------------------------------------------------------------------- requests
def _refuse_if_pending(conn: Connection, index_id: int, code: str) -> None:
    for p in _pending_in(conn, INDEX_KIND):
        if int(p["key"].get("id", -1)) == index_id:
            raise changes.ChangeError(f"index {code} already has change request #{p['id']} pending: "
                                      "wait for its decision or ask the maker to cancel it")


def _index(conn: Connection, index_id: int) -> Any:
    row = conn.execute(text("select id, code, name, market, level from indices where id = :i"),
                       {"i": index_id}).first()
    if row is None:
        raise changes.ChangeError(f"index {index_id} does not exist (a new index must be approved first)")
    return row


def initialise_presets(store: Store, user: User, reason: str = INITIALISE_REASON,
                       presets: list[IndexPreset] | None = None) -> list[int]:
    """Insert requests for the presets the store does not have (nor has pending), in one
    transaction; indices that exist are left exactly as they are. Returns the request ids."""
    presets = presets if presets is not None else load_presets()
    out: list[int] = []
    with store.begin() as conn:
        for p in _missing(conn, presets):
            new_id = changes.insert_id_floor(conn, "indices") + 1
            out.append(changes.submit(store, user, INDEX_KIND, {"id": new_id}, p.row(), reason, op="insert",
                                      context={"index": p.code, "preset": True}, conn=conn))
    return out


def submit_new_index(store: Store, user: User, code: str, name: str, market: str, level: Any,
                     reason: str) -> int:
    """An insert request for a user-added index (not a preset)."""
    values, why = validate_index(code, name, market, level)
    if values is None:
        raise changes.ChangeError(why.rstrip("."))
    with store.begin() as conn:
        if conn.execute(text("select 1 from indices where code = :c"), {"c": values["code"]}).first():
            raise changes.ChangeError(f"index {values['code']} already exists")
        for p in _pending_in(conn, INDEX_KIND):
            if p["op"] == "insert" and str(p["after"].get("code", "")).upper() == values["code"]:
                raise changes.ChangeError(f"index {values['code']} is already requested (request #{p['id']})")
        new_id = changes.insert_id_floor(conn, "indices") + 1
        return changes.submit(store, user, INDEX_KIND, {"id": new_id}, {**values, "preset": False}, reason,
                              op="insert", context={"index": values["code"]}, conn=conn)


def submit_index_update(store: Store, user: User, index_id: int, name: str, market: str, level: Any,
                        reason: str) -> int:
    """An update request for the index's name, market or level (only the fields that change)."""
    with store.begin() as conn:
        row = _index(conn, index_id)
        values, why = validate_index(row.code, name, market, level)
        if values is None:
            raise changes.ChangeError(why.rstrip("."))
        after = {k: values[k] for k in ("name", "market", "level") if values[k] != getattr(row, k)}
        if not after:
            raise changes.ChangeError(f"nothing to change: index {row.code} already has these values")
        _refuse_if_pending(conn, index_id, row.code)
        return changes.submit(store, user, INDEX_KIND, {"id": index_id}, after, reason,
                              context={"index": row.code}, conn=conn)


def submit_index_delete(store: Store, user: User, index_id: int, reason: str) -> int:
    """A delete request for the index (its membership goes with it once approved)."""
    with store.begin() as conn:
        row = _index(conn, index_id)
        _refuse_if_pending(conn, index_id, row.code)
        hc = conn.execute(text("select haircut from index_haircuts where index_id = :i"), {"i": index_id}).first()
        if hc is not None:
            raise changes.ChangeError(f"index {row.code} has an index haircut ({hc.haircut:g}) used by the SFC "
                                      "liquid-capital test: it cannot be deleted while the haircut exists")
        n = int(conn.execute(text("select count(*) from index_members where index_id = :i"),
                             {"i": index_id}).scalar() or 0)
        return changes.submit(store, user, INDEX_KIND, {"id": index_id}, {}, reason, op="delete",
                              context={"index": row.code, "members": n}, conn=conn)


def submit_member(store: Store, user: User, index_id: int, security_code: str, reason: str,
                  remove: bool = False) -> int:
    """A request adding the security to the index (or, ``remove``, taking it out)."""
    code = security_code.strip().upper()
    with store.begin() as conn:
        row = _index(conn, index_id)
        sec = conn.execute(text("select id from securities where upper(code) = :c"), {"c": code}).first()
        if sec is None:
            raise changes.ChangeError(f"unknown security {code!r}")
        key = {"index_id": index_id, "security_id": int(sec.id)}
        for p in _pending_in(conn, MEMBER_KIND):
            if p["key"] == key:
                raise changes.ChangeError(f"{code} in {row.code} already has change request #{p['id']} pending")
        is_member = conn.execute(text("select 1 from index_members where index_id = :i and security_id = :s"),
                                 {"i": index_id, "s": int(sec.id)}).first() is not None
        if remove and not is_member:
            raise changes.ChangeError(f"{code} is not in {row.code}")
        if not remove and is_member:
            raise changes.ChangeError(f"{code} is already in {row.code}")
        return changes.submit(store, user, MEMBER_KIND, key, {}, reason, op="delete" if remove else "insert",
                              context={"index": row.code, "security": code, "level": int(row.level)}, conn=conn)
