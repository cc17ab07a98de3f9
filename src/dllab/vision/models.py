"""The CNNs of both homework years, exactly as specified, behind a small registry.

2023-24 (OCTMNIST, 28x28x1, 4 classes): 224,892 parameters with max-pooling or with strided convs.
2024-25 (Intel landscapes, 48x48x3, 6 classes): 5,340,742 parameters plain; 755,718 with BN + GAP.
The input shape and class count are arguments, so both nets run on any image dataset (Fashion-MNIST).
Both return log-probabilities (log-softmax), trained with NLL as in the course skeletons.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    MODELS[fn.__name__] = fn
    return fn


def create_model(name: str, input_shape: tuple[int, int, int], num_classes: int, **options) -> nn.Module:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](input_shape=input_shape, num_classes=num_classes, **options)


def _flat_size(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, *input_shape)).flatten(1).shape[1]


class CNN2023(nn.Module):
    """conv 8@3x3 p1 -> ReLU -> maxpool 2 -> conv 16@3x3 p0 -> ReLU -> maxpool 2 -> 320 -> 120 -> classes.

    With maxpool=False the two convs take stride 2 instead (same paddings) and there is no pooling,
    which gives the same 6x6x16 = 576 features at 28x28, hence the same parameter count.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, dropout: float, maxpool: bool = True):
        super().__init__()
        channels = input_shape[0]
        stride = 1 if maxpool else 2
        layers: list[nn.Module] = [nn.Conv2d(channels, 8, 3, stride=stride, padding=1), nn.ReLU()]
        if maxpool:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(8, 16, 3, stride=stride, padding=0), nn.ReLU()]
        if maxpool:
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        flat = _flat_size(self.features, input_shape)  # 576 at 28x28
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 320),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(320, 120),
            nn.ReLU(),
            nn.Linear(120, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:  # x: (B, C, H, W)
        return torch.log_softmax(self.classifier(self.features(x)), dim=-1)  # (B, classes)


class ConvBlock(nn.Sequential):
    """conv 3x3 s1 p1 -> [BN] -> ReLU -> maxpool 2 -> dropout."""

    def __init__(self, cin: int, cout: int, batch_norm: bool, dropout: float):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=1, padding=1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout)]
        super().__init__(*layers)


class CNN2024(nn.Module):
    """Three blocks of 32, 64, 128 channels, then an MLP 1024 -> 512 -> classes.

    bn_gap=True: batch norm in every block, global average pooling instead of flattening, and a
    BatchNorm1d after the first MLP layer. The block dropout is the homework's 0.1; `dropout` is the MLP's.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        dropout: float,
        bn_gap: bool = False,
        block_dropout: float = 0.1,
    ):
        super().__init__()
        chans = (input_shape[0], 32, 64, 128)
        self.features = nn.Sequential(
            *(ConvBlock(chans[i], chans[i + 1], bn_gap, block_dropout) for i in range(3)),
            nn.AdaptiveAvgPool2d(1) if bn_gap else nn.Identity(),
            nn.Flatten(),
        )
        flat = _flat_size(self.features, input_shape)  # 4608 at 48x48 (128 with GAP)
        mlp: list[nn.Module] = [nn.Linear(flat, 1024)]
        if bn_gap:
            mlp.append(nn.BatchNorm1d(1024))
        mlp += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, num_classes)]
        self.classifier = nn.Sequential(*mlp)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, C, H, W)
        return torch.log_softmax(self.classifier(self.features(x)), dim=-1)  # (B, classes)


@register_model
def cnn2023(input_shape, num_classes, dropout: float = 0.7, maxpool: bool = True, **_) -> nn.Module:
    return CNN2023(input_shape, num_classes, dropout, maxpool)


@register_model
def cnn2024(input_shape, num_classes, dropout: float = 0.1, bn_gap: bool = False, **_) -> nn.Module:
    return CNN2024(input_shape, num_classes, dropout, bn_gap)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
