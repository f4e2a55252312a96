"""Working a margin call from the alerts dock (and the Margin-call work dock): Send notice…, Adjust
deadline…, Remark…, Mark as exception / Clear exception, Close call… (by hand, with a remark).

`CallActions` owns the four actions (toolbar buttons and the table's context menu) for the selected
account; each opens a small modeless `CallActionDialog` that validates as you type and runs the
service call on the task runner, never on the GUI thread. The notice's snapshot is taken from the
live engine under the monitor's lock at the moment Send is pressed, so it is exactly what the desk saw.

The alerts dock is built before anyone logs in; the login context (store, user, task runner) reaches
its actions through `set_context`, called by the Margin-call work dock when it gets its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from email.utils import parseaddr
from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDate, QObject, Signal
from PySide6.QtGui import QAction, QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from services.calendar import HK_TZ, TradingCalendar
from services.lazy import lazy_module
from widgets.records import error_text, set_tone

if TYPE_CHECKING:
    from services import call_close, call_work, notices
    from services.auth import User
    from services.live import LiveMonitor
    from services.store import Store
else:  # SQLAlchemy and the store behind them are imported on first use, not when the window opens
    call_close = lazy_module("services.call_close")
    call_work = lazy_module("services.call_work")
    notices = lazy_module("services.notices")

KINDS = {"notice": "Send notice…", "deadline": "Adjust deadline…", "remark": "Remark…",
         "exception": "Mark as exception…", "close": "Close call…"}
TIPS = {"notice": "Send the client a margin-call notice (kept in the outbox with a snapshot)",
        "deadline": "Propose a new deadline for the call (four-eyes change request)",
        "remark": "Add a timestamped remark to the call",
        "exception": "Mark the call as an exception, or clear its exception, with a reason",
        "close": "End the call now by hand, with a remark (risk officer, supervisor, CRO; audited)"}


def why(e: BaseException) -> str:
    """A refusal as the user reads it (call-work refusals name the field; the rest as governance)."""
    return str(e) if isinstance(e, call_work.CallWorkError | call_close.CallCloseError) else error_text(e)


def _money(v: Any) -> str:
    return f"{float(v):,.2f}"


FOLDER_KEY = "call_work/notice_folder"


def notice_folder() -> str:
    """The folder the user chose for .eml notices ("" = the default, see services.notices)."""
    from widgets.table_tools import table_settings

    return str(table_settings().value(FOLDER_KEY, "") or "")


def set_notice_folder(path: str) -> None:
    from widgets.table_tools import table_settings

    s = table_settings()
    s.setValue(FOLDER_KEY, path)
    s.sync()


class CallActionDialog(QDialog):
    """One action on one call: the call's facts, the inputs, a message line and the action button."""

    finished_ok = Signal(str)  # what was done

    def __init__(self, kind: str, info: dict[str, Any], owner: CallActions, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind, self.info, self.owner = kind, info, owner
        self.task: Any = None
        clearing = kind == "exception" and info.get("exception") is not None
        self.setWindowTitle({"notice": "Send margin-call notice", "deadline": "Adjust call deadline",
                             "remark": "Remark on margin call", "close": "Close margin call",
                             "exception": "Clear exception" if clearing else "Mark call as exception"}[kind])
        self.setModal(False)
        self.resize(680, 540 if kind == "notice" else 260)
        lay = QVBoxLayout(self)
        head = QLabel(f"<b>{info['account']}</b> · {info['client']} {info['client_name']} · call #{info['id']} · "
                      f"{info['current_status']} · <b>{_money(info['current_amount'])} HKD</b> · due "
                      f"<b>{info['deadline']}</b>")
        head.setWordWrap(True)
        lay.addWidget(head)
        if info.get("exception"):
            x = info["exception"]
            note = QLabel(f"Exception since {x['at']:%Y-%m-%d %H:%M} UTC by {x['by']}: {x['reason']}")
            note.setWordWrap(True)
            lay.addWidget(note)
        form = QFormLayout()
        lay.addLayout(form)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.ok = QPushButton({"notice": "Send", "deadline": "Submit for approval", "remark": "Add remark",
                               "close": "Close call",
                               "exception": "Clear exception" if clearing else "Mark as exception"}[kind])
        self.buttons.addButton(self.ok, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.rejected.connect(self.close)
        self.ok.clicked.connect(self.submit)
        self.to_edit = QLineEdit()
        self.keep_check = QCheckBox()  # keep a typed address as the client's (a change request)
        self.keep_check.setChecked(not info.get("client_email"))
        self.keep_check.hide()
        self.template = QComboBox()
        self.preview = QPlainTextEdit()
        self.date_edit = QDateEdit()
        self.text_edit = QPlainTextEdit()
        self.reason_edit = QLineEdit()
        if kind == "notice":
            self.template.addItems(notices.template_names())
            self.template.currentTextChanged.connect(lambda _t: self._load_preview())
            self.to_edit.setText(notices.default_recipient(info))
            if not info.get("client_email"):
                self.to_edit.setPlaceholderText(f"no e-mail on file for {info['client']}: type the client's address")
            self.to_edit.textChanged.connect(lambda _t: self.validate())
            self.preview.setReadOnly(True)
            self.preview.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
            self.preview.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            form.addRow("Template", self.template)
            form.addRow("To", self.to_edit)
            form.addRow("", self.keep_check)
            form.addRow("Notice", self.preview)
            self._load_preview()
        elif kind == "deadline":
            self.date_edit.setCalendarPopup(True)
            self.date_edit.setDisplayFormat("yyyy-MM-dd")
            d = owner.calendar().add_trading_days(info["deadline"], 1)
            self.date_edit.setDate(QDate(d.year, d.month, d.day))
            self.date_edit.dateChanged.connect(lambda _d: self.validate())
            self.reason_edit.setPlaceholderText("why the client gets more (or less) time")
            self.reason_edit.textChanged.connect(lambda _t: self.validate())
            form.addRow("New deadline", self.date_edit)
            form.addRow("Reason", self.reason_edit)
            if info.get("pending_deadline_request"):
                set_tone(self.message, f"Change request #{info['pending_deadline_request']} for this call's "
                         "deadline is already pending.", "info")
        elif kind == "remark":
            self.text_edit.setPlaceholderText("what happened (a call with the client, a promise to pay, …)")
            self.text_edit.textChanged.connect(self.validate)
            form.addRow("Remark", self.text_edit)
        elif kind == "close":
            note = QLabel("The call ends now as <b>closed</b>; its end snapshot is taken from the live engine. "
                          "If the account is still below MM it is not called again today unless it recovers first.")
            note.setWordWrap(True)
            lay.insertWidget(lay.count() - 1, note)
            self.text_edit.setPlaceholderText("why the call is closed (required: client paid by cheque, "
                                              "written off, …)")
            self.text_edit.textChanged.connect(self.validate)
            form.addRow("Remark", self.text_edit)
        else:
            self.reason_edit.setPlaceholderText("why the exception ends" if clearing
                                                else "why this call is an exception (funds in transit, …)")
            self.reason_edit.textChanged.connect(lambda _t: self.validate())
            form.addRow("Reason", self.reason_edit)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)
        self.validate()

    # ------------------------------------------------------------------ input
    def new_deadline(self) -> date:
        q = self.date_edit.date()
        return date(q.year(), q.month(), q.day())

    def problem(self) -> str:
        """What is wrong with the input now ("" when the action can run)."""
        if self.kind == "notice":
            return notices.validate_recipient(self.to_edit.text(), self.info)[1] or (
                "" if self.preview.toPlainText() else "preparing the notice…")
        if self.kind == "deadline":
            from datetime import datetime

            today = datetime.now(HK_TZ).date()
            d, msg = call_work.validate_deadline(self.new_deadline(), self.info["deadline"], today,
                                                 self.owner.calendar())
            if d is None:
                return msg
            return "" if self.reason_edit.text().strip() else "Reason: required for a change request"
        if self.kind == "close":
            return call_close.remark_problem(self.text_edit.toPlainText())
        if self.kind == "remark":
            t = self.text_edit.toPlainText().strip()
            return ("Remark: write what happened" if not t else
                    f"Remark: at most {call_work.REMARK_MAX:,} characters" if len(t) > call_work.REMARK_MAX else "")
        return "" if self.reason_edit.text().strip() else "Reason: required"

    def validate(self) -> bool:
        if self.kind == "notice":
            self._offer_keep()
        msg = self.problem()
        busy = self.task is not None
        self.ok.setEnabled(not msg and not busy)
        if msg and not self.message.text().startswith("Change request #"):
            set_tone(self.message, msg, "warn")
        elif not msg and not busy:
            set_tone(self.message, "", "warn")
        return not msg

    def _offer_keep(self) -> None:
        """Offer to keep a typed address that differs from the one on file as the client's."""
        to, problem = notices.validate_recipient(self.to_edit.text(), self.info)
        on_file = self.info.get("client_email") or ""
        offer = not problem and parseaddr(to)[1] != on_file
        if offer:
            self.keep_check.setText(f"Keep it as {self.info['client']}'s e-mail on file "
                                    f"({'none now' if not on_file else 'now ' + on_file}; a change request "
                                    "a supervisor approves)")
        self.keep_check.setVisible(offer)

    def keep_address(self) -> bool:
        return self.kind == "notice" and not self.keep_check.isHidden() and self.keep_check.isChecked()

    def _load_preview(self) -> None:
        self.preview.setPlainText("")
        tasks, store = self.owner.tasks, self.owner.store
        if tasks is None or store is None:
            return
        snap = self.owner.snapshot_now()
        tasks.run(notices.preview, store, int(self.info["id"]), self.template.currentText(), snap,
                  on_done=self._preview_loaded, on_error=lambda e: set_tone(self.message, why(e)),
                  name="notice preview")

    def _preview_loaded(self, p: dict[str, Any]) -> None:
        self.preview.setPlainText(f"Subject: {p['subject']}\n\n{p['body']}")
        self.validate()

    # ------------------------------------------------------------------ run
    def submit(self) -> None:
        if not self.validate() or self.owner.tasks is None:
            return
        store, user, call_id = self.owner.store, self.owner.user, int(self.info["id"])
        fn: Callable[..., Any]
        args: tuple[Any, ...]
        if self.kind == "notice":
            fn = partial(notices.send_notice, keep_address=self.keep_address())
            args = (store, user, call_id, self.owner.sender(), self.to_edit.text(), self.template.currentText(),
                    self.owner.snapshot_now())
        elif self.kind == "deadline":
            fn, args = call_work.request_deadline, (store, user, call_id, self.new_deadline(),
                                                    self.reason_edit.text(), self.owner.calendar())
        elif self.kind == "remark":
            fn, args = call_work.add_remark, (store, user, call_id, self.text_edit.toPlainText())
        elif self.kind == "close":
            m = self.owner.monitor
            a = -1 if m is None else m.engine.book.acct_index.get(self.info["account"], -1)
            if m is None or a < 0:
                set_tone(self.message, "Close call: the live monitor does not hold this account")
                return
            fn, args = m.close_call, (a, user, self.text_edit.toPlainText())
        elif self.info.get("exception"):
            fn, args = call_work.clear_exception, (store, user, call_id, self.reason_edit.text())
        else:
            fn, args = call_work.mark_exception, (store, user, call_id, self.reason_edit.text())
        self.ok.setEnabled(False)
        set_tone(self.message, "working…", "ok")
        self.task = self.owner.tasks.run(fn, *args, on_done=self._done, on_error=self._failed,
                                         name=f"call {self.kind}")

    def _done(self, result: Any) -> None:
        self.task = None
        acct = self.info["account"]
        if self.kind == "notice":
            text = (f"Notice #{result.id} to {acct} sent ({result.location})" if result.status == "sent" else
                    f"Notice #{result.id} to {acct} FAILED: {result.error} — it stays in the outbox to resend")
            if result.address_request is not None:
                text += f"; change request #{result.address_request} to keep the address awaits approval"
        elif self.kind == "deadline":
            text = f"Change request #{result} to move {acct}'s deadline submitted for approval"
        elif self.kind == "remark":
            text = f"Remark added to {acct}'s call"
        elif self.kind == "close":
            text = f"{acct}'s margin call #{self.info['id']} closed: {result.detail}"
        else:
            text = f"{acct}'s call {'is no longer' if self.info.get('exception') else 'marked as'} an exception"
        self.finished_ok.emit(text)
        if self.kind == "notice" and result.status != "sent":
            set_tone(self.message, text)  # keep the dialog open: the user sees why
            return
        self.close()

    def _failed(self, e: BaseException) -> None:
        self.task = None
        set_tone(self.message, why(e))
        self.ok.setEnabled(True)


class CallActions(QObject):
    """The four call actions for the selected account (alerts dock) or a given call (work dock)."""

    changed = Signal(str)  # a call was worked: the message for the status bar; views refresh

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.widget = parent
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: Any = None
        self.monitor: LiveMonitor | None = None
        self.account = -1
        self.dialog: CallActionDialog | None = None
        self.notice_sender: Any = None  # None: the default EmlSender (tests and settings may set one)
        self.actions: dict[str, QAction] = {}
        for kind, text in KINDS.items():
            act = QAction(text, parent)
            act.setToolTip(TIPS[kind])
            act.setEnabled(False)
            act.triggered.connect(lambda _c=False, k=kind: self.open(k))
            self.actions[kind] = act

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: Any) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self._update()

    def set_monitor(self, monitor: LiveMonitor) -> None:
        self.monitor = monitor
        self._update()

    def set_account(self, a: int) -> None:
        self.account = int(a)
        self._update()

    def buttons(self) -> list[QToolButton]:
        out = []
        for act in self.actions.values():
            b = QToolButton()
            b.setDefaultAction(act)
            b.setAutoRaise(True)
            out.append(b)
        return out

    def install(self, view: QAbstractItemView) -> None:
        """Put the actions first in the view's context menu (before Export view to Excel…)."""
        first = view.actions()[0] if view.actions() else None
        sep = QAction(view)
        sep.setSeparator(True)
        view.insertActions(first, [*self.actions.values(), sep])  # type: ignore[arg-type]

    def has_open_call(self) -> bool:
        m, a = self.monitor, self.account
        return m is not None and 0 <= a < m.tracker.open.shape[0] and bool(m.tracker.open[a])

    def _update(self) -> None:
        ready = self.store is not None and self.tasks is not None and self.has_open_call()
        for act in self.actions.values():
            act.setEnabled(ready)

    # ------------------------------------------------------------------ helpers for the dialog
    def calendar(self) -> TradingCalendar:
        if self.monitor is not None:
            return self.monitor.tracker.calendar
        from services.calendar import shipped_holidays

        return TradingCalendar(d for d, _ in shipped_holidays())

    def sender(self) -> Any:
        """The notice sender: one set here (tests, another channel), else .eml files in the folder
        chosen in the Margin-call work dock (remembered), else the default folder."""
        if self.notice_sender is not None:
            return self.notice_sender
        return notices.EmlSender(notice_folder() or None)

    def snapshot_now(self) -> dict[str, Any] | None:
        """The selected account's §2 snapshot from the live engine (None without one)."""
        m, a = self.monitor, self.account
        if m is None or a < 0:
            return None
        from services.margin_calls import snapshot

        with m.lock:
            if a >= m.engine.book.n_acct:
                return None
            return snapshot(m.engine, a, time.time())

    # ------------------------------------------------------------------ open
    def open(self, kind: str, call_id: int | None = None) -> None:
        """Read the call (the selected account's open call, or ``call_id``) off the GUI thread, then
        show the dialog for ``kind``."""
        if self.store is None or self.tasks is None:
            return
        account_id = None
        if call_id is None:
            m, a = self.monitor, self.account
            if m is None or a < 0 or m.engine.book.acct_ids is None:
                return
            account_id = int(m.engine.book.acct_ids[a])
        self.tasks.run(call_work.call_summary, self.store, call_id, account_id,
                       on_done=lambda info: self._show(kind, info),
                       on_error=lambda e: self.changed.emit(f"Cannot open the call: {why(e)}"),
                       name="call summary")

    def _show(self, kind: str, info: dict[str, Any] | None) -> None:
        if info is None:
            self.changed.emit("The account has no open margin call in the store (yet): try again in a moment")
            return
        if self.monitor is not None and self.monitor.engine.book.acct_index.get(info["account"]) is not None:
            self.account = self.monitor.engine.book.acct_index[info["account"]]
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = CallActionDialog(kind, info, self, self.widget.window())
        self.dialog.finished_ok.connect(self.changed.emit)
        self.dialog.show()

