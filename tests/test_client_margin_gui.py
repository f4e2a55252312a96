"""The client margin dock on a real SQLite demo store: the demo client ratios listed, bad ratios refused
inline with nothing submitted, a new account-level ratio going through four eyes into the margin
engine (client ratio first, RISK_METHODS §1), and "Set to expired" taking it out again.

No sleeps: every wait is on a signal or a condition; the task runner is shut down after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from app.tasks import TaskRunner
from services import changes
from services.auth import User
from services.client_margin_view import Lookups, validate_client_ratio
from services.margin import MarginEngine
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, must, runner, store  # noqa: F401 (fixtures)
from widgets.client_margin_dock import ClientMarginDock

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
WAIT = 5000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[ClientMarginDock]:
    d = ClientMarginDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1500, 760)
    d.show()
    yield d
    d.stop()


def _scalar(store: Store, sql: str, **params: Any) -> Any:
    with store.begin() as conn:
        return conn.execute(text(sql), params).scalar()


def _requests(store: Store) -> int:
    return int(_scalar(store, "select count(*) from change_requests where kind = 'client_margin_ratio'") or 0)


def _fill(d: ClientMarginDock, subject: str, target: str, side: str, im: str, mm: str,
          reason: str = "desk review") -> None:
    d.subject_kind.setCurrentIndex(0)
    d.target_kind.setCurrentIndex(0)
    d.subject_edit.setText(subject)
    d.target_edit.setText(target)
    d.side_combo.setCurrentText(side)
    d.im_edit.setText(im)
    d.mm_edit.setText(mm)
    d.reason_edit.setText(reason)


def _refresh(qtbot: Any, d: ClientMarginDock) -> None:
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.refresh()


def _long_holding(store: Store) -> tuple[int, str, int, str]:
    """(account index, account code, security index, security code): a margin account holding a
    security long, with no client ratio touching that account yet."""
    book = store.load_book()
    taken = {int(a) for (a,) in _rows(store, "select account_id from client_margin_ratios where account_id "
                                             "is not null")}
    grouped = {int(a) for (a,) in _rows(store, "select account_id from client_group_members")}
    for i in range(len(book.pos_qty)):
        a, s = int(book.pos_acct[i]), int(book.pos_sec[i])
        assert book.acct_ids is not None
        acct_id = int(book.acct_ids[a])
        if (book.pos_qty[i] > 0 and book.acct_type[a] == 1 and acct_id not in taken
                and acct_id not in grouped):
            return a, book.acct_codes[a], s, book.sec_codes[s]
    raise AssertionError("no suitable long holding in the demo book")


def _rows(store: Store, sql: str) -> list[Any]:
    with store.begin() as conn:
        return list(conn.execute(text(sql)).all())


def _resolution(store: Store, a: int, s: int) -> tuple[int, float]:
    eng = MarginEngine(store.load_book())
    pos = eng.positions_of(a)
    (i,) = np.nonzero(pos["sec"] == s)[0][:1]
    return int(pos["source"][i]), float(pos["im_ratio"][i])


def test_validate_client_ratio() -> None:
    lk = Lookups(accounts={"C1": 1}, client_groups={"VIP": 2}, securities={"700.HK": 3}, stock_groups={"TECH": 4})
    values, why = validate_client_ratio("account", "c1", "security", "700.hk", "long", "0.5", "0.4", lk)
    assert why == "" and values is not None
    assert (values["account_id"], values["security_id"], values["im_ratio"]) == (1, 3, 0.5)
    assert "Unknown account" in validate_client_ratio("account", "NOPE", "security", "700.HK", "long",
                                                      "0.5", "0.4", lk)[1]
    assert "Unknown stock group" in validate_client_ratio("group", "VIP", "group", "X", "long", "0.5", "0.4", lk)[1]
    assert "between 0 and 1" in validate_client_ratio("account", "C1", "security", "700.HK", "long",
                                                      "1.2", "0.4", lk)[1]
    assert "from 1 up" in validate_client_ratio("account", "C1", "security", "700.HK", "short", "0.9", "0.8", lk)[1]
    assert validate_client_ratio("group", "vip", "group", "tech", "short", "1.5", "1.2", lk)[0] is not None
    assert "must not exceed" in validate_client_ratio("account", "C1", "security", "700.HK", "long",
                                                      "0.3", "0.4", lk)[1]


def test_lists_demo_client_ratios(dock: ClientMarginDock, store: Store) -> None:
    dock.set_filter("all")
    total = int(_scalar(store, "select count(*) from client_margin_ratios"))
    shown = dock.visible_records()
    assert total > 0 and len(shown) == total
    assert {r["id"] for r in shown} == {int(i) for (i,) in _rows(store, "select id from client_margin_ratios")}
    code = next(r["subject"] for r in shown if not r["subject"].startswith("group: "))
    dock.search.setText(code)
    assert dock.visible_records() and all(code.lower() in (r["subject"] + r["client"] + r["target"]).lower()
                                          for r in dock.visible_records())
    dock.search.clear()
    assert dock.select_record(shown[0]["id"])
    subject = shown[0]["subject_key"]
    hist = dock.history_records()
    assert hist and all(r["subject_key"] == subject for r in hist)
    assert len(hist) == sum(1 for r in shown if r["subject_key"] == subject)


def test_bad_ratios_refused_inline(dock: ClientMarginDock, store: Store) -> None:
    before = _requests(store)
    acct = next(r["subject"] for r in dock.visible_records() if not r["subject"].startswith("group: "))
    sec = next(r["target"] for r in dock.visible_records() if not r["target"].startswith("stock group: "))
    for args, why in ((("NOPE999", sec, "long", "0.5", "0.4"), "Unknown account"),
                      ((acct, sec, "long", "1.2", "0.4"), "between 0 and 1")):
        _fill(dock, *args)
        assert not dock.submit_button.isEnabled()
        assert why in dock.validation.text() and dock.validation.isVisibleTo(dock)
        dock.submit()  # Enter in the reason box: refused the same way
        assert why in dock.validation.text()
    _fill(dock, acct, sec, "long", "0.5", "0.4", reason="")
    assert dock.validation.text() == "" and not dock.submit_button.isEnabled()
    dock.submit()
    assert "Give a reason" in dock.message.text()
    assert dock._submit_task is None and _requests(store) == before


def test_new_ratio_through_four_eyes_into_engine(qtbot: Any, dock: ClientMarginDock, store: Store,
                                                 tmp_path: Path) -> None:
    a, acct, s, sec = _long_holding(store)
    source0, im0 = _resolution(store, a, s)
    assert source0 != 0
    new_im = 0.37 if abs(im0 - 0.37) > 1e-9 else 0.33
    _fill(dock, acct, sec, "long", f"{new_im}", "0.25", reason="client pledged extra collateral")
    assert dock.validation.text() == "" and dock.submit_button.isEnabled()
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig, qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.submit_button.click()
    rid = int(sig.args[0])
    req = changes.get(store, rid)
    assert (req.status, req.op, req.kind, req.maker) == ("pending", "insert", "client_margin_ratio", "rita")
    assert req.after["status"] == "active" and req.after["im_ratio"] == new_im
    new_id = int(req.target_key["id"])
    rec = dock.model.record(new_id)
    assert rec is not None and rec["status"] == "pending" and f"request #{rid} pending" in rec["request"]
    assert _resolution(store, a, s)[0] == source0  # nothing applies before approval

    assert changes.approve(store, SAM, rid) == "approved"
    _refresh(qtbot, dock)
    rec = dock.model.record(new_id)
    assert rec is not None and rec["status"] == "active" and rec["request"] == ""
    assert (rec["subject"], rec["target"], rec["side"]) == (acct, sec, "long")
    assert _resolution(store, a, s) == (0, new_im)

    dock.set_filter("all")
    assert dock.select_record(new_id)
    assert any(r["id"] == new_id for r in dock.history_records())
    assert dock.expire_button.isEnabled()
    dock.reason_edit.setText("collateral released")
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig2, qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.expire_button.click()
    rid2 = int(sig2.args[0])
    assert changes.get(store, rid2).after == {"status": "expired"}
    assert f"request #{rid2} pending" in must(dock.model.record(new_id))["request"]
    assert changes.approve(store, SAM, rid2) == "approved"
    _refresh(qtbot, dock)
    assert must(dock.model.record(new_id))["status"] == "expired"
    source2, im2 = _resolution(store, a, s)
    assert (source2, im2) == (source0, im0)
    dock.set_filter("active")
    assert dock.model.row_of(new_id) < 0

    dock.set_filter("all")
    dock.select_record(new_id)
    shot = tmp_path / "client_margin_dock.png"
    assert dock.grab().save(str(shot))
