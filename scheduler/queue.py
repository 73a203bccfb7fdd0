"""The secondary scheduler's queue: which pending pod to try next, and when to try again.

Three places a pod can be, as in kube-scheduler:

- *active*: ready to try, ordered by priority (highest first), then age (oldest first), then
  name, so the order is deterministic;
- *waiting*: only waiting for something expected to happen soon (the ResourceClaim controller
  creating its claim). Any change to the pod or a new claim makes it active again at once; a
  timer catches a missed event;
- *backoff*: it failed. It waits 1 s, doubling per consecutive failure up to 60 s, and then goes
  back to active only once a relevant cluster change has happened since it failed (nothing else
  could change the answer), or after `FLUSH_SECONDS` regardless, in case a relevant change was
  not recognised as one.

A pod being decided or written is *in flight*: it is in none of the three and is not added back
until its attempt ends.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from allocator.model import ObjectKey, Pod

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 60.0
WAITING_RECHECK = 5.0
FLUSH_SECONDS = 300.0


@dataclass(slots=True)
class Entry:
    key: ObjectKey
    priority: int
    created: str
    failures: int = 0
    since: float = 0.0  # when it entered backoff or waiting
    ready_at: float = 0.0  # backoff ends
    failed_at: int = 0  # the cluster generation when it last failed


def backoff_for(failures: int) -> float:
    return min(INITIAL_BACKOFF * float(2 ** min(max(0, failures - 1), 16)), MAX_BACKOFF)


class SchedulingQueue:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._entries: dict[ObjectKey, Entry] = {}
        self._heap: list[tuple[int, str, ObjectKey, int]] = []
        self._active: dict[ObjectKey, int] = {}  # key -> the heap item's sequence number (older items are stale)
        self._waiting: dict[ObjectKey, int] = {}  # key -> sequence number of its timer
        self._backoff: dict[ObjectKey, int] = {}
        self._ripe: set[ObjectKey] = set()  # backoff over, waiting for a relevant change
        self._timers: list[tuple[float, int, ObjectKey]] = []  # (when, seq, key): backoff ends, waiting recheck, flush
        self._in_flight: set[ObjectKey] = set()
        self._seq = itertools.count()
        self._generation = 0  # counts relevant cluster changes
        self._promoted_generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: ObjectKey) -> bool:
        return key in self._entries

    def depth(self) -> dict[str, int]:
        return {"active": len(self._active), "waiting": len(self._waiting), "backoff": len(self._backoff),
                "in_flight": len(self._in_flight)}

    def state_of(self, key: ObjectKey) -> str | None:
        if key in self._in_flight:
            return "in_flight"
        if key in self._waiting:
            return "waiting"
        if key in self._backoff:
            return "backoff"
        return "active" if key in self._active else None

    def failures(self, key: ObjectKey) -> int:
        e = self._entries.get(key)
        return e.failures if e is not None else 0

    # --- arrivals and departures ----------------------------------------------------------

    def add(self, pod: Pod) -> None:
        """A pending pod (new, or changed): active unless it is backing off or in flight; a
        waiting pod is woken (the change may be the one it waits for)."""
        e = self._entries.get(pod.key)
        if e is None:
            e = self._entries[pod.key] = Entry(pod.key, pod.priority, pod.created)
            self._push(e)
            return
        if pod.priority != e.priority:
            e.priority = pod.priority
            if pod.key in self._active:
                self._push(e)
        self.wake(pod.key)

    def remove(self, key: ObjectKey) -> None:
        """The pod is bound, deleted, or no longer ours."""
        self._entries.pop(key, None)
        self._active.pop(key, None)
        self._waiting.pop(key, None)
        self._backoff.pop(key, None)
        self._ripe.discard(key)
        self._in_flight.discard(key)

    def _push(self, e: Entry) -> None:
        self._waiting.pop(e.key, None)
        self._backoff.pop(e.key, None)
        self._ripe.discard(e.key)
        seq = next(self._seq)
        self._active[e.key] = seq
        heapq.heappush(self._heap, (-e.priority, e.created, e.key, seq))

    def _timer(self, when: float, key: ObjectKey) -> int:
        seq = next(self._seq)
        heapq.heappush(self._timers, (when, seq, key))
        return seq

    # --- taking work ------------------------------------------------------------------------

    def pop(self) -> ObjectKey | None:
        """The next active pod, now in flight; None when nothing is active."""
        self.promote()
        while self._heap:
            _, _, key, seq = heapq.heappop(self._heap)
            if self._active.get(key) != seq:
                continue  # superseded or removed
            del self._active[key]
            self._in_flight.add(key)
            return key
        return None

    def take(self, key: ObjectKey) -> bool:
        """Takes a specific pod (a gang member decided with the one popped) into flight."""
        if key not in self._entries or key in self._in_flight:
            return False
        self._active.pop(key, None)
        self._waiting.pop(key, None)
        self._backoff.pop(key, None)
        self._ripe.discard(key)
        self._in_flight.add(key)
        return True

    def in_flight(self, key: ObjectKey) -> bool:
        return key in self._in_flight

    # --- outcomes -----------------------------------------------------------------------------

    def done(self, key: ObjectKey) -> None:
        """Placed and written: the pod leaves the queue."""
        self.remove(key)

    def failed(self, key: ObjectKey) -> float:
        """Unschedulable or a failed write: back off; returns the backoff in seconds."""
        e = self._entries.get(key)
        if e is None:
            return 0.0
        self._in_flight.discard(key)
        self._active.pop(key, None)
        e.failures += 1
        e.since = self.clock()
        wait = backoff_for(e.failures)
        e.ready_at = e.since + wait
        e.failed_at = self._generation
        self._backoff[key] = self._timer(e.ready_at, key)
        return wait

    def wait(self, key: ObjectKey) -> None:
        """Only waiting for an expected change (its generated claim): no backoff, no report."""
        e = self._entries.get(key)
        if e is None:
            return
        self._in_flight.discard(key)
        self._active.pop(key, None)
        e.since = self.clock()
        self._waiting[key] = self._timer(e.since + WAITING_RECHECK, key)

    def retry_now(self, key: ObjectKey) -> None:
        """Back to active without counting a failure (a decision that lost a race)."""
        e = self._entries.get(key)
        if e is None:
            return
        self._in_flight.discard(key)
        self._push(e)

    # --- cluster changes ----------------------------------------------------------------------

    def cluster_changed(self) -> None:
        """Something changed that could make a failed pod fit."""
        self._generation += 1

    def wake(self, key: ObjectKey) -> None:
        """A change concerning this pod: a waiting pod becomes active."""
        if key in self._waiting:
            self._push(self._entries[key])

    def wake_all_waiting(self) -> None:
        for key in list(self._waiting):
            self.wake(key)

    def promote(self) -> None:
        """Moves to active: backoff pods whose time has come and that saw a relevant change
        (or waited FLUSH_SECONDS), and waiting pods due for a recheck."""
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _, seq, key = heapq.heappop(self._timers)
            e = self._entries.get(key)
            if e is None:
                continue
            if self._waiting.get(key) == seq:
                self._push(e)
            elif self._backoff.get(key) == seq:
                if self._generation > e.failed_at or now - e.since >= FLUSH_SECONDS:
                    self._push(e)
                else:
                    self._ripe.add(key)
                    self._backoff[key] = self._timer(e.since + FLUSH_SECONDS, key)
        if self._ripe and self._generation != self._promoted_generation:
            for key in list(self._ripe):
                self._push(self._entries[key])
        self._promoted_generation = self._generation

    def next_wakeup(self) -> float | None:
        """Seconds until promote() could have something to do; None when nothing is pending."""
        self.promote()
        while self._timers:
            _, seq, key = self._timers[0]
            if self._waiting.get(key) == seq or self._backoff.get(key) == seq:
                return max(0.0, self._timers[0][0] - self.clock())
            heapq.heappop(self._timers)  # a stale timer
        return None
