"""The selected incident in the incidents dock: triage, commander, lifecycle buttons, escalation list,
notes and root cause, the post-incident review, its corrective actions, its timeline and the loss
events recorded against it (Loss events dock). Roles that may not change incidents see the write
buttons disabled with a tooltip saying who may.

The panel shows what `services.incidents.detail` returned and writes through the task runner; after
a write it emits `changed(incident id)` and the dock reads the list and the incident again. Refusals
(a move out of order, a close blocked by the review or by unverified actions) are shown inline with
the service's words.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services import incidents
from services.actions import STATUS_LABELS, ActionError
from services.incidents import NEXT, RESPONSE_TEXT, STATE_LABELS, IncidentError
from services.store import StoreError
from widgets.incident_root_cause import RootCauseEditor
from widgets.records import OVERDUE_TEXT, Field, RecordTableModel, error_text, hk_time, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store

SEV_COLOURS = {1: "#f85149", 2: "#f0883e", 3: "#e3b341", 4: "#8b949e"}


def write_error(e: BaseException) -> str:
    """A refusal in the service's own words; anything else through the shared wording."""
    if isinstance(e, IncidentError | ActionError | StoreError):
        return str(e)
    return error_text(e)


def sev_text(v: Any) -> str:
    return "" if v is None or v != v else f"SEV-{int(v)}"


def _caption(text: str) -> QLabel:
    lab = QLabel(text)
    lab.setProperty("role", "caption")
    return lab


