"""The reference of Tessera's config file (`--config`), rendered from the declared keys:

    python -m scheduler.config_reference > docs/configuration.md

The `topology:` keys are declared next to their parser (`topology.config.TOPOLOGY_SECTION`, which
its unknown-key checks use). The `podTopologySpread:` keys are declared here:
`allocator.podspec.parse_default_spread` keeps its own list of accepted keys, and
tests/test_docs.py proves the two agree (every declared key is accepted and changes the result,
every key the parsers read is declared, unknown keys are refused where the reference says so).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import yaml

from scheduler.loader import CLIENT_CONNECTION_SECTION
from topology.config import TOPOLOGY_SECTION, Key

SPREAD_CONSTRAINT_KEYS = (
    Key("maxSkew", "integer, at least 1", "How far the number of matching pods may differ between two domains of "
        "`topologyKey` (with `DoNotSchedule`: between the domain a pod would go to and the emptiest eligible one).",
        required=True, example=1),
    Key("topologyKey", "string", "The node label whose values are the domains, e.g. `topology.kubernetes.io/zone`. "
        "Nodes without the label are not counted (and, with `DoNotSchedule`, not eligible).",
        required=True, example="topology.kubernetes.io/zone"),
    Key("whenUnsatisfiable", "`DoNotSchedule` or `ScheduleAnyway`", "`DoNotSchedule` makes the constraint a filter "
        "(nodes that would break `maxSkew` are refused, with kube-scheduler's reason); `ScheduleAnyway` a score (the "
        "emptier domains are preferred). At most one constraint per `topologyKey` and `whenUnsatisfiable`.",
        required=True, example="DoNotSchedule"),
    Key("minDomains", "integer, at least 1", "Only with `DoNotSchedule`: while fewer eligible domains than this "
        "exist, the emptiest domain counts as holding 0 matching pods, as upstream.", example=3),
    Key("nodeAffinityPolicy", "`Honor` or `Ignore`", "`Honor`: only nodes that match the pod's `nodeSelector` and "
        "required node affinity count when the skew is computed; `Ignore`: every node does.",
        default="Honor", example="Ignore"),
    Key("nodeTaintsPolicy", "`Honor` or `Ignore`", "`Honor`: nodes with taints the pod does not tolerate are left "
        "out of the skew; `Ignore`: they count.", default="Ignore", example="Honor"),
)
SPREAD_SECTION = Key(
    "podTopologySpread", "mapping",
    "Cluster-level default topology spread constraints, in the shape of kube-scheduler's PodTopologySpreadArgs. They "
    "apply to pods that have no `topologySpreadConstraints` of their own and that a controller owns (an "
    "ownerReference with `controller: true`), and count the pods of that same controller (its UID). Absent: no "
    "defaults (kube-scheduler's `System` defaults need Services, ReplicaSets and StatefulSets, which Tessera does "
    "not watch).",
    keys=(
        Key("defaultConstraints", "list of mappings",
            "The default constraints: each entry is a `topologySpreadConstraint` with the keys below. `labelSelector` "
            "and `matchLabelKeys` are refused (a default counts the pods of the pod's own controller), and so is any "
            "other key.",
            default=(), keys=SPREAD_CONSTRAINT_KEYS, entries=True, closed=True,
            refused=("labelSelector", "matchLabelKeys")),
        Key("defaultingType", "`List`", "Only `List` (the constraints above are the defaults) is accepted; `System` "
            "is refused.", default="List", example="List"),
    ))
CONFIG_FILE = Key(
    "", "mapping", "Tessera's config file: a YAML mapping of sections.",
    keys=(TOPOLOGY_SECTION, SPREAD_SECTION, CLIENT_CONNECTION_SECTION))

GENERATED_BY = "python -m scheduler.config_reference > docs/configuration.md"


def walk(key: Key = CONFIG_FILE, prefix: str = "") -> Iterator[tuple[str, Key]]:
    """Every key below `key` with its path (`topology.torus.poolLabel`; list entries as `name[]`)."""
    for k in key.keys:
        path = f"{prefix}{k.name}"
        yield path, k
        yield from walk(k, f"{path}[]." if k.entries else f"{path}.")


def defaults(key: Key = CONFIG_FILE) -> Any:
    """The value of `key` with every default spelled out (a mapping: its keys' defaults)."""
    if key.keys and not key.entries:
        return {k.name: defaults(k) for k in key.keys if not k.required and (k.default is not None or k.keys)}
    return _plain(key.default)


def example(key: Key = CONFIG_FILE) -> Any:
    """A value of `key` with every key below it set to its example (a list of mappings: one entry)."""
    if key.keys:
        entry = {k.name: example(k) for k in key.keys}
        return [entry] if key.entries else entry
    return _plain(key.example if key.example is not None else key.default)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _code(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "`[]`" if not value else ",<br>".join(f"`{v}`" for v in value)
    return f"`{value}`"


def _default_cell(key: Key) -> str:
    if key.required:
        return "**required**"
    if key.keys and not key.entries:
        return "its keys' defaults"
    if key.default is None:
        return "unset"
    return _code(key.default)


def _meaning_cell(key: Key) -> str:
    text = key.meaning
    if key.keys and key.closed:
        text += " Unknown keys are refused."
    for name in key.refused:
        if name not in text:
            raise ValueError(f"{key.name}: refused key {name} is not explained in its meaning")
    return text


def _yaml(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120)


def render() -> str:
    rows = []
    for path, key in walk():
        cells = (f"`{path}`", key.type, _default_cell(key), _meaning_cell(key))
        if any("|" in c or "\n" in c for c in cells):
            raise ValueError(f"{path}: a table cell must not contain '|' or a line break")
        rows.append("| " + " | ".join(cells) + " |")
    lines = [
        "# Configuration reference",
        "",
        f"<!-- Generated from the declared keys (topology/config.py, scheduler/config_reference.py) by `{GENERATED_BY}`;",
        "     do not edit by hand. tests/test_docs.py fails when this file is not what the generator renders. -->",
        "",
        "`tessera simulate --config FILE` and `tessera serve --config FILE` read one YAML file with the sections",
        "below. In the manifests it is [`manifests/base/tessera-config.yaml`](../manifests/base/tessera-config.yaml),",
        "which kustomize turns into a ConfigMap whose name carries a hash of the contents, mounted at",
        "`/etc/tessera/config/config.yaml` (see [install.md](install.md)). `tessera serve` reads the file once at",
        "start: edit it and `kubectl apply -k` the overlay again, and the new ConfigMap name rolls the Deployment.",
        "",
        "- Every key is optional unless marked **required**; an empty file, or no `--config`, means every default.",
        "- The file must be a mapping. Unknown sections and keys are refused, except inside a",
        "  `podTopologySpread.defaultConstraints` entry (see its row).",
        "- A problem names the file and the field, e.g.",
        "  `tessera serve: /etc/tessera/config/config.yaml: topology.levels: must be a non-empty list of strings`;",
        "  `tessera simulate` and `tessera serve` then exit with status 2 without doing anything (in the cluster",
        "  the pod restarts; `kubectl -n tessera-system logs deploy/tessera --previous` shows the line). Check a",
        "  file before applying it: `tessera simulate --cluster examples/cluster.yaml --workload examples/workload.yaml",
        "  --config manifests/base/tessera-config.yaml`.",
        "",
        "## The file with every default spelled out",
        "",
        "```yaml",
        _yaml(defaults()).rstrip("\n"),
        "```",
        "",
        "## Keys",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *rows,
        "",
        "## Every key set",
        "",
        "A file that sets every key (tests/test_docs.py feeds this one to the parser):",
        "",
        "```yaml",
        _yaml(example()).rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
