"""Where the service runs the allocator: one decision at a time, on a worker thread, so the
event loop stays free for I/O (webhook requests, health probes, watches, writes in flight)
while a long decision runs.

The cluster state belongs to whichever decision runs. Code on the event loop that changes the
state (informer events, the writer's bookkeeping) first awaits `quiet()`: it returns when no
decision runs, and none can start before that code's next `await`, because decisions start only
from the event loop. `ClusterState` checks this and refuses a change made from the event loop
while a decision runs, so a missed `quiet()` fails loudly in tests instead of racing.

A caller with a deadline (an extender webhook inside kube-scheduler's HTTP timeout) gets
`DecisionTimeout` when the deadline passes, waiting or deciding; a decision already running is
asked to stop (its search gives up at its next step) and finishes in the background, still
holding the state, and its result is dropped. Only decisions that change nothing may be given a
deadline.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger("tessera.engine")
T = TypeVar("T")
Stop = Callable[[], bool]  # whether the decision should give up now


class DecisionTimeout(Exception):
    """The decision did not finish by its deadline; nothing it decided was kept."""


class Engine:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tessera-engine")
        self._thread: int | None = None  # the worker's thread id while a decision runs there
        self._background: set[asyncio.Future[object]] = set()

    @property
    def busy(self) -> bool:
        """A decision runs on the worker thread now."""
        return self._thread is not None

    def on_worker(self) -> bool:
        return self._thread is not None and threading.get_ident() == self._thread

    async def quiet(self) -> None:
        """Returns once no decision runs; until the caller's next await, none starts."""
        if self._lock.locked():
            async with self._lock:
                pass

    async def run(self, job: Callable[[Stop], T], deadline: float | None = None) -> T:
        """Runs `job(stop)` on the worker thread, alone with the state. `deadline` is in seconds
        from now; past it the caller gets DecisionTimeout and the job's answer is dropped."""
        loop = asyncio.get_running_loop()
        give_up = None if deadline is None else loop.time() + deadline
        if give_up is None:
            await self._lock.acquire()
        else:
            try:
                async with asyncio.timeout_at(give_up):
                    await self._lock.acquire()
            except TimeoutError:
                raise DecisionTimeout(f"waited {deadline:g} s for the decisions before this one") from None
        stopping = threading.Event()

        def work() -> T:
            self._thread = threading.get_ident()
            try:
                return job(stopping.is_set)
            finally:
                self._thread = None

        t0 = time.perf_counter()
        try:
            future = loop.run_in_executor(self._pool, work)
        except BaseException:
            self._lock.release()
            raise
        try:
            if give_up is None:
                result = await asyncio.shield(future)
            else:
                async with asyncio.timeout_at(give_up):
                    result = await asyncio.shield(future)
        except (TimeoutError, asyncio.CancelledError) as e:
            # The job keeps the state until it has unwound; it is told to stop at its next step.
            stopping.set()
            self._release_when_done(future)
            if isinstance(e, asyncio.CancelledError):
                raise
            raise DecisionTimeout(f"the decision took longer than {deadline:g} s "
                                  f"({time.perf_counter() - t0:.1f} s so far); it was stopped") from None
        except BaseException:
            self._lock.release()
            raise
        self._lock.release()
        return result

    def _release_when_done(self, future: asyncio.Future[T]) -> None:
        def done(f: asyncio.Future[T]) -> None:
            self._background.discard(f)
            self._lock.release()
            if not f.cancelled() and f.exception() is not None:
                log.error("event=decision-failed-after-deadline error=%r", f.exception())

        self._background.add(future)  # type: ignore[arg-type]
        future.add_done_callback(done)

    async def close(self) -> None:
        """Waits for a decision still running, then stops the worker."""
        async with self._lock:
            pass
        self._pool.shutdown(wait=False)
