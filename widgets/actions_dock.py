"""The Corrective actions dock (RISK_METHODS §7): the register across incidents, trade errors, breaks,
KRIs, audits and loss events.

Filters by status, owner and source, and "Overdue only" (open or in progress after the due date);
overdue rows are red. Start, Complete, Verify and Reopen act on the selected action with an optional
note (Reopen needs one). Verify is disabled for the action's owner, with a tooltip saying why — the
service and the database refuse it too. Reads and writes run on the task runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services import actions
from services.actions import SOURCE_KINDS, SOURCE_LABELS, STATUS_LABELS, STATUSES, TRANSITIONS
from widgets.incident_detail import write_error
from widgets.records import ERROR_COLOUR, CoalescedLoad, Field, RecordTableModel, hk_time, set_tone
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store

OVERDUE_ROW = QColor(96, 22, 28)
STATUS_TEXT = {"open": QColor(227, 179, 65), "in_progress": QColor(88, 166, 255), "completed": QColor(126, 226, 168),
               "verified": QColor(139, 148, 158)}
BUTTONS = (("start", "&Start", "in_progress"), ("complete", "&Complete", "completed"),
           ("verify", "&Verify", "verified"), ("reopen", "Re&open", "in_progress"))


def load_register(store: Store) -> list[dict[str, Any]]:
    """Every action, due date first (task function)."""
    return actions.actions(store)


class ActionsDock(QWidget):
    """The corrective-action register with its filters and status buttons."""

    refreshed = Signal()
    open_dock = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.rows: list[dict[str, Any]] = []
        self.busy = False
        self._fitted = False
        self._load = CoalescedLoad(self._start_load, self._loaded, self._failed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.status_box = QComboBox()
        self.status_box.addItem("Not verified", "pending")
        self.status_box.addItem("All statuses", "")
        for s in STATUSES:
            self.status_box.addItem(STATUS_LABELS[s], s)
        self.owner_box = QComboBox()
        self.owner_box.addItem("All owners", "")
        self.source_box = QComboBox()
        self.source_box.addItem("All sources", "")
        for k in SOURCE_KINDS:
            self.source_box.addItem(SOURCE_LABELS[k], k)
        self.overdue_check = QCheckBox("&Overdue only")
        for caption, w in (("Status", self.status_box), ("Owner", self.owner_box), ("Source", self.source_box)):
            bar.addWidget(QLabel(caption))
            bar.addWidget(w)
        bar.addWidget(self.overdue_check)
        for box in (self.status_box, self.owner_box, self.source_box):
            box.currentIndexChanged.connect(lambda _i: self._show())
        self.overdue_check.toggled.connect(lambda _c: self._show())
        bar.addStretch(1)
        self.count = QLabel("")
        bar.addWidget(self.count)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        bar.addWidget(refresh)
        lay.addLayout(bar)
        self.model = RecordTableModel([
            Field("ID", "id", "number", fmt=lambda v: str(int(v))),
            Field("Source", "source"),
            Field("Action", "title"),
            Field("Owner", "owner"),
            Field("Due", "due", tooltip="overdue when still open or in progress after this day"),
            Field("Status", "status_text"),
            Field("Overdue", "days_overdue", "number", fmt=lambda v: f"{int(v)} d" if v and v == v else ""),
            Field("Started", "started_at", "time"),
            Field("Completed", "completed_at", "time"),
            Field("Verified by", "verified_by"),
            Field("Verified", "verified_at", "time"),
            Field("Created by", "created_by")], self)
        self.model.row_background = lambda k: OVERDUE_ROW if (r := self.model.record(k)) and r["overdue"] else None
        self.model.row_foreground = lambda k: STATUS_TEXT.get(r["status"]) if (r := self.model.record(k)) else None
        self.view = make_table(self.model)
        self.view.sortByColumn(4, Qt.SortOrder.AscendingOrder)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)
        lay.addWidget(self.view, 1)
        self.selected_label = QLabel("Select an action")
        self.selected_label.setWordWrap(True)
        lay.addWidget(self.selected_label)
        act = QHBoxLayout()
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note (what was done / checked; required to reopen)")
        act.addWidget(self.note_edit, 1)
        self.buttons: dict[str, QPushButton] = {}
        for verb, caption, _target in BUTTONS:
            b = QPushButton(caption)
            b.clicked.connect(lambda _c=False, v=verb: self.act(v))
            act.addWidget(b)
            self.buttons[verb] = b
        lay.addLayout(act)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        lay.addWidget(self.message)
        self._update_buttons()

    # ------------------------------------------------------------------ context
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()

    def refresh(self) -> None:
        if self.store is not None and self.tasks is not None:
            self._load.request()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_register, self.store, on_done=on_done, on_error=on_error, name="actions")

    def _loaded(self, rows: list[dict[str, Any]]) -> None:
        self.rows = [{**r, "source": f"{SOURCE_LABELS.get(r['source_kind'], r['source_kind'])}"
                                     + (f" #{r['source_id']}" if r["source_id"] is not None else ""),
                      "due": r["due_date"].isoformat(), "status_text": STATUS_LABELS[r["status"]]} for r in rows]
        owners = sorted({r["owner"] for r in self.rows})
        cur = self.owner_box.currentData()
        self.owner_box.blockSignals(True)
        self.owner_box.clear()
        self.owner_box.addItem("All owners", "")
        for o in owners:
            self.owner_box.addItem(o, o)
        if cur in owners:
            self.owner_box.setCurrentIndex(self.owner_box.findData(cur))
        self.owner_box.blockSignals(False)
        self._show()
        if not self._fitted and self.rows:
            fit_columns(self.view, 320)
            self._fitted = True
        self.refreshed.emit()

    def _failed(self, e: BaseException) -> None:
        self.count.setText(f"<span style='color:{ERROR_COLOUR}'>refresh failed: {write_error(e)}</span>")

    def _show(self) -> None:
        status, owner, source = (self.status_box.currentData(), self.owner_box.currentData(),
                                 self.source_box.currentData())
        shown = [r for r in self.rows
                 if (not status or (status == "pending" and r["status"] != "verified") or r["status"] == status)
                 and (not owner or r["owner"] == owner) and (not source or r["source_kind"] == source)
                 and (not self.overdue_check.isChecked() or r["overdue"])]
        self.model.set_records(shown)
        n_over = sum(1 for r in self.rows if r["overdue"])
        self.count.setText(f"{len(shown)} of {len(self.rows)} · "
                           + (f"<span style='color:#f85149'>{n_over} overdue</span>" if n_over else "none overdue"))
        self._update_buttons()

    # ------------------------------------------------------------------ selection and buttons
    def visible_records(self) -> list[dict[str, Any]]:
        return [r for r in (self.model.record_at(i) for i in range(self.model.rowCount())) if r is not None]

    def selected(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.record_at(idx.row()) if idx.isValid() else None

    def select_action(self, action_id: int) -> bool:
        row = self.model.row_of(action_id)
        if row >= 0:
            self.view.selectRow(row)
        return row >= 0

    def _current_changed(self, _c: QModelIndex, _p: QModelIndex) -> None:
        self.message.hide()
        self._update_buttons()

    def _update_buttons(self) -> None:
        r = self.selected()
        me = self.user.login if self.user else ""
        for verb, _caption, target in BUTTONS:
            b = self.buttons[verb]
            allowed = r is not None and TRANSITIONS.get((r["status"], target)) == verb and not self.busy
            tip = ""
            if verb == "verify" and r is not None and r["owner"] == me:
                allowed, tip = False, f"You own this action: someone other than {me} must verify it."
            elif verb == "verify":
                tip = "Verify: someone other than the owner checks the action was done"
            b.setEnabled(allowed)
            b.setToolTip(tip)
        if r is None:
            self.selected_label.setText("Select an action")
        else:
            when = f" · completed {hk_time(r['completed_at'])}" if r["completed_at"] else ""
            self.selected_label.setText(f"#{r['id']} {r['title']} — {r['source']} · owner {r['owner']} · due "
                                        f"{r['due']} · {r['status_text']}{when}"
                                        + (f"\n{r['notes']}" if r["notes"] else ""))

    def act(self, verb: str) -> None:
        r = self.selected()
        if r is None or self.tasks is None or self.busy:
            return
        fn = {"start": actions.start, "complete": actions.complete, "verify": actions.verify,
              "reopen": actions.reopen}[verb]
        self.busy = True
        self._update_buttons()
        aid = int(r["id"])

        def done(_x: Any) -> None:
            self.busy = False
            self.note_edit.clear()
            set_tone(self.message, f"Action #{aid}: {actions.VERB_TEXT[verb]}.", "ok")
            self.refresh()

        def failed(e: BaseException) -> None:
            self.busy = False
            set_tone(self.message, write_error(e), "error")
            self._update_buttons()

        self.tasks.run(fn, self.store, self.user, aid, self.note_edit.text(), int(r["version"]), on_done=done,
                       on_error=failed, name=f"action {verb}")

