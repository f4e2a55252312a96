"""The shared look of dock tables: dense rows, whole-row selection, numpy-sorted through the model,
and on every one of them the column chooser and "Export view to Excel…" of `widgets.table_tools`."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from widgets.table_tools import install_table_tools


def make_table(model: Any, parent: QWidget | None = None) -> QTableView:
    """A dense, sortable, row-selecting table view (shared look of every dock table), with a column
    chooser on its header and Ctrl+Shift+E to export it; the view is named after its model when
    unnamed, and the columns the user hid under that name are hidden again."""
    view = QTableView(parent)
    view.setModel(model)
    view.setSortingEnabled(True)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.setShowGrid(False)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(22)
    view.horizontalHeader().setHighlightSections(False)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    view.horizontalHeader().setStretchLastSection(True)
    view.horizontalHeader().setResizeContentsPrecision(60)  # fit to the first rows, not all 100k
    view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
    install_table_tools(view)
    return view


def fit_columns(view: QTableView, max_width: int = 260) -> None:
    """Size columns to their contents once (after the first fill), capped so names cannot sprawl."""
    view.resizeColumnsToContents()
    header = view.horizontalHeader()
    for c in range(header.count()):
        if header.sectionSize(c) > max_width:
            header.resizeSection(c, max_width)
