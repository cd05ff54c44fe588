"""What every figure shares: colours per cell, line styles per state, escaping, empty plots,
and the ticks of log axes.

Strings that come from specs, params or failure reasons are HTML-escaped before Plotly sees
them (Plotly renders a subset of HTML in labels and hover text).
"""

from __future__ import annotations

import html
import math

import plotly.colors
import plotly.graph_objects as go
from plotly.colors import qualitative

# The tutorial's logged validation accuracy after epochs 1-6 (patch 7, hidden 128, rnn).
TUTORIAL_VAL_ACC = (0.470, 0.555, 0.595, 0.630, 0.674, 0.680)
# What that curve trained on, as (section, key, value, how a legend says it): a study of
# another setup gets its own values beside these, not a like-with-like reference.
TUTORIAL_SETUP = (("data", "patch", 7, "patch {}"), ("model", "hidden", 128, "hidden {}"),
                  ("data", "train_size", 5000, "{} training images"))
# The cells take the first colours of Plotly's D3 palette, the one other groups draw from.
CELL_COLOURS = {"rnn": qualitative.D3[0], "lstm": qualitative.D3[1], "gru": qualitative.D3[2]}
STATE_WORDS = {"FAIL": "failed"}  # a state as a legend says it (else in lower case)
STATE_STYLE = {  # state: (dash, opacity)
    "COMPLETE": ("solid", 0.85), "PRUNED": ("dash", 0.45), "FAIL": ("dot", 0.8),
    "RUNNING": ("longdash", 0.85),
}


def esc(value: object) -> str:
    return html.escape(str(value))


def colour(cell: str) -> str:
    return CELL_COLOURS.get(cell, "#7f7f7f")


def fill(colour_: str, alpha: float = 0.15) -> str:
    """A translucent fill of a palette colour (hex ``#rrggbb`` or ``rgb(r, g, b)``)."""
    rgb = plotly.colors.convert_colors_to_same_type(colour_, "rgb")[0][0]
    r, g, b = (round(v) for v in plotly.colors.unlabel_rgb(rgb))
    return f"rgba({r}, {g}, {b}, {alpha})"


def floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def empty(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, annotations=[{
        "text": "nothing to show yet", "showarrow": False, "xref": "paper", "yref": "paper",
        "x": 0.5, "y": 0.5}])
    return fig


# Per decade, from sparse to dense: a log axis takes the first that puts enough ticks in range.
_MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 5, 7), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9))


def tick_labels(ticks) -> list[str]:
    """Tick labels in full, to 3 significant digits, in one style per axis: 0.2, 0.5, 1, 2
    (Plotly's own log labels shorten 0.5 to a small "5"), or 1e-6, 1e-5 where a tick is below
    0.001 or from 100,000 up."""
    values = [float(f"{v:.3g}") for v in ticks]
    if all(v == 0 or 1e-3 <= abs(v) < 1e5 for v in values):
        return [f"{v:f}".rstrip("0").rstrip(".") for v in values]
    return [_scientific(v) for v in values]


def _scientific(v: float) -> str:
    if v == 0:
        return "0"
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def log_ticks(lo: float, hi: float, at_least: int = 3, *,
              enclose: bool = False) -> tuple[float, ...]:
    """Tick values for a log axis over ``[lo, hi]`` (both > 0): whole decades, or 1-2-5 per
    decade, or denser, whichever first puts ``at_least`` ticks in range; for a range too narrow
    for that (less than a factor of 2, say), evenly spaced round numbers. With ``enclose``,
    also the ticks just outside, so that an axis drawn from its first tick to its last (as
    parallel coordinates draw them) spans the data."""
    if not 0 < lo <= hi:
        return ()
    decades = range(math.floor(math.log10(lo)) - 1, math.floor(math.log10(hi)) + 2)
    for mantissas in _MANTISSAS:
        series = [float(f"{m * 10.0 ** k:.6g}") for k in decades for m in mantissas]
        if sum(lo <= v <= hi for v in series) >= at_least:
            break
    else:
        if hi == lo:
            return (lo,)
        raw = (hi - lo) / 4
        magnitude = 10.0 ** math.floor(math.log10(raw))
        step = next(s * magnitude for s in (1, 2, 5, 10) if s * magnitude >= raw)
        series = [float(f"{k * step:.6g}") for k in range(math.floor(lo / step),
                                                         math.ceil(hi / step) + 1)]
    if enclose:
        lo = max(v for v in series if v <= lo)
        hi = min(v for v in series if v >= hi)
    return tuple(v for v in series if lo <= v <= hi)


def log_positions(values: tuple, *, enclose: bool = False
                  ) -> tuple[list[float], list[float], list[str]]:
    """log10 of each value, and ticks labelled in full (see :func:`log_ticks`); zeros (an L2
    switched off) sit one decade below the smallest, labelled 0."""
    positive = [float(v) for v in values if float(v) > 0]
    floor = math.floor(math.log10(min(positive))) - 1 if positive else 0
    pos = [math.log10(float(v)) if float(v) > 0 else floor for v in values]
    zeros = len(positive) < len(values)  # then "0" is a tick too: two more are enough
    ticks = log_ticks(min(positive), max(positive), 2 if zeros else 3,
                      enclose=enclose) if positive else ()
    at, text = [math.log10(t) for t in ticks], tick_labels(ticks)
    if zeros:
        at, text = [float(floor), *at], ["0", *text]
    return pos, at, text
