"""The KRI dashboard's lists: the records behind a value (drill-down) and the open tasks.

Drill-down: a computed KRI lists the incidents, breaks, margin calls, trade errors or recon import it
was computed from; an entered KRI lists its last readings with their colour and who entered them.
Tasks: the open investigations (24 h) and CRO escalations (48 h) with the time left, overdue ones
highlighted; closing one asks what was found or done.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QTableView, QVBoxLayout, QWidget

from services import kri
from services.kri import KriStatus
from widgets.kri_forms import KriForm
from widgets.kri_tiles import RAG
from widgets.records import OVERDUE_TEXT, Field, RecordTableModel, set_tone, until_text
from widgets.tables import fit_columns, make_table

KIND_TEXT = {"investigation": "Investigation (24 h)", "cro_escalation": "CRO escalation (48 h)"}
TIME_FIELDS = ("detected_at", "opened_at", "imported_at")
NUMBER_FIELDS = ("value", "current_amount", "est_pnl", "difference", "matched", "breaks", "age_days")


def _colour_bg(v: Any) -> QColor | None:
    c = QColor(RAG.get(str(v), "#00000000")) if str(v) in RAG and v else None
    if c is not None:
        c.setAlpha(120)
    return c


def drill_fields(records: list[dict[str, Any]]) -> list[Field]:
    """Columns for a drill-down list, from its records' keys (in their order)."""
    if not records:
        return [Field("Records", "none")]
    out = []
    for name in records[0]:
        if name == "_key":
            continue
        header = name.replace("_", " ").capitalize()
        if name in TIME_FIELDS:
            out.append(Field(header, name, "time"))
        elif name in NUMBER_FIELDS:
            fmt = (lambda v: "" if v != v else f"{v:,.0f}") if name in ("matched", "breaks", "age_days") \
                else (lambda v: "" if v != v else f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.2f}")
            out.append(Field(header, name, "number", fmt=fmt))
        elif name == "colour" or name == "escalation":
            out.append(Field(header, name, background=_colour_bg if name == "colour" else None))
        else:
            out.append(Field(header, name, fmt=lambda v: v.isoformat() if isinstance(v, date) else str(v)))
    return out


class DrillPanel(QWidget):
    """The records behind the selected KRI's value."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.caption = QLabel("Select a KRI")
        self.caption.setWordWrap(True)
        self.lay.addWidget(self.caption)
        self.model = RecordTableModel([Field("Records", "none")], key="_key")
        self.view: QTableView = make_table(self.model)
        self.lay.addWidget(self.view, 1)
        self.records: list[dict[str, Any]] = []
        self.code = ""
        self._fields: tuple[str, ...] = ()

    def show_loading(self, code: str) -> None:
        self.code = code
        self.caption.setText(f"{code}: reading the records…")

    def show_records(self, code: str, computed: bool, value: float, records: list[dict[str, Any]],
                     stored: KriStatus | None = None) -> None:
        self.code = code
        self.records = [{**r, "_key": i} for i, r in enumerate(records)]
        names = tuple(k for k in (records[0] if records else {}) if k != "_key")
        if names != self._fields:
            self._fields = names
            model = RecordTableModel(drill_fields(self.records), key="_key")
            view = make_table(model)
            view.setObjectName(f"kri_drill_{code.lower()}")
            self.lay.replaceWidget(self.view, view)
            self.view.deleteLater()
            self.model, self.view = model, view
        self.model.set_records(self.records)
        fit_columns(self.view)
        what = "records behind the value now" if computed else "last readings as entered"
        v = "—" if value != value else f"{value:,.4g}"
        text = f"{code}: {v} — {len(records)} {what}"
        if computed and stored is not None and stored.value is not None and value == value \
                and abs(stored.value - value) > 1e-9:
            text += (f" · the last stored reading is {stored.value:,.4g} ({stored.day}); "
                     "Enter / import ▸ Compute from records stores today's value")
        self.caption.setText(text)


class TasksPanel(KriForm):
    """Open investigation and CRO-escalation tasks; close one with what was found or done."""

    selected_kri = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.model = RecordTableModel([
            Field("#", "id", "number", fmt=lambda v: f"{v:.0f}"),
            Field("KRI", "kri_code"),
            Field("Task", "kind", fmt=lambda v: KIND_TEXT.get(str(v), str(v))),
            Field("Opened", "opened_at", "time"),
            Field("Due", "due_at", "time"),
            Field("Time left", "left", foreground=lambda v: OVERDUE_TEXT if v == "overdue" else None),
            Field("Note", "note"),
        ], row_foreground=lambda r: OVERDUE_TEXT if r.get("left") == "overdue" else None)
        self.view = make_table(self.model)
        self.view.setObjectName("kri_tasks")
        lay.addWidget(self.view, 1)
        row = QHBoxLayout()
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("what was found / done (required to close)")
        self.close_button = QPushButton("Close task")
        row.addWidget(self.note_edit, 1)
        row.addWidget(self.close_button)
        lay.addLayout(row)
        lay.addWidget(self.message)
        self.close_button.clicked.connect(self.close_selected)
        self.note_edit.textChanged.connect(self._update)
        self.view.selectionModel().selectionChanged.connect(self._selection)
        self._update()

    def show_tasks(self, tasks: list[dict[str, Any]]) -> None:
        for t in tasks:
            t["left"] = until_text(t["due_at"])
        self.model.set_records(tasks)
        fit_columns(self.view, 320)
        self._update()

    def selected(self) -> dict[str, Any] | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.record_at(rows[0].row()) if rows else None

    def _selection(self, *_a: Any) -> None:
        t = self.selected()
        if t is not None:
            self.selected_kri.emit(str(t["kri_code"]))
        self._update()

    def _update(self) -> None:
        ok = self.selected() is not None and bool(self.note_edit.text().strip()) and not self.busy
        self.close_button.setEnabled(ok and self.user is not None)

    def close_selected(self) -> None:
        t = self.selected()
        if t is None or self.store is None or self.user is None:
            return
        note = self.note_edit.text().strip()
        if not note:
            set_tone(self.message, "Note: say what was found or done", "error")
            return
        self.note_edit.clear()
        self._write(kri.close_task, self.store, self.user, int(t["id"]), note,
                    ok=lambda _r: f"Task #{t['id']} ({t['kri_code']}) closed")


__all__ = ["DrillPanel", "TasksPanel", "drill_fields"]
