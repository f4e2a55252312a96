"""The company parameters dock: every parameter with its version and pending request, and an inline
editor that turns an edit into a change request (four eyes) instead of writing the table.

The editor remembers the version of the parameter it was loaded with. When a refresh (the user's,
or the approvals listener's) shows another version, someone's approved change landed meanwhile: the
editor says who and when ("changed by X at T — reload") from the audit trail and keeps everything
typed; submitting waits until the user reloads the new current value. Drafts are kept per parameter,
so moving to another row loses nothing either. Values are validated inline as they are typed.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from widgets.formatting import CENTER
from widgets.records import (
    ERROR_COLOUR,
    OVERDUE_TEXT,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    hk_time,
    set_tone,
    to_utc,
    value_text,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.store import Store

KIND = "company_parameter"
TABLE = "company_parameters"


# ---------------------------------------------------------------------- pure parts (no Qt)
def validate_parameter(name: str, text: str, current: float | None = None) -> tuple[float | None, str]:
    """(value, "") when ``text`` is an acceptable new value for ``name``, else (None, why not)."""
    t = text.strip().replace(",", "").replace("_", "")
    if not t:
        return None, "Enter the new value."
    try:
        v = float(t)
    except ValueError:
        return None, f"“{text.strip()}” is not a number."
    if not math.isfinite(v):
        return None, "The value must be a finite number."
    if v < 0:
        return None, f"{name} must be ≥ 0."
    if name == "force_call_factor" and not 0 < v <= 1:
        return None, "force_call_factor must be in (0, 1]: the force-call level is a fraction of MM."
    if name == "call_deadline_days" and (v != int(v) or v < 1):
        return None, "call_deadline_days must be a whole number of trading days, at least 1."
    if name.endswith("_hhmm") and (v != int(v) or v > 2400 or int(v) % 100 >= 60):
        return None, f"{name} is a time as HHMM (0000–2400), e.g. 930 or 1600."
    if name.endswith("_enabled") and v not in (0.0, 1.0):
        return None, f"{name} is a switch: 0 (off) or 1 (on)."
    if name == "auto_liquidation_time" and (v != int(v) or v >= 1440):
        return None, "auto_liquidation_time is minutes after midnight HK time (0–1439), e.g. 600 for 10:00."
    if current is not None and v == current:
        return None, "That is the current value: nothing to change."
    return v, ""


@dataclass
class ParameterChange:
    """The last applied change of a parameter, from the audit trail."""

    actor: str
    ts: datetime | None
    checker: str | None = None
    request_id: int | None = None

    def text(self) -> str:
        by = self.actor + (f" (approved by {self.checker})" if self.checker else "")
        return f"{by} at {hk_time(self.ts, seconds=True)} HKT" if self.ts else by


@dataclass
class ParametersSnapshot:
    rows: list[dict[str, Any]]
    may_request: bool
    last_change: dict[str, ParameterChange] = field(default_factory=dict)


def load_parameters(store: Store, user: User) -> ParametersSnapshot:
    """Parameters with version, pending request and last change (task function)."""
    from sqlalchemy import select

    from models import schema as S
    from services import audit, changes
    from services.auth import permitted

    with store.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(S.company_parameters).order_by(
            S.company_parameters.c.name))]
    pending: dict[str, int] = {}
    for req in changes.listing(store, status="pending"):
        if req.kind == KIND and "name" in req.target_key:
            pending.setdefault(str(req.target_key["name"]), req.id)  # listing is newest first
    last: dict[str, ParameterChange] = {}
    for rec in audit.rows(store, entity=TABLE):  # newest first
        if rec["action"] != "apply":
            continue
        try:
            name = str(json.loads(rec["entity_key"]).get("name"))
        except (TypeError, ValueError, AttributeError):
            continue
        if name not in last:
            last[name] = ParameterChange(rec["actor"], to_utc(rec["ts"]), None, rec["request_id"])
    for ch in last.values():
        if ch.request_id is not None:
            with contextlib.suppress(changes.ChangeError):
                ch.checker = changes.get(store, int(ch.request_id)).checker
    for r in rows:
        r["pending_id"] = pending.get(r["name"])
        r["pending"] = f"pending #{pending[r['name']]}" if r["name"] in pending else ""
        last_one = last.get(r["name"])
        r["changed"] = f"{last_one.actor} · {hk_time(last_one.ts)}" if last_one else ""
    return ParametersSnapshot(rows, permitted(store, user, "request", KIND), last)


# ---------------------------------------------------------------------- the dock
class ParametersDock(QWidget):
    """Company parameters and the change-request editor."""

    submitted = Signal(int)  # the new change request's id
    refreshed = Signal()
    stale_changed = Signal(bool)  # the loaded parameter changed underneath the editor (True) / reloaded

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: ParametersSnapshot | None = None
        self.keys: dict[str, int] = {}  # stable integer row keys for parameter names
        self.form: dict[str, Any] | None = None  # name, value and version the editor was loaded with
        self.drafts: dict[str, tuple[str, str]] = {}
        self.stale = False
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._submit_task: Task | None = None
        self._fitted = False
        self._build_ui()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        title = QLabel("Company parameters change only through an approved change request.")
        title.setProperty("role", "caption")
        bar.addWidget(title, 1)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        self.model = RecordTableModel([
            Field("Parameter", "name"),
            Field("Value", "value", "number", fmt=lambda v: f"{v:.10g}"),
            Field("Description", "description"),
            Field("Version", "version", "number", fmt=lambda v: str(int(v)) if v == v else ""),
            Field("Last change", "changed", tooltip="who made the last applied change, and when (HKT)"),
            Field("Pending", "pending", align=CENTER, tooltip="a change request waiting for approval",
                  foreground=lambda v: OVERDUE_TEXT if v else None),
        ], self, key="key")
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        lay.addWidget(self.view, 1)

        editor = QFrame()
        editor.setProperty("role", "card")
        grid = QGridLayout(editor)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(5)
        self.param_label = QLabel("Select a parameter")
        self.param_label.setStyleSheet("font-weight: 600; font-size: 13px")
        self.current_label = QLabel("")
        self.current_label.setProperty("role", "caption")
        grid.addWidget(self.param_label, 0, 0, 1, 2)
        grid.addWidget(self.current_label, 0, 2, 1, 2, Qt.AlignmentFlag.AlignRight)
        self.value_edit = QLineEdit()
        self.value_edit.setPlaceholderText("new value")
        self.value_edit.textChanged.connect(self._edited)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason for the change (shown to the checker)")
        self.reason_edit.textChanged.connect(self._edited)
        value_caption = QLabel("&New value")
        value_caption.setBuddy(self.value_edit)
        reason_caption = QLabel("&Reason")
        reason_caption.setBuddy(self.reason_edit)
        grid.addWidget(value_caption, 1, 0)
        grid.addWidget(self.value_edit, 1, 1)
        grid.addWidget(reason_caption, 1, 2)
        grid.addWidget(self.reason_edit, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 3)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 2, 1, 1, 3)
        self.banner = QLabel("")
        self.banner.setWordWrap(True)
        self.banner.hide()
        self.reload_button = QPushButton("Re&load")
        self.reload_button.setToolTip("Take the parameter's current value and version; what you typed stays")
        self.reload_button.clicked.connect(self.reload_form)
        self.reload_button.hide()
        banner_row = QHBoxLayout()
        banner_row.addWidget(self.banner, 1)
        banner_row.addWidget(self.reload_button)
        grid.addLayout(banner_row, 3, 0, 1, 4)
        bottom = QHBoxLayout()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        bottom.addWidget(self.message, 1)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit)
        bottom.addWidget(self.submit_button, 0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        grid.addLayout(bottom, 4, 0, 1, 4)
        self.value_edit.returnPressed.connect(self.reason_edit.setFocus)
        self.reason_edit.returnPressed.connect(self.submit)
        lay.addWidget(editor)
        self._update_editor()

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()
        if self._submit_task is not None:
            self._submit_task.cancel()
        self._submit_task = None

    def refresh(self) -> None:
        """Read the parameters again (connect `ApprovalsDock.requests_changed` here)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_parameters, self.store, self.user, on_done=on_done,
                                    on_error=on_error, name="company parameters")

    def _loaded(self, snap: ParametersSnapshot) -> None:
        self.snapshot = snap
        for r in snap.rows:
            r["key"] = self.keys.setdefault(r["name"], len(self.keys))
        self.model.set_records(snap.rows)
        if not self._fitted and snap.rows:
            fit_columns(self.view, 320)
            self._fitted = True
        self.status.setStyleSheet("")
        self.status.setText("" if snap.may_request else "view only: you may not request parameter changes")
        if self.form is None and snap.rows and not self.view.currentIndex().isValid():
            self.view.selectRow(0)
        self._check_stale()
        self._update_editor()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    # ------------------------------------------------------------------ the editor
    def row(self, name: str) -> dict[str, Any] | None:
        key = self.keys.get(name)
        return self.model.record(key) if key is not None else None

    def select_parameter(self, name: str) -> bool:
        key = self.keys.get(name)
        row = self.model.row_of(key) if key is not None else -1
        if row < 0:
            return False
        self.view.selectRow(row)
        return True

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rec = self.model.record_at(current.row()) if current.isValid() else None
        if rec is None:
            return
        if self.form is not None and self.form["name"] == rec["name"]:
            return
        if self.form is not None:
            self.drafts[self.form["name"]] = (self.value_edit.text(), self.reason_edit.text())
        self.form = {"name": rec["name"], "value": float(rec["value"]), "version": int(rec["version"])}
        value, reason = self.drafts.pop(rec["name"], ("", ""))
        for edit, text in ((self.value_edit, value), (self.reason_edit, reason)):
            edit.blockSignals(True)
            edit.setText(text)
            edit.blockSignals(False)
        self.message.hide()
        self._check_stale()
        self._update_editor()

    def _check_stale(self) -> None:
        """The loaded parameter has another version now: say who changed it, keep what is typed."""
        was = self.stale
        rec = self.row(self.form["name"]) if self.form is not None else None
        self.stale = rec is not None and self.form is not None and int(rec["version"]) != self.form["version"]
        if self.stale and self.form is not None and rec is not None:
            ch = self.snapshot.last_change.get(self.form["name"]) if self.snapshot else None
            who = ch.text() if ch else "someone"
            set_tone(self.banner, f"{self.form['name']} was changed by {who} — reload. Now "
                                  f"{value_text(float(rec['value']))} (version {int(rec['version'])}); "
                                  "what you typed is kept.", "warn")
        else:
            self.banner.hide()
        self.reload_button.setVisible(self.stale)
        if self.stale != was:
            self.stale_changed.emit(self.stale)

    def reload_form(self) -> None:
        """Take the current value and version into the editor; the typed value and reason stay."""
        if self.form is None:
            return
        rec = self.row(self.form["name"])
        if rec is not None:
            self.form["value"], self.form["version"] = float(rec["value"]), int(rec["version"])
        self._check_stale()
        self._update_editor()

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_editor()

    def _problem(self) -> tuple[float | None, str]:
        """The new value, or why the form cannot be submitted now (shown inline)."""
        if self.form is None:
            return None, ""
        if self.snapshot is not None and not self.snapshot.may_request:
            return None, "You may view parameters but not request changes."
        rec = self.row(self.form["name"])
        if rec is not None and rec.get("pending_id"):
            return None, (f"{rec['pending']} already waits for a decision on {self.form['name']}: "
                          "decide or cancel it first.")
        if not self.value_edit.text().strip():
            return None, ""
        value, why = validate_parameter(self.form["name"], self.value_edit.text(), self.form["value"])
        if why:
            return None, why
        if self.stale:
            return None, "Reload first: the parameter changed since you started."
        return value, ""

    def _update_editor(self) -> None:
        f = self.form
        if f is None:
            self.param_label.setText("Select a parameter")
            self.current_label.setText("")
        else:
            rec = self.row(f["name"]) or {}
            self.param_label.setText(f["name"])
            desc = rec.get("description") or ""
            self.current_label.setText(f"current {value_text(f['value'])} · version {f['version']}"
                                       + (f" · {desc}" if desc else ""))
        value, why = self._problem()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        self.value_edit.setStyleSheet(f"border: 1px solid {ERROR_COLOUR}" if why and self.value_edit.text().strip()
                                      and not self.stale else "")
        ok = value is not None and bool(self.reason_edit.text().strip()) and self._submit_task is None
        self.submit_button.setEnabled(ok)
        editable = f is not None and (self.snapshot is None or self.snapshot.may_request)
        self.value_edit.setEnabled(editable)
        self.reason_edit.setEnabled(editable)

    def submit(self) -> None:
        """Submit the typed value as a change request; refused inline when the form is not valid."""
        if self.form is None or self.store is None or self.user is None or self.tasks is None:
            return
        if self._submit_task is not None:
            return
        value, why = self._problem()
        if value is None:
            self.validation.setText(why or "Enter the new value.")
            self.validation.show()
            return
        reason = self.reason_edit.text().strip()
        if not reason:
            self.validation.setText("Give a reason: the checker decides on it.")
            self.validation.show()
            self.reason_edit.setFocus()
            return
        from services import changes

        name = self.form["name"]
        set_tone(self.message, "Submitting…", "info")
        self._submit_task = self.tasks.run(
            changes.submit, self.store, self.user, KIND, {"name": name}, {"value": value}, reason,
            on_done=lambda rid: self._submitted(name, int(rid)), on_error=self._submit_failed,
            name="submit parameter change")
        self._update_editor()

    def _submitted(self, name: str, req_id: int) -> None:
        self._submit_task = None
        if self.form is not None and self.form["name"] == name:
            for edit in (self.value_edit, self.reason_edit):
                edit.blockSignals(True)
                edit.clear()
                edit.blockSignals(False)
        set_tone(self.message, f"Change request #{req_id} submitted for {name} — it applies once approved.", "ok")
        self.submitted.emit(req_id)
        self.refresh()

    def _submit_failed(self, e: BaseException) -> None:
        self._submit_task = None
        set_tone(self.message, error_text(e))
        self._update_editor()
        self.refresh()

