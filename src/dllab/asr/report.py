"""The report's speech-recognition section: loss and similarity curves, the decoder comparison, examples.

Reads run directories under `<runs>/asr/` (written by `dllab asr train`, or by `dllab report --rerun` and
`dllab reproduce`, which put the demo's runs under `<runs>/asr/quick/`); never trains anything itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dllab.report.document import Figure, Paragraph, ReportContext, Section, Table

DECODERS = ("lstm", "transformer", "taylor")
SIMILARITIES = (("jaccard", "Jaccard"), ("cosine", "cosine"), ("damerau_levenshtein", "Damerau-Levenshtein"))
# The course notebook's test similarities as submitted (seeds 000 and 002; LJSpeech, 15 epochs).
# (decoder, report, Jaccard, cosine, Damerau-Levenshtein)
SEED_RESULTS = (
    ("LSTM", "seed 000", 0.7149, 0.8324, 0.5087),
    ("attention", "seed 000", 0.7635, 0.8646, 0.6318),
    ("attention", "seed 002", 0.7657, 0.8661, 0.6344),
)


def submitted_figures(runs_root: Path) -> list:
    """`dllab reproduce`'s LSTM and Transformer decoders (greedy, test split) beside the course notebook's
    similarities as seeds 000 and 002 submitted them."""
    from dllab.engine.rundir import RunDir
    from dllab.report.submitted import Headline

    rows = []
    for decoder, what, pick in (("lstm", "LSTM decoder", "LSTM"), ("transformer", "attention decoder", "attention")):
        run = RunDir(Path(runs_root) / "asr" / decoder)
        test = (run.read_test_metrics() if run.exists() else None) or {}
        ours = f"espeak-ng KJV corpus {test.get('split', 'test')} split" + (
            f", {test['utterances']:,} utterances" if "utterances" in test else "")  # fmt: skip
        for i, (key, label) in enumerate(SIMILARITIES):
            theirs = tuple((who, figures[i]) for seed_decoder, who, *figures in SEED_RESULTS if seed_decoder == pick)
            rows.append(Headline(f"speech recognition, {what}, greedy", f"{label} similarity", test.get(key),
                                 ours, theirs, "LJSpeech test split"))
    return rows


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
                "path": run.path,
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
        "Quick demo runs (the Transformer decoder only, a few minutes of training; `dllab reproduce` trains all "
        "three decoders at the notebook's settings). " if quick else ""
    )
    split = ", ".join(f"{k} {v}" for k, v in sizes.items())
    unit = shown[0]["config"]["config"].get("corpus", {}).get("unit", "clause")
    section.add(
        Paragraph(
            f"{caveat}Corpus `{corpus}` ({split} utterances): public-domain KJV {unit}s spoken by espeak-ng "
            "with several voices, rates and pitches, 22,050 Hz, 80 log-mel bands. " + _recipe(shown[0]["config"])
        )
    )
    section.add(_table(shown))
    section.add(*_lengths(ctx, shown))
    section.add(*_figures(ctx, shown))
    section.add(*_examples(shown))
    section.add(*_speed(root / "bench.json"))
    section.add(*_batching(root / "bench.json"))
    return section


def _recipe(record: dict[str, Any]) -> str:
    """The model and training settings of a run, in a sentence (read from its config.json)."""
    c = record["config"]
    m, o, t = c["model"], c["optim"], c["train"]
    extras = []
    if m.get("subsample", 2) != 2:
        extras.append(f"both convolutions stride ({m['subsample']} frames per position)")
    if m.get("ctc_weight"):
        extras.append(f"an auxiliary CTC head (weight {m['ctc_weight']:g})")
    if c.get("augment", {}).get("freq_masks") or c.get("augment", {}).get("time_masks"):
        extras.append("SpecAugment")
    return (
        f"Encoder: 2 conv layers + {m['encoder_layers']} pre-norm attention blocks (hidden {m['hidden']}, "
        f"{m['heads']} heads){'; ' + ', '.join(extras) if extras else ''}. Training: {t['epochs']} epochs, "
        f"AdamW lr {o['lr']:g}, linear warm-up and decay, label smoothing {c['label_smoothing']:g} with padding "
        "ignored (the notebook also scored padding positions), best epoch by validation CER; test transcripts "
        "are greedy with the attention decoder alone (the notebook's decoding)."
    )


def _batching(path: Path) -> list[Table]:
    """`dllab bench asr`'s batching comparison: frame-budget batches against batches of 16, in one run."""
    import json

    if not path.exists():
        return []
    b = json.loads(path.read_text()).get("batching")
    if not b:
        return []
    base = b["rows"][0]["utt_per_s"]
    rows = [
        [
            row["batches"],
            row["count"],
            row["largest"],
            f"{row['padding']:.0%}",
            f"{row['peak_bytes'] / 2**20:.0f}" if row.get("peak_bytes") is not None else "-",
            f"{row['utt_per_s']:.1f} ({row['utt_per_s'] / base:.2f}x)",
        ]
        for row in b["rows"]
    ]
    return [
        Table(
            ["training batches", "batches", "largest", "padding", "peak MB", "utterances/s"],
            rows,
            f"`dllab bench asr`: one epoch over the same {b['utterances']} training utterances per row, bf16 "
            "autocast, Transformer decoder, measured in one run; padding is the share of padded frames.",
        )
    ]


