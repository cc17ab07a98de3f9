"""The report: figures drawn from run directories, written as report/index.html and report/index.md.

- document.py: the document model (`Section`, `Paragraph`, `Table`, `Figure`, `Code`, `ReportContext`) and
  its HTML / Markdown writers. Each capability's `report.py` returns a `Section` built from these.
- figures.py: `run_curves`, `compare_runs`, drawn from metrics.jsonl.
- build.py: `build_report` gathers every capability's section; `plan_experiments` gathers their experiments
  as plan tasks (`dllab.engine.plan`) for `dllab report --rerun` and `dllab reproduce`.
"""

from dllab.lazy import lazy_exports

_EXPORTS = {
    "Code": "document",
    "Figure": "document",
    "Paragraph": "document",
    "ReportContext": "document",
    "Section": "document",
    "Table": "document",
    "build_report": "build",
    "plan_experiments": "build",
    "compare_runs": "figures",
    "run_curves": "figures",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
