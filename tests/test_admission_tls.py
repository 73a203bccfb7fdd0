"""The gang admission webhook of a real `tessera serve` over TLS, called by the test API server as
an API server calls it: from the shipped MutatingWebhookConfiguration with a local url and the
CA's caBundle. The webhook port (`--admission-port`) asks for no client certificate (an API server
presents none), while the extender port keeps requiring one (`--client-ca-file`)."""

from __future__ import annotations

import asyncio
import base64
import os
import pathlib
import sys
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import pytest

from scheduler.gates import GANG_GATE
from tests.apiserver import FakeApiServer
from tests.kubescheduler import FakeKubeScheduler
from tests.test_kill9 import eventually_async
from tests.test_live_extender_gangs import cluster, gang, member, webhook_config
from tests.test_serve_cli import free_port, kubeconfig
from tests.test_tls import client_context, issue, make_ca, refused

pytestmark = pytest.mark.asyncio


async def test_the_admission_webhook_gates_over_tls_without_a_client_certificate(tmp_path: pathlib.Path) -> None:
    ca = make_ca()
    leaf = issue(ca, "tessera")
    for name, data in (("tls.crt", leaf.cert_pem), ("tls.key", leaf.key_pem), ("ca.crt", ca.cert_pem)):
        (tmp_path / name).write_bytes(data)
    api = FakeApiServer(claim_controller=True, release_claims=True)
    url = await api.start()
    for o in [*cluster("a"), gang("scheduling.x-k8s.io/v1alpha1", "train", 2)]:
        api.create(o)
    port, metrics, admission = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scheduler.cli", "serve", "--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", url)),
        "--port", str(port), "--metrics-port", str(metrics), "--bind-address", "127.0.0.1", "--log-level", "WARNING",
        "--tls-cert-file", str(tmp_path / "tls.crt"), "--tls-private-key-file", str(tmp_path / "tls.key"),
        "--client-ca-file", str(tmp_path / "ca.crt"), "--gang-scheduler-name", "default-scheduler",
        "--admission-port", str(admission), stderr=asyncio.subprocess.DEVNULL, env=env)
    try:
        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{metrics}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await eventually_async(ready, what="tessera serve to become ready")
        conf = webhook_config(f"https://127.0.0.1:{admission}")
        conf["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(ca.cert_pem).decode()
        api.create(conf)
        async with aiohttp.ClientSession() as http:
            for i in range(2):
                async with http.post(f"{url}/api/v1/namespaces/default/pods",
                                     data=orjson.dumps(member(f"w{i}", "scheduling.x-k8s.io/v1alpha1", "train"))) as resp:
                    assert resp.status == 201, await resp.text()
        assert api.admission_calls == 2
        # Gated at creation, then planned and released by the same process (nothing binds here).
        gated_at_creation = [e for e in api.history if e[1] == "pods" and e[3] == "ADDED"]
        assert all([g["name"] for g in e[4]["spec"]["schedulingGates"]] == [GANG_GATE] for e in gated_at_creation)
        await eventually_async(_released(api), what="the gang to be planned and released")
        # The extender port still refuses a client without a certificate signed by the CA.
        await refused(port, client_context(ca, None, tmp_path))
        # And kube-scheduler, with its client certificate, binds the members where planned.
        ks = FakeKubeScheduler(api, f"https://127.0.0.1:{port}")
        ks.ssl = client_context(ca, issue(ca, "kube-scheduler"), tmp_path)
        ks.start()
        try:
            await eventually_async(_bound(api), what="the gang to be bound through the extender over TLS")
        finally:
            await ks.stop()
    finally:
        proc.kill()
        await proc.wait()
        await api.stop()


def _released(api: FakeApiServer) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        pods = [api.get("Pod", f"w{i}", "default") or {} for i in range(2)]
        return all(not (p.get("spec") or {}).get("schedulingGates") for p in pods)
    return check


def _bound(api: FakeApiServer) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(((api.get("Pod", f"w{i}", "default") or {}).get("spec") or {}).get("nodeName") for i in range(2))
    return check
