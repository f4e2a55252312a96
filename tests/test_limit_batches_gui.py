"""The bulk limit update dialog under pytest-qt on a real SQLite demo store and a real xlsx: the
file's problems are listed, a row is edited and another removed, the batch is submitted as N
pending change requests with the reviewed amounts; the same file is then refused inline.

Every store call runs in the task runner; the test waits on the dialog's signals, never sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from PySide6.QtCore import Qt
from sqlalchemy import text

from app.tasks import TaskRunner
from services import changes
from services.auth import User
from services.demo_store import DEMO_USERS
from services.imports import write_template
from services.store import Store
from tests.gui_fixtures import _no_leftover_threads, _qapp_styled, demo_template, runner, store  # noqa: F401 (fixtures)
from widgets.limit_batch_dialog import LimitBatchDialog, parse_amount

USERS = {login: User(login, name, role) for login, role, name in DEMO_USERS}
WAIT = 5000


@pytest.fixture
def dialog(qtbot: Any, store: Store, runner: TaskRunner) -> Iterator[LimitBatchDialog]:
    d = LimitBatchDialog(store, USERS["rita"], runner)
    qtbot.addWidget(d)
    d.show()
    qtbot.waitUntil(lambda: d._list_task is None, timeout=WAIT)
    yield d
    d.close()


def _credited(store: Store, n: int) -> list[tuple[str, float]]:
    with store.begin() as conn:
        return [(c, float(a)) for c, a in conn.execute(text(
            "select a.code, f.amount from accounts a join financing_limits f on f.account_id = a.id "
            "where a.type = 'margin' and a.closed = :f and f.amount > 0 and not exists (select 1 from change_requests r "
            "where r.status = 'pending' and r.target_key like '%' || a.id || '}') order by a.id limit :n"),
            {"f": False, "n": n})]


def _pending_limits(store: Store) -> int:
    with store.begin() as conn:
        return int(conn.execute(text("select count(*) from change_requests where status = 'pending' "
                                     "and kind = 'financing_limit'")).scalar() or 0)


def test_parse_amount() -> None:
    assert parse_amount("1,250,000") == (1_250_000.0, "")
    assert parse_amount("-1")[1] == "A financing limit must be a finite amount ≥ 0."
    assert parse_amount("x")[1] == "“x” is not a number."
    assert parse_amount("")[0] is None


def test_review_edit_remove_and_submit(qtbot: Any, store: Store, dialog: LimitBatchDialog, tmp_path: Path) -> None:
    (a, la), (b, lb_), (c, lc) = _credited(store, 3)
    path = tmp_path / "limits.xlsx"
    write_template("financing-limits", path)
    wb = load_workbook(path)
    for row in ((a, la + 100_000), (b, lb_ + 200_000), ("NOPE", 1), (c, lc + 300_000), (a, -5)):
        wb["Data"].append(list(row))
    wb.save(path)

    with qtbot.waitSignal(dialog.loaded, timeout=WAIT) as sig:
        dialog.load_file(path)
    bid = sig.args[0]
    assert dialog.model.rowCount() == 3
    assert dialog.problem_rows() == [("4", "account", "NOPE", "unknown or closed account 'NOPE'"),
                                     ("6", "amount", "-5", "must be ≥ 0")]
    assert dialog.problems_box.isVisibleTo(dialog)
    assert f"Batch #{bid} from limits.xlsx: 3 of 5 rows to review; 2 problems listed above" == dialog.message.text()
    qtbot.waitUntil(lambda: dialog.batch_combo.findData(bid) > 0, timeout=WAIT)  # listed among the open batches

    # edit b's amount: a bad value is refused inline, a good one stored
    assert dialog.select_account(b)
    dialog.amount_edit.setText("-1")
    assert not dialog.edit_button.isEnabled() and "≥ 0" in dialog.row_validation.text()
    dialog.amount_edit.setText("1,234,000")
    assert dialog.edit_button.isEnabled()
    with qtbot.waitSignal(dialog.rows_changed, timeout=WAIT):
        qtbot.mouseClick(dialog.edit_button, Qt.MouseButton.LeftButton)
    rec = dialog.selected()
    assert rec is not None and (rec["account"], rec["amount"], rec["change"]) == (b, 1_234_000.0, 1_234_000.0 - lb_)

    # remove c, restore it, remove it again
    assert dialog.select_account(c)
    for button in (dialog.remove_button, dialog.restore_button, dialog.remove_button):
        with qtbot.waitSignal(dialog.rows_changed, timeout=WAIT):
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert [r["removed"] for r in dialog.rows] == [False, False, True]
    assert dialog.summary.text() == "2 rows in the batch · 1 removed"
    assert dialog.submit_button.text() == "Submit batch (2 requests)" and not dialog.submit_button.isEnabled()

    dialog.submit()  # no reason: refused inline, nothing submitted
    assert "Give a reason" in dialog.message.text() and not dialog.busy
    before = _pending_limits(store)
    dialog.reason.setText("quarterly credit review")
    with qtbot.waitSignal(dialog.batch_submitted, timeout=WAIT) as sig:
        qtbot.mouseClick(dialog.submit_button, Qt.MouseButton.LeftButton)
    ids = sig.args[0]
    assert len(ids) == 2 and _pending_limits(store) == before + 2
    reqs = [changes.get(store, i) for i in ids]
    assert [(q.context["account"], q.before["amount"], q.after["amount"], q.status) for q in reqs] == [
        (a, la, la + 100_000, "pending"), (b, lb_, 1_234_000.0, "pending")]
    assert f"Batch #{bid} submitted: 2 change requests" in dialog.message.text()
    qtbot.waitUntil(lambda: not dialog.busy and dialog.rows[0]["request_id"] == ids[0], timeout=WAIT)
    assert [r["request_id"] for r in dialog.rows] == [ids[0], ids[1], None]
    assert not dialog.submit_button.isEnabled() and not dialog.remove_button.isEnabled()

    # the same file again is refused with a message naming the batch
    with qtbot.waitSignal(dialog.failed, timeout=WAIT) as sig:
        dialog.load_file(path)
    assert f"already batch #{bid} (submitted)" in sig.args[0]
    dialog.grab().save("/tmp/limit_batch_dialog.png")


def test_open_and_discard_a_batch(qtbot: Any, store: Store, dialog: LimitBatchDialog, tmp_path: Path) -> None:
    ((a, la),) = _credited(store, 1)
    path = tmp_path / "one.csv"
    path.write_text(f"account,amount\n{a},{la + 1}\n", encoding="utf-8")
    with qtbot.waitSignal(dialog.loaded, timeout=WAIT) as sig:
        dialog.load_file(path)
    bid = sig.args[0]
    assert not dialog.problems_box.isVisibleTo(dialog)
    with qtbot.waitSignal(dialog.discarded, timeout=WAIT):
        qtbot.mouseClick(dialog.discard_button, Qt.MouseButton.LeftButton)
    assert dialog.model.rowCount() == 0 and "discarded: no request was made" in dialog.message.text()
    qtbot.waitUntil(lambda: dialog._list_task is None, timeout=WAIT)
    assert dialog.batch_combo.findData(bid) < 0
    with qtbot.waitSignal(dialog.loaded, timeout=WAIT) as sig:  # a discarded file may come again
        dialog.load_file(path)
    again = sig.args[0]
    other = LimitBatchDialog(store, USERS["rita"], dialog.tasks)
    qtbot.addWidget(other)
    qtbot.waitUntil(lambda: other.batch_combo.findData(again) > 0, timeout=WAIT)
    with qtbot.waitSignal(other.loaded, timeout=WAIT):
        other.batch_combo.setCurrentIndex(other.batch_combo.findData(again))
        other.batch_combo.activated.emit(other.batch_combo.currentIndex())
    assert [r["account"] for r in other.rows] == [a] and other.discard_button.isEnabled()
    other.close()
