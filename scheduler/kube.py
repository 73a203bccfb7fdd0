"""Kubernetes API access for Tessera: the real kubernetes_asyncio client, raw bytes in and out.

Responses are read as bytes and parsed with orjson into plain dicts (the client's generated
model classes are ~15x slower to build and Tessera parses objects into its own model anyway).
Watches stream one JSON event per line. Every failure is a `KubeError` carrying the HTTP status
and the API server's message.

Every request but a watch takes a token from a client-side rate limiter first, as kube-scheduler's
client does (`clientConnection.qps` / `burst`, client-go's token bucket): `qps` tokens a second, at
most `burst` saved up, callers served in order. A 429 Too Many Requests (API Priority and
Fairness shedding load) is retried after the server's `Retry-After` (1 s when it gives none), as
client-go does, up to `MAX_RETRY_AFTER` times; so is a 5xx that carries a `Retry-After`. Not so a
POST to the Eviction subresource (`create(..., follow_retry_after=...)`, default off there): its
429 is a PodDisruptionBudget refusing (with `Retry-After: 10` from a real server), which one
attempt answers, so that the caller's own retries and deadlines apply rather than ~100 s inside
the client. What the client sent and waited is counted (`Kube.stats`) and exported by
`KubeCollector`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client, config
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from yarl import URL

from .limits import DEFAULT_BURST, DEFAULT_QPS

log = logging.getLogger("tessera.kube")

Obj = dict[str, Any]
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


STARTUP_TIMEOUT = 15.0  # seconds for the API server to answer at start
MAX_RETRY_AFTER = 10  # client-go's rest client retries a Retry-After response 10 times
MAX_RETRY_AFTER_SECONDS = 60.0  # a longer Retry-After is taken as this (the request is still retried)
EVICTION_SUFFIX = "/eviction"  # pods/<name>/eviction: a refusal is answered once, not waited out

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """A token bucket (client-go flowcontrol's, golang.org/x/time/rate underneath): `qps` tokens
    a second, at most `burst` held. `reserve` takes a token at once and says how long the caller
    must wait before using it, so callers are served in arrival order and, over any interval of
    T seconds, at most burst + qps * T calls go out. qps <= 0 means no limit."""

    def __init__(self, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST, clock: Clock = time.monotonic) -> None:
        if qps > 0 and burst < 1:
            raise ValueError(f"rate limiter burst: must be at least 1 when qps is set, got {burst}")
        if not math.isfinite(qps):
            raise ValueError(f"rate limiter qps: must be a finite number, got {qps}")
        self.qps = qps
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock()

    @property
    def unlimited(self) -> bool:
        return self.qps <= 0

    def reserve(self) -> float:
        """Takes one token; the seconds to wait before the call (0 when one was available)."""
        if self.unlimited:
            return 0.0
        now = self.clock()
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


@dataclass(slots=True)
class KubeStats:
    """What this client did: requests by verb (watches included, though never limited), how many
    waited for the rate limiter and for how long, and the retries after 429 / Retry-After."""

    requests: Counter[str] = field(default_factory=Counter)
    limited: int = 0
    waited_seconds: float = 0.0
    retries: Counter[int] = field(default_factory=Counter)  # by HTTP status


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    """The delay a 429, or a 5xx with a Retry-After, asks for; None for any other answer."""
    header = resp.headers.get("Retry-After")
    if resp.status != 429 and not (resp.status >= 500 and header is not None):
        return None
    try:
        seconds = float(header) if header is not None else 1.0
    except ValueError:
        seconds = 1.0  # an HTTP date, or garbage: client-go waits 1 s then too
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS) if math.isfinite(seconds) else 1.0


class StartupError(Exception):
    """`tessera serve` cannot start (kubeconfig, API server, port): one line, exit status 2."""


class KubeError(Exception):
    def __init__(self, status: int, message: str, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def transient(self) -> bool:
        """The server or the network hiccupped; the same request may well succeed if repeated."""
        return self.status in (0, 429) or self.status >= 500


def _error(status: int, raw: bytes) -> KubeError:
    try:
        body = orjson.loads(raw)
        return KubeError(status, str(body.get("message") or raw[:300].decode(errors="replace")), str(body.get("reason") or ""))
    except orjson.JSONDecodeError:
        return KubeError(status, raw[:300].decode(errors="replace"))


def _environment_read_once(api: client.ApiClient) -> None:
    """kubernetes_asyncio opens its session with `trust_env=True`: every request then looks up
    ~/.netrc and the proxy variables again, on a thread pool, which halved the secondary
    scheduler's throughput (measured: 255 -> 504 pods/s without it). The environment is read once
    here instead: the proxy for the API server's URL (HTTPS_PROXY / HTTP_PROXY, NO_PROXY honoured)
    goes into the client's configuration, and the per-request lookup is switched off. A proxy
    given in the kubeconfig is kept."""
    rest = api.rest_client
    session = rest.pool_manager
    if not getattr(session, "_trust_env", False):
        return
    if not rest.proxy:
        try:
            proxy, _auth = get_env_proxy_for_url(URL(api.configuration.host or ""))
        except LookupError:
            proxy = None
        if proxy is not None:
            rest.proxy = api.configuration.proxy = str(proxy)
    session._trust_env = False  # aiohttp has no setter; read only in requests


class Kube:
    """One API connection; thread-unsafe, asyncio-safe."""

    def __init__(self, api: client.ApiClient, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        _environment_read_once(api)
        self.api = api
        self.limiter = RateLimiter(qps, burst, clock)
        self.sleep = sleep
        self.stats = KubeStats()

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST) -> Kube:
        """`kubeconfig` or $KUBECONFIG; else the in-cluster service account. `qps`/`burst`: the
        client-side rate limit (qps <= 0: none)."""
        cfg = client.Configuration()
        path = kubeconfig or os.environ.get("KUBECONFIG")
        if path:
            if not os.path.isfile(path):
                raise StartupError(f"kubeconfig {path}: file not found")
            if not os.access(path, os.R_OK):
                raise StartupError(f"kubeconfig {path}: not readable")
            try:
                await config.load_kube_config(config_file=path, client_configuration=cfg)
            except Exception as e:
                raise StartupError(f"kubeconfig {path}: {str(e).strip() or type(e).__name__}") from None
        else:
            try:
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            except Exception as e:
                raise StartupError(f"no kubeconfig: pass --kubeconfig or set $KUBECONFIG, or run in a cluster "
                                   f"({str(e).strip() or type(e).__name__})") from None
        return cls(client.ApiClient(configuration=cfg), qps, burst)

    async def check(self) -> None:
        """That the API server answers at all (GET /version), for a clear error at start."""
        host = self.api.configuration.host
        try:
            resp = await self._call("GET", "/version", timeout=STARTUP_TIMEOUT)
            resp.release()
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise StartupError(f"cannot reach the API server at {host}: {str(e) or type(e).__name__}") from None
        if resp.status in (401, 403):
            raise StartupError(f"the API server at {host} refused Tessera's credentials (HTTP {resp.status})")

    @classmethod
    def for_url(cls, url: str, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST,
                clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> Kube:
        """An unauthenticated connection (tests and local API servers)."""
        cfg = client.Configuration(host=url)
        return cls(client.ApiClient(configuration=cfg), qps, burst, clock, sleep)

    async def close(self) -> None:
        await self.api.close()

    async def _throttle(self) -> None:
        delay = self.limiter.reserve()
        if delay > 0:
            self.stats.limited += 1
            self.stats.waited_seconds += delay
            await self.sleep(delay)

    async def _call(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None,
                    content_type: str = JSON, timeout: float | None = 30.0, watch: bool = False,
                    follow_retry_after: bool = True) -> aiohttp.ClientResponse:
        """One request (after the rate limiter, unless a watch), retried while the server answers
        429 or a 5xx with Retry-After, at most MAX_RETRY_AFTER times (unless `follow_retry_after`
        is False: that answer is then returned at once)."""
        headers = {"Accept": JSON, "Content-Type": content_type}
        params = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items() if v is not None]
        verb = "WATCH" if watch else method
        for attempt in range(MAX_RETRY_AFTER + 1):
            if not watch:
                await self._throttle()
            self.stats.requests[verb] += 1
            resp: aiohttp.ClientResponse = await self.api.call_api(
                path, method, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"],
                _preload_content=False, _request_timeout=timeout)
            delay = _retry_after(resp) if follow_retry_after and attempt < MAX_RETRY_AFTER else None
            if delay is None:
                return resp
            resp.release()
            self.stats.retries[resp.status] += 1
            log.info("event=api-retry-after method=%s path=%s status=%d delay=%.1f attempt=%d", method, path, resp.status,
                     delay, attempt + 1)
            await self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns

    async def request(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None,
                      content_type: str = JSON, follow_retry_after: bool = True) -> Obj:
        try:
            resp = await self._call(method, path, query, body, content_type, follow_retry_after=follow_retry_after)
            raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as e:
            raise KubeError(0, f"{method} {path}: {type(e).__name__}: {e}") from None
        if not 200 <= resp.status < 300:
            raise _error(resp.status, raw)
        return orjson.loads(raw) if raw else {}

    async def get(self, path: str) -> Obj:
        return await self.request("GET", path)

    async def list(self, path: str, **query: Any) -> Obj:
        return await self.request("GET", path, query)

    async def create(self, path: str, obj: Obj, *, follow_retry_after: bool | None = None) -> Obj:
        """POST. `follow_retry_after`: whether a 429's Retry-After is waited out inside the client
        (see the module docstring); by default yes, but not for the Eviction subresource."""
        follow = not path.endswith(EVICTION_SUFFIX) if follow_retry_after is None else follow_retry_after
        return await self.request("POST", path, body=obj, follow_retry_after=follow)

    async def replace(self, path: str, obj: Obj) -> Obj:
        return await self.request("PUT", path, body=obj)

    async def delete(self, path: str, options: Obj | None = None) -> Obj:
        """DELETE with DeleteOptions (grace period, preconditions) in the body, as kubectl sends them."""
        return await self.request("DELETE", path, body=options)

    async def patch(self, path: str, patch: Obj, strategic: bool = False) -> Obj:
        return await self.request("PATCH", path, body=patch, content_type=STRATEGIC_PATCH if strategic else MERGE_PATCH)

    async def watch(self, path: str, resource_version: str, timeout_seconds: int = 300) -> AsyncIterator[Obj]:
        """Events from `resource_version` on, with bookmarks; ends when the server ends the stream."""
        query = {"watch": True, "resourceVersion": resource_version, "allowWatchBookmarks": True,
                 "timeoutSeconds": timeout_seconds}
        try:
            resp = await self._call("GET", path, query, timeout=timeout_seconds + 30, watch=True)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise KubeError(0, f"watch {path}: {type(e).__name__}: {e}") from None
        try:
            if not 200 <= resp.status < 300:
                raise _error(resp.status, await resp.read())
            while True:
                try:
                    line = await resp.content.readline()
                except (TimeoutError, aiohttp.ClientError) as e:
                    raise KubeError(0, f"watch {path}: {type(e).__name__}: {e}") from None
                if not line:
                    return
                if line.strip():
                    yield orjson.loads(line)
        finally:
            resp.release()


def path_for(api_version: str, plural: str, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    p = base + (f"/namespaces/{quote(namespace)}" if namespace else "") + f"/{plural}"
    if name:
        p += f"/{quote(name)}"
    if sub:
        p += f"/{sub}"
    return p


class KubeCollector(Collector):
    """The client's counts as Prometheus metrics, for a registry: `registry.register(KubeCollector(kube))`."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def collect(self) -> Iterator[Metric]:
        st, lim = self.kube.stats, self.kube.limiter
        requests = CounterMetricFamily("tessera_api_requests", "API requests sent, by verb (WATCH: watches, which the "
                                       "rate limit does not count).", labels=["verb"])
        for verb, n in sorted(st.requests.items()):
            requests.add_metric([verb], n)
        yield requests
        yield CounterMetricFamily("tessera_api_rate_limited_requests", "API requests that waited for the client-side "
                                  "rate limiter (--kube-api-qps / --kube-api-burst).", value=st.limited)
        yield CounterMetricFamily("tessera_api_rate_limit_wait_seconds", "Time API requests spent waiting for the "
                                  "client-side rate limiter.", value=st.waited_seconds)
        retries = CounterMetricFamily("tessera_api_retry_after", "Requests retried because the API server answered 429 "
                                      "Too Many Requests (or a 5xx with Retry-After), by status.", labels=["status"])
        for code, n in sorted(st.retries.items()):
            retries.add_metric([str(code)], n)
        yield retries
        yield GaugeMetricFamily("tessera_api_rate_limit_qps", "The client-side rate limit: requests per second "
                                "(0: none).", value=max(lim.qps, 0.0))
        yield GaugeMetricFamily("tessera_api_rate_limit_burst", "The client-side rate limit: burst.", value=lim.burst)
