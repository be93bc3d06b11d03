"""The ``sysdesign-kit`` command line: arguments, exit codes, the demo as a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sysdesign_kit.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--port", "0"], "'0' is not a TCP port"),
        (["demo", "--port", "65536"], "'65536' is not a TCP port"),
        (["demo", "--port", "-1"], "is not a TCP port"),
        (["demo", "--port", "http"], "'http' is not a TCP port"),
        (["demo", "--port", "80.5"], "'80.5' is not a TCP port"),
        (["demo", "--redis", "http://127.0.0.1:6379"], "is not a Redis URL"),
        (["demo", "--redis", "127.0.0.1:6379"], "is not a Redis URL"),
        (["demo", "--redis", "redis://127.0.0.1:99999/0"], "port is not a number"),
        (["demo", "--redis", "redis://127.0.0.1/0?socket_timeout=soon"], "socket_timeout"),
        (["demo", "--redis", "redis://127.0.0.1/0", "--redis-prefix", "a b"], "key prefix"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["nosuchcommand"], "invalid choice"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_arguments_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    assert "--serve" in capsys.readouterr().out


def test_missing_extra_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "reference_system.demo", None)  # import -> ImportError
    assert main(["demo"]) == 1
    assert "pip install 'sysdesign-kit[all]'" in capsys.readouterr().err


def test_demo_runs_as_a_module_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sysdesign_kit.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "429s by policy: anonymous x5" in done.stdout
    assert done.stderr == ""
