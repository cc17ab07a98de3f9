"""The capabilities dllab is made of, in the order the CLI and the report list them.

Each capability is a package `dllab.<name>` with the same rooms: `cli.py` (its commands), `config.py`,
`experiment.py`, `report.py` (its report section) and `bench.py` (`dllab bench <name>`). The CLI and the
report both find them here; neither imports the other to learn the list.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from types import ModuleType
from typing import Any

# name -> one line for `dllab --help`
CAPABILITIES: dict[str, str] = {
    "vision": "CNN image classification: OCTMNIST / Intel landscapes / Fashion-MNIST (Q2)",
    "attention": "softmax vs Taylor linear attention kernels, derivation checks (2023-24 Q1)",
    "hopfield": "modern Hopfield networks: energy, CCCP update, retrieval (2024-25 Q1)",
    "p2g": "phoneme-to-spelling seq2seq with Bahdanau attention (2024-25 Q3)",
    "asr": "speech recognition: log-mel -> Transformer encoder -> decoders (2023-24 Q3)",
}


def room(capability: str, module: str) -> ModuleType | None:
    """`dllab.<capability>.<module>` imported, or None when the capability has no such room."""
    name = f"dllab.{capability}.{module}"
    if importlib.util.find_spec(f"dllab.{capability}") is None or importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def rooms(module: str) -> list[tuple[str, ModuleType]]:
    """(capability, module) for every capability that has `module`, in CAPABILITIES order."""
    found = [(capability, room(capability, module)) for capability in CAPABILITIES]
    return [(capability, mod) for capability, mod in found if mod is not None]


def hooks(module: str, name: str, only: list[str] | None = None) -> list[tuple[str, Callable[..., Any]]]:
    """(capability, function) for every capability whose `module` room defines `name` (the report's
    `build_section`, `experiments`, `demo_figures`, ...), in CAPABILITIES order; `only`: those capabilities."""
    return [(capability, getattr(mod, name)) for capability, mod in rooms(module)
            if (not only or capability in only) and hasattr(mod, name)]  # fmt: skip
