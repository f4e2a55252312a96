"""One trade-error ticket and what can be done to it: the erroneous and correct trade, sign-off buttons
for the review roles its severity needs (enabled only for who may sign), the error-account transfer
and client notification, the severity override (reason required), the P&L resolution with the gains
policy, the 5-whys root cause, and Close (enabled once nothing blocks it; the blockers are listed).
Every action runs on the task runner; ``changed`` asks the dock to reload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services import trade_errors as te
from widgets.action_entry import ActionEntry
from widgets.records import error_text, hk_time, set_tone
from widgets.trade_error_form import LEVEL_COLOURS, number

if TYPE_CHECKING:
    from app.tasks import TaskRunner
    from services.auth import User
    from services.store import Store


def _leg_text(leg: dict[str, Any]) -> str:
    if not leg:
        return "—"
    return (f"{leg.get('side', '')} {float(leg.get('qty', 0)):,.0f} {leg.get('code', '')} @ "
            f"{float(leg.get('price', 0)):,.3f} in {leg.get('account', '')}")


class TicketPanel(QWidget):
    changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.ticket: dict[str, Any] | None = None
        self.busy = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 0, 0, 0)
        self.summary = QLabel("Select a ticket")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        lay.addWidget(self.tabs, 1)
        # review
        review = QWidget()
        rl = QVBoxLayout(review)
        self.signoffs = QLabel()
        self.signoffs.setWordWrap(True)
        rl.addWidget(self.signoffs)
        row = QHBoxLayout()
        self.sign_buttons: dict[str, QPushButton] = {}
        for role, label in te.REVIEW_LABELS.items():
            b = QPushButton(f"Sign as {label}")
            b.clicked.connect(lambda _=False, r=role: self._act(te.sign_off, r, ok=f"signed as {te.REVIEW_LABELS[r]}"))
            self.sign_buttons[role] = b
            row.addWidget(b)
        row.addStretch(1)
        rl.addLayout(row)
        row2 = QHBoxLayout()
        self.transfer_button = QPushButton("Move to error account")
        self.transfer_button.clicked.connect(lambda: self._act(te.transfer_to_error_account, ok="moved to the error account"))
        self.notify_button = QPushButton("Client notified")
        self.notify_button.clicked.connect(lambda: self._act(te.notify_client, ok="client notification recorded"))
        self.close_button = QPushButton("Close ticket")
        self.close_button.clicked.connect(lambda: self._act(te.close, ok="closed"))
        for b in (self.transfer_button, self.notify_button, self.close_button):
            row2.addWidget(b)
        row2.addStretch(1)
        rl.addLayout(row2)
        self.blockers = QLabel()
        self.blockers.setWordWrap(True)
        rl.addWidget(self.blockers)
        rl.addStretch(1)
        self.tabs.addTab(review, "Review")
        # severity override
        sev = QWidget()
        sl = QFormLayout(sev)
        self.level = QComboBox()
        self.level.addItem("computed level", None)
        for lv in te.LEVELS:
            self.level.addItem(lv, lv)
        self.override_reason = QLineEdit()
        self.override_reason.setPlaceholderText("required: why the computed level is not right")
        self.override_button = QPushButton("Override severity")
        self.override_button.clicked.connect(self._override)
        sl.addRow("Severity", self.level)
        sl.addRow("Reason", self.override_reason)
        sl.addRow("", self.override_button)
        self.tabs.addTab(sev, "Severity")
        # resolution
        res = QWidget()
        fl = QFormLayout(res)
        self.final_pnl, self.recovery, self.resolution = QLineEdit(), QLineEdit(), QLineEdit()
        self.final_pnl.setPlaceholderText("negative for a loss")
        self.recovery.setPlaceholderText("0")
        self.resolution.setPlaceholderText("how it was settled (re-booked, cancelled, …)")
        self.gains = QComboBox()
        self.gains.addItem("— (a gain needs a policy)", "")
        for k, v in te.GAINS_POLICIES.items():
            self.gains.addItem(v, k)
        self.resolve_button = QPushButton("Resolve P&L")
        self.resolve_button.clicked.connect(self._resolve)
        fl.addRow("Final P&L (HKD)", self.final_pnl)
        fl.addRow("Recovery (HKD)", self.recovery)
        fl.addRow("Gains policy", self.gains)
        fl.addRow("Resolution", self.resolution)
        fl.addRow(QLabel(te.LOSS_POLICY + "."), self.resolve_button)
        self.tabs.addTab(res, "Resolution")
        # root cause
        rc = QWidget()
        cl = QFormLayout(rc)
        self.whys = [QLineEdit() for _ in range(5)]
        for i, w in enumerate(self.whys):
            w.setPlaceholderText("why?" if i else "why did the error happen?")
            cl.addRow(f"Why {i + 1}", w)
        self.category = QComboBox()
        for c in te.ROOT_CAUSES:
            self.category.addItem(c.capitalize(), c)
        self.rc_button = QPushButton("Save root cause")
        self.rc_button.clicked.connect(self._root_cause)
        cl.addRow("Root cause", self.category)
        cl.addRow("", self.rc_button)
        act = ActionEntry("corrective action, e.g. add a duplicate-order check", "Add action", 14, owner_width=120)
        self.action_entry = act
        self.action_title, self.action_owner, self.action_due = act.title, act.owner, act.due
        self.action_button = act.button
        self.action_button.clicked.connect(self._add_action)
        cl.addRow("Action", act)
        self.tabs.addTab(rc, "Root cause (5 whys)")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        lay.addWidget(self.message)
        self.show_ticket(None)

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    # ------------------------------------------------------------------ showing
    def show_ticket(self, t: dict[str, Any] | None) -> None:
        same = t is not None and self.ticket is not None and t["id"] == self.ticket["id"]
        self.ticket = t
        if not same:
            set_tone(self.message, "", "ok")
        if t is None:
            self.summary.setText("Select a ticket")
            self.signoffs.setText("")
            self.blockers.setText("")
            self._enable()
            return
        lvl = t["effective_severity"]
        computed, why = te.severity(t["est_pnl"], t["client_impact"], t["clients_affected"], t["large_wrong_side"])
        over = (f" — overridden from {t['severity']} by {t['severity_override_by']}: {t['override_reason']}"
                if t["severity_override"] else f" — {why}")
        pnl = t["final_pnl"] if t["final_pnl"] is not None else t["est_pnl"]
        self.summary.setText(
            f"<b>#{t['id']}</b> {t['error_type_label']} · {t['desk']} · trade date {t['trade_date']} · "
            f"<b style='color:{LEVEL_COLOURS[lvl]}'>{lvl}</b>{over}<br>"
            f"Erroneous: {_leg_text(t['erroneous'])}<br>Correct: {_leg_text(t['correct'])}<br>"
            f"P&L {pnl:,.2f} HKD ({'final' if t['final_pnl'] is not None else 'estimated'})"
            + (f", recovered {t['recovery']:,.2f}" if t["recovery"] else "")
            + (f" · {t['pnl_resolution']}" if t["pnl_resolution"] else "") + f" · {t['status']}")
        done = {s["role"]: s for s in t["signoffs"]}
        self.signoffs.setText("Reviews needed: " + " · ".join(
            f"{te.REVIEW_LABELS[r]}: " + (f"✔ {done[r]['signed_by']} {hk_time(done[r]['ts'])}" if r in done
                                          else "waiting") for r in t["required_reviews"]))
        extra = []
        if t["error_account_transfer"]:
            extra.append(f"in the error account since {hk_time(t['error_account_at'])}")
        if t["client_notified"]:
            extra.append(f"client notified {hk_time(t['client_notified_at'])}")
        left = t["blockers"]
        acts = [f"#{a['id']} {a['title']} ({a['owner']}, due {a['due_date']}, {a['status'].replace('_', ' ')}"
                + (", overdue" if a.get("overdue") else "") + ")" for a in t.get("actions", [])]
        if acts:
            extra.append("corrective actions: " + "; ".join(acts))
        self.blockers.setText(("; ".join(extra) + "<br>" if extra else "")
                              + ("Closed " + hk_time(t["closed_at"]) if t["status"] == "closed" else
                                 "Ready to close" if not left else "Before closing: " + ", ".join(left)))
        if not same:
            self.final_pnl.setText("" if t["final_pnl"] is None else f"{t['final_pnl']:.2f}")
            self.recovery.setText(f"{t['recovery']:.2f}" if t["recovery"] else "")
            self.resolution.setText(t["pnl_resolution"])
            for i, w in enumerate(self.whys):
                w.setText(t["whys"][i] if i < len(t["whys"]) else "")
            if t["root_cause_category"]:
                self.category.setCurrentIndex(max(0, self.category.findData(t["root_cause_category"])))
            self.override_reason.clear()
        self._enable()

    def _enable(self) -> None:
        t, u = self.ticket, self.user
        live = t is not None and t["status"] == "open" and u is not None and not self.busy
        work = live and u is not None and u.role in te.WORK_ROLES
        for role, b in self.sign_buttons.items():
            need = t is not None and role in t["missing_reviews"]
            b.setVisible(t is None or role in t["required_reviews"])
            ok = live and need and u is not None and te.may_sign(u, role) and t is not None and t["created_by"] != u.login \
                and all(s["signed_by"] != u.login for s in t["signoffs"])
            b.setEnabled(bool(ok))
        self.transfer_button.setEnabled(bool(work and t and not t["error_account_transfer"]))
        self.notify_button.setEnabled(bool(work and t and t["client_impact"] and not t["client_notified"]))
        self.close_button.setEnabled(bool(work and t and not t["blockers"]))
        self.override_button.setEnabled(bool(live and u is not None and u.role in te.OVERRIDE_ROLES))
        self.resolve_button.setEnabled(bool(work))
        self.rc_button.setEnabled(bool(work))
        self.action_button.setEnabled(bool(work))

    # ------------------------------------------------------------------ actions
    def _act(self, fn: Callable[..., Any], *args: Any, ok: str) -> None:
        t = self.ticket
        if t is None or self.tasks is None or self.store is None or self.user is None or self.busy:
            return
        self.busy = True
        self._enable()
        tid = int(t["id"])

        def done(_r: Any) -> None:
            self.busy = False
            set_tone(self.message, f"Trade error #{tid}: {ok}", "ok")
            self._enable()
            self.changed.emit(tid)

        def failed(e: BaseException) -> None:
            self.busy = False
            from services.actions import ActionError

            known = isinstance(e, te.TradeErrorError | ActionError)
            set_tone(self.message, str(e) if known else error_text(e), "error")
            self._enable()

        self.tasks.run(fn, self.store, self.user, tid, *args, on_done=done, on_error=failed, name="trade error")

    def _override(self) -> None:
        reason = self.override_reason.text().strip()
        if not reason:
            set_tone(self.message, "Reason: an override needs a reason", "error")
            return
        level = self.level.currentData()
        self._act(te.override_severity, level, reason, ok=f"severity {'set to ' + level if level else 'back to computed'}")

    def _resolve(self) -> None:
        try:
            final = number(self.final_pnl.text(), "Final P&L")
            rec = number(self.recovery.text(), "Recovery", 0.0)
        except te.TradeErrorError as e:
            set_tone(self.message, str(e), "error")
            return
        self._act(te.resolve_pnl, final, rec, self.resolution.text(), str(self.gains.currentData()),
                  ok="P&L resolved")

    def _add_action(self) -> None:
        self._act(te.add_corrective_action, *self.action_entry.values(), ok="corrective action opened")

    def _root_cause(self) -> None:
        self._act(te.set_root_cause, [w.text() for w in self.whys], str(self.category.currentData()),
                  ok="root cause saved")
