"""Every dock table's column chooser and "Export view to Excel…", read back with openpyxl.

No sleeps: exports are waited for on the `exported` signal, then the worker is joined so no thread
outlives a test. Dialogs go to a non-interactive service the tests answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openpyxl import load_workbook
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTableView, QVBoxLayout, QWidget

from app.dialogs import DialogService, set_dialogs
from app.tasks import TaskRunner
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, runner  # noqa: F401 (fixtures)
from widgets.records import Field, RecordTableModel
from widgets.table_export import ExportColumn, cells
from widgets.table_tools import EXPORT_TEXT, ExportJob, export_view, hidden_columns, table_settings, tools_of
from widgets.tables import make_table

WAIT = 10_000
HOSTILE = "=cmd|' /C calc'!A0"
FIELDS = [Field("Account", "code"), Field("Client name", "name"), Field("Loan", "loan", "number"),
          Field("Qty", "qty", "number", fmt=lambda v: "" if v != v else f"{int(v):,}"),
          Field("Usage", "usage", "number", fmt=lambda v: "" if v != v else ("no limit" if math.isinf(v)
                                                                             else f"{v * 100:.1f}%")),
          Field("Created", "created", "time"), Field("Remark", "remark")]
RECORDS = [
    {"id": 1, "code": "A001", "name": "Alpha Ltd", "loan": 1_500_000.5, "qty": 100, "usage": 0.25,
     "created": "2026-01-05T02:00:00", "remark": "ok"},
    {"id": 2, "code": "B002", "name": "Beta Corp", "loan": 250.0, "qty": None, "usage": math.inf,
     "created": "2026-01-06T03:30:00", "remark": HOSTILE},
    {"id": 3, "code": "C003", "name": "Gamma Alpha", "loan": 9_000_000.0, "qty": 3000, "usage": 1.5,
     "created": None, "remark": "+44 follow up"},
    {"id": 4, "code": "D004", "name": "Delta", "loan": None, "qty": 7, "usage": 0.0,
     "created": "2026-02-01T09:00:00", "remark": ""},
    {"id": 5, "code": "E005", "name": "Epsilon Alpha", "loan": -42.0, "qty": 1, "usage": 0.9,
     "created": "2026-02-02T09:00:00", "remark": "@home"},
]


_OWNERS: list[QWidget] = []  # the widgets `_table` made, released on the GUI thread after each test


@pytest.fixture(autouse=True)
def _release_owners() -> Iterator[None]:
    yield
    _OWNERS.clear()


@pytest.fixture(autouse=True)
def answered_dialogs() -> Iterator[DialogService]:
    service = DialogService(interactive=False)
    set_dialogs(service)
    yield service
    set_dialogs(None)


def _table(qtbot: Any, parent: QWidget | None = None, fields: list[Field] = FIELDS
           ) -> tuple[RecordTableModel, QTableView]:
    """A table as a dock makes it: model and view owned by a widget, so neither is ever destroyed
    by a garbage collection that happens to run in an export's worker thread."""
    if parent is None:
        parent = QWidget()
        parent.setLayout(QVBoxLayout())
        qtbot.addWidget(parent)
        _OWNERS.append(parent)
    model = RecordTableModel(fields, parent)
    model.set_records(RECORDS)
    view = make_table(model)
    layout = parent.layout()
    assert layout is not None
    layout.addWidget(view)
    return model, view


def _export(qtbot: Any, view: QTableView, path: Path) -> list[list[Any]]:
    tools = tools_of(view)
    assert tools is not None
    with qtbot.waitSignal(tools.exported, timeout=WAIT) as blocker:
        job = export_view(view, path)
        assert isinstance(job, ExportJob)
    assert job.wait(5.0)
    assert blocker.args == [str(path), job.rows]
    return _read(path)


def _read(path: Path) -> list[list[Any]]:
    wb = load_workbook(path)
    rows = [list(r) for r in wb.active.iter_rows(values_only=True)]
    wb.close()
    return rows


