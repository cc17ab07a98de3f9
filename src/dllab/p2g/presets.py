"""Per-size settings for SIGMORPHON 2021 Task 1 (torch-free): 800 training words need a smaller model and more
regularisation than 33,000. Chosen on the dev splits (README, "SIGMORPHON 2021"); never on test.

    PRESETS                 name -> {config path: value}; "common" applies to every size
    ENSEMBLES               name -> the members (seeds) per language, the beam a sweep decodes with, and
                            companions of another architecture
    SPELLING_UNITS          the languages whose spellings are better read as code points or jamo
    preset_for(words)       low < 2,000 <= medium < 20,000 <= high training words
    apply_preset(cfg, ...)  a config with a preset applied under the user's own overrides
    train_words(data_cfg)   the training set's size, counted without reading the pairs
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dllab.config import apply_overrides, replace_path
from dllab.errors import UserError

PRESETS: dict[str, dict[str, Any]] = {
    # The homework's BiLSTM + Bahdanau speller, selected on dev WER (the task's measure), the learning rate
    # warmed up then decayed linearly to 0. Checkpoint averaging stays off: measured on dev it did not help
    # (ady, 5 best of 50 epochs: 34 and 36 against the best checkpoint's 33 and 34; bul, 3 best of 12: 18.7
    # against 18.6), since the decayed learning rate leaves the last epochs' weights close together.
    "common": {"model.attn": True, "select": "wer", "train.bucket": 50, "optim.schedule": "warmup_linear"},
    # 800 words: the hard-attention transducer (dllab.p2g.transducer), trained on the actions of its EM
    # alignment, with BiLSTM companions in its ensemble (ENSEMBLES below). On the ten low languages (5 members
    # and 3 right-to-left ones, both beams pooled and reranked) macro dev WER 23.10 against 25.90 for the
    # BiLSTM + Bahdanau speller at its best settings (hidden 128, dropout 0.5, 80 epochs, the companions');
    # one member decoded greedily, ice 0.22 against 0.36. Dropout 0.3 for 60 epochs
    # against 0.5 for 80 (one member each, greedy): ady 22 / 21, gre 4 / 9, ice 22 / 21, ita 21 / 27, khm 43 /
    # 42, lav 40 / 50. For the BiLSTM speller these sizes were measured (ady, 60 epochs): dropout 0.5 32
    # against 0.3 39; hidden 256 41 against 128 32; label smoothing 0.1 38 against 39.
    # Imitation learning (--rollin 1.0, dllab.p2g.imitation) instead of the static oracle, the whole sweep:
    # macro 23.20 against 23.10 (ady 21 / 21, gre 7 / 6, ice 20 / 19, ita 20 / 20, khm 36 / 37, lav 41 / 44,
    # mlt 17 / 15, rum 10 / 10, slv 43 / 43, wel 17 / 16), at about a third of the training speed (an ady
    # epoch 2.0 s against 0.57 s, one thread): not kept.
    "low": {"arch": "transducer", "model.hidden": 128, "model.dropout": 0.3, "train.epochs": 60,
            "train.batch_size": 32, "optim.warmup_steps": 100},
    # 8,000 words: hidden 256 for 30 epochs (bul, one member, dev WER: 15 epochs at hidden 128 19.6; 30 epochs
    # 14.7; 60 epochs 15.0; 30 epochs at hidden 256 12.3; on the eight languages measured both ways, one member
    # of this preset against one of 15 epochs at 128: macro 11.76 against 15.00). A member trains in about 3.8
    # min on one quiet thread.
    "medium": {"model.hidden": 256, "model.dropout": 0.3, "train.epochs": 30, "train.batch_size": 64,
               "optim.warmup_steps": 200},
    # 33,344 words: one language, so a somewhat wider model fits beside the others in the sweep's time (hidden
    # 256 trains at 0.45x the homework model's words/s, which would make English alone last longer than the
    # other 20 languages together on 2 shared cores).
    "high": {"model.hidden": 192, "model.dropout": 0.3, "train.epochs": 12, "train.batch_size": 64,
             "optim.warmup_steps": 400},
}

# Members per language (one per seed, decoded together), right-to-left members whose beam joins the
# left-to-right one's to rerank the pooled n best (`rerank_both_directions`), the beam, and companions:
# members of another architecture (both directions, the settings given over the preset's, then the user's
# overrides) whose beams join the pool and whose scores join the reranking (`rerank_pooled`), per size. All
# measured on the dev splits, beam 5:
# - low: 3 transducer members and 2 right-to-left ones, with the BiLSTM speller at its best low settings as
#   companions (2 and 1): macro WER 22.30 (ady 20, gre 7, ice 16, ita 20, khm 36, lav 40, mlt 14, rum 10,
#   slv 45, wel 15), the low sweep 19.3 min of wall time. Transducers alone, 5 and 3: 23.10; one member greedy
#   23.7; 8 and 5 were no better (ady 21, gre 6, ice 19, ita 22 against 21, 6, 19, 20), nor beam 10. The
#   BiLSTM's errors differ from the transducer's, so the pool gains where the transducers' ensemble did not.
#   The sizes were chosen on dev among five, scored from the kept runs of earlier sweeps (transducers + BiLSTM,
#   both directions: 5+3 and 5+3 22.6; 5+3 and 3+2 22.5; 5+3 and 2+1 22.3; 3+2 and 2+1 22.2; 5+3 and the
#   BiLSTM's left-to-right 5 only 23.1), the cheapest of the best; the sweep then measured it as 22.30. The
#   imitation-learning transducers (--rollin 1.0) as the second group instead: 23.5. For the BiLSTM speller
#   alone (80 epochs) 5 and 3 had given 25.9 against 26.7 for 3 and 1.
# - medium: 2 members and 2 right-to-left ones; the reranking is worth most here (bul: 12.3 for one member,
#   11.2 for two, 6.2 reranked by one right-to-left member).
# - high: 3 members and 2 right-to-left ones, 44.43 against 44.60 for 2 and 1, 47.22 for the members' beam
#   and 49.02 for one member decoded greedily. A member takes about 3 min on 2 quiet threads.
ENSEMBLES: dict[str, dict[str, Any]] = {
    "low": {"seeds": (1, 2, 3), "r2l_seeds": (1, 2), "beam": 5,
            "companions": {"name": "lstm", "seeds": (1, 2), "r2l_seeds": (1,),
                           "settings": {"arch": "lstm", "model.dropout": 0.5, "train.epochs": 80}}},
    "medium": {"seeds": (1, 2), "r2l_seeds": (1, 2), "beam": 5},
    "high": {"seeds": (1, 2, 3), "r2l_seeds": (1, 2), "beam": 5},
}

# Spelling units where grapheme clusters leave too many symbols for the data (chosen on train / dev): Khmer's
# clusters (consonant + coeng + subscript + vowel signs) are 621 symbols in 800 words and 47 of its 100 dev
# words hold one never seen in train (code points: 66 symbols, none unseen; dev WER 49 against 86); Korean's
# 1,089 Hangul syllables leave 46 of 1,000 dev words with an unseen one, its jamo (NFD) 2 (67 symbols).
SPELLING_UNITS: dict[str, str] = {"khm": "codepoints", "kor": "decomposed"}


def preset_for(train_words: int) -> str:
    """The preset for a training set of this many words: low < 2,000 <= medium < 20,000 <= high."""
    return "low" if train_words < 2000 else "medium" if train_words < 20000 else "high"


def train_words(data_cfg) -> int:
    """Lines in the language's train file (what the preset is chosen by), or --data.limit_train if smaller."""
    from dllab.data.sigmorphon import language_files

    path = Path(language_files(data_cfg.sigmorphon_dir, data_cfg.language).train)
    lines = sum(1 for line in path.read_bytes().split(b"\n") if line.strip())
    return min(lines, data_cfg.limit_train) if data_cfg.limit_train else lines


def resolve(cfg, name: str) -> str:
    """The preset's name: `name`, or for "auto" the one for the configured language's training-set size."""
    name = preset_for(train_words(cfg.data)) if name == "auto" else name
    if name not in PRESETS or name == "common":
        raise UserError(f"--preset: {name!r} is not one of auto, {', '.join(k for k in PRESETS if k != 'common')}")
    return name


def apply_preset(cfg, name: str, overrides: Sequence[str] = ()):
    """`cfg` with the common settings and the preset `name` ("auto": by the training set's size), then the
    command line's `overrides` again, so that what the user says wins."""
    name = resolve(cfg, name)
    for key, value in {**PRESETS["common"], **PRESETS[name]}.items():
        cfg = replace_path(cfg, key, value)
    if cfg.data.spelling_units == "auto" and cfg.data.language in SPELLING_UNITS:
        cfg = replace_path(cfg, "data.spelling_units", SPELLING_UNITS[cfg.data.language])
    return apply_overrides(cfg, overrides)
