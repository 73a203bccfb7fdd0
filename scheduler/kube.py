"""Kubernetes API access for Tessera: the real kubernetes_asyncio client, raw bytes in and out.

Responses are read as bytes and parsed with orjson into plain dicts (the client's generated
model classes are ~15x slower to build and Tessera parses objects into its own model anyway).
Watches stream one JSON event per line. Every failure is a `KubeError` carrying the HTTP status
and the API server's message.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from kubernetes_asyncio import client, config

Obj = dict[str, Any]
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


STARTUP_TIMEOUT = 15.0  # seconds for the API server to answer at start


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


class Kube:
    """One API connection; thread-unsafe, asyncio-safe."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        """`kubeconfig` or $KUBECONFIG; else the in-cluster service account."""
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
        return cls(client.ApiClient(configuration=cfg))

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
    def for_url(cls, url: str) -> Kube:
        """An unauthenticated connection (tests and local API servers)."""
        cfg = client.Configuration(host=url)
        return cls(client.ApiClient(configuration=cfg))

    async def close(self) -> None:
        await self.api.close()

    async def _call(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None,
                    content_type: str = JSON, timeout: float | None = 30.0) -> aiohttp.ClientResponse:
        headers = {"Accept": JSON, "Content-Type": content_type}
        params = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items() if v is not None]
        resp: aiohttp.ClientResponse = await self.api.call_api(
            path, method, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"],
            _preload_content=False, _request_timeout=timeout)
        return resp

    async def request(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None,
                      content_type: str = JSON) -> Obj:
        try:
            resp = await self._call(method, path, query, body, content_type)
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

    async def create(self, path: str, obj: Obj) -> Obj:
        return await self.request("POST", path, body=obj)

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
            resp = await self._call("GET", path, query, timeout=timeout_seconds + 30)
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
