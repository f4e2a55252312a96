"""The credit dock (issue 4 "Credit"): company limits over a tab per view —
- Financing limits: usage of every credited account with the adjust-limit form, and "Bulk update…"
  (a reviewed batch from a file, `widgets.limit_batch_dialog`);
- Credit groups: shared limits with their usage bars and the create / rename / members form
  (`widgets.credit_groups_panel`);
- Snapshots: every limit change event by account/client and time (`widgets.credit_snapshots`);
- Client financing: loans by currency and the clients over their limit (`widgets.credit_financing`).

Two cadences, so the feed thread and the database are never waited on by the window:
- every 2 s the account table copies loan, limit and equity from the live engine under the
  monitor's lock (`try_lock`: a busy lock skips the tick) and tells the view only the changed rows;
- every ~10 s (and on `refresh`) `credit_usage` runs in the task runner on a copy of those arrays,
  for what needs the store: credit groups and company limits.
Sorting and the "over limit only" / search filters are numpy over the dock's own copies, so a
filter shows exactly the accounts whose copied loan exceeds their limit. The snapshots and client
financing tabs read the store in the task runner when first shown and on Refresh.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from widgets.array_model import ArrayTableModel, Column, number_column
from widgets.credit_financing import ClientFinancingPanel
from widgets.credit_groups_panel import CreditGroupsPanel
from widgets.credit_parts import (
    KIND,
    OVER_TEXT,
    USAGE_OK,
    USAGE_OVER,
    USAGE_WARN,
    CreditSnapshot,
    UsageBarDelegate,
    load_credit,
    short_money,
    stretch_column,
    submit_limit,
    usage_colour,
    usage_text,
    validate_limit,
)
from widgets.credit_snapshots import CreditSnapshotsPanel
from widgets.credit_strip import CompanyLimitsStrip
from widgets.formatting import money
from widgets.locking import try_lock
from widgets.records import ERROR_COLOUR, CoalescedLoad, error_text, set_tone, value_text
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.live import LiveMonitor
    from services.store import Store
    from widgets.limit_batch_dialog import LimitBatchDialog

__all__ = ["KIND", "USAGE_OK", "USAGE_OVER", "USAGE_WARN", "CreditDock", "CreditSnapshot", "load_credit",
           "short_money", "submit_limit", "usage_colour", "usage_text", "validate_limit"]

LIVE_MS = 2_000
STORE_MS = 10_000
TABS = ("Financing limits", "Credit groups", "Snapshots", "Client financing")



# ---------------------------------------------------------------------- the dock
class CreditDock(QWidget):
    """Financing limits, credit groups and company credit limits, with the adjust-limit form."""

    account_selected = Signal(int)  # engine account index of the current row
    submitted = Signal(int)  # the new change request's id
    refreshed = Signal()  # a store snapshot (groups, company limits) was applied

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.monitor: LiveMonitor | None = None
        self.snapshot: CreditSnapshot | None = None
        self._book: Any = None
        self._codes = self._names = self._search_text = np.zeros(0, str)
        self._ids = np.zeros(0, np.int64)
        self._loan = self._limit = self._equity = self._over = self._usage = np.zeros(0)
        self._credited = np.zeros(0, bool)
        self._code_index: dict[str, int] = {}
        self._cash_codes: set[str] = set()
        self.form_key: int | None = None
        self._submit_task: Task | None = None
        self.batch_dialog: LimitBatchDialog | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._fitted = False
        self._build_ui()
        self._live_timer = QTimer(self)
        self._live_timer.setInterval(LIVE_MS)
        self._live_timer.timeout.connect(self.tick)
        self._store_timer = QTimer(self)
        self._store_timer.setInterval(STORE_MS)
        self._store_timer.timeout.connect(self._load.request)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        self.strip = CompanyLimitsStrip()
        self.total_financing_label = self.strip.total_financing_label
        self.five_x_label = self.strip.five_x_label
        self.per_client_label = self.strip.per_client_label
        self.refresh_button = self.strip.refresh_button
        self.refresh_button.clicked.connect(lambda: self.refresh())
        lay.addWidget(self.strip)

        bar = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search account or client")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self._apply_filter())
        bar.addWidget(self.search, 1)
        self.over_only = QCheckBox("Over limit only")
        self.over_only.toggled.connect(lambda _on: self._apply_filter())
        bar.addWidget(self.over_only)
        self.summary = QLabel("")
        self.summary.setProperty("role", "caption")
        bar.addWidget(self.summary)
        self.bulk_button = QPushButton("Bulk update…")
        self.bulk_button.clicked.connect(self.open_bulk_update)
        bar.addWidget(self.bulk_button)

        self.model = ArrayTableModel([
            Column("Account", lambda k: self._codes[k]),
            Column("Client", lambda k: self._names[k]),
            number_column("Limit", lambda k: self._limit[k]),
            number_column("Loan", lambda k: self._loan[k]),
            number_column("Usage", lambda k: self._usage[k], fmt=usage_text, tooltip="loan / limit",
                          background=lambda k: usage_colour(float(self._usage[k]))),
            number_column("Over limit", lambda k: self._over[k], fmt=lambda v: money(v) if v > 0 else "",
                          foreground=lambda k: OVER_TEXT if self._over[k] > 0 else None),
            number_column("Equity", lambda k: self._equity[k]),
        ], self)
        self.view = make_table(self.model)
        self.view.setItemDelegateForColumn(4, UsageBarDelegate(self.view))
        self.view.sortByColumn(4, Qt.SortOrder.DescendingOrder)
        stretch_column(self.view, 1)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

        self.groups_panel = CreditGroupsPanel()
        self.group_model = self.groups_panel.model
        self.group_view = self.groups_panel.view
        self.groups_panel.submitted.connect(self.submitted)
        self.snapshots_panel = CreditSnapshotsPanel()
        self.financing_panel = ClientFinancingPanel()

        limits = QWidget()
        limits_lay = QVBoxLayout(limits)
        limits_lay.setContentsMargins(0, 4, 0, 0)
        limits_lay.addLayout(bar)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        split.addWidget(self._build_form())
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        limits_lay.addWidget(split, 1)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for page, title in zip((limits, self.groups_panel, self.snapshots_panel, self.financing_panel), TABS,
                               strict=True):
            self.tabs.addTab(page, title)
        self.tabs.currentChanged.connect(self._tab_changed)
        lay.addWidget(self.tabs, 1)
        self._loaded_tabs: set[int] = set()
        self._update_form()

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(260)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setVerticalSpacing(5)
        title = QLabel("Adjust limit")
        title.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(title, 0, 0, 1, 2)
        self.account_label = QLabel("Select an account")
        self.current_label = QLabel("")
        self.current_label.setProperty("role", "caption")
        self.current_label.setWordWrap(True)
        grid.addWidget(self.account_label, 1, 0, 1, 2)
        grid.addWidget(self.current_label, 2, 0, 1, 2)
        self.limit_edit = QLineEdit()
        self.limit_edit.setPlaceholderText("new limit (HKD)")
        self.limit_edit.textChanged.connect(self._edited)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        self.reason_edit.textChanged.connect(self._edited)
        limit_caption = QLabel("&New limit")
        limit_caption.setBuddy(self.limit_edit)
        reason_caption = QLabel("&Reason")
        reason_caption.setBuddy(self.reason_edit)
        grid.addWidget(limit_caption, 3, 0)
        grid.addWidget(self.limit_edit, 3, 1)
        grid.addWidget(reason_caption, 4, 0)
        grid.addWidget(self.reason_edit, 4, 1)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 5, 0, 1, 2)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 6, 0, 1, 2)
        self.submit_button = QPushButton("&Submit change request")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit)
        grid.addWidget(self.submit_button, 7, 0, 1, 2, Qt.AlignmentFlag.AlignRight)
        grid.setRowStretch(8, 1)
        grid.setColumnStretch(1, 1)
        self.limit_edit.returnPressed.connect(self.reason_edit.setFocus)
        self.reason_edit.returnPressed.connect(self.submit)
        return form

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner, monitor: LiveMonitor) -> None:
        self.store, self.user, self.tasks, self.monitor = store, user, tasks, monitor
        self.groups_panel.set_context(store, user, tasks)
        self.snapshots_panel.set_context(store, tasks)
        self.financing_panel.set_context(store, tasks)
        self._loaded_tabs.clear()
        self._book = None
        self.tick()
        self._tab_changed(self.tabs.currentIndex())
        self._load.request()
        self._live_timer.start()
        self._store_timer.start()

    def stop(self) -> None:
        self._live_timer.stop()
        self._store_timer.stop()
        self._load.cancel()
        self.groups_panel.stop()
        self.snapshots_panel.stop()
        self.financing_panel.stop()
        if self.batch_dialog is not None:
            self.batch_dialog.close()
        if self._submit_task is not None:
            self._submit_task.cancel()
        self._submit_task = None

    def refresh(self) -> None:
        """Re-read the live arrays now, and in the background the store's groups and company limits
        and the open tab's snapshots or client financing."""
        self.tick()
        if self.store is not None and self.user is not None and self.tasks is not None:
            self._load.request()
            if self.tabs.currentWidget() is self.snapshots_panel:
                self.snapshots_panel.refresh()
            elif self.tabs.currentWidget() is self.financing_panel:
                self.financing_panel.refresh()

    def _tab_changed(self, index: int) -> None:
        """A store-read tab loads the first time it is shown (later: its own Refresh or the dock's)."""
        if self.store is None or index in self._loaded_tabs:
            return
        page = self.tabs.widget(index)
        if page is self.snapshots_panel or page is self.financing_panel:
            self._loaded_tabs.add(index)
            page.refresh()

    def open_bulk_update(self) -> LimitBatchDialog | None:
        """Show the bulk limit update dialog (one per dock; raised again when already open)."""
        if self.store is None or self.user is None or self.tasks is None:
            return None
        from widgets.limit_batch_dialog import LimitBatchDialog

        if self.batch_dialog is None:
            self.batch_dialog = LimitBatchDialog(self.store, self.user, self.tasks, self)
            self.batch_dialog.batch_submitted.connect(self._batch_submitted)
            self.batch_dialog.finished.connect(self._batch_dialog_closed)
        self.batch_dialog.show()
        self.batch_dialog.raise_()
        self.batch_dialog.activateWindow()
        return self.batch_dialog

    def _batch_submitted(self, ids: list[int]) -> None:
        for rid in ids:
            self.submitted.emit(rid)

    def _batch_dialog_closed(self, _code: int) -> None:
        if self.batch_dialog is not None:
            self.batch_dialog.deleteLater()
        self.batch_dialog = None

    # ------------------------------------------------------------------ live arrays (GUI thread, 2 s)
    def tick(self) -> None:
        m = self.monitor
        if m is None:
            return
        with try_lock(m.lock) as held:
            if not held:
                return
            b = m.engine.book
            fresh = b is not self._book
            if fresh:
                self._book = b
                self._codes = np.array(b.acct_codes, dtype=str)
                self._code_index = {str(c): i for i, c in enumerate(b.acct_codes)}
                self._cash_codes = {str(c) for c, t in zip(b.acct_codes, np.asarray(b.acct_type).tolist(),
                                                            strict=True) if t == 0}
                self._names = np.array(b.client_names, dtype=str)
                self._search_text = np.char.lower(np.char.add(np.char.add(self._codes, " "), self._names))
                self._ids = (np.asarray(b.acct_ids, np.int64) if b.acct_ids is not None
                             else np.full(b.n_acct, -1, np.int64))
            loan, limit, equity = m.engine.loan.copy(), b.financing_limit.copy(), m.engine.equity.copy()
            margin_type = np.asarray(b.acct_type) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            usage = np.where(limit > 0, loan / limit, np.where(loan > 0, np.inf, 0.0))
        over = np.maximum(0.0, loan - limit)
        credited = margin_type & ((limit > 0) | (loan > 0))
        if fresh:
            changed = np.arange(loan.shape[0])
        else:
            changed = np.flatnonzero((loan != self._loan) | (limit != self._limit) | (equity != self._equity))
        self._loan, self._limit, self._equity, self._usage, self._over = loan, limit, equity, usage, over
        self._credited = credited
        if fresh:
            self.model.reset(np.flatnonzero(credited))
            self._apply_filter()
            if not self._fitted and self.model.rowCount():
                fit_columns(self.view, 220)
                self._fitted = True
        else:
            self.model.set_keys(np.flatnonzero(credited))
            if changed.size:
                self.model.update_rows(changed)
                header = self.view.horizontalHeader()
                if self.model.sort_column >= 0:
                    self.model.sort(self.model.sort_column, header.sortIndicatorOrder())
            self._update_summary()
        self._update_strip()
        self._update_form()

    def _filter(self, keys: np.ndarray) -> np.ndarray:
        mask = np.ones(keys.shape[0], bool)
        if self.over_only.isChecked():
            mask &= self._over[keys] > 0
        q = self.search.text().strip().lower()
        if q:
            mask &= np.char.find(self._search_text[keys], q) >= 0
        return mask

    def _apply_filter(self) -> None:
        active = self.over_only.isChecked() or bool(self.search.text().strip())
        self.model.set_filter(self._filter if active else None)
        self._update_summary()

    def _update_summary(self) -> None:
        n_over = int((self._over[self._credited] > 0).sum()) if self._credited.size else 0
        self.summary.setText(f"{self.model.rowCount()} of {int(self._credited.sum())} credited · "
                             f"{n_over} over limit")

    def _update_strip(self) -> None:
        self.strip.show_totals(self._loan, self._limit, self.snapshot.usage.company if self.snapshot else {})

    # ------------------------------------------------------------------ store snapshot (task, ~10 s)
    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None and self.monitor is not None
        m = self.monitor
        with m.lock:  # copies only: the task never reads arrays the feed thread writes
            b = m.engine.book
            view = SimpleNamespace(loan=m.engine.loan.copy(), book=SimpleNamespace(
                acct_ids=None if b.acct_ids is None else np.array(b.acct_ids), acct_codes=list(b.acct_codes),
                financing_limit=b.financing_limit.copy()))
        return self.tasks.run(load_credit, self.store, self.user, view, on_done=on_done, on_error=on_error,
                              name="credit usage")

    def _loaded(self, snap: CreditSnapshot) -> None:
        self.snapshot = snap
        idx = self._code_index
        members = {a for g in snap.groups for a in g.accounts if a in idx}
        self.groups_panel.set_accounts(set(idx), self._cash_codes, {a: float(self._loan[idx[a]]) for a in members})
        self.groups_panel.set_groups(snap.groups, snap.may_request)
        self._update_strip()
        self._update_form()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.summary.setText(f"refresh failed: {error_text(e)}")

    # ------------------------------------------------------------------ the adjust-limit form
    def select_account(self, code: str) -> bool:
        hits = np.flatnonzero(self._codes == code)
        row = self.model.row_of(int(hits[0])) if hits.size else -1
        if row < 0:
            return False
        self.view.selectRow(row)
        return True

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        key = self.model.key_at(current.row())
        if key != self.form_key:
            self.form_key = key
            self.message.hide()
            self._update_form()
        self.account_selected.emit(key)

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _problem(self) -> tuple[float | None, str]:
        """The new limit, or why the form cannot be submitted now (shown inline)."""
        if self.form_key is None:
            return None, ""
        if self.snapshot is not None and not self.snapshot.may_request:
            return None, "You may view limits but not request changes."
        if not self.limit_edit.text().strip():
            return None, ""
        return validate_limit(self.limit_edit.text(), float(self._limit[self.form_key]))

    def _update_form(self) -> None:
        k = self.form_key
        if k is None or k >= self._codes.shape[0]:
            self.account_label.setText("Select an account")
            self.current_label.setText("")
        else:
            self.account_label.setText(f"{self._codes[k]} · {self._names[k]}")
            self.current_label.setText(f"limit {money(self._limit[k])} · loan {money(self._loan[k])} · "
                                       f"equity {money(self._equity[k])} · usage {usage_text(self._usage[k])}")
        value, why = self._problem()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        self.limit_edit.setStyleSheet(f"border: 1px solid {ERROR_COLOUR}" if why and self.limit_edit.text().strip()
                                      else "")
        ok = value is not None and bool(self.reason_edit.text().strip()) and self._submit_task is None
        self.submit_button.setEnabled(ok)
        editable = k is not None and (self.snapshot is None or self.snapshot.may_request)
        self.limit_edit.setEnabled(editable)
        self.reason_edit.setEnabled(editable)
        may = self.snapshot is None or self.snapshot.may_request
        self.bulk_button.setEnabled(may)
        self.bulk_button.setToolTip("Upload a financing-limits file, review its rows, submit them as change requests"
                                    if may else "You may view limits but not request changes.")

    def submit(self) -> None:
        """Submit the typed limit as a change request; refused inline when the form is not valid."""
        if self.form_key is None or self.store is None or self.user is None or self.tasks is None:
            return
        if self._submit_task is not None:
            return
        value, why = self._problem()
        if value is None:
            self.validation.setText(why or "Enter the new limit.")
            self.validation.show()
            return
        reason = self.reason_edit.text().strip()
        if not reason:
            self.validation.setText("Give a reason: the checker decides on it.")
            self.validation.show()
            self.reason_edit.setFocus()
            return
        k = self.form_key
        account_id = int(self._ids[k])
        if account_id < 0:
            set_tone(self.message, "This book has no store ids: the limit cannot be requested here.")
            return
        code = str(self._codes[k])
        context = {"account": code, "client_name": str(self._names[k]), "current_limit": float(self._limit[k]),
                   "loan": float(self._loan[k]), "equity": float(self._equity[k])}
        set_tone(self.message, "Submitting…", "info")
        self._submit_task = self.tasks.run(
            submit_limit, self.store, self.user, account_id, value, reason, context,
            on_done=lambda rid: self._submitted(code, value, int(rid)), on_error=self._submit_failed,
            name="submit financing limit change")
        self._update_form()

    def _submitted(self, code: str, value: float, req_id: int) -> None:
        self._submit_task = None
        for edit in (self.limit_edit, self.reason_edit):
            edit.blockSignals(True)
            edit.clear()
            edit.blockSignals(False)
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval "
                               f"({code}: limit {value_text(value, 'amount')})", "ok")
        self._update_form()
        self.submitted.emit(req_id)

    def _submit_failed(self, e: BaseException) -> None:
        self._submit_task = None
        set_tone(self.message, error_text(e))
        self._update_form()
