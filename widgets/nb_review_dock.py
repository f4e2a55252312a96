"""The new-business review board dock (issue 7, RISK_METHODS §7 "RCSA").

Proposals with their stage; the selected one's detail shows each step — business rationale,
compliance check, risk assessment (with its stress run), committee decision — with its text, who
took it and when, then the audited history. One action button completes the current step; it is
enabled only for the roles allowed to take it (the tooltip says who may, and why not). During the
risk assessment a stored stress run can be attached; the committee approves or vetoes with a note it
must write. Every read and write runs on the task runner; the service enforces the same rules.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from services import rcsa, risk_runs
from services.auth import ROLE_LABELS, User
from services.rcsa import STEP_LABELS, STEPS, Proposal, RcsaError
from widgets.records import CoalescedLoad, Field, RecordTableModel, hk_time, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.store import Store

STAGE_COLOURS = {"approved": QColor(35, 134, 54), "vetoed": QColor(178, 30, 38), "committee": QColor(176, 128, 10)}
ACTION_TEXT = {"rationale": "Submit business rationale", "compliance": "Complete compliance check",
               "risk": "Complete risk assessment"}


def _load_board(store: Store) -> dict[str, Any]:
    """Proposals with their steps and the stored, finished stress runs (one background read)."""
    runs = [r for r in risk_runs.runs(store, "stress", limit=200) if r.status == "done"]
    return {"proposals": rcsa.proposals(store), "runs": runs}


def run_text(r: Any) -> str:
    call = r.summary.get("total_call_amount")
    return (f"#{r.id} {r.name} · {hk_time(r.started_at)}"
            + (f" · call {call:,.0f}" if isinstance(call, int | float) else ""))


def error_message(e: BaseException) -> str:
    return str(e) if isinstance(e, RcsaError) else f"Unexpected error ({type(e).__name__}): {e}"


class NbReviewDock(QWidget):
    refreshed = Signal()
    acted = Signal(int)  # a proposal's id after a step

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.by_id: dict[int, Proposal] = {}
        self.runs: list[Any] = []
        self.history: list[dict[str, Any]] = []
        self._busy = False
        self._history_task: Any = None
        self._pending: tuple[int, str, bool] = (0, "", False)
        self._select_after = 0
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)

        self.model = RecordTableModel([
            Field("ID", "id", "number", fmt=lambda v: "" if v != v else f"{int(v)}"),
            Field("Proposal", "title"),
            Field("Stage", "stage_label", background=lambda v: STAGE_COLOURS.get(str(v).lower()),
                  foreground=lambda v: QColor(255, 255, 255) if str(v).lower() in STAGE_COLOURS else None),
            Field("Waiting for", "waiting"),
            Field("Proposed by", "created_by"),
            Field("Proposed", "created_at", "time", tooltip="Hong Kong time"),
            Field("Stress run", "run", tooltip="the stress run attached at the risk assessment"),
        ], self)
        self.view = make_table(self.model)
        self.view.setObjectName("nb_proposals")
        self.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

        new_box = QGroupBox("New proposal")
        nl = QHBoxLayout(new_box)
        self.new_title = QLineEdit()
        self.new_title.setPlaceholderText("product or structure, e.g. Stock Connect margin financing")
        self.new_description = QLineEdit()
        self.new_description.setPlaceholderText("what it is, in a line")
        self.propose_button = QPushButton("Propose")
        nl.addWidget(self.new_title, 2)
        nl.addWidget(self.new_description, 3)
        nl.addWidget(self.propose_button)
        self.new_title.textChanged.connect(self._update_buttons)
        self.propose_button.clicked.connect(self._propose)

        self.detail = QTextBrowser()
        self.detail.setOpenExternalLinks(False)
        self.note_edit = QPlainTextEdit()
        self.note_edit.setPlaceholderText("the text of this step (required)")
        self.note_edit.setMaximumHeight(80)
        self.note_edit.textChanged.connect(self._update_buttons)
        self.run_combo = QComboBox()
        self.run_combo.setPlaceholderText("no stored stress runs — run one in Stress testing")
        self.run_combo.setMinimumContentsLength(30)
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.attach_button = QPushButton("Attach stress run…")
        self.attach_button.clicked.connect(self._attach)
        self.run_combo.currentIndexChanged.connect(self._update_buttons)
        self.action_button = QPushButton("Complete step")
        self.approve_button = QPushButton("Approve")
        self.veto_button = QPushButton("Veto")
        self.action_button.clicked.connect(self._advance)
        self.approve_button.clicked.connect(lambda: self._decide(True))
        self.veto_button.clicked.connect(lambda: self._decide(False))
        self.who_label = QLabel("")
        self.who_label.setWordWrap(True)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        set_tone(self.message, "")

        runs_row = QHBoxLayout()
        runs_row.addWidget(QLabel("Stress run"))
        runs_row.addWidget(self.run_combo, 1)
        runs_row.addWidget(self.attach_button)
        act_row = QHBoxLayout()
        act_row.addStretch(1)
        act_row.addWidget(self.action_button)
        act_row.addWidget(self.approve_button)
        act_row.addWidget(self.veto_button)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.view, 1)
        ll.addWidget(new_box)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.detail, 1)
        rl.addLayout(runs_row)
        rl.addWidget(self.note_edit)
        rl.addWidget(self.who_label)
        rl.addLayout(act_row)
        rl.addWidget(self.message)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        lay.addWidget(split)
        self._update_buttons()

    # ------------------------------------------------------------------ context and loading
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self._update_buttons()
        self.refresh()

    def refresh(self) -> None:
        if self.store is None or self.tasks is None:
            return
        self._load.request()

    def stop(self) -> None:
        self._load.cancel()
        if self._history_task is not None:
            self._history_task.cancel()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(_load_board, self.store, on_done=on_done, on_error=on_error, name="nb review")

    def _loaded(self, board: dict[str, Any]) -> None:
        first = not self.by_id
        props: list[Proposal] = board["proposals"]
        self.by_id = {p.id: p for p in props}
        self.runs = board["runs"]
        keep = self.run_combo.currentData()
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for r in self.runs:
            self.run_combo.addItem(run_text(r), r.id)
        if keep is not None and self.run_combo.findData(keep) >= 0:
            self.run_combo.setCurrentIndex(self.run_combo.findData(keep))
        elif self.runs:
            self.run_combo.setCurrentIndex(0)  # the newest run (the placeholder shows only when there is none)
        self.run_combo.blockSignals(False)
        self.model.set_records([{
            "id": p.id, "title": p.title, "stage_label": p.stage_label, "created_by": p.created_by,
            "created_at": p.created_at, "waiting": "" if p.closed else ", ".join(
                ROLE_LABELS.get(r, r) for r in rcsa.STEP_ROLES[p.stage]),
            "run": "" if p.stress_run_id is None else f"#{p.stress_run_id}"} for p in props])
        if first and props:
            fit_columns(self.view, 300)
            self.view.selectRow(0)
        self._current_changed()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        set_tone(self.message, f"refresh failed: {error_message(e)}")

    # ------------------------------------------------------------------ selection and detail
    def current(self) -> Proposal | None:
        idx = self.view.currentIndex()
        return self.by_id.get(self.model.key_at(idx.row())) if idx.isValid() else None

    def select_proposal(self, proposal_id: int) -> None:
        row = self.model.row_of(proposal_id)
        if row >= 0:
            self.view.selectRow(row)

    def _current_changed(self, *_: Any) -> None:
        p = self.current()
        self.history = []
        self._render()
        self._update_buttons()
        if p is not None and self.tasks is not None:
            if self._history_task is not None:
                self._history_task.cancel()
            self._history_task = self.tasks.run(rcsa.history, self.store, p.id, on_done=self._history_loaded,
                                                on_error=self._load_failed, name="nb history")

    def _history_loaded(self, rows: list[dict[str, Any]]) -> None:
        self._history_task = None
        self.history = rows
        self._render()

    def _render(self) -> None:
        p = self.current()
        if p is None:
            self.detail.setHtml("<p>Select a proposal.</p>")
            return
        e = html.escape
        runs = {r.id: r for r in self.runs}
        parts = [f"<h3>#{p.id} {e(p.title)}</h3>",
                 f"<p>{e(p.description)}</p>" if p.description else "",
                 f"<p>Proposed by <b>{e(p.created_by)}</b> · {hk_time(p.created_at)} · stage "
                 f"<b>{e(p.stage_label)}</b></p>"]
        for name in STEPS:
            s = p.step(name)
            if s is not None:
                head = (f"{STEP_LABELS[name]}" + (f" — {s['outcome'].upper()}" if name == "committee" else "")
                        + f" · {e(s['actor'])} ({e(ROLE_LABELS.get(s['role'], s['role']))}) · {hk_time(s['at'])}")
                body = e(s["note"]).replace("\n", "<br>")
                if name == "risk" and s.get("stress_run_id"):
                    r = runs.get(int(s["stress_run_id"]))
                    body += f"<br><i>Stress run: {e(run_text(r)) if r else '#' + str(s['stress_run_id'])}</i>"
                parts.append(f"<p><b>{head}</b><br>{body}</p>")
            elif name == p.stage:
                extra = ""
                if name == "risk" and p.stress_run_id is not None:
                    r = runs.get(p.stress_run_id)
                    extra = f"<br><i>Stress run attached: {e(run_text(r)) if r else '#' + str(p.stress_run_id)}</i>"
                parts.append(f"<p><b>{STEP_LABELS[name]}</b> · <span style='color:#e3b341'>waiting — "
                             f"{e(rcsa.who_may(name))}</span>{extra}</p>")
            else:
                parts.append(f"<p style='color:#8b949e'><b>{STEP_LABELS[name]}</b> · "
                             f"{'not reached' if not p.closed else 'not taken'}</p>")
        if self.history:
            parts.append("<h4>History</h4><ul>")
            for h in self.history:
                parts.append(f"<li>{hk_time(h['ts'], seconds=True)} · {e(h['actor'])} · {e(h['action'])}"
                             + (f" — {e(h['after'])}" if h["after"] else "") + "</li>")
            parts.append("</ul>")
        self.detail.setHtml("".join(parts))

    # ------------------------------------------------------------------ actions
    def _update_buttons(self) -> None:
        p, u = self.current(), self.user
        idle = not self._busy
        why = "" if p is None or u is None else rcsa.refusal(u, p)
        may = p is not None and u is not None and not why
        stage = p.stage if p is not None else ""
        note = bool(self.note_edit.toPlainText().strip())
        who = rcsa.who_may(stage) if p is not None else "Select a proposal"
        tip = f"{who}" + (f"\n{why}" if why else "")
        self.who_label.setText(who if p is not None and not p.closed else (
            f"Closed: {p.stage}" if p is not None else ""))
        at_committee = stage == "committee"
        self.action_button.setVisible(not at_committee)
        self.approve_button.setVisible(at_committee)
        self.veto_button.setVisible(at_committee)
        self.action_button.setText(ACTION_TEXT.get(stage, "Complete step"))
        self.action_button.setEnabled(may and note and idle and stage in ACTION_TEXT)
        self.action_button.setToolTip(tip if not may else tip + ("" if note else "\nWrite the step's text first"))
        for b in (self.approve_button, self.veto_button):
            b.setEnabled(may and note and idle and at_committee)
            b.setToolTip(tip if not may else tip + ("" if note else "\nThe committee's note is required"))
        at_risk = stage == "risk"
        self.run_combo.setEnabled(at_risk and may)
        self.attach_button.setEnabled(at_risk and may and idle and self.run_combo.currentData() is not None)
        self.attach_button.setToolTip("Attach the chosen stored stress run to the risk assessment" if at_risk and may
                                      else "Stress runs are attached during the risk assessment, by "
                                           "Risk officer or CRO")
        self.note_edit.setEnabled(may)
        self.propose_button.setEnabled(u is not None and u.role in rcsa.STEP_ROLES["rationale"] and idle
                                       and bool(self.new_title.text().strip()))
        self.propose_button.setToolTip("New proposals come from Trader or Supervisor")

    def _run(self, fn: Any, *args: Any, what: str) -> None:
        assert self.tasks is not None
        self._busy = True
        set_tone(self.message, f"{what}…", "info")
        self._update_buttons()
        self.tasks.run(fn, *args, on_done=self._done, on_error=self._failed, name=f"nb {what.lower()}")

    def _advance(self) -> None:
        p = self.current()
        if p is None or self.user is None:
            return
        self._pending = (p.id, f"{STEP_LABELS[p.stage].lower()} recorded on #{p.id}", True)
        self._run(rcsa.advance, self.store, self.user, p.id, p.stage, self.note_edit.toPlainText(), None,
                  what="Saving")

    def _decide(self, approve: bool) -> None:
        p = self.current()
        if p is None or self.user is None:
            return
        self._pending = (p.id, f"#{p.id} {'approved' if approve else 'vetoed'}", True)
        self._run(rcsa.decide, self.store, self.user, p.id, approve, self.note_edit.toPlainText(), what="Deciding")

    def _attach(self) -> None:
        p, run_id = self.current(), self.run_combo.currentData()
        if p is None or self.user is None or run_id is None:
            return
        self._pending = (p.id, f"stress run #{run_id} attached to #{p.id}", False)
        self._run(rcsa.attach_stress_run, self.store, self.user, p.id, int(run_id), what="Attaching")

    def _propose(self) -> None:
        if self.user is None:
            return
        self._pending = (0, f"proposal “{self.new_title.text().strip()}” created", False)
        self._run(rcsa.propose, self.store, self.user, self.new_title.text(), self.new_description.text(),
                  what="Proposing")

    def _done(self, result: Any) -> None:
        self._busy = False
        pid, text, clear_note = self._pending
        if pid == 0:
            pid = int(result)
            self.new_title.clear()
            self.new_description.clear()
        if clear_note:
            self.note_edit.clear()
        set_tone(self.message, text, "ok")
        self.acted.emit(pid)
        self._select_after = pid
        self.refreshed.connect(self._reselect)
        self.refresh()

    def _reselect(self) -> None:
        self.refreshed.disconnect(self._reselect)
        self.select_proposal(self._select_after)

    def _failed(self, e: BaseException) -> None:
        self._busy = False
        set_tone(self.message, error_message(e))
        self._update_buttons()


__all__ = ["NbReviewDock"]
