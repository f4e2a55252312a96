"""The open margin call of one account: live facts from the call tracker, snapshots from the store.

The tracker (in memory, updated by every recalculation) answers "is there a call, how much, until
when" immediately; the snapshots (positions, prices, E/IM/MM at trigger, force, end of day) live in
the store and arrive from a background query, so the panel shows the live part at once and fills
the snapshot list when the query returns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from widgets.array_model import ArrayTableModel, Column, number_column
from widgets.call_history import CallRecordsTabs
from widgets.figures import FieldGrid
from widgets.formatting import STATUS_ACCENT, clock_time, money
from widgets.tables import make_table

FIELDS = ("Call", "Triggered", "Trigger status", "Trigger amount", "Current status", "Current amount",
          "Deadline", "Age (trading days)")


def _when(v: Any) -> str:
    """A stored time in local time; naive values from the store are UTC (SQLite drops the zone)."""
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            return v
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return v.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return "" if v is None else str(v)


class MarginCallPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.fields = FieldGrid(FIELDS, columns=2)
        lay.addWidget(self.fields)
        self.note = QLabel("")
        self.note.setProperty("role", "caption")
        lay.addWidget(self.note)
        self._snaps: list[dict[str, Any]] = []
        cols = [
            Column("Snapshot", lambda k: np.array([self._snaps[i]["kind"] for i in k])),
            Column("Time", lambda k: np.array([_when(self._snaps[i]["ts"]) for i in k])),
            Column("Status", lambda k: np.array([self._snaps[i].get("status", "") for i in k])),
            number_column("Equity", lambda k: np.array([self._snaps[i].get("equity", np.nan) for i in k])),
            number_column("IM", lambda k: np.array([self._snaps[i].get("im", np.nan) for i in k])),
            number_column("MM", lambda k: np.array([self._snaps[i].get("mm", np.nan) for i in k])),
            number_column("Call amount", lambda k: np.array([self._snaps[i].get("call_amount", np.nan)
                                                             for i in k])),
            number_column("Positions", lambda k: np.array([len(self._snaps[i].get("positions", [])) for i in k]),
                          fmt=lambda v: f"{int(v):,}"),
        ]
        self.model = ArrayTableModel(cols, self)
        self.view = make_table(self.model)
        self.records = CallRecordsTabs(self.view)  # snapshots (Export…), notices, remarks, history (issue 8)
        lay.addWidget(self.records, 1)

    def show_live(self, is_open: bool, status: str, amount: float, deadline: Any, age: int,
                  opened_at: float) -> None:
        """The tracker's view of the call (cheap; called on every refresh)."""
        f = self.fields
        if not is_open:
            f.clear()
            f.set("Call", "no open call", STATUS_ACCENT[0])
            return
        f.set("Call", "open", STATUS_ACCENT[2])
        f.set("Triggered", clock_time(opened_at) if opened_at else "")
        f.set("Current status", status, STATUS_ACCENT[3] if status == "force" else STATUS_ACCENT[2])
        f.set("Current amount", money(amount))
        d = np.datetime64(deadline, "D")
        f.set("Deadline", "" if np.isnat(d) else str(d))
        f.set("Age (trading days)", "" if age < 0 else str(age))

    def show_details(self, call: Any) -> None:
        """`OpenCall` from the store (or None): trigger facts and snapshots."""
        if call is None:
            self._snaps = []
            self.model.reset(np.zeros(0, np.int64))
            self.fields.set("Trigger status", "")
            self.fields.set("Trigger amount", "")
            self.records.load(None)
            return
        self.fields.set("Triggered", _when(call.opened_at))
        self.fields.set("Trigger status", call.trigger_status)
        self.fields.set("Trigger amount", money(call.trigger_amount))
        self._snaps = list(call.snapshots)
        self.model.reset(np.arange(len(self._snaps)))
        self.note.setText(f"{len(self._snaps)} snapshot(s) stored for call #{call.call_id}")
        self.records.load(call.call_id)

    def set_note(self, text: str) -> None:
        self.note.setText(text)
