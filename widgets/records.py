"""Governance records on screen: a table model over lists of records, and how requests read.

`RecordTableModel` puts small record lists (change requests, audit records, company parameters)
behind the numpy `ArrayTableModel`, keyed by each record's integer id: a refresh diffs the rows by id
(inserts and removes, never a reset), so the selection and the current row survive a reload that
another workstation's decision triggered. Column values live in numpy arrays with one blank
sentinel row at the end, so a key that vanished in a reload reads blank instead of failing.

The presentation helpers keep one wording for every governance widget: times in Hong Kong time,
request statuses with one colour each, kinds and targets in the desk's words.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from services.calendar import HK_TZ
from services.errors import AuthError, ChangeError, StaleTargetError, StoreError
from widgets.array_model import ArrayTableModel, Column
from widgets.formatting import LEFT, RIGHT, money

if TYPE_CHECKING:
    from PySide6.QtWidgets import QLabel

    from services.changes import ChangeRequest

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- presentation
REQUEST_STATUS_COLOURS = {  # badge backgrounds (white text), in the desk's status palette
    "pending": QColor(176, 128, 10),
    "approved": QColor(35, 134, 54),
    "rejected": QColor(178, 30, 38),
    "cancelled": QColor(88, 96, 105),
    "expired": QColor(88, 96, 105),
}
REQUEST_STATUS_ACCENT = {"pending": "#e3b341", "approved": "#3fb950", "rejected": "#f85149",
                         "cancelled": "#8b949e", "expired": "#8b949e"}
BADGE_TEXT = QColor(255, 255, 255)
OVERDUE_TEXT = QColor(240, 136, 62)
MUTED_TEXT = QColor(139, 148, 158)
ERROR_COLOUR = "#f85149"
OK_COLOUR = "#3fb950"
INFO_COLOUR = "#58a6ff"
WARN_COLOUR = "#e3b341"

KIND_LABELS = {
    "company_parameter": "Company parameter", "financing_limit": "Financing limit", "haircut": "Haircut",
    "stock_margin_ratio": "Stock margin ratio", "client_margin_ratio": "Client margin ratio",
    "client_group": "Client group", "stock_group": "Stock group", "index": "Index",
    "approval_flow": "Approval flow",
    "order_release": "Order release", "limit_code": "Limit code", "limit_rule": "Limit rule",
    "client_email": "Client e-mail",
}
STEP_ROLE_LABELS = {"supervisor": "Supervisor", "cro": "CRO", "risk_officer": "Risk officer"}
MONEY_FIELDS = frozenset({"amount", "current_limit", "loan", "equity", "im", "mm", "excess", "call_amount",
                          "financing_limit", "buying_power", "mv_long", "mv_short"})


def to_utc(v: Any) -> datetime | None:
    """A stored timestamp (datetime or SQLite ISO text, naive meaning UTC) as an aware UTC datetime."""
    if v is None or v == "":
        return None
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    if not isinstance(v, datetime):
        return None
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def epoch(v: Any) -> float:
    """Seconds since the epoch of a stored timestamp; NaN when there is none (sorts last)."""
    ts = to_utc(v)
    return ts.timestamp() if ts is not None else math.nan


def hk_time(v: Any, seconds: bool = False) -> str:
    """A timestamp as Hong Kong desk time, ``2026-11-22 11:21`` (empty for none)."""
    if isinstance(v, float | int | np.floating):
        if math.isnan(float(v)):
            return ""
        ts: datetime | None = datetime.fromtimestamp(float(v), UTC)
    else:
        ts = to_utc(v)
    if ts is None:
        return ""
    return ts.astimezone(HK_TZ).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def until_text(v: Any, now: datetime | None = None) -> str:
    """How long until ``v`` (``2 d 23 h``, ``45 min``), or ``overdue``."""
    ts = to_utc(v)
    if ts is None:
        return ""
    left = (ts - (now or datetime.now(UTC))).total_seconds()
    if left <= 0:
        return "overdue"
    days, rem = divmod(int(left), 86400)
    hours, rem = divmod(rem, 3600)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {rem // 60} min"
    return f"{max(1, rem // 60)} min"


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


def role_label(role: str) -> str:
    from services.auth import ROLE_LABELS

    return STEP_ROLE_LABELS.get(role) or ROLE_LABELS.get(role, role)


def field_label(kind: str, field_name: str, key: dict[str, Any] | None = None) -> str:
    if kind == "financing_limit" and field_name == "amount":
        return "Financing limit"
    if field_name == "email":
        return "E-mail"
    if kind == "company_parameter" and field_name == "value" and key and "name" in key:
        return str(key["name"])
    return field_name.replace("_", " ").capitalize()


def value_text(v: Any, field_name: str = "") -> str:
    """One field value as the desk reads it: money with 2 decimals, other numbers without noise."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "Yes" if v else "No"
    if isinstance(v, int | float) and field_name in MONEY_FIELDS:
        return money(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:,.6f}".rstrip("0").rstrip(".")
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def delta_text(before: Any, after: Any, field_name: str = "") -> str:
    """``+1,450,000.00 (+20.3%)`` for numeric changes; empty otherwise."""
    if isinstance(before, bool) or isinstance(after, bool):
        return ""
    if not isinstance(before, int | float) or not isinstance(after, int | float):
        return ""
    d = float(after) - float(before)
    if d == 0:
        return ""
    sign = "+" if d > 0 else "−"
    body = value_text(abs(d), field_name) if field_name in MONEY_FIELDS else value_text(abs(d))
    pct = f" ({sign}{abs(d) / abs(float(before)) * 100:.1f}%)" if before else ""
    return f"{sign}{body}{pct}"


