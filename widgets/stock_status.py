"""The stock Status column of the margin ratio tables (suspended / halted / trading) and its "Refresh stock
status" button (issue 4, "Margin requirements").

A full reload of the editor re-reads every record; the button instead re-reads only the securities'
`suspended` / `halted` flags in a worker and repaints just the rows whose status changed (one
`dataChanged` per contiguous block), so the selection, the sort and the form are left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QPushButton

from services.lazy import lazy_module
from widgets.records import ERROR_COLOUR, Field, RecordTableModel, error_text

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.store import Store
    pass
    from services import ratio_settings as _ratio_settings
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    _ratio_settings = lazy_module("services.ratio_settings")

STATUS_COLOURS = {"suspended": QColor(248, 81, 73), "halted": QColor(227, 179, 65)}


def status_field() -> Field:
    return Field("Status", "stock_status", foreground=lambda v: STATUS_COLOURS.get(str(v)),
                 tooltip="the security's trading status: suspended, halted (intraday) or trading")


class StatusRecordModel(RecordTableModel):
    """A record model whose one field can be rewritten in place for some rows."""

    def set_field_by(self, match: str, name: str, values: dict[str, str]) -> np.ndarray:
        """Give every record whose ``match`` field is a key of ``values`` that value in field ``name``;
        only their rows are repainted. Returns the keys of the records changed."""
        if not values or not self._records:
            return np.zeros(0, np.int64)
        src = self._arrays[match][:-1]
        rows = np.flatnonzero(np.isin(src, np.array(list(values), dtype=src.dtype)))
        if rows.size == 0:
            return np.zeros(0, np.int64)
        new = [values[str(src[r])] for r in rows.tolist()]
        arr = self._arrays[name]
        width = max(len(v) for v in new)
        if arr.dtype.kind == "U" and arr.dtype.itemsize // 4 < width:
            arr = self._arrays[name] = arr.astype(f"<U{width}")
        arr[rows] = new
        keys = np.empty(rows.shape[0], np.int64)
        for i, (r, v) in enumerate(zip(rows.tolist(), new, strict=True)):
            self._records[r][name] = v
            keys[i] = int(self._records[r][self.key])
        self.update_rows(keys)
        return keys


class StockStatusRefresher(QObject):
    """Owns the "Refresh stock status" button: re-reads the flags in a worker, diffs them against
    what the table shows, and rewrites only the changed rows; says what changed in ``label``."""

    refreshed = Signal(int)  # rows changed

    def __init__(self, model: StatusRecordModel, label: QLabel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model, self.label = model, label
        self.status: dict[str, str] = {}
        self.store: Store | None = None
        self.tasks: TaskRunner | None = None
        self._task: Task | None = None
        self.button = QPushButton("Refresh stock status")
        self.button.setToolTip("Re-read suspended / halted flags from the store; only changed rows update")
        self.button.clicked.connect(self.refresh)

    def set_context(self, store: Store, tasks: TaskRunner) -> None:
        self.store, self.tasks = store, tasks

    def set_baseline(self, status: dict[str, str]) -> None:
        """What a full reload showed (the next refresh diffs against it)."""
        self.status = dict(status)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None
        self.button.setEnabled(True)

    def refresh(self) -> None:
        if self.store is None or self.tasks is None or self._task is not None:
            return
        self.button.setEnabled(False)
        self._task = self.tasks.run(_ratio_settings.stock_status, self.store, on_done=self._loaded, on_error=self._failed,
                                    name="stock status")

    def _loaded(self, status: dict[str, str]) -> None:
        self._task = None
        self.button.setEnabled(True)
        changed = {c: s for c, s in status.items() if self.status.get(c) != s}
        self.status = dict(status)
        keys = self.model.set_field_by("code", "stock_status", changed)
        self.label.setStyleSheet("")
        if changed:
            listed = ", ".join(f"{c} {s}" for c, s in sorted(changed.items())[:5])
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            self.label.setText(f"Stock status: {len(changed)} changed ({listed}{more}) · {keys.size} rows updated")
        else:
            self.label.setText(f"Stock status: no change ({len(status)} securities read)")
        self.refreshed.emit(int(keys.size))

    def _failed(self, e: BaseException) -> None:
        self._task = None
        self.button.setEnabled(True)
        self.label.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.label.setText(f"stock status refresh failed: {error_text(e)}")
