"""Vision experiments: one training run, and the homework's learning-rate sweep plus its ablation."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dllab.data.images import ImageSplits
from dllab.engine import RunDir, distributed, fit, load_best, resolve_device, seed_everything
from dllab.engine.loop import cpu_kernels, to_device
from dllab.engine.sweep import Job, run_jobs
from dllab.io import atomic_write_json, atomic_write_text
from dllab.vision.config import ABLATIONS, PRESETS, VisionConfig, with_lr, with_model
from dllab.vision.models import count_parameters, create_model

log = logging.getLogger(__name__)


def load_data(cfg: VisionConfig) -> ImageSplits:
    d = cfg.data
    if d.dataset == "fashion-mnist":
        from dllab.data.fashion_mnist import load_fashion_mnist

        splits = load_fashion_mnist(d.path, n_val=d.val_size)
    elif d.dataset == "octmnist":
        from dllab.data.octmnist import load_octmnist

        splits = load_octmnist(d.path, eq_test_dist=d.eq_test_dist, download=d.download)
    else:
        from dllab.data.intel import load_intel

        splits = load_intel(d.path)
    return splits.limit(d.train_limit or None, d.val_limit or None, d.test_limit or None)


def build_model(cfg: VisionConfig, splits: ImageSplits) -> nn.Module:
    m = cfg.model
    return create_model(
        m.name, splits.input_shape, splits.num_classes, dropout=m.dropout, maxpool=m.maxpool, bn_gap=m.bn_gap
    )


def nll_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.nll_loss(model(x), y)


@torch.no_grad()
def evaluate(model: nn.Module, data, batch_size: int, device: torch.device) -> dict[str, float]:
    """Accuracy and mean NLL over `data` (model already in eval mode).

    Under torchrun each rank scores its strided shard and the sums are all-reduced, so every rank gets
    the single-process numbers.
    """
    sums = torch.zeros(3, dtype=torch.float64)  # correct, summed NLL, count
    idx = distributed.shard(len(data))
    for start in range(0, len(idx), batch_size):
        x, y = to_device(data.batch(idx[start : start + batch_size]), device)
        logp = model(x)
        sums[0] += int((logp.argmax(-1) == y).sum())
        sums[1] += float(F.nll_loss(logp, y, reduction="sum"))
        sums[2] += len(y)
    correct, loss, n = distributed.all_reduce_sum(sums).tolist()
    return {"acc": correct / max(n, 1), "loss": loss / max(n, 1)}


def train_run(
    cfg: VisionConfig, run_path: str | Path, resume: bool = False, overwrite: bool = False, threads: int = 0
) -> dict[str, Any]:
    """Train one CNN into `run_path`, then write the test metrics of the final and the best model.

    The run's lock is held from `prepare` to the test metrics, and let go on return (a sweep's worker
    process trains several runs)."""
    if threads:
        torch.set_num_threads(threads)
    run = RunDir(run_path)
    try:
        return _train_run(cfg, run, resume, overwrite)
    finally:
        run.release()


def _train_run(cfg: VisionConfig, run: RunDir, resume: bool, overwrite: bool) -> dict[str, Any]:
    done = len(run.read_metrics())
    extend = resume and not overwrite and run.is_complete()
    if extend and done >= cfg.train.epochs:
        log.info("%s: already finished, skipping", run.path)
        return summarize(run)
    splits = load_data(cfg)
    seed_everything(cfg.train.seed)
    model = build_model(cfg, splits)
    n_params = count_parameters(model)
    dist_info = distributed.setup()
    if dist_info.is_main:
        run.prepare("vision", cfg, resume=resume, overwrite=overwrite,
                    extra={"parameters": n_params, "dataset_sizes": _sizes(splits), "world_size": dist_info.world})
        if extend:  # a finished run continued to more epochs: its test metrics are stale until it ends
            log.info("%s: continuing a finished run from epoch %d to %d", run.path, done, cfg.train.epochs)
            run.test_metrics_path.unlink()
    distributed.barrier()
    device = distributed.device_for(cfg.train.device) or resolve_device(cfg.train.device)

    def evaluate_val(m: nn.Module) -> dict[str, float]:
        return {f"val_{k}": v for k, v in evaluate(m, splits.val, cfg.eval_batch_size, device).items()}

    result = fit(model, splits.train, nll_loss, evaluate_val, cfg.optim, cfg.train, run, monitor="val_acc",
                 resume=resume)
    model.eval()
    with cpu_kernels(cfg.train.mkldnn):  # the kernels the validation scores were computed with
        final = {f"test_{k}": v for k, v in evaluate(model, splits.test, cfg.eval_batch_size, device).items()}
        load_best(model, run, device)
        model.eval()
        best = {f"test_{k}": v for k, v in evaluate(model, splits.test, cfg.eval_batch_size, device).items()}
    if not dist_info.is_main:
        return {}
    run.write_test_metrics({"final": final, "best": best, "best_epoch": result.best_epoch})
    log.info("%s: test acc %.4f (final), %.4f (best val epoch %d)", run.name, final["test_acc"],
             best["test_acc"], result.best_epoch)
    return summarize(run)


def _sizes(splits: ImageSplits) -> dict[str, int]:
    return {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}


def summarize(run: RunDir) -> dict[str, Any]:
    """One row of a sweep table, read back from the run directory."""
    record = run.read_config_record()
    cfg = record["config"]
    metrics = run.read_metrics()
    test = run.read_test_metrics() or {}
    return {
        "run": run.name,
        "model": cfg["model"]["name"],
        "variant": variant_name(cfg["model"]),
        "lr": cfg["optim"]["lr"],
        "epochs": len(metrics),
        "final_val_acc": metrics[-1]["val_acc"] if metrics else None,
        "best_val_acc": max(m["val_acc"] for m in metrics) if metrics else None,
        "test_acc": test.get("final", {}).get("test_acc"),
        "best_model_test_acc": test.get("best", {}).get("test_acc"),
        "parameters": record.get("parameters"),
        "train_seconds": sum(m["seconds"] for m in metrics),
    }


def variant_name(model_cfg: dict[str, Any]) -> str:
    if model_cfg["name"] == "cnn2023":
        return "max-pool" if model_cfg["maxpool"] else "strided"
    return "BN+GAP" if model_cfg["bn_gap"] else "plain"


def sweep_jobs(
    base: VisionConfig, sweep_dir: Path, lrs: tuple[float, ...], ablation_lr: float | None, preset: str
) -> list[Job]:
    jobs = [
        Job(f"lr{lr:g}", train_run, {"cfg": with_lr(base, lr), "run_path": sweep_dir / f"lr{lr:g}", "resume": True})
        for lr in lrs
    ]
    if ablation_lr is not None and preset in ABLATIONS:
        tag, change = ABLATIONS[preset]
        cfg = with_model(with_lr(base, ablation_lr), **change)
        name = f"{tag}-lr{ablation_lr:g}"
        jobs.append(Job(name, train_run, {"cfg": cfg, "run_path": sweep_dir / name, "resume": True}))
    return jobs


def run_sweep(
    base: VisionConfig,
    sweep_dir: str | Path,
    preset: str,
    lrs: tuple[float, ...] = (0.1, 0.01, 0.001),
    ablation_lr: float | None = 0.01,
    workers: int = 0,
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """The homework's sweep: one run per learning rate, plus the year's ablation at `ablation_lr`.

    Writes sweep.json (the runs and the table) and sweep.md into `sweep_dir`; figures are drawn by
    the report from the run directories.
    """
    sweep_dir = Path(sweep_dir)
    sweep = RunDir(sweep_dir)  # the sweep's folder is locked like a run: one sweep process at a time
    sweep.create()
    with sweep.locked():
        jobs = sweep_jobs(base, sweep_dir, lrs, ablation_lr, preset)
        runs = [j.name for j in jobs]
        atomic_write_json(sweep_dir / "sweep.json", {"preset": preset, "runs": runs, "rows": []}, strict=True)
        run_jobs(jobs, workers=workers, ray_address=ray_address)
        return write_sweep_table(sweep_dir, preset, runs)["rows"]


def write_sweep_table(sweep_dir: str | Path, preset: str, runs: list[str], threads: int = 0) -> dict[str, Any]:
    """sweep.json (the runs and the table) and sweep.md, from the finished runs' directories."""
    sweep_dir = Path(sweep_dir)
    rows = [summarize(RunDir(sweep_dir / name)) for name in runs]
    record = {"preset": preset, "runs": runs, "rows": rows}
    atomic_write_json(sweep_dir / "sweep.json", record, strict=True)
    atomic_write_text(sweep_dir / "sweep.md", sweep_table_markdown(rows))
    return record


SWEEP_COLUMNS = [
    ("run", "run"),
    ("variant", "variant"),
    ("lr", "lr"),
    ("final_val_acc", "final val acc"),
    ("best_val_acc", "best val acc"),
    ("test_acc", "test acc (final model)"),
    ("best_model_test_acc", "test acc (best-val model)"),
    ("parameters", "parameters"),
    ("train_seconds", "train+val seconds"),
]


def sweep_table_markdown(rows: list[dict[str, Any]]) -> str:
    from dllab.report.document import format_cell

    lines = ["| " + " | ".join(h for _, h in SWEEP_COLUMNS) + " |", "|" + "---|" * len(SWEEP_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(k)) for k, _ in SWEEP_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def read_sweep(sweep_dir: Path) -> dict[str, Any] | None:
    path = Path(sweep_dir) / "sweep.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def preset_config(name: str) -> VisionConfig:
    return PRESETS[name]
