import math
from fractions import Fraction

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dllab.data.images import TensorData
from dllab.engine import OptimConfig, RunDir, TrainConfig, fit, seed_everything
from dllab.engine.checkpoint import load_checkpoint, save_checkpoint
from dllab.errors import UserError


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorData(x, y)


def _model(seed):
    seed_everything(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))


def _run(tmp_path, name, epochs=3, loss_fn=None, resume=False, schedule="constant", keep_top=0):
    train, val = _data(), _data(40, seed=1)
    model = _model(7)
    run = RunDir(tmp_path / name)

    def loss(m, batch):
        x, y = batch
        return F.cross_entropy(m(x), y)

    def evaluate(m):
        x, y = val.tensors
        return {"val_acc": float((m(x).argmax(-1) == y).float().mean()), "val_loss": float(F.cross_entropy(m(x), y))}

    optim = OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, schedule=schedule, warmup_steps=5)
    tcfg = TrainConfig(epochs=epochs, batch_size=8, seed=3, device="cpu")
    run.path.mkdir(parents=True, exist_ok=True)
    result = fit(model, train, loss_fn or loss, evaluate, optim, tcfg, run, resume=resume, keep_top=keep_top)
    return result, run, model


def _strip(history):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in history]


def test_same_seed_same_metrics_bit_for_bit(tmp_path):
    a, _, ma = _run(tmp_path, "a")
    b, _, mb = _run(tmp_path, "b")
    assert _strip(a.history) == _strip(b.history)
    for pa, pb in zip(ma.parameters(), mb.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert len(a.history) == 3 and {"train_loss", "val_acc", "lr", "seconds"} <= set(a.history[0])


@pytest.mark.parametrize("schedule", ["constant", "warmup_linear"])
def test_interrupted_run_resumes_to_the_same_metrics(tmp_path, schedule):
    full, _, full_model = _run(tmp_path, "full", schedule=schedule)
    calls = {"n": 0}

    def dying_loss(m, batch):
        calls["n"] += 1
        if calls["n"] == 12 + 5:  # 12 steps per epoch: die in the middle of epoch 2
            raise KeyboardInterrupt
        x, y = batch
        return F.cross_entropy(m(x), y)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "cut", loss_fn=dying_loss, schedule=schedule)
    assert len(RunDir(tmp_path / "cut").read_metrics()) == 1
    resumed, _, resumed_model = _run(tmp_path, "cut", resume=True, schedule=schedule)
    assert _strip(resumed.history) == _strip(full.history)
    for pa, pb in zip(full_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_best_checkpoint_tracks_the_monitored_metric(tmp_path):
    result, run, _ = _run(tmp_path, "best")
    best = max(r["val_acc"] for r in result.history)
    state = load_checkpoint(run.best_checkpoint)
    assert state["val_acc"] == best == result.best_value
    assert result.history[result.best_epoch - 1]["val_acc"] == best
    assert not math.isnan(result.history[-1]["train_loss"])


def test_keep_top_keeps_the_best_epochs_weights_and_averages_them(tmp_path):
    from dllab.engine import average_checkpoints, top_checkpoints

    result, run, _ = _run(tmp_path, "top", epochs=5, keep_top=2)
    ranked = sorted(result.history, key=lambda r: (-r["val_acc"], r["epoch"]))[:2]
    kept = top_checkpoints(run)
    assert sorted(load_checkpoint(p)["epoch"] for p in kept) == sorted(r["epoch"] for r in ranked)
    a, b = (load_checkpoint(p)["model"] for p in kept)
    mean = average_checkpoints(kept)
    for name in a:
        assert torch.allclose(mean[name], (a[name] + b[name]) / 2)
    # a fresh start forgets the kept epochs of the earlier attempt
    _run(tmp_path, "top", epochs=1, keep_top=2)
    assert [load_checkpoint(p)["epoch"] for p in top_checkpoints(run)] == [1]
    with pytest.raises(UserError, match="no checkpoints"):
        average_checkpoints([])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"w": torch.ones(3), "epoch": 1})

    def broken_save(obj, fh, *a, **k):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"w": torch.zeros(3), "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": Fraction(1, 3)}, path)  # any non-tensor class must be refused
    with pytest.raises(UserError, match="cannot load checkpoint"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_fit_trains_under_the_configured_cpu_kernels_and_restores_the_global_flag(tmp_path):
    from dllab.engine.loop import cpu_kernels

    seen = []
    train = _data()

    def loss(m, batch):
        seen.append(torch.backends.mkldnn.enabled)
        x, y = batch
        return F.cross_entropy(m(x), y)

    before = torch.backends.mkldnn.enabled
    run = RunDir(tmp_path / "native")
    run.path.mkdir(parents=True)
    tcfg = TrainConfig(epochs=1, batch_size=32, seed=3, device="cpu", mkldnn=False)
    fit(_model(7), train, loss, lambda m: {"val_acc": 0.5}, OptimConfig(), tcfg, run)
    assert seen and not any(seen)
    assert torch.backends.mkldnn.enabled == before
    with pytest.raises(RuntimeError), cpu_kernels(not before):
        assert torch.backends.mkldnn.enabled == (not before)
        raise RuntimeError("restored even when the block fails")
    assert torch.backends.mkldnn.enabled == before


def test_length_buckets_cover_every_example_once_with_less_padding():
    from dllab.engine.loop import index_batches

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 30, (1000,), generator=g)
    plain = index_batches(1000, 16, torch.Generator().manual_seed(1))
    bucketed = index_batches(1000, 16, torch.Generator().manual_seed(1), lengths=lengths, bucket=10)
    assert sorted(torch.cat(bucketed).tolist()) == list(range(1000))
    assert len(bucketed) == len(plain)

    def padded(batches):  # what padding to each batch's longest costs
        return sum(int(lengths[b].max()) * len(b) for b in batches)

    assert padded(bucketed) < 0.8 * padded(plain)
    again = index_batches(1000, 16, torch.Generator().manual_seed(1), lengths=lengths, bucket=10)
    assert all(torch.equal(a, b) for a, b in zip(bucketed, again, strict=True))  # seeded: resumable
    other = index_batches(1000, 16, torch.Generator().manual_seed(2), lengths=lengths, bucket=10)
    assert not all(torch.equal(a, b) for a, b in zip(bucketed, other, strict=True))  # a new order per seed


