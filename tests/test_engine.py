"""Decisions off the event loop: one at a time, the state theirs while they run, webhooks answered
by their deadline, and the HTTP surface and the watches served meanwhile.

A decision that must outlast a deadline is made to by holding the engine with a job that waits
for the test's say-so, never by counting on a search being slow."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from scheduler.engine import DecisionTimeout, Engine
from scheduler.service import Options
from tests.builders import claim, exact, node, pod
from tests.live import bound, eventually, gpu_cluster, live
from tests.test_extender import extender, payload, post

pytestmark = pytest.mark.asyncio


def _holding(engine: Engine) -> tuple[asyncio.Task[str], threading.Event, threading.Event]:
    """Occupies the engine until `release` is set; `started` once the job runs on the worker."""
    started, release = threading.Event(), threading.Event()

    def job(_: Callable[[], bool]) -> str:
        started.set()
        release.wait(120)
        return "held"

    return asyncio.get_running_loop().create_task(engine.run(job)), started, release


async def _until(event: threading.Event) -> None:
    await asyncio.to_thread(event.wait, 60)
    assert event.is_set()


async def test_decisions_run_one_at_a_time_in_order() -> None:
    engine = Engine()
    order: list[int] = []
    inside = 0
    most = 0

    def job(i: int) -> Callable[[Callable[[], bool]], int]:
        def run(_: Callable[[], bool]) -> int:
            nonlocal inside, most
            inside += 1
            most = max(most, inside)
            order.append(i)
            inside -= 1
            return i * i
        return run

    results = await asyncio.gather(*(engine.run(job(i)) for i in range(20)))
    assert results == [i * i for i in range(20)]
    assert order == list(range(20)) and most == 1
    await engine.close()


async def test_quiet_waits_for_the_running_decision() -> None:
    engine = Engine()
    task, started, release = _holding(engine)
    await _until(started)
    assert engine.busy
    waiter = asyncio.get_running_loop().create_task(engine.quiet())
    await asyncio.sleep(0)
    assert not waiter.done()
    release.set()
    await waiter
    assert await task == "held" and not engine.busy
    await engine.quiet()  # free: returns at once
    await engine.close()


async def test_a_deadline_passing_while_waiting_or_deciding_raises_and_keeps_the_state_until_the_job_ends() -> None:
    engine = Engine()
    task, started, release = _holding(engine)
    await _until(started)
    with pytest.raises(DecisionTimeout, match="waited"):
        await engine.run(lambda _: "never", deadline=0.05)
    release.set()
    assert await task == "held"

    asked_to_stop = threading.Event()
    finish = threading.Event()

    def slow(stop: Callable[[], bool]) -> str:
        while not stop():
            finish.wait(0.01)
        asked_to_stop.set()
        finish.wait(120)
        return "dropped"

    with pytest.raises(DecisionTimeout, match="took longer"):
        await engine.run(slow, deadline=0.05)
    await _until(asked_to_stop)
    assert engine.busy  # still unwinding: the state is still the job's
    after = asyncio.get_running_loop().create_task(engine.run(lambda _: "next"))
    await asyncio.sleep(0)
    assert not after.done()
    finish.set()
    assert await after == "next"
    await engine.close()


async def test_a_failing_job_frees_the_engine() -> None:
    engine = Engine()

    def boom(_: Callable[[], bool]) -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await engine.run(boom)
    assert await engine.run(lambda _: 7) == 7
    await engine.close()


async def test_while_a_decision_runs_health_answers_events_wait_and_webhooks_answer_by_their_deadline() -> None:
    async with extender() as (api, svc, http, base):
        svc.extender.deadline = 0.2
        task, started, release = _holding(svc.state.engine)
        await _until(started)
        # The event loop is free: the main port's health and metrics answer.
        async with http.get(base + "/healthz") as r:
            assert r.status == 200
        async with http.get(base + "/metrics") as r:
            assert r.status == 200
        # Webhooks cannot decide while the engine is held: each answers in time with an error.
        status, out = await post(http, base + "/filter", payload("filter-node-cache.json"))
        assert status == 200 and "could not filter" in out["Error"] and "--decision-deadline" in out["Error"]
        assert out["NodeNames"] is None
        status, scores = await post(http, base + "/prioritize", payload("filter-node-cache.json"))
        assert status == 200 and {s["Score"] for s in scores} == {0}
        status, out = await post(http, base + "/preempt", payload("preempt-node-cache.json"))
        assert status == 503 and "could not judge" in out["Error"]
        # An informer event arriving now waits: the state is the decision's.
        api.create(node("late"))
        await asyncio.sleep(0.2)
        assert "late" not in svc.state.nodes
        release.set()
        assert await task == "held"
        await eventually(lambda: "late" in svc.state.nodes, what="the held event to be applied")
        svc.extender.deadline = 60
        status, out = await post(http, base + "/filter", payload("filter-node-cache.json"))
        assert status == 200 and out["Error"] == "" and out["NodeNames"] == ["n2", "n3"]


async def test_changing_the_state_from_the_event_loop_while_a_decision_runs_is_refused() -> None:
    async with extender() as (_api, svc, _http, _base):
        task, started, release = _holding(svc.state.engine)
        await _until(started)
        try:
            with pytest.raises(RuntimeError, match="while a decision runs"):
                svc.state.on_event("Node", "ADDED", node("x"), None)
            with pytest.raises(RuntimeError, match="while a decision runs"):
                svc.state.session()
        finally:
            release.set()
            await task
        svc.state.on_event("Node", "ADDED", node("x"), None)
        assert "x" in svc.state.nodes


async def test_the_secondary_scheduler_binds_what_arrived_while_the_engine_was_held() -> None:
    async with live(gpu_cluster(2), Options(watch_timeout=30)) as (api, svc):
        task, started, release = _holding(svc.state.engine)
        await _until(started)
        api.create(claim("c", exact("gpu", count=2)))
        api.create(pod("p", {"g": "c"}))
        await asyncio.sleep(0.2)
        assert bound(api, "p") is None
        release.set()
        await task
        await eventually(lambda: bound(api, "p"), what="pod p to be bound")
