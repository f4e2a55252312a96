"""The "Currency borrowing" dock (issue 8): reminder rules (changed only through four-eyes change
requests), the clients whose currency debits match them, Send reminder, a manual Exchange…, and the
reminder and exchange history.

The rule form and the exchange form check what is typed as it is typed (the message names the field);
the services check again in the worker. Every store call runs on the task runner.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services import borrowing
from widgets.records import (
    WARN_COLOUR,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    set_tone,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store

RULE_FIELDS = [Field("Currency", "currency", fmt=lambda v: "* (any non-base)" if v == "*" else str(v)),
               Field("Currency threshold", "currency_threshold", "number",
                     tooltip="debit in the currency itself at or above which the rule matches"),
               Field("Base threshold (HKD)", "base_threshold", "number",
                     tooltip="debit's base-currency equivalent at or above which the rule matches"),
               Field("Enabled", "enabled"), Field("Rule", "rule"),
               Field("Pending", "pending", foreground=lambda v: _amber() if v else None)]
MATCH_FIELDS = [Field("Account", "account"), Field("Client", "client"), Field("Name", "name"),
                Field("Currency", "currency"), Field("Balance", "balance", "number"),
                Field("Debit (HKD)", "debit_base", "number"), Field("Rule matched", "rule"),
                Field("Other balances", "other_balances"), Field("Reminders", "reminders", "number",
                                                                 fmt=lambda v: "" if v != v else f"{int(v)}"),
                Field("Last reminder", "last_reminder", "time")]
REMINDER_FIELDS = [Field("Time", "ts", "time"), Field("Account", "account"), Field("Currency", "currency"),
                   Field("Debit", "debit", "number"), Field("Debit (HKD)", "debit_base", "number"),
                   Field("Rule", "rule"), Field("By", "by"), Field("Message", "message")]
EXCHANGE_FIELDS = [Field("Time", "ts", "time"), Field("Account", "account"), Field("Sold", "from_currency"),
                   Field("Amount sold", "from_amount", "number"), Field("Rate", "rate", "number",
                                                                       fmt=lambda v: f"{v:.6g}"),
                   Field("Bought", "to_currency"), Field("Amount bought", "to_amount", "number"),
                   Field("By", "by"), Field("Remark", "remark")]


def _amber() -> Any:
    from PySide6.QtGui import QColor

    return QColor(WARN_COLOUR)


def check_number(text: str, name: str, required: bool = False, positive: bool = False) -> tuple[float | None, str]:
    """(value, "") or (None, message naming the field); blank is None unless required."""
    t = text.strip().replace(",", "")
    if not t:
        return None, (f"{name}: required." if required else "")
    try:
        v = float(t)
    except ValueError:
        return None, f"{name}: “{text.strip()}” is not a number."
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        return None, f"{name}: must be {'> 0' if positive else '≥ 0'}."
    return v, ""


def check_rule(currency: str, currency_threshold: str, base_threshold: str, reason: str) -> str:
    """The rule form's message ("" when it can be submitted)."""
    if not currency.strip():
        return "Currency: choose one (or * for every non-base currency)."
    ct, why = check_number(currency_threshold, "Currency threshold")
    if why:
        return why
    bt, why = check_number(base_threshold, "Base threshold")
    if why:
        return why
    if ct is None and bt is None:
        return "Give a currency threshold, a base threshold, or both."
    if currency.strip() == "*" and ct is not None:
        return "Currency threshold: the * rule covers several currencies; give a base threshold only."
    if not reason.strip():
        return "Reason: say why the rule changes."
    return ""


