"""The RCSA and new-business review docks on a real SQLite demo store: a heat-map cell click filters
the register to that cell's risks, the add / rescore forms check as you type, and a proposal is taken
through the risk assessment (with a stress run attached) and vetoed by the committee in the dock.

No sleeps: every wait is on a signal or a condition; the task runner is shut down after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import Qt

from app.tasks import TaskRunner
from services import rcsa, risk_runs, stress
from services.auth import User
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.nb_review_dock import NbReviewDock
from widgets.rcsa_dock import RcsaDock
from widgets.rcsa_heatmap import score_colour

RITA, CORA = User("rita", "Rita", "risk_officer"), User("cora", "Cora", "cro")
TOM = User("tom", "Tom", "trader")
WAIT = 8000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[RcsaDock]:
    d = RcsaDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1400, 700)
    d.show()
    yield d
    d.stop()


def _click_cell(qtbot: Any, d: RcsaDock, likelihood: int, impact: int) -> None:
    t = d.heat.table
    item = t.item(*d.heat.cell_of(likelihood, impact))
    assert item is not None
    qtbot.mouseClick(t.viewport(), Qt.MouseButton.LeftButton, pos=t.visualItemRect(item).center())


def test_heat_map_cell_click_filters_the_register(qtbot: Any, dock: RcsaDock, store: Store) -> None:
    rows = rcsa.risks(store)
    assert dock.model.rowCount() == len(rows) >= 18
    grid = rcsa.heat_map(rows)
    lk, im = (int(x) + 1 for x in divmod(int(grid.argmax()), 5))  # the fullest cell
    want = sorted(r["id"] for r in rcsa.in_cell(rows, lk, im))
    assert dock.heat.count(lk, im) == len(want) >= 1
    item = dock.heat.table.item(*dock.heat.cell_of(lk, im))
    assert item is not None and item.text() == str(len(want))
    _click_cell(qtbot, dock, lk, im)
    assert dock.cell == (lk, im)
    assert sorted(dock.visible_ids()) == want
    assert dock.count_label.text() == f"{len(want)} of {len(rows)} risks"
    assert dock.cell_label.text().startswith(f"Cell L{lk} × I{im} = {lk * im}")
    empty = next((a, b) for a in range(1, 6) for b in range(1, 6) if grid[a - 1, b - 1] == 0)
    _click_cell(qtbot, dock, *empty)
    assert dock.visible_ids() == [] and dock.heat.count(*empty) == 0
    _click_cell(qtbot, dock, *empty)  # the same cell again: every cell
    assert dock.cell is None and dock.model.rowCount() == len(rows)
    dock.priority_filter.setCurrentText("High")
    high = [r["id"] for r in rows if r["score"] >= 10]
    assert sorted(dock.visible_ids()) == sorted(high)
    assert int(sum(grid[a - 1, b - 1] for a in range(1, 6) for b in range(1, 6) if a * b >= 10)) == len(high)
    owner = rows[0]["owner"]
    dock.owner_filter.setCurrentText(owner)
    assert sorted(dock.visible_ids()) == sorted(r["id"] for r in rows if r["score"] >= 10 and r["owner"] == owner)
    assert dock.count_label.text().startswith(f"{len(dock.visible_ids())} of {len(rows)}")


@pytest.mark.parametrize(("score", "band"), [(1, "Low"), (4, "Low"), (5, "Medium"), (9, "Medium"), (10, "High"),
                                              (25, "High")])
def test_heat_map_colour_follows_the_priority_band(score: int, band: str) -> None:
    hue = score_colour(score).hsvHueF()
    assert {"Low": hue > 0.25, "Medium": 0.08 < hue < 0.15, "High": hue < 0.07}[band]
    assert rcsa.priority(score) == band


def test_add_and_rescore_checked_as_you_type(qtbot: Any, dock: RcsaDock, store: Store) -> None:
    n = dock.model.rowCount()
    qtbot.keyClicks(dock.title_edit, "Custodian insolvency")
    qtbot.keyClicks(dock.owner_edit, "Head of Operations")
    qtbot.keyClicks(dock.lk_edit, "7")
    qtbot.keyClicks(dock.im_edit, "5")
    assert not dock.add_button.isEnabled() and "likelihood must be a whole number 1–5" in dock.hint.text()
    dock.lk_edit.setText("2")
    assert dock.add_button.isEnabled() and dock.add_preview.text() == "score 10 · High"
    before = dock.heat.count(2, 5)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        qtbot.mouseClick(dock.add_button, Qt.MouseButton.LeftButton)
    assert dock.model.rowCount() == n + 1 and dock.heat.count(2, 5) == before + 1
    new = next(r for r in rcsa.risks(store) if r["title"] == "Custodian insolvency")
    assert (new["score"], new["priority"], new["created_by"]) == (10, "High", "rita")
    # rescore it down to 1 × 4
    dock.select_risk(new["id"])
    dock.forms.setCurrentIndex(1)
    assert dock.new_lk.text() == "2" and not dock.rescore_button.isEnabled()
    dock.new_lk.setText("1")
    dock.new_im.setText("4")
    assert not dock.rescore_button.isEnabled() and "reason" in dock.hint.text()
    qtbot.keyClicks(dock.reason_edit, "sub-custodian replaced")
    assert dock.rescore_button.isEnabled() and dock.rescore_preview.text() == "score 4 · Low"
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        qtbot.mouseClick(dock.rescore_button, Qt.MouseButton.LeftButton)
    row = next(r for r in rcsa.risks(store) if r["id"] == new["id"])
    assert (row["likelihood"], row["impact"], row["priority"], row["version"]) == (1, 4, "Low", 2)
    assert dock.heat.count(2, 5) == before and dock.heat.count(1, 4) >= 1


def test_traders_see_the_register_but_cannot_edit(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    d = RcsaDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, TOM, runner)
    d.title_edit.setText("x")
    d.owner_edit.setText("y")
    d.lk_edit.setText("3")
    d.im_edit.setText("3")
    assert d.model.rowCount() > 0 and not d.add_button.isEnabled()
    assert "Risk officer" in d.add_button.toolTip()
    d.stop()


def _board(qtbot: Any, store: Store, runner: TaskRunner, user: User) -> NbReviewDock:
    d = NbReviewDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, user, runner)
    d.resize(1400, 700)
    d.show()
    return d


def test_advance_a_proposal_through_the_dock(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    sc = stress.load_scenario(stress.SCENARIO_DIR / "market_down_30.json")
    run_id = risk_runs.run_stress(store, RITA, sc)
    pid = next(p.id for p in rcsa.proposals(store) if p.stage == "risk")
    d = _board(qtbot, store, runner, RITA)
    assert d.model.rowCount() == len(rcsa.proposals(store)) == 3
    d.select_proposal(pid)
    assert d.current() is not None and d.current().id == pid  # type: ignore[union-attr]
    assert d.action_button.text() == "Complete risk assessment" and not d.action_button.isEnabled()
    assert "Risk officer or CRO" in d.action_button.toolTip()
    assert d.run_combo.findData(run_id) >= 0 and d.attach_button.isEnabled()
    d.run_combo.setCurrentIndex(d.run_combo.findData(run_id))
    with qtbot.waitSignal(d.acted, timeout=WAIT):
        qtbot.mouseClick(d.attach_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: rcsa.proposal(store, pid).stress_run_id == run_id, timeout=WAIT)
    qtbot.keyClicks(d.note_edit, "Within appetite under a 30% fall; cap at 500m")
    assert d.action_button.isEnabled()
    with qtbot.waitSignal(d.acted, timeout=WAIT):
        qtbot.mouseClick(d.action_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: d.current() is not None and d.current().stage == "committee", timeout=WAIT)  # type: ignore[union-attr]
    assert rcsa.proposal(store, pid).stage == "committee"
    # the risk officer now sees Approve / Veto but may not use them
    assert d.approve_button.isVisibleTo(d) and not d.approve_button.isEnabled()
    assert "CRO" in d.veto_button.toolTip() and not d.note_edit.isEnabled()
    qtbot.waitUntil(lambda: "risk_done" in d.detail.toPlainText(), timeout=WAIT)  # the audited history
    assert f"Stress run: #{run_id}" in d.detail.toPlainText()
    d.stop()

    c = _board(qtbot, store, runner, CORA)
    c.select_proposal(pid)
    assert c.veto_button.isVisibleTo(c) and not c.veto_button.isEnabled()  # the note is mandatory
    assert "note is required" in c.veto_button.toolTip()
    qtbot.keyClicks(c.note_edit, "Liquidity of Connect collateral too thin")
    assert c.veto_button.isEnabled() and c.approve_button.isEnabled()
    with qtbot.waitSignal(c.acted, timeout=WAIT):
        qtbot.mouseClick(c.veto_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: c.current() is not None and c.current().stage == "vetoed", timeout=WAIT)  # type: ignore[union-attr]
    p = rcsa.proposal(store, pid)
    assert p.stage == "vetoed" and p.step("committee") is not None
    assert [(s["step"], s["actor"]) for s in p.steps][-2:] == [("risk", "rita"), ("committee", "cora")]
    text = c.detail.toPlainText()
    assert "Committee decision — VETOED · cora" in text and "Liquidity of Connect collateral too thin" in text
    assert not c.veto_button.isVisibleTo(c) or not c.veto_button.isEnabled()
    assert not c.action_button.isEnabled() and "Closed: vetoed" in c.who_label.text()
    assert [h["action"] for h in rcsa.history(store, pid)][-3:] == ["attach_stress_run", "risk_done", "vetoed"]
    c.stop()
