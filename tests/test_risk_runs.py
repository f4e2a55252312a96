"""Stress and LCS runs (issue 6): stored with their inputs and book, reopened, re-run to the same
numbers after the store changed, compared, exported to xlsx; versioned scenarios; four-eyes exemptions."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import text

from services import auth, changes, risk_runs, stress
from services.store import Store
from tests.test_margin_formulas import _acct, make_book

RITA, SAM = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")


@pytest.fixture
def st(sqlite_url: str) -> Store:
    s = Store(sqlite_url)
    s.migrate()
    s.save_book(make_book([_acct("M1", -60_000), _acct("M2", 0), _acct("M3", -45_000)],
                          [("M1", "A.HK", 1000), ("M2", "U.US", 1000), ("M3", "N.HK", 1000)]))
    auth.ensure_permissions(s)
    return s


def test_scenarios_are_versioned_and_duplicated(st: Store) -> None:
    sc = stress.Scenario("Desk −20%", [("all", -0.2)])
    assert risk_runs.save_scenario(st, RITA, sc) == 1
    sc.shocks = [("all", -0.25)]
    assert risk_runs.save_scenario(st, RITA, sc) == 2
    latest = {s["name"]: s for s in risk_runs.scenarios(st)}
    assert latest["Desk −20%"]["version"] == 2 and latest["Desk −20%"]["scenario"].shocks == [("all", -0.25)]
    assert [v["version"] for v in risk_runs.scenario_versions(st, "Desk −20%")] == [2, 1]
    risk_runs.duplicate_scenario(st, RITA, "Desk −20%", "Copy")
    assert {s["name"] for s in risk_runs.scenarios(st)} == {"Desk −20%", "Copy"}
    with pytest.raises(stress.ScenarioError, match="already exists"):
        risk_runs.duplicate_scenario(st, RITA, "Desk −20%", "Copy")


def test_run_store_reopen_rerun_same_numbers_compare_export(st: Store, tmp_path: Path) -> None:
    sc = stress.Scenario("A.HK −50%", [("security:A.HK", -0.5)])
    rid = risk_runs.run_stress(st, RITA, sc, sweep_sizes=[0.1, 0.3])
    run = risk_runs.load_run(st, rid)
    # M1: 1,000 A.HK @ 50, cash −60,000: E −10,000, IM 25,000 → force, call 35,000, shortfall 10,000;
    # M3 (N.HK untouched): E 5,000 < FC 40,000 → force, call 45,000
    assert run["status"] == "done"
    assert run["summary"]["total_call_amount"] == 80_000.0 and run["summary"]["total_shortfall"] == 10_000.0
    assert [c["change"] for c in run["summary"]["curve"]] == [-0.1, -0.3]
    # the store moves on (M1 gets cash); the rerun uses the stored book and gives the same numbers
    with st.begin() as conn:
        conn.execute(text("update cash_balances set amount = 1000000 where account_id = "
                          "(select id from accounts where code = 'M1') and currency = 'HKD'"))
    again = risk_runs.rerun(st, SAM, rid)
    assert risk_runs.load_run(st, again)["summary"]["total_call_amount"] == 80_000.0
    fresh = risk_runs.run_stress(st, RITA, sc)  # on today's book M1 is rich: only M3 is in call
    assert risk_runs.load_run(st, fresh)["summary"]["total_call_amount"] == 45_000.0
    cmp = risk_runs.compare(st, rid, fresh)
    assert cmp["status_changes"] == [{"account": "M1", "status_a": "force", "status_b": "safe", "call_a": 35_000.0,
                                      "call_b": 0.0}]
    out = tmp_path / "run.xlsx"
    risk_runs.export_run(st, rid, str(out))
    wb = load_workbook(out)
    assert wb.sheetnames == ["Summary", "Accounts", "Top shortfalls"]
    rows = list(wb["Accounts"].iter_rows(values_only=True))
    assert rows[0][:3] == ("Account", "Status", "Equity") and rows[1][:3] == ("M1", "force", -10_000)
    assert [r.kind for r in risk_runs.runs(st)] == ["stress"] * 3


def test_lcs_run_and_empty_book(st: Store, sqlite_url: str, tmp_path: Path) -> None:
    rid = risk_runs.run_lcs(st, RITA, "1,000,000", 400_000)
    run = risk_runs.load_run(st, rid)
    assert run["summary"]["elc"] == 600_000.0 and run["summary"]["pass"] is True
    out = tmp_path / "lcs.xlsx"
    risk_runs.export_run(st, rid, str(out))
    assert load_workbook(out).sheetnames == ["Summary", "Accounts", "Top 10 stocks"]
    with pytest.raises(Exception, match="LC must be a number"):
        risk_runs.run_lcs(st, RITA, "lots", 1)
    empty = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    empty.migrate()
    with pytest.raises(risk_runs.RunError, match="no accounts"):
        risk_runs.run_stress(empty, RITA, stress.Scenario("x", [("all", -0.1)]))


def test_exemptions_are_four_eyes_and_apply_to_runs(st: Store) -> None:
    rid = risk_runs.propose_exemption(st, RITA, "security", "A.HK", "pledged to the exchange")
    assert risk_runs.exemptions(st)["security"] == []  # nothing until approved
    with pytest.raises(auth.AuthError, match="four-eyes"):
        changes.approve(st, RITA, rid)
    changes.approve(st, SAM, rid)
    assert risk_runs.exemptions(st) == {"security": ["A.HK"], "account": []}
    run = risk_runs.load_run(st, risk_runs.run_stress(st, RITA, stress.Scenario("x", [("all", -0.5)])))
    assert run["inputs"]["scenario"]["exempt_securities"] == ["A.HK"]
    m1 = [a for a in run["results"]["accounts"] if a["account"] == "M1"][0]
    assert m1["equity"] == 40_000.0  # A.HK not shocked
    with pytest.raises(changes.ChangeError, match="already exempt"):
        risk_runs.propose_exemption(st, RITA, "security", "A.HK", "again")
    with pytest.raises(changes.ChangeError, match="does not exist"):
        risk_runs.propose_exemption(st, RITA, "account", "ZZ", "x")
    changes.approve(st, SAM, risk_runs.propose_exemption(st, RITA, "security", "A.HK", "released", remove=True))
    assert risk_runs.exemptions(st)["security"] == []


def test_custom_ratios_file(st: Store, tmp_path: Path) -> None:
    p = tmp_path / "ratios.csv"
    p.write_text("code,im_ratio,mm_ratio\nA.HK,0.8,0.6\n")
    ratios = risk_runs.read_custom_ratios(str(p))
    run = risk_runs.load_run(st, risk_runs.run_stress(st, RITA, stress.Scenario("none", []), custom_ratios=ratios))
    m1 = [a for a in run["results"]["accounts"] if a["account"] == "M1"][0]
    assert (m1["im"], m1["mm"]) == (80_000.0, 60_000.0)  # 0.8 / 0.6 × 100,000 instead of 0.5 / 0.4
    p.write_text("code,im_ratio,mm_ratio\nA.HK,high,0.6\n")
    with pytest.raises(risk_runs.RunError, match="row 2"):
        risk_runs.read_custom_ratios(str(p))
    with pytest.raises(risk_runs.RunError, match="MM ≤ IM"):
        risk_runs.apply_custom_ratios(st.load_book(), {"A.HK": (0.3, 0.5)})
