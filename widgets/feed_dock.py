"""The feed dock: connection state, rates, totals, gaps, resyncs and the reasons for dropped messages.

Everything is read from `FeedStats.snapshot()` (a plain copy taken under the stats lock) twice a
second, so the subscriber thread is never touched from here. Drop reasons are listed newest first
with their time, because "why did my prices stop" is the question this panel answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from widgets.figures import FieldGrid
from widgets.formatting import FEED_STATE_COLOURS, clock_time, dot_html, integer

if TYPE_CHECKING:
    from services.live import LiveMonitor

REFRESH_MS = 500
FIELDS = ("Address", "Messages/s", "Updates/s", "Messages", "Updates", "Last message", "Gaps", "Resyncs",
          "Last resync", "Dropped", "Epoch", "Last seq")


class FeedDock(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.monitor: LiveMonitor | None = None
        self.address = ""
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        left = QVBoxLayout()
        self.state_label = QLabel(dot_html(FEED_STATE_COLOURS["no feed"], "no feed"))
        self.state_label.setProperty("role", "figure")
        left.addWidget(self.state_label)
        self.fields = FieldGrid(FIELDS, columns=2)
        left.addWidget(self.fields)
        left.addStretch(1)
        lay.addLayout(left, 3)
        right = QVBoxLayout()
        cap = QLabel("Dropped messages and store-write errors (newest first)")
        cap.setProperty("role", "caption")
        right.addWidget(cap)
        self.drops = QTableWidget(0, 2)
        self.drops.setHorizontalHeaderLabels(["Time", "Reason"])
        self.drops.verticalHeader().setVisible(False)
        self.drops.verticalHeader().setDefaultSectionSize(20)
        self.drops.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.drops.horizontalHeader().setStretchLastSection(True)
        self.drops.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.drops.setAlternatingRowColors(True)
        self.drops.setShowGrid(False)
        right.addWidget(self.drops, 1)
        lay.addLayout(right, 4)
        self._last_drops: list[Any] = []
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.tick)

    def set_monitor(self, monitor: LiveMonitor, address: str | None = None) -> None:
        self.monitor = monitor
        self.address = address or monitor.feed_address or ""
        self.tick()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def refresh(self) -> None:
        self.tick()

    def tick(self) -> None:
        m = self.monitor
        if m is None:
            return
        s = m.stats.snapshot()
        state = m.feed_state()
        self.state_label.setText(dot_html(FEED_STATE_COLOURS.get(state, "#8b949e"), state))
        f = self.fields
        f.set("Address", self.address or "none (--no-feed)")
        f.set("Messages/s", f"{s['messages_per_s']:,.0f}")
        f.set("Updates/s", f"{s['updates_per_s']:,.0f}")
        f.set("Messages", integer(s["messages"]))
        f.set("Updates", integer(s["updates"]))
        f.set("Last message", clock_time(s["last_message_time"]))
        f.set("Gaps", integer(s["gaps"]), "#e3b341" if s["gaps"] else None)
        f.set("Resyncs", integer(s["resyncs"]))
        f.set("Last resync", s["last_resync"] or "")
        f.set("Dropped", integer(s["dropped"]), "#f0883e" if s["dropped"] else None)
        f.set("Epoch", s["epoch"] or "")
        f.set("Last seq", "" if s["last_seq"] is None else integer(s["last_seq"]))
        rows = [(clock_time(t), r) for t, r in reversed(s["drop_reasons"])]
        rows += [(e[:8], "store: " + e[9:]) for e in reversed(list(m.writer_errors))]
        if rows != self._last_drops:
            self._last_drops = rows
            self.drops.setRowCount(len(rows))
            for i, (t, r) in enumerate(rows):
                self.drops.setItem(i, 0, QTableWidgetItem(t))
                item = QTableWidgetItem(r)
                item.setToolTip(r)
                self.drops.setItem(i, 1, item)
