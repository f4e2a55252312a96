"""Trading sessions for intraday margin (RISK_METHODS §1): when intraday ratios apply, the next
boundary, validation, four-eyes requests, and the live monitor switching an intraday-financing
account between the intraday and the long ratio at a session boundary.

Times are Hong Kong time; 2026-11-20 is a Friday, 2026-12-25 a holiday of the shipped calendar.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services import changes, haircuts
from services import sessions as ts
from services.auth import User, ensure_permissions
from services.bookfile import book_from_dict
from services.calendar import HK_TZ, TradingCalendar, shipped_holidays
from services.demo_store import seed_demo_store
from services.feed.wire import Message
from services.live import LiveMonitor
from services.margin import MarginEngine
from services.store import Store
from tests.test_four_eyes import _as, _seed_users

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
CAL = TradingCalendar(d for d, _ in shipped_holidays())
HK = [ts.TradingSession(1, "HK", "Morning", 930, 1200), ts.TradingSession(2, "HK", "Afternoon", 1300, 1600),
      ts.TradingSession(3, "HK", "Closing auction", 1600, 1610, intraday=False)]


def hk(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=HK_TZ).timestamp()


def hk_text(t: float) -> str:
    return datetime.fromtimestamp(t, HK_TZ).strftime("%Y-%m-%d %H:%M:%S")


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------------- the clock
@pytest.mark.parametrize("when,active", [
    ("2026-11-20 09:29:59", False), ("2026-11-20 09:30:00", True), ("2026-11-20 11:59:59", True),
    ("2026-11-20 12:00:00", False),  # end is exclusive: lunch break
    ("2026-11-20 12:59:59", False), ("2026-11-20 13:00:00", True), ("2026-11-20 15:59:59", True),
    ("2026-11-20 16:00:00", False), ("2026-11-20 16:05:00", False),  # closing auction: not intraday
    ("2026-11-21 10:00:00", False),  # Saturday
    ("2026-12-25 10:00:00", False),  # Christmas Day
])
def test_intraday_active_in_hong_kong_time(when: str, active: bool) -> None:
    assert ts.intraday_active(hk(when), HK, CAL) is active


def test_disabled_or_non_intraday_sessions_never_apply() -> None:
    no_morning = [ts.TradingSession(1, "HK", "Morning", 930, 1200, enabled=False), *HK[1:]]
    assert not ts.intraday_active(hk("2026-11-20 10:00:00"), no_morning, CAL)
    assert ts.intraday_active(hk("2026-11-20 14:00:00"), no_morning, CAL)
    assert not ts.intraday_active(hk("2026-11-20 10:00:00"), [], CAL)
    assert ts.next_boundary(hk("2026-11-20 10:00:00"), [], CAL) == math.inf


@pytest.mark.parametrize("when,boundary", [
    ("2026-11-20 08:00:00", "2026-11-20 09:30:00"),
    ("2026-11-20 09:30:00", "2026-11-20 12:00:00"),
    ("2026-11-20 12:00:00", "2026-11-20 13:00:00"),
    ("2026-11-20 14:00:00", "2026-11-20 16:00:00"),
    ("2026-11-20 16:00:00", "2026-11-23 09:30:00"),  # Friday close → Monday open
    ("2026-12-24 17:00:00", "2026-12-28 09:30:00"),  # Christmas Day, then the weekend
])
def test_next_boundary(when: str, boundary: str) -> None:
    assert hk_text(ts.next_boundary(hk(when), HK, CAL)) == boundary


def test_back_to_back_sessions_have_no_boundary_between_them() -> None:
    with_lunch = [*HK, ts.TradingSession(4, "HK", "Lunch", 1200, 1300)]
    assert ts.intraday_active(hk("2026-11-20 12:30:00"), with_lunch, CAL)
    assert hk_text(ts.next_boundary(hk("2026-11-20 10:00:00"), with_lunch, CAL)) == "2026-11-20 16:00:00"
    night = [ts.TradingSession(1, "US", "Late", 2130, 2400), ts.TradingSession(2, "US", "Early", 0, 400)]
    # Thursday 21:30 to Friday 04:00 is one window; Friday's late session runs on to Saturday 00:00
    assert hk_text(ts.next_boundary(hk("2026-11-19 22:00:00"), night, CAL)) == "2026-11-20 04:00:00"
    assert hk_text(ts.next_boundary(hk("2026-11-20 22:00:00"), night, CAL)) == "2026-11-21 00:00:00"


def test_now_text_for_the_editor_caption() -> None:
    assert ts.now_text(hk("2026-11-20 10:00:00"), HK, CAL) == (True, "Intraday ratios apply now, until 12:00")
    assert ts.now_text(hk("2026-11-20 16:30:00"), HK, CAL) == (
        False, "Intraday ratios do not apply now — next from Mon 23 Nov 09:30")
    assert ts.now_text(hk("2026-11-20 10:00:00"), [], CAL) == (
        False, "Intraday ratios do not apply now (no intraday session)")


# ---------------------------------------------------------------------- validation
def test_parse_hhmm() -> None:
    assert ts.parse_hhmm("9:30") == (930, "") and ts.parse_hhmm("0930") == (930, "")
    assert ts.parse_hhmm("930") == (930, "") and ts.parse_hhmm("24:00") == (2400, "")
    assert "not a time of day" in ts.parse_hhmm("24:30", "end")[1]
    assert "not a time of day" in ts.parse_hhmm("12:60")[1]
    assert "not a time:" in ts.parse_hhmm("noon", "start")[1]
    assert "Enter the start" in ts.parse_hhmm(" ", "start")[1]


def test_session_problems_are_named() -> None:
    def problem(start: int, end: int, name: str = "Extra", enabled: bool = True, sid: int = 9) -> str:
        return ts.session_problem(ts.TradingSession(sid, "HK", name, start, end, enabled=enabled), HK)

    assert problem(1200, 1300) == ""
    assert "must be before the end" in problem(1300, 1200)
    assert "must be before the end" in problem(1300, 1300)
    assert "not a time of day" in problem(1275, 1300)
    assert "overlaps HK Morning (09:30–12:00)" in problem(1130, 1230)
    assert "overlaps HK Closing auction" in problem(1605, 1700)
    assert problem(1130, 1230, enabled=False) == ""  # a disabled session may overlap
    assert "already has a session named “Morning”" in problem(1200, 1300, name="morning")
    assert problem(930, 1130, name="Morning", sid=1) == ""  # editing itself


# ---------------------------------------------------------------------- four-eyes requests
@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    st = Store(sqlite_url)
    st.migrate()
    seed_demo_store(st, clients=40, seed=7)
    ensure_permissions(st)
    yield st
    st.dispose()


def test_seeded_sessions_and_calendar(store: Store) -> None:
    assert [(s.name, s.start_hhmm, s.end_hhmm, s.intraday, s.enabled) for s in ts.load_sessions(store)] == [
        ("Morning", 930, 1200, True, True), ("Afternoon", 1300, 1600, True, True),
        ("Closing auction", 1600, 1610, False, True)]
    cal = ts.load_calendar(store)
    assert not cal.is_trading_day(datetime(2026, 12, 25).date()) and cal.is_trading_day(datetime(2026, 11, 20).date())


def test_session_changes_are_requests(store: Store) -> None:
    rid = ts.submit_session(store, RITA, "lunch-time financing", market="hk", name="Lunch", start_hhmm=1200,
                            end_hhmm=1300)
    req = changes.get(store, rid)
    assert (req.kind, req.op, req.target_table) == ("trading_session", "insert", "trading_sessions")
    assert req.after == {"market": "HK", "name": "Lunch", "start_hhmm": 1200, "end_hhmm": 1300, "intraday": True,
                         "enabled": True}
    assert len(ts.load_sessions(store)) == 3  # nothing applied yet
    # validation counts the pending insert: 12:15–12:45 would overlap it
    with pytest.raises(changes.ChangeError, match="overlaps HK Lunch"):
        ts.submit_session(store, RITA, "x", market="HK", name="Mid", start_hhmm=1215, end_hhmm=1245)
    with pytest.raises(changes.ChangeError, match="before the end"):
        ts.submit_session(store, RITA, "x", market="HK", name="Bad", start_hhmm=1700, end_hhmm=1630)
    changes.approve(store, SAM, rid)
    lunch = next(s for s in ts.load_sessions(store) if s.name == "Lunch")
    assert (lunch.start_hhmm, lunch.end_hhmm, lunch.intraday, lunch.enabled) == (1200, 1300, True, True)

    off = ts.set_enabled(store, RITA, 1, False, "no morning financing this week")
    assert changes.get(store, off).after == {"enabled": False}
    with pytest.raises(changes.ChangeError, match=f"#{off} pending"):
        ts.submit_session(store, RITA, "x", session_id=1, market="HK", name="Morning", start_hhmm=930,
                          end_hhmm=1130)
    changes.approve(store, SAM, off)
    assert not next(s for s in ts.load_sessions(store) if s.id == 1).enabled
    edit = ts.submit_session(store, RITA, "earlier close", session_id=2, market="HK", name="Afternoon",
                             start_hhmm=1300, end_hhmm=1530)
    assert changes.get(store, edit).after == {"end_hhmm": 1530}
    with pytest.raises(changes.ChangeError, match="nothing to change"):
        ts.submit_session(store, RITA, "same", session_id=3, market="HK", name="Closing auction",
                          start_hhmm=1600, end_hhmm=1610, intraday=False)


# ---------------------------------------------------------------------- the live monitor
SECURITIES = [{"code": "I.HK", "currency": "HKD", "price": 20.0, "market": "HK", "im_ratio": 0.4,
               "mm_ratio": 0.3, "intraday_im_ratio": 0.2, "intraday_mm_ratio": 0.1, "level": 1, "haircut": 0.15}]


def _book() -> object:
    accts = [{"account": code, "client": "C" + code, "client_name": code, "type": kind,
              "cash": {"HKD": -15_000.0}, "financing_limit": 50_000.0}
             for code, kind in (("D1", "intraday"), ("M1", "margin"))]
    return book_from_dict({"as_of": "2026-11-20T11:59:00+08:00", "base_currency": "HKD", "fx": {"HKD": 1.0},
                           "securities": SECURITIES, "accounts": accts,
                           "positions": [{"account": a, "code": "I.HK", "qty": 1000} for a in ("D1", "M1")]})


def _hb(t: float, seq: int) -> Message:
    return Message("hb", "e1", seq, t, [])


def test_intraday_account_uses_intraday_ratio_inside_a_session_and_long_outside() -> None:
    # 1000 I.HK @ 20 = MV 20,000; cash −15,000 → E 5,000 for both accounts.
    # Intraday ratios 0.2 / 0.1: IM 4,000, MM 2,000 → safe.  Long ratios 0.4 / 0.3: IM 8,000,
    # MM 6,000, FC 0.8 × 6,000 = 4,800 → E in [FC, MM): call, call amount 8,000 − 5,000 = 3,000.
    now = [hk("2026-11-20 11:59:00")]
    mon = LiveMonitor(None, _book(), calendar=CAL, clock=lambda: now[0], sessions=HK)  # type: ignore[arg-type]
    e = mon.engine
    d1, m1 = e.book.acct_index["D1"], e.book.acct_index["M1"]
    assert mon.intraday_session and hk_text(mon.next_session_boundary) == "2026-11-20 12:00:00"
    r = e.account_result(d1)
    assert (r["equity"], r["im"], r["mm"], r["status"], r["call_amount"]) == (5_000.0, 4_000.0, 2_000.0, "safe", 0.0)
    r = e.account_result(m1)  # a margin account uses the long table inside the session too
    assert (r["im"], r["mm"], r["status"], r["call_amount"]) == (8_000.0, 6_000.0, "call", 3_000.0)
    assert not mon.tracker.open[d1] and mon.tracker.open[m1]
    mon.take_changes()

    now[0] = hk("2026-11-20 11:59:59")
    mon._on_batch([_hb(now[0], 1)])
    assert mon.session_flips == 0 and e.im[d1] == 4_000.0

    now[0] = hk("2026-11-20 12:00:00")  # the boundary: intraday financing ends at the lunch break
    mon._on_batch([_hb(now[0], 2)])
    assert mon.session_flips == 1 and not mon.intraday_session
    r = e.account_result(d1)
    assert (r["im"], r["mm"], r["fc"], r["status"], r["call_amount"]) == (8_000.0, 6_000.0, 4_800.0, "call", 3_000.0)
    assert mon.tracker.open[d1]  # the flip opened a margin call on the intraday account
    reset, changed = mon.take_changes()
    assert changed.tolist() == [d1]  # only the account whose ratios moved
    assert hk_text(mon.next_session_boundary) == "2026-11-20 13:00:00"

    now[0] = hk("2026-11-20 12:30:00")
    mon._on_batch([_hb(now[0], 3)])
    assert mon.session_flips == 1

    now[0] = hk("2026-11-20 13:00:01")  # afternoon session: back to the intraday ratio
    mon._on_batch([_hb(now[0], 4)])
    assert mon.session_flips == 2 and mon.intraday_session
    assert (e.im[d1], e.mm[d1], e.im[m1]) == (4_000.0, 2_000.0, 8_000.0)
    ref = MarginEngine(e.book.copy(), intraday_session=True)
    np.testing.assert_array_equal(ref.im, e.im)

    now[0] = hk("2026-11-20 16:00:00")  # no feed running: the reader's timer crosses the boundary
    _, changed = mon.take_changes()
    assert mon.session_flips == 3 and not mon.intraday_session and changed.tolist() == [d1]
    assert e.im[d1] == 8_000.0
    assert hk_text(mon.next_session_boundary) == "2026-11-23 09:30:00"


def test_approved_session_change_reaches_the_live_monitor(store: Store) -> None:
    now = hk("2026-11-20 12:30:00")  # lunch break: long ratios for everybody
    mon = LiveMonitor(store, store.load_book(), calendar=ts.load_calendar(store), clock=lambda: now,
                      persist_calls=False)
    assert not mon.intraday_session
    intraday = np.flatnonzero(mon.engine.book.acct_type == 2)
    with mon.lock:
        long_im = mon.engine.im.copy()
        expected = MarginEngine(mon.engine.book.copy(), intraday_session=True).im
    assert intraday.size and (expected[intraday] < long_im[intraday]).any()
    mon.start()
    try:
        rid = ts.submit_session(store, RITA, "finance through lunch", market="HK", name="Lunch",
                                start_hhmm=1200, end_hhmm=1300)
        changes.approve(store, SAM, rid)
        wait_until(lambda: mon.intraday_session)
        assert hk_text(mon.next_session_boundary) == "2026-11-20 16:00:00"  # 09:30–16:00 is one window now
        with mon.lock:
            np.testing.assert_allclose(mon.engine.im, expected)
    finally:
        mon.stop()


# ---------------------------------------------------------------------- PostgreSQL
@pytest.mark.postgres
def test_postgres_sessions_and_index_haircuts_only_through_four_eyes(pg_url: str) -> None:
    owner = Store(pg_url)
    owner.migrate()
    seed_demo_store(owner, clients=10, seed=2)
    u = _seed_users(owner, "_" + uuid.uuid4().hex[:6])
    maker, checker = _as(pg_url, u["rita"].login), _as(pg_url, u["sam"].login)
    try:
        for sql in ("update trading_sessions set end_hhmm = 1300 where id = 1",
                    "insert into index_haircuts (index_id, haircut) values (1, 0.1)"):
            with pytest.raises(DBAPIError, match="permission denied"), maker.engine.begin() as conn:
                conn.execute(text(sql))
        rid = ts.submit_session(maker, u["rita"], "lunch financing", market="HK", name="Lunch", start_hhmm=1200,
                                end_hhmm=1300)
        off = ts.set_enabled(maker, u["rita"], 3, False, "no closing auction")
        hid = haircuts.submit_index_haircut(maker, u["rita"], 1, 0.15, "SFC review")
        for r in (rid, off, hid):
            assert changes.approve(checker, u["sam"], r) == "approved"
        got = {s.name: (s.start_hhmm, s.end_hhmm, s.intraday, s.enabled) for s in ts.load_sessions(owner)}
        assert got["Lunch"] == (1200, 1300, True, True) and got["Closing auction"][3] is False
        assert next(r for r in haircuts.index_haircuts(owner) if r["id"] == 1)["haircut"] == 0.15
    finally:
        maker.dispose()
        checker.dispose()
        owner.dispose()
