"""RISK_METHODS §1 on hand-computed books: every status, shorts, FX, overrides, expiry, no positions.

Every expected number below was worked out by hand from the formulas; the comments show the sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from services.bookfile import book_from_dict
from services.margin import MarginEngine

SECURITIES = [
    {"code": "A.HK", "currency": "HKD", "price": 100.0, "market": "HK", "im_ratio": 0.5, "mm_ratio": 0.4,
     "short_im_ratio": 1.5, "short_mm_ratio": 1.3, "level": 1, "haircut": 0.15, "lot_size": 100},
    {"code": "U.US", "currency": "USD", "price": 10.0, "market": "US", "im_ratio": 0.3, "mm_ratio": 0.2,
     "level": 1, "haircut": 0.15},
    {"code": "N.HK", "currency": "HKD", "price": 50.0, "market": "HK", "level": 3, "haircut": 1.0},
    {"code": "I.HK", "currency": "HKD", "price": 20.0, "market": "HK", "im_ratio": 0.4, "mm_ratio": 0.3,
     "intraday_im_ratio": 0.2, "intraday_mm_ratio": 0.1, "level": 1, "haircut": 0.15},
]


def _acct(code: str, hkd: float = 0.0, usd: float = 0.0, type_: str = "margin", limit: float = 100_000.0
          ) -> dict[str, Any]:
    return {"account": code, "client": "C" + code, "client_name": code, "type": type_,
            "cash": {"HKD": hkd, "USD": usd}, "financing_limit": limit}


def make_book(accounts: list[dict[str, Any]], positions: Sequence[tuple[str, str, float]], **extra: Any) -> Any:
    doc = {"as_of": "2026-11-20T16:10:00+08:00", "base_currency": "HKD", "fx": {"HKD": 1.0, "USD": 7.8},
           "securities": SECURITIES, "accounts": accounts,
           "positions": [{"account": a, "code": c, "qty": q} for a, c, q in positions]}
    doc.update(extra)
    return book_from_dict(doc)


def result(engine: MarginEngine, code: str) -> dict[str, Any]:
    return engine.account_result(engine.book.acct_index[code])


@pytest.mark.parametrize("cash,status,call", [
    # 1000 A.HK @100: MV 100,000; IM 50,000; MM 40,000; FC 32,000
    (-20_000, "safe", 0.0),       # E 80,000 ≥ IM
    (-55_000, "warning", 0.0),    # E 45,000 in [MM, IM)
    (-65_000, "call", 15_000.0),  # E 35,000 in [FC, MM) → IM − E
    (-70_000, "force", 20_000.0),  # E 30,000 < FC
    (-50_000, "safe", 0.0),       # E = IM exactly → safe
    (-60_000, "warning", 0.0),    # E = MM exactly → warning
    (-68_000, "call", 18_000.0),  # E = FC exactly → call
])
def test_status_ladder_and_call_amount(cash: float, status: str, call: float) -> None:
    e = MarginEngine(make_book([_acct("M1", cash)], [("M1", "A.HK", 1000)]))
    r = result(e, "M1")
    assert r["status"] == status
    assert r["call_amount"] == call
    assert r["equity"] == 100_000 + cash
    assert (r["im"], r["mm"], r["fc"]) == (50_000.0, 40_000.0, 32_000.0)
    assert r["loan"] == -cash
    assert r["excess"] == 100_000 + cash - 50_000


def test_buying_power_is_excess_capped_by_cash_plus_credit_line() -> None:
    e = MarginEngine(make_book([_acct("M1", -20_000, limit=100_000), _acct("M2", -20_000, limit=40_000)],
                               [("M1", "A.HK", 1000), ("M2", "A.HK", 1000)]))
    assert result(e, "M1")["buying_power"] == 30_000.0  # min(excess 30,000, −20,000 + 100,000)
    assert result(e, "M2")["buying_power"] == 20_000.0  # min(30,000, −20,000 + 40,000)


def test_fx_converts_positions_and_cash_to_base() -> None:
    # 1000 U.US @ 10 USD × 7.8 = 78,000 HKD; cash −1,000 USD = −7,800 HKD
    e = MarginEngine(make_book([_acct("M1", usd=-1000)], [("M1", "U.US", 1000)]))
    r = result(e, "M1")
    assert r["mv_long"] == 78_000.0
    assert r["cash"] == -7_800.0
    assert r["equity"] == 70_200.0
    assert r["im"] == pytest.approx(23_400.0)  # 0.3 × 78,000
    assert r["mm"] == pytest.approx(15_600.0)
    assert r["status"] == "safe"


def test_short_position_uses_short_sell_table() -> None:
    # −1000 A.HK: MV_short 100,000; cash 200,000 → E 100,000; IM 1.5×100,000; MM 130,000; FC 104,000
    e = MarginEngine(make_book([_acct("M1", 200_000)], [("M1", "A.HK", -1000)]))
    r = result(e, "M1")
    assert (r["mv_long"], r["mv_short"], r["equity"]) == (0.0, 100_000.0, 100_000.0)
    assert (r["im"], r["mm"]) == (150_000.0, 130_000.0)
    assert r["status"] == "force"
    assert r["call_amount"] == 50_000.0


def test_not_marginable_security_uses_ratio_one() -> None:
    # 1000 N.HK @ 50: MV 50,000, IM = MM = 50,000, FC 40,000; cash −1,000 → E 49,000 → call 1,000
    e = MarginEngine(make_book([_acct("M1", -1000)], [("M1", "N.HK", 1000)]))
    r = result(e, "M1")
    assert (r["im"], r["mm"], r["status"], r["call_amount"]) == (50_000.0, 50_000.0, "call", 1_000.0)


def test_no_positions() -> None:
    e = MarginEngine(make_book([_acct("M1", -500), _acct("M2", 0), _acct("M3", 1000)], []))
    assert (result(e, "M1")["status"], result(e, "M1")["call_amount"]) == ("force", 500.0)
    assert (result(e, "M2")["status"], result(e, "M2")["call_amount"]) == ("safe", 0.0)
    assert result(e, "M3")["status"] == "safe"


def test_cash_account_longs_borrow_against_nothing() -> None:
    # cash account: IM = MM = MV = 100,000 whatever the table says; a 1,000 debit → E 99,000 → call
    e = MarginEngine(make_book([_acct("C1", -1000, type_="cash", limit=0)], [("C1", "A.HK", 1000)]))
    r = result(e, "C1")
    assert (r["im"], r["mm"], r["status"], r["call_amount"]) == (100_000.0, 100_000.0, "call", 1_000.0)


def test_client_ratio_beats_group_ratio_beats_stock_ratio() -> None:
    accounts = [_acct("M1", -10_000), _acct("M2", -10_000), _acct("M3", -10_000)]
    positions = [("M1", "A.HK", 1000), ("M2", "A.HK", 1000), ("M3", "A.HK", 1000)]
    e = MarginEngine(make_book(
        accounts, positions,
        client_groups={"VIP": ["M1", "M2"]}, stock_groups={"Core": ["A.HK"]},
        client_ratios=[
            {"account": "M1", "code": "A.HK", "im_ratio": 0.8, "mm_ratio": 0.6},
            {"group": "VIP", "stock_group": "Core", "im_ratio": 0.6, "mm_ratio": 0.45},
        ]))
    assert (result(e, "M1")["im"], result(e, "M1")["mm"]) == (80_000.0, 60_000.0)  # account row wins
    assert (result(e, "M2")["im"], result(e, "M2")["mm"]) == (60_000.0, 45_000.0)  # group row
    assert (result(e, "M3")["im"], result(e, "M3")["mm"]) == (50_000.0, 40_000.0)  # stock table
    p = e.positions_of(e.book.acct_index["M1"])
    assert p["source"].tolist() == [0]


def test_expired_client_ratio_counts_as_absent() -> None:
    e = MarginEngine(make_book([_acct("M1", -10_000)], [("M1", "A.HK", 1000)], client_ratios=[
        {"account": "M1", "code": "A.HK", "im_ratio": 0.8, "mm_ratio": 0.6, "expires": "2026-11-19"}]))
    assert result(e, "M1")["im"] == 50_000.0


def test_client_ratio_applies_to_its_side_only() -> None:
    e = MarginEngine(make_book([_acct("M1", 200_000)], [("M1", "A.HK", -1000)], client_ratios=[
        {"account": "M1", "code": "A.HK", "im_ratio": 0.8, "mm_ratio": 0.6}]))
    assert result(e, "M1")["im"] == 150_000.0  # the long-side override does not touch the short
    e = MarginEngine(make_book([_acct("M1", 200_000)], [("M1", "A.HK", -1000)], client_ratios=[
        {"account": "M1", "code": "A.HK", "side": "short", "im_ratio": 2.0, "mm_ratio": 1.8}]))
    assert result(e, "M1")["im"] == 200_000.0


def test_intraday_table_only_in_intraday_session_for_intraday_accounts() -> None:
    book = make_book([_acct("I1", -10_000, type_="intraday"), _acct("M1", -10_000)],
                     [("I1", "I.HK", 1000), ("M1", "I.HK", 1000)])
    # 1000 I.HK @ 20 = 20,000
    assert MarginEngine(book.copy()).im.tolist() == [8_000.0, 8_000.0]
    assert MarginEngine(book.copy(), intraday_session=True).im.tolist() == [4_000.0, 8_000.0]


def test_incremental_updates_match_full_recompute() -> None:
    from services.demo import make_demo_book

    rng = np.random.default_rng(3)
    e = MarginEngine(make_demo_book(400, seed=11))
    b = e.book
    for step in range(30):
        secs = rng.choice(b.n_sec, 50, replace=False)
        e.apply_prices(secs, b.price[secs] * rng.uniform(0.9, 1.1, 50))
        if step % 5 == 0:
            a = rng.integers(0, b.n_acct, 3)
            s = rng.integers(0, b.n_sec, 3)
            e.apply_positions(a, s, rng.integers(-500, 5000, 3).astype(float))
            e.apply_cash(a, np.zeros(3, int), rng.normal(0, 1e5, 3))
        if step % 10 == 0:
            e.apply_fx(np.array([b.currencies.index("USD")]), np.array([7.8 * rng.uniform(0.95, 1.05)]))
    incremental = {k: getattr(e, k).copy() for k in ("equity", "im", "mm", "status", "call_amount")}
    e.recompute_all()
    for k, v in incremental.items():
        np.testing.assert_allclose(v, getattr(e, k), rtol=1e-9, atol=1e-6, err_msg=k)


def test_diff_reports_status_moves() -> None:
    e = MarginEngine(make_book([_acct("M1", -20_000), _acct("M2", 0)], [("M1", "A.HK", 1000)]))
    d = e.apply_prices(np.array([0]), np.array([80.0]))  # MV 80,000: E 60,000, IM 40,000 → still safe
    assert d.accounts.tolist() == [0] and d.status_changed.size == 0
    d = e.apply_prices(np.array([0]), np.array([30.0]))  # MV 30,000: E 10,000, FC 9,600 → call
    assert d.status_changed.tolist() == [0] and d.old_status.tolist() == [0]
    assert result(e, "M1")["status"] == "call"
