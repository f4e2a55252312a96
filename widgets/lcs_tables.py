"""The LCS test dock's tables and its input check: columns of the client shortfall list, the selected
account's positions, the top-10 stocks and the run history, and how LC / RLC are read as typed.

Kept apart from the dock so the dock file is about behaviour (runs, selection, history) only.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtGui import QColor

from widgets.formatting import CENTER, NEGATIVE_TEXT, money, quantity
from widgets.records import BADGE_TEXT, Field, status_badge

PASS_BADGE = QColor(35, 134, 54)
FAIL_BADGE = QColor(178, 30, 38)
PASS_COLOUR, FAIL_COLOUR = "#3fb950", "#f85149"
RUN_STATUS_BADGE = {"done": "approved", "failed": "rejected", "running": "pending", "cancelled": "cancelled"}
INPUT_NAMES = {"LC": "liquid capital", "RLC": "required liquid capital"}


def parse_amount(name: str, text: str) -> tuple[float | None, str]:
    """(the amount, "") for ``text`` (commas allowed), else (None, a message naming the field) —
    the same rule as `lcs.check_inputs`, checked as the user types."""
    t = text.strip()
    if not t:
        return None, f"Enter {name} ({INPUT_NAMES.get(name, name)})."
    try:
        v = float(t.replace(",", ""))
    except ValueError:
        return None, f"{name} must be a number, got “{t}”."
    if not math.isfinite(v):
        return None, f"{name} must be a finite number, got “{t}”."
    return v, ""


def percent(v: Any) -> str:
    f = float(v)
    return "" if math.isnan(f) else f"{f * 100:.0f}%"


def ratio(v: Any) -> str:
    f = float(v)
    return "" if math.isnan(f) else f"{f:.2f}"


def _level(v: Any) -> str:
    return "" if v != v else str(int(v))


def _short(v: Any) -> QColor | None:
    return NEGATIVE_TEXT if v == v and v > 0 else None


def result_badge(v: Any) -> QColor | None:
    return {"PASS": PASS_BADGE, "FAIL": FAIL_BADGE}.get(str(v))


def result_text(v: Any) -> QColor | None:
    return BADGE_TEXT if str(v) in ("PASS", "FAIL") else None


def _signed(v: Any) -> QColor | None:
    return NEGATIVE_TEXT if v == v and v < 0 else None


def account_fields() -> list[Field]:
    return [Field("Account", "account"),
            Field("Loan", "loan", "number"),
            Field("Recognised value", "rv", "number", tooltip="RV = Σ r·MV over the account's long positions"),
            Field("Decline", "decline", "number", fmt=percent,
                  tooltip="the bracket by level-1 / level-1+2 share of MV (RISK_METHODS §4)"),
            Field("Shortfall", "shortfall", "number", foreground=_short, tooltip="max(0, loan − RV·(1 − decline))"),
            Field("30% screen", "screen_30", "number", foreground=_short, tooltip="max(0, loan − 0.7·RV)"),
            Field("50% screen", "screen_50", "number", foreground=_short, tooltip="max(0, loan − 0.5·RV)")]


def position_fields() -> list[Field]:
    return [Field("Code", "code"),
            Field("Name", "name"),
            Field("Level", "level", "number", fmt=_level, align=CENTER),
            Field("Qty", "qty", "number", fmt=quantity),
            Field("MV (HKD)", "mv", "number"),
            Field("Haircut", "haircut", "number", fmt=ratio,
                  tooltip="FRR haircut h (1.00 when suspended for 3 business days or more)"),
            Field("r", "r", "number", fmt=ratio, tooltip="FRR ratio r = 1 − h"),
            Field("Recognised value", "rv", "number", tooltip="r · MV")]


def top10_fields() -> list[Field]:
    return [Field("#", "rank", "number", fmt=_level, align=CENTER),
            Field("Code", "code"),
            Field("Impact", "impact", "number", tooltip="added LCS when this stock is not pledgeable (r = 0)"),
            Field("Stressed LCS", "lcs_stressed", "number", tooltip="LCS + impact"),
            Field("Buffer", "buffer", "number", foreground=_signed, tooltip="0.5·ELC − stressed LCS"),
            Field("Result", "result", align=CENTER, background=result_badge, foreground=result_text)]


def history_fields() -> list[Field]:
    return [Field("Run", "run"),
            Field("Started", "started_at", "time", tooltip="Hong Kong time"),
            Field("By", "started_by"),
            Field("Status", "status", background=lambda v: status_badge(RUN_STATUS_BADGE.get(str(v), "")),
                  foreground=lambda v: BADGE_TEXT if str(v) in RUN_STATUS_BADGE else None),
            Field("LCS", "lcs", "number", fmt=money),
            Field("Buffer", "buffer", "number", foreground=_signed),
            Field("Result", "result", align=CENTER, background=result_badge, foreground=result_text),
            Field("Inputs", "name")]
