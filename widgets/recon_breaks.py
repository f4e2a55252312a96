"""Reconciliation breaks on screen: the breaks list, the aged-breaks view and the work on one break.

Each break shows its type, the two sides and the difference, its age in HK business days from the
item's date and the escalation status of RISK_METHODS §7 (0–1 normal, 2–3 attention, 4–5 warning,
6+ critical) in that status's colour. Both views filter in numpy over the loaded breaks (no query per
filter); the aged view starts at "attention" and sorts oldest first. Assign, investigate and resolve
(root cause required) run on the task runner and are audited by the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services import breaks as B
from services.recon import KINDS
from widgets.records import Field, RecordTableModel, error_text, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store

ESCALATION_BADGE = {"attention": QColor(176, 128, 10),
                    "warning": QColor(211, 105, 20), "critical": QColor(178, 30, 38)}
ESCALATION_ACCENT = {"normal": "#3fb950", "attention": "#e3b341", "warning": "#f0883e", "critical": "#f85149"}
WHITE = QColor(255, 255, 255)
NORMAL_TEXT = QColor(63, 185, 80)
TYPE_TEXT = {"missing_ours": "missing in ours", "missing_theirs": "missing in theirs", "mismatch": "mismatch"}
STATUS_FILTERS = (("Unresolved", "unresolved"), ("Open", "open"), ("Assigned", "assigned"),
                  ("Investigating", "investigating"), ("Resolved", "resolved"), ("All", ""))
AGE_FILTERS = (("All ages", 0), ("Attention and older (2+ business days)", 2),
               ("Warning and older (4+)", 4), ("Critical (6+)", 6))
BANDS = ("critical", "warning", "attention", "normal")


def _num(v: Any) -> str:
    if v != v:
        return ""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.4f}".rstrip("0")


def _side(v: Any) -> str:
    """One side's stored value: numbers with separators, text (a trade's side, a code) as is."""
    try:
        return _num(float(v)) if v not in ("", None) else ""
    except (TypeError, ValueError):
        return str(v)


def break_fields() -> list[Field]:
    return [
        Field("#", "id", "number", fmt=lambda v: f"{v:.0f}"),
        Field("Kind", "kind"),
        Field("Key", "key", tooltip="account/code, account/currency or trade id"),
        Field("Type", "type", fmt=lambda v: TYPE_TEXT.get(str(v), str(v))),
        Field("Field", "field"),
        Field("Ours", "ours", fmt=_side),
        Field("Theirs", "theirs", fmt=_side),
        Field("Difference", "difference", "number", fmt=_num, tooltip="ours − theirs"),
        Field("Item date", "item_date"),
        Field("Age (b. days)", "age_days", "number", fmt=lambda v: f"{v:.0f}",
              tooltip="business days from the item's date (HK trading calendar)"),
        Field("Escalation", "escalation", background=lambda v: ESCALATION_BADGE.get(str(v)),
              foreground=lambda v: WHITE if str(v) in ESCALATION_BADGE else NORMAL_TEXT,
              tooltip="0–1 normal, 2–3 attention, 4–5 warning, 6+ critical"),
        Field("Status", "status"),
        Field("Assignee", "assignee"),
        Field("Root cause", "root_cause"),
        Field("Resolution", "resolution"),
        Field("First seen", "first_seen", "time"),
    ]


class BreaksTable(QWidget):
    """The breaks with a status filter (and, for the aged view, an age filter); numpy-filtered."""

    selection_changed = Signal()

    def __init__(self, name: str, aged: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.aged = aged
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        self.status_box = QComboBox()
        for text, value in STATUS_FILTERS:
            self.status_box.addItem(text, value)
        self.kind_box = QComboBox()
        self.kind_box.addItem("All kinds", "")
        for k in KINDS:
            self.kind_box.addItem(k, k)
        self.age_box = QComboBox()
        for label, days in AGE_FILTERS:
            self.age_box.addItem(label, days)
        self.age_box.setCurrentIndex(1 if aged else 0)
        self.age_box.setVisible(aged)
        self.count = QLabel()
        self.count.setTextFormat(Qt.TextFormat.RichText)
        bar.addWidget(QLabel("Status"))
        bar.addWidget(self.status_box)
        bar.addWidget(self.kind_box)
        bar.addWidget(self.age_box)
        bar.addWidget(self.count, 1)
        lay.addLayout(bar)
        self.model = RecordTableModel(break_fields())
        self.view = make_table(self.model)
        self.view.setObjectName(name)
        lay.addWidget(self.view, 1)
        for box in (self.status_box, self.kind_box, self.age_box):
            box.currentIndexChanged.connect(self._refilter)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self.selection_changed.emit())
        self.records: list[dict[str, Any]] = []
        self._fitted = False
        self.view.sortByColumn(self.model.column_of("Age (b. days)"), Qt.SortOrder.DescendingOrder)  # oldest first

    def show_breaks(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.model.set_filter(self._mask)
        self.model.set_records(records)
        self._refilter()
        if not self._fitted and records:
            fit_columns(self.view, 200)
            age = self.model.column_of("Age (b. days)")
            header = self.view.horizontalHeader()
            header.resizeSection(age, header.sectionSize(age) + 22)  # room for the sort arrow
            self._fitted = True

    def _values(self, header: str, keys: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.columns[self.model.column_of(header)].values(keys))

    def _mask(self, keys: np.ndarray) -> np.ndarray:
        status = self._values("Status", keys)
        want = self.status_box.currentData()
        mask = status != "resolved" if want == "unresolved" else status == want if want else np.ones(len(keys), bool)
        kind = self.kind_box.currentData()
        if kind:
            mask &= self._values("Kind", keys) == kind
        if self.aged:
            mask &= self._values("Age (b. days)", keys) >= int(self.age_box.currentData())
        return mask  # type: ignore[no-any-return]

    def _refilter(self) -> None:
        self.model.refilter()
        keys = self.model.keys
        esc = self._values("Escalation", keys) if len(keys) else np.zeros(0, str)
        bands = " · ".join(f"<span style='color:{ESCALATION_ACCENT[b]}'>{int((esc == b).sum())} {b}</span>"
                           for b in BANDS)
        self.count.setText(f"{len(keys):,} of {len(self.records):,} breaks · {bands}")

    def selected(self) -> dict[str, Any] | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.record_at(rows[0].row()) if rows else None

    def select_id(self, break_id: int) -> bool:
        row = self.model.row_of(break_id)
        if row < 0:
            return False
        self.view.selectRow(row)
        return True


class BreakActions(QWidget):
    """Assign, investigate or resolve (with its root cause) the selected break."""

    changed = Signal(str)
    failed = Signal(str)

    def __init__(self, selected: Callable[[], dict[str, Any] | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.selected = selected
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.busy = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        self.target = QLabel("Select a break")
        lay.addWidget(self.target)
        form = QFormLayout()
        row = QHBoxLayout()
        self.assignee_box = QComboBox()
        self.assignee_box.setEditable(True)
        self.assign_button = QPushButton("Assign")
        self.investigate_button = QPushButton("Investigate")
        row.addWidget(self.assignee_box, 1)
        row.addWidget(self.assign_button)
        row.addWidget(self.investigate_button)
        form.addRow("Assign to", row)
        self.root_cause_edit = QLineEdit()
        self.root_cause_edit.setPlaceholderText("required: why the records differed")
        self.resolution_edit = QLineEdit()
        self.resolution_edit.setPlaceholderText("what was done (corrected booking, counterparty fixed, …)")
        row2 = QHBoxLayout()
        row2.addWidget(self.resolution_edit, 1)
        self.resolve_button = QPushButton("Resolve")
        row2.addWidget(self.resolve_button)
        form.addRow("Root cause", self.root_cause_edit)
        form.addRow("Resolution", row2)
        lay.addLayout(form)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        lay.addWidget(self.message)
        self.assign_button.clicked.connect(self.assign)
        self.investigate_button.clicked.connect(self.investigate)
        self.resolve_button.clicked.connect(self.resolve)
        self.root_cause_edit.textChanged.connect(self.update_state)
        self.update_state()

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.update_state()

    def set_users(self, users: list[str]) -> None:
        current = self.assignee_box.currentText()
        self.assignee_box.clear()
        self.assignee_box.addItems(users)
        if current:
            self.assignee_box.setCurrentText(current)

    def update_state(self) -> None:
        b = self.selected()
        open_ = b is not None and b["status"] != "resolved"
        if b is None:
            self.target.setText("Select a break")
        else:
            self.target.setText(f"Break #{b['id']} · {b['kind']} {b['key']} · {TYPE_TEXT.get(b['type'], b['type'])} "
                                f"{b['field']} · {b['age_days']} business days ({b['escalation']}) · {b['status']}")
        may = self.user is not None and B.may_work(self.user)
        idle = not self.busy and may
        self.assign_button.setEnabled(idle and open_)
        self.investigate_button.setEnabled(idle and open_ and b is not None and b["status"] in ("open", "assigned"))
        self.resolve_button.setEnabled(idle and open_ and bool(self.root_cause_edit.text().strip()))
        self.resolve_button.setToolTip("" if self.root_cause_edit.text().strip() else "give the root cause first")
        if self.user is not None and not may:
            for button in (self.assign_button, self.investigate_button, self.resolve_button):
                button.setToolTip(B.WHO_MAY)

    def _run(self, fn: Callable[..., Any], *args: Any, ok: str) -> None:
        if self.tasks is None or self.busy:
            return
        self.busy = True
        self.update_state()

        def done(_r: Any) -> None:
            self.busy = False
            set_tone(self.message, ok, "ok")
            self.update_state()
            self.changed.emit(ok)

        def failed(e: BaseException) -> None:
            self.busy = False
            text = str(e) if isinstance(e, B.BreakError) else error_text(e)
            set_tone(self.message, text, "error")
            self.update_state()
            self.failed.emit(text)

        self.tasks.run(fn, *args, on_done=done, on_error=failed, name="break action")

    def assign(self) -> None:
        b, who = self.selected(), self.assignee_box.currentText().strip()
        if b is None or self.user is None:
            return
        if not who:
            set_tone(self.message, "Assign to: name who works the break", "error")
            return
        self._run(B.assign, self.store, int(b["id"]), who, self.user, ok=f"Break #{b['id']} assigned to {who}")

    def investigate(self) -> None:
        b = self.selected()
        if b is None or self.user is None:
            return
        self._run(B.investigate, self.store, int(b["id"]), self.user, ok=f"Break #{b['id']} under investigation")

    def resolve(self) -> None:
        b = self.selected()
        if b is None or self.user is None:
            return
        cause = self.root_cause_edit.text().strip()
        if not cause:
            set_tone(self.message, "Root cause: required to resolve a break", "error")
            return
        resolution = self.resolution_edit.text().strip()
        self.root_cause_edit.clear()
        self.resolution_edit.clear()
        self._run(B.resolve, self.store, int(b["id"]), self.user, cause, resolution,
                  ok=f"Break #{b['id']} resolved: {cause}")


__all__ = ["BreakActions", "BreaksTable", "break_fields"]
