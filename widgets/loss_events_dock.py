"""The Loss events dock (RISK_METHODS §7 "Loss events"): the register filtered by event type, business
line and near miss, with each event's route, due time and regulatory duty; the New loss event form
(checked as you type, route and duty shown before saving); the charts; the notification matrix,
edited through change requests. One background read (`services.loss_events.load_snapshot`) fills
every tab; every database call runs on the task runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services import loss_events as le
from services.auth import User
from widgets.action_entry import ActionEntry
from widgets.formatting import money
from widgets.loss_event_form import LossEventForm
from widgets.notification_matrix import NotificationMatrixPanel
from widgets.records import (
    MUTED_TEXT,
    OVERDUE_TEXT,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    hk_time,
    set_tone,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.store import Store

REPORT_COLOURS = {"overdue": QColor(248, 81, 73), "due": QColor(227, 179, 65)}
ROUTE_COLOURS = {0: None, 1: None, 2: QColor(227, 179, 65), 3: QColor(240, 136, 62), 4: QColor(248, 81, 73)}


def _route_level(text: Any) -> int:
    t = str(text)
    return 4 if "Board" in t else 3 if "Senior" in t else 2 if "CRO" in t else 1 if "Department" in t else 0


FIELDS = [
    Field("Id", "id", "number", fmt=lambda v: f"{v:.0f}"),
    Field("Discovered", "discovered_at", "time", tooltip="Hong Kong time"),
    Field("Event type", "event_type"),
    Field("Business line", "business_line"),
    Field("Near miss", "near_miss_text", foreground=lambda v: MUTED_TEXT if v == "near miss" else None),
    Field("Net HKD", "net_hkd", "number", tooltip="(gross − recoveries) at the rate when recorded"),
    Field("Route", "reporting_route", foreground=lambda v: ROUTE_COLOURS[_route_level(v)]),
    Field("Report due", "report_due_at", "time"),
    Field("Reported", "report_text", foreground=lambda v: REPORT_COLOURS.get(str(v).split(" ")[0]),
          tooltip="overdue: the route's reports are past their 24 h and not yet made"),
    Field("Regulatory duty", "regulatory_duty", foreground=lambda v: OVERDUE_TEXT if v not in ("", "none") else None),
    Field("Cause", "cause"),
    Field("Actions", "actions", tooltip="corrective actions opened for the event"),
    Field("Incident", "incident", tooltip="the incident the loss came from (Incidents dock)"),
    Field("Gross", "gross_loss", "number"),
    Field("Recoveries", "recoveries", "number"),
    Field("Net", "net_loss", "number"),
    Field("Ccy", "currency"),
    Field("Occurred", "occurred_on"),
    Field("Accounted", "accounted_on"),
    Field("Resolved", "resolved_on"),
    Field("Description", "description"),
    Field("By", "created_by"),
]


class LossEventsDock(QWidget):
    refreshed = Signal()
    submitted = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: le.LossEventsSnapshot | None = None
        self._charts: Any = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        lay.addWidget(self.tabs)
        # register
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.setContentsMargins(0, 4, 0, 0)
        bar = QHBoxLayout()
        self.type_filter = QComboBox()
        self.type_filter.addItem("All event types", "")
        for t in le.EVENT_TYPES:
            self.type_filter.addItem(t, t)
        self.line_filter = QComboBox()
        self.line_filter.addItem("All business lines", "")
        for b in le.BUSINESS_LINES:
            self.line_filter.addItem(b, b)
        self.near_filter = QComboBox()
        for label, v in (("Losses and near misses", ""), ("Losses only", "loss"), ("Near misses only", "near")):
            self.near_filter.addItem(label, v)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search description…")
        self.search.setClearButtonEnabled(True)
        for w in (self.type_filter, self.line_filter, self.near_filter):
            bar.addWidget(w)
            w.currentIndexChanged.connect(self._refilter)
        bar.addWidget(self.search, 1)
        self.search.textChanged.connect(self._refilter)
        self.count = QLabel()
        self.count.setProperty("role", "caption")
        bar.addWidget(self.count)
        pl.addLayout(bar)
        self.model = RecordTableModel(FIELDS)
        self.view = make_table(self.model)
        self.view.setObjectName("loss_events_table")
        self.view.selectionModel().currentRowChanged.connect(lambda *_: self._show_detail())
        pl.addWidget(self.view, 1)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        pl.addWidget(self.detail)
        act = ActionEntry("corrective action for the selected event", "Add corrective action", 30)
        self.action_entry = act
        self.action_title, self.action_owner, self.action_due = act.title, act.owner, act.due
        self.action_button = act.button
        self.action_button.clicked.connect(self._add_action)
        self.reported_button = QPushButton("Mark reported")
        self.reported_button.setToolTip("the selected event's route has been reported (everyone on it told)")
        self.reported_button.clicked.connect(self._mark_reported)
        act.addWidget(self.reported_button)
        pl.addLayout(act)
        self.message = QLabel()
        self.message.setVisible(False)
        pl.addWidget(self.message)
        self.tabs.addTab(page, "Register")
        self.form = LossEventForm()
        self.form.recorded.connect(self._recorded)
        self.tabs.addTab(self.form, "New loss event")
        self.charts_page = QWidget()
        QVBoxLayout(self.charts_page).setContentsMargins(0, 0, 0, 0)
        self.tabs.addTab(self.charts_page, "Charts")
        self.matrix = NotificationMatrixPanel()
        self.matrix.submitted.connect(self._matrix_submitted)
        self.tabs.addTab(self.matrix, "Notification matrix")
        self.tabs.currentChanged.connect(self._tab_changed)
        self._ids = np.zeros(0, np.int64)
        self._types = np.zeros(0, object)
        self._lines = np.zeros(0, object)
        self._near = np.zeros(0, bool)
        self._text = np.zeros(0, object)
        self._net = np.zeros(0, float)

    # ------------------------------------------------------------------ catalogue protocol
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.form.set_context(store, user, tasks)
        self.matrix.set_context(store, user, tasks)
        self.refresh()

    def refresh(self) -> None:
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def stop(self) -> None:
        self._load.cancel()

    # ------------------------------------------------------------------ loading
    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(le.load_snapshot, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="loss events")

    def _loaded(self, snap: le.LossEventsSnapshot) -> None:
        first = self.snapshot is None
        self.snapshot = snap
        events = [{**e, "near_miss_text": "near miss" if e["near_miss"] else "",
                   "report_text": (f"reported {hk_time(e['reported_at'])} ({e['reported_by']})"
                                   if e["report_state"] == "reported" else e["report_state"])} for e in snap.events]
        self._ids = np.array([int(e["id"]) for e in events], np.int64)
        self._types = np.array([e["event_type"] for e in events], object)
        self._lines = np.array([e["business_line"] for e in events], object)
        self._near = np.array([bool(e["near_miss"]) for e in events], bool)
        self._text = np.array([str(e["description"]).lower() for e in events], object)
        self._net = np.array([float(e["net_hkd"]) for e in events], float)
        self.model.set_records(events)
        self._refilter()
        if first and events:
            fit_columns(self.view, 230)
            self.view.sortByColumn(1, Qt.SortOrder.DescendingOrder)  # newest discovery first
        self.form.set_reference(snap.rules, snap.fx, snap.may_record, snap.incidents)
        self.action_button.setEnabled(snap.may_record)
        self._show_detail()
        late = sum(1 for e in snap.events if e["report_state"] == "overdue")
        self.tabs.setTabText(0, f"Register ({late} reports overdue)" if late else "Register")
        self.matrix.show_rules(snap.rules, snap.pending, snap.may_request)
        if self._charts is not None:
            self._draw_charts()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        set_tone(self.message, f"refresh failed: {error_text(e)}", "error")

    # ------------------------------------------------------------------ register
    def _refilter(self) -> None:
        etype, line, near = (self.type_filter.currentData(), self.line_filter.currentData(),
                             self.near_filter.currentData())
        text = self.search.text().strip().lower()
        mask = np.ones(self._ids.shape[0], bool)
        if etype:
            mask &= self._types == etype
        if line:
            mask &= self._lines == line
        if near:
            mask &= self._near if near == "near" else ~self._near
        if text:
            mask &= np.array([text in t for t in self._text], bool)
        allowed = self._ids[mask]
        filtered = bool(etype or line or near or text)
        self.model.set_filter((lambda keys: np.isin(keys, allowed)) if filtered else None)
        shown = self.model.rowCount()
        net = float(self._net[mask].sum())
        self.count.setText(f"{shown:,} of {self._ids.shape[0]:,} events · net {money(net)} HKD")

    def set_filters(self, event_type: str = "", business_line: str = "", near: str = "") -> None:
        """Choose the filters programmatically (tests, drill-down from other docks)."""
        for box, v in ((self.type_filter, event_type), (self.line_filter, business_line), (self.near_filter, near)):
            box.setCurrentIndex(max(0, box.findData(v)))

    def _show_detail(self) -> None:
        idx = self.view.currentIndex()
        r = self.model.record_at(idx.row()) if idx.isValid() else None
        self.reported_button.setEnabled(bool(r and r["report_state"] in ("due", "overdue") and self.snapshot
                                             and self.snapshot.may_record))
        if r is None:
            self.detail.setText("")
            return
        self.detail.setText(
            f"<b>#{r['id']}</b> {r['event_type']} · {r['business_line']} · {r['cause']} — "
            f"gross {money(r['gross_loss'])} − recoveries {money(r['recoveries'])} = net {money(r['net_loss'])} "
            f"{r['currency']}<br>Route: {r['reporting_route']} · Duty: {r['regulatory_duty']}<br>"
            f"{r['description']}")

    def _mark_reported(self) -> None:
        idx = self.view.currentIndex()
        r = self.model.record_at(idx.row()) if idx.isValid() else None
        if r is None or self.tasks is None or self.user is None:
            set_tone(self.message, "Select a loss event first", "error")
            return
        eid = int(r["id"])

        def done(_r: object) -> None:
            set_tone(self.message, f"Loss event #{eid}: reported to {r['reporting_route']}", "ok")
            self.refresh()

        def failed(e: BaseException) -> None:
            set_tone(self.message, str(e) if isinstance(e, le.LossEventError) else error_text(e), "error")

        self.tasks.run(le.mark_reported, self.store, self.user, eid, on_done=done, on_error=failed,
                       name="loss event reported")

    def _add_action(self) -> None:
        idx = self.view.currentIndex()
        r = self.model.record_at(idx.row()) if idx.isValid() else None
        if r is None or self.tasks is None or self.user is None:
            set_tone(self.message, "Select a loss event first", "error")
            return
        from services.actions import ActionError

        title, owner, due = self.action_entry.values()
        eid = int(r["id"])

        def done(aid: int) -> None:
            self.action_title.clear()
            set_tone(self.message, f"Corrective action #{aid} opened for loss event #{eid}", "ok")
            self.refresh()

        def failed(e: BaseException) -> None:
            known = isinstance(e, le.LossEventError | ActionError)
            set_tone(self.message, str(e) if known else error_text(e), "error")

        self.tasks.run(le.add_corrective_action, self.store, self.user, eid, title, owner, due, on_done=done,
                       on_error=failed, name="loss event action")

    def _recorded(self, new_id: int) -> None:
        self.submitted.emit(new_id)
        self.refresh()

    def _matrix_submitted(self, req_id: int) -> None:
        self.submitted.emit(req_id)
        self.refresh()

    # ------------------------------------------------------------------ charts (pyqtgraph loads on first view)
    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.charts_page and self._charts is None:
            from widgets.loss_charts import LossCharts

            self._charts = LossCharts()
            lay = self.charts_page.layout()
            assert lay is not None
            lay.addWidget(self._charts)
            if self.snapshot is not None:
                self._draw_charts()

    def _draw_charts(self) -> None:
        snap = self.snapshot
        if snap is None or self._charts is None:
            return
        self._charts.show_figures(snap.trend, snap.by_type, snap.by_line, snap.by_cause)
