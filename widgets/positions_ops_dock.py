"""The "Positions and collections" dock (issue 8): short positions against the lending inventory with
the clients per security and recalls, non-performing credit, stock collections, and options (positions,
near expiry, the exercise overview by expiry date, exercise records).

One background read (`services.positions_ops.snapshot`) fills every tab; recalls, collection updates
and exercises run on the task runner and reload the dock when they are done. Nothing here computes a
number: the services do, vectorised over all positions.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services import positions_ops as po
from widgets.formatting import price, quantity
from widgets.records import (
    ERROR_COLOUR,
    OK_COLOUR,
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

RED, AMBER, GREEN = QColor(ERROR_COLOUR), QColor(WARN_COLOUR), QColor(OK_COLOUR)


def _usage_colour(v: Any) -> QColor | None:
    if v != v:
        return None
    return RED if v > 100 else AMBER if v >= 80 else None


def _pct(v: Any) -> str:
    return "" if v != v else f"{v:,.1f}%"


def _qty(v: Any) -> str:
    return "" if v != v else quantity(v)


def _px(v: Any) -> str:
    return "" if v != v else price(v)


def _int(v: Any) -> str:
    return "" if v != v else f"{int(v):,}"


def _status_colour(v: Any) -> QColor | None:
    return {"force": RED, "call": RED, "warning": AMBER, "open": AMBER, "pending": AMBER, "ITM": GREEN,
            "collected": GREEN, "done": GREEN, "exercised": GREEN, "assigned": AMBER, "lapsed": None,
            "expired — to settle": RED}.get(str(v))


SHORT_FIELDS = [Field("Code", "code"), Field("Name", "name"), Field("Short qty", "short_qty", "number", fmt=_qty),
                Field("Lending inventory", "inventory", "number", fmt=_qty, tooltip="blank: none recorded"),
                Field("Usage", "usage_pct", "number", fmt=_pct, foreground=_usage_colour,
                      tooltip="short quantity / lending inventory"),
                Field("Uncovered", "uncovered", "number", fmt=_qty, tooltip="short beyond the inventory"),
                Field("Short MV (HKD)", "short_mv", "number"), Field("Clients", "clients", "number", fmt=_int),
                Field("Accounts", "accounts", "number", fmt=_int)]
CLIENT_FIELDS = [Field("Account", "account"), Field("Client", "client"), Field("Name", "name"),
                 Field("Short qty", "short_qty", "number", fmt=_qty), Field("Share", "share_pct", "number", fmt=_pct),
                 Field("Short MV (HKD)", "short_mv", "number"), Field("Status", "status", foreground=_status_colour),
                 Field("Equity", "equity", "number"), Field("Call amount", "call_amount", "number")]
RECALL_FIELDS = [Field("Account", "account"), Field("Status", "status", foreground=_status_colour),
                 Field("Short qty", "short_qty", "number", fmt=_qty), Field("Buy back", "buy_qty", "number", fmt=_qty),
                 Field("Action", "action"), Field("Due", "due_date"), Field("Recall", "recall_id", "number", fmt=_int),
                 Field("Code", "code"), Field("By", "by"), Field("Reason", "reason")]
NPL_FIELDS = [Field("Account", "account"), Field("Client", "client"), Field("Name", "name"),
              Field("Loan", "loan", "number"), Field("Recognised collateral", "recognised_value", "number",
                                                      tooltip="Σ (1 − FRR haircut) × MV of long stock"),
              Field("Uncovered", "uncovered", "number", foreground=lambda v: RED if v == v and v > 0 else None),
              Field("Coverage", "coverage_pct", "number", fmt=_pct),
              Field("Call deadline", "deadline"), Field("Business days past", "days_past_deadline", "number", fmt=_int),
              Field("Status", "status", foreground=_status_colour), Field("Why", "reason")]
COLLECTION_FIELDS = [Field("Kind", "kind", fmt=lambda v: "covered option" if v == "covered_option" else "short stock"),
                     Field("Account", "account"), Field("Collect", "code"), Field("Qty", "qty", "number", fmt=_qty),
                     Field("For", "source", tooltip="the short call the shares cover"), Field("Due", "due_date"),
                     Field("Days to due", "days_to_due", "number", fmt=_int,
                           foreground=lambda v: RED if v == v and v <= 0 else None),
                     Field("Status", "status", foreground=_status_colour), Field("Updated by", "updated_by"),
                     Field("Remark", "remark")]
OPTION_FIELDS = [Field("Account", "account"), Field("Option", "option"), Field("Underlying", "underlying"),
                 Field("Type", "type"), Field("Strike", "strike", "number", fmt=_px), Field("Expiry", "expiry"),
                 Field("Days", "days_to_expiry", "number", fmt=_int,
                       foreground=lambda v: RED if v == v and v < 0 else None),
                 Field("Contracts", "contracts", "number", fmt=_qty), Field("Size", "contract_size", "number", fmt=_int),
                 Field("Premium", "premium", "number", fmt=_px), Field("Underlying px", "underlying_price", "number",
                                                                       fmt=_px),
                 Field("Moneyness", "moneyness", foreground=_status_colour),
                 Field("Intrinsic value", "intrinsic_value", "number"), Field("MV (HKD)", "market_value", "number")]
OVERVIEW_FIELDS = [Field("Expiry", "expiry"), Field("Days", "days_to_expiry", "number", fmt=_int),
                   Field("Series", "series", "number", fmt=_int), Field("Open positions", "positions", "number",
                                                                         fmt=_int),
                   Field("Accounts", "accounts", "number", fmt=_int),
                   Field("Long contracts", "long_contracts", "number", fmt=_qty),
                   Field("Short contracts", "short_contracts", "number", fmt=_qty),
                   Field("In the money", "itm_positions", "number", fmt=_int),
                   Field("Settled", "done", "number", fmt=_int, tooltip="exercise records for this expiry"),
                   Field("Status", "status", foreground=_status_colour)]
RECORD_FIELDS = [Field("Time", "ts", "time"), Field("Account", "account"), Field("Option", "option_code"),
                 Field("Type", "option_type"), Field("Strike", "strike", "number", fmt=_px),
                 Field("Underlying px", "underlying_price", "number", fmt=_px),
                 Field("Contracts", "contracts", "number", fmt=_qty),
                 Field("Action", "action", foreground=_status_colour),
                 Field("Stock", "stock_change", "number", fmt=_qty), Field("Cash", "cash_change", "number"),
                 Field("Ccy", "currency"), Field("Intrinsic value", "intrinsic_value", "number"), Field("By", "by"),
                 Field("Batch", "batch")]


def _table(fields: list[Field]) -> tuple[RecordTableModel, QTableView]:
    model = RecordTableModel(fields)
    return model, make_table(model)


def _page(*parts: QWidget | QHBoxLayout) -> QWidget:
    w = QWidget()
    lay = QVBoxLayout(w)
    lay.setContentsMargins(0, 2, 0, 0)
    for x in parts:
        if isinstance(x, QHBoxLayout):
            lay.addLayout(x)
        else:
            lay.addWidget(x)
    return w


class PositionsOpsDock(QWidget):
    """Short positions, non-performing credit, stock collections and options, in tabs."""

    refreshed = Signal()
    action_done = Signal(str)  # what was done, as shown to the user

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: po.PositionsSnapshot | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._failed)
        self._fitted: set[int] = set()
        self._build()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        top = QHBoxLayout()
        self.summary = QLabel("Loading…")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        top.addWidget(self.summary, 1)
        top.addWidget(self.refresh_button)
        lay.addLayout(top)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        lay.addWidget(self.message)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        lay.addWidget(self.tabs, 1)

        # short positions: securities | clients of the selected one + recall form | recall items
        self.short_model, self.short_view = _table(SHORT_FIELDS)
        self.client_model, self.client_view = _table(CLIENT_FIELDS)
        self.recall_model, self.recall_view = _table(RECALL_FIELDS)
        self.short_view.selectionModel().currentRowChanged.connect(lambda *_: self._show_clients())
        self.clients_label = QLabel("Select a security to see its short clients.")
        form = QHBoxLayout()
        self.recall_action = QComboBox()
        self.recall_action.addItems(["notice", "liquidation"])
        self.recall_action.setToolTip("notice: ask each short client to cover; liquidation: propose buying back")
        self.recall_due = QDateEdit()
        self.recall_due.setCalendarPopup(True)
        self.recall_due.setDate(QDate.currentDate().addDays(3))
        self.recall_reason = QLineEdit()
        self.recall_reason.setPlaceholderText("reason (e.g. lender recalled the stock)")
        self.recall_button = QPushButton("Recall…")
        self.recall_button.setToolTip("record a recall of the selected security for every client short in it")
        self.recall_button.clicked.connect(self.recall_selected)
        self.item_status = QComboBox()
        self.item_status.addItems(["sent", "proposed", "done", "cancelled"])
        self.item_button = QPushButton("Mark item")
        self.item_button.clicked.connect(self.mark_recall_item)
        for w in (QLabel("Recall:"), self.recall_action, QLabel("due"), self.recall_due, self.recall_reason,
                  self.recall_button, QLabel("  Selected item →"), self.item_status, self.item_button):
            form.addWidget(w)
        lower = QWidget()
        ll = QVBoxLayout(lower)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.clients_label)
        split2 = QSplitter()
        split2.addWidget(self.client_view)
        split2.addWidget(self.recall_view)
        split2.setSizes([520, 480])
        ll.addWidget(split2, 1)
        ll.addLayout(form)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.short_view)
        split.addWidget(lower)
        split.setSizes([240, 260])
        self.tabs.addTab(_page(split), "Short positions")

        self.npl_model, self.npl_view = _table(NPL_FIELDS)
        self.npl_label = QLabel()
        self.tabs.addTab(_page(self.npl_label, self.npl_view), "Non-performing credit")

        self.coll_model, self.coll_view = _table(COLLECTION_FIELDS)
        row = QHBoxLayout()
        self.coll_refresh = QPushButton("Update from book")
        self.coll_refresh.setToolTip("open collections for uncovered short stock and under-covered short calls; "
                                     "resolve those no longer needed")
        self.coll_refresh.clicked.connect(self.update_collections)
        self.coll_status = QComboBox()
        self.coll_status.addItems(["collected", "cancelled", "open"])
        self.coll_remark = QLineEdit()
        self.coll_remark.setPlaceholderText("remark")
        self.coll_button = QPushButton("Set status of selected")
        self.coll_button.clicked.connect(self.set_collection_status)
        for w in (self.coll_refresh, QLabel("  "), self.coll_status, self.coll_remark, self.coll_button):
            row.addWidget(w)
        self.tabs.addTab(_page(self.coll_view, row), "Stock collections")

        self.opt_model, self.opt_view = _table(OPTION_FIELDS)
        self.near_model, self.near_view = _table(OPTION_FIELDS)
        self.overview_model, self.overview_view = _table(OVERVIEW_FIELDS)
        self.records_model, self.records_view = _table(RECORD_FIELDS)
        ex = QHBoxLayout()
        self.spot_edit = QLineEdit()
        self.spot_edit.setPlaceholderText("underlying price (blank: last)")
        self.spot_edit.setMaximumWidth(200)
        self.exercise_option_button = QPushButton("Exercise option (all holders)")
        self.exercise_option_button.setToolTip("exercise / assign every position in the selected series, or let "
                                               "them lapse when out of the money")
        self.exercise_option_button.clicked.connect(lambda: self.exercise_selected(per_client=False))
        self.exercise_client_button = QPushButton("Exercise for this client")
        self.exercise_client_button.clicked.connect(lambda: self.exercise_selected(per_client=True))
        for w in (QLabel("Selected position:"), self.spot_edit, self.exercise_option_button,
                  self.exercise_client_button):
            ex.addWidget(w)
        ex.addStretch(1)
        self.option_tabs = QTabWidget()
        pos_page = _page(self.opt_view, ex)
        self.near_label = QLabel()
        self.option_tabs.addTab(pos_page, "Positions")
        self.option_tabs.addTab(_page(self.near_label, self.near_view), "Near expiry")
        self.option_tabs.addTab(_page(self.overview_view), "Exercise overview")
        self.option_tabs.addTab(_page(self.records_view), "Exercise records")
        self.tabs.addTab(self.option_tabs, "Options")

    # ------------------------------------------------------------------ context
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()

    def refresh(self) -> None:
        if self.store is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(po.snapshot, self.store, on_done=on_done, on_error=on_error, name="positions ops")

    def _loaded(self, snap: po.PositionsSnapshot) -> None:
        self.snapshot = snap
        code = self.selected_code()
        self.short_model.set_records(snap.shorts)
        self.npl_model.set_records(snap.npl)
        self.coll_model.set_records(snap.collections)
        self.opt_model.set_records(snap.option_positions)
        self.near_model.set_records(snap.near_expiry)
        self.overview_model.set_records(snap.exercise_overview)
        self.records_model.set_records(snap.exercise_records)
        over = sum(1 for r in snap.shorts if (r["usage_pct"] or 0) > 100)
        unc = sum(r["uncovered"] for r in snap.npl)
        open_coll = sum(1 for r in snap.collections if r["status"] == "open")
        self.summary.setText(f"{len(snap.shorts)} securities short ({over} above inventory) · {len(snap.npl)} "
                             f"non-performing, {unc:,.0f} HKD uncovered · {open_coll} open collections · "
                             f"{len(snap.option_positions)} option positions, {len(snap.near_expiry)} near expiry")
        self.npl_label.setText(f"Loan above recognised collateral, or an open call at least {snap.npl_days} business "
                               f"days past its deadline (company parameter npl_days_past_deadline). "
                               f"{len(snap.npl)} accounts, {unc:,.0f} HKD uncovered.")
        self.near_label.setText(f"Option positions expiring within {snap.near_expiry_days} days "
                                "(company parameter option_near_expiry_days).")
        self.tabs.setTabText(1, f"Non-performing credit ({len(snap.npl)})")
        self.tabs.setTabText(2, f"Stock collections ({open_coll})")
        self.option_tabs.setTabText(1, f"Near expiry ({len(snap.near_expiry)})")
        if not self._fitted:  # first fill: the rows that need attention first
            for view, model, header, order in (
                    (self.short_view, self.short_model, "Usage", Qt.SortOrder.DescendingOrder),
                    (self.npl_view, self.npl_model, "Uncovered", Qt.SortOrder.DescendingOrder),
                    (self.coll_view, self.coll_model, "Days to due", Qt.SortOrder.AscendingOrder),
                    (self.opt_view, self.opt_model, "Days", Qt.SortOrder.AscendingOrder),
                    (self.near_view, self.near_model, "Days", Qt.SortOrder.AscendingOrder),
                    (self.client_view, self.client_model, "Short qty", Qt.SortOrder.DescendingOrder)):
                view.sortByColumn(model.column_of(header), order)
        for k, view in enumerate((self.short_view, self.npl_view, self.coll_view, self.opt_view, self.near_view,
                                  self.overview_view, self.records_view, self.recall_view)):
            if k not in self._fitted and view.model().rowCount():
                fit_columns(view)
                self._fitted.add(k)
        if code:
            self.select_code(code)
        elif self.short_model.rowCount():
            self.short_view.selectRow(0)
        self._show_clients()
        self.refreshed.emit()

    def _failed(self, e: BaseException) -> None:
        set_tone(self.message, f"Refresh failed: {error_text_any(e)}", "error")

    # ------------------------------------------------------------------ short positions
    def selected_code(self) -> str | None:
        rec = self.short_model.record_at(self.short_view.currentIndex().row())
        return None if rec is None else str(rec["code"])

    def select_code(self, code: str) -> bool:
        for r in range(self.short_model.rowCount()):
            rec = self.short_model.record_at(r)
            if rec is not None and rec["code"] == code:
                self.short_view.selectRow(r)
                return True
        return False

    def _show_clients(self) -> None:
        code = self.selected_code()
        rows = self.snapshot.short_clients.get(code, []) if self.snapshot and code else []
        self.client_model.set_records(rows)
        items = [r for r in self.snapshot.recall_items if r["code"] == code] if self.snapshot and code else []
        self.recall_model.set_records(items)
        if rows and 100 not in self._fitted:
            fit_columns(self.client_view)
            self._fitted.add(100)
        self.clients_label.setText(f"Clients short in {code}: {len(rows)} · its recall items on the right: "
                                   f"{len(items)}" if code
                                   else "Select a security to see its short clients.")

    def recall_selected(self) -> None:
        code = self.selected_code()
        if code is None:
            set_tone(self.message, "Select the security to recall first.", "warn")
            return
        reason = self.recall_reason.text().strip()
        if not reason:
            set_tone(self.message, "Reason: say why the security is recalled.", "error")
            return
        due = self.recall_due.date().toPython()
        assert isinstance(due, date)
        self._run(po.recall, self.store, self.user, code, self.recall_action.currentText(), due, reason,
                  done=lambda rid: f"Recall #{rid} of {code} recorded: one {self.recall_action.currentText()} "
                                   "item per short client, pending.")

    def mark_recall_item(self) -> None:
        rec = self.recall_model.record_at(self.recall_view.currentIndex().row())
        if rec is None:
            set_tone(self.message, "Select a recall item first.", "warn")
            return
        status = self.item_status.currentText()
        self._run(po.set_recall_item, self.store, self.user, int(rec["id"]), status,
                  done=lambda _: f"Recall item {rec['account']} {rec['code']} marked {status}.")

    # ------------------------------------------------------------------ collections
    def update_collections(self) -> None:
        self._run(po.refresh_collections, self.store, self.user,
                  done=lambda c: f"Collections: {c['opened']} opened, {c['updated']} updated, {c['resolved']} "
                                 "resolved.")

    def set_collection_status(self) -> None:
        rec = self.coll_model.record_at(self.coll_view.currentIndex().row())
        if rec is None:
            set_tone(self.message, "Select a collection first.", "warn")
            return
        status = self.coll_status.currentText()
        self._run(po.set_collection_status, self.store, self.user, int(rec["id"]), status,
                  self.coll_remark.text().strip(),
                  done=lambda _: f"Collection of {rec['qty']:,.0f} {rec['code']} from {rec['account']}: {status}.")

    # ------------------------------------------------------------------ options
    def selected_option(self) -> dict[str, Any] | None:
        return self.opt_model.record_at(self.opt_view.currentIndex().row())

    def select_option(self, option: str, account: str | None = None) -> bool:
        for r in range(self.opt_model.rowCount()):
            rec = self.opt_model.record_at(r)
            if rec is not None and rec["option"] == option and (account is None or rec["account"] == account):
                self.opt_view.selectRow(r)
                return True
        return False

    def exercise_selected(self, per_client: bool) -> None:
        from services import options

        rec = self.selected_option()
        if rec is None:
            set_tone(self.message, "Select an option position first.", "warn")
            return
        spot_text = self.spot_edit.text().strip().replace(",", "")
        spot: float | None = None
        if spot_text:
            try:
                spot = float(spot_text)
            except ValueError:
                set_tone(self.message, f"Underlying price: “{spot_text}” is not a number.", "error")
                return
            if not spot > 0:
                set_tone(self.message, "Underlying price must be > 0.", "error")
                return
        account = rec["account"] if per_client else None

        def said(res: options.ExerciseResult) -> str:
            n, ex = len(res.records), res.exercised
            cash = sum(r["cash_change"] for r in res.records)
            return (f"{rec['option']}: {n} position{'s' if n != 1 else ''} settled — {ex} exercised/assigned, "
                    f"{n - ex} lapsed; cash {cash:+,.2f} {rec['currency']} (batch {res.batch}).")

        self._run(options.exercise, self.store, self.user, rec["option"], account, spot, done=said)

    # ------------------------------------------------------------------ running actions
    def _run(self, fn: Any, *args: Any, done: Any) -> None:
        if self.tasks is None:
            return

        def ok(result: Any) -> None:
            text = done(result)
            set_tone(self.message, text, "ok")
            self.action_done.emit(text)
            self.refresh()

        self.tasks.run(fn, *args, on_done=ok, on_error=lambda e: set_tone(self.message, error_text_any(e), "error"),
                       name="positions ops action")


def error_text_any(e: BaseException) -> str:
    """Desk refusals (bad input named by the service) read as they are; anything else via error_text."""
    from services.options import OptionError

    if isinstance(e, po.PositionsOpsError | OptionError):
        return str(e)
    return error_text(e)
