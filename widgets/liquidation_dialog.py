"""The Liquidate dialog: the proposal that restores IM, edited in place, confirmed as stored orders.

The account's figures and holdings are copied from the live engine under the monitor's lock when the
dialog opens (with the outstanding orders read from the store in the background); every edit is then
re-evaluated in numpy without the lock: IM after the orders, the shortfall left, and a message naming
the first bad line. Confirm stays disabled, with the reason shown beside it, while a line is invalid,
while the orders leave an IM shortfall that has not been accepted as a partial liquidation, or while
no reason is given. The store write runs on the task runner.

`open_liquidation(widget, account_index)` is how the alerts dock and the drill-down reach it: it asks
the window's "Liquidation orders" dock, which holds the store, the user and the task runner.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from services.liquidation import (
    ORDER_TYPES,
    Effect,
    LiquidationAccount,
    OrderLine,
    account_for_liquidation,
    evaluate,
    propose,
)
from services.liquidation_orders import CallContext, call_context, confirm
from widgets.figures import FieldGrid
from widgets.formatting import STATUS_ACCENT, money, price, quantity, ratio
from widgets.records import Field, RecordTableModel, error_text, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.live import LiveMonitor
    from services.store import Store

EDITABLE = {"qty", "order_type", "limit_price"}
FIGURES = ("Status", "Equity", "IM", "MM", "IM shortfall", "Outstanding orders release", "IM after orders",
           "Shortfall after orders")
STATUS_INDEX = {"safe": 0, "warning": 1, "call": 2, "force": 3}
_EDIT = int(Qt.ItemDataRole.EditRole)


def open_liquidation(widget: QWidget, account_index: int) -> Any:
    """Open the Liquidate dialog for an engine account index from any dock of the main window."""
    window = widget.window()
    dock = getattr(window, "catalogue", {}).get("liquidation_orders")
    if dock is None:
        return None
    return dock.liquidate(account_index)


def _confirm(store: Store, user: User, acct: LiquidationAccount, lines: list[OrderLine], reason: str,
             allow_partial: bool) -> list[int]:
    return confirm(store, user, acct, lines, reason, allow_partial=allow_partial)


class ProposalModel(RecordTableModel):
    """The proposal's lines; Sell qty, Type and Limit price are edited in place (`edited` is emitted)."""

    edited = Signal(int, str, object)

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        f = super().flags(index)
        if index.isValid() and self.fields[index.column()].name in EDITABLE:
            return f | Qt.ItemFlag.ItemIsEditable
        return f

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = int(Qt.ItemDataRole.DisplayRole)
             ) -> Any:
        if role == _EDIT and index.isValid():
            rec = self.record_at(index.row())
            name = self.fields[index.column()].name
            v = None if rec is None else rec.get(name)
            if name == "qty" and isinstance(v, float):
                return quantity(v).replace(",", "")
            return "" if v is None else str(v)
        return super().data(index, role)

    def setData(self, index: QModelIndex | QPersistentModelIndex, value: Any, role: int = _EDIT) -> bool:
        if role != _EDIT or not index.isValid():
            return False
        name = self.fields[index.column()].name
        if name not in EDITABLE:
            return False
        self.edited.emit(self.key_at(index.row()), name, value)
        return True


class OrderTypeDelegate(QStyledItemDelegate):
    """A market / limit choice for the Type column."""

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem,
                     index: QModelIndex | QPersistentModelIndex) -> QWidget:
        box = QComboBox(parent)
        box.addItems(list(ORDER_TYPES))
        return box

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, QComboBox)
        editor.setCurrentText(str(index.data(Qt.ItemDataRole.EditRole) or "market"))

    def setModelData(self, editor: QWidget, model: Any, index: QModelIndex | QPersistentModelIndex) -> None:
        assert isinstance(editor, QComboBox)
        model.setData(index, editor.currentText(), Qt.ItemDataRole.EditRole)


