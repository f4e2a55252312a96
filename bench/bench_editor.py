"""Editor tables at 100,000 rows: editor.load_100k, editor.sort_100k, editor.filter_100k, editor.reload_100k.

Each figure is a `RecordTableModel` (the model behind every governance editor dock) shown in a
`make_table` view of 1200×800 px, timed until the events it caused — the view's relayout and a
paint — are processed. The baseline, measured in the same run on the same records (a child process:
see below), is the naive Qt way: a `QStandardItemModel` with one `QStandardItem` per cell (numbers
stored as numbers so they sort as numbers) in an equally shown view; its search is a
`QSortFilterProxyModel`.

- load: `set_records` of 100,000 records × 8 fields into an empty table sorted by account, vs
  appending the rows as items.
- sort: a click on the Loan header (alternately descending and ascending), vs `sortByColumn` of the
  item model.
- filter: the search box's filter (numpy ``np.char.find`` over each record's lower-cased
  code + name, as the editor docks do) matching ~19 % of the rows, vs the proxy's case-insensitive
  fixed-string filter on the name column alone.
- reload: `set_records` again with 1 % of the records changed (the refresh after another desk's
  decision: rows diffed by id, sort kept), vs clearing and refilling the item model *before* any
  header sort. ``inplace_setdata_ms`` is a reference, not a baseline: setData on just the changed
  cells of the item model, which needs the caller to know what changed and keep an id → row map.

Why a child process for the baseline: once a `QStandardItemModel` has been sorted, removing or
deleting its items is quadratic (each removed item's row is looked up linearly): 30,000 rows took
~10 s here, 100,000 about two minutes. The naive reload after a header click really costs that; it
is left out of the ratio, and the child exits without tearing the sorted model down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import row

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("editor.load_100k", "editor.sort_100k", "editor.filter_100k", "editor.reload_100k")
N = 100_000
NEEDLE = "alpha"  # in either of a name's two words: ~19 % of the rows
WORDS = ("alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "lambda", "theta", "zeta")
STATUSES = ("pending", "approved", "rejected", "cancelled", "expired")


def make_records(n: int = N, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` editor records of 8 shown fields (plus the id), as a store read returns them."""
    rng = np.random.default_rng(seed)
    w = rng.integers(0, len(WORDS), (n, 2))
    loans = np.round(rng.lognormal(13, 1.5, n), 2)
    limits = np.round(loans * rng.uniform(0.8, 3.0, n), 2)
    status = rng.integers(0, len(STATUSES), n)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    minutes = rng.integers(0, 60 * 24 * 365, n)
    return [{"id": i + 1, "code": f"AC{i:07d}", "name": f"{WORDS[w[i, 0]].title()} {WORDS[w[i, 1]]} holdings",
             "status": STATUSES[status[i]], "loan": float(loans[i]), "limit": float(limits[i]),
             "usage": float(loans[i] / limits[i]), "created": t0 + timedelta(minutes=int(minutes[i])),
             "remark": "" if i % 3 else f"review {i % 97}"} for i in range(n)]


def changed(records: list[dict[str, Any]], fraction: float = 0.01, seed: int = 11) -> list[dict[str, Any]]:
    """A copy with ``fraction`` of the records given a new loan and status."""
    rng = np.random.default_rng(seed)
    out = list(records)
    for i in rng.choice(len(records), int(len(records) * fraction), replace=False).tolist():
        r = dict(records[i])
        r["loan"] = round(r["loan"] * 1.1, 2)
        r["status"] = "approved" if r["status"] != "approved" else "pending"
        out[i] = r
    return out


def _timed(fn: Callable[[], Any], settle: Callable[[], None], setup: Callable[[], Any] | None = None,
           repeat: int = 5) -> float:
    """Median ms of ``fn`` + ``settle`` (the event processing it caused), ``setup`` untimed before each."""
    ts = []
    for _ in range(repeat):
        if setup is not None:
            setup()
            settle()
        t = time.perf_counter()
        fn()
        settle()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def _fields() -> list[Any]:
    from widgets.records import Field

    return [Field("Account", "code"), Field("Client name", "name"), Field("Status", "status"),
            Field("Loan", "loan", "number"), Field("Limit", "limit", "number"),
            Field("Usage", "usage", "number", fmt=lambda v: "" if v != v else f"{v * 100:.1f}%"),
            Field("Created", "created", "time"), Field("Remark", "remark")]


LOAN_COL, STATUS_COL = 3, 2
_KEPT: list[Any] = []  # the baseline's sorted item model: deleting it would take minutes


