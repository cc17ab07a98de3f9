"""dllab.p2g's public face: every declared name resolves, configs load without torch, and the README's p2g
example imports only declared names and runs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import dllab.p2g

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python(section: str) -> list[str]:
    """The ```python blocks of the README section whose heading starts with `section`."""
    text = README.read_text(encoding="utf-8")
    body = re.split(r"\n#{2,3} ", text.split(f"\n### {section}", 1)[1], maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def imported_names(code: str) -> dict[str, set[str]]:
    """{module: names} of the `from dllab... import a, b` lines of `code`."""
    out: dict[str, set[str]] = {}
    for module, names in re.findall(r"^from (dllab[\w.]*) import ([\w, ]+)$", code, flags=re.M):
        out.setdefault(module, set()).update(n.strip() for n in names.split(","))
    return out


def test_every_declared_name_resolves():
    assert dllab.p2g.__all__ == sorted(dllab.p2g.__all__)
    for name in dllab.p2g.__all__:
        assert getattr(dllab.p2g, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        dllab.p2g.no_such_name  # noqa: B018


def test_the_configs_load_without_torch():
    code = "import sys; from dllab.p2g import P2GConfig, LSTMConfig; P2GConfig(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_the_readme_example_imports_only_declared_names():
    (example,) = readme_python("Phoneme-to-spelling")
    imports = imported_names(example)
    assert imports["dllab.p2g"] and imports["dllab.p2g"] <= set(dllab.p2g.__all__)
    for module, names in imports.items():
        declared = set(__import__(module, fromlist=["__all__"]).__all__)
        assert names <= declared, f"{module}: {names - declared} not declared"


@pytest.mark.slow
def test_the_readme_example_spells_with_a_trained_run(trained):
    run, _ = trained
    (example,) = readme_python("Phoneme-to-spelling")
    lines = example.replace('"runs/p2g/course-attn"', repr(str(run.path))).splitlines()
    scope: dict = {}
    exec(compile("\n".join([*lines[:-1], "result = " + lines[-1]]), "README.md", "exec"), scope)
    assert len(scope["result"]) == 1 and isinstance(scope["result"][0][0], str)
