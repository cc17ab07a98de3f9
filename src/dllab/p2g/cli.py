"""`dllab p2g ...`: train the phoneme-to-spelling model, decode a split with greedy / nucleus / beam search,
spell words from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = {
    "train": "dllab p2g train --attn --data cmudict --train.epochs 2 --data.limit_train 2000 --name demo",
    "test": "dllab p2g test runs/p2g/demo --top-p 0.8 --k 3",
    "spell": 'dllab p2g spell runs/p2g/demo "t͡ʃ æ p l ə t" "s ɝ s i s"',
}


def add_commands(sub) -> None:
    from dllab.config import describe
    from dllab.engine.options import add_run_arguments
    from dllab.p2g.config import P2GConfig

    p2g = sub.add_parser(
        "p2g",
        help="phoneme-to-spelling seq2seq (2024-25 Q3)",
        description="Spell English words from their IPA pronunciation with an LSTM encoder-decoder, with or "
        "without Bahdanau attention (2024-25 homework 2, question 3).",
    )
    psub = p2g.add_subparsers(dest="p2g_command", metavar="<command>")
    p2g.set_defaults(func=lambda args: (p2g.print_help(), 2)[1])

    train = psub.add_parser(
        "train",
        help="train one model into runs/p2g/<name>/",
        description="Teacher-forced training with the homework's defaults (Adam lr 0.003, batch 64, "
        "20 epochs, hidden 128, dropout 0.3); greedy validation CER after every epoch "
        "picks the best checkpoint.",
        epilog=f"example:\n  {EXAMPLES['train']}\n\n"
        "config overrides (--key value or --key=value) and defaults:\n" + describe(P2GConfig()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--attn", action="store_true", help="Bahdanau attention in the decoder")
    train.add_argument(
        "--data",
        choices=["course", "cmudict", "sigmorphon"],
        default=None,
        help="course TSV files (--data-dir), the embedded CMUdict set (default), or SIGMORPHON 2021 Task 1 "
        "(--language)",
    )
    train.add_argument("--language", default=None,
                       help="a SIGMORPHON 2021 language (eng_us, kor, ady, ...): implies --data sigmorphon")
    train.add_argument("--direction", choices=["p2g", "g2p"], default=None,
                       help="p2g: phones -> spelling (default); g2p: spelling -> phones")
    train.add_argument("--preset", choices=["auto", "none", "low", "medium", "high"], default=None,
                       help="SIGMORPHON per-size settings (see dllab.p2g.config.PRESETS); auto (the default with "
                       "--language) picks by the training set's size; your overrides win")
    train.add_argument(
        "--data-dir",
        default=None,
        help="folder with train.tsv, valid.tsv [, test.tsv] (default ../shared/data/wikipron-p2g)",
    )
    train.add_argument(
        "--skip-bad-lines", action="store_true", help="skip malformed TSV lines, report the count"
    )
    add_run_arguments(train, "run name (default: <data>-attn or <data>-noattn)")
    train.set_defaults(func=cmd_train, overrides=True)

    test = psub.add_parser(
        "test",
        help="decode the test split with the best checkpoint; metrics go into the run directory",
        description="Greedy by default; --top-p P [--k K] for nucleus sampling (CER / WER of the first "
        "sample, WER@K over K samples); --beam N for beam search. Adds an entry to <run>/test_metrics.json "
        "and writes <run>/predictions-<strategy>.tsv. "
        "The course hands out no test file: its validation file is used.",
        epilog=f"examples:\n  dllab p2g test runs/p2g/demo\n  {EXAMPLES['test']}\n"
        "  dllab p2g test runs/p2g/demo --beam 5\n"
        "  dllab p2g test runs/p2g/demo --beam 5 --rescore runs/p2g/demo-r2l   # rerank with a right-to-left run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("run", type=Path, help="a p2g run directory")
    test.add_argument("--top-p", type=float, default=None, help="nucleus sampling with this p in (0, 1]")
    test.add_argument("--k", type=int, default=1, help="samples per word for WER@k (with --top-p)")
    test.add_argument("--beam", type=int, default=None, help="beam search with this beam size")
    test.add_argument("--split", choices=["test", "valid"], default="test", help="which split (default test)")
    test.add_argument("--seed", type=int, default=0, help="sampling seed")
    test.add_argument("--ensemble", type=Path, nargs="+", default=None, metavar="RUN",
                      help="further runs on the same data whose models join this one's (mean distribution)")
    test.add_argument("--rescore", type=Path, nargs="+", default=None, metavar="RUN",
                      help="runs on the same data in the other direction (--data.reverse) or of another --arch: "
                           "each kind's beam joins this run's, and all of them rerank the pooled n best")
    test.add_argument("--file", type=Path, default=None,
                      help="score this file instead of a split (a SIGMORPHON run: the task's <spelling>\\t<phones>; "
                      "a G2P run also decodes a covered .txt file of spellings, unscored); the outputs go to "
                      "<run>/predictions-<strategy>-<file name without .tsv>.tsv in the same two columns")
    test.set_defaults(func=cmd_test)

    sweep = psub.add_parser(
        "sweep",
        help="SIGMORPHON 2021 Task 1: train and score every language of a subtask, in parallel, resumable",
        description="Trains --seeds members per language (the preset for its training-set size, your "
        "overrides on top) as parallel one-thread processes, then decodes each language's dev split with its "
        "members together. Finished runs are skipped, interrupted ones resumed. Writes "
        "<runs>/<direction>/<language>/results.json and predictions-dev.tsv (the task's two columns), and "
        "prints the per-language WER next to the baseline's and the macro average per subtask.",
        epilog="examples:\n  dllab p2g sweep low --direction g2p --runs runs/sigmorphon\n"
        "  dllab p2g sweep all --direction both --seeds 1 2 3 --beam 5\n"
        "  dllab p2g sweep kor,bul --direction p2g --train.epochs 10\n"
        "  dllab p2g sweep low --runs runs/sigmorphon --test-dir 2021-task1/data   # score the test splits",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("languages", help="high, medium, low, all, or comma-separated language codes")
    sweep.add_argument("--direction", choices=["g2p", "p2g", "both"], default="g2p", help="default g2p")
    sweep.add_argument("--runs", type=Path, default=Path("runs/sigmorphon"), help="default runs/sigmorphon")
    sweep.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="one member per seed (default: the preset's, see dllab.p2g.presets)")
    sweep.add_argument("--beam", type=int, default=None, help="beam size for the dev decoding (default: the preset's)")
    sweep.add_argument("--epochs-scale", type=float, default=1.0,
                       help="scale every preset's epochs (0.5: each language trains half as long)")
    sweep.add_argument("--r2l-seeds", type=int, nargs="*", default=None,
                       help="right-to-left members that rerank the beam (default: the preset's, none with --seeds)")
    sweep.add_argument("--preset", choices=["auto", "none", "low", "medium", "high"], default="auto",
                       help="per-size settings (default auto: by training-set size)")
    sweep.add_argument("--workers", type=int, default=0, help="parallel processes (default: 2 per core, at most)")
    sweep.add_argument("--data-dir", default=None,
                       help="the task's data folder (default ../shared/data/sigmorphon2021)")
    sweep.add_argument("--test-dir", default=None,
                       help="a folder with each language's test file (<subtask>/<lang>_test.tsv as in the task's "
                            "data folder, or <lang>_test.tsv): scored with the same members, beam and reranking "
                            "as dev, into results.json and predictions-test.tsv (finished members are not trained "
                            "again). A covered <lang>_test.txt (spellings only) is decoded into "
                            "predictions-test-covered.tsv, not scored, and only for --direction g2p")
    sweep.set_defaults(func=cmd_sweep, overrides=True)

    spell = psub.add_parser(
        "spell",
        help="spell space-separated IPA symbols with a trained run",
        description="Spell each word (its IPA symbols, space-separated; a g2p run reads spellings) with the "
        "run's best checkpoint and print `<word>\t<spelling>`. A symbol the run never saw in training is read "
        "as the unknown token, with a warning on stderr naming it and the words (argument number, or "
        "file:line) it occurs in; --strict refuses such words instead (exit 2). No word at all (no argument, "
        "an empty file, blank lines only) is an error.",
        epilog=f"examples:\n  {EXAMPLES['spell']}\n  dllab p2g spell runs/p2g/demo --file words.txt --strict\n"
        "  printf 't͡ʃ æ p\\nb æ t\\n' | dllab p2g spell runs/p2g/demo --file -",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    spell.add_argument("run", type=Path, help="a p2g run directory")
    spell.add_argument("phonemes", nargs="*", help="one word's IPA symbols, space-separated, per argument")
    spell.add_argument("--file", default=None,
                       help="also spell this file's words, one per line ('-': standard input; blank lines skipped)")
    spell.add_argument("--strict", action="store_true",
                       help="symbols the run never saw in training are an error, not a warning")
    spell.add_argument("--beam", type=int, default=None, help="beam search with this beam size")
    spell.set_defaults(func=cmd_spell)


def cmd_train(args) -> int:
    from dllab.config import apply_overrides, replace_path
    from dllab.engine.logs import setup_logging
    from dllab.p2g.config import P2GConfig
    from dllab.p2g.experiment import default_run_name, run_path, train

    setup_logging()
    cfg = apply_overrides(P2GConfig(), args.overrides)
    if args.attn:
        cfg = replace_path(cfg, "model.attn", True)
    if args.data:
        cfg = replace_path(cfg, "data.source", args.data)
    if args.language:
        cfg = replace_path(replace_path(cfg, "data.language", args.language), "data.source", "sigmorphon")
    if args.direction:
        cfg = replace_path(cfg, "data.direction", args.direction)
    if cfg.data.source == "sigmorphon" and (args.preset or "auto") != "none":
        from dllab.p2g.presets import apply_preset

        cfg = apply_preset(cfg, args.preset or "auto", args.overrides)
    if args.data_dir:
        cfg = replace_path(replace_path(cfg, "data.dir", args.data_dir), "data.source", args.data or "course")
    if args.skip_bad_lines:
        cfg = replace_path(cfg, "data.skip_bad_lines", True)
    run = run_path(args.runs, default_run_name(cfg) if args.name is None else args.name)
    result = train(cfg, run, resume=args.resume, overwrite=args.overwrite)
    from dllab.engine import distributed

    if not distributed.info().is_main:  # under torchrun, rank 0 reports
        return 0
    best = next(r for r in result.history if r["epoch"] == result.best_epoch)
    print(
        f"{run.path}: best validation CER {best['val_cer']:.4f}, WER {best['val_wer']:.4f} at epoch "
        f"{result.best_epoch}/{cfg.train.epochs} (greedy). Next: dllab p2g test {run.path}"
    )
    return 0


def cmd_test(args) -> int:
    from dllab.engine.logs import setup_logging
    from dllab.engine.rundir import RunDir
    from dllab.p2g.experiment import evaluate

    setup_logging()
    ensemble = [RunDir(p) for p in args.ensemble] if args.ensemble else None
    rescore = [RunDir(p) for p in args.rescore] if args.rescore else None
    result = evaluate(RunDir(args.run).claim(), args.top_p, args.beam, args.k, args.split, args.seed, ensemble,
                      rescore, args.file)
    for key, m in result.items():
        if m.get("scored") is False:  # a covered test file: outputs written, nothing to score them against
            print(f"{args.run} {key} on {m['split']} ({m['words']} words): no gold column to score; outputs in "
                  f"{RunDir(args.run).path / f'predictions-{key}.tsv'}  [{m['words_per_second']:.0f} words/s]")
            continue
        extra = "".join(f", {name.upper()} {m[name]:.4f}" for name in m if name.startswith("wer@"))
        print(
            f"{args.run} {key} on {m['split']} ({m['words']} words): CER {m['cer']:.4f}, WER {m['wer']:.4f}"
            f"{extra}  [{m['words_per_second']:.0f} words/s]"
        )
    return 0


def cmd_sweep(args) -> int:
    from dllab.config import apply_overrides
    from dllab.data.sigmorphon import select_languages
    from dllab.engine.logs import setup_logging
    from dllab.p2g.config import P2GConfig
    from dllab.p2g.sigmorphon import print_results, run_sweep

    apply_overrides(P2GConfig(), args.overrides)  # bad options are refused before any data is read
    setup_logging()
    languages = select_languages(args.languages)
    directions = ["g2p", "p2g"] if args.direction == "both" else [args.direction]
    run_sweep(languages, directions, args.runs, args.seeds, args.preset, args.overrides, args.beam, args.workers,
              args.data_dir, args.r2l_seeds, args.epochs_scale, args.test_dir)  # fmt: skip
    print_results(args.runs, languages)
    return 0


def cmd_spell(args) -> int:
    import sys

    from dllab.engine.rundir import RunDir
    from dllab.errors import UserError
    from dllab.p2g.data import read_words, symbols_for, unknown_by_symbol
    from dllab.p2g.decoding import make_strategy, spell
    from dllab.p2g.experiment import load_run

    inputs = [(f"word {i}", text.strip()) for i, text in enumerate(args.phonemes, 1)]
    for label, text in inputs:
        if not text:
            raise UserError(f"{label} is blank: give each word's symbols, space-separated")
    if args.file is not None:
        inputs += read_words(args.file)
    if not inputs:
        raise UserError('no words to spell: give each word\'s symbols as an argument ("t͡ʃ æ p") or --file FILE '
                        "(- reads standard input)")
    strategy, _ = make_strategy(None, args.beam, 0)
    cfg, model, vocabs = load_run(RunDir(args.run))
    symbols = symbols_for(cfg.data)  # a g2p run reads spellings; a right-to-left run's output comes out in order
    words = [symbols.source(text) for _, text in inputs]
    unknown = unknown_by_symbol(words, vocabs[0])
    if unknown:
        what = "phoneme" if symbols.src_units == "phones" else "spelling symbol"
        listing = _unknown_listing(unknown, [label for label, _ in inputs])
        if args.strict:
            raise UserError(f"{len(unknown)} {what}(s) that {args.run} never saw in training (--strict):\n"
                            f"{listing}")  # fmt: skip
        print(f"dllab: warning: {len(unknown)} {what}(s) that {args.run} never saw in training, read as the "
              f"unknown token (--strict refuses them):\n{listing}", file=sys.stderr)  # fmt: skip
    outputs = spell(model, words, vocabs, strategy, cfg.decode, symbols=symbols)
    for (_, text), out in zip(inputs, outputs, strict=True):
        print(f"{text}\t{out[0]}")
    return 0


def _unknown_listing(unknown: dict[str, list[int]], labels: list[str], symbols: int = 20, places: int = 5) -> str:
    """One line per unknown symbol (the first `symbols` of them): the symbol and the first `places` words
    holding it."""
    lines = []
    for symbol, where in list(unknown.items())[:symbols]:
        more = f" and {len(where) - places} more" if len(where) > places else ""
        lines.append(f"  {symbol!r} in {', '.join(labels[i] for i in where[:places])}{more}")
    if len(unknown) > symbols:
        lines.append(f"  and {len(unknown) - symbols} more")
    return "\n".join(lines)
