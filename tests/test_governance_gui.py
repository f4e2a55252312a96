"""Governance widgets on a real SQLite demo store: approvals dock and four-eyes dialog, parameters
editor, audit dock, application login and idle lock (pytest-qt, offscreen).

No sleeps: every wait is on a signal or a condition. The demo store is seeded once per module and
copied per test, so each test starts from the same history (request 3 waits for the CRO; 4–6 are
pending; 1 approved, 2 rejected, 7 cancelled). Every thread a test starts is stopped and joined.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from sqlalchemy import text

from app.dialogs import DialogService, set_dialogs
from app.tasks import TaskRunner
from services import audit, changes
from services.auth import User
from services.demo_store import DEMO_USERS, seed_demo_store
from services.store import Store
from tests.gui_fixtures import _qapp_styled, runner, store  # noqa: F401 (fixtures)
from widgets.approvals_dock import ApprovalsDock
from widgets.audit_dock import AuditDock
from widgets.change_dialog import ChangeRequestDialog
from widgets.login_app_dialog import AppLoginDialog
from widgets.parameters_dock import ParametersDock, validate_parameter
from widgets.session_lock import IdleLock

USERS = {login: User(login, name, role) for login, role, name in DEMO_USERS}
WAIT = 5000  # ms: generous ceilings; the waits end as soon as the condition holds


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    for t in threading.enumerate():
        if t.ident not in before and not isinstance(t, threading._DummyThread):
            t.join(5)
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()
            and not isinstance(t, threading._DummyThread)]
    assert left == []


@pytest.fixture(autouse=True)
def _answerable_dialogs() -> Iterator[DialogService]:
    service = DialogService(interactive=False)
    set_dialogs(service)
    yield service
    set_dialogs(None)


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    st = Store(f"sqlite:///{path}")
    st.migrate()
    seed_demo_store(st, clients=100, pretrade=False)  # the request history below, without order releases
    st.dispose()  # the last connection checkpoints the WAL into the file
    return path


def _approvals(qtbot: Any, store: Store, user: str, runner: TaskRunner) -> ApprovalsDock:
    dock = ApprovalsDock()
    qtbot.addWidget(dock)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.set_context(store, USERS[user], runner)
    dock.show()
    return dock


def _open(qtbot: Any, dock: ApprovalsDock, req_id: int) -> ChangeRequestDialog:
    with qtbot.waitSignal(dock.request_opened, timeout=WAIT) as opened:
        assert dock.select_request(req_id)
        qtbot.keyClick(dock.view, Qt.Key.Key_Return)  # Enter opens the four-eyes dialog
    dlg = opened.args[0]
    assert isinstance(dlg, ChangeRequestDialog)
    if dlg.view is None:
        qtbot.waitSignal(dlg.loaded, timeout=WAIT).wait()
    return dlg


def _row(dock: ParametersDock, name: str) -> dict[str, Any]:
    row = dock.row(name)
    assert row is not None
    return row


def _rec(dock: AuditDock, key: int) -> dict[str, Any]:
    rec = dock.model.record(key)
    assert rec is not None
    return rec


def _limit(store: Store, account_id: int) -> float:
    with store.begin() as conn:
        return float(conn.execute(text("select amount from financing_limits where account_id = :a"),
                                  {"a": account_id}).scalar_one())


# ---------------------------------------------------------------------- approvals dock + dialog
def test_approvals_dock_filters_and_badge(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    # requests 1–7 are the governance demo's; later demo seeds (e.g. a pending borrowing rule) add more,
    # which the badge counts too but the filters below leave out
    def gov(ids: list[int]) -> list[int]:
        return [i for i in ids if i <= 7]

    dock = ApprovalsDock()
    qtbot.addWidget(dock)
    with qtbot.waitSignal(dock.pending_count_changed, timeout=WAIT) as badge:
        dock.set_context(store, USERS["sam"], runner)
    dock.set_filter("to_approve")
    later = [i for i in dock.visible_ids() if i > 7]
    assert badge.args == [3 + len(later)]
    assert gov(dock.visible_ids()) == [6, 5, 4]  # 3 waits for the CRO, not a supervisor
    dock.set_filter("pending")
    assert gov(dock.visible_ids()) == [6, 5, 4, 3]
    dock.set_filter("history")
    assert gov(dock.visible_ids()) == [7, 2, 1]
    dock.set_filter("mine")
    assert dock.visible_ids() == []
    cora = _approvals(qtbot, store, "cora", runner)
    cora.set_filter("to_approve")
    assert gov(cora.visible_ids()) == [6, 5, 4, 3]
    rita = _approvals(qtbot, store, "rita", runner)
    rita.set_filter("mine")
    assert gov(rita.visible_ids()) == [6, 5, 4, 3]
    rita.set_filter("to_approve")
    assert gov(rita.visible_ids()) == []


def test_sam_approves_request_4_then_cro_applies_it(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    req = changes.get(store, 4)
    account = int(req.target_key["account_id"])
    assert req.flow_steps == ["supervisor", "cro"]  # a large increase: supervisor, then the CRO
    sam = _approvals(qtbot, store, "sam", runner)
    dlg = _open(qtbot, sam, 4)
    assert dlg.can_decide and dlg.approve_button.isVisible() and dlg.reject_button.isVisible()
    assert dlg.diff.changed == ["amount"]
    qtbot.keyClicks(dlg.comment, "collateral checked")
    with qtbot.waitSignal(dlg.decided, timeout=WAIT) as decided:
        qtbot.mouseClick(dlg.approve_button, Qt.MouseButton.LeftButton)
    assert decided.args == [4, "pending"]
    assert changes.get(store, 4).step == 1 and _limit(store, account) == req.before["amount"]
    qtbot.waitUntil(lambda: 4 not in sam.visible_ids(), timeout=WAIT)

    cora = _approvals(qtbot, store, "cora", runner)
    dlg = _open(qtbot, cora, 4)
    assert "approved by Sam Wong" in dlg.flow.text()
    with qtbot.waitSignal(dlg.decided, timeout=WAIT) as decided:
        qtbot.mouseClick(dlg.approve_button, Qt.MouseButton.LeftButton)
    assert decided.args == [4, "approved"]
    assert changes.get(store, 4).status == "approved"
    assert _limit(store, account) == req.after["amount"]
    assert [a["checker"] for a in changes.approvals_of(store, 4)] == ["sam", "cora"]


def test_a_limit_change_shows_the_accounts_live_figures(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    from services.live import LiveMonitor
    from widgets.formatting import money
    from widgets.request_view import monitor_account_figures

    req = changes.get(store, 4)  # a financing-limit increase
    monitor = LiveMonitor(store, store.load_book())
    e = monitor.engine
    assert e.book.acct_ids is not None
    a = int(np.searchsorted(e.book.acct_ids, int(req.target_key["account_id"])))
    dock = ApprovalsDock()
    qtbot.addWidget(dock)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.set_context(store, USERS["sam"], runner, account_figures=monitor_account_figures(monitor))
    dock.show()
    dlg = _open(qtbot, dock, 4)
    shown = dlg.shown_context()
    assert shown["Account"] == e.book.acct_codes[a]
    assert shown["Status (live)"] in ("safe", "warning", "call", "force")
    assert shown["Equity"] == money(float(e.equity[a])) and shown["IM"] == money(float(e.im[a]))
    # while the monitor is busy (its lock held elsewhere) the dialog opens without them, never waits
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with monitor.lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        with qtbot.waitSignal(dlg.loaded, timeout=WAIT):
            dlg.reload()
        shown = dlg.shown_context()
        assert "Status (live)" not in shown and shown["Account"] == e.book.acct_codes[a]
    finally:
        release.set()
        t.join(5)
    dlg.close()


def test_reject_needs_a_comment_inline(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    dock = _approvals(qtbot, store, "sam", runner)
    dlg = _open(qtbot, dock, 5)
    qtbot.mouseClick(dlg.reject_button, Qt.MouseButton.LeftButton)
    assert dlg.message.isVisible() and "needs a comment" in dlg.message.text()
    assert runner.active == 0 and dlg.busy is None  # nothing was sent
    assert changes.get(store, 5).status == "pending"
    assert dlg.isVisible()
    qtbot.keyClicks(dlg.comment, "client already below the new limit")
    assert not dlg.message.isVisible()  # typing clears the complaint
    with qtbot.waitSignal(dlg.decided, timeout=WAIT) as decided:
        qtbot.mouseClick(dlg.reject_button, Qt.MouseButton.LeftButton)
    assert decided.args == [5, "rejected"]
    r = changes.get(store, 5)
    assert (r.status, r.checker, r.comment) == ("rejected", "sam", "client already below the new limit")


def test_keyboard_mnemonics_and_escape(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    dock = _approvals(qtbot, store, "sam", runner)
    dlg = _open(qtbot, dock, 6)
    assert dlg.approve_button.text() == "&Approve" and dlg.reject_button.text() == "&Reject"
    assert not dlg.approve_button.autoDefault()  # Enter in the dialog never approves
    qtbot.waitUntil(dlg.isActiveWindow, timeout=WAIT)
    # a mnemonic "animates" its click (about 100 ms later), hence the waits
    qtbot.keyClick(dlg, Qt.Key.Key_R, Qt.KeyboardModifier.AltModifier)  # empty comment: refused inline
    qtbot.waitUntil(lambda: "needs a comment" in dlg.message.text(), timeout=WAIT)
    assert changes.get(store, 6).status == "pending" and runner.active == 0
    qtbot.keyClicks(dlg.comment, "T+2 agreed")
    with qtbot.waitSignal(dlg.decided, timeout=WAIT) as decided:
        qtbot.keyClick(dlg, Qt.Key.Key_A, Qt.KeyboardModifier.AltModifier)
    assert decided.args == [6, "approved"]
    assert store.parameters()["call_deadline_days"] == 2.0
    other = _open(qtbot, dock, 5)
    qtbot.keyClick(other, Qt.Key.Key_Escape)
    assert not other.isVisible()


def test_maker_sees_own_request_read_only_and_cancels(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    dock = _approvals(qtbot, store, "rita", runner)
    dock.set_filter("mine")
    dlg = _open(qtbot, dock, 6)
    assert not dlg.approve_button.isVisible() and not dlg.reject_button.isVisible()
    assert not dlg.comment.isVisible()
    assert dlg.cancel_button.isVisible()
    assert "four eyes" in dlg.note.text()
    with qtbot.waitSignal(dlg.decided, timeout=WAIT) as decided:
        qtbot.mouseClick(dlg.cancel_button, Qt.MouseButton.LeftButton)
    assert decided.args == [6, "cancelled"]
    assert changes.get(store, 6).status == "cancelled"
    qtbot.waitUntil(lambda: 6 not in dock.visible_ids(), timeout=WAIT)


def test_users_who_cannot_decide_see_it_read_only(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    tom = _approvals(qtbot, store, "tom", runner)  # a trader may view, not approve
    tom.set_filter("pending")
    dlg = _open(qtbot, tom, 4)
    assert not dlg.approve_button.isVisible() and not dlg.cancel_button.isVisible()
    assert "may view" in dlg.note.text()
    sam = _approvals(qtbot, store, "sam", runner)  # request 3 waits for the CRO step
    sam.set_filter("pending")
    dlg = _open(qtbot, sam, 3)
    assert not dlg.approve_button.isVisible() and "Waiting for the CRO" in dlg.note.text()


def test_stale_approval_says_who_changed_it(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    dock = _approvals(qtbot, store, "sam", runner)
    dlg = _open(qtbot, dock, 5)
    req = changes.get(store, 5)
    # meanwhile another request on the same account is made and approved
    other = changes.submit(store, USERS["rita"], "financing_limit", req.target_key, {"amount": 250_000.0},
                           "interim top-up", amount=250_000.0)
    changes.approve(store, USERS["cora"], other, "ok")
    with qtbot.waitSignal(dlg.failed, timeout=WAIT) as failed:
        qtbot.mouseClick(dlg.approve_button, Qt.MouseButton.LeftButton)
    msg = failed.args[0]
    assert "changed by rita" in msg and "reload" in msg
    assert dlg.message.isVisible() and dlg.message.text() == msg
    assert changes.get(store, 5).status == "pending"
    # it re-reads the request: the banner names the change too, the error stays
    qtbot.waitUntil(lambda: "changed by rita" in dlg.banner.text(), timeout=WAIT)
    assert dlg.message.text() == msg


def test_dock_follows_other_workstations(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    dock = _approvals(qtbot, store, "sam", runner)
    dock.set_filter("pending")
    dock.start_listening(poll=0.2)
    other_desk = Store(str(store.url))
    try:
        assert dock.listening
        with qtbot.waitSignal(dock.requests_changed, timeout=WAIT):
            new = changes.submit(other_desk, USERS["rita"], "company_parameter", {"name": "lcs_decline_a"},
                                 {"value": 0.2}, "another desk")
        qtbot.waitUntil(lambda: new in dock.visible_ids(), timeout=WAIT)
    finally:
        dock.stop()
        other_desk.dispose()
    assert not dock.listening


# ---------------------------------------------------------------------- parameters dock
def test_parameter_validation_rules() -> None:
    assert validate_parameter("force_call_factor", "0.75", 0.8) == (0.75, "")
    assert "(0, 1]" in validate_parameter("force_call_factor", "1.5")[1]
    assert "(0, 1]" in validate_parameter("force_call_factor", "0")[1]
    assert "not a number" in validate_parameter("lcs_decline_a", "abc")[1]
    assert "whole number" in validate_parameter("call_deadline_days", "2.5")[1]
    assert "whole number" in validate_parameter("call_deadline_days", "0")[1]
    assert "≥ 0" in validate_parameter("stale_after_seconds", "-1")[1]
    assert "current value" in validate_parameter("lcs_decline_a", "0.15", 0.15)[1]


def test_parameters_dock_submits_and_shows_pending(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    dock = ParametersDock()
    qtbot.addWidget(dock)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.set_context(store, USERS["rita"], runner)
    dock.show()
    assert _row(dock, "call_deadline_days")["pending"] == "pending #6"
    assert dock.select_parameter("force_call_factor")
    qtbot.keyClicks(dock.value_edit, "1.5")
    qtbot.keyClicks(dock.reason_edit, "tighten force calls")
    assert "(0, 1]" in dock.validation.text() and not dock.submit_button.isEnabled()
    dock.submit()  # refused inline, nothing sent
    assert runner.active == 0 and "(0, 1]" in dock.validation.text()
    dock.value_edit.setText("abc")
    assert "not a number" in dock.validation.text()
    dock.value_edit.setText("0.75")
    assert dock.validation.text() == "" and dock.submit_button.isEnabled()
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sub:
        qtbot.mouseClick(dock.submit_button, Qt.MouseButton.LeftButton)
    rid = sub.args[0]
    req = changes.get(store, rid)
    assert (req.kind, req.target_key, req.after, req.status) == (
        "company_parameter", {"name": "force_call_factor"}, {"value": 0.75}, "pending")
    qtbot.waitUntil(lambda: _row(dock, "force_call_factor")["pending"] == f"pending #{rid}", timeout=WAIT)
    assert f"#{rid}" in dock.validation.text()  # a second request waits for the first
    assert store.parameters()["force_call_factor"] == 0.8  # nothing applied before approval
    dock.select_parameter("call_deadline_days")
    assert not dock.submit_button.isEnabled() and "pending #6" in dock.validation.text()


def test_parameters_dock_changed_meanwhile_keeps_typing(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    dock = ParametersDock()
    qtbot.addWidget(dock)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.set_context(store, USERS["rita"], runner)
    dock.select_parameter("lcs_decline_a")
    dock.value_edit.setText("0.2")
    dock.reason_edit.setText("align with policy")
    rid = changes.submit(store, USERS["cora"], "company_parameter", {"name": "lcs_decline_a"}, {"value": 0.18},
                         "board decision")
    changes.approve(store, USERS["sam"], rid, "ok")
    with qtbot.waitSignal(dock.stale_changed, timeout=WAIT) as stale:
        dock.refresh()
    assert stale.args == [True]
    assert "changed by cora (approved by sam) at" in dock.banner.text() and "reload" in dock.banner.text()
    assert dock.value_edit.text() == "0.2" and dock.reason_edit.text() == "align with policy"
    assert not dock.submit_button.isEnabled()
    qtbot.mouseClick(dock.reload_button, Qt.MouseButton.LeftButton)
    assert not dock.stale and not dock.banner.isVisible()
    assert dock.form is not None and dock.form["value"] == 0.18 and dock.form["version"] == 2
    assert dock.value_edit.text() == "0.2" and dock.submit_button.isEnabled()


# ---------------------------------------------------------------------- audit dock
def test_audit_dock_lists_verifies_exports_and_opens(qtbot: Any, store: Store, runner: TaskRunner,
                                                     tmp_path: Path, _answerable_dialogs: DialogService) -> None:
    dock = AuditDock()
    qtbot.addWidget(dock)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.set_context(store, USERS["abe"], runner)
    ids = dock.visible_ids()
    assert len(ids) == len(audit.rows(store)) and ids == sorted(ids, reverse=True)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.set_filters(actor="sam")
    assert {_rec(dock, i)["actor"] for i in dock.visible_ids()} == {"sam"}
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.set_filters(actor="", entity="financing_limits")
    apply_id = dock.visible_ids()[0]
    assert _rec(dock, apply_id)["action"] == "apply"
    dock.view.selectRow(0)
    assert dock.diff.changed == ["amount"] and dock.open_button.isEnabled()
    with qtbot.waitSignal(dock.request_opened, timeout=WAIT) as opened:
        qtbot.keyClick(dock.view, Qt.Key.Key_Return)
    dlg = opened.args[0]
    qtbot.waitSignal(dlg.loaded, timeout=WAIT).wait()
    assert dlg.read_only and not dlg.approve_button.isVisible() and not dlg.cancel_button.isVisible()

    with qtbot.waitSignal(dock.verified, timeout=WAIT) as verified:
        qtbot.mouseClick(dock.verify_button, Qt.MouseButton.LeftButton)
    assert verified.args[0].ok and "intact" in dock.verify_label.text()

    with qtbot.waitSignal(_answerable_dialogs.requested, timeout=WAIT) as asked:
        dock.export()  # no path: the save-file question goes through the dialog service
    out = tmp_path / "audit.csv"
    with qtbot.waitSignal(dock.exported, timeout=WAIT) as exported:
        asked.args[0].answer(str(out))
    assert exported.args[0] == str(out) and exported.args[1] >= 19
    assert len(out.read_text(encoding="utf-8").splitlines()) == exported.args[1] + 1


def test_audit_dock_reports_a_broken_chain_in_red(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    with store.begin() as conn:  # tampering as the file's owner, past the append-only trigger
        conn.execute(text("drop trigger audit_log_no_update"))
        conn.execute(text("update audit_log set actor = 'mallory' where id = 5"))
    dock = AuditDock()
    qtbot.addWidget(dock)
    dock.set_context(store, USERS["abe"], runner)
    with qtbot.waitSignal(dock.verified, timeout=WAIT) as verified:
        dock.verify()
    assert not verified.args[0].ok and "broken at record 5" in dock.verify_label.text()
    assert "background" in dock.verify_label.styleSheet()


# ---------------------------------------------------------------------- login and idle lock
def test_app_login_refuses_wrong_password_accepts_right(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    dlg = AppLoginDialog(store, runner, "rita")
    qtbot.addWidget(dlg)
    dlg.show()
    assert "local store" in dlg.windowTitle() and dlg.where.text().startswith("Local store")
    dlg.password_edit.setText("wrong")
    with qtbot.waitSignal(dlg.login_failed, timeout=WAIT) as failed:
        qtbot.keyClick(dlg.password_edit, Qt.Key.Key_Return)
    assert "wrong password" in failed.args[0] and dlg.message.isVisible()
    assert dlg.result() != dlg.DialogCode.Accepted and dlg.user() is None and dlg.password_edit.text() == ""
    dlg.password_edit.setText("rita-demo")
    with qtbot.waitSignal(dlg.logged_in, timeout=WAIT) as ok:
        qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    assert ok.args[0] == USERS["rita"] and dlg.user() == USERS["rita"]
    assert dlg.result() == dlg.DialogCode.Accepted
    assert [r["action"] for r in audit.rows(store, actor="rita", limit=2)] == ["login", "login_failed"]


def test_idle_lock_locks_and_unlocks_with_the_password(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    lock = IdleLock(store, USERS["sam"], runner, minutes=0.002)  # 120 ms
    qtbot.addWidget(lock.screen)
    try:
        with qtbot.waitSignal(lock.locked, timeout=WAIT):
            lock.start()
        assert lock.is_locked and lock.screen.isVisible()
        with qtbot.waitSignal(lock.unlock_failed, timeout=WAIT) as failed:
            lock.unlock("cora-demo")  # another user's password does not unlock sam's session
        assert "wrong password" in failed.args[0] and lock.is_locked
        with qtbot.waitSignal(lock.unlocked, timeout=WAIT):
            lock.screen.password.setText("sam-demo")
            qtbot.mouseClick(lock.screen.unlock_button, Qt.MouseButton.LeftButton)
        assert not lock.is_locked and not lock.screen.isVisible()
        with qtbot.waitSignal(lock.locked, timeout=WAIT):  # idle again: locks again
            pass
    finally:
        lock.stop()
