"""The "Liquidation orders" dock: every liquidation order (filter by state, account and trade day), Cancel
order… with a reason, Mark sent, Record fill… (services/liquidation_fills.py: the sale moves the store's
and the live engine's position and cash; the last fill of a call closes it as liquidated), Batch liquidation… (only while the company parameter allows it) and
the automatic liquidation: its time, its last run, and the scheduler that runs it.

The scheduler is a one-minute QTimer: on a trading day at or after ``auto_liquidation_time`` it runs
`run_auto_liquidation` on the task runner (the engine is read under the monitor's lock inside the
worker), once per day per workstation; the store makes it once per call per day whatever the number
of workstations. All reads and writes go through the task runner.
"""

from __future__ import annotations

import time
from datetime import date
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services.lazy import lazy_module
from widgets.formatting import price, quantity
from widgets.records import BADGE_TEXT, CoalescedLoad, Field, RecordTableModel, error_text, hk_time, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.live import LiveMonitor
    from services.store import Store
    pass
    from services import liquidation_fills
    from services import liquidation_orders as lo
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    liquidation_fills = lazy_module("services.liquidation_fills")
    lo = lazy_module("services.liquidation_orders")

STATES = ("All states", "confirmed", "sent", "partly filled", "filled", "cancelled", "proposed")
STATE_COLOURS = {"confirmed": QColor(176, 128, 10), "sent": QColor(35, 134, 54), "cancelled": QColor(88, 96, 105),
                 "proposed": QColor(31, 111, 235), "partly filled": QColor(130, 80, 223),
                 "filled": QColor(26, 127, 100)}
SCHEDULE_MS = 60_000


def _fields() -> list[Field]:
    return [
        Field("#", "id", "number", fmt=lambda v: f"{int(v)}"),
        Field("Trade day", "trade_day"),
        Field("Account", "account"),
        Field("Code", "code"),
        Field("Qty", "qty", "number", fmt=quantity),
        Field("Type", "order_type"),
        Field("Limit", "limit_price", "number", fmt=price),
        Field("Ref price", "ref_price", "number", fmt=price, tooltip="price when proposed (security currency)"),
        Field("Ccy", "currency"),
        Field("IM release", "im_release", "number", tooltip="IM the order releases at the reference price (HKD)"),
        Field("State", "state", background=lambda v: STATE_COLOURS.get(str(v)),
              foreground=lambda v: BADGE_TEXT if str(v) in STATE_COLOURS else None),
        Field("Filled", "filled_qty", "number", fmt=lambda v: quantity(v) if v else "",
              tooltip="shares sold so far (Record fill…)"),
        Field("Avg fill", "avg_fill", "number", fmt=lambda v: price(v) if v == v else "",
              tooltip="average fill price (security currency)"),
        Field("Reason", "reason"),
        Field("By", "created_by"),
        Field("Created", "created_at", "time"),
        Field("Call", "call_id", "number", fmt=lambda v: "" if v != v else f"#{int(v)}"),
        Field("Ticket", "ticket"),
        Field("Cancelled by", "cancelled_by"),
        Field("Cancel reason", "cancel_reason"),
    ]


def load_view(store: Store, state: str | None, account: str, day_from: date | None, day_to: date | None
              ) -> tuple[list[dict[str, Any]], lo.LiquidationSettings, int]:
    """Orders, settings and the calls still due for automatic liquidation today (runs off the GUI thread)."""
    rows = lo.list_orders(store, state, account or None, day_from, day_to)
    for r in rows:
        q = float(r.get("filled_qty") or 0.0)
        r["avg_fill"] = float(r.get("fill_value") or 0.0) / q if q else float("nan")
    return rows, lo.settings(store), lo.due_calls_today(store)


def auto_task(store: Store, monitor: LiveMonitor, now: float) -> lo.AutoRunResult:
    """The scheduler's worker: automatic liquidation on the live engine (read under the monitor's lock)."""
    return lo.run_auto_liquidation(store, monitor.engine, now, lock=monitor.lock, calendar=monitor.calendar)


