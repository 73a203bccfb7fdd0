"""`tessera serve` as a process: flags, kubeconfig, readiness, scheduling, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys

import aiohttp
import orjson
import pytest

from tests.apiserver import FakeApiServer
from tests.builders import exact, pod, template
from tests.live import bound, eventually, gpu_cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig(path: pathlib.Path, url: str) -> pathlib.Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {url}
users:
- name: test
  user:
    token: not-checked
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
""", encoding="utf-8")
    return path


def tessera(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_serve_help_explains_every_flag() -> None:
    out = tessera("serve", "--help")
    assert out.returncode == 0
    for flag in ("--kubeconfig", "--scheduler-name", "--port", "--metrics-port", "--leader-elect", "--lease-namespace",
                 "--lease-name", "--config", "--log-format", "--binding-timeout", "--bind-wait", "--tls-cert-file",
                 "--tls-private-key-file", "--client-ca-file", "--insecure-http"):
        assert flag in out.stdout


@pytest.mark.parametrize("flags", [("--binding-timeout", "0"), ("--bind-wait", "-1")])
def test_serve_rejects_bad_waits(flags: tuple[str, str]) -> None:
    out = tessera("serve", "--insecure-http", *flags)
    assert out.returncode == 2 and flags[0] in out.stderr, out.stderr


@pytest.mark.parametrize(("flags", "needle"), [
    (("--gang-plan-timeout", "0"), "--gang-plan-timeout must be between 0 and 86400 seconds, got 0.0"),
    (("--gang-scheduler-name", ""), "--gang-scheduler-name must be a schedulerName (1-253 characters), got ''"),
    (("--admission-port", "8443"), "--admission-port serves the gang admission webhook: it needs --gang-scheduler-name"),
    (("--gang-scheduler-name", "default-scheduler", "--admission-port", "70000"),
     "--admission-port must be between 0 and 65535, got 70000"),
], ids=["plan-timeout", "empty-name", "port-without-gangs", "port-range"])
def test_serve_rejects_bad_gang_flags_naming_the_flag(flags: tuple[str, ...], needle: str) -> None:
    out = tessera("serve", "--insecure-http", *flags)
    assert out.returncode == 2 and out.stderr.strip() == f"tessera serve: {needle}", out.stderr


def test_serve_rejects_a_bad_config_file(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("topology:\n  levels: 7\n", encoding="utf-8")
    out = tessera("serve", "--insecure-http", "--config", str(bad))
    assert out.returncode == 2 and "topology.levels" in out.stderr


def test_serve_says_why_it_cannot_reach_the_cluster(tmp_path: pathlib.Path) -> None:
    out = tessera("serve", "--insecure-http", "--kubeconfig", str(tmp_path / "missing"), "--port", str(free_port()),
                  "--metrics-port", str(free_port()))
    assert out.returncode == 2 and "missing: file not found" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.asyncio
async def test_serve_schedules_against_an_api_server_and_stops_on_sigterm(tmp_path: pathlib.Path) -> None:
    api = FakeApiServer(claim_controller=True)
    url = await api.start()
    for o in [*gpu_cluster(2), template("one", exact("g"))]:
        api.create(o)
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scheduler.cli", "serve", "--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", url)),
        "--port", str(port), "--metrics-port", str(metrics_port), "--bind-address", "127.0.0.1", "--log-format", "json",
        "--insecure-http", "--leader-elect", "--lease-namespace", "tessera-system", stderr=asyncio.subprocess.PIPE, env=env)
    try:
        async with aiohttp.ClientSession() as http:
            async def ready() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{metrics_port}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            for _ in range(2400):  # a cap for a broken start (a loaded machine needs a while), not a speed
                if await ready():
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("tessera serve never became ready")
            api.create(pod("p", templates={"g": "one"}))
            await eventually(lambda: bound(api, "p"), timeout=60)
            # The binding lands before the process counts it: wait for the count, do not race it.
            for _ in range(1200):
                async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                    if 'tessera_scheduling_attempts_total{result="scheduled"} 1.0' in await r.text():
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the scheduled pod was never counted")
            async with http.post(f"http://127.0.0.1:{port}/filter", data=b"{}") as r:
                assert r.status == 400
        lease = api.get("Lease", "tessera", "tessera-system")
        assert lease is not None and lease["spec"]["holderIdentity"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        assert proc.stderr is not None
        lines = [orjson.loads(line) for line in (await proc.stderr.read()).splitlines() if line.strip()]
        assert lines and all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)
        assert any("event=bound pod=default/p" in x["msg"] for x in lines)
        lease = api.get("Lease", "tessera", "tessera-system")
        assert lease is not None and not lease["spec"]["holderIdentity"], "the lease is handed back on shutdown"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await api.stop()


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`tessera serve ARGS` as a process, to its end (ARGS say --insecure-http or TLS as they need)."""
    exe = pathlib.Path(sys.executable).parent / "tessera"
    return subprocess.run([str(exe), "serve", *args], capture_output=True, text=True, timeout=120, check=False,
                          env=env if env is not None else {k: v for k, v in os.environ.items() if k != "KUBECONFIG"})


def test_startup_problems_are_one_line_and_exit_2(tmp_path: pathlib.Path) -> None:
    missing = serve("--insecure-http", "--kubeconfig", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"tessera serve: kubeconfig {tmp_path / 'nope'}: file not found"
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    none = serve("--insecure-http", env=env)
    assert none.returncode == 2 and none.stderr.startswith("tessera serve: no kubeconfig") and len(none.stderr.splitlines()) == 1
    dead = free_port()  # nothing listens there
    unreachable = serve("--insecure-http", "--kubeconfig", str(kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{dead}")), "--port", "0",
                        "--metrics-port", "0")
    assert unreachable.returncode == 2, unreachable.stderr
    assert unreachable.stderr.startswith(f"tessera serve: cannot reach the API server at http://127.0.0.1:{dead}")
    assert "Traceback" not in unreachable.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = serve("--insecure-http", "--kubeconfig", str(tmp_path / "kc"), "--bind-address", "127.0.0.1", "--port", str(port))
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr, busy.stderr


def test_the_advertised_url_follows_tls_and_brackets_ipv6() -> None:
    from scheduler.cli import _advertise_url
    assert _advertise_url(None, 8888, True) is None
    assert _advertise_url("10.1.2.3", 8888, True) == "https://10.1.2.3:8888"
    assert _advertise_url("10.1.2.3", 8443, False) == "http://10.1.2.3:8443"
    assert _advertise_url("fd00::5", 8888, True) == "https://[fd00::5]:8888"
