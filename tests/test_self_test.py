"""`--self-test` passes from source (the installed program runs the same checks)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from app import self_test

ROOT = Path(__file__).resolve().parent.parent


def test_self_test_passes_from_source() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "--self-test"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 0, r.stdout + r.stderr
    assert {x["check"]: x["status"] for x in lines if "check" in x}.keys() == {"imports", "store", "keyring", "feed",
                                                                            "window"}
    assert lines[-1] == {"self_test": "passed"}
    window = next(x for x in lines if x.get("check") == "window")
    from app.dock_catalog import CATALOGUE

    assert int(window["detail"].split()[0]) >= 19 + len(CATALOGUE)  # every dock, the catalogue's included


def test_a_failing_required_check_fails_the_self_test(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broken() -> str:
        raise RuntimeError("socket refused")

    monkeypatch.setattr(self_test, "CHECKS", (("feed", broken, True), ("keyring", broken, False)))
    out = io.StringIO()
    assert self_test.run(out) == 1
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [(x.get("check"), x.get("status")) for x in lines[:2]] == [("feed", "fail"), ("keyring", "warn")]
    assert "socket refused" in lines[0]["detail"]
