"""Ending margin calls by hand and by completed liquidation (RISK_METHODS §2, issue 8), on SQLite and
PostgreSQL with a running live monitor.

The book is tests/test_liquidation.py's, worked by hand (prices HKD):

    L1  10,000 X @ 10 (IM 0.5, MM 0.4, lot 500) + 5,000 Y @ 20 (IM 0.6, MM 0.5, lot 100), cash −126,000:
        MV 200,000, E 74,000, IM 110,000, MM 90,000 → call.
        Sell 1,000 X at 10.00: cash −116,000, X 9,000; E 74,000 (cash +10,000, MV −10,000),
        IM 105,000, MM 86,000 — still below MM.
        Then 200 Y at 20.00: cash −112,000, Y 4,800; IM 102,600, MM 84,000.
        Then 300 Y at 20.00: cash −106,000, Y 4,500; IM 99,000, MM 81,000 — still below MM, so the call
        ends as liquidated when its last order is filled.
    L3  10,000 Z @ 5 (suspended) + 1,000 Y, cash −41,000: E 29,000, IM 42,000, MM 35,000 → call.
        Sell all 1,000 Y at 20.00: cash −21,000, E 29,000, IM 30,000, MM 25,000 → E ≥ MM: met.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from models import schema as S
from services import auth
from services import liquidation_orders as lo
from services.auth import AuthError, User
from services.call_close import CallCloseError, may_close
from services.liquidation import LiquidationError, OrderLine, account_for_liquidation
from services.liquidation_fills import fill_problem, record_and_apply
from services.live import LiveMonitor
from services.margin import MarginEngine
from services.margin_calls import CallTracker
from services.store import Store
from tests.test_liquidation import CAL, _book

RITA, SAM, TOM = (User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor"),
                  User("tom", "Tom", "trader"))
CORA, OLIVE = User("cora", "Cora", "cro"), User("olive", "Olive", "operations")


@pytest.fixture
def desk(request: pytest.FixtureRequest) -> Iterator[tuple[Store, LiveMonitor]]:
    url = request.getfixturevalue(request.param)
    store = Store(url)
    store.migrate()
    store.save_book(_book())
    auth.ensure_permissions(store)
    mon = LiveMonitor(store, store.load_book(), calendar=CAL)
    mon.start()
    assert mon.flush_writes()
    yield store, mon
    mon.stop()
    store.dispose()


BOTH = [pytest.param("sqlite_url", id="sqlite"), pytest.param("pg_url", id="postgres", marks=pytest.mark.postgres)]


def _call(store: Store, account: str, state: str | None = None) -> Any:
    mc = S.margin_calls
    q = select(mc).join(S.accounts, S.accounts.c.id == mc.c.account_id).where(S.accounts.c.code == account)
    if state:
        q = q.where(mc.c.state == state)
    with store.begin() as conn:
        return conn.execute(q.order_by(mc.c.id.desc())).first()


def _rows(store: Store, table: Any, **where: Any) -> list[Any]:
    with store.begin() as conn:
        return list(conn.execute(select(table).filter_by(**where).order_by(table.c.id)).all())


def _stored(store: Store, account: str, code: str) -> tuple[float, float]:
    with store.begin() as conn:
        a = conn.execute(select(S.accounts.c.id).where(S.accounts.c.code == account)).scalar_one()
        s = conn.execute(select(S.securities.c.id).where(S.securities.c.code == code)).scalar_one()
        q = conn.execute(select(S.positions.c.qty).where(S.positions.c.account_id == a,
                                                         S.positions.c.security_id == s)).scalar_one()
        c = conn.execute(select(S.cash_balances.c.amount).where(S.cash_balances.c.account_id == a,
                                                                S.cash_balances.c.currency == "HKD")).scalar_one()
    return float(q), float(c)


def _margin(mon: LiveMonitor, account: str) -> tuple[float, float, float, bool]:
    a = mon.engine.book.acct_index[account]
    with mon.lock:
        return (round(float(mon.engine.equity[a]), 2), round(float(mon.engine.im[a]), 2),
                round(float(mon.engine.mm[a]), 2), bool(mon.tracker.open[a]))


# ---------------------------------------------------------------------- manual close
@pytest.mark.parametrize("desk", BOTH, indirect=True)
def test_manual_close_needs_a_remark_is_stored_with_end_snapshot_and_audit(desk: tuple[Store, LiveMonitor]) -> None:
    store, mon = desk
    l1 = mon.engine.book.acct_index["L1"]
    opened = _call(store, "L1", "open")
    assert opened is not None and _margin(mon, "L1") == (74_000.0, 110_000.0, 90_000.0, True)
    with pytest.raises(CallCloseError, match="^Remark: say why"):
        mon.close_call(l1, RITA, "   ")
    with pytest.raises(AuthError, match="tom \\(Trader\\) may not close margin calls"):
        mon.close_call(l1, TOM, "client promised to pay")
    assert mon.flush_writes() and _call(store, "L1").state == "open" and bool(mon.tracker.open[l1])

    ev = mon.close_call(l1, SAM, "  Client pledged a property; legal follows up  ")
    assert (ev.kind, ev.detail, ev.actor, ev.equity, ev.mm) == (
        "closed", "Client pledged a property; legal follows up", "sam", 74_000.0, 90_000.0)
    r = _call(store, "L1")
    assert (r.id, r.state, r.close_reason, r.remark) == (opened.id, "closed", "closed",
                                                         "Client pledged a property; legal follows up")
    assert r.closed_at is not None
    (end,) = [s for s in _rows(store, S.margin_call_snapshots, call_id=r.id) if s.kind == "end"]
    snap = json.loads(end.payload)
    assert (snap["equity"], snap["im"], snap["mm"], snap["cash"]) == (74_000.0, 110_000.0, 90_000.0,
                                                                      {"HKD": -126_000.0})
    assert sorted((p["code"], p["qty"]) for p in snap["positions"]) == [("X.HK", 10_000.0), ("Y.HK", 5_000.0)]
    assert [(e.kind, e.detail) for e in _rows(store, S.margin_call_events, call_id=r.id)][-1] == (
        "closed", "sam: Client pledged a property; legal follows up")  # the call history says who
    audits = [a for a in _rows(store, S.audit_log) if a.action == "margin_call_closed"]
    assert len(audits) == 1 and audits[0].entity_key == str(r.id)
    assert json.loads(audits[0].after)["remark"] == "Client pledged a property; legal follows up"
    if store.kind == "sqlite":  # PostgreSQL audits the database login, whoever the app says
        assert audits[0].actor == "sam"
    # closed once only; the alerts no longer count it open; another recalculation does not reopen it
    with pytest.raises(CallCloseError, match="L1 has no open margin call"):
        mon.close_call(l1, CORA, "twice")
    mon.engine.recompute_all()
    assert mon.tracker.update(mon.engine, np.arange(mon.engine.book.n_acct), mon.clock()) == []
    assert not mon.tracker.open[l1] and mon.tracker.open[mon.engine.book.acct_index["L2"]]
    # a restarted monitor does not call L1 again today either; L2 and L3 stay open
    mon2 = LiveMonitor(store, store.load_book(), calendar=CAL)  # not started: it writes nothing
    assert [c for c in ("L1", "L2", "L3") if mon2.tracker.open[mon2.engine.book.acct_index[c]]] == ["L2", "L3"]
    # the CRO may close a call too
    mon.close_call(mon.engine.book.acct_index["L2"], CORA, "Written off by the credit committee")
    assert _call(store, "L2").state == "closed"


def test_who_may_close(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    store.migrate()
    auth.ensure_permissions(store)
    try:
        assert [u.role for u in (RITA, SAM, CORA, TOM, OLIVE) if may_close(store, u)] == [
            "risk_officer", "supervisor", "cro"]
    finally:
        store.dispose()


def test_closed_account_is_quiet_until_it_recovers_or_the_day_ends() -> None:
    e = MarginEngine(_book())
    tr = CallTracker(e.book.n_acct, CAL, 3)
    l1, x = e.book.acct_index["L1"], e.book.sec_index["X.HK"]
    one = np.array([l1])
    t0 = 1_795_000_000.0  # a Monday morning in HK (2026-11-16 16:26 HK)
    assert [ev.kind for ev in tr.update(e, one, t0)] == ["open"]
    tr.close(e, l1, t0 + 60, "closed", "client on the phone, paying today", "rita")
    e.apply_prices(np.array([x]), np.array([9.9]))  # worse: still not called again today
    assert tr.update(e, one, t0 + 120) == [] and not tr.open[l1]
    e.apply_prices(np.array([x]), np.array([12.0]))  # better, still below: E 94,000 < MM 98,000
    assert tr.update(e, one, t0 + 180) == [] and tr.quiet[l1]
    e.apply_prices(np.array([x]), np.array([20.0]))  # MV 300,000, E 174,000 ≥ MM 130,000: recovered
    assert tr.update(e, one, t0 + 240) == [] and not tr.quiet[l1]
    e.apply_prices(np.array([x]), np.array([10.0]))  # back below MM: a new call opens
    assert [ev.kind for ev in tr.update(e, one, t0 + 300)] == ["open"]
    tr.close(e, l1, t0 + 360, "closed", "again", "rita")
    assert tr.update(e, one, t0 + 420) == []
    assert [ev.kind for ev in tr.update(e, one, t0 + 86_400)] == ["open"]  # next day: called again


# ---------------------------------------------------------------------- fills and completed liquidation
def _confirm(store: Store, mon: LiveMonitor, account: str, lines: list[OrderLine]) -> list[int]:
    with mon.lock:
        acct = account_for_liquidation(mon.engine, mon.engine.book.acct_index[account],
                                       lo.call_context(store, account).reserved)
    return lo.confirm(store, RITA, acct, lines, "client unreachable", allow_partial=True)


@pytest.mark.parametrize("desk", BOTH, indirect=True)
def test_fills_move_position_and_cash_and_complete_the_liquidation(desk: tuple[Store, LiveMonitor]) -> None:
    store, mon = desk
    x_id, y_id = _confirm(store, mon, "L1", [OrderLine("X.HK", 1_000), OrderLine("Y.HK", 500)])
    (extra,) = _confirm(store, mon, "L1", [OrderLine("Y.HK", 100)])
    lo.cancel(store, RITA, extra, "entered twice")
    call = _call(store, "L1", "open")

    # refusals name the field; nothing is written
    orders = {r["id"]: r for r in lo.list_orders(store, account="L1")}
    assert fill_problem(orders[y_id], 350, 20.0, 5_000) == "Filled qty: whole lots of 100, or all 5,000 held"
    assert fill_problem(orders[y_id], 600, 20.0, 5_000) == "Filled qty: at most 500 (the order's 500)"
    assert fill_problem(orders[y_id], 0, 20.0, 5_000) == "Filled qty: more than 0"
    assert fill_problem(orders[y_id], 100, 0.0, 5_000) == "Price: more than 0"
    assert fill_problem(orders[y_id], 300, 20.0, 300) == ""  # the whole holding may be an odd lot
    assert "only confirmed or sent" in fill_problem(orders[extra], 100, 20.0, 5_000)
    with pytest.raises(LiquidationError, match="^Price: more than 0"):
        record_and_apply(store, RITA, x_id, 1_000, -1.0, mon)
    with pytest.raises(AuthError, match="may not liquidate"):
        record_and_apply(store, TOM, x_id, 1_000, 10.0, mon)
    assert _stored(store, "L1", "X.HK") == (10_000.0, -126_000.0)

    # sell 1,000 X at 10.00: cash +10,000, position −1,000, E unchanged, IM −5,000, MM −4,000
    r = record_and_apply(store, RITA, x_id, 1_000, 10.0, mon)
    assert (r.state, r.filled_qty, r.proceeds, r.position_after, r.cash_after) == (
        "filled", 1_000.0, 10_000.0, 9_000.0, -116_000.0)
    assert _stored(store, "L1", "X.HK") == (9_000.0, -116_000.0)
    assert _margin(mon, "L1") == (74_000.0, 105_000.0, 86_000.0, True)
    assert r.call_ended is None and not r.call_orders_filled and r.call_orders == [x_id, y_id]
    with pytest.raises(LiquidationError, match="already filled"):
        lo.cancel(store, RITA, x_id, "too late")

    # 200 of the 500 Y: partly filled — the call stays open; the rest stays reserved
    r = record_and_apply(store, RITA, y_id, 200, 20.0, mon)
    assert (r.state, r.filled_qty, r.call_ended) == ("partly filled", 200.0, None)
    assert _stored(store, "L1", "Y.HK") == (4_800.0, -112_000.0)
    assert _margin(mon, "L1") == (74_000.0, 102_600.0, 84_000.0, True)
    assert lo.call_context(store, "L1").reserved == {"Y.HK": 300.0}
    assert _call(store, "L1").state == "open"
    with pytest.raises(LiquidationError, match="at most 300 \\(the order's 500 less 200 already filled\\)"):
        record_and_apply(store, RITA, y_id, 400, 20.0, mon)

    # the last 300: every order of the call that was not cancelled is filled → liquidated (E still < MM)
    r = record_and_apply(store, RITA, y_id, 300, 20.0, mon)
    assert (r.state, r.call_ended, r.call_orders_filled) == ("filled", "liquidated", True)
    assert _stored(store, "L1", "Y.HK") == (4_500.0, -106_000.0)
    assert _margin(mon, "L1") == (74_000.0, 99_000.0, 81_000.0, False)
    done = _call(store, "L1")
    assert (done.id, done.state, done.close_reason) == (call.id, "liquidated", "liquidated")
    assert done.remark == f"Liquidation completed: orders #{x_id}, #{y_id} filled"
    assert _rows(store, S.margin_call_events, call_id=call.id)[-1].detail == f"rita: {done.remark}"
    end = [json.loads(s.payload) for s in _rows(store, S.margin_call_snapshots, call_id=call.id) if s.kind == "end"]
    assert len(end) == 1 and sorted((p["code"], p["qty"]) for p in end[0]["positions"]) == [
        ("X.HK", 9_000.0), ("Y.HK", 4_500.0)]
    assert end[0]["cash"] == {"HKD": -106_000.0}
    acts = [a.action for a in _rows(store, S.audit_log)]
    assert acts.count("liquidation_fill") == 3 and acts.count("margin_call_liquidated") == 1
    fills = [json.loads(a.after) for a in _rows(store, S.audit_log) if a.action == "liquidation_fill"]
    assert [(f["fill_qty"], f["price"], f["position"], f["cash"]) for f in fills] == [
        (1_000.0, 10.0, 9_000.0, -116_000.0), (200.0, 20.0, 4_800.0, -112_000.0), (300.0, 20.0, 4_500.0, -106_000.0)]
    assert [(o["id"], o["state"], o["filled_qty"], o["fill_value"], o["filled_by"])
            for o in lo.list_orders(store, account="L1")] == [
        (extra, "cancelled", 0.0, 0.0, None), (y_id, "filled", 500.0, 10_000.0, "rita"),
        (x_id, "filled", 1_000.0, 10_000.0, "rita")]


@pytest.mark.parametrize("desk", BOTH, indirect=True)
def test_fill_that_brings_equity_above_mm_ends_the_call_as_met(desk: tuple[Store, LiveMonitor]) -> None:
    store, mon = desk
    (y_id,) = _confirm(store, mon, "L3", [OrderLine("Y.HK", 1_000)])
    r = record_and_apply(store, RITA, y_id, 1_000, 20.0, mon)
    assert (r.state, r.call_ended, r.cash_after) == ("filled", "met", -21_000.0)
    assert _margin(mon, "L3") == (29_000.0, 30_000.0, 25_000.0, False)
    assert mon.flush_writes()
    c = _call(store, "L3")
    assert (c.state, c.close_reason) == ("met", "met")
    assert "margin_call_liquidated" not in [a.action for a in _rows(store, S.audit_log)]


def test_fill_without_a_monitor_only_writes_the_store(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    store.migrate()
    store.save_book(_book())
    auth.ensure_permissions(store)
    try:
        e = MarginEngine(store.load_book())
        acct = account_for_liquidation(e, e.book.acct_index["OK"])
        (oid,) = lo.confirm(store, RITA, acct, [OrderLine("X.HK", 1_000)], "reduce", allow_partial=True)
        r = record_and_apply(store, RITA, oid, 1_000, 10.5, None)
        assert (r.state, r.margin, r.call_id, r.call_ended) == ("filled", None, None, None)
        assert _stored(store, "OK", "X.HK") == (0.0, 10_500.0)
        assert lo.list_orders(store)[0]["trade_day"] <= date.today()
    finally:
        store.dispose()


def test_a_call_closed_on_one_workstation_is_not_met_over_on_another(sqlite_url: str) -> None:
    from services.margin_calls import CallRepository

    store = Store(sqlite_url)
    store.migrate()
    store.save_book(_book())
    try:
        book = store.load_book()
        assert book.acct_ids is not None
        desks = []
        for _ in range(2):
            e = MarginEngine(store.load_book())
            tr, repo = CallTracker(book.n_acct, CAL, 3), CallRepository(store, book.acct_ids)
            repo.load_open(tr, {int(x): i for i, x in enumerate(book.acct_ids.tolist())})
            repo.write(tr.update(e, np.arange(book.n_acct), 1_795_000_000.0))
            desks.append((e, tr, repo))
        l1, x = book.acct_index["L1"], book.sec_index["X.HK"]
        (e1, tr1, repo1), (e2, tr2, repo2) = desks
        call_id = _call(store, "L1", "open").id
        repo1.write([tr1.close(e1, l1, 1_795_000_060.0, "closed", "settled by cheque", "rita")])
        e2.apply_prices(np.array([x]), np.array([20.0]))  # E ≥ MM on the second desk a moment later
        met = tr2.update(e2, np.array([l1]), 1_795_000_120.0)
        assert [ev.kind for ev in met] == ["met"]
        repo2.write(met)
        r = _call(store, "L1")
        assert (r.id, r.state, r.remark) == (call_id, "closed", "settled by cheque")
        assert [ev.kind for ev in _rows(store, S.margin_call_events, call_id=call_id)] == ["open", "closed"]
    finally:
        store.dispose()
