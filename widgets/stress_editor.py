"""The scenario editor: the scenarios to choose from (saved ones, newest version, and the shipped ones
marked "shipped"), their shocks, FX shocks and exemptions, and Save (a new version), Duplicate,
Delete, Import / Export JSON.

Shocks can be typed into the table or built by the desk's run modes — by market, by stock group,
by single stock (or index level, or all securities): pick the mode, the target and the change, "Add
shock". The editor's content is checked against the book as it changes, with the same JSON path a
scenario file would get (``shocks[2].change: …``) and the bad row tinted. Every store and file
access runs on the task runner; the check itself is dictionary look-ups on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from services import stress
from services.lazy import lazy_module
from services.stress_view import (
    SAVED,
    SHIPPED,
    ScenarioEntry,
    StressSetup,
    percent_text,
    row_of_path,
    scenario_from_rows,
    split_codes,
    split_target,
    write_scenario,
)
from widgets.records import ERROR_COLOUR, MUTED_TEXT, Field, RecordTableModel, set_tone
from widgets.stress_shocks import ShockEditor
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services import risk_runs
    from services.auth import User
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    risk_runs = lazy_module("services.risk_runs")

def ask_path(parent: QWidget, title: str, save: bool, name_filter: str, default: str,
             on_path: Callable[[str], Any]) -> None:
    """A file chosen through a non-modal dialog (or, in tests, the dialog service's answer)."""
    from app.dialogs import DialogRequest, dialogs

    service = dialogs()
    if not service.interactive:
        service.ask(DialogRequest("save_file" if save else "open_file", title, title,
                                  data={"default": default, "filter": name_filter},
                                  on_answer=lambda p: on_path(str(p)) if p else None))
        return
    dlg = QFileDialog(parent, title, default, name_filter)
    dlg.setAcceptMode(QFileDialog.AcceptMode.AcceptSave if save else QFileDialog.AcceptMode.AcceptOpen)
    if not save:
        dlg.setFileMode(QFileDialog.FileMode.ExistingFile)
    dlg.fileSelected.connect(on_path)
    dlg.finished.connect(dlg.deleteLater)
    dlg.open()


def why(e: BaseException) -> str:
    """A refusal as the user reads it (the service's own words for the errors it means)."""
    from services.changes import ChangeError
    from widgets.records import error_text

    if isinstance(e, stress.ScenarioError | risk_runs.RunError | ChangeError | OSError):
        return str(e)
    return error_text(e)


def _entry_fields() -> list[Field]:
    return [Field("Scenario", "name"),
            Field("Source", "source", foreground=lambda v: MUTED_TEXT if v == SHIPPED else None,
                  tooltip="shipped: predefined (resources/scenarios and the book's top collateral); "
                          "saved: the desk's, versioned"),
            Field("Version", "version", "number", fmt=lambda v: "" if v != v else f"v{int(v)}"),
            Field("Shocks", "shocks"),
            Field("Saved by", "saved_by"),
            Field("Saved at", "saved_at", "time", tooltip="Hong Kong time")]


def _version_fields() -> list[Field]:
    return [Field("Version", "version", "number", fmt=lambda v: "" if v != v else f"v{int(v)}"),
            Field("Saved by", "saved_by"), Field("Saved at", "saved_at", "time", tooltip="Hong Kong time"),
            Field("Shocks", "shocks")]


class ScenarioEditor(QWidget):
    """Scenario list, editor and version history; `changed` asks the dock to reload the setup."""

    changed = Signal()
    scenario_edited = Signal()
    busy_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.setup: StressSetup | None = None
        self.entry: ScenarioEntry | None = None
        self.task: Task | None = None
        self._delete_armed = ""
        self._select_after: tuple[str, str] | None = None
        self._loading = False
        self._versions: dict[int, dict[str, Any]] = {}
        self._build_ui()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 4, 0, 0)
        split = QSplitter(Qt.Orientation.Horizontal)
        lay.addWidget(split)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        self.list_model = RecordTableModel(_entry_fields(), self, key="key")
        self.list_view = make_table(self.list_model)
        self.list_view.setObjectName("stress_scenarios")
        self.list_view.sortByColumn(1, Qt.SortOrder.AscendingOrder)  # saved first, then shipped as shipped
        self.list_view.selectionModel().currentRowChanged.connect(self._picked)
        ll.addWidget(self.list_view, 1)
        buttons, files = QHBoxLayout(), QHBoxLayout()
        self.new_button = self._button("New", self.new_scenario, buttons)
        self.duplicate_button = self._button("Duplicate", self.duplicate, buttons)
        self.delete_button = self._button("Delete", self.delete, buttons)
        self.import_button = self._button("Import JSON…", lambda: self.import_file(None), files)
        self.export_button = self._button("Export JSON…", lambda: self.export_file(None), files)
        ll.addLayout(buttons)
        ll.addLayout(files)
        split.addWidget(left)

        self.shock_editor = ShockEditor()
        self.shocks, self.fx = self.shock_editor.shocks, self.shock_editor.fx
        self.shock_editor.edited.connect(self._edited)
        self.shock_editor.problem.connect(lambda text: set_tone(self.message, text))
        split.addWidget(self.shock_editor)
        split.addWidget(self._build_form())
        split.setSizes([380, 420, 380])

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        grid = QGridLayout(form)
        grid.setContentsMargins(8, 6, 8, 6)
        grid.setVerticalSpacing(4)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("scenario name")
        self.description = QLabel("")
        self.description.setWordWrap(True)
        self.description.setProperty("role", "caption")
        self.exempt_securities = QLineEdit()
        self.exempt_securities.setPlaceholderText("not shocked, e.g. 700.HK, 5.HK")
        self.exempt_accounts = QLineEdit()
        self.exempt_accounts.setPlaceholderText("left out of the summary")
        for r, (caption, w) in enumerate((("&Name", self.name_edit), ("", self.description),
                                          ("Exempt &securities", self.exempt_securities),
                                          ("Exempt &accounts", self.exempt_accounts))):
            lab = QLabel(caption)
            lab.setBuddy(w)
            grid.addWidget(lab, r, 0)
            grid.addWidget(w, r, 1)
        self.validation = QLabel("")
        self.validation.setWordWrap(True)
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.hide()
        grid.addWidget(self.validation, 4, 0, 1, 2)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 5, 0, 1, 2)
        self.save_button = QPushButton("&Save (new version)")
        self.save_button.setAutoDefault(False)
        self.save_button.clicked.connect(self.save)
        grid.addWidget(self.save_button, 6, 1)
        self.versions_label = QLabel("Version history")
        self.versions_label.setProperty("role", "caption")
        self.versions_label.setWordWrap(True)
        grid.addWidget(self.versions_label, 7, 0, 1, 2)
        self.versions = RecordTableModel(_version_fields(), self, key="version")
        self.versions_view = make_table(self.versions)
        self.versions_view.setObjectName("stress_scenario_versions")
        self.versions_view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.versions_view.setToolTip("double-click a version to load it into the editor")
        self.versions_view.doubleClicked.connect(self._version_activated)
        grid.addWidget(self.versions_view, 8, 0, 1, 2)
        grid.setRowStretch(8, 1)
        grid.setColumnStretch(1, 1)
        self.name_edit.textChanged.connect(self._edited)
        self.exempt_securities.textChanged.connect(self._edited)
        self.exempt_accounts.textChanged.connect(self._edited)
        return form

    def _button(self, text: str, slot: Callable[[], Any], lay: QHBoxLayout) -> QPushButton:
        b = QPushButton(text)
        b.setAutoDefault(False)
        b.clicked.connect(lambda _c=False: slot())
        lay.addWidget(b)
        return b

    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.task = None

    def set_setup(self, setup: StressSetup) -> None:
        """New scenarios, codes and exemptions from the dock's background read."""
        first = self.setup is None
        self.setup = setup
        rows = [{"key": e.key, "name": e.name, "source": e.source, "version": e.version, "saved_by": e.saved_by,
                 "saved_at": e.saved_at, "shocks": e.shock_text} for e in setup.entries]
        self.list_model.set_records(rows)
        if first:
            fit_columns(self.list_view, 220)
        self.shock_editor.set_setup(setup)
        after, self._select_after = self._select_after, None
        want = after or ((self.entry.name, self.entry.source) if self.entry is not None else None)
        hit = next((e for e in setup.entries if (e.name, e.source) == want), None)
        if hit is not None:
            self.select(hit.name, hit.source, load=after is not None)
            self.entry = hit  # a refresh keeps the user's unsaved edits; a save loads what was saved
        elif first and setup.entries:
            self.select(setup.entries[0].name, setup.entries[0].source)
        self._check()

    def select(self, name: str, source: str | None = None, load: bool = True) -> bool:
        """Select (and load into the editor) the scenario of this name (saved before shipped)."""
        if self.setup is None:
            return False
        hit = next((e for e in self.setup.entries if e.name == name and source in (None, e.source)), None)
        if hit is None:
            return False
        row = self.list_model.row_of(hit.key)
        self.list_view.selectionModel().blockSignals(True)
        self.list_view.selectRow(row)
        self.list_view.selectionModel().blockSignals(False)
        if load:
            self._load_entry(hit)
        return True

    # ------------------------------------------------------------------ loading into the editor
    def _picked(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rec = self.list_model.record_at(current.row()) if current.isValid() else None
        if rec is not None and self.setup is not None:
            self._load_entry(self.setup.entries[int(rec["key"])])

    def _load_entry(self, e: ScenarioEntry) -> None:
        self.entry = e
        self.load_scenario(e.scenario, e.description or (f"saved v{e.version} by {e.saved_by}" if e.version else ""))
        self._disarm()
        self.versions.set_records([])
        self.versions_label.setText("Version history" + ("" if e.source == SAVED else " — shipped scenarios "
                                                         "have none: Save keeps a copy under the desk's name"))
        if e.source == SAVED:
            self._run(risk_runs.scenario_versions, (self.store, e.name), self._versions_loaded, "versions", quiet=True)

    def load_scenario(self, sc: stress.Scenario, description: str = "") -> None:
        self._loading = True
        self.name_edit.setText(sc.name)
        self.description.setText(description)
        self.description.setVisible(bool(description))
        self.shocks.set_rows([[*split_target(t), percent_text(c)] for t, c in sc.shocks])
        self.fx.set_rows([[cur, percent_text(c)] for cur, c in sc.fx_shocks])
        self.exempt_securities.setText(", ".join(sc.exempt_securities))
        self.exempt_accounts.setText(", ".join(sc.exempt_accounts))
        self._loading = False
        self._changed()

    def new_scenario(self) -> None:
        """An empty scenario to fill in (nothing is saved until Save)."""
        self.entry = None
        self.list_view.clearSelection()
        self.versions.set_records([])
        self.versions_label.setText("Version history")
        self.load_scenario(stress.Scenario("New scenario", [("all", -0.1)]), "new — Save keeps it")
        self.name_edit.setFocus()
        self.name_edit.selectAll()

    def _versions_loaded(self, versions: list[dict[str, Any]]) -> None:
        self._versions = {int(v["version"]): v for v in versions}
        self.versions.set_records([{"version": v["version"], "saved_by": v["saved_by"], "saved_at": v["saved_at"],
                                    "shocks": len(v["scenario"].shocks)} for v in versions])
        self.versions_label.setText(f"Version history of {self.entry.name if self.entry else ''} "
                                    f"({len(versions)})")

    def _version_activated(self, index: QModelIndex) -> None:
        rec = self.versions.record_at(index.row())
        if rec is None:
            return
        v = self._versions[int(rec["version"])]
        self.load_scenario(v["scenario"], f"version {v['version']} loaded — Save makes it the newest")

    # ------------------------------------------------------------------ the content
    def current(self) -> tuple[stress.Scenario | None, str]:
        """The editor's scenario checked against the book, or (None, the JSON path and problem)."""
        try:
            sc = scenario_from_rows(self.name_edit.text(), [(r[0], r[1], r[2]) for r in self.shocks.rows],
                                    [(r[0], r[1]) for r in self.fx.rows], split_codes(self.exempt_securities.text()),
                                    split_codes(self.exempt_accounts.text()),
                                    self.setup.book if self.setup is not None else None)
        except stress.ScenarioError as e:
            return None, str(e)
        return sc, ""

    def _edited(self) -> None:
        """A user edit: the last action's message no longer applies."""
        if self._loading:
            return
        if self.task is None:
            self.message.hide()
        self._changed()

    def _changed(self) -> None:
        self._disarm()
        self._check()
        self.scenario_edited.emit()

    def _check(self) -> None:
        sc, problem = self.current()
        table, row = row_of_path(problem)
        self.shocks.mark_bad(row if table == "shocks" else -1)
        self.fx.mark_bad(row if table == "fx_shocks" else -1)
        self.validation.setText(problem)
        self.validation.setVisible(bool(problem))
        busy = self.task is not None
        saved = self.entry is not None and self.entry.source == SAVED
        self.save_button.setEnabled(sc is not None and not busy and self.store is not None)
        for b in (self.duplicate_button, self.delete_button):
            b.setEnabled(saved and not busy)
        self.import_button.setEnabled(not busy)
        self.export_button.setEnabled(sc is not None and not busy)

    # ------------------------------------------------------------------ actions (workers)
    def _run(self, fn: Any, args: tuple[Any, ...], done: Callable[[Any], None], what: str,
             quiet: bool = False) -> None:
        if self.tasks is None or self.store is None:
            return
        if self.task is not None:
            self.task.cancel()
        if not quiet:
            set_tone(self.message, f"{what.capitalize()}…", "info")

        def finished(result: Any) -> None:
            self.task = None
            self.busy_changed.emit(False)
            done(result)
            self._check()

        def failed(e: BaseException) -> None:
            self.task = None
            self.busy_changed.emit(False)
            set_tone(self.message, f"{what.capitalize()}: {why(e)}")
            self._check()

        self.task = self.tasks.run(fn, *args, on_done=finished, on_error=failed, name=f"stress {what}")
        self.busy_changed.emit(True)
        self._check()

    def save(self) -> None:
        """Save the editor's scenario as a new version of its name."""
        sc, problem = self.current()
        if sc is None:
            set_tone(self.message, f"Not saved: {problem}")
            return
        self._select_after = (sc.name, SAVED)
        self._run(risk_runs.save_scenario, (self.store, self.user, sc),
                  lambda v: self._done(f"Saved “{sc.name}” as version {v}"), f"saving {sc.name}")

    def duplicate(self) -> None:
        if self.entry is None or self.entry.source != SAVED or self.setup is None:
            return
        names = {e.name for e in self.setup.entries if e.source == SAVED}
        base, n = f"{self.entry.name} (copy)", 2
        new = base
        while new in names:
            new, n = f"{base[:-1]} {n})", n + 1
        self._select_after = (new, SAVED)
        self._run(risk_runs.duplicate_scenario, (self.store, self.user, self.entry.name, new),
                  lambda _v: self._done(f"Duplicated as “{new}”"), "duplicating")

    def delete(self) -> None:
        """Delete the selected saved scenario (asks once more on the button first)."""
        if self.entry is None or self.entry.source != SAVED:
            return
        name = self.entry.name
        if self._delete_armed != name:
            self._delete_armed = name
            self.delete_button.setText("Confirm delete")
            set_tone(self.message, f"Delete “{name}”? Its versions stay for the runs that used them. "
                                   "Press Confirm delete.", "warn")
            return
        self._disarm()
        self.entry = None
        self._run(risk_runs.delete_scenario, (self.store, name), lambda _r: self._done(f"Deleted “{name}”"),
                  "deleting")

    def _disarm(self) -> None:
        self._delete_armed = ""
        self.delete_button.setText("Delete")

    def _done(self, text: str) -> None:
        set_tone(self.message, text, "ok")
        self.changed.emit()

    def import_file(self, path: str | None) -> None:
        """Load a scenario file into the editor (refused inline with the JSON path of a bad value)."""
        if path is None:
            ask_path(self, "Import scenario", False, "Scenario (*.json)", "", self.import_file)
            return
        book = self.setup.book if self.setup is not None else None
        self._run(stress.load_scenario, (path, book), self._imported, "importing")

    def _imported(self, sc: stress.Scenario) -> None:
        self.entry = None
        self.list_view.clearSelection()
        self.versions.set_records([])
        self.load_scenario(sc, "imported from a file — Save keeps it as a version")
        set_tone(self.message, f"Imported “{sc.name}”: Save to keep it", "ok")

    def export_file(self, path: str | None) -> None:
        sc, problem = self.current()
        if sc is None:
            set_tone(self.message, f"Not exported: {problem}")
            return
        if path is None:
            slug = "".join(ch if ch.isalnum() else "-" for ch in sc.name).strip("-").lower() or "scenario"
            ask_path(self, "Export scenario", True, "Scenario (*.json)", f"{slug}.json", self.export_file)
            return
        if not path.lower().endswith(".json"):
            path += ".json"
        self._run(write_scenario, (sc, path), lambda p: set_tone(self.message, f"Exported to {p}", "ok"), "exporting")
