"""`dllab asr ...`: build the embedded corpus, train a recogniser with one of three decoders, test a run."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = {
    "build-corpus": "dllab asr build-corpus --corpus.size 2400",
    "train": "dllab asr train --decoder transformer --epochs 15 --name transformer",
    "test": "dllab asr test runs/asr/transformer --beam 4",
}


def _parser(sub, name: str, help: str, description: str, extra: str = ""):
    epilog = f"example:\n  {EXAMPLES[name]}" + (f"\n\n{extra}" if extra else "")
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_commands(sub) -> None:
    from dllab.asr.config import ASRConfig
    from dllab.config import describe
    from dllab.engine.options import add_run_arguments

    asr = sub.add_parser(
        "asr",
        help="speech recognition: log-mel -> Transformer encoder -> decoders (2023-24 Q3)",
        description="Speech recognition on LJSpeech or on an embedded espeak-ng corpus: the "
        "course notebook's Transformer encoder with an LSTM, Transformer (KV cache) or Taylor "
        "linear-attention decoder.",
    )
    asub = asr.add_subparsers(dest="asr_command", metavar="<command>")
    asr.set_defaults(func=lambda args: (asr.print_help(), 2)[1])
    overrides_help = (
        "config overrides: --key=value or --key value, by dotted path (--optim.lr=0.001) or by a "
        "unique leaf name.\nKeys and their defaults:\n" + describe(ASRConfig())
    )

    build = _parser(
        asub,
        "build-corpus",
        "synthesise the embedded espeak-ng corpus into the cache (once)",
        "Speak public-domain KJV clauses with espeak-ng (several voices, rates, pitches) into an "
        "LJSpeech-layout folder under $DLLAB_CACHE (default ~/.cache/dllab) and compute its "
        "log-mel features; later runs reuse both.",
        overrides_help,
    )
    build.set_defaults(func=cmd_build_corpus, overrides=True)

    train = _parser(
        asub,
        "train",
        "train one recogniser into runs/asr/<name>/",
        "Train with AdamW (lr 1e-3, linear warm-up then decay), label smoothing 0.1, greedy "
        "validation CER / WER / similarities per epoch; then decode the test split.",
        overrides_help,
    )
    train.add_argument(
        "--decoder",
        choices=["lstm", "transformer", "taylor"],
        default="transformer",
        help="decoder kind (default transformer)",
    )
    add_run_arguments(train, "run name (default: the decoder kind)")
    train.set_defaults(func=cmd_train, overrides=True)

    test = _parser(
        asub,
        "test",
        "decode a run's test split with its best checkpoint",
        "Greedy (or beam-search) transcripts of the test split; prints CER, WER, the three "
        "similarities and examples, and writes test_metrics.json into the run.",
    )
    test.add_argument("run", type=Path, help="a run directory (runs/asr/<name>)")
    test.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy, the default)")
    test.add_argument("--top-p", type=float, default=None, help="nucleus sampling with this top-p instead")
    test.add_argument(
        "--limit", type=int, default=0, help="decode only the first N test utterances (0 = all)"
    )
    test.add_argument("--seed", type=int, default=0, help="seed of nucleus sampling (default 0)")
    test.add_argument("--examples", type=int, default=5, help="example transcriptions to print")
    test.set_defaults(func=cmd_test)


def _config(args):
    import dataclasses

    from dllab.asr.config import ASRConfig
    from dllab.config import apply_overrides

    cfg = apply_overrides(ASRConfig(), args.overrides)
    decoder = getattr(args, "decoder", None)
    if decoder is not None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, decoder=decoder))
    return cfg


def cmd_build_corpus(args) -> int:
    from dllab.asr.experiment import corpus_root, load_splits
    from dllab.engine.logs import setup_logging

    setup_logging()
    cfg = _config(args)
    splits = load_splits(cfg)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
    hours = (
        sum(float(v.lengths().sum()) for v in splits.values())
        * cfg.features.hop_length
        / cfg.features.sample_rate
    )
    print(f"{corpus_root(cfg, False)}: {sizes} utterances, {hours / 3600:.2f} h of audio (features cached)")
    return 0


def cmd_train(args) -> int:
    from dllab.asr.experiment import train_run
    from dllab.engine.logs import setup_logging
    from dllab.engine.rundir import RunDir

    setup_logging()
    cfg = _config(args)
    run_path = RunDir.named(args.runs, "asr", cfg.model.decoder if args.name is None else args.name).path
    summary = train_run(cfg, run_path, resume=args.resume, overwrite=args.overwrite)
    if not summary:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    _print_summary(run_path, summary, 3)
    return 0


def cmd_test(args) -> int:
    import torch

    from dllab.asr.experiment import test_run
    from dllab.errors import UserError
    from dllab.seq2seq.decoding import BeamSearchDecoder, GreedyDecoder, NucleusSampler

    if args.beam < 1:
        raise UserError(f"--beam: must be >= 1, got {args.beam}")
    if args.top_p is not None:
        if not 0.0 < args.top_p <= 1.0:
            raise UserError(f"--top-p: must be in (0, 1], got {args.top_p}")
        strategy = NucleusSampler(args.top_p, torch.Generator().manual_seed(args.seed))
    else:
        strategy = GreedyDecoder() if args.beam == 1 else BeamSearchDecoder(args.beam)
    if args.limit < 0:
        raise UserError(f"--limit: must be >= 0, got {args.limit}")
    summary = test_run(args.run, strategy=strategy, limit=args.limit)
    _print_summary(args.run, summary, args.examples)
    return 0


def _print_summary(run_path: Path, s: dict, examples: int) -> None:
    print(
        f"{run_path}: test ({s['utterances']} utterances, {s['decoding']}) "
        f"CER {s['cer']:.4f}  WER {s['wer']:.4f}  "
        f"Jaccard {s['jaccard']:.4f}  cosine {s['cosine']:.4f}  DL {s['damerau_levenshtein']:.4f}  "
        f"loss {s['loss']:.4f}  ({s['decode_utterances_per_second']:.1f} utterances/s decoded)"
    )
    for ex in s["examples"][:examples]:
        print(f"  ref: {ex['reference']}\n  hyp: {ex['hypothesis']}")
