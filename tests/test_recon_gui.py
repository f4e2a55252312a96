"""The reconciliation dock on a real SQLite store: a counterparty file with its own column names mapped
in the dialog (OK refused until every column is mapped), the counts and breaks of RISK_METHODS §7
(tolerance, missing sides, ageing across Christmas), the mapping remembered for the source's next
file (an xlsx: no dialog), re-importing the same files idempotent, a bad file named, the aged view,
and a break assigned and resolved with its root cause (audited).

No sleeps: every wait is on a signal; the task runner is shut down after each test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select, text

from app.tasks import TaskRunner
from models import schema as S
from services.auth import User
from services.demo_store import seed_demo_governance
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, runner  # noqa: F401 (fixtures)
from widgets.recon_dock import ReconDock

OLGA = User("olga", "Olga", "operations")
WAIT = 8000
AS_OF = date(2026, 12, 29)  # Tue; 25 Dec a holiday, 26–27 a weekend
SOURCE = "Custodian ABC"
THEIR_COLUMNS = ["Acct Ref", "Sec", "Nominal"]  # none of them a name RiskDesk knows


@pytest.fixture
def rstore(sqlite_url: str) -> Iterator[Store]:
    st = Store(sqlite_url)
    st.migrate()
    seed_demo_governance(st)
    yield st
    st.dispose()


@pytest.fixture
def dock(qtbot: Any, rstore: Store, runner: TaskRunner) -> Iterator[ReconDock]:
    d = ReconDock()
    d.view_as_of = AS_OF
    qtbot.addWidget(d)
    d.resize(1300, 800)
    d.show()
    with qtbot.waitSignal(d.loaded, timeout=WAIT):
        d.set_context(rstore, OLGA, runner)
    yield d
    d.stop()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ours = tmp_path / "ours.csv"
    pd.DataFrame({"account": ["M1", "M1", "M2", "M3"], "code": ["700.HK", "5.HK", "700.HK", "1.HK"],
                  "qty": [1000, 500, 100, 10], "trade_date": ["", "", "", "2026-12-22"]}).to_csv(ours, index=False)
    theirs = tmp_path / "theirs.csv"
    pd.DataFrame({"Acct Ref": ["M1", "M1", "M2", "M5"], "Sec": ["700.HK", "5.HK", "700.HK", "3.HK"],
                  "Nominal": [1000, 499.5, 90, 4]}).to_csv(theirs, index=False)
    return {"ours": ours, "theirs": theirs}


def _first_import(qtbot: Any, dock: ReconDock, files: dict[str, Path]) -> Any:
    dock.source_box.setCurrentText(SOURCE)
    dock.as_of_edit.setDate(dock.as_of_edit.date().fromString(AS_OF.isoformat(), "yyyy-MM-dd"))
    dock.set_file("ours", str(files["ours"]))
    dock.set_file("theirs", str(files["theirs"]))
    with qtbot.waitSignal(dock.mapping_requested, timeout=WAIT) as asked:
        dock.reconcile()
    assert asked.args == ["theirs"]  # our file has our column names: no question about it
    dlg = dock.mapping_dialog
    assert dlg is not None and dlg.source == SOURCE and dlg.columns == THEIR_COLUMNS
    assert dlg.problems() == "account, code, qty: choose the file's column"
    dlg.set_choice("account", "Acct Ref")
    dlg.set_choice("code", "Acct Ref")
    dlg.set_choice("qty", "Nominal")
    assert dlg.problems() == "'Acct Ref' is chosen for both account and code"
    dlg.set_choice("code", "Sec")
    assert dlg.problems() == ""
    with qtbot.waitSignal(dock.reconciled, timeout=WAIT) as done, qtbot.waitSignal(dock.loaded, timeout=WAIT):
        dlg.accept()
    return done.args[0]


def _breaks(store: Store) -> list[dict[str, Any]]:
    with store.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(select(S.recon_breaks).order_by(S.recon_breaks.c.key))]


def test_import_with_a_column_mapping_counts_and_breaks(qtbot: Any, dock: ReconDock, rstore: Store,
                                                         files: dict[str, Path]) -> None:
    run = _first_import(qtbot, dock, files)
    # M1/700.HK exact, M1/5.HK 0.5 apart (within ±1: auto-resolved); M2 10 apart; M3 theirs missing; M5 ours
    assert (run.result.matched, run.result.auto_resolved, len(run.result.breaks)) == (2, 1, 3)
    assert dock.result.text() == "Import #1: 2 matched (1 auto-resolved within tolerance), 3 breaks"
    shown = {r["key"]: r for r in dock.breaks.model._records}
    assert set(shown) == {"M2/700.HK", "M3/1.HK", "M5/3.HK"} and dock.breaks.model.rowCount() == 3
    assert (shown["M2/700.HK"]["type"], shown["M2/700.HK"]["difference"]) == ("mismatch", 10.0)
    assert (shown["M5/3.HK"]["type"], shown["M5/3.HK"]["difference"]) == ("missing_ours", -4.0)
    # 22 Dec → 29 Dec: 23, 24, 28, 29 are business days (25 a holiday, 26–27 a weekend) → 4: warning
    assert (shown["M3/1.HK"]["age_days"], shown["M3/1.HK"]["escalation"]) == (4, "warning")
    assert (shown["M2/700.HK"]["age_days"], shown["M2/700.HK"]["escalation"]) == (0, "normal")
    col = dock.breaks.model.column_of("Escalation")
    row = dock.breaks.model.row_of(int(shown["M3/1.HK"]["id"]))
    assert dock.breaks.model.index(row, col).data() == "warning" and row == 0  # oldest first
    with rstore.begin() as conn:
        saved = conn.execute(select(S.recon_sources.c.mapping).where(
            S.recon_sources.c.name == SOURCE, S.recon_sources.c.kind == "position")).scalar()
    assert json.loads(str(saved)) == {"Acct Ref": "account", "Sec": "code", "Nominal": "qty"}


def test_mapping_remembered_for_the_source_next_file(qtbot: Any, dock: ReconDock, rstore: Store,
                                                     files: dict[str, Path], tmp_path: Path) -> None:
    _first_import(qtbot, dock, files)
    assert dock.source_box.findText(SOURCE) >= 0  # the saved source is offered
    nxt = tmp_path / "theirs-next.xlsx"  # their next file, as xlsx: M2 fixed
    pd.DataFrame({"Acct Ref": ["M1", "M1", "M2", "M5"], "Sec": ["700.HK", "5.HK", "700.HK", "3.HK"],
                  "Nominal": [1000, 500, 100, 4]}).to_excel(nxt, index=False)
    dock.set_file("theirs", str(nxt))
    asked: list[str] = []
    dock.mapping_requested.connect(asked.append)
    with qtbot.waitSignal(dock.reconciled, timeout=WAIT) as done, qtbot.waitSignal(dock.loaded, timeout=WAIT):
        dock.reconcile()
    assert asked == [] and done.args[0].new
    got = {b["key"]: b for b in _breaks(rstore)}
    assert got["M2/700.HK"]["status"] == "resolved" and got["M2/700.HK"]["resolution"] == "matched in import #2"
    assert got["M5/3.HK"]["status"] == "open"
    assert {r["key"] for r in dock.breaks.model._records if r["status"] != "resolved"} == {"M3/1.HK", "M5/3.HK"}
    assert dock.breaks.model.rowCount() == 2  # the Unresolved filter


def test_reimporting_the_same_files_is_idempotent(qtbot: Any, dock: ReconDock, rstore: Store,
                                                  files: dict[str, Path]) -> None:
    _first_import(qtbot, dock, files)
    before = _breaks(rstore)
    with qtbot.waitSignal(dock.reconciled, timeout=WAIT) as done, qtbot.waitSignal(dock.loaded, timeout=WAIT):
        dock.reconcile()
    assert not done.args[0].new
    assert dock.result.text() == "Already reconciled: these two files for 2026-12-29 are import #1; nothing changed"
    assert _breaks(rstore) == before
    with rstore.begin() as conn:
        assert conn.execute(text("select count(*) from recon_imports")).scalar() == 1


def test_bad_file_named_and_nothing_recorded(qtbot: Any, dock: ReconDock, rstore: Store, tmp_path: Path,
                                             files: dict[str, Path]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("account,code,qty\nM1,700.HK,1000\nM1,5.HK,five hundred\n")
    dock.source_box.setCurrentText("Broker X")
    dock.set_file("ours", str(files["ours"]))
    dock.set_file("theirs", str(bad))
    with qtbot.waitSignal(dock.failed, timeout=WAIT) as sig:
        dock.reconcile()
    assert sig.args[0] == "bad.csv row 3, column qty: 'five hundred' is not a number"
    assert dock.run_button.isEnabled() and not dock.progress.isVisible()
    with rstore.begin() as conn:
        assert conn.execute(text("select count(*) from recon_imports")).scalar() == 0
        assert conn.execute(text("select count(*) from recon_sources")).scalar() == 0  # a failed read saves nothing


def test_aged_view_and_resolving_a_break_with_its_root_cause(qtbot: Any, dock: ReconDock, rstore: Store,
                                                             files: dict[str, Path]) -> None:
    _first_import(qtbot, dock, files)
    aged = dock.aged
    assert [r["key"] for r in aged.model._records if aged.model.row_of(int(r["id"])) >= 0] == ["M3/1.HK"]
    aged.age_box.setCurrentIndex(3)  # critical only: 6+ business days
    assert aged.model.rowCount() == 0
    aged.age_box.setCurrentIndex(0)
    assert aged.model.rowCount() == 3
    dock.tabs.setCurrentWidget(dock.breaks)
    target = next(r for r in dock.breaks.model._records if r["key"] == "M2/700.HK")
    assert dock.breaks.select_id(int(target["id"]))
    acts = dock.break_actions
    acts.assignee_box.setCurrentText("olga")
    with qtbot.waitSignal(dock.loaded, timeout=WAIT):
        acts.assign_button.click()
    assert dock.breaks.select_id(int(target["id"]))
    assert not acts.resolve_button.isEnabled()  # no root cause yet
    acts.root_cause_edit.setText("custodian booked a partial fill twice")
    acts.resolution_edit.setText("custodian corrected on 29 Dec")
    assert acts.resolve_button.isEnabled()
    with qtbot.waitSignal(dock.loaded, timeout=WAIT):
        acts.resolve_button.click()
    got = {b["key"]: b for b in _breaks(rstore)}["M2/700.HK"]
    assert (got["status"], got["assignee"], got["root_cause"], got["resolved_by"]) == (
        "resolved", "olga", "custodian booked a partial fill twice", "olga")
    assert dock.breaks.model.row_of(int(target["id"])) == -1  # gone from Unresolved
    dock.breaks.status_box.setCurrentIndex(4)  # Resolved
    assert dock.breaks.model.rowCount() == 1
    with rstore.begin() as conn:
        actions = [r[0] for r in conn.execute(text(
            "select action from audit_log where entity = 'recon_breaks' order by id"))]
    assert actions == ["assigned", "resolved"]


def test_postgres_import_mapping_reuse_idempotence_and_resolve(pg_url: str, files: dict[str, Path],
                                                               tmp_path: Path) -> None:
    from services import breaks, recon_sources

    st = Store(pg_url)
    st.migrate()
    try:
        cols = recon_sources.file_columns(files["theirs"])
        assert recon_sources.guess_mapping(cols, "position") == {}  # nothing it could guess
        m_theirs = {"Acct Ref": "account", "Sec": "code", "Nominal": "qty"}
        m_ours = recon_sources.guess_mapping(recon_sources.file_columns(files["ours"]), "position")
        assert m_ours == {"account": "account", "code": "code", "qty": "qty", "trade_date": "trade_date"}
        run = recon_sources.run_import(st, "olga", "position", SOURCE, str(files["ours"]), str(files["theirs"]),
                                       AS_OF, m_ours, m_theirs)
        assert (run.new, run.result.matched, run.result.auto_resolved, len(run.result.breaks)) == (True, 2, 1, 3)
        info = recon_sources.inspect_files(st, "position", SOURCE, str(files["ours"]), str(files["theirs"]))
        assert info["theirs"]["mapping"] == m_theirs and info["theirs"]["missing"] == [] and info["theirs"]["saved"]
        again = recon_sources.run_import(st, "olga", "position", SOURCE, str(files["ours"]), str(files["theirs"]),
                                         AS_OF, m_ours, m_theirs)
        assert (again.new, again.import_id) == (False, run.import_id)
        view = recon_sources.load_view(st, AS_OF)
        assert len(view.breaks) == 3 and view.sources["position"] == [SOURCE]
        aged = next(b for b in view.breaks if b["key"] == "M3/1.HK")
        assert (aged["age_days"], aged["escalation"]) == (4, "warning")
        breaks.resolve(st, int(aged["id"]), "olga", "stale holding file", "")
        assert {b["key"] for b in recon_sources.load_view(st, AS_OF).breaks if b["status"] != "resolved"} == {
            "M2/700.HK", "M5/3.HK"}
    finally:
        st.dispose()
