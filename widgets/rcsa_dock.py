"""The RCSA dock (issue 7, RISK_METHODS §7 "RCSA"): the risk register and its 5×5 heat map.

The register (risk, owner, likelihood, impact, score, priority, controls) sorts by any column and
filters by priority, owner and — by clicking the heat map — one likelihood × impact cell. Add and
Rescore forms check their fields as you type and name the first bad one; the buttons stay disabled
until the form is valid and for roles that may not edit the register. Reads and writes run on the
task runner; a write refreshes the register and the heat map.
"""

from __future__ import annotations

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
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services import rcsa
from services.auth import User
from services.rcsa import RcsaError
from widgets.rcsa_heatmap import HeatMap, score_colour
from widgets.records import CoalescedLoad, Field, RecordTableModel, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.store import Store

PRIORITY_COLOURS = {"High": QColor(178, 30, 38), "Medium": QColor(176, 128, 10), "Low": QColor(35, 134, 54)}
ALL = "All"
PRIORITY_RANK = {3: "High", 2: "Medium", 1: "Low"}


def _int(v: Any) -> str:
    return "" if v != v else f"{int(v)}"


def _priority(rank: Any) -> str:
    return PRIORITY_RANK.get(int(rank), "") if rank == rank else ""


def error_message(e: BaseException) -> str:
    return str(e) if isinstance(e, RcsaError) else f"Unexpected error ({type(e).__name__}): {e}"


