"""Pre-trade checks (RISK_METHODS §5): every built-in check and action level, rule precedence,
daily totals and their reset, the duplicate window's edges, what-if margin — numbers by hand.

Book: A.HK @ 100 HKD, lot 100 (normal size 50 lots = 5,000 shares), IM 0.5 / MM 0.4, short IM 1.5.
M1: margin, cash −20,000, limit 100,000, long 1,000 A.HK → E 80,000, IM 50,000, BP 30,000.
RICH: margin, cash 10,000,000 → BP 10,000,000. C1: cash account, cash 50,000 → BP 50,000.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.margin import MarginEngine
from services.pretrade import Flags, PreTradeEngine
from services.pretrade_limits import LimitBook, LimitCode, LimitRule
from services.pretrade_orders import Order, OrderError, parse_order
from tests.test_margin_formulas import _acct, make_book

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC).timestamp()  # Monday 10:00 in Hong Kong


def engine(codes: list[LimitCode] | None = None, rules: list[LimitRule] | None = None, **params: float
           ) -> PreTradeEngine:
    book = make_book([_acct("M1", -20_000, limit=100_000), _acct("RICH", 10_000_000, limit=0),
                      _acct("C1", 50_000, type_="cash", limit=0)], [("M1", "A.HK", 1000)])
    m = MarginEngine(book)
    p = {"approval_notional": 1_000_000.0}
    p.update(params)
    return PreTradeEngine(m, Flags.empty(book.n_acct, book.n_sec), LimitBook(codes or [], rules or []), p, T0)


def order(account: str = "M1", qty: float = 100, price: float | None = 100.0, side: str = "buy",
          code: str = "A.HK", trader: str = "tom", order_type: str = "limit") -> Order:
    return Order(account, trader, code, side, qty, price, order_type, "o1")


def rules_of(d: object) -> list[tuple[str, str]]:
    return [(r.rule, r.action) for r in d.reasons]  # type: ignore[attr-defined]


def test_accept_and_buying_power_with_trading_limit() -> None:
    e = engine()
    d = e.check(order(qty=100), T0)  # 10,000 ≤ BP 30,000
    assert (d.decision, d.reasons, d.notional) == ("accept", [], 10_000.0)
    d = e.check(order(qty=400), T0)  # 40,000 > 30,000
    assert d.decision == "reject"
    r = d.reasons[0]
    assert (r.rule, r.threshold, r.observed) == ("buying_power", 30_000.0, 40_000.0)
    # a daily-buy trading limit of 20,000 extends what may be bought: 40,000 ≤ 30,000 + 20,000
    e.flags.trading_limits[("M1", "daily_buy")] = 20_000.0
    assert e.check(order(qty=400), T0).decision == "accept"
    # ... and is used up by today's buys: after a 15,000 fill only 5,000 of it is left
    e.fill(order(account="M1", qty=150), T0)
    d = e.check(order(qty=400), T0)
    assert d.decision == "reject" and d.reasons[0].rule == "buying_power"


def test_size_versus_normal_size_prompt_and_reject() -> None:
    e = engine()
    assert e.check(order("RICH", qty=15_000, price=10), T0).decision == "accept"  # exactly 3×: not above
    d = e.check(order("RICH", qty=15_100, price=10), T0)  # 3.02×
    assert rules_of(d) == [("size_vs_normal", "prompt")] and d.decision == "prompt"
    assert d.reasons[0].observed == pytest.approx(3.02)
    assert e.check(order("RICH", qty=50_000, price=10), T0).decision == "prompt"  # exactly 10×
    d = e.check(order("RICH", qty=50_100, price=10), T0)
    assert rules_of(d) == [("size_vs_normal", "reject")]
    e.flags.normal_qty[e.margin.book.sec_index["A.HK"]] = 100_000  # a configured normal size wins
    assert e.check(order("RICH", qty=50_100, price=10), T0).decision == "accept"


def test_notional_above_one_million_needs_approval_and_most_severe_wins() -> None:
    e = engine()
    d = e.check(order("RICH", qty=10_000, price=100), T0)  # 1,000,000: not above
    assert d.decision == "accept"
    d = e.check(order("RICH", qty=10_100, price=100), T0)  # 1,010,000 → approval; 2.02× normal: fine
    assert rules_of(d) == [("notional_approval", "approval")]
    d = e.check(order("RICH", qty=20_000, price=100), T0)  # approval + prompt (4×) → approval
    assert d.decision == "approval" and {r for r, _ in rules_of(d)} == {"notional_approval", "size_vs_normal"}
    d = e.check(order("M1", qty=20_000, price=100), T0)  # + buying power → reject, all reasons kept
    assert d.decision == "reject" and len(d.reasons) == 3


def test_duplicate_window_edges() -> None:
    e = engine()
    first = e.check(order(qty=10), T0)
    e.record(first)
    assert rules_of(e.check(order(qty=10), T0 + 59.9)) == [("duplicate", "reject")]
    assert e.check(order(qty=10), T0 + 60.0).decision == "accept"  # 60 s later: no longer a duplicate
    assert e.check(order(qty=11), T0 + 1).decision == "accept"  # another quantity is another order
    assert e.check(order(qty=10, side="sell"), T0 + 1).decision == "accept"
    rejected = e.check(order(qty=400), T0)  # rejected orders are not remembered
    e.record(rejected)
    assert [r.rule for r in e.check(order(qty=400), T0 + 1).reasons] == ["buying_power"]


def test_eligibility_flags_open_call_blacklist_and_short_selling() -> None:
    e = engine()
    b = e.margin.book
    m1, a = b.acct_index["M1"], b.sec_index["A.HK"]
    e.flags.restricted[m1] = True
    assert ("account_restricted", "reject") in rules_of(e.check(order(qty=10), T0))
    e.flags.restricted[m1] = False
    b.frozen[m1] = True
    assert ("account_frozen", "reject") in rules_of(e.check(order(qty=10), T0))
    b.frozen[m1] = False
    e.flags.halted[a] = True
    assert ("security_halted", "reject") in rules_of(e.check(order(qty=10), T0))
    e.flags.halted[a] = False
    b.suspended[a] = True
    assert ("security_suspended", "reject") in rules_of(e.check(order(qty=10), T0))
    b.suspended[a] = False
    # an open call: no margin buying (M1's cash is negative, so any buy is on margin); sells still go
    e.flags.open_calls.add("M1")
    assert rules_of(e.check(order(qty=10), T0)) == [("open_margin_call", "reject")]
    assert e.check(order(qty=10, side="sell"), T0).decision == "accept"
    e.flags.open_calls.clear()
    # blacklisted for credit: RICH pays from its own cash, fine; M1 borrows, refused
    e.flags.blacklisted_credit.update({"M1", "RICH"})
    assert e.check(order("RICH", qty=10), T0).decision == "accept"
    assert rules_of(e.check(order(qty=10), T0)) == [("blacklisted_credit", "reject")]
    e.flags.blacklisted_credit.clear()
    # selling what is held is not short; beyond it is, and needs the short-sell status and margin
    assert e.check(order(qty=1000, side="sell"), T0).decision == "accept"
    e.flags.short_prohibited["A.HK"] = "auto-prohibited"
    assert e.check(order(qty=1000, side="sell"), T0).decision == "accept"
    assert rules_of(e.check(order(qty=1010, side="sell"), T0)) == [("short_sell_prohibited", "reject")]
    e.flags.short_prohibited.clear()
    # RICH sells 100 short: margin 100 × 100 × 1.5 = 15,000 ≤ BP; M1 sells 300 beyond: 45,000 > 30,000
    assert e.check(order("RICH", qty=100, side="sell"), T0).decision == "accept"
    d = e.check(order(qty=1300, side="sell"), T0)
    assert [(r.rule, r.threshold, r.observed) for r in d.reasons] == [("buying_power", 30_000.0, 45_000.0)]
    assert rules_of(e.check(order("C1", qty=10, side="sell"), T0)) == [("short_sell_not_allowed", "reject")]
    d = e.check(order("ZZZ", code="NOPE.HK"), T0)
    assert [r.rule for r in d.reasons] == ["unknown_account", "unknown_security"] and d.decision == "reject"


CODES = [
    LimitCode("CL_ORD_QTY", "Client order quantity", "order_qty", "client", 1_000, "prompt", True),
    LimitCode("CL_DAY_NOTIONAL", "Client daily notional", "daily_notional", "client", 50_000, "reject", True),
    LimitCode("SEC_PRICE_DEV", "Price deviation", "price_deviation", "security", 0.10, "reject", True),
    LimitCode("CL_DAY_COUNT", "Client orders per day", "order_count", "client", 2, "approval", True),
    LimitCode("CO_DAY_NOTIONAL", "Company daily notional", "daily_notional", "company", 1e12, "reject", False),
]


def test_specific_rules_take_priority_over_the_global_rule() -> None:
    rules = [LimitRule(1, "VIP quantity", "CL_ORD_QTY", "RICH", None, None, None, 5_000, None),
             LimitRule(2, "RICH on A.HK", "CL_ORD_QTY", "RICH", "A.HK", None, None, 2_000, "reject")]
    e = engine([c for c in CODES if c.code == "CL_ORD_QTY"], rules)
    # M1: no specific rule → global threshold 1,000 (prompt)
    d = e.check(order("M1", qty=1_200, price=10), T0)
    assert [(r.rule, r.threshold, r.action) for r in d.reasons] == [("CL_ORD_QTY", 1_000, "prompt")]
    # RICH: both specific rules match and both apply; the global one does not
    d = e.check(order("RICH", qty=1_200, price=10), T0)
    assert d.reasons == []
    d = e.check(order("RICH", qty=2_500, price=10), T0)
    assert [(r.rule, r.action) for r in d.reasons] == [("CL_ORD_QTY · RICH on A.HK", "reject")]
    d = e.check(order("RICH", qty=6_000, price=10), T0)  # above both (and 1.2× normal: fine)
    assert sorted(r.rule for r in d.reasons) == ["CL_ORD_QTY · RICH on A.HK", "CL_ORD_QTY · VIP quantity"]
    # a disabled code switches its specific rules off too
    codes = [LimitCode(c.code, c.name, c.metric, c.dimension, c.threshold, c.action,
                       c.enabled and c.code != "CL_ORD_QTY") for c in CODES]
    e.set_limits(LimitBook([c for c in codes if c.code in ("CL_ORD_QTY", "SEC_PRICE_DEV")], rules))
    assert e.check(order("RICH", qty=6_000, price=10), T0).reasons[0].rule == "SEC_PRICE_DEV"  # 90% away
    assert e.check(order("RICH", qty=6_000, price=100), T0).reasons == []
    # price deviation: 111 vs last 100 is 11% > 10%; market orders are not checked
    d = e.check(order("RICH", qty=10, price=111), T0)
    assert [(r.rule, round(r.observed or 0.0, 4)) for r in d.reasons] == [("SEC_PRICE_DEV", 0.11)]
    assert e.check(order("RICH", qty=10, price=None, order_type="market"), T0).decision == "accept"


def test_daily_totals_count_fills_and_orders_and_reset_next_day() -> None:
    e = engine(CODES)
    # 30,000 filled today, then an order of 25,000: 55,000 > 50,000 → reject
    e.fill(order("RICH", qty=300, price=100), T0)
    d = e.check(order("RICH", qty=250, price=100), T0 + 10)
    assert [(r.rule, r.observed) for r in d.reasons] == [("CL_DAY_NOTIONAL", 55_000.0)]
    # order count: two accepted orders today, the third is above 2 → approval
    for i in range(2):
        e.record(e.check(order("RICH", qty=10 + i, price=100), T0 + 20))
    d = e.check(order("RICH", qty=20, price=100), T0 + 30)
    assert [(r.rule, r.observed, r.action) for r in d.reasons] == [("CL_DAY_COUNT", 3.0, "approval")]
    # the next trading day starts from zero
    nxt = T0 + 86_400
    assert e.check(order("RICH", qty=250, price=100), nxt).decision == "accept"
    assert e.totals.notional == {}


def test_an_order_count_limit_brought_in_mid_day_counts_the_day_from_its_start() -> None:
    """Orders are counted only under the masks an order-count limit uses; a trader-wide count rule
    approved at noon sees the trader's orders since the morning, and a rejected order never counts."""
    e = engine([c for c in CODES if c.code == "CL_DAY_COUNT"])  # client-wide: 2 a day
    for i in range(3):
        e.record(e.check(order("RICH", qty=10 + i, price=100, trader="tom"), T0 + i))
    e.record(e.check(order("M1", qty=10, price=100, trader="tom"), T0 + 5))
    e.record(e.check(order("M1", qty=1e6, price=100, trader="tom"), T0 + 6))  # rejected: not counted
    assert e.totals.count == {("RICH", None, None, None): 3, ("M1", None, None, None): 1}
    rule = LimitRule(9, "tom's orders", "CL_DAY_COUNT", None, None, "tom", None, 4, "reject")
    e.set_limits(LimitBook([c for c in CODES if c.code == "CL_DAY_COUNT"], [rule]))
    d = e.check(order("C1", qty=1, price=100, trader="tom"), T0 + 10)  # tom's 5th order today
    assert [(r.rule, r.observed, r.action) for r in d.reasons] == [("CL_DAY_COUNT · tom's orders", 5.0, "reject")]
    d = e.check(order("C1", qty=1, price=100, trader="ann"), T0 + 11)
    assert d.reasons == []


