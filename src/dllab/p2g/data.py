"""Phoneme-to-spelling data: the word lists read, the vocabularies built from train, train held as tensors.

    build_data(cfg)          the splits of `DataConfig` (course TSV files, the embedded CMUdict set or a
                             SIGMORPHON 2021 language), their vocabularies and train as `PairData`
    Symbols, symbols_for     how a run reads its source and writes its target: the direction (p2g reads
                             phones and writes a spelling, g2p the other way), the spelling's units and
                             whether the target is spelled right to left
    PairData                 source / target id sequences as padded tensors, batched by index for `fit`
    src_batches              (src, src_len) batches of words to decode
    to_text                  decoded ids -> the target text (a spelling, or space-separated phones)
    read_words               the words of a file (or standard input) to spell, one per line, with file:line
    unknown_by_symbol        the symbols of words to spell that a vocabulary lacks, with the words holding them
    write_vocabs, read_vocabs   a run's vocab.json
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dllab.data.sigmorphon import Units, join_units, split_units
from dllab.engine import RunDir
from dllab.errors import UserError
from dllab.io import atomic_write_json, file_system_error
from dllab.p2g.align import STEP, ChunkAligner
from dllab.p2g.config import DataConfig
from dllab.seq2seq.batching import pad_ids
from dllab.seq2seq.vocab import UNK, Vocab

log = logging.getLogger(__name__)


class PairData:
    """Source / target id sequences: src (N, Ls) + src_len (N,), tgt (N, Lt) + tgt_len (N,), PAD-padded.

    The seq2seq counterpart of `data.images.TensorData`: the engine's `fit` asks it for `batch(idx)`, which
    gathers rows with one indexing op per tensor and trims the padding to the longest sequence of the batch,
    so nothing iterates over examples in Python during training.

    `batch(idx)` -> (src (B, ls), src_len (B,), tgt (B, lt), tgt_len (B,)) with ls, lt the batch maxima."""

    def __init__(self, src: Tensor, src_len: Tensor, tgt: Tensor, tgt_len: Tensor):
        if not (len(src) == len(src_len) == len(tgt) == len(tgt_len)):
            raise ValueError("src, src_len, tgt and tgt_len need the same number of rows")
        self.src, self.src_len, self.tgt, self.tgt_len = src, src_len, tgt, tgt_len

    @classmethod
    def from_ids(cls, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]) -> PairData:
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} sources but {len(tgt)} targets")
        if any(len(s) == 0 for s in src):
            raise ValueError("empty source sequence")
        return cls(*pad_ids(src), *pad_ids(tgt))

    def __len__(self) -> int:
        return len(self.src)

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        src_len, tgt_len = self.src_len[idx], self.tgt_len[idx]
        ls, lt = int(src_len.max()), int(tgt_len.max())
        return self.src[idx, :ls], src_len, self.tgt[idx, :lt], tgt_len

    def length_keys(self) -> Tensor:
        """(N,) the sort key of `fit`'s length buckets: target length, then source length."""
        return self.tgt_len * (int(self.src_len.max()) + 1) + self.src_len

    def subset(self, n: int) -> PairData:
        """The first `n` pairs."""
        return PairData(self.src[:n], self.src_len[:n], self.tgt[:n], self.tgt_len[:n])


@dataclass(frozen=True)
class Symbols:
    """How a run turns text into symbol sequences and back: source and target units (`split_units`), and
    whether the target is learnt right to left (`--data.reverse`; its text is still written left to right)."""

    src_units: Units
    tgt_units: Units
    reverse: bool = False

    def source(self, text: str) -> tuple[str, ...]:
        return split_units(text, self.src_units)

    def target(self, text: str) -> tuple[str, ...]:
        """The target symbols the model learns (right to left for a reversed run)."""
        symbols = split_units(text, self.tgt_units)
        return symbols[::-1] if self.reverse else symbols

    def text(self, symbols: Sequence[str]) -> str:
        """The target text of the symbols the model emitted, left to right."""
        return join_units(list(symbols)[::-1] if self.reverse else symbols, self.tgt_units)


def symbols_for(cfg: DataConfig) -> Symbols:
    """The Symbols of a data config: phones split on spaces; spellings as grapheme clusters for SIGMORPHON
    data by default, as code points for the course data (the homework's characters)."""
    units = cfg.spelling_units
    if units == "auto":
        units = "graphemes" if cfg.source == "sigmorphon" else "codepoints"
    if cfg.direction == "g2p":
        return Symbols(units, "phones", cfg.reverse)
    return Symbols("phones", units, cfg.reverse)


