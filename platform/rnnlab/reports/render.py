"""Drawing a :class:`~rnnlab.reports.info.ReportInfo` as Markdown, JSON, YAML (the best config
alone) or a self-contained HTML page.

Every number says whether it is a validation or a test number. Strings from specs and params
are escaped: ``|`` and HTML in Markdown tables, everything in HTML.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from typing import Any

from rnnlab.analysis.frames import StudyFrames
from rnnlab.analysis.gains import WeakPenalty
from rnnlab.analysis.intervals import CONFIDENCE
from rnnlab.analysis.levels import Effect, Gap
from rnnlab.core.data import TUTORIAL_VAL
from rnnlab.dashboards.importances import plot_importances
from rnnlab.dashboards.learning_curves import plot_learning_curves
from rnnlab.dashboards.normalisation import plot_normalisation
from rnnlab.dashboards.page import figure_div, page
from rnnlab.reports.info import (
    Confirmation,
    ReportInfo,
    Spread,
    TrialRow,
    changes_text,
    native,
    scored_weights,
)


def render(info: ReportInfo, fmt: str, frames: StudyFrames | None = None) -> str:
    """The report in one format (``html`` draws its figures from ``frames`` when given)."""
    if fmt == "yaml":
        return info.best_yaml
    if fmt == "json":
        return json.dumps(_jsonable(dataclasses.asdict(info) | {
            "best_yaml": info.best_yaml,
            "cell_gaps_test": [dataclasses.asdict(g) | {"separated": g.separated}
                               for g in info.cell_gaps],
            "confirmations": [dataclasses.asdict(c) | {
                "mean_test_acc": c.own.mean, "std_test_acc": c.own.std,
                "own_interval": c.own.interval, "other_subset_means": c.others.values,
                "other_mean_test_acc": c.others.mean, "other_std_test_acc": c.others.std,
                "other_interval": c.others.interval, "optimism": c.optimism,
                "optimism_interval": c.optimism_interval} for c in info.confirmations]}),
            indent=1) + "\n"
    if fmt == "md":
        return markdown(info)
    return html_page(info, frames)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return native(obj)


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _md(value: object) -> str:
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def _pm(spread: Spread) -> str:
    """``0.9649 ± 0.0038 [0.9555, 0.9743]``: mean, std and 95% interval, as far as known."""
    if spread.mean is None:
        return "-"
    low, high = spread.interval
    return (f"{spread.mean:.4f}" + (f" ± {spread.std:.4f}" if spread.std is not None else "")
            + (f" [{low:.4f}, {high:.4f}]" if low is not None else ""))


def _diff(value: float | None, interval: tuple) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" + (f" [{interval[0]:+.4f}, {interval[1]:+.4f}]"
                              if interval[0] is not None else "")


# --- the tables, as header + rows of plain strings (escaped by each format) -----------------

def _summary(info: ReportInfo) -> str:
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(info.counts.items()))
    replayed = (f"; {info.replayed} of them replay an arm another ablation of the study "
                "trained (the same config and seed), not trained again" if info.replayed else "")
    return (f"Study {info.study}: {counts} (budget {info.budget}){replayed}. Objective: the "
            f"{info.objective}"
            f" validation {info.metric} over epochs ({info.direction}). Trials were selected on "
            "the validation split only; "
            + ("the test set scored only the confirmation runs below." if info.confirmations
               else "the test set was not used ("
               + ("see below)." if info.derived_from else "--no-confirm).")))


def _best_lines(info: ReportInfo) -> list[str]:
    b = info.best
    return [f"validation {info.metric} (objective, {info.objective} epoch): {b.value:.4f}",
            f"final validation val_acc: {_f(b.final_val_acc)}; final validation val_loss: "
            f"{_f(b.final_val_loss)}; epochs: {b.epochs}",
            "searched values: " + (", ".join(f"{k}={_g(v) if isinstance(v, float) else v}"
                                             for k, v in b.params.items()) or "none"),
            *_at_chance(info)]


CHANCE = 0.1135  # the commonest digit's share (1s: 1135 of the 10,000 test images): what a
# model that learned nothing but to answer it scores


def _at_chance(info: ReportInfo) -> list[str]:
    """A line where the best trial's validation accuracy is within noise of chance (three
    binomial standard deviations on the validation images): then no trial learned, and the
    best is a draw among failures, not a config."""
    data = info.best_config.get("data", {})
    n = TUTORIAL_VAL if data.get("split") == "tutorial" else data.get("val_size")
    if info.metric != "val_acc" or not n or info.best.value != info.best.value:
        return []
    bound = CHANCE + 3 * math.sqrt(CHANCE * (1 - CHANCE) / n)
    if info.best.value > bound:
        return []
    return [f"at chance: answering the commonest digit scores about {CHANCE:.2f}, and "
            f"{info.best.value:.4f} is within noise of it on {n} validation images (up to "
            f"{bound:.3f}): no trial of this "
            "study learned, so this is no config to adopt; move or widen the search "
            "(train.lr first)"]


def _confirm_table(info: ReportInfo) -> tuple[list[str], list[list[str]]]:
    head = ["config", "trial", f"trial's {info.metric} (validation)",
            f"test accuracy, the study's subset (mean ± std of {info.confirm_seeds} seeds "
            f"[{CONFIDENCE:.0%} CI])",
            f"test accuracy, {info.confirm_splits} other subsets (mean ± std of their means "
            f"[{CONFIDENCE:.0%} CI])",
            f"optimism: the study's subset minus the others [{CONFIDENCE:.0%} CI]",
            "test accuracy per run (subset/seed)", "runs (reused)"]
    values = {r.number: _f(r.value) for r in (*info.top, *info.per_cell, info.best)}
    rows = [[", ".join(c.roles) + (f" ({changes_text(c.changes)}, from an ablation)"
                                   if c.changes else ""), str(c.trial),
             _ablated(info, c) if c.changes else values.get(c.trial, "-"),
             _pm(c.own), _pm(c.others),
             _diff(c.optimism, c.optimism_interval),
             ", ".join(f"{a:.4f} ({sp}/{se})" for a, sp, se in
                       zip(c.test_acc, c.splits, c.seeds, strict=True)),
             f"{len(c.run_ids)} ({c.reused})"] for c in info.confirmations]
    return head, rows


def _ablated(info: ReportInfo, c: Confirmation) -> str:
    """A config an ablation found: its level's mean over the ablation's seeds."""
    g = next((g for g in info.gains if g.trial == c.trial
              and ((g.factor, g.level),) == tuple(c.changes)), None)
    return "-" if g is None else f"{g.mean:.4f} (mean of {g.n} seeds, {g.study})"


def _gain_lines(info: ReportInfo) -> list[str]:
    return [f"{g.cell}: {g.change} instead of {g.own} (trial {g.trial}, the search's best "
            f"{g.cell}) is ahead by {g.diff:.4f} [{g.low:+.4f}, {g.high:+.4f}], paired over "
            f"{g.n} seeds, in {g.study}" for g in info.gains]


_SELECTION_HEAD = "## Each stratum's best, chosen on fresh seeds (validation)"


def _selection_note(info: ReportInfo) -> str:
    s = info.selection
    stale = (f"It was planned before the search went on ({s.stale}): its choices are stale "
             f"and not used; delete it (`rnnlab delete {s.study}`) and choose again "
             "(`rnnlab select`). "
             if s.stale else "")
    return (f"The search's top {s.top} trials of each stratum were trained again with {s.seeds} "
            f"fresh seed(s) each (train.seed + 1, + 2, ...; study {s.study}), unpruned. Each "
            "stratum's best is the one with the best mean over those seeds; the search's own "
            "run is left out of the mean, being the one run each was picked for. " + stale
            + (f"This study is the selection itself: each of its trials is one run, and the "
               f"report of {s.study.removesuffix('-select')} names the choices its bests."
               if info.study == s.study else
               "The best config above and each cell's best are the choices." if s.done else
               "The bests above are the search's." if s.stale else
               "The selection is not finished: the bests above are still the search's."))


def _selection_table(info: ReportInfo) -> tuple[list[str], list[list[str]]]:
    s = info.selection
    head = ["stratum", "trial of the search", f"{info.metric} in the search (validation, 1 seed)",
            "mean ± std over the fresh seeds (validation)", "per seed (seed: value)",
            "chosen"]
    rows = [[r.stratum or "all", str(r.trial), _f(r.search_value),
             _f(r.mean) + ("" if r.std is None else f" ± {r.std:.4f}")
             + f" ({len(r.values)} of {s.seeds})",
             ", ".join(f"{seed}: {v:.4f}" for seed, v in zip(r.seeds, r.values, strict=True)),
             "yes" if r.chosen else ""] for r in s.rows]
    return head, rows


def _lead_lines(info: ReportInfo) -> list[str]:
    return [f"{lead.stratum or 'the study'}: trial {lead.chosen} ahead of trial "
            f"{lead.runner_up}, the runner-up, by {_diff(lead.diff, (lead.low, lead.high))}, "
            f"paired over {lead.n} seed(s)" + ("" if lead.low is not None else
                                               " (no interval below 2 seeds)")
            for lead in info.selection.leads]


_ABLATIONS_HEAD = "## The study's ablations (validation)"


def _weak_text(weak: tuple[WeakPenalty, ...], study: str) -> str:
    """What an ablation that tried weak penalties only leaves open, and how to ask it."""
    middle = weak[0].middle
    cells = ", ".join(f"{w.cell} (at most {w.level:.3g})" for w in weak)
    return (f"its levels for {cells} all lie below the middle of the searched range "
            f"({middle:.3g}, the level an ablation takes when the best trained without the "
            "penalty): next to none they are almost the same penalty, so whether a real one "
            f"helps is still open; delete it (`rnnlab delete {study}`) and ablate again with "
            f"--levels 0,{middle:.3g}")


def _ablation_lines(info: ReportInfo) -> list[str]:
    """Each ablation of the study: what it found, or why the report does not use it."""
    lines = []
    for a in info.ablations:
        head = f"{a.study} ({a.factor}, {a.finished} of {a.planned} arms): "
        used = [c for c in a.cells if c not in a.stale]
        if a.finished < a.planned:
            body = "not finished, so not used until it is (the command that made it resumes it)"
        elif not a.cells:  # a study that does not search the cell: no cell's best to change
            body = f"its verdict is in its own report (`rnnlab report {a.study}`)"
        elif not used:
            body = "not used"
        elif a.gains:
            body = f"a better level than the best's own for {', '.join(a.gains)} (below)"
        else:
            body = ("no level ahead of the best's own beyond seed noise for "
                    + ", ".join(used))
        if a.stale:
            body += (f"; its arms of {', '.join(a.stale)} are not of that cell's best any more "
                     "(a selection chose another, or the search went on since), so not used "
                     f"there: delete it (`rnnlab delete {a.study}`) and ablate again")
        if a.weak and a.finished >= a.planned:
            body += "; " + _weak_text(a.weak, a.study)
        lines.append(head + body)
    return lines


_GAINS_HEAD = "## Better levels the ablations found (validation)"
_GAINS_NOTE = ("Where an ablation of this study found, at a cell's best config, another level "
               "ahead of the best's own beyond seed noise, that config is confirmed below as "
               "the cell's best (the largest such gain per cell; two changes were never tried "
               "together).")


def _trial_table(info: ReportInfo, rows: tuple[TrialRow, ...],
                 first: str | None = None) -> tuple[list[str], list[list[str]]]:
    head = ([first] if first else []) + [
        "trial", f"{info.metric} (validation, objective)", "final val_acc (validation)",
        "final val_loss (validation)", "cell", "normalisation", "lr", "l2", "epochs"]
    body = []
    for i, r in enumerate(rows, 1):
        lead = ([str(i)] if first == "rank" else [r.cell] if first else [])
        body.append(lead + [str(r.number), _f(r.value), _f(r.final_val_acc),
                            _f(r.final_val_loss), r.cell, r.normalisation, _g(r.lr), _g(r.l2),
                            str(r.epochs)])
    return head, body


SUPPORT = {"verdict": "Verdict (intervals within matched trials)",
           "hint": "A hint, not a verdict", "none": "No verdict"}


def _effect_lines(e: Effect) -> list[str]:
    lines = [f"{SUPPORT[e.support]}: {e.verdict}"]
    if e.missing:
        lines.append("Levels with no complete trial: " + "; ".join(e.missing) + ".")
    return lines


def _effect_table(e: Effect) -> tuple[list[str], list[list[str]]]:
    head = ["within", e.key if e.kind == "categorical" else f"{e.key} range", "complete",
            "mean (validation)", "std", "best", "pruned or failed",
            f"gap to the stratum's best ({CONFIDENCE:.0%} CI)"]
    rows = []
    for s in e.strata:
        gaps = {g.other: g for g in s.gaps}
        for lv in s.levels:
            rows.append([s.name, lv.level, str(lv.n), _f(lv.mean), _f(lv.std), _f(lv.best),
                         str(lv.unfinished), _gap(gaps.get(lv.level))])
    return head, rows


def _gap(g: Gap | None) -> str:
    if g is None:
        return ""
    if g.low is None:
        return f"{g.diff:.4f} (no interval, n={g.n})"
    return (f"{g.diff:.4f} [{g.low:+.4f}, {g.high:+.4f}] {g.test}, n={g.n}"
            + (" *" if g.separated else ""))


def _cells_on_test(info: ReportInfo) -> str:
    gaps = info.cell_gaps
    if not gaps:
        return ""
    noise = "subset and seed noise" if info.confirm_splits else "seed noise"
    parts = [f"{g.best} ahead of {g.other} by {g.diff:.4f} "
             + (f"[{g.low:+.4f}, {g.high:+.4f}], {g.test} (n={g.n}): "
                + (f"beyond {noise}" if g.separated else f"within {noise}")
                if g.low is not None else f"(no interval: n={g.n})") for g in gaps]
    what = ("what another training subset can expect: the other subsets' means"
            if info.confirm_splits else "the study's subset, over seeds")
    return (f"Cells on the test set (each cell's best config, by {what}; {CONFIDENCE:.0%} "
            "intervals): " + "; ".join(parts) + ".")


_STRATA_HEAD = "## Trials per stratum (validation)"
_PRUNING_HEAD = "## Pruning, replayed on the complete trials (validation)"


def _pruning_note(info: ReportInfo) -> str:
    r = info.pruning
    whose = ("the study's own" if r.judged_by == info.study else
             f"the pruner of {r.judged_by}, the study these arms come from")
    within = "its stratum" if any(s.name for s in r.strata) else "the study"
    return (f"The {r.pruner} pruner ({r.settings}; {whose}) replayed: each complete trial "
            f"judged, epoch by epoch, against every other complete trial of {within}, as it "
            "would be had it run last. A trial it would cut that ended well is a slow starter "
            "this pruner is too early for; the trials it did cut have no end to show it.")


def _pruning_lines(info: ReportInfo) -> list[str]:
    lines = []
    for s in info.pruning.strata:
        cut = s.best_cut
        if cut is None:
            continue
        where = f" of {s.name}" if s.name else ""
        lines.append(
            f"The pruner would cut the best trial{where}, trial {cut.number} ({cut.final:.4f} "
            f"in the end), at epoch {cut.step} (best so far {cut.value:.4f}, the others' "
            f"threshold {cut.threshold:.4f}): it may have cut trials that would have ended as "
            f"well. It keeps this one from a warm-up of {s.keeps_best_from} epochs on.")
    return lines


def _pruning_table(info: ReportInfo) -> tuple[list[str], list[list[str]]]:
    head = ["stratum", "complete trials", "would be cut (trial: epoch, value then, in the end)",
            "best trial cut", "warm-up that keeps the best"]
    rows = []
    for s in info.pruning.strata:
        cuts = "; ".join(f"{c.number}: {c.step}, {c.value:.4f}, {c.final:.4f}"
                         for c in s.cuts) or ("none" if s.judged else (
                             f"never judged: {s.complete - 1} others, fewer than its "
                             f"{info.pruning.startup} start-up trials"))
        rows.append([s.name or "all", str(s.complete), cuts,
                     "yes" if s.best_cut is not None else "no",
                     "-" if s.keeps_best_from is None else f"{s.keeps_best_from} epochs"])
    return head, rows


def _strata_table(info: ReportInfo) -> tuple[list[str], list[list[str]]]:
    return (["stratum", "finished trials", f"best {info.metric} (validation)", "best trial"],
            [[s.name, str(s.finished), _f(s.best_value),
              "-" if s.best_trial is None else str(s.best_trial)] for s in info.per_stratum])


def _importance_table(info: ReportInfo) -> tuple[list[str], list[list[str]]]:
    return (["param", "importance (mean)", "std", "90% interval"],
            [[i.param, f"{i.importance:.3f}", _f(i.std, 3),
              "-" if i.low is None else f"{i.low:.3f} to {i.high:.3f}"]
             for i in info.importances])


_UNCONFIRMED = ("This report ranks on validation only (--no-confirm): every number in it is "
                "validation, and no config was scored on the test set. `rnnlab report` "
                "without --no-confirm re-trains the chosen configs and scores them there.")


def _unconfirmed(info: ReportInfo) -> str:
    """Why the report scored nothing on the test set: asked not to, or a derived study."""
    if info.derived_from is None:
        return _UNCONFIRMED
    of = info.derived_from
    what, found = ((f"one-seed arms of the ablation of {of}'s bests",
                    "with any level this ablation found better beyond seed noise")
                   if info.derived_kind == "ablation" else
                   (f"{of}'s top trials trained again, one seed each",
                    "as this selection chose them"))
    return (f"Every number in this report is validation. Its trials are {what}, compared with "
            f"each other in this report; the test set scores configs, not single runs: "
            f"`rnnlab report {of}` confirms each stratum's best there, {found}. `--confirm` "
            "re-trains this study's own best trials and scores them anyway.")


def _test_set_line(info: ReportInfo) -> str:
    subsets = (f"on the study's own training subset and on {info.confirm_splits} others "
               "(data.split_seed + 1, + 2, ...: other training and validation images, the "
               "same test set)" if info.confirm_splits else
               f"on the study's own training subset ({info.subsets_note})")
    return (f"Test set: {info.test_set}. Each config was re-trained {subsets}, with "
            f"{info.confirm_seeds} seed(s) each (train.seed + i), and scored once on it, with "
            f"the weights of its {scored_weights(info)} (the study's objective is the "
            f"{info.objective} epoch). The study's subset chose the config, so its score is "
            "flattered; the other subsets' mean is what the config gives on a subset of its own. "
            f"The runs are nested under the study's MLflow run {info.parent_run_id} (tag "
            "rnnlab.kind=confirm).")


# --- Markdown -------------------------------------------------------------------------------

def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _best_head(info: ReportInfo) -> str:
    """A searched study's best trial is its best config; a derived study's, one arm's run."""
    what = "Best config" if info.derived_from is None else "Best single run"
    return f"{what}: trial {info.best.number} ({info.best.cell})"


