"""Four-eyes change requests (issue 3): submit, approve (per step of a flow), reject, cancel, expire.

Every risk-parameter change is a request: the maker submits before/after values of one target row
with the row's version; a different, authorised checker approves; only the last approval applies
the change, in the same transaction, after re-checking the version. Every step is audited.
On PostgreSQL the decisions run inside `rd_decide` / `rd_cancel` / `rd_expire` (database-enforced:
the maker cannot approve, even with raw SQL); SQLite runs the same rules here, in one transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from models import schema as S
from services import audit
from services.auth import AuthError, User, permitted
from services.change_kinds import KIND_TABLES
from services.errors import ChangeError, StaleTargetError
from services.store import Store

DEFAULT_FLOW = ("default", ["supervisor"])
KEY_COLUMNS = {
    "company_parameters": ("name",), "financing_limits": ("account_id",), "haircuts": ("security_id",),
    "stock_margin_ratios": ("id",), "client_margin_ratios": ("id",), "client_groups": ("id",),
    "stock_groups": ("id",), "indices": ("id",), "approval_flows": ("id",), "credit_groups": ("id",),
    "credit_group_members": ("group_id", "account_id"), "company_limits": ("dimension",), "blacklist": ("id",),
    "client_trading_limits": ("id",), "index_haircuts": ("index_id",), "trading_sessions": ("id",),
    "limit_codes": ("code",), "limit_rules": ("id",), "pretrade_decisions": ("id",),
}


@dataclass
class ChangeRequest:
    id: int
    kind: str
    op: str
    target_table: str
    target_key: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    target_version: int | None
    amount: float | None
    reason: str
    context: dict[str, Any]
    maker: str
    created_at: datetime
    expires_at: datetime | None
    status: str
    flow_code: str
    flow_steps: list[str]
    step: int
    checker: str | None
    decided_at: datetime | None
    comment: str | None
    version: int

    @property
    def next_role(self) -> str | None:
        return self.flow_steps[self.step] if self.status == "pending" and self.step < len(self.flow_steps) else None

    def changed_fields(self) -> list[str]:
        keys = list(dict.fromkeys([*self.before, *self.after]))
        return [k for k in keys if self.before.get(k) != self.after.get(k)]


def _row_to_request(r: Any) -> ChangeRequest:
    def dt(v: Any) -> datetime | None:
        if v is None:
            return None
        if isinstance(v, str):
            v = datetime.fromisoformat(v)
        return v if v.tzinfo else v.replace(tzinfo=UTC)

    return ChangeRequest(
        id=r.id, kind=r.kind, op=r.op, target_table=r.target_table, target_key=json.loads(r.target_key),
        before=json.loads(r.before), after=json.loads(r.after), target_version=r.target_version, amount=r.amount,
        reason=r.reason, context=json.loads(r.context or "{}"), maker=r.maker, created_at=dt(r.created_at),  # type: ignore[arg-type]
        expires_at=dt(r.expires_at), status=r.status, flow_code=r.flow_code, flow_steps=json.loads(r.flow_steps),
        step=r.step, checker=r.checker, decided_at=dt(r.decided_at), comment=r.comment, version=r.version)


def _dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


def insert_id_floor(conn: Connection, table: str) -> int:
    """The highest id used in `table` or promised to a pending insert request for it.

    Insert requests carry the new row's id in their key, so a reviewer sees exactly what will be
    created; new ids start above this floor.
    """
    top = int(conn.execute(text(f"select coalesce(max(id), 0) from {S.metadata.tables[table].name}")).scalar()
              or 0)
    for (key,) in conn.execute(select(S.change_requests.c.target_key).where(
            S.change_requests.c.status == "pending", S.change_requests.c.op == "insert",
            S.change_requests.c.target_table == table)):
        top = max(top, int(json.loads(key).get("id", 0)))
    return top


def choose_flow(conn: Connection, kind: str, amount: float | None) -> tuple[str, list[str]]:
    """The approval flow for a kind and amount range (most specific range wins), else one supervisor."""
    rows = conn.execute(select(S.approval_flows).where(S.approval_flows.c.kind == kind)).all()
    best = None
    for r in rows:
        lo = r.min_amount if r.min_amount is not None else float("-inf")
        hi = r.max_amount if r.max_amount is not None else float("inf")
        a = amount if amount is not None else 0.0
        if lo <= a < hi and (best is None or (hi - lo) < best[0]):
            best = (hi - lo, r.code, json.loads(r.steps))
    return (best[1], best[2]) if best else (DEFAULT_FLOW[0], list(DEFAULT_FLOW[1]))


def read_target(conn: Connection, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    t = S.metadata.tables[table]
    cond = and_(*[t.c[k] == v for k, v in key.items()])
    r = conn.execute(select(t).where(cond)).first()
    return None if r is None else dict(r._mapping)


def submit(store: Store, user: User, kind: str, key: dict[str, Any], after: dict[str, Any], reason: str,
           op: str = "update", amount: float | None = None, context: dict[str, Any] | None = None,
           conn: Connection | None = None) -> int:
    """Record a pending request; the target's current values and version are captured now.

    With ``conn`` the request joins the caller's transaction (e.g. a pre-trade decision and its
    release request are written together or not at all)."""
    if conn is not None:
        return _submit(conn, store, user, kind, key, after, reason, op, amount, context)
    with store.begin() as c:
        return _submit(c, store, user, kind, key, after, reason, op, amount, context)


def _submit(conn: Connection, store: Store, user: User, kind: str, key: dict[str, Any], after: dict[str, Any],
            reason: str, op: str, amount: float | None, context: dict[str, Any] | None) -> int:
    if not reason or not reason.strip():
        raise ChangeError("a change request needs a reason")
    if kind not in KIND_TABLES:
        raise ChangeError(f"unknown kind of change {kind!r}")
    if not permitted(store, user, "request", kind):
        raise AuthError(f"{user.login} ({user.role_label}) may not request {kind} changes")
    table = KIND_TABLES[kind]
    now = datetime.now(UTC)
    current = read_target(conn, table, key) if op != "insert" else None
    if op != "insert" and current is None:
        raise ChangeError(f"{table} {_dumps(key)} does not exist")
    if op == "insert" and read_target(conn, table, key) is not None:
        raise ChangeError(f"{table} {_dumps(key)} already exists")
    before = {k: current[k] for k in after} if current and op == "update" else (
        {k: v for k, v in current.items() if k != "version"} if current else {})
    version = current.get("version") if current else None
    hours = conn.execute(select(S.company_parameters.c.value).where(
        S.company_parameters.c.name == "change_request_expiry_hours")).scalar() or 72.0
    flow_code, steps = choose_flow(conn, kind, amount)
    req_id = conn.execute(insert(S.change_requests).values(
        kind=kind, op=op, target_table=table, target_key=_dumps(key), before=_dumps(before),
        after=_dumps(after), target_version=version, amount=amount, reason=reason.strip(),
        context=_dumps(context or {}), maker=user.login, created_at=now,
        expires_at=now + timedelta(hours=float(hours)), status="pending", flow_code=flow_code,
        flow_steps=json.dumps(steps), step=0, workstation=audit.workstation(),
    ).returning(S.change_requests.c.id)).scalar_one()
    audit.append(conn, store.kind, user.login, "request", "change_requests", str(req_id), _dumps(before),
                 _dumps(after), req_id)
    return int(req_id)


def get(store: Store, req_id: int) -> ChangeRequest:
    with store.begin() as conn:
        r = conn.execute(select(S.change_requests).where(S.change_requests.c.id == req_id)).first()
    if r is None:
        raise ChangeError(f"change request {req_id} does not exist")
    return _row_to_request(r)


def listing(store: Store, status: str | None = None, maker: str | None = None, limit: int = 2000,
            kind: str | None = None) -> list[ChangeRequest]:
    """Requests newest first, optionally of one status, maker or kind (a kind's whole history)."""
    q = select(S.change_requests).order_by(S.change_requests.c.id.desc()).limit(limit)
    if status:
        q = q.where(S.change_requests.c.status == status)
    if maker:
        q = q.where(S.change_requests.c.maker == maker)
    if kind:
        q = q.where(S.change_requests.c.kind == kind)
    with store.begin() as conn:
        return [_row_to_request(r) for r in conn.execute(q)]


def approvals_of(store: Store, req_id: int) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(select(S.change_request_approvals).where(
            S.change_request_approvals.c.request_id == req_id).order_by(S.change_request_approvals.c.step))]


