"""The Audit dock, for auditors: the hash-chained audit trail filtered by time, actor and entity.

Records are read newest first (at most `ROW_LIMIT` per query) in the task runner. Selecting a record
shows its before and after side by side; opening it (double-click, Enter) shows the change request
it belongs to, read-only. "Verify chain" walks the whole chain in a worker and says in words whether
it holds (red, naming the first broken record, when it does not); "Export…" writes the filtered time
range to CSV or xlsx through `services.audit.export`, which audits the export itself.

The save-file question goes through the app's dialog service when it is not interactive (tests
answer it with a path); an interactive session shows a window-modal `QFileDialog` with `open()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, QDateTime, QEvent, QModelIndex, QObject, Qt, QTime, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from services.calendar import HK_TZ
from services.change_kinds import KIND_TABLES
from services.errors import AuthError
from widgets.change_dialog import ChangeRequestDialog
from widgets.diff_table import DiffTable
from widgets.records import (
    ERROR_COLOUR,
    MUTED_TEXT,
    OK_COLOUR,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    hk_time,
    parse_json,
    set_tone,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.audit import VerifyResult
    from services.auth import User
    from services.store import Store

ROW_LIMIT = 5000
RANGES = ("Last hour", "Today", "Last 7 days", "Last 30 days", "All time", "Custom range")
DEFAULT_RANGE = "Last 30 days"
ENTITIES = ("change_requests", *sorted(set(KIND_TABLES.values())), "users", "audit_log")
ENTITY_KINDS = {table: kind for kind, table in KIND_TABLES.items()}
ACTION_COLOURS = {
    "apply": "#3fb950", "approve": "#3fb950", "approve_step": "#56d364", "request": "#e3b341",
    "reject": "#f85149", "login_failed": "#f85149", "cancel": "#8b949e", "expire": "#8b949e",
    "export": "#58a6ff", "login": "#79c0ff",
}


# ---------------------------------------------------------------------- pure parts (no Qt)
@dataclass
class AuditSnapshot:
    rows: list[dict[str, Any]]
    actors: list[str] = field(default_factory=list)
    limited: bool = False


def load_audit(store: Store, user: User, start: datetime | None, end: datetime | None, actor: str | None,
               entity: str | None, limit: int = ROW_LIMIT) -> AuditSnapshot:
    """The filtered records newest first, and the known actors (task function; auditors only)."""
    from sqlalchemy import select

    from models import schema as S
    from services import audit
    from services.auth import permitted

    if not permitted(store, user, "view", "audit"):
        raise AuthError(f"{user.login} ({user.role_label}) may not view the audit trail")
    rows = audit.rows(store, start, end, actor or None, entity or None, limit=limit)
    with store.begin() as conn:
        actors = sorted({*conn.execute(select(S.users.c.login)).scalars(), "system"})
    return AuditSnapshot(rows, actors, len(rows) >= limit)


def range_bounds(choice: str, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """(start, end) in UTC of a preset range; Hong Kong days for "Today"."""
    now = now or datetime.now(UTC)
    if choice == "Last hour":
        return now - timedelta(hours=1), None
    if choice == "Today":
        local = now.astimezone(HK_TZ)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC), None
    if choice == "Last 7 days":
        return now - timedelta(days=7), None
    if choice == "Last 30 days":
        return now - timedelta(days=30), None
    return None, None


def as_fields(value: Any, label: str) -> dict[str, Any]:
    """An audit before/after as fields for the diff: JSON objects as they are, text under ``label``."""
    if isinstance(value, dict):
        return value
    return {} if value is None else {label: value}


# ---------------------------------------------------------------------- the dock
class AuditDock(QWidget):
    """The audit trail with filters, record detail, chain verification and export."""

    refreshed = Signal()
    verified = Signal(object)  # services.audit.VerifyResult
    exported = Signal(str, int)  # (path, records written)
    failed = Signal(str)  # an error shown inline (refresh, verify) or through the dialog service (export)
    request_opened = Signal(object)  # the read-only ChangeRequestDialog

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: AuditSnapshot | None = None
        self.dialogs: list[ChangeRequestDialog] = []
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._verify_task: Task | None = None
        self._export_task: Task | None = None
        self._fitted = False
        self._build_ui()
        self._debounce = QTimer(self, singleShot=True, interval=200)
        self._debounce.timeout.connect(self.refresh)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        bar = QHBoxLayout()
        bar.setSpacing(6)
        self.range_box = QComboBox()
        self.range_box.addItems(RANGES)
        self.range_box.setCurrentText(DEFAULT_RANGE)
        self.range_box.currentTextChanged.connect(self._range_changed)
        now = _hk_qdatetime(datetime.now(UTC))
        self.from_edit = QDateTimeEdit(now.addDays(-7))
        self.to_edit = QDateTimeEdit(now.addDays(1))
        for e in (self.from_edit, self.to_edit):
            e.setDisplayFormat("yyyy-MM-dd HH:mm")
            e.setCalendarPopup(True)
            e.dateTimeChanged.connect(lambda _d: self._debounce.start())
        self.actor_box = QComboBox()
        self.actor_box.addItem("All actors", "")
        self.actor_box.currentIndexChanged.connect(lambda _i: self._debounce.start())
        self.entity_box = QComboBox()
        self.entity_box.addItem("All entities", "")
        for entity in ENTITIES:
            self.entity_box.addItem(entity, entity)
        self.entity_box.currentIndexChanged.connect(lambda _i: self._debounce.start())
        for caption, w in (("Time", self.range_box), ("From", self.from_edit), ("to", self.to_edit),
                           ("Actor", self.actor_box), ("Entity", self.entity_box)):
            label = QLabel(caption)
            label.setProperty("role", "caption")
            bar.addWidget(label)
            bar.addWidget(w)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        bar.addWidget(self.refresh_button)
        bar.addStretch(1)
        self.verify_label = QLabel("")
        self.verify_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bar.addWidget(self.verify_label)
        self.verify_button = QPushButton("&Verify chain")
        self.verify_button.setToolTip("Check every record's hash and link from the first record on")
        self.verify_button.clicked.connect(self.verify)
        self.export_button = QPushButton("&Export…")
        self.export_button.setToolTip("Write the selected time range to CSV or xlsx (the export is audited)")
        self.export_button.clicked.connect(lambda: self.export())
        bar.addWidget(self.verify_button)
        bar.addWidget(self.export_button)
        lay.addLayout(bar)
        self._range_changed(DEFAULT_RANGE, refresh=False)

        self.model = RecordTableModel([
            Field("ID", "id", "number", fmt=lambda v: str(int(v))),
            Field("Time (HKT)", "ts", "time", fmt=lambda v: hk_time(v, seconds=True)),
            Field("Actor", "actor"),
            Field("Action", "action", foreground=lambda v: _colour(ACTION_COLOURS.get(str(v)))),
            Field("Entity", "entity"),
            Field("Key", "entity_key"),
            Field("Request", "request_id", "number", fmt=lambda v: f"#{int(v)}" if v == v else ""),
            Field("Workstation", "workstation"),
            Field("Hash", "hash", fmt=lambda v: str(v)[:16] + "…" if v else "",
                  foreground=lambda _v: MUTED_TEXT, tooltip="SHA-256 over the record and the previous hash"),
        ], self)
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        self.view.doubleClicked.connect(lambda _i: self.open_selected())
        self.view.installEventFilter(self)

        detail = QFrame()
        detail.setProperty("role", "card")
        dlay = QVBoxLayout(detail)
        dlay.setContentsMargins(10, 6, 10, 8)
        head = QHBoxLayout()
        self.detail_label = QLabel("Select a record")
        self.detail_label.setWordWrap(True)
        head.addWidget(self.detail_label, 1)
        self.open_button = QPushButton("Open request")
        self.open_button.setToolTip("Show the change request this record belongs to (Enter)")
        self.open_button.clicked.connect(self.open_selected)
        self.open_button.setEnabled(False)
        head.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignTop)
        dlay.addLayout(head)
        self.diff = DiffTable()
        for col, text in ((2, "Before"), (3, "After")):
            head_item = self.diff.horizontalHeaderItem(col)
            if head_item is not None:
                head_item.setText(text)
        dlay.addWidget(self.diff)
        dlay.addStretch(1)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.view)
        split.addWidget(detail)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        lay.addWidget(split, 1)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        lay.addWidget(self.message)
        self.count_label = QLabel("")
        self.count_label.setProperty("role", "caption")
        lay.addWidget(self.count_label)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.view and event.type() == QEvent.Type.KeyPress and event.key() in (  # type: ignore[attr-defined]
                Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.open_selected()
            return True
        return super().eventFilter(obj, event)

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def stop(self) -> None:
        self._debounce.stop()
        self._load.cancel()
        if self._verify_task is not None:
            self._verify_task.cancel()
        self._verify_task = None

    def filters(self) -> tuple[datetime | None, datetime | None, str | None, str | None]:
        """(start, end, actor, entity) as chosen; times in UTC."""
        choice = self.range_box.currentText()
        if choice == "Custom range":
            start: datetime | None = _to_utc(self.from_edit.dateTime())
            end: datetime | None = _to_utc(self.to_edit.dateTime())
        else:
            start, end = range_bounds(choice)
        return start, end, self.actor_box.currentData() or None, self.entity_box.currentData() or None

    def set_filters(self, range_choice: str | None = None, actor: str | None = None,
                    entity: str | None = None) -> None:
        """Choose filters programmatically (the main window, tests); refreshes once."""
        if range_choice is not None:
            self.range_box.setCurrentText(range_choice)
        if actor is not None:
            i = self.actor_box.findData(actor)
            if i < 0:
                self.actor_box.addItem(actor, actor)
                i = self.actor_box.count() - 1
            self.actor_box.setCurrentIndex(i)
        if entity is not None:
            self.entity_box.setCurrentIndex(max(0, self.entity_box.findData(entity)))
        self._debounce.stop()
        self.refresh()

    def _range_changed(self, choice: str, refresh: bool = True) -> None:
        custom = choice == "Custom range"
        self.from_edit.setEnabled(custom)
        self.to_edit.setEnabled(custom)
        if refresh:
            self._debounce.start()

    # ------------------------------------------------------------------ refresh
    def refresh(self) -> None:
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_audit, self.store, self.user, *self.filters(), on_done=on_done,
                                    on_error=on_error, name="audit records")

    def _loaded(self, snap: AuditSnapshot) -> None:
        self.snapshot = snap
        self.model.set_records(snap.rows)
        if not self._fitted and snap.rows:
            fit_columns(self.view, 220)
            self._fitted = True
        self._set_actors(snap.actors)
        n = len(snap.rows)
        self.count_label.setText(f"{n:,} records, newest first" + (
            f" — only the newest {n:,} are shown: narrow the filter" if snap.limited else ""))
        self.message.hide()
        if n and not self.view.selectionModel().hasSelection():
            self.view.selectRow(0)
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        set_tone(self.message, error_text(e))
        self.failed.emit(self.message.text())

    def _set_actors(self, actors: list[str]) -> None:
        have = {self.actor_box.itemData(i) for i in range(self.actor_box.count())}
        self.actor_box.blockSignals(True)
        for a in actors:
            if a not in have:
                self.actor_box.addItem(a, a)
        self.actor_box.blockSignals(False)

    def visible_ids(self) -> list[int]:
        return [int(k) for k in self.model.keys.tolist()]

    # ------------------------------------------------------------------ detail and request
    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rec = self.model.record_at(current.row()) if current.isValid() else None
        self.show_record(rec)

    def show_record(self, rec: dict[str, Any] | None) -> None:
        if rec is None:
            self.detail_label.setText("Select a record")
            self.diff.setRowCount(0)
            self.open_button.setEnabled(False)
            return
        colour = ACTION_COLOURS.get(rec["action"], "#c9d1d9")
        req = rec.get("request_id")
        self.detail_label.setText(
            f"<b>Record #{rec['id']}</b> · {hk_time(rec['ts'], seconds=True)} HKT · <b>{rec['actor']}</b> "
            f"<span style='color:{colour}'><b>{rec['action']}</b></span> {rec['entity']} "
            f"{rec['entity_key']}" + (f" · request #{req}" if req else "")
            + f"<br><span style='color:#8b949e'>workstation {rec['workstation'] or '—'} · hash {rec['hash']}</span>")
        comment_like = rec["action"] in ("approve", "approve_step", "reject")
        before = as_fields(parse_json(rec["before"]), "text")
        after = as_fields(parse_json(rec["after"]), "comment" if comment_like else "text")
        self.diff.set_diff(ENTITY_KINDS.get(rec["entity"], ""), {}, before, after, None, show_current=False)
        self.open_button.setEnabled(bool(req))
        self.open_button.setText(f"Open request #{req}" if req else "Open request")

    def open_selected(self) -> ChangeRequestDialog | None:
        idx = self.view.currentIndex()
        rec = self.model.record_at(idx.row()) if idx.isValid() else None
        if rec is None or not rec.get("request_id"):
            return None
        return self.open_request(int(rec["request_id"]))

    def open_request(self, req_id: int) -> ChangeRequestDialog | None:
        """The change request behind a record, read-only."""
        if self.store is None or self.user is None or self.tasks is None:
            return None
        for d in [d for d in self.dialogs if not d.isVisible()]:
            self.dialogs.remove(d)
            d.deleteLater()
        dlg = ChangeRequestDialog(self.store, self.user, self.tasks, req_id, self.window(), read_only=True)
        dlg.setWindowFlag(Qt.WindowType.Window, True)
        self.dialogs.append(dlg)
        dlg.show()
        self.request_opened.emit(dlg)
        return dlg

    # ------------------------------------------------------------------ verify and export
    def verify(self) -> None:
        """Walk the whole chain in a worker; the answer shows next to the button."""
        if self.store is None or self.tasks is None or self._verify_task is not None:
            return
        from services import audit

        self.verify_button.setEnabled(False)
        self.verify_label.setStyleSheet("color: #8b949e")
        self.verify_label.setText("verifying the chain…")
        self._verify_task = self.tasks.run(audit.verify, self.store, on_done=self._verified,
                                           on_error=self._verify_failed, name="audit verify")

    def _verified(self, result: VerifyResult) -> None:
        self._verify_task = None
        self.verify_button.setEnabled(True)
        if result.ok:
            self.verify_label.setStyleSheet(f"color: {OK_COLOUR}; font-weight: 600")
            self.verify_label.setText("✔ " + result.message())
        else:
            self.verify_label.setStyleSheet(f"color: white; background: {ERROR_COLOUR}; font-weight: 600; "
                                            "padding: 2px 8px; border-radius: 3px")
            self.verify_label.setText("✖ " + result.message())
        self.verify_label.setToolTip(result.message())
        self.verified.emit(result)

    def _verify_failed(self, e: BaseException) -> None:
        self._verify_task = None
        self.verify_button.setEnabled(True)
        self.verify_label.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.verify_label.setText("verify failed: " + error_text(e))
        self.failed.emit(self.verify_label.text())

    def export(self, path: str | Path | None = None) -> None:
        """Export the chosen time range to ``path`` (.csv or .xlsx); asks for a file when None."""
        if self.store is None or self.user is None or self.tasks is None or self._export_task is not None:
            return
        if path is None:
            self._ask_path(lambda p: self.export(p) if p else None)
            return
        from services import audit

        start, end, _actor, _entity = self.filters()
        p = str(path)
        self.export_button.setEnabled(False)
        self.count_label.setText(f"exporting to {Path(p).name}…")
        self._export_task = self.tasks.run(
            audit.export, self.store, p, self.user.login, start, end,
            on_done=lambda n: self._exported(p, int(n)), on_error=self._export_failed, name="audit export")

    def _ask_path(self, on_path: Any) -> None:
        from app.dialogs import DialogRequest, dialogs

        service = dialogs()
        default = f"audit-{datetime.now(HK_TZ):%Y%m%d-%H%M}.csv"
        if not service.interactive:
            service.ask(DialogRequest("save_file", "Export the audit trail", "Save the records to",
                                      data={"default": default, "filter": "CSV (*.csv);;Excel (*.xlsx)"},
                                      on_answer=on_path))
            return
        dlg = QFileDialog(self, "Export the audit trail", default, "CSV (*.csv);;Excel (*.xlsx)")
        dlg.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dlg.setDefaultSuffix("csv")
        dlg.fileSelected.connect(on_path)
        dlg.finished.connect(dlg.deleteLater)
        dlg.open()

    def _exported(self, path: str, n: int) -> None:
        self._export_task = None
        self.export_button.setEnabled(True)
        self.count_label.setText(f"exported {n:,} records to {path}")
        self.exported.emit(path, n)
        self.refresh()  # the export is itself an audit record

    def _export_failed(self, e: BaseException) -> None:
        from app.dialogs import dialogs

        self._export_task = None
        self.export_button.setEnabled(True)
        self.count_label.setText("")
        dialogs().error("Audit export failed", error_text(e))
        self.failed.emit(error_text(e))


def _hk_qdatetime(ts: datetime) -> QDateTime:
    local = ts.astimezone(HK_TZ)
    return QDateTime(QDate(local.year, local.month, local.day), QTime(local.hour, local.minute))


def _to_utc(dt: QDateTime) -> datetime:
    """A date-time typed in the edit (Hong Kong desk time) in UTC."""
    local: datetime = dt.toPython()  # type: ignore[assignment]
    return local.replace(tzinfo=HK_TZ).astimezone(UTC)


def _colour(name: str | None) -> Any:
    from PySide6.QtGui import QColor

    return QColor(name) if name else None
