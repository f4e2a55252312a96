"""The application login for the local (SQLite) store: user and password, checked against the store.

On the local store RiskDesk itself authenticates (argon2 hashes in `users`), so the dialog says
"local store" and where the file is — a user must know they are not on the shared database. A
refusal is shown inline and the password cleared; every attempt, good or bad, is audited by
`services.auth.login_local`, which runs in the task runner (argon2 is deliberately slow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services.auth import User
from widgets.records import error_text, set_tone

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.store import Store


class AppLoginDialog(QDialog):
    """User + password for the local store; `user()` is the logged-in `User` after acceptance."""

    logged_in = Signal(object)  # the User
    login_failed = Signal(str)  # the message shown inline

    def __init__(self, store: Store, tasks: TaskRunner, login: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store, self.tasks = store, tasks
        self._user: User | None = None
        self._task: Task | None = None
        self.setWindowTitle("RiskDesk — log in (local store)")
        self.setMinimumWidth(420)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 14, 16, 12)
        lay.setSpacing(8)
        head = QLabel("Log in to RiskDesk")
        head.setStyleSheet("font-size: 16px; font-weight: 600")
        lay.addWidget(head)
        self.where = QLabel(f"Local store · {store.url.database}")
        self.where.setProperty("role", "caption")
        self.where.setWordWrap(True)
        self.where.setToolTip("This desk's own SQLite store: RiskDesk checks the password itself.")
        lay.addWidget(self.where)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.login_edit = QLineEdit(login)
        self.login_edit.setPlaceholderText("user name")
        self.password_edit = QLineEdit()
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.setPlaceholderText("password")
        form.addRow("&User", self.login_edit)
        form.addRow("&Password", self.password_edit)
        lay.addLayout(form)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        lay.addWidget(self.message)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = QPushButton("Log in")
        self.ok_button.setDefault(True)
        self.buttons.addButton(self.ok_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.try_login)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        for e in (self.login_edit, self.password_edit):
            e.textEdited.connect(lambda _t: self.message.hide())
        (self.password_edit if login else self.login_edit).setFocus()

    def user(self) -> User | None:
        """The authenticated user once the dialog was accepted; None before or when cancelled."""
        return self._user

    def try_login(self) -> None:
        """Check the typed credentials in the task runner (Enter or "Log in")."""
        if self._task is not None:
            return
        login, password = self.login_edit.text().strip(), self.password_edit.text()
        if not login or not password:
            set_tone(self.message, "Enter your user name and password.")
            (self.login_edit if not login else self.password_edit).setFocus()
            return
        from services.auth import login_local

        self._busy(True)
        set_tone(self.message, "Checking…", "info")
        self._task = self.tasks.run(login_local, self.store, login, password, on_done=self._ok,
                                    on_error=self._refused, name="login")

    def _busy(self, on: bool) -> None:
        self.ok_button.setEnabled(not on)
        self.login_edit.setEnabled(not on)
        self.password_edit.setEnabled(not on)

    def _ok(self, user: User) -> None:
        self._task = None
        self._busy(False)
        self._user = user
        self.message.hide()
        self.logged_in.emit(user)
        self.accept()

    def _refused(self, e: BaseException) -> None:
        self._task = None
        self._busy(False)
        set_tone(self.message, error_text(e).removeprefix("Not permitted: "))
        self.password_edit.clear()
        self.password_edit.setFocus()
        self.login_failed.emit(self.message.text())

    def done(self, result: int) -> None:
        if self._task is not None and result != QDialog.DialogCode.Accepted:
            self._task.cancel()  # a late answer must not log in a dialog the user cancelled
            self._task = None
        super().done(result)
