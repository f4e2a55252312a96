"""The desk's view of pre-trade checks on a real SQLite demo store (pytest-qt, offscreen): the Pre-trade
dock's stream, filters, counts per reason and click-through; the Limits dock's four-eyes proposals;
the What-if order dialog against an independently computed `what_if`.

The demo store carries a morning of decisions of every kind (`seed_demo_pretrade`). No sleeps: every
wait is on a signal; the task runner is shut down after each test.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text

from app.tasks import TaskRunner
from services import changes
from services import pretrade_store as ps
from services.auth import User
from services.margin import MarginEngine
from services.pretrade_orders import Order, OrderError
from services.pretrade_view import describe_rule, friendly, order_from_form, parse_threshold
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.formatting import money
from widgets.limits_dock import LimitsDock
from widgets.pretrade_dock import PretradeDock
from widgets.what_if_dialog import WhatIfDialog

RITA, SAM, TOM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor"), User("tom", "Tom", "trader")
WAIT = 5000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[PretradeDock]:
    d = PretradeDock()
    qtbot.addWidget(d)
    d.resize(1500, 600)
    d.show()
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    yield d
    d.stop()


def _stored(store: Store) -> list[ps.DecisionRow]:
    return ps.decisions(store)


def _records(model: Any) -> list[dict[str, Any]]:
    """The model's records in view order."""
    return [r for r in (model.record_at(i) for i in range(model.rowCount())) if r is not None]


def _selected(panel: Any) -> dict[str, Any]:
    rec = panel.selected()
    assert rec is not None
    return dict(rec)


def _poll(qtbot: Any, d: PretradeDock) -> None:
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.refresh()


# ---------------------------------------------------------------------- pure parts
def test_pure_helpers() -> None:
    assert parse_threshold("1,500") == (1500.0, "")
    assert parse_threshold("-1")[1] == "The threshold must be a number ≥ 0."
    assert "not a number" in parse_threshold("lots")[1]
    o = order_from_form(" m000001 ", "700.hk", "buy", "1,000", "", "limit", "tom")
    assert (o.account, o.code, o.qty, o.price, o.order_type) == ("M000001", "700.HK", 1000.0, None, "market")
    for qty, why in (("-5", "Quantity must be a positive number, got -5"), ("abc", "Quantity must be a number"),
                     ("", "Quantity is missing")):
        with pytest.raises(OrderError) as e:
            order_from_form("M000001", "700.HK", "buy", qty, "10", "limit", "tom")
        field, msg = friendly(e.value)
        assert field == "qty" and msg.startswith(why)
    codes = {c.code: c for c in [ps.LimitCode("CL_ORD_QTY", "Client order quantity", "order_qty", "client", 1e6,
                                              "prompt", True)]}
    rules = [ps.LimitRule(3, "VIP", "CL_ORD_QTY", "M1", None, None, None, 5000.0, None, True)]
    text_ = "\n".join(describe_rule("CL_ORD_QTY · VIP", codes, rules))
    assert "Global limit CL_ORD_QTY" in text_ and "Specific rule #3 “VIP”: account M1" in text_
    assert "action the code's (prompt)" in text_
    assert "1 active specific rule" in describe_rule("CL_ORD_QTY", codes, rules)[1]
    assert "normal size" in describe_rule("size_vs_normal", codes, rules)[0]


# ---------------------------------------------------------------------- the Pre-trade dock
def test_dock_lists_decisions_and_counts_add_up(dock: PretradeDock, store: Store) -> None:
    stored = _stored(store)
    assert len(stored) >= 30
    assert {r.decision for r in stored} == {"accept", "prompt", "approval", "reject"}  # the demo has every kind
    shown = dock.visible_decisions()
    assert sorted(r.id for r in shown) == [r.id for r in stored]
    assert [r.id for r in shown] == sorted((r.id for r in stored), reverse=True)  # newest first
    reasons = Counter((str(x["rule"]), str(x["action"])) for r in stored for x in r.reasons)
    counts = dock.counts()
    assert sum(c["total"] for c in counts.values()) == sum(reasons.values())
    for rule, c in counts.items():
        assert c["total"] == c["prompt"] + c["approval"] + c["reject"]
        for action in ("prompt", "approval", "reject"):
            assert c[action] == reasons[(rule, action)]
    assert counts["notional_approval"]["approval"] == sum(r.decision == "approval" for r in stored)
    per = Counter(r.decision for r in stored)
    assert f"{len(stored)} shown" in dock.summary.text() and f"{per['reject']} reject" in dock.summary.text()


