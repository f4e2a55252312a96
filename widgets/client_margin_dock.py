"""The client margin dock (issue 4, "Client margin"): client-specific long and short ratios by account
or client group, for a security or a stock group. They come first in the engine's ratio resolution
(RISK_METHODS §1: account, then client group, then the security's own ratio, then 1.0).

Nothing here writes the ratio table: a new ratio is an insert change request (status "active",
effective now), "Set to expired" an update request; both take effect once a checker approves.
A pending insert is listed as its own row ("pending activation"), and a record with a request
waiting on it says so ("request #12 pending"). "History for client" lists every record of the
selected subject, whatever its status. Every database call runs on the task runner; the task functions
and the form's check are plain Python in `services.client_margin_view`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QDateTime, QModelIndex, Qt, QTimeZone, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
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

from services.client_margin_view import (
    CURRENT,
    SIDES,
    SUBJECT_KINDS,
    TARGET_KINDS,
    ClientMarginSnapshot,
    Lookups,
    load_client_margin,
    submit_expire,
    submit_new_ratio,
    validate_client_ratio,
)
from widgets.records import (
    ERROR_COLOUR,
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
    from services.auth import User
    from services.store import Store

FILTERS = (("active", "Active + pending"), ("all", "All"))
STATUS_COLOURS = {"active": QColor(63, 185, 80), "pending": QColor(227, 179, 65),
                  "expired": QColor(139, 148, 158), "revoked": QColor(248, 81, 73)}
PENDING_ROW = QColor(92, 68, 8)
HK = QTimeZone(b"Asia/Hong_Kong")


def _ratio(v: Any) -> str:
    return "" if v != v else f"{float(v):g}"


def _fields() -> list[Field]:
    return [Field("Subject", "subject", tooltip="account code, or “group: NAME” for a client group"),
            Field("Client", "client"),
            Field("Target", "target", tooltip="security code, or “stock group: NAME”"),
            Field("Side", "side"),
            Field("IM", "im", "number", fmt=_ratio, tooltip="initial margin ratio"),
            Field("MM", "mm", "number", fmt=_ratio, tooltip="maintenance margin ratio"),
            Field("Status", "status", foreground=lambda v: STATUS_COLOURS.get(str(v))),
            Field("Effective from", "effective_from", "time", tooltip="Hong Kong time"),
            Field("Expires", "expires_at", "time", tooltip="Hong Kong time; blank: no expiry"),
            Field("Record", "id", "number", fmt=lambda v: "" if v != v else f"#{int(v)}"),
            Field("Pending request", "request", foreground=lambda v: OVERDUE_TEXT if v else None)]


# ---------------------------------------------------------------------- the dock
class ClientMarginDock(QWidget):
    """Client-specific margin ratios, their change-request form and the history per client."""

    submitted = Signal(int)  # the new change request's id
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: ClientMarginSnapshot | None = None
        self._status_of = np.zeros(0, "<U8")  # record id → status / search text (for filtering)
        self._text_of = np.zeros(0, "<U64")
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._submit_task: Task | None = None
        self._fitted = self._history_fitted = False
        self._build_ui()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        title = QLabel("Client margin — first in the ratio resolution (account, then client group)")
        title.setProperty("role", "caption")
        bar.addWidget(title)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search account / client / code")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(220)
        self.search.setMaximumWidth(260)
        self.search.textChanged.connect(lambda _t: self._refilter())
        bar.addWidget(self.search)
        self.filter_combo = QComboBox()
        for _, label in FILTERS:
            self.filter_combo.addItem(label)
        self.filter_combo.currentIndexChanged.connect(lambda _i: self._refilter())
        bar.addWidget(self.filter_combo)
        bar.addStretch(1)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        self.model: RecordTableModel = RecordTableModel(_fields(), self)
        self.model.row_background = self._row_background
        self.model.set_filter(self._visible)
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        self.history_model = RecordTableModel(_fields(), self)
        self.history_view = make_table(self.history_model)
        self.history_view.sortByColumn(9, Qt.SortOrder.DescendingOrder)
        self.history_label = QLabel("History for client — select a record")
        self.history_label.setProperty("role", "caption")
        history = QWidget()
        hl = QVBoxLayout(history)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.setSpacing(2)
        hl.addWidget(self.history_label)
        hl.addWidget(self.history_view, 1)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.view)
        left.addWidget(history)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 1)
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
        form.setMinimumWidth(340)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(5)
        head = QLabel("New client ratio")
        head.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(head, 0, 0, 1, 3)
        self.subject_kind = QComboBox()
        for _, label in SUBJECT_KINDS:
            self.subject_kind.addItem(label)
        self.subject_edit = QLineEdit()
        self.subject_edit.setPlaceholderText("account code or client group name")
        self.target_kind = QComboBox()
        for _, label in TARGET_KINDS:
            self.target_kind.addItem(label)
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("security code or stock group name")
        self.side_combo = QComboBox()
        self.side_combo.addItems(list(SIDES))
        self.im_edit = QLineEdit()
        self.im_edit.setPlaceholderText("initial ratio")
        self.mm_edit = QLineEdit()
        self.mm_edit.setPlaceholderText("maintenance ratio")
        self.expiry_check = QCheckBox("expires")
        self.expiry_edit = QDateTimeEdit()
        self.expiry_edit.setTimeZone(HK)
        self.expiry_edit.setDateTime(QDateTime.currentDateTime().addDays(30))
        self.expiry_edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.expiry_edit.setCalendarPopup(True)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        rows: list[tuple[str, QWidget, QWidget | None]] = [
            ("Sub&ject", self.subject_edit, self.subject_kind), ("&Target", self.target_edit, self.target_kind),
            ("Si&de", self.side_combo, None), ("&IM", self.im_edit, None), ("&MM", self.mm_edit, None),
            ("E&xpiry", self.expiry_edit, self.expiry_check), ("&Reason", self.reason_edit, None)]
        for i, (caption, w, extra) in enumerate(rows, start=1):
            lab = QLabel(caption)
            lab.setBuddy(w)
            grid.addWidget(lab, i, 0)
            grid.addWidget(w, i, 1, 1, 1 if extra else 2)
            if extra is not None:
                grid.addWidget(extra, i, 2)
        grid.setColumnStretch(1, 1)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 8, 0, 1, 3)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 9, 0, 1, 3)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit)
        grid.addWidget(self.submit_button, 10, 2)
        sep = QFrame()
        sep.setFrameShape(QFrame.Shape.HLine)
        grid.addWidget(sep, 11, 0, 1, 3)
        self.record_label = QLabel("Selected record: none")
        self.record_label.setProperty("role", "caption")
        self.record_label.setWordWrap(True)
        grid.addWidget(self.record_label, 12, 0, 1, 3)
        self.expire_button = QPushButton("Set to &expired")
        self.expire_button.setToolTip("Request that the selected active record stop applying (reason from the form)")
        self.expire_button.clicked.connect(self.expire_selected)
        grid.addWidget(self.expire_button, 13, 0, 1, 2)
        grid.setRowStretch(14, 1)
        for w in (self.subject_edit, self.target_edit, self.im_edit, self.mm_edit, self.reason_edit):
            w.textChanged.connect(self._edited)
        for c in (self.subject_kind, self.target_kind, self.side_combo):
            c.currentIndexChanged.connect(self._edited)
        self.expiry_check.toggled.connect(self._edited)
        self.expiry_edit.dateTimeChanged.connect(self._edited)
        self.reason_edit.returnPressed.connect(self.submit)
        return form

    # ------------------------------------------------------------------ wiring
    def _refilter(self) -> None:
        self.model.refilter()

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()
        if self._submit_task is not None:
            self._submit_task.cancel()
        self._submit_task = None

    def refresh(self) -> None:
        """Read the client ratios again (connect `ApprovalsDock.requests_changed` here)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_client_margin, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="client margin ratios")

    def _loaded(self, snap: ClientMarginSnapshot) -> None:
        self.snapshot = snap
        top = max((r["id"] for r in snap.rows), default=-1) + 1
        self._status_of = np.full(top, "", "<U8")
        self._text_of = np.full(top, "", "<U64")
        for r in snap.rows:
            self._status_of[r["id"]] = r["status"]
            self._text_of[r["id"]] = f"{r['subject']} {r['client']} {r['target']}".lower()[:64]
        self.model.set_records(snap.rows)
        if not self._fitted and snap.rows:
            fit_columns(self.view, 220)
            self._fitted = True
        self.status.setStyleSheet("")
        self.status.setText(f"{len(snap.rows)} records" + ("" if snap.may_request
                                                            else " · view only: you may not request changes"))
        self._show_history()
        self._update_form()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    # ------------------------------------------------------------------ table
    def set_filter(self, mode: str) -> None:
        """Show ``"active"`` (active and pending) or ``"all"`` records."""
        self.filter_combo.setCurrentIndex([m for m, _ in FILTERS].index(mode))

    def _visible(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        mask = np.zeros(keys.shape, bool)
        inside = (keys >= 0) & (keys < self._status_of.shape[0])
        k = keys[inside]
        m = np.ones(k.shape, bool)
        if FILTERS[max(0, self.filter_combo.currentIndex())][0] == "active":
            m &= np.isin(self._status_of[k], CURRENT)
        needle = self.search.text().strip().lower()
        if needle:
            m &= np.char.find(self._text_of[k], needle) >= 0
        mask[inside] = m
        return mask

    def visible_records(self) -> list[dict[str, Any]]:
        """The records the table shows, in view order."""
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    def history_records(self) -> list[dict[str, Any]]:
        """The records the history panel shows (every record of the selected subject)."""
        m = self.history_model
        return [r for r in (m.record_at(i) for i in range(m.rowCount())) if r is not None]

    def select_record(self, record_id: int) -> bool:
        row = self.model.row_of(record_id)
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
        self._show_history()
        self._update_form()

    def _show_history(self) -> None:
        rec = self.selected_record()
        rows = ([r for r in self.snapshot.rows if r["subject_key"] == rec["subject_key"]]
                if self.snapshot and rec else [])
        self.history_label.setText(f"History for client — {rec['subject']} ({len(rows)} records)" if rec
                                   else "History for client — select a record")
        self.history_model.set_records(rows)
        if rows and not self._history_fitted:
            fit_columns(self.history_view, 200)
            self._history_fitted = True

    # ------------------------------------------------------------------ the form
    def _expiry(self) -> datetime | None:
        if not self.expiry_check.isChecked():
            return None
        return datetime.fromtimestamp(self.expiry_edit.dateTime().toSecsSinceEpoch(), UTC)

    def _problem(self) -> tuple[dict[str, Any] | None, str]:
        if self.snapshot is not None and not self.snapshot.may_request:
            return None, "You may view client ratios but not request changes."
        if not (self.subject_edit.text().strip() or self.target_edit.text().strip() or self.im_edit.text().strip()):
            return None, ""  # an empty form says nothing yet
        return validate_client_ratio(
            SUBJECT_KINDS[max(0, self.subject_kind.currentIndex())][0], self.subject_edit.text(),
            TARGET_KINDS[max(0, self.target_kind.currentIndex())][0], self.target_edit.text(),
            self.side_combo.currentText(), self.im_edit.text(), self.mm_edit.text(),
            self.snapshot.lookups if self.snapshot else None, self._expiry())

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _update_form(self) -> None:
        self.expiry_edit.setEnabled(self.expiry_check.isChecked())
        values, why = self._problem()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        busy = self._submit_task is not None
        self.submit_button.setEnabled(values is not None and bool(self.reason_edit.text().strip()) and not busy
                                      and self.snapshot is not None)
        rec = self.selected_record()
        if rec is None:
            self.record_label.setText("Selected record: none")
        else:
            self.record_label.setText(f"Selected record #{rec['id']} · {rec['subject']} · {rec['target']} · "
                                      f"{rec['side']} · {rec['status']}"
                                      + (f" · {rec['request']}" if rec["request"] else ""))
        self.expire_button.setEnabled(rec is not None and rec["status"] == "active" and not rec["request_id"]
                                      and not busy and (self.snapshot is None or self.snapshot.may_request))

    def _reason(self) -> str | None:
        reason = self.reason_edit.text().strip()
        if not reason:
            set_tone(self.message, "Give a reason in the Reason box: the checker decides on it.", "error")
            self.reason_edit.setFocus()
            return None
        return reason

    def submit(self) -> None:
        """Request the form's new ratio; refused inline (nothing submitted) when the form is not valid."""
        if self.store is None or self.user is None or self.tasks is None or self._submit_task is not None:
            return
        if self.snapshot is None:
            return
        values, why = self._problem()
        if values is None:
            self.validation.setText(why or "Enter the subject, the target and the ratios.")
            self.validation.show()
            return
        reason = self._reason()
        if reason is None:
            return
        ctx = {"subject": self.subject_edit.text().strip(), "target": self.target_edit.text().strip()}
        self._run(submit_new_ratio, (self.store, self.user, values, reason, self._expiry(), ctx),
                  f"new ratio for {ctx['subject']} / {ctx['target']}")

    def expire_selected(self) -> None:
        """Request that the selected active record be set to expired (reason from the form)."""
        rec = self.selected_record()
        if rec is None or self.store is None or self.user is None or self._submit_task is not None:
            return
        if rec["status"] != "active" or rec["request_id"]:
            set_tone(self.message, "Only an active record with no pending request can be set to expired.")
            return
        reason = self._reason()
        if reason is None:
            return
        self._run(submit_expire, (self.store, self.user, int(rec["id"]), reason), f"expire record #{rec['id']}")

    def _run(self, fn: Any, args: tuple[Any, ...], what: str) -> None:
        assert self.tasks is not None
        set_tone(self.message, "Submitting…", "info")
        self._submit_task = self.tasks.run(fn, *args, on_done=lambda rid: self._submitted(int(rid), what),
                                           on_error=self._submit_failed, name=f"submit {what}")
        self._update_form()

    def _submitted(self, req_id: int, what: str) -> None:
        self._submit_task = None
        self.reason_edit.blockSignals(True)
        self.reason_edit.clear()
        self.reason_edit.blockSignals(False)
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval ({what})", "ok")
        self._update_form()
        self.submitted.emit(req_id)
        self.refresh()

    def _submit_failed(self, e: BaseException) -> None:
        self._submit_task = None
        set_tone(self.message, error_text(e))
        self._update_form()
        self.refresh()


__all__ = ["ClientMarginDock", "ClientMarginSnapshot", "Lookups", "load_client_margin", "submit_expire",
           "submit_new_ratio", "validate_client_ratio"]
