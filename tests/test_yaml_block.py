"""The node-free reading of block-style YAML (`scheduler.validate.yaml_documents`, issue 15):
every document it reads itself must be exactly what StrictLoader (libyaml's parser and composer,
PyYAML's constructor) builds from the whole stream, with the same duplicate keys at the same
positions and the same errors; every document it does not read goes to StrictLoader as it is.
Speed is measured in bench/scale.py, never here."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scheduler import validate
from scheduler.validate import StrictLoader, yaml_documents


def outcome(documents: Any) -> tuple[list[str], str | None]:
    """(repr of each document's value and duplicates, the error raised after them, if any)."""
    out: list[str] = []
    try:
        for value, duplicates in documents:
            out.append(repr((value, duplicates)))
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as e:
        return out, f"{type(e).__name__}: {e}"
    return out, None


def whole_stream(text: str) -> Any:
    """StrictLoader over the whole stream, as the loader read every file before."""
    loader = StrictLoader(text)
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            value = loader.get_data()
            duplicates = list(loader.duplicates)
            loader.duplicates.clear()
            yield value, duplicates
    finally:
        loader.dispose()


def assert_same(text: str) -> None:
    assert outcome(yaml_documents(text)) == outcome(whole_stream(text)), text


# Lines in and out of the subset the block reader takes: structure at any indentation, plain and
# quoted scalars of every YAML 1.1 type, repeated keys, and what it must hand over (anchors,
# aliases, merges, tags, flow and block scalars, comments after values, tabs, CR, directives,
# document markers, complex keys, bad values).
FRAGMENTS = [
    "a: 1", "a: 2", "b:", "c: x", "- x", "-", "- a: 1", "- - y", "- b:", "-   c: 3", "d: yes", "e: On", "f: ~", "g: null",
    "'q': 'v'", '"d": "e"', "'it''s': 'a''b'", "h: 0644", "i: 1:20", "j: 0x1F", "k: 1_000", "l: 2024-01-02",
    "m: 2024-01-02T03:04:05Z", "n: 1.5", "o: .inf", "p: 1e3", "r: 2024-02-30", "s: -1", "t: -x", "u: []", "v: {}",
    "w: [1, 2]", "x: {a: 1}", "y: &anchor 1", "z: *anchor", "<<: {a: 9}", "<<: *anchor", "aa: !!str 3", "ab: !!binary aGk=",
    "ac: !custom x", "ad: a # comment", "# comment", "", "   ", "---", "...", "--- x", "%YAML 1.1", "ae: |", "  block",
    "af: >", "ag: 'multi", "  line'", "ah: \"tab\\there\"", "ai:\tx", "aj: 1\r", "? k", ": v", "ak: a: b", "al: -",
    "am: b:", "an: http://x:80/y", "ao: -", "1: one", "true: t", "~: n", "ap: ''", "aq: ' '", "ar: 'x' y", "as:  spaced  ",
    "at: é", "au: \u2028", "\ufeffav: 1", "aw: `x`", "ax: @x", "ay: %x", "az: ,x", "ba: x,y", "bb: [", "bc: }",
    "k" * 600 + ": long", "bd: " + "9" * 5000, "be: 1\r---\rbf: 2", "bg: 1\u2028---\u2028bh: 2", "\ufeff---", "bi: 1\x85---",
    "bj: {\n---\n}", "- - - - x",
]

lines = st.lists(st.tuples(st.sampled_from([0, 0, 0, 1, 2, 2, 4, 6]), st.sampled_from(FRAGMENTS)), max_size=14)


@settings(max_examples=1500, deadline=None)
@given(lines, st.booleans())
@example([(0, "a: 1"), (0, "b: {c: 1, c: 2}"), (0, "a: 3")], True)
@example([(0, "a:"), (0, "- x"), (0, "b: 1"), (0, "---"), (0, "- a: 1"), (2, "a: 2")], True)
@example([(0, "- - y"), (2, "- z"), (0, "-"), (2, "k: v")], False)
@example([(0, "---"), (0, "a: 1"), (0, "b: 1\r---\rc: 2"), (0, "---"), (0, "d: 3")], True)
@example([(0, "---"), (0, "a: 1"), (0, "\ufeff---"), (0, "c: 2")], False)
def test_lines_read_as_strict_loader_reads_them(parts: list[tuple[int, str]], newline: bool) -> None:
    assert_same("\n".join(" " * n + f for n, f in parts) + ("\n" if newline else ""))


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=False),
                    st.text(max_size=8), st.sampled_from(["0777", "0x1F", "1_000", "1:30", "yes", "~", "2024-01-01", "1e3",
                                                          "a: b", "- x", "#", "'", "---", "..."]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.one_of(st.text(max_size=5), st.integers(-3, 3), st.booleans()), inner, max_size=3), max_leaves=16)