def test_fill_moves_position_cash_and_margin() -> None:
    e = engine()
    out = e.fill(order("M1", qty=200, price=100), T0)  # cash −40,000; 1,200 A.HK: MV 120,000
    assert (out["position"], out["cash"], out["equity"], out["im"]) == (1200.0, -40_000.0, 80_000.0, 60_000.0)
    assert out["buying_power"] == 20_000.0  # min(80,000 − 60,000, −40,000 + 100,000)
    e.fill(order("M1", qty=1200, price=100, side="sell"), T0)
    r = e.margin.account_result(e.margin.book.acct_index["M1"])
    assert (r["cash"], r["im"], r["equity"]) == (80_000.0, 0.0, 80_000.0)
    with pytest.raises(OrderError, match="unknown"):
        e.fill(order("NOPE"), T0)


def test_what_if_shows_margin_after_the_trade_without_changing_anything() -> None:
    e = engine()
    w = e.what_if(order("M1", qty=400, price=100))  # cash −60,000; MV 140,000; IM 70,000; MM 56,000
    assert w["before"]["im"] == 50_000.0 and w["before"]["status"] == "safe"
    a = w["after"]
    assert (a["equity"], a["im"], a["mm"], a["cash"], a["position"]) == (80_000.0, 70_000.0, 56_000.0, -60_000.0,
                                                                       1400.0)
    assert a["status"] == "safe" and a["buying_power"] == 10_000.0
    w = e.what_if(order("M1", qty=1000, price=100))  # cash −120,000; MV 200,000: E 80,000 < IM 100,000
    assert (w["after"]["status"], w["after"]["call_amount"]) == ("warning", 0.0)
    w = e.what_if(order("M1", qty=2000, price=100))  # cash −220,000; MV 300,000; E 80,000 < MM 120,000
    assert (w["after"]["status"], w["after"]["call_amount"]) == ("force", 70_000.0)  # FC 96,000
    assert e.margin.account_result(e.margin.book.acct_index["M1"])["im"] == 50_000.0  # unchanged
    assert np.isclose(e.margin.book.pos_qty.sum(), 1000)


