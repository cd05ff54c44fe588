"""The docs quote each timing from one dated source, docs/timings.md: the README and the
quickstart spec's comment give the same figures as that page; every figure and file that
docs/results.md shows or links is there, and every figure there is shown."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timing(what: str) -> str:
    """The time column of docs/timings.md's row named `what`, up to its first figure's unit."""
    rows = [line for line in (ROOT / "docs" / "timings.md").read_text().splitlines()
            if line.startswith(f"| {what} |")]
    assert len(rows) == 1, f"docs/timings.md has no single row '{what}'"
    match = re.match(r"\s*([\d.]+ s)", rows[0].rstrip("|").rsplit("|", 1)[1])
    assert match, rows[0]
    return match.group(1)


def test_timings_page_is_dated():
    assert re.search(r"Measured on \d{4}-\d{2}-\d{2}", (ROOT / "docs" / "timings.md").read_text())


def test_readme_and_quickstart_spec_quote_the_timings_page():
    sweep, first = _timing("quickstart sweep"), _timing("first `make quickstart`")
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines()
               if line.startswith("| `studies/quickstart.yaml`"))
    assert f"about {sweep}" in row and f"{first} in all" in row, row
    spec = (ROOT / "studies" / "quickstart.yaml").read_text()
    comment = " ".join(line.lstrip("# ") for line in spec.splitlines() if line.startswith("#"))
    assert f"about {sweep}" in comment, comment
    # A time the page does not give has no place in either.
    for text in (row, comment):
        for quoted in re.findall(r"(\d+(?:\.\d+)? (?:s|seconds|minutes))\b", text):
            assert quoted in {sweep, first}, f"{quoted!r} is not in docs/timings.md"
    assert "minutes" not in comment


def test_results_page_links_every_figure_and_every_link_resolves():
    page = (ROOT / "docs" / "results.md").read_text()
    linked = set(re.findall(r"\]\((results/[^)#]+)\)", page))
    missing = [p for p in linked if not (ROOT / "docs" / p).exists()]
    assert missing == []
    figures = {f"results/{p.name}" for p in (ROOT / "docs" / "results").glob("*.png")}
    assert figures - linked == set(), "figures in docs/results that the page never shows"
