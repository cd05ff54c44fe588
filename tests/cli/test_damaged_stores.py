"""Damaged or foreign stores: every command works on what is readable (and says what it skipped)
or ends in one line naming the store, exit code 2, and writes nothing.

Each case copies the tiny study's journal and MLflow store into the test's folder (the cwd, whose
``mlflow.db`` is ``MLFLOW_TRACKING_URI``), damages one, and runs a command on it.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnlab.cli.app import app

runner = CliRunner()
READERS = [["status", "tiny"], ["trials", "tiny"], ["report", "tiny", "--format", "yaml"],
           ["dashboard", "tiny"], ["ui", "--study", "tiny"]]
WRITERS = [["sweep", "spec.yaml"], ["worker", "spec.yaml"]]
NEEDS_MLFLOW = [c for c in READERS if c[0] in ("report", "dashboard", "ui")] + WRITERS


def _cut_last_record(path: Path) -> None:
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[:last + (len(data) - last) // 2])  # a crash mid-write


def _bad_fifth_record(path: Path) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4][:30]  # cut mid-record, with records after it
    path.write_bytes(b"\n".join(lines))


def _foreign_sqlite(path: Path) -> None:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    conn.commit()
    conn.close()


DAMAGES = {  # each damages a file in the given folder
    "mlflow-cut-short": lambda d: (d / "mlflow.db").write_bytes(
        (d / "mlflow.db").read_bytes()[:200_000]),
    "mlflow-not-sqlite": lambda d: (d / "mlflow.db").write_text("runs: 3\n"),
    "mlflow-foreign": lambda d: _foreign_sqlite(d / "mlflow.db"),
    "journal-bad-record": lambda d: _bad_fifth_record(d / "rnnlab.journal"),
    "journal-text": lambda d: (d / "rnnlab.journal").write_text("study: tiny\ntrials: 6\n"),
    "journal-sqlite": lambda d: shutil.copy(d / "mlflow.db", d / "rnnlab.journal"),
}
# (damage, command, words the line must hold): the store is named too
REFUSED = [
    *[("mlflow-cut-short", c, "is cut short (200000 of its") for c in NEEDS_MLFLOW],
    *[("mlflow-not-sqlite", c, "is not a SQLite database") for c in NEEDS_MLFLOW],
    *[("mlflow-foreign", c, "another application's tables (users)") for c in NEEDS_MLFLOW],
    *[("journal-bad-record", c, "record 5 (at byte") for c in READERS + WRITERS],
    *[("journal-text", c, "is not an Optuna journal") for c in READERS + WRITERS],
    *[("journal-sqlite", c, "is a SQLite database, not an Optuna journal")
      for c in (["status"], ["sweep", "spec.yaml"])],
]


@pytest.fixture
def copied(study, tmp_path) -> Path:
    """The tiny study's journal, MLflow store and spec in the test's folder (the cwd)."""
    for name in ("rnnlab.journal", "mlflow.db", "spec.yaml"):
        shutil.copy(study.folder / name, tmp_path / name)
    return tmp_path


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(folder: Path, argv: list[str], *words: str) -> str:
    """Run a command that must end in one line with exit code 2, writing nothing."""
    before = _files(folder)
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: error: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    for word in words:
        assert word in lines[0], lines[0]
    assert _files(folder) == before  # the damaged file as it was, and nothing new
    return lines[0]


@pytest.mark.parametrize(("damage", "argv", "words"), REFUSED,
                         ids=[f"{d}-{c[0]}" for d, c, _ in REFUSED])
def test_a_damaged_store_ends_in_one_line(copied, damage, argv, words):
    DAMAGES[damage](copied)
    store = (f"sqlite:///{copied}/mlflow.db" if damage.startswith("mlflow")
             else str(copied / "rnnlab.journal"))
    _refused(copied, argv, words, store)


@pytest.mark.parametrize("damage", ["mlflow-cut-short", "mlflow-not-sqlite"])
def test_commands_that_read_no_run_work_beside_a_damaged_mlflow_store(copied, damage):
    DAMAGES[damage](copied)
    before = _files(copied)
    for argv in (["status", "tiny", "--json"], ["trials", "tiny"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
    assert _files(copied) == before


def _rnnlab(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnlab", *args], cwd=folder, text=True,
                          capture_output=True, timeout=300)


def test_a_half_written_last_record_is_skipped_and_said(copied):
    journal = copied / "rnnlab.journal"
    whole = json.loads(runner.invoke(app, ["status", "tiny", "--json"]).stdout)[0]
    assert sum(whole["counts"].values()) == 6
    _cut_last_record(journal)
    before = _files(copied)

    result = _rnnlab(copied, "status", "tiny", "--json")  # a real process: the note is its own

    assert result.returncode == 0, result.stderr
    note = result.stderr.strip().splitlines()
    assert len(note) == 1 and "incomplete record" in note[0] and str(journal) in note[0]
    assert f"the {len(journal.read_bytes().splitlines()) - 1} records before it" in note[0]
    cut = json.loads(result.stdout)[0]
    assert sum(cut["counts"].values()) == sum(whole["counts"].values())  # no trial lost
    assert cut["budget"] == whole["budget"] and cut["parent_run_id"] == whole["parent_run_id"]
    assert _files(copied) == before


def test_reports_and_dashboards_read_a_journal_with_a_half_written_last_record(copied, caplog):
    _cut_last_record(copied / "rnnlab.journal")
    journal = (copied / "rnnlab.journal").read_bytes()

    for argv in (["trials", "tiny"], ["report", "tiny", "--format", "yaml"],
                 ["dashboard", "tiny"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, (argv, result.output, result.exception)
    assert (copied / "dashboards" / "tiny.html").is_file()
    assert (copied / "rnnlab.journal").read_bytes() == journal
    notes = [r.getMessage() for r in caplog.records if "incomplete record" in r.getMessage()]
    assert len(notes) == 1  # said once, not per read


def test_a_study_whose_mlflow_experiment_was_deleted_is_refused_before_it_is_made(copied):
    """Deleted in the MLflow UI, an experiment still holds its name, and MLflow refuses runs in
    it: a sweep of a study of that name (new, or resumed) ends in one line naming the way out,
    not in MLflow's traceback after an empty study was made; restored, the sweep runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{copied}/mlflow.db")
    fresh = client.create_experiment("fresh")
    for exp in (fresh, client.get_experiment_by_name("tiny").experiment_id):
        client.delete_experiment(exp)
    for argv in (["sweep", "spec.yaml", "--set", "study.name=fresh"], ["sweep", "spec.yaml"],
                 ["worker", "spec.yaml", "--set", "study.name=fresh"]):
        _refused(copied, argv, "MLflow experiment", "is deleted in tracking store",
                 f"sqlite:///{copied}/mlflow.db",
                 f"`mlflow experiments restore --experiment-id {fresh if '--set' in argv else ''}")
    client.restore_experiment(fresh)
    result = runner.invoke(app, ["sweep", "spec.yaml", "--set", "study.name=fresh",
                                 "--n-trials", "1", "--workers", "1"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("argv", WRITERS, ids=[c[0] for c in WRITERS])
def test_no_command_writes_after_a_half_written_last_record(copied, argv):
    journal = copied / "rnnlab.journal"
    _cut_last_record(journal)
    complete = journal.read_bytes().rfind(b"\n") + 1

    line = _refused(copied, argv, "ends in an incomplete record", str(journal))

    assert f"truncate -s {complete} {journal}" in line


# --- RDB storages: a SQLite file or a database that is not Optuna's -------------------------

def _optuna_sqlite(path: Path) -> None:
    import optuna

    study = optuna.create_study(study_name="o", storage=f"sqlite:///{path}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=20)


@pytest.mark.parametrize(("make", "argv", "words"), [
    (_foreign_sqlite, ["status"], "is not an Optuna database: it holds another application's "
                                  "tables (users)"),
    (_foreign_sqlite, ["sweep", "spec.yaml"], "is not an Optuna database"),
    (lambda p: shutil.copy(Path("mlflow.db"), p), ["status", "tiny"], "is not an Optuna database"),
    (lambda p: (_optuna_sqlite(p), p.write_bytes(p.read_bytes()[:50_000])), ["status"],
     "is cut short (50000 of its"),
    (lambda p: p.write_text("not a database\n"), ["trials", "tiny"], "is not a SQLite database"),
], ids=["foreign-status", "foreign-sweep", "mlflow-db-as-storage", "cut-short", "not-sqlite"])
def test_a_damaged_or_foreign_sqlite_storage_ends_in_one_line(copied, make, argv, words):
    make(copied / "store.db")
    _refused(copied, [*argv, "--storage", "sqlite:///store.db"], words, "sqlite:///store.db")


def test_an_empty_sqlite_file_holds_no_study_and_stays_empty(copied):
    (copied / "empty.db").touch()
    url = "sqlite:///empty.db"
    _refused(copied, ["status", "tiny", "--storage", url], "no study named 'tiny'", url)
    _refused(copied, ["trials", "tiny", "--storage", url], "no study named 'tiny'")
    result = runner.invoke(app, ["status", "--storage", url, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert (copied / "empty.db").stat().st_size == 0
    _refused(copied, ["status", "tiny", "--storage", "sqlite:///missing.db"],
             "no study named 'tiny'")  # and no missing.db made


def test_an_empty_postgres_database_holds_no_study_and_gets_no_tables(databases, tmp_path):
    import psycopg2

    url = databases[0]
    _refused(tmp_path, ["status", "tiny", "--storage", url], "no study named 'tiny'", url)
    result = runner.invoke(app, ["status", "--storage", url, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema = 'public'")
            assert cur.fetchone()[0] == 0  # reading created no Optuna schema
    finally:
        conn.close()


# --- a tracking URI that answers, but not as MLflow ------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test's output
        pass


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    """A plain web server (the standard library's, as ``python -m http.server`` runs it), not
    MLflow, on 127.0.0.1. It binds port 0 itself and says which port it got: a port chosen
    first and bound later may be taken in between."""
    folder = tmp_path_factory.mktemp("www")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join()


@pytest.mark.parametrize("argv", NEEDS_MLFLOW, ids=[c[0] for c in NEEDS_MLFLOW])
def test_a_tracking_uri_that_is_not_mlflow_ends_in_one_line(copied, web_server, monkeypatch,
                                                            argv):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", web_server)
    _refused(copied, argv, "answers, but not as an MLflow tracking server (HTTP 404", web_server)


# --- commands that only read change nothing, whatever state the stores are in ----------------

def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder: kind, size, modification time, mode and bytes."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (p.is_dir(), st.st_size, st.st_mtime_ns, st.st_mode,
                                           hashlib.sha1(p.read_bytes()).hexdigest()
                                           if p.is_file() else "")
    return out


STATES = {"healthy": lambda d: None, **{k: DAMAGES[k] for k in (
    "mlflow-cut-short", "mlflow-foreign", "journal-bad-record", "journal-sqlite")},
    "mlflow-missing": lambda d: (d / "mlflow.db").unlink(),  # the study is there, its runs not
    "missing": lambda d: [p.unlink() for p in d.iterdir() if p.name != "spec.yaml"]}
READ_ONLY = [["status"], ["status", "tiny", "--json"], ["trials", "tiny"],
             ["report", "tiny", "--no-confirm"], ["report", "tiny", "--format", "yaml"],
             ["dashboard", "tiny", "--out", "{elsewhere}/tiny.html"]]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("argv", READ_ONLY, ids=lambda c: "-".join(c[:2]))
def test_commands_that_only_read_change_nothing_in_any_state(copied, tmp_path_factory, state,
                                                             argv):
    STATES[state](copied)
    elsewhere = tmp_path_factory.mktemp("out")
    before = _snapshot(copied)
    result = runner.invoke(app, [a.format(elsewhere=elsewhere) for a in argv])
    assert result.exit_code in (0, 2), (result.output, result.exception)
    assert "Traceback" not in result.output
    assert _snapshot(copied) == before


def test_ui_on_an_existing_store_changes_nothing_and_on_none_makes_none(copied):
    before = _snapshot(copied)  # its view was saved as the study started
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "ui", "--port", str(_free_port())],
                            cwd=copied, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().startswith("MLflow UI: http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert _snapshot(copied) == before
    STATES["missing"](copied)
    before = _snapshot(copied)
    line = _refused(copied, ["ui"], "does not exist: nothing was tracked here")
    assert f"sqlite:///{copied}/mlflow.db" in line and _snapshot(copied) == before


def _free_port() -> int:
    from servers import free_port

    return free_port()
