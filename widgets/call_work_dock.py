"""The Margin-call work dock (issue 8): the outbox of client notices (status, resend failed), the
exceptions list, the call history (each event with the call's state before and after; filter by
account and date) and the §2 snapshots (filter, export to xlsx).

Everything is read in one background query (`load_call_work`) and refreshed after any call action,
approval or Refresh; the main window gives the alerts dock's call actions the login and has this dock
`follow` them; a double-click on any row shows the account in the drill-down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services import call_work, notices
from services.calendar import HK_TZ
from widgets.call_actions import CallActions, notice_folder, set_notice_folder, why
from widgets.call_history import (
    EXCEPTION_FIELDS,
    HISTORY_FIELDS,
    NOTICE_FIELDS,
    SNAPSHOT_FIELDS,
    history_records,
    keys_of,
    record_table,
)
from widgets.records import CoalescedLoad, RecordTableModel, set_tone
from widgets.tables import fit_columns

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.live import LiveMonitor
    from services.store import Store

OUTBOX_FILTERS = ("All notices", "Queued", "Sent", "Failed")


@dataclass
class WorkFilters:
    notice_status: str | None = None
    show_cleared: bool = False
    history_account: str = ""
    history_since: date | None = None
    history_until: date | None = None
    snapshot_account: str = ""
    snapshot_since: date | None = None
    snapshot_until: date | None = None


@dataclass
class CallWork:
    notices: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)


def load_call_work(store: Store, f: WorkFilters) -> CallWork:
    """The four lists of the dock (runs on the task runner)."""
    return CallWork(
        notices.outbox(store, status=f.notice_status),
        call_work.exceptions(store, active_only=not f.show_cleared),
        history_records(call_work.call_history(store, account=f.history_account or None, since=f.history_since,
                                               until=f.history_until)),
        [{k: v for k, v in r.items() if k != "payload"} for r in call_work.snapshots(
            store, account=f.snapshot_account or None, since=f.snapshot_since, until=f.snapshot_until)])


def _qdate(d: date) -> QDate:
    return QDate(d.year, d.month, d.day)


def _pydate(q: QDate) -> date:
    return date(q.year(), q.month(), q.day())


class _Range(QWidget):
    """Account, from and to dates, and Apply: the filter bar of the history and snapshot tabs."""

    applied = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        today = datetime.now(HK_TZ).date()
        self.account = QLineEdit()
        self.account.setPlaceholderText("Account (all)")
        self.account.setClearButtonEnabled(True)
        self.account.setMaximumWidth(160)
        self.since, self.until = QDateEdit(_qdate(today - timedelta(days=30))), QDateEdit(_qdate(today))
        for d in (self.since, self.until):
            d.setCalendarPopup(True)
            d.setDisplayFormat("yyyy-MM-dd")
        self.apply = QPushButton("Apply")
        self.apply.clicked.connect(self.applied.emit)
        self.account.returnPressed.connect(self.applied.emit)
        for w in (QLabel("Account"), self.account, QLabel("From"), self.since, QLabel("to"), self.until, self.apply):
            lay.addWidget(w)
        lay.addStretch(1)

    def values(self) -> tuple[str, date, date]:
        return self.account.text().strip(), _pydate(self.since.date()), _pydate(self.until.date())


class CallWorkDock(QWidget):
    account_selected = Signal(int)
    refreshed = Signal()
    message = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.monitor: LiveMonitor | None = None
        self.data = CallWork()
        self._load = CoalescedLoad(self._start_load, self._loaded, self._failed)
        self.call_actions = CallActions(self)  # Remark… and Clear exception… on the Exceptions tab
        self.call_actions.changed.connect(self._worked)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        lay.addWidget(self.note)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        lay.addWidget(self.tabs, 1)
        self._build_outbox()
        self._build_exceptions()
        self._build_history()
        self._build_snapshots()

    # ------------------------------------------------------------------ UI
    def _page(self, title: str, bar: QHBoxLayout | QWidget, view: QTableView) -> None:
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.setContentsMargins(0, 4, 0, 0)
        if isinstance(bar, QWidget):
            pl.addWidget(bar)
        else:
            pl.addLayout(bar)
        pl.addWidget(view, 1)
        view.doubleClicked.connect(lambda idx, v=view: self._activated(v, idx.row()))
        self.tabs.addTab(page, title)

    def _build_outbox(self) -> None:
        bar = QHBoxLayout()
        self.outbox_filter = QComboBox()
        self.outbox_filter.addItems(OUTBOX_FILTERS)
        self.outbox_filter.currentIndexChanged.connect(lambda _i: self.refresh())
        self.folder_label = QLabel("")
        self.folder_label.setProperty("role", "caption")
        self.folder_button = QPushButton("Folder…")
        self.folder_button.setToolTip("Choose the folder the .eml notices are written to (remembered)")
        self.folder_button.clicked.connect(self._choose_folder)
        self._show_folder()
        self.resend_button = QPushButton("Resend failed")
        self.resend_button.setToolTip("Deliver every failed or still queued notice again")
        self.resend_button.clicked.connect(self.resend_failed)
        for w in (QLabel("Status"), self.outbox_filter):
            bar.addWidget(w)
        bar.addWidget(self.folder_label, 1)
        bar.addWidget(self.folder_button)
        bar.addWidget(self.resend_button)
        self.outbox, self.outbox_view = record_table(NOTICE_FIELDS)
        self._page("Outbox", bar, self.outbox_view)

    def _build_exceptions(self) -> None:
        bar = QHBoxLayout()
        self.show_cleared = QCheckBox("Show cleared")
        self.show_cleared.toggled.connect(lambda _on: self.refresh())
        self.remark_button = QPushButton("Remark…")
        self.clear_button = QPushButton("Clear exception…")
        self.remark_button.clicked.connect(lambda: self._act_on_exception("remark"))
        self.clear_button.clicked.connect(lambda: self._act_on_exception("exception"))
        bar.addWidget(self.show_cleared)
        bar.addStretch(1)
        bar.addWidget(self.remark_button)
        bar.addWidget(self.clear_button)
        self.exceptions, self.exceptions_view = record_table(EXCEPTION_FIELDS)
        self._page("Exceptions", bar, self.exceptions_view)

    def _build_history(self) -> None:
        self.history_range = _Range()
        self.history_range.applied.connect(self.refresh)
        self.history, self.history_view = record_table(HISTORY_FIELDS)
        self._page("Call history", self.history_range, self.history_view)

    def _build_snapshots(self) -> None:
        bar = QWidget()
        bl = QHBoxLayout(bar)
        bl.setContentsMargins(0, 0, 0, 0)
        self.snapshot_range = _Range()
        self.snapshot_range.applied.connect(self.refresh)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write the listed snapshots (figures, positions, cash) to an xlsx")
        self.export_button.clicked.connect(self._export_clicked)
        bl.addWidget(self.snapshot_range, 1)
        bl.addWidget(self.export_button)
        self.snapshots, self.snapshots_view = record_table(SNAPSHOT_FIELDS)
        self._page("Snapshots", bar, self.snapshots_view)

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.call_actions.set_context(store, user, tasks)
        self.refresh()

    def follow(self, actions: CallActions) -> None:
        """Show and refresh after the work done through another dock's call actions (the alerts dock's)."""
        actions.changed.connect(self._worked)

    def set_monitor(self, monitor: LiveMonitor) -> None:
        self.monitor = monitor
        self.call_actions.set_monitor(monitor)

    def stop(self) -> None:
        self._load.cancel()

    def refresh(self) -> None:
        if self.store is None or self.tasks is None:
            return
        self._load.request()

    def filters(self) -> WorkFilters:
        status = self.outbox_filter.currentText().lower()
        ha, hs, hu = self.history_range.values()
        sa, ss, su = self.snapshot_range.values()
        return WorkFilters(None if status.startswith("all") else status, self.show_cleared.isChecked(),
                           ha, hs, hu, sa, ss, su)

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_call_work, self.store, self.filters(), on_done=on_done, on_error=on_error,
                              name="margin-call work")

    def _loaded(self, data: CallWork) -> None:
        first = not self.data.notices and not self.data.history
        self.data = data
        for model, rows in ((self.outbox, data.notices), (self.exceptions, data.exceptions),
                            (self.history, data.history), (self.snapshots, data.snapshots)):
            model.set_records(rows)
        failed = sum(1 for n in data.notices if n["status"] == "failed")
        self.tabs.setTabText(0, f"Outbox ({failed} failed)" if failed else "Outbox")
        self.tabs.setTabText(1, f"Exceptions ({sum(1 for x in data.exceptions if x['active'])})")
        self.resend_button.setEnabled(failed > 0)
        self.export_button.setEnabled(bool(data.snapshots))
        if first:
            for view in (self.outbox_view, self.exceptions_view, self.history_view, self.snapshots_view):
                fit_columns(view, 240)
        self.refreshed.emit()

    def _failed(self, e: BaseException) -> None:
        self.show_note(f"refresh failed: {why(e)}", "error")

    def show_note(self, text: str, tone: str = "info") -> None:
        set_tone(self.note, text, tone)

    def _worked(self, text: str) -> None:
        self.show_note(text, "error" if "FAILED" in text or text.startswith("Cannot") else "ok")
        self.message.emit(text)
        win = self.window()
        if isinstance(win, QMainWindow):
            win.statusBar().showMessage(text, 15_000)
        self.refresh()
        drill = getattr(self.window(), "drilldown", None)
        if drill is not None and hasattr(drill, "refresh"):
            drill.refresh()

    # ------------------------------------------------------------------ actions
    def _selected(self, model: RecordTableModel, view: QTableView) -> dict[str, Any] | None:
        idx = view.selectionModel().currentIndex() if view.selectionModel() else None
        return model.record_at(idx.row()) if idx is not None and idx.isValid() else None

    def _act_on_exception(self, kind: str) -> None:
        rec = self._selected(self.exceptions, self.exceptions_view)
        if rec is None:
            self.show_note("Select an exception first", "warn")
            return
        self.call_actions.open(kind, call_id=int(rec["call_id"]))

    def _show_folder(self) -> None:
        self.folder_label.setText(f"Notices are written to {notice_folder() or notices.default_notice_folder()}")

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for margin-call notices",
                                                notice_folder() or str(notices.default_notice_folder()))
        if path:
            self.set_folder(path)

    def set_folder(self, path: str) -> None:
        """Write .eml notices to ``path`` from now on (this workstation; "" = the default folder)."""
        set_notice_folder(path)
        self._show_folder()

    def resend_failed(self) -> None:
        if self.tasks is None:
            return
        self.resend_button.setEnabled(False)
        self.tasks.run(notices.resend_failed, self.store, self.user, self.call_actions.sender(),
                       on_done=self._resent, on_error=lambda e: self.show_note(why(e), "error"), name="resend")

    def _resent(self, done: list[Any]) -> None:
        ok = sum(1 for n in done if n.status == "sent")
        self._worked(f"Resent {len(done)} notice(s): {ok} sent" + (f", {len(done) - ok} failed again"
                                                                   if ok < len(done) else ""))

    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export snapshots", "margin-call-snapshots.xlsx",
                                              "Excel workbook (*.xlsx)")
        if path:
            self.export_snapshots_to(path)

    def export_snapshots_to(self, path: str) -> None:
        """The listed snapshots, in the table's order, to ``path`` (in the background)."""
        if self.tasks is None or self.user is None:
            return
        ids = keys_of(self.snapshots).tolist()
        self.export_button.setEnabled(False)
        self.tasks.run(call_work.export_snapshots, self.store, ids, path, self.user.login,
                       on_done=lambda n: self._exported(path, n),
                       on_error=self._export_failed, name="export snapshots")

    def _export_failed(self, e: BaseException) -> None:
        self.export_button.setEnabled(True)
        self.show_note(f"export failed: {why(e)}", "error")

    def _exported(self, path: str, n: int) -> None:
        self.export_button.setEnabled(True)
        self.show_note(f"{n} snapshot(s) written to {path}", "ok")
        self.message.emit(f"{n} snapshot(s) written to {path}")

    def _activated(self, view: QTableView, row: int) -> None:
        model = view.model()
        rec = model.record_at(row) if isinstance(model, RecordTableModel) else None
        if rec is None or self.monitor is None:
            return
        a = self.monitor.engine.book.acct_index.get(str(rec.get("account", "")))
        if a is not None:
            self.account_selected.emit(int(a))
