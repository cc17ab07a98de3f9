"""Spelling words with a trained model: the decoding strategies of `dllab.seq2seq.decoding` on batches of
phonemes, the n best spellings of beam search, and their right-to-left rescoring.

    make_strategy(top_p, beam, seed)     greedy, nucleus or beam search from the command-line options
    spell(model, phonemes, ...)          k spellings per word (k > 1: nucleus samples)
    spell_n_best(model, phonemes, ...)   the n best spellings of beam search with their scores
    spelling_log_probs(model, ...)       log p(spelling | phonemes) under teacher forcing
    rerank_pooled(groups, ...)           several groups' n best pooled, reranked by all of them
    rerank_both_directions(...)          both directions' n best reranked by both (Liu et al., 2016)
    together(models)                     one model as itself, several as their EnsembleDecoder

`model` is an `LSTMSeq2Seq`, a `TransformerSeq2Seq` or an `EnsembleDecoder` of them (dllab.p2g.model). The
words' source symbols are phonemes for a p2g run, spelling symbols for a g2p run; `symbols` (the run's
`Symbols`, see dllab.p2g.data) turns the emitted symbols into text: without it, characters concatenated.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import torch

from dllab.errors import UserError
from dllab.p2g.config import DecodeConfig
from dllab.p2g.data import Symbols, encode_pairs, src_batches, to_text
from dllab.p2g.model import EnsembleDecoder, LSTMSeq2Seq
from dllab.seq2seq.decoding import (
    BeamSearchDecoder,
    GreedyDecoder,
    NucleusSampler,
    Strategy,
    decode,
    decode_n_best,
    sample_k,
)
from dllab.seq2seq.vocab import EOS, PAD, SOS, Vocab


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


def spell(
    model: LSTMSeq2Seq | EnsembleDecoder,
    phonemes: list[tuple[str, ...]],
    data_vocabs: tuple[Vocab, Vocab],
    strategy: Strategy,
    cfg: DecodeConfig,
    k: int = 1,
    symbols: Symbols | None = None,
) -> list[list[str]]:
    """Spell each word with `strategy`: k outputs per word (k > 1 only for sampling). A word without symbols
    is a UserError."""
    src_vocab, tgt_vocab = data_vocabs
    empty = [i + 1 for i, word in enumerate(phonemes) if not word]
    if empty:
        raise UserError(f"word {empty[0]} has no symbols to spell ({len(empty)} such word(s) in all)")
    out: list[list[str]] = []
    with _eval_mode(model):
        for batch in src_batches(phonemes, src_vocab, cfg.batch_size, _device_of_decoder(model)):
            if k > 1:
                assert isinstance(strategy, NucleusSampler)
                for samples in sample_k(model, batch, strategy, k, SOS, EOS, _max_len(model, batch, cfg)):
                    out.append([to_text(s, tgt_vocab, symbols) for s in samples])
            else:
                out.extend([to_text(s, tgt_vocab, symbols)]
                           for s in decode(model, batch, strategy, SOS, EOS, _max_len(model, batch, cfg)))
    return out


@contextlib.contextmanager
def _eval_mode(model):
    """A single model decodes in eval mode (no dropout) and gets its mode back; ensemble members are loaded
    in eval mode."""
    was_training = model.training if isinstance(model, torch.nn.Module) else None
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
    symbols: Symbols | None = None,
) -> list[list[tuple[str, float]]]:
    """The n best spellings of each word by beam search, with their normalised scores, best first."""
    src_vocab, tgt_vocab = data_vocabs
    out: list[list[tuple[str, float]]] = []
    with _eval_mode(model):
        for batch in src_batches(phonemes, src_vocab, cfg.batch_size, _device_of_decoder(model)):
            for hyps in decode_n_best(model, batch, beam, n, SOS, EOS, _max_len(model, batch, cfg)):
                out.append([(to_text(ids, tgt_vocab, symbols), score) for ids, score in hyps])
    return out


def _first_model(model) -> torch.nn.Module:
    """The model itself, or an ensemble's first member (the members share vocabularies and architecture)."""
    return model.members[0] if isinstance(model, EnsembleDecoder) else model


def _max_len(model, batch: tuple[torch.Tensor, torch.Tensor], cfg: DecodeConfig) -> int:
    """Tokens a decode may emit: --decode.max_len output symbols, and for a transducer one STEP per source
    symbol besides."""
    return cfg.max_len + (batch[0].shape[1] + 1 if getattr(_first_model(model), "emits_steps", False) else 0)


def _device_of_decoder(model) -> torch.device:
    return next(_first_model(model).parameters()).device


