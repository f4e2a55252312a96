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
        assert not d.bulk_button.isEnabled()
        d.submit()
        assert d._submit_task is None and not d.submit_button.isEnabled()
    finally:
        d.stop()


def _tab(dock: CreditDock, title: str) -> None:
    dock.tabs.setCurrentIndex([dock.tabs.tabText(i) for i in range(dock.tabs.count())].index(title))


def test_group_form_inline_checks_create_rename_and_members(qtbot: Any, store: Store, dock: CreditDock,
                                                            monitor: LiveMonitor) -> None:
    from services import credit_groups

    rita, sam = USERS["rita"], USERS["sam"]
    changes.approve(store, sam, credit_groups.submit_new_group(store, rita, "Wong group", 300_000, "set up"))
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    _tab(dock, "Credit groups")
    p = dock.groups_panel
    assert p.title.text() == "New credit group" and not p.submit_button.isEnabled()
    p.reason_edit.setText("Chan family accounts share one line")
    for name, limit, why in (("", "1000", "Give the group a name."),
                             ("wong GROUP", "1000", "A credit group named “wong GROUP” already exists."),
                             ("Chan family", "-1", "A group limit must be ≥ 0."),
                             ("Chan family", "lots", "“lots” is not a number.")):
        p.name_edit.setText(name)
        p.limit_edit.setText(limit)
        assert p.validation.text() == why and not p.submit_button.isEnabled()
        p.submit_group()  # refused inline: nothing reaches the runner
        assert p._task is None
    p.limit_edit.setText("1,000,000")
    assert p.validation.text() == "" and p.submit_button.isEnabled()
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        qtbot.mouseClick(p.submit_button, Qt.MouseButton.LeftButton)
    req = changes.get(store, sig.args[0])
    assert (req.kind, req.op, req.after, req.status) == ("credit_group", "insert",
                                                         {"name": "Chan family", "limit_amount": 1_000_000.0}, "pending")
    assert f"request #{req.id} submitted — awaiting approval" in p.message.text()
    changes.approve(store, sam, req.id)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    assert sorted(r["name"] for r in (p.model.record_at(i) or {} for i in range(p.model.rowCount()))) == [
        "Chan family", "Wong group"]

    # select it: rename to a taken name is refused inline; a new limit is one update request
    assert p.select_group("Chan family")
    assert p.title.text() == "Credit group “Chan family”" and p.limit_edit.text() == "1,000,000.00"
    p.reason_edit.setText("review")
    p.name_edit.setText("Wong group")
    assert "already exists" in p.validation.text() and not p.submit_button.isEnabled()
    p.name_edit.setText("Chan family")
    assert not p.submit_button.isEnabled()  # nothing changed yet
    p.limit_edit.setText("1,200,000")
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        p.submit_group()
    req = changes.get(store, sig.args[0])
    assert (req.op, req.before, req.after) == ("update", {"limit_amount": 1_000_000.0}, {"limit_amount": 1_200_000.0})

    # members: a cash account is refused inline, a margin borrower added, then removed
    b = monitor.engine.book
    cash = b.acct_codes[int(np.flatnonzero(b.acct_type == 0)[0])]
    k = int(np.flatnonzero((b.acct_type == 1) & (monitor.engine.loan > 0))[0])
    code = b.acct_codes[k]
    p.reason_edit.setText("same beneficial owner")
    p.account_edit.setText(cash)
    assert "cash account" in p.member_validation.text() and not p.add_button.isEnabled()
    p.account_edit.setText("NOPE")
    assert p.member_validation.text() == "Unknown account “NOPE”." and not p.add_button.isEnabled()
    p.account_edit.setText(code)
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        qtbot.mouseClick(p.add_button, Qt.MouseButton.LeftButton)
    changes.approve(store, sam, sig.args[0])
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    assert p.members.count() == 1 and p.members.item(0).text().startswith(code)
    rec = next(r for r in (p.model.record_at(i) for i in range(p.model.rowCount())) if r and r["name"] == "Chan family")
    assert rec["members"] == 1 and rec["loan"] == pytest.approx(float(monitor.engine.loan[k]))
    p.account_edit.setText(code)
    assert p.member_validation.text() == f"{code} is already in “Chan family”."
    p.account_edit.clear()
    p.members.setCurrentRow(0)
    p.reason_edit.setText("left the family line")
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        qtbot.mouseClick(p.remove_button, Qt.MouseButton.LeftButton)
    req = changes.get(store, sig.args[0])
    assert (req.kind, req.op, req.context["account"]) == ("credit_group_member", "delete", code)
    dock.grab().save("/tmp/credit_dock_groups_form.png")


