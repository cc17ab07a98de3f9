import gzip
from pathlib import Path

import numpy as np
import pytest

from dllab.data.fashion_mnist import SYSTEM_DIR, load_fashion_mnist, read_idx
from dllab.errors import UserError
from synthetic import write_idx


def test_read_idx_round_trip_gz_and_plain(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "b", arr, compress=False)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), arr)
    assert np.array_equal(read_idx(tmp_path / "b"), arr)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "magic").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(UserError, match="magic.*bad magic"):
        read_idx(tmp_path / "magic")
    arr = np.zeros((3, 2), dtype=np.uint8)
    write_idx(tmp_path / "full", arr, compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "full").read_bytes()[:-1])
    with pytest.raises(UserError, match="short: IDX header says shape \\(3, 2\\)"):
        read_idx(tmp_path / "short")
    with gzip.open(tmp_path / "trunc.gz", "wb") as fh:
        fh.write(b"\x00\x00\x08")
    with pytest.raises(UserError, match="trunc.gz"):
        read_idx(tmp_path / "trunc.gz")


def test_load_splits_with_seeded_validation(tiny_fashion_root):
    a = load_fashion_mnist(tiny_fashion_root, n_val=100, seed=0)
    b = load_fashion_mnist(tiny_fashion_root, n_val=100, seed=0)
    c = load_fashion_mnist(tiny_fashion_root, n_val=100, seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (600, 100, 200)
    assert a.input_shape == (1, 28, 28) and a.num_classes == 10
    x, y = a.train.tensors
    assert x.dtype.is_floating_point and 0 <= float(x.min()) and float(x.max()) <= 1 and y.dtype.is_signed
    assert (a.val.tensors[1] == b.val.tensors[1]).all()
    assert not (a.val.tensors[0] == c.val.tensors[0]).all()


def test_missing_folder_names_the_path_and_the_fix(tmp_path, monkeypatch):
    import dllab.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "download", lambda target: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(UserError, match=f"{tmp_path}.*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not Path(SYSTEM_DIR, "train-images-idx3-ubyte.gz").exists(), reason="Debian package absent")
def test_debian_package_files_parse():
    splits = load_fashion_mnist()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50000, 10000, 10000)


def test_a_download_is_checked_stamped_and_refetched_when_it_changes(tmp_path, monkeypatch):
    import io
    import urllib.request

    from dllab.data import fashion_mnist as fm
    from synthetic import make_images

    served = {}
    for split, n in (("train", 30), ("t10k", 20)):
        x, y = make_images(n, 10, (28, 28), seed=n)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            buf = tmp_path / "src.gz"
            write_idx(buf, arr)
            served[f"{split}-{kind}-ubyte.gz"] = buf.read_bytes()
    fetched = []

    def urlopen(url, timeout=None):
        name = url.rsplit("/", 1)[-1]
        fetched.append(name)
        return io.BytesIO(served[name])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "none")
    monkeypatch.setenv("DLLAB_CACHE", str(tmp_path / "cache"))
    root = fm.find_root()
    assert sorted(fetched) == sorted(served) and (root / "download.json").exists()
    fetched.clear()
    assert fm.find_root() == root and fetched == []  # intact: reused
    (root / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")  # changed after its download
    assert fm.find_root() == root and fetched == ["train-labels-idx1-ubyte.gz"]
    assert len(fm.load_fashion_mnist(n_val=5).train) == 25
    served["t10k-labels-idx1-ubyte.gz"] = b"<html>not found</html>"  # a broken download is refused
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="download failed .*not an IDX file"):
        fm.find_root()
