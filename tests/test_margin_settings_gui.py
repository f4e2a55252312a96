"""The margin settings dock on a real SQLite demo store: in-force long records listed, bad settings
refused inline with nothing submitted, and a future-dated proposal going through four eyes to a
pending record that "Sync now" brings into force.

No sleeps: every wait is on a signal or a condition; the task runner is shut down after each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import QDateTime
from sqlalchemy import text

from app.tasks import TaskRunner
from services import changes, ratio_settings
from services.auth import User
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.margin_settings_dock import MarginSettingsDock, validate_setting

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
WAIT = 5000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[MarginSettingsDock]:
    d = MarginSettingsDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1400, 760)
    d.show()
    yield d
    d.stop()


def _requests(store: Store) -> int:
    with store.begin() as conn:
        return int(conn.execute(text("select count(*) from change_requests where kind = 'stock_margin_ratio'"))
                   .scalar() or 0)


def _fill(d: MarginSettingsDock, code: str, im: str, mm: str, reason: str = "desk review") -> None:
    d.code_edit.setText(code)
    d.im_edit.setText(im)
    d.mm_edit.setText(mm)
    d.reason_edit.setText(reason)


def _rec(d: MarginSettingsDock, record_id: int) -> dict[str, Any]:
    rec = d.model.record(record_id)
    assert rec is not None, f"record #{record_id} not loaded"
    return rec


def test_validate_setting() -> None:
    codes = {"700.HK"}
    assert validate_setting("long", "700.hk", "0.5", "0.4", codes) == (("700.HK", 0.5, 0.4), "")
    assert "between 0 and 1" in validate_setting("long", "700.HK", "1.5", "0.4", codes)[1]
    assert "between 0 and 1" in validate_setting("intraday", "700.HK", "0.5", "-0.1", codes)[1]
    assert "from 1 up" in validate_setting("short", "700.HK", "0.9", "0.8", codes)[1]
    assert validate_setting("short", "700.HK", "1.5", "1.2", codes)[0] == ("700.HK", 1.5, 1.2)
    assert "must not exceed" in validate_setting("long", "700.HK", "0.3", "0.4", codes)[1]
    assert "Unknown security" in validate_setting("long", "NOPE", "0.3", "0.2", codes)[1]


def test_lists_in_force_long_records(dock: MarginSettingsDock, store: Store) -> None:
    expected = {r.id for r in ratio_settings.records(store) if r.table == "long" and r.state == "in force"}
    shown = dock.visible_records()
    assert expected and {r["id"] for r in shown} == expected
    assert {r["table"] for r in shown} == {"long"} and {r["state"] for r in shown} == {"in force"}
    dock.set_table("short")
    assert {r["table"] for r in dock.visible_records()} == {"short"}
    dock.set_table("long")
    code = shown[0]["code"]
    dock.search.setText(code)
    assert {r["code"] for r in dock.visible_records()} >= {code}
    assert all(code.lower() in r["code"].lower() for r in dock.visible_records())


def test_bad_settings_refused_inline(qtbot: Any, dock: MarginSettingsDock, store: Store) -> None:
    code = dock.visible_records()[0]["code"]
    for args, why in (((code, "1.5", "0.4"), "between 0 and 1"), ((code, "0.3", "0.4"), "must not exceed"),
                      (("NOPE.HK", "0.5", "0.4"), "Unknown security")):
        _fill(dock, *args)
        assert not dock.submit_button.isEnabled()
        assert why in dock.validation.text() and dock.validation.isVisibleTo(dock)
        dock.submit()  # Enter in the reason box: refused the same way
        assert why in dock.validation.text()
    assert dock._submit_task is None
    assert _requests(store) == 0


def test_future_proposal_then_sync_now(qtbot: Any, dock: MarginSettingsDock, store: Store) -> None:
    rec = dock.visible_records()[0]
    assert dock.select_record(rec["id"])
    assert dock.code_edit.text() == rec["code"]  # selecting a record loads it into the form
    assert rec["code"] in dock.history_label.text()
    dock.im_edit.setText("0.65")
    dock.mm_edit.setText("0.55")
    dock.reason_edit.setText("tighten from next week")
    dock.now_check.setChecked(False)
    dock.effective_edit.setDateTime(QDateTime.currentDateTime().addDays(3))
    assert dock.submit_button.isEnabled(), dock.validation.text()
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig, qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.submit_button.click()
    rid = int(sig.args[0])
    assert f"request #{rid} submitted — awaiting approval" in dock.message.text()
    req = changes.get(store, rid)
    assert (req.kind, req.op, req.status) == ("stock_margin_ratio", "insert", "pending")
    assert req.after["im_ratio"] == 0.65 and req.after["mm_ratio"] == 0.55 and req.after["kind"] == "long"
    # the in-force row of that code shows the request waiting on it
    assert _rec(dock, rec["id"])["request"] == f"request #{rid} pending"

    changes.approve(store, SAM, rid)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    new_id = int(req.target_key["id"])
    pending = dock.model.record(new_id)
    assert pending is not None and pending["state"] == "pending" and pending["im"] == 0.65
    assert dock.model.row_of(new_id) >= 0  # shown by default with the in-force ones
    assert dock._row_background(new_id) is not None  # amber

    assert dock.select_record(new_id)
    assert dock.sync_button.isEnabled() and dock.cancel_sync_button.isEnabled()
    dock.reason_edit.clear()
    dock.sync_button.click()  # no reason: asked for one, nothing submitted
    assert "reason" in dock.message.text().lower() and dock._submit_task is None
    dock.reason_edit.setText("apply now: volatility")
    with qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig, qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.sync_button.click()
    sync_id = int(sig.args[0])
    assert changes.get(store, sync_id).target_key == {"id": new_id}
    assert _rec(dock, new_id)["request"] == f"request #{sync_id} pending"
    assert not dock.sync_button.isEnabled()  # one request at a time on a record

    changes.approve(store, SAM, sync_id)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    assert _rec(dock, new_id)["state"] == "in force"
    assert _rec(dock, rec["id"])["state"] == "superseded"
    assert dock.model.row_of(rec["id"]) < 0  # hidden until "show superseded / revoked"
    dock.show_all.setChecked(True)
    assert dock.model.row_of(rec["id"]) >= 0
    states = {r["id"]: r["state"] for r in
              (dock.history_model.record_at(i) for i in range(dock.history_model.rowCount())) if r}
    assert states[new_id] == "in force" and states[rec["id"]] == "superseded"


def _set_flags(store: Store, code: str, suspended: bool, halted: bool) -> None:
    """The exchange's flags as the status feed writes them (operational data, not a risk parameter)."""
    with store.begin() as conn:
        conn.execute(text("update securities set suspended = :s, halted = :h where code = :c"),
                     {"s": suspended, "h": halted, "c": code})


