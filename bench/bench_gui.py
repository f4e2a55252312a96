"""GUI figures of issue 2: app.cold_start, gui.tick_to_row_p99 and gui.max_stall.

- app.cold_start: process start → first paint of the main window on the demo store (the process
  prints "painted" when RISKDESK_REPORT_PAINT is set), vs a process that imports the whole stack
  eagerly and then paints a bare window (the naive start-up). Our modules' bytecode is compiled
  first, as an installed copy has it (a wheel install and the PyInstaller bundle ship it; a
  development checkout writes it on its first start unless PYTHONDONTWRITEBYTECODE is set, as on
  some CI machines, where compiling ~100 modules from source adds ~0.5 s to every start).
- gui.tick_to_row_p99 / gui.max_stall: the real main window and docks, a LiveMonitor on a demo store
  and a feed simulator subprocess at 50,000 price updates/s. Tick → row is the time from a tick's
  publish timestamp to the alerts dock taking the change it caused (p99); stall is the largest
  lateness of a 10 ms QTimer probe on the GUI thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import row

NAMES = ("app.cold_start", "gui.tick_to_row_p99", "gui.max_stall")
ROOT = Path(__file__).resolve().parent.parent

EAGER = """
import time, sys
t0 = time.time()
import numpy, pandas, sqlalchemy, alembic, zmq, pyqtgraph, openpyxl
from PySide6.QtWidgets import QApplication, QMainWindow
from PySide6.QtCore import QTimer, QObject, QEvent
app = QApplication([])
w = QMainWindow(); w.resize(1400, 900)
class F(QObject):
    def eventFilter(self, o, e):
        if e.type() == QEvent.Type.Paint:
            print("painted", flush=True); QTimer.singleShot(0, app.quit)
        return False
f = F(); w.installEventFilter(f); w.show(); app.exec()
"""


def _time_until_painted(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    try:
        for line in p.stdout:
            if line.strip() == "painted":
                return time.perf_counter() - t0
        raise RuntimeError(f"{cmd[:3]} exited without painting")
    finally:
        p.kill()
        p.wait()


def cold_start() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RISKDESK_HOME=home, RISKDESK_REPORT_PAINT="1",
                   RISKDESK_SETTINGS=os.path.join(home, "s.ini"))
        subprocess.run([sys.executable, "-m", "compileall", "-q", "app", "widgets", "services", "models", "main.py"],
                       cwd=ROOT, check=True, timeout=300)
        # first run seeds the demo store; measure the following starts, as a user sees every morning
        subprocess.run([sys.executable, "main.py", "--no-feed", "--quit-after", "2"], cwd=ROOT, env=env,
                       capture_output=True, timeout=120)
        runs = [_time_until_painted([sys.executable, "main.py", "--no-feed", "--quit-after", "5"], env)
                for _ in range(5)]
        base = [_time_until_painted([sys.executable, "-c", EAGER], env) for _ in range(3)]
    return row("app.cold_start", float(np.median(runs)), "s", float(np.median(base)),
               baseline_kind="eager imports of the whole stack + bare window")


def live_gui(seconds: float = 10.0, rate: float = 50_000.0) -> Iterator[dict[str, Any]]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.feed_process import FeedProcess
    from app.main_window import MainWindow, make_settings
    from services.demo_store import seed_demo_store
    from services.live import LiveMonitor
    from services.store import Store, price_timestamps

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/gui.db"
        store = Store(url)
        store.migrate()
        seed_demo_store(store)
        feed = FeedProcess(url, rate=rate, extra_args=("--no-persist",))
        address = feed.start()
        monitor = LiveMonitor(store, store.load_book(), feed_address=address)
        window = MainWindow(settings=make_settings(os.path.join(d, "s.ini")), restore=False)
        window.show()
        window.attach(monitor, store, address, price_timestamps(store))
        monitor.start()
        lateness: list[float] = []
        last = [time.perf_counter()]
        probe = QTimer()
        probe.setInterval(10)

        def tick() -> None:
            now = time.perf_counter()
            lateness.append(now - last[0] - 0.010)
            last[0] = now

        probe.timeout.connect(tick)
        end = time.perf_counter() + seconds
        warm = time.perf_counter() + 2.0
        while time.perf_counter() < warm:
            app.processEvents()
            time.sleep(0.002)
        monitor.latencies.clear()
        probe.start()
        last[0] = time.perf_counter()
        updates0 = monitor.stats.snapshot()["updates"]
        t0 = time.perf_counter()
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)
        probe.stop()
        updates = monitor.stats.snapshot()["updates"] - updates0
        rate_seen = updates / (time.perf_counter() - t0)
        lat = np.array(monitor.latencies) * 1e3
        window.shutdown()
        monitor.stop()
        feed.stop()
        window.close()
        store.dispose()
    p99 = float(np.percentile(lat, 99)) if lat.size else float("nan")
    yield row("gui.tick_to_row_p99", p99, "ms", samples=int(lat.size), updates_per_s=round(rate_seen),
              median_ms=round(float(np.median(lat)), 1) if lat.size else None)
    yield row("gui.max_stall", max(0.0, max(lateness) * 1e3), "ms", probes=len(lateness),
              updates_per_s=round(rate_seen))


def run(selected: list[str]) -> Iterator[dict[str, Any]]:
    if "app.cold_start" in selected:
        yield cold_start()
    if "gui.tick_to_row_p99" in selected or "gui.max_stall" in selected:
        for r in live_gui():
            if r["name"] in selected:
                yield r