def measure_riskdesk() -> dict[str, Any]:
    """RiskDesk's four figures (ms) and the filter's row count, on a shown `make_table` view."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication, QWidget

    from widgets.records import RecordTableModel
    from widgets.tables import make_table

    app = QApplication.instance() or QApplication([])
    settle = app.processEvents
    records = make_records()
    reloads = [changed(records, seed=s) for s in (11, 12)]
    search_text = np.char.lower(np.array([r["code"] + " " + r["name"] for r in records]))

    holder = QWidget()
    holder.resize(1200, 800)
    model = RecordTableModel(_fields(), holder)
    view = make_table(model, holder)
    view.resize(1200, 800)
    view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    holder.show()
    settle()
    out: dict[str, Any] = {}
    out["load"] = _timed(lambda: model.set_records(records), settle, setup=lambda: model.set_records([]))
    model.set_records(records)
    settle()
    orders = iter([Qt.SortOrder.DescendingOrder, Qt.SortOrder.AscendingOrder] * 20)
    out["sort"] = _timed(lambda: view.sortByColumn(LOAN_COL, next(orders)), settle, repeat=9)

    def search(keys: np.ndarray) -> np.ndarray:  # the editor docks' search: ids are 1..N here
        return np.char.find(search_text[keys - 1], NEEDLE) >= 0

    out["filter"] = _timed(lambda: model.set_filter(search), settle, setup=lambda: model.set_filter(None))
    out["shown"] = model.rowCount()
    model.set_filter(None)
    which = iter([0, 1] * 10)
    out["reload"] = _timed(lambda: model.set_records(reloads[next(which)]), settle, repeat=6)
    holder.close()
    holder.deleteLater()
    settle()
    return out


def measure_baseline() -> dict[str, Any]:
    """The same four operations the naive way (ms); run in a child process by `run`."""
    from PySide6.QtCore import QSortFilterProxyModel, Qt
    from PySide6.QtGui import QStandardItem, QStandardItemModel
    from PySide6.QtWidgets import QApplication, QTableView, QWidget

    app = QApplication.instance() or QApplication([])
    settle = app.processEvents
    fields = _fields()
    records = make_records()
    reloads = [changed(records, seed=s) for s in (11, 12)]

    holder = QWidget()
    holder.resize(1200, 800)
    items = QStandardItemModel(0, len(fields), holder)
    items.setHorizontalHeaderLabels([f.header for f in fields])
    view = QTableView(holder)
    view.setModel(items)
    view.setSortingEnabled(True)
    view.resize(1200, 800)
    holder.show()
    settle()

    def item_row(r: dict[str, Any]) -> list[QStandardItem]:
        out = []
        for f in fields:
            it = QStandardItem()
            v = r[f.name]
            if f.kind == "number":
                it.setData(float(v), Qt.ItemDataRole.DisplayRole)
            elif f.kind == "time":
                it.setText(v.strftime("%Y-%m-%d %H:%M"))
            else:
                it.setText(str(v))
            out.append(it)
        return out

    def fill(recs: list[dict[str, Any]]) -> None:
        for r in recs:
            items.appendRow(item_row(r))

    out: dict[str, Any] = {}
    out["load"] = _timed(lambda: fill(records), settle, setup=lambda: items.setRowCount(0), repeat=2)
    which = iter([0, 1] * 10)

    def refill() -> None:
        items.setRowCount(0)
        fill(reloads[next(which)])

    out["reload"] = _timed(refill, settle, repeat=2)
    row_of = {items.item(r, 0).text(): r for r in range(items.rowCount())}
    diffs = [(row_of[n["code"]], n) for o, n in zip(records, reloads[0], strict=True) if o is not n]

    def in_place() -> None:
        for r, rec in diffs:
            items.item(r, LOAN_COL).setData(rec["loan"], Qt.ItemDataRole.DisplayRole)
            items.item(r, STATUS_COL).setText(rec["status"])

    out["inplace"] = _timed(in_place, settle, repeat=3)
    out["changed"] = len(diffs)
    orders = iter([Qt.SortOrder.DescendingOrder, Qt.SortOrder.AscendingOrder] * 20)
    out["sort"] = _timed(lambda: view.sortByColumn(LOAN_COL, next(orders)), settle, repeat=5)
    proxy = QSortFilterProxyModel(holder)
    proxy.setSourceModel(items)
    proxy.setFilterKeyColumn(1)
    proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    view.setModel(proxy)
    settle()
    out["filter"] = _timed(lambda: proxy.setFilterFixedString(NEEDLE), settle,
                           setup=lambda: proxy.setFilterFixedString(""), repeat=3)
    out["shown"] = proxy.rowCount()
    _KEPT.append(holder)  # not torn down: the child exits with os._exit instead
    return out


def _baseline_child() -> None:
    """Entry point of the child process: print the baseline as JSON, then exit without teardown
    (deleting the sorted item model would take minutes)."""
    print(json.dumps(measure_baseline()), flush=True)
    os._exit(0)


def run(selected: list[str]) -> Iterator[dict[str, Any]]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    ours = measure_riskdesk()
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ["QT_QPA_PLATFORM"])
    code = "from bench.bench_editor import _baseline_child; _baseline_child()"
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=900, check=True)
    base = json.loads(child.stdout.strip().splitlines()[-1])
    kinds = {"load": "QStandardItemModel: appendRow of one QStandardItem per cell",
             "sort": "QStandardItemModel.sort through the view's header",
             "filter": "QSortFilterProxyModel.setFilterFixedString (name column only)",
             "reload": "QStandardItemModel: setRowCount(0) and refill, never sorted"}
    extra: dict[str, dict[str, Any]] = {
        "filter": {"shown": ours["shown"], "baseline_shown": base["shown"]},
        "reload": {"changed": base["changed"], "inplace_setdata_ms": round(base["inplace"], 3)}}
    for name in NAMES:
        if name in selected:
            op = name.split(".")[1].removesuffix("_100k")
            yield row(name, ours[op], "ms", base[op], rows=N, fields=len(_fields()), baseline_kind=kinds[op],
                      **extra.get(op, {}))
