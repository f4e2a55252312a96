"""The CLI contracts of DESIGN.md, run as a user would: real processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_init_demo_export_import_margin(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    assert run("init", "--db", db).returncode == 0
    r = run("demo", "--db", db, "--clients", "200", "--seed", "4")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "book.json"
    assert run("book", "export", "--db", db, "--out", str(out)).returncode == 0
    r = run("margin", "--db", db, "--json")
    from_db = json.loads(r.stdout)
    r = run("margin", "--book", str(out), "--json")
    from_file = json.loads(r.stdout)
    assert len(from_db) == 200
    assert from_db == from_file
    keys = {"account", "client", "status", "equity", "mv_long", "mv_short", "cash", "loan", "im", "mm", "fc",
            "call_amount", "excess", "buying_power"}
    assert keys <= set(from_db[0])
    statuses = {r["status"] for r in from_db}
    assert statuses == {"safe", "warning", "call", "force"}
    db2 = f"sqlite:///{tmp_path / 'b.db'}"
    r = run("book", "import", "--db", db2, str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(run("margin", "--db", db2, "--json").stdout) == from_db


def test_same_seed_same_book(tmp_path: Path) -> None:
    a, b = (f"sqlite:///{tmp_path / n}" for n in ("a.db", "b.db"))
    run("demo", "--db", a, "--clients", "100", "--seed", "9")
    run("demo", "--db", b, "--clients", "100", "--seed", "9")
    assert run("margin", "--db", a, "--json").stdout == run("margin", "--db", b, "--json").stdout


@pytest.mark.parametrize("args,needle,code", [
    (("demo", "--db", "sqlite:////tmp/x.db", "--clients", "-3"), "--clients: must be > 0", 2),
    (("margin",), "one of the arguments --db --book is required", 2),
    (("margin", "--book", "/nonexistent/book.json"), "cannot read the book file", 1),
    (("frobnicate",), "invalid choice", 2),
    (("margin", "--db", "mysql://x@y/z"), "unsupported database", 1),
    (("check-server", "--allow", "10.0.0.300"), "--allow '10.0.0.300': give an IP address or network", 2),
    (("check-server", "--allow", " , "), "--allow: name at least one IP address or network", 2),
])
def test_bad_arguments_get_one_clear_line(args: tuple[str, ...], needle: str, code: int) -> None:
    r = run(*args)
    assert r.returncode == code
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_check_server_on_an_open_address_warns_unless_allow_names_the_hosts(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    assert run("init", "--db", db).returncode == 0
    r = run("check-server", "--db", db, "--bind", "tcp://0.0.0.0:0")
    assert r.returncode == 1 and "has no accounts" in r.stderr  # it stops there: the store is empty
    assert "warning: tcp://0.0.0.0:0 is reachable from other hosts" in r.stderr and "--allow" in r.stderr
    for args in (("--bind", "tcp://0.0.0.0:0", "--allow", "10.0.0.0/8"), ("--bind", "tcp://127.0.0.1:0")):
        r = run("check-server", "--db", db, *args)
        assert r.returncode == 1 and "warning" not in r.stderr, r.stderr


def test_bad_book_value_names_path(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"securities": [{"code": "A", "currency": "HKD", "price": 0}], "accounts": []}))
    r = run("margin", "--book", str(p), "--json")
    assert r.returncode == 1
    assert "securities[0].price: must be > 0" in r.stderr
    assert r.stdout == ""


def test_book_import_of_a_bad_file_leaves_store_untouched(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    run("demo", "--db", db, "--clients", "50")
    before = run("margin", "--db", db, "--json").stdout
    p = tmp_path / "bad.json"
    p.write_text('{"securities": [], "accounts": [{"account": "X", "type": "loan"}]}')
    r = run("book", "import", "--db", db, str(p))
    assert r.returncode == 1 and "accounts[0].type" in r.stderr
    assert run("margin", "--db", db, "--json").stdout == before


def test_gui_logs_in_and_screenshots_the_demo_store(tmp_path: Path) -> None:
    import os

    db = f"sqlite:///{tmp_path / 'g.db'}"
    assert run("demo", "--db", db, "--clients", "200").returncode == 0
    shot = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", RISKDESK_APP_PASSWORD="sam-demo",
               RISKDESK_SETTINGS=str(tmp_path / "s.ini"))
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "--db", db, "--no-feed", "--user", "sam",
                        "--raise", "approvals", "--screenshot", str(shot), "--quit-after", "5"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:4] == b"\x89PNG"
    from services import audit
    from services.store import Store

    logins = [x for x in audit.rows(Store(db), actor="sam") if x["action"] == "login"]
    assert logins, "the GUI login is audited"
