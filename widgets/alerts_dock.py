"""The margin-alerts dock: every account in warning, call or force, updated in place as prices move.

A 100 ms timer takes the monitor's accumulated changes (`LiveMonitor.take_changes`) and tells the
model only about the changed accounts: one `dataChanged` per contiguous block, rows inserted or
removed as accounts enter or leave the alert set, a reset only when the book itself was reloaded
with a different size. Slower facts (stale prices, call age in trading days) are recomputed once a
second. Every read of the engine's arrays happens under the monitor's lock.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from services.calendar import HK_TZ
from services.margin import CALL, STATUS_NAMES, WARNING
from widgets.array_model import ArrayTableModel, Column, number_column
from widgets.call_actions import CallActions
from widgets.figures import FigureCard
from widgets.formatting import (
    CENTER,
    FEED_STATE_COLOURS,
    STALE_TEXT,
    STATUS_ACCENT,
    STATUS_BACKGROUND,
    STATUS_BADGE,
    STATUS_TEXT,
    clock_time,
    dot_html,
    integer,
    money,
)
from widgets.locking import try_lock
from widgets.position_alerts import PositionAlertsModel
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from services.live import LiveMonitor

TICK_MS = 100
SLOW_EVERY_S = 1.0
STATUS_FILTERS = ("All alerts", "Warning", "Call", "Force", "Call + force", "Open calls", "Long-standing",
                  "Intraday financing")  # the last: intraday-financing accounts only (issue 8)


class AlertsDock(QWidget):
    account_selected = Signal(int)
    changes_applied = Signal(bool, object)  # (reset, changed account indices) after each tick

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.monitor: LiveMonitor | None = None
        self._member = np.zeros(0, bool)
        self._seen_status = np.zeros(0, np.int8)
        self._stale = np.zeros(0, bool)
        self._age = np.zeros(0, np.int64)
        self._open_seen = np.zeros(0, bool)  # open calls at the last slow tick (a close moves no status)
        self._search_mask: np.ndarray | None = None
        self._book: Any = None
        self._codes = self._clients = self._names = np.zeros(0, str)
        self._search_text: list[str] = []
        self._last_slow = 0.0
        self._build_ui()
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self.tick)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        top = QHBoxLayout()
        self.cards = {name: FigureCard(name, tip) for name, tip in (
            ("Open calls", "accounts with an open margin call"),
            ("Total call amount", "sum of the current call amounts of open calls (HKD)"),
            ("Long-standing unsettled", "call amount of open calls past their deadline (HKD)"),
            ("Warning", "accounts with MM ≤ equity < IM"),
            ("Call", "accounts with FC ≤ equity < MM"),
            ("Force", "accounts with equity < FC"),
        )}
        for card in self.cards.values():
            top.addWidget(card)
        top.addStretch(1)
        live = QVBoxLayout()
        self.live_label = QLabel(dot_html(FEED_STATE_COLOURS["connecting"], "opening store…"))
        self.recalc_label = QLabel("Last recalc –")
        self.recalc_label.setProperty("role", "caption")
        live.addWidget(self.live_label, alignment=Qt.AlignmentFlag.AlignRight)
        live.addWidget(self.recalc_label, alignment=Qt.AlignmentFlag.AlignRight)
        top.addLayout(live)
        lay.addLayout(top)

        bar = QHBoxLayout()
        self.status_filter = QComboBox()
        self.status_filter.addItems(STATUS_FILTERS)
        self.status_filter.currentIndexChanged.connect(self._filter_changed)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search account, client code or name  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self, singleShot=True, interval=150)
        self._search_timer.timeout.connect(self._search_changed)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.count_label = QLabel("")
        self.count_label.setProperty("role", "caption")
        bar.addWidget(QLabel("Status"))
        bar.addWidget(self.status_filter)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.count_label)
        self.call_actions = CallActions(self)  # Send notice…, Adjust deadline…, Remark…, Mark as exception…
        for button in self.call_actions.buttons():
            bar.addWidget(button)
        lay.addLayout(bar)

        self.model = ArrayTableModel(self._columns(), self, row_background=self._row_background,
                                     row_foreground=self._row_foreground)
        self.view = make_table(self.model)
        self.view.sortByColumn(self.column("Status"), Qt.SortOrder.DescendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        self.liquidate_action = QAction("Liquidate…", self.view)  # issue 8: the proposal that restores IM
        self.liquidate_action.triggered.connect(self.liquidate_current)
        self.view.addAction(self.liquidate_action)
        liquidate_button = QToolButton()
        liquidate_button.setDefaultAction(self.liquidate_action)
        bar.addWidget(liquidate_button)
        self.call_actions.install(self.view)
        self.position_model = PositionAlertsModel(parent=self)
        self.position_view = make_table(self.position_model)
        self.position_view.setSortingEnabled(False)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.view, "Margin alerts")
        self.tabs.addTab(self.position_view, "Position alerts")
        lay.addWidget(self.tabs, 1)

    def _columns(self) -> list[Column]:
        def eng() -> Any:
            assert self.monitor is not None
            return self.monitor.engine

        def tracker() -> Any:
            assert self.monitor is not None
            return self.monitor.tracker

        status_names = np.array(STATUS_NAMES)
        return [
            Column("Account", lambda k: self._codes[k]),
            Column("Client", lambda k: self._clients[k]),
            Column("Client name", lambda k: self._names[k]),
            Column("Status", lambda k: status_names[eng().status[k]],
                   sort_values=lambda k: eng().status[k] * 1e12 + eng().call_amount[k],
                   tooltip="sorted by severity, then call amount", align=CENTER,
                   background=lambda k: STATUS_BADGE[int(eng().status[k])]),
            number_column("Equity", lambda k: eng().equity[k]),
            number_column("IM", lambda k: eng().im[k], tooltip="initial margin"),
            number_column("MM", lambda k: eng().mm[k], tooltip="maintenance margin"),
            number_column("Loan", lambda k: eng().loan[k]),
            number_column("Call amount", lambda k: eng().call_amount[k]),
            number_column("Excess", lambda k: eng().excess[k], tooltip="equity − IM"),
            Column("Call deadline", lambda k: tracker().deadline[k], fmt=_deadline,
                   align=Qt.AlignmentFlag.AlignCenter),
            number_column("Age", lambda k: self._age[k], fmt=lambda v: "" if v < 0 else str(int(v)),
                          tooltip="trading days since the call was triggered"),
            Column("Stale", lambda k: self._stale[k], fmt=lambda v: "STALE" if v else "",
                   foreground=lambda _k: STALE_TEXT, tooltip="holds a price not updated for 5 s"),
        ]

    def column(self, header: str) -> int:
        return [c.header for c in self.model.columns].index(header)

    # ------------------------------------------------------------------ wiring
    def set_monitor(self, monitor: LiveMonitor) -> None:
        """Start following ``monitor`` (the first tick fills the table)."""
        self.monitor = monitor
        self.model.lock = monitor.lock
        self.call_actions.set_monitor(monitor)
        self._book = None
        self._last_slow = 0.0
        self.tick()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def focus_search(self) -> None:
        self.tabs.setCurrentWidget(self.view)
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def refresh(self) -> None:
        """F5: re-evaluate everything now (re-sort included)."""
        if self.monitor is not None:
            self._last_slow = 0.0
            self._rebuild()
            self.tick()

    def set_message(self, text: str, colour: str = "#8b949e") -> None:
        self.live_label.setText(dot_html(colour, text))

    # ------------------------------------------------------------------ live updates
    def tick(self) -> None:
        """Apply the monitor's changes to the model.

        The monitor's lock is tried once per tick and held while the model is told (sorting and
        filtering read engine arrays); the feed thread waits those few milliseconds rather than the
        GUI waiting for the feed. If the feed holds the lock (a snapshot reload), the tick is skipped.
        """
        m = self.monitor
        if m is None:
            return
        now = time.monotonic()
        slow = now - self._last_slow >= SLOW_EVERY_S
        today = m.today()
        with try_lock(m.lock) as held:
            if not held:
                return
            reset, changed = m.take_changes()
            if reset or m.engine.book is not self._book:
                self._rebuild()
                changed = np.zeros(0, np.int64)
            else:
                if slow:
                    self._last_slow = now
                    self.call_actions.set_account(self.call_actions.account)  # a call opened or ended
                    stale = m.stale_accounts()
                    changed = np.union1d(changed, self._set_slow(stale, m.tracker.open, m.tracker.opened_at,
                                                                 today)).astype(np.int64)
                self._apply_changes(changed)
                if slow and not np.array_equal(m.tracker.open, self._open_seen):
                    self._open_seen = m.tracker.open.copy()
                    if self.status_filter.currentIndex() > 0:
                        self.model.refilter()  # a call opened or ended: Open calls / Long-standing follow
            header = self._header_figures(today)
        self._show_header(*header)
        if self.model.rowCount() and not self.view.selectionModel().hasSelection():
            self.view.selectRow(0)
        self.position_model.poll(list(m.position_alerts))
        self.changes_applied.emit(reset, changed)

    def _apply_changes(self, changed: np.ndarray) -> None:
        """Accounts entering/leaving the alert set are inserted/removed; the rest update in place."""
        m = self.monitor
        assert m is not None
        if changed.size:
            status = m.engine.status[changed]
            moving = changed[(status >= WARNING) != self._member[changed]]
            status_moved = bool((status != self._seen_status[changed]).any())
            self._seen_status[changed] = status
            if moving.size:
                self._member[moving] = ~self._member[moving]
                self.model.set_keys(np.flatnonzero(self._member))
            elif status_moved and self.status_filter.currentIndex() > 0:
                self.model.refilter()
        self.model.update_rows(changed)

    def _rebuild(self) -> None:
        """A new book (first tick or a snapshot reload): codes, membership and slow columns afresh."""
        m = self.monitor
        assert m is not None
        with m.lock:
            b = m.engine.book
            same_size = self._book is not None and len(self._codes) == b.n_acct
            self._book = b
            self._codes = np.array(b.acct_codes)
            self._clients = np.array(b.client_codes)
            self._names = np.array(b.client_names)
            self._search_text = [f"{a} {c} {n}".lower() for a, c, n in
                                 zip(b.acct_codes, b.client_codes, b.client_names, strict=True)]
            self._member = m.engine.status >= WARNING
            self._seen_status = m.engine.status.copy()
            stale = m.stale_accounts()
            call_open, opened_at = m.tracker.open, m.tracker.opened_at
            if self.search.text().strip():
                self._search_mask = self._match(self.search.text())
        self._stale = np.zeros(0, bool)
        self._age = np.zeros(0, np.int64)
        self._set_slow(stale, call_open, opened_at, m.today())
        keys = np.flatnonzero(self._member)
        if same_size:
            self.model.set_keys(keys)
            self.model.update_rows(None)
        else:
            self.model.reset(keys)
            fit_columns(self.view, 160)

    def _set_slow(self, stale: np.ndarray, call_open: np.ndarray, opened_at: np.ndarray, today: Any
                  ) -> np.ndarray:
        """Stale flags and call ages (once a second); returns the accounts whose values moved."""
        assert self.monitor is not None
        age = call_age_days(call_open, opened_at, self.monitor.tracker.calendar, today)
        if stale.shape != self._stale.shape or age.shape != self._age.shape:
            self._stale, self._age = stale, age
            return np.zeros(0, np.int64)
        moved = np.flatnonzero((stale != self._stale) | (age != self._age))
        self._stale, self._age = stale, age
        return moved

    def _header_figures(self, today: Any) -> tuple[int, float, float, np.ndarray, float, str]:
        """The totals, read under the monitor's lock by `tick`."""
        m = self.monitor
        assert m is not None
        t = m.tracker
        open_ = t.open
        return (int(open_.sum()), float(t.amount[open_].sum()), float(t.amount[t.long_standing(today)].sum()),
                np.bincount(m.engine.status, minlength=4), m.last_recalc, m.feed_state())

    def _show_header(self, n_open: int, total: float, long_amount: float, counts: np.ndarray, last: float,
                     state: str) -> None:
        self.cards["Open calls"].set_value(integer(n_open))
        self.cards["Total call amount"].set_value(money(total), STATUS_ACCENT[2] if total else None)
        self.cards["Long-standing unsettled"].set_value(money(long_amount), STATUS_ACCENT[3] if long_amount else None)
        for s, name in ((1, "Warning"), (2, "Call"), (3, "Force")):
            self.cards[name].set_value(integer(counts[s]), STATUS_ACCENT[s])
        stale_n = int(self._stale.sum())
        extra = f" · {stale_n} accounts on stale prices" if stale_n and state != "no feed" else ""
        self.live_label.setText(dot_html(FEED_STATE_COLOURS.get(state, "#8b949e"), state + extra))
        self.recalc_label.setText(f"Last recalc {clock_time(last)}")
        shown, total_rows = self.model.rowCount(), self.model.source_keys.shape[0]
        self.count_label.setText(f"{shown:,} of {total_rows:,} accounts" if shown != total_rows
                                 else f"{shown:,} accounts")
        n_pos = self.position_model.rowCount()
        self.tabs.setTabText(1, f"Position alerts ({n_pos})" if n_pos else "Position alerts")

    # ------------------------------------------------------------------ filter, search, selection
    def _filter_changed(self) -> None:
        self.model.set_filter(self._filter_fn() if self._filtering() else None)

    def _search_changed(self) -> None:
        text = self.search.text().strip()
        self._search_mask = self._match(text) if text and self._book is not None else None
        self._filter_changed()

    def _match(self, text: str) -> np.ndarray:
        q = text.strip().lower()
        return np.fromiter((q in s for s in self._search_text), bool, len(self._search_text))

    def _filtering(self) -> bool:
        return self.status_filter.currentIndex() > 0 or self._search_mask is not None

    def _filter_fn(self) -> Any:
        choice = self.status_filter.currentText()

        def fn(keys: np.ndarray) -> np.ndarray:
            m = self.monitor
            assert m is not None
            st = m.engine.status[keys]
            t = m.tracker
            mask = {
                "All alerts": np.ones(keys.shape[0], bool),
                "Warning": st == 1, "Call": st == 2, "Force": st == 3, "Call + force": st >= CALL,
                "Open calls": t.open[keys],
                "Long-standing": t.long_standing(m.today())[keys],
                "Intraday financing": m.engine.book.acct_type[keys] == 2,
            }[choice]
            if self._search_mask is not None and self._search_mask.shape[0] > int(keys.max(initial=0)):
                mask = mask & self._search_mask[keys]
            return np.asarray(mask, bool)

        return fn

    def liquidate_current(self) -> None:
        """Open the Liquidate dialog for the selected account (through the Liquidation orders dock)."""
        from widgets.liquidation_dialog import open_liquidation

        if self.view.currentIndex().isValid():
            open_liquidation(self, self.model.key_at(self.view.currentIndex().row()))

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.call_actions.set_account(self.model.key_at(current.row()))
            self.account_selected.emit(self.model.key_at(current.row()))

    def _row_background(self, key: int) -> QColor | None:
        assert self.monitor is not None
        return STATUS_BACKGROUND[int(self.monitor.engine.status[key])]

    def _row_foreground(self, key: int) -> QColor | None:
        assert self.monitor is not None
        return STATUS_TEXT if self.monitor.engine.status[key] else None


def call_age_days(call_open: np.ndarray, opened_at: np.ndarray, calendar: Any, today: Any) -> np.ndarray:
    """Trading days since each open call was triggered (−1 where none), vectorised.

    `CallTracker.age_days` converts each trigger time with a Python loop (~9 ms for 5,000 open calls,
    under the feed's lock); Hong Kong has no daylight saving, so one fixed offset gives the local date.
    """
    out = np.full(call_open.shape[0], -1, np.int64)
    idx = np.flatnonzero(call_open)
    if idx.size:
        offset = datetime.now(HK_TZ).utcoffset() or timedelta(0)
        days = ((opened_at[idx] + offset.total_seconds()) // 86400).astype("datetime64[D]")
        out[idx] = calendar.business_days_between(days, np.datetime64(today, "D"))
    return out


def _deadline(v: Any) -> str:
    d = np.datetime64(v, "D")
    return "" if np.isnat(d) else str(d)
