"""The credit dock (issue 4 "Credit"): company limits, financing-limit usage of every credited
account, credit groups, and an inline form that turns a new limit into a change request.

Two cadences, so the feed thread and the database are never waited on by the window:
- every 2 s the account table copies loan, limit and equity from the live engine under the
  monitor's lock (`try_lock`: a busy lock skips the tick) and tells the view only the changed rows;
- every ~10 s (and on `refresh`) `credit_usage` runs in the task runner on a copy of those arrays,
  for what needs the store: credit groups and company limits.
Sorting and the "over limit only" / search filters are numpy over the dock's own copies, so a
filter shows exactly the accounts whose copied loan exceeds their limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from services.auth import User
from services.credit import CreditUsage, GroupUsage, credit_usage
from widgets.array_model import SORT_ROLE, ArrayTableModel, Column, number_column
from widgets.formatting import money
from widgets.locking import try_lock
from widgets.records import (
    ERROR_COLOUR,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    set_tone,
    value_text,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.live import LiveMonitor
    from services.store import Store

KIND = "financing_limit"
LIVE_MS = 2_000
STORE_MS = 10_000
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

    usage = credit_usage(engine_view, store)
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


def _stretch(view: QTableView, column: int) -> None:
    """Give spare width to a text column, not to the last (a usage bar or an amount)."""
    header = view.horizontalHeader()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)


# ---------------------------------------------------------------------- the dock
class CreditDock(QWidget):
    """Financing limits, credit groups and company credit limits, with the adjust-limit form."""

    account_selected = Signal(int)  # engine account index of the current row
    submitted = Signal(int)  # the new change request's id
    refreshed = Signal()  # a store snapshot (groups, company limits) was applied

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.monitor: LiveMonitor | None = None
        self.snapshot: CreditSnapshot | None = None
        self._book: Any = None
        self._codes = self._names = self._search_text = np.zeros(0, str)
        self._ids = np.zeros(0, np.int64)
        self._loan = self._limit = self._equity = self._over = self._usage = np.zeros(0)
        self._credited = np.zeros(0, bool)
        self.form_key: int | None = None
        self._submit_task: Task | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._fitted = False
        self._build_ui()
        self._live_timer = QTimer(self)
        self._live_timer.setInterval(LIVE_MS)
        self._live_timer.timeout.connect(self.tick)
        self._store_timer = QTimer(self)
        self._store_timer.setInterval(STORE_MS)
        self._store_timer.timeout.connect(self._load.request)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        strip = QFrame()
        strip.setProperty("role", "card")
        row = QHBoxLayout(strip)
        row.setContentsMargins(10, 6, 10, 6)
        self.total_financing_label = QLabel("")
        self.five_x_label = QLabel("")
        self.per_client_label = QLabel("")
        for w in (self.total_financing_label, self.five_x_label, self.per_client_label):
            row.addWidget(w, 1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        row.addWidget(self.refresh_button)
        lay.addWidget(strip)

        bar = QHBoxLayout()
        caption = QLabel("Financing limits")
        caption.setStyleSheet("font-weight: 600")
        bar.addWidget(caption)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search account or client")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self._apply_filter())
        bar.addWidget(self.search, 1)
        self.over_only = QCheckBox("Over limit only")
        self.over_only.toggled.connect(lambda _on: self._apply_filter())
        bar.addWidget(self.over_only)
        self.summary = QLabel("")
        self.summary.setProperty("role", "caption")
        bar.addWidget(self.summary)

        self.model = ArrayTableModel([
            Column("Account", lambda k: self._codes[k]),
            Column("Client", lambda k: self._names[k]),
            number_column("Limit", lambda k: self._limit[k]),
            number_column("Loan", lambda k: self._loan[k]),
            number_column("Usage", lambda k: self._usage[k], fmt=usage_text, tooltip="loan / limit",
                          background=lambda k: usage_colour(float(self._usage[k]))),
            number_column("Over limit", lambda k: self._over[k], fmt=lambda v: money(v) if v > 0 else "",
                          foreground=lambda k: OVER_TEXT if self._over[k] > 0 else None),
            number_column("Equity", lambda k: self._equity[k]),
        ], self)
        self.view = make_table(self.model)
        self.view.setItemDelegateForColumn(4, UsageBarDelegate(self.view))
        self.view.sortByColumn(4, Qt.SortOrder.DescendingOrder)
        _stretch(self.view, 1)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

        self.group_model = RecordTableModel([
            Field("Group", "name"),
            Field("Members", "members", "number", fmt=lambda v: f"{int(v)}" if v == v else ""),
            Field("Limit", "limit", "number"),
            Field("Loan", "loan", "number"),
            Field("Usage", "usage", "number", fmt=usage_text,
                  background=lambda v: USAGE_OVER if v > 1.0 else usage_colour(v)),
        ], self, key="key")
        self.group_view = make_table(self.group_model)
        self.group_view.setItemDelegateForColumn(4, UsageBarDelegate(self.group_view))
        self.group_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        _stretch(self.group_view, 0)
        self.group_view.horizontalHeader().resizeSection(4, 140)

        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 0, 0)
        left_lay.addLayout(bar)
        tables = QSplitter(Qt.Orientation.Vertical)
        tables.addWidget(self.view)
        groups = QWidget()
        g_lay = QVBoxLayout(groups)
        g_lay.setContentsMargins(0, 4, 0, 0)
        g_caption = QLabel("Credit groups")
        g_caption.setStyleSheet("font-weight: 600")
        g_lay.addWidget(g_caption)
        g_lay.addWidget(self.group_view, 1)
        tables.addWidget(groups)
        tables.setStretchFactor(0, 3)
        tables.setStretchFactor(1, 1)
        left_lay.addWidget(tables, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self._build_form())
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        lay.addWidget(split, 1)
        self._update_form()

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(260)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setVerticalSpacing(5)
        title = QLabel("Adjust limit")
        title.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(title, 0, 0, 1, 2)
        self.account_label = QLabel("Select an account")
        self.current_label = QLabel("")
        self.current_label.setProperty("role", "caption")
        self.current_label.setWordWrap(True)
        grid.addWidget(self.account_label, 1, 0, 1, 2)
        grid.addWidget(self.current_label, 2, 0, 1, 2)
        self.limit_edit = QLineEdit()
        self.limit_edit.setPlaceholderText("new limit (HKD)")
        self.limit_edit.textChanged.connect(self._edited)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        self.reason_edit.textChanged.connect(self._edited)
        limit_caption = QLabel("&New limit")
        limit_caption.setBuddy(self.limit_edit)
        reason_caption = QLabel("&Reason")
        reason_caption.setBuddy(self.reason_edit)
        grid.addWidget(limit_caption, 3, 0)
        grid.addWidget(self.limit_edit, 3, 1)
        grid.addWidget(reason_caption, 4, 0)
        grid.addWidget(self.reason_edit, 4, 1)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 5, 0, 1, 2)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 6, 0, 1, 2)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit)
        grid.addWidget(self.submit_button, 7, 0, 1, 2, Qt.AlignmentFlag.AlignRight)
        grid.setRowStretch(8, 1)
        grid.setColumnStretch(1, 1)
        self.limit_edit.returnPressed.connect(self.reason_edit.setFocus)
        self.reason_edit.returnPressed.connect(self.submit)
        return form

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner, monitor: LiveMonitor) -> None:
        self.store, self.user, self.tasks, self.monitor = store, user, tasks, monitor
        self._book = None
        self.tick()
        self._load.request()
        self._live_timer.start()
        self._store_timer.start()

    def stop(self) -> None:
        self._live_timer.stop()
        self._store_timer.stop()
        self._load.cancel()
        if self._submit_task is not None:
            self._submit_task.cancel()
        self._submit_task = None

    def refresh(self) -> None:
        """Re-read the live arrays now and the store's groups and company limits in the background."""
        self.tick()
        if self.store is not None and self.user is not None and self.tasks is not None:
            self._load.request()

    # ------------------------------------------------------------------ live arrays (GUI thread, 2 s)
    def tick(self) -> None:
        m = self.monitor
        if m is None:
            return
        with try_lock(m.lock) as held:
            if not held:
                return
            b = m.engine.book
            fresh = b is not self._book
            if fresh:
                self._book = b
                self._codes = np.array(b.acct_codes, dtype=str)
                self._names = np.array(b.client_names, dtype=str)
                self._search_text = np.char.lower(np.char.add(np.char.add(self._codes, " "), self._names))
                self._ids = (np.asarray(b.acct_ids, np.int64) if b.acct_ids is not None
                             else np.full(b.n_acct, -1, np.int64))
            loan, limit, equity = m.engine.loan.copy(), b.financing_limit.copy(), m.engine.equity.copy()
            margin_type = np.asarray(b.acct_type) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            usage = np.where(limit > 0, loan / limit, np.where(loan > 0, np.inf, 0.0))
        over = np.maximum(0.0, loan - limit)
        credited = margin_type & ((limit > 0) | (loan > 0))
        if fresh:
            changed = np.arange(loan.shape[0])
        else:
            changed = np.flatnonzero((loan != self._loan) | (limit != self._limit) | (equity != self._equity))
        self._loan, self._limit, self._equity, self._usage, self._over = loan, limit, equity, usage, over
        self._credited = credited
        if fresh:
            self.model.reset(np.flatnonzero(credited))
            self._apply_filter()
            if not self._fitted and self.model.rowCount():
                fit_columns(self.view, 220)
                self._fitted = True
        else:
            self.model.set_keys(np.flatnonzero(credited))
            if changed.size:
                self.model.update_rows(changed)
                header = self.view.horizontalHeader()
                if self.model.sort_column >= 0:
                    self.model.sort(self.model.sort_column, header.sortIndicatorOrder())
            self._update_summary()
        self._update_strip()
        self._update_form()

    def _filter(self, keys: np.ndarray) -> np.ndarray:
        mask = np.ones(keys.shape[0], bool)
        if self.over_only.isChecked():
            mask &= self._over[keys] > 0
        q = self.search.text().strip().lower()
        if q:
            mask &= np.char.find(self._search_text[keys], q) >= 0
        return mask

    def _apply_filter(self) -> None:
        active = self.over_only.isChecked() or bool(self.search.text().strip())
        self.model.set_filter(self._filter if active else None)
        self._update_summary()

    def _update_summary(self) -> None:
        n_over = int((self._over[self._credited] > 0).sum()) if self._credited.size else 0
        self.summary.setText(f"{self.model.rowCount()} of {int(self._credited.sum())} credited · "
                             f"{n_over} over limit")

    def _update_strip(self) -> None:
        total = float(self._loan.sum())
        company = self.snapshot.usage.company if self.snapshot is not None else {}
        cap, five_x, per_client = (company.get("total_financing_cap"), company.get("five_x_capital"),
                                   company.get("per_client_max"))

        def show(label: QLabel, title: str, bound: float | None) -> None:
            if bound is None:
                label.setText(f"{title}: {short_money(total)} / —")
                label.setStyleSheet("")
                return
            pct = f" ({total / bound * 100:.1f}%)" if bound > 0 else ""
            label.setText(f"{title}: {short_money(total)} / {short_money(bound)}{pct}")
            label.setToolTip(f"{money(total)} / {money(bound)}")
            label.setStyleSheet(f"color: {ERROR_COLOUR}; font-weight: 600" if total > bound else "")

        show(self.total_financing_label, "Loans vs financing cap", cap)
        show(self.five_x_label, "Loans vs 5 × capital", five_x)
        breaches = 0 if per_client is None else int((self._limit > per_client).sum())
        self.per_client_label.setText("Per-client max: —" if per_client is None else
                                      f"Limits above per-client max ({short_money(per_client)}): {breaches}")
        self.per_client_label.setStyleSheet(f"color: {ERROR_COLOUR}; font-weight: 600" if breaches else "")

    # ------------------------------------------------------------------ store snapshot (task, ~10 s)
    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None and self.monitor is not None
        m = self.monitor
        with m.lock:  # copies only: the task never reads arrays the feed thread writes
            b = m.engine.book
            view = SimpleNamespace(loan=m.engine.loan.copy(), book=SimpleNamespace(
                acct_ids=None if b.acct_ids is None else np.array(b.acct_ids), acct_codes=list(b.acct_codes),
                financing_limit=b.financing_limit.copy()))
        return self.tasks.run(load_credit, self.store, self.user, view, on_done=on_done, on_error=on_error,
                              name="credit usage")

    def _loaded(self, snap: CreditSnapshot) -> None:
        self.snapshot = snap
        self.group_model.set_records([
            {"key": i, "name": g.name, "members": len(g.accounts), "limit": g.limit, "loan": g.loan,
             "usage": g.usage} for i, g in enumerate(snap.groups)])
        self._update_strip()
        self._update_form()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.summary.setText(f"refresh failed: {error_text(e)}")

    # ------------------------------------------------------------------ the adjust-limit form
    def select_account(self, code: str) -> bool:
        hits = np.flatnonzero(self._codes == code)
        row = self.model.row_of(int(hits[0])) if hits.size else -1
        if row < 0:
            return False
        self.view.selectRow(row)
        return True

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        key = self.model.key_at(current.row())
        if key != self.form_key:
            self.form_key = key
            self.message.hide()
            self._update_form()
        self.account_selected.emit(key)

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _problem(self) -> tuple[float | None, str]:
        """The new limit, or why the form cannot be submitted now (shown inline)."""
        if self.form_key is None:
            return None, ""
        if self.snapshot is not None and not self.snapshot.may_request:
            return None, "You may view limits but not request changes."
        if not self.limit_edit.text().strip():
            return None, ""
        return validate_limit(self.limit_edit.text(), float(self._limit[self.form_key]))

    def _update_form(self) -> None:
        k = self.form_key
        if k is None or k >= self._codes.shape[0]:
            self.account_label.setText("Select an account")
            self.current_label.setText("")
        else:
            self.account_label.setText(f"{self._codes[k]} · {self._names[k]}")
            self.current_label.setText(f"limit {money(self._limit[k])} · loan {money(self._loan[k])} · "
                                       f"equity {money(self._equity[k])} · usage {usage_text(self._usage[k])}")
        value, why = self._problem()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        self.limit_edit.setStyleSheet(f"border: 1px solid {ERROR_COLOUR}" if why and self.limit_edit.text().strip()
                                      else "")
        ok = value is not None and bool(self.reason_edit.text().strip()) and self._submit_task is None
        self.submit_button.setEnabled(ok)
        editable = k is not None and (self.snapshot is None or self.snapshot.may_request)
        self.limit_edit.setEnabled(editable)
        self.reason_edit.setEnabled(editable)

    def submit(self) -> None:
        """Submit the typed limit as a change request; refused inline when the form is not valid."""
        if self.form_key is None or self.store is None or self.user is None or self.tasks is None:
            return
        if self._submit_task is not None:
            return
        value, why = self._problem()
        if value is None:
            self.validation.setText(why or "Enter the new limit.")
            self.validation.show()
            return
        reason = self.reason_edit.text().strip()
        if not reason:
            self.validation.setText("Give a reason: the checker decides on it.")
            self.validation.show()
            self.reason_edit.setFocus()
            return
        k = self.form_key
        account_id = int(self._ids[k])
        if account_id < 0:
            set_tone(self.message, "This book has no store ids: the limit cannot be requested here.")
            return
        code = str(self._codes[k])
        context = {"account": code, "client_name": str(self._names[k]), "current_limit": float(self._limit[k]),
                   "loan": float(self._loan[k]), "equity": float(self._equity[k])}
        set_tone(self.message, "Submitting…", "info")
        self._submit_task = self.tasks.run(
            submit_limit, self.store, self.user, account_id, value, reason, context,
            on_done=lambda rid: self._submitted(code, value, int(rid)), on_error=self._submit_failed,
            name="submit financing limit change")
        self._update_form()

    def _submitted(self, code: str, value: float, req_id: int) -> None:
        self._submit_task = None
        for edit in (self.limit_edit, self.reason_edit):
            edit.blockSignals(True)
            edit.clear()
            edit.blockSignals(False)
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval "
                               f"({code}: limit {value_text(value, 'amount')})", "ok")
        self._update_form()
        self.submitted.emit(req_id)

    def _submit_failed(self, e: BaseException) -> None:
        self._submit_task = None
        set_tone(self.message, error_text(e))
        self._update_form()
