"""The secondary scheduler's queue: order, backoff, waiting, in-flight, with a fake clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from allocator.model import Pod
from scheduler.queue import FLUSH_SECONDS, MAX_BACKOFF, WAITING_RECHECK, SchedulingQueue, backoff_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def p(name: str, priority: int = 0, created: str = "2026-01-01T00:00:00Z") -> Pod:
    return Pod("default", name, f"uid-{name}", priority=priority, created=created)


def drain(q: SchedulingQueue) -> list[str]:
    out = []
    while (k := q.pop()) is not None:
        out.append(k[1])
    return out


def test_order_is_priority_then_age_then_name() -> None:
    q = SchedulingQueue(Clock())
    q.add(p("late", 0, "2026-01-01T00:00:09Z"))
    q.add(p("b", 0, "2026-01-01T00:00:01Z"))
    q.add(p("a", 0, "2026-01-01T00:00:01Z"))
    q.add(p("urgent", 100, "2026-01-01T00:00:10Z"))
    assert drain(q) == ["urgent", "a", "b", "late"]


def test_a_priority_change_reorders_an_active_pod() -> None:
    q = SchedulingQueue(Clock())
    q.add(p("x"))
    q.add(p("y", created="2026-01-01T00:00:05Z"))
    q.add(p("y", priority=5, created="2026-01-01T00:00:05Z"))
    assert drain(q) == ["y", "x"]


def test_backoff_doubles_from_one_second_to_sixty() -> None:
    assert [backoff_for(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_for(1000) == MAX_BACKOFF


def test_a_failed_pod_returns_after_its_backoff_and_a_relevant_change() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(p("x"))
    assert q.pop() == ("default", "x")
    assert q.failed(("default", "x")) == 1.0
    assert q.pop() is None
    clock.now += 5
    assert q.pop() is None, "nothing changed: retrying would give the same answer"
    q.cluster_changed()
    assert q.pop() == ("default", "x")
    assert q.failed(("default", "x")) == 2.0


def test_a_change_during_the_backoff_counts_once_it_ends() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(p("x"))
    q.pop()
    q.failed(("default", "x"))
    q.cluster_changed()
    assert q.pop() is None, "still backing off"
    assert q.next_wakeup() == 1.0
    clock.now += 1
    assert q.pop() == ("default", "x")


def test_a_failed_pod_is_retried_after_the_flush_interval_without_changes() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(p("x"))
    q.pop()
    q.failed(("default", "x"))
    clock.now += 2
    assert q.pop() is None
    assert q.next_wakeup() == FLUSH_SECONDS - 2
    clock.now += FLUSH_SECONDS
    assert q.pop() == ("default", "x")


def test_waiting_pods_wake_on_their_own_change_or_after_a_recheck() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    q.add(p("x"))
    q.add(p("y"))
    x, y = q.pop(), q.pop()
    assert x is not None and y is not None
    q.wait(x)
    q.wait(y)
    assert q.state_of(x) == "waiting" and q.failures(x) == 0
    q.add(p("x"))  # the pod changed (its claim status arrived)
    assert q.pop() == x
    assert q.pop() is None
    clock.now += WAITING_RECHECK
    assert q.pop() == y


def test_in_flight_pods_are_not_handed_out_again() -> None:
    q = SchedulingQueue(Clock())
    q.add(p("x"))
    key = q.pop()
    assert key is not None
    q.add(p("x"))  # an informer update while it is being decided
    assert q.pop() is None
    assert q.in_flight(key)
    q.done(key)
    assert key not in q and len(q) == 0


def test_take_pulls_a_gang_member_into_flight() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    for n in "abc":
        q.add(p(n))
    a = q.pop()
    assert a is not None
    assert q.take(("default", "b")) and q.take(("default", "c"))
    assert not q.take(("default", "b")), "already in flight"
    assert q.pop() is None
    q.retry_now(("default", "c"))
    assert q.pop() == ("default", "c")


def test_removed_pods_vanish_from_every_state() -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    for n in "abc":
        q.add(p(n))
    a = q.pop()
    assert a == ("default", "a")
    q.failed(a)
    q.remove(a)
    q.remove(("default", "c"))
    q.cluster_changed()
    clock.now += FLUSH_SECONDS
    assert drain(q) == ["b"]
    assert len(q) == 1 and q.state_of(("default", "b")) == "in_flight"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "pop", "fail", "wait", "done", "remove", "change", "tick"]),
                          st.integers(0, 5)), max_size=60))
def test_no_pod_is_ever_in_two_states_or_handed_out_twice(ops: list[tuple[str, int]]) -> None:
    clock = Clock()
    q = SchedulingQueue(clock)
    flying: set[tuple[str, str]] = set()
    for op, i in ops:
        key = ("default", f"p{i}")
        if op == "add":
            q.add(p(f"p{i}", priority=i % 3))
        elif op == "pop":
            got = q.pop()
            if got is not None:
                assert got not in flying, "handed out while in flight"
                flying.add(got)
        elif op == "fail" and key in flying:
            q.failed(key)
            flying.discard(key)
        elif op == "wait" and key in flying:
            q.wait(key)
            flying.discard(key)
        elif op == "done" and key in flying:
            q.done(key)
            flying.discard(key)
        elif op == "remove":
            q.remove(key)
            flying.discard(key)
        elif op == "change":
            q.cluster_changed()
        elif op == "tick":
            clock.now += 7 * (i + 1)
        states = [q.state_of(("default", f"p{j}")) for j in range(6)]
        depth = q.depth()
        assert sum(depth.values()) == len(q) == sum(s is not None for s in states)
        assert {k for k in flying} == {("default", f"p{j}") for j in range(6) if states[j] == "in_flight"}
    # Everything not in flight comes out eventually, each once.
    clock.now += FLUSH_SECONDS + MAX_BACKOFF
    q.cluster_changed()
    out = []
    while (k := q.pop()) is not None:
        out.append(k)
    assert len(out) == len(set(out))
    assert set(out) | flying == {("default", f"p{j}") for j in range(6) if q.state_of(("default", f"p{j}")) is not None}
