"""Incidents (RISK_METHODS §7 "Incidents"): log, triage, respond, contain, resolve, recover, review, close.

Severity sets the response time, counted from detection: SEV-1 immediate (due at detection), SEV-2
15 min, SEV-3 1 h, SEV-4 4 h. The response is the incident leaving triage — the escalation list of
its severity told and a commander named — so a triaged incident still in triage after its due time is
overdue (due exactly now is not). Re-grading an incident recomputes the due time from detection.

Lifecycle: detect → triage → communicate → contain → resolve → recover → review → closed, one step at a
time; resolve may go back to contain (the fix did not hold) and SEV-3/4 may close from recover without
a review. SEV-1/2 need the post-incident review written before they close, and no incident closes
while one of its corrective actions is not verified (the refusal lists them). Every transition writes
a timestamped `incident_events` row; every write is audited in the same transaction.

Root cause is by 5 whys (one to five whys, no gaps) or a fishbone over the six branches of §7, each
with a stated root cause; stored as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from models import schema as S
from services import actions, audit
from services.auth import User
from services.store import Store

STATES = ("detect", "triage", "communicate", "contain", "resolve", "recover", "review", "closed")
STATE_LABELS = {"detect": "Detected", "triage": "Triage", "communicate": "Communicate", "contain": "Contain",
                "resolve": "Resolve", "recover": "Recover", "review": "Post-incident review", "closed": "Closed"}
NEXT: dict[str, tuple[str, ...]] = {
    "detect": ("triage",), "triage": ("communicate",), "communicate": ("contain",), "contain": ("resolve",),
    "resolve": ("recover", "contain"), "recover": ("review", "closed"), "review": ("closed",), "closed": (),
}
RESPONSE_TIMES = {1: timedelta(0), 2: timedelta(minutes=15), 3: timedelta(hours=1), 4: timedelta(hours=4)}
RESPONSE_TEXT = {1: "immediate", 2: "15 min", 3: "1 h", 4: "4 h"}
REVIEW_REQUIRED = (1, 2)
FISHBONE_BRANCHES = ("people", "process", "technology", "data", "environment", "external")
ROOT_CAUSE_METHODS = ("five_whys", "fishbone")
WRITE_ROLES = ("risk_officer", "supervisor", "cro", "operations")


@dataclass(frozen=True)
class EscalationStep:
    """Who is told for a severity, how soon after detection, and the RiskDesk role that holds them."""

    who: str
    role: str | None  # users with this role are listed by name
    within: str


ESCALATION: dict[int, tuple[EscalationStep, ...]] = {
    1: (EscalationStep("Incident commander", None, "immediately"),
        EscalationStep("Desk heads (supervisors)", "supervisor", "immediately, by phone"),
        EscalationStep("CRO", "cro", "immediately, by phone"),
        EscalationStep("Senior management and Risk Committee", None, "within 1 h"),
        EscalationStep("Compliance: assess regulatory notification", None, "within 1 h"),
        EscalationStep("IT on-call and vendor support", None, "immediately")),
    2: (EscalationStep("Incident commander", None, "within 15 min"),
        EscalationStep("Desk heads (supervisors)", "supervisor", "within 15 min"),
        EscalationStep("CRO", "cro", "within 1 h"),
        EscalationStep("Compliance", None, "same business day"),
        EscalationStep("IT support", None, "within 15 min")),
    3: (EscalationStep("Incident commander (team lead)", None, "within 1 h"),
        EscalationStep("Risk officers", "risk_officer", "within 1 h"),
        EscalationStep("Desk heads (supervisors)", "supervisor", "in the daily risk report")),
    4: (EscalationStep("Operations queue", "operations", "within 4 h"),
        EscalationStep("Desk heads (supervisors)", "supervisor", "in the weekly report")),
}


class IncidentError(ValueError):
    """An incident step that is not allowed or input that cannot be used; the message says why."""


# ---------------------------------------------------------------------- pure rules
def response_due(detected_at: datetime, severity: int) -> datetime:
    """When the response is due: detection plus the severity's response time."""
    if severity not in RESPONSE_TIMES:
        raise IncidentError(f"severity: {severity!r} is not SEV-1..4")
    return detected_at + RESPONSE_TIMES[severity]


def is_overdue(state: str, severity: int | None, responded_at: datetime | None, due: datetime | None,
               now: datetime) -> bool:
    """Triaged, not yet responded to, and past its due time (due exactly now is not overdue)."""
    return (severity is not None and due is not None and responded_at is None and state != "closed"
            and now > due)


