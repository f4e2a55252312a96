"""Every dialog the workstation raises goes through one service, so tests can answer it.

Dialogs are asynchronous: a request carries an ``on_answer`` callback and the service shows a
window-modal dialog with `open()` (never a nested `exec()` loop, which would let feed timers and
worker callbacks re-enter half-finished code). A non-interactive service (tests) shows nothing: it
keeps the request in `pending`, emits `requested`, and the test calls `request.answer(value)`.

Answers: ``error`` → None; ``retry`` → True (retry) / False (cancel); ``login`` → (user, password)
or None when cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDialog, QMessageBox, QWidget


@dataclass
class DialogRequest:
    kind: str  # "error" | "retry" | "login"
    title: str
    text: str
    details: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    on_answer: Callable[[Any], None] | None = None
    answered: bool = False
    value: Any = None

    def answer(self, value: Any = None) -> None:
        """Answer once; later answers are ignored (a dialog closed twice must not retry twice)."""
        if self.answered:
            return
        self.answered = True
        self.value = value
        if self.on_answer is not None:
            self.on_answer(value)


class DialogService(QObject):
    requested = Signal(object)

    def __init__(self, interactive: bool = True, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.interactive = interactive
        self.parent_widget: QWidget | None = None
        self.history: list[DialogRequest] = []
        self._open: list[QDialog] = []  # keep shown dialogs alive until they close

    @property
    def pending(self) -> list[DialogRequest]:
        return [r for r in self.history if not r.answered]

    # ------------------------------------------------------------------ requests
    def error(self, title: str, text: str, details: str = "",
              on_answer: Callable[[Any], None] | None = None) -> DialogRequest:
        return self.ask(DialogRequest("error", title, text, details, on_answer=on_answer))

    def retry_cancel(self, title: str, text: str, on_answer: Callable[[bool], None],
                     details: str = "") -> DialogRequest:
        return self.ask(DialogRequest("retry", title, text, details, on_answer=on_answer))

    def login(self, target: str, user: str, keyring: bool, on_answer: Callable[[Any], None],
              message: str = "") -> DialogRequest:
        return self.ask(DialogRequest("login", "Log in", message or f"Log in to {target}",
                                      data={"target": target, "user": user, "keyring": keyring,
                                            "message": message}, on_answer=on_answer))

    def ask(self, request: DialogRequest) -> DialogRequest:
        self.history.append(request)
        self.requested.emit(request)
        if self.interactive:
            self._show(request)
        return request

    # ------------------------------------------------------------------ widgets
    def _show(self, request: DialogRequest) -> None:
        dlg: QDialog
        if request.kind == "login":
            from widgets.login_dialog import LoginDialog

            d = request.data
            login = LoginDialog(d["target"], d["user"], d["keyring"], d.get("message", ""), self.parent_widget)
            login.finished.connect(lambda code: request.answer(
                login.credentials() if code == QDialog.DialogCode.Accepted else None))
            dlg = login
        else:
            box = QMessageBox(self.parent_widget)
            box.setWindowTitle(request.title)
            box.setText(request.text)
            if request.details:
                box.setDetailedText(request.details)
            if request.kind == "retry":
                box.setIcon(QMessageBox.Icon.Warning)
                box.setStandardButtons(QMessageBox.StandardButton.Retry | QMessageBox.StandardButton.Cancel)
                box.setDefaultButton(QMessageBox.StandardButton.Retry)
                box.finished.connect(lambda _c: request.answer(
                    box.standardButton(box.clickedButton()) == QMessageBox.StandardButton.Retry))
            else:
                box.setIcon(QMessageBox.Icon.Critical)
                box.setStandardButtons(QMessageBox.StandardButton.Ok)
                box.finished.connect(lambda _c: request.answer(None))
            dlg = box
        self._open.append(dlg)
        dlg.finished.connect(lambda _c: self._open.remove(dlg) if dlg in self._open else None)
        dlg.open()


_service: DialogService | None = None


def dialogs() -> DialogService:
    """The application's dialog service (an interactive one unless a test installed its own)."""
    global _service
    if _service is None:
        _service = DialogService(interactive=True)
    return _service


def set_dialogs(service: DialogService | None) -> None:
    global _service
    _service = service
