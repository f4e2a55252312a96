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
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from widgets.records import (
    ERROR_COLOUR,
    MUTED_TEXT,
    OK_COLOUR,
    REQUEST_STATUS_COLOURS,
    WARN_COLOUR,
    delta_text,
    error_text,
    field_label,
    hk_time,
    kind_label,
    role_label,
    set_tone,
    target_text,
    to_utc,
    until_text,
    value_text,
)

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.auth import User
    from services.changes import ChangeRequest
    from services.live import LiveMonitor
    from services.store import Store

log = logging.getLogger(__name__)

AccountFigures = Callable[[str], "dict[str, Any] | None"]
BEFORE_BG, AFTER_BG = QColor(72, 28, 34), QColor(24, 66, 40)
CHANGED_MARK = QColor(227, 179, 65)
STALE_TEXT = QColor(240, 136, 62)
BUTTON_STYLE = """
QPushButton { padding: 4px 14px; border-radius: 3px; border: 1px solid #3a4350; background: #2b3340; }
QPushButton:hover { background: #34404f; }
QPushButton:disabled { color: #6e7681; background: #232a33; border-color: #2f3845; }
QPushButton#approve:enabled { background: #238636; border-color: #2ea043; color: white; font-weight: 600; }
QPushButton#approve:enabled:hover { background: #2ea043; }
QPushButton#reject:enabled { background: #8e1519; border-color: #b62324; color: white; font-weight: 600; }
QPushButton#reject:enabled:hover { background: #b62324; }
"""


# ---------------------------------------------------------------------- pure parts (no Qt)
@dataclass
class RequestView:
    """Everything the dialog shows about one request, read in one task."""

    request: ChangeRequest
    approvals: list[dict[str, Any]]
    may_approve: bool
    current: dict[str, Any] | None
    names: dict[str, str] = field(default_factory=dict)
    subject: dict[str, Any] = field(default_factory=dict)
    changed_since: tuple[str, datetime | None] | None = None

    @property
    def approved_by(self) -> set[str]:
        return {str(a["checker"]) for a in self.approvals}

    def name(self, login: str | None) -> str:
        if not login:
            return ""
        full = self.names.get(login)
        return f"{full} · {login}" if full and full != login else login


def load_request_view(store: Store, user: User, req_id: int) -> RequestView:
    """Read a request, its approvals, the target as it is now and who changed it (task function)."""
    import json

    from sqlalchemy import select, text

    from models import schema as S
    from services import changes
    from services.auth import permitted

    req = changes.get(store, req_id)
    approvals = changes.approvals_of(store, req_id)
    may = permitted(store, user, "approve", req.kind)
    view = RequestView(req, approvals, may, None)
    with store.begin() as conn:
        if req.target_table in S.metadata.tables and req.op != "insert":
            view.current = changes.read_target(conn, req.target_table, req.target_key)
        logins = {req.maker, req.checker, *(a["checker"] for a in approvals)} - {None}
        view.names = {r.login: r.display_name for r in conn.execute(
            select(S.users.c.login, S.users.c.display_name).where(S.users.c.login.in_(logins)))}
        if req.kind == "financing_limit" and "account_id" in req.target_key:
            a, c = S.accounts, S.clients
            r = conn.execute(select(a.c.code, a.c.type, c.c.code.label("client"), c.c.name).select_from(
                a.join(c, a.c.client_id == c.c.id)).where(a.c.id == req.target_key["account_id"])).first()
            if r is not None:
                view.subject = {"Account": r.code, "Client": f"{r.client} · {r.name}", "Account type": r.type}
        cur_version = (view.current or {}).get("version")
        if (req.status == "pending" and req.target_version is not None and cur_version is not None
                and cur_version != req.target_version):
            key = json.dumps(req.target_key, sort_keys=True, separators=(",", ":"), default=str)
            last = conn.execute(text(
                "select actor, ts from audit_log where entity = :e and entity_key = :k and action = 'apply' "
                "order by id desc limit 1"), {"e": req.target_table, "k": key}).first()
            view.changed_since = (last.actor, to_utc(last.ts)) if last else ("someone", None)
    return view