def check_transition(current: str, target: str) -> None:
    if target not in STATES:
        raise IncidentError(f"state: {target!r} is not one of {', '.join(STATES)}")
    if target not in NEXT[current]:
        nxt = " or ".join(STATE_LABELS[s].lower() for s in NEXT[current]) or "nothing (it is closed)"
        raise IncidentError(f"cannot move from {STATE_LABELS[current].lower()} to {STATE_LABELS[target].lower()}:"
                            f" the next step is {nxt}")


def check_root_cause(method: str, data: dict[str, Any]) -> dict[str, Any]:
    """The root cause as stored (trailing blank whys dropped, blank fishbone causes removed)."""
    root = str(data.get("root_cause", "")).strip()
    problem = str(data.get("problem", "")).strip()
    if method == "five_whys":
        whys = [str(w).strip() for w in data.get("whys", [])]
        while whys and not whys[-1]:
            whys.pop()
        if not whys:
            raise IncidentError("5 whys: answer at least why 1")
        if len(whys) > 5:
            raise IncidentError(f"5 whys: at most five whys, got {len(whys)}")
        for i, w in enumerate(whys, start=1):
            if not w:
                raise IncidentError(f"5 whys: why {i} is empty but a later why is filled")
        out: dict[str, Any] = {"problem": problem, "whys": whys}
    elif method == "fishbone":
        branches = data.get("branches", {})
        unknown = [b for b in branches if b not in FISHBONE_BRANCHES]
        if unknown:
            raise IncidentError(f"fishbone: {unknown[0]!r} is not a branch ({', '.join(FISHBONE_BRANCHES)})")
        clean = {b: [str(c).strip() for c in branches.get(b, []) if str(c).strip()] for b in FISHBONE_BRANCHES}
        if not any(clean.values()):
            raise IncidentError("fishbone: name at least one cause on a branch")
        out = {"problem": problem, "branches": clean}
    else:
        raise IncidentError(f"root cause method: {method!r} is not 5 whys or fishbone")
    if not root:
        raise IncidentError("root cause: state the root cause the analysis arrived at")
    out["root_cause"] = root
    return out


def _split(v: str | list[str] | tuple[str, ...]) -> str:
    items = v.split(",") if isinstance(v, str) else list(v)
    return ", ".join(s.strip() for s in items if s.strip())


def _utc(v: Any) -> datetime | None:
    if v is None or v == "":
        return None
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def may_write(user: User) -> bool:
    return user.role in WRITE_ROLES


def who_may_write() -> str:
    """Tooltip wording for a role that may not: who may."""
    from services.auth import ROLE_LABELS

    names = [ROLE_LABELS[r] for r in WRITE_ROLES]
    return f"Logging and working incidents is for {', '.join(names[:-1])} or {names[-1]}"


def _may_write(user: User | str) -> str:
    if isinstance(user, User):
        if not may_write(user):
            raise IncidentError(f"{user.login} ({user.role_label}) may not change incidents")
        return user.login
    return str(user)


# ---------------------------------------------------------------------- writes
def _event(conn: Connection, inc_id: int, ts: datetime, state: str, actor: str, note: str = "") -> None:
    conn.execute(insert(S.incident_events).values(incident_id=inc_id, ts=ts, state=state, actor=actor, note=note))


def _load(conn: Connection, inc_id: int, version: int | None = None) -> Any:
    r = conn.execute(select(S.incidents).where(S.incidents.c.id == inc_id)).first()
    if r is None:
        raise IncidentError(f"incident #{inc_id} does not exist")
    if version is not None and int(r.version) != version:
        raise IncidentError(f"incident #{inc_id} was changed by someone else: reload and try again")
    return r


def _save(conn: Connection, r: Any, **values: Any) -> None:
    n = conn.execute(update(S.incidents).where(S.incidents.c.id == r.id, S.incidents.c.version == r.version)
                     .values(version=int(r.version) + 1, **values)).rowcount
    if n != 1:
        raise IncidentError(f"incident #{r.id} was changed by someone else: reload and try again")


def _open(r: Any) -> None:
    if r.state == "closed":
        raise IncidentError(f"incident #{r.id} is closed")


