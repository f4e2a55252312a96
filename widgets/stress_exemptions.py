"""Standing stress exemptions: the securities never shocked and the accounts left out of every
run's summary — a four-eyes risk parameter.

Nothing here writes `stress_exemptions`: "Request exemption" and "Request removal" submit change
requests (`risk_runs.propose_exemption`, a reason required) that take effect once a checker
approves; until then the row says "pending approval" / "removal pending" with the request number.
Bad input (unknown code, already exempt, no reason) is named inline and nothing is submitted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QFrame,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from services.stress_view import StressSetup, check_exemption
from widgets.records import ERROR_COLOUR, OVERDUE_TEXT, Field, RecordTableModel, set_tone
from widgets.stress_editor import why
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.store import Store

PENDING_ROW = QColor(92, 68, 8)


def _fields() -> list[Field]:
    return [Field("Kind", "kind"), Field("Code", "code"),
            Field("State", "state", foreground=lambda v: OVERDUE_TEXT if "pending" in str(v) else None),
            Field("Reason", "remark"),
            Field("Pending request", "request", foreground=lambda v: OVERDUE_TEXT if v else None)]


class ExemptionsPanel(QWidget):
    """The standing exemptions and the request form; `submitted` carries the new request's id."""

    submitted = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.setup: StressSetup | None = None
        self.task: Task | None = None
        self._fitted = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        caption = QLabel("Standing exemptions — applied to every run: securities not shocked, accounts left out "
                         "of the summary. Changes are change requests a checker approves.")
        caption.setProperty("role", "caption")
        caption.setWordWrap(True)
        lay.addWidget(caption)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.model = RecordTableModel(_fields(), self, key="row")
        self.model.row_background = self._row_background
        self.view = make_table(self.model)
        self.view.setObjectName("stress_exemptions")
        self.view.sortByColumn(1, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(lambda _c, _p: self._update())
        split.addWidget(self.view)
        split.addWidget(self._build_form())
        split.setStretchFactor(0, 1)
        lay.addWidget(split, 1)
        self._update()

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(320)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 8, 10, 8)
        head = QLabel("Request a change")
        head.setStyleSheet("font-weight: 600")
        grid.addWidget(head, 0, 0, 1, 2)
        self.kind_combo = QComboBox()
        self.kind_combo.addItems(["security", "account"])
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText("code")
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        for r, (caption, w) in enumerate((("&Kind", self.kind_combo), ("C&ode", self.code_edit),
                                          ("&Reason", self.reason_edit)), start=1):
            lab = QLabel(caption)
            lab.setBuddy(w)
            grid.addWidget(lab, r, 0)
            grid.addWidget(w, r, 1)
        self.validation = QLabel("")
        self.validation.setWordWrap(True)
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.hide()
        grid.addWidget(self.validation, 4, 0, 1, 2)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 5, 0, 1, 2)
        self.add_button = QPushButton("Request &exemption")
        self.add_button.setAutoDefault(False)
        self.add_button.clicked.connect(self.request_add)
        grid.addWidget(self.add_button, 6, 1)
        self.remove_button = QPushButton("Request removal of the selected")
        self.remove_button.setAutoDefault(False)
        self.remove_button.clicked.connect(self.request_removal)
        grid.addWidget(self.remove_button, 7, 1)
        grid.setRowStretch(8, 1)
        grid.setColumnStretch(1, 1)
        self.kind_combo.currentIndexChanged.connect(lambda _i: self._kind_changed())
        self.code_edit.textChanged.connect(lambda _t: self._update())
        self.reason_edit.textChanged.connect(lambda _t: self._update())
        self.reason_edit.returnPressed.connect(self.request_add)
        return form

    # ------------------------------------------------------------------ context
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.task = None

    def set_setup(self, setup: StressSetup) -> None:
        self.setup = setup
        self.model.set_records([dict(r, row=i) for i, r in enumerate(setup.exemptions)])
        if not self._fitted and setup.exemptions:
            fit_columns(self.view, 220)
            self._fitted = True
        self._kind_changed()

    def _kind_changed(self) -> None:
        if self.setup is not None:
            codes = self.setup.securities if self.kind_combo.currentText() == "security" else self.setup.accounts
            completer = QCompleter(codes, self.code_edit)
            completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
            completer.setFilterMode(Qt.MatchFlag.MatchContains)
            self.code_edit.setCompleter(completer)
        self._update()

    def _row_background(self, key: int) -> QColor | None:
        rec = self.model.record(key)
        return PENDING_ROW if rec is not None and rec["request_id"] else None

    def selected(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    def rows(self) -> list[dict[str, Any]]:
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    # ------------------------------------------------------------------ requests
    def _problem(self) -> str:
        if self.setup is not None and not self.setup.may_request:
            return "You may view the exemptions but not request changes."
        if not (self.code_edit.text().strip() or self.reason_edit.text().strip()):
            return ""
        return check_exemption(self.setup, self.kind_combo.currentText(), self.code_edit.text(),
                               self.reason_edit.text())

    def _update(self) -> None:
        problem = self._problem()
        self.validation.setText(problem)
        self.validation.setVisible(bool(problem))
        idle = self.task is None and self.setup is not None and self.setup.may_request
        self.add_button.setEnabled(idle and not problem and bool(self.code_edit.text().strip()))
        rec = self.selected()
        self.remove_button.setEnabled(idle and rec is not None and rec["state"] == "exempt")

    def request_add(self) -> None:
        """Submit "exempt this security / account" (inline refusal, nothing submitted, when bad)."""
        kind, code, reason = self.kind_combo.currentText(), self.code_edit.text().strip(), self.reason_edit.text()
        problem = check_exemption(self.setup, kind, code, reason)
        if problem:
            self.validation.setText(problem)
            self.validation.show()
            return
        self._submit(kind, code, reason.strip(), False)

    def request_removal(self) -> None:
        """Submit the removal of the selected exemption (reason from the form)."""
        rec = self.selected()
        if rec is None or rec["state"] != "exempt":
            set_tone(self.message, "Select a standing exemption with no pending request.")
            return
        reason = self.reason_edit.text().strip()
        if not reason:
            set_tone(self.message, "Give a reason in the Reason box: the checker decides on it.")
            self.reason_edit.setFocus()
            return
        self._submit(rec["kind"], rec["code"], reason, True)

    def _submit(self, kind: str, code: str, reason: str, remove: bool) -> None:
        if self.tasks is None or self.store is None or self.task is not None:
            return
        from services.risk_runs import propose_exemption

        what = f"{'removal of the' if remove else 'new'} exemption for {kind} {code}"
        set_tone(self.message, "Submitting…", "info")
        self.task = self.tasks.run(propose_exemption, self.store, self.user, kind, code, reason, remove,
                                   on_done=lambda rid: self._submitted(int(rid), what), on_error=self._failed,
                                   name="stress exemption request")
        self._update()

    def _submitted(self, req_id: int, what: str) -> None:
        self.task = None
        for w in (self.code_edit, self.reason_edit):
            w.blockSignals(True)
            w.clear()
            w.blockSignals(False)
        set_tone(self.message, f"request #{req_id} submitted — awaiting approval ({what})", "ok")
        self._update()
        self.submitted.emit(req_id)

    def _failed(self, e: BaseException) -> None:
        self.task = None
        set_tone(self.message, why(e))
        self._update()
