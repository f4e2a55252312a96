"""Database passwords: the OS keyring, or memory only when no usable keyring backend exists.

Passwords never go to files or settings. `password_for` returns what is known (keyring or this
session's memory); the GUI asks the user and calls `remember` after a successful login.
"""

from __future__ import annotations

import contextlib
import getpass
import os

from sqlalchemy.engine import make_url

SERVICE = "RiskDesk"
_memory: dict[str, str] = {}


def _key(url: str) -> str | None:
    from services.store import normalise_url

    u = make_url(normalise_url(url))
    if u.get_backend_name() == "sqlite":
        return None
    return f"{u.username or getpass.getuser()}@{u.host or 'localhost'}:{u.port or 5432}/{u.database}"


def keyring_usable() -> bool:
    try:
        import keyring
        from keyring.backends import fail

        kr = keyring.get_keyring()
        return not isinstance(kr, fail.Keyring) and getattr(kr, "priority", 1) > 0
    except Exception:
        return False


def password_for(url: str, interactive: bool = False) -> str | None:
    """A known password for the URL's login, or None (SQLite, trust auth, or not yet asked)."""
    key = _key(url)
    if key is None:
        return None
    if os.environ.get("RISKDESK_DB_PASSWORD"):
        return os.environ["RISKDESK_DB_PASSWORD"]
    if key in _memory:
        return _memory[key]
    if keyring_usable():
        import keyring

        try:
            pw = keyring.get_password(SERVICE, key)
        except Exception:
            pw = None
        if pw:
            return pw
    if interactive:
        from services.store import normalise_url

        if make_url(normalise_url(url)).password:
            return None
        pw = getpass.getpass(f"Password for {key}: ")
        return pw or None
    return None


def remember(url: str, password: str) -> str:
    """Keep a password that worked: keyring when usable ('keyring'), else this session ('memory')."""
    key = _key(url)
    if key is None:
        return "none"
    _memory[key] = password
    if keyring_usable():
        import keyring

        try:
            keyring.set_password(SERVICE, key, password)
            return "keyring"
        except Exception:
            pass
    return "memory"


def forget(url: str) -> None:
    key = _key(url)
    if key is None:
        return
    _memory.pop(key, None)
    if keyring_usable():
        import keyring

        with contextlib.suppress(Exception):
            keyring.delete_password(SERVICE, key)
