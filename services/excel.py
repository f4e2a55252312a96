"""Excel output through one sanitiser: text that Excel would run as a formula is stored as text."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def sanitise(v: Any) -> Any:
    """A string starting with = + - @ tab or CR is prefixed with a quote: Excel keeps it as text."""
    if isinstance(v, str) and v.startswith(FORMULA_LEADS):
        return "'" + v
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.replace(tzinfo=None)
    return v


PROGRESS_ROWS = 2000  # rows between two `progress` calls of `write_table`


def write_table(path: str | Path, sheet: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
                progress: Callable[[int], None] | None = None) -> None:
    """One sheet with a bold frozen header, an autofilter and sensible widths (openpyxl write-only).

    ``progress(rows_written)`` is called every `PROGRESS_ROWS` rows; an exception it raises (a
    cancelled export) stops the write before anything replaces ``path``, and openpyxl's temporary
    sheet file is closed and removed. A missing folder fails before any row is converted.
    """
    from openpyxl import Workbook

    folder = Path(path).parent
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "No such folder", str(folder))
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    tmp = Path(path).with_suffix(".tmp.xlsx")
    try:
        _fill(ws, headers, rows, progress)
        wb.save(tmp)
    except BaseException:
        _discard(ws)
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def _fill(ws: Any, headers: Sequence[str], rows: Sequence[Sequence[Any]],
          progress: Callable[[int], None] | None) -> None:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    ws.freeze_panes = "A2"
    widths = [max(8, min(60, len(h) + 2)) for h in headers]
    for r in rows[:200]:
        for i, v in enumerate(r):
            widths[i] = max(widths[i], min(60, len(str(v)) + 2))
    for i, w in enumerate(widths):
        ws.column_dimensions[get_column_letter(i + 1)].width = w
    head = []
    for h in headers:
        c = WriteOnlyCell(ws, value=h)
        c.font = Font(bold=True)
        head.append(c)
    ws.append(head)
    for n, r in enumerate(rows, 1):
        ws.append([sanitise(v) for v in r])
        if progress is not None and n % PROGRESS_ROWS == 0:
            progress(n)
    ws.auto_filter.ref = f"A1:{get_column_letter(max(1, len(headers)))}{len(rows) + 1}"


def _discard(ws: Any) -> None:
    """Close a write-only sheet left half-written and delete its temporary file (else its row
    generator fails noisily when garbage-collected and the file stays in the temp folder)."""
    with contextlib.suppress(Exception):
        if not ws.closed:
            ws.close()
    out = getattr(getattr(ws, "_writer", None), "out", None)
    if isinstance(out, str):
        with contextlib.suppress(OSError):
            os.remove(out)


def write_sheets(path: str | Path, sheets: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]]) -> None:
    """Several sheets (name, headers, rows) in one workbook, each laid out like `write_table`."""
    from openpyxl import Workbook

    folder = Path(path).parent
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "No such folder", str(folder))
    wb = Workbook(write_only=True)
    tmp = Path(path).with_suffix(".tmp.xlsx")
    made = []
    try:
        for name, headers, rows in sheets:
            ws = wb.create_sheet(name[:31])
            made.append(ws)
            _fill(ws, headers, rows, None)
        wb.save(tmp)
    except BaseException:
        for ws in made:
            _discard(ws)
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
