"""Lazy package exports (PEP 562): a package names what it exports and where, and nothing is imported until
a name is first used, so building `--help` texts never imports torch.

    __getattr__ = lazy_exports(__name__, {"fit": "loop", "RunDir": "rundir"})   # dllab.engine.loop.fit, ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` resolving each name in `exports` from its submodule.

    `exports` maps an exported name to the submodule (relative to `package`) that defines it; a name that
    maps to None is the submodule of that name itself.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{exports[name] or name}")
        return module if exports[name] is None else getattr(module, name)

    return __getattr__
