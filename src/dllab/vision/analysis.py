"""Numbers for the homework's written questions, computed from the models themselves.

Q2.3: parameters per layer; why max-pool vs stride leaves the count equal; how much BN + GAP cuts.
Q2.4: stacked 3x3 kernels vs one larger kernel (parameters, receptive field); feature-map sizes and
      FLOPs of the 2024-25 net with and without pooling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dllab.vision.models import create_model

HOMEWORK_SHAPES = {"cnn2023": ((1, 28, 28), 4), "cnn2024": ((3, 48, 48), 6)}


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    macs: int  # multiply-accumulates of one forward pass for one image


def layer_table(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRow]:
    """Every parametrised or pooling layer with its output shape, parameters and MACs (forward hooks)."""
    rows: list[LayerRow] = []
    hooks = []

    def hook(name: str):
        def fn(module: nn.Module, inputs, output):
            params = sum(p.numel() for p in module.parameters(recurse=False))
            shape = tuple(output.shape[1:])
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
                macs = output[0].numel() * k
            elif isinstance(module, nn.Linear):
                macs = module.in_features * module.out_features
            else:
                macs = 0
            rows.append(LayerRow(name, type(module).__name__, shape, params, macs))

        return fn

    kinds = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
    for name, module in model.named_modules():
        if isinstance(module, kinds):
            hooks.append(module.register_forward_hook(hook(name)))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    return rows


def homework_models() -> dict[str, nn.Module]:
    """The four networks of Q2 at the homework's input shapes."""
    (s23, c23), (s24, c24) = HOMEWORK_SHAPES["cnn2023"], HOMEWORK_SHAPES["cnn2024"]
    return {
        "2023-24 max-pool": create_model("cnn2023", s23, c23, maxpool=True),
        "2023-24 strided": create_model("cnn2023", s23, c23, maxpool=False),
        "2024-25 plain": create_model("cnn2024", s24, c24, bn_gap=False),
        "2024-25 BN+GAP": create_model("cnn2024", s24, c24, bn_gap=True),
    }


def model_input_shape(label: str) -> tuple[int, int, int]:
    return HOMEWORK_SHAPES["cnn2023" if label.startswith("2023") else "cnn2024"][0]


def stacked_kernel_rows(channels: int = 64, max_layers: int = 4) -> list[dict[str, int]]:
    """n stacked 3x3 convs (C -> C, stride 1) against one (2n+1)x(2n+1) conv with the same receptive field.

    Parameters exclude biases (n*C vs C, negligible); the receptive field of n stacked 3x3 convs is 2n+1.
    """
    rows = []
    for n in range(1, max_layers + 1):
        k = 2 * n + 1
        stacked = n * 9 * channels * channels
        single = k * k * channels * channels
        rows.append({"3x3 layers": n, "receptive field": k, "stacked params": stacked,
                     f"one {k}x{k} params": single, "ratio": single / stacked})
    return rows


def pooling_cost_rows() -> list[dict[str, object]]:
    """Feature-map sizes and forward MACs of the 2024-25 conv stack with max-pooling vs without it.

    Without pooling every block keeps 48x48, so each later conv works on 4x, 16x more positions and the
    flattened feature vector (and the first MLP layer) grows 64-fold.
    """
    rows = []
    for pooled in (True, False):
        model = create_model("cnn2024", (3, 48, 48), 6)
        if not pooled:
            for module in model.modules():
                if isinstance(module, nn.Sequential):
                    for i, child in enumerate(module):
                        if isinstance(child, nn.MaxPool2d):
                            module[i] = nn.Identity()
            # Rebuild the first MLP layer for the bigger flattened size.
            with torch.no_grad():
                flat = model.features(torch.zeros(1, 3, 48, 48)).shape[1]
            model.classifier[0] = nn.Linear(flat, 1024)
        table = layer_table(model, (3, 48, 48))
        convs = [r for r in table if r.kind == "Conv2d"]
        rows.append({
            "pooling": "max-pool 2x2" if pooled else "none",
            "feature maps": " -> ".join("x".join(map(str, r.output_shape)) for r in convs),
            "conv MACs": sum(r.macs for r in convs),
            "MLP MACs": sum(r.macs for r in table if r.kind == "Linear"),
            "parameters": sum(r.parameters for r in table),
        })
    return rows
