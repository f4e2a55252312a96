"""The "Trading sessions" tab of the Margin requirements dock (issue 4, "Intraday margin"): the sessions
that decide when intraday-financing accounts use the intraday ratio table, and a form that turns a
new session, an edit, or enabling / disabling one into a four-eyes change request.

The form says what is wrong before anything is sent (times as HH:MM, start before end, no overlap
with another enabled session of the market — pending requests included — and a name unique in the
market), with the same rules the service applies. A caption tells whether intraday ratios apply
right now and until when. Reads and submissions run on the task runner.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from services.lazy import lazy_module
from widgets.records import (
    ERROR_COLOUR,
    OK_COLOUR,
    OVERDUE_TEXT,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    set_tone,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services import sessions as ts
    from services.auth import User
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    ts = lazy_module("services.sessions")

PENDING_ROW = QColor(92, 68, 8)
MUTED = QColor(139, 148, 158)
YES = QColor(63, 185, 80)


def _fields() -> list[Field]:
    return [Field("Market", "market"),
            Field("Session", "name"),
            Field("Start", "start", tooltip="Hong Kong time, inclusive"),
            Field("End", "end", tooltip="Hong Kong time, exclusive"),
            Field("Intraday ratios", "intraday", foreground=lambda v: YES if v == "yes" else MUTED,
                  tooltip="intraday-financing accounts use the intraday ratio table inside this session"),
            Field("State", "enabled", foreground=lambda v: None if v == "enabled" else MUTED),
            Field("Pending request", "request", foreground=lambda v: OVERDUE_TEXT if v else None)]


# ---------------------------------------------------------------------- the panel
class SessionsPanel(QWidget):
    """Trading sessions and their change-request form."""

    submitted = Signal(int)
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: ts.SessionsView | None = None
        self.clock = time.time
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._submit_task: Task | None = None
        self._fitted = False
        self._now_timer = QTimer(self)
        self._now_timer.setInterval(30_000)
        self._now_timer.timeout.connect(self._show_now)
        self._build_ui()

    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        title = QLabel("Trading sessions (Hong Kong time)")
        title.setToolTip("Inside an enabled session marked intraday, on a trading day, intraday-financing "
                         "accounts use the intraday ratio table; elsewhere the long table")
        title.setProperty("role", "caption")
        bar.addWidget(title)
        bar.addStretch(1)
        self.now_label = QLabel("")
        bar.addWidget(self.now_label)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)
        self.model = RecordTableModel(_fields(), self)
        self.model.row_background = self._row_background
        self.view = make_table(self.model)
        self.view.sortByColumn(2, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        split.addWidget(self._build_form())
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        lay.addWidget(split, 1)
        self._update_form()

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(330)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(5)
        self.form_title = QLabel("New session")
        self.form_title.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(self.form_title, 0, 0, 1, 4)
        self.market_edit = QLineEdit("HK")
        self.market_edit.setMaximumWidth(70)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("e.g. Morning")
        self.start_edit = QLineEdit()
        self.start_edit.setPlaceholderText("09:30")
        self.end_edit = QLineEdit()
        self.end_edit.setPlaceholderText("12:00")
        self.intraday_check = QCheckBox("intraday ratios apply")
        self.intraday_check.setChecked(True)
        self.enabled_check = QCheckBox("enabled")
        self.enabled_check.setChecked(True)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        pairs = ((1, 0, "&Market", self.market_edit), (1, 2, "&Name", self.name_edit),
                 (2, 0, "&Start", self.start_edit), (2, 2, "&End", self.end_edit))
        for row, col, caption, w in pairs:
            lab = QLabel(caption)
            lab.setBuddy(w)
            grid.addWidget(lab, row, col)
            grid.addWidget(w, row, col + 1)
        checks = QHBoxLayout()
        checks.addWidget(self.intraday_check)
        checks.addWidget(self.enabled_check)
        checks.addStretch(1)
        grid.addLayout(checks, 3, 1, 1, 3)
        lab = QLabel("&Reason")
        lab.setBuddy(self.reason_edit)
        grid.addWidget(lab, 4, 0)
        grid.addWidget(self.reason_edit, 4, 1, 1, 3)
        grid.setColumnStretch(3, 1)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 5, 0, 1, 4)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 6, 0, 1, 4)
        buttons = QHBoxLayout()
        self.new_button = QPushButton("&New")
        self.new_button.setToolTip("Clear the form for a new session")
        self.new_button.clicked.connect(self.clear_form)
        self.toggle_button = QPushButton("&Disable")
        self.toggle_button.setToolTip("Request that the selected session be disabled / enabled (reason from the form)")
        self.toggle_button.clicked.connect(self.toggle_enabled)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit)
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.toggle_button)
        buttons.addStretch(1)
        buttons.addWidget(self.submit_button)
        grid.addLayout(buttons, 7, 0, 1, 4)
        grid.setRowStretch(8, 1)
        for w in (self.market_edit, self.name_edit, self.start_edit, self.end_edit, self.reason_edit):
            w.textChanged.connect(self._edited)
        for c in (self.intraday_check, self.enabled_check):
            c.toggled.connect(self._edited)
        self.reason_edit.returnPressed.connect(self.submit)
        return form

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        """Set the store and runner; the owning dock's `refresh` reads the sessions."""
        self.store, self.user, self.tasks = store, user, tasks
        self._now_timer.start()

    def stop(self) -> None:
        self._now_timer.stop()
        self._load.cancel()
        if self._submit_task is not None:
            self._submit_task.cancel()
        self._submit_task = None

    def refresh(self) -> None:
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(ts.load_view, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="trading sessions")

    def _loaded(self, snap: ts.SessionsView) -> None:
        self.snapshot = snap
        self.model.set_records(snap.rows)
        if not self._fitted and snap.rows:
            fit_columns(self.view, 220)
            self._fitted = True
        parts = [f"{len(snap.pending)} pending"] if snap.pending else []
        if not snap.may_request:
            parts.append("view only: you may not request session changes")
        self.status.setStyleSheet("")
        self.status.setText(" · ".join(parts))
        self._show_now()
        self._update_form()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    def _show_now(self) -> None:
        if self.snapshot is None:
            return
        active, text = ts.now_text(self.clock(), self.snapshot.sessions, self.snapshot.calendar)
        self.now_label.setText(text)
        self.now_label.setStyleSheet(f"color: {OK_COLOUR}" if active else "")

    # ------------------------------------------------------------------ table
    def visible_records(self) -> list[dict[str, Any]]:
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    def select_record(self, session_id: int) -> bool:
        row = self.model.row_of(session_id)
        if row < 0:
            return False
        self.view.selectRow(row)
        return True

    def selected_record(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    def _row_background(self, key: int) -> QColor | None:
        rec = self.model.record(key)
        return PENDING_ROW if rec is not None and rec["request_id"] else None

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rec = self.model.record_at(current.row()) if current.isValid() else None
        if rec is None:
            return
        for edit, value in ((self.market_edit, rec["market"]), (self.name_edit, rec["name"]),
                            (self.start_edit, rec["start"]), (self.end_edit, rec["end"])):
            edit.blockSignals(True)
            edit.setText(value)
            edit.blockSignals(False)
        for check, on in ((self.intraday_check, rec["intraday"] == "yes"),
                          (self.enabled_check, rec["enabled"] == "enabled")):
            check.blockSignals(True)
            check.setChecked(on)
            check.blockSignals(False)
        self.message.hide()
        self._update_form()

    # ------------------------------------------------------------------ the form
    def clear_form(self) -> None:
        self.view.clearSelection()
        self.view.setCurrentIndex(QModelIndex())
        for edit in (self.name_edit, self.start_edit, self.end_edit, self.reason_edit):
            edit.clear()
        self.intraday_check.setChecked(True)
        self.enabled_check.setChecked(True)
        self.message.hide()
        self._update_form()
        self.name_edit.setFocus()

    def _editing(self) -> dict[str, Any] | None:
        """The selected existing session the form edits (None: the form proposes a new one)."""
        rec = self.selected_record()
        return rec if rec is not None and not rec["proposed"] else None

    def _problem(self, enabled: bool | None = None) -> tuple[ts.TradingSession | None, str]:
        if self.snapshot is not None and not self.snapshot.may_request:
            return None, "You may view sessions but not request changes."
        if not (self.name_edit.text().strip() or self.start_edit.text().strip() or self.end_edit.text().strip()):
            return None, ""
        rec = self.selected_record()
        if rec is not None and rec["request_id"]:
            return None, f"{rec['market']} {rec['name']} already has {rec['request']}."
        start, why = ts.parse_hhmm(self.start_edit.text(), "start")
        if start is None:
            return None, why
        end, why = ts.parse_hhmm(self.end_edit.text(), "end")
        if end is None:
            return None, why
        editing = self._editing()
        s = ts.TradingSession(editing["id"] if editing else -1, self.market_edit.text().strip().upper(),
                              self.name_edit.text().strip(), start, end, self.intraday_check.isChecked(),
                              self.enabled_check.isChecked() if enabled is None else enabled)
        why = ts.session_problem(s, self.snapshot.projected if self.snapshot else [])
        if not why and editing is not None and enabled is None and all(
                getattr(s, k) == getattr(self._session(editing["id"]), k) for k in ts.EDITABLE):
            why = "Nothing to change: edit a field, or press New for a new session."
        return (None, why) if why else (s, "")

    def _session(self, session_id: int) -> ts.TradingSession | None:
        return next((s for s in self.snapshot.sessions if s.id == session_id), None) if self.snapshot else None

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _update_form(self) -> None:
        editing = self._editing()
        self.form_title.setText(f"Edit session — {editing['market']} {editing['name']}" if editing
                                else "New session")
        values, why = self._problem()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        busy = self._submit_task is not None
        self.submit_button.setEnabled(values is not None and bool(self.reason_edit.text().strip()) and not busy)
        self.toggle_button.setText("&Enable" if editing and editing["enabled"] != "enabled" else "&Disable")
        self.toggle_button.setEnabled(editing is not None and not editing["request_id"] and not busy
                                      and (self.snapshot is None or self.snapshot.may_request))

    def _reason(self) -> str | None:
        reason = self.reason_edit.text().strip()
        if not reason:
            set_tone(self.message, "Give a reason in the Reason box: the checker decides on it.", "error")
            self.reason_edit.setFocus()
            return None
        return reason

    def submit(self) -> None:
        """Propose the form's session (new or edited) as a change request; refused inline when invalid."""
        if self.store is None or self.user is None or self.tasks is None or self._submit_task is not None:
            return
        s, why = self._problem()
        if s is None:
            self.validation.setText(why or "Enter the session's name, start and end.")
            self.validation.show()
            return
        reason = self._reason()
        if reason is None:
            return
        editing = self._editing()
        fn = partial(ts.submit_session, session_id=editing["id"] if editing else None, market=s.market,
                     name=s.name, start_hhmm=s.start_hhmm, end_hhmm=s.end_hhmm, intraday=s.intraday,
                     enabled=s.enabled)
        self._run(fn, (self.store, self.user, reason), f"{s.market} {s.name} {s.hours}")

    def toggle_enabled(self) -> None:
        """Request that the selected session be disabled (or enabled again)."""
        editing = self._editing()
        if editing is None or self.store is None or self.user is None or self._submit_task is not None:
            return
        enable = editing["enabled"] != "enabled"
        if enable:
            s = self._session(editing["id"])
            why = ts.session_problem(replace(s, enabled=True), self.snapshot.projected) if s and self.snapshot else ""
            if why:
                self.validation.setText(why)
                self.validation.show()
                return
        reason = self._reason()
        if reason is None:
            return
        self._run(ts.set_enabled, (self.store, self.user, int(editing["id"]), enable, reason),
                  f"{'enable' if enable else 'disable'} {editing['market']} {editing['name']}")

    def _run(self, fn: Any, args: tuple[Any, ...], what: str) -> None:
        assert self.tasks is not None
        set_tone(self.message, "Submitting…", "info")
        self._submit_task = self.tasks.run(fn, *args, on_done=lambda rid: self._submitted(int(rid), what),
                                           on_error=self._submit_failed, name=f"submit {what}")
        self._update_form()

    def _submitted(self, req_id: int, what: str) -> None:
        self._submit_task = None
        # a proposed new session leaves the form (it is a row of its own now); an edit stays selected
        edits = [self.reason_edit] if self._editing() else [self.reason_edit, self.name_edit, self.start_edit,
                                                             self.end_edit]
        for w in edits:
            w.blockSignals(True)
            w.clear()
            w.blockSignals(False)
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval ({what})", "ok")
        self._update_form()
        self.submitted.emit(req_id)
        self.refresh()

    def _submit_failed(self, e: BaseException) -> None:
        self._submit_task = None
        set_tone(self.message, error_text(e))
        self._update_form()
        self.refresh()
