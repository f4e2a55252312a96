"""DESIGN.md layering: services/ and models/ import no Qt, pyqtgraph, app/ or widgets/."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6", "app", "widgets")


def test_no_gui_imports_in_services_or_models() -> None:
    offenders = []
    for folder in ("services", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for n in names:
                    if n.split(".")[0] in FORBIDDEN:
                        offenders.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)} imports {n}")
    assert offenders == []


def test_importing_every_service_loads_no_qt() -> None:
    mods = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts)
                  for folder in ("services", "models") for p in (ROOT / folder).rglob("*.py")
                  if "migrations" not in p.parts)
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods)
            + "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]\n"
            + "print(bad)\nsys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_headless_cli_loads_no_qt() -> None:
    code = ("import sys\nfrom app.cli import main\n"
            "sys.argv=['riskdesk','margin','--book','/nonexistent.json']\n"
            "rc = main(sys.argv[1:])\n"
            "assert 'PySide6' not in sys.modules, 'Qt imported by a headless command'\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_main_window_opens_without_the_database_stack(tmp_path: Path) -> None:
    """app.cold_start: the window (every dock built at start, the eager catalogue docks included) is
    on screen before SQLAlchemy, the schema or pandas are imported; they load with the store, after
    the first paint. A dock that imports a store service at module level breaks this (services.lazy)."""
    code = ("import os, sys\nos.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
            "from app.qt_app import create_qapp\nfrom app.main_window import MainWindow\n"
            "app = create_qapp(['t'])\nw = MainWindow(run_task=lambda *a, **k: None, restore=False)\n"
            "assert len(w.docks) > 30 and w.catalogue, (len(w.docks), w.catalogue)\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'pandas', 'psycopg', 'openpyxl'}"
            " | {m for m in sys.modules if m in ('models.schema', 'services.store')})\n"
            "print(heavy)\nsys.exit(1 if heavy else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "RISKDESK_SETTINGS": str(tmp_path / "layout.ini")})
    assert r.returncode == 0, r.stdout + r.stderr
