"""The bad-input catalogue: every user mistake is one line, exit code 2, and writes nothing."""

from __future__ import annotations

import gzip
import inspect
import re
import shutil
from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.core.mnist import load_raw

GOOD_STUDY = {
    "data": {"source": "mnist-5k", "train_size": 200, "val_size": 100, "patch": 28},
    "model": {"hidden": 8},
    "train": {"epochs": 1},
    "study": {"name": "s", "n_trials": 2},
    "search": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
}
GOOD_RUN = {k: GOOD_STUDY[k] for k in ("data", "model", "train")}


def _spec(**changes) -> str:
    raw = yaml.safe_load(yaml.safe_dump(GOOD_STUDY))
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return yaml.safe_dump(raw)


def _run(**changes) -> str:
    raw = yaml.safe_load(yaml.safe_dump(GOOD_RUN))
    for dotted, value in changes.items():
        section, key = dotted.split("/")
        raw[section][key] = value
    return yaml.safe_dump(raw)


def _mnist_copy(folder: Path, mnist_dir: Path, damage: str | None) -> Path:
    folder.mkdir()
    for f in Path(mnist_dir).glob("*.gz"):
        shutil.copy(f, folder / f.name)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    if damage == "truncated":  # valid gzip, IDX body cut short: uncompressed copy
        target.unlink()
        (folder / "t10k-labels-idx1-ubyte").write_bytes(raw[:5000])
    elif damage == "magic":
        target.unlink()
        (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x09\x99" + raw[4:])
    elif damage == "md5":
        data = bytearray(target.read_bytes())
        data[-20] ^= 0xFF
        target.write_bytes(bytes(data))
    return folder


def _no_complete_study(folder: Path) -> None:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "rnnlab.journal")))
    study = optuna.create_study(study_name="hopeless", storage=storage)
    trial = study.ask()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)


