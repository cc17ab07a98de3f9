import matplotlib.pyplot as plt
import pytest

from browser import CHROMIUM, images_loaded
from dllab.io import atomic_write_text
from dllab.report.document import (
    Code,
    Paragraph,
    ReportContext,
    Section,
    Table,
    to_html,
    to_markdown,
)


def _sections(ctx):
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    figure = ctx.save_figure(fig, "line.png", "a line")
    return [Section("Results", [Paragraph("uses `code` and **bold** <script>"),
                                Table(["run", "acc", "params"], [["a|b", 0.91234, 224892]], caption="cap"),
                                figure, Code("x = 1")],
                    [Section("Sub", [Paragraph("nested")])])]


def test_markdown_and_html_render_every_block(tmp_path):
    ctx = ReportContext(tmp_path / "runs", tmp_path / "report")
    sections = _sections(ctx)
    md = to_markdown("T", sections)
    assert "| a\\|b | 0.9123 | 224,892 |" in md and "![a line](figures/line.png)" in md and "### Sub" in md
    html = to_html("T", sections)
    assert "<code>code</code>" in html and "<strong>bold</strong>" in html and "&lt;script&gt;" in html
    assert "<img src='figures/line.png'" in html and (tmp_path / "report" / "figures" / "line.png").exists()


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make setup installs it)")
def test_every_figure_loads_in_headless_chromium(tmp_path):
    ctx = ReportContext(tmp_path / "runs", tmp_path / "report")
    sections = _sections(ctx)
    sections[0].blocks.append(ctx.save_figure(plt.figure(), "second.png", "empty"))
    page = tmp_path / "report" / "index.html"
    atomic_write_text(page, to_html("T", sections))
    assert images_loaded(page) == (2, 2)
    (tmp_path / "report" / "figures" / "second.png").unlink()
    assert images_loaded(page) == (1, 2)  # the check can fail: a missing figure is seen

