"""The credit dock's groups area: every credit group with its shared limit, loan and usage bar (red
over the limit), and a side form that proposes a new group, a rename or a new limit, or adds and
removes member accounts — each as a four-eyes change request (`services.credit_groups`).

The form checks as the user types (name given and not taken, limit ≥ 0, account known, not a cash
account, not already in a group) and says why inline; the same checks run again in the worker
against the store before any request is written. No database call runs on the GUI thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSplitter,
    QWidget,
)

from services.lazy import lazy_module
from widgets.credit_parts import USAGE_OVER, UsageBarDelegate, stretch_column, usage_colour, usage_text
from widgets.formatting import money
from widgets.records import ERROR_COLOUR, Field, RecordTableModel, error_text, set_tone
from widgets.tables import make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services import credit_groups as cg
    from services.auth import User
    from services.credit import GroupUsage
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    cg = lazy_module("services.credit_groups")


class CreditGroupsPanel(QWidget):
    """Credit groups table plus the create / rename / limit / members form."""

    submitted = Signal(int)  # a change request's id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.may_request = True
        self.groups: dict[int, GroupUsage] = {}
        self.loans: dict[str, float] = {}  # account → loan (for the members list)
        self.accounts: set[str] = set()  # known account codes (empty: not checked inline)
        self.cash_accounts: set[str] = set()
        self.group_id: int | None = None  # the group in the form (None: a new group)
        self._task: Task | None = None

        self.model = RecordTableModel([
            Field("Group", "name"),
            Field("Members", "members", "number", fmt=lambda v: f"{int(v)}" if v == v else ""),
            Field("Limit", "limit", "number"),
            Field("Loan", "loan", "number"),
            Field("Usage", "usage", "number", fmt=usage_text,
                  background=lambda v: USAGE_OVER if v > 1.0 else usage_colour(v)),
        ], self, key="key")
        self.view = make_table(self.model)
        self.view.setItemDelegateForColumn(4, UsageBarDelegate(self.view))
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        stretch_column(self.view, 0)
        self.view.horizontalHeader().resizeSection(4, 140)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        scroll = QScrollArea()  # a short dock still reaches every field of the form
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self._build_form())
        split.addWidget(scroll)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay.addWidget(split)
        self._update_form()

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(300)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setVerticalSpacing(4)
        head = QHBoxLayout()
        self.title = QLabel("New credit group")
        self.title.setStyleSheet("font-weight: 600; font-size: 13px")
        head.addWidget(self.title, 1)
        self.new_button = QPushButton("New group")
        self.new_button.setAutoDefault(False)
        self.new_button.clicked.connect(self.new_group)
        head.addWidget(self.new_button)
        grid.addLayout(head, 0, 0, 1, 3)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("group name")
        self.limit_edit = QLineEdit()
        self.limit_edit.setPlaceholderText("shared limit (HKD)")
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        for row, (caption, edit) in enumerate((("&Name", self.name_edit), ("&Limit", self.limit_edit),
                                               ("&Reason", self.reason_edit)), start=1):
            label = QLabel(caption)
            label.setBuddy(edit)
            grid.addWidget(label, row, 0)
            grid.addWidget(edit, row, 1, 1, 2)
            edit.textChanged.connect(self._edited)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 4, 0, 1, 3)
        self.submit_button = QPushButton("Create group")
        self.submit_button.setAutoDefault(False)
        self.submit_button.clicked.connect(self.submit_group)
        grid.addWidget(self.submit_button, 5, 1, 1, 2, Qt.AlignmentFlag.AlignRight)

        members_caption = QLabel("Members")
        members_caption.setStyleSheet("font-weight: 600")
        grid.addWidget(members_caption, 6, 0, 1, 3)
        self.members = QListWidget()
        self.members.setMaximumHeight(90)
        self.members.currentRowChanged.connect(lambda _r: self._update_form())
        grid.addWidget(self.members, 7, 0, 1, 3)
        self.account_edit = QLineEdit()
        self.account_edit.setPlaceholderText("account code")
        self.account_edit.textChanged.connect(self._edited)
        self.account_edit.returnPressed.connect(self.add_member)
        self.add_button = QPushButton("Add")
        self.add_button.setAutoDefault(False)
        self.add_button.clicked.connect(self.add_member)
        self.remove_button = QPushButton("Remove selected")
        self.remove_button.setAutoDefault(False)
        self.remove_button.clicked.connect(self.remove_member)
        member_row = QHBoxLayout()
        member_row.addWidget(self.account_edit, 1)
        member_row.addWidget(self.add_button)
        member_row.addWidget(self.remove_button)
        grid.addLayout(member_row, 8, 0, 1, 3)
        self.member_validation = QLabel("")
        self.member_validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.member_validation.setWordWrap(True)
        grid.addWidget(self.member_validation, 9, 0, 1, 3)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 10, 0, 1, 3)
        grid.setRowStretch(11, 1)
        grid.setColumnStretch(1, 1)
        return form

    # ------------------------------------------------------------------ data from the dock
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def set_accounts(self, codes: set[str], cash: set[str], loans: dict[str, float]) -> None:
        """Account codes the inline check knows (the live book), its cash accounts and loans."""
        self.accounts, self.cash_accounts, self.loans = codes, cash, loans

    def set_groups(self, groups: list[GroupUsage], may_request: bool) -> None:
        """A fresh store snapshot: rows diffed by group id, the form's typing left alone."""
        self.groups = {g.id: g for g in groups}
        self.may_request = may_request
        self.model.set_records([
            {"key": g.id, "name": g.name, "members": len(g.accounts), "limit": g.limit, "loan": g.loan,
             "usage": g.usage} for g in groups])
        if self.group_id is not None and self.group_id not in self.groups:
            self.new_group()  # the group went away (another workstation's approved change)
        self._fill_members()
        self._update_form()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None

    # ------------------------------------------------------------------ selection
    def select_group(self, name: str) -> bool:
        for row in range(self.model.rowCount()):
            rec = self.model.record_at(row)
            if rec is not None and rec["name"] == name:
                self.view.selectRow(row)
                return True
        return False

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        gid = self.model.key_at(current.row())
        if gid == self.group_id:
            return
        self.group_id = gid
        g = self.groups.get(gid)
        self._set_texts(g.name if g else "", f"{g.limit:,.2f}" if g else "")
        self.message.hide()
        self._fill_members()
        self._update_form()

    def new_group(self) -> None:
        """Switch the form to proposing a new group (clears the selection and the fields)."""
        self.group_id = None
        self.view.clearSelection()
        self.view.selectionModel().clearCurrentIndex()
        self._set_texts("", "")
        self.message.hide()
        self._fill_members()
        self._update_form()
        self.name_edit.setFocus()

    def _set_texts(self, name: str, limit: str) -> None:
        for edit, value in ((self.name_edit, name), (self.limit_edit, limit)):
            edit.blockSignals(True)
            edit.setText(value)
            edit.blockSignals(False)

    def _fill_members(self) -> None:
        current = self.members.currentItem()
        keep = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
        self.members.clear()
        g = self.groups.get(self.group_id) if self.group_id is not None else None
        for code in sorted(g.accounts) if g else []:
            item = QListWidgetItem(f"{code}   loan {money(self.loans.get(code, 0.0))}")
            item.setData(Qt.ItemDataRole.UserRole, code)
            self.members.addItem(item)
            if code == keep:
                self.members.setCurrentItem(item)

    # ------------------------------------------------------------------ inline checks
    def group_problem(self) -> tuple[float | None, str]:
        """The limit to propose, or why the group part of the form cannot be submitted ("" = untouched)."""
        amount, why, _field = self._group_check()
        return amount, why

    def _group_check(self) -> tuple[float | None, str, str]:
        """(limit, why not, the field at fault: "name", "limit" or "")."""
        if not self.may_request:
            return None, "You may view credit groups but not request changes.", ""
        name, limit_text = self.name_edit.text(), self.limit_edit.text()
        if self.group_id is None and not name.strip() and not limit_text.strip():
            return None, "", ""
        g = self.groups.get(self.group_id) if self.group_id is not None else None
        why = cg.group_name_problem(name, [x.name for x in self.groups.values()], g.name if g else None)
        if why:
            return None, why, "name"
        amount, why = cg.parse_group_limit(limit_text)
        if amount is None:
            return None, why, "limit"
        if g is not None and name.strip() == g.name and amount == g.limit:
            return None, "", ""  # nothing changed yet: nothing to say
        return amount, "", ""

    def member_problem(self) -> str:
        code = self.account_edit.text().strip()
        if not code or self.group_id is None:
            return ""
        if self.accounts and code not in self.accounts:
            return f"Unknown account “{code}”."
        if code in self.cash_accounts:
            return f"{code} is a cash account: only margin accounts share a credit line."
        for g in self.groups.values():
            if code in g.accounts:
                return f"{code} is already in “{g.name}”."
        return ""

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _update_form(self) -> None:
        g = self.groups.get(self.group_id) if self.group_id is not None else None
        self.title.setText(f"Credit group “{g.name}”" if g else "New credit group")
        self.submit_button.setText("Submit change" if g else "Create group")
        amount, why, at_fault = self._group_check()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        bad_style = f"border: 1px solid {ERROR_COLOUR}"
        self.name_edit.setStyleSheet(bad_style if at_fault == "name" else "")
        self.limit_edit.setStyleSheet(bad_style if at_fault == "limit" else "")
        idle = self._task is None
        reason = bool(self.reason_edit.text().strip())
        self.submit_button.setEnabled(amount is not None and reason and idle)
        for w in (self.name_edit, self.limit_edit, self.reason_edit):
            w.setEnabled(self.may_request)
        member_why = self.member_problem()
        self.member_validation.setText(member_why)
        self.member_validation.setVisible(bool(member_why))
        in_group = g is not None and self.may_request
        self.account_edit.setEnabled(in_group)
        self.add_button.setEnabled(in_group and idle and reason and bool(self.account_edit.text().strip())
                                   and not member_why)
        self.remove_button.setEnabled(in_group and idle and reason and self.members.currentItem() is not None)
        if g is not None and not reason and self.may_request:
            self.account_edit.setPlaceholderText("account code (give a reason above)")
        else:
            self.account_edit.setPlaceholderText("account code")

    # ------------------------------------------------------------------ requests (worker)
    def _run(self, fn: Any, *args: Any, done_text: str) -> None:
        assert self.tasks is not None
        set_tone(self.message, "Submitting…", "info")
        self._task = self.tasks.run(fn, self.store, self.user, *args,
                                    on_done=lambda rid: self._submitted(int(rid), done_text),
                                    on_error=self._failed, name="credit group change request")
        self._update_form()

    def submit_group(self) -> None:
        """Propose the new group, or the rename / new limit of the selected one; refused inline if invalid."""
        if self.store is None or self.user is None or self.tasks is None or self._task is not None:
            return
        amount, why = self.group_problem()
        reason = self.reason_edit.text().strip()
        if amount is None or not reason:
            self.validation.setText(why or ("Give a reason: the checker decides on it." if amount is not None
                                            else "Change the name or the limit first."))
            self.validation.show()
            return
        name = self.name_edit.text().strip()
        if self.group_id is None:
            self._run(cg.submit_new_group, name, amount, reason,
                      done_text=f"new group “{name}”, limit {money(amount)}")
        else:
            self._run(cg.submit_group_change, self.group_id, name, amount, reason,
                      done_text=f"“{name}”, limit {money(amount)}")

    def add_member(self) -> None:
        code = self.account_edit.text().strip()
        reason = self.reason_edit.text().strip()
        if (self.group_id is None or not code or not reason or self.member_problem() or self._task is not None
                or self.store is None or not self.may_request):
            self._update_form()
            return
        name = self.groups[self.group_id].name
        self._run(cg.submit_add_member, self.group_id, code, reason, done_text=f"add {code} to “{name}”")

    def remove_member(self) -> None:
        item = self.members.currentItem()
        reason = self.reason_edit.text().strip()
        if (self.group_id is None or item is None or not reason or self._task is not None or self.store is None
                or not self.may_request):
            return
        code = str(item.data(Qt.ItemDataRole.UserRole))
        name = self.groups[self.group_id].name
        self._run(cg.submit_remove_member, self.group_id, code, reason, done_text=f"remove {code} from “{name}”")

    def _submitted(self, req_id: int, what: str) -> None:
        self._task = None
        for edit in (self.reason_edit, self.account_edit):
            edit.blockSignals(True)
            edit.clear()
            edit.blockSignals(False)
        if self.group_id is None:
            self._set_texts("", "")
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval ({what})", "ok")
        self._update_form()
        self.submitted.emit(req_id)

    def _failed(self, e: BaseException) -> None:
        self._task = None
        set_tone(self.message, error_text(e))
        self._update_form()
