"""`dllab reproduce`: the plan it prints, the epoch scale a --budget imposes, and a run that resumes. The
capabilities' experiments are replaced by fake tasks of known length (their calibration is tested with the
demo's plan in test_demo.py)."""

import json

import pytest

from dllab.cli import main
from dllab.engine.plan import Task
from dllab.report import build
from synthetic import sleep_for


def _fake_plan(calls):
    def plan_experiments(runs_root, quick, scale=1.0, only=None, overrides=None):
        calls.append(scale)
        # two 1000 s trainings whose time scales with their epochs, and a 100 s step that does not
        return [
            Task("a/train", sleep_for, {"seconds": 0.05}, seconds=1000 * scale),
            Task("b/train", sleep_for, {"seconds": 0.05}, seconds=1000 * scale),
            Task("b/test", sleep_for, {"seconds": 0.05}, seconds=100, after=("b/train",)),
        ]

    return plan_experiments


def test_plan_only_prints_every_task_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build, "plan_experiments", _fake_plan([]))
    assert main(["reproduce", "--plan", "--runs", str(tmp_path / "runs"), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "plan: 3 experiments at the homework's settings on 2 cores, about 18m20s in all" in out
    assert "a/train" in out and "b/test" in out and "from 16m40s to 18m20s" in out
    assert not (tmp_path / "runs").exists()


def test_a_budget_scales_the_epochs_until_the_plan_fits(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(build, "plan_experiments", _fake_plan(calls))
    assert main(["reproduce", "--plan", "--budget", str(600 / 3600), "--runs", str(tmp_path), "--workers", "2"]) == 0
    # 1000 s + 100 s at full scale; the fixed 100 s means one ratio (600/1100) undershoots: 0.5 fits exactly
    assert calls[0] == 1.0 and calls[-1] == pytest.approx(0.5, rel=0.02)
    assert "epochs x0.5" in capsys.readouterr().out


def test_a_run_records_its_plan_and_a_rerun_skips_what_is_done(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "plan_experiments", _fake_plan([]))
    monkeypatch.setattr(build, "build_report", lambda runs, out, only=None: out / "index.html")
    runs = tmp_path / "runs"
    assert main(["reproduce", "--runs", str(runs), "--out", str(tmp_path / "report"), "--workers", "2"]) == 0
    state = json.loads((runs / ".plan" / "plan.json").read_text())["tasks"]
    assert {k: v["status"] for k, v in state.items()} == dict.fromkeys(("a/train", "b/train", "b/test"), "done")
    meta = json.loads((runs / ".plan" / "meta.json").read_text())
    assert meta["scale"] == 1.0 and meta["cores"] == 2 and meta["tasks"] == ["a/train", "b/test", "b/train"]
    first = {k: v["seconds"] for k, v in state.items()}
    assert main(["reproduce", "--runs", str(runs), "--out", str(tmp_path / "report"), "--workers", "2"]) == 0
    again = json.loads((runs / ".plan" / "plan.json").read_text())["tasks"]
    assert {k: v["seconds"] for k, v in again.items()} == first  # nothing ran again


@pytest.mark.parametrize("args, message", [(["--budget", "0"], "--budget"), (["--workers", "-1"], "--workers")])
def test_bad_options_are_clear_errors(args, message, tmp_path, capsys):
    assert main(["reproduce", "--plan", "--runs", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
