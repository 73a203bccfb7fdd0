"""The docs agree with the code: docs/configuration.md is what the generator renders from the
declared config keys, and the parsers accept, use and refuse exactly what it says; every metric
and every `tessera serve` flag is documented; relative links lead to files (and headings) that exist."""

from __future__ import annotations

import argparse
import pathlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from scheduler.cli import _parser
from scheduler.config_reference import CONFIG_FILE, GENERATED_BY, example, render, walk
from scheduler.loader import Config, InputError, load_config
from scheduler.metrics import Metrics
from topology.config import Key

ROOT = pathlib.Path(__file__).parent.parent
DOCS = ROOT / "docs"
INSTALL = DOCS / "install.md"
BOGUS = "bogusKey"


# --- the configuration reference ---------------------------------------------------------------

def test_configuration_md_is_what_the_generator_renders() -> None:
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == render(), f"regenerate it: {GENERATED_BY}"


KEYS = dict(walk())
LEAVES = [path for path, key in KEYS.items() if not key.keys]
CLOSED = ["", *(path for path, key in KEYS.items() if key.keys and key.closed)]  # "": the file itself
OPEN = [path for path, key in KEYS.items() if key.keys and not key.closed]


def key_at(path: str) -> Key:
    return CONFIG_FILE if path == "" else KEYS[path]


def load(tmp_path: pathlib.Path, doc: Any) -> Config:
    p = tmp_path / "tessera.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_config(p)


def refusal(tmp_path: pathlib.Path, doc: Any) -> str:
    with pytest.raises(InputError) as e:
        load(tmp_path, doc)
    return str(e.value)


def required_only(key: Key) -> dict[str, Any]:
    return {k.name: example(k) for k in key.keys if k.required}


