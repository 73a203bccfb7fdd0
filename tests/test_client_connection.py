"""`clientConnection.qps/burst` in `--config` (named as KubeSchedulerConfiguration's) and the
`--kube-api-qps/--kube-api-burst` flags that override them (issue 15)."""

from __future__ import annotations

import pathlib

import pytest

from scheduler.cli import _parser, client_limits, main
from scheduler.loader import SERVE_BURST, SERVE_QPS, Config, InputError, load_config


def config(tmp_path: pathlib.Path, text: str) -> Config:
    p = tmp_path / "tessera.yaml"
    p.write_text(text, encoding="utf-8")
    return load_config(p)


def test_the_file_sets_the_limit_and_the_flags_override_it(tmp_path: pathlib.Path) -> None:
    c = config(tmp_path, "clientConnection:\n  qps: 50\n  burst: 100\n")
    assert (c.client_qps, c.client_burst) == (50.0, 100)
    assert client_limits(_parser().parse_args(["serve"]), c) == (50.0, 100)
    assert client_limits(_parser().parse_args(["serve", "--kube-api-qps", "7.5"]), c) == (7.5, 100)
    assert client_limits(_parser().parse_args(["serve", "--kube-api-burst", "3"]), c) == (50.0, 3)
    assert client_limits(_parser().parse_args(["serve", "--kube-api-qps", "0", "--kube-api-burst", "1"]), c) == (0.0, 1)


def test_without_either_the_defaults_apply(tmp_path: pathlib.Path) -> None:
    assert client_limits(_parser().parse_args(["serve"]), Config()) == (SERVE_QPS, SERVE_BURST)
    c = config(tmp_path, "clientConnection:\n  qps: 0\n")  # no client-side limit; burst stays the default
    assert (c.client_qps, c.client_burst) == (0.0, SERVE_BURST)


@pytest.mark.parametrize(("text", "message"), [
    ("clientConnection: 5\n", "clientConnection: must be a mapping"),
    ("clientConnection:\n  qps: -1\n", "clientConnection.qps: must be a number, 0 (no limit) or more, got -1"),
    ("clientConnection:\n  qps: .nan\n", "clientConnection.qps: must be a number"),
    ("clientConnection:\n  qps: fast\n", "clientConnection.qps: must be a number"),
    ("clientConnection:\n  qps: true\n", "clientConnection.qps: must be a number"),
    ("clientConnection:\n  burst: 0\n", "clientConnection.burst: must be an integer, at least 1, got 0"),
    ("clientConnection:\n  burst: 2.5\n", "clientConnection.burst: must be an integer"),
    ("clientConnection:\n  kubeconfig: /x\n", "clientConnection: unknown field(s) kubeconfig (expected qps, burst)"),
])
def test_bad_values_are_refused_naming_the_field(tmp_path: pathlib.Path, text: str, message: str) -> None:
    with pytest.raises(InputError) as e:
        config(tmp_path, text)
    assert message in str(e.value)


def test_serve_refuses_bad_flags_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--kube-api-qps", "-1"]) == 2
    assert "--kube-api-qps must be 0 (no limit) or positive" in capsys.readouterr().err
    assert main(["serve", "--kube-api-burst", "0"]) == 2
    assert "--kube-api-burst at least 1" in capsys.readouterr().err
