"""One heavy job at a time: a first-come, first-served queue with progress and cancellation.

The demo runs on small machines (2 cores), so inversions, PULSE searches, StarGAN translations and SVM fits
from every visitor go through one :class:`JobQueue`: a job waits its turn in its own thread, runs alone, and
its :class:`Job` tells the page where it stands (its place in the line while it waits, the step it is at while
it runs). Light work (re-rendering an edit at 64 px) does not queue.

Progress and cancellation reach into library functions that only know how to draw a tqdm bar: while a job
runs, every tqdm bar created *in that job's thread* reports its steps to the job, and a step taken after
:meth:`Job.cancel` raises :class:`JobCancelled` inside the library call, which unwinds it before it writes
its outputs. Bars in other threads behave exactly as before (:func:`install_progress_hooks`).
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any, Callable, Iterator

from latentedit.errors import LatentEditError

#: Job states, in the order a job goes through them.
STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")

_current = threading.local()
_install_lock = threading.Lock()
_installed = False


class JobCancelled(LatentEditError):
    """The visitor cancelled the job (raised inside the job's thread at its next progress step)."""


class Job:
    """One queued unit of work; read its fields from any thread, :meth:`cancel` it from any thread."""

    def __init__(self, queue: "JobQueue", number: int, label: str, owner: str | None,
                 fn: Callable[[], Any]) -> None:
        self.queue, self.number, self.label, self.owner = queue, number, label, owner
        self._fn = fn
        self.state = "queued"
        self.done = 0
        self.total: int | None = None
        self.description = label
        self.result: Any = None
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._cancel = threading.Event()
        self._finished = threading.Event()

    # -- read from any thread ----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def position(self) -> int:
        """0 while it runs (or is finished), else its place in the line (1 = next)."""
        return self.queue.position(self)

    @property
    def fraction(self) -> float | None:
        """Progress of the running bar in [0, 1], None when unknown."""
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def status_line(self) -> str:
        """What the page shows: the place in the line, the progress, or how it ended."""
        if self.state == "queued":
            ahead = self.position()
            return f"{self.label}: waiting, position {ahead} in the queue (one heavy job runs at a time)"
        if self.state == "running":
            if self.total:
                return f"{self.label}: {self.description} {self.done}/{self.total}"
            return f"{self.label}: running"
        if self.state == "cancelled":
            return f"{self.label}: cancelled"
        if self.state == "failed":
            return f"{self.label}: failed: {self.error}"
        return f"{self.label}: done in {self.finished_at - self.started_at:.1f} s"

    def cancel(self) -> None:
        """Ask the job to stop: a queued job never starts, a running one stops at its next progress step."""
        self._cancel.set()
        self.queue._wake()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (True) or ``timeout`` passed (False)."""
        return self._finished.wait(timeout)

    def outcome(self) -> Any:
        """The function's return value; re-raises its exception (JobCancelled when cancelled)."""
        self.wait()
        if self.error is not None:
            raise self.error
        return self.result

    def watch(self, every: float = 0.25) -> Iterator["Job"]:
        """Yield the job every ``every`` seconds until it has finished, then once more."""
        while not self._finished.wait(every):
            yield self
        yield self

    # -- progress, called from inside the job's thread ------------------------------------------------
    def _progress(self, done: int, total: int | None, description: str | None) -> None:
        self.done = int(done)
        self.total = int(total) if total else None
        if description:
            self.description = str(description).strip().rstrip(":")
        if self._cancel.is_set():
            raise JobCancelled(f"{self.label} was cancelled")


class JobQueue:
    """Runs submitted jobs one at a time, in submission order, each in its own thread."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._numbers = itertools.count(1)
        install_progress_hooks()

    def submit(self, fn: Callable[[], Any], label: str, owner: str | None = None) -> Job:
        """Queue ``fn()``; returns at once with its :class:`Job`."""
        job = Job(self, next(self._numbers), label, owner, fn)
        with self._condition:
            self._waiting.append(job)
        threading.Thread(target=self._run, args=(job,), name=f"latentedit-job-{job.number}", daemon=True).start()
        return job

    def run(self, fn: Callable[[], Any], label: str, owner: str | None = None) -> Any:
        """Submit ``fn`` and wait for it: its return value, or its exception."""
        return self.submit(fn, label, owner).outcome()

    def position(self, job: Job) -> int:
        with self._condition:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return 0

    def pending(self) -> int:
        """Jobs waiting or running."""
        with self._condition:
            return len(self._waiting) + (self._running is not None)

    def cancel_owner(self, owner: str) -> int:
        """Cancel every waiting or running job of ``owner`` (a visitor who left); how many were asked."""
        with self._condition:
            jobs = [job for job in self._waiting if job.owner == owner]
            if self._running is not None and self._running.owner == owner:
                jobs.append(self._running)
        for job in jobs:
            job.cancel()
        return len(jobs)

    def _wake(self) -> None:
        with self._condition:
            self._condition.notify_all()

    def _run(self, job: Job) -> None:
        with self._condition:
            while not (self._running is None and self._waiting[0] is job) and not job.cancelled:
                self._condition.wait()
            self._waiting.remove(job)
            if job.cancelled:
                job.state = "cancelled"
                job.error = JobCancelled(f"{job.label} was cancelled before it started")
                job.started_at = job.finished_at = time.perf_counter()
                job._finished.set()
                self._condition.notify_all()
                return
            self._running = job
            job.state = "running"
        job.started_at = time.perf_counter()
        _current.job = job
        try:
            job.result = job._fn()
            job.state = "done"
        except JobCancelled as error:
            job.error, job.state = error, "cancelled"
        except BaseException as error:  # reported to the page; the server keeps serving
            job.error, job.state = error, "failed"
        finally:
            _current.job = None
            job.finished_at = time.perf_counter()
            with self._condition:
                self._running = None
                self._condition.notify_all()
            job._finished.set()


def current_job() -> Job | None:
    """The job running in this thread, if any."""
    return getattr(_current, "job", None)


def _reporting_class(base: type) -> type:
    """A subclass of the tqdm class ``base`` whose bars report to the job of the thread that made them."""

    class ReportingTqdm(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            # A disabled bar skips most of tqdm's set-up (no total, no desc): work them out here.
            total = getattr(self, "total", None) if not self.disable else kwargs.get("total")
            if total is None:
                iterable = args[0] if args else kwargs.get("iterable")
                try:
                    total = len(iterable)
                except TypeError:
                    total = None
            description = kwargs.get("desc") or (args[1] if len(args) > 1 else None)
            self._latentedit = (current_job(), total, description)
            self._latentedit_count = 0
            if self._latentedit[0] is not None:
                self._latentedit[0]._progress(0, total, description)

        def _latentedit_report(self) -> None:
            job, total, description = self._latentedit
            job._progress(self._latentedit_count, total, description)

        def __iter__(self):
            job = getattr(self, "_latentedit", (None,))[0]
            if job is None:
                yield from super().__iter__()
                return
            # A disabled bar does not count its steps; count them here.
            for item in super().__iter__():
                self._latentedit_report()
                yield item
                self._latentedit_count += 1
            self._latentedit_report()

        def update(self, n=1):
            result = super().update(n)
            if getattr(self, "_latentedit", (None,))[0] is not None:
                self._latentedit_count += n or 0
                self._latentedit_report()
            return result

    ReportingTqdm.__name__ = ReportingTqdm.__qualname__ = base.__name__
    return ReportingTqdm


def install_progress_hooks() -> None:
    """Make ``tqdm.tqdm``, ``tqdm.std.tqdm`` and ``tqdm.auto.tqdm`` report to the current thread's job.

    Idempotent. The library imports tqdm inside its functions, so the classes it uses are looked up when it
    runs; outside a job (another thread) the bars are unchanged.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        import tqdm as tqdm_package
        import tqdm.auto as tqdm_auto
        import tqdm.std as tqdm_std

        original, original_auto = tqdm_std.tqdm, tqdm_auto.tqdm
        plain = _reporting_class(original)
        tqdm_package.tqdm = plain
        tqdm_std.tqdm = plain
        tqdm_auto.tqdm = plain if original_auto is original else _reporting_class(original_auto)
        _installed = True
