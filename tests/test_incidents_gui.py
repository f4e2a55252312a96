"""The Incidents and Corrective actions docks with pytest-qt on a real demo store: log an incident
through the form, triage it and see it in the list with its countdown; the Close refusal shown with
its reasons; an overdue incident highlighted; verify disabled for the owner, done by someone else."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from PySide6.QtCore import Qt

from services import actions, incidents
from services.auth import User
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401
from widgets.actions_dock import ActionsDock
from widgets.incidents_dock import OVERDUE_ROW, IncidentsDock, countdown_text

RITA = User("rita", "Rita Chan", "risk_officer")
SAM = User("sam", "Sam Wong", "supervisor")
OLGA = User("olga", "Olga Lam", "operations")


def _dock(qtbot: Any, store: Any, runner: Any, user: User = RITA) -> IncidentsDock:
    dock = IncidentsDock()
    qtbot.addWidget(dock)
    dock.resize(1400, 700)
    dock.show()
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        dock.set_context(store, user, runner)
    return dock


def _shown(dock: IncidentsDock, inc_id: int, qtbot: Any) -> None:
    qtbot.waitUntil(lambda: dock.detail.incident is not None and dock.detail.incident["id"] == inc_id,
                    timeout=10_000)


def test_countdown_text() -> None:
    assert countdown_text(1000.0 + 15 * 60, now=1000.0) == "15:00 left"
    assert countdown_text(1000.0 + 4 * 3600, now=1000.0) == "4 h 00 min left"
    assert countdown_text(1000.0, now=1000.0 + 61) == "overdue 1 min 01 s"
    assert countdown_text(1000.0, now=1000.0 + 3700) == "overdue 1 h 01 min"
    assert countdown_text(-1.0) == "untriaged" and countdown_text(-2.0) == "responded"


def test_log_an_incident_through_the_form_and_triage_it(qtbot: Any, store: Any, runner: Any) -> None:
    dock = _dock(qtbot, store, runner)
    before = dock.model.rowCount()
    dock.new_button.click()
    form = dock.form
    assert dock.right.currentWidget() is form and not form.log_button.isEnabled()
    qtbot.keyClicks(form.title_edit, "Order router rejecting HK orders")
    form.systems_edit.setText("order router, OCG gateway")
    form.desks_edit.setText("HK equities")
    form.description_edit.setPlainText("Rejects since 10:02")
    assert form.log_button.isEnabled() and form.detected_by.currentText() == "rita"
    form.title_edit.clear()
    assert "Title: say what happened" in form.problem.text() and not form.log_button.isEnabled()
    qtbot.keyClicks(form.title_edit, "Order router rejecting HK orders")
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        form.log_button.click()
    assert dock.model.rowCount() == before + 1
    rec = [r for r in dock.visible_records() if r["title"] == "Order router rejecting HK orders"][0]
    assert rec["state"] == "detect" and rec["systems"] == "order router, OCG gateway"
    _shown(dock, rec["id"], qtbot)
    detail = dock.detail
    row = dock.model.row_of(rec["id"])
    assert dock.model.index(row, dock.model.column_of("Response")).data() == "untriaged"
    # triage SEV-3: respond within 1 h of detection
    detail.severity_box.setCurrentIndex(2)
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        detail.triage_button.click()
    qtbot.waitUntil(lambda: detail.incident is not None and detail.incident["severity"] == 3, timeout=10_000)
    rec = [r for r in dock.visible_records() if r["id"] == rec["id"]][0]
    assert rec["state"] == "triage" and rec["severity"] == 3
    row = dock.model.row_of(rec["id"])
    assert dock.model.index(row, dock.model.column_of("Sev")).data() == "SEV-3"
    text = dock.model.index(row, dock.model.column_of("Response")).data()
    assert re.fullmatch(r"5\d:\d\d left", text), text  # 1 h from detection, seconds ago
    assert detail.incident is not None
    assert [e["who"] for e in detail.incident["escalation"]][0].startswith("Incident commander")
    assert detail.escalation_model.rowCount() == 3
    # leaving triage needs a commander: the refusal is shown inline
    assert detail.state_buttons["communicate"].isVisible()
    detail.state_buttons["communicate"].click()
    qtbot.waitUntil(lambda: "name an incident commander" in detail.message.text(), timeout=10_000)
    # filters
    dock.severity_box.setCurrentIndex(dock.severity_box.findData(3))
    assert all(r["severity"] == 3 for r in dock.visible_records()) and dock.model.row_of(rec["id"]) >= 0
    dock.severity_box.setCurrentIndex(dock.severity_box.findData(1))
    assert dock.model.row_of(rec["id"]) < 0


def test_close_blocked_message_then_closed_after_verification(qtbot: Any, store: Any, runner: Any) -> None:
    inc = incidents.log_incident(store, OLGA, "Statement footer date wrong", "", "olga")
    incidents.triage(store, OLGA, inc, 4)
    incidents.set_commander(store, OLGA, inc, "olga")
    for s in ("communicate", "contain", "resolve", "recover"):
        incidents.advance(store, OLGA, inc, s)
    aid = incidents.add_action(store, OLGA, inc, "Template date test", "olga", date(2030, 1, 1))
    dock = _dock(qtbot, store, runner)
    assert dock.select_incident(inc)
    _shown(dock, inc, qtbot)
    detail = dock.detail
    assert detail.close_button.isEnabled()
    assert f'#{aid} "Template date test" (open, owner olga)' in detail.blockers.text()
    assert "Cannot close yet" in detail.close_button.toolTip()
    detail.close_button.click()
    qtbot.waitUntil(lambda: "cannot close" in detail.message.text(), timeout=10_000)
    assert f'#{aid} "Template date test"' in detail.message.text()
    assert detail.message.property("tone") == "error"
    # the register: the owner cannot verify, someone else can
    reg = ActionsDock()
    qtbot.addWidget(reg)
    with qtbot.waitSignal(reg.refreshed, timeout=10_000):
        reg.set_context(store, OLGA, runner)
    assert reg.select_action(aid)
    for verb in ("start", "complete"):
        with qtbot.waitSignal(reg.refreshed, timeout=10_000):
            reg.buttons[verb].click()
        assert reg.select_action(aid)
    assert not reg.buttons["verify"].isEnabled() and "You own this action" in reg.buttons["verify"].toolTip()
    reg.user = SAM
    reg._update_buttons()
    assert reg.buttons["verify"].isEnabled()
    reg.note_edit.setText("test added and green")
    with qtbot.waitSignal(reg.refreshed, timeout=10_000):
        reg.buttons["verify"].click()
    assert actions.get(store, aid)["verified_by"] == "sam"
    reg.stop()
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        dock.refresh()
    qtbot.waitUntil(lambda: detail.incident is not None and not detail.incident["blockers"], timeout=10_000)
    assert detail.blockers.text() == "Can be closed."
    with qtbot.waitSignal(dock.refreshed, timeout=10_000):
        detail.close_button.click()
    assert [r for r in incidents.incidents(store) if r["id"] == inc][0]["state"] == "closed"
    dock.stop()


def test_overdue_incident_highlighted_and_filtered(qtbot: Any, store: Any, runner: Any) -> None:
    dock = _dock(qtbot, store, runner)
    over = [r for r in dock.rows if r["overdue"]]
    assert len(over) == 1 and over[0]["severity"] == 2  # the demo's SEV-2 nobody responded to
    row = dock.model.row_of(over[0]["id"])
    assert dock.model.index(row, 0).data(Qt.ItemDataRole.BackgroundRole) == OVERDUE_ROW
    cell = dock.model.index(row, dock.model.column_of("Response"))
    first = cell.data()
    assert first.startswith("overdue")
    qtbot.waitUntil(lambda: dock.model.index(row, cell.column()).data() != first, timeout=3000)  # the timer ticks
    dock.overdue_check.setChecked(True)
    assert [r["id"] for r in dock.visible_records()] == [over[0]["id"]]
    assert "1 overdue" in dock.status.text()
    dock.stop()