def test_filter_by_decision_trader_and_account(dock: PretradeDock, store: Store) -> None:
    stored = _stored(store)
    dock.decision_combo.setCurrentIndex(dock.decision_combo.findData("reject"))
    shown = dock.visible_decisions()
    assert shown and all(r.decision == "reject" for r in shown)
    assert len(shown) == sum(r.decision == "reject" for r in stored)
    assert all(c["prompt"] == c["approval"] == 0 for c in dock.counts().values())  # counts follow the filter
    dock.decision_combo.setCurrentIndex(0)
    dock.trader_edit.setText("TOM")
    assert {r.trader for r in dock.visible_decisions()} == {"tom"}
    acct = stored[0].account
    dock.account_edit.setText(acct.lower())
    assert {(r.trader, r.account) for r in dock.visible_decisions()} == {("tom", acct)}
    dock.trader_edit.clear()
    dock.account_edit.clear()
    assert len(dock.visible_decisions()) == len(stored)


def test_new_decisions_stream_in_and_the_oldest_go(qtbot: Any, store: Store, runner: TaskRunner) -> None:
    d = PretradeDock(max_rows=10)
    qtbot.addWidget(d)
    d.show()
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    stored = _stored(store)
    assert [r.id for r in d.rows] == [r.id for r in stored[-10:]]
    eng = ps.build_engine(store)
    new = [eng.check(Order(stored[0].account, "tom", stored[0].code, "buy", 100.0 + i, None, "market", f"N{i}"))
           for i in range(3)]
    ps.save_decisions(store, new)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):  # the one-second poll
        pass
    qtbot.waitUntil(lambda: d.last_id == stored[-1].id + 3, timeout=WAIT)
    assert len(d.rows) == 10 and d.model.rowCount() == 10
    assert [r.client_order_id for r in d.visible_decisions()[:3]] == ["N2", "N1", "N0"]
    d.stop()


def test_selecting_a_decision_shows_its_reasons_and_the_rule(qtbot: Any, dock: PretradeDock, store: Store) -> None:
    stored = _stored(store)
    tom = next(r for r in stored if any(str(x["rule"]).startswith("TR_ORD_NOTIONAL · ") for x in r.reasons))
    with qtbot.waitSignal(dock.decision_shown, timeout=WAIT):
        assert dock.select_decision(tom.id)
    recs = _records(dock.details.model)
    assert [(r["rule"], r["action"]) for r in recs] == [(x["rule"], x["action"]) for x in tom.reasons]
    assert recs[0]["message"] == tom.reasons[0]["message"] and recs[0]["threshold_text"] == "500,000"
    qtbot.waitUntil(lambda: "Specific rule" in dock.definition_text(), timeout=WAIT)  # definitions loaded
    definition = dock.definition_text()
    assert "Global limit TR_ORD_NOTIONAL" in definition and "trader tom" in definition
    assert "“Tom — large orders”" in definition and "action prompt" in definition and "active" in definition
    dup = next(r for r in stored if r.reasons and r.reasons[0]["rule"] == "duplicate")
    dock.select_decision(dup.id)
    first, second = dock.definition_text().split("\n")[:2]
    assert first == f"Reject: {dup.reasons[0]['message']}" and second.startswith("Built-in check “duplicate”")


def test_approval_rows_show_their_release(qtbot: Any, dock: PretradeDock, store: Store) -> None:
    approvals = [r for r in _stored(store) if r.decision == "approval"]
    release = {r.id: r.as_record()["release"] for r in approvals}
    assert "released" in release.values() and any(v.startswith("request #") for v in release.values())
    col = dock.model.columns.index(next(c for c in dock.model.columns if c.header == "Release"))
    waiting = next(r for r in approvals if not r.released)

    def shown_release() -> str:
        row = dock.model.row_of(int(dock.cols["id"].tolist().index(waiting.id)) + dock._first)
        return str(dock.model.data(dock.model.index(row, col)))

    assert shown_release() == f"request #{waiting.request_id}"
    changes.approve(store, SAM, int(waiting.request_id or 0), "client confirmed")
    _poll(qtbot, dock)
    assert shown_release() == "released"


