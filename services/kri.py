"""Key risk indicators (RISK_METHODS §7 "KRIs"): colour, trend, auto-escalation and the tasks they open.

A KRI has a direction and two thresholds: higher_worse is red from ``red`` up, amber from ``amber``
up, else green; lower_worse mirrors it (red at or below ``red``, amber at or below ``amber``). A KRI
amber on more than five consecutive business days (HK trading calendar, one reading a day) is shown
red and counts as escalated. Readings are entered, imported from a file, or computed from the
store's own records (incidents, breaks, margin calls, trade errors, reconciliation imports); the
records behind a computed value are its drill-down.

Tasks (`sync_tasks`, idempotent): the latest reading turning green → amber opens an investigation
due in 24 h; a KRI shown red opens an escalation to the CRO due in 48 h with a corrective-action
plan (a `corrective_actions` row, source ``kri``, keyed by the task id). Neither is opened again
while one of its kind is open for the KRI. Every write is audited in its own transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from models import schema as S
from services import audit
from services.auth import User
from services.store import Store

DIRECTIONS = ("higher_worse", "lower_worse")
ARROWS = {"up": "↑", "down": "↓", "flat": "→", "": ""}
AMBER_STREAK_LIMIT = 5  # amber on more than this many consecutive business days → shown red
INVESTIGATION_DUE = timedelta(hours=24)
ESCALATION_DUE = timedelta(hours=48)
AGED_BREAK_DAYS = 6
COMPUTED = ("OPEN_INCIDENTS", "AGED_BREAKS", "MARGIN_CALLS", "ERROR_ACCOUNT", "BREAK_RATE")
ENTER_ROLES = ("risk_officer", "operations", "supervisor", "cro")
CHART_DAYS = 30


class KriError(ValueError):
    """A KRI action that is not allowed or input that cannot be used; the message says why."""


# ---------------------------------------------------------------------- pure rules
def colour(value: float | None, direction: str, amber: float, red: float) -> str:
    """green / amber / red of one value ('' without a value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if direction == "higher_worse":
        return "red" if value >= red else "amber" if value >= amber else "green"
    if direction == "lower_worse":
        return "red" if value <= red else "amber" if value <= amber else "green"
    raise KriError(f"unknown KRI direction {direction!r}")


def colours(values: np.ndarray, direction: str, amber: float, red: float) -> np.ndarray:
    """`colour` over an array at once (the dashboard colours two years of readings per KRI)."""
    v = np.asarray(values, float)
    if direction == "higher_worse":
        out = np.where(v >= red, "red", np.where(v >= amber, "amber", "green"))
    else:
        out = np.where(v <= red, "red", np.where(v <= amber, "amber", "green"))
    return np.where(np.isnan(v), "", out)


def trend(values: np.ndarray | list[float]) -> str:
    """up / down / flat from the last two readings ('' with fewer than two)."""
    if len(values) < 2:
        return ""
    last, prev = float(values[-1]), float(values[-2])
    if math.isclose(last, prev, rel_tol=1e-9, abs_tol=1e-12):
        return "flat"
    return "up" if last > prev else "down"


def _holidays() -> np.ndarray:
    from services.calendar import TradingCalendar, shipped_holidays

    return TradingCalendar(d for d, _ in shipped_holidays()).holidays


def amber_streak(days: np.ndarray | list[date], cols: np.ndarray | list[str],
                 holidays: np.ndarray | None = None) -> int:
    """Consecutive business days amber up to the last reading (a missing business day breaks it)."""
    n = len(cols)
    if n == 0 or cols[-1] != "amber":
        return 0
    hol = _holidays() if holidays is None else holidays
    d = np.asarray(days, dtype="datetime64[D]")
    streak = 1
    for i in range(n - 1, 0, -1):
        if cols[i - 1] != "amber" or int(np.busday_count(d[i - 1], d[i], holidays=hol)) != 1:
            break
        streak += 1
    return streak


def shown_colour(raw: str, streak: int) -> str:
    """The colour on the dashboard: amber past the streak limit is shown red (auto-escalated)."""
    return "red" if raw == "amber" and streak > AMBER_STREAK_LIMIT else raw


def check_thresholds(direction: str, amber: float, red: float) -> None:
    if direction not in DIRECTIONS:
        raise KriError(f"unknown direction {direction!r}: one of {', '.join(DIRECTIONS)}")
    if not (math.isfinite(amber) and math.isfinite(red)):
        raise KriError("thresholds must be numbers")
    if direction == "higher_worse" and not red > amber:
        raise KriError(f"higher is worse: red ({red:g}) must be above amber ({amber:g})")
    if direction == "lower_worse" and not red < amber:
        raise KriError(f"lower is worse: red ({red:g}) must be below amber ({amber:g})")


# ---------------------------------------------------------------------- catalogue and status
@dataclass
class KriStatus:
    code: str
    name: str
    unit: str
    direction: str
    amber: float
    red: float
    source: str
    description: str
    day: date | None = None
    value: float | None = None
    comment: str = ""
    raw: str = ""  # colour of the value alone
    colour: str = ""  # shown: amber past 5 business days is red
    escalated: bool = False
    streak: int = 0
    trend: str = ""
    days: np.ndarray = field(default_factory=lambda: np.zeros(0, "datetime64[D]"))  # last CHART_DAYS readings
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def arrow(self) -> str:
        return ARROWS[self.trend]


def catalogue(store: Store) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(select(S.kris).order_by(S.kris.c.code))]