def _yaml_intro(info: ReportInfo) -> str:
    if info.derived_from is None:
        return "As YAML that `rnnlab train` accepts unchanged"
    found = ("its verdict, above" if info.derived_kind == "ablation"
             else "its choice of each stratum's best, below")
    return (f"One seed's run, the best of this study's runs but not its finding ({found}, "
            f"which `rnnlab report {info.derived_from}` applies). Its config, seed included, "
            "as YAML that `rnnlab train` accepts unchanged")


def _effects_head(info: ReportInfo) -> str:
    return ("## What the ablation found (validation)" if info.derived_kind == "ablation"
            else "## Effects of the searched factors (validation)")


def _weak_note(info: ReportInfo) -> str:
    """An ablation's own report: the cells where it tried weak penalties only."""
    return "Not settled: " + _weak_text(info.weak, info.study) + "."


def _effects_md(info: ReportInfo) -> list[str]:
    parts = [_effects_head(info), "",
             "Each factor within comparable trials; * marks a gap beyond seed noise.", ""]
    for e in info.effects:
        lines = _effect_lines(e)
        parts += [f"### {_md(e.key)}", "", f"**{_md(lines[0].split(': ', 1)[0])}**: "
                  + _md(lines[0].split(": ", 1)[1])] + [f"\n{_md(x)}" for x in lines[1:]]
        parts += ["", _md_table(*_effect_table(e)), ""]
    return parts + ([_md(_weak_note(info)), ""] if info.weak else [])


