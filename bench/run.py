"""Run RiskDesk's benchmarks: `python bench/run.py [NAME…]`, one JSON object per line on stdout.

Each bench module `bench/bench_*.py` exposes `run(selected) -> Iterator[dict]` yielding
`{"name", "value", "unit"}` and, where a naive baseline ran in the same process, `"baseline"` and
`"ratio"` (baseline / value for times, value / baseline for rates: >1 means RiskDesk is faster).
A NAME selects benchmarks by prefix (`margin` runs `margin.full_1m` and `margin.incremental_1k`).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODULES = ("bench_margin", "bench_store", "bench_feed", "bench_gui", "bench_governance", "bench_imports",
           "bench_pretrade", "bench_editor", "bench_stress", "bench_recon", "bench_pack",
           "bench_kri")


def main(argv: list[str]) -> int:
    wanted = argv or [""]
    for name in MODULES:
        try:
            mod = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"bench.{name}":
                continue
            raise
        names = getattr(mod, "NAMES", ())
        selected = [n for n in names if any(n.startswith(w) for w in wanted)]
        if not selected:
            continue
        for row in mod.run(selected):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
