"""Operational loss events (RISK_METHODS §7 "Loss events"): the Basel taxonomy, reporting routed by
gross loss with due times, regulatory duties from the notification matrix, and the chart figures.

Routing is by the gross loss in HKD (the currency's rate in the store when recorded): above 10,000
the department head, above 50,000 also the CRO, above 100,000 also senior management and the Risk
Committee, above 500,000 also the board with an assessment of regulatory notification; each report
is due 24 h after discovery. A near miss (no loss) stays in the register. The thresholds are
strict: exactly 10,000.00 is not above 10,000.

The notification matrix (a four-eyes risk parameter, change kind ``notification_rule``) maps an
event type (or ``*`` for every type) and an amount to a duty due some hours after discovery. A
rule with minimum 0 applies to every event of its type; otherwise the gross loss must exceed the
minimum, as §7's thresholds do. Near misses carry no duty.

Loss events are operational records: written directly, audited in the same transaction. Route and
duty are stored as decided when recorded, so a later matrix change does not rewrite history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, insert, select, update

from models import schema as S
from services import audit
from services.auth import AuthError, User, permitted
from services.calendar import HK_TZ
from services.store import Store

EVENT_TYPES = (  # Basel II level-1 event types
    "Internal Fraud", "External Fraud", "Employment Practices & Workplace Safety",
    "Clients, Products & Business Practices", "Damage to Physical Assets",
    "Business Disruption & System Failures", "Execution, Delivery & Process Management")
BUSINESS_LINES = (  # Basel II level-1 business lines
    "Corporate Finance", "Trading & Sales", "Retail Brokerage", "Retail Banking", "Commercial Banking",
    "Payment & Settlement", "Agency Services", "Asset Management")
CAUSES = ("people", "process", "system", "external")
REPORT_WITHIN = timedelta(hours=24)
# (gross loss above, who is told) — cumulative: a larger loss is also reported to every lower level
ROUTE_LEVELS = ((10_000.0, "Department head"), (50_000.0, "CRO"),
                (100_000.0, "Senior management and Risk Committee"), (500_000.0, "Board"))
RECORD_ROLES = ("risk_officer", "operations", "supervisor", "cro")
RULE_KIND = "notification_rule"


class LossEventError(ValueError):
    """Input that cannot be recorded; ``field`` names the form field it is about."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


# ---------------------------------------------------------------------- pure rules
@dataclass(frozen=True)
class Route:
    """Who must be told of a loss and by when (``due_at`` None: the register only)."""

    level: int  # 0 register only … 4 board
    recipients: tuple[str, ...]
    due_at: datetime | None
    assess_regulatory: bool

    @property
    def text(self) -> str:
        if not self.recipients:
            return "Loss register only"
        extra = "; assess regulatory notification" if self.assess_regulatory else ""
        return f"{', '.join(self.recipients)} within 24 h{extra}"


def reporting_route(gross_hkd: float, discovered_at: datetime, near_miss: bool = False) -> Route:
    """§7's reporting route of a gross loss (HKD), due 24 h after discovery."""
    if near_miss:
        return Route(0, (), None, False)
    who = tuple(name for above, name in ROUTE_LEVELS if gross_hkd > above)
    if not who:
        return Route(0, (), None, False)
    return Route(len(who), who, discovered_at + REPORT_WITHIN, len(who) == len(ROUTE_LEVELS))


@dataclass(frozen=True)
class Duty:
    rule_id: int
    duty: str
    due_at: datetime | None


def rule_applies(rule: dict[str, Any], event_type: str, gross_hkd: float) -> bool:
    if rule["event_type"] not in ("*", event_type):
        return False
    lo = float(rule["min_amount"])
    return gross_hkd >= 0 if lo == 0 else gross_hkd > lo