def _displayed(model: RecordTableModel, view: QTableView) -> list[list[str]]:
    header = view.horizontalHeader()
    cols = [header.logicalIndex(v) for v in range(header.count())]
    cols = [c for c in cols if not header.isSectionHidden(c)]
    return [[model.data(model.index(r, c)) for c in cols] for r in range(model.rowCount())]


def test_every_table_made_by_make_table_has_the_chooser_and_the_export(qtbot: Any) -> None:
    model, view = _table(qtbot)
    tools = tools_of(view)
    assert tools is not None
    assert view.objectName().startswith("RecordTableModel_")
    assert tools.export_action in view.actions()
    assert tools.export_action.text() == EXPORT_TEXT
    assert tools.export_action.shortcut() == QKeySequence("Ctrl+Shift+E")
    assert view.contextMenuPolicy() == Qt.ContextMenuPolicy.ActionsContextMenu
    assert view.horizontalHeader().contextMenuPolicy() == Qt.ContextMenuPolicy.CustomContextMenu
    _other_model, other = _table(qtbot, fields=FIELDS[:3])
    assert other.objectName() != view.objectName()  # same class, other columns: other settings


def test_hidden_column_is_absent_and_the_visual_order_is_kept(qtbot: Any, tmp_path: Path) -> None:
    model, view = _table(qtbot)
    tools = tools_of(view)
    assert tools is not None
    assert tools.set_column_hidden(model.column_of("Client name"), True)
    view.horizontalHeader().moveSection(model.column_of("Remark"), 0)  # the user dragged Remark first
    rows = _export(qtbot, view, tmp_path / "hidden.xlsx")
    assert rows[0] == ["Remark", "Account", "Loan", "Qty", "Usage", "Created"]
    assert "Client name" not in rows[0]
    assert len(rows) == 1 + len(RECORDS)


def test_sorted_descending_and_filtered_rows_as_shown_numbers_as_numbers(qtbot: Any, tmp_path: Path) -> None:
    model, view = _table(qtbot)
    view.sortByColumn(model.column_of("Loan"), Qt.SortOrder.DescendingOrder)
    names = np.array([str(r["name"]).lower() for r in RECORDS])
    model.set_filter(lambda keys: np.char.find(names[keys - 1], "alpha") >= 0)  # the search box
    shown = _displayed(model, view)
    rows = _export(qtbot, view, tmp_path / "sorted.xlsx")
    assert rows[0] == [f.header for f in FIELDS]
    body = rows[1:]
    assert [r[0] for r in body] == ["C003", "A001", "E005"]  # loan 9,000,000 > 1,500,000.5 > -42
    assert [r[0] for r in body] == [s[0] for s in shown]
    loan, qty, usage, created = (model.column_of(h) for h in ("Loan", "Qty", "Usage", "Created"))
    assert [r[loan] for r in body] == [9_000_000.0, 1_500_000.5, -42.0]
    assert all(type(r[c]) in (int, float) for r in body for c in (loan, qty, usage))  # numbers, not texts
    assert [r[qty] for r in body] == [3000, 100, 1]
    assert [r[usage] for r in body] == [1.5, 0.25, 0.9]  # the raw value, shown as 150.0 %
    assert [r[created] for r in body] == [s[created] or None for s in shown]  # Hong Kong time as shown
    assert body[1][created] == "2026-01-05 10:00"

    wb = load_workbook(tmp_path / "sorted.xlsx")
    assert wb.active.cell(2, loan + 1).data_type == "n"
    assert wb.active.auto_filter.ref == "A1:G4"
    wb.close()


