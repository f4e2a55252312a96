"""The two charts of a stress run (pyqtgraph): stressed excess as a histogram, and the total call
amount against the size of an across-the-board fall (the run's shock curve).

pyqtgraph costs ~0.6 s to import, so the results view builds these only when it first shows a run.
Both take numbers computed in the worker (`services.stress_view.open_run`): drawing is all the GUI
thread does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from widgets.equity_chart import AmountAxis

BACKGROUND = "#161b22"
DEFICIT, SURPLUS, CURVE, CURRENT = "#f85149", "#3fb950", "#e3b341", "#58a6ff"


def _plot(left: pg.AxisItem | None = None, bottom: pg.AxisItem | None = None) -> pg.PlotWidget:
    axes: dict[str, Any] = {}
    if left is not None:
        axes["left"] = left
    if bottom is not None:
        axes["bottom"] = bottom
    plot = pg.PlotWidget(axisItems=axes)
    plot.setBackground(BACKGROUND)
    item = plot.getPlotItem()
    item.showGrid(x=True, y=True, alpha=0.15)
    item.setMenuEnabled(False)
    item.getAxis("left").setWidth(64)
    for axis in ("left", "bottom"):
        item.getAxis(axis).setTextPen("#8b949e")
        item.getAxis(axis).setPen("#30363d")
    plot.setMouseEnabled(x=False, y=False)
    return plot


class _Titled(QWidget):
    def __init__(self, title: str, plot: pg.PlotWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.title = QLabel(title)
        self.title.setProperty("role", "caption")
        lay.addWidget(self.title)
        lay.addWidget(plot, 1)


class ExcessHistogram(_Titled):
    """Accounts by stressed excess (E′ − IM′): deficits red, surpluses green."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.plot = _plot(bottom=AmountAxis(orientation="bottom"))
        super().__init__("Stressed excess (E′ − IM′), accounts per bin", self.plot, parent)
        self.plot.getPlotItem().setLabel("left", "accounts", color="#8b949e")
        self.bars: list[pg.BarGraphItem] = []

    def show_counts(self, counts: np.ndarray, edges: np.ndarray) -> None:
        for bar in self.bars:
            self.plot.removeItem(bar)
        self.bars = []
        if counts.size == 0:
            return
        mids = (edges[:-1] + edges[1:]) / 2
        width = float(edges[1] - edges[0]) * 0.9
        neg = mids < 0
        for mask, colour in ((neg, DEFICIT), (~neg, SURPLUS)):
            if mask.any():
                bar = pg.BarGraphItem(x=mids[mask], height=counts[mask], width=width, brush=colour,
                                      pen=pg.mkPen(BACKGROUND))
                self.plot.addItem(bar)
                self.bars.append(bar)
        self.plot.getPlotItem().getViewBox().autoRange()

    @property
    def total(self) -> int:
        return int(sum(int(np.sum(b.opts["height"])) for b in self.bars))


class CallCurveChart(_Titled):
    """Total call amount for an across-the-board fall of each size (the run's ``curve``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.plot = _plot(left=AmountAxis(orientation="left"))
        super().__init__("Total call amount against the size of a fall across the board", self.plot, parent)
        self.plot.getPlotItem().setLabel("bottom", "fall (%)", color="#8b949e")
        self.line = self.plot.plot([], [], pen=pg.mkPen(CURVE, width=2), symbol="o", symbolSize=6,
                                   symbolBrush=CURVE, symbolPen=None)
        self.empty = pg.TextItem("no shock curve in this run", color="#8b949e", anchor=(0.5, 0.5))
        self.plot.addItem(self.empty)
        self.points = 0

    def show_curve(self, curve: list[dict[str, Any]]) -> None:
        x = np.array([-100.0 * float(p["change"]) for p in curve])
        y = np.array([float(p["total_call_amount"]) for p in curve])
        self.line.setData(x, y)
        self.points = int(x.size)
        self.empty.setVisible(x.size == 0)
        if x.size:
            self.plot.getPlotItem().getViewBox().autoRange()
        else:
            self.empty.setPos(0.5, 0.5)
