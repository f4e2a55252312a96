"""Working margin calls in the GUI on a real SQLite demo store with a live monitor: a notice sent from
the alerts dock lands in the Margin-call work dock's outbox and as an .eml file; a failing sender
shows a failed notice that Resend delivers; the deadline dialog refuses a weekend as you type and
submits a change request; an exception marked from the alerts dock joins the exceptions list; the
Intraday financing filter keeps intraday-financing accounts only; the drill-down's Margin call tab
lists the call's notices and history and exports its snapshots.

No sleeps: every wait is on a signal or a condition; the monitor and task runner are stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QDate
from PySide6.QtWidgets import QMainWindow

from app.tasks import TaskRunner
from services import changes, notices
from services.auth import User
from services.calendar import TradingCalendar, shipped_holidays
from services.live import LiveMonitor
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401
from widgets.alerts_dock import AlertsDock
from widgets.call_work_dock import CallWorkDock
from widgets.drilldown_dock import DrilldownDock

RITA = User("rita", "Rita Chan", "risk_officer")
WAIT = 10_000
CAL = TradingCalendar(d for d, _ in shipped_holidays())


class Window(QMainWindow):
    """The two docks in one window, wired as the main window wires them."""

    def __init__(self, alerts: AlertsDock, work: CallWorkDock) -> None:
        super().__init__()
        self.alerts = alerts
        self.setCentralWidget(work)


@pytest.fixture
def desk(qtbot: Any, store: Store, runner: TaskRunner, tmp_path: Path) -> Iterator[tuple[AlertsDock, CallWorkDock,
                                                                                           LiveMonitor]]:
    monitor = LiveMonitor(store, store.load_book(), calendar=CAL)
    monitor.start()
    assert monitor.flush_writes()
    alerts, work = AlertsDock(), CallWorkDock()
    win = Window(alerts, work)
    qtbot.addWidget(win)
    qtbot.addWidget(alerts)
    alerts.set_monitor(monitor)
    alerts.resize(1300, 500)
    alerts.show()
    with qtbot.waitSignal(work.refreshed, timeout=WAIT):
        work.set_context(store, RITA, runner)
    alerts.call_actions.set_context(store, RITA, runner)  # as MainWindow.attach_governance does
    work.follow(alerts.call_actions)
    work.set_monitor(monitor)
    win.resize(1400, 500)
    win.show()
    alerts.call_actions.notice_sender = notices.EmlSender(tmp_path / "outbox")
    yield alerts, work, monitor
    alerts.stop()
    work.stop()
    monitor.stop()


def _select_open_call(qtbot: Any, alerts: AlertsDock, monitor: LiveMonitor, skip: set[int] = frozenset()  # type: ignore[assignment]
                      ) -> int:
    alerts.status_filter.setCurrentText("Open calls")
    alerts.tick()
    qtbot.waitUntil(lambda: alerts.model.rowCount() > 0, timeout=WAIT)
    for row in range(alerts.model.rowCount()):
        a = alerts.model.key_at(row)
        if a not in skip:
            alerts.view.selectRow(row)
            assert bool(monitor.tracker.open[a]) and alerts.call_actions.account == a
            return int(a)
    raise AssertionError("no open call to select")


def _open_dialog(qtbot: Any, alerts: AlertsDock, kind: str) -> Any:
    ca = alerts.call_actions
    ca.dialog = None
    assert ca.actions[kind].isEnabled()
    ca.actions[kind].trigger()
    qtbot.waitUntil(lambda: ca.dialog is not None and ca.dialog.isVisible(), timeout=WAIT)
    return ca.dialog


def test_send_notice_from_alerts_lands_in_outbox(qtbot: Any, desk: Any, tmp_path: Path) -> None:
    alerts, work, monitor = desk
    before = {n["id"] for n in work.data.notices}
    a = _select_open_call(qtbot, alerts, monitor)
    code, amount = monitor.engine.book.acct_codes[a], float(monitor.tracker.amount[a])
    deadline = str(np.datetime64(monitor.tracker.deadline[a], "D"))
    dlg = _open_dialog(qtbot, alerts, "notice")
    qtbot.waitUntil(lambda: bool(dlg.preview.toPlainText()), timeout=WAIT)
    text = dlg.preview.toPlainText()
    assert code in text and f"{amount:,.2f}" in text and deadline in text
    email = monitor.engine.book.client_email(a)
    if email:  # the client's address on file (every 25th demo client has none: the next test)
        assert dlg.to_edit.text().endswith(f"<{email}>") and dlg.ok.isEnabled()
    dlg.to_edit.setText("not an address")
    assert not dlg.ok.isEnabled() and "not one e-mail address" in dlg.message.text()
    dlg.to_edit.setText("Client <client@example.hk>")
    assert dlg.ok.isEnabled()
    with qtbot.waitSignal(work.refreshed, timeout=WAIT):
        dlg.ok.click()
    new = [n for n in work.data.notices if n["id"] not in before]
    assert len(new) == 1
    n = new[0]
    assert (n["account"], n["status"], n["recipient"], n["call_amount"]) == (code, "sent", "Client <client@example.hk>",
                                                                           round(amount, 2))
    assert Path(n["location"]).is_file() and Path(n["location"]).parent == tmp_path / "outbox"
    rec = work.outbox.record_at(0)
    assert rec is not None and rec["id"] == n["id"]  # newest first in the Outbox tab
    assert "sent" in work.note.text() and not dlg.isVisible()
    work.grab().save(str(tmp_path / "outbox.png"))


class BrokenGateway:
    channel = "smtp"

    def send(self, message: EmailMessage, notice_id: int) -> str:
        raise TimeoutError("gateway timed out")


def test_notice_to_a_client_with_no_email_on_file_asks_for_the_address(qtbot: Any, desk: Any, store: Store) -> None:
    from models import schema as S

    alerts, _work, monitor = desk
    a = _select_open_call(qtbot, alerts, monitor)
    client = monitor.engine.book.client_codes[a]
    with store.begin() as conn:
        conn.execute(S.clients.update().where(S.clients.c.code == client).values(email=""))
    dlg = _open_dialog(qtbot, alerts, "notice")
    qtbot.waitUntil(lambda: bool(dlg.preview.toPlainText()), timeout=WAIT)
    assert dlg.to_edit.text() == "" and f"no e-mail on file for {client}" in dlg.to_edit.placeholderText()
    assert not dlg.ok.isEnabled() and f"client {client} has no e-mail on file" in dlg.message.text()
    assert dlg.keep_check.isHidden()  # nothing typed: nothing to keep
    dlg.to_edit.setText("Client <client@example.hk>")
    assert dlg.ok.isEnabled()
    # the typed address can be kept as the client's, through a change request, ticked when none is on file
    assert not dlg.keep_check.isHidden() and dlg.keep_check.isChecked()
    assert f"Keep it as {client}'s e-mail on file (none now" in dlg.keep_check.text()
    with qtbot.waitSignal(dlg.finished_ok, timeout=WAIT) as done:
        dlg.ok.click()
    rid = int(done.args[0].split("change request #", 1)[1].split()[0])
    req = changes.get(store, rid)
    assert (req.kind, req.status, req.after) == ("client_email", "pending", {"email": "client@example.hk"})
    from widgets.records import target_text

    assert target_text(req) == client  # the Approvals dock names the client


def test_failed_notice_shown_and_resent(qtbot: Any, desk: Any, tmp_path: Path) -> None:
    alerts, work, monitor = desk
    _select_open_call(qtbot, alerts, monitor)
    alerts.call_actions.notice_sender = BrokenGateway()
    dlg = _open_dialog(qtbot, alerts, "notice")
    qtbot.waitUntil(lambda: dlg.ok.isEnabled(), timeout=WAIT)
    with qtbot.waitSignal(work.refreshed, timeout=WAIT):
        dlg.ok.click()
    assert "FAILED: TimeoutError: gateway timed out" in dlg.message.text() and dlg.isVisible()
    failed = [n for n in work.data.notices if n["status"] == "failed"]
    assert failed and work.resend_button.isEnabled() and "failed" in work.tabs.tabText(0)
    work.outbox_filter.setCurrentText("Failed")
    qtbot.waitUntil(lambda: work.outbox.rowCount() == len(failed), timeout=WAIT)
    work.set_folder(str(tmp_path / "again"))  # the folder chosen in the Outbox tab (remembered)
    assert str(tmp_path / "again") in work.folder_label.text()
    with qtbot.waitSignal(work.refreshed, timeout=WAIT):
        work.resend_button.click()
    qtbot.waitUntil(lambda: work.outbox.rowCount() == 0, timeout=WAIT)
    assert len(list((tmp_path / "again").glob("*.eml"))) == len(failed)
    assert f"Resent {len(failed)} notice(s): {len(failed)} sent" in work.note.text()


def test_deadline_dialog_validates_and_submits_request(qtbot: Any, desk: Any, store: Store) -> None:
    alerts, _work, monitor = desk
    a = _select_open_call(qtbot, alerts, monitor)
    dlg = _open_dialog(qtbot, alerts, "deadline")
    current = date.fromisoformat(str(np.datetime64(monitor.tracker.deadline[a], "D")))
    sat = current + timedelta(days=(5 - current.weekday()) % 7 or 7)
    dlg.date_edit.setDate(QDate(sat.year, sat.month, sat.day))
    dlg.reason_edit.setText("TT arrives next week")
    assert not dlg.ok.isEnabled() and "not a trading day" in dlg.message.text()
    new = CAL.add_trading_days(current, 2)
    dlg.date_edit.setDate(QDate(new.year, new.month, new.day))
    dlg.reason_edit.setText("")
    assert not dlg.ok.isEnabled() and "Reason" in dlg.message.text()
    dlg.reason_edit.setText("TT arrives next week")
    assert dlg.ok.isEnabled()
    with qtbot.waitSignal(alerts.call_actions.changed, timeout=WAIT) as sig:
        dlg.ok.click()
    assert "submitted for approval" in sig.args[0]
    reqs = changes.listing(store, kind="call_deadline")
    assert len(reqs) == 1 and reqs[0].after == {"deadline": new.isoformat()} and reqs[0].status == "pending"
    assert reqs[0].context["account"] == monitor.engine.book.acct_codes[a]


def test_exception_remark_and_intraday_filter(qtbot: Any, desk: Any) -> None:
    alerts, work, monitor = desk
    marked = {x["call_id"] for x in work.data.exceptions}
    a = _select_open_call(qtbot, alerts, monitor, skip={monitor.engine.book.acct_index[x["account"]]
                                                        for x in work.data.exceptions})
    code = monitor.engine.book.acct_codes[a]
    dlg = _open_dialog(qtbot, alerts, "exception")
    assert dlg.ok.text() == "Mark as exception" and not dlg.ok.isEnabled()
    dlg.reason_edit.setText("Funds in transit (TT 7781)")
    with qtbot.waitSignal(work.refreshed, timeout=WAIT):
        dlg.ok.click()
    new = [x for x in work.data.exceptions if x["call_id"] not in marked]
    assert [(x["account"], x["reason"], x["marked_by"]) for x in new] == [(code, "Funds in transit (TT 7781)", "rita")]
    dlg = _open_dialog(qtbot, alerts, "exception")  # now offers to clear it
    assert dlg.ok.text() == "Clear exception"
    dlg.close()
    dlg = _open_dialog(qtbot, alerts, "remark")
    dlg.text_edit.setPlainText("Client promised the TT reference by 3 pm")
    with qtbot.waitSignal(work.refreshed, timeout=WAIT):
        dlg.ok.click()
    hist = [h for h in work.data.history if h["account"] == code]
    assert [h["kind"] for h in hist[:2]] == ["remark", "exception"]
    assert hist[1]["after"].endswith("· exception") and not hist[1]["before"].endswith("exception")
    # Intraday financing: intraday-financing accounts in alert only. One intraday account's cash is
    # withdrawn through the feed path so that at least one is in alert.
    from services.feed.wire import decode, encode

    book = monitor.engine.book
    intraday = np.flatnonzero((book.acct_type == 2) & (monitor.engine.mv_long > 0))
    i = int(intraday[0])
    monitor._on_batch([decode(encode("cash", "test", 1, [[book.acct_codes[i], "HKD",
                                                            -0.95 * float(monitor.engine.mv_long[i])]]))])
    assert monitor.engine.status[i] >= 2
    alerts.status_filter.setCurrentText("Intraday financing")
    want = np.flatnonzero((book.acct_type == 2) & (monitor.engine.status >= 1))
    qtbot.waitUntil(lambda: alerts.model.rowCount() == want.size, timeout=WAIT)
    shown = {alerts.model.key_at(r) for r in range(alerts.model.rowCount())}
    assert shown == set(want.tolist()) and want.size > 0


def test_drilldown_margin_call_tab_lists_notices_and_exports_snapshots(qtbot: Any, desk: Any, runner: TaskRunner,
                                                                       store: Store, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    _alerts, work, monitor = desk
    sent = next(n for n in work.data.notices if n["status"] == "sent")  # from the demo seed
    a = monitor.engine.book.acct_index[sent["account"]]
    drill = DrilldownDock(runner.run)
    qtbot.addWidget(drill)
    drill.resize(700, 800)
    drill.show()
    drill.set_monitor(monitor, store)
    records = drill.call_panel.records
    with qtbot.waitSignal(records.loaded, timeout=WAIT):
        drill.show_account(a)
    assert records.notices.rowCount() >= 1 and records.tabText(1).startswith("Notices (")
    kinds = {(records.history.record_at(r) or {}).get("kind") for r in range(records.history.rowCount())}
    assert kinds >= {"open", "notice"}
    out = tmp_path / "call.xlsx"
    with qtbot.waitSignal(records.exported, timeout=WAIT):
        records.export_to(str(out))
    rows = list(load_workbook(out)["Snapshots"].values)[1:]
    assert {r[5] for r in rows} >= {"trigger", "notice"} and {r[2] for r in rows} == {sent["account"]}
    drill.stop()
