import subprocess
import sys

import pytest

from dllab.cli import CAPABILITIES, build_parser, main


def _leaf_parsers(parser, path=()):
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not actions:
        yield path, parser
        return
    for name, sub in actions[0].choices.items():
        yield from _leaf_parsers(sub, (*path, name))


def test_help_lists_the_capabilities_present(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "vision" in out and "report" in out and "bench" in out
    for capability in CAPABILITIES:
        try:
            __import__(f"dllab.{capability}.cli")
        except ModuleNotFoundError:
            continue
        assert capability in out


def test_every_leaf_command_help_shows_an_example():
    leaves = list(_leaf_parsers(build_parser()))
    assert len(leaves) >= 5
    for path, parser in leaves:
        text = parser.format_help()
        assert "example" in text and "dllab " in text, f"`dllab {' '.join(path)} --help` has no example"


def test_user_error_exits_2_with_message_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "dllab", "vision", "train", "--optim.lrr=1"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "unknown config key --optim.lrr" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_dataset_file_is_a_clear_error(tmp_path, capsys):
    code = main(["vision", "train", "--data.dataset=octmnist", f"--data.path={tmp_path}/octmnist.npz",
                 "--runs", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "octmnist.npz: no such file" in err and "medmnist" in err