def log_incident(store: Store, user: User | str, title: str, description: str, detected_by: str,
                 systems: str | list[str] = "", desks: str | list[str] = "", detected_at: datetime | None = None,
                 now: datetime | None = None) -> int:
    """Record a detected incident (state detect); its id."""
    now = now or datetime.now(UTC)
    detected_at = _utc(detected_at) or now
    title, detected_by = (title or "").strip(), (detected_by or "").strip()
    if not title:
        raise IncidentError("title: say what happened in a few words")
    if len(title) > 200:
        raise IncidentError("title: at most 200 characters")
    if not detected_by:
        raise IncidentError("detected by: name who detected it")
    if detected_at > now + timedelta(minutes=1):
        raise IncidentError("detected at: cannot be in the future")
    actor = _may_write(user)
    with store.begin() as conn:
        inc_id = int(conn.execute(insert(S.incidents).values(
            title=title, description=(description or "").strip(), detected_by=detected_by, detected_at=detected_at,
            systems=_split(systems), desks=_split(desks), state="detect", created_by=actor)
            .returning(S.incidents.c.id)).scalar_one())
        _event(conn, inc_id, now, "detect", actor, f"logged; detected by {detected_by}")
        audit.append(conn, store.kind, actor, "create", "incidents", str(inc_id), after=title)
    return inc_id


def triage(store: Store, user: User | str, inc_id: int, severity: int, note: str = "",
           now: datetime | None = None, version: int | None = None) -> datetime:
    """Grade an incident SEV-1..4 (from detect it moves to triage; later it is a re-grade); the due time."""
    now = now or datetime.now(UTC)
    actor = _may_write(user)
    with store.begin() as conn:
        r = _load(conn, inc_id, version)
        _open(r)
        due = response_due(_utc(r.detected_at) or now, int(severity))
        if r.state == "detect":
            state, text = "triage", f"SEV-{severity}: respond {RESPONSE_TEXT[severity]}"
        elif r.severity == severity:
            raise IncidentError(f"incident #{inc_id} is already SEV-{severity}")
        else:
            state, text = r.state, f"re-graded SEV-{r.severity} → SEV-{severity}"
        _save(conn, r, severity=int(severity), state=state, triaged_at=r.triaged_at or now, response_due_at=due)
        _event(conn, inc_id, now, state, actor, f"{text}. {note.strip()}".strip(" ."))
        audit.append(conn, store.kind, actor, "triage", "incidents", str(inc_id),
                     before="" if r.severity is None else f"SEV-{r.severity}", after=f"SEV-{severity}")
    return due


def set_commander(store: Store, user: User | str, inc_id: int, login: str, now: datetime | None = None,
                  version: int | None = None) -> None:
    """Name the incident commander (an active RiskDesk user)."""
    now = now or datetime.now(UTC)
    actor = _may_write(user)
    login = (login or "").strip()
    with store.begin() as conn:
        if not conn.execute(select(S.users.c.login).where(S.users.c.login == login, S.users.c.active)).first():
            raise IncidentError(f"commander: {login!r} is not an active RiskDesk user")
        r = _load(conn, inc_id, version)
        _open(r)
        _save(conn, r, commander=login)
        _event(conn, inc_id, now, r.state, actor, f"commander: {login}")
        audit.append(conn, store.kind, actor, "commander", "incidents", str(inc_id), before=r.commander or "",
                     after=login)


def advance(store: Store, user: User | str, inc_id: int, target: str, note: str = "",
            now: datetime | None = None, version: int | None = None) -> None:
    """Move to the next lifecycle state (closing goes through `close`)."""
    if target == "closed":
        close(store, user, inc_id, note, now=now, version=version)
        return
    now = now or datetime.now(UTC)
    actor = _may_write(user)
    with store.begin() as conn:
        r = _load(conn, inc_id, version)
        if target == "triage":
            raise IncidentError("triage: grade the incident SEV-1..4 to triage it")
        check_transition(r.state, target)
        values: dict[str, Any] = {"state": target}
        if r.state == "triage":
            if not r.commander:
                raise IncidentError("commander: name an incident commander before communicating")
            values["responded_at"] = r.responded_at or now
        _save(conn, r, **values)
        _event(conn, inc_id, now, target, actor, note.strip())
        audit.append(conn, store.kind, actor, "advance", "incidents", str(inc_id), before=r.state, after=target)


def set_notes(store: Store, user: User | str, inc_id: int, containment: str | None = None,
              recovery: str | None = None, version: int | None = None) -> None:
    """Containment and recovery notes (either may be left as it is with None)."""
    actor = _may_write(user)
    with store.begin() as conn:
        r = _load(conn, inc_id, version)
        _open(r)
        values = {k: v.strip() for k, v in (("containment", containment), ("recovery", recovery)) if v is not None}
        if not values:
            return
        _save(conn, r, **values)
        audit.append(conn, store.kind, actor, "notes", "incidents", str(inc_id),
                     before=json.dumps({k: getattr(r, k) for k in values}), after=json.dumps(values))