def test_blanks_and_non_finite_numbers_read_as_the_view_shows_them(qtbot: Any, tmp_path: Path) -> None:
    model, view = _table(qtbot)
    view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    rows = _export(qtbot, view, tmp_path / "blanks.xlsx")
    by_code = {r[0]: r for r in rows[1:]}
    assert by_code["B002"][model.column_of("Qty")] is None  # NaN shows blank
    assert by_code["B002"][model.column_of("Usage")] == "no limit"  # inf shows a word
    assert by_code["D004"][model.column_of("Loan")] is None
    assert by_code["C003"][model.column_of("Created")] is None


def test_hostile_text_is_stored_as_text(qtbot: Any, tmp_path: Path) -> None:
    model, view = _table(qtbot)
    view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    _export(qtbot, view, tmp_path / "hostile.xlsx")
    wb = load_workbook(tmp_path / "hostile.xlsx")
    ws = wb.active
    remark = model.column_of("Remark") + 1
    cells_by_code = {ws.cell(r, 1).value: ws.cell(r, remark) for r in range(2, ws.max_row + 1)}
    assert cells_by_code["B002"].value == "'" + HOSTILE and cells_by_code["B002"].data_type == "s"
    assert cells_by_code["C003"].value == "'+44 follow up"
    assert cells_by_code["E005"].value == "'@home"
    assert not any(c.data_type == "f" for row in ws.iter_rows() for c in row)
    wb.close()


def test_hidden_columns_survive_recreating_the_view(qtbot: Any) -> None:
    model, view = _table(qtbot)
    tools = tools_of(view)
    assert tools is not None
    menu = tools.column_menu()
    actions = {a.text(): a for a in menu.actions()}
    assert [a.text() for a in menu.actions() if a.isCheckable()] == [f.header for f in FIELDS]
    actions["Qty"].setChecked(False)  # the user unticks Qty and Remark in the header menu
    actions["Remark"].setChecked(False)
    menu.deleteLater()
    assert view.isColumnHidden(model.column_of("Qty")) and view.isColumnHidden(model.column_of("Remark"))
    name = view.objectName()
    owner = view.parentWidget()
    assert owner is not None
    owner.close()
    owner.deleteLater()

    model2, view2 = _table(qtbot)
    assert view2.objectName() == name
    assert hidden_columns(view2) == ["Qty", "Remark"]
    assert view2.isColumnHidden(model2.column_of("Qty")) and view2.isColumnHidden(model2.column_of("Remark"))
    assert not view2.isColumnHidden(model2.column_of("Loan"))

    tools2 = tools_of(view2)
    assert tools2 is not None
    menu2 = tools2.column_menu()
    show_all = next(a for a in menu2.actions() if a.text() == "Show all columns")
    assert show_all.isEnabled()
    show_all.trigger()
    menu2.deleteLater()
    _model3, view3 = _table(qtbot)
    assert hidden_columns(view3) == [] and not any(view3.isColumnHidden(c) for c in range(len(FIELDS)))


def test_the_last_visible_column_cannot_be_hidden(qtbot: Any) -> None:
    model, view = _table(qtbot)
    tools = tools_of(view)
    assert tools is not None
    for c in range(1, len(FIELDS)):
        assert tools.set_column_hidden(c, True)
    assert not tools.set_column_hidden(0, True)
    assert not view.isColumnHidden(0)
    menu = tools.column_menu()
    first = menu.actions()[0]
    assert first.text() == "Account" and first.isChecked() and not first.isEnabled()
    menu.deleteLater()


def test_export_runs_in_the_docks_task_runner(qtbot: Any, tmp_path: Path,
                                              runner: TaskRunner) -> None:  # noqa: F811 (fixture)
    dock = QWidget()
    dock.setLayout(QVBoxLayout())
    dock.tasks = runner  # type: ignore[attr-defined]  # what the editor docks expose after login
    qtbot.addWidget(dock)
    _model, view = _table(qtbot, dock)
    tools = tools_of(view)
    assert tools is not None
    with qtbot.waitSignal(tools.exported, timeout=WAIT):
        job = export_view(view, tmp_path / "runner.xlsx")
        assert job is not None and job.task is not None and job.thread is None
    assert job.wait(5.0)
    assert len(_read(tmp_path / "runner.xlsx")) == 1 + len(RECORDS)


