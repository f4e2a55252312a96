"""The short-sell dock on a real SQLite demo store: securities listed with search and filter, bad
thresholds refused inline with nothing submitted, a valid rule going through four eyes, and an
inventory drop below closure shown as auto-prohibited with its history event.

No sleeps: every wait is on a signal or a condition; the task runner is shut down after each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.tasks import TaskRunner
from services import changes, short_sell
from services.auth import User
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, must, runner, store  # noqa: F401 (fixtures)
from widgets.short_sell_dock import ShortSellDock, validate_rule

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
WAIT = 5000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[ShortSellDock]:
    d = ShortSellDock()
    qtbot.addWidget(d)
    d.resize(1200, 620)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    yield d
    d.stop()
    assert runner.wait_all(5.0)


def _pending_rules(store: Store) -> list[changes.ChangeRequest]:
    return [r for r in changes.listing(store, status="pending") if r.kind == "short_sell_rule"]


def _select(qtbot: Any, d: ShortSellDock, code: str) -> None:
    with qtbot.waitSignal(d.history_loaded, timeout=WAIT, check_params_cb=lambda c: c == code):
        assert d.select_code(code)
    assert d.code == code


def _fill(d: ShortSellDock, closure: str, recovery: str, reason: str = "lending desk rule",
          status: str = "sellable") -> None:
    d.status_combo.setCurrentText(status)
    d.closure_edit.setText(closure)
    d.recovery_edit.setText(recovery)
    d.reason_edit.setText(reason)


def test_validate_rule_pure() -> None:
    assert validate_rule("10,000", "50000") == ((10_000.0, 50_000.0), "")
    assert validate_rule("", "") == ((None, None), "")
    assert validate_rule("10", "10")[0] == (10.0, 10.0)
    assert "at least the closure" in validate_rule("500", "100")[1]
    assert "≥ 0" in validate_rule("-1", "5")[1]
    assert "not a number" in validate_rule("abc", "5")[1]
    assert "both thresholds" in validate_rule("5", "")[1]


def test_lists_securities_with_search_and_filter(qtbot: Any, dock: ShortSellDock, store: Store) -> None:
    n = len(short_sell.statuses(store))
    assert n > 0 and dock.model.rowCount() == n
    code = sorted(short_sell.statuses(store))[0]
    rec = dock.row(code)
    assert rec is not None and rec["effective"] == "sellable"
    status_col = dock.model.column_of("Status")
    assert dock.model.index(0, status_col).data() in ("sellable", "prohibited", "auto-prohibited")
    dock.search_edit.setText(code)
    assert 1 <= dock.model.rowCount() < n
    assert all(code.lower() in must(dock.model.record_at(r))["code"].lower() for r in range(dock.model.rowCount()))
    dock.search_edit.clear()
    dock.filter_combo.setCurrentIndex(1)  # not sellable: nothing in the fresh demo store
    assert dock.model.rowCount() == 0
    dock.filter_combo.setCurrentIndex(0)
    assert dock.model.rowCount() == n


def test_invalid_thresholds_refused_inline(qtbot: Any, dock: ShortSellDock, store: Store) -> None:
    code = sorted(short_sell.statuses(store))[0]
    _select(qtbot, dock, code)
    _fill(dock, "50000", "10000")  # recovery < closure
    assert not dock.submit_button.isEnabled()
    assert "at least the closure" in dock.validation.text() and dock.validation.isVisibleTo(dock)
    dock.submit()
    _fill(dock, "-5", "100")  # negative
    assert not dock.submit_button.isEnabled()
    assert "≥ 0" in dock.validation.text()
    dock.submit()
    _fill(dock, "10000", "50000", reason="")  # valid numbers, no reason
    assert not dock.submit_button.isEnabled()
    dock.submit()
    assert runner_idle(dock)
    assert _pending_rules(store) == []


def runner_idle(d: ShortSellDock) -> bool:
    assert d.tasks is not None
    return d.tasks.wait_all(5.0) and d._submit_task is None


def test_rule_through_four_eyes_then_auto_prohibit(qtbot: Any, dock: ShortSellDock, store: Store,
                                                     tmp_path: Path) -> None:
    code = sorted(short_sell.statuses(store))[0]
    _select(qtbot, dock, code)
    _fill(dock, "10,000", "50,000")
    assert dock.submit_button.isEnabled(), dock.validation.text()
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig, qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.submit_button.click()
    rid = int(sig.args[0])
    req = changes.get(store, rid)
    assert req.kind == "short_sell_rule" and req.status == "pending"
    assert req.after == {"status": "sellable", "closure_threshold": 10_000.0, "recovery_threshold": 50_000.0}
    assert f"#{rid}" in dock.message.text() and "awaiting approval" in dock.message.text()
    assert must(dock.row(code))["pending"] == f"pending #{rid}"
    assert not dock.submit_button.isEnabled()  # one pending request per security
    assert short_sell.statuses(store)[code].closure is None  # nothing applied before approval

    assert changes.approve(store, SAM, rid) == "approved"
    assert short_sell.update_inventory(store, {code: 5_000}) == [(code, "auto_prohibit", 5_000)]
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    qtbot.waitUntil(lambda: dock.history_events() == ["auto_prohibit"], timeout=WAIT)  # its own read
    rec = dock.row(code)
    assert rec is not None and rec["effective"] == "auto-prohibited" and rec["pending"] == ""
    assert rec["closure"] == 10_000 and rec["inventory"] == 5_000
    row = dock.model.row_of(dock.keys[code])
    assert dock.model.index(row, dock.model.column_of("Status")).data() == "auto-prohibited"
    assert dock.history_model.index(0, 1).data() == "auto-prohibit"
    dock.filter_combo.setCurrentIndex(1)
    assert [must(dock.model.record_at(r))["code"] for r in range(dock.model.rowCount())] == [code]
    dock.filter_combo.setCurrentIndex(0)
    dock.select_code(code)
    shot = tmp_path / "short_sell_dock.png"
    assert dock.grab().save(str(shot))
    if os.environ.get("RISKDESK_SCREENSHOT"):  # keep a copy to look at
        assert dock.grab().save(os.environ["RISKDESK_SCREENSHOT"])
