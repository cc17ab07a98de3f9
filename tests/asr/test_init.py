"""dllab.asr's public face: every declared name resolves, configs and vocabulary load without torch, and the
README's speech-recognition example imports only declared names and runs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import dllab.asr

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python(section: str) -> list[str]:
    """The ```python blocks of the README section whose heading starts with `section`."""
    text = README.read_text(encoding="utf-8")
    body = re.split(r"\n#{2,3} ", text.split(f"\n### {section}", 1)[1], maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_every_declared_name_resolves():
    assert dllab.asr.__all__ == sorted(dllab.asr.__all__)
    for name in dllab.asr.__all__:
        assert getattr(dllab.asr, name) is not None
    assert len(dllab.asr.VOCAB) == 35 and dllab.asr.MAX_TOKENS == 99


def test_the_configs_and_the_vocabulary_load_without_torch():
    code = "import sys; from dllab.asr import ASRConfig, VOCAB; ASRConfig(); VOCAB.encode('a')\n"
    code += "print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_the_readme_example_imports_only_declared_names():
    (example,) = readme_python("Speech recognition")
    imports = re.findall(r"^from (dllab[\w.]*) import ([\w, ]+)$", example, flags=re.M)
    assert "dllab.asr" in {module for module, _ in imports}
    for module, names in imports:
        declared = set(__import__(module, fromlist=["__all__"]).__all__)
        used = {n.strip() for n in names.split(",")}
        assert used <= declared, f"{module}: {used - declared} not declared"


@pytest.mark.slow
def test_the_readme_example_transcribes_with_a_trained_run(trained, cache_env):
    (example,) = readme_python("Speech recognition")
    lines = example.replace('"runs/asr/transformer"', repr(str(trained / "asr" / "transformer"))).splitlines()
    scope: dict = {}
    exec(compile("\n".join([*lines[:-1], "result = " + lines[-1]]), "README.md", "exec"), scope)
    assert len(scope["result"]) == 1 and isinstance(scope["result"][0], str)  # the tiny corpus: 1 test utterance
