"""import.validate_10k: check a 10,000-row stock-margin xlsx (issue 4: ≤ 3 s), vs pandas.read_excel alone."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from bench.common import row

NAMES = ("import.validate_10k",)


def run(selected: list[str]) -> Iterator[dict[str, Any]]:
    import pandas as pd
    from openpyxl import load_workbook

    from services.demo_store import seed_demo_store
    from services.imports import validate_file, write_template
    from services.store import Store

    with tempfile.TemporaryDirectory() as d:
        st = Store(f"sqlite:///{os.path.join(d, 's.db')}")
        st.migrate()
        seed_demo_store(st, clients=50_000)  # 10,000 securities: one row each
        book = st.load_book()
        path = os.path.join(d, "stock.xlsx")
        write_template("stock-margin", path)
        wb = load_workbook(path)
        ws = wb["Data"]
        for i in range(10_000):
            code = book.sec_codes[i % book.n_sec] if i % 50 else "NOPE.HK"
            ws.append([code, 0.4, 0.3 if i % 97 else 0.5])
        wb.save(path)
        t = time.perf_counter()
        rep = validate_file(st, "stock-margin", path)
        value = time.perf_counter() - t
        t = time.perf_counter()
        pd.read_excel(path, sheet_name="Data")
        base = time.perf_counter() - t
        st.dispose()
    yield row("import.validate_10k", value, "s", base, rows=rep.rows, errors=len(rep.errors),
              baseline_kind="pandas.read_excel of the same file, no checks")