def target_text(req: ChangeRequest) -> str:
    """What a request changes, in the desk's words: the account code, the parameter name, …"""
    ctx = req.context or {}
    if req.kind == "financing_limit" and ctx.get("account"):
        return str(ctx["account"])
    if req.kind == "client_email" and ctx.get("client"):
        return str(ctx["client"]).split(" · ", 1)[0]  # the client's code
    if req.kind == "company_parameter" and "name" in req.target_key:
        return str(req.target_key["name"])
    return ", ".join(f"{k} {v}" for k, v in req.target_key.items())


def change_summary(req: ChangeRequest) -> str:
    """``7,150,000.00 → 8,600,000.00`` for one changed field, ``3 fields`` for more."""
    fields = req.changed_fields()
    if req.op == "insert":
        return "new " + kind_label(req.kind).lower()
    if req.op == "delete":
        return "delete"
    if not fields:
        return "no change"
    if len(fields) > 1:
        return f"{len(fields)} fields"
    f = fields[0]
    return f"{value_text(req.before.get(f), f)} → {value_text(req.after.get(f), f)}"


def flow_text(req: ChangeRequest) -> str:
    """``2/2 CRO · credit.credit_adjust.large`` while pending (the step first: it is what the desk
    scans for); ``1 step · credit.credit_adjust`` once decided."""
    n = len(req.flow_steps)
    if req.status == "pending" and req.step < n:
        return f"{req.step + 1}/{n} {role_label(req.flow_steps[req.step])} · {req.flow_code}"
    return f"{n} step{'s' if n != 1 else ''} · {req.flow_code}"


def parse_json(text: str | None) -> Any:
    """Audit before/after: JSON when it is JSON, else the plain text (a comment, a role)."""
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


# ---------------------------------------------------------------------- inline messages
TONES = {  # inline message tones: text colour, background, border
    "error": ("#ffb3ad", "#3d1619", "#8e1519"),
    "warn": ("#f2cc60", "#3a2d0c", "#7d5c0d"),
    "ok": ("#7ee2a8", "#12301d", "#2ea043"),
    "info": ("#a5d6ff", "#102640", "#1f6feb"),
}


def set_tone(label: QLabel, text: str, tone: str = "error") -> None:
    """Show ``text`` in an inline message label (hidden when empty)."""
    fg, bg, border = TONES[tone]
    label.setText(text)
    label.setStyleSheet(f"color: {fg}; background: {bg}; border: 1px solid {border}; border-radius: 3px; "
                        "padding: 5px 8px;")
    label.setProperty("tone", tone)
    label.setVisible(bool(text))


def message_label() -> QLabel:
    """An inline message label for `set_tone`, hidden until it has something to say."""
    from PySide6.QtWidgets import QLabel

    label = QLabel("")
    label.setWordWrap(True)
    label.hide()
    return label


def error_text(e: BaseException) -> str:
    """A service's refusal as the user reads it (never a traceback); unexpected ones are logged."""
    if isinstance(e, StaleTargetError):
        return str(e)
    if isinstance(e, AuthError):
        return f"Not permitted: {e}"
    if isinstance(e, ChangeError | StoreError):
        return str(e)
    log.error("governance action failed", exc_info=e)
    return f"Unexpected error ({type(e).__name__}): {e}"


# ---------------------------------------------------------------------- the model
@dataclass
class Field:
    """One column over a record key: ``kind`` text, number (float, NaN blank) or time (epoch)."""

    header: str
    name: str
    kind: str = "text"
    fmt: Callable[[Any], str] | None = None
    align: Qt.AlignmentFlag | None = None
    tooltip: str = ""
    background: Callable[[Any], QColor | None] | None = None  # of the cell's raw value
    foreground: Callable[[Any], QColor | None] | None = None


