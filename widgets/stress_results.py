"""The results of one stress run: summary, the accounts that go into call, those still in surplus,
the 20 largest shortfalls, a histogram of stressed excess, the call amount against shock size, and
an account's stressed positions on double-click.

Everything shown comes from a `services.stress_view.RunView` built in a worker (the stored run and
the engine over its own book); the positions of a double-clicked account are computed in a worker
too, from that run's book, so a past run drills into the book it used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.margin import STATUS_NAMES
from services.stress_view import RunView, stressed_positions
from widgets.array_model import ArrayTableModel, Column, number_column
from widgets.figures import FigureCard
from widgets.formatting import (
    STATUS_ACCENT,
    STATUS_BADGE,
    STATUS_TEXT,
    integer,
    money,
    price,
    quantity,
    ratio,
)
from widgets.records import set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner

TOP_N = 20
CARDS = (("safe", "Safe"), ("warning", "Warning"), ("call", "Call"), ("force", "Force"),
         ("total_call_amount", "Total call amount"), ("total_shortfall", "Total shortfall"),
         ("new_calls", "New calls"))
_STATUS = np.array([s.capitalize() for s in STATUS_NAMES], dtype=object)


def _pct(v: Any) -> str:
    f = float(v)
    return "" if f != f else (f"{f * 100:+.1f}%" if f else "0%")


class AccountsModel(ArrayTableModel):
    """Stressed accounts of the open run; keys are row positions in the run's arrays."""

    def __init__(self, parent: Any = None) -> None:
        self.run: RunView | None = None
        a = self._arr
        super().__init__([
            Column("Account", lambda k: a("accounts")[k]),
            Column("Status before", lambda k: _STATUS[a("status_before")[k]], tooltip="status on the run's book"),
            Column("Stressed status", lambda k: _STATUS[a("status_after")[k]],
                   foreground=lambda k: STATUS_TEXT if self._after(k) else None,
                   background=lambda k: STATUS_BADGE.get(self._after(k))),
            Column("New call", lambda k: np.where(a("new_call")[k], "new", ""),
                   tooltip="in call under the scenario, not before"),
            number_column("Equity′", lambda k: a("equity")[k]),
            number_column("IM′", lambda k: a("im")[k]),
            number_column("MM′", lambda k: a("mm")[k]),
            number_column("Excess′", lambda k: a("excess")[k], tooltip="stressed equity − stressed IM"),
            number_column("Call amount′", lambda k: a("call_amount")[k]),
            number_column("Shortfall′", lambda k: a("shortfall")[k], tooltip="max(0, −E′)"),
        ], parent)

    def _arr(self, name: str) -> np.ndarray:
        run = self.run
        if run is None:
            return np.zeros(0)
        return run.new_call if name == "new_call" else getattr(run, name)

    def _after(self, k: int) -> int:
        return int(self.run.status_after[k]) if self.run is not None and k < self.run.status_after.size else 0

    def show(self, run: RunView | None, keys: np.ndarray) -> None:
        self.run = run
        self.reset(np.asarray(keys, np.int64))

    def account_at(self, row: int) -> str | None:
        if self.run is None or not 0 <= row < self.rowCount():
            return None
        return str(self.run.accounts[self.key_at(row)])


