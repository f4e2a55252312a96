"""The "Trading sessions" tab of the Margin requirements dock on a real SQLite demo store: the seeded
sessions listed, bad sessions refused inline with the problem named and nothing submitted, a new
session and a disable going through four eyes.

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
from widgets.margin_settings_dock import MarginSettingsDock
from widgets.sessions_panel import SessionsPanel

RITA, SAM = User("rita", "Rita", "risk_officer"), User("sam", "Sam", "supervisor")
WAIT = 5000


@pytest.fixture
def dock(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[MarginSettingsDock]:
    d = MarginSettingsDock()
    qtbot.addWidget(d)
    with qtbot.waitSignal(d.sessions.refreshed, timeout=WAIT):
        d.set_context(store, RITA, runner)
    d.resize(1400, 760)
    d.tabs.setCurrentWidget(d.sessions)
    d.show()
    yield d
    d.stop()


def _requests(store: Store) -> int:
    with store.begin() as conn:
        return int(conn.execute(text("select count(*) from change_requests where kind = 'trading_session'"))
                   .scalar() or 0)


def _fill(p: SessionsPanel, name: str, start: str, end: str, reason: str = "desk review") -> None:
    p.market_edit.setText("HK")
    p.name_edit.setText(name)
    p.start_edit.setText(start)
    p.end_edit.setText(end)
    p.reason_edit.setText(reason)


def test_lists_seeded_sessions(dock: MarginSettingsDock) -> None:
    p = dock.sessions
    assert [(r["name"], r["start"], r["end"], r["intraday"], r["enabled"]) for r in p.visible_records()] == [
        ("Morning", "09:30", "12:00", "yes", "enabled"), ("Afternoon", "13:00", "16:00", "yes", "enabled"),
        ("Closing auction", "16:00", "16:10", "no", "enabled")]
    assert p.now_label.text().startswith("Intraday ratios")
    assert dock.tabs.tabText(1) == "Trading sessions"


def test_bad_sessions_refused_inline(dock: MarginSettingsDock, store: Store) -> None:
    p = dock.sessions
    for args, why in ((("Lunch", "12:00", "noon"), "The end “noon” is not a time"),
                      (("Lunch", "12:75", "13:00"), "not a time of day"),
                      (("Lunch", "13:00", "12:00"), "must be before the end"),
                      (("Late", "11:30", "12:30"), "overlaps HK Morning (09:30–12:00)"),
                      (("Morning", "12:00", "13:00"), "already has a session named “Morning”")):
        _fill(p, *args)
        assert not p.submit_button.isEnabled()
        assert why in p.validation.text() and p.validation.isVisibleTo(dock), p.validation.text()
        p.submit()  # Enter in the reason box: refused the same way
        assert why in p.validation.text()
    assert p._submit_task is None and _requests(store) == 0


def test_new_session_and_disable_through_four_eyes(qtbot: Any, dock: MarginSettingsDock, store: Store,
                                                   tmp_path: Path) -> None:
    p = dock.sessions
    _fill(p, "Lunch", "12:00", "13:00", "finance through the lunch break")
    assert p.submit_button.isEnabled(), p.validation.text()
    with qtbot.waitSignal(p.submitted, timeout=WAIT) as sig, qtbot.waitSignal(p.refreshed, timeout=WAIT):
        p.submit_button.click()
    rid = int(sig.args[0])
    req = changes.get(store, rid)
    assert (req.kind, req.op, req.after["start_hhmm"], req.after["end_hhmm"]) == ("trading_session", "insert",
                                                                                 1200, 1300)
    assert f"request #{rid} submitted — awaiting approval" in p.message.text()
    new_id = int(req.target_key["id"])
    proposed = p.model.record(new_id)
    assert proposed is not None and proposed["request"] == f"request #{rid} pending (new session)"
    dock.grab().save(str(tmp_path / "sessions.png"))
    changes.approve(store, SAM, rid)
    with qtbot.waitSignal(p.refreshed, timeout=WAIT):
        p.refresh()
    lunch = p.model.record(new_id)
    assert lunch is not None and lunch["request"] == "" and lunch["start"] == "12:00"

    assert p.select_record(1)  # Morning: the form loads it, and nothing changed yet
    assert p.name_edit.text() == "Morning" and p.start_edit.text() == "09:30"
    assert "Edit session — HK Morning" in p.form_title.text()
    assert "Nothing to change" in p.validation.text() and p.toggle_button.text() == "&Disable"
    p.reason_edit.setText("no morning financing this week")
    with qtbot.waitSignal(p.submitted, timeout=WAIT) as sig, qtbot.waitSignal(p.refreshed, timeout=WAIT):
        p.toggle_button.click()
    off = changes.get(store, int(sig.args[0]))
    assert (off.target_key, off.after) == ({"id": 1}, {"enabled": False})
    assert not p.toggle_button.isEnabled()  # one request at a time on a session
    changes.approve(store, SAM, off.id)
    with qtbot.waitSignal(p.refreshed, timeout=WAIT):
        p.refresh()
    assert p.model.record(1)["enabled"] == "disabled"  # type: ignore[index]
    assert p.select_record(1) and p.toggle_button.text() == "&Enable"
