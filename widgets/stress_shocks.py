"""The shock part of the scenario editor: the run-mode builder and the editable tables of shocks
(target kind, target, change in %) and FX shocks (currency, change in %).

The desk's run modes — by market, by stock group, by single stock (or index level, or all
securities) — are a builder above the table: pick the mode, the target and the change, "Add shock"
(checked against the book first, refused inline).

Small lists a person types into, so a plain list-of-rows model with an item delegate: the kind
column is a combo of the five target kinds, the target column an editable combo offering what that
kind can name in the book (markets, levels, stock groups, security codes — typing filters them),
the change a text cell. Row order is kept as entered (the later of two equally specific shocks
wins), so these tables do not sort. A row the last check refused is tinted until it is edited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from services.stress import TARGET_KINDS, ScenarioError
from services.stress_view import StressSetup, scenario_from_rows
from widgets.tables import make_table

Index = QModelIndex | QPersistentModelIndex
BAD_ROW = QColor(96, 22, 28)
KIND_LABELS = {"all": "all securities", "market": "market", "level": "index level", "group": "stock group",
               "security": "single stock"}
KIND_OF_LABEL = {v: k for k, v in KIND_LABELS.items()}
MODES = (("By market", "market"), ("By stock group", "group"), ("By single stock", "security"),
         ("By index level", "level"), ("All securities", "all"))


class RowsModel(QAbstractTableModel):
    """Rows of text cells; ``choices(row, column)`` lists what a cell may hold (empty: free text)."""

    edited = Signal()

    def __init__(self, headers: list[str], parent: Any = None) -> None:
        super().__init__(parent)
        self.headers = headers
        self.rows: list[list[str]] = []
        self.bad_row = -1
        self.choices: Callable[[int, int], list[str]] = lambda _r, _c: []
        self.tooltips: dict[int, str] = {}

    # ------------------------------------------------------------------ Qt interface
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.headers)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
                   ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.headers[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltips.get(section)
        if orientation == Qt.Orientation.Vertical and role == Qt.ItemDataRole.DisplayRole:
            return section + 1
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            v = self.rows[r][c]
            if role == Qt.ItemDataRole.DisplayRole and self.headers[c] == "Target kind":
                return KIND_LABELS.get(v, v)
            if role == Qt.ItemDataRole.DisplayRole and self.headers[c] == "Target" and self.rows[r][0] == "all":
                return "—"
            return v
        if role == Qt.ItemDataRole.BackgroundRole and r == self.bad_row:
            return BAD_ROW
        if role == Qt.ItemDataRole.TextAlignmentRole and c == len(self.headers) - 1:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        f = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.isValid() and not (self.headers[index.column()] == "Target" and self.rows[index.row()][0] == "all"):
            f |= Qt.ItemFlag.ItemIsEditable
        return f

    def setData(self, index: Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or role != Qt.ItemDataRole.EditRole:
            return False
        r, c = index.row(), index.column()
        text = str(value).strip()
        if self.headers[c] == "Target kind":
            text = KIND_OF_LABEL.get(text, text)
            if text != self.rows[r][c]:
                self.rows[r][1] = ""  # a new kind names a different kind of target
        self.rows[r][c] = text
        if r == self.bad_row:
            self.bad_row = -1
        self.dataChanged.emit(self.index(r, 0), self.index(r, len(self.headers) - 1))
        self.edited.emit()
        return True

    # ------------------------------------------------------------------ editing
    def set_rows(self, rows: list[list[str]]) -> None:
        self.beginResetModel()
        self.rows = [list(r) for r in rows]
        self.bad_row = -1
        self.endResetModel()

    def append(self, row: list[str]) -> int:
        n = len(self.rows)
        self.beginInsertRows(QModelIndex(), n, n)
        self.rows.append(list(row))
        self.endInsertRows()
        self.edited.emit()
        return n

    def remove(self, row: int) -> None:
        if 0 <= row < len(self.rows):
            self.beginRemoveRows(QModelIndex(), row, row)
            del self.rows[row]
            self.endRemoveRows()
            self.bad_row = -1
            self.edited.emit()

    def move(self, row: int, step: int) -> int:
        """Move ``row`` up (−1) or down (+1); returns its new position."""
        to = row + step
        if not (0 <= row < len(self.rows) and 0 <= to < len(self.rows)):
            return row
        self.beginMoveRows(QModelIndex(), row, row, QModelIndex(), to + 1 if step > 0 else to)
        self.rows.insert(to, self.rows.pop(row))
        self.endMoveRows()
        self.edited.emit()
        return to

    def mark_bad(self, row: int) -> None:
        old, self.bad_row = self.bad_row, row
        for r in (old, row):
            if 0 <= r < len(self.rows):
                self.dataChanged.emit(self.index(r, 0), self.index(r, len(self.headers) - 1))


def shock_model(parent: Any = None) -> RowsModel:
    m = RowsModel(["Target kind", "Target", "Change %"], parent)
    m.tooltips = {0: "most specific wins: single stock > stock group > index level > market > all",
                  2: "relative change in percent, e.g. -20 for a 20% fall (not below -100)"}
    return m


def fx_model(parent: Any = None) -> RowsModel:
    m = RowsModel(["Currency", "Change %"], parent)
    m.tooltips = {1: "change of the currency's HKD rate in percent, e.g. -5"}
    return m


class ChoiceDelegate(QStyledItemDelegate):
    """A combo editor for cells with choices (editable, filtered as typed, when ``free``)."""

    def __init__(self, model: RowsModel, free_columns: set[int], parent: Any = None) -> None:
        super().__init__(parent)
        self.rows_model = model
        self.free_columns = free_columns

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: Index) -> QWidget:
        choices = self.rows_model.choices(index.row(), index.column())
        if not choices:
            return super().createEditor(parent, option, index)
        combo = QComboBox(parent)
        combo.addItems(choices)
        if index.column() in self.free_columns:
            combo.setEditable(True)
            completer = QCompleter(choices, combo)
            completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
            completer.setFilterMode(Qt.MatchFlag.MatchContains)
            combo.setCompleter(completer)
        return combo

    def setEditorData(self, editor: QWidget, index: Index) -> None:
        if isinstance(editor, QComboBox):
            text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
            i = editor.findText(text)
            if i >= 0:
                editor.setCurrentIndex(i)
            elif editor.isEditable():
                editor.setEditText(str(index.data(Qt.ItemDataRole.EditRole) or ""))
            return
        super().setEditorData(editor, index)

    def setModelData(self, editor: QWidget, model: Any, index: Index) -> None:
        if isinstance(editor, QComboBox):
            model.setData(index, editor.currentText(), Qt.ItemDataRole.EditRole)
            return
        super().setModelData(editor, model, index)


def _button(text: str, slot: Callable[[], Any], lay: QHBoxLayout) -> QPushButton:
    b = QPushButton(text)
    b.setAutoDefault(False)
    b.clicked.connect(lambda _c=False: slot())
    lay.addWidget(b)
    return b


def targets_of(setup: StressSetup | None, kind: str) -> list[str]:
    """What a shock of ``kind`` may name in the book."""
    if setup is None:
        return []
    return {"market": setup.markets, "level": ["1", "2", "3"], "group": setup.groups,
            "security": setup.securities}.get(kind, [])


class ShockEditor(QWidget):
    """Run-mode builder, shocks table and FX table; `edited` after every change, `problem` with a
    refusal of the builder (the editor shows it inline)."""

    edited = Signal()
    problem = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setup: StressSetup | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        build = QHBoxLayout()
        self.mode_combo = QComboBox()
        for label, kind in MODES:
            self.mode_combo.addItem(label, kind)
        self.mode_combo.setToolTip("run mode: builds shocks by market, by stock group or by single stock")
        self.mode_target = QComboBox()
        self.mode_target.setEditable(True)
        self.mode_target.setMinimumWidth(100)
        self.mode_change = QLineEdit()
        self.mode_change.setPlaceholderText("change %")
        self.mode_change.setMaximumWidth(90)
        self.mode_change.setMinimumWidth(70)
        self.mode_change.returnPressed.connect(self.add_mode_shock)
        build.addWidget(self.mode_combo)
        build.addWidget(self.mode_target, 1)
        build.addWidget(self.mode_change)
        self.add_shock_button = _button("Add shock", self.add_mode_shock, build)
        lay.addLayout(build)
        self.shocks = shock_model(self)
        self.shocks.choices = self._shock_choices
        self.shocks_view = self._rows_view(self.shocks, {1}, "stress_shocks")
        lay.addWidget(self.shocks_view, 3)
        rows = QHBoxLayout()
        _button("Add row", lambda: self._add_row(self.shocks, self.shocks_view, ["all", "", ""]), rows)
        _button("Remove", lambda: self.shocks.remove(self.shocks_view.currentIndex().row()), rows)
        _button("Up", lambda: self._move_row(-1), rows)
        _button("Down", lambda: self._move_row(1), rows)
        rows.addStretch(1)
        lay.addLayout(rows)
        self.fx = fx_model(self)
        self.fx.choices = lambda _r, c: (self.setup.currencies if self.setup and c == 0 else [])
        self.fx_view = self._rows_view(self.fx, {0}, "stress_fx_shocks")
        lay.addWidget(self.fx_view, 1)
        fx = QHBoxLayout()
        _button("Add FX shock", lambda: self._add_row(self.fx, self.fx_view, ["USD", "-5"]), fx)
        _button("Remove FX", lambda: self.fx.remove(self.fx_view.currentIndex().row()), fx)
        fx.addStretch(1)
        lay.addLayout(fx)
        self.mode_combo.currentIndexChanged.connect(lambda _i: self._mode_changed())
        for m in (self.shocks, self.fx):
            m.edited.connect(self.edited)
            m.modelReset.connect(self.edited)

    def _rows_view(self, model: RowsModel, free: set[int], name: str) -> QTableView:
        view = make_table(model)
        view.setObjectName(name)
        view.setSortingEnabled(False)
        view.setItemDelegate(ChoiceDelegate(model, free, view))
        view.setEditTriggers(QTableView.EditTrigger.DoubleClicked | QTableView.EditTrigger.EditKeyPressed
                             | QTableView.EditTrigger.AnyKeyPressed | QTableView.EditTrigger.SelectedClicked)
        return view

    def set_setup(self, setup: StressSetup) -> None:
        self.setup = setup
        self._mode_changed()

    def _shock_choices(self, row: int, col: int) -> list[str]:
        if col == 0:
            return [KIND_LABELS[k] for k in TARGET_KINDS]
        return targets_of(self.setup, self.shocks.rows[row][0]) if col == 1 else []

    def _mode_changed(self) -> None:
        kind = str(self.mode_combo.currentData())
        items = targets_of(self.setup, kind)
        current = self.mode_target.currentText()
        self.mode_target.clear()
        self.mode_target.addItems(items)
        self.mode_target.setEnabled(kind != "all")
        completer = QCompleter(items, self.mode_target)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.mode_target.setCompleter(completer)
        if current in items:
            self.mode_target.setCurrentText(current)
        edit = self.mode_target.lineEdit()
        if edit is not None:
            edit.setPlaceholderText({"security": "stock code", "group": "stock group", "market": "market",
                                     "level": "1, 2 or 3"}.get(kind, ""))

    def set_mode(self, kind: str, target: str = "", change: str = "") -> None:
        """Choose a run mode (``market`` / ``group`` / ``security`` / ``level`` / ``all``) and fill it."""
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(kind)))
        self.mode_target.setCurrentText(target)
        self.mode_change.setText(change)

    def add_mode_shock(self) -> bool:
        """Append the run-mode row (mode, target, change) to the shocks; refused inline when bad."""
        kind = str(self.mode_combo.currentData())
        target = "" if kind == "all" else self.mode_target.currentText().strip()
        try:
            scenario_from_rows("check", [(kind, target, self.mode_change.text())], [], [], [],
                               self.setup.book if self.setup else None)
        except ScenarioError as e:
            self.problem.emit("Add shock: " + str(e).replace("shocks[0].", ""))
            return False
        self._add_row(self.shocks, self.shocks_view, [kind, target, self.mode_change.text().strip()])
        self.mode_change.clear()
        self.problem.emit("")
        return True

    def _add_row(self, model: RowsModel, view: QTableView, row: list[str]) -> None:
        r = model.append(row)
        view.setCurrentIndex(model.index(r, 0))

    def _move_row(self, step: int) -> None:
        idx = self.shocks_view.currentIndex()
        if idx.isValid():
            to = self.shocks.move(idx.row(), step)
            self.shocks_view.setCurrentIndex(self.shocks.index(to, idx.column()))


__all__ = ["KIND_LABELS", "MODES", "ChoiceDelegate", "RowsModel", "ShockEditor", "fx_model", "shock_model"]