def set_root_cause(store: Store, user: User | str, inc_id: int, method: str, data: dict[str, Any],
                   version: int | None = None) -> dict[str, Any]:
    """Store a 5-whys or fishbone analysis (checked by `check_root_cause`); what was stored."""
    clean = check_root_cause(method, data)
    actor = _may_write(user)
    with store.begin() as conn:
        r = _load(conn, inc_id, version)
        _open(r)
        _save(conn, r, root_cause_method=method, root_cause=json.dumps(clean))
        audit.append(conn, store.kind, actor, "root_cause", "incidents", str(inc_id), before=r.root_cause,
                     after=json.dumps({"method": method, **clean}))
    return clean


def set_review(store: Store, user: User | str, inc_id: int, text: str, now: datetime | None = None,
               version: int | None = None) -> None:
    """Write the post-incident review (from recover on); signed by who wrote it."""
    now = now or datetime.now(UTC)
    actor = _may_write(user)
    if not (text or "").strip():
        raise IncidentError("review: write what happened, what worked, what did not and what changes")
    with store.begin() as conn:
        r = _load(conn, inc_id, version)
        _open(r)
        if r.state not in ("recover", "review"):
            raise IncidentError(f"review: written once the incident is recovering, it is at {r.state}")
        _save(conn, r, review=text.strip(), reviewed_by=actor, reviewed_at=now)
        audit.append(conn, store.kind, actor, "review", "incidents", str(inc_id), before=r.review,
                     after=text.strip())


def close_blockers(conn: Connection, r: Any) -> list[str]:
    """Why the incident cannot close now (empty when it can)."""
    out = []
    if r.state == "closed":
        return [f"incident #{r.id} is already closed"]
    if r.state not in ("recover", "review"):
        out.append(f"it is at {STATE_LABELS[r.state].lower()}: close from recover or post-incident review")
    if r.severity in REVIEW_REQUIRED and (r.state != "review" or not (r.review or "").strip()):
        out.append(f"SEV-{r.severity} needs its post-incident review written (state post-incident review) "
                   "before it closes")
    pending = actions.unverified(conn, "incident", int(r.id))
    if pending:
        out.append("corrective actions not verified: " + "; ".join(actions.describe(a) for a in pending))
    return out


def close(store: Store, user: User | str, inc_id: int, note: str = "", now: datetime | None = None,
          version: int | None = None) -> None:
    """Close the incident, or refuse naming every reason (review missing, unverified actions)."""
    now = now or datetime.now(UTC)
    actor = _may_write(user)
    with store.begin() as conn:
        r = _load(conn, inc_id, version)
        why = close_blockers(conn, r)
        if why:
            raise IncidentError(f"incident #{inc_id} cannot close: " + "; ".join(why))
        _save(conn, r, state="closed", closed_at=now)
        _event(conn, inc_id, now, "closed", actor, note.strip())
        audit.append(conn, store.kind, actor, "close", "incidents", str(inc_id), before=r.state, after="closed")


def add_action(store: Store, user: User | str, inc_id: int, title: str, owner: str, due_date: date | str,
               now: datetime | None = None) -> int:
    """A corrective action for the incident (in the register, source incident); its id."""
    now = now or datetime.now(UTC)
    actor = _may_write(user)
    with store.begin() as conn:
        r = _load(conn, inc_id)
        _open(r)
        aid = actions.create_action(conn, user, "incident", inc_id, title, owner, due_date)
        _event(conn, inc_id, now, r.state, actor, f"corrective action #{aid}: {title.strip()} (owner {owner})")
    return aid


# ---------------------------------------------------------------------- reads
def _row(r: Any, now: datetime) -> dict[str, Any]:
    d = dict(r._mapping)
    for k in ("detected_at", "closed_at", "triaged_at", "response_due_at", "responded_at", "reviewed_at"):
        d[k] = _utc(d.get(k))
    d["overdue"] = is_overdue(d["state"], d["severity"], d["responded_at"], d["response_due_at"], now)
    due = d["response_due_at"]
    d["seconds_left"] = (due - now).total_seconds() if due is not None and d["responded_at"] is None else None
    d["root_cause"] = json.loads(d["root_cause"] or "{}")
    return d


