"""The margin table: every security with its price, last update (stale marked), level, haircut,
long/short ratios, lot size and suspension.

Prices and update times come from the live monitor and are refreshed in place once a second: only
securities whose timestamp or stale flag moved get a `dataChanged`. Before the feed has ticked a
security, its last update is the time stored with its price (`price_timestamps`), so a stale store
shows as stale instead of "updated at start-up".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from widgets.array_model import ArrayTableModel, Column, number_column
from widgets.formatting import CENTER, STALE_TEXT, clock_time, integer, price, ratio
from widgets.locking import try_lock
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from services.live import LiveMonitor

REFRESH_MS = 1000
SUSPENDED_TEXT = QColor(125, 133, 144)


def _last_update(v: float) -> str:
    return f"{clock_time(abs(v))}  stale" if v < 0 else clock_time(v)


class MarginTableDock(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.monitor: LiveMonitor | None = None
        self._book: Any = None
        self._db: tuple[np.ndarray, np.ndarray] | None = None
        self._base_ts = self._start_ts = np.zeros(0)
        self._shown_ts = np.zeros(0)
        self._stale = np.zeros(0, bool)
        self._codes = self._names = self._markets = self._currencies = np.zeros(0, str)
        self._search_text: list[str] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search security code or name")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._search_changed)
        self.summary = QLabel("")
        self.summary.setProperty("role", "caption")
        bar.addWidget(self.search, 1)
        bar.addWidget(self.summary)
        lay.addLayout(bar)
        self.model = ArrayTableModel(self._columns(), self, row_foreground=self._row_foreground)
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        lay.addWidget(self.view, 1)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.tick)

    def _columns(self) -> list[Column]:
        def book() -> Any:
            assert self.monitor is not None
            return self.monitor.engine.book

        return [
            Column("Code", lambda k: self._codes[k]),
            Column("Name", lambda k: self._names[k]),
            Column("Market", lambda k: self._markets[k], align=CENTER),
            Column("Ccy", lambda k: self._currencies[k], align=CENTER, tooltip="trading currency"),
            number_column("Price", lambda k: book().price[k], fmt=price),
            Column("Last update", lambda k: np.where(self._stale[k], -self._shown_ts[k], self._shown_ts[k]),
                   fmt=_last_update, align=CENTER, sort_values=lambda k: self._shown_ts[k],
                   foreground=lambda k: STALE_TEXT if self._stale[k] else None),
            number_column("Level", lambda k: book().level[k], fmt=integer, tooltip="index level (1, 2 or 3)"),
            number_column("Haircut", lambda k: book().haircut[k], fmt=ratio, tooltip="FRR haircut"),
            number_column("Long IM", lambda k: book().long_im[k], fmt=ratio),
            number_column("Long MM", lambda k: book().long_mm[k], fmt=ratio),
            number_column("Short IM", lambda k: book().short_im[k], fmt=ratio),
            number_column("Short MM", lambda k: book().short_mm[k], fmt=ratio),
            number_column("Lot size", lambda k: book().lot_size[k], fmt=integer),
            Column("Suspended", lambda k: book().suspended[k], fmt=lambda v: "suspended" if v else "",
                   align=CENTER),
        ]

    # ------------------------------------------------------------------ wiring
    def set_monitor(self, monitor: LiveMonitor, db_timestamps: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> None:
        """Follow ``monitor``; ``db_timestamps`` = `price_timestamps(store)` (ids, unix times)."""
        self.monitor = monitor
        self.model.lock = monitor.lock
        self._db = db_timestamps
        self._book = None
        self.tick()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def refresh(self) -> None:
        self._book = None
        self.tick()

    def tick(self) -> None:
        m = self.monitor
        if m is None:
            return
        with try_lock(m.lock) as held:
            if not held:
                return  # busy with a batch or a snapshot: next second
            b = m.engine.book
            fresh = b is not self._book
            if fresh:
                self._load_book(b, m.price_ts)
            stale = m.stale_securities()
            ts = np.where(m.price_ts != self._base_ts, m.price_ts, self._start_ts)
            if fresh:  # the reset sorts by engine values: under the lock already held
                self._stale, self._shown_ts = stale, ts
                self.model.reset(np.arange(b.n_sec))
                fit_columns(self.view, 200)
        if not fresh:
            changed = np.flatnonzero((ts != self._shown_ts) | (stale != self._stale))
            self._stale, self._shown_ts = stale, ts
            self.model.update_rows(changed)
        n_stale = int(stale.sum())
        self.summary.setText(f"{b.n_sec:,} securities" + (f" · {n_stale:,} stale" if n_stale else ""))

    def _load_book(self, b: Any, price_ts: np.ndarray) -> None:
        self._book = b
        self._codes = np.array(b.sec_codes)
        self._names = np.array(b.sec_names)
        self._markets = np.array(b.markets)[b.sec_market] if b.n_sec else np.zeros(0, str)
        self._currencies = np.array(b.currencies)[b.sec_currency] if b.n_sec else np.zeros(0, str)
        self._search_text = [f"{c} {n}".lower() for c, n in zip(b.sec_codes, b.sec_names, strict=True)]
        self._base_ts = price_ts.copy()  # the monitor's "loaded at" stamp: not a feed update yet
        self._start_ts = price_ts.copy()
        if self._db is not None and b.sec_ids is not None and self._db[0].size:
            ids, ts = self._db
            at = np.clip(np.searchsorted(ids, b.sec_ids), 0, ids.shape[0] - 1)
            self._start_ts = np.where(ids[at] == b.sec_ids, ts[at], price_ts)
        self._stale = np.zeros(b.n_sec, bool)
        self._shown_ts = self._start_ts.copy()

    def _search_changed(self, text: str) -> None:
        q = text.strip().lower()
        if not q:
            self.model.set_filter(None)
            return
        mask = np.fromiter((q in s for s in self._search_text), bool, len(self._search_text))
        self.model.set_filter(lambda k: mask[k])

    def _row_foreground(self, key: int) -> QColor | None:
        b = self._book
        return SUSPENDED_TEXT if b is not None and b.suspended[key] else None
