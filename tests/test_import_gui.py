"""The import dialog on a real SQLite demo store: template download, a file with two good and two bad
rows checked in the worker (problems named by spreadsheet row), problems exported to xlsx, the valid
rows submitted as pending change requests, and an unreadable file reported inline.

No sleeps: every wait is on a signal; the task runner is shut down after each test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from app.tasks import TaskRunner
from services import changes
from services.auth import User
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.import_dialog import ImportDialog

RITA = User("rita", "Rita", "risk_officer")
WAIT = 10000


@pytest.fixture
def dialog(qtbot: Any, store: Store, runner: TaskRunner) -> ImportDialog:
    d = ImportDialog(store, RITA, runner, kind="stock-margin")
    qtbot.addWidget(d)
    d.show()
    return d


def test_template_check_export_and_submit(qtbot: Any, dialog: ImportDialog, store: Store,
                                          tmp_path: Path) -> None:
    assert dialog.kind_combo.count() >= 8 and dialog.kind == "stock-margin"
    tpl = tmp_path / "stock.xlsx"
    dialog.download_template(tpl)
    wb = load_workbook(tpl)
    assert [c.value for c in wb["Data"][1]] == ["code", "im_ratio", "mm_ratio"]
    assert "Instructions" in wb.sheetnames
    wb["Data"].append(["700.HK", 0.45, 0.35])     # row 2: good
    wb["Data"].append(["NOPE.HK", 0.5, 0.4])      # row 3: unknown code
    wb["Data"].append(["5.HK", 0.4, 0.3])         # row 4: good
    wb["Data"].append(["388.HK", 1.5, 0.3])       # row 5: IM above 1
    wb.save(tpl)

    with qtbot.waitSignal(dialog.validated, timeout=WAIT) as sig:
        dialog.load_file(tpl)
    rep = sig.args[0]
    assert not dialog.busy and dialog.report is rep
    assert dialog.summary.text() == "4 rows, 2 valid, 2 problems"
    assert dialog.warning.isHidden()
    rows = dialog.problem_rows()
    assert [(r[0], r[1], r[2]) for r in rows] == [("3", "code", "NOPE.HK"), ("5", "im_ratio", "1.5")]
    assert "unknown security code" in rows[0][3] and "between 0 and 1" in rows[1][3]

    out = tmp_path / "problems.xlsx"
    dialog.export_problems(out)
    data = list(load_workbook(out)["Problems"].iter_rows(values_only=True))
    assert data[0] == ("Row", "Column", "Value", "Reason")
    assert [(r[0], r[1]) for r in data[1:]] == [(3, "code"), (5, "im_ratio")]

    assert not dialog.submit_button.isEnabled()  # no reason yet
    dialog.reason.setText("quarterly review")
    assert dialog.submit_button.isEnabled()
    assert dialog.submit_button.text() == "Submit 2 valid rows as change requests"
    before = len(changes.listing(store, status="pending"))
    with qtbot.waitSignal(dialog.submitted, timeout=WAIT) as sub:
        dialog.submit()
    ids = sub.args[0]
    assert len(ids) == 2
    pending = changes.listing(store, status="pending")
    assert len(pending) == before + 2 and set(ids) <= {r.id for r in pending}
    assert dialog.message.text() == "2 change requests submitted — awaiting approval"
    assert not dialog.submit_button.isEnabled()

    if os.environ.get("IMPORT_DIALOG_SHOT"):
        dialog.grab().save(os.environ["IMPORT_DIALOG_SHOT"])

    # the same file again: detected as already imported
    with qtbot.waitSignal(dialog.validated, timeout=WAIT):
        dialog.load_file(tpl)
    assert dialog.warning.isVisible() and "already imported by rita" in dialog.warning.text()


def test_missing_file_shows_error_inline(qtbot: Any, dialog: ImportDialog, tmp_path: Path) -> None:
    with qtbot.waitSignal(dialog.failed, timeout=WAIT) as sig:
        dialog.load_file(tmp_path / "nope.xlsx")
    assert "cannot read the file" in sig.args[0]
    assert dialog.message.isVisible() and "nope.xlsx" in dialog.message.text()
    assert dialog.report is None and not dialog.submit_button.isEnabled() and not dialog.busy


def test_zero_valid_rows_cannot_be_submitted(qtbot: Any, dialog: ImportDialog, tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("code,im_ratio,mm_ratio\nNOPE.HK,0.5,0.4\n", encoding="utf-8")
    with qtbot.waitSignal(dialog.validated, timeout=WAIT):
        dialog.load_file(p)
    dialog.reason.setText("why")
    assert dialog.summary.text() == "1 rows, 0 valid, 1 problems"
    assert not dialog.submit_button.isEnabled()


def test_cancel_drops_the_check(qtbot: Any, dialog: ImportDialog, runner: TaskRunner, tmp_path: Path) -> None:
    p = tmp_path / "one.csv"
    p.write_text("code,im_ratio,mm_ratio\n700.HK,0.5,0.4\n", encoding="utf-8")
    with qtbot.assertNotEmitted(dialog.validated):
        dialog.load_file(p)
        assert dialog.busy and dialog.cancel_button.isVisible()
        dialog.cancel()
        assert runner.wait_all(5.0)
        qtbot.waitUntil(lambda: runner.active == 0, timeout=WAIT)
    assert not dialog.busy and dialog.report is None and dialog.message.text() == "Cancelled."
    assert dialog.upload_button.isEnabled()
