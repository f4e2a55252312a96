"""The lists dock (issue 4, "Lists"): blacklist, client groups and stock groups.

Nothing here writes the tables: every add, enable, disable, delete and membership change becomes a
four-eyes change request (`services.changes.submit`) that the Approvals dock decides. Rows a pending
request touches say so ("request #12 pending"), and a pending insert shows as its own row, so the
maker sees what waits. The form validates inline as it is typed: codes that exist, a reason, an
account already in the group or already blacklisted for the tag is refused with a message.

Every database call runs in the task runner; the worker functions below are plain Python (no Qt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
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

from widgets.formatting import CENTER
from widgets.records import (
    ERROR_COLOUR,
    MUTED_TEXT,
    OVERDUE_TEXT,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    set_tone,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.store import Store

TAGS = ("Credit", "Asset Transfer")
GROUP_KINDS = {  # tab key -> (request kind, member column, what a member is)
    "client": ("client_group_member", "account_id", "account"),
    "stock": ("stock_group_member", "security_id", "security"),
}


# ---------------------------------------------------------------------- pure parts (no Qt)
@dataclass
class ListsSnapshot:
    """Everything the dock shows, read in one task."""

    blacklist: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "client"/"stock" -> groups
    members: dict[str, dict[int, list[dict[str, Any]]]] = field(default_factory=dict)  # kind -> group -> rows
    accounts: dict[str, int] = field(default_factory=dict)  # code -> id
    clients: dict[str, int] = field(default_factory=dict)
    securities: dict[str, int] = field(default_factory=dict)
    may_request: dict[str, bool] = field(default_factory=dict)


def load_lists(store: Store, user: User) -> ListsSnapshot:
    """Blacklist, groups with members, codes and the pending requests on them (task function)."""
    from sqlalchemy import text

    from services import changes
    from services.auth import permitted

    snap = ListsSnapshot()
    with store.begin() as conn:
        snap.accounts = {r.code: int(r.id) for r in conn.execute(text("select id, code from accounts"))}
        snap.clients = {r.code: int(r.id) for r in conn.execute(text("select id, code from clients"))}
        snap.securities = {r.code: int(r.id) for r in conn.execute(text("select id, code from securities"))}
        acc_info = {int(r.id): (r.code, r.name or "", r.type) for r in conn.execute(text(
            "select a.id, a.code, a.type, c.name from accounts a join clients c on c.id = a.client_id"))}
        client_code = {v: k for k, v in snap.clients.items()}
        sec_info = {int(r.id): (r.code, r.name or "", r.market) for r in conn.execute(text(
            "select id, code, name, market from securities"))}
        bl = [dict(r._mapping) for r in conn.execute(text(
            "select id, account_id, client_id, tag, enabled, remark from blacklist order by id"))]
        groups = {
            "client": [dict(r._mapping) for r in conn.execute(text("select id, name from client_groups order by name"))],
            "stock": [dict(r._mapping) for r in conn.execute(text("select id, name from stock_groups order by name"))],
        }
        member_rows = {
            "client": [(int(r[0]), int(r[1])) for r in conn.execute(text(
                "select group_id, account_id from client_group_members"))],
            "stock": [(int(r[0]), int(r[1])) for r in conn.execute(text(
                "select group_id, security_id from stock_group_members"))],
        }
    pending = [r for r in changes.listing(store, status="pending")
               if r.kind in ("blacklist", "client_group_member", "stock_group_member")]

    def subject(account_id: Any, client_id: Any) -> tuple[str, str]:
        if account_id is not None:
            return "Account", acc_info.get(int(account_id), (f"#{account_id}",))[0]
        return "Client", client_code.get(int(client_id), f"#{client_id}")

    bl_pending: dict[int, tuple[int, str]] = {}
    for req in reversed(pending):  # oldest first, so the newest request wins
        if req.kind == "blacklist" and "id" in req.target_key:
            bl_pending[int(req.target_key["id"])] = (req.id, req.op)
    for r in bl:
        r["subject_kind"], r["subject"] = subject(r["account_id"], r["client_id"])
        r["enabled"] = bool(r["enabled"])
        p = bl_pending.pop(int(r["id"]), None)
        r["pending_id"] = p[0] if p else None
        r["pending"] = f"request #{p[0]} pending ({'disable' if r['enabled'] else 'enable'})" if p and p[1] == "update" \
            else (f"request #{p[0]} pending (delete)" if p else "")
    for req in pending:  # pending inserts: a row of their own
        if req.kind == "blacklist" and req.op == "insert" and int(req.target_key.get("id", -1)) in bl_pending:
            a = req.after
            kind, code = subject(a.get("account_id"), a.get("client_id"))
            bl.append({"id": int(req.target_key["id"]), "account_id": a.get("account_id"),
                       "client_id": a.get("client_id"), "tag": a.get("tag", ""), "enabled": bool(a.get("enabled", True)),
                       "remark": a.get("remark", ""), "subject_kind": kind, "subject": code, "new": True,
                       "pending_id": req.id, "pending": f"request #{req.id} pending (new)"})
    for r in bl:
        r["enabled_text"] = "Yes" if r["enabled"] else "No"
        r["subject_text"] = f"{r['subject']} ({r['subject_kind'].lower()})"
    snap.blacklist = bl

    for gk, (kind, col, _what) in GROUP_KINDS.items():
        info = acc_info if gk == "client" else sec_info
        by_group: dict[int, dict[int, dict[str, Any]]] = {int(g["id"]): {} for g in groups[gk]}

        def row(mid: int, info: dict[int, tuple[str, str, str]] = info) -> dict[str, Any]:
            code, name, extra = info.get(mid, (f"#{mid}", "", ""))
            return {"id": mid, "code": code, "name": name, "extra": extra, "pending": "", "pending_id": None,
                    "member": True}

        for gid, mid in member_rows[gk]:
            by_group.setdefault(gid, {})[mid] = row(mid)
        for req in reversed(pending):
            if req.kind != kind or "group_id" not in req.target_key:
                continue
            gid, mid = int(req.target_key["group_id"]), int(req.target_key[col])
            rows = by_group.setdefault(gid, {})
            if mid not in rows:
                rows[mid] = {**row(mid), "member": False}
            rows[mid]["pending_id"] = req.id
            rows[mid]["pending"] = f"request #{req.id} pending ({'add' if req.op == 'insert' else 'remove'})"
        snap.members[gk] = {gid: sorted(members.values(), key=lambda r: r["code"])
                            for gid, members in by_group.items()}
        for g in groups[gk]:
            listed = snap.members[gk].get(int(g["id"]), [])
            g["members"] = sum(1 for r in listed if r["member"])
            n = sum(1 for r in listed if r["pending_id"])
            g["pending"] = f"{n} pending" if n else ""
        snap.groups[gk] = groups[gk]
        snap.may_request[kind] = permitted(store, user, "request", kind)
    snap.may_request["blacklist"] = permitted(store, user, "request", "blacklist")
    return snap


def validate_blacklist_add(snap: ListsSnapshot | None, subject_kind: str, code: str, tag: str,
                           reason: str) -> tuple[dict[str, Any] | None, str]:
    """(the new row's values, "") for an acceptable blacklist entry, else (None, why not)."""
    code = code.strip().upper()
    if snap is None:
        return None, "Loading…"
    if not code:
        return None, ""
    codes = snap.accounts if subject_kind == "Account" else snap.clients
    if code not in codes:
        return None, f"Unknown {subject_kind.lower()} “{code}”."
    if tag not in TAGS:
        return None, f"Tag must be one of {', '.join(TAGS)}."
    col = "account_id" if subject_kind == "Account" else "client_id"
    for r in snap.blacklist:
        if r.get(col) is not None and int(r[col]) == codes[code] and r["tag"] == tag:
            what = r["pending"] or ("enabled" if r["enabled"] else "disabled")
            return None, f"{code} already has a {tag} blacklist entry ({what})."
    if not reason.strip():
        return None, "Give a reason: the checker decides on it."
    return {col: codes[code], "tag": tag, "enabled": True}, ""


def validate_member(snap: ListsSnapshot | None, gk: str, group_id: int | None, code: str,
                    reason: str) -> tuple[int | None, str]:
    """(the member's id, "") when ``code`` may be added to the group, else (None, why not)."""
    what = GROUP_KINDS[gk][2]
    code = code.strip().upper()
    if snap is None:
        return None, "Loading…"
    if group_id is None:
        return None, "Select a group."
    if not code:
        return None, ""
    codes = snap.accounts if gk == "client" else snap.securities
    if code not in codes:
        return None, f"Unknown {what} “{code}”."
    mid = codes[code]
    for r in snap.members.get(gk, {}).get(group_id, []):
        if r["id"] == mid:
            name = next((g["name"] for g in snap.groups.get(gk, []) if int(g["id"]) == group_id), "the group")
            if r["member"]:
                return None, f"{what.capitalize()} {code} is already in {name}."
            return None, f"{r['pending']} already adds {code} to {name}."
    if not reason.strip():
        return None, "Give a reason: the checker decides on it."
    return mid, ""


def submit_blacklist_insert(store: Store, user: User, after: dict[str, Any], reason: str,
                            context: dict[str, Any]) -> int:
    """An insert request for a new blacklist row, its id above every used or promised one (task)."""
    from services import changes

    with store.begin() as conn:
        new_id = changes.insert_id_floor(conn, "blacklist") + 1
    return changes.submit(store, user, "blacklist", {"id": new_id}, after, reason, op="insert", context=context)


# ---------------------------------------------------------------------- the dock
def _caption(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "caption")
    return label


def _message_label() -> QLabel:
    label = QLabel("")
    label.setWordWrap(True)
    label.hide()
    return label


class _GroupTab(QWidget):
    """Groups on the left, members of the selected group on the right, a form below."""

    def __init__(self, dock: ListsDock, gk: str) -> None:
        super().__init__()
        self.dock, self.gk = dock, gk
        self.kind, self.col, self.what = GROUP_KINDS[gk]
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.group_model = RecordTableModel([
            Field("Group", "name"),
            Field("Members", "members", "number", fmt=lambda v: str(int(v)) if v == v else ""),
            Field("Pending", "pending", align=CENTER, foreground=lambda v: OVERDUE_TEXT if v else None),
        ], self)
        self.group_view = make_table(self.group_model)
        self.group_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.group_view.selectionModel().currentRowChanged.connect(self._group_changed)
        extra = "Client" if gk == "client" else "Market"
        self.member_model = RecordTableModel([
            Field("Account" if gk == "client" else "Security", "code"),
            Field("Name" if gk == "stock" else "Client name", "name"),
            Field("Type" if gk == "client" else extra, "extra"),
            Field("Request", "pending", foreground=lambda v: OVERDUE_TEXT if v else None,
                  tooltip="a change request waiting for approval in the Approvals dock"),
        ], self, row_foreground=lambda r: None if r.get("member") else MUTED_TEXT)
        self.member_view = make_table(self.member_model)
        self.member_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.member_view.selectionModel().currentRowChanged.connect(lambda *_: self.update_form())
        split.addWidget(self.group_view)
        split.addWidget(self.member_view)
        split.setSizes([260, 640])
        lay.addWidget(split, 1)

        card = QFrame()
        card.setProperty("role", "card")
        grid = QGridLayout(card)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(10)
        self.group_label = QLabel("Select a group")
        self.group_label.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(self.group_label, 0, 0, 1, 4)
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText("account code, e.g. C000001" if gk == "client" else "security code, e.g. 700.HK")
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason for the change (shown to the checker)")
        for e in (self.code_edit, self.reason_edit):
            e.textChanged.connect(self._edited)
        grid.addWidget(QLabel("Account" if gk == "client" else "Security"), 1, 0)
        grid.addWidget(self.code_edit, 1, 1)
        grid.addWidget(QLabel("Reason"), 1, 2)
        grid.addWidget(self.reason_edit, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 3)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 2, 1, 1, 3)
        bottom = QHBoxLayout()
        self.message = _message_label()
        bottom.addWidget(self.message, 1)
        bottom.addStretch(0)  # keeps the buttons right while the message is hidden
        self.add_button = QPushButton("&Add member")
        self.add_button.clicked.connect(self.add_member)
        self.remove_button = QPushButton("&Remove member")
        self.remove_button.clicked.connect(self.remove_member)
        for b in (self.add_button, self.remove_button):
            b.setAutoDefault(False)
            bottom.addWidget(b, 0, Qt.AlignmentFlag.AlignTop)
        grid.addLayout(bottom, 3, 0, 1, 4)
        self.reason_edit.returnPressed.connect(self.add_member)
        lay.addWidget(card)
        self._fitted = False

    # ------------------------------------------------------------------ data
    def group_id(self) -> int | None:
        idx = self.group_view.currentIndex()
        return self.group_model.key_at(idx.row()) if idx.isValid() else None

    def group_name(self) -> str:
        gid = self.group_id()
        rec = self.group_model.record(gid) if gid is not None else None
        return str(rec["name"]) if rec else ""

    def selected_member(self) -> dict[str, Any] | None:
        idx = self.member_view.currentIndex()
        return self.member_model.record_at(idx.row()) if idx.isValid() else None

    def loaded(self, snap: ListsSnapshot) -> None:
        self.group_model.set_records(snap.groups.get(self.gk, []))
        if not self.group_view.currentIndex().isValid() and self.group_model.rowCount():
            self.group_view.selectRow(0)
        self._show_members()
        if not self._fitted and self.member_model.rowCount():
            fit_columns(self.group_view, 200)
            fit_columns(self.member_view, 260)
            self._fitted = True

    def _group_changed(self, _cur: QModelIndex, _prev: QModelIndex) -> None:
        self._show_members()

    def _show_members(self) -> None:
        snap, gid = self.dock.snapshot, self.group_id()
        rows = snap.members.get(self.gk, {}).get(gid, []) if snap is not None and gid is not None else []
        self.member_model.set_records(rows)
        self.group_label.setText(f"{self.group_name()} · {sum(1 for r in rows if r['member'])} members"
                                 if gid is not None else "Select a group")
        self.update_form()

    # ------------------------------------------------------------------ form
    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self.update_form()

    def _problem(self) -> tuple[int | None, str]:
        snap = self.dock.snapshot
        if snap is not None and not snap.may_request.get(self.kind, False):
            return None, f"You may view groups but not request {self.what} membership changes."
        return validate_member(snap, self.gk, self.group_id(), self.code_edit.text(), self.reason_edit.text())

    def update_form(self) -> None:
        mid, why = self._problem()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        bad_code = bool(why) and bool(self.code_edit.text().strip()) and "reason" not in why.lower()
        self.code_edit.setStyleSheet(f"border: 1px solid {ERROR_COLOUR}" if bad_code else "")
        idle = self.dock.busy is None
        self.add_button.setEnabled(mid is not None and idle)
        m = self.selected_member()
        may = self.dock.snapshot is not None and self.dock.snapshot.may_request.get(self.kind, False)
        self.remove_button.setEnabled(idle and may and m is not None and m["member"] and not m["pending_id"]
                                      and bool(self.reason_edit.text().strip()))

    def add_member(self) -> None:
        """Submit a membership insert request; refused inline when the form is not valid."""
        mid, why = self._problem()
        gid = self.group_id()
        if mid is None or gid is None:
            self.validation.setText(why or f"Enter the {self.what} code.")
            self.validation.show()
            return
        code = self.code_edit.text().strip().upper()
        self.dock.run_submit(self, self.kind, {"group_id": gid, self.col: mid}, {}, self.reason_edit.text(),
                             "insert", f"{code} → {self.group_name()}", {"group": self.group_name(), self.what: code})

    def remove_member(self) -> None:
        m, gid = self.selected_member(), self.group_id()
        reason = self.reason_edit.text().strip()
        if m is None or gid is None:
            why = f"Select the {self.what} to remove."
        elif not m["member"] or m["pending_id"]:
            why = f"{m['pending'] or m['code'] + ' is not a member'}: decide or cancel it first."
        elif not reason:
            why = "Give a reason: the checker decides on it."
        else:
            self.dock.run_submit(self, self.kind, {"group_id": gid, self.col: m["id"]}, {}, reason, "delete",
                                 f"{m['code']} out of {self.group_name()}", {"group": self.group_name(),
                                                                             self.what: m["code"]})
            return
        self.validation.setText(why)
        self.validation.show()

    def submitted(self, rid: int, what: str) -> None:
        for e in (self.code_edit, self.reason_edit):
            e.blockSignals(True)
            e.clear()
            e.blockSignals(False)
        set_tone(self.message, f"request #{rid} submitted — awaiting approval ({what}).", "ok")


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
        self.bl_message = _message_label()
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

        self.client_tab = _GroupTab(self, "client")
        self.stock_tab = _GroupTab(self, "stock")
        self.tabs.addTab(self.client_tab, "Client groups")
        self.tabs.addTab(self.stock_tab, "Stock groups")
        self._update_bl_form()

    def group_tab(self, gk: str) -> _GroupTab:
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
    def run_submit(self, tab: _GroupTab | None, kind: str, key: dict[str, Any] | None, after: dict[str, Any],
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

    def _submitted(self, tab: _GroupTab | None, rid: int, what: str) -> None:
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

    def _submit_failed(self, tab: _GroupTab | None, e: BaseException) -> None:
        self.busy = None
        set_tone(tab.message if tab is not None else self.bl_message, error_text(e))
        self._update_bl_form()
        self.refresh()
