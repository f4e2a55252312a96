"""The lists dock (issue 4, "Lists"): blacklist, client groups and stock groups.

Nothing here writes the tables: every add, enable, disable, delete and membership change becomes a
four-eyes change request (`services.changes.submit`) that the Approvals dock decides. Rows a pending
request touches say so ("request #12 pending"), and a pending insert shows as its own row, so the
maker sees what waits. The form validates inline as it is typed: codes that exist, a reason, an
account already in the group or already blacklisted for the tag is refused with a message.

Every database call runs in the task runner; the worker functions are plain Python (no Qt) in
`services.lists_view`; each group tab is a `widgets.list_group_tab.GroupTab`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.lists_view import (
    TAGS,
    ListsSnapshot,
    load_lists,
    submit_blacklist_insert,
    validate_blacklist_add,
)
from widgets.formatting import CENTER
from widgets.list_group_tab import GroupTab
from widgets.records import (
    ERROR_COLOUR,
    MUTED_TEXT,
    OVERDUE_TEXT,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    message_label,
    set_tone,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.store import Store


# ---------------------------------------------------------------------- the dock
def _caption(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "caption")
    return label


class ListsDock(QWidget):
    """Blacklist, client groups and stock groups; every change a four-eyes change request."""

    submitted = Signal(int)  # the new change request's id
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: ListsSnapshot | None = None
        self.busy: Task | None = None  # the submit in flight (one at a time)
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._fitted = False
        self._build_ui()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(6)
        bar = QHBoxLayout()
        bar.addWidget(_caption("Lists change only through approved change requests (decided in Approvals)."), 1)
        self.status = _caption("")
        bar.addWidget(self.status)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)
        self.tabs = QTabWidget()
        lay.addWidget(self.tabs, 1)

        # blacklist tab
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.setContentsMargins(0, 4, 0, 0)
        self.bl_model = RecordTableModel([
            Field("Subject", "subject_text", tooltip="an account, or a client (all its accounts)"),
            Field("Tag", "tag"),
            Field("Enabled", "enabled_text", align=CENTER),
            Field("Remark", "remark"),
            Field("Request", "pending", foreground=lambda v: OVERDUE_TEXT if v else None,
                  tooltip="a change request waiting for approval in the Approvals dock"),
        ], self, row_foreground=lambda r: MUTED_TEXT if r.get("new") or not r.get("enabled") else None)
        self.bl_view = make_table(self.bl_model)
        self.bl_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.bl_view.selectionModel().currentRowChanged.connect(lambda *_: self._update_bl_form())
        pl.addWidget(self.bl_view, 1)
        card = QFrame()
        card.setProperty("role", "card")
        grid = QGridLayout(card)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(10)
        self.subject_combo = QComboBox()
        self.subject_combo.addItems(["Account", "Client"])
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText("account or client code")
        self.tag_combo = QComboBox()
        self.tag_combo.addItems(list(TAGS))
        self.remark_edit = QLineEdit()
        self.remark_edit.setPlaceholderText("remark (kept on the entry)")
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason for the change (shown to the checker)")
        grid.addWidget(QLabel("Subject"), 0, 0)
        grid.addWidget(self.subject_combo, 0, 1)
        grid.addWidget(self.code_edit, 0, 2)
        grid.addWidget(QLabel("Tag"), 0, 3)
        grid.addWidget(self.tag_combo, 0, 4)
        grid.addWidget(QLabel("Remark"), 1, 0)
        grid.addWidget(self.remark_edit, 1, 1, 1, 2)
        grid.addWidget(QLabel("Reason"), 1, 3)
        grid.addWidget(self.reason_edit, 1, 4)
        grid.setColumnStretch(2, 1)
        grid.setColumnStretch(4, 2)
        for w in (self.code_edit, self.remark_edit, self.reason_edit):
            w.textChanged.connect(self._bl_edited)
        for c in (self.subject_combo, self.tag_combo):
            c.currentIndexChanged.connect(self._bl_edited)
        self.bl_validation = QLabel("")
        self.bl_validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.bl_validation.setWordWrap(True)
        grid.addWidget(self.bl_validation, 2, 1, 1, 4)
        bottom = QHBoxLayout()
        self.bl_message = message_label()
        bottom.addWidget(self.bl_message, 1)
        bottom.addStretch(0)
        self.add_button = QPushButton("&Add entry")
        self.add_button.clicked.connect(self.add_blacklist)
        self.toggle_button = QPushButton("Disable")
        self.toggle_button.clicked.connect(self.toggle_blacklist)
        self.delete_button = QPushButton("&Delete")
        self.delete_button.clicked.connect(self.delete_blacklist)
        for b in (self.add_button, self.toggle_button, self.delete_button):
            b.setAutoDefault(False)
            bottom.addWidget(b, 0, Qt.AlignmentFlag.AlignTop)
        grid.addLayout(bottom, 3, 0, 1, 5)
        pl.addWidget(card)
        self.tabs.addTab(page, "Blacklist")

        self.client_tab = GroupTab(self, "client")
        self.stock_tab = GroupTab(self, "stock")
        self.tabs.addTab(self.client_tab, "Client groups")
        self.tabs.addTab(self.stock_tab, "Stock groups")
        self._update_bl_form()

    def group_tab(self, gk: str) -> GroupTab:
        return self.client_tab if gk == "client" else self.stock_tab

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()
        if self.busy is not None:
            self.busy.cancel()
        self.busy = None

    def refresh(self) -> None:
        """Read the lists again (connect `ApprovalsDock.requests_changed` here)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_lists, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="lists")

    def _loaded(self, snap: ListsSnapshot) -> None:
        self.snapshot = snap
        self.bl_model.set_records(snap.blacklist)
        if not self._fitted and snap.blacklist:
            fit_columns(self.bl_view, 300)
            self._fitted = True
        for tab in (self.client_tab, self.stock_tab):
            tab.loaded(snap)
        self.status.setStyleSheet("")
        self.status.setText("" if all(snap.may_request.values()) else "view only: you may not request list changes")
        self._update_bl_form()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    # ------------------------------------------------------------------ helpers for callers and tests
    def blacklist_records(self) -> list[dict[str, Any]]:
        return [r for r in (self.bl_model.record_at(i) for i in range(self.bl_model.rowCount())) if r]

    def group_names(self, gk: str) -> list[str]:
        return [g["name"] for g in (self.snapshot.groups.get(gk, []) if self.snapshot else [])]

    def member_codes(self, gk: str, group: str) -> list[str]:
        """Current members (not pending adds) of a group by name."""
        if self.snapshot is None:
            return []
        gid = next((int(g["id"]) for g in self.snapshot.groups.get(gk, []) if g["name"] == group), None)
        return [r["code"] for r in self.snapshot.members.get(gk, {}).get(gid or -1, []) if r["member"]]

    def select_group(self, gk: str, name: str) -> bool:
        tab = self.group_tab(gk)
        for row in range(tab.group_model.rowCount()):
            rec = tab.group_model.record_at(row)
            if rec and rec["name"] == name:
                tab.group_view.selectRow(row)
                return True
        return False

    def select_blacklist(self, entry_id: int) -> bool:
        row = self.bl_model.row_of(entry_id)
        if row < 0:
            return False
        self.bl_view.selectRow(row)
        return True

    def selected_blacklist(self) -> dict[str, Any] | None:
        idx = self.bl_view.currentIndex()
        return self.bl_model.record_at(idx.row()) if idx.isValid() else None

    # ------------------------------------------------------------------ blacklist form
    def _bl_edited(self) -> None:
        if self.bl_message.property("tone") != "info":
            self.bl_message.hide()
        self._update_bl_form()

    def _bl_problem(self) -> tuple[dict[str, Any] | None, str]:
        if self.snapshot is not None and not self.snapshot.may_request.get("blacklist", False):
            return None, "You may view the blacklist but not request changes."
        return validate_blacklist_add(self.snapshot, self.subject_combo.currentText(), self.code_edit.text(),
                                      self.tag_combo.currentText(), self.reason_edit.text())

    def _row_problem(self) -> tuple[dict[str, Any] | None, str]:
        r = self.selected_blacklist()
        if r is None:
            return None, "Select a blacklist entry."
        if r.get("pending_id"):
            return None, f"{r['pending']} already waits on this entry: decide or cancel it first."
        if not self.reason_edit.text().strip():
            return None, "Give a reason: the checker decides on it."
        return r, ""

    def _update_bl_form(self) -> None:
        after, why = self._bl_problem()
        self.bl_validation.setText(why)
        self.bl_validation.setVisible(bool(why))
        bad_code = bool(why) and bool(self.code_edit.text().strip()) and "reason" not in why.lower()
        self.code_edit.setStyleSheet(f"border: 1px solid {ERROR_COLOUR}" if bad_code else "")
        idle = self.busy is None
        self.add_button.setEnabled(after is not None and idle)
        r = self.selected_blacklist()
        self.toggle_button.setText("&Enable" if r is not None and not r["enabled"] else "Disa&ble")
        row_ok = self._row_problem()[0] is not None and not (r or {}).get("new") and idle and (
            self.snapshot is None or self.snapshot.may_request.get("blacklist", False))
        self.toggle_button.setEnabled(row_ok)
        self.delete_button.setEnabled(row_ok)
        for tab in (self.client_tab, self.stock_tab) if hasattr(self, "stock_tab") else ():
            tab.update_form()

    def _bl_refuse(self, why: str) -> None:
        self.bl_validation.setText(why)
        self.bl_validation.show()

    def add_blacklist(self) -> None:
        """Submit an insert request for the typed entry; refused inline when not valid."""
        after, why = self._bl_problem()
        if after is None:
            self._bl_refuse(why or "Enter the account or client code.")
            return
        after["remark"] = self.remark_edit.text().strip()
        code = self.code_edit.text().strip().upper()
        tag = self.tag_combo.currentText()
        self.run_submit(None, "blacklist", None, after, self.reason_edit.text(), "insert",
                        f"{code} blacklisted for {tag}", {"subject": code, "tag": tag})

    def toggle_blacklist(self) -> None:
        r, why = self._row_problem()
        if r is None or r.get("new"):
            self._bl_refuse(why or "That entry is not created yet: its request waits for approval.")
            return
        on = not r["enabled"]
        self.run_submit(None, "blacklist", {"id": int(r["id"])}, {"enabled": on}, self.reason_edit.text(),
                        "update", f"{'enable' if on else 'disable'} {r['subject']} {r['tag']}",
                        {"subject": r["subject"], "tag": r["tag"]})

    def delete_blacklist(self) -> None:
        r, why = self._row_problem()
        if r is None or r.get("new"):
            self._bl_refuse(why or "That entry is not created yet: its request waits for approval.")
            return
        self.run_submit(None, "blacklist", {"id": int(r["id"])}, {}, self.reason_edit.text(), "delete",
                        f"delete {r['subject']} {r['tag']}", {"subject": r["subject"], "tag": r["tag"]})

    # ------------------------------------------------------------------ submitting
    def run_submit(self, tab: GroupTab | None, kind: str, key: dict[str, Any] | None, after: dict[str, Any],
                   reason: str, op: str, what: str, context: dict[str, Any]) -> None:
        """Submit one change request in the task runner (key None: a new blacklist row)."""
        if self.store is None or self.user is None or self.tasks is None or self.busy is not None:
            return
        from services import changes

        message = tab.message if tab is not None else self.bl_message
        set_tone(message, "Submitting…", "info")
        if key is None:
            fn: Any = submit_blacklist_insert
            args: tuple[Any, ...] = (self.store, self.user, after, reason.strip(), context)
        else:
            fn = changes.submit
            args = (self.store, self.user, kind, key, after, reason.strip(), op, None, context)
        self.busy = self.tasks.run(fn, *args, on_done=lambda rid: self._submitted(tab, int(rid), what),
                                   on_error=lambda e: self._submit_failed(tab, e), name=f"submit {kind}")
        self._update_bl_form()

    def _submitted(self, tab: GroupTab | None, rid: int, what: str) -> None:
        self.busy = None
        if tab is not None:
            tab.submitted(rid, what)
        else:
            for e in (self.code_edit, self.remark_edit, self.reason_edit):
                e.blockSignals(True)
                e.clear()
                e.blockSignals(False)
            set_tone(self.bl_message, f"request #{rid} submitted — awaiting approval ({what}).", "ok")
        self._update_bl_form()
        self.submitted.emit(rid)
        self.refresh()

    def _submit_failed(self, tab: GroupTab | None, e: BaseException) -> None:
        self.busy = None
        set_tone(tab.message if tab is not None else self.bl_message, error_text(e))
        self._update_bl_form()
        self.refresh()
