"""The stock level weighting page of the indices dock: long market value in margin accounts by stock
level (a table and a pyqtgraph bar chart of each level's share), the default level declines
precomputed (accounts in call, new calls, total call amount), and "Simulate margin call", which runs
the selected decline through `stress.run` in a worker and lists the accounts it puts in call.

The whole page is filled from one `services.level_weighting.LevelWeighting` read in a worker. The
chart is built the first time data arrives (pyqtgraph costs ~0.6 s to import, so never at start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from services import level_weighting
from widgets.formatting import CENTER, STATUS_BADGE, STATUS_TEXT, integer, money
from widgets.records import Field, RecordTableModel, error_text, hk_time, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner

LEVEL_COLOURS = ("#58a6ff", "#e3b341", "#f0883e")
STATUS_INDEX = {"safe": 0, "warning": 1, "call": 2, "force": 3}


def _caption(text: str, tooltip: str = "") -> QLabel:
    """A one-line caption that clips rather than widening the dock (the full text is its tooltip)."""
    label = QLabel(text)
    label.setProperty("role", "caption")
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setToolTip(tooltip or text)
    return label


def _pct(v: Any) -> str:
    return "" if v != v else f"{float(v) * 100:.1f}%"


def _count(v: Any) -> str:
    return "" if v != v else integer(v)


def _status_bg(v: Any) -> Any:
    return STATUS_BADGE.get(STATUS_INDEX.get(str(v), 0))


def _status_fg(v: Any) -> Any:
    return STATUS_TEXT if STATUS_INDEX.get(str(v), 0) else None


class LevelWeightingView(QWidget):
    """Weighting by level, the level declines and the accounts a simulated decline puts in call."""

    refresh_requested = Signal()
    loaded = Signal()
    simulated = Signal(int)  # accounts in call

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tasks: TaskRunner | None = None
        self.data: level_weighting.LevelWeighting | None = None
        self.chart: Any = None
        self._bars: Any = None
        self._labels: list[Any] = []
        self._sim_task: Task | None = None
        self._fitted: set[str] = set()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(4)
        bar = QHBoxLayout()
        self.status = _caption("Long market value in margin accounts by stock level")
        bar.addWidget(self.status, 1)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(240)
        self.progress.hide()
        bar.addWidget(self.progress)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh_requested.emit)
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        self.level_model = RecordTableModel([
            Field("Level", "level"), Field("Long MV (HKD)", "market_value", "number"),
            Field("Share", "share", "number", fmt=_pct), Field("Securities", "securities", "number", fmt=_count,
                                                               tooltip="securities held long at this level")], self)
        self.level_view = make_table(self.level_model)
        self.level_view.setSortingEnabled(False)
        self.level_model.sort(-1)
        self.chart_box = QVBoxLayout()
        self.chart_box.setContentsMargins(0, 0, 0, 0)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.setSpacing(2)
        self.level_view.setMaximumHeight(4 * 22 + 30)
        ll.addWidget(self.level_view)
        ll.addLayout(self.chart_box, 1)

        self.decline_model = RecordTableModel([
            Field("Decline", "scenario"),
            Field("In call", "accounts_in_call", "number", fmt=_count, tooltip="accounts in call or force after it"),
            Field("New calls", "new_calls", "number", fmt=_count, tooltip="of them, not in call before"),
            Field("Total call amount", "total_call_amount", "number"), Field("Shocks", "shocks")], self)
        self.decline_view = make_table(self.decline_model)
        self.decline_view.setSortingEnabled(False)  # four rows, in the file's order: combined first
        self.decline_model.sort(-1)
        self.decline_view.doubleClicked.connect(lambda _i: self.simulate())
        self.decline_view.selectionModel().currentRowChanged.connect(lambda *_: self._update_buttons())
        mid = QWidget()
        ml = QVBoxLayout(mid)
        ml.setContentsMargins(0, 0, 0, 0)
        ml.setSpacing(2)
        head = QHBoxLayout()
        head.addWidget(_caption("Default level declines", "the SFC level declines of resources/scenarios/"
                                "sfc_level_declines.json together and one level at a time, run as stress "
                                "scenarios with the standing stress exemptions"), 1)
        self.simulate_button = QPushButton("Simulate &margin call")
        self.simulate_button.setAutoDefault(False)
        self.simulate_button.setToolTip("run the selected decline and list the accounts it puts in call")
        self.simulate_button.clicked.connect(self.simulate)
        head.addWidget(self.simulate_button)
        ml.addLayout(head)
        ml.addWidget(self.decline_view, 1)

        self.call_model = RecordTableModel([
            Field("Account", "account"), Field("Client", "client"),
            Field("Status", "status", align=CENTER, background=_status_bg, foreground=_status_fg),
            Field("Before", "before", align=CENTER), Field("Equity", "equity", "number"),
            Field("IM", "im", "number"), Field("Call amount", "call_amount", "number"),
            Field("Shortfall", "shortfall", "number")], self)
        self.call_view = make_table(self.call_model)
        self.call_view.sortByColumn(6, Qt.SortOrder.DescendingOrder)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(2)
        self.call_caption = _caption("Accounts in call — select a decline, then Simulate margin call")
        rl.addWidget(self.call_caption)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        rl.addWidget(self.message)
        rl.addWidget(self.call_view, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        for w in (left, mid, right):
            split.addWidget(w)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setStretchFactor(2, 1)
        split.setSizes([340, 560, 460])
        lay.addWidget(split, 1)
        self._update_buttons()

    def set_tasks(self, tasks: TaskRunner) -> None:
        self.tasks = tasks

    def stop(self) -> None:
        if self._sim_task is not None:
            self._sim_task.cancel()
        self._sim_task = None

    # ------------------------------------------------------------------ data
    def show_loading(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(f"{text} %p%" if text else "%p%")
        self.progress.show()

    def show_error(self, e: BaseException) -> None:
        self.progress.hide()
        set_tone(self.message, f"weighting failed: {error_text(e)}")

    def show_data(self, data: level_weighting.LevelWeighting) -> None:
        self.progress.hide()
        self.data = data
        total = float(data.market_value.sum())
        self.status.setText(f"Long market value in margin accounts by stock level: {money(total)} HKD · "
                            f"book as of {hk_time(data.as_of)}")
        self.status.setToolTip(self.status.text())
        self.level_model.set_records(data.rows())
        self.decline_model.set_records(data.declines)
        for name, view in (("level", self.level_view), ("decline", self.decline_view)):
            if name not in self._fitted and view.model().rowCount():
                fit_columns(view, 160)
                self._fitted.add(name)
        if not self.decline_view.currentIndex().isValid() and self.decline_model.rowCount():
            self.decline_view.selectRow(0)
        self._draw_chart()
        self._update_buttons()
        self.loaded.emit()

    def shares(self) -> list[float]:
        """The share of each level as the table shows it (level 1, 2, 3)."""
        m = self.level_model
        return [float(r["share"]) for r in (m.record_at(i) for i in range(m.rowCount())) if r is not None]

    def declines(self) -> list[dict[str, Any]]:
        m = self.decline_model
        return [r for r in (m.record_at(i) for i in range(m.rowCount())) if r is not None]

    def _draw_chart(self) -> None:
        import pyqtgraph as pg

        from widgets.equity_chart import AmountAxis

        assert self.data is not None
        if self.chart is None:
            self.chart = pg.PlotWidget(axisItems={"left": AmountAxis(orientation="left")})
            self.chart.setBackground("#161b22")
            item = self.chart.getPlotItem()
            item.setMenuEnabled(False)
            item.setMouseEnabled(x=False, y=False)
            item.hideButtons()
            item.showGrid(x=False, y=True, alpha=0.15)
            item.getAxis("left").setWidth(60)
            item.getAxis("bottom").setTicks([[(i + 1, f"Level {i + 1}") for i in range(3)]])
            for axis in ("left", "bottom"):
                item.getAxis(axis).setTextPen("#8b949e")
                item.getAxis(axis).setPen("#30363d")
            self.chart.setMinimumHeight(110)
            self.chart_box.addWidget(self.chart, 1)
        item = self.chart.getPlotItem()
        if self._bars is not None:
            item.removeItem(self._bars)
        for label in self._labels:
            item.removeItem(label)
        mv = self.data.market_value
        self._bars = pg.BarGraphItem(x=[1, 2, 3], height=mv.tolist(), width=0.6,
                                     brushes=[pg.mkBrush(c) for c in LEVEL_COLOURS], pens=[pg.mkPen(None)] * 3)
        item.addItem(self._bars)
        self._labels = []
        for i, share in enumerate(self.data.share.tolist()):
            label = pg.TextItem(f"{share * 100:.1f}%", color="#c9d1d9", anchor=(0.5, 1.0))
            label.setPos(i + 1, float(mv[i]))
            item.addItem(label)
            self._labels.append(label)
        item.setXRange(0.4, 3.6, padding=0)
        item.setYRange(0, max(float(mv.max()) * 1.18, 1.0), padding=0)

    # ------------------------------------------------------------------ simulate
    def selected_decline(self) -> int | None:
        idx = self.decline_view.currentIndex()
        rec = self.decline_model.record_at(idx.row()) if idx.isValid() else None
        return None if rec is None else int(rec["id"]) - 1

    def _update_buttons(self) -> None:
        self.simulate_button.setEnabled(self.data is not None and self.data.engine is not None
                                        and self.selected_decline() is not None and self._sim_task is None
                                        and self.tasks is not None)

    def simulate(self) -> None:
        """Run the selected decline through `stress.run` in a worker; list the accounts in call."""
        k = self.selected_decline()
        data = self.data
        if k is None or data is None or data.engine is None or self.tasks is None or self._sim_task is not None:
            return
        sc = data.scenarios[k]
        self.message.hide()
        self.call_caption.setText(f"Accounts in call — simulating {sc.name}…")
        self._sim_task = self.tasks.run(level_weighting.simulate, data.engine, sc,
                                        on_done=lambda rows: self._simulated(sc.name, rows),
                                        on_error=self._simulate_failed, name=f"simulate {sc.name}")
        self._update_buttons()

    def _simulated(self, name: str, rows: list[dict[str, Any]]) -> None:
        self._sim_task = None
        self.call_model.set_records(rows)
        if "calls" not in self._fitted and rows:
            fit_columns(self.call_view, 160)
            self._fitted.add("calls")
        new = sum(1 for r in rows if r["new"])
        total = sum(r["call_amount"] for r in rows)
        self.call_caption.setText(f"{name}: {len(rows):,} accounts in call ({new:,} new) · "
                                  f"total call amount {money(total)}")
        self.call_caption.setToolTip(self.call_caption.text())
        self._update_buttons()
        self.simulated.emit(len(rows))

    def _simulate_failed(self, e: BaseException) -> None:
        self._sim_task = None
        self.call_caption.setText("Accounts in call")
        set_tone(self.message, f"simulation failed: {error_text(e)}")
        self._update_buttons()

    def call_rows(self) -> list[dict[str, Any]]:
        m = self.call_model
        return [r for r in (m.record_at(i) for i in range(m.rowCount())) if r is not None]
