"""The Incidents dock (RISK_METHODS §7 "Incidents"): the incident list and the selected incident.

The list sorts and filters by state and severity; a triaged incident not yet responded to counts
down to its response time once a second (a timer re-formats only those rows), and an overdue one is
shown on a red row. "New incident" opens the log form (title, detected by, systems, desks,
description; checked as you type). The right-hand side is `IncidentDetail`. Every database call runs
on the task runner; a write re-reads the list and the incident.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from services import incidents
from services.incidents import STATE_LABELS, STATES
from widgets.incident_detail import SEV_COLOURS, IncidentDetail, sev_text, write_error
from widgets.records import ERROR_COLOUR, CoalescedLoad, Field, RecordTableModel, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store

OVERDUE_ROW = QColor(96, 22, 28)
CLOSED_TEXT = QColor(139, 148, 158)
UNTRIAGED, RESPONDED, CLOSED = -1.0, -2.0, -3.0  # countdown sentinels (sort before the live deadlines)


def countdown_text(v: Any, now: float | None = None) -> str:
    """The response column: time left (``14:59 left``, ``3 h 59 min left``), ``overdue 2 min``, or
    what the incident is waiting for."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if v == UNTRIAGED:
        return "untriaged"
    if v == RESPONDED:
        return "responded"
    if v == CLOSED:
        return ""
    left = float(v) - (time.time() if now is None else now)
    if left < 0:
        m = int(-left // 60)
        return f"overdue {m // 60} h {m % 60:02d} min" if m >= 60 else f"overdue {m} min {int(-left % 60):02d} s"
    s = int(left)
    return f"{s // 3600} h {s % 3600 // 60:02d} min left" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d} left"


def countdown_value(r: dict[str, Any]) -> float:
    if r["state"] == "closed":
        return CLOSED
    if r["severity"] is None:
        return UNTRIAGED
    if r["responded_at"] is not None:
        return RESPONDED
    return float(r["response_due_at"].timestamp())


def load_incidents(store: Store) -> dict[str, Any]:
    """The list and the active users (task function)."""
    return {"rows": incidents.incidents(store), "users": incidents.active_users(store)}


class NewIncidentForm(QFrame):
    """Log an incident: title, detected by, systems, desks, description."""

    submitted = Signal(dict)
    cancelled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setProperty("role", "card")
        form = QFormLayout(self)
        head = QLabel("Log a new incident")
        head.setStyleSheet("font-weight: 600; font-size: 13px")
        form.addRow(head)
        self.title_edit = QLineEdit()
        self.title_edit.setPlaceholderText("what happened, in a few words")
        self.detected_by = QComboBox()
        self.detected_by.setEditable(True)
        self.systems_edit = QLineEdit()
        self.systems_edit.setPlaceholderText("comma separated, e.g. order router, price feed")
        self.desks_edit = QLineEdit()
        self.desks_edit.setPlaceholderText("comma separated, e.g. HK equities, Margin")
        self.description_edit = QPlainTextEdit()
        self.description_edit.setPlaceholderText("what was seen, when, who is affected")
        for caption, w in (("&Title", self.title_edit), ("&Detected by", self.detected_by),
                           ("&Systems", self.systems_edit), ("D&esks", self.desks_edit),
                           ("Descri&ption", self.description_edit)):
            form.addRow(caption, w)
        self.problem = QLabel("")
        self.problem.setStyleSheet(f"color: {ERROR_COLOUR}")
        form.addRow(self.problem)
        row = QHBoxLayout()
        self.log_button = QPushButton("&Log incident")
        self.log_button.clicked.connect(self.submit)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.cancelled.emit)
        row.addStretch(1)
        row.addWidget(cancel)
        row.addWidget(self.log_button)
        form.addRow(row)
        self.title_edit.textChanged.connect(lambda _t: self.check())
        self.detected_by.currentTextChanged.connect(lambda _t: self.check())
        self.check()

    def reset(self, users: list[str], me: str) -> None:
        self.detected_by.clear()
        self.detected_by.addItems(users)
        self.detected_by.setCurrentText(me)
        for e in (self.title_edit, self.systems_edit, self.desks_edit):
            e.clear()
        self.description_edit.clear()
        self.check()

    def values(self) -> dict[str, Any]:
        return {"title": self.title_edit.text().strip(), "detected_by": self.detected_by.currentText().strip(),
                "systems": self.systems_edit.text(), "desks": self.desks_edit.text(),
                "description": self.description_edit.toPlainText()}

    def check(self) -> str:
        v = self.values()
        why = ("Title: say what happened in a few words." if not v["title"] else
               "Title: at most 200 characters." if len(v["title"]) > 200 else
               "Detected by: name who detected it." if not v["detected_by"] else "")
        self.problem.setText(why if self.title_edit.isModified() or v["title"] else "")
        self.log_button.setEnabled(not why)
        return why

    def submit(self) -> None:
        if not self.check():
            self.submitted.emit(self.values())