def _fields() -> list[Field]:
    return [
        Field("Code", "code"),
        Field("Held", "holding", "number", fmt=quantity),
        Field("In outstanding orders", "reserved", "number", fmt=quantity,
              tooltip="shares already in liquidation orders confirmed or sent today"),
        Field("Lot", "lot", "number", fmt=quantity),
        Field("Sell qty", "qty", "number", fmt=quantity, tooltip="whole lots, or the rest of the holding (edit)"),
        Field("Type", "order_type", tooltip="market or limit (edit)"),
        Field("Limit price", "limit_price", "number", fmt=price, tooltip="for limit orders (edit)"),
        Field("Price", "price", "number", fmt=price),
        Field("Ccy", "currency"),
        Field("Haircut", "haircut", "number", fmt=ratio, tooltip="FRR haircut: the largest is sold first"),
        Field("IM ratio", "im_ratio", "number", fmt=ratio),
        Field("Proceeds (HKD)", "proceeds", "number"),
        Field("IM released", "im_release", "number"),
    ]


class LiquidationDialog(QDialog):
    """Non-modal: propose, edit, confirm the liquidation of one account."""

    loaded = Signal()
    confirmed = Signal(object)  # list of order ids
    failed = Signal(str)

    def __init__(self, store: Store, user: User, tasks: TaskRunner, monitor: LiveMonitor, account_index: int,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store, self.user, self.tasks, self.monitor = store, user, tasks, monitor
        self.account_index = int(account_index)
        self.acct: LiquidationAccount | None = None
        self.context: CallContext | None = None
        self.effect: Effect | None = None
        self.lines: dict[int, OrderLine] = {}
        self._next_key = 0
        self._task: Any = None
        self.setWindowTitle("Liquidate")
        self.resize(1080, 560)
        self._build_ui()
        self._load()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        self.title = QLabel("reading the account…")
        self.title.setProperty("role", "figure")
        lay.addWidget(self.title)
        self.call_label = QLabel("")
        self.call_label.setProperty("role", "caption")
        lay.addWidget(self.call_label)
        self.figures = FieldGrid(FIGURES, columns=4)
        lay.addWidget(self.figures)
        self.model = ProposalModel(_fields(), self)
        self.model.edited.connect(self._edited)
        self.view = make_table(self.model)
        self.view.setSortingEnabled(False)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                  | QAbstractItemView.EditTrigger.EditKeyPressed
                                  | QAbstractItemView.EditTrigger.AnyKeyPressed)
        self.view.setItemDelegateForColumn(self.model.column_of("Type"), OrderTypeDelegate(self.view))
        lay.addWidget(self.view, 1)
        edit_bar = QHBoxLayout()
        self.add_combo = QComboBox()
        self.add_combo.setMinimumWidth(140)
        self.add_combo.setToolTip("a holding not in the proposal")
        self.add_button = QPushButton("Add line")
        self.add_button.clicked.connect(lambda: self.add_line(self.add_combo.currentText()))
        self.remove_button = QPushButton("Remove line")
        self.remove_button.clicked.connect(self.remove_selected)
        self.reset_button = QPushButton("Reset to proposal")
        self.reset_button.clicked.connect(self.reset_proposal)
        for w in (self.add_combo, self.add_button, self.remove_button, self.reset_button):
            edit_bar.addWidget(w)
        edit_bar.addStretch(1)
        lay.addLayout(edit_bar)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        lay.addWidget(self.message)
        self.partial = QCheckBox("Confirm a partial liquidation")
        self.partial.setVisible(False)
        self.partial.toggled.connect(lambda _on: self._update_confirm())
        lay.addWidget(self.partial)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Reason"))
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why the account is liquidated (kept with the orders and in the audit trail)")
        self.reason.textChanged.connect(lambda _t: self._update_confirm())
        bottom.addWidget(self.reason, 1)
        self.confirm_note = QLabel("")
        self.confirm_note.setProperty("role", "caption")
        self.confirm_note.setWordWrap(True)
        self.confirm_note.setAlignment(Qt.AlignmentFlag.AlignRight)
        lay.addWidget(self.confirm_note)
        self.confirm_button = QPushButton("Confirm orders")
        self.confirm_button.setDefault(True)
        self.confirm_button.setEnabled(False)
        self.confirm_button.clicked.connect(self.confirm)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        bottom.addWidget(self.confirm_button)
        bottom.addWidget(close)
        lay.addLayout(bottom)

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        with self.monitor.lock:
            b = self.monitor.engine.book
            code = b.acct_codes[self.account_index] if 0 <= self.account_index < b.n_acct else ""
        if not code:
            self._fail("the account is no longer in the book")
            return
        self._task = self.tasks.run(call_context, self.store, code, on_done=self._context_loaded,
                                    on_error=lambda e: self._fail(error_text(e)), name="liquidation context")

    def _context_loaded(self, ctx: CallContext) -> None:
        self._task = None
        self.context = ctx
        with self.monitor.lock:
            b = self.monitor.engine.book
            a = b.acct_index.get(ctx.account, -1)
            if a < 0:
                self._fail("the account is no longer in the book")
                return
            self.account_index = a
            self.acct = account_for_liquidation(self.monitor.engine, a, ctx.reserved)
        acct = self.acct
        self.setWindowTitle(f"Liquidate {acct.account}")
        self.title.setText(f"{acct.account}  ·  {acct.client_name}")
        if ctx.call_id is not None:
            self.call_label.setText(f"Margin call #{ctx.call_id} · deadline {ctx.deadline}")
        else:
            self.call_label.setText("No open margin call: the orders are stored without one")
        if ctx.outstanding:
            self.call_label.setText(self.call_label.text() + f" · {len(ctx.outstanding)} outstanding liquidation "
                                    "orders today (their shares are reserved)")
        self.reset_proposal()
        self.loaded.emit()

    def _fail(self, text: str) -> None:
        set_tone(self.message, text, "error")
        self.confirm_button.setEnabled(False)
        self.confirm_note.setText(text)
        self.failed.emit(text)

    # ------------------------------------------------------------------ editing
    def reset_proposal(self) -> None:
        if self.acct is None:
            return
        self.lines = {}
        self._next_key = 0
        for line in propose(self.acct):
            self._put(line)
        self._show(refit=True)

    def _put(self, line: OrderLine) -> None:
        self.lines[self._next_key] = line
        self._next_key += 1

    def add_line(self, code: str) -> None:
        if self.acct is None or not code or code not in self.acct.row:
            return
        i = self.acct.row[code]
        lot = float(self.acct.lot[i])
        avail = float(self.acct.available[i])
        self._put(OrderLine(code, min(lot, avail) if avail > 0 else lot))
        self._show()

    def remove_selected(self) -> None:
        idx = self.view.currentIndex()
        if idx.isValid():
            self.lines.pop(self.model.key_at(idx.row()), None)
            self._show()

    def set_qty(self, key: int, text: str) -> None:
        """As if typed into the Sell qty cell (tests and the editor)."""
        self._edited(key, "qty", text)

    def _edited(self, key: int, name: str, value: Any) -> None:
        line = self.lines.get(key)
        if line is None:
            return
        text = str(value).strip().replace(",", "")
        if name == "qty":
            try:
                q = float(text)
            except ValueError:
                q = math.nan
            self.lines[key] = OrderLine(line.code, q, line.order_type, line.limit_price)
        elif name == "order_type":
            self.lines[key] = OrderLine(line.code, line.qty, text.lower(), line.limit_price)
        elif name == "limit_price":
            try:
                lp: float | None = float(text) if text else None
            except ValueError:
                lp = math.nan
            self.lines[key] = OrderLine(line.code, line.qty, line.order_type, lp)
        self._show()

    def _records(self) -> list[dict[str, Any]]:
        acct = self.acct
        assert acct is not None and self.effect is not None
        out = []
        for n, (key, line) in enumerate(self.lines.items()):
            i = acct.row.get(line.code)
            if i is None:
                continue
            q = line.qty
            out.append({"id": key, "code": line.code, "holding": float(acct.holding[i]),
                        "reserved": float(acct.reserved[i]), "lot": float(acct.lot[i]), "qty": q,
                        "order_type": line.order_type, "limit_price": line.limit_price,
                        "price": float(acct.price[i]), "currency": acct.currency[i], "haircut": float(acct.haircut[i]),
                        "im_ratio": float(acct.im_ratio[i]),
                        "proceeds": q * float(acct.pxb[i]) if math.isfinite(q) else None,
                        "im_release": float(self.effect.line_release[n])})
        return out

    def _show(self, refit: bool = False) -> None:
        acct = self.acct
        if acct is None:
            return
        self.effect = evaluate(acct, list(self.lines.values()))
        eff = self.effect
        self.model.set_records(self._records())
        if refit:
            fit_columns(self.view, 160)
        colour = STATUS_ACCENT.get(STATUS_INDEX.get(acct.status, 0))
        self.figures.set("Status", acct.status.upper(), colour)
        self.figures.set("Equity", money(acct.equity))
        self.figures.set("IM", money(acct.im))
        self.figures.set("MM", money(acct.mm))
        self.figures.set("IM shortfall", money(max(0.0, acct.deficit)), "#f85149" if acct.deficit > 0 else None)
        self.figures.set("Outstanding orders release", money(acct.reserved_release))
        self.figures.set("IM after orders", money(eff.im_after))
        self.figures.set("Shortfall after orders", money(eff.shortfall_after),
                         "#3fb950" if eff.restores else "#f85149")
        used = {line.code for line in self.lines.values()}
        self.add_combo.clear()
        self.add_combo.addItems([c for c in acct.codes if c not in used and acct.available[acct.row[c]] > 0])
        self.add_button.setEnabled(self.add_combo.count() > 0)
        if eff.problems:
            set_tone(self.message, eff.problems[0] + (f" (and {len(eff.problems) - 1} more)"
                                                      if len(eff.problems) > 1 else ""), "error")
        elif not self.lines:
            set_tone(self.message, "The account meets its initial margin (after outstanding orders): nothing to "
                     "sell." if acct.open_deficit < 0.005 else "Nothing left to sell: the shortfall needs cash.",
                     "info")
        elif not eff.restores:
            set_tone(self.message, eff.message(), "warn")
        else:
            set_tone(self.message, f"These orders restore IM: IM after {money(eff.im_after)} ≤ equity "
                     f"{money(eff.equity)} HKD.", "ok")
        partial_needed = eff.valid and bool(self.lines) and not eff.restores
        self.partial.setVisible(partial_needed)
        self.partial.setText(f"Confirm a partial liquidation (leaves {money(eff.shortfall_after)} HKD short)")
        if not partial_needed:
            self.partial.setChecked(False)
        self._update_confirm()

    def blocked_reason(self) -> str:
        """Why Confirm is disabled ('' when it is enabled)."""
        eff = self.effect
        if self.acct is None or eff is None:
            return "reading the account…"
        if self._task is not None:
            return "storing…"
        if not self.lines:
            return "no orders"
        if eff.problems:
            return eff.problems[0]
        if not eff.restores and not self.partial.isChecked():
            return "the orders do not restore IM: accept a partial liquidation"
        if not self.reason.text().strip():
            return "enter a reason"
        return ""

    def _update_confirm(self) -> None:
        why = self.blocked_reason()
        self.confirm_button.setEnabled(not why)
        self.confirm_button.setToolTip(why)
        shown = bool(why) and why in self.message.text() and self.message.isVisibleTo(self)
        self.confirm_note.setText("" if shown or not why else f"Confirm is disabled: {why}")

    # ------------------------------------------------------------------ confirm
    def confirm(self) -> None:
        if self.blocked_reason() or self.acct is None:
            return
        self._task = self.tasks.run(_confirm, self.store, self.user, self.acct, list(self.lines.values()),
                                    self.reason.text(), self.partial.isChecked(),
                                    on_done=self._confirmed, on_error=self._confirm_failed, name="confirm liquidation")
        self._update_confirm()

    def _confirmed(self, ids: list[int]) -> None:
        self._task = None
        set_tone(self.message, f"{len(ids)} liquidation orders confirmed.", "ok")
        self.confirmed.emit(ids)
        self.close()

    def _confirm_failed(self, e: BaseException) -> None:
        self._task = None
        set_tone(self.message, error_text(e) if not isinstance(e, ValueError) else str(e), "error")
        self._update_confirm()
        self.failed.emit(str(e))

    def closeEvent(self, event: Any) -> None:
        if self._task is not None and not self._task.done:
            self._task.cancel()
        super().closeEvent(event)
