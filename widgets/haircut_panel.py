"""One page of the haircuts dock: a table of targets (securities or indices) with their haircut, the
change-request form for the selected one, and its modification records (every haircut request made
on it: maker, checker, before → after, status, times).

The page shows what the dock's background read delivered and submits through the task runner; it
never reads the database itself. What differs between securities and indices is a `HaircutTarget`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
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
    OVERDUE_TEXT,
    Field,
    RecordTableModel,
    error_text,
    set_tone,
    status_badge,
    status_badge_text,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.store import Store
    pass
    from services import haircuts as _haircuts
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    _haircuts = lazy_module("services.haircuts")

PENDING_ROW = QColor(92, 68, 8)


@dataclass
class HaircutTarget:
    """What a page edits: its kind of request, the words for it, its columns and its submit call
    ``submit(store, user, target_id, haircut, reason, record) -> request id`` (runs in a worker)."""

    kind: str
    noun: str  # "security" / "index"
    caption: str
    fields: list[Field]
    submit: Callable[[Store, User, int, float, str, dict[str, Any]], int]
    describe: Callable[[dict[str, Any]], str]


def record_fields() -> list[Field]:
    """The modification records' columns."""
    return [Field("Request", "request"),
            Field("Status", "status", background=status_badge, foreground=status_badge_text),
            Field("Change", "change", tooltip="haircut before → after"),
            Field("Maker", "maker"),
            Field("Checker", "checker"),
            Field("Submitted", "created_at", "time", tooltip="Hong Kong time"),
            Field("Decided", "decided_at", "time", tooltip="Hong Kong time"),
            Field("Reason", "reason")]


def pending_field() -> Field:
    return Field("Pending request", "request", foreground=lambda v: OVERDUE_TEXT if v else None)


def ratio_text(v: Any) -> str:
    return "" if v != v else f"{v:g}"


