"""Generated test data: IDX files and learnable synthetic images."""

import gzip
import struct

import numpy as np


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    """Write an IDX file (ubyte) as the Fashion-MNIST distribution does."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as fh:
        fh.write(data)


def make_images(n: int, classes: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable synthetic images: each class lights a different band of rows, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    images = rng.integers(0, 60, size=(n, *shape)).astype(np.uint8)
    band = max(1, shape[0] // classes)
    for i, c in enumerate(labels):
        images[i, c * band : (c + 1) * band] = 220
    return images, labels.astype(np.uint8)


# Sweep jobs: module-level functions in an importable module, so spawned worker processes can load them.
def square(x: int, threads: int) -> dict:
    import torch

    return {"x": x, "square": x * x, "threads": threads, "torch_threads": torch.get_num_threads()}


def fail(threads: int) -> dict:
    raise ValueError("boom")


def sleep_for(seconds: float, threads: int, marker: str | None = None) -> dict:
    """A plan task that takes `seconds`; with `marker`, it appends its name to that file when it ends."""
    import time

    time.sleep(seconds)
    if marker:
        with open(marker, "a") as fh:
            fh.write(f"{seconds}\n")
    return {"slept": seconds, "threads": threads}


def die(threads: int) -> dict:
    """A plan task whose worker process is killed (as the kernel's OOM killer would)."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def race_two_builders(build, inside, go, caplog) -> None:
    """Two threads build one thing: build("first") starts and holds (it sets `inside`, then waits on `go`);
    build("second") starts and must log that it waits for another builder; then the first goes on and both
    finish. The caller checks what was built and how often."""
    import threading
    import time

    threads = [threading.Thread(target=build, args=(name,)) for name in ("first", "second")]
    try:
        threads[0].start()
        assert inside.wait(60)
        threads[1].start()
        deadline = time.monotonic() + 60
        while "waiting for another dllab process building" not in caplog.text:
            assert time.monotonic() < deadline, "the second builder never waited for the first"
            time.sleep(0.02)
    finally:
        go.set()
        for t in threads:
            if t.ident is not None:
                t.join(60)
