"""The Trade errors dock (RISK_METHODS §7 "Trade errors"): the tickets (filter by status, severity and desk)
with the selected ticket's review, severity override, resolution and 5-whys root cause beside them; the
New ticket form; the Monthly report (run and exported in the background). One background read
(`services.trade_errors.load_snapshot`) fills the list; every database call runs on the task runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSplitter, QTabWidget, QVBoxLayout, QWidget

from services import trade_errors as te
from services.auth import User
from widgets.records import MUTED_TEXT, CoalescedLoad, Field, RecordTableModel, error_text, set_tone
from widgets.tables import fit_columns, make_table
from widgets.trade_error_form import TradeErrorForm
from widgets.trade_error_report_view import MonthlyReportView
from widgets.trade_error_ticket import TicketPanel

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.store import Store

LEVEL_TEXT = {"L1": None, "L2": QColor(227, 179, 65), "L3": QColor(248, 81, 73)}

FIELDS = [
    Field("Id", "id", "number", fmt=lambda v: f"{v:.0f}"),
    Field("Trade date", "trade_date"),
    Field("Type", "error_type_label"),
    Field("Desk", "desk"),
    Field("P&L", "pnl", "number", tooltip="final once resolved, else estimated; negative = loss"),
    Field("Severity", "effective_severity", foreground=lambda v: LEVEL_TEXT.get(str(v)),
          tooltip="the level in force (an override wins)"),
    Field("Reviews", "reviews_text", tooltip="sign-offs done / needed for the severity"),
    Field("Outstanding", "blockers_text"),
    Field("Status", "status", foreground=lambda v: MUTED_TEXT if v == "closed" else None),
    Field("Client notified", "notified_text"),
    Field("Error account", "error_account_text"),
    Field("Account", "account"),
    Field("Code", "code"),
    Field("Computed", "severity", tooltip="the level §7's rules give"),
    Field("Reported by", "created_by"),
]


class TradeErrorsDock(QWidget):
    refreshed = Signal()
    created = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: te.TradeErrorsSnapshot | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        lay.addWidget(self.tabs)
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.setContentsMargins(0, 4, 0, 0)
        bar = QHBoxLayout()
        self.status_filter = QComboBox()
        for label, v in (("Open", "open"), ("Closed", "closed"), ("All", "")):
            self.status_filter.addItem(label, v)
        self.level_filter = QComboBox()
        self.level_filter.addItem("All severities", "")
        for lv in te.LEVELS:
            self.level_filter.addItem(lv, lv)
        self.desk_filter = QComboBox()
        self.desk_filter.addItem("All desks", "")
        for w in (self.status_filter, self.level_filter, self.desk_filter):
            bar.addWidget(w)
            w.currentIndexChanged.connect(self._refilter)
        bar.addStretch(1)
        self.count = QLabel()
        self.count.setProperty("role", "caption")
        bar.addWidget(self.count)
        pl.addLayout(bar)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.model = RecordTableModel(FIELDS)
        self.view = make_table(self.model)
        self.view.setObjectName("trade_errors_table")
        self.view.selectionModel().currentRowChanged.connect(lambda *_: self._show_ticket())
        split.addWidget(self.view)
        self.panel = TicketPanel()
        self.panel.changed.connect(lambda _i: self.refresh())
        split.addWidget(self.panel)
        split.setSizes([760, 560])
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        pl.addWidget(split, 1)
        self.message = QLabel()
        self.message.setVisible(False)
        pl.addWidget(self.message)
        self.tabs.addTab(page, "Tickets")
        self.form = TradeErrorForm()
        self.form.created.connect(self._created)
        self.tabs.addTab(self.form, "New ticket")
        self.report = MonthlyReportView()
        self.tabs.addTab(self.report, "Monthly report")
        self._ids = np.zeros(0, np.int64)
        self._status = np.zeros(0, object)
        self._level = np.zeros(0, object)
        self._desk = np.zeros(0, object)

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        for w in (self.panel, self.form, self.report):
            w.set_context(store, user, tasks)
        self.refresh()

    def refresh(self) -> None:
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def stop(self) -> None:
        self._load.cancel()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(te.load_snapshot, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="trade errors")

    def _loaded(self, snap: te.TradeErrorsSnapshot) -> None:
        first = self.snapshot is None
        self.snapshot = snap
        rows = [{**t, "notified_text": ("yes" if t["client_notified"] else "due") if t["client_impact"] else "",
                 "error_account_text": "yes" if t["error_account_transfer"] else "",
                 "blockers_text": ", ".join(t["blockers"]) if t["status"] == "open" else ""} for t in snap.tickets]
        self._ids = np.array([int(t["id"]) for t in rows], np.int64)
        self._status = np.array([t["status"] for t in rows], object)
        self._level = np.array([t["effective_severity"] for t in rows], object)
        self._desk = np.array([t["desk"] for t in rows], object)
        desk = self.desk_filter.currentData()
        self.desk_filter.blockSignals(True)
        self.desk_filter.clear()
        self.desk_filter.addItem("All desks", "")
        for d in snap.desks:
            self.desk_filter.addItem(d, d)
        self.desk_filter.setCurrentIndex(max(0, self.desk_filter.findData(desk)))
        self.desk_filter.blockSignals(False)
        self.model.set_records(rows)
        self._refilter()
        if first and rows:
            fit_columns(self.view, 220)
            self.view.selectRow(0)
        self.form.set_reference(snap.desks, snap.may_report)
        self._show_ticket()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        set_tone(self.message, f"refresh failed: {error_text(e)}", "error")

    def _refilter(self) -> None:
        status, level, desk = (self.status_filter.currentData(), self.level_filter.currentData(),
                               self.desk_filter.currentData())
        mask = np.ones(self._ids.shape[0], bool)
        for v, arr in ((status, self._status), (level, self._level), (desk, self._desk)):
            if v:
                mask &= arr == v
        allowed = self._ids[mask]
        self.model.set_filter((lambda keys: np.isin(keys, allowed)) if (status or level or desk) else None)
        n_open = int((self._status == "open").sum())
        self.count.setText(f"{self.model.rowCount():,} shown · {n_open} open of {self._ids.shape[0]:,} tickets")

    def set_filters(self, status: str = "", level: str = "", desk: str = "") -> None:
        for box, v in ((self.status_filter, status), (self.level_filter, level), (self.desk_filter, desk)):
            box.setCurrentIndex(max(0, box.findData(v)))

    def select(self, error_id: int) -> None:
        row = self.model.row_of(error_id)
        if row >= 0:
            self.view.selectRow(row)
            self.view.setCurrentIndex(self.model.index(row, 0))

    def _show_ticket(self) -> None:
        idx = self.view.currentIndex()
        self.panel.show_ticket(self.model.record_at(idx.row()) if idx.isValid() else None)

    def _created(self, new_id: int) -> None:
        self.created.emit(new_id)
        self.set_filters("open")
        self.refresh()
        self._select_after = new_id
        self.refreshed.connect(self._select_new)

    def _select_new(self) -> None:
        self.refreshed.disconnect(self._select_new)
        self.select(self._select_after)
        self.tabs.setCurrentIndex(0)