def orient(pairs: Iterable[tuple[tuple[str, ...], str]], direction: str) -> list[tuple[str, str]]:
    """(phones, spelling) pairs -> (source text, target text) pairs in the run's direction."""
    if direction == "g2p":
        return [(spelling, " ".join(phones)) for phones, spelling in pairs]
    return [(" ".join(phones), spelling) for phones, spelling in pairs]


@dataclass
class P2GData:
    train: PairData
    valid_src: list[tuple[str, ...]]  # source symbols of the validation words (phonemes for p2g)
    valid_gold: list[str]  # target text, left to right (a spelling for p2g, space-separated phones for g2p)
    test_src: list[tuple[str, ...]]
    test_gold: list[str]
    src_vocab: Vocab
    tgt_vocab: Vocab
    info: dict  # source, sizes, skipped lines, unknown-symbol counts
    symbols: Symbols = Symbols("phones", "codepoints")
    aligner: ChunkAligner | None = None  # the transducer's alignment (dllab.p2g.align), fitted on train


def load_splits(cfg: DataConfig):
    """(P2GSplits, skipped bad lines) for the configured source."""
    from dllab.data.cmudict_ipa import ensure_cmudict_splits
    from dllab.data.wikipron import P2GSplits, load_split_dir

    if cfg.source == "cmudict":
        return load_split_dir(ensure_cmudict_splits(cfg.seed), cfg.skip_bad_lines)
    if cfg.source == "sigmorphon":
        from dllab.data.sigmorphon import language_files, read_task_pairs

        if not cfg.language:
            raise UserError("--data.language: say which SIGMORPHON 2021 language (e.g. eng_us, kor, ady)")
        files = language_files(cfg.sigmorphon_dir, cfg.language)
        train, s1 = read_task_pairs(files.train, cfg.skip_bad_lines)
        dev, s2 = read_task_pairs(files.dev, cfg.skip_bad_lines)
        if files.test is None:
            return P2GSplits(train, dev, dev, f"sigmorphon:{cfg.language}", test_is_valid=True), s1 + s2
        test, s3 = read_task_pairs(files.test, cfg.skip_bad_lines)
        return P2GSplits(train, dev, test, f"sigmorphon:{cfg.language}"), s1 + s2 + s3
    return load_split_dir(
        cfg.dir, cfg.skip_bad_lines, "Point --data-dir at the course files, or use --data cmudict."
    )


def encode_pairs(pairs: Iterable[tuple[Sequence[str], Sequence[str]]], src_vocab: Vocab, tgt_vocab: Vocab) -> PairData:
    """(source symbols, target symbols) pairs -> PairData: source ids, and SOS + target ids + EOS."""
    pairs = list(pairs)
    return PairData.from_ids(
        [src_vocab.encode(p) for p, _ in pairs], [tgt_vocab.encode(w, bos_eos=True) for _, w in pairs]
    )


def unknown_symbols(pairs: list[tuple[str, str]], symbols: Symbols, vocabs: tuple[Vocab, Vocab],
                    direction: str) -> dict[str, int]:
    """How many phone and spelling symbols of (source text, target text) pairs are not in the vocabularies."""
    src_vocab, tgt_vocab = vocabs
    src = src_vocab.count_unknown(symbols.source(s) for s, _ in pairs)
    tgt = tgt_vocab.count_unknown(symbols.target(t) for _, t in pairs)
    return {"phonemes": tgt, "letters": src} if direction == "g2p" else {"phonemes": src, "letters": tgt}