@pytest.mark.parametrize("payload,message", [
    ("nope", "order must be a JSON object"),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": 1}, "order.price is missing"),
    ({"account": "M1", "code": "A.HK", "side": "hold", "qty": 1, "price": 1}, "order.side must be"),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": -5, "price": 1}, "order.qty must be a positive"),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": "5", "price": 1}, "order.qty must be a number"),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": True, "price": 1}, "order.qty must be a number"),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": 1, "price": float("nan")}, "positive number"),
    ({"code": "A.HK", "side": "buy", "qty": 1, "price": 1}, "order.account is missing"),
    ({"account": 7, "code": "A.HK", "side": "buy", "qty": 1, "price": 1}, "order.account must be text"),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": 1, "price": 1, "order_type": "stop"},
     "order.order_type must be"),
])
def test_malformed_orders_are_named(payload: object, message: str) -> None:
    with pytest.raises(OrderError, match=message.replace(".", r"\.")):
        parse_order(payload)


def test_market_order_without_price_uses_last_price() -> None:
    o = parse_order({"account": "M1", "code": "A.HK", "side": "buy", "qty": 100, "order_type": "market"})
    d = engine().check(o, T0)
    assert (d.price, d.notional, d.decision) == (100.0, 10_000.0, "accept")


@pytest.mark.parametrize("payload,expected", [
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": 100, "price": 12.5},
     Order("M1", "", "A.HK", "buy", 100.0, 12.5, "limit", "")),
    ({"account": " M1 ", "code": "A.HK\t", "side": "SELL", "qty": 1e3, "price": 3, "trader": " T1",
      "order_type": "Limit", "client_order_id": "c-1 "},
     Order("M1", "T1", "A.HK", "sell", 1000.0, 3.0, "limit", "c-1")),
    ({"account": "\u00a0M1", "code": "A.HK", "side": "buy", "qty": 1, "price": 1},
     Order("M1", "", "A.HK", "buy", 1.0, 1.0, "limit", "")),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": 1, "price": 1, "trader": None, "client_order_id": None},
     Order("M1", "", "A.HK", "buy", 1.0, 1.0, "limit", "")),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": 5, "price": None, "order_type": "market"},
     Order("M1", "", "A.HK", "buy", 5.0, None, "market", "")),
])
def test_orders_are_read_the_same_whatever_their_spelling(payload: dict[str, object], expected: Order) -> None:
    """The service's quick path for a tidy limit order and the full reading agree: whitespace is trimmed,
    side and order type are case-blind, missing optional fields are empty."""
    assert parse_order(payload) == expected


@pytest.mark.parametrize("payload,message", [
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": 1e13, "price": 1}, "order.qty 10000000000000.0 is out of range"),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": 1, "price": float("inf")}, "positive number"),
    ({"account": "M" * 33, "code": "A.HK", "side": "buy", "qty": 1, "price": 1}, "longer than 32"),
    ({"account": "", "code": "A.HK", "side": "buy", "qty": 1, "price": 1}, "order.account is missing"),
    ({"account": "M1", "code": "A.HK", "side": "buy", "qty": 1, "price": 1, "trader": 5}, "order.trader must be text"),
])
def test_edge_values_are_refused_by_name(payload: object, message: str) -> None:
    with pytest.raises(OrderError, match=message.replace(".", r"\.").replace("+", r"\+")):
        parse_order(payload)
