"""The Liquidate dialog and the Liquidation orders dock on a real SQLite demo store with a live engine.

Open the dialog for an account in call: its proposal is the service's, restoring IM; a quantity typed
into the Sell qty cell that breaks the lot size disables Confirm with the message naming the line;
back to whole lots, a reason, Confirm → the orders are in the dock; Cancel order… with a reason →
cancelled in the dock and the store. Batch liquidation is disabled with a tooltip while the company
parameter is 0; the scheduler runs the automatic liquidation once a day. No sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.tasks import TaskRunner
from services import liquidation_orders as lo
from services.auth import User
from services.calendar import HK_TZ
from services.liquidation import account_for_liquidation, propose
from services.live import LiveMonitor
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.liquidation_dialog import LiquidationDialog, open_liquidation
from widgets.liquidation_orders_dock import LiquidationOrdersDock

RITA = User("rita", "Rita Chan", "risk_officer")
WAIT = 5000


@pytest.fixture
def monitor(store: Store) -> LiveMonitor:
    return LiveMonitor(store, store.load_book(), persist_calls=False)  # not started: no threads


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner, monitor: LiveMonitor) -> Iterator[LiquidationOrdersDock]:
    d = LiquidationOrdersDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.set_monitor(monitor)
    d.resize(1400, 600)
    d.show()
    yield d
    d.stop()


def _fresh_call_account(store: Store, monitor: LiveMonitor) -> tuple[int, Any]:
    """An account with an open call, no liquidation orders yet, and a proposal line whose lot is > 1."""
    taken = {r["account"] for r in lo.list_orders(store)}
    for call in lo.open_calls(store):
        if call["account"] in taken:
            continue
        a = monitor.engine.book.acct_index[call["account"]]
        acct = account_for_liquidation(monitor.engine, a)
        lines = propose(acct)
        if any(acct.lot[acct.row[x.code]] > 1 and x.qty > acct.lot[acct.row[x.code]] for x in lines):
            return a, call
    raise AssertionError("the demo store has no open call to liquidate")


def _open(qtbot: Any, dock: LiquidationOrdersDock, a: int) -> LiquidationDialog:
    holder = QWidget()  # stands in for the main window: it has the catalogue the alerts dock asks
    holder.catalogue = {"liquidation_orders": dock}  # type: ignore[attr-defined]
    child = QWidget(holder)
    QVBoxLayout(holder).addWidget(child)
    qtbot.addWidget(holder)
    dialog = open_liquidation(child, a)
    assert isinstance(dialog, LiquidationDialog)
    if dialog.acct is None:
        qtbot.waitSignal(dialog.loaded, timeout=WAIT).wait()
    return dialog


def test_edit_confirm_and_cancel(qtbot: Any, dock: LiquidationOrdersDock, store: Store, monitor: LiveMonitor) -> None:
    a, call = _fresh_call_account(store, monitor)
    dock._catch_up.stop()
    dialog = _open(qtbot, dock, a)
    qtbot.waitUntil(lambda: dialog.acct is not None, timeout=WAIT)
    acct = dialog.acct
    assert acct is not None and acct.account == call["account"]
    expected = propose(account_for_liquidation(monitor.engine, a))
    assert [(x.code, x.qty) for x in dialog.lines.values()] == [(x.code, x.qty) for x in expected]
    assert dialog.effect is not None and dialog.effect.restores
    assert f"Margin call #{call['id']}" in dialog.call_label.text()
    assert dialog.blocked_reason() == "enter a reason" and not dialog.confirm_button.isEnabled()

    # a quantity breaking the lot size, typed into the Sell qty cell
    row = next(r for r in range(dialog.model.rowCount())
               if (rec := dialog.model.record_at(r)) and rec["lot"] > 1 and rec["qty"] > rec["lot"])
    rec = dialog.model.record_at(row)
    assert rec is not None
    bad = rec["qty"] - rec["lot"] + 1
    col = dialog.model.column_of("Sell qty")
    assert dialog.model.setData(dialog.model.index(row, col), f"{bad:.0f}")
    dialog.reason.setText("Client unreachable since the call")
    assert not dialog.confirm_button.isEnabled()
    why = dialog.confirm_button.toolTip()
    assert why.startswith(f"line {row + 1} ({rec['code']}): {bad:,.0f} is not a whole number of lots of ")
    assert dialog.message.text() == why and dialog.message.isVisibleTo(dialog)
    dialog.grab().save("/tmp/liquidation_dialog_invalid.png")
    # one lot short: valid lots but IM no longer restored → a partial liquidation has to be accepted
    assert dialog.model.setData(dialog.model.index(row, col), f"{rec['qty'] - rec['lot']:.0f}")
    assert dialog.effect.valid and not dialog.effect.restores
    assert not dialog.confirm_button.isEnabled() and dialog.partial.isVisibleTo(dialog)
    assert dialog.confirm_note.text() == "Confirm is disabled: the orders do not restore IM: accept a partial liquidation"
    assert "no longer restore IM" in dialog.message.text()
    # back to the proposal's quantity: IM restored, Confirm enabled
    assert dialog.model.setData(dialog.model.index(row, col), f"{rec['qty']:,.0f}")
    assert dialog.effect.restores and dialog.confirm_button.isEnabled()
    dialog.grab().save("/tmp/liquidation_dialog.png")

    with qtbot.waitSignal(dialog.confirmed, timeout=WAIT) as got, qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dialog.confirm_button.click()
    ids = got.args[0]
    assert len(ids) == len(expected)
    shown = {r["id"]: r for r in (dock.model.record(i) for i in ids) if r is not None}
    assert sorted((r["account"], r["code"], r["qty"], r["state"], r["call_id"]) for r in shown.values()) == sorted(
        (call["account"], x.code, x.qty, "confirmed", call["id"]) for x in expected)

    # cancel one of them with a reason
    assert dock.select_order(ids[0])
    assert dock.cancel_button.isEnabled()
    d = dock.ask_cancel()
    assert d is not None and not d.ok.isEnabled()
    d.reason.setText("Client transferred the funds at 11:05")
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        d.ok.click()
    qtbot.waitUntil(lambda: (dock.model.record(ids[0]) or {}).get("state") == "cancelled", timeout=WAIT)
    row_state = [r for r in lo.list_orders(store, account=call["account"]) if r["id"] == ids[0]][0]
    assert (row_state["state"], row_state["cancel_reason"]) == ("cancelled", "Client transferred the funds at 11:05")
    assert not dock.cancel_button.isEnabled()
    dock.grab().save("/tmp/liquidation_orders_dock.png")


def test_batch_disabled_with_tooltip_and_auto_schedule(qtbot: Any, dock: LiquidationOrdersDock, store: Store) -> None:
    assert dock.settings is not None and not dock.settings.batch_enabled
    assert not dock.batch_button.isEnabled()
    assert "batch_liquidation_enabled is 0" in dock.batch_button.toolTip()
    assert dock.open_batch() is None and "disabled" in dock.message.text()
    assert "on at 10:00 HK time" in dock.auto_label.text()
    # the scheduler: not before the time; once at or after it on a trading day, then not again that day
    day = datetime(2026, 12, 2, tzinfo=HK_TZ)  # a Wednesday, trading day
    dock._catch_up.stop()
    assert not dock.check_schedule(day.replace(hour=9, minute=59).timestamp())
    with qtbot.waitSignal(dock.auto_ran, timeout=WAIT) as got:
        assert dock.check_schedule(day.replace(hour=10, minute=1).timestamp())
    assert got.args[0].ran
    qtbot.waitUntil(lambda: not dock._load.busy, timeout=WAIT)
    assert not dock.check_schedule(day.replace(hour=14).timestamp())
    assert lo.settings(store).last_run is not None


def test_batch_liquidation_after_approval(qtbot: Any, dock: LiquidationOrdersDock, store: Store,
                                          monitor: LiveMonitor) -> None:
    from PySide6.QtCore import QItemSelectionModel

    from services import changes

    rid = changes.submit(store, RITA, "company_parameter", {"name": "batch_liquidation_enabled"}, {"value": 1.0},
                         "Month-end clean-up of open calls")
    assert changes.approve(store, User("sam", "Sam Wong", "supervisor"), rid, "agreed") == "approved"
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    assert dock.batch_button.isEnabled()
    taken = {r["account"] for r in lo.list_orders(store)}
    d = dock.open_batch()
    assert d is not None
    qtbot.waitUntil(lambda: d.calls.rowCount() > 0, timeout=WAIT)
    rows = [r for r in range(d.calls.rowCount()) if (rec := d.calls.record_at(r)) and rec["account"] not in taken][:3]
    sel = d.calls_view.selectionModel()
    for r in rows:
        sel.select(d.calls.index(r, 0), QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
    picked = [d.calls.record_at(r)["account"] for r in rows]  # type: ignore[index]
    assert len(picked) == 3 and d.propose_button.isEnabled()
    with qtbot.waitSignal(d.proposed, timeout=WAIT):
        d.propose_button.click()
    assert sorted(i.account for i in d.items) == sorted(picked)
    for item in d.items:  # the same numbers as one account at a time
        acct = account_for_liquidation(monitor.engine, monitor.engine.book.acct_index[item.account])
        assert [(o.code, o.qty) for o in item.orders] == [(x.code, x.qty) for x in propose(acct)]
    assert d.blocked_reason() == "enter a reason" and not d.confirm_button.isEnabled()
    d.reason.setText("month-end")
    d.grab().save("/tmp/batch_liquidation_dialog.png")
    n = sum(len(i.orders) for i in d.items)
    with qtbot.waitSignal(d.confirmed, timeout=WAIT) as got, qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        d.confirm_button.click()
    assert len(got.args[0]) == n
    assert {r["account"] for r in lo.list_orders(store) if r["reason"] == "batch: month-end"} == set(picked)
    d.close()


def test_alerts_dock_liquidate_action_opens_the_dialog(qtbot: Any, dock: LiquidationOrdersDock, store: Store,
                                                       monitor: LiveMonitor) -> None:
    from widgets.alerts_dock import AlertsDock

    holder = QWidget()
    holder.catalogue = {"liquidation_orders": dock}  # type: ignore[attr-defined]
    alerts = AlertsDock(holder)
    QVBoxLayout(holder).addWidget(alerts)
    qtbot.addWidget(holder)
    alerts.set_monitor(monitor)
    try:
        assert alerts.liquidate_action in alerts.view.actions()  # the table's context menu
        qtbot.waitUntil(lambda: alerts.model.rowCount() > 0, timeout=WAIT)
        alerts.view.selectRow(0)
        code = monitor.engine.book.acct_codes[alerts.model.key_at(0)]
        alerts.liquidate_action.trigger()
        assert len(dock.dialogs) == 1
        d = dock.dialogs[0]
        qtbot.waitUntil(lambda: d.acct is not None, timeout=WAIT)
        assert d.acct.account == code and d.windowTitle() == f"Liquidate {code}"
        d.close()
    finally:
        alerts.stop()
