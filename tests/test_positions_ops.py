"""Positions and collections, options and currency borrowing (issue 8) on hand-computed books, on a real
SQLite file and a real PostgreSQL database (the PostgreSQL runs act as real maker / checker logins).

Every expected number is worked out by hand in the comments.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from services import auth, borrowing, changes, options
from services import positions_ops as po
from services.bookfile import book_from_dict
from services.store import Store
from tests.test_four_eyes import _as, _seed_users

TODAY = date(2026, 11, 25)  # a Wednesday with no Hong Kong holiday in the fortnight before it

SECURITIES = [
    {"code": "S.HK", "currency": "HKD", "price": 10.0, "market": "HK", "im_ratio": 0.5, "mm_ratio": 0.4,
     "short_im_ratio": 1.5, "short_mm_ratio": 1.3, "level": 1, "haircut": 0.2, "lot_size": 100},
    {"code": "T.HK", "currency": "HKD", "price": 50.0, "market": "HK", "im_ratio": 0.5, "mm_ratio": 0.4,
     "short_im_ratio": 1.5, "short_mm_ratio": 1.3, "level": 1, "haircut": 0.25, "lot_size": 100},
    {"code": "U.US", "currency": "USD", "price": 10.0, "market": "US", "im_ratio": 0.3, "mm_ratio": 0.2,
     "level": 1, "haircut": 0.15},
]


def _acct(code: str, hkd: float = 0.0, usd: float = 0.0, client: str | None = None) -> dict[str, Any]:
    return {"account": code, "client": client or "C" + code, "client_name": code, "type": "margin",
            "cash": {"HKD": hkd, "USD": usd}, "financing_limit": 1_000_000.0}


ACCOUNTS = [
    _acct("M1", 100_000), _acct("M2", 100_000), _acct("M3", 100_000),
    _acct("L1", -74_999.99), _acct("L2", -75_000), _acct("L3", -75_000.01),  # RV 75,000 each (below)
    _acct("P1", 1_000), _acct("P2", 1_000),  # open calls 5 and 4 business days past their deadline
    _acct("O1", 50_000), _acct("O2", 50_000), _acct("O3", 50_000),
    _acct("B1", 100_000, -10_000), _acct("B2", 0, -6_410.25), _acct("B3", 0, -6_410.26), _acct("B4", -1_000_000),
]
POSITIONS = [
    ("M1", "S.HK", -3_000), ("M2", "S.HK", -1_050), ("M3", "T.HK", -500),
    # long T.HK 2,000 × 50 = 100,000 MV, haircut 0.25 → recognised value 75,000
    ("L1", "T.HK", 2_000), ("L2", "T.HK", 2_000), ("L3", "T.HK", 2_000),
    ("O3", "T.HK", 150),
]


@dataclass
class Env:
    owner: Store  # sets the book up (the app role may not create securities on PostgreSQL)
    maker: Store
    checker: Store
    users: dict[str, auth.User]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Env]:
    if request.param == "sqlite":
        st = Store(f"sqlite:///{tmp_path / 'store.db'}")
        st.migrate()
        st.save_book(_book())
        users = _seed_users(st)
        _setup(st)
        yield Env(st, st, st, users)
        st.dispose()
        return
    url = request.getfixturevalue("pg_url")
    owner = Store(url)
    owner.migrate()
    owner.save_book(_book())
    users = _seed_users(owner, "_" + uuid.uuid4().hex[:6])
    _setup(owner)
    maker, checker = _as(url, users["rita"].login), _as(url, users["sam"].login)
    yield Env(owner, maker, checker, users)
    for s in (maker, checker, owner):
        s.dispose()


def _book() -> Any:
    return book_from_dict({"as_of": "2026-11-25T16:10:00+08:00", "base_currency": "HKD",
                           "fx": {"HKD": 1.0, "USD": 7.8}, "securities": SECURITIES, "accounts": ACCOUNTS,
                           "positions": [{"account": a, "code": c, "qty": q} for a, c, q in POSITIONS]})


def _ids(conn: Any, table: str) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in conn.execute(text(f"select code, id from {table}"))}


def _setup(st: Store) -> None:
    """Lending inventory, two open calls past their deadline, option series and positions."""
    with st.begin() as conn:
        sec, acc = _ids(conn, "securities"), _ids(conn, "accounts")
        conn.execute(text("insert into lending_inventory (security_id, qty) values (:s, 3200), (:t, 1000)"),
                     {"s": sec["S.HK"], "t": sec["T.HK"]})
        for code, deadline in (("P1", date(2026, 11, 18)), ("P2", date(2026, 11, 19))):
            conn.execute(text("insert into margin_calls (account_id, opened_at, trigger_status, trigger_amount, "
                              "deadline, state, current_status, current_amount) values (:a, :t, 'call', 1000, :d, "
                              "'open', 'call', 1000)"), {"a": acc[code], "t": datetime(2026, 11, 13, tzinfo=UTC),
                                                          "d": deadline})
        exp = TODAY + timedelta(days=2)
        c45 = options.create_series(conn, "T.HK", "call", 45.0, exp, 100, 5.5, code="T C45")
        p45 = options.create_series(conn, "T.HK", "put", 45.0, exp, 100, 0.4, code="T P45")
        c50 = options.create_series(conn, "T.HK", "call", 50.0, exp, 100, 1.2, code="T C50")
        n5 = options.create_series(conn, "T.HK", "put", 40.0, TODAY + timedelta(days=5), 100, 0.1, code="T P40 D5")
        n6 = options.create_series(conn, "T.HK", "put", 40.0, TODAY + timedelta(days=6), 100, 0.1, code="T P40 D6")
        old = options.create_series(conn, "T.HK", "put", 40.0, TODAY - timedelta(days=1), 100, 0.1, code="T P40 X")
        for a, s, q in (("O1", c45, 3), ("O2", c45, -2), ("O1", p45, 2), ("O1", c50, 1), ("O3", c45, -2),
                        ("O1", n5, 1), ("O1", n6, 1), ("O1", old, 1)):  # contracts of 100 shares
            conn.execute(text("insert into option_positions (account_id, series_id, contracts) values (:a, :s, :q)"),
                         {"a": acc[a], "s": s, "q": q})


def _balance(st: Store, account: str, currency: str) -> float:
    with st.begin() as conn:
        v = conn.execute(text("select b.amount from cash_balances b join accounts a on a.id = b.account_id "
                              "where a.code = :a and b.currency = :c"), {"a": account, "c": currency}).scalar()
    return 0.0 if v is None else float(v)


def _contracts(st: Store, account: str, code: str) -> float:
    with st.begin() as conn:
        v = conn.execute(text("select p.contracts from option_positions p join accounts a on a.id = p.account_id "
                              "join option_series s on s.id = p.series_id where a.code = :a and s.code = :c"),
                         {"a": account, "c": code}).scalar()
    return 0.0 if v is None else float(v)


def _qty(st: Store, account: str, code: str) -> float:
    with st.begin() as conn:
        v = conn.execute(text("select p.qty from positions p join accounts a on a.id = p.account_id join securities s "
                              "on s.id = p.security_id where a.code = :a and s.code = :c"),
                         {"a": account, "c": code}).scalar()
    return 0.0 if v is None else float(v)


# ---------------------------------------------------------------------- short positions
def test_short_usage_per_security_and_clients(env: Env) -> None:
    state = po.load_state(env.maker)
    rows = {r["code"]: r for r in po.short_overview(state)}
    assert set(rows) == {"S.HK", "T.HK"}
    s = rows["S.HK"]
    # 3,000 + 1,050 short against 3,200 lent: 4,050 / 3,200 = 126.5625 %, 850 uncovered, MV 40,500
    assert (s["short_qty"], s["inventory"], s["uncovered"], s["short_mv"]) == (4_050, 3_200, 850, 40_500)
    assert s["usage_pct"] == pytest.approx(126.5625)
    assert (s["clients"], s["accounts"]) == (2, 2)
    t = rows["T.HK"]  # 500 of 1,000: 50 %
    assert (t["short_qty"], t["usage_pct"], t["uncovered"], t["clients"]) == (500, 50.0, 0, 1)
    clients = po.short_clients(state, "S.HK")
    assert [(c["account"], c["short_qty"]) for c in clients] == [("M1", 3_000), ("M2", 1_050)]
    assert clients[0]["share_pct"] == pytest.approx(3_000 / 4_050 * 100)


def test_recall_creates_an_item_per_short_client(env: Env) -> None:
    rita = env.users["rita"]
    with pytest.raises(po.PositionsOpsError, match="reason"):
        po.recall(env.maker, rita, "S.HK", "liquidation", TODAY + timedelta(days=400), " ")
    rid = po.recall(env.maker, rita, "S.HK", "liquidation", date.today() + timedelta(days=3), "lender recall")
    items = {i["account"]: i for i in po.recall_items(env.maker, "S.HK")}
    # buy back the whole short in lots of 100: 3,000 → 3,000; 1,050 → 1,100
    assert {a: (i["short_qty"], i["buy_qty"], i["status"]) for a, i in items.items()} == {
        "M1": (3_000, 3_000, "pending"), "M2": (1_050, 1_100, "pending")}
    assert all(i["recall_id"] == rid for i in items.values())
    po.set_recall_item(env.maker, rita, int(items["M2"]["id"]), "proposed", "order 17")
    assert {i["account"]: i["status"] for i in po.recall_items(env.maker)} == {"M1": "pending", "M2": "proposed"}
    with pytest.raises(po.PositionsOpsError, match="no client is short"):
        po.recall(env.maker, rita, "U.US", "notice", date.today(), "x")


# ---------------------------------------------------------------------- non-performing credit
def test_non_performing_credit_at_the_boundaries(env: Env) -> None:
    state = po.load_state(env.maker)
    rows = {r["account"]: r for r in po.non_performing(state, TODAY)}
    # loan 74,999.99 and 75,000.00 are covered by RV 75,000; 75,000.01 is not (0.01 uncovered)
    assert "L1" not in rows and "L2" not in rows
    assert rows["L3"]["recognised_value"] == 75_000 and rows["L3"]["uncovered"] == pytest.approx(0.01)
    # deadline Wed 18 Nov → 5 business days by Wed 25 Nov (parameter 5): in; Thu 19 Nov → 4: out
    assert rows["P1"]["days_past_deadline"] == 5 and "past deadline" in rows["P1"]["reason"]
    assert "P2" not in rows
    # B2–B4 borrowed with no collateral at all: wholly uncovered, the largest first
    order = [r["account"] for r in po.non_performing(state, TODAY)]
    assert order == ["B4", "B3", "B2", "L3", "P1"]
    assert rows["B2"]["uncovered"] == pytest.approx(6_410.25 * 7.8)


# ---------------------------------------------------------------------- stock collections
def test_collections_for_uncovered_short_stock_and_short_calls(env: Env) -> None:
    rita = env.users["rita"]
    state = po.load_state(env.maker)
    got = {(r["kind"], r["account"], r["code"]): r for r in po.collections_needed(state, TODAY)}
    # S.HK: 850 uncovered; M1 850·3,000/4,050 = 629.6 → 700 (lots of 100), M2 850·1,050/4,050 = 220.4 → 300
    assert got[("short_stock", "M1", "S.HK")]["qty"] == 700
    assert got[("short_stock", "M2", "S.HK")]["qty"] == 300
    assert got[("short_stock", "M1", "S.HK")]["due_date"] == date(2026, 11, 27)  # T+2 trading days
    # O3 wrote 2 calls (200 shares) and holds 150: 50 to collect by expiry; O2 holds none: 200
    assert got[("covered_option", "O3", "T.HK")]["qty"] == 50
    assert got[("covered_option", "O3", "T.HK")]["due_date"] == TODAY + timedelta(days=2)
    assert got[("covered_option", "O2", "T.HK")]["qty"] == 200
    assert len(got) == 4
    assert po.refresh_collections(env.maker, rita, state, TODAY) == {"opened": 4, "updated": 0, "resolved": 0}
    assert po.refresh_collections(env.maker, rita, None, TODAY) == {"opened": 0, "updated": 0, "resolved": 0}
    rec = next(r for r in po.collections(env.maker, TODAY) if r["account"] == "O3")
    po.set_collection_status(env.maker, rita, int(rec["id"]), "collected", "shares received")
    assert {r["account"]: r["status"] for r in po.collections(env.maker, TODAY)}["O3"] == "collected"


# ---------------------------------------------------------------------- options
def test_near_expiry_boundary(env: Env) -> None:
    state = po.load_state(env.maker)
    pos = options.option_positions(state.book, state.options, TODAY)
    near = {p["option"] for p in options.near_expiry(pos, 5)}
    assert "T P40 D5" in near and "T P40 D6" not in near and "T P40 X" not in near  # 5 in, 6 out, expired out
    assert near == {"T C45", "T P45", "T C50", "T P40 D5"}
    c45 = next(p for p in pos if p["option"] == "T C45" and p["account"] == "O1")
    # 3 contracts of 100, S 50, K 45: intrinsic 5 × 300 = 1,500
    assert (c45["contracts"], c45["moneyness"], c45["intrinsic_value"]) == (3.0, "ITM", 1_500.0)
    over = {r["expiry"]: r for r in options.exercise_overview(pos, [])}
    d2 = over[str(TODAY + timedelta(days=2))]
    # C45: O1 +3, O2 −2, O3 −2; P45: O1 +2; C50: O1 +1 → 5 positions, 6 long, 4 short, 3 ITM (the C45 ones)
    assert (d2["series"], d2["positions"], d2["long_contracts"], d2["short_contracts"], d2["itm_positions"]) == (
        3, 5, 6.0, 4.0, 3)


def test_exercise_itm_per_client_then_per_option_and_otm_lapses(env: Env) -> None:
    rita = env.users["rita"]
    hkd0, t0 = _balance(env.maker, "O1", "HKD"), _qty(env.maker, "O1", "T.HK")
    res = options.exercise(env.maker, rita, "T C45", account="O1")
    [r] = res.records
    # long 300 calls at K 45, S 50: +300 T.HK, cash −45 × 300 = −13,500
    assert (r["action"], r["stock_change"], r["cash_change"], r["intrinsic_value"]) == ("exercised", 300, -13_500,
                                                                                        1_500)
    assert _qty(env.maker, "O1", "T.HK") == t0 + 300 and _balance(env.maker, "O1", "HKD") == hkd0 - 13_500
    assert _contracts(env.maker, "O1", "T C45") == 0 and _contracts(env.maker, "O2", "T C45") == -2  # O2 untouched
    with pytest.raises(options.OptionError, match="no open position"):
        options.exercise(env.maker, rita, "T C45", account="O1")
    res = options.exercise(env.maker, rita, "T C45")  # the rest of the series: the writers are assigned
    got = {r["account"]: (r["action"], r["stock_change"], r["cash_change"]) for r in res.records}
    # short 200: deliver 200 T.HK, receive 45 × 200 = 9,000; O3 delivers 200 of its 150 → −50 (short)
    assert got == {"O2": ("assigned", -200, 9_000), "O3": ("assigned", -200, 9_000)}
    assert _qty(env.maker, "O2", "T.HK") == -200 and _qty(env.maker, "O3", "T.HK") == -50
    assert _balance(env.maker, "O2", "HKD") == 59_000
    # the put K 45 with S 50 is out of the money: it lapses with no stock or cash
    [p] = options.exercise(env.maker, rita, "T P45").records
    assert (p["action"], p["in_the_money"], p["stock_change"], p["cash_change"]) == ("lapsed", False, 0, 0)
    assert _contracts(env.maker, "O1", "T P45") == 0
    # at the money (S = K = 50) is not in the money
    hkd1 = _balance(env.maker, "O1", "HKD")
    [a] = options.exercise(env.maker, rita, "T C50", underlying_price=50.0).records
    assert a["action"] == "lapsed" and _balance(env.maker, "O1", "HKD") == hkd1
    recs = options.exercise_records(env.maker)
    assert len(recs) == 5 and {r["action"] for r in recs} == {"exercised", "assigned", "lapsed"}


def test_exercise_just_in_the_money_with_a_given_price(env: Env) -> None:
    [a] = options.exercise(env.maker, env.users["rita"], "T C50", underlying_price=50.01).records
    # 100 × (50.01 − 50) = 1.00 intrinsic; cash −50 × 100 = −5,000; +100 shares
    assert (a["action"], a["stock_change"], a["cash_change"]) == ("exercised", 100, -5_000)
    assert a["intrinsic_value"] == pytest.approx(1.0)


# ---------------------------------------------------------------------- currency borrowing
def _rules(env: Env) -> None:
    rita, sam = env.users["rita"], env.users["sam"]
    for cur, ct, bt in (("*", None, 50_000.0), ("USD", 10_000.0, None)):
        rid = borrowing.propose_rule(env.maker, rita, cur, ct, bt, True, "desk policy")
        assert changes.approve(env.checker, sam, rid) == "approved"


def test_rule_change_needs_approval(env: Env) -> None:
    rita, sam = env.users["rita"], env.users["sam"]
    rid = borrowing.propose_rule(env.maker, rita, "USD", "10,000", None, True, "desk policy")
    assert borrowing.rules(env.maker) == [] and borrowing.matching_clients(env.maker) == []  # not before approval
    with pytest.raises(auth.AuthError):
        changes.approve(env.maker, rita, rid)
    with pytest.raises(borrowing.BorrowingError, match="still pending"):
        borrowing.propose_rule(env.maker, rita, "USD", 5_000, None, True, "again")
    assert changes.approve(env.checker, sam, rid) == "approved"
    [rule] = borrowing.rules(env.maker)
    assert (rule.currency, rule.currency_threshold, rule.base_threshold, rule.enabled) == ("USD", 10_000, None, True)
    with pytest.raises(borrowing.BorrowingError, match="base currency"):
        borrowing.propose_rule(env.maker, rita, "HKD", 1, None, True, "x")
    with pytest.raises(borrowing.BorrowingError, match="currency threshold"):
        borrowing.propose_rule(env.maker, rita, "USD", "abc", None, True, "x")
    off = borrowing.propose_rule(env.maker, rita, "USD", 10_000, None, False, "pause reminders")
    assert borrowing.rules(env.maker)[0].enabled
    assert changes.approve(env.checker, sam, off) == "approved"
    assert not borrowing.rules(env.maker)[0].enabled


def test_borrowing_rule_matching_at_thresholds(env: Env) -> None:
    _rules(env)
    got = {(r["account"], r["currency"]): r for r in borrowing.matching_clients(env.maker)}
    # B1 owes exactly 10,000 USD: the USD rule (≥ 10,000) matches
    assert got[("B1", "USD")]["rule"].startswith("USD") and got[("B1", "USD")]["debit"] == 10_000
    # B2 owes 6,410.25 USD = 49,999.95 HKD: below both thresholds; B3 6,410.26 = 50,000.03 HKD: the * rule
    assert ("B2", "USD") not in got
    assert got[("B3", "USD")]["rule"].startswith("any currency")
    assert got[("B3", "USD")]["debit_base"] == pytest.approx(50_000.028)
    assert set(got) == {("B1", "USD"), ("B3", "USD")}  # B4's HKD debit is a margin loan, never a reminder
    n = borrowing.send_reminders(env.maker, env.users["rita"], [got[("B1", "USD")]])
    assert n == 1
    [h] = borrowing.reminder_history(env.maker)
    assert (h["account"], h["currency"], h["debit"]) == ("B1", "USD", 10_000) and "10,000.00 USD" in h["message"]
    assert {r["account"]: r["reminders"] for r in borrowing.matching_clients(env.maker)} == {"B1": 1, "B3": 0}


def test_exchange_updates_both_balances_atomically(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    _rules(env)
    rita = env.users["rita"]
    rate = 1 / 7.8
    # 78,000 HKD at 1/7.8 → 10,000.00 USD: HKD 100,000 → 22,000, USD −10,000 → 0
    rec = borrowing.exchange(env.maker, rita, "B1", "HKD", "USD", 78_000, rate, "client called")
    assert rec["to_amount"] == 10_000.0
    assert (_balance(env.maker, "B1", "HKD"), _balance(env.maker, "B1", "USD")) == (22_000, 0)
    assert ("B1", "USD") not in {(r["account"], r["currency"]) for r in borrowing.matching_clients(env.maker)}
    [x] = borrowing.exchange_history(env.maker)
    assert (x["from_amount"], x["to_amount"], x["by"]) == (78_000, 10_000, rita.login)
    # a failure after both balances moved (here: the audit write) leaves neither moved and no record
    hkd, usd = _balance(env.maker, "B3", "HKD"), _balance(env.maker, "B3", "USD")

    def broken(*_a: Any, **_k: Any) -> int:
        raise RuntimeError("audit unavailable")

    monkeypatch.setattr(borrowing.audit, "append", broken)
    with pytest.raises(RuntimeError, match="audit unavailable"):
        borrowing.exchange(env.maker, rita, "B3", "HKD", "USD", 50_000, rate)
    monkeypatch.undo()
    assert (_balance(env.maker, "B3", "HKD"), _balance(env.maker, "B3", "USD")) == (hkd, usd)
    assert len(borrowing.exchange_history(env.maker)) == 1
    with pytest.raises(auth.AuthError, match="may not exchange"):  # a trader only views
        borrowing.exchange(env.maker, env.users["tom"], "B3", "HKD", "USD", 10, rate)
    for args, field in ((("B3", "HKD", "USD", "abc", rate), "amount"), (("B3", "HKD", "USD", 10, 0), "rate"),
                        (("B3", "HKD", "HKD", 10, 1), "to currency"), (("NOPE", "HKD", "USD", 10, rate), "account"),
                        (("B3", "HKD", "EUR", 10, rate), "to currency")):
        with pytest.raises(borrowing.BorrowingError, match=field):
            borrowing.exchange(env.maker, rita, *args)
    assert len(borrowing.exchange_history(env.maker)) == 1


def test_recognised_value_counts_suspended_stock_as_nothing(env: Env) -> None:
    with env.owner.begin() as conn:
        conn.execute(text("update securities set suspended = true where code = 'S.HK'"))
        acc, sec = _ids(conn, "accounts"), _ids(conn, "securities")
        conn.execute(text("insert into positions (account_id, security_id, qty) values (:a, :s, 1000)"),
                     {"a": acc["L1"], "s": sec["S.HK"]})
    state = po.load_state(env.maker)
    rv = po.recognised_value(state)
    # L1: T.HK 75,000 as before; suspended S.HK counts 0 (and L1's long call is not stock: 0 too)
    assert rv[state.book.acct_index["L1"]] == 75_000
    assert np.isclose(rv[state.book.acct_index["O3"]], 150 * 50 * 0.75)


def test_options_leave_the_stock_book_alone(env: Env) -> None:
    book = env.maker.load_book()
    assert book.sec_codes == ["S.HK", "T.HK", "U.US"] and book.n_pos == len(POSITIONS)
    with env.owner.begin() as conn:  # a book import replaces the book: the series go with their underlyings
        conn.execute(text("delete from positions"))
        conn.execute(text("delete from prices"))
        conn.execute(text("delete from haircuts"))
        conn.execute(text("delete from stock_margin_ratios"))
        conn.execute(text("delete from lending_inventory"))
        conn.execute(text("delete from securities"))
        assert conn.execute(text("select count(*) from option_series")).scalar() == 0
        assert conn.execute(text("select count(*) from option_positions")).scalar() == 0
