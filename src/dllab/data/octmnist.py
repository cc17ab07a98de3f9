"""OCTMNIST (2023-24): the course's `octmnist.npz` in MedMNIST layout, 28x28 grey retina scans, 4 classes.

Keys: train_images (N, 28, 28) uint8, train_labels (N, 1), and likewise val_* and test_*.
`eq_test_dist`: the course loader, by default (eq_test_dist=False), kept only the first 182 / 55 / 42 / 250
test images of classes 0-3 (a 529-image test set, in the class proportions of the training set rather
than MedMNIST's balanced 1,000); eq_test_dist=True keeps MedMNIST's whole test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dllab.data.images import ImageSplits, check_npz, open_npz, to_tensors
from dllab.errors import UserError

CLASSES = ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal")
COURSE_TEST_COUNTS = (182, 55, 42, 250)
HOW_TO_GET = (
    "Download octmnist.npz from the course page or MedMNIST (pip install medmnist, then "
    "`python -m medmnist download --flag octmnist` or pass --data.path to your copy)."
)


def course_test_subset(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first 182/55/42/250 test images of classes 0..3, grouped by class as the course loader did."""
    labels = labels.reshape(-1)
    keep = np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(COURSE_TEST_COUNTS)])
    return images[keep], labels[keep]


def fetch_with_medmnist(root: Path) -> Path:
    """Download octmnist.npz through the `medmnist` package (optional extra) into `root`."""
    try:
        import medmnist  # type: ignore[import-not-found]
    except ImportError:
        missing = root / "octmnist.npz"
        raise UserError(f"{missing}: not found and the medmnist package is not installed. {HOW_TO_GET}") from None
    root.mkdir(parents=True, exist_ok=True)
    try:
        medmnist.OCTMNIST(split="train", download=True, root=str(root))
    except Exception as err:
        raise UserError(f"could not fetch OCTMNIST through medmnist ({err}). {HOW_TO_GET}") from None
    return root / "octmnist.npz"


def load_octmnist(path: str | Path | None, eq_test_dist: bool = False, download: bool = False) -> ImageSplits:
    if path is None:
        raise UserError(f"OCTMNIST needs --data.path pointing at octmnist.npz. {HOW_TO_GET}")
    path = Path(path)
    if not path.exists() and download:
        path = fetch_with_medmnist(path.parent)
    data = open_npz(path, HOW_TO_GET)
    check_npz(path, data, len(CLASSES), image_ndim=(3,))
    test_x, test_y = data["test_images"], data["test_labels"]
    if not eq_test_dist:
        test_x, test_y = course_test_subset(test_x, test_y)
    return ImageSplits(
        "octmnist",
        to_tensors(data["train_images"], data["train_labels"]),
        to_tensors(data["val_images"], data["val_labels"]),
        to_tensors(test_x, test_y),
        CLASSES,
    )
