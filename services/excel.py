"""Excel output through one sanitiser: text that Excel would run as a formula is stored as text."""

from __future__ import annotations

from collections.abc import Sequence
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


def write_table(path: str | Path, sheet: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """One sheet with a bold frozen header, an autofilter and sensible widths (openpyxl write-only)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.freeze_panes = "A2"
    widths = [max(8, min(60, len(h) + 2)) for h in headers]
    for r in rows[:200]:
        for i, v in enumerate(r):
            widths[i] = max(widths[i], min(60, len(str(v)) + 2))
    for i, w in enumerate(widths):
        ws.column_dimensions[chr(65 + i) if i < 26 else "A" + chr(65 + i - 26)].width = w
    head = []
    for h in headers:
        c = WriteOnlyCell(ws, value=h)
        c.font = Font(bold=True)
        head.append(c)
    ws.append(head)
    for r in rows:
        ws.append([sanitise(v) for v in r])
    ws.auto_filter.ref = f"A1:{chr(64 + len(headers))}{len(rows) + 1}"
    tmp = Path(path).with_suffix(".tmp.xlsx")
    wb.save(tmp)
    tmp.replace(path)
