"""Background work off the GUI thread: pure Python callables in a thread pool, results by signal.

The orange3 / anki pattern: the task function is plain Python with no Qt and no UI calls; it may take
a ``task`` argument to check `Task.cancelled` and report `Task.progress`. The runner delivers
progress (throttled, so a chatty loop cannot flood the event queue), the result or the exception on
the GUI thread through one queued signal. A cancelled task's result is dropped, so a stale answer
(e.g. the previous account's margin call) can never overwrite a newer one.

Every task is stoppable: `cancel` sets its flag (cooperative: a function blocked in a database call
finishes that call first) and `shutdown` cancels all, drops queued ones and waits with a timeout.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.1  # seconds between delivered progress reports of one task


class TaskCancelled(Exception):
    """Raised by `Task.check` inside a task function to stop early; never reported as an error."""


class Task:
    """The handle both sides share: the function polls it, the GUI cancels through it."""

    def __init__(self, runner: TaskRunner, task_id: int, name: str) -> None:
        self.id = task_id
        self.name = name
        self._runner = runner
        self._cancel = threading.Event()
        self._started = threading.Event()
        self._done = threading.Event()
        self._last_progress = 0.0

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def check(self) -> None:
        """Raise `TaskCancelled` when cancelled (call between units of work)."""
        if self._cancel.is_set():
            raise TaskCancelled()

    def progress(self, fraction: float, text: str = "") -> None:
        """Report progress 0..1; at most one report per `PROGRESS_INTERVAL` reaches the GUI."""
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        self._runner._relay.emit((self.id, "progress", (float(fraction), text)))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the function returned (tests, shutdown); True when it did."""
        return self._done.wait(timeout)


class _Job(QRunnable):
    def __init__(self, runner: TaskRunner, task: Task, fn: Callable[..., Any], args: tuple[Any, ...],
                 pass_task: bool) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._runner, self._task, self._fn, self._args, self._pass_task = runner, task, fn, args, pass_task

    def run(self) -> None:
        task = self._task
        task._started.set()
        try:
            if task.cancelled:
                raise TaskCancelled()
            kw = {"task": task} if self._pass_task else {}
            result = self._fn(*self._args, **kw)
            outcome: tuple[str, Any] = ("done", result)
        except TaskCancelled:
            outcome = ("cancelled", None)
        except BaseException as e:  # delivered to on_error on the GUI thread, never lost
            outcome = ("error", e)
        finally:
            task._done.set()
        self._runner._relay.emit((task.id, *outcome))


class TaskRunner(QObject):
    """Runs callables in its own thread pool; callbacks run on the thread that owns the runner."""

    _relay = Signal(object)

    def __init__(self, parent: QObject | None = None, max_threads: int = 4) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._ids = itertools.count(1)
        self._tasks: dict[int, tuple[Task, dict[str, Callable[..., Any] | None]]] = {}
        self._closing = False
        self.default_error: Callable[[BaseException], None] | None = None
        self._relay.connect(self._deliver)

    def run(self, fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[BaseException], None] | None = None,
            on_progress: Callable[[float, str], None] | None = None, name: str = "") -> Task:
        """Run ``fn(*args)`` (plus ``task=`` when it has such a parameter) in the pool."""
        if self._closing:
            raise RuntimeError("the task runner is shut down")
        task = Task(self, next(self._ids), name or getattr(fn, "__name__", "task"))
        self._tasks[task.id] = (task, {"done": on_done, "error": on_error, "progress": on_progress})
        self._pool.start(_Job(self, task, fn, args, _takes_task(fn)))
        return task

    @property
    def active(self) -> int:
        """Tasks started and not yet delivered."""
        return len(self._tasks)

    def cancel_all(self) -> None:
        self._pool.clear()  # queued jobs never start; their tasks are forgotten
        for task, _ in list(self._tasks.values()):
            task.cancel()
        for tid in [tid for tid, (t, _) in self._tasks.items() if not t._started.is_set()]:
            self._tasks.pop(tid, None)

    def wait_all(self, timeout: float = 5.0) -> bool:
        """Wait until no worker is running; True if they all finished within ``timeout`` seconds."""
        return bool(self._pool.waitForDone(int(timeout * 1000)))

    def shutdown(self, timeout: float = 3.0) -> bool:
        """Cancel everything, stop delivering callbacks and wait for the workers (application exit)."""
        self._closing = True
        self.cancel_all()
        ok = self.wait_all(timeout)
        self._tasks.clear()
        return ok

    # ------------------------------------------------------------------ internals
    def _deliver(self, event: tuple[Any, ...]) -> None:
        tid, kind, payload = event
        entry = self._tasks.get(tid)
        if entry is None or self._closing:
            return
        task, callbacks = entry
        if kind == "progress":
            cb = callbacks["progress"]
            if cb is not None and not task.cancelled:
                cb(*payload)
            return
        del self._tasks[tid]
        if task.cancelled or kind == "cancelled":
            return
        if kind == "done":
            if callbacks["done"] is not None:
                callbacks["done"](payload)
            return
        err_cb = callbacks["error"] or self.default_error
        if err_cb is None:
            log.error("task %s failed", task.name, exc_info=payload)
        else:
            err_cb(payload)


def _takes_task(fn: Callable[..., Any]) -> bool:
    try:
        return "task" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
