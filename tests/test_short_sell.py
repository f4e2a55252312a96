"""Short-sell status (issue 4): manual prohibit, inventory auto-prohibit and recovery with hysteresis."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from services import auth, changes, short_sell
from services.store import Store
from tests.test_margin_formulas import _acct, make_book

RITA, SAM = auth.User("rita", "R", "risk_officer"), auth.User("sam", "S", "supervisor")


@pytest.fixture
def store(sqlite_url: str) -> Store:
    st = Store(sqlite_url)
    st.migrate()
    st.save_book(make_book([_acct("M1", 0)], []))
    auth.ensure_permissions(st)
    return st


def _rule(store: Store, code: str, status: str, closure: float | None, recovery: float | None) -> None:
    rid = short_sell.propose_rule(store, RITA, code, status, closure, recovery, "lending desk rule")
    assert short_sell.statuses(store)[code].closure != closure or closure is None  # not before approval
    assert changes.approve(store, SAM, rid) == "approved"


def test_inventory_auto_prohibits_and_recovers_with_hysteresis(store: Store) -> None:
    _rule(store, "A.HK", "sellable", 10_000, 50_000)
    assert short_sell.update_inventory(store, {"A.HK": 60_000}) == []
    assert short_sell.statuses(store)["A.HK"].effective == "sellable"
    assert short_sell.update_inventory(store, {"A.HK": 9_999}) == [("A.HK", "auto_prohibit", 9_999)]
    assert short_sell.statuses(store)["A.HK"].effective == "auto-prohibited"
    assert short_sell.update_inventory(store, {"A.HK": 30_000}) == []  # between the thresholds: stays
    assert short_sell.statuses(store)["A.HK"].effective == "auto-prohibited"
    assert short_sell.update_inventory(store, {"A.HK": 50_000}) == [("A.HK", "auto_recover", 50_000)]
    assert short_sell.update_inventory(store, {"A.HK": 10_000}) == []  # at closure is not below it
    assert [h["event"] for h in short_sell.history(store, "A.HK")] == ["auto_prohibit", "auto_recover"]


def test_manual_prohibition_ignores_inventory(store: Store) -> None:
    _rule(store, "A.HK", "prohibited", 10_000, 20_000)
    assert short_sell.update_inventory(store, {"A.HK": 1}) == []
    assert short_sell.update_inventory(store, {"A.HK": 1_000_000}) == []
    assert short_sell.statuses(store)["A.HK"].effective == "prohibited"


def test_thresholds_are_validated(store: Store) -> None:
    with pytest.raises(changes.ChangeError, match="recovery threshold .* at least the closure"):
        short_sell.propose_rule(store, RITA, "A.HK", "sellable", 50_000, 10_000, "x")
    with pytest.raises(changes.ChangeError, match="≥ 0"):
        short_sell.propose_rule(store, RITA, "A.HK", "sellable", -1, 10, "x")
    with pytest.raises(changes.ChangeError, match="unknown security"):
        short_sell.update_inventory(store, {"NOPE": 1})
    from sqlalchemy import text

    with pytest.raises(IntegrityError), store.engine.begin() as conn:  # the database refuses it too
        conn.execute(text("insert into short_sell_rules (security_id, status, closure_threshold, "
                          "recovery_threshold) values (1, 'sellable', 5, 1)"))
