"""The What-if order dialog (issue 5, "The desk's view"): a trader or risk officer enters an order and
sees, before anything is sent, the pre-trade decision with every reason and the account's margin
after the trade (position, cash, equity, IM, MM, buying power, status) next to the margin now.

"Check" runs `pretrade_view.what_if_order` on the task runner: a pre-trade engine over the live margin
engine (read under the monitor's lock) with the flags, limits and today's totals from the store;
`check` (never `record`, so the duplicate window and the daily counts are untouched) and `what_if`.
Nothing is stored or sent. A bad field is named inline (the order-check service's own messages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services.auth import User
from services.pretrade_orders import OrderError
from services.pretrade_view import FORM_LABELS, WhatIfResult, friendly, number_text, order_from_form
from widgets.formatting import CENTER, RIGHT, money, quantity
from widgets.pretrade_details import ACTION_TEXT, DECISION_ACCENT
from widgets.records import Field, RecordTableModel, error_text, set_tone
from widgets.tables import make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.store import Store

FIGURES = (("position", "Position", quantity), ("cash", "Cash (HKD)", money), ("equity", "Equity", money),
           ("im", "Initial margin (IM)", money), ("mm", "Maintenance margin (MM)", money),
           ("buying_power", "Buying power", money), ("call_amount", "Call amount", money))
BADGE_BG = {"accept": "#238636", "prompt": "#1f62be", "approval": "#b0800a", "reject": "#b21e26"}
BAD_FIELD = "border: 1px solid #f85149;"


def _key_order(view: Any) -> None:
    """Rows in their given order (the engine's reasons, the figures), not sortable."""
    view.setSortingEnabled(False)
    view.horizontalHeader().setSortIndicatorShown(False)
    view.model().sort(-1)


def figure_rows(view: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Before / after / change rows of the margin view (pure)."""
    before, after = view["before"], view["after"]
    rows = []
    for i, (name, label, fmt) in enumerate(FIGURES):
        b, a = float(before.get(name, 0.0)), float(after.get(name, 0.0))
        d = a - b
        rows.append({"key": i, "figure": label, "before": fmt(b), "after": fmt(a),
                     "change": "" if abs(d) < 0.005 else ("+" if d > 0 else "−") + fmt(abs(d))})
    rows.append({"key": len(FIGURES), "figure": "Status", "before": before["status"], "after": after["status"],
                 "change": "" if before["status"] == after["status"] else f"{before['status']} → {after['status']}"})
    return rows


class WhatIfDialog(QDialog):
    """Enter an order; Check shows the decision and the margin before and after. Non-modal."""

    checked = Signal(object)  # the WhatIfResult shown
    refused = Signal(str)  # the inline message of a bad field

    def __init__(self, store: Store, user: User, tasks: TaskRunner, monitor: Any = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store, self.user, self.tasks, self.monitor = store, user, tasks, monitor
        self.last_result: WhatIfResult | None = None
        self._task: Task | None = None
        self.setWindowTitle("What-if order — nothing is stored or sent")
        self.resize(760, 640)
        lay = QVBoxLayout(self)
        lay.setSpacing(8)
        form = QFrame()
        form.setProperty("role", "card")
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        self.account_edit = QLineEdit()
        self.account_edit.setPlaceholderText("account code")
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText("e.g. 700.HK")
        self.side_combo = QComboBox()
        self.side_combo.addItems(["buy", "sell"])
        self.qty_edit = QLineEdit()
        self.qty_edit.setPlaceholderText("shares")
        self.price_edit = QLineEdit()
        self.price_edit.setPlaceholderText("blank = market (last price)")
        self.type_combo = QComboBox()
        self.type_combo.addItems(["limit", "market"])
        self.type_combo.currentTextChanged.connect(self._type_changed)
        self.fields: dict[str, QWidget] = {"account": self.account_edit, "code": self.code_edit,
                                           "side": self.side_combo, "qty": self.qty_edit, "price": self.price_edit,
                                           "order_type": self.type_combo}
        for i, (name, w) in enumerate(self.fields.items()):
            lab = QLabel(FORM_LABELS[name])
            lab.setBuddy(w)
            grid.addWidget(lab, i // 3 * 2, i % 3)
            grid.addWidget(w, i // 3 * 2 + 1, i % 3)
        for w in (self.account_edit, self.code_edit, self.qty_edit, self.price_edit):
            w.returnPressed.connect(self.check)
            w.textChanged.connect(self._edited)
        for combo in (self.side_combo, self.type_combo):
            combo.currentIndexChanged.connect(self._edited)
        self.check_button = QPushButton("&Check")
        self.check_button.setDefault(True)
        self.check_button.setMinimumWidth(110)
        self.check_button.clicked.connect(self.check)
        grid.addWidget(self.check_button, 3, 3)
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 2)
        lay.addWidget(form)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        lay.addWidget(self.message)

        head = QHBoxLayout()
        self.badge = QLabel("")
        self.badge.setAlignment(CENTER)
        self.badge.setMinimumWidth(110)
        self.badge.hide()
        head.addWidget(self.badge)
        self.summary = QLabel("Enter an order and press Check: the decision and the account's margin after the "
                              "trade show here. Nothing is stored or sent.")
        self.summary.setWordWrap(True)
        self.summary.setProperty("role", "caption")
        head.addWidget(self.summary, 1)
        lay.addLayout(head)
        self.reasons_model = RecordTableModel([
            Field("Rule", "rule"),
            Field("Action", "action", align=CENTER, foreground=lambda v: ACTION_TEXT.get(str(v))),
            Field("Threshold", "threshold", align=RIGHT), Field("Observed", "observed", align=RIGHT),
            Field("Message", "message")], self, key="key")
        self.reasons_view = make_table(self.reasons_model)
        self.reasons_view.setObjectName("what_if_reasons")
        self.reasons_view.setMinimumHeight(110)
        _key_order(self.reasons_view)
        lay.addWidget(self.reasons_view, 1)
        self.margin_caption = QLabel("")
        self.margin_caption.setProperty("role", "caption")
        lay.addWidget(self.margin_caption)
        self.figures_model = RecordTableModel([
            Field("", "figure"), Field("Now", "before", align=RIGHT), Field("After the trade", "after", align=RIGHT),
            Field("Change", "change", align=RIGHT)], self, key="key")
        self.figures_view = make_table(self.figures_model)
        self.figures_view.setObjectName("what_if_margin")
        _key_order(self.figures_view)
        self.figures_view.setMinimumHeight(8 * 22 + 30)
        lay.addWidget(self.figures_view, 1)
        for c, width in enumerate((190, 160, 160)):
            self.figures_view.setColumnWidth(c, width)

    # ------------------------------------------------------------------ form
    def set_order(self, account: str = "", code: str = "", side: str = "buy", qty: str = "", price: str = "",
                  order_type: str = "limit") -> None:
        self.account_edit.setText(account)
        self.code_edit.setText(code)
        self.side_combo.setCurrentText(side)
        self.qty_edit.setText(qty)
        self.price_edit.setText(price)
        self.type_combo.setCurrentText(order_type)

    def _type_changed(self, order_type: str) -> None:
        market = order_type == "market"
        self.price_edit.setEnabled(not market)
        self.price_edit.setPlaceholderText("market (last price)" if market else "blank = market (last price)")

    def _clear_marks(self) -> None:
        for w in self.fields.values():
            w.setStyleSheet("")
        if self.message.property("tone") == "error":
            self.message.hide()

    def _edited(self) -> None:
        """The form changed: the shown result no longer describes it."""
        self._clear_marks()
        if self.last_result is not None:
            self.last_result = None
            self.badge.hide()
            self.reasons_model.set_records([])
            self.figures_model.set_records([])
            self.margin_caption.setText("")
            self.summary.setStyleSheet("")
            self.summary.setText("The order changed: press Check to see its decision and margin.")

    def _refuse(self, field: str, text: str) -> None:
        w = self.fields.get(field)
        if w is not None:
            w.setStyleSheet(BAD_FIELD)
            w.setFocus()
        set_tone(self.message, text, "error")
        self.refused.emit(text)

    def check(self) -> None:
        """Check the form's order in the task runner (a bad field is refused inline at once)."""
        if self._task is not None:
            return
        self._clear_marks()
        market = self.type_combo.currentText() == "market"
        try:
            order = order_from_form(self.account_edit.text(), self.code_edit.text(), self.side_combo.currentText(),
                                    self.qty_edit.text(), "" if market else self.price_edit.text(),
                                    self.type_combo.currentText(), self.user.login)
        except OrderError as e:
            self._edited()  # no stale result next to a refused order
            self._refuse(*friendly(e))
            return
        from services.pretrade_view import what_if_order

        engine = getattr(self.monitor, "engine", None)
        lock = getattr(self.monitor, "lock", None)
        set_tone(self.message, "Checking…", "info")
        self.check_button.setEnabled(False)
        self._task = self.tasks.run(what_if_order, self.store, order, engine, lock, on_done=self._shown,
                                    on_error=self._failed, name="what-if order")

    def _failed(self, e: BaseException) -> None:
        self._task = None
        self.check_button.setEnabled(True)
        set_tone(self.message, error_text(e), "error")

    def _shown(self, res: WhatIfResult) -> None:
        self._task = None
        self.check_button.setEnabled(True)
        self.last_result = res
        d = res.decision
        self.badge.setText(d.decision.upper())
        self.badge.setStyleSheet(f"background: {BADGE_BG[d.decision]}; color: white; font-weight: 700; "
                                 "font-size: 15px; border-radius: 4px; padding: 6px 12px;")
        self.badge.show()
        o = d.order
        how = "market order at the last price" if o.order_type == "market" else "limit order"
        self.summary.setProperty("role", "")
        self.summary.setText(
            f"{o.side.capitalize()} {o.qty:,.0f} {o.code} @ {d.price:,.3f} ({how}) for {o.account} · notional "
            f"{d.notional:,.0f} HKD · " + (f"{len(d.reasons)} reason{'s' if len(d.reasons) != 1 else ''}"
                                           if d.reasons else "no check fired"))
        self.summary.setStyleSheet(f"color: {DECISION_ACCENT[d.decision]}")
        self.reasons_model.set_records([
            {"key": i, "rule": r.rule, "action": r.action, "threshold": number_text(r.threshold),
             "observed": number_text(r.observed), "message": r.message} for i, r in enumerate(d.reasons)])
        self.reasons_view.resizeColumnsToContents()
        if res.margin is None:
            self.figures_model.set_records([])
            self.margin_caption.setText(f"No margin view: {res.problem}")
            field = "account" if "account" in res.problem else "code"
            self._refuse(field, f"{FORM_LABELS[field]}: {res.problem}")
        else:
            self.figures_model.set_records(figure_rows(res.margin))
            self.margin_caption.setText(f"Margin of {o.account} now and if the order fills at {d.price:,.3f} "
                                        "(nothing is stored or sent)")
            set_tone(self.message, "", "info")
        self.checked.emit(res)

    def figures(self) -> dict[str, tuple[str, str]]:
        """Figure → (now, after) as shown."""
        out = {}
        for r in range(self.figures_model.rowCount()):
            rec = self.figures_model.record_at(r)
            if rec is not None:
                out[rec["figure"]] = (rec["before"], rec["after"])
        return out

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        super().closeEvent(event)


__all__ = ["WhatIfDialog", "figure_rows"]
