"""The four-eyes dialog: one change request, its before/after diff, its flow, and the decision.

What the checker sees is what the service will apply: the values captured when the request was made
("before") against the proposed ones ("after"), and next to them what the store holds now, so a
target changed meanwhile is visible before Approve fails on it. The flow's steps show who approved
each step so far. Who may act is decided here only to choose the buttons (the same rule as
`services.changes`); the service (and on PostgreSQL the database) still enforces it, and any refusal
it raises — not permitted, stale target, no longer pending — is shown inside the dialog.

Every store call (loading, approving, rejecting, cancelling) runs in the task runner; the dialog is
modeless and never nests an event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from widgets.diff_table import DiffTable
from widgets.records import (
    ERROR_COLOUR,
    OK_COLOUR,
    REQUEST_STATUS_COLOURS,
    WARN_COLOUR,
    error_text,
    hk_time,
    kind_label,
    role_label,
    set_tone,
    target_text,
    until_text,
    value_text,
)
from widgets.request_view import AccountFigures, RequestView, decision_block, load_request_view

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.store import Store

log = logging.getLogger(__name__)

BUTTON_STYLE = """
QPushButton { padding: 4px 14px; border-radius: 3px; border: 1px solid #3a4350; background: #2b3340; }
QPushButton:hover { background: #34404f; }
QPushButton:disabled { color: #6e7681; background: #232a33; border-color: #2f3845; }
QPushButton#approve:enabled { background: #238636; border-color: #2ea043; color: white; font-weight: 600; }
QPushButton#approve:enabled:hover { background: #2ea043; }
QPushButton#reject:enabled { background: #8e1519; border-color: #b62324; color: white; font-weight: 600; }
QPushButton#reject:enabled:hover { background: #b62324; }
"""


# ---------------------------------------------------------------------- the dialog
def _card(title: str) -> tuple[QFrame, QVBoxLayout]:
    frame = QFrame()
    frame.setProperty("role", "card")
    # never squeezed below its content: a banner appearing grows the dialog instead
    frame.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    lay = QVBoxLayout(frame)
    lay.setContentsMargins(10, 6, 10, 8)
    lay.setSpacing(4)
    head = QLabel(title.upper())
    head.setProperty("role", "caption")
    head.setStyleSheet("font-size: 11px; letter-spacing: 1px; font-weight: 600")
    lay.addWidget(head)
    return frame, lay


def _fill_grid(grid: QGridLayout, pairs: list[tuple[str, str]]) -> None:
    while grid.count():
        item = grid.takeAt(0)
        w = item.widget() if item is not None else None
        if w is not None:
            w.deleteLater()
    for r, (caption, value) in enumerate(pairs):
        cap = QLabel(caption)
        cap.setProperty("role", "caption")
        cap.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        val = QLabel(value)
        val.setWordWrap(True)
        val.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(cap, r, 0)
        grid.addWidget(val, r, 1)
    grid.setColumnStretch(1, 1)


class ChangeRequestDialog(QDialog):
    """One request: diff, flow, context; Approve / Reject / Cancel request as the user may."""

    decided = Signal(int, str)  # (request id, new status) after approve, reject or cancel succeeded
    loaded = Signal(object)  # the RequestView, after each (re)load
    failed = Signal(str)  # an action's error, as shown inline

    def __init__(self, store: Store, user: User, tasks: TaskRunner, request_id: int,
                 parent: QWidget | None = None, *, read_only: bool = False,
                 account_figures: AccountFigures | None = None) -> None:
        super().__init__(parent)
        self.store, self.user, self.tasks = store, user, tasks
        self.request_id = int(request_id)
        self.read_only = read_only
        self.account_figures = account_figures
        self.view: RequestView | None = None
        self.busy: Task | None = None
        self._load_task: Task | None = None
        self.setWindowTitle(f"Change request #{self.request_id}")
        self.setMinimumWidth(820)
        self.setStyleSheet(BUTTON_STYLE)
        self._build_ui()
        self.reload()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(14, 12, 14, 12)
        lay.setSpacing(8)
        head = QHBoxLayout()
        titles = QVBoxLayout()
        titles.setSpacing(1)
        self.title = QLabel(f"Change request #{self.request_id}")
        self.title.setStyleSheet("font-size: 16px; font-weight: 600")
        self.subtitle = QLabel("loading…")
        self.subtitle.setProperty("role", "caption")
        titles.addWidget(self.title)
        titles.addWidget(self.subtitle)
        head.addLayout(titles, 1)
        self.badge = QLabel("")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        head.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(head)

        self.banner = QLabel("")
        self.banner.setWordWrap(True)
        self.banner.hide()
        lay.addWidget(self.banner)

        row = QHBoxLayout()
        row.setSpacing(8)
        details, dlay = _card("Request")
        self.details = QGridLayout()
        self.details.setHorizontalSpacing(12)
        self.details.setVerticalSpacing(3)
        dlay.addLayout(self.details)
        dlay.addStretch(1)
        flow, flay = _card("Approval flow")
        self.flow = QLabel("")
        self.flow.setTextFormat(Qt.TextFormat.RichText)
        self.flow.setWordWrap(True)
        self.flow.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        flay.addWidget(self.flow, 1)
        row.addWidget(details, 3)
        row.addWidget(flow, 2)
        lay.addLayout(row)

        diff, difflay = _card("Change")
        self.diff = DiffTable()
        difflay.addWidget(self.diff)
        lay.addWidget(diff)

        self.context_card, clay = _card("Context")
        self.context = QGridLayout()
        self.context.setHorizontalSpacing(12)
        self.context.setVerticalSpacing(3)
        clay.addLayout(self.context)
        lay.addWidget(self.context_card)
        lay.addStretch(1)  # spare height goes below the cards, never into them

        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setProperty("role", "caption")
        lay.addWidget(self.note)
        self.comment_label = QLabel("Comment")
        self.comment_label.setProperty("role", "caption")
        self.comment = QPlainTextEdit()
        self.comment.setPlaceholderText("Comment — optional to approve, required to reject")
        self.comment.setFixedHeight(58)
        self.comment.setTabChangesFocus(True)
        self.comment.textChanged.connect(self._comment_edited)
        self.comment_label.setBuddy(self.comment)
        lay.addWidget(self.comment_label)
        lay.addWidget(self.comment)

        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        lay.addWidget(self.message)

        buttons = QHBoxLayout()
        self.cancel_button = QPushButton("&Cancel request")
        self.cancel_button.setToolTip("Withdraw your own request while it is pending (Alt+C)")
        self.cancel_button.clicked.connect(self.cancel_request)
        self.reload_button = QPushButton("Re&load")
        self.reload_button.setToolTip("Read the request and its target again (Alt+L)")
        self.reload_button.clicked.connect(self.reload)
        self.approve_button = QPushButton("&Approve")
        self.approve_button.setObjectName("approve")
        self.approve_button.setToolTip("Approve this step (Alt+A); the last step applies the change")
        self.approve_button.clicked.connect(self.approve)
        self.reject_button = QPushButton("&Reject")
        self.reject_button.setObjectName("reject")
        self.reject_button.setToolTip("Reject with a comment (Alt+R)")
        self.reject_button.clicked.connect(self.reject_request)
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Close (Esc)")
        self.close_button.clicked.connect(self.close)
        for b in (self.cancel_button, self.reload_button, self.approve_button, self.reject_button,
                  self.close_button):
            b.setAutoDefault(False)  # Enter must never approve by accident
            b.setDefault(False)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.reload_button)
        buttons.addStretch(1)
        buttons.addWidget(self.approve_button)
        buttons.addWidget(self.reject_button)
        buttons.addWidget(self.close_button)
        lay.addLayout(buttons)
        self._set_actions(approve=False, cancel=False)

    # ------------------------------------------------------------------ loading
    def reload(self) -> None:
        """Read the request again (what is typed in the comment stays)."""
        if self._load_task is not None:
            self._load_task.cancel()
        self._load_task = self.tasks.run(load_request_view, self.store, self.user, self.request_id,
                                         on_done=self._show_view, on_error=self._load_failed,
                                         name=f"change request {self.request_id}")

    def _load_failed(self, e: BaseException) -> None:
        self._load_task = None
        self.subtitle.setText("could not be loaded")
        set_tone(self.message, error_text(e))
        self.failed.emit(self.message.text())

    def _show_view(self, view: RequestView) -> None:
        self._load_task = None
        self.view = view
        req = view.request
        self.setWindowTitle(f"Change request #{req.id} — {kind_label(req.kind)} {target_text(req)}")
        self.title.setText(f"#{req.id}  {kind_label(req.kind)} · {target_text(req)}")
        self.subtitle.setText(f"Flow {req.flow_code} · {len(req.flow_steps)} step"
                              f"{'s' if len(req.flow_steps) != 1 else ''} · {req.op}")
        colour = REQUEST_STATUS_COLOURS.get(req.status, QColor(88, 96, 105)).name()
        self.badge.setText(req.status.upper())
        self.badge.setStyleSheet(f"background: {colour}; color: white; border-radius: 3px; padding: 3px 10px; "
                                 "font-weight: 700; letter-spacing: 1px")
        _fill_grid(self.details, self._detail_pairs(view))
        self.flow.setText(self._flow_html(view))
        self.diff.set_diff(req.kind, req.target_key, req.before, req.after, view.current,
                           show_current=view.current is not None and req.status == "pending")
        context = self._context_pairs(view)
        _fill_grid(self.context, context)
        self.context_card.setVisible(bool(context))
        self._show_banner(view)
        self._apply_permissions(view)
        self.loaded.emit(view)

    def _detail_pairs(self, view: RequestView) -> list[tuple[str, str]]:
        req = view.request
        pairs = [("Maker", view.name(req.maker)), ("Reason", req.reason or "—"),
                 ("Created", f"{hk_time(req.created_at)} HKT")]
        if req.expires_at is not None:
            left = until_text(req.expires_at) if req.status == "pending" else ""
            pairs.append(("Expires", f"{hk_time(req.expires_at)} HKT" + (f"  ({left})" if left else "")))
        pairs.append(("Target", f"{req.target_table} · " + ", ".join(f"{k} {v}" for k, v in req.target_key.items())))
        if req.status != "pending":
            who = view.name(req.checker) if req.checker else ("the maker" if req.status == "cancelled" else "")
            when = f" at {hk_time(req.decided_at)} HKT" if req.decided_at else ""
            said = f" — “{req.comment}”" if req.comment else ""
            pairs.append(("Decision", f"{req.status.capitalize()}{' by ' + who if who else ''}{when}{said}"))
        return pairs

    def _flow_html(self, view: RequestView) -> str:
        req = view.request
        by_step = {int(a["step"]): a for a in view.approvals}
        can = decision_block(req, self.user, view.may_approve, view.approved_by) is None and not self.read_only
        lines = []
        for i, role in enumerate(req.flow_steps):
            head = f"<b>{i + 1}. {role_label(role)}</b>"
            a = by_step.get(i)
            if a is not None:
                said = f" — “{_esc(a['comment'])}”" if a.get("comment") else ""
                line = (f"<span style='color:{OK_COLOUR}'>✔</span> {head}<br>&nbsp;&nbsp;&nbsp;&nbsp;approved by "
                        f"{_esc(view.name(a['checker']))} · {hk_time(a['decided_at'])}{said}")
            elif req.status == "rejected" and i == req.step:
                line = (f"<span style='color:{ERROR_COLOUR}'>✖</span> {head}<br>&nbsp;&nbsp;&nbsp;&nbsp;rejected by "
                        f"{_esc(view.name(req.checker))} · {hk_time(req.decided_at)}")
            elif req.status == "pending" and i == req.step:
                you = " — <b>your decision</b>" if can else ""
                line = f"<span style='color:{WARN_COLOUR}'>●</span> {head} &nbsp;waiting{you}"
            elif req.status == "pending":
                line = f"<span style='color:#8b949e'>○</span> {head} &nbsp;<span style='color:#8b949e'>next</span>"
            else:
                line = (f"<span style='color:#8b949e'>○ {i + 1}. {role_label(role)} &nbsp;not reached "
                        f"({req.status})</span>")
            lines.append(line)
        return "<br>".join(lines) or "—"

    def shown_context(self) -> dict[str, str]:
        """The Context card as shown: caption → value."""
        out: dict[str, str] = {}
        for r in range(self.context.rowCount()):
            cap, val = self.context.itemAtPosition(r, 0), self.context.itemAtPosition(r, 1)
            if cap is not None and val is not None and isinstance(cap.widget(), QLabel):
                out[cap.widget().text()] = val.widget().text()  # type: ignore[union-attr]
        return out

    def _context_pairs(self, view: RequestView) -> list[tuple[str, str]]:
        req = view.request
        pairs: dict[str, str] = {}
        for k, v in view.subject.items():
            pairs[k] = str(v)
        for k, v in (req.context or {}).items():
            label = k.replace("_", " ").capitalize()
            if label not in pairs:
                pairs[label] = value_text(v, k)
        code = str(view.subject.get("Account") or (req.context or {}).get("account") or "")
        if self.account_figures is not None and code:
            try:
                figures = self.account_figures(code) or {}
            except Exception:  # context is a help, never a reason the dialog fails
                log.exception("account figures for %s", code)
                figures = {}
            for k, v in figures.items():
                pairs[k] = value_text(v, k.lower()) if isinstance(v, int | float) else str(v)
        return list(pairs.items())

    def _show_banner(self, view: RequestView) -> None:
        req = view.request
        text, tone = "", "warn"
        if view.changed_since is not None:
            who, when = view.changed_since
            at = f" at {hk_time(when, seconds=True)} HKT" if when else ""
            text = (f"The target was changed by {who}{at} since this request was made — approval will fail. "
                    "Reject it so the maker can resubmit against the current value.")
        elif req.status == "pending" and req.expires_at is not None and until_text(req.expires_at) == "overdue":
            text = "This request is past its expiry time; deciding it now marks it expired."
        elif req.status == "pending" and not req.changed_fields() and req.op == "update":
            text, tone = "The proposed values equal the values at request time (no change).", "info"
        if text:
            set_tone(self.banner, text, tone)
        else:
            self.banner.hide()

    def _apply_permissions(self, view: RequestView) -> None:
        req = view.request
        block = decision_block(req, self.user, view.may_approve, view.approved_by)
        is_maker = req.maker == self.user.login
        if self.read_only:
            note = "Read-only view."
            can_decide = can_cancel = False
        else:
            can_decide = block is None
            can_cancel = is_maker and req.status == "pending"
            note = "" if can_decide else (block or "")
            if can_decide:
                n = len(req.flow_steps)
                note = (f"You decide step {req.step + 1} of {n} ({role_label(req.flow_steps[req.step])})."
                        + (" Approving applies the change." if req.step + 1 == n else
                           " The next step goes to the " + role_label(req.flow_steps[req.step + 1]) + "."))
        self.note.setText(note)
        self.note.setVisible(bool(note))
        self._set_actions(approve=can_decide, cancel=can_cancel)

    def _set_actions(self, approve: bool, cancel: bool) -> None:
        for w in (self.approve_button, self.reject_button, self.comment, self.comment_label):
            w.setVisible(approve)
        self.cancel_button.setVisible(cancel)
        self._enable(self.busy is None)
        if approve:
            self.comment.setFocus()

    def _enable(self, on: bool) -> None:
        for b in (self.approve_button, self.reject_button, self.cancel_button, self.reload_button):
            b.setEnabled(on)
        self.comment.setReadOnly(not on)

    # ------------------------------------------------------------------ actions
    @property
    def can_decide(self) -> bool:
        """The user may approve or reject this request now (the buttons are offered)."""
        return self._decidable()

    def _decidable(self) -> bool:
        v = self.view
        return (v is not None and not self.read_only
                and decision_block(v.request, self.user, v.may_approve, v.approved_by) is None)

    def approve(self) -> None:
        """Approve the current step (Alt+A) in the task runner."""
        if not self._decidable() or self.busy is not None:
            return
        from services import changes

        self._run("Approving…", changes.approve, self.store, self.user, self.request_id,
                  self.comment.toPlainText().strip())

    def reject_request(self) -> None:
        """Reject (Alt+R); refused inline, with nothing sent, when the comment is empty."""
        if not self._decidable() or self.busy is not None:
            return
        comment = self.comment.toPlainText().strip()
        if not comment:
            set_tone(self.message, "A rejection needs a comment: tell the maker why, so they can correct and "
                                   "resubmit.")
            self.comment.setStyleSheet(f"border: 1px solid {ERROR_COLOUR}")
            self.comment.setFocus()
            return
        from services import changes

        self._run("Rejecting…", changes.reject, self.store, self.user, self.request_id, comment)

    def cancel_request(self) -> None:
        """The maker withdraws a pending request (Alt+C)."""
        v = self.view
        if v is None or self.read_only or v.request.maker != self.user.login or self.busy is not None:
            return
        from services import changes

        self._run("Cancelling…", changes.cancel, self.store, self.user, self.request_id)

    def _run(self, doing: str, fn: Callable[..., str], *args: Any) -> None:
        set_tone(self.message, doing, "info")
        self._enable(False)
        self.busy = self.tasks.run(fn, *args, on_done=self._done, on_error=self._failed,
                                   name=f"{fn.__name__} change request {self.request_id}")

    def _done(self, status: str) -> None:
        self.busy = None
        self._enable(True)
        req = self.view.request if self.view else None
        if status == "pending" and req is not None and req.step + 1 < len(req.flow_steps):
            text = (f"Step {req.step + 1} approved — now waiting for the "
                    f"{role_label(req.flow_steps[req.step + 1])}.")
        else:
            text = {"approved": "Approved — the change is applied.", "rejected": "Rejected.",
                    "cancelled": "Request cancelled.",
                    "expired": "The request had expired; it is now marked expired."}.get(status, status)
        set_tone(self.message, text, "ok" if status != "expired" else "warn")
        self.decided.emit(self.request_id, status)
        if status == "expired":
            self.reload()
        else:
            self.accept()

    def _failed(self, e: BaseException) -> None:
        self.busy = None
        self._enable(True)
        set_tone(self.message, error_text(e))
        self.failed.emit(self.message.text())
        self.reload()  # show what the request and its target are now; the message stays

    def _comment_edited(self) -> None:
        if self.comment.styleSheet():
            self.comment.setStyleSheet("")
            if self.message.property("tone") == "error":
                self.message.hide()

    def done(self, result: int) -> None:
        if self._load_task is not None:
            self._load_task.cancel()
            self._load_task = None
        super().done(result)


def _esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

