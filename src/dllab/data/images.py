"""Image-classification datasets held as tensors in memory; batches are taken by index.

Every loader returns `ImageSplits`: train / val / test `TensorData` with images as float32 (N, C, H, W)
in [0, 1] and labels as int64 (N,). Nothing iterates over samples in Python during training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dllab.errors import UserError


class TensorData:
    """Equal-length tensors; `batch(idx)` gathers rows with one indexing op per tensor."""

    def __init__(self, *tensors: Tensor):
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorData needs one or more tensors of equal length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def batch(self, idx: Tensor) -> tuple[Tensor, ...]:
        return tuple(t[idx] for t in self.tensors)

    def subset(self, n: int) -> TensorData:
        """The first `n` rows (the splits are already shuffled or in the source's order)."""
        return TensorData(*(t[:n] for t in self.tensors))


@dataclass(frozen=True)
class ImageSplits:
    name: str
    train: TensorData
    val: TensorData
    test: TensorData
    classes: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.tensors[0].shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def limit(self, train: int | None = None, val: int | None = None, test: int | None = None) -> ImageSplits:
        """Smaller splits for quick runs (None keeps a split whole)."""
        return ImageSplits(
            self.name,
            self.train.subset(train) if train else self.train,
            self.val.subset(val) if val else self.val,
            self.test.subset(test) if test else self.test,
            self.classes,
        )


def to_tensors(images: np.ndarray, labels: np.ndarray) -> TensorData:
    """uint8 (N, H, W) or (N, H, W, C) images and integer labels -> float (N, C, H, W) in [0, 1], int64 (N,)."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() == 4:
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0).contiguous()
    y = torch.from_numpy(np.asarray(labels).reshape(-1).astype(np.int64))
    return TensorData(x, y)


def carve_validation(images: np.ndarray, labels: np.ndarray, n_val: int, seed: int):
    """Split train into (train, val) with a fixed-seed permutation; returns four arrays."""
    if not 0 < n_val < len(images):
        raise UserError(f"validation size {n_val} must be between 1 and {len(images) - 1}")
    order = np.random.default_rng(seed).permutation(len(images))
    val, train = order[:n_val], order[n_val:]
    return images[train], labels[train], images[val], labels[val]


def check_npz(path: Path, data, n_classes: int, image_ndim: tuple[int, ...]) -> None:
    """Validate a MedMNIST-layout npz: {train,val,test}_{images,labels}, uint8 images, labels in range."""
    for split in ("train", "val", "test"):
        for part in ("images", "labels"):
            key = f"{split}_{part}"
            if key not in data:
                raise UserError(f"{path}: missing key '{key}' (found: {', '.join(sorted(data.keys()))})")
        x, y = data[f"{split}_images"], data[f"{split}_labels"]
        if x.ndim not in image_ndim:
            raise UserError(f"{path}: key '{split}_images' has shape {x.shape}, expected {image_ndim} dims")
        if x.dtype != np.uint8:
            raise UserError(f"{path}: key '{split}_images' has dtype {x.dtype}, expected uint8")
        if not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{path}: key '{split}_labels' has dtype {y.dtype}, expected integers")
        if y.reshape(-1).shape[0] != x.shape[0]:
            raise UserError(f"{path}: key '{split}_labels' has {y.size} labels for {x.shape[0]} images")
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise UserError(
                f"{path}: key '{split}_labels' holds labels {int(y.min())}..{int(y.max())}, "
                f"expected 0..{n_classes - 1}"
            )


def open_npz(path: str | Path, how_to_get: str):
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file. {how_to_get}")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an .npz archive. {how_to_get}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    # An .npz is a zip archive; without this check numpy takes any other file for a pickle and says so.
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        kind = "an empty file" if not magic else "a .npy array" if magic.startswith(b"\x93NUM") else "another file"
        raise UserError(f"{path}: not an .npz archive (a zip of .npy arrays); it is {kind}. {how_to_get}")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises several types for a corrupt archive
        raise UserError(f"{path}: not a readable .npz archive ({err})") from None
