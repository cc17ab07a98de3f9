import subprocess
import sys

import pytest

from dllab.capabilities import CAPABILITIES
from dllab.cli import build_parser, main


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


def test_building_every_parser_does_not_import_torch():
    # `dllab --help` and `dllab <capability> ... --help` must stay quick: the parsers (and the config
    # defaults their epilogs list) come from torch-free modules; handlers import torch when they run.
    code = (
        "import sys\n"
        "from dllab.capabilities import CAPABILITIES\nfrom dllab.cli import build_parser\n"
        "def leaves(p):\n"
        "    yield p\n"
        "    for a in p._actions:\n"
        "        if a.__class__.__name__ == '_SubParsersAction':\n"
        "            for sub in a.choices.values():\n"
        "                yield from leaves(sub)\n"
        "parsers = list(leaves(build_parser()))\n"
        "for p in parsers:\n"
        "    p.format_help()\n"
        "loaded = [c for c in CAPABILITIES if f'dllab.{c}.cli' in sys.modules]\n"
        "print(len(parsers), ' '.join(loaded), 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, *loaded, torch_loaded = proc.stdout.split()
    assert int(count) > 10 and loaded == list(CAPABILITIES), proc.stdout
    assert torch_loaded == "False", "building the `dllab` parsers imported torch"


@pytest.mark.parametrize("command", [("vision", "train"), ("vision", "sweep"), ("p2g", "train"), ("asr", "train")],
                         ids="-".join)  # fmt: skip
@pytest.mark.parametrize("name", ["../../x", "a/b", "", ".", ".."])
def test_every_training_command_refuses_path_like_names(command, name, tmp_path, capsys):
    runs = tmp_path / "deep" / "runs"
    assert main([*command, "--runs", str(runs), "--name", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dllab: error: --name ") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_file_system_fault_outside_library_code_is_one_line(monkeypatch, capsys):
    import errno

    from dllab.vision import cli as vision_cli

    def fail(args):
        raise OSError(errno.EROFS, "Read-only file system", "/somewhere/out.png")

    monkeypatch.setattr(vision_cli, "cmd_params", fail)
    assert main(["vision", "params"]) == 2
    assert capsys.readouterr().err == "dllab: error: /somewhere/out.png: Read-only file system\n"
