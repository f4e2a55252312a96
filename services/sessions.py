"""Trading sessions (issue 4, "Intraday margin"): when the intraday ratio table applies.

RISK_METHODS §1 uses the intraday table for intraday-financing accounts "during intraday sessions".
The sessions are a risk parameter in `trading_sessions` (seeded for Hong Kong: Morning 09:30–12:00
and Afternoon 13:00–16:00 with intraday ratios, the Closing auction 16:00–16:10 without), changed
only through four-eyes requests of kind ``trading_session``.

Times are HHMM in Hong Kong time, start inclusive and end exclusive (2400 = midnight); intraday
ratios apply only on a trading day of the calendar, inside an enabled session marked intraday.
`next_boundary` gives the next instant that answer can change, so a live monitor compares one float
per batch instead of re-deriving the session on every tick.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import text

from services import changes
from services.auth import User, permitted
from services.calendar import HK_TZ, TradingCalendar
from services.store import Store

KIND = "trading_session"
EDITABLE = ("market", "name", "start_hhmm", "end_hhmm", "intraday", "enabled")


@dataclass(frozen=True)
class TradingSession:
    id: int
    market: str
    name: str
    start_hhmm: int
    end_hhmm: int
    intraday: bool = True
    enabled: bool = True
    version: int = 1

    @property
    def hours(self) -> str:
        return f"{hhmm_text(self.start_hhmm)}–{hhmm_text(self.end_hhmm)}"


def hhmm_text(v: int) -> str:
    return f"{v // 100:02d}:{v % 100:02d}"


def minutes(hhmm: int) -> int:
    return (hhmm // 100) * 60 + hhmm % 100


def load_sessions(store: Store) -> list[TradingSession]:
    """Every session of every market, enabled or not, by market and start."""
    with store.begin() as conn:
        rows = conn.execute(text(
            "select id, market, name, start_hhmm, end_hhmm, intraday, enabled, version from trading_sessions "
            "order by market, start_hhmm, id")).all()
    return [TradingSession(int(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), bool(r[5]), bool(r[6]),
                           int(r[7])) for r in rows]


def load_calendar(store: Store, market: str = "HK") -> TradingCalendar:
    """The store's holiday table as a trading calendar (weekends are never trading days)."""
    with store.begin() as conn:
        days = [r[0] for r in conn.execute(text("select day from holidays where market = :m"), {"m": market})]
    return TradingCalendar(d if not isinstance(d, str) else datetime.fromisoformat(d).date() for d in days)


# ---------------------------------------------------------------------- the clock
def intraday_windows(sessions: Iterable[TradingSession]) -> list[tuple[int, int]]:
    """Seconds of the day [start, end) when intraday ratios apply: enabled intraday sessions, merged."""
    spans = sorted((minutes(s.start_hhmm) * 60, minutes(s.end_hhmm) * 60) for s in sessions
                   if s.enabled and s.intraday and s.start_hhmm < s.end_hhmm)
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def intraday_active(ts: float, sessions: Sequence[TradingSession], calendar: TradingCalendar) -> bool:
    """True only on a trading day inside an enabled intraday session (Hong Kong time)."""
    windows = intraday_windows(sessions)
    if not windows:
        return False
    dt = datetime.fromtimestamp(ts, HK_TZ)
    if not calendar.is_trading_day(dt.date()):
        return False
    sod = dt.hour * 3600 + dt.minute * 60 + dt.second + dt.microsecond / 1e6
    return any(a <= sod < b for a, b in windows)


def next_boundary(ts: float, sessions: Sequence[TradingSession], calendar: TradingCalendar,
                  horizon_days: int = 400) -> float:
    """The first unix time after ``ts`` at which `intraday_active` changes (inf: never, e.g. no sessions).

    Back-to-back windows (12:00–13:00 after 09:30–12:00, or a session to 24:00 followed by one from
    00:00 on the next trading day) are one window: no boundary between them.
    """
    windows = intraday_windows(sessions)
    if not windows:
        return math.inf
    day = datetime.fromtimestamp(ts, HK_TZ).date()
    cur: tuple[float, float] | None = None

    def edge(span: tuple[float, float]) -> float | None:
        if span[0] > ts:
            return span[0]
        return span[1] if span[1] > ts else None

    for k in range(horizon_days):
        d = day + timedelta(days=k)
        if not calendar.is_trading_day(d):
            continue
        base = datetime.combine(d, time(0), HK_TZ).timestamp()
        for a, b in windows:
            span = (base + a, base + b)
            if cur is not None and span[0] <= cur[1]:
                cur = (cur[0], max(cur[1], span[1]))
                continue
            if cur is not None and (e := edge(cur)) is not None:
                return e
            cur = span
    if cur is not None and (e := edge(cur)) is not None:
        return e
    return math.inf