def regulatory_duties(rules: list[dict[str, Any]], event_type: str, gross_hkd: float, discovered_at: datetime,
                      near_miss: bool = False) -> list[Duty]:
    """The matrix's duties for an event, earliest due first (none for a near miss)."""
    if near_miss:
        return []
    out = [Duty(int(r["id"]), str(r["duty"]),
                discovered_at + timedelta(hours=int(r["due_hours"])) if r.get("due_hours") is not None else None)
           for r in rules if rule_applies(r, event_type, gross_hkd)]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(out, key=lambda d: (d.due_at or far, d.rule_id))


def report_state(due_at: datetime | None, reported_at: datetime | None, now: datetime) -> str:
    """'' (nothing to report), 'reported', 'overdue' (past due, not reported) or 'due'."""
    if due_at is None:
        return ""
    if reported_at is not None:
        return "reported"
    due = due_at if due_at.tzinfo else due_at.replace(tzinfo=UTC)
    return "overdue" if now > due else "due"


def duty_text(duties: list[Duty]) -> str:
    return "; ".join(d.duty for d in duties) if duties else "none"


@dataclass
class LossEventInput:
    event_type: str
    business_line: str
    cause: str
    occurred_on: date
    discovered_at: datetime
    gross_loss: float
    recoveries: float = 0.0
    currency: str = "HKD"
    near_miss: bool = False
    accounted_on: date | None = None
    resolved_on: date | None = None
    description: str = ""
    incident_id: int | None = None

    @property
    def net_loss(self) -> float:
        return float(self.gross_loss) - float(self.recoveries)


@dataclass(frozen=True)
class Assessment:
    """What recording the input would decide: the figures in HKD, the route and the duties."""

    fx_rate: float
    gross_hkd: float
    net_hkd: float
    route: Route
    duties: list[Duty] = field(default_factory=list)


def discovered_on(inp: LossEventInput) -> date:
    return inp.discovered_at.astimezone(HK_TZ).date()


def validate(inp: LossEventInput, fx: dict[str, float], now: datetime | None = None) -> None:
    """Raise `LossEventError` naming the first field that is wrong."""
    today = (now or datetime.now(UTC)).astimezone(HK_TZ).date()
    if inp.event_type not in EVENT_TYPES:
        raise LossEventError("Event type", f"{inp.event_type!r} is not a Basel event type")
    if inp.business_line not in BUSINESS_LINES:
        raise LossEventError("Business line", f"{inp.business_line!r} is not a Basel business line")
    if inp.cause not in CAUSES:
        raise LossEventError("Cause", f"one of {', '.join(CAUSES)}")
    found = discovered_on(inp)
    if inp.occurred_on > today:
        raise LossEventError("Occurred", "cannot be in the future")
    if found > today:
        raise LossEventError("Discovered", "cannot be in the future")
    if found < inp.occurred_on:
        raise LossEventError("Discovered", f"{found} is before the occurrence ({inp.occurred_on})")
    if inp.accounted_on is not None and inp.accounted_on < inp.occurred_on:
        raise LossEventError("Accounted", f"{inp.accounted_on} is before the occurrence ({inp.occurred_on})")
    if inp.resolved_on is not None and inp.resolved_on < found:
        raise LossEventError("Resolved", f"{inp.resolved_on} is before the discovery ({found})")
    for name, v in (("Gross loss", inp.gross_loss), ("Recoveries", inp.recoveries)):
        if not math.isfinite(float(v)) or v < 0:
            raise LossEventError(name, "must be a number ≥ 0")
    if inp.recoveries > inp.gross_loss:
        raise LossEventError("Recoveries", f"{inp.recoveries:,.2f} exceed the gross loss ({inp.gross_loss:,.2f})")
    if inp.near_miss and inp.gross_loss != 0:
        raise LossEventError("Gross loss", "a near miss has no loss: enter 0 or untick near miss")
    if not inp.near_miss and inp.gross_loss == 0:
        raise LossEventError("Gross loss", "a loss event needs a loss above 0 (or tick near miss)")
    if inp.currency not in fx:
        raise LossEventError("Currency", f"{inp.currency!r} has no rate in the store ({', '.join(sorted(fx))})")
    if not inp.description.strip():
        raise LossEventError("Description", "say what happened")


