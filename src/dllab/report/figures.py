"""Figures drawn from run directories (metrics.jsonl); each function returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dllab.engine.rundir import RunDir  # noqa: E402

LABELS = {
    "train_loss": "training loss",
    "val_acc": "validation accuracy",
    "val_loss": "validation loss",
    "val_cer": "validation CER",
}


def _label(metric: str) -> str:
    return LABELS.get(metric, metric.replace("_", " "))


def run_curves(run: RunDir, metrics: tuple[str, ...] = ("train_loss", "val_acc"), title: str = "") -> Figure:
    """One panel per metric against epoch, for a single run."""
    records = run.read_metrics()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.4), squeeze=False)
    epochs = [r["epoch"] for r in records]
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.plot(epochs, [r.get(metric) for r in records], marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(_label(metric))
        ax.grid(alpha=0.3)
    fig.suptitle(title or run.name)
    fig.tight_layout()
    return fig


def compare_runs(
    runs: list[RunDir], metrics: tuple[str, ...] = ("train_loss", "val_acc"), labels: list[str] | None = None,
    title: str = "",
) -> Figure:
    """One panel per metric, one line per run: the comparison figure of a sweep."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.4), squeeze=False)
    labels = labels or [r.name for r in runs]
    for run, label in zip(runs, labels, strict=True):
        records = run.read_metrics()
        epochs = [r["epoch"] for r in records]
        for ax, metric in zip(axes[0], metrics, strict=True):
            ax.plot(epochs, [r.get(metric) for r in records], marker="o", ms=2, label=label)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(_label(metric))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
