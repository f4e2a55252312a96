"""The "Positions and collections" and "Currency borrowing" docks on a real SQLite demo store: exercise
one option position through the buttons, propose a borrowing rule through the form (refused inline while
a field is bad, then a four-eyes request), and a manual exchange through the dialog.

No sleeps: every wait is on a signal; the task runner is shut down after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.tasks import TaskRunner
from services import borrowing, changes, options
from services.auth import User
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.borrowing_dock import BorrowingDock, check_rule
from widgets.positions_ops_dock import PositionsOpsDock

RITA = User("rita", "Rita", "risk_officer")
WAIT = 10000


@pytest.fixture
def pdock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[PositionsOpsDock]:
    d = PositionsOpsDock()
    qtbot.addWidget(d)
    d.resize(1300, 700)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    yield d
    d.stop()
    assert runner.wait_all(5.0)


@pytest.fixture
def bdock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[BorrowingDock]:
    d = BorrowingDock()
    qtbot.addWidget(d)
    d.resize(1300, 700)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    yield d
    d.stop()
    assert runner.wait_all(5.0)


def _balance(st: Store, account: str, currency: str) -> float:
    from sqlalchemy import text

    with st.begin() as conn:
        v = conn.execute(text("select b.amount from cash_balances b join accounts a on a.id = b.account_id "
                              "where a.code = :a and b.currency = :c"), {"a": account, "c": currency}).scalar()
    return 0.0 if v is None else float(v)


def test_tabs_are_filled_from_the_demo_store(pdock: PositionsOpsDock) -> None:
    snap = pdock.snapshot
    assert snap is not None and snap.shorts and snap.option_positions and snap.collections
    assert pdock.short_model.rowCount() == len(snap.shorts)
    assert pdock.opt_model.rowCount() == len(snap.option_positions)
    assert pdock.near_model.rowCount() == len(snap.near_expiry) > 0
    assert pdock.client_model.rowCount() > 0  # the first security's short clients
    top = pdock.short_model.record_at(0)
    assert top is not None and top["usage_pct"] == max(r["usage_pct"] or 0 for r in snap.shorts)
    assert pdock.recall_model.rowCount() > 0  # the demo recalled the most over-used stock


def test_exercise_one_option_for_one_client(qtbot: Any, pdock: PositionsOpsDock, store: Store) -> None:
    snap = pdock.snapshot
    assert snap is not None
    pos = next(p for p in snap.option_positions if p["side"] == "long" and p["moneyness"] == "ITM")
    before = _balance(store, pos["account"], pos["currency"])
    pdock.tabs.setCurrentIndex(3)
    assert pdock.select_option(pos["option"], pos["account"])
    with qtbot.waitSignal(pdock.action_done, timeout=WAIT) as sig, qtbot.waitSignal(pdock.refreshed, timeout=WAIT):
        pdock.exercise_client_button.click()
    assert "1 position settled — 1 exercised" in sig.args[0]
    [rec] = [r for r in options.exercise_records(store) if r["option_code"] == pos["option"]]
    # a long call pays K × units, a long put receives it
    sign = -1 if pos["type"] == "call" else 1
    assert rec["account"] == pos["account"] and rec["action"] == "exercised"
    assert rec["cash_change"] == pytest.approx(sign * pos["strike"] * pos["units"])
    assert _balance(store, pos["account"], pos["currency"]) == pytest.approx(before + rec["cash_change"], abs=0.01)
    assert pdock.records_model.rowCount() == 1
    assert not any(p["option"] == pos["option"] and p["account"] == pos["account"]
                   for p in pdock.snapshot.option_positions)  # type: ignore[union-attr]
    # nothing selected: the dock says so and changes nothing
    pdock.opt_view.clearSelection()
    pdock.opt_view.setCurrentIndex(pdock.opt_model.index(-1, -1))
    pdock.exercise_option_button.click()
    assert "Select an option position" in pdock.message.text()


def test_check_rule_pure() -> None:
    assert check_rule("USD", "5,000", "", "policy") == ""
    assert "Currency threshold" in check_rule("USD", "abc", "", "policy")
    assert "Base threshold" in check_rule("USD", "", "-1", "policy")
    assert "or both" in check_rule("USD", "", "", "policy")
    assert "base threshold only" in check_rule("*", "100", "", "policy")
    assert "Reason" in check_rule("USD", "100", "", " ")


def test_propose_a_borrowing_rule(qtbot: Any, bdock: BorrowingDock, store: Store) -> None:
    snap = bdock.snapshot
    assert snap is not None and snap.rules and bdock.match_model.rowCount() == len(snap.matches) > 0
    before = [(r.currency, r.currency_threshold, r.base_threshold, r.enabled) for r in borrowing.rules(store)]
    bdock.currency_combo.setCurrentText("USD")
    bdock.currency_threshold.setText("abc")
    bdock.reason_edit.setText("tighter USD policy")
    assert not bdock.propose_button.isEnabled()
    assert "Currency threshold" in bdock.rule_message.text() and bdock.rule_message.isVisibleTo(bdock)
    bdock.currency_threshold.setText("2,500")
    bdock.base_threshold.setText("")
    assert bdock.propose_button.isEnabled(), bdock.rule_message.text()
    with qtbot.waitSignal(bdock.submitted, timeout=WAIT) as sig, qtbot.waitSignal(bdock.refreshed, timeout=WAIT):
        bdock.propose_button.click()
    req = changes.get(store, int(sig.args[0]))
    assert req.kind == "borrowing_rule" and req.status == "pending"
    assert req.after == {"currency_threshold": 2_500.0, "base_threshold": None, "enabled": True}
    # nothing applies before a checker approves; the rule row shows the pending request
    assert [(r.currency, r.currency_threshold, r.base_threshold, r.enabled) for r in borrowing.rules(store)] == before
    usd = next(r for r in bdock.snapshot.rules if r["currency"] == "USD")  # type: ignore[union-attr]
    assert usd["pending"] == f"pending #{req.id}"
    assert "submitted" in bdock.message.text()


def test_manual_exchange_through_the_dialog(qtbot: Any, bdock: BorrowingDock, store: Store) -> None:
    row = bdock.match_model.record_at(0)
    assert row is not None
    bdock.match_view.selectRow(0)
    dlg = bdock.open_exchange()
    assert dlg is not None and dlg.to_combo.currentText() == row["currency"]
    dlg.amount_edit.setText("-5")
    assert not dlg.ok_button.isEnabled() and "Amount sold" in dlg.message.text()
    dlg.amount_edit.setText("7,800")
    dlg.rate_edit.setText("0.125")  # 7,800 HKD → 975.00 of the currency
    assert dlg.ok_button.isEnabled() and "975.00" in dlg.outcome.text()
    hkd, cur = _balance(store, row["account"], "HKD"), _balance(store, row["account"], row["currency"])
    with qtbot.waitSignal(bdock.action_done, timeout=WAIT), qtbot.waitSignal(bdock.refreshed, timeout=WAIT):
        dlg.ok_button.click()
    assert _balance(store, row["account"], "HKD") == pytest.approx(hkd - 7_800)
    assert _balance(store, row["account"], row["currency"]) == pytest.approx(cur + 975)
    assert bdock.exchange_model.rowCount() == len(borrowing.exchange_history(store))
