"""The New trade-error ticket form: the erroneous and the correct trade side by side, the estimated P&L
and client impact, with the §7 severity (and the rule that decided it) and the review roles it will
need shown as you type; the message names the field that is wrong. Saving runs on the task runner.
"""

from __future__ import annotations

import math
from datetime import date
from typing import TYPE_CHECKING

from PySide6.QtCore import QDate, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from services import trade_errors as te
from widgets.records import WARN_COLOUR, error_text, set_tone

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store

LEVEL_COLOURS = {"L1": "#8b949e", "L2": WARN_COLOUR, "L3": "#f85149"}


def number(text: str, name: str, blank: float | None = None) -> float:
    t = text.strip().replace(",", "")
    if not t:
        if blank is not None:
            return blank
        raise te.TradeErrorError(name, "enter a number")
    try:
        v = float(t)
    except ValueError:
        raise te.TradeErrorError(name, f"{text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise te.TradeErrorError(name, f"{text.strip()!r} is not a number")
    return v


class LegBox(QGroupBox):
    """Account, code, side, quantity and price of one trade."""

    def __init__(self, title: str, prefix: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.prefix = prefix
        form = QFormLayout(self)
        self.account, self.code, self.qty, self.price = QLineEdit(), QLineEdit(), QLineEdit(), QLineEdit()
        self.account.setPlaceholderText("M00001")
        self.code.setPlaceholderText("700.HK")
        self.side = QComboBox()
        self.side.addItems(["buy", "sell"])
        form.addRow("Account", self.account)
        form.addRow("Code", self.code)
        form.addRow("Side", self.side)
        form.addRow("Quantity", self.qty)
        form.addRow("Price", self.price)

    def leg(self) -> te.TradeLeg:
        return te.TradeLeg(self.account.text().strip(), self.code.text().strip().upper(), self.side.currentText(),
                           number(self.qty.text(), f"{self.prefix} quantity", 0.0),
                           number(self.price.text(), f"{self.prefix} price", 0.0))

    def empty(self) -> bool:
        return not any(w.text().strip() for w in (self.account, self.code, self.qty, self.price))

    def clear(self) -> None:
        for w in (self.account, self.code, self.qty, self.price):
            w.clear()


class TradeErrorForm(QWidget):
    created = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.may_report = False
        self.busy = False
        lay = QVBoxLayout(self)
        top = QFormLayout()
        row = QHBoxLayout()
        self.error_type = QComboBox()
        for k, v in te.ERROR_TYPES.items():
            self.error_type.addItem(v, k)
        self.desk = QComboBox()
        self.desk.setEditable(True)
        self.trade_date = QDateEdit(QDate.currentDate())
        self.trade_date.setDisplayFormat("yyyy-MM-dd")
        self.trade_date.setCalendarPopup(True)
        for label, w in (("Type", self.error_type), ("Desk", self.desk), ("Trade date", self.trade_date)):
            row.addWidget(QLabel(label))
            row.addWidget(w, 1)
        top.addRow(row)
        lay.addLayout(top)
        legs = QHBoxLayout()
        self.erroneous = LegBox("Erroneous trade (as done)", "Erroneous")
        self.correct = LegBox("Correct trade (as it should have been; empty for a duplicate)", "Correct")
        legs.addWidget(self.erroneous)
        legs.addWidget(self.correct)
        lay.addLayout(legs)
        impact = QFormLayout()
        self.pnl = QLineEdit()
        self.pnl.setPlaceholderText("negative for a loss, e.g. -7,500")
        self.client_impact = QCheckBox("Client impacted (to be notified)")
        self.clients = QSpinBox()
        self.clients.setRange(0, 10_000)
        self.large = QCheckBox("Large position")
        self.large.setToolTip(f"a wrong side on a trade of HKD {te.LARGE_POSITION_HKD:,.0f} or more counts as large "
                              "anyway")
        self.description = QLineEdit()
        self.description.setPlaceholderText("what happened")
        flags = QHBoxLayout()
        flags.addWidget(self.client_impact)
        flags.addWidget(QLabel("Clients affected"))
        flags.addWidget(self.clients)
        flags.addWidget(self.large)
        flags.addStretch(1)
        impact.addRow("Estimated P&L (HKD)", self.pnl)
        impact.addRow("", flags)
        impact.addRow("Description", self.description)
        lay.addLayout(impact)
        self.severity_label = QLabel()
        self.severity_label.setWordWrap(True)
        lay.addWidget(self.severity_label)
        bottom = QHBoxLayout()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        bottom.addWidget(self.message, 1)
        self.save_button = QPushButton("Create ticket")
        self.save_button.clicked.connect(self.save)
        bottom.addWidget(self.save_button)
        lay.addLayout(bottom)
        lay.addStretch(1)
        for line in (self.pnl, self.description, self.erroneous.account, self.erroneous.code, self.erroneous.qty,
                     self.erroneous.price, self.correct.account, self.correct.code, self.correct.qty,
                     self.correct.price):
            line.textChanged.connect(self._edited)
        for c in (self.error_type, self.erroneous.side, self.correct.side):
            c.currentIndexChanged.connect(self._edited)
        self.desk.editTextChanged.connect(self._edited)
        self.trade_date.dateChanged.connect(self._edited)
        self.clients.valueChanged.connect(self._edited)
        for b in (self.client_impact, self.large):
            b.toggled.connect(self._edited)
        self.hints = False  # field messages once the user has edited something (not on an empty form)
        self._update()

    def _edited(self) -> None:
        self.hints = True
        self._update()

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def set_reference(self, desks: list[str], may_report: bool) -> None:
        self.may_report = may_report
        cur = self.desk.currentText()
        self.desk.blockSignals(True)
        self.desk.clear()
        self.desk.addItems(desks)
        self.desk.setCurrentText(cur or (desks[0] if desks else ""))
        self.desk.blockSignals(False)
        self._update()

    def read(self) -> te.TradeErrorInput:
        d = self.trade_date.date()
        return te.TradeErrorInput(
            error_type=str(self.error_type.currentData()), desk=self.desk.currentText(),
            trade_date=date(d.year(), d.month(), d.day()), erroneous=self.erroneous.leg(),
            correct=None if self.correct.empty() else self.correct.leg(),
            est_pnl=number(self.pnl.text(), "Estimated P&L"), client_impact=self.client_impact.isChecked(),
            clients_affected=self.clients.value(), large_position=self.large.isChecked(),
            description=self.description.text())

    def check(self) -> tuple[te.TradeErrorInput | None, str]:
        try:
            inp = self.read()
            te.validate(inp)
        except te.TradeErrorError as e:
            return None, str(e)
        return inp, ""

    def _update(self) -> None:
        inp, msg = self.check()
        try:
            partial = self.read()
            level, why = partial.computed()
            need = ", ".join(te.REVIEW_LABELS[r] for r in te.required_reviews(level))
            self.severity_label.setText(f"Severity <b style='color:{LEVEL_COLOURS[level]}'>{level}</b> — {why}. "
                                        f"Review by: {need}.")
        except te.TradeErrorError:
            self.severity_label.setText("Severity: enter the estimated P&L")
        if msg and not self.busy and self.hints:
            set_tone(self.message, msg, "warn")
        elif not self.busy and self.message.property("tone") == "warn":
            set_tone(self.message, "", "ok")
        self.save_button.setEnabled(inp is not None and self.may_report and not self.busy and self.store is not None)
        self.save_button.setToolTip("" if self.may_report else "your role may not report trade errors")

    def save(self) -> None:
        inp, msg = self.check()
        if inp is None:
            set_tone(self.message, msg, "error")
            return
        if self.tasks is None or self.store is None or self.user is None or self.busy:
            return
        self.busy = True
        self._update()

        def done(new_id: int) -> None:
            self.busy = False
            for box in (self.erroneous, self.correct):
                box.clear()
            self.pnl.clear()
            self.description.clear()
            self.client_impact.setChecked(False)
            self.clients.setValue(0)
            self.large.setChecked(False)
            self.hints = False
            self._update()
            set_tone(self.message, f"Trade error #{new_id} created", "ok")
            self.created.emit(int(new_id))

        def failed(e: BaseException) -> None:
            self.busy = False
            set_tone(self.message, str(e) if isinstance(e, te.TradeErrorError) else error_text(e), "error")
            self._update()

        self.tasks.run(te.create_ticket, self.store, self.user, inp, on_done=done, on_error=failed,
                       name="create trade error")
