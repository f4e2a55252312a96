"""One group tab of the Lists dock (client groups or stock groups): the groups on the left, the selected
group's members on the right, and a form below that requests adding or removing a member as a
four-eyes change request through the dock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from services.lists_view import GROUP_KINDS, ListsSnapshot, validate_member
from widgets.formatting import CENTER
from widgets.records import (
    ERROR_COLOUR,
    MUTED_TEXT,
    OVERDUE_TEXT,
    Field,
    RecordTableModel,
    message_label,
    set_tone,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from widgets.lists_dock import ListsDock


class GroupTab(QWidget):
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
        self.message = message_label()
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
