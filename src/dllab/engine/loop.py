"""The one training loop for every model in dllab.

A model plugs in with three things:
    train_data   an object with __len__ and batch(idx: LongTensor) -> tensors (e.g. data.images.TensorData)
    loss_fn      (model, batch) -> scalar mean loss of the batch
    evaluate_fn  (model) -> {"val_acc": ..., ...}; called under eval() and no_grad() after every epoch
The loop shuffles with its own seeded generator, takes batches by index, checkpoints atomically after
every epoch, keeps the best checkpoint by `monitor`, logs one metrics record per epoch, and resumes an
interrupted run bit for bit (model, optimizer, schedule and both RNG states are in the checkpoint).
With `--train.precision bf16` (or `auto` on a CPU with AMX) the loss (forward pass) runs under bfloat16
autocast: weights, optimizer state and gradients stay float32, no loss scaling is needed (bfloat16 has
float32's range), and validation runs in float32.

Under torchrun the same loop runs data-parallel (see dllab.engine.distributed): every rank draws the same
shuffled global batches of `batch_size` and trains on its strided share of each through
DistributedDataParallel, so the optimisation step matches one process with the same global batch; rank 0
alone writes metrics and checkpoints. A global batch smaller than the world size (a ragged last batch) is
dropped so that no rank waits on a step the others skip.

It holds the run's lock (`RunDir.locked`) while it trains, so a second process cannot train the same run.

A non-finite loss or gradient norm stops training at once, before the optimizer step that would spread it
into the weights, with a `NonFiniteLoss` (a UserError: exit 2) naming the epoch and step. Nothing of the
broken epoch is written, so the last checkpoint is the last good epoch and `--resume` with a lower
`--lr` (or a `--optim.grad_clip`) goes on from it. The check costs one fused pass over the gradients
and the loss (`NonFiniteCheck`; the clipped norm when `--optim.grad_clip` is on) and one host sync per step.
Each epoch's metrics record is appended before its checkpoint is written: a crash between the two leaves a
record that `--resume` drops and recomputes, never a checkpoint without its record.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dllab.engine import distributed
from dllab.engine.checkpoint import load_checkpoint, save_checkpoint
from dllab.engine.logs import progress
from dllab.engine.options import OptimConfig, TrainConfig
from dllab.engine.rundir import RunDir
from dllab.engine.track import Tracker
from dllab.errors import UserError

log = logging.getLogger(__name__)


class NonFiniteLoss(UserError):
    """Training met a NaN or infinite loss or gradient norm; the run keeps its last good checkpoint."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from dllab.errors import UserError

        raise UserError("--train.device=cuda but no CUDA device is available")
    return torch.device(name)


def resolve_precision(name: str, device: str | torch.device = "cpu") -> str:
    """"fp32" or "bf16": `name`, or for "auto" bf16 where it is fast here. Without AMX a CPU emulates bfloat16
    matmuls and trains slower than in float32, so "auto" keeps fp32 there."""
    if name != "auto":
        return name
    if torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x: absent means unknown
    return "bf16" if amx is not None and amx() else "fp32"


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