# ---------------------------------------------------------------------- validation
_HHMM = re.compile(r"^\s*(\d{1,2}):?(\d{2})\s*$")


def parse_hhmm(text_: str, what: str = "time") -> tuple[int | None, str]:
    """(HHMM, "") for "09:30", "0930" or "930"; (None, why) otherwise."""
    t = text_.strip()
    if not t:
        return None, f"Enter the {what} (HH:MM, e.g. 09:30)."
    m = _HHMM.match(t)
    if m is None:
        return None, f"The {what} “{t}” is not a time: write HH:MM, e.g. 09:30."
    v = int(m.group(1)) * 100 + int(m.group(2))
    why = hhmm_problem(v, what)
    return (None, why) if why else (v, "")


def hhmm_problem(v: Any, what: str = "time") -> str:
    """Why ``v`` is not a valid HHMM (00:00 to 24:00), or ""."""
    if isinstance(v, bool) or not isinstance(v, int):
        return f"The {what} must be a whole HHMM number, e.g. 930 for 09:30."
    hh, mm = divmod(v, 100)
    if v < 0 or hh > 24 or mm > 59 or (hh == 24 and mm != 0):
        return f"The {what} {hh:02d}:{mm:02d} is not a time of day (00:00 to 24:00)."
    return ""


def session_problem(s: TradingSession, others: Iterable[TradingSession]) -> str:
    """Why the session may not exist beside ``others`` (same id excluded), or "": valid HHMM, start
    before end, a name unique in its market, and no overlap with an enabled session of that market."""
    market, name = s.market.strip().upper(), s.name.strip()
    if not market:
        return "Enter the market, e.g. HK."
    if not name:
        return "Enter the session's name, e.g. Morning."
    for v, what in ((s.start_hhmm, "start"), (s.end_hhmm, "end")):
        why = hhmm_problem(v, what)
        if why:
            return why
    if s.start_hhmm >= s.end_hhmm:
        return (f"The start ({hhmm_text(s.start_hhmm)}) must be before the end ({hhmm_text(s.end_hhmm)}); "
                "a session cannot cross midnight.")
    for o in others:
        if o.id == s.id or o.market.strip().upper() != market:
            continue
        if o.name.strip().lower() == name.lower():
            return f"{market} already has a session named “{o.name}”."
        if s.enabled and o.enabled and s.start_hhmm < o.end_hhmm and o.start_hhmm < s.end_hhmm:
            return f"{s.hours} overlaps {market} {o.name} ({o.hours}); sessions of one market may not overlap."
    return ""


# ---------------------------------------------------------------------- change requests
def pending_requests(store: Store) -> list[changes.ChangeRequest]:
    return changes.listing(store, status="pending", kind=KIND, limit=1_000_000)


def projected(sessions: Sequence[TradingSession], pending: Iterable[changes.ChangeRequest]
              ) -> list[TradingSession]:
    """The sessions as they would be once every pending request is approved (validation counts them)."""
    by_id = {s.id: s for s in sessions}
    for req in pending:
        sid = int(req.target_key.get("id", -1))
        fields = {k: v for k, v in req.after.items() if k in EDITABLE}
        if req.op == "insert":
            by_id[sid] = TradingSession(sid, **{"market": "HK", "intraday": True, "enabled": True, **fields})
        elif sid in by_id and req.op == "update":
            by_id[sid] = replace(by_id[sid], **fields)
    return list(by_id.values())


