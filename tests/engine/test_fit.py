import errno
import json
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

    import dllab.io

    def broken_fsync(fd):  # the half-written temporary file hits a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dllab.io.os, "fsync", broken_fsync)
    with pytest.raises(UserError, match=r"cannot write .*last.pt: No space left on device \(free some space"):
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


def _nan_at(epoch, step, seen=None):
    """A cross-entropy loss that turns NaN at (epoch, step) of a 12-step epoch (steps counted from 1)."""
    calls = [0]

    def loss(m, batch):
        calls[0] += 1
        x, y = batch
        value = F.cross_entropy(m(x), y)
        if calls[0] == (epoch - 1) * 12 + step:
            return value * float("nan")
        return value

    return loss


def test_a_non_finite_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path):
    from dllab.engine.loop import NonFiniteLoss

    with pytest.raises(NonFiniteLoss, match=r"non-finite loss nan at epoch 2, step 5/12.*checkpoint \(epoch 1\)"):
        _run(tmp_path, "r", epochs=3, loss_fn=_nan_at(2, 5))
    run = RunDir(tmp_path / "r")
    assert [r["epoch"] for r in run.read_metrics()] == [1]
    assert load_checkpoint(run.last_checkpoint)["epoch"] == 1
    for line in run.metrics_path.read_text().splitlines():  # strict JSON: the parser refuses NaN / Infinity
        json.loads(line, parse_constant=lambda token: pytest.fail(f"bare {token} in metrics.jsonl"))
    before = load_checkpoint(run.last_checkpoint)["model"]

    # --resume with a lower learning rate goes on from epoch 1's checkpoint.
    train = _data()
    model = _model(7)
    optim = OptimConfig(optimizer="sgd", lr=0.01, momentum=0.9)
    tcfg = TrainConfig(epochs=3, batch_size=8, seed=3, device="cpu")

    def loss(m, batch):
        return F.cross_entropy(m(batch[0]), batch[1])

    result = fit(model, train, loss, lambda m: {"val_acc": 0.5}, optim, tcfg, run, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [r["lr"] for r in result.history] == [0.1, 0.01, 0.01]
    assert not torch.equal(before["0.weight"], model[0].weight)


def test_a_non_finite_gradient_stops_before_the_update(tmp_path):
    from dllab.engine.loop import NonFiniteLoss

    def loss(m, batch):
        x, y = batch
        value = F.cross_entropy(m(x), y)
        return value + 0.0 * torch.sqrt(m[0].weight.abs() * 0).sum()  # finite value, infinite gradient

    with pytest.raises(NonFiniteLoss, match=r"non-finite gradient at epoch 1, step 1/12.*no epoch"):
        _run(tmp_path, "g", epochs=1, loss_fn=loss)
    assert RunDir(tmp_path / "g").read_metrics() == [] and not RunDir(tmp_path / "g").last_checkpoint.exists()


def test_metrics_are_appended_before_the_checkpoint(tmp_path, monkeypatch):
    """A crash while saving epoch 2's checkpoint leaves epoch 2's record, which --resume drops and redoes."""
    import dllab.engine.loop as loop

    real, calls = loop.save_checkpoint, []

    def failing(path, state):
        if path.name == "last.pt" and state["epoch"] == 2:
            raise UserError("cannot write last.pt: No space left on device")
        calls.append(path.name)
        real(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", failing)
    with pytest.raises(UserError, match="No space"):
        _run(tmp_path, "c", epochs=3)
    run = RunDir(tmp_path / "c")
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2] and load_checkpoint(run.last_checkpoint)["epoch"] == 1
    monkeypatch.undo()
    result, _, _ = _run(tmp_path, "c", epochs=3, resume=True)
    reference, _, _ = _run(tmp_path, "ref", epochs=3)
    assert _strip(result.history) == _strip(reference.history)


def test_a_second_process_cannot_train_the_same_run(tmp_path):
    import subprocess
    import sys
    import time

    run = RunDir(tmp_path / "busy")
    run.path.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dllab.engine.rundir import RunDir; "
         "RunDir(sys.argv[1]).claim(); print('held', flush=True); time.sleep(60)", str(run.path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        began = time.perf_counter()
        with pytest.raises(UserError, match=rf"run .*busy is in use by another dllab process \(pid {holder.pid}\)"):
            _run(tmp_path, "busy", epochs=1)
        assert time.perf_counter() - began < 5  # refused at once, not after waiting
        assert run.read_metrics() == []
    finally:
        holder.kill()
        holder.wait()
    _run(tmp_path, "busy", epochs=1)  # the holder died: its lock went with it


def test_non_finite_gradients_are_found_without_changing_them():
    from dllab.engine.loop import non_finite_gradients

    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    a.grad, b.grad = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, -0.5])
    assert not bool(non_finite_gradients([a, b])) and torch.equal(a.grad, torch.tensor([1.0, 2.0, 3.0]))
    b.grad[1] = float("inf")
    assert bool(non_finite_gradients([a, b]))
    b.grad[1] = float("nan")
    assert bool(non_finite_gradients([a, b])) and not bool(non_finite_gradients([a]))
    assert not bool(non_finite_gradients([nn.Parameter(torch.ones(1))]))  # no gradient yet


