"""Credit groups (issue 4 "Credit"): a shared financing line for related accounts.

Creating a group, renaming it, changing its limit, adding or removing an account are four-eyes
change requests (kinds `credit_group` and `credit_group_member`); nothing here writes the credit
tables. The checks a maker sees inline (`group_name_problem`, `parse_group_limit`) are the same
ones the submit functions run again on the store before a request is written, so a name taken by
another workstation meanwhile, or already promised by a pending request, is refused with a message.

The `credit-groups` import kind (services.imports) uses `import_lookups`, `import_checks` and
`import_requests`: a row names a group, an account and (for a new group) the group limit; a new
group becomes an insert request, every row a member request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text

from services import changes
from services.auth import User
from services.changes import ChangeError
from services.store import Store

NAME_MAX = 64  # credit_groups.name is String(64)


# ---------------------------------------------------------------------- checks (pure)
def group_name_problem(name: str, taken: Iterable[str], own: str | None = None) -> str:
    """Why ``name`` cannot name a group ("" when it can). Names compare without case or outer spaces;
    ``own`` is the group's current name when renaming (keeping it is not a clash)."""
    n = name.strip()
    if not n:
        return "Give the group a name."
    if len(n) > NAME_MAX:
        return f"A group name has at most {NAME_MAX} characters ({len(n)} given)."
    folded = n.casefold()
    if own is not None and folded == own.strip().casefold():
        return ""
    if any(folded == t.strip().casefold() for t in taken):
        return f"A credit group named “{n}” already exists."
    return ""


def parse_group_limit(text_value: str) -> tuple[float | None, str]:
    """(amount, "") for an acceptable group limit (≥ 0, commas allowed), else (None, why not)."""
    t = text_value.strip().replace(",", "").replace("_", "")
    if not t:
        return None, "Enter the group limit."
    try:
        v = float(t)
    except ValueError:
        return None, f"“{text_value.strip()}” is not a number."
    if not math.isfinite(v):
        return None, "The group limit must be a finite number."
    if v < 0:
        return None, "A group limit must be ≥ 0."
    return v, ""


# ---------------------------------------------------------------------- store reads
def _names(conn: Connection) -> dict[str, int]:
    return {str(n): int(i) for i, n in conn.execute(text("select id, name from credit_groups"))}


def _pending_names(conn: Connection) -> dict[str, int]:
    """Group names promised by pending create/rename requests → the request id."""
    out: dict[str, int] = {}
    for rid, after in conn.execute(text(
            "select id, after from change_requests where status = 'pending' and kind = 'credit_group'")):
        name = json.loads(after or "{}").get("name")
        if name:
            out[str(name)] = int(rid)
    return out


def _check_name(conn: Connection, name: str, own_id: int | None = None) -> str:
    names = _names(conn)
    own = next((n for n, i in names.items() if i == own_id), None)
    why = group_name_problem(name, names, own)
    if why:
        raise ChangeError(why)
    folded = name.strip().casefold()
    for n, rid in _pending_names(conn).items():
        if n.strip().casefold() == folded and (own is None or folded != own.strip().casefold()):
            raise ChangeError(f"change request #{rid} already proposes a credit group named “{n.strip()}”")
    return name.strip()


def _group(conn: Connection, group_id: int) -> Any:
    row = conn.execute(text("select id, name, limit_amount from credit_groups where id = :i"),
                       {"i": group_id}).first()
    if row is None:
        raise ChangeError(f"credit group {group_id} does not exist (reload)")
    return row


def _account(conn: Connection, code: str) -> Any:
    row = conn.execute(text(
        "select a.id, a.code, a.type, a.closed, c.code as client, c.name as client_name, g.name as grp "
        "from accounts a join clients c on c.id = a.client_id "
        "left join credit_group_members m on m.account_id = a.id "
        "left join credit_groups g on g.id = m.group_id where a.code = :c"), {"c": code.strip()}).first()
    if row is None:
        raise ChangeError(f"unknown account {code.strip()!r}")
    return row


# ---------------------------------------------------------------------- change requests
def submit_new_group(store: Store, user: User, name: str, limit_amount: float, reason: str) -> int:
    """A `credit_group` insert request; the new id is above every id used or promised."""
    amount, why = parse_group_limit(str(limit_amount))
    if amount is None:
        raise ChangeError(why)
    with store.begin() as conn:
        clean = _check_name(conn, name)
        new_id = changes.insert_id_floor(conn, "credit_groups") + 1
        return changes.submit(store, user, "credit_group", {"id": new_id},
                              {"name": clean, "limit_amount": amount}, reason, op="insert", amount=amount,
                              context={"group": clean}, conn=conn)


def submit_group_change(store: Store, user: User, group_id: int, name: str, limit_amount: float,
                        reason: str) -> int:
    """A `credit_group` update request carrying only what changed (rename and/or new limit)."""
    amount, why = parse_group_limit(str(limit_amount))
    if amount is None:
        raise ChangeError(why)
    with store.begin() as conn:
        g = _group(conn, group_id)
        clean = _check_name(conn, name, own_id=group_id)
        after: dict[str, Any] = {}
        if clean != g.name:
            after["name"] = clean
        if amount != float(g.limit_amount):
            after["limit_amount"] = amount
        if not after:
            raise ChangeError(f"“{g.name}” already has that name and limit: nothing to change")
        return changes.submit(store, user, "credit_group", {"id": group_id}, after, reason, op="update",
                              amount=after.get("limit_amount"), context={"group": g.name}, conn=conn)


