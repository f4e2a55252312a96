"""Ending a margin call other than by E ≥ MM (RISK_METHODS §2): by hand with a remark, or by completed
liquidation.

The live monitor owns the call lifecycle (`LiveMonitor.close_call` takes the monitor's lock, closes the
call in its tracker and stores the end snapshot, the event and an audit record through the call
writer). This module holds the rules both ways share: who may close a call (risk officers,
supervisors and the CRO — the ``margin_call_close`` permission, which traders do not have) and that a
close always carries a remark.
"""

from __future__ import annotations

from typing import Any

from services.auth import AuthError, permitted

CLOSE_KIND = "margin_call_close"
REASONS = ("closed", "liquidated")
REMARK_MAX = 2000


class CallCloseError(ValueError):
    """A call cannot be closed as asked; the message is for the user and names the field."""


def remark_problem(remark: str) -> str:
    """What is wrong with a close remark ("" when it will do) — the dialog checks this as you type."""
    text = (remark or "").strip()
    if not text:
        return "Remark: say why the call is closed (required)"
    if len(text) > REMARK_MAX:
        return f"Remark: at most {REMARK_MAX:,} characters"
    return ""


def may_close(store: Any, user: Any) -> bool:
    return store is not None and permitted(store, user, "request", CLOSE_KIND)


def check_close(store: Any, user: Any, remark: str, reason: str) -> str:
    """The cleaned remark, or raise: AuthError for a role that may not close calls, CallCloseError for
    a missing remark or an unknown reason."""
    if reason not in REASONS:
        raise CallCloseError(f"reason: one of {', '.join(REASONS)}, not {reason!r}")
    if not may_close(store, user):
        raise AuthError(f"{user.login} ({user.role_label}) may not close margin calls")
    msg = remark_problem(remark)
    if msg:
        raise CallCloseError(msg)
    return remark.strip()
