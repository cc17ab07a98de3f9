import errno
import json
import math

import pytest

from dllab.errors import UserError
from dllab.io import atomic_write_json, atomic_write_text, file_stamp, stamps_match, strict_json


def test_json_is_strict_non_finite_numbers_become_null(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"loss": math.nan, "rows": [1.0, math.inf, -math.inf], "n": 3, "ok": True}, strict=True)

    def refuse(token):
        raise AssertionError(f"bare {token}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {"loss": None, "rows": [1.0, None, None],
                                                                   "n": 3, "ok": True}  # fmt: skip
    assert strict_json((1.5, {"a": math.nan})) == [1.5, {"a": None}]
    atomic_write_json(path, {"minimum": -math.inf})  # not strict: Python's own -Infinity, read back as -inf
    assert json.loads(path.read_text()) == {"minimum": -math.inf}


@pytest.mark.parametrize("code, hint", [(errno.EROFS, "read-only"), (errno.ENOSPC, "free some space"),
                                        (errno.EACCES, "permissions")])  # fmt: skip
def test_file_system_faults_name_the_path_and_leave_the_old_file(tmp_path, monkeypatch, code, hint):
    import os

    path = tmp_path / "config.json"
    atomic_write_text(path, "old")

    def fail(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UserError, match=rf"cannot write {path}: {os.strerror(code)} \(.*{hint}"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_parent_that_is_a_file_is_named(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match=r"cannot write .*f/x.json"):
        atomic_write_json(tmp_path / "f" / "x.json", {})


def test_stamps_notice_a_changed_file(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("one")
    recorded = {"a.tsv": file_stamp(path)}
    assert stamps_match(recorded, tmp_path)
    path.write_text("two!")
    assert not stamps_match(recorded, tmp_path)
    path.unlink()
    assert not stamps_match(recorded, tmp_path)


def test_one_cache_folder_with_one_variable_and_the_old_name_deprecated(monkeypatch, tmp_path):
    from dllab.io import cache_dir

    for name in ("DLLAB_CACHE", "DLLAB_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dllab"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("espeak") == tmp_path / "xdg" / "dllab" / "espeak"
    monkeypatch.setenv("DLLAB_CACHE_DIR", str(tmp_path / "old"))
    with pytest.warns(DeprecationWarning, match="DLLAB_CACHE instead"):
        assert cache_dir() == tmp_path / "old"
    monkeypatch.setenv("DLLAB_CACHE", str(tmp_path / "new"))
    assert cache_dir("features") == tmp_path / "new" / "features"  # the new name wins, silently


def test_a_build_lock_is_held_for_its_block_and_a_fault_names_the_lock(tmp_path):
    import filelock

    from dllab.io import building

    target = tmp_path / "corpus"
    other = filelock.FileLock(tmp_path / ".corpus.lock", thread_local=False)
    with building(target):
        with pytest.raises(filelock.Timeout):
            other.acquire(timeout=0)
    other.acquire(timeout=0)  # released at the end of the block
    other.release()
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match=r"cannot lock .*f/\.x\.lock"):
        with building(tmp_path / "f" / "x"):
            pass