@torch.no_grad()
def spelling_log_probs(
    model: LSTMSeq2Seq,
    phonemes: list[tuple[str, ...]],
    spellings: list[str],
    data_vocabs: tuple[Vocab, Vocab],
    batch_size: int = 500,
    symbols: Symbols | None = None,
) -> list[float]:
    """log p(spelling, EOS | phonemes) of each pair under the model (teacher forcing, eval mode). The spellings
    are texts; `symbols.target` turns them into the symbols the model learnt (reversed for a right-to-left
    run); without `symbols`, their characters as given."""
    src_vocab, tgt_vocab = data_vocabs
    device = _device_of_decoder(model)
    out: list[float] = []
    with _eval_mode(model):
        for start in range(0, len(phonemes), batch_size):
            texts = spellings[start : start + batch_size]
            targets = [symbols.target(t) for t in texts] if symbols is not None else texts
            sources = phonemes[start : start + batch_size]
            impossible = torch.zeros(len(sources), dtype=torch.bool)
            if getattr(model, "emits_steps", False):
                # A transducer scores an output through the actions of its most likely alignment (the table
                # its run learnt from train): the oracle it was trained on. An output that no alignment covers
                # (more than 3 symbols for one source symbol) gets log-probability -inf.
                oracle = [model.aligner.actions(s, t, model.right_to_left)
                          for s, t in zip(sources, targets, strict=True)]  # fmt: skip
                impossible = torch.tensor([a is None for a in oracle])
                targets = [a or () for a in oracle]
            pairs = list(zip(sources, targets, strict=True))
            data = encode_pairs(pairs, src_vocab, tgt_vocab)
            src, src_len, tgt, _ = (t.to(device) for t in data.batch(torch.arange(len(pairs))))
            logp = torch.log_softmax(model(src, src_len, tgt[:, :-1]).float(), dim=-1)  # (B, T, V)
            gold = tgt[:, 1:]
            token_logp = logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1).masked_fill(gold == PAD, 0.0)
            out.extend(token_logp.sum(1).cpu().masked_fill(impossible, -math.inf).tolist())
    return out


class Group(NamedTuple):
    """Models that decode and score together in `rerank_pooled`: one direction of one architecture. `vocabs`
    and `symbols` are theirs (a transducer's target vocabulary holds its STEP action besides the symbols)."""

    models: Sequence[LSTMSeq2Seq]
    vocabs: tuple[Vocab, Vocab]
    symbols: Symbols


def rerank_pooled(
    groups: Sequence[Group],
    phonemes: list[tuple[str, ...]],
    beam: BeamSearchDecoder,
    cfg: DecodeConfig,
    length_penalty: float | None = None,
) -> list[str]:
    """Each word's output, chosen among the pooled n best (n = beam size) of every group's beam, the models
    of a group decoding together. The pick is the candidate with the best sum over the groups of the mean
    over the group's models of log p(output, EOS) under teacher forcing, divided by (length + 1) **
    `length_penalty` (default: the beam's; length in the first group's target symbols). A group that cannot
    produce a candidate (a transducer's alignment table covers no way to write it) gives it -inf."""
    if not groups or any(not group.models for group in groups):
        raise ValueError("rerank_pooled needs at least one group, and models in every group")
    pools: list[dict[str, None]] = [{} for _ in phonemes]  # each word's candidates, in order of first appearance
    for group in groups:
        n_best = spell_n_best(together(group.models), phonemes, group.vocabs, beam, cfg, beam.beam_size,
                              group.symbols)  # fmt: skip
        for pool, hyps in zip(pools, n_best, strict=True):
            for text, _ in hyps:
                pool.setdefault(text)
    candidates = [list(pool) for pool in pools]
    flat_src = [p for p, cands in zip(phonemes, candidates, strict=True) for _ in cands]
    flat_text = [text for cands in candidates for text in cands]
    penalty = beam.length_penalty if length_penalty is None else length_penalty
    lengths = [len(groups[0].symbols.target(t)) + 1 for t in flat_text]
    norms = torch.tensor(lengths, dtype=torch.float64) ** penalty
    total = torch.zeros(len(flat_text), dtype=torch.float64)
    for group in groups:
        logp = sum(torch.tensor(spelling_log_probs(m, flat_src, flat_text, group.vocabs, symbols=group.symbols),
                                dtype=torch.float64) for m in group.models)  # fmt: skip
        total += logp / len(group.models) / norms
    best, at = [], 0
    for cands in candidates:
        scores = total[at : at + len(cands)].tolist()
        best.append(cands[max(range(len(cands)), key=scores.__getitem__)] if cands else "")
        at += len(cands)
    return best


def rerank_both_directions(
    left_to_right: Sequence[LSTMSeq2Seq],
    right_to_left: Sequence[LSTMSeq2Seq],
    phonemes: list[tuple[str, ...]],
    data_vocabs: tuple[Vocab, Vocab],
    beam: BeamSearchDecoder,
    cfg: DecodeConfig,
    symbols: Symbols,
) -> list[str]:
    """`rerank_pooled` of two groups: the left-to-right models and the right-to-left ones (`--data.reverse`),
    with the same vocabularies. `symbols`: the left-to-right runs' Symbols.

    The two directions make different mistakes (a left-to-right speller commits to a word's start before it
    sees how it ends), so candidates that both read well are better bets: the reranking of Liu et al. (2016)
    for transduction. Taking the candidates from both beams rather than one measured better on dev. On the
    ten SIGMORPHON low languages the macro WER was 27.6 against 28.4. On arm_e and dut (medium) it was 7.55
    against 7.75. In the union the gold spelling was missing for 10.7% of the words, against 14.7% in the
    left-to-right beam alone."""
    return rerank_pooled([Group(left_to_right, data_vocabs, symbols),
                          Group(right_to_left, data_vocabs, replace(symbols, reverse=True))],
                         phonemes, beam, cfg)  # fmt: skip


def together(models: Sequence[LSTMSeq2Seq]) -> LSTMSeq2Seq | EnsembleDecoder:
    """The models decoding together: a lone model as itself, several as their ensemble."""
    return models[0] if len(models) == 1 else EnsembleDecoder(list(models))