class IncidentDetail(QWidget):
    """Everything about one incident, in four tabs."""

    changed = Signal(int)  # a write succeeded: the incident id
    open_register = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.incident: dict[str, Any] | None = None
        self.busy = False
        self._fitted = False
        self._fitted_views: set[Any] = set()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.title = QLabel("Select an incident")
        self.title.setStyleSheet("font-weight: 600; font-size: 13px")
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        lay.addWidget(self.message)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self._incident_tab(), "Incident")
        self.tabs.addTab(self._analysis_tab(), "Notes and root cause")
        self.tabs.addTab(self._review_tab(), "Review and actions")
        self.tabs.addTab(self._timeline_tab(), "Timeline")
        self.tabs.addTab(self._losses_tab(), "Loss events")
        lay.addWidget(self.tabs, 1)
        self.show_incident(None, [])

    # ------------------------------------------------------------------ tabs
    def _incident_tab(self) -> QWidget:
        w = QWidget()
        g = QGridLayout(w)
        g.setContentsMargins(6, 6, 6, 6)
        g.setVerticalSpacing(4)
        self.facts = QLabel("")
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        g.addWidget(self.facts, 0, 0, 1, 4)
        self.severity_box = QComboBox()
        for sev in (1, 2, 3, 4):
            self.severity_box.addItem(f"SEV-{sev} · respond {RESPONSE_TEXT[sev]}", sev)
        self.triage_button = QPushButton("&Triage")
        self.triage_button.clicked.connect(self.triage)
        g.addWidget(QLabel("Severity"), 1, 0)
        g.addWidget(self.severity_box, 1, 1, 1, 2)
        g.addWidget(self.triage_button, 1, 3)
        self.commander_box = QComboBox()
        self.commander_button = QPushButton("Set co&mmander")
        self.commander_button.clicked.connect(self.set_commander)
        g.addWidget(QLabel("Commander"), 2, 0)
        g.addWidget(self.commander_box, 2, 1, 1, 2)
        g.addWidget(self.commander_button, 2, 3)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note for the next step (optional)")
        g.addWidget(QLabel("Note"), 3, 0)
        g.addWidget(self.note_edit, 3, 1, 1, 3)
        self.state_row = QHBoxLayout()
        self.state_buttons: dict[str, QPushButton] = {}
        for s in ("communicate", "contain", "resolve", "recover", "review"):
            b = QPushButton(f"→ {STATE_LABELS[s]}")
            b.clicked.connect(lambda _c=False, target=s: self.advance(target))
            self.state_row.addWidget(b)
            self.state_buttons[s] = b
        self.close_button = QPushButton("C&lose incident")
        self.close_button.clicked.connect(self.close_incident)
        self.state_row.addWidget(self.close_button)
        self.state_row.addStretch(1)
        g.addWidget(QLabel("Next step"), 4, 0)
        g.addLayout(self.state_row, 4, 1, 1, 3)
        self.blockers = QLabel("")
        self.blockers.setWordWrap(True)
        self.blockers.setStyleSheet(f"color: {OVERDUE_TEXT.name()}")
        g.addWidget(self.blockers, 5, 0, 1, 4)
        g.addWidget(_caption("Escalation list for this severity"), 6, 0, 1, 4)
        self.escalation_model = RecordTableModel([Field("Who", "who"), Field("When", "within"),
                                                  Field("People", "people")], self, key="_key")
        self.escalation_view = make_table(self.escalation_model)
        self.escalation_view.setSortingEnabled(False)  # the list's own order: first told first
        self.escalation_model.sort(-1)
        self.escalation_view.setMinimumHeight(90)
        g.addWidget(self.escalation_view, 7, 0, 1, 4)
        g.setColumnStretch(1, 1)
        g.setRowStretch(7, 1)
        return w

    def _analysis_tab(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        v.setContentsMargins(6, 6, 6, 6)
        v.setSpacing(3)
        notes = QHBoxLayout()
        self.containment_edit = QPlainTextEdit()
        self.containment_edit.setPlaceholderText("containment: what was done to stop the damage spreading")
        self.recovery_edit = QPlainTextEdit()
        self.recovery_edit.setPlaceholderText("recovery: how normal service was restored")
        for e in (self.containment_edit, self.recovery_edit):
            e.setMaximumHeight(70)
            notes.addWidget(e)
        v.addLayout(notes)
        self.notes_button = QPushButton("Save &notes")
        self.notes_button.clicked.connect(self.save_notes)
        v.addWidget(self.notes_button, 0, Qt.AlignmentFlag.AlignRight)
        v.addWidget(_caption("Root cause"))
        self.root_cause = RootCauseEditor()
        self.root_cause.changed.connect(self._root_cause_edited)
        v.addWidget(self.root_cause)
        row = QHBoxLayout()
        self.root_cause_problem = QLabel("")
        self.root_cause_problem.setStyleSheet(f"color: {OVERDUE_TEXT.name()}")
        self.root_cause_problem.setWordWrap(True)
        row.addWidget(self.root_cause_problem, 1)
        self.root_cause_button = QPushButton("Save &root cause")
        self.root_cause_button.clicked.connect(self.save_root_cause)
        row.addWidget(self.root_cause_button)
        v.addLayout(row)
        v.addStretch(1)
        return w

    def _review_tab(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        v.setContentsMargins(6, 6, 6, 6)
        v.setSpacing(3)
        self.review_caption = _caption("Post-incident review")
        v.addWidget(self.review_caption)
        self.review_edit = QPlainTextEdit()
        self.review_edit.setPlaceholderText("what happened, what worked, what did not, what changes")
        self.review_edit.setMaximumHeight(80)
        v.addWidget(self.review_edit)
        self.review_button = QPushButton("Save re&view")
        self.review_button.clicked.connect(self.save_review)
        v.addWidget(self.review_button, 0, Qt.AlignmentFlag.AlignRight)
        head = QHBoxLayout()
        head.addWidget(_caption("Corrective actions (close needs every one verified)"))
        head.addStretch(1)
        reg = QPushButton("Open the register")
        reg.setToolTip("start, complete and verify actions in the Corrective actions dock")
        reg.clicked.connect(self.open_register.emit)
        head.addWidget(reg)
        v.addLayout(head)
        self.actions_model = RecordTableModel([
            Field("ID", "id", "number", fmt=lambda x: str(int(x))), Field("Action", "title"),
            Field("Owner", "owner"), Field("Due", "due"),
            Field("Status", "status_text", foreground=lambda s: None if s == "Verified" else OVERDUE_TEXT),
            Field("Verified by", "verified_by")], self)
        self.actions_view = make_table(self.actions_model)
        v.addWidget(self.actions_view, 1)
        add = QHBoxLayout()
        self.action_title = QLineEdit()
        self.action_title.setPlaceholderText("new corrective action")
        self.action_owner = QComboBox()
        self.action_due = QDateEdit(QDate.currentDate().addDays(14))
        self.action_due.setCalendarPopup(True)
        self.action_due.setDisplayFormat("yyyy-MM-dd")
        self.add_action_button = QPushButton("&Add action")
        self.add_action_button.clicked.connect(self.add_action)
        self.action_title.textChanged.connect(lambda _t: self._update_buttons())
        for caption, x in (("", self.action_title), ("Owner", self.action_owner), ("Due", self.action_due)):
            if caption:
                add.addWidget(QLabel(caption))
            add.addWidget(x, 1 if x is self.action_title else 0)
        add.addWidget(self.add_action_button)
        v.addLayout(add)
        return w

    def _timeline_tab(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        v.setContentsMargins(6, 6, 6, 6)
        self.events_model = RecordTableModel([
            Field("Time (HKT)", "ts", "time", fmt=lambda x: hk_time(x, seconds=True)),
            Field("State", "state_text"), Field("By", "actor"), Field("Note", "note")], self)
        self.events_view = make_table(self.events_model)
        self.events_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)  # chronological
        v.addWidget(self.events_view)
        return w

    def _losses_tab(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        v.setContentsMargins(6, 6, 6, 6)
        self.losses_caption = _caption("Loss events recorded against this incident (record them in Loss events)")
        v.addWidget(self.losses_caption)
        self.losses_model = RecordTableModel([
            Field("ID", "id", "number", fmt=lambda x: str(int(x))), Field("Discovered", "discovered_on"),
            Field("Event type", "event_type"), Field("Net HKD", "net_hkd", "number", fmt=lambda x: f"{x:,.2f}"),
            Field("Gross", "gross_loss", "number", fmt=lambda x: f"{x:,.2f}"), Field("Ccy", "currency"),
            Field("Near miss", "near_miss_text"), Field("Route", "reporting_route")], self)
        self.losses_view = make_table(self.losses_model)
        v.addWidget(self.losses_view, 1)
        return w

    # ------------------------------------------------------------------ showing
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self._update_buttons()

    def set_users(self, users: list[str]) -> None:
        for box in (self.commander_box, self.action_owner):
            cur = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems(users)
            if cur in users:
                box.setCurrentText(cur)
            box.blockSignals(False)

    def show_incident(self, d: dict[str, Any] | None, users: list[str] | None = None) -> None:
        """Show one incident's detail (None: nothing selected)."""
        if users is not None:
            self.set_users(users)
        same = d is not None and self.incident is not None and d["id"] == self.incident["id"]
        self.incident = d
        if d is None:
            self.title.setText("Select an incident, or log a new one")
            self.facts.setText("")
            for m in (self.escalation_model, self.actions_model, self.events_model, self.losses_model):
                m.set_records([])
            self.blockers.setText("")
            self._update_buttons()
            return
        colour = SEV_COLOURS.get(d["severity"] or 0, "#8b949e")
        sev = sev_text(d["severity"]) or "untriaged"
        self.title.setText(f"#{d['id']} <span style='color:{colour}'>{sev}</span> · {d['title']} · "
                           f"{STATE_LABELS[d['state']]}")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.facts.setText(self._facts(d))
        if d["severity"]:
            self.severity_box.setCurrentIndex(int(d["severity"]) - 1)
        if d["commander"]:
            self.commander_box.setCurrentText(d["commander"])
        else:
            self.commander_box.setCurrentIndex(-1)
        self.escalation_model.set_records([{"_key": i, "who": e["who"], "within": e["within"],
                                            "people": ", ".join(e["people"])} for i, e in enumerate(d["escalation"])])
        if d["escalation"] and not self._fitted:
            fit_columns(self.escalation_view, 280)
            self._fitted = True
        self.actions_model.set_records([{**a, "due": a["due_date"].isoformat() + (" (overdue)" if a["overdue"] else ""),
                                         "status_text": STATUS_LABELS[a["status"]]} for a in d["actions"]])
        self.events_model.set_records([{**e, "state_text": STATE_LABELS.get(e["state"], e["state"])}
                                       for e in d["events"]])
        losses = d.get("loss_events", [])
        self.losses_model.set_records([{**x, "near_miss_text": "near miss" if x["near_miss"] else ""} for x in losses])
        total = sum(x["net_hkd"] for x in losses)
        self.tabs.setTabText(4, f"Loss events ({len(losses)})" if losses else "Loss events")
        self.losses_caption.setText(f"{len(losses)} loss event{'s' if len(losses) != 1 else ''}, net "
                                    f"{total:,.2f} HKD" if losses else
                                    "No loss event recorded against this incident (record them in Loss events)")
        for view, rows in ((self.actions_view, d["actions"]), (self.events_view, d["events"]),
                           (self.losses_view, losses)):
            if rows and view not in self._fitted_views:
                fit_columns(view, 300)
                self._fitted_views.add(view)
        closable = "closed" in NEXT[d["state"]]
        self.blockers.setText("" if not closable else
                              "Cannot close yet: " + "; ".join(d["blockers"]) if d["blockers"] else
                              "Can be closed.")
        if not same:
            self.message.hide()
            self.note_edit.clear()
            self.containment_edit.setPlainText(d["containment"])
            self.recovery_edit.setPlainText(d["recovery"])
            self.review_edit.setPlainText(d["review"])
            self.root_cause.load(d["root_cause_method"], d["root_cause"])
        reviewed = (f"Post-incident review — written by {d['reviewed_by']} {hk_time(d['reviewed_at'])}"
                    if d["reviewed_by"] else "Post-incident review")
        need = " (required for SEV-1/2 before closing)" if d["severity"] in incidents.REVIEW_REQUIRED else ""
        self.review_caption.setText(reviewed + need)
        self._root_cause_edited()
        self._update_buttons()

    def _facts(self, d: dict[str, Any]) -> str:
        lines = [f"Detected {hk_time(d['detected_at'])} by {d['detected_by']}",
                 f"Systems: {d['systems'] or '—'} · Desks: {d['desks'] or '—'}"]
        if d["response_due_at"] is not None:
            due = f"Response due {hk_time(d['response_due_at'], seconds=True)} ({RESPONSE_TEXT[d['severity']]})"
            if d["responded_at"] is not None:
                late = d["responded_at"] > d["response_due_at"]
                due += f" · responded {hk_time(d['responded_at'], seconds=True)}" + (" (late)" if late else "")
            elif d["overdue"]:
                due += " · OVERDUE"
            lines.append(due)
        if d["description"]:
            lines.append(d["description"])
        return "\n".join(lines)

    def _update_buttons(self) -> None:
        d = self.incident
        may = self.user is not None and incidents.may_write(self.user)
        live = d is not None and d["state"] != "closed" and not self.busy and may
        nxt = NEXT[d["state"]] if d is not None else ()
        for s, b in self.state_buttons.items():
            b.setEnabled(live and s in nxt)
            b.setVisible(s in nxt)
        self.close_button.setEnabled(live and "closed" in nxt)
        if d is not None and d["blockers"] and d["state"] != "closed":
            self.close_button.setToolTip("Cannot close yet: " + "; ".join(d["blockers"]))
        else:
            self.close_button.setToolTip("")
        self.triage_button.setEnabled(live)
        self.triage_button.setText("&Re-grade" if d is not None and d["severity"] else "&Triage")
        for b in (self.commander_button, self.notes_button, self.add_action_button):
            b.setEnabled(live)
        self.add_action_button.setEnabled(live and bool(self.action_title.text().strip()))
        self.review_button.setEnabled(live and d is not None and d["state"] in ("recover", "review"))
        self.review_button.setToolTip("" if self.review_button.isEnabled() else
                                      "the review is written once the incident is recovering")
        self.root_cause_button.setEnabled(live and not self.root_cause.problem())
        if self.user is not None and not may:
            for b in self._write_buttons():
                b.setToolTip(incidents.who_may_write())

    def _write_buttons(self) -> list[QPushButton]:
        return [self.triage_button, self.commander_button, *self.state_buttons.values(), self.close_button,
                self.notes_button, self.root_cause_button, self.review_button, self.add_action_button]

    def _root_cause_edited(self) -> None:
        why = "" if self.root_cause.is_blank() else self.root_cause.problem()
        self.root_cause_problem.setText(why)
        self._update_buttons()

    # ------------------------------------------------------------------ writes
    def _write(self, fn: Callable[..., Any], *args: Any, ok: str = "") -> None:
        if self.store is None or self.user is None or self.tasks is None or self.incident is None or self.busy:
            return
        inc_id = int(self.incident["id"])
        self.busy = True
        self._update_buttons()

        def done(_r: Any) -> None:
            self.busy = False
            if ok:
                set_tone(self.message, ok, "ok")
            self._update_buttons()
            self.changed.emit(inc_id)

        def failed(e: BaseException) -> None:
            self.busy = False
            set_tone(self.message, write_error(e), "error")
            self._update_buttons()

        self.tasks.run(fn, self.store, self.user, inc_id, *args, on_done=done, on_error=failed, name="incident write")

    def triage(self) -> None:
        sev = int(self.severity_box.currentData())
        self._write(incidents.triage, sev, self.note_edit.text(), ok=f"Graded SEV-{sev}.")

    def set_commander(self) -> None:
        who = self.commander_box.currentText()
        self._write(incidents.set_commander, who, ok=f"{who} is the incident commander.")

    def advance(self, target: str) -> None:
        self._write(incidents.advance, target, self.note_edit.text(), ok=f"Moved to {STATE_LABELS[target].lower()}.")

    def close_incident(self) -> None:
        self._write(incidents.close, self.note_edit.text(), ok="Incident closed.")

    def save_notes(self) -> None:
        self._write(incidents.set_notes, self.containment_edit.toPlainText(), self.recovery_edit.toPlainText(),
                    ok="Notes saved.")

    def save_root_cause(self) -> None:
        method, data = self.root_cause.value()
        self._write(incidents.set_root_cause, method, data, ok="Root cause saved.")

    def save_review(self) -> None:
        self._write(incidents.set_review, self.review_edit.toPlainText(), ok="Review saved.")

    def add_action(self) -> None:
        due: date = self.action_due.date().toPython()  # type: ignore[assignment]
        title = self.action_title.text()
        self._write(incidents.add_action, title, self.action_owner.currentText(), due,
                    ok=f"Action added: {title.strip()}.")
        self.action_title.clear()

