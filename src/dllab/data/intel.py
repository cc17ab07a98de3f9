"""Intel image classification / landscapes (2024-25): the course's `intel_landscapes.v2.npz`.

48x48 RGB images, 6 classes; keys as MedMNIST: {train,val,test}_images (N, 48, 48, 3) uint8 and
{train,val,test}_labels (N,) or (N, 1).
"""

from __future__ import annotations

from pathlib import Path

from dllab.data.images import ImageSplits, check_npz, open_npz, to_tensors
from dllab.errors import UserError

CLASSES = ("buildings", "forest", "glacier", "mountain", "sea", "street")
HOW_TO_GET = "Download intel_landscapes.v2.npz from the course page and pass --data.path to it."


def load_intel(path: str | Path | None) -> ImageSplits:
    if path is None:
        raise UserError(f"Intel landscapes need --data.path pointing at intel_landscapes.v2.npz. {HOW_TO_GET}")
    path = Path(path)
    data = open_npz(path, HOW_TO_GET)
    check_npz(path, data, len(CLASSES), image_ndim=(4,))
    for split in ("train", "val", "test"):
        shape = data[f"{split}_images"].shape
        if shape[-1] != 3:
            raise UserError(f"{path}: key '{split}_images' has shape {shape}, expected (N, H, W, 3) RGB")
    return ImageSplits(
        "intel",
        to_tensors(data["train_images"], data["train_labels"]),
        to_tensors(data["val_images"], data["val_labels"]),
        to_tensors(data["test_images"], data["test_labels"]),
        CLASSES,
    )
