"""The API client's rate limit (kube-scheduler's clientConnection qps/burst) and its 429 handling,
with an injected clock: no test here waits in real time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.informer import Reflector
from scheduler.kube import MAX_RETRY_AFTER, Kube, KubeCollector, KubeError, RateLimiter
from scheduler.metrics import Metrics
from scheduler.resources import NODES
from tests.apiserver import FakeApiServer
from tests.builders import node


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def starts(qps: float, burst: int, arrivals: list[float]) -> list[float]:
    """When each call goes out: it arrives, reserves a token, waits what the limiter says."""
    t = FakeTime()
    limiter = RateLimiter(qps, burst, t.clock)
    out = []
    for a in arrivals:
        t.now = max(t.now, a)
        out.append(t.now + limiter.reserve())
    return out


@settings(max_examples=300, deadline=None)
@given(qps=st.floats(0.5, 200), burst=st.integers(1, 50),
       gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=200))
def test_no_window_sees_more_than_burst_plus_qps_times_its_length(qps: float, burst: int, gaps: list[float]) -> None:
    arrivals = []
    t = 0.0
    for g in gaps:
        t += g
        arrivals.append(t)
    s = starts(qps, burst, arrivals)
    assert s == sorted(s), "callers are served in arrival order"
    assert all(start >= a for start, a in zip(s, arrivals, strict=True))
    for i in range(len(s)):
        for j in range(i, len(s)):
            # calls i..j all go out within [s[i], s[j]]
            assert j - i + 1 <= burst + qps * (s[j] - s[i]) + 1e-6


@settings(max_examples=100, deadline=None)
@given(qps=st.floats(1, 100), burst=st.integers(1, 20), n=st.integers(1, 100))
def test_calls_spaced_at_the_rate_never_wait(qps: float, burst: int, n: int) -> None:
    arrivals = [i / qps for i in range(n)]
    assert starts(qps, burst, arrivals) == pytest.approx(arrivals)


def test_a_burst_goes_out_at_once_and_the_rest_at_the_rate() -> None:
    s = starts(10, 3, [0.0] * 6)
    assert s == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])


def test_qps_zero_is_no_limit_and_bad_settings_are_refused() -> None:
    assert starts(0, 0, [0.0] * 1000) == [0.0] * 1000
    with pytest.raises(ValueError, match="burst: must be at least 1"):
        RateLimiter(10, 0)
    with pytest.raises(ValueError, match="qps: must be a finite number"):
        RateLimiter(float("inf"), 10)


@pytest.mark.asyncio
async def test_requests_over_http_wait_for_tokens_and_watches_do_not_take_any() -> None:
    api = FakeApiServer()
    await api.start()
    for n in "abc":
        api.create(node(n))
    t = FakeTime()
    kube = Kube.for_url(api.url, qps=10, burst=2, clock=t.clock, sleep=t.sleep)
    try:
        for _ in range(5):
            await kube.list(NODES.list_path)
        assert t.sleeps == pytest.approx([0.1, 0.1, 0.1])
        assert kube.stats.limited == 3 and kube.stats.waited_seconds == pytest.approx(0.3)
        r = Reflector(kube, NODES, lambda *a: None, Metrics(), watch_timeout=1)
        task = asyncio.get_running_loop().create_task(r.run())
        await asyncio.wait_for(r.synced.wait(), 30)
        for _ in range(200):
            if kube.stats.requests["WATCH"]:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert kube.stats.requests["WATCH"] >= 1
        assert kube.stats.limited == 4, "the informer's list waited; its watch did not"
        families = {m.name: m for m in KubeCollector(kube).collect()}
        assert families["tessera_api_rate_limited_requests"].samples[0].value == 4
        assert {s.labels["verb"]: s.value for s in families["tessera_api_requests"].samples}["GET"] == 6
    finally:
        await kube.close()
        await api.stop()


@pytest.mark.asyncio
async def test_429_is_retried_after_a_second_when_the_server_gives_no_retry_after() -> None:
    api = FakeApiServer()
    await api.start()
    api.create(node("a"))
    t = FakeTime()
    kube = Kube.for_url(api.url, clock=t.clock, sleep=t.sleep)
    try:
        api.fail_next(429, count=2, path="/api/v1/nodes")
        body = await kube.list(NODES.list_path)
        assert [o["metadata"]["name"] for o in body["items"]] == ["a"]
        assert t.sleeps == [1.0, 1.0] and kube.stats.retries[429] == 2
        api.fail_next(429, count=MAX_RETRY_AFTER + 1, path="/api/v1/nodes")
        with pytest.raises(KubeError) as e:
            await kube.list(NODES.list_path)
        assert e.value.status == 429
        api.fail_next(500, count=1, path="/api/v1/nodes")  # a 5xx without Retry-After is the caller's to retry
        with pytest.raises(KubeError) as e:
            await kube.list(NODES.list_path)
        assert e.value.status == 500
    finally:
        await kube.close()
        await api.stop()


async def _throttling_server(answers: list[tuple[int, dict[str, str]]]) -> tuple[web.AppRunner, str]:
    """Answers each request with the next (status, headers), then 200 with an empty list."""

    async def handle(request: web.Request) -> web.Response:
        if answers:
            code, headers = answers.pop(0)
            return web.json_response({"kind": "Status", "code": code, "message": "slow down"}, status=code, headers=headers)
        return web.json_response({"kind": "NodeList", "items": [], "metadata": {"resourceVersion": "1"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.asyncio
async def test_retry_after_is_honoured_for_429_and_for_a_5xx_that_sends_it() -> None:
    answers: list[tuple[int, dict[str, Any]]] = [(429, {"Retry-After": "3"}), (503, {"Retry-After": "2"}),
                                                 (429, {"Retry-After": "3600"}), (429, {"Retry-After": "soon"})]
    runner, url = await _throttling_server(answers)
    t = FakeTime()
    kube = Kube.for_url(url, clock=t.clock, sleep=t.sleep)
    try:
        body = await kube.list(NODES.list_path)
        assert body["items"] == []
        assert t.sleeps == [3.0, 2.0, 60.0, 1.0]
        assert dict(kube.stats.retries) == {429: 3, 503: 1}
    finally:
        await kube.close()
        await runner.cleanup()


@pytest.mark.asyncio
async def test_the_environment_is_read_once_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """kubernetes_asyncio would look up ~/.netrc and the proxy variables on every request: the
    client reads the proxy for the API server once and switches the lookup off; NO_PROXY holds."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kube = Kube.for_url("https://api.example:6443")
    monkeypatch.setenv("NO_PROXY", "api.example")
    bypassed = Kube.for_url("https://api.example:6443")
    try:
        assert kube.api.rest_client.pool_manager.trust_env is False
        assert kube.api.rest_client.proxy == "http://proxy.example:3128"
        assert bypassed.api.rest_client.pool_manager.trust_env is False and not bypassed.api.rest_client.proxy
    finally:
        await kube.close()
        await bypassed.close()