def markdown(info: ReportInfo) -> str:
    parts = [f"# rnnlab report: {_md(info.study)}", "", _md(_summary(info)), ""]
    if info.derived_kind == "ablation":  # its verdict is what an ablation is for
        parts += _effects_md(info)
    parts += [f"## {_md(_best_head(info))}", ""]
    parts += [f"- {_md(line)}" for line in _best_lines(info)]
    parts += ["", f"{_md(_yaml_intro(info))} (`rnnlab report "
              f"{_md(info.study)} --format yaml --out best.yaml`, then `rnnlab train best.yaml`):",
              "", "```yaml", info.best_yaml.rstrip(), "```", ""]
    if info.selection is not None:
        parts += [_SELECTION_HEAD, "", _md(_selection_note(info)), "",
                  _md_table(*_selection_table(info)), ""]
        parts += [f"- {_md(line)}" for line in _lead_lines(info)]
        parts += [""] if info.selection.leads else []
    if info.ablations:
        parts += [_ABLATIONS_HEAD, ""] + [f"- {_md(line)}" for line in _ablation_lines(info)]
        parts += [""]
    if info.gains:
        parts += [_GAINS_HEAD, "", _md(_GAINS_NOTE), ""]
        parts += [f"- {_md(line)}" for line in _gain_lines(info)] + [""]
    if info.confirmations:
        parts += ["## Confirmation on the test set", "", _md(_test_set_line(info)), "",
                  _md_table(*_confirm_table(info)), ""]
        if _cells_on_test(info):
            parts += [_md(_cells_on_test(info)), ""]
    else:
        parts += ["## No confirmation on the test set", "", _md(_unconfirmed(info)), ""]
    parts += [f"## Top {len(info.top)} complete trials (validation)", "",
              _md_table(*_trial_table(info, info.top, "rank")), "",
              "## Best trial per cell (validation)", "",
              _md_table(*_trial_table(info, info.per_cell)), ""]
    if info.per_stratum:
        parts += [_STRATA_HEAD, "", _md(info.strata_note), "", _md_table(*_strata_table(info)), ""]
    if info.pruning is not None:
        parts += [_PRUNING_HEAD, "", _md(_pruning_note(info)), ""]
        parts += [f"**{_md(line)}**\n" for line in _pruning_lines(info)]
        parts += [_md_table(*_pruning_table(info)), ""]
    parts += ["## Parameter importances (validation objective)", "",
              _md(info.importance_note) + ".", ""]
    if info.importances:  # else the note says why there is none
        parts += [_md_table(*_importance_table(info)), ""]
    if info.derived_kind != "ablation":
        parts += _effects_md(info)
    return "\n".join(parts)