# -- transcript lengths: the corpus next to LJSpeech, CER by length and mode -------------------------------

# LJSpeech 1.1's normalised transcripts (13,100): mean 99.9 characters, longest 187, 55% over 97 (what the
# course's 99-token cap cuts); of the course's test split (utterances 10480-13100) 59% are over 97.
LJSPEECH_LENGTHS = {"mean": 99.9, "max": 187, "over_97": 0.55, "test_over_97": 0.59}


def _lengths(ctx: ReportContext, runs: list[dict[str, Any]]) -> list[Paragraph | Table | Figure]:
    """The transcript-length blocks: the corpus's lengths against LJSpeech's, test CER by length and mode,
    and how many utterances the training filter left out."""
    return [*_corpus_lengths(ctx, runs), *_cer_by_length(runs), *_left_out(runs)]


def _corpus_lengths(ctx: ReportContext, runs: list[dict[str, Any]]) -> list[Table | Figure]:
    """One row per corpus the runs used (from config.json's `transcripts`), LJSpeech's figures, a histogram."""
    corpora: dict[str, dict[str, Any]] = {}
    for r in runs:
        stats = r["config"].get("transcripts")
        if stats and "test" in stats:
            corpora.setdefault(r["config"].get("corpus", "?"), stats)
    if not corpora:
        return []
    rows = []
    for corpus, stats in corpora.items():
        merged = _merge(stats.values())
        rows.append(
            [
                f"`{Path(corpus).name}`",
                merged["utterances"],
                f"{merged['mean']:.1f}",
                merged["max"],
                f"{merged['over_97']:.0%}",
                f"{stats['test']['over_97']:.0%}",
            ]
        )
    lj = LJSPEECH_LENGTHS
    rows.append(["LJSpeech 1.1", 13_100, f"{lj['mean']:.1f}", lj["max"], f"{lj['over_97']:.0%}",
                 f"{lj['test_over_97']:.0%}"])  # fmt: skip
    table = Table(
        ["corpus", "utterances", "mean characters", "longest", "over 97", "test split over 97"],
        rows,
        "Transcript lengths in characters. Over 97 characters a transcript does not fit the course notebook's "
        "99 tokens (SOS and EOS included): course mode cuts it, full mode keeps it whole. LJSpeech's test split "
        "is the course's (utterances 10480-13100).",
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for corpus, stats in corpora.items():
        hist = _merge(stats.values())["histogram"]
        total = sum(hist)
        ax.bar([10 * i + 5 for i in range(len(hist))], [h / total for h in hist], width=9, alpha=0.6,
               label=f"{Path(corpus).name} (mean {_merge(stats.values())['mean']:.0f})")  # fmt: skip
    ax.axvline(lj["mean"], color="k", ls="--", lw=1, label=f"LJSpeech mean {lj['mean']}")
    ax.axvline(lj["max"], color="k", ls=":", lw=1, label=f"LJSpeech longest {lj['max']}")
    ax.axvline(97.5, color="r", lw=1, label="course cap (97 characters)")
    ax.set(xlabel="transcript characters", ylabel="share of utterances", title="Transcript lengths")
    ax.legend(fontsize=7)
    figure = ctx.save_figure(fig, "asr_lengths.png", "Transcript lengths of the corpus (10-character bins) "
                             "against LJSpeech's mean and longest and the course's cap.")  # fmt: skip
    return [table, figure]


def _merge(splits) -> dict[str, Any]:
    """The length statistics of several splits (`experiment.transcript_lengths` records) as one."""
    splits = list(splits)
    n = sum(s["utterances"] for s in splits)
    width = max(len(s["histogram"]) for s in splits)
    return {
        "utterances": n,
        "mean": sum(s["mean"] * s["utterances"] for s in splits) / max(n, 1),
        "max": max(s["max"] for s in splits),
        "over_97": sum(s["over_97"] * s["utterances"] for s in splits) / max(n, 1),
        "histogram": [sum(s["histogram"][i] for s in splits if i < len(s["histogram"])) for i in range(width)],
    }


def _test_results(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Every test summary of a run: greedy (test_metrics.json) and beam / joint CTC (test_metrics_*.json)."""
    import json

    out = [run["test"]] if run["test"] else []
    for path in sorted(Path(run["path"]).glob("test_metrics_*.json")):
        out.append(json.loads(path.read_text()))
    return [t for t in out if "by_length" in t]  # summaries written before lengths were recorded have none


def _cer_by_length(runs: list[dict[str, Any]]) -> list[Table]:
    rows = []
    for r in runs:
        for t in _test_results(r):
            groups = {g["lengths"]: g for g in t["by_length"]}

            def cell(name: str, groups=groups) -> str:
                g = groups.get(name)
                return f"{g['cer']:.4f} ({g['utterances']})" if g and g["utterances"] else "-"

            rows.append(
                [
                    r["name"],
                    t["mode"],
                    t["decoding"],
                    f"{t['utterances']} of {t['of']}",
                    _fmt(t["cer"]),
                    cell("<= 50"),
                    cell("51-100"),
                    cell("> 100"),
                    _fmt(t["cer_whole"]),
                ]
            )
    if not rows:
        return []
    return [
        Table(
            ["run", "mode", "decoding", "test utterances scored", "CER", "<= 50 chars", "51-100", "> 100",
             "CER vs whole transcripts"],  # fmt: skip
            rows,
            "Test CER by transcript length (characters of the whole transcript; utterances in brackets) and by "
            "mode. No test utterance is ever skipped. In course mode the references are cut to 97 characters as "
            "the notebook scored them; the last column scores the same transcripts against the whole "
            "transcripts (in full mode the two agree).",
        )
    ]


def _left_out(runs: list[dict[str, Any]]) -> list[Paragraph]:
    lines = []
    for r in runs:
        if "left_out_of_training" not in r["config"]:
            continue
        n = r["config"]["left_out_of_training"]
        limit = r["config"]["config"]["data"].get("train_max_chars", 0)
        total = r["config"].get("sizes", {}).get("train", "?")
        lines.append(
            f"`{r['name']}`: {n} of {total} training utterances left out by `--data.train_max_chars {limit}`"
            if n
            else f"`{r['name']}`: all {total} training utterances used"
        )
    if not lines:
        return []
    return [Paragraph("Training filter (validation and test always keep every utterance): " + "; ".join(lines) + ".")]


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
        if "dllab_bf16_subsample4_utt_per_s" in t:
            rate = t["dllab_bf16_subsample4_utt_per_s"]
            rows.append(
                [
                    "training, the same with --model.subsample 4 (dllab)",
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
    for decoder, who, jac, cos, dl in SEED_RESULTS:
        label = f"course notebook, {decoder} decoder ({who})"
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
    """The CPU-demo setting, sized to show a working model in about 3 minutes on one core: the default
    clause corpus (2,400 utterances, 1,800 for training), 12 epochs, the first convolution striding too
    (`--model.subsample 4`), fixed sinusoidal decoder positions, a CTC head (weight 0.3) and lr 2e-3, bfloat16
    where the CPU has AMX. Tuned on the validation split (greedy CER 0.26 at 12-16 epochs; lr 3e-3 and 4 or 8
    epochs were worse)."""
    from dllab.asr.experiment import ASRConfig

    cfg = ASRConfig()
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, subsample=4, positions="sinusoidal", ctc_weight=0.3),
        optim=dataclasses.replace(cfg.optim, lr=0.002, warmup_steps=100),
        train=dataclasses.replace(cfg.train, epochs=12, bucket=20, precision="auto"),
    )


# The demo spends its minutes on the Transformer decoder, the headline; `dllab reproduce` trains all three.
QUICK_DECODERS = ("transformer",)
# Greedy decoding with the CTC head's prefix scores at this weight: chosen on the demo model's validation split
# (greedy CER 0.166 at 0.3, 0.140 at 0.5, 0.148 at 0.7).
CTC_DECODE_WEIGHT = 0.5


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
    summary = run.read_test_metrics() if run.is_complete() else None
    if summary is None:
        summary = train_run(cfg, run_path, resume=run.exists(), show_progress=False)
    if cfg.model.ctc_weight:  # also greedy with the CTC head's prefix scores, the transcripts the demo shows
        from dllab.asr.experiment import metrics_path, test_run
        from dllab.seq2seq.decoding import GreedyDecoder

        if not metrics_path(run_path, "test", GreedyDecoder(), CTC_DECODE_WEIGHT).exists():
            test_run(run_path, ctc_weight=CTC_DECODE_WEIGHT)
    return summary


def experiments(runs_root: Path, quick: bool, scale: float = 1.0, overrides: tuple[str, ...] = ()) -> list:
    """The corpus (built once), then each decoder trained and tested; estimated by timing a small corpus's
    synthesis and one epoch of each decoder on it here."""
    from dllab.engine.plan import Task

    root = Path(runs_root) / "asr" / ("quick" if quick else "")
    first = _config(DECODERS[0], quick, scale, overrides)
    synth = _estimate_corpus(first)
    tasks = [Task("asr/corpus", prepare_corpus, {"cfg": first}, seconds=synth, threads=2)]
    for decoder in QUICK_DECODERS if quick else DECODERS:
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
    """The demo's headline, the Transformer decoder on the test split: greedy CER with the attention decoder
    alone (the notebook's decoding), greedy CER with the CTC head's prefix scores (the transcripts the demo
    shows), and the share of those transcripts looping on a repeated word."""
    import json

    from dllab.asr.experiment import metrics_path
    from dllab.engine.rundir import RunDir
    from dllab.seq2seq.decoding import GreedyDecoder

    run = RunDir(Path(runs_root) / "asr" / "quick" / "transformer")
    test = (run.read_test_metrics() if run.exists() else None) or {}
    joint_path = metrics_path(run.path, "test", GreedyDecoder(), CTC_DECODE_WEIGHT)
    joint = json.loads(joint_path.read_text()) if joint_path.exists() else {}
    shown = joint or test
    return {
        "asr.greedy_cer": test.get("cer"),
        "asr.greedy_ctc_cer": joint.get("cer"),
        "asr.degenerate": shown.get("degenerate"),
        "asr.degenerate_attention_only": test.get("degenerate"),
    }