def submit_session(store: Store, user: User, reason: str, *, session_id: int | None = None,
                   market: str, name: str, start_hhmm: int, end_hhmm: int, intraday: bool = True,
                   enabled: bool = True) -> int:
    """A new session (``session_id`` None: an insert) or an edit of one (only the fields that differ),
    as a change request; refused with the reason when invalid or when a request already waits on it."""
    current = load_sessions(store)
    pending = pending_requests(store)
    if session_id is not None:
        waiting = next((r.id for r in pending if r.target_key.get("id") == session_id), None)
        if waiting is not None:
            raise changes.ChangeError(f"session {session_id} already has change request #{waiting} pending")
    new = TradingSession(session_id if session_id is not None else -1, market.strip().upper(), name.strip(),
                         int(start_hhmm), int(end_hhmm), bool(intraday), bool(enabled))
    why = session_problem(new, projected(current, pending))
    if why:
        raise changes.ChangeError(why.rstrip("."))
    values = {k: getattr(new, k) for k in EDITABLE}
    if session_id is None:
        with store.begin() as conn:
            new_id = changes.insert_id_floor(conn, "trading_sessions") + 1
        return changes.submit(store, user, KIND, {"id": new_id}, values, reason, op="insert",
                              context={"session": f"{new.market} {new.name}"})
    old = next((s for s in current if s.id == session_id), None)
    if old is None:
        raise changes.ChangeError(f"trading session {session_id} does not exist")
    after = {k: v for k, v in values.items() if getattr(old, k) != v}
    if not after:
        raise changes.ChangeError(f"nothing to change: {old.market} {old.name} is already like this")
    return changes.submit(store, user, KIND, {"id": session_id}, after, reason,
                          context={"session": f"{old.market} {old.name}"})


def set_enabled(store: Store, user: User, session_id: int, enabled: bool, reason: str) -> int:
    """Enable or disable a session (a change request); re-enabling checks for overlaps again."""
    s = next((x for x in load_sessions(store) if x.id == session_id), None)
    if s is None:
        raise changes.ChangeError(f"trading session {session_id} does not exist")
    return submit_session(store, user, reason, session_id=session_id, market=s.market, name=s.name,
                          start_hhmm=s.start_hhmm, end_hhmm=s.end_hhmm, intraday=s.intraday, enabled=enabled)


# ---------------------------------------------------------------------- the editor's read
@dataclass
class SessionsView:
    """One background read: the sessions (plus proposed new ones), the calendar, and permissions."""

    rows: list[dict[str, Any]]
    sessions: list[TradingSession]
    projected: list[TradingSession]  # as if every pending request were approved (for validation)
    calendar: TradingCalendar
    may_request: bool
    pending: dict[int, int] = field(default_factory=dict)  # session id → pending request id


def load_view(store: Store, user: User) -> SessionsView:
    """Sessions with their pending requests; a pending new session is a row of its own (runs in a worker)."""
    sessions = load_sessions(store)
    pending_reqs = pending_requests(store)
    pending = {int(r.target_key.get("id", -1)): r.id for r in reversed(pending_reqs)}
    rows = [_row(s, pending.get(s.id), proposed=False) for s in sessions]
    known = {s.id for s in sessions}
    for s in projected(sessions, pending_reqs):
        if s.id not in known:
            rows.append(_row(s, pending.get(s.id), proposed=True))
    return SessionsView(rows, sessions, projected(sessions, pending_reqs), load_calendar(store),
                        permitted(store, user, "request", KIND), pending)


def _row(s: TradingSession, request_id: int | None, proposed: bool) -> dict[str, Any]:
    request = "" if request_id is None else f"request #{request_id} pending" + (" (new session)" if proposed else "")
    return {"id": s.id, "market": s.market, "name": s.name, "start": hhmm_text(s.start_hhmm),
            "end": hhmm_text(s.end_hhmm), "start_hhmm": s.start_hhmm, "end_hhmm": s.end_hhmm,
            "intraday": "yes" if s.intraday else "no", "enabled": "enabled" if s.enabled else "disabled",
            "proposed": proposed, "request_id": request_id, "request": request}


def now_text(now: float, sessions: list[TradingSession], calendar: TradingCalendar) -> tuple[bool, str]:
    """(active, "Intraday ratios apply now, until 12:00") — the caption over the table."""
    active = intraday_active(now, sessions, calendar)
    nxt = next_boundary(now, sessions, calendar)
    if nxt == float("inf"):
        when = ""
    else:
        dt = datetime.fromtimestamp(nxt, HK_TZ)
        same_day = dt.date() == datetime.fromtimestamp(now, HK_TZ).date()
        when = dt.strftime("%H:%M") if same_day else dt.strftime("%a %d %b %H:%M")
    if active:
        return True, "Intraday ratios apply now" + (f", until {when}" if when else "")
    return False, "Intraday ratios do not apply now" + (f" — next from {when}" if when else " (no intraday session)")
