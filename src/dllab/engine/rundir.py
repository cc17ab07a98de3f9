"""A run directory: everything one training run leaves behind, and the only thing plots and reports read.

    runs/<experiment>/<name>/
        config.json          the resolved config (+ experiment, dllab version, parameter count)
        metrics.jsonl        one JSON record per epoch: epoch, train_loss, val_*, lr, seconds
        checkpoints/last.pt  model + optimizer + RNG state after the latest epoch (for --resume)
        checkpoints/best.pt  model weights at the best validation epoch
        test_metrics.json    test metrics of the final and of the best model; present = run complete
        figures/             figures drawn from this directory
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from dllab import __version__
from dllab.config import diff, from_dict, to_dict
from dllab.errors import UserError
from dllab.io import atomic_write_json, atomic_write_text


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def test_metrics_path(self) -> Path:
        return self.path / "test_metrics.json"

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.config_path.exists()

    def is_complete(self) -> bool:
        return self.test_metrics_path.exists()

    # -- config ------------------------------------------------------------------------------------
    def write_config(self, experiment: str, cfg: Any, extra: dict[str, Any] | None = None) -> None:
        record = {
            "experiment": experiment,
            "config_class": type(cfg).__name__,
            "config": to_dict(cfg),
            "dllab_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **(extra or {}),
        }
        atomic_write_json(self.config_path, record)

    def read_config_record(self) -> dict[str, Any]:
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise UserError(f"{self.config_path}: not a run directory (no config.json)") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{self.config_path}: invalid JSON ({err})") from None

    def read_config(self, cls: type) -> Any:
        return from_dict(cls, self.read_config_record()["config"], where=str(self.config_path))

    def prepare(self, experiment: str, cfg: Any, resume: bool, overwrite: bool = False, extra=None) -> None:
        """Create the directory for a new run, or check that a resumed run has the same config.

        A finished run is left alone unless `overwrite`; a partial run needs `resume` (or `overwrite`).
        """
        if self.exists() and overwrite:
            for p in (self.metrics_path, self.test_metrics_path, self.last_checkpoint, self.best_checkpoint):
                if p.exists():
                    p.unlink()
        elif self.exists() and resume:
            saved = self.read_config(type(cfg))
            # More epochs, another thread count or CPU kernel choice is a legitimate way to continue a run.
            changed = [k for k in diff(saved, cfg) if k not in ("train.epochs", "train.threads", "train.mkldnn")]
            if changed:
                raise UserError(
                    f"{self.path}: cannot resume with a different config ({', '.join(changed)} changed); "
                    "use another --name or --overwrite"
                )
        elif self.exists():
            state = "finished" if self.is_complete() else "unfinished"
            raise UserError(
                f"{self.path} already holds a {state} run: pass --resume to continue it, "
                "--overwrite to start again, or --name for a new run"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_config(experiment, cfg, extra)

    # -- metrics -----------------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        records = []
        for number, line in enumerate(self.metrics_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # A kill mid-append can leave a partial last line; anything earlier is corruption.
                if number == len(self.metrics_path.read_text().splitlines()):
                    break
                raise UserError(f"{self.metrics_path}:{number}: invalid JSON") from None
        return records

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep only the records up to `last_epoch` (the epoch of the checkpoint being resumed)."""
        kept = [r for r in self.read_metrics() if r["epoch"] <= last_epoch]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_test_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.test_metrics_path, metrics)

    def read_test_metrics(self) -> dict[str, Any] | None:
        if not self.test_metrics_path.exists():
            return None
        return json.loads(self.test_metrics_path.read_text())


def find_runs(root: str | Path) -> list[RunDir]:
    """Every run directory (a folder with config.json) below `root`, sorted by path."""
    root = Path(root)
    if not root.exists():
        return []
    return [RunDir(p.parent) for p in sorted(root.rglob("config.json"))]
