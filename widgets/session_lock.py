"""Idle session lock: after N minutes without keyboard or mouse input the workstation locks until the
same user types their password again.

`IdleLock` watches input through one application event filter (any key, click, wheel or mouse
move restarts the idle timer). Locking shows `LockScreen` — an opaque overlay over the main window,
so client data is hidden, or a small top-level window when there is no main window — and from then
on the filter swallows input and shortcuts meant for anything outside it. Nothing is modal: no
nested event loop, so the feed, timers and workers carry on underneath.

Unlocking checks the password off the GUI thread: on the local store with `auth.login_local` (which
audits the attempt), on PostgreSQL by opening a fresh connection as the same login with that password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QWindow
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from services.auth import AuthError, User
from widgets.records import error_text, set_tone

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.store import Store

T = QEvent.Type
INPUT_EVENTS = frozenset({T.KeyPress, T.KeyRelease, T.MouseButtonPress, T.MouseButtonRelease,
                          T.MouseButtonDblClick, T.MouseMove, T.Wheel, T.TouchBegin, T.TouchUpdate,
                          T.TabletPress, T.ContextMenu})
ACTIVITY_EVENTS = frozenset({T.KeyPress, T.MouseButtonPress, T.MouseMove, T.Wheel, T.TouchBegin,
                             T.TabletPress})
BLOCKED_WHEN_LOCKED = INPUT_EVENTS | {T.Shortcut, T.ShortcutOverride}


def check_password(store: Store, user: User, password: str) -> User:
    """The same user's password, checked as a login (task function). Raises AuthError when refused."""
    if store.kind == "sqlite":
        from services.auth import login_local

        again = login_local(store, user.login, password)
        if again.login != user.login:
            raise AuthError("Only the user who locked the session can unlock it.")
        return again
    from sqlalchemy import text

    from services.store import Store as StoreCls
    from services.store import StoreError

    probe = StoreCls(store.url.render_as_string(hide_password=False), password=password)
    try:
        with probe.begin() as conn:
            me = conn.execute(text("select session_user")).scalar_one()
    except StoreError as e:
        raise AuthError(f"The database refused the password: {e}") from e
    finally:
        probe.dispose()
    if me != user.login:
        raise AuthError("Only the user who locked the session can unlock it.")
    return user


class LockScreen(QFrame):
    """The lock's face: who is logged in, a password field and Unlock (opaque over the window)."""

    def __init__(self, user: User, where: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lockScreen")
        self.setAutoFillBackground(True)
        self.setStyleSheet("QFrame#lockScreen { background: #0d1117; }"
                           "QFrame#lockCard { background: #161b22; border: 1px solid #30363d; border-radius: 6px; }")
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        card = QFrame()
        card.setObjectName("lockCard")
        card.setFixedWidth(400)
        lay = QVBoxLayout(card)
        lay.setContentsMargins(22, 18, 22, 18)
        lay.setSpacing(8)
        title = QLabel("RiskDesk is locked")
        title.setStyleSheet("font-size: 17px; font-weight: 600")
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.where = QLabel(where)
        self.where.setProperty("role", "caption")
        self.where.setWordWrap(True)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText(f"password of {user.login}")
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        self.unlock_button = QPushButton("&Unlock")
        self.unlock_button.setDefault(True)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.unlock_button)
        for w in (title, self.text, self.where, self.password, self.message):
            lay.addWidget(w)
        lay.addLayout(buttons)
        row.addWidget(card)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)


