"""Retrieval and capacity experiments on tiny generated images and random +-1 patterns."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dllab.config import apply_overrides, parse_overrides
from dllab.errors import UserError
from dllab.hopfield.experiment import (
    CapacityConfig,
    RetrievalConfig,
    capacity_search,
    classical_retrieved,
    corrupt,
    run_capacity,
    run_retrieval,
    to_patterns,
)


def blob_images(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 28, 28) images in [0, 1]: a few random bright rectangles each, distinct enough to be retrievable."""
    gen = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.rand(n, 28, 28, generator=gen)
    for i in range(n):
        for _ in range(3):
            r, c = torch.randint(0, 22, (2,), generator=gen).tolist()
            images[i, r : r + 6, c : c + 6] = 1.0
    return images


def test_to_patterns_standardises_and_pools():
    x = to_patterns(blob_images(5))
    assert x.shape == (5, 784)
    torch.testing.assert_close(x.mean(1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.norm(dim=1), torch.full((5,), 28.0), atol=1e-3, rtol=0)
    assert to_patterns(blob_images(5), side=7).shape == (5, 49)
    raw = to_patterns(blob_images(5), "none")
    assert raw.min() >= 0 and raw.max() <= 1


def test_mask_hides_the_bottom_rows_only():
    x = to_patterns(blob_images(3))
    cfg = RetrievalConfig(corruption="mask", mask_fraction=0.25)
    q = corrupt(x, cfg, torch.Generator().manual_seed(0)).view(3, 28, 28)
    assert (q[:, 21:] == 0).all()
    torch.testing.assert_close(q[:, :21], x.view(3, 28, 28)[:, :21])
    noisy = corrupt(x, RetrievalConfig(corruption="noise", noise_std=0.5), torch.Generator().manual_seed(0))
    assert 0.4 < float((noisy - x).std()) < 0.6


def test_retrieval_experiment_large_beta_retrieves_small_beta_averages(tmp_path):
    cfg = RetrievalConfig(n_patterns=(10, 40), betas=(1e-4, 2.0), queries=12, corruption="noise", noise_std=0.5,
                          grid_patterns=10, grid_betas=(1e-4, 2.0), grid_queries=3, max_steps=30)  # fmt: skip
    result = run_retrieval(cfg, tmp_path, blob_images(40))
    cell = {(r["n_patterns"], r["beta"]): r for r in result["rows"]}
    for n in (10, 40):
        assert cell[n, 2.0]["accuracy"] == 1.0 and cell[n, 2.0]["effective_patterns"] < 1.1
        assert cell[n, 1e-4]["accuracy"] == 0.0 and cell[n, 1e-4]["effective_patterns"] > 0.9 * n
    for trace in result["energy_traces"]:  # float32: the beta^-1 lse term rounds at ~1e-7 * log(N) / beta
        assert np.diff(trace["energy"]).max(initial=0) <= 1e-5 * max(trace["energy"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == result["rows"] and saved["config"]["betas"] == [1e-4, 2.0]
    with np.load(tmp_path / "grids.npz") as grids:
        assert grids["stored"].shape == (3, 28, 28) and grids["beta=2"].shape == (3, 28, 28)
        assert grids["ok beta=2"].all() and not grids["ok beta=0.0001"].any()


@pytest.mark.parametrize(
    "words, key",
    [(["--betas=0"], "--betas"), (["--n_patterns=0"], "--n_patterns"), (["--mask_fraction=1.5"], "--mask_fraction"),
     (["--queries=0"], "--queries")],
)  # fmt: skip
def test_retrieval_rejects_bad_config_naming_the_key(tmp_path, words, key):
    with pytest.raises(UserError, match=key):  # the option's declared range, checked as the overrides are read
        apply_overrides(RetrievalConfig(n_patterns=(10,), grid_patterns=10), words)
    with pytest.raises(UserError, match=key):  # and again by the experiment, for callers that skip the parser
        run_retrieval(replace(RetrievalConfig(n_patterns=(10,), grid_patterns=10), **_parsed(words)), tmp_path,
                      blob_images(10))  # fmt: skip
    with pytest.raises(UserError, match="n_patterns"):
        run_retrieval(RetrievalConfig(n_patterns=(11,), grid_patterns=10), tmp_path, blob_images(10))


def _parsed(words):
    return {k: v for k, v in parse_overrides(RetrievalConfig, words).items()}


def test_classical_network_recalls_few_orthogonal_patterns_exactly():
    X = torch.tensor([[1.0, 1, 1, 1, -1, -1, -1, -1], [1, -1, 1, -1, 1, -1, 1, -1]])
    q = X.clone()
    q[:, 0] *= -1  # one wrong bit each
    ok = classical_retrieved(X, torch.tensor([0, 1]), q, torch.Generator().manual_seed(0))
    assert ok.all()


def test_capacity_search_doubles_until_failure_and_marks_capped():
    cfg = CapacityConfig(queries=20, noise_std=0.3)
    gen = torch.Generator().manual_seed(0)
    bank = torch.randint(0, 2, (64, 32), generator=torch.Generator().manual_seed(1)).float() * 2 - 1
    res = capacity_search(lambda n: bank[:n], 32, 64, cfg, gen, beta=8.0)
    assert res["capacity"] == 64 and res["capped"]
    assert [c["n_patterns"] for c in res["curve"]] == [2, 4, 8, 16, 32, 64]
    classical = capacity_search(lambda n: bank[:n], 32, 64, cfg, gen, beta=None)
    assert classical["capacity"] < 64 and not classical["capped"]
    assert classical["curve"][-1]["accuracy"] < 0.99


def test_capacity_experiment_modern_beats_classical(tmp_path):
    cfg = CapacityConfig(sides=(7,), random_dims=(12, 24), betas=(8.0,), queries=30, max_random_patterns=1024)
    result = run_capacity(cfg, tmp_path, blob_images(64))
    rows = {(r["family"], r["network"], r["dim"]): r for r in result["rows"]}
    assert rows["fashion-mnist", "modern", 49]["capacity"] >= 2
    for d in (12, 24):
        assert rows["random +-1", "modern", d]["capacity"] > rows["random +-1", "classical", d]["capacity"]
    assert rows["random +-1", "modern", 24]["capacity"] >= rows["random +-1", "modern", 12]["capacity"]
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == result["rows"]
    with pytest.raises(UserError, match="--betas"):
        run_capacity(CapacityConfig(betas=(0.0,), sides=()), tmp_path)
