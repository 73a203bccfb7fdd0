"""The `tessera` command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import pathlib
import secrets
import socket
import sys
from collections.abc import Sequence
from typing import TextIO

import orjson
import yaml

from allocator.cel import available_backends, get_backend
from allocator.explain import DEFAULT_LIMIT, to_text
from allocator.placement import POLICIES
from allocator.search import DEFAULT_BUDGET

from .gcpause import collector_paused, freeze_model
from .limits import DEFAULT_MAX_BODY, PLAN_TIMEOUT
from .loader import SERVE_BURST, SERVE_QPS, Config, InputError, load_config, load_inputs
from .progress import Progress
from .readiness import DEFAULT_BIND_WAIT, DEFAULT_BINDING_TIMEOUT, DEFAULT_DECISION_DEADLINE, DEFAULT_VOLUME_BIND_TIMEOUT
from .render import render_table
from .simulate import simulate
from .svgmap import render_map

EXIT_INPUT = 2
DEFAULT_UI_PORT = 8080


def _version() -> str:
    try:
        return importlib.metadata.version("tessera")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tessera", description="Topology-aware DRA scheduler for Kubernetes.")
    p.add_argument("--version", action="version", version=f"tessera {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    sim = sub.add_parser(
        "simulate",
        help="allocate devices for a workload on a cluster read from YAML files (no cluster needed)",
        description=(
            "Runs Tessera's allocator on a cluster (Nodes, Namespaces, DeviceClasses, ResourceSlices, PriorityClasses, "
            "allocated ResourceClaims, bound Pods) and a workload (ResourceClaims, ResourceClaimTemplates, PodGroups, Pods, "
            "in arrival order); a pod that cannot be placed preempts lower-priority pods unless --no-preemption. Exit "
            "status: 0 when the run completes (unschedulable pods are an answer, not an error), 2 when an input file "
            "cannot be read."
        ),
    )
    sim.add_argument("--cluster", required=True, metavar="FILE", help="cluster objects: multi-document YAML or kind: List")
    sim.add_argument("--workload", required=True, metavar="FILE", help="workload objects in arrival order")
    sim.add_argument("--format", choices=("table", "json", "yaml"), default="table",
                     help="output format (default: table); json and yaml carry the same document")
    sim.add_argument("--policy", choices=POLICIES, default="best-fit",
                     help="node choice: best-fit (default) keeps whole nodes free; first-fit is the upstream-like baseline")
    sim.add_argument("--cel-backend", choices=("cel-expr-python", "cel-python"), default=None,
                     help="CEL runtime (default: cel-expr-python when installed, else cel-python; or $TESSERA_CEL_BACKEND)")
    sim.add_argument("--budget", type=int, default=DEFAULT_BUDGET, metavar="STEPS",
                     help=f"search steps allowed per node and pod before giving up (default: {DEFAULT_BUDGET})")
    sim.add_argument("--config", metavar="FILE",
                     help="Tessera config file: topology: (levels, locality, tori) and podTopologySpread: (defaultConstraints)")
    sim.add_argument("--map", metavar="FILE.svg", help="also draw the cluster and where the workload landed, as SVG")
    sim.add_argument("--validate", choices=("strict", "warn"), default="strict",
                     help="strict (default): unknown fields, duplicate keys and what the API server would refuse end "
                          "the run with exit status 2, each named by file, document, object and field; warn: warnings")
    sim.add_argument("--quiet", action="store_true",
                     help="no progress line on stderr (shown on a terminal once a run takes over 2 s)")
    sim.add_argument("--no-preemption", action="store_true",
                     help="pods that cannot be placed do not preempt lower-priority pods (by default they do, as "
                          "kube-scheduler's DefaultPreemption, counting devices and gangs)")
    sim.add_argument("--explain", metavar="NAMESPACE/POD",
                     help="instead of the run's output, explain one pod (or its gang) against the cluster as the run "
                          "left it: per node and domain why it fits or not, and what would make it fit (see --format)")
    sim.add_argument("--serve", nargs="?", type=int, const=DEFAULT_UI_PORT, default=None, metavar="PORT",
                     help=f"after the run, serve the web UI (/ui/) and its JSON API (/api/v1/) for the simulated cluster "
                          f"on --serve-address:PORT (default port {DEFAULT_UI_PORT}; 0 picks a free one) until Ctrl-C")
    sim.add_argument("--serve-address", default="127.0.0.1", metavar="ADDR",
                     help="address --serve listens on (default: 127.0.0.1, this machine only)")
    _explain_parser(sub)
    _serve_parser(sub)
    return p


def _explain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ex = sub.add_parser(
        "explain",
        help="explain why a pod (or its gang) fits or does not fit, per node and per topology domain",
        description=(
            "For one pod: its claims and requests with the devices that match each; why each of the closest nodes and "
            "topology domains was rejected, by rule (devices, in use by whom, taints, cpu/memory, affinity, spread, "
            "topology, gang), in the allocator's own words; and what would make it fit. Against a cluster (from "
            "--kubeconfig, $KUBECONFIG or the in-cluster service account: Tessera's informers are listed once), or "
            "against simulate's files with --cluster and --workload. As a kubectl plugin: kubectl tessera explain POD. "
            "Exit status: 0 when the pod was explained (whether or not it fits), 2 for bad input or a pod not found."
        ),
    )
    ex.add_argument("pod", metavar="[NAMESPACE/]POD", help="the pod; without a namespace, --namespace (default: default)")
    ex.add_argument("-n", "--namespace", default=None, help="the pod's namespace when POD has none (default: default)")
    ex.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    ex.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                    help=f"nodes and domains (per level) listed, closest first (default: {DEFAULT_LIMIT})")
    ex.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default: $KUBECONFIG, else in-cluster)")
    ex.add_argument("--cluster", metavar="FILE", help="simulate's cluster file (with --workload): explain offline")
    ex.add_argument("--workload", metavar="FILE", help="simulate's workload file (with --cluster)")
    ex.add_argument("--config", metavar="FILE", help="Tessera config file (topology levels, default spread)")
    ex.add_argument("--scheduler-name", default="tessera", metavar="NAME",
                    help="the scheduler name Tessera runs as in the cluster (default: tessera)")
    ex.add_argument("--policy", choices=POLICIES, default="best-fit", help="placement policy (default: best-fit)")
    ex.add_argument("--sync-timeout", type=float, default=60.0, metavar="SECONDS",
                    help="how long to wait for the cluster's objects to be listed (default: 60)")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    srv = sub.add_parser(
        "serve",
        help="run against a Kubernetes cluster: extender webhooks and a secondary scheduler",
        description=(
            "Watches the cluster and serves two ways at once: the kube-scheduler extender webhooks (/filter, /prioritize, "
            "/bind, /preempt) and a secondary scheduler for pods whose spec.schedulerName is --scheduler-name. Also "
            "serves /healthz, /readyz (ready once every informer has synced) and /metrics. The webhooks are HTTPS "
            "(--tls-cert-file, --tls-private-key-file, reloaded when the files change), plain HTTP only with "
            "--insecure-http; the metrics port is plain HTTP. Stops cleanly on SIGTERM."
        ),
    )
    srv.add_argument("--kubeconfig", metavar="PATH",
                     help="kubeconfig file (default: $KUBECONFIG, else the in-cluster service account)")
    srv.add_argument("--scheduler-name", default="tessera", metavar="NAME",
                     help="schedule pods whose spec.schedulerName is NAME (default: tessera)")
    srv.add_argument("--port", type=int, default=8888, help="port of the extender webhooks (default: 8888)")
    srv.add_argument("--metrics-port", type=int, default=9090, help="port of /metrics, /healthz, /readyz (default: 9090)")
    srv.add_argument("--bind-address", default="0.0.0.0", metavar="ADDR", help="address to listen on (default: 0.0.0.0)")
    srv.add_argument("--tls-cert-file", metavar="FILE",
                     help="PEM certificate (chain) the webhooks on --port are served with over HTTPS; reloaded when "
                          "the file changes (checked every 10 s)")
    srv.add_argument("--tls-private-key-file", metavar="FILE", help="PEM private key of --tls-cert-file (unencrypted)")
    srv.add_argument("--client-ca-file", metavar="FILE",
                     help="PEM CA bundle: clients of the webhooks must present a certificate it signed (kube-scheduler's "
                          "extender tlsConfig.certFile/keyFile); also what replicas verify each other with")
    srv.add_argument("--no-ui", action="store_true",
                     help="do not serve the read-only web UI (/ui/) and its JSON API (/api/v1/) on --port")
    srv.add_argument("--insecure-http", action="store_true",
                     help="serve the webhooks over plain HTTP (without it, the TLS files are required)")
    srv.add_argument("--leader-elect", action="store_true",
                     help="elect a leader with a coordination.k8s.io/v1 Lease; only the leader schedules and binds, "
                          "every replica answers every webhook (a non-leader forwards /bind to the leader)")
    srv.add_argument("--advertise-address", metavar="HOST",
                     help="where the other replicas reach this one's webhooks, published in the Lease while it leads "
                          "(default: $POD_IP; without either, a leader cannot be forwarded to)")
    srv.add_argument("--lease-namespace", metavar="NS",
                     help="namespace of the Lease (default: $POD_NAMESPACE, the service account's namespace, or kube-system)")
    srv.add_argument("--lease-name", default="tessera", metavar="NAME", help="name of the Lease (default: tessera)")
    srv.add_argument("--identity", metavar="ID",
                     help="this replica's identity in the Lease and in events (default: $POD_NAME or the host name, "
                          "plus a random suffix)")
    srv.add_argument("--config", metavar="FILE",
                     help="Tessera config file: topology: (levels, locality, tori) and podTopologySpread: (defaultConstraints)")
    srv.add_argument("--policy", choices=POLICIES, default="best-fit",
                     help="node choice: best-fit (default) or first-fit")
    srv.add_argument("--binding-timeout", type=float, default=DEFAULT_BINDING_TIMEOUT, metavar="SECONDS",
                     help="how long devices with bindingConditions may take to become ready before their claim is "
                          "deallocated and the pod decided again (default: 600, as kube-scheduler)")
    srv.add_argument("--volume-bind-timeout", type=float, default=DEFAULT_VOLUME_BIND_TIMEOUT, metavar="SECONDS",
                     help="how long a pod waits for its PersistentVolumeClaims to be bound before it is decided again "
                          "(default: 600, kube-scheduler's bindTimeoutSeconds)")
    srv.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                     help="refuse extender requests with a larger body with 413 (default: 512 MiB, above kube-scheduler's "
                          "largest call: 15,000 full Node objects)")
    srv.add_argument("--bind-wait", type=float, default=DEFAULT_BIND_WAIT, metavar="SECONDS",
                     help="how long one extender /bind call waits for such devices before answering with an Error "
                          "(the claims stay allocated for the next call); keep it under the extender's httpTimeout "
                          "(default: 3)")
    srv.add_argument("--decision-deadline", type=float, default=DEFAULT_DECISION_DEADLINE, metavar="SECONDS",
                     help="how long /filter, /prioritize and /preempt may take, waiting for other decisions included, "
                          "before answering that Tessera could not decide in time (kube-scheduler retries the pod); "
                          "keep it under the extender's httpTimeout (default: 4)")
    srv.add_argument("--gang-scheduler-name", action="append", default=[], metavar="NAME",
                     help="extender mode's gangs: the schedulerName of a kube-scheduler profile that calls Tessera "
                          "(repeatable; the extender overlay passes default-scheduler). Its pods that join a PodGroup "
                          "are gated at creation by the admission webhook (/mutate), planned whole by Tessera and "
                          "released to kube-scheduler pinned to their nodes. Default: none (no webhook, no planning)")
    srv.add_argument("--gang-plan-timeout", type=float, default=PLAN_TIMEOUT, metavar="SECONDS",
                     help="how long kube-scheduler has to bind every member of a planned gang before the plan is "
                          "taken back and made again (default: 60)")
    srv.add_argument("--kube-api-qps", type=float, default=None, metavar="QPS",
                     help="client-side limit on API requests per second, watches excluded (kube-scheduler's "
                          f"clientConnection.qps; overrides --config's clientConnection.qps; 0: none; default: "
                          f"{SERVE_QPS:g}, about 500 pods/s at 4 requests per pod placed)")
    srv.add_argument("--kube-api-burst", type=int, default=None, metavar="N",
                     help="requests allowed at once above the rate (clientConnection.burst; overrides --config's "
                          f"clientConnection.burst; default: {SERVE_BURST})")
    srv.add_argument("--no-volcano-enqueue", action="store_true",
                     help="do not admit Volcano PodGroups (phase Inqueue once their minResources fit), which a "
                          "Volcano Job waits for before creating its pods; for clusters where Volcano's own scheduler "
                          "and queues admit them")
    srv.add_argument("--admission-port", type=int, default=0, metavar="PORT",
                     help="also serve the admission webhook (/mutate) on this port, over the same TLS certificate "
                          "but without asking for client certificates (the API server presents none); 0: only on "
                          "--port (default: 0)")
    srv.add_argument("--log-format", choices=("text", "json"), default="text",
                     help="text: key=value lines (default); json: one object per line")
    srv.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO",
                     help="log level (default: INFO)")


def _tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def _simulate(args: argparse.Namespace, own_process: bool = False) -> int:
    if args.budget < 1:
        print("tessera simulate: --budget must be at least 1", file=sys.stderr)
        return EXIT_INPUT
    if args.cel_backend is not None and args.cel_backend not in available_backends():
        print(f"tessera simulate: CEL backend {args.cel_backend} is not installed", file=sys.stderr)
        return EXIT_INPUT
    try:
        config = load_config(args.config)
        with collector_paused():  # both files and the controllers' expansion: all of it is the model
            inputs = load_inputs(args.cluster, args.workload, args.validate)
            if own_process:
                freeze_model()
    except InputError as e:
        print(f"tessera simulate: {e}", file=sys.stderr)
        return EXIT_INPUT
    progress = Progress(sys.stderr) if not args.quiet and _tty(sys.stderr) else None
    try:
        result = simulate(inputs.cluster, inputs.workload, policy=args.policy, backend=get_backend(args.cel_backend), budget=args.budget,
                          topology=config.topology, default_spread=config.default_spread, progress=progress,
                          preemption=not args.no_preemption)
    finally:
        if progress is not None:
            progress.close()
    result.warnings[:0] = inputs.warnings
    for note in inputs.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.explain is not None:
        return _explain_simulated(result, args.explain, "yaml" if args.format == "yaml" else
                                  "json" if args.format == "json" else "text", DEFAULT_LIMIT, "tessera simulate: --explain")
    if args.map:
        try:
            pathlib.Path(args.map).write_text(render_map(result), encoding="utf-8")
        except OSError as e:
            print(f"tessera simulate: {args.map}: cannot write the map: {e.strerror or e}", file=sys.stderr)
            return EXIT_INPUT
    if args.format in ("json", "yaml"):
        doc = result.to_json()
        if args.format == "json":
            sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        else:
            sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        for w in result.warnings:
            print(f"warning: {w}", file=sys.stderr)
    else:
        sys.stdout.write(render_table(result))
    if args.serve is not None:
        sys.stdout.flush()
        return _serve_simulation(result, args.serve_address, args.serve)
    return 0


def _print_explanation(doc: dict[str, object], text: str, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    elif fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    else:
        sys.stdout.write(text)


def _explain_doc(snap: object, ref: str, limit: int, what: str) -> tuple[dict[str, object], str] | str:
    """The explanation as a document and as text, or the error to print."""
    from .uiapi import BadQuery, Snapshot, explanation, explanation_doc, parse_pod_ref

    assert isinstance(snap, Snapshot)
    try:
        e, recorded = explanation(snap, parse_pod_ref(ref), limit)
    except BadQuery as err:
        return f"{what}: {str(err).split(': ', 1)[1]}"
    return explanation_doc(snap, e, recorded), to_text(e)


def _explain_simulated(result: object, ref: str, fmt: str, limit: int, what: str) -> int:
    from .uiapi import snapshot_of_simulation

    if not 1 <= limit <= 200:
        print(f"{what}: --limit must be between 1 and 200, got {limit}", file=sys.stderr)
        return EXIT_INPUT
    got = _explain_doc(snapshot_of_simulation(result), ref, limit, what)
    if isinstance(got, str):
        print(got, file=sys.stderr)
        return EXIT_INPUT
    _print_explanation(*got, fmt)
    return 0


def _serve_simulation(result: object, host: str, port: int) -> int:
    """Serves the UI for a finished run until SIGINT or SIGTERM."""
    import asyncio  # here: simulate needs no event loop

    from .serve import start_http
    from .ui import SimulationSource, ui_app

    if not 0 <= port <= 65535:
        print(f"tessera simulate: --serve must be a port between 0 and 65535, got {port}", file=sys.stderr)
        return EXIT_INPUT

    async def run() -> int:
        import signal

        app = ui_app(SimulationSource(result))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # before anything is served: a stop is never missed
            loop.add_signal_handler(sig, stop.set)
        try:
            server, task, bound = await start_http(app, host, port)
        except (OSError, SystemExit) as e:
            print(f"tessera simulate: --serve: cannot listen on {host}:{port}: {e}", file=sys.stderr)
            return EXIT_INPUT
        shown = f"[{host}]" if ":" in host else host
        print(f"tessera simulate: serving the UI at http://{shown}:{bound}/ui/ (Ctrl-C stops)", file=sys.stderr, flush=True)
        stopper = loop.create_task(stop.wait())
        await asyncio.wait([stopper, task], return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        stopper.cancel()
        return 0

    return asyncio.run(run())


def _explain(args: argparse.Namespace) -> int:
    import asyncio  # here: simulate needs no event loop

    what = "tessera explain"
    ref = args.pod if "/" in args.pod else f"{args.namespace or 'default'}/{args.pod}"
    if not 1 <= args.limit <= 200:
        print(f"{what}: --limit must be between 1 and 200, got {args.limit}", file=sys.stderr)
        return EXIT_INPUT
    try:
        config = load_config(args.config)
    except InputError as e:
        print(f"{what}: {e}", file=sys.stderr)
        return EXIT_INPUT
    if (args.cluster is None) != (args.workload is None):
        print(f"{what}: --cluster and --workload go together (explaining offline, as simulate reads them)", file=sys.stderr)
        return EXIT_INPUT
    if args.cluster is not None:
        try:
            inputs = load_inputs(args.cluster, args.workload, "strict")
        except InputError as e:
            print(f"{what}: {e}", file=sys.stderr)
            return EXIT_INPUT
        result = simulate(inputs.cluster, inputs.workload, policy=args.policy, topology=config.topology,
                          default_spread=config.default_spread)
        return _explain_simulated(result, ref, args.format, args.limit, what)
    from .kube import StartupError

    try:
        got = asyncio.run(_explain_live(args, config, ref))
    except StartupError as e:
        print(f"{what}: {e}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as e:  # a kubeconfig or connection problem: say which, briefly
        print(f"{what}: cannot read the cluster: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if isinstance(got, str):
        print(got, file=sys.stderr)
        return EXIT_INPUT
    _print_explanation(*got, args.format)
    return 0


async def _explain_live(args: argparse.Namespace, config: Config, ref: str) -> tuple[dict[str, object], str] | str:
    """Lists what Tessera watches once (its informers, until synced), then explains on that cache."""
    import asyncio  # here: simulate needs no event loop

    from .informer import Reflector
    from .kube import Kube, StartupError
    from .metrics import Metrics
    from .resources import WATCHED
    from .state import ClusterState
    from .uiapi import snapshot_of_state

    kube = await Kube.connect(args.kubeconfig)
    state = ClusterState(config.topology, args.policy, default_spread=config.default_spread)
    metrics = Metrics()
    reflectors = [Reflector(kube, r, state.on_event, metrics, quiet=state.engine.quiet) for r in WATCHED]
    tasks = [asyncio.get_running_loop().create_task(r.run()) for r in reflectors]
    try:
        try:
            await asyncio.wait_for(asyncio.gather(*(r.synced.wait() for r in reflectors)), args.sync_timeout)
        except TimeoutError:
            waiting = ", ".join(r.resource.kind for r in reflectors if not r.synced.is_set())
            raise StartupError(f"the cluster's objects were not listed within {args.sync_timeout:g} s (waiting for "
                               f"{waiting}); see --sync-timeout") from None
        name = args.scheduler_name

        def job(_: object) -> tuple[dict[str, object], str] | str:
            return _explain_doc(snapshot_of_state(state, name, 1, True), ref, args.limit, "tessera explain")

        return await state.engine.run(job)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await state.engine.close()
        await kube.close()


SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _lease_namespace(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or "kube-system"
    except OSError:
        return "kube-system"


def _advertise_url(host: str | None, port: int, tls: bool) -> str | None:
    """The URL of this replica's webhooks as its peers reach them (IPv6 addresses in brackets)."""
    if not host:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def client_limits(args: argparse.Namespace, config: Config) -> tuple[float, int]:
    """The API client's (qps, burst): the flags where given, else --config's clientConnection."""
    return (config.client_qps if args.kube_api_qps is None else args.kube_api_qps,
            config.client_burst if args.kube_api_burst is None else args.kube_api_burst)