class StressedPositionsDialog(QDialog):
    """One account's positions at the scenario's prices (non-modal; reused for every account)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Stressed positions")
        self.resize(980, 420)
        self.data: dict[str, Any] = {"code": np.zeros(0, object)}
        d = self.data
        lay = QVBoxLayout(self)
        self.head = QLabel("")
        self.head.setProperty("role", "figure")
        self.head.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.head)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.hide()
        lay.addWidget(self.note)
        self.model = ArrayTableModel([
            Column("Code", lambda k: d["code"][k]),
            Column("Name", lambda k: d["name"][k]),
            Column("Ccy", lambda k: d["currency"][k]),
            number_column("Qty", lambda k: d["qty"][k], fmt=quantity),
            number_column("Price", lambda k: d["price"][k], fmt=price),
            number_column("Change", lambda k: d["change"][k], fmt=_pct, tooltip="the scenario's shock (exempt: 0)"),
            number_column("Shocked price", lambda k: d["shocked_price"][k], fmt=price),
            number_column("MV′ (HKD)", lambda k: d["mv"][k]),
            number_column("IM ratio", lambda k: d["im_ratio"][k], fmt=ratio),
            number_column("IM′", lambda k: d["im"][k]),
            number_column("MM′", lambda k: d["mm"][k]),
            Column("Exempt", lambda k: np.where(d["exempt"][k], "exempt", ""),
                   tooltip="an exempt security is not shocked"),
        ], self)
        self.view = make_table(self.model)
        self.view.setObjectName("stress_positions")
        self.view.sortByColumn(7, Qt.SortOrder.DescendingOrder)  # largest stressed MV first
        lay.addWidget(self.view, 1)
        self.account = ""

    def show_positions(self, account: str, figures: str, data: dict[str, Any]) -> None:
        self.account = account
        self.data.clear()
        self.data.update(data)
        self.setWindowTitle(f"Stressed positions — {account}")
        self.head.setText(f"{account}  ·  {figures}")
        set_tone(self.note, "This account is exempt: it is left out of the run's summary."
                 if data.get("account_exempt") else "", "info")
        self.model.reset(np.arange(len(data["code"])))
        fit_columns(self.view, 200)


class ResultsView(QWidget):
    """The open run. `show_run` fills it; `positions_shown` fires when a drill-down is on screen."""

    positions_shown = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tasks: TaskRunner | None = None
        self.run: RunView | None = None
        self.histogram: Any = None
        self.curve_chart: Any = None
        self.dialog: StressedPositionsDialog | None = None
        self._drill: Task | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(4)
        self.head = QLabel("No run open: run a scenario, or open one from Runs.")
        self.head.setProperty("role", "caption")
        self.head.setWordWrap(True)
        self.head.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.head)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        lay.addWidget(self.message)
        cards = QHBoxLayout()
        cards.setSpacing(6)
        self.cards: dict[str, FigureCard] = {}
        for key, caption in CARDS:
            card = FigureCard(caption)
            self.cards[key] = card
            cards.addWidget(card)
        lay.addLayout(cards)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.charts = QWidget()
        charts = QVBoxLayout(self.charts)
        charts.setContentsMargins(0, 0, 0, 0)
        split.addWidget(self.charts)
        self.tables = QTabWidget()
        self.tables.setDocumentMode(True)
        self.in_call = AccountsModel(self)
        self.surplus = AccountsModel(self)
        self.largest = AccountsModel(self)
        self.views: dict[str, QTableView] = {}
        for key, model, title in (("call", self.in_call, "Into call"), ("surplus", self.surplus, "Still in surplus"),
                                  ("largest", self.largest, f"{TOP_N} largest shortfalls")):
            view = make_table(model)
            view.setObjectName(f"stress_{key}")
            view.setToolTip("double-click an account for its stressed positions")
            view.doubleClicked.connect(lambda idx, m=model: self._activated(m, idx))
            self.views[key] = view
            self.tables.addTab(view, title)
        split.addWidget(self.tables)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([420, 640])
        lay.addWidget(split, 1)

    def stop(self) -> None:
        if self._drill is not None:
            self._drill.cancel()
        self._drill = None
        if self.dialog is not None:
            self.dialog.close()

    # ------------------------------------------------------------------ the run
    def _ensure_charts(self) -> None:
        if self.histogram is not None:
            return
        from widgets.stress_charts import CallCurveChart, ExcessHistogram  # pyqtgraph: first run shown

        self.histogram = ExcessHistogram()
        self.curve_chart = CallCurveChart()
        lay = self.charts.layout()
        assert lay is not None
        lay.addWidget(self.histogram)
        lay.addWidget(self.curve_chart)

    def show_run(self, run: RunView) -> None:
        self.run = run
        s = run.summary
        by = s.get("accounts_by_status") or {}
        exempt = len(run.scenario.exempt_accounts) if run.scenario else 0
        ratios = len(run.inputs.get("custom_ratios") or {})
        bits = [f"Run #{run.id}", run.name, run.status, f"{run.accounts.size:,} accounts"]
        if exempt:
            bits.append(f"{exempt} exempt account{'s' if exempt != 1 else ''} left out")
        if ratios:
            bits.append(f"custom ratios for {ratios} securit{'y' if ratios == 1 else 'ies'}")
        self.head.setText("  ·  ".join(bits))
        self.head.setProperty("role", "figure")
        self.head.style().unpolish(self.head)
        self.head.style().polish(self.head)
        if run.status != "done":
            set_tone(self.message, f"Run #{run.id} {run.status}" + (f": {run.error}" if run.error else
                                                                   " — no results were stored."), "warn")
        else:
            set_tone(self.message, "")
        for i, name in enumerate(STATUS_NAMES):
            n = by.get(name)
            self.cards[name].set_value("–" if n is None else integer(n), STATUS_ACCENT[i] if n else None)
        for key in ("total_call_amount", "total_shortfall"):
            v = s.get(key)
            self.cards[key].set_value("–" if v is None else money(v), "#f85149" if v else None)
        nc = s.get("new_calls")
        self.cards["new_calls"].set_value("–" if nc is None else integer(nc), "#f0883e" if nc else None)
        order = np.arange(run.accounts.size)
        self.in_call.show(run, order[run.status_after >= 2])
        self.surplus.show(run, order[run.excess >= 0])
        top = [run.index_of(t["account"]) for t in s.get("top_shortfalls", [])[:TOP_N]]
        self.largest.show(run, np.array([i for i in top if i >= 0], np.int64))
        self.views["call"].sortByColumn(8, Qt.SortOrder.DescendingOrder)
        self.views["largest"].sortByColumn(9, Qt.SortOrder.DescendingOrder)
        for view in self.views.values():
            fit_columns(view, 160)
        self.tables.setTabText(0, f"Into call ({self.in_call.rowCount():,})")
        self.tables.setTabText(1, f"Still in surplus ({self.surplus.rowCount():,})")
        self.tables.setTabText(2, f"{TOP_N} largest shortfalls ({self.largest.rowCount()})")
        self._ensure_charts()
        self.histogram.show_counts(run.hist_counts, run.hist_edges)
        self.curve_chart.show_curve(run.curve)

    def card_text(self, key: str) -> str:
        return self.cards[key].value.text()

    # ------------------------------------------------------------------ drill-down
    def _activated(self, model: AccountsModel, index: QModelIndex) -> None:
        account = model.account_at(index.row())
        if account is not None:
            self.show_positions(account)

    def show_positions(self, account: str) -> None:
        """Compute ``account``'s stressed positions from the run's book (worker), then show them."""
        run = self.run
        if run is None or self.tasks is None:
            return
        if self._drill is not None:
            self._drill.cancel()
        set_tone(self.message, f"Reading {account}'s stressed positions…", "info")
        self._drill = self.tasks.run(stressed_positions, run, account, name="stressed positions",
                                     on_done=lambda d: self._positions(run, account, d),
                                     on_error=self._drill_failed)

    def _positions(self, run: RunView, account: str, data: dict[str, Any]) -> None:
        self._drill = None
        set_tone(self.message, "")
        if run is not self.run:
            return
        if self.dialog is None:
            self.dialog = StressedPositionsDialog(self)
        i = run.index_of(account)
        figures = "not in the run's summary (exempt)" if i < 0 else (
            f"{STATUS_NAMES[int(run.status_after[i])]} (was {STATUS_NAMES[int(run.status_before[i])]})  ·  "
            f"E′ {money(run.equity[i])}  ·  IM′ {money(run.im[i])}  ·  call {money(run.call_amount[i])}")
        self.dialog.show_positions(account, figures, data)
        self.dialog.show()
        self.dialog.raise_()
        self.positions_shown.emit(account)

    def _drill_failed(self, e: BaseException) -> None:
        self._drill = None
        set_tone(self.message, f"Cannot show the positions: {e}")
