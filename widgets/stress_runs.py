"""Stored stress runs: the list (id, name, status, started by / at), and two runs side by side.

A run is started by the dock (it owns the worker, progress and Cancel); this panel lists what the
store holds — `risk_runs.runs(store, "stress")`, read in a worker — and asks the dock to open,
re-run or export the selected run. Compare reads `risk_runs.compare` in a worker and shows the
per-status counts and totals of both runs with the difference, and every account whose status
differs between them.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from services.stress_view import compare_rows
from widgets.formatting import RIGHT, STATUS_ACCENT, integer, money
from widgets.records import MUTED_TEXT, Field, RecordTableModel, set_tone
from widgets.tables import fit_columns, make_table

RUN_STATUS_COLOURS = {"done": QColor(63, 185, 80), "running": QColor(88, 166, 255),
                      "cancelled": QColor(139, 148, 158), "failed": QColor(248, 81, 73)}
STATUS_COLOURS = {name: QColor(STATUS_ACCENT[i]) for i, name in enumerate(("safe", "warning", "call", "force"))}


def _run_fields() -> list[Field]:
    return [Field("Run", "id", "number", fmt=lambda v: "" if v != v else f"#{int(v)}"),
            Field("Scenario", "name"),
            Field("Status", "status", foreground=lambda v: RUN_STATUS_COLOURS.get(str(v))),
            Field("Started by", "started_by"),
            Field("Started at", "started_at", "time", tooltip="Hong Kong time"),
            Field("Finished at", "finished_at", "time", tooltip="Hong Kong time"),
            Field("In call", "in_call", "number", fmt=lambda v: "" if v != v else integer(v),
                  tooltip="accounts in call or force call under the scenario"),
            Field("Total call amount", "total_call_amount", "number"),
            Field("Total shortfall", "total_shortfall", "number"),
            Field("Book as of", "as_of", foreground=lambda _v: MUTED_TEXT),
            Field("Error", "error")]


def _signed(v: float, is_money: bool) -> str:
    if v != v:
        return ""
    body = money(abs(v)) if is_money else integer(abs(v))
    return body if v == 0 else ("+" if v > 0 else "−") + body


class RunsPanel(QWidget):
    """The runs table; the buttons act on the selection (two selected runs for Compare)."""

    open_requested = Signal(int)
    rerun_requested = Signal(int)
    export_requested = Signal(int)
    compare_requested = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._fitted = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        bar = QHBoxLayout()
        self.caption = QLabel("Stress runs, newest first — each kept with its scenario, parameters and book")
        self.caption.setProperty("role", "caption")
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.caption, 1)
        self.open_button = self._button("&Open", lambda: self._one(self.open_requested), bar)
        self.rerun_button = self._button("&Re-run", lambda: self._one(self.rerun_requested), bar)
        self.rerun_button.setToolTip("run again on exactly the stored inputs and book: a new run")
        self.compare_button = self._button("&Compare two", self._compare, bar)
        self.compare_button.setToolTip("select two runs (Ctrl+click)")
        self.export_button = self._button("E&xport to Excel…", lambda: self._one(self.export_requested), bar)
        lay.addLayout(bar)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        lay.addWidget(self.message)
        self.model = RecordTableModel(_run_fields(), self)
        self.view = make_table(self.model)
        self.view.setObjectName("stress_runs")
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.view.doubleClicked.connect(self._double_clicked)
        self.view.selectionModel().selectionChanged.connect(lambda _s, _d: self.update_buttons())
        lay.addWidget(self.view, 1)
        self.busy = False
        self.update_buttons()

    def _button(self, text: str, slot: Any, lay: QHBoxLayout) -> QPushButton:
        b = QPushButton(text)
        b.setAutoDefault(False)
        b.clicked.connect(lambda _c=False: slot())
        lay.addWidget(b)
        return b

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.model.set_records(rows)
        if not self._fitted and rows:
            fit_columns(self.view, 240)
            self._fitted = True
        self.update_buttons()

    def rows(self) -> list[dict[str, Any]]:
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    def record(self, run_id: int) -> dict[str, Any] | None:
        return self.model.record(run_id)

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        return [int(self.model.key_at(r)) for r in rows]

    def select_runs(self, ids: list[int]) -> None:
        sel = self.view.selectionModel()
        sel.clearSelection()
        for rid in ids:
            row = self.model.row_of(rid)
            if row >= 0:
                sel.select(self.model.index(row, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)
        self.update_buttons()

    def update_buttons(self) -> None:
        ids = self.selected_ids()
        one = len(ids) == 1
        done = [self.model.record(i) for i in ids]
        all_done = all(r is not None and r["status"] == "done" for r in done)
        self.open_button.setEnabled(one)
        self.rerun_button.setEnabled(one and not self.busy)
        self.export_button.setEnabled(one and all_done)
        self.compare_button.setEnabled(len(ids) == 2 and all_done)

    def _one(self, signal: Any) -> None:
        ids = self.selected_ids()
        if len(ids) != 1:
            set_tone(self.message, "Select one run.", "warn")
            return
        set_tone(self.message, "")
        signal.emit(ids[0])

    def _compare(self) -> None:
        ids = self.selected_ids()
        if len(ids) != 2:
            set_tone(self.message, "Select two finished runs to compare (Ctrl+click).", "warn")
            return
        set_tone(self.message, "")
        a, b = sorted(ids)
        self.compare_requested.emit(a, b)

    def _double_clicked(self, index: QModelIndex) -> None:
        rec = self.model.record_at(index.row())
        if rec is not None:
            self.open_requested.emit(int(rec["id"]))


class ComparePanel(QWidget):
    """Two runs side by side: counts and totals with B − A, and the accounts whose status moved."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        self.head = QLabel("Select two runs under Runs and press Compare two.")
        self.head.setProperty("role", "caption")
        self.head.setWordWrap(True)
        lay.addWidget(self.head)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.totals = RecordTableModel([Field("", "item"), Field("Run A", "a_text", align=RIGHT),
                                        Field("Run B", "b_text", align=RIGHT),
                                        Field("B − A", "delta_text", align=RIGHT)], self)
        self.totals_view = make_table(self.totals)
        self.totals_view.setObjectName("stress_compare_totals")
        self.totals_view.setSortingEnabled(False)
        self.totals.sort(-1)  # the items in their own order
        split.addWidget(self.totals_view)
        self.changes = RecordTableModel([
            Field("Account", "account"),
            Field("Status A", "status_a", foreground=lambda v: STATUS_COLOURS.get(str(v))),
            Field("Status B", "status_b", foreground=lambda v: STATUS_COLOURS.get(str(v))),
            Field("Call amount A", "call_a", "number"), Field("Call amount B", "call_b", "number"),
            Field("Change in call", "delta", "number", fmt=lambda v: _signed(float(v), True))], self)
        self.changes_view = make_table(self.changes)
        self.changes_view.setObjectName("stress_compare_changes")
        self.changes_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        split.addWidget(self.changes_view)
        split.setSizes([420, 620])
        lay.addWidget(split, 1)
        self.result: dict[str, Any] | None = None

    def show_compare(self, cmp: dict[str, Any]) -> None:
        self.result = cmp
        a, b = cmp["a"], cmp["b"]
        label_a, label_b = f"#{a['id']} {a['name']}", f"#{b['id']} {b['name']}"
        self.head.setText(f"Run A {label_a}   ·   Run B {label_b}   ·   "
                          f"{len(cmp['status_changes']):,} accounts change status")
        self.head.setProperty("role", "figure")
        self.head.style().unpolish(self.head)
        self.head.style().polish(self.head)
        rows = []
        for r in compare_rows(cmp):
            fmt = money if r["money"] else (lambda v: "" if v is None else integer(v))
            rows.append({"id": r["id"], "item": r["item"], "a_text": fmt(r["a"]) if r["a"] is not None else "",
                         "b_text": fmt(r["b"]) if r["b"] is not None else "",
                         "delta_text": _signed(float(r["delta"]), r["money"])})
        self.totals.set_records(rows)
        self.changes.set_records([dict(c, id=i, delta=float(c["call_b"]) - float(c["call_a"]))
                                  for i, c in enumerate(cmp["status_changes"])])
        fit_columns(self.totals_view, 260)
        fit_columns(self.changes_view, 180)

    def total_texts(self) -> dict[str, tuple[str, str, str]]:
        """Item → (run A, run B, B − A) as shown."""
        out = {}
        for i in range(self.totals.rowCount()):
            r = self.totals.record_at(i)
            if r is not None:
                out[r["item"]] = (r["a_text"], r["b_text"], r["delta_text"])
        return out

    def status_changes(self) -> list[tuple[str, str, str]]:
        return [(r["account"], r["status_a"], r["status_b"]) for r in
                (self.changes.record_at(i) for i in range(self.changes.rowCount())) if r is not None]
