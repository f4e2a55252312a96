"""pack.write_50k (issue 8): 50,000 rows of 10 columns (text, numbers, dates) over five sheets.

RiskDesk's writer (xlsxwriter, constant memory, a typed write per cell through the sanitiser) against
pandas `DataFrame.to_excel` with the openpyxl engine for the same sheets, in the same run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import row

NAMES = ("pack.write_50k",)


def _sheets() -> list[Any]:
    from services.pack import MONEY, PCT, Sheet

    rng = np.random.default_rng(2)
    out = []
    base = datetime(2026, 11, 20, 16, 0)
    for k in range(5):
        n = 10_000
        vals = rng.normal(1e6, 3e5, (n, 5))
        rows = [[f"M{i:06d}", f"C{i:06d}", "call" if i % 7 == 0 else "safe", base - timedelta(minutes=i),
                 *vals[i].tolist(), float(i % 100) / 100] for i in range(n)]
        out.append(Sheet(f"Sheet {k + 1}", ["Account", "Client", "Status", "Time", "Equity", "IM", "MM", "Loan",
                                            "Excess", "Usage"], rows, {4: MONEY, 5: MONEY, 6: MONEY, 7: MONEY,
                                                                       8: MONEY, 9: PCT}))
    return out


def run(selected: list[str]) -> Iterator[dict[str, Any]]:
    import pandas as pd

    from services.pack import write_workbook

    sheets = _sheets()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_workbook(Path(tmp) / "pack.xlsx", sheets)
        ours = time.perf_counter() - t
        frames = [(s.name, pd.DataFrame(s.rows, columns=s.headers)) for s in sheets]
        t = time.perf_counter()
        with pd.ExcelWriter(Path(tmp) / "pandas.xlsx", engine="openpyxl") as w:
            for name, df in frames:
                df.to_excel(w, sheet_name=name, index=False)
        base = time.perf_counter() - t
    yield row("pack.write_50k", ours * 1e3, "ms", base * 1e3, rows=sum(len(s.rows) for s in sheets), columns=10)