def assess(inp: LossEventInput, rules: list[dict[str, Any]], fx: dict[str, float]) -> Assessment:
    """HKD figures, route and duties of a (valid) input — the form shows this before saving."""
    rate = float(fx.get(inp.currency, math.nan))
    gross = float(inp.gross_loss) * rate
    net = inp.net_loss * rate
    return Assessment(rate, gross, net, reporting_route(gross, inp.discovered_at, inp.near_miss),
                      regulatory_duties(rules, inp.event_type, gross, inp.discovered_at, inp.near_miss))


# ---------------------------------------------------------------------- store
def fx_rates(conn: Connection) -> dict[str, float]:
    """HKD per unit of each currency in the store (HKD itself is always 1)."""
    rates = {str(c): float(r) for c, r in conn.execute(select(S.currencies.c.code, S.currencies.c.fx_rate))}
    rates.setdefault("HKD", 1.0)
    return rates


def matrix_rules(conn: Connection) -> list[dict[str, Any]]:
    t = S.notification_matrix
    return [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.event_type, t.c.min_amount, t.c.id))]


def may_record(user: User) -> bool:
    return user.role in RECORD_ROLES


def record_loss_event(store: Store, user: User, inp: LossEventInput, now: datetime | None = None) -> int:
    """Validate, route and store one loss event with its audit record, in one transaction."""
    if not may_record(user):
        raise AuthError(f"{user.login} ({user.role_label}) may not record loss events")
    now = now or datetime.now(UTC)
    with store.begin() as conn:
        fx = fx_rates(conn)
        validate(inp, fx, now)
        link = _incident_link(conn, inp.incident_id)
        a = assess(inp, matrix_rules(conn), fx)
        row = _row(inp, a, user.login, now)
        new_id = int(conn.execute(insert(S.loss_events).values(**row).returning(S.loss_events.c.id)).scalar_one())
        audit.append(conn, store.kind, user.login, "record", "loss_events", str(new_id), "",
                     f"{inp.event_type} · {inp.business_line} · gross {inp.gross_loss:,.2f} {inp.currency} · "
                     f"{a.route.text} · duty: {duty_text(a.duties)}{link}")
    return new_id


def _incident_link(conn: Connection, incident_id: int | None) -> str:
    """`` · incident #12`` for the audit text, or `LossEventError` on the Incident field if it does not exist."""
    if incident_id is None:
        return ""
    if conn.execute(select(S.incidents.c.id).where(S.incidents.c.id == int(incident_id))).first() is None:
        raise LossEventError("Incident", f"#{incident_id} does not exist")
    return f" · incident #{int(incident_id)}"


def _row(inp: LossEventInput, a: Assessment, actor: str, now: datetime) -> dict[str, Any]:
    return {
        "event_type": inp.event_type, "business_line": inp.business_line, "cause": inp.cause,
        "occurred_on": inp.occurred_on, "discovered_on": discovered_on(inp), "discovered_at": inp.discovered_at,
        "accounted_on": inp.accounted_on, "resolved_on": inp.resolved_on, "gross_loss": float(inp.gross_loss),
        "recoveries": float(inp.recoveries), "currency": inp.currency, "fx_rate": a.fx_rate,
        "near_miss": bool(inp.near_miss), "description": inp.description.strip(), "incident_id": inp.incident_id,
        "reporting_route": a.route.text, "report_due_at": a.route.due_at, "regulatory_duty": duty_text(a.duties),
        "duty_due_at": a.duties[0].due_at if a.duties else None, "created_by": actor, "created_at": now,
        "reported_at": None, "reported_by": None}


