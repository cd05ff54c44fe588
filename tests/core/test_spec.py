"""Run configs: defaults in one place, keys and types checked by name, --set, YAML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.core.spec import RunConfig, config_keys, flatten, load_config, to_yaml
from rnnlab.errors import RnnlabError


def _yaml(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_tutorial_setup():
    cfg = RunConfig()
    assert (cfg.data.source, cfg.data.split, cfg.data.patch) == ("mnist", "holdout", 7)
    assert (cfg.data.train_size, cfg.data.val_size) == (5000, 1000)
    assert cfg.data.steps == 112
    assert (cfg.model.cell, cfg.model.hidden, cfg.model.layers) == ("rnn", 128, 1)
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size) == ("rmsprop", 2e-4, 50)
    assert cfg.train.l2 == 0.0 and cfg.train.grad_clip is None


def test_an_empty_file_is_all_defaults(tmp_path):
    assert load_config(_yaml(tmp_path, "")) == RunConfig()


def test_keys_are_dotted_and_complete():
    keys = config_keys()
    assert keys == list(flatten(RunConfig()))
    assert {"data.patch", "data.normalisation", "model.cell", "train.lr", "train.l2"} <= set(keys)
    assert all(k.count(".") == 1 for k in keys)


@pytest.mark.parametrize(("text", "needle"), [
    ("model:\n  cells: gru\n", "model.cells: unknown key"),
    ("trian:\n  lr: 0.1\n", "trian: unknown key"),
    ("train:\n  epochs: many\n", "train.epochs"),
    ("train:\n  lr: fast\n", "train.lr"),
    ("model:\n  cell: transformer\n", "model.cell"),
    ("data:\n  normalisation: zscore\n", "data.normalisation"),
    ("data:\n  patch: 5\n", "data.patch: patch 5 does not divide 784"),
    ("train:\n  lr: 0\n", "train.lr"),
    ("train:\n  lr: -1.0e-3\n", "train.lr"),
    ("train:\n  lr: 1.0e+39\n", "train.lr"),  # beyond float32: would overflow in the optimizer
    ("train:\n  device: tpu\n", "train.device"),
    ("- a list\n", "expected a mapping"),
])
def test_bad_values_are_rejected_naming_the_key(tmp_path, text, needle):
    with pytest.raises(RnnlabError) as info:
        load_config(_yaml(tmp_path, text))
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    with pytest.raises(RnnlabError, match=r"run.yaml: YAML syntax error at line \d+"):
        load_config(_yaml(tmp_path, "train:\n  lr: [1, 2\n"))


def test_missing_file(tmp_path):
    with pytest.raises(RnnlabError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_set_overrides_any_key_with_yaml_scalars(tmp_path):
    path = _yaml(tmp_path, "train:\n  lr: 0.5\n")
    cfg = load_config(path, ["train.lr=1e-3", "model.cell=gru", "data.patch=14",
                             "train.grad_clip=1", "data.dir=/some/where", "train.seed=7"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)  # PyYAML reads 1e-3 as str
    assert (cfg.model.cell, cfg.data.patch, cfg.data.steps) == ("gru", 14, 56)
    assert cfg.train.grad_clip == 1.0 and cfg.data.dir == "/some/where" and cfg.train.seed == 7


def test_set_reaches_a_studys_nested_keys_and_leaves_the_spec_as_it_was():
    import copy

    from rnnlab.core.spec import apply_overrides
    from rnnlab.core.study_spec import load_study_spec

    quickstart = Path(__file__).resolve().parents[2] / "studies" / "quickstart.yaml"
    spec = load_study_spec(quickstart, [
        "study.sampler.seed=3", "study.pruner.name=none", "study.name=q3", "train.lr=1e-3"])
    assert (spec.study.sampler.seed, spec.study.sampler.name) == (3, "tpe")  # the rest kept
    assert spec.study.sampler.n_startup_trials == 8 and spec.study.pruner.name == "none"
    assert (spec.study.name, spec.base.train.lr) == ("q3", 1e-3)
    raw = {"study": {"sampler": {"name": "tpe", "seed": 0}}, "search": {"train.lr": {"low": 1}}}
    before = copy.deepcopy(raw)
    merged = apply_overrides(raw, {"study.sampler.seed": 3, "search.train.lr": {"low": 2}})
    assert merged == {"study": {"sampler": {"name": "tpe", "seed": 3}},
                      "search": {"train.lr": {"low": 2}}}  # a search key keeps its dot
    assert raw == before
    with pytest.raises(RnnlabError, match=r"--set study.name.x: 'study.name' is not a section"):
        apply_overrides({"study": {"name": "q"}}, {"study.name.x": 1})
    with pytest.raises(RnnlabError, match=r"study.sampler.sed: unknown key \(check the "
                       r"spelling; see the README's \"Sweeps\" for a spec's study keys\)"):
        load_study_spec(quickstart, ["study.sampler.sed=3"])


@pytest.mark.parametrize(("value", "expected"), [
    ("2024", "2024"), ("runs: v2", "runs: v2"), ("~/mnist", "~/mnist"), ("null", None), ("", None),
])
def test_text_keys_keep_their_value_verbatim(tmp_path, value, expected):
    # --data-dir 2024 becomes --set data.dir=2024: a folder name, not the number 2024.
    assert load_config(_yaml(tmp_path, ""), [f"data.dir={value}"]).data.dir == expected


@pytest.mark.parametrize(("pair", "needle"), [
    ("train.lr", "expected section.key=value"),
    ("lr=1e-3", "expected section.key=value"),
    ("train.lrr=1e-3", "train.lrr: unknown key"),
    ("train.lr=-1", "train.lr"),
    ("data.patch=9", "data.patch"),
])
def test_bad_overrides_are_rejected(tmp_path, pair, needle):
    with pytest.raises(RnnlabError, match=needle):
        load_config(_yaml(tmp_path, ""), [pair])


def test_study_sections_are_ignored_by_a_run_config(tmp_path):
    path = _yaml(tmp_path, "model:\n  cell: lstm\nstudy:\n  name: x\nsearch: {}\n")
    assert load_config(path).model.cell == "lstm"


def test_to_yaml_round_trips_through_load_config(tmp_path):
    cfg = load_config(_yaml(tmp_path, ""), [
        "data.split=tutorial", "data.normalisation=per_pixel_tutorial", "data.dir=/d",
        "model.cell=lstm", "model.layers=2", "train.optimizer=sgd", "train.lr=3.5e-3",
        "train.l2=1e-5", "train.grad_clip=0.5", "train.threads=2"])
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(path) == cfg
