"""Margin-call lifecycle (RISK_METHODS §2) across recalculations and trading days, persisted."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest
from sqlalchemy import select

from models import schema as S
from services.calendar import HK_TZ, TradingCalendar, shipped_holidays
from services.margin import MarginEngine
from services.margin_calls import CallRepository, CallTracker, open_call_details
from services.store import Store
from tests.test_margin_formulas import _acct, make_book

HOLIDAYS = [d for d, _ in shipped_holidays()]


def ts(y: int, m: int, d: int, hh: int = 10) -> float:
    return datetime(y, m, d, hh, 0, tzinfo=HK_TZ).timestamp()


def test_calendar_skips_weekends_and_holidays() -> None:
    cal = TradingCalendar(HOLIDAYS)
    assert cal.add_trading_days(date(2026, 11, 20), 3) == date(2026, 11, 25)  # Fri → Wed
    # Tue 22 Dec 2026 + 3: 23, 24, (25 Christmas, 26–27 weekend) 28
    assert cal.add_trading_days(date(2026, 12, 22), 3) == date(2026, 12, 28)
    # a trigger on a Saturday rolls to Monday first
    assert cal.add_trading_days(date(2026, 11, 21), 3) == date(2026, 11, 26)
    ages = cal.business_days_between(np.array(["2026-12-24", "2026-12-18"], "datetime64[D]"),
                                     np.datetime64("2026-12-29"))
    assert ages.tolist() == [2, 6]  # 24, 28 | 18, 21, 22, 23, 24, 28


def _engine() -> MarginEngine:
    # 1000 A.HK @ 100, cash −20,000: E 80,000 safe; IM 50,000, MM 40,000, FC 32,000
    return MarginEngine(make_book([_acct("M1", -20_000), _acct("M2", 500_000)],
                                  [("M1", "A.HK", 1000), ("M2", "A.HK", 1000)]))


def test_call_opens_follows_forces_and_is_met() -> None:
    e = _engine()
    tr = CallTracker(2, TradingCalendar(HOLIDAYS), deadline_days=3)
    a = np.arange(2)
    assert tr.update(e, a, ts(2026, 12, 22)) == []
    e.apply_prices(np.array([0]), np.array([55.0]))  # MV 55,000: E 35,000; MM 22,000 → warning
    assert tr.update(e, a, ts(2026, 12, 22)) == []
    e.apply_prices(np.array([0]), np.array([30.0]))  # E 10,000; IM 15,000; MM 12,000; FC 9,600 → call
    ev = tr.update(e, a, ts(2026, 12, 22, 11))
    assert [(x.kind, x.account, x.status, x.amount) for x in ev] == [("open", 0, "call", 5_000.0)]
    assert ev[0].deadline == date(2026, 12, 28)
    assert ev[0].snapshot is not None and ev[0].snapshot["positions"][0]["qty"] == 1000.0
    assert tr.open.tolist() == [True, False]
    e.apply_prices(np.array([0]), np.array([29.5]))  # E 9,500; IM 14,750; FC 9,440 → amount 5,250
    assert tr.update(e, a, ts(2026, 12, 22, 12)) == []
    assert tr.amount[0] == pytest.approx(5_250.0)
    e.apply_prices(np.array([0]), np.array([25.0]))  # E 5,000 < FC 8,000 → force event, still open
    ev = tr.update(e, a, ts(2026, 12, 22, 13))
    assert [x.kind for x in ev] == ["force"]
    # next day → an end-of-day snapshot for the open call
    ev = tr.update(e, np.zeros(0, np.int64), ts(2026, 12, 24))
    assert [x.kind for x in ev] == ["eod"]
    assert tr.long_standing(date(2026, 12, 28)).tolist() == [False, False]
    assert tr.long_standing(date(2026, 12, 29)).tolist() == [True, False]  # past its deadline
    e.apply_cash(np.array([0]), np.array([0]), np.array([-19_000.0]))  # E 6,000 still < MM 10,000
    assert tr.update(e, a, ts(2026, 12, 24)) == []
    e.apply_cash(np.array([0]), np.array([0]), np.array([-15_000.0]))  # E 10,000 = MM → met
    ev = tr.update(e, a, ts(2026, 12, 24, 15))
    assert [x.kind for x in ev] == ["met"]
    assert tr.open.tolist() == [False, False]


def _persisted(url: str) -> None:
    store = Store(url)
    store.migrate()
    book = make_book([_acct("M1", -20_000), _acct("M2", 500_000)], [("M1", "A.HK", 1000), ("M2", "A.HK", 1000)])
    store.save_book(book)
    book = store.load_book()
    assert book.acct_ids is not None
    e = MarginEngine(book)
    tr = CallTracker(2, TradingCalendar(HOLIDAYS))
    repo = CallRepository(store, book.acct_ids)
    e.apply_prices(np.array([0]), np.array([30.0]))
    repo.write(tr.update(e, np.arange(2), ts(2026, 12, 22)))
    e.apply_prices(np.array([0]), np.array([25.0]))
    repo.write(tr.update(e, np.arange(2), ts(2026, 12, 22, 11)))
    d = open_call_details(store, int(book.acct_ids[0]))
    assert d is not None
    assert (d.trigger_status, d.trigger_amount, d.deadline) == ("call", 5_000.0, date(2026, 12, 28))
    assert [s["kind"] for s in d.snapshots] == ["trigger", "force"]
    assert d.snapshots[1]["equity"] == 5_000.0
    # a restart adopts the open call instead of opening a second one
    tr2 = CallTracker(2, TradingCalendar(HOLIDAYS))
    repo2 = CallRepository(store, book.acct_ids)
    repo2.load_open(tr2, {int(x): i for i, x in enumerate(book.acct_ids.tolist())})
    assert tr2.open.tolist() == [True, False] and tr2.status[0] == 3
    assert tr2.update(e, np.arange(2), ts(2026, 12, 22, 12)) == []
    e.apply_prices(np.array([0]), np.array([100.0]))
    repo2.write(tr2.update(e, np.arange(2), ts(2026, 12, 23)))
    with store.begin() as conn:
        calls = conn.execute(select(S.margin_calls)).all()
        kinds = conn.execute(select(S.margin_call_events.c.kind).order_by(S.margin_call_events.c.id)).scalars()
        assert [c.state for c in calls] == ["met"]
        assert list(kinds) == ["open", "force", "eod", "met"]  # a day passed while open
    store.dispose()


def test_calls_persist_with_snapshots_sqlite(sqlite_url: str) -> None:
    _persisted(sqlite_url)


@pytest.mark.postgres
def test_calls_persist_with_snapshots_postgres(pg_url: str) -> None:
    _persisted(pg_url)
