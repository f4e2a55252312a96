"""Reconciliation (RISK_METHODS §7 Breaks): tolerance edges, missing sides, ageing across weekends
and holidays, bad files named, and the headless `reconcile` command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from services import recon

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2026, 12, 29)  # a Tuesday; 25 Dec is a holiday, 26–27 a weekend


def _pos(rows: list[tuple]) -> pd.DataFrame:  # type: ignore[type-arg]
    return pd.DataFrame(rows, columns=["account", "code", "qty"])


def test_position_tolerance_edges_and_missing_sides() -> None:
    ours = _pos([("M1", "700.HK", 1000.0), ("M1", "5.HK", 500.0), ("M2", "700.HK", 100.0), ("M3", "1.HK", 10.0),
                 ("M4", "2.HK", 7.0)])
    theirs = _pos([("M1", "700.HK", 1000.0), ("M1", "5.HK", 499.0), ("M2", "700.HK", 98.99), ("M5", "3.HK", 4.0),
                   ("M4", "2.HK", 7.0)])
    r = recon.reconcile("position", ours, theirs, AS_OF)
    # exact: M1/700.HK, M4/2.HK; within ±1: M1/5.HK (auto-resolved); 1.01 apart: a break
    assert (r.matched, r.auto_resolved) == (3, 1)
    got = {(b["key"], b["type"]): b for b in r.breaks}
    assert set(got) == {("M2/700.HK", "mismatch"), ("M3/1.HK", "missing_theirs"), ("M5/3.HK", "missing_ours")}
    assert got[("M2/700.HK", "mismatch")]["difference"] == pytest.approx(1.01)
    assert (got[("M5/3.HK", "missing_ours")]["ours"], got[("M5/3.HK", "missing_ours")]["theirs"]) == (None, 4.0)
    assert all(b["age_days"] == 0 and b["status"] == "normal" for b in r.breaks)  # undated: as of today


def test_transaction_price_tolerance_text_fields_and_ageing() -> None:
    cols = ["trade_id", "account", "code", "side", "qty", "price", "trade_date"]
    ours = pd.DataFrame([("T1", "M1", "700.HK", "buy", 100, 380.00, date(2026, 12, 28)),
                         ("T2", "M1", "700.HK", "buy", 100, 380.00, date(2026, 12, 24)),
                         ("T3", "M1", "5.HK", "sell", 100, 60.0, date(2026, 12, 22)),
                         ("T4", "M2", "5.HK", "sell", 100, 60.0, date(2026, 12, 18))], columns=cols)
    theirs = pd.DataFrame([("T1", "M1", "700.HK", "buy", 100, 380.01, date(2026, 12, 28)),
                           ("T2", "M1", "700.HK", "buy", 100, 380.02, date(2026, 12, 24)),
                           ("T3", "M1", "5.HK", "buy", 100, 60.0, date(2026, 12, 22)),
                           ("T4", "M2", "5.HK", "sell", 100, 60.0, date(2026, 12, 18))], columns=cols)
    r = recon.reconcile("transaction", ours, theirs, AS_OF)
    assert (r.matched, r.auto_resolved) == (2, 1)  # T1 within 0.01 (auto-resolved), T4 exact
    b = {x["key"]: x for x in r.breaks}
    # T2 from Thu 24 Dec: Thu, (Fri 25 holiday, weekend), Mon 28 → 2 business days → attention
    assert (b["T2"]["field"], b["T2"]["age_days"], b["T2"]["status"]) == ("price", 2, "attention")
    # T3 from Tue 22 Dec: 22, 23, 24, 28 → 4 → warning; wrong side is a text mismatch
    assert (b["T3"]["field"], b["T3"]["ours"], b["T3"]["theirs"], b["T3"]["status"]) == ("side", "sell", "buy",
                                                                                       "warning")


@pytest.mark.parametrize("age,status", [(0, "normal"), (1, "normal"), (2, "attention"), (3, "attention"),
                                        (4, "warning"), (5, "warning"), (6, "critical"), (30, "critical")])
def test_age_bands(age: int, status: str) -> None:
    assert recon.age_status(age) == status


def test_cash_tolerance_edge() -> None:
    cols = ["account", "currency", "amount"]
    ours = pd.DataFrame([("M1", "HKD", 100.00), ("M2", "HKD", 100.00)], columns=cols)
    theirs = pd.DataFrame([("M1", "HKD", 101.00), ("M2", "HKD", 101.02)], columns=cols)
    r = recon.reconcile("cash", ours, theirs, AS_OF)
    assert (r.matched, r.auto_resolved, [b["key"] for b in r.breaks]) == (1, 1, ["M2/HKD"])


def test_bad_files_are_named(tmp_path: Path) -> None:
    p = tmp_path / "ours.csv"
    p.write_text("account,code,qty\nM1,700.HK,ten\n")
    with pytest.raises(recon.ReconError, match="ours.csv row 2, column qty: 'ten' is not a number"):
        recon.read_records(p, "position")
    p.write_text("account,qty\nM1,10\n")
    with pytest.raises(recon.ReconError, match="missing column.* code"):
        recon.read_records(p, "position")
    p.write_text("account,code,qty\nM1,700.HK,10\nM1,700.HK,11\n")
    with pytest.raises(recon.ReconError, match="row 3: key M1/700.HK appears more than once"):
        recon.read_records(p, "position")


def test_cli_reconcile_json_and_xlsx_input(tmp_path: Path) -> None:
    ours = tmp_path / "ours.csv"
    ours.write_text("account,code,qty,trade_date\nM1,700.HK,100,2026-12-24\nM2,5.HK,10,2026-12-28\n")
    theirs = tmp_path / "theirs.xlsx"
    pd.DataFrame([("M1", "700.HK", 90)], columns=["account", "code", "qty"]).to_excel(theirs, index=False)
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "reconcile", "position", "--ours", str(ours),
                          "--theirs", str(theirs), "--as-of", "2026-12-29", "--json"], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    got = json.loads(out.stdout)
    assert got["kind"] == "position" and got["matched"] == 0
    assert [(b["key"], b["type"], b["age_days"], b["status"]) for b in got["breaks"]] == [
        ("M1/700.HK", "mismatch", 2, "attention"), ("M2/5.HK", "missing_theirs", 1, "normal")]
    bad = subprocess.run([sys.executable, str(ROOT / "main.py"), "reconcile", "position", "--ours", str(ours),
                          "--theirs", str(tmp_path / "nope.csv"), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "nope.csv: no such file" in bad.stderr


def test_breaks_recorded_idempotently_aged_and_worked(sqlite_url: str, tmp_path: Path) -> None:
    from services import breaks
    from services.store import Store

    st = Store(sqlite_url)
    st.migrate()
    ours, theirs = tmp_path / "o.csv", tmp_path / "t.csv"
    ours.write_text("account,code,qty,trade_date\nM1,700.HK,100,2026-12-24\nM2,5.HK,10,2026-12-28\n")
    theirs.write_text("account,code,qty\nM1,700.HK,90\n")
    res = recon.reconcile_files("position", ours, theirs, AS_OF)
    imp, new = breaks.record_breaks(st, res, ours, theirs, AS_OF)
    assert new and breaks.record_breaks(st, res, ours, theirs, AS_OF) == (imp, False)  # same files: nothing
    rows = breaks.breaks(st, "unresolved", as_of=AS_OF)
    assert [(r["key"], r["age_days"], r["escalation"]) for r in rows] == [("M1/700.HK", 2, "attention"),
                                                                          ("M2/5.HK", 1, "normal")]
    # a week later the mismatch is critical: 24 Dec + 6 business days (holiday and weekends skipped)
    later = breaks.breaks(st, "unresolved", as_of=date(2027, 1, 5))
    assert [(r["key"], r["age_days"], r["escalation"]) for r in later][0] == ("M1/700.HK", 6, "critical")
    b1 = rows[0]["id"]
    breaks.assign(st, b1, "olga", "sam")
    breaks.investigate(st, b1, "olga")
    with pytest.raises(breaks.BreakError, match="root cause"):
        breaks.resolve(st, b1, "olga", " ", "fixed")
    breaks.resolve(st, b1, "olga", "late custodian file", "booked the 10 shares")
    with pytest.raises(breaks.BreakError, match="is resolved"):
        breaks.assign(st, b1, "tom", "sam")
    # the next day's files match M2 too: its break resolves itself
    theirs.write_text("account,code,qty\nM1,700.HK,100\nM2,5.HK,10\n")
    res2 = recon.reconcile_files("position", ours, theirs, AS_OF)
    breaks.record_breaks(st, res2, ours, theirs, AS_OF)
    assert breaks.breaks(st, "unresolved", as_of=AS_OF) == []
    assert [r["resolution"] for r in breaks.breaks(st, "resolved")][1].startswith("matched in import #")
