"""The Approvals dock: change requests waiting for a decision, the user's own, and decided history.

The list is read in the task runner and shown through a keyed numpy model, so a refresh inserts and
removes rows by request id and keeps the selection. `start_listening` follows other workstations:
the `ChangeListener` thread (PostgreSQL LISTEN/NOTIFY, SQLite a cheap poll) reports through a Qt
signal — the vnpy `register_event` pattern, so the thread never touches a widget — and a short
debounce turns a burst of notifications into one refresh, well within a second. After a reconnect
(payload ``{"reload": True}``) the open four-eyes dialogs re-read their request too.

The count badge (`pending_count_changed`) counts what asks for this user's attention: the requests
they can decide now, or — for a user who cannot approve — every pending request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from widgets.change_dialog import ChangeRequestDialog
from widgets.formatting import CENTER
from widgets.records import (
    ERROR_COLOUR,
    MUTED_TEXT,
    OVERDUE_TEXT,
    CoalescedLoad,
    Field,
    RecordTableModel,
    change_summary,
    error_text,
    flow_text,
    hk_time,
    kind_label,
    status_badge,
    status_badge_text,
    target_text,
)
from widgets.request_view import AccountFigures, decision_block
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.changes import ChangeRequest
    from services.notify import ChangeListener
    from services.store import Store

log = logging.getLogger(__name__)

FILTERS = (("mine", "Mine"), ("to_approve", "To approve"), ("pending", "All pending"),
           ("history", "Decided history"))
HISTORY_LIMIT = 500
DEBOUNCE_MS = 150


# ---------------------------------------------------------------------- pure parts (no Qt)
@dataclass
class ApprovalsSnapshot:
    """Pending requests with their approvals so far, recent decided ones, and what the user may do."""

    pending: list[ChangeRequest]
    history: list[ChangeRequest]
    approved_by: dict[int, set[str]] = field(default_factory=dict)
    may_approve: dict[str, bool] = field(default_factory=dict)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def decidable(self, req: ChangeRequest, user: User) -> bool:
        return decision_block(req, user, self.may_approve.get(req.kind, False),
                              self.approved_by.get(req.id, set())) is None

    def select(self, which: str, user: User) -> list[ChangeRequest]:
        if which == "mine":
            return [r for r in self.pending if r.maker == user.login]
        if which == "to_approve":
            return [r for r in self.pending if self.decidable(r, user)]
        if which == "pending":
            return list(self.pending)
        return list(self.history)

    def attention_count(self, user: User) -> int:
        """What the badge shows: decidable requests, or all pending for a user who cannot approve."""
        if any(self.may_approve.values()):
            return len(self.select("to_approve", user))
        return len(self.pending)


def load_approvals(store: Store, user: User, history_limit: int = HISTORY_LIMIT) -> ApprovalsSnapshot:
    """Pending and recently decided requests, in a task (a few small queries)."""
    from sqlalchemy import select

    from models import schema as S
    from services import changes
    from services.auth import permitted

    pending = changes.listing(store, status="pending")
    history = [r for r in changes.listing(store, limit=history_limit + len(pending)) if r.status != "pending"]
    history.sort(key=lambda r: (r.decided_at or r.created_at), reverse=True)
    snap = ApprovalsSnapshot(pending, history[:history_limit])
    if pending:
        t = S.change_request_approvals
        with store.begin() as conn:
            for rid, checker in conn.execute(select(t.c.request_id, t.c.checker).where(
                    t.c.request_id.in_([r.id for r in pending]))):
                snap.approved_by.setdefault(int(rid), set()).add(str(checker))
    for kind in {r.kind for r in pending} | {"*"}:
        snap.may_approve[kind] = permitted(store, user, "approve", kind)
    return snap


def request_record(req: ChangeRequest, now: datetime) -> dict[str, Any]:
    overdue = req.status == "pending" and req.expires_at is not None and req.expires_at < now
    return {
        "id": req.id, "kind": kind_label(req.kind), "target": target_text(req), "change": change_summary(req),
        "maker": req.maker, "created": req.created_at, "status": "overdue" if overdue else req.status,
        "flow": flow_text(req), "expires": req.expires_at, "checker": req.checker or "",
        "decided": req.decided_at, "reason": req.reason,
    }


# ---------------------------------------------------------------------- the dock
class ApprovalsDock(QWidget):
    """Change requests by filter; double-click or Enter opens the four-eyes dialog."""

    pending_count_changed = Signal(int)  # the badge: see the module docstring
    refreshed = Signal()  # after each completed refresh
    requests_changed = Signal(bool)  # another workstation changed requests (True: after a reconnect)
    request_opened = Signal(object)  # the ChangeRequestDialog just shown
    request_decided = Signal(int, str)  # a decision made from this dock's dialog
    _notified = Signal(object)  # listener thread → GUI thread

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.account_figures: AccountFigures | None = None
        self.snapshot: ApprovalsSnapshot | None = None
        self.filter = "to_approve"
        self.pending_count = -1
        self.dialogs: dict[int, ChangeRequestDialog] = {}
        self._listener: ChangeListener | None = None
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._reload_dialogs = False
        self._fitted = False
        self._build_ui()
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self._notified_refresh)
        self._notified.connect(self._on_notified)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        bar = QHBoxLayout()
        bar.setSpacing(2)
        self.filter_group = QButtonGroup(self)
        self.filter_group.setExclusive(True)
        self.filter_buttons: dict[str, QToolButton] = {}
        for key, label in FILTERS:
            b = QToolButton()
            b.setText(label)
            b.setCheckable(True)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setStyleSheet("QToolButton { padding: 3px 10px; border: 1px solid #3a4350; background: #232a33; }"
                            "QToolButton:checked { background: #2663ab; border-color: #2f74c0; color: white; }")
            b.clicked.connect(lambda _c=False, k=key: self.set_filter(k))
            self.filter_group.addButton(b)
            self.filter_buttons[key] = b
            bar.addWidget(b)
        self.filter_buttons[self.filter].setChecked(True)
        bar.addSpacing(8)
        self.badge = QLabel("")
        self.badge.setToolTip("requests waiting for your decision")
        bar.addWidget(self.badge)
        bar.addStretch(1)
        self.status = QLabel("")
        self.status.setProperty("role", "caption")
        bar.addWidget(self.status)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Open the selected request (Enter or double-click)")
        self.open_button.clicked.connect(self.open_selected)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the requests again (F5)")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.open_button)
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)

        self.model = RecordTableModel([
            Field("ID", "id", "number", fmt=lambda v: str(int(v))),
            Field("Kind", "kind"),
            Field("Target", "target", tooltip="account, parameter or key the request changes"),
            Field("Change", "change", tooltip="before → after"),
            Field("Maker", "maker"),
            Field("Created", "created", "time", tooltip="Hong Kong time"),
            Field("Status", "status", align=CENTER, background=status_badge, foreground=status_badge_text),
            Field("Flow · step", "flow", tooltip="approval flow and the step waiting for a decision"),
            Field("Expires", "expires", "time", tooltip="Hong Kong time; overdue in orange",
                  foreground=lambda v: OVERDUE_TEXT if v == v and v < datetime.now(UTC).timestamp() else None),
            Field("Decided by", "checker"),
            Field("Decided", "decided", "time", tooltip="Hong Kong time"),
        ], self, row_foreground=lambda r: MUTED_TEXT if r.get("status") in ("cancelled", "expired") else None)
        self.view = make_table(self.model)
        self.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.view.doubleClicked.connect(lambda idx: self.open_row(idx.row()))
        self.view.installEventFilter(self)
        lay.addWidget(self.view, 1)
        self.empty = QLabel("")
        self.empty.setProperty("role", "caption")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(self.empty)
        self._columns_for_filter()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.view and event.type() == QEvent.Type.KeyPress and event.key() in (  # type: ignore[attr-defined]
                Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.open_selected()
            return True
        return super().eventFilter(obj, event)

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner,
                    account_figures: AccountFigures | None = None) -> None:
        """The store, the logged-in user and the app's task runner; starts the first refresh."""
        self.store, self.user, self.tasks = store, user, tasks
        self.account_figures = account_figures
        self.snapshot = None
        self.refresh()

    def start_listening(self, poll: float = 0.5) -> None:
        """Follow other workstations' requests and decisions (a `ChangeListener` thread)."""
        if self._listener is not None or self.store is None:
            return
        from services.notify import ChangeListener

        self._listener = ChangeListener(self.store, self._notified.emit, poll=poll)
        self._listener.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join the listener, drop pending refreshes (window close, logout)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
            listener.join(timeout)
        self._debounce.stop()
        self._load.cancel()

    @property
    def listening(self) -> bool:
        return self._listener is not None and self._listener.is_alive()

    def set_filter(self, which: str) -> None:
        """``mine`` · ``to_approve`` · ``pending`` · ``history``."""
        if which not in self.filter_buttons:
            raise ValueError(f"unknown filter {which!r}")
        self.filter = which
        self.filter_buttons[which].setChecked(True)
        self._columns_for_filter()
        self._show()

    # ------------------------------------------------------------------ refresh
    def refresh(self) -> None:
        """Read the requests again in the task runner (a refresh already running is followed by one)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_approvals, self.store, self.user, on_done=on_done,
                                    on_error=on_error, name="approvals")

    def _loaded(self, snap: ApprovalsSnapshot) -> None:
        self.snapshot = snap
        self._show()
        self.status.setStyleSheet("")
        self.status.setText(f"updated {hk_time(snap.loaded_at, seconds=True)[11:]}"
                            + (" · live" if self.listening else ""))
        self._sync_dialogs(snap)
        assert self.user is not None
        count = snap.attention_count(self.user)
        self._set_badge(count)
        if count != self.pending_count:
            self.pending_count = count
            self.pending_count_changed.emit(count)
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    def _on_notified(self, payload: Any) -> None:
        if self._listener is None:
            return  # stopped: a notification still queued is dropped
        if isinstance(payload, dict) and payload.get("reload"):
            self._reload_dialogs = True
        if not self._debounce.isActive():
            self._debounce.start()

    def _notified_refresh(self) -> None:
        full, self._reload_dialogs = self._reload_dialogs, False
        if full:
            for dlg in self.dialogs.values():
                if dlg.isVisible() and dlg.busy is None:
                    dlg.reload()
        self.refresh()
        self.requests_changed.emit(full)

    def _sync_dialogs(self, snap: ApprovalsSnapshot) -> None:
        """An open dialog whose request moved on (another checker decided it) re-reads it."""
        versions = {r.id: r.version for r in snap.pending + snap.history}
        for rid, dlg in self.dialogs.items():
            v = dlg.view
            if (dlg.isVisible() and dlg.busy is None and v is not None
                    and versions.get(rid, v.request.version) != v.request.version):
                dlg.reload()

    # ------------------------------------------------------------------ showing
    def _show(self) -> None:
        snap, user = self.snapshot, self.user
        if snap is None or user is None:
            self.model.set_records([])
            return
        now = datetime.now(UTC)
        rows = snap.select(self.filter, user)
        self.model.set_records([request_record(r, now) for r in rows])
        if not self._fitted and rows:
            fit_columns(self.view, 240)
            self._fitted = True
        for key, label in FILTERS:
            n = len(snap.select(key, user)) if key != "history" else None
            self.filter_buttons[key].setText(f"{label}  {n}" if n else label)
        self.empty.setText({"mine": "You have no pending requests.",
                            "to_approve": "Nothing waits for your decision.",
                            "pending": "No pending requests.",
                            "history": "No decided requests yet."}[self.filter] if not rows else "")
        self.empty.setVisible(not rows)
        if rows and not self.view.selectionModel().hasSelection():
            self.view.selectRow(0)

    def _set_badge(self, count: int) -> None:
        self.badge.setText(str(count) if count else "")
        self.badge.setVisible(count > 0)
        self.badge.setStyleSheet("background: #b08000; color: white; border-radius: 8px; padding: 1px 7px; "
                                 "font-weight: 700")

    def _columns_for_filter(self) -> None:
        history = self.filter == "history"
        for header, hide in (("Expires", history), ("Decided by", not history), ("Decided", not history)):
            self.view.setColumnHidden(self.model.column_of(header), hide)

    def visible_ids(self) -> list[int]:
        """Request ids in display order (tests, the main window's status bar)."""
        return [int(k) for k in self.model.keys.tolist()]

    def select_request(self, req_id: int) -> bool:
        row = self.model.row_of(int(req_id))
        if row < 0:
            return False
        self.view.selectRow(row)
        self.view.setFocus()
        return True

    # ------------------------------------------------------------------ opening
    def open_selected(self) -> ChangeRequestDialog | None:
        idx = self.view.currentIndex()
        return self.open_row(idx.row()) if idx.isValid() else None

    def open_row(self, row: int) -> ChangeRequestDialog | None:
        rec = self.model.record_at(row)
        return self.open_request(int(rec["id"])) if rec is not None else None

    def open_request(self, req_id: int, read_only: bool = False) -> ChangeRequestDialog | None:
        """Show the four-eyes dialog for ``req_id`` (modeless; reused while it is open)."""
        if self.store is None or self.user is None or self.tasks is None:
            return None
        self._prune_dialogs()
        dlg = self.dialogs.get(req_id)
        if dlg is None:
            dlg = ChangeRequestDialog(self.store, self.user, self.tasks, req_id, self.window(),
                                      read_only=read_only, account_figures=self.account_figures)
            dlg.setWindowFlag(Qt.WindowType.Window, True)
            dlg.decided.connect(self._decided)
            self.dialogs[req_id] = dlg
        elif not dlg.isVisible():
            dlg.reload()
        dlg.show()
        dlg.raise_()
        dlg.activateWindow()
        self.request_opened.emit(dlg)
        return dlg

    def _prune_dialogs(self) -> None:
        for rid, dlg in list(self.dialogs.items()):
            if not dlg.isVisible() and dlg.busy is None:
                del self.dialogs[rid]
                dlg.deleteLater()

    def _decided(self, req_id: int, status: str) -> None:
        text = {"approved": "approved and applied", "rejected": "rejected", "cancelled": "cancelled",
                "pending": "step approved, waiting for the next checker"}.get(status, status)
        self.status.setStyleSheet("")
        self.status.setText(f"request #{req_id} {text}")
        self.request_decided.emit(req_id, status)
        self.refresh()

