"""A KRI's last 30 readings over its green / amber / red threshold bands (pyqtgraph).

The bands run from the thresholds in the KRI's worse direction (higher is worse: green below amber,
amber up to red, red above; lower is worse mirrored), so a point's band is its colour. Points are
filled with their own colour. Everything drawn comes computed from the background load.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from services.kri import KriStatus, colours
from widgets.kri_tiles import RAG

BACKGROUND = "#161b22"
BAND_ALPHA = 46
DAY = 86400.0


def bands_of(st: KriStatus, lo: float, hi: float) -> dict[str, tuple[float, float]]:
    """The y-range of each colour between ``lo`` and ``hi`` (the plotted range)."""
    if st.direction == "higher_worse":
        return {"green": (lo, st.amber), "amber": (st.amber, st.red), "red": (st.red, hi)}
    return {"red": (lo, st.red), "amber": (st.red, st.amber), "green": (st.amber, hi)}


def y_range(st: KriStatus) -> tuple[float, float]:
    vals = np.r_[st.values, st.amber, st.red]
    lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
    pad = max((hi - lo) * 0.12, abs(hi) * 0.01, 1e-6)
    lo_p, hi_p = lo - pad, hi + pad
    if lo >= 0:  # counts, rates and balances never go below zero: no empty negative strip
        lo_p = max(lo_p, 0.0 if lo > pad else -pad * 0.25)
    if st.unit == "%" and hi <= 100:
        hi_p = min(hi_p, 100.0 + pad * 0.25)
    return lo_p, hi_p


class KriChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.title = QLabel("Select a KRI")
        self.title.setProperty("role", "caption")
        lay.addWidget(self.title)
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.setBackground(BACKGROUND)
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.12)
        item.setMenuEnabled(False)
        item.getAxis("left").setWidth(56)
        for axis in ("left", "bottom"):
            item.getAxis(axis).setTextPen("#8b949e")
            item.getAxis(axis).setPen("#30363d")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        lay.addWidget(self.plot, 1)
        self.bands: dict[str, tuple[float, float]] = {}
        self.code = ""
        self._items: list[pg.GraphicsObject] = []

    def show_status(self, st: KriStatus) -> None:
        """Draw ``st``'s readings (its last 30) over its threshold bands."""
        for it in self._items:
            self.plot.removeItem(it)
        self._items = []
        self.code = st.code
        unit = f" ({st.unit})" if st.unit else ""
        self.title.setText(f"{st.name}{unit} — last {len(st.values)} readings · amber {st.amber:g} · "
                           f"red {st.red:g} · {st.direction.replace('_', ' ')}")
        if len(st.values) == 0:
            self.bands = {}
            return
        x = st.days.astype("datetime64[s]").astype(np.int64).astype(float)
        lo, hi = y_range(st)
        self.bands = bands_of(st, lo, hi)
        for name, (a, b) in self.bands.items():
            c = QColor(RAG[name])
            c.setAlpha(BAND_ALPHA)
            band = pg.LinearRegionItem(values=(a, b), orientation="horizontal", movable=False, brush=c,
                                       pen=pg.mkPen(None))
            band.setZValue(-10)
            self.plot.addItem(band)
            self._items.append(band)
        for level, name in ((st.amber, "amber"), (st.red, "red")):
            line = pg.InfiniteLine(level, angle=0, pen=pg.mkPen(RAG[name], width=1, style=pg.QtCore.Qt.PenStyle.DashLine))
            self.plot.addItem(line)
            self._items.append(line)
        cols = colours(st.values, st.direction, st.amber, st.red)
        brushes = [pg.mkBrush(RAG[str(c)]) for c in cols]
        curve = pg.PlotDataItem(x, st.values, pen=pg.mkPen("#c9d1d9", width=1.5), symbol="o", symbolSize=6,
                                symbolBrush=brushes, symbolPen=pg.mkPen(BACKGROUND))
        self.plot.addItem(curve)
        self._items.append(curve)
        self.plot.setXRange(x[0] - DAY / 2, x[-1] + DAY / 2, padding=0)
        self.plot.setYRange(lo, hi, padding=0)


__all__ = ["KriChart", "bands_of", "y_range"]