# --- HTML -----------------------------------------------------------------------------------

def _html_table(head: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    return ("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead>"
            "<tbody>" + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                                for row in rows) + "</tbody></table>")


def _code(text: str) -> str:
    """Plain text with its `code` spans as HTML."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _effects_html(info: ReportInfo) -> list[str]:
    e = html.escape
    parts = [f"<h2>{e(_effects_head(info).removeprefix('## '))}</h2>",
             "<p>Each factor within comparable trials; * marks a gap beyond seed noise.</p>"]
    for eff in info.effects:
        parts += [f"<h3>{e(eff.key)}</h3>"] + [f"<p>{e(line)}</p>" for line in _effect_lines(eff)]
        parts.append(_html_table(*_effect_table(eff)))
    return parts + ([f"<p>{_code(_weak_note(info))}</p>"] if info.weak else [])


def html_page(info: ReportInfo, frames: StudyFrames | None) -> str:
    e = html.escape
    parts = [f"<h1>rnnlab report: {e(info.study)}</h1>", f"<p>{e(_summary(info))}</p>"]
    if info.derived_kind == "ablation":
        parts += _effects_html(info)
    parts += [f"<h2>{e(_best_head(info))}</h2><ul>"
              + "".join(f"<li>{e(line)}</li>" for line in _best_lines(info)) + "</ul>",
              f"<p>{_code(_yaml_intro(info))}:</p>", f"<pre>{e(info.best_yaml)}</pre>"]
    if info.selection is not None:
        parts += [f"<h2>{e(_SELECTION_HEAD.removeprefix('## '))}</h2>",
                  f"<p>{e(_selection_note(info))}</p>", _html_table(*_selection_table(info)),
                  "<ul>" + "".join(f"<li>{e(line)}</li>" for line in _lead_lines(info))
                  + "</ul>"]
    if info.ablations:
        parts += [f"<h2>{e(_ABLATIONS_HEAD.removeprefix('## '))}</h2>",
                  "<ul>" + "".join(f"<li>{e(line)}</li>" for line in _ablation_lines(info))
                  + "</ul>"]
    if info.gains:
        parts += [f"<h2>{e(_GAINS_HEAD.removeprefix('## '))}</h2>", f"<p>{e(_GAINS_NOTE)}</p>",
                  "<ul>" + "".join(f"<li>{e(line)}</li>" for line in _gain_lines(info))
                  + "</ul>"]
    if info.confirmations:
        parts += ["<h2>Confirmation on the test set</h2>", f"<p>{e(_test_set_line(info))}</p>",
                  _html_table(*_confirm_table(info)), f"<p>{e(_cells_on_test(info))}</p>"]
    else:
        parts += ["<h2>No confirmation on the test set</h2>",
                  f"<p>{e(_unconfirmed(info))}</p>"]
    parts += [f"<h2>Top {len(info.top)} complete trials (validation)</h2>",
              _html_table(*_trial_table(info, info.top, "rank")),
              "<h2>Best trial per cell (validation)</h2>",
              _html_table(*_trial_table(info, info.per_cell))]
    if info.per_stratum:
        parts += [f"<h2>{e(_STRATA_HEAD.removeprefix('## '))}</h2>",
                  f"<p>{e(info.strata_note)}</p>",
                  _html_table(*_strata_table(info))]
    if info.pruning is not None:
        parts += [f"<h2>{e(_PRUNING_HEAD.removeprefix('## '))}</h2>",
                  f"<p>{e(_pruning_note(info))}</p>",
                  *(f"<p><strong>{e(line)}</strong></p>" for line in _pruning_lines(info)),
                  _html_table(*_pruning_table(info))]
    parts += ["<h2>Parameter importances (validation objective)</h2>",
              f"<p>{e(info.importance_note)}.</p>",
              _html_table(*_importance_table(info)) if info.importances else ""]
    if info.derived_kind != "ablation":
        parts += _effects_html(info)
    if frames is not None:
        for div_id, plot in (("normalisation", plot_normalisation),
                             ("importances", plot_importances),
                             ("learning-curves", plot_learning_curves)):
            parts.append(figure_div(plot(frames), f"fig-{div_id}"))
    return page(f"rnnlab report: {info.study}", "\n".join(parts))
