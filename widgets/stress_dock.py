"""The stress-testing dock (issue 6, RISK_METHODS §3): scenarios, standing exemptions, runs, the
results of the open run, and two runs compared.

The run bar above the pages runs the scenario in the editor: `risk_runs.run_stress` in a worker with
a progress bar and Cancel, the shock curve's sizes (5% … 50% by default) and optionally "Custom
data" — margin ratios from a file used instead of the live ones. A cancelled run stops at its next
check and is stored as cancelled; the dock learns that the worker has returned by polling the task
(the runner drops a cancelled task's callbacks), so the bar is free again only when it really is.
Every store, engine and file access runs on the task runner; the GUI thread only shows results.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from services.lazy import lazy_module
from services.stress_view import (
    RunView,
    StressSetup,
    load_setup,
    open_run,
    read_ratios_checked,
    run_rows,
    sweep_sizes,
)
from widgets.records import ERROR_COLOUR, CoalescedLoad, set_tone
from widgets.stress_editor import ScenarioEditor, ask_path, why
from widgets.stress_exemptions import ExemptionsPanel
from widgets.stress_results import ResultsView
from widgets.stress_runs import ComparePanel, RunsPanel

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services import risk_runs
    from services.auth import User
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    risk_runs = lazy_module("services.risk_runs")

POLL_MS = 100


class StressDock(QWidget):
    """Scenario editor, exemptions, runs, results and compare under one run bar."""

    setup_loaded = Signal()
    runs_loaded = Signal()
    run_stopped = Signal(str)  # done | cancelled | failed
    run_opened = Signal(int)
    exported = Signal(str)
    compared = Signal()
    submitted = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.setup: StressSetup | None = None
        self.custom_ratios: dict[str, tuple[float, float]] = {}
        self.custom_file = ""
        self.run_task: Task | None = None
        self.open_task: Task | None = None
        self.side_task: Task | None = None
        self.last_run_id: int | None = None
        self._seen_progress = False
        self._setup_load = CoalescedLoad(self._start_setup, self._setup_done, self._load_failed)
        self._runs_load = CoalescedLoad(self._start_runs, self._runs_done, self._load_failed)
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._poll_cancelled)
        self._build_ui()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        bar = QHBoxLayout()
        self.scenario_label = QLabel("Scenario: –")
        self.scenario_label.setProperty("role", "figure")
        self.scenario_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.scenario_label.setMinimumWidth(160)
        bar.addWidget(self.scenario_label, 1)
        curve = QLabel("Curve to")
        curve.setProperty("role", "caption")
        bar.addWidget(curve)
        self.curve_to = QSpinBox()
        self.curve_to.setRange(0, 100)
        self.curve_to.setValue(50)
        self.curve_to.setSuffix(" %")
        self.curve_to.setToolTip("the shock curve: total call amount for falls across the board up to this size")
        self.curve_step = QSpinBox()
        self.curve_step.setRange(1, 50)
        self.curve_step.setValue(5)
        self.curve_step.setPrefix("step ")
        self.curve_step.setSuffix(" %")
        bar.addWidget(self.curve_to)
        bar.addWidget(self.curve_step)
        self.custom_button = QPushButton("Custom data…")
        self.custom_button.setToolTip("margin ratios from a file (code, im_ratio, mm_ratio; xlsx or csv) "
                                      "used by the run instead of the live ones")
        self.custom_button.clicked.connect(lambda: self.load_custom_data(None))
        bar.addWidget(self.custom_button)
        self.custom_label = QLabel("live ratios")
        self.custom_label.setProperty("role", "caption")
        bar.addWidget(self.custom_label)
        self.live_button = QPushButton("Use live ratios")
        self.live_button.clicked.connect(self.clear_custom_data)
        self.live_button.hide()
        bar.addWidget(self.live_button)
        self.run_button = QPushButton("▶ &Run")
        self.run_button.setStyleSheet("font-weight: 600; padding: 3px 14px")
        self.run_button.clicked.connect(lambda: self.start_run())
        bar.addWidget(self.run_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(260)
        self.progress.setMinimumWidth(200)
        self.progress.setFormat("%p%")
        self.progress.hide()
        bar.addWidget(self.progress)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_run)
        self.cancel_button.hide()
        bar.addWidget(self.cancel_button)
        lay.addLayout(bar)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        lay.addWidget(self.message)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.editor = ScenarioEditor()
        self.exemptions = ExemptionsPanel()
        self.runs = RunsPanel()
        self.results = ResultsView()
        self.compare = ComparePanel()
        for w, title in ((self.editor, "Scenarios"), (self.exemptions, "Standing exemptions"), (self.runs, "Runs"),
                         (self.results, "Results"), (self.compare, "Compare")):
            self.tabs.addTab(w, title)
        lay.addWidget(self.tabs, 1)
        self.editor.changed.connect(self.refresh)
        self.editor.scenario_edited.connect(self._update_bar)
        self.exemptions.submitted.connect(self._exemption_submitted)
        self.runs.open_requested.connect(self.open_run)
        self.runs.rerun_requested.connect(self.rerun)
        self.runs.export_requested.connect(lambda rid: self.export_run(rid, None))
        self.runs.compare_requested.connect(self.compare_runs)
        self._update_bar()

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        for page in (self.editor, self.exemptions):
            page.set_context(store, user, tasks)
        self.results.tasks = tasks
        self.refresh()

    def stop(self) -> None:
        self._setup_load.cancel()
        self._runs_load.cancel()
        self._poll.stop()
        for t in (self.run_task, self.open_task, self.side_task):
            if t is not None:
                t.cancel()
        self.run_task = self.open_task = self.side_task = None
        for page in (self.editor, self.exemptions, self.results):
            page.stop()

    def refresh(self) -> None:
        """Re-read scenarios, exemptions and runs (connect `ApprovalsDock.requests_changed` here)."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._setup_load.request()
        self._runs_load.request()

    def refresh_runs(self) -> None:
        if self.tasks is not None:
            self._runs_load.request()

    def _start_setup(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(load_setup, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="stress scenarios")

    def _start_runs(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(run_rows, self.store, on_done=on_done, on_error=on_error, name="stress runs")

    def _setup_done(self, setup: StressSetup) -> None:
        self.setup = setup
        self.editor.set_setup(setup)
        self.exemptions.set_setup(setup)
        self._update_bar()
        self.setup_loaded.emit()

    def _runs_done(self, rows: list[dict[str, Any]]) -> None:
        self.runs.set_rows(rows)
        self.runs_loaded.emit()

    def _load_failed(self, e: BaseException) -> None:
        set_tone(self.message, f"Refresh failed: {why(e)}")

    def _exemption_submitted(self, req_id: int) -> None:
        self.submitted.emit(req_id)
        self.refresh()

    # ------------------------------------------------------------------ the run bar
    def sweep(self) -> list[float]:
        return sweep_sizes(self.curve_to.value(), self.curve_step.value())

    def _update_bar(self) -> None:
        sc, problem = self.editor.current()
        running = self.run_task is not None
        if sc is None:
            self.scenario_label.setText(f"Scenario: cannot run — {problem}")
            self.scenario_label.setStyleSheet(f"color: {ERROR_COLOUR}")
            self.scenario_label.setToolTip(problem)
        else:
            self.scenario_label.setText(f"Scenario: {sc.name} · {len(sc.shocks)} shock"
                                        f"{'s' if len(sc.shocks) != 1 else ''}"
                                        + (f" · {len(sc.fx_shocks)} FX" if sc.fx_shocks else ""))
            self.scenario_label.setStyleSheet("")
            self.scenario_label.setToolTip("the scenario in the Scenarios editor; standing exemptions are added")
        self.run_button.setEnabled(sc is not None and not running and self.setup is not None)
        for w in (self.custom_button, self.live_button, self.curve_to, self.curve_step):
            w.setEnabled(not running)
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.runs.busy = running
        self.runs.update_buttons()

    def start_run(self, sweep: list[float] | None = None) -> bool:
        """Run the editor's scenario (with the standing exemptions) in a worker; False when refused."""
        if self.store is None or self.tasks is None or self.run_task is not None:
            return False
        sc, problem = self.editor.current()
        if sc is None:
            set_tone(self.message, f"Cannot run: {problem}")
            return False
        sizes = self.sweep() if sweep is None else sweep
        self._start(risk_runs.run_stress, (self.store, self.user, sc, None, self.custom_ratios or None, sizes),
                    f"Running “{sc.name}”" + (f" with custom ratios ({self.custom_file})" if self.custom_ratios
                                              else ""))
        return True

    def rerun(self, run_id: int) -> bool:
        """Run a stored run again on exactly its inputs and book (a new run)."""
        if self.store is None or self.tasks is None or self.run_task is not None:
            return False
        self._start(risk_runs.rerun, (self.store, self.user, run_id), f"Re-running run #{run_id}")
        return True

    def _start(self, fn: Any, args: tuple[Any, ...], text: str) -> None:
        assert self.tasks is not None
        set_tone(self.message, text + "…", "info")
        self.progress.setValue(0)
        self.progress.setFormat("%p%  starting")
        self._seen_progress = False
        self.run_task = self.tasks.run(fn, *args, on_done=self._run_done, on_error=self._run_failed,
                                       on_progress=self._run_progress, name="stress run")
        self._update_bar()

    def _run_progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(f"%p%  {text}")
        if not self._seen_progress:  # the run's row exists now: list it as running
            self._seen_progress = True
            self.refresh_runs()

    def cancel_run(self) -> None:
        """Stop the running run at its next check; it is stored as cancelled."""
        if self.run_task is None:
            return
        self.run_task.cancel()
        self.cancel_button.setEnabled(False)
        set_tone(self.message, "Cancelling…", "warn")
        self._poll.start()

    def _poll_cancelled(self) -> None:
        task = self.run_task
        if task is not None and not task.done:
            return
        self._poll.stop()
        self.run_task = None
        self.cancel_button.setEnabled(True)
        set_tone(self.message, "Run cancelled: listed under Runs as cancelled, with no results.", "warn")
        self._update_bar()
        self.refresh_runs()
        self.run_stopped.emit("cancelled")

    def _run_done(self, run_id: int) -> None:
        self.run_task = None
        self.last_run_id = int(run_id)
        set_tone(self.message, f"Run #{run_id} done.", "ok")
        self._update_bar()
        self.refresh_runs()
        self.open_run(int(run_id))
        self.run_stopped.emit("done")

    def _run_failed(self, e: BaseException) -> None:
        self.run_task = None
        set_tone(self.message, f"Run failed: {why(e)}")
        self._update_bar()
        self.refresh_runs()
        self.run_stopped.emit("failed")

    # ------------------------------------------------------------------ custom data
    def load_custom_data(self, path: str | None) -> None:
        """Read margin ratios from ``path`` (xlsx / csv: code, im_ratio, mm_ratio) for the next runs."""
        if path is None:
            ask_path(self, "Custom margin ratios", False, "Ratios (*.xlsx *.csv)", "", self.load_custom_data)
            return
        if self.tasks is None:
            return
        set_tone(self.message, f"Reading {Path(path).name}…", "info")
        self.side_task = self.tasks.run(read_ratios_checked, path, self.setup.book if self.setup else None,
                                        on_done=lambda r: self._custom_loaded(path, r),
                                        on_error=lambda e: self._side_failed("Custom data not used", e),
                                        name="custom ratios")

    def _custom_loaded(self, path: str, ratios: dict[str, tuple[float, float]]) -> None:
        self.side_task = None
        self.custom_ratios, self.custom_file = ratios, Path(path).name
        n = f"{len(ratios)} securit{'y' if len(ratios) == 1 else 'ies'}"
        self.custom_label.setText(f"custom ratios: {n} ({self.custom_file})")
        self.custom_label.setStyleSheet("color: #e3b341")
        self.live_button.show()
        set_tone(self.message, f"The next runs use the ratios of {n} from {self.custom_file} instead of the live "
                               "ones.", "info")

    def clear_custom_data(self) -> None:
        self.custom_ratios, self.custom_file = {}, ""
        self.custom_label.setText("live ratios")
        self.custom_label.setStyleSheet("")
        self.live_button.hide()
        set_tone(self.message, "")

    def _side_failed(self, what: str, e: BaseException) -> None:
        self.side_task = None
        set_tone(self.message, f"{what}: {why(e)}")

    # ------------------------------------------------------------------ open, export, compare
    def open_run(self, run_id: int) -> None:
        """Read a stored run (worker) and show it under Results."""
        if self.store is None or self.tasks is None:
            return
        if self.open_task is not None:
            self.open_task.cancel()
        set_tone(self.results.message, f"Opening run #{run_id}…", "info")
        self.tabs.setCurrentWidget(self.results)
        self.open_task = self.tasks.run(open_run, self.store, int(run_id), on_done=self._opened,
                                        on_error=self._open_failed, name="open stress run")

    def _opened(self, view: RunView) -> None:
        self.open_task = None
        self.results.show_run(view)
        self.tabs.setCurrentWidget(self.results)
        self.run_opened.emit(view.id)

    def _open_failed(self, e: BaseException) -> None:
        self.open_task = None
        set_tone(self.results.message, f"Cannot open the run: {why(e)}")

    def export_run(self, run_id: int, path: str | None) -> None:
        """Write the run to an xlsx file (Summary, Accounts, Top shortfalls); asks for a file when None."""
        if self.store is None or self.tasks is None:
            return
        if path is None:
            ask_path(self, "Export run to Excel", True, "Excel (*.xlsx)", f"stress-run-{run_id}.xlsx",
                     lambda p: self.export_run(run_id, p))
            return
        if not path.lower().endswith(".xlsx"):
            path += ".xlsx"
        set_tone(self.message, f"Exporting run #{run_id}…", "info")

        def done(_r: Any) -> None:
            self.side_task = None
            set_tone(self.message, f"Run #{run_id} exported to {path}", "ok")
            self.exported.emit(path)

        self.side_task = self.tasks.run(risk_runs.export_run, self.store, int(run_id), path, on_done=done,
                                        on_error=lambda e: self._side_failed("Export failed", e),
                                        name="export stress run")

    def compare_runs(self, a: int, b: int) -> None:
        """Two runs side by side under Compare (read in a worker)."""
        if self.store is None or self.tasks is None:
            return
        set_tone(self.message, f"Comparing runs #{a} and #{b}…", "info")

        def done(cmp: dict[str, Any]) -> None:
            self.side_task = None
            set_tone(self.message, "")
            self.compare.show_compare(cmp)
            self.tabs.setCurrentWidget(self.compare)
            self.compared.emit()

        self.side_task = self.tasks.run(risk_runs.compare, self.store, int(a), int(b), on_done=done,
                                        on_error=lambda e: self._side_failed("Cannot compare", e),
                                        name="compare stress runs")


__all__ = ["StressDock"]
