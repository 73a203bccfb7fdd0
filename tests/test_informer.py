"""Informers against the test API server over HTTP: nothing missed, nothing applied twice."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from typing import Any

import pytest

from scheduler.informer import Reflector
from scheduler.kube import Kube
from scheduler.metrics import Metrics
from scheduler.resources import NODES, POD_GROUPS, RESOURCE_CLAIMS
from tests.apiserver import FakeApiServer
from tests.builders import claim, exact, node
from tests.live import eventually

Obj = dict[str, Any]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []  # (type, name, resourceVersion)

    def __call__(self, kind: str, event: str, obj: Obj, old: Obj | None) -> None:
        self.events.append((event, obj["metadata"]["name"], obj["metadata"].get("resourceVersion", "")))


async def start(api: FakeApiServer, resource: Any = NODES, **kw: Any) -> tuple[Kube, Reflector, Recorder, asyncio.Task[None]]:
    kube = Kube.for_url(api.url)
    rec = Recorder()
    r = Reflector(kube, resource, rec, Metrics(), **kw)
    task = asyncio.get_running_loop().create_task(r.run())
    await asyncio.wait_for(r.synced.wait(), 30)
    return kube, r, rec, task


async def stop(kube: Kube, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await kube.close()


def same_as_server(api: FakeApiServer, r: Reflector, kind: str = "Node") -> bool:
    want = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in api.all(kind)}
    have = {k[1]: o["metadata"]["resourceVersion"] for k, o in r.store.objects.items()}
    return want == have


@pytest.mark.asyncio
async def test_list_then_watch_delivers_each_change_once() -> None:
    api = FakeApiServer()
    await api.start()
    api.create(node("a"))
    kube, r, rec, task = await start(api)
    try:
        assert rec.events == [("ADDED", "a", "1")]
        api.create(node("b"))
        api.put(node("a", {"x": "1"}))
        api.delete("Node", "b")
        await eventually(lambda: len(rec.events) == 4, what="three watch events")
        assert [(e, n) for e, n, _ in rec.events[1:]] == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
        assert same_as_server(api, r)
    finally:
        await stop(kube, task)
        await api.stop()


@pytest.mark.asyncio
async def test_bookmarks_move_the_resume_point_without_events() -> None:
    api = FakeApiServer(bookmark_interval=0.05)
    await api.start()
    api.create(node("a"))
    kube, r, rec, task = await start(api)
    try:
        api.create(claim("c", exact("g")))  # another resource moves the global version on
        await eventually(lambda: r.resource_version == str(api.current), what="a bookmark")
        assert rec.events == [("ADDED", "a", "1")]
    finally:
        await stop(kube, task)
        await api.stop()


@pytest.mark.asyncio
async def test_a_dropped_watch_resumes_from_the_last_version_without_repeats() -> None:
    api = FakeApiServer(bookmark_interval=10)
    await api.start()
    kube, r, rec, task = await start(api)
    try:
        api.create(node("a"))
        await eventually(lambda: len(rec.events) == 1)
        api.drop_watches()
        api.create(node("b"))  # while no watch is open
        api.put(node("a", {"x": "1"}))
        await eventually(lambda: len(rec.events) == 3, what="the events from the gap")
        api.create(node("c"))
        await eventually(lambda: len(rec.events) == 4)
        assert Counter(rv for *_, rv in rec.events).most_common(1)[0][1] == 1, "an event was applied twice"
        assert same_as_server(api, r)
        lists = [p for m, p in api.requests if m == "GET" and p.partition("?")[0] == "/api/v1/nodes" and "watch=" not in p]
        assert len(lists) == 1, "a dropped watch resumes; it does not relist"
    finally:
        await stop(kube, task)
        await api.stop()


@pytest.mark.asyncio
async def test_410_gone_relists_and_reports_what_was_deleted_meanwhile() -> None:
    api = FakeApiServer(bookmark_interval=10)
    await api.start()
    for n in "abc":
        api.create(node(n))
    kube, r, rec, task = await start(api)
    metrics = r.metrics
    try:
        api.drop_watches()
        api.delete("Node", "a")
        api.put(node("b", {"x": "1"}))
        api.create(node("d"))
        api.compact()  # the resume point is gone: the watch gets 410 Expired
        await eventually(lambda: same_as_server(api, r), what="the relist")
        got = [(e, n) for e, n, _ in rec.events[3:]]
        assert sorted(got) == [("ADDED", "d"), ("DELETED", "a"), ("MODIFIED", "b")]
        assert metrics.relists.labels("Node")._value.get() >= 1
    finally:
        await stop(kube, task)
        await api.stop()


@pytest.mark.asyncio
async def test_a_failing_list_is_retried_with_backoff() -> None:
    api = FakeApiServer()
    await api.start()
    api.create(node("a"))
    api.fail_next(500, count=2, method="GET", path="/api/v1/nodes")
    kube = Kube.for_url(api.url)
    rec = Recorder()
    r = Reflector(kube, NODES, rec, Metrics(), max_backoff=0.5)
    task = asyncio.get_running_loop().create_task(r.run())
    try:
        await asyncio.wait_for(r.synced.wait(), 30)
        assert rec.events == [("ADDED", "a", "1")]
        assert r.metrics.relists.labels("Node")._value.get() == 2
    finally:
        await stop(kube, task)
        await api.stop()


@pytest.mark.asyncio
async def test_a_missing_crd_is_skipped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApiServer(hidden=("podgroups",))
    await api.start()
    caplog.set_level(logging.WARNING, "tessera.informer")
    kube, r, rec, task = await start(api, POD_GROUPS)
    try:
        await asyncio.wait_for(task, 30)
        assert r.absent and r.synced.is_set() and rec.events == []
        warnings = [m for m in caplog.messages if "podgroups" in m.lower() or "PodGroup" in m]
        assert len(warnings) == 1
    finally:
        await stop(kube, task)
        await api.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(6))
async def test_random_changes_with_drops_and_compactions_converge(seed: int) -> None:
    rng = random.Random(seed)
    api = FakeApiServer(bookmark_interval=0.02, history=rng.choice([5, 50, 1000]))
    await api.start()
    kube, r, rec, task = await start(api, RESOURCE_CLAIMS)
    try:
        names: set[str] = set()
        for step in range(120):
            op = rng.random()
            if op < 0.4 or not names:
                n = f"c{step}"
                api.create(claim(n, exact("g")))
                names.add(n)
            elif op < 0.7:
                n = rng.choice(sorted(names))
                c = api.get("ResourceClaim", n, "default")
                assert c is not None
                api.put({**c, "metadata": {**c["metadata"], "labels": {"step": str(step)}}})
            elif op < 0.85:
                n = rng.choice(sorted(names))
                api.delete("ResourceClaim", n, "default")
                names.discard(n)
            elif op < 0.93:
                api.drop_watches()
            else:
                api.compact()
            if rng.random() < 0.3:
                await asyncio.sleep(0.005)
        want = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in api.all("ResourceClaim")}
        # A state, not a duration: the cap only ends a failing run (relists back off up to a few
        # seconds on a loaded machine).
        await eventually(lambda: {k[1]: o["metadata"]["resourceVersion"] for k, o in r.store.objects.items()} == want,
                         timeout=120, what="the store to match the server")
        applied = [(n, rv) for e, n, rv in rec.events if e != "DELETED"]
        assert len(applied) == len(set(applied)), "an object version was applied twice"
    finally:
        await stop(kube, task)
        await api.stop()


@pytest.mark.asyncio
async def test_the_list_comes_in_pages_of_one_snapshot() -> None:
    api = FakeApiServer()
    await api.start()
    for i in range(7):
        api.create(node(f"n{i}"))
    snapshot = str(api.current)

    def late() -> None:  # a change between two pages: not in the list (its snapshot is older), but watched
        api.create(node("late"))

    api.after_next(late, method="GET", path="/api/v1/nodes")
    kube, r, rec, task = await start(api, page_size=3)
    try:
        lists = [q for m, q in api.requests if m == "GET" and "watch" not in q]
        assert len(lists) == 3 and all("limit=3" in q for q in lists) and "continue=" in lists[1]
        assert [n for _, n, _ in rec.events] == [f"n{i}" for i in range(7)]
        assert r.resource_version == snapshot
        await eventually(lambda: same_as_server(api, r), what="the change made between pages, from the watch")
        assert rec.events[-1][:2] == ("ADDED", "late")
    finally:
        await stop(kube, task)
        await api.stop()


@pytest.mark.asyncio
async def test_an_expired_continue_token_starts_the_list_over() -> None:
    api = FakeApiServer()
    await api.start()
    for i in range(5):
        api.create(node(f"n{i}"))

    def change_and_expire() -> None:  # after the first page: n4 goes, n5 comes, the snapshot is compacted
        api.delete("Node", "n4")
        api.create(node("n5"))
        api.expire_continues()

    api.after_next(change_and_expire, method="GET", path="/api/v1/nodes")
    kube, r, rec, task = await start(api, page_size=2)
    try:
        assert same_as_server(api, r)
        names = [(e, n) for e, n, _ in rec.events]
        assert names[:2] == [("ADDED", "n0"), ("ADDED", "n1")]  # the first page, before the token expired
        assert sorted(n for e, n in names if e == "ADDED") == ["n0", "n1", "n2", "n3", "n5"]
        assert ("DELETED", "n4") not in names  # never listed, so never deleted
        assert r.metrics.relists.labels("Node")._value.get() == 1
        applied = [(n, rv) for e, n, rv in rec.events]
        assert len(applied) == len(set(applied)), "an object version was applied twice"
    finally:
        await stop(kube, task)
        await api.stop()
