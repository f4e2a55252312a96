"""The corrective-action register (RISK_METHODS §7 "Corrective actions"), across every source.

An action comes from an incident, a trade error, a reconciliation break, a KRI, an audit finding or
a loss event (``source_kind`` + ``source_id``); it has an owner and a due date and moves
open → in progress → completed → verified. A completed action whose check fails goes back to
in progress (`reopen`). Verification is by someone other than the owner: refused here with a message,
and refused again by the table's ``verifier_not_owner`` check should anything write around this
module. An action is overdue when it is still open or in progress after its due date (due today is
not overdue); a completed action waiting for verification is not overdue.

Other modules create actions through `create_action` — inside their own transaction when they pass a
Connection, so the action commits (and is audited) with the record that called for it. Every write
here is audited in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from models import schema as S
from services import audit
from services.auth import User
from services.store import Store

STATUSES = ("open", "in_progress", "completed", "verified")
STATUS_LABELS = {"open": "Open", "in_progress": "In progress", "completed": "Completed", "verified": "Verified"}
SOURCE_KINDS = ("incident", "trade_error", "break", "kri", "audit", "loss_event")
SOURCE_LABELS = {"incident": "Incident", "trade_error": "Trade error", "break": "Break", "kri": "KRI",
                 "audit": "Audit", "loss_event": "Loss event"}
# (from, to) → the verb a message uses
TRANSITIONS = {("open", "in_progress"): "start", ("in_progress", "completed"): "complete",
               ("completed", "verified"): "verify", ("completed", "in_progress"): "reopen"}
VERB_TEXT = {"start": "started", "complete": "completed", "verify": "verified", "reopen": "reopened"}
WRITE_ROLES = ("risk_officer", "supervisor", "cro", "operations")
TITLE_MAX = 500
OWNER_MAX = 64


class ActionError(ValueError):
    """A corrective-action step that is not allowed or input that cannot be used; the message says why."""


# ---------------------------------------------------------------------- pure rules
def is_overdue(status: str, due_date: date, today: date) -> bool:
    """Still to be done (open or in progress) after its due date; due today is not overdue."""
    return status in ("open", "in_progress") and due_date < today


def check_transition(current: str, target: str, verb: str | None = None) -> str:
    """The verb of an allowed move (and the one asked for, when ``verb`` is given), else an
    ActionError naming the refused move and what the action can do instead."""
    got = TRANSITIONS.get((current, target))
    if got is None or (verb is not None and got != verb):
        can = [VERB_TEXT[v] for (f, _t), v in TRANSITIONS.items() if f == current]
        instead = f"it can be {' or '.join(can)}" if can else "it is final"
        what = VERB_TEXT.get(verb or "", f"moved to {STATUS_LABELS.get(target, target).lower()}")
        raise ActionError(f"an action that is {STATUS_LABELS.get(current, current).lower()} cannot be {what}: "
                          f"{instead}")
    return got


def check_verifier(verifier: str, owner: str) -> None:
    if verifier == owner:
        raise ActionError(f"{owner} owns this action and cannot verify it: someone else must verify it")


def _login(user: User | str) -> str:
    return user.login if isinstance(user, User) else str(user)


def _may_write(user: User | str, owner: str | None = None) -> None:
    """Desk roles write; a plain string actor is the system (another service, a seed)."""
    if isinstance(user, User) and user.role not in WRITE_ROLES and user.login != owner:
        raise ActionError(f"{user.login} ({user.role_label}) may not change corrective actions")


def _as_date(v: Any, field: str = "due date") -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v.strip())
        except ValueError:
            pass
    raise ActionError(f"{field}: {v!r} is not a date (YYYY-MM-DD)")


def _utc(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


@contextmanager
def _conn(store_or_conn: Store | Connection) -> Iterator[tuple[Connection, str]]:
    """(connection, store kind): the caller's transaction when given one, else a new one."""
    if isinstance(store_or_conn, Connection):
        yield store_or_conn, store_or_conn.dialect.name
    else:
        with store_or_conn.begin() as conn:
            yield conn, store_or_conn.kind


