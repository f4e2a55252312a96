"""The code base type-checks and lints clean, tests included: `pytest -q` (what CI runs) fails on a
type error or a lint finding, not only a reviewer running the tools by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(660)
def test_mypy_finds_no_type_errors() -> None:
    p = _run("mypy", "app", "widgets", "services", "models", "tests", "bench", "main.py")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


@pytest.mark.timeout(200)
def test_ruff_finds_nothing() -> None:
    p = _run("ruff", "check", ".")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
