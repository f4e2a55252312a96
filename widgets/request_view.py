"""What the four-eyes dialog shows about one change request, read in one task, and who may decide it
now: the request, its approvals, the target as the store holds it now and who changed it since, and
the reason a user cannot decide it (the same rule as `services.changes`, which still enforces it).
Also the live monitor's figures for an account, shown beside a limit change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from widgets.records import kind_label, role_label, to_utc

if TYPE_CHECKING:
    from services.auth import User
    from services.changes import ChangeRequest
    from services.live import LiveMonitor
    from services.store import Store

AccountFigures = Callable[[str], "dict[str, Any] | None"]


@dataclass
class RequestView:
    """Everything the dialog shows about one request, read in one task."""

    request: ChangeRequest
    approvals: list[dict[str, Any]]
    may_approve: bool
    current: dict[str, Any] | None
    names: dict[str, str] = field(default_factory=dict)
    subject: dict[str, Any] = field(default_factory=dict)
    changed_since: tuple[str, datetime | None] | None = None

    @property
    def approved_by(self) -> set[str]:
        return {str(a["checker"]) for a in self.approvals}

    def name(self, login: str | None) -> str:
        if not login:
            return ""
        full = self.names.get(login)
        return f"{full} · {login}" if full and full != login else login


def load_request_view(store: Store, user: User, req_id: int) -> RequestView:
    """Read a request, its approvals, the target as it is now and who changed it (task function)."""
    import json

    from sqlalchemy import select, text

    from models import schema as S
    from services import changes
    from services.auth import permitted

    req = changes.get(store, req_id)
    approvals = changes.approvals_of(store, req_id)
    may = permitted(store, user, "approve", req.kind)
    view = RequestView(req, approvals, may, None)
    with store.begin() as conn:
        if req.target_table in S.metadata.tables and req.op != "insert":
            view.current = changes.read_target(conn, req.target_table, req.target_key)
        logins = {req.maker, req.checker, *(a["checker"] for a in approvals)} - {None}
        view.names = {r.login: r.display_name for r in conn.execute(
            select(S.users.c.login, S.users.c.display_name).where(S.users.c.login.in_(logins)))}
        if req.kind == "financing_limit" and "account_id" in req.target_key:
            a, c = S.accounts, S.clients
            r = conn.execute(select(a.c.code, a.c.type, c.c.code.label("client"), c.c.name).select_from(
                a.join(c, a.c.client_id == c.c.id)).where(a.c.id == req.target_key["account_id"])).first()
            if r is not None:
                view.subject = {"Account": r.code, "Client": f"{r.client} · {r.name}", "Account type": r.type}
        cur_version = (view.current or {}).get("version")
        if (req.status == "pending" and req.target_version is not None and cur_version is not None
                and cur_version != req.target_version):
            key = json.dumps(req.target_key, sort_keys=True, separators=(",", ":"), default=str)
            last = conn.execute(text(
                "select actor, ts from audit_log where entity = :e and entity_key = :k and action = 'apply' "
                "order by id desc limit 1"), {"e": req.target_table, "k": key}).first()
            view.changed_since = (last.actor, to_utc(last.ts)) if last else ("someone", None)
    return view


def decision_block(req: ChangeRequest, user: User, may_approve: bool, approved_by: set[str]) -> str | None:
    """Why ``user`` cannot decide ``req`` now (None: they can). Mirrors `services.changes`."""
    if req.status != "pending":
        return f"This request is {req.status}."
    if user.login == req.maker:
        return "You made this request: a different person must decide it (four eyes)."
    if not may_approve:
        return f"A {user.role_label.lower()} may view {kind_label(req.kind).lower()} requests but not decide them."
    need = req.next_role or ""
    n = len(req.flow_steps)
    if not (user.role == need or (user.role == "cro" and need == "supervisor")):
        return f"Waiting for the {role_label(need)} (step {req.step + 1} of {n}); you cannot decide this step."
    if user.login in approved_by:
        return "You approved an earlier step: another person must approve this one."
    return None


def monitor_account_figures(monitor: LiveMonitor) -> AccountFigures:
    """Context for limit changes from the live monitor: an account's equity, loan, IM, MM and status."""
    from services.margin import STATUS_NAMES
    from widgets.locking import try_lock

    def figures(account_code: str) -> dict[str, Any] | None:
        with try_lock(monitor.lock) as held:
            if not held:
                return None
            e = monitor.engine
            i = e.book.acct_index.get(account_code)
            if i is None:
                return None
            return {"Status (live)": STATUS_NAMES[int(e.status[i])], "Equity": float(e.equity[i]),
                    "Loan": float(e.loan[i]), "IM": float(e.im[i]), "MM": float(e.mm[i])}

    return figures
