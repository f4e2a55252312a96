"""The haircuts dock on a real SQLite demo store: a haircut outside [0, 1] refused inline with nothing
submitted, a valid change going through four eyes into the book, an index's first haircut created
through four eyes, and the modification records of the selected security / index.

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
from services.haircuts import validate_haircut
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.haircuts_dock import HaircutsDock

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
WAIT = 5000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[HaircutsDock]:
    d = HaircutsDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1400, 700)
    d.show()
    yield d
    d.stop()


def _rec(page: Any, key: int) -> dict[str, Any]:
    rec = page.model.record(key)
    assert rec is not None, f"row {key} not loaded"
    return rec  # type: ignore[no-any-return]


def _requests(store: Store) -> int:
    with store.begin() as conn:
        return int(conn.execute(text("select count(*) from change_requests where kind = 'haircut'")).scalar() or 0)


def test_validate_haircut() -> None:
    assert validate_haircut(" 0.25 ") == (0.25, "")
    assert validate_haircut("0")[0] == 0 and validate_haircut("1")[0] == 1
    assert "between 0 and 1" in validate_haircut("1.5")[1]
    assert "between 0 and 1" in validate_haircut("-0.1")[1]
    assert "not a number" in validate_haircut("x")[1]


def test_lists_securities_and_search(dock: HaircutsDock, store: Store) -> None:
    book = store.load_book()
    page = dock.securities
    shown = page.visible_records()
    assert len(shown) == len(book.sec_codes)
    assert all(r["haircut"] is not None for r in shown)
    code = shown[0]["code"]
    page.search.setText(code)
    assert page.visible_records() and all(code.lower() in (r["code"] + r["name"]).lower()
                                          for r in page.visible_records())


def test_bad_haircut_refused_inline(dock: HaircutsDock, store: Store) -> None:
    before = _requests(store)
    page = dock.securities
    assert page.select_record(page.visible_records()[0]["id"])
    page.haircut_edit.setText("1.5")
    page.reason_edit.setText("desk review")
    assert not page.submit_button.isEnabled()
    assert "between 0 and 1" in page.validation.text() and page.validation.isVisibleTo(dock)
    page.submit()
    assert "between 0 and 1" in page.validation.text()
    page.haircut_edit.setText("abc")
    assert "not a number" in page.validation.text() and not page.submit_button.isEnabled()
    assert page._submit_task is None and _requests(store) == before


def test_haircut_change_through_four_eyes(qtbot: Any, dock: HaircutsDock, store: Store, tmp_path: Path) -> None:
    page = dock.securities
    rec = page.visible_records()[3]
    new = 0.35 if abs((rec["haircut"] or 0) - 0.35) > 1e-9 else 0.4
    assert page.select_record(rec["id"])
    assert page.modification_records() == [] and "0 requests" in page.records_label.text()
    page.haircut_edit.setText(f"{new}")
    page.reason_edit.setText("volatility review")
    assert page.submit_button.isEnabled()
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT), qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        page.submit()
    rid = int(sig.args[0])
    req = changes.get(store, rid)
    assert (req.status, req.op, req.target_key, req.after) == ("pending", "update", {"security_id": rec["id"]},
                                                                {"haircut": new})
    assert _rec(page, rec["id"])["request"].startswith(f"request #{rid} pending")
    assert page.select_record(rec["id"])
    page.haircut_edit.setText("0.5")
    assert "already has request" in page.validation.text() and not page.submit_button.isEnabled()
    page.haircut_edit.clear()
    # the modification records of the selected security: the pending request, before → after
    [mod] = page.modification_records()
    assert (mod["id"], mod["status"], mod["maker"], mod["checker"]) == (rid, "pending", "rita", "")
    assert mod["change"] == f"{rec['haircut']:g} → {new:g}"
    dock.grab().save(str(tmp_path / "haircuts.png"))

    changes.approve(store, SAM, rid)
    book = store.load_book()
    i = list(book.sec_codes).index(rec["code"])
    assert book.haircut[i] == pytest.approx(new)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    after = _rec(page, rec["id"])
    assert after["haircut"] == pytest.approx(new) and not after["request_id"]
    [mod] = page.modification_records()  # the selection survived the reload
    assert (mod["status"], mod["checker"]) == ("approved", "sam") and mod["decided_at"] is not None


def _index_members(store: Store, code: str) -> int:
    with store.begin() as conn:
        return int(conn.execute(text("select count(*) from index_members m join indices i on i.id = m.index_id "
                                     "where i.code = :c"), {"c": code}).scalar() or 0)


def test_index_haircut_created_then_changed_through_four_eyes(qtbot: Any, dock: HaircutsDock, store: Store,
                                                              tmp_path: Path) -> None:
    dock.tabs.setCurrentWidget(dock.indices)
    page = dock.indices
    shown = {r["code"]: r for r in page.visible_records()}
    assert set(shown) == {"HSI", "HSCI", "OEX", "SPX"}
    hsi = shown["HSI"]
    assert hsi["members"] == _index_members(store, "HSI") > 0 and hsi["haircut"] is None
    assert page.model.data(page.model.index(page.model.row_of(hsi["id"]), page.model.column_of("Haircut"))) == "none"
    assert page.select_record(hsi["id"])
    assert "none yet" in page.record_label.text()
    page.haircut_edit.setText("-0.2")
    page.reason_edit.setText("SFC review")
    assert "between 0 and 1" in page.validation.text() and not page.submit_button.isEnabled()
    page.haircut_edit.setText("0.15")
    assert page.submit_button.isEnabled(), page.validation.text()
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT), qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        page.submit_button.click()
    first = changes.get(store, int(sig.args[0]))
    assert (first.kind, first.op, first.target_key, first.after) == ("index_haircut", "insert",
                                                                   {"index_id": hsi["id"]}, {"haircut": 0.15})
    assert _rec(page, hsi["id"])["request"] == f"request #{first.id} pending → 0.15"
    assert [m["change"] for m in page.modification_records()] == ["none → 0.15"]
    dock.grab().save(str(tmp_path / "index_haircuts.png"))

    changes.approve(store, SAM, first.id)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    assert _rec(page, hsi["id"])["haircut"] == 0.15
    assert page.select_record(hsi["id"])
    page.haircut_edit.setText("0.2")
    page.reason_edit.setText("volatility up")
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT), qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        page.submit()
    second = changes.get(store, int(sig.args[0]))
    assert (second.op, second.before, second.after) == ("update", {"haircut": 0.15}, {"haircut": 0.2})
    changes.reject(store, SAM, second.id, "keep 0.15 until the review")
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    mods = page.modification_records()
    assert [(m["id"], m["status"], m["change"], m["checker"]) for m in mods] == [
        (second.id, "rejected", "0.15 → 0.2", "sam"), (first.id, "approved", "none → 0.15", "sam")]
    assert _rec(page, hsi["id"])["haircut"] == 0.15 and not _rec(page, hsi["id"])["request_id"]
