"""Parameter importances (fANOVA) with their bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from rnnlab.analysis.frames import StudyFrames
from rnnlab.dashboards.style import empty, esc, floats


@dataclass(frozen=True)
class _ImportancesInfo:
    params: tuple[str, ...]
    importances: tuple[float, ...]  # mean over bootstrap resamples
    low: tuple[float, ...]  # the 90% interval
    high: tuple[float, ...]
    note: str


def _get_importances_info(frames: StudyFrames) -> _ImportancesInfo:
    imp = frames.importances.sort_values("importance", ascending=False)
    return _ImportancesInfo(tuple(imp["param"]), floats(imp["importance"]),
                            floats(imp.get("low", imp["importance"])),
                            floats(imp.get("high", imp["importance"])), frames.importance_note)


def _get_importances_plot(info: _ImportancesInfo) -> go.Figure:
    fig = go.Figure()
    note = _lines(esc(info.note))
    title = "Parameter importances<br><sub>" + "<br>".join(note) + "</sub>"
    if not info.params:
        return empty(fig, title)
    mean = list(info.importances)[::-1]
    fig.add_trace(go.Bar(
        x=mean, y=[esc(p) for p in info.params][::-1], orientation="h",
        marker={"color": "#636efa"}, error_x={
            "type": "data", "symmetric": False,
            "array": [h - m for h, m in zip(info.high[::-1], mean, strict=True)],
            "arrayminus": [m - lo for lo, m in zip(info.low[::-1], mean, strict=True)]},
        customdata=list(zip(info.low[::-1], info.high[::-1], strict=True)),
        hovertemplate=("%{y}: %{x:.3f} (90% interval %{customdata[0]:.3f} to "
                       "%{customdata[1]:.3f})<extra></extra>")))
    # The title and its note sit just above the bars, the top margin grown to hold them.
    fig.update_layout(title={"text": title, "yref": "paper", "y": 1, "yanchor": "bottom",
                             "pad": {"b": 12}, "automargin": True},
                      xaxis_title="importance (mean over resamples; bars: 90% interval)",
                      height=200 + 24 * len(note) + 40 * len(info.params))
    return fig


def _lines(text: str, width: int = 110) -> list[str]:
    """``text`` cut at "; " and ", " into lines of about ``width`` characters (titles do not
    wrap by themselves)."""
    lines, line = [], ""
    for part in text.replace("; ", ";\n").replace(", ", ",\n").split("\n"):
        if line and len(line) + len(part) > width:
            lines.append(line.rstrip())
            line = ""
        line += part + " "
    return [*lines, line.rstrip()] if line else lines


def plot_importances(frames: StudyFrames) -> go.Figure:
    """fANOVA importances of the searched params for the objective."""
    return _get_importances_plot(_get_importances_info(frames))
