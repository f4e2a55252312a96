"""Modules imported on first use, so that opening the window does not wait for them (Qt-free: the
view services use it too).

The window is on screen before the store is opened (app.cold_start); service modules that pull in
SQLAlchemy or pandas are imported by the docks that need them only when they first call them::

    if TYPE_CHECKING:
        from services import notices
    else:
        notices = lazy_module("services.notices")
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}{'' if self._module is None else ' (imported)'}>"


def lazy_module(name: str) -> Any:
    return _LazyModule(name)
