"""`dllab bench sigmorphon`: the speller on SIGMORPHON 2021 Task 1, its dev WER printed next to the baseline's.

One run does it all: trains what is missing of the sweep (`dllab p2g sweep`, resumable: a finished sweep is
only read back), then prints the per-language table (G2P beside the baseline's dev WER, P2G WER / CER, each
language's training minutes), the macro average per subtask against the baseline's, the sweep's wall time
and the CPU share other processes took meanwhile. `--speed` first measures training words/s of each per-size
preset against the homework's model (LSTM + Bahdanau, hidden 128, batch 64) on the same words, interleaved.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from dllab.bench.flags import add_bench_parser, add_common_flags


def add_bench(sub) -> None:
    p = add_bench_parser(
        sub,
        "sigmorphon",
        help="SIGMORPHON 2021 Task 1: dev WER per language and subtask next to the published baseline",
        description=__doc__,
        examples=["dllab bench sigmorphon --quick", "dllab bench sigmorphon all --direction both --speed",
                  "dllab bench sigmorphon --speed-only",
                  "dllab bench sigmorphon all --runs runs/sigmorphon",
                  "dllab bench sigmorphon low --test-dir 2021-task1/data   # held-out test WER beside the baseline's"],
    )
    add_common_flags(p, quick="low subtask, G2P only")
    p.add_argument("languages", nargs="?", default="all", help="high, medium, low, all (default) or languages")
    p.add_argument("--direction", choices=["g2p", "p2g", "both"], default="g2p", help="default g2p (the task)")
    p.add_argument("--runs", type=Path, default=Path("runs/sigmorphon"),
                   help="the sweep's root (default runs/sigmorphon)")
    p.add_argument("--workers", type=int, default=0, help="parallel processes (default: 2 per core, at most)")
    p.add_argument("--data-dir", default=None,
                   help="the task's data folder (default ../shared/data/sigmorphon2021)")
    p.add_argument("--test-dir", default=None,
                   help="also score each language's test file from this folder (see dllab p2g sweep --test-dir)")
    p.add_argument("--speed", action="store_true", help="also measure training words/s against the homework model")
    p.add_argument("--speed-language", default="bul", help="the language --speed trains on (default bul)")
    p.add_argument("--speed-only", action="store_true", help="measure --speed and stop (no sweep)")
    p.set_defaults(func=run)


def training_words_per_second(language: str, direction: str, data_dir: str | None, words: int = 1600,
                              rounds: int = 2) -> list[tuple[str, float]]:  # fmt: skip
    """(label, words/s) of one training epoch on the first `words` training words through `dllab.engine.fit`,
    one thread: the homework's model, then each preset's, interleaved over `rounds` (the best kept)."""
    import torch

    from dllab.config import replace_path
    from dllab.engine import RunDir, fit, seed_everything
    from dllab.p2g.config import P2GConfig
    from dllab.p2g.data import build_data
    from dllab.p2g.experiment import loss_fn
    from dllab.p2g.model import build_model
    from dllab.p2g.presets import PRESETS, apply_preset
    from dllab.p2g.sigmorphon import member_config

    torch.set_num_threads(1)
    base = member_config(language, direction, 1, "none", (), data_dir)
    homework = replace_path(replace_path(P2GConfig(data=base.data), "model.attn", True), "train.epochs", 1)
    configs = [("homework model (LSTM + attention, H 128, batch 64)", homework)]
    for name in ("low", "medium", "high"):
        cfg = replace_path(apply_preset(base, name), "train.epochs", 1)
        shown = [f"{key.split('.')[-1]} {value}" for key, value in PRESETS[name].items()
                 if key.startswith(("model.", "train.batch", "arch"))]  # fmt: skip
        configs.append((f"preset {name} ({', '.join(shown)})", cfg))
    for i, (label, cfg) in enumerate(configs):
        configs[i] = (label, replace_path(replace_path(cfg, "data.limit_train", words), "data.limit_valid", 1))
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for i, (label, cfg) in enumerate(configs):
                data = build_data(cfg.data, actions=cfg.arch == "transducer")
                seed_everything(0)
                model = build_model(cfg, data.src_vocab, data.tgt_vocab)
                run = RunDir(Path(tmp) / f"r{r}-{i}")
                run.prepare("p2g-bench", cfg, resume=False)
                result = fit(model, data.train, loss_fn, lambda m: {"val_cer": 0.0}, cfg.optim, cfg.train, run,
                             monitor="val_cer", mode="min", show_progress=False)  # fmt: skip
                speed = len(data.train) / result.history[0]["train_seconds"]
                best[label] = max(best.get(label, 0.0), speed)
    return list(best.items())


def run(args) -> int:
    from dllab.bench.measure import cpu_counters
    from dllab.data.sigmorphon import select_languages
    from dllab.engine.logs import setup_logging
    from dllab.p2g.sigmorphon import print_results, run_sweep

    setup_logging()
    languages = select_languages("low" if args.quick else args.languages)
    directions = ["g2p", "p2g"] if args.direction == "both" else [args.direction]
    if args.speed or args.speed_only:
        rows = training_words_per_second(args.speed_language, directions[0], args.data_dir)
        print(f"training words/s, one thread, {args.speed_language} {directions[0]}, 1,600 words, one epoch "
              "through dllab.engine.fit (best of 2 interleaved rounds):")  # fmt: skip
        reference = rows[0][1]
        for label, speed in rows:
            print(f"  {label:<70} {speed:>8.0f} words/s  {speed / reference:>5.2f}x the homework model")
        print()
        if args.speed_only:
            return 0
    from dllab.bench.measure import load_average

    start, began, load_before = cpu_counters(), time.perf_counter(), load_average()
    run_sweep(languages, directions, args.runs, workers=args.workers, data_dir=args.data_dir, test_dir=args.test_dir)
    wall = time.perf_counter() - began
    print()
    print_results(args.runs, languages)
    end = cpu_counters()
    if start is not None and end is not None:
        import os

        # The sweep's workers are not this process's children (a fork server starts them), so /proc/stat cannot
        # tell their CPU time from other processes': the busy share and the load average say how loaded it was.
        busy = (end[0] - start[0]) / (wall * len(os.sched_getaffinity(0)))
        after = load_average()
        loads = f"; 1-minute load average {load_before:.1f} before, {after:.1f} after" if load_before and after else ""
        print(f"this run: {wall / 60:.1f} min wall; the machine's CPUs were {busy:.0%} busy (this sweep and every "
              f"other process){loads}")
    return 0
