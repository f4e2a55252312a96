"""Number, time and status presentation shared by every dock, so a figure reads the same everywhere.

Amounts are base currency (HKD) with thousands separators and 2 decimals; NaN shows empty rather
than "nan" so a missing value never looks like a number. Status colours are chosen for white text on
the dark desk theme (warning amber, call orange, force deep red).
"""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
CENTER = Qt.AlignmentFlag.AlignCenter

STATUS_BACKGROUND = {  # whole rows: muted tints, so a screen of alerts stays readable all day
    0: None,
    1: QColor(74, 61, 16),  # warning: amber
    2: QColor(100, 52, 14),  # call: orange
    3: QColor(96, 22, 28),  # force: deep red
}
STATUS_BADGE = {  # the status cell itself: saturated, the colour the eye scans for
    0: None,
    1: QColor(176, 128, 10),
    2: QColor(211, 105, 20),
    3: QColor(178, 30, 38),
}
STATUS_TEXT = QColor(255, 255, 255)
STATUS_ACCENT = {0: "#3fb950", 1: "#e3b341", 2: "#f0883e", 3: "#f85149"}
FEED_STATE_COLOURS = {
    "live": "#3fb950", "connecting": "#8b949e", "resyncing": "#e3b341", "stale": "#f0883e",
    "stopped": "#f85149", "no feed": "#8b949e",
}
STALE_TEXT = QColor(240, 136, 62)
NEGATIVE_TEXT = QColor(248, 81, 73)


def money(v: Any) -> str:
    """2 decimals with thousands separators; empty for NaN/None."""
    if v is None:
        return ""
    f = float(v)
    if math.isnan(f):
        return ""
    return f"{f:,.2f}"


def quantity(v: Any) -> str:
    f = float(v)
    if math.isnan(f):
        return ""
    return f"{f:,.0f}" if f == int(f) else f"{f:,.2f}"


def price(v: Any) -> str:
    f = float(v)
    if math.isnan(f):
        return ""
    return f"{f:,.3f}" if abs(f) < 10 else f"{f:,.2f}"


def ratio(v: Any) -> str:
    """A margin ratio or haircut as a percentage; NaN (none defined) shows an en dash."""
    f = float(v)
    if math.isnan(f):
        return "–"
    return f"{f * 100:.0f}%" if f * 100 == round(f * 100) else f"{f * 100:.1f}%"


def integer(v: Any) -> str:
    return f"{int(v):,}"


def clock_time(ts: float | None) -> str:
    """HH:MM:SS local time of a unix timestamp; empty for none."""
    if ts is None or not ts or math.isnan(float(ts)):
        return ""
    return time.strftime("%H:%M:%S", time.localtime(float(ts)))


def dot_html(colour: str, text: str) -> str:
    """A coloured status dot followed by text, for QLabel rich text."""
    return f'<span style="color:{colour}; font-size:14px">●</span>&nbsp;{text}'
