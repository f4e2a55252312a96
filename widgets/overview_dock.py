"""Risk overview: the home dock — credit, liquidity, operational, technology and compliance at a glance.

Every figure is a card; clicking it (or Enter on it) raises the dock that explains it (`open_dock`).
Live figures (credit, technology) are recomputed from the engine's arrays once a second on the GUI
thread (a handful of vectorised sums over the accounts); stored figures (LCS, stress, KRIs, incidents,
breaks, approvals, pre-trade) come from one background query every 30 s, on refresh and after every
four-eyes decision. A bar shows the accounts by margin status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QGridLayout, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from services.overview import AREAS, Figure, live_figures, store_figures
from widgets.figures import FigureCard
from widgets.formatting import STATUS_ACCENT

LEVEL_COLOURS = {"ok": "#3fb950", "warn": "#e3b341", "bad": "#f85149", "none": None}
STATUS_LABELS = ("safe", "warning", "call", "force")
STORE_INTERVAL_MS = 30_000


class ClickableCard(FigureCard):
    """A figure card that asks for its dock when clicked or when Enter / Space is pressed on it."""

    clicked = Signal(str)

    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(caption, parent=parent)
        self.dock = ""
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.dock:
            self.clicked.emit(self.dock)
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space) and self.dock:
            self.clicked.emit(self.dock)
            return
        super().keyPressEvent(event)


class OverviewDock(QWidget):
    open_dock = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("risk_overview_widget")
        self.store: Any = None
        self.tasks: Any = None
        self.monitor: Any = None
        self._loading = False
        self.cards: dict[str, ClickableCard] = {}
        self.figures: dict[str, Figure] = {}
        self._boxes: dict[str, QVBoxLayout] = {}

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        head = QHBoxLayout()
        self.title = QLabel("<b>Risk overview</b> — click a figure to open its panel")
        self.as_of = QLabel("stored figures: not loaded")
        self.as_of.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        head.addWidget(self.title, 1)
        head.addWidget(self.as_of)
        outer.addLayout(head)
        grid = QGridLayout()
        grid.setSpacing(6)
        for col, area in enumerate(AREAS):
            box = QGroupBox(area)
            lay = QVBoxLayout(box)
            lay.setContentsMargins(6, 4, 6, 4)
            lay.setSpacing(4)
            lay.addStretch(1)
            self._boxes[area] = lay
            grid.addWidget(box, 0, col)
            grid.setColumnStretch(col, 1)
        outer.addLayout(grid, 3)
        # the bar chart (pyqtgraph) is made with the first live numbers, not before the window first paints
        self.status_plot: Any = None
        self._bars: Any = None
        self._plot_box = QVBoxLayout()
        outer.addLayout(self._plot_box, 1)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        outer.addWidget(self.message)

        self._live_timer = QTimer(self)
        self._live_timer.setInterval(1000)
        self._live_timer.timeout.connect(self.update_live)
        self._store_timer = QTimer(self)
        self._store_timer.setInterval(STORE_INTERVAL_MS)
        self._store_timer.timeout.connect(self.refresh)

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Any, user: Any, tasks: Any) -> None:
        self.store, self.tasks = store, tasks
        self._store_timer.start()
        self.refresh()

    def set_monitor(self, monitor: Any) -> None:
        self.monitor = monitor
        self._live_timer.start()
        self.update_live()

    def stop(self) -> None:
        self._live_timer.stop()
        self._store_timer.stop()

    # ------------------------------------------------------------------ figures
    def _card(self, f: Figure) -> ClickableCard:
        card = self.cards.get(f.key)
        if card is None:
            card = ClickableCard(f.label, self)
            card.clicked.connect(self.open_dock.emit)
            lay = self._boxes[f.area]
            lay.insertWidget(lay.count() - 1, card)
            self.cards[f.key] = card
        return card

    def show_figures(self, figures: list[Figure]) -> None:
        for f in figures:
            self.figures[f.key] = f
            card = self._card(f)
            card.dock = f.dock
            card.set_value(f.display, LEVEL_COLOURS.get(f.level))
            tip = f"{f.hint}\n" if f.hint else ""
            card.setToolTip(f"{tip}Click to open {f.dock.replace('_', ' ')}")

    def update_live(self) -> None:
        m = self.monitor
        if m is None:
            return
        with m.lock:
            engine = m.engine
            figures = live_figures(engine, m.stale_securities(), m.feed_state())
            counts = np.bincount(np.asarray(engine.status, np.int64), minlength=4)[:4]
        self.show_figures(figures)
        if self._bars is None:
            self._make_plot()
        self._bars.setOpts(width=counts.astype(float))
        self.status_plot.setXRange(0, max(1.0, float(counts.max())) * 1.05, padding=0)

    def _make_plot(self) -> None:
        import pyqtgraph as pg

        self.status_plot = pg.PlotWidget()
        self.status_plot.setMinimumHeight(100)
        self.status_plot.setMaximumHeight(130)
        self.status_plot.setMenuEnabled(False)
        self.status_plot.setMouseEnabled(x=False, y=False)
        self.status_plot.hideButtons()
        self.status_plot.getAxis("left").setTicks([[(i, s) for i, s in enumerate(STATUS_LABELS)]])
        self.status_plot.setLabel("bottom", "accounts by margin status")
        self._bars = pg.BarGraphItem(x0=np.zeros(4), y=np.arange(4), height=0.7, width=np.zeros(4),
                                     brushes=[STATUS_ACCENT[i] for i in range(4)])
        self.status_plot.addItem(self._bars)
        self._plot_box.addWidget(self.status_plot)

    def refresh(self) -> None:
        if self.store is None or self.tasks is None or self._loading:
            return
        self._loading = True
        self.tasks.run(store_figures, self.store, on_done=self._stored, on_error=self._failed,
                       name="risk overview")

    def _stored(self, figures: list[Figure]) -> None:
        self._loading = False
        self.show_figures(figures)
        self.as_of.setText(f"stored figures as of {datetime.now().strftime('%H:%M:%S')}")
        self.message.setText("")

    def _failed(self, error: BaseException) -> None:
        self._loading = False
        self.message.setText(f"Could not read the stored figures: {error}")