class IncidentsDock(QWidget):
    """The incident list with filters and countdowns, the new-incident form and the selected incident."""

    refreshed = Signal()
    open_dock = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.rows: list[dict[str, Any]] = []
        self.users: list[str] = []
        self._want: int | None = None
        self._detail_task: Any = None
        self._fitted = False
        self._load = CoalescedLoad(self._start_load, self._loaded, self._failed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.state_box = QComboBox()
        self.state_box.addItem("Open incidents", "open")
        self.state_box.addItem("All incidents", "")
        for s in STATES:
            self.state_box.addItem(STATE_LABELS[s], s)
        self.severity_box = QComboBox()
        self.severity_box.addItem("All severities", 0)
        for sev in (1, 2, 3, 4):
            self.severity_box.addItem(f"SEV-{sev}", sev)
        self.severity_box.addItem("Untriaged", -1)
        self.overdue_check = QCheckBox("Overdue only")
        for caption, w in (("State", self.state_box), ("Severity", self.severity_box)):
            bar.addWidget(QLabel(caption))
            bar.addWidget(w)
        bar.addWidget(self.overdue_check)
        self.state_box.currentIndexChanged.connect(self._refilter)
        self.severity_box.currentIndexChanged.connect(self._refilter)
        self.overdue_check.toggled.connect(self._refilter)
        bar.addStretch(1)
        self.status = QLabel("")
        bar.addWidget(self.status)
        self.new_button = QPushButton("&New incident…")
        self.new_button.clicked.connect(self.new_incident)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        bar.addWidget(self.new_button)
        bar.addWidget(refresh)
        lay.addLayout(bar)

        self.model = RecordTableModel([
            Field("ID", "id", "number", fmt=lambda v: str(int(v))),
            Field("Sev", "severity", "number", fmt=sev_text,
                  foreground=lambda v: QColor(SEV_COLOURS[int(v)]) if v == v else None),
            Field("Response", "countdown", "number", fmt=countdown_text,
                  tooltip="time left to respond (SEV-1 immediate, SEV-2 15 min, SEV-3 1 h, SEV-4 4 h from "
                          "detection); the response is leaving triage with a commander named"),
            Field("State", "state_text"),
            Field("Title", "title"),
            Field("Commander", "commander"),
            Field("Detected (HKT)", "detected_at", "time"),
            Field("Detected by", "detected_by"),
            Field("Systems", "systems"),
            Field("Desks", "desks")], self)
        self.model.row_background = self._row_background
        self.model.row_foreground = lambda k: CLOSED_TEXT if (r := self.model.record(k)) and r["state"] == "closed" \
            else None
        self.model.set_filter(self._visible)
        self.view = make_table(self.model)
        self.view.sortByColumn(6, Qt.SortOrder.DescendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        self.detail = IncidentDetail()
        self.detail.changed.connect(self._written)
        self.detail.open_register.connect(lambda: self.open_dock.emit("corrective_actions"))
        self.form = NewIncidentForm()
        self.form.submitted.connect(self._log)
        self.right = QStackedWidget()
        self.form.cancelled.connect(lambda: self.right.setCurrentIndex(0))
        self.right.addWidget(self.detail)
        self.right.addWidget(self.form)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        split.addWidget(self.right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([620, 520])
        lay.addWidget(split, 1)
        self.timer = QTimer(self, interval=1000)
        self.timer.timeout.connect(self.tick)

    # ------------------------------------------------------------------ context
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.detail.set_context(store, user, tasks)
        may = incidents.may_write(user)
        self.new_button.setEnabled(may)
        self.new_button.setToolTip("log a detected incident" if may else incidents.who_may_write())
        self.timer.start()
        self.refresh()

    def stop(self) -> None:
        self.timer.stop()
        self._load.cancel()
        if self._detail_task is not None:
            self._detail_task.cancel()

    def refresh(self) -> None:
        if self.store is not None and self.tasks is not None:
            self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_incidents, self.store, on_done=on_done, on_error=on_error, name="incidents")

    def _loaded(self, snap: dict[str, Any]) -> None:
        self.users = snap["users"]
        self.rows = [{**r, "state_text": STATE_LABELS[r["state"]], "countdown": countdown_value(r)}
                     for r in snap["rows"]]
        self.model.set_records(self.rows)
        if not self._fitted and self.rows:
            fit_columns(self.view, 260)
            self._fitted = True
        n_open = sum(1 for r in self.rows if r["state"] != "closed")
        n_over = sum(1 for r in self.rows if r["overdue"])
        self.status.setText(f"{n_open} open · " + (f"<span style='color:#f85149'>{n_over} overdue</span>"
                                                    if n_over else "none overdue"))
        self.detail.set_users(self.users)
        if self._want is None and self.selected_id() is None and self.model.rowCount():
            first = next((r["id"] for r in self.visible_records() if r["overdue"]), self.model.key_at(0))
            self._want = int(first)  # open on the most urgent incident
        if self._want is not None and self.model.row_of(self._want) >= 0:
            self.view.selectRow(self.model.row_of(self._want))
            self._want = None
        self._load_detail()
        self.refreshed.emit()

    def _failed(self, e: BaseException) -> None:
        self.status.setText(f"<span style='color:{ERROR_COLOUR}'>refresh failed: {write_error(e)}</span>")

    # ------------------------------------------------------------------ list
    def _refilter(self, *_a: Any) -> None:
        self.model.refilter()

    def _visible(self, keys: np.ndarray) -> np.ndarray:
        state, sev = self.state_box.currentData(), self.severity_box.currentData()
        only_over = self.overdue_check.isChecked()
        out = np.zeros(len(keys), bool)
        for i, k in enumerate(keys.tolist()):
            r = self.model.record(k)
            if r is None:
                continue
            ok = (state == "" or (state == "open" and r["state"] != "closed") or r["state"] == state)
            ok = ok and (sev == 0 or (sev == -1 and r["severity"] is None) or r["severity"] == sev)
            out[i] = ok and (not only_over or self._overdue_now(r))
        return out

    @staticmethod
    def _overdue_now(r: dict[str, Any]) -> bool:
        v = r["countdown"]
        return v > 0 and v < time.time()

    def _row_background(self, key: int) -> QColor | None:
        r = self.model.record(key)
        return OVERDUE_ROW if r is not None and self._overdue_now(r) else None

    def tick(self) -> None:
        """Re-format the rows still counting down (their text and, once overdue, their colour)."""
        keys = [r["id"] for r in self.rows if r["countdown"] > 0]
        if keys:
            self.model.update_rows(np.array(keys, np.int64))

    def visible_records(self) -> list[dict[str, Any]]:
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    def select_incident(self, inc_id: int) -> bool:
        row = self.model.row_of(inc_id)
        if row >= 0:
            self.view.selectRow(row)
        return row >= 0

    def selected_id(self) -> int | None:
        idx = self.view.currentIndex()
        r = self.model.record_at(idx.row()) if idx.isValid() else None
        return None if r is None else int(r["id"])

    def _current_changed(self, _c: QModelIndex, _p: QModelIndex) -> None:
        self.right.setCurrentIndex(0)
        self._load_detail()

    def _load_detail(self) -> None:
        inc_id = self.selected_id()
        if self._detail_task is not None:
            self._detail_task.cancel()
            self._detail_task = None
        if inc_id is None or self.tasks is None:
            self.detail.show_incident(None, self.users)
            return

        def done(d: dict[str, Any]) -> None:
            self._detail_task = None
            if self.selected_id() == d["id"]:
                self.detail.show_incident(d, self.users)

        def failed(e: BaseException) -> None:
            self._detail_task = None
            set_tone(self.detail.message, write_error(e), "error")

        self._detail_task = self.tasks.run(incidents.detail, self.store, inc_id, on_done=done, on_error=failed,
                                           name="incident detail")

    # ------------------------------------------------------------------ writes
    def new_incident(self) -> None:
        self.form.reset(self.users, self.user.login if self.user else "")
        self.right.setCurrentIndex(1)
        self.form.title_edit.setFocus()

    def _log(self, v: dict[str, Any]) -> None:
        if self.tasks is None:
            return
        self.form.log_button.setEnabled(False)

        def done(inc_id: int) -> None:
            self.right.setCurrentIndex(0)
            self._want = inc_id
            set_tone(self.detail.message, f"Incident #{inc_id} logged: triage it.", "ok")
            self.refresh()

        def failed(e: BaseException) -> None:
            self.form.problem.setText(write_error(e))
            self.form.check()

        self.tasks.run(incidents.log_incident, self.store, self.user, v["title"], v["description"], v["detected_by"],
                       v["systems"], v["desks"], on_done=done, on_error=failed, name="log incident")

    def _written(self, inc_id: int) -> None:
        self._want = inc_id
        self.refresh()
