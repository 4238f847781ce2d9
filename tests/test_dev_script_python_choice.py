"""./dev: which interpreter the virtualenv is made from (``./dev python`` prints it).

The distribution's python3.11, then its python3 when that is 3.11 or newer, come first (PGO + LTO
builds with libpython linked in: README, "Which Python"); ``PYTHON`` overrides the choice; an
interpreter older than 3.11 is never chosen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dev_python(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"} | env_extra
    out = subprocess.run(["bash", str(ROOT / "dev"), "python"], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.strip()


def test_python_overrides_the_choice() -> None:
    line = dev_python({"PYTHON": sys.executable})
    assert line.startswith(f"{sys.executable} -> ")
    assert line.endswith(f"({sys.version.split()[0]})")


def test_the_distribution_interpreter_comes_first_when_it_is_recent_enough() -> None:
    def usable(path: str) -> bool:
        return Path(path).exists() and subprocess.run(
            [path, "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
            capture_output=True).returncode == 0

    expected = next((p for p in ("/usr/bin/python3.11", "/usr/bin/python3") if usable(p)), "python3")
    assert dev_python({}).startswith(f"{expected} -> ")


def test_an_interpreter_older_than_3_11_is_passed_over(tmp_path: Path) -> None:
    old = tmp_path / "python3.8"   # answers like a 3.8: refuses the version check
    old.write_text("#!/bin/sh\nexit 1\n")
    old.chmod(0o755)
    line = dev_python({"DEV_PYTHON_CANDIDATES": f"{old} {sys.executable}"})
    assert line.startswith(f"{sys.executable} -> ")
    # nothing usable among the candidates: the name python3, whose venv then fails loudly
    assert dev_python({"DEV_PYTHON_CANDIDATES": str(old)}).startswith("python3 -> ")
