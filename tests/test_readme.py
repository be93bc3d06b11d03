"""README.md and docs/ say what is true: their Python snippets run as written, the demo
output shown is what the demo prints, and the two set-up commands are scripts that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sysdesign_kit.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(language: str, page: Path = README) -> list[tuple[str, str]]:
    """``("file:line", code)`` of every fenced block in that language."""
    text = page.read_text(encoding="utf-8")
    return [
        (f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}", match["code"])
        for match in re.finditer(rf"^```{language}\n(?P<code>.*?)^```$", text, re.M | re.S)
    ]


PYTHON = [block for page in PAGES for block in _blocks("python", page)]


def test_readme_has_python_snippets() -> None:
    assert len(_blocks("python")) >= 6


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[where for where, _ in PYTHON])
def test_python_snippet_runs_as_written(tmp_path: Path, where: str, code: str) -> None:
    # A fresh interpreter per snippet, outside the checkout: only the installed package.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{where}:\n{done.stderr}"


@pytest.fixture(autouse=True)
def _forget_snippet_keys(request: pytest.FixtureRequest) -> Iterator[None]:
    """Snippets that use Redis name a prefix of their own: their keys go afterwards."""
    yield
    code = request.node.callspec.params.get("code", "") if hasattr(request.node, "callspec") else ""
    prefixes = re.findall(r'prefix="([\w-]+)"', code)
    if not prefixes:
        return
    import redis

    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


def test_setup_commands_are_the_two_scripts() -> None:
    commands = [code.strip() for _, code in _blocks("sh")][:2]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert all((ROOT / command.split()[1]).is_file() for command in commands)


def test_demo_output_shown_is_what_the_demo_prints(capsys: pytest.CaptureFixture[str]) -> None:
    (shown,) = [code for _, code in _blocks("text") if code.startswith("sysdesign-kit demo:")]
    assert main(["demo"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert shown.splitlines() == printed[: len(shown.splitlines())]


def test_payment_report_shown_is_what_the_demo_prints(capsys: pytest.CaptureFixture[str]) -> None:
    (shown,) = [code for _, code in _blocks("text") if code.startswith("payments through")]
    assert main(["demo"]) == 0
    printed = capsys.readouterr().out
    assert shown.strip("\n") in printed  # the waits are seeded: the same on every run
