"""What the KRI dashboard shows, read in one background transaction (RISK_METHODS §7 "KRIs").

`load_dashboard` reads the catalogue, every KRI's latest readings (one query over `kri_readings`,
grouped in numpy), the open investigation / CRO-escalation tasks, the pending threshold requests
and the user's rights in a single transaction, so the dashboard costs one round trip however long
the history is. `drill_records` is what stands behind one KRI's value: the incidents, breaks,
margin calls, trade errors or recon import of a computed KRI, or the readings as entered.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import select

from models import schema as S
from services import kri
from services.auth import User
from services.kri import AMBER_STREAK_LIMIT, CHART_DAYS, COMPUTED, ENTER_ROLES, KriStatus
from services.store import Store

READINGS_SHOWN = 30  # an entered KRI's drill-down: its last readings


@dataclass
class KriDashboardData:
    statuses: list[KriStatus]
    tasks: list[dict[str, Any]]
    pending: dict[str, dict[str, Any]]  # KRI code → the pending threshold request {id, amber, red, maker}
    readings: int  # readings read
    may_enter: bool
    may_request: bool
    took_ms: float = 0.0
    by_code: dict[str, KriStatus] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_code = {s.code: s for s in self.statuses}

    def counts(self) -> dict[str, int]:
        out = {"green": 0, "amber": 0, "red": 0, "": 0}
        for s in self.statuses:
            out[s.colour] += 1
        return out


def needs_commentary(st: KriStatus) -> bool:
    """An amber or red latest reading without commentary (the dashboard asks for it)."""
    return st.colour in ("amber", "red") and not st.comment.strip()


def load_dashboard(store: Store, user: User | None = None, chart_days: int = CHART_DAYS) -> KriDashboardData:
    """Everything the dashboard shows, from one transaction."""
    t0 = time.perf_counter()
    t, ct, rp = S.kri_readings, S.change_requests, S.role_permissions
    with store.begin() as conn:
        kris = [dict(r._mapping) for r in conn.execute(select(S.kris).order_by(S.kris.c.code))]
        rows = conn.execute(select(t.c.kri_code, t.c.day, t.c.value, t.c.comment)
                            .order_by(t.c.kri_code, t.c.day)).all()
        open_tasks = [dict(r._mapping) for r in conn.execute(
            select(S.kri_tasks).where(S.kri_tasks.c.status == "open")
            .order_by(S.kri_tasks.c.due_at, S.kri_tasks.c.id))]
        pending_rows = conn.execute(select(ct.c.id, ct.c.target_key, ct.c.after, ct.c.maker)
                                    .where(ct.c.kind == "kri", ct.c.status == "pending")
                                    .order_by(ct.c.id)).all()
        may_request = False
        if user is not None:
            may_request = conn.execute(select(rp.c.role).where(
                rp.c.role == user.role, rp.c.action == "request", rp.c.kind.in_(["kri", "*"]))).first() is not None
    hol = kri._holidays()
    n = len(rows)
    spans: dict[str, tuple[int, int]] = {}
    if n:
        codes = np.array([r[0] for r in rows])
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        ends = np.r_[starts[1:], n]
        spans = {str(codes[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}
    tail = max(chart_days, AMBER_STREAK_LIMIT + 2)
    statuses = []
    for k in kris:
        s, e = spans.get(k["code"], (0, 0))
        part = rows[max(s, e - tail):e]
        days = np.array([r[1] for r in part], "datetime64[D]")
        values = np.array([r[2] for r in part], float)
        statuses.append(kri.status_of(k, days, values, [r[3] or "" for r in part], hol, chart_days))
    pending: dict[str, dict[str, Any]] = {}
    for r in pending_rows:
        key, after = json.loads(r.target_key or "{}"), json.loads(r.after or "{}")
        pending[str(key.get("code"))] = {"id": int(r.id), "amber": after.get("amber"), "red": after.get("red"),
                                         "maker": r.maker}
    may_enter = user is not None and user.role in ENTER_ROLES
    return KriDashboardData(statuses, open_tasks, pending, n, may_enter, may_request,
                            (time.perf_counter() - t0) * 1e3)


def drill_records(store: Store, code: str, as_of: date | None = None) -> tuple[float, list[dict[str, Any]]]:
    """(value, records): the records behind a computed KRI now, or an entered KRI's last readings."""
    if code in COMPUTED:
        return kri.drilldown(store, code, as_of)
    t = S.kri_readings
    with store.begin() as conn:
        k = kri._kri(conn, code)
        recs = [dict(r._mapping) for r in conn.execute(
            select(t.c.day, t.c.value, t.c.source, t.c.entered_by, t.c.comment)
            .where(t.c.kri_code == code).order_by(t.c.day.desc()).limit(READINGS_SHOWN))]
    for r in recs:
        r["colour"] = kri.colour(float(r["value"]), k["direction"], float(k["amber"]), float(k["red"]))
    return (float(recs[0]["value"]) if recs else math.nan), recs


def reading_colour(code_status: KriStatus, value: float) -> str:
    """The colour a typed value would have (the entry form previews it)."""
    return kri.colour(value, code_status.direction, code_status.amber, code_status.red)


__all__ = ["KriDashboardData", "drill_records", "load_dashboard", "needs_commentary", "reading_colour"]
