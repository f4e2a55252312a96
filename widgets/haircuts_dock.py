"""The haircuts dock (issue 4, "Haircuts"): each security's collateral haircut (0..1).

Nothing here writes the `haircuts` table: a new haircut is an update change request on the
security's row (every security has one in the demo), applied once a checker approves. A security
with a request waiting on it says so ("request #12 pending"). Every database call runs on the
task runner.
"""

from __future__ import annotations

import math
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

from services.auth import User
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
    from services.store import Store

KIND = "haircut"
PENDING_ROW = QColor(92, 68, 8)
SUSPENDED = QColor(248, 81, 73)


# ---------------------------------------------------------------------- pure parts (no Qt)
def validate_haircut(text: str) -> tuple[float | None, str]:
    """(the haircut, "") when ``text`` is a number in [0, 1], else (None, why not)."""
    t = text.strip()
    if not t:
        return None, "Enter the new haircut."
    try:
        v = float(t)
    except ValueError:
        return None, f"Haircut “{t}” is not a number."
    if not math.isfinite(v) or not 0 <= v <= 1:
        return None, "A haircut lies between 0 and 1 (e.g. 0.3)."
    return v, ""


@dataclass
class HaircutsSnapshot:
    rows: list[dict[str, Any]]
    may_request: bool


def load_haircuts(store: Store, user: User) -> HaircutsSnapshot:
    """Every security with its haircut and pending haircut request (task)."""
    from sqlalchemy import text

    from services import changes
    from services.auth import permitted

    with store.begin() as conn:
        raw = conn.execute(text(
            "select s.id, s.code, s.name, s.level, s.suspended, h.haircut, h.effective_from "
            "from securities s left join haircuts h on h.security_id = s.id order by s.id")).all()
    pending: dict[int, tuple[int, float]] = {}
    for req in changes.listing(store, status="pending"):  # newest first
        if req.kind == KIND and "security_id" in req.target_key and req.id not in pending:
            pending.setdefault(int(req.target_key["security_id"]), (req.id, float(req.after.get("haircut", math.nan))))
    rows = []
    for r in raw:
        rid, new = pending.get(int(r.id), (None, math.nan))
        rows.append({"id": int(r.id), "code": r.code, "name": r.name, "level": int(r.level),
                     "haircut": None if r.haircut is None else float(r.haircut),
                     "effective_from": r.effective_from, "suspended": "suspended" if r.suspended else "",
                     "request_id": rid,
                     "request": "" if rid is None else f"request #{rid} pending → {new:g}"})
    return HaircutsSnapshot(rows, permitted(store, user, "request", KIND))


def submit_haircut(store: Store, user: User, security_id: int, haircut: float, reason: str,
                   code: str = "") -> int:
    """An update request for the security's haircut (task function); its id."""
    from services import changes

    return changes.submit(store, user, KIND, {"security_id": security_id}, {"haircut": float(haircut)}, reason,
                          context={"security": code} if code else None)


def _fields() -> list[Field]:
    return [Field("Code", "code"),
            Field("Name", "name"),
            Field("Level", "level", "number", fmt=lambda v: "" if v != v else str(int(v))),
            Field("Haircut", "haircut", "number", fmt=lambda v: "" if v != v else f"{v:g}",
                  tooltip="share of the market value not lent against (0..1)"),
            Field("Effective from", "effective_from", "time", tooltip="Hong Kong time"),
            Field("Suspended", "suspended", foreground=lambda v: SUSPENDED if v else None),
            Field("Pending request", "request", foreground=lambda v: OVERDUE_TEXT if v else None)]


# ---------------------------------------------------------------------- the dock
class HaircutsDock(QWidget):
    """Security haircuts and the change-request form for the selected security."""

    submitted = Signal(int)
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: HaircutsSnapshot | None = None
        self._text_of = np.zeros(0, "<U96")
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._submit_task: Task | None = None
        self._fitted = False
        self._build_ui()

    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        title = QLabel("Haircuts — collateral value discount per security")
        title.setProperty("role", "caption")
        bar.addWidget(title)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search code / name")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(220)
        self.search.setMaximumWidth(260)
        self.search.textChanged.connect(lambda _t: self.model.refilter())
        bar.addWidget(self.search)
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
        form.setMinimumWidth(320)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(5)
        head = QLabel("Change haircut")
        head.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(head, 0, 0, 1, 2)
        self.record_label = QLabel("Select a security in the table.")
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
        self.refresh()

    def stop(self) -> None:
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
        return self.tasks.run(load_haircuts, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="haircuts")

    def _loaded(self, snap: HaircutsSnapshot) -> None:
        self.snapshot = snap
        top = max((r["id"] for r in snap.rows), default=-1) + 1
        self._text_of = np.full(top, "", "<U96")
        for r in snap.rows:
            self._text_of[r["id"]] = f"{r['code']} {r['name']}".lower()[:96]
        self.model.set_records(snap.rows)
        if not self._fitted and snap.rows:
            fit_columns(self.view, 260)
            self._fitted = True
        n_pending = sum(1 for r in snap.rows if r["request_id"])
        self.status.setStyleSheet("")
        self.status.setText(f"{len(snap.rows)} securities" + (f" · {n_pending} pending" if n_pending else "")
                            + ("" if snap.may_request else " · view only: you may not request changes"))
        self._update_form()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    # ------------------------------------------------------------------ table
    def _visible(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        mask = np.zeros(keys.shape, bool)
        inside = (keys >= 0) & (keys < self._text_of.shape[0])
        needle = self.search.text().strip().lower()
        mask[inside] = (np.char.find(self._text_of[keys[inside]], needle) >= 0) if needle else True
        return mask

    def visible_records(self) -> list[dict[str, Any]]:
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    def select_record(self, security_id: int) -> bool:
        row = self.model.row_of(security_id)
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
        self._update_form()

    # ------------------------------------------------------------------ the form
    def _problem(self) -> tuple[float | None, str]:
        if self.snapshot is not None and not self.snapshot.may_request:
            return None, "You may view haircuts but not request changes."
        rec = self.selected_record()
        if not self.haircut_edit.text().strip():
            return None, ""
        value, why = validate_haircut(self.haircut_edit.text())
        if value is None:
            return None, why
        if rec is None:
            return None, "Select a security in the table."
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
                                      and self._submit_task is None and self.snapshot is not None)
        rec = self.selected_record()
        if rec is None:
            self.record_label.setText("Select a security in the table.")
        else:
            hc = "none" if rec["haircut"] is None else f"{rec['haircut']:g}"
            self.record_label.setText(f"{rec['code']} · {rec['name']} · level {rec['level']} · haircut {hc}"
                                      + (f" · {rec['request']}" if rec["request"] else ""))

    def submit(self) -> None:
        """Request the new haircut for the selected security; refused inline when not valid."""
        if self.store is None or self.user is None or self.tasks is None or self._submit_task is not None:
            return
        if self.snapshot is None:
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
            submit_haircut, self.store, self.user, int(rec["id"]), value, reason, rec["code"],
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
        self.refresh()

    def _submit_failed(self, e: BaseException) -> None:
        self._submit_task = None
        set_tone(self.message, error_text(e))
        self._update_form()
        self.refresh()


__all__ = ["HaircutsDock", "HaircutsSnapshot", "load_haircuts", "submit_haircut", "validate_haircut"]