def _kri(conn: Connection, code: str) -> dict[str, Any]:
    r = conn.execute(select(S.kris).where(S.kris.c.code == code)).first()
    if r is None:
        raise KriError(f"unknown KRI {code!r}")
    return dict(r._mapping)


def status_of(kri: dict[str, Any], days: np.ndarray, values: np.ndarray, comments: list[str] | None = None,
              holidays: np.ndarray | None = None, chart_days: int = CHART_DAYS) -> KriStatus:
    """The dashboard line of one KRI from its readings (sorted by day)."""
    st = KriStatus(kri["code"], kri["name"], kri["unit"], kri["direction"], float(kri["amber"]), float(kri["red"]),
                   kri["source"], kri.get("description", ""))
    if len(values) == 0:
        return st
    tail = max(AMBER_STREAK_LIMIT + 2, chart_days)
    d, v = np.asarray(days[-tail:], "datetime64[D]"), np.asarray(values[-tail:], float)
    cols = colours(v, st.direction, st.amber, st.red)
    st.day, st.value = d[-1].astype(date), float(v[-1])
    st.comment = comments[-1] if comments else ""
    st.raw = str(cols[-1])
    st.streak = amber_streak(d, cols, holidays)
    st.colour = shown_colour(st.raw, st.streak)
    st.escalated = st.colour != st.raw
    st.trend = trend(v)
    st.days, st.values = d[-chart_days:], v[-chart_days:]
    return st


