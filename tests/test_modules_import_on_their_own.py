"""Every gateway module imports on its own, in a fresh interpreter: a module imported first
must not meet its own half-built self through a cycle (``gateway.audit_wiring`` imports the app
module, whose feature modules imported names from ``gateway.audit_wiring``: ImportError)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted({".".join(p.relative_to(ROOT).with_suffix("").parts) for pkg in ("gateway", "adapters")
                  for p in (ROOT / pkg).rglob("*.py") if p.name != "__main__.py"})


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    script = ("import importlib, sys\nbad = []\nfor m in sys.argv[1:]:\n"
              "    for k in [k for k in sys.modules if k.split('.')[0] in ('gateway', 'adapters')]:\n"
              "        del sys.modules[k]\n"
              "    try:\n        importlib.import_module(m)\n"
              "    except Exception as exc:\n        bad.append(f'{m}: {type(exc).__name__}: {exc}')\n"
              "print('\\n'.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", script, *MODULES], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout


@pytest.mark.parametrize("module", ["gateway.audit_wiring", "gateway.items_routes", "gateway.app"])
def test_the_modules_of_the_cycle_are_among_those_checked(module: str) -> None:
    assert module in MODULES
