"""Vision experiment configs; the presets carry the homework's defaults for each year."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from dllab.config import option
from dllab.engine.options import OptimConfig, TrainConfig


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["fashion-mnist", "octmnist", "intel"] = option(
        "fashion-mnist", "fashion-mnist (embedded default), octmnist (2023-24) or intel (2024-25)"
    )
    path: str | None = option(None, "octmnist.npz / intel_landscapes.v2.npz; Fashion-MNIST IDX folder")
    val_size: int = option(10_000, "fashion-mnist: validation images carved from train with a fixed seed", ge=1)
    eq_test_dist: bool = option(False, "octmnist: true = MedMNIST's whole test set; false = the course's 529")
    download: bool = option(False, "octmnist: fetch through the medmnist package when the file is absent")
    train_limit: int = option(0, "use only the first N training images (0 = all)", ge=0)
    val_limit: int = option(0, "use only the first N validation images (0 = all)", ge=0)
    test_limit: int = option(0, "use only the first N test images (0 = all)", ge=0)


@dataclass(frozen=True)
class ModelConfig:
    name: Literal["cnn2023", "cnn2024"] = option("cnn2023", "cnn2023 (OCTMNIST net) or cnn2024 (Intel net)")
    dropout: float = option(0.7, "dropout of the MLP (2023-24: 0.7, 2024-25: 0.1)", ge=0, lt=1)
    maxpool: bool = option(True, "cnn2023: max-pooling (true) or stride-2 convs (false)")
    bn_gap: bool = option(False, "cnn2024: batch norm + global average pooling")


@dataclass(frozen=True)
class VisionConfig:
    data: DataConfig = option(DataConfig(), "dataset")
    model: ModelConfig = option(ModelConfig(), "network")
    optim: OptimConfig = option(OptimConfig(), "optimiser")
    train: TrainConfig = option(TrainConfig(), "training loop")
    eval_batch_size: int = option(1024, "batch size for validation and test (does not change results)", ge=1)


PRESETS: dict[str, VisionConfig] = {
    # 2023-24 Q2: SGD, batch 8, dropout 0.7, 15 epochs; best lr 0.01 of 0.1 / 0.01 / 0.001.
    # mkldnn off: torch's native kernels train this net's tiny convs at batch 8 1.1-1.2x faster on one
    # thread of the 2-core CPU (measured for both variants; the 2024-25 net is even or faster with oneDNN).
    "hw2023": VisionConfig(
        model=ModelConfig(name="cnn2023", dropout=0.7),
        optim=OptimConfig(optimizer="sgd", lr=0.01),
        train=TrainConfig(epochs=15, batch_size=8, mkldnn=False),
    ),
    # 2024-25 Q2: SGD, batch 8, dropout 0.1, 40 epochs; best lr 0.01 of 0.1 / 0.01 / 0.001.
    "hw2024": VisionConfig(
        model=ModelConfig(name="cnn2024", dropout=0.1),
        optim=OptimConfig(optimizer="sgd", lr=0.01),
        train=TrainConfig(epochs=40, batch_size=8),
    ),
}

# The homework's ablation of each year, run at the sweep's best learning rate.
ABLATIONS: dict[str, tuple[str, dict[str, object]]] = {
    "hw2023": ("no-maxpool", {"maxpool": False}),
    "hw2024": ("bn-gap", {"bn_gap": True}),
}


def with_lr(cfg: VisionConfig, lr: float) -> VisionConfig:
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=lr))


def with_model(cfg: VisionConfig, **changes) -> VisionConfig:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **changes))