def decision_block(req: ChangeRequest, user: User, may_approve: bool, approved_by: set[str]) -> str | None:
    """Why ``user`` cannot decide ``req`` now (None: they can). Mirrors `services.changes`."""
    if req.status != "pending":
        return f"This request is {req.status}."
    if user.login == req.maker:
        return "You made this request: a different person must decide it (four eyes)."
    if not may_approve:
        return f"A {user.role_label.lower()} may view {kind_label(req.kind).lower()} requests but not decide them."
    need = req.next_role or ""
    n = len(req.flow_steps)
    if not (user.role == need or (user.role == "cro" and need == "supervisor")):
        return f"Waiting for the {role_label(need)} (step {req.step + 1} of {n}); you cannot decide this step."
    if user.login in approved_by:
        return "You approved an earlier step: another person must approve this one."
    return None


def monitor_account_figures(monitor: LiveMonitor) -> AccountFigures:
    """Context for limit changes from the live monitor: an account's equity, loan, IM, MM and status."""
    from services.margin import STATUS_NAMES
    from widgets.locking import try_lock

    def figures(account_code: str) -> dict[str, Any] | None:
        with try_lock(monitor.lock) as held:
            if not held:
                return None
            e = monitor.engine
            i = e.book.acct_index.get(account_code)
            if i is None:
                return None
            return {"Status (live)": STATUS_NAMES[int(e.status[i])], "Equity": float(e.equity[i]),
                    "Loan": float(e.loan[i]), "IM": float(e.im[i]), "MM": float(e.mm[i])}

    return figures


# ---------------------------------------------------------------------- the diff
class DiffTable(QTableWidget):
    """Field · before · after · change · now: every field, the changed ones marked and tinted."""

    HEADERS = ("", "Field", "Before (at request)", "After (proposed)", "Change", "Now in store")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(list(self.HEADERS))
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(24)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setShowGrid(False)
        self.setWordWrap(False)
        h = self.horizontalHeader()
        h.setHighlightSections(False)
        h.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        h.setStretchLastSection(True)  # the last visible column takes the spare width
        h.setMinimumSectionSize(24)
        h.setDefaultAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        h.resizeSection(1, 190)
        field_head = QTableWidgetItem(self.HEADERS[1])
        field_head.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.setHorizontalHeaderItem(1, field_head)
        self.changed: list[str] = []

    def set_diff(self, kind: str, key: dict[str, Any], before: dict[str, Any], after: dict[str, Any],
                 current: dict[str, Any] | None = None, show_current: bool = True) -> None:
        names = list(dict.fromkeys([*before, *after]))
        self.changed = [n for n in names if before.get(n) != after.get(n)]
        self.setRowCount(len(names))
        if not names:
            self.setRowCount(1)
            empty = QTableWidgetItem("no values recorded")
            empty.setForeground(MUTED_TEXT)
            self.setItem(0, 1, empty)
        bold = QFont(self.font())
        bold.setBold(True)
        for r, n in enumerate(names):
            changed = n in self.changed
            b, a = before.get(n), after.get(n)
            cells = ["●" if changed else "", field_label(kind, n, key),
                     value_text(b, n) if n in before else "",
                     value_text(a, n) if n in after else "", delta_text(b, a, n)]
            now = current.get(n) if current is not None else None
            cells.append(value_text(now, n) if current is not None and n in current else "")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignVCenter | (
                    Qt.AlignmentFlag.AlignRight if c >= 2 else Qt.AlignmentFlag.AlignLeft))
                if c == 0:
                    item.setForeground(CHANGED_MARK)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                    item.setToolTip("changed" if changed else "")
                elif not changed:
                    item.setForeground(MUTED_TEXT)
                elif c == 2:
                    item.setBackground(BEFORE_BG)
                elif c == 3:
                    item.setBackground(AFTER_BG)
                    item.setFont(bold)
                if c == 5 and current is not None and n in current and n in before and now != b:
                    item.setForeground(STALE_TEXT)
                    item.setToolTip("changed in the store since this request was made")
                self.setItem(r, c, item)
        self.setColumnHidden(5, not show_current)
        self.setFixedHeight(self.horizontalHeader().height() + 24 * max(1, len(names)) + 4)


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

