"""Dashboards as code: specs in dashboards/, filters, groups and facets across two real
studies, and the shipped specs rendered and opened in a real headless Chromium."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml
from support import SPEC, build_study, open_html, synthetic_frames
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.dashboards import learning_curves, scatter, select, spec
from rnnlab.errors import RnnlabError

SHIPPED = Path(__file__).parents[2] / "dashboards"


@pytest.fixture(scope="module")
def two(tmp_path_factory, _mlflow_template):
    """Two real studies in one journal and one MLflow store, named as shipped studies are:
    "quickstart" (6 trials) and "tutorial_sweep" (4 trials, other draws)."""
    folder = tmp_path_factory.mktemp("two-studies")
    shutil.copy(_mlflow_template, folder / "mlflow.db")
    raw = copy.deepcopy(SPEC)
    raw["study"]["name"] = "quickstart"
    first = build_study(folder, raw)
    raw["study"].update(name="tutorial_sweep", n_trials=4, sampler={"name": "random", "seed": 9})
    build_study(folder, raw)
    return first  # .storage and .uri are the two studies' stores


def frames_of(two, *names):
    return tuple((n, select._read(two.storage, n, two.uri)) for n in names)


def test_a_filter_keeps_what_it_says(two):
    _, f = frames_of(two, "quickstart")[0]
    table = f.table(("COMPLETE", "PRUNED"))
    gru = select.filtered(f, spec.Filter(params={"model.cell": "gru"}))
    assert set(gru.trials["number"]) == set(table[table["model.cell"] == "gru"]["number"])
    assert set(gru.curves["number"]) <= set(gru.trials["number"]) and len(gru.curves)
    low = float(table["train.lr"].median())
    ranged = select.filtered(f, spec.Filter(params={"train.lr": {"high": low}}))
    assert set(ranged.trials["number"]) == set(table[table["train.lr"] <= low]["number"])
    top = select.filtered(f, spec.Filter(states=["COMPLETE"], top_k=2))
    best = table[table["state"] == "COMPLETE"].nlargest(2, "value")
    assert set(top.trials["number"]) == set(best["number"])
    assert "filter does not apply" in top.importance_note


def test_curves_and_factors_across_studies_carry_group_facet_and_study(two):
    studies = frames_of(two, "quickstart", "tutorial_sweep")
    info = learning_curves._get_learning_curves_info(studies, group="study", facet="model.cell")
    assert {c.study for c in info.curves} == {"quickstart", "tutorial_sweep"}
    assert len(info.curves) == 10 and all(c.group == c.study for c in info.curves)
    for label, f in studies:
        cells = f.configs.set_index("number")["model.cell"]
        assert all(c.facet == cells[c.number] for c in info.curves if c.study == label)
    fig = learning_curves._get_learning_curves_plot(info)
    assert len({(t.xaxis, t.yaxis) for t in fig.data}) == 2 * len({c.facet for c in info.curves})
    lr = scatter._get_scatter_info(studies, "train.lr", "final_val_acc", "study", "model.cell")
    assert lr.log and len(lr.points) == sum(len(f.table()) for _, f in studies)
    for label, f in studies:
        t = f.table().set_index("number")
        for p in (p for p in lr.points if p.study == label):
            assert (p.x, p.y) == (t.loc[p.number, "train.lr"], t.loc[p.number, "final_val_acc"])


def test_studies_with_different_objectives_are_not_compared_on_one_axis():
    best = synthetic_frames([{"model.cell": "rnn", "value": 0.5}], {"model.cell": {
        "choices": ["rnn"]}})
    last = synthetic_frames([{"model.cell": "rnn", "value": 0.4}], {"model.cell": {
        "choices": ["rnn"]}})
    last.spec["study"]["objective"] = "last"
    board = spec.DashboardSpec(studies=["a", "b"], figures=["history"])
    found = {"a": best, "b": last}
    with pytest.raises(RnnlabError, match=r"different ones \(a: best val_acc \(maximize\), "
                                          r"b: last val_acc \(maximize\)\)"):
        select.select(board, "x.journal", read=lambda url, name, uri: found[name])
    board = spec.DashboardSpec(studies=["a", "b"], figures=[{"kind": "box", "y": "final_val_acc"}])
    assert len(select.select(board, "x.journal", read=lambda u, n, t: found[n]).studies) == 2


def test_every_shipped_dashboard_renders_offline_sharing_one_plotly(two, browser, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", two.uri)
    shutil.copytree(SHIPPED, tmp_path / "dashboards")
    names = sorted(p.stem for p in SHIPPED.glob("*.yaml"))
    assert {"cells", "normalisation", "learning_rate"} <= set(names)
    for name in names:
        result = CliRunner().invoke(app, ["dashboard", f"dashboards/{name}.yaml",
                                          "--storage", two.storage])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == f"dashboards/{name}.html"
    scripts = list((tmp_path / "dashboards").glob("plotly-*.min.js"))
    assert len(scripts) == 1 and scripts[0].stat().st_size > 3e6  # one copy for every page
    for name in names:
        page = tmp_path / "dashboards" / f"{name}.html"
        assert page.stat().st_size < 1e6
        assert re.findall(r'<script[^>]+src="([^"]+)"', page.read_text()) == [scripts[0].name]
        check = open_html(browser, page)
        assert check.errors == [], name
        assert [u for u in check.requests if not u.startswith(("file:", "data:"))] == [], name
        assert check.traces and all(n > 0 for n in check.traces), (name, check.traces)
        assert "not run yet" in check.text or name == "normalisation"  # full_mnist is not here
    cells = (tmp_path / "dashboards" / "cells.html").read_text()
    assert "quickstart" in cells and "tutorial_sweep" in cells


def test_a_study_view_is_a_spec_like_any_other(two, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    as_yaml = spec.study_board("quickstart").model_dump(exclude_defaults=True)
    (tmp_path / "quickstart.yaml").write_text(yaml.safe_dump(as_yaml))
    runner = CliRunner(env={"MLFLOW_TRACKING_URI": two.uri})
    for target in ("quickstart", "quickstart.yaml"):
        result = runner.invoke(app, ["dashboard", target, "--storage", two.storage, "--inline"])
        assert result.exit_code == 0, result.output
    by_name = (tmp_path / "dashboards" / "quickstart.html").read_text()
    by_spec = (tmp_path / "quickstart.html").read_text()
    ids = r'<section id="([^"]+)">'
    assert re.findall(ids, by_name) == re.findall(ids, by_spec) == [
        "learning-curves", "history", "parallel", "importances", "normalisation", "lr-l2"]
    assert "src=" not in re.findall(r"<script[^>]*>", by_name)[0]  # --inline


def _write(path: Path, board: dict) -> str:
    path.write_text(yaml.safe_dump(board))
    return str(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "model.cell"}, "colour: unknown key"),
    ({"group": "model.cel"}, "group: 'model.cel' is not a config key (did you mean "
                             "'model.cell'?"),
    ({"filter": {"states": []}}, "filter.states: List should have at least 1 item"),
    ({"filter": {"params": {"model.cell": []}}}, "an empty list keeps nothing"),
    ({"filter": {"params": {"train.lr": {"above": 1}}}}, "a range is {low: A, high: B}"),
    ({"figures": ["curves"]}, "figures.0.kind: Input should be"),
    ({"figures": [{"kind": "scatter"}]}, "a scatter needs x"),
    ({"studies": ["nope"]}, "no study named 'nope'"),
    ({"studies": [{"name": "nope", "required": False}]}, "none of its studies has been run"),
    ({"filter": {"params": {"model.hidden": 999}}}, "filter keeps none of the 10 trials"),
])
def test_bad_dashboards_end_in_one_line_exit_2_and_no_file(two, tmp_path, monkeypatch, change,
                                                           message):
    monkeypatch.chdir(tmp_path)
    board = {"studies": ["quickstart", "tutorial_sweep"], "figures": ["learning_curves"],
             **change}
    path = _write(tmp_path / "b.yaml", board)
    result = CliRunner(env={"MLFLOW_TRACKING_URI": two.uri}).invoke(
        app, ["dashboard", path, "--storage", two.storage])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), result.stderr
    assert message in lines[0] and "Traceback" not in result.output, lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.yaml"]


def test_a_mistyped_spec_path_gets_the_closest_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(SHIPPED, tmp_path / "dashboards")
    result = CliRunner().invoke(app, ["dashboard", "dashboards/cell.yaml"])
    assert result.exit_code == 2
    assert "not found (did you mean 'dashboards/cells.yaml'?)" in result.stderr