def container(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """The mapping at `path` in `doc`, made on the way: a list key gets one entry holding only its
    required keys (and `path` then means that entry)."""
    node, key = doc, CONFIG_FILE
    for part in path.split(".") if path else []:
        name = part.removesuffix("[]")
        key = next(k for k in key.keys if k.name == name)
        if key.entries:
            entry = required_only(key)
            node[name] = [entry]
            node = entry
        else:
            node = node.setdefault(name, {})
    return node


def split(path: str) -> tuple[str, str]:
    """(the path of the mapping holding the key, the key's name)."""
    parent, _, name = path.rpartition(".")
    return parent.removesuffix("[]") if parent.endswith("[]") else parent, name


def config_with(path: str, value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    parent, name = split(path)
    container(doc, parent)[name] = value
    return doc


def config_without(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    parent, name = split(path)
    container(doc, parent).pop(name, None)
    return doc


def test_the_file_with_every_key_set_is_accepted_and_differs_from_the_defaults(tmp_path: pathlib.Path) -> None:
    config = load(tmp_path, example())
    assert config.topology != Config().topology and config.default_spread != Config().default_spread


@pytest.mark.parametrize("path", LEAVES)
def test_each_documented_key_is_accepted_and_used(tmp_path: pathlib.Path, path: str) -> None:
    key = KEYS[path]
    with_it = load(tmp_path, config_with(path, example(key)))
    if key.required:
        return  # leaving it out is refused (below)
    without = load(tmp_path, config_without(path))
    if key.example == key.default:
        assert with_it == without  # the only value the parser accepts
    else:
        assert with_it != without, f"{path}: the parser ignores {key.example!r}"


@pytest.mark.parametrize("path", [p for p, k in KEYS.items() if not k.required and (k.default is not None or k.keys)])
def test_documented_defaults_are_what_the_parser_uses(tmp_path: pathlib.Path, path: str) -> None:
    key = KEYS[path]
    default: Any = {} if key.keys and not key.entries else list(key.default) if isinstance(key.default, tuple) else key.default
    assert load(tmp_path, config_with(path, default)) == load(tmp_path, config_without(path))


def test_an_empty_file_is_every_default(tmp_path: pathlib.Path) -> None:
    assert load(tmp_path, None) == load(tmp_path, {}) == Config()


@pytest.mark.parametrize("path", [p for p, k in KEYS.items() if k.required])
def test_required_keys_cannot_be_left_out(tmp_path: pathlib.Path, path: str) -> None:
    message = refusal(tmp_path, config_without(path))
    assert path.rpartition(".")[2] in message


@pytest.mark.parametrize("path", CLOSED)
def test_unknown_keys_are_refused_and_the_parser_expects_exactly_the_documented_ones(tmp_path: pathlib.Path,
                                                                                   path: str) -> None:
    doc: dict[str, Any] = {}
    container(doc, path)[BOGUS] = 1
    message = refusal(tmp_path, doc)
    assert "unknown" in message and BOGUS in message
    expected = re.search(r"\(expected ([^)]*)\)", message)
    assert expected is not None, message
    assert expected.group(1).split(", ") == list(key_at(path).names())


@pytest.mark.parametrize("path", OPEN)
def test_unchecked_entries_ignore_unknown_keys_as_documented(tmp_path: pathlib.Path, path: str) -> None:
    key = KEYS[path]
    assert "not checked" in key.meaning
    plain = required_only(key)
    assert load(tmp_path, config_with(path, [{**plain, BOGUS: 1}])) == load(tmp_path, config_with(path, [plain]))


@pytest.mark.parametrize(("path", "name"), [(p, n) for p, k in KEYS.items() for n in k.refused])
def test_refused_keys_are_refused(tmp_path: pathlib.Path, path: str, name: str) -> None:
    key = KEYS[path]
    entry = {**required_only(key), name: {}}
    assert name in refusal(tmp_path, config_with(path, [entry] if key.entries else entry))


class Recording(Mapping[str, Any]):
    """A mapping of the config file that notes every key the parser looks up, present or not."""

    def __init__(self, data: Mapping[str, Any], prefix: str, seen: set[str]) -> None:
        self._data = {k: _wrap(v, f"{prefix}{k}", seen) for k, v in data.items()}
        self._prefix = prefix
        self._seen = seen

    def __getitem__(self, key: str) -> Any:
        self._seen.add(f"{self._prefix}{key}")
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _wrap(value: Any, path: str, seen: set[str]) -> Any:
    if isinstance(value, Mapping):
        return Recording(value, f"{path}.", seen)
    if isinstance(value, list):
        return [Recording(v, f"{path}[].", seen) if isinstance(v, Mapping) else v for v in value]
    return value


def test_the_parsers_look_up_exactly_the_documented_keys(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[str] = set()
    real = yaml.load

    def recording_load(stream: Any, Loader: Any) -> Any:  # noqa: N803 - yaml.load's own parameter name
        return Recording(real(stream, Loader=Loader), "", seen)

    monkeypatch.setattr(yaml, "load", recording_load)  # what scheduler.loader.load_config calls
    load(tmp_path, example())
    refused = {f"{p}[].{n}" if k.entries else f"{p}.{n}" for p, k in KEYS.items() for n in k.refused}
    assert seen - set(KEYS) - refused == set(), "the parser reads keys the reference does not document"
    assert set(KEYS) - seen == set(), "the reference documents keys the parser never reads"


# --- install.md: metrics and flags -------------------------------------------------------------

def metric_rows() -> dict[str, str]:
    """Per metric, the start of its row in install.md's table: `| name | type | labels |`."""
    out = {}
    for m in vars(Metrics()).values():
        if isinstance(m, MetricWrapperBase):
            name = m._name + ("_total" if m._type == "counter" else "")
            labels = ", ".join(f"`{label}`" for label in m._labelnames) or "none"
            out[name] = f"| `{name}` | {m._type} | {labels} |"
    return out


def test_every_metric_is_in_install_md_with_its_type_and_labels() -> None:
    lines = INSTALL.read_text(encoding="utf-8").splitlines()
    rows = metric_rows()
    assert len(rows) >= 11
    for name, row in rows.items():
        assert any(line.startswith(row) for line in lines), f"install.md: no row starting {row!r} for {name}"
    documented = {m.group(1) for line in lines if (m := re.match(r"\| `(tessera_\w+)` \|", line))}
    assert documented <= set(rows), f"install.md documents metrics that do not exist: {documented - set(rows)}"


def serve_flags() -> list[str]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    serve: argparse.ArgumentParser = sub.choices["serve"]
    return [o for a in serve._actions for o in a.option_strings if o.startswith("--") and o != "--help"]


def test_every_serve_flag_is_mentioned_in_install_md_or_the_readme() -> None:
    text = INSTALL.read_text(encoding="utf-8") + (ROOT / "README.md").read_text(encoding="utf-8")
    flags = serve_flags()
    assert "--leader-elect" in flags and "--config" in flags
    missing = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert missing == [], f"tessera serve flags documented nowhere: {missing}"


def test_every_log_event_is_in_install_md() -> None:
    """Every `event=<name>` a log call in scheduler/ spells out (names built at run time, such as
    `leading`, are documented by hand)."""
    events = {m for p in sorted((ROOT / "scheduler").glob("*.py"))
              for m in re.findall(r"event=([a-z][a-z-]*)", p.read_text(encoding="utf-8"))}
    assert {"unschedulable", "write-failed", "bound"} <= events
    text = INSTALL.read_text(encoding="utf-8")
    missing = sorted(e for e in events if not re.search(rf"`event={re.escape(e)}`", text))
    assert missing == [], f"install.md's log table lacks: {missing}"


# --- links ---------------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(path: pathlib.Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    out: set[str] = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
            n, base = 0, slug
            while slug in out:
                n += 1
                slug = f"{base}-{n}"
            out.add(slug)
    return out


DOC_FILES = sorted(DOCS.glob("*.md"))


def test_the_docs_exist() -> None:
    assert {p.name for p in DOC_FILES} >= {"install.md", "troubleshooting.md", "configuration.md"}


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.name)
def test_relative_links_resolve(doc: pathlib.Path) -> None:
    broken = []
    for target in LINK.findall(prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        where = (doc.parent / file).resolve() if file else doc
        if not where.exists() or (anchor and where.suffix == ".md" and anchor not in anchors(where)):
            broken.append(target)
    assert broken == [], f"{doc.name}: links to nothing: {broken}"
