"""Phoneme-to-spelling data: the word lists read, the vocabularies built from train, train held as tensors.

    build_data(cfg)          the splits of `DataConfig` (course TSV files or the embedded CMUdict set), their
                             vocabularies and train as `PairData`
    PairData                 source / target id sequences as padded tensors, batched by index for `fit`
    src_batches              (src, src_len) batches of words to decode
    to_text                  decoded ids -> a spelling
    write_vocabs, read_vocabs   a run's vocab.json
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dllab.engine import RunDir
from dllab.errors import UserError
from dllab.io import atomic_write_json
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
    """(phonemes, spelling) pairs -> PairData: phoneme ids, and SOS + letter ids + EOS."""
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
    for start in range(0, len(phonemes), batch_size):
        src, src_len = pad_ids([vocab.encode(p) for p in phonemes[start : start + batch_size]])
        yield src.to(device), src_len.to(device)


def to_text(ids: list[int], vocab: Vocab) -> str:
    """Token ids -> spelling; UNK becomes U+FFFD (one character, so CER counts it as one error)."""
    return "".join("\ufffd" if i == UNK else vocab.tokens[i] for i in ids)


def write_vocabs(run: RunDir, src_vocab: Vocab, tgt_vocab: Vocab) -> None:
    atomic_write_json(run.path / "vocab.json", {"src": src_vocab.to_list(), "tgt": tgt_vocab.to_list()})


def read_vocabs(run: RunDir) -> tuple[Vocab, Vocab]:
    path = run.path / "vocab.json"
    if not path.exists():
        raise UserError(f"{path}: missing; is {run.path} a p2g training run?")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Vocab.from_list(data["src"]), Vocab.from_list(data["tgt"])
