"""The report's headline table: each homework experiment's figure from this report's runs, beside the figures
the submitted homework reports give for the same experiment (`../shared/seeds`, quoted by each capability).

A capability's report.py contributes

    def submitted_figures(runs_root: Path) -> list[Headline]

one row per figure a submitted report states (its run missing: `ours` is None). `dllab reproduce` prints the
table when it ends; the report puts it first. The submitted reports trained on other data for some experiments
(OCTMNIST, the Intel images, LJSpeech, the course's test split), so every row names both sides' data: the
table compares the same experiment at the homework's settings, and says where the data differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dllab.report.document import Paragraph, Section, Table


@dataclass(frozen=True)
class Headline:
    experiment: str  # "2023-24 CNN, max-pool, lr 0.01, 15 epochs"
    metric: str  # "final test accuracy"
    ours: float | None  # None: its run is missing
    ours_data: str  # what dllab measured it on: "Fashion-MNIST test (10 classes)"
    submitted: tuple[tuple[str, float], ...]  # (("seed 001", 0.8204), ...)
    submitted_data: str  # what the submitted reports measured it on: "OCTMNIST test (4 classes)"


def headlines(runs_root: Path, only: list[str] | None = None) -> list[Headline]:
    """Every capability's rows, in the report's order."""
    from dllab.capabilities import hooks

    return [row for _, figures in hooks("report", "submitted_figures", only) for row in figures(Path(runs_root))]


def _value(x: float | None) -> str:
    return "not run" if x is None else f"{x:.4f}"


def _submitted(row: Headline) -> str:
    return ", ".join(f"{value:.4f} ({who})" for who, value in row.submitted)


def section(rows: list[Headline]) -> Section | None:
    """The table, or None when no capability has a row."""
    if not rows:
        return None
    table = Table(
        ["experiment", "metric", "dllab", "submitted reports", "data: dllab / submitted"],
        [[r.experiment, r.metric, _value(r.ours), _submitted(r), f"{r.ours_data} / {r.submitted_data}"]
         for r in rows],  # fmt: skip
        caption="Each homework experiment's figure from this report's runs, beside the submitted reports' figures",
    )
    done = sum(r.ours is not None for r in rows)
    return Section("Headline figures against the submitted reports").add(
        Paragraph(
            f"{done} of {len(rows)} figures have their run here (`dllab reproduce` runs them all at the homework's "
            "settings). The submitted reports are five homework hand-ins (2023-24 and 2024-25). Where the data "
            "differ (the last column) the rows compare the same experiment, not the same numbers: OCTMNIST, the "
            "Intel images and LJSpeech are not on this machine, and the course's test split is held out."
        ),
        table,
    )


def format_rows(rows: list[Headline]) -> str:
    """The table as plain lines for a terminal."""
    width = max((len(f"{r.experiment}, {r.metric}") for r in rows), default=0)
    return "\n".join(
        f"  {f'{r.experiment}, {r.metric}':<{width}}  dllab {_value(r.ours):>7}   submitted {_submitted(r)}"
        for r in rows
    )