class RcsaDock(QWidget):
    refreshed = Signal()
    saved = Signal(int)  # a risk's id after an add or a rescore

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.rows: list[dict[str, Any]] = []
        self.by_id: dict[int, dict[str, Any]] = {}
        self.cell: tuple[int, int] | None = None
        self._busy = False
        self._pending_text = ""
        self._pending_id = 0
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)

        self.model = RecordTableModel([
            Field("ID", "id", "number", fmt=_int),
            Field("Risk", "title"),
            Field("Owner", "owner"),
            Field("Score", "score", "number", fmt=_int, tooltip="likelihood × impact",
                  foreground=lambda v: score_colour(int(v)).lighter(170) if v == v else None),
            Field("Priority", "priority_rank", "number", tooltip="High ≥ 10, Medium 5–9, Low ≤ 4",
                  fmt=_priority, align=Qt.AlignmentFlag.AlignCenter,  # sorts High > Medium > Low
                  background=lambda v: PRIORITY_COLOURS.get(_priority(v)),
                  foreground=lambda v: QColor(255, 255, 255) if _priority(v) else None),
            Field("L", "likelihood", "number", fmt=_int, tooltip="likelihood 1–5"),
            Field("I", "impact", "number", fmt=_int, tooltip="impact 1–5"),
            Field("Controls", "controls"),
            Field("Updated", "updated_at", "time", tooltip="Hong Kong time"),
        ], self)
        self.view = make_table(self.model)
        self.view.setObjectName("rcsa_register")
        self.view.sortByColumn(3, Qt.SortOrder.DescendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

        self.priority_filter = QComboBox()
        self.priority_filter.addItems([ALL, *rcsa.PRIORITIES])
        self.owner_filter = QComboBox()
        self.owner_filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.owner_filter.addItem(ALL)
        self.cell_label = QLabel("")
        self.clear_cell = QPushButton("Show all cells")
        self.clear_cell.setVisible(False)
        self.count_label = QLabel("")
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Priority"))
        bar.addWidget(self.priority_filter)
        bar.addWidget(QLabel("Owner"))
        bar.addWidget(self.owner_filter)
        bar.addWidget(self.count_label)
        bar.addWidget(self.cell_label)
        bar.addWidget(self.clear_cell)
        bar.addStretch(1)
        self.priority_filter.currentTextChanged.connect(self._filter)
        self.owner_filter.currentTextChanged.connect(self._filter)
        self.clear_cell.clicked.connect(lambda: self.select_cell(0, 0))

        self.heat = HeatMap()
        self.heat.cell_clicked.connect(self.select_cell)

        self.forms = QTabWidget()
        self.forms.setDocumentMode(True)
        self.forms.addTab(self._add_form(), "Add risk")
        self.forms.addTab(self._rescore_form(), "Rescore selected")
        self.hint = QLabel("")  # what the form still needs, as you type
        self.hint.setWordWrap(True)
        set_tone(self.hint, "")
        self.message = QLabel("")  # the outcome of the last add / rescore
        self.message.setWordWrap(True)
        set_tone(self.message, "")

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(bar)
        ll.addWidget(self.view, 1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.heat, 3)
        rl.addWidget(self.forms, 2)
        rl.addWidget(self.hint)
        rl.addWidget(self.message)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        lay.addWidget(split)
        self.forms.currentChanged.connect(lambda _i: self._update_buttons())
        self.view.doubleClicked.connect(lambda _i: self.forms.setCurrentIndex(1))  # rescore this one
        self._update_buttons()

    # ------------------------------------------------------------------ forms
    def _add_form(self) -> QWidget:
        w = QWidget()
        f = QFormLayout(w)
        self.title_edit = QLineEdit()
        self.title_edit.setPlaceholderText("what could go wrong")
        self.owner_edit = QLineEdit()
        self.owner_edit.setPlaceholderText("e.g. Head of Operations")
        self.lk_edit = QLineEdit()
        self.im_edit = QLineEdit()
        for e in (self.lk_edit, self.im_edit):
            e.setPlaceholderText("1–5")
            e.setMaximumWidth(60)
        self.controls_edit = QLineEdit()
        self.controls_edit.setPlaceholderText("controls in place")
        self.add_preview = QLabel("")
        li = QHBoxLayout()
        li.addWidget(QLabel("Likelihood"))
        li.addWidget(self.lk_edit)
        li.addWidget(QLabel("Impact"))
        li.addWidget(self.im_edit)
        li.addWidget(self.add_preview, 1)
        self.add_button = QPushButton("Add risk")
        f.addRow("Risk", self.title_edit)
        f.addRow("Owner", self.owner_edit)
        f.addRow(li)
        f.addRow("Controls", self.controls_edit)
        f.addRow(self.add_button)
        for e in (self.title_edit, self.owner_edit, self.lk_edit, self.im_edit, self.controls_edit):
            e.textChanged.connect(self._update_buttons)
        self.add_button.clicked.connect(self._add)
        return w

    def _rescore_form(self) -> QWidget:
        w = QWidget()
        f = QFormLayout(w)
        self.selected_label = QLabel("Select a risk in the register")
        self.selected_label.setWordWrap(True)
        self.new_lk = QLineEdit()
        self.new_im = QLineEdit()
        for e in (self.new_lk, self.new_im):
            e.setPlaceholderText("1–5")
            e.setMaximumWidth(60)
        self.rescore_preview = QLabel("")
        li = QHBoxLayout()
        li.addWidget(QLabel("Likelihood"))
        li.addWidget(self.new_lk)
        li.addWidget(QLabel("Impact"))
        li.addWidget(self.new_im)
        li.addWidget(self.rescore_preview, 1)
        self.new_controls = QLineEdit()
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("why the assessment changed")
        self.rescore_button = QPushButton("Rescore")
        f.addRow(self.selected_label)
        f.addRow(li)
        f.addRow("Controls", self.new_controls)
        f.addRow("Reason", self.reason_edit)
        f.addRow(self.rescore_button)
        for e in (self.new_lk, self.new_im, self.new_controls, self.reason_edit):
            e.textChanged.connect(self._update_buttons)
        self.rescore_button.clicked.connect(self._rescore)
        return w

    def _add_problem(self) -> str:
        try:
            rcsa.check_risk(self.title_edit.text(), self.owner_edit.text(), self.lk_edit.text(), self.im_edit.text())
        except RcsaError as e:
            return str(e)
        return ""

    def _rescore_problem(self) -> str:
        risk = self.current_risk()
        if risk is None:
            return "select a risk in the register"
        try:
            lk = rcsa.check_scale("likelihood", self.new_lk.text())
            im = rcsa.check_scale("impact", self.new_im.text())
        except RcsaError as e:
            return str(e)
        if (lk, im) == (risk["likelihood"], risk["impact"]) and self.new_controls.text().strip() == risk["controls"]:
            return "nothing changed: a new likelihood, impact or controls"
        if not self.reason_edit.text().strip():
            return "reason: say why the risk is rescored"
        return ""

    @staticmethod
    def _preview(lk: str, im: str) -> str:
        try:
            s = rcsa.score(rcsa.check_scale("likelihood", lk), rcsa.check_scale("impact", im))
        except RcsaError:
            return ""
        return f"score {s} · {rcsa.priority(s)}"

    def _may_edit(self) -> bool:
        return self.user is not None and self.user.role in rcsa.REGISTER_ROLES

    def _update_buttons(self) -> None:
        may = self._may_edit()
        why_not = "" if may else "Adding and rescoring risks is for Risk officer, Supervisor, CRO or Operations"
        self.add_preview.setText(self._preview(self.lk_edit.text(), self.im_edit.text()))
        self.rescore_preview.setText(self._preview(self.new_lk.text(), self.new_im.text()))
        add_problem, rescore_problem = self._add_problem(), self._rescore_problem()
        self.add_button.setEnabled(may and not add_problem and not self._busy)
        self.add_button.setToolTip(why_not or add_problem or "Add the risk to the register")
        self.rescore_button.setEnabled(may and not rescore_problem and not self._busy)
        self.rescore_button.setToolTip(why_not or rescore_problem or "Save the new assessment")
        typed_add = any(e.text() for e in (self.title_edit, self.owner_edit, self.lk_edit, self.im_edit))
        on_add = self.forms.currentIndex() == 0
        problem = (add_problem if typed_add else "") if on_add else rescore_problem
        if not may and self.user is not None:
            set_tone(self.hint, why_not, "info")
        else:
            set_tone(self.hint, problem, "warn")

    # ------------------------------------------------------------------ context
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self._update_buttons()
        self.refresh()

    def refresh(self) -> None:
        if self.store is None or self.tasks is None:
            return
        self._load.request()

    def stop(self) -> None:
        self._load.cancel()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(rcsa.risks, self.store, on_done=on_done, on_error=on_error, name="rcsa register")

    def _loaded(self, rows: list[dict[str, Any]]) -> None:
        first = not self.rows
        for r in rows:
            r["priority_rank"] = {v: k for k, v in PRIORITY_RANK.items()}[r["priority"]]
        self.rows = rows
        self.by_id = {int(r["id"]): r for r in rows}
        self.model.set_records(rows)
        owners = sorted({r["owner"] for r in rows})
        keep = self.owner_filter.currentText()
        self.owner_filter.blockSignals(True)
        self.owner_filter.clear()
        self.owner_filter.addItems([ALL, *owners])
        self.owner_filter.setCurrentText(keep if keep in owners else ALL)
        self.owner_filter.blockSignals(False)
        self.heat.set_counts(rcsa.heat_map(rows))
        self._filter()
        if first and rows:
            fit_columns(self.view, 220)
        self._current_changed()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        set_tone(self.message, f"refresh failed: {error_message(e)}")

    # ------------------------------------------------------------------ filtering
    def select_cell(self, likelihood: int, impact: int) -> None:
        """Show only the risks of one heat-map cell ((0, 0): all cells again)."""
        self.cell = (likelihood, impact) if likelihood else None
        if self.cell is None:
            self.heat.clear_selection()
        self._filter()

    def _filter(self) -> None:
        pri = self.priority_filter.currentText()
        owner = self.owner_filter.currentText()
        cell = self.cell
        by_id = self.by_id

        def keep(keys: np.ndarray) -> np.ndarray:
            out = np.zeros(keys.shape[0], bool)
            for i, k in enumerate(keys.tolist()):
                r = by_id.get(int(k))
                out[i] = r is not None and (pri == ALL or r["priority"] == pri) and (
                    owner == ALL or r["owner"] == owner) and (
                    cell is None or (r["likelihood"], r["impact"]) == cell)
            return out

        filtered = pri != ALL or owner != ALL or cell is not None
        self.model.set_filter(keep if filtered else None)
        if cell is not None:
            lk, im = cell
            s = lk * im
            self.cell_label.setText(f"Cell L{lk} × I{im} = {s} ({rcsa.priority(s)})")
        self.cell_label.setVisible(cell is not None)
        self.clear_cell.setVisible(cell is not None)
        n, total = self.model.rowCount(), len(self.rows)
        self.count_label.setText(f"{n} of {total} risks" if filtered else f"{total} risks")

    def visible_ids(self) -> list[int]:
        return [self.model.key_at(r) for r in range(self.model.rowCount())]

    # ------------------------------------------------------------------ selection and writes
    def current_risk(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        if not idx.isValid():
            return None
        return self.by_id.get(self.model.key_at(idx.row()))

    def select_risk(self, risk_id: int) -> None:
        row = self.model.row_of(risk_id)
        if row >= 0:
            self.view.selectRow(row)

    def _current_changed(self, *_: Any) -> None:
        r = self.current_risk()
        if r is None:
            self.selected_label.setText("Select a risk in the register")
        else:
            self.selected_label.setText(f"#{r['id']} {r['title']} · {r['owner']} · L{r['likelihood']} × "
                                        f"I{r['impact']} = {r['score']} ({r['priority']})")
            for e, v in ((self.new_lk, r["likelihood"]), (self.new_im, r["impact"]),
                         (self.new_controls, r["controls"])):
                e.blockSignals(True)
                e.setText(str(v))
                e.blockSignals(False)
            self.reason_edit.clear()
        self._update_buttons()

    def _run(self, fn: Any, *args: Any, what: str) -> None:
        assert self.tasks is not None
        self._busy = True
        set_tone(self.message, f"{what}…", "info")
        self._update_buttons()
        self.tasks.run(fn, *args, on_done=self._saved, on_error=self._failed, name=f"rcsa {what.lower()}")

    def _add(self) -> None:
        if self._add_problem() or self.user is None:
            return
        self._pending_text = f"added “{self.title_edit.text().strip()}”"
        self._run(rcsa.add_risk, self.store, self.user, self.title_edit.text(), self.owner_edit.text(),
                  self.lk_edit.text(), self.im_edit.text(), self.controls_edit.text(), what="Adding")

    def _rescore(self) -> None:
        r = self.current_risk()
        if r is None or self._rescore_problem() or self.user is None:
            return
        self._pending_text = f"rescored #{r['id']}"
        self._pending_id = int(r["id"])
        self._run(rcsa.rescore, self.store, self.user, int(r["id"]), self.new_lk.text(), self.new_im.text(),
                  self.reason_edit.text(), self.new_controls.text(), int(r["version"]), what="Rescoring")

    def _saved(self, result: int) -> None:
        self._busy = False
        adding = self._pending_text.startswith("added")
        rid = int(result) if adding else self._pending_id
        if adding:
            for e in (self.title_edit, self.owner_edit, self.lk_edit, self.im_edit, self.controls_edit):
                e.clear()
        else:
            self.reason_edit.clear()
        set_tone(self.message, f"{self._pending_text}", "ok")
        self.saved.emit(rid)
        self.refresh()

    def _failed(self, e: BaseException) -> None:
        self._busy = False
        set_tone(self.message, error_message(e))
        self._update_buttons()


__all__ = ["RcsaDock"]
