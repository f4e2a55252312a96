"""The database login dialog: user and password for a shared PostgreSQL store.

It says up front where the password will be kept — the OS keyring, or only this session's memory
when no usable keyring backend exists — because a risk officer must know whether they will be asked
again tomorrow and that nothing is written to a file.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)


class LoginDialog(QDialog):
    def __init__(self, target: str, user: str, keyring: bool, message: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Log in to the RiskDesk store")
        self.setMinimumWidth(420)
        lay = QVBoxLayout(self)
        head = QLabel(f"<b>{target}</b>")
        lay.addWidget(head)
        if message:
            warn = QLabel(message)
            warn.setWordWrap(True)
            warn.setStyleSheet("color: #f0883e")
            lay.addWidget(warn)
        form = QFormLayout()
        self.user = QLineEdit(user)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow("User", self.user)
        form.addRow("Password", self.password)
        lay.addLayout(form)
        where = ("The password will be kept in the operating system keyring, so you are asked only once."
                 if keyring else
                 "No keyring is available on this machine: the password is kept in memory for this "
                 "session only and asked again next time.")
        note = QLabel(where)
        note.setWordWrap(True)
        note.setProperty("role", "caption")
        lay.addWidget(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        (self.password if user else self.user).setFocus()

    def credentials(self) -> tuple[str, str]:
        return self.user.text().strip(), self.password.text()
