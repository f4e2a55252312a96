"""The credit dock's shared parts: usage colours and wording, the financing-limit check, the store
snapshot task, and the usage-bar delegate (used by the limits and the credit-groups tables).

Everything above the delegate is plain Python over numbers (tests call it without widgets); the task
functions run in the dock's TaskRunner, never on the GUI thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPalette
from PySide6.QtWidgets import QHeaderView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QTableView

from services.lazy import lazy_module
from widgets.array_model import SORT_ROLE
from widgets.tables import fit_columns

if TYPE_CHECKING:
    from services import credit as _credit
    from services.auth import User
    from services.credit import CreditUsage, GroupUsage
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    _credit = lazy_module("services.credit")

KIND = "financing_limit"
USAGE_OK = QColor(46, 160, 67)  # < 80 %
USAGE_WARN = QColor(187, 128, 9)  # 80–100 %
USAGE_OVER = QColor(218, 54, 51)  # > 100 %
OVER_TEXT = QColor(248, 81, 73)


# ---------------------------------------------------------------------- pure parts (no Qt widgets)
def short_money(v: float) -> str:
    """Company-scale amounts: ``36.47 M``, ``5.00 B`` (the strip has room for three of them)."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= size:
            return f"{v / size:,.2f} {unit}"
    return f"{v:,.2f}"


def usage_colour(usage: float) -> QColor | None:
    """Green below 80 %, amber from 80 % to 100 %, red above; none for no usage at all."""
    if math.isnan(usage) or usage <= 0:
        return None
    if usage > 1.0:
        return USAGE_OVER
    return USAGE_WARN if usage >= 0.8 else USAGE_OK


def usage_text(usage: float) -> str:
    if math.isnan(usage):
        return ""
    return "no limit" if math.isinf(usage) else f"{usage * 100:.1f}%"


def validate_limit(text: str, current: float | None = None) -> tuple[float | None, str]:
    """(amount, "") when ``text`` is an acceptable new financing limit, else (None, why not)."""
    t = text.strip().replace(",", "").replace("_", "")
    if not t:
        return None, "Enter the new limit."
    try:
        v = float(t)
    except ValueError:
        return None, f"“{text.strip()}” is not a number."
    if not math.isfinite(v):
        return None, "The limit must be a finite number."
    if v < 0:
        return None, "A financing limit must be ≥ 0."
    if current is not None and v == current:
        return None, "That is the current limit: nothing to change."
    return v, ""


@dataclass
class CreditSnapshot:
    """What the store adds to the live arrays: groups, company limits, and the user's permission."""

    usage: CreditUsage
    may_request: bool
    groups: list[GroupUsage] = field(default_factory=list)


def load_credit(store: Store, user: User, engine_view: Any) -> CreditSnapshot:
    """Task function: `credit_usage` over a copy of the engine's arrays (never the live ones)."""
    from services.auth import permitted

    usage = _credit.credit_usage(engine_view, store)
    return CreditSnapshot(usage, permitted(store, user, "request", KIND), usage.groups)


def submit_limit(store: Store, user: User, account_id: int, amount: float, reason: str,
                 context: dict[str, Any]) -> int:
    """Task function: a `financing_limit` change request; an account without a limit row gets one."""
    from services import changes

    with store.begin() as conn:
        exists = changes.read_target(conn, "financing_limits", {"account_id": account_id}) is not None
    return changes.submit(store, user, KIND, {"account_id": account_id}, {"amount": amount}, reason,
                          op="update" if exists else "insert", amount=amount, context=context)


# ---------------------------------------------------------------------- the usage bar
class UsageBarDelegate(QStyledItemDelegate):
    """Paints the cell's usage as a bar in its background colour (full width at ≥ 100 %)."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        colour = index.data(Qt.ItemDataRole.BackgroundRole)
        raw = index.data(SORT_ROLE)
        style = opt.widget.style() if opt.widget is not None else None
        if style is None:
            return
        text = opt.text
        opt.text = ""
        opt.backgroundBrush = QBrush()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        try:
            frac = float(raw)
        except (TypeError, ValueError):
            frac = math.nan
        if isinstance(colour, QColor) and not math.isnan(frac):
            r = opt.rect.adjusted(2, 3, -2, -3)
            width = int(r.width() * min(1.0, frac)) if math.isfinite(frac) else r.width()
            bar = QColor(colour)
            bar.setAlpha(170)
            painter.fillRect(QRect(r.left(), r.top(), max(2, width), r.height()), bar)
        painter.save()
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        painter.setPen(opt.palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text))
        painter.drawText(opt.rect.adjusted(4, 0, -4, 0), int(opt.displayAlignment), text)
        painter.restore()


def stretch_column(view: QTableView, column: int) -> None:
    """Give spare width to a text column, not to the last (a usage bar or an amount)."""
    header = view.horizontalHeader()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)


def fit_and_stretch(view: QTableView, column: int, max_width: int = 220) -> None:
    """`fit_columns` (contents, capped) and then the spare width to ``column`` again (the cap would
    otherwise pin a stretched column to ``max_width``)."""
    fit_columns(view, max_width)
    header = view.horizontalHeader()
    header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
    header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