@contextmanager
def cpu_kernels(mkldnn: bool) -> Iterator[None]:
    """Run the block with oneDNN (mkldnn) CPU convolutions on or off (`TrainConfig.mkldnn`), then restore.

    For the 2023-24 CNN at batch 8 torch's native convolution kernels train faster than oneDNN's (see
    `dllab bench vision`); larger convolutions usually prefer oneDNN. Results differ only by rounding.
    """
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = mkldnn
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on `threads` torch threads (a plan task's or a sweep job's), then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_schedule(opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
    """A per-step LambdaLR: constant, or linear warm-up then linear decay to zero at total_steps."""
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    warm = max(cfg.warmup_steps, 0)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def index_batches(
    n: int,
    batch_size: int,
    generator: torch.Generator,
    shuffle: bool = True,
    lengths: Tensor | None = None,
    bucket: int = 0,
) -> list[Tensor]:
    """The epoch's batches of example indices.

    With `lengths` (n,) and `bucket` > 0 ("sortish" batching): the shuffled order is cut into pools of
    `bucket` batches, each pool is sorted by length and cut into batches, and the batches are shuffled, so
    a batch holds examples of similar lengths (little padding) while each epoch still draws a new random
    order. Every example is still seen once per epoch.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if lengths is None or bucket <= 0:
        return list(order.split(batch_size))
    batches = []
    for pool in order.split(batch_size * bucket):
        pool = pool[torch.argsort(lengths[pool], stable=True)]
        batches.extend(pool.split(batch_size))
    if not shuffle:
        return batches
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def budget_batches(
    lengths: Tensor, budget: int, generator: torch.Generator, shuffle: bool = True, bucket: int = 0
) -> list[Tensor]:
    """The epoch's batches of example indices, each within a padded-size budget (`--train.batch_budget`).

    A batch holds as many examples as keep (examples x its longest length) <= `budget`; an example longer
    than the budget alone is a batch of one. With `bucket` > 0 the shuffled order is cut into pools of about
    `bucket` batches' worth of length, each pool sorted by length before it is packed (as `index_batches`
    does), and the batches are shuffled: short examples travel in large batches, long ones in small ones,
    and each batch's memory stays about the same. Every example is seen once per epoch.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    order = torch.randperm(len(lengths), generator=generator) if shuffle else torch.arange(len(lengths))
    pools = [order]
    if bucket > 0 and len(order):
        per_pool = max(1, int(bucket * budget / float(lengths.float().mean().clamp(min=1))))
        pools = [pool[torch.argsort(lengths[pool], stable=True)] for pool in order.split(per_pool)]
    batches: list[Tensor] = []
    for pool in pools:
        batch: list[int] = []
        longest = 0
        for i, n in zip(pool.tolist(), lengths[pool].tolist(), strict=True):
            if batch and (len(batch) + 1) * max(longest, n) > budget:
                batches.append(torch.tensor(batch))
                batch, longest = [], 0
            batch.append(i)
            longest = max(longest, n)
        if batch:
            batches.append(torch.tensor(batch))
    if not shuffle:
        return batches
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def epoch_batches(n: int, train_cfg: TrainConfig, generator: torch.Generator, lengths: Tensor | None) -> list[Tensor]:
    """The epoch's batches as `train_cfg` asks: `budget_batches` with a `batch_budget`, else `index_batches`."""
    if train_cfg.batch_budget > 0:
        return budget_batches(lengths, train_cfg.batch_budget, generator, bucket=train_cfg.bucket)
    return index_batches(n, train_cfg.batch_size, generator, lengths=lengths, bucket=train_cfg.bucket)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def eval_batches(data, batch_size: int) -> Iterator[Any]:
    """Batches of `data` in order, for evaluation."""
    for start in range(0, len(data), batch_size):
        yield data.batch(torch.arange(start, min(start + batch_size, len(data))))


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_value: float


def fit(
    model: nn.Module,
    train_data,
    loss_fn: Callable[[nn.Module, Any], Tensor],
    evaluate_fn: Callable[[nn.Module], dict[str, float]],
    optim_cfg: OptimConfig,
    train_cfg: TrainConfig,
    run: RunDir,
    monitor: str = "val_acc",
    mode: Literal["max", "min"] = "max",
    resume: bool = False,
    show_progress: bool = True,
    keep_top: int = 0,
) -> FitResult:
    """Train `model` (already built under `seed_everything(train_cfg.seed)`) and fill `run`.

    `keep_top` > 1 also keeps the weights of the `keep_top` best epochs by `monitor` (checkpoints/top/, see
    `top_checkpoints`), for checkpoint averaging.

    Raises NonFiniteLoss (see the module docstring) when a loss or gradient norm is not finite."""
    dist_info = distributed.setup()
    with run.locked() if dist_info.is_main else nullcontext():  # rank 0 alone writes the run
        return _fit(model, train_data, loss_fn, evaluate_fn, optim_cfg, train_cfg, run, monitor, mode, resume,
                    show_progress, dist_info, keep_top)  # fmt: skip


