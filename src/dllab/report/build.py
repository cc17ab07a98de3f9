"""Assemble the report from every capability's `report.py` section (see dllab.report.document)."""

from __future__ import annotations

import datetime
import logging
import platform
from pathlib import Path

from dllab.capabilities import hooks, rooms
from dllab.io import atomic_write_text
from dllab.report import submitted
from dllab.report.document import Paragraph, ReportContext, Section, Table, to_html, to_markdown

log = logging.getLogger(__name__)
TITLE = "dllab: IST Deep Learning Homework 2, rerun"


def plan_experiments(runs_root: Path, quick: bool, scale: float = 1.0, only: list[str] | None = None,
                     overrides: dict[str, tuple[str, ...]] | None = None) -> list:
    """Every capability's experiments as plan tasks (`dllab.engine.plan`), estimated by calibration here.

    A capability's report.py declares `experiments(runs_root, quick, scale, overrides) -> list[Task]` (see
    dllab.report.document). `overrides` gives a capability's `--key=value` words, applied to each of its runs'
    configs last (the tests run the demo's plan on tiny data this way).
    """
    tasks = []
    for capability, declared in hooks("report", "experiments", only):
        log.info("calibrating the %s experiments", capability)
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.WARNING)  # the calibration runs' own lines are not news
        try:
            tasks += declared(Path(runs_root), quick=quick, scale=scale,
                              overrides=tuple((overrides or {}).get(capability, ())))
        finally:
            root.setLevel(level)
    return tasks


def build_report(runs_root: Path, out_dir: Path, only: list[str] | None = None) -> Path:
    """Write out_dir/index.html and out_dir/index.md; returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    ctx = ReportContext(Path(runs_root), Path(out_dir))
    sections: list[Section] = [module.build_section(ctx) for capability, module in rooms("report")
                               if not only or capability in only]  # every report.py has one
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    about = Section("About this report").add(
        Paragraph(
            f"Built {stamp} on {platform.machine()} / Python {platform.python_version()} from the run "
            f"directories under `{runs_root}`. Every number and figure below is read from those runs; "
            "each section says which command produced them and with which configuration."
        )
    )
    about.add(*_plan_notes(Path(runs_root)))
    sections.insert(0, about)
    headline = submitted.section(submitted.headlines(Path(runs_root), only))
    if headline is not None:
        sections.insert(1, headline)
    atomic_write_text(ctx.out_dir / "index.md", to_markdown(TITLE, sections))
    html_path = ctx.out_dir / "index.html"
    atomic_write_text(html_path, to_html(TITLE, sections))
    return html_path


def _plan_notes(runs_root: Path) -> list[Paragraph | Table]:
    """What the last `dllab reproduce` / `dllab report --rerun` plan did: its scale, estimate and real time,
    and each finished experiment's calibrated estimate against the time it took."""
    import json

    from dllab.engine.plan import format_duration

    notes = []
    for folder, what in ((".plan", "`dllab reproduce`"), (".plan-quick", "the demo (`dllab report --rerun --quick`)")):
        try:
            meta = json.loads((runs_root / folder / "meta.json").read_text())
            tasks = json.loads((runs_root / folder / "plan.json").read_text())["tasks"]
        except (OSError, ValueError, KeyError):
            continue
        done = {name: t for name, t in tasks.items() if t.get("status") == "done"}
        measured = sum(t.get("seconds", 0.0) for t in done.values())
        planned = len(meta.get("tasks", tasks))  # plan.json holds only the tasks that have finished
        text = (f"{what} ran {len(done)} of {planned} experiments on {meta.get('cores', '?')} cores "
                f"(estimated {format_duration(meta.get('estimate_seconds', 0))} in all; the finished ones took "
                f"{format_duration(measured)} of worker time).")
        if meta.get("scale", 1.0) < 1.0:
            text += (f" To fit a budget of {meta.get('budget_hours')} hours, every run's epochs were scaled by "
                     f"{meta['scale']:.2f}: results are below the homework's settings.")
        notes.append(Paragraph(text))
        if done:
            rows = [[name, format_duration(t.get("estimate", 0.0)), format_duration(t["seconds"]),
                     f"{t['seconds'] / t['estimate']:.2f}" if t.get("estimate") else ""]
                    for name, t in done.items()]  # fmt: skip
            notes.append(Table(["experiment", "estimate", "measured", "measured / estimate"], rows,
                               caption=f"{what}: each finished experiment's estimate against its time"))
    return notes