# ---------------------------------------------------------------------- the Limits dock
@pytest.fixture
def limits(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[LimitsDock]:
    d = LimitsDock()
    qtbot.addWidget(d)
    d.resize(1500, 650)
    d.show()
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    yield d
    d.stop()


def _pending(store: Store, kind: str) -> list[changes.ChangeRequest]:
    return changes.listing(store, status="pending", kind=kind)


def _account(store: Store) -> str:
    with store.begin() as conn:
        return str(conn.execute(text("select code from accounts order by id limit 1")).scalar_one())


def test_limits_dock_submits_a_rule_as_a_change_request(qtbot: Any, limits: LimitsDock, store: Store) -> None:
    p = limits.rules
    limits.tabs.setCurrentWidget(p)
    assert any(r["name"] == "Tom — large orders" for r in p.visible_records())
    acct = _account(store)
    p.code_combo.setCurrentIndex(p.code_combo.findData("CL_ORD_QTY"))
    assert "enabled" in p.code_status.text() and "client limit" in p.code_status.text()
    p.name_edit.setText("VIP order size")
    p.security_edit.setText("700.HK")  # a client limit names the account only
    with qtbot.waitSignal(p.validated, timeout=WAIT) as sig:
        p.threshold_edit.setText("5,000")
    assert "name the account only" in sig.args[0] and p.validation.text() == sig.args[0]
    assert not p.submit_button.isEnabled()
    p.threshold_edit.setText("-1")
    assert p.validation.text() == "The threshold must be a number ≥ 0."
    p.security_edit.clear()
    p.account_edit.setText(acct.lower())
    with qtbot.waitSignal(p.validated, timeout=WAIT) as sig:
        p.threshold_edit.setText("5,000")
    assert sig.args[0] == "" and not p.validation.isVisibleTo(p)
    p.reason_edit.setText("VIP asked for a lower fat-finger check")
    assert p.submit_button.isEnabled()
    before = len(_pending(store, "limit_rule"))
    with qtbot.waitSignal(limits.refreshed, timeout=WAIT), qtbot.waitSignal(limits.submitted, timeout=WAIT) as s:
        p.submit()
    req = changes.get(store, int(s.args[0]))
    assert len(_pending(store, "limit_rule")) == before + 1
    assert (req.kind, req.op, req.status, req.target_table) == ("limit_rule", "insert", "pending", "limit_rules")
    assert req.after["name"] == "VIP order size" and req.after["code"] == "CL_ORD_QTY"
    assert req.after["threshold"] == 5000.0 and req.after["action"] is None and req.context["account"] == acct
    row = next(r for r in p.visible_records() if r["request_id"] == req.id)
    assert (row["id"], row["active"], row["account"]) == (req.target_key["id"], "pending", acct)
    assert ps.limit_rules(store)[-1].name != "VIP order size"  # nothing in force before approval


def test_global_limit_change_and_disable_are_requests(qtbot: Any, limits: LimitsDock, store: Store) -> None:
    g = limits.codes
    assert g.select_code("CL_ORD_QTY")
    g.threshold_edit.setText("-5")
    assert g.validation.text() == "The threshold must be a number ≥ 0." and not g.submit_button.isEnabled()
    g.threshold_edit.setText("2,000,000")
    g.action_combo.setCurrentText("reject")
    g.reason_edit.setText("tighter fat-finger control")
    with qtbot.waitSignal(limits.refreshed, timeout=WAIT), qtbot.waitSignal(limits.submitted, timeout=WAIT) as s:
        g.submit()
    req = changes.get(store, int(s.args[0]))
    assert (req.kind, req.target_key, req.after) == ("limit_code", {"code": "CL_ORD_QTY"},
                                                     {"threshold": 2_000_000.0, "action": "reject"})
    assert g.select_code("CL_ORD_QTY") and f"request #{req.id} pending" in _selected(g)["request"]
    assert not g.toggle_button.isEnabled()  # one request at a time per code
    assert g.select_code("CL_DAY_COUNT") and g.toggle_button.text() == "Disable"
    g.reason_edit.setText("count limit retired")
    with qtbot.waitSignal(limits.refreshed, timeout=WAIT), qtbot.waitSignal(limits.submitted, timeout=WAIT) as s:
        g.toggle_enabled()
    assert changes.get(store, int(s.args[0])).after == {"enabled": False}
    changes.approve(store, SAM, int(s.args[0]))
    with qtbot.waitSignal(limits.refreshed, timeout=WAIT):
        limits.refresh()
    assert g.select_code("CL_DAY_COUNT") and _selected(g)["enabled"] == "disabled"
    assert g.toggle_button.text() == "Enable"


# ---------------------------------------------------------------------- the What-if dialog
class CountingLock:
    """The live monitor's lock, counting how often the what-if took it."""

    def __init__(self) -> None:
        self.lock, self.taken = threading.RLock(), 0

    def __enter__(self) -> None:
        self.lock.acquire()
        self.taken += 1

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


@pytest.fixture
def monitor(store: Store) -> Any:
    return SimpleNamespace(engine=MarginEngine(store.load_book()), lock=CountingLock())


def _dialog(qtbot: Any, store: Store, runner: TaskRunner, monitor: Any) -> WhatIfDialog:
    dlg = WhatIfDialog(store, TOM, runner, monitor)
    qtbot.addWidget(dlg)
    dlg.show()
    return dlg


def test_what_if_shows_the_decision_and_the_margin_after(qtbot: Any, store: Store, runner: TaskRunner,
                                                          monitor: Any) -> None:
    b = monitor.engine.book
    a = int(monitor.engine.buying_power.argmax())
    acct = b.acct_codes[a]
    s = b.sec_index["700.HK"]
    dlg = _dialog(qtbot, store, runner, monitor)
    dlg.set_order(acct.lower(), "700.hk", "buy", "1,000", f"{float(b.price[s]):g}", "limit")
    with store.begin() as conn:
        n = conn.execute(text("select count(*) from pretrade_decisions")).scalar()
    with qtbot.waitSignal(dlg.checked, timeout=WAIT):
        dlg.check()
    order = Order(acct, "tom", "700.HK", "buy", 1000.0, float(b.price[s]), "limit", "what-if")
    independent = ps.build_engine(store, margin=MarginEngine(store.load_book()))
    expected = independent.what_if(order)
    res = dlg.last_result
    assert monitor.lock.taken == 1  # check and what_if ran under the live engine's lock
    assert res is not None and res.decision.decision == independent.check(order).decision
    assert dlg.badge.text() == res.decision.decision.upper()
    assert [r.rule for r in res.decision.reasons] == [r["rule"] for r in _records(dlg.reasons_model)]
    figures = dlg.figures()
    assert figures["Initial margin (IM)"] == (money(expected["before"]["im"]), money(expected["after"]["im"]))
    assert res.margin is not None and res.margin["after"]["im"] == expected["after"]["im"]
    assert expected["after"]["im"] > expected["before"]["im"]
    assert figures["Position"][1] == f"{expected['after']['position']:,.0f}"
    assert figures["Status"] == (expected["before"]["status"], expected["after"]["status"])
    with store.begin() as conn:  # nothing stored
        assert conn.execute(text("select count(*) from pretrade_decisions")).scalar() == n


def test_what_if_names_a_bad_field(qtbot: Any, store: Store, runner: TaskRunner, monitor: Any) -> None:
    dlg = _dialog(qtbot, store, runner, monitor)
    dlg.set_order(monitor.engine.book.acct_codes[0], "700.HK", "buy", "-5", "380", "limit")
    with qtbot.waitSignal(dlg.refused, timeout=WAIT) as sig:
        dlg.check()
    assert sig.args[0] == "Quantity must be a positive number, got -5" and dlg.message.text() == sig.args[0]
    assert dlg._task is None and "f85149" in dlg.qty_edit.styleSheet()
    dlg.qty_edit.setText("lots")
    dlg.check()
    assert dlg.message.text().startswith("Quantity must be a number")
    dlg.set_order("NOPE1", "700.HK", "buy", "100", "380", "limit")  # unknown account: named after the check
    with qtbot.waitSignal(dlg.refused, timeout=WAIT) as sig:
        dlg.check()
    assert sig.args[0].startswith("Account:") and dlg.badge.text() == "REJECT"


def test_main_window_what_if_action_after_login(qtbot: Any, store: Store, runner: TaskRunner,
                                                 tmp_path: Any) -> None:
    from PySide6.QtGui import QKeySequence

    from app.main_window import MainWindow, make_settings

    w = MainWindow(settings=make_settings(tmp_path / "layout.ini"), run_task=runner.run, restore=False)
    qtbot.addWidget(w)
    assert {"pretrade", "limits"} <= set(w.docks)
    assert w.what_if_action.shortcut() == QKeySequence("Ctrl+W") and not w.what_if_action.isEnabled()
    assert w.open_what_if() is None  # not before login
    with qtbot.waitSignal(w.pretrade.refreshed, timeout=WAIT), qtbot.waitSignal(w.limits.refreshed, timeout=WAIT):
        w.attach_governance(store, RITA, runner)
    try:
        assert w.what_if_action.isEnabled() and w.pretrade.rows
        # the approvals dock's four-eyes dialogs get the live figures of the window's monitor (none yet)
        assert w.approvals.account_figures == w._account_figures and w._account_figures("M000001") is None
        w.what_if_action.trigger()
        dlg = w.what_if_dialog
        assert isinstance(dlg, WhatIfDialog) and dlg.isVisible()
        dlg.set_order(store.load_book().acct_codes[0], "700.HK", "sell", "100", "", "limit")
        with qtbot.waitSignal(dlg.checked, timeout=WAIT):  # no live monitor: the store's book
            dlg.check()
        assert dlg.last_result is not None and dlg.last_result.decision.order.order_type == "market"
    finally:
        w.shutdown()
        w.approvals.stop()
