"""GUI: a loss event entered through the form (checked as you type, route and duty shown before saving)
and listed with its route; a notification-matrix edit becomes a change request; the charts draw the
snapshot's figures; a trade-error ticket created through the form with its computed severity, signed off
by role, and the monthly report run and exported in the background."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from PySide6.QtCore import QDate, QDateTime, Qt, QTime

from services import changes
from services import trade_errors as te
from services.auth import User
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401
from widgets.loss_events_dock import LossEventsDock
from widgets.trade_errors_dock import TradeErrorsDock

RITA = User("rita", "Rita Chan", "risk_officer")
OLGA = User("olga", "Olga Lam", "operations")
SAM = User("sam", "Sam Wong", "supervisor")


def _loss_dock(qtbot: Any, store: Store, runner: Any, user: User = RITA) -> LossEventsDock:
    dock = LossEventsDock()
    qtbot.addWidget(dock)
    dock.resize(1400, 700)
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        dock.set_context(store, user, runner)
    return dock


def test_loss_event_entered_through_the_form_is_listed_with_its_route(qtbot: Any, store: Store, runner: Any) -> None:
    dock = _loss_dock(qtbot, store, runner)
    before = dock.model.rowCount()
    assert before > 50  # the demo year
    f = dock.form
    dock.tabs.setCurrentWidget(f)
    f.event_type.setCurrentText("External Fraud")
    f.business_line.setCurrentText("Retail Brokerage")
    f.cause.setCurrentIndex(f.cause.findData("external"))
    today = QDate.currentDate()
    f.occurred.setDate(today.addDays(-1))
    f.discovered.setDateTime(QDateTime(today, QTime(0, 5)))
    qtbot.keyClicks(f.gross, "120,000")
    qtbot.keyClicks(f.recoveries, "130000")
    assert not f.save_button.isEnabled() and f.message.text().startswith("Recoveries:")
    f.recoveries.clear()
    qtbot.keyClicks(f.recoveries, "20000")
    assert f.message.text().startswith("Description:") and not f.save_button.isEnabled()
    qtbot.keyClicks(f.description, "Account takeover: withdrawal to a third-party account")
    assert f.save_button.isEnabled() and not f.message.isVisible()
    assert f.net_label.text().startswith("100,000.00 HKD")
    assert f.route_label.text() == "Department head, CRO, Senior management and Risk Committee within 24 h"
    assert f.duty_label.text().startswith("FINRA 4530(b)-style statistical report (due ")
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        qtbot.mouseClick(f.save_button, Qt.MouseButton.LeftButton)
    assert "recorded" in f.message.text()
    assert dock.model.rowCount() == before + 1
    dock.set_filters(event_type="External Fraud", near="loss")
    rows = [dock.model.record_at(r) for r in range(dock.model.rowCount())]
    mine = [r for r in rows if r and r["description"].startswith("Account takeover: withdrawal")]
    assert len(mine) == 1 and all(r and r["event_type"] == "External Fraud" for r in rows)
    assert mine[0]["reporting_route"] == "Department head, CRO, Senior management and Risk Committee within 24 h"
    assert mine[0]["net_hkd"] == 100_000.0
    col = dock.model.column_of("Route")
    row = next(r for r in range(dock.model.rowCount()) if dock.model.record_at(r) is mine[0])
    assert dock.model.index(row, col).data() == mine[0]["reporting_route"]
    dock.view.setCurrentIndex(dock.model.index(row, 0))
    qtbot.keyClicks(dock.action_title, "Step-up authentication for withdrawals to new accounts")
    qtbot.keyClicks(dock.action_owner, "olga")
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        qtbot.mouseClick(dock.action_button, Qt.MouseButton.LeftButton)
    assert dock.message.text().startswith("Corrective action #")
    new = dock.model.record(int(mine[0]["id"]))
    assert new is not None and new["actions"] == "1 action, 1 not verified" and new["report_text"] == "due"
    assert dock.reported_button.isEnabled()
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        qtbot.mouseClick(dock.reported_button, Qt.MouseButton.LeftButton)
    new = dock.model.record(int(mine[0]["id"]))
    assert new is not None and new["report_text"].startswith("reported ") and new["report_text"].endswith("(rita)")
    assert not dock.reported_button.isEnabled()
    dock.set_filters(near="near")
    assert dock.model.rowCount() > 0 and all(
        (rec := dock.model.record_at(r)) and rec["near_miss"] for r in range(dock.model.rowCount()))


def test_matrix_edit_is_a_change_request(qtbot: Any, store: Store, runner: Any) -> None:
    dock = _loss_dock(qtbot, store, runner)
    m = dock.matrix
    dock.tabs.setCurrentWidget(m)
    row = next(r for r in range(m.model.rowCount()) if (rec := m.model.record_at(r)) and rec["id"] == 3)
    m.view.setCurrentIndex(m.model.index(row, 0))
    assert m.duty.text() == "FINRA 4530(b)-style statistical report"
    m.min_amount.setText("abc")
    assert not m.change_button.isEnabled() and m.message.text().startswith("Above (HKD):")
    m.min_amount.setText("50,000")
    assert m.message.text().startswith("Reason:")
    qtbot.keyClicks(m.reason, "report smaller frauds")
    assert m.change_button.isEnabled()
    with qtbot.waitSignal(m.submitted, timeout=10_000) as sig:
        qtbot.mouseClick(m.change_button, Qt.MouseButton.LeftButton)
    req = changes.get(store, sig.args[0])
    assert (req.kind, req.status, req.target_key, req.after["min_amount"]) == (
        "notification_rule", "pending", {"id": 3}, 50_000.0)
    qtbot.waitUntil(lambda: bool((rec := m.model.record_at(row)) and rec["pending"]), timeout=10_000)
    assert not m.change_button.isEnabled()  # one request at a time per rule


def test_charts_draw_the_snapshot(qtbot: Any, store: Store, runner: Any) -> None:
    dock = _loss_dock(qtbot, store, runner)
    dock.tabs.setCurrentWidget(dock.charts_page)
    charts = dock._charts
    assert charts is not None and dock.snapshot is not None
    assert len(charts.trend.months) == 12
    assert sum(charts.by_type.values.values()) == float(dock.snapshot.by_type["net_hkd"].sum())
    assert set(charts.by_cause.values) == {"people", "process", "system", "external"}


def _te_dock(qtbot: Any, store: Store, runner: Any, user: User) -> TradeErrorsDock:
    dock = TradeErrorsDock()
    qtbot.addWidget(dock)
    dock.resize(1400, 700)
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        dock.set_context(store, user, runner)
    return dock


def test_trade_error_ticket_created_through_the_form(qtbot: Any, store: Store, runner: Any) -> None:
    dock = _te_dock(qtbot, store, runner, OLGA)
    f = dock.form
    dock.tabs.setCurrentWidget(f)
    f.error_type.setCurrentIndex(f.error_type.findData("wrong_side"))
    f.desk.setCurrentText("HK equities")
    for w, text in ((f.erroneous.account, "M00012"), (f.erroneous.code, "700.hk"), (f.erroneous.qty, "1000"),
                    (f.erroneous.price, "380"), (f.correct.account, "M00012"), (f.correct.code, "700.HK"),
                    (f.correct.qty, "1000"), (f.correct.price, "380")):
        qtbot.keyClicks(w, text)
    f.correct.side.setCurrentText("sell")
    assert f.message.text().startswith("Estimated P&L:") and not f.save_button.isEnabled()
    qtbot.keyClicks(f.pnl, "-7,600")
    assert "L2" in f.severity_label.text() and "Desk head, Compliance" in f.severity_label.text()
    f.client_impact.setChecked(True)
    f.clients.setValue(3)
    assert "L3" in f.severity_label.text() and "3 clients hit" in f.severity_label.text()
    qtbot.keyClicks(f.description, "Sold instead of bought for three clients")
    assert f.save_button.isEnabled()
    with qtbot.waitSignal(f.created, timeout=10_000) as sig:
        qtbot.mouseClick(f.save_button, Qt.MouseButton.LeftButton)
    new_id = int(sig.args[0])
    qtbot.waitUntil(lambda: dock.panel.ticket is not None and dock.panel.ticket["id"] == new_id, timeout=10_000)
    t = dock.panel.ticket
    assert t is not None and (t["effective_severity"], t["code"], t["status"]) == ("L3", "700.HK", "open")
    assert [b for r, b in dock.panel.sign_buttons.items() if b.isVisibleTo(dock.panel)] and \
        not any(b.isEnabled() for b in dock.panel.sign_buttons.values())  # operations may not sign
    assert dock.panel.notify_button.isEnabled() and dock.panel.transfer_button.isEnabled()
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        qtbot.mouseClick(dock.panel.notify_button, Qt.MouseButton.LeftButton)
    assert te.ticket(store, new_id)["client_notified"]


def test_sign_off_by_role_and_monthly_report(qtbot: Any, store: Store, runner: Any, tmp_path: Path) -> None:
    from tests.test_trade_errors import _inp

    eid = te.create_ticket(store, OLGA, _inp(-8_000.0, day=date.today()))  # L2
    dock = _te_dock(qtbot, store, runner, SAM)
    dock.select(eid)
    p = dock.panel
    assert p.ticket is not None and p.ticket["id"] == eid
    assert not p.sign_buttons["cro"].isVisibleTo(p)  # an L2 needs no CRO
    assert p.sign_buttons["supervisor"].isEnabled() and p.sign_buttons["desk_head"].isEnabled()
    assert not p.sign_buttons["compliance"].isEnabled()  # a supervisor does not sign for compliance
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        qtbot.mouseClick(p.sign_buttons["supervisor"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: p.ticket is not None and p.ticket["reviews_text"] == "1/3", timeout=10_000)
    assert not p.sign_buttons["desk_head"].isEnabled()  # one person signs once
    assert "Sam" in p.signoffs.text() or "sam" in p.signoffs.text()
    r = dock.report
    dock.tabs.setCurrentWidget(r)
    r.month.setDate(QDate(date.today().year, date.today().month, 1))
    with qtbot.waitSignal(r.shown, timeout=10_000):
        qtbot.mouseClick(r.run_button, Qt.MouseButton.LeftButton)
    assert r.report is not None
    s = r.report.summary
    assert s["errors"] >= 1 and f"{s['errors']} errors" in r.summary.text()
    assert r.models["level"].rowCount() == 3
    out = tmp_path / "report.xlsx"
    with qtbot.waitSignal(r.exported, timeout=10_000):
        r.export_to(str(out))
    wb = load_workbook(out, read_only=True)
    assert {"Summary", "By type", "By severity", "By desk", "Root cause", "Trend", "Errors"} <= set(wb.sheetnames)
    wb.close()
