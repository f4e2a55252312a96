"""The stress-testing dock on a real SQLite demo store (issue 6): a predefined scenario run end to
end showing exactly what `stress.run` gives on the same book, a long run cancelled with the dock
still usable, a bad scenario file refused with its JSON path, two runs compared, a run exported to
xlsx, exemptions as four-eyes requests, the editor's inline refusals and the drill into an
account's stressed positions.

No sleeps: every wait is on a signal or a condition; the task runner is shut down after each test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openpyxl import load_workbook

from app.tasks import TaskRunner
from services import changes, risk_runs, stress
from services.auth import User
from services.margin import STATUS_NAMES, MarginEngine
from services.store import Store
from services.stress_view import RunView, parse_percent, scenario_from_rows, sweep_sizes
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.formatting import integer, money
from widgets.stress_dock import StressDock

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
WAIT = 10_000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[StressDock]:
    d = StressDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.setup_loaded, timeout=WAIT), qtbot.waitSignal(d.runs_loaded, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1500, 820)
    d.show()
    yield d
    d.stop()


def _run(qtbot: Any, d: StressDock, sweep: list[float] | None = None) -> int:
    with qtbot.waitSignal(d.run_opened, timeout=WAIT) as opened:
        assert d.start_run(sweep)
    return int(opened.args[0])


def _open(d: StressDock) -> RunView:
    assert d.results.run is not None
    return d.results.run


def _listed(d: StressDock, run_id: int) -> dict[str, Any]:
    rec = d.runs.record(run_id)
    assert rec is not None
    return rec


def _refresh(qtbot: Any, d: StressDock) -> None:
    with qtbot.waitSignal(d.setup_loaded, timeout=WAIT), qtbot.waitSignal(d.runs_loaded, timeout=WAIT):
        d.refresh()


def test_editor_rows_checked_like_a_file() -> None:
    assert parse_percent("−20 %", "x") == -0.2 and parse_percent("7.5", "x") == 0.075
    with pytest.raises(stress.ScenarioError, match=r"shocks\[1\]\.change: 'abc' is not a number"):
        scenario_from_rows("s", [("all", "", "-10"), ("market", "HK", "abc")], [], [], [])
    with pytest.raises(stress.ScenarioError, match=r"shocks\[0\]\.change: change -1.5 is below −100%"):
        scenario_from_rows("s", [("all", "", "-150")], [], [], [])
    sc = scenario_from_rows("s", [("market", "HK", "-20"), ("security", "700.HK", "-50")], [("USD", "-5")],
                            ["5.HK"], [])
    assert sc.shocks == [("market:HK", -0.2), ("security:700.HK", -0.5)] and sc.fx_shocks == [("USD", -0.05)]
    assert sweep_sizes(50, 5) == [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]


def test_predefined_scenario_end_to_end_matches_the_engine(qtbot: Any, dock: StressDock, store: Store) -> None:
    names = {(r["name"], r["source"]) for r in (dock.editor.list_model.record_at(i)
                                                for i in range(dock.editor.list_model.rowCount())) if r}
    assert ("Market −20%", "shipped") in names and ("SFC decline 50%", "shipped") in names
    assert any(n.startswith("Top collateral #1") for n, _s in names)
    assert dock.editor.select("Market −20%", "shipped")
    assert dock.editor.shocks.rows == [["all", "", "-20"]]
    run_id = _run(qtbot, dock, [0.1, 0.2, 0.3])

    # the same scenario, with the standing exemptions, computed directly on the book the run stored
    book = risk_runs.load_run(store, run_id)["book"]
    sc = risk_runs.with_exemptions(store, next(s for s in stress.predefined() if s.name == "Market −20%"))
    expected = stress.run(MarginEngine(book), sc).summary()
    r = dock.results
    for name in STATUS_NAMES:
        assert r.card_text(name) == integer(expected["accounts_by_status"][name])
    assert r.card_text("total_call_amount") == money(expected["total_call_amount"])
    assert r.card_text("total_shortfall") == money(expected["total_shortfall"])
    assert r.card_text("new_calls") == integer(expected["new_calls"])
    in_call = expected["accounts_by_status"]["call"] + expected["accounts_by_status"]["force"]
    assert in_call > 0 and r.in_call.rowCount() == in_call
    assert r.largest.rowCount() == len(expected["top_shortfalls"])
    assert r.histogram.total == _open(dock).accounts.size
    assert r.curve_chart.points == 3
    assert _listed(dock, run_id)["status"] == "done"

    # drill into the account with the largest shortfall: its positions at the shocked prices
    acct = str(expected["top_shortfalls"][0]["account"] if expected["top_shortfalls"] else
               dock.results.in_call.account_at(0))
    with qtbot.waitSignal(r.positions_shown, timeout=WAIT):
        r.show_positions(acct)
    assert r.dialog is not None and r.dialog.isVisible()
    pos = r.dialog.data
    assert len(pos["code"]) > 0
    assert np.allclose(pos["shocked_price"], pos["price"] * 0.8) and np.allclose(pos["change"], -0.2)
    e_book = MarginEngine(book)
    a = book.acct_index[acct]
    assert np.isclose(pos["im"].sum(), stress.run(e_book, sc).im[a])


def test_cancel_a_long_run_leaves_it_cancelled_and_the_dock_usable(qtbot: Any, dock: StressDock) -> None:
    sizes = [0.01 + (k % 99) / 100 for k in range(200_000)]  # a long shock curve
    assert dock.start_run(sizes)
    assert not dock.run_button.isEnabled() and dock.cancel_button.isVisible()
    qtbot.waitUntil(lambda: dock.progress.value() >= 400, timeout=WAIT)  # into the curve
    with qtbot.waitSignal(dock.run_stopped, timeout=WAIT) as stopped, \
            qtbot.waitSignal(dock.runs_loaded, timeout=WAIT):
        dock.cancel_run()
    assert stopped.args == ["cancelled"]
    latest = dock.runs.rows()[0]
    assert latest["status"] == "cancelled"
    assert dock.run_button.isEnabled() and not dock.cancel_button.isVisible()
    assert "cancelled" in dock.message.text()
    run_id = _run(qtbot, dock, [0.1])  # usable: the next run goes through
    assert _listed(dock, run_id)["status"] == "done" and _open(dock).id == run_id


def test_bad_scenario_file_shows_the_json_path(qtbot: Any, dock: StressDock, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "shocks": [{"target": "all", "change": -0.1},
                                                         {"target": "planet:Mars", "change": -0.2}]}))
    before = [list(r) for r in dock.editor.shocks.rows]
    dock.editor.import_file(str(bad))
    qtbot.waitUntil(lambda: "shocks[1].target" in dock.editor.message.text(), timeout=WAIT)
    assert "unknown target 'planet:Mars'" in dock.editor.message.text()
    assert dock.editor.message.property("tone") == "error"
    assert dock.editor.shocks.rows == before  # nothing loaded
    bad.write_text(json.dumps({"name": "bad", "shocks": [{"target": "security:NOPE.HK", "change": -0.2}]}))
    dock.editor.import_file(str(bad))
    qtbot.waitUntil(lambda: "shocks[0].target: unknown security 'NOPE.HK'" in dock.editor.message.text(),
                    timeout=WAIT)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"name": "Desk HK −25%", "shocks": [{"target": "market:HK", "change": -0.25}]}))
    dock.editor.import_file(str(good))
    qtbot.waitUntil(lambda: dock.editor.name_edit.text() == "Desk HK −25%", timeout=WAIT)
    assert dock.editor.shocks.rows == [["market", "HK", "-25"]]


def test_editor_inline_refusals_save_versions_and_modes(qtbot: Any, dock: StressDock, tmp_path: Path) -> None:
    ed = dock.editor
    ed.new_scenario()
    ed.name_edit.setText("Desk test")
    ed.shocks.setData(ed.shocks.index(0, 2), "-150")
    assert "shocks[0].change: change -1.5 is below −100%" in ed.validation.text()
    assert ed.shocks.bad_row == 0 and not ed.save_button.isEnabled() and not dock.run_button.isEnabled()
    ed.shocks.setData(ed.shocks.index(0, 2), "-15")
    assert ed.validation.isHidden() and ed.save_button.isEnabled()
    se = ed.shock_editor
    se.set_mode("security", "NOPE.HK", "-50")
    assert not se.add_mode_shock() and "unknown security 'NOPE.HK'" in ed.message.text()
    se.set_mode("security", "700.HK", "-50")
    assert se.add_mode_shock()
    assert dock.setup is not None
    se.set_mode("group", dock.setup.groups[0], "-30")
    assert se.add_mode_shock()
    assert [r[0] for r in ed.shocks.rows] == ["all", "security", "group"]
    ed.exempt_accounts.setText("NOBODY")
    assert "exempt_accounts[0]: unknown account 'NOBODY'" in ed.validation.text()
    ed.exempt_accounts.clear()
    with qtbot.waitSignal(dock.setup_loaded, timeout=WAIT):
        ed.save()
    assert "version 1" in ed.message.text() and ed.entry is not None and ed.entry.version == 1
    ed.shocks.setData(ed.shocks.index(0, 2), "-20")
    with qtbot.waitSignal(dock.setup_loaded, timeout=WAIT):
        ed.save()
    qtbot.waitUntil(lambda: ed.versions.rowCount() == 2, timeout=WAIT)
    with qtbot.waitSignal(dock.setup_loaded, timeout=WAIT):
        ed.duplicate()
    assert ed.entry is not None and ed.entry.name == "Desk test (copy)"
    ed.delete()
    assert ed.delete_button.text() == "Confirm delete"
    with qtbot.waitSignal(dock.setup_loaded, timeout=WAIT):
        ed.delete()
    assert not ed.select("Desk test (copy)", "saved") and ed.select("Desk test", "saved")
    out = tmp_path / "desk.json"
    ed.export_file(str(out))
    qtbot.waitUntil(lambda: out.exists() and "Exported" in ed.message.text(), timeout=WAIT)
    assert stress.load_scenario(out).shocks[0] == ("all", -0.2)


def test_compare_two_runs_shows_status_changes(qtbot: Any, dock: StressDock, store: Store) -> None:
    dock.editor.select("Market −10%", "shipped")
    a = _run(qtbot, dock, [])
    dock.editor.select("SFC decline 50%", "shipped")
    b = _run(qtbot, dock, [])
    qtbot.waitUntil(lambda: dock.runs.record(b) is not None, timeout=WAIT)
    dock.runs.select_runs([a, b])
    assert dock.runs.compare_button.isEnabled()
    with qtbot.waitSignal(dock.compared, timeout=WAIT):
        dock.runs.compare_button.click()
    expected = risk_runs.compare(store, a, b)
    shown = dock.compare.status_changes()
    assert shown and len(shown) == len(expected["status_changes"])
    assert {s[0]: (s[1], s[2]) for s in shown} == {c["account"]: (c["status_a"], c["status_b"])
                                                   for c in expected["status_changes"]}
    totals = dock.compare.total_texts()
    assert totals["Total call amount"][:2] == (money(expected["a"]["total_call_amount"]),
                                               money(expected["b"]["total_call_amount"]))
    assert totals["Accounts whose status changed"][2] == f"+{len(shown):,}"
    assert dock.tabs.currentWidget() is dock.compare


def test_export_rerun_and_custom_data(qtbot: Any, dock: StressDock, store: Store, tmp_path: Path) -> None:
    dock.editor.select("Market −30%", "shipped")
    run_id = _run(qtbot, dock, [0.1, 0.2])
    out = tmp_path / "run.xlsx"
    with qtbot.waitSignal(dock.exported, timeout=WAIT):
        dock.export_run(run_id, str(out))
    wb = load_workbook(out)
    assert wb.sheetnames == ["Summary", "Accounts", "Top shortfalls"]
    summary = {r[0]: r[1] for r in wb["Summary"].iter_rows(values_only=True)}
    stored = risk_runs.load_run(store, run_id)["summary"]
    assert summary["Run"] == run_id and summary["Total call amount"] == stored["total_call_amount"]
    assert wb["Accounts"].max_row - 1 == _open(dock).accounts.size

    dock.runs.select_runs([run_id])
    with qtbot.waitSignal(dock.run_opened, timeout=WAIT) as opened:
        dock.runs.rerun_button.click()
    again = int(opened.args[0])
    assert again != run_id and dock.results.card_text("total_call_amount") == money(stored["total_call_amount"])

    bad = tmp_path / "ratios.csv"
    bad.write_text("code,im_ratio,mm_ratio\n700.HK,high,0.5\n")
    dock.load_custom_data(str(bad))
    qtbot.waitUntil(lambda: "row 2" in dock.message.text(), timeout=WAIT)
    assert dock.custom_ratios == {}
    good = tmp_path / "ratios2.csv"
    good.write_text("code,im_ratio,mm_ratio\n700.HK,1.0,1.0\n")
    dock.load_custom_data(str(good))
    qtbot.waitUntil(lambda: dock.custom_ratios == {"700.HK": (1.0, 1.0)}, timeout=WAIT)
    assert "custom ratios: 1 security" in dock.custom_label.text()
    custom = _run(qtbot, dock, [])
    assert risk_runs.load_run(store, custom)["inputs"]["custom_ratios"] == {"700.HK": [1.0, 1.0]}
    assert "custom ratios for 1 security" in dock.results.head.text()


def test_exemptions_are_four_eyes_requests(qtbot: Any, dock: StressDock, store: Store) -> None:
    p = dock.exemptions
    p.kind_combo.setCurrentText("security")
    p.code_edit.setText("NOPE.HK")
    assert "Unknown security" in p.validation.text() and not p.add_button.isEnabled()
    p.code_edit.setText("700.HK")
    assert "reason" in p.validation.text()
    p.reason_edit.setText("pledged to the exchange")
    assert p.add_button.isEnabled()
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig, qtbot.waitSignal(dock.setup_loaded, timeout=WAIT):
        p.add_button.click()
    rid = int(sig.args[0])
    assert f"request #{rid} submitted" in p.message.text()
    assert [(r["code"], r["state"]) for r in p.rows()] == [("700.HK", "pending approval")]
    assert risk_runs.exemptions(store)["security"] == []  # nothing until a checker approves
    p.code_edit.setText("700.HK")
    p.reason_edit.setText("again")
    assert "already has request" in p.validation.text()
    changes.approve(store, SAM, rid)
    _refresh(qtbot, dock)
    assert [(r["code"], r["state"]) for r in p.rows()] == [("700.HK", "exempt")]
    p.view.selectRow(0)
    p.reason_edit.setText("released")
    with qtbot.waitSignal(dock.submitted, timeout=WAIT), qtbot.waitSignal(dock.setup_loaded, timeout=WAIT):
        p.remove_button.click()
    assert [r["state"] for r in p.rows()] == ["exempt · removal pending"]