@settings(max_examples=500, deadline=None)
@given(st.lists(values, min_size=1, max_size=4), st.booleans(), st.integers(0, 40), st.sampled_from(FRAGMENTS))
def test_dumped_documents_read_as_strict_loader_reads_them(docs: list[Any], explicit_start: bool, at: int, extra: str) -> None:
    """yaml.dump's block style (what the reader is for), as it is and with one line of anything
    inserted: an anchor, an alias, a merge, a tag, a duplicate, a marker, a bad line."""
    text = yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=False, explicit_start=explicit_start)
    assert_same(text)
    split = text.split("\n")
    at = min(at, len(split))
    indent = len(split[at]) - len(split[at].lstrip(" ")) if at < len(split) else 0
    assert_same("\n".join([*split[:at], " " * indent + extra, *split[at:]]))
    assert_same(text.replace("'", ""))  # plain where quotes were needed


def revalued(value: Any, leaves: list[Any]) -> Any:
    """The value with each scalar leaf replaced by the next of leaves (round robin): the same shape
    of collections and keys, other values (perhaps of other types)."""
    if isinstance(value, dict):
        return {k: revalued(v, leaves) for k, v in value.items()}
    if isinstance(value, list):
        return [revalued(v, leaves) for v in value]
    leaves.append(leaves.pop(0))
    return leaves[-1]


@settings(max_examples=400, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.lists(scalars, min_size=1, max_size=6), st.booleans())
def test_documents_of_one_shape_read_by_template_as_strict_loader_reads_them(docs: list[Any], leaves: list[Any],
                                                                           explicit_start: bool) -> None:
    """A document shape met again is built by a compiled template: each document three times, the
    second and third with other values in the same places, read as StrictLoader reads them."""
    stream = []
    for doc in docs:
        stream += [doc, revalued(doc, list(leaves)), revalued(doc, list(reversed(leaves)))]
    text = yaml.dump_all(stream, Dumper=yaml.CSafeDumper, sort_keys=False, explicit_start=explicit_start)
    assert_same(text)
    assert_same(text.replace("'", ""))


@settings(max_examples=600, deadline=None)
@given(lines, lines)
@example([(0, "1: a")], [(0, "true: a")])
@example([(0, "a:"), (2, "b: 1")], [(0, "a:"), (2, "b: [1]")])
@example([(0, "a: 1"), (0, "a: 2")], [(0, "a: 3")])
@example([(0, "- a: x"), (2, "b: y")], [(0, "- a: 'x: y'"), (2, "b: y")])
def test_repeated_lines_read_as_strict_loader_reads_them(first: list[tuple[int, str]], second: list[tuple[int, str]]) -> None:
    """Documents made of the same lines and line shapes again (a template's), or of others, in any
    order: 1, 1.0 and true are one key to Python and three to YAML."""
    a = "\n".join(" " * n + f for n, f in first)
    b = "\n".join(" " * n + f for n, f in second)
    assert_same("\n---\n".join([a, b, a, b, a, b]))
    assert_same("---\n" + "\n---\n".join([a, a, a, b, b, b]) + "\n")


