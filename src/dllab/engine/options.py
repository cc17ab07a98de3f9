"""Options of the training loop, torch-free so that building `--help` texts never imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dllab.config import option


@dataclass(frozen=True)
class OptimConfig:
    optimizer: Literal["sgd", "adam", "adamw"] = option("sgd", "the skeleton's -optimizer")
    lr: float = option(0.01, "learning rate (the skeleton's -learning_rate)", gt=0)
    momentum: float = option(0.0, "SGD momentum (the skeletons use none)", ge=0, lt=1)
    weight_decay: float = option(0.0, "L2 decay (the skeleton's -l2_decay)", ge=0)
    schedule: Literal["constant", "warmup_linear"] = option(
        "constant", "constant, or linear warm-up for warmup_steps then linear decay to 0"
    )
    warmup_steps: int = option(0, "steps of linear warm-up (warmup_linear)", ge=0)
    grad_clip: float = option(0.0, "clip the gradient norm to this value; 0 = off", ge=0)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = option(15, "training epochs", ge=1)
    batch_size: int = option(8, "examples per optimisation step", ge=1)
    seed: int = option(42, "seeds initialisation, dropout and shuffling", ge=0, lt=2**32)
    threads: int = option(0, "torch CPU threads; 0 = torch's default", ge=0, le=1024)
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto = cuda when available")
    mkldnn: bool = option(
        True, "CPU convolutions through oneDNN (mkldnn); false = torch's native kernels, faster for tiny convs"
    )
    bucket: int = option(
        0, "sort by length within shuffled pools of this many batches, less padding (0 = plain shuffling)", ge=0
    )
    batch_budget: int = option(
        0,
        "batches by size instead of count: each holds as many examples as fit in this many padded length "
        "units (examples x the longest; frames for speech), sorted within --train.bucket pools; 0 = batch_size",
        ge=0,
    )
    precision: Literal["fp32", "bf16", "auto"] = option(
        "fp32",
        "bf16 = training forward passes under bfloat16 autocast (fast on AMX CPUs and GPUs); weights stay fp32; "
        "auto = bf16 where this machine runs it fast (a CPU with AMX, a GPU with bfloat16), else fp32",
    )
    track: Literal["none", "tensorboard"] = option(
        "none", "tensorboard = also write each epoch's metrics as TensorBoard events in <run>/tensorboard/"
    )


def add_run_arguments(parser, name_help: str, runs: bool = True, resume: bool = True) -> None:
    """The run-directory options every training command shares: --name, --runs, --resume, --overwrite."""
    from pathlib import Path

    parser.add_argument("--name", help=name_help)
    if runs:
        parser.add_argument(
            "--runs", type=Path, default=Path("runs"), help="root of the run directories (default runs/)"
        )
    if resume:
        parser.add_argument(
            "--resume", action="store_true", help="continue an interrupted run from its last checkpoint"
        )
        parser.add_argument("--overwrite", action="store_true", help="start the run again from scratch")
