"""Shared fixtures: real SQLite files and a real PostgreSQL database per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PG_ADMIN = os.environ.get("RISKDESK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN.replace("+psycopg", ""), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(autouse=True)
def _collect_garbage_between_tests() -> Iterator[None]:
    """Collect a test's cyclic garbage when it ends, once its widgets are closed and deleted.

    Left to the collector's own timing, a previous test's Qt / pyqtgraph wrappers were once finalised
    inside a later test's nested event loop (qtbot.waitSignal) and PySide aborted the whole run."""
    yield
    import gc
    import sys

    if "PySide6.QtWidgets" in sys.modules:
        from PySide6.QtCore import QCoreApplication, QEvent

        app = QCoreApplication.instance()
        if app is not None:
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
            app.processEvents()
    gc.collect()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's real data directory or settings from a test."""
    home = tmp_path_factory.mktemp("rdhome")
    monkeypatch.setenv("RISKDESK_HOME", str(home))
    monkeypatch.setenv("RISKDESK_SETTINGS", str(home / "settings.ini"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session (skipped locally when no server; fails in CI)."""
    if not _pg_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN} and CI is set")
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432")
    import psycopg

    name = f"riskdesk_test_{uuid.uuid4().hex[:8]}"
    admin = PG_ADMIN.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    yield url
    from sqlalchemy import create_engine

    create_engine(url).dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session database, emptied of RiskDesk tables before each test."""
    from sqlalchemy import create_engine, text

    eng = create_engine(pg_database)
    with eng.begin() as conn:
        conn.execute(text("drop schema public cascade; create schema public"))
    eng.dispose()
    return pg_database