def test_a_non_finite_gradient_is_caught_when_clipping_too(tmp_path):
    from dllab.engine.loop import NonFiniteLoss

    train = _data()
    model = _model(7)

    def loss(m, batch):
        return F.cross_entropy(m(batch[0]), batch[1]) + 0.0 * torch.sqrt(m[0].weight.abs() * 0).sum()

    optim = OptimConfig(optimizer="sgd", lr=0.1, grad_clip=1.0)
    tcfg = TrainConfig(epochs=1, batch_size=8, seed=3, device="cpu")
    with pytest.raises(NonFiniteLoss, match="non-finite gradient at epoch 1, step 1/12"):
        fit(model, train, loss, lambda m: {"val_acc": 0.5}, optim, tcfg, RunDir(tmp_path / "c"))


def test_budget_batches_cover_every_example_once_within_the_budget():
    from dllab.engine.loop import budget_batches

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(10, 300, (1000,), generator=g)
    lengths[7] = 5000  # longer than the budget: a batch of its own
    batches = budget_batches(lengths, 2000, torch.Generator().manual_seed(1), bucket=10)
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    sizes = [len(b) * int(lengths[b].max()) for b in batches]
    assert [b.tolist() for b in batches if len(b) * int(lengths[b].max()) > 2000] == [[7]]
    assert sum(sizes) > 0.85 * 2000 * (len(batches) - 1)  # full batches: packing wastes little of the budget
    counts = {int(lengths[b].max()) // 100: len(b) for b in batches}
    assert counts[0] > 2 * counts[2]  # short examples travel in larger batches than long ones
    again = budget_batches(lengths, 2000, torch.Generator().manual_seed(1), bucket=10)
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))  # seeded: resumable
    plain = budget_batches(lengths, 2000, torch.Generator().manual_seed(1), shuffle=False)
    assert torch.equal(torch.cat(plain), torch.arange(1000))
    with pytest.raises(ValueError, match="budget"):
        budget_batches(lengths, 0, torch.Generator())


class _Sized(TensorData):
    """TensorData whose examples have lengths (what --train.batch_budget sorts and packs by)."""

    def length_keys(self):
        return torch.arange(len(self)) % 7 + 1


def test_fit_with_a_batch_budget_sees_every_example_and_sizes_the_schedule(tmp_path):
    base = _data()
    train = _Sized(*base.tensors)
    seen = []

    def loss(m, batch):
        x, y = batch
        seen.append(len(y))
        return F.cross_entropy(m(x), y)

    # batch_size 2 would give 48 steps per epoch: the schedule must count the budget's batches instead
    cfg = TrainConfig(epochs=2, batch_size=2, seed=3, device="cpu", batch_budget=28, bucket=2)
    optim = OptimConfig(optimizer="sgd", lr=0.1, schedule="warmup_linear", warmup_steps=2)
    run = RunDir(tmp_path / "budget")
    run.path.mkdir(parents=True)
    fit(_model(0), train, loss, lambda m: {"val_acc": 0.5}, optim, cfg, run)
    assert sum(seen) == 2 * len(train) and max(seen) > 8  # batches of up to 28 examples of length 1
    assert len(seen) < 2 * 48
    assert run.read_metrics()[-1]["lr"] < 0.1 * 0.2  # the schedule decayed over the budget's step count
    with pytest.raises(UserError, match="--train.batch_budget"):
        fit(_model(0), base, loss, lambda m: {"val_acc": 0.5}, optim, cfg, RunDir(tmp_path / "plain"))


def test_auto_precision_is_bf16_only_where_the_cpu_has_amx(monkeypatch):
    from dllab.engine.loop import resolve_precision

    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert resolve_precision("auto") == "fp32"  # a torch without the probe: the safe choice