class HaircutPanel(QWidget):
    """Targets, the form for the selected one and its modification records."""

    submitted = Signal(int)
    refresh_requested = Signal()

    def __init__(self, target: HaircutTarget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.target = target
        self._a_noun = f"a{'n' if target.noun[0] in 'aeiou' else ''} {target.noun}"  # "an index"
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.rows: list[dict[str, Any]] | None = None
        self.records: dict[int, list[dict[str, Any]]] = {}
        self.may_request = True
        self._text_of = np.zeros(0, "<U96")
        self._submit_task: Task | None = None
        self._fitted = self._records_fitted = False
        self._build_ui()

    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        title = QLabel(self.target.caption)
        title.setProperty("role", "caption")
        bar.addWidget(title)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search code / name")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(220)
        self.search.setMaximumWidth(260)
        self.search.textChanged.connect(lambda _t: self._refilter())
        bar.addWidget(self.search)
        bar.addStretch(1)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh_requested.emit)
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        self.model = RecordTableModel(self.target.fields, self)
        self.model.row_background = self._row_background
        self.model.set_filter(self._visible)
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        self.records_model = RecordTableModel(record_fields(), self)
        self.records_view = make_table(self.records_model)
        self.records_view.sortByColumn(5, Qt.SortOrder.DescendingOrder)
        self.records_label = QLabel(f"Modification records — select {self._a_noun}")
        self.records_label.setProperty("role", "caption")
        below = QWidget()
        bl = QVBoxLayout(below)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.setSpacing(2)
        bl.addWidget(self.records_label)
        bl.addWidget(self.records_view, 1)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.view)
        left.addWidget(below)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 1)
        left.setSizes([300, 110])
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self._build_form())
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        lay.addWidget(split, 1)
        self._update_form()

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(320)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(5)
        head = QLabel(f"Change {self.target.noun} haircut")
        head.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(head, 0, 0, 1, 2)
        self.record_label = QLabel("")
        self.record_label.setProperty("role", "caption")
        self.record_label.setWordWrap(True)
        grid.addWidget(self.record_label, 1, 0, 1, 2)
        self.haircut_edit = QLineEdit()
        self.haircut_edit.setPlaceholderText("new haircut, 0 to 1")
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        for i, (caption, w) in enumerate((("&Haircut", self.haircut_edit), ("&Reason", self.reason_edit)), start=2):
            lab = QLabel(caption)
            lab.setBuddy(w)
            grid.addWidget(lab, i, 0)
            grid.addWidget(w, i, 1)
        grid.setColumnStretch(1, 1)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 4, 0, 1, 2)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 5, 0, 1, 2)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit)
        grid.addWidget(self.submit_button, 6, 1)
        grid.setRowStretch(7, 1)
        for w in (self.haircut_edit, self.reason_edit):
            w.textChanged.connect(self._edited)
        self.reason_edit.returnPressed.connect(self.submit)
        return form

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def stop(self) -> None:
        if self._submit_task is not None:
            self._submit_task.cancel()
        self._submit_task = None

    def show_rows(self, rows: list[dict[str, Any]], records: dict[int, list[dict[str, Any]]],
                  may_request: bool) -> None:
        """Show one background read: rows diffed by id, so the selection survives a reload."""
        self.rows, self.records, self.may_request = rows, records, may_request
        top = max((r["id"] for r in rows), default=-1) + 1
        self._text_of = np.full(top, "", "<U96")
        for r in rows:
            self._text_of[r["id"]] = f"{r['code']} {r['name']}".lower()[:96]
        self.model.set_records(rows)
        if not self._fitted and rows:
            fit_columns(self.view, 260)
            self._fitted = True
        n_pending = sum(1 for r in rows if r["request_id"])
        noun = "indices" if self.target.noun == "index" else "securities"
        self.status.setStyleSheet("")
        self.status.setText(f"{len(rows)} {noun}" + (f" · {n_pending} pending" if n_pending else "")
                            + ("" if may_request else " · view only: you may not request changes"))
        self._show_records()
        self._update_form()

    def show_error(self, text: str) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(text)

    # ------------------------------------------------------------------ table
    def _refilter(self) -> None:
        self.model.refilter()

    def _visible(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        mask = np.zeros(keys.shape, bool)
        inside = (keys >= 0) & (keys < self._text_of.shape[0])
        needle = self.search.text().strip().lower()
        mask[inside] = (np.char.find(self._text_of[keys[inside]], needle) >= 0) if needle else True
        return mask

    def visible_records(self) -> list[dict[str, Any]]:
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    def modification_records(self) -> list[dict[str, Any]]:
        """The modification records shown, in view order."""
        m = self.records_model
        return [r for r in (m.record_at(i) for i in range(m.rowCount())) if r is not None]

    def select_record(self, target_id: int) -> bool:
        row = self.model.row_of(target_id)
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

    def _current_changed(self, _current: QModelIndex, _previous: QModelIndex) -> None:
        self._show_records()
        self._update_form()

    def _show_records(self) -> None:
        rec = self.selected_record()
        rows = self.records.get(int(rec["id"]), []) if rec is not None else []
        if rec is None:
            self.records_label.setText(f"Modification records — select {self._a_noun}")
        else:
            self.records_label.setText(f"Modification records — {rec['code']} ({len(rows)} "
                                       f"request{'' if len(rows) == 1 else 's'})")
        self.records_model.set_records(rows)
        if rows and not self._records_fitted:
            fit_columns(self.records_view, 200)
            self._records_fitted = True

    # ------------------------------------------------------------------ the form
    def _problem(self) -> tuple[float | None, str]:
        if self.rows is not None and not self.may_request:
            return None, "You may view haircuts but not request changes."
        rec = self.selected_record()
        if not self.haircut_edit.text().strip():
            return None, ""
        value, why = _haircuts.validate_haircut(self.haircut_edit.text())
        if value is None:
            return None, why
        if rec is None:
            return None, f"Select {self._a_noun} in the table."
        if rec["request_id"]:
            return None, f"{rec['code']} already has {rec['request']}."
        return value, ""

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _update_form(self) -> None:
        value, why = self._problem()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        self.submit_button.setEnabled(value is not None and bool(self.reason_edit.text().strip())
                                      and self._submit_task is None and self.rows is not None)
        rec = self.selected_record()
        self.record_label.setText(f"Select {self._a_noun} in the table." if rec is None
                                  else self.target.describe(rec))

    def submit(self) -> None:
        """Request the new haircut for the selected target; refused inline when not valid."""
        if self.store is None or self.user is None or self.tasks is None or self._submit_task is not None:
            return
        if self.rows is None:
            return
        value, why = self._problem()
        if value is None:
            self.validation.setText(why or "Enter the new haircut.")
            self.validation.show()
            return
        reason = self.reason_edit.text().strip()
        if not reason:
            set_tone(self.message, "Give a reason in the Reason box: the checker decides on it.", "error")
            self.reason_edit.setFocus()
            return
        rec = self.selected_record()
        assert rec is not None
        what = f"haircut {value:g} for {rec['code']}"
        set_tone(self.message, "Submitting…", "info")
        self._submit_task = self.tasks.run(
            self.target.submit, self.store, self.user, int(rec["id"]), value, reason, rec,
            on_done=lambda rid: self._submitted(int(rid), what), on_error=self._submit_failed,
            name=f"submit {what}")
        self._update_form()

    def _submitted(self, req_id: int, what: str) -> None:
        self._submit_task = None
        for w in (self.haircut_edit, self.reason_edit):
            w.blockSignals(True)
            w.clear()
            w.blockSignals(False)
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval ({what})", "ok")
        self._update_form()
        self.submitted.emit(req_id)

    def _submit_failed(self, e: BaseException) -> None:
        self._submit_task = None
        set_tone(self.message, error_text(e))
        self._update_form()
        self.refresh_requested.emit()
