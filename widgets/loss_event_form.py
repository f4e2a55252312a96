"""The New loss event form: checked as you type (the message names the field), with the net loss, the
HKD figures, the reporting route with its due time and the regulatory duty shown before saving.

The route and duty come from the same pure functions the service stores them with
(`services.loss_events.assess`), over the matrix and FX rates of the dock's last read, so what the
form shows is what gets recorded unless the matrix changes in between (the service re-reads it in
the saving transaction). Saving runs on the task runner; ``recorded(id)`` follows.

An optional incident picker (open incidents and those closed in the last 90 days) links the loss to
the incident it came from; the register and the incident's detail then show the link.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, QDateTime, Qt, QTime, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDateTimeEdit,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services import incidents as inc
from services import loss_events as le
from services.calendar import HK_TZ
from widgets.records import WARN_COLOUR, error_text, hk_time, set_tone

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store


def parse_amount(text: str, name: str) -> float:
    t = text.strip().replace(",", "")
    if not t:
        return 0.0
    try:
        v = float(t)
    except ValueError:
        raise le.LossEventError(name, f"{text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise le.LossEventError(name, f"{text.strip()!r} is not a number")
    return v


def _pydate(d: QDate) -> Any:
    from datetime import date

    return date(d.year(), d.month(), d.day())


class LossEventForm(QWidget):
    recorded = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.rules: list[dict[str, Any]] = []
        self.fx: dict[str, float] = {"HKD": 1.0}
        self.may_record = False
        self.busy = False
        outer = QHBoxLayout(self)
        left = QFormLayout()
        left.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.event_type = QComboBox()
        self.event_type.addItems(le.EVENT_TYPES)
        self.event_type.setCurrentText("Execution, Delivery & Process Management")
        self.business_line = QComboBox()
        self.business_line.addItems(le.BUSINESS_LINES)
        self.business_line.setCurrentText("Trading & Sales")
        self.cause = QComboBox()
        for c in le.CAUSES:
            self.cause.addItem(c.capitalize(), c)
        today = QDate.currentDate()
        self.occurred = self._date(today)
        self.discovered = QDateTimeEdit(QDateTime(today, QTime.currentTime()))
        self.discovered.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.discovered.setCalendarPopup(True)
        self.discovered.setToolTip("Hong Kong time; reports are due 24 h after discovery")
        self.accounted_on = QCheckBox("Accounted")
        self.accounted = self._date(today)
        self.resolved_on = QCheckBox("Resolved")
        self.resolved = self._date(today)
        self.gross = QLineEdit()
        self.gross.setPlaceholderText("gross loss, e.g. 25,000")
        self.recoveries = QLineEdit()
        self.recoveries.setPlaceholderText("0")
        self.currency = QComboBox()
        self.currency.addItem("HKD")
        self.near_miss = QCheckBox("Near miss (no loss)")
        self.incident = QComboBox()
        self.incident.setToolTip("the incident the loss came from (open or closed in the last "
                                 f"{inc.LINKABLE_DAYS} days); optional")
        self.incident.addItem("— none —", None)
        self.description = QPlainTextEdit()
        self.description.setPlaceholderText("What happened, how it was found")
        self.description.setMaximumHeight(70)
        left.addRow("Event type", self.event_type)
        left.addRow("Business line", self.business_line)
        left.addRow("Cause", self.cause)
        left.addRow("Occurred", self.occurred)
        left.addRow("Discovered", self.discovered)
        for box, edit in ((self.accounted_on, self.accounted), (self.resolved_on, self.resolved)):
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            left.addRow(box, row)
            edit.setEnabled(False)
            box.toggled.connect(edit.setEnabled)
        money_row = QHBoxLayout()
        money_row.addWidget(self.gross, 2)
        money_row.addWidget(self.currency)
        left.addRow("Gross loss", money_row)
        left.addRow("Recoveries", self.recoveries)
        left.addRow("", self.near_miss)
        left.addRow("Incident", self.incident)
        left.addRow("Description", self.description)
        outer.addLayout(left, 3)
        right = QVBoxLayout()
        grid = QGridLayout()
        self.net_label, self.hkd_label, self.route_label, self.due_label, self.duty_label = (
            QLabel(), QLabel(), QLabel(), QLabel(), QLabel())
        for i, (name, lab) in enumerate((("Net loss", self.net_label), ("In HKD", self.hkd_label),
                                         ("Route", self.route_label), ("Report due", self.due_label),
                                         ("Regulatory duty", self.duty_label))):
            cap = QLabel(name)
            cap.setProperty("role", "caption")
            lab.setWordWrap(True)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(cap, i, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(lab, i, 1)
        grid.setColumnStretch(1, 1)
        right.addLayout(grid)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        right.addWidget(self.message)
        self.save_button = QPushButton("Record loss event")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)
        right.addLayout(buttons)
        right.addStretch(1)
        outer.addLayout(right, 2)
        for combo in (self.event_type, self.business_line, self.cause, self.currency):
            combo.currentIndexChanged.connect(self._edited)
        for line in (self.gross, self.recoveries):
            line.textChanged.connect(self._edited)
        for d in (self.occurred, self.accounted, self.resolved):
            d.dateChanged.connect(self._edited)
        self.discovered.dateTimeChanged.connect(self._edited)
        for box in (self.accounted_on, self.resolved_on, self.near_miss):
            box.toggled.connect(self._edited)
        self.near_miss.toggled.connect(self._near_miss_toggled)
        self.description.textChanged.connect(self._edited)
        self.hints = False  # field messages once the user has edited something (not on an empty form)
        self._update()

    def _edited(self) -> None:
        self.hints = True
        self._update()

    @staticmethod
    def _date(d: QDate) -> QDateEdit:
        e = QDateEdit(d)
        e.setDisplayFormat("yyyy-MM-dd")
        e.setCalendarPopup(True)
        return e

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def set_reference(self, rules: list[dict[str, Any]], fx: dict[str, float], may_record: bool,
                      incidents: list[dict[str, Any]] | None = None) -> None:
        """The matrix and FX rates of the dock's last read (the live route / duty preview uses them) and
        the incidents a loss can be linked to."""
        self.rules, self.fx, self.may_record = rules, fx, may_record
        if incidents is not None:
            self.set_incidents(incidents)
        cur = self.currency.currentText()
        self.currency.blockSignals(True)
        self.currency.clear()
        self.currency.addItems(sorted(fx, key=lambda c: (c != "HKD", c)))
        self.currency.setCurrentText(cur if cur in fx else "HKD")
        self.currency.blockSignals(False)
        self._update()

    def set_incidents(self, incidents: list[dict[str, Any]]) -> None:
        """Fill the picker (keeping the chosen incident when it is still listed)."""
        keep = self.incident.currentData()
        self.incident.blockSignals(True)
        self.incident.clear()
        self.incident.addItem("— none —", None)
        for r in incidents:
            self.incident.addItem(inc.label(r), int(r["id"]))
        i = self.incident.findData(keep) if keep is not None else 0
        self.incident.setCurrentIndex(max(i, 0))
        self.incident.blockSignals(False)

    def _near_miss_toggled(self, on: bool) -> None:
        if on:
            self.gross.setText("0")
            self.recoveries.setText("0")
        self.gross.setEnabled(not on)
        self.recoveries.setEnabled(not on)

    # ------------------------------------------------------------------ reading the form
    def discovered_at(self) -> datetime:
        qdt = self.discovered.dateTime()
        d, t = qdt.date(), qdt.time()
        return datetime(d.year(), d.month(), d.day(), t.hour(), t.minute(), tzinfo=HK_TZ).astimezone(UTC)

    def read(self) -> le.LossEventInput:
        """The form as an input; raises `LossEventError` naming a field that is not even a number."""
        return le.LossEventInput(
            event_type=self.event_type.currentText(), business_line=self.business_line.currentText(),
            cause=str(self.cause.currentData()), occurred_on=_pydate(self.occurred.date()),
            discovered_at=self.discovered_at(), gross_loss=parse_amount(self.gross.text(), "Gross loss"),
            recoveries=parse_amount(self.recoveries.text(), "Recoveries"), currency=self.currency.currentText(),
            near_miss=self.near_miss.isChecked(),
            accounted_on=_pydate(self.accounted.date()) if self.accounted_on.isChecked() else None,
            resolved_on=_pydate(self.resolved.date()) if self.resolved_on.isChecked() else None,
            description=self.description.toPlainText(), incident_id=self.incident.currentData())

    def check(self) -> tuple[le.LossEventInput | None, le.Assessment | None, str]:
        """(input, assessment, '') when it can be recorded, else what is wrong (naming the field);
        the assessment is shown whenever the amounts can be read, even while another field is wrong."""
        try:
            inp = self.read()
        except le.LossEventError as e:
            return None, None, str(e)
        a = le.assess(inp, self.rules, self.fx) if inp.currency in self.fx else None
        try:
            le.validate(inp, self.fx)
        except le.LossEventError as e:
            return None, a, str(e)
        return inp, a, ""

    def _update(self) -> None:
        inp, a, msg = self.check()
        try:
            partial = self.read()
            net = partial.net_loss
            self.net_label.setText(f"{net:,.2f} {partial.currency}  (gross − recoveries)")
        except le.LossEventError:
            self.net_label.setText("—")
        if a is not None:
            self.hkd_label.setText(f"gross {a.gross_hkd:,.2f} · net {a.net_hkd:,.2f} HKD"
                                   + (f"  (1 {self.currency.currentText()} = {a.fx_rate:g} HKD)"
                                      if a.fx_rate != 1 else ""))
            colour = WARN_COLOUR if a.route.level >= 2 else ""
            self.route_label.setText(a.route.text)
            self.route_label.setStyleSheet(f"color: {colour};" if colour else "")
            self.due_label.setText(hk_time(a.route.due_at) + " HKT" if a.route.due_at else "—")
            self.duty_label.setText("\n".join(
                f"{d.duty} (due {hk_time(d.due_at)} HKT)" if d.due_at else d.duty for d in a.duties) or "none")
        else:
            for lab in (self.hkd_label, self.route_label, self.due_label, self.duty_label):
                lab.setText("—")
        if msg and not self.busy and self.hints:
            set_tone(self.message, msg, "warn")
        elif not self.busy and self.message.property("tone") == "warn":
            set_tone(self.message, "", "ok")
        self.save_button.setEnabled(inp is not None and not self.busy and self.may_record and self.store is not None)
        self.save_button.setToolTip("" if self.may_record else "your role may not record loss events")

    # ------------------------------------------------------------------ saving
    def save(self) -> None:
        inp, _a, msg = self.check()
        if inp is None:
            set_tone(self.message, msg, "error")
            return
        if self.tasks is None or self.store is None or self.user is None or self.busy:
            return
        self.busy = True
        self._update()

        def done(new_id: int) -> None:
            self.busy = False
            self.near_miss.setChecked(False)
            self.gross.clear()
            self.recoveries.clear()
            self.description.clear()
            self.incident.setCurrentIndex(0)
            self.hints = False
            self._update()
            set_tone(self.message, f"Loss event #{new_id} recorded — {_a.route.text if _a else ''}", "ok")
            self.recorded.emit(int(new_id))

        def failed(e: BaseException) -> None:
            self.busy = False
            set_tone(self.message, str(e) if isinstance(e, le.LossEventError) else error_text(e), "error")
            self._update()

        self.tasks.run(le.record_loss_event, self.store, self.user, inp, on_done=done, on_error=failed,
                       name="record loss event")
