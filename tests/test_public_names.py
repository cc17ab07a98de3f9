"""Every package declares its public face in `__all__`, every declared name resolves, and declaring it costs
no torch import (the CLI builds `--help` from these packages)."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import dllab

PACKAGES = sorted(m.name for m in pkgutil.iter_modules(dllab.__path__, "dllab.") if m.ispkg)


@pytest.mark.parametrize("name", PACKAGES)
def test_declared_names_resolve(name):
    package = importlib.import_module(name)
    declared = getattr(package, "__all__", None)
    assert declared, f"{name} declares no public names (__all__)"
    assert len(set(declared)) == len(declared)
    for attr in declared:
        assert getattr(package, attr) is not None, f"{name}.{attr}"


def test_importing_the_packages_does_not_import_torch():
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({p!r})\n" for p in PACKAGES)
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
