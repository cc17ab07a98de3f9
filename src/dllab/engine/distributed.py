"""Data parallelism on PyTorch's own engine: torchrun + DistributedDataParallel (gloo on CPU, nccl on GPU).

Launch any training command under torchrun and it runs data-parallel with no other change:

    torchrun --nproc_per_node=2 -m dllab vision train --epochs 3

`setup()` reads torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT) and joins the
process group; without it everything runs in one process (world size 1) and every helper here is a no-op.
Rank 0 alone logs, draws progress, and writes run directories, checkpoints and reports.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup() -> DistInfo:
    """Join the torchrun process group once (gloo on CPU, nccl when CUDA is available)."""
    if not launched_by_torchrun():
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        if dist.get_rank() != 0:
            logging.getLogger().setLevel(logging.WARNING)
    return info()


def info() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier() -> None:
    if info().enabled:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place on a copy); the tensor itself with one process."""
    if not info().enabled:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank ([obj] with one process)."""
    if not info().enabled:
        return [obj]
    out: list[Any] = [None] * info().world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(n: int) -> torch.Tensor:
    """The indices 0..n-1 this rank handles in a sharded evaluation (strided, as DistributedSampler)."""
    d = info()
    return torch.arange(d.rank, n, d.world)


def shard_batch(idx: torch.Tensor) -> torch.Tensor:
    """This rank's share of one global batch of indices (the global batch size is the config's)."""
    d = info()
    return idx[d.rank :: d.world] if d.enabled else idx


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` when running under torchrun; `model` itself otherwise."""
    if not info().enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def device_for(name: str) -> torch.device | None:
    """Under torchrun with CUDA, each process takes the GPU of its local rank."""
    if info().enabled and torch.cuda.is_available() and name in ("auto", "cuda"):
        return torch.device("cuda", info().local_rank)
    return None


def shutdown() -> None:
    """Leave the process group cleanly after a successful command: every rank waits for the others, then
    the group is destroyed, so no rank exits while gloo's threads still serve a peer (which aborts it)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
