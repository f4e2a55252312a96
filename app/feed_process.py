"""The demo feed simulator as a child process on a free loopback port (Qt-free).

Why a process and not a thread: the simulator's random walk and JSON encoding would share the GIL
with the GUI and the subscriber; in its own process it cannot stall the desk. What this guarantees:

- `FeedProcess.start` returns the ``tcp://127.0.0.1:PORT`` address only once the child is accepting
  connections, or raises `FeedProcessError` with the child's own error line;
- the child never outlives the workstation: `stop` terminates then kills it after a timeout, an
  `atexit` hook stops every child still running, and the child watches its stdin pipe and exits
  when the parent is gone (even after a crash or a SIGKILL of the parent, where atexit never runs).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_running: set[FeedProcess] = set()
_lock = threading.Lock()


class FeedProcessError(RuntimeError):
    """The simulator could not be started; the message is meant for the user."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class FeedProcess:
    """One `feed-sim` child publishing the store at ``db_url``."""

    def __init__(self, db_url: str, rate: float | None = None, extra_args: tuple[str, ...] = (),
                 host: str = "127.0.0.1", password: str | None = None) -> None:
        self.db_url = db_url
        self.password = password
        self.port = 0
        self.rate = rate
        self.extra_args = tuple(extra_args)
        self.host = host
        self.address: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def command(self, port: int) -> list[str]:
        args = ["feed-sim", "--db", self.db_url, "--bind", f"tcp://{self.host}:{port}", *self.extra_args]
        if self.rate is not None:
            args += ["--rate", str(self.rate)]
        if getattr(sys, "frozen", False):  # the installed build: the executable is the CLI itself
            return [sys.executable, *args]
        return [sys.executable, "-c", "from app.feed_process import child_main; child_main()", *args]

    def start(self, timeout: float = 15.0, attempts: int = 3) -> str:
        """Start the child and wait until it listens; returns its address."""
        last_error = ""
        for _ in range(attempts):
            self.launch()
            try:
                return self.wait_ready(timeout)
            except FeedProcessError as e:
                last_error = str(e)
                if "in use" not in last_error.lower():
                    break
        raise FeedProcessError(last_error)

    def launch(self) -> None:
        """Spawn the child on a free port without waiting (overlap its start-up with other work)."""
        self.port = free_port(self.host)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        if self.password:  # a password typed this session reaches the child without a file or argv
            env["RISKDESK_DB_PASSWORD"] = self.password
        self.proc = subprocess.Popen(self.command(self.port), cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with _lock:
            _running.add(self)

    def wait_ready(self, timeout: float = 15.0) -> str:
        """Block until the launched child accepts connections; its address, or FeedProcessError."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _listening(self.host, self.port):
                self.address = f"tcp://{self.host}:{self.port}"
                return self.address
            time.sleep(0.05)
        err = self._collect_error() or f"no answer on port {self.port} within {timeout:.0f} s"
        self.stop()
        raise FeedProcessError(f"the demo feed simulator did not start: {err}")

    def _collect_error(self) -> str:
        if self.proc is None or self.proc.poll() is None or self.proc.stderr is None:
            return ""
        lines = self.proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self.proc.returncode}"

    def stop(self, timeout: float = 3.0) -> None:
        """Terminate (the simulator stops cleanly on SIGTERM), then kill after ``timeout``."""
        proc, self.proc = self.proc, None
        with _lock:
            _running.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        for pipe in (proc.stdin, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@atexit.register
def stop_all() -> None:
    """Stop every simulator this process started (registered with atexit)."""
    with _lock:
        procs = list(_running)
    for p in procs:
        p.stop(timeout=2.0)


def child_main() -> None:
    """Entry point inside the child: exit when the parent closes our stdin, then run the CLI."""

    def watch_parent() -> None:
        try:
            while sys.stdin.buffer.read(1024):
                pass
        except (OSError, ValueError):
            pass
        if hasattr(signal, "SIGTERM") and os.name != "nt":
            os.kill(os.getpid(), signal.SIGTERM)  # the simulator's handler stops it cleanly
            time.sleep(3.0)
        os._exit(0)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    from app.cli import main

    sys.exit(main(sys.argv[1:]))