def _fit(model, train_data, loss_fn, evaluate_fn, optim_cfg, train_cfg, run, monitor, mode, resume, show_progress,
         dist_info, keep_top) -> FitResult:  # fmt: skip
    main = dist_info.is_main
    device = distributed.device_for(train_cfg.device) or resolve_device(train_cfg.device)
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    model.to(device)
    train_model = distributed.wrap(model, device)  # DDP under torchrun; `model` itself otherwise
    if dist_info.enabled and not main:
        # Rank 0 keeps the single-process RNG stream; the others draw their own dropout masks.
        torch.manual_seed(train_cfg.seed + 7919 * dist_info.rank)
    fail_at = _injected_failure(dist_info.rank)
    optimizer = make_optimizer(model.parameters(), optim_cfg)
    lengths = None
    if train_cfg.bucket > 0 or train_cfg.batch_budget > 0:
        if not hasattr(train_data, "length_keys"):
            flag = "--train.batch_budget" if train_cfg.batch_budget > 0 else "--train.bucket"
            raise UserError(f"{flag}: {type(train_data).__name__} examples have no length to sort by; use 0")
        lengths = train_data.length_keys()
    steps_per_epoch = math.ceil(len(train_data) / train_cfg.batch_size)
    if train_cfg.batch_budget > 0:  # the count varies a little from epoch to epoch: one draw sizes the schedule
        steps_per_epoch = len(epoch_batches(len(train_data), train_cfg, torch.Generator().manual_seed(0), lengths))
    schedule = make_schedule(optimizer, optim_cfg, steps_per_epoch * train_cfg.epochs)
    shuffle_rng = torch.Generator().manual_seed(train_cfg.seed)
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    best_value = -math.inf if mode == "max" else math.inf
    best_epoch, start_epoch = 0, 1
    top: list[tuple[float, int]] = []  # (value, epoch) of the kept epochs, best first

    if resume and run.last_checkpoint.exists():
        state = load_checkpoint(run.last_checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        _set_base_lr(optimizer, schedule, optim_cfg.lr)  # a resumed run may go on with another --lr
        shuffle_rng.set_state(state["shuffle_rng"])
        rngs = state.get("rng_ranks", [])
        torch.set_rng_state(rngs[dist_info.rank] if len(rngs) == dist_info.world else state["rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"])
        best_value, best_epoch = float(state["best_value"]), int(state["best_epoch"])
        top = [(float(v), int(e)) for v, e in state.get("top", [])]
        start_epoch = int(state["epoch"]) + 1
        if main:
            run.truncate_metrics(start_epoch - 1)
        log.info("%s: resuming after epoch %d", run.path, start_epoch - 1)
    else:
        if main and run.metrics_path.exists():
            run.truncate_metrics(0)
        if main:  # a fresh start: the kept epochs of an earlier attempt are not this run's
            for path in top_checkpoints(run):
                path.unlink()

    bf16 = resolve_precision(train_cfg.precision, device) == "bf16"
    params = [p for p in model.parameters() if p.requires_grad]
    checker = NonFiniteCheck(device)
    tracker = Tracker(train_cfg.track if main else "none", run.path / "tensorboard", start_epoch)
    # every training and validation step runs on these kernels; the tracker's files close however it ends
    with cpu_kernels(train_cfg.mkldnn), contextlib.closing(tracker):
        for epoch in range(start_epoch, train_cfg.epochs + 1):
            began = time.perf_counter()
            model.train()
            total, count = torch.zeros((), device=device), 0
            batches = epoch_batches(len(train_data), train_cfg, shuffle_rng, lengths)
            if dist_info.enabled:
                batches = [distributed.shard_batch(b) for b in batches if len(b) >= dist_info.world]
            desc = f"{run.name} epoch {epoch}/{train_cfg.epochs}"
            for idx in progress(batches, total=len(batches), desc=desc, enabled=show_progress and main):
                if fail_at == (epoch, count):
                    raise RuntimeError(f"injected failure on rank {dist_info.rank} (DLLAB_INJECT_FAILURE)")
                batch = to_device(train_data.batch(idx), device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = loss_fn(train_model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if optim_cfg.grad_clip > 0:
                    norm = nn.utils.clip_grad_norm_(params, optim_cfg.grad_clip)
                    bad = bool(~torch.isfinite(norm + loss.detach()))  # one host sync per step
                else:
                    bad = checker(params, loss)
                if bad:
                    raise _non_finite(run, loss, epoch, count + 1, len(batches), optimizer)
                optimizer.step()
                schedule.step()
                # Accumulate on device: no host sync per step.
                total += loss.detach()
                count += 1
            train_seconds = time.perf_counter() - began
            if dist_info.enabled:
                sums = distributed.all_reduce_sum(torch.stack([total.float().cpu(), torch.tensor(float(count))]))
                total, count = sums[0], int(sums[1])
            model.eval()
            with torch.no_grad():
                metrics = evaluate_fn(model)
            record = {
                "epoch": epoch,
                "train_loss": float(total) / max(count, 1),
                **{k: float(v) for k, v in metrics.items()},
                "lr": optimizer.param_groups[0]["lr"],
                "train_seconds": train_seconds,
                "seconds": time.perf_counter() - began,
            }
            if monitor not in record:
                raise KeyError(f"monitor {monitor!r} is not among the metrics {sorted(record)}")
            if better(record[monitor], best_value):
                best_value, best_epoch = record[monitor], epoch
                if main:
                    best_state = {"model": model.state_dict(), "epoch": epoch, monitor: best_value}
                    save_checkpoint(run.best_checkpoint, best_state)
            if keep_top > 1 and main:
                top = _keep_top(run, model, top, record[monitor], epoch, keep_top, mode)
            rng_ranks = distributed.gather_objects(torch.get_rng_state())
            if not main:
                continue
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "shuffle_rng": shuffle_rng.get_state(),
                "rng": torch.get_rng_state(),
                "rng_ranks": rng_ranks,
                "epoch": epoch,
                "best_value": best_value,
                "best_epoch": best_epoch,
                "top": top,
            }
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state()
            for key in (k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)):
                log.warning("%s epoch %d: %s is %s (written as null)", run.name, epoch, key, record[key])
            run.append_metrics(record)  # before the checkpoint: see the module docstring
            tracker.log(record)
            save_checkpoint(run.last_checkpoint, state)
            shown = " ".join(
                f"{k}={v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds", "train_seconds", "lr")
            )
            log.info("%s epoch %d/%d %s (%.1fs)", run.name, epoch, train_cfg.epochs, shown, record["seconds"])
    history = distributed.broadcast_object(run.read_metrics() if main else None)
    return FitResult(history, best_epoch, best_value)


