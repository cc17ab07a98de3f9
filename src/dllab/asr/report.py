"""The report's speech-recognition section: loss and similarity curves, the decoder comparison, examples.

Reads run directories under `<runs>/asr/` (written by `dllab asr train`, or by `run_experiments`, which
puts its quick CPU-demo runs under `<runs>/asr/quick/`); never trains anything itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dllab.report.document import Figure, Paragraph, ReportContext, Section, Table

DECODERS = ("lstm", "transformer", "taylor")
SIMILARITIES = (("jaccard", "Jaccard"), ("cosine", "cosine"), ("damerau_levenshtein", "Damerau-Levenshtein"))
# The course notebook's test similarities as submitted (seeds 000 and 002; LJSpeech, 15 epochs).
SEED_RESULTS = (
    ("course notebook, LSTM decoder (seed 000)", 0.7149, 0.8324, 0.5087),
    ("course notebook, attention decoder (seed 000)", 0.7635, 0.8646, 0.6318),
    ("course notebook, attention decoder (seed 002)", 0.7657, 0.8661, 0.6344),
)


def _runs(root: Path) -> list[dict[str, Any]]:
    from dllab.engine.rundir import find_runs

    out = []
    for run in find_runs(root):
        record = run.read_config_record()
        if record.get("experiment") != "asr":
            continue
        out.append(
            {
                "name": str(run.path.relative_to(root)),
                "decoder": record["config"]["model"]["decoder"],
                "config": record,
                "metrics": run.read_metrics(),
                "test": run.read_test_metrics(),
            }
        )
    return out


def build_section(ctx: ReportContext) -> Section:
    section = Section("Speech recognition (2023-24 Question 3)")
    root = ctx.runs_root / "asr"
    runs = [r for r in _runs(root) if r["metrics"]]
    if not runs:
        return section.add(
            Paragraph(
                "No speech-recognition runs yet: `dllab asr train --decoder transformer` (and `lstm`, "
                "`taylor`) trains them on the embedded espeak-ng corpus, or `dllab report --rerun --quick` "
                "runs the quick demo."
            )
        )
    full = [r for r in runs if not r["name"].startswith("quick/")]
    shown = full or runs
    quick = not full
    corpus = shown[0]["config"].get("corpus", "?")
    sizes = shown[0]["config"].get("sizes", {})
    caveat = (
        "Quick demo runs (tiny corpus, few epochs: they only show that the pipeline works). " if quick else ""
    )
    split = ", ".join(f"{k} {v}" for k, v in sizes.items())
    section.add(
        Paragraph(
            f"{caveat}Corpus `{corpus}` ({split} utterances): public-domain KJV clauses spoken by espeak-ng "
            "with several voices, rates and pitches, 22,050 Hz, 80 log-mel bands. Encoder: 2 conv layers + 2 "
            "pre-norm attention blocks (hidden 200, 2 heads). Training: AdamW lr 1e-3, linear warm-up and "
            "decay, label smoothing 0.1 with padding ignored (the notebook also scored padding positions), "
            "best epoch by validation CER; test transcripts are greedy."
        )
    )
    section.add(_table(shown))
    section.add(*_figures(ctx, shown))
    section.add(*_examples(shown))
    section.add(*_speed(root / "bench.json"))
    return section


def _speed(path: Path) -> list[Paragraph | Table]:
    """The latest `dllab bench asr` figures (greedy decoding with vs without the KV cache; training)."""
    import json

    if not path.exists():
        return [
            Paragraph(
                "Decoding speed: run `dllab bench asr` to measure the KV cache against the "
                "notebook's prefix recomputation."
            )
        ]
    b = json.loads(path.read_text())
    d = b["decoding"]
    rows = [
        [
            "greedy decoding, notebook (prefix re-run every step)",
            f"{d['notebook_seconds']:.2f} s",
            f"{d['utterances'] / d['notebook_seconds']:.1f} utt/s",
        ],
        [
            "greedy decoding, dllab (KV cache)",
            f"{d['cache_seconds']:.2f} s",
            f"{d['utterances'] / d['cache_seconds']:.1f} utt/s ({d['speedup']:.1f}x)",
        ],
    ]
    if "training" in b:
        t = b["training"]
        rows += [
            [
                "training, batches padded to 2,754 frames (notebook)",
                "-",
                f"{t['notebook_utt_per_s']:.1f} utt/s",
            ],
            [
                "training, batches padded to their longest (dllab)",
                "-",
                f"{t['dllab_utt_per_s']:.1f} utt/s ({t['dllab_utt_per_s'] / t['notebook_utt_per_s']:.1f}x)",
            ],
        ]
        if "dllab_bf16_utt_per_s" in t:  # absent from bench records written before bf16 training existed
            rate = t["dllab_bf16_utt_per_s"]
            rows.append(
                [
                    "training, bf16 autocast, rounded to 64 frames (dllab)",
                    "-",
                    f"{rate:.1f} utt/s ({rate / t['notebook_utt_per_s']:.1f}x)",
                ]
            )
    which = "a trained" if d["trained"] else "an untrained"
    return [
        Table(
            ["measurement", "time", "rate"],
            rows,
            f"`dllab bench asr`: {d['utterances']} test utterances, batch {d['batch_size']}, {which} "
            f"Transformer decoder, {b['threads']} CPU thread(s) on a shared machine; identical "
            f"transcripts: {'yes' if d['identical'] else 'NO'}.",
        )
    ]


def _fmt(x: Any, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) else "-"


def _table(runs: list[dict[str, Any]]) -> Table:
    rows = []
    for r in sorted(
        runs, key=lambda r: (DECODERS.index(r["decoder"]) if r["decoder"] in DECODERS else 9, r["name"])
    ):
        t = r["test"] or {}
        train_min = sum(m.get("train_seconds", 0.0) for m in r["metrics"]) / 60
        rows.append(
            [
                r["name"],
                r["decoder"],
                f"{r['config'].get('parameters', 0):,}",
                len(r["metrics"]),
                f"{train_min:.1f}",
                t.get("utterances", "-"),
                _fmt(t.get("cer")),
                _fmt(t.get("wer")),
                _fmt(t.get("jaccard")),
                _fmt(t.get("cosine")),
                _fmt(t.get("damerau_levenshtein")),
                _fmt(t.get("decode_utterances_per_second"), 1),
            ]
        )
    for label, jac, cos, dl in SEED_RESULTS:
        rows.append([label, "-", "-", 15, "-", "-", "-", "-", _fmt(jac), _fmt(cos), _fmt(dl), "-"])
    return Table(
        [
            "run",
            "decoder",
            "parameters",
            "epochs",
            "train min",
            "test utts",
            "test CER",
            "test WER",
            "Jaccard",
            "cosine",
            "Damerau-Lev.",
            "decoded utt/s",
        ],
        rows,
        "Test-split results of the best-validation-CER checkpoint (greedy, KV-cached decoding; training "
        "minutes measured on a shared 2-core CPU). The last rows are the students' LJSpeech numbers, for "
        "reference only: a different corpus.",
    )


def _figures(ctx: ReportContext, runs: list[dict[str, Any]]) -> list[Figure]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        ep = [m["epoch"] for m in r["metrics"]]
        (line,) = ax.plot(ep, [m["train_loss"] for m in r["metrics"]], label=f"{r['name']} train")
        ax.plot(
            ep,
            [m.get("val_loss") for m in r["metrics"]],
            "--",
            color=line.get_color(),
            label=f"{r['name']} val",
        )
    ax.set(xlabel="epoch", ylabel="label-smoothed cross-entropy", title="ASR: training and validation loss")
    ax.legend(fontsize=7)
    figs.append(
        ctx.save_figure(fig, "asr_loss.png", "Training (solid) and validation (dashed) loss per epoch.")
    )
    plt.close(fig)

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, (key, label) in zip(axes, (*SIMILARITIES, ("cer", "CER")), strict=True):
        for r in runs:
            ax.plot(
                [m["epoch"] for m in r["metrics"]],
                [m.get(f"val_{key}") for m in r["metrics"]],
                marker=".",
                label=r["name"],
            )
        ax.set(xlabel="epoch", title=f"validation {label}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    figs.append(
        ctx.save_figure(
            fig,
            "asr_similarities.png",
            "Validation Jaccard, cosine and Damerau-Levenshtein similarities (mean per "
            "utterance, greedy transcripts) and CER per epoch.",
        )
    )
    plt.close(fig)
    return figs


def _examples(runs: list[dict[str, Any]]) -> list[Table]:
    rows = []
    for r in runs:
        for ex in ((r["test"] or {}).get("examples") or [])[:3]:
            rows.append([r["name"], ex["reference"], ex["hypothesis"]])
    if not rows:
        return []
    return [Table(["run", "reference", "greedy transcript"], rows, "Example test transcriptions.")]


# -- dllab report --rerun -------------------------------------------------------------------------------


def quick_config():
    """The CPU-demo setting: 80 short utterances (60 for training), 3 epochs per decoder."""
    from dllab.asr.experiment import ASRConfig

    cfg = ASRConfig()
    return dataclasses.replace(
        cfg,
        corpus=dataclasses.replace(cfg.corpus, size=80, max_words=7),
        optim=dataclasses.replace(cfg.optim, warmup_steps=5),
        train=dataclasses.replace(cfg.train, epochs=3),
        decode_max_len=60,  # 7-word clauses are under 50 characters; untrained models never stop early
    )


def _config(decoder: str, quick: bool, scale: float = 1.0, overrides: tuple[str, ...] = ()):
    from dllab.asr.experiment import ASRConfig
    from dllab.config import apply_overrides

    base = quick_config() if quick else ASRConfig()
    train = dataclasses.replace(base.train, epochs=max(1, round(base.train.epochs * scale)))
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, decoder=decoder), train=train)
    return apply_overrides(cfg, overrides)


def prepare_corpus(cfg, threads: int = 0) -> dict:
    """A plan task: build the corpus and its feature caches once, before the decoders train on them."""
    from dllab.asr.experiment import load_splits

    return {split: len(features) for split, features in load_splits(cfg, show_progress=False).items()}


def train_decoder(cfg, run_path: Path, threads: int = 0) -> dict:
    """A plan task: train and test one decoder (resuming an interrupted run)."""
    from dllab.asr.experiment import train_run
    from dllab.engine.rundir import RunDir

    if threads:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads))
    run = RunDir(run_path)
    if run.is_complete():
        return run.read_test_metrics() or {}
    return train_run(cfg, run_path, resume=run.exists(), show_progress=False)


def experiments(runs_root: Path, quick: bool, scale: float = 1.0, overrides: tuple[str, ...] = ()) -> list:
    """The corpus (built once), then each decoder trained and tested; estimated by timing a small corpus's
    synthesis and one epoch of each decoder on it here."""
    from dllab.engine.plan import Task

    root = Path(runs_root) / "asr" / ("quick" if quick else "")
    first = _config(DECODERS[0], quick, scale, overrides)
    synth = _estimate_corpus(first)
    tasks = [Task("asr/corpus", prepare_corpus, {"cfg": first}, seconds=synth, threads=2)]
    for decoder in DECODERS:
        cfg = _config(decoder, quick, scale, overrides)
        tasks.append(Task(f"asr/{decoder}", train_decoder, {"cfg": cfg, "run_path": root / decoder},
                          seconds=_estimate_training(cfg), after=("asr/corpus",)))  # fmt: skip
    return tasks


CALIBRATION_SIZE = 48  # utterances of the small corpus the estimates are timed on (36 for training)


def _calibration_config(cfg):
    return dataclasses.replace(cfg, corpus=dataclasses.replace(cfg.corpus, size=CALIBRATION_SIZE))


def _estimate_corpus(cfg) -> float:
    """Seconds to build `cfg`'s corpus and features here (0 when they are cached), from the small corpus's."""
    import time

    from dllab.asr.experiment import load_splits
    from dllab.data.espeak_corpus import corpus_name
    from dllab.io import cache_dir

    if cfg.data.corpus != "espeak" or (cache_dir("espeak", corpus_name(cfg.corpus)) / "corpus.json").exists():
        return 1.0
    small = _calibration_config(cfg)
    began = time.perf_counter()
    load_splits(small, show_progress=False)
    return (time.perf_counter() - began) * cfg.corpus.size / CALIBRATION_SIZE


def _estimate_training(cfg) -> float:
    """Seconds to train and test `cfg` on one thread here, from one epoch on the small corpus."""
    from dllab.asr.experiment import load_splits, train_run
    from dllab.engine.calibrate import time_small_run

    small = _calibration_config(cfg)
    small = dataclasses.replace(small, train=dataclasses.replace(small.train, epochs=1))
    sizes = {k: len(v) for k, v in load_splits(small, show_progress=False).items()}
    timing = time_small_run(lambda path: train_run(small, path, show_progress=False), sizes["train"], sizes["val"])
    n_train = round(cfg.corpus.size * sizes["train"] / sum(sizes.values()))
    n_eval = round(cfg.corpus.size * sizes["val"] / sum(sizes.values()))
    n_test = cfg.corpus.size - n_train - n_eval
    return timing.estimate(cfg.train.epochs, n_train, n_eval) + n_test * timing.eval_per_item


def demo_figures(runs_root: Path) -> dict[str, float | None]:
    """The demo's headline: the Transformer decoder's greedy test CER and its share of looping transcripts."""
    from dllab.engine.rundir import RunDir

    run = RunDir(Path(runs_root) / "asr" / "quick" / "transformer")
    test = (run.read_test_metrics() if run.exists() else None) or {}
    return {"asr.greedy_cer": test.get("cer"), "asr.degenerate": test.get("degenerate")}


def run_experiments(runs_root: Path, quick: bool) -> None:
    """Run `experiments` one after another in this process (see `dllab.report.build` for the planned way)."""
    for task in experiments(runs_root, quick):
        task.fn(**task.kwargs)
