"""The before/after table of a change request: every field, the changed ones marked and tinted, and
what the store holds now beside them (stale values in orange)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from widgets.formatting import STALE_TEXT
from widgets.records import MUTED_TEXT, delta_text, field_label, value_text

BEFORE_BG, AFTER_BG = QColor(72, 28, 34), QColor(24, 66, 40)
CHANGED_MARK = QColor(227, 179, 65)


class DiffTable(QTableWidget):
    """Field · before · after · change · now: every field, the changed ones marked and tinted."""

    HEADERS = ("", "Field", "Before (at request)", "After (proposed)", "Change", "Now in store")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(list(self.HEADERS))
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(24)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setShowGrid(False)
        self.setWordWrap(False)
        h = self.horizontalHeader()
        h.setHighlightSections(False)
        h.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        h.setStretchLastSection(True)  # the last visible column takes the spare width
        h.setMinimumSectionSize(24)
        h.setDefaultAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        h.resizeSection(1, 190)
        field_head = QTableWidgetItem(self.HEADERS[1])
        field_head.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.setHorizontalHeaderItem(1, field_head)
        self.changed: list[str] = []

    def set_diff(self, kind: str, key: dict[str, Any], before: dict[str, Any], after: dict[str, Any],
                 current: dict[str, Any] | None = None, show_current: bool = True) -> None:
        names = list(dict.fromkeys([*before, *after]))
        self.changed = [n for n in names if before.get(n) != after.get(n)]
        self.setRowCount(len(names))
        if not names:
            self.setRowCount(1)
            empty = QTableWidgetItem("no values recorded")
            empty.setForeground(MUTED_TEXT)
            self.setItem(0, 1, empty)
        bold = QFont(self.font())
        bold.setBold(True)
        for r, n in enumerate(names):
            changed = n in self.changed
            b, a = before.get(n), after.get(n)
            cells = ["●" if changed else "", field_label(kind, n, key),
                     value_text(b, n) if n in before else "",
                     value_text(a, n) if n in after else "", delta_text(b, a, n)]
            now = current.get(n) if current is not None else None
            cells.append(value_text(now, n) if current is not None and n in current else "")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignVCenter | (
                    Qt.AlignmentFlag.AlignRight if c >= 2 else Qt.AlignmentFlag.AlignLeft))
                if c == 0:
                    item.setForeground(CHANGED_MARK)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                    item.setToolTip("changed" if changed else "")
                elif not changed:
                    item.setForeground(MUTED_TEXT)
                elif c == 2:
                    item.setBackground(BEFORE_BG)
                elif c == 3:
                    item.setBackground(AFTER_BG)
                    item.setFont(bold)
                if c == 5 and current is not None and n in current and n in before and now != b:
                    item.setForeground(STALE_TEXT)
                    item.setToolTip("changed in the store since this request was made")
                self.setItem(r, c, item)
        self.setColumnHidden(5, not show_current)
        self.setFixedHeight(self.horizontalHeader().height() + 24 * max(1, len(names)) + 4)
