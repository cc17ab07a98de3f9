"""Phoneme-to-spelling experiments: train a speller into a run directory and evaluate it on a split.

    train(cfg, run)                         teacher-forced training through dllab.engine.loop; validation
                                            CER / WER of greedy decoding after every epoch (monitor val_cer
                                            or, with --select wer, val_wer)
    evaluate(run, strategy, k, split, file) decode a split (or any file) with the best checkpoint (or an
                                            ensemble, or rescored by right-to-left runs); write the metrics
                                            into run/test_metrics.json and the outputs into
                                            run/predictions-*.tsv
    score(hyps, golds, data_cfg)            CER / WER as the course counts them, or as SIGMORPHON 2021 does
    load_run(run)                           a run's config, best model (eval mode) and vocabularies

The pieces live beside it: data and vocabularies in `dllab.p2g.data`, the model in `dllab.p2g.model`,
spelling, n-best lists and rescoring in `dllab.p2g.decoding`, the torch-free configs in `dllab.p2g.config`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from dllab.engine import FitResult, RunDir, distributed, fit, load_best, seed_everything
from dllab.engine.loop import average_checkpoints, top_checkpoints
from dllab.errors import UserError
from dllab.io import atomic_write_json, atomic_write_text
from dllab.p2g.config import DataConfig, P2GConfig
from dllab.p2g.data import build_data, orient, read_vocabs, symbols_for, write_vocabs
from dllab.p2g.decoding import Group, make_strategy, rerank_pooled, spell, together
from dllab.p2g.model import LSTMSeq2Seq, build_model, sequence_loss
from dllab.seq2seq.decoding import BeamSearchDecoder, GreedyDecoder
from dllab.seq2seq.metrics import character_error_rate, single_word_error_rate, token_error_rate, wer_at_k
from dllab.seq2seq.vocab import Vocab

log = logging.getLogger(__name__)

# -- training ----------------------------------------------------------------------------------------------


def check_config(cfg: P2GConfig) -> None:
    """Refuse settings the model or loss cannot take, naming the option, before any data is read."""
    if cfg.model.hidden < 2 or cfg.model.hidden % 2:
        raise UserError(f"--model.hidden: expected an even size >= 2 (two encoder directions), got {cfg.model.hidden}")
    if cfg.model.layers < 1:
        raise UserError(f"--model.layers: expected at least 1, got {cfg.model.layers}")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise UserError(f"--model.dropout: expected a value in [0, 1), got {cfg.model.dropout}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise UserError(f"--label_smoothing: expected a value in [0, 1), got {cfg.label_smoothing}")
    t = cfg.transformer
    if cfg.arch == "transformer" and (t.d_model < 2 or t.d_model % 2 or t.heads < 1 or t.d_model % t.heads):
        raise UserError(f"--transformer.d_model: expected an even multiple of --transformer.heads ({t.heads}), "
                        f"got {t.d_model}")  # fmt: skip
    if cfg.arch == "transformer" and min(t.encoder_layers, t.decoder_layers) < 1:
        raise UserError("--transformer.encoder_layers / decoder_layers: expected at least 1")
    if not 0.0 <= t.dropout < 1.0:
        raise UserError(f"--transformer.dropout: expected a value in [0, 1), got {t.dropout}")
    if cfg.arch == "transducer":
        if cfg.label_smoothing:
            raise UserError("--label_smoothing: not with --arch transducer (its masked actions would take a share)")
        if cfg.model.layers != 1:
            raise UserError("--model.layers: the transducer has one encoder and one decoder layer")
    elif cfg.rollin:
        raise UserError(f"--rollin: imitation learning is for --arch transducer, not {cfg.arch}")
    if cfg.average < 0:
        raise UserError(f"--average: expected 0 (off) or a number of checkpoints, got {cfg.average}")


def score(hyps: list[str], golds: list[str], data_cfg: DataConfig) -> dict[str, float]:
    """{"cer", "wer"} of output texts against gold texts, both as fractions.

    The course (and CMUdict) data: CER over characters, WER = share of spellings not exactly the gold.
    SIGMORPHON data, as the task scores: WER = share of words whose output, split on whitespace, differs
    from the gold's; "cer" is the edit distance over the reference length in phones (the PER) for g2p, in
    grapheme clusters for p2g, whatever units the model spells in."""
    if data_cfg.source != "sigmorphon":
        return {"cer": character_error_rate(hyps, golds), "wer": single_word_error_rate(hyps, golds)}
    from dllab.data.sigmorphon import split_units

    units = "phones" if data_cfg.direction == "g2p" else "graphemes"
    return {
        "cer": token_error_rate([split_units(h, units) for h in hyps], [split_units(g, units) for g in golds]),
        "wer": single_word_error_rate([tuple(h.split()) for h in hyps], [tuple(g.split()) for g in golds]),
    }


def loss_fn(
    model: LSTMSeq2Seq, batch: tuple[Tensor, Tensor, Tensor, Tensor], label_smoothing: float = 0.0
) -> Tensor:
    src, src_len, tgt, _ = batch  # tgt (B, T) = SOS y_1 ... y_n EOS PAD ...
    return sequence_loss(model(src, src_len, tgt[:, :-1]), tgt[:, 1:], label_smoothing)


def train(
    cfg: P2GConfig, run: RunDir, resume: bool = False, overwrite: bool = False, show_progress: bool = True
) -> FitResult:
    check_config(cfg)
    data = build_data(cfg.data, actions=cfg.arch == "transducer")
    if distributed.setup().is_main:  # under torchrun, rank 0 alone writes the run directory
        run.prepare("p2g", cfg, resume, overwrite, extra={"data": data.info})
        write_vocabs(run, data.src_vocab, data.tgt_vocab)
        if data.aligner is not None:
            atomic_write_json(run.path / "aligner.json", data.aligner.to_json())
    distributed.barrier()
    seed_everything(cfg.train.seed)
    model = build_model(cfg, data.src_vocab, data.tgt_vocab)
    log.info(
        "%s: %d train / %d valid words, %d source and %d target symbols, %s parameters",
        run.path, len(data.train), len(data.valid_gold), len(data.src_vocab), len(data.tgt_vocab),
        f"{sum(p.numel() for p in model.parameters()):,}",
    )  # fmt: skip

    def evaluate_fn(model: LSTMSeq2Seq) -> dict[str, float]:
        # Every rank decodes the whole validation set (it takes seconds), so all get the same numbers.
        hyps = [h[0] for h in spell(model, data.valid_src, (data.src_vocab, data.tgt_vocab),
                                    GreedyDecoder(), cfg.decode, symbols=data.symbols)]  # fmt: skip
        return {f"val_{k}": v for k, v in score(hyps, data.valid_gold, cfg.data).items()}

    loss = functools.partial(loss_fn, label_smoothing=cfg.label_smoothing)
    if cfg.rollin:
        from dllab.p2g.imitation import Expert, RollIn

        if distributed.setup().enabled:
            raise UserError("--rollin: imitation learning runs in one process, not under torchrun")
        expert = Expert(data.aligner, data.src_vocab, data.tgt_vocab, cfg.data.reverse)
        per_epoch = math.ceil(len(data.train) / cfg.train.batch_size)
        behind = len(run.read_metrics()) if resume and run.last_checkpoint.exists() else 0  # epochs done
        loss = RollIn(expert, cfg.rollin, per_epoch * cfg.train.epochs, per_epoch * behind)
    return fit(
        model, data.train, loss, evaluate_fn,
        cfg.optim, cfg.train, run,
        monitor=f"val_{cfg.select}", mode="min", resume=resume, show_progress=show_progress,
        keep_top=cfg.average if cfg.average > 1 else 0,
    )  # fmt: skip


# -- evaluation --------------------------------------------------------------------------------------------


def load_run(run: RunDir, device: str = "cpu") -> tuple[P2GConfig, LSTMSeq2Seq, tuple[Vocab, Vocab]]:
    """The run's config, its best checkpoint's model in eval mode (with --average N, the mean of the N best
    checkpoints' weights), and its (source, target) vocabularies."""
    cfg = run.read_config(P2GConfig)
    vocabs = read_vocabs(run)
    model = build_model(cfg, *vocabs)
    kept = top_checkpoints(run) if cfg.average > 1 else []
    if kept:
        model.load_state_dict(average_checkpoints(kept))
    else:
        load_best(model, run, device)
    if cfg.arch == "transducer":  # what scores a given output (rerank_both_directions) needs
        from dllab.p2g.align import ChunkAligner

        try:
            model.aligner = ChunkAligner.from_json(json.loads((run.path / "aligner.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{run.path / 'aligner.json'}: a transducer run's alignment table cannot be read "
                            f"({err}); train the run again") from err  # fmt: skip
    return cfg, model.to(device).eval(), vocabs


def _load_member(other: RunDir, run: RunDir, vocabs: tuple[Vocab, Vocab]) -> tuple[P2GConfig, LSTMSeq2Seq]:
    """Another run whose model joins `run`'s (ensemble or rescoring): it must share `run`'s vocabularies."""
    other_cfg, member, other_vocabs = load_run(other)
    if other_vocabs != vocabs:
        raise UserError(f"{other.path}: its vocabularies differ from {run.path}'s (other training data?)")
    return other_cfg, member


def _check_same_data(other: RunDir, other_cfg: P2GConfig, other_vocabs: tuple[Vocab, Vocab], run: RunDir,
                     cfg: P2GConfig, vocabs: tuple[Vocab, Vocab]) -> None:  # fmt: skip
    """A rescoring run of another architecture or direction must have learnt the same data as `run`: the same
    source, language, direction, symbol units and training-set limit, splits of the same sizes, the same
    source symbols and the same target symbols (a transducer's target vocabulary holds its STEP action
    besides). The data folder's path may differ (a relative and an absolute one)."""
    from dllab.p2g.align import STEP

    def same(a: DataConfig, b: DataConfig) -> bool:
        units = [(x.src_units, x.tgt_units) for x in (symbols_for(a), symbols_for(b))]
        keys = [(x.source, x.language, x.direction, x.limit_train) for x in (a, b)]
        return keys[0] == keys[1] and units[0] == units[1]

    sizes = [r.read_config_record().get("data", {}).get("sizes") for r in (run, other)]
    targets = [set(v[1].tokens) - {STEP} for v in (vocabs, other_vocabs)]
    if (not same(cfg.data, other_cfg.data) or sizes[0] != sizes[1] or other_vocabs[0] != vocabs[0]
            or targets[0] != targets[1]):  # fmt: skip
        raise UserError(f"--rescore {other.path}: it was trained on other data than {run.path} (data settings "
                        "or symbols differ)")  # fmt: skip


def evaluate(
    run: RunDir,
    top_p: float | None = None,
    beam: int | None = None,
    k: int = 1,
    split: Literal["test", "valid"] = "test",
    seed: int = 0,
    ensemble: list[RunDir] | None = None,
    rescore: list[RunDir] | None = None,
    file: Path | None = None,
) -> dict:
    """Decode `split` (or `file`) with the best checkpoint; add the metrics to test_metrics.json and return them.

    `file`: any file in the run's data format (for a SIGMORPHON run, the task's `<spelling>\t<phones>`),
    scored and written as `predictions-<strategy>-<file name>.tsv`. A SIGMORPHON run writes its predictions
    in the task's two columns (the output in place of the gold), so the task's own evaluation reads them.

    `ensemble`: further runs (trained on the same data) whose models join this one's: the decoder then
    follows the mean of their next-letter distributions. `rescore`: runs on the same data in the other
    direction (`--data.reverse`) or of another `--arch`, grouped by (architecture, direction); each group's
    beam joins this one's, and every group reranks the pooled n best (n = beam size), see `rerank_pooled`.
    With right-to-left runs of the same architecture that is `rerank_both_directions`."""
    if k < 1:
        raise UserError(f"--k must be >= 1, got {k}")
    if k > 1 and top_p is None:
        raise UserError("--k > 1 draws several samples: it needs --top-p")
    if rescore and beam is None:
        raise UserError("--rescore reranks the n best spellings of beam search: it needs --beam")
    cfg, model, vocabs = load_run(run)
    strategy, key = make_strategy(top_p, beam, seed)
    members = [model]
    if ensemble:
        for other in ensemble:
            other_cfg, member = _load_member(other, run, vocabs)
            if other_cfg.data.reverse != cfg.data.reverse:
                raise UserError(f"{other.path}: spells in the other direction than {run.path} (--data.reverse)")
            members.append(member)
        key = f"ensemble{len(members)}_{key}"
    symbols = symbols_for(cfg.data)
    groups = {(cfg.arch, cfg.data.reverse): Group(members, vocabs, symbols)}
    for other in rescore or []:
        other_cfg, member, other_vocabs = load_run(other)
        kind = (other_cfg.arch, other_cfg.data.reverse)
        if kind == (cfg.arch, cfg.data.reverse):
            raise UserError(f"--rescore {other.path}: it spells like {run.path} (same --arch, same direction); "
                            "rescoring takes right-to-left runs (--data.reverse) or runs of another --arch: "
                            "pass it with --ensemble")  # fmt: skip
        _check_same_data(other, other_cfg, other_vocabs, run, cfg, vocabs)
        group = groups.setdefault(kind, Group([], other_vocabs, symbols_for(other_cfg.data)))
        if group.vocabs != other_vocabs:
            raise UserError(f"--rescore {other.path}: its vocabularies differ from the other {kind[0]} runs' "
                            "(other training data?)")  # fmt: skip
        group.models.append(member)
    if rescore:
        key = f"{key}_rescored{len(rescore)}"
    if file is not None:
        src_text, gold = read_scoring_file(file, cfg.data)
        src = [symbols.source(t) for t in src_text]
        split_name = f"file:{file}"
    else:
        data = build_data(cfg.data, vocabs)
        src, gold = (data.test_src, data.test_gold) if split == "test" else (data.valid_src, data.valid_gold)
        split_name = "valid" if split == "valid" or data.info["test_is_valid"] else "test"
    unknown = vocabs[0].count_unknown(src)
    if unknown:
        log.info("%d source symbol(s) unseen in training map to UNK", unknown)
    began = time.perf_counter()
    with torch.no_grad():
        if rescore:
            assert isinstance(strategy, BeamSearchDecoder)
            best = rerank_pooled(list(groups.values()), src, strategy, cfg.decode)
            outputs = [[w] for w in best]
        else:  # `symbols` writes a right-to-left run's outputs left to right
            outputs = spell(together(members), src, vocabs, strategy, cfg.decode, k=k, symbols=symbols)
    seconds = time.perf_counter() - began
    first = [o[0] for o in outputs]
    metrics = {
        "split": split_name,
        "members": [str(run.path)] + [str(r.path) for r in ensemble or []],
        "rescored_by": [str(r.path) for r in rescore or []],
        "strategy": repr(strategy),
        "words": len(src),
        **(score(first, gold, cfg.data) if gold is not None else {"scored": False}),  # a covered file: no gold
        "unknown_source_symbols": unknown,
        "words_per_second": len(src) / seconds,
    }
    if k > 1:
        if gold is not None:
            metrics[f"wer@{k}"] = wer_at_k(outputs, gold)
        key += f"_k{k}"
    if file is not None:  # gre_test.tsv -> "-gre_test"; a covered gre_test.txt keeps its suffix apart
        key += f"-{Path(file).name.removesuffix('.tsv')}"
    record = run.read_test_metrics() or {}
    record[key] = metrics
    run.write_test_metrics(record)
    path = run.path / f"predictions-{key}.tsv"
    if cfg.data.source == "sigmorphon":
        write_task_predictions(path, src, first, symbols, cfg.data.direction)
    else:
        lines = ["phonemes\tgold\t" + "\t".join(f"output{j + 1}" for j in range(k))]
        for phonemes, g, o in zip(src, gold, outputs, strict=True):
            lines.append(" ".join(phonemes) + "\t" + g + "\t" + "\t".join(o))
        atomic_write_text(path, "\n".join(lines) + "\n")
    return {key: metrics}


def read_scoring_file(file: Path, data_cfg: DataConfig) -> tuple[list[str], list[str] | None]:
    """(source texts, gold target texts) of a file in the run's data format, in the run's direction. A
    SIGMORPHON G2P run also reads the task's covered test files (spellings only, `is_covered`): their gold is
    None, and they are decoded, not scored."""
    from dllab.data.sigmorphon import is_covered, read_task_pairs, read_task_words
    from dllab.data.wikipron import read_pairs

    if data_cfg.source == "sigmorphon" and is_covered(file):
        if data_cfg.direction != "g2p":
            raise UserError(f"{file}: a covered test file holds spellings only; a p2g run spells phones")
        return read_task_words(file), None
    if data_cfg.source == "sigmorphon":
        pairs, _ = read_task_pairs(file, data_cfg.skip_bad_lines)
    else:
        pairs, _ = read_pairs(file, data_cfg.skip_bad_lines)
    oriented = orient(pairs, data_cfg.direction)
    return [s for s, _ in oriented], [t for _, t in oriented]


def write_task_predictions(path: Path, src: list[tuple[str, ...]], outputs: list[str], symbols, direction: str):
    """The task's two columns, `<spelling>\t<phones>`, the model's output in its side's column."""
    from dllab.data.sigmorphon import join_units

    lines = []
    for source, out in zip(src, outputs, strict=True):
        text = join_units(source, symbols.src_units)
        lines.append(f"{text}\t{out}" if direction == "g2p" else f"{out}\t{text}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def default_run_name(cfg: P2GConfig) -> str:
    if cfg.data.source == "sigmorphon":
        return f"sigmorphon-{cfg.data.language}-{cfg.data.direction}"
    return f"{cfg.data.source}-{'attn' if cfg.model.attn else 'noattn'}"


def run_path(runs_root: str | Path, name: str) -> RunDir:
    return RunDir.named(runs_root, "p2g", name)
