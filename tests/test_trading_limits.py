"""Client trading limits (issue 4): one per type (new overwrites), expiry, expiry on margin call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from services import auth, changes, trading_limits
from services.store import Store
from tests.test_margin_formulas import _acct, make_book

RITA, SAM = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")


def test_overwrite_expiry_and_margin_call_expiry(sqlite_url: str) -> None:
    st = Store(sqlite_url)
    st.migrate()
    st.save_book(make_book([_acct("M1", 0), _acct("M2", 0)], []))
    auth.ensure_permissions(st)
    soon = datetime.now(UTC) + timedelta(days=1)
    for args in (("M1", "daily_buy", 1_000_000, "desk", soon, False), ("M2", "daily_buy", 500_000, "desk", None,
                                                                          True)):
        changes.approve(st, SAM, trading_limits.propose(st, RITA, args[0], args[1], args[2], args[3],
                                                        expires_at=args[4], expire_on_call=args[5]))
    assert trading_limits.in_force(st) == {("M1", "daily_buy"): 1_000_000.0, ("M2", "daily_buy"): 500_000.0}
    # past its expiry date a limit is no longer in force (derived, nothing has to run)
    assert trading_limits.in_force(st, now=soon + timedelta(hours=1)) == {("M2", "daily_buy"): 500_000.0}
    rid = trading_limits.propose(st, RITA, "M1", "daily_buy", 750_000, "cut")
    assert changes.get(st, rid).op == "update"  # the same type overwrites
    changes.approve(st, SAM, rid)
    assert trading_limits.in_force(st)[("M1", "daily_buy")] == 750_000.0
    assert ("M1", "daily_buy") in trading_limits.in_force(st, now=soon + timedelta(days=400))  # no expiry now
    with st.begin() as conn:  # a margin call opens on M2
        conn.execute(text("insert into margin_calls (account_id, opened_at, trigger_status, trigger_amount, "
                          "deadline, state, current_status, current_amount) values (2, :t, 'call', 1, :d, 'open', "
                          "'call', 1)"), {"t": datetime.now(UTC), "d": datetime.now(UTC).date()})
    states = {(t.account, t.limit_type): t.state for t in trading_limits.limits(st)}
    assert states[("M2", "daily_buy")] == "expired (margin call)"
    assert ("M2", "daily_buy") not in trading_limits.in_force(st)
    lim = [t for t in trading_limits.limits(st) if t.account == "M1"][0]
    changes.approve(st, SAM, trading_limits.set_invalid(st, RITA, lim.id, "client request"))
    assert trading_limits.in_force(st) == {}
    with pytest.raises(changes.ChangeError, match="unknown limit type"):
        trading_limits.propose(st, RITA, "M1", "weekly", 1, "x")
    with pytest.raises(changes.ChangeError, match="future"):
        trading_limits.propose(st, RITA, "M1", "daily_buy", 1, "x", expires_at=datetime.now(UTC) - timedelta(1))