def test_refresh_stock_status_updates_only_changed_rows(qtbot: Any, dock: MarginSettingsDock,
                                                        store: Store) -> None:
    col = dock.model.column_of("Status")
    shown = dock.visible_records()
    by_status = {r["code"]: r["stock_status"] for r in shown}
    assert set(by_status.values()) <= {"trading", "suspended"} and "trading" in by_status.values()
    with store.begin() as conn:
        suspended = {c for (c,) in conn.execute(text("select code from securities where suspended"))}
    assert {c for c, s in by_status.items() if s == "suspended"} == suspended & set(by_status)
    a, b = sorted(c for c, s in by_status.items() if s == "trading")[:2]
    rec_a = next(r for r in shown if r["code"] == a)
    assert dock.select_record(rec_a["id"])
    dock.search.setText("")

    _set_flags(store, a, False, True)  # an intraday halt
    _set_flags(store, b, True, True)  # suspended wins over halted
    changed_rows: list[tuple[int, int]] = []
    dock.model.dataChanged.connect(lambda tl, br: changed_rows.append((tl.row(), br.row())))
    with qtbot.waitSignal(dock.stock_status.refreshed, timeout=WAIT) as sig:
        dock.stock_status.button.click()
    assert dock.snapshot is not None
    n_records = sum(1 for r in dock.snapshot.rows if r["code"] in (a, b))  # every table's records of a and b
    n_rows = sum(1 for r in dock.visible_records() if r["code"] in (a, b))  # those the long table shows
    assert sig.args == [n_records] and n_records >= n_rows >= 2
    # only the changed rows were repainted, never the whole table
    assert sum(hi - lo + 1 for lo, hi in changed_rows) == n_rows
    assert _rec(dock, rec_a["id"])["stock_status"] == "halted"
    row = dock.model.row_of(rec_a["id"])
    assert dock.model.data(dock.model.index(row, col)) == "halted"
    rec_b = next(r for r in dock.visible_records() if r["code"] == b)
    assert dock.model.data(dock.model.index(dock.model.row_of(rec_b["id"]), col)) == "suspended"
    assert "2 changed" in dock.status.text() and f"{a} halted" in dock.status.text()
    assert (dock.selected_record() or {}).get("id") == rec_a["id"]  # the selection is kept

    with qtbot.waitSignal(dock.stock_status.refreshed, timeout=WAIT) as sig:
        dock.stock_status.button.click()
    assert sig.args == [0] and "no change" in dock.status.text()
    _set_flags(store, a, False, False)
    with qtbot.waitSignal(dock.stock_status.refreshed, timeout=WAIT):
        dock.stock_status.button.click()
    assert _rec(dock, rec_a["id"])["stock_status"] == "trading"
