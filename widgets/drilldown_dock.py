"""Client drill-down: one account's funds, positions, what to sell to restore IM, its open margin call
and a chart of equity against IM and MM through the session.

It follows `AlertsDock.account_selected` and its own account picker. While visible it refreshes at
most twice a second from the engine (under the monitor's lock, copying what it shows); when hidden
or tabbed away it does nothing. The database query for the call's snapshots runs through the
injected ``run_task`` (the app's task runner), never on the GUI thread; an answer for an account
no longer shown is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QStringListModel, Qt, QTimer
from PySide6.QtWidgets import (
    QCompleter,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.margin import STATUS_NAMES
from services.ratios import SOURCE_NAMES
from widgets.alerts_dock import call_age_days
from widgets.array_model import ArrayTableModel, Column, number_column
from widgets.figures import FieldGrid
from widgets.formatting import STATUS_ACCENT, money, price, quantity, ratio
from widgets.locking import LOCK_WAIT_S, try_lock
from widgets.margin_call_panel import MarginCallPanel
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from services.live import LiveMonitor
    from services.store import Store

REFRESH_MS = 500
SUMMARY = ("Status", "Equity", "IM", "MM", "Force-call level", "Excess", "Loan", "Financing limit",
           "Buying power", "Call amount", "MV long", "MV short")
ACCOUNT_TYPES = ("cash", "margin", "intraday financing")
RunTask = Callable[..., Any]


def _arrays_column(store: dict[str, np.ndarray], name: str) -> Callable[[np.ndarray], np.ndarray]:
    return lambda k: store[name][k]


class DrilldownDock(QWidget):
    def __init__(self, run_task: RunTask | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_task = run_task
        self.monitor: LiveMonitor | None = None
        self.store: Store | None = None
        self.account = -1
        self.chart: Any = None
        self._book: Any = None
        self._pos: dict[str, np.ndarray] = {"sec": np.zeros(0, np.int64)}
        self._sale: dict[str, np.ndarray] = {}
        self._call_key: tuple[Any, ...] | None = None
        self._call_task: Any = None
        self._call_retry_at = 0.0
        self._fitted = self._sales_fitted = False
        self._codes = self._names = np.zeros(0, str)
        self._build_ui()
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._tick)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.picker = QLineEdit()
        self.picker.setPlaceholderText("Account code…")
        self.picker.setClearButtonEnabled(True)
        self.picker.setMaximumWidth(180)
        self._completions = QStringListModel(self)
        completer = QCompleter(self._completions, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.activated.connect(self._pick)
        self.picker.setCompleter(completer)
        self.picker.returnPressed.connect(lambda: self._pick(self.picker.text()))
        self.title = QLabel("Select an account")
        self.title.setProperty("role", "figure")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bar.addWidget(self.picker)
        bar.addWidget(self.title, 1)
        lay.addLayout(bar)
        self.summary = FieldGrid(SUMMARY, columns=3)
        lay.addWidget(self.summary)
        self.cash_label = QLabel("")
        self.cash_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.cash_label)

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.chart_holder = QWidget()
        QVBoxLayout(self.chart_holder).setContentsMargins(0, 0, 0, 0)
        self.splitter.addWidget(self.chart_holder)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.positions = ArrayTableModel(self._position_columns(), self)
        self.positions_view = make_table(self.positions)
        self.tabs.addTab(self.positions_view, "Positions")
        sale = QWidget()
        sl = QVBoxLayout(sale)
        sl.setContentsMargins(0, 4, 0, 0)
        self.sale_note = QLabel("")
        self.sale_note.setWordWrap(True)
        sale_bar = QHBoxLayout()
        sale_bar.addWidget(self.sale_note, 1)
        self.liquidate_button = QPushButton("Liquidate…")
        self.liquidate_button.setToolTip("edit and confirm these sell orders (stored as liquidation orders)")
        self.liquidate_button.clicked.connect(self.liquidate)
        sale_bar.addWidget(self.liquidate_button)
        sl.addLayout(sale_bar)
        self.sales = ArrayTableModel([
            Column("Code", _arrays_column(self._sale, "code")),
            number_column("Sell qty", _arrays_column(self._sale, "qty"), fmt=quantity),
            number_column("Price", _arrays_column(self._sale, "price"), fmt=price),
            number_column("Proceeds (HKD)", _arrays_column(self._sale, "proceeds")),
            number_column("IM released", _arrays_column(self._sale, "im_release")),
        ], self)
        self.sales_view = make_table(self.sales)
        self.sales_view.setSortingEnabled(False)
        sl.addWidget(self.sales_view, 1)
        self.tabs.addTab(sale, "Sell first to restore IM")
        self.call_panel = MarginCallPanel()
        self.tabs.addTab(self.call_panel, "Margin call")
        self.splitter.addWidget(self.tabs)
        self.splitter.setSizes([220, 400])
        lay.addWidget(self.splitter, 1)

    def _position_columns(self) -> list[Column]:
        p = self._pos
        src = np.array(SOURCE_NAMES)
        return [
            Column("Code", lambda k: self._codes[p["sec"][k]]),
            Column("Name", lambda k: self._names[p["sec"][k]]),
            number_column("Qty", lambda k: p["qty"][k], fmt=quantity),
            number_column("Price", lambda k: p["price"][k], fmt=price),
            number_column("MV (HKD)", lambda k: p["mv"][k]),
            number_column("IM ratio", lambda k: p["im_ratio"][k], fmt=ratio),
            number_column("MM ratio", lambda k: p["mm_ratio"][k], fmt=ratio),
            Column("Ratio from", lambda k: src[p["source"][k]], tooltip="where the ratio used came from"),
            number_column("IM", lambda k: p["im"][k]),
            number_column("MM", lambda k: p["mm"][k]),
        ]

    # ------------------------------------------------------------------ wiring
    def set_monitor(self, monitor: LiveMonitor, store: Store | None = None) -> None:
        self.monitor = monitor
        self.store = store
        self.call_panel.records.set_source(store, self.run_task)  # notices, remarks, history of the call
        if self.chart is None:
            from widgets.equity_chart import EquityChart  # pyqtgraph: only once the window has painted

            self.chart = EquityChart()
            holder = self.chart_holder.layout()
            assert holder is not None
            holder.addWidget(self.chart)
        self._sync_book()
        self._timer.start()
        if self.account >= 0:
            self.show_account(self.account)

    def stop(self) -> None:
        self._timer.stop()
        if self._call_task is not None:
            self._call_task.cancel()

    def refresh(self) -> None:
        """F5: refresh now and re-read the margin call from the store."""
        self._call_key = None
        self._refresh(force=True)

    def show_account(self, a: int) -> None:
        """Show account index ``a`` (from the alerts table or the picker)."""
        self.account = int(a)
        self._call_key = None
        if self.monitor is None:
            return
        with self.monitor.lock:
            if not 0 <= a < self.monitor.engine.book.n_acct:
                return
            t, values = self.monitor.history.series(a)
        if self.chart is not None:
            self.chart.load(t, values)
        self._refresh(force=True, new_account=True)

    # ------------------------------------------------------------------ refresh
    def _tick(self) -> None:
        if not self.visibleRegion().isEmpty():
            self._refresh()

    def _sync_book(self) -> None:
        m = self.monitor
        assert m is not None
        b = m.engine.book
        if b is self._book:
            return
        self._book = b
        self._codes = np.array(b.sec_codes)
        self._names = np.array(b.sec_names)
        self._completions.setStringList(list(b.acct_codes))

    def _refresh(self, force: bool = False, new_account: bool = False) -> None:
        m, a = self.monitor, self.account
        if m is None or a < 0:
            return
        from services.liquidation import restore_im_proposal

        with try_lock(m.lock, 0.2 if force else LOCK_WAIT_S) as held:
            if not held:
                return  # the feed holds the lock (a snapshot reload): refresh on the next tick
            self._sync_book()
            e, b, t = m.engine, m.engine.book, m.tracker
            if a >= b.n_acct:
                return
            pos = {k: np.array(v) for k, v in e.positions_of(a).items()}
            figures = {name: float(getattr(e, attr)[a]) for name, attr in (
                ("Equity", "equity"), ("IM", "im"), ("MM", "mm"), ("Force-call level", "fc"),
                ("Excess", "excess"), ("Loan", "loan"), ("Buying power", "buying_power"),
                ("Call amount", "call_amount"), ("MV long", "mv_long"), ("MV short", "mv_short"))}
            figures["Financing limit"] = float(b.financing_limit[a])
            status = int(e.status[a])
            cash = [(c, float(b.cash[a, j]), float(b.cash[a, j] * b.fx[j])) for j, c in enumerate(b.currencies)
                    if b.cash[a, j] != 0]
            deficit, proposals = restore_im_proposal(e, a)
            call = (bool(t.open[a]), STATUS_NAMES[int(t.status[a])], float(t.amount[a]), t.deadline[a],
                    float(t.opened_at[a]))
            age = int(call_age_days(t.open[a:a + 1], t.opened_at[a:a + 1], t.calendar, m.today())[0])
            head = (b.acct_codes[a], b.client_codes[a], b.client_names[a], ACCOUNT_TYPES[int(b.acct_type[a])],
                    b.client_email(a))
            acct_id = int(b.acct_ids[a]) if b.acct_ids is not None else None
        self.title.setText(f"{head[0]}  ·  {head[1]} {head[2]}  ·  {head[3]}")
        self.title.setToolTip(f"Notices go to {head[4]}" if head[4] else f"No e-mail on file for {head[1]}")
        self.summary.set("Status", STATUS_NAMES[status].upper(), STATUS_ACCENT[status])
        for name, v in figures.items():
            self.summary.set(name, money(v), "#f85149" if name == "Excess" and v < 0 else None)
        self.cash_label.setText("Cash  " + ("   ".join(
            f"<b>{c}</b> {money(v)}" + (f" <span style='color:#8b949e'>({money(hkd)} HKD)</span>"
                                        if c != "HKD" else "") for c, v, hkd in cash) or "none"))
        self._show_positions(pos, new_account)
        self._show_sales(deficit, proposals)
        self.call_panel.show_live(call[0], call[1], call[2], call[3], age, call[4])
        if self.chart is not None and not new_account:
            self.chart.append(time.time(), figures["Equity"], figures["IM"], figures["MM"])
        key = (a, call[0], call[4])
        retry = self._call_retry_at and time.monotonic() >= self._call_retry_at
        if key != self._call_key or force or retry:
            self._call_key = key
            self._call_retry_at = 0.0
            self._fetch_call(a, acct_id, call[0])

    def _show_positions(self, pos: dict[str, np.ndarray], new_account: bool) -> None:
        same = (not new_account and pos["sec"].shape == self._pos["sec"].shape
                and np.array_equal(pos["sec"], self._pos["sec"]))
        self._pos.clear()
        self._pos.update(pos)
        if same:
            self.positions.update_rows(None)
        else:
            self.positions.reset(np.arange(pos["sec"].shape[0]))
            if not self._fitted and pos["sec"].shape[0]:
                self._fitted = True
                fit_columns(self.positions_view, 150)

    def _show_sales(self, deficit: float, proposals: list[Any]) -> None:
        if deficit <= 0:
            self.sale_note.setText("The account meets its initial margin: nothing needs to be sold.")
        else:
            released = sum(p.im_release for p in proposals)
            tail = "" if released >= deficit else \
                f" Selling every marginable long still leaves {money(deficit - released)} to cover with cash."
            self.sale_note.setText(f"IM deficit {money(deficit)} HKD. Sell in this order (largest haircut "
                                   f"first, whole lots):{tail}")
        arrays = {
            "code": np.array([p.code for p in proposals], dtype=str),
            "qty": np.array([p.qty for p in proposals], float),
            "price": np.array([p.price for p in proposals], float),
            "proceeds": np.array([p.proceeds for p in proposals], float),
            "im_release": np.array([p.im_release for p in proposals], float),
        }
        if self._sale and all(np.array_equal(arrays[k], self._sale[k]) for k in arrays):
            return
        self._sale.clear()
        self._sale.update(arrays)
        self.sales.reset(np.arange(len(proposals)))
        if proposals and not self._sales_fitted:
            self._sales_fitted = True
            fit_columns(self.sales_view)

    def _fetch_call(self, a: int, acct_id: int | None, is_open: bool) -> None:
        if self._call_task is not None:
            self._call_task.cancel()
            self._call_task = None
        if not is_open or self.store is None or acct_id is None or self.run_task is None:
            self.call_panel.show_details(None)
            if is_open and self.store is None:
                self.call_panel.set_note("snapshots are kept in the store (not connected)")
            return
        from services.margin_calls import open_call_details

        self.call_panel.set_note("reading snapshots…")
        self._call_task = self.run_task(
            open_call_details, self.store, acct_id,
            on_done=lambda call: self._call_loaded(a, call),
            on_error=lambda e: self.call_panel.set_note(f"could not read the margin call: {e}"))

    def _call_loaded(self, a: int, call: Any) -> None:
        self._call_task = None
        if a != self.account:
            return
        self.call_panel.show_details(call)
        if call is None:
            self.call_panel.set_note("the call is being recorded; snapshots will appear shortly")
            self._call_retry_at = time.monotonic() + 5.0  # the writer thread stores it within seconds

    def liquidate(self) -> Any:
        """The Liquidate dialog for the account shown (through the Liquidation orders dock)."""
        from widgets.liquidation_dialog import open_liquidation

        return open_liquidation(self, self.account) if self.account >= 0 else None

    def _pick(self, code: str) -> None:
        if self.monitor is None:
            return
        a = self.monitor.engine.book.acct_index.get(code.strip().upper(), -1)
        if a < 0:
            a = self.monitor.engine.book.acct_index.get(code.strip(), -1)
        if a >= 0:
            self.show_account(a)
