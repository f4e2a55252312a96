"""The lists dock on a real SQLite demo store: demo groups listed with members, an unknown account
refused inline with nothing submitted, a blacklist entry going through four eyes (add, then disable)
into `credit.blacklisted_accounts`, and a VIP member add becoming a client_group_member request.

No sleeps: every wait is on a signal; the task runner is shut down after each test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.tasks import TaskRunner
from services import changes, credit
from services.auth import User
from services.lists_view import validate_member
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.lists_dock import ListsDock

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
WAIT = 5000
LIST_KINDS = "('blacklist', 'client_group_member', 'stock_group_member')"


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[ListsDock]:
    d = ListsDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1200, 700)
    d.show()
    yield d
    d.stop()


def _requests(store: Store) -> int:
    with store.begin() as conn:
        return int(conn.execute(text(f"select count(*) from change_requests where kind in {LIST_KINDS}")).scalar()
                   or 0)


def _members(store: Store, sql: str, name: str) -> set[str]:
    with store.begin() as conn:
        return set(conn.execute(text(sql), {"n": name}).scalars())


def _submit(qtbot: Any, dock: ListsDock, click: Any) -> int:
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig, qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        click()
    return int(sig.args[0])


def _approve_and_refresh(qtbot: Any, dock: ListsDock, store: Store, rid: int) -> None:
    assert changes.approve(store, SAM, rid) == "approved"
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()


def test_demo_groups_listed_with_members(dock: ListsDock, store: Store) -> None:
    assert set(dock.group_names("client")) == {"VIP", "Watch list"}
    assert set(dock.group_names("stock")) == {"HSI Core", "US Mega Cap", "Technology"}
    client_sql = ("select a.code from client_group_members m join client_groups g on g.id = m.group_id "
                  "join accounts a on a.id = m.account_id where g.name = :n")
    stock_sql = ("select s.code from stock_group_members m join stock_groups g on g.id = m.group_id "
                 "join securities s on s.id = m.security_id where g.name = :n")
    for name in ("VIP", "Watch list"):
        expected = _members(store, client_sql, name)
        assert expected and set(dock.member_codes("client", name)) == expected
    for name in ("HSI Core", "US Mega Cap", "Technology"):
        expected = _members(store, stock_sql, name)
        assert expected and set(dock.member_codes("stock", name)) == expected
    tab = dock.client_tab
    assert dock.select_group("client", "Watch list")
    assert tab.member_model.rowCount() == len(dock.member_codes("client", "Watch list"))
    assert "Watch list" in tab.group_label.text()
    assert dock.select_group("stock", "Technology")
    assert dock.stock_tab.member_model.rowCount() == len(dock.member_codes("stock", "Technology"))


def test_unknown_account_refused_inline(qtbot: Any, dock: ListsDock, store: Store) -> None:
    tab = dock.client_tab
    dock.tabs.setCurrentWidget(tab)
    assert dock.select_group("client", "VIP")
    tab.code_edit.setText("NOPE999")
    tab.reason_edit.setText("desk review")
    assert not tab.add_button.isEnabled()
    assert "Unknown account" in tab.validation.text() and tab.validation.isVisibleTo(dock)
    tab.add_member()  # Enter in the reason box: refused the same way
    assert "Unknown account" in tab.validation.text()
    existing = dock.member_codes("client", "VIP")[0]
    tab.code_edit.setText(existing)
    assert "already in VIP" in tab.validation.text() and not tab.add_button.isEnabled()
    dock.tabs.setCurrentIndex(0)
    dock.code_edit.setText("NOPE999")
    dock.reason_edit.setText("desk review")
    assert "Unknown account" in dock.bl_validation.text() and not dock.add_button.isEnabled()
    dock.add_blacklist()
    assert dock.busy is None and _requests(store) == 0
    assert validate_member(dock.snapshot, "stock", 1, "700.hk", "")[1] != ""  # no reason: refused


def test_blacklist_add_then_disable(qtbot: Any, dock: ListsDock, store: Store, tmp_path: Path) -> None:
    code = sorted(dock.snapshot.accounts)[5]  # type: ignore[union-attr]
    assert code not in credit.blacklisted_accounts(store, "Credit")
    dock.subject_combo.setCurrentText("Account")
    dock.code_edit.setText(code.lower())
    dock.tag_combo.setCurrentText("Credit")
    dock.remark_edit.setText("court order")
    assert "reason" in dock.bl_validation.text().lower() and not dock.add_button.isEnabled()
    dock.reason_edit.setText("legal hold")
    assert dock.add_button.isEnabled(), dock.bl_validation.text()
    rid = _submit(qtbot, dock, dock.add_button.click)
    assert f"request #{rid} submitted — awaiting approval" in dock.bl_message.text()
    req = changes.get(store, rid)
    assert (req.kind, req.op, req.status) == ("blacklist", "insert", "pending")
    assert req.after["tag"] == "Credit" and req.after["remark"] == "court order"
    new_id = int(req.target_key["id"])
    pending = dock.bl_model.record(new_id)
    assert pending is not None and pending["pending"] == f"request #{rid} pending (new)"
    dock.code_edit.setText(code)  # a second Credit entry for it is refused while one waits
    assert "already has a Credit blacklist entry" in dock.bl_validation.text()
    dock.code_edit.clear()
    assert code not in credit.blacklisted_accounts(store, "Credit")

    _approve_and_refresh(qtbot, dock, store, rid)
    row = dock.bl_model.record(new_id)
    assert row is not None and row["subject"] == code and row["enabled"] and row["pending"] == ""
    assert code in credit.blacklisted_accounts(store, "Credit")

    assert dock.select_blacklist(new_id)
    assert dock.toggle_button.text().replace("&", "") == "Disable"
    dock.reason_edit.setText("order lifted")
    assert dock.toggle_button.isEnabled()
    rid2 = _submit(qtbot, dock, dock.toggle_button.click)
    req2 = changes.get(store, rid2)
    assert (req2.op, req2.target_key, req2.after) == ("update", {"id": new_id}, {"enabled": False})
    assert dock.bl_model.record(new_id)["pending"] == f"request #{rid2} pending (disable)"  # type: ignore[index]
    assert code in credit.blacklisted_accounts(store, "Credit")
    _approve_and_refresh(qtbot, dock, store, rid2)
    assert dock.bl_model.record(new_id)["enabled"] is False  # type: ignore[index]
    assert code not in credit.blacklisted_accounts(store, "Credit")
    dock.grab().save(str(tmp_path / "lists_blacklist.png"))
    if (out := Path("/tmp/lists_shots")).is_dir():
        shutil.copy(tmp_path / "lists_blacklist.png", out / "lists_blacklist.png")


def test_vip_member_add_creates_request(qtbot: Any, dock: ListsDock, store: Store, tmp_path: Path) -> None:
    tab = dock.client_tab
    dock.tabs.setCurrentWidget(tab)
    assert dock.select_group("client", "VIP")
    vip = set(dock.member_codes("client", "VIP"))
    code = next(c for c in sorted(dock.snapshot.accounts) if c not in vip)  # type: ignore[union-attr]
    tab.code_edit.setText(code)
    tab.reason_edit.setText("new private-banking client")
    assert tab.add_button.isEnabled(), tab.validation.text()
    rid = _submit(qtbot, dock, tab.add_button.click)
    assert f"request #{rid} submitted — awaiting approval" in tab.message.text()
    req = changes.get(store, rid)
    acc_id = dock.snapshot.accounts[code]  # type: ignore[union-attr]
    assert (req.kind, req.op, req.status) == ("client_group_member", "insert", "pending")
    assert req.target_key == {"group_id": 1, "account_id": acc_id} and req.after == {}
    assert code not in dock.member_codes("client", "VIP")  # not a member until approved
    pending = tab.member_model.record(acc_id)
    assert pending is not None and pending["pending"] == f"request #{rid} pending (add)"
    tab.code_edit.setText(code)
    assert "already adds" in tab.validation.text()  # a second request for it is refused
    dock.grab().save(str(tmp_path / "lists_groups.png"))
    if (out := Path("/tmp/lists_shots")).is_dir():
        shutil.copy(tmp_path / "lists_groups.png", out / "lists_groups.png")
    _approve_and_refresh(qtbot, dock, store, rid)
    assert code in dock.member_codes("client", "VIP")
