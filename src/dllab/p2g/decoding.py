"""Spelling words with a trained model: the decoding strategies of `dllab.seq2seq.decoding` on batches of
phonemes, the n best spellings of beam search, and their right-to-left rescoring.

    make_strategy(top_p, beam, seed)     greedy, nucleus or beam search from the command-line options
    spell(model, phonemes, ...)          k spellings per word (k > 1: nucleus samples)
    spell_n_best(model, phonemes, ...)   the n best spellings of beam search with their scores
    spelling_log_probs(model, ...)       log p(spelling | phonemes) under teacher forcing
    rescore_right_to_left(n_best, ...)   rerank n-best lists with right-to-left models (Liu et al., 2016)

`model` is an `LSTMSeq2Seq`, a `TransformerSeq2Seq` or an `EnsembleDecoder` of them (dllab.p2g.model). The
words' source symbols are phonemes for a p2g run, spelling symbols for a g2p run; `symbols` (the run's
`Symbols`, see dllab.p2g.data) turns the emitted symbols into text: without it, characters concatenated.
"""

from __future__ import annotations

import contextlib

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
                for samples in sample_k(model, batch, strategy, k, SOS, EOS, cfg.max_len):
                    out.append([to_text(s, tgt_vocab, symbols) for s in samples])
            else:
                out.extend([to_text(s, tgt_vocab, symbols)]
                           for s in decode(model, batch, strategy, SOS, EOS, cfg.max_len))
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
            for hyps in decode_n_best(model, batch, beam, n, SOS, EOS, cfg.max_len):
                out.append([(to_text(ids, tgt_vocab, symbols), score) for ids, score in hyps])
    return out


def _device_of_decoder(model) -> torch.device:
    module = model.members[0] if isinstance(model, EnsembleDecoder) else model
    return next(module.parameters()).device


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
            pairs = list(zip(phonemes[start : start + batch_size], targets, strict=True))
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
    symbols: Symbols | None = None,
) -> list[str]:
    """For each word, the candidate with the best sum of its left-to-right score (beam search's normalised
    score) and its right-to-left score: the mean over `right_to_left` models of log p(reversed spelling,
    EOS) / (length + 1) ** length_penalty, the normalisation beam search uses. `symbols`: the right-to-left
    runs' Symbols (reverse=True); without it, the candidates' characters are reversed. The two directions make
    different mistakes (a left-to-right speller commits to a word's start before seeing how it ends), so
    candidates that both read well are better bets (the reranking of Liu et al., 2016, for transduction)."""
    flat_src = [p for p, cands in zip(phonemes, n_best, strict=True) for _ in cands]
    flat_text = [text for cands in n_best for text, _ in cands]
    if symbols is None:
        lengths, reversed_text = [len(t) for t in flat_text], [t[::-1] for t in flat_text]
    else:
        lengths, reversed_text = [len(symbols.target(t)) for t in flat_text], flat_text
    norms = torch.tensor([(n + 1) ** length_penalty for n in lengths], dtype=torch.float64)
    backward = torch.zeros(len(flat_text), dtype=torch.float64)
    for model in right_to_left:
        logp = spelling_log_probs(model, flat_src, reversed_text, data_vocabs, symbols=symbols)
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
