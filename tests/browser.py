"""Headless Chromium for report tests: did every <img> of a page load?"""

import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def images_loaded(page: Path) -> tuple[int, int]:
    """(images decoded, images on the page), read from the report's own data-images marker."""
    profile = page.parent / ".chromium-profile"
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    shutil.rmtree(profile, ignore_errors=True)
    match = re.search(r'data-images="(\d+)/(\d+)"', out)
    assert match, f"no data-images attribute in the DOM: {out[:300]}"
    return int(match.group(1)), int(match.group(2))
