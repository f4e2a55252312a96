"""Small labelled-figure widgets: a caption over a big number (totals), and a caption/value form grid.

Shared so every dock shows a headline figure the same way and updates it by setting text only
(no relayout per tick).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget


class FigureCard(QFrame):
    """A caption and a large value, e.g. "Total call amount / 12,345,678.00"."""

    def __init__(self, caption: str, tooltip: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setProperty("role", "card")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 4, 10, 4)
        lay.setSpacing(0)
        self.caption = QLabel(caption)
        self.caption.setProperty("role", "caption")
        self.value = QLabel("–")
        self.value.setProperty("role", "figure")
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.caption)
        lay.addWidget(self.value)
        if tooltip:
            self.setToolTip(tooltip)

    def set_value(self, text: str, colour: str | None = None) -> None:
        if self.value.text() != text:
            self.value.setText(text)
        style = f"color: {colour}" if colour else ""
        if self.value.styleSheet() != style:
            self.value.setStyleSheet(style)


class FieldGrid(QWidget):
    """Caption/value pairs in ``columns`` column pairs; values are right-aligned and selectable."""

    def __init__(self, names: Sequence[str], columns: int = 2, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        self.values: dict[str, QLabel] = {}
        rows = (len(names) + columns - 1) // columns
        for i, name in enumerate(names):
            r, c = i % rows, (i // rows) * 2
            cap = QLabel(name)
            cap.setProperty("role", "caption")
            val = QLabel("")
            val.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            val.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(cap, r, c)
            grid.addWidget(val, r, c + 1)
            self.values[name] = val
        for c in range(columns):
            grid.setColumnStretch(c * 2 + 1, 1)

    def set(self, name: str, text: str, colour: str | None = None) -> None:
        label = self.values[name]
        if label.text() != text:
            label.setText(text)
        style = f"color: {colour}" if colour else ""
        if label.styleSheet() != style:
            label.setStyleSheet(style)

    def clear(self) -> None:
        for label in self.values.values():
            label.setText("")