def incidents(store: Store, state: str | None = None, severity: int | None = None, open_only: bool = False,
              now: datetime | None = None) -> list[dict[str, Any]]:
    """Incidents newest first, each with ``overdue`` and ``seconds_left`` to its response."""
    now = now or datetime.now(UTC)
    t = S.incidents
    q = select(t).order_by(t.c.detected_at.desc(), t.c.id.desc())
    if state:
        q = q.where(t.c.state == state)
    if severity:
        q = q.where(t.c.severity == severity)
    if open_only:
        q = q.where(t.c.state != "closed")
    with store.begin() as conn:
        return [_row(r, now) for r in conn.execute(q)]


def overdue(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    """Triaged incidents not responded to after their due time, the longest overdue first."""
    now = now or datetime.now(UTC)
    t = S.incidents
    q = (select(t).where(t.c.severity.is_not(None), t.c.responded_at.is_(None), t.c.state != "closed",
                         t.c.response_due_at < now).order_by(t.c.response_due_at, t.c.id))
    with store.begin() as conn:
        return [_row(r, now) for r in conn.execute(q)]


def detail(store: Store, inc_id: int, now: datetime | None = None) -> dict[str, Any]:
    """One incident with its timeline, corrective actions, escalation list and close blockers."""
    now = now or datetime.now(UTC)
    with store.begin() as conn:
        r = _load(conn, inc_id)
        d = _row(r, now)
        ev = S.incident_events
        d["events"] = [{**dict(e._mapping), "ts": _utc(e.ts)} for e in conn.execute(
            select(ev).where(ev.c.incident_id == inc_id).order_by(ev.c.ts, ev.c.id))]
        d["actions"] = actions.actions(conn, source_kind="incident", source_id=inc_id, today=now.date())
        d["blockers"] = close_blockers(conn, r)
        d["escalation"] = escalation(conn, d["severity"]) if d["severity"] else []
        d["loss_events"] = loss_events_of(conn, inc_id)
    return d


def loss_events_of(conn: Connection, inc_id: int) -> list[dict[str, Any]]:
    """The loss events recorded against an incident (net in HKD at the rate when recorded), oldest first."""
    t = S.loss_events
    out = []
    for r in conn.execute(select(t.c.id, t.c.event_type, t.c.discovered_on, t.c.gross_loss, t.c.recoveries,
                                 t.c.currency, t.c.fx_rate, t.c.near_miss, t.c.reporting_route)
                          .where(t.c.incident_id == inc_id).order_by(t.c.discovered_on, t.c.id)):
        d = dict(r._mapping)
        d["net_hkd"] = (float(r.gross_loss) - float(r.recoveries)) * float(r.fx_rate or 1.0)
        out.append(d)
    return out


LINKABLE_DAYS = 90  # a loss event may be linked to an open incident or one closed in the last 90 days


def linkable(conn: Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """Incidents a loss event can be recorded against: open ones and recently closed ones, newest first."""
    now = now or datetime.now(UTC)
    t = S.incidents
    q = (select(t.c.id, t.c.title, t.c.severity, t.c.state, t.c.detected_at)
         .where((t.c.state != "closed") | (t.c.closed_at >= now - timedelta(days=LINKABLE_DAYS)))
         .order_by(t.c.detected_at.desc(), t.c.id.desc()).limit(500))
    return [dict(r._mapping) for r in conn.execute(q)]


def label(r: dict[str, Any] | Any) -> str:
    """``#12 SEV-2 Order router outage (closed)`` — an incident in a picker or a register cell."""
    m = r if isinstance(r, dict) else dict(r._mapping)
    sev = f" SEV-{m['severity']}" if m.get("severity") else ""
    return f"#{m['id']}{sev} {m['title']}" + (f" ({STATE_LABELS[m['state']].lower()})" if m.get("state") else "")


def escalation(conn: Connection, severity: int) -> list[dict[str, Any]]:
    """The escalation list of a severity with the active users who hold each role."""
    people: dict[str, list[str]] = {}
    for login, role in conn.execute(select(S.users.c.login, S.users.c.role).where(S.users.c.active)
                                    .order_by(S.users.c.login)):
        people.setdefault(role, []).append(login)
    return [{"who": s.who, "within": s.within, "people": people.get(s.role, []) if s.role else []}
            for s in ESCALATION[severity]]


def active_users(store: Store) -> list[str]:
    with store.begin() as conn:
        return list(conn.execute(select(S.users.c.login).where(S.users.c.active).order_by(S.users.c.login))
                    .scalars())

