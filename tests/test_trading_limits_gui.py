"""The trading limits dock on a real SQLite demo store: bad input refused inline with nothing
submitted, a proposal going through four eyes into force, and a second proposal of the same type
for the same account becoming an update request.

No sleeps: every wait is on a signal; the task runner is shut down after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.tasks import TaskRunner
from services import changes
from services.auth import User
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, must, runner, store  # noqa: F401 (fixtures)
from widgets.trading_limits_dock import TradingLimitsDock, validate_limit

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
WAIT = 5000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[TradingLimitsDock]:
    d = TradingLimitsDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1400, 700)
    d.show()
    yield d
    d.stop()


def _requests(store: Store) -> int:
    with store.begin() as conn:
        return int(conn.execute(text("select count(*) from change_requests "
                                     "where kind = 'client_trading_limit'")).scalar() or 0)


def _free_account(store: Store) -> str:
    """An account with no trading limit at all yet."""
    with store.begin() as conn:
        return str(conn.execute(text("select code from accounts where id not in "
                                     "(select account_id from client_trading_limits) order by id")).scalars().first())


def _fill(d: TradingLimitsDock, account: str, limit_type: str, amount: str, reason: str = "desk review") -> None:
    d.account_edit.setText(account)
    d.type_combo.setCurrentText(limit_type)
    d.amount_edit.setText(amount)
    d.reason_edit.setText(reason)


def _submit(qtbot: Any, d: TradingLimitsDock) -> int:
    with qtbot.waitSignal(d.refreshed, timeout=WAIT), qtbot.waitSignal(d.submitted, timeout=WAIT) as sig:
        d.submit()
    return int(sig.args[0])


def _refresh(qtbot: Any, d: TradingLimitsDock) -> None:
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.refresh()


def test_validate_limit() -> None:
    assert validate_limit("c1", "daily_buy", "1,000", {"C1"})[0] == {
        "account": "c1", "limit_type": "daily_buy", "amount": 1000.0, "expires_at": None}
    assert "Unknown account" in validate_limit("X", "daily_buy", "1", {"C1"})[1]
    assert "≥ 0" in validate_limit("C1", "daily_buy", "-5", {"C1"})[1]
    assert "not a number" in validate_limit("C1", "daily_buy", "abc", {"C1"})[1]
    assert "Unknown limit type" in validate_limit("C1", "nope", "1", {"C1"})[1]


def test_bad_input_refused_inline(dock: TradingLimitsDock, store: Store) -> None:
    before = _requests(store)
    acct = _free_account(store)
    for args, why in (((acct, "daily_buy", "-1"), "≥ 0"), ((acct, "daily_buy", "lots"), "not a number"),
                      (("NOPE999", "daily_buy", "1000"), "Unknown account")):
        _fill(dock, *args)
        assert not dock.submit_button.isEnabled()
        assert why in dock.validation.text() and dock.validation.isVisibleTo(dock)
        dock.submit()
        assert why in dock.validation.text()
    assert dock._submit_task is None and _requests(store) == before


def test_proposal_through_four_eyes_then_update(qtbot: Any, dock: TradingLimitsDock, store: Store,
                                                tmp_path: Path) -> None:
    acct = _free_account(store)
    dock.on_call_check.setChecked(True)
    _fill(dock, acct.lower(), "daily_buy", "2500000")
    assert dock.validation.text() == "" and dock.submit_button.isEnabled()
    rid = _submit(qtbot, dock)
    req = changes.get(store, rid)
    assert (req.status, req.op, req.context["account"]) == ("pending", "insert", acct)
    pending = [r for r in dock.visible_records() if r["request_id"] == rid]
    assert len(pending) == 1 and pending[0]["state"] == "pending" and f"#{rid}" in pending[0]["request"]

    changes.approve(store, SAM, rid)
    _refresh(qtbot, dock)
    rec = dock.record_for(acct, "daily_buy")
    assert rec is not None and rec["state"] == "in force" and rec["amount"] == 2500000
    assert rec["expire_on_call"] == "yes" and not rec["request_id"]
    dock.search.setText(acct)
    assert [r["id"] for r in dock.visible_records()] == [rec["id"]]
    dock.grab().save(str(tmp_path / "trading_limits.png"))

    _fill(dock, acct, "daily_buy", "3000000", "raise")
    assert "replaces" in dock.submit_button.text()
    rid2 = _submit(qtbot, dock)
    assert changes.get(store, rid2).op == "update"
    rec = dock.record_for(acct, "daily_buy")
    assert rec is not None and rec["request"] == f"request #{rid2} pending"
    assert not (dock.select_record(rec["id"]) and dock.invalid_button.isEnabled())  # a request waits on it


def test_set_invalid(qtbot: Any, dock: TradingLimitsDock, store: Store) -> None:
    acct = _free_account(store)
    _fill(dock, acct, "order_notional", "100000")
    rid = _submit(qtbot, dock)
    changes.approve(store, SAM, rid)
    _refresh(qtbot, dock)
    rec = dock.record_for(acct, "order_notional")
    assert rec is not None and dock.select_record(rec["id"]) and dock.invalid_button.isEnabled()
    dock.reason_edit.setText("client closed")
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT), qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        dock.invalidate_selected()
    changes.approve(store, SAM, int(sig.args[0]))
    _refresh(qtbot, dock)
    assert must(dock.record_for(acct, "order_notional"))["state"] == "invalid"
