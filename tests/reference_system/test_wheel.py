"""The demo from a plain wheel install, not from the checkout: build, install, run.

The wheel must carry both top-level packages (``sysdesign_kit`` and ``reference_system``)
and the console script. Installs come from the machine's configured package index.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str | Path], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Nothing of the checkout or of the test's own virtualenv may leak in.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


def test_demo_runs_from_an_installed_wheel(tmp_path: Path) -> None:
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, ROOT], cwd=tmp_path
    )
    (wheel,) = wheels.glob("sysdesign_kit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.partition("/")[0] for name in names}
    assert top == {"sysdesign_kit", "reference_system", wheel.name.rsplit("-", 3)[0] + ".dist-info"}
    assert "reference_system/py.typed" in names
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[all]"], cwd=tmp_path)

    code = "import reference_system as r, sysdesign_kit as s; print(r.__file__, s.__file__)"
    where = _run([venv / "bin" / "python", "-c", code], cwd=tmp_path)
    assert all(Path(path).is_relative_to(venv) for path in where.stdout.split())

    demo = _run([venv / "bin" / "sysdesign-kit", "demo"], cwd=tmp_path)
    assert "429s by policy: anonymous x5" in demo.stdout
    assert "429s by policy: ip x100" in demo.stdout