class ReasonDialog(QDialog):
    """Asks for the reason of a cancellation (OK disabled until one is given); shown with open()."""

    def __init__(self, title: str, prompt: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        lay = QVBoxLayout(self)
        label = QLabel(prompt)
        label.setWordWrap(True)
        lay.addWidget(label)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("reason (required)")
        lay.addWidget(self.reason)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setEnabled(False)
        self.reason.textChanged.connect(lambda t: self.ok.setEnabled(bool(t.strip())))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self.resize(460, 130)


class LiquidationOrdersDock(QWidget):
    refreshed = Signal()
    account_selected = Signal(int)
    auto_ran = Signal(object)  # services.liquidation_orders.AutoRunResult

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.monitor: LiveMonitor | None = None
        self.settings: lo.LiquidationSettings | None = None
        self.dialogs: list[Any] = []
        self.cancel_dialog: ReasonDialog | None = None
        self.fill_dialog: Any = None
        self.batch_dialog: Any = None
        self._auto_day: date | None = None
        self._auto_task: Any = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._build_ui()
        self._scheduler = QTimer(self)
        self._scheduler.setInterval(SCHEDULE_MS)
        self._scheduler.timeout.connect(self.check_schedule)
        self._catch_up = QTimer(self, singleShot=True, interval=2_000)  # opened after the time: catch up
        self._catch_up.timeout.connect(self.check_schedule)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        self.auto_label = QLabel("Automatic liquidation: –")
        self.auto_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.auto_label)
        bar = QHBoxLayout()
        self.state = QComboBox()
        self.state.addItems(STATES)
        self.account = QLineEdit()
        self.account.setPlaceholderText("Account…")
        self.account.setClearButtonEnabled(True)
        self.account.setMaximumWidth(160)
        today = QDate.currentDate()
        self.day_from = QDateEdit(today.addDays(-7))
        self.day_to = QDateEdit(today)
        for d in (self.day_from, self.day_to):
            d.setCalendarPopup(True)
            d.setDisplayFormat("yyyy-MM-dd")
            d.dateChanged.connect(lambda _d: self.refresh())
        self.state.currentIndexChanged.connect(lambda _i: self.refresh())
        self._search_timer = QTimer(self, singleShot=True, interval=250)
        self._search_timer.timeout.connect(self.refresh)
        self.account.textChanged.connect(lambda _t: self._search_timer.start())
        bar.addWidget(QLabel("State"))
        bar.addWidget(self.state)
        bar.addWidget(self.account)
        bar.addWidget(QLabel("Trade day"))
        bar.addWidget(self.day_from)
        bar.addWidget(QLabel("to"))
        bar.addWidget(self.day_to)
        bar.addStretch(1)
        self.liquidate_button = QPushButton("Liquidate…")
        self.liquidate_button.setToolTip("propose and confirm orders for the selected order's account")
        self.liquidate_button.clicked.connect(self._liquidate_selected)
        self.cancel_button = QPushButton("Cancel order…")
        self.cancel_button.clicked.connect(self.ask_cancel)
        self.sent_button = QPushButton("Mark sent")
        self.sent_button.setToolTip("the selected confirmed order was handed to dealing")
        self.sent_button.clicked.connect(self.mark_sent)
        self.fill_button = QPushButton("Record fill…")
        self.fill_button.setToolTip("what dealing sold of the selected order: position and cash move at once; "
                                    "the call's last fill closes it as liquidated")
        self.fill_button.clicked.connect(self.ask_fill)
        self.batch_button = QPushButton("Batch liquidation…")
        self.batch_button.setEnabled(False)
        self.batch_button.clicked.connect(self.open_batch)
        for w in (self.liquidate_button, self.cancel_button, self.sent_button, self.fill_button, self.batch_button):
            bar.addWidget(w)
        lay.addLayout(bar)
        self.message = QLabel("")
        self.message.setVisible(False)
        self.message.setWordWrap(True)
        lay.addWidget(self.message)
        self.model = RecordTableModel(_fields(), self)
        self.view = make_table(self.model)
        self.view.setObjectName("liquidation_orders_table")
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        lay.addWidget(self.view, 1)
        self.count_label = QLabel("")
        self.count_label.setProperty("role", "caption")
        lay.addWidget(self.count_label)
        self._update_buttons()

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def set_monitor(self, monitor: LiveMonitor) -> None:
        self.monitor = monitor
        self._scheduler.start()
        self._catch_up.start()

    def stop(self) -> None:
        self._scheduler.stop()
        self._catch_up.stop()
        self._search_timer.stop()
        self._load.cancel()
        if self._auto_task is not None:
            self._auto_task.cancel()
            self._auto_task = None
        for d in list(self.dialogs):
            d.close()

    def refresh(self) -> None:
        if self.store is None or self.tasks is None:
            return
        self._load.request()

    def _filters(self) -> tuple[str | None, str, date | None, date | None]:
        state = self.state.currentText()
        return (None if state == STATES[0] else state, self.account.text().strip(),
                self.day_from.date().toPython(), self.day_to.date().toPython())  # type: ignore[return-value]

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_view, self.store, *self._filters(), on_done=on_done, on_error=on_error,
                              name="liquidation orders")

    def _loaded(self, result: tuple[list[dict[str, Any]], lo.LiquidationSettings, int]) -> None:
        rows, st, due = result
        first = self.model.rowCount() == 0
        self.model.set_records(rows)
        if first and rows:
            fit_columns(self.view, 200)
        self.settings = st
        self.count_label.setText(f"{len(rows):,} orders")
        self._show_auto(st, due)
        self.batch_button.setEnabled(st.batch_enabled)
        self.batch_button.setToolTip(
            "propose and confirm liquidation for many calls at once" if st.batch_enabled else
            f"disabled: the company parameter {lo.BATCH_PARAMETER} is 0 (it changes only through an approved "
            "change request in Risk parameters)")
        self._update_buttons()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        set_tone(self.message, f"Could not read the liquidation orders: {error_text(e)}", "error")

    def _show_auto(self, st: lo.LiquidationSettings, due: int) -> None:
        state = f"on at {st.auto_time} HK time" if st.auto_enabled else f"off ({lo.AUTO_ENABLED} = 0)"
        last = "never run"
        if st.last_run:
            last = (f"last run {hk_time(st.last_run.get('ts'))} — {st.last_run.get('calls', 0)} calls, "
                    f"{st.last_run.get('orders', 0)} orders")
        pending = f" · {due} calls past their deadline not yet handled today" if due else ""
        self.auto_label.setText(f"<b>Automatic liquidation</b> {state} · {last}{pending}")

    # ------------------------------------------------------------------ selection and actions
    def selected(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    def select_order(self, order_id: int) -> bool:
        row = self.model.row_of(order_id)
        if row < 0:
            return False
        self.view.selectRow(row)
        return True

    def _current_changed(self, *_args: Any) -> None:
        self._update_buttons()
        rec = self.selected()
        if rec is not None and self.monitor is not None:
            a = self.monitor.engine.book.acct_index.get(rec["account"], -1)
            if a >= 0:
                self.account_selected.emit(a)

    def _update_buttons(self) -> None:
        rec = self.selected()
        self.cancel_button.setEnabled(rec is not None and rec["state"] not in ("cancelled", "filled"))
        self.fill_button.setEnabled(rec is not None and rec["state"] in liquidation_fills.FILLABLE and self.monitor is not None)
        self.sent_button.setEnabled(rec is not None and rec["state"] == "confirmed")
        self.liquidate_button.setEnabled(rec is not None and self.monitor is not None)

    def liquidate(self, account_index: int) -> Any:
        """Open the Liquidate dialog for an engine account index (alerts dock, drill-down)."""
        if self.store is None or self.user is None or self.tasks is None or self.monitor is None:
            return None
        from widgets.liquidation_dialog import LiquidationDialog

        dialog = LiquidationDialog(self.store, self.user, self.tasks, self.monitor, account_index, parent=self.window())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.confirmed.connect(lambda _ids: self.refresh())
        dialog.destroyed.connect(lambda _o=None, d=dialog: self.dialogs.remove(d) if d in self.dialogs else None)
        self.dialogs.append(dialog)
        dialog.show()
        return dialog

    def _liquidate_selected(self) -> None:
        rec = self.selected()
        if rec is None or self.monitor is None:
            return
        a = self.monitor.engine.book.acct_index.get(rec["account"], -1)
        if a >= 0:
            self.liquidate(a)

    def ask_cancel(self) -> ReasonDialog | None:
        rec = self.selected()
        if rec is None or rec["state"] == "cancelled":
            return None
        d = ReasonDialog(f"Cancel order #{rec['id']}",
                         f"Cancel the {rec['state']} order #{rec['id']}: sell {quantity(rec['qty'])} {rec['code']} "
                         f"for {rec['account']}?", self)
        d.accepted.connect(lambda oid=int(rec["id"]): self.cancel_order(oid, d.reason.text()))
        self.cancel_dialog = d
        d.open()
        return d

    def cancel_order(self, order_id: int, reason: str) -> None:
        assert self.tasks is not None
        self.tasks.run(lo.cancel, self.store, self.user, order_id, reason, on_done=lambda _r: self._done(
            f"Order #{order_id} cancelled."), on_error=self._failed, name="cancel liquidation order")

    def mark_sent(self) -> None:
        rec = self.selected()
        if rec is None or self.tasks is None:
            return
        self.tasks.run(lo.mark_sent, self.store, self.user, [int(rec["id"])],
                       on_done=lambda n: self._done(f"{n} order marked sent."), on_error=self._failed, name="mark sent")

    def ask_fill(self) -> None:
        """Read the account's holding off the GUI thread, then open Record fill… for the selected order."""
        rec = self.selected()
        if rec is None or rec["state"] not in liquidation_fills.FILLABLE or self.tasks is None or self.monitor is None:
            return
        self.tasks.run(liquidation_fills.holding, self.store, rec["account"], rec["code"],
                       on_done=lambda held: self._show_fill(rec, held), on_error=self._failed,
                       name="holding for fill")

    def _show_fill(self, rec: dict[str, Any], held: float) -> None:
        from widgets.liquidation_fill_dialog import FillDialog

        if self.fill_dialog is not None:
            self.fill_dialog.close()
        self.fill_dialog = FillDialog(rec, held, self)
        self.fill_dialog.submitted.connect(self.record_fill)
        self.fill_dialog.open()

    def record_fill(self, order_id: int, qty: float, fill_price: float) -> None:
        assert self.tasks is not None
        self.tasks.run(liquidation_fills.record_and_apply, self.store, self.user, order_id, qty, fill_price,
                       self.monitor, on_done=lambda r: self._done(r.message()), on_error=self._failed,
                       name="record liquidation fill")

    def _done(self, text: str) -> None:
        set_tone(self.message, text, "ok")
        self.refresh()

    def _failed(self, e: BaseException) -> None:
        set_tone(self.message, str(e) if isinstance(e, ValueError) else error_text(e), "error")
        self.refresh()

    def open_batch(self) -> Any:
        if self.store is None or self.user is None or self.tasks is None or self.monitor is None:
            return None
        if self.settings is None or not self.settings.batch_enabled:
            set_tone(self.message, f"Batch liquidation is disabled (company parameter {lo.BATCH_PARAMETER} = 0).",
                     "error")
            return None
        from widgets.batch_liquidation_dialog import BatchLiquidationDialog

        d = BatchLiquidationDialog(self.store, self.user, self.tasks, self.monitor, parent=self.window())
        d.confirmed.connect(lambda _ids: self.refresh())
        self.batch_dialog = d
        self.dialogs.append(d)
        d.show()
        return d

    # ------------------------------------------------------------------ automatic liquidation
    def check_schedule(self, now: float | None = None) -> bool:
        """Start the automatic run when it is due on this workstation today; True when started."""
        st, m = self.settings, self.monitor
        if st is None or m is None or self.tasks is None or self._auto_task is not None or not st.auto_enabled:
            return False
        now = time.time() if now is None else now
        today = lo.hk_day(now)
        local = now + 8 * 3600  # Hong Kong has no daylight saving
        if self._auto_day == today or (local % 86400) / 60 < st.auto_minutes or not m.calendar.is_trading_day(today):
            return False
        self._auto_task = self.tasks.run(auto_task, self.store, m, now, on_done=lambda r: self._auto_done(today, r),
                                         on_error=self._auto_failed, name="automatic liquidation")
        return True

    def _auto_done(self, today: date, result: lo.AutoRunResult) -> None:
        self._auto_task = None
        if result.ran:
            self._auto_day = today
        if result.orders:
            set_tone(self.message, f"Automatic liquidation: {result.message}.", "info")
        self.auto_ran.emit(result)
        self.refresh()

    def _auto_failed(self, e: BaseException) -> None:
        self._auto_task = None
        set_tone(self.message, f"Automatic liquidation failed: {error_text(e)}", "error")