class IdleLock(QObject):
    """Locks after ``minutes`` without input; `unlock(password)` (or the lock screen) unlocks."""

    locked = Signal()
    unlocked = Signal()
    unlock_failed = Signal(str)

    def __init__(self, store: Store, user: User, tasks: TaskRunner, minutes: float = 15.0,
                 window: QWidget | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store, self.user, self.tasks = store, user, tasks
        self.window = window
        self.is_locked = False
        self._task: Task | None = None
        self._installed = False
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self.lock_now)
        self._minutes = 15.0
        where = "local store" if store.kind == "sqlite" else f"database {store.display_name}"
        self.screen = LockScreen(user, f"signed in as {user.login} ({user.role_label}) · {where}", window)
        if window is None:
            self.screen.setWindowTitle("RiskDesk — locked")
            self.screen.resize(520, 320)
        self.screen.hide()
        self.screen.unlock_button.clicked.connect(lambda: self.unlock(self.screen.password.text()))
        self.screen.password.returnPressed.connect(lambda: self.unlock(self.screen.password.text()))
        self.screen.password.textEdited.connect(lambda _t: self.screen.message.hide())
        self.set_minutes(minutes)

    # ------------------------------------------------------------------ control
    @property
    def minutes(self) -> float:
        return self._minutes

    def set_minutes(self, minutes: float) -> None:
        """Idle time before locking (fractions allowed: tests use milliseconds' worth)."""
        if minutes <= 0:
            raise ValueError("the idle time must be positive")
        self._minutes = float(minutes)
        self._timer.setInterval(max(1, int(self._minutes * 60_000)))
        if self._timer.isActive():
            self._timer.start()

    def start(self) -> None:
        """Install the application event filter and start counting idle time."""
        app = QApplication.instance()
        if app is not None and not self._installed:
            app.installEventFilter(self)
            self._installed = True
        if not self.is_locked:
            self._timer.start()

    def stop(self) -> None:
        """Remove the filter, stop the timer and take the lock screen down (logout, exit, tests)."""
        app = QApplication.instance()
        if app is not None and self._installed:
            app.removeEventFilter(self)
            self._installed = False
        self._timer.stop()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.screen.hide()

    def lock_now(self) -> None:
        if self.is_locked:
            return
        self.is_locked = True
        self._timer.stop()
        self.screen.text.setText(f"Locked after {_idle_text(self._minutes)} without input. Enter the password "
                                 f"of {self.user.display_name} ({self.user.login}) to continue.")
        self.screen.message.hide()
        self.screen.password.clear()
        if self.window is not None:
            self.screen.setGeometry(self.window.rect())
            self.screen.raise_()
        self.screen.show()
        self.screen.password.setFocus(Qt.FocusReason.OtherFocusReason)
        self.locked.emit()

    def unlock(self, password: str) -> None:
        """Check ``password`` for the same user in the task runner; `unlocked` or `unlock_failed` follows."""
        if not self.is_locked or self._task is not None:
            return
        if not password:
            self._refused(AuthError("Enter your password."))
            return
        self.screen.unlock_button.setEnabled(False)
        set_tone(self.screen.message, "Checking…", "info")
        self._task = self.tasks.run(check_password, self.store, self.user, password, on_done=self._ok,
                                    on_error=self._refused, name="unlock")

    def _ok(self, _user: User) -> None:
        self._task = None
        self.is_locked = False
        self.screen.unlock_button.setEnabled(True)
        self.screen.password.clear()
        self.screen.hide()
        if self._installed:
            self._timer.start()
        self.unlocked.emit()

    def _refused(self, e: BaseException) -> None:
        self._task = None
        self.screen.unlock_button.setEnabled(True)
        text = error_text(e).removeprefix("Not permitted: ")
        set_tone(self.screen.message, text)
        self.screen.password.clear()
        self.screen.password.setFocus()
        self.unlock_failed.emit(text)

    # ------------------------------------------------------------------ the filter
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        t = event.type()
        if self.is_locked:
            if t == T.Resize and obj is self.window and self.window is not None:
                self.screen.setGeometry(self.window.rect())
            return t in BLOCKED_WHEN_LOCKED and not self._allowed(obj, t)
        if t in ACTIVITY_EVENTS:
            self._timer.start()
        return False

    def _allowed(self, obj: QObject, t: QEvent.Type) -> bool:
        """While locked, only the lock screen takes input; platform windows pass it on to widgets."""
        if isinstance(obj, QWidget):
            return obj is self.screen or self.screen.isAncestorOf(obj)
        if isinstance(obj, QWindow):
            return True
        return t != T.Shortcut  # a QAction / QShortcut of the window underneath


def _idle_text(minutes: float) -> str:
    if minutes >= 1:
        return f"{minutes:g} minute{'s' if minutes != 1 else ''}"
    return f"{minutes * 60:.0f} seconds" if minutes * 60 >= 1 else "a moment"
