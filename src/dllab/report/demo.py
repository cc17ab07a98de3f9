"""What the demo must show: each capability's headline figure against the threshold that says the model works.

`make demo` (`dllab report --rerun --quick`) prints these after its plan ran; `dllab bench demo` times the
whole demo and prints them as its targets. A capability's report.py contributes `demo_figures(runs_root)`.
"""

from __future__ import annotations

from pathlib import Path

# key -> (what it is, ">=" or "<=", threshold)
THRESHOLDS: dict[str, tuple[str, str, float]] = {
    "vision.test_acc": ("Fashion-MNIST test accuracy, 2023-24 net, best run and epoch by validation", ">=", 0.85),
    "p2g.greedy_cer": ("speller greedy CER, attention model, embedded CMUdict set", "<=", 0.30),
    "asr.greedy_cer": ("speech recognition greedy CER, Transformer decoder (attention alone)", "<=", 0.60),
    "asr.greedy_ctc_cer": ("speech recognition greedy CER with the CTC head's prefix scores", "<=", 0.60),
    "asr.degenerate": ("share of the shown speech transcripts (greedy + CTC) looping on a repeated word", "<=", 0.0),
    "asr.degenerate_attention_only": ("share of attention-alone greedy transcripts looping (for information)", "", 0.0),
}
DEMO_MINUTES = 12  # the whole `make demo` on 2 cores, set-up included


def demo_figures(runs_root: Path, only: list[str] | None = None) -> list[dict]:
    """One row per headline figure: key, what, value (None when its run is missing), threshold, met."""
    from dllab.capabilities import hooks

    values: dict[str, float | None] = {}
    for _, figures in hooks("report", "demo_figures", only):
        values.update(figures(Path(runs_root)))
    rows = []
    for key, value in values.items():
        what, sense, limit = THRESHOLDS.get(key, (key, "", float("nan")))
        met = None if value is None or not sense else (value >= limit if sense == ">=" else value <= limit)
        rows.append({"key": key, "what": what, "value": value, "sense": sense, "threshold": limit, "met": met})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        value = "missing" if r["value"] is None else f"{r['value']:.4f}"
        status = {True: "met", False: "MISSED", None: "-"}[r["met"]]
        target = f" (target {r['sense']} {r['threshold']:g})" if r["sense"] else ""
        lines.append(f"  [{status:^6}] {r['what']}: {value}{target}")
    return "\n".join(lines)