def mark_reported(store: Store, user: User, event_id: int, note: str = "", now: datetime | None = None) -> None:
    """Record that the event's route was reported (to everyone on it); audited."""
    if not may_record(user):
        raise AuthError(f"{user.login} ({user.role_label}) may not record loss-event reports")
    now = now or datetime.now(UTC)
    t = S.loss_events
    with store.begin() as conn:
        r = conn.execute(select(t.c.report_due_at, t.c.reported_at, t.c.reporting_route).where(
            t.c.id == event_id)).first()
        if r is None:
            raise LossEventError("", f"loss event {event_id} does not exist")
        if r.report_due_at is None:
            raise LossEventError("", f"loss event {event_id} stays in the loss register: nobody to report to")
        if r.reported_at is not None:
            raise LossEventError("", f"loss event {event_id} was already reported")
        conn.execute(update(t).where(t.c.id == event_id).values(reported_at=now, reported_by=user.login,
                                                                version=t.c.version + 1))
        audit.append(conn, store.kind, user.login, "reported", "loss_events", str(event_id), "",
                     f"{r.reporting_route}{': ' + note.strip() if note.strip() else ''}")


def add_corrective_action(store: Store, user: User, event_id: int, title: str, owner: str, due: date) -> int:
    """A corrective action (`services.actions`) for a loss event, committed with its audit record."""
    from services import actions

    if not may_record(user):
        raise AuthError(f"{user.login} ({user.role_label}) may not open corrective actions for loss events")
    with store.begin() as conn:
        if conn.execute(select(S.loss_events.c.id).where(S.loss_events.c.id == event_id)).first() is None:
            raise LossEventError("", f"loss event {event_id} does not exist")
        return actions.create_action(conn, user, "loss_event", event_id, title, owner, due)


def open_actions(conn: Connection) -> dict[int, str]:
    """loss event id → its corrective actions in a few words (``2 actions, 1 open``)."""
    from services import actions

    out: dict[int, list[str]] = {}
    for a in actions.actions(conn, source_kind="loss_event"):
        out.setdefault(int(a["source_id"]), []).append(str(a["status"]))
    return {k: f"{len(v)} action{'s' if len(v) > 1 else ''}, {sum(s != 'verified' for s in v)} not verified"
            for k, v in out.items()}


def events_frame(store: Store) -> pd.DataFrame:
    """Every loss event with net loss and the HKD figures (one row per event, newest first)."""
    t = S.loss_events
    with store.begin() as conn:
        rows = conn.execute(select(t).order_by(t.c.discovered_on.desc(), t.c.id.desc())).mappings().all()
    df = pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in t.columns])
    return add_figures(df)


def add_figures(df: pd.DataFrame) -> pd.DataFrame:
    """net_loss, gross_hkd, net_hkd and a month column, vectorised."""
    df = df.copy()
    gross = df["gross_loss"].astype(float).to_numpy()
    rec = df["recoveries"].astype(float).to_numpy()
    rate = df["fx_rate"].astype(float).fillna(1.0).to_numpy() if "fx_rate" in df else np.ones(len(df))
    df["net_loss"] = gross - rec
    df["gross_hkd"] = gross * rate
    df["net_hkd"] = (gross - rec) * rate
    df["near_miss"] = df["near_miss"].astype(bool)
    df["month"] = pd.to_datetime(df["discovered_on"]).dt.to_period("M") if len(df) else pd.Series(dtype=object)
    return df


# ---------------------------------------------------------------------- aggregations (charts)
def breakdown(df: pd.DataFrame, by: str, order: tuple[str, ...] = ()) -> pd.DataFrame:
    """Events, near misses, gross and net (HKD) per value of ``by`` (event_type, business_line, cause);
    every value of ``order`` is listed (zeros when none), largest net loss first otherwise."""
    g = df.groupby(by, sort=False).agg(events=("id", "size"), near_misses=("near_miss", "sum"),
                                       gross_hkd=("gross_hkd", "sum"), net_hkd=("net_hkd", "sum"))
    if order:
        g = g.reindex(list(order) + [k for k in g.index if k not in order], fill_value=0)
    else:
        g = g.sort_values("net_hkd", ascending=False)
    g.index.name = by
    return g.reset_index().astype({"events": int, "near_misses": int})


