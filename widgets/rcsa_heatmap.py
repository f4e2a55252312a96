"""The RCSA 5×5 heat map (RISK_METHODS §7): likelihood rows (5 at the top), impact columns (1 at the
left), each cell coloured green → red by its score with the number of register risks in it. Clicking a
cell emits `cell_clicked(likelihood, impact)`; clicking the selected cell again clears it."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from services.rcsa import priority

LIKELIHOOD_LABELS = {1: "Rare", 2: "Unlikely", 3: "Possible", 4: "Likely", 5: "Almost certain"}
IMPACT_LABELS = {1: "Slight", 2: "Minor", 3: "Moderate", 4: "Major", 5: "Severe"}


def score_colour(score: int) -> QColor:
    """Green → red in the priority bands of §7, dark enough for white text: Low (≤ 4) greens, Medium
    (5–9) ambers, High (≥ 10) orange to deep red — so a cell's colour never contradicts its priority."""
    s = min(max(int(score), 1), 25)
    if s <= 4:
        hue, value = 0.34 - 0.04 * (s - 1) / 3, 0.58
    elif s <= 9:
        hue, value = 0.13 - 0.03 * (s - 5) / 4, 0.66
    else:
        t = (s - 10) / 15
        hue, value = 0.06 - 0.06 * t, 0.70 - 0.12 * t
    return QColor.fromHsvF(hue, 0.82, value)


class _VerticalLabel(QWidget):
    """An axis title written bottom to top."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = text
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().height() + 6, self.fontMetrics().horizontalAdvance(self.text) + 8)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def paintEvent(self, event: object) -> None:
        p = QPainter(self)
        p.setPen(self.palette().color(self.foregroundRole()))
        p.translate(0, self.height())
        p.rotate(-90)
        p.drawText(0, 0, self.height(), self.width(), int(Qt.AlignmentFlag.AlignCenter), self.text)
        p.end()


class _CellDelegate(QStyledItemDelegate):
    """Paints a cell in its score colour always, the selected one framed in white (not repainted in
    the selection colour, so the clicked cell keeps its green → red meaning)."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        selected = bool(option.state & QStyle.StateFlag.State_Selected)  # type: ignore[operator]
        opt = QStyleOptionViewItem(option)
        opt.state &= ~QStyle.StateFlag.State_Selected  # type: ignore[assignment]
        opt.state &= ~QStyle.StateFlag.State_HasFocus  # type: ignore[assignment]
        super().paint(painter, opt, index)
        if selected:
            painter.save()
            painter.setPen(QPen(QColor(255, 255, 255), 3))
            painter.drawRect(option.rect.adjusted(2, 2, -2, -2))  # type: ignore[attr-defined]
            painter.restore()


class HeatMap(QWidget):
    cell_clicked = Signal(int, int)  # likelihood, impact; (0, 0) when the selection is cleared

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.counts = np.zeros((5, 5), np.int64)
        self.selected: tuple[int, int] | None = None
        self.table = QTableWidget(5, 5)
        self.table.setObjectName("rcsa_heatmap")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.table.setItemDelegate(_CellDelegate(self.table))
        self.table.setVerticalHeaderLabels([f"{lk} {LIKELIHOOD_LABELS[lk]}" for lk in range(5, 0, -1)])
        self.table.setHorizontalHeaderLabels([f"{im}\n{IMPACT_LABELS[im]}" for im in range(1, 6)])
        for h in (self.table.horizontalHeader(), self.table.verticalHeader()):
            h.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
            h.setHighlightSections(False)
        self.table.horizontalHeader().setMinimumSectionSize(58)
        self.table.verticalHeader().setMinimumSectionSize(34)
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        for lk in range(1, 6):
            for im in range(1, 6):
                item = QTableWidgetItem("")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setFont(font)
                s = lk * im
                item.setBackground(score_colour(s))
                item.setForeground(QColor(255, 255, 255))
                self.table.setItem(*self.cell_of(lk, im), item)
        self.table.cellClicked.connect(self._clicked)

        lay = QGridLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        top = QLabel("Impact →")
        top.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(QLabel("Heat map — click a cell to list its risks"), 0, 0, 1, 2)
        lay.addWidget(top, 1, 1)
        lay.addWidget(_VerticalLabel("Likelihood →"), 2, 0)
        lay.addWidget(self.table, 2, 1)

    @staticmethod
    def cell_of(likelihood: int, impact: int) -> tuple[int, int]:
        """(row, column) of a likelihood × impact cell: likelihood 5 is the top row."""
        return 5 - likelihood, impact - 1

    def set_counts(self, counts: np.ndarray) -> None:
        """``counts[likelihood - 1, impact - 1]`` as from `services.rcsa.heat_map`."""
        self.counts = np.asarray(counts, np.int64)
        for lk in range(1, 6):
            for im in range(1, 6):
                n = int(self.counts[lk - 1, im - 1])
                item = self.table.item(*self.cell_of(lk, im))
                assert item is not None
                item.setText(str(n) if n else "")
                s = lk * im
                item.setToolTip(f"Likelihood {lk} × impact {im} = {s} ({priority(s)}): "
                                f"{n} risk{'s' if n != 1 else ''} — click to list them")

    def count(self, likelihood: int, impact: int) -> int:
        return int(self.counts[likelihood - 1, impact - 1])

    def click(self, likelihood: int, impact: int) -> None:
        """What a mouse click on that cell does (tests, keyboard)."""
        self._clicked(*self.cell_of(likelihood, impact))

    def clear_selection(self) -> None:
        self.selected = None
        self.table.clearSelection()

    def _clicked(self, row: int, column: int) -> None:
        cell = (5 - row, column + 1)
        if self.selected == cell:
            self.clear_selection()
            self.cell_clicked.emit(0, 0)
            return
        self.selected = cell
        self.table.setCurrentCell(row, column)
        self.cell_clicked.emit(*cell)
