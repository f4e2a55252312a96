"""The indices and levels dock (issue 6, "Index management"; RISK_METHODS §4).

Indices: each index's code, name, market and level; add, edit and delete are four-eyes change
requests of kind ``index``, and "Initialise presets" proposes the main Hong Kong and US indices of
``resources/indices.json`` that the store does not have yet (`services.indices`), never touching an
index that exists. Members: the securities of one index, added or removed as requests of kind
``index_member``, or in bulk through File ▸ Import (kind ``index-members``). Securities: every
security's stock level as its membership derives it. Level weighting: market value share per level
and the default level declines, with "Simulate margin call" (`widgets.level_weighting_view`).

Every database and engine call runs on the task runner; the GUI thread only shows snapshots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from models.book import INDEX_LEVELS
from services.lazy import lazy_module
from widgets.formatting import CENTER
from widgets.index_members import MembersPage, SecuritiesPage, caption
from widgets.level_weighting_view import LevelWeightingView
from widgets.records import (
    ERROR_COLOUR,
    MUTED_TEXT,
    OVERDUE_TEXT,
    CoalescedLoad,
    Field,
    RecordTableModel,
    error_text,
    set_tone,
)
from widgets.tables import fit_columns, make_table

if TYPE_CHECKING:
    from app.tasks import Task, TaskRunner
    from services import indices as idx
    from services import level_weighting
    from services.auth import User
    from services.store import Store
else:  # imported on first use: the window paints before SQLAlchemy is loaded (app.cold_start)
    idx = lazy_module("services.indices")
    level_weighting = lazy_module("services.level_weighting")


def _level(v: Any) -> str:
    return "" if v != v else str(int(v))


def index_fields() -> list[Field]:
    return [Field("Code", "code"), Field("Name", "name"), Field("Market", "market", align=CENTER),
            Field("Level", "level", "number", fmt=_level, align=CENTER),
            Field("Members", "members", "number", fmt=_level),
            Field("Source", "preset_text", tooltip="preset (Initialise) or added by the desk"),
            Field("Request", "request", foreground=lambda v: OVERDUE_TEXT if v else None),
            Field("Membership requests", "member_requests", foreground=lambda v: OVERDUE_TEXT if v else None)]


class IndexDock(QWidget):
    """Indices, members, derived levels and the level weighting; changes only as change requests."""

    submitted = Signal(int)  # a new change request's id
    refreshed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store: Store | None = None
        self.user: User | None = None
        self.tasks: TaskRunner | None = None
        self.snapshot: idx.IndicesSnapshot | None = None
        self.busy: Task | None = None  # the one submission in flight
        self.import_dialog: Any = None
        self._weighting_stale = True
        self._load = CoalescedLoad(self._start_load, self._loaded, self._load_failed)
        self._weighting = CoalescedLoad(self._start_weighting, self._weighting_done, self._weighting_failed)
        self._fitted = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 4)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self._build_indices(), "Indices")
        self.members = MembersPage(self)
        self.members.import_requested.connect(self.open_import)
        self.tabs.addTab(self.members, "Members")
        self.securities = SecuritiesPage()
        self.tabs.addTab(self.securities, "Securities and levels")
        self.weighting = LevelWeightingView()
        self.weighting.refresh_requested.connect(self.refresh_weighting)
        self.tabs.addTab(self.weighting, "Level weighting")
        self.tabs.currentChanged.connect(self._tab_changed)
        lay.addWidget(self.tabs)

    # ------------------------------------------------------------------ the indices page
    def _build_indices(self) -> QWidget:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(4)
        bar = QHBoxLayout()
        about = caption("Index levels — a security's level is the lowest level of any index holding it; "
                        "in no index: level 3")
        about.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        about.setToolTip(about.text())
        bar.addWidget(about, 1)
        self.status = caption("")
        bar.addWidget(self.status)
        self.initialise_button = QPushButton("&Initialise presets")
        self.initialise_button.setToolTip("propose the main Hong Kong and US indices (resources/indices.json) "
                                          "that are missing; existing indices are left alone")
        self.initialise_button.clicked.connect(self.initialise)
        bar.addWidget(self.initialise_button)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        bar.addWidget(self.refresh_button)
        lay.addLayout(bar)
        self.index_model = RecordTableModel(index_fields(), self,
                                            row_foreground=lambda r: MUTED_TEXT if r.get("new") else None)
        self.index_view = make_table(self.index_model)
        self.index_view.sortByColumn(3, Qt.SortOrder.AscendingOrder)
        self.index_view.selectionModel().currentRowChanged.connect(self._index_changed)
        self.index_view.doubleClicked.connect(lambda _i: self._show_members_of_selected())
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.index_view)
        split.addWidget(self._build_form())
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        lay.addWidget(split, 1)
        return page

    def _build_form(self) -> QFrame:
        form = QFrame()
        form.setProperty("role", "card")
        form.setMinimumWidth(340)
        grid = QGridLayout(form)
        grid.setContentsMargins(10, 6, 10, 6)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        self.form_title = QLabel("Add an index, or select one to change it")
        self.form_title.setStyleSheet("font-weight: 600")
        self.form_title.setWordWrap(True)
        grid.addWidget(self.form_title, 0, 0, 1, 4)
        self.code_edit, self.name_edit, self.market_edit = QLineEdit(), QLineEdit(), QLineEdit()
        self.code_edit.setPlaceholderText("e.g. HSI")
        self.name_edit.setPlaceholderText("e.g. Hang Seng Index")
        self.market_edit.setPlaceholderText("HK")
        self.market_edit.setMaximumWidth(60)
        self.level_combo = QComboBox()
        for lv in INDEX_LEVELS:
            self.level_combo.addItem(f"Level {lv}", lv)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("reason (shown to the checker)")
        grid.addWidget(QLabel("Code"), 1, 0)
        grid.addWidget(self.code_edit, 1, 1)
        grid.addWidget(QLabel("Market"), 1, 2)
        grid.addWidget(self.market_edit, 1, 3)
        grid.addWidget(QLabel("Name"), 2, 0)
        grid.addWidget(self.name_edit, 2, 1, 1, 3)
        grid.addWidget(QLabel("Level"), 3, 0)
        grid.addWidget(self.level_combo, 3, 1)
        grid.addWidget(QLabel("Reason"), 4, 0)
        grid.addWidget(self.reason_edit, 4, 1, 1, 3)
        grid.setColumnStretch(1, 1)
        self.validation = QLabel("")
        self.validation.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.validation.setWordWrap(True)
        grid.addWidget(self.validation, 5, 0, 1, 4)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("&Add index")
        self.add_button.clicked.connect(self.add_index)
        self.change_button = QPushButton("&Change")
        self.change_button.clicked.connect(self.change_index)
        self.delete_button = QPushButton("&Delete")
        self.delete_button.clicked.connect(self.delete_index)
        for b in (self.add_button, self.change_button, self.delete_button):
            b.setAutoDefault(False)
            buttons.addWidget(b)
        grid.addLayout(buttons, 6, 0, 1, 4)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        grid.addWidget(self.message, 7, 0, 1, 4)
        grid.setRowStretch(8, 1)
        for e in (self.code_edit, self.name_edit, self.market_edit, self.reason_edit):
            e.textChanged.connect(lambda _t: self._edited())
        self.level_combo.currentIndexChanged.connect(lambda _i: self._edited())
        return form

    # ------------------------------------------------------------------ wiring
    def set_context(self, store: Store, user: User, tasks: TaskRunner) -> None:
        self.store, self.user, self.tasks = store, user, tasks
        self.weighting.set_tasks(tasks)
        self.refresh()

    def stop(self) -> None:
        self._load.cancel()
        self._weighting.cancel()
        self.weighting.stop()
        if self.busy is not None:
            self.busy.cancel()
        self.busy = None

    def refresh(self) -> None:
        """Read indices, members and levels again (connected to `ApprovalsDock.requests_changed`); the
        weighting (a whole-book read) follows only while its page is shown, else when it is next shown."""
        if self.store is None or self.user is None or self.tasks is None:
            return
        self._load.request()
        self._weighting_stale = True
        if self.tabs.currentWidget() is self.weighting:
            self.refresh_weighting()

    def refresh_weighting(self) -> None:
        if self.store is not None and self.tasks is not None:
            self._weighting_stale = False
            self._weighting.request()

    def _tab_changed(self, _i: int) -> None:
        if self.tabs.currentWidget() is self.weighting and self._weighting_stale:
            self.refresh_weighting()

    def _start_load(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(idx.load_indices, self.store, self.user, on_done=on_done, on_error=on_error,
                              name="indices")

    def _loaded(self, snap: idx.IndicesSnapshot) -> None:
        self.snapshot = snap
        self.index_model.set_records(snap.indices)
        if not self._fitted and snap.indices:
            fit_columns(self.index_view, 240)
            self._fitted = True
        n_pending = sum(1 for r in snap.indices if r["request_id"])
        self.status.setStyleSheet("")
        self.status.setText(f"{sum(1 for r in snap.indices if not r['new'])} indices"
                            + (f" · {n_pending} pending" if n_pending else "")
                            + ("" if snap.may_request_index else " · view only"))
        missing = snap.missing_presets
        self.initialise_button.setEnabled(bool(missing) and snap.may_request_index and self.busy is None)
        self.initialise_button.setToolTip(f"propose the missing presets: {', '.join(missing)}" if missing else
                                          "every preset index is present or requested")
        self.members.loaded(snap)
        self.securities.loaded(snap)
        self._update_form()
        self.refreshed.emit()

    def _load_failed(self, e: BaseException) -> None:
        self.status.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.status.setText(f"refresh failed: {error_text(e)}")

    def _start_weighting(self, on_done: Any, on_error: Any) -> Any:
        assert self.tasks is not None
        return self.tasks.run(level_weighting.load_weighting, self.store, on_done=on_done, on_error=on_error,
                              on_progress=self.weighting.show_loading, name="level weighting")

    def _weighting_done(self, data: level_weighting.LevelWeighting) -> None:
        self.weighting.show_data(data)

    def _weighting_failed(self, e: BaseException) -> None:
        self.weighting.show_error(e)

    # ------------------------------------------------------------------ the form
    def selected_index(self) -> dict[str, Any] | None:
        i = self.index_view.currentIndex()
        return self.index_model.record_at(i.row()) if i.isValid() else None

    def index_records(self) -> list[dict[str, Any]]:
        m = self.index_model
        return [r for r in (m.record_at(i) for i in range(m.rowCount())) if r is not None]

    def select_index(self, code: str) -> bool:
        rec = next((r for r in self.index_records() if r["code"] == code), None)
        if rec is None:
            return False
        self.index_view.selectRow(self.index_model.row_of(int(rec["id"])))
        return True

    def _index_changed(self, _cur: QModelIndex, _prev: QModelIndex) -> None:
        rec = self.selected_index()
        if rec is not None:
            for e, v in ((self.code_edit, rec["code"]), (self.name_edit, rec["name"]),
                         (self.market_edit, rec["market"])):
                e.blockSignals(True)
                e.setText(str(v))
                e.blockSignals(False)
            self.level_combo.blockSignals(True)
            self.level_combo.setCurrentIndex(self.level_combo.findData(int(rec["level"])))
            self.level_combo.blockSignals(False)
            if not rec["new"]:
                self.members.select_index(int(rec["id"]))
        self._update_form()

    def _show_members_of_selected(self) -> None:
        rec = self.selected_index()
        if rec is not None and not rec["new"]:
            self.members.select_index(int(rec["id"]))
            self.tabs.setCurrentWidget(self.members)

    def _edited(self) -> None:
        if self.message.property("tone") != "info":
            self.message.hide()
        self._update_form()

    def _values(self) -> tuple[dict[str, Any] | None, str]:
        return idx.validate_index(self.code_edit.text(), self.name_edit.text(), self.market_edit.text(),
                                  self.level_combo.currentData())

    def _problems(self) -> dict[str, str]:
        """Why each of add / change / delete cannot be submitted now ("" = it can)."""
        snap, rec = self.snapshot, self.selected_index()
        reason = "" if self.reason_edit.text().strip() else "Give a reason: the checker decides on it."
        if snap is None:
            return dict.fromkeys(("add", "change", "delete"), "Loading…")
        if not snap.may_request_index:
            return dict.fromkeys(("add", "change", "delete"), "You may view indices but not request changes.")
        values, why = self._values()
        code = self.code_edit.text().strip().upper()
        existing = next((r for r in snap.indices if r["code"] == code), None)
        add = why or (f"Index {code} already exists{' (' + existing['request'] + ')' if existing['request'] else ''}"
                      " — select it to change it." if existing else reason)
        if rec is None:
            change = delete = "Select an index in the table."
        elif rec["request"]:
            change = delete = f"{rec['code']} has {rec['request']}: wait for its decision."
        else:
            delete = reason
            if code != rec["code"]:
                change = "The code cannot change: add a new index instead."
            elif values is None:
                change = why
            elif all(values[k] == rec[k] for k in ("name", "market", "level")):
                change = "Nothing to change yet: edit the name, market or level."
            else:
                change = reason
        return {"add": add, "change": change, "delete": delete}

    def _update_form(self) -> None:
        p = self._problems()
        rec = self.selected_index()
        code = self.code_edit.text().strip().upper()
        editing = rec is not None and code == rec["code"]
        shown = p["change"] if editing else p["add"]
        if not (self.code_edit.text().strip() or self.name_edit.text().strip()) and rec is None:
            shown = ""
        self.validation.setText(shown)
        self.validation.setVisible(bool(shown))
        idle = self.busy is None
        self.add_button.setEnabled(idle and not p["add"])
        self.change_button.setEnabled(idle and not p["change"])
        self.delete_button.setEnabled(idle and not p["delete"])
        self.form_title.setText(f"{rec['code']} · {rec['name']} · level {rec['level']} · {rec['members']} members"
                                if rec is not None else "Add an index, or select one to change it")

    def _refuse(self, why: str) -> None:
        self.validation.setText(why)
        self.validation.show()

    def add_index(self) -> None:
        why = self._problems()["add"]
        values, _ = self._values()
        if why or values is None:
            return self._refuse(why)
        self._submit(idx.submit_new_index, (values["code"], values["name"], values["market"], values["level"],
                                            self.reason_edit.text().strip()), f"new index {values['code']}", None)

    def change_index(self) -> None:
        why, rec = self._problems()["change"], self.selected_index()
        values, _ = self._values()
        if why or values is None or rec is None:
            return self._refuse(why)
        self._submit(idx.submit_index_update, (int(rec["id"]), values["name"], values["market"], values["level"],
                                               self.reason_edit.text().strip()), f"change {rec['code']}", None)

    def delete_index(self) -> None:
        why, rec = self._problems()["delete"], self.selected_index()
        if why or rec is None:
            return self._refuse(why)
        self._submit(idx.submit_index_delete, (int(rec["id"]), self.reason_edit.text().strip()),
                     f"delete {rec['code']}", None)

    def initialise(self) -> None:
        """Propose the missing presets (one insert request each, one transaction)."""
        if self.snapshot is None or not self.snapshot.missing_presets:
            set_tone(self.message, "Every preset index is already present or requested.", "info")
            return
        reason = self.reason_edit.text().strip() or idx.INITIALISE_REASON
        self._submit(idx.initialise_presets, (reason,), "initialise presets", None)

    def submit_member(self, index_id: int, code: str, reason: str, remove: bool, what: str) -> None:
        self._submit(idx.submit_member, (index_id, code, reason, remove), what, self.members)

    # ------------------------------------------------------------------ submitting
    def _submit(self, fn: Any, args: tuple[Any, ...], what: str, page: MembersPage | None) -> None:
        if self.store is None or self.user is None or self.tasks is None or self.busy is not None:
            return
        label = page.message if page is not None else self.message
        set_tone(label, f"Submitting {what}…", "info")
        self.busy = self.tasks.run(fn, self.store, self.user, *args,
                                   on_done=lambda r: self._submitted(r, what, page),
                                   on_error=lambda e: self._submit_failed(e, page), name=f"submit {what}")
        self._update_form()
        self.members.update_form()

    def _submitted(self, result: int | list[int], what: str, page: MembersPage | None) -> None:
        self.busy = None
        ids = result if isinstance(result, list) else [result]
        if page is not None:
            page.clear_form()
        else:
            for e in (self.reason_edit,):
                e.blockSignals(True)
                e.clear()
                e.blockSignals(False)
        label = page.message if page is not None else self.message
        if not ids:
            set_tone(label, "Nothing to submit: every preset index is present or requested.", "info")
        else:
            numbers = ", ".join(f"#{i}" for i in ids)
            set_tone(label, f"request{'s' if len(ids) > 1 else ''} {numbers} submitted — awaiting approval ({what}).",
                     "ok")
        for i in ids:
            self.submitted.emit(int(i))
        self.refresh()

    def _submit_failed(self, e: BaseException, page: MembersPage | None) -> None:
        self.busy = None
        set_tone(page.message if page is not None else self.message, error_text(e))
        self._update_form()
        self.members.update_form()
        self.refresh()

    def _imported(self, ids: list[int]) -> None:
        for i in ids:
            self.submitted.emit(int(i))
        self.refresh()

    def open_import(self) -> Any:
        """The bulk import dialog on kind ``index-members`` (rows become change requests there)."""
        if self.store is None or self.user is None or self.tasks is None:
            return None
        from widgets.import_dialog import ImportDialog

        dialog = ImportDialog(self.store, self.user, self.tasks, kind="index-members", parent=self.window())
        dialog.submitted.connect(self._imported)
        dialog.show()
        self.import_dialog = dialog
        return dialog
