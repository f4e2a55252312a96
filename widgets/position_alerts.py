"""The position-alerts list (RISK_METHODS §6): new positions and >50 % changes, newest first.

The monitor keeps alerts in a bounded deque written by the feed thread; this model copies what is
new since the last poll and inserts it at the top with one `beginInsertRows`, trimming the tail to
the same bound, so the list scrolls like a blotter without resets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from widgets.formatting import LEFT, RIGHT, clock_time, quantity

Index = QModelIndex | QPersistentModelIndex
HEADERS = ("Time", "Account", "Security", "Alert", "Old qty", "New qty", "Change")


class PositionAlertsModel(QAbstractTableModel):
    def __init__(self, limit: int = 500, parent: Any = None) -> None:
        super().__init__(parent)
        self.limit = limit
        self._rows: list[Any] = []  # PositionAlert, newest first
        self._last: Any = None  # the newest alert already shown (identity)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
                   ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.TextAlignmentRole:
            return RIGHT if section >= 4 else LEFT
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        a = self._rows[index.row()]
        c = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if c == 0:
                return clock_time(a.ts)
            if c == 6:
                if a.old_qty == 0:
                    return "new"
                return f"{(a.new_qty - a.old_qty) / abs(a.old_qty) * 100:+.0f}%"
            return (None, a.account, a.code, a.kind, quantity(a.old_qty), quantity(a.new_qty))[c]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return RIGHT if c >= 4 else LEFT
        return None

    def poll(self, alerts: Sequence[Any]) -> int:
        """Take the alerts added since the last poll (``alerts`` oldest first); returns how many."""
        if not alerts or alerts[-1] is self._last:
            return 0
        new: list[Any] = []
        for a in reversed(alerts):
            if a is self._last:
                break
            new.append(a)
        self._last = alerts[-1]
        new = new[: self.limit]
        self.beginInsertRows(QModelIndex(), 0, len(new) - 1)
        self._rows[0:0] = new
        self.endInsertRows()
        if len(self._rows) > self.limit:
            self.beginRemoveRows(QModelIndex(), self.limit, len(self._rows) - 1)
            del self._rows[self.limit:]
            self.endRemoveRows()
        return len(new)

    def clear(self) -> None:
        self.beginResetModel()
        self._rows.clear()
        self._last = None
        self.endResetModel()