def statuses(store: Store, codes: list[str] | None = None, chart_days: int = CHART_DAYS) -> list[KriStatus]:
    """Every KRI (or ``codes``) with its latest reading, colour, trend and last ``chart_days`` readings.

    One query over the readings, grouped in numpy: two years of daily readings for 12 KRIs are read
    in a few milliseconds.
    """
    t = S.kri_readings
    with store.begin() as conn:
        kris = [dict(r._mapping) for r in conn.execute(select(S.kris).order_by(S.kris.c.code))]
        q = select(t.c.kri_code, t.c.day, t.c.value, t.c.comment).order_by(t.c.kri_code, t.c.day)
        if codes:
            q = q.where(t.c.kri_code.in_(codes))
        rows = conn.execute(q).all()
    hol = _holidays()
    by_code: dict[str, tuple[int, int]] = {}
    if rows:
        code_arr = np.array([r[0] for r in rows])
        starts = np.flatnonzero(np.r_[True, code_arr[1:] != code_arr[:-1]])
        ends = np.r_[starts[1:], len(rows)]
        by_code = {str(code_arr[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}
    out = []
    for k in kris:
        if codes and k["code"] not in codes:
            continue
        s, e = by_code.get(k["code"], (0, 0))
        lo = max(s, e - max(chart_days, AMBER_STREAK_LIMIT + 2))
        part = rows[lo:e]
        days = np.array([r[1] for r in part], "datetime64[D]")
        values = np.array([r[2] for r in part], float)
        out.append(status_of(k, days, values, [r[3] for r in part], hol, chart_days))
    return out


# ---------------------------------------------------------------------- readings
def _may_enter(user: User) -> None:
    if user.role not in ENTER_ROLES:
        raise KriError(f"{user.login} ({user.role}) may not enter KRI readings")


def _upsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    t = S.kri_readings
    by_code: dict[str, list[date]] = {}
    for r in rows:
        by_code.setdefault(r["kri_code"], []).append(r["day"])
    for code, days in by_code.items():
        for i in range(0, len(days), 500):
            conn.execute(delete(t).where(t.c.kri_code == code, t.c.day.in_(days[i:i + 500])))
    conn.execute(insert(t), rows)


def enter_reading(store: Store, user: User, code: str, day: date, value: float, comment: str = "",
                  now: datetime | None = None) -> list[int]:
    """Store (or replace) one entered reading, then open any task it calls for; the new task ids."""
    _may_enter(user)
    if not math.isfinite(value):
        raise KriError("the value must be a number")
    with store.begin() as conn:
        k = _kri(conn, code)
        if code in COMPUTED:
            raise KriError(f"{code} is computed from RiskDesk's records: use Compute, not a typed value")
        _upsert(conn, [{"kri_code": code, "day": day, "value": float(value), "source": "entered",
                        "entered_by": user.login, "comment": comment.strip()}])
        audit.append(conn, store.kind, user.login, "enter", "kri_readings", f"{code} {day.isoformat()}",
                     after=f"{value:g} ({colour(value, k['direction'], k['amber'], k['red'])})")
    return sync_tasks(store, user.login, [code], now)


def read_readings_file(path: str | Path, known: set[str]) -> list[dict[str, Any]]:
    """(kri_code, day, value) rows of a CSV or xlsx file; every bad row is named in one KriError."""
    import pandas as pd

    p = Path(path)
    try:
        if p.suffix.lower() in (".xlsx", ".xlsm"):
            df = pd.read_excel(p, dtype=object)
        else:
            df = pd.read_csv(p, dtype=object, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise KriError(f"{p}: no such file") from None
    except Exception as e:
        raise KriError(f"{p.name}: cannot be read ({type(e).__name__}: {e})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in ("kri_code", "day", "value") if c not in df.columns]
    if missing:
        raise KriError(f"{p.name}: missing column(s) {', '.join(missing)} (need kri_code, day, value)")
    rows, bad = [], []
    seen: set[tuple[str, date]] = set()
    for i, (code, day, value) in enumerate(zip(df["kri_code"], df["day"], df["value"], strict=True), start=2):
        code = str(code).strip().upper()
        if code not in known:
            bad.append(f"row {i}: unknown KRI {code!r}")
            continue
        try:
            d = day.date() if isinstance(day, datetime) else day if isinstance(day, date) \
                else date.fromisoformat(str(day).strip()[:10])
        except ValueError:
            bad.append(f"row {i}: day {str(day)!r} is not a date (YYYY-MM-DD)")
            continue
        try:
            v = float(str(value).replace(",", "").strip())
            if not math.isfinite(v):
                raise ValueError
        except ValueError:
            bad.append(f"row {i}: value {str(value)!r} is not a number")
            continue
        if (code, d) in seen:
            bad.append(f"row {i}: a second reading for {code} on {d.isoformat()}")
            continue
        seen.add((code, d))
        rows.append({"kri_code": code, "day": d, "value": v})
    if bad:
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise KriError(f"{p.name}: nothing imported; " + "; ".join(bad[:10]) + more)
    if not rows:
        raise KriError(f"{p.name}: no readings in the file")
    return rows


def import_readings(store: Store, user: User, path: str | Path, now: datetime | None = None) -> int:
    """Import a file of readings (all or nothing; computed KRIs refused); the number stored."""
    _may_enter(user)
    with store.begin() as conn:
        known = {str(c) for c in conn.execute(select(S.kris.c.code)).scalars()}
    rows = read_readings_file(path, known)
    computed = sorted({r["kri_code"] for r in rows} & set(COMPUTED))
    if computed:
        raise KriError(f"{Path(path).name}: nothing imported; {', '.join(computed)} are computed by RiskDesk")
    for r in rows:
        r.update(source="imported", entered_by=user.login, comment="")
    with store.begin() as conn:
        _upsert(conn, rows)
        audit.append(conn, store.kind, user.login, "import", "kri_readings", Path(path).name,
                     after=f"{len(rows)} readings")
    sync_tasks(store, user.login, sorted({r["kri_code"] for r in rows}), now)
    return len(rows)


def set_comment(store: Store, user: User, code: str, day: date, comment: str) -> None:
    """Commentary on an amber or red reading (why, what is being done)."""
    if not comment.strip():
        raise KriError("write the commentary first")
    t = S.kri_readings
    with store.begin() as conn:
        k = _kri(conn, code)
        r = conn.execute(select(t.c.value, t.c.comment).where(t.c.kri_code == code, t.c.day == day)).first()
        if r is None:
            raise KriError(f"{code} has no reading on {day.isoformat()}")
        if colour(float(r.value), k["direction"], k["amber"], k["red"]) == "green":
            raise KriError(f"{code} is green on {day.isoformat()}: commentary is for amber and red readings")
        conn.execute(update(t).where(t.c.kri_code == code, t.c.day == day).values(comment=comment.strip()))
        audit.append(conn, store.kind, user.login, "comment", "kri_readings", f"{code} {day.isoformat()}",
                     before=r.comment, after=comment.strip())


def propose_thresholds(store: Store, user: User, code: str, amber: float, red: float, reason: str) -> int:
    """A change request (kind ``kri``) for new thresholds; they apply once a checker approves."""
    from services import changes

    with store.begin() as conn:
        k = _kri(conn, code)
    check_thresholds(k["direction"], amber, red)
    if not reason.strip():
        raise KriError("give a reason: the checker decides on it")
    return changes.submit(store, user, "kri", {"code": code}, {"amber": float(amber), "red": float(red)},
                          reason.strip())


# ---------------------------------------------------------------------- computed values and drill-down
def drilldown(store: Store, code: str, as_of: date | None = None) -> tuple[float, list[dict[str, Any]]]:
    """(value, the records behind it) of a computed KRI now (``as_of``: the day breaks are aged to)."""
    as_of = as_of or date.today()
    with store.begin() as conn:
        if code == "OPEN_INCIDENTS":
            t = S.incidents
            recs = [dict(r._mapping) for r in conn.execute(
                select(t.c.id, t.c.title, t.c.severity, t.c.state, t.c.detected_at)
                .where(t.c.state != "closed").order_by(t.c.id))]
            return float(len(recs)), recs
        if code == "MARGIN_CALLS":
            t, a = S.margin_calls, S.accounts
            recs = [dict(r._mapping) for r in conn.execute(
                select(t.c.id, a.c.code.label("account"), t.c.opened_at, t.c.current_status, t.c.current_amount)
                .join(a, a.c.id == t.c.account_id).where(t.c.state == "open").order_by(t.c.id))]
            return float(len(recs)), recs
        if code == "ERROR_ACCOUNT":
            t = S.trade_errors
            recs = [dict(r._mapping) for r in conn.execute(
                select(t.c.id, t.c.error_type, t.c.desk, t.c.account, t.c.trade_date, t.c.est_pnl, t.c.status)
                .where(t.c.status == "open", t.c.est_pnl < 0).order_by(t.c.id))]
            return float(sum(-float(r["est_pnl"]) for r in recs)), recs
        if code == "BREAK_RATE":
            t = S.recon_imports
            r = conn.execute(select(t).order_by(t.c.imported_at.desc(), t.c.id.desc()).limit(1)).first()
            if r is None:
                return math.nan, []
            total = int(r.matched) + int(r.breaks)
            rate = 100.0 * int(r.breaks) / total if total else 0.0
            return rate, [{"id": int(r.id), "kind": r.kind, "as_of": r.as_of, "matched": int(r.matched),
                           "breaks": int(r.breaks), "imported_by": r.imported_by}]
    if code == "AGED_BREAKS":
        from services.breaks import breaks

        recs = [{k: b[k] for k in ("id", "kind", "key", "type", "field", "item_date", "age_days", "escalation",
                                   "status", "assignee")}
                for b in breaks(store, "unresolved", as_of) if b["age_days"] >= AGED_BREAK_DAYS]
        return float(len(recs)), recs
    raise KriError(f"{code} is not computed by RiskDesk (entered or imported)")


def compute_all(store: Store, user: str, day: date | None = None, now: datetime | None = None
                ) -> dict[str, float]:
    """Compute and store today's value of every computed KRI; opens the tasks they call for."""
    day = day or date.today()
    values = {}
    for code in COMPUTED:
        v, _recs = drilldown(store, code, day)
        if not math.isnan(v):
            values[code] = v
    if values:
        with store.begin() as conn:
            _upsert(conn, [{"kri_code": c, "day": day, "value": v, "source": "computed", "entered_by": user,
                            "comment": ""} for c, v in values.items()])
            audit.append(conn, store.kind, user, "compute", "kri_readings", day.isoformat(),
                         after=", ".join(f"{c}={v:g}" for c, v in values.items()))
        sync_tasks(store, user, list(values), now)
    return values


# ---------------------------------------------------------------------- tasks
def _cro(conn: Connection) -> str:
    login = conn.execute(select(S.users.c.login).where(S.users.c.role == "cro", S.users.c.active.is_(True))
                         .order_by(S.users.c.login).limit(1)).scalar()
    return str(login) if login else "cro"


def sync_tasks(store: Store, actor: str, codes: list[str] | None = None, now: datetime | None = None) -> list[int]:
    """Open the investigation / CRO escalation the KRIs' latest readings call for (once); new task ids."""
    now = now or datetime.now(UTC)
    sts = statuses(store, codes, chart_days=AMBER_STREAK_LIMIT + 2)
    t = S.kri_tasks
    made: list[int] = []
    with store.begin() as conn:
        open_kinds = {(r.kri_code, r.kind) for r in conn.execute(
            select(t.c.kri_code, t.c.kind).where(t.c.status == "open"))}
        for st in sts:
            if st.value is None:
                continue
            prev = str(colours(st.values[-2:-1], st.direction, st.amber, st.red)[0]) if len(st.values) > 1 \
                else "green"
            if st.colour == "red" and (st.code, "cro_escalation") not in open_kinds:
                why = "amber for more than 5 business days" if st.escalated else f"red at {st.value:g}"
                tid = _open_task(conn, store, actor, st.code, "cro_escalation", now, now + ESCALATION_DUE,
                                 f"{st.code} {why}: escalated to the CRO; corrective-action plan due in 48 h")
                cro = _cro(conn)
                aid = int(conn.execute(insert(S.corrective_actions).values(
                    source_kind="kri", source_id=tid, title=f"Corrective-action plan for KRI {st.code} ({why})",
                    owner=cro, due_date=(now + ESCALATION_DUE).date(), status="open", created_by=actor,
                    created_at=now).returning(S.corrective_actions.c.id)).scalar_one())
                audit.append(conn, store.kind, actor, "create", "corrective_actions", str(aid),
                             after=f"KRI {st.code} plan, owner {cro}")
                made.append(tid)
            elif st.raw == "amber" and prev == "green" and (st.code, "investigation") not in open_kinds:
                made.append(_open_task(conn, store, actor, st.code, "investigation", now, now + INVESTIGATION_DUE,
                                       f"{st.code} turned amber at {st.value:g}: investigate within 24 h"))
    return made


def _open_task(conn: Connection, store: Store, actor: str, code: str, kind: str, now: datetime, due: datetime,
               note: str) -> int:
    tid = int(conn.execute(insert(S.kri_tasks).values(kri_code=code, kind=kind, opened_at=now, due_at=due,
                                                      status="open", owner=None, note=note)
                           .returning(S.kri_tasks.c.id)).scalar_one())
    audit.append(conn, store.kind, actor, "create", "kri_tasks", str(tid), after=f"{kind}: {note}")
    return tid


def tasks(store: Store, status: str | None = "open") -> list[dict[str, Any]]:
    t = S.kri_tasks
    q = select(t).order_by(t.c.due_at, t.c.id)
    if status:
        q = q.where(t.c.status == status)
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def close_task(store: Store, user: User, task_id: int, note: str) -> None:
    """Mark a KRI task done with what was found / done."""
    if not note.strip():
        raise KriError("say what was found or done")
    t = S.kri_tasks
    with store.begin() as conn:
        r = conn.execute(select(t.c.status, t.c.note).where(t.c.id == task_id)).first()
        if r is None:
            raise KriError(f"KRI task {task_id} does not exist")
        if r.status != "open":
            raise KriError(f"KRI task {task_id} is already {r.status}")
        conn.execute(update(t).where(t.c.id == task_id).values(status="done", owner=user.login,
                                                               note=f"{r.note}\n{note.strip()}".strip()))
        audit.append(conn, store.kind, user.login, "close", "kri_tasks", str(task_id), after=note.strip())


# ---------------------------------------------------------------------- demo history
def seed_readings(conn: Connection, end: date, seed: int = 7, years: int = 2) -> int:
    """Two years of business-day readings for the 12 seeded KRIs, ending ``end`` (vectorised).

    Each series is a mean-reverting walk between its green level and its amber threshold; the last
    days are set so the dashboard shows every state: a KRI gone amber today, one red, one amber for
    seven business days (auto-escalated) and the rest green.
    """
    kris = [dict(r._mapping) for r in conn.execute(select(S.kris).order_by(S.kris.c.code))]
    if not kris:
        return 0
    hol = _holidays()
    start = np.datetime64(end, "D") - np.timedelta64(365 * years, "D")
    all_days = np.arange(start, np.datetime64(end, "D") + 1)
    days = all_days[np.is_busday(all_days, holidays=hol)]
    n = days.shape[0]
    rng = np.random.default_rng(seed)
    day_objs = days.astype(date).tolist()
    rows: list[dict[str, Any]] = []
    tails = {"STP_RATE": ["green"] * 6 + ["amber"], "NIGO_RATE": ["amber"] * 6 + ["red"],
             "SETTLE_FAIL": ["green"] + ["amber"] * 6}
    for k in kris:
        amber, red, hw = float(k["amber"]), float(k["red"]), k["direction"] == "higher_worse"
        gap = abs(red - amber)
        green_level = amber * 0.6 if hw else min(amber + gap * 0.5, (amber + 100.0) / 2)
        # AR(1) walk around the green level, vectorised as noise convolved with the AR weights
        noise = np.asarray(rng.normal(0.0, gap * 0.12, size=n), float)
        walk = np.convolve(noise, np.power(0.85, np.arange(30.0)))[:n]
        v = green_level + walk
        if hw:
            v = np.maximum(v, 0.0)
        if k["unit"] == "%":
            v = np.clip(v, 0.0, 100.0)
        level = {"green": green_level, "amber": (amber + red) / 2,
                 "red": red + gap * 0.3 if hw else red - gap * 0.3}
        tail = tails.get(k["code"], ["green"] * 7)
        v[-len(tail):] = [level[c] + (0.05 if c != "green" else 0.1) * gap * ((j * 7 + len(k["code"])) % 3 - 1)
                          for j, c in enumerate(tail)]
        v = np.round(v) if k["unit"] in ("calls", "breaks", "incidents") else np.round(v, 4)
        src = "computed" if k["code"] in COMPUTED else "entered"
        rows.extend({"kri_code": k["code"], "day": d, "value": float(x), "source": src, "entered_by": "demo",
                     "comment": ""} for d, x in zip(day_objs, v.tolist(), strict=True))
    conn.execute(delete(S.kri_readings))
    conn.execute(insert(S.kri_readings), rows)
    return len(rows)


__all__ = ["ARROWS", "COMPUTED", "KriError", "KriStatus", "amber_streak", "catalogue", "check_thresholds",
           "close_task", "colour", "colours", "compute_all", "drilldown", "enter_reading", "import_readings",
           "propose_thresholds", "read_readings_file", "seed_readings", "set_comment", "shown_colour",
           "status_of", "statuses", "sync_tasks", "tasks", "trend"]