def test_snapshots_tab_lists_limit_changes_filtered(qtbot: Any, store: Store, dock: CreditDock) -> None:
    from services.credit import limit_history

    rita, sam = USERS["rita"], USERS["sam"]
    with store.begin() as conn:
        from sqlalchemy import text

        (acct_id, code, amount), = conn.execute(text(
            "select f.account_id, a.code, f.amount from financing_limits f join accounts a on a.id = f.account_id "
            "where f.amount > 0 and f.amount < 900000 and a.type = 'margin' order by f.account_id desc limit 1")).all()
    rid = changes.submit(store, rita, "financing_limit", {"account_id": acct_id}, {"amount": amount + 50_000},
                         "review", amount=amount + 50_000)
    assert changes.approve(store, sam, rid) == "approved"  # below 1,000,000: one supervisor
    events = limit_history(store)
    assert len(events) >= 2  # the demo's approved change and this one
    with qtbot.waitSignal(dock.snapshots_panel.loaded, timeout=WAIT) as sig:
        _tab(dock, "Snapshots")
    assert sig.args[0] == dock.snapshots_panel.model.rowCount() == len(events)
    with qtbot.waitSignal(dock.snapshots_panel.loaded, timeout=WAIT) as sig:
        dock.snapshots_panel.search.setText(code.lower())
    assert sig.args[0] == 1
    rec = dock.snapshots_panel.model.record_at(0)
    assert rec is not None and (rec["account"], rec["before"], rec["after"], rec["change"], rec["by"],
                                rec["request_id"]) == (code, amount, amount + 50_000, 50_000.0, "rita", rid)
    p = dock.snapshots_panel
    p.search.clear()
    p.from_edit.setDateTime(p.from_edit.dateTime().addDays(60))  # a window after every event
    with qtbot.waitSignal(p.loaded, timeout=WAIT) as sig:
        p.from_check.setChecked(True)
    assert sig.args[0] == 0 and "0 limit changes" in p.summary.text()
    dock.grab().save("/tmp/credit_dock_snapshots.png")


def test_client_financing_tab_by_currency_and_over_limit(qtbot: Any, store: Store, dock: CreditDock) -> None:
    from sqlalchemy import text

    with store.begin() as conn:  # the risk officer's own sums, straight from the balances
        debits = {c: (float(d), int(n)) for c, d, n in conn.execute(text(
            "select b.currency, sum(-b.amount), count(*) from cash_balances b join accounts a on a.id = b.account_id "
            "where b.amount < 0 and a.type <> 'cash' and a.closed = :f group by b.currency"), {"f": False})}
        fx: dict[str, float] = dict(conn.execute(text("select code, fx_rate from currencies")).all())
    with qtbot.waitSignal(dock.financing_panel.loaded, timeout=WAIT):
        _tab(dock, "Client financing")
    p = dock.financing_panel
    assert p.data is not None
    shown = {r["currency"]: (r["debit"], r["accounts"], r["debit_hkd"]) for r in p.data["currencies"]}
    assert set(shown) == set(debits) and p.currency_model.rowCount() == len(debits)
    for ccy, (debit, n) in debits.items():
        assert shown[ccy][0] == pytest.approx(debit) and shown[ccy][1] == n
        assert shown[ccy][2] == pytest.approx(debit * fx[ccy])
    over = p.data["over_limit"]
    assert over and p.over_model.rowCount() == len(over)
    assert all(o["loan"] > o["limit"] and o["over"] == pytest.approx(o["loan"] - o["limit"]) for o in over)
    assert "over limit by" in p.summary.text()
    dock.grab().save("/tmp/credit_dock_financing.png")


def test_bulk_update_button_opens_the_batch_dialog(qtbot: Any, dock: CreditDock) -> None:
    qtbot.mouseClick(dock.bulk_button, Qt.MouseButton.LeftButton)
    d = dock.batch_dialog
    assert d is not None and d.isVisible() and d.windowTitle() == "Bulk financing-limit update"
    qtbot.waitUntil(lambda: d._list_task is None, timeout=WAIT)
    d.close()
    qtbot.waitUntil(lambda: dock.batch_dialog is None, timeout=WAIT)
