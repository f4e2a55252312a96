"""The notification-matrix tab: event type × amount → regulatory duty, edited only as change requests.

Selecting a rule fills the form; "Request change", "Request new rule" and "Request removal" submit a
four-eyes request (kind ``notification_rule``) that a checker approves in Approvals — nothing here
writes the matrix. The form checks as you type and names the wrong field; a rule with a request
waiting says so in the Pending column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from services import loss_events as le
from widgets.formatting import money
from widgets.records import Field, RecordTableModel, error_text, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store


class NotificationMatrixPanel(QWidget):
    submitted = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.may_request = False
        self.busy = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        split = QSplitter()
        self.model = RecordTableModel([
            Field("Rule", "id", "number", fmt=lambda v: f"{v:.0f}"),
            Field("Event type", "event_type", fmt=lambda v: "* every type" if v == "*" else str(v)),
            Field("Above (HKD)", "min_amount", "number", fmt=lambda v: "any amount" if v == 0 else money(v),
                  tooltip="the duty applies when the gross loss exceeds this (0: every event of the type)"),
            Field("Duty", "duty"),
            Field("Due (h)", "due_hours", "number", fmt=lambda v: "" if v != v else f"{v:.0f}",
                  tooltip="hours after discovery"),
            Field("Pending", "pending")])
        self.view = make_table(self.model)
        self.view.setObjectName("notification_matrix_table")
        self.view.selectionModel().currentRowChanged.connect(lambda *_: self._selected())
        split.addWidget(self.view)
        side = QWidget()
        form_lay = QVBoxLayout(side)
        form = QFormLayout()
        self.event_type = QComboBox()
        self.event_type.addItem("* every type", "*")
        for t in le.EVENT_TYPES:
            self.event_type.addItem(t, t)
        self.min_amount = QLineEdit("0")
        self.duty = QLineEdit()
        self.due_hours = QLineEdit("24")
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why (the checker decides on it)")
        form.addRow("Event type", self.event_type)
        form.addRow("Above (HKD)", self.min_amount)
        form.addRow("Duty", self.duty)
        form.addRow("Due (hours)", self.due_hours)
        form.addRow("Reason", self.reason)
        form_lay.addLayout(form)
        row = QHBoxLayout()
        self.change_button = QPushButton("Request change")
        self.new_button = QPushButton("Request new rule")
        self.delete_button = QPushButton("Request removal")
        for b in (self.change_button, self.new_button, self.delete_button):
            row.addWidget(b)
        form_lay.addLayout(row)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        form_lay.addWidget(self.message)
        note = QLabel("Changes apply only once a checker approves them (Approvals).")
        note.setProperty("role", "caption")
        note.setWordWrap(True)
        form_lay.addWidget(note)
        form_lay.addStretch(1)
        split.addWidget(side)
        split.setSizes([640, 360])
        lay.addWidget(split)
        self.change_button.clicked.connect(lambda: self.submit("update"))
        self.new_button.clicked.connect(lambda: self.submit("insert"))
        self.delete_button.clicked.connect(lambda: self.submit("delete"))
        self._keep_ok = False
        for e in (self.min_amount, self.duty, self.due_hours, self.reason):
            e.textChanged.connect(self._edited)
        self.event_type.currentIndexChanged.connect(self._edited)
        self._update()

    def _edited(self) -> None:
        self._keep_ok = False
        self._update()

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def show_rules(self, rules: list[dict[str, Any]], pending: dict[int, str], may_request: bool) -> None:
        first = self.model.rowCount() == 0
        self.may_request = may_request
        self.model.set_records([{**r, "pending": pending.get(int(r["id"]), "")} for r in rules]
                               + [{"id": k, "event_type": "", "min_amount": None, "duty": "(new rule requested)",
                                   "due_hours": None, "pending": v} for k, v in pending.items()
                                  if k not in {int(r["id"]) for r in rules}])
        if first and rules:
            fit_columns(self.view, 320)
            self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self._update()

    def selected(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    def _selected(self) -> None:
        r = self.selected()
        if r is None or r.get("min_amount") is None:
            self._update()
            return
        i = self.event_type.findData(r["event_type"])
        self.event_type.setCurrentIndex(max(0, i))
        self.min_amount.setText(f"{float(r['min_amount']):,.2f}")
        self.duty.setText(str(r["duty"]))
        self.due_hours.setText("" if r["due_hours"] is None else str(int(r["due_hours"])))
        self._update()

    def read(self) -> tuple[str, float, str, int | None]:
        try:
            amount = float(self.min_amount.text().replace(",", "").strip() or "nan")
        except ValueError:
            raise le.LossEventError("Above (HKD)", f"{self.min_amount.text()!r} is not a number") from None
        hours_text = self.due_hours.text().strip()
        try:
            hours = int(hours_text) if hours_text else None
        except ValueError:
            raise le.LossEventError("Due (hours)", f"{hours_text!r} is not a whole number") from None
        return str(self.event_type.currentData()), amount, self.duty.text(), hours

    def check(self, op: str) -> str:
        """'' when a request of ``op`` can be made, else what is wrong (naming the field)."""
        r = self.selected()
        if op in ("update", "delete") and (r is None or r.get("min_amount") is None):
            return "Select a rule first"
        if op in ("update", "delete") and r is not None and r.get("pending"):
            return f"Rule {int(r['id'])} has a {r['pending']}"
        if op != "delete":
            try:
                le.validate_rule(*self.read())
            except le.LossEventError as e:
                return str(e)
        if not self.reason.text().strip():
            return "Reason: required (the checker decides on it)"
        return ""

    def _update(self) -> None:
        ok = self.may_request and not self.busy and self.store is not None
        msgs = {op: self.check(op) for op in ("update", "insert", "delete")}
        for op, b in (("update", self.change_button), ("insert", self.new_button), ("delete", self.delete_button)):
            b.setEnabled(ok and not msgs[op])
            b.setToolTip(msgs[op] if self.may_request else "your role may not request matrix changes")
        if not self.busy and not self._keep_ok:
            set_tone(self.message, msgs["update"] if self.selected() else msgs["insert"], "warn")

    def submit(self, op: str) -> None:
        msg = self.check(op)
        if msg:
            set_tone(self.message, msg, "error")
            return
        if self.tasks is None or self.store is None or self.user is None:
            return
        r = self.selected()
        reason = self.reason.text().strip()
        if op == "delete":
            assert r is not None
            args: tuple[Any, ...] = (le.propose_rule_delete, self.store, self.user, int(r["id"]), reason)
        else:
            args = (le.propose_rule, self.store, self.user, int(r["id"]) if op == "update" and r else None,
                    *self.read(), reason)
        self.busy = True
        self._update()

        def done(req_id: int) -> None:
            self.busy = False
            self.reason.clear()
            self._keep_ok = True
            set_tone(self.message, f"Change request #{req_id} submitted — it applies once a checker approves it",
                     "ok")
            self._update()
            self.submitted.emit(int(req_id))

        def failed(e: BaseException) -> None:
            self.busy = False
            set_tone(self.message, str(e) if isinstance(e, le.LossEventError) else error_text(e), "error")
            self._update()

        self.tasks.run(*args, on_done=done, on_error=failed, name="notification rule request")
