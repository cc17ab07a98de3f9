"""The report's document model: sections of paragraphs, tables, figures and code, written to HTML and Markdown.

Capabilities contribute sections through `dllab/<capability>/report.py`, which defines

    def build_section(ctx: ReportContext) -> Section
        # read results from ctx.runs_root / "<capability>" (what its commands wrote), draw figures with
        # ctx.save_figure(fig, "name.png"), and return a Section. With no runs yet, return a Section whose
        # paragraph says which command produces them.

and, for `dllab report --rerun` and `dllab reproduce` (dllab.report.build, dllab.engine.plan),

    def experiments(runs_root: Path, quick: bool, scale: float, overrides: tuple[str, ...]) -> list[Task]
        # this capability's experiments as plan tasks with calibrated estimates (quick: the demo's sizes;
        # scale: multiplies the epochs; overrides: --key=value words applied to every config last)
    def demo_figures(runs_root: Path) -> dict[str, float | None]
        # the demo's headline figures, judged against dllab.report.demo.THRESHOLDS
    def submitted_figures(runs_root: Path) -> list[dllab.report.submitted.Headline]
        # the full runs' figures beside those the submitted homework reports give (the report's first table)
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dllab.io import atomic_write_bytes


@dataclass
class Paragraph:
    text: str  # plain text; `code` spans and **bold** are rendered


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Figure:
    path: str  # relative to the report folder, e.g. "figures/vision_lr_sweep.png"
    caption: str = ""


@dataclass
class Code:
    text: str


Block = Paragraph | Table | Figure | Code


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


@dataclass
class ReportContext:
    runs_root: Path
    out_dir: Path

    @property
    def figures_dir(self) -> Path:
        return self.out_dir / "figures"

    def save_figure(self, fig, name: str, caption: str = "") -> Figure:
        """Save a matplotlib figure as figures/<name> (atomically) and return the block that shows it."""
        import matplotlib.pyplot as plt

        try:
            atomic_write_bytes(
                self.figures_dir / name, lambda fh: fig.savefig(fh, dpi=110, bbox_inches="tight", format="png")
            )
        finally:
            plt.close(fig)
        return Figure(f"figures/{name}", caption)


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _inline_html(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def to_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]

    def emit(section: Section, depth: int) -> None:
        lines.extend([f"{'#' * depth} {section.title}", ""])
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines.extend([block.text, ""])
            elif isinstance(block, Code):
                lines.extend(["```", block.text, "```", ""])
            elif isinstance(block, Figure):
                lines.extend([f"![{block.caption}]({block.path})", "", f"*{block.caption}*", ""])
            elif isinstance(block, Table):
                if block.caption:
                    lines.extend([f"**{block.caption}**", ""])
                lines.append("| " + " | ".join(block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                for row in block.rows:
                    lines.append("| " + " | ".join(format_cell(c).replace("|", "\\|") for c in row) + " |")
                lines.append("")
        for sub in section.subsections:
            emit(sub, depth + 1)

    for section in sections:
        emit(section, 2)
    return "\n".join(lines)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1050px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}caption{caption-side:top;font-weight:600;padding:.3em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
code,pre{background:#f6f6f6;font-size:.9em}pre{padding:.6em;overflow-x:auto}nav li{margin:.15em 0}
"""

# Marks <body data-images="loaded/total"> once the page has loaded, so a headless browser test can check
# that every figure was found and decoded.
_IMAGE_CHECK = """
window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}
document.body.setAttribute('data-images',ok+'/'+im.length);});
"""


def to_html(title: str, sections: list[Section]) -> str:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{_IMAGE_CHECK}</script>",
        f"</head><body><h1>{html.escape(title)}</h1><nav><ul>",
    ]
    parts.extend(f"<li><a href='#{_slug(s.title)}'>{html.escape(s.title)}</a></li>" for s in sections)
    parts.append("</ul></nav>")

    def emit(section: Section, depth: int) -> None:
        parts.append(f"<h{depth} id='{_slug(section.title)}'>{html.escape(section.title)}</h{depth}>")
        for block in section.blocks:
            if isinstance(block, Paragraph):
                parts.append(f"<p>{_inline_html(block.text)}</p>")
            elif isinstance(block, Code):
                parts.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
            elif isinstance(block, Figure):
                parts.append(
                    f"<figure><img src='{html.escape(block.path)}' alt='{html.escape(block.caption)}'>"
                    f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>"
                )
            elif isinstance(block, Table):
                parts.append("<table>")
                if block.caption:
                    parts.append(f"<caption>{_inline_html(block.caption)}</caption>")
                parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers) + "</tr>")
                for row in block.rows:
                    cells = "".join(f"<td>{html.escape(format_cell(c))}</td>" for c in row)
                    parts.append(f"<tr>{cells}</tr>")
                parts.append("</table>")
        for sub in section.subsections:
            emit(sub, min(depth + 1, 6))

    for section in sections:
        emit(section, 2)
    parts.append("</body></html>")
    return "\n".join(parts)
