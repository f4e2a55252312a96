"""What the Lists dock shows and checks, without Qt: the blacklist, client groups and stock groups read in
one task with the pending change requests on them, the inline checks of the dock's forms, and the
insert request for a new blacklist row. SQLAlchemy and the change-request service load inside the
task functions, so the dock can import this before the store is open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.auth import User
    from services.store import Store

TAGS = ("Credit", "Asset Transfer")
GROUP_KINDS = {  # tab key -> (request kind, member column, what a member is)
    "client": ("client_group_member", "account_id", "account"),
    "stock": ("stock_group_member", "security_id", "security"),
}


@dataclass
class ListsSnapshot:
    """Everything the dock shows, read in one task."""

    blacklist: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "client"/"stock" -> groups
    members: dict[str, dict[int, list[dict[str, Any]]]] = field(default_factory=dict)  # kind -> group -> rows
    accounts: dict[str, int] = field(default_factory=dict)  # code -> id
    clients: dict[str, int] = field(default_factory=dict)
    securities: dict[str, int] = field(default_factory=dict)
    may_request: dict[str, bool] = field(default_factory=dict)


def load_lists(store: Store, user: User) -> ListsSnapshot:
    """Blacklist, groups with members, codes and the pending requests on them (task function)."""
    from sqlalchemy import text

    from services import changes
    from services.auth import permitted

    snap = ListsSnapshot()
    with store.begin() as conn:
        snap.accounts = {r.code: int(r.id) for r in conn.execute(text("select id, code from accounts"))}
        snap.clients = {r.code: int(r.id) for r in conn.execute(text("select id, code from clients"))}
        snap.securities = {r.code: int(r.id) for r in conn.execute(text("select id, code from securities"))}
        acc_info = {int(r.id): (r.code, r.name or "", r.type) for r in conn.execute(text(
            "select a.id, a.code, a.type, c.name from accounts a join clients c on c.id = a.client_id"))}
        client_code = {v: k for k, v in snap.clients.items()}
        sec_info = {int(r.id): (r.code, r.name or "", r.market) for r in conn.execute(text(
            "select id, code, name, market from securities"))}
        bl = [dict(r._mapping) for r in conn.execute(text(
            "select id, account_id, client_id, tag, enabled, remark from blacklist order by id"))]
        groups = {
            "client": [dict(r._mapping) for r in conn.execute(text("select id, name from client_groups order by name"))],
            "stock": [dict(r._mapping) for r in conn.execute(text("select id, name from stock_groups order by name"))],
        }
        member_rows = {
            "client": [(int(r[0]), int(r[1])) for r in conn.execute(text(
                "select group_id, account_id from client_group_members"))],
            "stock": [(int(r[0]), int(r[1])) for r in conn.execute(text(
                "select group_id, security_id from stock_group_members"))],
        }
    pending = [r for r in changes.listing(store, status="pending")
               if r.kind in ("blacklist", "client_group_member", "stock_group_member")]

    def subject(account_id: Any, client_id: Any) -> tuple[str, str]:
        if account_id is not None:
            return "Account", acc_info.get(int(account_id), (f"#{account_id}",))[0]
        return "Client", client_code.get(int(client_id), f"#{client_id}")

    bl_pending: dict[int, tuple[int, str]] = {}
    for req in reversed(pending):  # oldest first, so the newest request wins
        if req.kind == "blacklist" and "id" in req.target_key:
            bl_pending[int(req.target_key["id"])] = (req.id, req.op)
    for r in bl:
        r["subject_kind"], r["subject"] = subject(r["account_id"], r["client_id"])
        r["enabled"] = bool(r["enabled"])
        p = bl_pending.pop(int(r["id"]), None)
        r["pending_id"] = p[0] if p else None
        r["pending"] = f"request #{p[0]} pending ({'disable' if r['enabled'] else 'enable'})" if p and p[1] == "update" \
            else (f"request #{p[0]} pending (delete)" if p else "")
    for req in pending:  # pending inserts: a row of their own
        if req.kind == "blacklist" and req.op == "insert" and int(req.target_key.get("id", -1)) in bl_pending:
            a = req.after
            kind, code = subject(a.get("account_id"), a.get("client_id"))
            bl.append({"id": int(req.target_key["id"]), "account_id": a.get("account_id"),
                       "client_id": a.get("client_id"), "tag": a.get("tag", ""), "enabled": bool(a.get("enabled", True)),
                       "remark": a.get("remark", ""), "subject_kind": kind, "subject": code, "new": True,
                       "pending_id": req.id, "pending": f"request #{req.id} pending (new)"})
    for r in bl:
        r["enabled_text"] = "Yes" if r["enabled"] else "No"
        r["subject_text"] = f"{r['subject']} ({r['subject_kind'].lower()})"
    snap.blacklist = bl

    for gk, (kind, col, _what) in GROUP_KINDS.items():
        info = acc_info if gk == "client" else sec_info
        by_group: dict[int, dict[int, dict[str, Any]]] = {int(g["id"]): {} for g in groups[gk]}

        def row(mid: int, info: dict[int, tuple[str, str, str]] = info) -> dict[str, Any]:
            code, name, extra = info.get(mid, (f"#{mid}", "", ""))
            return {"id": mid, "code": code, "name": name, "extra": extra, "pending": "", "pending_id": None,
                    "member": True}

        for gid, mid in member_rows[gk]:
            by_group.setdefault(gid, {})[mid] = row(mid)
        for req in reversed(pending):
            if req.kind != kind or "group_id" not in req.target_key:
                continue
            gid, mid = int(req.target_key["group_id"]), int(req.target_key[col])
            rows = by_group.setdefault(gid, {})
            if mid not in rows:
                rows[mid] = {**row(mid), "member": False}
            rows[mid]["pending_id"] = req.id
            rows[mid]["pending"] = f"request #{req.id} pending ({'add' if req.op == 'insert' else 'remove'})"
        snap.members[gk] = {gid: sorted(members.values(), key=lambda r: r["code"])
                            for gid, members in by_group.items()}
        for g in groups[gk]:
            listed = snap.members[gk].get(int(g["id"]), [])
            g["members"] = sum(1 for r in listed if r["member"])
            n = sum(1 for r in listed if r["pending_id"])
            g["pending"] = f"{n} pending" if n else ""
        snap.groups[gk] = groups[gk]
        snap.may_request[kind] = permitted(store, user, "request", kind)
    snap.may_request["blacklist"] = permitted(store, user, "request", "blacklist")
    return snap


def validate_blacklist_add(snap: ListsSnapshot | None, subject_kind: str, code: str, tag: str,
                           reason: str) -> tuple[dict[str, Any] | None, str]:
    """(the new row's values, "") for an acceptable blacklist entry, else (None, why not)."""
    code = code.strip().upper()
    if snap is None:
        return None, "Loading…"
    if not code:
        return None, ""
    codes = snap.accounts if subject_kind == "Account" else snap.clients
    if code not in codes:
        return None, f"Unknown {subject_kind.lower()} “{code}”."
    if tag not in TAGS:
        return None, f"Tag must be one of {', '.join(TAGS)}."
    col = "account_id" if subject_kind == "Account" else "client_id"
    for r in snap.blacklist:
        if r.get(col) is not None and int(r[col]) == codes[code] and r["tag"] == tag:
            what = r["pending"] or ("enabled" if r["enabled"] else "disabled")
            return None, f"{code} already has a {tag} blacklist entry ({what})."
    if not reason.strip():
        return None, "Give a reason: the checker decides on it."
    return {col: codes[code], "tag": tag, "enabled": True}, ""


def validate_member(snap: ListsSnapshot | None, gk: str, group_id: int | None, code: str,
                    reason: str) -> tuple[int | None, str]:
    """(the member's id, "") when ``code`` may be added to the group, else (None, why not)."""
    what = GROUP_KINDS[gk][2]
    code = code.strip().upper()
    if snap is None:
        return None, "Loading…"
    if group_id is None:
        return None, "Select a group."
    if not code:
        return None, ""
    codes = snap.accounts if gk == "client" else snap.securities
    if code not in codes:
        return None, f"Unknown {what} “{code}”."
    mid = codes[code]
    for r in snap.members.get(gk, {}).get(group_id, []):
        if r["id"] == mid:
            name = next((g["name"] for g in snap.groups.get(gk, []) if int(g["id"]) == group_id), "the group")
            if r["member"]:
                return None, f"{what.capitalize()} {code} is already in {name}."
            return None, f"{r['pending']} already adds {code} to {name}."
    if not reason.strip():
        return None, "Give a reason: the checker decides on it."
    return mid, ""


def submit_blacklist_insert(store: Store, user: User, after: dict[str, Any], reason: str,
                            context: dict[str, Any]) -> int:
    """An insert request for a new blacklist row, its id above every used or promised one (task)."""
    from services import changes

    with store.begin() as conn:
        new_id = changes.insert_id_floor(conn, "blacklist") + 1
    return changes.submit(store, user, "blacklist", {"id": new_id}, after, reason, op="insert", context=context)