def submit_add_member(store: Store, user: User, group_id: int, account: str, reason: str) -> int:
    """A `credit_group_member` insert: the account's loan then counts toward the group's limit.

    Refused for unknown, closed or cash accounts, an account already in a group (one group per
    account), and an account a pending request already adds somewhere."""
    with store.begin() as conn:
        g = _group(conn, group_id)
        a = _account(conn, account)
        if a.closed:
            raise ChangeError(f"{a.code} is closed: it cannot join a credit group")
        if a.type == "cash":
            raise ChangeError(f"{a.code} is a cash account: only margin accounts share a credit line")
        if a.grp is not None:
            raise ChangeError(f"{a.code} is already in credit group “{a.grp}”"
                              + ("" if a.grp == g.name else ": remove it there first"))
        for rid, key in conn.execute(text(
                "select id, target_key from change_requests where status = 'pending' "
                "and kind = 'credit_group_member' and op = 'insert'")):
            if json.loads(key).get("account_id") == int(a.id):
                raise ChangeError(f"change request #{rid} already adds {a.code} to a credit group")
        return changes.submit(store, user, "credit_group_member", {"group_id": group_id, "account_id": int(a.id)},
                              {}, reason, op="insert",
                              context={"group": g.name, "account": a.code, "client_name": a.client_name}, conn=conn)


def submit_remove_member(store: Store, user: User, group_id: int, account: str, reason: str) -> int:
    """A `credit_group_member` delete: the account leaves the group (its own limit is unchanged)."""
    with store.begin() as conn:
        g = _group(conn, group_id)
        a = _account(conn, account)
        if a.grp != g.name:
            raise ChangeError(f"{a.code} is not a member of “{g.name}”")
        return changes.submit(store, user, "credit_group_member", {"group_id": group_id, "account_id": int(a.id)},
                              {}, reason, op="delete",
                              context={"group": g.name, "account": a.code, "client_name": a.client_name}, conn=conn)


# ---------------------------------------------------------------------- the credit-groups import kind
def import_lookups(conn: Connection) -> dict[str, Any]:
    """What the credit-groups rows are checked against, plus per-file state (`file_groups`)."""
    groups = {str(n): (int(i), float(lim)) for i, n, lim in conn.execute(text(
        "select id, name, limit_amount from credit_groups"))}
    members = {int(a): str(n) for a, n in conn.execute(text(
        "select m.account_id, g.name from credit_group_members m join credit_groups g on g.id = m.group_id"))}
    cash = {int(i) for (i,) in conn.execute(text("select id from accounts where type = 'cash'"))}
    return {"credit_groups": groups, "credit_members": members, "cash_accounts": cash,
            "credit_group_floor": changes.insert_id_floor(conn, "credit_groups"),
            "file_groups": {}, "new_group_ids": {}, "limit_requested": set()}


def import_checks(r: dict[str, Any], lk: dict[str, Any]) -> list[tuple[str, str]]:
    """Row checks that need the store: the group's name and limit, the account's current group."""
    name, limit = r["group_name"], r.get("group_limit")
    acct_id = lk["acct"][r["account"]]
    out: list[tuple[str, str]] = []
    if len(name) > NAME_MAX:
        out.append(("group_name", f"a group name has at most {NAME_MAX} characters"))
    existing = next((n for n in lk["credit_groups"] if n.casefold() == name.casefold()), None)
    if existing is not None and existing != name:
        out.append(("group_name", f"write the existing group's name exactly: “{existing}”"))
    if acct_id in lk["cash_accounts"]:
        out.append(("account", f"{r['account']} is a cash account: only margin accounts share a credit line"))
    current = lk["credit_members"].get(acct_id)
    if current is not None:
        out.append(("account", f"{r['account']} is already in credit group “{current}”"
                               + ("" if current == name else ": remove it there first")))
    key = name.casefold()
    spelling, first = lk["file_groups"].get(key, (None, None))
    if spelling is not None and spelling != name:
        out.append(("group_name", f"spell the group as on its earlier row: “{spelling}”"))
    if spelling is None and existing is None and limit is None:
        out.append(("group_limit", f"“{name}” is a new group: give its limit (on its first row)"))
    if limit is not None and first is not None and limit != first:
        out.append(("group_limit", f"differs from {first:,.2f} given for “{name}” on an earlier row"))
    if not out and (spelling is None or first is None):
        lk["file_groups"][key] = (name, limit if first is None else first)
    return out


def import_requests(r: dict[str, Any], lk: dict[str, Any]) -> list[dict[str, Any]]:
    """Change requests for one valid row: the group's insert (first row of a new group) or limit update
    (an existing group given a different limit), then the member insert."""
    name, limit, acct_id = r["group_name"], r.get("group_limit"), lk["acct"][r["account"]]
    out: list[dict[str, Any]] = []
    if name in lk["credit_groups"]:
        group_id, current = lk["credit_groups"][name]
        if limit is not None and limit != current and name not in lk["limit_requested"]:
            lk["limit_requested"].add(name)
            out.append({"kind": "credit_group", "key": {"id": group_id}, "after": {"limit_amount": limit},
                        "op": "update", "amount": limit, "context": {"group": name}})
        new = False
    elif name in lk["new_group_ids"]:
        group_id, new = lk["new_group_ids"][name], True
    else:
        lk["credit_group_floor"] += 1
        group_id = lk["new_group_ids"][name] = lk["credit_group_floor"]
        new = True
        out.append({"kind": "credit_group", "key": {"id": group_id}, "after": {"name": name, "limit_amount": limit},
                    "op": "insert", "amount": limit, "context": {"group": name}})
    out.append({"kind": "credit_group_member", "key": {"group_id": group_id, "account_id": acct_id}, "after": {},
                "op": "insert", "amount": None,
                "context": {"group": name, "account": r["account"], "new_group": new}})
    return out
