"""The wrapper never imports an engine: LLaMA-Factory and Axolotl pin conflicting packages and live in venvs of
their own. Importing every domainft module must leave both out of sys.modules."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import importlib, pkgutil, sys
import domainft
for mod in pkgutil.walk_packages(domainft.__path__, "domainft."):
    importlib.import_module(mod.name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("llamafactory", "axolotl"))
print(",".join(leaked) or "none")
"""


def test_importing_every_module_loads_no_engine():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "none"
