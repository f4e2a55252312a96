"""GUI, on the seeded demo store: a trader sees the Incidents and Reconciliation write buttons disabled
with a tooltip naming who may (a risk officer / operations user sees them enabled); the Reconciliation
dock says it shows resolved breaks of the last 30 days; a loss event recorded with an incident picked
in the form shows the incident in the register and in the incident's Loss events tab; and the demo's
computed KRI tiles agree with their drill-down without pressing "Compute from records"."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import QDate, QDateTime, Qt, QTime

from services import incidents, kri
from services import loss_events as le
from services.auth import User
from services.breaks import WHO_MAY
from services.kri_dashboard import drill_records
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401
from widgets.incidents_dock import IncidentsDock
from widgets.loss_events_dock import LossEventsDock
from widgets.recon_dock import ReconDock

RITA = User("rita", "Rita Chan", "risk_officer")
OLGA = User("olga", "Olga Lam", "operations")
TOM = User("tom", "Tom Ho", "trader")
WAIT = 10_000


def _incidents(qtbot: Any, store: Store, runner: Any, user: User) -> IncidentsDock:
    dock = IncidentsDock()
    qtbot.addWidget(dock)
    dock.resize(1400, 700)
    dock.show()
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.set_context(store, user, runner)
    qtbot.waitUntil(lambda: dock.detail.incident is not None, timeout=WAIT)
    return dock


def _recon(qtbot: Any, store: Store, runner: Any, user: User) -> ReconDock:
    dock = ReconDock()
    qtbot.addWidget(dock)
    dock.resize(1300, 800)
    dock.show()
    with qtbot.waitSignal(dock.loaded, timeout=WAIT):
        dock.set_context(store, user, runner)
    dock.breaks.view.selectRow(0)
    return dock


def test_trader_sees_incident_write_buttons_disabled(qtbot: Any, store: Store, runner: Any) -> None:
    dock = _incidents(qtbot, store, runner, TOM)
    d = dock.detail
    assert d.incident is not None and d.incident["state"] != "closed"  # an open incident is shown
    who = "Logging and working incidents is for Risk officer, Supervisor, CRO or Operations"
    assert not dock.new_button.isEnabled() and dock.new_button.toolTip() == who
    buttons = d._write_buttons()
    assert len(buttons) == 12 and not any(b.isEnabled() for b in buttons)
    assert {b.toolTip() for b in buttons} == {who}
    dock.stop()
    rita = _incidents(qtbot, store, runner, RITA)
    assert rita.new_button.isEnabled() and rita.detail.triage_button.isEnabled()
    assert rita.detail.triage_button.toolTip() != who
    rita.stop()


def test_trader_sees_break_actions_and_reconcile_disabled(qtbot: Any, store: Store, runner: Any) -> None:
    dock = _recon(qtbot, store, runner, TOM)
    b = dock.selected_break()
    assert b is not None and b["status"] in ("open", "assigned")  # the oldest break, still to work
    a = dock.break_actions
    a.root_cause_edit.setText("late booking")
    for button in (a.assign_button, a.investigate_button, a.resolve_button, dock.run_button, dock.columns_button):
        assert not button.isEnabled() and button.toolTip() == WHO_MAY
    assert WHO_MAY == "Reconciliation and breaks are for Operations, Risk officer, Supervisor or CRO"
    assert "showing resolved breaks of the last 30 days" in dock.counts.text()
    dock.stop()
    olga = _recon(qtbot, store, runner, OLGA)
    oa = olga.break_actions
    oa.root_cause_edit.setText("late booking")
    assert all(x.isEnabled() for x in (oa.assign_button, oa.investigate_button, oa.resolve_button,
                                       olga.run_button, olga.columns_button))
    olga.stop()


def test_loss_event_recorded_against_an_incident_from_the_form(qtbot: Any, store: Store, runner: Any) -> None:
    dock = LossEventsDock()
    qtbot.addWidget(dock)
    dock.resize(1400, 700)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.set_context(store, RITA, runner)
    f = dock.form
    with store.begin() as conn:
        want = incidents.linkable(conn)
    assert want and f.incident.count() == len(want) + 1 and f.incident.itemData(0) is None
    target = want[-1]
    had = incidents.detail(store, int(target["id"]))["loss_events"]
    f.incident.setCurrentIndex(f.incident.findData(int(target["id"])))
    assert f.incident.currentText() == incidents.label(target)
    dock.tabs.setCurrentWidget(f)
    f.event_type.setCurrentText("Business Disruption & System Failures")
    today = QDate.currentDate()
    f.occurred.setDate(today.addDays(-1))
    f.discovered.setDateTime(QDateTime(today, QTime(0, 5)))
    qtbot.keyClicks(f.gross, "12,500")
    qtbot.keyClicks(f.description, "Orders re-keyed during the outage; one filled at a worse price")
    assert f.read().incident_id == int(target["id"]) and f.save_button.isEnabled()
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        qtbot.mouseClick(f.save_button, Qt.MouseButton.LeftButton)
    assert f.incident.currentIndex() == 0  # the next event starts unlinked
    mine = [e for e in dock.snapshot.events if e["description"].startswith("Orders re-keyed during the outage")] \
        if dock.snapshot else []
    assert len(mine) == 1 and mine[0]["incident"] == incidents.label(target)
    row = dock.model.row_of(int(mine[0]["id"]))
    assert dock.model.index(row, dock.model.column_of("Incident")).data() == incidents.label(target)
    dock.stop()
    inc = IncidentsDock()
    qtbot.addWidget(inc)
    inc.resize(1400, 700)
    with qtbot.waitSignal(inc.refreshed, timeout=WAIT):
        inc.set_context(store, RITA, runner)
    inc.state_box.setCurrentIndex(inc.state_box.findData(""))  # all incidents (the target may be closed)
    assert inc.select_incident(int(target["id"]))
    qtbot.waitUntil(lambda: inc.detail.incident is not None and inc.detail.incident["id"] == target["id"],
                    timeout=WAIT)
    d = inc.detail
    n = len(had) + 1
    assert d.tabs.tabText(4) == f"Loss events ({n})" and d.losses_model.rowCount() == n
    net = 12_500.0 + sum(x["net_hkd"] for x in had)
    assert d.losses_caption.text() == f"{n} loss event{'s' if n > 1 else ''}, net {net:,.2f} HKD"
    assert str(mine[0]["id"]) in {d.losses_model.index(r, d.losses_model.column_of("ID")).data() for r in range(n)}
    inc.stop()


def test_demo_incident_lists_the_loss_event_it_caused(store: Store) -> None:
    with store.begin() as conn:
        (ocg,) = [r for r in incidents.linkable(conn) if r["title"].startswith("OCG gateway disconnect")]
    (loss,) = incidents.detail(store, int(ocg["id"]))["loss_events"]
    assert (loss["event_type"], loss["net_hkd"], loss["reporting_route"]) == (
        "Business Disruption & System Failures", 38_400.0, "Department head within 24 h")
    snap = le.load_snapshot(store, RITA)
    linked = {e["incident"] for e in snap.events if e["incident_id"] is not None}
    assert incidents.label(ocg) in linked and len(linked) == 2  # and the rights-issue near miss


@pytest.mark.parametrize("code", kri.COMPUTED)
def test_demo_computed_kri_tile_matches_its_drilldown(store: Store, code: str) -> None:
    (st,) = kri.statuses(store, [code])
    assert st.day is not None and st.value is not None
    value, records = drill_records(store, code, st.day)
    assert st.value == pytest.approx(value)
    if code in ("OPEN_INCIDENTS", "AGED_BREAKS", "MARGIN_CALLS"):
        assert st.value == len(records) > 0  # a count of the records the drill-down lists