def _keep_top(run: RunDir, model: nn.Module, top: list[tuple[float, int]], value: float, epoch: int, keep: int,
              mode: str) -> list[tuple[float, int]]:
    """Add this epoch to the `keep` best (ties: the earlier epoch stays ahead); write its weights if it made
    the list and delete the files of epochs that fell off."""
    sign = -1.0 if mode == "max" else 1.0
    ranked = sorted([*top, (value, epoch)], key=lambda ve: (sign * ve[0], ve[1]))
    kept, dropped = ranked[:keep], ranked[keep:]
    folder = run.path / "checkpoints" / "top"
    if any(e == epoch for _, e in kept):
        save_checkpoint(folder / f"epoch-{epoch:04d}.pt", {"model": model.state_dict(), "epoch": epoch, "value": value})
    for _, e in dropped:
        (folder / f"epoch-{e:04d}.pt").unlink(missing_ok=True)
    return kept


def top_checkpoints(run: RunDir) -> list[Path]:
    """The weights `fit(keep_top=N)` kept: the N best epochs' checkpoints (fewer if it ran fewer epochs)."""
    return sorted((run.path / "checkpoints" / "top").glob("epoch-*.pt"))


def average_checkpoints(paths: list[Path]) -> dict[str, Tensor]:
    """The element-wise mean of the checkpoints' model weights (integer buffers are taken from the first)."""
    if not paths:
        raise UserError("no checkpoints to average")
    total: dict[str, Tensor] = {}
    for path in paths:
        weights = load_checkpoint(path, map_location="cpu")["model"]
        for name, value in weights.items():
            if name not in total:
                total[name] = value.clone().double() if value.is_floating_point() else value.clone()
            elif value.is_floating_point():
                total[name] += value.double()
    return {k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in total.items()}


