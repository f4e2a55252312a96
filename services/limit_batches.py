"""Bulk financing-limit updates under review (issue 4 "Bulk limit update").

A financing-limits file becomes a *batch*: its valid rows are kept in `limit_batches` /
`limit_batch_rows` (operational tables, not risk parameters) where the maker reviews them — edit an
amount, remove a row, restore it — before `submit_batch` turns every row still in the batch into
one `financing_limit` change request, all in one transaction with the batch's status. Nothing in
`financing_limits` changes until a checker approves each request.

Rows are checked by the `financing-limits` import kind (services.imports), plus: a cash account
cannot be credited. The same file (by SHA-256) cannot make a second batch while one made from it is
open or submitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, text

from models import schema as S
from services import audit, changes, imports
from services.auth import AuthError, User, permitted
from services.calendar import HK_TZ
from services.changes import ChangeError
from services.store import Store, _as_dt

KIND = "financing-limits"  # the import kind whose checks a batch file passes
CHANGE_KIND = "financing_limit"


class BatchError(ChangeError):
    """A batch operation is refused; the message says why, for the user."""


@dataclass
class BatchResult:
    """What `create_batch` made of a file: the batch (None when no row was valid) and the problems."""

    batch_id: int | None
    file_name: str
    rows: int  # data rows in the file
    valid: int  # rows stored in the batch
    problems: list[dict[str, Any]] = field(default_factory=list)  # row, column, value, message


def _may_request(store: Store, user: User) -> None:
    if not permitted(store, user, "request", CHANGE_KIND):
        raise AuthError(f"{user.login} ({user.role_label}) may not request financing-limit changes")


def _batch(conn: Connection, batch_id: int) -> Any:
    row = conn.execute(text("select id, status, created_by, created_at, file_name from limit_batches "
                            "where id = :i"), {"i": batch_id}).first()
    if row is None:
        raise BatchError(f"batch #{batch_id} does not exist")
    return row


def _open_batch(conn: Connection, batch_id: int) -> Any:
    row = _batch(conn, batch_id)
    if row.status != "open":
        raise BatchError(f"batch #{batch_id} is {row.status}: it can no longer be changed")
    return row


def _when(v: Any) -> str:
    """A stored time as the desk reads it (Hong Kong time)."""
    t = _as_dt(v)
    return "an unknown time" if t is None else t.astimezone(HK_TZ).strftime("%Y-%m-%d %H:%M HKT")


# ---------------------------------------------------------------------- create
def create_batch(store: Store, user: User, path: str | Path) -> BatchResult:
    """Check a financing-limits file and keep its valid rows as an open batch.

    Raises `imports.ImportFileError` when the file cannot be read and `BatchError` when the same file
    is already in an open or submitted batch. A file without any valid row makes no batch."""
    _may_request(store, user)
    report = imports.validate_file(store, KIND, path)
    name = Path(path).name
    with store.begin() as conn:
        prev = conn.execute(text(
            "select id, status, created_by, created_at from limit_batches where file_sha256 = :h "
            "and status in ('open', 'submitted') order by id limit 1"), {"h": report.sha256}).first()
        if prev is not None:
            raise BatchError(f"{name} is already batch #{prev.id} ({prev.status}), uploaded by {prev.created_by} "
                             f"at {_when(prev.created_at)}: the same file cannot be submitted twice")
        ids = {r.code: (int(r.id), r.type) for r in conn.execute(text("select id, code, type from accounts"))}
        problems = list(report.errors)
        rows = []
        for rown, rec in report.valid_rows:
            acct_id, kind = ids[rec["account"]]
            if kind == "cash":
                problems.append({"row": rown, "column": "account", "value": rec["account"],
                                 "message": f"{rec['account']} is a cash account: it cannot be credited"})
                continue
            rows.append({"row_no": rown, "account_id": acct_id, "amount": float(rec["amount"]), "note": ""})
        problems.sort(key=lambda p: (p["row"], p["column"]))
        if not rows:
            return BatchResult(None, name, report.rows, 0, problems)
        batch_id = int(conn.execute(insert(S.limit_batches).values(
            created_by=user.login, created_at=datetime.now(UTC), file_name=name[:255], file_sha256=report.sha256,
            status="open").returning(S.limit_batches.c.id)).scalar_one())
        conn.execute(insert(S.limit_batch_rows), [{**r, "batch_id": batch_id} for r in rows])
    return BatchResult(batch_id, name, report.rows, len(rows), problems)


# ---------------------------------------------------------------------- read
def batches(store: Store, status: str | None = "open") -> list[dict[str, Any]]:
    """Batches (newest first) with their row counts; ``status`` None lists every batch."""
    sql = ("select b.id, b.created_by, b.created_at, b.file_name, b.status, b.reason, b.decided_at, "
           "count(r.id) as n_rows, sum(case when r.id is null or r.removed then 0 else 1 end) as n_kept "
           "from limit_batches b left join limit_batch_rows r on r.batch_id = b.id"
           + (" where b.status = :s" if status else "")
           + " group by b.id, b.created_by, b.created_at, b.file_name, b.status, b.reason, b.decided_at "
             "order by b.id desc")
    with store.begin() as conn:
        return [{**dict(r._mapping), "n_kept": int(r.n_kept or 0)}
                for r in conn.execute(text(sql), {"s": status} if status else {})]


def batch_rows(store: Store, batch_id: int) -> list[dict[str, Any]]:
    """The batch's rows in file order, with each account's current limit (None: not yet credited)."""
    with store.begin() as conn:
        _batch(conn, batch_id)
        rows = conn.execute(text(
            "select r.id, r.row_no, r.account_id, a.code as account, c.code as client, c.name as client_name, "
            "f.amount as current, r.amount, r.removed, r.request_id, r.note "
            "from limit_batch_rows r join accounts a on a.id = r.account_id join clients c on c.id = a.client_id "
            "left join financing_limits f on f.account_id = r.account_id "
            "where r.batch_id = :b order by r.row_no, r.id"), {"b": batch_id}).all()
    out = []
    for r in rows:
        d = dict(r._mapping)
        d["removed"] = bool(d["removed"])
        d["current"] = None if d["current"] is None else float(d["current"])
        d["change"] = d["amount"] - (d["current"] or 0.0)
        out.append(d)
    return out


# ---------------------------------------------------------------------- review
def _row(conn: Connection, row_id: int) -> Any:
    row = conn.execute(text("select id, batch_id, removed from limit_batch_rows where id = :i"),
                       {"i": row_id}).first()
    if row is None:
        raise BatchError(f"batch row {row_id} does not exist")
    _open_batch(conn, int(row.batch_id))
    return row


def edit_row(store: Store, user: User, row_id: int, amount: float) -> None:
    """Change a row's new limit (≥ 0) while its batch is open."""
    _may_request(store, user)
    try:
        value = float(amount)
    except (TypeError, ValueError):
        raise BatchError(f"{amount!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise BatchError(f"a financing limit must be a finite amount ≥ 0, got {amount}")
    with store.begin() as conn:
        _row(conn, row_id)
        conn.execute(text("update limit_batch_rows set amount = :a where id = :i"), {"a": value, "i": row_id})


def _set_removed(store: Store, user: User, row_id: int, removed: bool) -> None:
    _may_request(store, user)
    with store.begin() as conn:
        _row(conn, row_id)
        conn.execute(text("update limit_batch_rows set removed = :r where id = :i"), {"r": removed, "i": row_id})


def remove_row(store: Store, user: User, row_id: int) -> None:
    """Leave a row out of the batch (it stays listed, and can be restored until submission)."""
    _set_removed(store, user, row_id, True)


def restore_row(store: Store, user: User, row_id: int) -> None:
    _set_removed(store, user, row_id, False)


# ---------------------------------------------------------------------- submit / discard
def submit_batch(store: Store, user: User, batch_id: int, reason: str) -> list[int]:
    """One `financing_limit` change request per row still in the batch (insert when the account has no
    limit yet, else update), each row's `request_id` set and the batch marked submitted — all in one
    transaction: a request the store refuses leaves the batch open and no request behind."""
    if not reason or not reason.strip():
        raise BatchError("give a reason for the batch: the checker decides on it")
    _may_request(store, user)
    now = datetime.now(UTC)
    with store.begin() as conn:
        claimed = conn.execute(text(
            "update limit_batches set status = 'submitted', reason = :r, decided_at = :t "
            "where id = :i and status = 'open'"), {"r": reason.strip(), "t": now, "i": batch_id}).rowcount
        if not claimed:
            _open_batch(conn, batch_id)  # raises: missing, submitted or discarded
        rows = conn.execute(text(
            "select r.id, r.row_no, r.account_id, r.amount, a.code, a.closed, c.name "
            "from limit_batch_rows r join accounts a on a.id = r.account_id join clients c on c.id = a.client_id "
            "where r.batch_id = :b and r.removed = :f order by r.row_no, r.id"), {"b": batch_id, "f": False}).all()
        if not rows:
            raise BatchError(f"batch #{batch_id} has no rows left to submit (every row is removed)")
        ids = []
        for r in rows:
            if r.closed:
                raise BatchError(f"row {r.row_no}: {r.code} has been closed since the upload; remove the row")
            current = changes.read_target(conn, "financing_limits", {"account_id": int(r.account_id)})
            rid = changes.submit(
                store, user, CHANGE_KIND, {"account_id": int(r.account_id)}, {"amount": float(r.amount)},
                f"{reason.strip()} (batch #{batch_id} row {r.row_no})", op="update" if current else "insert",
                amount=float(r.amount), conn=conn,
                context={"account": r.code, "client_name": r.name, "batch": batch_id, "row": r.row_no,
                         "current_limit": None if current is None else float(current["amount"])})
            conn.execute(text("update limit_batch_rows set request_id = :q where id = :i"), {"q": rid, "i": r.id})
            ids.append(rid)
        audit.append(conn, store.kind, user.login, "submit", "limit_batches", str(batch_id), "open",
                     f"submitted: {len(ids)} requests #{ids[0]}–#{ids[-1]}")
    return ids


def discard_batch(store: Store, user: User, batch_id: int) -> None:
    """Drop an open batch: no request is made, and its file may be uploaded again."""
    _may_request(store, user)
    with store.begin() as conn:
        _open_batch(conn, batch_id)
        conn.execute(text("update limit_batches set status = 'discarded', decided_at = :t where id = :i"),
                     {"t": datetime.now(UTC), "i": batch_id})
