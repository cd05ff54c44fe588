"""Dashboards: the gathered records (no rendering), then the page in a real headless Chromium."""

from __future__ import annotations

import dataclasses
import re
import shutil

import numpy as np
import optuna
import pytest
from support import GOOD_LR, HOPELESS_LR, build_study, open_html
from typer.testing import CliRunner

from rnnlab.analysis.frames import study_frames
from rnnlab.cli.app import app
from rnnlab.dashboards import (
    board,
    history,
    importances,
    learning_curves,
    lr_l2,
    normalisation,
    parallel,
    style,
    write,
)
from rnnlab.dashboards.spec import board_for, study_board
from rnnlab.errors import RnnlabError


def test_learning_curves_info_has_every_trial_with_its_cell_and_state(frames, trials):
    info = learning_curves._get_learning_curves_info(frames)
    assert info.reference_val_acc == (0.470, 0.555, 0.595, 0.630, 0.674, 0.680)
    assert [c.number for c in info.curves] == sorted(trials)
    for c in info.curves:
        t = trials[c.number]
        assert (c.group, c.state) == (t.user_attrs["config"]["model.cell"], t.state.name)
        assert c.epochs == tuple(sorted(t.intermediate_values))
        assert c.val_acc == pytest.approx([t.intermediate_values[e] for e in c.epochs])
        assert len(c.val_loss) == len(c.epochs)


def test_a_large_page_draws_each_groups_best_whole_and_the_rest_as_bands(frames, trials,
                                                                           monkeypatch):
    """Past `whole_up_to` trials (300 by default: a 10,000-trial page stays small), each
    cell's best trials keep their whole curves; the rest become a median and 10-90% band,
    with every one's best point kept as a dot."""
    monkeypatch.setattr(learning_curves, "BEST_WHOLE", 1)
    assert learning_curves._get_learning_curves_info(frames, whole_up_to=6).bands == ()
    info = learning_curves._get_learning_curves_info(frames, whole_up_to=2)
    cells: dict[str, list] = {}
    for t in trials.values():
        cells.setdefault(t.user_attrs["config"]["model.cell"], []).append(t)
    whole = {c.number: c for c in info.curves}
    for cell, mine in cells.items():
        best = max(mine, key=lambda t: (t.value if t.value is not None else -1, -t.number))
        assert [n for n in whole if trials[n].user_attrs["config"]["model.cell"] == cell] == [
            best.number]
        assert whole[best.number].val_acc == pytest.approx(
            [best.intermediate_values[e] for e in sorted(best.intermediate_values)])
    bands = {b.group: b for b in info.bands}
    assert bands, "the tiny study has a cell of two trials or more"
    assert {g: b.trials for g, b in bands.items()} == {
        g: len(m) - 1 for g, m in cells.items() if len(m) > 1}
    for t in trials.values():  # every trial's best val_acc is on the page
        if t.number not in whole:
            dots = {trial: v for _, v, trial in bands[t.user_attrs["config"]["model.cell"]]
                    .best["val_acc"]}
            assert dots[f"{frames.name} trial {t.number}"] == pytest.approx(
                max(t.intermediate_values.values()))
    for b in info.bands:
        low, median, high = b.quantiles["val_acc"]
        assert all(lo <= m <= hi for lo, m, hi in zip(low, median, high, strict=True))
    fig = learning_curves._get_learning_curves_plot(info)
    assert f"{len(trials)} trials: each cell's 1 best drawn whole" in fig.layout.title.text
    names = {t.name for t in fig.data if t.showlegend is not False}
    assert {f"{g} (the other {b.trials}: median, 10-90%)" for g, b in bands.items()} <= names


def test_numeric_levels_read_as_numbers_on_an_axis():
    from rnnlab.dashboards.groups import level_text

    assert [level_text(v) for v in (0.0, 1e-4, 0.0005505899398718492, 3, "none", None)] == [
        "0", "0.0001", "0.0005506", "3", "none", "n/a"]


