"""Batch liquidation: pick open calls, propose for all of them in one vectorised pass, confirm in one
transaction. Only reachable while ``batch_liquidation_enabled`` is 1; the service re-checks it both when
proposing and when confirming, so a parameter switched off meanwhile refuses with its message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QItemSelectionModel, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services import liquidation_orders as lo
from widgets.records import Field, RecordTableModel, error_text, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.live import LiveMonitor
    from services.store import Store


def _propose(store: Store, monitor: LiveMonitor, call_ids: list[int]) -> list[lo.BatchItem]:
    return lo.propose_batch(store, monitor.engine, call_ids, lock=monitor.lock)


class BatchLiquidationDialog(QDialog):
    loaded = Signal()
    proposed = Signal()
    confirmed = Signal(object)
    failed = Signal(str)

    def __init__(self, store: Store, user: User, tasks: TaskRunner, monitor: LiveMonitor,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store, self.user, self.tasks, self.monitor = store, user, tasks, monitor
        self.items: list[lo.BatchItem] = []
        self._task: Any = None
        self.setWindowTitle("Batch liquidation")
        self.resize(1000, 620)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Open margin calls — select the calls to liquidate (Ctrl/Shift-click):"))
        self.calls = RecordTableModel([
            Field("Call", "id", "number", fmt=lambda v: f"#{int(v)}"), Field("Account", "account"),
            Field("Status", "current_status"), Field("Call amount", "current_amount", "number"),
            Field("Deadline", "deadline"), Field("Past deadline", "past")], self)
        self.calls_view = make_table(self.calls)
        self.calls_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.calls_view.selectionModel().selectionChanged.connect(lambda *_a: self._update())
        lay.addWidget(self.calls_view, 1)
        bar = QHBoxLayout()
        self.long_button = QPushButton("Select calls past their deadline")
        self.long_button.clicked.connect(self.select_past_deadline)
        self.propose_button = QPushButton("Propose")
        self.propose_button.clicked.connect(self.propose)
        bar.addWidget(self.long_button)
        bar.addStretch(1)
        bar.addWidget(self.propose_button)
        lay.addLayout(bar)
        self.plan = RecordTableModel([
            Field("Account", "account"), Field("Call", "call", "number", fmt=lambda v: f"#{int(v)}"),
            Field("IM shortfall", "deficit", "number"), Field("Orders", "orders"),
            Field("IM released", "released", "number"), Field("Shortfall after", "after", "number")], self)
        self.plan_view = make_table(self.plan)
        lay.addWidget(self.plan_view, 1)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        lay.addWidget(self.message)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Reason"))
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why these calls are liquidated together")
        self.reason.textChanged.connect(lambda _t: self._update())
        bottom.addWidget(self.reason, 1)
        self.confirm_button = QPushButton("Confirm all orders")
        self.confirm_button.clicked.connect(self.confirm)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        bottom.addWidget(self.confirm_button)
        bottom.addWidget(close)
        lay.addLayout(bottom)
        self._update()
        self._task = tasks.run(lo.open_calls, store, on_done=self._calls_loaded, on_error=self._fail,
                               name="open calls")

    def _calls_loaded(self, rows: list[dict[str, Any]]) -> None:
        self._task = None
        today = lo.hk_day()
        for r in rows:
            r["past"] = "yes" if r["deadline"] is not None and r["deadline"] < today else ""
        self.calls.set_records(rows)
        fit_columns(self.calls_view, 180)
        self._update()
        self.loaded.emit()

    def select_past_deadline(self) -> None:
        sel = self.calls_view.selectionModel()
        sel.clearSelection()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for row in range(self.calls.rowCount()):
            rec = self.calls.record_at(row)
            if rec is not None and rec["past"]:
                sel.select(self.calls.index(row, 0), flags)
        self._update()

    def selected_call_ids(self) -> list[int]:
        rows = {i.row() for i in self.calls_view.selectionModel().selectedRows()}
        return [int(self.calls.key_at(r)) for r in sorted(rows)]

    def propose(self) -> None:
        ids = self.selected_call_ids()
        if not ids or self._task is not None:
            return
        self._task = self.tasks.run(_propose, self.store, self.monitor, ids, on_done=self._proposed,
                                    on_error=self._fail, name="batch proposal")
        self._update()

    def _proposed(self, items: list[lo.BatchItem]) -> None:
        self._task = None
        self.items = items
        self.plan.set_records([{
            "id": n, "account": i.account, "call": i.call_id, "deficit": i.deficit,
            "orders": ", ".join(f"{o.code} {o.qty:,.0f}" for o in i.orders) or "nothing to sell",
            "released": sum(o.im_release for o in i.orders), "after": i.shortfall_after}
            for n, i in enumerate(items)])
        fit_columns(self.plan_view, 320)
        n = sum(len(i.orders) for i in items)
        short = [i.account for i in items if i.shortfall_after > 0]
        text = f"{n} orders for {len(items)} calls."
        if short:
            text += f" Still short after selling everything sellable (cash needed): {', '.join(short)}."
        set_tone(self.message, text, "warn" if short else "info")
        self._update()
        self.proposed.emit()

    def blocked_reason(self) -> str:
        if self._task is not None:
            return "working…"
        if not self.items:
            return "propose first"
        if not any(i.orders for i in self.items):
            return "nothing to sell"
        if not self.reason.text().strip():
            return "enter a reason"
        return ""

    def _update(self) -> None:
        self.propose_button.setEnabled(self._task is None and bool(self.calls_view.selectionModel().hasSelection()))
        why = self.blocked_reason()
        self.confirm_button.setEnabled(not why)
        self.confirm_button.setToolTip(why)

    def confirm(self) -> None:
        if self.blocked_reason():
            return
        self._task = self.tasks.run(lo.confirm_batch, self.store, self.user, self.items, self.reason.text(),
                                    on_done=self._confirmed, on_error=self._fail, name="confirm batch liquidation")
        self._update()

    def _confirmed(self, ids: list[int]) -> None:
        self._task = None
        self.items = []
        self.plan.set_records([])
        set_tone(self.message, f"{len(ids)} liquidation orders confirmed.", "ok")
        self._update()
        self.confirmed.emit(ids)

    def _fail(self, e: BaseException) -> None:
        self._task = None
        text = str(e) if isinstance(e, ValueError) else error_text(e)
        set_tone(self.message, text, "error")
        self._update()
        self.failed.emit(text)

    def closeEvent(self, event: Any) -> None:
        if self._task is not None:
            self._task.cancel()
        super().closeEvent(event)

