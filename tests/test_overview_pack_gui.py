"""The risk overview (home dock) and Export ▸ Risk pack (issue 8): figures a risk officer can check by
hand on a three-account book and on the demo store's own tables; cards open their panel; the pack
dialog builds the chosen sheets in the background, remembers the choice and leaves nothing behind
when cancelled."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openpyxl import load_workbook
from PySide6.QtCore import QSettings, Qt
from sqlalchemy import func, insert, select

from app.tasks import TaskCancelled, TaskRunner
from models import schema as S
from services import overview, risk_runs
from services.auth import User
from services.margin import MarginEngine
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from tests.test_margin_formulas import _acct, make_book
from widgets.overview_dock import OverviewDock
from widgets.pack_dialog import PackDialog, _build, saved_sheets

RITA = User("rita", "Rita", "risk_officer")
WAIT = 20_000


def _by_key(figures: list[overview.Figure]) -> dict[str, overview.Figure]:
    return {f.key: f for f in figures}


def test_live_figures_on_a_book_checked_by_hand() -> None:
    # M1: 2,000 A.HK at 100 = 200,000 MV, IM 50% = 100,000; cash −150,000 → equity 50,000 < IM: a call;
    #     loan 150,000 over its 100,000 limit.  M2: 1,000 A.HK, cash −50,000 → equity 50,000 = IM: safe.
    # M3: cash only.  Loans: 150,000 + 50,000 = 200,000.
    book = make_book([_acct("M1", -150_000), _acct("M2", -50_000), _acct("M3", 10_000)],
                     [("M1", "A.HK", 2000), ("M2", "A.HK", 1000)])
    e = MarginEngine(book)
    f = _by_key(overview.live_figures(e, np.array([True, False, False, False]), "live"))
    assert f["loans"].value == pytest.approx(200_000)
    assert f["loans"].display == "200,000"
    assert f["calls"].value == 1 and f["calls"].level in ("warn", "bad")
    assert f["call_amount"].value == pytest.approx(float(e.call_amount.sum())) and float(e.call_amount.sum()) > 0
    assert f["over_limit"].value == 1 and f["over_limit"].level == "warn" and f["over_limit"].dock == "credit"
    assert f["stale"].value == 1 and f["stale"].dock == "feed"
    assert f["feed"].display == "live" and f["feed"].level == "ok"
    assert _by_key(overview.live_figures(e, None, "stale"))["feed"].level == "bad"


def test_store_figures_count_what_the_tables_hold(store: Store) -> None:
    before = _open_incidents_before(store)
    with store.begin() as conn:
        pending = conn.execute(select(func.count()).select_from(S.change_requests)
                               .where(S.change_requests.c.status == "pending")).scalar_one()
        conn.execute(insert(S.incidents), [
            {"title": "Feed outage", "detected_by": "ops", "detected_at": datetime.now(UTC), "severity": 2,
             "state": "contain", "created_by": "ops"},
            {"title": "Old", "detected_by": "ops", "detected_at": datetime.now(UTC), "severity": 4,
             "state": "closed", "created_by": "ops"}])
    f = _by_key(overview.store_figures(store))
    assert f["approvals"].value == pending and f["approvals"].dock == "approvals"
    assert f["incidents"].value == before + 1
    assert f["incidents"].level == "bad"  # a SEV-2 is open
    assert f["lcs_buffer"].display == "no test yet" or f["lcs_buffer"].value is not None
    run_id = risk_runs.run_lcs(store, RITA, 300_000_000, 120_000_000)
    summary = risk_runs.load_run(store, run_id)["summary"]
    f = _by_key(overview.store_figures(store))
    assert f["lcs_buffer"].value == pytest.approx(summary["buffer"])
    assert f["lcs_buffer"].level == ("ok" if summary["pass"] else "bad")
    assert f"#{run_id}" in f["lcs_buffer"].hint


def _open_incidents_before(store: Store) -> int:
    with store.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(S.incidents)
                                .where(S.incidents.c.state != "closed")).scalar_one())


def test_overview_dock_cards_open_their_panel(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    d = OverviewDock()
    qtbot.addWidget(d)
    d.set_context(store, RITA, runner)
    qtbot.waitUntil(lambda: "approvals" in d.cards, timeout=WAIT)
    d.show()
    card = d.cards["approvals"]
    assert card.value.text() == f"{int(d.figures['approvals'].value or 0):,}"
    with qtbot.waitSignal(d.open_dock, timeout=2000) as sig:
        qtbot.mouseClick(card, Qt.MouseButton.LeftButton)
    assert sig.args == ["approvals"]
    card.setFocus()
    with qtbot.waitSignal(d.open_dock, timeout=2000) as sig:
        qtbot.keyClick(card, Qt.Key.Key_Return)
    assert sig.args == ["approvals"]
    d.stop()


def test_pack_dialog_builds_the_chosen_sheets_and_remembers_them(qtbot: Any, store: Store, runner: TaskRunner,
                                                                 tmp_path: Path) -> None:
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    dlg = PackDialog(store, RITA, runner, settings=settings)
    qtbot.addWidget(dlg)
    dlg._set_all(False)
    assert not dlg.build_btn.isEnabled() and "at least one sheet" in dlg.message.text()
    dlg.checks["cover"].setChecked(True)
    dlg.checks["margin_calls"].setChecked(True)
    dlg.path.setText(str(tmp_path / "nowhere" / "p.xlsx"))
    assert not dlg.build_btn.isEnabled() and "No such folder" in dlg.message.text()
    dlg.path.setText(str(tmp_path / "p.csv"))
    assert ".xlsx" in dlg.message.text()
    out = tmp_path / "pack.xlsx"
    dlg.path.setText(str(out))
    assert dlg.build_btn.isEnabled()
    dlg.start()
    qtbot.waitUntil(lambda: dlg.counts is not None, timeout=WAIT)
    wb = load_workbook(out, read_only=True)
    assert wb.sheetnames == ["Cover", "Margin calls"]
    with store.begin() as conn:
        open_calls = conn.execute(select(func.count()).select_from(S.margin_calls)
                                  .where(S.margin_calls.c.state == "open")).scalar_one()
    assert dlg.counts is not None and dlg.counts["Margin calls"] == open_calls
    assert list(dlg.counts) == ["Cover", "Margin calls"] and dlg.counts["Cover"] >= 10
    assert "2 sheet(s)" in dlg.message.text()
    assert saved_sheets(settings) == ["cover", "margin_calls"]
    again = PackDialog(store, RITA, runner, settings=settings)
    qtbot.addWidget(again)
    assert [n for n, cb in again.checks.items() if cb.isChecked()] == ["cover", "margin_calls"]


class _CancelledTask:
    def check(self) -> None:
        raise TaskCancelled()

    def progress(self, f: float, text: str) -> None:
        raise AssertionError("progress after cancel")


def test_cancelled_pack_leaves_no_file(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(TaskCancelled):
        _build(store, None, str(folder / "pack.xlsx"), "rita", ["cover", "audit"], _CancelledTask())
    assert list(folder.iterdir()) == []