def _pg_call(store: Store, sql: str, params: dict[str, Any]) -> str:
    try:
        with store.begin() as conn:
            return str(conn.execute(text(sql), params).scalar_one())
    except DBAPIError as e:
        msg = str(getattr(e.orig, "diag", None) and e.orig.diag.message_primary or e.orig or e)  # type: ignore[union-attr]
        if msg.startswith("stale:"):
            raise StaleTargetError(msg[len("stale:"):].strip()) from e
        if "four-eyes" in msg or "may not" in msg or "only the maker" in msg or "already approved" in msg:
            raise AuthError(msg) from e
        raise ChangeError(msg) from e


def approve(store: Store, user: User, req_id: int, comment: str = "") -> str:
    """Approve the request's current step; the last step applies it. Returns the new status."""
    if store.kind == "postgresql":
        return _pg_call(store, "select rd_decide(:i, 'approve', :c, :w)",
                        {"i": req_id, "c": comment, "w": audit.workstation()})
    from sqlalchemy.exc import IntegrityError

    try:
        return _decide_local(store, user, req_id, "approve", comment)
    except IntegrityError as e:  # e.g. a group member approved before the group it joins exists
        first = str(e.orig).splitlines()[0] if e.orig is not None else type(e).__name__
        raise ChangeError(f"change request {req_id} cannot be applied yet: the store refused it ({first}); "
                          "approve the request it depends on first (e.g. the new group) or reject it") from None


