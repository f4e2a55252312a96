"""The credit dock on a real SQLite demo store and a (not started) live monitor: credited rows, the
over-limit filter against the engine's own arrays, usage colours, credit groups, and the
adjust-limit form refusing bad input inline and turning a good one into a pending change request.

No sleeps: every wait is on a signal or a condition; the task runner is shut down after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.tasks import TaskRunner
from services import changes
from services.auth import User
from services.demo_store import DEMO_USERS
from services.live import LiveMonitor
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.credit_dock import USAGE_OVER, CreditDock, usage_colour, validate_limit

USERS = {login: User(login, name, role) for login, role, name in DEMO_USERS}
WAIT = 5000


@pytest.fixture
def monitor(store: Store) -> LiveMonitor:
    return LiveMonitor(store, store.load_book(), persist_calls=False)  # not started: no threads


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner, monitor: LiveMonitor) -> Iterator[CreditDock]:
    d = CreditDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, USERS["rita"], runner, monitor)
    d.resize(1300, 700)
    d.show()
    yield d
    d.stop()


def _visible_codes(d: CreditDock) -> set[str]:
    return {str(d._codes[k]) for k in d.model.keys.tolist()}


def test_validate_limit() -> None:
    assert validate_limit("1,500,000", 1_000_000.0) == (1_500_000.0, "")
    assert validate_limit("abc")[0] is None
    assert validate_limit("-1")[1] == "A financing limit must be ≥ 0."
    assert validate_limit("1000000", 1_000_000.0)[1].startswith("That is the current limit")
    assert validate_limit("inf")[0] is None
    assert usage_colour(0.5) != usage_colour(0.9) != usage_colour(1.2) == USAGE_OVER


def test_rows_filter_and_colour(qtbot: Any, dock: CreditDock, monitor: LiveMonitor) -> None:
    with monitor.lock:
        b = monitor.engine.book
        loan, limit, kind = monitor.engine.loan.copy(), b.financing_limit.copy(), b.acct_type.copy()
        codes = list(b.acct_codes)
    credited = (kind > 0) & ((limit > 0) | (loan > 0))
    assert dock.model.rowCount() == int(credited.sum()) > 0
    assert _visible_codes(dock) == {codes[i] for i in np.flatnonzero(credited)}

    dock.over_only.setChecked(True)
    # credited = margin/intraday; a cash account's debit balance is not a financing-limit breach here
    expected = {codes[i] for i in np.flatnonzero((loan > limit) & (kind > 0))}
    assert expected and _visible_codes(dock) == expected

    usage_col = [c.header for c in dock.model.columns].index("Usage")
    idx = dock.model.index(0, usage_col)
    assert dock.model.data(idx, Qt.ItemDataRole.BackgroundRole) == USAGE_OVER

    dock.search.setText(codes[int(np.flatnonzero((loan > limit) & (kind > 0))[0])].lower())
    assert dock.model.rowCount() >= 1
    dock.search.clear()
    dock.over_only.setChecked(False)
    assert dock.model.rowCount() == int(credited.sum())

    # a live change shows on the next tick without a reload
    k = int(np.flatnonzero(credited & (loan <= limit) & (limit > 0))[0])
    with monitor.lock:
        monitor.engine.loan[k] = limit[k] * 2
    dock.tick()
    dock.over_only.setChecked(True)
    assert codes[k] in _visible_codes(dock)

    assert "Loans vs financing cap" in dock.total_financing_label.text()
    assert "5 × capital" in dock.five_x_label.text()
    dock.grab().save("/tmp/credit_dock.png")


def test_credit_group_usage_red_when_over(qtbot: Any, store: Store, dock: CreditDock, monitor: LiveMonitor) -> None:
    rita, sam = USERS["rita"], USERS["sam"]
    b = monitor.engine.book
    assert b.acct_ids is not None
    borrowers = np.flatnonzero(monitor.engine.loan > 0)[:2]
    for kind, key, after in (
            ("credit_group", {"id": 1}, {"name": "Chan family", "limit_amount": 1.0}),
            *[("credit_group_member", {"group_id": 1, "account_id": int(b.acct_ids[i])}, {}) for i in borrowers]):
        rid = changes.submit(store, rita, kind, key, after, "family accounts share one line", op="insert")
        assert changes.approve(store, sam, rid) == "approved"
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    assert dock.group_model.rowCount() == 1
    rec = dock.group_model.record_at(0)
    assert rec is not None and rec["name"] == "Chan family" and rec["members"] == 2
    idx = dock.group_model.index(0, dock.group_model.column_of("Usage"))
    assert dock.group_model.data(idx, Qt.ItemDataRole.BackgroundRole) == USAGE_OVER
    assert dock.select_account(b.acct_codes[int(borrowers[0])])
    dock.limit_edit.setText("-1")
    dock.grab().save("/tmp/credit_dock_groups.png")


def test_adjust_limit_refused_inline_then_submitted(qtbot: Any, store: Store, dock: CreditDock,
                                                    monitor: LiveMonitor) -> None:
    b = monitor.engine.book
    assert b.acct_ids is not None
    k = int(np.flatnonzero((b.acct_type > 0) & (b.financing_limit > 0))[0])
    code, current = b.acct_codes[k], float(b.financing_limit[k])
    selected: list[int] = []
    dock.account_selected.connect(selected.append)
    assert dock.select_account(code)
    assert selected[-1] == k and dock.form_key == k

    dock.reason_edit.setText("client pledged more collateral")
    for bad, why in (("-5", "≥ 0"), ("lots", "not a number"), (f"{current:.0f}", "current limit")):
        dock.limit_edit.setText(bad)
        assert not dock.submit_button.isEnabled()
        assert why in dock.validation.text() and dock.validation.isVisibleTo(dock)
        dock.submit()  # refused inline: nothing reaches the runner
        assert dock._submit_task is None

    new = current + 250_000
    dock.limit_edit.setText(f"{new:,.0f}")
    assert dock.validation.text() == "" and dock.submit_button.isEnabled()
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        qtbot.mouseClick(dock.submit_button, Qt.MouseButton.LeftButton)
    rid = sig.args[0]
    assert f"request #{rid} submitted — awaiting approval" in dock.message.text()
    req = changes.get(store, rid)
    assert (req.kind, req.status, req.maker) == ("financing_limit", "pending", "rita")
    assert req.target_key == {"account_id": int(b.acct_ids[k])}
    assert req.after == {"amount": new} and req.before == {"amount": current}
    assert req.context["account"] == code and req.context["current_limit"] == current
    assert set(req.context) == {"account", "client_name", "current_limit", "loan", "equity"}


def test_view_only_user_refused_inline(qtbot: Any, store: Store, runner: TaskRunner, monitor: LiveMonitor) -> None:
    d = CreditDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, USERS["tom"], runner, monitor)  # a trader may not request limit changes
    try:
        assert d.snapshot is not None and not d.snapshot.may_request
        b = monitor.engine.book
        k = int(np.flatnonzero((b.acct_type > 0) & (b.financing_limit > 0))[0])
        assert d.select_account(b.acct_codes[k])
        assert "may view limits" in d.validation.text() and not d.limit_edit.isEnabled()
        d.submit()
        assert d._submit_task is None and not d.submit_button.isEnabled()
    finally:
        d.stop()
