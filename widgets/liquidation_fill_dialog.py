"""Record fill… on the Liquidation orders dock: what dealing sold of one order, checked as you type.

The dialog only collects and checks the quantity and price (services/liquidation_fills.py
`fill_problem`, the same rules the service applies in its transaction); the dock runs the fill on the
task runner and shows the outcome (a call closed as liquidated, or met).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from services.liquidation_fills import fill_problem
from widgets.formatting import price as fmt_price
from widgets.formatting import quantity
from widgets.records import set_tone


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").strip())
    except ValueError:
        return None


class FillDialog(QDialog):
    """Filled qty and price for one confirmed, sent or partly filled liquidation order."""

    submitted = Signal(int, float, float)  # order id, filled qty, price

    def __init__(self, order: dict[str, Any], holding: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.order, self.holding = order, float(holding)
        left = float(order["qty"]) - float(order.get("filled_qty") or 0.0)
        self.setWindowTitle(f"Record fill of order #{order['id']}")
        lay = QVBoxLayout(self)
        head = QLabel(f"<b>{order['account']}</b> · sell {quantity(order['qty'])} <b>{order['code']}</b> · "
                      f"{order['state']} · {quantity(left)} left · lots of {int(order.get('lot_size') or 1):,} · "
                      f"holding {quantity(self.holding)} · ref price {fmt_price(order['ref_price'])} "
                      f"{order.get('currency') or ''}")
        head.setWordWrap(True)
        lay.addWidget(head)
        form = QFormLayout()
        self.qty = QLineEdit(f"{min(left, self.holding):.0f}")
        self.price = QLineEdit(f"{float(order.get('limit_price') or order['ref_price']):g}")
        self.qty.setPlaceholderText("shares sold")
        self.price.setPlaceholderText(f"average price ({order.get('currency') or 'security currency'})")
        form.addRow("Filled qty", self.qty)
        form.addRow("Price", self.price)
        lay.addLayout(form)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        lay.addWidget(self.message)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Record fill")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self.qty.textChanged.connect(lambda _t: self.validate())
        self.price.textChanged.connect(lambda _t: self.validate())
        self.resize(520, 200)
        self.validate()

    def problem(self) -> str:
        q, p = _number(self.qty.text()), _number(self.price.text())
        if q is None:
            return "Filled qty: a number of shares"
        if p is None:
            return "Price: a number"
        return fill_problem(self.order, q, p, self.holding)

    def validate(self) -> bool:
        msg = self.problem()
        self.ok.setEnabled(not msg)
        set_tone(self.message, msg, "warn")
        return not msg

    def submit(self) -> None:
        if not self.validate():
            return
        q, p = _number(self.qty.text()), _number(self.price.text())
        assert q is not None and p is not None
        self.submitted.emit(int(self.order["id"]), q, p)
        self.accept()
