"""The `tessera` command line."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

import orjson

from allocator.cel import available_backends, get_backend
from allocator.placement import POLICIES
from allocator.search import DEFAULT_BUDGET

from .loader import InputError, load_config, read_documents
from .render import render_table
from .simulate import simulate
from .svgmap import render_map

EXIT_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tessera", description="Topology-aware DRA scheduler for Kubernetes.")
    sub = p.add_subparsers(dest="command", required=True)
    sim = sub.add_parser(
        "simulate",
        help="allocate devices for a workload on a cluster read from YAML files (no cluster needed)",
        description=(
            "Runs Tessera's allocator on a cluster (Nodes, Namespaces, DeviceClasses, ResourceSlices, allocated "
            "ResourceClaims, bound Pods) and a workload (ResourceClaims, ResourceClaimTemplates, PodGroups, Pods, in "
            "arrival order). Exit status: 0 when the run completes (unschedulable pods are an answer, not an error), "
            "2 when an input file cannot be read."
        ),
    )
    sim.add_argument("--cluster", required=True, metavar="FILE", help="cluster objects: multi-document YAML or kind: List")
    sim.add_argument("--workload", required=True, metavar="FILE", help="workload objects in arrival order")
    sim.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    sim.add_argument("--policy", choices=POLICIES, default="best-fit",
                     help="node choice: best-fit (default) keeps whole nodes free; first-fit is the upstream-like baseline")
    sim.add_argument("--cel-backend", choices=("cel-expr-python", "cel-python"), default=None,
                     help="CEL runtime (default: cel-expr-python when installed, else cel-python; or $TESSERA_CEL_BACKEND)")
    sim.add_argument("--budget", type=int, default=DEFAULT_BUDGET, metavar="STEPS",
                     help=f"search steps allowed per node and pod before giving up (default: {DEFAULT_BUDGET})")
    sim.add_argument("--config", metavar="FILE",
                     help="Tessera config file; its topology: section sets node levels, locality attributes and tori")
    sim.add_argument("--map", metavar="FILE.svg", help="also draw the cluster and where the workload landed, as SVG")
    return p


def _simulate(args: argparse.Namespace) -> int:
    if args.budget < 1:
        print("tessera simulate: --budget must be at least 1", file=sys.stderr)
        return EXIT_INPUT
    if args.cel_backend is not None and args.cel_backend not in available_backends():
        print(f"tessera simulate: CEL backend {args.cel_backend} is not installed", file=sys.stderr)
        return EXIT_INPUT
    try:
        topology = load_config(args.config) if args.config else None
        cluster = read_documents(args.cluster)
        workload = read_documents(args.workload)
    except InputError as e:
        print(f"tessera simulate: {e}", file=sys.stderr)
        return EXIT_INPUT
    result = simulate(cluster, workload, policy=args.policy, backend=get_backend(args.cel_backend), budget=args.budget,
                      topology=topology)
    if args.map:
        try:
            pathlib.Path(args.map).write_text(render_map(result), encoding="utf-8")
        except OSError as e:
            print(f"tessera simulate: {args.map}: cannot write the map: {e.strerror or e}", file=sys.stderr)
            return EXIT_INPUT
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
        for w in result.warnings:
            print(f"warning: {w}", file=sys.stderr)
    else:
        sys.stdout.write(render_table(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        return _simulate(args)
    return EXIT_INPUT  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
