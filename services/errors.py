"""The errors whose messages are meant for the user, in a module that imports nothing heavy: the GUI
maps them to dialogs at start-up without loading SQLAlchemy before the first paint. Each is
re-exported by the module that raises it (`services.store`, `services.auth`, `services.changes`)."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message is meant for the user."""


class AuthError(RuntimeError):
    """Login refused or an action not permitted; the message is for the user."""


class ChangeError(RuntimeError):
    """A request cannot be made or decided; the message says why, for the user."""


class StaleTargetError(ChangeError):
    """The target changed since the request was made: reload and make a new request."""
