"""The loss-event charts (pyqtgraph): the monthly trend of gross and net loss, and the net loss by Basel
event type, business line and cause. They draw frames the service aggregated off the GUI thread
(`services.loss_events.breakdown` / `monthly_trend`); drawing is all that happens here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QWidget

from widgets.equity_chart import AmountAxis
from widgets.stress_charts import BACKGROUND, _plot, _Titled

GROSS, NET, BAR = "#30506e", "#f0883e", "#58a6ff"
SHORT_TYPES = {
    "Internal Fraud": "Internal fraud", "External Fraud": "External fraud",
    "Employment Practices & Workplace Safety": "Employment & safety",
    "Clients, Products & Business Practices": "Clients & practices",
    "Damage to Physical Assets": "Physical assets", "Business Disruption & System Failures": "Disruption & systems",
    "Execution, Delivery & Process Management": "Execution & process"}


class TrendChart(_Titled):
    """Gross (muted) and net (orange) loss per month of discovery; the events per month in the caption."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.plot = _plot(left=AmountAxis(orientation="left"))
        super().__init__("Monthly trend — gross and net loss (HKD)", self.plot, parent)
        self.bars: list[pg.BarGraphItem] = []
        self.months: list[str] = []

    def show_trend(self, trend: pd.DataFrame) -> None:
        for b in self.bars:
            self.plot.removeItem(b)
        self.bars = []
        x = np.arange(len(trend), dtype=float)
        self.months = [str(m) for m in trend["month"]]
        for offset, col, colour in ((-0.2, "gross_hkd", GROSS), (0.2, "net_hkd", NET)):
            bar = pg.BarGraphItem(x=x + offset, height=trend[col].to_numpy(float), width=0.38, brush=colour,
                                  pen=pg.mkPen(BACKGROUND))
            self.plot.addItem(bar)
            self.bars.append(bar)
        self.plot.getAxis("bottom").setTicks([[(float(i), m[2:]) for i, m in enumerate(self.months)]])
        self.plot.getPlotItem().getViewBox().autoRange()
        n, near = int(trend["events"].sum()), int(trend["near_misses"].sum())
        self.title.setText(f"Monthly trend — gross (blue) and net (orange) loss, HKD · {n} events, "
                           f"{near} near misses in {len(trend)} months")


class BreakdownChart(_Titled):
    """Net loss (HKD) per category as horizontal bars, categories top to bottom."""

    def __init__(self, title: str, labels: dict[str, str] | None = None, parent: QWidget | None = None) -> None:
        self.plot = _plot(bottom=AmountAxis(orientation="bottom"))
        self.plot.getPlotItem().getAxis("left").setWidth(165)
        super().__init__(title, self.plot, parent)
        self.labels = labels or {}
        self.bar: pg.BarGraphItem | None = None
        self.values: dict[str, float] = {}
        self.base_title = title

    def show_breakdown(self, df: pd.DataFrame, key: str) -> None:
        if self.bar is not None:
            self.plot.removeItem(self.bar)
        keys = [str(k) for k in df[key]]
        net = df["net_hkd"].to_numpy(float)
        self.values = dict(zip(keys, net.tolist(), strict=True))
        y = np.arange(len(keys), dtype=float)[::-1]
        self.bar = pg.BarGraphItem(x0=np.zeros(len(keys)), y=y, width=net, height=0.7, brush=BAR,
                                   pen=pg.mkPen(BACKGROUND))
        self.plot.addItem(self.bar)
        self.plot.getAxis("left").setTicks([[(float(yy), self.labels.get(k, k.capitalize() if k.islower() else k))
                                             for yy, k in zip(y, keys, strict=True)]])
        self.plot.getPlotItem().getViewBox().autoRange()
        events = int(df["events"].sum())
        self.title.setText(f"{self.base_title} · {events} events")


class LossCharts(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(2, 2, 2, 2)
        self.trend = TrendChart()
        self.by_type = BreakdownChart("Net loss by event type (HKD)", SHORT_TYPES)
        self.by_line = BreakdownChart("Net loss by business line (HKD)")
        self.by_cause = BreakdownChart("Net loss by cause (HKD)")
        grid.addWidget(self.trend, 0, 0)
        grid.addWidget(self.by_type, 0, 1)
        grid.addWidget(self.by_line, 1, 0)
        grid.addWidget(self.by_cause, 1, 1)

    def show_figures(self, trend: pd.DataFrame, by_type: pd.DataFrame, by_line: pd.DataFrame,
                     by_cause: pd.DataFrame) -> None:
        self.trend.show_trend(trend)
        self.by_type.show_breakdown(by_type, "event_type")
        self.by_line.show_breakdown(by_line, "business_line")
        self.by_cause.show_breakdown(by_cause, "cause")