def reject(store: Store, user: User, req_id: int, comment: str) -> str:
    if not comment or not comment.strip():
        raise ChangeError("a rejection needs a comment")
    if store.kind == "postgresql":
        return _pg_call(store, "select rd_decide(:i, 'reject', :c, :w)",
                        {"i": req_id, "c": comment, "w": audit.workstation()})
    return _decide_local(store, user, req_id, "reject", comment)


def cancel(store: Store, user: User, req_id: int) -> str:
    if store.kind == "postgresql":
        return _pg_call(store, "select rd_cancel(:i, :w)", {"i": req_id, "w": audit.workstation()})
    with store.begin() as conn:
        r = _lock_pending(conn, req_id)
        if r.maker != user.login:
            raise AuthError(f"only the maker ({r.maker}) can cancel change request {req_id}")
        conn.execute(update(S.change_requests).where(S.change_requests.c.id == req_id).values(
            status="cancelled", decided_at=datetime.now(UTC), version=S.change_requests.c.version + 1))
        audit.append(conn, store.kind, user.login, "cancel", "change_requests", str(req_id), request_id=req_id)
    return "cancelled"


def expire_due(store: Store) -> int:
    """Expire pending requests past their time; returns how many."""
    if store.kind == "postgresql":
        return int(_pg_call(store, "select rd_expire(:w)", {"w": audit.workstation()}))
    now = datetime.now(UTC)
    with store.begin() as conn:
        due = [r.id for r in conn.execute(select(S.change_requests.c.id, S.change_requests.c.expires_at).where(
            S.change_requests.c.status == "pending")) if r.expires_at is not None
               and (r.expires_at if r.expires_at.tzinfo else r.expires_at.replace(tzinfo=UTC)) < now]
        for i in due:
            conn.execute(update(S.change_requests).where(S.change_requests.c.id == i).values(
                status="expired", decided_at=now, version=S.change_requests.c.version + 1))
            audit.append(conn, store.kind, "system", "expire", "change_requests", str(i), request_id=i)
    return len(due)


def _lock_pending(conn: Connection, req_id: int) -> ChangeRequest:
    conn.execute(text("update store_meta set value = value where key = 'audit_head'"))  # SQLite write lock
    r = conn.execute(select(S.change_requests).where(S.change_requests.c.id == req_id)).first()
    if r is None:
        raise ChangeError(f"change request {req_id} does not exist")
    req = _row_to_request(r)
    if req.status != "pending":
        raise ChangeError(f"change request {req_id} is {req.status}, not pending")
    return req