def monthly_trend(df: pd.DataFrame, end: date, months: int = 12) -> pd.DataFrame:
    """Events, near misses, gross and net (HKD) per month of discovery for the ``months`` up to ``end``."""
    last = pd.Period(end, "M")
    idx = pd.period_range(last - (months - 1), last, freq="M")
    g = df.groupby("month").agg(events=("id", "size"), near_misses=("near_miss", "sum"),
                                gross_hkd=("gross_hkd", "sum"), net_hkd=("net_hkd", "sum")) if len(df) else None
    out = (g.reindex(idx, fill_value=0) if g is not None else
           pd.DataFrame(0, index=idx, columns=["events", "near_misses", "gross_hkd", "net_hkd"]))
    out.index.name = "month"
    return out.reset_index().astype({"events": int, "near_misses": int, "gross_hkd": float, "net_hkd": float})


# ---------------------------------------------------------------------- the matrix (four-eyes)
def validate_rule(event_type: str, min_amount: float, duty: str, due_hours: int | None) -> None:
    if event_type != "*" and event_type not in EVENT_TYPES:
        raise LossEventError("Event type", f"{event_type!r} is not a Basel event type (or * for all)")
    if not math.isfinite(float(min_amount)) or min_amount < 0:
        raise LossEventError("Above (HKD)", "must be a number ≥ 0")
    if not duty.strip():
        raise LossEventError("Duty", "say what must be done")
    if due_hours is not None and (int(due_hours) != due_hours or due_hours <= 0):
        raise LossEventError("Due (hours)", "a whole number of hours above 0")


def propose_rule(store: Store, user: User, rule_id: int | None, event_type: str, min_amount: float, duty: str,
                 due_hours: int | None, reason: str) -> int:
    """A change request for a new (``rule_id`` None) or changed matrix rule; applied on approval."""
    from services import changes

    validate_rule(event_type, min_amount, duty, due_hours)
    if not reason.strip():
        raise LossEventError("Reason", "give a reason: the checker decides on it")
    if not permitted(store, user, "request", RULE_KIND):
        raise AuthError(f"{user.login} ({user.role_label}) may not request notification-matrix changes")
    after = {"event_type": event_type, "min_amount": float(min_amount), "duty": duty.strip(),
             "due_hours": None if due_hours is None else int(due_hours)}
    with store.begin() as conn:
        if rule_id is None:
            new_id = changes.insert_id_floor(conn, "notification_matrix") + 1
            return changes.submit(store, user, RULE_KIND, {"id": new_id}, after, reason.strip(), op="insert",
                                  conn=conn)
        return changes.submit(store, user, RULE_KIND, {"id": int(rule_id)}, after, reason.strip(), conn=conn)


def propose_rule_delete(store: Store, user: User, rule_id: int, reason: str) -> int:
    from services import changes

    if not reason.strip():
        raise LossEventError("Reason", "give a reason: the checker decides on it")
    return changes.submit(store, user, RULE_KIND, {"id": int(rule_id)}, {}, reason.strip(), op="delete")


def pending_rule_requests(conn: Connection) -> dict[int, str]:
    """rule id → ``request #12 pending`` for matrix rules with a request waiting."""
    import json

    t = S.change_requests
    out: dict[int, str] = {}
    for r in conn.execute(select(t.c.id, t.c.op, t.c.target_key).where(t.c.kind == RULE_KIND,
                                                                        t.c.status == "pending")):
        out[int(json.loads(r.target_key)["id"])] = f"request #{r.id} pending ({r.op})"
    return out


# ---------------------------------------------------------------------- the dock's snapshot
@dataclass
class LossEventsSnapshot:
    events: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    fx: dict[str, float]
    pending: dict[int, str]
    by_type: pd.DataFrame
    by_line: pd.DataFrame
    by_cause: pd.DataFrame
    trend: pd.DataFrame
    may_record: bool
    may_request: bool
    incidents: list[dict[str, Any]] = field(default_factory=list)  # the form's picker: open and recent