# ---------------------------------------------------------------------- writes
def create_action(store_or_conn: Store | Connection, user: User | str, source_kind: str, source_id: int | None,
                  title: str, owner: str, due_date: date | datetime | str, notes: str = "") -> int:
    """Open an action (status open) and audit it; the new id. Pass a Connection to commit it with
    the caller's own change. ``user`` is the creator (a User, or a service's actor name)."""
    if source_kind not in SOURCE_KINDS:
        raise ActionError(f"source: {source_kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    title = (title or "").strip()
    owner = (owner or "").strip()
    if not title:
        raise ActionError("title: say what is to be done")
    if len(title) > TITLE_MAX:
        raise ActionError(f"title: at most {TITLE_MAX} characters")
    if not owner:
        raise ActionError("owner: name who owns the action")
    if len(owner) > OWNER_MAX:
        raise ActionError(f"owner: at most {OWNER_MAX} characters")
    due = _as_date(due_date)
    _may_write(user)
    actor = _login(user)
    now = datetime.now(UTC)
    with _conn(store_or_conn) as (conn, kind):
        aid = int(conn.execute(insert(S.corrective_actions).values(
            source_kind=source_kind, source_id=source_id, title=title, owner=owner, due_date=due, status="open",
            notes=notes.strip(), created_by=actor, created_at=now).returning(S.corrective_actions.c.id)).scalar_one())
        audit.append(conn, kind, actor, "create", "corrective_actions", str(aid),
                     after=f"{source_kind} {source_id}: {title} · owner {owner} · due {due.isoformat()}")
    return aid


def _move(store: Store | Connection, user: User | str, action_id: int, target: str, verb: str, note: str,
          version: int | None) -> None:
    t = S.corrective_actions
    actor = _login(user)
    now = datetime.now(UTC)
    with _conn(store) as (conn, kind):
        r = conn.execute(select(t).where(t.c.id == action_id)).first()
        if r is None:
            raise ActionError(f"corrective action #{action_id} does not exist")
        if version is not None and int(r.version) != version:
            raise ActionError(f"corrective action #{action_id} was changed by someone else: reload and try again")
        check_transition(r.status, target, verb)
        _may_write(user, r.owner)
        values: dict[str, Any] = {"status": target, "version": int(r.version) + 1}
        if verb == "verify":
            check_verifier(actor, r.owner)
            values.update(verified_by=actor, verified_at=now)
        elif verb == "complete":
            values["completed_at"] = now
        elif verb == "reopen":
            if not note.strip():
                raise ActionError("reopen: say why the action is not done")
            values["completed_at"] = None
        elif verb == "start":
            values["started_at"] = now
        if note.strip():
            stamp = now.strftime("%Y-%m-%d %H:%M")
            values["notes"] = f"{r.notes}\n[{stamp} {actor}, {verb}] {note.strip()}".strip()
        n = conn.execute(update(t).where(t.c.id == action_id, t.c.version == r.version).values(**values)).rowcount
        if n != 1:
            raise ActionError(f"corrective action #{action_id} was changed by someone else: reload and try again")
        audit.append(conn, kind, actor, verb, "corrective_actions", str(action_id), before=r.status,
                     after=target + (f": {note.strip()}" if note.strip() else ""))


def start(store: Store | Connection, user: User | str, action_id: int, note: str = "",
          version: int | None = None) -> None:
    """Open → in progress."""
    _move(store, user, action_id, "in_progress", "start", note, version)


def complete(store: Store | Connection, user: User | str, action_id: int, note: str = "",
             version: int | None = None) -> None:
    """In progress → completed (waits for someone other than the owner to verify it)."""
    _move(store, user, action_id, "completed", "complete", note, version)


def verify(store: Store | Connection, user: User | str, action_id: int, note: str = "",
           version: int | None = None) -> None:
    """Completed → verified, by someone other than the owner."""
    _move(store, user, action_id, "verified", "verify", note, version)


def reopen(store: Store | Connection, user: User | str, action_id: int, note: str,
           version: int | None = None) -> None:
    """Completed → in progress: the check found it not done (the note says why)."""
    _move(store, user, action_id, "in_progress", "reopen", note, version)


# ---------------------------------------------------------------------- reads
def _row(r: Any, today: date) -> dict[str, Any]:
    d = dict(r._mapping)
    d["due_date"] = _as_date(d["due_date"])
    for k in ("created_at", "completed_at", "verified_at", "started_at"):
        if k in d:
            d[k] = _utc(d[k])
    d["overdue"] = is_overdue(d["status"], d["due_date"], today)
    d["days_overdue"] = (today - d["due_date"]).days if d["overdue"] else 0
    return d


def actions(store: Store | Connection, status: str | None = None, owner: str | None = None,
            source_kind: str | None = None, source_id: int | None = None, overdue_only: bool = False,
            today: date | None = None) -> list[dict[str, Any]]:
    """The register (filtered), due date first; each row has ``overdue`` and ``days_overdue``."""
    today = today or datetime.now(UTC).date()
    t = S.corrective_actions
    q = select(t).order_by(t.c.due_date, t.c.id)
    if status:
        q = q.where(t.c.status == status)
    if owner:
        q = q.where(t.c.owner == owner)
    if source_kind:
        q = q.where(t.c.source_kind == source_kind)
    if source_id is not None:
        q = q.where(t.c.source_id == source_id)
    if overdue_only:
        q = q.where(t.c.status.in_(("open", "in_progress")), t.c.due_date < today)
    with _conn(store) as (conn, _kind):
        return [_row(r, today) for r in conn.execute(q)]


def overdue(store: Store | Connection, today: date | None = None) -> list[dict[str, Any]]:
    """Actions still open or in progress after their due date, the oldest due first."""
    return actions(store, overdue_only=True, today=today)


def get(store: Store | Connection, action_id: int, today: date | None = None) -> dict[str, Any]:
    t = S.corrective_actions
    with _conn(store) as (conn, _kind):
        r = conn.execute(select(t).where(t.c.id == action_id)).first()
    if r is None:
        raise ActionError(f"corrective action #{action_id} does not exist")
    return _row(r, today or datetime.now(UTC).date())


def unverified(conn: Connection, source_kind: str, source_id: int) -> list[dict[str, Any]]:
    """A source's actions not yet verified (what blocks closing it)."""
    t = S.corrective_actions
    return [dict(r._mapping) for r in conn.execute(
        select(t.c.id, t.c.title, t.c.status, t.c.owner).where(
            t.c.source_kind == source_kind, t.c.source_id == source_id, t.c.status != "verified").order_by(t.c.id))]


def describe(a: dict[str, Any]) -> str:
    """``#3 "Patch the feed handler" (in progress, owner olga)``."""
    return f"#{a['id']} \"{a['title']}\" ({STATUS_LABELS.get(a['status'], a['status']).lower()}, owner {a['owner']})"
