"""The LCS test dock and the indices dock's weighting view (issue 6), with real widgets (offscreen), the
demo store and the task runner: the run in a worker gives the numbers `lcs.run` gives on the same
book; LC / RLC are checked inline; the top 10 and the positions agree with the stored run; the
history reopens, re-runs and exports; level shares add up to 100%."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from app.tasks import TaskRunner
from services import lcs, lcs_view, risk_runs
from services.auth import User
from services.lcs_store import long_suspended
from services.margin import MarginEngine
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.formatting import money
from widgets.index_dock import IndexDock
from widgets.lcs_dock import LcsDock
from widgets.lcs_tables import parse_amount

RITA = User("rita", "Rita", "risk_officer")
WAIT = 15_000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[LcsDock]:
    d = LcsDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.history_loaded, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1400, 700)
    d.show()
    yield d
    d.stop()


def _records(model: Any) -> list[dict[str, Any]]:
    return [r for r in (model.record_at(i) for i in range(model.rowCount())) if r is not None]


def _run(qtbot: Any, d: LcsDock, lc: str, rlc: str) -> int:
    d.lc_edit.setText(lc)
    d.rlc_edit.setText(rlc)
    assert d.run_button.isEnabled()
    with qtbot.waitSignal(d.shown, timeout=WAIT) as sig:
        d.run_button.click()
    qtbot.waitUntil(lambda: not d.busy, timeout=WAIT)
    return int(sig.args[0])


def test_parse_amount_names_the_field() -> None:
    assert parse_amount("LC", " 300,000,000 ") == (300_000_000.0, "")
    assert parse_amount("RLC", "-1.5e6")[0] == -1_500_000.0
    assert parse_amount("LC", "abc") == (None, "LC must be a number, got “abc”.")
    assert parse_amount("RLC", "")[1].startswith("Enter RLC")
    assert "finite" in parse_amount("LC", "inf")[1]


def test_run_shows_the_numbers_of_lcs_run_on_the_same_book(qtbot: Any, dock: LcsDock, store: Store) -> None:
    run_id = _run(qtbot, dock, "300,000,000", "120000000")
    stored = risk_runs.load_run(store, run_id)
    assert stored["status"] == "done" and stored["inputs"]["lc"] == 300_000_000.0
    book = stored["book"]
    direct = lcs.run(MarginEngine(book), 300_000_000, 120_000_000, suspended_long=long_suspended(store, book))
    assert dock.card_text("elc") == money(direct.elc)
    assert dock.card_text("lcs") == money(round(direct.lcs, 2))
    assert dock.card_text("buffer") == money(round(direct.buffer, 2))
    assert dock.card_text("result") == ("PASS" if direct.passed else "FAIL")
    assert dock.card_text("total_shortfall_30") == money(round(float(direct.shortfall_30.sum()), 2))
    assert dock.card_text("total_shortfall_50") == money(round(float(direct.shortfall_50.sum()), 2))
    assert dock.account_model.rowCount() == len(direct.accounts) > 0

    # the top 10: ten rows ranked by impact, as lcs.run ranks them, pass/fail from the buffer
    rows = dock.top10_rows()
    assert len(rows) == 10
    assert [r["code"] for r in rows] == [t["code"] for t in direct.top10()]
    impacts = [r["impact"] for r in rows]
    assert impacts == sorted(impacts, reverse=True)
    assert all(r["result"] == ("PASS" if r["buffer"] >= 0 else "FAIL") for r in rows)
    assert dock.top10_model.data(dock.top10_model.index(0, 5)) in ("PASS", "FAIL")

    # the selected account's long positions add up to its recognised value
    dock.search.setText(_records(dock.account_model)[0]["account"])
    dock.account_view.selectRow(0)
    acc = dock.selected_account()
    assert acc is not None
    pos = _records(dock.position_model)
    assert pos and sum(p["rv"] for p in pos) == pytest.approx(acc["rv"], abs=0.01)
    assert all(p["r"] == pytest.approx(1 - p["haircut"]) and p["qty"] > 0 for p in pos)
    assert acc["account"] in dock.position_caption.text()


def test_shortfall_list_filters(qtbot: Any, dock: LcsDock) -> None:
    _run(qtbot, dock, "300,000,000", "120,000,000")
    total = dock.account_model.rowCount()
    dock.shortfall_only.setChecked(True)
    n = dock.account_model.rowCount()
    assert 0 < n < total
    assert all(r["shortfall"] > 0 for r in _records(dock.account_model))
    dock.shortfall_only.setChecked(False)
    assert dock.account_model.rowCount() == total


def test_bad_lc_is_refused_inline_naming_lc(qtbot: Any, dock: LcsDock, store: Store) -> None:
    before = len(risk_runs.runs(store, "lcs"))
    dock.lc_edit.setText("3OO million")
    dock.rlc_edit.setText("120,000,000")
    assert dock.validation.isVisible()
    assert "LC must be a number" in dock.validation.text() and "RLC" not in dock.validation.text()
    assert not dock.run_button.isEnabled()
    dock.run_test()  # Enter in the field: still refused, nothing runs
    assert not dock.busy and "LC" in dock.validation.text()
    dock.lc_edit.setText("300,000,000")
    dock.rlc_edit.setText("x")
    assert dock.validation.text().startswith("RLC must be a number")
    dock.rlc_edit.setText("120,000,000")
    assert not dock.validation.isVisible() and dock.run_button.isEnabled()
    assert len(risk_runs.runs(store, "lcs")) == before


def test_history_reopen_rerun_and_export(qtbot: Any, dock: LcsDock, store: Store, tmp_path: Path) -> None:
    first = _run(qtbot, dock, "300,000,000", "120,000,000")
    second = _run(qtbot, dock, "100,000,000", "10,000,000")
    qtbot.waitUntil(lambda: dock.history_model.rowCount() == 2, timeout=WAIT)
    dock.select_history(first)
    with qtbot.waitSignal(dock.shown, timeout=WAIT) as sig:
        dock.open_button.click()
    assert sig.args == [first] and dock.shown_run is not None and dock.shown_run.lc == 300_000_000.0
    lcs_first = dock.card_text("lcs")
    with qtbot.waitSignal(dock.shown, timeout=WAIT) as sig:
        dock.rerun_button.click()
    again = int(sig.args[0])
    assert again not in (first, second) and dock.card_text("lcs") == lcs_first  # the same inputs and book
    qtbot.waitUntil(lambda: dock.history_model.rowCount() == 3, timeout=WAIT)
    out = tmp_path / "lcs.xlsx"
    with qtbot.waitSignal(dock.exported, timeout=WAIT):
        dock.export_selected(str(out))
    wb = load_workbook(out)
    assert wb.sheetnames == ["Summary", "Accounts", "Top 10 stocks"]
    assert wb["Top 10 stocks"].max_row == 11


def test_dock_opens_the_latest_run_when_it_starts(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    run_id = lcs_view.run_and_open(store, RITA, 250e6, 50e6).id
    d = LcsDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.shown, timeout=WAIT) as sig:
        d.set_context(store, RITA, runner)
    assert sig.args == [run_id] and d.lc_edit.text() == "250,000,000" and d.top10_model.rowCount() == 10
    d.stop()


def test_weighting_view_shares_sum_to_100_and_simulates_calls(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    d = IndexDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1400, 700)
    d.show()
    with qtbot.waitSignal(d.weighting.loaded, timeout=WAIT):
        d.tabs.setCurrentWidget(d.weighting)  # the whole-book read starts when the page is shown
    shares = d.weighting.shares()
    assert len(shares) == 3 and sum(shares) == pytest.approx(1.0)
    texts = [d.weighting.level_model.data(d.weighting.level_model.index(i, 2)) for i in range(3)]
    assert sum(float(t.rstrip("%")) for t in texts) == pytest.approx(100.0, abs=0.15)
    declines = d.weighting.declines()
    assert [r["scenario"] for r in declines][0] == "SFC level declines" and len(declines) == 4
    assert d.weighting.chart is not None
    d.weighting.decline_view.selectRow(0)
    with qtbot.waitSignal(d.weighting.simulated, timeout=WAIT) as sig:
        d.weighting.simulate_button.click()
    assert sig.args[0] == declines[0]["accounts_in_call"] == len(d.weighting.call_rows())
    assert sum(r["call_amount"] for r in d.weighting.call_rows()) == pytest.approx(declines[0]["total_call_amount"],
                                                                                   abs=1.0)
    d.stop()


def test_index_dock_initialise_and_membership_are_change_requests(qtbot: Any, store: Store,
                                                                   runner: TaskRunner) -> None:
    from services import changes

    d = IndexDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.show()
    codes = {r["code"] for r in d.index_records()}
    assert {"HSI", "SPX"} <= codes and d.initialise_button.isEnabled()
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.initialise_button.click()
    new = [r for r in d.index_records() if r["new"]]
    assert {r["code"] for r in new} == {"HSCEI", "HSTECH", "HSLI", "HSMI", "NDX", "DJI", "RUI"}
    assert all(r["request"].endswith("(new)") for r in new) and not d.initialise_button.isEnabled()
    assert "submitted" in d.message.text()

    # an existing index selected fills the form; the code is checked inline
    assert d.select_index("HSI")
    assert d.name_edit.text() == "Hang Seng Index" and not d.change_button.isEnabled()
    d.code_edit.setText("SPX")
    assert "already exists" in d.validation.text()

    # a member added through the Members page is a pending index_member request
    d.tabs.setCurrentWidget(d.members)
    d.members.select_index(next(int(r["id"]) for r in d.index_records() if r["code"] == "HSI"))
    outside = next(s["code"] for s in d.snapshot.securities if s["level"] == 3) if d.snapshot else ""
    d.members.code_edit.setText(outside)
    assert "reason" in d.members.validation.text().lower() and not d.members.add_button.isEnabled()
    d.members.reason_edit.setText("joins the HSI")
    assert d.members.add_button.isEnabled()
    with qtbot.waitSignal(d.submitted, timeout=WAIT) as sig:
        d.members.add_button.click()
    req = changes.get(store, int(sig.args[0]))
    assert (req.kind, req.op, req.context["security"]) == ("index_member", "insert", outside)
    qtbot.waitUntil(lambda: any(r["code"] == outside and r["request"] for r in _records(d.members.model)),
                    timeout=WAIT)
    d.members.import_button.click()  # bulk membership: the File ▸ Import dialog on its kind
    assert d.import_dialog is not None and d.import_dialog.kind == "index-members"
    d.import_dialog.close()
    d.stop()