def load_snapshot(store: Store, user: User, today: date | None = None) -> LossEventsSnapshot:
    """Everything the dock shows, read in one go off the GUI thread."""
    today = today or datetime.now(HK_TZ).date()
    now = datetime.now(UTC)
    df = events_frame(store)
    from services import incidents as inc

    with store.begin() as conn:
        rules, fx, pending = matrix_rules(conn), fx_rates(conn), pending_rule_requests(conn)
        acts = open_actions(conn)
        linkable = inc.linkable(conn, now)
        ids = {int(i) for i in df["incident_id"].dropna().tolist()}
        titles = {int(r.id): inc.label(r) for r in conn.execute(
            select(S.incidents.c.id, S.incidents.c.title, S.incidents.c.severity, S.incidents.c.state)
            .where(S.incidents.c.id.in_(ids)))} if ids else {}
    plain = df.drop(columns=["month"]).astype(object)
    events = plain.where(plain.notna(), None).to_dict("records")  # no NaT / NaN for the GUI
    for e in events:
        e["near_miss"] = bool(e["near_miss"])
        e["actions"] = acts.get(int(e["id"]), "")
        e["incident"] = titles.get(int(e["incident_id"]), "") if e["incident_id"] is not None else ""
        for k in ("discovered_at", "report_due_at", "duty_due_at", "created_at", "reported_at"):
            if isinstance(e[k], pd.Timestamp):
                e[k] = e[k].to_pydatetime()
        e["report_state"] = report_state(e["report_due_at"], e["reported_at"], now)
    return LossEventsSnapshot(
        events, rules, fx, pending, breakdown(df, "event_type", EVENT_TYPES),
        breakdown(df, "business_line"), breakdown(df, "cause", CAUSES), monthly_trend(df, today),
        may_record(user), permitted(store, user, "request", RULE_KIND), linkable)


# ---------------------------------------------------------------------- demo
_DEMO_MIX = (  # event type, business line, cause, weight, median gross HKD
    ("Execution, Delivery & Process Management", "Trading & Sales", "process", 0.34, 18_000.0),
    ("Execution, Delivery & Process Management", "Retail Brokerage", "people", 0.18, 9_000.0),
    ("Business Disruption & System Failures", "Trading & Sales", "system", 0.14, 40_000.0),
    ("External Fraud", "Retail Brokerage", "external", 0.10, 60_000.0),
    ("Clients, Products & Business Practices", "Retail Brokerage", "people", 0.09, 35_000.0),
    ("Execution, Delivery & Process Management", "Payment & Settlement", "process", 0.08, 12_000.0),
    ("Damage to Physical Assets", "Agency Services", "external", 0.03, 25_000.0),
    ("Internal Fraud", "Trading & Sales", "people", 0.02, 150_000.0),
    ("Employment Practices & Workplace Safety", "Corporate Finance", "people", 0.02, 30_000.0),
)
_DEMO_TEXT = {
    "Execution, Delivery & Process Management": "Late settlement instruction; buy-in costs charged by the counterparty",
    "Business Disruption & System Failures": "Order router outage during the morning session; orders re-keyed",
    "External Fraud": "Account takeover: unauthorised withdrawal to a third-party bank account",
    "Clients, Products & Business Practices": "Unsuitable product sale; compensation paid after complaint",
    "Damage to Physical Assets": "Water damage in the branch server room",
    "Internal Fraud": "Unauthorised trading by a dealer in a client account",
    "Employment Practices & Workplace Safety": "Settlement of an employment claim",
}


