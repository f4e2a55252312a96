"""DESIGN.md layering: services/ and models/ import no Qt, pyqtgraph, app/ or widgets/."""

from __future__ import annotations

import ast
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
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {n}")
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
