"""The Limits dock (issue 5, "Limit rules"): the global limit catalogue and the specific rules.

"Global limits" lists every limit code (metric, dimension, threshold, action, enabled) with its
pending request; its form proposes a new threshold or action, or Enable / Disable, through
`pretrade_store.propose_code`. "Specific rules" (`widgets.limit_rules_panel`) lists the rules and
proposes new or changed ones through `propose_rule`. Nothing here writes the limit tables: every
change is a four-eyes change request, in force once a checker approves (the order-check service
picks it up without restart). One background read fills both tabs; every database call runs on the
task runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.pretrade_view import LimitsView, load_limits_view, number_text, parse_threshold
from widgets.formatting import CENTER
from widgets.limit_rules_panel import LimitRulesPanel
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

ACTIONS = ("prompt", "approval", "reject")
ENABLED_COLOURS = {"enabled": QColor(63, 185, 80), "disabled": QColor(139, 148, 158),
                   "active": QColor(63, 185, 80), "inactive": QColor(139, 148, 158), "pending": QColor(227, 179, 65)}
ACTION_COLOURS = {"reject": QColor(248, 81, 73), "approval": QColor(227, 179, 65), "prompt": QColor(88, 166, 255)}
PENDING_ROW = QColor(92, 68, 8)


def _propose_code(store: Store, user: User, code: str, reason: str, values: dict[str, Any]) -> int:
    from services.pretrade_store import propose_code

    return propose_code(store, user, code, reason, **values)


def threshold_field(header: str = "Threshold") -> Field:
    return Field(header, "threshold", "number", fmt=lambda v: number_text(v),
                 tooltip="price deviation thresholds are fractions: 0.10 = 10% from the last price")


class GlobalLimitsPanel(QWidget):
    """The catalogue of limit codes and the form that proposes changes to the selected one."""

    submitted = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.view_data: LimitsView | None = None
        self._task: Task | None = None
        self._fitted = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        self.model = RecordTableModel([
            Field("Code", "code"), Field("Name", "name"), Field("Metric", "metric"),
            Field("Dimension", "dimension"), threshold_field(),
            Field("Action", "action", align=CENTER, foreground=lambda v: ACTION_COLOURS.get(str(v))),
            Field("Enabled", "enabled", align=CENTER, foreground=lambda v: ENABLED_COLOURS.get(str(v))),
            Field("Rules", "rules", "number", fmt=lambda v: f"{int(v)}" if v else "",
                  tooltip="active specific rules of this code"),
            Field("Pending request", "request", foreground=lambda v: OVERDUE_TEXT if v else None)], self, key="key")
        self.model.row_background = self._row_background
        self.view = make_table(self.model)
        self.view.setObjectName("limit_codes")
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        split.addWidget(self._build_form())
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([760, 320])
        lay.addWidget(split, 1)
        self._update_form()

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(310)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setVerticalSpacing(5)
        head = QLabel("Change the selected limit")
        head.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(head, 0, 0, 1, 3)
        self.selected_label = QLabel("Select a limit code.")
        self.selected_label.setProperty("role", "caption")
        self.selected_label.setWordWrap(True)
        grid.addWidget(self.selected_label, 1, 0, 1, 3)
        self.threshold_edit = QLineEdit()
        self.threshold_edit.setPlaceholderText("threshold (≥ 0)")
        self.action_combo = QComboBox()
        self.action_combo.addItems(list(ACTIONS))
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        for i, (caption, w) in enumerate((("&Threshold", self.threshold_edit), ("A&ction", self.action_combo),
                                          ("&Reason", self.reason_edit)), start=2):
            lab = QLabel(caption)
            lab.setBuddy(w)
            grid.addWidget(lab, i, 0)
            grid.addWidget(w, i, 1, 1, 2)
        grid.setColumnStretch(1, 1)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 5, 0, 1, 3)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 6, 0, 1, 3)
        buttons = QHBoxLayout()
        self.toggle_button = QPushButton("Disable")
        self.toggle_button.setToolTip("Request that the code be switched off (or on) firm-wide, its rules too")
        self.toggle_button.clicked.connect(self.toggle_enabled)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.clicked.connect(self.submit)
        buttons.addWidget(self.toggle_button)
        buttons.addStretch(1)
        buttons.addWidget(self.submit_button)
        grid.addLayout(buttons, 7, 0, 1, 3)
        grid.setRowStretch(8, 1)
        self.threshold_edit.textChanged.connect(self._edited)
        self.action_combo.currentIndexChanged.connect(self._edited)
        self.reason_edit.textChanged.connect(self._edited)
        return form

    # ------------------------------------------------------------------ data
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def show_view(self, data: LimitsView) -> None:
        self.view_data = data
        self.model.set_records(data.codes)
        if not self._fitted and data.codes:
            fit_columns(self.view, 240)
            self._fitted = True
            self.view.selectRow(0)  # the form shows a code from the start
        self._update_form()

    def selected(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    def select_code(self, code: str) -> bool:
        for r in range(self.model.rowCount()):
            rec = self.model.record_at(r)
            if rec is not None and rec["code"] == code:
                self.view.selectRow(r)
                return True
        return False

    def _row_background(self, key: int) -> QColor | None:
        rec = self.model.record(key)
        return PENDING_ROW if rec is not None and rec["request_id"] else None

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rec = self.selected()
        if rec is not None:
            for w in (self.threshold_edit, self.action_combo):
                w.blockSignals(True)
            self.threshold_edit.setText(number_text(rec["threshold"]))
            self.action_combo.setCurrentText(rec["action"])
            for w in (self.threshold_edit, self.action_combo):
                w.blockSignals(False)
        self.message.hide()
        self._update_form()

    # ------------------------------------------------------------------ the form
    def _changes(self) -> tuple[dict[str, Any] | None, str]:
        """({threshold?, action?}, "") for what the form changes on the selected code, else (None, why)."""
        rec = self.selected()
        if rec is None:
            return None, ""
        if self.view_data is not None and not self.view_data.may_request:
            return None, "You may view limits but not request changes."
        if rec["request_id"]:
            return None, f"Request #{rec['request_id']} is pending for {rec['code']}: wait for its decision."
        value, why = parse_threshold(self.threshold_edit.text())
        if value is None:
            return None, why
        out: dict[str, Any] = {}
        if value != rec["threshold"]:
            out["threshold"] = value
        if self.action_combo.currentText() != rec["action"]:
            out["action"] = self.action_combo.currentText()
        return out, "" if out else "Change the threshold or the action first."

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _update_form(self) -> None:
        rec = self.selected()
        busy = self._task is not None
        if rec is None:
            self.selected_label.setText("Select a limit code.")
        else:
            self.selected_label.setText(f"{rec['code']} — {rec['name']} · {rec['metric']} · "
                                        f"{rec['dimension'].replace('_', ' ')} · {rec['enabled']}"
                                        + (f" · {rec['request']}" if rec["request"] else ""))
        out, why = self._changes()
        shown = why if why != "Change the threshold or the action first." else ""
        self.validation.setText(shown)
        self.validation.setVisible(bool(shown))
        has_reason = bool(self.reason_edit.text().strip())
        self.submit_button.setEnabled(bool(out) and has_reason and not busy)
        may = rec is not None and not rec["request_id"] and (self.view_data is None or self.view_data.may_request)
        self.toggle_button.setText("Enable" if rec is not None and rec["enabled"] == "disabled" else "Disable")
        self.toggle_button.setEnabled(may and not busy)
        for w in (self.threshold_edit, self.action_combo):
            w.setEnabled(rec is not None)

    def _reason(self) -> str | None:
        reason = self.reason_edit.text().strip()
        if not reason:
            set_tone(self.message, "Give a reason in the Reason box: the checker decides on it.", "error")
            self.reason_edit.setFocus()
            return None
        return reason

    def submit(self) -> None:
        rec = self.selected()
        if rec is None or self._task is not None:
            return
        out, why = self._changes()
        if not out:
            self.validation.setText(why)
            self.validation.setVisible(bool(why))
            return
        reason = self._reason()
        if reason is None:
            return
        what = ", ".join(f"{k} → {number_text(v) if isinstance(v, float) else v}" for k, v in out.items())
        self._run(rec["code"], reason, out, f"{rec['code']}: {what}")

    def toggle_enabled(self) -> None:
        rec = self.selected()
        if rec is None or self._task is not None or rec["request_id"]:
            return
        reason = self._reason()
        if reason is None:
            return
        enable = rec["enabled"] == "disabled"
        self._run(rec["code"], reason, {"enabled": enable}, f"{'enable' if enable else 'disable'} {rec['code']}")

    def _run(self, code: str, reason: str, values: dict[str, Any], what: str) -> None:
        assert self.tasks is not None
        set_tone(self.message, "Submitting…", "info")
        self._task = self.tasks.run(_propose_code, self.store, self.user, code, reason, values,
                                    on_done=lambda rid: self._submitted(int(rid), what),
                                    on_error=self._failed, name=f"submit {what}")
        self._update_form()

    def _submitted(self, req_id: int, what: str) -> None:
        self._task = None
        self.reason_edit.blockSignals(True)
        self.reason_edit.clear()
        self.reason_edit.blockSignals(False)
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval ({what})", "ok")
        self._update_form()
        self.submitted.emit(req_id)

    def _failed(self, e: BaseException) -> None:
        self._task = None
        set_tone(self.message, error_text(e))
        self._update_form()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None


class LimitsDock(QWidget):
    """Two tabs — global limits and specific rules — filled by one background read."""

    submitted = Signal(int)
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.data: LimitsView | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        bar = QHBoxLayout()
        title = QLabel("Pre-trade limits — every change is a four-eyes request")
        title.setProperty("role", "caption")
        bar.addWidget(title)
        bar.addStretch(1)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.codes = GlobalLimitsPanel()
        self.rules = LimitRulesPanel()
        self.tabs.addTab(self.codes, "Global limits")
        self.tabs.addTab(self.rules, "Specific rules")
        lay.addWidget(self.tabs, 1)
        for page in (self.codes, self.rules):
            page.submitted.connect(self._submitted)

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.codes.set_context(store, user, tasks)
        self.rules.set_context(store, user, tasks)
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()
        self.codes.stop()
        self.rules.stop()

    def refresh(self) -> None:
        """Read the catalogue and the rules again (connected to `ApprovalsDock.requests_changed`)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_limits_view, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="limits")

    def _loaded(self, data: LimitsView) -> None:
        self.data = data
        self.codes.show_view(data)
        self.rules.show_view(data)
        pending = sum(1 for r in data.codes if r["request_id"]) + sum(1 for r in data.rules if r["request_id"])
        self.status.setStyleSheet("")
        n = sum(1 for r in data.rules if r["status"] != "pending")
        self.status.setText(f"{len(data.codes)} codes · {n} rule{'' if n == 1 else 's'}"
                            + (f" · {pending} pending" if pending else "")
                            + ("" if data.may_request else " · view only"))
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    def _submitted(self, req_id: int) -> None:
        self.submitted.emit(req_id)
        self.refresh()


__all__ = ["GlobalLimitsPanel", "LimitsDock"]