def seed_loss_events(store: Store, seed: int = 7, months: int = 12, per_month: int = 6,
                     today: date | None = None) -> int:
    """A year of loss events and near misses for the demo store (routed by the rules above), and the demo
    incidents' own loss events linked to them; none when the store already has loss events. Returns how
    many were written."""
    today = today or datetime.now(HK_TZ).date()
    rng = np.random.default_rng(seed + 71)
    with store.begin() as conn:
        if conn.execute(select(S.loss_events.c.id).limit(1)).first() is not None:
            return 0
        fx, rules = fx_rates(conn), matrix_rules(conn)
        weights = np.array([m[3] for m in _DEMO_MIX])
        n = int(months * per_month)
        pick = rng.choice(len(_DEMO_MIX), size=n, p=weights / weights.sum())
        ago = rng.integers(0, months * 30, size=n)
        lag = rng.integers(0, 6, size=n)
        sizes = rng.lognormal(0.0, 1.1, size=n)
        near = rng.random(n) < 0.15
        rec_share = np.where(rng.random(n) < 0.35, rng.uniform(0.1, 0.9, size=n), 0.0)
        rows = []
        for i in range(n):
            etype, line, cause, _w, median = _DEMO_MIX[int(pick[i])]
            found = today - timedelta(days=int(ago[i]))
            occurred = found - timedelta(days=int(lag[i]))
            gross = 0.0 if near[i] else float(round(median * sizes[i], -1) or 10.0)
            cur = "USD" if (i % 9 == 0 and "USD" in fx and not near[i]) else "HKD"
            if cur != "HKD":
                gross = round(gross / fx[cur], 2)
            at = datetime(found.year, found.month, found.day, 9 + int(i % 8), 15, tzinfo=HK_TZ).astimezone(UTC)
            inp = LossEventInput(etype, line, cause, occurred, at, gross, round(gross * float(rec_share[i]), 2), cur,
                                 bool(near[i]), accounted_on=None if near[i] else min(today, found + timedelta(days=2)),
                                 resolved_on=found + timedelta(days=int(lag[i]) + 5) if ago[i] > 20 else None,
                                 description=("Near miss — caught before settlement: " if near[i] else "")
                                 + _DEMO_TEXT[etype])
            row = _row(inp, assess(inp, rules, fx), "olga" if cause in ("process", "system") else "rita", at)
            if row["report_due_at"] is not None and ago[i] > 3:  # the older ones were reported in time
                row.update(reported_at=at + timedelta(hours=int(3 + i % 15)), reported_by="rita")
            rows.append(row)
        rows += _demo_incident_losses(conn, fx, rules, today)
        rows.sort(key=lambda r: (r["discovered_at"], r["occurred_on"]))  # ids follow discovery, as in real life
        conn.execute(insert(S.loss_events), rows)
        audit.append(conn, store.kind, "demo", "seed", "loss_events", "", "", f"{len(rows)} demo loss events")
    return len(rows)


_DEMO_INCIDENT_LOSSES = (  # demo incident title starts with, event type, line, cause, gross HKD (0: near miss), text
    ("OCG gateway disconnect", "Business Disruption & System Failures", "Trading & Sales", "system", 38_400.0,
     "Compensation to 3 clients whose orders were rejected during the OCG gateway disconnect"),
    ("Rights issue not applied", "Execution, Delivery & Process Management", "Payment & Settlement", "process", 0.0,
     "Near miss — rights entitlements booked before any of the 14 clients sold short of them"),
)


def _demo_incident_losses(conn: Connection, fx: dict[str, float], rules: list[dict[str, Any]],
                          today: date) -> list[dict[str, Any]]:
    """The demo incidents' own loss events (linked to them), when the demo incidents are there."""
    rows = []
    for prefix, etype, line, cause, gross, text in _DEMO_INCIDENT_LOSSES:
        r = conn.execute(select(S.incidents.c.id, S.incidents.c.detected_at)
                         .where(S.incidents.c.title.startswith(prefix)).order_by(S.incidents.c.id)).first()
        if r is None:
            continue
        detected = r.detected_at if r.detected_at.tzinfo else r.detected_at.replace(tzinfo=UTC)
        at = detected + timedelta(hours=3)
        found = at.astimezone(HK_TZ).date()
        if found > today:
            continue
        inp = LossEventInput(etype, line, cause, detected.astimezone(HK_TZ).date(), at, gross, 0.0, "HKD", gross == 0,
                             accounted_on=None if gross == 0 else min(today, found + timedelta(days=2)),
                             description=text, incident_id=int(r.id))
        row = _row(inp, assess(inp, rules, fx), "rita", at)
        if row["report_due_at"] is not None and at + timedelta(hours=5) < datetime.now(UTC):
            row.update(reported_at=at + timedelta(hours=5), reported_by="rita")
        rows.append(row)
    return rows