def test_a_failed_export_is_a_message_not_a_traceback(qtbot: Any, tmp_path: Path,
                                                      answered_dialogs: DialogService) -> None:
    _model, view = _table(qtbot)
    tools = tools_of(view)
    assert tools is not None
    with qtbot.waitSignal(tools.export_failed, timeout=WAIT) as blocker:
        job = export_view(view, tmp_path / "no such folder" / "x.xlsx")
    assert job is not None and job.wait(5.0)
    assert "Cannot write" in blocker.args[0] and "Traceback" not in blocker.args[0]
    [req] = answered_dialogs.pending
    assert req.kind == "error" and req.text == blocker.args[0]


def test_ctrl_shift_e_asks_for_a_file_then_exports(qtbot: Any, tmp_path: Path,
                                                   answered_dialogs: DialogService) -> None:
    _model, view = _table(qtbot)
    window = view.window()
    with qtbot.waitActive(window):
        window.show()
        window.activateWindow()
    view.setFocus()
    tools = tools_of(view)
    assert tools is not None
    with qtbot.waitSignal(answered_dialogs.requested, timeout=WAIT):
        qtbot.keyClick(view, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(view, Qt.Key.Key_Home)  # QTest leaves Shift held for later tests' selectRow otherwise
    assert QGuiApplication.keyboardModifiers() == Qt.KeyboardModifier.NoModifier
    [req] = answered_dialogs.pending
    assert req.kind == "save_file" and req.data["default"].endswith(".xlsx")
    with qtbot.waitSignal(tools.exported, timeout=WAIT):
        req.answer(str(tmp_path / "chosen"))  # no suffix typed: .xlsx is added
    assert tools.job is None  # finished, and its thread joined
    assert (tmp_path / "chosen.xlsx").exists()


def test_cells_format_each_distinct_value_once() -> None:
    calls: list[Any] = []

    def fmt(v: Any) -> str:
        calls.append(v)
        return f"<{v}>"

    col = ExportColumn("Status", np.array(["call", "warning", "call", "call"]), fmt)
    assert cells(col) == ["<call>", "<warning>", "<call>", "<call>"]
    assert sorted(calls) == ["call", "warning"]
    num = ExportColumn("Age", np.array([3, -1, 5]), lambda v: "" if v < 0 else str(v), is_number=True)
    assert cells(num) == [3, None, 5]


def test_outcome_in_the_status_bar_and_the_dock_title_names_the_sheet(qtbot: Any, tmp_path: Path) -> None:
    window = QMainWindow()
    qtbot.addWidget(window)
    _OWNERS.append(window)
    dock = QDockWidget("Credit: limits / usage", window)
    holder = QWidget()
    holder.setLayout(QVBoxLayout())
    dock.setWidget(holder)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
    _model, view = _table(qtbot, holder)
    _export(qtbot, view, tmp_path / "status.xlsx")
    assert window.statusBar().currentMessage() == f"Exported {len(RECORDS)} rows to {tmp_path / 'status.xlsx'}"
    wb = load_workbook(tmp_path / "status.xlsx")
    assert wb.sheetnames == ["Credit limits usage"]
    wb.close()


def test_a_name_given_later_brings_that_names_columns(qtbot: Any) -> None:
    model, view = _table(qtbot)
    tools = tools_of(view)
    assert tools is not None
    assert tools.set_column_hidden(model.column_of("Remark"), True)  # under the automatic name
    s = table_settings()
    s.setValue("tables/credit_accounts/hidden_columns", '["Qty"]')
    s.sync()
    view.setObjectName("credit_accounts")  # a dock naming its table after make_table
    assert hidden_columns(view) == ["Qty"]
    assert view.isColumnHidden(model.column_of("Qty")) and not view.isColumnHidden(model.column_of("Remark"))
