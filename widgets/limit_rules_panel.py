"""The "Specific rules" tab of the Limits dock: rules for one or more subjects (account, security,
trader, client category) tied to a limit code, and the form that proposes a new rule, a change to one,
or setting one active / inactive — each a four-eyes change request.

Choosing a code shows its global status next to it (enabled or not, dimension, threshold, action): a
disabled code switches its rules off too. The form is checked as you type: the threshold and name
here, the subjects against the code's dimension and the book by `pretrade_store.rule_problem` in
the task runner (its messages shown inline; a stale answer is dropped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
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

from services.pretrade_view import LimitsView, number_text, parse_threshold
from widgets.formatting import CENTER
from widgets.records import (
    ERROR_COLOUR,
    OK_COLOUR,
    OVERDUE_TEXT,
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

VALIDATE_MS = 200


def _propose_rule(store: Store, user: User, values: dict[str, Any], reason: str, rule_id: int | None,
                  active: bool) -> int:
    from services.pretrade_store import propose_rule

    return propose_rule(store, user, values["name"], values["code"], values["subjects"], values["threshold"],
                        reason, action=values["action"], rule_id=rule_id, active=active)


def _set_active(store: Store, user: User, rule_id: int, active: bool, reason: str) -> int:
    from services.pretrade_store import set_rule_active

    return set_rule_active(store, user, rule_id, active, reason)


def _rule_problem(store: Store, code: str, subjects: dict[str, str | None], threshold: float) -> str:
    from services.pretrade_store import rule_problem

    return rule_problem(store, code, subjects, threshold)


class LimitRulesPanel(QWidget):
    submitted = Signal(int)
    validated = Signal(str)  # the worker's verdict on the form ('' when acceptable)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.view_data: LimitsView | None = None
        self.editing: dict[str, Any] | None = None  # the rule the form changes (None: a new rule)
        self._task: Task | None = None
        self._check_task: Task | None = None
        self._seq = 0
        self._verdict: tuple[int, str] | None = None
        self._text_of: dict[int, str] = {}
        self._fitted = False
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(VALIDATE_MS)
        self._debounce.timeout.connect(self._validate)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        bar = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("search name / code / subject")
        self.search.setClearButtonEnabled(True)
        self.search.setMaximumWidth(280)
        self.search.textChanged.connect(self._refilter)
        bar.addWidget(self.search)
        bar.addStretch(1)
        lay.addLayout(bar)
        self.model = RecordTableModel([
            Field("Rule", "id", "number", fmt=lambda v: f"#{int(v)}"),
            Field("Name", "name"), Field("Code", "code"), Field("Account", "account"),
            Field("Security", "security"), Field("Trader", "trader"), Field("Client category", "category"),
            Field("Threshold", "threshold", "number", fmt=lambda v: number_text(v)),
            Field("Action", "action", align=CENTER, tooltip="blank: the code's action"),
            Field("Active", "active", align=CENTER),
            Field("Pending request", "request", foreground=lambda v: OVERDUE_TEXT if v else None)], self)
        self.model.set_filter(self._visible)
        self.view = make_table(self.model)
        self.view.setObjectName("limit_rules")
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.view)
        split.addWidget(self._build_form())
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        lay.addWidget(split, 1)
        self._update_buttons()

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(420)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setVerticalSpacing(4)
        self.form_head = QLabel("New rule")
        self.form_head.setStyleSheet("font-weight: 600; font-size: 13px")
        grid.addWidget(self.form_head, 0, 0, 1, 3)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("any name, e.g. VIP order size")
        self.code_combo = QComboBox()
        self.code_status = QLabel("")
        self.code_status.setWordWrap(True)
        self.account_edit, self.security_edit, self.trader_edit, self.category_edit = (QLineEdit() for _ in range(4))
        self.account_edit.setPlaceholderText("account code")
        self.security_edit.setPlaceholderText("security code, e.g. 700.HK")
        self.trader_edit.setPlaceholderText("trader login")
        self.category_edit.setPlaceholderText("client category, e.g. retail")
        self.threshold_edit = QLineEdit()
        self.threshold_edit.setPlaceholderText("threshold (≥ 0)")
        self.action_combo = QComboBox()
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        rows: list[tuple[str, QWidget]] = [
            ("&Name", self.name_edit), ("&Code", self.code_combo), ("", self.code_status),
            ("Acc&ount", self.account_edit), ("Securit&y", self.security_edit), ("&Trader", self.trader_edit),
            ("Client cate&gory", self.category_edit), ("T&hreshold", self.threshold_edit),
            ("Act&ion", self.action_combo), ("&Reason", self.reason_edit)]
        for i, (caption, w) in enumerate(rows, start=1):
            lab = QLabel(caption)
            lab.setBuddy(w)
            grid.addWidget(lab, i, 0)
            grid.addWidget(w, i, 1, 1, 2)
        grid.setColumnStretch(1, 1)
        n = len(rows) + 1
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, n, 0, 1, 3)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, n + 1, 0, 1, 3)
        buttons = QHBoxLayout()
        self.new_button = QPushButton("New rule")
        self.new_button.clicked.connect(self.new_rule)
        self.edit_button = QPushButton("&Edit selected")
        self.edit_button.clicked.connect(self.edit_selected)
        self.active_button = QPushButton("Set inactive")
        self.active_button.setToolTip("Request that the selected rule stop (or start) applying; reason from the form")
        self.active_button.clicked.connect(self.toggle_active)
        self.submit_button = QPushButton("&Submit new rule")
        self.submit_button.clicked.connect(self.submit)
        for b in (self.new_button, self.edit_button, self.active_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.submit_button)
        grid.addLayout(buttons, n + 2, 0, 1, 3)
        grid.setRowStretch(n + 3, 1)
        for w in (self.name_edit, self.account_edit, self.security_edit, self.trader_edit, self.category_edit,
                  self.threshold_edit):
            w.textChanged.connect(self._edited)
        self.code_combo.currentIndexChanged.connect(self._code_changed)
        self.action_combo.currentIndexChanged.connect(self._edited)
        self.reason_edit.textChanged.connect(lambda _t: self._update_buttons())
        return form

    # ------------------------------------------------------------------ data
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def stop(self) -> None:
        self._debounce.stop()
        for t in (self._task, self._check_task):
            if t is not None:
                t.cancel()
        self._task = self._check_task = None

    def show_view(self, data: LimitsView) -> None:
        self.view_data = data
        current = self.code_combo.currentData()
        self.code_combo.blockSignals(True)
        self.code_combo.clear()
        for c in data.catalogue.values():
            if c.dimension != "company":  # a company-wide limit has no specific rules
                self.code_combo.addItem(f"{c.code} — {c.name}", c.code)
        i = self.code_combo.findData(current)
        self.code_combo.setCurrentIndex(max(0, i))
        self.code_combo.blockSignals(False)
        self._text_of = {int(r["id"]): " ".join(str(r[k]) for k in ("name", "code", "account", "security", "trader",
                                                                     "category")).lower() for r in data.rules}
        self.model.set_records(data.rules)
        if not self._fitted and data.rules:
            fit_columns(self.view, 220)
            self._fitted = True
        self._code_changed()

    def _refilter(self) -> None:
        self.model.refilter()

    def _visible(self, keys: np.ndarray) -> np.ndarray:
        needle = self.search.text().strip().lower()
        if not needle:
            return np.ones(len(keys), bool)
        return np.array([needle in self._text_of.get(int(k), "") for k in np.asarray(keys).tolist()], bool)

    def visible_records(self) -> list[dict[str, Any]]:
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    def selected(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    def select_rule(self, rule_id: int) -> bool:
        row = self.model.row_of(rule_id)
        if row < 0:
            return False
        self.view.selectRow(row)
        return True

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._update_buttons()

    # ------------------------------------------------------------------ the form
    def _code_changed(self) -> None:
        code = self.code_combo.currentData()
        c = self.view_data.catalogue.get(code) if self.view_data is not None and code else None
        action = self.action_combo.currentData()
        self.action_combo.blockSignals(True)
        self.action_combo.clear()
        self.action_combo.addItem(f"the code's action ({c.action})" if c else "the code's action", None)
        for a in ("prompt", "approval", "reject"):
            self.action_combo.addItem(a, a)
        self.action_combo.setCurrentIndex(max(0, self.action_combo.findData(action)))
        self.action_combo.blockSignals(False)
        if c is None:
            self.code_status.setText("")
        else:
            colour = OK_COLOUR if c.enabled else ERROR_COLOUR
            state = "enabled" if c.enabled else "disabled — its rules do not apply"
            self.code_status.setText(
                f"<span style='color:{colour}'>● {state}</span> · {c.dimension.replace('_', ' ')} limit on "
                f"{c.metric} · global threshold {number_text(c.threshold, c.metric)} · {c.action}")
        self._edited()

    def _values(self) -> tuple[dict[str, Any] | None, str]:
        """The form's rule (name, code, subjects, threshold, action), or (None, why not) from local checks."""
        if self.view_data is not None and not self.view_data.may_request:
            return None, "You may view rules but not request changes."
        texts = [w.text().strip() for w in (self.name_edit, self.account_edit, self.security_edit,
                                            self.trader_edit, self.category_edit, self.threshold_edit)]
        if not any(texts):
            return None, ""  # an empty form says nothing yet
        if not texts[0]:
            return None, "Give the rule a name."
        threshold, why = parse_threshold(self.threshold_edit.text())
        if threshold is None:
            return None, why
        subjects = {"account": texts[1].upper() or None, "security": texts[2].upper() or None,
                    "trader": texts[3] or None, "category": texts[4] or None}
        return {"name": texts[0], "code": str(self.code_combo.currentData() or ""), "subjects": subjects,
                "threshold": threshold, "action": self.action_combo.currentData()}, ""

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._seq += 1
        self._verdict = None
        values, why = self._values()
        self.validation.setText(why)
        self.validation.setVisible(bool(why))
        if values is not None and self.tasks is not None:
            self._debounce.start()
        self._update_buttons()

    def _validate(self) -> None:
        values, _why = self._values()
        if values is None or self.tasks is None or self.store is None:
            return
        seq = self._seq
        self._check_task = self.tasks.run(_rule_problem, self.store, values["code"], values["subjects"],
                                          values["threshold"], on_done=lambda p: self._validated(seq, str(p)),
                                          on_error=lambda e: self._validated(seq, error_text(e)),
                                          name="check limit rule")

    def _validated(self, seq: int, problem: str) -> None:
        if seq != self._seq:
            return  # the form changed since: a newer check follows
        self._check_task = None
        self._verdict = (seq, problem)
        self.validation.setText(problem)
        self.validation.setVisible(bool(problem))
        self._update_buttons()
        self.validated.emit(problem)

    def _update_buttons(self) -> None:
        busy = self._task is not None
        ok = self._verdict == (self._seq, "")
        self.submit_button.setEnabled(ok and bool(self.reason_edit.text().strip()) and not busy)
        self.submit_button.setText(f"&Submit change to rule #{self.editing['id']}" if self.editing
                                   else "&Submit new rule")
        self.form_head.setText(f"Change rule #{self.editing['id']} “{self.editing['name']}”" if self.editing
                               else "New rule")
        rec = self.selected()
        may = self.view_data is None or self.view_data.may_request
        stored = rec is not None and rec["status"] != "pending" and not rec["request_id"]
        self.edit_button.setEnabled(stored and may and not busy)
        self.active_button.setText("Set active" if rec is not None and rec["active"] == "inactive" else "Set inactive")
        self.active_button.setEnabled(stored and may and not busy)

    def new_rule(self) -> None:
        self.editing = None
        for w in (self.name_edit, self.account_edit, self.security_edit, self.trader_edit, self.category_edit,
                  self.threshold_edit):
            w.blockSignals(True)
            w.clear()
            w.blockSignals(False)
        self._edited()

    def edit_selected(self) -> None:
        """Load the selected rule into the form; submitting proposes new values for it."""
        rec = self.selected()
        if rec is None:
            return
        self.editing = rec
        fields = ((self.name_edit, rec["name"]), (self.account_edit, rec["account"]),
                  (self.security_edit, rec["security"]), (self.trader_edit, rec["trader"]),
                  (self.category_edit, rec["category"]), (self.threshold_edit, number_text(rec["threshold"])))
        for w, v in fields:
            w.blockSignals(True)
            w.setText(str(v))
            w.blockSignals(False)
        self.code_combo.blockSignals(True)
        self.code_combo.setCurrentIndex(max(0, self.code_combo.findData(rec["code"])))
        self.code_combo.blockSignals(False)
        self._code_changed()
        self.action_combo.setCurrentIndex(max(0, self.action_combo.findData(rec["action"] or None)))

    def _reason(self) -> str | None:
        reason = self.reason_edit.text().strip()
        if not reason:
            set_tone(self.message, "Give a reason in the Reason box: the checker decides on it.", "error")
            self.reason_edit.setFocus()
            return None
        return reason

    def submit(self) -> None:
        if self.store is None or self.tasks is None or self._task is not None:
            return
        values, why = self._values()
        if values is None or self._verdict != (self._seq, ""):
            self.validation.setText(why or (self._verdict[1] if self._verdict else "Checking the rule…"))
            self.validation.show()
            return
        reason = self._reason()
        if reason is None:
            return
        rule_id = int(self.editing["id"]) if self.editing else None
        active = self.editing is None or self.editing["active"] != "inactive"
        what = f"rule #{rule_id}" if rule_id else f"new rule “{values['name']}”"
        self._run(_propose_rule, (self.store, self.user, values, reason, rule_id, active), what)

    def toggle_active(self) -> None:
        rec = self.selected()
        if rec is None or self.store is None or self._task is not None or rec["request_id"]:
            return
        reason = self._reason()
        if reason is None:
            return
        active = rec["active"] == "inactive"
        self._run(_set_active, (self.store, self.user, int(rec["id"]), active, reason),
                  f"set rule #{rec['id']} {'active' if active else 'inactive'}")

    def _run(self, fn: Any, args: tuple[Any, ...], what: str) -> None:
        assert self.tasks is not None
        set_tone(self.message, "Submitting…", "info")
        self._task = self.tasks.run(fn, *args, on_done=lambda rid: self._submitted(int(rid), what),
                                    on_error=self._failed, name=f"submit {what}")
        self._update_buttons()

    def _submitted(self, req_id: int, what: str) -> None:
        self._task = None
        self.editing = None
        self.reason_edit.blockSignals(True)
        self.reason_edit.clear()
        self.reason_edit.blockSignals(False)
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval ({what})", "ok")
        self._update_buttons()
        self.submitted.emit(req_id)

    def _failed(self, e: BaseException) -> None:
        self._task = None
        set_tone(self.message, error_text(e))
        self._update_buttons()


__all__ = ["LimitRulesPanel"]
