"""Close call… from the alerts dock and Record fill… on the Liquidation orders dock, on a real SQLite demo
store with a started live monitor (its call writer stores what the GUI does). No sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from app.tasks import TaskRunner
from models import schema as S
from services import liquidation_orders as lo
from services.auth import User
from services.calendar import TradingCalendar, shipped_holidays
from services.live import LiveMonitor
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401
from widgets.alerts_dock import AlertsDock
from widgets.liquidation_orders_dock import LiquidationOrdersDock

RITA = User("rita", "Rita Chan", "risk_officer")
TOM = User("tom", "Tom Lee", "trader")
WAIT = 10_000
CAL = TradingCalendar(d for d, _ in shipped_holidays())


@pytest.fixture
def monitor(store: Store) -> Iterator[LiveMonitor]:
    m = LiveMonitor(store, store.load_book(), calendar=CAL)
    m.start()
    assert m.flush_writes()
    yield m
    m.stop()


@pytest.fixture
def alerts(qtbot: Any, store: Store, runner: TaskRunner, monitor: LiveMonitor) -> Iterator[AlertsDock]:
    d = AlertsDock()
    qtbot.addWidget(d)
    d.set_monitor(monitor)
    d.call_actions.set_context(store, RITA, runner)
    d.resize(1400, 500)
    d.show()
    yield d
    d.stop()


def _open_keys(alerts: AlertsDock) -> list[int]:
    alerts.tick()
    return [int(alerts.model.key_at(r)) for r in range(alerts.model.rowCount())]


def _call_state(store: Store, call_id: int) -> tuple[str, str | None]:
    with store.begin() as conn:
        r = conn.execute(select(S.margin_calls.c.state, S.margin_calls.c.remark).where(
            S.margin_calls.c.id == call_id)).one()
    return r.state, r.remark


def test_close_call_from_the_alerts_dock(qtbot: Any, alerts: AlertsDock, store: Store, monitor: LiveMonitor) -> None:
    alerts.status_filter.setCurrentText("Open calls")
    qtbot.waitUntil(lambda: len(_open_keys(alerts)) > 0, timeout=WAIT)
    keys = _open_keys(alerts)
    alerts.view.selectRow(0)
    a = int(alerts.model.key_at(0))
    assert monitor.tracker.open[a] and alerts.call_actions.account == a
    act = alerts.call_actions.actions["close"]
    assert act.text() == "Close call…" and act in alerts.view.actions() and act.isEnabled()  # context menu too
    alerts.call_actions.dialog = None
    act.trigger()
    qtbot.waitUntil(lambda: alerts.call_actions.dialog is not None and alerts.call_actions.dialog.isVisible(),
                    timeout=WAIT)
    dlg: Any = alerts.call_actions.dialog
    assert dlg.windowTitle() == "Close margin call" and not dlg.ok.isEnabled()
    assert dlg.message.text() == "Remark: say why the call is closed (required)"
    dlg.text_edit.setPlainText("   ")
    assert not dlg.ok.isEnabled()
    dlg.text_edit.setPlainText("Client paid by cheque; cleared tomorrow")
    assert dlg.ok.isEnabled() and dlg.message.text() == ""
    call_id = int(dlg.info["id"])
    with qtbot.waitSignal(alerts.call_actions.changed, timeout=WAIT) as sig:
        dlg.ok.click()
    code = monitor.engine.book.acct_codes[a]
    assert sig.args == [f"{code}'s margin call #{call_id} closed: Client paid by cheque; cleared tomorrow"]
    assert not dlg.isVisible() and not monitor.tracker.open[a]
    assert _call_state(store, call_id) == ("closed", "Client paid by cheque; cleared tomorrow")
    qtbot.waitUntil(lambda: a not in _open_keys(alerts), timeout=WAIT)
    assert len(_open_keys(alerts)) == len(keys) - 1


def test_trader_is_refused_in_the_dialog(qtbot: Any, alerts: AlertsDock, store: Store, runner: TaskRunner,
                                         monitor: LiveMonitor) -> None:
    alerts.call_actions.set_context(store, TOM, runner)
    alerts.status_filter.setCurrentText("Open calls")
    qtbot.waitUntil(lambda: len(_open_keys(alerts)) > 0, timeout=WAIT)
    alerts.view.selectRow(0)
    a = int(alerts.model.key_at(0))
    alerts.call_actions.dialog = None
    alerts.call_actions.actions["close"].trigger()
    qtbot.waitUntil(lambda: alerts.call_actions.dialog is not None, timeout=WAIT)
    dlg: Any = alerts.call_actions.dialog
    dlg.text_edit.setPlainText("I would like this gone")
    dlg.ok.click()
    qtbot.waitUntil(lambda: "may not close margin calls" in dlg.message.text(), timeout=WAIT)
    assert monitor.tracker.open[a] and dlg.isVisible()


@pytest.fixture
def orders(qtbot: Any, store: Store, runner: TaskRunner, monitor: LiveMonitor) -> Iterator[LiquidationOrdersDock]:
    d = LiquidationOrdersDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.set_monitor(monitor)
    d.resize(1500, 500)
    d.show()
    yield d
    d.stop()


def _stored(store: Store, account: str, code: str, ccy: str) -> tuple[float, float]:
    with store.begin() as conn:
        a = conn.execute(select(S.accounts.c.id).where(S.accounts.c.code == account)).scalar_one()
        s = conn.execute(select(S.securities.c.id).where(S.securities.c.code == code)).scalar_one()
        q = conn.execute(select(S.positions.c.qty).where(S.positions.c.account_id == a,
                                                         S.positions.c.security_id == s)).scalar_one()
        c = conn.execute(select(S.cash_balances.c.amount).where(S.cash_balances.c.account_id == a,
                                                                S.cash_balances.c.currency == ccy)).scalar()
    return float(q), float(c or 0.0)


def test_record_fill_on_the_orders_dock(qtbot: Any, orders: LiquidationOrdersDock, store: Store,
                                        monitor: LiveMonitor) -> None:
    rec = next(r for r in lo.list_orders(store) if r["state"] in ("confirmed", "sent") and r["lot_size"] > 1)
    assert orders.select_order(int(rec["id"]))
    assert orders.fill_button.isEnabled()
    orders.fill_dialog = None
    orders.fill_button.click()
    qtbot.waitUntil(lambda: orders.fill_dialog is not None and orders.fill_dialog.isVisible(), timeout=WAIT)
    dlg = orders.fill_dialog
    qty, px, lot = float(rec["qty"]), float(rec["ref_price"]), int(rec["lot_size"])
    assert float(dlg.qty.text()) == qty and dlg.ok.isEnabled()
    dlg.qty.setText(str(lot + 1)) if qty > lot + 1 else dlg.qty.setText(str(qty + 1))
    assert not dlg.ok.isEnabled() and dlg.message.text().startswith("Filled qty:")
    dlg.qty.setText(f"{qty:.0f}")
    dlg.price.setText("0")
    assert not dlg.ok.isEnabled() and dlg.message.text() == "Price: more than 0"
    dlg.price.setText(f"{px:g}")
    assert dlg.ok.isEnabled()
    book = monitor.engine.book
    a, s = book.acct_index[rec["account"]], book.sec_index[rec["code"]]
    cur = int(book.sec_currency[s])
    held0, cash0 = _stored(store, rec["account"], rec["code"], book.currencies[cur])
    with monitor.lock:
        eng_cash0 = float(book.cash[a, cur])
    with qtbot.waitSignal(orders.refreshed, timeout=WAIT):
        dlg.ok.click()
    qtbot.waitUntil(lambda: "filled" in orders.message.text(), timeout=WAIT)
    assert orders.message.text().startswith(f"Order #{rec['id']} filled: sold {qty:,.0f} {rec['code']}")
    held1, cash1 = _stored(store, rec["account"], rec["code"], book.currencies[cur])
    assert held1 == held0 - qty and cash1 == pytest.approx(cash0 + qty * px)
    with monitor.lock:
        row = int(monitor.engine.find_positions(np.array([a]), np.array([s]))[0])
        assert (float(book.pos_qty[row]) if row >= 0 else 0.0) == held1
        assert float(book.cash[a, cur]) == pytest.approx(eng_cash0 + qty * px)
    qtbot.waitUntil(lambda: orders.model.row_of(int(rec["id"])) >= 0, timeout=WAIT)
    got: Any = orders.model.record_at(orders.model.row_of(int(rec["id"])))
    assert (got["state"], got["filled_qty"], got["avg_fill"]) == ("filled", qty, pytest.approx(px))
    assert orders.select_order(int(rec["id"]))  # a filled order is neither filled again nor cancelled
    assert not orders.fill_button.isEnabled() and not orders.cancel_button.isEnabled()