# (id, files to write, argv, words the one line must contain)
CASES = [
    ("missing-config", {}, ["train", "nope.yaml"], "not found"),
    ("yaml-syntax", {"c.yaml": "data: [1, 2\nmodel: {"}, ["train", "c.yaml"], "YAML syntax"),
    ("not-a-mapping", {"c.yaml": "- 1\n- 2\n"}, ["train", "c.yaml"], "expected a mapping"),
    ("unknown-key", {"c.yaml": _run(**{"model/hiden": 8})}, ["train", "c.yaml"],
     "model.hiden: unknown key"),
    ("unknown-section", {"c.yaml": "optim: {lr: 1}\n"}, ["train", "c.yaml"], "optim"),
    ("wrong-type", {"c.yaml": _run(**{"train/epochs": "many"})}, ["train", "c.yaml"],
     "train.epochs"),
    ("unknown-cell", {"c.yaml": _run(**{"model/cell": "transformer"})}, ["train", "c.yaml"],
     "'rnn', 'lstm' or 'gru'"),
    ("unknown-optimizer", {"c.yaml": _run(**{"train/optimizer": "lbfgs"})},
     ["train", "c.yaml"], "train.optimizer"),
    ("bad-patch", {"c.yaml": _run(**{"data/patch": 5})}, ["train", "c.yaml"],
     "patch 5 does not divide 784"),
    ("zero-lr", {"c.yaml": _run(**{"train/lr": 0})}, ["train", "c.yaml"], "train.lr"),
    ("negative-lr", {"c.yaml": _run()}, ["train", "c.yaml", "--set", "train.lr=-1e-3"],
     "train.lr"),
    ("bad-set", {"c.yaml": _run()}, ["train", "c.yaml", "--set", "lr"], "section.key=value"),
    # a bad value given on the command line blames the flag, not the file it overrides
    ("set-value-names-the-flag", {"c.yaml": _run()}, ["train", "c.yaml", "--set", "train.lr=abc"],
     "error: --set train.lr=abc: train.lr:"),
    ("sweep-set-value-names-the-flag", {"s.yaml": _spec()},
     ["sweep", "s.yaml", "--set", "model.hidden=-3"], "error: --set model.hidden=-3: model.hidden"),
    ("n-trials-names-the-flag", {"s.yaml": _spec()}, ["sweep", "s.yaml", "--n-trials", "0"],
     "error: --n-trials 0: study.n_trials"),
    ("mistyped-spec-path", {"quickstart.yaml": _spec()}, ["sweep", "quikstart.yaml"],
     "not found (did you mean 'quickstart.yaml'?)"),
    ("mistyped-spec-in-studies", {"studies/quickstart.yaml": _spec()},
     ["sweep", "studies/quickstrat.yaml"], "(did you mean 'studies/quickstart.yaml'?)"),
    ("split-too-big", {"c.yaml": _run(**{"data/train_size": 4500})}, ["train", "c.yaml"],
     "exceeds the 4000 images"),
    ("missing-data-dir", {"c.yaml": _run(**{"data/source": "mnist"})},
     ["train", "c.yaml", "--data-dir", "no/such/dir"], "does not exist"),
    ("truncated-idx", {"c.yaml": _run(**{"data/source": "mnist"})},
     ["train", "c.yaml", "--data-dir", "{truncated}"], "truncated IDX file"),
    ("wrong-magic", {"c.yaml": _run(**{"data/source": "mnist"})},
     ["train", "c.yaml", "--data-dir", "{magic}"], "wrong magic number"),
    ("md5-mismatch", {"c.yaml": _run(**{"data/source": "mnist"})},
     ["train", "c.yaml", "--data-dir", "{md5}"], "does not match the original"),
    ("search-unknown-key", {"s.yaml": _spec(**{"search/model.depth": {"choices": [1]}})},
     ["sweep", "s.yaml"], "no such config key"),
    ("low-above-high", {"s.yaml": _spec(**{"search/train.lr": {"low": 1, "high": 0.1}})},
     ["sweep", "s.yaml"], "greater than high"),
    ("empty-choices", {"s.yaml": _spec(**{"search/model.cell": {"choices": []}})},
     ["sweep", "s.yaml"], "at least one value"),
    ("unknown-choice", {"s.yaml": _spec(**{"search/model.cell": {"choices": ["rnn", "gpt"]}})},
     ["sweep", "s.yaml"], "search.model.cell value 'gpt'"),
    ("log-range-from-zero",
     {"s.yaml": _spec(**{"search/train.lr": {"low": 0, "high": 1, "log": True}})},
     ["sweep", "s.yaml"], "a log range needs low > 0"),
    ("negative-trials", {"s.yaml": _spec(**{"study/n_trials": -3})}, ["sweep", "s.yaml"],
     "study.n_trials"),
    ("unknown-sampler", {"s.yaml": _spec(**{"study/sampler": {"name": "bayes"}})},
     ["sweep", "s.yaml"], "study.sampler.name"),
    ("strata-not-searched", {"s.yaml": _spec(**{"study/strata": ["model.cell"]})},
     ["sweep", "s.yaml"], "study.strata: model.cell is not searched"),
    ("strata-continuous", {"s.yaml": _spec(**{"study/strata": ["train.lr"]})},
     ["sweep", "s.yaml"], "study.strata: train.lr is a float range"),
    ("strata-over-budget",
     {"s.yaml": _spec(**{"study/strata": ["model.cell"],
                         "search/model.cell": {"choices": ["rnn", "lstm", "gru"]}})},
     ["sweep", "s.yaml"], "3 strata need at least one trial each, but study.n_trials is 2"),
    ("strata-with-a-grid",
     {"s.yaml": _spec(**{"study/strata": ["model.cell"], "study/sampler": {"name": "grid"},
                         "search/model.cell": {"choices": ["rnn", "gru"]},
                         "search/train.lr": {"choices": [1e-3]}})},
     ["sweep", "s.yaml"], "the grid sampler runs every point already"),
    ("ablate-not-searched", {"s.yaml": _spec(ablate=[{"factor": "model.hidden"}])},
     ["sweep", "s.yaml"], "ablate[0]: factor model.hidden was not searched"),
    ("ablate-one-seed", {"s.yaml": _spec(ablate=[{"factor": "train.lr", "seeds": 1}])},
     ["sweep", "s.yaml"], "ablate.0.seeds"),
    ("grid-too-small", {"s.yaml": _spec(**{"study/sampler": {"name": "grid"},
                                           "search/train.lr": {"choices": [1e-3]}})},
     ["sweep", "s.yaml"], "exceeds the 1 points of the grid"),
    ("zero-trials", {"s.yaml": _spec(**{"study/n_trials": 0})}, ["sweep", "s.yaml"],
     "study.n_trials"),
    ("no-study-section", {"s.yaml": _run()}, ["sweep", "s.yaml"], "no `study` section"),
    ("short-grace", {"s.yaml": _spec(**{"study/grace_period": 1})}, ["sweep", "s.yaml"],
     "grace_period"),
    ("sweep-missing-data-dir", {"s.yaml": _spec(**{"data/source": "mnist"})},
     ["sweep", "s.yaml", "--data-dir", "no/such/dir"], "does not exist"),
    ("sweep-corrupt-data", {"s.yaml": _spec(**{"data/source": "mnist"})},
     ["sweep", "s.yaml", "--data-dir", "{md5}", "--workers", "2"], "does not match the original"),
    ("sweep-split-too-big", {"s.yaml": _spec(**{"data/train_size": 4500})}, ["sweep", "s.yaml"],
     "exceeds the 4000 images"),
    ("unreachable-storage", {"s.yaml": _spec()},
     ["sweep", "s.yaml", "--storage", "postgresql://postgres@127.0.0.1:1/none"],
     "cannot open storage"),
    ("storage-folder-missing", {"s.yaml": _spec()},
     ["sweep", "s.yaml", "--storage", "no/such/folder/x.journal"], "does not exist"),
    ("unknown-study", {}, ["status", "ghost"], "no study named 'ghost'"),
    ("trials-unknown-study", {}, ["trials", "ghost"], "no study named 'ghost'"),
    ("mistyped-study", {"@hopeless": ""}, ["status", "hopless"], "did you mean 'hopeless'?"),
    ("trials-bad-format", {"@hopeless": ""}, ["trials", "hopeless", "--format", "xls"],
     "unknown format"),
    ("trials-unwritable", {"@hopeless": ""},
     ["trials", "hopeless", "--out", "no/such/folder/t.csv"], "does not exist"),
    ("report-no-complete", {"@hopeless": ""}, ["report", "hopeless", "--format", "md"],
     "no complete trial"),
    # a mistyped command line: click's own errors, in the same one line, with where help is
    ("mistyped-command", {}, ["swep", "s.yaml"],
     "No such command 'swep'. Did you mean 'sweep'? (see 'rnnlab --help')"),
    ("unknown-option", {"s.yaml": _spec()}, ["sweep", "s.yaml", "--wrokers", "2"],
     "No such option: --wrokers"),
    ("workers-below-one", {"s.yaml": _spec()}, ["sweep", "s.yaml", "--workers", "0"],
     "'--workers'"),
    ("workers-not-a-number", {"s.yaml": _spec()}, ["sweep", "s.yaml", "--workers", "two"],
     "(see 'rnnlab sweep --help')"),
    ("missing-spec", {}, ["sweep"], "Missing argument"),
    ("unknown-global-option", {}, ["--quiet", "status"], "No such option: --quiet"),
]


