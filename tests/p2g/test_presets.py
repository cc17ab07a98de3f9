"""Per-size SIGMORPHON presets: chosen by training-set size, per-language spelling units, overrides win."""

import pytest

from dllab.errors import UserError
from dllab.p2g.config import DataConfig, P2GConfig
from dllab.p2g.presets import PRESETS, apply_preset, preset_for, resolve


def _task(tmp_path, language, subtask, n):
    (tmp_path / subtask).mkdir(exist_ok=True)
    for split in ("train", "dev"):
        (tmp_path / subtask / f"{language}_{split}.tsv").write_text("ab\ta b\n" * n, encoding="utf-8")
    return P2GConfig(data=DataConfig(source="sigmorphon", language=language, sigmorphon_dir=str(tmp_path)))


def test_preset_by_training_set_size():
    assert [preset_for(n) for n in (800, 1999, 2000, 8000, 19999, 33344)] == ["low"] * 2 + ["medium"] * 3 + ["high"]


def test_apply_preset_sets_the_size_settings_and_leaves_the_users_overrides(tmp_path):
    cfg = _task(tmp_path, "khm", "low", 800)
    assert resolve(cfg, "auto") == "low"
    low = apply_preset(cfg, "auto")
    assert low.model.hidden == PRESETS["low"]["model.hidden"] and low.model.attn and low.select == "wer"
    assert low.data.spelling_units == "codepoints"  # khm's clusters are too many for 800 words
    mine = apply_preset(cfg, "auto", ["--model.hidden", "64", "--data.spelling_units", "graphemes"])
    assert mine.model.hidden == 64 and mine.data.spelling_units == "graphemes"
    medium = apply_preset(_task(tmp_path, "bul", "medium", 8000), "auto")
    assert medium.model.hidden == PRESETS["medium"]["model.hidden"]
    assert apply_preset(cfg, "high").train.epochs == PRESETS["high"]["train.epochs"]
    with pytest.raises(UserError, match="--preset"):
        apply_preset(cfg, "common")


def test_a_sweep_member_takes_the_preset_the_seed_and_scaled_epochs(tmp_path):
    from dllab.p2g.sigmorphon import member_config

    _task(tmp_path, "ady", "low", 800)
    cfg = member_config("ady", "p2g", 3, "auto", ["--model.dropout", "0.4"], str(tmp_path), epochs_scale=0.5)
    assert cfg.train.seed == 3 and cfg.model.dropout == 0.4 and cfg.data.direction == "p2g"
    assert cfg.train.epochs == round(PRESETS["low"]["train.epochs"] * 0.5)


def test_a_sweep_over_sizes_gives_each_language_its_own_sizes_members(tmp_path, monkeypatch):
    import dllab.p2g.sigmorphon as sigmorphon
    from dllab.config import from_dict
    from dllab.p2g.config import P2GConfig
    from dllab.p2g.presets import ENSEMBLES

    _task(tmp_path, "eng_us", "high", 20000)
    _task(tmp_path, "bul", "medium", 8000)
    _task(tmp_path, "ady", "low", 800)
    planned, kwargs = {}, {}

    def run_jobs(jobs, workers):
        for job in jobs:
            kwargs[job.name] = job.kwargs
            planned[job.name] = (len(job.kwargs["members"]), len(job.kwargs["right_to_left"]),
                                 len(job.kwargs["companions"]))  # fmt: skip
        return {}

    monkeypatch.setattr(sigmorphon, "run_jobs", run_jobs)
    sigmorphon.run_sweep(["eng_us", "bul", "ady"], ["g2p"], tmp_path / "runs", data_dir=str(tmp_path),
                         overrides=["--model.hidden", "64", "--rollin", "0.5"])  # fmt: skip

    def companions(size):
        plan = ENSEMBLES[size].get("companions")
        return len(plan["seeds"]) + len(plan["r2l_seeds"]) if plan else 0

    assert planned == {f"g2p/{lang}": (len(ENSEMBLES[size]["seeds"]), len(ENSEMBLES[size]["r2l_seeds"]),
                                       companions(size))
                       for lang, size in (("eng_us", "high"), ("bul", "medium"), ("ady", "low"))}  # fmt: skip
    # low's companions: the BiLSTM speller in both directions beside the transducers, the user's overrides kept
    # but for what makes them companions (another --arch; --rollin is the transducer's)
    others = [(path, from_dict(P2GConfig, config)) for path, config in kwargs["g2p/ady"]["companions"]]
    members = [from_dict(P2GConfig, config) for _, config in kwargs["g2p/ady"]["members"]]
    assert {m.arch for m in members} == {"transducer"} and {c.arch for _, c in others} == {"lstm"}
    assert [path.rsplit("/", 1)[1] for path, _ in others] == ["lstm-s1", "lstm-s2", "lstm-r2l-s1"]
    assert [c.data.reverse for _, c in others] == [False, False, True]
    assert all(c.model.hidden == 64 and c.model.dropout == 0.5 and c.train.epochs == 80 for _, c in others)
    assert {c.rollin for _, c in others} == {0.0} and {m.rollin for m in members} == {0.5}
    # explicit --seeds replace the preset's plan: no companions then
    planned.clear()
    sigmorphon.run_sweep(["ady"], ["g2p"], tmp_path / "runs2", data_dir=str(tmp_path), seeds=[1])
    assert planned == {"g2p/ady": (1, 0, 0)}
