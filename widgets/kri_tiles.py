"""The KRI tiles: one per KRI with its value, RAG colour, trend arrow and what it waits for.

A tile reads left to right the way the desk scans it: the colour bar, the KRI's name, the latest value
with its unit and the arrow (red when the move is in the worse direction, green when it improves),
then a status line — "AMBER 7 business days → shown red", "commentary needed", "request #12 pending".
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from services.kri import KriStatus
from services.kri_dashboard import needs_commentary

RAG = {"green": "#3fb950", "amber": "#e3b341", "red": "#f85149", "": "#8b949e"}
RAG_TINT = {"green": "#12261a", "amber": "#2e2610", "red": "#3a1519", "": "#1c2128"}
MUTED = "#8b949e"
COLUMNS = 4


def value_text(st: KriStatus) -> str:
    if st.value is None:
        return "no reading"
    v = st.value
    body = f"{v:,.0f}" if st.unit in ("calls", "breaks", "incidents") or abs(v) >= 1000 else f"{v:,.2f}"
    unit = st.unit if st.unit in ("%",) else f" {st.unit}" if st.unit else ""
    return body + unit


def arrow_colour(st: KriStatus) -> str:
    """Red when the last move is in the worse direction, green when it improves, grey when flat."""
    if st.trend in ("", "flat"):
        return MUTED
    worse = (st.trend == "up") == (st.direction == "higher_worse")
    return RAG["red"] if worse else RAG["green"]


def status_line(st: KriStatus, pending: dict[str, object] | None = None) -> str:
    parts = []
    if st.colour:
        if st.escalated:
            parts.append(f"AMBER {st.streak} business days → shown RED")
        else:
            parts.append(st.colour.upper() + (f" {st.streak} d" if st.colour == "amber" and st.streak > 1 else ""))
    if needs_commentary(st):
        parts.append("commentary needed")
    if pending:
        parts.append(f"request #{pending['id']} pending")
    return " · ".join(parts)


class KriTile(QFrame):
    clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.code = ""
        self.colour = ""
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setMinimumHeight(78)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 5, 8, 5)
        lay.setSpacing(1)
        self.name = QLabel()
        self.name.setStyleSheet(f"color: {MUTED}; font-size: 11px;")
        self.value = QLabel()
        self.value.setTextFormat(Qt.TextFormat.RichText)
        self.value.setStyleSheet("font-size: 19px; font-weight: 600;")
        self.status = QLabel()
        self.status.setStyleSheet("font-size: 11px;")
        for w in (self.name, self.value, self.status):
            lay.addWidget(w)
        self._selected = False

    def show_status(self, st: KriStatus, pending: dict[str, object] | None = None) -> None:
        self.code, self.colour = st.code, st.colour
        self.arrow = st.arrow
        self.name.setText(st.name)
        self.name.setToolTip(f"{st.code}: {st.description}\n{st.direction.replace('_', ' ')}; "
                             f"amber from {st.amber:g}, red from {st.red:g}")
        self.value.setText(f"{value_text(st)} <span style='color:{arrow_colour(st)}'>{st.arrow}</span>"
                           if st.arrow else value_text(st))
        self.status.setText(status_line(st, pending))
        self.status.setStyleSheet(f"font-size: 11px; color: {RAG[st.colour]};")
        self.setToolTip(f"last reading {st.day.isoformat() if st.day else '—'}"
                        + (f"\n{st.comment}" if st.comment else ""))
        self._restyle()

    def set_selected(self, on: bool) -> None:
        self._selected = on
        self._restyle()

    def _restyle(self) -> None:
        edge = "#58a6ff" if self._selected else "#30363d"
        self.setStyleSheet(f"KriTile {{ background: {RAG_TINT[self.colour]}; border: 1px solid {edge}; "
                           f"border-left: 6px solid {RAG[self.colour]}; border-radius: 4px; }}")

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt)
        if event.button() == Qt.MouseButton.LeftButton and self.code:
            self.clicked.emit(self.code)
        super().mousePressEvent(event)


class KriTiles(QWidget):
    """All KRIs as a grid of tiles; a click selects one."""

    selected = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(6)
        self.tiles: dict[str, KriTile] = {}
        self.current = ""

    def show_statuses(self, statuses: list[KriStatus], pending: dict[str, dict[str, object]]) -> None:
        codes = [s.code for s in statuses]
        if codes != list(self.tiles):
            for tile in self.tiles.values():
                tile.deleteLater()
            self.tiles = {}
            for i, code in enumerate(codes):
                tile = KriTile(self)
                tile.clicked.connect(self.select)
                self.grid.addWidget(tile, i // COLUMNS, i % COLUMNS)
                self.tiles[code] = tile
        for st in statuses:
            self.tiles[st.code].show_status(st, pending.get(st.code))
        if self.current in self.tiles:
            self.tiles[self.current].set_selected(True)

    def select(self, code: str) -> None:
        if code not in self.tiles:
            return
        for c, tile in self.tiles.items():
            tile.set_selected(c == code)
        changed = code != self.current
        self.current = code
        if changed:
            self.selected.emit(code)


__all__ = ["RAG", "KriTile", "KriTiles", "arrow_colour", "status_line", "value_text"]