@pytest.mark.parametrize("files, argv, words", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(
        tmp_path, monkeypatch, mnist_dir, files, argv, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("RNNLAB_DATA_DIR", raising=False)
    load_raw.cache_clear()
    for name, text in files.items():
        if name == "@hopeless":
            _no_complete_study(tmp_path)
        else:
            (tmp_path / name).parent.mkdir(exist_ok=True)
            (tmp_path / name).write_text(text)
    argv = [a.format(**{d: str(_mnist_copy(tmp_path / d, mnist_dir, d))
                        for d in ("truncated", "magic", "md5") if "{" + d + "}" in a})
            for a in argv]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    result = CliRunner().invoke(app, argv)

    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rnnlab: error: ") and words in lines[0], lines[0]
    assert "Traceback" not in result.output
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before  # no study, no MLflow store or run, no half-written file


COMMANDS = ["train", "sweep", "ablate", "select", "worker", "status", "trials", "dashboard",
            "report", "ui", "keys", "slurm"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_reads_as_help(command):
    """A flag shows no value, an argument is named as the docstring names it (SPEC, [STUDY]),
    an option's value by what it is (N, PATH), and each paragraph reads whole."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"},
                                prog_name="rnnlab")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert not re.search(r"<(bool|int|str|float|path|int range|list\[str\])>", out), out
    usage = out.splitlines()[0]
    assert usage.startswith(f"Usage: rnnlab {command} [OPTIONS]") and "{" not in usage
    assert re.search(r"^\s+--help\s+Show this message and exit\.$", out, re.M)
    doc = inspect.getdoc(next(c.callback for c in app.registered_commands
                              if c.callback.__name__ == command))
    words = " ".join(out.split())
    described = out.split("\n\n", 1)[1].split("\nArguments:")[0].split("\nOptions:")[0]
    for paragraph in doc.split("\n\n"):
        assert " ".join(paragraph.split()) in words
    for paragraph in described.strip("\n").split("\n\n"):  # wrapped only where full
        lines = paragraph.splitlines()
        for line, after in zip(lines, lines[1:], strict=False):
            assert len(line) + 1 + len(after.split()[0]) > 78, (line, after)


def test_a_flag_in_help_takes_no_value_and_an_option_says_what_it_takes():
    out = CliRunner().invoke(app, ["sweep", "--help"], env={"COLUMNS": "400"},
                             prog_name="rnnlab").stdout
    assert re.search(r"^\s+--allow-spec-change\s+Resume", out, re.M)
    assert re.search(r"^\s+--workers N\s+Local worker", out, re.M)
    assert re.search(r"^Usage: rnnlab sweep \[OPTIONS\] SPEC$", out, re.M)
    assert re.search(r"^\s+SPEC\s+Study spec YAML", out, re.M)
