"""The haircuts dock on a real SQLite demo store: a haircut outside [0, 1] refused inline with nothing
submitted, and a valid change going through four eyes into the book.

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
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.haircuts_dock import HaircutsDock, validate_haircut

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
    shown = dock.visible_records()
    assert len(shown) == len(book.sec_codes)
    assert all(r["haircut"] is not None for r in shown)
    code = shown[0]["code"]
    dock.search.setText(code)
    assert dock.visible_records() and all(code.lower() in (r["code"] + r["name"]).lower()
                                          for r in dock.visible_records())


def test_bad_haircut_refused_inline(dock: HaircutsDock, store: Store) -> None:
    before = _requests(store)
    assert dock.select_record(dock.visible_records()[0]["id"])
    dock.haircut_edit.setText("1.5")
    dock.reason_edit.setText("desk review")
    assert not dock.submit_button.isEnabled()
    assert "between 0 and 1" in dock.validation.text() and dock.validation.isVisibleTo(dock)
    dock.submit()
    assert "between 0 and 1" in dock.validation.text()
    assert dock._submit_task is None and _requests(store) == before


def test_haircut_change_through_four_eyes(qtbot: Any, dock: HaircutsDock, store: Store, tmp_path: Path) -> None:
    rec = dock.visible_records()[3]
    new = 0.35 if abs((rec["haircut"] or 0) - 0.35) > 1e-9 else 0.4
    assert dock.select_record(rec["id"])
    dock.haircut_edit.setText(f"{new}")
    dock.reason_edit.setText("volatility review")
    assert dock.submit_button.isEnabled()
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT), qtbot.waitSignal(dock.submitted, timeout=WAIT) as sig:
        dock.submit()
    rid = int(sig.args[0])
    req = changes.get(store, rid)
    assert (req.status, req.op, req.target_key, req.after) == ("pending", "update", {"security_id": rec["id"]},
                                                                {"haircut": new})
    assert dock.model.record(rec["id"])["request"].startswith(f"request #{rid} pending")
    assert dock.select_record(rec["id"])
    dock.haircut_edit.setText("0.5")
    assert "already has request" in dock.validation.text() and not dock.submit_button.isEnabled()
    dock.haircut_edit.clear()
    dock.grab().save(str(tmp_path / "haircuts.png"))

    changes.approve(store, SAM, rid)
    book = store.load_book()
    i = list(book.sec_codes).index(rec["code"])
    assert book.haircut[i] == pytest.approx(new)
    with qtbot.waitSignal(dock.refreshed, timeout=WAIT):
        dock.refresh()
    after = dock.model.record(rec["id"])
    assert after["haircut"] == pytest.approx(new) and not after["request_id"]
