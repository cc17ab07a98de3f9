"""Fashion-MNIST, the embedded default: the Debian package `dataset-fashion-mnist` (IDX files).

Looks in `root` (default /usr/share/datasets/fashion-mnist, then ~/.cache/dllab/fashion-mnist); when the
files are absent it tries the official download. A download is checked (each file must parse as IDX) and
recorded in `download.json` with each file's size and modification time; a downloaded file that later
changes or vanishes is fetched again (files put into a folder by hand, without `download.json`, are
used as they are). 60,000 train images are split into train and a
validation set carved with a fixed seed; the 10,000 official test images are the test split.
"""

from __future__ import annotations

import gzip
import os
import urllib.request
from pathlib import Path

import numpy as np

from dllab.data.images import ImageSplits, carve_validation, to_tensors
from dllab.errors import UserError
from dllab.io import cache_dir, file_stamp, read_json_or_none, stamps_match

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
HOW_TO_GET = (
    "Install the Debian package (sudo apt-get install dataset-fashion-mnist, done by `make setup`) "
    "or put the four IDX .gz files there."
)
# IDX type codes (the third byte of the magic number) -> numpy dtype, big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (gzipped or not) into a numpy array, checking its header against its size."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise UserError(f"{path}: cannot read IDX file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise UserError(f"{path}: IDX header says shape {shape} ({expected} bytes) but the file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_root(root: str | Path | None = None) -> Path:
    """The first folder holding all four files; downloads to the cache when none does and we are online."""
    candidates = [Path(root)] if root else [SYSTEM_DIR, cache_dir("fashion-mnist")]
    for folder in candidates:
        if all((folder / name).exists() for name in FILES.values()) and _download_intact(folder):
            return folder
    target = candidates[0] if root else cache_dir("fashion-mnist")
    try:
        download(target)
    except OSError as err:
        looked = ", ".join(str(c) for c in candidates)
        raise UserError(
            f"Fashion-MNIST not found in {looked} and the download failed ({err}). {HOW_TO_GET}"
        ) from None
    return target


def _download_intact(folder: Path) -> bool:
    """False when `folder` holds a download.json whose files have changed since they were downloaded."""
    stamp = read_json_or_none(folder / DOWNLOAD_RECORD)
    return not isinstance(stamp, dict) or stamps_match(stamp, folder)


DOWNLOAD_RECORD = "download.json"


def download(target: Path) -> None:
    """Fetch the files `target` lacks (or holds changed since their download), check each parses as IDX,
    and record their stamps in download.json."""
    from dllab.io import atomic_write_json

    target.mkdir(parents=True, exist_ok=True)
    record = read_json_or_none(target / DOWNLOAD_RECORD)
    record = record if isinstance(record, dict) else {}
    for name in FILES.values():
        dest = target / name
        if dest.exists() and (name not in record or stamps_match({name: record[name]}, target)):
            continue
        tmp = dest.with_suffix(".part")
        with urllib.request.urlopen(DOWNLOAD_URL + name, timeout=30) as resp, open(tmp, "wb") as fh:
            fh.write(resp.read())
        try:
            read_idx(tmp)
        except UserError as err:
            tmp.unlink(missing_ok=True)
            raise OSError(f"the download of {name} is not an IDX file ({err})") from None
        os.replace(tmp, dest)
        record[name] = file_stamp(dest)
        atomic_write_json(target / DOWNLOAD_RECORD, record)


def load_fashion_mnist(root: str | Path | None = None, n_val: int = 10_000, seed: int = 0) -> ImageSplits:
    """Fashion-MNIST as in-memory tensors: 50,000 train / 10,000 val (seeded) / 10,000 test, 1x28x28."""
    folder = find_root(root)
    arrays = {key: read_idx(folder / name) for key, name in FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UserError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match")
        if y.max() >= len(CLASSES):
            raise UserError(f"{folder / FILES[split + '_labels']}: label {int(y.max())} out of range 0..9")
    tx, ty, vx, vy = carve_validation(arrays["train_images"], arrays["train_labels"], n_val, seed)
    return ImageSplits(
        "fashion-mnist",
        to_tensors(tx, ty),
        to_tensors(vx, vy),
        to_tensors(arrays["test_images"], arrays["test_labels"]),
        CLASSES,
    )
