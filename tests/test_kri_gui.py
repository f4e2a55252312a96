"""The KRI dashboard dock on a real SQLite store with known readings: tile colours and trend arrows
(amber for six business days shown red), the threshold bands of the chart, the drill-down rows behind
a computed value, commentary required for amber / red (entry form and commentary form), an import
with its bad rows named, and a threshold edit going out as a change request.

No sleeps: every wait is on a signal; the task runner is shut down after each test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select, text

from app.tasks import TaskRunner
from models import schema as S
from services import kri
from services.auth import User
from services.demo_store import seed_demo_governance
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, runner  # noqa: F401 (fixtures)
from widgets.kri_dashboard import KriDashboard
from widgets.kri_tiles import RAG, arrow_colour

RITA = User("rita", "Rita", "risk_officer")
WAIT = 8000
END = date(2026, 12, 29)  # Tue; 25 Dec holiday, 26–27 weekend


def _bdays(n: int) -> list[date]:
    d = np.busday_offset(np.datetime64(END, "D"), np.arange(-(n - 1), 1), roll="backward",
                         holidays=kri._holidays())
    return d.astype(date).tolist()  # type: ignore[no-any-return]


def _readings(store: Store, code: str, values: list[float]) -> None:
    days = _bdays(len(values))
    with store.begin() as conn:
        conn.execute(insert(S.kri_readings), [{"kri_code": code, "day": d, "value": v, "source": "entered",
                                               "entered_by": "test", "comment": ""} for d, v in zip(days, values, strict=True)])


@pytest.fixture
def kstore(sqlite_url: str) -> Iterator[Store]:
    st = Store(sqlite_url)
    st.migrate()
    seed_demo_governance(st)
    _readings(st, "NIGO_RATE", [1.0, 1.5, 5.5])  # higher is worse, amber 2, red 5: red, up
    _readings(st, "STP_RATE", [97.0, 96.0])  # lower is worse, amber 95, red 90: green, down (worse)
    _readings(st, "SETTLE_FAIL", [0.5] + [2.0] * 6)  # amber 1, red 3: amber six business days → red
    _readings(st, "CANCEL_CORRECT", [1.2, 1.2])  # flat
    _readings(st, "SYSTEM_AVAILABILITY", [99.92, 99.95])  # lower is worse: up is better
    with st.begin() as conn:
        now = datetime(2026, 12, 28, 9, 0, tzinfo=UTC)
        conn.execute(insert(S.incidents), [
            {"title": "Feed outage", "detected_by": "olga", "detected_at": now, "state": "contain",
             "severity": 2, "created_by": "olga"},
            {"title": "Wrong price file", "detected_by": "olga", "detected_at": now, "state": "triage",
             "severity": 3, "created_by": "olga"},
            {"title": "Old printer fire", "detected_by": "olga", "detected_at": now, "state": "closed",
             "severity": 4, "created_by": "olga"}])
    yield st
    st.dispose()


@pytest.fixture
def dash(qtbot: Any, kstore: Store, runner: TaskRunner) -> Iterator[KriDashboard]:
    d = KriDashboard()
    qtbot.addWidget(d)
    d.resize(1400, 800)
    d.show()
    with qtbot.waitSignal(d.populated, timeout=WAIT), qtbot.waitSignal(d.drilled, timeout=WAIT):
        d.set_context(kstore, RITA, runner)
    yield d
    d.stop()


def test_tiles_show_colour_and_trend_arrow_of_known_readings(dash: KriDashboard) -> None:
    tiles = dash.tiles.tiles
    assert len(tiles) == 12
    nigo, stp, fail = tiles["NIGO_RATE"], tiles["STP_RATE"], tiles["SETTLE_FAIL"]
    assert (nigo.colour, nigo.arrow) == ("red", "↑")
    assert "5.50%" in nigo.value.text() and "RED" in nigo.status.text()
    assert (stp.colour, stp.arrow) == ("green", "↓")
    assert (fail.colour, fail.arrow) == ("red", "→")  # amber for 6 business days across Christmas: shown red
    assert "AMBER 6 business days → shown RED" in fail.status.text()
    assert (tiles["CANCEL_CORRECT"].colour, tiles["CANCEL_CORRECT"].arrow) == ("green", "→")
    assert tiles["TRADE_ERROR_RATE"].value.text() == "no reading" and tiles["TRADE_ERROR_RATE"].colour == ""
    assert dash.data is not None
    # an arrow is red when the move is in the KRI's worse direction
    by = dash.data.by_code
    assert arrow_colour(by["NIGO_RATE"]) == RAG["red"]  # higher is worse, up
    assert arrow_colour(by["STP_RATE"]) == RAG["red"]  # lower is worse, down
    assert arrow_colour(by["SYSTEM_AVAILABILITY"]) == RAG["green"]  # lower is worse, up
    assert dash.data.counts()["red"] == 2 and dash.data.counts()["green"] == 3
    assert "2 red" in dash.summary.text() and "3 green" in dash.summary.text()
    assert dash.tiles.current == "NIGO_RATE"  # the worst KRI is selected first (red, by code)


def test_chart_draws_last_readings_over_threshold_bands(qtbot: Any, dash: KriDashboard) -> None:
    ch = dash.chart
    assert ch.code == "NIGO_RATE"
    lo, hi = ch.bands["green"][0], ch.bands["red"][1]
    assert ch.bands["green"] == (lo, 2.0) and ch.bands["amber"] == (2.0, 5.0) and ch.bands["red"] == (5.0, hi)
    assert lo < 1.0 and hi > 5.5  # every reading inside the plotted range
    with qtbot.waitSignal(dash.drilled, timeout=WAIT):
        dash.tiles.tiles["STP_RATE"].clicked.emit("STP_RATE")
    assert ch.code == "STP_RATE"
    assert ch.bands["red"][1] == 90.0 and ch.bands["amber"] == (90.0, 95.0) and ch.bands["green"][0] == 95.0


def test_drill_down_lists_the_records_behind_a_computed_value(qtbot: Any, dash: KriDashboard,
                                                              kstore: Store) -> None:
    with qtbot.waitSignal(dash.drilled, timeout=WAIT):
        dash.select("OPEN_INCIDENTS")
    recs = dash.drill.records
    assert sorted(r["title"] for r in recs) == ["Feed outage", "Wrong price file"]  # the closed one is not counted
    assert dash.drill.model.rowCount() == 2
    col = dash.drill.model.column_of("Title")
    shown = {dash.drill.model.index(r, col).data() for r in range(2)}
    assert shown == {"Feed outage", "Wrong price file"}
    assert dash.drill.caption.text().startswith("OPEN_INCIDENTS: 2 —")
    # an entered KRI: its readings, newest first, each with its colour
    with qtbot.waitSignal(dash.drilled, timeout=WAIT):
        dash.select("SETTLE_FAIL")
    assert [r["colour"] for r in dash.drill.records] == ["amber"] * 6 + ["green"]
    assert dash.drill.records[0]["day"] == END
    # a stored reading that no longer matches the records says so
    _readings(kstore, "OPEN_INCIDENTS", [5.0])
    with qtbot.waitSignal(dash.populated, timeout=WAIT):
        dash.refresh()
    with qtbot.waitSignal(dash.drilled, timeout=WAIT):
        dash.select("OPEN_INCIDENTS")
    assert "the last stored reading is 5 (2026-12-29)" in dash.drill.caption.text()


def test_commentary_required_for_red_and_saved(qtbot: Any, dash: KriDashboard, kstore: Store) -> None:
    form = dash.commentary
    assert form.status is not None and form.status.code == "NIGO_RATE"
    assert "commentary needed" in dash.tiles.tiles["NIGO_RATE"].status.text()
    assert not form.save_button.isEnabled() and "required" in form.hint.text()
    form.text.setPlainText("   ")
    assert not form.save_button.isEnabled()
    form.text.setPlainText("Broker portal outage; orders re-keyed. Fix deployed 29 Dec.")
    assert form.save_button.isEnabled()
    with qtbot.waitSignal(dash.populated, timeout=WAIT):
        form.save_button.click()
    with kstore.begin() as conn:
        got = conn.execute(select(S.kri_readings.c.comment).where(
            S.kri_readings.c.kri_code == "NIGO_RATE", S.kri_readings.c.day == END)).scalar()
    assert got == "Broker portal outage; orders re-keyed. Fix deployed 29 Dec."
    assert "commentary needed" not in dash.tiles.tiles["NIGO_RATE"].status.text()
    # a green KRI takes no commentary
    with qtbot.waitSignal(dash.drilled, timeout=WAIT):
        dash.select("STP_RATE")
    assert not form.text.isEnabled() and not form.save_button.isEnabled()


def test_entering_an_amber_reading_needs_commentary_and_opens_an_investigation(
        qtbot: Any, dash: KriDashboard, kstore: Store) -> None:
    form = dash.reading
    form.select("STP_RATE")
    form.day_edit.setDate(form.day_edit.date().fromString("2026-12-30", "yyyy-MM-dd"))
    form.value_edit.setText("abc")
    assert not form.save_button.isEnabled() and "Value: 'abc' is not a number" in form.validation.text()
    form.value_edit.setText("94.5")  # lower is worse: amber at 95 and below
    assert not form.save_button.isEnabled()
    assert form.validation.text() == "Commentary: required for an amber reading (94.5)"
    assert "AMBER" in form.preview.text()
    form.comment_edit.setText("month-end volume, manual bookings")
    assert form.save_button.isEnabled()
    with qtbot.waitSignal(dash.populated, timeout=WAIT):
        form.save_button.click()
    assert "stored (amber); 1 task(s) opened" in form.message.text()
    with kstore.begin() as conn:
        r = conn.execute(select(S.kri_readings).where(S.kri_readings.c.kri_code == "STP_RATE",
                                                      S.kri_readings.c.day == date(2026, 12, 30))).one()
    assert (r.value, r.comment, r.entered_by) == (94.5, "month-end volume, manual bookings", "rita")
    assert dash.tiles.tiles["STP_RATE"].colour == "amber"
    assert [(t["kri_code"], t["kind"]) for t in dash.task_list.model._records
            if t["kri_code"] == "STP_RATE"] == [("STP_RATE", "investigation")]
    assert dash.tabs.tabText(2).startswith("Tasks (")


def test_import_names_bad_rows_and_stores_nothing(qtbot: Any, dash: KriDashboard, kstore: Store,
                                                  tmp_path: Path) -> None:
    bad = tmp_path / "readings.csv"
    bad.write_text("kri_code,day,value\nSTP_RATE,2026-12-30,96\nSTP_RATE,30/12/2026,97\nNOPE,2026-12-30,1\n")
    with qtbot.waitSignal(dash.reading.failed, timeout=WAIT) as sig:
        dash.reading.import_file(str(bad))
    assert "row 3: day '30/12/2026' is not a date" in sig.args[0] and "row 4: unknown KRI 'NOPE'" in sig.args[0]
    with kstore.begin() as conn:
        assert conn.execute(text("select count(*) from kri_readings where day = '2026-12-30'")).scalar() == 0
    good = tmp_path / "good.csv"
    good.write_text("kri_code,day,value\nSTP_RATE,2026-12-30,96\nNIGO_RATE,2026-12-30,1.5\n")
    with qtbot.waitSignal(dash.populated, timeout=WAIT):
        dash.reading.import_file(str(good))
    assert "good.csv: 2 readings imported" in dash.reading.message.text()
    assert dash.tiles.tiles["NIGO_RATE"].colour == "green" and dash.tiles.tiles["NIGO_RATE"].arrow == "↓"


def test_threshold_edit_is_a_change_request(qtbot: Any, dash: KriDashboard, kstore: Store) -> None:
    form = dash.thresholds
    assert form.status is not None and form.status.code == "NIGO_RATE"
    form.amber_edit.setText("6")
    assert "red (5) must be above amber (6)" in form.validation.text() and not form.submit_button.isEnabled()
    form.amber_edit.setText("2.5")
    assert form.validation.text().startswith("Reason") and not form.submit_button.isEnabled()
    form.reason_edit.setText("new order-entry system cuts NIGO")
    assert form.submit_button.isEnabled()
    with qtbot.waitSignal(dash.submitted, timeout=WAIT) as sig, qtbot.waitSignal(dash.populated, timeout=WAIT):
        form.submit_button.click()
    with kstore.begin() as conn:
        req = conn.execute(select(S.change_requests).where(S.change_requests.c.id == sig.args[0])).one()
        amber = conn.execute(select(S.kris.c.amber).where(S.kris.c.code == "NIGO_RATE")).scalar()
    assert (req.kind, req.status, req.maker) == ("kri", "pending", "rita") and json.loads(req.after) == {"amber": 2.5, "red": 5.0}
    assert amber == 2.0  # nothing applied before a checker approves
    assert f"request #{sig.args[0]} pending" in dash.tiles.tiles["NIGO_RATE"].status.text()
    assert not form.submit_button.isEnabled()  # one request at a time per KRI


def test_postgres_dashboard_load_in_one_read(pg_url: str) -> None:
    from services.kri_dashboard import drill_records, load_dashboard

    st = Store(pg_url)
    st.migrate()
    try:
        _readings(st, "NIGO_RATE", [1.0, 1.5, 5.5])
        _readings(st, "SETTLE_FAIL", [0.5] + [2.0] * 6)
        kri.sync_tasks(st, "test")
        data = load_dashboard(st, RITA)
        assert data.readings == 10 and len(data.statuses) == 12
        nigo, fail = data.by_code["NIGO_RATE"], data.by_code["SETTLE_FAIL"]
        assert (nigo.colour, nigo.arrow, fail.colour, fail.escalated) == ("red", "↑", "red", True)
        assert sorted((t["kri_code"], t["kind"]) for t in data.tasks) == [
            ("NIGO_RATE", "cro_escalation"), ("SETTLE_FAIL", "cro_escalation")]
        value, recs = drill_records(st, "SETTLE_FAIL")
        assert value == 2.0 and [r["colour"] for r in recs] == ["amber"] * 6 + ["green"]
    finally:
        st.dispose()
