"""Trading-day calendar: weekends and the holiday table are not trading days (RISK_METHODS §2, §7).

Backed by numpy's business-day functions, so ageing a million breaks or deadlines is one call.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import numpy as np

RESOURCES = Path(__file__).resolve().parent.parent / "resources"

try:
    from zoneinfo import ZoneInfo

    HK_TZ: timezone | ZoneInfo = ZoneInfo("Asia/Hong_Kong")
except Exception:  # no tz database on this machine: Hong Kong has no DST
    HK_TZ = timezone(timedelta(hours=8), "HKT")


def shipped_holidays() -> list[tuple[date, str]]:
    """The Hong Kong holiday list shipped in resources/ (seeded into new stores)."""
    with open(RESOURCES / "holidays_hk.csv", encoding="utf-8") as f:
        return [(date.fromisoformat(r["day"]), r["name"]) for r in csv.DictReader(f)]


class TradingCalendar:
    def __init__(self, holidays: Iterable[date] = ()) -> None:
        self.holidays = np.array(sorted(set(holidays)), dtype="datetime64[D]")

    def is_trading_day(self, d: date) -> bool:
        return bool(np.is_busday(np.datetime64(d, "D"), holidays=self.holidays))

    def add_trading_days(self, d: date, n: int) -> date:
        """The n-th trading day after `d` (a non-trading `d` first rolls forward to a trading day)."""
        out = np.busday_offset(np.datetime64(d, "D"), int(n), roll="forward", holidays=self.holidays)
        return out.astype(date)  # type: ignore[no-any-return]

    def business_days_between(self, start: np.ndarray | np.datetime64 | date,
                              end: np.ndarray | np.datetime64 | date) -> np.ndarray:
        """Trading days from `start` to `end` (0 for the same day); vectorised over arrays."""
        s = np.asarray(start, dtype="datetime64[D]")
        e = np.asarray(end, dtype="datetime64[D]")
        return np.busday_count(s, e, holidays=self.holidays)


def local_date(ts: float) -> date:
    return datetime.fromtimestamp(ts, HK_TZ).date()


def in_trading_hours(ts: float, open_hhmm: float, close_hhmm: float, calendar: TradingCalendar) -> bool:
    """Trading hours on a trading day; 0000–2400 means always (the demo store trades round the clock)."""
    if open_hhmm <= 0 and close_hhmm >= 2400:
        return True
    dt = datetime.fromtimestamp(ts, HK_TZ)
    if not calendar.is_trading_day(dt.date()):
        return False
    o = time(int(open_hhmm) // 100, int(open_hhmm) % 100)
    c = time(min(23, int(close_hhmm) // 100), int(close_hhmm) % 100 if close_hhmm < 2400 else 59)
    return o <= dt.time() <= c