def test_bucket_needs_data_with_lengths(tmp_path):
    train = _data()
    cfg = TrainConfig(epochs=1, batch_size=16, bucket=4)
    with pytest.raises(UserError, match="--train.bucket"):
        fit(_model(0), train, lambda m, b: F.cross_entropy(m(b[0]), b[1]), lambda m: {"acc": 0.0},
            OptimConfig(optimizer="sgd", lr=0.1), cfg, RunDir(tmp_path / "r"), monitor="acc")  # fmt: skip


def test_bf16_precision_runs_the_loss_under_autocast_and_keeps_float32_weights(tmp_path):
    seen = []
    train = _data()

    def loss(m, batch):
        x, y = batch
        logits = m(x)
        seen.append((torch.is_autocast_enabled("cpu"), logits.dtype))
        return F.cross_entropy(logits.float(), y)

    def evaluate(m):
        seen.append(("eval", torch.is_autocast_enabled("cpu")))
        return {"val_acc": 0.5}

    model = _model(7)
    before = [p.detach().clone() for p in model.parameters()]
    run = RunDir(tmp_path / "bf16")
    run.path.mkdir(parents=True)
    tcfg = TrainConfig(epochs=1, batch_size=32, seed=3, device="cpu", precision="bf16")
    fit(model, train, loss, evaluate, OptimConfig(lr=0.1), tcfg, run)
    assert seen[:3] == [(True, torch.bfloat16)] * 3 and seen[3] == ("eval", False)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
