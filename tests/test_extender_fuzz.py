"""Fuzzing the four extender verbs over real HTTP: whatever the body, the answer is a 200, a 400
naming what is wrong or a 413, never a 5xx; and valid requests interleaved with the junk keep
getting the right answers (nothing was lost or half-written)."""

from __future__ import annotations

import asyncio
import json
import pathlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.app import extender_app
from scheduler.serve import start_http
from tests.live import live
from tests.test_extender import cluster

Obj = dict[str, Any]
PAYLOADS = pathlib.Path(__file__).parent / "payloads"
VERBS = {"filter": "filter-node-cache.json", "prioritize": "filter-node-cache.json", "preempt": "preempt-node-cache.json",
         "bind": "bind.json"}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=20), st.sampled_from(["", "n0", "default", "uid-x", "x/../y", "Pod", "NodeNames"]))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                          st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                           max_leaves=30)


def payload(verb: str) -> Obj:
    loaded: Obj = json.loads((PAYLOADS / VERBS[verb]).read_text())
    return loaded


def paths(v: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(v, dict):
        for k, x in v.items():
            yield from paths(x, (*prefix, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from paths(x, (*prefix, i))


def replaced(v: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(v, dict):
        return {**v, head: replaced(v[head], rest, new)}
    out = list(v)
    out[head] = replaced(v[head], rest, new)
    return out


@st.composite
def bodies(draw: st.DrawFn, verb: str) -> bytes:
    """Junk of every shape: random JSON, valid payloads with a subtree replaced, broken bytes."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "random", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "random":
        return json.dumps(draw(json_values)).encode()
    base = payload(verb)
    all_paths = list(paths(base))
    path = draw(st.sampled_from(all_paths))
    return json.dumps(replaced(base, path, draw(json_values))).encode()


class Server:
    """The service and its extender on a thread of their own, for synchronous hypothesis tests."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        async with live(cluster(), claim_controller=False) as (_api, svc):
            # On the service's own loop (its API client lives there), in this thread.
            server, task, self.port = await start_http(extender_app(svc.extender, svc.metrics, svc.unsynced, svc.problems),
                                                       "127.0.0.1", 0)
            self.ready.set()
            while not self.stop.is_set():
                await asyncio.sleep(0.05)
            server.should_exit = True
            await task

    def post(self, verb: str, body: bytes) -> tuple[int, Obj]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/{verb}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    s.thread.start()
    assert s.ready.wait(60), "the service did not start"
    yield s
    s.stop.set()
    s.thread.join(30)


@pytest.mark.parametrize("verb", ["filter", "prioritize", "preempt"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_body_gets_a_5xx_and_good_requests_keep_working(server: Server, verb: str, data: st.DataObject) -> None:
    body = data.draw(bodies(verb))
    status, out = server.post(verb, body)
    assert status in (200, 400), (status, out, body[:300])
    if status == 400:
        assert isinstance(out.get("Error"), str) and out["Error"], out
    status, good = server.post("filter", json.dumps(payload("filter")).encode())
    assert status == 200 and good["NodeNames"] == ["n2", "n3"], good


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_junk_binds_get_no_5xx(server: Server, data: st.DataObject) -> None:
    body = data.draw(bodies("bind"))
    status, out = server.post("bind", body)
    assert status in (200, 400), (status, out, body[:300])
    assert isinstance(out.get("Error"), str)
