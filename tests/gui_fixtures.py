"""Fixtures shared by the GUI test modules (import them into a module to use them there).

A styled QApplication with the error hooks restored afterwards, a check that no thread is left
running, one seeded 100-client demo store per session copied fresh for each test, and a task runner
that must shut down cleanly.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.qt_app import create_qapp
from app.tasks import TaskRunner
from services.demo_store import seed_demo_store
from services.store import Store

T = TypeVar("T")


def must(v: T | None) -> T:
    """The record (or value) a test expects to be there: fails the test, naming it, when it is not."""
    assert v is not None, "expected a record, got None"
    return v


@pytest.fixture(scope="module", autouse=True)
def _qapp_styled() -> Iterator[None]:
    hooks = sys.excepthook, threading.excepthook
    create_qapp()
    yield
    sys.excepthook, threading.excepthook = hooks


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()
            and not isinstance(t, threading._DummyThread)]
    assert left == []


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gui_demo") / "demo.db"
    st = Store(f"sqlite:///{path}")
    st.migrate()
    seed_demo_store(st, clients=100, runs=False)  # dock tests start with no stored runs
    st.dispose()
    return path


@pytest.fixture
def store(demo_template: Path, tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "store.db"
    shutil.copy(demo_template, path)
    st = Store(f"sqlite:///{path}")
    yield st
    st.dispose()


@pytest.fixture
def runner(qtbot: Any) -> Iterator[TaskRunner]:
    r = TaskRunner()
    yield r
    assert r.shutdown(5.0)
