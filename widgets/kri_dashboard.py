"""The KRI dashboard dock (issue 7, RISK_METHODS §7 "KRIs"): the morning view of the twelve KRIs.

Tiles with each KRI's RAG colour (amber for more than 5 business days shown red) and trend arrow; the
selected KRI's last 30 readings over its threshold bands; the records behind its value; commentary
(required for amber and red); the open investigation / CRO-escalation tasks; readings entered,
imported or computed; new thresholds requested through four eyes.

Everything on screen comes from one background read (`services.kri_dashboard.load_dashboard`);
the GUI thread only draws. A refresh asked for while one runs runs once after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QTabWidget, QVBoxLayout, QWidget

from services.auth import User
from services.kri import COMPUTED
from services.kri_dashboard import KriDashboardData, drill_records, load_dashboard
from widgets.kri_chart import KriChart
from widgets.kri_forms import CommentaryForm, ReadingForm, ThresholdForm, kri_error_text
from widgets.kri_tasks import DrillPanel, TasksPanel
from widgets.kri_tiles import RAG, KriTiles
from widgets.records import CoalescedLoad

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services.store import Store

Loader = Callable[..., KriDashboardData]
WORST_FIRST = {"red": 0, "amber": 1, "green": 2, "": 3}


class KriDashboard(QWidget):
    """All KRIs at a glance, one selected in detail."""

    populated = Signal()  # tiles, chart and tasks drawn from a load
    drilled = Signal(str)  # the records behind a KRI are shown
    submitted = Signal(int)  # a threshold change request

    def __init__(self, parent: QWidget | None = None, loader: Loader | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.data: KriDashboardData | None = None
        self.loader: Loader = loader or load_dashboard
        self.loaded_at = 0.0
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._drill_task: Task | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        head = QHBoxLayout()
        self.summary = QLabel("Loading the KRIs…")
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        head.addWidget(self.summary, 1)
        head.addWidget(self.refresh_button)
        lay.addLayout(head)
        self.tiles = KriTiles()
        self.tiles.selected.connect(self.select)
        lay.addWidget(self.tiles)
        split = QSplitter(Qt.Orientation.Horizontal)
        self.chart = KriChart()
        split.addWidget(self.chart)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.drill = DrillPanel()
        self.commentary = CommentaryForm()
        self.task_list = TasksPanel()
        self.reading = ReadingForm()
        self.thresholds = ThresholdForm()
        self.tabs.addTab(self.drill, "Drill-down")
        self.tabs.addTab(self.commentary, "Commentary")
        self.tabs.addTab(self.task_list, "Tasks")
        self.tabs.addTab(self.reading, "Enter / import")
        self.tabs.addTab(self.thresholds, "Thresholds")
        split.addWidget(self.tabs)
        split.setSizes([560, 640])
        lay.addWidget(split, 1)
        self.forms = (self.commentary, self.task_list, self.reading, self.thresholds)
        for f in self.forms:
            f.changed.connect(self.refresh)
        self.thresholds.submitted.connect(self.submitted)
        self.task_list.selected_kri.connect(self.tiles.select)

    # ------------------------------------------------------------------ dock protocol
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        for f in self.forms:
            f.set_context(store, user, tasks)
        self.refresh()

    def refresh(self) -> None:
        if self.store is None or self.tasks is None:
            return
        self._load.request()

    def stop(self) -> None:
        self._load.cancel()
        if self._drill_task is not None:
            self._drill_task.cancel()
            self._drill_task = None

    # ------------------------------------------------------------------ loading
    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(self.loader, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="kri dashboard")

    def _loaded(self, data: KriDashboardData) -> None:
        self.data = data
        self.loaded_at = time.perf_counter()
        counts = data.counts()
        parts = [f"<b>{len(data.statuses)} KRIs</b>"] + [
            f"<span style='color:{RAG[c]}'>{counts[c]} {c}</span>" for c in ("green", "amber", "red")]
        n_tasks = len(data.tasks)
        parts.append(f"{n_tasks} open task{'s' if n_tasks != 1 else ''}")
        last = max((s.day for s in data.statuses if s.day is not None), default=None)
        if last is not None:
            parts.append(f"latest reading {last.isoformat()}")
        self.summary.setText(" · ".join(parts) + f" <span style='color:#8b949e'>· {data.readings:,} readings "
                             f"read in {data.took_ms:.0f} ms</span>")
        self.tiles.show_statuses(data.statuses, data.pending)
        self.task_list.show_tasks(data.tasks)
        self.tabs.setTabText(2, f"Tasks ({n_tasks})")
        self.reading.show_statuses(data.statuses, data.may_enter)
        code = self.tiles.current if self.tiles.current in data.by_code else self._worst()
        if code:
            self._show_selected(code, drill=code != self.drill.code or self.drill.code == "")
            self.tiles.select(code)
        self.populated.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.summary.setText(f"<span style='color:{RAG['red']}'>KRIs could not be read: {kri_error_text(e)}</span>")

    def _worst(self) -> str:
        if self.data is None or not self.data.statuses:
            return ""
        return min(self.data.statuses, key=lambda s: (WORST_FIRST[s.colour], s.code)).code

    # ------------------------------------------------------------------ selection
    def select(self, code: str) -> None:
        """Show ``code`` in the chart and the forms, and read the records behind its value."""
        if self.data is None or code not in self.data.by_code:
            return
        self.tiles.select(code)
        self._show_selected(code, drill=True)

    def _show_selected(self, code: str, drill: bool) -> None:
        assert self.data is not None
        st = self.data.by_code[code]
        self.chart.show_status(st)
        self.commentary.show_status(st)
        self.thresholds.show_status(st, self.data.pending.get(code), self.data.may_request)
        self.reading.select(code)
        if drill or self.drill.code != code:
            self._drill(code)

    def _drill(self, code: str) -> None:
        if self.tasks is None or self.store is None:
            return
        if self._drill_task is not None:
            self._drill_task.cancel()
        self.drill.show_loading(code)

        def done(res: tuple[float, list[dict[str, Any]]]) -> None:
            self._drill_task = None
            stored = self.data.by_code.get(code) if self.data is not None else None
            self.drill.show_records(code, code in COMPUTED, res[0], res[1], stored)
            self.drilled.emit(code)

        def failed(e: BaseException) -> None:
            self._drill_task = None
            self.drill.caption.setText(f"{code}: {kri_error_text(e)}")

        self._drill_task = self.tasks.run(drill_records, self.store, code, on_done=done, on_error=failed,
                                          name=f"kri drill {code}")


__all__ = ["KriDashboard"]