def test_a_spec_sets_how_many_curves_are_drawn_whole():
    from rnnlab.dashboards.spec import DashboardSpec

    spec = DashboardSpec(studies=["a"], figures=[{"kind": "learning_curves", "whole_up_to": 2}])
    assert spec.figures[0].whole_up_to == 2
    assert study_board("a").figures[0].whole_up_to == learning_curves.WHOLE_UP_TO == 300
    with pytest.raises(ValueError, match="whole_up_to"):
        DashboardSpec(studies=["a"], figures=[{"kind": "learning_curves", "whole_up_to": 0}])


@pytest.fixture(scope="module")
def pruned_frames(tmp_path_factory, _mlflow_template):
    """The frames of a study whose second trial is surely pruned, at its first epoch of two: a
    learning rate that never moves the weights, after one that does (median pruner)."""
    folder = tmp_path_factory.mktemp("pruned")
    shutil.copy(_mlflow_template, folder / "mlflow.db")
    raw = {"data": {"source": "mnist-5k", "train_size": 100, "val_size": 50, "patch": 28},
           "model": {"hidden": 4}, "train": {"epochs": 2, "threads": 1},
           "study": {"name": "pruned", "n_trials": 2, "pruner": {
               "name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}},
           "search": {"train.lr": {"choices": [GOOD_LR, HOPELESS_LR]}}}
    study = build_study(folder, raw, [{"train.lr": GOOD_LR}, {"train.lr": HOPELESS_LR}])
    return study_frames(study.storage, study.name, tracking_uri=study.uri)


def test_learning_curves_plot_styles_states_and_keeps_the_reference(pruned_frames):
    assert list(pruned_frames.trials["state"]) == ["COMPLETE", "PRUNED"]
    fig = learning_curves.plot_learning_curves(pruned_frames)
    dashes = {t.name.split(" (")[1].split(",")[0]: t.line.dash for t in fig.data
              if t.legendgroup != "tutorial"}
    assert dashes == {"complete": "solid", "pruned": "dash"}
    reference = [t for t in fig.data if t.legendgroup == "tutorial"]
    assert len(reference) == 1
    assert tuple(reference[0].y) == (0.470, 0.555, 0.595, 0.630, 0.674, 0.680)
    # not this study's setup, and the legend says so, with both
    assert reference[0].name == (
        "tutorial's logged val_acc (reference; click to hide)<br>its setup: patch 7, hidden "
        "128, 5000 training images<br>this study's: patch 28, hidden 4, 100 training images")


def test_the_tutorials_curve_is_a_plain_reference_where_a_study_has_its_setup():
    spec = {"data": {"patch": 7, "train_size": 5000}, "model": {"hidden": 128}}
    assert learning_curves._other_setup(spec, ("train.lr",)) == ""
    assert learning_curves._other_setup({}, ()) == ""  # a study made outside rnnlab
    assert learning_curves._other_setup(spec, ("model.hidden",)) == (
        "patch 7, hidden searched, 5000 training images")


def test_a_failed_trial_shows_in_the_legend_and_its_line_can_be_seen(pruned_frames):
    """One that failed before its first epoch has no curve but is in the legend, counted as
    the header counts it; one that failed later is dotted, with markers, not faint."""
    failed = pruned_frames.trials.assign(state=["COMPLETE", "FAIL"])
    no_epoch = dataclasses.replace(pruned_frames, trials=failed, curves=pruned_frames.curves[
        pruned_frames.curves["number"] == 0])
    fig = learning_curves.plot_learning_curves(no_epoch)
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert any(name.endswith("(failed, 1)") for name in legend), legend
    late = learning_curves.plot_learning_curves(dataclasses.replace(pruned_frames,
                                                                    trials=failed))
    [dotted] = [t for t in late.data if "(failed, 1)" in (t.name or "") and t.showlegend]
    assert dotted.line.dash == "dot" and dotted.opacity >= 0.7 and "markers" in dotted.mode
    assert sum(np.isfinite(dotted.y)) >= 1


def test_history_info_is_the_complete_trials_and_the_running_best(frames, trials):
    info = history._get_history_info(frames)
    complete = [t for t in trials.values() if t.state.name == "COMPLETE"]
    assert info.numbers == tuple(t.number for t in complete)
    assert info.values == tuple(t.value for t in complete)
    assert info.best_so_far == tuple(max(info.values[: i + 1]) for i in range(len(info.values)))
    assert info.groups == tuple(t.user_attrs["config"]["model.cell"] for t in complete)


def test_parallel_info_uses_the_values_trained_with(frames, trials):
    info = parallel._get_parallel_info(frames)
    assert [(x.key, x.kind) for x in info.dimensions] == [
        ("model.cell", "categorical"), ("train.lr", "log"),
        ("data.normalisation", "categorical"), ("train.l2", "log")]
    l2 = dict(zip(info.numbers, info.dimensions[3].values, strict=True))
    for number, value in l2.items():
        assert value == trials[number].user_attrs["config"]["train.l2"]  # 0 below zero_below
    fig = parallel._get_parallel_plot(info)
    assert len(fig.data[0].dimensions) == 5  # four params and the objective


def test_parallel_coordinates_past_their_limit_keep_the_best_and_a_sample(frames):
    """A study of more complete trials than a browser draws quickly as lines: the best are
    all drawn, the rest sampled, in trial order, and the title says how many of how many."""
    complete = frames.table(("COMPLETE",))
    n = len(complete)
    assert n >= 4
    info = parallel._get_parallel_info(frames, drawn_up_to=n - 1, best_kept=2)
    best = complete.sort_values("value", ascending=False)["number"].head(2)
    assert len(info.numbers) == n - 1 and set(best) <= set(info.numbers)
    assert list(info.numbers) == sorted(info.numbers) and (info.total, info.best_kept) == (n, 2)
    title = parallel._get_parallel_plot(info).layout.title.text
    assert f"{n - 1} of {n} drawn: the 2 best and a random {n - 3} of the others" in title
    assert parallel._get_parallel_info(frames).total == 0  # under the limit: every trial


def test_log_positions_put_zero_a_decade_below_the_smallest():
    pos, ticks, text = style.log_positions((0.0, 1e-5, 1e-3))
    assert pos == [-6, -5, -3]
    assert text[ticks.index(-6)] == "0" and text[1:] == ["1e-5", "1e-4", "1e-3"]


@pytest.mark.parametrize(("lo", "hi", "labels", "enclosing"), [
    (0.3, 2.4, ["0.5", "1", "2"], ["0.2", "0.5", "1", "2", "5"]),  # 1-2-5 per decade
    (1e-7, 1e-3, ["1e-7", "1e-6", "1e-5", "1e-4", "1e-3"], None),  # whole decades, one style
    (1.9, 2.45, ["2", "2.2", "2.4"], ["1.8", "2", "2.2", "2.4", "2.6"]),  # narrower than x2
    (0.0043, 0.028, ["0.005", "0.01", "0.02"], ["0.002", "0.005", "0.01", "0.02", "0.05"]),
])
def test_log_ticks_are_few_round_and_labelled_in_full(lo, hi, labels, enclosing):
    assert style.tick_labels(style.log_ticks(lo, hi)) == labels
    around = style.log_ticks(lo, hi, enclose=True)
    assert style.tick_labels(around) == (enclosing or labels)
    assert around[0] <= lo and around[-1] >= hi


def test_importances_normalisation_and_lr_l2_infos(frames):
    imp = importances._get_importances_info(frames)
    assert set(imp.params) == set(frames.importances["param"])
    assert list(imp.importances) == sorted(imp.importances, reverse=True)
    assert all(lo <= m <= hi + 1e-9 for lo, m, hi in zip(imp.low, imp.importances, imp.high,
                                                          strict=True))
    norm = normalisation.plot_normalisation(frames)  # the report's record, one box per cell
    values = frames.trials.set_index("number")["value"]
    assert [t.name for t in norm.data] == ["model.cell=rnn", "model.cell=gru"]
    for trace in norm.data:
        assert set(trace.x) <= {"none", "per_pixel"}
        assert list(trace.y) == [values[n] for n in trace.customdata]
    lr = lr_l2._get_lr_l2_info(frames)
    finals = frames.finals.set_index("number")["final_val_acc"]
    assert lr.final_val_acc == tuple(finals[n] for n in lr.numbers)
    configs = frames.configs.set_index("number")
    assert lr.lr == tuple(configs.loc[n, "train.lr"] for n in lr.numbers)
    assert lr.l2 == tuple(configs.loc[n, "train.l2"] for n in lr.numbers)


def test_strings_from_specs_are_escaped(frames):
    evil = "<img src=x onerror=alert(1)>"
    page = board.dashboard_html(dataclasses.replace(frames, name=evil, experiment=evil))
    assert evil not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    info = history._HistoryInfo("val_acc", "maximize", (0,), (0.5,), (evil,))
    names = [t.name for t in history._get_history_plot(info).data]
    assert evil not in names and html_escaped(evil) in names


def test_a_study_that_has_just_started_still_draws(frames):
    """--watch starts with the sweep: no complete trial, no epoch logged yet."""
    running = frames.trials.assign(state="RUNNING", value=None)
    started = dataclasses.replace(frames, trials=running, curves=frames.curves.iloc[0:0],
                                  finals=frames.finals.iloc[0:0],
                                  importances=frames.importances.iloc[0:0])
    assert learning_curves._get_learning_curves_info(started).curves == ()
    assert history._get_history_info(started).numbers == ()
    assert lr_l2._get_lr_l2_info(started).numbers == ()
    assert "Study" in board.dashboard_html(started)
    assert not started.done()


def html_escaped(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_dashboard_page_in_chromium_loads_offline_with_every_trace(study, browser, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    result = CliRunner().invoke(app, ["dashboard", study.name, "--storage", study.storage])
    assert result.exit_code == 0, result.output
    path = tmp_path / "dashboards" / f"{study.name}.html"
    assert result.stdout.strip() == str(path.relative_to(tmp_path))
    assert path.stat().st_size < 1e6  # plotly.js is beside the page, not in it
    script = re.findall(r'<script[^>]+src="([^"]+)"', path.read_text())
    assert script == [next(path.parent.glob("plotly-*.min.js")).name]
    check = open_html(browser, path)
    assert check.errors == []
    assert [u for u in check.requests if not u.startswith(("file:", "data:", "blob:"))] == []
    assert len(check.traces) == len(study_board(study.name).figures)
    assert all(n > 0 for n in check.traces), check.traces
    assert f"Study {study.name}" in check.text


def test_watch_on_a_finished_study_writes_once_and_exits(study, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    result = CliRunner().invoke(app, ["dashboard", study.name, "--storage", study.storage,
                                      "--watch", "1", "--out", "w.html"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "w.html" and result.stderr.count(" wrote w.html: ") == 1
    assert (tmp_path / "w.html").is_file()


def test_watch_stops_when_the_study_is_done_and_refreshes_while_it_runs(study, tmp_path):
    sleeps = []
    out = tmp_path / "w.html"
    write.watch_board(board_for(study.name), study.storage, out, 5,
                      tracking_uri=study.uri, sleep=sleeps.append)
    assert sleeps == [] and 'http-equiv="refresh"' not in out.read_text()
    # The same study with a larger budget is not done: the page asks the browser to reload.
    bigger = tmp_path / "bigger.journal"
    bigger.write_bytes(open(study.storage, "rb").read())
    optuna.load_study(study_name=study.name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(bigger)))).set_user_attr("n_trials", 99)

    def stop(seconds):
        sleeps.append(seconds)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write.watch_board(board_for(study.name), str(bigger), out, 7,
                          tracking_uri=study.uri, sleep=stop)
    assert sleeps == [7] and '<meta http-equiv="refresh" content="7">' in out.read_text()


def test_bad_input_is_one_line_exit_2_and_no_file(study, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    for args, message in (
        (["dashboard", "nope", "--storage", study.storage], "no study named 'nope'"),
        (["dashboard", study.name, "--storage", study.storage, "--out",
          str(tmp_path / "missing" / "d.html")], "does not exist"),
        (["dashboard", study.name, "--storage", study.storage, "--out", str(tmp_path)],
         "is a folder"),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), result.stderr
        assert message in lines[0] and "Traceback" not in result.output
        assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RnnlabError, match=r"folder '.*/no' does not exist"):
        write.write_dashboard(study.storage, study.name, tmp_path / "no" / "x.html",
                          tracking_uri=study.uri)


# What a reader sees of each figure, read from the SVG Chromium drew: every label with its box
# (left, right, top, bottom) and font size, the log axes' tick labels and titles, and each
# parallel-coordinates axis with its ticks.
_DRAWN_JS = """() => {
  const box = e => { const r = e.getBoundingClientRect();
                     return [r.left, r.right, r.top, r.bottom]; };
  const texts = (root, sel) => Array.from(root.querySelectorAll(sel))
    .filter(t => t.textContent.trim())
    .map(t => [t.textContent.trim(), box(t), parseFloat(getComputedStyle(t).fontSize)]);
  const fig = id => document.getElementById(id);
  const out = {figures: {}};
  for (const div of document.querySelectorAll('.js-plotly-plot')) {
    const title = div.querySelector('.gtitle');
    out.figures[div.id] = {box: box(div), texts: texts(div, '.main-svg text'),
                           title: title && box(title),
                           plots: Array.from(div.querySelectorAll('.bglayer .bg')).map(box)};
  }
  out.loss = {ticks: texts(fig('fig-learning-curves'), 'g.y2tick text'),
              title: fig('fig-learning-curves').querySelector('.g-y2title').textContent};
  out.lr = {ticks: texts(fig('fig-lr-l2'), 'g.xtick text'),
            title: fig('fig-lr-l2').querySelector('.g-xtitle').textContent};
  out.axes = Array.from(fig('fig-parallel').querySelectorAll('g.y-axis')).map(a => ({
    domain: box(a.querySelector('path.domain')), ticks: texts(a, 'g.tick text')}));
  return out;
}"""


def _numbers_in_order(ticks, along: int) -> list[float]:
    """The tick labels as numbers (each must be one, written in full), in screen order along
    x (``along=0``, left to right) or y (``along=3``, bottom to top)."""
    ordered = sorted(ticks, key=lambda t: t[1][along], reverse=along == 3)
    return [float(label) for label, _, _ in ordered]


def test_dashboard_figures_as_drawn_have_full_log_labels_aligned_axes_and_nothing_clipped(
        frames, browser, tmp_path):
    out = tmp_path / "d.html"
    out.write_text(board.dashboard_html(frames), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        page.goto(out.as_uri(), wait_until="load", timeout=120_000)
        page.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 12 && "
            "document.querySelectorAll('#fig-parallel g.y-axis path.domain').length == 5",
            timeout=120_000)
        drawn = page.evaluate(_DRAWN_JS)
    finally:
        page.close()
    for name, fig in drawn["figures"].items():  # no label outside its figure
        left, right, top, bottom = fig["box"]
        for label, (x0, x1, y0, y1), size in fig["texts"]:
            assert left - 1 <= x0 and x1 <= right + 1 and top - 1 <= y0 and y1 <= bottom + 1, (
                name, label, fig["box"])
            assert size >= 10, (name, label, size)
        for plot in fig["plots"]:  # the title (with its notes) above the plot area
            assert fig["title"][3] <= plot[2] + 1, (name, fig["title"], plot)
    # The log val_loss axis: full numbers, increasing upwards, and a title that says log.
    loss = _numbers_in_order(drawn["loss"]["ticks"], along=3)
    assert len(loss) >= 2 and loss == sorted(loss), drawn["loss"]
    assert "log" in drawn["loss"]["title"]
    # The lr axis of the lr/L2 figure: a few full numbers, none overlapping.
    lr = _numbers_in_order(drawn["lr"]["ticks"], along=0)
    assert 2 <= len(lr) <= 5 and lr == sorted(lr) and "log" in drawn["lr"]["title"], drawn["lr"]
    edges = sorted(box[:2] for _, box, _ in drawn["lr"]["ticks"])
    assert all(a[1] <= b[0] for a, b in zip(edges, edges[1:], strict=False)), edges
    # Parallel coordinates: every axis from the same top to the same bottom, and the log
    # axes (train.lr, train.l2) labelled in full, in order; "0" is an L2 switched off.
    tops = {round(a["domain"][2]) for a in drawn["axes"]}
    bottoms = {round(a["domain"][3]) for a in drawn["axes"]}
    assert max(tops) - min(tops) <= 1 and max(bottoms) - min(bottoms) <= 1, drawn["axes"]
    for axis in (drawn["axes"][1], drawn["axes"][3]):
        values = _numbers_in_order(axis["ticks"], along=3)
        assert len(values) >= 3 and values == sorted(values), axis["ticks"]
