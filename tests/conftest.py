import os

# Keep the suite light on the 2-core CI machine and independent of the user's runs/ folder.
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from synthetic import make_images, write_idx  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_fashion_root(tmp_path_factory):
    """A Fashion-MNIST-layout folder with 700 train and 200 test generated 28x28 images."""
    root = tmp_path_factory.mktemp("fashion")
    tx, ty = make_images(700, 10, (28, 28), seed=1)
    sx, sy = make_images(200, 10, (28, 28), seed=2)
    write_idx(root / "train-images-idx3-ubyte.gz", tx)
    write_idx(root / "train-labels-idx1-ubyte.gz", ty)
    write_idx(root / "t10k-images-idx3-ubyte.gz", sx)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", sy)
    return root
