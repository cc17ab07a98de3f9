"""The vision section of the report: sweep tables and figures, and the answers to Q2.3 / Q2.4 in numbers."""

from __future__ import annotations

import json
from pathlib import Path

from dllab.engine.rundir import RunDir
from dllab.report.document import Code, Paragraph, ReportContext, Section, Table
from dllab.vision.experiment import SWEEP_COLUMNS, read_sweep

QUICK = {"train_limit": 6000, "val_limit": 2000, "epochs": 4}


def run_experiments(runs_root: Path, quick: bool) -> None:
    """The 2023-24 sweep (lr x3 + strided) and the 2024-25 BN+GAP comparison on Fashion-MNIST."""
    from dllab.config import apply_overrides
    from dllab.vision.config import PRESETS
    from dllab.vision.experiment import run_sweep

    extra = []
    if quick:
        extra = [f"--data.train_limit={QUICK['train_limit']}", f"--data.val_limit={QUICK['val_limit']}",
                 f"--train.epochs={QUICK['epochs']}"]
    suffix = "-quick" if quick else ""
    cfg23 = apply_overrides(PRESETS["hw2023"], extra)
    run_sweep(cfg23, Path(runs_root) / "vision" / f"hw2023-fashion-mnist{suffix}", "hw2023")
    cfg24 = apply_overrides(PRESETS["hw2024"], extra + (["--train.epochs=3"] if quick else []))
    run_sweep(cfg24, Path(runs_root) / "vision" / f"hw2024-fashion-mnist{suffix}", "hw2024", lrs=(0.01,))


def build_section(ctx: ReportContext) -> Section:
    section = Section("Q2 — CNN image classification")
    sweeps = sorted(p.parent for p in (ctx.runs_root / "vision").glob("*/sweep.json"))
    if not sweeps:
        section.add(Paragraph("No vision sweeps yet: run `dllab vision sweep --preset hw2023` (or "
                              "`dllab report --rerun --quick`) and build the report again."))
    for sweep_dir in sweeps:
        sub = _sweep_section(ctx, sweep_dir)
        if sub is not None:
            section.subsections.append(sub)
    singles = [RunDir(p.parent) for p in sorted((ctx.runs_root / "vision").glob("*/config.json"))]
    if singles:
        section.subsections.append(_single_runs_section(ctx, singles))
    section.subsections.append(_parameters_section())
    section.subsections.append(_kernels_section())
    return section


def _sweep_section(ctx: ReportContext, sweep_dir: Path) -> Section | None:
    from dllab.report.figures import compare_runs, run_curves

    sweep = read_sweep(sweep_dir)
    runs = [RunDir(sweep_dir / name) for name in sweep["runs"] if (sweep_dir / name / "metrics.jsonl").exists()]
    if not runs:
        return None
    from dllab.vision.experiment import summarize

    rows = [summarize(r) for r in runs]
    sub = Section(f"Sweep {sweep_dir.name}")
    cfg = runs[0].read_config_record()
    sizes = cfg.get("dataset_sizes", {})
    sub.add(Paragraph(
        f"Preset `{sweep['preset']}` on `{cfg['config']['data']['dataset']}` "
        f"({sizes.get('train', '?')} train / {sizes.get('val', '?')} validation / {sizes.get('test', '?')} test "
        f"images). Produced by `dllab vision sweep --preset {sweep['preset']}`; each run's full configuration "
        f"is in its config.json (the first one below)."
    ))
    sub.add(_runs_table(rows, "Final and best validation accuracy, test accuracy, parameters and wall time"))
    tag = sweep_dir.name
    sub.add(ctx.save_figure(compare_runs(runs, title=f"{tag}: all runs"), f"vision_{tag}_compare.png",
                            "Training loss and validation accuracy per epoch, every run of the sweep"))
    complete = [r for r in rows if r["best_val_acc"] is not None]
    if complete:
        best = max(complete, key=lambda r: r["final_val_acc"])
        best_run = next(r for r in runs if r.name == best["run"])
        sub.add(ctx.save_figure(run_curves(best_run, title=f"{tag}: best run {best['run']}"),
                                f"vision_{tag}_best.png",
                                f"Training loss and validation accuracy of the best run ({best['run']}, by final "
                                f"validation accuracy)"))
    sub.add(Code(json.dumps(cfg["config"], indent=1)))
    return sub


