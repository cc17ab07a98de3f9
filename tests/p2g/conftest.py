"""A tiny trained speller pair, shared by the p2g tests: a left-to-right and a right-to-left run on a couple of
hundred generated words, trained through the CLI once per test session."""

import random
from types import SimpleNamespace

import pytest

from dllab.cli import main
from dllab.engine.rundir import RunDir

# A toy spelling system: each letter has one IPA-like symbol, several of them multi-codepoint.
SYMBOL = {"a": "æ", "b": "b", "c": "t͡ʃ", "d": "d͡ʒ", "e": "iː", "f": "f", "g": "ɡ", "h": "θ"}


def write_split(path, n, rng):
    lines = []
    for _ in range(n):
        word = "".join(rng.choices("abcdefgh", k=rng.randint(2, 6)))
        lines.append(" ".join(SYMBOL[ch] for ch in word) + "\t" + word)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def toy():
    """The toy spelling system for tests that write their own splits: .symbol, .write_split(path, n, rng)."""
    return SimpleNamespace(symbol=SYMBOL, write_split=write_split)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("p2g")
    data, runs = root / "data", root / "runs"
    data.mkdir()
    rng = random.Random(0)
    write_split(data / "train.tsv", 240, rng)
    write_split(data / "valid.tsv", 40, rng)
    argv = ["p2g", "train", "--attn", "--data-dir", str(data), "--runs", str(runs), "--name", "tiny",
            "--train.epochs", "6", "--model.hidden", "32", "--train.batch_size", "16", "--optim.lr", "0.01"]
    assert main(argv) == 0
    return RunDir(runs / "p2g" / "tiny"), data


@pytest.fixture(scope="session")
def right_to_left(trained):
    run, data = trained
    runs = run.path.parent.parent
    argv = ["p2g", "train", "--attn", "--data-dir", str(data), "--runs", str(runs), "--name", "tiny-r2l",
            "--data.reverse", "true", "--train.epochs", "6", "--model.hidden", "32", "--train.batch_size", "16",
            "--optim.lr", "0.01"]  # fmt: skip
    assert main(argv) == 0
    return RunDir(runs / "p2g" / "tiny-r2l")