def test_a_fleet_of_one_shape_is_built_by_one_template_with_each_document_its_own_objects() -> None:
    from bench.scale import fleet

    docs = fleet(40)
    text = yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=False)
    got = [value for value, _ in yaml_documents(text)]
    assert got == docs
    slices = [d for d in got if d["kind"] == "ResourceSlice"]
    assert len({id(s["spec"]["devices"]) for s in slices}) == len(slices)  # fresh containers every time
    slices[0]["spec"]["devices"][0]["attributes"]["uuid"]["string"] = "changed"
    assert slices[1]["spec"]["devices"][0]["attributes"]["uuid"]["string"] != "changed"


@pytest.mark.parametrize(("lines_kept", "shapes_kept"), [(1, 1), (7, 2), (50, 3)])
def test_tables_that_start_afresh_between_documents_change_nothing(monkeypatch: pytest.MonkeyPatch, lines_kept: int,
                                                                   shapes_kept: int) -> None:
    from bench.scale import fleet

    monkeypatch.setattr(validate, "_MAX_LINES", lines_kept)
    monkeypatch.setattr(validate, "_MAX_SHAPES", shapes_kept)
    docs = [*fleet(12), {"a": [1, {"b": None}]}, {"a": [2, {"b": "x"}]}, {"a": [3, {"b": []}]}] * 2
    text = yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=False)
    assert outcome(yaml_documents(text)) == outcome(whole_stream(text))
    assert [value for value, _ in yaml_documents(text)] == docs


def test_documents_too_deep_for_a_template_are_built_line_by_line() -> None:
    def nested(depth: int, leaf: Any) -> Any:
        return leaf if depth == 0 else {"k": nested(depth - 1, leaf)} if depth % 2 else [nested(depth - 1, leaf)]

    docs = [nested(depth, leaf) for depth in (validate._TEMPLATE_DEPTH - 1, validate._TEMPLATE_DEPTH + 5)
            for leaf in (1, "x", None)]
    text = yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=False)
    assert outcome(yaml_documents(text)) == outcome(whole_stream(text))
    assert [value for value, _ in yaml_documents(text)] == docs


def handed_over(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts given to StrictLoader from now on."""
    handed: list[str] = []
    real = validate._strict_documents

    def recording(source: str, single: bool = False) -> Any:
        handed.append(source)
        return real(source, single)

    monkeypatch.setattr(validate, "_strict_documents", recording)
    return handed


def test_a_fleet_file_is_read_without_libyaml_and_as_libyaml_reads_it(tmp_path: pathlib.Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.scale import write_fleet

    path = tmp_path / "fleet.yaml"
    write_fleet(path, 3, "yaml")
    text = path.read_text()
    want = outcome(whole_stream(text))
    handed = handed_over(monkeypatch)
    assert outcome(yaml_documents(text)) == want
    assert handed == []


def test_a_document_handed_over_keeps_its_lines_and_the_others_stay_in_the_block_reader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = "a: 1\n---\nb: &x {c: 1}\nd: *x\n---\ne: 1\n# note\ne: 2\n---\nf: [1]\n"
    handed = handed_over(monkeypatch)
    got = list(yaml_documents(text))
    assert got == [({"a": 1}, []), ({"b": {"c": 1}, "d": {"c": 1}}, []),
                   ({"e": 2}, ['line 8, column 1: duplicate key "e"']), ({"f": [1]}, [])]
    assert got[1][0]["b"] is got[1][0]["d"]  # an alias is the same object, as StrictLoader builds it
    assert len(handed) == 3  # the anchored, the repeated and the flow documents; not the first


def test_errors_keep_their_document_and_position(tmp_path: pathlib.Path) -> None:
    from scheduler.loader import InputError, read_documents

    path = tmp_path / "c.yaml"
    path.write_text("apiVersion: v1\nkind: Node\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Node\nmetadata:\n"
                    "  name: b\n   bad: 1\n")
    with pytest.raises(InputError, match=r"document index 1: invalid YAML \(line 9, column 7\)"):
        read_documents(path)
    path.write_text("apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n  name: b\n")
    with pytest.raises(InputError, match='document index 0: line 5, column 3: duplicate key "name"'):
        read_documents(path)