def _set_base_lr(optimizer: torch.optim.Optimizer, schedule, lr: float) -> None:
    """Make `lr` the base learning rate of a schedule restored from a checkpoint (same step, same factor)."""
    if all(base == lr for base in schedule.base_lrs):
        return
    schedule.base_lrs = [lr for _ in optimizer.param_groups]
    for group, factor in zip(optimizer.param_groups, schedule.lr_lambdas, strict=True):
        group["initial_lr"] = lr
        group["lr"] = lr * factor(schedule.last_epoch)


class NonFiniteCheck:
    """`check(params, loss)`: True when `loss` or a gradient of `params` is NaN or infinite: the loss, then
    `_flag_non_finite` into flags allocated once. At batch 8 on the 2023-24 CNN a step takes about 1.5 ms,
    and allocating the flags every step had cost as much as the check itself (about 45 us)."""

    def __init__(self, device: torch.device) -> None:
        self.found = torch.zeros(1, device=device)
        self.one = torch.ones(1, device=device)

    def __call__(self, params: list[nn.Parameter], loss: Tensor) -> bool:
        if not math.isfinite(loss.item()):  # the host sync (on a GPU; free on a CPU)
            return True
        return _flag_non_finite(params, self.found, self.one) and bool(self.found.item())


def non_finite_gradients(params) -> Tensor:
    """A bool tensor, True when a gradient of `params` holds a NaN or an infinity; no host sync.

    One fused pass over the gradients: torch's own GradScaler check (scale 1, so nothing changes). For the
    225k-parameter 2023-24 CNN at batch 8 on one CPU thread it cost 0.7x a total gradient norm (127 against
    175 us, 3 % of a step, measured interleaved on a shared 2-core machine), hence not `get_total_norm`.
    """
    params = list(params)
    device = next((p.grad.device for p in params if p.grad is not None), None)
    if device is None:
        return torch.zeros((), dtype=torch.bool)
    found = torch.zeros(1, device=device)
    _flag_non_finite(params, found, torch.ones(1, device=device))
    return found[0] > 0


def _flag_non_finite(params, found: Tensor, one: Tensor) -> bool:
    """Sets `found` (a (1,) float flag) to 1 when a gradient of `params` is NaN or infinite, else 0, in one
    fused pass (scale `one`: the gradients are unchanged); False when no parameter has a gradient."""
    grads = [p.grad for p in params if p.grad is not None]  # one device: fit moves the model there
    if not grads:
        return False
    found.zero_()
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
    return True


def _non_finite(run: RunDir, loss: Tensor, epoch: int, step: int, steps: int,
                optimizer: torch.optim.Optimizer) -> NonFiniteLoss:  # fmt: skip
    value = float(loss.detach())
    what = f"loss {value:g}" if not math.isfinite(value) else "gradient"
    lr = optimizer.param_groups[0]["lr"]
    if run.last_checkpoint.exists():  # written after every epoch, so it holds epoch - 1
        after = (f"the last good checkpoint (epoch {epoch - 1}) is kept: continue from it with --resume "
                 f"--name {run.name} and a lower --lr (now {lr:g}) or --optim.grad_clip")  # fmt: skip
    else:
        after = f"no epoch finished yet: start again with a lower --lr (now {lr:g}) or --optim.grad_clip"
    return NonFiniteLoss(
        f"{run.path}: non-finite {what} at epoch {epoch}, step {step}/{steps}; training stopped before the update. "
        + after
    )


def _injected_failure(rank: int) -> tuple[int, int] | None:
    """DLLAB_INJECT_FAILURE="RANK:EPOCH:STEP" makes that rank raise at that step: for testing failure handling."""
    spec = os.environ.get("DLLAB_INJECT_FAILURE")
    if not spec:
        return None
    r, epoch, step = (int(x) for x in spec.split(":"))
    return (epoch, step) if r == rank else None


def load_best(model: nn.Module, run: RunDir, device: torch.device | str = "cpu") -> nn.Module:
    """Load the best checkpoint's weights. Not a collective call: under torchrun any subset of ranks may
    call it, each reading the file (across nodes, the run directory must be on shared storage)."""
    model.load_state_dict(load_checkpoint(run.best_checkpoint, map_location="cpu")["model"])
    return model.to(device)