def _runs_table(rows: list[dict], caption: str) -> Table:
    """The sweep table's columns (as in sweep.md), one row per run summary."""
    return Table([h for _, h in SWEEP_COLUMNS], [[row.get(k) for k, _ in SWEEP_COLUMNS] for row in rows], caption)


def _single_runs_section(ctx: ReportContext, runs: list[RunDir]) -> Section:
    """Runs made with `dllab vision train` (outside a sweep): a table and each run's curves."""
    from dllab.report.figures import run_curves
    from dllab.vision.experiment import summarize

    sub = Section("Single runs")
    rows = [summarize(r) for r in runs]
    sub.add(_runs_table(rows, "Runs of `dllab vision train`"))
    for run in runs:
        if run.read_metrics():
            sub.add(ctx.save_figure(run_curves(run), f"vision_run_{run.name}.png",
                                    f"{run.name}: training loss and validation accuracy per epoch"))
    return sub


def _parameters_section() -> Section:
    from dllab.vision.analysis import homework_models, layer_table, model_input_shape

    sub = Section("Q2.3 — parameters per layer")
    totals = {}
    for label, model in homework_models().items():
        rows = layer_table(model, model_input_shape(label))
        totals[label] = sum(r.parameters for r in rows)
        sub.add(Table(["layer", "kind", "output", "parameters"],
                      [[r.name, r.kind, "x".join(map(str, r.output_shape)), r.parameters] for r in rows],
                      caption=f"{label}: {totals[label]:,} trainable parameters"))
    cut = 1 - totals["2024-25 BN+GAP"] / totals["2024-25 plain"]
    sub.add(Paragraph(
        f"Max-pooling and stride-2 convolutions give the same count ({totals['2023-24 max-pool']:,} vs "
        f"{totals['2023-24 strided']:,}): pooling has no parameters and a convolution's parameters depend only "
        "on its kernel size and channels, not its stride; both variants end in 16 maps of 6x6 = 576 features, "
        "so the first linear layer is the same size too."
    ))
    sub.add(Paragraph(
        f"BN + global average pooling cuts the 2024-25 net from {totals['2024-25 plain']:,} to "
        f"{totals['2024-25 BN+GAP']:,} parameters ({cut:.1%} fewer): the first MLP layer goes from "
        "4,608 x 1,024 (flattened 128x6x6 maps) to 128 x 1,024 inputs, while the batch-norm layers add only "
        "2 parameters per channel or unit."
    ))
    return sub


def _kernels_section() -> Section:
    from dllab.vision.analysis import pooling_cost_rows, stacked_kernel_rows

    sub = Section("Q2.4 — small kernels and pooling, in numbers")
    rows = stacked_kernel_rows(64)
    headers = list(rows[0].keys())
    sub.add(Table(headers, [list(r.values()) for r in rows],
                  caption="n stacked 3x3 convolutions (64 -> 64 channels, no bias) against one kernel with the "
                          "same receptive field"))
    sub.add(Paragraph(
        "Stacked 3x3 kernels see as far as one large kernel (receptive field 2n+1) with fewer parameters "
        "(9n against (2n+1)^2 per channel pair) and n non-linearities instead of one."
    ))
    pool = pooling_cost_rows()
    sub.add(Table(list(pool[0].keys()), [list(r.values()) for r in pool],
                  caption="2024-25 net at 48x48x3: feature maps, forward multiply-accumulates per image and "
                          "parameters with and without max-pooling"))
    return sub


