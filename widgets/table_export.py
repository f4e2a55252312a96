"""Export what a table view shows to Excel: gathered on the GUI thread, formatted and written off it.

`gather_view` copies, for the visible columns in their visual order, each column's values for the
visible keys in display order — one vectorised `ArrayTableModel.export_column` call per column, so
100,000 rows cost milliseconds on the GUI thread. `write_view` (plain Python, run in a worker) turns
them into the cells the view shows: number columns as numbers (blank where the view shows nothing),
every other column as its displayed text, formatted once per distinct value; then
`services.excel.write_table` writes them through the one formula-injection sanitiser.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QTableView, QWidget

from app.tasks import TaskCancelled
from services import excel
from widgets.array_model import ArrayTableModel

log = logging.getLogger(__name__)

_H = Qt.Orientation.Horizontal
_DISPLAY = Qt.ItemDataRole.DisplayRole


@dataclass
class ExportColumn:
    """One column as gathered on the GUI thread: raw values (numpy copy) or display texts."""

    header: str
    values: np.ndarray | list[Any]
    fmt: Callable[[Any], str] | None = None  # None: ``values`` are already the displayed texts
    is_number: bool = False


@dataclass
class ViewData:
    sheet: str
    columns: list[ExportColumn]
    rows: int


def visible_columns(view: QTableView) -> list[int]:
    """Logical indexes of the shown columns, in the order the user sees them."""
    header = view.horizontalHeader()
    logical = (header.logicalIndex(v) for v in range(header.count()))
    return [c for c in logical if c >= 0 and not header.isSectionHidden(c)]


def gather_view(view: QTableView) -> ViewData:
    """Everything the export needs, copied on the GUI thread (no formatting of the 100,000 rows)."""
    model = view.model()
    cols = visible_columns(view)
    headers = [str(model.headerData(c, _H, _DISPLAY) or "") for c in cols]
    out: list[ExportColumn] = []
    if isinstance(model, ArrayTableModel):
        keys = model.keys.copy()
        for c, h in zip(cols, headers, strict=True):
            values, fmt, is_number = model.export_column(c, keys)
            out.append(ExportColumn(h, values, fmt, is_number))
        n = int(keys.shape[0])
    else:  # any other model (none of the docks' today): the display texts, cell by cell
        n = model.rowCount()
        for c, h in zip(cols, headers, strict=True):
            texts = [model.data(model.index(r, c), _DISPLAY) for r in range(n)]
            out.append(ExportColumn(h, ["" if t is None else str(t) for t in texts]))
    return ViewData(sheet_name(view), out, n)


def cells(col: ExportColumn) -> list[Any]:
    """The cells of one column as the view shows them (pure Python: runs in the export worker).

    Text columns: ``fmt`` of each value (once per distinct value). Number columns: the number,
    None where the view shows an empty cell, the shown text for a non-finite value ("no limit")."""
    values = col.values
    if col.fmt is None:
        return list(values)
    fmt = col.fmt
    arr = np.asarray(values)
    try:
        uniq, inverse = np.unique(arr, return_inverse=True)
    except TypeError:  # mixed object values: format one by one
        return [fmt(v) for v in arr.tolist()]
    inverse = inverse.reshape(-1)
    texts = np.empty(uniq.shape[0], dtype=object)  # object, so long texts are never truncated
    texts[:] = [fmt(v) for v in uniq.tolist()]
    if not col.is_number:
        return list(texts[inverse].tolist())
    blank = np.array([t == "" for t in texts.tolist()], bool)
    finite = np.isfinite(uniq.astype(np.float64))
    out = arr.astype(object)
    as_text = ~finite & ~blank
    if as_text.any():
        rows = as_text[inverse]
        out[rows] = texts[inverse][rows]
    out[blank[inverse]] = None
    return list(out.tolist())


def write_view(path: str, data: ViewData, task: Any = None) -> int:
    """Format and write ``data`` to an xlsx at ``path``; returns the rows written. ``task`` (a
    `Task` or an `ExportJob`) is checked for cancellation and told the progress."""
    columns = []
    for i, col in enumerate(data.columns):
        if task is not None:
            task.check()
            task.progress(0.3 * i / max(1, len(data.columns)), "formatting")
        columns.append(cells(col))
    rows = list(zip(*columns, strict=True)) if columns else [() for _ in range(data.rows)]

    def progress(n: int) -> None:
        if task is not None:
            task.check()
            task.progress(0.3 + 0.7 * n / max(1, len(rows)), "writing")

    excel.write_table(path, data.sheet, [c.header for c in data.columns], rows, progress)
    return len(rows)


def sheet_name(view: QTableView) -> str:
    """The dock's title (or the view's objectName) as a valid worksheet name."""
    title = ""
    w: QWidget | None = view
    while w is not None:
        if isinstance(w, QDockWidget):
            title = w.windowTitle()
            break
        w = w.parentWidget()
    title = " ".join(re.sub(r"[\[\]:*?/\\]", " ", title or view.objectName()).split()).strip("'")
    return title[:31] or "Table"


# ---------------------------------------------------------------------- one export
class ExportJob:
    """One export in flight: `cancel()` stops it at the next block of rows, `wait()` joins it."""

    def __init__(self, path: str, rows: int) -> None:
        self.path, self.rows = path, rows
        self.task: Any = None  # the TaskRunner's Task when the dock lent one
        self.thread: threading.Thread | None = None
        self.on_progress: Callable[[float, str], None] | None = None
        self._cancel = threading.Event()
        self._last_progress = 0.0

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set() or (self.task is not None and self.task.cancelled)

    @property
    def done(self) -> bool:
        if self.task is not None:
            return bool(self.task.done)
        return self.thread is not None and not self.thread.is_alive()

    def cancel(self) -> None:
        self._cancel.set()
        if self.task is not None:
            self.task.cancel()

    def check(self) -> None:
        if self._cancel.is_set():
            raise TaskCancelled()

    def progress(self, fraction: float, text: str = "") -> None:
        now = time.monotonic()
        if self.on_progress is not None and (fraction >= 1.0 or now - self._last_progress >= 0.1):
            self._last_progress = now
            self.on_progress(fraction, text)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker finished (tests, shutdown); True when it did."""
        if self.task is not None:
            return bool(self.task.wait(timeout))
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True


def failure_text(e: BaseException, path: str) -> str:
    """A failed export as the user reads it (never a traceback; unexpected ones are logged)."""
    if isinstance(e, PermissionError):
        return f"Cannot write {path}: permission denied, or the file is open in Excel."
    if isinstance(e, OSError):
        return f"Cannot write {path}: {e.strerror or e}"
    log.error("table export failed", exc_info=e)
    return f"Export failed ({type(e).__name__}): {e}"