def build_data(cfg: DataConfig, vocabs: tuple[Vocab, Vocab] | None = None, actions: bool = False) -> P2GData:
    """Read the splits, build vocabularies from train (unless given), encode train as tensors. `actions`: the
    transducer's data, each training target spelt as the actions of its alignment (`dllab.p2g.align`); the
    words that no alignment of at most 3 target symbols per source symbol covers are left out of training and
    counted in info["unaligned_train_words"]."""
    splits, skipped = load_splits(cfg)
    symbols = symbols_for(cfg)
    train = orient(splits.train[: cfg.limit_train or None], cfg.direction)
    valid = orient(splits.valid[: cfg.limit_valid or None], cfg.direction)
    test = orient(splits.test[: cfg.limit_valid or None], cfg.direction)
    train_symbols = [(symbols.source(s), symbols.target(t)) for s, t in train]
    aligner, unaligned = None, 0
    if actions:
        # A right-to-left run's targets are reversed: its transducer reads the source from the end too.
        aligner = ChunkAligner.fit([(s[::-1] if cfg.reverse else s, t) for s, t in train_symbols])
        oracle = [(s, aligner.actions(s, t, cfg.reverse)) for s, t in train_symbols]
        unaligned = sum(a is None for _, a in oracle)
        train_symbols = [(s, a) for s, a in oracle if a is not None]
        if not train_symbols:
            raise UserError(f"{splits.source}: no training word could be aligned for the transducer")
    if vocabs is None:
        vocabs = Vocab.build(s for s, _ in train_symbols), Vocab.build(t for _, t in train_symbols)
    src_vocab, tgt_vocab = vocabs
    info = {
        "source": splits.source,
        "direction": cfg.direction,
        "sizes": {"train": len(train), "valid": len(valid), "test": len(test)},
        "test_is_valid": splits.test_is_valid,
        "skipped_bad_lines": skipped,
        **({"unaligned_train_words": unaligned} if actions else {}),
        "unknown_symbols": {name: unknown_symbols(pairs, symbols, vocabs, cfg.direction)
                            for name, pairs in (("valid", valid), ("test", test))},
    }  # fmt: skip
    for name, counts in info["unknown_symbols"].items():
        if counts["phonemes"] or counts["letters"]:
            log.info("%s: %d phoneme(s) and %d letter(s) unseen in train map to UNK", name,
                     counts["phonemes"], counts["letters"])  # fmt: skip
    return P2GData(
        encode_pairs(train_symbols, src_vocab, tgt_vocab),
        [symbols.source(s) for s, _ in valid], [t for _, t in valid],
        [symbols.source(s) for s, _ in test], [t for _, t in test],
        src_vocab, tgt_vocab, info, symbols, aligner,
    )  # fmt: skip


def src_batches(phonemes: list[tuple[str, ...]], vocab: Vocab, batch_size: int, device: torch.device):
    """(src (B, L), src_len (B,)) batches of the given words, in order."""
    for start in range(0, len(phonemes), batch_size):
        src, src_len = pad_ids([vocab.encode(p) for p in phonemes[start : start + batch_size]])
        yield src.to(device), src_len.to(device)


def to_text(ids: list[int], vocab: Vocab, symbols: Symbols | None = None) -> str:
    """Token ids -> the target text (`symbols.text`; without `symbols`, characters concatenated); UNK becomes
    U+FFFD (one character, so CER counts it as one error); a transducer's STEP actions are dropped."""
    tokens = ["\ufffd" if i == UNK else vocab.tokens[i] for i in ids if vocab.tokens[i] != STEP]
    return "".join(tokens) if symbols is None else symbols.text(tokens)


def read_words(path: str | Path) -> list[tuple[str, str]]:
    """(`file:line`, word) for each non-blank line of a UTF-8 file, stripped; `-` reads standard input.

    A file that cannot be read, is not UTF-8 or holds no word at all is a UserError naming it."""
    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{name}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise file_system_error(err, "read", name) from None
    words = [(f"{name}:{n}", line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not words:
        raise UserError(f"{name}: no words to spell (empty, or blank lines only)")
    return words


def unknown_by_symbol(words: Sequence[Sequence[str]], vocab: Vocab) -> dict[str, list[int]]:
    """{symbol: indices of the words holding it} for each symbol of `words` that `vocab` lacks (the model
    reads it as UNK), in order of first appearance."""
    found: dict[str, list[int]] = {}
    for i, word in enumerate(words):
        for symbol in dict.fromkeys(word):
            if symbol not in vocab.index:
                found.setdefault(symbol, []).append(i)
    return found


def write_vocabs(run: RunDir, src_vocab: Vocab, tgt_vocab: Vocab) -> None:
    atomic_write_json(run.path / "vocab.json", {"src": src_vocab.to_list(), "tgt": tgt_vocab.to_list()})


def read_vocabs(run: RunDir) -> tuple[Vocab, Vocab]:
    path = run.path / "vocab.json"
    if not path.exists():
        raise UserError(f"{path}: missing; is {run.path} a p2g training run?")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Vocab.from_list(data["src"]), Vocab.from_list(data["tgt"])
