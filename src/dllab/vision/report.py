"""The vision section of the report: sweep tables and figures, and the answers to Q2.3 / Q2.4 in numbers."""

from __future__ import annotations

import json
from pathlib import Path

from dllab.engine.rundir import RunDir
from dllab.report.document import Code, Paragraph, ReportContext, Section, Table
from dllab.vision.experiment import SWEEP_COLUMNS, read_sweep

# The demo's sizes: enough images and epochs that the 2023-24 net reaches its homework accuracy (>= 0.85 on
# Fashion-MNIST's test set at lr 0.01) in about two minutes of one core.
QUICK = {"train_limit": 20000, "val_limit": 2000, "epochs": 3}
YEARS = (("hw2023", (0.1, 0.01, 0.001)), ("hw2024", (0.1, 0.01, 0.001)))
QUICK_YEARS = (("hw2023", (0.1, 0.01)), ("hw2024", (0.01,)))


def experiments(runs_root: Path, quick: bool, scale: float = 1.0, overrides: tuple[str, ...] = ()) -> list:
    """Both years' sweeps (lr x3 + the year's ablation at lr 0.01) on Fashion-MNIST, as plan tasks whose
    estimates come from a short calibration run of each year's net; `scale` multiplies the epochs.

    quick: the 2023-24 sweep at lr 0.1 and 0.01 (+ strided) and the 2024-25 net at lr 0.01 (+ BN + GAP) on
    20,000 images for 3 epochs. `overrides` (`--key=value` words) apply to every run's config last."""
    from dllab.config import apply_overrides
    from dllab.engine.plan import Task
    from dllab.vision.config import PRESETS
    from dllab.vision.experiment import sweep_jobs, write_sweep_table

    tasks = []
    for preset, lrs in QUICK_YEARS if quick else YEARS:
        cfg = PRESETS[preset]
        if quick:
            cfg = apply_overrides(cfg, [f"--data.train_limit={QUICK['train_limit']}",
                                        f"--data.val_limit={QUICK['val_limit']}", f"--train.epochs={QUICK['epochs']}"])
        cfg = apply_overrides(cfg, [f"--train.epochs={max(1, round(cfg.train.epochs * scale))}", *overrides])
        sweep_dir = Path(runs_root) / "vision" / f"{preset}-fashion-mnist{'-quick' if quick else ''}"
        jobs = sweep_jobs(cfg, sweep_dir, lrs, 0.01, preset)
        seconds = _estimate(cfg)
        names = [f"vision/{preset}/{job.name}" for job in jobs]
        tasks += [Task(name, job.fn, job.kwargs, seconds=seconds) for name, job in zip(names, jobs, strict=True)]
        tasks.append(Task(f"vision/{preset}/table", write_sweep_table,
                          {"sweep_dir": sweep_dir, "preset": preset, "runs": [j.name for j in jobs]},
                          seconds=1.0, after=tuple(names)))  # fmt: skip
    return tasks


def _estimate(cfg) -> float:
    """Seconds one run of `cfg` takes on one thread here, from 1 epoch on 480 images timed now."""
    import dataclasses

    from dllab.config import apply_overrides
    from dllab.engine.calibrate import time_small_run
    from dllab.vision.experiment import load_data, train_run

    n = 480
    small = apply_overrides(cfg, [f"--data.train_limit={n}", f"--data.val_limit={n}", f"--data.test_limit={n}",
                                  "--train.epochs=1"])  # fmt: skip
    timing = time_small_run(lambda path: train_run(small, path, threads=1), n, n)
    sizes = load_data(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, test_limit=1)))
    return timing.estimate(cfg.train.epochs, len(sizes.train), len(sizes.val))


def demo_figures(runs_root: Path) -> dict[str, float | None]:
    """The demo's headline: the 2023-24 net's test accuracy at lr 0.01 (final model)."""
    run = RunDir(Path(runs_root) / "vision" / "hw2023-fashion-mnist-quick" / "lr0.01")
    test = run.read_test_metrics() if run.exists() else None
    return {"vision.test_acc": (test or {}).get("final", {}).get("test_acc")}


def run_experiments(runs_root: Path, quick: bool) -> None:
    """Run `experiments` one after another in this process (see `dllab.report.build` for the planned way)."""
    for task in experiments(runs_root, quick):
        task.fn(**task.kwargs, threads=0)


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


