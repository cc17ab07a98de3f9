import numpy as np
import pytest

from dllab.data.intel import load_intel
from dllab.data.octmnist import COURSE_TEST_COUNTS, load_octmnist
from dllab.errors import UserError
from synthetic import make_images


def _write(path, classes, shape, n=(60, 20, 800), labels_2d=True, **broken):
    arrays = {}
    for split, count, seed in zip(("train", "val", "test"), n, (1, 2, 3), strict=True):
        x, y = make_images(count, classes, shape, seed)
        arrays[f"{split}_images"] = x
        arrays[f"{split}_labels"] = y.reshape(-1, 1) if labels_2d else y
    arrays.update(broken)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_octmnist_course_test_subset_and_full(tmp_path):
    path = _write(tmp_path / "octmnist.npz", 4, (28, 28))
    course = load_octmnist(path)
    full = load_octmnist(path, eq_test_dist=True)
    y = course.test.tensors[1]
    expected = [min(n, int((full.test.tensors[1] == c).sum())) for c, n in enumerate(COURSE_TEST_COUNTS)]
    assert [int((y == c).sum()) for c in range(4)] == expected
    assert len(full.test) == 800 and course.input_shape == (1, 28, 28) and course.num_classes == 4


def test_intel_shapes(tmp_path):
    splits = load_intel(_write(tmp_path / "intel.npz", 6, (48, 48, 3), labels_2d=False))
    assert splits.input_shape == (3, 48, 48) and splits.num_classes == 6


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"val_labels": None}, "missing key 'val_labels'"),
        ({"train_images": np.zeros((60, 28, 28), dtype=np.float32)}, "'train_images' has dtype float32"),
        ({"test_images": np.zeros((800, 28), dtype=np.uint8)}, "'test_images' has shape"),
        ({"train_labels": np.full((60, 1), 7)}, "'train_labels' holds labels 7..7, expected 0..3"),
        ({"val_labels": np.zeros((3, 1), dtype=np.int64)}, "'val_labels' has 3 labels for 20 images"),
    ],
)
def test_bad_octmnist_files_name_the_key(tmp_path, broken, message):
    path = _write(tmp_path / "bad.npz", 4, (28, 28), **broken)
    with pytest.raises(UserError, match=message):
        load_octmnist(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UserError, match="intel.npz: no such file"):
        load_intel(tmp_path / "intel.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="junk.npz: not an .npz archive") as err:
        load_octmnist(tmp_path / "junk.npz")
    assert "pickle" not in str(err.value)  # numpy's guess for any non-zip file, never the right diagnosis
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(UserError, match="empty.npz: not an .npz archive .* an empty file"):
        load_octmnist(tmp_path / "empty.npz")
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04 and then nothing")
    with pytest.raises(UserError, match="torn.npz: not a readable .npz"):
        load_octmnist(tmp_path / "torn.npz")
    with pytest.raises(UserError, match="RGB"):
        load_intel(_write(tmp_path / "grey.npz", 6, (48, 48, 1)))
