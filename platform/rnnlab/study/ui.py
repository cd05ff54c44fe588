"""``rnnlab ui``: the MLflow UI opened where each study's trials are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna

from rnnlab.storage.adapter import is_rdb, load_study, study_names
from rnnlab.storage.keys import ATTR_EXPERIMENT, ATTR_PARENT, ATTR_SPEC
from rnnlab.tracking.ui import StudyRuns, serve


def study_runs(storage: str, study: str | None) -> list[StudyRuns]:
    """Where ``study``'s runs are, or every study's in ``storage`` (none when it does not
    exist; a study without runs in the store is then skipped, not an error).

    Raises:
        RnnlabError: ``study`` is not in the storage.
    """
    if study is None:
        if not is_rdb(storage) and not Path(storage).expanduser().exists():
            return []  # no journal here: do not create one just to list nothing
        names = sorted(study_names(storage))
    else:
        names = [study]
    return [runs_of(load_study(storage, name), required=study is not None) for name in names]


def runs_of(study: optuna.Study, *, required: bool = True) -> StudyRuns:
    """Where a study's runs are, from what the study keeps (its spec, experiment, parent run)."""
    attrs = study.user_attrs  # one read of the storage
    spec = attrs.get(ATTR_SPEC) or {}
    settings = spec.get("study", {})
    return StudyRuns(study.study_name, attrs.get(ATTR_EXPERIMENT, study.study_name),
                     attrs.get(ATTR_PARENT), settings.get("metric"),
                     study.direction.name.lower(), required=required,
                     params=tuple(spec.get("search") or ()),
                     objective=settings.get("objective", "best"))


def open_ui(storage: str, study: str | None, port: int,
            on_ready: Callable[[str, list[tuple[str, str]], bool], None]) -> None:
    """Start the MLflow UI on the store the sweeps used (or find the tracking server), report
    where each study's trials are, and block until it stops (see
    :func:`rnnlab.tracking.ui.serve`).

    Raises:
        RnnlabError: unknown study, busy port, or a server that does not start.
    """
    serve(study_runs(storage, study), port, on_ready)
