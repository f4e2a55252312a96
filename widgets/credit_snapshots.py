"""Credit snapshots (issue 4): every applied financing-limit change — when, which account and client,
the limit before and after, who made the request and which request it was — filtered by account or
client (part of the code or name) and by a from / to time in Hong Kong desk time.

The list is read from the audit trail (`services.credit.limit_history`) in the task runner; a filter
change waits 300 ms for the typing to settle, and only the newest read is shown.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, QDateTime, Qt, QTime, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDateTimeEdit,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services.calendar import HK_TZ
from services.lazy import lazy_module
from widgets.credit_parts import fit_and_stretch, stretch_column
from widgets.formatting import money
from widgets.records import OVERDUE_TEXT, CoalescedLoad, Field, RecordTableModel, error_text
from widgets.tables import make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.store import Store
    pass
    from services import credit as _credit
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    _credit = lazy_module("services.credit")

DEBOUNCE_MS = 300


def hk_qdatetime(ts: datetime) -> QDateTime:
    local = ts.astimezone(HK_TZ)
    return QDateTime(QDate(local.year, local.month, local.day), QTime(local.hour, local.minute))


def hk_to_utc(dt: QDateTime) -> datetime:
    """A date-time typed in an edit (Hong Kong desk time) as an aware UTC datetime."""
    local: datetime = dt.toPython()  # type: ignore[assignment]
    return local.replace(tzinfo=HK_TZ).astimezone(UTC)


def load_snapshots(store: Store, search: str, start: datetime | None, end: datetime | None
                   ) -> list[dict[str, Any]]:
    """Task function: the limit-change events, newest first, keyed for the table."""
    events = _credit.limit_history(store, start=start, end=end, search=search or None)
    return [{**e, "key": i} for i, e in enumerate(reversed(events))]


def _change_text(v: Any) -> str:
    return "" if v != v else (f"+{money(v)}" if v > 0 else money(v))


class CreditSnapshotsPanel(QWidget):
    """Limit-change events with account/client and time filters."""

    loaded = Signal(int)  # number of events shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.tasks: TaskRunner | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._failed)
        self._fitted = False
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.refresh)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Account or client (code or name)")
        self.search.setClearButtonEnabled(True)
        self.search.setMaximumWidth(360)
        bar.addWidget(self.search, 1)
        now = hk_qdatetime(datetime.now(UTC))
        self.from_check, self.to_check = QCheckBox("From"), QCheckBox("To")
        self.from_edit = QDateTimeEdit(now.addDays(-30))
        self.to_edit = QDateTimeEdit(now.addDays(1))
        for check, edit in ((self.from_check, self.from_edit), (self.to_check, self.to_edit)):
            edit.setDisplayFormat("yyyy-MM-dd HH:mm")
            edit.setCalendarPopup(True)
            edit.setEnabled(False)
            check.toggled.connect(edit.setEnabled)
            check.toggled.connect(lambda _on: self._debounce.start())
            edit.dateTimeChanged.connect(lambda _d: self._debounce.start())
            bar.addWidget(check)
            bar.addWidget(edit)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        bar.addWidget(self.refresh_button)
        self.summary = QLabel("")
        self.summary.setProperty("role", "caption")
        self.summary.setMinimumWidth(self.summary.fontMetrics().horizontalAdvance("99,999 limit changes") + 8)
        bar.addWidget(self.summary)
        bar.addStretch(1)
        lay.addLayout(bar)
        self.model = RecordTableModel([
            Field("Time (HK)", "ts", "time"),
            Field("Account", "account"),
            Field("Client", "client"),
            Field("Name", "client_name"),
            Field("Limit before", "before", "number", fmt=lambda v: "none" if v != v else money(v)),
            Field("Limit after", "after", "number", fmt=lambda v: "removed" if v != v else money(v)),
            Field("Change", "change", "number", fmt=_change_text,
                  foreground=lambda v: OVERDUE_TEXT if v == v and v < 0 else None),
            Field("Requested by", "by"),
            Field("Request", "request_id", "number", fmt=lambda v: "" if v != v else f"#{int(v)}"),
        ], self, key="key")
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        stretch_column(self.view, 3)
        lay.addWidget(self.view, 1)
        self.search.textChanged.connect(lambda _t: self._debounce.start())

    def set_context(self, store: Store, tasks: TaskRunner) -> None:
        self.store, self.tasks = store, tasks

    def refresh(self) -> None:
        self._debounce.stop()
        if self.store is not None and self.tasks is not None:
            self._load.request()

    def stop(self) -> None:
        self._debounce.stop()
        self._load.cancel()

    @property
    def busy(self) -> bool:
        return self._load.busy

    def time_window(self) -> tuple[datetime | None, datetime | None]:
        """The from / to filter in UTC (None where unchecked); ``to`` is exclusive."""
        start = hk_to_utc(self.from_edit.dateTime()) if self.from_check.isChecked() else None
        end = hk_to_utc(self.to_edit.dateTime()) + timedelta(minutes=1) if self.to_check.isChecked() else None
        return start, end

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        start, end = self.time_window()
        self.summary.setText("loading…")
        return self.tasks.run(load_snapshots, self.store, self.search.text().strip(), start, end,
                              on_done=on_done, on_error=on_error, name="credit snapshots")

    def _loaded(self, events: list[dict[str, Any]]) -> None:
        self.model.set_records(events)
        if not self._fitted and events:
            fit_and_stretch(self.view, 3, 200)
            self._fitted = True
        self.summary.setText(f"{len(events)} limit change{'s' if len(events) != 1 else ''}")
        self.loaded.emit(len(events))

    def _failed(self, e: BaseException) -> None:
        self.summary.setText(f"load failed: {error_text(e)}")
