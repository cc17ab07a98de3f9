"""Phoneme-to-spelling experiments: build the data and model from a config, train with the engine, decode.

    train(cfg, run)                         teacher-forced training through dllab.engine.loop; validation
                                            CER / WER of greedy decoding after every epoch (monitor val_cer)
    evaluate(run, strategy, k, split)       decode a split with the best checkpoint; write the metrics into
                                            run/test_metrics.json and the outputs into run/predictions-*.tsv

The configs (P2GConfig, DataConfig, DecodeConfig) live in the torch-free `dllab.p2g.config` and are
re-exported here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from dllab.engine import FitResult, RunDir, distributed, fit, load_best, seed_everything
from dllab.errors import UserError
from dllab.io import atomic_write_json, atomic_write_text
from dllab.p2g.config import COURSE_DIR, DataConfig, DecodeConfig, P2GConfig  # noqa: F401 (re-exported)
from dllab.seq2seq.batching import PairData
from dllab.seq2seq.decoding import (
    BeamSearchDecoder,
    GreedyDecoder,
    NucleusSampler,
    Strategy,
    decode,
    decode_n_best,
    sample_k,
)
from dllab.seq2seq.ensemble import EnsembleDecoder
from dllab.seq2seq.lstm import LSTMSeq2Seq, sequence_loss
from dllab.seq2seq.metrics import character_error_rate, single_word_error_rate, wer_at_k
from dllab.seq2seq.vocab import EOS, PAD, SOS, UNK, Vocab

log = logging.getLogger(__name__)

# -- data ----------------------------------------------------------------------------------------------


@dataclass
class P2GData:
    train: PairData
    valid_src: list[tuple[str, ...]]  # phoneme symbols of the validation words
    valid_gold: list[str]
    test_src: list[tuple[str, ...]]
    test_gold: list[str]
    src_vocab: Vocab
    tgt_vocab: Vocab
    info: dict  # source, sizes, skipped lines, unknown-symbol counts


def load_splits(cfg: DataConfig):
    """(P2GSplits, skipped bad lines) for the configured source."""
    from dllab.data.cmudict_ipa import ensure_cmudict_splits
    from dllab.data.wikipron import load_split_dir

    if cfg.source == "cmudict":
        return load_split_dir(ensure_cmudict_splits(cfg.seed), cfg.skip_bad_lines)
    return load_split_dir(
        cfg.dir, cfg.skip_bad_lines, "Point --data-dir at the course files, or use --data cmudict."
    )


def encode_pairs(pairs, src_vocab: Vocab, tgt_vocab: Vocab) -> PairData:
    return PairData.from_ids(
        [src_vocab.encode(p) for p, _ in pairs], [tgt_vocab.encode(w, bos_eos=True) for _, w in pairs]
    )


def build_data(cfg: DataConfig, vocabs: tuple[Vocab, Vocab] | None = None) -> P2GData:
    """Read the splits, build vocabularies from train (unless given), encode train as tensors."""
    splits, skipped = load_splits(cfg)
    train = splits.train[: cfg.limit_train or None]
    valid = splits.valid[: cfg.limit_valid or None]
    test = splits.test[: cfg.limit_valid or None]
    if cfg.reverse:  # a right-to-left speller: CER and WER are the same on reversed strings
        train, valid, test = ([(p, w[::-1]) for p, w in pairs] for pairs in (train, valid, test))
    if vocabs is None:
        vocabs = Vocab.build(p for p, _ in train), Vocab.build(w for _, w in train)
    src_vocab, tgt_vocab = vocabs
    info = {
        "source": splits.source,
        "sizes": {"train": len(train), "valid": len(valid), "test": len(test)},
        "test_is_valid": splits.test_is_valid,
        "skipped_bad_lines": skipped,
        "unknown_symbols": {
            name: {"phonemes": src_vocab.count_unknown(p for p, _ in pairs),
                   "letters": tgt_vocab.count_unknown(w for _, w in pairs)}
            for name, pairs in (("valid", valid), ("test", test))
        },
    }  # fmt: skip
    for name, counts in info["unknown_symbols"].items():
        if counts["phonemes"] or counts["letters"]:
            log.info("%s: %d phoneme(s) and %d letter(s) unseen in train map to UNK", name,
                     counts["phonemes"], counts["letters"])  # fmt: skip
    return P2GData(
        encode_pairs(train, src_vocab, tgt_vocab),
        [p for p, _ in valid], [w for _, w in valid],
        [p for p, _ in test], [w for _, w in test],
        src_vocab, tgt_vocab, info,
    )  # fmt: skip


def src_batches(phonemes: list[tuple[str, ...]], vocab: Vocab, batch_size: int, device: torch.device):
    """(src (B, L), src_len (B,)) batches of the given words, in order."""
    from dllab.seq2seq.batching import pad_ids

    for start in range(0, len(phonemes), batch_size):
        src, src_len = pad_ids([vocab.encode(p) for p in phonemes[start : start + batch_size]])
        yield src.to(device), src_len.to(device)


def to_text(ids: list[int], vocab: Vocab) -> str:
    """Token ids -> spelling; UNK becomes U+FFFD (one character, so CER counts it as one error)."""
    return "".join("\ufffd" if i == UNK else vocab.tokens[i] for i in ids)


# -- model and decoding ------------------------------------------------------------------------------------


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


def build_model(cfg: P2GConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> LSTMSeq2Seq:
    return LSTMSeq2Seq(len(src_vocab), len(tgt_vocab), cfg.model)


def spell(
    model: LSTMSeq2Seq | EnsembleDecoder,
    phonemes: list[tuple[str, ...]],
    data_vocabs: tuple[Vocab, Vocab],
    strategy: Strategy,
    cfg: DecodeConfig,
    k: int = 1,
) -> list[list[str]]:
    """Spell each word with `strategy`: k outputs per word (k > 1 only for sampling)."""
    src_vocab, tgt_vocab = data_vocabs
    out: list[list[str]] = []
    with _eval_mode(model):
        for batch in src_batches(phonemes, src_vocab, cfg.batch_size, _device_of_decoder(model)):
            if k > 1:
                assert isinstance(strategy, NucleusSampler)
                for samples in sample_k(model, batch, strategy, k, SOS, EOS, cfg.max_len):
                    out.append([to_text(s, tgt_vocab) for s in samples])
            else:
                out.extend([to_text(s, tgt_vocab)] for s in decode(model, batch, strategy, SOS, EOS, cfg.max_len))
    return out


@contextlib.contextmanager
def _eval_mode(model: LSTMSeq2Seq | EnsembleDecoder):
    """A single model decodes in eval mode (no dropout) and gets its mode back; ensemble members are loaded
    in eval mode."""
    was_training = model.training if isinstance(model, LSTMSeq2Seq) else None
    if was_training is not None:
        model.eval()
    try:
        yield
    finally:
        if was_training is not None:
            model.train(was_training)


def spell_n_best(
    model: LSTMSeq2Seq | EnsembleDecoder,
    phonemes: list[tuple[str, ...]],
    data_vocabs: tuple[Vocab, Vocab],
    beam: BeamSearchDecoder,
    cfg: DecodeConfig,
    n: int,
) -> list[list[tuple[str, float]]]:
    """The n best spellings of each word by beam search, with their normalised scores, best first."""
    src_vocab, tgt_vocab = data_vocabs
    out: list[list[tuple[str, float]]] = []
    with _eval_mode(model):
        for batch in src_batches(phonemes, src_vocab, cfg.batch_size, _device_of_decoder(model)):
            for hyps in decode_n_best(model, batch, beam, n, SOS, EOS, cfg.max_len):
                out.append([(to_text(ids, tgt_vocab), score) for ids, score in hyps])
    return out


def _device_of_decoder(model: LSTMSeq2Seq | EnsembleDecoder) -> torch.device:
    module = model if isinstance(model, LSTMSeq2Seq) else model.members[0]
    return next(module.parameters()).device


@torch.no_grad()
def spelling_log_probs(
    model: LSTMSeq2Seq,
    phonemes: list[tuple[str, ...]],
    spellings: list[str],
    data_vocabs: tuple[Vocab, Vocab],
    batch_size: int = 500,
) -> list[float]:
    """log p(spelling, EOS | phonemes) of each pair under the model (teacher forcing, eval mode)."""
    src_vocab, tgt_vocab = data_vocabs
    device = _device_of_decoder(model)
    out: list[float] = []
    with _eval_mode(model):
        for start in range(0, len(phonemes), batch_size):
            pairs = list(zip(phonemes[start : start + batch_size], spellings[start : start + batch_size], strict=True))
            data = encode_pairs(pairs, src_vocab, tgt_vocab)
            src, src_len, tgt, _ = (t.to(device) for t in data.batch(torch.arange(len(pairs))))
            logp = torch.log_softmax(model(src, src_len, tgt[:, :-1]).float(), dim=-1)  # (B, T, V)
            gold = tgt[:, 1:]
            token_logp = logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1).masked_fill(gold == PAD, 0.0)
            out.extend(token_logp.sum(1).tolist())
    return out


def rescore_right_to_left(
    n_best: list[list[tuple[str, float]]],
    phonemes: list[tuple[str, ...]],
    right_to_left: list[LSTMSeq2Seq],
    data_vocabs: tuple[Vocab, Vocab],
    length_penalty: float = 1.0,
) -> list[str]:
    """For each word, the candidate with the best sum of its left-to-right score (beam search's normalised
    score) and its right-to-left score: the mean over `right_to_left` models of log p(reversed spelling,
    EOS) / (length + 1) ** length_penalty, the normalisation beam search uses. The two directions make
    different mistakes (a left-to-right speller commits to a word's start before seeing how it ends), so
    candidates that both read well are better bets (the reranking of Liu et al., 2016, for transduction)."""
    flat_src = [p for p, cands in zip(phonemes, n_best, strict=True) for _ in cands]
    flat_text = [text for cands in n_best for text, _ in cands]
    norms = torch.tensor([(len(t) + 1) ** length_penalty for t in flat_text], dtype=torch.float64)
    backward = torch.zeros(len(flat_text), dtype=torch.float64)
    for model in right_to_left:
        logp = spelling_log_probs(model, flat_src, [t[::-1] for t in flat_text], data_vocabs)
        backward += torch.tensor(logp, dtype=torch.float64) / norms
    backward /= len(right_to_left)
    best, at = [], 0
    for cands in n_best:
        if not cands:
            best.append("")
            continue
        total = [score + backward[at + j].item() for j, (_, score) in enumerate(cands)]
        best.append(cands[max(range(len(cands)), key=total.__getitem__)][0])
        at += len(cands)
    return best


# -- training ----------------------------------------------------------------------------------------------


def loss_fn(
    model: LSTMSeq2Seq, batch: tuple[Tensor, Tensor, Tensor, Tensor], label_smoothing: float = 0.0
) -> Tensor:
    src, src_len, tgt, _ = batch  # tgt (B, T) = SOS y_1 ... y_n EOS PAD ...
    return sequence_loss(model(src, src_len, tgt[:, :-1]), tgt[:, 1:], label_smoothing)


def write_vocabs(run: RunDir, src_vocab: Vocab, tgt_vocab: Vocab) -> None:
    atomic_write_json(run.path / "vocab.json", {"src": src_vocab.to_list(), "tgt": tgt_vocab.to_list()})


def read_vocabs(run: RunDir) -> tuple[Vocab, Vocab]:
    path = run.path / "vocab.json"
    if not path.exists():
        raise UserError(f"{path}: missing; is {run.path} a p2g training run?")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Vocab.from_list(data["src"]), Vocab.from_list(data["tgt"])


def train(
    cfg: P2GConfig, run: RunDir, resume: bool = False, overwrite: bool = False, show_progress: bool = True
) -> FitResult:
    check_config(cfg)
    data = build_data(cfg.data)
    if distributed.setup().is_main:  # under torchrun, rank 0 alone writes the run directory
        run.prepare("p2g", cfg, resume, overwrite, extra={"data": data.info})
        write_vocabs(run, data.src_vocab, data.tgt_vocab)
    distributed.barrier()
    seed_everything(cfg.train.seed)
    model = build_model(cfg, data.src_vocab, data.tgt_vocab)
    log.info(
        "%s: %d train / %d valid words, %d phonemes, %d letters, %s parameters",
        run.path, len(data.train), len(data.valid_gold), len(data.src_vocab), len(data.tgt_vocab),
        f"{sum(p.numel() for p in model.parameters()):,}",
    )  # fmt: skip

    def evaluate_fn(model: LSTMSeq2Seq) -> dict[str, float]:
        # Every rank decodes the whole validation set (it takes seconds), so all get the same numbers.
        hyps = [h[0] for h in spell(model, data.valid_src, (data.src_vocab, data.tgt_vocab),
                                    GreedyDecoder(), cfg.decode)]  # fmt: skip
        return {
            "val_cer": character_error_rate(hyps, data.valid_gold),
            "val_wer": single_word_error_rate(hyps, data.valid_gold),
        }

    return fit(
        model, data.train, functools.partial(loss_fn, label_smoothing=cfg.label_smoothing), evaluate_fn,
        cfg.optim, cfg.train, run,
        monitor="val_cer", mode="min", resume=resume, show_progress=show_progress,
    )  # fmt: skip


# -- evaluation --------------------------------------------------------------------------------------------


def make_strategy(top_p: float | None, beam: int | None, seed: int) -> tuple[Strategy, str]:
    """The decoding strategy and its key in test_metrics.json."""
    if top_p is not None and beam is not None:
        raise UserError("--top-p and --beam are alternatives: pass one of them")
    if beam is not None:
        if beam < 1:
            raise UserError(f"--beam must be >= 1, got {beam}")
        return BeamSearchDecoder(beam), f"beam{beam}"
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {top_p}")
        return NucleusSampler(top_p, torch.Generator().manual_seed(seed)), f"nucleus_p{top_p:g}"
    return GreedyDecoder(), "greedy"


def load_run(run: RunDir, device: str = "cpu") -> tuple[P2GConfig, LSTMSeq2Seq, tuple[Vocab, Vocab]]:
    cfg = run.read_config(P2GConfig)
    vocabs = read_vocabs(run)
    model = build_model(cfg, *vocabs)
    load_best(model, run, device)
    return cfg, model.to(device).eval(), vocabs


def _load_member(other: RunDir, run: RunDir, vocabs: tuple[Vocab, Vocab]) -> tuple[P2GConfig, LSTMSeq2Seq]:
    """Another run whose model joins `run`'s (ensemble or rescoring): it must share `run`'s vocabularies."""
    other_cfg, member, other_vocabs = load_run(other)
    if other_vocabs != vocabs:
        raise UserError(f"{other.path}: its vocabularies differ from {run.path}'s (other training data?)")
    return other_cfg, member


def evaluate(
    run: RunDir,
    top_p: float | None = None,
    beam: int | None = None,
    k: int = 1,
    split: Literal["test", "valid"] = "test",
    seed: int = 0,
    ensemble: list[RunDir] | None = None,
    rescore: list[RunDir] | None = None,
) -> dict:
    """Decode `split` with the best checkpoint; add the metrics to test_metrics.json and return them.

    `ensemble`: further runs (trained on the same data) whose models join this one's: the decoder then
    follows the mean of their next-letter distributions. `rescore`: right-to-left runs (`--data.reverse`)
    that rerank the beam's n best (n = beam size), see `rescore_right_to_left`."""
    if k < 1:
        raise UserError(f"--k must be >= 1, got {k}")
    if k > 1 and top_p is None:
        raise UserError("--k > 1 draws several samples: it needs --top-p")
    if rescore and beam is None:
        raise UserError("--rescore reranks the n best spellings of beam search: it needs --beam")
    cfg, model, vocabs = load_run(run)
    strategy, key = make_strategy(top_p, beam, seed)
    decoder: LSTMSeq2Seq | EnsembleDecoder = model
    if ensemble:
        members = [model]
        for other in ensemble:
            other_cfg, member = _load_member(other, run, vocabs)
            if other_cfg.data.reverse != cfg.data.reverse:
                raise UserError(f"{other.path}: spells in the other direction than {run.path} (--data.reverse)")
            members.append(member)
        decoder = EnsembleDecoder(members)
        key = f"ensemble{len(members)}_{key}"
    right_to_left = []
    for other in rescore or []:
        other_cfg, member = _load_member(other, run, vocabs)
        if not other_cfg.data.reverse or cfg.data.reverse:
            raise UserError(f"--rescore {other.path}: rescoring needs a left-to-right run ({run.path}) and "
                            "right-to-left runs (trained with --data.reverse)")  # fmt: skip
        right_to_left.append(member)
    if right_to_left:
        key = f"{key}_rescored{len(right_to_left)}"
    data = build_data(cfg.data, vocabs)
    src, gold = (data.test_src, data.test_gold) if split == "test" else (data.valid_src, data.valid_gold)
    began = time.perf_counter()
    with torch.no_grad():
        if right_to_left:
            assert isinstance(strategy, BeamSearchDecoder)
            n_best = spell_n_best(decoder, src, vocabs, strategy, cfg.decode, strategy.beam_size)
            best = rescore_right_to_left(n_best, src, right_to_left, vocabs, strategy.length_penalty)
            outputs = [[w] for w in best]
        else:
            outputs = spell(decoder, src, vocabs, strategy, cfg.decode, k=k)
    seconds = time.perf_counter() - began
    if cfg.data.reverse:  # report and write the spellings left to right (the metrics are the same)
        outputs, gold = [[o[::-1] for o in out] for out in outputs], [g[::-1] for g in gold]
    first = [o[0] for o in outputs]
    metrics = {
        "split": "valid" if split == "valid" or data.info["test_is_valid"] else "test",
        "members": [str(run.path)] + [str(r.path) for r in ensemble or []],
        "rescored_by": [str(r.path) for r in rescore or []],
        "strategy": repr(strategy),
        "words": len(gold),
        "cer": character_error_rate(first, gold),
        "wer": single_word_error_rate(first, gold),
        "words_per_second": len(gold) / seconds,
    }
    if k > 1:
        metrics[f"wer@{k}"] = wer_at_k(outputs, gold)
        key += f"_k{k}"
    record = run.read_test_metrics() or {}
    record[key] = metrics
    run.write_test_metrics(record)
    lines = ["phonemes\tgold\t" + "\t".join(f"output{j + 1}" for j in range(k))]
    for phonemes, g, o in zip(src, gold, outputs, strict=True):
        lines.append(" ".join(phonemes) + "\t" + g + "\t" + "\t".join(o))
    atomic_write_text(run.path / f"predictions-{key}.tsv", "\n".join(lines) + "\n")
    return {key: metrics}


def default_run_name(cfg: P2GConfig) -> str:
    return f"{cfg.data.source}-{'attn' if cfg.model.attn else 'noattn'}"


def run_path(runs_root: str | Path, name: str) -> RunDir:
    return RunDir.named(runs_root, "p2g", name)
