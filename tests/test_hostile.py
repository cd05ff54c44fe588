"""Hostile values stay inert: markup and script in every value that reaches a page or a report,
very long values, control characters, YAML that expands or constructs objects, a huge spec, an
``--out`` that is a symbolic link. Each ends in a correct page (escaped, no dialog, no script
run, in a real Chromium) or in one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import SPEC, TinyStudy, build_study, open_html
from typer.testing import CliRunner

from rnnlab.cli.app import app
from rnnlab.errors import RnnlabError

# Each payload sets window.__pwned and opens a dialog if it ever runs.
RUN = "window.__pwned=true;alert(1)"
MARKUP = {
    "script": f"<script>{RUN}</script>",
    "img": f"<img src=x onerror=\"{RUN}\">",
    "svg": f"\"><svg onload=\"{RUN}\">",
    "close-title": f"</title><script>{RUN}</script>",
    "close-script": f"</script><script>{RUN}</script>",
    "iframe": "<iframe src=\"javascript:window.__pwned=true\"></iframe>",
    "link": f"<a href=\"javascript:{RUN}\">click</a> [md](javascript:{RUN})",
    "template": "{{constructor.constructor('window.__pwned=true')()}} ${7*7}",
    "control": "red\x1b[31m bell\x07 nul-free \r\n new line",
    "long": "x" * 20_000 + "<b>end</b>",
}


FIELDS = ("title", "description", "label", "figure")
# Every payload in a free-text field of a dashboard spec: three pages of four fields each
PAGES = [dict(zip(FIELDS, (sorted(MARKUP)[(4 * i + j) % len(MARKUP)] for j in range(4)),
                  strict=True)) for i in range(3)]


def _dashboard_spec(folder: Path, study: TinyStudy, names: dict[str, str]) -> Path:
    """A dashboard spec of the tiny study with a hostile value in each free-text field."""
    spec = {"title": MARKUP[names["title"]], "description": MARKUP[names["description"]],
            "studies": [{"name": study.name, "storage": study.storage,
                         "label": MARKUP[names["label"]]}],
            "figures": ["learning_curves", "history",
                        {"kind": "box", "title": MARKUP[names["figure"]]}]}
    path = folder / "hostile.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("names", PAGES, ids=lambda n: "-".join(n.values()))
def test_markup_in_a_dashboard_spec_stays_text(study, browser, tmp_path, monkeypatch, names):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    spec = _dashboard_spec(tmp_path, study, names)
    result = CliRunner().invoke(app, ["dashboard", str(spec), "--inline"])
    assert result.exit_code == 0, result.output
    check = open_html(browser, tmp_path / "hostile.html")
    assert check.dialogs == [] and not check.pwned and check.errors == []
    for where in ("title", "description", "label"):  # the header says them, as text
        shown = MARKUP[names[where]].replace("\r\n", "\n").split("\n")[0].strip()[:40]
        assert shown in check.text, (where, shown)


@pytest.fixture(scope="module")
def hostile_study(tmp_path_factory, _mlflow_template, mnist_dir) -> TinyStudy:
    """A study that searched a free-text key, data.dir, with markup among its choices: the
    markup trial failed (no such folder) with the markup in its reason and its param."""
    import shutil

    folder = tmp_path_factory.mktemp("hostile")
    shutil.copy(_mlflow_template, folder / "mlflow.db")
    raw = yaml.safe_load(yaml.safe_dump(SPEC))
    raw["study"].update(name="hostile", n_trials=2, sampler={"name": "random", "seed": 0})
    raw["search"] = {"data.dir": {"choices": [str(mnist_dir), MARKUP["img"]]},
                     "model.cell": {"choices": ["rnn", "gru"]}}
    raw["data"]["source"] = "mnist"
    with pytest.raises(RnnlabError, match="data directory"):  # the markup trial stops it
        build_study(folder, raw, [{"data.dir": str(mnist_dir), "model.cell": "gru"},
                                  {"data.dir": MARKUP["img"], "model.cell": "rnn"}])
    return TinyStudy(folder, str(folder / "rnnlab.journal"), f"sqlite:///{folder}/mlflow.db",
                     "hostile")


def test_markup_in_a_studys_params_and_reasons_stays_text(hostile_study, browser, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", hostile_study.uri)
    args = ["--storage", hostile_study.storage]
    trials = CliRunner().invoke(app, ["trials", "hostile", *args, "--format", "json"])
    [failed] = [t for t in json.loads(trials.stdout) if t["state"] == "FAIL"]
    assert MARKUP["img"] in failed["reason"]  # the data itself, as it was

    page = CliRunner().invoke(app, ["dashboard", "hostile", *args, "--out", "d.html",
                                    "--inline"])
    assert page.exit_code == 0, page.output
    report = CliRunner().invoke(app, ["report", "hostile", *args, "--no-confirm", "--format",
                                      "html", "--out", "r.html"])
    assert report.exit_code == 0, report.output
    for name in ("d.html", "r.html"):
        check = open_html(browser, tmp_path / name)
        assert check.dialogs == [] and not check.pwned and check.errors == [], name
    assert MARKUP["img"] in open_html(browser, tmp_path / "r.html").text  # shown, as text

    md = CliRunner().invoke(app, ["report", "hostile", *args, "--no-confirm"]).stdout
    assert MARKUP["img"] not in md and "&lt;img src=x onerror" in md  # escaped where quoted


BAD_SPECS = {  # a study spec file's text -> words of its one line
    "huge": (("# " + "x" * 99 + "\n") * 520_000, "more than any spec needs"),  # 52 MB
    "billion-laughs": ("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                       + "".join(f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n"
                                 for p, k in zip("abcdefgh", "bcdefghi", strict=True)),
                       "more than 20 aliases"),
    "python-object": ("data: !!python/object/apply:os.system ['touch pwned']\n",
                      "YAML syntax error"),
    "markup-name": (yaml.safe_dump({**SPEC, "study": {**SPEC["study"],
                                                       "name": MARKUP["script"]}}),
                    "study.name: letters, digits, '_', '.' and '-' only"),
    "control-in-set": (yaml.safe_dump(SPEC),  # the escape shown, not sent to the terminal
                       "data directory '\\x1b]0;pwned\\x07/no/such' does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_hostile_spec_files_end_in_one_line(tmp_path, case):
    text, words = BAD_SPECS[case]
    (tmp_path / "s.yaml").write_text(text)
    extra = (["--set", "data.source=mnist", "--data-dir", "\x1b]0;pwned\x07/no/such"]
             if case == "control-in-set" else [])
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(app, ["sweep", "s.yaml", *extra])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("rnnlab: error: ") and words in line, line[:300]
    assert "\x1b" not in line and "\x07" not in line  # no terminal control sequence
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made, no "pwned"


def test_an_out_that_is_a_symbolic_link_is_refused(study, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    precious = tmp_path / "precious.txt"
    precious.write_text("the user never named this file")
    (tmp_path / "page.html").symlink_to(precious)
    for argv in (["dashboard", study.name, "--out", "page.html"],
                 ["trials", study.name, "--out", "page.html"],
                 ["report", study.name, "--no-confirm", "--out", "page.html"]):
        result = CliRunner().invoke(app, [*argv, "--storage", study.storage])
        assert result.exit_code == 2, result.output
        assert "is a symbolic link" in result.stderr
    assert precious.read_text() == "the user never named this file"
    assert (tmp_path / "page.html").is_symlink()