def _decide_local(store: Store, user: User, req_id: int, decision: str, comment: str) -> str:
    now = datetime.now(UTC)
    with store.begin() as conn:
        req = _lock_pending(conn, req_id)
        if req.expires_at is not None and req.expires_at < now:
            conn.execute(update(S.change_requests).where(S.change_requests.c.id == req_id).values(
                status="expired", decided_at=now))
            audit.append(conn, store.kind, user.login, "expire", "change_requests", str(req_id), request_id=req_id)
            return "expired"
        if user.login == req.maker:
            raise AuthError(f"four-eyes: {user.login} made change request {req_id} and cannot decide it")
        need = req.next_role or ""
        if not permitted(store, user, "approve", req.kind) or not (
                user.role == need or (user.role == "cro" and need == "supervisor")):
            raise AuthError(f"{user.login} ({user.role_label}) may not decide step {req.step + 1} ({need}) "
                            f"of change request {req_id}")
        done = {r.checker for r in conn.execute(select(S.change_request_approvals.c.checker).where(
            S.change_request_approvals.c.request_id == req_id))}
        if user.login in done:
            raise AuthError(f"{user.login} already approved an earlier step of change request {req_id}")
        if decision == "reject":
            conn.execute(update(S.change_requests).where(S.change_requests.c.id == req_id).values(
                status="rejected", checker=user.login, decided_at=now, comment=comment,
                version=S.change_requests.c.version + 1))
            audit.append(conn, store.kind, user.login, "reject", "change_requests", str(req_id), "", comment, req_id)
            return "rejected"
        conn.execute(insert(S.change_request_approvals).values(
            request_id=req_id, step=req.step, role=user.role, checker=user.login, decided_at=now, comment=comment))
        if req.step + 1 < len(req.flow_steps):
            conn.execute(update(S.change_requests).where(S.change_requests.c.id == req_id).values(
                step=req.step + 1, version=S.change_requests.c.version + 1))
            audit.append(conn, store.kind, user.login, "approve_step", "change_requests", str(req_id), "",
                         comment, req_id)
            return "pending"
        _apply_local(conn, req)
        conn.execute(update(S.change_requests).where(S.change_requests.c.id == req_id).values(
            status="approved", checker=user.login, decided_at=now, comment=comment,
            version=S.change_requests.c.version + 1))
        audit.append(conn, store.kind, user.login, "approve", "change_requests", str(req_id), "", comment, req_id)
        audit.append(conn, store.kind, req.maker, "apply", req.target_table, _dumps(req.target_key),
                     _dumps(req.before), _dumps(req.after), req_id)
    return "approved"


def _apply_local(conn: Connection, req: ChangeRequest) -> None:
    t = S.metadata.tables[req.target_table]
    cond = and_(*[t.c[k] == v for k, v in req.target_key.items()])
    if req.op in ("update", "delete") and req.target_version is not None:
        cur = conn.execute(select(t.c.version).where(cond)).scalar()
        if cur is None:
            raise ChangeError(f"the target {req.target_table} {_dumps(req.target_key)} no longer exists")
        if cur != req.target_version:
            last = conn.execute(select(S.audit_log.c.actor, S.audit_log.c.ts).where(
                S.audit_log.c.entity == req.target_table, S.audit_log.c.entity_key == _dumps(req.target_key),
                S.audit_log.c.action == "apply").order_by(S.audit_log.c.id.desc()).limit(1)).first()
            who = last.actor if last else "someone"
            when = (f"{audit.ts_text(last.ts if last.ts.tzinfo else last.ts.replace(tzinfo=UTC))[:19].replace('T', ' ')}"
                    " UTC" if last else "an unknown time")
            raise StaleTargetError(f"{req.target_table} {_dumps(req.target_key)} was changed by {who} at {when} "
                                   "since this request was made — reload")
    values = {k: _coerce(t, k, v) for k, v in req.after.items()}
    if req.op == "update":
        if req.target_version is not None:
            values["version"] = t.c.version + 1
        conn.execute(update(t).where(cond).values(**values))
    elif req.op == "insert":
        conn.execute(insert(t).values(**{**values, **req.target_key}))
    else:
        conn.execute(delete(t).where(cond))


def _coerce(t: Any, col: str, v: Any) -> Any:
    """JSON carries dates as ISO text; give SQLAlchemy real datetimes for DateTime columns."""
    from sqlalchemy import Date, DateTime

    if v is not None and isinstance(t.c[col].type, DateTime) and isinstance(v, str):
        return datetime.fromisoformat(v)
    if v is not None and isinstance(t.c[col].type, Date) and isinstance(v, str):  # a call's deadline
        return date.fromisoformat(v[:10])
    return v