class ExchangeDialog(QDialog):
    """Manual exchange for one client (modeless; `accepted_values` once the form is valid and OK'd)."""

    def __init__(self, row: dict[str, Any], currencies: dict[str, float], base: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Exchange — {row['account']}")
        self.row = row
        self.fx = currencies
        lay = QFormLayout(self)
        self.account = QLabel(f"{row['account']} · {row['name']} · {row['currency']} balance {row['balance']:,.2f}"
                              + (f" · {row['other_balances']}" if row.get("other_balances") else ""))
        self.from_combo = QComboBox()
        self.from_combo.addItems(sorted(currencies))
        self.from_combo.setCurrentText(base)
        self.to_combo = QComboBox()
        self.to_combo.addItems(sorted(currencies))
        self.to_combo.setCurrentText(row["currency"])
        self.rate_edit = QLineEdit()
        self.amount_edit = QLineEdit()
        self.remark_edit = QLineEdit()
        self.outcome = QLabel()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.ok_button = QPushButton("Exchange")
        self.ok_button.setDefault(True)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        self.ok_button.clicked.connect(self.accept)
        lay.addRow("Account", self.account)
        lay.addRow("Sell (from)", self.from_combo)
        lay.addRow("Buy (to)", self.to_combo)
        lay.addRow("Rate (to per from)", self.rate_edit)
        lay.addRow("Amount sold", self.amount_edit)
        lay.addRow("Remark", self.remark_edit)
        lay.addRow("", self.outcome)
        lay.addRow(self.message)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.ok_button)
        lay.addRow(buttons)
        self._suggest()
        for w in (self.rate_edit, self.amount_edit):
            w.textChanged.connect(self.validate)
        self.from_combo.currentTextChanged.connect(self._suggest)
        self.to_combo.currentTextChanged.connect(self._suggest)
        self.validate()

    def _suggest(self) -> None:
        """Rate from the store's FX; amount that covers the debit."""
        f, t = self.from_combo.currentText(), self.to_combo.currentText()
        if f in self.fx and t in self.fx and self.fx[t] > 0:
            rate = self.fx[f] / self.fx[t]
            self.rate_edit.setText(f"{rate:.6g}")
            if t == self.row["currency"] and rate > 0:
                self.amount_edit.setText(f"{math.ceil(self.row['debit'] / rate * 100) / 100:.2f}")
        self.validate()

    def values(self) -> tuple[tuple[str, str, float, float, str] | None, str]:
        f, t = self.from_combo.currentText(), self.to_combo.currentText()
        if f == t:
            return None, "Buy (to): choose a currency other than the one sold."
        rate, why = check_number(self.rate_edit.text(), "Rate", required=True, positive=True)
        if why:
            return None, why
        amt, why = check_number(self.amount_edit.text(), "Amount sold", required=True, positive=True)
        if why:
            return None, why
        assert rate is not None and amt is not None
        return (f, t, amt, rate, self.remark_edit.text().strip()), ""

    def validate(self) -> None:
        v, why = self.values()
        self.ok_button.setEnabled(v is not None)
        set_tone(self.message, why, "error")
        if v is not None:
            self.outcome.setText(f"{v[2]:,.2f} {v[0]} → {round(v[2] * v[3], 2):,.2f} {v[1]}")
        else:
            self.outcome.setText("")


