"""Stress scenarios (RISK_METHODS §3) and the SFC LCS test (§4) on hand-computed books.

Every expected number is worked out by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services import lcs, stress
from services.bookfile import book_from_dict
from services.margin import MarginEngine
from tests.test_margin_formulas import _acct, make_book


# ---------------------------------------------------------------------- stress (§3)
def _stress_engine() -> MarginEngine:
    # A.HK 100 (IM .5 MM .4), U.US 10 USD × 7.8 (IM .3 MM .2), N.HK 50 (not marginable), I.HK 20
    return MarginEngine(make_book([_acct("M1", -60_000), _acct("M2", 0), _acct("M3", -45_000)],
                                  [("M1", "A.HK", 1000), ("M2", "U.US", 1000), ("M3", "N.HK", 1000)],
                                  stock_groups={"G": ["I.HK"]}))


PRECEDENCE = {"name": "precedence", "shocks": [
    {"target": "all", "change": -0.1}, {"target": "market:HK", "change": -0.2},
    {"target": "level:1", "change": -0.3}, {"target": "group:G", "change": -0.4},
    {"target": "security:A.HK", "change": -0.5}], "fx_shocks": [{"currency": "USD", "change": -0.1}]}


def test_most_specific_shock_wins_without_compounding() -> None:
    e = _stress_engine()
    sc = stress.scenario_from_dict(PRECEDENCE, e.book)
    ch = dict(zip(e.book.sec_codes, stress.security_changes(e.book, sc).tolist(), strict=True))
    # security > group > level > market > all
    assert ch == {"A.HK": -0.5, "U.US": -0.3, "N.HK": -0.2, "I.HK": -0.4}


def test_stressed_accounts_and_summary() -> None:
    e = _stress_engine()
    res = stress.run(e, stress.scenario_from_dict(PRECEDENCE, e.book))
    out = {a["account"]: a for a in res.accounts_json()}
    # M1: 1,000 A.HK @ 50 → MV 50,000; E −10,000; IM 25,000; MM 20,000 → force, call 35,000, shortfall 10,000
    assert out["M1"] == {"account": "M1", "status": "force", "equity": -10_000.0, "im": 25_000.0, "mm": 20_000.0,
                         "call_amount": 35_000.0, "shortfall": 10_000.0}
    # M2: 1,000 U.US @ 7 USD × 7.02 (USD −10%) = 49,140; IM 0.3 × 49,140 = 14,742 → safe
    assert (out["M2"]["equity"], out["M2"]["im"], out["M2"]["status"]) == (49_140.0, 14_742.0, "safe")
    # M3: 1,000 N.HK @ 40 → MV 40,000; E −5,000; IM = MM = 40,000 → force, call 45,000, shortfall 5,000
    assert (out["M3"]["status"], out["M3"]["call_amount"], out["M3"]["shortfall"]) == ("force", 45_000.0, 5_000.0)
    s = res.summary()
    assert s["accounts_by_status"] == {"safe": 1, "warning": 0, "call": 0, "force": 2}
    assert (s["total_call_amount"], s["total_shortfall"]) == (80_000.0, 15_000.0)
    assert s["top_shortfalls"] == [{"account": "M1", "shortfall": 10_000.0}, {"account": "M3", "shortfall": 5_000.0}]
    assert e.account_result(0)["equity"] == 40_000.0  # the live engine is untouched


def test_exemptions() -> None:
    e = _stress_engine()
    doc = dict(PRECEDENCE, exempt_securities=["A.HK"], exempt_accounts=["M3"])
    res = stress.run(e, stress.scenario_from_dict(doc, e.book))
    s = res.summary()
    # A.HK not shocked: M1 as now (E 40,000 vs IM 50,000, MM 40,000 → warning); M3 left out
    assert s["accounts_by_status"] == {"safe": 1, "warning": 1, "call": 0, "force": 0}
    assert (s["total_call_amount"], s["total_shortfall"]) == (0.0, 0.0)
    assert [a["account"] for a in res.accounts_json()] == ["M1", "M2"]


@pytest.mark.parametrize("doc,message", [
    ({"shocks": [{"target": "sector:tech", "change": -0.1}]}, r"shocks\[0\]\.target: unknown target"),
    ({"shocks": [{"target": "security:NOPE.HK", "change": -0.1}]}, r"shocks\[0\]\.target: unknown security"),
    ({"shocks": [{"target": "all", "change": -1.5}]}, r"shocks\[0\]\.change: change -1.5 is below −100%"),
    ({"shocks": [{"target": "all", "change": "-10%"}]}, r"shocks\[0\]\.change: change must be a number"),
    ({"shocks": [{"target": "level:4", "change": -0.1}]}, r"level must be 1, 2 or 3"),
    ({"fx_shocks": [{"currency": "XYZ", "change": 0.1}]}, r"fx_shocks\[0\]\.currency: unknown currency"),
    ({"exempt_accounts": ["ZZ"]}, r"exempt_accounts\[0\]: unknown account"),
    ({"shocks": {"all": -0.1}}, r"shocks: must be a list"),
])
def test_bad_scenarios_name_the_path(doc: dict, message: str) -> None:
    with pytest.raises(stress.ScenarioError, match=message):
        stress.scenario_from_dict(doc, _stress_engine().book)


def test_scenario_file_round_trip_and_sweep(tmp_path: Path) -> None:
    e = _stress_engine()
    sc = stress.scenario_from_dict(PRECEDENCE, e.book)
    p = tmp_path / "s.json"
    p.write_text(json.dumps(sc.as_dict()))
    assert stress.load_scenario(p, e.book) == sc
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(stress.ScenarioError, match="not valid JSON"):
        stress.load_scenario(tmp_path / "bad.json")
    rows = stress.sweep(e, [0.0, 0.5])
    # no fall: M1 warning (no call); M3 E 5,000 < FC 40,000 (IM = MM = 50,000) → force, call 50,000 − 5,000
    assert rows[0]["total_call_amount"] == 45_000.0
    assert rows[1]["change"] == -0.5 and rows[1]["total_call_amount"] > rows[0]["total_call_amount"]


# ---------------------------------------------------------------------- LCS (§4)
LCS_SECURITIES = [
    {"code": "L1", "currency": "HKD", "price": 100.0, "market": "HK", "level": 1, "haircut": 0.2},
    {"code": "L2", "currency": "HKD", "price": 100.0, "market": "HK", "level": 2, "haircut": 0.4},
    {"code": "L3", "currency": "HKD", "price": 100.0, "market": "HK", "level": 3, "haircut": 0.5},
    {"code": "SUS", "currency": "HKD", "price": 100.0, "market": "HK", "level": 1, "haircut": 0.2,
     "suspended": True},
]


def _lcs_engine(extra_accounts: list | None = None, extra_positions: list | None = None) -> MarginEngine:
    accounts = [_acct("A1", -60_000), _acct("A2", -90_000), _acct("A3", -50_000), _acct("A4", -10_000),
                _acct("A5", 5_000), _acct("C1", -1_000, type_="cash"), _acct("A6", -80_000)]
    positions = [("A1", "L1", 1000), ("A2", "L1", 500), ("A2", "L2", 500), ("A3", "L2", 250), ("A3", "L3", 750),
                 ("A5", "L1", 100), ("C1", "L1", 100), ("A6", "L1", 750), ("A6", "L3", 250)]
    doc = {"as_of": "2026-11-20T16:10:00+08:00", "base_currency": "HKD", "fx": {"HKD": 1.0, "USD": 7.8},
           "securities": LCS_SECURITIES, "accounts": accounts + (extra_accounts or []),
           "positions": [{"account": a, "code": c, "qty": q} for a, c, q in positions + (extra_positions or [])]}
    return MarginEngine(book_from_dict(doc))


def test_lcs_declines_shortfalls_and_buffer() -> None:
    res = lcs.run(_lcs_engine(), 500_000, 300_000)
    acc = {a["account"]: a for a in res.accounts_json()}
    assert sorted(acc) == ["A1", "A2", "A3", "A4", "A6"]  # loans only; not A5 (no loan) nor C1 (cash account)
    # A1: all level 1 (p1 = 1 > .75) → 15%; RV 80,000; 60,000 − 68,000 < 0 → 0; screens 4,000 / 20,000
    assert acc["A1"] == {"account": "A1", "loan": 60_000.0, "rv": 80_000.0, "decline": 0.15, "shortfall": 0.0,
                         "shortfall_30": 4_000.0, "shortfall_50": 20_000.0}
    # A2: p1 .5, p12 1 → 25%; RV 40,000 + 30,000; 90,000 − 52,500 = 37,500
    assert (acc["A2"]["decline"], acc["A2"]["rv"], acc["A2"]["shortfall"]) == (0.25, 70_000.0, 37_500.0)
    # A3: p12 exactly 25% → 30%; RV 15,000 + 37,500 = 52,500; 50,000 − 36,750 = 13,250
    assert (acc["A3"]["decline"], acc["A3"]["shortfall"]) == (0.30, 13_250.0)
    # A4: no long positions → 50%, RV 0 → the whole loan
    assert (acc["A4"]["decline"], acc["A4"]["shortfall"]) == (0.50, 10_000.0)
    # A6: p1 exactly 75% is not above it, nor is p12 → 30%; RV 72,500; 80,000 − 50,750 = 29,250
    assert (acc["A6"]["decline"], acc["A6"]["shortfall"]) == (0.30, 29_250.0)
    j = res.as_json()
    assert (j["elc"], j["lcs"], j["buffer"], j["pass"]) == (200_000.0, 90_000.0, 10_000.0, True)
    assert lcs.run(_lcs_engine(), 479_999, 300_000).passed is False  # buffer −10,000.5


def test_top10_impacts_in_one_pass_agree_with_recomputing() -> None:
    e = _lcs_engine()
    res = lcs.run(e, 500_000, 300_000)
    top = res.top10()
    # L1: A1 +60,000, A2 +30,000, A6 +42,000; L3: A3 +26,250, A6 +8,750; L2: A2 +22,500, A3 +10,500
    assert [(t["code"], t["impact"]) for t in top] == [("L1", 132_000.0), ("L3", 35_000.0), ("L2", 33_000.0)]
    assert top[0] == {"code": "L1", "impact": 132_000.0, "lcs_stressed": 222_000.0, "buffer": -122_000.0,
                      "pass": False}
    for t in top:  # the naive way (rerun the whole test per security) gives the same impacts
        assert lcs.naive_impact(e, 500_000, 300_000, e.book.sec_index[t["code"]]) == pytest.approx(t["impact"])


def test_top10_ties_rank_by_code_and_suspended_stock_counts_nothing() -> None:
    # B1 mirrors A1 in a twin security L1B (same price, level, haircut): L1 and L1B tie → by code
    e = _lcs_engine()
    doc_secs = LCS_SECURITIES + [{"code": "L0", "currency": "HKD", "price": 100.0, "market": "HK", "level": 1,
                                  "haircut": 0.2}]
    book = book_from_dict({"as_of": "2026-11-20T16:10:00+08:00", "base_currency": "HKD",
                           "fx": {"HKD": 1.0, "USD": 7.8}, "securities": doc_secs, "accounts": [_acct("B1", -60_000), _acct("B2", -60_000), _acct("S1", -50_000)],
                           "positions": [{"account": "B1", "code": "L1", "qty": 1000},
                                         {"account": "B2", "code": "L0", "qty": 1000},
                                         {"account": "S1", "code": "SUS", "qty": 1000}]})
    res = lcs.run(MarginEngine(book), 0, 0)
    assert [t["code"] for t in res.top10()][:2] == ["L0", "L1"]  # equal impact 60,000 → by code
    acc = {a["account"]: a for a in res.accounts_json()}
    # suspended (3+ business days): haircut 1 → RV 0 → the whole loan, and making it non-pledgeable changes nothing
    assert (acc["S1"]["rv"], acc["S1"]["shortfall"]) == (0.0, 50_000.0)
    assert [t["impact"] for t in res.top10() if t["code"] == "SUS"] == [0.0]
    assert e.book.n_acct == 7


@pytest.mark.parametrize("lc,rlc,message", [("abc", 1, "LC must be a number"), (1, None, "RLC must be a number"),
                                            (float("nan"), 1, "LC must be a number")])
def test_lcs_inputs_must_be_numbers(lc: object, rlc: object, message: str) -> None:
    with pytest.raises(lcs.LcsError, match=message):
        lcs.run(_lcs_engine(), lc, rlc)


def test_lcs_on_an_empty_book_says_so() -> None:
    book = book_from_dict({"as_of": "2026-11-20T16:10:00+08:00", "base_currency": "HKD",
                           "fx": {"HKD": 1.0, "USD": 7.8}, "securities": [], "accounts": [], "positions": []})
    with pytest.raises(lcs.LcsError, match="no accounts"):
        lcs.run(MarginEngine(book), 1, 1)
    assert np.isfinite(lcs.run(_lcs_engine(), "1,000", "0").elc)


def test_cli_stress_and_lcs_agree_with_the_engines(tmp_path: Path) -> None:
    import subprocess
    import sys

    from services.bookfile import book_to_dict

    root = Path(__file__).resolve().parent.parent
    book_path = tmp_path / "book.json"
    book_path.write_text(json.dumps(book_to_dict(_stress_engine().book)))
    sc_path = tmp_path / "sc.json"
    sc_path.write_text(json.dumps(PRECEDENCE))
    out = subprocess.run([sys.executable, str(root / "main.py"), "stress", "--book", str(book_path), "--scenario",
                          str(sc_path), "--json"], capture_output=True, text=True, cwd=root, check=True)
    got = json.loads(out.stdout)
    e = _stress_engine()
    assert got["summary"] == stress.run(e, stress.scenario_from_dict(PRECEDENCE, e.book)).summary()
    out = subprocess.run([sys.executable, str(root / "main.py"), "lcs", "--book", str(book_path), "--lc", "1e6",
                          "--rlc", "4e5", "--json"], capture_output=True, text=True, cwd=root, check=True)
    assert json.loads(out.stdout) == lcs.run(_stress_engine(), 1e6, 4e5).as_json()
    bad = subprocess.run([sys.executable, str(root / "main.py"), "lcs", "--book", str(book_path), "--lc", "x",
                          "--rlc", "1"], capture_output=True, text=True, cwd=root)
    assert bad.returncode != 0 and "LC must be a number, got 'x'" in bad.stderr


def test_predefined_scenarios_load_and_top_collateral_ranks_by_value() -> None:
    e = _stress_engine()
    names = [s.name for s in stress.predefined()]
    for expected in ("SFC decline 15%", "SFC decline 50%", "SFC level declines", "Market −10%", "Market −30%",
                     "1997-style Asian crisis", "2008-style global financial crisis"):
        assert expected in names
    for s in stress.predefined():
        stress.scenario_from_dict(s.as_dict(), e.book)  # every shipped file runs on any book
    # long collateral in margin accounts: U.US 78,000 > A.HK 100,000? no — A.HK 100,000, U.US 78,000, N.HK 50,000
    top = stress.top_collateral(e)
    assert [s.shocks for s in top] == [[("security:A.HK", -0.5)], [("security:U.US", -0.5)],
                                       [("security:N.HK", -0.5)]]
