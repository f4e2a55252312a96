"""The short-sell dock (issue 4): every security's sellable status, and an inline "Rule" form that turns
an edit of the manual status and the inventory thresholds into a four-eyes change request.

The table shows the effective status (sellable green, prohibited red, auto-prohibited amber), the
manual status, the closure and recovery thresholds, the lending inventory and any pending request.
Selecting a row loads its history (auto-prohibit / auto-recover events) and fills the form. Every
database call runs in the task runner; the form validates as it is typed (numbers ≥ 0, recovery ≥
closure, a reason), and the service validates again in the worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
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

from widgets.formatting import CENTER
from widgets.records import (
    ERROR_COLOUR,
    OK_COLOUR,
    OVERDUE_TEXT,
    WARN_COLOUR,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    set_tone,
    value_text,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.store import Store

KIND = "short_sell_rule"
STATUS_COLOURS = {"sellable": QColor(OK_COLOUR), "prohibited": QColor(ERROR_COLOUR),
                  "auto-prohibited": QColor(WARN_COLOUR)}
EVENT_LABELS = {"auto_prohibit": "auto-prohibit", "auto_recover": "auto-recover"}
EVENT_COLOURS = {"auto_prohibit": QColor(WARN_COLOUR), "auto_recover": QColor(OK_COLOUR)}
FILTERS = ("All securities", "Not sellable")
NO_CHANGE = "That is the current rule: nothing to change."


# ---------------------------------------------------------------------- pure parts (no Qt)
def _number(text: str, name: str) -> tuple[float | None, str]:
    t = text.strip().replace(",", "").replace("_", "")
    if not t:
        return None, ""
    try:
        v = float(t)
    except ValueError:
        return None, f"The {name} “{text.strip()}” is not a number."
    if not math.isfinite(v):
        return None, f"The {name} must be a finite number."
    if v < 0:
        return None, f"The {name} must be ≥ 0."
    return v, ""


def validate_rule(closure_text: str, recovery_text: str) -> tuple[tuple[float | None, float | None] | None, str]:
    """((closure, recovery), "") when the thresholds are acceptable (both blank: no inventory rule),
    else (None, why not)."""
    closure, why = _number(closure_text, "closure threshold")
    if why:
        return None, why
    recovery, why = _number(recovery_text, "recovery threshold")
    if why:
        return None, why
    if (closure is None) != (recovery is None):
        return None, "Give both thresholds, or neither (no inventory rule)."
    if closure is not None and recovery is not None and recovery < closure:
        return None, (f"The recovery threshold ({value_text(recovery)}) must be at least the closure "
                      f"threshold ({value_text(closure)}).")
    return (closure, recovery), ""


@dataclass
class ShortSellSnapshot:
    rows: list[dict[str, Any]]  # code, effective, manual, closure, recovery, inventory, pending(_id)
    may_request: bool


def load_short_sell(store: Store, user: User) -> ShortSellSnapshot:
    """Every security's status with its pending rule request (task function)."""
    from services import changes, short_sell
    from services.auth import permitted

    pending: dict[str, int] = {}
    for req in changes.listing(store, status="pending"):
        code = (req.context or {}).get("code")
        if req.kind == KIND and code:
            pending.setdefault(str(code), req.id)  # listing is newest first
    rows = []
    for code, st in sorted(short_sell.statuses(store).items()):
        pid = pending.get(code)
        rows.append({"code": code, "effective": st.effective, "manual": st.manual, "closure": st.closure,
                     "recovery": st.recovery, "inventory": st.inventory, "pending_id": pid,
                     "pending": f"pending #{pid}" if pid else ""})
    return ShortSellSnapshot(rows, permitted(store, user, "request", KIND))


def _num_text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else value_text(float(v))


