"""Tables of margin-call work — notices, remarks, history (state before → after), exceptions and the
§2 snapshots — shared by the drill-down's Margin call tab and the Margin-call work dock.

`CallRecordsTabs` is the drill-down's part: the snapshot table it is given plus Notices, Remarks and
History of one call, read in one background query whenever the shown call changes, and Export… of
the call's snapshots to xlsx (off the GUI thread).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.lazy import lazy_module
from widgets.records import BADGE_TEXT, Field, RecordTableModel, error_text
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from services import call_work
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    call_work = lazy_module("services.call_work")

NOTICE_COLOURS = {"queued": QColor(176, 128, 10), "sent": QColor(35, 134, 54), "failed": QColor(178, 30, 38)}
EVENT_LABELS = {"open": "opened", "force": "force call", "met": "met", "eod": "end of day", "closed": "closed",
                "liquidated": "liquidated", "notice": "notice sent", "remark": "remark", "exception": "exception",
                "exc_cleared": "exception cleared", "deadline": "deadline moved"}


def _count(v: Any) -> str:
    return "" if v != v else f"{int(v):,}"


def _badge(colours: dict[str, QColor]) -> Callable[[Any], QColor | None]:
    return lambda v: colours.get(str(v))


NOTICE_FIELDS = [
    Field("Notice", "id", "number", fmt=_count), Field("Created", "created_at", "time"), Field("Account", "account"),
    Field("Client name", "client_name"), Field("To", "recipient"), Field("Call amount", "call_amount", "number"),
    Field("Deadline", "deadline"),
    Field("Status", "status", align=Qt.AlignmentFlag.AlignCenter, background=_badge(NOTICE_COLOURS),
          foreground=lambda v: BADGE_TEXT if str(v) in NOTICE_COLOURS else None),
    Field("Attempts", "attempts", "number", fmt=_count), Field("Sent", "sent_at", "time"),
    Field("By", "created_by"), Field("Error", "error"), Field("Delivered to", "location"),
    Field("Subject", "subject"),
]
REMARK_FIELDS = [Field("Time", "ts", "time"), Field("By", "author"), Field("Remark", "text")]
HISTORY_FIELDS = [
    Field("Time", "ts", "time"), Field("Call", "call_id", "number", fmt=_count), Field("Account", "account"),
    Field("Event", "event"), Field("Before", "before"), Field("After", "after"), Field("Detail", "detail"),
]
EXCEPTION_FIELDS = [
    Field("Account", "account"), Field("Client name", "client_name"), Field("Call", "call_id", "number", fmt=_count),
    Field("Status", "current_status"), Field("Call amount", "current_amount", "number"),
    Field("Deadline", "deadline"), Field("Reason", "reason"), Field("Marked by", "marked_by"),
    Field("Marked", "marked_at", "time"), Field("Cleared", "cleared_at", "time"), Field("Cleared by", "cleared_by"),
    Field("Clear reason", "clear_reason"),
]
SNAPSHOT_FIELDS = [
    Field("Time", "ts", "time"), Field("Account", "account"), Field("Client name", "client_name"),
    Field("Call", "call_id", "number", fmt=_count), Field("Snapshot", "kind"), Field("Status", "status"),
    Field("Equity", "equity", "number"), Field("IM", "im", "number"), Field("MM", "mm", "number"),
    Field("Loan", "loan", "number"), Field("Call amount", "call_amount", "number"),
    Field("Positions", "positions", "number", fmt=_count),
]


def history_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "event": EVENT_LABELS.get(r["kind"], r["kind"])} for r in rows]


def record_table(fields: list[Field], key: str = "id") -> tuple[RecordTableModel, QTableView]:
    model = RecordTableModel(fields, key=key)
    return model, make_table(model)


class CallRecordsTabs(QTabWidget):
    """Snapshots (the given view), Notices, Remarks and History of the call the drill-down shows."""

    loaded = Signal(int)  # call id
    exported = Signal(str, int)  # path, snapshots written

    def __init__(self, snapshot_view: QTableView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDocumentMode(True)
        self.store: Any = None
        self.run_task: Any = None
        self.call_id: int | None = None
        self.snapshot_ids: list[int] = []
        self._task: Any = None
        snaps = QWidget()
        sl = QVBoxLayout(snaps)
        sl.setContentsMargins(0, 2, 0, 0)
        bar = QHBoxLayout()
        self.export_note = QLabel("")
        self.export_note.setProperty("role", "caption")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write this call's snapshots (figures, positions, cash) to an xlsx")
        self.export_button.clicked.connect(self._export_clicked)
        self.export_button.setEnabled(False)
        bar.addWidget(self.export_note, 1)
        bar.addWidget(self.export_button)
        sl.addLayout(bar)
        sl.addWidget(snapshot_view, 1)
        self.addTab(snaps, "Snapshots")
        self.notices, self.notices_view = record_table(NOTICE_FIELDS)
        self.remarks, self.remarks_view = record_table(REMARK_FIELDS)
        self.history, self.history_view = record_table(HISTORY_FIELDS)
        self.addTab(self.notices_view, "Notices")
        self.addTab(self.remarks_view, "Remarks")
        self.addTab(self.history_view, "History")

    def set_source(self, store: Any, run_task: Any) -> None:
        self.store, self.run_task = store, run_task

    def set_user(self, login: str) -> None:
        """Who exports (audited); until login, the operating-system user."""
        self.login = login

    def load(self, call_id: int | None) -> None:
        """Show ``call_id``'s records (None: clear); a reply for a call no longer shown is dropped."""
        self.call_id = call_id
        self.snapshot_ids = []
        self.export_button.setEnabled(False)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if call_id is None or self.store is None or self.run_task is None:
            for m in (self.notices, self.remarks, self.history):
                m.set_records([])
            self._titles(0, 0, 0)
            return
        self._task = self.run_task(call_work.call_records, self.store, call_id,
                                   on_done=self._loaded, on_error=self._failed)

    def _loaded(self, rec: dict[str, Any]) -> None:
        self._task = None
        if rec["call_id"] != self.call_id:
            return
        self.snapshot_ids = list(rec["snapshot_ids"])
        self.export_button.setEnabled(bool(self.snapshot_ids))
        self.notices.set_records(rec["notices"])
        self.remarks.set_records(rec["remarks"])
        self.history.set_records(history_records(rec["history"]))
        self._titles(len(rec["notices"]), len(rec["remarks"]), len(rec["history"]))
        for view in (self.notices_view, self.remarks_view, self.history_view):
            fit_columns(view, 240)
        self.loaded.emit(int(rec["call_id"]))

    def _failed(self, e: BaseException) -> None:
        self._task = None
        self.export_note.setText(f"could not read the call's records: {error_text(e)}")

    def _titles(self, n: int, r: int, h: int) -> None:
        for i, (name, k) in enumerate((("Notices", n), ("Remarks", r), ("History", h)), start=1):
            self.setTabText(i, f"{name} ({k})" if k else name)

    # ------------------------------------------------------------------ export
    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export snapshots", f"call-{self.call_id}-snapshots.xlsx",
                                              "Excel workbook (*.xlsx)")
        if path:
            self.export_to(path)

    def export_to(self, path: str) -> None:
        if not self.snapshot_ids or self.run_task is None:
            return
        self.export_button.setEnabled(False)
        self.export_note.setText("exporting…")
        self.run_task(call_work.export_snapshots, self.store, list(self.snapshot_ids), path,
                      getattr(self, "login", "") or getpass.getuser(),
                      on_done=lambda n: self._exported(path, n), on_error=self._export_failed)

    def _exported(self, path: str, n: int) -> None:
        self.export_button.setEnabled(True)
        self.export_note.setText(f"{n} snapshot(s) written to {path}")
        self.exported.emit(path, n)

    def _export_failed(self, e: BaseException) -> None:
        self.export_button.setEnabled(True)
        self.export_note.setText(f"export failed: {e}")


def keys_of(model: RecordTableModel) -> np.ndarray:
    """The record keys in the view's current order (for exporting what is shown)."""
    return np.array([model.key_at(r) for r in range(model.rowCount())], np.int64)
