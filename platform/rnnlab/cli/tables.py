"""Tables of studies that fit the terminal, and the commands to run after a sweep.

Nothing is cut at 80 columns: the overview of every study holds short columns only (a name too
long for the width folds onto a second line rather than losing its end), and a study's best
params, which can be long, go to its detail view (``rnnlab status STUDY``), one per line.
``--json`` prints every field whatever the width.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

_COUNTS = (("complete", "COMPLETE"), ("pruned", "PRUNED"), ("failed", "FAIL"),
           ("running", "RUNNING"))


def _table(title: str | None = None) -> Table:
    # one space between columns, none at the edges: the most room for the cells themselves
    return Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
                 title_justify="left")


def status_table(statuses: list[Any]) -> Table:
    """Every study on one row: finished trials of the budget, counts per state, best value."""
    table = _table("rnnlab studies")
    table.add_column("study", overflow="fold")
    table.add_column("trials", justify="right", no_wrap=True)
    for header, _ in _COUNTS:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("best", overflow="fold")
    for s in statuses:
        best = ("-" if s.best_value is None
                else f"{s.metric or 'value'}\n{s.best_value:.4f} #{s.best_trial}")
        table.add_row(s.name, f"{s.finished}/{s.budget if s.budget is not None else '-'}",
                      *(str(s.counts.get(state, 0)) for _, state in _COUNTS), best)
    return table


def params_table(s: Any) -> Group:
    """A study's best trial: its metric value, then each param it trained with on a line."""
    title = (f"{s.name}: no complete trial yet" if s.best_value is None else
             f"{s.name}: best trial #{s.best_trial}, {s.metric or 'value'} {s.best_value:.4f}")
    table = _table()
    table.add_column("param", overflow="fold")
    table.add_column("value", overflow="fold")
    for key, value in s.best_params.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return Group(Text(title, overflow="fold"), table)  # a title wider than its table stays whole


def strata_table(s: Any) -> Table:
    """A stratified study's strata: each one's share of the budget, how far it got, its best."""
    table = _table(f"{s.name} by stratum")
    table.add_column("stratum", overflow="fold")
    table.add_column("trials", justify="right", no_wrap=True)
    table.add_column("running", justify="right", no_wrap=True)
    table.add_column("best", overflow="fold")
    for st in s.strata:
        best = "-" if st.best_value is None else f"{st.best_value:.4f} #{st.best_trial}"
        table.add_row(st.name, f"{st.finished}/{st.share}", str(st.running), best)
    return table


def status_view(statuses: list[Any], detail: bool) -> Group:
    """The overview table, and with ``detail`` each study's strata and best params under it."""
    parts: list[Any] = [status_table(statuses)]
    if detail:
        for s in statuses:
            parts += [strata_table(s)] if s.strata else []
            parts.append(params_table(s))
    elif any(s.best_params for s in statuses):
        parts.append("best params: rnnlab status STUDY")
    # a stale selection's choices are not used: say so whatever the view
    parts += [Text(f"note: {s.stale}", overflow="fold") for s in statuses if s.stale]
    return Group(*parts)


def done_line(final: Any, *, extends: bool = True, asked: int | None = None) -> str | None:
    """The line a command that found its study done already says (None: it ran trials, or
    the budget is not used), with how to run more where a budget can grow; ``asked``: the
    budget the command asked for, said when fewer trials than have run."""
    if final.trials_run or final.finished < (final.budget or 0):
        return None
    more = (f"; the same command with --n-trials {2 * final.budget} runs {final.budget} more"
            if extends else "")
    fewer = (f", more than the {asked} asked for: a budget never drops below what has run"
             if asked is not None and asked < final.finished else "")
    return (f"{final.name}: done already ({final.finished}/{final.budget} trials finished"
            f"{fewer}), so nothing ran{more}")


def keys_table(keys: list[Any]) -> Table:
    """``rnnlab keys``: one row a key, whole (the allowed values wrap, never the key)."""
    table = Table(box=box.SIMPLE_HEAD, title="config keys (--set KEY=VALUE, or a spec's "
                  "sections)", title_justify="left")
    table.add_column("key", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("allowed")
    table.add_column("default", no_wrap=True)
    for key in keys:
        table.add_row(key.name, key.kind, key.allowed or "any",
                      "-" if key.default is None else str(key.default))
    return table


def no_studies_line(storage: str) -> str:
    """What ``rnnlab status`` says where no study is."""
    from rnnlab.errors import mask_url

    return (f"no study in {mask_url(storage)} yet: `rnnlab sweep studies/quickstart.yaml` "
            "starts one, or --storage names the storage a sweep used")


def next_commands(name: str, storage: str | None, *, of: str | None = None,
                  derived: Sequence[tuple[str, str]] = ()) -> str:
    """What to run after a sweep of ``name``, ready to paste (the storage, when not the
    default, included, with no password: RNNLAB_STORAGE_PASSWORD gives it). ``of``: the
    searched study ``name`` derives from (an ablation or a selection, whose report compares
    its runs on validation; the searched study's report confirms on test); ``derived``: the
    studies the sweep derived from ``name``, each with what its report gives."""
    from rnnlab.errors import split_password

    where = f" --storage {shlex.quote(split_password(storage)[0])}" if storage else ""
    study = shlex.quote(name)
    rows = [(f"rnnlab status {study}{where}", "counts and best params"),
            (f"rnnlab dashboard {study}{where}", "every trial's curves, one HTML file")]
    if of is None:
        rows += [(f"rnnlab report {study}{where} --format md", "best config, confirmed on test"),
                 *((f"rnnlab report {shlex.quote(d)}{where} --format md", why)
                   for d, why in derived)]
    else:
        rows += [(f"rnnlab report {study}{where} --format md", "what it found (validation)"),
                 (f"rnnlab report {shlex.quote(of)}{where} --format md",
                  "the bests, with what it found, confirmed on test")]
    rows.append((f"rnnlab ui --study {study}{where}", "its trials in the MLflow UI"))
    width = max(len(cmd) for cmd, _ in rows)
    return "next:\n" + "\n".join(f"  {cmd:<{width}}  # {why}" for cmd, why in rows)
