"""Equity against IM and MM of one account through the session (pyqtgraph).

pyqtgraph costs ~0.6 s to import, so this module is imported only when the drill-down builds its
chart, after the main window has painted. Points go into preallocated arrays that double when full
(the pyqtgraph scrollingPlots pattern), and the plot clips to the view and peak-downsamples, so a
long session costs neither allocation per tick nor drawing of invisible points.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class AmountAxis(pg.AxisItem):
    """HKD amounts as 5.8M / 950K rather than pyqtgraph's 5.8e+06."""

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            a = abs(v * scale)
            if a >= 1e9:
                out.append(f"{v * scale / 1e9:,.2f}B")
            elif a >= 1e6:
                out.append(f"{v * scale / 1e6:,.2f}M")
            elif a >= 1e4:
                out.append(f"{v * scale / 1e3:,.0f}K")
            else:
                out.append(f"{v * scale:,.0f}")
        return out


MIN_SPAN_S = 60.0  # a fresh session still shows a readable time axis
SERIES = (("Equity", "#58a6ff", 2.0, None), ("IM", "#e3b341", 1.5, None), ("MM", "#f85149", 1.5, "dash"))


class EquityChart(QWidget):
    def __init__(self, parent: QWidget | None = None, capacity: int = 1024) -> None:
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom"),
                                             "left": AmountAxis(orientation="left")})
        self.plot.setBackground("#161b22")
        item = self.plot.getPlotItem()
        item.setClipToView(True)
        item.setDownsampling(mode="peak")
        item.showGrid(x=True, y=True, alpha=0.15)
        item.setMenuEnabled(False)
        item.getAxis("left").setWidth(70)
        for axis in ("left", "bottom"):
            item.getAxis(axis).setTextPen("#8b949e")
            item.getAxis(axis).setPen("#30363d")
        self.curves = []
        for name, colour, width, style in SERIES:
            pen = pg.mkPen(colour, width=width,
                           style=Qt.PenStyle.DashLine if style == "dash" else Qt.PenStyle.SolidLine)
            self.curves.append(self.plot.plot([], [], pen=pen, name=name))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        # the legend sits above the plot, never on top of the lines it explains
        legend = "&nbsp;&nbsp;&nbsp;".join(
            f'<span style="color:{colour}">{"╍╍" if style else "━━"}</span> {name}'
            for name, colour, _w, style in SERIES)
        self.legend = QLabel(f'<span style="color:#8b949e">This session</span>&nbsp;&nbsp;&nbsp;{legend}')
        lay.addWidget(self.legend)
        lay.addWidget(self.plot, 1)
        self._t = np.zeros(capacity)
        self._v = np.zeros((3, capacity))
        self.n = 0

    def load(self, t: np.ndarray, values: np.ndarray) -> None:
        """Replace the series with ``t`` and ``values`` [equity, im, mm] × samples."""
        k = int(t.shape[0])
        cap = max(self._t.shape[0], 1 << max(k, 1).bit_length())
        if cap != self._t.shape[0]:
            self._t = np.zeros(cap)
            self._v = np.zeros((3, cap))
        self._t[:k] = t
        self._v[:, :k] = values
        self.n = k
        self._redraw()

    def append(self, ts: float, equity: float, im: float, mm: float) -> None:
        """Add one live point (ignored unless later than the last one)."""
        if self.n and ts <= self._t[self.n - 1]:
            return
        if self.n == self._t.shape[0]:
            self._t = np.concatenate([self._t, np.zeros_like(self._t)])
            self._v = np.concatenate([self._v, np.zeros_like(self._v)], axis=1)
        self._t[self.n] = ts
        self._v[:, self.n] = (equity, im, mm)
        self.n += 1
        self._redraw()

    def clear(self) -> None:
        self.n = 0
        self._redraw()

    def _redraw(self) -> None:
        t = self._t[: self.n]
        for i, curve in enumerate(self.curves):
            curve.setData(t, self._v[i, : self.n])
        vb = self.plot.getPlotItem().getViewBox()
        if self.n and t[-1] - t[0] < MIN_SPAN_S:
            vb.setXRange(t[0], t[0] + MIN_SPAN_S, padding=0.02)
        else:
            vb.enableAutoRange(axis="x")
