"""The Excel risk pack (issue 8): every sheet present with rows and formats, formula-looking text stays
text, sheet choice, bad input named; the CLI writes the same workbook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import text

from services import audit, auth, pack, risk_runs, stress
from services.demo_store import seed_demo_store
from services.margin import MarginEngine
from services.store import Store

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "=cmd|' /C calc'!A0"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    st = Store(f"sqlite:///{tmp_path_factory.mktemp('pack') / 'p.db'}")
    st.migrate()
    seed_demo_store(st, clients=200, seed=3)
    rita = auth.User("rita", "Rita", "risk_officer")
    risk_runs.run_stress(st, rita, stress.Scenario("Market −20%", [("all", -0.2)]))
    risk_runs.run_lcs(st, rita, 5e8, 2e8)
    with st.begin() as conn:
        audit.append(conn, st.kind, "rita", "note", "incidents", "1", "", HOSTILE)
        conn.execute(text("insert into incidents (title, detected_by, detected_at, created_by, severity, state) "
                          "values (:t, 'olga', current_timestamp, 'olga', 2, 'contain')"), {"t": HOSTILE})
        from datetime import date, timedelta

        today = date.today()
        conn.execute(text("delete from kri_readings where kri_code in ('STP_RATE', 'OPEN_INCIDENTS')"))
        conn.execute(text("insert into kri_readings (kri_code, day, value) values (:k, :d, :v)"),
                     [{"k": "STP_RATE", "d": today - timedelta(days=i), "v": 97.0 - i * 0.5} for i in range(10)]
                     + [{"k": "OPEN_INCIDENTS", "d": today - timedelta(days=i), "v": 7.0} for i in range(10)])
    return st


def test_pack_has_every_sheet_with_rows_formats_and_text_safety(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "pack.xlsx"
    counts = pack.build_pack(store, out, user="rita")
    wb = load_workbook(out)
    assert wb.sheetnames[:13] == [pack.TITLES[s] for s in pack.SHEETS]
    assert "KRI history" in wb.sheetnames  # chart data beside the KRI sheet
    for s in pack.SHEETS:
        ws = wb[pack.TITLES[s]]
        assert ws.freeze_panes == "A2", s
        assert ws["A1"].font.bold, s
        assert ws.max_row == counts[pack.TITLES[s]] + 1, s
    e = MarginEngine(store.load_book())
    alerts = wb["Alerts by status"]
    assert alerts.max_row - 1 == int((e.status > 0).sum())  # every account not safe
    assert alerts["D2"].number_format == "#,##0.00"
    assert wb["Concentration by stock"]["E2"].number_format == "0.0%"
    shares = [r[4] for r in wb["Concentration by stock"].iter_rows(min_row=2, values_only=True)]
    assert sum(shares) == pytest.approx(1.0)
    # formula-looking text is text, never a formula
    inc = wb["Incidents"]
    cell = [c for c in inc["B"] if c.value and "cmd" in str(c.value)][0]
    assert cell.data_type == "s" and str(cell.value).startswith("'=")
    lcs = [r for r in wb["LCS test"].iter_rows(values_only=True)]
    assert any(r[0] == "Top 10 stocks" for r in lcs)
    kri = {r[0]: r for r in wb["KRIs"].iter_rows(min_row=2, values_only=True)}
    assert len(kri) == 12
    # STP rate (lower is worse: amber ≤ 95, red ≤ 90): latest 97 → green, rising from 96.5; open incidents 7 ≥ 6 → red
    assert (kri["STP_RATE"][3], kri["STP_RATE"][4], kri["STP_RATE"][5]) == (97.0, "green", "↑")
    assert kri["OPEN_INCIDENTS"][4] == "red"
    red_row = [c for c in wb["KRIs"]["A"] if c.value == "OPEN_INCIDENTS"][0].row
    assert wb["KRIs"].cell(red_row, 5).fill.fgColor.rgb.endswith("FFC7CE")  # the red fill


def test_sheet_choice_and_bad_input(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "some.xlsx"
    counts = pack.build_pack(store, out, sheets=["cover", "credit"])
    assert list(counts) == ["Cover", "Credit usage"]
    assert load_workbook(out).sheetnames == ["Cover", "Credit usage"]
    with pytest.raises(pack.PackError, match="unknown sheet.*nope"):
        pack.build_pack(store, out, sheets=["nope"])
    with pytest.raises(pack.PackError, match="no such folder"):
        pack.build_pack(store, tmp_path / "missing" / "x.xlsx", sheets=["cover"])


def test_cli_export_pack(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "cli.xlsx"
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", "pack", "--db", str(store.url), "--out",
                        str(out), "--sheets", "cover,alerts"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(r.stdout)["sheets"]["Cover"] >= 10
    assert load_workbook(out).sheetnames == ["Cover", "Alerts by status"]
    bad = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", "pack", "--db", str(store.url), "--out",
                          str(out), "--sheets", "cover,bogus"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "unknown sheet(s) bogus" in bad.stderr