# ---------------------------------------------------------------------- the dock
class ShortSellDock(QWidget):
    """Short-sell statuses, per-security history and the rule change-request form."""

    submitted = Signal(int)  # the new change request's id
    refreshed = Signal()
    history_loaded = Signal(str)  # the code whose history is now shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: ShortSellSnapshot | None = None
        self.keys: dict[str, int] = {}  # stable integer row keys for codes
        self.code: str | None = None  # the security in the form
        self._codes = np.zeros(0, dtype=object)  # lower-case code by key (for the search)
        self._not_sellable = np.zeros(0, bool)  # by key (for the filter)
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._history_task: Task | None = None
        self._submit_task: Task | None = None
        self._fitted = False
        self._build_ui()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("search code")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._refilter)
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(FILTERS)
        self.filter_combo.currentIndexChanged.connect(self._refilter)
        bar.addWidget(self.search_edit, 1)
        bar.addWidget(self.filter_combo)
        self.count_label = QLabel("")
        self.count_label.setProperty("role", "caption")
        bar.addWidget(self.count_label)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        def status_fg(v: Any) -> QColor | None:
            return STATUS_COLOURS.get(str(v))

        self.model = RecordTableModel([
            Field("Code", "code"),
            Field("Status", "effective", align=CENTER, foreground=status_fg,
                  tooltip="effective status: the manual status, or auto-prohibited by the inventory rule"),
            Field("Manual", "manual", align=CENTER, tooltip="the manual status set by an approved rule"),
            Field("Closure", "closure", "number", fmt=_num_text,
                  tooltip="inventory below this auto-prohibits a sellable security"),
            Field("Recovery", "recovery", "number", fmt=_num_text,
                  tooltip="inventory at or above this lifts an auto-prohibition"),
            Field("Inventory", "inventory", "number", fmt=_num_text, tooltip="lending inventory"),
            Field("Pending", "pending", align=CENTER, tooltip="a rule change waiting for approval",
                  foreground=lambda v: OVERDUE_TEXT if v else None),
        ], self, key="key")
        self.model.set_filter(self._visible_mask)
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

        side = QWidget()
        side_lay = QVBoxLayout(side)
        side_lay.setContentsMargins(0, 0, 0, 0)
        side_lay.setSpacing(6)
        editor = QFrame()
        editor.setProperty("role", "card")
        grid = QGridLayout(editor)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(5)
        heading = QLabel("Rule")
        heading.setStyleSheet("font-weight: 600; font-size: 13px")
        self.code_label = QLabel("Select a security")
        self.code_label.setStyleSheet("font-weight: 600")
        grid.addWidget(heading, 0, 0)
        grid.addWidget(self.code_label, 0, 1)
        self.current_label = QLabel("")
        self.current_label.setProperty("role", "caption")
        self.current_label.setWordWrap(True)
        grid.addWidget(self.current_label, 1, 0, 1, 2)
        self.status_combo = QComboBox()
        self.status_combo.addItems(["sellable", "prohibited"])
        self.status_combo.currentIndexChanged.connect(self._edited)
        self.closure_edit = QLineEdit()
        self.closure_edit.setPlaceholderText("inventory, e.g. 10,000 (blank: no rule)")
        self.recovery_edit = QLineEdit()
        self.recovery_edit.setPlaceholderText("≥ closure, e.g. 50,000")
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason for the change (shown to the checker)")
        for edit in (self.closure_edit, self.recovery_edit, self.reason_edit):
            edit.textChanged.connect(self._edited)
        for row, (caption, w) in enumerate((("S&tatus", self.status_combo), ("&Closure", self.closure_edit),
                                            ("Reco&very", self.recovery_edit), ("&Reason", self.reason_edit)),
                                           start=2):
            label = QLabel(caption)
            label.setBuddy(w)
            grid.addWidget(label, row, 0)
            grid.addWidget(w, row, 1)
        grid.setColumnStretch(1, 1)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        self.validation.hide()
        grid.addWidget(self.validation, 6, 0, 1, 2)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 7, 0, 1, 2)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit)
        grid.addWidget(self.submit_button, 8, 1, Qt.AlignmentFlag.AlignRight)
        self.closure_edit.returnPressed.connect(self.recovery_edit.setFocus)
        self.recovery_edit.returnPressed.connect(self.reason_edit.setFocus)
        self.reason_edit.returnPressed.connect(self.submit)
        side_lay.addWidget(editor)

        self.history_label = QLabel("History")
        self.history_label.setStyleSheet("font-weight: 600")
        side_lay.addWidget(self.history_label)
        self.history_model = RecordTableModel([
            Field("Time (HKT)", "ts", "time"),
            Field("Event", "event", fmt=lambda v: EVENT_LABELS.get(str(v), str(v)),
                  foreground=lambda v: EVENT_COLOURS.get(str(v))),
            Field("Inventory", "inventory", "number", fmt=_num_text),
            Field("Detail", "detail"),
        ], self, key="key")
        self.history_view = make_table(self.history_model)
        self.history_view.setSortingEnabled(False)
        side_lay.addWidget(self.history_view, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        lay.addWidget(split, 1)
        self._update_editor()

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def stop(self) -> None:
        """Cancel every background read and submission (before the runner shuts down)."""
        self._load.cancel()
        for task in (self._history_task, self._submit_task):
            if task is not None:
                task.cancel()
        self._history_task = self._submit_task = None

    def refresh(self) -> None:
        """Read the statuses again (connect `ApprovalsDock.requests_changed` here)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_short_sell, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="short-sell statuses")

    def _loaded(self, snap: ShortSellSnapshot) -> None:
        self.snapshot = snap
        for r in snap.rows:
            r["key"] = self.keys.setdefault(r["code"], len(self.keys))
        n = len(self.keys)
        codes = np.full(n + 1, "", dtype=object)
        not_sellable = np.zeros(n + 1, bool)
        for r in snap.rows:
            codes[r["key"]] = r["code"].lower()
            not_sellable[r["key"]] = r["effective"] != "sellable"
        self._codes, self._not_sellable = codes, not_sellable
        self.model.set_records(snap.rows)
        self._update_count()
        if not self._fitted and snap.rows:
            fit_columns(self.view, 200)
            status_col = self.model.column_of("Status")
            wide = self.view.fontMetrics().horizontalAdvance("auto-prohibited") + 24
            if self.view.horizontalHeader().sectionSize(status_col) < wide:
                self.view.horizontalHeader().resizeSection(status_col, wide)
            self._fitted = True
        self.status.setStyleSheet("")
        self.status.setText("" if snap.may_request else "view only: you may not request rule changes")
        if self.code is not None:
            self._load_history(self.code)
        self._update_editor()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    # ------------------------------------------------------------------ search and filter
    def _visible_mask(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        inside = keys < self._codes.shape[0]
        mask = inside.copy()
        k = keys[inside]
        needle = self.search_edit.text().strip().lower() if hasattr(self, "search_edit") else ""
        sub = np.ones(k.shape[0], bool)
        if needle:
            sub &= np.array([needle in c for c in self._codes[k]], bool)
        if hasattr(self, "filter_combo") and self.filter_combo.currentIndex() == 1:
            sub &= self._not_sellable[k]
        mask[inside] = sub
        return mask

    def _refilter(self) -> None:
        self.model.refilter()
        self._update_count()

    def _update_count(self) -> None:
        total = len(self.snapshot.rows) if self.snapshot else 0
        shown = self.model.rowCount()
        self.count_label.setText(f"{shown:,} of {total:,}" if shown != total else f"{total:,} securities")

    # ------------------------------------------------------------------ selection and history
    def row(self, code: str) -> dict[str, Any] | None:
        key = self.keys.get(code)
        return self.model.record(key) if key is not None else None

    def select_code(self, code: str) -> bool:
        key = self.keys.get(code)
        row = self.model.row_of(key) if key is not None else -1
        if row < 0:
            return False
        self.view.selectRow(row)
        return True

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rec = self.model.record_at(current.row()) if current.isValid() else None
        if rec is None or rec["code"] == self.code:
            return
        self.code = rec["code"]
        self.status_combo.blockSignals(True)
        self.status_combo.setCurrentText(str(rec["manual"]))
        self.status_combo.blockSignals(False)
        for edit, text in ((self.closure_edit, _num_text(rec["closure"])),
                           (self.recovery_edit, _num_text(rec["recovery"])), (self.reason_edit, "")):
            edit.blockSignals(True)
            edit.setText(text)
            edit.blockSignals(False)
        self.message.hide()
        self.history_model.set_records([])
        self._load_history(self.code)
        self._update_editor()

    def _load_history(self, code: str) -> None:
        if self.tasks is None or self.store is None:
            return
        from services import short_sell

        if self._history_task is not None:
            self._history_task.cancel()  # its answer (another code's) is dropped
        self.history_label.setText(f"History — {code}")
        self._history_task = self.tasks.run(
            short_sell.history, self.store, code, on_done=lambda rows: self._history_done(code, rows),
            on_error=self._history_failed, name="short-sell history")

    def _history_done(self, code: str, rows: list[dict[str, Any]]) -> None:
        self._history_task = None
        if code != self.code:
            return
        self.history_model.set_records([{**r, "key": i} for i, r in enumerate(reversed(rows))])  # newest first
        if rows:
            fit_columns(self.history_view, 220)
        self.history_label.setText(f"History — {code}" + ("" if rows else " (no automatic events)"))
        self.history_loaded.emit(code)

    def _history_failed(self, e: BaseException) -> None:
        self._history_task = None
        self.history_label.setText(f"History: {error_text(e)}")

    def history_events(self) -> list[str]:
        """The shown history's events, newest first (tests, status bar)."""
        records = (self.history_model.record_at(r) for r in range(self.history_model.rowCount()))
        return [str(rec["event"]) for rec in records if rec is not None]

    # ------------------------------------------------------------------ the form
    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_editor()

    def _problem(self) -> tuple[tuple[str, float | None, float | None] | None, str]:
        """(status, closure, recovery) to submit, or why the form cannot be submitted now."""
        if self.code is None:
            return None, ""
        if self.snapshot is not None and not self.snapshot.may_request:
            return None, "You may view short-sell rules but not request changes."
        rec = self.row(self.code) or {}
        if rec.get("pending_id"):
            return None, f"{rec['pending']} already waits for a decision on {self.code}: decide or cancel it first."
        values, why = validate_rule(self.closure_edit.text(), self.recovery_edit.text())
        if values is None:
            return None, why
        status = self.status_combo.currentText()
        closure, recovery = values
        if rec and (status, closure, recovery) == (rec.get("manual"), _nan_none(rec.get("closure")),
                                                   _nan_none(rec.get("recovery"))):
            return None, NO_CHANGE
        return (status, closure, recovery), ""

    def _update_editor(self) -> None:
        if self.code is None:
            self.code_label.setText("Select a security")
            self.current_label.setText("")
        else:
            rec = self.row(self.code) or {}
            self.code_label.setText(self.code)
            eff = rec.get("effective", "")
            colour = STATUS_COLOURS.get(eff)
            self.code_label.setStyleSheet("font-weight: 600" + (f"; color: {colour.name()}" if colour else ""))
            inv = _num_text(rec.get("inventory"))
            self.current_label.setText(f"now {eff or '—'} · manual {rec.get('manual', '—')} · inventory "
                                       f"{inv or '—'}")
        values, why = self._problem()
        if why == NO_CHANGE:  # the form at rest (filled with the current rule) is not an error
            why = ""
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        bad = "closure" in why.lower() or "recovery" in why.lower() or "threshold" in why.lower()
        for edit in (self.closure_edit, self.recovery_edit):
            edit.setStyleSheet(f"border: 1px solid {ERROR_COLOUR}" if bad else "")
        ok = values is not None and bool(self.reason_edit.text().strip()) and self._submit_task is None
        self.submit_button.setEnabled(ok)
        editable = self.code is not None and (self.snapshot is None or self.snapshot.may_request)
        for w in (self.status_combo, self.closure_edit, self.recovery_edit, self.reason_edit):
            w.setEnabled(editable)

    def submit(self) -> None:
        """Submit the rule as a change request; refused inline when the form is not valid."""
        if self.code is None or self.store is None or self.user is None or self.tasks is None:
            return
        if self._submit_task is not None:
            return
        values, why = self._problem()
        if values is None:
            self.validation.setText(why or "Enter the rule.")
            self.validation.show()
            return
        reason = self.reason_edit.text().strip()
        if not reason:
            self.validation.setText("Give a reason: the checker decides on it.")
            self.validation.show()
            self.reason_edit.setFocus()
            return
        from services import short_sell

        code = self.code
        status, closure, recovery = values
        set_tone(self.message, "Submitting…", "info")
        self._submit_task = self.tasks.run(
            short_sell.propose_rule, self.store, self.user, code, status, closure, recovery, reason,
            on_done=lambda rid: self._submitted(code, int(rid)), on_error=self._submit_failed,
            name="submit short-sell rule")
        self._update_editor()

    def _submitted(self, code: str, req_id: int) -> None:
        self._submit_task = None
        if self.code == code:
            self.reason_edit.blockSignals(True)
            self.reason_edit.clear()
            self.reason_edit.blockSignals(False)
        set_tone(self.message, f"Request #{req_id} submitted for {code} — awaiting approval.", "ok")
        self.submitted.emit(req_id)
        self.refresh()

    def _submit_failed(self, e: BaseException) -> None:
        self._submit_task = None
        set_tone(self.message, error_text(e))
        self._update_editor()
        self.refresh()


def _nan_none(v: Any) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)
