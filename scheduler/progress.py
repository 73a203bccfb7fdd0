"""A progress line on stderr for long `tessera simulate` runs (a terminal only, never stdout)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

AFTER = 2.0  # seconds before a run is long enough to show its progress
EVERY = 0.25  # seconds between two redraws
ERASE = "\r\x1b[K"


class Progress:
    """Shows `pods decided` once the run has taken AFTER seconds, redrawn at most every EVERY
    seconds on one line; `close()` erases it, so what follows starts on a clean line."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic, after: float | None = None,
                 every: float = EVERY) -> None:
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.after = AFTER if after is None else after
        self.every = every
        self.drawn_at: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.started < self.after:
            return
        if self.drawn_at is not None and now - self.drawn_at < self.every and done < total:
            return
        self.drawn_at = now
        pct = 100 * done // total if total else 100
        self.stream.write(f"{ERASE}tessera simulate: {done}/{total} pods decided ({pct}%), {now - self.started:.0f} s")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn_at is not None:
            self.stream.write(ERASE)
            self.stream.flush()
            self.drawn_at = None