class BorrowingDock(QWidget):
    """Currency borrowing reminders: rules, matching clients, exchange, reminders and history."""

    refreshed = Signal()
    submitted = Signal(int)
    action_done = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: borrowing.BorrowingSnapshot | None = None
        self.exchange_dialog: ExchangeDialog | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._failed)
        self._fitted: set[int] = set()
        self._build()

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        self.rule_model = RecordTableModel(RULE_FIELDS)
        self.rule_view = make_table(self.rule_model)
        self.rule_view.selectionModel().currentRowChanged.connect(lambda *_: self._fill_form())
        form = QHBoxLayout()
        self.currency_combo = QComboBox()
        self.currency_combo.setEditable(True)
        self.currency_threshold = QLineEdit()
        self.currency_threshold.setPlaceholderText("in the currency")
        self.base_threshold = QLineEdit()
        self.base_threshold.setPlaceholderText("HKD equivalent")
        self.enabled_box = QCheckBox("Enabled")
        self.enabled_box.setChecked(True)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason for the checker")
        self.propose_button = QPushButton("Propose rule change")
        self.propose_button.clicked.connect(self.propose)
        parts: tuple[QWidget, ...] = (QLabel("Rule:"), self.currency_combo, QLabel("≥"), self.currency_threshold, QLabel("or base ≥"),
                                      self.base_threshold, self.enabled_box, self.reason_edit, self.propose_button)
        for part in parts:
            form.addWidget(part)
        self.rule_message = QLabel()
        self.rule_message.setVisible(False)
        for w in (self.currency_threshold, self.base_threshold, self.reason_edit):
            w.textChanged.connect(self.validate_form)
        self.currency_combo.currentTextChanged.connect(self.validate_form)
        rules_box = QWidget()
        rl = QVBoxLayout(rules_box)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(QLabel("Reminder rules — a debit matches when it reaches either threshold; changes go "
                            "through four-eyes approval"))
        rl.addWidget(self.rule_view, 1)
        rl.addLayout(form)
        rl.addWidget(self.rule_message)

        self.match_model = RecordTableModel(MATCH_FIELDS)
        self.match_view = make_table(self.match_model)
        actions = QHBoxLayout()
        self.match_label = QLabel()
        self.exchange_button = QPushButton("Exchange…")
        self.exchange_button.clicked.connect(self.open_exchange)
        self.remind_button = QPushButton("Send reminder")
        self.remind_button.clicked.connect(lambda: self.send_reminders(all_rows=False))
        self.remind_all_button = QPushButton("Remind all")
        self.remind_all_button.clicked.connect(lambda: self.send_reminders(all_rows=True))
        self.refresh_button = QPushButton("Fetch matching clients")
        self.refresh_button.clicked.connect(self.refresh)
        actions.addWidget(self.match_label, 1)
        for b in (self.refresh_button, self.exchange_button, self.remind_button, self.remind_all_button):
            actions.addWidget(b)
        match_box = QWidget()
        ml = QVBoxLayout(match_box)
        ml.setContentsMargins(0, 0, 0, 0)
        ml.addLayout(actions)
        ml.addWidget(self.match_view, 1)

        self.reminder_model = RecordTableModel(REMINDER_FIELDS)
        self.exchange_model = RecordTableModel(EXCHANGE_FIELDS)
        self.history = QTabWidget()
        self.history.setDocumentMode(True)
        self.history.addTab(make_table(self.reminder_model), "Reminder history")
        self.history.addTab(make_table(self.exchange_model), "Exchanges")

        split = QSplitter(Qt.Orientation.Vertical)
        for box in (rules_box, match_box, self.history):
            split.addWidget(box)
        split.setSizes([170, 260, 170])
        lay.addWidget(self.message)
        lay.addWidget(split, 1)
        self.validate_form()

    # ------------------------------------------------------------------ context
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()
        if self.exchange_dialog is not None:
            self.exchange_dialog.close()

    def refresh(self) -> None:
        if self.store is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(borrowing.snapshot, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="currency borrowing")

    def _loaded(self, snap: borrowing.BorrowingSnapshot) -> None:
        first = self.snapshot is None
        self.snapshot = snap
        self.rule_model.set_records(snap.rules)
        self.match_model.set_records(snap.matches)
        self.reminder_model.set_records(snap.reminders)
        self.exchange_model.set_records(snap.exchanges)
        if first:
            self.currency_combo.addItems(["*"] + [c for c in sorted(snap.currencies) if c != snap.base])
        total = sum(r["debit_base"] for r in snap.matches)
        self.match_label.setText(f"Clients matching the enabled rules: {len(snap.matches)} debits, "
                                 f"{total:,.2f} {snap.base} in all")
        self.propose_button.setToolTip("" if snap.may_request else "your role may not request rule changes")
        if first:  # the largest debits first
            self.match_view.sortByColumn(self.match_model.column_of("Debit (HKD)"), Qt.SortOrder.DescendingOrder)
        for k, m in enumerate((self.rule_model, self.match_model, self.reminder_model, self.exchange_model)):
            if k not in self._fitted and m.rowCount():
                view = (self.rule_view, self.match_view, self.history.widget(0), self.history.widget(1))[k]
                fit_columns(view)  # type: ignore[arg-type]
                self._fitted.add(k)
        self.validate_form()
        self.refreshed.emit()

    def _failed(self, e: BaseException) -> None:
        set_tone(self.message, f"Refresh failed: {error_text(e)}", "error")

    # ------------------------------------------------------------------ rules
    def _fill_form(self) -> None:
        rec = self.rule_model.record_at(self.rule_view.currentIndex().row())
        if rec is None or rec["rule"] == "(new rule)":
            return
        self.currency_combo.setCurrentText(rec["currency"])
        for edit, v in ((self.currency_threshold, rec["currency_threshold"]),
                        (self.base_threshold, rec["base_threshold"])):
            edit.setText("" if v is None else f"{v:g}")
        self.enabled_box.setChecked(rec["enabled"] == "yes")

    def validate_form(self) -> bool:
        why = check_rule(self.currency_combo.currentText(), self.currency_threshold.text(),
                         self.base_threshold.text(), self.reason_edit.text())
        untouched = not (self.currency_threshold.text().strip() or self.base_threshold.text().strip()
                         or self.reason_edit.text().strip())
        if untouched:  # nothing typed yet: no complaint, nothing to submit
            why_shown = ""
        else:
            why_shown = why
        allowed = self.snapshot is None or self.snapshot.may_request
        self.propose_button.setEnabled(not why and allowed and self.store is not None)
        set_tone(self.rule_message, why_shown, "warn" if why.startswith("Reason") else "error")
        return not why

    def propose(self) -> None:
        if not self.validate_form() or self.tasks is None:
            return

        def done(rid: int) -> None:
            set_tone(self.message, f"Change request #{rid} submitted: the rule applies once a checker approves it.",
                     "ok")
            self.reason_edit.clear()
            self.submitted.emit(rid)
            self.refresh()

        self.tasks.run(borrowing.propose_rule, self.store, self.user, self.currency_combo.currentText().strip(),
                       self.currency_threshold.text(), self.base_threshold.text(), self.enabled_box.isChecked(),
                       self.reason_edit.text(), on_done=done, on_error=self._error, name="borrowing rule")

    # ------------------------------------------------------------------ clients
    def selected_match(self) -> dict[str, Any] | None:
        return self.match_model.record_at(self.match_view.currentIndex().row())

    def send_reminders(self, all_rows: bool) -> None:
        if self.snapshot is None or self.tasks is None:
            return
        rows = list(self.snapshot.matches) if all_rows else [r for r in [self.selected_match()] if r is not None]
        if not rows:
            set_tone(self.message, "Select a client to remind (or Remind all).", "warn")
            return
        self._run(borrowing.send_reminders, self.store, self.user, rows,
                  done=lambda n: f"{n} reminder{'s' if n != 1 else ''} sent and kept in the history.")

    def open_exchange(self) -> ExchangeDialog | None:
        row = self.selected_match()
        if row is None or self.snapshot is None:
            set_tone(self.message, "Select the client to exchange for.", "warn")
            return None
        dlg = ExchangeDialog(row, self.snapshot.currencies, self.snapshot.base, self)
        dlg.accepted.connect(lambda: self._exchange(dlg))
        self.exchange_dialog = dlg
        dlg.open()
        return dlg

    def _exchange(self, dlg: ExchangeDialog) -> None:
        v, why = dlg.values()
        if v is None:
            set_tone(self.message, why, "error")
            return
        f, t, amt, rate, remark = v
        self._run(borrowing.exchange, self.store, self.user, dlg.row["account"], f, t, amt, rate, remark,
                  done=lambda r: f"Exchanged {r['from_amount']:,.2f} {r['from_currency']} → {r['to_amount']:,.2f} "
                                 f"{r['to_currency']} for {r['account']}: balances now {r['from_currency']} "
                                 f"{r['new_from_balance']:,.2f}, {r['to_currency']} {r['new_to_balance']:,.2f}.")

    # ------------------------------------------------------------------ running
    def _error(self, e: BaseException) -> None:
        set_tone(self.message, str(e) if isinstance(e, borrowing.BorrowingError) else error_text(e), "error")

    def _run(self, fn: Any, *args: Any, done: Any) -> None:
        assert self.tasks is not None

        def ok(result: Any) -> None:
            text = done(result)
            set_tone(self.message, text, "ok")
            self.action_done.emit(text)
            self.refresh()

        self.tasks.run(fn, *args, on_done=ok, on_error=self._error, name="currency borrowing action")
