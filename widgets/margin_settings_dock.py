"""The stock margin settings dock (issue 4, "Margin requirements"): the setting records of the long,
short-sell and intraday ratio tables with their derived state, and a side form that turns a new or
edited ratio into a four-eyes change request instead of writing the table.

Every record shows whether it is pending, in force, superseded, expired or revoked, and whether a
change request waits on it ("request #12 pending"); a pending record can be brought into force now
("Sync now") or never ("Cancel sync"), each again a change request with the reason typed in the
form. All reads and writes run on the task runner; the widget only shows the snapshot a read
delivered, so a slow database never freezes the desk.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QDateTime, QModelIndex, Qt, QTimeZone, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QCompleter,
    QDateTimeEdit,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTabBar,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.lazy import lazy_module
from widgets.records import (
    ERROR_COLOUR,
    OVERDUE_TEXT,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    set_tone,
)
from widgets.sessions_panel import SessionsPanel
from widgets.stock_status import StatusRecordModel, StockStatusRefresher, status_field
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services import ratio_settings
    from services.auth import User
    from services.ratio_settings import MarginSettingsSnapshot
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    ratio_settings = lazy_module("services.ratio_settings")

TABLES = (("long", "Long"), ("short", "Short-sell"), ("intraday", "Intraday"))
CURRENT_STATES = ("in force", "pending")  # shown unless "show superseded / revoked" is ticked
PENDING_ROW = QColor(92, 68, 8)  # amber row background for a pending setting record
STATE_COLOURS = {"pending": QColor(227, 179, 65), "in force": QColor(63, 185, 80),
                 "superseded": QColor(139, 148, 158), "expired": QColor(139, 148, 158),
                 "revoked": QColor(248, 81, 73)}
HK = QTimeZone(b"Asia/Hong_Kong")


# ---------------------------------------------------------------------- pure parts (no Qt)
def validate_setting(table: str, code: str, im_text: str, mm_text: str, codes: set[str] | None,
                     effective: datetime | None = None, expires: datetime | None = None
                     ) -> tuple[tuple[str, float, float] | None, str]:
    """((code, im, mm), "") when the form may be submitted, else (None, why not) — the same rules
    as `ratio_settings.propose`, said before anything is sent."""
    code = code.strip().upper()
    if not code:
        return None, ""
    if codes is not None and code not in codes:
        return None, f"Unknown security code “{code}”."
    if not im_text.strip() or not mm_text.strip():
        return None, "Enter both the initial (IM) and maintenance (MM) ratios."
    try:
        im, mm = float(im_text.strip()), float(mm_text.strip())
    except ValueError:
        return None, "The ratios must be numbers, e.g. 0.5 (or 1.5 for short-sell)."
    if not (math.isfinite(im) and math.isfinite(mm)):
        return None, "The ratios must be finite numbers."
    problem = ratio_settings.setting_problem(table, im, mm, effective, expires)
    if problem:
        return None, problem[0].upper() + problem[1:] + "."
    return (code, im, mm), ""


def _ratio(v: Any) -> str:
    return "" if v != v else f"{float(v):g}"


def _record_fields(with_table: bool) -> list[Field]:
    fields = [Field("Code", "code"), Field("Table", "table") if with_table else status_field()]
    return [*fields,
            Field("IM", "im", "number", fmt=_ratio, tooltip="initial margin ratio"),
            Field("MM", "mm", "number", fmt=_ratio, tooltip="maintenance margin ratio"),
            Field("State", "state", foreground=lambda v: STATE_COLOURS.get(str(v))),
            Field("Effective from", "effective_from", "time", tooltip="Hong Kong time"),
            Field("Expires", "expires_at", "time", tooltip="Hong Kong time; blank: no expiry"),
            Field("Record", "id", "number", fmt=lambda v: "" if v != v else f"#{int(v)}"),
            Field("Pending request", "request", foreground=lambda v: OVERDUE_TEXT if v else None)]


def _to_py(dt: QDateTime) -> datetime:
    return datetime.fromtimestamp(dt.toSecsSinceEpoch(), UTC)


# ---------------------------------------------------------------------- the dock
class MarginSettingsDock(QWidget):
    """Stock margin setting records (long / short-sell / intraday) and their change-request form."""

    submitted = Signal(int)  # the new change request's id
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: MarginSettingsSnapshot | None = None
        self.codes: set[str] | None = None
        self._table_of = np.zeros(0, "<U8")  # record id → table, state, lower-case code (for filtering)
        self._state_of = np.zeros(0, "<U10")
        self._code_of = np.zeros(0, "<U16")
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._submit_task: Task | None = None
        self._fitted = self._history_fitted = False
        self._build_ui()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 2, 4, 4)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        page = QWidget()
        self.sessions = SessionsPanel()
        self.tabs.addTab(page, "Stock margin ratios")
        self.tabs.addTab(self.sessions, "Trading sessions")
        outer.addWidget(self.tabs)
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        self.switcher = QTabBar()
        for _, label in TABLES:
            self.switcher.addTab(label)
        self.switcher.setDrawBase(False)
        self.switcher.currentChanged.connect(self._table_changed)
        bar.addWidget(self.switcher)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search code")
        self.search.setClearButtonEnabled(True)
        self.search.setMaximumWidth(200)
        self.search.textChanged.connect(lambda _t: self._refilter())
        bar.addWidget(self.search)
        self.show_all = QCheckBox("Show superseded / revoked")
        self.show_all.setToolTip("Also list superseded, expired and revoked records (default: in force and pending)")
        self.show_all.toggled.connect(lambda _on: self._refilter())
        bar.addWidget(self.show_all)
        bar.addStretch(1)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.model = StatusRecordModel(_record_fields(False), self)
        self.stock_status = StockStatusRefresher(self.model, self.status, self)
        bar.addWidget(self.stock_status.button)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        self.model.row_background = self._row_background
        self.model.set_filter(self._visible)
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        self.history_model = RecordTableModel(_record_fields(True), self)
        self.history_model.row_background = self._history_background
        self.history_view = make_table(self.history_model)
        self.history_view.sortByColumn(len(self.history_model.fields) - 2, Qt.SortOrder.DescendingOrder)
        self.history_label = QLabel("History — select a record")
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
        form.setMinimumWidth(330)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(5)
        self.form_title = QLabel("New / edit setting — Long")
        self.form_title.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(self.form_title, 0, 0, 1, 3)
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText("security code, e.g. 700.HK")
        self.completer = QCompleter([], self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.code_edit.setCompleter(self.completer)
        self.im_edit = QLineEdit()
        self.im_edit.setPlaceholderText("initial ratio")
        self.mm_edit = QLineEdit()
        self.mm_edit.setPlaceholderText("maintenance ratio")
        self.effective_edit = QDateTimeEdit(QDateTime.currentDateTime())
        self.effective_edit.setTimeZone(HK)
        self.effective_edit.setDateTime(QDateTime.currentDateTime())
        self.effective_edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.effective_edit.setCalendarPopup(True)
        self.now_check = QCheckBox("now")
        self.now_check.setToolTip("In force as soon as the request is approved")
        self.now_check.setChecked(True)
        self.expiry_check = QCheckBox("expires")
        self.expiry_edit = QDateTimeEdit(QDateTime.currentDateTime().addDays(30))
        self.expiry_edit.setTimeZone(HK)
        self.expiry_edit.setDateTime(QDateTime.currentDateTime().addDays(30))
        self.expiry_edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.expiry_edit.setCalendarPopup(True)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        rows: list[tuple[str, QWidget, QWidget | None]] = [
            ("&Code", self.code_edit, None), ("&IM", self.im_edit, None), ("&MM", self.mm_edit, None),
            ("&Effective from", self.effective_edit, self.now_check),
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
        grid.addWidget(self.validation, 7, 0, 1, 3)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 8, 0, 1, 3)
        buttons = QHBoxLayout()
        self.new_button = QPushButton("&New")
        self.new_button.setToolTip("Clear the form for a new setting")
        self.new_button.clicked.connect(self.clear_form)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit)
        buttons.addWidget(self.new_button)
        buttons.addStretch(1)
        buttons.addWidget(self.submit_button)
        grid.addLayout(buttons, 9, 0, 1, 3)
        sep = QFrame()
        sep.setFrameShape(QFrame.Shape.HLine)
        grid.addWidget(sep, 10, 0, 1, 3)
        self.record_label = QLabel("Selected record: none")
        self.record_label.setProperty("role", "caption")
        self.record_label.setWordWrap(True)
        grid.addWidget(self.record_label, 11, 0, 1, 3)
        actions = QHBoxLayout()
        self.sync_button = QPushButton("S&ync now")
        self.sync_button.setToolTip("Request that the selected pending record apply now (reason from the form)")
        self.sync_button.clicked.connect(lambda: self._record_action("sync"))
        self.cancel_sync_button = QPushButton("Cancel s&ync")
        self.cancel_sync_button.setToolTip("Request that the selected pending record never apply (revoked)")
        self.cancel_sync_button.clicked.connect(lambda: self._record_action("cancel"))
        actions.addWidget(self.sync_button)
        actions.addWidget(self.cancel_sync_button)
        actions.addStretch(1)
        grid.addLayout(actions, 12, 0, 1, 3)
        grid.setRowStretch(13, 1)
        for w in (self.code_edit, self.im_edit, self.mm_edit, self.reason_edit):
            w.textChanged.connect(self._edited)
        for c in (self.now_check, self.expiry_check):
            c.toggled.connect(self._edited)
        for d in (self.effective_edit, self.expiry_edit):
            d.dateTimeChanged.connect(self._edited)
        self.reason_edit.returnPressed.connect(self.submit)
        return form

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.stock_status.set_context(store, tasks)
        self.sessions.set_context(store, user, tasks)
        self.refresh()

    def stop(self) -> None:
        """Cancel the reads and any submission in flight (their results are dropped)."""
        self._load.cancel()
        self.stock_status.stop()
        self.sessions.stop()
        if self._submit_task is not None:
            self._submit_task.cancel()
        self._submit_task = None

    def refresh(self) -> None:
        """Read the records again (connect `ApprovalsDock.requests_changed` here)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()
        self.sessions.refresh()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(ratio_settings.load_margin_settings, self.store, self.user, on_done=on_done,
                              on_error=on_error, name="margin setting records")

    def _loaded(self, snap: MarginSettingsSnapshot) -> None:
        self.snapshot = snap
        if self.codes != set(snap.codes):
            self.completer.model().setStringList(snap.codes)  # type: ignore[attr-defined]
        self.codes = set(snap.codes)
        n = max((r["id"] for r in snap.rows), default=-1) + 1
        self._table_of, self._state_of = np.full(n, "", "<U8"), np.full(n, "", "<U10")
        self._code_of = np.full(n, "", "<U16")
        for r in snap.rows:
            i = r["id"]
            self._table_of[i], self._state_of[i], self._code_of[i] = r["table"], r["state"], r["code"].lower()
        self.model.set_records(snap.rows)
        self.stock_status.set_baseline(snap.stock_status)
        if not self._fitted and snap.rows:
            fit_columns(self.view, 220)
            self._fitted = True
        self.status.setStyleSheet("")
        self.status.setText("" if snap.may_request else "view only: you may not request ratio changes")
        self._show_history()
        self._update_form()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    # ------------------------------------------------------------------ the table
    @property
    def table(self) -> str:
        """The ratio table shown: long, short or intraday."""
        return TABLES[max(0, self.switcher.currentIndex())][0]

    def set_table(self, table: str) -> None:
        self.switcher.setCurrentIndex([t for t, _ in TABLES].index(table))

    def _visible(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        mask = np.zeros(keys.shape, bool)
        inside = (keys >= 0) & (keys < self._table_of.shape[0])
        k = keys[inside]
        m = self._table_of[k] == self.table
        if not self.show_all.isChecked():
            m &= np.isin(self._state_of[k], CURRENT_STATES)
        needle = self.search.text().strip().lower()
        if needle:
            m &= np.char.find(self._code_of[k], needle) >= 0
        mask[inside] = m
        return mask

    def _refilter(self) -> None:
        self.model.refilter()

    def _table_changed(self, _index: int) -> None:
        self.form_title.setText(f"New / edit setting — {dict(TABLES)[self.table]}")
        self._refilter()
        self._update_form()

    def visible_records(self) -> list[dict[str, Any]]:
        """The records the table shows, in view order."""
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

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
        return PENDING_ROW if rec is not None and rec["state"] == "pending" else None

    def _history_background(self, key: int) -> QColor | None:
        rec = self.history_model.record(key)
        return PENDING_ROW if rec is not None and rec["state"] == "pending" else None

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rec = self.model.record_at(current.row()) if current.isValid() else None
        if rec is None:
            return
        for edit, value in ((self.code_edit, rec["code"]), (self.im_edit, _ratio(rec["im"])),
                            (self.mm_edit, _ratio(rec["mm"]))):
            edit.blockSignals(True)
            edit.setText(value)
            edit.blockSignals(False)
        self.message.hide()
        self._show_history()
        self._update_form()

    def _show_history(self) -> None:
        rec = self.selected_record()
        code = rec["code"] if rec else ""
        rows = [r for r in self.snapshot.rows if r["code"] == code] if self.snapshot and code else []
        self.history_label.setText(f"History — {code} (all tables, {len(rows)} records)" if code
                                   else "History — select a record")
        self.history_model.set_records(rows)
        if rows and not self._history_fitted:
            fit_columns(self.history_view, 220)
            self._history_fitted = True

    # ------------------------------------------------------------------ the form
    def clear_form(self) -> None:
        for edit in (self.code_edit, self.im_edit, self.mm_edit, self.reason_edit):
            edit.clear()
        self.now_check.setChecked(True)
        self.expiry_check.setChecked(False)
        self.message.hide()
        self.code_edit.setFocus()

    def _times(self) -> tuple[datetime | None, datetime | None]:
        eff = None if self.now_check.isChecked() else _to_py(self.effective_edit.dateTime())
        exp = _to_py(self.expiry_edit.dateTime()) if self.expiry_check.isChecked() else None
        return eff, exp

    def _problem(self) -> tuple[tuple[str, float, float] | None, str]:
        if self.snapshot is not None and not self.snapshot.may_request:
            return None, "You may view ratios but not request changes."
        eff, exp = self._times()
        return validate_setting(self.table, self.code_edit.text(), self.im_edit.text(), self.mm_edit.text(),
                                self.codes, eff, exp)

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _update_form(self) -> None:
        self.effective_edit.setEnabled(not self.now_check.isChecked())
        self.expiry_edit.setEnabled(self.expiry_check.isChecked())
        values, why = self._problem()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        busy = self._submit_task is not None
        self.submit_button.setEnabled(values is not None and bool(self.reason_edit.text().strip()) and not busy)
        rec = self.selected_record()
        if rec is None:
            self.record_label.setText("Selected record: none")
        else:
            self.record_label.setText(f"Selected record #{rec['id']} · {rec['code']} · {rec['state']}"
                                      + (f" · {rec['request']}" if rec["request"] else ""))
        actionable = (rec is not None and rec["state"] == "pending" and not rec["request_id"] and not busy
                      and (self.snapshot is None or self.snapshot.may_request))
        self.sync_button.setEnabled(actionable)
        self.cancel_sync_button.setEnabled(actionable)

    def _reason(self) -> str | None:
        reason = self.reason_edit.text().strip()
        if not reason:
            set_tone(self.message, "Give a reason in the Reason box: the checker decides on it.", "error")
            self.reason_edit.setFocus()
            return None
        return reason

    def submit(self) -> None:
        """Propose the form's setting as a change request; refused inline when the form is not valid."""
        if self.store is None or self.user is None or self.tasks is None or self._submit_task is not None:
            return
        values, why = self._problem()
        if values is None:
            self.validation.setText(why or "Enter the security code and the ratios.")
            self.validation.show()
            return
        reason = self._reason()
        if reason is None:
            return
        code, im, mm = values
        eff, exp = self._times()
        self._run(ratio_settings.propose, (self.store, self.user, code, self.table, im, mm, reason, eff, exp),
                  f"{dict(TABLES)[self.table].lower()} {code}")

    def _record_action(self, action: str) -> None:
        rec = self.selected_record()
        if rec is None or self.store is None or self.user is None or self._submit_task is not None:
            return
        reason = self._reason()
        if reason is None:
            return
        fn = ratio_settings.sync if action == "sync" else ratio_settings.cancel_sync
        what = "sync now" if action == "sync" else "cancel sync"
        self._run(fn, (self.store, self.user, int(rec["id"]), reason), f"{what} of record #{rec['id']}")

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