def _serve(args: argparse.Namespace, own_process: bool = False) -> int:
    import asyncio  # here: simulate needs no event loop

    from .kube import StartupError
    from .logs import setup_logging
    from .serve import run
    from .service import Options
    from .tls import ServingTLS, TLSFileError, check_flags

    if (args.kube_api_qps is not None and not 0 <= args.kube_api_qps < float("inf")) or \
            (args.kube_api_burst is not None and args.kube_api_burst < 1):
        print(f"tessera serve: --kube-api-qps must be 0 (no limit) or positive, got {args.kube_api_qps}, and "
              f"--kube-api-burst at least 1, got {args.kube_api_burst}", file=sys.stderr)
        return EXIT_INPUT
    if not 0 < args.gang_plan_timeout <= 86400:
        print(f"tessera serve: --gang-plan-timeout must be between 0 and 86400 seconds, got {args.gang_plan_timeout}",
              file=sys.stderr)
        return EXIT_INPUT
    for name in args.gang_scheduler_name:
        if not name or len(name) > 253:
            print(f"tessera serve: --gang-scheduler-name must be a schedulerName (1-253 characters), got {name!r}",
                  file=sys.stderr)
            return EXIT_INPUT
    if args.admission_port and not args.gang_scheduler_name:
        print("tessera serve: --admission-port serves the gang admission webhook: it needs --gang-scheduler-name",
              file=sys.stderr)
        return EXIT_INPUT
    for flag, port in (("--port", args.port), ("--metrics-port", args.metrics_port), ("--admission-port", args.admission_port)):
        if not 0 <= port <= 65535:
            print(f"tessera serve: {flag} must be between 0 and 65535, got {port}", file=sys.stderr)
            return EXIT_INPUT
    if args.max_request_bytes < 1024:
        print(f"tessera serve: --max-request-bytes must be at least 1024, got {args.max_request_bytes}", file=sys.stderr)
        return EXIT_INPUT
    if not args.volume_bind_timeout > 0:
        print(f"tessera serve: --volume-bind-timeout must be positive, got {args.volume_bind_timeout}", file=sys.stderr)
        return EXIT_INPUT
    if not 0 < args.decision_deadline <= 3600:
        print(f"tessera serve: --decision-deadline must be between 0 and 3600 seconds, got {args.decision_deadline}",
              file=sys.stderr)
        return EXIT_INPUT
    if not args.binding_timeout > 0 or not 0 <= args.bind_wait < 3600:
        print(f"tessera serve: --binding-timeout must be positive (got {args.binding_timeout}) and --bind-wait "
              f"between 0 and 3600 seconds (got {args.bind_wait})", file=sys.stderr)
        return EXIT_INPUT
    try:
        files = check_flags(args.tls_cert_file, args.tls_private_key_file, args.client_ca_file, args.insecure_http)
        tls = ServingTLS(files) if files is not None else None
    except (ValueError, TLSFileError) as e:
        print(f"tessera serve: {e}", file=sys.stderr)
        return EXIT_INPUT
    try:
        config = load_config(args.config)
    except InputError as e:
        print(f"tessera serve: {e}", file=sys.stderr)
        return EXIT_INPUT
    setup_logging(args.log_format, args.log_level)
    identity = args.identity or f"{os.environ.get('POD_NAME') or socket.gethostname()}_{secrets.token_hex(4)}"
    options = Options(scheduler_name=args.scheduler_name, leader_elect=args.leader_elect,
                      lease_namespace=_lease_namespace(args.lease_namespace), lease_name=args.lease_name,
                      identity=identity, topology=config.topology, default_spread=config.default_spread, policy=args.policy,
                      binding_timeout=args.binding_timeout, bind_wait=args.bind_wait,
                      decision_deadline=args.decision_deadline,
                      max_request_bytes=args.max_request_bytes, volume_bind_timeout=args.volume_bind_timeout,
                      advertise_url=_advertise_url(args.advertise_address or os.environ.get("POD_IP"), args.port,
                                                   tls is not None),
                      gang_scheduler_names=tuple(dict.fromkeys(args.gang_scheduler_name)),
                      plan_timeout=args.gang_plan_timeout, volcano_enqueue=not args.no_volcano_enqueue,
                      freeze_model=own_process)
    try:
        return asyncio.run(run(options, args.kubeconfig, args.bind_address, args.port, args.metrics_port, tls,
                               ui=not args.no_ui, admission_port=args.admission_port,
                               qps=client_limits(args, config)[0], burst=client_limits(args, config)[1]))
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    except StartupError as e:
        print(f"tessera serve: {e}", file=sys.stderr)
        return EXIT_INPUT
    except Exception:
        # Usually a kubeconfig or connection problem; the traceback says which.
        logging.getLogger("tessera").exception("event=fatal")
        return 1


def main(argv: Sequence[str] | None = None, own_process: bool = False) -> int:
    """The commands. Own process: this process is the command's alone (the `tessera` and
    `kubectl-tessera` programs), so what it has read may be frozen out of the garbage collector's
    walks for the rest of its life (scheduler/gcpause.py); a caller in a longer-lived process (a
    test) would have its own garbage frozen with it."""
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        return _simulate(args, own_process)
    if args.command == "serve":
        return _serve(args, own_process)
    if args.command == "explain":
        return _explain(args)
    return EXIT_INPUT  # pragma: no cover - argparse rejects unknown commands


def tessera_main() -> int:
    """`tessera`: the program."""
    return main(sys.argv[1:], own_process=True)


def kubectl_main() -> int:
    """`kubectl-tessera`: the kubectl plugin (`kubectl tessera explain POD`), the same commands."""
    return main(sys.argv[1:], own_process=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(tessera_main())
