"""Liquidation (issue 8): proposals that restore IM with lot sizes, edited orders, confirm / cancel with audit,
batch liquidation behind a four-eyes company parameter, automatic liquidation once per call per day.

The book, worked by hand (prices HKD; IM released by selling one share = price × IM ratio):

    X.HK  10.00  IM 0.5  MM 0.4  haircut 0.5  lot 500   → 5 per share
    Y.HK  20.00  IM 0.6  MM 0.5  haircut 0.3  lot 100   → 12 per share
    Z.HK   5.00  IM 0.6  MM 0.5  haircut 1.0  lot 1000  suspended

    L1  10,000 X + 5,000 Y, cash −126,000: MV 200,000, E 74,000, IM 50,000 + 60,000 = 110,000,
        MM 90,000 → call; shortfall 36,000. Largest haircut first is X (although Y's IM ratio is
        larger): 36,000 / 5 = 7,200 shares → 15 lots of 500 = 7,500, releasing 37,500 → IM 72,500 ≤ E.
    L2  2,250 X + 5,000 Y, cash −65,000: MV 122,500, E 57,500, IM 11,250 + 60,000 = 71,250, MM 59,000
        → call; shortfall 13,750. All 2,250 X (4½ lots: the odd lot goes with the rest) releases
        11,250; 2,500 left / 12 = 208⅓ → 3 lots of 100 = 300 Y releasing 3,600 → IM 56,400 ≤ E.
    L3  10,000 Z + 1,000 Y, cash −41,000: MV 70,000, E 29,000, IM 42,000, MM 35,000 → call; shortfall
        13,000. Z is suspended: all 1,000 Y releases 12,000 and 1,000 stays short (cash needed).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, text

from models import schema as S
from services import auth, changes
from services import liquidation_orders as lo
from services.auth import AuthError, User
from services.bookfile import book_from_dict
from services.calendar import HK_TZ, TradingCalendar, shipped_holidays
from services.liquidation import (
    LiquidationError,
    OrderLine,
    account_for_liquidation,
    evaluate,
    lot_problem,
    propose,
    propose_many,
    restore_im_proposal,
)
from services.margin import MarginEngine
from services.margin_calls import CallRepository, CallTracker
from services.store import Store

RITA, SAM, TOM = (User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor"),
                  User("tom", "Tom", "trader"))
CAL = TradingCalendar(d for d, _ in shipped_holidays())
SECURITIES = [
    {"code": "X.HK", "currency": "HKD", "price": 10.0, "market": "HK", "im_ratio": 0.5, "mm_ratio": 0.4,
     "level": 1, "haircut": 0.5, "lot_size": 500},
    {"code": "Y.HK", "currency": "HKD", "price": 20.0, "market": "HK", "im_ratio": 0.6, "mm_ratio": 0.5,
     "level": 1, "haircut": 0.3, "lot_size": 100},
    {"code": "Z.HK", "currency": "HKD", "price": 5.0, "market": "HK", "im_ratio": 0.6, "mm_ratio": 0.5,
     "level": 3, "haircut": 1.0, "lot_size": 1000, "suspended": True},
]


def _book(l1_cash: float = -126_000.0) -> Any:
    def acct(code: str, cash: float) -> dict[str, Any]:
        return {"account": code, "client": "C" + code, "client_name": code, "type": "margin",
                "cash": {"HKD": cash}, "financing_limit": 500_000.0}

    return book_from_dict({
        "as_of": "2026-11-20T16:10:00+08:00", "base_currency": "HKD", "fx": {"HKD": 1.0},
        "securities": SECURITIES,
        "accounts": [acct("L1", l1_cash), acct("L2", -65_000.0), acct("L3", -41_000.0), acct("OK", 0.0)],
        "positions": [{"account": a, "code": c, "qty": q} for a, c, q in (
            ("L1", "X.HK", 10_000), ("L1", "Y.HK", 5_000), ("L2", "X.HK", 2_250), ("L2", "Y.HK", 5_000),
            ("L3", "Z.HK", 10_000), ("L3", "Y.HK", 1_000), ("OK", "X.HK", 1_000))]})


def _acct(engine: MarginEngine, code: str, reserved: dict[str, float] | None = None) -> Any:
    return account_for_liquidation(engine, engine.book.acct_index[code], reserved)


def _lines(lines: list[Any]) -> list[tuple[str, float]]:
    return [(x.code, x.qty) for x in lines]


# ---------------------------------------------------------------------- proposals
def test_proposal_largest_haircut_first_whole_lots() -> None:
    e = MarginEngine(_book())
    a = _acct(e, "L1")
    assert (a.status, a.equity, a.im, a.mm) == ("call", 74_000.0, 110_000.0, 90_000.0)
    assert a.deficit == 36_000.0
    lines = propose(a)
    assert _lines(lines) == [("X.HK", 7_500.0)]  # not Y, although Y's IM ratio is larger
    eff = evaluate(a, lines)
    assert eff.released == 37_500.0 and eff.im_after == 72_500.0 and eff.restores and eff.valid
    # 7,000 (14 lots) would release 35,000: 1,000 short — so 15 lots is the fewest that restore IM
    assert evaluate(a, [OrderLine("X.HK", 7_000)]).shortfall_after == 1_000.0


def test_proposal_exactly_whole_lots_boundary() -> None:
    # cash −125,000: E 75,000, shortfall 35,000 = exactly 7,000 X (14 lots): no 15th lot, IM after = E
    e = MarginEngine(_book(-125_000.0))
    a = _acct(e, "L1")
    assert _lines(propose(a)) == [("X.HK", 7_000.0)]
    eff = evaluate(a, propose(a))
    assert eff.im_after == eff.equity == 75_000.0 and eff.restores


def test_odd_lot_sold_with_the_rest_then_next_holding_in_lots() -> None:
    e = MarginEngine(_book())
    a = _acct(e, "L2")
    assert a.deficit == 13_750.0
    lines = propose(a)
    assert _lines(lines) == [("X.HK", 2_250.0), ("Y.HK", 300.0)]
    eff = evaluate(a, lines)
    assert eff.released == 11_250.0 + 3_600.0 and eff.im_after == 56_400.0 and eff.restores
    assert eff.valid  # 2,250 is not whole lots of 500, but it is the whole holding


def test_suspended_never_proposed_and_cash_shortfall_reported() -> None:
    e = MarginEngine(_book())
    a = _acct(e, "L3")
    assert a.deficit == 13_000.0
    lines = propose(a)
    assert _lines(lines) == [("Y.HK", 1_000.0)]
    eff = evaluate(a, lines)
    assert not eff.restores and eff.shortfall_after == 1_000.0
    assert "1,000.00 HKD" in eff.message() and "no longer restore IM" in eff.message()
    assert "suspended" in evaluate(a, [OrderLine("Z.HK", 1_000)]).problems[0]


def test_no_proposal_when_account_meets_im() -> None:
    e = MarginEngine(_book())
    assert propose(_acct(e, "OK")) == []
    assert restore_im_proposal(e, e.book.acct_index["OK"]) == (0.0, [])


def test_drilldown_proposal_matches() -> None:
    e = MarginEngine(_book())
    deficit, props = restore_im_proposal(e, e.book.acct_index["L2"])
    assert deficit == 13_750.0
    assert [(p.code, p.qty, p.proceeds, p.im_release) for p in props] == [
        ("X.HK", 2_250.0, 22_500.0, 11_250.0), ("Y.HK", 300.0, 6_000.0, 3_600.0)]


def test_propose_many_matches_one_by_one() -> None:
    e = MarginEngine(_book())
    idx = [e.book.acct_index[c] for c in ("L1", "L2", "L3", "OK")]
    many = propose_many(e, idx)
    assert [(o.code, o.qty, o.im_release) for o in many[idx[0]][0]] == [("X.HK", 7_500.0, 37_500.0)]
    assert [(o.code, o.qty) for o in many[idx[1]][0]] == [("X.HK", 2_250.0), ("Y.HK", 300.0)]
    assert many[idx[2]][1] == 1_000.0 and many[idx[0]][1] == 0.0
    assert many[idx[3]] == ([], 0.0)
    # reserved shares are not sold twice: 7,500 X already ordered covers L1's whole shortfall
    res = propose_many(e, idx[:1], {(idx[0], e.book.sec_index["X.HK"]): 7_500.0})
    assert res[idx[0]] == ([], 0.0)


# ---------------------------------------------------------------------- edited orders
def test_edited_orders_validated_naming_the_line() -> None:
    e = MarginEngine(_book())
    a = _acct(e, "L1")
    bad_lot = evaluate(a, [OrderLine("X.HK", 7_250)])
    assert bad_lot.problems == ["line 1 (X.HK): 7,250 is not a whole number of lots of 500 "
                                "(sell 7,000 or 7,500 or the whole 10,000)"]
    assert lot_problem(3_501, 500, 4_000) == "3,501 is not a whole number of lots of 500 (sell 3,500 or the whole 4,000)"
    assert "sells 10,500 but the account holds 10,000" in evaluate(a, [OrderLine("X.HK", 10_500)]).problems[0]
    assert evaluate(a, [OrderLine("Y.HK", 100), OrderLine("Z.HK", 1_000)]).problems == [
        "line 2 (Z.HK): the account holds no Z.HK to sell"]
    assert "already on line 1" in evaluate(a, [OrderLine("X.HK", 500), OrderLine("X.HK", 500)]).problems[0]
    assert "more than 0" in evaluate(a, [OrderLine("X.HK", 0)]).problems[0]
    assert "limit price" in evaluate(a, [OrderLine("X.HK", 500, "limit", None)]).problems[0]
    # qty lowered: valid, but 1,000 short; a line added covers it: 35,000 + 100 × 12 = 36,200
    short = evaluate(a, [OrderLine("X.HK", 7_000)])
    assert short.valid and not short.restores and short.shortfall_after == 1_000.0
    added = evaluate(a, [OrderLine("X.HK", 7_000), OrderLine("Y.HK", 100)])
    assert added.restores and added.im_after == 73_800.0
    # the X line removed, all Y instead: 5,000 × 12 = 60,000 ≥ 36,000
    only_y = evaluate(a, [OrderLine("Y.HK", 3_000)])
    assert only_y.restores and only_y.im_after == only_y.equity == 74_000.0  # exactly restored


def test_reserved_shares_cannot_be_sold_again() -> None:
    e = MarginEngine(_book())
    a = _acct(e, "L1", {"X.HK": 7_500})
    assert a.open_deficit == -1_500.0 and propose(a) == []
    msg = evaluate(a, [OrderLine("X.HK", 3_000)]).problems[0]
    assert msg == "line 1 (X.HK): sells 3,000 but the account holds 10,000, 7,500 already in outstanding orders"
    assert evaluate(a, [OrderLine("X.HK", 2_500)]).valid


def test_lot_problem_text() -> None:
    assert lot_problem(1_000, 500, 10_000) == ""
    assert lot_problem(2_250, 500, 2_250) == ""  # the rest of the holding
    assert lot_problem(250, 500, 2_250) == "250 is not a whole number of lots of 500 (sell 500 or the whole 2,250)"


# ---------------------------------------------------------------------- the store
def ts(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> float:
    return datetime(y, m, d, hh, mm, tzinfo=HK_TZ).timestamp()


def _store(url: str) -> tuple[Store, MarginEngine]:
    store = Store(url)
    store.migrate()
    store.save_book(_book())
    auth.ensure_permissions(store)
    book = store.load_book()
    e = MarginEngine(book)
    tracker = CallTracker(book.n_acct, CAL, 3)
    assert book.acct_ids is not None
    repo = CallRepository(store, book.acct_ids)
    idx = book.acct_index
    # L1, L2 triggered Mon 23 Nov (deadline Thu 26); L3 on Thu 26 Nov (deadline Tue 1 Dec)
    repo.write(tracker.update(e, np.array([idx["L1"], idx["L2"]]), ts(2026, 11, 23)))
    repo.write(tracker.update(e, np.array([idx["L3"]]), ts(2026, 11, 26)))
    return store, e


def _count(store: Store, where: str = "1 = 1") -> int:
    with store.begin() as conn:
        return int(conn.execute(text(f"select count(*) from liquidation_orders where {where}")).scalar() or 0)


def _audit(store: Store, action: str) -> list[Any]:
    with store.begin() as conn:
        return list(conn.execute(select(S.audit_log).where(S.audit_log.c.action == action)
                                 .order_by(S.audit_log.c.id)).all())


def _confirm_and_cancel(url: str) -> None:
    store, e = _store(url)
    try:
        a = _acct(e, "L1")
        now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # 11:00 HK
        ids = lo.confirm(store, RITA, a, propose(a), "Client unreachable", now=now)
        rows = lo.list_orders(store)
        assert [(r["id"], r["account"], r["code"], r["qty"], r["state"], r["order_type"], r["im_release"],
                 r["trade_day"], r["created_by"]) for r in rows] == [
            (ids[0], "L1", "X.HK", 7_500.0, "confirmed", "market", 37_500.0, date(2026, 11, 24), "rita")]
        assert rows[0]["call_id"] == lo.call_context(store, "L1", date(2026, 11, 24)).call_id is not None
        (rec,) = _audit(store, "liquidation_confirm")
        assert rec.entity_key == rows[0]["ticket"] and '"qty":7500.0' in rec.after
        # the same proposal again (a second workstation, not yet seeing the first): refused, nothing written
        with pytest.raises(LiquidationError, match="7,500 already in outstanding orders"):
            lo.confirm(store, RITA, a, propose(a), "again", now=now)
        assert _count(store) == 1
        # a partial liquidation needs to be accepted as such
        l3 = _acct(e, "L3")
        with pytest.raises(LiquidationError, match="no longer restore IM"):
            lo.confirm(store, RITA, l3, propose(l3), "sell what can be sold", now=now)
        with pytest.raises(LiquidationError, match="lots of 100"):
            lo.confirm(store, RITA, l3, [OrderLine("Y.HK", 150)], "typo", now=now, allow_partial=True)
        assert _count(store) == 1
        lo.confirm(store, RITA, l3, propose(l3), "sell what can be sold", now=now, allow_partial=True)
        assert _count(store, "account = 'L3' and qty = 1000") == 1
        with pytest.raises(AuthError, match="may not liquidate"):
            lo.confirm(store, TOM, a, [OrderLine("X.HK", 500)], "x", now=now)
        with pytest.raises(LiquidationError, match="reason"):
            lo.cancel(store, RITA, ids[0], "  ")
        lo.cancel(store, RITA, ids[0], "Client paid in before the order went out")
        r = lo.list_orders(store, state="cancelled")[0]
        assert (r["id"], r["cancelled_by"], r["cancel_reason"]) == (ids[0], "rita", "Client paid in before the order "
                                                                                   "went out")
        assert '"reason": "Client paid in' in _audit(store, "liquidation_cancel")[0].after
        with pytest.raises(LiquidationError, match="already cancelled"):
            lo.cancel(store, RITA, ids[0], "twice")
        # cancelled shares are free again
        assert lo.call_context(store, "L1", date(2026, 11, 24)).reserved == {}
        assert [r["account"] for r in lo.list_orders(store, account="l3")] == ["L3"]
        assert lo.list_orders(store, day_from=date(2026, 11, 25)) == []
    finally:
        store.dispose()


def test_confirm_and_cancel_sqlite(sqlite_url: str) -> None:
    _confirm_and_cancel(sqlite_url)


@pytest.mark.postgres
def test_confirm_and_cancel_postgres(pg_url: str) -> None:
    _confirm_and_cancel(pg_url)


def test_batch_refused_until_enabled_through_four_eyes(sqlite_url: str) -> None:
    store, e = _store(sqlite_url)
    calls = {c["account"]: c["id"] for c in lo.open_calls(store)}
    assert set(calls) == {"L1", "L2", "L3"}
    assert lo.settings(store).batch_enabled is False
    with pytest.raises(LiquidationError, match="batch_liquidation_enabled = 0"):
        lo.propose_batch(store, e, list(calls.values()))
    rid = changes.submit(store, RITA, "company_parameter", {"name": "batch_liquidation_enabled"}, {"value": 1.0},
                         "Allow the desk to liquidate long-standing calls together")
    assert lo.settings(store).batch_enabled is False  # pending: not yet
    assert changes.approve(store, SAM, rid, "agreed") == "approved"
    assert lo.settings(store).batch_enabled is True
    items = lo.propose_batch(store, e, [calls["L1"], calls["L2"]], today=date(2026, 11, 27))
    assert [(i.account, i.deficit, [(o.code, o.qty) for o in i.orders], i.shortfall_after) for i in items] == [
        ("L1", 36_000.0, [("X.HK", 7_500.0)], 0.0), ("L2", 13_750.0, [("X.HK", 2_250.0), ("Y.HK", 300.0)], 0.0)]
    now = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    ids = lo.confirm_batch(store, RITA, items, "long-standing calls", now=now)
    assert len(ids) == 3 and _count(store, "reason = 'batch: long-standing calls'") == 3
    assert len(_audit(store, "liquidation_batch")) == 2  # one ticket per account
    # the same batch again: refused as a whole, the accounts have outstanding orders now
    with pytest.raises(LiquidationError, match="L1: liquidation orders were confirmed for it meanwhile"):
        lo.confirm_batch(store, RITA, items, "again", now=now)
    assert _count(store) == 3
    # disabled again through four-eyes: confirm refused too
    rid = changes.submit(store, RITA, "company_parameter", {"name": "batch_liquidation_enabled"}, {"value": 0.0},
                         "back to one by one")
    changes.approve(store, SAM, rid)
    with pytest.raises(LiquidationError, match="disabled"):
        lo.propose_batch(store, e, [calls["L3"]])
    with pytest.raises(LiquidationError, match="disabled"):
        lo.confirm_batch(store, RITA, items[:0], "nothing", now=now)
    store.dispose()


def _auto(url: str) -> None:
    store, e = _store(url)
    try:
        assert lo.settings(store).auto_time == "10:00" and lo.settings(store).auto_enabled
        # Thu 26 Nov 11:00: L1 and L2 are at their deadline, not past it
        assert lo.run_auto_liquidation(store, e, ts(2026, 11, 26, 11), calendar=CAL).calls == 0
        # Fri 27 Nov 09:59: before the configured time nothing runs
        early = lo.run_auto_liquidation(store, e, ts(2026, 11, 27, 9, 59), calendar=CAL)
        assert not early.ran and "10:00" in early.message
        assert _count(store) == 0
        res = lo.run_auto_liquidation(store, e, ts(2026, 11, 27, 10, 0), calendar=CAL)
        assert (res.ran, res.calls, res.orders) == (True, 2, 3)
        rows = lo.list_orders(store)
        assert sorted((r["account"], r["code"], r["qty"], r["reason"], r["created_by"], r["state"]) for r in rows) == [
            ("L1", "X.HK", 7_500.0, "auto", "auto", "confirmed"), ("L2", "X.HK", 2_250.0, "auto", "auto", "confirmed"),
            ("L2", "Y.HK", 300.0, "auto", "auto", "confirmed")]
        assert "L3" not in {r["account"] for r in rows}  # its deadline (1 Dec) is not past
        # once per call per day: later runs the same day create nothing
        again = lo.run_auto_liquidation(store, e, ts(2026, 11, 27, 15), calendar=CAL)
        assert (again.ran, again.calls, again.orders) == (True, 0, 0) and _count(store) == 3
        assert len(_audit(store, "liquidation_auto")) == 2
        last = lo.settings(store).last_run
        assert last is not None and last["day"] == "2026-11-27"
        # Saturday: not a trading day
        assert not lo.run_auto_liquidation(store, e, ts(2026, 11, 28, 11), calendar=CAL).ran
        with store.begin() as conn:
            assert conn.execute(select(func.count()).select_from(S.liquidation_auto_runs)).scalar() == 2
    finally:
        store.dispose()


def test_auto_liquidation_sqlite(sqlite_url: str) -> None:
    _auto(sqlite_url)


@pytest.mark.postgres
def test_auto_liquidation_postgres(pg_url: str) -> None:
    _auto(pg_url)


def test_parameter_editor_checks_the_liquidation_parameters() -> None:
    from widgets.parameters_dock import validate_parameter

    assert validate_parameter("batch_liquidation_enabled", "1", 0.0) == (1.0, "")
    assert "0 (off) or 1 (on)" in validate_parameter("batch_liquidation_enabled", "2")[1]
    assert validate_parameter("auto_liquidation_time", "930", 600.0) == (930.0, "")  # 15:30
    assert "0–1439" in validate_parameter("auto_liquidation_time", "1440")[1]
    assert "0–1439" in validate_parameter("auto_liquidation_time", "600.5")[1]