class RecordTableModel(ArrayTableModel):
    """Records (dicts with an integer ``key``) shown through numpy column arrays."""

    def __init__(self, fields: Sequence[Field], parent: Any = None, key: str = "id",
                 row_foreground: Callable[[dict[str, Any]], QColor | None] | None = None) -> None:
        self.fields = list(fields)
        self.key = key
        self._records: list[dict[str, Any]] = []
        self._arrays: dict[str, np.ndarray] = {}
        self._index = np.zeros(0, np.int64)
        self._record_fg = row_foreground
        super().__init__([self._column(f) for f in self.fields], parent,
                         row_foreground=self._row_fg if row_foreground else None)
        self._build([])

    # ------------------------------------------------------------------ public
    def set_records(self, records: Iterable[dict[str, Any]]) -> None:
        """Show exactly these records: rows diffed by key, values re-read, sort kept."""
        self._build(list(records))
        self.set_keys(np.array([int(r[self.key]) for r in self._records], np.int64))
        self.update_rows(None)

    def record(self, key: int) -> dict[str, Any] | None:
        i = int(self._rows(np.array([key]))[0])
        return self._records[i] if i >= 0 else None

    def record_at(self, row: int) -> dict[str, Any] | None:
        if 0 <= row < self.rowCount():
            return self.record(self.key_at(row))
        return None

    def column_of(self, header: str) -> int:
        return [f.header for f in self.fields].index(header)

    # ------------------------------------------------------------------ internals
    def _build(self, records: list[dict[str, Any]]) -> None:
        self._records = records
        arrays: dict[str, np.ndarray] = {}
        for f in self.fields:
            raw = [r.get(f.name) for r in records]
            if f.kind == "number":
                arrays[f.name] = np.array([math.nan if v is None else float(v) for v in raw] + [math.nan])
            elif f.kind == "time":
                arrays[f.name] = np.array([epoch(v) for v in raw] + [math.nan])
            else:
                arrays[f.name] = np.array(["" if v is None else str(v) for v in raw] + [""])
        keys = np.array([int(r[self.key]) for r in records], np.int64)
        index = np.full(int(keys.max(initial=-1)) + 1, -1, np.int64)
        index[keys] = np.arange(keys.shape[0])
        self._arrays, self._index = arrays, index

    def _rows(self, keys: np.ndarray) -> np.ndarray:
        """Record position of each key; -1 (the blank sentinel row) for keys not in the records."""
        keys = np.asarray(keys, np.int64)
        out = np.full(keys.shape, -1, np.int64)
        inside = (keys >= 0) & (keys < self._index.shape[0])
        out[inside] = self._index[keys[inside]]
        return out

    def _column(self, f: Field) -> Column:
        name = f.name

        def values(keys: np.ndarray) -> np.ndarray:
            return self._arrays[name][self._rows(keys)]

        def value(key: int) -> Any:
            v = values(np.array([key]))[0]
            return v.item() if isinstance(v, np.generic) else v

        default_fmt: Callable[[Any], str] = str
        if f.kind == "time":
            default_fmt = hk_time
        elif f.kind == "number":
            default_fmt = money
        align = f.align if f.align is not None else (RIGHT if f.kind == "number" else LEFT)
        bg = (lambda k, fn=f.background: fn(value(k))) if f.background else None
        fg = (lambda k, fn=f.foreground: fn(value(k))) if f.foreground else None
        return Column(f.header, values, f.fmt or default_fmt, align, f.tooltip, foreground=fg, background=bg)

    def _row_fg(self, key: int) -> QColor | None:
        rec = self.record(key)
        return self._record_fg(rec) if rec is not None and self._record_fg else None


def status_badge(status: Any) -> QColor | None:
    return REQUEST_STATUS_COLOURS.get(str(status))


def status_badge_text(status: Any) -> QColor | None:
    return BADGE_TEXT if str(status) in REQUEST_STATUS_COLOURS else None



class CoalescedLoad:
    """One background read at a time for a dock; refreshes asked for meanwhile run once after it.

    `start(on_done, on_error)` launches the read (returns the runner's task); `on_loaded` and
    `on_failed` run on the GUI thread as the task runner delivers them.
    """

    def __init__(self, start: Any, on_loaded: Any, on_failed: Any) -> None:
        self._start, self._on_loaded, self._on_failed = start, on_loaded, on_failed
        self.task: Any = None
        self.again = False

    @property
    def busy(self) -> bool:
        return self.task is not None

    def request(self) -> None:
        if self.task is not None:
            self.again = True
            return
        self.task = self._start(self._done, self._failed)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.task = None
        self.again = False

    def _done(self, result: Any) -> None:
        self.task = None
        self._on_loaded(result)
        self._follow()

    def _failed(self, e: BaseException) -> None:
        self.task = None
        self._on_failed(e)
        self._follow()

    def _follow(self) -> None:
        if self.again:
            self.again = False
            self.request()
